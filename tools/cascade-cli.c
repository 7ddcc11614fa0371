/* cascade-cli: one query to cascaded's query port (DESIGN §5, §7), printed as a table, JSON,
 * CSV, GraphML or DOT. The request is built and checked locally from the shared method schema
 * (cascade/schema.h), so a typo fails before any I/O with the server's own wording; the answer is
 * untrusted input, read under a size bound and a deadline. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <msgpack.h>

#include "cascade/client.h"
#include "cascade/format.h"
#include "cascade/mp.h"
#include "cascade/proto.h"
#include "cascade/schema.h"
#include "cascade/strbuf.h"

#ifndef CASCADE_VERSION
#define CASCADE_VERSION "dev"
#endif

/* Exit codes (DESIGN §7): scripts tell these apart. */
enum {
    EXIT_OK = 0,
    EXIT_SERVER_ERROR = 1, /* the server answered with an error */
    EXIT_USAGE = 2,        /* bad command line, unknown method or parameter */
    EXIT_NETWORK = 3,      /* cannot connect, timeout, closed, malformed or oversized answer */
    EXIT_LOCAL = 4,        /* out of memory, cannot write the output */
    EXIT_REFUSED = 5,      /* the server refused the connection (at its connection limit) */
};

#define MAX_ANSWER (256u << 20) /* the largest answer read (a big cascade tree is ~100 MiB) */
#define MAX_PARAMS 64
#define MSGID      1
#define AUTH_MSGID 0

enum format { F_TABLE, F_JSON, F_CSV, F_GRAPHML, F_DOT };
static const char *const FORMATS[] = {"table", "json", "csv", "graphml", "dot", NULL};

struct opts {
    const char *host, *port;
    const char *token_file; /* --auth-token-file, or NULL */
    double timeout_s;
    enum format format;
    int help;                /* --help / -h (with a method: that method's help) */
    const char *method;      /* NULL: none given */
    const char *help_method; /* `help METHOD` */
    struct qtext_param ps[MAX_PARAMS + 1];
    size_t nps;
};

/* ------------------------------------------------------------------ command line */

static void usage(FILE *f)
{
    fprintf(f, "usage: cascade-cli [--host H] [--port N] [--json] [--format FMT] [--timeout S]\n"
               "                   [--auth-token-file FILE] METHOD [key=value ...]\n"
               "       cascade-cli help METHOD      (or METHOD --help)\n\n"
               "One query to cascaded's query port, printed as a table (default) or in FMT.\n\n"
               "options:\n"
               "  --host H        the server's address (default 127.0.0.1)\n"
               "  --port N        its query port (default 7401)\n"
               "  --json          the result as JSON (same as --format json)\n"
               "  --format FMT    table, json, csv, graphml or dot (graphml and dot: the\n"
               "                  cascade method, whose tree they draw; tree=true is implied)\n"
               "  --timeout S     give up after S seconds (default 30)\n"
               "  --auth-token-file FILE\n"
               "                  the server's shared secret (its --auth-token-file): sent\n"
               "                  first, as the `auth` request\n"
               "  --help, -h      this help; --version\n\n"
               "exit status: 0 ok, 1 the server answered an error, 2 usage error,\n"
               "3 cannot reach the server (or no valid answer in time), 4 local failure,\n"
               "5 the server refused the connection (too many connections: retry later)\n\n"
               "methods:\n\n");
    size_t n;
    const struct qmethod *ms = qmethod_all(&n);
    for (size_t i = 0; i < n; i++) {
        qmethod_usage(f, &ms[i]);
        fputc('\n', f);
    }
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "cascade-cli: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(cascade-cli --help lists the options and methods)\n");
    return EXIT_USAGE;
}

static int parse_format(struct opts *o, const char *v)
{
    for (int i = 0; FORMATS[i]; i++)
        if (!strcmp(v, FORMATS[i])) {
            o->format = (enum format)i;
            return 0;
        }
    return usage_error("unknown --format %s (table, json, csv, graphml, dot)", v);
}

