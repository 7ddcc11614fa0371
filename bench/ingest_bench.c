/* ingest-bench: end-to-end ingest rate of a running cascaded, over TCP, as a producer sees it.
 * A realistically shaped stream is generated and msgpack-encoded into batches first (not timed),
 * so that the client is not what is measured; then each connection's thread writes its batches as
 * fast as the socket takes them while a reader thread times the acks (DESIGN §4: an ack means the
 * events are in the WAL). With --server it also starts cascaded on a scratch data dir, reads its
 * peak memory, stops it with SIGTERM and checks that it exits 0. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

/* The stream's shape, from public retweet data: most cascades are a single post, a few reach tens
 * of thousands, most reshares hit the root itself, and a minority of actors make most posts. */
#define ACTORS_PER_EVENT 0.2    /* about N/5 distinct actors */
#define ZIPF_S           0.8    /* actor and content popularity */
#define SIZE_ALPHA       1.2    /* P(size >= s) ~ s^-1.2: about half the cascades are singletons */
#define SIZE_CAP         50000u /* the largest cascade (at most N/20 for small runs) */
#define ROOT_PARENT_P    0.65   /* a reshare of the root: star-like trees */
#define MAX_DEPTH        10     /* reshares of reshares stop here */
#define LABEL_P          0.05   /* roots that carry a fact-check label */
#define PAGE_ONE_IN      40     /* actors that are pages */
#define MS_PER_EVENT     8      /* 10 M events span about a day of event time */
#define TS_BASE          1700000000000LL

/* A firehose position is (event time << POST_BITS | post number); both fit for EVENTS_MAX. */
#define POST_BITS    28
#define EVENTS_MAX   200000000ull
#define CONNS_MAX    64
#define BATCH_MAX    100000u /* the server's default limit on array elements */
#define ERRS_KEPT    8
#define LOG_KEPT     5
#define THREADS_KEPT 8
#define READY_WAIT   30.0 /* seconds for cascaded to print its ready line */
#define STOP_WAIT    120.0
#define RECV_BYTES   65536

static const char *const label_names[] = {"false", "true", "unverified"};

struct opts {
    uint64_t events, seed;
    uint32_t batch, conns, window;
    double timeout;
    const char *host, *port, *server, *fsync, *server_log, *prefix, *trace;
    int json, progress;
};

struct rng {
    uint64_t s;
};

struct zipf {
    double n, a, inv; /* inverse CDF of a continuous power law over [1, n + 1) */
};

/* The generated stream, indexed by post number (a post's number is its cascade's first number
 * plus its rank in the cascade, so a cascade's posts are contiguous). */
struct gen {
    uint64_t n;
    uint64_t *order;  /* firehose positions, sorted: the order events are sent in */
    uint32_t *parent; /* [post]: the post it reshares; itself for a root */
    uint8_t *conn;    /* [post]: the connection its cascade goes over */
    uint32_t cascades, largest;
};

/* One batch's place in a connection's byte stream. */
struct mark {
    uint64_t end_off, end_events; /* cumulative over the connection */
};

/* One connection's pre-encoded stream, filled batch by batch. */
struct stream {
    msgpack_sbuffer out, body; /* body: the current batch's events, before its array header */
    msgpack_packer out_pk, body_pk;
    uint32_t in_body;
    struct mark *marks;
    uint64_t nmarks, cap, events;
};

/* A connection under load: the sender thread writes marks in order and publishes each batch's
 * write time through nsent; the reader thread retires batches as acks cover them. */
struct conn {
    const struct stream *st;
    const struct opts *o;
    int fd;
    pthread_t tx, rx;
    uint64_t t0_ns, *sent_ns, *lat_ns, nlat;
    _Atomic uint64_t nsent, covered, acked; /* acked: batches, for --window */
    _Atomic int done;
    pthread_mutex_t mu; /* with cv: the sender sleeps on a full --window until the reader acks */
    pthread_cond_t cv;
    uint64_t ok, dup, rej, last_ack_ns, max_gap_ns, max_gap_at_ns;
    char errs[ERRS_KEPT][160];
    int nerrs;
    char failure[320];
};

struct task_cpu {
    int tid;
    char comm[32];
    double cpu;
};

struct server {
    pid_t pid;
    int out_fd;
    char dir[PATH_MAX / 2], data[PATH_MAX], log[PATH_MAX]; /* dir: room for a file name */
    unsigned ingest;
    long long rss_ready, rss_end, hwm, wal_bytes;
    double stop_s, cpu;
    struct task_cpu threads[THREADS_KEPT];
    int nthreads, status, warns, errors, nlog;
    char log_lines[LOG_KEPT][512];
};

struct result {
    double gen_s, enc_s, seconds, cpu_s;
    uint64_t bytes, ok, dup, rej, max_gap_ns, max_gap_at_ns;
    uint64_t *lat_ns, nlat;
    double *per_s;
    uint32_t nper_s, per_s_cap;
    int failed;
};

/* ---- small helpers ---- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    return x ^ (x >> 33);
}

/* splitmix64: tiny and deterministic per seed; a workload needs no better. */
static uint64_t next64(struct rng *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    return mix64(r->s);
}

static double u01(struct rng *r)
{
    return (double)(next64(r) >> 11) * 0x1.0p-53;
}

static struct zipf zipf_init(uint64_t n)
{
    double e = 1.0 - ZIPF_S;
    return (struct zipf){.n = (double)n, .a = pow((double)n + 1.0, e) - 1.0, .inv = 1.0 / e};
}

/* Rank 0 is the most popular. */
static uint32_t zipf_draw(const struct zipf *z, struct rng *r)
{
    double x = pow(z->a * u01(r) + 1.0, z->inv) - 1.0;
    return x >= z->n ? (uint32_t)z->n - 1 : (uint32_t)x;
}

/* Pareto sizes; a draw over the cap is drawn again so that the tail keeps its shape. */
static uint32_t draw_size(struct rng *r, uint32_t cap)
{
    for (;;) {
        double s = floor(pow(1.0 - u01(r), -1.0 / SIZE_ALPHA));
        if (s <= cap)
            return (uint32_t)s;
    }
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static double secs(uint64_t ns)
{
    return (double)ns * 1e-9;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "ingest-bench: out of memory (%zu x %zu bytes)\n", n, size);
        exit(2);
    }
    return p;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec t = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&t, &t) && errno == EINTR)
        ;
}

/* ---- generator ---- */

