/* Query handlers over the analytics worker's results (DESIGN §3, §5): PageRank, communities,
 * coordinated groups, and the worker's status. They only read an immutable result (a reference
 * taken under the worker's lock), so they never wait for a computation: before the first one,
 * or while other coordination parameters are being computed, they answer 503 and say so. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analytics/worker.h"
#include "query/handlers.h"

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
    qpack_u64(pk, "community", idx);
    qpack_u64(pk, "size", cm->size);
    qpack_u64(pk, "internal_weight", cm->internal_weight);
    qpack_key(pk, "top_members"); /* by reach when the snapshot was taken */
    pack_names(c, cm->top, cm->ntop, 0);
    qpack_u64(pk, "snapshot_age_ms", analytics_age_ms(r));
}

void handle_communities(struct qcall *c)
{
    struct analytics_result *r = latest(c);
    if (!r)
        return;
    uint32_t limit = (uint32_t)qcall_uint(c, "limit");
    uint32_t min_size = (uint32_t)qcall_uint(c, "min_size");
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
        qpack_strv(c->pk, s, len);
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
    qpack_u64(pk, "group", idx);
    qpack_u64(pk, "size", g->nmembers);
    qpack_key(pk, "members");
    pack_names(c, g->members, g->nmembers, 0);
    qpack_u64(pk, "pairs", g->npairs);
    qpack_u64(pk, "weight", weight);
    qpack_u64(pk, "contents", g->ncontents);
    qpack_key(pk, "content_keys");
    pack_names(c, g->contents, g->ncontents < GROUP_CONTENTS ? g->ncontents : GROUP_CONTENTS, 1);
    qpack_i64(pk, "median_gap_ms", g->median_gap);
    qpack_u64(pk, "snapshot_age_ms", age);
    /* false: some key was too crowded to compare every pair of its posts (coord.h) */
    qpack_bool(pk, "exact", exact);
}

void handle_coordination(struct qcall *c)
{
    if (!c->ss->analytics) {
        qcall_fail(c, QERR_NOT_READY, "coordination: the analytics worker is not running here");
        return;
    }
    struct coord_params p = {
        .window_ms = (int64_t)qcall_uint(c, "window_ms"),
        .min_repeats = (uint32_t)qcall_uint(c, "min_repeats"),
        .min_ratio = qcall_float(c, "min_ratio"),
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
    uint32_t limit = (uint32_t)qcall_uint(c, "limit");
    uint32_t n = res->ngroups < limit ? res->ngroups : limit;
    uint64_t age = analytics_age_ms(r);
    msgpack_pack_array(c->pk, n);
    for (uint32_t i = 0; i < n; i++)
        pack_group(c, &res->groups[i], i, age, res->keys_capped == 0);
    analytics_put(c->ss->analytics, r);
}

/* ---------------------------------------------------------------- status */

/* A figure of the latest result, nil before there is one. */
static void pack_figure(msgpack_packer *pk, const char *k, const struct analytics_result *r,
                        uint64_t v)
{
    qpack_key(pk, k);
    if (r)
        msgpack_pack_uint64(pk, v);
    else
        msgpack_pack_nil(pk);
}

void handle_analytics(struct qcall *c)
{
    if (!c->ss->analytics) {
        qcall_fail(c, QERR_NOT_READY, "the analytics worker is not running here");
        return;
    }
    if (qcall_bool(c, "refresh"))
        analytics_request(c->ss->analytics);
    struct analytics_status st;
    analytics_status(c->ss->analytics, &st);
    struct analytics_result *r = analytics_get(c->ss->analytics);
    const struct analytics_result z = {0}, *v = r ? r : &z; /* zeros behind the nils */
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 14);
    qpack_key(pk, "computing");
    msgpack_pack_int(pk, st.busy);
    qpack_u64(pk, "interval_ms", st.interval_ms);
    qpack_u64(pk, "coordination_queued", st.coord_queued);
    pack_figure(pk, "snapshot_age_ms", r, r ? analytics_age_ms(r) : 0);
    pack_figure(pk, "accepted", r, v->accepted);
    pack_figure(pk, "actors", r, v->nactors);
    pack_figure(pk, "edges", r, v->nedges);
    pack_figure(pk, "communities", r, v->ncomms);
    pack_figure(pk, "groups", r, v->coord.ngroups);
    pack_figure(pk, "snapshot_ms", r, v->snapshot_ms);
    pack_figure(pk, "pagerank_ms", r, v->pagerank_ms);
    pack_figure(pk, "leiden_ms", r, v->leiden_ms);
    pack_figure(pk, "coordination_ms", r, v->coord_ms);
    qpack_cstr(pk, "error", v->error[0] ? v->error : NULL);
    analytics_put(c->ss->analytics, r);
}
