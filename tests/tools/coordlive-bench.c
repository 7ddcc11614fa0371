/* coordlive-bench: live coordination (engine/coordlive) fed the workload model's events, as the
 * engine's hook would feed it: link key = the post's URL, else its root's; reshare key = the
 * parent of a share or quote; reply key = the parent of a reply. Reports the live state's bytes
 * per event, the time per post and the longest 512-post chunk (the writer's apply chunk), and
 * what a default groups query costs at the end.
 * Usage: coordlive-bench [EVENTS [GROUPS [SEED]]] (defaults 10000000 100 1). Environment:
 * COORDLIVE_BENCH_CPU=1 times with the thread's CPU clock; COORDLIVE_BENCH_CAP, _FORGET set the
 * cap and the forget horizon (ms, -1 never); _SLOW=1 lists the posts over 2 ms; _TRACE=1 prints
 * the link instance's figures every 50,000 events. COORDLIVE_BENCH_ENGINE=1 instead applies the
 * events to the engine twice, without and with the hook (engine/coordhook), in chunks of 512,
 * and compares the apply CPU time. Results: bench/results/coordlive-*.md. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cascade/engine.h"
#include "cascade/gen.h"
#include "engine/coordhook.h"
#include "engine/coordlive.h"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(getenv("COORDLIVE_BENCH_CPU") ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

#define CHUNK 512

/* Applies ev[n] to a new engine, with the hook when hook; prints CPU time and longest chunk. */
static int engine_run(const struct gen_event *gev, uint64_t n, int hook)
{
    struct engine *e;
    static struct event evs[CHUNK];
    static char text[CHUNK * GEN_EVENT_TEXT];
    static uint8_t out[CHUNK];
    if (engine_new(&e) || (hook && coordhook_enable(e, NULL)))
        return -1;
    double total = 0, longest = 0;
    for (uint64_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? (size_t)(n - i) : CHUNK;
        for (size_t j = 0; j < m; j++)
            gen_event_fill(&gev[i + j], &evs[j], text + j * GEN_EVENT_TEXT);
        double t0 = now_ms();
        engine_apply(e, evs, m, out);
        double t = now_ms() - t0;
        total += t;
        longest = t > longest ? t : longest;
    }
    size_t bytes = 0;
    for (int k = 0; hook && k < COORDLIVE_KINDS; k++)
        bytes += coordlive_bytes(coordhook_instance(e, k));
    printf("engine %s hook: %.3f s apply, %.0f ns/event, longest %d-event chunk %.2f ms, "
           "hook %.1f B/event\n",
           hook ? "with" : "without", total / 1e3, total * 1e6 / (double)n, CHUNK, longest,
           (double)bytes / (double)n);
    coordhook_disable(e);
    engine_free(e);
    return 0;
}