/* Most reshares hit the root; the rest an earlier post of the cascade, unless that is too deep. */
static uint32_t pick_parent(struct rng *r, const uint8_t *depth, uint32_t k)
{
    if (u01(r) < ROOT_PARENT_P)
        return 0;
    uint32_t pk = (uint32_t)(u01(r) * k);
    return depth[pk] < MAX_DEPTH ? pk : 0;
}

/* Lays out one cascade: its posts' parents, connection and event times. Its lifetime grows with
 * its size, and its posts come front-loaded (post k at life * (k/(size-1))^2), as reshares do. */
static void plan_cascade(struct gen *g, struct rng *r, uint8_t *depth, uint64_t first,
                         uint32_t size, const struct opts *o)
{
    uint64_t span = g->n * MS_PER_EVENT;
    double life = 60000.0 * pow(size, 0.6) * (0.5 + u01(r));
    life = life < span / 2 ? life : (double)(span / 2);
    uint64_t start = (uint64_t)(u01(r) * ((double)span - life));
    uint8_t conn = (uint8_t)(mix64(first ^ o->seed) % o->conns); /* keeps parents first */
    for (uint32_t k = 0; k < size; k++) {
        uint64_t post = first + k;
        uint32_t pk = k ? pick_parent(r, depth + first, k) : 0;
        double f = size > 1 ? (double)k / (size - 1) : 0.0;
        uint64_t t = start + (uint64_t)(life * f * f);
        g->parent[post] = (uint32_t)(first + pk);
        depth[post] = k ? (uint8_t)(depth[first + pk] + 1) : 0;
        g->conn[post] = conn;
        g->order[post] = t << POST_BITS | post; /* ties: parents have lower numbers */
    }
}

