/* The cluster endpoint's method handlers (see cluster.h, docs/cluster.md "The cluster
 * endpoint"): each asks the nodes and merges their answers so that the result is what one node
 * fed all the events gives. Nodes hold disjoint whole cascades, so a cascade's figures come
 * whole from one node, cascade counts add up, and what spans nodes (an actor, a content key) is
 * summed or joined as a set. What cannot be merged exactly from what the nodes say answers 501
 * naming what is missing, never an approximation. */
#include "cluster/cluster_int.h"
#include "cluster/cluster_merge.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analytics/matched.h"
#include "cascade/mp.h"

#define SHOW(len) (int)((len) > 64 ? 64 : (len))

static const msgpack_object *get(const msgpack_object *map, const char *key)
{
    return map && map->type == MSGPACK_OBJECT_MAP ? mp_map_get(map, key) : NULL;
}

static uint64_t get_u64(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = get(map, key);
    return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

static int64_t get_i64(const msgpack_object *map, const char *key, int64_t def)
{
    const msgpack_object *v = get(map, key);
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (int64_t)v->via.u64;
    if (v && v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return v->via.i64;
    return def;
}

static double get_f64(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = get(map, key);
    if (!v)
        return 0;
    if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64)
        return v->via.f64;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (double)v->via.u64;
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return (double)v->via.i64;
    return 0;
}

static int key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && !memcmp(k->via.str.ptr, s, n);
}

/* A node's error answer, but "not here" (404) when allow_404: c failed with the node's code
 * and message, naming the node; 1 when so. */
static int node_errors(struct qcall *c, const struct cluster *cl,
                       const struct proto_rpc_response *r, int allow_404)
{
    for (uint32_t i = 0; i < cl->n; i++) {
        if (!r[i].error || (allow_404 && r[i].code == QERR_NOT_FOUND))
            continue;
        qcall_fail(c, r[i].code >= 400 && r[i].code < 600 ? (int)r[i].code : QERR_INTERNAL,
                   "%.*s (node %s)", (int)(r[i].message_len > 200 ? 200 : r[i].message_len),
                   r[i].message ? r[i].message : "error", cl->nodes[i].name);
        return 1;
    }
    return 0;
}

/* Every node's answer to c's own request (its parameters forwarded as given): 0, or -1 with c
 * failed (a node unreachable, or, but for 404 when allow_404, a node's error). */
static int ask_forward(struct qcall *c, const char *const *skip, struct proto_rpc_response *r,
                       int allow_404)
{
    struct cluster *cl = c->ctx;
    struct cl_req q;
    clreq_init(&q, c->m->name);
    clreq_forward(&q, c, skip);
    int rc = cl_ask_all(cl, c, &q, r);
    clreq_free(&q);
    if (rc || node_errors(c, cl, r, allow_404))
        return -1;
    return 0;
}

/* The first node's 404 as the endpoint's answer. */
static void fail_404(struct qcall *c, const struct proto_rpc_response *r)
{
    struct cluster *cl = c->ctx;
    for (uint32_t i = 0; i < cl->n; i++)
        if (r[i].error) {
            qcall_fail(c, QERR_NOT_FOUND, "%.*s (on every node)",
                       (int)(r[i].message_len > 200 ? 200 : r[i].message_len),
                       r[i].message ? r[i].message : "not found");
            return;
        }
    qcall_fail(c, QERR_NOT_FOUND, "not found on any node");
}

/* ---------------------------------------------------------------- stats */

/* How a figure of `stats` adds up over nodes. */
enum { ADD_SUM = 0, ADD_MAX, ADD_MIN, ADD_NIL, ADD_OWN };

static int stats_rule(const msgpack_object *k)
{
    static const char *const nil_keys[] = {"actors", "edges", "contents", "labels", NULL};
    for (int i = 0; nil_keys[i]; i++)
        if (key_is(k, nil_keys[i])) /* distinct over nodes whose sets overlap: not a sum */
            return ADD_NIL;
    if (key_is(k, "uptime_ms") || key_is(k, "version"))
        return ADD_OWN;
    if (key_is(k, "wal_writable"))
        return ADD_MIN;
    if (k->type != MSGPACK_OBJECT_STR)
        return ADD_SUM;
    const char *s = k->via.str.ptr;
    size_t n = k->via.str.size;
    if ((n >= 3 && !memcmp(s + n - 3, "_ts", 3)) || memmem(s, n, "max", 3) ||
        memmem(s, n, "pause", 5) || (n >= 13 && !memcmp(s, "snapshot_last", 13)) ||
        key_is(k, "retention_ms") || key_is(k, "memory_limit") || key_is(k, "snapshot_running"))
        return ADD_MAX;
    return ADD_SUM;
}

/* Packs the merge of the values at key k (one per node, some NULL) by rule. */
static void pack_merged(msgpack_packer *pk, const msgpack_object *const *v, uint32_t n, int rule)
{
    const msgpack_object *first = NULL;
    int all_uint = 1, any_num = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!v[i] || v[i]->type == MSGPACK_OBJECT_NIL)
            continue;
        if (!first)
            first = v[i];
        int num = v[i]->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
                  v[i]->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
                  v[i]->type == MSGPACK_OBJECT_FLOAT32 || v[i]->type == MSGPACK_OBJECT_FLOAT64;
        any_num |= num;
        all_uint &= v[i]->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    }
    if (rule == ADD_NIL || !first) {
        msgpack_pack_nil(pk);
        return;
    }
    if (first->type == MSGPACK_OBJECT_ARRAY) { /* per-node lists (a node's partitions) */
        uint32_t total = 0;
        for (uint32_t i = 0; i < n; i++)
            if (v[i] && v[i]->type == MSGPACK_OBJECT_ARRAY)
                total += v[i]->via.array.size;
        msgpack_pack_array(pk, total);
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0;
                 v[i] && v[i]->type == MSGPACK_OBJECT_ARRAY && j < v[i]->via.array.size; j++)
                msgpack_pack_object(pk, v[i]->via.array.ptr[j]);
        return;
    }
    if (!any_num) { /* strings, maps: the first node's */
        msgpack_pack_object(pk, *first);
        return;
    }
    if (rule == ADD_SUM) {
        uint64_t su = 0;
        double sd = 0;
        for (uint32_t i = 0; i < n; i++)
            if (v[i]) {
                su += v[i]->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v[i]->via.u64 : 0;
                sd += v[i]->type == MSGPACK_OBJECT_FLOAT64 || v[i]->type == MSGPACK_OBJECT_FLOAT32
                          ? v[i]->via.f64
                      : v[i]->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (double)v[i]->via.u64
                                                                       : (double)v[i]->via.i64;
            }
        if (all_uint)
            msgpack_pack_uint64(pk, su);
        else
            msgpack_pack_double(pk, sd);
        return;
    }
    const msgpack_object *best = first;
    for (uint32_t i = 0; i < n; i++) {
        if (!v[i] || v[i]->type == MSGPACK_OBJECT_NIL)
            continue;
        int r = clm_num_cmp(v[i], best);
        if ((rule == ADD_MAX && r > 0) || (rule == ADD_MIN && r < 0))
            best = v[i];
    }
    msgpack_pack_object(pk, *best);
}

