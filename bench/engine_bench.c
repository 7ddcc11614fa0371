/* engine-bench: the engine's apply rate and resident bytes per event, in-process, no network.
 * The shared workload model (include/cascade/gen.h, cascade-gen's) makes the stream, stored in
 * compact arrays first (not timed, not counted), applied through engine_apply in batches, then
 * checked against what the generator knows. */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <jemalloc/jemalloc.h>

#include "cascade/engine.h"
#include "cascade/gen.h"

/* bench/CMakeLists.txt links jemalloc except under the sanitizers: a weak reference lets one
 * source build both ways; the jemalloc figure then reads as unavailable. */
#pragma weak mallctl

/* The stream is the model's benchmark stream (gen_params_bench): 8 ms of event time an event. */
#define EVENTS_MAX 1000000000ull /* event indexes are 30-bit */
#define ROOT_BIT   0x80000000u   /* stream.actor: the event is a cascade's root */
#define PAGE_BIT   0x40000000u   /* stream.actor: the actor is a page */
#define INDEX_MASK 0x3fffffffu
#define KIND_SHIFT 30 /* stream.link of a reshare: the model's kind above the parent's index */
#define LABEL_MASK 7u /* stream.link of a root: url << 3 | label */
#define TOP        3

struct opts {
    uint64_t events, seed;
    uint64_t retention_ms; /* 0: off */
    uint32_t batch;
    int json;
};

/* What the generator knows about one cascade, to check the engine's incremental figures. */
struct expect {
    uint64_t root; /* event index */
    uint32_t size, depth, max_breadth, unique_actors;
    uint64_t wiener;
};

/* The stream, 10 bytes an event; each batch of struct event is rebuilt from it. Event i is the
 * model's post i + 1. */
struct stream {
    uint64_t n;
    uint32_t *actor; /* actor number | PAGE_BIT for a page | ROOT_BIT for a cascade root */
    uint32_t *link;  /* parent's event index | kind << KIND_SHIFT; for a root, url << 3 | label */
    uint16_t *dts;   /* ms since the previous event (saturated: ts stays non-decreasing) */
    uint32_t cascades, actors_used;
    uint32_t top_size[TOP];
    struct expect big; /* the largest cascade */
};

/* Generator-only state, unmapped before the engine's memory is measured. */
struct gen {
    uint32_t *root;      /* [i]: the event index of i's cascade root */
    uint32_t *size;      /* [root's index]: its cascade's posts */
    uint8_t *depth;      /* [i]: reshares between i and its root */
    uint64_t *seen[2];   /* bitmaps: accounts and pages that posted */
    uint64_t nactors[2]; /* their numbers run 1..nactors */
};

struct batch {
    struct event *evs;
    uint8_t *outcomes;
    char *text; /* the ids and contents evs point into */
    uint32_t cap;
};

struct result {
    double seconds, max_batch_s, gen_seconds;
    uint64_t max_batch_at; /* first event of the slowest batch: growth stalls show up here */
    /* the same in the thread's CPU time, which a loaded machine does not inflate */
    double max_batch_cpu_s;
    double cpu_seconds; /* the applying thread's CPU time, summed over the batches */
    uint64_t max_batch_cpu_at;
    uint64_t accepted, outcomes[EVENT_OUTCOME_COUNT + 1]; /* last: out-of-range outcome */
    long long rss0, rss1, alloc0, alloc1;
    struct engine_stats stats;
    struct engine_cascade top[TOP];
    int ntop, failures;
};

/* ---- small helpers ---- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Generator arrays come straight from mmap, so they never sit in the allocator's caches where the
 * engine could reuse them unseen; untouched pages cost nothing. */
static void *map(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        perror("engine-bench: mmap");
        exit(2);
    }
    return p;
}

static void unmap(void *p, size_t bytes)
{
    if (p)
        munmap(p, bytes ? bytes : 1);
}

static long long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* -1 when jemalloc is not the allocator (sanitizer builds). */
static long long jemalloc_allocated(void)
{
    uint64_t epoch = 1;
    size_t allocated, len = sizeof epoch;
    if (!mallctl || mallctl("epoch", &epoch, &len, &epoch, len) != 0)
        return -1;
    len = sizeof allocated;
    if (mallctl("stats.allocated", &allocated, &len, NULL, 0) != 0)
        return -1;
    return (long long)allocated;
}

