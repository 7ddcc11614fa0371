/* The HTTP port's protocol (see http.h). http-parser does the byte-level work; this file adds
 * what it leaves to its user: a bound on each request's head enforced before anything grows,
 * one request at a time (the parser is paused at each message's end, so pipelined requests wait
 * in the buffer, in order), and the mapping between URLs and the method table. */
#include "query/http.h"

#include <errno.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cascade/format.h"

struct http_in {
    http_parser p;
    char *buf; /* received bytes; [off, len) not parsed yet */
    size_t off, len, cap;
    size_t head_len; /* bytes of the current request's head parsed so far */
    struct http_limits lim;
    char *target; /* lim.target_max bytes */
    size_t target_len;
    uint8_t headers_done, complete, saw_field, dead;
    /* the headers kept (Authorization, Host, Content-Type): a field's name is matched as it
     * arrives (maybe in pieces), then its value copied, up to a bound */
    char field[16];
    size_t field_len;
    uint8_t in_value, field_kind, nhost;
    char auth[HTTP_AUTH_MAX];
    size_t auth_len;
    char host[HTTP_HOST_MAX + 1];
    size_t host_len;
    char ctype[HTTP_CTYPE_MAX];
    size_t ctype_len;
    int status, verb, keep_alive, http10;
};

/* ---------------------------------------------------------------- parser callbacks */

static int on_message_begin(http_parser *p)
{
    struct http_in *h = p->data;
    h->target_len = 0;
    h->head_len = 0;
    h->headers_done = h->complete = h->saw_field = 0;
    h->status = 0;
    h->field_len = h->auth_len = h->host_len = h->ctype_len = 0;
    h->in_value = h->field_kind = h->nhost = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http_in *h = p->data;
    if (len > h->lim.target_max - h->target_len) {
        h->status = 414;
        h->keep_alive = 0;
        http_parser_pause(p, 1); /* the request is answered from here on; nothing more is read */
        return 0;
    }
    memcpy(h->target + h->target_len, at, len);
    h->target_len += len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_in *h = p->data;
    h->saw_field = 1;
    if (h->in_value) { /* a new field begins */
        h->in_value = 0;
        h->field_len = 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (h->field_len < sizeof(h->field))
            h->field[h->field_len] = (char)(at[i] | 0x20); /* ASCII lower case for letters */
        h->field_len++;
    }
    return 0;
}

enum { F_OTHER = 0, F_AUTH, F_HOST, F_CTYPE };

static int field_is(const struct http_in *h, const char *name)
{
    return h->field_len == strlen(name) && memcmp(h->field, name, h->field_len) == 0;
}

