/* The label summary (DESIGN §3): per label, the count of cascades and the distribution (mean,
 * median, p90, max) of each cascade metric, plus the median duration; exact, quantiles by linear
 * interpolation between the two nearest ranks.
 *
 * Kept up to date by the apply path (issue 18, "no pauses"): a `labels` call used to group every
 * live cascade by label and select each quantile, O(cascades) on the engine's thread (549 ms at
 * 10 M events). Now each label has an index of its cascades' figures and a call only reads
 * quantiles off it: O(labels x (dense range + buckets + leaves)), some 0.02-0.06 ms at 10 M
 * events (engine-bench).
 *
 * - Every cascade files six keys in its label's index: size, depth, max_breadth, virality,
 *   unique_actors and duration_ms, each into a multiset of 64-bit keys ordered as the values
 *   are (an integer as is; a double by its ordered bits; an int64 with its sign bit flipped),
 *   so that the k-th key decodes to exactly the k-th value the scan's selection found.
 * - A root alone (84 % of the cascades at 10 M events) files nothing but a count per label: its
 *   figures are constants (single_key), which the reads add in. A cascade with a body files its
 *   keys: those below a bound are counted by value (dense, grown as needed: sizes, depths,
 *   breadths, actor counts and durations under a minute mostly are), durations above it in
 *   log-linear buckets of exact values (found by arithmetic: durations spread wide and move on
 *   nearly every reshare), the rest (viralities, rare huge integers) in a counted list of sorted
 *   (key, count) leaves, each leaf's total beside its lower bound.
 * - Sums for the means: the integer metrics in 64 bits (the scan's double sums of integers are
 *   exact below 2^53, so the means are bit-equal); virality exactly, in 128-bit fixed point
 *   with 64 fraction bits (a virality is 0 or >= 1, so no bit is lost), and the mean is that
 *   exact sum rounded once: the scan's running double sum differs from it by its own rounding
 *   (n ulps at most; 1.6e-12 relative seen at 10 M events), every other figure is bit-equal.
 * - The apply path calls labels_before on a cascade before it changes it and labels_after once
 *   it is done; labels_before reads the keys the cascade filed (nothing else changes them in
 *   between), so no bytes per cascade or body are spent remembering them; it also prefetches
 *   where the move will land, which the apply path's own work in between hides. A joined
 *   cascade is dropped, an evicted one unfiled. Memory: the index is ~1.3 bytes/event at 10 M
 *   events (engine tables 105.5 -> 106.8).
 * - The index costs the apply path 10-30 % at 10 M events (engine-bench, same run: cache misses
 *   as each reshare moves its cascade's keys), so it is built only by the first `labels` call
 *   (one pass, as the scan costs: 0.5 s at 10 M events, once) and kept from then on; a server
 *   nobody asks for labels pays nothing, and a snapshot load leaves it to the next call.
 * - An allocation that fails on the apply path marks the index stale instead of failing the
 *   event: the next `labels` call rebuilds it (one pass, as the scan costs), or answers from
 *   the scan if that fails too.
 *
 * engine_labels_scan, the former one-pass computation (a counting sort by label, then a
 * histogram or a selection per metric), is kept as the tests' oracle (tests/property/
 * test_labels.c). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "engine/engine_int.h"

static const char *const metric_names[ENGINE_LABEL_METRICS] = {
    "size", "depth", "max_breadth", "structural_virality", "unique_actors",
};

const char *engine_label_metric_name(int metric)
{
    return metric >= 0 && metric < ENGINE_LABEL_METRICS ? metric_names[metric] : NULL;
}

/* ================================================================ the scan (tests' oracle) */

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

/* The sample standard deviation (n - 1) from exact sums s1 = Σx and s2 = Σx², both integers in
 * units of 2^-shift (0: integer metrics; 64: virality's fixed point); NAN below two values.
 * The index and the scan both come here with the same sums, so their answers are bit-equal. */
static double sd_from(uint64_t n, unsigned __int128 s1, unsigned __int128 s2, int shift)
{
    if (n < 2)
        return NAN;
    long double var;
    if (shift == 0) { /* n * s2 - s1^2 exactly: n Σx² >= (Σx)² */
        unsigned __int128 num = (unsigned __int128)n * s2 - s1 * s1;
        var = (long double)num / ((long double)n * (long double)(n - 1));
    } else {
        long double a = ldexpl((long double)s1, -shift), b = ldexpl((long double)s2, -shift);
        var = (b - a * a / (long double)n) / (long double)(n - 1);
    }
    return var > 0 ? (double)sqrtl(var) : 0.0;
}

static int fixed_of(double v, unsigned __int128 *out);
static int fixed_sq(double v, unsigned __int128 *out);

/* The exact sums of metric m over a for sd_from (integers as they are, viralities in fixed
 * point); NAN when a value is out of the fixed point's range. */
static double sd_of(const double *a, size_t n, int m)
{
    unsigned __int128 s1 = 0, s2 = 0, f, q;
    for (size_t i = 0; i < n; i++) {
        if (m == ENGINE_LABEL_VIRALITY) {
            if (fixed_of(a[i], &f) || fixed_sq(a[i], &q))
                return NAN;
        } else {
            f = (unsigned __int128)(uint64_t)a[i];
            q = f * f;
        }
        s1 += f;
        s2 += q;
    }
    return sd_from(n, s1, s2, m == ENGINE_LABEL_VIRALITY ? 64 : 0);
}

