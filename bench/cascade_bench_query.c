/* The query load, open-loop: request k is due at t0 + k/rate whether or not earlier ones were
 * answered, and its latency runs from that due time to its response, so a server that stalls is
 * charged for every query that queued behind the stall (no coordinated omission). One thread, one
 * epoll loop over all query connections and a timerfd for the schedule; requests are pipelined
 * round-robin over the connections and matched to responses by msgid. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "cascade/gen.h"
#include "cascade/proto.h"
#include "cascade_bench.h"

#define RECV_BYTES  65536
#define TOP_LIMIT   10
#define DRAIN_CHECK 100000000u /* ns between checks while waiting for the last answers */

const char *const method_names[NMETHODS] = {"cascade", "actor", "path", "top_cascades"};

struct req {
    uint64_t due;
    uint8_t method, answered;
};

struct qconn {
    int fd, pollout;
    msgpack_sbuffer out;
    size_t off; /* of out, already sent */
    msgpack_packer pk;
    msgpack_unpacker u;
    int oom;
};

struct qrun {
    const struct opts *o;
    const struct id_source *ids;
    struct query_result *res;
    struct qconn *c;
    uint32_t n, mix_total;
    int ep, tfd;
    struct req *reqs;
    uint64_t nreq, cap, in_flight, last_answer;
    struct gen_rng rng; /* which method, which post: the workload model's generator */
    msgpack_unpacked up;
};

