/* cascade-bench: the benchmark client (DESIGN §7, §8). `ingest` sends generated, pre-encoded
 * events flat out; `query` sends point queries open-loop at a fixed rate; `mixed` does both at
 * once (ingest flat out, or open-loop at --ingest-rate) and sets the client's latency tails beside
 * the server's own histogram. Every mode ends with the server's engine-thread pauses from `stats`.
 * This file holds the command line, the helpers every module uses, and the order of the phases. */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cascade/client.h"
#include "cascade_bench.h"

#define RATE_MAX          1000000.0
#define INGEST_RATE_MAX   1e9
#define SECONDS_MAX       86400.0
#define CONNECT_TIMEOUT_S 10.0

/* ---- helpers ---- */

uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

double secs(uint64_t ns)
{
    return (double)ns * 1e-9;
}

/* who: 0 for the whole process, 1 for the calling thread. */
double cpu_seconds(int who)
{
    struct rusage ru;
    if (getrusage(who ? RUSAGE_THREAD : RUSAGE_SELF, &ru))
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

void sleep_ns(uint64_t ns)
{
    struct timespec t = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&t, &t) && errno == EINTR)
        ;
}

const char *bench_token;

int connect_port(const char *host, const char *port, enum bench_port kind)
{
    if (bench_token && kind == BENCH_RPC) {
        /* the `auth` request and its answer, then the bench runs its own loop on the fd */
        struct cc_rpc *r;
        char err[512];
        int rc = cc_rpc_open(host, port, CONNECT_TIMEOUT_S, bench_token, &r, err, sizeof err);
        if (rc == -EACCES)
            fprintf(stderr, PROG ": %s:%s refused the token (--auth-token-file)\n", host, port);
        else if (rc)
            fprintf(stderr, PROG ": %s\n", err);
        return rc ? rc : cc_rpc_detach(r);
    }
    int fd = connect_to(host, port);
    if (fd < 0 || !bench_token)
        return fd;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    proto_auth_pack_ingest(&pk, bench_token);
    int rc = send(fd, sb.data, sb.size, MSG_NOSIGNAL) == (ssize_t)sb.size ? 0 : -errno;
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        fprintf(stderr, PROG ": %s:%s refused the token (--auth-token-file)\n", host, port);
        close(fd);
        return rc;
    }
    return fd;
}

/* A blocking TCP connection with Nagle off (cc_connect): a batch's or a query's tail must not
 * wait for the previous segment's ACK, which is not the server's latency. */
int connect_to(const char *host, const char *port)
{
    char why[160];
    int fd = cc_connect(host, port, CONNECT_TIMEOUT_S, CC_BLOCKING, why, sizeof why);
    if (fd == -CC_ERESOLVE) {
        fprintf(stderr, PROG ": %s:%s: %s\n", host, port, why);
        return -EHOSTUNREACH;
    }
    if (fd < 0)
        fprintf(stderr, PROG ": cannot connect to %s:%s: %s\n", host, port, why);
    return fd;
}

