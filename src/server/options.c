/* cascaded's option table and what is made from it: the defaults, the command-line and config
 * file parser, the `--help` text and README's configuration table. Adding an option is one row
 * here (and a member of struct config); tests/integration/test_options.py checks the README. */
#include "server/options.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "query/http.h"
#include "server/nats_node.h"

enum opt_kind {
    OPT_UINT,     /* unsigned, decimal, in [lo, hi] */
    OPT_SIZE,     /* uint64_t bytes, K/M/G/T suffixes, in [lo, hi] */
    OPT_DURATION, /* int64_t ms of event time: a number and a unit (seconds without one) */
    OPT_MS,       /* int64_t ms, digits only */
    OPT_ENUM,     /* int, one of choices */
    OPT_STRING,   /* char[], shorter than the member; may be empty */
    OPT_PATH,     /* char[], shorter than the member; not empty */
    OPT_FLAG,     /* int: no value on the command line (`true` in a config file) */
    OPT_CONFIG,   /* --config FILE: command line only, read before the other options */
    OPT_ACTION,   /* --help, --version: handled by main, not options */
};

/* --help's sections, in order; each has its own text column. */
enum opt_section { SEC_SERVER, SEC_INGEST, SEC_QUERY, SEC_OTHER };

struct opt_choice {
    const char *name;
    int value;
};

/* help and md may hold %D (the default as given on the command line), %R (lo..hi) and %H
 * (hi), written the way the kind reads them, so that the text cannot disagree with the table. */
struct option {
    const char *name; /* without the dashes; the config file's key too (but for OPT_CONFIG) */
    const char *arg;  /* placeholder in --help, NULL for a flag */
    enum opt_kind kind;
    enum opt_section section;
    size_t off, size; /* the member of struct config */
    uint64_t lo, hi;
    const struct opt_choice *choices;   /* OPT_ENUM */
    int (*check)(const char *val);      /* beyond the kind's own checks: 0 or -EINVAL */
    const char *def;                    /* the default as given on the command line; NULL: 0/"" */
    const char *help;                   /* NULL: described with the option before it */
    const char *md_default;             /* README's default column when not def */
    const char *md;                     /* README's meaning column; NULL: not in README */
};

#define AT(m) .off = offsetof(struct config, m), .size = sizeof(((struct config *)0)->m)
#define MIB   (1ull << 20)

_Static_assert(sizeof(enum wal_fsync) == sizeof(int), "OPT_ENUM stores an int");
_Static_assert(sizeof(uint32_t) == sizeof(unsigned), "OPT_UINT stores an unsigned");

static const struct opt_choice fsync_choices[] = {
    {"always", WAL_FSYNC_ALWAYS}, {"everysec", WAL_FSYNC_EVERYSEC}, {"no", WAL_FSYNC_NO}, {0}};
static const struct opt_choice yes_no[] = {{"yes", 1}, {"no", 0}, {0}};

static int check_hosts(const char *val)
{
    char why[256];
    return http_hosts_check(val, why, sizeof(why)) ? -EINVAL : 0;
}

/* --partitions: the syntax here; the range once the stream's P is known (server/nats_node.c) */
static int check_partitions(const char *val)
{
    char why[256];
    if (!*val)
        return 0;
    if (nats_node_parse_list(val, 4096, NULL, why, sizeof(why))) {
        fprintf(stderr, "cascaded: %s\n", why);
        return -EINVAL;
    }
    return 0;
}

/* --stream: a JetStream stream name that also makes a subject prefix */
static int check_stream(const char *val)
{
    if (!*val || strlen(val) >= 48 || strpbrk(val, ". *>\t/\\")) {
        fprintf(stderr, "cascaded: --stream '%s': a name of 1-47 characters without '.', ' ', "
                        "'*', '>' or slashes\n", val);
        return -EINVAL;
    }
    return 0;
}

/* --delete-durables: a node id as DATA_DIR/node-id holds it (hex digits) */
static int check_node_id(const char *val)
{
    if (*val && (strlen(val) < 4 || strspn(val, "0123456789abcdef") != strlen(val))) {
        fprintf(stderr, "cascaded: --delete-durables '%s': a node id is hex digits (the "
                        "<id> of its durables' names cascaded-<id>-p<N>)\n", val);
        return -EINVAL;
    }
    return 0;
}

/* --cluster: HOST:PORT[,HOST:PORT...] */
static int check_cluster(const char *val)
{
    char why[256];
    if (!*val)
        return 0;
    if (cluster_parse_check(val, why, sizeof(why))) {
        fprintf(stderr, "cascaded: %s\n", why);
        return -EINVAL;
    }
    return 0;
}