static int parse_port(struct opts *o, const char *v)
{
    char *end;
    errno = 0;
    long p = strtol(v, &end, 10);
    if (errno || end == v || *end || p < 1 || p > 65535)
        return usage_error("--port takes a port number (1-65535), not %s", v);
    o->port = v;
    return 0;
}

static int parse_timeout(struct opts *o, const char *v)
{
    char *end;
    double t = strtod(v, &end);
    if (end == v || *end || !(t > 0) || t > 86400)
        return usage_error("--timeout takes seconds (a number > 0), not %s", v);
    o->timeout_s = t;
    return 0;
}

/* An option that takes a value: --name V or --name=V. *i advances past what it used. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (!strncmp(argv[*i], name, n) && argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (strcmp(argv[*i], name))
        return NULL;
    if (*i + 1 >= argc)
        return "";
    return argv[++*i];
}

static int parse_option(struct opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
        o->help = 1;
        return 0;
    }
    if (!strcmp(a, "--version")) {
        printf("cascade-cli %s\n", CASCADE_VERSION);
        exit(EXIT_OK);
    }
    if (!strcmp(a, "--json")) {
        o->format = F_JSON;
        return 0;
    }
    if ((v = opt_value(argc, argv, i, "--host")))
        return *v ? (o->host = v, 0) : usage_error("--host takes an address%s", "");
    if ((v = opt_value(argc, argv, i, "--port")))
        return parse_port(o, v);
    if ((v = opt_value(argc, argv, i, "--format")))
        return parse_format(o, v);
    if ((v = opt_value(argc, argv, i, "--timeout")))
        return parse_timeout(o, v);
    if ((v = opt_value(argc, argv, i, "--auth-token-file")))
        return *v ? (o->token_file = v, 0) : usage_error("--auth-token-file takes a file%s", "");
    return usage_error("unknown option %s", a);
}

static int parse_param(struct opts *o, const char *a)
{
    const char *eq = strchr(a, '=');
    if (!eq || eq == a)
        return usage_error("expected key=value, got '%s'", a);
    if (o->nps >= MAX_PARAMS)
        return usage_error("too many parameters (at most 64)%s", "");
    o->ps[o->nps++] = (struct qtext_param){
        .key = a, .key_len = (size_t)(eq - a), .val = eq + 1, .val_len = strlen(eq + 1)};
    return 0;
}

/* Options may stand anywhere; the first other word is the method (or `help`), then key=value. */
static int parse_args(struct opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc;
        if (a[0] == '-' && a[1])
            rc = parse_option(o, argc, argv, &i);
        else if (!o->method && !o->help_method && !strcmp(a, "help") && i + 1 < argc)
            rc = 0, o->help_method = argv[++i];
        else if (!o->method && !o->help_method)
            rc = 0, o->method = a;
        else
            rc = parse_param(o, a);
        if (rc)
            return rc;
    }
    return 0;
}

/* Help asked for (0 printed, else an exit code), or -1 when this is a query. */
static int maybe_help(const struct opts *o)
{
    const char *name = o->help_method ? o->help_method : o->help ? o->method : NULL;
    if (name) {
        const struct qmethod *m = qmethod_find(name, strlen(name));
        if (!m) {
            fprintf(stderr, "cascade-cli: unknown method %s (methods: %s)\n", name,
                    qmethod_names());
            return EXIT_USAGE;
        }
        qmethod_usage(stdout, m);
        return EXIT_OK;
    }
    if (o->help || (o->method && !strcmp(o->method, "help"))) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!o->method) {
        usage(stderr);
        return EXIT_USAGE;
    }
    return -1;
}

/* ------------------------------------------------------------------ the request */

static int is_export(const struct opts *o)
{
    return o->format == F_GRAPHML || o->format == F_DOT;
}

/* The request bytes into sb; an exit code on failure. The exports draw a tree, so they ask for
 * one (tree=true replaces any tree=... given). */
