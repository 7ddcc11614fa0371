/* The analytics worker (see worker.h). One thread, one job at a time: an engine copy to compute
 * (weighted edges from the shares, PageRank, Leiden, coordination with the defaults), or a
 * coordination request with other parameters on the latest copy. */
#include "analytics/worker.h"

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analytics/graph.h"
#include "core/log.h"

#define COORD_QUEUE 16

/* The engine copy's rows are handed to coord_compute as they are. */
_Static_assert(sizeof(struct engine_post_key) == sizeof(struct coord_post) &&
                   offsetof(struct engine_post_key, ts) == offsetof(struct coord_post, ts),
               "engine_post_key and coord_post must share a layout");

struct analytics {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    uint64_t interval_ms, last_take_ms, last_accepted;
    int requested, stopping, busy;
    uint64_t pending_ms;        /* what taking the pending copy cost the engine's thread */
    uint64_t pending_slices, pending_slice_max_us, pending_span_ms; /* and in how many slices,
                                   the longest, from its first slice to its last */
    uint64_t pending_slice_max_cpu_us; /* the most CPU time in one slice (wall time also counts
                                          waits for a core on a loaded machine) */
    struct engine_copy pending; /* handed over by the engine's thread */
    /* the copy under way (engine thread only): its slices' time, the longest, when it began */
    uint64_t copy_ns, copy_slice_max_ns, copy_slice_max_cpu_ns, copy_began_ms;
    int has_pending;
    struct analytics_result *latest;
    /* the latest copy's content keys, kept for coordination with other parameters */
    struct engine_copy keys;
    struct coord_params queue[COORD_QUEUE];
    uint32_t nqueue;
};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- results */

static void result_free(struct analytics_result *r)
{
    if (!r)
        return;
    free(r->pagerank);
    free(r->top);
    free(r->membership);
    free(r->comms);
    free(r->members);
    coord_result_free(&r->coord);
    for (uint32_t i = 0; i < r->nextra; i++)
        coord_result_free(&r->extra[i].r);
    free(r);
}

struct analytics_result *analytics_get(struct analytics *a)
{
    pthread_mutex_lock(&a->mu);
    struct analytics_result *r = a->latest;
    if (r)
        r->refs++;
    pthread_mutex_unlock(&a->mu);
    return r;
}

uint64_t analytics_age_ms(const struct analytics_result *r)
{
    uint64_t now = wall_ms();
    return now > r->taken_ms ? now - r->taken_ms : 0;
}

void analytics_put(struct analytics *a, struct analytics_result *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&a->mu);
    int last = --r->refs == 0;
    pthread_mutex_unlock(&a->mu);
    if (last)
        result_free(r);
}

/* ---------------------------------------------------------------- computing */

static int cmp_share(const void *pa, const void *pb)
{
    const struct engine_share *a = pa, *b = pb;
    if (a->from != b->from)
        return a->from < b->from ? -1 : 1;
    return (a->to > b->to) - (a->to < b->to);
}

/* The weighted edge list: shares sorted, equal ones counted. */
static int weigh_edges(struct engine_copy *s, struct graph_edge **out, size_t *n)
{
    qsort(s->shares, s->nshares, sizeof(*s->shares), cmp_share);
    struct graph_edge *e = malloc((s->nshares + 1) * sizeof(*e));
    if (!e)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < s->nshares; i++) {
        if (k && e[k - 1].from == s->shares[i].from && e[k - 1].to == s->shares[i].to)
            e[k - 1].w++;
        else
            e[k++] = (struct graph_edge){s->shares[i].from, s->shares[i].to, 1};
    }
    *out = e;
    *n = k;
    return 0;
}

static const double *rank_key;

static int cmp_rank(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    if (rank_key[a] != rank_key[b])
        return rank_key[a] > rank_key[b] ? -1 : 1;
    return (a > b) - (a < b);
}

/* The ANALYTICS_TOP actors by PageRank (only the worker thread sorts, so a static key is safe). */
static int rank_top(struct analytics_result *r)
{
    uint32_t n = r->nactors;
    uint32_t *ids = malloc(((size_t)n + 1) * sizeof(uint32_t));
    if (!ids)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        ids[i] = i;
    rank_key = r->pagerank;
    qsort(ids, n, sizeof(uint32_t), cmp_rank);
    r->ntop = n < ANALYTICS_TOP ? n : ANALYTICS_TOP;
    r->top = ids;
    return 0;
}

