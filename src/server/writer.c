/* The writer thread (see writer.h). */
#include "server/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/bigarr.h"
#include "core/log.h"
#include "core/procmem.h"
#include "engine/persist.h"
#include "query/rpc.h"
#include "store/trash.h"
#include "store/wal_int.h"

#ifdef CASCADE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

/* Events applied between two looks at the query queue: at ~1 M events/s a query waits at most
 * about half a millisecond for the chunk in progress (DESIGN §8: point queries p99 < 1 ms).
 * When chunks run slow (the copy-on-write faults after a snapshot's fork: one chunk took 71 ms
 * at 10 M events) the chunk halves, down to APPLY_CHUNK_MIN, and grows back once they are fast:
 * the look at the queue then comes after a bounded time, not a fixed count. */
#define APPLY_CHUNK      512
#define APPLY_CHUNK_MIN  16
#define APPLY_SLOW_NS    2000000u /* a chunk over this: the next one is half as long */
#define APPLY_FAST_NS    500000u  /* under this: twice as long, up to APPLY_CHUNK */

/* Inside a chunk the engine is called a slice at a time, and the queries that arrived meanwhile
 * are answered between two slices, not after the chunk (issue 18, point-query p99 <= 1 ms under
 * ingest: a query waited ~0.5 ms on average and up to ~2 ms for the chunk in progress at 2 M
 * events, the larger part of its time in the server). The slice is bounded by time like the
 * chunk: one over SLICE_SLOW_NS halves the next (down to one event), one under SLICE_FAST_NS
 * doubles it (up to the chunk). engine_apply is never cut, so a query still sees the engine
 * between two whole events, as it did between two chunks. A slice costs some of engine_apply's
 * prefetching at its start; ~100 us holds 50-150 events here (bench/results/query-tail-*). */
#define SLICE_START      64
#define SLICE_SLOW_NS    200000u
#define SLICE_FAST_NS    50000u

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int test_apply_us; /* test_faults(): applyus=US, each event applied takes US longer */

static const char *const job_names[WRITER_JOBS + 1] = {"apply", "wal_append", "query",
                                                       "analytics_copy", "snapshot", NULL};
/* The thread each job runs on: the log thread's appends are no pause of the engine thread. */
static const char *const job_threads[WRITER_JOBS + 1] = {"engine", "log", "engine", "engine",
                                                         "engine", NULL};

