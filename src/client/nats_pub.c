/* libcascade-client's JetStream publisher (cascade/nats.h, DESIGN §9). Batches are published as
 * plain NATS requests whose reply subject is this publisher's own inbox plus the message's
 * number, and the PubAck (or error) that JetStream sends there is read by one subscription:
 * unlike libnats' async publish, every message then has its own deadline and back-off, and a
 * 503 "no responders" of a leader election names the message it refused. A message published
 * again carries the same Nats-Msg-Id, so JetStream keeps one copy within its duplicate window. */
#include "cascade/nats.h"

#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL /* header-only: the library needs no libxxhash at link time */
#include <xxhash.h>

#include "cascade/client.h"
#include "cascade/proto.h"

#define BACKOFF_MIN_S 0.1
#define BACKOFF_MAX_S 2.0

enum bstate { B_OPEN = 0, B_READY, B_INFLIGHT };

struct batch {
    struct batch *next; /* in the ready queue */
    uint32_t part, n;
    uint64_t first_index; /* the smallest index of its events */
    uint64_t seq;         /* message number (reply subject, Nats-Msg-Id), from its closing */
    char *buf;            /* 5 bytes kept for the array header, then the event maps */
    size_t len, cap;
    size_t head; /* where the message starts in buf once closed (the header is right-aligned) */
    double first_sent, sent_at;
    int state;
};

enum rkind { REPLY_ACK = 0, REPLY_DUP, REPLY_RETRY, REPLY_FAIL };

struct reply {
    uint64_t seq;
    int kind;
    char text[160];
};

struct cc_nats {
    natsConnection *nc;
    natsSubscription *sub;
    struct cc_nats_info info;
    uint32_t batch_events, window;
    size_t batch_bytes;
    double ack_timeout, give_up;
    char inbox[48], nonce[24];
    uint64_t next_seq;
    struct batch **open;              /* per partition, or NULL */
    struct batch *ready, *ready_tail; /* closed, waiting for the window or a back-off */
    uint32_t nready;
    struct batch **inflight; /* window slots */
    uint32_t ninflight;
    double hold_until; /* back-off after a refusal: no publish before */
    unsigned refusals; /* in a row, for the back-off */
    struct cc_nats_counts counts;
    int failed;
    char error[300], last_refusal[200];
    /* from the subscription's thread */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct reply *replies;
    size_t nreplies, capreplies;
    int reply_oom;
    int sub_done;    /* the subscription is closed and its handler will not run again */
    int reconnected; /* libnats reconnected: answers to what was in flight may never come */
};

uint32_t cc_nats_partition_of(const void *key, size_t len, uint32_t partitions)
{
    return partitions ? (uint32_t)(XXH64(key, len, 0) % partitions) : 0;
}

static void fail(struct cc_nats *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct cc_nats *s, const char *fmt, ...)
{
    if (s->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof(s->error), fmt, ap);
    va_end(ap);
    s->failed = 1;
}

/* ------------------------------------------------------------------ replies (libnats' thread) */

/* The value of "key": in a small JSON answer, as text (strings without their quotes). */
static void json_field(const char *js, int len, const char *key, char *out, size_t outlen)
{
    char pat[40];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    out[0] = 0;
    const char *p = memmem(js, (size_t)len, pat, strlen(pat));
    if (!p)
        return;
    p += strlen(pat);
    const char *end = js + len;
    while (p < end && *p == ' ')
        p++;
    int quoted = p < end && *p == '"';
    p += quoted;
    size_t n = 0;
    while (p + n < end && n + 1 < outlen && (quoted ? p[n] != '"' : (p[n] != ',' && p[n] != '}')))
        n++;
    memcpy(out, p, n);
    out[n] = 0;
}