/* Keeps c->top the ANALYTICS_TOP_MEMBERS members of largest reach (ties: smaller id first);
 * members arrive in ascending id order. */
static void offer_member(struct community *c, uint32_t v, const uint32_t *reach)
{
    uint32_t j = c->ntop < ANALYTICS_TOP_MEMBERS ? c->ntop++ : ANALYTICS_TOP_MEMBERS;
    while (j > 0 && reach[c->top[j - 1]] < reach[v]) {
        if (j < ANALYTICS_TOP_MEMBERS)
            c->top[j] = c->top[j - 1];
        j--;
    }
    if (j < ANALYTICS_TOP_MEMBERS)
        c->top[j] = v;
}

/* Sizes, members, top members and internal weights of the communities. */
static int summarise_communities(struct analytics_result *r, const struct graph_edge *e, size_t ne,
                                 const uint32_t *reach)
{
    r->comms = calloc((size_t)r->ncomms + 1, sizeof(*r->comms));
    r->members = malloc(((size_t)r->nactors + 1) * sizeof(uint32_t));
    if (!r->comms || !r->members)
        return -ENOMEM;
    for (uint32_t v = 0; v < r->nactors; v++)
        r->comms[r->membership[v]].size++;
    uint32_t at = 0;
    for (uint32_t c = 0; c < r->ncomms; c++) {
        r->comms[c].first_member = at;
        at += r->comms[c].size;
        r->comms[c].size = 0; /* refilled below as a cursor */
    }
    for (uint32_t v = 0; v < r->nactors; v++) {
        struct community *c = &r->comms[r->membership[v]];
        r->members[c->first_member + c->size++] = v;
        offer_member(c, v, reach);
    }
    for (size_t i = 0; i < ne; i++)
        if (r->membership[e[i].from] == r->membership[e[i].to])
            r->comms[r->membership[e[i].from]].internal_weight += e[i].w;
    return 0;
}

static const struct coord_params coord_defaults = {
    COORD_DEFAULT_WINDOW_MS, COORD_DEFAULT_MIN_REPEATS, COORD_DEFAULT_MIN_RATIO, 0};

static int compute_graph(struct analytics_result *r, struct engine_copy *s)
{
    struct graph_edge *edges = NULL;
    size_t ne = 0;
    int rc = weigh_edges(s, &edges, &ne);
    if (rc)
        return rc;
    r->nedges = ne;
    r->pagerank = malloc(((size_t)r->nactors + 1) * sizeof(double));
    r->membership = malloc(((size_t)r->nactors + 1) * sizeof(uint32_t));
    if (!r->pagerank || !r->membership) {
        free(edges);
        return -ENOMEM;
    }
    uint64_t t0 = mono_ms();
    rc = graph_pagerank(r->nactors, edges, ne, r->pagerank, r->error, sizeof(r->error));
    uint64_t t1 = mono_ms();
    if (!rc)
        rc = rank_top(r);
    if (!rc)
        rc = graph_leiden(r->nactors, edges, ne, r->membership, &r->ncomms, r->error,
                          sizeof(r->error));
    uint64_t t2 = mono_ms();
    if (!rc)
        rc = summarise_communities(r, edges, ne, s->reach);
    r->pagerank_ms = t1 - t0;
    r->leiden_ms = t2 - t1;
    free(edges);
    return rc;
}

/* Turns an engine copy into a result; keeps its content keys for later coordination requests. */
static struct analytics_result *compute(struct analytics *a, struct engine_copy *s,
                                        uint64_t snapshot_ms)
{
    struct analytics_result *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->taken_ms = wall_ms();
    r->accepted = s->accepted;
    r->nactors = s->nactors;
    r->snapshot_ms = snapshot_ms;
    r->refs = 1;
    int rc = compute_graph(r, s);
    uint64_t t0 = mono_ms();
    if (!rc)
        rc = coord_compute((struct coord_post *)s->keys, s->nkeys, &coord_defaults, &r->coord);
    r->coord_ms = mono_ms() - t0;
    if (rc && !r->error[0])
        snprintf(r->error, sizeof(r->error), "%s", strerror(-rc));
    return r;
}

