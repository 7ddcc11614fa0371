/* The ingest port's session (DESIGN §4): with a token, the stream opens with {"auth": TOKEN};
 * then msgpack events are decoded (net/ingest_proto.c), batched for the writer a quantum at a
 * time, and acked with cumulative counts once their batch comes back; a broken stream, a
 * refused batch or a failed WAL append ends it with a fatal message after the last ack. The
 * loop (loop.c) does the reading, sending, timers and closing. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/log.h"
#include "net/loop_int.h"

#define PENDING_MAX   (1u * 1024 * 1024) /* undecoded bytes per connection before pausing it */
#define DRAIN_QUANTUM 1024 /* events a connection may add before the others get a turn */

/* DESIGN §4: {"ok": N, "dup": N, "rej": N, "err": [...]}, cumulative counts (proto_ack_pack). */
static void queue_ack(struct conn *c)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, c, net_pend_write);
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
    msgpack_packer_init(&pk, c, net_pend_write);
    uint64_t from = c->fatal_resend == 2 ? c->events : c->resend_from;
    proto_fatal_pack(&pk, c->fatal, c->fatal_resend ? &from : NULL);
}

/* Ends an ingest stream with {"fatal": msg} once what came before it is acked. */
static void set_fatal_quiet(struct netloop *n, struct conn *c, const char *msg)
{
    c->fatal = strdup(msg);
    if (!c->fatal)
        c->fatal = strdup("fatal");
    net_cancel_recv(n, c);
}

static void set_fatal(struct netloop *n, struct conn *c, const char *msg)
{
    if (c->fatal)
        return;
    set_fatal_quiet(n, c, msg);
    log_msg(LOG_INFO, "ingest_fatal", "conn=%u message=\"%s\"", net_conn_idx(n, c), msg);
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
    if (batch_add(n->cur, net_conn_idx(n, c), c->gen, c->events, raw)) {
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
        if (batch_full(n->cur) && !net_flush_batch(n))
            return;
        long r = ingest_decoder_drain(c->dec, on_event, &d);
        if (r < 0 || d.oom) {
            set_fatal(n, c, "the server ran out of memory decoding this stream");
            return;
        }
        if (d.budget == 0) {
            if (!ingest_decoder_idle(c->dec))
                net_touch(n, c);
            return;
        }
        if (!batch_full(n->cur))
            return;
    }
}

void net_ingest_complete(struct netloop *n, struct batch *b)
{
    for (uint32_t s = 0; s < b->nsegs; s++) {
        const struct batch_seg *sg = &b->segs[s];
        struct conn *c = net_conn_get(n, sg->conn, sg->gen);
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
                char msg[320];
                snprintf(msg, sizeof(msg),
                         "the server could not log event %llu: its WAL refused the batch (a full "
                         "disk or an I/O error: `stats` shows wal_error) or it ran out of memory; "
                         "nothing from it on was applied. Resend from event %llu: ingest resumes "
                         "by itself once the disk takes writes",
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
        net_touch(n, c);
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
            net_touch(n, c);
    }
}

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
        net_auth_failed(n, c, a == PROTO_AUTH_WRONG ? "wrong token" : "no auth map first");
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

static void ingest_feed(struct netloop *n, struct conn *c, const char *data, size_t len)
{
    if (n->token && !c->authed) {
        feed_ingest_auth(n, c, data, len);
        return;
    }
    if (n->ingest_refused) { /* a cluster node: nothing sent here is taken (DESIGN §9) */
        set_fatal(n, c, n->ingest_refused);
        return;
    }
    int rc = ingest_decoder_feed(c->dec, data, len);
    if (rc == -EPROTO)
        ingest_broken(n, c);
    else if (rc)
        set_fatal(n, c, "the server ran out of memory reading this stream");
}

/* The events decoded go into batches; then the ack due, or, once every event before it is
 * acked, the fatal message (after a last ack). */
static void ingest_drain(struct netloop *n, struct conn *c)
{
    drain_ingest(n, c);
    if (c->fatal && !c->fatal_sent && c->inflight == 0 && ingest_decoder_idle(c->dec) &&
        !c->send_busy) {
        queue_ack(c);
        queue_fatal(c);
        c->fatal_sent = 1;
    } else if (c->ack_due && !c->send_busy && !c->fatal_sent) {
        queue_ack(c);
    }
}

/* An incomplete value must be read to its end (the decoder bounds its size). */
static int ingest_may_read(const struct netloop *n, const struct conn *c)
{
    return c->inflight <= MAX_INFLIGHT &&
           (ingest_decoder_pending(c->dec) < PENDING_MAX / 2 || ingest_decoder_idle(c->dec));
}

static int ingest_stop_read(const struct netloop *n, const struct conn *c)
{
    return c->linger != LINGER_ON && ingest_decoder_pending(c->dec) > PENDING_MAX;
}

/* After EOF, what was received is still decoded and acked before the close. */
static int ingest_busy(const struct conn *c)
{
    return c->eof && !c->fatal && !ingest_decoder_idle(c->dec);
}

static int ingest_handshake_waiting(const struct netloop *n, const struct conn *c)
{
    return n->token && !c->authed;
}

static void ingest_timeout(struct netloop *n, struct conn *c, int hs, const char *msg)
{
    set_fatal_quiet(n, c, msg);
}

static void ingest_refuse(struct strbuf *out, const char *why)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, net_strbuf_write);
    proto_fatal_pack(&pk, why, NULL);
}

static int ingest_open(struct netloop *n, struct conn *c)
{
    /* a vanished producer: found within 2 min (60 s + 6 x 10 s) */
    int one = 1, idle = 60, intvl = 10, cnt = 6;
    setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    return ingest_decoder_new(&n->limits, &c->dec) ? -ENOMEM : 0;
}

static void ingest_free(struct conn *c)
{
    ingest_decoder_free(c->dec);
    free(c->abuf);
}

const struct net_session_ops net_session_ingest = {
    .name = "ingest",
    .handshake_what = "authentication",
    .recv_multishot = 0,
    .open = ingest_open,
    .free = ingest_free,
    .feed = ingest_feed,
    .drain = ingest_drain,
    .may_read = ingest_may_read,
    .stop_read = ingest_stop_read,
    .complete = NULL,
    .busy = ingest_busy,
    .handshake_waiting = ingest_handshake_waiting,
    .timeout = ingest_timeout,
    .refuse = ingest_refuse,
};