/* ---- command line ---- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: cascade-bench ingest|query|mixed [options]\n"
        "  ingest  generate --events share events shaped like real cascades, msgpack-encode them\n"
        "          into arrays of --batch (before the clock starts), send them over --connections\n"
        "          as fast as the server takes them; report events/s, MB/s, ack latency (last\n"
        "          byte of a batch written -> first ack covering it) p50/p99/p999, the server's\n"
        "          RSS (peak and at the end, and per event) and the client's CPU time.\n"
        "  query   load --events generated events first (reported as the preload), then send\n"
        "          queries open-loop at --rate per second for --seconds over --connections\n"
        "          pipelined connections; latency runs from each query's scheduled send time to\n"
        "          its response. Reports achieved QPS, p50/p90/p99/p999/max per method and\n"
        "          overall, errors, and the server's own rpc latency histogram over the phase.\n"
        "  mixed   preload --preload events (post ids <prefix>l<k>: the queries' ids), then\n"
        "          ingest --events (flat out as `ingest` does, or at --ingest-rate) while queries\n"
        "          run at --rate on --query-connections other connections for as long as the\n"
        "          ingest lasts; reports both, and the server's histogram beside the client's\n"
        "          tails.\n"
        "Every command ends by asking the server for `stats` and reports its engine thread's\n"
        "pauses (pause_max_ms, pause_max_job, pauses_over_10ms, pause_max_ms_by_job: maxima\n"
        "since the server started, so a preload's pauses count too; how many over 10 ms\n"
        "fell in the timed phase, and whether the longest did, is reported beside them).\n"
        "Workload:\n"
        "  --events N          1..%llu, default 1000000\n"
        "  --batch B           events per array, 1..%u, default 1000\n"
        "  --connections C     ingest connections (for query: query connections), 1..%u,\n"
        "                      default 2\n"
        "  --window W          at most W unacked batches per ingest connection (default no limit)\n"
        "  --seed S            default 1 (same seed, same events and queries)\n"
        "  --prefix P          post ids are P<k>, default \"p\"; actors are u<k>\n"
        "  --timeout S         give up when no ack comes for S seconds, and wait up to S seconds\n"
        "                      for the answers still in flight when queries stop; default 60\n"
        "Queries (query, mixed):\n"
        "  --rate QPS          target queries per second, default 1000\n"
        "  --seconds S         query: how long to send, default 10\n"
        "  --mix M             method weights, default "
        "cascade=40,actor=30,path=20,top_cascades=10\n"
        "                      (cascade, actor, path: random loaded post / its actor;\n"
        "                      top_cascades: by size, limit 10)\n"
        "  --query-connections C  mixed: query connections, default 2\n"
        "  --preload N         mixed: events loaded before the timed phase, default events/10\n"
        "  --ingest-rate N     mixed: send the ingest open-loop at N events/s in all (each\n"
        "                      connection its share): batch k of a connection is due when its\n"
        "                      last event would exist at that rate, is sent then (not earlier;\n"
        "                      later only when the socket is full), and its ack latency runs\n"
        "                      from its due time, so a stalled server is charged for every\n"
        "                      batch that waited (no coordinated omission). 0 or absent: flat\n"
        "                      out, latency from the last byte written. Reports the target\n"
        "                      beside the achieved rate (acked events over first send to last\n"
        "                      ack) and how far a batch went behind its due time.\n"
        "  --ingest-rate P%%    mixed, 0 < P <= 100: after the preload, a calibration phase\n"
        "                      ingests --calibration-events other events (post ids\n"
        "                      <prefix>c<k>, seed+2) flat out with the queries at --rate\n"
        "                      beside them, exactly as a flat-out mixed run does; P %% of the\n"
        "                      ingest rate it achieved (acked events over first send to last\n"
        "                      ack) becomes N above, and the timed phase then ingests --events\n"
        "                      at N. The calibration's events stay in the server (the timed\n"
        "                      phase starts on a bigger engine than a flat-out run's); its\n"
        "                      rate and query p99 are reported, its latencies are not part of\n"
        "                      the timed phase's.\n"
        "  --calibration-events N  with --ingest-rate P%%: default --events, so that the rate\n"
        "                      is that of a flat-out run of the same size (a short one runs on\n"
        "                      smaller tables and overstates it)\n"
        "Server:\n"
        "  --server PATH       start PATH (cascaded) on 127.0.0.1 with free ports and a scratch\n"
        "                      data dir under $TMPDIR (removed after); stop it with SIGTERM at\n"
        "                      the end; it must exit 0\n"
        "  --fsync POLICY      always|everysec|no for --server, default everysec\n"
        "  --server-log FILE   keep the started server's stderr in FILE\n"
        "  --server-arg ARG    one more argument for --server's command line (repeat it, up\n"
        "                      to 16 times): e.g. --server-arg --retention --server-arg 24h\n"
        "  --host H            a running server (default 127.0.0.1) with\n"
        "  --port P --query-port P --http-port P  its ports (default 7400, 7401, 7402)\n"
        "  --server-pid PID    a running server's pid, for its RSS and CPU from /proc\n"
        "  --auth-token-file F the server's shared secret (cascaded --auth-token-file): sent\n"
        "                      first on every connection; --server passes it to the server\n"
        "Output:\n"
        "  --json FILE         also write every figure as one JSON object\n"
        "                      {\"command\", \"params\", \"results\"}\n"
        "  --progress          ingest: acked events each second on stderr\n"
        "  --poll METHOD       ingest, mixed: during the timed phase, one more RPC connection\n"
        "                      calls METHOD (no parameters; e.g. labels, stats) every\n"
        "                      --poll-every seconds (default 1), as a dashboard would; reports\n"
        "                      its calls, errors and latency p50/p99/max\n"
        "Exit status: 0 when every event was acked ok, every query answered without error and a\n"
        "started server exited 0; 1 otherwise; 2 on a usage or setup error.\n",
        (unsigned long long)EVENTS_MAX, BATCH_MAX, CONNS_MAX);
}

static int parse_u64(const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (!arg || *arg < '0' || *arg > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_u32(const char *v, uint32_t max, uint32_t *out)
{
    uint64_t x;
    if (parse_u64(v, 1, max, &x))
        return -1;
    *out = (uint32_t)x;
    return 0;
}

static int parse_pos(const char *v, double max, double *out)
{
    char *end;
    if (!v || !*v)
        return -1;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || *end || !(x > 0) || x > max)
        return -1;
    *out = x;
    return 0;
}

/* name=weight,...: the methods named get their weights, the others 0. */
static int parse_mix(const char *v, uint32_t mix[NMETHODS])
{
    char buf[256];
    uint32_t total = 0;
    if (!v || strlen(v) >= sizeof buf)
        return -1;
    memset(mix, 0, NMETHODS * sizeof *mix);
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        uint64_t w;
        int m = 0;
        if (!eq)
            return -1;
        *eq = 0;
        while (m < NMETHODS && strcmp(tok, method_names[m]))
            m++;
        if (m == NMETHODS || parse_u64(eq + 1, 0, 1000000, &w))
            return -1;
        mix[m] = (uint32_t)w;
        total += (uint32_t)w;
    }
    return total ? 0 : -1;
}

