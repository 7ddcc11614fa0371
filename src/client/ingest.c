/* libcascade-client's ingest stream (see cascade/client.h; DESIGN §4). Events go out as msgpack
 * arrays and are remembered (their encoded size) until a cumulative ack covers them: that bounds
 * the events in flight, gives the resume point after a failure, and turns the server's
 * "event N: reason" into the index of the event the producer added. */
#include "cascade/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ARRAY32_HEAD 5 /* 0xdd and a 32-bit count: patched in when the batch is closed */
#define RECV_CHUNK   (1u << 16)

struct cc_ingest {
    int fd;
    enum cc_ingest_state state;
    struct cc_ingest_opts o;
    /* out[off..ready) can be written; out[ready..len) is the batch being filled */
    char *out;
    size_t off, ready, len, cap;
    uint32_t batch_events;
    uint32_t *ring; /* encoded bytes of each event not acked, oldest at head */
    uint32_t ring_cap, head, count;
    uint64_t added, sent, ok, dup, rej, unacked_bytes;
    double waiting_since; /* since when the server owes acks without sending any */
    int has_resend;
    uint64_t resend_from;
    msgpack_unpacker up;
    int up_init;
    char why[300];
};

static int out_reserve(struct cc_ingest *s, size_t more)
{
    /* drop what the socket took once it is half the buffer (or all of what it could take), so
     * that a socket that never quite catches up does not make the buffer grow for ever */
    if (s->off > 0 && (s->off == s->ready || s->off >= s->len / 2)) {
        memmove(s->out, s->out + s->off, s->len - s->off);
        s->len -= s->off;
        s->ready -= s->off;
        s->off = 0;
    }
    if (s->len + more <= s->cap)
        return 0;
    size_t cap = s->cap ? s->cap : (1u << 16);
    while (cap < s->len + more)
        cap *= 2;
    char *p = realloc(s->out, cap);
    if (!p)
        return -ENOMEM;
    s->out = p;
    s->cap = cap;
    return 0;
}

/* msgpack-c's write callback: appends to the stream's output. */
static int out_write(void *data, const char *buf, size_t len)
{
    struct cc_ingest *s = data;
    if (out_reserve(s, len))
        return -1;
    memcpy(s->out + s->len, buf, len);
    s->len += len;
    return 0;
}

static uint64_t acked(const struct cc_ingest *s)
{
    return s->ok + s->dup + s->rej;
}

void cc_ingest_flush(struct cc_ingest *s)
{
    if (!s->batch_events)
        return;
    unsigned char *h = (unsigned char *)s->out + s->ready;
    uint32_t n = s->batch_events;
    h[0] = 0xdd;
    h[1] = (unsigned char)(n >> 24);
    h[2] = (unsigned char)(n >> 16);
    h[3] = (unsigned char)(n >> 8);
    h[4] = (unsigned char)n;
    s->ready = s->len;
    if (s->sent == acked(s))
        s->waiting_since = cc_now(); /* the first event the server owes an ack for */
    s->sent += s->batch_events;
    s->batch_events = 0;
}

int cc_ingest_add(struct cc_ingest *s, const struct event_raw *ev)
{
    if (s->state != CC_INGEST_OPEN)
        return -EPIPE;
    if (s->count == s->ring_cap)
        return -ENOBUFS; /* the caller checks cc_ingest_full first */
    if (!s->batch_events) {
        if (out_reserve(s, ARRAY32_HEAD))
            return -ENOMEM;
        s->len += ARRAY32_HEAD;
    }
    /* positions relative to the batch's start: writing may move the buffer's contents */
    size_t rel = s->len - s->ready;
    msgpack_packer pk;
    msgpack_packer_init(&pk, s, out_write);
    if (proto_event_pack(&pk, ev)) { /* drop the partial event, and a batch header left alone */
        s->len = s->ready + (s->batch_events ? rel : 0);
        return -ENOMEM;
    }
    uint32_t bytes = (uint32_t)(s->len - s->ready - rel);
    s->ring[(s->head + s->count) % s->ring_cap] = bytes;
    s->count++;
    s->added++;
    s->unacked_bytes += bytes;
    if (++s->batch_events >= s->o.batch_events || s->len - s->ready >= s->o.batch_bytes)
        cc_ingest_flush(s);
    return 0;
}

int cc_ingest_full(const struct cc_ingest *s)
{
    return s->count >= s->o.window_events || s->unacked_bytes >= s->o.window_bytes;
}

int cc_ingest_idle(const struct cc_ingest *s)
{
    return s->state != CC_INGEST_OPEN || s->count == 0;
}

