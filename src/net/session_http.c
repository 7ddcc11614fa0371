/* The HTTP port's session (DESIGN §5): one request at a time per connection, parsed by
 * query/http.c; /v1/<method> becomes the same msgpack-RPC request the query port takes and its
 * answer is rendered as JSON, CSV, GraphML or DOT; /metrics asks the writer for `stats` and adds
 * the loop's figures; /healthz and the web view are answered here without the writer. The loop
 * (loop.c) does the reading, sending, timers and closing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/loop_int.h"
#include "query/http.h"
#include "query/web.h"

#define HTTP_IN_SOFT (32u * 1024) /* buffered HTTP input past which reading stops */

/* Queues one response (no body for HEAD) and records its latency; an answer that ends the
 * connection stops reading. Out of memory mid-response: the peer is dropped. */
static void http_respond(struct netloop *n, struct conn *c, int status, const char *ctype,
                         const char *body, size_t len, const char *extra)
{
    struct strbuf h = STRBUF_INIT;
    http_head(&h, status, ctype, len, c->hkeep, c->h10, extra);
    if (h.oom || net_pend_append(c, h.p, h.n) || (!c->hhead && net_pend_append(c, body, len)))
        c->hkeep = 0;
    sb_free(&h);
    prom_observe(&n->stats.latency[PROM_PORT_HTTP], net_now_ns() - c->t0_ns);
    if (!c->hkeep) {
        c->eof = c->hclose = 1;
        net_cancel_recv(n, c);
    }
}

/* extra: header lines, or NULL for those the status calls for */
static void http_error_with(struct netloop *n, struct conn *c, int status, const char *msg,
                            const char *extra)
{
    struct strbuf body = STRBUF_INIT;
    http_error_json(&body, status, msg);
    if (!extra)
        extra = status == 405   ? "Allow: GET, HEAD\r\n"
                : status == 401 ? "WWW-Authenticate: Bearer realm=\"cascaded\"\r\n"
                                : NULL;
    if (body.oom)
        c->hkeep = 0;
    http_respond(n, c, status, HTTP_JSON_TYPE, body.oom ? "" : body.p, body.n, extra);
    sb_free(&body);
}

static void http_error(struct netloop *n, struct conn *c, int status, const char *msg)
{
    http_error_with(n, c, status, msg, NULL);
}

/* Hands a request to the writer as a query batch, as the query port does; req is malloc'd and
 * taken over. */
static void http_send_query(struct netloop *n, struct conn *c, char *req, size_t len)
{
    if (net_send_query(n, c, req, len))
        http_error(n, c, 500, "out of memory");
}

static void http_metrics(struct netloop *n, struct conn *c)
{
    static const char stats_req[] = "\x94\x00\x00\xa5stats\x91\x80"; /* [0, 0, "stats", [{}]] */
    char *req = malloc(sizeof(stats_req) - 1);
    if (req)
        memcpy(req, stats_req, sizeof(stats_req) - 1);
    c->hmetrics = 1;
    http_send_query(n, c, req, sizeof(stats_req) - 1);
}

static void http_api(struct netloop *n, struct conn *c, const char *name, size_t name_len,
                     const char *query, size_t query_len)
{
    char msg[256];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int st = http_api_request(name, name_len, query, query_len, ++n->msgid, &sb, &c->api, msg,
                              sizeof(msg));
    if (st) {
        msgpack_sbuffer_destroy(&sb);
        http_error(n, c, st, msg);
        return;
    }
    c->hmetrics = 0;
    http_send_query(n, c, sb.data, sb.size);
}