static void h_stats(struct qcall *c)
{
    struct cluster *cl = c->ctx;
    struct proto_rpc_response r[CLUSTER_NODES_MAX];
    if (ask_forward(c, NULL, r, 0))
        return;
    const msgpack_object *base = r[0].result;
    if (!base || base->type != MSGPACK_OBJECT_MAP) {
        qcall_fail(c, QERR_INTERNAL, "node %s answered stats with no map", cl->nodes[0].name);
        return;
    }
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, base->via.map.size + 2);
    const msgpack_object *v[CLUSTER_NODES_MAX];
    for (uint32_t k = 0; k < base->via.map.size; k++) {
        const msgpack_object *key = &base->via.map.ptr[k].key;
        msgpack_pack_object(pk, *key);
        int rule = stats_rule(key);
        if (rule == ADD_OWN) {
            if (key_is(key, "version")) {
                msgpack_pack_str(pk, strlen(CASCADE_VERSION));
                msgpack_pack_str_body(pk, CASCADE_VERSION, strlen(CASCADE_VERSION));
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                msgpack_pack_uint64(pk, (uint64_t)ts.tv_sec * 1000 +
                                            (uint64_t)ts.tv_nsec / 1000000 - cl->start_ms);
            }
            continue;
        }
        for (uint32_t i = 0; i < cl->n; i++) {
            v[i] = NULL;
            const msgpack_object *m = r[i].result;
            for (uint32_t j = 0; m && m->type == MSGPACK_OBJECT_MAP && j < m->via.map.size; j++)
                if (m->via.map.ptr[j].key.type == MSGPACK_OBJECT_STR &&
                    key->type == MSGPACK_OBJECT_STR &&
                    m->via.map.ptr[j].key.via.str.size == key->via.str.size &&
                    !memcmp(m->via.map.ptr[j].key.via.str.ptr, key->via.str.ptr,
                            key->via.str.size)) {
                    v[i] = &m->via.map.ptr[j].val;
                    break;
                }
        }
        pack_merged(pk, v, cl->n, rule);
    }
    qpack_u64(pk, "cluster_nodes", cl->n);
    qpack_key(pk, "nodes");
    msgpack_pack_array(pk, cl->n);
    for (uint32_t i = 0; i < cl->n; i++) {
        msgpack_pack_map(pk, 7);
        qpack_cstr(pk, "node", cl->nodes[i].name);
        qpack_bool(pk, "reachable", 1);
        qpack_u64(pk, "posts", get_u64(r[i].result, "posts"));
        qpack_u64(pk, "cascades", get_u64(r[i].result, "cascades"));
        qpack_u64(pk, "actors", get_u64(r[i].result, "actors"));
        qpack_u64(pk, "accepted", get_u64(r[i].result, "accepted"));
        qpack_i64(pk, "newest_ts", get_i64(r[i].result, "newest_ts", 0));
    }
}

/* ---------------------------------------------------------------- one node's answer */

/* cascade, path: the node that holds the post answers; the others say 404. */
static void h_from_holder(struct qcall *c)
{
    struct cluster *cl = c->ctx;
    struct proto_rpc_response r[CLUSTER_NODES_MAX];
    if (ask_forward(c, NULL, r, 1))
        return;
    int at = -1;
    for (uint32_t i = 0; i < cl->n; i++) {
        if (r[i].error)
            continue;
        if (at >= 0) {
            qcall_fail(c, QERR_INTERNAL,
                       "nodes %s and %s both hold this post: the nodes do not hold disjoint "
                       "cascades (partition events by their cascade's root)",
                       cl->nodes[at].name, cl->nodes[i].name);
            return;
        }
        at = (int)i;
    }
    if (at < 0) {
        fail_404(c, r);
        return;
    }
    msgpack_pack_object(c->pk, *r[at].result);
}

/* ---------------------------------------------------------------- merged ranked lists */

struct rank_ctx {
    const char *key;
    int by_root; /* size, then root (actor_cascades) */
};

static struct rank_ctx rank_now; /* qsort has no context argument; one thread runs these */

static int rank_cmp(const void *pa, const void *pb)
{
    const msgpack_object *a = *(const msgpack_object *const *)pa;
    const msgpack_object *b = *(const msgpack_object *const *)pb;
    return rank_now.by_root ? clm_cascade_root_cmp(a, b) : clm_cascade_cmp(a, b, rank_now.key);
}

/* Packs the first limit records of the nodes' lists (lists[i] an array or NULL) in rank order.
 * 0 or -ENOMEM (c failed). */
static int pack_ranked(struct qcall *c, const msgpack_object *const *lists, uint32_t n,
                       const char *key, int by_root, uint64_t limit)
{
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++)
        if (lists[i] && lists[i]->type == MSGPACK_OBJECT_ARRAY)
            total += lists[i]->via.array.size;
    const msgpack_object **all = malloc((total ? total : 1) * sizeof(*all));
    if (!all) {
        qcall_fail(c, QERR_INTERNAL, "out of memory");
        return -ENOMEM;
    }
    size_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (lists[i] && lists[i]->type == MSGPACK_OBJECT_ARRAY)
            for (uint32_t j = 0; j < lists[i]->via.array.size; j++)
                all[k++] = &lists[i]->via.array.ptr[j];
    rank_now = (struct rank_ctx){.key = key, .by_root = by_root};
    qsort(all, k, sizeof(*all), rank_cmp);
    size_t out = k < limit ? k : (size_t)limit;
    msgpack_pack_array(c->pk, out);
    for (size_t i = 0; i < out; i++)
        msgpack_pack_object(c->pk, *all[i]);
    free(all);
    return 0;
}

/* top_cascades by=growth: a node's window ends at its own newest event, the cluster's at the
 * newest of all (N). A node whose newest is d ms older than N is asked for window_ms - d: the
 * same interval [N - window_ms, N] of event time, since its posts end at its newest. Exact. */
static void h_top_growth(struct qcall *c, uint64_t window, uint64_t limit)
{
    struct cluster *cl = c->ctx;
    struct proto_rpc_response r[CLUSTER_NODES_MAX];
    struct cl_req st;
    clreq_init(&st, "stats");
    int rc = cl_ask_all(cl, c, &st, r);
    clreq_free(&st);
    if (rc || node_errors(c, cl, r, 0))
        return;
    int64_t newest[CLUSTER_NODES_MAX], top = INT64_MIN;
    int has[CLUSTER_NODES_MAX];
    for (uint32_t i = 0; i < cl->n; i++) {
        newest[i] = get_i64(r[i].result, "newest_ts", 0);
        has[i] = get_u64(r[i].result, "accepted") != 0;
        if (has[i] && newest[i] > top)
            top = newest[i];
    }
    struct cl_req reqs[CLUSTER_NODES_MAX];
    const struct cl_req *qs[CLUSTER_NODES_MAX] = {0};
    static const char *const skip[] = {"window_ms", NULL};
    for (uint32_t i = 0; i < cl->n; i++) {
        uint64_t lag = has[i] ? (uint64_t)(top - newest[i]) : window;
        if (lag >= window)
            continue; /* none of this node's posts is in the window */
        clreq_init(&reqs[i], "top_cascades");
        clreq_forward(&reqs[i], c, skip);
        msgpack_pack_uint64(clreq_key(&reqs[i], "window_ms"), window - lag);
        qs[i] = &reqs[i];
    }
    rc = cl_ask_nodes(cl, c, qs, r);
    for (uint32_t i = 0; i < cl->n; i++)
        if (qs[i])
            clreq_free(&reqs[i]);
    if (rc || node_errors(c, cl, r, 0))
        return;
    const msgpack_object *lists[CLUSTER_NODES_MAX];
    for (uint32_t i = 0; i < cl->n; i++)
        lists[i] = qs[i] ? r[i].result : NULL;
    pack_ranked(c, lists, cl->n, "growth", 0, limit);
}

static void h_top_cascades(struct qcall *c)
{
    struct cluster *cl = c->ctx;
    uint32_t by_len;
    const char *by = qcall_str(c, "by", &by_len);
    uint64_t limit = qcall_uint(c, "limit");
    char key[32] = "size";
    if (by && by_len < sizeof(key)) {
        memcpy(key, by, by_len);
        key[by_len] = 0;
    }
    if (!strcmp(key, "growth")) {
        h_top_growth(c, qcall_uint(c, "window_ms"), limit);
        return;
    }
    struct proto_rpc_response r[CLUSTER_NODES_MAX];
    if (ask_forward(c, NULL, r, 0))
        return;
    const msgpack_object *lists[CLUSTER_NODES_MAX];
    for (uint32_t i = 0; i < cl->n; i++)
        lists[i] = r[i].result;
    pack_ranked(c, lists, cl->n, key, 0, limit);
}

