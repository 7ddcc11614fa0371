/* The network loop (see loop.h, and loop_int.h for how it and the port sessions divide the
 * work). Each submission's user_data packs the operation, the connection slot and the slot's
 * generation, so a completion that arrives after its connection was closed and the slot reused
 * is recognised and dropped. A connection is freed only when it has no operation in the ring and
 * no batch at the writer. What a port's bytes mean is its session's (session_*.c): the loop
 * calls it through c->sess and never asks which port a connection is on. */
#include "net/loop.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <liburing.h>
#include <signal.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/strbuf.h"
#include "net/loop_int.h"

#define RING_ENTRIES      2048
#define BR_ENTRIES        512
#define BGID              7
#define BATCH_CAP         8192
#define STOP_GRACE_MS     10000
#define LINGER_MS         2000               /* a closing connection's wait for its peer's EOF */
#define LINGER_MAX        (4u * 1024 * 1024) /* bytes read and dropped while waiting */
#define FD_MARGIN         32   /* fds kept for the server's own use beyond those open at start */
#define FD_CONNS_MIN      8    /* fewer connections than this fit the fd limit: refuse to start */
#define ACCEPT_BACKOFF_MS 250  /* out of fds: a listener rests this long before accepting again */
#define LOG_EVERY_MS      1000 /* a repeated warning (refusals, timeouts) at most this often */
#define SCAN_GAP_MS       100  /* timers: scans of the deadline array at least this far apart */

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_WAKE, OP_SIGNAL, OP_CANCEL };

/* Counts one occurrence; 1 when its line may be written now, *count the occurrences it stands
 * for. */
int net_ratelog_due(struct ratelog *r, uint64_t now, uint64_t *count)
{
    r->count++;
    if (now < r->next_ms)
        return 0;
    *count = r->count;
    r->count = 0;
    r->next_ms = now + LOG_EVERY_MS;
    return 1;
}

uint64_t net_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ms(void)
{
    return net_now_ns() / 1000000;
}

/* ---------------------------------------------------------------- user_data */

static uint64_t ud(enum op op, uint32_t idx, uint32_t gen)
{
    return (uint64_t)op << 56 | (uint64_t)(gen & 0xffffff) << 32 | idx;
}

static enum op ud_op(uint64_t u)
{
    return (enum op)(u >> 56);
}

static uint32_t ud_idx(uint64_t u)
{
    return (uint32_t)u;
}

static uint32_t ud_gen(uint64_t u)
{
    return (uint32_t)(u >> 32) & 0xffffff;
}

static struct io_uring_sqe *get_sqe(struct netloop *n)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&n->ring);
    if (!sqe) {
        io_uring_submit(&n->ring);
        sqe = io_uring_get_sqe(&n->ring);
    }
    return sqe; /* after a submit the queue has room: NULL only if the ring is broken */
}

/* ---------------------------------------------------------------- setup */

static int listen_on(const char *bind_addr, uint16_t port, int *fd_out, uint16_t *port_out,
                     char *err, size_t errlen)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "--bind %s is not an IPv4 address", bind_addr);
        return -EINVAL;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 1024)) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s:%u: %s", bind_addr, port, strerror(e));
        close(fd);
        return -e;
    }
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *fd_out = fd;
    *port_out = ntohs(sa.sin_port);
    return 0;
}

/* Registers the provided buffer ring; liburing 2.3 has no io_uring_setup_buf_ring, so the
 * ring's memory is mapped here and handed to the kernel. */
static int setup_bufring(struct netloop *n)
{
    size_t sz = BR_ENTRIES * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    n->br = mem;
    io_uring_buf_ring_init(n->br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)mem, .ring_entries = BR_ENTRIES, .bgid = BGID};
    int rc = io_uring_register_buf_ring(&n->ring, &reg, 0);
    if (rc) {
        munmap(mem, sz);
        n->br = NULL;
        return rc;
    }
    n->bufs = malloc((size_t)BR_ENTRIES * BR_SIZE);
    if (!n->bufs)
        return -ENOMEM;
    for (unsigned i = 0; i < BR_ENTRIES; i++)
        io_uring_buf_ring_add(n->br, n->bufs + (size_t)i * BR_SIZE, BR_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(BR_ENTRIES), (int)i);
    io_uring_buf_ring_advance(n->br, BR_ENTRIES);
    return 0;
}

/* fds open in the process now; 64 if /proc cannot say. */
static uint64_t fds_open(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 64;
    uint64_t k = 0;
    while (readdir(d))
        k++;
    closedir(d);
    return k > 3 ? k - 3 : 0; /* ".", ".." and the directory's own fd */
}

/* Each connection holds an fd. The open-files limit is raised to its hard limit; if that
 * cannot hold max_conns beside the fds open now (WAL, listeners, ring, eventfds) and
 * FD_MARGIN for those opened later (a new WAL segment, a refused connection's moment), the
 * connections and each port's budget are lowered to fit, with a log line saying so; below
 * FD_CONNS_MIN the server refuses to start. Without this, accept fails for want of an fd
 * while slots are free. */
