/* Query handlers (see handlers.h): read the engine, pack flat records. Results use the same key
 * names as DESIGN §3; ids are strings, times integer milliseconds; lists are arrays of flat maps
 * so that the HTTP port's JSON loads straight into pandas. */
#include "query/handlers.h"

#include "analytics/matched.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- parameters */

static const msgpack_object *val(const struct qcall *c, const char *name)
{
    for (uint32_t i = 0; i < c->m->nparams && i < QCALL_MAX_PARAMS; i++)
        if (strcmp(c->m->params[i].name, name) == 0)
            return c->vals[i];
    return NULL;
}

/* The schema's default of an absent parameter (the text help shows), or NULL: the table is the
 * one place a default is written. */
static const char *def_of(const struct qcall *c, const char *name)
{
    const struct qparam *p = qmethod_param(c->m, name, strlen(name));
    return p ? p->def : NULL;
}

int qcall_has(const struct qcall *c, const char *name)
{
    return val(c, name) != NULL;
}

uint64_t qcall_uint(const struct qcall *c, const char *name)
{
    const msgpack_object *v = val(c, name);
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return v->via.u64;
    const char *d = def_of(c, name);
    return d ? strtoull(d, NULL, 10) : 0;
}

int64_t qcall_int(const struct qcall *c, const char *name)
{
    const msgpack_object *v = val(c, name);
    int64_t ms;
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (int64_t)v->via.u64;
    if (v && v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return v->via.i64;
    /* a time given as ISO 8601 over RPC (the schema has checked that it parses) */
    if (v && v->type == MSGPACK_OBJECT_STR && qtime_parse(v->via.str.ptr, v->via.str.size, &ms) == 0)
        return ms;
    const char *d = def_of(c, name);
    return d ? strtoll(d, NULL, 10) : 0;
}

int qcall_bool(const struct qcall *c, const char *name)
{
    const msgpack_object *v = val(c, name);
    if (v && v->type == MSGPACK_OBJECT_BOOLEAN)
        return v->via.boolean;
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return v->via.u64 != 0;
    const char *d = def_of(c, name);
    return d && strcmp(d, "true") == 0;
}

double qcall_float(const struct qcall *c, const char *name)
{
    const msgpack_object *v = val(c, name);
    if (v && (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64))
        return v->via.f64;
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (double)v->via.u64;
    if (v && v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return (double)v->via.i64;
    const char *d = def_of(c, name);
    return d ? strtod(d, NULL) : 0.0;
}

const char *qcall_str(const struct qcall *c, const char *name, uint32_t *len)
{
    const msgpack_object *v = val(c, name);
    if (v && v->type == MSGPACK_OBJECT_STR) {
        *len = v->via.str.size;
        return v->via.str.ptr;
    }
    const char *d = def_of(c, name);
    *len = d ? (uint32_t)strlen(d) : 0;
    return d;
}

const char *qcall_id(const struct qcall *c, const char *name, char *buf, uint32_t *len)
{
    const msgpack_object *v = val(c, name);
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *len = (uint32_t)snprintf(buf, 24, "%" PRIu64, v->via.u64);
        return buf;
    }
    return qcall_str(c, name, len);
}

void qcall_fail(struct qcall *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    c->code = code;
}

/* An id for an error message: at most 64 bytes of it. */
#define SHOW(len) (int)((len) > 64 ? 64 : (len))

/* ---------------------------------------------------------------- packing */

void qpack_key(msgpack_packer *pk, const char *k)
{
    size_t n = strlen(k);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, k, n);
}

void qpack_strv(msgpack_packer *pk, const char *s, size_t len)
{
    if (!s) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

void qpack_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    qpack_key(pk, k);
    msgpack_pack_uint64(pk, v);
}

void qpack_i64(msgpack_packer *pk, const char *k, int64_t v)
{
    qpack_key(pk, k);
    msgpack_pack_int64(pk, v);
}

void qpack_f64(msgpack_packer *pk, const char *k, double v)
{
    qpack_key(pk, k);
    msgpack_pack_double(pk, v);
}

