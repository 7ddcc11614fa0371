/* cascade-replay: the connections to cascaded's ingest port (DESIGN §4). Events go out as msgpack
 * arrays and stay in a ring (where each came from) until a cumulative ack covers them: that bounds
 * the events in flight, and turns the server's "event N: reason" into a file and line. */
#include "cascade-replay.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/mpmap.h"
#include "cascade/proto.h"

#define RP_BATCH_EVENTS 1000u
#define RP_BATCH_BYTES  (1u << 20) /* well under the server's 4 MiB per msgpack value */
#define RP_ACK_MAX      (1u << 20) /* an ack bigger than this is not an ack */
#define RP_ACK_TIMEOUT  60.0       /* seconds without an ack while events wait for one */
#define RP_CONNECT_SECS 10
#define ARRAY32_HEAD    5 /* 0xdd and a 32-bit count: patched in when the batch is closed */

enum conn_state { CONN_OPEN = 0, CONN_LOST, CONN_FATAL };

struct rp_conn {
    int fd;
    enum conn_state state;
    /* out[off..ready) can be written; out[ready..len) is the batch being filled */
    char *out;
    size_t off, ready, len, cap;
    uint32_t batch_events;
    struct rp_slot *ring; /* ring[head] is the oldest event not acked yet */
    uint32_t ring_cap, head, count;
    uint64_t queued;     /* events encoded, including those of the open batch */
    uint64_t dispatched; /* events in closed batches: written, or about to be */
    uint64_t ok, dup, rej, unacked_bytes;
    double waiting_since; /* since when the server owes acks without sending any */
    msgpack_unpacker up;
    int up_init;
    char why[300];
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int out_reserve(struct rp_conn *c, size_t more)
{
    /* drop what the socket took once it is half the buffer (or all of what it could take), so
     * that a socket that never quite catches up does not make the buffer grow for ever */
    if (c->off > 0 && (c->off == c->ready || c->off >= c->len / 2)) {
        memmove(c->out, c->out + c->off, c->len - c->off);
        c->len -= c->off;
        c->ready -= c->off;
        c->off = 0;
    }
    if (c->len + more <= c->cap)
        return 0;
    size_t cap = c->cap ? c->cap : (1u << 16);
    while (cap < c->len + more)
        cap *= 2;
    char *p = realloc(c->out, cap);
    if (!p)
        return -ENOMEM;
    c->out = p;
    c->cap = cap;
    return 0;
}

/* msgpack-c's write callback: appends to the connection's output. */
static int out_write(void *data, const char *buf, size_t len)
{
    struct rp_conn *c = data;
    if (out_reserve(c, len))
        return -1;
    memcpy(c->out + c->len, buf, len);
    c->len += len;
    return 0;
}

static void close_batch(struct rp_conn *c)
{
    if (!c->batch_events)
        return;
    unsigned char *h = (unsigned char *)c->out + c->ready;
    uint32_t n = c->batch_events;
    h[0] = 0xdd;
    h[1] = (unsigned char)(n >> 24);
    h[2] = (unsigned char)(n >> 16);
    h[3] = (unsigned char)(n >> 8);
    h[4] = (unsigned char)n;
    c->ready = c->len;
    if (c->dispatched == c->ok + c->dup + c->rej)
        c->waiting_since = now_s(); /* the first event the server owes an ack for */
    c->dispatched += c->batch_events;
    c->batch_events = 0;
}

void rp_net_flush(struct rp_net *net)
{
    for (unsigned k = 0; k < net->n; k++)
        close_batch(&net->c[k]);
}

int rp_net_add(struct rp_net *net, unsigned k, const struct rp_record *rec,
               const struct rp_slot *where)
{
    struct rp_conn *c = &net->c[k];
    if (c->count == c->ring_cap)
        return -ENOBUFS; /* the caller checks rp_net_full first */
    if (!c->batch_events) {
        if (out_reserve(c, ARRAY32_HEAD))
            return -ENOMEM;
        c->len += ARRAY32_HEAD;
    }
    /* positions relative to the batch's start: writing may move the buffer's contents */
    size_t rel = c->len - c->ready;
    msgpack_packer pk;
    msgpack_packer_init(&pk, c, out_write);
    if (rp_record_pack(rec, &pk)) { /* drop the partial event, and a batch header left alone */
        c->len = c->ready + (c->batch_events ? rel : 0);
        return -ENOMEM;
    }
    struct rp_slot *s = &c->ring[(c->head + c->count) % c->ring_cap];
    *s = *where;
    s->bytes = (uint32_t)(c->len - c->ready - rel);
    c->count++;
    c->queued++;
    c->unacked_bytes += s->bytes;
    if (++c->batch_events >= RP_BATCH_EVENTS || c->len - c->ready >= RP_BATCH_BYTES)
        close_batch(c);
    return 0;
}

int rp_net_full(const struct rp_net *net)
{
    for (unsigned k = 0; k < net->n; k++) {
        const struct rp_conn *c = &net->c[k];
        if (c->count >= net->window_events || c->unacked_bytes >= net->window_bytes)
            return 1;
    }
    return 0;
}

int rp_net_idle(const struct rp_net *net)
{
    for (unsigned k = 0; k < net->n; k++) {
        if (net->c[k].state == CONN_OPEN && net->c[k].count > 0)
            return 0;
    }
    return 1;
}

void rp_net_pollfds(const struct rp_net *net, struct pollfd *pfd)
{
    for (unsigned k = 0; k < net->n; k++) {
        const struct rp_conn *c = &net->c[k];
        pfd[k].fd = c->state == CONN_OPEN ? c->fd : -1;
        pfd[k].events = (short)(POLLIN | (c->off < c->ready ? POLLOUT : 0));
        pfd[k].revents = 0;
    }
}

static void fail(struct rp_net *net, struct rp_conn *c, enum conn_state st, const char *fmt,
                 const char *detail)
{
    if (c->state != CONN_OPEN)
        return;
    c->state = st;
    snprintf(c->why, sizeof(c->why), fmt, detail);
    net->failed = 1;
}

static int read_acks(struct rp_net *net, struct rp_conn *c);

static void write_some(struct rp_net *net, struct rp_conn *c)
{
    while (c->off < c->ready) {
        ssize_t n = send(c->fd, c->out + c->off, c->ready - c->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->off += (size_t)n;
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
        while (c->state == CONN_OPEN && read_acks(net, c))
            ;
        fail(net, c, CONN_LOST, "writing failed: %s", strerror(err));
        return;
    }
}

static int get_count(const msgpack_object *m, const char *key, uint64_t *out)
{
    const msgpack_object *v = mp_map_get(m, key);
    if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return -1;
    *out = v->via.u64;
    return 0;
}

/* err entries "event N: reason" name events of this connection, counted from 0; those between
 * the previous ack and this one are still in the ring. */
static void name_rejections(struct rp_net *net, struct rp_conn *c, const msgpack_object *err,
                            uint64_t acked_before, uint64_t acked_now)
{
    if (!err || err->type != MSGPACK_OBJECT_ARRAY || !net->on_reject)
        return;
    for (uint32_t i = 0; i < err->via.array.size; i++) {
        const msgpack_object *e = &err->via.array.ptr[i];
        char text[160], reason[64];
        unsigned long long ev;
        if (e->type != MSGPACK_OBJECT_STR || e->via.str.size >= sizeof(text))
            continue;
        memcpy(text, e->via.str.ptr, e->via.str.size);
        text[e->via.str.size] = 0;
        if (sscanf(text, "event %llu: %63s", &ev, reason) != 2 || ev < acked_before ||
            ev >= acked_now)
            continue;
        net->on_reject(net->ctx, &c->ring[(c->head + (ev - acked_before)) % c->ring_cap], reason);
    }
}

static void on_ack(struct rp_net *net, struct rp_conn *c, const msgpack_object *m)
{
    uint64_t ok, dup, rej;
    const msgpack_object *fatal = mp_map_get(m, "fatal");
    if (fatal) {
        char text[200] = "?";
        if (fatal->type == MSGPACK_OBJECT_STR)
            snprintf(text, sizeof(text), "%.*s", (int)fatal->via.str.size, fatal->via.str.ptr);
        fail(net, c, CONN_FATAL, "the server ended the connection: %s", text);
        return;
    }
    if (get_count(m, "ok", &ok) || get_count(m, "dup", &dup) || get_count(m, "rej", &rej)) {
        fail(net, c, CONN_LOST, "%s", "the server sent something that is not an ack");
        return;
    }
    uint64_t before = c->ok + c->dup + c->rej, now = ok + dup + rej;
    if (now < before || now - before > c->count) {
        fail(net, c, CONN_LOST, "%s", "the server's ack counts do not match the events sent");
        return;
    }
    name_rejections(net, c, mp_map_get(m, "err"), before, now);
    for (uint64_t i = before; i < now; i++) {
        c->unacked_bytes -= c->ring[c->head].bytes;
        c->head = (c->head + 1) % c->ring_cap;
        c->count--;
    }
    if (now > before)
        c->waiting_since = now_s();
    c->ok = ok;
    c->dup = dup;
    c->rej = rej;
}

static int read_acks(struct rp_net *net, struct rp_conn *c)
{
    int got = 0;
    if (!msgpack_unpacker_reserve_buffer(&c->up, 1u << 16)) {
        fail(net, c, CONN_LOST, "%s", "out of memory for acks");
        return 0;
    }
    ssize_t n = recv(c->fd, msgpack_unpacker_buffer(&c->up),
                     msgpack_unpacker_buffer_capacity(&c->up), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0) {
        fail(net, c, CONN_LOST, "the server closed the connection%s",
             n < 0 ? " abruptly (reset)" : "");
        return 0;
    }
    msgpack_unpacker_buffer_consumed(&c->up, (size_t)n);
    msgpack_unpacked res;
    msgpack_unpacked_init(&res);
    msgpack_unpack_return ret;
    while ((ret = msgpack_unpacker_next(&c->up, &res)) == MSGPACK_UNPACK_SUCCESS &&
           c->state == CONN_OPEN) {
        if (res.data.type == MSGPACK_OBJECT_MAP)
            on_ack(net, c, &res.data);
        got = 1;
    }
    msgpack_unpacked_destroy(&res);
    if (ret == MSGPACK_UNPACK_PARSE_ERROR || ret == MSGPACK_UNPACK_NOMEM_ERROR ||
        msgpack_unpacker_message_size(&c->up) > RP_ACK_MAX)
        fail(net, c, CONN_LOST, "%s", "the server's replies are not msgpack acks");
    return got;
}

int rp_net_service(struct rp_net *net, const struct pollfd *pfd)
{
    int got = 0;
    double t = now_s();
    for (unsigned k = 0; k < net->n; k++) {
        struct rp_conn *c = &net->c[k];
        if (c->state == CONN_OPEN && (pfd[k].revents & (POLLIN | POLLERR | POLLHUP)))
            got |= read_acks(net, c);
        if (c->state == CONN_OPEN && c->off < c->ready)
            write_some(net, c);
        /* only events already handed over count: a paced event held back owes nothing yet */
        if (c->state == CONN_OPEN && c->dispatched > c->ok + c->dup + c->rej &&
            t - c->waiting_since > RP_ACK_TIMEOUT)
            fail(net, c, CONN_LOST, "%s", "no acknowledgement from the server for 60 s");
    }
    return got;
}

void rp_net_totals(const struct rp_net *net, uint64_t *sent, uint64_t *ok, uint64_t *dup,
                   uint64_t *rej)
{
    *sent = *ok = *dup = *rej = 0;
    for (unsigned k = 0; k < net->n; k++) {
        *sent += net->c[k].dispatched;
        *ok += net->c[k].ok;
        *dup += net->c[k].dup;
        *rej += net->c[k].rej;
    }
}

uint64_t rp_net_resume_point(const struct rp_net *net)
{
    uint64_t first = UINT64_MAX;
    for (unsigned k = 0; k < net->n; k++) {
        const struct rp_conn *c = &net->c[k];
        if (c->count > 0 && c->ring[c->head].global < first)
            first = c->ring[c->head].global;
    }
    return first;
}

void rp_net_report_failures(const struct rp_net *net)
{
    for (unsigned k = 0; k < net->n; k++) {
        const struct rp_conn *c = &net->c[k];
        if (c->state == CONN_OPEN)
            continue;
        fprintf(
            stderr,
            "cascade-replay: %s, connection %u of %u: %s (%llu of %llu events unacknowledged)\n",
            net->where, k + 1, net->n, c->why, (unsigned long long)c->count,
            (unsigned long long)c->dispatched);
    }
}

/* ------------------------------------------------------------------ connecting */

static int connect_one(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    /* a connect that nobody answers (a firewall dropping packets) gives up after this */
    struct timeval tv = {.tv_sec = RP_CONNECT_SECS};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        int e = errno;
        close(fd);
        return -(e == EINPROGRESS ? ETIMEDOUT : e);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static int connect_to(const char *host, const char *port, char *err, size_t errlen,
                      const char *where)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", where, gai_strerror(rc));
        return -EHOSTUNREACH;
    }
    int fd = -ECONNREFUSED;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = connect_one(ai);
        if (fd >= 0)
            break;
    }
    freeaddrinfo(res);
    if (fd == -ECONNREFUSED)
        snprintf(err, errlen,
                 "cannot connect to %s: connection refused; is cascaded running there? (start it, "
                 "or give its ingest port with --host/--port)",
                 where);
    else if (fd < 0)
        snprintf(err, errlen, "cannot connect to %s: %s", where, strerror(-fd));
    return fd;
}

