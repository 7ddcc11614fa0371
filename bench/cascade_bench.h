/* cascade-bench's shared pieces: the options, the generated and pre-encoded event streams, the
 * ingest and query loads, the server under test, and the report. Each load fills a result that
 * the report turns into a table and JSON; no module prints figures itself. */
#ifndef CASCADE_BENCH_H
#define CASCADE_BENCH_H

#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define PROG         "cascade-bench"
#define EVENTS_MAX   200000000ull
#define CONNS_MAX    64
#define BATCH_MAX    100000u /* the server's default limit on array elements */
#define ERRS_KEPT    8
#define LOG_KEPT     5
#define THREADS_KEPT 8
#define HIST_MAX     64 /* buckets of the server's latency histogram */
#define SERVER_ARGS_MAX 16
#define POLL_KEPT    100000 /* --poll latencies kept */

enum cmd { CMD_INGEST, CMD_QUERY, CMD_MIXED };
enum method { M_CASCADE, M_ACTOR, M_PATH, M_TOP_CASCADES, NMETHODS };
extern const char *const method_names[NMETHODS];

struct opts {
    enum cmd cmd;
    uint64_t events, preload, seed;
    uint32_t batch, conns, qconns, window, mix[NMETHODS];
    double timeout, rate, seconds;
    double ingest_rate, ingest_pct; /* mixed: --ingest-rate N (events/s) or P% (ingest_pct = P) */
    uint64_t calib_events;          /* mixed with --ingest-rate P%: the calibration's events */
    const char *host, *port, *qport, *hport, *server, *fsync, *server_log, *prefix, *json;
    const char *token_file; /* --auth-token-file */
    const char *server_args[SERVER_ARGS_MAX]; /* --server-arg: more of the server's options */
    int nserver_args;
    const char *poll;  /* --poll METHOD: called every poll_every s during the timed phase */
    double poll_every; /* --poll-every */
    long server_pid;
    int progress;
};

/* What one stream of generated events is: how many, which seed, how batched and spread. */
struct load_spec {
    uint64_t events, seed;
    uint32_t batch, conns;
    const char *prefix; /* post ids are prefix<number> */
};

/* One batch's place in a connection's byte stream. */
struct mark {
    uint64_t end_off, end_events; /* cumulative over the connection */
};

/* One connection's pre-encoded stream, filled batch by batch. */
struct stream {
    msgpack_sbuffer out, body; /* body: the current batch's events, before its array header */
    msgpack_packer out_pk, body_pk;
    uint32_t in_body;
    struct mark *marks;
    uint64_t nmarks, cap, events;
};

/* The generated and encoded events of one load, ready to send. */
struct workload {
    struct load_spec spec;
    struct stream *st; /* [spec.conns] */
    uint32_t *actor;   /* [post]: its actor u<n>, kept only when queries need ids */
    uint32_t cascades, largest;
    uint64_t bytes;
    double gen_s, enc_s;
};

int workload_build(struct workload *w, const struct load_spec *spec, int keep_actors);
void workload_free(struct workload *w);

/* ---- ingest ---- */

/* One connection under load, driven by one thread that writes and reads the socket. */
struct iconn {
    const struct stream *st;
    int fd;
    uint32_t window;
    double timeout, rate; /* rate: this connection's events/s, 0 for flat out */
    pthread_t th;
    /* sent_ns[k]: when batch k's last byte went, or with a rate when it was due */
    uint64_t t0_ns, *sent_ns, *lat_ns, nlat, nsent, last_ack_ns, max_gap_ns;
    uint64_t ndue, max_lag_ns; /* batches due so far; the furthest a batch went behind its time */
    _Atomic uint64_t covered;
    _Atomic int done;
    uint64_t ok, dup, rej;
    char errs[ERRS_KEPT][160];
    int nerrs;
    char failure[320];
};

struct ingest_result {
    double seconds, cpu_s, target_rate; /* target_rate: events/s, 0 for flat out */
    uint64_t events, bytes, ok, dup, rej, max_gap_ns, max_lag_ns;
    uint64_t *lat_ns, nlat; /* sorted */
    double *per_s;
    uint32_t nper_s, per_s_cap;
    char msgs[ERRS_KEPT][352]; /* failures first, then rejections */
    int nmsgs, failed;
};

struct ingest {
    const struct workload *w;
    struct iconn *c;
    uint32_t nconns;
    uint64_t t0;
    double cpu0, rate;
    struct ingest_result r;
};

/* rate: events/s over all connections, open-loop (each batch due at a fixed time, its latency
 * from then); 0 sends flat out. */
int ingest_start(struct ingest *in, const struct workload *w, const char *host, const char *port,
                 uint32_t window, double timeout, double rate);
