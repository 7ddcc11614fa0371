/* The workload: share events shaped like real cascades, generated for a seed and msgpack-encoded
 * into per-connection batches before any clock runs, so that sending costs the client only
 * writev-sized copies and the figures measure the server. A cascade's events all go over one
 * connection, parents first, so that no reshare arrives before its parent. */

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cascade_bench.h"

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
#define POST_BITS 28

static const char *const label_names[] = {"false", "true", "unverified"};

struct rng {
    uint64_t s;
};

struct zipf {
    double n, a, inv; /* inverse CDF of a continuous power law over [1, n + 1) */
};

/* Indexed by post number (a post's number is its cascade's first number plus its rank in the
 * cascade, so a cascade's posts are contiguous). */
struct gen {
    uint64_t n;
    uint64_t *order;  /* firehose positions, sorted: the order events are sent in */
    uint32_t *parent; /* [post]: the post it reshares; itself for a root */
    uint8_t *conn;    /* [post]: the connection its cascade goes over */
    uint32_t cascades, largest;
};

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
                         uint32_t size, const struct load_spec *sp)
{
    uint64_t span = g->n * MS_PER_EVENT;
    double life = 60000.0 * pow(size, 0.6) * (0.5 + u01(r));
    life = life < span / 2 ? life : (double)(span / 2);
    uint64_t start = (uint64_t)(u01(r) * ((double)span - life));
    uint8_t conn = (uint8_t)(mix64(first ^ sp->seed) % sp->conns); /* keeps parents first */
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
static int radix_sort(uint64_t *a, uint64_t n)
{
    uint64_t *tmp = malloc((n ? n : 1) * sizeof *tmp), *count = malloc(65536 * sizeof *count);
    if (!tmp || !count) {
        free(tmp);
        free(count);
        return -ENOMEM;
    }
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
    return 0;
}

static void gen_free(struct gen *g)
{
    free(g->order);
    free(g->parent);
    free(g->conn);
}

static int generate(struct gen *g, const struct load_spec *sp)
{
    struct rng r = {sp->seed};
    uint8_t *depth = calloc(sp->events, 1);
    uint32_t cap = sp->events / 20 < SIZE_CAP ? (uint32_t)(sp->events / 20) : SIZE_CAP;
    *g = (struct gen){.n = sp->events};
    g->order = calloc(g->n, sizeof *g->order);
    g->parent = calloc(g->n, sizeof *g->parent);
    g->conn = calloc(g->n, 1);
    if (!depth || !g->order || !g->parent || !g->conn) {
        free(depth);
        gen_free(g);
        return -ENOMEM;
    }
    for (uint64_t first = 0; first < g->n;) {
        uint32_t size = draw_size(&r, cap ? cap : 1);
        size = size < g->n - first ? size : (uint32_t)(g->n - first);
        plan_cascade(g, &r, depth, first, size, sp);
        g->cascades++;
        g->largest = size > g->largest ? size : g->largest;
        first += size;
    }
    free(depth);
    int rc = radix_sort(g->order, g->n);
    if (rc)
        gen_free(g);
    return rc;
}

/* ---- encoding ---- */

/* msgpack-c's packers ignore a failed write; the stream remembers it instead, and the encoder
 * checks once at the end (an out-of-memory workload is a setup error, not a result). */
struct stream_ext {
    struct stream s;
    int oom;
};

static int write_out(void *data, const char *buf, size_t len)
{
    struct stream_ext *x = data;
    if (msgpack_sbuffer_write(&x->s.out, buf, len))
        x->oom = 1;
    return 0;
}

static int write_body(void *data, const char *buf, size_t len)
{
    struct stream_ext *x = data;
    if (msgpack_sbuffer_write(&x->s.body, buf, len))
        x->oom = 1;
    return 0;
}

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

struct encoder {
    const struct gen *g;
    const struct load_spec *sp;
    struct rng r;
    struct zipf actors, contents;
    uint32_t *actor_of;
};

/* One event map. Roots carry the content (the rest inherit it, DESIGN §2) and sometimes a label;
 * reshares are shares by default, a few quotes and replies; pages say so on every post. */
static void pack_event(msgpack_packer *pk, struct encoder *e, uint64_t post, uint64_t t)
{
    uint32_t actor = zipf_draw(&e->actors, &e->r), parent = e->g->parent[post];
    uint64_t h = mix64(post ^ (e->sp->seed << 1));
    int root = parent == post, page = mix64(actor) % PAGE_ONE_IN == 0;
    int label = root && u01(&e->r) < LABEL_P, kind = root ? 0 : (int)(h % 100);
    int quote = kind && kind < 8, reply = kind >= 8 && kind < 15;
    if (e->actor_of)
        e->actor_of[post] = actor;
    msgpack_pack_map(pk, 3 + (size_t)(page + (root ? 1 + label : 1 + (quote || reply))));
    pack_lit(pk, "post");
    pack_id(pk, e->sp->prefix, post);
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
        pack_id(pk, e->sp->prefix, parent);
        if (quote || reply) {
            pack_lit(pk, "kind");
            pack_lit(pk, quote ? "quote" : "reply");
        }
        return;
    }
    pack_lit(pk, "content");
    pack_id(pk, "https://news.example/a/", zipf_draw(&e->contents, &e->r));
    if (label) {
        pack_lit(pk, "label");
        pack_lit(pk, label_names[h % 3]);
    }
}