static void classify(natsMsg *msg, struct reply *r)
{
    const char *data = natsMsg_GetData(msg);
    int len = natsMsg_GetDataLength(msg);
    char code[16], desc[120], dup[8];
    r->kind = REPLY_RETRY;
    r->text[0] = 0;
    if (natsMsg_IsNoResponders(msg) || len <= 0 || !data) {
        snprintf(r->text, sizeof(r->text), "no responders (503): the stream has no leader now");
        return;
    }
    if (memmem(data, (size_t)len, "\"error\"", 7)) {
        json_field(data, len, "code", code, sizeof(code));
        json_field(data, len, "description", desc, sizeof(desc));
        snprintf(r->text, sizeof(r->text), "JetStream error %s: %s", code, desc);
        int c = atoi(code);
        /* 503: no leader, or not ready; 408/5xx: timeouts inside the cluster. Anything else
         * (a message over max_payload, a subject of no stream) will not get better. */
        r->kind = (c == 503 || c == 408 || c >= 500) ? REPLY_RETRY : REPLY_FAIL;
        return;
    }
    json_field(data, len, "seq", code, sizeof(code));
    if (!code[0]) {
        snprintf(r->text, sizeof(r->text), "an answer that is not a PubAck: %.*s",
                 len > 100 ? 100 : len, data);
        return;
    }
    json_field(data, len, "duplicate", dup, sizeof(dup));
    r->kind = strcmp(dup, "true") == 0 ? REPLY_DUP : REPLY_ACK;
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    struct cc_nats *s = closure;
    const char *subj = natsMsg_GetSubject(msg);
    const char *dot = subj ? strrchr(subj, '.') : NULL;
    struct reply r = {0};
    if (dot && isdigit((unsigned char)dot[1])) {
        r.seq = strtoull(dot + 1, NULL, 10);
        classify(msg, &r);
        pthread_mutex_lock(&s->mu);
        if (s->nreplies == s->capreplies) {
            size_t cap = s->capreplies ? s->capreplies * 2 : 64;
            struct reply *p = realloc(s->replies, cap * sizeof(*p));
            if (p) {
                s->replies = p;
                s->capreplies = cap;
            }
        }
        if (s->nreplies < s->capreplies)
            s->replies[s->nreplies++] = r;
        else
            s->reply_oom = 1; /* the message times out and goes again: nothing is lost */
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->mu);
    }
    natsMsg_Destroy(msg);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    struct cc_nats *s = closure;
    pthread_mutex_lock(&s->mu);
    s->reconnected = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

static void on_sub_complete(void *closure)
{
    struct cc_nats *s = closure;
    pthread_mutex_lock(&s->mu);
    s->sub_done = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------------ batches */

#define HDR 5 /* room for the largest msgpack array header */

static struct batch *batch_new(uint32_t part)
{
    struct batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->cap = 64 << 10;
    b->buf = malloc(b->cap);
    if (!b->buf) {
        free(b);
        return NULL;
    }
    b->len = HDR;
    b->part = part;
    b->first_index = UINT64_MAX;
    return b;
}

static void batch_free(struct batch *b)
{
    if (b) {
        free(b->buf);
        free(b);
    }
}

static int batch_append(struct batch *b, const void *p, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap;
        while (cap < b->len + len)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb)
            return -ENOMEM;
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, p, len);
    b->len += len;
    return 0;
}

static void ready_push(struct cc_nats *s, struct batch *b, int front)
{
    b->state = B_READY;
    if (front) {
        b->next = s->ready;
        s->ready = b;
        if (!s->ready_tail)
            s->ready_tail = b;
    } else {
        b->next = NULL;
        if (s->ready_tail)
            s->ready_tail->next = b;
        else
            s->ready = b;
        s->ready_tail = b;
    }
    s->nready++;
}

static struct batch *ready_pop(struct cc_nats *s)
{
    struct batch *b = s->ready;
    if (b) {
        s->ready = b->next;
        if (!s->ready)
            s->ready_tail = NULL;
        s->nready--;
        b->next = NULL;
    }
    return b;
}

