/* engine-bench: the engine's apply rate and resident bytes per event, in-process, no network.
 * A realistically shaped stream is generated into compact arrays first (not timed, not counted),
 * applied through engine_apply in batches, then checked against what the generator knows. */

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

/* bench/CMakeLists.txt links jemalloc except under the sanitizers: a weak reference lets one
 * source build both ways; the jemalloc figure then reads as unavailable. */
#pragma weak mallctl

/* The shape of the stream. Numbers chosen to look like public retweet data (Twitter15/16, the
 * Goel et al. cascades): most cascades are singletons, a few reach tens of thousands of posts,
 * most reshares hit the root directly, and a minority of actors make most posts. */
#define ACTORS_PER_EVENT 0.2    /* ~N/5 distinct actors */
#define ZIPF_S           0.8    /* actor and url popularity: the top actor makes ~1% of posts */
#define SIZE_ALPHA       1.2    /* P(size >= s) ~ s^-1.2: ~56% singletons, mean ~5 */
#define SIZE_CAP         50000u /* largest cascade (fewer for tiny runs) */
#define ROOT_PARENT_P    0.65   /* a reshare of the root itself: star-like trees */
#define MAX_DEPTH        10     /* reshares of reshares stop here */
#define LABEL_P          0.05   /* roots with a fact-check label */
#define MS_PER_EVENT     8      /* event time: 10 M events span about a day */
#define TS_BASE          1700000000000LL
#define EVENTS_MAX       1000000000ull /* ids and offsets are 32-bit */
#define ROOT_BIT         0x80000000u
#define TEXT_PER_EVENT   64 /* "p" + 10 digits, "u" + 10, "p" + 10, "url:" + 10 */
#define TOP              3

static const char *const label_names[] = {NULL, "false", "true", "unverified"};

struct opts {
    uint64_t events, seed;
    uint64_t retention_ms; /* 0: off */
    uint32_t batch;
    int json;
};

struct rng {
    uint64_t s;
};

/* What the generator knows about one cascade, to check the engine's incremental figures. */
struct expect {
    uint64_t root; /* event index */
    uint32_t size, depth, max_breadth, unique_actors;
    uint64_t wiener;
};

/* The stream, 10 bytes an event; each batch of struct event is rebuilt from it. */
struct stream {
    uint64_t n;
    uint32_t *actor; /* actor number, | ROOT_BIT for a cascade root */
    uint32_t *link;  /* parent's event index; for a root, content number << 2 | label code */
    uint16_t *dts;   /* ms since the previous event (saturated: ts stays non-decreasing) */
    uint32_t cascades, actors_used;
    uint32_t top_size[TOP];
    struct expect big; /* the largest cascade */
};

/* One cascade as planned: size and lifetime first, then posts emitted in event-time order. */
struct plan {
    uint64_t start;
    uint32_t size, done, life_ms, first; /* first: its posts' offset in gen.slot/gen.depth */
};

struct heap_ent {
    uint64_t t;
    uint32_t cascade;
};

/* Generator-only state, unmapped before the engine's memory is measured. */
struct gen {
    struct rng rng;
    struct plan *plan;
    uint32_t nplans, nactors, nurls, big;
    uint32_t *slot; /* [plan.first + k]: event index of the cascade's k-th post */
    uint8_t *depth; /* [plan.first + k]: that post's depth */
    uint64_t *seen; /* bitmap: actors that posted */
    struct heap_ent *heap;
    uint32_t heap_len;
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
    uint64_t accepted, outcomes[EVENT_OUTCOME_COUNT + 1]; /* last: out-of-range outcome */
    long long rss0, rss1, alloc0, alloc1;
    struct engine_stats stats;
    struct engine_cascade top[TOP];
    int ntop, failures;
};

/* ---- small helpers ---- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* splitmix64: tiny, fast and good enough to shape a workload; deterministic per seed. */
static uint64_t next64(struct rng *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    return mix64(r->s);
}

static double u01(struct rng *r)
{
    return (double)(next64(r) >> 11) * 0x1.0p-53;
}

