/* The cluster endpoint's pure merge rules (see cluster_merge.h). */
#include "cluster/cluster_merge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/mp.h"

int clm_id_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int r = memcmp(a, b, al < bl ? al : bl);
    if (r)
        return r;
    return al < bl ? -1 : al > bl ? 1 : 0;
}

/* 0: absent/nil, 1: an integer in *i, 2: a double in *d */
static int num_of(const msgpack_object *o, int64_t *i, uint64_t *u, double *d)
{
    if (!o)
        return 0;
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *u = o->via.u64;
        *i = o->via.u64 > INT64_MAX ? INT64_MAX : (int64_t)o->via.u64;
        *d = (double)o->via.u64;
        return o->via.u64 > INT64_MAX ? 3 : 1;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *i = o->via.i64;
        *d = (double)o->via.i64;
        return 1;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *d = o->via.f64;
        return 2;
    default:
        return 0;
    }
}

int clm_num_cmp(const msgpack_object *a, const msgpack_object *b)
{
    int64_t ia = 0, ib = 0;
    uint64_t ua = 0, ub = 0;
    double da = 0, db = 0;
    int ta = num_of(a, &ia, &ua, &da), tb = num_of(b, &ib, &ub, &db);
    if (!ta || !tb)
        return ta - tb ? (ta ? 1 : -1) : 0;
    if (ta == 3 && tb == 3)
        return ua < ub ? -1 : ua > ub;
    if (ta == 3 || tb == 3) /* one beyond INT64_MAX, the other not */
        return ta == 3 ? (tb == 2 ? (da < db ? -1 : da > db) : 1)
                       : (ta == 2 ? (da < db ? -1 : da > db) : -1);
    if (ta == 1 && tb == 1)
        return ia < ib ? -1 : ia > ib;
    return da < db ? -1 : da > db;
}

static int str_cmp(const msgpack_object *a, const msgpack_object *b)
{
    int sa = a && a->type == MSGPACK_OBJECT_STR, sb = b && b->type == MSGPACK_OBJECT_STR;
    if (!sa || !sb)
        return sa - sb;
    return clm_id_cmp(a->via.str.ptr, a->via.str.size, b->via.str.ptr, b->via.str.size);
}

int clm_cascade_cmp(const msgpack_object *a, const msgpack_object *b, const char *key)
{
    int r = clm_num_cmp(mp_map_get(b, key), mp_map_get(a, key)); /* descending */
    if (r)
        return r;
    r = clm_num_cmp(mp_map_get(a, "first_ts"), mp_map_get(b, "first_ts"));
    if (r)
        return r;
    return str_cmp(mp_map_get(a, "root"), mp_map_get(b, "root"));
}

int clm_cascade_root_cmp(const msgpack_object *a, const msgpack_object *b)
{
    int r = clm_num_cmp(mp_map_get(b, "size"), mp_map_get(a, "size"));
    if (r)
        return r;
    return str_cmp(mp_map_get(a, "root"), mp_map_get(b, "root"));
}

double clm_quantile(const double *sorted, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t k = (size_t)pos;
    double frac = pos - (double)k, lo = sorted[k];
    if (frac == 0.0 || k + 1 >= n)
        return lo;
    return lo + frac * (sorted[k + 1] - lo);
}

int clm_idset_add(struct clm_idset *s, const char *id, size_t len)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **ids = realloc(s->ids, cap * sizeof(*ids));
        if (!ids)
            return -ENOMEM;
        s->ids = ids;
        uint32_t *lens = realloc(s->lens, cap * sizeof(*lens));
        if (!lens)
            return -ENOMEM;
        s->lens = lens;
        s->cap = cap;
    }
    char *c = malloc(len ? len : 1);
    if (!c)
        return -ENOMEM;
    memcpy(c, id, len);
    s->ids[s->n] = c;
    s->lens[s->n] = (uint32_t)len;
    s->n++;
    s->sorted = 0;
    return 0;
}

struct idref {
    char *id;
    uint32_t len;
};

static int idref_cmp(const void *pa, const void *pb)
{
    const struct idref *a = pa, *b = pb;
    return clm_id_cmp(a->id, a->len, b->id, b->len);
}

size_t clm_idset_finish(struct clm_idset *s)
{
    if (s->sorted || s->n == 0)
        return s->n;
    struct idref *r = malloc(s->n * sizeof(*r));
    if (!r) { /* no room to sort: count by pairs (quadratic, but right) */
        size_t k = 0;
        for (size_t i = 0; i < s->n; i++) {
            size_t j = 0;
            while (j < k && clm_id_cmp(s->ids[j], s->lens[j], s->ids[i], s->lens[i]))
                j++;
            if (j < k) {
                free(s->ids[i]);
                continue;
            }
            s->ids[k] = s->ids[i];
            s->lens[k++] = s->lens[i];
        }
        s->n = k;
        return k; /* unique, not sorted */
    }
    for (size_t i = 0; i < s->n; i++)
        r[i] = (struct idref){s->ids[i], s->lens[i]};
    qsort(r, s->n, sizeof(*r), idref_cmp);
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (k && idref_cmp(&r[k - 1], &r[i]) == 0) {
            free(r[i].id);
            continue;
        }
        r[k++] = r[i];
    }
    for (size_t i = 0; i < k; i++) {
        s->ids[i] = r[i].id;
        s->lens[i] = r[i].len;
    }
    free(r);
    s->n = k;
    s->sorted = 1;
    return k;
}

void clm_idset_free(struct clm_idset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->ids[i]);
    free(s->ids);
    free(s->lens);
    memset(s, 0, sizeof(*s));
}
