/* cascaded: the server's entry point. Parses the command line and config file (DESIGN §7),
 * recovers the engine from the WAL, starts the writer thread and the network loop, prints the
 * `ready` line once every port serves, and on SIGTERM/SIGINT drains and exits 0. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "net/auth.h"
#include "net/loop.h"
#include "server/writer.h"

#ifndef CASCADE_VERSION
#define CASCADE_VERSION "dev"
#endif

struct config {
    char bind[64];
    unsigned ports[NET_LISTENERS];
    char data_dir[PATH_MAX];
    enum wal_fsync fsync;
    unsigned max_conns;
    unsigned port_conns[NET_LISTENERS]; /* 0: the port's share of max_conns (net/loop.c) */
    unsigned handshake_timeout, idle_timeout; /* seconds; idle 0: never */
    struct ingest_limits limits; /* the ingest decoder's, checked before anything is allocated */
    struct http_limits http;
    uint32_t rpc_max;            /* bytes of one RPC request */
    unsigned analytics_interval; /* seconds; 0: only on request */
    unsigned snapshot_interval;  /* seconds; 0: only on request */
    int snapshot_on_exit;
    unsigned wal_segment_mb;
    uint64_t max_memory;  /* bytes; 0: no limit */
    int64_t retention_ms; /* event time; 0: keep everything */
    int allow_history_loss;
    char auth_token_file[PATH_MAX]; /* empty: no authentication */
    char http_allowed_hosts[1024];  /* http.allowed_hosts points here once set */
};

