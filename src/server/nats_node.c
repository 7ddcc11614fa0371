/* A cluster node's consumer of the JetStream stream (see nats_node.h, docs/cluster.md "Nodes").
 * Correctness rests on the node's own WAL, not on the durables' ack state: at start (and after
 * anything that may have lost a delivery) each partition's durable is created afresh at the
 * sequence after the last one the node logged, so that deliveries come in stream order; a
 * delivery whose consumer sequence is not the one after the last seen means one went missing
 * (a lost connection, a leader change), and the durable is created again from the last one
 * handed to the writer. Acks bound what is in flight and spare redeliveries. */
#include "server/nats_node.h"

#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cascade/nats.h"
#include "core/log.h"
#include "engine/persist.h"
#include "net/batch.h"

#define FETCH_MSGS      64      /* messages asked for per fetch */
#define BATCH_EVENTS    65536   /* events per batch handed to the writer */
#define BATCH_MSGS      256     /* messages per batch (their positions go in one WAL record) */
#define INFLIGHT_MAX    4       /* batches at the writer at once */
#define ACK_WAIT_MS     30000   /* a message not acked this long is delivered again */
#define MAX_ACK_PENDING 8192    /* per partition (the default 1000 is set explicitly higher) */
#define POLL_S          1.0     /* the partitions' stream sequence and lag for `stats` */

struct part {
    uint32_t p;
    char durable[64], subject[96];
    natsSubscription *sub;
    uint64_t submitted;       /* the last sequence handed to the writer (node thread) */
    _Atomic uint64_t logged;  /* the last sequence the WAL holds (the log thread sets it) */
    uint64_t applied;         /* the last sequence the engine applied (node thread) */
    uint64_t last_dseq;       /* the consumer sequence of the last delivery */
    uint64_t inflight_msgs;   /* handed to the writer, not yet applied */
    int reset;                /* create the durable again before the next fetch */
    atomic_int gone;          /* the poll thread found the durable deleted (an operator's
                               * --delete-durables): its fetches would only time out */
    double retry_at;
    /* for `stats`, under the node's mu: the poll thread's reading of the stream (the last
     * sequence in the partition, the durable's undelivered messages, whether the last poll
     * got both answers) and the node thread's own figures (applied, in flight, resetting) */
    uint64_t stream_seq, pending, pub_applied, pub_inflight;
    int poll_ok, pub_reset;
};

/* One batch at the writer and the messages it acks once logged. */
struct nbatch {
    struct nats_node *n;
    struct batch *b;
    natsMsg *msgs[BATCH_MSGS];
    struct batch_spos spos[BATCH_MSGS];
    uint32_t nmsgs;
};