/* LSD radix sort, 16 bits a pass: 10 M keys in a fraction of a second where qsort takes seconds. */
static void radix_sort(uint64_t *a, uint64_t n)
{
    uint64_t *tmp = xcalloc(n, sizeof *tmp), *count = xcalloc(65536, sizeof *count);
    for (int shift = 0; shift < 64; shift += 16) {
        memset(count, 0, 65536 * sizeof *count);
        for (uint64_t i = 0; i < n; i++)
            count[a[i] >> shift & 0xffff]++;
        for (uint64_t d = 0, sum = 0; d < 65536; d++) {
            uint64_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (uint64_t i = 0; i < n; i++)
            tmp[count[a[i] >> shift & 0xffff]++] = a[i];
        memcpy(a, tmp, n * sizeof *a);
    }
    free(tmp);
    free(count);
}

static void generate(struct gen *g, const struct opts *o)
{
    struct rng r = {o->seed};
    uint8_t *depth = xcalloc(o->events, 1);
    uint32_t cap = o->events / 20 < SIZE_CAP ? (uint32_t)(o->events / 20) : SIZE_CAP;
    *g = (struct gen){.n = o->events};
    g->order = xcalloc(g->n, sizeof *g->order);
    g->parent = xcalloc(g->n, sizeof *g->parent);
    g->conn = xcalloc(g->n, 1);
    for (uint64_t first = 0; first < g->n;) {
        uint32_t size = draw_size(&r, cap ? cap : 1);
        size = size < g->n - first ? size : (uint32_t)(g->n - first);
        plan_cascade(g, &r, depth, first, size, o);
        g->cascades++;
        g->largest = size > g->largest ? size : g->largest;
        first += size;
    }
    free(depth);
    radix_sort(g->order, g->n);
}

static void gen_free(struct gen *g)
{
    free(g->order);
    free(g->parent);
    free(g->conn);
}

/* ---- encoding ---- */

static void pack_lit(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

/* A string id: prefix and decimal digits, as platforms' string ids look. By hand, not snprintf:
 * encoding 10 M events is then seconds shorter. */
static void pack_id(msgpack_packer *pk, const char *prefix, uint64_t v)
{
    char buf[96], digits[20];
    size_t len = strlen(prefix), n = 0;
    memcpy(buf, prefix, len);
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        buf[len++] = digits[--n];
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, buf, len);
}

/* One event map. Roots carry the content (the rest inherit it, DESIGN §2) and sometimes a label;
 * reshares are shares by default, a few quotes and replies; pages say so on every post. */
static void pack_event(msgpack_packer *pk, const struct gen *g, uint64_t post, uint64_t t,
                       struct rng *r, const struct zipf *actors, const struct zipf *contents,
                       const struct opts *o)
{
    uint32_t actor = zipf_draw(actors, r), parent = g->parent[post];
    uint64_t h = mix64(post ^ (o->seed << 1));
    int root = parent == post, page = mix64(actor) % PAGE_ONE_IN == 0;
    int label = root && u01(r) < LABEL_P, kind = root ? 0 : (int)(h % 100);
    int quote = kind && kind < 8, reply = kind >= 8 && kind < 15;
    msgpack_pack_map(pk, 3 + (size_t)(page + (root ? 1 + label : 1 + (quote || reply))));
    pack_lit(pk, "post");
    pack_id(pk, o->prefix, post);
    pack_lit(pk, "actor");
    pack_id(pk, "u", actor);
    pack_lit(pk, "ts");
    msgpack_pack_int64(pk, TS_BASE + (int64_t)t);
    if (page) {
        pack_lit(pk, "actor_type");
        pack_lit(pk, "page");
    }
    if (!root) {
        pack_lit(pk, "parent");
        pack_id(pk, o->prefix, parent);
        if (quote || reply) {
            pack_lit(pk, "kind");
            pack_lit(pk, quote ? "quote" : "reply");
        }
        return;
    }
    pack_lit(pk, "content");
    pack_id(pk, "https://news.example/a/", zipf_draw(contents, r));
    if (label) {
        pack_lit(pk, "label");
        pack_lit(pk, label_names[h % 3]);
    }
}

static void stream_init(struct stream *s)
{
    msgpack_sbuffer_init(&s->out);
    msgpack_sbuffer_init(&s->body);
    msgpack_packer_init(&s->out_pk, &s->out, msgpack_sbuffer_write);
    msgpack_packer_init(&s->body_pk, &s->body, msgpack_sbuffer_write);
}

/* Closes the current batch: its array header, then its events, then its mark. */
static void stream_flush(struct stream *s)
{
    if (!s->in_body)
        return;
    msgpack_pack_array(&s->out_pk, s->in_body);
    msgpack_sbuffer_write(&s->out, s->body.data, s->body.size);
    msgpack_sbuffer_clear(&s->body);
    if (s->nmarks == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->marks = realloc(s->marks, s->cap * sizeof *s->marks);
        if (!s->marks) {
            fprintf(stderr, "ingest-bench: out of memory\n");
            exit(2);
        }
    }
    s->events += s->in_body;
    s->marks[s->nmarks++] = (struct mark){s->out.size, s->events};
    s->in_body = 0;
}

static void stream_free(struct stream *s)
{
    msgpack_sbuffer_destroy(&s->out);
    msgpack_sbuffer_destroy(&s->body);
    free(s->marks);
}

/* Walks the firehose order and appends each event to its cascade's connection. */
static void encode(const struct gen *g, struct stream *st, const struct opts *o)
{
    struct rng r = {o->seed ^ 0x5eed};
    struct zipf actors = zipf_init((uint64_t)(g->n * ACTORS_PER_EVENT) + 1);
    struct zipf contents = zipf_init(g->cascades / 2 + 1);
    for (uint32_t c = 0; c < o->conns; c++)
        stream_init(&st[c]);
    for (uint64_t i = 0; i < g->n; i++) {
        uint64_t post = g->order[i] & ((1ull << POST_BITS) - 1), t = g->order[i] >> POST_BITS;
        struct stream *s = &st[g->conn[post]];
        pack_event(&s->body_pk, g, post, t, &r, &actors, &contents, o);
        if (++s->in_body == o->batch)
            stream_flush(s);
    }
    for (uint32_t c = 0; c < o->conns; c++)
        stream_flush(&st[c]);
}

/* ---- the load ---- */

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai, *p;
    int rc = getaddrinfo(host, port, &hints, &ai), fd = -1;
    if (rc) {
        fprintf(stderr, "ingest-bench: %s:%s: %s\n", host, port, gai_strerror(rc));
        return -1;
    }
    for (p = ai; p && fd < 0; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
        if (fd >= 0 && connect(fd, p->ai_addr, p->ai_addrlen)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        fprintf(stderr, "ingest-bench: cannot connect to %s:%s: %s\n", host, port, strerror(errno));
        return -1;
    }
    /* a batch's tail must not wait on Nagle for the previous one's ACK: that is not the
     * server's latency */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {1, 0}; /* the reader wakes up to notice a stall */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* With --window W, batch b waits until batch b - W is acked: latency then measures the server,
 * not the socket buffers a saturating producer fills. Nonzero when the reader has given up. */
static int wait_window(struct conn *c, uint64_t b)
{
    if (!c->o->window)
        return 0;
    pthread_mutex_lock(&c->mu);
    while (b >= c->o->window + atomic_load(&c->acked) && !atomic_load(&c->done))
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    return b >= c->o->window + atomic_load(&c->acked) ? -1 : 0;
}

/* The reader's side of wait_window. */
static void wake_sender(struct conn *c)
{
    pthread_mutex_lock(&c->mu);
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void *tx_main(void *arg)
{
    struct conn *c = arg;
    const struct stream *s = c->st;
    uint64_t off = 0;
    for (uint64_t b = 0; b < s->nmarks; b++) {
        if (wait_window(c, b))
            return NULL;
        while (off < s->marks[b].end_off) {
            ssize_t n = send(c->fd, s->out.data + off, s->marks[b].end_off - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) /* the reader sees the close and reports it */
                return NULL;
            off += (uint64_t)n;
        }
        c->sent_ns[b] = now_ns();
        atomic_store_explicit(&c->nsent, b + 1, memory_order_release);
    }
    return NULL;
}

static void fail(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->failure, sizeof c->failure, fmt, ap);
    va_end(ap);
}

static void keep_err(struct conn *c, const msgpack_object *o)
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

static int key_is(const msgpack_object *k, const char *s)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(s) &&
           !memcmp(k->via.str.ptr, s, k->via.str.size);
}

/* An ack can beat the sender's clock reading after send() returned: wait for it, briefly. An ack
 * for bytes never sent would wait for ever: that is a server bug, reported. */
static int await_sent(struct conn *c, uint64_t b)
{
    uint64_t t0 = now_ns();
    while (atomic_load_explicit(&c->nsent, memory_order_acquire) <= b) {
        if (now_ns() - t0 > 1000000000u) {
            fail(c, "an ack covers batch %" PRIu64 ", which was never sent in full", b);
            return -1;
        }
        sched_yield();
    }
    return 0;
}

/* Batches are retired in order: each one covered by this ack gets its latency (clamped: see
 * await_sent). */
static void retire(struct conn *c, uint64_t covered, uint64_t t)
{
    const struct stream *s = c->st;
    while (c->nlat < s->nmarks && s->marks[c->nlat].end_events <= covered) {
        if (await_sent(c, c->nlat))
            return;
        uint64_t sent = c->sent_ns[c->nlat];
        c->lat_ns[c->nlat++] = t > sent ? t - sent : 0;
    }
    atomic_store(&c->acked, c->nlat);
    if (c->o->window)
        wake_sender(c);
    if (t - c->last_ack_ns > c->max_gap_ns) { /* the first gap is from the start */
        c->max_gap_ns = t - c->last_ack_ns;
        c->max_gap_at_ns = t - c->t0_ns;
    }
    c->last_ack_ns = t;
    atomic_store(&c->covered, covered);
}

static void handle_ack(struct conn *c, const msgpack_object *o, uint64_t t)
{
    if (o->type != MSGPACK_OBJECT_MAP) {
        fail(c, "an ack that is not a map (msgpack type %d)", (int)o->type);
        return;
    }
    uint64_t v[3] = {c->ok, c->dup, c->rej};
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *val = &o->via.map.ptr[i].val;
        int idx = key_is(k, "ok") ? 0 : key_is(k, "dup") ? 1 : key_is(k, "rej") ? 2 : -1;
        if (idx >= 0 && val->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            v[idx] = val->via.u64;
        else if (key_is(k, "err") && val->type == MSGPACK_OBJECT_ARRAY)
            for (uint32_t j = 0; j < val->via.array.size; j++)
                keep_err(c, &val->via.array.ptr[j]);
        else if (key_is(k, "fatal") && val->type == MSGPACK_OBJECT_STR)
            fail(c, "fatal from the server: %.*s", (int)val->via.str.size, val->via.str.ptr);
    }
    uint64_t covered = v[0] + v[1] + v[2];
    if (covered < atomic_load(&c->covered) || covered > c->st->events)
        fail(c, "ack counts %" PRIu64 " after %" PRIu64 " of %" PRIu64 " events sent", covered,
             atomic_load(&c->covered), c->st->events);
    c->ok = v[0], c->dup = v[1], c->rej = v[2];
    if (!c->failure[0])
        retire(c, covered, t);
}

/* Returns 0 to keep reading, -1 when the connection is over (all acked, failed, or stalled). */
static int rx_once(struct conn *c, msgpack_unpacker *u, msgpack_unpacked *r, uint64_t *progress)
{
    if (!msgpack_unpacker_reserve_buffer(u, RECV_BYTES)) {
        fail(c, "out of memory reading acks");
        return -1;
    }
    ssize_t n = recv(c->fd, msgpack_unpacker_buffer(u), RECV_BYTES, 0);
    uint64_t t = now_ns(), before = atomic_load(&c->covered);
    if (n == 0) {
        fail(c, "the server closed the connection with %" PRIu64 " of %" PRIu64 " events acked",
             before, c->st->events);
        return -1;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fail(c, "recv: %s", strerror(errno));
        return -1;
    }
    if (n > 0) {
        msgpack_unpacker_buffer_consumed(u, (size_t)n);
        int rc = MSGPACK_UNPACK_CONTINUE;
        while (!c->failure[0] && (rc = msgpack_unpacker_next(u, r)) == MSGPACK_UNPACK_SUCCESS)
            handle_ack(c, &r->data, t);
        if (!c->failure[0] && rc == MSGPACK_UNPACK_PARSE_ERROR)
            fail(c, "the server's acks are not msgpack");
    }
    if (atomic_load(&c->covered) > before) {
        *progress = t;
    } else if (secs(t - *progress) > c->o->timeout) {
        c->max_gap_ns = t - c->last_ack_ns; /* the wait given up on is the longest */
        c->max_gap_at_ns = t - c->t0_ns;
        fail(c, "no ack for %.0f s with %" PRIu64 " of %" PRIu64 " events acked", c->o->timeout,
             before, c->st->events);
    }
    return c->failure[0] || atomic_load(&c->covered) == c->st->events ? -1 : 0;
}

static void *rx_main(void *arg)
{
    struct conn *c = arg;
    msgpack_unpacker u;
    msgpack_unpacked r;
    uint64_t progress = now_ns();
    if (!msgpack_unpacker_init(&u, RECV_BYTES)) {
        fail(c, "out of memory");
        atomic_store(&c->done, 1);
        wake_sender(c);
        return NULL;
    }
    msgpack_unpacked_init(&r);
    while (c->st->events && rx_once(c, &u, &r, &progress) == 0)
        ;
    msgpack_unpacked_destroy(&r);
    msgpack_unpacker_destroy(&u);
    atomic_store(&c->done, 1);
    wake_sender(c);
    return NULL;
}

static int all_done(const struct conn *cs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (!atomic_load(&cs[i].done))
            return 0;
    return 1;
}

static uint64_t total_covered(const struct conn *cs, uint32_t n)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += atomic_load(&cs[i].covered);
    return sum;
}