void qpack_bool(msgpack_packer *pk, const char *k, int v)
{
    qpack_key(pk, k);
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

void qpack_str(msgpack_packer *pk, const char *k, const char *s, size_t len)
{
    qpack_key(pk, k);
    qpack_strv(pk, s, len);
}

void qpack_cstr(msgpack_packer *pk, const char *k, const char *s)
{
    qpack_str(pk, k, s, s ? strlen(s) : 0);
}

/* ---------------------------------------------------------------- stats */

/* The engine thread's pauses (DESIGN §8), the thread of each job and the log thread's: 8 keys. */
static void pack_pauses(msgpack_packer *pk, const struct rpc_server_stats *ss)
{
    qpack_f64(pk, "pause_max_ms", (double)ss->pause_max_ns / 1e6);
    qpack_cstr(pk, "pause_max_job", ss->pause_max_job);
    qpack_f64(pk, "pause_max_cpu_ms", (double)ss->pause_max_cpu_ns / 1e6);
    qpack_u64(pk, "pauses_over_10ms", ss->pauses_over_10ms);
    uint32_t n = 0;
    while (ss->pause_job_names && n < 8 && ss->pause_job_names[n])
        n++;
    qpack_key(pk, "pause_max_ms_by_job");
    msgpack_pack_map(pk, n);
    for (uint32_t i = 0; i < n; i++)
        qpack_f64(pk, ss->pause_job_names[i], (double)ss->pause_job_max_ns[i] / 1e6);
    qpack_key(pk, "pause_thread_by_job");
    msgpack_pack_map(pk, n);
    for (uint32_t i = 0; i < n; i++)
        qpack_cstr(pk, ss->pause_job_names[i],
                   ss->pause_job_threads ? ss->pause_job_threads[i] : "engine");
    qpack_f64(pk, "log_pause_max_ms", (double)ss->log_pause_max_ns / 1e6);
    qpack_u64(pk, "log_pauses_over_10ms", ss->log_pauses_over_10ms);
}

void handle_stats(struct qcall *c)
{
    struct engine_stats st;
    engine_get_stats(c->e, &st);
    msgpack_packer *pk = c->pk;
    uint64_t rejected = 0;
    for (int r = EVENT_REJ_FIRST; r <= EVENT_REJ_LAST; r++)
        rejected += st.outcomes[r];
    msgpack_pack_map(pk, 37 + SNAPSHOT_STATS + (EVENT_REJ_LAST - EVENT_REJ_FIRST + 1) +
                             (c->ss->partitions != NULL));
    qpack_u64(pk, "posts", st.posts);
    qpack_u64(pk, "placeholders", st.placeholders);
    qpack_u64(pk, "cascades", st.cascades);
    qpack_u64(pk, "actors", st.actors);
    qpack_u64(pk, "edges", st.edges);
    qpack_u64(pk, "contents", st.contents);
    qpack_u64(pk, "labels", st.labels);
    qpack_u64(pk, "accepted", st.outcomes[EVENT_OK]);
    qpack_u64(pk, "duplicate", st.outcomes[EVENT_DUP]);
    qpack_u64(pk, "rejected", rejected);
    for (int r = EVENT_REJ_FIRST; r <= EVENT_REJ_LAST; r++) {
        char key[64];
        snprintf(key, sizeof(key), "rejected_%s", event_outcome_name(r));
        qpack_u64(pk, key, st.outcomes[r]);
    }
    qpack_u64(pk, "errors", st.outcomes[EVENT_ERR_NOMEM]);
    qpack_f64(pk, "ingest_rate", c->ss->ingest_rate);
    qpack_i64(pk, "newest_ts", st.newest_ts);
    qpack_i64(pk, "retention_ms", st.retention_ms);
    qpack_i64(pk, "retained_from_ts", st.retained_from);
    qpack_u64(pk, "evicted_cascades", st.evicted_cascades);
    qpack_u64(pk, "evicted_posts", st.evicted_posts);
    qpack_u64(pk, "wal_bytes", c->ss->wal_bytes);
    qpack_u64(pk, "memory_allocated", c->ss->mem_allocated);
    qpack_u64(pk, "memory_resident", c->ss->mem_resident);
    qpack_u64(pk, "memory_rss", c->ss->mem_rss);
    qpack_u64(pk, "memory_limit", c->ss->max_memory);
    qpack_u64(pk, "refused_memory", c->ss->refused_memory);
    qpack_u64(pk, "wal_writable", c->ss->wal_err == 0);
    qpack_u64(pk, "refused_wal", c->ss->refused_wal);
    qpack_cstr(pk, "wal_error", c->ss->wal_err ? strerror(-c->ss->wal_err) : NULL);
    pack_pauses(pk, c->ss);
    qpack_u64(pk, "engine_bytes", st.bytes);
    qpack_u64(pk, "uptime_ms", c->ss->uptime_ms);
    qpack_cstr(pk, "version", CASCADE_VERSION);
    pack_snapshot_stats(pk, c->ss);
    if (c->ss->partitions) { /* a cluster node (DESIGN §9) */
        msgpack_pack_str(pk, 10);
        msgpack_pack_str_body(pk, "partitions", 10);
        msgpack_pack_array(pk, c->ss->npartitions);
        for (uint32_t i = 0; i < c->ss->npartitions; i++) {
            const struct rpc_partition *p = &c->ss->partitions[i];
            msgpack_pack_map(pk, 4);
            qpack_u64(pk, "partition", p->partition);
            qpack_u64(pk, "stream_seq", p->stream_seq);
            qpack_u64(pk, "applied_seq", p->applied_seq);
            qpack_u64(pk, "lag", p->lag);
        }
    }
}

/* ---------------------------------------------------------------- cascades */

static void pack_cascade_fields(msgpack_packer *pk, const struct engine_cascade *x)
{
    qpack_str(pk, "root", x->root, x->root_len);
    qpack_str(pk, "root_actor", x->root_actor, x->root_actor_len);
    qpack_str(pk, "content", x->content, x->content_len);
    qpack_str(pk, "label", x->label, x->label_len);
    qpack_u64(pk, "size", x->size);
    qpack_u64(pk, "missing", x->missing);
    qpack_u64(pk, "depth", x->depth);
    qpack_u64(pk, "max_breadth", x->max_breadth);
    qpack_f64(pk, "structural_virality", x->structural_virality);
    qpack_u64(pk, "wiener", x->wiener);
    qpack_u64(pk, "unique_actors", x->unique_actors);
    qpack_i64(pk, "first_ts", x->first_ts);
    qpack_i64(pk, "last_ts", x->last_ts);
    qpack_i64(pk, "duration_ms", x->duration_ms);
}

#define CASCADE_FIELDS 14

/* A cascade record, with one more field `extra` = v when extra is not NULL. */
static void pack_cascade(msgpack_packer *pk, const struct engine_cascade *x, const char *extra,
                         uint64_t v)
{
    msgpack_pack_map(pk, CASCADE_FIELDS + (extra ? 1 : 0));
    pack_cascade_fields(pk, x);
    if (extra)
        qpack_u64(pk, extra, v);
}

static const char *const kind_names[] = {"post", "share", "quote", "reply"};

struct nodes_ctx {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t n;
    int tree; /* tree nodes carry parent, kind, placeholder too */
};

static int pack_node(void *arg, const struct engine_node *nd)
{
    struct nodes_ctx *x = arg;
    msgpack_packer *pk = &x->pk;
    msgpack_pack_map(pk, x->tree ? 7 : 4);
    qpack_str(pk, "post", nd->post, nd->post_len);
    if (x->tree)
        qpack_str(pk, "parent", nd->parent, nd->parent_len);
    qpack_str(pk, "actor", nd->actor, nd->actor_len);
    qpack_i64(pk, "ts", nd->ts);
    qpack_u64(pk, "depth", nd->depth);
    if (x->tree) {
        qpack_cstr(pk, "kind", nd->placeholder ? NULL : kind_names[nd->kind & 3]);
        qpack_bool(pk, "placeholder", nd->placeholder);
    }
    x->n++;
    return 0;
}

static void nodes_init(struct nodes_ctx *x, int tree)
{
    memset(x, 0, sizeof(*x));
    msgpack_sbuffer_init(&x->sb);
    msgpack_packer_init(&x->pk, &x->sb, msgpack_sbuffer_write);
    x->tree = tree;
}

/* Appends the collected nodes as an array to c's result. */
static void nodes_flush(struct qcall *c, struct nodes_ctx *x)
{
    msgpack_pack_array(c->pk, x->n);
    if (x->sb.size)
        msgpack_sbuffer_write(c->pk->data, x->sb.data, x->sb.size);
    msgpack_sbuffer_destroy(&x->sb);
}

void handle_cascade(struct qcall *c)
{
    char buf[24];
    uint32_t len;
    const char *id = qcall_id(c, "post", buf, &len);
    struct engine_cascade x;
    if (engine_cascade(c->e, id, len, &x)) {
        qcall_fail(c, QERR_NOT_FOUND, "unknown post %.*s", SHOW(len), id);
        return;
    }
    if (!qcall_bool(c, "tree")) {
        pack_cascade(c->pk, &x, NULL, 0);
        return;
    }
    struct nodes_ctx nodes;
    nodes_init(&nodes, 1);
    uint32_t limit = (uint32_t)qcall_uint(c, "limit");
    int k = engine_tree(c->e, id, len, limit, pack_node, &nodes);
    if (k < 0) {
        msgpack_sbuffer_destroy(&nodes.sb);
        qcall_fail(c, QERR_INTERNAL, "out of memory while walking the tree");
        return;
    }
    msgpack_pack_map(c->pk, CASCADE_FIELDS + 2);
    pack_cascade_fields(c->pk, &x);
    qpack_bool(c->pk, "nodes_truncated", (uint64_t)nodes.n < (uint64_t)x.size + x.missing);
    qpack_key(c->pk, "nodes");
    nodes_flush(c, &nodes);
}

/* DESIGN §5: while the data holds no time before 1973, a positive time below 1973 as ms can only
 * be seconds since the epoch (since=1420070400 would silently mean January 1970): refused, with
 * the value it most likely stands for. 0 when every time parameter given is fine. */
static int refuse_seconds(struct qcall *c, const char *const *names)
{
    struct engine_stats st;
    engine_get_stats(c->e, &st);
    for (; *names; names++) {
        if (!qcall_has(c, *names))
            continue;
        int64_t v = qcall_int(c, *names);
        if (v > 0 && v < ENGINE_SECONDS_BELOW_MS && !st.old_ts) {
            qcall_fail(c, QERR_BAD_REQUEST,
                       "parameter %s=%lld is a time before 1973 in milliseconds, and the data "
                       "holds no such time: if it is seconds since the epoch, send %s=%lld000, "
                       "or an ISO 8601 time (2015-01-05, 2015-01-05T14:40:46Z)",
                       *names, (long long)v, *names, (long long)v);
            return -EINVAL;
        }
    }
    return 0;
}

static int cascade_filter(struct qcall *c, struct engine_cascade_filter *f)
{
    memset(f, 0, sizeof(*f));
    f->label = qcall_str(c, "label", &f->label_len);
    f->content = qcall_str(c, "content", &f->content_len);
    f->has_since = qcall_has(c, "since");
    f->since = qcall_int(c, "since");
    f->has_until = qcall_has(c, "until");
    f->until = qcall_int(c, "until");
    f->min_size = (uint32_t)qcall_uint(c, "min_size");
    return f->label || f->content || f->has_since || f->has_until || f->min_size;
}

void handle_top_cascades(struct qcall *c)
{
    uint32_t by_len;
    const char *by = qcall_str(c, "by", &by_len);
    uint32_t limit = (uint32_t)qcall_uint(c, "limit");
    if (qcall_has(c, "candidates")) { /* the cluster endpoint's: bounded by the cascades held */
        struct engine_stats st;
        engine_get_stats(c->e, &st);
        uint64_t want = qcall_uint(c, "candidates");
        limit = (uint32_t)(want < st.cascades ? want : st.cascades ? st.cascades : 1);
    }
    int growth = by && by_len == 6 && memcmp(by, "growth", 6) == 0;
    int metric = by && !growth ? engine_cascade_metric_parse(by, by_len) : ENGINE_BY_SIZE;
    if (!growth && qcall_has(c, "window_ms")) {
        qcall_fail(c, QERR_BAD_REQUEST, "parameter window_ms goes with by=growth");
        return;
    }
    static const char *const times[] = {"since", "until", NULL};
    if (refuse_seconds(c, times))
        return;
    struct engine_cascade_filter f;
    int filtered = cascade_filter(c, &f);
    struct engine_cascade *out = malloc((size_t)limit * sizeof(*out));
    int k = -ENOMEM;
    if (out && growth)
        k = engine_top_growth(c->e, (int64_t)qcall_uint(c, "window_ms"), filtered ? &f : NULL, out,
                              limit);
    else if (out)
        k = engine_top_cascades(c->e, metric, filtered ? &f : NULL, out, limit);
    if (k < 0) {
        free(out);
        struct engine_stats st;
        engine_get_stats(c->e, &st);
        if (k == -EINVAL && growth && st.retention_ms)
            qcall_fail(c, QERR_BAD_REQUEST,
                       "window_ms is longer than the server's --retention (%lld ms): the posts "
                       "before it are evicted",
                       (long long)st.retention_ms);
        else if (k == -EINVAL)
            qcall_fail(c, QERR_BAD_REQUEST, "bad top_cascades parameters");
        else
            qcall_fail(c, QERR_INTERNAL, "out of memory");
        return;
    }
    msgpack_pack_array(c->pk, (size_t)k);
    for (int i = 0; i < k; i++)
        pack_cascade(c->pk, &out[i], growth ? "growth" : NULL, out[i].growth);
    free(out);
}

/* ---------------------------------------------------------------- actors */

/* extra: one more key packed by the caller after the record's 13 */
static void pack_actor(const struct qcall *c, const struct engine_actor *a, int extra)
{
    msgpack_packer *pk = c->pk;
    double rank;
    uint64_t age;
    int has_rank = pagerank_of(c, a->id, &rank, &age) == 0;
    msgpack_pack_map(pk, 13 + (extra != 0));
    qpack_str(pk, "id", a->name, a->name_len);
    qpack_cstr(pk, "actor_type", a->actor_type == EVENT_ACTOR_PAGE ? "page" : "account");
    qpack_u64(pk, "posts", a->posts);
    qpack_u64(pk, "roots", a->roots);
    qpack_u64(pk, "shares", a->shares);
    qpack_u64(pk, "reshares_received", a->reshares_received);
    qpack_u64(pk, "amplifiers", a->amplifiers);
    qpack_u64(pk, "reach", a->reach);
    qpack_u64(pk, "cascades", a->cascades);
    qpack_i64(pk, "first_ts", a->first_ts);
    qpack_i64(pk, "last_ts", a->last_ts);
    /* nil until the analytics worker has computed a snapshot that holds this actor */
    qpack_key(pk, "pagerank");
    if (has_rank)
        msgpack_pack_double(pk, rank);
    else
        msgpack_pack_nil(pk);
    qpack_key(pk, "pagerank_age_ms");
    if (has_rank)
        msgpack_pack_uint64(pk, age);
    else
        msgpack_pack_nil(pk);
}

/* The error of an actor query that returned rc < 0. */
static void actor_failed(struct qcall *c, int rc, const char *id, uint32_t len)
{
    if (rc == -ENOENT)
        qcall_fail(c, QERR_NOT_FOUND, "unknown actor %.*s", SHOW(len), id);
    else
        qcall_fail(c, QERR_INTERNAL, "out of memory");
}

void handle_actor(struct qcall *c)
{
    char buf[24];
    uint32_t len;
    const char *id = qcall_id(c, "id", buf, &len);
    struct engine_actor a;
    int rc = engine_actor(c->e, id, len, &a);
    if (rc) {
        actor_failed(c, rc, id, len);
        return;
    }
    if (!qcall_bool(c, "amplifier_ids")) {
        pack_actor(c, &a, 0);
        return;
    }
    /* the amplifiers are the in-links (who reshared its posts, itself aside): all of them */
    struct engine_link *in = malloc(((size_t)a.amplifiers + 1) * sizeof(*in));
    int k = in ? engine_actor_links(c->e, id, len, ENGINE_LINK_IN, a.amplifiers + 1, in) : -ENOMEM;
    if (k < 0) {
        free(in);
        actor_failed(c, k, id, len);
        return;
    }
    pack_actor(c, &a, 1);
    qpack_key(c->pk, "amplifier_ids");
    msgpack_pack_array(c->pk, (size_t)k);
    for (int i = 0; i < k; i++)
        qpack_strv(c->pk, in[i].actor, in[i].actor_len);
    free(in);
}

static const char *const link_dir_names[] = {NULL, "in", "out", "both"};

void handle_actor_links(struct qcall *c)
{
    char buf[24];
    uint32_t len, dlen;
    const char *id = qcall_id(c, "id", buf, &len);
    const char *dir = qcall_str(c, "direction", &dlen);
    uint32_t limit = (uint32_t)qcall_uint(c, "limit");
    int dirs = ENGINE_LINK_BOTH;
    for (int d = ENGINE_LINK_IN; d <= ENGINE_LINK_BOTH; d++)
        if (dir && strlen(link_dir_names[d]) == dlen && memcmp(dir, link_dir_names[d], dlen) == 0)
            dirs = d;
    if (qcall_has(c, "candidates")) { /* the cluster endpoint's: all of them, which are at most
                                       * its amplifiers (in) and its shares (out) */
        struct engine_actor a;
        int rc = engine_actor(c->e, id, len, &a);
        if (rc) {
            actor_failed(c, rc, id, len);
            return;
        }
        uint64_t want = qcall_uint(c, "candidates"), most = a.amplifiers > a.shares ? a.amplifiers
                                                                                    : a.shares;
        limit = (uint32_t)(want < most ? want : most ? most : 1);
    }
    struct engine_link *out = malloc(2 * (size_t)limit * sizeof(*out));
    int k = out ? engine_actor_links(c->e, id, len, dirs, limit, out) : -ENOMEM;
    if (k < 0) {
        free(out);
        actor_failed(c, k, id, len);
        return;
    }
    msgpack_pack_array(c->pk, (size_t)k);
    for (int i = 0; i < k; i++) {
        msgpack_pack_map(c->pk, 5);
        qpack_cstr(c->pk, "direction", link_dir_names[out[i].direction]);
        qpack_str(c->pk, "actor", out[i].actor, out[i].actor_len);
        qpack_cstr(c->pk, "actor_type", out[i].actor_type == EVENT_ACTOR_PAGE ? "page" : "account");
        qpack_u64(c->pk, "weight", out[i].weight);
        qpack_u64(c->pk, "reach", out[i].reach);
    }
    free(out);
}

void handle_actor_cascades(struct qcall *c)
{
    char buf[24];
    uint32_t len;
    const char *id = qcall_id(c, "id", buf, &len);
    uint32_t limit = (uint32_t)qcall_uint(c, "limit");
    struct engine_actor_cascade *out = malloc((size_t)limit * sizeof(*out));
    int k = out ? engine_actor_cascades(c->e, id, len, out, limit) : -ENOMEM;
    if (k < 0) {
        free(out);
        actor_failed(c, k, id, len);
        return;
    }
    msgpack_pack_array(c->pk, (size_t)k);
    for (int i = 0; i < k; i++)
        pack_cascade(c->pk, &out[i].cascade, "actor_posts", out[i].actor_posts);
    free(out);
}

void handle_top_actors(struct qcall *c)
{
    uint32_t by_len, t_len;
    const char *by = qcall_str(c, "by", &by_len);
    const char *type = qcall_str(c, "actor_type", &t_len);
    uint32_t limit = (uint32_t)qcall_uint(c, "limit");
    int pagerank = by && by_len == 8 && memcmp(by, "pagerank", 8) == 0;
    int metric = by && !pagerank ? engine_actor_metric_parse(by, by_len) : ENGINE_BY_REACH;
    int atype = !type ? 0 : t_len == 4 ? EVENT_ACTOR_PAGE : EVENT_ACTOR_ACCOUNT;
    if (qcall_has(c, "candidates")) { /* the cluster endpoint's: bounded by the actors held */
        struct engine_stats st;
        engine_get_stats(c->e, &st);
        uint64_t want = qcall_uint(c, "candidates");
        limit = (uint32_t)(want < st.actors ? want : st.actors ? st.actors : 1);
    }
    struct engine_actor *out = malloc((size_t)limit * sizeof(*out));
    int k = !out       ? -ENOMEM
            : pagerank ? top_by_pagerank(c, atype, out, limit)
                       : engine_top_actors(c->e, metric, atype, out, limit);
    if (k < 0) {
        free(out);
        if (!c->code)
            qcall_fail(c, QERR_INTERNAL, "out of memory");
        return;
    }
    msgpack_pack_array(c->pk, (size_t)k);
    for (int i = 0; i < k; i++)
        pack_actor(c, &out[i], 0);
    free(out);
}

/* ---------------------------------------------------------------- content, path */

void handle_content(struct qcall *c)
{
    uint32_t len;
    const char *key = qcall_str(c, "key", &len);
    uint32_t limit = (uint32_t)qcall_uint(c, "limit");
    struct engine_content ct;
    struct engine_cascade *top = malloc((size_t)limit * sizeof(*top));
    int k = top ? engine_content(c->e, key, len, &ct, top, limit) : -ENOMEM;
    if (k < 0) {
        free(top);
        if (k == -ENOENT)
            qcall_fail(c, QERR_NOT_FOUND, "no post carries content %.*s", SHOW(len), key);
        else
            qcall_fail(c, QERR_INTERNAL, "out of memory");
        return;
    }
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 7);
    qpack_str(pk, "key", key, len);
    qpack_u64(pk, "posts", ct.posts);
    qpack_u64(pk, "cascades", ct.cascades);
    qpack_u64(pk, "unique_actors", ct.unique_actors);
    qpack_i64(pk, "first_ts", ct.first_ts);
    qpack_i64(pk, "last_ts", ct.last_ts);
    qpack_key(pk, "top_cascades");
    msgpack_pack_array(pk, (size_t)k);
    for (int i = 0; i < k; i++)
        pack_cascade(pk, &top[i], NULL, 0);
    free(top);
}

