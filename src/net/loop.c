/* The network loop (see loop.h). Each submission's user_data packs the operation, the
 * connection slot and the slot's generation, so a completion that arrives after its connection
 * was closed and the slot reused is recognised and dropped. A connection is freed only when it
 * has no operation in the ring and no batch at the writer. */
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

#include "cascade/proto.h"
#include "core/log.h"
#include "core/mpscan.h"
#include "core/strbuf.h"
#include "query/http.h"
#include "query/prom.h"
#include "query/web.h"

#define RING_ENTRIES       2048
#define BR_ENTRIES         512
#define BR_SIZE            (32u * 1024)
#define BGID               7
#define BATCH_CAP          8192
#define MAX_INFLIGHT       4                  /* ingest batches at the writer */
#define PENDING_MAX        (1u * 1024 * 1024) /* undecoded bytes per connection before pausing it */
#define QUERY_MAX_INFLIGHT 64
/* request bytes a query connection may have at the writer (each a copy of what it sent); the
 * first request is always taken, so one of --max-rpc-request-bytes still gets through */
#define QUERY_INFLIGHT_BYTES (4u << 20)
#define STOP_GRACE_MS      10000
#define LINGER_MS          2000               /* a closing connection's wait for its peer's EOF */
#define LINGER_MAX         (4u * 1024 * 1024) /* bytes read and dropped while waiting */
#define ERR_KEEP           PROTO_ACK_ERR_MAX
#define DRAIN_QUANTUM      1024 /* events a connection may add before the others get a turn */
#define HTTP_IN_SOFT       (32u * 1024)  /* buffered HTTP input past which reading stops */
#define OUT_HIGH           (256u * 1024) /* queued output past which HTTP and RPC requests wait */
#define QIN_KEEP           (64u * 1024)  /* a query connection's input buffer kept when empty */
#define FD_MARGIN          32   /* fds kept for the server's own use beyond those open at start */
#define FD_CONNS_MIN       8    /* fewer connections than this fit the fd limit: refuse to start */
#define ACCEPT_BACKOFF_MS  250  /* out of fds: a listener rests this long before accepting again */
#define LOG_EVERY_MS       1000 /* a repeated warning (refusals, timeouts) at most this often */
#define SCAN_GAP_MS        100  /* timers: scans of the deadline array at least this far apart */

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_WAKE, OP_SIGNAL, OP_CANCEL };

/* Closing a socket that has unread input makes the kernel send a reset, which may destroy the
 * last answer (a fatal message, an HTTP error) before the peer reads it. So a connection the
 * server ends while the peer may still be writing first sends FIN (SHUT_WR) and reads and drops
 * what comes until EOF, LINGER_MAX bytes or LINGER_MS, as web servers do. */
enum { LINGER_NONE, LINGER_ON, LINGER_DONE };

/* A warning that a client can make the server repeat: one line per LOG_EVERY_MS at most. */
struct ratelog {
    uint64_t next_ms, count;
};

struct conn {
    int fd;
    uint32_t gen;
    uint8_t kind, in_use;
    uint8_t recv_armed, send_busy, eof, touched, ack_due, cancel_sent, shut, fatal_sent;
    uint8_t qbacklog;  /* query: complete requests may still wait in qin (stopped at the limit) */
    uint8_t authed;    /* the client proved it knows --auth-token-file's token */
    uint8_t peer_done; /* the peer closed or reset: recv will give nothing more */
    uint8_t linger;    /* LINGER_*: how far a close we chose has got */
    uint8_t hstarted;  /* http: a request was dispatched (the first head's wait is over) */
    uint8_t aborted;   /* dropped without a last word: nothing more is read, parsed or sent */
    uint64_t linger_end;
    uint64_t active_ms; /* the last bytes received or sent, or answer queued (--idle-timeout) */
    uint64_t hs_start;  /* since when an HTTP head or the auth is awaited (--handshake-timeout) */
    uint64_t abort_at;  /* closed by a timeout: dropped then if its last answer is still stuck */
    size_t linger_bytes;
    char *abuf; /* ingest, before authentication: the first bytes, until {"auth": ...} */
    size_t abuf_len;
    uint32_t ops;      /* operations in the ring */
    uint32_t inflight; /* batches at the writer holding this connection's events or requests */
    size_t qbytes;     /* query: bytes of its requests at the writer */
    uint64_t add_seq, done_seq; /* last batch seq that took / returned events of this conn */
    struct ingest_decoder *dec;
    struct strbuf qin;   /* query: bytes received and not yet handed on as requests */
    struct mpscan qscan; /* query: the request at the front of qin, scanned so far */
    uint64_t events, ok, dup, rej;
    char errs[ERR_KEEP][PROTO_ACK_ERR_LEN];
    uint32_t nerr; /* rejections since the last ack (only the last ERR_KEEP kept) */
    char *fatal;
    uint8_t fatal_resend; /* the fatal names resend_from (DESIGN §4): 1 resend_from, 2 the events
                           * counted when it is sent (a value the decoder refused: every event
                           * before it has been delivered by then) */
    uint64_t resend_from;
    char *out, *pend; /* out is being sent; pend accumulates what goes next */
    size_t out_len, out_off, out_cap, pend_len, pend_cap;
    char *rbuf; /* only without a provided buffer ring */
    /* http: one request at a time; what its answer needs while the writer has it */
    struct http_in *hin;
    struct http_api api;
    uint8_t hkeep, h10, hhead, hmetrics, hclose;
    uint64_t t0_ns; /* when the request was complete: the start of its latency */
};

