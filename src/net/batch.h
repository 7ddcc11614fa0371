/* Batches: what the network loop hands to the engine's writer thread and gets back. An ingest
 * batch carries decoded events of many connections in stream order, with their strings copied
 * into the batch's own arena (the decoder's memory does not outlive a callback); the writer fills
 * in each event's outcome. A query batch carries one msgpack-RPC request and its response.
 * bqueue is the mutex-protected FIFO between the two threads. */
#ifndef NET_BATCH_H
#define NET_BATCH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cascade/event.h"

enum batch_kind { BATCH_INGEST = 0, BATCH_QUERY, BATCH_STOP };

/* A stream position (DESIGN §9): the partition and JetStream sequence of a message (the same
 * layout as store/wal_record.h's walrec_pos, which the writer logs it as). */
struct batch_spos {
    uint32_t partition;
    uint64_t seq;
};

/* A run of consecutive events of one connection. */
struct batch_seg {
    uint32_t conn, gen; /* connection slot and its generation (stale after a close) */
    uint32_t first, n;  /* events [first, first + n) of the batch */
    uint64_t base;      /* the connection's event number of the first one */
};

/* An ingest outcome of the server's own, past the engine's: the event was not applied because
 * the server is at --max-memory (nothing changed; the producer may resend it later). */
#define BATCH_FULL EVENT_OUTCOME_COUNT

struct batch {
    struct batch *next;
    int kind;
    uint64_t seq; /* set by the network loop: tells batches apart per connection */
    /* ingest */
    uint32_t n, cap;   /* events in stream order, capacity */
    uint8_t *outcome;  /* enum event_outcome per event (or BATCH_FULL); preset for rejects */
    uint32_t *vidx;    /* per event: index into evs, or UINT32_MAX when rejected early */
    struct event *evs; /* the valid events, in order */
    uint32_t nvalid;
    struct batch_seg *segs;
    uint32_t nsegs, cap_segs;
    /* the writer's own (server/writer.c), zero outside it: how far its log stage has taken the
     * batch (ingest or stop), what it decided, and the WAL position after it */
    struct batch_wal {
        int stage, rc, rescue;
        uint32_t dropped; /* events of producers already refused: not logged, not applied */
        uint64_t seq, off;
    } wal;
    char **blocks; /* string arena: fixed-size blocks, a string never spans two */
    uint32_t nblocks, cap_blocks, block_used;
    /* query */
    uint32_t conn, gen;
    char *req, *resp; /* request bytes (one msgpack value) and response bytes, malloc'd */
    size_t req_len, resp_len;
    uint64_t start_ns; /* when the request was complete: the query latency histogram's start */
    /* a cluster node's ingest batch (server/nats_node.c; all 0 in the network loop's): the
     * stream positions of the messages its events came from, logged in the same WAL record;
     * `logged`, called on the writer's log thread once the WAL holds the batch (wal.rc 0) or
     * refused it, before the batch is applied; the queue it comes back to once applied */
    const struct batch_spos *spos;
    uint32_t nspos;
    void (*logged)(struct batch *b, void *ctx);
    void *logged_ctx;
    struct bqueue *back;
};

/* 0 or -ENOMEM; cap events at most. */
int batch_new(int kind, uint32_t cap, struct batch **out);
void batch_free(struct batch *b);
/* Empties an ingest batch for reuse (keeps its memory). */
void batch_reset(struct batch *b);

/* Validates raw (NULL: a value that is not a map, rejected as bad_type) and appends it as the
 * next event of connection conn (event number no). 0, or -ENOMEM (nothing added), or -ENOSPC
 * when the batch is full. */
int batch_add(struct batch *b, uint32_t conn, uint32_t gen, uint64_t no,
              const struct event_raw *raw);

static inline int batch_full(const struct batch *b)
{
    return b->n >= b->cap;
}

struct bqueue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct batch *head, *tail;
    struct batch *qlast; /* the last of the queries at the head of the queue, or NULL */
    _Atomic uint32_t nq; /* queries queued: read without the lock between ingest chunks */
    int efd; /* eventfd written on each push, or -1: lets an io_uring loop wait for it */
};

/* efd: -1 for a queue waited on with bqueue_pop_wait. 0 or a negative errno. */
int bqueue_init(struct bqueue *q, int with_eventfd);
void bqueue_destroy(struct bqueue *q);
/* Appends b; a query batch goes ahead of every ingest batch (after the queries already queued). */
void bqueue_push(struct bqueue *q, struct batch *b);
/* The oldest batch, waiting at most timeout_ms (then NULL). */
struct batch *bqueue_pop_wait(struct bqueue *q, int timeout_ms);
/* The oldest batch if it is a query (queries queue ahead of ingest), else NULL; cheap when no
 * query waits (one atomic load), so the writer can ask between chunks of a batch. */
struct batch *bqueue_pop_query(struct bqueue *q);
/* Takes every queued batch, oldest first (a list through ->next), without waiting. */
struct batch *bqueue_take_all(struct bqueue *q);

#endif