/* Appends a value's piece to buf, cut at cap bytes. */
static void keep(char *buf, size_t cap, size_t *used, const char *at, size_t len)
{
    size_t room = cap - *used;
    memcpy(buf + *used, at, len < room ? len : room);
    *used += len < room ? len : room;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_in *h = p->data;
    if (!h->in_value) {
        h->in_value = 1;
        h->field_kind = field_is(h, "authorization")  ? F_AUTH
                        : field_is(h, "host")         ? F_HOST
                        : field_is(h, "content-type") ? F_CTYPE
                                                      : F_OTHER;
        /* a repeated header: the last one counts, but for Host (two are a 400, RFC 9112 3.2) */
        if (h->field_kind == F_AUTH)
            h->auth_len = 0;
        else if (h->field_kind == F_HOST)
            h->nhost += h->nhost < 2;
        else if (h->field_kind == F_CTYPE)
            h->ctype_len = 0;
    }
    if (h->field_kind == F_AUTH)
        keep(h->auth, sizeof(h->auth), &h->auth_len, at, len);
    else if (h->field_kind == F_HOST)
        keep(h->host, sizeof(h->host), &h->host_len, at, len);
    else if (h->field_kind == F_CTYPE)
        keep(h->ctype, sizeof(h->ctype), &h->ctype_len, at, len);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct http_in *h = p->data;
    h->headers_done = 1;
    h->verb = p->method == HTTP_GET    ? HTTP_VERB_GET
              : p->method == HTTP_HEAD ? HTTP_VERB_HEAD
              : p->method == HTTP_POST ? HTTP_VERB_POST
                                       : HTTP_VERB_OTHER;
    h->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    h->http10 = p->http_major == 1 && p->http_minor == 0;
    /* the API has no request bodies (POST neither: its parameters are in the query string, as
     * GET's): rather than read one, answer and close */
    int body = (p->flags & F_CHUNKED) || (p->content_length > 0 && p->content_length != ULLONG_MAX);
    if (h->nhost > 1) {
        h->status = 400; /* which of two names is meant cannot be told */
        h->keep_alive = 0;
        http_parser_pause(p, 1);
    } else if (body) {
        h->status = h->verb == HTTP_VERB_OTHER ? 405 : 413;
        h->keep_alive = 0;
        http_parser_pause(p, 1);
    } else if (h->verb == HTTP_VERB_OTHER) {
        h->status = 405; /* well formed, so the connection can go on */
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct http_in *h = p->data;
    h->complete = 1;
    http_parser_pause(p, 1); /* one request at a time: the next waits for its turn */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

/* ---------------------------------------------------------------- input */

void http_limits_default(struct http_limits *l)
{
    l->head_max = HTTP_HEAD_MAX;
    l->target_max = HTTP_TARGET_MAX;
    l->in_max = HTTP_IN_MAX;
    l->allowed_hosts = NULL;
}

int http_in_new(const struct http_limits *lim, struct http_in **out)
{
    struct http_in *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    if (lim)
        h->lim = *lim;
    else
        http_limits_default(&h->lim);
    if (h->lim.target_max > h->lim.head_max)
        h->lim.target_max = h->lim.head_max;
    if (!(h->target = malloc(h->lim.target_max ? h->lim.target_max : 1))) {
        free(h);
        return -ENOMEM;
    }
    http_parser_init(&h->p, HTTP_REQUEST);
    h->p.data = h;
    *out = h;
    return 0;
}

void http_in_free(struct http_in *h)
{
    if (!h)
        return;
    free(h->buf);
    free(h->target);
    free(h);
}

int http_in_append(struct http_in *h, const char *data, size_t len)
{
    size_t live = h->len - h->off;
    if (len > h->lim.in_max - live)
        return -ENOSPC;
    if (h->off) {
        memmove(h->buf, h->buf + h->off, live);
        h->off = 0;
        h->len = live;
    }
    if (h->len + len > h->cap) {
        size_t cap = h->cap ? h->cap : 4096;
        while (cap < h->len + len)
            cap *= 2;
        char *b = realloc(h->buf, cap);
        if (!b)
            return -ENOMEM;
        h->buf = b;
        h->cap = cap;
    }
    memcpy(h->buf + h->len, data, len);
    h->len += len;
    return 0;
}

size_t http_in_buffered(const struct http_in *h)
{
    return h->len - h->off;
}

/* Hands out the request found (complete, or cut short by an error status). */
static int deliver(struct http_in *h, struct http_request *req)
{
    req->verb = h->verb;
    req->status = h->status;
    req->keep_alive = h->keep_alive;
    req->http10 = h->http10;
    req->target = h->target;
    req->target_len = h->target_len;
    req->authorization = h->auth;
    req->authorization_len = h->auth_len;
    req->host = h->host;
    req->host_len = h->host_len;
    req->content_type = h->ctype;
    req->content_type_len = h->ctype_len;
    if (!h->keep_alive || !h->complete)
        h->dead = 1; /* the answer closes the connection: the rest is never parsed */
    h->headers_done = h->complete = 0;
    h->head_len = 0;
    return 1;
}

static int fail(struct http_in *h, struct http_request *req, int status)
{
    h->status = status;
    h->keep_alive = 0;
    h->complete = 0;
    return deliver(h, req);
}

int http_in_next(struct http_in *h, struct http_request *req)
{
    if (h->dead)
        return 0;
    http_parser_pause(&h->p, 0);
    while (h->off < h->len) {
        size_t n = h->len - h->off;
        /* the head is parsed at most head_max bytes into it: a longer one is refused
         * before http-parser's own (much larger) limit comes into play */
        if (!h->headers_done && n > h->lim.head_max - h->head_len)
            n = h->lim.head_max - h->head_len;
        if (n == 0)
            return fail(h, req, h->saw_field ? 431 : 414);
        size_t got = http_parser_execute(&h->p, &settings, h->buf + h->off, n);
        if (!h->headers_done)
            h->head_len += got;
        h->off += got;
        enum http_errno e = HTTP_PARSER_ERRNO(&h->p);
        if (e == HPE_PAUSED)
            return deliver(h, req);
        if (e != HPE_OK || got < n)
            return fail(h, req, 400);
    }
    return 0;
}

/* ---------------------------------------------------------------- routing */

static int path_is(const char *p, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(p, lit, len) == 0;
}

enum http_route http_route(const char *target, size_t len, const char **name, size_t *name_len,
                           const char **query, size_t *query_len)
{
    const char *q = memchr(target, '?', len);
    size_t plen = q ? (size_t)(q - target) : len;
    *query = q ? q + 1 : target + len;
    *query_len = q ? len - plen - 1 : 0;
    *name = NULL;
    *name_len = 0;
    if (path_is(target, plen, "/healthz"))
        return HTTP_R_HEALTHZ;
    if (path_is(target, plen, "/metrics"))
        return HTTP_R_METRICS;
    if (plen > 4 && memcmp(target, "/v1/", 4) == 0) {
        if (memchr(target + 4, '/', plen - 4))
            return HTTP_R_NOT_FOUND;
        *name = target + 4;
        *name_len = plen - 4;
        return HTTP_R_API;
    }
    if (path_is(target, plen, "/") || path_is(target, plen, "/ui") ||
        (plen > 4 && memcmp(target, "/ui/", 4) == 0) ||
        (plen > 8 && memcmp(target, "/assets/", 8) == 0)) {
        *name = target;
        *name_len = plen;
        return HTTP_R_UI;
    }
    return HTTP_R_NOT_FOUND;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long http_pct_decode(const char *in, size_t len, char *out, int form)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '%') {
            if (i + 2 >= len)
                return -EINVAL;
            int hi = hexval(in[i + 1]);
            int lo = hexval(in[i + 2]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = form && in[i] == '+' ? ' ' : in[i];
        }
    }
    return (long)o;
}

/* ---------------------------------------------------------------- API requests */

static const char *const format_names[] = {"json", "csv", "graphml", "dot"};

static int set_format(struct http_api *api, const char *v, size_t len, char *msg, size_t msglen)
{
    for (int f = 0; f < 4; f++) {
        if (path_is(v, len, format_names[f])) {
            api->fmt = (enum http_format)f;
            return 0;
        }
    }
    snprintf(msg, msglen, "format must be one of json, csv, graphml, dot (got %.*s)",
             (int)(len > 32 ? 32 : len), v);
    return 400;
}

/* Splits and decodes the query string into ps (decoded bytes go to scratch, which has room for
 * qlen bytes: decoding never lengthens), taking `format` out. 0 or 400. */
static int parse_query(const char *query, size_t qlen, char *scratch, struct qtext_param *ps,
                       size_t *n, struct http_api *api, char *msg, size_t msglen)
{
    size_t i = 0;
    while (i < qlen) {
        const char *amp = memchr(query + i, '&', qlen - i);
        size_t end = amp ? (size_t)(amp - query) : qlen;
        const char *eq = memchr(query + i, '=', end - i);
        size_t kend = eq ? (size_t)(eq - query) : end;
        if (end > i) {
            long kl = http_pct_decode(query + i, kend - i, scratch, 1);
            long vl = kl < 0 ? -EINVAL
                      : eq   ? http_pct_decode(eq + 1, end - kend - 1, scratch + kl, 1)
                             : 0;
            if (kl < 0 || vl < 0) {
                snprintf(msg, msglen, "malformed %%-escape in the query string");
                return 400;
            }
            struct qtext_param p = {scratch, scratch + kl, (size_t)kl, (size_t)vl};
            scratch += kl + vl;
            if (path_is(p.key, p.key_len, "format")) {
                if (set_format(api, p.val, p.val_len, msg, msglen))
                    return 400;
            } else if (*n == HTTP_PARAMS_MAX) {
                snprintf(msg, msglen, "more than %u parameters", HTTP_PARAMS_MAX);
                return 400;
            } else {
                ps[(*n)++] = p;
            }
        }
        i = end + 1;
    }
    return 0;
}

/* GraphML and DOT draw the tree: the request asks for it whatever `tree` said. */
static int want_tree(struct http_api *api, struct qtext_param *ps, size_t *n, char *msg,
                     size_t msglen)
{
    if (api->fmt != HTTP_FMT_GRAPHML && api->fmt != HTTP_FMT_DOT)
        return 0;
    if (strcmp(api->m->name, "cascade") != 0) {
        snprintf(msg, msglen, "format %s is for cascade trees only", format_names[api->fmt]);
        return 400;
    }
    size_t k = 0;
    for (size_t i = 0; i < *n; i++)
        if (!path_is(ps[i].key, ps[i].key_len, "tree"))
            ps[k++] = ps[i];
    ps[k++] = (struct qtext_param){"tree", "true", 4, 4};
    *n = k;
    return 0;
}

int http_api_request(const char *name, size_t name_len, const char *query, size_t query_len,
                     uint64_t msgid, msgpack_sbuffer *req, struct http_api *api, char *msg,
                     size_t msglen)
{
    api->fmt = HTTP_FMT_JSON;
    api->m = qmethod_find(name, name_len);
    if (!api->m) {
        snprintf(msg, msglen, "unknown method %.*s (methods: %s)",
                 (int)(name_len > 64 ? 64 : name_len), name, qmethod_names());
        return 404;
    }
    struct qtext_param ps[HTTP_PARAMS_MAX + 1];
    size_t n = 0;
    char *scratch = malloc(query_len + 1);
    if (!scratch) {
        snprintf(msg, msglen, "out of memory");
        return 500;
    }
    int st = parse_query(query, query_len, scratch, ps, &n, api, msg, msglen);
    if (!st)
        st = want_tree(api, ps, &n, msg, msglen);
    if (!st) {
        int rc = qrequest_from_text(name, name_len, ps, n, msgid, req, msg, msglen);
        st = rc == 0 ? 0 : rc == -ENOENT ? 404 : rc == -ENOMEM ? 500 : 400;
        if (rc == -ENOMEM)
            snprintf(msg, msglen, "out of memory");
    }
    free(scratch);
    return st;
}

/* ---------------------------------------------------------------- what a request may do */

static int ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && strncasecmp(a, b, alen) == 0;
}

