/* msgpack-RPC on the query port (DESIGN §5): `[0, msgid, method, [params]]` in, `[1, msgid,
 * error, result]` out, every method and its parameter schema from query/method.h. Runs on the
 * engine's thread, between two applied chunks of events, so every answer sees the state as of one
 * moment. The HTTP port and cascade-cli build the same requests (qrequest_from_text). */
#ifndef QUERY_RPC_H
#define QUERY_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/engine.h"

struct analytics;

/* The engine snapshots (store/snapfile.h) as `stats` and the `snapshot` method see them. */
struct rpc_snapshot_status {
    uint64_t written;      /* snapshots written since start-up */
    uint64_t failed;       /* ... and attempts that failed */
    int64_t last_unix_ms;  /* when the last one was taken (0: none yet) */
    uint64_t last_events;  /* accepted events it holds */
    uint64_t last_bytes;   /* its size */
    uint64_t last_ms;      /* from the fork to the file in place */
    uint64_t last_fork_us; /* the fork: how long ingest stood still for it */
    int running;           /* a child is writing one now */
    char last_file[96];    /* its name under DATA_DIR/snapshots */
};

/* The answer to a deferred `snapshot` request. */
struct rpc_snapshot_result {
    int err; /* 0, or a negative errno (message says what failed) */
    char message[200];
    char file[96];
    uint64_t events, bytes, ms;
};

/* What the server adds to the engine's own figures in `stats`. */
/* A cluster node's partition (DESIGN §9): the stream's last sequence in it, the last one the
 * node applied, and the messages between them not yet applied. */
struct rpc_partition {
    uint32_t partition;
    uint64_t stream_seq, applied_seq, lag;
};

struct rpc_server_stats {
    uint64_t wal_bytes;
    uint64_t uptime_ms;
    double ingest_rate; /* accepted events per second, over the last few seconds */
    uint64_t mem_allocated, mem_resident; /* jemalloc's figures, else the process RSS */
    uint64_t mem_rss;                     /* the kernel's: what --max-memory judges */
    uint64_t max_memory;                  /* --max-memory (0: none) */
    uint64_t refused_memory;              /* events refused at it */
    int wal_err;          /* 0: the WAL takes appends; else the errno of the last refusal (< 0) */
    uint64_t refused_wal; /* events refused, unapplied, because the WAL could not take them */
    /* the engine thread's longest pause since start (DESIGN §8), what it was doing, how many
     * went over 10 ms, and the longest of each job (names in pause_job_names) */
    uint64_t pause_max_ns, pauses_over_10ms;
    uint64_t pause_max_cpu_ns; /* the most CPU time of the thread in one stretch */
    const char *pause_max_job;
    uint64_t pause_job_max_ns[8];
    const char *const *pause_job_names; /* NULL-terminated, at most 8 */
    /* the thread each job runs on ("engine", "log"), as pause_job_names; NULL: all "engine" */
    const char *const *pause_job_threads;
    /* the log thread's (WAL appends, off the engine thread): its longest append, how many
     * went over 10 ms */
    uint64_t log_pause_max_ns, log_pauses_over_10ms;
    struct analytics *analytics;          /* NULL: analytics off (the methods answer 503) */
    struct rpc_snapshot_status snapshot;
    /* `snapshot`: the handler sets *snapshot_defer to have the server hold the request until
     * the next snapshot is written, then calls again with snapshot_done set. NULL: no
     * snapshots here (the method answers 503). */
    int *snapshot_defer;
    const struct rpc_snapshot_result *snapshot_done;
    /* a cluster node's partitions (`stats` partitions: [...]); NULL/0 elsewhere */
    const struct rpc_partition *partitions;
    uint32_t npartitions;
};

/* Answers one request (the bytes of one msgpack value). *resp is malloc'd, owned by the caller.
 * Always produces a response (an error response for a bad request) unless out of memory:
 * 0 or -ENOMEM. */
int rpc_handle(struct engine *e, const struct rpc_server_stats *ss, const char *req, size_t len,
               char **resp, size_t *resp_len);

/* Another table of handlers behind the same envelope and parameter checks: the cluster
 * endpoint's (src/cluster), which holds no engine. handler(m) is NULL for a method it does not
 * serve (answered as unknown); ctx reaches each handler as qcall.ctx. */
struct qmethod;
struct qcall;
struct rpc_dispatch {
    void (*(*handler)(const struct qmethod *m))(struct qcall *c);
    void *ctx;
};
int rpc_handle_with(const struct rpc_dispatch *d, const char *req, size_t len, char **resp,
                    size_t *resp_len);

#endif