/* N (events/s, 0 for flat out) or P% (0 < P <= 100). */
static int parse_ingest_rate(const char *v, struct opts *o)
{
    char buf[64], *end;
    size_t len = v ? strlen(v) : 0;
    o->ingest_rate = o->ingest_pct = 0;
    if (len && len < sizeof buf && v[len - 1] == '%') {
        memcpy(buf, v, len - 1);
        buf[len - 1] = 0;
        return parse_pos(buf, 100.0, &o->ingest_pct);
    }
    if (!len || *v < '0' || *v > '9')
        return -1;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || *end || !(x >= 0) || x > INGEST_RATE_MAX)
        return -1;
    o->ingest_rate = x;
    return 0;
}

static const char **string_opt(struct opts *o, const char *a)
{
    return !strcmp(a, "--host")              ? &o->host
           : !strcmp(a, "--port")            ? &o->port
           : !strcmp(a, "--query-port")      ? &o->qport
           : !strcmp(a, "--http-port")       ? &o->hport
           : !strcmp(a, "--server")          ? &o->server
           : !strcmp(a, "--fsync")           ? &o->fsync
           : !strcmp(a, "--server-log")      ? &o->server_log
           : !strcmp(a, "--prefix")          ? &o->prefix
           : !strcmp(a, "--json")            ? &o->json
           : !strcmp(a, "--auth-token-file") ? &o->token_file
           : !strcmp(a, "--poll")            ? &o->poll
                                             : NULL;
}

/* Options that take a value: 0 when the value is good, -1 when bad, 1 for an unknown option. */
static int parse_valued(struct opts *o, const char *a, const char *v)
{
    uint64_t pid;
    if (!strcmp(a, "--events"))
        return parse_u64(v, 1, EVENTS_MAX, &o->events);
    if (!strcmp(a, "--preload"))
        return parse_u64(v, 1, EVENTS_MAX, &o->preload);
    if (!strcmp(a, "--seed"))
        return parse_u64(v, 0, UINT64_MAX, &o->seed);
    if (!strcmp(a, "--batch"))
        return parse_u32(v, BATCH_MAX, &o->batch);
    if (!strcmp(a, "--connections"))
        return parse_u32(v, CONNS_MAX, &o->conns);
    if (!strcmp(a, "--query-connections"))
        return parse_u32(v, CONNS_MAX, &o->qconns);
    if (!strcmp(a, "--window"))
        return parse_u32(v, UINT32_MAX, &o->window);
    if (!strcmp(a, "--timeout"))
        return parse_pos(v, SECONDS_MAX, &o->timeout);
    if (!strcmp(a, "--rate"))
        return parse_pos(v, RATE_MAX, &o->rate);
    if (!strcmp(a, "--seconds"))
        return parse_pos(v, SECONDS_MAX, &o->seconds);
    if (!strcmp(a, "--mix"))
        return parse_mix(v, o->mix);
    if (!strcmp(a, "--ingest-rate"))
        return parse_ingest_rate(v, o);
    if (!strcmp(a, "--poll-every"))
        return parse_pos(v, SECONDS_MAX, &o->poll_every);
    if (!strcmp(a, "--server-arg")) {
        if (!v || o->nserver_args == SERVER_ARGS_MAX)
            return -1;
        o->server_args[o->nserver_args++] = v;
        return 0;
    }
    if (!strcmp(a, "--calibration-events"))
        return parse_u64(v, 1, EVENTS_MAX, &o->calib_events);
    if (!strcmp(a, "--server-pid")) {
        if (parse_u64(v, 1, INT32_MAX, &pid))
            return -1;
        o->server_pid = (long)pid;
        return 0;
    }
    const char **dst = string_opt(o, a);
    if (!dst)
        return 1;
    *dst = v;
    return v && *v ? 0 : -1;
}

