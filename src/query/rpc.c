/* msgpack-RPC dispatch (see rpc.h): unpack a request, find its method, pack the answer. Every
 * malformed request gets an error response with a message; nothing here trusts the request. */
#include "query/rpc.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RPC_MAX_REQUEST (1u << 20)

struct rpc_call {
    struct engine *e;
    const struct rpc_server_stats *ss;
    const msgpack_object_map *params; /* NULL when none */
    msgpack_packer *pk;
    char err[256];
    int code; /* 0 ok; else 400 (bad params) or 404 (unknown id / method) */
};

/* ---------------------------------------------------------------- packing helpers */

static void pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    pack_str(pk, k, strlen(k));
}

static void pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    pack_key(pk, k);
    msgpack_pack_uint64(pk, v);
}

static void pack_kv_i64(msgpack_packer *pk, const char *k, int64_t v)
{
    pack_key(pk, k);
    msgpack_pack_int64(pk, v);
}

static void pack_kv_str(msgpack_packer *pk, const char *k, const char *s, size_t len)
{
    pack_key(pk, k);
    if (s)
        pack_str(pk, s, len);
    else
        msgpack_pack_nil(pk);
}

/* ---------------------------------------------------------------- params */

/* The value of param `key`, or NULL when absent (the last one wins). */
static const msgpack_object *find_param(const struct rpc_call *c, const char *key)
{
    const msgpack_object *v = NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; c->params && i < c->params->size; i++) {
        const msgpack_object *k = &c->params->ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            memcmp(k->via.str.ptr, key, klen) == 0)
            v = &c->params->ptr[i].val;
    }
    return v;
}

/* The id param `key` as canonical bytes (an unsigned int becomes its decimal string). */
static int param_id(struct rpc_call *c, const char *key, char *buf, size_t cap, const char **s,
                    uint32_t *len)
{
    const msgpack_object *v = find_param(c, key);
    if (v && v->type == MSGPACK_OBJECT_STR && v->via.str.size > 0 &&
        v->via.str.size <= EVENT_ID_MAX) {
        *s = v->via.str.ptr;
        *len = v->via.str.size;
        return 0;
    }
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *len = (uint32_t)snprintf(buf, cap, "%" PRIu64, v->via.u64);
        *s = buf;
        return 0;
    }
    if (v)
        snprintf(c->err, sizeof(c->err),
                 "parameter %s must be a non-empty string of at most %d bytes or an unsigned "
                 "integer",
                 key, EVENT_ID_MAX);
    else
        snprintf(c->err, sizeof(c->err), "missing parameter %s", key);
    c->code = 400;
    return -EINVAL;
}

/* ---------------------------------------------------------------- methods */

static void m_stats(struct rpc_call *c)
{
    struct engine_stats st;
    engine_get_stats(c->e, &st);
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 12);
    pack_kv_u64(pk, "posts", st.posts);
    pack_kv_u64(pk, "placeholders", st.placeholders);
    pack_kv_u64(pk, "cascades", st.cascades);
    pack_kv_u64(pk, "actors", st.actors);
    pack_kv_u64(pk, "edges", st.edges);
    pack_kv_u64(pk, "accepted", st.outcomes[EVENT_OK]);
    pack_kv_u64(pk, "duplicate", st.outcomes[EVENT_DUP]);
    pack_key(pk, "rejected");
    msgpack_pack_map(pk, EVENT_REJ_LAST - EVENT_REJ_FIRST + 1);
    for (int r = EVENT_REJ_FIRST; r <= EVENT_REJ_LAST; r++)
        pack_kv_u64(pk, event_outcome_name(r), st.outcomes[r]);
    pack_kv_u64(pk, "wal_bytes", c->ss->wal_bytes);
    pack_kv_u64(pk, "engine_bytes", st.bytes);
    pack_kv_u64(pk, "uptime_ms", c->ss->uptime_ms);
    pack_kv_u64(pk, "errors", st.outcomes[EVENT_ERR_NOMEM]);
}