static void distribution(double *a, size_t n, int m, struct engine_dist *d)
{
    double sum = 0, max = a[0];
    for (size_t i = 0; i < n; i++) {
        sum += a[i];
        if (a[i] > max)
            max = a[i];
    }
    d->mean = sum / (double)n;
    d->sd = sd_of(a, n, m);
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
                distribution(a, cnt, m, &s->dist[m]);
            else
                s->duration_median = quantile(a, cnt, 0.5);
        }
        *n = k;
    }
}

int engine_labeled(const struct engine *e, const char *a, uint32_t alen, const char *b,
                   uint32_t blen, struct engine_labeled **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    uint32_t id[2] = {NONE, NONE};
    const char *name[2] = {a, b};
    uint32_t len[2] = {alen, blen};
    for (int g = 0; g < 2; g++)
        if (len[g] <= INTERN_MAX_LEN)
            id[g] = intern_find(&e->labels, name[g], len[g], hash_bytes(name[g], len[g]));
    if (id[0] == NONE && id[1] == NONE)
        return 0;
    size_t cap = 0, k = 0;
    struct engine_labeled *v = NULL;
    for (uint32_t i = 0; i < e->cascades.len; i++) {
        const struct cascade *c = cascade_at(e, i);
        uint32_t lab = cascade_label(c);
        if (lab == NONE || (lab != id[0] && lab != id[1]) || cascade_dead(e, c))
            continue;
        if (k == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            struct engine_labeled *x = realloc(v, nc * sizeof(*x));
            if (!x) {
                free(v);
                return -ENOMEM;
            }
            v = x;
            cap = nc;
        }
        struct cbody tmp;
        const struct cbody *f = cascade_fig(e, c, &tmp);
        struct engine_labeled *r = &v[k++];
        r->group = lab == id[0] ? 0 : 1; /* a == b: every cascade in A */
        r->size = f->size;
        for (int m = 0; m < ENGINE_LABEL_METRICS; m++)
            r->v[m] = metric_of(f, m == ENGINE_LABEL_SIZE ? ENGINE_LABEL_METRICS : m);
    }
    *out = v;
    *n = k;
    return 0;
}

int engine_labels_scan(struct engine *e, struct engine_label_summary **out, uint32_t *n)
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

/* ================================================================ the incremental index */

#define NV        LABELS_NV /* the metrics and duration_ms */
#define V_DUR     ENGINE_LABEL_METRICS
#define SIGN      0x8000000000000000ull
#define LEAF      64         /* (key, count) pairs per leaf */
#define DENSE     (1u << 14) /* keys counted by value: base .. base + DENSE - 1 */
#define DENSE_DUR (1u << 16) /* for duration_ms: a minute */

struct leaf {
    uint32_t n;
    uint32_t cnt[LEAF];
    uint64_t key[LEAF]; /* ascending */
};

/* duration_ms's keys past the dense range (below 2^42 ms), in buckets of a log-linear scale
 * (2^BK_MANT a power of two, as a floating-point number's exponent and top mantissa bits): a
 * bucket is found by arithmetic, not by a search, and holds its exact values as sorted (offset
 * in the bucket, count) pairs. Durations spread wide (at 10 M events most of the keys that move
 * on a reshare are durations): the leaves' two binary searches per move, or unsorted buckets'
 * scans, cost the apply path more than this direct look-up and one short search. */
#define BK_MANT 10
#define BK_TOP  (1ull << 42)             /* larger durations go to the leaves */
#define BK_MAX  ((42u - 15u) << BK_MANT) /* bucket indexes */

struct dent {
    uint32_t off, cnt;
};

struct bucket {
    uint32_t n, cap, total;
    struct dent *ent; /* by off */
};

/* A multiset of 64-bit keys. Keys base + d with d < dmax are counted in dense[d] (nd long,
 * grown to need); the others lie in the buckets (bucketed: duration_ms, below BK_TOP) or
 * in the leaves, leaf i holding keys >= lo[i] (lo[0] = 0) and below every key of leaf i + 1,
 * lc[i] of them counted with their multiplicity. Only leaf 0 may be empty. */
struct ostat {
    uint64_t base, dtotal, ttotal, btotal; /* in dense, the leaves, the buckets */
    uint32_t dmax, nd, nl, capl;
    uint32_t *dense;
    struct leaf **lf;
    uint64_t *lo, *lc;
    struct bucket *bk;
    uint32_t nbk, bucketed;
    uint32_t lcap; /* a leaf's capacity: LEAF, less under labels_test_dense */
};

/* One label's cascades (or the unlabelled ones'). A root alone is only counted (singles): its
 * keys are the constants single_key, which the reads add in. */
struct lab_stats {
    uint64_t n, singles;
    uint64_t isum[NV];          /* sums of the integer metrics (not of virality, duration) */
    unsigned __int128 isq[NV];  /* and of their squares, for the standard deviation */
    unsigned __int128 vsum;     /* sum of the viralities, fixed point: 2^-64 units */
    unsigned __int128 vsq;      /* sum of their squares (each rounded to a double), the same */
    struct ostat os[NV];
};