struct netloop {
    struct io_uring ring;
    int lfd[NET_LISTENERS];
    uint16_t ports[NET_LISTENERS];
    int accept_multishot, recv_multishot, use_bufring;
    struct io_uring_buf_ring *br;
    char *bufs;
    struct conn *conns;
    uint32_t max_conns, nconns;
    uint32_t port_max[NET_LISTENERS]; /* each port's own budget within max_conns */
    uint32_t hi;                      /* slots in use are below this */
    /* Timers (handshake, idle, linger) as one deadline per slot in a dense array, scanned once
     * the earliest is due and at most every SCAN_GAP_MS: at 1 M slots a scan reads 8 MB, where
     * the connections themselves would be a cache miss each. A deadline that moved later is
     * found out at the scan; one that moved earlier lowers next_scan at once. */
    uint64_t *deadline;
    uint64_t next_scan, last_scan;
    uint64_t now; /* ms, read at each turn of the loop */
    uint64_t handshake_ms, idle_ms;
    uint8_t accept_armed[NET_LISTENERS], accept_paused[NET_LISTENERS];
    uint64_t accept_resume; /* out of fds: when the paused listeners accept again */
    struct ratelog log_refused, log_accept, log_timeout;
    uint32_t *touched;
    uint32_t ntouched, rr;
    struct ingest_limits limits;
    struct bqueue *to_writer, *from_writer;
    struct batch *cur, *spare;
    uint32_t inflight;
    uint64_t seq;
    uint64_t wake_buf;
    struct signalfd_siginfo sig_buf;
    int signal_fd, stopping;
    void (*on_sigusr1)(void *ctx);
    void *sigusr1_ctx;
    uint64_t stop_ms;
    struct prom_loop stats; /* the loop's own figures for /metrics */
    uint64_t msgid;         /* of the RPC requests the HTTP port makes */
    struct http_limits http;
    uint32_t rpc_max;             /* bytes of one RPC request */
    struct mpscan_limits rpc_lim; /* what the query port holds a request to (rpc_limits) */
    const char *token;            /* --auth-token-file's secret, or NULL: no authentication */
    size_t token_len;
};

/* Counts one occurrence; 1 when its line may be written now, *count the occurrences it stands
 * for. */
static int ratelog_due(struct ratelog *r, uint64_t now, uint64_t *count)
{
    r->count++;
    if (now < r->next_ms)
        return 0;
    *count = r->count;
    r->count = 0;
    r->next_ms = now + LOG_EVERY_MS;
    return 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ms(void)
{
    return now_ns() / 1000000;
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

/* A request's bytes are checked as they arrive, before msgpack-c sees any: against
 * --max-rpc-request-bytes and the limits the ingest port applies to a value (--max-array,
 * --max-map-keys, --max-depth, --max-string-bytes). Those may be set lower than the protocol
 * itself needs, since events need less: every request is [0, msgid, method, [{params}]], 4
 * elements, 3 levels deep, and `auth` carries a token of up to PROTO_AUTH_TOKEN_MAX bytes; the
 * limits never go below that. The least --max-map-keys (8) holds any method's parameters. */
static void rpc_limits(const struct ingest_limits *in, uint32_t rpc_max, struct mpscan_limits *l)
{
    l->max_bytes = rpc_max;
    l->max_array = in->max_array > 4 ? in->max_array : 4;
    l->max_map = in->max_map;
    l->max_depth = in->max_depth > 3 ? in->max_depth : 3;
    l->max_str = in->max_str > PROTO_AUTH_TOKEN_MAX ? in->max_str : PROTO_AUTH_TOKEN_MAX;
    /* what the writer's msgpack-c may allocate for one request (1 MiB of nils in arrays: 24x) */
    l->max_cost = in->max_value_memory;
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
                 (unsigned long long)reserved,
                 (unsigned long long)(reserved + n->max_conns));
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
    if (cfg->http.head_max)
        n->http = cfg->http;
    else
        http_limits_default(&n->http);
    n->rpc_max = cfg->rpc_max ? cfg->rpc_max : NET_RPC_MAX;
    rpc_limits(&cfg->limits, n->rpc_max, &n->rpc_lim);
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

static uint32_t conn_idx(const struct netloop *n, const struct conn *c)
{
    return (uint32_t)(c - n->conns);
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
        if (n->recv_multishot && c->kind == NET_HTTP)
            io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
        else
            io_uring_prep_recv(sqe, c->fd, NULL, BR_SIZE, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BGID;
    } else {
        io_uring_prep_recv(sqe, c->fd, c->rbuf, BR_SIZE, 0);
    }
    io_uring_sqe_set_data64(sqe, ud(OP_RECV, conn_idx(n, c), c->gen));
    c->recv_armed = 1;
    c->cancel_sent = 0;
    c->ops++;
}

static void cancel_recv(struct netloop *n, struct conn *c)
{
    if (!c->recv_armed || c->cancel_sent)
        return;
    struct io_uring_sqe *sqe = get_sqe(n);
    io_uring_prep_cancel64(sqe, ud(OP_RECV, conn_idx(n, c), c->gen), 0);
    io_uring_sqe_set_data64(sqe, ud(OP_CANCEL, conn_idx(n, c), c->gen));
    c->cancel_sent = 1;
    c->ops++;
}

static void touch(struct netloop *n, struct conn *c)
{
    if (!c->touched) {
        c->touched = 1;
        n->touched[n->ntouched++] = conn_idx(n, c);
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
    touch(n, c);
}

/* ---------------------------------------------------------------- output */

static int pend_append(struct conn *c, const void *p, size_t len)
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

/* Answers queued and not yet sent: what a client that does not read makes the server hold. */
static size_t out_queued(const struct conn *c)
{
    return c->pend_len + (c->out_len - c->out_off);
}

static int sbuf_write(void *data, const char *buf, size_t len)
{
    return pend_append(data, buf, len) ? -1 : 0;
}

/* DESIGN §4: {"ok": N, "dup": N, "rej": N, "err": [...]}, cumulative counts (proto_ack_pack). */
static void queue_ack(struct conn *c)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, c, sbuf_write);
    const char *errs[ERR_KEEP];
    uint32_t k = c->nerr < ERR_KEEP ? c->nerr : ERR_KEEP;
    for (uint32_t i = 0; i < k; i++)
        errs[i] = c->errs[(c->nerr - k + i) % ERR_KEEP];
    proto_ack_pack(&pk, c->ok, c->dup, c->rej, errs, k);
    c->nerr = 0;
    c->ack_due = 0;
}

static void queue_fatal(struct conn *c)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, c, sbuf_write);
    uint64_t from = c->fatal_resend == 2 ? c->events : c->resend_from;
    proto_fatal_pack(&pk, c->fatal, c->fatal_resend ? &from : NULL);
}