static int build_request(struct opts *o, msgpack_sbuffer *sb)
{
    char err[512];
    if (is_export(o)) {
        if (strcmp(o->method, "cascade"))
            return usage_error("--format graphml and dot draw a cascade: use them with the "
                               "cascade method, not %s",
                               o->method);
        size_t k = 0;
        for (size_t i = 0; i < o->nps; i++)
            if (!(o->ps[i].key_len == 4 && !memcmp(o->ps[i].key, "tree", 4)))
                o->ps[k++] = o->ps[i];
        o->ps[k++] = (struct qtext_param){.key = "tree", .key_len = 4, .val = "true", .val_len = 4};
        o->nps = k;
    }
    int rc = qrequest_from_text(o->method, strlen(o->method), o->ps, o->nps, MSGID, sb, err,
                                sizeof(err));
    if (rc == -ENOMEM) {
        fprintf(stderr, "cascade-cli: out of memory\n");
        return EXIT_LOCAL;
    }
    if (rc) {
        fprintf(stderr, "cascade-cli: %s\n", err);
        return EXIT_USAGE;
    }
    return 0;
}

/* ------------------------------------------------------------------ the exchange */

/* The connection is libcascade-client's (cascade/client.h); the messages and exit codes are
 * cascade-cli's. */
struct conn {
    struct cc_rpc *r;
    char where[CC_WHERE_MAX]; /* host:port, for messages */
    const struct opts *o;
};

static int net_fail(const struct conn *c, const char *what)
{
    fprintf(stderr, "cascade-cli: %s %s\n", what, c->where);
    return EXIT_NETWORK;
}

static int cannot_connect(const struct conn *c, const char *why)
{
    fprintf(stderr,
            "cascade-cli: cannot connect to %s: %s\n"
            "  is cascaded running? start it with `cascaded --query-port %s`, or point\n"
            "  --host/--port at its query port (the port in its `ready ... query=N` line)\n",
            c->where, why, c->o->port);
    return EXIT_NETWORK;
}

/* Connects within --timeout; every later wait shares the deadline. 0 or an exit code. */
static int net_connect(struct conn *c, double deadline)
{
    char why[160];
    int fd = cc_connect(c->o->host, c->o->port, c->o->timeout_s, 0, why, sizeof(why));
    if (fd < 0)
        return cannot_connect(c, why);
    if (cc_rpc_wrap(fd, c->where, MAX_ANSWER, &c->r)) {
        fprintf(stderr, "cascade-cli: out of memory\n");
        return EXIT_LOCAL;
    }
    cc_rpc_set_deadline(c->r, deadline);
    return 0;
}

/* 0, an exit code, or -EPIPE when the server has closed the connection: what it sent before
 * (a refusal says why) is still to be read. */
static int net_send(struct conn *c, const char *p, size_t n)
{
    int rc = cc_rpc_send(c->r, p, n);
    if (rc == -ETIMEDOUT)
        return net_fail(c, "timed out (--timeout) sending the request to");
    if (rc && rc != -EPIPE) {
        fprintf(stderr, "cascade-cli: sending to %s: %s\n", c->where, strerror(-rc));
        return EXIT_NETWORK;
    }
    return rc;
}

/* Writes s to stderr with control characters (a terminal's escape sequences) as '?'. */
static void put_clean(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = format_utf8_next(s + i, len - i, &cp);
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp == 0xfffd && n == 1))
            fputc('?', stderr);
        else
            fwrite(s + i, 1, n, stderr);
        i += n;
    }
}

/* The server answered in HTTP: the HTTP port, not the query port (or its refusal). */
static int http_answer(const struct conn *c, const char *line, size_t len)
{
    fprintf(stderr, "cascade-cli: %s answered in HTTP (", c->where);
    put_clean(line, len);
    fprintf(stderr, "): it is an HTTP port; point --port at cascaded's query port (the port in "
                    "its `ready ... query=N` line)\n");
    return EXIT_NETWORK;
}

