/* WAL benchmark: append throughput of records of N events under each fsync policy, and replay
 * throughput of what was written. The events are the shared workload model's (cascade/gen.h,
 * the benchmarks' stream), so bytes per event are those of the other benchmarks. Usage:
 *     wal-bench [--dir DIR] [--events N] [--batch N] [--fsync no|everysec|always]
 *               [--io uring|pwrite] */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cascade/gen.h"
#include "cascade/wal.h"

struct opts {
    const char *dir;
    long events, batch;
    enum wal_fsync fsync;
    int no_io_uring; /* --io pwrite: measure the fallback */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse(int argc, char **argv, struct opts *o)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--dir"))
            o->dir = v;
        else if (!strcmp(k, "--events"))
            o->events = atol(v);
        else if (!strcmp(k, "--batch"))
            o->batch = atol(v);
        else if (!strcmp(k, "--io") && !strcmp(v, "pwrite"))
            o->no_io_uring = 1;
        else if (!strcmp(k, "--io") && !strcmp(v, "uring"))
            o->no_io_uring = 0;
        else if (!strcmp(k, "--fsync") && !strcmp(v, "no"))
            o->fsync = WAL_FSYNC_NO;
        else if (!strcmp(k, "--fsync") && !strcmp(v, "everysec"))
            o->fsync = WAL_FSYNC_EVERYSEC;
        else if (!strcmp(k, "--fsync") && !strcmp(v, "always"))
            o->fsync = WAL_FSYNC_ALWAYS;
        else
            return -1;
    }
    return o->events > 0 && o->batch > 0 ? 0 : -1;
}

/* The model's next n events into evs, their strings in text (GEN_EVENT_TEXT bytes each). */
static void make_batch(struct gen_model *m, long n, struct event *evs, char *text)
{
    struct gen_event ev;
    for (long k = 0; k < n; k++) {
        if (gen_model_next(m, &ev) != 1) {
            fprintf(stderr, "wal-bench: the workload model stopped early\n");
            exit(1);
        }
        gen_event_fill(&ev, &evs[k], text + k * GEN_EVENT_TEXT);
    }
}

static int count_events(void *ctx, const struct event *evs, size_t n)
{
    *(long *)ctx += (long)n;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static struct wal *open_wal(const struct opts *o)
{
    struct wal_options wo = {.dir = o->dir, .fsync = o->fsync, .no_io_uring = o->no_io_uring};
    struct wal *w;
    char err[256];
    if (wal_open(&wo, &w, err, sizeof(err)) != 0) {
        fprintf(stderr, "wal-bench: %s\n", err);
        exit(1);
    }
    return w;
}

static double append_all(struct wal *w, const struct opts *o)
{
    struct event *evs = calloc((size_t)o->batch, sizeof(*evs));
    char *t = calloc((size_t)o->batch, GEN_EVENT_TEXT);
    struct gen_params p;
    struct gen_model *m = NULL;
    char err[160];
    gen_params_bench(&p, (uint64_t)o->events, 1);
    if (!evs || !t || gen_model_new(&m, &p, err, sizeof err))
        exit(1);
    double busy = 0, last_sync = now_s();
    for (long done = 0; done < o->events; done += o->batch) {
        long n = o->events - done < o->batch ? o->events - done : o->batch;
        make_batch(m, n, evs, t); /* not timed */
        double t0 = now_s();
        int rc = wal_append(w, evs, NULL, (size_t)n);
        if (rc == 0 && o->fsync == WAL_FSYNC_EVERYSEC && t0 - last_sync >= 1.0) {
            rc = wal_sync(w); /* what the server's timer does */
            last_sync = t0;
        }
        if (rc != 0) {
            fprintf(stderr, "wal-bench: append: %s\n", strerror(-rc));
            exit(1);
        }
        busy += now_s() - t0;
    }
    gen_model_free(m);
    free(evs);
    free(t);
    return busy;
}

int main(int argc, char **argv)
{
    struct opts o = {.events = 2000000, .batch = 4096, .fsync = WAL_FSYNC_EVERYSEC};
    char tmp[] = "/tmp/wal-bench.XXXXXX";
    if (parse(argc, argv, &o) < 0) {
        fprintf(stderr, "usage: wal-bench [--dir DIR] [--events N] [--batch N] "
                        "[--fsync no|everysec|always] [--io uring|pwrite]\n");
        return 2;
    }
    int own = !o.dir;
    if (own && !(o.dir = mkdtemp(tmp)))
        return 1;
    struct wal *w = open_wal(&o);
    wal_replay(w, NULL, NULL, NULL);
    int uring = wal_uses_io_uring(w);
    double busy = append_all(w, &o);
    unsigned long long bytes = wal_bytes(w);
    double t0 = now_s();
    wal_close(w); /* the final sync counts for everysec */
    busy += now_s() - t0;

    long seen = 0;
    struct wal_replay_stats st;
    t0 = now_s();
    w = open_wal(&o);
    wal_replay(w, count_events, &seen, &st);
    double replay = now_s() - t0;
    wal_close(w);
    printf("wal-bench fsync=%s batch=%ld events=%ld io_uring=%s: append %.0f events/s (%.1f MB/s, "
           "%.1f bytes/event); replay %.0f events/s (%ld events, %llu records)\n",
           o.fsync == WAL_FSYNC_NO       ? "no"
           : o.fsync == WAL_FSYNC_ALWAYS ? "always"
                                         : "everysec",
           o.batch, o.events, uring ? "yes" : "no", (double)o.events / busy,
           (double)bytes / busy / 1e6, (double)bytes / (double)o.events, (double)seen / replay,
           seen, (unsigned long long)st.records);
    if (own)
        nftw(o.dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return seen == o.events ? 0 : 1;
}