static void trim(const char **p, size_t *len)
{
    while (*len && (**p == ' ' || **p == '\t'))
        ++*p, --*len;
    while (*len && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t'))
        --*len;
}

static int is_ipv4(const char *s, size_t len)
{
    int parts = 0;
    size_t i = 0;
    while (parts < 4) {
        unsigned v = 0, digits = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && digits < 4)
            v = v * 10 + (unsigned)(s[i++] - '0'), digits++;
        if (digits == 0 || digits > 3 || v > 255)
            return 0;
        if (++parts < 4 && (i >= len || s[i++] != '.'))
            return 0;
    }
    return i == len;
}

/* [hex digits, colons and dots]: no DNS name looks like it. */
static int is_ipv6_literal(const char *s, size_t len)
{
    if (len < 4 || s[0] != '[' || s[len - 1] != ']' || !memchr(s, ':', len))
        return 0;
    for (size_t i = 1; i + 1 < len; i++)
        if (hexval(s[i]) < 0 && s[i] != ':' && s[i] != '.')
            return 0;
    return 1;
}

/* Calls fn on each trimmed entry of a comma-separated list until it returns non-zero. */
static int each_entry(const char *list, int (*fn)(const char *e, size_t len, const void *arg),
                      const void *arg)
{
    while (list && *list) {
        const char *comma = strchr(list, ',');
        size_t len = comma ? (size_t)(comma - list) : strlen(list);
        const char *e = list;
        size_t elen = len;
        trim(&e, &elen);
        int r = fn(e, elen, arg);
        if (r)
            return r;
        list += len + (comma != NULL);
    }
    return 0;
}

