/* The ingest load: each connection's pre-encoded stream is written as fast as the socket takes it,
 * by one thread that also reads the acks (a non-blocking socket and poll: two threads per
 * connection would take CPU from a server that needs both cores). A batch's latency runs from
 * the moment its last byte was written to the ack that covers it (DESIGN §4: an ack means the
 * events are in the WAL). With a target rate the load is open-loop instead: each batch is due at
 * a fixed time, is written no earlier, and its latency runs from that due time, so a server that
 * holds the stream up is charged for every batch that waited behind it. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cascade/proto.h"
#include "cascade_bench.h"

#define RECV_BYTES 65536

static void fail(struct iconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct iconn *c, const char *fmt, ...)
{
    va_list ap;
    if (c->failure[0])
        return; /* the first failure is the cause */
    va_start(ap, fmt);
    vsnprintf(c->failure, sizeof c->failure, fmt, ap);
    va_end(ap);
}

static void keep_err(struct iconn *c, const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return;
    for (int i = 0; i < c->nerrs; i++)
        if (strlen(c->errs[i]) == o->via.str.size &&
            !memcmp(c->errs[i], o->via.str.ptr, o->via.str.size))
            return;
    if (c->nerrs < ERRS_KEPT)
        snprintf(c->errs[c->nerrs++], sizeof c->errs[0], "%.*s", (int)o->via.str.size,
                 o->via.str.ptr);
}

/* Batches are retired in order; each one this ack covers gets its latency. The sender stamps a
 * batch as soon as send() has taken its last byte, on this same thread, so an ack can only cover
 * stamped batches; one that covers more is a server bug. */
static void retire(struct iconn *c, uint64_t covered, uint64_t t)
{
    const struct stream *s = c->st;
    while (c->nlat < s->nmarks && s->marks[c->nlat].end_events <= covered) {
        if (c->nlat >= c->nsent) {
            fail(c, "an ack covers batch %" PRIu64 ", which was never sent in full", c->nlat);
            return;
        }
        uint64_t sent = c->sent_ns[c->nlat];
        c->lat_ns[c->nlat++] = t > sent ? t - sent : 0;
    }
    if (t - c->last_ack_ns > c->max_gap_ns) /* the first gap is from the start */
        c->max_gap_ns = t - c->last_ack_ns;
    c->last_ack_ns = t;
    atomic_store(&c->covered, covered);
}

static void handle_ack(struct iconn *c, const msgpack_object *o, uint64_t t)
{
    struct proto_ack a;
    struct proto_fatal f;
    switch (proto_reply_parse(o, &a, &f)) {
    case PROTO_REPLY_FATAL:
        fail(c, "fatal from the server: %.*s", (int)f.msg_len, f.msg);
        return;
    case PROTO_REPLY_ACK:
        break;
    default:
        fail(c, "a reply that is not an ack (msgpack type %d)", (int)o->type);
        return;
    }
    for (uint32_t j = 0; a.err && j < a.err->via.array.size; j++)
        keep_err(c, &a.err->via.array.ptr[j]);
    uint64_t covered = a.ok + a.dup + a.rej, before = atomic_load(&c->covered);
    if (covered < before || covered > c->st->events)
        fail(c, "ack counts %" PRIu64 " after %" PRIu64 " of %" PRIu64 " events sent", covered,
             before, c->st->events);
    c->ok = a.ok, c->dup = a.dup, c->rej = a.rej;
    if (!c->failure[0])
        retire(c, covered, t);
}

/* Reads what the socket holds; -1 when the connection is over for a failure. */
static int rx(struct iconn *c, msgpack_unpacker *u, msgpack_unpacked *r)
{
    for (;;) {
        if (!msgpack_unpacker_reserve_buffer(u, RECV_BYTES)) {
            fail(c, "out of memory reading acks");
            return -1;
        }
        ssize_t n = recv(c->fd, msgpack_unpacker_buffer(u), RECV_BYTES, 0);
        uint64_t t = now_ns();
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0) {
            fail(c, "recv: %s", strerror(errno));
            return -1;
        }
        if (n == 0) {
            fail(c, "the server closed the connection with %" PRIu64 " of %" PRIu64 " events acked",
                 atomic_load(&c->covered), c->st->events);
            return -1;
        }
        msgpack_unpacker_buffer_consumed(u, (size_t)n);
        int rc = MSGPACK_UNPACK_CONTINUE;
        while (!c->failure[0] && (rc = msgpack_unpacker_next(u, r)) == MSGPACK_UNPACK_SUCCESS)
            handle_ack(c, &r->data, t);
        if (!c->failure[0] && rc == MSGPACK_UNPACK_PARSE_ERROR)
            fail(c, "the server's acks are not msgpack");
        if (c->failure[0])
            return -1;
    }
}

/* With a target rate, when batch k is due: when its last event would exist, at the connection's
 * share of the rate. */
static uint64_t due_ns(const struct iconn *c, uint64_t k)
{
    return c->t0_ns + (uint64_t)((double)c->st->marks[k].end_events * 1e9 / c->rate);
}

