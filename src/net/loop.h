/* The network loop: one io_uring, one thread, every socket of the server. Ingest connections
 * are read with multishot recv into a provided buffer ring (single-shot recv into a buffer of
 * their own where the kernel lacks that), decoded, batched, and handed to the writer thread;
 * their acks go out when the batch comes back. Query connections carry msgpack-RPC requests to
 * the writer and responses back. Backpressure: a connection whose undecoded bytes or batches in
 * flight pass a bound stops being read until the writer catches up; a query or HTTP connection
 * whose answers are not read, likewise once they pass a bound. Each port has its own budget of
 * connections, and timers close a connection that does not send its request head or auth in
 * time (handshake) or goes quiet (idle). */
#ifndef NET_LOOP_H
#define NET_LOOP_H

#include <stdint.h>

#include "net/batch.h"
#include "net/ingest_proto.h"
#include "query/http.h"

enum { NET_INGEST = 0, NET_QUERY, NET_HTTP, NET_LISTENERS };

#define NET_RPC_MAX       (1u << 20) /* default bound on one msgpack-RPC request */
#define NET_HANDSHAKE_MS  10000      /* default --handshake-timeout */
#define NET_IDLE_MS       300000     /* default --idle-timeout */

struct netloop_config {
    const char *bind;              /* IPv4 address, e.g. 127.0.0.1 */
    uint16_t ports[NET_LISTENERS]; /* 0: any free port */
    struct ingest_limits limits;
    uint32_t max_conns;            /* default 1024; lowered to fit RLIMIT_NOFILE, with a log line */
    uint32_t port_conns[NET_LISTENERS]; /* each port's budget; 0: its share of max_conns */
    uint32_t handshake_ms; /* an HTTP request head, or the auth with a token, within this; 0:
                              NET_HANDSHAKE_MS */
    uint32_t idle_ms;      /* a connection with nothing received, sent or at the writer for this
                              long is closed; 0: never */
    int signal_fd;                 /* signalfd for SIGTERM/SIGINT (stop) and SIGUSR1 (on_sigusr1) */
    void (*on_sigusr1)(void *ctx); /* called on the loop's thread; NULL: SIGUSR1 is ignored */
    void *sigusr1_ctx;
    const char *auth_token;  /* NULL: no authentication; else each port asks for it (proto.h) */
    struct http_limits http; /* all 0: query/http.h's defaults */
    uint32_t rpc_max;        /* bytes of one RPC request; 0: NET_RPC_MAX */
    /* a cluster node's (DESIGN §9): every ingest stream that sends an event gets this fatal
     * (the stream is the way in); NULL: ingest as usual */
    const char *ingest_refused;
};

struct netloop;

/* Binds and listens on every port (so the ports are known), sets up the ring. to_writer gets
 * the batches; from_writer must have an eventfd (bqueue_init(q, 1)). On error a negative errno
 * and a message in err. */
int netloop_new(const struct netloop_config *cfg, struct bqueue *to_writer,
                struct bqueue *from_writer, struct netloop **out, char *err, size_t errlen);

/* The ports actually bound. */
void netloop_ports(const struct netloop *n, uint16_t ports[NET_LISTENERS]);

/* Serves until the signal fd fires, then stops accepting and reading, waits for the batches in
 * flight and the acks they owe (at most a few seconds), and returns 0. */
int netloop_run(struct netloop *n);

void netloop_free(struct netloop *n);

#endif