static int qc_write(void *data, const char *buf, size_t len)
{
    struct qconn *c = data;
    if (msgpack_sbuffer_write(&c->out, buf, len))
        c->oom = 1;
    return 0;
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

static void pack_id(msgpack_packer *pk, const char *prefix, uint64_t v)
{
    char buf[96];
    int len = snprintf(buf, sizeof buf, "%s%" PRIu64, prefix, v);
    msgpack_pack_str(pk, (size_t)len);
    msgpack_pack_str_body(pk, buf, (size_t)len);
}

static enum method pick_method(struct qrun *q)
{
    uint64_t x = gen_rng_below(&q->rng, q->mix_total);
    for (int m = 0; m < NMETHODS; m++) {
        if (x < q->o->mix[m])
            return (enum method)m;
        x -= q->o->mix[m];
    }
    return M_CASCADE;
}

/* [0, msgid, method, [params]] with ids of posts and actors the bench loaded itself. */
static void pack_request(struct qrun *q, struct qconn *c, uint64_t msgid, enum method m)
{
    uint64_t post = gen_rng_below(&q->rng, q->ids->nposts);
    const char *name = method_names[m];
    proto_rpc_request_pack(&c->pk, msgid, name, strlen(name), m == M_TOP_CASCADES ? 2 : 1);
    if (m == M_TOP_CASCADES) {
        pack_cstr(&c->pk, "by");
        pack_cstr(&c->pk, "size");
        pack_cstr(&c->pk, "limit");
        msgpack_pack_uint32(&c->pk, TOP_LIMIT);
        return;
    }
    if (m == M_ACTOR) {
        pack_cstr(&c->pk, "id");
        pack_id(&c->pk, "u", q->ids->actor[post]);
    } else {
        pack_cstr(&c->pk, "post");
        pack_id(&c->pk, q->ids->prefix, post);
    }
}

static int lat_push(struct lat_set *s, uint64_t v)
{
    if (s->n == s->cap) {
        uint64_t cap = s->cap ? 2 * s->cap : 4096;
        uint64_t *p = realloc(s->v, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        s->v = p, s->cap = cap;
    }
    s->v[s->n++] = v;
    return 0;
}

/* The first error is kept: the count says how many followed. */
static void query_error(struct query_result *r, const char *msg, int len)
{
    if (!r->first_error[0])
        snprintf(r->first_error, sizeof r->first_error, "%.*s", len, msg);
}

/* Schedules request k on connection k mod n; the bytes go out on the next flush. */
static int enqueue(struct qrun *q, uint64_t k, uint64_t due)
{
    if (q->nreq == q->cap) {
        uint64_t cap = q->cap ? 2 * q->cap : 16384;
        struct req *p = realloc(q->reqs, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        q->reqs = p, q->cap = cap;
    }
    enum method m = pick_method(q);
    struct qconn *c = &q->c[k % q->n];
    q->reqs[q->nreq++] = (struct req){.due = due, .method = (uint8_t)m};
    pack_request(q, c, k, m);
    q->in_flight++;
    if (q->in_flight > q->res->max_in_flight) /* how deep the server's queue got */
        q->res->max_in_flight = q->in_flight;
    q->res->scheduled++;
    return c->oom ? -ENOMEM : 0;
}

static int set_pollout(struct qrun *q, uint32_t i, int on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = i};
    if (q->c[i].pollout == on)
        return 0;
    q->c[i].pollout = on;
    return epoll_ctl(q->ep, EPOLL_CTL_MOD, q->c[i].fd, &ev) ? -errno : 0;
}

static int flush(struct qrun *q, uint32_t i)
{
    struct qconn *c = &q->c[i];
    while (c->off < c->out.size) {
        ssize_t n = send(c->fd, c->out.data + c->off, c->out.size - c->off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return set_pollout(q, i, 1);
        if (n < 0)
            return -errno;
        c->off += (size_t)n;
    }
    msgpack_sbuffer_clear(&c->out);
    c->off = 0;
    return set_pollout(q, i, 0);
}

static int on_response(struct qrun *q, const msgpack_object *o, uint64_t t)
{
    struct query_result *r = q->res;
    struct proto_rpc_response resp;
    if (proto_rpc_response_parse(o, &resp) || !resp.has_id || resp.msgid >= q->nreq ||
        q->reqs[resp.msgid].answered) {
        query_error(r, "a response that answers no request in flight", -1);
        return -EPROTO;
    }
    struct req *rq = &q->reqs[resp.msgid];
    uint64_t lat = t > rq->due ? t - rq->due : 0;
    rq->answered = 1;
    q->in_flight--;
    r->answered++;
    q->last_answer = t;
    if (resp.error) {
        r->errors++;
        r->per[rq->method].errors++;
        if (resp.message) /* query_error keeps the first error's text: later ones never showed */
            query_error(r, resp.message, (int)resp.message_len);
        query_error(r, "an error without a message", -1);
    }
    if (lat_push(&r->all, lat) || lat_push(&r->per[rq->method], lat))
        return -ENOMEM;
    return 0;
}

static int on_readable(struct qrun *q, uint32_t i)
{
    struct qconn *c = &q->c[i];
    for (;;) {
        if (!msgpack_unpacker_reserve_buffer(&c->u, RECV_BYTES))
            return -ENOMEM;
        ssize_t n = recv(c->fd, msgpack_unpacker_buffer(&c->u), RECV_BYTES, 0);
        uint64_t t = now_ns();
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0) {
            query_error(q->res, "the server closed a query connection", -1);
            return n ? -errno : -ECONNRESET;
        }
        msgpack_unpacker_buffer_consumed(&c->u, (size_t)n);
        int rc;
        while ((rc = msgpack_unpacker_next(&c->u, &q->up)) == MSGPACK_UNPACK_SUCCESS)
            if ((rc = on_response(q, &q->up.data, t)))
                return rc;
        if (rc == MSGPACK_UNPACK_PARSE_ERROR) {
            query_error(q->res, "a response that is not msgpack", -1);
            return -EPROTO;
        }
    }
}

static int arm(int tfd, uint64_t at_ns)
{
    struct itimerspec its = {
        .it_value = {(time_t)(at_ns / 1000000000u), (long)(at_ns % 1000000000u)}};
    return timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) ? -errno : 0;
}

static int setup(struct qrun *q, const char *host, const char *port)
{
    q->ep = epoll_create1(EPOLL_CLOEXEC);
    q->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    q->c = calloc(q->n, sizeof *q->c);
    if (q->ep < 0 || q->tfd < 0)
        return -errno;
    if (!q->c)
        return -ENOMEM;
    for (uint32_t i = 0; i < q->n; i++)
        q->c[i].fd = -1;
    for (uint32_t i = 0; i < q->n; i++) {
        struct qconn *c = &q->c[i];
        msgpack_sbuffer_init(&c->out);
        msgpack_packer_init(&c->pk, c, qc_write);
        if (!msgpack_unpacker_init(&c->u, RECV_BYTES))
            return -ENOMEM;
        c->fd = connect_port(host, port, BENCH_RPC);
        if (c->fd < 0)
            return c->fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) ||
            epoll_ctl(q->ep, EPOLL_CTL_ADD, c->fd, &ev))
            return -errno;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = q->n};
    return epoll_ctl(q->ep, EPOLL_CTL_ADD, q->tfd, &ev) ? -errno : 0;
}