/* actor_cascades: each node's largest of the actor's cascades, merged by size then root id. */
static void h_actor_cascades(struct qcall *c)
{
    struct cluster *cl = c->ctx;
    struct proto_rpc_response r[CLUSTER_NODES_MAX];
    if (ask_forward(c, NULL, r, 1))
        return;
    const msgpack_object *lists[CLUSTER_NODES_MAX];
    uint32_t found = 0;
    for (uint32_t i = 0; i < cl->n; i++) {
        lists[i] = r[i].error ? NULL : r[i].result;
        found += !r[i].error;
    }
    if (!found) {
        fail_404(c, r);
        return;
    }
    pack_ranked(c, lists, cl->n, "size", 1, qcall_uint(c, "limit"));
}

/* content: posts and cascades add up (a post, and so a cascade, is on one node); first/last
 * min/max; its top cascades merged. unique_actors (distinct actors over the key's posts) is a
 * union the nodes do not return: exact when one node holds the key, else nil (docs/cluster.md). */
static void h_content(struct qcall *c)
{
    struct cluster *cl = c->ctx;
    struct proto_rpc_response r[CLUSTER_NODES_MAX];
    if (ask_forward(c, NULL, r, 1))
        return;
    const msgpack_object *lists[CLUSTER_NODES_MAX];
    uint32_t found = 0, last = 0;
    uint64_t posts = 0, cascades = 0;
    int64_t first_ts = INT64_MAX, last_ts = INT64_MIN;
    for (uint32_t i = 0; i < cl->n; i++) {
        lists[i] = NULL;
        if (r[i].error)
            continue;
        found++;
        last = i;
        posts += get_u64(r[i].result, "posts");
        cascades += get_u64(r[i].result, "cascades");
        int64_t f = get_i64(r[i].result, "first_ts", INT64_MAX);
        int64_t l = get_i64(r[i].result, "last_ts", INT64_MIN);
        first_ts = f < first_ts ? f : first_ts;
        last_ts = l > last_ts ? l : last_ts;
        lists[i] = get(r[i].result, "top_cascades");
    }
    if (!found) {
        fail_404(c, r);
        return;
    }
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 7);
    qpack_key(pk, "key");
    msgpack_pack_object(pk, *get(r[last].result, "key"));
    qpack_u64(pk, "posts", posts);
    qpack_u64(pk, "cascades", cascades);
    qpack_key(pk, "unique_actors");
    if (found == 1)
        msgpack_pack_uint64(pk, get_u64(r[last].result, "unique_actors"));
    else
        msgpack_pack_nil(pk);
    qpack_i64(pk, "first_ts", first_ts);
    qpack_i64(pk, "last_ts", last_ts);
    qpack_key(pk, "top_cascades");
    pack_ranked(c, lists, cl->n, "size", 0, qcall_uint(c, "limit"));
}

/* ---------------------------------------------------------------- actors */

/* One actor over the nodes: counters summed (each post is on one node), amplifiers joined as a
 * set, first/last min/max, cascades summed (cascades are disjoint). */
struct m_actor {
    char id[QSCHEMA_ID_MAX];
    uint32_t id_len;
    uint32_t nodes; /* nodes that know it */
    uint64_t posts, roots, shares, reshares_received, reach, cascades;
    int64_t first_ts, last_ts;
    int page;
    struct clm_idset amps;
    uint64_t amps_n; /* after clm_idset_finish */
};

static void actor_init(struct m_actor *a, const char *id, uint32_t len)
{
    memset(a, 0, sizeof(*a));
    memcpy(a->id, id, len);
    a->id_len = len;
    a->first_ts = INT64_MAX;
    a->last_ts = INT64_MIN;
}

/* Adds one node's `actor ... amplifier_ids=true` record. 0 or -ENOMEM. */
static int actor_add(struct m_actor *a, const msgpack_object *rec)
{
    a->nodes++;
    a->posts += get_u64(rec, "posts");
    a->roots += get_u64(rec, "roots");
    a->shares += get_u64(rec, "shares");
    a->reshares_received += get_u64(rec, "reshares_received");
    a->reach += get_u64(rec, "reach");
    a->cascades += get_u64(rec, "cascades");
    int64_t f = get_i64(rec, "first_ts", INT64_MAX), l = get_i64(rec, "last_ts", INT64_MIN);
    a->first_ts = f < a->first_ts ? f : a->first_ts;
    a->last_ts = l > a->last_ts ? l : a->last_ts;
    const msgpack_object *t = get(rec, "actor_type");
    /* a node keeps the type the first event giving one gave, else account: a page anywhere
     * was given explicitly (docs/cluster.md) */
    if (t && t->type == MSGPACK_OBJECT_STR && t->via.str.size == 4 &&
        !memcmp(t->via.str.ptr, "page", 4))
        a->page = 1;
    const msgpack_object *ids = get(rec, "amplifier_ids");
    for (uint32_t i = 0; ids && ids->type == MSGPACK_OBJECT_ARRAY && i < ids->via.array.size; i++) {
        const msgpack_object *x = &ids->via.array.ptr[i];
        if (x->type == MSGPACK_OBJECT_STR &&
            clm_idset_add(&a->amps, x->via.str.ptr, x->via.str.size))
            return -ENOMEM;
    }
    return 0;
}

static void actor_finish(struct m_actor *a)
{
    a->amps_n = clm_idset_finish(&a->amps);
}

static void pack_m_actor(msgpack_packer *pk, const struct m_actor *a, int with_ids)
{
    msgpack_pack_map(pk, 13 + (with_ids != 0));
    qpack_str(pk, "id", a->id, a->id_len);
    qpack_cstr(pk, "actor_type", a->page ? "page" : "account");
    qpack_u64(pk, "posts", a->posts);
    qpack_u64(pk, "roots", a->roots);
    qpack_u64(pk, "shares", a->shares);
    qpack_u64(pk, "reshares_received", a->reshares_received);
    qpack_u64(pk, "amplifiers", a->amps_n);
    qpack_u64(pk, "reach", a->reach);
    qpack_u64(pk, "cascades", a->cascades);
    qpack_i64(pk, "first_ts", a->first_ts);
    qpack_i64(pk, "last_ts", a->last_ts);
    /* PageRank is over the union of the nodes' graphs: not computed here (docs/cluster.md) */
    qpack_key(pk, "pagerank");
    msgpack_pack_nil(pk);
    qpack_key(pk, "pagerank_age_ms");
    msgpack_pack_nil(pk);
    if (with_ids) {
        qpack_key(pk, "amplifier_ids");
        msgpack_pack_array(pk, a->amps_n);
        for (size_t i = 0; i < a->amps_n; i++)
            qpack_strv(pk, a->amps.ids[i], a->amps.lens[i]);
    }
}

static void h_actor(struct qcall *c)
{
    struct cluster *cl = c->ctx;
    char buf[24];
    uint32_t len;
    const char *id = qcall_id(c, "id", buf, &len);
    struct cl_req q;
    clreq_init(&q, "actor");
    static const char *const skip[] = {"amplifier_ids", NULL};
    clreq_forward(&q, c, skip);
    msgpack_pack_true(clreq_key(&q, "amplifier_ids"));
    struct proto_rpc_response r[CLUSTER_NODES_MAX];
    int rc = cl_ask_all(cl, c, &q, r);
    clreq_free(&q);
    if (rc || node_errors(c, cl, r, 1))
        return;
    struct m_actor *a = malloc(sizeof(*a));
    if (!a) {
        qcall_fail(c, QERR_INTERNAL, "out of memory");
        return;
    }
    actor_init(a, id, len);
    for (uint32_t i = 0; i < cl->n && rc == 0; i++)
        if (!r[i].error)
            rc = actor_add(a, r[i].result);
    actor_finish(a);
    if (rc)
        qcall_fail(c, QERR_INTERNAL, "out of memory");
    else if (!a->nodes)
        fail_404(c, r);
    else
        pack_m_actor(c->pk, a, qcall_bool(c, "amplifier_ids"));
    clm_idset_free(&a->amps);
    free(a);
}