void cc_ingest_pollfd(const struct cc_ingest *s, struct pollfd *p)
{
    p->fd = s->state == CC_INGEST_OPEN ? s->fd : -1;
    p->events = (short)(POLLIN | (s->off < s->ready ? POLLOUT : 0));
    p->revents = 0;
}

static void fail(struct cc_ingest *s, enum cc_ingest_state st, const char *fmt, const char *detail)
{
    if (s->state != CC_INGEST_OPEN)
        return;
    s->state = st;
    snprintf(s->why, sizeof(s->why), fmt, detail);
}

static int read_acks(struct cc_ingest *s);

static void write_some(struct cc_ingest *s)
{
    while (s->off < s->ready) {
        ssize_t n = send(s->fd, s->out + s->off, s->ready - s->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            s->off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        int err = errno;
        /* A server that ends the connection (a fatal message, a limit) may reset it while we
         * still write; what it said before, its last ack and the reason, is still queued here:
         * read it first, so that the user sees the reason and the right resume point. */
        while (s->state == CC_INGEST_OPEN && read_acks(s))
            ;
        fail(s, CC_INGEST_LOST, "writing failed: %s", strerror(err));
        return;
    }
}

/* err entries name events of this stream, counted from 0; those between the previous ack and
 * this one are still in the ring. */
static void name_rejections(struct cc_ingest *s, const msgpack_object *err, uint64_t before,
                            uint64_t now)
{
    if (!err || !s->o.on_reject)
        return;
    for (uint32_t i = 0; i < err->via.array.size; i++) {
        uint64_t ev;
        char reason[64];
        if (proto_ack_err_parse(&err->via.array.ptr[i], &ev, reason, sizeof(reason)) == 0 &&
            ev >= before && ev < now)
            s->o.on_reject(s->o.ctx, ev, reason);
    }
}

static void on_reply(struct cc_ingest *s, const msgpack_object *m)
{
    struct proto_ack a;
    struct proto_fatal f;
    switch (proto_reply_parse(m, &a, &f)) {
    case PROTO_REPLY_FATAL: {
        char text[200];
        snprintf(text, sizeof(text), "%.*s", (int)f.msg_len, f.msg);
        s->has_resend = f.has_resend;
        s->resend_from = f.resend_from;
        fail(s, CC_INGEST_FATAL, "the server ended the connection: %s", text);
        return;
    }
    case PROTO_REPLY_ACK:
        break;
    default:
        fail(s, CC_INGEST_LOST, "%s", "the server sent something that is not an ack");
        return;
    }
    uint64_t before = acked(s), now = a.ok + a.dup + a.rej;
    if (now < before || now - before > s->count) {
        fail(s, CC_INGEST_LOST, "%s", "the server's ack counts do not match the events sent");
        return;
    }
    name_rejections(s, a.err, before, now);
    for (uint64_t i = before; i < now; i++) {
        s->unacked_bytes -= s->ring[s->head];
        s->head = (s->head + 1) % s->ring_cap;
        s->count--;
    }
    if (now > before)
        s->waiting_since = cc_now();
    s->ok = a.ok;
    s->dup = a.dup;
    s->rej = a.rej;
}

static int read_acks(struct cc_ingest *s)
{
    int got = 0;
    if (!msgpack_unpacker_reserve_buffer(&s->up, RECV_CHUNK)) {
        fail(s, CC_INGEST_LOST, "%s", "out of memory for acks");
        return 0;
    }
    ssize_t n = recv(s->fd, msgpack_unpacker_buffer(&s->up),
                     msgpack_unpacker_buffer_capacity(&s->up), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0) {
        fail(s, CC_INGEST_LOST, "the server closed the connection%s",
             n < 0 ? " abruptly (reset)" : "");
        return 0;
    }
    msgpack_unpacker_buffer_consumed(&s->up, (size_t)n);
    msgpack_unpacked res;
    msgpack_unpacked_init(&res);
    msgpack_unpack_return ret;
    while ((ret = msgpack_unpacker_next(&s->up, &res)) == MSGPACK_UNPACK_SUCCESS &&
           s->state == CC_INGEST_OPEN) {
        if (res.data.type == MSGPACK_OBJECT_MAP)
            on_reply(s, &res.data);
        got = 1;
    }
    msgpack_unpacked_destroy(&res);
    if (ret == MSGPACK_UNPACK_PARSE_ERROR || ret == MSGPACK_UNPACK_NOMEM_ERROR ||
        msgpack_unpacker_message_size(&s->up) > PROTO_REPLY_MAX)
        fail(s, CC_INGEST_LOST, "%s", "the server's replies are not msgpack acks");
    return got;
}

int cc_ingest_service(struct cc_ingest *s, short revents)
{
    int got = 0;
    if (s->state == CC_INGEST_OPEN && (revents & (POLLIN | POLLERR | POLLHUP)))
        got = read_acks(s);
    if (s->state == CC_INGEST_OPEN && s->off < s->ready)
        write_some(s);
    /* only events already handed over count: an event held in the open batch owes nothing */
    if (s->state == CC_INGEST_OPEN && s->sent > acked(s) &&
        cc_now() - s->waiting_since > s->o.ack_timeout_s) {
        char secs[32];
        snprintf(secs, sizeof(secs), "%.0f", s->o.ack_timeout_s);
        fail(s, CC_INGEST_LOST, "no acknowledgement from the server for %s s", secs);
    }
    return got;
}

int cc_ingest_wait(struct cc_ingest *s, double timeout_s)
{
    double deadline = timeout_s > 0 ? cc_now() + timeout_s : 0;
    cc_ingest_flush(s);
    while (!cc_ingest_idle(s)) {
        struct pollfd p;
        cc_ingest_pollfd(s, &p);
        double left = deadline > 0 ? deadline - cc_now() : 1;
        if (left <= 0)
            return -ETIMEDOUT;
        int n = poll(&p, 1, left < 1 ? (int)(left * 1000) + 1 : 1000);
        if (n < 0 && errno != EINTR)
            return -errno;
        cc_ingest_service(s, n > 0 ? p.revents : 0);
    }
    return s->state == CC_INGEST_OPEN ? 0 : -EPIPE;
}

void cc_ingest_counts(const struct cc_ingest *s, struct cc_ingest_counts *c)
{
    *c = (struct cc_ingest_counts){
        .added = s->added, .sent = s->sent, .ok = s->ok, .dup = s->dup, .rej = s->rej};
}

uint64_t cc_ingest_resume(const struct cc_ingest *s)
{
    uint64_t from = acked(s);
    return s->has_resend && s->resend_from < from ? s->resend_from : from;
}

enum cc_ingest_state cc_ingest_state(const struct cc_ingest *s, const char **why)
{
    if (why)
        *why = s->why;
    return s->state;
}

int cc_ingest_open(const char *host, const char *port, const struct cc_ingest_opts *o,
                   struct cc_ingest **out, char *err, size_t errlen)
{
    struct cc_ingest *s = calloc(1, sizeof(*s));
    *out = NULL;
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->fd = -1;
    if (o)
        s->o = *o;
    s->o.window_events = s->o.window_events ? s->o.window_events : 65536;
    s->o.window_bytes = s->o.window_bytes ? s->o.window_bytes : (16u << 20);
    s->o.batch_events = s->o.batch_events ? s->o.batch_events : 1000;
    s->o.batch_bytes = s->o.batch_bytes ? s->o.batch_bytes : (1u << 20);
    s->o.ack_timeout_s = s->o.ack_timeout_s > 0 ? s->o.ack_timeout_s : 60;
    s->o.connect_timeout_s = s->o.connect_timeout_s > 0 ? s->o.connect_timeout_s : 10;
    s->o.token = NULL; /* not kept: it is sent once, below */
    s->ring_cap = s->o.window_events + 16;
    s->ring = malloc(s->ring_cap * sizeof(*s->ring));
    if (!s->ring || !msgpack_unpacker_init(&s->up, RECV_CHUNK)) {
        cc_ingest_close(s);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->up_init = 1;
    char where[CC_WHERE_MAX], why[160];
    cc_where(where, sizeof(where), host, port);
    int fd = cc_connect(host, port, s->o.connect_timeout_s, 0, why, sizeof(why));
    if (fd < 0) {
        if (fd == -CC_ERESOLVE)
            snprintf(err, errlen, "cannot resolve %s: %s", where, why);
        else
            snprintf(err, errlen, "cannot connect to %s: %s", where, why);
        cc_ingest_close(s);
        return fd;
    }
    s->fd = fd;
    if (o && o->token) { /* the stream opens with {"auth": TOKEN} (cascade/proto.h) */
        msgpack_packer pk;
        msgpack_packer_init(&pk, s, out_write);
        if (out_reserve(s, strlen(o->token) + 16)) { /* then packing cannot fail */
            cc_ingest_close(s);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        proto_auth_pack_ingest(&pk, o->token);
        s->ready = s->len;
    }
    *out = s;
    return 0;
}

void cc_ingest_close(struct cc_ingest *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    if (s->up_init)
        msgpack_unpacker_destroy(&s->up);
    free(s->ring);
    free(s->out);
    free(s);
}