/* Continuous Zipf(s) by inverse CDF over [1, n+1), shifted to 0..n-1: rank 0 is the busiest. */
static uint32_t zipf(struct rng *r, uint32_t n)
{
    double a = pow((double)n + 1.0, 1.0 - ZIPF_S) - 1.0;
    double x = pow(a * u01(r) + 1.0, 1.0 / (1.0 - ZIPF_S)) - 1.0;
    return x >= n ? n - 1 : (uint32_t)x;
}

/* Pareto sizes, redrawn above the cap so that the tail keeps its shape instead of piling up. */
static uint32_t draw_size(struct rng *r, uint32_t cap)
{
    for (;;) {
        double s = floor(pow(1.0 - u01(r), -1.0 / SIZE_ALPHA));
        if (s <= cap)
            return (uint32_t)s;
    }
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
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

static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* ---- generator ---- */

static void heap_push(struct gen *g, uint64_t t, uint32_t c)
{
    uint32_t i = g->heap_len++;
    while (i && g->heap[(i - 1) / 2].t > t) {
        g->heap[i] = g->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    g->heap[i] = (struct heap_ent){t, c};
}

static struct heap_ent heap_pop(struct gen *g)
{
    struct heap_ent top = g->heap[0], last = g->heap[--g->heap_len];
    uint32_t i = 0, n = g->heap_len;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && g->heap[c + 1].t < g->heap[c].t)
            c++;
        if (g->heap[c].t >= last.t)
            break;
        g->heap[i] = g->heap[c];
        i = c;
    }
    if (n)
        g->heap[i] = last;
    return top;
}

/* Posts come front-loaded, as reshares do: post k at life * (k / (size-1))^2 after the root. */
static uint64_t post_time(const struct plan *p, uint32_t k)
{
    double f = (double)k / (double)(p->size - 1);
    return p->start + (uint64_t)(p->life_ms * f * f);
}

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

static int cmp_start(const void *a, const void *b)
{
    uint64_t x = ((const struct plan *)a)->start, y = ((const struct plan *)b)->start;
    return (x > y) - (x < y);
}

/* Sizes until they add up to n. Each cascade lives within the run's event time, so that the
 * stream is as mixed at its end as in its middle (no tail of a few big cascades draining). */
static void plan_cascades(struct gen *g, struct stream *s)
{
    uint64_t total = 0, span = s->n * MS_PER_EVENT;
    uint32_t cap = s->n / 20 < SIZE_CAP ? (uint32_t)(s->n / 20) : SIZE_CAP;
    g->plan = map(s->n * sizeof *g->plan);
    while (total < s->n) {
        struct plan *p = &g->plan[g->nplans++];
        uint32_t size = draw_size(&g->rng, cap ? cap : 1);
        if (size > s->n - total)
            size = (uint32_t)(s->n - total);
        double life = 60000.0 * pow(size, 0.6) * (0.5 + u01(&g->rng));
        life = life < span / 2 ? life : span / 2;
        *p = (struct plan){.size = size, .first = (uint32_t)total, .life_ms = (uint32_t)life};
        p->start = (uint64_t)(u01(&g->rng) * (span - life));
        note_top(s, size);
        total += size;
    }
    qsort(g->plan, g->nplans, sizeof *g->plan, cmp_start);
    for (uint32_t c = 0; c < g->nplans; c++)
        g->big = g->plan[c].size > g->plan[g->big].size ? c : g->big;
    s->cascades = g->nplans;
}

/* Most reshares hit the root; the rest pick any earlier post, which gives depth but rarely much. */
static uint32_t pick_parent(struct gen *g, uint32_t first, uint32_t k)
{
    if (u01(&g->rng) < ROOT_PARENT_P)
        return 0;
    uint32_t pk = (uint32_t)(u01(&g->rng) * k);
    return g->depth[first + pk] < MAX_DEPTH ? pk : 0;
}