/* top_actors: an actor's figures add up over nodes, so a node's top k is not the cluster's.
 * Each round asks every node for its top k by the metric (no actor_type filter: a node's type
 * of an actor is its own). An actor in no node's list has at most the sum over nodes of each
 * list's last value (0 for a list shorter than k: that node listed every actor it has). The
 * candidates' exact figures come from the lists, and from an `actor` call to each node whose
 * (full) list lacks them. When the limit-th best passing the filter beats that bound strictly
 * (an unseen actor could tie and win on first_ts), or every list is complete, the answer is
 * exact; else k grows x4 (nodes take `candidates` past limit's 1000) and the round runs again.
 * Amplifiers are a union: a candidate with amplifiers on two or more nodes has its ids fetched
 * (one pass over the node's posts each), else the one node's count is the union's size. */
#define TOP_CAND_MAX (1u << 24)

struct cand {
    struct m_actor a;
    uint8_t seen[CLUSTER_NODES_MAX]; /* that node's figures are in a */
    uint8_t amp_nodes;               /* nodes where it has amplifiers */
    uint8_t open;                    /* could beat the round's bound: its figures are fetched */
    uint64_t amp_sum;
};

struct top_ctx {
    struct cand *cand;
    size_t n, cap;
    uint32_t *slot; /* open addressing: candidate index + 1, 0 empty */
    size_t nslot;
    uint32_t node;  /* the node asked in cl_ask_many */
    uint32_t *ask;  /* candidates asked of that node */
    const char *metric;
};

static uint64_t hash_id(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t actor_metric(const struct m_actor *a, const char *metric)
{
    if (!strcmp(metric, "reshares_received"))
        return a->reshares_received;
    if (!strcmp(metric, "amplifiers"))
        return a->amps_n;
    if (!strcmp(metric, "posts"))
        return a->posts;
    return a->reach;
}

static const char *cand_metric; /* qsort's context; one thread runs these */

static int cand_cmp(const void *pa, const void *pb)
{
    const struct m_actor *a = *(struct m_actor *const *)pa, *b = *(struct m_actor *const *)pb;
    uint64_t va = actor_metric(a, cand_metric), vb = actor_metric(b, cand_metric);
    if (va != vb)
        return va > vb ? -1 : 1;
    if (a->first_ts != b->first_ts) /* the actor seen first, as a node fed in time order */
        return a->first_ts < b->first_ts ? -1 : 1;
    return clm_id_cmp(a->id, a->id_len, b->id, b->id_len);
}

static void top_free(struct top_ctx *t)
{
    for (size_t i = 0; i < t->n; i++)
        clm_idset_free(&t->cand[i].a.amps);
    free(t->cand);
    free(t->slot);
    free(t->ask);
    memset(t, 0, sizeof(*t));
}

/* The candidate of id, added when new: its index, or -ENOMEM. */
static long cand_get(struct top_ctx *t, const char *id, size_t len)
{
    if ((t->n + 1) * 2 > t->nslot) {
        size_t ns = t->nslot ? t->nslot * 2 : 1024;
        uint32_t *sl = calloc(ns, sizeof(*sl));
        if (!sl)
            return -ENOMEM;
        for (size_t i = 0; i < t->n; i++) {
            size_t h = hash_id(t->cand[i].a.id, t->cand[i].a.id_len) & (ns - 1);
            while (sl[h])
                h = (h + 1) & (ns - 1);
            sl[h] = (uint32_t)i + 1;
        }
        free(t->slot);
        t->slot = sl;
        t->nslot = ns;
    }
    size_t h = hash_id(id, len) & (t->nslot - 1);
    for (; t->slot[h]; h = (h + 1) & (t->nslot - 1)) {
        const struct m_actor *a = &t->cand[t->slot[h] - 1].a;
        if (a->id_len == len && !memcmp(a->id, id, len))
            return (long)t->slot[h] - 1;
    }
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 256;
        struct cand *m = realloc(t->cand, nc * sizeof(*m));
        if (!m)
            return -ENOMEM;
        t->cand = m;
        t->cap = nc;
    }
    struct cand *c = &t->cand[t->n];
    memset(c, 0, sizeof(*c));
    actor_init(&c->a, id, (uint32_t)len);
    t->slot[h] = (uint32_t)t->n + 1;
    return (long)t->n++;
}

/* One node's record of candidate i (its amplifier ids, when there, into the union). */
static int cand_add(struct top_ctx *t, size_t i, uint32_t node, const msgpack_object *rec)
{
    struct cand *c = &t->cand[i];
    if (c->seen[node])
        return 0;
    c->seen[node] = 1;
    uint64_t amps = get_u64(rec, "amplifiers");
    c->amp_sum += amps;
    c->amp_nodes += amps != 0;
    return actor_add(&c->a, rec);
}

static void build_actor_req(void *ctx, uint32_t i, struct cl_req *q)
{
    struct top_ctx *t = ctx;
    const struct m_actor *a = &t->cand[t->ask[i]].a;
    clreq_init(q, "actor");
    qpack_strv(clreq_key(q, "id"), a->id, a->id_len);
}

static int each_actor(void *ctx, uint32_t i, const struct proto_rpc_response *resp)
{
    struct top_ctx *t = ctx;
    if (resp->error)
        return resp->code == QERR_NOT_FOUND ? 0 : -EPROTO;
    return cand_add(t, t->ask[i], t->node, resp->result) ? -ENOMEM : 0;
}

static void build_ids_req(void *ctx, uint32_t i, struct cl_req *q)
{
    build_actor_req(ctx, i, q);
    msgpack_pack_true(clreq_key(q, "amplifier_ids"));
}

static int each_ids(void *ctx, uint32_t i, const struct proto_rpc_response *resp)
{
    struct top_ctx *t = ctx;
    if (resp->error)
        return resp->code == QERR_NOT_FOUND ? 0 : -EPROTO;
    const msgpack_object *ids = get(resp->result, "amplifier_ids");
    struct m_actor *a = &t->cand[t->ask[i]].a;
    for (uint32_t j = 0; ids && ids->type == MSGPACK_OBJECT_ARRAY && j < ids->via.array.size; j++) {
        const msgpack_object *x = &ids->via.array.ptr[j];
        if (x->type == MSGPACK_OBJECT_STR &&
            clm_idset_add(&a->amps, x->via.str.ptr, x->via.str.size))
            return -ENOMEM;
    }
    return 0;
}

/* Asks node for the candidates t->ask[0..n) with build/each. */
static int ask_node(struct qcall *c, struct top_ctx *t, uint32_t node, uint32_t n,
                    cl_build_fn build, cl_each_fn each)
{
    t->node = node;
    return n ? cl_ask_many(c->ctx, c, node, n, build, each, t) : 0;
}

/* Exact amplifier counts of candidates in want[0..n) (indices): a union where two or more
 * nodes have some. 0 or a negative errno / -EIO (c failed). */
static int settle_amps(struct qcall *c, struct top_ctx *t, const uint32_t *want, size_t n)
{
    struct cluster *cl = c->ctx;
    uint32_t *ask = realloc(t->ask, (n ? n : 1) * sizeof(*ask));
    if (!ask)
        return -ENOMEM;
    t->ask = ask;
    for (uint32_t node = 0; node < cl->n; node++) {
        uint32_t k = 0;
        for (size_t i = 0; i < n; i++) {
            const struct cand *x = &t->cand[want[i]];
            if (x->amp_nodes >= 2 && x->seen[node])
                ask[k++] = want[i];
        }
        int rc = ask_node(c, t, node, k, build_ids_req, each_ids);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        struct cand *x = &t->cand[want[i]];
        x->a.amps_n = x->amp_nodes >= 2 ? clm_idset_finish(&x->a.amps) : x->amp_sum;
    }
    return 0;
}