/* How many batches may be written by now: all, those due (with a rate), and at most --window
 * unacked ones. */
static uint64_t batches_allowed(struct iconn *c, uint64_t now)
{
    const struct stream *s = c->st;
    uint64_t upto = s->nmarks;
    if (c->window && c->nlat + c->window < upto)
        upto = c->nlat + c->window;
    if (c->rate > 0)
        while (c->ndue < upto && due_ns(c, c->ndue) <= now)
            c->ndue++;
    return c->rate > 0 && c->ndue < upto ? c->ndue : upto;
}

/* How far the stream may be written now. */
static uint64_t send_limit(struct iconn *c, uint64_t now)
{
    uint64_t upto = batches_allowed(c, now);
    return upto >= c->st->nmarks ? c->st->out.size : upto ? c->st->marks[upto - 1].end_off : 0;
}

/* Writes as much as the socket takes (one big send: the kernel copies what fits) and stamps every
 * batch whose last byte went. */
static int tx(struct iconn *c, uint64_t *off)
{
    const struct stream *s = c->st;
    uint64_t limit = send_limit(c, now_ns());
    while (*off < limit) {
        ssize_t n = send(c->fd, s->out.data + *off, limit - *off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0) {
            fail(c, "send: %s", strerror(errno));
            return -1;
        }
        *off += (uint64_t)n;
        uint64_t t = now_ns();
        for (; c->nsent < s->nmarks && s->marks[c->nsent].end_off <= *off; c->nsent++) {
            if (c->rate <= 0) {
                c->sent_ns[c->nsent] = t;
                continue;
            }
            uint64_t due = due_ns(c, c->nsent); /* the latency's start: no coordinated omission */
            c->sent_ns[c->nsent] = due;
            if (t > due && t - due > c->max_lag_ns)
                c->max_lag_ns = t - due;
        }
    }
    return 0;
}

static void *conn_main(void *arg)
{
    struct iconn *c = arg;
    msgpack_unpacker u;
    msgpack_unpacked r;
    uint64_t off = 0, progress = now_ns();
    if (!msgpack_unpacker_init(&u, RECV_BYTES)) {
        fail(c, "out of memory");
        atomic_store(&c->done, 1);
        return NULL;
    }
    msgpack_unpacked_init(&r);
    while (!c->failure[0] && atomic_load(&c->covered) < c->st->events) {
        uint64_t before = atomic_load(&c->covered), now = now_ns(), wait = 1000000000u;
        int can_send = off < send_limit(c, now);
        if (!can_send && c->rate > 0 && c->ndue < c->st->nmarks) {
            uint64_t due = due_ns(c, c->ndue); /* sleep until the next batch is due */
            if (due > now && due - now < wait) /* else a --window waits for acks */
                wait = due - now;
        }
        struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
        struct pollfd p = {c->fd, POLLIN | (can_send ? POLLOUT : 0), 0};
        if (ppoll(&p, 1, &ts, NULL) < 0 && errno != EINTR) {
            fail(c, "poll: %s", strerror(errno));
            break;
        }
        if (p.revents & POLLOUT && tx(c, &off))
            break;
        if (p.revents & (POLLIN | POLLERR | POLLHUP) && rx(c, &u, &r))
            break;
        uint64_t t = now_ns(), cov = atomic_load(&c->covered);
        /* with a rate, a connection that has everything it sent acked is waiting for the
         * schedule, not for the server */
        if (cov > before ||
            (c->rate > 0 && c->nsent && cov == c->st->marks[c->nsent - 1].end_events)) {
            progress = t;
        } else if (secs(t - progress) > c->timeout) {
            c->max_gap_ns = t - c->last_ack_ns; /* the wait given up on is the longest */
            fail(c, "no ack for %.0f s with %" PRIu64 " of %" PRIu64 " events acked", c->timeout,
                 before, c->st->events);
        }
    }
    msgpack_unpacked_destroy(&r);
    msgpack_unpacker_destroy(&u);
    atomic_store(&c->done, 1);
    return NULL;
}

static int all_done(const struct ingest *in)
{
    for (uint32_t i = 0; i < in->nconns; i++)
        if (!atomic_load(&in->c[i].done))
            return 0;
    return 1;
}

static uint64_t total_covered(const struct ingest *in)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < in->nconns; i++)
        sum += atomic_load(&in->c[i].covered);
    return sum;
}