static const struct option options[] = {
    {.name = "bind", .arg = "ADDR", .kind = OPT_STRING, AT(bind), .def = "127.0.0.1",
     .help = "IPv4 address to listen on (default %D; anything else exposes the ports: use "
             "--auth-token-file, and TLS in front)",
     .md = "IPv4 address to listen on (anything else exposes the ports: see [Running in "
           "production](#running-in-production))"},
    {.name = "ingest-port", .arg = "N", .kind = OPT_UINT, AT(ports[NET_INGEST]), .hi = 65535,
     .def = "7400", .help = "ingest port (default %D; 0 picks a free port)",
     .md = "ingest port; 0 picks a free port"},
    {.name = "query-port", .arg = "N", .kind = OPT_UINT, AT(ports[NET_QUERY]), .hi = 65535,
     .def = "7401", .help = "msgpack-RPC query port (default %D; 0 picks a free port)",
     .md = "msgpack-RPC port; 0 picks a free port"},
    {.name = "http-port", .arg = "N", .kind = OPT_UINT, AT(ports[NET_HTTP]), .hi = 65535,
     .def = "7402",
     .help = "HTTP port: GET /v1/<method>?..., /metrics, /healthz (default %D; 0 picks a free "
             "port)",
     .md = "HTTP port (`/v1/<method>`, `/metrics`, `/healthz`); 0 picks a free port"},
    {.name = "data-dir", .arg = "DIR", .kind = OPT_PATH, AT(data_dir), .def = "./cascaded-data",
     .help = "where the WAL and the snapshots live (default %D, created if missing)",
     .md = "where the write-ahead log and the snapshots live (created if missing)"},
    {.name = "fsync", .arg = "POLICY", .kind = OPT_ENUM, AT(fsync), .choices = fsync_choices,
     .def = "everysec",
     .help = "always: fsync before every ack; everysec: fsync once a second, acks after the "
             "write; no: leave it to the OS (default %D)",
     .md = "`always`: fsync before every ack; `everysec`: ack after the write, fsync once a "
           "second; `no`: leave it to the OS"},
    {.name = "snapshot-interval", .arg = "S", .kind = OPT_UINT, AT(snapshot_interval),
     .hi = 86400 * 365, .def = "300",
     .help = "write a snapshot of the engine to DIR/snapshots every S seconds when events "
             "arrived since (default %D; 0: only on the `snapshot` method or SIGUSR1); start-up "
             "loads the newest and replays only the WAL after it; WAL segments older than both "
             "kept snapshots are removed",
     .md = "write a snapshot of the engine every S seconds when events arrived since; 0: only "
           "on the `snapshot` method or SIGUSR1"},
    {.name = "snapshot-on-exit", .arg = "yes|no", .kind = OPT_ENUM, AT(snapshot_on_exit),
     .choices = yes_no, .def = "yes",
     .help = "on SIGTERM/SIGINT, after the last batch, write a snapshot when the WAL holds "
             "events after the newest one (default %D), so that the next start replays no WAL; "
             "it takes as long as a periodic one (~6.5 s at 10 M events)",
     .md = "on SIGTERM/SIGINT, after the last batch, write a snapshot when the WAL holds events "
           "after the newest one, so that the next start replays no WAL (as long as a periodic "
           "snapshot: ~6.5 s at 10 M events)"},
    {.name = "wal-segment-mb", .arg = "N", .kind = OPT_UINT, AT(wal_segment_mb), .lo = 1,
     .hi = 4096, .def = "64", .help = "start a new WAL segment past N MiB (default %D, %R)",
     .md = "start a new WAL segment past N MiB, %R (segments wholly before the older kept "
           "snapshot are removed)"},
    {.name = "allow-history-loss", .kind = OPT_FLAG, AT(allow_history_loss),
     .help = "start even when no snapshot can be loaded and the WAL's first segments were "
             "removed after one, or WAL segments are missing (without it cascaded refuses to "
             "start rather than silently lose those events; damaged records: see cascade-wal "
             "repair)",
     .md_default = "off",
     .md = "start even when no snapshot can be loaded and the WAL's first segments were "
           "removed after one, or when WAL segments are missing (a gap in their numbering, or "
           "none left from the loaded snapshot's on); logs `history_lost` (without it, "
           "cascaded refuses to start rather than silently drop those events)"},
    {.name = "max-memory", .arg = "SIZE", .kind = OPT_SIZE, AT(max_memory), .hi = UINT64_MAX,
     .def = "0",
     .help = "once the process's resident set as the kernel counts it (VmRSS), plus the "
             "pages a snapshot's child holds alone (copy-on-write copies made while it "
             "writes), reaches SIZE (e.g. 8G, 512M; default %D: no limit), ingest is refused "
             "with a fatal message saying which event to resend from; queries go on",
     .md_default = "%D (none)",
     .md = "once the process's resident set as the kernel counts it (VmRSS), plus the pages "
           "a snapshot's child holds alone (copy-on-write copies made while it writes), "
           "reaches SIZE (`8G`, `512M`), ingest is refused with a message saying which event "
           "to resend from; queries go on"},
    {.name = "max-connections", .arg = "N", .kind = OPT_UINT, AT(max_conns), .lo = 1,
     .hi = 1u << 20, .def = "1024",
     .help = "open connections at most, all ports together (default %D; lowered at start, with "
             "a log line, to what the open-files limit holds after raising it to its hard "
             "limit); more are refused with an error in the port's protocol",
     .md = "open connections at most, all ports together; one more gets an error in its port's "
           "protocol and is closed. Lowered at start, with a `max_connections_lowered` log "
           "line, when the open-files limit (raised to its hard limit first) cannot hold it "
           "beside the server's own fds and a margin of 32; refused below 8"},
    {.name = "max-ingest-connections", .arg = "N", .kind = OPT_UINT, AT(port_conns[NET_INGEST]),
     .lo = 1, .hi = 1u << 20,
     .help = "each port's own budget, so that one port's clients cannot take the others' "
             "connections (default: a quarter of --max-connections each for ingest and query, "
             "the rest for HTTP, where a browser opens several; keep their sum within "
             "--max-connections)",
     .md_default = "a quarter of `--max-connections`",
     .md = "the ingest port's own budget, so that silent or stuck producers cannot take the "
           "connections queries need"},
    {.name = "max-query-connections", .arg = "N", .kind = OPT_UINT, AT(port_conns[NET_QUERY]),
     .lo = 1, .hi = 1u << 20, .md_default = "a quarter of `--max-connections`",
     .md = "the query port's own budget"},
    {.name = "max-http-connections", .arg = "N", .kind = OPT_UINT, AT(port_conns[NET_HTTP]),
     .lo = 1, .hi = 1u << 20, .md_default = "the rest (half)",
     .md = "the HTTP port's own budget (browsers open several connections each); keep the three "
           "within `--max-connections`"},
    {.name = "handshake-timeout", .arg = "S", .kind = OPT_UINT, AT(handshake_timeout), .lo = 1,
     .hi = 3600, .def = "10",
     .help = "an HTTP request head (from the connection's start, or from its first byte), or "
             "with --auth-token-file an ingest or RPC auth, not complete within S seconds: an "
             "error, then closed (default %D, %R)",
     .md = "an HTTP request head (counted from the connection's start, or from its first byte "
           "on a kept-alive one), or with `--auth-token-file` an ingest or RPC auth, not "
           "complete within S seconds: an error (HTTP 408, RPC error 408, ingest `fatal`), "
           "then closed; %R"},
    {.name = "idle-timeout", .arg = "S", .kind = OPT_UINT, AT(idle_timeout), .hi = 86400,
     .def = "300",
     .help = "close a query or HTTP connection, or an ingest one that has sent no event yet, "
             "that received and sent nothing, with no request at work, for S seconds (RPC: "
             "error 408, ingest: a fatal; default %D, 0: never, at most %H). Producers that "
             "sent events may stay quiet: TCP keepalive finds vanished ones",
     .md = "a query or HTTP connection, or an ingest one that has sent no event yet, that "
           "received and sent nothing, with no request at work, for S seconds is closed (RPC: "
           "error 408, ingest: a `fatal`, HTTP keep-alive: just closed); 0: never, at most %H. "
           "Producers that have sent events may stay quiet as long as they like: TCP keepalive "
           "(60 s, then 6 probes 10 s apart) closes those that are gone"},
    {.name = "max-future-ms", .arg = "N", .kind = OPT_MS, AT(limits.max_future_ms),
     .def = "86400000",
     .help = "an event whose ts is more than N ms past the server's clock is rejected as "
             "bad_ts, as is a negative ts (default %D, a day; 0: no future check). Only at "
             "ingest: the WAL replays what was accepted, even if the clock has gone back since",
     .md = "an event whose `ts` is more than N ms past the server's clock is rejected as "
           "`bad_ts` (a negative `ts` always is); 0: no future check. Checked at ingest only: "
           "the WAL replays what was accepted"},
    {.name = "retention", .arg = "DURATION", .kind = OPT_DURATION, AT(retention_ms), .def = "0",
     .help = "evict each cascade, with its posts, once its last post is more than DURATION "
             "(e.g. 30d, 12h, 90m, 3600s; a number alone is seconds) older than the newest "
             "event's ts (default %D: keep everything). Metrics then cover retained posts only; "
             "an actor or content with none left is unknown; growth windows longer than "
             "DURATION are refused. Evicted posts stay in the WAL until a snapshot lets it be "
             "pruned",
     .md_default = "%D (keep all)",
     .md = "evict each cascade, with its posts, once its last post is more than DURATION "
           "(`30d`, `12h`, `90m`, `3600s`; a bare number is seconds) older than the newest "
           "event; see [Running in production](#running-in-production)"},

    {.name = "max-value-bytes", .arg = "N", .kind = OPT_UINT, .section = SEC_INGEST,
     AT(limits.max_value_bytes), .lo = 1024, .hi = 16 * MIB, .def = "4194304",
     .help = "one msgpack value, an event or an array of them (default %D, %R)",
     .md = "ingest: one msgpack value (an event or an array of them), %R"},
    {.name = "max-value-memory", .arg = "SIZE", .kind = OPT_SIZE, .section = SEC_INGEST,
     AT(limits.max_value_memory), .lo = MIB, .hi = 4096 * MIB, .def = "64M",
     .help = "what decoding one value may allocate, counted from its headers before it is "
             "decoded (default %D, %R; 4 MiB of typical events take ~18M, the worst 4 MiB "
             "~130M). All connections' values together get a quarter of --max-memory (1G "
             "without it): a value finding no room is refused, to be resent later. An RPC "
             "request past it gets error 413",
     .md = "ingest and RPC requests: what unpacking one value (or request) may allocate, "
           "counted from its headers before any of it is unpacked (%R; 4 MiB of typical events "
           "take ~18M, 100,000 arrays of 38 nils ~130M); all connections' values in flight "
           "share a quarter of `--max-memory` (1G without it), and a value that finds no room "
           "is refused with a `fatal` to resend it later"},
    {.name = "max-string-bytes", .arg = "N", .kind = OPT_UINT, .section = SEC_INGEST,
     AT(limits.max_str), .lo = 256, .hi = 16 * MIB, .def = "65536",
     .help = "one string (default %D, %R; the fields of an event have tighter bounds of their "
             "own, DESIGN §2)",
     .md = "ingest and RPC requests: one string, %R (event fields have tighter bounds of their "
           "own, DESIGN §2)"},
    {.name = "max-array", .arg = "N", .kind = OPT_UINT, .section = SEC_INGEST,
     AT(limits.max_array), .lo = 1, .hi = 10000000, .def = "100000",
     .help = "elements of one array (default %D, %R)",
     .md = "ingest and RPC requests: elements of one array, %R"},
    {.name = "max-map-keys", .arg = "N", .kind = OPT_UINT, .section = SEC_INGEST,
     AT(limits.max_map), .lo = 8, .hi = 65536, .def = "64",
     .help = "keys of one map (default %D, %R)",
     .md = "ingest and RPC requests: keys of one map, %R"},
    {.name = "max-depth", .arg = "N", .kind = OPT_UINT, .section = SEC_INGEST,
     AT(limits.max_depth), .lo = 2, .hi = 32, .def = "8",
     .help = "nesting of arrays and maps (default %D, %R)",
     .md = "ingest and RPC requests: nesting of arrays and maps, %R"},

    {.name = "max-rpc-request-bytes", .arg = "N", .kind = OPT_UINT, .section = SEC_QUERY,
     AT(rpc_max), .lo = 4096, .hi = 64 * MIB, .def = "1048576",
     .help = "one msgpack-RPC request (default %D, %R)",
     .md = "one msgpack-RPC request, %R (past it: error 413, connection closed)"},
    {.name = "max-http-head-bytes", .arg = "N", .kind = OPT_UINT, .section = SEC_QUERY,
     AT(http.head_max), .lo = 1024, .hi = MIB, .def = "16384",
     .help = "request line and headers (default %D, %R): 431",
     .md = "HTTP request line and headers, %R (past it: 431)"},
    {.name = "max-http-target-bytes", .arg = "N", .kind = OPT_UINT, .section = SEC_QUERY,
     AT(http.target_max), .lo = 256, .hi = MIB, .def = "8192",
     .help = "path and query string (default %D, %R, at most the head): 414",
     .md = "HTTP path and query string, %R, at most the head (past it: 414)"},
    {.name = "http-allowed-hosts", .arg = "LIST", .kind = OPT_STRING, .section = SEC_QUERY,
     AT(http_allowed_hosts), .check = check_hosts,
     .help = "host names (comma-separated, any port) the HTTP port answers besides IP addresses "
             "and localhost, '*' for any; another Host gets 421, so that a page whose DNS name "
             "was pointed at this address (DNS rebinding) cannot read it (default: none)",
     .md = "host names (comma-separated, any port; `*`: any) the HTTP port answers besides IP "
           "addresses and `localhost`; another `Host` gets 421 (against DNS rebinding)"},

    {.name = "analytics-interval", .arg = "S", .kind = OPT_UINT, .section = SEC_OTHER,
     AT(analytics_interval), .hi = 86400 * 365, .def = "60",
     .help = "recompute PageRank, communities and coordination on a fresh snapshot every S "
             "seconds when events arrived since (default %D; 0: only when asked, with the "
             "`analytics` method's refresh=true)",
     .md = "take a new analytics snapshot every S seconds when events arrived since; 0: only "
           "on `analytics refresh=true`"},
    {.name = "nats", .arg = "URL[,URL...]", .kind = OPT_STRING, .section = SEC_OTHER, AT(nats),
     .help = "run as a cluster node (DESIGN §9, docs/cluster.md): consume the partitions of "
             "--partitions from the JetStream stream at these NATS servers, each message logged "
             "in the WAL with its stream sequence before it is acked and applied (once, by "
             "sequence); the ingest port then refuses events (the stream is the way in)",
     .md = "run as a cluster node: consume the partitions of `--partitions` from the JetStream "
           "stream at these NATS servers; each message is logged in the WAL with its stream "
           "sequence before it is acked, and applied once; the ingest port refuses events "
           "([docs/cluster.md](docs/cluster.md#nodes-built))"},
    {.name = "partitions", .arg = "LIST", .kind = OPT_STRING, .section = SEC_OTHER,
     AT(partitions), .check = check_partitions,
     .help = "with --nats: the partitions this node holds, e.g. 0-7,12 (required with --nats)",
     .md = "with `--nats`: the partitions this node holds, e.g. `0-7,12`"},
    {.name = "stream", .arg = "NAME", .kind = OPT_STRING, .section = SEC_OTHER, AT(stream),
     .check = check_stream, .def = "SHARES",
     .help = "with --nats: the stream (default %D; subjects: its name in lower case, .0 .. .P-1)",
     .md = "with `--nats`: the stream (subjects: its name in lower case, `.0` .. `.P-1`)"},
    {.name = "stream-partitions", .arg = "P", .kind = OPT_UINT, .section = SEC_OTHER,
     AT(stream_partitions), .lo = 1, .hi = 4096, .def = "16",
     .help = "with --nats: P and R when the node creates the stream because it is missing "
             "(defaults %D and 1; an existing stream's own P and R win)",
     .md = "with `--nats`: P when the node creates the stream because it is missing (an existing "
           "stream's own P wins)"},
    {.name = "stream-replicas", .arg = "R", .kind = OPT_UINT, .section = SEC_OTHER,
     AT(stream_replicas), .lo = 1, .hi = 5, .def = "1",
     .md = "with `--nats`: R when the node creates the stream (an existing stream's own R wins)"},
    {.name = "delete-durables", .arg = "NODE_ID", .kind = OPT_STRING, .section = SEC_OTHER,
     AT(delete_durables), .check = check_node_id,
     .help = "with --nats (and --stream): do not serve; delete the durables of a cluster node "
             "lost for good (cascaded-NODE_ID-p<N>, which keep every message as unacked work "
             "for nobody), print their names and exit 0; a running node makes its own again "
             "(docs/cluster.md)",
     .md = "with `--nats`, command line only: do not serve; delete the durables "
           "`cascaded-NODE_ID-p<N>` of a node lost for good, print their names and exit "
           "([docs/cluster.md]"
           "(docs/cluster.md#losing-a-node-for-good-built))"},
    {.name = "cluster", .arg = "HOST:QPORT[,...]", .kind = OPT_STRING, .section = SEC_OTHER,
     AT(cluster), .check = check_cluster,
     .help = "be the cluster's query endpoint (DESIGN §9): hold no data, answer every query "
             "by asking these nodes' query ports and merging their answers exactly "
             "(docs/cluster.md); the ingest port refuses events",
     .md = "be the cluster's query endpoint: hold no data, answer every query by asking these "
           "nodes' query ports and merging their answers exactly ([docs/cluster.md]"
           "(docs/cluster.md#the-cluster-endpoint-built))"},
    {.name = "auth-token-file", .arg = "FILE", .kind = OPT_PATH, .section = SEC_OTHER,
     AT(auth_token_file),
     .help = "a shared secret (16-1024 printable bytes) every client must present: ingest "
             "streams begin with {\"auth\": TOKEN}, RPC connections call `auth` token=TOKEN "
             "first, HTTP requests to /v1 and /metrics carry `Authorization: Bearer TOKEN` "
             "(default: none; the page itself and /healthz stay open)",
     .md = "a shared secret (16–1024 printable bytes) every client must present (see "
           "Protocols); the page itself and `/healthz` stay open"},
    {.name = "config", .arg = "FILE", .kind = OPT_CONFIG, .section = SEC_OTHER,
     .help = "read `key = value` lines (keys are these option names without the dashes; # "
             "starts a comment); options given on the command line win over the file",
     .md = "`key = value` lines with the same names, `#` comments; flags on the command line "
           "win"},
    {.name = "help", .kind = OPT_ACTION, .section = SEC_OTHER, .help = "this text"},
    {.name = "version", .kind = OPT_ACTION, .section = SEC_OTHER, .help = "the version"},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

/* ------------------------------------------------------------------ parsing */

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

static const struct option *find_option(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (!strcmp(options[i].name, name))
            return &options[i];
    return NULL;
}

/* val into o's member of c when it is of o's kind and within its bounds: 0 or -EINVAL. */
static int apply(const struct option *o, struct config *c, const char *val)
{
    char *m = (char *)c + o->off;
    int rc = -EINVAL;
    switch (o->kind) {
    case OPT_UINT: {
        unsigned v;
        if (o->hi > UINT_MAX || parse_uint(val, (unsigned)o->hi, &v) || v < o->lo)
            return -EINVAL;
        memcpy(m, &v, sizeof(v));
        rc = 0;
        break;
    }
    case OPT_SIZE: {
        uint64_t v;
        if (parse_size(val, &v) || v < o->lo || v > o->hi)
            return -EINVAL;
        memcpy(m, &v, sizeof(v));
        rc = 0;
        break;
    }
    case OPT_DURATION:
    case OPT_MS: {
        int64_t v;
        if ((o->kind == OPT_MS ? parse_ms(val, &v) : parse_duration(val, &v)))
            return -EINVAL;
        memcpy(m, &v, sizeof(v));
        rc = 0;
        break;
    }
    case OPT_ENUM:
        for (const struct opt_choice *ch = o->choices; ch->name; ch++)
            if (!strcmp(val, ch->name)) {
                memcpy(m, &ch->value, sizeof(ch->value));
                rc = 0;
            }
        break;
    case OPT_PATH:
    case OPT_STRING:
        if ((o->kind == OPT_PATH && !*val) || strlen(val) >= o->size)
            return -EINVAL;
        rc = 0;
        break;
    case OPT_FLAG:
        if (strcmp(val, "true"))
            return -EINVAL;
        *(int *)(void *)m = 1;
        rc = 0;
        break;
    case OPT_CONFIG:
    case OPT_ACTION:
        break;
    }
    if (!rc && o->check)
        rc = o->check(val);
    /* a string is stored only once it passed every check */
    if (!rc && (o->kind == OPT_STRING || o->kind == OPT_PATH))
        snprintf(m, o->size, "%s", val);
    return rc;
}

/* Applies one option (name without dashes). A message on stderr and -EINVAL when bad. */
static int set_option(struct config *c, const char *key, const char *val, const char *where)
{
    const struct option *o = find_option(key);
    if (!o || o->kind == OPT_CONFIG || o->kind == OPT_ACTION) {
        fprintf(stderr, "cascaded: %sunknown option %s (see cascaded --help)\n", where, key);
        return -EINVAL;
    }
    int rc = apply(o, c, val);
    if (rc)
        fprintf(stderr, "cascaded: %sbad value for %s: '%s' (see cascaded --help)\n", where, key,
                val);
    return rc;
}

static int config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    ingest_limits_default(&c->limits); /* what the table does not set (none today) */
    http_limits_default(&c->http);
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].def && set_option(c, options[i].name, options[i].def, "default: "))
            return -EINVAL; /* a table mistake: test_options runs every default */
    return 0;
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
        const char *key = trim(s);
        if (!strcmp(key, "delete-durables")) { /* an action, not a setting: every start would */
            fprintf(stderr,
                    "cascaded: %sdelete-durables is for the command line only (in a config "
                    "file every start would delete the durables and exit)\n",
                    where);
            rc = -EINVAL;
            break;
        }
        rc = set_option(c, key, trim(eq + 1), where);
    }
    fclose(f);
    return rc;
}

