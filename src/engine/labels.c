/* The label summary (DESIGN §3): per label, the distribution of the cascade metrics. Exact: one
 * pass groups every live cascade's value by label (a counting sort), then a histogram (small
 * integers) or a selection (the rest) finds each quantile in linear time, so a call costs
 * O(cascades) and no sort. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

static const char *const metric_names[ENGINE_LABEL_METRICS] = {
    "size", "depth", "max_breadth", "structural_virality", "unique_actors",
};

const char *engine_label_metric_name(int metric)
{
    return metric >= 0 && metric < ENGINE_LABEL_METRICS ? metric_names[metric] : NULL;
}

/* metric m of cascade c; m == ENGINE_LABEL_METRICS: duration_ms. */
static double metric_of(const struct cbody *c, int m)
{
    switch (m) {
    case ENGINE_LABEL_SIZE:
        return c->size;
    case ENGINE_LABEL_DEPTH:
        return c->depth;
    case ENGINE_LABEL_MAX_BREADTH:
        return c->max_breadth;
    case ENGINE_LABEL_VIRALITY:
        return cascade_virality(c);
    case ENGINE_LABEL_UNIQUE_ACTORS:
        return c->unique;
    default:
        return (double)(c->last_ts - c->first_ts);
    }
}

static void swap(double *a, size_t i, size_t j)
{
    double t = a[i];
    a[i] = a[j];
    a[j] = t;
}

/* Rearranges a[0..n) so that a[k] holds the k-th smallest, nothing larger before it and nothing
 * smaller after it (Hoare's selection; equal keys stop both scans, so runs of equal values,
 * which cascade sizes are full of, still split evenly). */
static double select_k(double *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < a[lo])
            swap(a, mid, lo);
        if (a[hi] < a[lo])
            swap(a, hi, lo);
        if (a[hi] < a[mid])
            swap(a, hi, mid);
        double pivot = a[mid];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                swap(a, i, j);
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return a[k];
}

/* The q-quantile, interpolating between the two nearest ranks. */
static double quantile(double *a, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t k = (size_t)pos;
    double frac = pos - (double)k, lo = select_k(a, n, k);
    if (frac == 0.0 || k + 1 >= n)
        return lo;
    double hi = a[k + 1];
    for (size_t i = k + 2; i < n; i++)
        if (a[i] < hi)
            hi = a[i];
    return lo + frac * (hi - lo);
}

/* Values below this, all integers (sizes, depths, breadths, actor counts mostly are), are
 * counted in a histogram instead of selected: a pass and no swaps, which is what keeps `labels`
 * short on the engine's thread with millions of cascades. */
#define HIST_MAX 65536

/* The k-th smallest (from 0) of the values counted in h. */
static double hist_kth(const uint32_t *h, uint32_t size, size_t k)
{
    size_t seen = 0;
    for (uint32_t v = 0; v < size; v++) {
        seen += h[v];
        if (seen > k)
            return v;
    }
    return size - 1;
}

static double hist_quantile(const uint32_t *h, uint32_t size, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t k = (size_t)pos;
    double frac = pos - (double)k, lo = hist_kth(h, size, k);
    return frac == 0.0 || k + 1 >= n ? lo : lo + frac * (hist_kth(h, size, k + 1) - lo);
}

/* Median and p90 from a histogram when every value is a small non-negative integer: 0, or -1
 * (nothing set) when they are not, or the histogram cannot be allocated. */