uint32_t labels_test_dense;

static const uint64_t single_key[LABELS_NV] = {1, 0, 1, SIGN /* 0.0 */, 1, SIGN /* 0 ms */};

static uint64_t key_of_double(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    return u & SIGN ? ~u : u | SIGN;
}

static double double_of_key(uint64_t k)
{
    uint64_t u = k & SIGN ? k & ~SIGN : ~k;
    double v;
    memcpy(&v, &u, sizeof(v));
    return v;
}

static double decode(int m, uint64_t k)
{
    if (m == ENGINE_LABEL_VIRALITY)
        return double_of_key(k);
    if (m == V_DUR)
        return (double)(int64_t)(k ^ SIGN);
    return (double)k;
}

/* A cascade's keys, what labels_before hands labels_after. */
static void figures(const struct engine *e, uint32_t cid, struct labels_was *w)
{
    const struct cascade *c = cascade_at(e, cid);
    w->label = cascade_label(c);
    uint32_t body = cascade_body_id(c);
    const struct cbody *b = body == NONE ? NULL : cbody_at(e, body);
    /* a root alone: cascade_fig's constants, single_key. It may have a body already (engine.c's
     * reserve makes one for a deep join that may yet be refused) holding the same figures. */
    w->single = !b || (b->size == 1 && b->missing == 0 && b->depth == 0);
    if (w->single)
        return;
    w->key[ENGINE_LABEL_SIZE] = b->size;
    w->key[ENGINE_LABEL_DEPTH] = b->depth;
    w->key[ENGINE_LABEL_MAX_BREADTH] = b->max_breadth;
    w->key[ENGINE_LABEL_VIRALITY] = key_of_double(cascade_virality(b));
    w->key[ENGINE_LABEL_UNIQUE_ACTORS] = b->unique;
    w->key[V_DUR] = (uint64_t)(b->last_ts - b->first_ts) ^ SIGN;
}

/* ---------------------------------------------------------------- the multiset */

static void os_init(struct ostat *o, int m)
{
    memset(o, 0, sizeof(*o));
    o->base = m == ENGINE_LABEL_VIRALITY || m == V_DUR ? SIGN : 0;
    /* a virality is 0 or >= 1; durations spread wider than the integer metrics */
    o->dmax = m == ENGINE_LABEL_VIRALITY ? 1 : m == V_DUR ? DENSE_DUR : DENSE;
    o->lcap = LEAF;
    if (labels_test_dense && m != ENGINE_LABEL_VIRALITY)
        o->dmax = labels_test_dense;
    if (labels_test_dense)
        o->lcap = 4;
    o->bucketed = m == V_DUR;
}

static void os_free(struct ostat *o)
{
    for (uint32_t i = 0; i < o->nl; i++)
        free(o->lf[i]);
    free(o->lf);
    free(o->lo);
    free(o->lc);
    free(o->dense);
    for (uint32_t i = 0; i < o->nbk; i++)
        free(o->bk[i].ent);
    free(o->bk);
    memset(o, 0, sizeof(*o));
}

static size_t os_bytes(const struct ostat *o)
{
    size_t b = (size_t)o->nd * sizeof(uint32_t) + (size_t)o->nl * sizeof(struct leaf) +
               (size_t)o->capl * (sizeof(struct leaf *) + 2 * sizeof(uint64_t)) +
               (size_t)o->nbk * sizeof(struct bucket);
    for (uint32_t i = 0; i < o->nbk; i++)
        b += (size_t)o->bk[i].cap * sizeof(struct dent);
    return b;
}

/* ---- the buckets (d = key - base >= 2^16) */

/* d's bucket (d < BK_TOP): below 2^16 (only when a test shrinks the dense range) 64 values a
 * bucket, then 2^BK_MANT a power of two. */
static uint32_t bk_index(uint64_t d)
{
    if (d < 1u << 16)
        return (uint32_t)(d >> 6);
    int e = 63 - __builtin_clzll(d);
    return (uint32_t)(e - 15) << BK_MANT | ((uint32_t)(d >> (e - BK_MANT)) & ((1u << BK_MANT) - 1));
}

/* The first value of bucket i, and the bits of an offset in it. */
static uint64_t bk_start(uint32_t i, int *bits)
{
    if (i < 1u << BK_MANT) {
        *bits = 6;
        return (uint64_t)i << 6;
    }
    int e = (int)(i >> BK_MANT) + 15;
    *bits = e - BK_MANT;
    return 1ull << e | (uint64_t)(i & ((1u << BK_MANT) - 1)) << (e - BK_MANT);
}

/* The first place in b whose offset is >= off. */
static uint32_t bk_pos(const struct bucket *b, uint32_t off)
{
    uint32_t a = 0, z = b->n;
    while (a < z) {
        uint32_t mid = a + (z - a) / 2;
        if (b->ent[mid].off < off)
            a = mid + 1;
        else
            z = mid;
    }
    return a;
}

