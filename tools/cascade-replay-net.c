/* cascade-replay: the connections to cascaded's ingest port (DESIGN §4), each a libcascade-client
 * ingest stream (cascade/client.h), which batches, bounds the events in flight and reads the
 * acks. Here: where each event in flight came from (a slot per event, by its index in its
 * stream), so that the server's "event N: reason" names a file and line, and the resume point
 * is a number of --from. */
#include "cascade-replay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rp_conn {
    struct rp_net *net;
    struct cc_ingest *s;
    struct rp_slot *ring; /* the slot of event i at ring[i % ring_cap] while it is not acked */
    uint32_t ring_cap;
    uint64_t added; /* events handed to this connection (those a failed stream refused too) */
};

static uint64_t acked(const struct rp_conn *c)
{
    struct cc_ingest_counts n;
    cc_ingest_counts(c->s, &n);
    return n.ok + n.dup + n.rej;
}

/* Events handed over and not acknowledged. */
static uint64_t pending(const struct rp_conn *c)
{
    return c->added - acked(c);
}

void rp_net_flush(struct rp_net *net)
{
    for (unsigned k = 0; k < net->n; k++)
        cc_ingest_flush(net->c[k].s);
}

int rp_net_add(struct rp_net *net, unsigned k, const struct rp_record *rec,
               const struct rp_slot *where)
{
    struct rp_conn *c = &net->c[k];
    if (pending(c) >= c->ring_cap)
        return -ENOBUFS; /* the caller checks rp_net_full first */
    struct event_raw raw;
    rp_record_to_wire(rec, &raw);
    int rc = cc_ingest_add(c->s, &raw);
    if (rc == -ENOMEM || rc == -ENOBUFS)
        return rc;
    /* -EPIPE: the stream has failed; the event stays unacknowledged, for the resume point */
    c->ring[c->added++ % c->ring_cap] = *where;
    return 0;
}

int rp_net_full(const struct rp_net *net)
{
    for (unsigned k = 0; k < net->n; k++) {
        const struct rp_conn *c = &net->c[k];
        if (pending(c) >= net->window_events || cc_ingest_full(c->s))
            return 1;
    }
    return 0;
}

int rp_net_idle(const struct rp_net *net)
{
    for (unsigned k = 0; k < net->n; k++)
        if (!cc_ingest_idle(net->c[k].s))
            return 0;
    return 1;
}

void rp_net_pollfds(const struct rp_net *net, struct pollfd *pfd)
{
    for (unsigned k = 0; k < net->n; k++)
        cc_ingest_pollfd(net->c[k].s, &pfd[k]);
}

int rp_net_service(struct rp_net *net, const struct pollfd *pfd)
{
    int got = 0;
    for (unsigned k = 0; k < net->n; k++) {
        got |= cc_ingest_service(net->c[k].s, pfd[k].revents);
        if (cc_ingest_state(net->c[k].s, NULL) != CC_INGEST_OPEN)
            net->failed = 1;
    }
    return got;
}

void rp_net_totals(const struct rp_net *net, uint64_t *sent, uint64_t *ok, uint64_t *dup,
                   uint64_t *rej)
{
    *sent = *ok = *dup = *rej = 0;
    for (unsigned k = 0; k < net->n; k++) {
        struct cc_ingest_counts n;
        cc_ingest_counts(net->c[k].s, &n);
        *sent += n.sent;
        *ok += n.ok;
        *dup += n.dup;
        *rej += n.rej;
    }
}

uint64_t rp_net_resume_point(const struct rp_net *net)
{
    uint64_t first = UINT64_MAX;
    for (unsigned k = 0; k < net->n; k++) {
        const struct rp_conn *c = &net->c[k];
        uint64_t from = acked(c);
        if (c->added > from && c->ring[from % c->ring_cap].global < first)
            first = c->ring[from % c->ring_cap].global;
    }
    return first;
}

void rp_net_report_failures(const struct rp_net *net)
{
    for (unsigned k = 0; k < net->n; k++) {
        const struct rp_conn *c = &net->c[k];
        const char *why;
        if (cc_ingest_state(c->s, &why) == CC_INGEST_OPEN)
            continue;
        struct cc_ingest_counts n;
        cc_ingest_counts(c->s, &n);
        fprintf(
            stderr,
            "cascade-replay: %s, connection %u of %u: %s (%llu of %llu events unacknowledged)\n",
            net->where, k + 1, net->n, why, (unsigned long long)pending(c),
            (unsigned long long)n.sent);
    }
}

/* The client names a rejected event by its index in the stream: its slot says where it was. */
static void on_reject(void *ctx, uint64_t index, const char *reason)
{
    struct rp_conn *c = ctx;
    if (c->net->on_reject)
        c->net->on_reject(c->net->ctx, &c->ring[index % c->ring_cap], reason);
}

int rp_net_open(struct rp_net *net, const char *host, const char *port, unsigned n, char *err,
                size_t errlen)
{
    cc_where(net->where, sizeof(net->where), host, port);
    /* the budget of events in flight is shared, so that many connections do not multiply it */
    net->window_events = n <= 4 ? 65536 : 262144 / n;
    net->window_bytes = n <= 4 ? (16u << 20) : (64u << 20) / n;
    net->c = calloc(n, sizeof(*net->c));
    if (!net->c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    net->n = n;
    for (unsigned k = 0; k < n; k++) {
        struct rp_conn *c = &net->c[k];
        c->net = net;
        c->ring_cap = net->window_events + 16;
        if (!(c->ring = malloc(c->ring_cap * sizeof(*c->ring)))) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        struct cc_ingest_opts o = {.window_events = net->window_events,
                                   .window_bytes = net->window_bytes,
                                   .token = net->token,
                                   .on_reject = on_reject,
                                   .ctx = c};
        int rc = cc_ingest_open(host, port, &o, &c->s, err, errlen);
        if (rc == -ECONNREFUSED)
            snprintf(err, errlen,
                     "cannot connect to %s: connection refused; is cascaded running there? (start "
                     "it, or give its ingest port with --host/--port)",
                     net->where);
        if (rc)
            return rc;
    }
    return 0;
}

void rp_net_close(struct rp_net *net)
{
    for (unsigned k = 0; net->c && k < net->n; k++) {
        cc_ingest_close(net->c[k].s);
        free(net->c[k].ring);
    }
    free(net->c);
    free(net->token);
    net->c = NULL;
    net->token = NULL;
    net->n = 0;
}