/* A job that began at t0 has ended: the longest of its kind, and of the current stretch. */
static uint64_t job_done(struct writer *w, int job, uint64_t t0)
{
    struct writer_pauses *p = &w->pauses;
    uint64_t d = now_ns() - t0;
    if (d > p->job_max_ns[job])
        p->job_max_ns[job] = d;
    if (d >= p->top_ns) {
        p->top_ns = d;
        p->top_job = job;
    }
    return d;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The thread starts a stretch of work (after waiting for it, or at a checkpoint). */
static void stretch_begin(struct writer *w, uint64_t t)
{
    w->pauses.since_ns = t;
    w->pauses.since_cpu_ns = thread_cpu_ns();
    w->pauses.top_ns = 0;
}

/* The thread looks at the waiting queries (or goes back to waiting for work): the stretch
 * since the last such point is one pause. Its wall time is what a waiting query saw; its CPU
 * time is what the thread spent (less, when the thread waited for a core or for the disk). */
static void checkpoint(struct writer *w, int idle)
{
    struct writer_pauses *p = &w->pauses;
    uint64_t t = now_ns();
    if (p->since_ns) {
        uint64_t d = t - p->since_ns, cpu = thread_cpu_ns() - p->since_cpu_ns;
        if (d > p->max_ns) {
            p->max_ns = d;
            p->max_job = p->top_job;
        }
        if (cpu > p->max_cpu_ns)
            p->max_cpu_ns = cpu;
        p->over_10ms += d > 10000000u;
    }
    if (idle)
        p->since_ns = 0;
    else
        stretch_begin(w, t);
}

_Static_assert(sizeof(struct batch_spos) == sizeof(struct walrec_pos) &&
                   offsetof(struct batch_spos, seq) == offsetof(struct walrec_pos, seq),
               "a batch's stream positions are logged as they are");

/* A cluster node's record: the stream positions its events came from are applied with them. */
static int replay_pos(void *ctx, const struct walrec_pos *pos, size_t n)
{
    struct writer *w = ctx;
    for (size_t i = 0; i < n; i++)
        engine_stream_set(w->engine, pos[i].partition, pos[i].seq);
    return 0;
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

static uint64_t accepted_now(const struct writer *w)
{
    struct engine_stats st;
    engine_get_stats(w->engine, &st);
    return st.outcomes[EVENT_OK];
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The size of DATA/snapshots/NAME: 0, or -1 when it is not there. */
static int snapshot_bytes(const struct writer *w, const char *name, uint64_t *bytes)
{
    char path[PATH_MAX + 128];
    struct stat st;
    snprintf(path, sizeof(path), "%s/snapshots/%s", w->data_dir, name);
    if (stat(path, &st) < 0)
        return -1;
    *bytes = (uint64_t)st.st_size;
    return 0;
}

/* The newest intact snapshot, if any, into w->engine: the WAL position to replay from. */
static struct wal_pos load_snapshot(struct writer *w)
{
    struct engine *e;
    struct snapshot_meta meta;
    char name[SNAPSHOT_NAME_MAX];
    unsigned refused;
    uint64_t t0 = now_ms();
    int rc = snapshot_load_newest(w->data_dir, &e, &meta, name, &refused);
    if (rc || !e) {
        if (rc)
            log_msg(LOG_ERROR, "snapshot_load_failed", "error=\"%s\"", strerror(-rc));
        if (refused)
            log_msg(LOG_ERROR, "snapshot_none_intact",
                    "refused=%u action=\"replaying the whole WAL\"", refused);
        return (struct wal_pos){0, 0};
    }
    engine_free(w->engine);
    w->engine = e;
    struct rpc_snapshot_status *s = &w->snap.status;
    if (snapshot_bytes(w, name, &s->last_bytes))
        s->last_bytes = 0;
    s->last_unix_ms = meta.written_ms;
    s->last_events = meta.events;
    snprintf(s->last_file, sizeof(s->last_file), "%s", name);
    w->snap.last_pos = meta.pos;
    log_msg(LOG_INFO, "snapshot_loaded",
            "file=%s events=%" PRIu64 " bytes=%" PRIu64 " ms=%" PRIu64 " wal_seq=%" PRIu64
            " wal_offset=%" PRIu64,
            name, meta.events, s->last_bytes, now_ms() - t0, meta.pos.seq, meta.pos.off);
    return meta.pos;
}

/* No snapshot was loaded, yet the WAL's first segments were removed after one was written: the
 * events in them exist nowhere this build can read. Starting would lose them without a word,
 * so it does not, unless told to. 0, or -ENODATA with the reason in err. */
static int check_history(struct writer *w, struct wal_pos from, int allow, char *err, size_t errlen)
{
    uint64_t first = wal_first_segment(w->wal);
    if (from.seq != 0 || first <= 1)
        return 0;
    if (allow) {
        log_msg(
            LOG_ERROR, "history_lost",
            "wal_first_segment=%llu action=\"starting from the WAL alone (--allow-history-loss)\"",
            (unsigned long long)first);
        return 0;
    }
    snprintf(err, errlen,
             "no snapshot in %s/snapshots can be loaded: it holds none (deleted or moved?), or "
             "each was refused (a snapshot_refused line above names the file and why; it was "
             "renamed *.corrupt or left in place), and the WAL begins at segment %llu: the "
             "events before it were removed after a "
             "snapshot and exist only there. Starting would lose them. Restore that snapshot, "
             "run the build that wrote it, or start with --allow-history-loss to keep only what "
             "the WAL holds",
             w->data_dir, (unsigned long long)first);
    return -ENODATA;
}

/* Retention is set before the WAL is replayed, so that the replay evicts where the run that
 * wrote it did (sweeps depend on the events alone). */
static int recover(struct writer *w, const struct writer_config *cfg, char *err, size_t errlen)
{
    struct wal_replay_stats st = {0};
    struct wal_pos from = load_snapshot(w);
    int rc = check_history(w, from, cfg->allow_history_loss, err, errlen);
    if (rc)
        return rc;
    if ((rc = engine_set_retention(w->engine, cfg->retention_ms))) {
        snprintf(err, errlen, "cannot set --retention: %s", strerror(-rc));
        return rc;
    }
    w->snap.accepted = accepted_now(w);
    uint64_t t0 = now_ms();
    wal_set_pos_fn(w->wal, replay_pos, w);
    rc = wal_replay_from(w->wal, from, replay_record, w, &st);
    if (rc) {
        if (wal_error(w->wal)[0]) /* damage or a gap: the file, the offset and what to do */
            snprintf(err, errlen, "%s", wal_error(w->wal));
        else
            snprintf(err, errlen, "cannot replay the WAL in %s/wal: %s", w->data_dir,
                     strerror(-rc));
        return rc;
    }
    uint64_t ms = now_ms() - t0;
    log_msg(LOG_INFO, "wal_replayed", "segments=%llu records=%llu events=%llu bytes=%llu ms=%llu",
            (unsigned long long)st.segments, (unsigned long long)st.records,
            (unsigned long long)st.events, (unsigned long long)st.bytes, (unsigned long long)ms);
    if (st.cut_bytes)
        log_msg(LOG_WARN, "wal_tail_cut",
                "file=%s/wal/%020llu.wal offset=%llu bytes=%llu saved=%s reason=\"torn tail of "
                "the newest segment after a crash (nothing intact after it); everything before "
                "it was kept\"",
                w->data_dir, (unsigned long long)st.cut_seq, (unsigned long long)st.cut_off,
                (unsigned long long)st.cut_bytes, st.cut_saved ? "wal-damaged/" : "no");
    if (st.missing)
        log_msg(LOG_ERROR, "history_lost",
                "wal_missing_segments=%llu snapshot_wal_seq=%llu action=\"replaying across the "
                "gap (--allow-history-loss): the events of the missing segments are lost\"",
                (unsigned long long)st.missing, (unsigned long long)from.seq);
    struct wal_pos oldest;
    snapshot_prune(w->data_dir, SNAPSHOT_KEEP, &oldest, w->trash); /* a crash's .tmp files */
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


static void memory_figures(uint64_t *allocated, uint64_t *resident);

/* The process's resident set as the kernel counts it (statm's second field, VmRSS): what the
 * OOM killer and `ps` see. jemalloc's stats.resident counts every page it has mapped as
 * resident, touched or not: after a restart it read 77 MiB against 59 MiB of VmRSS (1.5 M
 * events, --retention 1h). A cgroup's figure would add the page cache of the WAL and snapshot
 * files and the snapshot child's copies, which the kernel can reclaim or which end with the
 * child. 0 if /proc cannot be read. */
static uint64_t process_rss(void)
{
    char buf[128];
    unsigned long long pages, rss;
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    if (sscanf(buf, "%llu %llu", &pages, &rss) != 2)
        return 0;
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* With --max-memory: 1 when the process's resident memory (process_rss) has reached it, and the
 * batch must be refused (until it is back under 90 %). Each change of state is logged. On the
 * log thread: a refused batch is not logged. */
static int at_memory_limit(struct writer *w)
{
    struct writer_log *l = &w->log;
    if (!w->max_memory)
        return 0;
    /* a read costs ~13 us: at most one a millisecond, however small the batches */
    uint64_t t = now_ms();
    if (t != l->rss_ms || !l->rss) {
        l->rss = process_rss();
        l->rss_ms = t;
    }
    /* a snapshot child's own pages (copy-on-write copies made since the fork) are memory this
     * server holds too: the watcher thread keeps the figure, so no page-table walk here */
    uint64_t child = w->childmem ? procmem_watch_bytes(w->childmem, NULL) : 0;
    uint64_t resident = l->rss + child;
    uint64_t high = w->max_memory / 10 * 9;
    int state = resident >= w->max_memory ? 2 : resident >= high ? 1 : 0;
    if (l->memory_state == 2 && state == 1)
        state = 2; /* once full, refuse until below 90 %, so that ingest does not flap */
    if (state != l->memory_state)
        log_msg(state ? LOG_WARN : LOG_INFO, "memory_limit",
                "state=%s rss=%llu snapshot_child_private=%llu max_memory=%llu",
                (const char *[]){"ok", "high", "full"}[state], (unsigned long long)l->rss,
                (unsigned long long)child, (unsigned long long)w->max_memory);
    l->memory_state = state;
    return state == 2;
}

/* Every event of the batch that validation let through is refused with outcome, unapplied, and
 * counted in *count; the engine's stats still get the validation's own rejections. */
static void refuse_batch(struct writer *w, struct batch *b, uint8_t outcome, uint64_t *count)
{
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->vidx[i] != UINT32_MAX) {
            b->outcome[i] = outcome;
            (*count)++;
        } else if (!b->wal.dropped || b->outcome[i] != EVENT_ERR_NOMEM) { /* see drop_dead */
            engine_note_outcome(w->engine, b->outcome[i]);
        }
    }
}

/* The WAL could not take a batch (rc < 0): every validated event of it is refused unapplied,
 * as EVENT_ERR_NOMEM, so that the producer gets a fatal naming the first one to resend. The
 * first failure of a run of them is logged; later ones are counted. */
static void wal_refused(struct writer *w, struct batch *b, int rc)
{
    if (!w->wal_err)
        log_msg(LOG_ERROR, "wal_append_failed",
                "error=\"%s\" events=%u action=\"refusing ingest (nothing applied, nothing "
                "acked); each new batch tries the WAL again, ingest resumes when it takes it\"",
                strerror(-rc), b->nvalid);
    w->wal_err = rc;
    refuse_batch(w, b, EVENT_ERR_NOMEM, &w->refused_wal);
}

/* ---------------------------------------------------------------- the log stage */

/* What the log stage made of a batch (batch.wal.rc besides 0 and a negative errno). */
#define LOGGED_FULL  1 /* at --max-memory: not logged, refused */
#define LOGGED_NOMEM 2 /* the engine thread had no room for its outcomes: not logged, refused */

/* Where a batch is (batch.wal.stage): new from the loop, at the log thread, back from it. */
enum { STAGE_NEW = 0, STAGE_LOGGING, STAGE_LOGGED };

/* A failed fsync: the kernel may have dropped pages of the current segment, so events already
 * acked may be gone from the disk while the engine holds them. The WAL goes on in a new segment
 * and a snapshot taken at its start makes everything the engine holds durable again; nothing
 * more is logged (nor acked) until that snapshot is written, since a crash before it would leave
 * the damaged segment to be replayed. On the log thread; the batch b carries the news to the
 * engine thread (b->wal.rescue), which takes the snapshot once it has applied everything before. */
static void log_rescue(struct writer *w, struct batch *b)
{
    struct wal_pos pos;
    int rc = wal_restart_segment(w->wal, &pos);
    if (rc) {
        if (!w->log.failing)
            log_msg(LOG_ERROR, "wal_failed",
                    "error=\"%s\" action=\"refusing ingest until a restart: the WAL cannot "
                    "go on in a new segment\"",
                    strerror(-rc));
        return;
    }
    atomic_store(&w->log.rescue, 1);
    b->wal.rescue = 1;
    log_msg(LOG_WARN, "wal_rescue",
            "wal_seq=%llu action=\"a write or fsync of the WAL failed (its last pages may be "
            "lost): writing a snapshot of everything held, then going on in segment %llu; "
            "ingest is refused until the snapshot is written\"",
            (unsigned long long)pos.seq, (unsigned long long)pos.seq);
}

static int conn_dead(const struct writer_log *l, uint32_t conn, uint32_t gen)
{
    for (uint32_t i = 0; i < l->ndead; i++)
        if (l->dead[i].conn == conn && l->dead[i].gen == gen)
            return 1;
    return 0;
}

/* b was refused: the connections with valid events in it are refused from now on. */
static void mark_dead(struct writer_log *l, const struct batch *b)
{
    for (uint32_t s = 0; s < b->nsegs; s++) {
        const struct batch_seg *sg = &b->segs[s];
        int valid = 0;
        for (uint32_t k = 0; k < sg->n && !valid; k++)
            valid = b->vidx[sg->first + k] != UINT32_MAX;
        if (!valid || conn_dead(l, sg->conn, sg->gen))
            continue;
        l->dead[l->dead_next] = (struct writer_conn){sg->conn, sg->gen};
        l->dead_next = (l->dead_next + 1) % WRITER_DEAD_CONNS;
        if (l->ndead < WRITER_DEAD_CONNS)
            l->ndead++;
    }
}

/* Takes the events of refused connections out of b (refused as EVENT_ERR_NOMEM, counted in
 * b->wal.dropped): a producer told to resend from event N must not find N + 1000 applied, out
 * of its order, from a batch that was already on its way when N was refused. */
static void drop_dead(struct writer_log *l, struct batch *b)
{
    if (!l->ndead)
        return;
    uint32_t dropped = 0;
    for (uint32_t s = 0; s < b->nsegs; s++) {
        const struct batch_seg *sg = &b->segs[s];
        if (!conn_dead(l, sg->conn, sg->gen))
            continue;
        for (uint32_t k = sg->first; k < sg->first + sg->n; k++) {
            if (b->vidx[k] == UINT32_MAX)
                continue;
            b->vidx[k] = UINT32_MAX;
            b->outcome[k] = EVENT_ERR_NOMEM;
            dropped++;
        }
    }
    if (!dropped)
        return;
    uint32_t j = 0; /* the events left, in their order */
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->vidx[i] == UINT32_MAX)
            continue;
        b->evs[j] = b->evs[b->vidx[i]];
        b->vidx[i] = j++;
    }
    b->nvalid = j;
    b->wal.dropped = dropped;
}

/* Logs one ingest batch (DESIGN §6, log before apply): every validated event goes into the WAL
 * before the engine sees it, so no answer ever shows an event that a crash could lose.
 * Duplicates and events the engine will refuse are logged too: replay turns them into the same
 * no-ops, so the log need not wait for the engine's verdict. The verdict goes in b->wal: rc 0
 * (logged), a negative errno (the WAL refused it: nothing of it is applied or acked) or
 * LOGGED_FULL, and the WAL position after it, which is what the engine holds once it has
 * applied it (a snapshot taken then records that position). */
static void log_batch(struct writer *w, struct batch *b)
{
    struct writer_log *l = &w->log;
    drop_dead(l, b);
    if (b->wal.rc) {
        /* refused by the engine thread already: passed on in its place */
    } else if (at_memory_limit(w)) {
        b->wal.rc = LOGGED_FULL;
    } else if (atomic_load(&l->rescue)) {
        b->wal.rc = -EIO; /* until the rescue snapshot is written */
    } else {
        uint64_t t0 = now_ns();
        /* a cluster node's batch: its stream positions in the same record as its events */
        int rc = wal_append_pos(w->wal, b->evs, NULL, b->nvalid,
                                (const struct walrec_pos *)b->spos, b->nspos);
        uint64_t d = now_ns() - t0;
        if (d > atomic_load_explicit(&l->append_max_ns, memory_order_relaxed))
            atomic_store_explicit(&l->append_max_ns, d, memory_order_relaxed);
        if (d > 10000000u)
            atomic_fetch_add_explicit(&l->over_10ms, 1, memory_order_relaxed);
        if (rc && wal_failed(w->wal))
            log_rescue(w, b);
        b->wal.rc = rc;
        l->failing = rc != 0;
    }
    if (b->wal.rc)
        mark_dead(l, b);
    struct wal_pos pos = wal_position(w->wal);
    b->wal.seq = pos.seq;
    b->wal.off = pos.off;
}

/* The log thread: logs the batches in the order the engine thread handed them over and hands
 * each back to it through `in` (the stop too, last: it then no longer touches the WAL). */
static void *log_main(void *arg)
{
    struct writer *w = arg;
    for (;;) {
        struct batch *b = bqueue_pop_wait(&w->log.q, 1000);
        if (!b)
            continue;
        int stop = b->kind == BATCH_STOP;
        if (!stop)
            log_batch(w, b);
        if (!stop && b->logged) /* a cluster node acks the messages the WAL now holds */
            b->logged(b, b->logged_ctx);
        b->wal.stage = STAGE_LOGGED;
        bqueue_push(&w->in, b);
        if (stop)
            break;
    }
    return NULL;
}

void writer_submit(struct writer *w, struct batch *b)
{
    bqueue_push(&w->in, b);
}

/* ---------------------------------------------------------------- applying */

/* The rescue snapshot is written: ingest goes on (the log thread logs the next batch). */
static void rescue_check(struct writer *w)
{
    if (!w->rescue || !w->snap.last_pos.seq || wal_pos_cmp(w->snap.last_pos, w->rescue_pos) < 0)
        return;
    w->rescue = 0;
    atomic_store(&w->log.rescue, 0);
    log_msg(LOG_INFO, "wal_rescued", "snapshot=%s", w->snap.status.last_file);
}

/* The log stage refused batch b: its events are refused unapplied (and counted). */
static void refused_by_log(struct writer *w, struct batch *b)
{
    int rc = b->wal.rc;
    if (rc == LOGGED_FULL) {
        refuse_batch(w, b, BATCH_FULL, &w->refused_memory);
        return;
    }
    if (rc == LOGGED_NOMEM) {
        memset(b->outcome, EVENT_ERR_NOMEM, b->n);
        return;
    }
    if (b->wal.rescue) {
        w->rescue = 1;
        w->rescue_pos = w->applied;
        w->snap.requested = 1;
    } else if (w->rescue && !w->snap.child) {
        w->snap.requested = 1; /* the last try failed: another */
    }
    wal_refused(w, b, rc);
}

static void drain_in(struct writer *w);
static int do_query(struct writer *w, struct batch *b);

/* The queries that arrived while a slice was applied, answered before the rest of the chunk;
 * one atomic load when none waits. */
static void answer_queries(struct writer *w)
{
    if (!atomic_load_explicit(&w->in.nq, memory_order_acquire))
        return;
    struct batch *b;
    while ((b = bqueue_pop_query(&w->in)))
        if (!do_query(w, b))
            bqueue_push(w->done, b);
}

/* Events [i, i + m) of b, a slice at a time with the queries waiting answered between slices:
 * the chunk's time in the engine, the queries left out. */
static uint64_t apply_chunk(struct writer *w, struct batch *b, uint32_t i, uint32_t m)
{
    uint64_t d = 0;
    for (uint32_t j = i, s; j < i + m; j += s) {
        s = i + m - j < w->slice ? i + m - j : w->slice;
        uint64_t t0 = now_ns();
        if (test_apply_us) /* CASCADE_TEST_WAL_FAULTS applyus=US: a slow engine */
            nanosleep(&(struct timespec){(time_t)((uint64_t)s * test_apply_us / 1000000),
                                         (long)((uint64_t)s * test_apply_us % 1000000) * 1000},
                      NULL);
        engine_apply(w->engine, b->evs + j, s, w->scratch + j);
        uint64_t ds = job_done(w, WRITER_JOB_APPLY, t0);
        d += ds;
        if (ds > SLICE_SLOW_NS && w->slice > 1)
            w->slice /= 2;
        else if (ds < SLICE_FAST_NS && s == w->slice && w->slice < APPLY_CHUNK)
            w->slice *= 2;
        answer_queries(w);
    }
    return d;
}

/* Applies a batch the log stage has handed back, in chunks with the batches (and the queries)
 * that arrived meanwhile dealt with between them, the queries between slices too, and fills in
 * every event's outcome. */
static void apply_batch(struct writer *w, struct batch *b)
{
    w->applied = (struct wal_pos){b->wal.seq, b->wal.off};
    w->refused_wal += b->wal.dropped;
    if (b->wal.rc) {
        refused_by_log(w, b);
        return;
    }
    if (w->wal_err && b->nvalid) { /* the WAL took events again (not: only dropped ones) */
        log_msg(LOG_INFO, "wal_append_resumed", "refused_since_start=%llu",
                (unsigned long long)w->refused_wal);
        w->wal_err = 0;
    }
    for (uint32_t i = 0, m; i < b->nvalid; i += m) {
        m = b->nvalid - i < w->chunk ? b->nvalid - i : w->chunk;
        uint64_t d = apply_chunk(w, b, i, m);
        if (d > APPLY_SLOW_NS && w->chunk > APPLY_CHUNK_MIN)
            w->chunk /= 2;
        else if (d < APPLY_FAST_NS && m == w->chunk && w->chunk < APPLY_CHUNK)
            w->chunk *= 2;
        drain_in(w);
    }
    for (uint32_t i = 0; i < b->nspos; i++) /* what the engine now holds of the stream */
        engine_stream_set(w->engine, b->spos[i].partition, b->spos[i].seq);
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->vidx[i] != UINT32_MAX)
            b->outcome[i] = w->scratch[b->vidx[i]];
        else if (!b->wal.dropped || b->outcome[i] != EVENT_ERR_NOMEM) /* dropped: counted above */
            engine_note_outcome(w->engine, b->outcome[i]);
    }
}