struct nats_node {
    struct writer *w;
    natsConnection *nc;
    jsCtx *js;
    char stream[64], node_id[40];
    uint32_t P;
    struct part *parts;
    uint32_t nparts;
    int32_t *pidx; /* partition -> index into parts, or -1 */
    struct ingest_limits limits;
    struct ingest_decoder *dec;
    struct bqueue back;
    int back_ok;
    pthread_t thread;
    int started;
    atomic_int stop;
    atomic_int wal_refused;
    uint32_t inflight, gen;
    struct nbatch *cur;
    uint64_t malformed;
    pthread_mutex_t mu; /* guards the parts' figures for `stats` and polled_at */
    pthread_cond_t cv;  /* the poll thread waits on it, so that a stop wakes it */
    pthread_t poller;
    int poller_started;
    double polled_at; /* when the last poll got every answer (0: never) */
    struct rpc_partition *snap;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------- the partition list */

int nats_node_parse_list(const char *list, uint32_t max, uint8_t *set, char *err, size_t errlen)
{
    const char *s = list;
    int any = 0;
    while (*s) {
        char *end;
        if (*s < '0' || *s > '9')
            goto bad;
        unsigned long a = strtoul(s, &end, 10), b = a;
        s = end;
        if (*s == '-') {
            s++;
            if (*s < '0' || *s > '9')
                goto bad;
            b = strtoul(s, &end, 10);
            s = end;
        }
        if (b < a || a >= max || b >= max) {
            snprintf(err, errlen,
                     "--partitions '%s': %lu%s%.0lu is not a range of partitions 0..%u", list, a,
                     b != a ? "-" : "", b != a ? b : 0, max - 1);
            return -EINVAL;
        }
        for (unsigned long i = a; set && i <= b; i++)
            set[i] = 1;
        any = 1;
        if (*s == ',' && s[1])
            s++;
        else if (*s)
            goto bad;
    }
    if (any)
        return 0;
bad:
    snprintf(err, errlen,
             "--partitions '%s': expected a list of partitions and ranges like 0,2-5", list);
    return -EINVAL;
}

/* ---------------------------------------------------------------- the node id */

/* DATA_DIR/node-id: made once (16 hex digits), so that the durables keep their names. */
static int node_id(const char *dir, char *id, size_t len, char *err, size_t errlen)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/node-id", dir);
    FILE *f = fopen(path, "r");
    if (f) {
        int ok = fgets(id, (int)len, f) != NULL;
        fclose(f);
        id[strcspn(id, "\r\n")] = 0;
        if (ok && strlen(id) >= 4 && strspn(id, "0123456789abcdef") == strlen(id))
            return 0;
        snprintf(err, errlen, "%s does not hold a node id (16 hex digits): remove it for a new one",
                 path);
        return -EINVAL;
    }
    unsigned char r[8];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        snprintf(err, errlen, "cannot make a node id: %s", strerror(errno));
        return -EIO;
    }
    snprintf(id, len, "%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5], r[6],
             r[7]);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    int rc = f && fprintf(f, "%s\n", id) > 0 && fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : -EIO;
    if (f && fclose(f))
        rc = -EIO;
    if (rc == 0 && rename(tmp, path))
        rc = -EIO;
    if (rc) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    return rc;
}

/* ---------------------------------------------------------------- consumers */

/* Creates the partition's durable afresh, delivering from the sequence after the last one
 * handed to the writer: 0, or -EAGAIN (JetStream did not answer: try again later). */