struct name {
    const char *p;
    size_t len;
};

static int entry_matches(const char *e, size_t len, const void *arg)
{
    const struct name *n = arg;
    return (len == 1 && e[0] == '*') || ieq(e, len, n->p, n->len);
}

/* A DNS-rebinding page reaches this server under a name its author controls, and the browser
 * sends that name as Host. An address or localhost cannot come from such a page (the browser
 * would hold them for another origin), so they are served; other names only when listed. */
int http_host_allowed(const struct http_limits *lim, const char *host, size_t len)
{
    trim(&host, &len);
    if (len == 0)
        return 1; /* no Host (HTTP/1.0, or empty): no browser sends that */
    if (len > HTTP_HOST_MAX)
        return 0;
    const char *end = host[0] == '[' ? memchr(host, ']', len) : memchr(host, ':', len);
    size_t nlen = !end ? len : host[0] == '[' ? (size_t)(end - host) + 1 : (size_t)(end - host);
    if (nlen == 0 || (nlen < len && host[nlen] != ':'))
        return 0;
    for (size_t i = nlen + 1; i < len; i++) /* the port */
        if (host[i] < '0' || host[i] > '9' || i - nlen > 5)
            return 0;
    if (nlen > 1 && host[nlen - 1] == '.' && host[0] != '[')
        nlen--; /* a fully qualified name's root dot */
    if (is_ipv4(host, nlen) || is_ipv6_literal(host, nlen) || ieq(host, nlen, "localhost", 9))
        return 1;
    struct name n = {host, nlen};
    return each_entry(lim->allowed_hosts, entry_matches, &n);
}