static void stream_init(struct stream_ext *x)
{
    msgpack_sbuffer_init(&x->s.out);
    msgpack_sbuffer_init(&x->s.body);
    msgpack_packer_init(&x->s.out_pk, x, write_out);
    msgpack_packer_init(&x->s.body_pk, x, write_body);
}

/* Closes the current batch: its array header, then its events, then its mark. */
static void stream_flush(struct stream_ext *x)
{
    struct stream *s = &x->s;
    if (!s->in_body)
        return;
    msgpack_pack_array(&s->out_pk, s->in_body);
    write_out(x, s->body.data, s->body.size);
    msgpack_sbuffer_clear(&s->body);
    if (s->nmarks == s->cap) {
        uint64_t cap = s->cap ? 2 * s->cap : 1024;
        struct mark *m = realloc(s->marks, cap * sizeof *m);
        if (!m) {
            x->oom = 1;
            return;
        }
        s->marks = m, s->cap = cap;
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
static int encode(const struct gen *g, struct stream_ext *xs, const struct load_spec *sp,
                  uint32_t *actor_of)
{
    struct encoder e = {.g = g,
                        .sp = sp,
                        .r = {sp->seed ^ 0x5eed},
                        .actors = zipf_init((uint64_t)(g->n * ACTORS_PER_EVENT) + 1),
                        .contents = zipf_init(g->cascades / 2 + 1),
                        .actor_of = actor_of};
    int oom = 0;
    for (uint32_t c = 0; c < sp->conns; c++)
        stream_init(&xs[c]);
    for (uint64_t i = 0; i < g->n; i++) {
        uint64_t post = g->order[i] & ((1ull << POST_BITS) - 1), t = g->order[i] >> POST_BITS;
        struct stream_ext *x = &xs[g->conn[post]];
        pack_event(&x->s.body_pk, &e, post, t);
        if (++x->s.in_body == sp->batch)
            stream_flush(x);
    }
    for (uint32_t c = 0; c < sp->conns; c++) {
        stream_flush(&xs[c]);
        oom |= xs[c].oom;
    }
    return oom ? -ENOMEM : 0;
}

int workload_build(struct workload *w, const struct load_spec *spec, int keep_actors)
{
    struct gen g;
    struct stream_ext *xs = calloc(spec->conns, sizeof *xs);
    *w = (struct workload){.spec = *spec};
    w->st = calloc(spec->conns, sizeof *w->st);
    w->actor = keep_actors ? calloc(spec->events, sizeof *w->actor) : NULL;
    if (!xs || !w->st || (keep_actors && !w->actor)) {
        free(xs);
        workload_free(w);
        return -ENOMEM;
    }
    uint64_t t0 = now_ns();
    int rc = generate(&g, spec);
    uint64_t t1 = now_ns();
    if (rc == 0) {
        rc = encode(&g, xs, spec, w->actor);
        w->cascades = g.cascades, w->largest = g.largest;
        gen_free(&g);
    }
    w->gen_s = secs(t1 - t0);
    w->enc_s = secs(now_ns() - t1);
    for (uint32_t c = 0; c < spec->conns; c++) {
        w->st[c] = xs[c].s; /* the packers point into xs: they are not used after this */
        w->bytes += xs[c].s.out.size;
    }
    free(xs);
    if (rc)
        workload_free(w);
    return rc;
}

void workload_free(struct workload *w)
{
    for (uint32_t c = 0; w->st && c < w->spec.conns; c++)
        stream_free(&w->st[c]);
    free(w->st);
    free(w->actor);
    w->st = NULL;
    w->actor = NULL;
}