static int bad(const char *msg)
{
    fprintf(stderr, PROG ": %s\n", msg);
    return -EINVAL;
}

static int check_opts(const struct opts *o, int seen_seconds, int seen_q, int seen_irate)
{
    if (o->cmd != CMD_MIXED && (seen_irate || o->calib_events))
        return bad("--ingest-rate and --calibration-events are for mixed");
    if (o->calib_events && !(o->ingest_pct > 0))
        return bad("--calibration-events goes with --ingest-rate P%");
    if (strcmp(o->fsync, "always") && strcmp(o->fsync, "everysec") && strcmp(o->fsync, "no"))
        return bad("--fsync takes always, everysec or no");
    if (o->server && (o->port || o->host || o->qport || o->hport || o->server_pid))
        return bad("--server runs its own server: no --host, --port, --query-port, "
                   "--http-port or --server-pid");
    if (o->nserver_args && !o->server)
        return bad("--server-arg is for a server that --server starts");
    if (o->poll && o->cmd == CMD_QUERY)
        return bad("--poll is for ingest and mixed (query has its own --mix)");
    if (strlen(o->prefix) > 64)
        return bad("--prefix: at most 64 bytes");
    if (o->cmd == CMD_INGEST && seen_q)
        return bad("ingest sends no queries: no --rate, --mix, --query-connections or "
                   "--preload");
    if (o->cmd != CMD_QUERY && seen_seconds)
        return bad("--seconds is for query (mixed queries for as long as its ingest lasts)");
    if (o->cmd == CMD_QUERY && (o->qconns || o->preload))
        return bad("query: --connections sets its connections and --events what it loads");
    return 0;
}

static int parse_cmd(const char *a, enum cmd *cmd)
{
    static const char *const names[] = {"ingest", "query", "mixed"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(a, names[i])) {
            *cmd = (enum cmd)i;
            return 0;
        }
    return -1;
}

/* 0 to run, 1 after --help, -EINVAL on a usage error (told on stderr). */
static int parse_opts(int argc, char **argv, struct opts *o)
{
    int seen_seconds = 0, seen_q = 0, seen_irate = 0, have_cmd = 0;
    *o = (struct opts){.events = 1000000,
                       .seed = 1,
                       .batch = 1000,
                       .conns = 2,
                       .timeout = 60,
                       .rate = 1000,
                       .seconds = 10,
                       .mix = {40, 30, 20, 10},
                       .fsync = "everysec",
                       .poll_every = 1,
                       .prefix = "p"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--progress")) {
            o->progress = 1;
            continue;
        }
        if (!have_cmd && a[0] != '-') {
            if (parse_cmd(a, &o->cmd)) {
                fprintf(stderr, PROG ": unknown command '%s'\n", a);
                usage(stderr);
                return -EINVAL;
            }
            have_cmd = 1;
            continue;
        }
        int rc = parse_valued(o, a, v);
        if (rc == 0) {
            seen_seconds |= !strcmp(a, "--seconds");
            seen_irate |= !strcmp(a, "--ingest-rate");
            seen_q |= !strcmp(a, "--rate") || !strcmp(a, "--mix") ||
                      !strcmp(a, "--query-connections") || !strcmp(a, "--preload");
            i++;
            continue;
        }
        if (rc < 0)
            fprintf(stderr, PROG ": bad value for %s: '%s'\n", a, v ? v : "");
        else
            fprintf(stderr, PROG ": unknown argument '%s'\n", a);
        usage(stderr);
        return -EINVAL;
    }
    if (!have_cmd) {
        fprintf(stderr, PROG ": which benchmark: ingest, query or mixed?\n");
        usage(stderr);
        return -EINVAL;
    }
    if (!o->qconns && o->cmd == CMD_MIXED)
        o->qconns = 2;
    if (!o->preload && o->cmd == CMD_MIXED)
        o->preload = o->events / 10 ? o->events / 10 : 1;
    if (o->ingest_pct > 0 && !o->calib_events)
        o->calib_events = o->events;
    return check_opts(o, seen_seconds, seen_q, seen_irate);
}

