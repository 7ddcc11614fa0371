/* msgpack-RPC dispatch (see rpc.h): unpack a request, find its method, pack the answer. Every
 * malformed request gets an error response with a message; nothing here trusts the request. */
#include "query/rpc.h"

#include "cascade/proto.h"
#include "core/mpscan.h"
#include "query/handlers.h"
#include "query/method.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RPC_MAX_REQUEST (1u << 20)

struct rpc_call {
    const struct rpc_dispatch *d; /* NULL: the engine's handlers (query/method.c) */
    struct engine *e;
    const struct rpc_server_stats *ss;
    const msgpack_object_map *params; /* NULL when none */
    msgpack_packer *pk;
    char err[256];
    int code; /* 0 ok; else a QERR_* code */
};

/* ---------------------------------------------------------------- dispatch */

/* msgpack-c sizes a container's elements from its header, before it has seen them: a request of
 * a few bytes claiming 4 billion entries had it ask for ~100 GiB. The bytes given are all there
 * is, so the scanner, bounded by them, refuses any claim they cannot hold: what msgpack-c then
 * allocates is bounded by the request's size. 1 when the first value is complete. */
static int one_value(const char *req, size_t len)
{
    const struct mpscan_limits lim = {.max_bytes = len,
                                      .max_array = UINT32_MAX,
                                      .max_map = UINT32_MAX,
                                      .max_depth = MPSCAN_DEPTH_MAX,
                                      .max_str = UINT32_MAX};
    struct mpscan s;
    size_t used;
    mpscan_init(&s, &lim);
    return mpscan_feed(&s, req, len, &used) == MPSCAN_DONE;
}

/* Checks the envelope; fills method/params or an error. */
static int parse_request(const msgpack_object *o, struct rpc_call *c, msgpack_object *msgid,
                         const msgpack_object_str **method)
{
    msgid->type = MSGPACK_OBJECT_NIL;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4 ||
        o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o->via.array.ptr[0].via.u64 != 0) {
        snprintf(c->err, sizeof(c->err), "a request is [0, msgid, method, [params]]");
        c->code = QERR_BAD_REQUEST;
        return -EINVAL;
    }
    const msgpack_object *a = o->via.array.ptr;
    *msgid = a[1];
    if (a[2].type != MSGPACK_OBJECT_STR) {
        snprintf(c->err, sizeof(c->err), "the method must be a string");
        c->code = QERR_BAD_REQUEST;
        return -EINVAL;
    }
    *method = &a[2].via.str;
    c->params = NULL;
    if (a[3].type == MSGPACK_OBJECT_ARRAY && a[3].via.array.size > 0) {
        if (a[3].via.array.ptr[0].type != MSGPACK_OBJECT_MAP) {
            snprintf(c->err, sizeof(c->err), "params must be [ {name: value, ...} ]");
            c->code = QERR_BAD_REQUEST;
            return -EINVAL;
        }
        c->params = &a[3].via.array.ptr[0].via.map;
    } else if (a[3].type == MSGPACK_OBJECT_MAP) {
        c->params = &a[3].via.map;
    }
    return 0;
}

/* Checks every parameter against m's schema and fills the handler's view of them. */
static int bind_params(struct rpc_call *c, const struct qmethod *m, struct qcall *q)
{
    for (uint32_t i = 0; c->params && i < c->params->size; i++) {
        const msgpack_object *k = &c->params->ptr[i].key, *v = &c->params->ptr[i].val;
        const struct qparam *p = NULL;
        if (k->type == MSGPACK_OBJECT_STR)
            p = qmethod_param(m, k->via.str.ptr, k->via.str.size);
        if (!p) {
            snprintf(c->err, sizeof(c->err), "unknown parameter %.*s for %s (see its help)",
                     k->type == MSGPACK_OBJECT_STR
                         ? (int)(k->via.str.size > 64 ? 64 : k->via.str.size)
                         : 1,
                     k->type == MSGPACK_OBJECT_STR ? k->via.str.ptr : "?", m->name);
            c->code = QERR_BAD_REQUEST;
            return -EINVAL;
        }
        if (v->type == MSGPACK_OBJECT_NIL)
            continue; /* nil means absent: clients pass None for "no filter" */
        if (qparam_check(p, v, c->err, sizeof(c->err))) {
            c->code = QERR_BAD_REQUEST;
            return -EINVAL;
        }
        q->vals[p - m->params] = v; /* the last one wins */
    }
    for (uint32_t i = 0; i < m->nparams; i++) {
        if (m->params[i].required && !q->vals[i]) {
            snprintf(c->err, sizeof(c->err), "missing parameter %s for %s", m->params[i].name,
                     m->name);
            c->code = QERR_BAD_REQUEST;
            return -EINVAL;
        }
    }
    return 0;
}

static void dispatch(struct rpc_call *c, const msgpack_object_str *method)
{
    const struct qmethod *m = qmethod_find(method->ptr, method->size);
    qhandler_fn run = !m ? NULL : c->d ? c->d->handler(m) : qmethod_handler(m); /* none: unknown */
    if (!run) {
        snprintf(c->err, sizeof(c->err), "unknown method %.*s (methods: %s)",
                 (int)(method->size > 64 ? 64 : method->size), method->ptr, qmethod_names());
        c->code = QERR_NOT_FOUND;
        return;
    }
    struct qcall q = {.e = c->e, .ss = c->ss, .m = m, .pk = c->pk, .ctx = c->d ? c->d->ctx : NULL};
    if (bind_params(c, m, &q))
        return;
    run(&q);
    if (q.code) {
        c->code = q.code;
        memcpy(c->err, q.err, sizeof(c->err));
    }
}

static void pack_response(msgpack_packer *pk, const msgpack_object *msgid, const struct rpc_call *c,
                          const msgpack_sbuffer *result)
{
    if (c->code) {
        proto_rpc_error_pack(pk, msgid, (unsigned)c->code, c->err);
    } else {
        proto_rpc_response_head(pk, msgid);
        msgpack_sbuffer_write(pk->data, result->data, result->size);
    }
}

static int handle(const struct rpc_dispatch *d, struct engine *e, const struct rpc_server_stats *ss,
                  const char *req, size_t len, char **resp, size_t *resp_len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    struct rpc_call c = {.d = d, .e = e, .ss = ss};
    msgpack_object msgid = {.type = MSGPACK_OBJECT_NIL};
    const msgpack_object_str *method = NULL;
    msgpack_sbuffer result, out;
    msgpack_sbuffer_init(&result);
    msgpack_sbuffer_init(&out);
    msgpack_packer rpk, opk;
    msgpack_packer_init(&rpk, &result, msgpack_sbuffer_write);
    msgpack_packer_init(&opk, &out, msgpack_sbuffer_write);
    c.pk = &rpk;

    if (len > RPC_MAX_REQUEST || !one_value(req, len) ||
        msgpack_unpack_next(&u, req, len, NULL) != MSGPACK_UNPACK_SUCCESS) {
        snprintf(c.err, sizeof(c.err), "request is not one msgpack value of at most %u bytes",
                 RPC_MAX_REQUEST);
        c.code = QERR_BAD_REQUEST;
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

int rpc_handle(struct engine *e, const struct rpc_server_stats *ss, const char *req, size_t len,
               char **resp, size_t *resp_len)
{
    return handle(NULL, e, ss, req, len, resp, resp_len);
}

int rpc_handle_with(const struct rpc_dispatch *d, const char *req, size_t len, char **resp,
                    size_t *resp_len)
{
    return handle(d, NULL, NULL, req, len, resp, resp_len);
}