static int small_int_quantiles(const double *a, size_t n, double max, struct engine_dist *d)
{
    if (max >= HIST_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (a[i] < 0 || a[i] != (double)(uint32_t)a[i])
            return -1;
    uint32_t size = (uint32_t)max + 1;
    uint32_t *h = calloc(size, sizeof(uint32_t));
    if (!h)
        return -1;
    for (size_t i = 0; i < n; i++)
        h[(uint32_t)a[i]]++;
    d->median = hist_quantile(h, size, n, 0.5);
    d->p90 = hist_quantile(h, size, n, 0.9);
    free(h);
    return 0;
}

static void distribution(double *a, size_t n, struct engine_dist *d)
{
    double sum = 0, max = a[0];
    for (size_t i = 0; i < n; i++) {
        sum += a[i];
        if (a[i] > max)
            max = a[i];
    }
    d->mean = sum / (double)n;
    d->max = max;
    if (small_int_quantiles(a, n, max, d) == 0)
        return;
    d->median = quantile(a, n, 0.5);
    d->p90 = quantile(a, n, 0.9);
}

struct groups {
    uint32_t ngroups; /* labels + 1: the last group holds the unlabelled cascades */
    uint32_t *start;  /* ngroups + 1 offsets into the value array */
    uint32_t *fill;
};

static uint32_t group_of(const struct engine *e, const struct cascade *c)
{
    return cascade_label(c) == NONE ? e->labels.count : cascade_label(c);
}

#define NVALS (ENGINE_LABEL_METRICS + 1) /* the metrics and duration_ms */

/* Fills vals[m] with metric m of every live cascade, grouped by label: one pass over the
 * cascades (their records are the bulk of the memory read), not one per metric. */
static void gather(const struct engine *e, struct groups *g, double **vals)
{
    memcpy(g->fill, g->start, g->ngroups * sizeof(uint32_t));
    for (uint32_t i = 0; i < e->cascades.len; i++) {
        const struct cascade *c = cascade_at(e, i);
        if (cascade_dead(e, c))
            continue;
        uint32_t at = g->fill[group_of(e, c)]++;
        struct cbody tmp;
        const struct cbody *b = cascade_fig(e, c, &tmp);
        for (int m = 0; m < NVALS; m++)
            vals[m][at] = metric_of(b, m);
    }
}

static int cmp_summary(const void *pa, const void *pb)
{
    const struct engine_label_summary *a = pa, *b = pb;
    if (!a->label || !b->label)
        return !a->label - !b->label;
    uint32_t n = a->label_len < b->label_len ? a->label_len : b->label_len;
    int r = memcmp(a->label, b->label, n);
    return r ? r : (a->label_len > b->label_len) - (a->label_len < b->label_len);
}

static void summarise(const struct engine *e, struct groups *g, double **vals,
                      struct engine_label_summary *out, uint32_t *n)
{
    gather(e, g, vals);
    for (int m = 0; m < NVALS; m++) {
        uint32_t k = 0;
        for (uint32_t gi = 0; gi < g->ngroups; gi++) {
            uint32_t cnt = g->start[gi + 1] - g->start[gi];
            if (cnt == 0)
                continue;
            struct engine_label_summary *s = &out[k++];
            double *a = vals[m] + g->start[gi];
            if (m == 0) {
                s->cascades = cnt;
                if (gi < e->labels.count)
                    s->label = intern_str(&e->labels, gi, &s->label_len);
            }
            if (m < ENGINE_LABEL_METRICS)
                distribution(a, cnt, &s->dist[m]);
            else
                s->duration_median = quantile(a, cnt, 0.5);
        }
        *n = k;
    }
}

int engine_labels(struct engine *e, struct engine_label_summary **out, uint32_t *n)
{
    struct groups g = {.ngroups = e->labels.count + 1};
    g.start = calloc((size_t)g.ngroups + 1, sizeof(uint32_t));
    g.fill = calloc(g.ngroups, sizeof(uint32_t));
    struct engine_label_summary *res = calloc(g.ngroups, sizeof(*res));
    double *vals = NULL;
    if (g.start && g.fill) {
        for (uint32_t i = 0; i < e->cascades.len; i++) {
            const struct cascade *c = cascade_at(e, i);
            if (!cascade_dead(e, c))
                g.start[group_of(e, c) + 1]++;
        }
        for (uint32_t gi = 0; gi < g.ngroups; gi++)
            g.start[gi + 1] += g.start[gi];
        vals = malloc(((size_t)g.start[g.ngroups] + 1) * NVALS * sizeof(double));
    }
    if (!g.start || !g.fill || !vals || !res) {
        free(g.start);
        free(g.fill);
        free(vals);
        free(res);
        return -ENOMEM;
    }
    double *cols[NVALS];
    for (int m = 0; m < NVALS; m++)
        cols[m] = vals + (size_t)m * ((size_t)g.start[g.ngroups] + 1);
    *n = 0;
    summarise(e, &g, cols, res, n);
    qsort(res, *n, sizeof(*res), cmp_summary);
    free(g.start);
    free(g.fill);
    free(vals);
    *out = res;
    return 0;
}