static int bk_add(struct ostat *o, uint64_t d)
{
    uint32_t i = bk_index(d);
    if (i >= o->nbk) {
        uint32_t n = o->nbk ? o->nbk : 64;
        while (n <= i)
            n *= 2;
        if (n > BK_MAX)
            n = BK_MAX;
        struct bucket *bk = realloc(o->bk, (size_t)n * sizeof(*bk));
        if (!bk)
            return -ENOMEM;
        memset(bk + o->nbk, 0, (size_t)(n - o->nbk) * sizeof(*bk));
        o->bk = bk;
        o->nbk = n;
    }
    struct bucket *b = &o->bk[i];
    int bits;
    uint32_t off = (uint32_t)(d - bk_start(i, &bits)), p = bk_pos(b, off);
    if (p == b->n || b->ent[p].off != off) {
        if (b->n == b->cap) {
            uint32_t cap = b->cap ? b->cap * 2 : 2;
            struct dent *ent = realloc(b->ent, (size_t)cap * sizeof(*ent));
            if (!ent)
                return -ENOMEM;
            b->ent = ent;
            b->cap = cap;
        }
        memmove(b->ent + p + 1, b->ent + p, (b->n - p) * sizeof(*b->ent));
        b->ent[p] = (struct dent){off, 0};
        b->n++;
    }
    b->ent[p].cnt++;
    b->total++;
    o->btotal++;
    return 0;
}

static int bk_del(struct ostat *o, uint64_t d)
{
    uint32_t i = bk_index(d);
    if (i >= o->nbk)
        return -ENOENT;
    struct bucket *b = &o->bk[i];
    int bits;
    uint32_t off = (uint32_t)(d - bk_start(i, &bits)), p = bk_pos(b, off);
    if (p == b->n || b->ent[p].off != off)
        return -ENOENT;
    if (--b->ent[p].cnt == 0) {
        b->n--;
        memmove(b->ent + p, b->ent + p + 1, (b->n - p) * sizeof(*b->ent));
        if (b->n == 0) { /* an empty bucket keeps nothing */
            free(b->ent);
            b->ent = NULL;
            b->cap = 0;
        }
    }
    b->total--;
    o->btotal--;
    return 0;
}

/* The k-th smallest key in the buckets (k < btotal). */
static uint64_t bk_kth(const struct ostat *o, uint64_t k)
{
    uint32_t i = 0;
    while (k >= o->bk[i].total)
        k -= o->bk[i++].total;
    const struct bucket *b = &o->bk[i];
    int bits;
    uint64_t start = bk_start(i, &bits);
    for (uint32_t j = 0;; j++) {
        if (k < b->ent[j].cnt)
            return o->base + start + b->ent[j].off;
        k -= b->ent[j].cnt;
    }
}

static uint64_t bk_max(const struct ostat *o)
{
    uint32_t i = o->nbk;
    while (o->bk[i - 1].total == 0)
        i--;
    const struct bucket *b = &o->bk[i - 1];
    int bits;
    return o->base + bk_start(i - 1, &bits) + b->ent[b->n - 1].off;
}

/* ---- the leaves */

/* The leaf whose range holds k: the last with lo <= k (there is one: lo[0] = 0). */
static uint32_t os_leaf(const struct ostat *o, uint64_t k)
{
    uint32_t a = 0, b = o->nl; /* lo[a] <= k, and k < lo[b] (b == nl: none) */
    while (b - a > 1) {
        uint32_t mid = a + (b - a) / 2;
        if (o->lo[mid] <= k)
            a = mid;
        else
            b = mid;
    }
    return a;
}

/* The first place in l whose key is >= k. */
static uint32_t leaf_pos(const struct leaf *l, uint64_t k)
{
    uint32_t a = 0, b = l->n;
    while (a < b) {
        uint32_t mid = a + (b - a) / 2;
        if (l->key[mid] < k)
            a = mid + 1;
        else
            b = mid;
    }
    return a;
}

static int os_room_leaves(struct ostat *o)
{
    if (o->nl < o->capl)
        return 0;
    uint32_t cap = o->capl ? o->capl * 2 : 4;
    struct leaf **lf = realloc(o->lf, cap * sizeof(*lf));
    if (lf)
        o->lf = lf;
    uint64_t *lo = lf ? realloc(o->lo, cap * sizeof(*lo)) : NULL;
    if (lo)
        o->lo = lo;
    uint64_t *lc = lo ? realloc(o->lc, cap * sizeof(*lc)) : NULL;
    if (!lc)
        return -ENOMEM;
    o->lc = lc;
    o->capl = cap;
    return 0;
}

/* Leaf i, full, gives its upper half to a new leaf i + 1. */
static int os_split(struct ostat *o, uint32_t i)
{
    struct leaf *nl = malloc(sizeof(*nl));
    if (!nl || os_room_leaves(o)) {
        free(nl);
        return -ENOMEM;
    }
    struct leaf *l = o->lf[i];
    uint32_t half = l->n / 2, moved = l->n - half;
    nl->n = moved;
    memcpy(nl->key, l->key + half, moved * sizeof(uint64_t));
    memcpy(nl->cnt, l->cnt + half, moved * sizeof(uint32_t));
    l->n = half;
    uint64_t c = 0;
    for (uint32_t j = 0; j < moved; j++)
        c += nl->cnt[j];
    uint32_t tail = o->nl - (i + 1);
    memmove(o->lf + i + 2, o->lf + i + 1, tail * sizeof(*o->lf));
    memmove(o->lo + i + 2, o->lo + i + 1, tail * sizeof(*o->lo));
    memmove(o->lc + i + 2, o->lc + i + 1, tail * sizeof(*o->lc));
    o->lf[i + 1] = nl;
    o->lo[i + 1] = nl->key[0];
    o->lc[i + 1] = c;
    o->lc[i] -= c;
    o->nl++;
    return 0;
}