/* The first complete value on the connection into *out: 0, or an exit code. */
static int net_receive(struct conn *c, const msgpack_object **out)
{
    int rc = cc_rpc_recv(c->r, out);
    size_t len;
    const char *line;
    switch (rc) {
    case 0:
        return 0;
    case -EMSGSIZE:
        return net_fail(c, "answer larger than 256 MiB from");
    case -ENOMEM:
        fprintf(stderr, "cascade-cli: out of memory reading the answer\n");
        return EXIT_LOCAL;
    case -ETIMEDOUT:
        return net_fail(c, "timed out (--timeout) waiting for the answer from");
    case -EPIPE:
        return net_fail(c, "connection closed before the answer came, by");
    case -EPROTONOSUPPORT:
        line = cc_rpc_http_line(c->r, &len);
        return http_answer(c, line, len);
    case -EOVERFLOW: /* also a hostile header's huge count */
        return net_fail(c, "out of memory decoding (or oversized) answer from");
    case -EBADMSG:
        return net_fail(c, "malformed msgpack in the answer from");
    default:
        fprintf(stderr, "cascade-cli: reading from %s: %s\n", c->where, strerror(-rc));
        return EXIT_NETWORK;
    }
}

/* ------------------------------------------------------------------ the answer */

/* Prints an RPC error as `error CODE: MESSAGE` on stderr, control characters (a terminal's
 * escape sequences) shown as '?'. */