/* The array header goes right before the maps; the message is buf[head..len). */
static void batch_close(struct cc_nats *s, uint32_t part)
{
    struct batch *b = s->open[part];
    if (!b)
        return;
    s->open[part] = NULL;
    unsigned char h[HDR];
    size_t hl;
    if (b->n < 16) {
        h[0] = (unsigned char)(0x90 | b->n);
        hl = 1;
    } else if (b->n < 65536) {
        h[0] = 0xdc;
        h[1] = (unsigned char)(b->n >> 8);
        h[2] = (unsigned char)b->n;
        hl = 3;
    } else {
        h[0] = 0xdd;
        for (int i = 0; i < 4; i++)
            h[1 + i] = (unsigned char)(b->n >> (24 - 8 * i));
        hl = 5;
    }
    b->head = HDR - hl;
    memcpy(b->buf + b->head, h, hl);
    b->seq = ++s->next_seq;
    ready_push(s, b, 0);
}

void cc_nats_flush(struct cc_nats *s)
{
    for (uint32_t p = 0; p < s->info.partitions; p++)
        batch_close(s, p);
}

int cc_nats_full(const struct cc_nats *s)
{
    return s->nready + s->ninflight >= 2 * s->window;
}

int cc_nats_idle(const struct cc_nats *s)
{
    if (s->nready || s->ninflight)
        return 0;
    for (uint32_t p = 0; p < s->info.partitions; p++) {
        if (s->open[p])
            return 0;
    }
    return 1;
}

static int add_one(struct cc_nats *s, uint32_t part, const void *map, size_t len, uint64_t index)
{
    struct batch *b = s->open[part];
    if (b && b->n && b->len + len > s->batch_bytes + HDR) {
        batch_close(s, part);
        b = NULL;
    }
    if (!b && !(b = s->open[part] = batch_new(part)))
        return -ENOMEM;
    if (batch_append(b, map, len))
        return -ENOMEM;
    b->n++;
    if (index < b->first_index)
        b->first_index = index;
    s->counts.added++;
    if (b->n >= s->batch_events || b->len >= s->batch_bytes + HDR)
        batch_close(s, part);
    return 0;
}

int cc_nats_add_packed(struct cc_nats *s, uint32_t partition, const void *map, size_t len,
                       uint64_t index)
{
    if (s->failed)
        return -EPIPE;
    if (partition != CC_NATS_ALL && partition >= s->info.partitions)
        return -EINVAL;
    if (cc_nats_full(s))
        return -ENOBUFS;
    if (partition != CC_NATS_ALL)
        return add_one(s, partition, map, len, index);
    for (uint32_t p = 0; p < s->info.partitions; p++) {
        int rc = add_one(s, p, map, len, index);
        if (rc)
            return rc;
    }
    return 0;
}

int cc_nats_add(struct cc_nats *s, uint32_t partition, const struct event_raw *ev, const void *root,
                size_t rootlen, uint64_t index)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int rc = proto_event_pack(&pk, ev) ? -ENOMEM : 0;
    if (rc == 0 && root) {
        /* proto packs at most the 8 keys of DESIGN §2: a fixmap, one more entry fits */
        unsigned char *m = (unsigned char *)sb.data;
        if (sb.size == 0 || (m[0] & 0xf0) != 0x80 || (m[0] & 0x0f) == 0x0f)
            rc = -EINVAL;
        else {
            m[0]++;
            if (msgpack_pack_str(&pk, 4) || msgpack_pack_str_body(&pk, "root", 4) ||
                msgpack_pack_str(&pk, rootlen) || msgpack_pack_str_body(&pk, root, rootlen))
                rc = -ENOMEM;
        }
    }
    if (rc == 0)
        rc = cc_nats_add_packed(s, partition, sb.data, sb.size, index);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* ------------------------------------------------------------------ publishing */