static void emit(struct gen *g, struct stream *s, uint32_t i, uint32_t c, uint64_t *clock,
                 uint64_t t)
{
    struct plan *p = &g->plan[c];
    uint32_t k = p->done++, actor = zipf(&g->rng, g->nactors);
    s->dts[i] = t - *clock > UINT16_MAX ? UINT16_MAX : (uint16_t)(t - *clock);
    *clock = t;
    g->seen[actor / 64] |= 1ull << (actor % 64);
    g->slot[p->first + k] = i;
    if (k == 0) {
        uint32_t label = u01(&g->rng) < LABEL_P ? 1 + (uint32_t)(next64(&g->rng) % 3) : 0;
        s->actor[i] = actor | ROOT_BIT;
        s->link[i] = zipf(&g->rng, g->nurls) << 2 | label;
        g->depth[p->first] = 0;
        return;
    }
    uint32_t pk = pick_parent(g, p->first, k);
    s->actor[i] = actor;
    s->link[i] = g->slot[p->first + pk];
    g->depth[p->first + k] = (uint8_t)(g->depth[p->first + pk] + 1);
}

/* Event-time simulation: a heap of active cascades keyed by their next post's time interleaves
 * them as a firehose would, and a post always comes after its parent. */
static void interleave(struct gen *g, struct stream *s)
{
    uint32_t next_root = 0;
    uint64_t clock = 0;
    g->heap = map((size_t)g->nplans * sizeof *g->heap);
    for (uint64_t i = 0; i < s->n; i++) {
        uint32_t c;
        uint64_t t;
        if (next_root < g->nplans && (!g->heap_len || g->plan[next_root].start <= g->heap[0].t)) {
            c = next_root++;
            t = g->plan[c].start;
        } else {
            struct heap_ent h = heap_pop(g);
            c = h.cascade;
            t = h.t;
        }
        emit(g, s, (uint32_t)i, c, &clock, t);
        if (g->plan[c].done < g->plan[c].size)
            heap_push(g, post_time(&g->plan[c], g->plan[c].done), c);
    }
}