/* Samples the acked count once a second until every reader is done: a stall shows up as a slow
 * second here long before it shows in the average. */
static void monitor(const struct conn *cs, const struct opts *o, uint64_t t0, struct result *res)
{
    uint64_t next = t0 + 1000000000u, prev = 0;
    while (!all_done(cs, o->conns)) {
        sleep_ns(10000000u);
        if (now_ns() < next)
            continue;
        uint64_t cov = total_covered(cs, o->conns);
        if (res->nper_s == res->per_s_cap) {
            res->per_s_cap = res->per_s_cap ? 2 * res->per_s_cap : 64;
            res->per_s = realloc(res->per_s, res->per_s_cap * sizeof *res->per_s);
            if (!res->per_s)
                exit(2);
        }
        res->per_s[res->nper_s++] = (double)(cov - prev);
        if (o->progress)
            fprintf(stderr, "ingest-bench: %4u s  %10" PRIu64 " acked  %9.0f events/s\n",
                    res->nper_s, cov, (double)(cov - prev));
        prev = cov;
        next += 1000000000u;
    }
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static int conns_open(struct conn *cs, const struct stream *st, const struct opts *o,
                      const char *host, const char *port)
{
    for (uint32_t i = 0; i < o->conns; i++) {
        cs[i] = (struct conn){.st = &st[i], .o = o};
        pthread_mutex_init(&cs[i].mu, NULL);
        pthread_cond_init(&cs[i].cv, NULL);
        cs[i].fd = connect_to(host, port);
        if (cs[i].fd < 0)
            return -1;
        cs[i].sent_ns = xcalloc(st[i].nmarks, sizeof *cs[i].sent_ns);
        cs[i].lat_ns = xcalloc(st[i].nmarks, sizeof *cs[i].lat_ns);
    }
    return 0;
}

/* Runs the load; the clock runs from the first byte sent to the last ack received. */
static void run_load(struct conn *cs, const struct opts *o, struct result *res)
{
    double cpu0 = cpu_seconds();
    uint64_t t0 = now_ns(), end = t0;
    for (uint32_t i = 0; i < o->conns; i++) {
        cs[i].t0_ns = cs[i].last_ack_ns = t0;
        if (pthread_create(&cs[i].rx, NULL, rx_main, &cs[i]) ||
            pthread_create(&cs[i].tx, NULL, tx_main, &cs[i])) {
            fprintf(stderr, "ingest-bench: cannot start threads\n");
            exit(2);
        }
    }
    monitor(cs, o, t0, res);
    for (uint32_t i = 0; i < o->conns; i++) {
        /* a sender blocked on a dead server's full socket wakes up on the shutdown */
        if (cs[i].failure[0])
            shutdown(cs[i].fd, SHUT_RDWR);
        pthread_join(cs[i].rx, NULL);
        pthread_join(cs[i].tx, NULL);
        end = cs[i].last_ack_ns > end ? cs[i].last_ack_ns : end;
    }
    res->seconds = secs(end - t0);
    res->cpu_s = cpu_seconds() - cpu0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void collect(struct conn *cs, const struct stream *st, const struct opts *o,
                    struct result *res)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < o->conns; i++)
        total += cs[i].nlat;
    res->lat_ns = xcalloc(total, sizeof *res->lat_ns);
    for (uint32_t i = 0; i < o->conns; i++) {
        memcpy(res->lat_ns + res->nlat, cs[i].lat_ns, cs[i].nlat * sizeof *res->lat_ns);
        res->nlat += cs[i].nlat;
        res->bytes += st[i].out.size;
        res->ok += cs[i].ok, res->dup += cs[i].dup, res->rej += cs[i].rej;
        if (cs[i].max_gap_ns > res->max_gap_ns) {
            res->max_gap_ns = cs[i].max_gap_ns;
            res->max_gap_at_ns = cs[i].max_gap_at_ns;
        }
        res->failed |= cs[i].failure[0] != 0;
    }
    qsort(res->lat_ns, res->nlat, sizeof *res->lat_ns, cmp_u64);
    res->failed |= res->ok != o->events;
}