void handle_path(struct qcall *c)
{
    char buf[24];
    uint32_t len;
    const char *id = qcall_id(c, "post", buf, &len);
    struct nodes_ctx nodes;
    nodes_init(&nodes, 0);
    if (engine_path(c->e, id, len, pack_node, &nodes) < 0) {
        msgpack_sbuffer_destroy(&nodes.sb);
        qcall_fail(c, QERR_NOT_FOUND, "unknown post %.*s", SHOW(len), id);
        return;
    }
    nodes_flush(c, &nodes);
}

/* ---------------------------------------------------------------- labels */

/* A figure that may be undefined (NAN): nil then. */
static void qpack_f64_or_nil(msgpack_packer *pk, const char *k, double v)
{
    qpack_key(pk, k);
    if (isnan(v))
        msgpack_pack_nil(pk);
    else
        msgpack_pack_double(pk, v);
}

static void pack_dist(msgpack_packer *pk, const char *metric, const struct engine_dist *d)
{
    char key[64];
    snprintf(key, sizeof(key), "%s_mean", metric);
    qpack_f64(pk, key, d->mean);
    snprintf(key, sizeof(key), "%s_sd", metric); /* nil for one cascade: n - 1 = 0 */
    qpack_f64_or_nil(pk, key, d->sd);
    snprintf(key, sizeof(key), "%s_median", metric);
    qpack_f64(pk, key, d->median);
    snprintf(key, sizeof(key), "%s_p90", metric);
    qpack_f64(pk, key, d->p90);
    snprintf(key, sizeof(key), "%s_max", metric);
    qpack_f64(pk, key, d->max);
}

