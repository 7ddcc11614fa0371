/* copy-bench: what the analytics copy costs the engine's thread (issue 18), in-process. Applies
 * --events events of the workload model (gen_params_bench) in batches, then takes the copy at
 * once (engine_copy_take): wall and CPU time, and the resident memory it adds at its peak. Where
 * the engine has the sliced copy (engine_copy_step; the same source builds against an engine
 * without it, to measure the one before), it also takes one slice of --slice-us at a time with
 * a batch of --during events applied between two slices, as the server does under ingest: the
 * slices, the longest (wall and CPU), their total. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cascade/engine.h"
#include "cascade/gen.h"

/* Declared here too, weak: NULL when the engine linked has no sliced copy. */
int engine_copy_begin(struct engine *e) __attribute__((weak));
int engine_copy_step(struct engine *e, uint64_t budget_ns, uint64_t budget_units,
                     struct engine_copy *out) __attribute__((weak));
int engine_copy_settle(struct engine_copy *s) __attribute__((weak));

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* VmRSS or VmHWM of this process in KiB; 0 if unreadable. */
static uint64_t status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    uint64_t v = 0;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n))
            v = strtoull(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

/* Resets VmHWM to the current RSS (Linux: clear_refs 5). */
static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

struct feed {
    struct gen_model *m;
    struct event *evs;
    char *text;
    uint8_t *out;
    uint32_t batch;
    uint64_t left;
};

/* Applies the next batch; returns the events applied (0: none left). */
static uint32_t feed_batch(struct engine *e, struct feed *f)
{
    uint32_t n = 0;
    struct gen_event ge;
    while (n < f->batch && f->left && gen_model_next(f->m, &ge) == 1) {
        gen_event_fill(&ge, &f->evs[n], f->text + (size_t)n * GEN_EVENT_TEXT);
        n++;
        f->left--;
    }
    if (n)
        engine_apply(e, f->evs, n, f->out);
    return n;
}

int main(int argc, char **argv)
{
    uint64_t events = 10000000, seed = 1, slice_us = 1000, during = 1000;
    uint32_t batch = 1000;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(argv[i], "--events"))
            events = strtoull(v, NULL, 10), i++;
        else if (!strcmp(argv[i], "--seed"))
            seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(argv[i], "--slice-us"))
            slice_us = strtoull(v, NULL, 10), i++;
        else if (!strcmp(argv[i], "--during"))
            during = strtoull(v, NULL, 10), i++;
        else {
            fprintf(stderr, "usage: copy-bench [--events N] [--seed S] [--slice-us U] "
                            "[--during EVENTS_BETWEEN_SLICES]\n");
            return 2;
        }
    }
    struct gen_params p;
    char err[256];
    gen_params_bench(&p, events * 2, seed);
    struct feed f = {.batch = batch, .left = events};
    struct engine *e;
    if (gen_model_new(&f.m, &p, err, sizeof err) || engine_new(&e)) {
        fprintf(stderr, "copy-bench: %s\n", err);
        return 1;
    }
    f.evs = calloc(batch, sizeof(*f.evs));
    f.text = malloc((size_t)batch * GEN_EVENT_TEXT);
    f.out = malloc(batch);
    if (!f.evs || !f.text || !f.out)
        return 1;
    while (feed_batch(e, &f))
        ;
    struct engine_stats st;
    engine_get_stats(e, &st);
    printf("engine     %" PRIu64 " events applied: %" PRIu64 " posts, %" PRIu64 " actors\n",
           st.outcomes[EVENT_OK], st.posts, st.actors);

    struct engine_copy s;
    uint64_t rss0 = status_kib("VmRSS");
    reset_peak();
    uint64_t t0 = clock_ns(CLOCK_MONOTONIC), c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    if (engine_copy_take(e, &s)) {
        fprintf(stderr, "copy-bench: engine_copy_take failed\n");
        return 1;
    }
    uint64_t t1 = clock_ns(CLOCK_MONOTONIC), c1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    uint64_t peak = status_kib("VmHWM");
    printf("at once    %.1f ms wall, %.1f ms CPU on the calling thread; %zu shares, %zu keys; "
           "peak RSS +%.1f MiB over the engine's (%.1f bytes a post)\n",
           (t1 - t0) / 1e6, (c1 - c0) / 1e6, s.nshares, s.nkeys,
           peak > rss0 ? (peak - rss0) / 1024.0 : 0.0,
           peak > rss0 ? (peak - rss0) * 1024.0 / (double)st.posts : 0.0);
    engine_copy_free(&s);

    if (!engine_copy_step) {
        printf("sliced     not in this engine\n");
        engine_free(e);
        gen_model_free(f.m);
        return 0;
    }
    f.left = events; /* the next events of the same model arrive while the copy is taken */
    f.batch = (uint32_t)(during ? during : 1);
    rss0 = status_kib("VmRSS");
    reset_peak();
    uint64_t slices = 0, wall = 0, cpu = 0, max_wall = 0, max_cpu = 0, applied = 0;
    uint64_t span0 = clock_ns(CLOCK_MONOTONIC);
    int rc = engine_copy_begin(e);
    while (rc == 0) {
        t0 = clock_ns(CLOCK_MONOTONIC);
        c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        rc = engine_copy_step(e, slice_us * 1000, 0, &s);
        t1 = clock_ns(CLOCK_MONOTONIC);
        c1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        slices++;
        wall += t1 - t0;
        cpu += c1 - c0;
        max_wall = t1 - t0 > max_wall ? t1 - t0 : max_wall;
        max_cpu = c1 - c0 > max_cpu ? c1 - c0 : max_cpu;
        if (rc == 0 && during)
            applied += feed_batch(e, &f);
    }
    uint64_t span = clock_ns(CLOCK_MONOTONIC) - span0;
    if (rc != 1) {
        fprintf(stderr, "copy-bench: engine_copy_step: %d\n", rc);
        return 1;
    }
    uint64_t peak_slices = status_kib("VmHWM");
    uint64_t ps = clock_ns(CLOCK_MONOTONIC);
    if (engine_copy_settle(&s)) {
        fprintf(stderr, "copy-bench: engine_copy_settle: out of memory\n");
        return 1;
    }
    uint64_t pe = clock_ns(CLOCK_MONOTONIC);
    peak = status_kib("VmHWM");
    printf("sliced     %" PRIu64 " slices of %" PRIu64 " us, %" PRIu64
           " events applied between them: longest %.2f ms wall, %.2f ms CPU; total %.1f ms wall, "
           "%.1f ms CPU; %.0f ms first to last; packed off the engine thread in %.1f ms; %zu "
           "shares, %zu keys; peak RSS +%.1f MiB while sliced, +%.1f MiB with the packing (and the "
           "events applied meanwhile)\n",
           slices, slice_us, applied, max_wall / 1e6, max_cpu / 1e6, wall / 1e6, cpu / 1e6,
           span / 1e6, (pe - ps) / 1e6, s.nshares, s.nkeys,
           peak_slices > rss0 ? (peak_slices - rss0) / 1024.0 : 0.0,
           peak > rss0 ? (peak - rss0) / 1024.0 : 0.0);
    engine_copy_free(&s);
    engine_free(e);
    gen_model_free(f.m);
    free(f.evs);
    free(f.text);
    free(f.out);
    return 0;
}
