/* The server under test: with --server, cascaded started on free loopback ports with a scratch
 * data dir and stopped with SIGTERM (it must exit 0); with --server-pid, a running one that is
 * only observed. Its memory and CPU come from /proc, its own query latency histogram from
 * GET /metrics on the http port, its engine thread's longest pauses from `stats`. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cascade/client.h"
#include "cascade/proto.h"
#include "cascade_bench.h"

#define READY_WAIT  30.0 /* seconds for cascaded to print its ready line */
#define STOP_WAIT   120.0
#define METRICS_MAX (4u << 20)
#define HIST_FAMILY "cascaded_query_duration_seconds_bucket{port=\"rpc\",le=\""

long long proc_status_bytes(pid_t pid, const char *field)
{
    char path[64], line[256];
    long long kb = -1;
    size_t len = strlen(field);
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, len) && line[len] == ':')
            kb = strtoll(line + len + 1, NULL, 10);
    if (f)
        fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* utime + stime in seconds from a /proc stat file, and the task's name. */
static double stat_cpu(const char *path, char *comm, size_t commlen)
{
    char buf[1024];
    unsigned long long ut, st;
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    if (!open || !close || close < open)
        return -1;
    snprintf(comm, commlen, "%.*s", (int)(close - open - 1), open + 1);
    /* fields 3..13 (state .. cmajflt), then 14 utime and 15 stime, in clock ticks */
    if (sscanf(close + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Which of the server's threads did the work: the busiest one bounds the rate. Threads that
 * already ended (io_uring workers come and go) count only in the total. */
static void read_threads(struct server *sv)
{
    char path[128], comm[32];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)sv->pid);
    sv->cpu = stat_cpu(path, comm, sizeof comm);
    snprintf(path, sizeof path, "/proc/%d/task", (int)sv->pid);
    DIR *d = opendir(path);
    sv->nthreads = 0;
    for (struct dirent *e; d && (e = readdir(d)) && sv->nthreads < THREADS_KEPT;) {
        struct task_cpu *t = &sv->threads[sv->nthreads];
        if (e->d_name[0] == '.')
            continue;
        t->tid = atoi(e->d_name);
        snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)sv->pid, t->tid);
        t->cpu = stat_cpu(path, t->comm, sizeof t->comm);
        sv->nthreads += t->cpu >= 0;
    }
    if (d)
        closedir(d);
}