static const char usage[] =
    "usage: cascaded [options]\n"
    "\n"
    "Tracks how content spreads: share events in on the ingest port (msgpack), cascade and\n"
    "actor metrics out on the query port (msgpack-RPC) and the HTTP port (JSON, CSV,\n"
    "Prometheus /metrics, and a web view at http://ADDR:HTTP-PORT/). Every accepted event is\n"
    "written to a write-ahead log in the data dir before it is acknowledged; start-up loads\n"
    "the newest snapshot and replays the log after it.\n"
    "\n"
    "  --bind ADDR             IPv4 address to listen on (default 127.0.0.1; anything else\n"
    "                          exposes the ports: use --auth-token-file, and TLS in front)\n"
    "  --ingest-port N         ingest port (default 7400; 0 picks a free port)\n"
    "  --query-port N          msgpack-RPC query port (default 7401; 0 picks a free port)\n"
    "  --http-port N           HTTP port: GET /v1/<method>?..., /metrics, /healthz (default\n"
    "                          7402; 0 picks a free port)\n"
    "  --data-dir DIR          where the WAL and the snapshots live (default ./cascaded-data,\n"
    "                          created if missing)\n"
    "  --fsync POLICY          always: fsync before every ack; everysec (default): fsync once a\n"
    "                          second, acks after the write; no: leave it to the OS\n"
    "  --snapshot-interval S   write a snapshot of the engine to DIR/snapshots every S seconds\n"
    "                          when events arrived since (default 300; 0: only on the\n"
    "                          `snapshot` method or SIGUSR1); start-up loads the newest and\n"
    "                          replays only the WAL after it; WAL segments older than both\n"
    "                          kept snapshots are removed\n"
    "  --snapshot-on-exit yes|no  on SIGTERM/SIGINT, after the last batch, write a snapshot\n"
    "                          when the WAL holds events after the newest one (default yes),\n"
    "                          so that the next start replays no WAL; it takes as long as a\n"
    "                          periodic one (~6.5 s at 10 M events)\n"
    "  --wal-segment-mb N      start a new WAL segment past N MiB (default 64, 1..4096)\n"
    "  --allow-history-loss    start even when no snapshot can be loaded and the WAL's first\n"
    "                          segments were removed after one, or WAL segments are missing\n"
    "                          (without it cascaded refuses to start rather than silently\n"
    "                          lose those events; damaged records: see cascade-wal repair)\n"
    "  --max-memory SIZE       once the process's resident set as the kernel counts it\n"
    "                          (VmRSS) reaches SIZE (e.g. 8G, 512M; default 0: no limit),\n"
    "                          ingest is refused with a fatal message saying which event to\n"
    "                          resend from; queries go on\n"
    "  --max-connections N     open connections at most, all ports together (default 1024;\n"
    "                          lowered at start, with a log line, to what the open-files\n"
    "                          limit holds after raising it to its hard limit); more are\n"
    "                          refused with an error in the port's protocol\n"
    "  --max-ingest-connections N, --max-query-connections N, --max-http-connections N\n"
    "                          each port's own budget, so that one port's clients cannot take\n"
    "                          the others' connections (default: a quarter of\n"
    "                          --max-connections each for ingest and query, the rest for HTTP,\n"
    "                          where a browser opens several; keep their sum within\n"
    "                          --max-connections)\n"
    "  --handshake-timeout S   an HTTP request head (from the connection's start, or from its\n"
    "                          first byte), or with --auth-token-file an ingest or RPC auth,\n"
    "                          not complete within S seconds: an error, then closed (default\n"
    "                          10, 1..3600)\n"
    "  --idle-timeout S        close a query or HTTP connection, or an ingest one that has\n"
    "                          sent no event yet, that received and sent nothing, with no\n"
    "                          request at work, for S seconds (RPC: error 408, ingest: a\n"
    "                          fatal; default 300, 0: never, at most 86400). Producers that\n"
    "                          sent events may stay quiet: TCP keepalive finds vanished ones\n"
    "  --max-future-ms N       an event whose ts is more than N ms past the server's clock is\n"
    "                          rejected as bad_ts, as is a negative ts (default 86400000, a\n"
    "                          day; 0: no future check). Only at ingest: the WAL replays what\n"
    "                          was accepted, even if the clock has gone back since\n"
    "  --retention DURATION    evict each cascade, with its posts, once its last post is more\n"
    "                          than DURATION (e.g. 30d, 12h, 90m, 3600s; a number alone is\n"
    "                          seconds) older than the newest event's ts (default 0: keep\n"
    "                          everything). Metrics then cover retained posts only; an actor\n"
    "                          or content with none left is unknown; growth windows longer\n"
    "                          than DURATION are refused. Evicted posts stay in the WAL until\n"
    "                          a snapshot lets it be pruned\n"
    "\n"
    "Ingest limits, checked as bytes arrive, before anything is allocated; a stream that\n"
    "breaks one gets {\"fatal\": \"... exceeds the limit ...\"} and is closed (counted in\n"
    "/metrics as cascaded_limit_violations_total):\n"
    "  --max-value-bytes N     one msgpack value, an event or an array of them (default\n"
    "                          4194304, 1024..16777216)\n"
    "  --max-value-memory SIZE what decoding one value may allocate, counted from its\n"
    "                          headers before it is decoded (default 64M, 1M..4G; 4 MiB of\n"
    "                          typical events take ~18M, the worst 4 MiB ~130M). All\n"
    "                          connections' values together get a quarter of --max-memory\n"
    "                          (1G without it): a value finding no room is refused, to be\n"
    "                          resent later. An RPC request past it gets error 413\n"
    "  --max-string-bytes N    one string (default 65536, 256..16777216; the fields of an\n"
    "                          event have tighter bounds of their own, DESIGN §2)\n"
    "  --max-array N           elements of one array (default 100000, 1..10000000)\n"
    "  --max-map-keys N        keys of one map (default 64, 8..65536)\n"
    "  --max-depth N           nesting of arrays and maps (default 8, 2..32)\n"
    "The last four also bound each msgpack-RPC request on the query port (never below what\n"
    "a request needs: 4 elements, 3 levels, a token's length).\n"
    "Query limits (a request past one gets an error saying which, counted the same way):\n"
    "  --max-rpc-request-bytes N  one msgpack-RPC request (default 1048576, 4096..64 MiB)\n"
    "  --max-http-head-bytes N    request line and headers (default 16384, 1024..1 MiB): 431\n"
    "  --max-http-target-bytes N  path and query string (default 8192, 256..1 MiB, at most\n"
    "                             the head): 414\n"
    "  --http-allowed-hosts LIST  host names (comma-separated, any port) the HTTP port answers\n"
    "                             besides IP addresses and localhost, '*' for any; another\n"
    "                             Host gets 421, so that a page whose DNS name was pointed at\n"
    "                             this address (DNS rebinding) cannot read it (default: none)\n"
    "\n"
    "  --analytics-interval S  recompute PageRank, communities and coordination on a fresh\n"
    "                          snapshot every S seconds when events arrived since (default 60;\n"
    "                          0: only when asked, with the `analytics` method's refresh=true)\n"
    "  --auth-token-file FILE  a shared secret (16-1024 printable bytes) every client must\n"
    "                          present: ingest streams begin with {\"auth\": TOKEN}, RPC\n"
    "                          connections call `auth` token=TOKEN first, HTTP requests to\n"
    "                          /v1 and /metrics carry `Authorization: Bearer TOKEN` (default:\n"
    "                          none; the page itself and /healthz stay open)\n"
    "  --config FILE           read `key = value` lines (keys are these option names without\n"
    "                          the dashes; # starts a comment); options given on the command\n"
    "                          line win over the file\n"
    "  --help                  this text\n"
    "  --version               the version\n"
    "\n"
    "When every port serves, one line goes to stdout: ready ingest=PORT query=PORT http=PORT\n"
    "Logs go to stderr, one `level=... ts=... event=...` line each. SIGTERM or SIGINT: stop\n"
    "accepting, finish what was received, flush the WAL, write a snapshot (see\n"
    "--snapshot-on-exit), exit 0. SIGUSR1: write a snapshot.\n";