/* [1, msgid (or nil), {"code": code, "message": msg}, nil]: an RPC error answer. */
static void pack_rpc_error(msgpack_packer *pk, int has_id, uint64_t msgid, unsigned code,
                           const char *msg)
{
    const msgpack_object id = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = msgid};
    proto_rpc_error_pack(pk, has_id ? &id : NULL, code, msg);
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
    io_uring_sqe_set_data64(sqe, ud(OP_SEND, conn_idx(n, c), c->gen));
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

static void conn_free(struct netloop *n, struct conn *c)
{
    close(c->fd);
    ingest_decoder_free(c->dec);
    sb_free(&c->qin);
    free(c->fatal);
    free(c->out);
    free(c->pend);
    free(c->rbuf);
    free(c->abuf);
    http_in_free(c->hin);
    n->stats.open[c->kind]--;
    n->deadline[conn_idx(n, c)] = 0;
    uint32_t gen = c->gen + 1;
    memset(c, 0, sizeof(*c));
    c->gen = gen;
    n->nconns--;
}

static int conn_setup(struct netloop *n, struct conn *c, int kind)
{
    if (kind == NET_INGEST && ingest_decoder_new(&n->limits, &c->dec))
        return -ENOMEM;
    if (kind == NET_QUERY)
        mpscan_init(&c->qscan, &n->rpc_lim);
    if (kind == NET_HTTP && http_in_new(&n->http, &c->hin))
        return -ENOMEM;
    if (!n->use_bufring && !(c->rbuf = malloc(BR_SIZE)))
        return -ENOMEM;
    return 0;
}

/* msgpack-c's write callback into a strbuf. */
static int strbuf_write(void *data, const char *buf, size_t len)
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
static void refuse(int fd, int kind, const char *flag)
{
    char why[96];
    snprintf(why, sizeof(why), "too many connections (%s); retry later", flag);
    struct strbuf out = STRBUF_INIT;
    if (kind == NET_HTTP) {
        http_head(&out, 503, "text/plain; charset=utf-8", strlen(why) + 1, 0, 0,
                  "Retry-After: 1\r\n");
        sb_puts(&out, why);
        sb_puts(&out, "\n");
    } else {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &out, strbuf_write);
        if (kind == NET_INGEST)
            proto_fatal_pack(&pk, why, NULL);
        else
            pack_rpc_error(&pk, 0, 0, 503, why);
    }
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
        if (ratelog_due(&n->log_refused, n->now, &count))
            log_msg(LOG_WARN, "connection_refused", "port=%s limit=%s value=%u refused=%llu",
                    port_name[kind], flag, limit, (unsigned long long)count);
        n->stats.limits[PROM_LIM_CONNECTIONS]++;
        refuse(fd, kind, flag);
        return;
    }
    uint32_t i = 0;
    while (n->conns[i].in_use) /* nconns < max_conns: a free slot exists */
        i++;
    struct conn *c = &n->conns[i];
    c->fd = fd;
    c->kind = (uint8_t)kind;
    c->in_use = 1;
    c->active_ms = n->now;
    if (kind == NET_HTTP || n->token)
        c->hs_start = n->now;
    if (i >= n->hi)
        n->hi = i + 1;
    n->nconns++;
    n->stats.open[kind]++;
    n->stats.accepted[kind]++;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (kind == NET_INGEST) { /* a vanished producer: found within 2 min (60 s + 6 x 10 s) */
        int idle = 60, intvl = 10, cnt = 6;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    }
    if (conn_setup(n, c, kind)) {
        log_msg(LOG_ERROR, "connection_dropped", "reason=out_of_memory");
        conn_free(n, c);
        return;
    }
    touch(n, c);
}