/* One line per batch, in send order: where a stall or a starved connection shows. */
static int write_trace(const struct conn *cs, const struct opts *o)
{
    FILE *f = fopen(o->trace, "w");
    if (!f) {
        fprintf(stderr, "ingest-bench: %s: %s\n", o->trace, strerror(errno));
        return -1;
    }
    fprintf(f, "# conn batch end_events sent_s acked_s latency_ms\n");
    for (uint32_t i = 0; i < o->conns; i++) {
        const struct conn *c = &cs[i];
        for (uint64_t b = 0; b < c->nlat; b++)
            fprintf(f, "%u %" PRIu64 " %" PRIu64 " %.6f %.6f %.3f\n", i, b,
                    c->st->marks[b].end_events, secs(c->sent_ns[b] - c->t0_ns),
                    secs(c->sent_ns[b] + c->lat_ns[b] - c->t0_ns), c->lat_ns[b] * 1e-6);
    }
    return fclose(f) ? -1 : 0;
}

/* After the trace (which needs them in send order), for the per-connection percentiles. */
static void sort_conn_latencies(struct conn *cs, const struct opts *o)
{
    for (uint32_t i = 0; i < o->conns; i++)
        qsort(cs[i].lat_ns, cs[i].nlat, sizeof *cs[i].lat_ns, cmp_u64);
}

/* Before the server's SIGTERM: it waits for open connections to end. */
static void conns_close(struct conn *cs, const struct opts *o)
{
    for (uint32_t i = 0; i < o->conns; i++) {
        if (cs[i].fd >= 0)
            close(cs[i].fd);
        cs[i].fd = -1;
    }
}

static void conns_free(struct conn *cs, const struct opts *o)
{
    for (uint32_t i = 0; i < o->conns; i++) {
        free(cs[i].sent_ns);
        free(cs[i].lat_ns);
        if (cs[i].st) { /* set, with the mutex, once opened */
            pthread_mutex_destroy(&cs[i].mu);
            pthread_cond_destroy(&cs[i].cv);
        }
    }
    free(cs);
}

/* ---- the server ---- */

static long long proc_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    long long kb = -1;
    size_t len = strlen(field);
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, len) && line[len] == ':')
            kb = strtoll(line + len + 1, NULL, 10);
    if (f)
        fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* utime + stime in seconds from a /proc stat file, and the task's name. */
static double stat_cpu(const char *path, char *comm, size_t commlen)
{
    char buf[1024];
    unsigned long long ut, st;
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    if (!open || !close || close < open)
        return -1;
    snprintf(comm, commlen, "%.*s", (int)(close - open - 1), open + 1);
    /* fields 3..13 (state .. cmajflt), then 14 utime and 15 stime, in clock ticks */
    if (sscanf(close + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Which of the server's threads did the work: the busiest one bounds the rate. Threads that
 * already ended (io_uring workers come and go) count only in the total. */
static void read_threads(struct server *sv)
{
    char path[128], comm[32];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)sv->pid);
    sv->cpu = stat_cpu(path, comm, sizeof comm);
    snprintf(path, sizeof path, "/proc/%d/task", (int)sv->pid);
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d)) && sv->nthreads < THREADS_KEPT;) {
        struct task_cpu *t = &sv->threads[sv->nthreads];
        if (e->d_name[0] == '.')
            continue;
        t->tid = atoi(e->d_name);
        snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)sv->pid, t->tid);
        t->cpu = stat_cpu(path, t->comm, sizeof t->comm);
        sv->nthreads += t->cpu >= 0;
    }
    if (d)
        closedir(d);
}