/* A new ingest batch (or the stop) goes to the log stage. The room for its outcomes is made
 * here, since the engine must not fail to apply a batch once it is logged; the scratch only
 * grows, so it is still large enough when the batch comes back. */
static void to_log(struct writer *w, struct batch *b)
{
    b->wal = (struct batch_wal){.stage = STAGE_LOGGING};
    if (b->kind == BATCH_INGEST && ensure_scratch(w, b->nvalid ? b->nvalid : 1))
        b->wal.rc = LOGGED_NOMEM;
    bqueue_push(&w->log.q, b);
}

/* A batch back from the log stage waits its turn behind those before it. */
static void ready_push(struct writer *w, struct batch *b)
{
    b->next = NULL;
    if (w->ready_last)
        w->ready_last->next = b;
    else
        w->ready = b;
    w->ready_last = b;
}

static struct batch *ready_pop(struct writer *w)
{
    struct batch *b = w->ready;
    if (b) {
        w->ready = b->next;
        if (!w->ready)
            w->ready_last = NULL;
        b->next = NULL;
    }
    return b;
}

/* Allocated and resident bytes: jemalloc's own figures plus the big arrays' mappings when it is
 * the allocator (refreshed by bumping its epoch), else the process's resident set. */
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
    if (*resident) { /* the big arrays are mappings of their own (core/bigarr), not jemalloc's */
        *allocated += bigarr_mapped();
        *resident += bigarr_mapped();
        return;
    }
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