static void publish(struct analytics *a, struct analytics_result *r, struct engine_copy *s)
{
    pthread_mutex_lock(&a->mu);
    struct analytics_result *old = a->latest;
    a->latest = r;
    struct engine_copy oldkeys = a->keys;
    a->keys = *s; /* its shares are no longer needed, its keys are */
    engine_copy_free_shares(&a->keys);
    pthread_mutex_unlock(&a->mu);
    engine_copy_free(&oldkeys);
    analytics_put(a, old);
    log_msg(LOG_INFO, "analytics_done",
            "actors=%u edges=%zu communities=%u groups=%u snapshot_ms=%llu snapshot_slices=%llu "
            "snapshot_slice_max_us=%llu snapshot_slice_max_cpu_us=%llu snapshot_span_ms=%llu "
            "pagerank_ms=%llu "
            "leiden_ms=%llu coord_ms=%llu%s%s",
            r->nactors, r->nedges, r->ncomms, r->coord.ngroups, (unsigned long long)r->snapshot_ms,
            (unsigned long long)r->snapshot_slices, (unsigned long long)r->snapshot_slice_max_us,
            (unsigned long long)r->snapshot_slice_max_cpu_us, (unsigned long long)r->snapshot_span_ms,
            (unsigned long long)r->pagerank_ms, (unsigned long long)r->leiden_ms,
            (unsigned long long)r->coord_ms, r->error[0] ? " error=" : "", r->error);
}

/* A queued coordination request, computed on the latest copy's keys. */
static void run_coord(struct analytics *a, const struct coord_params *p)
{
    struct analytics_result *r = analytics_get(a);
    if (!r)
        return;
    struct coord_result res;
    int rc = coord_compute((struct coord_post *)a->keys.keys, a->keys.nkeys, p, &res);
    pthread_mutex_lock(&a->mu);
    if (rc == 0 && r->nextra < ANALYTICS_COORD_CACHE) {
        r->extra[r->nextra].p = *p;
        r->extra[r->nextra].r = res;
        r->nextra++;
        rc = 1;
    }
    pthread_mutex_unlock(&a->mu);
    if (rc == 0)
        coord_result_free(&res);
    analytics_put(a, r);
}