/* ---- the run ---- */

struct run {
    struct opts o;
    struct server sv;
    char host[256], port[16], qport[16], hport[16];
    struct workload load, preload, cal;
    struct ingest in, pre, cal_in;
    struct query_result q, cal_q;
    struct hist before, after;
    struct pauses pauses_before, pauses;
    atomic_int stop;
    struct poller poll;
    int has_load, has_preload, has_query, has_cal, has_cal_query;
};

static int build(struct workload *w, const struct opts *o, uint64_t events, uint64_t seed,
                 const char *prefix, int keep_actors)
{
    struct load_spec spec = {
        .events = events, .seed = seed, .batch = o->batch, .conns = o->conns, .prefix = prefix};
    int rc = workload_build(w, &spec, keep_actors);
    if (rc)
        fprintf(stderr, PROG ": cannot build %" PRIu64 " events: %s\n", events, strerror(-rc));
    return rc;
}

/* Generates and encodes what the command sends, before anything is timed. */
static int prepare(struct run *r)
{
    static char pre_prefix[80], cal_prefix[80];
    const struct opts *o = &r->o;
    int rc = 0;
    if (o->cmd == CMD_QUERY) {
        rc = build(&r->preload, o, o->events, o->seed, o->prefix, 1);
        r->has_preload = rc == 0;
        return rc;
    }
    if (o->cmd == CMD_MIXED) {
        snprintf(pre_prefix, sizeof pre_prefix, "%sl", o->prefix);
        rc = build(&r->preload, o, o->preload, o->seed + 1, pre_prefix, 1);
        r->has_preload = rc == 0;
    }
    if (rc == 0 && o->ingest_pct > 0) {
        snprintf(cal_prefix, sizeof cal_prefix, "%sc", o->prefix);
        rc = build(&r->cal, o, o->calib_events, o->seed + 2, cal_prefix, 0);
        r->has_cal = rc == 0;
    }
    if (rc == 0) {
        rc = build(&r->load, o, o->events, o->seed, o->prefix, 0);
        r->has_load = rc == 0;
    }
    return rc;
}

static int connect_server(struct run *r)
{
    const struct opts *o = &r->o;
    snprintf(r->host, sizeof r->host, "%s", o->host ? o->host : "127.0.0.1");
    snprintf(r->port, sizeof r->port, "%s", o->port ? o->port : "7400");
    snprintf(r->qport, sizeof r->qport, "%s", o->qport ? o->qport : "7401");
    snprintf(r->hport, sizeof r->hport, "%s", o->hport ? o->hport : "7402");
    if (!o->server) {
        r->sv.pid = (pid_t)o->server_pid;
        return 0;
    }
    if (server_start(o, &r->sv))
        return -1;
    snprintf(r->port, sizeof r->port, "%u", r->sv.ingest);
    snprintf(r->qport, sizeof r->qport, "%u", r->sv.query);
    snprintf(r->hport, sizeof r->hport, "%u", r->sv.http);
    return 0;
}

/* A load that cannot start (no connection, no thread) is a setup error. */
static int run_ingest(struct run *r, struct ingest *in, const struct workload *w)
{
    int rc = ingest_start(in, w, r->host, r->port, r->o.window, r->o.timeout, 0);
    if (rc) {
        fprintf(stderr, PROG ": cannot start the ingest load: %s\n", strerror(-rc));
        ingest_free(in);
        return rc;
    }
    ingest_wait(in, r->o.progress);
    return 0;
}

struct query_arg {
    struct run *r;
    struct query_result *q;
};