static void http_bad_request(struct netloop *n, struct conn *c, int status)
{
    char msg[96];
    if (status == 414)
        snprintf(msg, sizeof(msg), "request target longer than %u bytes (--max-http-target-bytes)",
                 n->http.target_max);
    else if (status == 431)
        snprintf(msg, sizeof(msg),
                 "request line and headers longer than %u bytes (--max-http-head-bytes)",
                 n->http.head_max);
    else
        snprintf(msg, sizeof(msg), "%s",
                 status == 405   ? "only GET and HEAD are served (and POST on /v1/)"
                 : status == 413 ? "requests have no body here (POST neither: parameters go "
                                   "in the query string)"
                                 : "malformed HTTP request");
    if (status == 431 || status == 414 || status == 413)
        n->stats.limits[status == 431   ? PROM_LIM_HTTP_HEAD
                        : status == 414 ? PROM_LIM_HTTP_TARGET
                                        : PROM_LIM_HTTP_BODY]++;
    else if (status == 400)
        n->stats.malformed[PROM_PORT_HTTP]++;
    http_error(n, c, status, msg);
}

/* The web view's page and bundle, from the binary itself. */
static void http_web(struct netloop *n, struct conn *c, const char *path, size_t len)
{
    const struct web_asset *a = web_find(path, len);
    if (!a) {
        http_error(n, c, 404, "no such file in the web view (its page is at /)");
        return;
    }
    http_respond(n, c, 200, a->ctype, (const char *)a->data, a->len, WEB_EXTRA_HEADERS);
}

static int http_authorized(struct netloop *n, struct conn *c, const struct http_request *req)
{
    size_t tlen;
    const char *tok = proto_auth_bearer(req->authorization, req->authorization_len, &tlen);
    if (tok && proto_auth_token_equal(n->token, n->token_len, tok, tlen))
        return 1;
    net_auth_failed(n, c, tok ? "wrong token" : "no bearer token");
    http_error(n, c, 401,
               tok ? "authentication failed: wrong token"
                   : "authentication required: send the header Authorization: Bearer TOKEN");
    return 0;
}

static void http_dispatch(struct netloop *n, struct conn *c, const struct http_request *req)
{
    static const char ok[] = "ok\n";
    const char *name, *query;
    size_t name_len, query_len;
    if (req->status) {
        http_bad_request(n, c, req->status);
        return;
    }
    enum http_route route =
        http_route(req->target, req->target_len, &name, &name_len, &query, &query_len);
    char why[512];
    const char *extra;
    int st = http_screen(&n->http, req, route, name, name_len, query, query_len, why, sizeof(why),
                         &extra);
    if (st) { /* a foreign Host, or a verb the path does not take (query/http.h) */
        http_error_with(n, c, st, why, extra);
        return;
    }
    /* the page and /healthz hold no data: only the API and /metrics ask for the token */
    if (n->token && (route == HTTP_R_API || route == HTTP_R_METRICS) && !http_authorized(n, c, req))
        return;
    switch (route) {
    case HTTP_R_HEALTHZ:
        http_respond(n, c, 200, "text/plain; charset=utf-8", ok, sizeof(ok) - 1, NULL);
        break;
    case HTTP_R_METRICS:
        http_metrics(n, c);
        break;
    case HTTP_R_API:
        http_api(n, c, name, name_len, query, query_len);
        break;
    case HTTP_R_UI:
        http_web(n, c, name, name_len);
        break;
    default:
        http_error(n, c, 404, "no such path (the API is at /v1/<method>, also /metrics, /healthz)");
    }
}

/* Answers the requests received, in order, one at a time: the next is parsed only when the
 * previous one's answer is queued and the output has not piled up. */
static void drain_http(struct netloop *n, struct conn *c)
{
    struct http_request req;
    while (!c->hclose && c->inflight == 0 && net_out_queued(c) < OUT_HIGH &&
           http_in_next(c->hin, &req)) {
        c->hstarted = 1;
        c->hs_start = 0; /* the next head's wait starts when this answer is out (service) */
        c->t0_ns = net_now_ns();
        c->hkeep = (uint8_t)req.keep_alive;
        c->h10 = (uint8_t)req.http10;
        c->hhead = req.verb == HTTP_VERB_HEAD;
        http_dispatch(n, c, &req);
    }
}