static int part_subscribe(struct nats_node *n, struct part *pt)
{
    if (pt->sub) {
        natsSubscription_Destroy(pt->sub); /* never Unsubscribe: that deletes the durable */
        pt->sub = NULL;
    }
    jsErrCode jerr = 0;
    natsStatus st = js_DeleteConsumer(n->js, n->stream, pt->durable, NULL, &jerr);
    if (st != NATS_OK && st != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr) {
        log_msg(LOG_WARN, "nats_consumer_retry", "partition=%u durable=%s error=\"%s (%d)\"",
                pt->p, pt->durable, natsStatus_GetText(st), (int)jerr);
        return -EAGAIN;
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = n->stream;
    so.ManualAck = true;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.DeliverPolicy = pt->submitted ? js_DeliverByStartSequence : js_DeliverAll;
    so.Config.OptStartSeq = pt->submitted ? pt->submitted + 1 : 0;
    so.Config.AckWait = (int64_t)ACK_WAIT_MS * 1000000; /* nanoseconds in libnats */
    so.Config.MaxAckPending = MAX_ACK_PENDING;
    jerr = 0;
    st = js_PullSubscribe(&pt->sub, n->js, pt->subject, pt->durable, NULL, &so, &jerr);
    if (st != NATS_OK) {
        pt->sub = NULL;
        log_msg(LOG_WARN, "nats_consumer_retry", "partition=%u durable=%s error=\"%s (%d): %s\"",
                pt->p, pt->durable, natsStatus_GetText(st), (int)jerr, nats_GetLastError(NULL));
        return -EAGAIN;
    }
    pt->last_dseq = 0;
    pt->reset = 0;
    log_msg(LOG_INFO, "nats_consumer", "partition=%u durable=%s from_seq=%" PRIu64, pt->p,
            pt->durable, pt->submitted + 1);
    return 0;
}

/* ---------------------------------------------------------------- batches */

/* An ack is a publish of +ACK to the delivery's reply subject (what natsMsg_Ack sends), done
 * here so that it needs nothing of the subscription, which a reset may have destroyed. */
static void ack(struct nats_node *n, natsMsg *m)
{
    const char *reply = natsMsg_GetReply(m);
    if (reply)
        natsConnection_Publish(n->nc, reply, "+ACK", 4);
}

/* On the writer's log thread: the WAL holds the batch (or refused it). */
static void on_logged(struct batch *b, void *ctx)
{
    struct nbatch *nb = ctx;
    struct nats_node *n = nb->n;
    if (b->wal.rc) { /* not logged, will not be applied: the messages come again */
        atomic_store(&n->wal_refused, 1);
        return;
    }
    for (uint32_t i = 0; i < nb->nmsgs; i++) {
        struct part *pt = &n->parts[n->pidx[nb->spos[i].partition]];
        uint64_t seq = nb->spos[i].seq, old = atomic_load(&pt->logged);
        while (old < seq && !atomic_compare_exchange_weak(&pt->logged, &old, seq))
            ;
        ack(n, nb->msgs[i]); /* after the WAL holds it; a lost ack is a redelivery */
    }
}

static void nbatch_free(struct nbatch *nb)
{
    if (!nb)
        return;
    for (uint32_t i = 0; i < nb->nmsgs; i++)
        natsMsg_Destroy(nb->msgs[i]);
    batch_free(nb->b);
    free(nb);
}

static struct nbatch *nbatch_new(struct nats_node *n)
{
    struct nbatch *nb = calloc(1, sizeof(*nb));
    if (!nb || batch_new(BATCH_INGEST, BATCH_EVENTS, &nb->b)) {
        free(nb);
        return NULL;
    }
    nb->n = n;
    return nb;
}

/* A batch back from the writer: applied. */
static void reap(struct nats_node *n, struct batch *b)
{
    struct nbatch *nb = b->logged_ctx;
    for (uint32_t i = 0; i < nb->nmsgs; i++) {
        struct part *pt = &n->parts[n->pidx[nb->spos[i].partition]];
        if (nb->spos[i].seq > pt->applied && atomic_load(&pt->logged) >= nb->spos[i].seq)
            pt->applied = nb->spos[i].seq;
        pt->inflight_msgs--;
    }
    n->inflight--;
    nbatch_free(nb);
}

static void reap_some(struct nats_node *n, int wait_ms)
{
    struct batch *b = n->inflight ? bqueue_pop_wait(&n->back, wait_ms) : NULL;
    while (b) {
        reap(n, b);
        b = n->inflight ? bqueue_pop_wait(&n->back, 0) : NULL;
    }
}

static void submit(struct nats_node *n)
{
    struct nbatch *nb = n->cur;
    if (!nb || (!nb->nmsgs && !nb->b->n))
        return;
    while (n->inflight >= INFLIGHT_MAX)
        reap_some(n, 100);
    struct batch *b = nb->b;
    b->spos = nb->spos;
    b->nspos = nb->nmsgs;
    b->logged = on_logged;
    b->logged_ctx = nb;
    b->back = &n->back;
    n->cur = NULL;
    n->inflight++;
    writer_submit(n->w, b);
}

struct drain_ctx {
    struct nbatch *nb;
    uint32_t conn, gen;
    uint64_t no;
};

static int on_event(void *arg, const struct event_raw *raw)
{
    struct drain_ctx *d = arg;
    if (batch_add(d->nb->b, d->conn, d->gen, d->no++, raw))
        return 1; /* out of memory: the rest of the message is dropped (logged below) */
    return batch_full(d->nb->b);
}

/* Decodes one message's events into the current batch (the next one when it fills), with the
 * ingest port's decoder and validation; the message and its position go with the last. 0, or
 * -ENOMEM (nothing of it kept: it comes again). */
static int add_message(struct nats_node *n, struct part *pt, natsMsg *m, uint64_t seq)
{
    if (!n->cur && !(n->cur = nbatch_new(n)))
        return -ENOMEM;
    if (!n->dec && ingest_decoder_new(&n->limits, &n->dec))
        return -ENOMEM;
    /* a fresh generation per message: a refused batch's conn marks (writer.c mark_dead) never
     * match a later one */
    struct drain_ctx d = {n->cur, pt->p, ++n->gen, 0};
    int frc = ingest_decoder_feed(n->dec, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
    for (;;) {
        d.nb = n->cur;
        long r = ingest_decoder_drain(n->dec, on_event, &d);
        if (r < 0)
            break;
        if (!batch_full(n->cur->b))
            break;
        submit(n); /* full: the message goes on in the next batch */
        if (!(n->cur = nbatch_new(n)))
            return -ENOMEM;
    }
    if (frc || !ingest_decoder_idle(n->dec) || ingest_decoder_pending(n->dec)) {
        /* not one whole msgpack value: what was decoded of it is kept, the rest is lost */
        if (n->malformed++ < 10)
            log_msg(LOG_WARN, "nats_message_malformed", "partition=%u seq=%" PRIu64 " error=\"%s\"",
                    pt->p, seq, frc ? ingest_decoder_error(n->dec) : "incomplete msgpack value");
        ingest_decoder_free(n->dec);
        n->dec = NULL;
    }
    if (n->cur->nmsgs == BATCH_MSGS) {
        submit(n);
        if (!(n->cur = nbatch_new(n)))
            return -ENOMEM;
    }
    struct nbatch *nb = n->cur;
    nb->msgs[nb->nmsgs] = m;
    nb->spos[nb->nmsgs] = (struct batch_spos){pt->p, seq};
    nb->nmsgs++;
    pt->submitted = seq;
    pt->inflight_msgs++;
    return 0;
}

/* One fetch from a partition: 1 when messages came, 0 when none, -1 on an error. */
static int fetch(struct nats_node *n, struct part *pt, int wait_ms)
{
    natsMsgList list = {0};
    jsErrCode jerr = 0;
    natsStatus st = natsSubscription_Fetch(&list, pt->sub, FETCH_MSGS, wait_ms, &jerr);
    if (st == NATS_TIMEOUT)
        return 0;
    if (st != NATS_OK) {
        log_msg(LOG_WARN, "nats_fetch_failed", "partition=%u error=\"%s (%d)\"", pt->p,
                natsStatus_GetText(st), (int)jerr);
        pt->reset = 1;
        pt->retry_at = now_s() + 0.5;
        return -1;
    }
    int i = 0;
    for (; i < list.Count && !pt->reset; i++) {
        natsMsg *m = list.Msgs[i];
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, m) != NATS_OK)
            continue; /* not a JetStream delivery: left to natsMsgList_Destroy */
        uint64_t seq = meta->Sequence.Stream, dseq = meta->Sequence.Consumer;
        pt->pending = meta->NumPending;
        jsMsgMetaData_Destroy(meta);
        if (dseq != pt->last_dseq + 1) {
            /* a delivery went missing (lost on a broken connection, or a consumer leader
             * change): everything from the last one handed over comes again, in order */
            log_msg(LOG_INFO, "nats_delivery_gap",
                    "partition=%u consumer_seq=%" PRIu64 " expected=%" PRIu64 " seq=%" PRIu64
                    " action=\"recreating the durable from seq %" PRIu64 "\"",
                    pt->p, dseq, pt->last_dseq + 1, seq, pt->submitted + 1);
            pt->reset = 1;
            pt->retry_at = 0;
            break;
        }
        pt->last_dseq = dseq;
        if (seq <= pt->submitted) {
            /* delivered again (an ack later than AckWait, or lost): applied once, by sequence;
             * acked once the WAL holds it, else its first copy's ack is on the way */
            if (seq <= atomic_load(&pt->logged))
                ack(n, m);
            continue;
        }
        if (add_message(n, pt, m, seq)) {
            log_msg(LOG_ERROR, "nats_out_of_memory", "partition=%u seq=%" PRIu64, pt->p, seq);
            pt->reset = 1;
            pt->retry_at = now_s() + 1;
            break;
        }
        list.Msgs[i] = NULL; /* the batch owns it now */
    }
    natsMsgList_Destroy(&list);
    return 1;
}