static int os_add(struct ostat *o, uint64_t k)
{
    uint64_t d = k - o->base;
    if (d < o->dmax) {
        if (d >= o->nd) {
            uint32_t nd = o->nd ? o->nd : 16;
            while (nd <= d)
                nd *= 2;
            if (nd > o->dmax)
                nd = o->dmax;
            uint32_t *dense = realloc(o->dense, nd * sizeof(uint32_t));
            if (!dense)
                return -ENOMEM;
            memset(dense + o->nd, 0, (nd - o->nd) * sizeof(uint32_t));
            o->dense = dense;
            o->nd = nd;
        }
        o->dense[d]++;
        o->dtotal++;
        return 0;
    }
    if (o->bucketed && d < BK_TOP)
        return bk_add(o, d);
    if (o->nl == 0) {
        if (os_room_leaves(o))
            return -ENOMEM;
        struct leaf *l = malloc(sizeof(*l));
        if (!l)
            return -ENOMEM;
        l->n = 0;
        o->lf[0] = l;
        o->lo[0] = 0;
        o->lc[0] = 0;
        o->nl = 1;
    }
    uint32_t i = os_leaf(o, k);
    struct leaf *l = o->lf[i];
    uint32_t p = leaf_pos(l, k);
    if (p < l->n && l->key[p] == k) {
        l->cnt[p]++;
    } else {
        if (l->n == o->lcap) {
            if (os_split(o, i))
                return -ENOMEM;
            if (k >= o->lo[i + 1])
                i++;
            l = o->lf[i];
            p = leaf_pos(l, k);
        }
        memmove(l->key + p + 1, l->key + p, (l->n - p) * sizeof(uint64_t));
        memmove(l->cnt + p + 1, l->cnt + p, (l->n - p) * sizeof(uint32_t));
        l->key[p] = k;
        l->cnt[p] = 1;
        l->n++;
    }
    o->lc[i]++;
    o->ttotal++;
    return 0;
}

/* Leaf i + 1 merged into leaf i (both fit in one), or dropped when empty. */
static void os_merge(struct ostat *o, uint32_t i)
{
    struct leaf *a = o->lf[i], *b = o->lf[i + 1];
    memcpy(a->key + a->n, b->key, b->n * sizeof(uint64_t));
    memcpy(a->cnt + a->n, b->cnt, b->n * sizeof(uint32_t));
    a->n += b->n;
    o->lc[i] += o->lc[i + 1];
    free(b);
    uint32_t tail = o->nl - (i + 2);
    memmove(o->lf + i + 1, o->lf + i + 2, tail * sizeof(*o->lf));
    memmove(o->lo + i + 1, o->lo + i + 2, tail * sizeof(*o->lo));
    memmove(o->lc + i + 1, o->lc + i + 2, tail * sizeof(*o->lc));
    o->nl--;
}

/* -ENOENT when k is not there (the index no longer matches the records). */
static int os_del(struct ostat *o, uint64_t k)
{
    uint64_t d = k - o->base;
    if (d < o->dmax) {
        if (d >= o->nd || o->dense[d] == 0)
            return -ENOENT;
        o->dense[d]--;
        o->dtotal--;
        return 0;
    }
    if (o->bucketed && d < BK_TOP)
        return bk_del(o, d);
    if (o->nl == 0)
        return -ENOENT;
    uint32_t i = os_leaf(o, k);
    struct leaf *l = o->lf[i];
    uint32_t p = leaf_pos(l, k);
    if (p == l->n || l->key[p] != k)
        return -ENOENT;
    if (--l->cnt[p] == 0) {
        l->n--;
        memmove(l->key + p, l->key + p + 1, (l->n - p) * sizeof(uint64_t));
        memmove(l->cnt + p, l->cnt + p + 1, (l->n - p) * sizeof(uint32_t));
    }
    o->lc[i]--;
    o->ttotal--;
    /* thin leaves merge with a neighbour, so that churn cannot leave a leaf per key; an empty
     * one always goes (only a lone leaf may be empty: os_max reads the last one's last key) */
    if (l->n < o->lcap / 4 && o->nl > 1) {
        if (i + 1 < o->nl && (l->n == 0 || l->n + o->lf[i + 1]->n <= o->lcap / 2))
            os_merge(o, i);
        else if (i > 0 && (l->n == 0 || l->n + o->lf[i - 1]->n <= o->lcap / 2))
            os_merge(o, i - 1);
    }
    return 0;
}

/* One key a replaced by b: where both lie in the same leaf (a cascade's figure moving a little,
 * the common case), one search and one short move instead of a removal and an insertion. */