static void publish(struct cc_nats *s, struct batch *b, double now)
{
    char subj[96], reply[80], id[64];
    natsMsg *m = NULL;
    snprintf(subj, sizeof(subj), "%s.%" PRIu32, s->info.prefix, b->part);
    snprintf(reply, sizeof(reply), "%s.%" PRIu64, s->inbox, b->seq);
    snprintf(id, sizeof(id), "%s-%" PRIu64, s->nonce, b->seq);
    natsStatus st = natsMsg_Create(&m, subj, reply, b->buf + b->head, (int)(b->len - b->head));
    if (st == NATS_OK)
        st = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
    if (st == NATS_OK)
        st = natsConnection_PublishMsg(s->nc, m);
    natsMsg_Destroy(m);
    if (b->first_sent == 0)
        b->first_sent = now;
    else
        s->counts.resends++;
    /* a publish libnats refused (reconnecting with its buffer full, ...) times out like one
     * that got no answer, and goes again */
    b->sent_at = st == NATS_OK ? now : now - s->ack_timeout + BACKOFF_MAX_S;
    if (st != NATS_OK)
        snprintf(s->last_refusal, sizeof(s->last_refusal), "publish: %s", natsStatus_GetText(st));
    b->state = B_INFLIGHT;
    s->inflight[s->ninflight++] = b;
}

static int find_inflight(const struct cc_nats *s, uint64_t seq)
{
    for (uint32_t i = 0; i < s->ninflight; i++) {
        if (s->inflight[i]->seq == seq)
            return (int)i;
    }
    return -1;
}

static struct batch *take_inflight(struct cc_nats *s, int i)
{
    struct batch *b = s->inflight[i];
    s->inflight[i] = s->inflight[--s->ninflight];
    return b;
}

/* One reply: an ack frees its message; a refusal sends it back to the front of the queue and
 * holds every publish for a back-off (an election refuses them all). */
static int take_reply(struct cc_nats *s, const struct reply *r, double now)
{
    int i = find_inflight(s, r->seq);
    if (i < 0)
        return 0; /* an answer to an attempt already answered, or timed out and queued again */
    if (r->kind == REPLY_ACK || r->kind == REPLY_DUP) {
        struct batch *b = take_inflight(s, i);
        s->counts.acked += b->n;
        s->counts.messages++;
        s->counts.duplicates += r->kind == REPLY_DUP ? b->n : 0;
        s->refusals = 0;
        batch_free(b);
        return 1;
    }
    if (r->kind == REPLY_FAIL) {
        fail(s, "%s.%" PRIu32 ": %s", s->info.prefix, s->inflight[i]->part, r->text);
        return 0;
    }
    snprintf(s->last_refusal, sizeof(s->last_refusal), "%s", r->text);
    ready_push(s, take_inflight(s, i), 1);
    double back = BACKOFF_MIN_S * (double)(1u << (s->refusals < 5 ? s->refusals : 5));
    s->refusals++;
    s->hold_until = now + (back < BACKOFF_MAX_S ? back : BACKOFF_MAX_S);
    return 0;
}

static int take_replies(struct cc_nats *s, double now)
{
    struct reply local[256];
    size_t n;
    int acked = 0;
    do {
        pthread_mutex_lock(&s->mu);
        n = s->nreplies < 256 ? s->nreplies : 256;
        if (n) { /* replies is NULL until the first one */
            memcpy(local, s->replies, n * sizeof(*local));
            memmove(s->replies, s->replies + n, (s->nreplies - n) * sizeof(*local));
            s->nreplies -= n;
        }
        pthread_mutex_unlock(&s->mu);
        for (size_t i = 0; i < n; i++)
            acked |= take_reply(s, &local[i], now);
    } while (n == 256);
    return acked;
}

/* Messages unanswered for ack_timeout go again; one unanswered since give_up ends it all. After
 * a reconnection every message in flight goes again at once: the replies to what was sent over
 * the lost connection may never come, and waiting out ack_timeout would add to the election's
 * stall (a copy that had landed is a duplicate JetStream drops by its Nats-Msg-Id). */