/* The server's own figures for a query's handler. Only `stats` shows the memory and WAL
 * figures, and they cost ~60 us (jemalloc's epoch, a read of /proc/self/statm, the WAL's lock):
 * 20 times a point query's own work, paid by every query and by those queued behind it until
 * they were asked for only when full is set. */
static void server_stats(struct writer *w, struct rpc_server_stats *ss, int full)
{
    *ss = (struct rpc_server_stats){
        .wal_bytes = full ? wal_bytes(w->wal) : 0,
        .uptime_ms = now_ms() - w->start_ms,
        .ingest_rate = ingest_rate(w),
        .analytics = w->analytics,
        .snapshot = w->snap.status,
        .max_memory = w->max_memory,
        .refused_memory = w->refused_memory,
        .wal_err = w->wal_err,
        .refused_wal = w->refused_wal,
        .pause_max_ns = w->pauses.max_ns,
        .pause_max_cpu_ns = w->pauses.max_cpu_ns,
        .pauses_over_10ms = w->pauses.over_10ms,
        .pause_max_job = w->pauses.max_ns ? job_names[w->pauses.max_job] : NULL,
        .pause_job_names = job_names,
    };
    _Static_assert(WRITER_JOBS <= sizeof(ss->pause_job_max_ns) / sizeof(ss->pause_job_max_ns[0]),
                   "room for every job");
    memcpy(ss->pause_job_max_ns, w->pauses.job_max_ns, sizeof(w->pauses.job_max_ns));
    ss->log_pause_max_ns = atomic_load_explicit(&w->log.append_max_ns, memory_order_relaxed);
    ss->log_pauses_over_10ms = atomic_load_explicit(&w->log.over_10ms, memory_order_relaxed);
    ss->pause_job_max_ns[WRITER_JOB_WAL] = ss->log_pause_max_ns;
    ss->pause_job_threads = job_threads;
    if (full) {
        memory_figures(&ss->mem_allocated, &ss->mem_resident);
        ss->mem_rss = process_rss();
    }
    if (w->partitions_fn) /* a cluster node: its partitions' sequences and lag */
        w->partitions_fn(w->partitions_ctx, &ss->partitions, &ss->npartitions);
}