static void pack_cascade(msgpack_packer *pk, const struct engine_cascade *x)
{
    msgpack_pack_map(pk, 15);
    pack_kv_str(pk, "root", x->root, x->root_len);
    pack_kv_str(pk, "root_actor", x->root_actor, x->root_actor_len);
    pack_kv_str(pk, "content", x->content, x->content_len);
    pack_kv_str(pk, "label", x->label, x->label_len);
    pack_kv_u64(pk, "size", x->size);
    pack_kv_u64(pk, "missing", x->missing);
    pack_kv_u64(pk, "depth", x->depth);
    pack_kv_u64(pk, "max_breadth", x->max_breadth);
    pack_key(pk, "structural_virality");
    msgpack_pack_double(pk, x->structural_virality);
    pack_kv_u64(pk, "wiener", x->wiener);
    pack_kv_u64(pk, "unique_actors", x->unique_actors);
    pack_kv_i64(pk, "first_ts", x->first_ts);
    pack_kv_i64(pk, "last_ts", x->last_ts);
    pack_kv_i64(pk, "duration_ms", x->duration_ms);
    pack_kv_u64(pk, "id", x->id);
}

static void m_cascade(struct rpc_call *c)
{
    char buf[24];
    const char *id;
    uint32_t len;
    if (param_id(c, "post", buf, sizeof(buf), &id, &len))
        return;
    struct engine_cascade x;
    if (engine_cascade(c->e, id, len, &x)) {
        snprintf(c->err, sizeof(c->err), "unknown post %.*s", (int)len, id);
        c->code = 404;
        return;
    }
    pack_cascade(c->pk, &x);
}

static void pack_actor(msgpack_packer *pk, const struct engine_actor *a)
{
    msgpack_pack_map(pk, 12);
    pack_kv_str(pk, "id", a->name, a->name_len);
    pack_kv_u64(pk, "posts", a->posts);
    pack_kv_u64(pk, "roots", a->roots);
    pack_kv_u64(pk, "shares", a->shares);
    pack_kv_u64(pk, "reshares_received", a->reshares_received);
    pack_kv_u64(pk, "amplifiers", a->amplifiers);
    pack_kv_u64(pk, "reach", a->reach);
    pack_kv_u64(pk, "cascades", a->cascades);
    pack_kv_i64(pk, "first_ts", a->first_ts);
    pack_kv_i64(pk, "last_ts", a->last_ts);
    const char *type = a->actor_type == EVENT_ACTOR_PAGE ? "page" : "account";
    pack_kv_str(pk, "actor_type", type, strlen(type));
    pack_kv_str(pk, "pagerank", NULL, 0);
}

static void m_actor(struct rpc_call *c)
{
    char buf[24];
    const char *id;
    uint32_t len;
    if (param_id(c, "id", buf, sizeof(buf), &id, &len))
        return;
    struct engine_actor a;
    if (engine_actor(c->e, id, len, &a)) {
        snprintf(c->err, sizeof(c->err), "unknown actor %.*s", (int)len, id);
        c->code = 404;
        return;
    }
    pack_actor(c->pk, &a);
}

/* The string param `key`, or NULL when absent; -EINVAL (with the error set) when not a string. */
static int param_str(struct rpc_call *c, const char *key, const char **s, uint32_t *len)
{
    const msgpack_object *v = find_param(c, key);
    *s = NULL;
    *len = 0;
    if (!v)
        return 0;
    if (v->type != MSGPACK_OBJECT_STR) {
        snprintf(c->err, sizeof(c->err), "parameter %s must be a string", key);
        c->code = 400;
        return -EINVAL;
    }
    *s = v->via.str.ptr;
    *len = v->via.str.size;
    return 0;
}