static int os_move(struct ostat *o, uint64_t a, uint64_t b)
{
    if (!o->bucketed && a - o->base >= o->dmax && b - o->base >= o->dmax && o->nl) {
        uint32_t i = os_leaf(o, a);
        if (b >= o->lo[i] && (i + 1 == o->nl || b < o->lo[i + 1])) {
            struct leaf *l = o->lf[i];
            uint32_t pa = leaf_pos(l, a), pb = leaf_pos(l, b);
            if (pa == l->n || l->key[pa] != a)
                return -ENOENT;
            if (pb < l->n && l->key[pb] == b) {
                l->cnt[pb]++;
                if (--l->cnt[pa] == 0) {
                    l->n--;
                    memmove(l->key + pa, l->key + pa + 1, (l->n - pa) * sizeof(uint64_t));
                    memmove(l->cnt + pa, l->cnt + pa + 1, (l->n - pa) * sizeof(uint32_t));
                }
                return 0;
            }
            if (l->cnt[pa] == 1) { /* a's slot slides to b's place */
                if (pb > pa) {
                    pb--;
                    memmove(l->key + pa, l->key + pa + 1, (pb - pa) * sizeof(uint64_t));
                    memmove(l->cnt + pa, l->cnt + pa + 1, (pb - pa) * sizeof(uint32_t));
                } else {
                    memmove(l->key + pb + 1, l->key + pb, (pa - pb) * sizeof(uint64_t));
                    memmove(l->cnt + pb + 1, l->cnt + pb, (pa - pb) * sizeof(uint32_t));
                }
                l->key[pb] = b;
                l->cnt[pb] = 1;
                return 0;
            }
        }
    }
    int rc = os_del(o, a);
    return rc ? rc : os_add(o, b);
}

/* The k-th smallest key (from 0; k < the count). */
static uint64_t os_kth(struct ostat *o, uint64_t k)
{
    if (k < o->dtotal) {
        for (uint32_t d = 0;; d++) {
            if (k < o->dense[d])
                return o->base + d;
            k -= o->dense[d];
        }
    }
    k -= o->dtotal;
    if (k < o->btotal)
        return bk_kth(o, k);
    k -= o->btotal;
    uint32_t i = 0;
    while (k >= o->lc[i])
        k -= o->lc[i++];
    const struct leaf *l = o->lf[i];
    for (uint32_t p = 0;; p++) {
        if (k < l->cnt[p])
            return l->key[p];
        k -= l->cnt[p];
    }
}

static uint64_t os_max(const struct ostat *o)
{
    if (!o->ttotal && o->btotal)
        return bk_max(o);
    if (o->ttotal) {
        const struct leaf *l = o->lf[o->nl - 1];
        return l->key[l->n - 1];
    }
    uint32_t d = o->nd;
    while (d > 0 && o->dense[d - 1] == 0)
        d--;
    return o->base + (d ? d - 1 : 0);
}

/* ---------------------------------------------------------------- filing */

static int fixed_in(double v, int max_log2, unsigned __int128 *out);

static int fixed_of(double v, unsigned __int128 *out)
{
    return fixed_in(v, 31, out);
}

/* v * v (rounded to a double once, so that filing and unfiling a value move the sum by the same
 * amount) times 2^64 as an integer: exact for v * v < 2^63. */
static int fixed_sq(double v, unsigned __int128 *out)
{
    return fixed_in(v * v, 62, out);
}

/* v * 2^64 as an integer, from its bits (no libm on the apply path): exact for 0 and for
 * 2^-11 <= v < 2^32 (a virality is 0 or >= 1, and below its cascade's node count); -ERANGE
 * otherwise (the index then goes stale and the scan answers). */
static int fixed_in(double v, int max_log2, unsigned __int128 *out)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    *out = 0;
    if (u == 0)
        return 0;
    int ex = (int)(u >> 52); /* sign bit set: out of range below */
    if (ex < 1023 - 11 || ex > 1023 + max_log2)
        return -ERANGE;
    uint64_t mant = (u & ((1ull << 52) - 1)) | 1ull << 52; /* v = mant * 2^(ex - 1075) */
    *out = (unsigned __int128)mant << (ex - 1075 + 64);
    return 0;
}

static struct lab_stats *stats_new(void)
{
    struct lab_stats *s = calloc(1, sizeof(*s));
    if (s)
        for (int m = 0; m < NV; m++)
            os_init(&s->os[m], m);
    return s;
}

static void stats_free(struct lab_stats *s)
{
    if (!s)
        return;
    for (int m = 0; m < NV; m++)
        os_free(&s->os[m]);
    free(s);
}

/* The stats of label (NONE: the unlabelled), made if missing; NULL when out of memory. */
static struct lab_stats *stats_of(struct labels_index *x, uint32_t label)
{
    uint32_t slot = label == NONE ? 0 : label + 1;
    if (slot >= x->nslot) {
        uint32_t n = x->nslot ? x->nslot : 8;
        while (n <= slot)
            n = n > UINT32_MAX / 2 ? slot + 1 : n * 2;
        struct lab_stats **s = realloc(x->slot, (size_t)n * sizeof(*s));
        if (!s)
            return NULL;
        memset(s + x->nslot, 0, (size_t)(n - x->nslot) * sizeof(*s));
        x->slot = s;
        x->nslot = n;
    }
    if (!x->slot[slot])
        x->slot[slot] = stats_new();
    return x->slot[slot];
}