static void exec_server(const struct opts *o, struct server *sv, int out_fd)
{
    int log_fd = open(sv->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0 || dup2(out_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0)
        _exit(127);
    execl(o->server, o->server, "--bind", "127.0.0.1", "--ingest-port", "0", "--query-port", "0",
          "--http-port", "0", "--data-dir", sv->data, "--fsync", o->fsync, (char *)NULL);
    fprintf(stderr, "ingest-bench: cannot run %s: %s\n", o->server, strerror(errno));
    _exit(127);
}

/* Reads stdout until the ready line; -1 if the server exits or stays silent. */
static int await_ready(struct server *sv)
{
    char line[256];
    size_t len = 0;
    uint64_t deadline = now_ns() + (uint64_t)(READY_WAIT * 1e9);
    while (len < sizeof line - 1 && now_ns() < deadline) {
        struct pollfd p = {sv->out_fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(sv->out_fd, line + len, 1); /* byte by byte: it is one short line */
        if (n <= 0)
            return -1;
        if (line[len++] == '\n')
            break;
    }
    line[len] = 0;
    unsigned q, h;
    return sscanf(line, "ready ingest=%u query=%u http=%u", &sv->ingest, &q, &h) == 3 ? 0 : -1;
}

static int start_server(const struct opts *o, struct server *sv)
{
    int p[2];
    const char *tmp = getenv("TMPDIR");
    int len =
        snprintf(sv->dir, sizeof sv->dir, "%s/ingest-bench.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (len >= (int)sizeof sv->dir)
        errno = ENAMETOOLONG;
    if (len >= (int)sizeof sv->dir || !mkdtemp(sv->dir) || pipe2(p, O_CLOEXEC)) {
        fprintf(stderr, "ingest-bench: cannot make %s: %s\n", sv->dir, strerror(errno));
        sv->dir[0] = 0;
        return -1;
    }
    snprintf(sv->data, sizeof sv->data, "%s/data", sv->dir);
    snprintf(sv->log, sizeof sv->log, "%s", o->server_log ? o->server_log : "");
    if (!o->server_log)
        snprintf(sv->log, sizeof sv->log, "%s/server.log", sv->dir);
    sv->pid = fork();
    if (sv->pid == 0)
        exec_server(o, sv, p[1]);
    close(p[1]);
    sv->out_fd = p[0];
    if (sv->pid < 0 || await_ready(sv)) {
        fprintf(stderr, "ingest-bench: %s did not print its ready line (log: %s)\n", o->server,
                sv->log);
        return -1;
    }
    sv->rss_ready = proc_status_kb(sv->pid, "VmRSS");
    return 0;
}

/* SIGTERM, then up to STOP_WAIT for a clean exit; past that, SIGKILL (this pid only). */
static void stop_server(struct server *sv)
{
    uint64_t t0 = now_ns();
    int st = 0;
    sv->status = -1;
    if (sv->pid <= 0)
        return;
    kill(sv->pid, SIGTERM);
    while (waitpid(sv->pid, &st, WNOHANG) == 0) {
        if (secs(now_ns() - t0) > STOP_WAIT) {
            fprintf(stderr, "ingest-bench: server still up %.0f s after SIGTERM: SIGKILL\n",
                    STOP_WAIT);
            kill(sv->pid, SIGKILL);
            waitpid(sv->pid, &st, 0);
            break;
        }
        sleep_ns(10000000u);
    }
    sv->stop_s = secs(now_ns() - t0);
    sv->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static long long tree_bytes; /* nftw callbacks take no context argument */

static int add_size(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    if (type == FTW_F)
        tree_bytes += sb->st_size;
    return 0;
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    return remove(path) ? -1 : 0;
}

/* Counts warn and error lines and keeps the first few: the figures alone hide a server that
 * dropped connections or failed a write along the way. */
static void scan_log(struct server *sv)
{
    char line[sizeof sv->log_lines[0]];
    FILE *f = fopen(sv->log, "r");
    while (f && fgets(line, sizeof line, f)) {
        int warn = !strncmp(line, "level=warn", 10), error = !strncmp(line, "level=error", 11);
        if (!warn && !error && strncmp(line, "ingest-bench:", 13))
            continue;
        sv->warns += warn;
        sv->errors += !warn;
        line[strcspn(line, "\n")] = 0;
        if (sv->nlog < LOG_KEPT)
            snprintf(sv->log_lines[sv->nlog++], sizeof line, "%s", line);
    }
    if (f)
        fclose(f);
}

/* Memory and disk while it still runs, then the stop, then its log; the scratch dir goes. */
static void finish_server(struct server *sv)
{
    sv->rss_end = proc_status_kb(sv->pid, "VmRSS");
    sv->hwm = proc_status_kb(sv->pid, "VmHWM");
    read_threads(sv);
    tree_bytes = 0;
    nftw(sv->data, add_size, 16, FTW_PHYS);
    sv->wal_bytes = tree_bytes;
    stop_server(sv);
    if (sv->out_fd > 0)
        close(sv->out_fd);
    scan_log(sv);
    if (sv->dir[0] && nftw(sv->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS))
        fprintf(stderr, "ingest-bench: cannot remove %s: %s\n", sv->dir, strerror(errno));
}

/* ---- output ---- */

/* Nearest rank of sorted latencies. */
static double pct_of(const uint64_t *sorted, uint64_t n, double p)
{
    if (!n)
        return 0;
    uint64_t i = (uint64_t)ceil(p * (double)n);
    return (double)sorted[i ? i - 1 : 0] * 1e-6;
}

static double pct_ms(const struct result *r, double p)
{
    return pct_of(r->lat_ns, r->nlat, p);
}

/* Guarded: a run that failed at once has no duration. */
static double rate(double x, double seconds)
{
    return seconds > 0 ? x / seconds : 0;
}

/* Over what was acked: a failed run's rate must not count what never got through. */
static double events_per_s(const struct opts *o, const struct result *r)
{
    return rate((double)(r->ok + r->dup + r->rej), r->seconds);
}

static double mb_per_s(const struct opts *o, const struct result *r)
{
    double acked = (double)(r->ok + r->dup + r->rej) / (double)o->events;
    return rate(r->bytes * acked / 1e6, r->seconds);
}

static double per_event(long long bytes, uint64_t n)
{
    return bytes < 0 ? -1 : (double)bytes / (double)n;
}

/* One slow connection hides in the totals: each one's end and latency (sorted by
 * sort_conn_latencies). */
static void print_conns(const struct conn *cs, const struct opts *o)
{
    for (uint32_t i = 0; i < o->conns; i++) {
        const struct conn *c = &cs[i];
        printf("conn %-6u %" PRIu64 " events, %.1f MB, last ack at %.3f s, latency p50 %.2f ms, "
               "p99 %.2f ms, max %.2f ms\n",
               i, c->st->events, c->st->out.size / 1e6, secs(c->last_ack_ns - c->t0_ns),
               pct_of(c->lat_ns, c->nlat, 0.5), pct_of(c->lat_ns, c->nlat, 0.99),
               pct_of(c->lat_ns, c->nlat, 1.0));
    }
}

static void print_failures(const struct conn *cs, const struct opts *o)
{
    for (uint32_t i = 0; i < o->conns; i++) {
        if (cs[i].failure[0])
            printf("conn %-6u FAILED: %s\n", i, cs[i].failure);
        for (int e = 0; e < cs[i].nerrs; e++)
            printf("conn %-6u rejection: %s\n", i, cs[i].errs[e]);
    }
}

static void print_server(const struct opts *o, const struct server *sv)
{
    double mib = 1048576.0;
    printf("server     peak RSS (VmHWM) %.1f MiB = %.1f bytes/event; RSS %.1f MiB at ready, "
           "%.1f MiB after the load (%.1f bytes/event more)\n",
           sv->hwm / mib, per_event(sv->hwm, o->events), sv->rss_ready / mib, sv->rss_end / mib,
           per_event(sv->rss_end - sv->rss_ready, o->events));
    printf("server     data dir %.1f MiB = %.1f bytes/event; SIGTERM to exit %.2f s, exit "
           "status %d\n",
           sv->wal_bytes / mib, per_event(sv->wal_bytes, o->events), sv->stop_s, sv->status);
    printf("server CPU %.2f s in all; by thread:", sv->cpu);
    for (int i = 0; i < sv->nthreads; i++)
        printf("%s %s/%d%s %.2f s", i ? "," : "", sv->threads[i].comm, sv->threads[i].tid,
               sv->threads[i].tid == sv->pid ? " (main)" : "", sv->threads[i].cpu);
    printf("\n");
    printf("server log %d warn, %d error lines%s\n", sv->warns, sv->errors,
           sv->nlog ? ", first ones:" : "");
    for (int i = 0; i < sv->nlog; i++)
        printf("  %s\n", sv->log_lines[i]);
}

static void print_human(const struct opts *o, const struct gen *g, const struct result *r,
                        const struct conn *cs, const struct server *sv)
{
    printf("ingest-bench: %" PRIu64 " events, batches of %u, %u connections, seed %" PRIu64,
           o->events, o->batch, o->conns, o->seed);
    if (o->window)
        printf(", window %u batches", o->window);
    printf("\n");
    printf("generated  %u cascades (largest %u) in %.2f s; encoded %.1f MB, %.1f bytes/event, "
           "in %.2f s (not timed)\n",
           g->cascades, g->largest, r->gen_s, r->bytes / 1e6, (double)r->bytes / o->events,
           r->enc_s);
    if (o->server)
        printf("server     %s --fsync %s, port %u\n", o->server, o->fsync, sv->ingest);
    printf("load       %.3f s: %.0f events/s, %.1f MB/s; client CPU %.2f s\n", r->seconds,
           events_per_s(o, r), mb_per_s(o, r), r->cpu_s);
    printf("ack        latency p50 %.2f ms, p99 %.2f ms, p999 %.2f ms, max %.2f ms over %" PRIu64
           " batches; longest wait for an ack %.1f ms (ended at %.2f s)\n",
           pct_ms(r, 0.5), pct_ms(r, 0.99), pct_ms(r, 0.999), pct_ms(r, 1.0), r->nlat,
           r->max_gap_ns * 1e-6, secs(r->max_gap_at_ns));
    printf("per second ");
    for (uint32_t i = 0; i < r->nper_s; i++)
        printf("%s%.0f", i ? " " : "", r->per_s[i]);
    printf("%s\n", r->nper_s ? " events acked" : "(under a second)");
    printf("acked      ok %" PRIu64 ", dup %" PRIu64 ", rej %" PRIu64 " of %" PRIu64 "\n", r->ok,
           r->dup, r->rej, o->events);
    print_conns(cs, o);
    print_failures(cs, o);
    if (o->server)
        print_server(o, sv);
    printf("result     %s\n", r->failed ? "FAILED" : "ok");
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void json_server(const struct opts *o, const struct server *sv)
{
    printf(",\"server\":{\"fsync\":\"%s\",\"peak_rss_bytes\":%lld,\"peak_rss_bytes_per_event\":"
           "%.2f,\"rss_ready_bytes\":%lld,\"rss_end_bytes\":%lld,\"data_dir_bytes\":%lld,"
           "\"stop_seconds\":%.3f,\"exit_status\":%d,\"log_warn\":%d,\"log_error\":%d,"
           "\"log\":[",
           o->fsync, sv->hwm, per_event(sv->hwm, o->events), sv->rss_ready, sv->rss_end,
           sv->wal_bytes, sv->stop_s, sv->status, sv->warns, sv->errors);
    for (int i = 0; i < sv->nlog; i++) {
        printf(i ? "," : "");
        json_str(sv->log_lines[i]);
    }
    printf("],\"cpu_seconds\":%.2f,\"threads\":[", sv->cpu);
    for (int i = 0; i < sv->nthreads; i++) {
        printf("%s{\"tid\":%d,\"name\":", i ? "," : "", sv->threads[i].tid);
        json_str(sv->threads[i].comm);
        printf(",\"main\":%s,\"cpu_seconds\":%.2f}",
               sv->threads[i].tid == sv->pid ? "true" : "false", sv->threads[i].cpu);
    }
    printf("]}");
}

/* ,"conns":[...],"errors":[...]: each connection's figures, then failures and rejections. */
static void json_conns(const struct conn *cs, const struct opts *o)
{
    printf(",\"conns\":[");
    for (uint32_t i = 0; i < o->conns; i++) {
        const struct conn *c = &cs[i];
        printf("%s{\"events\":%" PRIu64 ",\"bytes\":%zu,\"last_ack_s\":%.6f,\"ack_ms\":{"
               "\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}}",
               i ? "," : "", c->st->events, c->st->out.size, secs(c->last_ack_ns - c->t0_ns),
               pct_of(c->lat_ns, c->nlat, 0.5), pct_of(c->lat_ns, c->nlat, 0.99),
               pct_of(c->lat_ns, c->nlat, 1.0));
    }
    printf("],\"errors\":[");
    for (uint32_t i = 0, first = 1; i < o->conns; i++) {
        for (int e = -1; e < cs[i].nerrs; e++) {
            const char *s = e < 0 ? cs[i].failure : cs[i].errs[e];
            if (!*s)
                continue;
            printf(first ? "" : ",");
            json_str(s);
            first = 0;
        }
    }
    printf("]");
}

static void print_json(const struct opts *o, const struct gen *g, const struct result *r,
                       const struct conn *cs, const struct server *sv)
{
    printf("{\"events\":%" PRIu64 ",\"batch\":%u,\"connections\":%u,\"window\":%u,\"seed\":%" PRIu64
           ",\"cascades\":%u,\"bytes\":%" PRIu64 ",\"seconds\":%.6f,\"events_per_s\":%.0f,"
           "\"mb_per_s\":%.2f,\"client_cpu_seconds\":%.3f,\"ack_ms\":{\"p50\":%.3f,\"p99\":%.3f,"
           "\"p999\":%.3f,\"max\":%.3f},\"max_ack_gap_ms\":%.3f,\"ok\":%" PRIu64 ",\"dup\":%" PRIu64
           ",\"rej\":%" PRIu64 ",\"per_second\":[",
           o->events, o->batch, o->conns, o->window, o->seed, g->cascades, r->bytes, r->seconds,
           events_per_s(o, r), mb_per_s(o, r), r->cpu_s, pct_ms(r, 0.5), pct_ms(r, 0.99),
           pct_ms(r, 0.999), pct_ms(r, 1.0), r->max_gap_ns * 1e-6, r->ok, r->dup, r->rej);
    for (uint32_t i = 0; i < r->nper_s; i++)
        printf("%s%.0f", i ? "," : "", r->per_s[i]);
    printf("]");
    json_conns(cs, o);
    if (o->server)
        json_server(o, sv);
    printf(",\"result\":\"%s\"}\n", r->failed ? "failed" : "ok");
}

/* ---- command line ---- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: ingest-bench [--events N] [--batch B] [--connections C] [--window W] [--seed S]\n"
        "                    [--host H] [--port P | --server PATH [--fsync POLICY]\n"
        "                    [--server-log FILE]] [--prefix P] [--timeout S] [--progress]\n"
        "                    [--trace FILE] [--json]\n"
        "  Generates N share events shaped like real cascades, encodes them as msgpack arrays\n"
        "  of B events (not timed), sends them over C connections (a cascade's events all on\n"
        "  one, parents first) as fast as the server takes them, and reports events/s, MB/s,\n"
        "  ack latency (last byte of a batch written to the first ack covering it) and the\n"
        "  acks' final ok/dup/rej.\n"
        "  --events N       1..%llu, default 1000000\n"
        "  --batch B        events per array, 1..%u, default 1000 (cascaded also refuses a\n"
        "                   value over 4 MiB by default: about 65000 of these events)\n"
        "  --connections C  1..%u, default 2\n"
        "  --window W       at most W unacked batches per connection, default unlimited:\n"
        "                   latency then excludes queueing in the socket buffers\n"
        "  --seed S         default 1 (same seed, same events)\n"
        "  --host H --port P  a running server's ingest port (default 127.0.0.1 7400)\n"
        "  --server PATH    start PATH (cascaded) on 127.0.0.1 with free ports and a scratch\n"
        "                   data dir under $TMPDIR (removed after), report its peak RSS and\n"
        "                   data dir size, stop it with SIGTERM; it must exit 0\n"
        "  --fsync POLICY   always|everysec|no for --server, default everysec\n"
        "  --server-log F   keep the server's stderr in F (default: scanned, then removed)\n"
        "  --prefix P       post ids are P<number>, default \"p\": a fresh prefix lets a rerun\n"
        "                   against the same running server be all new posts, not duplicates\n"
        "  --timeout S      give up when no ack comes for S seconds, default 60\n"
        "  --progress       acked events each second on stderr\n"
        "  --trace FILE     one line per batch: connection, sent and acked times, latency\n"
        "  --json           one line of JSON instead of the report\n"
        "Exit status: 0 when every event was acked ok (and the server exited 0), 1 otherwise,\n"
        "2 on a usage or setup error.\n",
        (unsigned long long)EVENTS_MAX, BATCH_MAX, CONNS_MAX);
}

static int parse_u64(const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (!arg || *arg < '0' || *arg > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_u32(const char *v, uint32_t max, uint32_t *out)
{
    uint64_t x;
    if (parse_u64(v, 1, max, &x))
        return -1;
    *out = (uint32_t)x;
    return 0;
}

static const char **string_opt(struct opts *o, const char *a)
{
    return !strcmp(a, "--host")         ? &o->host
           : !strcmp(a, "--port")       ? &o->port
           : !strcmp(a, "--server")     ? &o->server
           : !strcmp(a, "--fsync")      ? &o->fsync
           : !strcmp(a, "--server-log") ? &o->server_log
           : !strcmp(a, "--prefix")     ? &o->prefix
           : !strcmp(a, "--trace")      ? &o->trace
                                        : NULL;
}

/* Options that take a value: 0 when the value is good, -1 when bad, 1 for an unknown option. */
static int parse_valued(struct opts *o, const char *a, const char *v)
{
    uint32_t timeout;
    if (!strcmp(a, "--events"))
        return parse_u64(v, 1, EVENTS_MAX, &o->events);
    if (!strcmp(a, "--seed"))
        return parse_u64(v, 0, UINT64_MAX, &o->seed);
    if (!strcmp(a, "--batch"))
        return parse_u32(v, BATCH_MAX, &o->batch);
    if (!strcmp(a, "--connections"))
        return parse_u32(v, CONNS_MAX, &o->conns);
    if (!strcmp(a, "--window"))
        return parse_u32(v, UINT32_MAX, &o->window);
    if (!strcmp(a, "--timeout")) {
        if (parse_u32(v, 86400, &timeout))
            return -1;
        o->timeout = timeout;
        return 0;
    }
    const char **dst = string_opt(o, a);
    if (!dst)
        return 1;
    *dst = v;
    return v && *v ? 0 : -1;
}

static int check_opts(const struct opts *o)
{
    if (strcmp(o->fsync, "always") && strcmp(o->fsync, "everysec") && strcmp(o->fsync, "no")) {
        fprintf(stderr, "ingest-bench: --fsync takes always, everysec or no\n");
        return -1;
    }
    if (o->server && (o->port || o->host)) {
        fprintf(stderr, "ingest-bench: --server runs its own server: no --host or --port\n");
        return -1;
    }
    if (strlen(o->prefix) > 64) {
        fprintf(stderr, "ingest-bench: --prefix: at most 64 bytes\n");
        return -1;
    }
    return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.events = 1000000,
                       .seed = 1,
                       .batch = 1000,
                       .conns = 2,
                       .timeout = 60,
                       .fsync = "everysec",
                       .prefix = "p"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        } else if (!strcmp(a, "--progress")) {
            o->progress = 1;
            continue;
        }
        rc = parse_valued(o, a, v);
        if (rc == 0) {
            i++;
            continue;
        }
        if (rc < 0)
            fprintf(stderr, "ingest-bench: bad value for %s: '%s'\n", a, v ? v : "");
        else
            fprintf(stderr, "ingest-bench: unknown argument '%s'\n", a);
        usage(stderr);
        return -1;
    }
    return check_opts(o);
}

/* ---- main ---- */

static void prepare(const struct opts *o, struct gen *g, struct stream *st, struct result *res)
{
    uint64_t t0 = now_ns();
    generate(g, o);
    uint64_t t1 = now_ns();
    encode(g, st, o);
    res->gen_s = secs(t1 - t0);
    res->enc_s = secs(now_ns() - t1);
}

/* Connects, runs, collects; -1 on a setup error (nothing measured). */
static int measure(const struct opts *o, const struct stream *st, struct server *sv,
                   struct conn *cs, struct result *res)
{
    char port[16];
    const char *host = o->host ? o->host : "127.0.0.1";
    snprintf(port, sizeof port, "%s", o->port ? o->port : "7400");
    if (o->server && start_server(o, sv))
        return -1;
    if (o->server)
        snprintf(port, sizeof port, "%u", sv->ingest);
    if (conns_open(cs, st, o, host, port))
        return -1;
    run_load(cs, o, res);
    collect(cs, st, o, res);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct gen g;
    struct result res = {0};
    struct server sv = {.out_fd = -1};
    if (parse_opts(argc, argv, &o))
        return 2;
    signal(SIGPIPE, SIG_IGN);
    struct stream *st = xcalloc(o.conns, sizeof *st);
    struct conn *cs = xcalloc(o.conns, sizeof *cs);
    for (uint32_t i = 0; i < o.conns; i++)
        cs[i].fd = -1;
    prepare(&o, &g, st, &res);
    int rc = measure(&o, st, &sv, cs, &res);
    conns_close(cs, &o);
    if (rc == 0 && o.trace && write_trace(cs, &o))
        res.failed = 1;
    sort_conn_latencies(cs, &o);
    if (o.server)
        finish_server(&sv);
    res.failed |= o.server && sv.status != 0;
    if (rc == 0 && o.json)
        print_json(&o, &g, &res, cs, &sv);
    else if (rc == 0)
        print_human(&o, &g, &res, cs, &sv);
    for (int i = 0; rc && i < sv.nlog; i++) /* why it did not start */
        fprintf(stderr, "  %s\n", sv.log_lines[i]);
    conns_free(cs, &o);
    for (uint32_t i = 0; i < o.conns; i++)
        stream_free(&st[i]);
    gen_free(&g);
    free(st);
    free(res.lat_ns);
    free(res.per_s);
    return rc ? 2 : res.failed ? 1 : 0;
}