/* Ends an ingest stream with {"fatal": msg} once what came before it is acked. */
static void set_fatal_quiet(struct netloop *n, struct conn *c, const char *msg)
{
    c->fatal = strdup(msg);
    if (!c->fatal)
        c->fatal = strdup("fatal");
    cancel_recv(n, c);
}

static void set_fatal(struct netloop *n, struct conn *c, const char *msg)
{
    if (c->fatal)
        return;
    set_fatal_quiet(n, c, msg);
    log_msg(LOG_INFO, "ingest_fatal", "conn=%u message=\"%s\"", conn_idx(n, c), msg);
}

/* A fatal that asks the producer to resend from its event `from` (the first not taken). */
static void set_fatal_resend(struct netloop *n, struct conn *c, uint64_t from, const char *msg)
{
    if (c->fatal)
        return;
    c->fatal_resend = 1;
    c->resend_from = from;
    set_fatal(n, c, msg);
}

/* The decoder refused the stream: a limit broken, or not msgpack. */
static void ingest_broken(struct netloop *n, struct conn *c)
{
    enum ingest_violation v = ingest_decoder_violation(c->dec);
    if (v == INGEST_LIMIT_NONE)
        n->stats.malformed[PROM_PORT_INGEST]++;
    else
        n->stats.limits[PROM_LIM_INGEST_VALUE + (v - INGEST_LIMIT_VALUE)]++;
    if (!c->fatal && v == INGEST_LIMIT_MEMORY)
        c->fatal_resend = 2; /* later (no room now), or split into smaller values */
    set_fatal(n, c, ingest_decoder_error(c->dec));
}

static void auth_failed(struct netloop *n, struct conn *c, const char *why)
{
    n->stats.auth_failures[c->kind]++;
    log_msg(LOG_WARN, "auth_failed", "port=%s conn=%u reason=\"%s\"",
            c->kind == NET_INGEST  ? "ingest"
            : c->kind == NET_QUERY ? "rpc"
                                   : "http",
            conn_idx(n, c), why);
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
static int flush_batch(struct netloop *n)
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

struct drain_ctx {
    struct netloop *n;
    struct conn *c;
    int oom;
    uint32_t budget;
};

static int on_event(void *arg, const struct event_raw *raw)
{
    struct drain_ctx *d = arg;
    struct netloop *n = d->n;
    struct conn *c = d->c;
    if (batch_add(n->cur, conn_idx(n, c), c->gen, c->events, raw)) {
        d->oom = 1;
        return 1;
    }
    c->events++;
    if (c->add_seq != n->cur->seq) {
        c->add_seq = n->cur->seq;
        c->inflight++;
    }
    return batch_full(n->cur) || --d->budget == 0;
}

/* Moves the connection's decoded events into batches while the writer has room, a quantum at
 * a time: a connection with more to give goes to the back of the line, so that two fast
 * producers share the writer evenly. */
static void drain_ingest(struct netloop *n, struct conn *c)
{
    struct drain_ctx d = {n, c, 0, DRAIN_QUANTUM};
    while (ingest_decoder_pending(c->dec) || !ingest_decoder_idle(c->dec)) {
        if (batch_full(n->cur) && !flush_batch(n))
            return;
        long r = ingest_decoder_drain(c->dec, on_event, &d);
        if (r < 0 || d.oom) {
            set_fatal(n, c, "the server ran out of memory decoding this stream");
            return;
        }
        if (d.budget == 0) {
            if (!ingest_decoder_idle(c->dec))
                touch(n, c);
            return;
        }
        if (!batch_full(n->cur))
            return;
    }
}

/* Queues an RPC error answer (pack_rpc_error) on c. */
static void queue_rpc_error(struct conn *c, int has_id, uint64_t msgid, unsigned code,
                            const char *msg)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, c, sbuf_write);
    pack_rpc_error(&pk, has_id, msgid, code, msg);
}

/* Hands a request to the writer as a query batch; req is malloc'd and taken over (freed on
 * failure). 0 or -ENOMEM. */
static int send_query(struct netloop *n, struct conn *c, char *req, size_t len)
{
    struct batch *b = NULL;
    if (!req || batch_new(BATCH_QUERY, 0, &b)) {
        free(req);
        return -ENOMEM;
    }
    b->conn = conn_idx(n, c);
    b->gen = c->gen;
    b->req = req;
    b->req_len = len;
    b->start_ns = now_ns();
    c->inflight++;
    c->qbytes += len;
    bqueue_push(n->to_writer, b);
    return 0;
}