/* One round at k: 1 exact (order[0..*m) ranked), 0 not settled, <0 failed (c failed). */
static int top_round(struct qcall *c, struct top_ctx *t, uint64_t k, uint64_t limit,
                     const char *type, struct m_actor ***order, size_t *m)
{
    struct cluster *cl = c->ctx;
    const char *metric = t->metric;
    struct cl_req q;
    clreq_init(&q, "top_actors");
    qpack_strv(clreq_key(&q, "by"), metric, strlen(metric));
    msgpack_pack_uint64(clreq_key(&q, k <= QSCHEMA_LIMIT_MAX ? "limit" : "candidates"), k);
    struct proto_rpc_response r[CLUSTER_NODES_MAX];
    int rc = cl_ask_all(cl, c, &q, r);
    clreq_free(&q);
    if (rc || node_errors(c, cl, r, 0))
        return -EIO;
    uint64_t bound = 0, last[CLUSTER_NODES_MAX] = {0};
    int complete[CLUSTER_NODES_MAX], all_complete = 1;
    for (uint32_t i = 0; i < cl->n; i++) {
        const msgpack_object *l = r[i].result;
        uint32_t n = l && l->type == MSGPACK_OBJECT_ARRAY ? l->via.array.size : 0;
        complete[i] = n < k;
        if (!complete[i]) { /* others may hide at or below its last */
            all_complete = 0;
            last[i] = get_u64(&l->via.array.ptr[n - 1], metric);
            bound += last[i];
        }
        for (uint32_t j = 0; j < n; j++) {
            const msgpack_object *rec = &l->via.array.ptr[j], *id = get(rec, "id");
            if (!id || id->type != MSGPACK_OBJECT_STR || id->via.str.size > QSCHEMA_ID_MAX)
                continue;
            long at = cand_get(t, id->via.str.ptr, id->via.str.size);
            if (at < 0 || cand_add(t, (size_t)at, i, rec))
                return -ENOMEM;
        }
    }
    /* a round that cannot settle (fewer than limit candidates could beat the bound even with
     * the most the lists leave open) skips its lookups: many equal values (a tail of actors
     * with one post each) would otherwise cost a lookup per candidate per round */
    if (!all_complete) {
        size_t could = 0;
        for (size_t j = 0; j < t->n; j++) {
            struct cand *x = &t->cand[j];
            x->a.amps_n = x->amp_sum; /* the union is at most the sum */
            uint64_t ub = actor_metric(&x->a, metric);
            for (uint32_t i = 0; i < cl->n; i++)
                ub += !complete[i] && !x->seen[i] ? last[i] : 0;
            x->open = ub > bound; /* else it ranks below the bound, out of any exact answer */
            could += x->open;
        }
        if (could < limit) {
            if (k >= TOP_CAND_MAX)
                qcall_fail(c, QERR_NOT_IMPLEMENTED,
                           "top_actors: the nodes' top %u do not settle the cluster's top "
                           "%" PRIu64 " exactly (an actor outside them could total %" PRIu64 ")",
                           TOP_CAND_MAX, limit, bound);
            return 0;
        }
    }
    /* the candidates a full list left out: that node's figures by id */
    uint32_t *ask = realloc(t->ask, (t->n ? t->n : 1) * sizeof(*ask));
    if (!ask)
        return -ENOMEM;
    t->ask = ask;
    for (uint32_t i = 0; i < cl->n; i++) {
        uint32_t n = 0;
        for (size_t j = 0; j < t->n; j++)
            if (!complete[i] && !t->cand[j].seen[i] && t->cand[j].open)
                ask[n++] = (uint32_t)j;
        if ((rc = ask_node(c, t, i, n, build_actor_req, each_actor)))
            return rc;
    }
    /* ranking by amplifiers needs every candidate's union; else only the answer's */
    uint32_t *all = malloc((t->n ? t->n : 1) * sizeof(*all));
    if (!all)
        return -ENOMEM;
    for (size_t j = 0; j < t->n; j++) {
        all[j] = (uint32_t)j;
        t->cand[j].a.amps_n = t->cand[j].amp_sum; /* the union's size where one node has some */
    }
    size_t nall = 0;
    for (size_t j = 0; j < t->n; j++)
        if (all_complete || t->cand[j].open)
            all[nall++] = (uint32_t)j;
    if (!strcmp(metric, "amplifiers") && (rc = settle_amps(c, t, all, nall))) {
        free(all);
        return rc;
    }
    struct m_actor **o = malloc((t->n ? t->n : 1) * sizeof(*o));
    if (!o) {
        free(all);
        return -ENOMEM;
    }
    size_t n = 0;
    int want_page = type && !strcmp(type, "page");
    for (size_t j = 0; j < t->n; j++)
        if ((all_complete || t->cand[j].open) && (!type || t->cand[j].a.page == want_page))
            o[n++] = &t->cand[j].a;
    cand_metric = metric;
    qsort(o, n, sizeof(*o), cand_cmp);
    int exact = all_complete || (n >= limit && actor_metric(o[limit - 1], metric) > bound);
    if (exact) {
        size_t out = n < limit ? n : (size_t)limit;
        for (size_t i = 0; i < out; i++)
            all[i] = (uint32_t)((struct cand *)(void *)o[i] - t->cand);
        if (strcmp(metric, "amplifiers") && (rc = settle_amps(c, t, all, out))) {
            free(all);
            free(o);
            return rc;
        }
        *m = out;
        *order = o;
    } else {
        free(o);
        if (k >= TOP_CAND_MAX)
            qcall_fail(c, QERR_NOT_IMPLEMENTED,
                       "top_actors: the nodes' top %u do not settle the cluster's top %" PRIu64
                       " exactly (an actor outside them could total %" PRIu64 ")",
                       TOP_CAND_MAX, limit, bound);
    }
    free(all);
    return exact;
}

static void h_top_actors(struct qcall *c)
{
    uint32_t by_len, t_len;
    const char *by = qcall_str(c, "by", &by_len);
    const char *type = qcall_str(c, "actor_type", &t_len);
    uint64_t limit = qcall_uint(c, "limit");
    char metric[32] = "reach", tname[8] = "";
    if (by && by_len < sizeof(metric)) {
        memcpy(metric, by, by_len);
        metric[by_len] = 0;
    }
    if (type && t_len < sizeof(tname)) {
        memcpy(tname, type, t_len);
        tname[t_len] = 0;
    }
    if (!strcmp(metric, "pagerank")) {
        qcall_fail(c, QERR_NOT_IMPLEMENTED,
                   "top_actors by=pagerank is not served by the cluster endpoint: PageRank is "
                   "over the union of the nodes' amplification graphs, which no node holds "
                   "(docs/cluster.md)");
        return;
    }
    for (uint64_t k = limit;; k = k * 4 > TOP_CAND_MAX ? TOP_CAND_MAX : k * 4) {
        struct top_ctx t = {.metric = metric};
        struct m_actor **order = NULL;
        size_t m = 0;
        int rc = top_round(c, &t, k, limit, type ? tname : NULL, &order, &m);
        if (rc > 0) {
            msgpack_pack_array(c->pk, m);
            for (size_t i = 0; i < m; i++)
                pack_m_actor(c->pk, order[i], 0);
        } else if (rc < 0 && !c->code) {
            qcall_fail(c, QERR_INTERNAL, "top_actors: %s", strerror(-rc));
        }
        free(order);
        top_free(&t);
        if (rc != 0 || c->code)
            return;
    }
}

