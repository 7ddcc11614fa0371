/* libcascade-client (DESIGN §7): talking to a cascaded from another program. TCP connections
 * with timeouts, the --auth-token-file handshake, an ingest stream (events sent in batches, an
 * ack window, outcomes ok/dup/rej with the server's reasons, and the resume point after a
 * failure), and msgpack-RPC calls, one at a time or pipelined. It links msgpack-c and nothing of
 * the server. Wire formats come from cascade/proto.h. Prefix cc_. Every function returns 0 (or a
 * count) or a negative errno; messages for the user go into caller-given buffers. Objects are
 * not thread-safe: one thread per object. Build with `pkg-config --cflags --libs
 * cascade-client`. */
#ifndef CASCADE_CLIENT_H
#define CASCADE_CLIENT_H

#include <msgpack.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "cascade/event.h"
#include "cascade/mp.h" /* mp_map_get and friends, to read answers */
#include "cascade/proto.h"

/* ------------------------------------------------------------------ connecting */

#define CC_WHERE_MAX 300  /* "host:port", "[v6 address]:port" */
#define CC_ERESOLVE  1000 /* -CC_ERESOLVE: the host name does not resolve (not an errno) */

/* "host:port", with an IPv6 address in brackets, into buf. */
void cc_where(char *buf, size_t len, const char *host, const char *port);

/* CLOCK_MONOTONIC in seconds: the clock of every deadline here. */
double cc_now(void);

/* Waits until fd is ready for events (POLLIN, POLLOUT) or the deadline (cc_now() seconds)
 * passes: 1 ready (or poll failed: the next call on fd says why), 0 timed out. */
int cc_wait(int fd, short events, double deadline);

#define CC_BLOCKING 1 /* cc_connect: leave the socket blocking (default: non-blocking) */

/* A TCP connection to host:port (each address getaddrinfo gives, in turn), each attempt bounded
 * by timeout_s (<= 0: the system's). The socket is close-on-exec, has Nagle off (a batch's tail
 * must not wait for the previous segment's ACK) and is non-blocking unless flags has
 * CC_BLOCKING. The fd (owned by the caller), or -CC_ERESOLVE or a negative errno from the last
 * attempt (-ETIMEDOUT when it timed out), with the reason as text in why (gai_strerror's or
 * strerror's). */
int cc_connect(const char *host, const char *port, double timeout_s, int flags, char *why,
               size_t whylen);

/* ------------------------------------------------------------------ msgpack-RPC */

struct cc_rpc;

/* A query-port connection on fd (taken over: cc_rpc_close closes it), which may be blocking or
 * not. where names the server in messages (copied). max_answer bounds one response's bytes
 * (0: 256 MiB). *out is owned by the caller. 0 or -ENOMEM (fd is then closed). */
int cc_rpc_wrap(int fd, const char *where, size_t max_answer, struct cc_rpc **out);
/* cc_connect + cc_rpc_wrap, then, with a token, cc_rpc_auth. Every send and receive is bounded
 * by timeout_s from each call that waits (cc_rpc_set_timeout). On failure, a message in err. */
int cc_rpc_open(const char *host, const char *port, double timeout_s, const char *token,
                struct cc_rpc **out, char *err, size_t errlen);
void cc_rpc_close(struct cc_rpc *r);
/* Frees r and gives its fd back, for a caller that runs its own I/O loop once connected and
 * authenticated (cascade-bench). -EBUSY (r kept) when bytes of answers not yet read are buffered
 * or requests are packed and not sent. */
int cc_rpc_detach(struct cc_rpc *r);
int cc_rpc_fd(const struct cc_rpc *r);
const char *cc_rpc_where(const struct cc_rpc *r);

/* The time each of cc_rpc_send, cc_rpc_recv, cc_rpc_flush and cc_rpc_next may wait, in seconds
 * (<= 0: for ever); or one absolute deadline (cc_now() seconds) for all that follow (0: none). */
void cc_rpc_set_timeout(struct cc_rpc *r, double timeout_s);
void cc_rpc_set_deadline(struct cc_rpc *r, double deadline);

/* Sends len bytes as they are (requests packed by the caller). 0; -ETIMEDOUT; -EPIPE when the
 * server has closed the connection (what it sent before, e.g. why it refused, can still be
 * read); another negative errno. */
int cc_rpc_send(struct cc_rpc *r, const void *buf, size_t len);

/* The next value the server sent, whatever it is, into *out (valid until the next receive on
 * r). 0; -ETIMEDOUT; -EPIPE when the server closed the connection first; -EMSGSIZE past
 * max_answer; -EBADMSG when the bytes are not msgpack; -EOVERFLOW when msgpack-c could not
 * allocate what its headers claim (a hostile or oversized answer); -EPROTONOSUPPORT when the
 * first bytes are an HTTP answer (an HTTP port: cc_rpc_http_line gives its first line);
 * -ENOMEM (no buffer for the next bytes); another negative errno from recv. */
int cc_rpc_recv(struct cc_rpc *r, const msgpack_object **out);
/* After -EPROTONOSUPPORT: the first line of the HTTP answer (not NUL-terminated, *len bytes). */
const char *cc_rpc_http_line(const struct cc_rpc *r, size_t *len);