/* ---------------------------------------------------------------- stats */

/* The stream's side of each partition, once a second, on a thread of its own: a request to
 * JetStream may wait 2 s (an election), which must hold up neither fetching nor `stats`. */
static void *poll_main(void *arg)
{
    struct nats_node *n = arg;
    pthread_mutex_lock(&n->mu);
    while (!atomic_load(&n->stop)) {
        pthread_mutex_unlock(&n->mu);
        int all = 1;
        for (uint32_t i = 0; i < n->nparts && !atomic_load(&n->stop); i++) {
            struct part *pt = &n->parts[i];
            natsMsg *m = NULL;
            jsErrCode jerr = 0;
            uint64_t seq = 0, pending = 0;
            natsStatus st = js_GetLastMsg(&m, n->js, n->stream, pt->subject, NULL, &jerr);
            int ok = st == NATS_OK || st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr;
            if (st == NATS_OK) {
                seq = natsMsg_GetSequence(m);
                natsMsg_Destroy(m);
            }
            jsConsumerInfo *ci = NULL;
            jsErrCode cerr = 0;
            if (ok && js_GetConsumerInfo(&ci, n->js, n->stream, pt->durable, NULL, &cerr) ==
                          NATS_OK) {
                pending = ci->NumPending;
                jsConsumerInfo_Destroy(ci);
            } else {
                if (ok && cerr == JSConsumerNotFoundErr)
                    atomic_store(&pt->gone, 1);
                ok = 0;
            }
            all &= ok;
            pthread_mutex_lock(&n->mu);
            if (ok) {
                pt->stream_seq = seq;
                pt->pending = pending;
            }
            pt->poll_ok = ok;
            pthread_mutex_unlock(&n->mu);
        }
        pthread_mutex_lock(&n->mu);
        if (all)
            n->polled_at = now_s();
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        if (!atomic_load(&n->stop))
            pthread_cond_timedwait(&n->cv, &n->mu, &ts);
    }
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

/* The node thread's figures for `stats`. */
static void publish_figures(struct nats_node *n)
{
    pthread_mutex_lock(&n->mu);
    for (uint32_t i = 0; i < n->nparts; i++) {
        struct part *pt = &n->parts[i];
        pt->pub_applied = pt->applied;
        pt->pub_inflight = pt->inflight_msgs;
        pt->pub_reset = pt->reset || !pt->sub;
    }
    pthread_mutex_unlock(&n->mu);
}

void nats_node_partitions(void *ctx, const struct rpc_partition **parts, uint32_t *np)
{
    struct nats_node *n = ctx;
    pthread_mutex_lock(&n->mu);
    int stale = n->polled_at == 0 || now_s() - n->polled_at > 3 * POLL_S;
    for (uint32_t i = 0; i < n->nparts; i++) {
        struct part *pt = &n->parts[i];
        uint64_t lag = pt->pending + pt->pub_inflight;
        if (!lag && (pt->stream_seq > pt->pub_applied || !pt->poll_ok || stale || pt->pub_reset))
            lag = 1; /* read at different moments, the stream has not answered lately, or the
                      * durable is being made again: not known to be caught up */
        n->snap[i] = (struct rpc_partition){pt->p, pt->stream_seq, pt->pub_applied, lag};
    }
    pthread_mutex_unlock(&n->mu);
    *parts = n->snap;
    *np = n->nparts;
}

/* ---------------------------------------------------------------- the thread */

/* The WAL refused a batch: once every batch is back, each partition goes on from the last
 * sequence the WAL holds (the refused messages come again). */
static void after_refusal(struct nats_node *n)
{
    while (n->inflight)
        reap_some(n, 100);
    nbatch_free(n->cur);
    n->cur = NULL;
    for (uint32_t i = 0; i < n->nparts; i++) {
        struct part *pt = &n->parts[i];
        pt->submitted = atomic_load(&pt->logged);
        pt->inflight_msgs = 0;
        pt->reset = 1;
        pt->retry_at = now_s() + 1;
    }
    atomic_store(&n->wal_refused, 0);
    log_msg(LOG_WARN, "nats_wal_refused",
            "action=\"consuming again from the last logged sequence of each partition in 1 s\"");
}

static void *node_main(void *arg)
{
    struct nats_node *n = arg;
    int busy = 0;
    while (!atomic_load(&n->stop)) {
        reap_some(n, 0);
        if (atomic_load(&n->wal_refused))
            after_refusal(n);
        publish_figures(n);
        int got = 0, live = 0;
        for (uint32_t i = 0; i < n->nparts && !atomic_load(&n->stop); i++) {
            struct part *pt = &n->parts[i];
            if (atomic_exchange(&pt->gone, 0) && !pt->reset) {
                /* a durable deleted under a running node (one found missing while it was being
                 * made again is made again once more: harmless) */
                log_msg(LOG_WARN, "nats_durable_gone",
                        "partition=%u durable=%s action=\"recreating it from seq %" PRIu64 "\"",
                        pt->p, pt->durable, pt->submitted + 1);
                pt->reset = 1;
                pt->retry_at = 0;
            }
            if (pt->reset) {
                if (now_s() < pt->retry_at)
                    continue;
                /* what is in flight is applied before the deliveries start again after it */
                if (part_subscribe(n, pt)) {
                    pt->retry_at = now_s() + 0.5;
                    continue;
                }
            }
            live++;
            got |= fetch(n, pt, busy ? 20 : 100 / (int)n->nparts + 10) > 0;
        }
        submit(n);
        busy = got;
        if (!live)
            usleep(100 * 1000);
    }
    submit(n);
    while (n->inflight)
        reap_some(n, 100);
    return NULL;
}

/* ---------------------------------------------------------------- start, stop */

static int connect_nats(struct nats_node *n, const char *urls, char *err, size_t errlen)
{
    char *copy = strdup(urls);
    const char *v[64];
    int k = 0;
    if (!copy)
        return -ENOMEM;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t && k < 64;
         t = strtok_r(NULL, ",", &save))
        if (*t)
            v[k++] = t;
    natsOptions *no = NULL;
    natsStatus st = natsOptions_Create(&no);
    if (st == NATS_OK)
        st = natsOptions_SetServers(no, v, k);
    if (st == NATS_OK)
        st = natsOptions_SetMaxReconnect(no, -1);
    if (st == NATS_OK)
        st = natsOptions_SetReconnectWait(no, 250);
    if (st == NATS_OK)
        st = natsOptions_SetName(no, "cascaded");
    if (st == NATS_OK)
        st = natsConnection_Connect(&n->nc, no);
    natsOptions_Destroy(no);
    free(copy);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    if (st == NATS_OK)
        st = natsConnection_JetStream(&n->js, n->nc, &jo);
    if (st != NATS_OK) {
        snprintf(err, errlen, "cannot connect to NATS at %s: %s", urls, natsStatus_GetText(st));
        return -ECONNREFUSED;
    }
    return 0;
}