/* actor_links: an actor's links add up over nodes (weights summed per neighbour and direction),
 * with each neighbour's reach summed and its type merged from every node. Each node gives all of
 * its links of the actor (actor_links candidates=N, bounded there by the actor's amplifiers and
 * shares), so the sums are exact. */
#define LINKS_ALL 100000000u /* the schema's bound on candidates */
struct link_ctx {
    struct top_ctx t;
    uint64_t *w[2]; /* per candidate: in, out weights */
};

static const char *link_dir_cmp_names[2] = {"in", "out"};
static struct link_ctx *link_now; /* qsort's context; one thread runs these */
static int link_dir_now;

static int link_cmp(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    uint64_t wa = link_now->w[link_dir_now][a], wb = link_now->w[link_dir_now][b];
    if (wa != wb)
        return wa > wb ? -1 : 1;
    const struct m_actor *x = &link_now->t.cand[a].a, *y = &link_now->t.cand[b].a;
    return clm_id_cmp(x->id, x->id_len, y->id, y->id_len);
}

static void h_actor_links(struct qcall *c)
{
    struct cluster *cl = c->ctx;
    uint32_t dlen;
    const char *dir = qcall_str(c, "direction", &dlen);
    uint64_t limit = qcall_uint(c, "limit");
    int want[2] = {1, 1};
    if (dir && dlen == 2 && !memcmp(dir, "in", 2))
        want[1] = 0;
    if (dir && dlen == 3 && !memcmp(dir, "out", 3))
        want[0] = 0;
    struct cl_req q;
    clreq_init(&q, "actor_links");
    static const char *const skip[] = {"limit", "candidates", NULL};
    clreq_forward(&q, c, skip);
    msgpack_pack_uint64(clreq_key(&q, "candidates"), LINKS_ALL); /* every link it has */
    struct proto_rpc_response r[CLUSTER_NODES_MAX];
    int rc = cl_ask_all(cl, c, &q, r);
    clreq_free(&q);
    if (rc || node_errors(c, cl, r, 1))
        return;
    struct link_ctx x = {0};
    uint32_t found = 0;
    size_t wcap = 0;
    for (uint32_t i = 0; i < cl->n && rc == 0; i++) {
        const msgpack_object *l = r[i].error ? NULL : r[i].result;
        if (!l || l->type != MSGPACK_OBJECT_ARRAY)
            continue;
        found++;
        uint32_t per[2] = {0, 0};
        for (uint32_t j = 0; j < l->via.array.size && rc == 0; j++) {
            const msgpack_object *rec = &l->via.array.ptr[j], *id = get(rec, "actor");
            const msgpack_object *d = get(rec, "direction");
            int out = d && d->type == MSGPACK_OBJECT_STR && d->via.str.size == 3;
            if (!id || id->type != MSGPACK_OBJECT_STR || id->via.str.size > QSCHEMA_ID_MAX)
                continue;
            per[out]++;
            long at = cand_get(&x.t, id->via.str.ptr, id->via.str.size);
            if (at < 0) {
                rc = -ENOMEM;
                break;
            }
            if (x.t.n > wcap) {
                size_t nc = x.t.cap;
                for (int k = 0; k < 2; k++) {
                    uint64_t *w = realloc(x.w[k], nc * sizeof(*w));
                    if (!w) {
                        rc = -ENOMEM;
                        break;
                    }
                    memset(w + wcap, 0, (nc - wcap) * sizeof(*w));
                    x.w[k] = w;
                }
                if (rc)
                    break;
                wcap = nc;
            }
            x.w[out][at] += get_u64(rec, "weight");
        }
        for (int k = 0; k < 2 && rc == 0; k++)
            if (per[k] >= LINKS_ALL)
                qcall_fail(c, QERR_NOT_IMPLEMENTED,
                           "actor_links: node %s holds at least %u %s links of this actor, its "
                           "bound, so the summed weights would not be exact (docs/cluster.md)",
                           cl->nodes[i].name, LINKS_ALL, link_dir_cmp_names[k]);
    }
    if (!rc && !c->code && !found)
        fail_404(c, r);
    /* every neighbour's figures from every node: reach summed, type merged */
    uint32_t *ask = !rc && !c->code && x.t.n ? malloc(x.t.n * sizeof(*ask)) : NULL;
    if (ask) {
        x.t.ask = ask;
        for (size_t j = 0; j < x.t.n; j++)
            ask[j] = (uint32_t)j;
        for (uint32_t i = 0; i < cl->n && rc == 0; i++)
            rc = ask_node(c, &x.t, i, (uint32_t)x.t.n, build_actor_req, each_actor);
    } else if (!rc && !c->code && x.t.n) {
        rc = -ENOMEM;
    }
    if (rc || c->code) {
        if (!c->code)
            qcall_fail(c, QERR_INTERNAL, "actor_links: %s", strerror(rc < 0 ? -rc : rc));
    } else {
        uint32_t *ord[2] = {NULL, NULL};
        size_t cnt[2] = {0, 0};
        for (int k = 0; k < 2 && !c->code; k++) {
            if (!want[k])
                continue;
            ord[k] = malloc((x.t.n ? x.t.n : 1) * sizeof(*ord[k]));
            if (!ord[k]) {
                qcall_fail(c, QERR_INTERNAL, "out of memory");
                break;
            }
            for (size_t j = 0; j < x.t.n; j++)
                if (x.w[k][j])
                    ord[k][cnt[k]++] = (uint32_t)j;
            link_now = &x;
            link_dir_now = k;
            qsort(ord[k], cnt[k], sizeof(*ord[k]), link_cmp);
            if (cnt[k] > limit)
                cnt[k] = (size_t)limit;
        }
        if (!c->code) {
            msgpack_pack_array(c->pk, cnt[0] + cnt[1]);
            for (int k = 0; k < 2; k++)
                for (size_t j = 0; j < cnt[k]; j++) {
                    const struct m_actor *a = &x.t.cand[ord[k][j]].a;
                    msgpack_pack_map(c->pk, 5);
                    qpack_cstr(c->pk, "direction", link_dir_cmp_names[k]);
                    qpack_str(c->pk, "actor", a->id, a->id_len);
                    qpack_cstr(c->pk, "actor_type", a->page ? "page" : "account");
                    qpack_u64(c->pk, "weight", x.w[k][ord[k][j]]);
                    qpack_u64(c->pk, "reach", a->reach);
                }
        }
        free(ord[0]);
        free(ord[1]);
    }
    free(x.w[0]);
    free(x.w[1]);
    top_free(&x.t);
}

/* ---------------------------------------------------------------- labels */

#define LABEL_METRICS 5
static const char *const label_metrics[LABEL_METRICS] = {
    "size", "depth", "max_breadth", "structural_virality", "unique_actors"};

/* One label's (or the unlabelled cascades') values over the nodes. */
struct m_label {
    const msgpack_object *name; /* a str, or NULL: no label */
    double *v[LABEL_METRICS + 1]; /* + duration_ms */
    size_t n, cap;
    uint64_t expect; /* the cascades the nodes' summaries count */
};

static int label_add(struct m_label *l, const msgpack_object *rec)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        for (int m = 0; m <= LABEL_METRICS; m++) {
            double *x = realloc(l->v[m], nc * sizeof(*x));
            if (!x)
                return -ENOMEM;
            l->v[m] = x;
        }
        l->cap = nc;
    }
    for (int m = 0; m < LABEL_METRICS; m++)
        l->v[m][l->n] = get_f64(rec, label_metrics[m]);
    l->v[LABEL_METRICS][l->n] = get_f64(rec, "duration_ms");
    l->n++;
    return 0;
}

static int dbl_cmp(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return a < b ? -1 : a > b;
}

static int same_label(const msgpack_object *a, const msgpack_object *b)
{
    if (!a || !b)
        return !a && !b;
    return a->via.str.size == b->via.str.size &&
           !memcmp(a->via.str.ptr, b->via.str.ptr, a->via.str.size);
}