static int conn_init(struct rp_net *net, struct rp_conn *c)
{
    c->ring_cap = net->window_events + 16;
    c->ring = malloc(c->ring_cap * sizeof(*c->ring));
    if (!c->ring || !msgpack_unpacker_init(&c->up, 1u << 16))
        return -ENOMEM;
    c->up_init = 1;
    return 0;
}

/* The stream opens with {"auth": TOKEN} when the server asks for a token (net/auth.h). */
static int send_auth(struct rp_conn *c, const char *token)
{
    if (out_reserve(c,
                    strlen(token) + 16)) /* the map's few header bytes too: packing cannot fail */
        return -ENOMEM;
    msgpack_packer pk;
    msgpack_packer_init(&pk, c, out_write);
    proto_auth_pack_ingest(&pk, token);
    c->ready = c->len;
    return 0;
}

int rp_net_open(struct rp_net *net, const char *host, const char *port, unsigned n, char *err,
                size_t errlen)
{
    snprintf(net->where, sizeof(net->where), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
    /* the budget of events in flight is shared, so that many connections do not multiply it */
    net->window_events = n <= 4 ? 65536 : 262144 / n;
    net->window_bytes = n <= 4 ? (16u << 20) : (64u << 20) / n;
    net->c = calloc(n, sizeof(*net->c));
    if (!net->c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    net->n = n;
    for (unsigned k = 0; k < n; k++)
        net->c[k].fd = -1; /* rp_net_close closes only what was opened */
    for (unsigned k = 0; k < n; k++) {
        if (conn_init(net, &net->c[k])) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        int fd = connect_to(host, port, err, errlen, net->where);
        if (fd < 0)
            return fd;
        net->c[k].fd = fd;
        if (net->token && send_auth(&net->c[k], net->token)) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
    }
    return 0;
}

void rp_net_close(struct rp_net *net)
{
    for (unsigned k = 0; net->c && k < net->n; k++) {
        struct rp_conn *c = &net->c[k];
        if (c->fd >= 0)
            close(c->fd);
        if (c->up_init)
            msgpack_unpacker_destroy(&c->up);
        free(c->ring);
        free(c->out);
    }
    free(net->c);
    free(net->token);
    net->c = NULL;
    net->token = NULL;
    net->n = 0;
}
