/* The writer: the engine's single writer (the engine thread) and its log stage (the log
 * thread). The engine thread takes batches from the network loop in order, answers queries
 * (between chunks of a batch too: they queue ahead of ingest) and hands ingest batches to the log
 * thread, which appends each to the WAL (durable per the fsync policy) and only then hands it
 * back for the engine thread to apply and ack (DESIGN §6, log before apply): batch k + 1 is
 * logged while batch k is applied, and no query waits for a WAL write. Under `everysec` the WAL
 * fsyncs on a third thread.
 *
 * Snapshots (store/snapfile.h): between two batches the writer forks; the child writes its
 * copy-on-write image of the engine to DATA_DIR/snapshots and exits, while the parent goes on
 * applying batches and reaps the child between them. Once the file is in place, snapshots
 * beyond the two newest and the WAL segments before the older of those are removed. Start-up
 * loads the newest intact snapshot and replays only the WAL after it. */
#ifndef SERVER_WRITER_H
#define SERVER_WRITER_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "analytics/worker.h"
#include "core/procmem.h"
#include "cascade/engine.h"
#include "net/batch.h"
#include "query/rpc.h"
#include "store/snapfile.h"
#include "store/wal.h"

#define WRITER_RATE_SAMPLES 6
#define WRITER_DEAD_CONNS   256 /* far more than the connections of the batches in flight */

/* The accepted count sampled about once a second: `stats` reports the rate over them. */
struct writer_rate {
    uint64_t ms[WRITER_RATE_SAMPLES], accepted[WRITER_RATE_SAMPLES];
    uint32_t head, n;
};

struct writer_config {
    const char *data_dir;
    enum wal_fsync fsync;
    uint64_t analytics_interval_ms; /* 0: only on request */
    uint64_t snapshot_interval_ms;  /* 0: only on request (the method, SIGUSR1) */
    int snapshot_on_exit;           /* a stop writes one when the WAL holds events after the last */
    uint64_t wal_segment_bytes;     /* 0: the WAL's default */
    uint64_t max_memory;            /* bytes; past them ingest is refused (0: no limit) */
    int64_t retention_ms;           /* event time; 0: keep every cascade */
    int allow_history_loss; /* start even when the events before the WAL's first segment exist
                             * in no snapshot that can be loaded */
};

/* The snapshot in progress and what is waiting for one. */
struct writer_snap {
    pid_t child; /* 0: none running */
    struct snapshot_meta meta;
    uint64_t started_ms, last_ms, interval_ms;
    uint64_t accepted;        /* accepted events when the last one was taken */
    struct wal_pos last_pos;  /* of the last one written or loaded ({0, 0}: none) */
    struct batch *now, *next; /* `snapshot` requests: answered by the running one / the next */
    atomic_int requested;     /* SIGUSR1 */
    int on_exit;              /* writer_config.snapshot_on_exit */
    struct rpc_snapshot_status status;
};

/* The engine thread's pauses (DESIGN §8): a stretch in which it works without looking at the
 * queries waiting (from the moment it takes work after waiting for it, to the next point where
 * it answers queries, or goes back to waiting). Each stretch is put down to the longest job in it. */
enum writer_job {
    WRITER_JOB_APPLY = 0, /* one apply slice (retention sweeps run inside it) */
    WRITER_JOB_WAL,       /* one wal_append: on the log thread, not a pause of the engine's */
    WRITER_JOB_QUERY,     /* one query's handler */
    WRITER_JOB_ANALYTICS, /* analytics_tick: the copy for the worker */
    WRITER_JOB_SNAPSHOT,  /* snapshot_tick: the fork, reaping, pruning */
    WRITER_JOBS
};

struct writer_pauses {
    uint64_t since_ns;           /* the current stretch began (0: waiting for work) */
    uint64_t since_cpu_ns;       /* the thread's CPU time then */
    uint64_t top_ns;             /* the longest job in it so far */
    int top_job;
    uint64_t max_ns;             /* the longest stretch since start */
    int max_job;                 /* its longest job */
    uint64_t max_cpu_ns;         /* the most CPU time the thread spent in one stretch */
    uint64_t over_10ms;          /* stretches longer than 10 ms */
    uint64_t job_max_ns[WRITER_JOBS];
};