void handle_labels(struct qcall *c)
{
    struct engine_label_summary *ls;
    uint32_t n;
    if (engine_labels(c->e, &ls, &n)) {
        qcall_fail(c, QERR_INTERNAL, "out of memory");
        return;
    }
    msgpack_pack_array(c->pk, n);
    for (uint32_t i = 0; i < n; i++) {
        msgpack_pack_map(c->pk, 3 + 5 * ENGINE_LABEL_METRICS);
        qpack_str(c->pk, "label", ls[i].label, ls[i].label_len);
        qpack_u64(c->pk, "cascades", ls[i].cascades);
        for (int m = 0; m < ENGINE_LABEL_METRICS; m++)
            pack_dist(c->pk, engine_label_metric_name(m), &ls[i].dist[m]);
        qpack_f64(c->pk, "duration_ms_median", ls[i].duration_median);
    }
    free(ls);
}

/* labels_matched's result for a and b from mm (the cluster endpoint packs its merge with it). */
void pack_labels_matched(msgpack_packer *pk, const char *a, uint32_t alen, const char *b,
                         uint32_t blen, const struct matched_metric *mm)
{
    msgpack_pack_array(pk, MATCHED_METRICS);
    for (int m = 0; m < MATCHED_METRICS; m++) {
        const struct matched_metric *x = &mm[m];
        msgpack_pack_map(pk, 14);
        qpack_cstr(pk, "metric", x->metric);
        qpack_str(pk, "a", a, alen);
        qpack_str(pk, "b", b, blen);
        qpack_u64(pk, "a_cascades", x->n_a);
        qpack_u64(pk, "b_cascades", x->n_b);
        qpack_u64(pk, "strata", x->strata);
        qpack_u64(pk, "cascades", x->cascades);
        qpack_f64_or_nil(pk, "z_matched", x->z);
        qpack_f64_or_nil(pk, "p_matched", x->p);
        qpack_f64_or_nil(pk, "z_unmatched", x->z_all);
        qpack_f64_or_nil(pk, "p_unmatched", x->p_all);
        qpack_f64_or_nil(pk, "median_a", x->median_a);
        qpack_f64_or_nil(pk, "median_b", x->median_b);
        qpack_key(pk, "by_stratum");
        msgpack_pack_array(pk, x->strata);
        for (uint32_t s = 0; s < x->strata; s++) {
            const struct matched_stratum *st = &x->by[s];
            msgpack_pack_map(pk, 7);
            qpack_u64(pk, "stratum", (uint64_t)st->stratum);
            qpack_u64(pk, "size_from", 1ull << st->stratum);
            qpack_u64(pk, "size_to", (2ull << st->stratum) - 1);
            qpack_u64(pk, "a_cascades", st->n_a);
            qpack_u64(pk, "b_cascades", st->n_b);
            qpack_f64(pk, "median_a", st->median_a);
            qpack_f64(pk, "median_b", st->median_b);
        }
    }
}

void handle_labels_matched(struct qcall *c)
{
    uint32_t alen, blen;
    const char *a = qcall_str(c, "a", &alen), *b = qcall_str(c, "b", &blen); /* or defaults */
    struct engine_labeled *v;
    size_t n;
    struct matched_metric mm[MATCHED_METRICS];
    if (engine_labeled(c->e, a, alen, b, blen, &v, &n) || matched_compare(v, n, mm)) {
        free(v);
        qcall_fail(c, QERR_INTERNAL, "out of memory");
        return;
    }
    free(v);
    pack_labels_matched(c->pk, a, alen, b, blen, mm);
    matched_free(mm);
}