static void respond(struct writer *w, struct batch *b, const struct rpc_server_stats *ss)
{
    if (rpc_handle(w->engine, ss, b->req, b->req_len, &b->resp, &b->resp_len)) {
        b->resp = NULL;
        b->resp_len = 0;
    }
}

/* Answers a query; 1 when it waits for a snapshot instead (it is then on w->snap.next). */
static int do_query(struct writer *w, struct batch *b)
{
    struct rpc_server_stats ss;
    int defer = 0;
    checkpoint(w, 0); /* the query waited through the stretch until now */
    uint64_t t0 = now_ns();
    /* a request that names `stats` anywhere (its method, or a parameter: that costs time only) */
    server_stats(w, &ss, memmem(b->req, b->req_len, "stats", 5) != NULL);
    ss.snapshot_defer = &defer;
    respond(w, b, &ss);
    job_done(w, WRITER_JOB_QUERY, t0);
    checkpoint(w, 0);
    if (!defer)
        return 0;
    free(b->resp);
    b->resp = NULL;
    b->resp_len = 0;
    b->next = w->snap.next;
    w->snap.next = b;
    return 1;
}

/* Takes everything waiting in `in` now: answers the queries (they queue ahead of ingest), hands
 * new ingest batches to the log stage (so that the next batch is logged while this one is
 * applied) and lines up the logged ones to be applied in their turn. */
