/* The network loop's inside, shared by the loop (loop.c) and the three port sessions it runs
 * (session_ingest.c, session_rpc.c, session_http.c). The loop owns the ring, the connections,
 * their buffers and output, deadlines and lingering; a session is one port's protocol behind
 * struct net_session_ops, picked per listener when a connection is accepted (as memcached keeps
 * its proto_*.c apart from its event loop). Nothing outside src/net/ includes this. */
#ifndef NET_LOOP_INT_H
#define NET_LOOP_INT_H

#include <liburing.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/signalfd.h>

#include "cascade/mp.h"
#include "cascade/proto.h"
#include "core/strbuf.h"
#include "net/loop.h"
#include "query/prom.h"

#define BR_SIZE      (32u * 1024) /* bytes of one receive buffer */
#define MAX_INFLIGHT 4            /* ingest batches at the writer */
#define ERR_KEEP     PROTO_ACK_ERR_MAX
#define OUT_HIGH     (256u * 1024) /* queued output past which HTTP and RPC requests wait */

/* Closing a socket that has unread input makes the kernel send a reset, which may destroy the
 * last answer (a fatal message, an HTTP error) before the peer reads it. So a connection the
 * server ends while the peer may still be writing first sends FIN (SHUT_WR) and reads and drops
 * what comes until EOF, LINGER_MAX bytes or LINGER_MS, as web servers do. */
enum { LINGER_NONE, LINGER_ON, LINGER_DONE };

/* A warning that a client can make the server repeat: one line per LOG_EVERY_MS at most. */
struct ratelog {
    uint64_t next_ms, count;
};

struct netloop;
struct conn;
struct batch;

/* One port's protocol. The loop calls these on its own thread; each may queue output
 * (net_pend_append), set the connection's eof / fatal / hclose flags and touch it; the loop
 * sends, re-arms reads, runs the timers and closes. */
struct net_session_ops {
    const char *name;           /* the port in log lines: ingest, rpc, http */
    const char *handshake_what; /* what --handshake-timeout waits for, in its message */
    uint8_t recv_multishot;     /* read with a multishot recv (else one buffer per recv) */
    /* Sets up the session's state for a new connection: 0 or -ENOMEM (then it is closed). */
    int (*open)(struct netloop *n, struct conn *c);
    /* Frees the session's state (also after a failed open). */
    void (*free)(struct conn *c);
    /* Bytes received (copied out; the buffer goes back to the kernel after the call). */
    void (*feed)(struct netloop *n, struct conn *c, const char *data, size_t len);
    /* Acts on what was received and queues the answers due: at each service of the connection. */
    void (*drain)(struct netloop *n, struct conn *c);
    /* Whether to read more (after the loop's own checks: lingering, eof, fatal, stopping). */
    int (*may_read)(const struct netloop *n, const struct conn *c);
    /* Whether the recv in the ring should be cancelled (reading must pause at once). */
    int (*stop_read)(const struct netloop *n, const struct conn *c);
    /* A query batch back from the writer (NULL: the port sends none). */
    void (*complete)(struct netloop *n, struct conn *c, struct batch *b);
    /* Input received before EOF is still being acted on: not done reading yet. */
    int (*busy)(const struct conn *c);
    /* Waits for its request head or authentication (--handshake-timeout runs). */
    int (*handshake_waiting)(const struct netloop *n, const struct conn *c);
    /* The last word to a connection past --handshake-timeout (hs) or --idle-timeout. */
    void (*timeout)(struct netloop *n, struct conn *c, int hs, const char *msg);
    /* The one message a connection refused at accept (over a budget) gets, into out. */
    void (*refuse)(struct strbuf *out, const char *why);
};

extern const struct net_session_ops net_session_ingest, net_session_rpc, net_session_http;

struct conn {
    int fd;
    uint32_t gen;
    const struct net_session_ops *sess; /* its port's protocol, chosen at accept */
    uint8_t kind, in_use; /* kind: the port (NET_INGEST ...), an index of the figures only */
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
    const char *ingest_refused; /* netloop_config's: a cluster node takes no events here */
    struct io_uring ring;
    int lfd[NET_LISTENERS];
    const struct net_session_ops *sess[NET_LISTENERS]; /* each listener's protocol */
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

static inline uint32_t net_conn_idx(const struct netloop *n, const struct conn *c)
{
    return (uint32_t)(c - n->conns);
}

/* Answers queued and not yet sent: what a client that does not read makes the server hold. */
static inline size_t net_out_queued(const struct conn *c)
{
    return c->pend_len + (c->out_len - c->out_off);
}

/* ---- what the loop offers the sessions (loop.c) */

uint64_t net_now_ns(void);
/* Counts one occurrence; 1 when its line may be written now, *count the occurrences it stands
 * for. */
int net_ratelog_due(struct ratelog *r, uint64_t now, uint64_t *count);
/* Has the connection serviced at the end of this turn of the loop. */
void net_touch(struct netloop *n, struct conn *c);
/* Cancels the recv in the ring, if any. */
void net_cancel_recv(struct netloop *n, struct conn *c);
/* The loop's full read test (lingering, eof, fatal, stopping, then the session's). */
int net_may_read(const struct netloop *n, const struct conn *c);
/* Queues bytes to send after what is queued: 0 or -ENOMEM. */
int net_pend_append(struct conn *c, const void *p, size_t len);
/* msgpack-c write callbacks: into a connection's queued output (data: the conn), into a
 * strbuf (data: the strbuf). */
int net_pend_write(void *data, const char *buf, size_t len);
int net_strbuf_write(void *data, const char *buf, size_t len);
/* The live connection in slot idx with generation gen, or NULL (closed since). */
struct conn *net_conn_get(struct netloop *n, uint32_t idx, uint32_t gen);
/* Hands a request to the writer as a query batch; req is malloc'd and taken over (freed on
 * failure). 0 or -ENOMEM. */
int net_send_query(struct netloop *n, struct conn *c, char *req, size_t len);
/* Hands the current ingest batch to the writer; 0 when the writer has enough in flight. */
int net_flush_batch(struct netloop *n);
/* Counts and logs a failed authentication. */
void net_auth_failed(struct netloop *n, struct conn *c, const char *why);

/* ---- session entry points the loop calls outside a connection's ops */

/* An ingest batch back from the writer: outcomes counted per connection, acks due. */
void net_ingest_complete(struct netloop *n, struct batch *b);
/* What the RPC port holds a request to (session_rpc.c). */
void net_rpc_limits(const struct ingest_limits *in, uint32_t rpc_max, struct mpscan_limits *l);

#endif