static int fit_fd_limit(struct netloop *n, char *err, size_t errlen)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    uint64_t reserved = fds_open() + FD_MARGIN;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= reserved + n->max_conns)
        return 0;
    uint64_t room = rl.rlim_cur > reserved ? rl.rlim_cur - reserved : 0;
    if (room < FD_CONNS_MIN) {
        snprintf(err, errlen,
                 "the open-files limit (RLIMIT_NOFILE %llu) leaves %llu fds for connections "
                 "beside the server's own %llu: raise it (ulimit -n, systemd LimitNOFILE=) to "
                 "at least %llu",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)room,
                 (unsigned long long)reserved, (unsigned long long)(reserved + n->max_conns));
        return -EMFILE;
    }
    log_msg(LOG_WARN, "max_connections_lowered",
            "from=%u to=%llu nofile=%llu fds_reserved=%llu hint=\"the open-files limit holds no "
            "more; raise it (ulimit -n, systemd LimitNOFILE=) to %llu for --max-connections\"",
            n->max_conns, (unsigned long long)room, (unsigned long long)rl.rlim_cur,
            (unsigned long long)reserved, (unsigned long long)(reserved + n->max_conns));
    for (int i = 0; i < NET_LISTENERS; i++) {
        uint64_t share = (uint64_t)n->port_max[i] * room / n->max_conns;
        n->port_max[i] = share ? (uint32_t)share : 1;
    }
    n->max_conns = (uint32_t)room;
    return 0;
}

/* Each port's budget: given, or its share of max_conns (a quarter each for ingest and RPC, the
 * rest for HTTP, where browsers open several at a time), never past max_conns. */
static void port_budgets(struct netloop *n, const uint32_t given[NET_LISTENERS])
{
    uint32_t share[NET_LISTENERS];
    share[NET_INGEST] = n->max_conns / 4;
    share[NET_QUERY] = n->max_conns / 4;
    share[NET_HTTP] = n->max_conns - share[NET_INGEST] - share[NET_QUERY];
    for (int i = 0; i < NET_LISTENERS; i++) {
        uint32_t b = given[i] ? given[i] : share[i] ? share[i] : 1;
        n->port_max[i] = b < n->max_conns ? b : n->max_conns;
    }
}

