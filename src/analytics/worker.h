/* The analytics worker (DESIGN §1): a thread of its own that computes PageRank, Leiden
 * communities and coordinated groups on a snapshot of the engine, so that ingest and point
 * queries never wait for them. The engine's thread takes the snapshot (analytics_tick) when one
 * is due and the worker is idle; results are immutable and reference-counted, so a query reads
 * the latest one while the next is being computed. */
#ifndef ANALYTICS_WORKER_H
#define ANALYTICS_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "analytics/coord.h"
#include "cascade/engine.h"

#define ANALYTICS_TOP         1024 /* actors kept ranked by PageRank */
#define ANALYTICS_COORD_CACHE 16   /* coordination parameter sets kept per snapshot */

#define ANALYTICS_TOP_MEMBERS 5

struct community {
    uint32_t size;
    uint64_t internal_weight; /* shares between two members */
    uint32_t first_member;    /* index into analytics_result.members of its first member */
    uint32_t ntop;            /* members in top[] */
    uint32_t top[ANALYTICS_TOP_MEMBERS]; /* the members with the largest reach, largest first */
};

/* One computation over one snapshot. Read-only once published. */
struct analytics_result {
    uint64_t taken_ms; /* when the snapshot was taken (CLOCK_REALTIME ms) */
    uint64_t accepted; /* accepted events behind it */
    uint32_t nactors;
    size_t nedges;    /* distinct weighted edges */
    double *pagerank; /* per actor id */
    uint32_t *top;    /* actor ids by PageRank, best first (ties: smaller id) */
    uint32_t ntop;
    uint32_t *membership; /* community per actor id (0 = largest) */
    struct community *comms;
    uint32_t ncomms;
    uint32_t *members;         /* actor ids grouped by community, in community order */
    struct coord_result coord; /* with the default parameters */
    /* coordination asked with other parameters, computed on this same snapshot; entries are
     * appended under the worker's lock and never change after */
    struct {
        struct coord_params p;
        struct coord_result r;
    } extra[ANALYTICS_COORD_CACHE];
    uint32_t nextra;
    uint64_t snapshot_ms, pagerank_ms, leiden_ms, coord_ms; /* what each step took */
    /* the copy (snapshot_ms of the engine's thread) came in this many slices, the longest
     * this long, its first to its last this far apart */
    uint64_t snapshot_slices, snapshot_slice_max_us, snapshot_span_ms;
    uint64_t snapshot_slice_max_cpu_us; /* the longest slice in the thread's CPU time */
    char error[160]; /* non-empty: igraph failed on this snapshot; the rest is unset */
    int refs;        /* guarded by the worker's lock */
};

struct analytics;

/* interval_ms: take a new snapshot this often when the graph changed (0: only on request).
 * 0 or a negative errno (with a message in err). */
int analytics_start(struct analytics **out, uint64_t interval_ms, char *err, size_t errlen);
void analytics_stop(struct analytics *a);

/* The engine's thread spends at most about this long per analytics_tick on the copy. */
#define ANALYTICS_SLICE_NS 1000000u

/* On the engine's thread, between batches: when a snapshot is due (the interval passed and
 * events were accepted since, or one was requested) and the worker is idle, starts copying the
 * engine; each call copies one slice of at most ANALYTICS_SLICE_NS (engine_copy_step) and the
 * one that finishes the copy hands it to the worker. Returns 1 while a copy is under way: call
 * again soon (the caller should not sleep long between batches then), else 0. */
int analytics_tick(struct analytics *a, struct engine *e);

/* Asks for a new snapshot at the next tick. */
void analytics_request(struct analytics *a);

/* The latest result (a reference: analytics_put it), or NULL before the first. */
struct analytics_result *analytics_get(struct analytics *a);
void analytics_put(struct analytics *a, struct analytics_result *r);
/* How long ago r's snapshot was taken. */
uint64_t analytics_age_ms(const struct analytics_result *r);

/* What the worker is doing, for `analytics` and error messages. */
struct analytics_status {
    int busy; /* computing a snapshot */
    uint64_t interval_ms;
    uint32_t coord_queued; /* coordination requests waiting */
};
void analytics_status(struct analytics *a, struct analytics_status *st);

/* Coordination with parameters p on the latest snapshot: 0 and *out (a reference to the result
 * that holds it, analytics_put it; *groups points into it) when computed; -EAGAIN when it has
 * been queued (ask again); -ENODATA before the first snapshot; -EBUSY when this snapshot
 * already holds ANALYTICS_COORD_CACHE other parameter sets; -ENOMEM. */
int analytics_coordination(struct analytics *a, const struct coord_params *p,
                           struct analytics_result **out, const struct coord_result **groups);

#endif