static int label_order(const void *pa, const void *pb)
{
    const struct m_label *a = pa, *b = pb;
    if (!a->name || !b->name) /* the unlabelled last */
        return !a->name - !b->name;
    return clm_id_cmp(a->name->via.str.ptr, a->name->via.str.size, b->name->via.str.ptr,
                      b->name->via.str.size);
}

/* One figure of a label's record, by its key as the nodes name it ("<metric>_<stat>"):
 * 0 packed, -1 not a figure known here (packed nil). v[m] sorted. */
static int pack_figure(msgpack_packer *pk, const struct m_label *l, double *const *v,
                       const long double *sum, const char *key, size_t klen)
{
    static const char *const metrics[LABEL_METRICS + 1] = {
        "size", "depth", "max_breadth", "structural_virality", "unique_actors", "duration_ms"};
    for (int m = 0; m <= LABEL_METRICS; m++) {
        size_t ml = strlen(metrics[m]);
        if (klen <= ml + 1 || memcmp(key, metrics[m], ml) || key[ml] != '_')
            continue;
        const char *st = key + ml + 1;
        size_t sl = klen - ml - 1;
        const double *x = v[m];
        size_t n = l->n;
        if (n && sl == 4 && !memcmp(st, "mean", 4)) {
            msgpack_pack_double(pk, (double)(sum[m] / (long double)n));
        } else if (n && sl == 6 && !memcmp(st, "median", 6)) {
            msgpack_pack_double(pk, clm_quantile(x, n, 0.5));
        } else if (n && sl == 3 && !memcmp(st, "p90", 3)) {
            msgpack_pack_double(pk, clm_quantile(x, n, 0.9));
        } else if (n && sl == 3 && !memcmp(st, "max", 3)) {
            msgpack_pack_double(pk, x[n - 1]);
        } else if (sl == 2 && !memcmp(st, "sd", 2)) { /* n - 1; nil for one cascade */
            if (n < 2) {
                msgpack_pack_nil(pk);
                return 0;
            }
            long double mean = sum[m] / (long double)n, sq = 0;
            for (size_t i = 0; i < n; i++)
                sq += ((long double)x[i] - mean) * ((long double)x[i] - mean);
            msgpack_pack_double(pk, (double)sqrtl(sq / (long double)(n - 1)));
        } else {
            break;
        }
        return 0;
    }
    msgpack_pack_nil(pk);
    return -1;
}

/* A label's record in the nodes' own layout (keys of tmpl, a node's record, in its order). */
static void pack_label(msgpack_packer *pk, struct m_label *l, const msgpack_object *tmpl)
{
    long double sum[LABEL_METRICS + 1] = {0};
    for (int m = 0; m <= LABEL_METRICS; m++) {
        for (size_t i = 0; i < l->n; i++)
            sum[m] += l->v[m][i];
        qsort(l->v[m], l->n, sizeof(*l->v[m]), dbl_cmp);
    }
    msgpack_pack_map(pk, tmpl->via.map.size);
    for (uint32_t k = 0; k < tmpl->via.map.size; k++) {
        const msgpack_object *key = &tmpl->via.map.ptr[k].key;
        msgpack_pack_object(pk, *key);
        if (key_is(key, "label")) {
            if (l->name)
                msgpack_pack_object(pk, *l->name);
            else
                msgpack_pack_nil(pk);
        } else if (key_is(key, "cascades")) {
            msgpack_pack_uint64(pk, l->n);
        } else if (key->type == MSGPACK_OBJECT_STR) {
            pack_figure(pk, l, l->v, sum, key->via.str.ptr, key->via.str.size);
        } else {
            msgpack_pack_nil(pk);
        }
    }
}

/* labels: medians and p90 need every cascade's values, which a node gives through
 * top_cascades label=X (`candidates` past limit's 1000; no filter reaches the unlabelled ones
 * but a list of all its cascades). So each node's summary says how many cascades each label
 * has there, and those are fetched from it: every cascade's record crosses the wire once per
 * call, the cheapest exact way the nodes offer (docs/cluster.md). */
static void h_labels(struct qcall *c)
{
    struct cluster *cl = c->ctx;
    struct proto_rpc_response r[CLUSTER_NODES_MAX];
    if (ask_forward(c, NULL, r, 0))
        return;
    /* each node's summary, kept as (node, label, count) before later calls reuse the buffers:
     * the label names are copied into one zone */
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    struct m_label *labels = NULL;
    size_t nl = 0, capl = 0;
    uint64_t *count = NULL; /* [label * n + node] */
    uint64_t total[CLUSTER_NODES_MAX] = {0};
    int fail = 0;
    msgpack_object *tmpl = NULL; /* the layout of a node's record (keys copied) */
    for (uint32_t i = 0; i < cl->n && !fail; i++) {
        const msgpack_object *l = r[i].result;
        for (uint32_t j = 0; l && l->type == MSGPACK_OBJECT_ARRAY && j < l->via.array.size; j++) {
            const msgpack_object *rec = &l->via.array.ptr[j];
            if (!tmpl && rec->type == MSGPACK_OBJECT_MAP) {
                uint32_t nk = rec->via.map.size;
                tmpl = msgpack_zone_malloc(&zone, sizeof(*tmpl));
                msgpack_object_kv *kv =
                    tmpl ? msgpack_zone_malloc(&zone, (nk ? nk : 1) * sizeof(*kv)) : NULL;
                if (!kv) {
                    fail = 1;
                    break;
                }
                tmpl->type = MSGPACK_OBJECT_MAP;
                tmpl->via.map.size = nk;
                tmpl->via.map.ptr = kv;
                for (uint32_t x = 0; x < nk; x++) {
                    kv[x].key = rec->via.map.ptr[x].key;
                    kv[x].val.type = MSGPACK_OBJECT_NIL;
                    if (kv[x].key.type != MSGPACK_OBJECT_STR)
                        continue;
                    char *str = msgpack_zone_malloc(&zone, kv[x].key.via.str.size + 1);
                    if (!str) {
                        fail = 1;
                        break;
                    }
                    memcpy(str, kv[x].key.via.str.ptr, kv[x].key.via.str.size);
                    kv[x].key.via.str.ptr = str;
                }
            }
            const msgpack_object *name = get(rec, "label");
            if (name && name->type != MSGPACK_OBJECT_STR)
                name = NULL;
            uint64_t k = get_u64(rec, "cascades");
            total[i] += k;
            size_t at = 0;
            while (at < nl && !same_label(labels[at].name, name))
                at++;
            if (at == nl) {
                if (nl == capl) {
                    size_t nc = capl ? capl * 2 : 16;
                    struct m_label *x = realloc(labels, nc * sizeof(*x));
                    uint64_t *y = x ? realloc(count, nc * cl->n * sizeof(*y)) : NULL;
                    if (x)
                        labels = x;
                    if (!x || !y) {
                        fail = 1;
                        break;
                    }
                    count = y;
                    capl = nc;
                }
                memset(&labels[nl], 0, sizeof(labels[nl]));
                memset(&count[nl * cl->n], 0, cl->n * sizeof(*count));
                if (name) {
                    msgpack_object *copy = msgpack_zone_malloc(&zone, sizeof(*copy));
                    char *s = copy ? msgpack_zone_malloc(&zone, name->via.str.size + 1) : NULL;
                    if (!s) {
                        fail = 1;
                        break;
                    }
                    memcpy(s, name->via.str.ptr, name->via.str.size);
                    *copy = *name;
                    copy->via.str.ptr = s;
                    labels[nl].name = copy;
                }
                nl++;
            }
            count[at * cl->n + i] = k;
            labels[at].expect += k;
        }
    }
    for (size_t a = 0; a < nl && !fail && !c->code; a++) {
        for (uint32_t i = 0; i < cl->n && !c->code; i++) {
            uint64_t k = count[a * cl->n + i];
            if (!k)
                continue;
            uint64_t ask = labels[a].name ? k : total[i];
            struct cl_req q;
            clreq_init(&q, "top_cascades");
            msgpack_pack_uint64(clreq_key(&q, ask <= QSCHEMA_LIMIT_MAX ? "limit" : "candidates"),
                                ask);
            if (labels[a].name)
                msgpack_pack_object(clreq_key(&q, "label"), *labels[a].name);
            const struct cl_req *qs[CLUSTER_NODES_MAX] = {0};
            qs[i] = &q;
            struct proto_rpc_response rr[CLUSTER_NODES_MAX];
            int rc = cl_ask_nodes(cl, c, qs, rr);
            clreq_free(&q);
            if (rc || node_errors(c, cl, rr, 0))
                break;
            const msgpack_object *l = rr[i].result;
            for (uint32_t j = 0; l && l->type == MSGPACK_OBJECT_ARRAY && j < l->via.array.size;
                 j++) {
                const msgpack_object *lab = get(&l->via.array.ptr[j], "label");
                if (lab && lab->type != MSGPACK_OBJECT_STR)
                    lab = NULL;
                if (!same_label(lab, labels[a].name))
                    continue;
                if (label_add(&labels[a], &l->via.array.ptr[j])) {
                    fail = 1;
                    break;
                }
            }
        }
    }
    if (fail && !c->code)
        qcall_fail(c, QERR_INTERNAL, "out of memory");
    for (size_t a = 0; a < nl && !c->code; a++)
        if (labels[a].n != labels[a].expect)
            qcall_fail(c, QERR_NOT_READY,
                       "labels: the nodes changed while they were read (%zu of %" PRIu64
                       " cascades of a label); ask again",
                       labels[a].n, labels[a].expect);
    if (!c->code) {
        qsort(labels, nl, sizeof(*labels), label_order);
        msgpack_pack_array(c->pk, nl);
        for (size_t a = 0; a < nl; a++)
            pack_label(c->pk, &labels[a], tmpl);
    }
    for (size_t a = 0; a < nl; a++)
        for (int m = 0; m <= LABEL_METRICS; m++)
            free(labels[a].v[m]);
    free(labels);
    free(count);
    msgpack_zone_destroy(&zone);
}