/* Pipelined calls: cc_rpc_begin packs the envelope of a request into r's output and returns
 * the packer for its nparams key/value pairs (NULL: out of memory); *msgid gets its id (ids
 * count up from 1). cc_rpc_begin_text does the same from "key=value" texts, checked and typed
 * against the method's schema (cascade/schema.h) as cascade-cli does: -ENOENT (unknown method)
 * or -EINVAL (a bad parameter) with a message in err. cc_rpc_flush sends every request packed
 * so far; cc_rpc_next reads the next response (they come in request order) into *resp (valid
 * until the next receive): the errors of cc_rpc_recv, or -EPROTO when it is not a response. */
msgpack_packer *cc_rpc_begin(struct cc_rpc *r, const char *method, uint32_t nparams,
                             uint64_t *msgid);
int cc_rpc_begin_text(struct cc_rpc *r, const char *method, const char *const *params,
                      size_t nparams, uint64_t *msgid, char *err, size_t errlen);
int cc_rpc_flush(struct cc_rpc *r);
int cc_rpc_next(struct cc_rpc *r, struct proto_rpc_response *resp);

/* One call: cc_rpc_begin_text, cc_rpc_flush, cc_rpc_next, and a check that the answer is the
 * one asked for. 0 with *resp filled: resp->error set when the server answered with an error
 * (resp->code, resp->message); or a negative errno with a message in err. */
int cc_rpc_call(struct cc_rpc *r, const char *method, const char *const *params, size_t nparams,
                struct proto_rpc_response *resp, char *err, size_t errlen);

/* The `auth` request with token (msgid 0), and its answer checked. 0; -EACCES when the server
 * refused it (its message in err); or the errors of cc_rpc_send/cc_rpc_next. */
int cc_rpc_auth(struct cc_rpc *r, const char *token, char *err, size_t errlen);

/* ------------------------------------------------------------------ ingest */

/* Told for each rejected event, as acks name them: its index in the stream (from 0, in the
 * order added) and the server's reason ("missing_actor", ...). */
typedef void (*cc_reject_fn)(void *ctx, uint64_t index, const char *reason);

struct cc_ingest_opts {
    uint32_t window_events;   /* events sent and not yet acked, at most (0: 65536) */
    size_t window_bytes;      /* their encoded bytes, at most (0: 16 MiB) */
    uint32_t batch_events;    /* events per msgpack array sent (0: 1000) */
    size_t batch_bytes;       /* ... and bytes (0: 1 MiB, well under the server's 4 MiB) */
    double ack_timeout_s;     /* no ack this long while acks are owed: the connection is lost
                                 (0: 60) */
    double connect_timeout_s; /* (0: 10) */
    const char *token;        /* --auth-token-file's secret, or NULL */
    cc_reject_fn on_reject;   /* NULL: rejections are only counted */
    void *ctx;
};

enum cc_ingest_state {
    CC_INGEST_OPEN = 0,
    CC_INGEST_LOST,  /* the connection broke, or the server's replies made no sense */
    CC_INGEST_FATAL, /* the server ended it with a fatal message */
};

struct cc_ingest_counts {
    uint64_t added;        /* events added (cc_ingest_add), including the open batch */
    uint64_t sent;         /* events in closed batches: written, or about to be */
    uint64_t ok, dup, rej; /* the server's last ack: acked = ok + dup + rej */
};

struct cc_ingest;

/* Connects to the ingest port and, with a token, opens the stream with {"auth": TOKEN}. o may
 * be NULL (all defaults). *out is owned by the caller (cc_ingest_close). 0, or a negative errno
 * (-CC_ERESOLVE, -ECONNREFUSED, ...) with a message in err. */
int cc_ingest_open(const char *host, const char *port, const struct cc_ingest_opts *o,
                   struct cc_ingest **out, char *err, size_t errlen);
void cc_ingest_close(struct cc_ingest *s);

/* Encodes one event into the open batch (proto_event_pack); a full batch is closed and goes
 * out on the next service. 0; -ENOBUFS when the window is full (service until it is not);
 * -EPIPE when the connection has failed; -ENOMEM. */
int cc_ingest_add(struct cc_ingest *s, const struct event_raw *ev);
/* Closes the open batch, so that the next service sends it. */
void cc_ingest_flush(struct cc_ingest *s);

/* Whether the window is full; whether every event added is acked (or the connection failed). */
int cc_ingest_full(const struct cc_ingest *s);
int cc_ingest_idle(const struct cc_ingest *s);

/* For a caller's own poll loop: the fd (-1 once failed) and the events to wait for. */
void cc_ingest_pollfd(const struct cc_ingest *s, struct pollfd *p);
/* Reads what came when poll reported it in revents, writes what is pending (never waiting),
 * and checks the ack timeout. 1 when an ack arrived, else 0. */
int cc_ingest_service(struct cc_ingest *s, short revents);
/* cc_ingest_flush, then services until every event added is acked, the connection fails or
 * timeout_s passes (<= 0: no limit beyond the ack timeout). 0 when all are acked; -EPIPE
 * (failed: cc_ingest_state says why); -ETIMEDOUT. */
int cc_ingest_wait(struct cc_ingest *s, double timeout_s);

/* The counts so far. */
void cc_ingest_counts(const struct cc_ingest *s, struct cc_ingest_counts *c);
/* The resume point: the index of the first event not acked (ok + dup + rej), from which a
 * producer resends after a failure; a fatal's resend_from when it names an earlier one. */
uint64_t cc_ingest_resume(const struct cc_ingest *s);
/* The state, and why it is not open (a static or internal string; "" while open). */
enum cc_ingest_state cc_ingest_state(const struct cc_ingest *s, const char **why);

#endif