static void config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->bind, sizeof(c->bind), "127.0.0.1");
    c->ports[NET_INGEST] = 7400;
    c->ports[NET_QUERY] = 7401;
    c->ports[NET_HTTP] = 7402;
    snprintf(c->data_dir, sizeof(c->data_dir), "./cascaded-data");
    c->fsync = WAL_FSYNC_EVERYSEC;
    c->max_conns = 1024;
    c->handshake_timeout = NET_HANDSHAKE_MS / 1000;
    c->idle_timeout = NET_IDLE_MS / 1000;
    c->snapshot_interval = 300;
    c->snapshot_on_exit = 1;
    c->wal_segment_mb = 64;
    ingest_limits_default(&c->limits);
    http_limits_default(&c->http);
    c->rpc_max = NET_RPC_MAX;
    c->analytics_interval = 60;
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > max || *s == '-')
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

/* A byte count with an optional K, M, G or T suffix (powers of 1024): 0 or -EINVAL. */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return -EINVAL;
    const char *units = "KMGT";
    const char *u = *end ? strchr(units, *end & ~0x20) : NULL;
    if (*end && (!u || end[1] != '\0'))
        return -EINVAL;
    unsigned shift = u ? 10u * (unsigned)(u - units + 1) : 0;
    if (shift && v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

/* A duration of event time: digits and an optional unit (ms, s, m, h, d, w; seconds without
 * one), at most 100 years. 0 or -EINVAL. */
static int parse_duration(const char *s, int64_t *out)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"", 1000},       {"ms", 1},         {"s", 1000},          {"m", 60000},
                 {"h", 3600000LL}, {"d", 86400000LL}, {"w", 7 * 86400000LL}};
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-' || *s == '+')
        return -EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit))
            continue;
        if (v > 100ull * 366 * 86400000 / (uint64_t)units[i].ms)
            return -EINVAL;
        *out = (int64_t)v * units[i].ms;
        return 0;
    }
    return -EINVAL;
}

/* A count of milliseconds, digits only (parse_duration's bound). 0 or -EINVAL. */
static int parse_ms(const char *s, int64_t *out)
{
    char buf[32];
    if (!*s || strlen(s) > 20 || strspn(s, "0123456789") != strlen(s))
        return -EINVAL;
    snprintf(buf, sizeof(buf), "%sms", s);
    return parse_duration(buf, out);
}

