/* The writer thread (see writer.h). */
#include "server/writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "query/rpc.h"

#ifdef CASCADE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

/* Events applied between two looks at the query queue: at ~1 M events/s a query waits at most
 * about half a millisecond for the chunk in progress (DESIGN §8: point queries p99 < 1 ms). */
#define APPLY_CHUNK 512

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int replay_record(void *ctx, const struct event *evs, size_t n)
{
    struct writer *w = ctx;
    uint8_t out[4096];
    for (size_t i = 0; i < n; i += sizeof(out)) {
        size_t m = n - i < sizeof(out) ? n - i : sizeof(out);
        engine_apply(w->engine, evs + i, m, out);
    }
    return 0;
}

static int recover(struct writer *w)
{
    struct wal_replay_stats st = {0};
    uint64_t t0 = now_ms();
    int rc = wal_replay(w->wal, replay_record, w, &st);
    if (rc)
        return rc;
    uint64_t ms = now_ms() - t0;
    log_msg(LOG_INFO, "wal_replayed", "segments=%llu records=%llu events=%llu bytes=%llu ms=%llu",
            (unsigned long long)st.segments, (unsigned long long)st.records,
            (unsigned long long)st.events, (unsigned long long)st.bytes, (unsigned long long)ms);
    if (st.cut_bytes)
        log_msg(LOG_WARN, "wal_tail_cut",
                "bytes=%llu reason=\"torn or corrupt tail after a crash; everything before it "
                "was kept\"",
                (unsigned long long)st.cut_bytes);
    return 0;
}

static int ensure_scratch(struct writer *w, uint32_t n)
{
    if (n <= w->scratch_cap)
        return 0;
    uint8_t *s = realloc(w->scratch, n);
    if (!s)
        return -ENOMEM;
    w->scratch = s;
    w->scratch_cap = n;
    return 0;
}

static void answer_queries(struct writer *w);

/* Applies, logs, and fills in every event's outcome. When the WAL cannot take the batch, the
 * accepted events' outcomes become EVENT_ERR_NOMEM so that no ack covers them. */
static void do_ingest(struct writer *w, struct batch *b)
{
    if (ensure_scratch(w, b->nvalid ? b->nvalid : 1)) {
        memset(b->outcome, EVENT_ERR_NOMEM, b->n);
        return;
    }
    for (uint32_t i = 0; i < b->nvalid; i += APPLY_CHUNK) {
        uint32_t m = b->nvalid - i < APPLY_CHUNK ? b->nvalid - i : APPLY_CHUNK;
        engine_apply(w->engine, b->evs + i, m, w->scratch + i);
        answer_queries(w);
    }
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->vidx[i] != UINT32_MAX)
            b->outcome[i] = w->scratch[b->vidx[i]];
        else
            engine_note_outcome(w->engine, b->outcome[i]);
    }
    for (uint32_t i = 0; i < b->nvalid; i++)
        w->scratch[i] = w->scratch[i] == EVENT_OK;
    int rc = wal_append(w->wal, b->evs, w->scratch, b->nvalid);
    if (rc) {
        log_msg(LOG_ERROR, "wal_append_failed", "error=\"%s\" events=%u", strerror(-rc), b->nvalid);
        for (uint32_t i = 0; i < b->n; i++)
            if (b->outcome[i] == EVENT_OK)
                b->outcome[i] = EVENT_ERR_NOMEM;
        return;
    }
}

/* Allocated and resident bytes: jemalloc's own figures when it is the allocator (refreshed by
 * bumping its epoch), else the process's resident set. */
static void memory_figures(uint64_t *allocated, uint64_t *resident)
{
    *allocated = *resident = 0;
#ifdef CASCADE_JEMALLOC
    uint64_t epoch = 1;
    size_t sz = sizeof(size_t), v;
    mallctl("epoch", &epoch, &(size_t){sizeof(epoch)}, &epoch, sizeof(epoch));
    if (mallctl("stats.allocated", &v, &sz, NULL, 0) == 0)
        *allocated = v;
    sz = sizeof(size_t);
    if (mallctl("stats.resident", &v, &sz, NULL, 0) == 0)
        *resident = v;
    if (*resident)
        return;
#endif
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages, rss;
    if (f && fscanf(f, "%llu %llu", &pages, &rss) == 2)
        *resident = rss * 4096ull;
    if (f)
        fclose(f);
    if (!*allocated)
        *allocated = *resident;
}

