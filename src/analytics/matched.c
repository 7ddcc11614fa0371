/* The size-matched comparison of two labels (see matched.h): per metric one sort by (stratum,
 * value), then one pass that gives each run of equal values its mid-rank, so ties cost nothing
 * extra and feed the variance's tie term. O(n log n) per metric. */
#include "analytics/matched.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct item {
    int32_t stratum;
    uint8_t group;
    double value;
};

/* the compared metrics: where each sits in engine_labeled.v (duration_ms in the size slot) */
static const struct {
    const char *name;
    int slot;
} compared[MATCHED_METRICS] = {
    {"depth", ENGINE_LABEL_DEPTH},
    {"max_breadth", ENGINE_LABEL_MAX_BREADTH},
    {"structural_virality", ENGINE_LABEL_VIRALITY},
    {"unique_actors", ENGINE_LABEL_UNIQUE_ACTORS},
    {"duration_ms", ENGINE_LABEL_SIZE},
};

static int cmp_item(const void *pa, const void *pb)
{
    const struct item *a = pa, *b = pb;
    if (a->stratum != b->stratum)
        return a->stratum < b->stratum ? -1 : 1;
    return (a->value > b->value) - (a->value < b->value);
}

static int32_t stratum_of(uint32_t size)
{
    int32_t s = 0;
    while (size > 1) {
        size >>= 1;
        s++;
    }
    return s;
}

/* The type-7 median of the sorted values of group g in it[0..n). */
static double median_of(const struct item *it, size_t n, uint8_t g, uint64_t count)
{
    if (count == 0)
        return NAN;
    double pos = 0.5 * (double)(count - 1);
    uint64_t lo = (uint64_t)pos, seen = 0;
    double frac = pos - (double)lo, a = NAN;
    for (size_t i = 0; i < n; i++) {
        if (it[i].group != g)
            continue;
        if (seen == lo)
            a = it[i].value;
        if (seen == lo + 1)
            return a + frac * (it[i].value - a);
        seen++;
    }
    return a;
}

/* One stratum it[0..n) sorted by value: A's mid-rank sum, the tie term Σ(t³ - t), the counts. */
struct run {
    double r_a, ties;
    uint64_t n_a, n_b;
};

static struct run rank_stratum(const struct item *it, size_t n)
{
    struct run r = {0};
    for (size_t i = 0; i < n;) {
        size_t j = i;
        uint64_t a = 0;
        while (j < n && it[j].value == it[i].value)
            a += it[j++].group == 0;
        double t = (double)(j - i), mid = ((double)i + 1 + (double)j) / 2; /* ranks i+1..j */
        r.r_a += mid * (double)a;
        r.ties += t * t * t - t;
        r.n_a += a;
        r.n_b += (j - i) - a;
        i = j;
    }
    return r;
}

/* Adds one stratum's share to the van Elteren sums (DESIGN §3). */
static void add_share(const struct run *r, double *t, double *e, double *var)
{
    double n = (double)(r->n_a + r->n_b);
    *t += r->r_a / (n + 1);
    *e += (double)r->n_a / 2;
    *var += (double)r->n_a * (double)r->n_b / (12 * (n + 1) * (n + 1)) *
            (n + 1 - r->ties / (n * (n - 1)));
}

static void z_and_p(double t, double e, double var, double *z, double *p)
{
    if (!(var > 0)) {
        *z = *p = NAN;
        return;
    }
    *z = (t - e) / sqrt(var);
    *p = erfc(fabs(*z) / sqrt(2.0));
}

static int compare_one(struct item *it, size_t n, struct matched_metric *out)
{
    /* matched: by stratum */
    qsort(it, n, sizeof(*it), cmp_item);
    double t = 0, e = 0, var = 0;
    size_t nstrata = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && it[j].stratum == it[i].stratum)
            j++;
        struct run r = rank_stratum(it + i, j - i);
        if (r.n_a && r.n_b) {
            struct matched_stratum *by = realloc(out->by, (nstrata + 1) * sizeof(*by));
            if (!by)
                return -ENOMEM;
            out->by = by;
            by[nstrata++] = (struct matched_stratum){
                .stratum = it[i].stratum, .n_a = (uint32_t)r.n_a, .n_b = (uint32_t)r.n_b,
                .median_a = median_of(it + i, j - i, 0, r.n_a),
                .median_b = median_of(it + i, j - i, 1, r.n_b)};
            out->cascades += r.n_a + r.n_b;
            add_share(&r, &t, &e, &var);
        }
        i = j;
    }
    out->strata = (uint32_t)nstrata;
    z_and_p(t, e, var, &out->z, &out->p);
    /* unmatched: one stratum of all */
    for (size_t i = 0; i < n; i++)
        it[i].stratum = 0;
    qsort(it, n, sizeof(*it), cmp_item);
    struct run all = rank_stratum(it, n);
    out->n_a = all.n_a;
    out->n_b = all.n_b;
    out->median_a = median_of(it, n, 0, all.n_a);
    out->median_b = median_of(it, n, 1, all.n_b);
    t = e = var = 0;
    if (all.n_a && all.n_b)
        add_share(&all, &t, &e, &var);
    z_and_p(t, e, var, &out->z_all, &out->p_all);
    return 0;
}

int matched_compare(const struct engine_labeled *v, size_t n, struct matched_metric out[MATCHED_METRICS])
{
    memset(out, 0, MATCHED_METRICS * sizeof(*out));
    struct item *it = malloc((n ? n : 1) * sizeof(*it));
    if (!it)
        return -ENOMEM;
    for (int m = 0; m < MATCHED_METRICS; m++) {
        out[m].metric = compared[m].name;
        for (size_t i = 0; i < n; i++)
            it[i] = (struct item){stratum_of(v[i].size), v[i].group, v[i].v[compared[m].slot]};
        if (compare_one(it, n, &out[m])) {
            free(it);
            matched_free(out);
            return -ENOMEM;
        }
    }
    free(it);
    return 0;
}

void matched_free(struct matched_metric out[MATCHED_METRICS])
{
    for (int m = 0; m < MATCHED_METRICS; m++) {
        free(out[m].by);
        out[m].by = NULL;
    }
}