void ingest_wait(struct ingest *in, int progress);
void ingest_free(struct ingest *in);

/* ---- queries ---- */

struct lat_set {
    uint64_t *v, n, cap; /* latencies in ns, sorted once the run is over */
    uint64_t errors;
};

struct query_result {
    double seconds, target_rate, cpu_s;
    uint64_t scheduled, answered, errors, lost, max_in_flight;
    struct lat_set all, per[NMETHODS];
    char first_error[200];
    int failed;
};

/* Where query ids come from: posts prefix<0..nposts-1> and the actors that posted them. */
struct id_source {
    const char *prefix;
    uint64_t nposts;
    const uint32_t *actor;
};

int query_run(const struct opts *o, const char *host, const char *port, const struct id_source *ids,
              atomic_int *stop, struct query_result *r);
void query_result_free(struct query_result *r);

/* ---- --poll: one method called at a fixed period beside the load ---- */

struct poll_result {
    uint64_t calls, errors, n;
    uint64_t lat_ns[POLL_KEPT]; /* the answered calls' latencies, sorted once stopped */
    char first_error[300];
    int failed; /* could not connect */
};

struct poller {
    const char *host, *qport, *method;
    double every, timeout;
    atomic_int stop;
    pthread_t th;
    int running;
    struct poll_result r;
};

/* Starts the poller thread: 0 or a negative errno. */
int poll_start(struct poller *p, const char *host, const char *qport, const char *method,
               double every, double timeout);
/* Stops it (if running) and sorts the latencies. */
void poll_stop(struct poller *p);

/* ---- the server ---- */

struct task_cpu {
    int tid;
    char comm[32];
    double cpu;
};

struct hist {
    int n;
    double le[HIST_MAX]; /* upper bounds in seconds; the last one may be +Inf */
    uint64_t cum[HIST_MAX], count;
    double sum;
};

struct server {
    pid_t pid;
    int started, out_fd, status, nthreads, warns, errors, nlog;
    char dir[2048], data[4096], log[4096];
    unsigned ingest, query, http;
    long long rss_ready, rss_end, hwm, data_bytes;
    double stop_s, cpu;
    struct task_cpu threads[THREADS_KEPT];
    char log_lines[LOG_KEPT][512];
};

/* The server's own engine-thread pauses (DESIGN §8), from `stats`: maxima since it started. */
#define PAUSE_JOBS 8
struct pauses {
    int read; /* 0: not read (no answer, or a server without these keys) */
    double max_ms, max_cpu_ms; /* max_cpu_ms: the longest stretch's thread CPU time (-1: not said) */
    char max_job[32];
    uint64_t over_10ms;
    int njobs;
    char job[PAUSE_JOBS][32];
    double job_ms[PAUSE_JOBS];
    char thread[PAUSE_JOBS][16]; /* the thread a job runs on (pause_thread_by_job), "" if not said */
};

int server_start(const struct opts *o, struct server *sv);
/* Asks the query port for `stats` and keeps the pause keys: 0, or -1 with *p zeroed. */
int server_pauses(const char *host, const char *qport, struct pauses *p);
void server_sample(struct server *sv);
void server_finish(struct server *sv);
long long proc_status_bytes(pid_t pid, const char *field);
int metrics_histogram(const char *host, const char *port, struct hist *h);

/* ---- report and helpers ---- */

/* What a run measured; a NULL part was not part of the command. */
struct report {
    const struct opts *o;
    const struct workload *load, *preload, *calib;
    const struct ingest_result *ingest, *preload_in, *calib_in;
    const struct query_result *query, *calib_query;
    /* the server's pauses when the timed phase began and at its end (read 0: not read) */
    const struct pauses *pauses_before, *pauses;
    const struct server *sv;
    const struct hist *before, *after; /* the server's rpc latency histogram around the queries */
    const struct poll_result *poll;    /* --poll's calls, NULL without it */
    double client_cpu_s, wall_s;
    int failed;
};

void report_print(const struct report *rep);
int report_json(const struct report *rep, const char *path);
double pct_ms(const uint64_t *sorted, uint64_t n, double p);

uint64_t now_ns(void);
double secs(uint64_t ns);
double cpu_seconds(int who);
void sleep_ns(uint64_t ns);
int connect_to(const char *host, const char *port);

/* --auth-token-file's secret (NULL: none): the server's ports ask for it. */
extern const char *bench_token;
enum bench_port { BENCH_INGEST = 0, BENCH_RPC };
/* connect_to, then, with a token, the port's opening message (cascade/proto.h): on ingest the map
 * {"auth": TOKEN}; on RPC the `auth` request, whose answer is read and checked here. */
int connect_port(const char *host, const char *port, enum bench_port kind);

#endif