/* Answers a query connection one last time and stops reading and parsing it. */
static void query_close(struct netloop *n, struct conn *c, unsigned code, const char *msg,
                        const char *why)
{
    if (msg)
        queue_rpc_error(c, 0, 0, code, msg);
    c->eof = 1;
    c->fatal = strdup(why); /* stops reading and parsing; NULL is ok */
    cancel_recv(n, c);
}

/* msgpack-RPC before authentication: the first request must be `auth` with the token; it and
 * anything else are answered here, not by the writer (nothing is in flight yet, so answers stay
 * in order). A wrong token or another method first ends the connection. req is one value the
 * scanner approved, so what msgpack-c allocates for it is bounded by len. */
static void query_auth(struct netloop *n, struct conn *c, const char *req, size_t len)
{
    static const msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int ok = msgpack_unpack_next(&u, req, len, NULL) == MSGPACK_UNPACK_SUCCESS;
    uint64_t msgid;
    enum proto_auth_result a =
        proto_auth_rpc_request(ok ? &u.data : &nil, n->token, n->token_len, &msgid);
    msgpack_unpacked_destroy(&u);
    if (a == PROTO_AUTH_OK) {
        c->authed = 1;
        msgpack_packer pk;
        msgpack_packer_init(&pk, c, sbuf_write);
        proto_auth_pack_rpc_ok(&pk, msgid);
        return;
    }
    auth_failed(n, c, a == PROTO_AUTH_WRONG ? "wrong token" : "no auth request first");
    queue_rpc_error(c, 1, msgid, 401,
                    a == PROTO_AUTH_WRONG ? "authentication failed: wrong token"
                                          : "authentication required: the first request must be "
                                            "[0, msgid, \"auth\", [{\"token\": TOKEN}]]");
    query_close(n, c, 0, NULL, "authentication failed");
}

/* The request at the front of qin broke a limit or is not msgpack: an error saying which (the
 * msgid is not known yet), counted, and the connection closed, since where the next request
 * would begin is unknown. */
static void query_refused(struct netloop *n, struct conn *c)
{
    static const char *const flag[] = {
        [MPSCAN_LIM_BYTES] = "--max-rpc-request-bytes",
        [MPSCAN_LIM_ARRAY] = "--max-array",
        [MPSCAN_LIM_MAP] = "--max-map-keys",
        [MPSCAN_LIM_DEPTH] = "--max-depth",
        [MPSCAN_LIM_STRING] = "--max-string-bytes",
        [MPSCAN_LIM_COST] = "--max-value-memory",
    };
    enum mpscan_violation v = c->qscan.violation;
    if (v == MPSCAN_LIM_NONE) {
        n->stats.malformed[PROM_PORT_RPC]++;
        query_close(n, c, 400, "malformed msgpack", "malformed request");
        return;
    }
    char what[128], msg[160];
    mpscan_describe(&c->qscan, what, sizeof(what));
    snprintf(msg, sizeof(msg), "%s (%s)", what, flag[v]);
    _Static_assert(PROM_LIM_RPC_MEMORY - PROM_LIM_RPC_REQUEST == MPSCAN_LIM_COST - MPSCAN_LIM_BYTES,
                   "prom's rpc limits follow mpscan's violations");
    n->stats.limits[PROM_LIM_RPC_REQUEST + (v - MPSCAN_LIM_BYTES)]++;
    log_msg(LOG_INFO, "rpc_refused", "conn=%u message=\"%s\"", conn_idx(n, c), msg);
    query_close(n, c, 413, msg, "request refused");
}

/* Hands on the complete requests received, in order, each checked by the scanner before
 * anything decodes it: the writer gets the bytes as they came (rpc_handle decodes them). A
 * client that does not read its answers gets no more requests handled (nor read, may_read)
 * once OUT_HIGH of them wait, as on the HTTP port, so it holds that much and the answers in
 * flight, not all it asked for. */
static void drain_query(struct netloop *n, struct conn *c)
{
    size_t off = 0; /* where the request being scanned begins in qin */
    if (c->hclose) { /* a send failed: no answer can reach the peer any more */
        c->qbacklog = 0;
        sb_free(&c->qin);
        return;
    }
    /* requests already received are answered even after the peer half-closes (eof) */
    c->qbacklog = 1;
    while (!c->fatal && off < c->qin.n) {
        if (c->inflight >= QUERY_MAX_INFLIGHT || out_queued(c) >= OUT_HIGH ||
            (c->inflight && c->qbytes >= QUERY_INFLIGHT_BYTES))
            goto out;
        const char *req = c->qin.p + off;
        size_t avail = c->qin.n - off, used;
        size_t seen = (size_t)c->qscan.pos;
        enum mpscan_status st = mpscan_feed(&c->qscan, req + seen, avail - seen, &used);
        if (st == MPSCAN_MORE)
            break;
        if (st != MPSCAN_DONE) {
            query_refused(n, c);
            break;
        }
        size_t len = (size_t)c->qscan.pos;
        mpscan_reset(&c->qscan);
        off += len;
        if (n->token && !c->authed) {
            query_auth(n, c, req, len);
        } else {
            char *copy = malloc(len);
            if (copy)
                memcpy(copy, req, len);
            if (send_query(n, c, copy, len))
                query_close(n, c, 0, NULL, "out of memory"); /* drop the peer */
        }
    }
    c->qbacklog = 0;
out:
    sb_consume(&c->qin, off);
    if (c->qin.n == 0 && c->qin.cap > QIN_KEEP)
        sb_free(&c->qin); /* a large request is gone: give its buffer back */
}

