/* The query port's session (DESIGN §5): msgpack-RPC requests, each checked by the header
 * scanner (core mpscan) before anything decodes it, handed to the writer in order as they came
 * and answered in order; with a token, the first request must be `auth` (answered here). A
 * request that breaks a limit or is not msgpack ends the connection after an error saying why.
 * The loop (loop.c) does the reading, sending, timers and closing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "net/loop_int.h"

#define QUERY_MAX_INFLIGHT 64
/* request bytes a query connection may have at the writer (each a copy of what it sent); the
 * first request is always taken, so one of --max-rpc-request-bytes still gets through */
#define QUERY_INFLIGHT_BYTES (4u << 20)
#define QIN_KEEP             (64u * 1024) /* a query connection's input buffer kept when empty */

/* A request's bytes are checked as they arrive, before msgpack-c sees any: against
 * --max-rpc-request-bytes and the limits the ingest port applies to a value (--max-array,
 * --max-map-keys, --max-depth, --max-string-bytes). Those may be set lower than the protocol
 * itself needs, since events need less: every request is [0, msgid, method, [{params}]], 4
 * elements, 3 levels deep, and `auth` carries a token of up to PROTO_AUTH_TOKEN_MAX bytes; the
 * limits never go below that. The least --max-map-keys (8) holds any method's parameters. */
void net_rpc_limits(const struct ingest_limits *in, uint32_t rpc_max, struct mpscan_limits *l)
{
    l->max_bytes = rpc_max;
    l->max_array = in->max_array > 4 ? in->max_array : 4;
    l->max_map = in->max_map;
    l->max_depth = in->max_depth > 3 ? in->max_depth : 3;
    l->max_str = in->max_str > PROTO_AUTH_TOKEN_MAX ? in->max_str : PROTO_AUTH_TOKEN_MAX;
    /* what the writer's msgpack-c may allocate for one request (1 MiB of nils in arrays: 24x) */
    l->max_cost = in->max_value_memory;
}

/* [1, msgid (or nil), {"code": code, "message": msg}, nil]: an RPC error answer. */
static void pack_rpc_error(msgpack_packer *pk, int has_id, uint64_t msgid, unsigned code,
                           const char *msg)
{
    const msgpack_object id = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = msgid};
    proto_rpc_error_pack(pk, has_id ? &id : NULL, code, msg);
}

/* Queues an RPC error answer (pack_rpc_error) on c. */
static void queue_rpc_error(struct conn *c, int has_id, uint64_t msgid, unsigned code,
                            const char *msg)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, c, net_pend_write);
    pack_rpc_error(&pk, has_id, msgid, code, msg);
}

/* Answers a query connection one last time and stops reading and parsing it. */
static void query_close(struct netloop *n, struct conn *c, unsigned code, const char *msg,
                        const char *why)
{
    if (msg)
        queue_rpc_error(c, 0, 0, code, msg);
    c->eof = 1;
    c->fatal = strdup(why); /* stops reading and parsing; NULL is ok */
    net_cancel_recv(n, c);
}

/* msgpack-RPC before authentication: the first request must be `auth` with the token; it and
 * anything else are answered here, not by the writer (nothing is in flight yet, so answers stay
 * in order). A wrong token or another method first ends the connection. req is one value the
 * scanner approved, so what msgpack-c allocates for it is bounded by len. */
static void query_auth(struct netloop *n, struct conn *c, const char *req, size_t len)
{
    static const msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int ok = msgpack_unpack_next(&u, req, len, NULL) == MSGPACK_UNPACK_SUCCESS;
    uint64_t msgid;
    enum proto_auth_result a =
        proto_auth_rpc_request(ok ? &u.data : &nil, n->token, n->token_len, &msgid);
    msgpack_unpacked_destroy(&u);
    if (a == PROTO_AUTH_OK) {
        c->authed = 1;
        msgpack_packer pk;
        msgpack_packer_init(&pk, c, net_pend_write);
        proto_auth_pack_rpc_ok(&pk, msgid);
        return;
    }
    net_auth_failed(n, c, a == PROTO_AUTH_WRONG ? "wrong token" : "no auth request first");
    queue_rpc_error(c, 1, msgid, 401,
                    a == PROTO_AUTH_WRONG ? "authentication failed: wrong token"
                                          : "authentication required: the first request must be "
                                            "[0, msgid, \"auth\", [{\"token\": TOKEN}]]");
    query_close(n, c, 0, NULL, "authentication failed");
}

/* The request at the front of qin broke a limit or is not msgpack: an error saying which (the
 * msgid is not known yet), counted, and the connection closed, since where the next request
 * would begin is unknown. */
static void query_refused(struct netloop *n, struct conn *c)
{
    static const char *const flag[] = {
        [MPSCAN_LIM_BYTES] = "--max-rpc-request-bytes",
        [MPSCAN_LIM_ARRAY] = "--max-array",
        [MPSCAN_LIM_MAP] = "--max-map-keys",
        [MPSCAN_LIM_DEPTH] = "--max-depth",
        [MPSCAN_LIM_STRING] = "--max-string-bytes",
        [MPSCAN_LIM_COST] = "--max-value-memory",
    };
    enum mpscan_violation v = c->qscan.violation;
    if (v == MPSCAN_LIM_NONE) {
        n->stats.malformed[PROM_PORT_RPC]++;
        query_close(n, c, 400, "malformed msgpack", "malformed request");
        return;
    }
    char what[128], msg[160];
    mpscan_describe(&c->qscan, what, sizeof(what));
    snprintf(msg, sizeof(msg), "%s (%s)", what, flag[v]);
    _Static_assert(PROM_LIM_RPC_MEMORY - PROM_LIM_RPC_REQUEST == MPSCAN_LIM_COST - MPSCAN_LIM_BYTES,
                   "prom's rpc limits follow mpscan's violations");
    n->stats.limits[PROM_LIM_RPC_REQUEST + (v - MPSCAN_LIM_BYTES)]++;
    log_msg(LOG_INFO, "rpc_refused", "conn=%u message=\"%s\"", net_conn_idx(n, c), msg);
    query_close(n, c, 413, msg, "request refused");
}