static void drain_in(struct writer *w)
{
    checkpoint(w, 0);
    struct batch *b = bqueue_take_all(&w->in);
    while (b) {
        struct batch *next = b->next;
        b->next = NULL;
        if (b->kind == BATCH_QUERY) {
            if (!do_query(w, b))
                bqueue_push(w->done, b);
        } else if (b->wal.stage == STAGE_NEW) {
            to_log(w, b);
        } else {
            ready_push(w, b);
        }
        b = next;
    }
}

/* ---------------------------------------------------------------- snapshots */

static void answer_waiting(struct writer *w, struct batch **list,
                           const struct rpc_snapshot_result *r)
{
    struct rpc_server_stats ss;
    server_stats(w, &ss, 1);
    ss.snapshot_done = r;
    while (*list) {
        struct batch *b = *list;
        *list = b->next;
        b->next = NULL;
        respond(w, b, &ss);
        bqueue_push(w->done, b);
    }
}

/* In the child, every inherited descriptor but stdin/stdout/stderr is closed at once. The WAL
 * directory's flock belongs to the open file description, and the listening sockets to it too:
 * a copy left open in a child kept the lock and the ports after kill -9 of the server, until
 * the child had died (up to a second with millions of events), and a restart found "wal is in
 * use by another process". Closing the copy leaves the parent's lock as it is (no LOCK_UN!). */
static void close_inherited(void)
{
    if (close_range(3, ~0u, 0) == 0)
        return;
    struct rlimit rl;
    rlim_t max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                     ? rl.rlim_cur
                     : 65536;
    for (rlim_t fd = 3; fd < max; fd++)
        close((int)fd);
}

/* The child: writes its image of the engine and exits (never returns). It dies with the
 * server (PDEATHSIG) and holds none of its descriptors, so that neither a killed server's
 * child nor its slow death can hold the ports or the WAL lock. */
static int test_snapshot_hold_ms; /* test_faults() */

static void snapshot_child(struct writer *w, pid_t parent)
{
    close_inherited();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(ESRCH);
    if (test_snapshot_hold_ms > 0) /* CASCADE_TEST_WAL_FAULTS snaphold=MS: a slow disk */
        nanosleep(&(struct timespec){test_snapshot_hold_ms / 1000,
                                     (long)(test_snapshot_hold_ms % 1000) * 1000000L},
                  NULL);
    char name[SNAPSHOT_NAME_MAX];
    uint64_t bytes;
    int rc = snapshot_write(w->data_dir, w->engine, &w->snap.meta, name, &bytes);
    _exit(rc ? (-rc > 0 && -rc < 256 ? -rc : EIO) : 0);
}

static void snapshot_failed(struct writer *w, int err, const char *what)
{
    struct rpc_snapshot_result r = {.err = -err};
    snprintf(r.message, sizeof(r.message), "%s: %s", what, strerror(err));
    w->snap.status.failed++;
    log_msg(LOG_ERROR, "snapshot_failed", "error=\"%s\"", r.message);
    answer_waiting(w, &w->snap.now, &r);
}

/* Whether the engine holds records of the WAL after the last snapshot written or loaded (or there
 * is none). The log stage may be ahead: what it logged beyond is not in the engine yet. */
static int logged_since_snapshot(const struct writer *w)
{
    const struct writer_snap *s = &w->snap;
    return !s->last_pos.seq || wal_pos_cmp(w->applied, s->last_pos) != 0;
}

/* Nothing was logged since the last snapshot, whose file is still in place: it is the answer. */
static int snapshot_current(struct writer *w)
{
    struct writer_snap *s = &w->snap;
    struct rpc_snapshot_result r = {.events = s->status.last_events};
    if (logged_since_snapshot(w) || snapshot_bytes(w, s->status.last_file, &r.bytes))
        return 0;
    snprintf(r.file, sizeof(r.file), "%s", s->status.last_file);
    s->requested = 0;
    log_msg(LOG_INFO, "snapshot_current", "file=%s reason=\"nothing logged since it was written\"",
            r.file);
    answer_waiting(w, &s->next, &r);
    return 1;
}

static void snapshot_start(struct writer *w)
{
    struct writer_snap *s = &w->snap;
    if (snapshot_current(w))
        return;
    s->requested = 0;
    /* the position after the last batch applied, not the WAL's end: the log thread may have
     * logged the next batches already, and a start from this snapshot must replay them */
    s->meta = (struct snapshot_meta){
        .pos = w->applied, .events = accepted_now(w), .written_ms = wall_ms()};
    s->now = s->next; /* the requests so far are answered by this one */
    s->next = NULL;
    s->last_ms = s->started_ms = now_ms();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t parent = getpid(), pid = fork();
    if (pid == 0)
        snapshot_child(w, parent);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (pid < 0) {
        snapshot_failed(w, errno, "fork");
        return;
    }
    /* signed: tv_nsec goes back when a second boundary falls between the two reads */
    int64_t fork_ns = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
    s->status.last_fork_us = fork_ns > 0 ? (uint64_t)fork_ns / 1000 : 0;
    s->child = pid;
    s->status.running = 1;
    if (w->childmem)
        procmem_watch_set(w->childmem, pid);
    log_msg(LOG_INFO, "snapshot_started",
            "pid=%d events=%" PRIu64 " wal_seq=%" PRIu64 " wal_offset=%" PRIu64 " fork_us=%" PRIu64,
            (int)pid, s->meta.events, s->meta.pos.seq, s->meta.pos.off, s->status.last_fork_us);
}

/* The child is done: the figures, retention (snapshots, then the WAL before the older kept
 * one), and the answers to the requests it covers. */