static void *query_thread(void *arg)
{
    struct query_arg *a = arg;
    struct run *r = a->r;
    struct id_source ids = {r->preload.spec.prefix, r->preload.spec.events, r->preload.actor};
    query_run(&r->o, r->host, r->qport, &ids, &r->stop, a->q);
    return NULL;
}

/* Ingest (flat out, or open-loop at rate events/s) with queries beside it into q; the queries
 * stop when the last ack is in. *has_q: whether q holds a result. */
static int run_mixed(struct run *r, struct ingest *in, const struct workload *w, double rate,
                     struct query_result *q, int *has_q)
{
    pthread_t th;
    struct query_arg qa = {r, q};
    int rc = ingest_start(in, w, r->host, r->port, r->o.window, r->o.timeout, rate);
    if (rc) {
        fprintf(stderr, PROG ": cannot start the ingest load: %s\n", strerror(-rc));
        ingest_free(in);
        return rc;
    }
    atomic_store(&r->stop, 0);
    rc = pthread_create(&th, NULL, query_thread, &qa);
    *has_q = rc == 0;
    if (rc)
        fprintf(stderr, PROG ": cannot start the query thread: %s\n", strerror(rc));
    ingest_wait(in, r->o.progress);
    atomic_store(&r->stop, 1);
    if (*has_q)
        pthread_join(th, NULL);
    return rc ? -rc : 0;
}

static double acked_rate(const struct ingest_result *x)
{
    return x->seconds > 0 ? (double)(x->ok + x->dup + x->rej) / x->seconds : 0;
}

/* --ingest-rate P%: a flat-out mixed run of the calibration events sets the timed phase's rate. */
static int calibrate(struct run *r, double *rate)
{
    int rc = run_mixed(r, &r->cal_in, &r->cal, 0, &r->cal_q, &r->has_cal_query);
    if (rc)
        return rc;
    if (r->cal_in.r.failed || r->cal_in.r.ok != r->cal_in.r.events ||
        acked_rate(&r->cal_in.r) <= 0) {
        fprintf(stderr,
                PROG ": the calibration's events were not all acked ok (ok %" PRIu64 " of %" PRIu64
                     "): no flat-out rate to take %g %% of\n",
                r->cal_in.r.ok, r->cal_in.r.events, r->o.ingest_pct);
        return -EIO;
    }
    *rate = acked_rate(&r->cal_in.r) * r->o.ingest_pct / 100.0;
    return 0;
}

/* A preload that did not get in leaves nothing (or the wrong things) to query. */
static int preload_ok(const struct ingest_result *p)
{
    if (p->ok + p->dup == p->events)
        return 1;
    fprintf(stderr,
            PROG ": the preload was not all acked (ok %" PRIu64 " dup %" PRIu64 " rej %" PRIu64
                 " of %" PRIu64 ")\n",
            p->ok, p->dup, p->rej, p->events);
    return 0;
}

/* The timed phase after the preload and a calibration: the server's pauses are read before and
 * after it, its histogram around the queries. */
static int timed(struct run *r, double rate)
{
    struct id_source ids = {r->preload.spec.prefix, r->preload.spec.events, r->preload.actor};
    int rc = 0;
    server_pauses(r->host, r->qport, &r->pauses_before);
    if (r->o.poll && (rc = poll_start(&r->poll, r->host, r->qport, r->o.poll, r->o.poll_every,
                                      r->o.timeout))) {
        fprintf(stderr, PROG ": cannot start the --poll thread: %s\n", strerror(-rc));
        return rc;
    }
    if (r->o.cmd == CMD_INGEST) {
        rc = run_ingest(r, &r->in, &r->load);
        poll_stop(&r->poll);
        server_pauses(r->host, r->qport, &r->pauses);
        return rc;
    }
    metrics_histogram(r->host, r->hport, &r->before);
    if (r->o.cmd == CMD_QUERY) {
        r->has_query = 1;
        rc = query_run(&r->o, r->host, r->qport, &ids, NULL, &r->q);
        rc = rc == -ENOMEM ? rc : 0; /* other failures are in the result */
    } else {
        rc = run_mixed(r, &r->in, &r->load, rate, &r->q, &r->has_query);
    }
    poll_stop(&r->poll);
    metrics_histogram(r->host, r->hport, &r->after);
    server_pauses(r->host, r->qport, &r->pauses);
    return rc;
}

