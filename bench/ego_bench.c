/* ego-bench: what engine_actor_links and engine_actor_cascades cost (the actor page's queries),
 * in-process. Loads a cascade-gen dump (msgpack) into an engine, then times both queries (the
 * best of REPEAT runs) for the busiest actors (by posts, reach, amplifiers) and for a sample of
 * actors drawn at random. Usage: ego-bench FILE.msgpack [SAMPLE] */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cascade/engine.h"
#include "net/ingest_proto.h"

#define LINKS_LIMIT    50
#define CASCADES_LIMIT 20
#define REPEAT         3

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int apply_one(void *ctx, const struct event_raw *raw)
{
    if (raw)
        engine_apply_raw(ctx, raw);
    return 0;
}

static int load(struct engine *e, const char *path)
{
    FILE *f = fopen(path, "rb");
    struct ingest_decoder *d;
    if (!f || ingest_decoder_new(NULL, &d)) {
        fprintf(stderr, "ego-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    static char buf[1 << 20];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        if (ingest_decoder_feed(d, buf, n) || ingest_decoder_drain(d, apply_one, e) < 0)
            rc = -1;
    ingest_decoder_free(d);
    fclose(f);
    return rc;
}

/* The best of REPEAT times of each query. */
struct timing {
    int nl, nc;
    double links_ms, casc_ms;
};

static struct timing run(struct engine *e, const struct engine_actor *a)
{
    static struct engine_link links[2 * LINKS_LIMIT];
    static struct engine_actor_cascade casc[CASCADES_LIMIT];
    struct timing t = {0, 0, 1e18, 1e18};
    for (int i = 0; i < REPEAT; i++) {
        double t0 = now_ms();
        t.nl = engine_actor_links(e, a->name, a->name_len, ENGINE_LINK_BOTH, LINKS_LIMIT, links);
        double t1 = now_ms();
        t.nc = engine_actor_cascades(e, a->name, a->name_len, casc, CASCADES_LIMIT);
        double t2 = now_ms();
        t.links_ms = t1 - t0 < t.links_ms ? t1 - t0 : t.links_ms;
        t.casc_ms = t2 - t1 < t.casc_ms ? t2 - t1 : t.casc_ms;
    }
    return t;
}

static void bench_top(struct engine *e, const struct engine_actor *a, const char *why)
{
    struct timing t = run(e, a);
    printf("%-18s %-10.*s posts %6u cascades %6u amplifiers %5u  actor_links %3d: %7.3f ms  "
           "actor_cascades %2d: %7.3f ms\n",
           why, (int)a->name_len, a->name, a->posts, a->cascades, a->amplifiers, t.nl, t.links_ms,
           t.nc, t.casc_ms);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ego-bench FILE.msgpack [SAMPLE]\n");
        return 2;
    }
    uint32_t sample = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 200;
    struct engine *e;
    if (engine_new(&e))
        return 1;
    double t0 = now_ms();
    if (load(e, argv[1]))
        return 1;
    struct engine_stats st;
    engine_get_stats(e, &st);
    printf("loaded %" PRIu64 " posts, %" PRIu64 " placeholders, %" PRIu64 " actors, %" PRIu64
           " edges, %" PRIu64 " cascades in %.1f s\n",
           st.posts, st.placeholders, st.actors, st.edges, st.cascades, (now_ms() - t0) / 1e3);

    static const struct {
        int metric;
        const char *name;
    } tops[] = {{ENGINE_BY_POSTS, "top by posts"},
                {ENGINE_BY_REACH, "top by reach"},
                {ENGINE_BY_AMPLIFIERS, "top by amplifiers"}};
    for (size_t m = 0; m < sizeof(tops) / sizeof(tops[0]); m++) {
        struct engine_actor top[3];
        int k = engine_top_actors(e, tops[m].metric, 0, top, 3);
        for (int i = 0; i < k; i++)
            bench_top(e, &top[i], tops[m].name);
    }

    /* a random sample: the typical actor page */
    double *links_ms = malloc(2 * (size_t)sample * sizeof(double)), *casc_ms = links_ms + sample;
    if (!links_ms)
        return 1;
    uint64_t seed = 88172645463325252ull;
    for (uint32_t i = 0; i < sample; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        struct engine_actor a;
        engine_actor_at(e, (uint32_t)(seed % st.actors), &a);
        struct timing t = run(e, &a);
        links_ms[i] = t.links_ms;
        casc_ms[i] = t.casc_ms;
    }
    qsort(links_ms, sample, sizeof(double), cmp_double);
    qsort(casc_ms, sample, sizeof(double), cmp_double);
    printf("%u random actors: actor_links median %.3f max %.3f ms; actor_cascades median %.3f max "
           "%.3f ms\n",
           sample, links_ms[sample / 2], links_ms[sample - 1], casc_ms[sample / 2],
           casc_ms[sample - 1]);
    free(links_ms);
    engine_free(e);
    return 0;
}
