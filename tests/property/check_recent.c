/* Checks of engine_top_growth and engine_content against a from-scratch count over every
 * accepted post: growth for windows whose edge falls exactly on a post (and a millisecond either
 * side), and the figures and top cascades of every content key the forest uses. The expected
 * order is exact, ties included (older cascade, i.e. lower engine cascade id, first). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prop.h"

struct rcheck {
    struct engine *e;
    const struct forest *f;
    const struct oracle *o;
    const struct engine_cascade *cv; /* the oracle's view of each cascade */
    struct rng *r;
    uint32_t *eid; /* per oracle cascade: the engine's cascade id */
    uint64_t *val; /* per oracle cascade: the figure being ranked */
    uint32_t *order;
    char where[160];
};

static const struct rcheck *g_sort; /* qsort has no context argument */

static int by_val_then_id(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    uint64_t va = g_sort->val[a], vb = g_sort->val[b];
    if (va != vb)
        return va > vb ? -1 : 1;
    return (g_sort->eid[a] > g_sort->eid[b]) - (g_sort->eid[a] < g_sort->eid[b]);
}

/* Sorts the cascades with a non-zero value that pass keep[] (NULL: all) into order; returns
 * how many. */
static uint32_t rank_expected(struct rcheck *rc, const uint8_t *keep)
{
    uint32_t m = 0;
    for (uint32_t c = 0; c < rc->o->n_cascades; c++)
        if (rc->val[c] && (!keep || keep[c]))
            rc->order[m++] = c;
    g_sort = rc;
    qsort(rc->order, m, sizeof(*rc->order), by_val_then_id);
    return m;
}

/* out[0..n) must be exactly the cascades order[0..n), described as the oracle has them. */
static void expect_list(struct rcheck *rc, const struct engine_cascade *out, int n, uint32_t want)
{
    if (n != (int)want)
        prop_fail("%s: %d cascades, expected %u", rc->where, n, want);
    for (int i = 0; i < n; i++) {
        uint32_t c = rc->order[i];
        int32_t k = post_index(rc->f, out[i].root, out[i].root_len);
        if (k < 0 || rc->o->root[k] != k || rc->o->casc[k] != (int32_t)c)
            prop_fail("%s: entry %d is \"%.*s\", expected the cascade of root %d (value %llu)",
                      rc->where, i, (int)out[i].root_len, out[i].root, rc->o->cascades[c].root,
                      (unsigned long long)rc->val[c]);
        cmp_cascade(&rc->cv[c], &out[i], rc->where);
    }
}

/* ---- growth ---- */

static int same(const char *a, uint32_t alen, const char *b)
{
    return a && b && alen == strlen(b) && memcmp(a, b, alen) == 0;
}

static void check_window(struct rcheck *rc, int64_t newest, int64_t window, uint8_t *keep,
                         struct engine_cascade *out)
{
    const struct oracle *o = rc->o;
    struct engine_cascade_filter flt = {0};
    const struct engine_cascade_filter *fp = NULL;
    const struct node *a = &rc->f->nodes[rng_below(rc->r, rc->f->n)];

    if (rng_chance(rc->r, 40)) { /* one filter at a time, on values the forest has */
        fp = &flt;
        switch (rng_below(rc->r, 4)) {
        case 0:
            flt.label = a->label ? a->label : "false";
            flt.label_len = (uint32_t)strlen(flt.label);
            break;
        case 1:
            flt.content = a->content ? a->content : "claim:42";
            flt.content_len = (uint32_t)strlen(flt.content);
            break;
        case 2:
            flt.min_size = 1 + rng_below(rc->r, 4);
            break;
        default:
            flt.has_since = flt.has_until = 1;
            flt.since = flt.until = a->ts;
        }
    }
    memset(rc->val, 0, o->n_cascades * sizeof(*rc->val));
    for (uint32_t k = 0; k < rc->f->n; k++) {
        int64_t ts = rc->f->nodes[k].ts;
        if (o->accepted[k] && ts <= newest && ts >= newest - window)
            rc->val[o->casc[k]]++;
    }
    for (uint32_t c = 0; c < o->n_cascades; c++)
        keep[c] = (uint8_t)cascade_passes(&rc->cv[c], fp);
    uint32_t m = rank_expected(rc, keep);
    uint32_t limit = 1 + rng_below(rc->r, m + 2);
    snprintf(rc->where, sizeof(rc->where), "engine_top_growth (window %lld ms, limit %u, %s)",
             (long long)window, limit, fp ? "filtered" : "unfiltered");
    int n = engine_top_growth(rc->e, window, fp, out, limit);
    expect_list(rc, out, n, limit < m ? limit : m);
    for (int i = 0; i < n; i++)
        EXPECT_INT(rc->where, rc->val[rc->order[i]], out[i].growth);
}