/* The child has been reaped: its memory no longer counts. The most it held, in bytes. */
static uint64_t child_gone(struct writer *w)
{
    uint64_t peak = 0;
    if (w->childmem) {
        procmem_watch_bytes(w->childmem, &peak);
        procmem_watch_set(w->childmem, 0);
    }
    return peak;
}

static void snapshot_done(struct writer *w, int status)
{
    struct writer_snap *s = &w->snap;
    s->child = 0;
    s->status.running = 0;
    uint64_t child_peak = child_gone(w);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        int err = WIFEXITED(status) ? WEXITSTATUS(status) : EINTR;
        snapshot_failed(w, err,
                        WIFEXITED(status) ? "writing the snapshot" : "the child was killed");
        return;
    }
    struct rpc_snapshot_result r = {.events = s->meta.events, .ms = now_ms() - s->started_ms};
    snapshot_name(r.file, s->meta.pos);
    if (snapshot_bytes(w, r.file, &r.bytes))
        r.bytes = 0;
    s->accepted = s->meta.events;
    s->last_pos = s->meta.pos;
    struct rpc_snapshot_status *t = &s->status;
    t->written++;
    t->last_unix_ms = s->meta.written_ms;
    t->last_events = r.events;
    t->last_bytes = r.bytes;
    t->last_ms = r.ms;
    snprintf(t->last_file, sizeof(t->last_file), "%s", r.file);
    struct wal_pos oldest;
    /* through the trash: unlinking a 1 GB snapshot here was a 300 ms pause */
    int pruned = snapshot_prune(w->data_dir, SNAPSHOT_KEEP, &oldest, w->trash);
    int segs = oldest.seq ? wal_remove_before(w->wal, oldest.seq) : 0;
    log_msg(LOG_INFO, "snapshot_written",
            "file=%s events=%" PRIu64 " bytes=%" PRIu64 " ms=%" PRIu64 " fork_us=%" PRIu64
            " snapshots_removed=%d wal_segments_removed=%d child_private_peak=%" PRIu64,
            r.file, r.events, r.bytes, r.ms, t->last_fork_us, pruned, segs, child_peak);
    answer_waiting(w, &s->now, &r);
    rescue_check(w);
}

/* Between batches: reaps a finished child (waiting for it when block), then starts the next
 * snapshot when one is asked for or due. */
static void snapshot_tick(struct writer *w, int block)
{
    struct writer_snap *s = &w->snap;
    if (s->child) {
        int status;
        pid_t got = waitpid(s->child, &status, block ? 0 : WNOHANG);
        if (got == s->child)
            snapshot_done(w, status);
        else if (got < 0 && errno != EINTR) {
            int e = errno;
            s->child = 0;
            s->status.running = 0;
            child_gone(w);
            snapshot_failed(w, e, "waiting for the snapshot's child");
        }
        if (s->child)
            return;
    }
    if (block)
        return;
    uint64_t t = now_ms();
    int due = s->interval_ms && t - s->last_ms >= s->interval_ms && accepted_now(w) != s->accepted;
    if (s->requested || s->next || due)
        snapshot_start(w);
    else if (s->interval_ms && t - s->last_ms >= s->interval_ms)
        s->last_ms = t; /* nothing new: look again an interval from now */
}

/* A stop leaves a snapshot of everything, so that the next start loads it and replays no WAL
 * (a planned restart is then as fast as loading allows). Nothing to do when the WAL holds no
 * event after the last snapshot written or loaded. A failure is logged; the WAL still has it all.
 */
static void snapshot_on_exit(struct writer *w)
{
    struct writer_snap *s = &w->snap;
    uint64_t events = accepted_now(w);
    if (!s->on_exit || !events || !logged_since_snapshot(w))
        return;
    log_msg(LOG_INFO, "snapshot_on_exit", "events=%" PRIu64, events);
    snapshot_start(w);
    snapshot_tick(w, 1);
}

void writer_request_snapshot(void *ctx)
{
    struct writer *w = ctx;
    w->snap.requested = 1;
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    int copying = 0; /* an analytics copy is under way: its next slice is due at once */
    for (;;) {
        drain_in(w);
        struct batch *b = ready_pop(w);
        if (!b) {
            /* short waits while a child writes, so that it is reaped (and its WAL freed) soon;
             * none while a copy is under way, or an idle server would take a slice per wait */
            checkpoint(w, 1);
            b = bqueue_pop_wait(&w->in, copying ? 0 : w->snap.child ? 20 : 200);
            stretch_begin(w, now_ns()); /* busy from here to the next checkpoint */
            if (b && b->kind != BATCH_QUERY && b->wal.stage == STAGE_NEW) {
                to_log(w, b); /* logged while the ticks below run */
                b = NULL;
            }
        }
        sample_rate(w);
        uint64_t t0 = now_ns();
        copying = analytics_tick(w->analytics, w->engine);
        job_done(w, WRITER_JOB_ANALYTICS, t0);
        t0 = now_ns();
        snapshot_tick(w, 0);
        job_done(w, WRITER_JOB_SNAPSHOT, t0);
        if (!b)
            continue;
        if (b->kind == BATCH_QUERY) {
            if (!do_query(w, b))
                bqueue_push(w->done, b);
            continue;
        }
        if (b->kind == BATCH_STOP) { /* after every batch before it */
            batch_free(b);
            /* The log thread pushed the stop back as its last act and is exiting. Join it
             * before the exit snapshot forks: a fork that catches a thread in its teardown
             * (holding the allocator's or the thread registry's lock) leaves the child to
             * deadlock on its first malloc; seen under ASan, whose runtime has no fork hooks. */
            pthread_join(w->log.thread, NULL);
            w->log.started = 0;
            break;
        }
        apply_batch(w, b);
        b->wal = (struct batch_wal){0};
        bqueue_push(b->back ? b->back : w->done, b); /* a cluster node's goes back to it */
    }
    snapshot_tick(w, 1); /* a snapshot under way is finished, not abandoned */
    snapshot_on_exit(w);
    struct rpc_snapshot_result r = {.err = -ESHUTDOWN};
    snprintf(r.message, sizeof(r.message), "the server is stopping");
    answer_waiting(w, &w->snap.next, &r);
    return NULL;
}