/* A limit in [lo, hi]: below lo no event could pass (an event map needs 3 keys, 2 levels, ...). */
static int parse_limit(const char *s, unsigned lo, unsigned hi, uint32_t *out)
{
    unsigned v;
    if (parse_uint(s, hi, &v) || v < lo)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Applies one option (name without dashes). A message on stderr and -EINVAL when bad. */
static int set_option(struct config *c, const char *key, const char *val, const char *where)
{
    int rc = 0;
    if (!strcmp(key, "bind")) {
        rc = strlen(val) < sizeof(c->bind) ? 0 : -EINVAL;
        if (!rc)
            snprintf(c->bind, sizeof(c->bind), "%s", val);
    } else if (!strcmp(key, "ingest-port")) {
        rc = parse_uint(val, 65535, &c->ports[NET_INGEST]);
    } else if (!strcmp(key, "query-port")) {
        rc = parse_uint(val, 65535, &c->ports[NET_QUERY]);
    } else if (!strcmp(key, "http-port")) {
        rc = parse_uint(val, 65535, &c->ports[NET_HTTP]);
    } else if (!strcmp(key, "data-dir")) {
        rc = *val && strlen(val) < sizeof(c->data_dir) ? 0 : -EINVAL;
        if (!rc)
            snprintf(c->data_dir, sizeof(c->data_dir), "%s", val);
    } else if (!strcmp(key, "fsync")) {
        if (!strcmp(val, "always"))
            c->fsync = WAL_FSYNC_ALWAYS;
        else if (!strcmp(val, "everysec"))
            c->fsync = WAL_FSYNC_EVERYSEC;
        else if (!strcmp(val, "no"))
            c->fsync = WAL_FSYNC_NO;
        else
            rc = -EINVAL;
    } else if (!strcmp(key, "analytics-interval")) {
        rc = parse_uint(val, 86400 * 365, &c->analytics_interval);
    } else if (!strcmp(key, "snapshot-interval")) {
        rc = parse_uint(val, 86400 * 365, &c->snapshot_interval);
    } else if (!strcmp(key, "snapshot-on-exit")) {
        rc = !strcmp(val, "yes")  ? (c->snapshot_on_exit = 1, 0)
             : !strcmp(val, "no") ? (c->snapshot_on_exit = 0, 0)
                                  : -EINVAL;
    } else if (!strcmp(key, "wal-segment-mb")) {
        rc = parse_uint(val, 4096, &c->wal_segment_mb);
        rc = rc ? rc : (c->wal_segment_mb ? 0 : -EINVAL);
    } else if (!strcmp(key, "allow-history-loss")) {
        rc = !strcmp(val, "true") ? (c->allow_history_loss = 1, 0) : -EINVAL;
    } else if (!strcmp(key, "max-memory")) {
        rc = parse_size(val, &c->max_memory);
    } else if (!strcmp(key, "max-future-ms")) {
        rc = parse_ms(val, &c->limits.max_future_ms);
    } else if (!strcmp(key, "retention")) {
        rc = parse_duration(val, &c->retention_ms);
    } else if (!strcmp(key, "auth-token-file")) {
        rc = *val && strlen(val) < sizeof(c->auth_token_file) ? 0 : -EINVAL;
        if (!rc)
            snprintf(c->auth_token_file, sizeof(c->auth_token_file), "%s", val);
    } else if (!strcmp(key, "max-value-bytes")) {
        rc = parse_limit(val, 1024, 16u << 20, &c->limits.max_value_bytes);
    } else if (!strcmp(key, "max-value-memory")) {
        uint64_t *m = &c->limits.max_value_memory;
        rc = parse_size(val, m);
        if (!rc && (*m < (1u << 20) || *m > (4ull << 30)))
            rc = -EINVAL;
    } else if (!strcmp(key, "max-string-bytes")) {
        rc = parse_limit(val, 256, 16u << 20, &c->limits.max_str);
    } else if (!strcmp(key, "max-array")) {
        rc = parse_limit(val, 1, 10000000, &c->limits.max_array);
    } else if (!strcmp(key, "max-map-keys")) {
        rc = parse_limit(val, 8, 65536, &c->limits.max_map);
    } else if (!strcmp(key, "max-depth")) {
        rc = parse_limit(val, 2, 32, &c->limits.max_depth);
    } else if (!strcmp(key, "max-http-head-bytes")) {
        rc = parse_limit(val, 1024, 1u << 20, &c->http.head_max);
    } else if (!strcmp(key, "max-http-target-bytes")) {
        rc = parse_limit(val, 256, 1u << 20, &c->http.target_max);
    } else if (!strcmp(key, "http-allowed-hosts")) {
        char why[256];
        rc = strlen(val) < sizeof(c->http_allowed_hosts) && !http_hosts_check(val, why, sizeof(why))
                 ? 0
                 : -EINVAL;
        if (!rc) {
            snprintf(c->http_allowed_hosts, sizeof(c->http_allowed_hosts), "%s", val);
            c->http.allowed_hosts = c->http_allowed_hosts;
        }
    } else if (!strcmp(key, "max-rpc-request-bytes")) {
        rc = parse_limit(val, 4096, 64u << 20, &c->rpc_max);
    } else if (!strcmp(key, "max-connections")) {
        rc = parse_uint(val, 1u << 20, &c->max_conns);
        rc = rc ? rc : (c->max_conns ? 0 : -EINVAL);
    } else if (!strcmp(key, "max-ingest-connections")) {
        rc = parse_limit(val, 1, 1u << 20, &c->port_conns[NET_INGEST]);
    } else if (!strcmp(key, "max-query-connections")) {
        rc = parse_limit(val, 1, 1u << 20, &c->port_conns[NET_QUERY]);
    } else if (!strcmp(key, "max-http-connections")) {
        rc = parse_limit(val, 1, 1u << 20, &c->port_conns[NET_HTTP]);
    } else if (!strcmp(key, "handshake-timeout")) {
        rc = parse_limit(val, 1, 3600, &c->handshake_timeout);
    } else if (!strcmp(key, "idle-timeout")) {
        rc = parse_uint(val, 86400, &c->idle_timeout);
    } else {
        fprintf(stderr, "cascaded: %sunknown option %s (see cascaded --help)\n", where, key);
        return -EINVAL;
    }
    if (rc)
        fprintf(stderr, "cascaded: %sbad value for %s: '%s' (see cascaded --help)\n", where, key,
                val);
    return rc;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = 0;
    return s;
}

static int read_config_file(struct config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cascaded: cannot read config file %s: %s\n", path, strerror(errno));
        return -errno;
    }
    char line[4096], where[PATH_MAX + 32];
    int rc = 0;
    for (unsigned no = 1; !rc && fgets(line, sizeof(line), f); no++) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        snprintf(where, sizeof(where), "%s:%u: ", path, no);
        if (!eq) {
            fprintf(stderr, "cascaded: %sexpected `key = value`\n", where);
            rc = -EINVAL;
            break;
        }
        *eq = 0;
        rc = set_option(c, trim(s), trim(eq + 1), where);
    }
    fclose(f);
    return rc;
}