static uint32_t count_bits(const uint64_t *bits, uint32_t n)
{
    uint32_t total = 0;
    for (uint32_t w = 0; w < (n + 63) / 64; w++)
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
static void expect_cascade(const struct gen *g, struct stream *s)
{
    const struct plan *p = &g->plan[g->big];
    const uint32_t *evs = g->slot + p->first;
    const uint8_t *depth = g->depth + p->first;
    uint32_t n = p->size, *sub = malloc(n * sizeof *sub), width[MAX_DEPTH + 1] = {0};
    struct expect *x = &s->big;
    *x = (struct expect){.root = evs[0], .size = n};
    for (uint32_t k = 0; sub && k < n; k++)
        sub[k] = 1;
    for (uint32_t k = n - 1; sub && k > 0; k--) {
        sub[find_post(evs, n, s->link[evs[k]])] += sub[k];
        x->wiener += (uint64_t)sub[k] * (n - sub[k]);
    }
    for (uint32_t k = 0; k < n; k++) {
        width[depth[k]]++;
        x->depth = depth[k] > x->depth ? depth[k] : x->depth;
    }
    for (int d = 0; d <= MAX_DEPTH; d++)
        x->max_breadth = width[d] > x->max_breadth ? width[d] : x->max_breadth;
    x->unique_actors = count_distinct_actors(s, evs, n);
    free(sub);
}

static void gen_free(struct gen *g, uint64_t n)
{
    unmap(g->plan, n * sizeof *g->plan);
    unmap(g->heap, (size_t)g->nplans * sizeof *g->heap);
    unmap(g->slot, n * sizeof *g->slot);
    unmap(g->depth, n);
    unmap(g->seen, (g->nactors + 63) / 64 * 8);
}

static void generate(struct stream *s, const struct opts *o)
{
    struct gen g = {.rng = {o->seed}};
    g.nactors = (uint32_t)(o->events * ACTORS_PER_EVENT) + 1;
    s->n = o->events;
    s->actor = map(s->n * sizeof *s->actor);
    s->link = map(s->n * sizeof *s->link);
    s->dts = map(s->n * sizeof *s->dts);
    g.slot = map(s->n * sizeof *g.slot);
    g.depth = map(s->n);
    g.seen = map((g.nactors + 63) / 64 * 8);
    plan_cascades(&g, s);
    g.nurls = g.nplans / 2 + 1;
    interleave(&g, s);
    s->actors_used = count_bits(g.seen, g.nactors);
    expect_cascade(&g, s);
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
    b->text = malloc((size_t)cap * TEXT_PER_EVENT);
    if (!b->evs || !b->outcomes || !b->text)
        return -ENOMEM;
    memset(b->evs, 0xa5, cap * sizeof *b->evs);
    memset(b->outcomes, 0xa5, cap);
    memset(b->text, 0xa5, (size_t)cap * TEXT_PER_EVENT);
    return 0;
}

static void batch_free(struct batch *b)
{
    free(b->evs);
    free(b->outcomes);
    free(b->text);
}

static char *put_id(char *p, const char *prefix, uint64_t v, struct event_id *id)
{
    char *start = p;
    while (*prefix)
        *p++ = *prefix++;
    p = put_u64(p, v);
    id->str = start;
    id->len = (uint32_t)(p - start);
    return p;
}

/* Builds the struct event of stream[i], its strings written at p; returns the end of them. */
static char *build_event(const struct stream *s, uint64_t i, int64_t ts, struct event *ev, char *p)
{
    uint32_t actor = s->actor[i] & ~ROOT_BIT;
    *ev = (struct event){.ts = ts};
    p = put_id(p, "p", i, &ev->post);
    p = put_id(p, "u", actor, &ev->actor);
    /* a few pages, decided by the actor so that every post of it agrees */
    ev->actor_type = mix64(actor) % 40 == 0 ? EVENT_ACTOR_PAGE : EVENT_ACTOR_UNSPECIFIED;
    if (s->actor[i] & ROOT_BIT) {
        const char *label = label_names[s->link[i] & 3];
        char *content = p;
        p = put_u64((char *)memcpy(p, "url:", 4) + 4, s->link[i] >> 2);
        ev->content = content;
        ev->content_len = (uint16_t)(p - content);
        ev->label = label;
        ev->label_len = label ? (uint8_t)strlen(label) : 0;
        ev->kind = EVENT_KIND_POST;
        return p;
    }
    uint64_t h = mix64(i) % 100;
    ev->kind = h < 8 ? EVENT_KIND_QUOTE : h < 15 ? EVENT_KIND_REPLY : EVENT_KIND_SHARE;
    return put_id(p, "p", s->link[i], &ev->parent);
}

static uint32_t fill_batch(struct batch *b, const struct stream *s, uint64_t from, int64_t *ts)
{
    uint32_t n = s->n - from < b->cap ? (uint32_t)(s->n - from) : b->cap;
    char *p = b->text;
    for (uint32_t j = 0; j < n; j++) {
        *ts += s->dts[from + j];
        p = build_event(s, from + j, *ts, &b->evs[j], p);
    }
    return n;
}

/* Only engine_apply is timed: building the batches is the decoder's work, not the engine's. */
#define ANALYTICS_EVERY 500000 /* events: about a minute of the server at 8 K events/s */

static void apply_all(struct engine *e, const struct stream *s, struct batch *b, struct result *r,
                      int retention)
{
    int64_t ts = TS_BASE;
    for (uint64_t i = 0; i < s->n;) {
        uint32_t n = fill_batch(b, s, i, &ts);
        double t0 = now_s();
        r->accepted += engine_apply(e, b->evs, n, b->outcomes);
        double dt = now_s() - t0;
        r->seconds += dt;
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
    uint32_t len = (uint32_t)(put_id(root, "p", x->root, &(struct event_id){0}) - root);
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
    printf("apply      %.3f s: %.0f events/s (slowest batch %.2f ms, at event %" PRIu64 ")\n",
           r->seconds, o->events / r->seconds, r->max_batch_s * 1e3, r->max_batch_at);
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
           "\"rss_bytes_per_event\":%.2f,",
           o->events, o->seed, o->batch, r->seconds, o->events / r->seconds, r->max_batch_s * 1e3,
           r->max_batch_at, per_event(r->rss0, r->rss1, o->events));
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
               "  Generates N share events shaped like real cascades (same seed, same events),\n"
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