int netloop_new(const struct netloop_config *cfg, struct bqueue *to_writer,
                struct bqueue *from_writer, struct netloop **out, char *err, size_t errlen)
{
    struct netloop *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    for (int i = 0; i < NET_LISTENERS; i++)
        n->lfd[i] = -1;
    /* which protocol each port speaks: the one place that says so */
    n->sess[NET_INGEST] = &net_session_ingest;
    n->sess[NET_QUERY] = &net_session_rpc;
    n->sess[NET_HTTP] = &net_session_http;
    n->limits = cfg->limits;
    n->to_writer = to_writer;
    n->from_writer = from_writer;
    n->signal_fd = cfg->signal_fd;
    n->on_sigusr1 = cfg->on_sigusr1;
    n->sigusr1_ctx = cfg->sigusr1_ctx;
    n->max_conns = cfg->max_conns ? cfg->max_conns : 1024;
    port_budgets(n, cfg->port_conns);
    n->handshake_ms = cfg->handshake_ms ? cfg->handshake_ms : NET_HANDSHAKE_MS;
    n->idle_ms = cfg->idle_ms;
    n->next_scan = n->accept_resume = UINT64_MAX;
    n->token = cfg->auth_token;
    n->ingest_refused = cfg->ingest_refused;
    if (cfg->http.head_max)
        n->http = cfg->http;
    else
        http_limits_default(&n->http);
    n->rpc_max = cfg->rpc_max ? cfg->rpc_max : NET_RPC_MAX;
    net_rpc_limits(&cfg->limits, n->rpc_max, &n->rpc_lim);
    n->token_len = cfg->auth_token ? strlen(cfg->auth_token) : 0;
    n->accept_multishot = n->recv_multishot = 1;
    int rc = 0;
    for (int i = 0; !rc && i < NET_LISTENERS; i++)
        rc = listen_on(cfg->bind, cfg->ports[i], &n->lfd[i], &n->ports[i], err, errlen);
    if (!rc && (rc = io_uring_queue_init(RING_ENTRIES, &n->ring, 0)))
        snprintf(err, errlen, "cannot set up io_uring: %s", strerror(-rc));
    if (!rc)
        rc = fit_fd_limit(n, err, errlen);
    if (!rc) {
        n->conns = calloc(n->max_conns, sizeof(struct conn));
        n->touched = calloc(n->max_conns, sizeof(uint32_t));
        n->deadline = calloc(n->max_conns, sizeof(uint64_t));
        rc = (!n->conns || !n->touched || !n->deadline) ? -ENOMEM : 0;
    }
    if (!rc) {
        n->use_bufring = setup_bufring(n) == 0;
        if (!n->use_bufring)
            log_msg(LOG_WARN, "no_buffer_ring",
                    "fallback=\"single-shot recv into a buffer per "
                    "connection\"");
        rc = batch_new(BATCH_INGEST, BATCH_CAP, &n->cur);
    }
    if (rc) {
        if (!*err)
            snprintf(err, errlen, "cannot start the network loop: %s", strerror(-rc));
        netloop_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

void netloop_ports(const struct netloop *n, uint16_t ports[NET_LISTENERS])
{
    for (int i = 0; i < NET_LISTENERS; i++)
        ports[i] = n->ports[i];
}

/* ---------------------------------------------------------------- arming operations */

static void arm_accept(struct netloop *n, int l)
{
    struct io_uring_sqe *sqe = get_sqe(n);
    if (n->accept_multishot)
        io_uring_prep_multishot_accept(sqe, n->lfd[l], NULL, NULL, SOCK_CLOEXEC);
    else
        io_uring_prep_accept(sqe, n->lfd[l], NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud(OP_ACCEPT, (uint32_t)l, 0));
    n->accept_armed[l] = 1;
}

static void arm_wake(struct netloop *n)
{
    struct io_uring_sqe *sqe = get_sqe(n);
    io_uring_prep_read(sqe, n->from_writer->efd, &n->wake_buf, sizeof(n->wake_buf), 0);
    io_uring_sqe_set_data64(sqe, ud(OP_WAKE, 0, 0));
}

static void arm_signal(struct netloop *n)
{
    struct io_uring_sqe *sqe = get_sqe(n);
    io_uring_prep_read(sqe, n->signal_fd, &n->sig_buf, sizeof(n->sig_buf), 0);
    io_uring_sqe_set_data64(sqe, ud(OP_SIGNAL, 0, 0));
}

/* An ingest connection reads one buffer per recv: a multishot recv goes on filling provided
 * buffers while the loop is busy, and each completion must be fed to the decoder, so a fast
 * producer could land the whole buffer ring (16 MiB) in one connection's decoder in one pass of
 * the loop, far past PENDING_MAX, holding up every query behind it for a few hundred ms (and
 * growing the decoder's buffer to match). One buffer at a time, re-armed by service() only
 * while the decoder is under its limit, leaves the rest in the socket, where TCP holds it. A
 * query connection likewise, so that what it has received stays within one request and a
 * buffer (a pipelining client that does not read would otherwise land megabytes of requests). */
static void arm_recv(struct netloop *n, struct conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(n);
    if (n->use_bufring) {
        if (n->recv_multishot && c->sess->recv_multishot)
            io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
        else
            io_uring_prep_recv(sqe, c->fd, NULL, BR_SIZE, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BGID;
    } else {
        io_uring_prep_recv(sqe, c->fd, c->rbuf, BR_SIZE, 0);
    }
    io_uring_sqe_set_data64(sqe, ud(OP_RECV, net_conn_idx(n, c), c->gen));
    c->recv_armed = 1;
    c->cancel_sent = 0;
    c->ops++;
}

void net_cancel_recv(struct netloop *n, struct conn *c)
{
    if (!c->recv_armed || c->cancel_sent)
        return;
    struct io_uring_sqe *sqe = get_sqe(n);
    io_uring_prep_cancel64(sqe, ud(OP_RECV, net_conn_idx(n, c), c->gen), 0);
    io_uring_sqe_set_data64(sqe, ud(OP_CANCEL, net_conn_idx(n, c), c->gen));
    c->cancel_sent = 1;
    c->ops++;
}

void net_touch(struct netloop *n, struct conn *c)
{
    if (!c->touched) {
        c->touched = 1;
        n->touched[n->ntouched++] = net_conn_idx(n, c);
    }
}

static void linger_start(struct netloop *n, struct conn *c)
{
    shutdown(c->fd, SHUT_WR); /* FIN after the last answer */
    c->linger = LINGER_ON;
    c->linger_end = n->now + LINGER_MS;
    if (!c->recv_armed)
        arm_recv(n, c);
}

/* Ends the wait every way it can end: EOF, a reset, too many bytes, time, a server stop. */
static void linger_stop(struct netloop *n, struct conn *c)
{
    if (c->linger != LINGER_ON)
        return;
    c->linger = LINGER_DONE;
    net_touch(n, c);
}

/* ---------------------------------------------------------------- output */

int net_pend_append(struct conn *c, const void *p, size_t len)
{
    if (c->pend_len + len > c->pend_cap) {
        size_t cap = c->pend_cap ? c->pend_cap : 4096;
        while (cap < c->pend_len + len)
            cap *= 2;
        char *b = realloc(c->pend, cap);
        if (!b)
            return -ENOMEM;
        c->pend = b;
        c->pend_cap = cap;
    }
    memcpy(c->pend + c->pend_len, p, len);
    c->pend_len += len;
    return 0;
}

int net_pend_write(void *data, const char *buf, size_t len)
{
    return net_pend_append(data, buf, len) ? -1 : 0;
}

static void start_send(struct netloop *n, struct conn *c)
{
    if (c->send_busy || c->pend_len == 0)
        return;
    /* swap: what accumulated becomes what is sent; the old send buffer is reused */
    char *buf = c->out;
    size_t cap = c->out_cap;
    c->out = c->pend;
    c->out_cap = c->pend_cap;
    c->out_len = c->pend_len;
    c->out_off = 0;
    c->pend = buf;
    c->pend_cap = cap;
    c->pend_len = 0;
    struct io_uring_sqe *sqe = get_sqe(n);
    io_uring_prep_send(sqe, c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud(OP_SEND, net_conn_idx(n, c), c->gen));
    c->send_busy = 1;
    c->ops++;
}

/* ---------------------------------------------------------------- connections */

static struct conn *conn_of(struct netloop *n, uint64_t u)
{
    uint32_t idx = ud_idx(u);
    if (idx >= n->max_conns)
        return NULL;
    struct conn *c = &n->conns[idx];
    if (!c->in_use || (c->gen & 0xffffff) != ud_gen(u))
        return NULL;
    return c;
}

struct conn *net_conn_get(struct netloop *n, uint32_t idx, uint32_t gen)
{
    return conn_of(n, ud(OP_RECV, idx, gen));
}

static void conn_free(struct netloop *n, struct conn *c)
{
    close(c->fd);
    c->sess->free(c);
    free(c->fatal);
    free(c->out);
    free(c->pend);
    free(c->rbuf);
    n->stats.open[c->kind]--;
    n->deadline[net_conn_idx(n, c)] = 0;
    uint32_t gen = c->gen + 1;
    memset(c, 0, sizeof(*c));
    c->gen = gen;
    n->nconns--;
}

/* msgpack-c's write callback into a strbuf. */
int net_strbuf_write(void *data, const char *buf, size_t len)
{
    sb_append(data, buf, len);
    return ((struct strbuf *)data)->oom ? -1 : 0;
}

static const char *const port_name[NET_LISTENERS] = {"ingest", "rpc", "http"};
static const char *const port_flag[NET_LISTENERS] = {
    "--max-ingest-connections", "--max-query-connections", "--max-http-connections"};

/* A connection past its port's budget or --max-connections (flag): one message in the port's
 * own protocol, then close. The socket is new, so the few bytes fit its buffer; if not, the
 * close says enough. */
static void refuse(struct netloop *n, int fd, int kind, const char *flag)
{
    char why[96];
    snprintf(why, sizeof(why), "too many connections (%s); retry later", flag);
    struct strbuf out = STRBUF_INIT;
    n->sess[kind]->refuse(&out, why);
    if (!out.oom && send(fd, out.p, out.n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        /* nothing more to do: the close below tells the peer */
    }
    sb_free(&out);
    close(fd);
}

/* A port at its budget refuses, so that its clients cannot take what the other ports need;
 * past that, --max-connections bounds them all. */
static void conn_open(struct netloop *n, int fd, int kind)
{
    const char *flag = NULL;
    uint32_t limit = 0;
    if (n->stats.open[kind] >= n->port_max[kind])
        flag = port_flag[kind], limit = n->port_max[kind];
    else if (n->nconns >= n->max_conns)
        flag = "--max-connections", limit = n->max_conns;
    if (flag) {
        uint64_t count;
        if (net_ratelog_due(&n->log_refused, n->now, &count))
            log_msg(LOG_WARN, "connection_refused", "port=%s limit=%s value=%u refused=%llu",
                    port_name[kind], flag, limit, (unsigned long long)count);
        n->stats.limits[PROM_LIM_CONNECTIONS]++;
        refuse(n, fd, kind, flag);
        return;
    }
    uint32_t i = 0;
    while (n->conns[i].in_use) /* nconns < max_conns: a free slot exists */
        i++;
    struct conn *c = &n->conns[i];
    c->fd = fd;
    c->kind = (uint8_t)kind;
    c->sess = n->sess[kind];
    c->in_use = 1;
    c->active_ms = n->now;
    if (c->sess->handshake_waiting(n, c))
        c->hs_start = n->now;
    if (i >= n->hi)
        n->hi = i + 1;
    n->nconns++;
    n->stats.open[kind]++;
    n->stats.accepted[kind]++;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (c->sess->open(n, c) || (!n->use_bufring && !(c->rbuf = malloc(BR_SIZE)))) {
        log_msg(LOG_ERROR, "connection_dropped", "reason=out_of_memory");
        conn_free(n, c);
        return;
    }
    net_touch(n, c);
}

void net_auth_failed(struct netloop *n, struct conn *c, const char *why)
{
    n->stats.auth_failures[c->kind]++;
    log_msg(LOG_WARN, "auth_failed", "port=%s conn=%u reason=\"%s\"", c->sess->name,
            net_conn_idx(n, c), why);
}

/* ---------------------------------------------------------------- batches */

static int next_batch(struct netloop *n)
{
    struct batch *b = n->spare;
    if (b) {
        n->spare = NULL;
    } else if (batch_new(BATCH_INGEST, BATCH_CAP, &b)) {
        return -ENOMEM;
    }
    b->seq = ++n->seq;
    n->cur = b;
    return 0;
}

/* Hands the current batch to the writer; 0 when the writer has enough in flight already. */
int net_flush_batch(struct netloop *n)
{
    if (n->cur->n == 0)
        return 1;
    if (n->inflight >= MAX_INFLIGHT)
        return 0;
    struct batch *b = n->cur;
    if (next_batch(n)) {
        n->cur = b;
        return 0;
    }
    n->inflight++;
    bqueue_push(n->to_writer, b);
    return 1;
}

/* Hands a request to the writer as a query batch; req is malloc'd and taken over (freed on
 * failure). 0 or -ENOMEM. */
int net_send_query(struct netloop *n, struct conn *c, char *req, size_t len)
{
    struct batch *b = NULL;
    if (!req || batch_new(BATCH_QUERY, 0, &b)) {
        free(req);
        return -ENOMEM;
    }
    b->conn = net_conn_idx(n, c);
    b->gen = c->gen;
    b->req = req;
    b->req_len = len;
    b->start_ns = net_now_ns();
    c->inflight++;
    c->qbytes += len;
    bqueue_push(n->to_writer, b);
    return 0;
}

/* A query batch back from the writer; dropped when its connection is gone (the generation in
 * the batch no longer matches the slot's). */
static void complete_query(struct netloop *n, struct batch *b)
{
    struct conn *c = conn_of(n, ud(OP_RECV, b->conn, b->gen));
    if (c && c->sess->complete)
        c->sess->complete(n, c, b);
    batch_free(b);
}

/* ---------------------------------------------------------------- completions */

static void feed(struct netloop *n, struct conn *c, const char *data, size_t len)
{
    n->stats.bytes_in[c->kind] += len;
    if (c->linger == LINGER_ON && (c->linger_bytes += len) > LINGER_MAX)
        linger_stop(n, c);
    if (c->fatal || c->eof)
        return;
    c->sess->feed(n, c, data, len);
}

static void on_recv(struct netloop *n, struct conn *c, const struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        c->recv_armed = 0;
        c->ops--;
    }
    int res = cqe->res;
    if (res > 0) {
        c->active_ms = n->now;
        if (n->use_bufring) {
            unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
            char *data = n->bufs + (size_t)bid * BR_SIZE;
            feed(n, c, data, (size_t)res);
            /* copied out: the buffer goes straight back to the kernel */
            io_uring_buf_ring_add(n->br, data, BR_SIZE, (unsigned short)bid,
                                  io_uring_buf_ring_mask(BR_ENTRIES), 0);
            io_uring_buf_ring_advance(n->br, 1);
        } else {
            feed(n, c, c->rbuf, (size_t)res);
        }
    } else if (res == 0) {
        c->eof = c->peer_done = 1;
    } else if (res == -EINVAL && n->recv_multishot) {
        n->recv_multishot = 0;
        log_msg(LOG_WARN, "no_multishot_recv", "fallback=\"single-shot recv\"");
    } else if (res != -ENOBUFS && res != -ECANCELED) {
        c->eof = c->peer_done = 1; /* reset by peer and the like */
    }
    if (c->peer_done)
        linger_stop(n, c);
    net_touch(n, c);
}

static void on_send(struct netloop *n, struct conn *c, const struct io_uring_cqe *cqe)
{
    c->ops--;
    c->send_busy = 0;
    if (cqe->res < 0) {
        c->eof = c->hclose = c->peer_done = 1; /* the peer is gone: nothing more can reach it */
        linger_stop(n, c);
        c->pend_len = c->out_len = c->out_off = 0;
        c->ack_due = 0;
        net_touch(n, c);
        return;
    }
    c->active_ms = n->now;
    if ((c->out_off += (size_t)cqe->res) < c->out_len && !c->aborted) {
        struct io_uring_sqe *sqe = get_sqe(n);
        io_uring_prep_send(sqe, c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, ud(OP_SEND, net_conn_idx(n, c), c->gen));
        c->send_busy = 1;
        c->ops++;
    }
    net_touch(n, c);
}

/* Out of fds (or kernel memory), accept fails at once for as long as a connection waits in the
 * backlog: re-armed at once, it would spin a core and write a log line per attempt. The
 * listener rests ACCEPT_BACKOFF_MS instead (the waiting connections stay in the backlog), and
 * the failures are logged once a LOG_EVERY_MS with their count. */
static void accept_pause(struct netloop *n, int l, int err, int armed)
{
    uint64_t count;
    if (net_ratelog_due(&n->log_accept, n->now, &count))
        log_msg(LOG_WARN, "accept_failed", "port=%s error=\"%s\" failed=%llu pause_ms=%u",
                port_name[l], strerror(err), (unsigned long long)count, ACCEPT_BACKOFF_MS);
    if (n->accept_paused[l])
        return;
    n->accept_paused[l] = 1;
    n->accept_resume = n->now + ACCEPT_BACKOFF_MS;
    if (armed) { /* a multishot accept that goes on: stopped, and not re-armed while paused */
        struct io_uring_sqe *sqe = get_sqe(n);
        io_uring_prep_cancel64(sqe, ud(OP_ACCEPT, (uint32_t)l, 0), 0);
        io_uring_sqe_set_data64(sqe, ud(OP_CANCEL, UINT32_MAX, 0));
    }
}

static void accept_resume(struct netloop *n)
{
    if (n->now < n->accept_resume)
        return;
    n->accept_resume = UINT64_MAX;
    for (int l = 0; l < NET_LISTENERS; l++) {
        if (!n->accept_paused[l])
            continue;
        n->accept_paused[l] = 0;
        if (!n->accept_armed[l] && !n->stopping)
            arm_accept(n, l);
    }
}

static void on_accept(struct netloop *n, int l, const struct io_uring_cqe *cqe)
{
    int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (!more)
        n->accept_armed[l] = 0;
    if (cqe->res >= 0) {
        if (n->stopping)
            close(cqe->res);
        else
            conn_open(n, cqe->res, l);
    } else if (cqe->res == -EINVAL && n->accept_multishot) {
        n->accept_multishot = 0;
        log_msg(LOG_WARN, "no_multishot_accept", "fallback=\"single-shot accept\"");
    } else if (cqe->res == -EMFILE || cqe->res == -ENFILE || cqe->res == -ENOBUFS ||
               cqe->res == -ENOMEM) {
        accept_pause(n, l, -cqe->res, more);
    } else if (cqe->res != -ECANCELED) {
        uint64_t count;
        if (net_ratelog_due(&n->log_accept, n->now, &count))
            log_msg(LOG_WARN, "accept_failed", "port=%s error=\"%s\" failed=%llu", port_name[l],
                    strerror(-cqe->res), (unsigned long long)count);
    }
    if (!more && !n->stopping && !n->accept_paused[l])
        arm_accept(n, l);
}

static void on_wake(struct netloop *n)
{
    struct batch *b = bqueue_take_all(n->from_writer);
    while (b) {
        struct batch *next = b->next;
        if (b->kind == BATCH_INGEST)
            net_ingest_complete(n, b);
        else
            complete_query(n, b);
        b = next;
    }
    arm_wake(n);
}

static void begin_stop(struct netloop *n)
{
    n->stopping = 1;
    n->stop_ms = now_ms();
    log_msg(LOG_INFO, "stopping", "connections=%u batches_in_flight=%u", n->nconns, n->inflight);
    for (int l = 0; l < NET_LISTENERS; l++) {
        struct io_uring_sqe *sqe = get_sqe(n);
        io_uring_prep_cancel64(sqe, ud(OP_ACCEPT, (uint32_t)l, 0), 0);
        io_uring_sqe_set_data64(sqe, ud(OP_CANCEL, UINT32_MAX, 0));
    }
    for (uint32_t i = 0; i < n->max_conns; i++) {
        struct conn *c = &n->conns[i];
        if (!c->in_use)
            continue;
        if (c->recv_armed)
            shutdown(c->fd, SHUT_RD); /* what was received is drained; nothing more is read */
        c->eof = 1;
        linger_stop(n, c);
        net_touch(n, c);
    }
}

static void on_cqe(struct netloop *n, const struct io_uring_cqe *cqe)
{
    uint64_t u = io_uring_cqe_get_data64(cqe);
    struct conn *c;
    switch (ud_op(u)) {
    case OP_ACCEPT:
        on_accept(n, (int)ud_idx(u), cqe);
        break;
    case OP_RECV:
        if ((c = conn_of(n, u)))
            on_recv(n, c, cqe);
        break;
    case OP_SEND:
        if ((c = conn_of(n, u)))
            on_send(n, c, cqe);
        break;
    case OP_CANCEL:
        if ((c = conn_of(n, u))) {
            c->ops--;
            net_touch(n, c);
        }
        break;
    case OP_WAKE:
        on_wake(n);
        break;
    case OP_SIGNAL:
        if (cqe->res > 0 && n->sig_buf.ssi_signo == SIGUSR1) { /* a snapshot, not a stop */
            if (n->on_sigusr1)
                n->on_sigusr1(n->sigusr1_ctx);
            arm_signal(n);
            break;
        }
        if (!n->stopping)
            begin_stop(n);
        break;
    }
}

/* ---------------------------------------------------------------- service */

int net_may_read(const struct netloop *n, const struct conn *c)
{
    if (c->linger == LINGER_ON)
        return 1;
    if (c->eof || c->fatal || n->stopping)
        return 0;
    return c->sess->may_read(n, c);
}

static void maybe_close(struct netloop *n, struct conn *c)
{
    if (c->aborted) {
        if (c->ops == 0 && c->inflight == 0)
            conn_free(n, c);
        return;
    }
    int done_reading = (c->eof || c->fatal_sent) && !c->sess->busy(c);
    int quiet = c->inflight == 0 && !c->send_busy && c->pend_len == 0 && !c->ack_due;
    if (!done_reading || !quiet || c->linger == LINGER_ON)
        return;
    if (c->linger == LINGER_NONE && (c->fatal || c->hclose) && !c->peer_done && !n->stopping) {
        linger_start(n, c);
        return;
    }
    if (c->ops == 0) {
        conn_free(n, c);
    } else if (!c->shut) {
        shutdown(c->fd, SHUT_RDWR); /* ends the recv still in the ring */
        c->shut = 1;
    }
}

/* ---------------------------------------------------------------- timers */

/* Whether the connection waits for a request head (HTTP: the first, or one begun once the last
 * answer is out) or for its auth (a token set), and since when. */
static void handshake_phase(struct netloop *n, struct conn *c)
{
    int waiting;
    if (c->eof || c->fatal || c->hclose || c->aborted)
        waiting = 0;
    else
        waiting = c->sess->handshake_waiting(n, c);
    if (!waiting)
        c->hs_start = 0;
    else if (!c->hs_start)
        c->hs_start = n->now;
}

/* --idle-timeout holds for every connection but a producer that has sent events: a live source
 * may be quiet for hours, and one that is gone is found by TCP keepalive (session_ingest.c).
 * Only the ingest session counts events. */
static int idle_applies(const struct netloop *n, const struct conn *c)
{
    return n->idle_ms && c->events == 0;
}

/* When the connection's earliest timer is due; 0: none. */
static uint64_t conn_deadline(const struct netloop *n, const struct conn *c)
{
    if (c->aborted || c->linger == LINGER_DONE)
        return 0;
    if (c->linger == LINGER_ON)
        return c->linger_end;
    if (c->abort_at)
        return c->abort_at;
    uint64_t d = c->hs_start ? c->hs_start + n->handshake_ms : UINT64_MAX;
    if (idle_applies(n, c) && c->active_ms + n->idle_ms < d)
        d = c->active_ms + n->idle_ms;
    return d == UINT64_MAX ? 0 : d;
}

static void set_deadline(struct netloop *n, struct conn *c)
{
    uint64_t d = conn_deadline(n, c);
    n->deadline[net_conn_idx(n, c)] = d;
    if (d && d < n->next_scan)
        n->next_scan = d > n->last_scan + SCAN_GAP_MS ? d : n->last_scan + SCAN_GAP_MS;
}

/* Drops a connection whose last answer cannot get out (a peer that reads nothing): nothing
 * more is read, parsed or sent; the shutdown ends the send and recv in the ring, and the slot
 * is freed once they and its batches at the writer are back. */
static void conn_abort(struct netloop *n, struct conn *c)
{
    c->aborted = 1;
    c->eof = c->hclose = c->peer_done = 1;
    c->qbacklog = 0;
    c->ack_due = 0;
    c->pend_len = 0;
    c->linger = LINGER_DONE;
    if (!c->shut) {
        shutdown(c->fd, SHUT_RDWR);
        c->shut = 1;
    }
    net_touch(n, c);
}

/* A connection past --handshake-timeout (hs) or --idle-timeout: a last word in its port's
 * protocol (none for an HTTP keep-alive connection between requests, which clients expect to
 * close), then the usual lingering close. One already closing, or whose last word cannot get
 * out either, is dropped (at once, or LINGER_MS later). Counted, and logged once a second. */
static void timeout_close(struct netloop *n, struct conn *c, int hs)
{
    uint64_t secs = (hs ? n->handshake_ms : n->idle_ms) / 1000, count;
    n->stats.limits[hs ? PROM_LIM_HANDSHAKE_TIMEOUT : PROM_LIM_IDLE_TIMEOUT]++;
    if (net_ratelog_due(&n->log_timeout, n->now, &count))
        log_msg(LOG_WARN, "connection_timeout", "port=%s reason=%s seconds=%llu closed=%llu",
                c->sess->name, hs ? "handshake" : "idle", (unsigned long long)secs,
                (unsigned long long)count);
    if (c->eof || c->fatal || c->hclose) {
        conn_abort(n, c);
        return;
    }
    char msg[160];
    if (hs)
        snprintf(msg, sizeof(msg), "%s not complete within %llu s (--handshake-timeout); closed",
                 c->sess->handshake_what, (unsigned long long)secs);
    else
        snprintf(msg, sizeof(msg), "idle for %llu s (--idle-timeout); closed: reconnect to go on",
                 (unsigned long long)secs);
    c->sess->timeout(n, c, hs, msg);
    c->abort_at = n->now + LINGER_MS;
    net_touch(n, c);
}

static void conn_expire(struct netloop *n, struct conn *c)
{
    if (c->linger == LINGER_ON) {
        if (n->now >= c->linger_end)
            linger_stop(n, c);
    } else if (c->abort_at) {
        if (n->now >= c->abort_at)
            conn_abort(n, c);
    } else if (c->hs_start && n->now >= c->hs_start + n->handshake_ms) {
        timeout_close(n, c, 1);
    } else if (idle_applies(n, c) && n->now >= c->active_ms + n->idle_ms) {
        if (c->inflight)
            c->active_ms = n->now; /* the writer has its request: not idle */
        else
            timeout_close(n, c, 0);
    }
    n->deadline[net_conn_idx(n, c)] = conn_deadline(n, c);
}

/* Once the earliest deadline is due, not at every turn of the loop. */
static void deadlines_expire(struct netloop *n)
{
    if (n->now < n->next_scan)
        return;
    uint64_t next = UINT64_MAX;
    for (uint32_t i = 0; i < n->hi; i++) {
        if (!n->deadline[i])
            continue;
        if (n->deadline[i] <= n->now)
            conn_expire(n, &n->conns[i]);
        if (n->deadline[i] && n->deadline[i] < next)
            next = n->deadline[i];
    }
    n->last_scan = n->now;
    n->next_scan = next == UINT64_MAX            ? UINT64_MAX
                   : next > n->now + SCAN_GAP_MS ? next
                                                 : n->now + SCAN_GAP_MS;
}

/* ---------------------------------------------------------------- service */

static void service(struct netloop *n, struct conn *c)
{
    if (c->aborted) {
        maybe_close(n, c);
        return;
    }
    c->sess->drain(n, c);
    start_send(n, c);
    if (!c->recv_armed && net_may_read(n, c))
        arm_recv(n, c);
    else if (c->recv_armed && c->sess->stop_read(n, c))
        net_cancel_recv(n, c);
    maybe_close(n, c);
    if (c->in_use) {
        handshake_phase(n, c);
        set_deadline(n, c);
    }
}

static void service_touched(struct netloop *n)
{
    /* service may touch others (a batch completing) and itself: loop until quiet */
    for (uint32_t k = 0; k < n->ntouched; k++) {
        struct conn *c = &n->conns[n->touched[k]];
        c->touched = 0;
        if (c->in_use)
            service(n, c);
    }
    n->ntouched = 0;
    net_flush_batch(n);
}

int netloop_run(struct netloop *n)
{
    for (int l = 0; l < NET_LISTENERS; l++)
        arm_accept(n, l);
    arm_wake(n);
    arm_signal(n);
    for (;;) {
        struct io_uring_cqe *cqe;
        n->now = now_ms();
        uint64_t wake = n->next_scan < n->accept_resume ? n->next_scan : n->accept_resume;
        if (n->stopping && wake > n->now + 100)
            wake = n->now + 100;
        uint64_t wait_ms = wake > n->now ? wake - n->now : 0;
        struct __kernel_timespec ts = {.tv_sec = (long long)(wait_ms / 1000),
                                       .tv_nsec = (long long)(wait_ms % 1000) * 1000000};
        int rc = io_uring_submit_and_wait_timeout(&n->ring, &cqe, 1,
                                                  wake != UINT64_MAX ? &ts : NULL, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
            log_msg(LOG_ERROR, "io_uring_wait_failed", "error=\"%s\"", strerror(-rc));
            return rc;
        }
        n->now = now_ms(); /* the completions' time, for their connections' timers */
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&n->ring, head, cqe)
        {
            on_cqe(n, cqe);
            seen++;
        }
        io_uring_cq_advance(&n->ring, seen);
        deadlines_expire(n);
        accept_resume(n);
        service_touched(n);
        if (n->stopping && n->nconns == 0 && n->inflight == 0 && n->cur->n == 0)
            break;
        if (n->stopping && now_ms() - n->stop_ms > STOP_GRACE_MS) {
            log_msg(LOG_WARN, "stop_grace_expired", "connections=%u", n->nconns);
            break;
        }
    }
    return 0;
}

void netloop_free(struct netloop *n)
{
    if (!n)
        return;
    for (uint32_t i = 0; n->conns && i < n->max_conns; i++)
        if (n->conns[i].in_use)
            conn_free(n, &n->conns[i]);
    for (int l = 0; l < NET_LISTENERS; l++)
        if (n->lfd[l] >= 0)
            close(n->lfd[l]);
    if (n->ring.ring_fd > 0)
        io_uring_queue_exit(&n->ring);
    if (n->br)
        munmap(n->br, BR_ENTRIES * sizeof(struct io_uring_buf));
    free(n->bufs);
    batch_free(n->cur);
    batch_free(n->spare);
    free(n->conns);
    free(n->touched);
    free(n->deadline);
    free(n);
}