static void complete_ingest(struct netloop *n, struct batch *b)
{
    for (uint32_t s = 0; s < b->nsegs; s++) {
        const struct batch_seg *sg = &b->segs[s];
        struct conn *c = conn_of(n, ud(OP_RECV, sg->conn, sg->gen));
        if (!c)
            continue;
        for (uint32_t k = 0; k < sg->n; k++) {
            int o = b->outcome[sg->first + k];
            if (o == EVENT_OK) {
                c->ok++;
            } else if (o == EVENT_DUP) {
                c->dup++;
            } else if (o == BATCH_FULL) {
                char msg[200];
                snprintf(msg, sizeof(msg),
                         "the server is at its memory limit (--max-memory): event %llu was not "
                         "accepted; resend from event %llu later (any after it that got in come "
                         "back as duplicates)",
                         (unsigned long long)(sg->base + k), (unsigned long long)(sg->base + k));
                set_fatal_resend(n, c, sg->base + k, msg);
            } else if (o == EVENT_ERR_NOMEM) {
                char msg[160];
                snprintf(msg, sizeof(msg),
                         "the server could not log event %llu (see its log); "
                         "resend from event %llu",
                         (unsigned long long)(sg->base + k), (unsigned long long)(sg->base + k));
                set_fatal_resend(n, c, sg->base + k, msg);
            } else {
                c->rej++;
                proto_ack_err_format(c->errs[c->nerr++ % ERR_KEEP], sizeof(c->errs[0]),
                                     sg->base + k, event_outcome_name(o));
            }
        }
        if (c->done_seq != b->seq) {
            c->done_seq = b->seq;
            c->inflight--;
        }
        c->active_ms = n->now;
        c->ack_due = 1;
        touch(n, c);
    }
    n->inflight--;
    if (!n->spare) {
        batch_reset(b);
        n->spare = b;
    } else {
        batch_free(b);
    }
    /* connections that could not drain for want of a batch get their turn now, starting from
     * a different one each time; only the slots below hi were ever used, so at --max-connections
     * 1 M a batch does not cost a million cache misses */
    n->rr = n->hi ? (n->rr + 1) % n->hi : 0;
    for (uint32_t k = 0; k < n->hi; k++) {
        struct conn *c = &n->conns[(n->rr + k) % n->hi];
        if (c->in_use && c->dec && !ingest_decoder_idle(c->dec))
            touch(n, c);
    }
}

static void http_answer(struct netloop *n, struct conn *c, const struct batch *b);

/* A query batch back from the writer; dropped when its connection is gone (the generation in
 * the batch no longer matches the slot's). */
static void complete_query(struct netloop *n, struct batch *b)
{
    struct conn *c = conn_of(n, ud(OP_RECV, b->conn, b->gen));
    if (c && c->kind == NET_HTTP) {
        c->inflight--;
        http_answer(n, c, b);
        touch(n, c);
    } else if (c) {
        c->inflight--;
        c->qbytes -= b->req_len <= c->qbytes ? b->req_len : c->qbytes;
        c->active_ms = n->now;
        if (!b->resp || pend_append(c, b->resp, b->resp_len))
            c->eof = 1;
        else
            prom_observe(&n->stats.latency[PROM_PORT_RPC], now_ns() - b->start_ns);
        touch(n, c);
    }
    batch_free(b);
}

/* ---------------------------------------------------------------- http */

/* Queues one response (no body for HEAD) and records its latency; an answer that ends the
 * connection stops reading. Out of memory mid-response: the peer is dropped. */