static int is_int_metric(int m)
{
    return m != ENGINE_LABEL_VIRALITY && m != V_DUR;
}

/* Adds (sign > 0) or removes key k of metric m to or from s's sums. */
static int sum(struct lab_stats *s, int m, uint64_t k, int sign)
{
    if (m == ENGINE_LABEL_VIRALITY) {
        unsigned __int128 f;
        if (fixed_of(double_of_key(k), &f))
            return -ERANGE;
        unsigned __int128 q;
        if (fixed_sq(double_of_key(k), &q))
            return -ERANGE;
        s->vsum = sign > 0 ? s->vsum + f : s->vsum - f;
        s->vsq = sign > 0 ? s->vsq + q : s->vsq - q;
    } else if (is_int_metric(m)) {
        unsigned __int128 q = (unsigned __int128)k * k; /* modular: the true sum fits at the end */
        s->isum[m] = sign > 0 ? s->isum[m] + k : s->isum[m] - k;
        s->isq[m] = sign > 0 ? s->isq[m] + q : s->isq[m] - q;
    }
    return 0;
}

/* Adds (sign > 0) or removes key k of metric m in s. */
static int put(struct lab_stats *s, int m, uint64_t k, int sign)
{
    if (sum(s, m, k, sign))
        return -ERANGE;
    return sign > 0 ? os_add(&s->os[m], k) : os_del(&s->os[m], k);
}

static void mark_stale(struct engine *e)
{
    e->labels_ix.stale = 1;
}

/* Files (sign > 0) or unfiles the whole of w. */
static int file_all(struct engine *e, const struct labels_was *w, int sign)
{
    struct lab_stats *s = stats_of(&e->labels_ix, w->label);
    if (!s)
        return -ENOMEM;
    if (w->single) {
        s->singles = sign > 0 ? s->singles + 1 : s->singles - 1;
        s->n = sign > 0 ? s->n + 1 : s->n - 1;
        return 0;
    }
    for (int m = 0; m < NV; m++)
        if (put(s, m, w->key[m], sign))
            return -ENOMEM;
    s->n = sign > 0 ? s->n + 1 : s->n - 1;
    return 0;
}

/* Where key k of o lies, asked for early: the apply path's own work between labels_before and
 * labels_after hides the cache misses of the move. */
static void os_prefetch(const struct ostat *o, uint64_t k)
{
    uint64_t d = k - o->base;
    if (d < o->dmax) {
        if (d < o->nd)
            __builtin_prefetch(o->dense + d, 1);
    } else if (o->bucketed && d < BK_TOP) {
        uint32_t i = bk_index(d);
        if (i < o->nbk) {
            __builtin_prefetch(o->bk + i, 1);
            if (o->bk[i].ent) /* an empty bucket has no array: no arithmetic on NULL */
                __builtin_prefetch(o->bk[i].ent + o->bk[i].n / 2, 1);
        }
    } else if (o->nl) {
        const struct leaf *l = o->lf[os_leaf(o, k)];
        __builtin_prefetch(l, 1);
        __builtin_prefetch(l->key + LEAF / 2, 1);
    }
}

void labels_before(const struct engine *e, uint32_t cid, struct labels_was *w)
{
    if (!e->labels_ix.on || e->labels_ix.stale) { /* labels_after and labels_drop skip it too */
        w->single = 1;
        w->label = NONE;
        return;
    }
    figures(e, cid, w);
    const struct labels_index *x = &e->labels_ix;
    uint32_t slot = w->label == NONE ? 0 : w->label + 1;
    if (w->single || slot >= x->nslot || !x->slot[slot])
        return;
    const struct lab_stats *s = x->slot[slot];
    os_prefetch(&s->os[ENGINE_LABEL_VIRALITY], w->key[ENGINE_LABEL_VIRALITY]);
    os_prefetch(&s->os[V_DUR], w->key[V_DUR]);
    /* and where the duration will likely go: up to the newest event's time (streams come
     * mostly in time order), which a bucket a thousandth of the value wide usually holds */
    const struct cbody *b = cbody_at(e, cascade_body_id(cascade_at(e, cid)));
    if (e->growth.has_newest && e->growth.newest > b->last_ts)
        os_prefetch(&s->os[V_DUR], (uint64_t)(e->growth.newest - b->first_ts) ^ SIGN);
}

void labels_after(struct engine *e, uint32_t cid, const struct labels_was *w)
{
    if (!e->labels_ix.on || e->labels_ix.stale)
        return;
    struct labels_was now;
    figures(e, cid, &now);
    if (!w) {
        if (file_all(e, &now, 1))
            mark_stale(e);
        return;
    }
    if (now.single && w->single && now.label == w->label) /* nothing to move */
        return;
    if (now.label != w->label || now.single != w->single) {
        if (file_all(e, w, -1) || file_all(e, &now, 1))
            mark_stale(e);
        return;
    }
    struct lab_stats *s = stats_of(&e->labels_ix, w->label);
    for (int m = 0; s && m < NV; m++) {
        if (now.key[m] == w->key[m])
            continue;
        if (sum(s, m, w->key[m], -1) || sum(s, m, now.key[m], 1) ||
            os_move(&s->os[m], w->key[m], now.key[m])) {
            s = NULL;
            break;
        }
    }
    if (!s)
        mark_stale(e);
}

