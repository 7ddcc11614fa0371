/* Property test of the label summary's incremental index (labels.c, issue 18): random event
 * streams with late parents (placeholders, joins, re-roots), withheld parents, duplicates,
 * labels on roots and on later posts, event-time retention (evictions) and snapshot save/load,
 * with engine_labels held after every step to engine_labels_scan, the one-pass computation it
 * replaced. Every figure must be bit-equal (the standard deviations too: both come from exact
 * sums of values and squares) except virality's mean: the scan adds the viralities
 * in cascade-id order in doubles, the index keeps their exact sum, so the two may differ by the
 * scan's rounding (at most n ulps for n cascades); 1e-12 relative bounds that for the sizes here.
 *
 * Environment: LABELS_ITER (streams, default 400), LABELS_SEED. A failure prints the seed, the
 * stream and the step. */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cascade/engine.h"
#include "engine/engine_int.h"
#include "engine/persist.h"

#define DEFAULT_ITER 400
#define DEFAULT_SEED 20261207ULL
#define MAX_POSTS    400

static uint64_t rng_s;

static uint64_t rnd(void)
{
    rng_s ^= rng_s >> 12;
    rng_s ^= rng_s << 25;
    rng_s ^= rng_s >> 27;
    return rng_s * 2685821657736338717ULL;
}

static uint32_t below(uint32_t n)
{
    return (uint32_t)(rnd() % n);
}

static uint64_t seed, iter;
static const char *step_what = "";
static uint32_t step_no;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL (LABELS_SEED=%" PRIu64 ", stream %" PRIu64 ", step %u after %s): ", seed,
            iter, step_no, step_what);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

struct tpost {
    int32_t parent; /* index of the parent in the forest, -1: a root */
    uint32_t actor;
    int64_t ts;
    const char *label;
    int withheld; /* never sent: stays a placeholder if named */
};

static const char *const labels[] = {"false", "true", "mixed", "unverified"};

static int apply(struct engine *e, const struct tpost *ps, uint32_t k)
{
    char id[32], par[32], actor[32];
    struct event_raw raw;
    memset(&raw, 0, sizeof(raw));
    snprintf(id, sizeof(id), "p%u", k);
    snprintf(actor, sizeof(actor), "a%u", ps[k].actor);
    raw.post = (struct event_field){.type = EVF_STR, .str = id, .len = (uint32_t)strlen(id)};
    raw.actor = (struct event_field){.type = EVF_STR, .str = actor, .len = (uint32_t)strlen(actor)};
    if (ps[k].parent >= 0) {
        snprintf(par, sizeof(par), "p%d", ps[k].parent);
        raw.parent =
            (struct event_field){.type = EVF_STR, .str = par, .len = (uint32_t)strlen(par)};
    }
    raw.ts.type = EVF_UINT;
    raw.ts.u = (uint64_t)ps[k].ts;
    if (ps[k].label)
        raw.label = (struct event_field){
            .type = EVF_STR, .str = ps[k].label, .len = (uint32_t)strlen(ps[k].label)};
    return engine_apply_raw(e, &raw);
}

static int same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof(a)) == 0 || (a == b && a != 0); /* 0.0 and -0.0 differ */
}

/* engine_labels against the scan; returns how many summaries. The index must not have gone
 * stale by itself (a key to unfile it did not hold): the rebuild would hide that. */
static uint32_t check(struct engine *e, int may_be_stale)
{
    struct engine_label_summary *a, *b;
    uint32_t na, nb;
    if (e->labels_ix.stale && !may_be_stale)
        fail("the index went stale (a key it did not hold, or out of memory)");
    if (engine_labels(e, &a, &na) || engine_labels_scan(e, &b, &nb))
        fail("engine_labels failed");
    if (na != nb)
        fail("%u summaries, the scan has %u", na, nb);
    for (uint32_t i = 0; i < na; i++) {
        const struct engine_label_summary *x = &a[i], *y = &b[i];
        char name[80];
        snprintf(name, sizeof(name), "%.*s", y->label ? (int)y->label_len : 6,
                 y->label ? y->label : "(none)");
        if (!x->label != !y->label || x->label_len != y->label_len ||
            (x->label && memcmp(x->label, y->label, x->label_len)))
            fail("summary %u: label differs", i);
        if (x->cascades != y->cascades)
            fail("%s: %u cascades, the scan %u", name, x->cascades, y->cascades);
        for (int m = 0; m < ENGINE_LABEL_METRICS; m++) {
            const struct engine_dist *dx = &x->dist[m], *dy = &y->dist[m];
            const char *mn = engine_label_metric_name(m);
            int mean_ok = m == ENGINE_LABEL_VIRALITY
                              ? fabs(dx->mean - dy->mean) <= 1e-12 * fabs(dy->mean)
                              : same_double(dx->mean, dy->mean);
            if (!mean_ok)
                fail("%s %s mean %.17g, the scan %.17g", name, mn, dx->mean, dy->mean);
            if (!same_double(dx->sd, dy->sd)) /* both from exact sums: bit-equal */
                fail("%s %s sd %.17g, the scan %.17g", name, mn, dx->sd, dy->sd);
            if (!same_double(dx->median, dy->median) || !same_double(dx->p90, dy->p90) ||
                !same_double(dx->max, dy->max))
                fail("%s %s median/p90/max %.17g %.17g %.17g, the scan %.17g %.17g %.17g", name, mn,
                     dx->median, dx->p90, dx->max, dy->median, dy->p90, dy->max);
        }
        if (!same_double(x->duration_median, y->duration_median))
            fail("%s duration median %.17g, the scan %.17g", name, x->duration_median,
                 y->duration_median);
    }
    free(a);
    free(b);
    return na;
}