/* The log stage. The log thread alone appends to the WAL while it runs (the engine thread only
 * reads positions and removes old segments, which wal.c allows beside an append). */
struct writer_log {
    struct bqueue q; /* ingest batches and the stop, from the engine thread in their order */
    pthread_t thread;
    int started;
    _Atomic int rescue;             /* set by the log thread, cleared by the engine's snapshot */
    _Atomic uint64_t append_max_ns; /* the longest wal_append (one batch) */
    _Atomic uint64_t over_10ms;     /* appends longer than 10 ms */
    int failing;                    /* the last append failed (a run of them is logged once) */
    uint64_t rss, rss_ms;           /* --max-memory: the last process RSS read, and when */
    /* connections (slot, generation) of refused events, newest last in a ring: their fatal
     * says nothing from the refused event on was applied, so their later events, in batches
     * already on the way, are refused too */
    struct writer_conn {
        uint32_t conn, gen;
    } dead[WRITER_DEAD_CONNS];
    uint32_t ndead, dead_next;
    int memory_state; /* 0 below 90 % of --max-memory, 1 above (warned), 2 at it (refusing) */
};

struct writer {
    struct engine *engine;
    struct wal *wal;
    enum wal_fsync fsync;
    struct bqueue in;    /* from the network loop */
    struct bqueue *done; /* back to it */
    pthread_t thread;
    int started;
    uint64_t start_ms;
    uint8_t *scratch; /* outcomes of the valid events of one batch */
    uint32_t scratch_cap;
    struct writer_rate rate;
    struct analytics *analytics;
    struct procmem_watch *childmem; /* a snapshot child's own memory, for --max-memory */
    struct trash *trash;            /* old snapshots and WAL segments unlinked off this thread */
    uint32_t chunk;                 /* events between two drains of `in` (writer.c APPLY_CHUNK) */
    uint32_t slice;                 /* events per engine_apply call in a chunk (writer.c SLICE_*) */
    char data_dir[PATH_MAX];
    struct writer_snap snap;
    uint64_t max_memory;     /* --max-memory in bytes, 0: none */
    uint64_t refused_memory; /* events refused at it */
    int wal_err;             /* 0, or the negative errno of the last batch the WAL refused */
    uint64_t refused_wal;    /* events refused, unapplied, because the WAL could not take them */
    struct writer_pauses pauses;
    int rescue;              /* a failed fsync: ingest waits for a snapshot at rescue_pos */
    struct wal_pos rescue_pos;
    struct writer_log log;
    struct wal_pos applied; /* the WAL position after the last batch the engine applied */
    struct batch *ready, *ready_last; /* logged batches taken from `in`, not yet applied */
    /* a cluster node's (server/nats_node.c): `stats` shows its partitions; set before the
     * node starts, called on the engine thread (the array stays the caller's) */
    void (*partitions_fn)(void *ctx, const struct rpc_partition **parts, uint32_t *n);
    void *partitions_ctx;
};

/* Opens the WAL under data_dir, loads the newest intact snapshot and replays the WAL after it
 * (the whole WAL without one) into the engine, logging what it found, refused and cut; starts
 * the analytics worker (a snapshot every analytics_interval_ms when events arrived; 0: only on
 * request) and the thread. On failure a negative errno and a message in err. */
int writer_start(struct writer *w, const struct writer_config *cfg, struct bqueue *done, char *err,
                 size_t errlen);

/* Hands a batch to the writer (what the network loop does by pushing to w->in): a query is
 * answered ahead of the ingest queued, an ingest batch is logged, applied and its outcomes filled
 * in; each comes back on `done`, ingest batches in the order they were handed over. Any thread. */
void writer_submit(struct writer *w, struct batch *b);

/* Asks for an engine snapshot as soon as the writer is between batches (for SIGUSR1: safe from
 * any thread). ctx is the writer. */
void writer_request_snapshot(void *ctx);

/* Finishes every batch queued so far, syncs and closes the WAL, frees the engine. */
void writer_stop(struct writer *w);

#endif