/* The unsigned param `key` in [1, max], def when absent. */
static int param_limit(struct rpc_call *c, const char *key, uint32_t def, uint32_t max,
                       uint32_t *out)
{
    const msgpack_object *v = find_param(c, key);
    *out = def;
    if (!v)
        return 0;
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 == 0 || v->via.u64 > max) {
        snprintf(c->err, sizeof(c->err), "parameter %s must be an integer from 1 to %u", key, max);
        c->code = 400;
        return -EINVAL;
    }
    *out = (uint32_t)v->via.u64;
    return 0;
}

static void m_top_cascades(struct rpc_call *c)
{
    const char *by;
    uint32_t by_len, limit;
    if (param_str(c, "by", &by, &by_len) || param_limit(c, "limit", 10, 1000, &limit))
        return;
    int metric = by ? engine_cascade_metric_parse(by, by_len) : ENGINE_BY_SIZE;
    if (metric < 0) {
        snprintf(c->err, sizeof(c->err),
                 "by must be one of size, depth, max_breadth, "
                 "structural_virality, unique_actors, last_ts");
        c->code = 400;
        return;
    }
    struct engine_cascade *out = malloc(limit * sizeof(*out));
    int k = out ? engine_top_cascades(c->e, metric, NULL, out, limit) : -ENOMEM;
    if (k < 0) {
        snprintf(c->err, sizeof(c->err), "out of memory");
        c->code = 500;
        free(out);
        return;
    }
    msgpack_pack_array(c->pk, (size_t)k);
    for (int i = 0; i < k; i++)
        pack_cascade(c->pk, &out[i]);
    free(out);
}

static void m_top_actors(struct rpc_call *c)
{
    const char *by;
    uint32_t by_len, limit;
    if (param_str(c, "by", &by, &by_len) || param_limit(c, "limit", 10, 1000, &limit))
        return;
    int metric = by ? engine_actor_metric_parse(by, by_len) : ENGINE_BY_REACH;
    if (metric < 0) {
        snprintf(c->err, sizeof(c->err),
                 "by must be one of reach, reshares_received, amplifiers, posts");
        c->code = 400;
        return;
    }
    struct engine_actor *out = malloc(limit * sizeof(*out));
    int k = out ? engine_top_actors(c->e, metric, 0, out, limit) : -ENOMEM;
    if (k < 0) {
        snprintf(c->err, sizeof(c->err), "out of memory");
        c->code = 500;
        free(out);
        return;
    }
    msgpack_pack_array(c->pk, (size_t)k);
    for (int i = 0; i < k; i++)
        pack_actor(c->pk, &out[i]);
    free(out);
}

struct path_ctx {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t n;
};

static int path_node(void *arg, const struct engine_node *nd)
{
    struct path_ctx *p = arg;
    msgpack_pack_map(&p->pk, 4);
    pack_kv_str(&p->pk, "post", nd->post, nd->post_len);
    pack_kv_str(&p->pk, "actor", nd->actor, nd->actor_len);
    pack_kv_i64(&p->pk, "ts", nd->ts);
    pack_kv_u64(&p->pk, "depth", nd->depth);
    p->n++;
    return 0;
}

static void m_path(struct rpc_call *c)
{
    char buf[24];
    const char *id;
    uint32_t len;
    if (param_id(c, "post", buf, sizeof(buf), &id, &len))
        return;
    struct path_ctx p = {.n = 0};
    msgpack_sbuffer_init(&p.sb);
    msgpack_packer_init(&p.pk, &p.sb, msgpack_sbuffer_write);
    if (engine_path(c->e, id, len, path_node, &p) < 0) {
        snprintf(c->err, sizeof(c->err), "unknown post %.*s", (int)len, id);
        c->code = 404;
    } else {
        msgpack_pack_array(c->pk, p.n);
        msgpack_sbuffer_write(c->pk->data, p.sb.data, p.sb.size);
    }
    msgpack_sbuffer_destroy(&p.sb);
}

static const struct {
    const char *name;
    void (*fn)(struct rpc_call *c);
} methods[] = {
    {"stats", m_stats},           {"cascade", m_cascade},
    {"actor", m_actor},           {"top_cascades", m_top_cascades},
    {"top_actors", m_top_actors}, {"path", m_path},
};