static void exec_server(const struct opts *o, struct server *sv, int out_fd)
{
    int log_fd = open(sv->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0 || dup2(out_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0)
        _exit(127);
    const char *argv[16 + SERVER_ARGS_MAX] = {
        o->server, "--bind",    "127.0.0.1", "--ingest-port", "0",     "--query-port", "0",
        "--http-port", "0",     "--data-dir", sv->data,      "--fsync", o->fsync};
    int n = 13;
    if (o->token_file) {
        argv[n++] = "--auth-token-file";
        argv[n++] = o->token_file;
    }
    for (int i = 0; i < o->nserver_args; i++)
        argv[n++] = o->server_args[i];
    argv[n] = NULL;
    execv(o->server, (char *const *)argv);
    fprintf(stderr, PROG ": cannot run %s: %s\n", o->server, strerror(errno));
    _exit(127);
}

/* A server that did not start usually said why on stderr (a bad option): its last lines. */
static void print_log_tail(const char *path)
{
    char lines[LOG_KEPT][512];
    int n = 0;
    FILE *f = fopen(path, "r");
    while (f && fgets(lines[n % LOG_KEPT], sizeof lines[0], f))
        n++;
    if (f)
        fclose(f);
    for (int i = n > LOG_KEPT ? n - LOG_KEPT : 0; i < n; i++)
        fprintf(stderr, "  %s", lines[i % LOG_KEPT]);
}

/* Reads stdout until the ready line; -1 if the server exits or stays silent. */
static int await_ready(struct server *sv)
{
    char line[256];
    size_t len = 0;
    uint64_t deadline = now_ns() + (uint64_t)(READY_WAIT * 1e9);
    while (len < sizeof line - 1 && now_ns() < deadline) {
        struct pollfd p = {sv->out_fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(sv->out_fd, line + len, 1); /* byte by byte: it is one short line */
        if (n <= 0)
            return -1;
        if (line[len++] == '\n')
            break;
    }
    line[len] = 0;
    return sscanf(line, "ready ingest=%u query=%u http=%u", &sv->ingest, &sv->query, &sv->http) == 3
               ? 0
               : -1;
}

int server_start(const struct opts *o, struct server *sv)
{
    int p[2];
    const char *tmp = getenv("TMPDIR");
    int len =
        snprintf(sv->dir, sizeof sv->dir, "%s/cascade-bench.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (len >= (int)sizeof sv->dir)
        errno = ENAMETOOLONG;
    if (len >= (int)sizeof sv->dir || !mkdtemp(sv->dir) || pipe2(p, O_CLOEXEC)) {
        fprintf(stderr, PROG ": cannot make %s: %s\n", sv->dir, strerror(errno));
        sv->dir[0] = 0;
        return -1;
    }
    sv->started = 1;
    snprintf(sv->data, sizeof sv->data, "%s/data", sv->dir);
    snprintf(sv->log, sizeof sv->log, "%s/server.log", sv->dir);
    if (o->server_log)
        snprintf(sv->log, sizeof sv->log, "%s", o->server_log);
    sv->pid = fork();
    if (sv->pid == 0)
        exec_server(o, sv, p[1]);
    close(p[1]);
    sv->out_fd = p[0];
    if (sv->pid < 0 || await_ready(sv)) {
        fprintf(stderr, PROG ": %s did not print its ready line (log: %s)\n", o->server, sv->log);
        print_log_tail(sv->log);
        return -1;
    }
    sv->rss_ready = proc_status_bytes(sv->pid, "VmRSS");
    return 0;
}

/* SIGTERM, then up to STOP_WAIT for a clean exit; past that, SIGKILL (this pid only). */
static void stop_server(struct server *sv)
{
    uint64_t t0 = now_ns();
    int st = 0;
    sv->status = -1;
    if (sv->pid <= 0)
        return;
    kill(sv->pid, SIGTERM);
    while (waitpid(sv->pid, &st, WNOHANG) == 0) {
        if (secs(now_ns() - t0) > STOP_WAIT) {
            fprintf(stderr, PROG ": server still up %.0f s after SIGTERM: SIGKILL\n", STOP_WAIT);
            kill(sv->pid, SIGKILL);
            waitpid(sv->pid, &st, 0);
            break;
        }
        sleep_ns(10000000u);
    }
    sv->stop_s = secs(now_ns() - t0);
    sv->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static long long tree_bytes; /* nftw callbacks take no context argument */

static int add_size(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    if (type == FTW_F)
        tree_bytes += sb->st_size;
    return 0;
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    return remove(path) ? -1 : 0;
}

/* Counts warn and error lines and keeps the first few: the figures alone hide a server that
 * dropped connections or failed a write along the way. */
static void scan_log(struct server *sv)
{
    char line[sizeof sv->log_lines[0]];
    FILE *f = fopen(sv->log, "r");
    while (f && fgets(line, sizeof line, f)) {
        int warn = !strncmp(line, "level=warn", 10), error = !strncmp(line, "level=error", 11);
        if (!warn && !error && strncmp(line, PROG ":", strlen(PROG ":")))
            continue;
        sv->warns += warn;
        sv->errors += !warn;
        line[strcspn(line, "\n")] = 0;
        if (sv->nlog < LOG_KEPT)
            snprintf(sv->log_lines[sv->nlog++], sizeof line, "%s", line);
    }
    if (f)
        fclose(f);
}

/* Memory and CPU while it still runs (and, for one it started, the data dir's size). */
void server_sample(struct server *sv)
{
    sv->rss_end = proc_status_bytes(sv->pid, "VmRSS");
    sv->hwm = proc_status_bytes(sv->pid, "VmHWM");
    read_threads(sv);
    if (sv->started) {
        tree_bytes = 0;
        nftw(sv->data, add_size, 16, FTW_PHYS);
        sv->data_bytes = tree_bytes;
    }
}

/* A started server: sampled, stopped, its log read, its scratch dir removed. */
void server_finish(struct server *sv)
{
    if (!sv->started)
        return;
    if (sv->pid > 0)
        server_sample(sv);
    stop_server(sv);
    if (sv->out_fd >= 0)
        close(sv->out_fd);
    sv->out_fd = -1;
    scan_log(sv);
    if (sv->dir[0] && nftw(sv->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS))
        fprintf(stderr, PROG ": cannot remove %s: %s\n", sv->dir, strerror(errno));
}

/* ---- GET /metrics ---- */

/* HTTP/1.0 without keep-alive: the server closes after the response, which ends the read. */
static char *http_get(const char *host, const char *port, const char *path, size_t *len)
{
    char req[1400];
    int fd = connect_to(host, port),
        n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n%s%s%s\r\n", path,
                     bench_token ? "Authorization: Bearer " : "", bench_token ? bench_token : "",
                     bench_token ? "\r\n" : "");
    char *buf = malloc(METRICS_MAX + 1);
    size_t got = 0;
    if (fd < 0 || !buf || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        if (fd >= 0)
            close(fd);
        free(buf);
        return NULL;
    }
    for (ssize_t r; got < METRICS_MAX && (r = recv(fd, buf + got, METRICS_MAX - got, 0)) != 0;) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = 0;
    *len = got;
    return buf;
}

/* The rpc port's cumulative buckets; 0 when found, -1 otherwise. */
int metrics_histogram(const char *host, const char *port, struct hist *h)
{
    size_t len;
    char *text = http_get(host, port, "/metrics", &len);
    *h = (struct hist){0};
    if (!text)
        return -1;
    if (strncmp(text, "HTTP/1.", 7) || strncmp(text + 8, " 200", 4)) {
        free(text);
        return -1;
    }
    for (char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : 0) {
        if (strncmp(line, HIST_FAMILY, strlen(HIST_FAMILY)) || h->n == HIST_MAX)
            continue;
        char *le = line + strlen(HIST_FAMILY);
        double bound = strncmp(le, "+Inf", 4) ? strtod(le, NULL) : HUGE_VAL;
        char *val = strstr(le, "} ");
        if (!val)
            continue;
        h->le[h->n] = bound;
        h->cum[h->n++] = strtoull(val + 2, NULL, 10);
    }
    h->count = h->n ? h->cum[h->n - 1] : 0;
    free(text);
    return h->n ? 0 : -1;
}

/* ---- the engine thread's pauses, from `stats` ---- */

static int key_is(const msgpack_object_kv *kv, const char *k)
{
    return kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(k) &&
           !memcmp(kv->key.via.str.ptr, k, kv->key.via.str.size);
}

static double num(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32 ? o->via.f64
           : o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (double)o->via.u64
                                                        : NAN;
}

static void copy_str(char *dst, size_t len, const msgpack_object *o)
{
    if (o->type == MSGPACK_OBJECT_STR)
        snprintf(dst, len, "%.*s", (int)o->via.str.size, o->via.str.ptr);
    else
        dst[0] = 0; /* nil: no pause yet */
}

static void read_pause_keys(const msgpack_object *m, struct pauses *p)
{
    int seen = 0;
    const msgpack_object *threads = NULL;
    p->max_cpu_ms = -1;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (key_is(kv, "pause_max_ms"))
            p->max_ms = num(&kv->val), seen |= 1;
        else if (key_is(kv, "pause_max_cpu_ms"))
            p->max_cpu_ms = num(&kv->val);
        else if (key_is(kv, "pause_thread_by_job") && kv->val.type == MSGPACK_OBJECT_MAP)
            threads = &kv->val;
        else if (key_is(kv, "pause_max_job"))
            copy_str(p->max_job, sizeof p->max_job, &kv->val);
        else if (key_is(kv, "pauses_over_10ms") && kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            p->over_10ms = kv->val.via.u64, seen |= 2;
        else if (key_is(kv, "pause_max_ms_by_job") && kv->val.type == MSGPACK_OBJECT_MAP)
            for (uint32_t j = 0; j < kv->val.via.map.size && p->njobs < PAUSE_JOBS; j++) {
                const msgpack_object_kv *jk = &kv->val.via.map.ptr[j];
                copy_str(p->job[p->njobs], sizeof p->job[0], &jk->key);
                p->job_ms[p->njobs++] = num(&jk->val);
            }
    }
    for (int j = 0; threads && j < p->njobs; j++) /* the job map may come before the threads */
        for (uint32_t k = 0; k < threads->via.map.size; k++) {
            char name[32];
            copy_str(name, sizeof name, &threads->via.map.ptr[k].key);
            if (!strcmp(name, p->job[j]))
                copy_str(p->thread[j], sizeof p->thread[0], &threads->via.map.ptr[k].val);
        }
    p->read = seen == 3;
}

int server_pauses(const char *host, const char *qport, struct pauses *p)
{
    struct cc_rpc *r;
    struct proto_rpc_response resp;
    char err[512];
    *p = (struct pauses){0};
    if (cc_rpc_open(host, qport, 10.0, bench_token, &r, err, sizeof err)) {
        fprintf(stderr, PROG ": stats: %s\n", err);
        return -1;
    }
    int rc = cc_rpc_call(r, "stats", NULL, 0, &resp, err, sizeof err);
    if (rc == 0 && !resp.error && resp.result && resp.result->type == MSGPACK_OBJECT_MAP)
        read_pause_keys(resp.result, p);
    else if (rc)
        fprintf(stderr, PROG ": stats: %s\n", err);
    cc_rpc_close(r);
    if (!p->read)
        *p = (struct pauses){0};
    return p->read ? 0 : -1;
}