/* labels_matched: the size-matched comparison needs every cascade of labels a and b; each
 * node's `labels` says how many it holds, top_cascades label=X gives them (limit, or
 * candidates past 1000), and analytics/matched.c computes on them as a node does. */
static int same_str(const msgpack_object *o, const char *s, uint32_t len)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == len &&
           !memcmp(o->via.str.ptr, s, len);
}

static void h_labels_matched(struct qcall *c)
{
    struct cluster *cl = c->ctx;
    uint32_t len[2];
    const char *name[2];
    name[0] = qcall_str(c, "a", &len[0]);
    name[1] = qcall_str(c, "b", &len[1]);
    struct proto_rpc_response r[CLUSTER_NODES_MAX];
    struct cl_req q;
    clreq_init(&q, "labels");
    int rc = cl_ask_all(cl, c, &q, r);
    clreq_free(&q);
    if (rc || node_errors(c, cl, r, 0))
        return;
    uint64_t count[CLUSTER_NODES_MAX][2] = {{0}};
    for (uint32_t i = 0; i < cl->n; i++) {
        const msgpack_object *l = r[i].result;
        for (uint32_t j = 0; l && l->type == MSGPACK_OBJECT_ARRAY && j < l->via.array.size; j++)
            for (int g = 0; g < 2; g++)
                if (same_str(get(&l->via.array.ptr[j], "label"), name[g], len[g]))
                    count[i][g] = get_u64(&l->via.array.ptr[j], "cascades");
    }
    struct engine_labeled *v = NULL;
    size_t n = 0, cap = 0;
    int same = len[0] == len[1] && !memcmp(name[0], name[1], len[0]);
    for (uint32_t i = 0; i < cl->n && !c->code; i++)
        for (int g = 0; g < (same ? 1 : 2) && !c->code; g++) {
            uint64_t k = count[i][g];
            if (!k)
                continue;
            clreq_init(&q, "top_cascades");
            msgpack_pack_uint64(clreq_key(&q, k <= QSCHEMA_LIMIT_MAX ? "limit" : "candidates"), k);
            qpack_strv(clreq_key(&q, "label"), name[g], len[g]);
            const struct cl_req *qs[CLUSTER_NODES_MAX] = {0};
            qs[i] = &q;
            rc = cl_ask_nodes(cl, c, qs, r);
            clreq_free(&q);
            if (rc || node_errors(c, cl, r, 0))
                break;
            const msgpack_object *l = r[i].result;
            for (uint32_t j = 0; l && l->type == MSGPACK_OBJECT_ARRAY && j < l->via.array.size;
                 j++) {
                const msgpack_object *rec = &l->via.array.ptr[j];
                if (n == cap) {
                    size_t nc = cap ? cap * 2 : 1024;
                    struct engine_labeled *x = realloc(v, nc * sizeof(*x));
                    if (!x) {
                        qcall_fail(c, QERR_INTERNAL, "out of memory");
                        break;
                    }
                    v = x;
                    cap = nc;
                }
                struct engine_labeled *e = &v[n++];
                e->group = (uint8_t)g;
                e->size = (uint32_t)get_u64(rec, "size");
                /* the engine's layout: duration_ms where size would be */
                e->v[ENGINE_LABEL_SIZE] = get_f64(rec, "duration_ms");
                for (int m = 1; m < ENGINE_LABEL_METRICS; m++)
                    e->v[m] = get_f64(rec, engine_label_metric_name(m));
            }
        }
    struct matched_metric mm[MATCHED_METRICS];
    if (!c->code && matched_compare(v, n, mm))
        qcall_fail(c, QERR_INTERNAL, "out of memory");
    free(v);
    if (c->code)
        return;
    pack_labels_matched(c->pk, name[0], len[0], name[1], len[1], mm);
    matched_free(mm);
}

/* ---------------------------------------------------------------- not served */

static void h_not_here(struct qcall *c)
{
    const char *what = !strcmp(c->m->name, "coordination")
                           ? "coordination is over the union of the nodes' shares (co-shares "
                             "of one key span nodes); the nodes do not return their shares"
                       : !strcmp(c->m->name, "communities")
                           ? "communities are Leiden over the union of the nodes' amplification "
                             "graphs; the nodes do not return their edges"
                       : !strcmp(c->m->name, "analytics")
                           ? "the analytics worker runs on each node: ask the nodes"
                       : !strcmp(c->m->name, "snapshot")
                           ? "snapshots are each node's: ask the nodes"
                           : "no merge of its answers is written yet";
    qcall_fail(c, QERR_NOT_IMPLEMENTED, "%s is not served by the cluster endpoint: %s "
               "(docs/cluster.md)", c->m->name, what);
}

/* ---------------------------------------------------------------- the table */

static const struct {
    const char *name;
    qhandler_fn run;
} table[] = {
    {"stats", h_stats},
    {"cascade", h_from_holder},
    {"path", h_from_holder},
    {"top_cascades", h_top_cascades},
    {"actor", h_actor},
    {"top_actors", h_top_actors},
    {"actor_cascades", h_actor_cascades},
    {"content", h_content},
    {"labels", h_labels},
    {"labels_matched", h_labels_matched},
    {"actor_links", h_actor_links},
    {"coordination", h_not_here},
    {"communities", h_not_here},
    {"analytics", h_not_here},
    {"snapshot", h_not_here},
};

/* A method of the schema not in the table (one added on the nodes since) answers 501 saying
 * so, not "unknown method": the nodes know it. */
qhandler_fn cluster_handler(const struct qmethod *m)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (!strcmp(table[i].name, m->name))
            return table[i].run;
    return h_not_here;
}