static int per_second(struct ingest_result *r, double v)
{
    if (r->nper_s == r->per_s_cap) {
        uint32_t cap = r->per_s_cap ? 2 * r->per_s_cap : 64;
        double *p = realloc(r->per_s, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        r->per_s = p, r->per_s_cap = cap;
    }
    r->per_s[r->nper_s++] = v;
    return 0;
}

int ingest_start(struct ingest *in, const struct workload *w, const char *host, const char *port,
                 uint32_t window, double timeout, double rate)
{
    *in = (struct ingest){.w = w, .nconns = w->spec.conns, .rate = rate};
    in->c = calloc(in->nconns, sizeof *in->c);
    if (!in->c)
        return -ENOMEM;
    for (uint32_t i = 0; i < in->nconns; i++)
        in->c[i].fd = -1;
    for (uint32_t i = 0; i < in->nconns; i++) {
        struct iconn *c = &in->c[i];
        c->st = &w->st[i], c->window = window, c->timeout = timeout;
        /* each connection's share of the rate is its share of the events: they end together */
        c->rate =
            rate > 0 && c->st->events ? rate * (double)c->st->events / (double)w->spec.events : 0;
        c->sent_ns = calloc(c->st->nmarks + 1, sizeof *c->sent_ns);
        c->lat_ns = calloc(c->st->nmarks + 1, sizeof *c->lat_ns);
        if (!c->sent_ns || !c->lat_ns)
            return -ENOMEM;
        c->fd = connect_port(host, port, BENCH_INGEST);
        if (c->fd < 0)
            return c->fd;
        if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK))
            return -errno;
    }
    in->cpu0 = cpu_seconds(0);
    in->t0 = now_ns();
    for (uint32_t i = 0; i < in->nconns; i++) {
        in->c[i].t0_ns = in->c[i].last_ack_ns = in->t0;
        int rc = pthread_create(&in->c[i].th, NULL, conn_main, &in->c[i]);
        if (rc) {
            /* the ones started stop at once: their connections are shut down */
            for (uint32_t j = 0; j < in->nconns; j++)
                shutdown(in->c[j].fd, SHUT_RDWR);
            for (uint32_t j = 0; j < i; j++)
                pthread_join(in->c[j].th, NULL);
            in->nconns = i; /* what ingest_free has to close */
            return -rc;
        }
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void collect(struct ingest *in)
{
    struct ingest_result *r = &in->r;
    uint64_t total = 0, end = in->t0;
    for (uint32_t i = 0; i < in->nconns; i++)
        total += in->c[i].nlat;
    r->lat_ns = malloc((total ? total : 1) * sizeof *r->lat_ns);
    for (uint32_t i = 0; i < in->nconns; i++) {
        const struct iconn *c = &in->c[i];
        if (r->lat_ns)
            memcpy(r->lat_ns + r->nlat, c->lat_ns, c->nlat * sizeof *r->lat_ns);
        r->nlat += r->lat_ns ? c->nlat : 0;
        r->ok += c->ok, r->dup += c->dup, r->rej += c->rej;
        r->max_gap_ns = c->max_gap_ns > r->max_gap_ns ? c->max_gap_ns : r->max_gap_ns;
        r->max_lag_ns = c->max_lag_ns > r->max_lag_ns ? c->max_lag_ns : r->max_lag_ns;
        r->failed |= c->failure[0] != 0;
        end = c->last_ack_ns > end ? c->last_ack_ns : end;
    }
    for (int e = -1; e < ERRS_KEPT; e++)
        for (uint32_t i = 0; i < in->nconns && r->nmsgs < ERRS_KEPT; i++) {
            const struct iconn *c = &in->c[i];
            const char *m = e < 0 ? c->failure : e < c->nerrs ? c->errs[e] : "";
            if (*m)
                snprintf(r->msgs[r->nmsgs++], sizeof r->msgs[0], "conn %u: %s", i, m);
        }
    if (r->lat_ns)
        qsort(r->lat_ns, r->nlat, sizeof *r->lat_ns, cmp_u64);
    else
        r->failed = 1; /* no latencies to report is not a result */
    r->events = in->w->spec.events;
    r->bytes = in->w->bytes;
    r->target_rate = in->rate;
    r->seconds = secs(end - in->t0);
    r->failed |= r->ok != r->events;
}

/* Samples the acked count once a second until every connection is done: a stall shows up as a
 * slow second here long before it shows in the average. The clock runs from the first byte sent
 * to the last ack received. */
void ingest_wait(struct ingest *in, int progress)
{
    uint64_t next = in->t0 + 1000000000u, prev = 0;
    while (!all_done(in)) {
        sleep_ns(10000000u);
        if (now_ns() < next)
            continue;
        uint64_t cov = total_covered(in);
        if (per_second(&in->r, (double)(cov - prev)))
            in->r.failed = 1;
        if (progress)
            fprintf(stderr, PROG ": %4u s  %10" PRIu64 " acked  %9.0f events/s\n", in->r.nper_s,
                    cov, (double)(cov - prev));
        prev = cov;
        next += 1000000000u;
    }
    for (uint32_t i = 0; i < in->nconns; i++)
        pthread_join(in->c[i].th, NULL);
    in->r.cpu_s = cpu_seconds(0) - in->cpu0;
    collect(in);
}

/* Closes the connections (the server's SIGTERM waits for open ones) and keeps the result. */
void ingest_free(struct ingest *in)
{
    for (uint32_t i = 0; in->c && i < in->w->spec.conns; i++) {
        if (in->c[i].fd >= 0)
            close(in->c[i].fd);
        free(in->c[i].sent_ns);
        free(in->c[i].lat_ns);
    }
    free(in->c);
    in->c = NULL;
}