/* ---- generator ---- */

static void note_top(struct stream *s, uint32_t size)
{
    for (int i = 0; i < TOP; i++) {
        if (size > s->top_size[i]) {
            memmove(&s->top_size[i + 1], &s->top_size[i], (TOP - 1 - i) * sizeof(uint32_t));
            s->top_size[i] = size;
            return;
        }
    }
}

/* One event of the model into the stream, and what the checks need to know of it. */
static void record(struct gen *g, struct stream *s, uint32_t i, const struct gen_event *ev,
                   int64_t *clock)
{
    int page = (ev->flags & GEN_EV_PAGE) != 0;
    uint64_t dt = (uint64_t)(ev->ts - *clock);
    s->dts[i] = dt > UINT16_MAX ? UINT16_MAX : (uint16_t)dt;
    *clock = ev->ts;
    g->seen[page][ev->actor / 64] |= 1ull << (ev->actor % 64);
    s->actor[i] = (uint32_t)ev->actor | (page ? PAGE_BIT : 0);
    if (!ev->parent) {
        s->actor[i] |= ROOT_BIT;
        s->link[i] = (uint32_t)ev->url << 3 | ev->label;
        g->root[i] = i;
        g->depth[i] = 0;
    } else {
        uint32_t pi = (uint32_t)(ev->parent - 1);
        s->link[i] = pi | (uint32_t)ev->kind << KIND_SHIFT;
        g->root[i] = g->root[pi];
        g->depth[i] = (uint8_t)(g->depth[pi] + 1);
    }
    g->size[g->root[i]]++;
}