void labels_drop(struct engine *e, const struct labels_was *w)
{
    if (e->labels_ix.on && !e->labels_ix.stale && file_all(e, w, -1))
        mark_stale(e);
}

void labels_unfile(struct engine *e, uint32_t cid)
{
    struct labels_was w;
    labels_before(e, cid, &w);
    labels_drop(e, &w);
}

void labels_destroy(struct engine *e)
{
    struct labels_index *x = &e->labels_ix;
    for (uint32_t i = 0; i < x->nslot; i++)
        stats_free(x->slot[i]);
    free(x->slot);
    memset(x, 0, sizeof(*x));
}

int labels_rebuild(struct engine *e)
{
    labels_destroy(e);
    for (uint32_t i = 0; i < e->cascades.len; i++) {
        if (cascade_dead(e, cascade_at(e, i)))
            continue;
        struct labels_was w;
        figures(e, i, &w);
        if (file_all(e, &w, 1)) {
            labels_destroy(e);
            mark_stale(e);
            return -ENOMEM;
        }
    }
    return 0;
}

size_t labels_bytes(const struct engine *e)
{
    const struct labels_index *x = &e->labels_ix;
    size_t b = (size_t)x->nslot * sizeof(*x->slot);
    for (uint32_t i = 0; i < x->nslot; i++) {
        if (!x->slot[i])
            continue;
        b += sizeof(struct lab_stats);
        for (int m = 0; m < NV; m++)
            b += os_bytes(&x->slot[i]->os[m]);
    }
    return b;
}

/* ---------------------------------------------------------------- reading */

/* The k-th smallest key of metric m among s's cascades: o's and the singles' constant. */
static uint64_t kth(struct lab_stats *s, int m, uint64_t k)
{
    struct ostat *o = &s->os[m];
    uint64_t x = single_key[m], below = 0; /* o's keys below x: x is base or base + 1 */
    for (uint64_t d = 0; d < x - o->base && d < o->nd; d++)
        below += o->dense[d];
    if (k < below)
        return os_kth(o, k);
    if (k < below + s->singles)
        return x;
    return os_kth(o, k - s->singles);
}

/* The q-quantile of metric m, as the scan's quantile() and hist_quantile() interpolate. */
static double quantile_of(struct lab_stats *s, int m, double q)
{
    uint64_t n = s->n;
    double pos = q * (double)(n - 1);
    size_t k = (size_t)pos;
    double frac = pos - (double)k, lo = decode(m, kth(s, m, k));
    if (frac == 0.0 || k + 1 >= n)
        return lo;
    return lo + frac * (decode(m, kth(s, m, k + 1)) - lo);
}

static void summary_of(const struct engine *e, uint32_t slot, struct lab_stats *s,
                       struct engine_label_summary *out)
{
    out->cascades = (uint32_t)s->n;
    if (slot > 0)
        out->label = intern_str(&e->labels, slot - 1, &out->label_len);
    double n = (double)s->n;
    for (int m = 0; m < ENGINE_LABEL_METRICS; m++) {
        struct engine_dist *d = &out->dist[m];
        const struct ostat *o = &s->os[m];
        if (m == ENGINE_LABEL_VIRALITY) { /* the singles' are 0 */
            d->mean = ldexp((double)s->vsum, -64) / n;
            d->sd = sd_from(s->n, s->vsum, s->vsq, 64);
        } else {
            uint64_t one = single_key[m];
            d->mean = (double)(s->isum[m] + s->singles * one) / n;
            d->sd = sd_from(s->n, s->isum[m] + s->singles * one,
                            s->isq[m] + (unsigned __int128)s->singles * one * one, 0);
        }
        d->median = quantile_of(s, m, 0.5);
        d->p90 = quantile_of(s, m, 0.9);
        uint64_t max = o->dtotal + o->ttotal + o->btotal ? os_max(o) : single_key[m];
        if (s->singles && single_key[m] > max)
            max = single_key[m];
        d->max = decode(m, max);
    }
    out->duration_median = quantile_of(s, V_DUR, 0.5);
}

int engine_labels(struct engine *e, struct engine_label_summary **out, uint32_t *n)
{
    if (!e->labels_ix.on || e->labels_ix.stale) { /* the first call, or after a failure */
        if (labels_rebuild(e))
            return engine_labels_scan(e, out, n);
        e->labels_ix.on = 1;
    }
    const struct labels_index *x = &e->labels_ix;
    uint32_t live = 0;
    for (uint32_t i = 0; i < x->nslot; i++)
        live += x->slot[i] && x->slot[i]->n;
    struct engine_label_summary *res = calloc(live ? live : 1, sizeof(*res));
    if (!res)
        return -ENOMEM;
    uint32_t k = 0;
    for (uint32_t i = 0; i < x->nslot; i++)
        if (x->slot[i] && x->slot[i]->n)
            summary_of(e, i, x->slot[i], &res[k++]);
    qsort(res, k, sizeof(*res), cmp_summary);
    *out = res;
    *n = k;
    return 0;
}