static void check_timeouts(struct cc_nats *s, double now)
{
    pthread_mutex_lock(&s->mu);
    int reconnected = s->reconnected;
    s->reconnected = 0;
    pthread_mutex_unlock(&s->mu);
    if (reconnected) {
        snprintf(s->last_refusal, sizeof(s->last_refusal), "the connection was lost");
        while (s->ninflight)
            ready_push(s, take_inflight(s, (int)s->ninflight - 1), 1);
    }
    for (uint32_t i = 0; i < s->ninflight;) {
        struct batch *b = s->inflight[i];
        if (now - b->first_sent > s->give_up) {
            fail(s, "no ack from JetStream for a message to %s.%" PRIu32 " in %.0f s (last: %s)",
                 s->info.prefix, b->part, s->give_up,
                 s->last_refusal[0] ? s->last_refusal : "no answer");
            return;
        }
        if (now - b->sent_at > s->ack_timeout) {
            if (!s->last_refusal[0])
                snprintf(s->last_refusal, sizeof(s->last_refusal), "no answer in %.1f s",
                         s->ack_timeout);
            ready_push(s, take_inflight(s, (int)i), 1);
            continue;
        }
        i++;
    }
}

static double next_deadline(const struct cc_nats *s)
{
    double d = 0;
    for (uint32_t i = 0; i < s->ninflight; i++) {
        double t = s->inflight[i]->sent_at + s->ack_timeout;
        if (d == 0 || t < d)
            d = t;
    }
    if (s->nready && s->ninflight < s->window && (d == 0 || s->hold_until < d))
        d = s->hold_until;
    return d;
}

int cc_nats_service(struct cc_nats *s, double wait_s)
{
    if (s->failed)
        return -EPIPE;
    double now = cc_now();
    int acked = take_replies(s, now);
    check_timeouts(s, now);
    if (s->failed)
        return -EPIPE;
    while (s->ready && s->ninflight < s->window && now >= s->hold_until)
        publish(s, ready_pop(s), now);
    if (acked || wait_s <= 0 || cc_nats_idle(s))
        return acked;
    /* wait for a reply, at most until the next thing to do */
    double until = now + wait_s, d = next_deadline(s);
    if (d > 0 && d < until)
        until = d;
    pthread_mutex_lock(&s->mu);
    if (s->nreplies == 0 && until > now) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double left = until - now;
        ts.tv_sec += (time_t)left;
        ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cond, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int cc_nats_wait(struct cc_nats *s, double timeout_s)
{
    double deadline = timeout_s > 0 ? cc_now() + timeout_s : 0;
    cc_nats_flush(s);
    while (!cc_nats_idle(s)) {
        if (cc_nats_service(s, 0.2) < 0)
            return -EPIPE;
        if (deadline > 0 && cc_now() > deadline)
            return -ETIMEDOUT;
    }
    return 0;
}

void cc_nats_counts(const struct cc_nats *s, struct cc_nats_counts *c)
{
    *c = s->counts;
}

uint64_t cc_nats_resume(const struct cc_nats *s)
{
    uint64_t r = UINT64_MAX;
    for (uint32_t p = 0; p < s->info.partitions; p++) {
        if (s->open[p] && s->open[p]->first_index < r)
            r = s->open[p]->first_index;
    }
    for (const struct batch *b = s->ready; b; b = b->next) {
        if (b->first_index < r)
            r = b->first_index;
    }
    for (uint32_t i = 0; i < s->ninflight; i++) {
        if (s->inflight[i]->first_index < r)
            r = s->inflight[i]->first_index;
    }
    return r;
}

const char *cc_nats_error(const struct cc_nats *s)
{
    return s->error;
}

void cc_nats_info(const struct cc_nats *s, struct cc_nats_info *info)
{
    *info = s->info;
}

/* ------------------------------------------------------------------ the stream */

/* P from an existing stream's subjects, which must be exactly <prefix>.0 .. <prefix>.P-1. */
static int stream_partitions(struct cc_nats *s, const jsStreamInfo *si, char *err, size_t errlen)
{
    const jsStreamConfig *c = si->Config;
    int n = c ? c->SubjectsLen : 0;
    if (n <= 0 || n > CC_NATS_MAX_PARTITIONS) {
        snprintf(err, errlen, "stream %s: %d subjects, not a cascaded stream (<prefix>.0..P-1)",
                 c && c->Name ? c->Name : "?", n);
        return -EINVAL;
    }
    char *seen = calloc((size_t)n, 1);
    if (!seen)
        return -ENOMEM;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const char *subj = c->Subjects[i], *dot = strrchr(subj, '.');
        char *end;
        size_t plen = dot ? (size_t)(dot - subj) : 0;
        unsigned long p = dot ? strtoul(dot + 1, &end, 10) : 0;
        if (!dot || !isdigit((unsigned char)dot[1]) || *end || p >= (unsigned long)n || seen[p] ||
            plen == 0 || plen >= sizeof(s->info.prefix) ||
            (i > 0 && (strlen(s->info.prefix) != plen || strncmp(s->info.prefix, subj, plen)))) {
            snprintf(err, errlen,
                     "stream %s: subject '%s' is not one of <prefix>.0..<prefix>.%d: not a "
                     "cascaded stream",
                     c->Name, subj, n - 1);
            rc = -EINVAL;
            break;
        }
        seen[p] = 1;
        memcpy(s->info.prefix, subj, plen);
        s->info.prefix[plen] = 0;
    }
    free(seen);
    s->info.partitions = (uint32_t)n;
    s->info.replicas = (int)c->Replicas;
    return rc;
}