static uint32_t count_bits(const uint64_t *bits, uint64_t n)
{
    uint32_t total = 0;
    for (uint64_t w = 0; w < (n + 64) / 64; w++)
        total += (uint32_t)__builtin_popcountll(bits[w]);
    return total;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* A cascade's position of event index ev among its posts (ascending event indexes). */
static uint32_t find_post(const uint32_t *evs, uint32_t n, uint32_t ev)
{
    uint32_t lo = 0, hi = n;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (evs[mid] <= ev)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Distinct actors among a cascade's posts (pages and accounts apart). */
static uint32_t count_distinct_actors(const struct stream *s, const uint32_t *evs, uint32_t n)
{
    uint32_t *a = malloc(n * sizeof *a), distinct = 0;
    if (!a)
        return 0;
    for (uint32_t k = 0; k < n; k++)
        a[k] = s->actor[evs[k]] & ~ROOT_BIT;
    qsort(a, n, sizeof *a, cmp_u32);
    for (uint32_t k = 0; k < n; k++)
        distinct += k == 0 || a[k] != a[k - 1];
    free(a);
    return distinct;
}

/* The largest cascade's metrics the slow, obvious way: W = sum over edges of s(n-s). */
static void expect_cascade(const struct gen *g, struct stream *s, uint32_t big)
{
    uint32_t n = g->size[big], *evs = malloc(n * sizeof *evs), *sub = malloc(n * sizeof *sub);
    uint32_t width[GEN_MAX_DEPTH + 2] = {0};
    struct expect *x = &s->big;
    *x = (struct expect){.root = big, .size = n};
    if (!evs || !sub) {
        fprintf(stderr, "engine-bench: out of memory for the checks\n");
        exit(2);
    }
    for (uint32_t i = big, k = 0; k < n; i++)
        if (g->root[i] == big)
            evs[k++] = i;
    for (uint32_t k = 0; k < n; k++)
        sub[k] = 1;
    for (uint32_t k = n - 1; k > 0; k--) {
        sub[find_post(evs, n, s->link[evs[k]] & INDEX_MASK)] += sub[k];
        x->wiener += (uint64_t)sub[k] * (n - sub[k]);
    }
    for (uint32_t k = 0; k < n; k++) {
        uint8_t d = g->depth[evs[k]];
        width[d]++;
        x->depth = d > x->depth ? d : x->depth;
    }
    for (int d = 0; d <= GEN_MAX_DEPTH + 1; d++)
        x->max_breadth = width[d] > x->max_breadth ? width[d] : x->max_breadth;
    x->unique_actors = count_distinct_actors(s, evs, n);
    free(evs);
    free(sub);
}

static void gen_free(struct gen *g, uint64_t n)
{
    unmap(g->root, n * sizeof *g->root);
    unmap(g->size, n * sizeof *g->size);
    unmap(g->depth, n);
    for (int k = 0; k < 2; k++)
        unmap(g->seen[k], (g->nactors[k] + 64) / 64 * 8);
}

/* The model's first o->events events, in event-time order. */
static void generate(struct stream *s, const struct opts *o)
{
    struct gen_params p;
    struct gen_model *m;
    char err[160];
    gen_params_bench(&p, o->events, o->seed);
    int rc = gen_model_new(&m, &p, err, sizeof err);
    if (rc) {
        fprintf(stderr, "engine-bench: %s\n", rc == -EINVAL ? err : "out of memory");
        exit(2);
    }
    struct gen_spaces sp = gen_model_spaces(m);
    struct gen g = {.nactors = {sp.accounts, sp.pages}};
    s->n = o->events;
    s->actor = map(s->n * sizeof *s->actor);
    s->link = map(s->n * sizeof *s->link);
    s->dts = map(s->n * sizeof *s->dts);
    g.root = map(s->n * sizeof *g.root);
    g.size = map(s->n * sizeof *g.size);
    g.depth = map(s->n);
    for (int k = 0; k < 2; k++)
        g.seen[k] = map((g.nactors[k] + 64) / 64 * 8);
    int64_t clock = (int64_t)p.start_ts;
    struct gen_event ev;
    for (uint64_t i = 0; i < s->n; i++) {
        if ((rc = gen_model_next(m, &ev)) != 1) {
            fprintf(stderr, "engine-bench: the model stopped: %s\n", strerror(rc ? -rc : EIO));
            exit(2);
        }
        record(&g, s, (uint32_t)i, &ev, &clock);
    }
    gen_model_free(m);
    uint32_t big = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (!(s->actor[i] & ROOT_BIT))
            continue;
        s->cascades++;
        note_top(s, g.size[i]);
        big = g.size[i] > g.size[big] ? i : big;
    }
    s->actors_used = count_bits(g.seen[0], g.nactors[0]) + count_bits(g.seen[1], g.nactors[1]);
    expect_cascade(&g, s, big);
    gen_free(&g, s->n);
}

static void stream_free(struct stream *s)
{
    unmap(s->actor, s->n * sizeof *s->actor);
    unmap(s->link, s->n * sizeof *s->link);
    unmap(s->dts, s->n * sizeof *s->dts);
}

/* ---- applying ---- */

/* The buffers are written through once here, so that their pages are resident before the
 * baseline RSS is read and do not show up as the engine's (large batches are megabytes). */
static int batch_init(struct batch *b, uint32_t cap)
{
    b->cap = cap;
    b->evs = malloc(cap * sizeof *b->evs);
    b->outcomes = malloc(cap);
    b->text = malloc((size_t)cap * GEN_EVENT_TEXT);
    if (!b->evs || !b->outcomes || !b->text)
        return -ENOMEM;
    memset(b->evs, 0xa5, cap * sizeof *b->evs);
    memset(b->outcomes, 0xa5, cap);
    memset(b->text, 0xa5, (size_t)cap * GEN_EVENT_TEXT);
    return 0;
}

static void batch_free(struct batch *b)
{
    free(b->evs);
    free(b->outcomes);
    free(b->text);
}

/* Event i of the stream as the model made it, its strings written at p (GEN_EVENT_TEXT bytes). */
static void build_event(const struct stream *s, uint64_t i, int64_t ts, struct event *ev, char *p)
{
    uint32_t a = s->actor[i], link = s->link[i];
    struct gen_event g = {
        .post = i + 1, .actor = a & INDEX_MASK, .ts = ts, .flags = a & PAGE_BIT ? GEN_EV_PAGE : 0};
    if (a & ROOT_BIT) {
        g.url = link >> 3;
        g.label = (uint8_t)(link & LABEL_MASK);
    } else {
        g.parent = (link & INDEX_MASK) + 1;
        g.kind = (uint8_t)(link >> KIND_SHIFT);
    }
    gen_event_fill(&g, ev, p);
}

static uint32_t fill_batch(struct batch *b, const struct stream *s, uint64_t from, int64_t *ts)
{
    uint32_t n = s->n - from < b->cap ? (uint32_t)(s->n - from) : b->cap;
    for (uint32_t j = 0; j < n; j++) {
        *ts += s->dts[from + j];
        build_event(s, from + j, *ts, &b->evs[j], b->text + (size_t)j * GEN_EVENT_TEXT);
    }
    return n;
}

/* Only engine_apply is timed: building the batches is the decoder's work, not the engine's. */
#define ANALYTICS_EVERY 500000 /* events: about a minute of the server at 8 K events/s */

static void apply_all(struct engine *e, const struct stream *s, struct batch *b, struct result *r,
                      int retention)
{
    int64_t ts = GEN_DEFAULT_START_TS;
    for (uint64_t i = 0; i < s->n;) {
        uint32_t n = fill_batch(b, s, i, &ts);
        double t0 = now_s(), c0 = cpu_s();
        r->accepted += engine_apply(e, b->evs, n, b->outcomes);
        double dt = now_s() - t0, dc = cpu_s() - c0;
        r->seconds += dt;
        r->cpu_seconds += dc;
        if (dc > r->max_batch_cpu_s) {
            r->max_batch_cpu_s = dc;
            r->max_batch_cpu_at = i;
        }
        if (dt > r->max_batch_s) {
            r->max_batch_s = dt;
            r->max_batch_at = i;
        }
        for (uint32_t j = 0; j < n; j++)
            r->outcomes[b->outcomes[j] < EVENT_OUTCOME_COUNT ? b->outcomes[j]
                                                             : EVENT_OUTCOME_COUNT]++;
        /* under retention the names of actors and contents left without posts are deleted as
         * the analytics worker takes its copies: take one as the server would (not timed) */
        if (retention && (i + n) / ANALYTICS_EVERY != i / ANALYTICS_EVERY) {
            struct engine_copy snap;
            if (engine_copy_take(e, &snap) == 0)
                engine_copy_free(&snap);
        }
        i += n;
    }
}

/* ---- checks ---- */

static void check(struct result *r, const char *what, uint64_t got, uint64_t want)
{
    if (got == want)
        return;
    fprintf(stderr, "engine-bench: MISMATCH %s: engine %" PRIu64 ", expected %" PRIu64 "\n", what,
            got, want);
    r->failures++;
}

static void check_big(struct engine *e, const struct stream *s, struct result *r)
{
    const struct expect *x = &s->big;
    struct engine_cascade c;
    char root[24];
    uint32_t len = (uint32_t)snprintf(root, sizeof root, "p%" PRIu64, x->root + 1);
    if (engine_cascade(e, root, len, &c) != 0) {
        fprintf(stderr, "engine-bench: MISMATCH largest cascade %.*s not found\n", (int)len, root);
        r->failures++;
        return;
    }
    double pairs = (double)x->size * (x->size - 1) / 2, sv = pairs > 0 ? x->wiener / pairs : 0;
    check(r, "largest cascade size", c.size, x->size);
    check(r, "largest cascade missing", c.missing, 0);
    check(r, "largest cascade depth", c.depth, x->depth);
    check(r, "largest cascade max_breadth", c.max_breadth, x->max_breadth);
    check(r, "largest cascade wiener", c.wiener, x->wiener);
    check(r, "largest cascade unique_actors", c.unique_actors, x->unique_actors);
    check(r, "largest cascade structural_virality (x1e9)", llround(c.structural_virality * 1e9),
          llround(sv * 1e9));
}

static void check_all(struct engine *e, const struct stream *s, struct result *r)
{
    check(r, "accepted (engine_apply)", r->accepted, s->n);
    check(r, "outcome ok (seen by the bench)", r->outcomes[EVENT_OK], s->n);
    check(r, "outcome ok (stats)", r->stats.outcomes[EVENT_OK], s->n);
    check(r, "outcomes out of range", r->outcomes[EVENT_OUTCOME_COUNT], 0);
    check(r, "posts", r->stats.posts, s->n);
    check(r, "placeholders", r->stats.placeholders, 0);
    check(r, "cascades", r->stats.cascades, s->cascades);
    check(r, "actors", r->stats.actors, s->actors_used);
    for (int i = 0; i < TOP && s->top_size[i]; i++)
        check(r, "top cascade size", i < r->ntop ? r->top[i].size : 0, s->top_size[i]);
    check_big(e, s, r);
}

/* ---- output ---- */

static double per_event(long long a, long long b, uint64_t n)
{
    return (double)(b - a) / (double)n;
}

static void print_human(const struct opts *o, const struct stream *s, const struct result *r)
{
    const struct engine_stats *st = &r->stats;
    printf("engine-bench: %" PRIu64 " events, seed %" PRIu64 ", batch %u\n", o->events, o->seed,
           o->batch);
    printf("generated  %u cascades, %u actors in %.2f s (not timed)\n", s->cascades, s->actors_used,
           r->gen_seconds);
    printf("apply      %.3f s: %.0f events/s (slowest batch %.2f ms, at event %" PRIu64
           "; in CPU time %.2f ms, at event %" PRIu64 ")\n",
           r->seconds, o->events / r->seconds, r->max_batch_s * 1e3, r->max_batch_at,
           r->max_batch_cpu_s * 1e3, r->max_batch_cpu_at);
    /* CPU time counts less of what other processes on the machine do (not their share of the
     * caches), so it compares two builds run at different loads better than wall time */
    printf("apply CPU  %.3f s: %.0f events/s\n", r->cpu_seconds, o->events / r->cpu_seconds);
    printf("memory     RSS %.1f bytes/event (+%.1f MiB)", per_event(r->rss0, r->rss1, o->events),
           (r->rss1 - r->rss0) / 1048576.0);
    if (r->alloc0 >= 0)
        printf("; jemalloc allocated %.1f bytes/event", per_event(r->alloc0, r->alloc1, o->events));
    else
        printf("; jemalloc not linked");
    printf("; engine tables %.1f bytes/event\n", (double)st->bytes / o->events);
    printf("engine     posts %" PRIu64 ", placeholders %" PRIu64 ", cascades %" PRIu64
           ", actors %" PRIu64 ", edges %" PRIu64 ", contents %" PRIu64 ", labels %" PRIu64 "\n",
           st->posts, st->placeholders, st->cascades, st->actors, st->edges, st->contents,
           st->labels);
    for (int i = 0; i < r->ntop; i++) {
        const struct engine_cascade *c = &r->top[i];
        printf("top %d      %.*s: size %u, depth %u, max_breadth %u, virality %.3f, actors %u, "
               "label %.*s\n",
               i + 1, (int)c->root_len, c->root, c->size, c->depth, c->max_breadth,
               c->structural_virality, c->unique_actors, c->label ? (int)c->label_len : 1,
               c->label ? c->label : "-");
    }
    if (st->retention_ms)
        printf("retention  %" PRId64 " ms: %" PRIu64 " cascades and %" PRIu64 " posts evicted; "
               "figures not checked\n",
               st->retention_ms, st->evicted_cascades, st->evicted_posts);
    else
        printf("check      %s\n", r->failures ? "FAILED (see above)" : "ok");
}

static void print_json_str(const char *p, uint32_t len)
{
    putchar('"');
    for (uint32_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void print_json(const struct opts *o, const struct stream *s, const struct result *r)
{
    const struct engine_stats *st = &r->stats;
    printf("{\"events\":%" PRIu64 ",\"seed\":%" PRIu64 ",\"batch\":%u,\"seconds\":%.6f,"
           "\"events_per_s\":%.0f,\"max_batch_ms\":%.3f,\"max_batch_at\":%" PRIu64 ","
           "\"max_batch_cpu_ms\":%.3f,\"max_batch_cpu_at\":%" PRIu64 ","
           "\"cpu_seconds\":%.6f,\"cpu_events_per_s\":%.0f,\"rss_bytes_per_event\":%.2f,",
           o->events, o->seed, o->batch, r->seconds, o->events / r->seconds, r->max_batch_s * 1e3,
           r->max_batch_at, r->max_batch_cpu_s * 1e3, r->max_batch_cpu_at, r->cpu_seconds,
           o->events / r->cpu_seconds, per_event(r->rss0, r->rss1, o->events));
    if (r->alloc0 >= 0)
        printf("\"allocated_bytes_per_event\":%.2f,", per_event(r->alloc0, r->alloc1, o->events));
    else
        printf("\"allocated_bytes_per_event\":null,");
    printf("\"table_bytes_per_event\":%.2f,\"posts\":%" PRIu64 ",\"placeholders\":%" PRIu64
           ",\"cascades\":%" PRIu64 ",\"actors\":%" PRIu64 ",\"edges\":%" PRIu64 ",\"top\":[",
           (double)st->bytes / o->events, st->posts, st->placeholders, st->cascades, st->actors,
           st->edges);
    for (int i = 0; i < r->ntop; i++) {
        printf("%s{\"root\":", i ? "," : "");
        print_json_str(r->top[i].root, r->top[i].root_len);
        printf(",\"size\":%u,\"depth\":%u,\"structural_virality\":%.6f}", r->top[i].size,
               r->top[i].depth, r->top[i].structural_virality);
    }
    printf("],\"check\":\"%s\"}\n", r->failures ? "failed" : "ok");
}

/* ---- main ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: engine-bench [--events N] [--seed S] [--batch B] [--retention MS] [--json]\n"
               "  Generates N share events with the shared workload model (cascade-gen's, at its\n"
               "  defaults; same seed, same events),\n"
               "  applies them to the engine in batches of B and reports the apply rate, the\n"
               "  engine's resident bytes per event and a check of its figures.\n"
               "  --events N  1..1000000000, default 10000000\n"
               "  --seed S    default 1\n"
               "  --batch B   events per engine_apply call, 1..1048576, default 4096\n"
               "  --retention MS  evict cascades idle for MS of event time (the stream spans\n"
               "              8 ms per event: 10 M events ~ 22 h); the figure checks are then\n"
               "              skipped, the evicted counts shown instead\n"
               "  --json      one line of JSON instead of the report\n"
               "Exit status: 0, 1 when the check fails, 2 on a usage or setup error.\n");
}

static int parse_u64(const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (!arg || *arg < '0' || *arg > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    uint64_t batch = 4096;
    *o = (struct opts){.events = 10000000, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--json")) {
            o->json = 1;

        } else if (!strcmp(a, "--events") && !parse_u64(v, 1, EVENTS_MAX, &o->events)) {
            i++;
        } else if (!strcmp(a, "--seed") && !parse_u64(v, 0, UINT64_MAX, &o->seed)) {
            i++;
        } else if (!strcmp(a, "--batch") && !parse_u64(v, 1, 1u << 20, &batch)) {
            i++;
        } else if (!strcmp(a, "--retention") &&
                   !parse_u64(v, 1, 100ull * 366 * 86400000, &o->retention_ms)) {
            i++;
        } else {
            int known = !strcmp(a, "--events") || !strcmp(a, "--seed") || !strcmp(a, "--batch") ||
                        !strcmp(a, "--retention");
            if (known)
                fprintf(stderr, "engine-bench: bad value for %s: '%s'\n", a, v ? v : "");
            else
                fprintf(stderr, "engine-bench: unknown argument '%s'\n", a);
            usage(stderr);
            return -1;
        }
    }
    o->batch = (uint32_t)batch;
    return 0;
}

/* Times engine_top_growth over three windows (the first call builds the per-second counts the
 * second reuses) and engine_content of the largest cascade's key. After the memory figures, so
 * that what the queries build does not count as the apply path's. */
static void time_queries(struct engine *e, const struct opts *o, const struct result *r)
{
    static const int64_t windows[] = {60000, 3600000, 86400000};
    struct engine_cascade top[10];
    struct engine_stats st;
    for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
        double t0 = now_s();
        int n = engine_top_growth(e, windows[i], NULL, top, 10);
        double t1 = now_s();
        engine_top_growth(e, windows[i], NULL, top, 10);
        double t2 = now_s();
        printf("growth     window %" PRId64 " s: %.3f ms, then %.3f ms (top growth %" PRIu64 ")\n",
               windows[i] / 1000, (t1 - t0) * 1e3, (t2 - t1) * 1e3, n > 0 ? top[0].growth : 0);
    }
    if (r->ntop > 0 && r->top[0].content) {
        struct engine_content c;
        double t0 = now_s();
        int n = engine_content(e, r->top[0].content, r->top[0].content_len, &c, top, 10);
        double t1 = now_s();
        printf("content    %.*s: %.3f ms (%" PRIu64 " posts, %u cascades)\n",
               (int)r->top[0].content_len, r->top[0].content, (t1 - t0) * 1e3, n >= 0 ? c.posts : 0,
               n >= 0 ? c.cascades : 0);
    }
    /* the label summary (issue 18: a `labels` call on the engine thread); the first call's
     * figures in full, so that two builds' answers can be compared */
    for (int k = 0; k < 3; k++) {
        struct engine_label_summary *ls;
        uint32_t nl = 0;
        double t0 = now_s();
        int rc = engine_labels(e, &ls, &nl);
        double t1 = now_s();
        if (rc) {
            printf("labels     failed: %s\n", strerror(-rc));
            break;
        }
        printf("labels     %.3f ms (%u labels)\n", (t1 - t0) * 1e3, nl);
        for (uint32_t i = 0; k == 0 && i < nl; i++) {
            printf("  %-8.*s %u cascades, duration median %.17g;",
                   ls[i].label ? (int)ls[i].label_len : 1, ls[i].label ? ls[i].label : "-",
                   ls[i].cascades, ls[i].duration_median);
            for (int m = 0; m < ENGINE_LABEL_METRICS; m++)
                printf(" %s %.17g/%.17g/%.17g/%.17g", engine_label_metric_name(m),
                       ls[i].dist[m].mean, ls[i].dist[m].median, ls[i].dist[m].p90,
                       ls[i].dist[m].max);
            printf("\n");
        }
        free(ls);
    }
    engine_get_stats(e, &st);
    printf("           engine tables %.1f bytes/event after these queries\n",
           (double)st.bytes / o->events);
}

static int run(const struct opts *o, const struct stream *s, struct result *r)
{
    struct engine *e;
    struct batch b;
    if (batch_init(&b, o->batch) != 0) {
        fprintf(stderr, "engine-bench: out of memory\n");
        return -1;
    }
    r->rss0 = rss_bytes(); /* after the stream and the batch buffers, before the engine */
    r->alloc0 = jemalloc_allocated();
    if (engine_new(&e) != 0 || engine_set_retention(e, (int64_t)o->retention_ms) != 0) {
        fprintf(stderr, "engine-bench: engine_new: out of memory\n");
        batch_free(&b);
        return -1;
    }
    apply_all(e, s, &b, r, o->retention_ms != 0);
    r->rss1 = rss_bytes();
    r->alloc1 = jemalloc_allocated();
    engine_get_stats(e, &r->stats);
    int n = engine_top_cascades(e, ENGINE_BY_SIZE, NULL, r->top, TOP);
    r->ntop = n > 0 ? n : 0;
    if (n < 0)
        fprintf(stderr, "engine-bench: engine_top_cascades: %s\n", strerror(-n));
    if (!o->retention_ms) /* the expected figures are those of the whole stream */
        check_all(e, s, r);
    if (o->json) /* before engine_free: the cascades' strings are the engine's */
        print_json(o, s, r);
    else
        print_human(o, s, r);
    if (!o->json)
        time_queries(e, o, r);
    engine_free(e);
    batch_free(&b);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct stream s = {0};
    struct result r = {0};
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    double t0 = now_s();
    generate(&s, &o);
    r.gen_seconds = now_s() - t0;
    if (run(&o, &s, &r) != 0)
        return 2;
    stream_free(&s);
    return r.failures ? 1 : 0;
}
