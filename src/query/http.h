/* The HTTP port's protocol (DESIGN §5), apart from the event loop so that it can be unit-tested
 * and fuzzed: request parsing with Debian's http-parser under our own size limits, routing,
 * query strings turned into msgpack-RPC requests through the method table, the writer's answers
 * rendered as JSON, CSV, GraphML or DOT, and response heads. Nothing here does I/O. */
#ifndef QUERY_HTTP_H
#define QUERY_HTTP_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "cascade/schema.h"

#define HTTP_HEAD_MAX   (16u * 1024)   /* default: request line + headers of one request */
#define HTTP_TARGET_MAX (8u * 1024)    /* default: the request target (path and query string) */
#define HTTP_IN_MAX     (1024u * 1024) /* default: received, unparsed bytes; past it: dropped */

/* Bounds on what one connection may send (cascaded's --max-http-* flags), and the Host names
 * it may use (--http-allowed-hosts). */
struct http_limits {
    uint32_t head_max;   /* request line + headers: past it 431 */
    uint32_t target_max; /* path + query string: past it 414 (at most head_max) */
    uint32_t in_max;     /* unparsed bytes buffered: past it the peer is dropped */
    /* comma-separated host names served besides addresses and localhost, "*" for any; NULL or
     * "": none. Not copied: it must outlive every connection. */
    const char *allowed_hosts;
};

void http_limits_default(struct http_limits *l);
#define HTTP_PARAMS_MAX 32   /* key=value pairs in one query string */
#define HTTP_AUTH_MAX   1100 /* bytes kept of an Authorization header (longer: cut) */
#define HTTP_HOST_MAX   256  /* bytes kept of a Host header (longer: a name no list holds) */
#define HTTP_CTYPE_MAX  128  /* bytes kept of a Content-Type header (longer: cut) */

enum http_verb { HTTP_VERB_GET = 0, HTTP_VERB_HEAD, HTTP_VERB_OTHER, HTTP_VERB_POST };

/* One request, as http_in_next found it. */
struct http_request {
    int verb;
    int status;     /* 0: well formed; else the error status to answer (400, 405, 413, 414, 431) */
    int keep_alive; /* the connection may stay open after the answer */
    int http10;     /* an HTTP/1.0 client: keep-alive has to be said explicitly */
    const char *target; /* path and query string, valid until the next http_in_* call */
    size_t target_len;
    const char *authorization; /* the Authorization header's value (empty: none), as target */
    size_t authorization_len;
    const char *host; /* the Host header's value (empty: none), as target; HTTP_HOST_MAX + 1
                         bytes when it was longer */
    size_t host_len;
    const char *content_type; /* the Content-Type header's value (empty: none), as target */
    size_t content_type_len;
};

struct http_in;

/* Per-connection input: the bytes received and the parser's state, under lim (NULL: the
 * defaults; copied). 0 or -ENOMEM. */
int http_in_new(const struct http_limits *lim, struct http_in **out);
void http_in_free(struct http_in *h);
/* Buffers received bytes: 0, -ENOSPC past in_max (nothing added), -ENOMEM. */
int http_in_append(struct http_in *h, const char *data, size_t len);
/* Received bytes not yet parsed into a request. */
size_t http_in_buffered(const struct http_in *h);
/* Parses the next request out of the buffered bytes: 1 (req filled in), 0 (incomplete). After a
 * request whose answer closes the connection (!keep_alive), it returns 0 for good. */
int http_in_next(struct http_in *h, struct http_request *req);

enum http_route {
    HTTP_R_NOT_FOUND = 0,
    HTTP_R_HEALTHZ, /* /healthz */
    HTTP_R_METRICS, /* /metrics */
    HTTP_R_API,     /* /v1/<method> */
    HTTP_R_UI,      /* /, /ui, /ui/... and /assets/...: the web view (query/web.h) */
};

/* The route of a request target; for HTTP_R_API, *name gets the method name (raw bytes of the
 * path), for HTTP_R_UI the whole path, and for every route *query the query string after '?'
 * (maybe empty). */
enum http_route http_route(const char *target, size_t len, const char **name, size_t *name_len,
                           const char **query, size_t *query_len);

/* Percent-decodes in (form: '+' is a space, as in query strings) into out, which has room for
 * len bytes: the decoded length, or -EINVAL for a malformed %-escape. */
long http_pct_decode(const char *in, size_t len, char *out, int form);

/* What the request's verb and Host allow, once it parsed well and was routed (DESIGN §5):
 *  - a Host that is not an IP address, localhost or in lim->allowed_hosts: 421 (a page whose DNS
 *    name was rebound to this server's address names its own host; no Host at all: served);
 *  - a call that changes state (snapshot, analytics refresh=true) on GET or HEAD: 405, Allow: POST;
 *  - POST anywhere but /v1/: 405; POST without Content-Type: application/json (which an HTML form
 *    or a no-cors fetch from another site cannot send): 415. POST has no body (the parser answers
 *    413 to one) and takes its parameters in the query string, as GET does.
 * 0 to serve it, else the status to answer with a message for the user in msg and, for a 405,
 * the Allow header line in *extra. */
int http_screen(const struct http_limits *lim, const struct http_request *req,
                enum http_route route, const char *name, size_t name_len, const char *query,
                size_t query_len, char *msg, size_t msglen, const char **extra);

/* 1 when a Host header value (name or address, maybe with :port) is one lim serves. */
int http_host_allowed(const struct http_limits *lim, const char *host, size_t len);

/* Checks an --http-allowed-hosts list: 0, or -EINVAL with the reason in err. */
int http_hosts_check(const char *list, char *err, size_t errlen);

enum http_format { HTTP_FMT_JSON = 0, HTTP_FMT_CSV, HTTP_FMT_GRAPHML, HTTP_FMT_DOT };

/* An API call under way: what is needed to render the writer's answer. */
struct http_api {
    const struct qmethod *m;
    enum http_format fmt;
};

/* Builds the msgpack-RPC request for GET /v1/<name>?<query> into req (initialised by the
 * caller): 0, or the status to answer instead (400 bad parameter, 404 unknown method, 500 out
 * of memory) with a message for the user in msg. */
int http_api_request(const char *name, size_t name_len, const char *query, size_t query_len,
                     uint64_t msgid, msgpack_sbuffer *req, struct http_api *api, char *msg,
                     size_t msglen);

/* Renders the writer's answer (the bytes of [1, msgid, error, result]) into body: the status
 * (200, or the error's code: 400, 404, 503, 500), with *ctype the body's content type. A body
 * that could not be built for want of memory leaves body->oom set. */
int http_api_render(const struct http_api *api, const char *resp, size_t len, struct strbuf *body,
                    const char **ctype);

#define HTTP_JSON_TYPE "application/json"

/* {"error": {"code": status, "message": msg}} */
void http_error_json(struct strbuf *body, int status, const char *msg);

/* The status line and headers of a response with a body of body_len bytes; extra is more
 * header lines (each ending in \r\n) or NULL. */
void http_head(struct strbuf *out, int status, const char *ctype, size_t body_len, int keep_alive,
               int http10, const char *extra);
const char *http_reason(int status);

#endif