static int create_stream(struct cc_nats *s, jsCtx *js, const char *name, jsErrCode *jerr,
                         natsStatus *st, jsStreamInfo **si)
{
    uint32_t p = s->info.partitions;
    const char **subjects = calloc(p, sizeof(*subjects));
    char *names = malloc((size_t)p * 80);
    if (!subjects || !names) {
        free(subjects);
        free(names);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < p; i++) {
        snprintf(names + (size_t)i * 80, 80, "%s.%" PRIu32, s->info.prefix, i);
        subjects[i] = names + (size_t)i * 80;
    }
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = (int)p;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = s->info.replicas;
    *st = js_AddStream(si, js, &cfg, NULL, jerr);
    free(subjects);
    free(names);
    return 0;
}

static int ensure_stream(struct cc_nats *s, const char *name, double deadline, char *err,
                         size_t errlen)
{
    jsCtx *js = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    if (natsConnection_JetStream(&js, s->nc, &jo) != NATS_OK) {
        snprintf(err, errlen, "no JetStream context: %s", nats_GetLastError(NULL));
        return -ENOMEM;
    }
    int rc = -ETIMEDOUT;
    double no_js_since = 0;
    char last[200] = "no answer";
    while (cc_now() < deadline) {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        natsStatus st = js_GetStreamInfo(&si, js, name, NULL, &jerr);
        if (st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
            jerr = 0;
            if ((rc = create_stream(s, js, name, &jerr, &st, &si)) != 0)
                break;
            if (st == NATS_OK)
                s->info.created = 1;
        }
        if (st == NATS_OK && si) {
            rc = stream_partitions(s, si, err, errlen);
            jsStreamInfo_Destroy(si);
            jsCtx_Destroy(js);
            return rc;
        }
        snprintf(last, sizeof(last), "%s (JetStream error %d)", natsStatus_GetText(st), (int)jerr);
        if (jerr == JSInsufficientResourcesErr || jerr == JSClusterNoPeersErr ||
            jerr == JSStreamReplicasNotSupportedErr || jerr == JSBadRequestErr) {
            snprintf(err, errlen,
                     "cannot create stream %s with %" PRIu32 " partitions and %d replicas: %s "
                     "(are there %d JetStream servers in the cluster?)",
                     name, s->info.partitions, s->info.replicas, nats_GetLastError(NULL),
                     s->info.replicas);
            jsCtx_Destroy(js);
            return -EINVAL;
        }
        /* no responders on the JetStream API: not enabled on this server, or not up yet (a
         * cluster that has just started); after 10 s of it, the former */
        if (st == NATS_NO_RESPONDERS || jerr == JSNotEnabledErr) {
            if (no_js_since == 0)
                no_js_since = cc_now();
            if (cc_now() - no_js_since > 10) {
                snprintf(err, errlen,
                         "JetStream does not answer on this server: is it enabled (nats-server "
                         "-js, or a jetstream block in its config)?");
                jsCtx_Destroy(js);
                return -EPROTONOSUPPORT;
            }
        } else {
            no_js_since = 0;
        }
        rc = -ETIMEDOUT;
        usleep(250 * 1000); /* JetStream not ready yet, or electing its meta leader */
    }
    snprintf(err, errlen, "stream %s: JetStream did not answer in time (%s)", name, last);
    jsCtx_Destroy(js);
    return rc;
}