/* Hands on the complete requests received, in order, each checked by the scanner before
 * anything decodes it: the writer gets the bytes as they came (rpc_handle decodes them). A
 * client that does not read its answers gets no more requests handled (nor read, may_read)
 * once OUT_HIGH of them wait, as on the HTTP port, so it holds that much and the answers in
 * flight, not all it asked for. */
static void drain_query(struct netloop *n, struct conn *c)
{
    size_t off = 0;  /* where the request being scanned begins in qin */
    if (c->hclose) { /* a send failed: no answer can reach the peer any more */
        c->qbacklog = 0;
        sb_free(&c->qin);
        return;
    }
    /* requests already received are answered even after the peer half-closes (eof) */
    c->qbacklog = 1;
    while (!c->fatal && off < c->qin.n) {
        if (c->inflight >= QUERY_MAX_INFLIGHT || net_out_queued(c) >= OUT_HIGH ||
            (c->inflight && c->qbytes >= QUERY_INFLIGHT_BYTES))
            goto out;
        const char *req = c->qin.p + off;
        size_t avail = c->qin.n - off, used;
        size_t seen = (size_t)c->qscan.pos;
        enum mpscan_status st = mpscan_feed(&c->qscan, req + seen, avail - seen, &used);
        if (st == MPSCAN_MORE)
            break;
        if (st != MPSCAN_DONE) {
            query_refused(n, c);
            break;
        }
        size_t len = (size_t)c->qscan.pos;
        mpscan_reset(&c->qscan);
        off += len;
        if (n->token && !c->authed) {
            query_auth(n, c, req, len);
        } else {
            char *copy = malloc(len);
            if (copy)
                memcpy(copy, req, len);
            if (net_send_query(n, c, copy, len))
                query_close(n, c, 0, NULL, "out of memory"); /* drop the peer */
        }
    }
    c->qbacklog = 0;
out:
    sb_consume(&c->qin, off);
    if (c->qin.n == 0 && c->qin.cap > QIN_KEEP)
        sb_free(&c->qin); /* a large request is gone: give its buffer back */
}

/* A request past --max-rpc-request-bytes is refused once, by the scanner (drain_query). qin holds
 * at most the request being received and one recv's bytes: a query connection reads one buffer
 * at a time (arm_recv), and not while complete requests wait (may_read). */
static void rpc_feed(struct netloop *n, struct conn *c, const char *data, size_t len)
{
    if (c->qin.n + len > (size_t)n->rpc_max + 2 * BR_SIZE)
        drain_query(n, c);
    if (c->fatal)
        return;
    if (c->qin.n + len > (size_t)n->rpc_max + 2 * BR_SIZE) {
        log_msg(LOG_ERROR, "rpc_input_overflow", "conn=%u bytes=%zu", net_conn_idx(n, c), c->qin.n);
        query_close(n, c, 0, NULL, "input past its bound"); /* a bug if it happens: drop */
        return;
    }
    sb_append(&c->qin, data, len);
    if (c->qin.oom) {
        c->eof = 1; /* out of memory: drop the peer */
        net_cancel_recv(n, c);
    }
}

/* The writer's answer, queued as it is. */
static void rpc_complete(struct netloop *n, struct conn *c, struct batch *b)
{
    c->inflight--;
    c->qbytes -= b->req_len <= c->qbytes ? b->req_len : c->qbytes;
    c->active_ms = n->now;
    if (!b->resp || net_pend_append(c, b->resp, b->resp_len))
        c->eof = 1;
    else
        prom_observe(&n->stats.latency[PROM_PORT_RPC], net_now_ns() - b->start_ns);
    net_touch(n, c);
}

/* qbacklog: complete requests wait, reading more is no use. */
static int rpc_may_read(const struct netloop *n, const struct conn *c)
{
    return c->inflight < QUERY_MAX_INFLIGHT && net_out_queued(c) < OUT_HIGH && !c->qbacklog;
}

static int rpc_stop_read(const struct netloop *n, const struct conn *c)
{
    return 0;
}

/* Requests received before EOF are still answered. */
static int rpc_busy(const struct conn *c)
{
    return c->qbacklog;
}

static int rpc_handshake_waiting(const struct netloop *n, const struct conn *c)
{
    return n->token && !c->authed;
}

static void rpc_timeout(struct netloop *n, struct conn *c, int hs, const char *msg)
{
    query_close(n, c, 408, msg, "timed out");
}

static void rpc_refuse(struct strbuf *out, const char *why)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, net_strbuf_write);
    pack_rpc_error(&pk, 0, 0, 503, why);
}

static int rpc_open(struct netloop *n, struct conn *c)
{
    mpscan_init(&c->qscan, &n->rpc_lim);
    return 0;
}

static void rpc_free(struct conn *c)
{
    sb_free(&c->qin);
}

const struct net_session_ops net_session_rpc = {
    .name = "rpc",
    .handshake_what = "authentication",
    .recv_multishot = 0,
    .open = rpc_open,
    .free = rpc_free,
    .feed = rpc_feed,
    .drain = drain_query,
    .may_read = rpc_may_read,
    .stop_read = rpc_stop_read,
    .complete = rpc_complete,
    .busy = rpc_busy,
    .handshake_waiting = rpc_handshake_waiting,
    .timeout = rpc_timeout,
    .refuse = rpc_refuse,
};