static void *worker_main(void *arg)
{
    struct analytics *a = arg;
    pthread_mutex_lock(&a->mu);
    while (!a->stopping) {
        if (a->has_pending) {
            struct engine_copy s = a->pending;
            a->has_pending = 0;
            uint64_t snapshot_ms = a->pending_ms;
            uint64_t slices = a->pending_slices, slice_max_us = a->pending_slice_max_us;
            uint64_t span_ms = a->pending_span_ms, slice_max_cpu_us = a->pending_slice_max_cpu_us;
            pthread_mutex_unlock(&a->mu);
            /* the per-post slots packed, here rather than on the engine's thread */
            struct analytics_result *r = NULL;
            if (engine_copy_settle(&s))
                log_msg(LOG_WARN, "analytics_snapshot_failed", "error=\"out of memory\"");
            else
                r = compute(a, &s, snapshot_ms);
            if (r) {
                r->snapshot_slices = slices;
                r->snapshot_slice_max_us = slice_max_us;
                r->snapshot_span_ms = span_ms;
                r->snapshot_slice_max_cpu_us = slice_max_cpu_us;
            }
            if (r)
                publish(a, r, &s);
            else
                engine_copy_free(&s);
            pthread_mutex_lock(&a->mu);
            a->busy = 0;
        } else if (a->nqueue) {
            struct coord_params p = a->queue[0];
            memmove(a->queue, a->queue + 1, --a->nqueue * sizeof(p));
            pthread_mutex_unlock(&a->mu);
            run_coord(a, &p);
            pthread_mutex_lock(&a->mu);
        } else {
            pthread_cond_wait(&a->cv, &a->mu);
        }
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* ---------------------------------------------------------------- the engine's side */

/* Hands a finished copy to the worker. */
static void hand_over(struct analytics *a, struct engine_copy *s)
{
    a->last_accepted = s->accepted;
    pthread_mutex_lock(&a->mu);
    a->requested = 0;
    a->pending = *s;
    a->has_pending = a->busy = 1;
    a->pending_ms = a->copy_ns / 1000000;
    a->pending_slices = s->slices;
    a->pending_slice_max_us = a->copy_slice_max_ns / 1000;
    a->pending_slice_max_cpu_us = a->copy_slice_max_cpu_ns / 1000;
    a->pending_span_ms = mono_ms() - a->copy_began_ms;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

int analytics_tick(struct analytics *a, struct engine *e)
{
    uint64_t now = mono_ms();
    if (!engine_copy_active(e)) {
        struct engine_stats st;
        pthread_mutex_lock(&a->mu);
        int idle = !a->busy && !a->has_pending;
        int due = a->requested || (a->interval_ms && now - a->last_take_ms >= a->interval_ms);
        pthread_mutex_unlock(&a->mu);
        if (!idle || !due)
            return 0;
        engine_get_stats(e, &st);
        if (!a->requested && st.outcomes[EVENT_OK] == a->last_accepted)
            return 0; /* nothing changed since the last copy */
        a->last_take_ms = now;
        if (engine_copy_begin(e)) {
            log_msg(LOG_WARN, "analytics_snapshot_failed", "error=\"out of memory\"");
            return 0;
        }
        a->copy_ns = a->copy_slice_max_ns = a->copy_slice_max_cpu_ns = 0;
        a->copy_began_ms = now;
    }
    struct engine_copy s;
    uint64_t t0 = mono_ns(), c0 = thread_cpu_ns();
    int rc = engine_copy_step(e, ANALYTICS_SLICE_NS, 0, &s);
    uint64_t d = mono_ns() - t0, c = thread_cpu_ns() - c0;
    a->copy_ns += d;
    if (d > a->copy_slice_max_ns)
        a->copy_slice_max_ns = d;
    if (c > a->copy_slice_max_cpu_ns)
        a->copy_slice_max_cpu_ns = c;
    if (rc < 0) {
        log_msg(LOG_WARN, "analytics_snapshot_failed", "error=\"out of memory\"");
        a->last_take_ms = now;
        return 0;
    }
    if (rc == 0)
        return 1;
    hand_over(a, &s);
    return 0;
}

void analytics_request(struct analytics *a)
{
    pthread_mutex_lock(&a->mu);
    a->requested = 1;
    pthread_mutex_unlock(&a->mu);
}

void analytics_status(struct analytics *a, struct analytics_status *st)
{
    pthread_mutex_lock(&a->mu);
    st->busy = a->busy || a->has_pending;
    st->interval_ms = a->interval_ms;
    st->coord_queued = a->nqueue;
    pthread_mutex_unlock(&a->mu);
}

static int same_params(const struct coord_params *x, const struct coord_params *y)
{
    return x->window_ms == y->window_ms && x->min_repeats == y->min_repeats &&
           x->min_ratio == y->min_ratio;
}

/* Looks p up in r (under the lock). */
static const struct coord_result *cached(const struct analytics_result *r,
                                         const struct coord_params *p)
{
    if (same_params(p, &coord_defaults))
        return &r->coord;
    for (uint32_t i = 0; i < r->nextra; i++)
        if (same_params(p, &r->extra[i].p))
            return &r->extra[i].r;
    return NULL;
}

int analytics_coordination(struct analytics *a, const struct coord_params *p,
                           struct analytics_result **out, const struct coord_result **groups)
{
    pthread_mutex_lock(&a->mu);
    struct analytics_result *r = a->latest;
    int rc = -ENODATA;
    if (r && r->error[0]) {
        rc = -EIO;
    } else if (r && (*groups = cached(r, p))) {
        r->refs++;
        *out = r;
        rc = 0;
    } else if (r && r->nextra >= ANALYTICS_COORD_CACHE) {
        rc = -EBUSY;
    } else if (r) {
        uint32_t i = 0;
        while (i < a->nqueue && !same_params(&a->queue[i], p))
            i++;
        if (i == a->nqueue && a->nqueue < COORD_QUEUE)
            a->queue[a->nqueue++] = *p;
        rc = i < COORD_QUEUE ? -EAGAIN : -EBUSY;
        pthread_cond_signal(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

/* ---------------------------------------------------------------- lifetime */

int analytics_start(struct analytics **out, uint64_t interval_ms, char *err, size_t errlen)
{
    struct analytics *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a->interval_ms = interval_ms;
    a->last_take_ms = mono_ms();
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    int rc = pthread_create(&a->thread, NULL, worker_main, a);
    if (rc) {
        snprintf(err, errlen, "cannot start the analytics thread: %s", strerror(rc));
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        free(a);
        return -rc;
    }
    *out = a;
    return 0;
}

void analytics_stop(struct analytics *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->stopping = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    if (a->has_pending)
        engine_copy_free(&a->pending);
    engine_copy_free(&a->keys);
    analytics_put(a, a->latest);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
}