/* Samples the accepted count about once a second; the rate is taken over the last samples. */
static void sample_rate(struct writer *w)
{
    uint64_t t = now_ms();
    struct writer_rate *r = &w->rate;
    if (r->n && t - r->ms[(r->head + WRITER_RATE_SAMPLES - 1) % WRITER_RATE_SAMPLES] < 1000)
        return;
    struct engine_stats st;
    engine_get_stats(w->engine, &st);
    r->ms[r->head] = t;
    r->accepted[r->head] = st.outcomes[EVENT_OK];
    r->head = (r->head + 1) % WRITER_RATE_SAMPLES;
    if (r->n < WRITER_RATE_SAMPLES)
        r->n++;
}

static double ingest_rate(struct writer *w)
{
    const struct writer_rate *r = &w->rate;
    if (r->n < 2)
        return 0.0;
    uint32_t newest = (r->head + WRITER_RATE_SAMPLES - 1) % WRITER_RATE_SAMPLES;
    uint32_t oldest = (r->head + WRITER_RATE_SAMPLES - r->n) % WRITER_RATE_SAMPLES;
    uint64_t dt = r->ms[newest] - r->ms[oldest];
    return dt ? (double)(r->accepted[newest] - r->accepted[oldest]) * 1000.0 / (double)dt : 0.0;
}

static void do_query(struct writer *w, struct batch *b)
{
    struct rpc_server_stats ss = {
        .wal_bytes = wal_bytes(w->wal),
        .uptime_ms = now_ms() - w->start_ms,
        .ingest_rate = ingest_rate(w),
        .analytics = w->analytics,
    };
    memory_figures(&ss.mem_allocated, &ss.mem_resident);
    if (rpc_handle(w->engine, &ss, b->req, b->req_len, &b->resp, &b->resp_len)) {
        b->resp = NULL;
        b->resp_len = 0;
    }
}

/* Answers every query waiting now: they queue ahead of ingest (bqueue_push). */
static void answer_queries(struct writer *w)
{
    struct batch *b;
    while ((b = bqueue_pop_query(&w->in))) {
        do_query(w, b);
        bqueue_push(w->done, b);
    }
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (;;) {
        struct batch *b = bqueue_pop_wait(&w->in, 1000);
        sample_rate(w);
        analytics_tick(w->analytics, w->engine);
        if (!b)
            continue;
        if (b->kind == BATCH_STOP) {
            batch_free(b);
            break;
        }
        if (b->kind == BATCH_INGEST)
            do_ingest(w, b);
        else
            do_query(w, b);
        bqueue_push(w->done, b);
    }
    return NULL;
}

int writer_start(struct writer *w, const char *data_dir, enum wal_fsync fsync,
                 uint64_t analytics_interval_ms, struct bqueue *done, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->fsync = fsync;
    w->done = done;
    w->start_ms = now_ms();
    int rc = engine_new(&w->engine);
    if (rc) {
        snprintf(err, errlen, "cannot create the engine: %s", strerror(-rc));
        return rc;
    }
    struct wal_options o = {.dir = data_dir, .fsync = fsync};
    if ((rc = wal_open(&o, &w->wal, err, errlen)))
        goto fail;
    if (!wal_uses_io_uring(w->wal))
        log_msg(LOG_WARN, "wal_no_io_uring", "fallback=pwrite");
    if ((rc = recover(w))) {
        snprintf(err, errlen, "cannot replay the WAL in %s/wal: %s", data_dir, strerror(-rc));
        goto fail;
    }
    if ((rc = analytics_start(&w->analytics, analytics_interval_ms, err, errlen)))
        goto fail;
    if ((rc = bqueue_init(&w->in, 0)))
        goto fail;
    if ((rc = -pthread_create(&w->thread, NULL, writer_main, w))) {
        snprintf(err, errlen, "cannot start the writer thread: %s", strerror(-rc));
        goto fail;
    }
    w->started = 1;
    return 0;
fail:
    analytics_stop(w->analytics);
    w->analytics = NULL;
    if (w->wal)
        wal_close(w->wal);
    engine_free(w->engine);
    w->wal = NULL;
    w->engine = NULL;
    return rc;
}

void writer_stop(struct writer *w)
{
    if (!w->started)
        return;
    struct batch *stop;
    if (batch_new(BATCH_STOP, 0, &stop) == 0)
        bqueue_push(&w->in, stop);
    pthread_join(w->thread, NULL);
    analytics_stop(w->analytics);
    wal_close(w->wal);
    engine_free(w->engine);
    bqueue_destroy(&w->in);
    free(w->scratch);
    w->started = 0;
}
