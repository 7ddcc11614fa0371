/* Query handlers over the analytics worker's results (DESIGN §3, §5): PageRank, communities,
 * coordinated groups, and the worker's status. They only read an immutable result (a reference
 * taken under the worker's lock), so they never wait for a computation: before the first one,
 * or while other coordination parameters are being computed, they answer 503 and say so. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analytics/worker.h"
#include "query/handlers.h"

static void key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
}

static void str(msgpack_packer *pk, const char *s, uint32_t len)
{
    if (!s) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The latest result, or NULL with c failed (503) when there is none to read. */
static struct analytics_result *latest(struct qcall *c)
{
    if (!c->ss->analytics) {
        qcall_fail(c, QERR_NOT_READY, "%s: the analytics worker is not running here", c->m->name);
        return NULL;
    }
    struct analytics_result *r = analytics_get(c->ss->analytics);
    if (!r) {
        qcall_fail(c, QERR_NOT_READY,
                   "%s is not computed yet: the first analytics snapshot is being taken or "
                   "computed (ask again shortly; the `analytics` method shows progress)",
                   c->m->name);
        return NULL;
    }
    if (r->error[0]) {
        qcall_fail(c, QERR_INTERNAL, "the last analytics run failed: %s", r->error);
        analytics_put(c->ss->analytics, r);
        return NULL;
    }
    return r;
}

uint64_t analytics_age_ms(const struct analytics_result *r)
{
    uint64_t now = wall_ms();
    return now > r->taken_ms ? now - r->taken_ms : 0;
}

/* ---------------------------------------------------------------- pagerank */

int pagerank_of(const struct qcall *c, uint32_t actor, double *rank, uint64_t *age)
{
    if (!c->ss->analytics)
        return -ENODATA;
    struct analytics_result *r = analytics_get(c->ss->analytics);
    int rc = -ENODATA;
    if (r && !r->error[0] && actor < r->nactors) {
        *rank = r->pagerank[actor];
        *age = analytics_age_ms(r);
        rc = 0;
    }
    analytics_put(c->ss->analytics, r);
    return rc;
}

/* top_actors by=pagerank: the ranking of the latest snapshot, with today's actor metrics. */
int top_by_pagerank(struct qcall *c, int actor_type, struct engine_actor *out, uint32_t limit)
{
    struct analytics_result *r = latest(c);
    if (!r)
        return -ENODATA;
    uint32_t k = 0;
    for (uint32_t i = 0; i < r->ntop && k < limit; i++) {
        if (engine_actor_at(c->e, r->top[i], &out[k]))
            continue;
        int type = out[k].actor_type == EVENT_ACTOR_PAGE ? EVENT_ACTOR_PAGE : EVENT_ACTOR_ACCOUNT;
        if (!actor_type || type == actor_type)
            k++;
    }
    analytics_put(c->ss->analytics, r);
    return (int)k;
}

/* ---------------------------------------------------------------- communities */

static void pack_names(struct qcall *c, const uint32_t *ids, uint32_t n, int contents);

static void pack_community(struct qcall *c, const struct analytics_result *r, uint32_t idx)
{
    const struct community *cm = &r->comms[idx];
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 5);
    key(pk, "community");
    msgpack_pack_uint32(pk, idx);
    key(pk, "size");
    msgpack_pack_uint32(pk, cm->size);
    key(pk, "internal_weight");
    msgpack_pack_uint64(pk, cm->internal_weight);
    key(pk, "top_members"); /* by reach when the snapshot was taken */
    pack_names(c, cm->top, cm->ntop, 0);
    key(pk, "snapshot_age_ms");
    msgpack_pack_uint64(pk, analytics_age_ms(r));
}

void handle_communities(struct qcall *c)
{
    struct analytics_result *r = latest(c);
    if (!r)
        return;
    uint32_t limit = (uint32_t)qcall_uint(c, "limit", 10);
    uint32_t min_size = (uint32_t)qcall_uint(c, "min_size", 2);
    uint32_t n = 0;
    while (n < r->ncomms && n < limit && r->comms[n].size >= min_size)
        n++; /* communities are numbered largest first */
    msgpack_pack_array(c->pk, n);
    for (uint32_t i = 0; i < n; i++)
        pack_community(c, r, i);
    analytics_put(c->ss->analytics, r);
}

/* ---------------------------------------------------------------- coordination */

#define GROUP_CONTENTS 50 /* content keys listed per group; `contents` counts them all */

static void pack_names(struct qcall *c, const uint32_t *ids, uint32_t n, int contents)
{
    msgpack_pack_array(c->pk, n);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = 0;
        const char *s = NULL;
        struct engine_actor a;
        if (contents) {
            s = engine_content_key(c->e, ids[i], &len);
        } else if (engine_actor_at(c->e, ids[i], &a) == 0) {
            s = a.name;
            len = a.name_len;
        }
        str(c->pk, s, len);
    }
}