/* The config file first (wherever --config appears), then the other options over it. */
static int parse_args(int argc, char **argv, struct config *c)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 == argc) {
                fprintf(stderr, "cascaded: --config needs a file\n");
                return -EINVAL;
            }
            if (read_config_file(c, argv[i + 1]))
                return -EINVAL;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) || !a[2]) {
            fprintf(stderr, "cascaded: unexpected argument '%s' (see cascaded --help)\n", a);
            return -EINVAL;
        }
        const char *eq = strchr(a, '=');
        char key[64];
        snprintf(key, sizeof(key), "%.*s", (int)(eq ? eq - a - 2 : (long)strlen(a + 2)), a + 2);
        /* the one flag without a value (in a config file: allow-history-loss = true) */
        int flag = !eq && !strcmp(key, "allow-history-loss");
        const char *val = eq ? eq + 1 : flag ? "true" : (i + 1 < argc ? argv[++i] : NULL);
        if (!val) {
            fprintf(stderr, "cascaded: --%s needs a value\n", key);
            return -EINVAL;
        }
        if (!strcmp(key, "config"))
            continue;
        if (set_option(c, key, val, ""))
            return -EINVAL;
    }
    return 0;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    fprintf(stderr, "cascaded: cannot create data dir %s: %s\n", path, strerror(errno));
    return -errno;
}

/* SIGTERM and SIGINT arrive through a signalfd read by the network loop; blocked before any
 * thread starts so that every thread inherits the mask. */
static int setup_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1); /* a snapshot (the loop hands it to the writer) */
    if (pthread_sigmask(SIG_BLOCK, &set, NULL))
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_CLOEXEC);
}

/* --auth-token-file's token into *token (malloc'd; NULL without the option). 0 or -1 with a
 * message on stderr. */