static int entry_bad(const char *e, size_t len, const void *arg)
{
    (void)arg;
    if (len == 1 && e[0] == '*')
        return 0;
    if (len == 0 || len > HTTP_HOST_MAX)
        return 1;
    if (is_ipv6_literal(e, len))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((e[i] >= 'a' && e[i] <= 'z') || (e[i] >= 'A' && e[i] <= 'Z') ||
              (e[i] >= '0' && e[i] <= '9') || e[i] == '.' || e[i] == '-' || e[i] == '_'))
            return 1;
    return 0;
}

int http_hosts_check(const char *list, char *err, size_t errlen)
{
    if (!list || !*list || each_entry(list, entry_bad, NULL)) {
        snprintf(err, errlen,
                 "--http-allowed-hosts takes host names separated by commas, without a port "
                 "(any port is served), or '*' for any host (got '%.100s')",
                 list ? list : "");
        return -EINVAL;
    }
    return 0;
}

/* application/json, with or without parameters (charset=utf-8). */
static int is_json_type(const char *v, size_t len)
{
    const char *semi = memchr(v, ';', len);
    size_t mlen = semi ? (size_t)(semi - v) : len;
    trim(&v, &mlen);
    return ieq(v, mlen, "application/json", 16);
}

/* Whether /v1/name?query would change state: *w gets the parameter that makes it so ("" when
 * every call does), or NULL. A query string that does not parse is left to http_api_request to
 * refuse. 0 or -ENOMEM. */
static int changes_state(const char *name, size_t name_len, const char *query, size_t query_len,
                         const char **w)
{
    const struct qmethod *m = qmethod_find(name, name_len);
    *w = NULL;
    if (!m)
        return 0;
    struct qtext_param ps[HTTP_PARAMS_MAX + 1];
    size_t n = 0;
    char msg[256];
    struct http_api api = {.m = m};
    char *scratch = malloc(query_len + 1);
    if (!scratch)
        return -ENOMEM;
    if (!parse_query(query, query_len, scratch, ps, &n, &api, msg, sizeof(msg)))
        *w = qmethod_changes_state(m, ps, n);
    free(scratch);
    return 0;
}

int http_screen(const struct http_limits *lim, const struct http_request *req,
                enum http_route route, const char *name, size_t name_len, const char *query,
                size_t query_len, char *msg, size_t msglen, const char **extra)
{
    *extra = NULL;
    if (!http_host_allowed(lim, req->host, req->host_len)) {
        const char *list = lim->allowed_hosts && *lim->allowed_hosts ? lim->allowed_hosts : NULL;
        snprintf(msg, msglen,
                 "Host %.*s%s is not a name this server answers to: it serves IP addresses, "
                 "localhost%s%s, so that a web page whose DNS name was pointed at this address "
                 "cannot read it; start cascaded with --http-allowed-hosts NAME,... naming the "
                 "host you use, or '*' for any",
                 (int)(req->host_len > 64 ? 64 : req->host_len), req->host,
                 req->host_len > 64 ? "..." : "", list ? " and --http-allowed-hosts " : "",
                 list ? list : "");
        return 421;
    }
    if (req->verb == HTTP_VERB_POST) {
        if (route != HTTP_R_API) {
            *extra = "Allow: GET, HEAD\r\n";
            snprintf(msg, msglen, "POST is for /v1/<method> only; this path takes GET and HEAD");
            return 405;
        }
        if (!is_json_type(req->content_type, req->content_type_len)) {
            snprintf(msg, msglen,
                     "POST needs the header Content-Type: application/json (a form on another "
                     "site cannot send it), and no body: the parameters go in the query string");
            return 415;
        }
        return 0;
    }
    const char *w = NULL;
    if (route == HTTP_R_API && changes_state(name, name_len, query, query_len, &w)) {
        snprintf(msg, msglen, "out of memory");
        return 500;
    }
    if (w) {
        *extra = "Allow: POST\r\n";
        snprintf(msg, msglen,
                 "%.*s%s%s%s changes the server's state, so it is not served on %s (any web "
                 "page could make a browser call it): send POST with the header Content-Type: "
                 "application/json (and the token, where --auth-token-file is set), or call it "
                 "over msgpack-RPC",
                 (int)(name_len > 64 ? 64 : name_len), name, *w ? " " : "", w, *w ? "=true" : "",
                 req->verb == HTTP_VERB_HEAD ? "HEAD" : "GET");
        return 405;
    }
    return 0;
}