static struct engine *reload(struct engine *e, int64_t retention)
{
    int fd = memfd_create("labels-snap", 0);
    uint64_t bytes;
    if (fd < 0 || engine_save(e, fd, "", 0, &bytes))
        fail("engine_save");
    void *p = mmap(NULL, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        fail("mmap");
    struct engine *l;
    char user[ENGINE_PERSIST_USER_MAX], err[256];
    uint32_t ulen;
    if (engine_load_mem(p, bytes, &l, user, &ulen, err, sizeof(err)))
        fail("engine_load_mem: %s", err);
    munmap(p, bytes);
    close(fd);
    engine_free(e);
    if (retention && engine_set_retention(l, retention))
        fail("engine_set_retention after the load");
    return l;
}

/* One random stream. */
static void run_stream(uint64_t *summaries)
{
    uint32_t n = 2 + below(below(4) ? 60 : MAX_POSTS);
    uint32_t actors = 1 + below(below(2) ? 4 : 30);
    struct tpost ps[MAX_POSTS + 2];
    uint32_t order[MAX_POSTS + 2];
    int label_pct = (int)below(5) * 10; /* 0..40 % of the posts carry a label */
    /* ms between posts (before jitter): sometimes a few, so that durations share buckets */
    int64_t gap = below(3) ? 1 + below(2000) : 1 + below(4);
    for (uint32_t k = 0; k < n; k++) {
        ps[k].parent = k && below(10) < 7 ? (int32_t)below(k) : -1;
        /* deep chains sometimes: the parent is the post just before */
        if (k && below(10) == 0)
            ps[k].parent = (int32_t)k - 1;
        ps[k].actor = below(actors);
        ps[k].ts = 1000000 + (int64_t)k * gap + below(3) * (int64_t)gap;
        ps[k].label = (int)below(100) < label_pct ? labels[below(below(3) ? 2 : 4)] : NULL;
        ps[k].withheld = below(20) == 0;
        order[k] = k;
    }
    /* delivery: mostly forward with local shuffles (late parents), sometimes fully shuffled */
    uint32_t window = below(3) == 0 ? n : 1 + below(8);
    for (uint32_t k = 0; k + 1 < n; k++) {
        uint32_t span = n - k < window ? n - k : window;
        uint32_t j = k + below(span);
        uint32_t t = order[k];
        order[k] = order[j];
        order[j] = t;
    }
    int64_t retention = below(3) == 0 ? (int64_t)(gap * (5 + below(40))) : 0;
    /* half the streams with tiny dense ranges and leaves: their keys go to the leaves and
     * buckets, which split and merge */
    labels_test_dense = below(2) ? 0 : 1 + below(4);
    struct engine *e;
    if (engine_new(&e))
        fail("engine_new");
    if (retention && engine_set_retention(e, retention))
        fail("engine_set_retention");
    step_no = 0;
    step_what = "nothing";
    *summaries += check(e, 0);
    for (uint32_t s = 0; s < n; s++) {
        uint32_t k = order[s];
        step_no = s + 1;
        if (ps[k].withheld)
            continue;
        apply(e, ps, k);
        step_what = "an event";
        if (below(8) == 0) { /* a duplicate of one sent before (or of this one) */
            apply(e, ps, order[below(s + 1)]);
            step_what = "a duplicate";
        }
        if (below(40) == 0) {
            e = reload(e, retention);
            step_what = "a snapshot load";
        }
        int stale = below(60) == 0;
        if (stale) { /* the path after a failed allocation: rebuilt by the next call */
            e->labels_ix.stale = 1;
            step_what = "marked stale";
        }
        *summaries += check(e, stale);
    }
    e = reload(e, retention);
    step_what = "the final snapshot load";
    *summaries += check(e, 0);
    engine_free(e);
}

int main(void)
{
    const char *v = getenv("LABELS_ITER");
    uint64_t n = v ? strtoull(v, NULL, 10) : DEFAULT_ITER;
    v = getenv("LABELS_SEED");
    seed = v ? strtoull(v, NULL, 10) : DEFAULT_SEED;
    uint64_t summaries = 0;
    for (iter = 0; iter < n; iter++) {
        rng_s = (seed + iter) * 0x9E3779B97F4A7C15ULL | 1;
        run_stream(&summaries);
    }
    printf("labels: %" PRIu64 " streams, %" PRIu64 " summaries equal to the scan's\n", n,
           summaries);
    return 0;
}