static int print_error(const msgpack_object *err)
{
    const msgpack_object *code = mp_map_get(err, "code"), *msg = mp_map_get(err, "message");
    struct strbuf b = STRBUF_INIT;
    if (msg && msg->type == MSGPACK_OBJECT_STR)
        sb_append(&b, msg->via.str.ptr, msg->via.str.size);
    else
        format_json(err, &b);
    fputs("error", stderr);
    if (code && code->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        fprintf(stderr, " %" PRIu64, code->via.u64);
    fputs(": ", stderr);
    if (!b.oom)
        put_clean(b.p, b.n);
    fputc('\n', stderr);
    sb_free(&b);
    return EXIT_SERVER_ERROR;
}

static int render(const struct opts *o, const msgpack_object *result, struct strbuf *out)
{
    const struct qmethod *m = qmethod_find(o->method, strlen(o->method));
    switch (o->format) {
    case F_JSON:
        format_json(result, out);
        sb_putc(out, '\n');
        return 0;
    case F_CSV:
        format_csv(result, qmethod_rows_key(m), out);
        return 0;
    case F_TABLE:
        format_table(result, qmethod_rows_key(m), out);
        return 0;
    case F_GRAPHML:
        return format_graphml(result, out);
    case F_DOT:
        return format_dot(result, out);
    }
    return -EINVAL;
}

static int print_result(const struct opts *o, const msgpack_object *result)
{
    struct strbuf out = STRBUF_INIT;
    int rc = render(o, result, &out);
    if (out.oom || rc == -ENOMEM) {
        sb_free(&out);
        fprintf(stderr, "cascade-cli: out of memory rendering the answer\n");
        return EXIT_LOCAL;
    }
    if (rc) {
        sb_free(&out);
        fprintf(stderr, "cascade-cli: the answer holds no cascade tree to export\n");
        return EXIT_NETWORK;
    }
    size_t n = out.n, w = n ? fwrite(out.p, 1, n, stdout) : 0;
    sb_free(&out);
    if (w != n || fflush(stdout)) {
        fprintf(stderr, "cascade-cli: writing the output: %s\n", strerror(errno));
        return EXIT_LOCAL;
    }
    return EXIT_OK;
}

/* Checks the envelope [1, msgid, error, result] and prints what it holds (with print set;
 * else only an error). */
static int handle_answer(const struct conn *c, const msgpack_object *a, uint64_t msgid, int print)
{
    const msgpack_object_array *v = &a->via.array;
    const msgpack_object *fatal = mp_map_get(a, "fatal");
    if (fatal && fatal->type == MSGPACK_OBJECT_STR) { /* an ingest port's word */
        fprintf(stderr, "cascade-cli: %s answered as an ingest port does: ", c->where);
        put_clean(fatal->via.str.ptr, fatal->via.str.size);
        fprintf(stderr, "\n  point --port at cascaded's query port (the port in its `ready ... "
                        "query=N` line)\n");
        return EXIT_NETWORK;
    }
    /* [1, nil, error, nil]: an error that answers no request of ours, sent when the connection
     * opened (the server at its connection limit: 503) or when a request could not be read */
    struct proto_rpc_response resp;
    int envelope = proto_rpc_response_parse(a, &resp) == 0;
    if (envelope && v->ptr[1].type == MSGPACK_OBJECT_NIL && resp.error &&
        resp.error->type == MSGPACK_OBJECT_MAP) {
        int refused = resp.code == 503;
        fprintf(stderr, "cascade-cli: %s %s: ", c->where,
                refused ? "refused the connection" : "could not take the request");
        print_error(resp.error);
        return refused ? EXIT_REFUSED : EXIT_SERVER_ERROR;
    }
    if (!envelope || !resp.has_id || resp.msgid != msgid)
        return net_fail(c, "not a msgpack-RPC response (is this the query port?) from");
    if (resp.error)
        return print_error(resp.error);
    return print ? print_result(c->o, resp.result) : EXIT_OK;
}

/* [0, AUTH_MSGID, "auth", [{"token": TOKEN}]] ahead of the query, with the token of
 * --auth-token-file. 0 or an exit code. */
static int auth_request(const struct opts *o, msgpack_sbuffer *out)
{
    char err[PATH_MAX + 128], *token;
    int loose;
    if (proto_auth_token_load(o->token_file, &token, &loose, err, sizeof(err))) {
        fprintf(stderr, "cascade-cli: %s\n", err);
        return EXIT_LOCAL;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    proto_auth_pack_rpc(&pk, AUTH_MSGID, token);
    free(token);
    return EXIT_OK;
}

/* Sends msg and reads the first value that comes back into *ans: 0 or an exit code. A send that
 * finds the connection closed goes on to read: a server refusing the connection says why first. */
static int exchange(struct conn *c, const msgpack_sbuffer *msg, const msgpack_object **ans)
{
    int rc = net_send(c, msg->data, msg->size);
    return rc > 0 ? rc : net_receive(c, ans);
}

static int query(const struct opts *o, const msgpack_sbuffer *req)
{
    struct conn c = {.o = o};
    cc_where(c.where, sizeof(c.where), o->host, o->port);
    int rc = net_connect(&c, cc_now() + o->timeout_s);
    if (rc)
        return rc;
    const msgpack_object *ans;
    msgpack_sbuffer auth;
    msgpack_sbuffer_init(&auth);
    rc = o->token_file ? auth_request(o, &auth) : 0;
    if (!rc && auth.size && !(rc = exchange(&c, &auth, &ans)))
        rc = handle_answer(&c, ans, AUTH_MSGID, 0);
    msgpack_sbuffer_destroy(&auth);
    if (!rc)
        rc = exchange(&c, req, &ans);
    /* answered or failed: the connection has done its work (the answer stays readable) */
    shutdown(cc_rpc_fd(c.r), SHUT_RDWR);
    if (!rc)
        rc = handle_answer(&c, ans, MSGID, 1);
    cc_rpc_close(c.r);
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o = {.host = "127.0.0.1", .port = "7401", .timeout_s = 30};
    int rc = parse_args(&o, argc, argv);
    if (rc)
        return rc;
    if ((rc = maybe_help(&o)) >= 0)
        return rc;
    msgpack_sbuffer req;
    msgpack_sbuffer_init(&req);
    rc = build_request(&o, &req);
    if (!rc)
        rc = query(&o, &req);
    msgpack_sbuffer_destroy(&req);
    return rc;
}