static int load_token(const struct config *cfg, char **token)
{
    char err[PATH_MAX + 128];
    int loose = 0;
    *token = NULL;
    if (!cfg->auth_token_file[0])
        return 0;
    if (auth_token_load(cfg->auth_token_file, token, &loose, err, sizeof(err))) {
        fprintf(stderr, "cascaded: %s\n", err);
        return -1;
    }
    if (loose)
        log_msg(LOG_WARN, "auth_token_file_readable", "path=%s hint=\"chmod 600 it\"",
                cfg->auth_token_file);
    return 0;
}

static int serve(const struct config *cfg)
{
    char err[512] = "";
    struct bqueue done;
    struct writer w;
    struct netloop *n = NULL;
    int sfd = setup_signals();
    if (sfd < 0 || bqueue_init(&done, 1)) {
        fprintf(stderr, "cascaded: cannot set up signals or queues: %s\n", strerror(errno));
        return 1;
    }
    char *token;
    if (make_dir(cfg->data_dir) || load_token(cfg, &token))
        return 1;
    struct writer_config wc = {.data_dir = cfg->data_dir,
                               .fsync = cfg->fsync,
                               .analytics_interval_ms = (uint64_t)cfg->analytics_interval * 1000,
                               .snapshot_interval_ms = (uint64_t)cfg->snapshot_interval * 1000,
                               .snapshot_on_exit = cfg->snapshot_on_exit,
                               .wal_segment_bytes = (uint64_t)cfg->wal_segment_mb << 20,
                               .max_memory = cfg->max_memory,
                               .retention_ms = cfg->retention_ms,
                               .allow_history_loss = cfg->allow_history_loss};
    if (writer_start(&w, &wc, &done, err, sizeof(err))) {
        fprintf(stderr, "cascaded: %s\n", err);
        free(token);
        return 1;
    }
    struct netloop_config nc = {.bind = cfg->bind,
                                .max_conns = cfg->max_conns,
                                .handshake_ms = cfg->handshake_timeout * 1000,
                                .idle_ms = cfg->idle_timeout * 1000,
                                .signal_fd = sfd,
                                .on_sigusr1 = writer_request_snapshot,
                                .sigusr1_ctx = &w,
                                .auth_token = token};
    for (int i = 0; i < NET_LISTENERS; i++) {
        nc.ports[i] = (uint16_t)cfg->ports[i];
        nc.port_conns[i] = cfg->port_conns[i];
    }
    nc.limits = cfg->limits;
    /* decoding memory counts against --max-memory: a quarter of it for values in flight */
    struct ingest_budget budget = {.limit = cfg->max_memory ? cfg->max_memory / 4 : 1ull << 30};
    nc.limits.budget = &budget;
    nc.http = cfg->http;
    nc.http.in_max = cfg->http.head_max * 4 > HTTP_IN_MAX ? cfg->http.head_max * 4 : HTTP_IN_MAX;
    nc.rpc_max = cfg->rpc_max;
    if (netloop_new(&nc, &w.in, &done, &n, err, sizeof(err))) {
        fprintf(stderr, "cascaded: %s\n", err);
        writer_stop(&w);
        free(token);
        return 1;
    }
    uint16_t ports[NET_LISTENERS];
    netloop_ports(n, ports);
    log_msg(LOG_INFO, "ready", "version=%s bind=%s ingest=%u query=%u http=%u data_dir=%s",
            CASCADE_VERSION, cfg->bind, ports[0], ports[1], ports[2], cfg->data_dir);
    printf("ready ingest=%u query=%u http=%u\n", ports[0], ports[1], ports[2]);
    fflush(stdout);
    int rc = netloop_run(n);
    netloop_free(n);
    writer_stop(&w);
    free(token);
    bqueue_destroy(&done);
    close(sfd);
    log_msg(LOG_INFO, "stopped", "status=%d", rc ? 1 : 0);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("cascaded %s\n", CASCADE_VERSION);
            return 0;
        }
    }
    struct config cfg;
    config_defaults(&cfg);
    if (parse_args(argc, argv, &cfg))
        return 2;
    if (cfg.http.target_max > cfg.http.head_max) {
        fprintf(stderr,
                "cascaded: --max-http-target-bytes (%u) cannot exceed --max-http-head-bytes "
                "(%u): the target is part of the head\n",
                cfg.http.target_max, cfg.http.head_max);
        return 2;
    }
    return serve(&cfg);
}