static void pack_group(struct qcall *c, const struct coord_group *g, uint32_t idx, uint64_t age,
                       int exact)
{
    uint64_t weight = 0;
    for (uint32_t i = 0; i < g->npairs; i++)
        weight += g->pairs[i].weight;
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 10);
    key(pk, "group");
    msgpack_pack_uint32(pk, idx);
    key(pk, "size");
    msgpack_pack_uint32(pk, g->nmembers);
    key(pk, "members");
    pack_names(c, g->members, g->nmembers, 0);
    key(pk, "pairs");
    msgpack_pack_uint32(pk, g->npairs);
    key(pk, "weight");
    msgpack_pack_uint64(pk, weight);
    key(pk, "contents");
    msgpack_pack_uint32(pk, g->ncontents);
    key(pk, "content_keys");
    pack_names(c, g->contents, g->ncontents < GROUP_CONTENTS ? g->ncontents : GROUP_CONTENTS, 1);
    key(pk, "median_gap_ms");
    msgpack_pack_int64(pk, g->median_gap);
    key(pk, "snapshot_age_ms");
    msgpack_pack_uint64(pk, age);
    /* false: some key was too crowded to compare every pair of its posts (coord.h) */
    key(pk, "exact");
    if (exact)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

void handle_coordination(struct qcall *c)
{
    if (!c->ss->analytics) {
        qcall_fail(c, QERR_NOT_READY, "coordination: the analytics worker is not running here");
        return;
    }
    struct coord_params p = {
        .window_ms = (int64_t)qcall_uint(c, "window_ms", 10000),
        .min_repeats = (uint32_t)qcall_uint(c, "min_repeats", 3),
        .min_ratio = qcall_float(c, "min_ratio", 0.3),
    };
    struct analytics_result *r;
    const struct coord_result *res;
    int rc = analytics_coordination(c->ss->analytics, &p, &r, &res);
    if (rc == -EAGAIN)
        qcall_fail(c, QERR_NOT_READY,
                   "coordination with these parameters is being computed on the latest "
                   "snapshot: ask again shortly");
    else if (rc == -ENODATA)
        qcall_fail(c, QERR_NOT_READY,
                   "coordination is not computed yet: the first analytics snapshot is on its way");
    else if (rc == -EBUSY)
        qcall_fail(c, QERR_NOT_READY,
                   "too many coordination parameter sets asked on this snapshot: the defaults "
                   "and the ones already computed answer now, others after the next snapshot");
    else if (rc == -EIO)
        qcall_fail(c, QERR_INTERNAL, "the last analytics run failed (see the server's log)");
    else if (rc)
        qcall_fail(c, QERR_INTERNAL, "out of memory");
    if (rc)
        return;
    uint32_t limit = (uint32_t)qcall_uint(c, "limit", 10);
    uint32_t n = res->ngroups < limit ? res->ngroups : limit;
    uint64_t age = analytics_age_ms(r);
    msgpack_pack_array(c->pk, n);
    for (uint32_t i = 0; i < n; i++)
        pack_group(c, &res->groups[i], i, age, res->keys_capped == 0);
    analytics_put(c->ss->analytics, r);
}

/* ---------------------------------------------------------------- status */

void handle_analytics(struct qcall *c)
{
    if (!c->ss->analytics) {
        qcall_fail(c, QERR_NOT_READY, "the analytics worker is not running here");
        return;
    }
    if (qcall_bool(c, "refresh", 0))
        analytics_request(c->ss->analytics);
    struct analytics_status st;
    analytics_status(c->ss->analytics, &st);
    struct analytics_result *r = analytics_get(c->ss->analytics);
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 14);
    key(pk, "computing");
    msgpack_pack_int(pk, st.busy);
    key(pk, "interval_ms");
    msgpack_pack_uint64(pk, st.interval_ms);
    key(pk, "coordination_queued");
    msgpack_pack_uint32(pk, st.coord_queued);
    const char *keys[] = {"snapshot_age_ms", "accepted",       "actors",      "edges",
                          "communities",     "groups",         "snapshot_ms", "pagerank_ms",
                          "leiden_ms",       "coordination_ms"};
    uint64_t vals[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    if (r) {
        uint64_t v[] = {analytics_age_ms(r), r->accepted,      r->nactors,     r->nedges,
                        r->ncomms,           r->coord.ngroups, r->snapshot_ms, r->pagerank_ms,
                        r->leiden_ms,        r->coord_ms};
        memcpy(vals, v, sizeof(vals));
    }
    for (int i = 0; i < 10; i++) {
        key(pk, keys[i]);
        if (r)
            msgpack_pack_uint64(pk, vals[i]);
        else
            msgpack_pack_nil(pk);
    }
    key(pk, "error");
    str(pk, r && r->error[0] ? r->error : NULL, r ? (uint32_t)strlen(r->error) : 0);
    analytics_put(c->ss->analytics, r);
}