static void http_respond(struct netloop *n, struct conn *c, int status, const char *ctype,
                         const char *body, size_t len, const char *extra)
{
    struct strbuf h = STRBUF_INIT;
    http_head(&h, status, ctype, len, c->hkeep, c->h10, extra);
    if (h.oom || pend_append(c, h.p, h.n) || (!c->hhead && pend_append(c, body, len)))
        c->hkeep = 0;
    sb_free(&h);
    prom_observe(&n->stats.latency[PROM_PORT_HTTP], now_ns() - c->t0_ns);
    if (!c->hkeep) {
        c->eof = c->hclose = 1;
        cancel_recv(n, c);
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
    if (send_query(n, c, req, len))
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
    auth_failed(n, c, tok ? "wrong token" : "no bearer token");
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
    int st = http_screen(&n->http, req, route, name, name_len, query, query_len, why,
                         sizeof(why), &extra);
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
    while (!c->hclose && c->inflight == 0 && out_queued(c) < OUT_HIGH &&
           http_in_next(c->hin, &req)) {
        c->hstarted = 1;
        c->hs_start = 0; /* the next head's wait starts when this answer is out (service) */
        c->t0_ns = now_ns();
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

/* ---------------------------------------------------------------- completions */

/* Ingest before authentication: the stream must open with {"auth": TOKEN}. Feeds the decoder
 * what follows the map once it is complete and right; a wrong or missing map ends the
 * connection with a fatal message. */
static void feed_ingest_auth(struct netloop *n, struct conn *c, const char *data, size_t len)
{
    static const char need[] = "authentication required: the stream must begin with the map "
                               "{\"auth\": TOKEN} (see --auth-token-file)";
    const size_t cap = PROTO_AUTH_INGEST_PREFIX_MAX;
    if (!c->abuf && !(c->abuf = malloc(cap))) {
        set_fatal(n, c, "the server ran out of memory reading this stream");
        return;
    }
    size_t take = len < cap - c->abuf_len ? len : cap - c->abuf_len;
    memcpy(c->abuf + c->abuf_len, data, take);
    c->abuf_len += take;
    size_t used = 0;
    enum proto_auth_result a =
        proto_auth_ingest_prefix(c->abuf, c->abuf_len, n->token, n->token_len, &used);
    if (a == PROTO_AUTH_MORE && c->abuf_len < cap)
        return;
    if (a != PROTO_AUTH_OK) {
        auth_failed(n, c, a == PROTO_AUTH_WRONG ? "wrong token" : "no auth map first");
        set_fatal(n, c, a == PROTO_AUTH_WRONG ? "authentication failed: wrong token" : need);
        return;
    }
    c->authed = 1;
    int rc = ingest_decoder_feed(c->dec, c->abuf + used, c->abuf_len - used);
    if (rc == 0 && take < len)
        rc = ingest_decoder_feed(c->dec, data + take, len - take);
    free(c->abuf);
    c->abuf = NULL;
    if (rc == -EPROTO)
        ingest_broken(n, c);
    else if (rc)
        set_fatal(n, c, "the server ran out of memory reading this stream");
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
    cancel_recv(n, c);
}

static void feed(struct netloop *n, struct conn *c, const char *data, size_t len)
{
    n->stats.bytes_in[c->kind] += len;
    if (c->linger == LINGER_ON && (c->linger_bytes += len) > LINGER_MAX)
        linger_stop(n, c);
    if (c->fatal || c->eof)
        return;
    if (c->kind == NET_HTTP) {
        feed_http(n, c, data, len);
        return;
    }
    if (c->kind == NET_INGEST) {
        if (n->token && !c->authed) {
            feed_ingest_auth(n, c, data, len);
            return;
        }
        int rc = ingest_decoder_feed(c->dec, data, len);
        if (rc == -EPROTO)
            ingest_broken(n, c);
        else if (rc)
            set_fatal(n, c, "the server ran out of memory reading this stream");
        return;
    }
    if (c->kind != NET_QUERY)
        return;
    /* A request past --max-rpc-request-bytes is refused once, by the scanner (drain_query).
     * qin holds at most the request being received and one recv's bytes: a query connection
     * reads one buffer at a time (arm_recv), and not while complete requests wait (may_read). */
    if (c->qin.n + len > (size_t)n->rpc_max + 2 * BR_SIZE)
        drain_query(n, c);
    if (c->fatal)
        return;
    if (c->qin.n + len > (size_t)n->rpc_max + 2 * BR_SIZE) {
        log_msg(LOG_ERROR, "rpc_input_overflow", "conn=%u bytes=%zu", conn_idx(n, c), c->qin.n);
        query_close(n, c, 0, NULL, "input past its bound"); /* a bug if it happens: drop */
        return;
    }
    sb_append(&c->qin, data, len);
    if (c->qin.oom) {
        c->eof = 1; /* out of memory: drop the peer */
        cancel_recv(n, c);
    }
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
    touch(n, c);
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
        touch(n, c);
        return;
    }
    c->active_ms = n->now;
    if ((c->out_off += (size_t)cqe->res) < c->out_len && !c->aborted) {
        struct io_uring_sqe *sqe = get_sqe(n);
        io_uring_prep_send(sqe, c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, ud(OP_SEND, conn_idx(n, c), c->gen));
        c->send_busy = 1;
        c->ops++;
    }
    touch(n, c);
}

/* Out of fds (or kernel memory), accept fails at once for as long as a connection waits in the
 * backlog: re-armed at once, it would spin a core and write a log line per attempt. The
 * listener rests ACCEPT_BACKOFF_MS instead (the waiting connections stay in the backlog), and
 * the failures are logged once a LOG_EVERY_MS with their count. */
static void accept_pause(struct netloop *n, int l, int err, int armed)
{
    uint64_t count;
    if (ratelog_due(&n->log_accept, n->now, &count))
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
        if (ratelog_due(&n->log_accept, n->now, &count))
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
            complete_ingest(n, b);
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
        touch(n, c);
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
            touch(n, c);
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

static int may_read(const struct netloop *n, const struct conn *c)
{
    if (c->linger == LINGER_ON)
        return 1;
    if (c->eof || c->fatal || n->stopping)
        return 0;
    if (c->kind == NET_HTTP)
        return !c->hclose && http_in_buffered(c->hin) < HTTP_IN_SOFT;
    if (c->kind == NET_QUERY) /* qbacklog: complete requests wait, reading more is no use */
        return c->inflight < QUERY_MAX_INFLIGHT && out_queued(c) < OUT_HIGH && !c->qbacklog;
    /* an incomplete value must be read to its end (the decoder bounds its size) */
    return c->inflight <= MAX_INFLIGHT &&
           (ingest_decoder_pending(c->dec) < PENDING_MAX / 2 || ingest_decoder_idle(c->dec));
}

static void service_output(struct netloop *n, struct conn *c)
{
    if (c->kind == NET_INGEST && c->fatal && !c->fatal_sent && c->inflight == 0 &&
        ingest_decoder_idle(c->dec) && !c->send_busy) {
        queue_ack(c);
        queue_fatal(c);
        c->fatal_sent = 1;
    } else if (c->ack_due && !c->send_busy && !c->fatal_sent) {
        queue_ack(c);
    }
    start_send(n, c);
}

static void maybe_close(struct netloop *n, struct conn *c)
{
    if (c->aborted) {
        if (c->ops == 0 && c->inflight == 0)
            conn_free(n, c);
        return;
    }
    int done_reading = c->eof || c->fatal_sent;
    if (c->kind == NET_INGEST && c->eof && !c->fatal && !ingest_decoder_idle(c->dec))
        done_reading = 0;
    if (c->kind == NET_QUERY && c->qbacklog)
        done_reading = 0;
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
    else if (c->kind == NET_HTTP)
        waiting = c->inflight == 0 && out_queued(c) == 0 &&
                  (!c->hstarted || http_in_buffered(c->hin) > 0);
    else
        waiting = n->token && !c->authed;
    if (!waiting)
        c->hs_start = 0;
    else if (!c->hs_start)
        c->hs_start = n->now;
}

/* --idle-timeout holds for every connection but a producer that has sent events: a live source
 * may be quiet for hours, and one that is gone is found by TCP keepalive (conn_open). */
static int idle_applies(const struct netloop *n, const struct conn *c)
{
    return n->idle_ms && !(c->kind == NET_INGEST && c->events > 0);
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
    n->deadline[conn_idx(n, c)] = d;
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
    touch(n, c);
}

/* A connection past --handshake-timeout (hs) or --idle-timeout: a last word in its port's
 * protocol (none for an HTTP keep-alive connection between requests, which clients expect to
 * close), then the usual lingering close. One already closing, or whose last word cannot get
 * out either, is dropped (at once, or LINGER_MS later). Counted, and logged once a second. */
static void timeout_close(struct netloop *n, struct conn *c, int hs)
{
    uint64_t secs = (hs ? n->handshake_ms : n->idle_ms) / 1000, count;
    n->stats.limits[hs ? PROM_LIM_HANDSHAKE_TIMEOUT : PROM_LIM_IDLE_TIMEOUT]++;
    if (ratelog_due(&n->log_timeout, n->now, &count))
        log_msg(LOG_WARN, "connection_timeout", "port=%s reason=%s seconds=%llu closed=%llu",
                port_name[c->kind], hs ? "handshake" : "idle", (unsigned long long)secs,
                (unsigned long long)count);
    if (c->eof || c->fatal || c->hclose) {
        conn_abort(n, c);
        return;
    }
    char msg[160];
    if (hs)
        snprintf(msg, sizeof(msg), "%s not complete within %llu s (--handshake-timeout); closed",
                 c->kind == NET_HTTP ? "request head" : "authentication", (unsigned long long)secs);
    else
        snprintf(msg, sizeof(msg), "idle for %llu s (--idle-timeout); closed: reconnect to go on",
                 (unsigned long long)secs);
    if (c->kind == NET_HTTP && hs) {
        c->hkeep = c->h10 = c->hhead = 0;
        c->t0_ns = now_ns();
        http_error(n, c, 408, msg);
    } else if (c->kind == NET_HTTP) {
        c->eof = c->hclose = 1;
        cancel_recv(n, c);
    } else if (c->kind == NET_QUERY) {
        query_close(n, c, 408, msg, "timed out");
    } else {
        set_fatal_quiet(n, c, msg);
    }
    c->abort_at = n->now + LINGER_MS;
    touch(n, c);
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
    n->deadline[conn_idx(n, c)] = conn_deadline(n, c);
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
    n->next_scan = next == UINT64_MAX          ? UINT64_MAX
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
    if (c->kind == NET_INGEST)
        drain_ingest(n, c);
    else if (c->kind == NET_QUERY)
        drain_query(n, c);
    else
        drain_http(n, c);
    service_output(n, c);
    if (!c->recv_armed && may_read(n, c))
        arm_recv(n, c);
    else if (c->recv_armed && c->kind == NET_INGEST && c->linger != LINGER_ON &&
             ingest_decoder_pending(c->dec) > PENDING_MAX)
        cancel_recv(n, c);
    else if (c->recv_armed && c->kind == NET_HTTP && !may_read(n, c))
        cancel_recv(n, c);
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
    flush_batch(n);
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