/* ---------------------------------------------------------------- dispatch */

/* Checks the envelope; fills method/params or an error. */
static int parse_request(const msgpack_object *o, struct rpc_call *c, msgpack_object *msgid,
                         const msgpack_object_str **method)
{
    msgid->type = MSGPACK_OBJECT_NIL;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4 ||
        o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o->via.array.ptr[0].via.u64 != 0) {
        snprintf(c->err, sizeof(c->err), "a request is [0, msgid, method, [params]]");
        c->code = 400;
        return -EINVAL;
    }
    const msgpack_object *a = o->via.array.ptr;
    *msgid = a[1];
    if (a[2].type != MSGPACK_OBJECT_STR) {
        snprintf(c->err, sizeof(c->err), "the method must be a string");
        c->code = 400;
        return -EINVAL;
    }
    *method = &a[2].via.str;
    c->params = NULL;
    if (a[3].type == MSGPACK_OBJECT_ARRAY && a[3].via.array.size > 0) {
        if (a[3].via.array.ptr[0].type != MSGPACK_OBJECT_MAP) {
            snprintf(c->err, sizeof(c->err), "params must be [ {name: value, ...} ]");
            c->code = 400;
            return -EINVAL;
        }
        c->params = &a[3].via.array.ptr[0].via.map;
    } else if (a[3].type == MSGPACK_OBJECT_MAP) {
        c->params = &a[3].via.map;
    }
    return 0;
}

static void dispatch(struct rpc_call *c, const msgpack_object_str *method)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strlen(methods[i].name) == method->size &&
            memcmp(methods[i].name, method->ptr, method->size) == 0) {
            methods[i].fn(c);
            return;
        }
    }
    snprintf(c->err, sizeof(c->err),
             "unknown method %.*s (this server has: stats, cascade, actor, top_cascades, "
             "top_actors, path)",
             (int)(method->size > 64 ? 64 : method->size), method->ptr);
    c->code = 404;
}

static void pack_response(msgpack_packer *pk, const msgpack_object *msgid, const struct rpc_call *c,
                          const msgpack_sbuffer *result)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_object(pk, *msgid);
    if (c->code) {
        msgpack_pack_map(pk, 2);
        pack_kv_u64(pk, "code", (uint64_t)c->code);
        pack_kv_str(pk, "message", c->err, strlen(c->err));
        msgpack_pack_nil(pk);
    } else {
        msgpack_pack_nil(pk);
        msgpack_sbuffer_write(pk->data, result->data, result->size);
    }
}

int rpc_handle(struct engine *e, const struct rpc_server_stats *ss, const char *req, size_t len,
               char **resp, size_t *resp_len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    struct rpc_call c = {.e = e, .ss = ss};
    msgpack_object msgid = {.type = MSGPACK_OBJECT_NIL};
    const msgpack_object_str *method = NULL;
    msgpack_sbuffer result, out;
    msgpack_sbuffer_init(&result);
    msgpack_sbuffer_init(&out);
    msgpack_packer rpk, opk;
    msgpack_packer_init(&rpk, &result, msgpack_sbuffer_write);
    msgpack_packer_init(&opk, &out, msgpack_sbuffer_write);
    c.pk = &rpk;

    if (len > RPC_MAX_REQUEST ||
        msgpack_unpack_next(&u, req, len, NULL) != MSGPACK_UNPACK_SUCCESS) {
        snprintf(c.err, sizeof(c.err), "request is not one msgpack value of at most %u bytes",
                 RPC_MAX_REQUEST);
        c.code = 400;
    } else if (parse_request(&u.data, &c, &msgid, &method) == 0) {
        dispatch(&c, method);
    }
    pack_response(&opk, &msgid, &c, &result);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&result);
    if (!out.data)
        return -ENOMEM;
    *resp = out.data;
    *resp_len = out.size;
    return 0;
}