/* The engine mode: the model's events kept, then applied without and with the hook. */
static int engine_mode(struct gen_model *m, uint64_t events)
{
    struct gen_event *gev = malloc((events ? events : 1) * sizeof(*gev));
    uint64_t n = 0;
    if (!gev)
        return 1;
    while (n < events && gen_model_next(m, &gev[n]) == 1)
        n++;
    int rc = engine_run(gev, n, 0) || engine_run(gev, n, 1);
    free(gev);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    uint64_t events = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000;
    uint64_t groups = argc > 2 ? strtoull(argv[2], NULL, 10) : 100;
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    struct gen_params gp;
    gen_params_bench(&gp, events, seed);
    gp.groups = groups;
    struct gen_model *m;
    char err[256];
    if (gen_model_new(&m, &gp, err, sizeof err)) {
        fprintf(stderr, "coordlive-bench: %s\n", err);
        return 1;
    }
    if (getenv("COORDLIVE_BENCH_ENGINE")) {
        int rc = engine_mode(m, events);
        gen_model_free(m);
        return rc;
    }
    /* the root URL of every post, by post number (the bench's, not the measured state) */
    uint32_t *rooturl = calloc(events + 2, sizeof(*rooturl));
    struct coordlive *cl[COORDLIVE_KINDS];
    /* the environment may set the cap and the forget horizon (ms; -1: never) */
    struct coordlive_params cp = {0, COORDLIVE_DEFAULT_LATENESS_MS, 0, 0, 0};
    if (getenv("COORDLIVE_BENCH_CAP"))
        cp.max_key_posts = (uint32_t)strtoul(getenv("COORDLIVE_BENCH_CAP"), NULL, 10);
    if (getenv("COORDLIVE_BENCH_FORGET"))
        cp.forget_ms = strtoll(getenv("COORDLIVE_BENCH_FORGET"), NULL, 10);
    for (int k = 0; k < COORDLIVE_KINDS; k++)
        if (!rooturl || coordlive_new(&cl[k], &cp, (uint8_t)k)) {
            fprintf(stderr, "coordlive-bench: out of memory\n");
            return 1;
        }
    struct gen_event ev;
    uint64_t n = 0, fed[COORDLIVE_KINDS] = {0};
    double t0 = now_ms(), chunk = 0, chunk_max = 0, add_max = 0;
    int rc;
    while ((rc = gen_model_next(m, &ev)) == 1) {
        uint32_t actor = (uint32_t)(ev.actor * 2 + (ev.flags & GEN_EV_PAGE ? 1 : 0));
        uint32_t post = (uint32_t)ev.post;
        uint32_t url = (uint32_t)ev.url;
        if (!url && ev.parent && ev.parent <= events)
            url = rooturl[ev.parent];
        if (ev.post <= events)
            rooturl[ev.post] = ev.parent && ev.parent <= events ? rooturl[ev.parent] : url;
        if (!ev.parent && ev.post <= events)
            rooturl[ev.post] = url;
        int r = 0;
        double a0 = now_ms();
        if (url)
            r |= coordlive_add(cl[COORDLIVE_LINK], url, actor, post, ev.ts), fed[0]++;
        if (ev.parent && ev.kind == GEN_KIND_REPLY)
            r |= coordlive_add(cl[COORDLIVE_REPLY], (uint32_t)ev.parent, actor, post, ev.ts),
                fed[2]++;
        else if (ev.parent)
            r |= coordlive_add(cl[COORDLIVE_RESHARE], (uint32_t)ev.parent, actor, post, ev.ts),
                fed[1]++;
        if (r) {
            fprintf(stderr, "coordlive-bench: add failed\n");
            return 1;
        }
        double took = now_ms() - a0;
        chunk += took; /* the adds' time only, not the model's */
        add_max = took > add_max ? took : add_max;
        if (getenv("COORDLIVE_BENCH_SLOW") && took > 2) {
            struct coordlive_stats st[COORDLIVE_KINDS];
            for (int k = 0; k < COORDLIVE_KINDS; k++)
                coordlive_stats(cl[k], &st[k]);
            fprintf(stderr, "slow post at event %" PRIu64 ": %.2f ms; pairs %" PRIu64 " %" PRIu64
                    ", posts %" PRIu64 " %" PRIu64 "\n", n, took, st[0].pairs, st[1].pairs,
                    st[0].posts, st[1].posts);
        }
        if (getenv("COORDLIVE_BENCH_TRACE") && n % 50000 == 0) {
            struct coordlive_stats st;
            coordlive_stats(cl[0], &st);
            fprintf(stderr, "%" PRIu64 ": ts %" PRId64 " pairs %" PRIu64 " queue %" PRIu64
                    " forgotten %" PRIu64 " bytes %zu\n", n, ev.ts, st.pairs, st.forget_queue,
                    st.forgotten, coordlive_bytes(cl[0]));
        }
        if (++n % 512 == 0) {
            chunk_max = chunk > chunk_max ? chunk : chunk_max;
            chunk = 0;
        }
    }
    double t1 = now_ms();
    size_t bytes = 0;
    printf("events %" PRIu64 ", %.3f s, %.0f ns/event, longest 512-event chunk of adds %.2f ms, "
           "longest event %.3f ms\n",
           n, (t1 - t0) / 1e3, (t1 - t0) * 1e6 / (double)(n ? n : 1), chunk_max, add_max);
    static const char *names[] = {"link", "reshare", "reply"};
    for (int k = 0; k < COORDLIVE_KINDS; k++) {
        struct coordlive_stats st;
        coordlive_stats(cl[k], &st);
        size_t b = coordlive_bytes(cl[k]);
        bytes += b;
        struct coordlive_query q = {0, 0.3, COORDLIVE_SIM_MAX};
        struct coordlive_result res;
        double q0 = now_ms();
        int qrc = coordlive_groups(&cl[k], 1, &q, &res);
        double q1 = now_ms();
        printf("%-7s posts %" PRIu64 " meetings %" PRIu64 " pairs %" PRIu64 " coshares %" PRIu64
               " capped_drops %" PRIu64 " flagged %" PRIu64 " late %" PRIu64 " forgotten %" PRIu64
               " bytes %zu (%.2f B/event); groups %u (rc %d) in %.2f ms, exact %d\n",
               names[k], st.posts, st.meetings, st.pairs, st.coshares, st.capped_drops,
               st.flagged_actors, st.late_misses, st.forgotten, b, (double)b / (double)(n ? n : 1),
               qrc ? 0 : res.ngroups, qrc, q1 - q0, qrc ? 0 : res.exact);
        if (!qrc)
            coordlive_result_free(&res);
    }
    struct coordlive_query q = {0, 0.3, COORDLIVE_SIM_MAX};
    struct coordlive_result res;
    double q0 = now_ms();
    rc = coordlive_groups(cl, COORDLIVE_KINDS, &q, &res);
    printf("all: groups %u in %.2f ms; total %zu bytes = %.2f B/event\n", rc ? 0 : res.ngroups,
           now_ms() - q0, bytes, (double)bytes / (double)(n ? n : 1));
    if (!rc)
        coordlive_result_free(&res);
    for (int k = 0; k < COORDLIVE_KINDS; k++)
        coordlive_free(cl[k]);
    free(rooturl);
    gen_model_free(m);
    return 0;
}