static void teardown(struct qrun *q)
{
    for (uint32_t i = 0; q->c && i < q->n; i++) {
        if (q->c[i].fd >= 0)
            close(q->c[i].fd);
        msgpack_sbuffer_destroy(&q->c[i].out);
        if (q->c[i].u.buffer) /* set by a successful init */
            msgpack_unpacker_destroy(&q->c[i].u);
    }
    free(q->c);
    free(q->reqs);
    if (q->ep >= 0)
        close(q->ep);
    if (q->tfd >= 0)
        close(q->tfd);
}

/* Sends what is due, flushes, then sleeps until the next due time or a response. Stops sending at
 * the end of --seconds (query) or when *stop is set (mixed), then waits up to --timeout for the
 * answers still in flight; those that never come are lost. */
static int loop(struct qrun *q, atomic_int *stop, uint64_t t0, uint64_t end)
{
    double period = 1e9 / q->o->rate;
    uint64_t k = 0, next = t0, drain_until = 0;
    struct epoll_event evs[CONNS_MAX + 1];
    for (;;) {
        uint64_t now = now_ns();
        int stopping = next >= end || (stop && atomic_load(stop));
        for (; !stopping && next <= now; next = t0 + (uint64_t)((double)++k * period))
            if (enqueue(q, k, next))
                return -ENOMEM;
        for (uint32_t i = 0; i < q->n; i++)
            if (q->c[i].off < q->c[i].out.size && !q->c[i].pollout) {
                int rc = flush(q, i);
                if (rc)
                    return rc;
            }
        if (stopping && !q->in_flight)
            return 0;
        if (stopping && !drain_until)
            drain_until = now + (uint64_t)(q->o->timeout * 1e9);
        if (stopping && now >= drain_until) {
            q->res->lost = q->in_flight;
            return 0;
        }
        int rc = arm(q->tfd, stopping ? now + DRAIN_CHECK : next);
        int n = rc ? rc : epoll_wait(q->ep, evs, CONNS_MAX + 1, -1);
        if (n < 0 && errno != EINTR)
            return rc ? rc : -errno;
        for (int e = 0; e < n; e++) {
            uint32_t i = evs[e].data.u32;
            uint64_t ticks;
            if (i == q->n && read(q->tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                return -errno;
            if (i < q->n && evs[e].events & EPOLLOUT && (rc = flush(q, i)))
                return rc;
            if (i < q->n && evs[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP) &&
                (rc = on_readable(q, i)))
                return rc;
        }
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int query_run(const struct opts *o, const char *host, const char *port, const struct id_source *ids,
              atomic_int *stop, struct query_result *r)
{
    struct qrun q = {.o = o, .ids = ids, .res = r, .ep = -1, .tfd = -1};
    gen_rng_seed(&q.rng, o->seed, 4); /* a stream apart from the model's events */
    q.n = o->cmd == CMD_QUERY ? o->conns : o->qconns;
    for (int m = 0; m < NMETHODS; m++)
        q.mix_total += o->mix[m];
    *r = (struct query_result){.target_rate = o->rate};
    msgpack_unpacked_init(&q.up);
    int rc = setup(&q, host, port);
    if (rc == 0) {
        double cpu0 = cpu_seconds(1);
        uint64_t t0 = now_ns() + 1000000u; /* the first due time: after the loop is running */
        uint64_t end = o->cmd == CMD_QUERY ? t0 + (uint64_t)(o->seconds * 1e9) : UINT64_MAX;
        rc = loop(&q, stop, t0, end);
        r->cpu_s = cpu_seconds(1) - cpu0;
        r->seconds = q.last_answer > t0 ? secs(q.last_answer - t0) : 0;
    }
    if (rc && !r->first_error[0])
        snprintf(r->first_error, sizeof r->first_error, "query load: %s", strerror(-rc));
    if (r->all.n)
        qsort(r->all.v, r->all.n, sizeof *r->all.v, cmp_u64);
    for (int m = 0; m < NMETHODS; m++)
        if (r->per[m].n)
            qsort(r->per[m].v, r->per[m].n, sizeof *r->per[m].v, cmp_u64);
    r->failed = rc || r->errors || r->lost || !r->answered;
    msgpack_unpacked_destroy(&q.up);
    teardown(&q);
    return rc;
}

void query_result_free(struct query_result *r)
{
    free(r->all.v);
    for (int m = 0; m < NMETHODS; m++)
        free(r->per[m].v);
}
