/* ego-bench: what engine_actor_links and engine_actor_cascades cost (the actor page's queries),
 * in-process. Applies the shared workload model's events (include/cascade/gen.h: what
 * `cascade-gen --events N --seed S` writes) to an engine, then times both queries (the best of
 * REPEAT runs) for the busiest actors (by posts, reach, amplifiers) and for a sample of actors
 * drawn at random. Usage: ego-bench [--events N] [--seed S] [SAMPLE] */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cascade/engine.h"
#include "cascade/gen.h"

#define LINKS_LIMIT    50
#define CASCADES_LIMIT 20
#define REPEAT         3

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

#define BATCH 4096

/* The model's first `events` events at cascade-gen's defaults, applied in batches. */
static int load(struct engine *e, uint64_t events, uint64_t seed)
{
    static struct event evs[BATCH];
    static uint8_t outcomes[BATCH];
    static char text[BATCH][GEN_EVENT_TEXT];
    struct gen_params p;
    struct gen_model *m;
    struct gen_event ev;
    char err[160];
    gen_params_default(&p, events);
    p.seed = seed;
    int rc = gen_model_new(&m, &p, err, sizeof err);
    if (rc) {
        fprintf(stderr, "ego-bench: %s\n", rc == -EINVAL ? err : strerror(-rc));
        return -1;
    }
    uint32_t n = 0;
    while ((rc = gen_model_next(m, &ev)) == 1) {
        gen_event_fill(&ev, &evs[n], text[n]);
        if (++n == BATCH) {
            engine_apply(e, evs, n, outcomes);
            n = 0;
        }
    }
    engine_apply(e, evs, n, outcomes);
    gen_model_free(m);
    if (rc < 0)
        fprintf(stderr, "ego-bench: %s\n", strerror(-rc));
    return rc < 0 ? -1 : 0;
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
    uint64_t events = 1000000, seed = 1;
    uint32_t sample = 200;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (i + 1 < argc && !strcmp(argv[i], "--events"))
            events = strtoull(argv[++i], &end, 10);
        else if (i + 1 < argc && !strcmp(argv[i], "--seed"))
            seed = strtoull(argv[++i], &end, 10);
        else if (argv[i][0] >= '1' && argv[i][0] <= '9')
            sample = (uint32_t)strtoul(argv[i], &end, 10);
        else
            end = argv[i];
        if (*end || events == 0 || events > 1000000000) {
            fprintf(stderr, "usage: ego-bench [--events N (1..1e9, default 1000000)] [--seed S] "
                            "[SAMPLE (default 200)]\n");
            return 2;
        }
    }
    struct engine *e;
    if (engine_new(&e))
        return 1;
    double t0 = now_ms();
    if (load(e, events, seed))
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
    struct gen_rng pick;
    gen_rng_seed(&pick, seed, 3); /* a stream of its own: the model's events do not change */
    for (uint32_t i = 0; i < sample; i++) {
        struct engine_actor a;
        engine_actor_at(e, (uint32_t)gen_rng_below(&pick, st.actors), &a);
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