int nats_node_start(const struct nats_node_config *cfg, struct writer *w, struct nats_node **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    /* the stream: found, or created with the node's P and R (an existing one's P wins) */
    struct cc_nats_opts o = {.stream = cfg->stream && cfg->stream[0] ? cfg->stream : NULL,
                             .partitions = cfg->stream_partitions,
                             .replicas = cfg->stream_replicas > 0 ? cfg->stream_replicas : 1,
                             .give_up_s = 60};
    struct cc_nats *cs = NULL;
    char cerr[512] = "";
    int rc = cc_nats_open(cfg->urls, &o, &cs, cerr, sizeof(cerr));
    if (rc) {
        snprintf(err, errlen, "--nats %s: %s", cfg->urls, cerr);
        return rc;
    }
    struct cc_nats_info info;
    cc_nats_info(cs, &info);
    cc_nats_close(cs);
    struct nats_node *n = calloc(1, sizeof(*n));
    uint8_t *set = calloc(info.partitions, 1);
    if (!n || !set) {
        free(n);
        free(set);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    n->w = w;
    n->P = info.partitions;
    n->limits = cfg->limits;
    n->limits.budget = NULL; /* the network loop's is its thread's alone */
    snprintf(n->stream, sizeof(n->stream), "%s", o.stream ? o.stream : CC_NATS_STREAM_DEFAULT);
    if ((rc = nats_node_parse_list(cfg->partitions, n->P, set, err, errlen)) ||
        (rc = node_id(cfg->data_dir, n->node_id, sizeof(n->node_id), err, errlen)))
        goto fail;
    for (uint32_t p = 0; p < n->P; p++)
        n->nparts += set[p];
    n->parts = calloc(n->nparts, sizeof(*n->parts));
    n->pidx = malloc(n->P * sizeof(*n->pidx));
    n->snap = calloc(n->nparts, sizeof(*n->snap));
    if (!n->parts || !n->pidx || !n->snap || bqueue_init(&n->back, 0)) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    n->back_ok = 1;
    for (uint32_t p = 0, k = 0; p < n->P; p++) {
        n->pidx[p] = set[p] ? (int32_t)k : -1;
        if (!set[p])
            continue;
        struct part *pt = &n->parts[k];
        pt->p = p;
        snprintf(pt->durable, sizeof(pt->durable), "cascaded-%s-p%u", n->node_id, p);
        snprintf(pt->subject, sizeof(pt->subject), "%s.%u", info.prefix, p);
        /* the engine holds what the WAL and the snapshot hold; the writer applies nothing of
         * the stream before this node submits, so this read does not race */
        pt->submitted = pt->applied = engine_stream_seq(w->engine, p);
        atomic_store(&pt->logged, pt->submitted);
        pt->reset = 1;
        k++;
    }
    if ((rc = connect_nats(n, cfg->urls, err, errlen)))
        goto fail;
    for (uint32_t i = 0; i < n->nparts; i++) /* a first try; the thread retries */
        part_subscribe(n, &n->parts[i]);
    if ((rc = -pthread_create(&n->thread, NULL, node_main, n))) {
        snprintf(err, errlen, "cannot start the NATS thread: %s", strerror(-rc));
        goto fail;
    }
    n->started = 1;
    if ((rc = -pthread_create(&n->poller, NULL, poll_main, n))) {
        snprintf(err, errlen, "cannot start the NATS poll thread: %s", strerror(-rc));
        goto fail;
    }
    n->poller_started = 1;
    log_msg(LOG_INFO, "nats_node", "stream=%s partitions=%u replicas=%d created=%d node_id=%s "
            "consuming=%u list=%s",
            n->stream, n->P, info.replicas, info.created, n->node_id, n->nparts, cfg->partitions);
    free(set);
    *out = n;
    return 0;
fail:
    free(set);
    nats_node_stop(n);
    return rc;
}

void nats_node_stop(struct nats_node *n)
{
    if (!n)
        return;
    atomic_store(&n->stop, 1);
    if (n->poller_started) {
        pthread_mutex_lock(&n->mu);
        pthread_cond_signal(&n->cv);
        pthread_mutex_unlock(&n->mu);
        pthread_join(n->poller, NULL);
    }
    if (n->started)
        pthread_join(n->thread, NULL);
    for (uint32_t i = 0; n->parts && i < n->nparts; i++)
        if (n->parts[i].sub)
            natsSubscription_Destroy(n->parts[i].sub); /* keeps the durable */
    nbatch_free(n->cur);
    if (n->dec)
        ingest_decoder_free(n->dec);
    if (n->js)
        jsCtx_Destroy(n->js);
    if (n->nc) {
        natsConnection_Close(n->nc);
        natsConnection_Destroy(n->nc);
    }
    if (n->back_ok)
        bqueue_destroy(&n->back);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    free(n->parts);
    free(n->pidx);
    free(n->snap);
    free(n);
    nats_Close();
}

/* ---------------------------------------------------------------- a lost node's durables */

int nats_node_delete_durables(const char *urls, const char *stream, const char *node_id, FILE *out,
                              char *err, size_t errlen)
{
    struct nats_node n = {0}; /* only its connection and JetStream context are used */
    const char *sname = stream && stream[0] ? stream : CC_NATS_STREAM_DEFAULT;
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "cascaded-%s-p", node_id);
    int rc = connect_nats(&n, urls, err, errlen);
    jsConsumerNamesList *list = NULL;
    jsErrCode jerr = 0;
    natsStatus st = NATS_TIMEOUT;
    /* a leader election makes requests fail for 5-10 s */
    for (int tries = 0; !rc && tries < 20; tries++) {
        if (tries)
            nats_Sleep(500);
        jerr = 0;
        st = js_ConsumerNames(&list, n.js, sname, NULL, &jerr);
        if (st == NATS_OK || st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
            break;
    }
    if (!rc && jerr == JSStreamNotFoundErr) {
        snprintf(err, errlen, "no stream %s at %s", sname, urls);
        rc = -ENOENT;
    } else if (!rc && st != NATS_OK && st != NATS_NOT_FOUND) { /* NOT_FOUND: no consumers */
        snprintf(err, errlen, "cannot list the consumers of stream %s: %s (%d)", sname,
                 natsStatus_GetText(st), (int)jerr);
        rc = -EIO;
    }
    unsigned deleted = 0, failed = 0;
    for (int i = 0; !rc && list && i < list->Count; i++) {
        const char *name = list->List[i], *num = name + strlen(prefix);
        if (strncmp(name, prefix, strlen(prefix)) || !*num || strspn(num, "0123456789") != strlen(num))
            continue;
        for (int tries = 0; tries < 10; tries++) {
            if (tries)
                nats_Sleep(500);
            jerr = 0;
            st = js_DeleteConsumer(n.js, sname, name, NULL, &jerr);
            if (st == NATS_OK || st == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr)
                break;
        }
        if (st == NATS_OK) {
            fprintf(out, "deleted %s\n", name);
            deleted++;
        } else if (st != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr) {
            if (!failed++)
                snprintf(err, errlen, "cannot delete durable %s: %s (%d)", name,
                         natsStatus_GetText(st), (int)jerr);
        }
    }
    if (!rc) {
        fprintf(out, "deleted %u durables of node %s from stream %s\n", deleted, node_id, sname);
        fflush(out);
    }
    if (!rc && failed)
        rc = -EIO;
    if (list)
        jsConsumerNamesList_Destroy(list);
    if (n.js)
        jsCtx_Destroy(n.js);
    if (n.nc) {
        natsConnection_Close(n.nc);
        natsConnection_Destroy(n.nc);
    }
    nats_Close();
    return rc;
}