static void check_growth(struct rcheck *rc, uint8_t *keep, struct engine_cascade *out)
{
    const struct forest *f = rc->f;
    int64_t newest = INT64_MIN;
    uint32_t any = 0;
    struct engine_stats st;

    for (uint32_t k = 0; k < f->n; k++)
        if (rc->o->accepted[k] && (!any++ || f->nodes[k].ts > newest))
            newest = f->nodes[k].ts;
    engine_get_stats(rc->e, &st);
    EXPECT_INT("stats newest_ts", any ? newest : 0, st.newest_ts);
    EXPECT_INT("engine_top_growth window 0", -EINVAL, engine_top_growth(rc->e, 0, NULL, out, 1));
    EXPECT_INT("engine_top_growth beyond the horizon", -EINVAL,
               engine_top_growth(rc->e, ENGINE_GROWTH_HORIZON_MS + 1, NULL, out, 1));
    if (!any) {
        EXPECT_INT("engine_top_growth with no posts", 0, engine_top_growth(rc->e, 1, NULL, out, 1));
        return;
    }
    /* under retention, windows up to the retention only (posts before its cut are not filed) */
    int64_t max = rc->o->retention_ms ? rc->o->retention_ms : ENGINE_GROWTH_HORIZON_MS;
    int64_t windows[9] = {1, max, 1 + rng_below(rc->r, max < 5000 ? (uint32_t)max : 5000)};
    uint32_t nw = 3;
    if (max < ENGINE_GROWTH_HORIZON_MS)
        EXPECT_INT("engine_top_growth beyond the retention", -EINVAL,
                   engine_top_growth(rc->e, max + 1, NULL, out, 1));
    for (int i = 0; i < 2; i++) { /* edges exactly on an accepted post, and 1 ms either side */
        uint32_t k = rng_below(rc->r, f->n);
        int64_t w = newest - f->nodes[k].ts;
        for (int64_t d = -1; d <= 1 && rc->o->accepted[k]; d++)
            if (w + d >= 1 && w + d <= max)
                windows[nw++] = w + d;
    }
    for (uint32_t i = 0; i < nw; i++)
        check_window(rc, newest, windows[i], keep, out);
}

/* ---- content ---- */

/* The content node k carries (its own, else its root's; NULL for a placeholder root's). */
static const char *carried(const struct oracle *o, uint32_t k)
{
    const struct node *nd = &o->f->nodes[k];
    int32_t r = o->root[k];
    if (nd->content)
        return nd->content;
    return o->accepted[r] ? o->f->nodes[r].content : NULL;
}

static void check_key(struct rcheck *rc, const char *key, uint8_t *seen_actor,
                      struct engine_cascade *out)
{
    const struct oracle *o = rc->o;
    struct engine_content got, want = {0};

    memset(rc->val, 0, o->n_cascades * sizeof(*rc->val));
    memset(seen_actor, 0, rc->f->n_actors);
    for (uint32_t k = 0; k < rc->f->n; k++) {
        const char *c = o->accepted[k] ? carried(o, k) : NULL;
        if (!c || strcmp(c, key) != 0)
            continue;
        int64_t ts = rc->f->nodes[k].ts;
        if (want.posts++ == 0 || ts < want.first_ts)
            want.first_ts = ts;
        if (want.posts == 1 || ts > want.last_ts)
            want.last_ts = ts;
        want.unique_actors += !seen_actor[rc->f->nodes[k].actor];
        seen_actor[rc->f->nodes[k].actor] = 1;
        want.cascades += !rc->val[o->casc[k]];
        rc->val[o->casc[k]] = 1;
    }
    for (uint32_t c = 0; c < o->n_cascades; c++) /* then ranked by size */
        rc->val[c] = rc->val[c] ? rc->cv[c].size : 0;
    uint32_t m = rank_expected(rc, NULL), limit = rng_below(rc->r, m + 2);
    snprintf(rc->where, sizeof(rc->where), "engine_content \"%s\" (limit %u)", key, limit);
    int n = engine_content(rc->e, key, (uint32_t)strlen(key), &got, out, limit);
    if (!want.posts) {
        EXPECT_INT(rc->where, -ENOENT, n);
        return;
    }
    if (!same(got.key, got.key_len, key))
        prop_fail("%s: key is \"%.*s\"", rc->where, (int)got.key_len, got.key);
    EXPECT_INT("content posts", want.posts, got.posts);
    EXPECT_INT("content cascades", want.cascades, got.cascades);
    EXPECT_INT("content unique_actors", want.unique_actors, got.unique_actors);
    EXPECT_INT("content first_ts", want.first_ts, got.first_ts);
    EXPECT_INT("content last_ts", want.last_ts, got.last_ts);
    expect_list(rc, out, n, limit < m ? limit : m);
}

static void check_contents(struct rcheck *rc, struct engine_cascade *out)
{
    uint8_t *seen_actor = calloc(rc->f->n_actors + 1, 1);
    const char **keys = calloc(rc->f->n + 1, sizeof(*keys));
    uint32_t nkeys = 0;

    keys[nkeys++] = "no-such-content";
    nkeys += forest_content_keys(rc->f, keys + 1);
    for (uint32_t i = 0; i < nkeys; i++)
        check_key(rc, keys[i], seen_actor, out);
    free(keys);
    free(seen_actor);
}

void check_recent(struct engine *e, const struct forest *f, const struct oracle *o,
                  const struct engine_cascade *cv, struct rng *r)
{
    struct rcheck rc = {.e = e, .f = f, .o = o, .cv = cv, .r = r};
    uint32_t n = o->n_cascades + 1;
    struct engine_cascade *out = calloc(n + 2, sizeof(*out));
    uint8_t *keep = calloc(n, 1);
    char id[ID_BUF];

    rc.eid = calloc(n, sizeof(*rc.eid));
    rc.val = calloc(n, sizeof(*rc.val));
    rc.order = calloc(n, sizeof(*rc.order));
    for (uint32_t c = 0; c < o->n_cascades; c++) {
        struct engine_cascade got;
        uint32_t len = post_id(f, (uint32_t)o->cascades[c].root, id);
        if (engine_cascade(e, id, len, &got) != 0)
            prop_fail("engine_cascade of root %s failed", id);
        rc.eid[c] = got.id;
    }
    check_growth(&rc, keep, out);
    check_contents(&rc, out);
    free(rc.eid);
    free(rc.val);
    free(rc.order);
    free(keep);
    free(out);
}