/* ------------------------------------------------------------------ open, close */

static int split_urls(const char *urls, char ***out, int *n)
{
    char *copy = strdup(urls);
    int cap = 1;
    for (const char *p = urls; *p; p++)
        cap += *p == ',';
    char **v = calloc((size_t)cap + 1, sizeof(*v));
    if (!copy || !v) {
        free(copy);
        free(v);
        return -ENOMEM;
    }
    int k = 0;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (*t)
            v[k++] = t;
    }
    v[cap] = copy; /* freed with the array */
    *out = v;
    *n = k;
    return k ? 0 : -EINVAL;
}

static void free_urls(char **v, int cap)
{
    if (v) {
        free(v[cap]);
        free(v);
    }
}

static void make_nonce(char *buf, size_t len)
{
    unsigned char r[8];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        uint64_t x = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)(cc_now() * 1e9);
        memcpy(r, &x, sizeof(r));
    }
    snprintf(buf, len, "%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5], r[6],
             r[7]);
}

static int connect_nats(struct cc_nats *s, const char *urls, double timeout_s, char *err,
                        size_t errlen, int *nurls)
{
    char **v = NULL;
    int n = 0, cap = 1, rc;
    for (const char *p = urls; *p; p++)
        cap += *p == ',';
    if ((rc = split_urls(urls, &v, &n)) != 0) {
        snprintf(err, errlen, rc == -EINVAL ? "no NATS URL given" : "out of memory");
        free_urls(v, cap);
        return rc;
    }
    *nurls = n;
    natsOptions *no = NULL;
    natsStatus st = natsOptions_Create(&no);
    if (st == NATS_OK)
        st = natsOptions_SetServers(no, (const char **)v, n);
    if (st == NATS_OK)
        st = natsOptions_SetTimeout(no, (int64_t)(timeout_s * 1000));
    if (st == NATS_OK)
        st = natsOptions_SetMaxReconnect(no, -1); /* for ever: give_up_s decides */
    if (st == NATS_OK)
        st = natsOptions_SetReconnectWait(no, 250);
    if (st == NATS_OK)
        st = natsOptions_SetName(no, "cascade-client");
    if (st == NATS_OK)
        st = natsOptions_SetReconnectedCB(no, on_reconnected, s);
    /* servers started a moment ago may not listen yet: try again until the timeout */
    double deadline = cc_now() + timeout_s;
    while (st == NATS_OK && (st = natsConnection_Connect(&s->nc, no)) == NATS_NO_SERVER &&
           cc_now() + 0.25 < deadline) {
        usleep(250 * 1000);
        st = NATS_OK;
    }
    natsOptions_Destroy(no);
    free_urls(v, cap);
    if (st != NATS_OK) {
        snprintf(err, errlen, "cannot connect to %s: %s", urls, natsStatus_GetText(st));
        return st == NATS_NO_SERVER ? -ECONNREFUSED : st == NATS_TIMEOUT ? -ETIMEDOUT : -EIO;
    }
    return 0;
}