/* The phases, in order. */
static int measure(struct run *r)
{
    double rate = r->o.ingest_rate;
    int rc = 0;
    if (r->has_preload && (rc = run_ingest(r, &r->pre, &r->preload)))
        return rc;
    if (r->has_preload && !preload_ok(&r->pre.r))
        return -EIO;
    if (r->has_cal && (rc = calibrate(r, &rate)))
        return rc;
    return timed(r, rate);
}

static int judge(const struct run *r)
{
    int failed = 0;
    if (r->has_load && r->o.cmd != CMD_QUERY)
        failed |= r->in.r.failed;
    if (r->has_query)
        failed |= r->q.failed;
    if (r->has_cal_query)
        failed |= r->cal_q.failed;
    if (r->sv.started)
        failed |= r->sv.status != 0;
    if (r->o.poll)
        failed |= r->poll.r.failed || r->poll.r.errors || !r->poll.r.calls;
    return failed;
}

static int load_token(const char *path)
{
    char err[512], *token;
    int loose;
    if (proto_auth_token_load(path, &token, &loose, err, sizeof err)) {
        fprintf(stderr, PROG ": %s\n", err);
        return -1;
    }
    bench_token = token; /* lives until the process ends */
    return 0;
}

int main(int argc, char **argv)
{
    static struct run r; /* large: the server's paths and logs */
    int rc = parse_opts(argc, argv, &r.o);
    if (rc)
        return rc > 0 ? 0 : 2;
    signal(SIGPIPE, SIG_IGN);
    r.sv.out_fd = -1;
    if (r.o.token_file && load_token(r.o.token_file))
        return 2;
    rc = prepare(&r);
    double cpu0 = cpu_seconds(0);
    uint64_t t0 = now_ns();
    if (rc == 0)
        rc = connect_server(&r);
    if (rc == 0)
        rc = measure(&r);
    double cpu = cpu_seconds(0) - cpu0, wall = secs(now_ns() - t0);
    if (!r.sv.started && r.sv.pid > 0)
        server_sample(&r.sv);
    ingest_free(&r.pre); /* before the SIGTERM: the server waits for open connections */
    ingest_free(&r.cal_in);
    ingest_free(&r.in);
    server_finish(&r.sv);
    struct report rep = {.o = &r.o,
                         .load = r.has_load && r.in.r.events ? &r.load : NULL,
                         .preload = r.has_preload ? &r.preload : NULL,
                         .ingest = r.has_load && r.in.r.events ? &r.in.r : NULL,
                         .preload_in = r.has_preload && r.pre.r.events ? &r.pre.r : NULL,
                         .calib = r.has_cal && r.cal_in.r.events ? &r.cal : NULL,
                         .calib_in = r.has_cal && r.cal_in.r.events ? &r.cal_in.r : NULL,
                         .calib_query = r.has_cal_query ? &r.cal_q : NULL,
                         .pauses_before = &r.pauses_before,
                         .pauses = &r.pauses,
                         .query = r.has_query ? &r.q : NULL,
                         .sv = &r.sv,
                         .before = &r.before,
                         .after = r.has_query ? &r.after : NULL,
                         .poll = r.o.poll ? &r.poll.r : NULL,
                         .client_cpu_s = cpu,
                         .wall_s = wall,
                         .failed = judge(&r)};
    if (rc == 0) {
        report_print(&rep);
        int jrc = r.o.json ? report_json(&rep, r.o.json) : 0;
        if (jrc)
            fprintf(stderr, PROG ": cannot write %s: %s\n", r.o.json, strerror(-jrc));
        rc = jrc;
    }
    for (int i = 0; rc && i < r.sv.nlog; i++) /* why it did not start, or stopped */
        fprintf(stderr, "  %s\n", r.sv.log_lines[i]);
    free(r.in.r.lat_ns);
    free(r.in.r.per_s);
    free(r.pre.r.lat_ns);
    free(r.pre.r.per_s);
    free(r.cal_in.r.lat_ns);
    free(r.cal_in.r.per_s);
    query_result_free(&r.q);
    query_result_free(&r.cal_q);
    workload_free(&r.load);
    workload_free(&r.preload);
    workload_free(&r.cal);
    return rc ? 2 : rep.failed ? 1 : 0;
}