/* ---------------------------------------------------------------- responses */

static const char *const format_types[] = {HTTP_JSON_TYPE, "text/csv; charset=utf-8",
                                           "application/graphml+xml", "text/vnd.graphviz"};

/* The HTTP status for an RPC error map {"code": N, "message": ...}. */
static int error_status(const msgpack_object *err)
{
    if (err->type != MSGPACK_OBJECT_MAP)
        return 500;
    for (uint32_t i = 0; i < err->via.map.size; i++) {
        const msgpack_object *k = &err->via.map.ptr[i].key, *v = &err->via.map.ptr[i].val;
        if (k->type == MSGPACK_OBJECT_STR && path_is(k->via.str.ptr, k->via.str.size, "code") &&
            v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 >= 400 && v->via.u64 < 600)
            return (int)v->via.u64;
    }
    return 500;
}

static int render_result(const struct http_api *api, const msgpack_object *res, struct strbuf *body)
{
    switch (api->fmt) {
    case HTTP_FMT_CSV:
        format_csv(res, qmethod_rows_key(api->m), body);
        return 0;
    case HTTP_FMT_GRAPHML:
        return format_graphml(res, body);
    case HTTP_FMT_DOT:
        return format_dot(res, body);
    default:
        format_json(res, body);
        return 0;
    }
}

int http_api_render(const struct http_api *api, const char *resp, size_t len, struct strbuf *body,
                    const char **ctype)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    *ctype = HTTP_JSON_TYPE;
    int status = 500;
    const msgpack_object *a = NULL;
    if (resp && msgpack_unpack_next(&u, resp, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 4)
        a = u.data.via.array.ptr;
    if (!a) {
        http_error_json(body, 500, "the engine's answer could not be read");
    } else if (a[2].type != MSGPACK_OBJECT_NIL) {
        status = error_status(&a[2]);
        sb_puts(body, "{\"error\": ");
        format_json(&a[2], body);
        sb_puts(body, "}");
    } else if (render_result(api, &a[3], body)) {
        body->n = 0;
        http_error_json(body, 500, "the result has no tree to export");
    } else {
        status = 200;
        *ctype = format_types[api->fmt];
    }
    msgpack_unpacked_destroy(&u);
    return status;
}

void http_error_json(struct strbuf *body, int status, const char *msg)
{
    msgpack_object m = {.type = MSGPACK_OBJECT_STR};
    m.via.str.ptr = msg;
    m.via.str.size = (uint32_t)strlen(msg);
    sb_printf(body, "{\"error\": {\"code\": %d, \"message\": ", status);
    format_json(&m, body);
    sb_puts(body, "}}");
}

const char *http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 421:
        return "Misdirected Request";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

void http_head(struct strbuf *out, int status, const char *ctype, size_t body_len, int keep_alive,
               int http10, const char *extra)
{
    sb_printf(out, "HTTP/1.1 %d %s\r\n", status, http_reason(status));
    if (ctype)
        sb_printf(out, "Content-Type: %s\r\n", ctype);
    sb_printf(out, "Content-Length: %zu\r\nCache-Control: no-store\r\n", body_len);
    if (!keep_alive)
        sb_puts(out, "Connection: close\r\n");
    else if (http10)
        sb_puts(out, "Connection: keep-alive\r\n");
    if (extra)
        sb_puts(out, extra);
    sb_puts(out, "\r\n");
}