int cc_nats_open(const char *urls, const struct cc_nats_opts *o, struct cc_nats **out, char *err,
                 size_t errlen)
{
    static const struct cc_nats_opts none;
    if (!o)
        o = &none;
    const char *name = o->stream ? o->stream : CC_NATS_STREAM_DEFAULT;
    if (!name[0] || strlen(name) >= sizeof(((struct cc_nats_info *)0)->prefix) ||
        strpbrk(name, ". *>\t") || o->partitions > CC_NATS_MAX_PARTITIONS) {
        snprintf(err, errlen, "bad stream name or partition count");
        return -EINVAL;
    }
    struct cc_nats *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    s->batch_events = o->batch_events ? o->batch_events : 1000;
    s->batch_bytes = o->batch_bytes ? o->batch_bytes : 512u << 10;
    s->window = o->window ? o->window : 64;
    s->ack_timeout = o->ack_timeout_s > 0 ? o->ack_timeout_s : 5;
    s->give_up = o->give_up_s > 0 ? o->give_up_s : 120;
    double connect_timeout = o->connect_timeout_s > 0 ? o->connect_timeout_s : 10;
    for (size_t i = 0; name[i]; i++)
        s->info.prefix[i] = (char)tolower((unsigned char)name[i]);
    s->info.partitions = o->partitions ? o->partitions : CC_NATS_PARTITIONS_DEFAULT;
    int nurls = 0;
    int rc = connect_nats(s, urls, connect_timeout, err, errlen, &nurls);
    if (rc == 0) {
        s->info.replicas = o->replicas > 0 ? o->replicas : nurls >= 3 ? 3 : 1;
        rc = ensure_stream(s, name, cc_now() + (s->give_up < 60 ? s->give_up : 60), err, errlen);
    }
    if (rc == 0) {
        make_nonce(s->nonce, sizeof(s->nonce));
        snprintf(s->inbox, sizeof(s->inbox), "_INBOX.cc%s", s->nonce);
        char wild[64];
        snprintf(wild, sizeof(wild), "%s.*", s->inbox);
        s->open = calloc(s->info.partitions, sizeof(*s->open));
        s->inflight = calloc(s->window, sizeof(*s->inflight));
        if (!s->open || !s->inflight) {
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
        } else if (natsConnection_Subscribe(&s->sub, s->nc, wild, on_reply, s) != NATS_OK ||
                   natsSubscription_SetOnCompleteCB(s->sub, on_sub_complete, s) != NATS_OK) {
            snprintf(err, errlen, "cannot subscribe to %s: %s", wild, nats_GetLastError(NULL));
            rc = -EIO;
        }
    }
    if (rc) {
        cc_nats_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void cc_nats_close(struct cc_nats *s)
{
    if (!s)
        return;
    if (s->sub) {
        /* a plain subscription (no JetStream consumer behind it): Unsubscribe stops it, then
         * wait until its handler has returned for the last time before freeing what it uses */
        if (natsSubscription_Unsubscribe(s->sub) == NATS_OK) {
            double deadline = cc_now() + 5;
            pthread_mutex_lock(&s->mu);
            while (!s->sub_done && cc_now() < deadline) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += 50 * 1000 * 1000;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&s->cond, &s->mu, &ts);
            }
            pthread_mutex_unlock(&s->mu);
        }
        natsSubscription_Destroy(s->sub);
    }
    if (s->nc) {
        natsConnection_Close(s->nc);
        natsConnection_Destroy(s->nc);
    }
    if (s->open) {
        for (uint32_t p = 0; p < s->info.partitions; p++)
            batch_free(s->open[p]);
    }
    struct batch *b;
    while ((b = ready_pop(s)))
        batch_free(b);
    for (uint32_t i = 0; i < s->ninflight; i++)
        batch_free(s->inflight[i]);
    free(s->open);
    free(s->inflight);
    free(s->replies);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