static void http_answer_metrics(struct netloop *n, struct conn *c, const struct batch *b)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *stats = NULL;
    if (b->resp && msgpack_unpack_next(&u, b->resp, b->resp_len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 4 &&
        u.data.via.array.ptr[2].type == MSGPACK_OBJECT_NIL)
        stats = &u.data.via.array.ptr[3];
    struct strbuf body = STRBUF_INIT;
    prom_render(stats, &n->stats, &body);
    if (body.oom)
        http_error(n, c, 500, "out of memory");
    else
        http_respond(n, c, 200, PROM_CONTENT_TYPE, body.p, body.n, NULL);
    sb_free(&body);
    msgpack_unpacked_destroy(&u);
}

/* The writer's answer to the connection's request in flight. */
static void http_answer(struct netloop *n, struct conn *c, const struct batch *b)
{
    if (c->hclose)
        return;
    if (c->hmetrics) {
        http_answer_metrics(n, c, b);
        return;
    }
    struct strbuf body = STRBUF_INIT;
    const char *ctype;
    int st = http_api_render(&c->api, b->resp, b->resp_len, &body, &ctype);
    if (body.oom)
        http_error(n, c, 500, "out of memory");
    else
        http_respond(n, c, st, ctype, body.p ? body.p : "", body.n, NULL);
    sb_free(&body);
}

static void feed_http(struct netloop *n, struct conn *c, const char *data, size_t len)
{
    if (c->hclose || http_in_append(c->hin, data, len) == 0)
        return;
    /* full: what is at the front may be a head past its limit; parsed now rather than after
     * the whole batch of buffers, it is answered (431/414) instead of dropped */
    drain_http(n, c);
    if (c->hclose || http_in_append(c->hin, data, len) == 0)
        return;
    n->stats.limits[PROM_LIM_HTTP_BUFFER]++;
    c->eof = c->hclose = 1; /* far past the limits, or out of memory: drop the peer */
    net_cancel_recv(n, c);
}

static void http_complete(struct netloop *n, struct conn *c, struct batch *b)
{
    c->inflight--;
    http_answer(n, c, b);
    net_touch(n, c);
}

static int http_may_read(const struct netloop *n, const struct conn *c)
{
    return !c->hclose && http_in_buffered(c->hin) < HTTP_IN_SOFT;
}

static int http_stop_read(const struct netloop *n, const struct conn *c)
{
    return !net_may_read(n, c);
}

static int http_busy(const struct conn *c)
{
    return 0;
}

/* The first request head, or one begun once the last answer is out. */
static int http_handshake_waiting(const struct netloop *n, const struct conn *c)
{
    return c->inflight == 0 && net_out_queued(c) == 0 &&
           (!c->hstarted || http_in_buffered(c->hin) > 0);
}

/* No head in time: 408. Idle between requests: closed without a word, as clients expect of a
 * keep-alive connection. */
static void http_timeout(struct netloop *n, struct conn *c, int hs, const char *msg)
{
    if (hs) {
        c->hkeep = c->h10 = c->hhead = 0;
        c->t0_ns = net_now_ns();
        http_error(n, c, 408, msg);
    } else {
        c->eof = c->hclose = 1;
        net_cancel_recv(n, c);
    }
}

static void http_refuse(struct strbuf *out, const char *why)
{
    http_head(out, 503, "text/plain; charset=utf-8", strlen(why) + 1, 0, 0, "Retry-After: 1\r\n");
    sb_puts(out, why);
    sb_puts(out, "\n");
}

static int http_open(struct netloop *n, struct conn *c)
{
    return http_in_new(&n->http, &c->hin) ? -ENOMEM : 0;
}

static void http_free(struct conn *c)
{
    http_in_free(c->hin);
}

const struct net_session_ops net_session_http = {
    .name = "http",
    .handshake_what = "request head",
    .recv_multishot = 1,
    .open = http_open,
    .free = http_free,
    .feed = feed_http,
    .drain = drain_http,
    .may_read = http_may_read,
    .stop_read = http_stop_read,
    .complete = http_complete,
    .busy = http_busy,
    .handshake_waiting = http_handshake_waiting,
    .timeout = http_timeout,
    .refuse = http_refuse,
};