/* One `--key value`, `--key=value` or value-less flag at argv[*i]: its key, option (NULL when
 * unknown) and value (NULL when missing); *i moves past what it took. -EINVAL (with a message)
 * for something that is not an option. */
static int take_arg(int argc, char **argv, int *i, char key[64], const struct option **o,
                    const char **val)
{
    const char *a = argv[*i];
    if (strncmp(a, "--", 2) || !a[2]) {
        fprintf(stderr, "cascaded: unexpected argument '%s' (see cascaded --help)\n", a);
        return -EINVAL;
    }
    const char *eq = strchr(a, '=');
    snprintf(key, 64, "%.*s", (int)(eq ? eq - a - 2 : (long)strlen(a + 2)), a + 2);
    *o = find_option(key);
    /* a flag takes no value (in a config file: allow-history-loss = true) */
    int flag = !eq && *o && (*o)->kind == OPT_FLAG;
    *val = eq ? eq + 1 : flag ? "true" : (*i + 1 < argc ? argv[++*i] : NULL);
    return 0;
}

int options_parse(int argc, char **argv, struct config *c)
{
    char key[64];
    const struct option *o;
    const char *val;
    if (config_defaults(c))
        return -EINVAL;
    /* the config file first (--config FILE or --config=FILE, wherever it is), then the rest */
    for (int i = 1; i < argc; i++) {
        if (take_arg(argc, argv, &i, key, &o, &val))
            return -EINVAL;
        if (!o || o->kind != OPT_CONFIG)
            continue;
        if (!val || !*val) {
            fprintf(stderr, "cascaded: --config needs a file\n");
            return -EINVAL;
        }
        if (read_config_file(c, val))
            return -EINVAL;
    }
    for (int i = 1; i < argc; i++) {
        if (take_arg(argc, argv, &i, key, &o, &val))
            return -EINVAL;
        if (!val) {
            fprintf(stderr, "cascaded: --%s needs a value\n", key);
            return -EINVAL;
        }
        if (o && o->kind == OPT_CONFIG)
            continue; /* read above */
        if (set_option(c, key, val, ""))
            return -EINVAL;
    }
    if (c->http_allowed_hosts[0])
        c->http.allowed_hosts = c->http_allowed_hosts;
    if (c->delete_durables[0] && !c->nats[0]) {
        fprintf(stderr, "cascaded: --delete-durables needs --nats URL (the servers of the "
                        "stream)\n");
        return -EINVAL;
    }
    if (c->nats[0] && !c->partitions[0] && !c->delete_durables[0]) {
        fprintf(stderr, "cascaded: --nats needs --partitions LIST (the partitions this node "
                        "holds, e.g. 0-7)\n");
        return -EINVAL;
    }
    if (!c->nats[0] && c->partitions[0]) {
        fprintf(stderr, "cascaded: --partitions is for a cluster node: give --nats URL too\n");
        return -EINVAL;
    }
    if (c->http.target_max > c->http.head_max) {
        fprintf(stderr,
                "cascaded: --max-http-target-bytes (%u) cannot exceed --max-http-head-bytes "
                "(%u): the target is part of the head\n",
                c->http.target_max, c->http.head_max);
        return -EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------------ documentation */

/* v as the option's kind would read it back: SIZE with the largest exact suffix, a count of
 * whole MiB as "N MiB", anything else in decimal. */
static void format_value(const struct option *o, uint64_t v, char *buf, size_t len)
{
    if (o->kind == OPT_SIZE) {
        const char *units = "TGMK";
        for (int i = 0; units[i]; i++) {
            unsigned shift = 10u * (unsigned)(4 - i);
            if (v && !(v & ((1ull << shift) - 1))) {
                snprintf(buf, len, "%llu%c", (unsigned long long)(v >> shift), units[i]);
                return;
            }
        }
    } else if (v >= MIB && !(v % MIB)) {
        snprintf(buf, len, "%llu MiB", (unsigned long long)(v / MIB));
        return;
    }
    snprintf(buf, len, "%llu", (unsigned long long)v);
}

/* text with %D, %R and %H replaced (see struct option) into buf. */
static void expand(const struct option *o, const char *text, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    for (const char *p = text; *p && n + 1 < len; p++) {
        char v[80] = "", lo[32], hi[32];
        if (p[0] != '%' || !p[1] || !strchr("DRH", p[1])) {
            buf[n++] = *p;
            buf[n] = 0;
            continue;
        }
        format_value(o, o->lo, lo, sizeof(lo));
        format_value(o, o->hi, hi, sizeof(hi));
        if (p[1] == 'D')
            snprintf(v, sizeof(v), "%s", o->def ? o->def : "");
        else if (p[1] == 'R')
            snprintf(v, sizeof(v), "%s..%s", lo, hi);
        else
            snprintf(v, sizeof(v), "%s", hi);
        n += (size_t)snprintf(buf + n, len - n, "%s", v);
        if (n >= len)
            n = len - 1;
        p++;
    }
}

/* Columns a string takes on a terminal: UTF-8 continuation bytes take none. */
static size_t width(const char *s, size_t len)
{
    size_t w = 0;
    for (size_t i = 0; i < len; i++)
        w += ((unsigned char)s[i] & 0xC0) != 0x80;
    return w;
}

#define HELP_WIDTH 89 /* the longest line --help prints */

/* text, starting at column `at` of the current line, wrapped at spaces to HELP_WIDTH with
 * continuation lines indented to col. */
static void wrap(FILE *out, const char *text, size_t at, size_t col)
{
    const char *p = text;
    for (int first = 1; *p; first = 0) {
        const char *sp = strchr(p, ' ');
        size_t wlen = sp ? (size_t)(sp - p) : strlen(p);
        size_t w = width(p, wlen);
        if (!first && at + 1 + w > HELP_WIDTH) {
            fprintf(out, "\n%*s", (int)col, "");
            at = col;
        } else if (!first) {
            fputc(' ', out);
            at++;
        }
        fwrite(p, 1, wlen, out);
        at += w;
        p += wlen;
        while (*p == ' ')
            p++;
    }
    fputc('\n', out);
}

static const char usage_head[] =
    "usage: cascaded [options]\n"
    "\n"
    "Tracks how content spreads: share events in on the ingest port (msgpack), cascade and\n"
    "actor metrics out on the query port (msgpack-RPC) and the HTTP port (JSON, CSV,\n"
    "Prometheus /metrics, and a web view at http://ADDR:HTTP-PORT/). Every accepted event is\n"
    "written to a write-ahead log in the data dir before it is acknowledged; start-up loads\n"
    "the newest snapshot and replays the log after it.\n"
    "\n";

static const struct {
    const char *intro, *outro;
    size_t col; /* where the help texts start */
} sections[] = {
    [SEC_SERVER] = {"", "", 26},
    [SEC_INGEST] =
        {"\n"
         "Ingest limits, checked as bytes arrive, before anything is allocated; a stream that\n"
         "breaks one gets {\"fatal\": \"... exceeds the limit ...\"} and is closed (counted in\n"
         "/metrics as cascaded_limit_violations_total):\n",
         "The last four also bound each msgpack-RPC request on the query port (never below what\n"
         "a request needs: 4 elements, 3 levels, a token's length).\n",
         26},
    [SEC_QUERY] = {"Query limits (a request past one gets an error saying which, counted the "
                   "same way):\n",
                   "", 29},
    [SEC_OTHER] = {"\n", "", 26},
};

static const char usage_tail[] =
    "\n"
    "When every port serves, one line goes to stdout: ready ingest=PORT query=PORT http=PORT\n"
    "Logs go to stderr, one `level=... ts=... event=...` line each. SIGTERM or SIGINT: stop\n"
    "accepting, finish what was received, flush the WAL, write a snapshot (see\n"
    "--snapshot-on-exit), exit 0. SIGUSR1: write a snapshot.\n";

/* "--name ARG" into buf; returns its length. */
static size_t flag_text(const struct option *o, char *buf, size_t len)
{
    int n = snprintf(buf, len, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
    return n < 0 ? 0 : (size_t)n >= len ? len - 1 : (size_t)n;
}

void options_usage(FILE *out)
{
    fputs(usage_head, out);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *o = &options[i];
        if (i == 0 || o->section != options[i - 1].section) {
            if (i)
                fputs(sections[options[i - 1].section].outro, out);
            fputs(sections[o->section].intro, out);
        }
        /* options that share a text are listed together before it */
        char flags[256], one[96], text[1024];
        size_t n = (size_t)snprintf(flags, sizeof(flags), "  ");
        size_t j = i;
        do {
            flag_text(&options[j], one, sizeof(one));
            n += (size_t)snprintf(flags + n, sizeof(flags) - n, "%s%s", j > i ? ", " : "", one);
        } while (++j < N_OPTIONS && !options[j].help && n < sizeof(flags) - sizeof(one));
        size_t col = sections[o->section].col;
        fputs(flags, out);
        if (n < col) { /* pad to the column */
            fprintf(out, "%*s", (int)(col - n), "");
        } else if (n <= col + 2) { /* a little past it: two spaces, as --snapshot-on-exit */
            fputs("  ", out);
            n += 2;
        } else { /* the text on the next line */
            fprintf(out, "\n%*s", (int)col, "");
            n = col;
        }
        expand(o, o->help, text, sizeof(text));
        wrap(out, text, n < col ? col : n, col);
        i = j - 1;
    }
    fputs(sections[options[N_OPTIONS - 1].section].outro, out);
    fputs(usage_tail, out);
}

/* s with '|' escaped for a markdown table cell. */
static void md_cell(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputc('\\', out);
        fputc(*s, out);
    }
}

void options_markdown(FILE *out)
{
    fputs("| flag | default | meaning |\n| --- | --- | --- |\n", out);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *o = &options[i];
        char buf[1024];
        if (!o->md)
            continue;
        fputs("| `", out);
        flag_text(o, buf, sizeof(buf));
        md_cell(out, buf);
        fputs("` | ", out);
        expand(o, o->md_default ? o->md_default : o->def ? o->def : "", buf, sizeof(buf));
        md_cell(out, buf);
        fputs(*buf ? " | " : "| ", out);
        expand(o, o->md, buf, sizeof(buf));
        md_cell(out, buf);
        fputs(" |\n", out);
    }
}