/* Fault injection for the integration tests (test_wal_faults.py, test_wal_thread.py,
 * test_query_slices.py):
 * CASCADE_TEST_WAL_FAULTS="fsync=N,write=N,err=E,delay=MS" makes the Nth fsync / write of the WAL
 * from start-up fail with errno E (default EIO), as the WAL's unit tests do in-process, and each
 * write take MS ms longer (a slow disk); snaphold=MS makes each snapshot child wait MS ms before
 * writing (test_memory_rss.py: its copy-on-write memory); applyus=US makes each event applied
 * take US microseconds longer (test_query_slices.py: a slow engine). Logged loudly: never set in
 * production. */
static void test_faults(void)
{
    const char *spec = getenv("CASCADE_TEST_WAL_FAULTS");
    if (!spec || !*spec)
        return;
    char key[16];
    int v, used;
    for (const char *p = spec; sscanf(p, "%15[a-z]=%d%n", key, &v, &used) == 2;) {
        if (!strcmp(key, "fsync"))
            wal_faults.fail_fsync = v;
        else if (!strcmp(key, "write"))
            wal_faults.fail_write = v;
        else if (!strcmp(key, "err"))
            wal_faults.err = v;
        else if (!strcmp(key, "delay"))
            wal_faults.delay_ms = v;
        else if (!strcmp(key, "snaphold"))
            test_snapshot_hold_ms = v;
        else if (!strcmp(key, "applyus"))
            test_apply_us = v;
        p += used;
        if (*p != ',')
            break;
        p++;
    }
    log_msg(LOG_WARN, "test_wal_faults",
            "spec=\"%s\" fsync=%d write=%d err=%d delay_ms=%d snapshot_hold_ms=%d apply_us=%d",
            spec, wal_faults.fail_fsync, wal_faults.fail_write, wal_faults.err,
            wal_faults.delay_ms, test_snapshot_hold_ms, test_apply_us);
}

int writer_start(struct writer *w, const struct writer_config *cfg, struct bqueue *done, char *err,
                 size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->fsync = cfg->fsync;
    w->done = done;
    w->start_ms = now_ms();
    w->snap.interval_ms = cfg->snapshot_interval_ms;
    w->snap.on_exit = cfg->snapshot_on_exit;
    w->max_memory = cfg->max_memory;
    w->chunk = APPLY_CHUNK;
    w->slice = SLICE_START;
    w->snap.last_ms = w->start_ms;
    snprintf(w->data_dir, sizeof(w->data_dir), "%s", cfg->data_dir);
    int rc = engine_new(&w->engine);
    if (rc) {
        snprintf(err, errlen, "cannot create the engine: %s", strerror(-rc));
        return rc;
    }
    test_faults();
    struct wal_options o = {
        .dir = cfg->data_dir, .fsync = cfg->fsync, .segment_bytes = cfg->wal_segment_bytes,
        .allow_history_loss = cfg->allow_history_loss};
    if ((rc = wal_open(&o, &w->wal, err, errlen)))
        goto fail;
    if (!wal_uses_io_uring(w->wal))
        log_msg(LOG_WARN, "wal_no_io_uring", "fallback=pwrite");
    if ((rc = snapshot_dir_init(cfg->data_dir, err, errlen)))
        goto fail;
    if ((rc = trash_open(cfg->data_dir, &w->trash, err, errlen)))
        goto fail;
    wal_set_trash(w->wal, w->trash);
    if ((rc = recover(w, cfg, err, errlen)))
        goto fail;
    if (procmem_watch_start(200, &w->childmem)) /* the figure is then 0: logged, not fatal */
        log_msg(LOG_WARN, "snapshot_child_memory_unwatched",
                "reason=\"cannot start the watcher thread\"");
    uint64_t analytics_interval_ms = cfg->analytics_interval_ms;
    if ((rc = analytics_start(&w->analytics, analytics_interval_ms, err, errlen)))
        goto fail;
    w->applied = wal_position(w->wal);
    if ((rc = bqueue_init(&w->in, 0)))
        goto fail;
    if ((rc = bqueue_init(&w->log.q, 0))) {
        bqueue_destroy(&w->in);
        goto fail;
    }
    if ((rc = -pthread_create(&w->log.thread, NULL, log_main, w))) {
        snprintf(err, errlen, "cannot start the log thread: %s", strerror(-rc));
        goto fail_queues;
    }
    w->log.started = 1;
    if ((rc = -pthread_create(&w->thread, NULL, writer_main, w))) {
        snprintf(err, errlen, "cannot start the writer thread: %s", strerror(-rc));
        goto fail_queues;
    }
    w->started = 1;
    return 0;
fail_queues:
    if (w->log.started) {
        struct batch *stop;
        if (batch_new(BATCH_STOP, 0, &stop) == 0) /* else the thread is left: start failed */
            bqueue_push(&w->log.q, stop);
        pthread_join(w->log.thread, NULL);
        w->log.started = 0;
    }
    bqueue_destroy(&w->log.q);
    bqueue_destroy(&w->in);
fail:
    procmem_watch_stop(w->childmem);
    w->childmem = NULL;
    analytics_stop(w->analytics);
    w->analytics = NULL;
    if (w->wal)
        wal_close(w->wal);
    trash_close(w->trash);
    w->trash = NULL;
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
    pthread_join(w->thread, NULL); /* it joined the log thread when the stop came back */
    if (w->log.started) {
        pthread_join(w->log.thread, NULL);
        w->log.started = 0;
    }
    procmem_watch_stop(w->childmem);
    w->childmem = NULL;
    analytics_stop(w->analytics);
    wal_close(w->wal);
    trash_close(w->trash);
    w->trash = NULL;
    engine_free(w->engine);
    bqueue_destroy(&w->in);
    bqueue_destroy(&w->log.q);
    free(w->scratch);
    w->started = 0;
}
