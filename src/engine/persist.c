/* The engine's state as a file (see persist.h). The tables are written as they are in memory
 * (the records of each segmented array, the intern tables' slots, offsets and string arena,
 * the u64map slot arrays, the bodies of the cascades of more than one node with their level
 * arrays, content lists, growth buckets), so that a load is mostly a copy; the top-k heaps are
 * not written but rebuilt from the records (one pass, a small part of the load), and the
 * engine's scratch and dirty lists start empty.
 *
 * Layout (little-endian, this build's struct layouts, which the header pins):
 *   header, 64 bytes: "CASCSNAP", version, header size, byte-order mark, sizes of the four
 *     record structs, section count, CRC32C of the bytes before it;
 *   sections, in a fixed order, each {tag u32, crc32c u32 of the payload, length u64},
 *     the payload, zeros to a multiple of 8; the last one is END (empty).
 * A load checks the header and each section's CRC before it reads the section, then every
 * count against the bytes left and every id against the tables already read, and finally
 * walks every cascade tree once, so that nothing it hands the engine can make a later read
 * loop or index out of bounds. */
#include "engine/persist.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/bigarr.h"
#include "core/crc32c.h"
#include "engine/engine_int.h"

#define MAGIC      "CASCSNAP"
#define HDR_SIZE   64u
#define SEC_HDR    16u
#define BOM        0x01020304u
#define OUT_BUF    (1u << 20)
#define ICHUNK     (1u << INTERN_CHUNK_SHIFT)
#define MAX_IDS    0x7fffffffu
#define UNVISITED  UINT32_MAX
#define MAX_KIND   EVENT_KIND_REPLY
#define MAX_ATYPE  EVENT_ACTOR_PAGE
#define FIRST_CAPS 4u /* smallest array of a content list or growth bucket */
/* The growth section's flags word (0 in older snapshots) */
#define GROWTH_FLAGS_KNOWN 1u /* the flags below are set */
#define GROWTH_FLAG_OLD_TS 2u /* a ts before ENGINE_SECONDS_BELOW_MS was accepted */

enum {
    SEC_USER = 1,
    SEC_ENGINE,
    SEC_POST_IDS,
    SEC_ACTOR_IDS,
    SEC_CONTENTS,
    SEC_LABELS,
    SEC_POSTS,
    SEC_ACTORS,
    SEC_CASCADES,
    SEC_CLISTS,
    SEC_PAIRS,
    SEC_EDGES,
    SEC_GROWTH,
    SEC_END,
    SEC_COUNT = SEC_END,
    /* optional, after growth and before the end, not in the header's count: a cluster node's
     * stream positions (written only when one is set, so that other snapshots are unchanged) */
    SEC_STREAM = SEC_END + 1,
};

static const char *const sec_names[] = {
    "",       "user",     "engine",        "post ids", "actor ids", "contents", "labels", "posts",
    "actors", "cascades", "content lists", "pairs",    "edges",     "growth",   "end",
    "stream positions"};

uint64_t engine_stream_seq(const struct engine *e, uint32_t p)
{
    return p < ENGINE_STREAM_MAX ? e->stream_seq[p] : 0;
}

void engine_stream_set(struct engine *e, uint32_t p, uint64_t seq)
{
    if (p < ENGINE_STREAM_MAX)
        e->stream_seq[p] = seq;
}

/* ================================================================ writing */

struct out {
    int fd;
    uint8_t *buf;
    size_t len;
    uint64_t off; /* file offset of buf[0] + len, relative to the start */
    uint64_t base;
    uint64_t sec_at;
    uint32_t crc;
    int err;
};

static void out_write(struct out *o, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (!o->err && n) {
        ssize_t w = write(o->fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            o->err = w < 0 ? -errno : -EIO;
            return;
        }
        b += w;
        n -= (size_t)w;
    }
}

static void out_flush(struct out *o)
{
    out_write(o, o->buf, o->len);
    o->len = 0;
}

/* Payload bytes: counted in the section's CRC. Large blocks bypass the buffer. */
static void put(struct out *o, const void *p, size_t n)
{
    if (!n)
        return; /* p may be NULL then (an empty table's array) */
    o->crc = crc32c(o->crc, p, n);
    o->off += n;
    if (n >= OUT_BUF / 2) {
        out_flush(o);
        out_write(o, p, n);
        return;
    }
    if (o->len + n > OUT_BUF)
        out_flush(o);
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

static void put32(struct out *o, uint32_t v)
{
    put(o, &v, 4);
}

static void put64(struct out *o, uint64_t v)
{
    put(o, &v, 8);
}

static void sec_begin(struct out *o)
{
    static const uint8_t zero[SEC_HDR];
    out_flush(o);
    o->sec_at = o->off;
    out_write(o, zero, SEC_HDR); /* patched by sec_end */
    o->off += SEC_HDR;
    o->crc = 0;
}

static void sec_end(struct out *o, uint32_t tag)
{
    static const uint8_t zero[8];
    uint64_t len = o->off - o->sec_at - SEC_HDR;
    uint32_t crc = o->crc;
    size_t pad = (8 - (len & 7)) & 7;
    if (pad) {
        memcpy(o->buf + o->len, zero, pad);
        o->len += pad;
        o->off += pad;
    }
    out_flush(o);
    uint8_t h[SEC_HDR];
    memcpy(h, &tag, 4);
    memcpy(h + 4, &crc, 4);
    memcpy(h + 8, &len, 8);
    if (!o->err && pwrite(o->fd, h, SEC_HDR, (off_t)(o->base + o->sec_at)) != SEC_HDR)
        o->err = -EIO;
}

/* Chunks given back (all their strings deleted) are written as an absent flag; the current
 * chunk (cur) only up to what it holds. A deleted id's offset is written as it is: a link of
 * the free list, whose head is saved too, so that a loaded table reuses ids in the same order
 * as the saved one (a restart then gives the ids an uninterrupted run would have). */
static void save_intern(struct out *o, const struct intern *t)
{
    uint32_t used = t->nchunks ? t->chunk_used : ICHUNK;
    put32(o, t->count);
    put32(o, t->mask);
    put32(o, t->refs_cap);
    put32(o, t->nchunks);
    put32(o, used);
    put32(o, t->cur);
    put32(o, t->free_head);
    /* 8 bytes a slot, as tables with full hashes had them (core/intern.h) */
    uint64_t block[512];
    uint32_t *hashes = intern_hashes(t); /* NULL: slower, from the strings */
    for (uint64_t i = 0; i <= t->mask; i += 512) {
        uint64_t left = (uint64_t)t->mask + 1 - i;
        uint32_t n = left < 512 ? (uint32_t)left : 512;
        intern_export_slots(t, hashes, block, (uint32_t)i, n);
        put(o, block, (size_t)n * sizeof(uint64_t));
    }
    free(hashes);
    put(o, t->refs, (size_t)t->count * sizeof(uint32_t));
    for (uint32_t i = 0; i < t->nchunks; i++) {
        put32(o, t->chunks[i] != NULL);
        if (t->chunks[i])
            put(o, t->chunks[i], i == t->cur ? used : ICHUNK);
    }
}

/* The records [0, len) of a segmented array, chunk by chunk. */
static void save_segvec(struct out *o, const struct segvec *v)
{
    put32(o, v->len);
    put32(o, v->elsize);
    uint32_t per = 1u << v->shift;
    for (uint32_t at = 0; at < v->len; at += per) {
        uint32_t n = v->len - at < per ? v->len - at : per;
        put(o, v->chunks[at >> v->shift], (size_t)n * v->elsize);
    }
}

/* A cascade's body, in the order of the cascades that have one (a load numbers them afresh),
 * then its level array if it has one. Field by field, so that no padding or pointer bits go
 * into the file. */
static void save_body(struct out *o, const struct cbody *b)
{
    struct cbody w;
    memset(&w, 0, sizeof(w));
    w.root = b->root;
    w.label_root = b->label_root;
    w.dead = b->dead;
    w.size = b->size;
    w.missing = b->missing;
    w.depth = b->depth;
    w.max_breadth = b->max_breadth;
    w.unique = b->unique;
    w.cap_log2 = b->cap_log2;
    w.s1 = b->s1;
    w.s2 = b->s2;
    w.first_ts = b->first_ts;
    w.last_ts = b->last_ts;
    w.label_ts = b->label_ts;
    if (!b->cap_log2)
        memcpy(w.lv.inl, b->lv.inl, sizeof(w.lv.inl));
    put(o, &w, sizeof(w));
    if (b->cap_log2)
        put(o, b->lv.ext, ((size_t)1 << b->cap_log2) * sizeof(uint32_t));
}

static void save_table(struct out *o, const struct u64map_table *t)
{
    put64(o, t->keys ? t->mask : 0);
    if (t->keys)
        put(o, t->keys, ((size_t)t->mask + 1) * sizeof(uint64_t));
}

static void save_u64map(struct out *o, const struct u64map *m)
{
    put64(o, m->count);
    put64(o, m->old_left);
    put64(o, m->walk_pos);
    put64(o, m->walk_left);
    save_table(o, &m->t);
    save_table(o, &m->old);
}

static int save_bucket(void *ctx, uint32_t slot, int64_t id, const uint32_t *ent, uint32_t n,
                       uint32_t cap, uint32_t last)
{
    struct out *o = ctx;
    put32(o, slot);
    put32(o, n);
    put64(o, (uint64_t)id);
    put32(o, cap);
    put32(o, last);
    put(o, ent, (size_t)n * sizeof(uint32_t));
    return o->err;
}

static void save_sections(struct out *o, const struct engine *e, const void *user,
                          uint32_t user_len)
{
    sec_begin(o);
    put(o, user, user_len);
    sec_end(o, SEC_USER);

    sec_begin(o);
    put32(o, EVENT_OUTCOME_COUNT);
    put32(o, e->stamp);
    put(o, e->outcomes, sizeof(e->outcomes));
    put64(o, e->placeholders);
    put64(o, e->live_cascades);
    put64(o, (uint64_t)e->ret.cut);
    put64(o, e->ret.evicted_cascades);
    put64(o, e->ret.evicted_posts);
    put32(o, e->ret.free_c); /* the free cascade ids, linked through their roots */
    put32(o, e->ret.nfree_c);
    const struct idq *gone[] = {&e->ret.gone_actors[0], &e->ret.gone_actors[1],
                                &e->ret.gone_contents[0], &e->ret.gone_contents[1]};
    for (int i = 0; i < 4; i++) { /* names waiting for analytics copies before they go */
        put32(o, gone[i]->n);
        put(o, gone[i]->ids, (size_t)gone[i]->n * sizeof(uint32_t));
    }
    sec_end(o, SEC_ENGINE);

    const struct intern *interns[] = {&e->post_ids, &e->actor_ids, &e->contents, &e->labels};
    for (int i = 0; i < 4; i++) {
        sec_begin(o);
        save_intern(o, interns[i]);
        sec_end(o, SEC_POST_IDS + (uint32_t)i);
    }

    sec_begin(o);
    save_segvec(o, &e->posts);
    sec_end(o, SEC_POSTS);
    sec_begin(o);
    save_segvec(o, &e->actors);
    sec_end(o, SEC_ACTORS);

    sec_begin(o);
    save_segvec(o, &e->cascades);
    for (uint32_t i = 0; i < e->cascades.len; i++) {
        const struct cascade *c = cascade_at(e, i);
        if (cascade_body_id(c) != NONE)
            save_body(o, cbody_at(e, cascade_body_id(c)));
    }
    sec_end(o, SEC_CASCADES);

    sec_begin(o);
    save_segvec(o, &e->clists);
    for (uint32_t i = 0; i < e->clists.len; i++) {
        const struct content_list *l = clist_at(e, i);
        if (l->cap)
            put(o, l->u.ids, (size_t)l->n * sizeof(uint32_t));
    }
    sec_end(o, SEC_CLISTS);

    sec_begin(o);
    save_u64map(o, &e->pairs);
    sec_end(o, SEC_PAIRS);
    sec_begin(o);
    save_u64map(o, &e->edges);
    sec_end(o, SEC_EDGES);

    sec_begin(o);
    const struct growth *g = &e->growth;
    put32(o, (uint32_t)g->has_newest);
    put32(o, GROWTH_FLAGS_KNOWN | (g->old_ts ? GROWTH_FLAG_OLD_TS : 0));
    put64(o, (uint64_t)g->newest);
    put64(o, (uint64_t)g->lo_bucket);
    growth_each_bucket(g, save_bucket, o);
    put32(o, UINT32_MAX); /* no more buckets */
    put32(o, 0);
    sec_end(o, SEC_GROWTH);

    uint32_t nstream = 0; /* (partition u32, 0 u32, sequence u64) per partition with one */
    for (uint32_t p = 0; p < ENGINE_STREAM_MAX; p++)
        nstream += e->stream_seq[p] != 0;
    if (nstream) {
        sec_begin(o);
        put32(o, nstream);
        put32(o, 0);
        for (uint32_t p = 0; p < ENGINE_STREAM_MAX; p++) {
            if (!e->stream_seq[p])
                continue;
            put32(o, p);
            put32(o, 0);
            put64(o, e->stream_seq[p]);
        }
        sec_end(o, SEC_STREAM);
    }

    sec_begin(o);
    sec_end(o, SEC_END);
}

int engine_save(const struct engine *e, int fd, const void *user, uint32_t user_len,
                uint64_t *bytes)
{
    /* edge weights (kept under retention) are not written: engine_set_retention recounts them */
    if (user_len > ENGINE_PERSIST_USER_MAX || e->pairs.t.vals)
        return -EINVAL;
    off_t base = lseek(fd, 0, SEEK_CUR);
    struct out o = {.fd = fd, .buf = malloc(OUT_BUF + 16), .base = base < 0 ? 0 : (uint64_t)base};
    if (!o.buf)
        return -ENOMEM;
    uint8_t h[HDR_SIZE] = {0};
    uint32_t v[] = {ENGINE_PERSIST_VERSION, HDR_SIZE, BOM};
    uint16_t sizes[] = {sizeof(struct post), sizeof(struct actor), sizeof(struct cascade),
                        sizeof(struct content_list)};
    uint32_t nsec = SEC_COUNT;
    memcpy(h, MAGIC, 8);
    memcpy(h + 8, v, sizeof(v));
    memcpy(h + 20, sizes, sizeof(sizes));
    memcpy(h + 28, &nsec, 4);
    uint32_t crc = crc32c(0, h, HDR_SIZE - 4);
    memcpy(h + HDR_SIZE - 4, &crc, 4);
    out_write(&o, h, HDR_SIZE);
    o.off = HDR_SIZE;
    save_sections(&o, e, user, user_len);
    free(o.buf);
    if (o.err)
        return o.err;
    if (bytes)
        *bytes = o.off;
    return 0;
}

/* ================================================================ reading */

struct in {
    const uint8_t *p;
    size_t len, pos;
    const char *sec; /* the section being read, for messages */
    char *err;
    size_t errlen;
    int bad;
};

static int bad(struct in *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(struct in *r, const char *fmt, ...)
{
    if (!r->bad) {
        int n =
            snprintf(r->err, r->errlen, "%s%s", r->sec ? r->sec : "", r->sec ? " section: " : "");
        va_list ap;
        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < r->errlen)
            vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    r->bad = 1;
    return -EINVAL;
}

/* n bytes of the section, or NULL (the reader is then bad) when fewer are left. */
static const void *take(struct in *r, uint64_t n)
{
    if (r->bad)
        return NULL;
    if (n > r->len - r->pos) {
        bad(r, "truncated (needs %llu more bytes, has %llu)", (unsigned long long)n,
            (unsigned long long)(r->len - r->pos));
        return NULL;
    }
    const void *p = r->p + r->pos;
    r->pos += n;
    return p;
}

static uint32_t get32(struct in *r)
{
    const void *p = take(r, 4);
    uint32_t v = 0;
    if (p)
        memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(struct in *r)
{
    const void *p = take(r, 8);
    uint64_t v = 0;
    if (p)
        memcpy(&v, p, 8);
    return v;
}

/* Whether n items of size each fit in what is left: checked before anything is allocated. */
static int fits(struct in *r, uint64_t n, uint64_t size)
{
    if (r->bad)
        return 0;
    if (size && n > (r->len - r->pos) / size) {
        bad(r, "truncated (%llu items of %llu bytes do not fit)", (unsigned long long)n,
            (unsigned long long)size);
        return 0;
    }
    return 1;
}

/* Opens section tag at the file reader's position: checks its frame and CRC, and points sec at
 * its payload. */
static int open_section(struct in *f, struct in *sec, uint32_t tag)
{
    f->sec = sec_names[tag];
    const uint8_t *h = take(f, SEC_HDR);
    if (!h)
        return -EINVAL;
    uint32_t got, crc;
    uint64_t len;
    memcpy(&got, h, 4);
    memcpy(&crc, h + 4, 4);
    memcpy(&len, h + 8, 8);
    if (got != tag)
        return bad(f, "found a section tagged %u where %u belongs", got, tag);
    uint64_t padded = len + ((8 - (len & 7)) & 7);
    if (len > f->len - f->pos || padded > f->len - f->pos)
        return bad(f, "truncated (%llu bytes declared, %llu in the file)", (unsigned long long)len,
                   (unsigned long long)(f->len - f->pos));
    const uint8_t *p = f->p + f->pos;
    (void)crc; /* checked by check_crcs */
    f->pos += padded;
    *sec =
        (struct in){.p = p, .len = len, .sec = sec_names[tag], .err = f->err, .errlen = f->errlen};
    return 0;
}

static int close_section(struct in *f, struct in *sec)
{
    if (sec->bad) {
        f->bad = 1;
        return -EINVAL;
    }
    if (sec->pos != sec->len)
        return bad(sec, "%llu bytes left over", (unsigned long long)(sec->len - sec->pos));
    return 0;
}

/* Copies n bytes into fresh memory. Large copies have the kernel map the pages in one call
 * first: one page fault at a time costs several times the copy on a virtual machine. */
static void copy_in(void *dst, const void *src, size_t n)
{
#ifdef MADV_POPULATE_WRITE
    if (n >= (256u << 10)) {
        uintptr_t page = 4096, lo = ((uintptr_t)dst + page - 1) & ~(page - 1);
        uintptr_t hi = ((uintptr_t)dst + n) & ~(page - 1);
        if (hi > lo) {
            madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
            madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
        }
    }
#endif
    memcpy(dst, src, n);
}

/* A table's copies, run on two threads when they are large: the cost is mostly the kernel
 * mapping fresh pages, which two cores do side by side. Jobs are at most PIECE bytes, so that
 * the two threads, taking the next job in turn, end together. */
#define PIECE          (16u << 20)
#define PAR_COPY_BYTES (1u << 20)

struct copy_job {
    void *dst;
    const void *src;
    size_t n;
};

struct copies {
    struct copy_job *jobs;
    size_t n, cap, bytes;
    atomic_size_t next;
};

static void copies_add(struct copies *c, void *dst, const void *src, size_t n)
{
    while (n) {
        size_t k = n < PIECE ? n : PIECE;
        if (c->n == c->cap) {
            size_t cap = c->cap ? 2 * c->cap : 64;
            struct copy_job *j = realloc(c->jobs, cap * sizeof(*j));
            if (!j) { /* no list: copy now */
                copy_in(dst, src, n);
                return;
            }
            c->jobs = j;
            c->cap = cap;
        }
        c->jobs[c->n++] = (struct copy_job){dst, src, k};
        c->bytes += k;
        dst = (char *)dst + k;
        src = (const char *)src + k;
        n -= k;
    }
}

static void *copies_work(void *arg)
{
    struct copies *c = arg;
    for (size_t i; (i = atomic_fetch_add(&c->next, 1)) < c->n;)
        copy_in(c->jobs[i].dst, c->jobs[i].src, c->jobs[i].n);
    return NULL;
}

/* Runs the copies and empties the list. */
static void copies_run(struct copies *c)
{
    pthread_t th;
    atomic_store(&c->next, 0);
    int helper =
        c->bytes >= PAR_COPY_BYTES && c->n > 1 && pthread_create(&th, NULL, copies_work, c) == 0;
    copies_work(c);
    if (helper)
        pthread_join(th, NULL);
    free(c->jobs);
    c->jobs = NULL;
    c->n = c->cap = c->bytes = 0;
}

static int is_mask(uint64_t mask, uint64_t min)
{
    return mask + 1 >= min && ((mask + 1) & mask) == 0;
}

/* A u64map's table has a power of two slots or 3/2 of one (core/u64map.c), at least 1024. */
static int is_map_size(uint64_t mask)
{
    uint64_t n = mask + 1;
    return is_mask(mask, 1024) || (n % 3 == 0 && is_mask(n / 3 * 2 - 1, 1024));
}

/* ---- intern tables */

/* The arena's chunks: present[i] and where each present one's bytes lie in the file. */
static int take_chunks(struct in *r, uint32_t nchunks, uint32_t cur, uint32_t used,
                       const uint8_t **at)
{
    for (uint32_t i = 0; i < nchunks; i++) {
        uint32_t present = get32(r);
        if (r->bad)
            return -EINVAL;
        if (present > 1 || (i == cur && !present))
            return bad(r, "chunk %u is malformed", i);
        at[i] = present ? take(r, i == cur ? used : ICHUNK) : NULL;
        if (r->bad)
            return -EINVAL;
    }
    return 0;
}

static int check_string(struct in *r, const uint8_t *const *at, uint32_t nchunks, uint32_t cur,
                        uint32_t used, uint32_t id, uint32_t ref)
{
    uint32_t ci = ref >> INTERN_CHUNK_SHIFT, off = ref & (ICHUNK - 1);
    if (ci >= nchunks || !at[ci])
        return bad(r, "string %u lies outside the arena", id);
    uint32_t lim = ci == cur ? used : ICHUNK;
    if (off >= lim)
        return bad(r, "string %u lies outside the arena", id);
    const uint8_t *s = at[ci] + off;
    uint32_t len = s[0], pre = 1;
    if (len >= 0x80) {
        if (off + 2 > lim)
            return bad(r, "string %u lies outside the arena", id);
        len = (uint32_t)(s[0] & 0x7f) << 8 | s[1];
        pre = 2;
    }
    if ((uint64_t)off + pre + len > lim)
        return bad(r, "string %u lies outside the arena", id);
    return 0;
}

/* Every slot names an id below count, each id at most once. */
static int check_slots(struct in *r, const uint64_t *slots, uint32_t mask, uint32_t count,
                       uint8_t *live)
{
    for (uint64_t i = 0; i <= mask; i++) {
        uint64_t s;
        memcpy(&s, &slots[i], 8);
        if (!s)
            continue;
        uint32_t id = (uint32_t)s - 1;
        if ((uint32_t)s == 0 || (uint32_t)s > count || live[id])
            return bad(r, "slot %llu holds id %u of %u", (unsigned long long)i, id, count);
        live[id] = 1;
    }
    return 0;
}

static int copy_intern(struct intern *t, const uint64_t *slots, uint32_t mask, const uint32_t *refs,
                       uint32_t count, uint32_t refs_cap, const uint8_t *const *at,
                       uint32_t nchunks, uint32_t cur, uint32_t used, uint32_t head)
{
    intern_destroy(t);
    t->slots = bigarr_alloc_random(((size_t)mask + 1) * 4); /* intern frees them as bigarr, */
    t->refs = bigarr_alloc((size_t)refs_cap * 4);
    t->mask = mask; /* by these sizes, also after a failure below */
    t->refs_cap = refs_cap;
    t->chunks = calloc(nchunks ? nchunks : 1, sizeof(char *));
    t->chunk_live = calloc(nchunks ? nchunks : 1, sizeof(uint32_t));
    if (!t->slots || !t->refs || !t->chunks || !t->chunk_live)
        return -ENOMEM;
    for (uint64_t i = 0; i <= mask; i++) { /* check_slots: every id + 1 <= count <= mask */
        uint64_t s;
        memcpy(&s, &slots[i], 8);
        t->slots[i] = intern_import_slot(mask, s);
    }
    struct copies c = {0};
    copies_add(&c, t->refs, refs, (size_t)count * 4);
    t->chunks_cap = nchunks ? nchunks : 1;
    t->nchunks = nchunks;
    for (uint32_t i = 0; i < nchunks; i++) {
        if (!at[i])
            continue;
        if (!(t->chunks[i] = malloc(ICHUNK))) {
            copies_run(&c);
            return -ENOMEM;
        }
        t->nalloc++;
        copies_add(&c, t->chunks[i], at[i], i == cur ? used : ICHUNK);
    }
    copies_run(&c);
    t->count = count;
    t->chunk_used = used;
    t->cur = cur;
    return intern_rebuild_free(t, head);
}

static int load_intern(struct in *r, struct intern *t)
{
    uint32_t count = get32(r), mask = get32(r), refs_cap = get32(r), nchunks = get32(r);
    uint32_t used = get32(r), cur = get32(r), head = get32(r);
    if (r->bad)
        return -EINVAL;
    if (!is_mask(mask, 1024) || count > MAX_IDS || (uint64_t)count * 4 > ((uint64_t)mask + 1) * 3)
        return bad(r, "bad table size (%u ids, %llu slots)", count, (unsigned long long)mask + 1);
    if (refs_cap < count || refs_cap - count > count + 1024 || nchunks > 4096 || used > ICHUNK ||
        (nchunks == 0 && (count || used != ICHUNK || cur)) || (nchunks && cur >= nchunks))
        return bad(r, "bad arena (%u ids, %u offsets, %u chunks, %u bytes used)", count, refs_cap,
                   nchunks, used);
    if (!fits(r, (uint64_t)mask + 1, 8))
        return -EINVAL;
    const uint64_t *slots = take(r, ((uint64_t)mask + 1) * 8);
    if (!fits(r, count, 4))
        return -EINVAL;
    const uint32_t *refs = take(r, (uint64_t)count * 4);
    const uint8_t **at = calloc((size_t)nchunks + 1, sizeof(*at));
    uint8_t *live = calloc((size_t)count + 1, 1);
    int rc = at && live ? 0 : -ENOMEM;
    rc = rc ? rc : r->bad ? -EINVAL : take_chunks(r, nchunks, cur, used, at);
    rc = rc ? rc : check_slots(r, slots, mask, count, live);
    for (uint32_t i = 0; rc == 0 && i < count; i++) {
        uint32_t ref;
        memcpy(&ref, &refs[i], 4);
        if (live[i])
            rc = check_string(r, at, nchunks, cur, used, i, ref);
    }
    free(live);
    if (rc == 0)
        rc = copy_intern(t, slots, mask, refs, count, refs_cap, at, nchunks, cur, used, head);
    if (rc == -EINVAL)
        rc = bad(r, "the free list (from id %u) does not link exactly the deleted ids", head);
    free(at);
    return rc;
}

/* ---- segmented arrays */

static int load_segvec(struct in *r, struct segvec *v)
{
    uint32_t len = get32(r), elsize = get32(r);
    if (r->bad)
        return -EINVAL;
    if (elsize != v->elsize)
        return bad(r, "records of %u bytes, this build's are %u", elsize, v->elsize);
    if (!fits(r, len, elsize))
        return -EINVAL;
    if (segvec_reserve(v, len))
        return -ENOMEM;
    uint32_t per = 1u << v->shift;
    struct copies c = {0};
    for (uint32_t at = 0; at < len; at += per) {
        uint32_t n = len - at < per ? len - at : per;
        copies_add(&c, v->chunks[at >> v->shift], take(r, (uint64_t)n * elsize),
                   (size_t)n * elsize);
    }
    copies_run(&c);
    v->len = len;
    return 0;
}

/* ---- u64 maps */

typedef int (*key_ok_fn)(const struct engine *e, uint64_t key);

static int pair_ok(const struct engine *e, uint64_t key)
{
    return (key >> 32) < e->actors.len && (uint32_t)key < e->cascades.len;
}

static int edge_ok(const struct engine *e, uint64_t key)
{
    return (key >> 32) < e->actors.len && (uint32_t)key < e->actors.len;
}

static int load_table(struct in *r, const struct engine *e, struct u64map_table *t, int optional,
                      key_ok_fn ok, uint64_t *full)
{
    uint64_t mask = get64(r);
    *full = 0;
    if (r->bad)
        return -EINVAL;
    if (optional && mask == 0)
        return 0;
    if (!is_map_size(mask) || mask >= (1ull << 40))
        return bad(r, "bad table size %llu", (unsigned long long)mask + 1);
    if (!fits(r, mask + 1, 8))
        return -EINVAL;
    const uint64_t *keys = take(r, (mask + 1) * 8);
    for (uint64_t i = 0; i <= mask; i++) {
        uint64_t s;
        memcpy(&s, &keys[i], 8);
        if (!s)
            continue;
        if (!ok(e, ~s))
            return bad(r, "key %#llx names a record that does not exist", (unsigned long long)~s);
        ++*full;
    }
    if (*full > mask)
        return bad(r, "a table without an empty slot");
    t->keys = bigarr_alloc_random((mask + 1) * 8); /* u64map frees it as a bigarr */
    if (!t->keys)
        return -ENOMEM;
    struct copies c = {0};
    copies_add(&c, t->keys, keys, (mask + 1) * 8);
    copies_run(&c);
    t->mask = mask;
    return 0;
}

static int load_u64map(struct in *r, const struct engine *e, struct u64map *m, key_ok_fn ok)
{
    uint64_t count = get64(r), old_left = get64(r), walk_pos = get64(r), walk_left = get64(r);
    struct u64map fresh = {0};
    uint64_t nt, no;
    int rc = load_table(r, e, &fresh.t, 0, ok, &nt);
    if (rc == 0)
        rc = load_table(r, e, &fresh.old, 1, ok, &no);
    if (rc == 0 &&
        (count != nt + no || old_left != no || (fresh.old.keys && walk_pos > fresh.old.mask)))
        rc = bad(r, "counts do not match the tables (%llu keys, %llu + %llu found)",
                 (unsigned long long)count, (unsigned long long)nt, (unsigned long long)no);
    if (rc) {
        u64map_destroy(&fresh);
        return rc;
    }
    fresh.count = count;
    fresh.old_left = old_left;
    fresh.walk_pos = walk_pos;
    fresh.walk_left = walk_left;
    u64map_destroy(m);
    *m = fresh;
    return 0;
}

/* ---- records and their cross-references */

static int check_ref(uint32_t id, uint32_t n)
{
    return id == NONE || id < n;
}

/* Per id of t: 1 when it is on the free list (NULL without memory). */
static uint8_t *free_ids(const struct intern *t)
{
    uint8_t *f = calloc((size_t)t->count + 1, 1);
    for (uint32_t x = t->free_head, k = 0; f && x != INTERN_NONE && k < t->count; k++) {
        f[x] = 1;
        x = t->refs[x];
    }
    return f;
}

/* A post whose id was deleted must be an empty record (sub 0, the mark of a free one). */
static int check_post(struct in *r, struct engine *e, uint32_t i, int freed, uint32_t na,
                      uint32_t nc, uint64_t *placeholders)
{
    uint32_t n = e->posts.len;
    const struct post *p = post_at(e, i);
    if (freed || post_is_free(p)) {
        if (!freed || !post_is_free(p) || p->actor != NONE || p->child != NONE ||
            p->sibling != NONE)
            return bad(r, "post %u is half freed", i);
        return 0;
    }
    {
        uint32_t content = p->content & CONTENT_MASK;
        if ((!post_is_root(p) && p->parent >= n) || !check_ref(p->actor, na) ||
            !check_ref(p->child, n) || !check_ref(p->sibling, n) ||
            (content != CONTENT_NONE && content >= nc) || (p->content >> 30) > MAX_KIND ||
            (p->actor == NONE && !post_is_root(p)))
            return bad(r, "post %u refers to records that do not exist", i);
        *placeholders += p->actor == NONE;
    }
    return 0;
}

static int load_posts(struct in *r, struct engine *e)
{
    int rc = load_segvec(r, &e->posts);
    if (rc)
        return rc;
    uint32_t n = e->posts.len, na = e->actor_ids.count, nc = e->contents.count;
    if (n != e->post_ids.count)
        return bad(r, "%u posts for %u post ids", n, e->post_ids.count);
    uint8_t *freed = free_ids(&e->post_ids), *fa = free_ids(&e->actor_ids);
    uint8_t *fc = free_ids(&e->contents);
    rc = freed && fa && fc ? 0 : -ENOMEM;
    uint64_t placeholders = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        rc = check_post(r, e, i, freed[i], na, nc, &placeholders);
        const struct post *p = post_at(e, i);
        uint32_t content = p->content & CONTENT_MASK;
        if (rc == 0 && !freed[i] &&
            ((p->actor != NONE && fa[p->actor]) || (content != CONTENT_NONE && fc[content])))
            rc = bad(r, "post %u names a deleted actor or content", i);
    }
    free(freed);
    free(fa);
    free(fc);
    if (rc)
        return rc;
    if (placeholders != e->placeholders)
        return bad(r, "%llu placeholders, the engine counts %llu", (unsigned long long)placeholders,
                   (unsigned long long)e->placeholders);
    return 0;
}

/* An actor's post count is what retention trusts to delete its name when it reaches 0: it
 * must be the number of posts that name the actor. */
static int check_actor_posts(struct in *r, struct engine *e)
{
    uint32_t *n = calloc((size_t)e->actors.len + 1, sizeof(uint32_t));
    if (!n)
        return -ENOMEM;
    for (uint32_t i = 0; i < e->posts.len; i++) {
        const struct post *p = post_at(e, i);
        if (!post_is_free(p) && p->actor != NONE)
            n[p->actor]++;
    }
    int rc = 0;
    for (uint32_t i = 0; i < e->actors.len && !rc; i++)
        if (n[i] != actor_at(e, i)->posts)
            rc = bad(r, "actor %u counts %u posts, %u name it", i, actor_at(e, i)->posts, n[i]);
    free(n);
    return rc;
}

/* Queued names must be live ids of their table (a deleted one would be deleted twice). */
static int check_gone(struct in *r, const struct idq q[2], const struct intern *t, const char *what)
{
    uint8_t *freed = free_ids(t);
    int rc = freed ? 0 : -ENOMEM;
    for (int k = 0; k < 2 && !rc; k++)
        for (uint32_t i = 0; i < q[k].n && !rc; i++)
            if (q[k].ids[i] >= t->count || freed[q[k].ids[i]])
                rc = bad(r, "the %s %u waiting to be deleted is not a live one", what, q[k].ids[i]);
    free(freed);
    return rc;
}

static int load_actors(struct in *r, struct engine *e)
{
    int rc = load_segvec(r, &e->actors);
    if (rc)
        return rc;
    if (e->actors.len != e->actor_ids.count)
        return bad(r, "%u actors for %u actor ids", e->actors.len, e->actor_ids.count);
    for (uint32_t i = 0; i < e->actors.len; i++) {
        struct actor *a = actor_at(e, i);
        if (a->type > MAX_ATYPE || a->type_explicit > 1)
            return bad(r, "actor %u has type %u", i, a->type);
        a->dirty = 0;
        e->live_actors += a->posts != 0;
    }
    rc = check_actor_posts(r, e);
    return rc ? rc : check_gone(r, e->ret.gone_actors, &e->actor_ids, "actor");
}

/* Whether the saved chain of free cascade ids (through their roots) visits the nfree_c freed
 * ids, each once: 1, 0, or -ENOMEM. */
static int free_chain_ok(const struct engine *e)
{
    uint8_t *seen = calloc((size_t)e->cascades.len + 1, 1);
    if (!seen)
        return -ENOMEM;
    uint32_t x = e->ret.free_c, k = 0;
    for (; x != NONE && k < e->ret.nfree_c; k++) {
        if (x >= e->cascades.len || seen[x] || !cascade_freed(cascade_at(e, x)) ||
            cascade_at(e, x)->rb & CASCADE_BODY)
            break;
        seen[x] = 1;
        x = cascade_free_next(cascade_at(e, x));
    }
    free(seen);
    return x == NONE && k == e->ret.nfree_c;
}

static int load_cascades(struct in *r, struct engine *e)
{
    int rc = load_segvec(r, &e->cascades);
    if (rc)
        return rc;
    uint32_t np = e->posts.len, nl = e->labels.count;
    /* bodies belong to no cascade until each is read, so that engine_free stays safe */
    uint8_t *has = malloc((size_t)e->cascades.len + 1);
    if (!has)
        return -ENOMEM;
    uint32_t nfree = 0, nbodies = 0;
    for (uint32_t i = 0; i < e->cascades.len; i++) {
        struct cascade *c = cascade_at(e, i);
        has[i] = (c->rb & CASCADE_BODY) != 0;
        nbodies += has[i];
        if (has[i])
            c->rb = 0; /* until its body is read */
        c->lab &= ~CASCADE_DIRTY;
        nfree += cascade_freed(c);
    }
    int chain = nfree == e->ret.nfree_c ? free_chain_ok(e) : 0;
    if (chain < 0)
        rc = chain;
    else if (!chain)
        rc = bad(r, "the free cascade list (from %u, %u long) does not link exactly the %u freed",
                 e->ret.free_c, e->ret.nfree_c, nfree);
    if (rc == 0 && (!fits(r, nbodies, sizeof(struct cbody)) || segvec_reserve(&e->cbodies, nbodies)))
        rc = r->bad ? -EINVAL : -ENOMEM;
    uint64_t live = 0;
    for (uint32_t i = 0; i < e->cascades.len && !rc; i++) {
        struct cascade *c = cascade_at(e, i);
        /* a freed id has no body; a joined cascade (it had a placeholder root) has one */
        if (!check_ref(cascade_label(c), nl) || (cascade_freed(c) && has[i]) ||
            (!has[i] && !cascade_freed(c) && c->rb >= np)) {
            rc = bad(r, "cascade %u is malformed", i);
            break;
        }
        if (!has[i]) {
            live += !cascade_freed(c);
            continue;
        }
        struct cbody b;
        const void *src = take(r, sizeof(b)); /* level arrays lie between the bodies */
        if (!src) {
            rc = -EINVAL;
            break;
        }
        memcpy(&b, src, sizeof(b));
        uint8_t lg = b.cap_log2;
        /* an accepted ts is never negative (bad_ts), and the span is what durations subtract:
         * a file that says otherwise would overflow them */
        if (b.root >= np || b.dead > 1 || b.label_root > 1 || lg > 31 || (b.dead && lg) ||
            b.first_ts < 0 || b.last_ts < b.first_ts) {
            rc = bad(r, "cascade %u is malformed", i);
            break;
        }
        live += !b.dead;
        b.cap_log2 = 0;
        if (lg) {
            if (!fits(r, 1ull << lg, 4)) {
                rc = -EINVAL;
                break;
            }
            uint32_t *lv = malloc(((size_t)1 << lg) * 4);
            if (!lv) {
                rc = -ENOMEM;
                break;
            }
            memcpy(lv, take(r, (1ull << lg) * 4), ((size_t)1 << lg) * 4);
            b.lv.ext = lv;
            b.cap_log2 = lg;
        }
        c->rb = CASCADE_BODY | e->cbodies.len;
        *(struct cbody *)segvec_push(&e->cbodies) = b;
    }
    if (rc == 0 && live != e->live_cascades)
        rc = bad(r, "%llu live cascades, the engine counts %llu", (unsigned long long)live,
                 (unsigned long long)e->live_cascades);
    free(has);
    return rc;
}

/* A content whose list is empty has its name deleted by retention: no post may carry it. */
static int check_content_named(struct in *r, struct engine *e)
{
    int rc = 0;
    for (uint32_t i = 0; i < e->posts.len && !rc; i++) {
        const struct post *p = post_at(e, i);
        uint32_t c = p->content & CONTENT_MASK;
        if (!post_is_free(p) && c != CONTENT_NONE && clist_at(e, c)->n == 0)
            rc = bad(r, "post %u carries content %u, whose list is empty", i, c);
    }
    return rc;
}

static int load_clists(struct in *r, struct engine *e)
{
    int rc = load_segvec(r, &e->clists);
    if (rc)
        return rc;
    uint32_t np = e->posts.len;
    uint32_t *caps = malloc(((size_t)e->clists.len + 1) * 4);
    for (uint32_t i = 0; i < e->clists.len; i++) { /* as in load_cascades: nothing owned yet */
        struct content_list *l = clist_at(e, i);
        if (caps)
            caps[i] = l->cap;
        l->cap = 0;
    }
    if (!caps)
        return -ENOMEM;
    if (e->clists.len != e->contents.count) {
        free(caps);
        return bad(r, "%u lists for %u contents", e->clists.len, e->contents.count);
    }
    for (uint32_t i = 0; i < e->clists.len && !rc; i++) {
        struct content_list *l = clist_at(e, i);
        uint32_t cap = caps[i], n = l->n;
        if (!cap) {
            if (n > 1 || (n == 1 && (l->u.one >= np || post_is_free(post_at(e, l->u.one)))))
                rc = bad(r, "content list %u is malformed", i);
            e->live_contents += n != 0;
            continue;
        }
        if (n > cap || cap < FIRST_CAPS || cap > 2 * n + FIRST_CAPS) {
            rc = bad(r, "content list %u holds %u of %u", i, n, cap);
            break;
        }
        if (!fits(r, n, 4)) {
            rc = -EINVAL;
            break;
        }
        uint32_t *ids = malloc((size_t)cap * 4);
        if (!ids) {
            rc = -ENOMEM;
            break;
        }
        memcpy(ids, take(r, (uint64_t)n * 4), (size_t)n * 4);
        l->u.ids = ids;
        l->cap = cap;
        e->clist_heap += (size_t)cap * 4;
        for (uint32_t k = 0; k < n; k++)
            if (ids[k] >= np || post_is_free(post_at(e, ids[k])))
                rc = bad(r, "content list %u names post %u of %u", i, ids[k], np);
        e->live_contents += n != 0;
    }
    free(caps);
    rc = rc ? rc : check_content_named(r, e);
    return rc ? rc : check_gone(r, e->ret.gone_contents, &e->contents, "content");
}

static int load_growth(struct in *r, struct engine *e)
{
    struct growth *g = &e->growth;
    uint32_t has = get32(r);
    uint32_t flags = get32(r); /* 0 in snapshots older than the flags: nothing known */
    int64_t newest = (int64_t)get64(r), lo = (int64_t)get64(r);
    if (r->bad)
        return -EINVAL;
    if (has > 1)
        return bad(r, "malformed header");
    g->has_newest = (int)has;
    g->old_ts = !(flags & GROWTH_FLAGS_KNOWN) || (flags & GROWTH_FLAG_OLD_TS);
    g->newest = newest;
    g->lo_bucket = lo;
    g->floor = e->ret.cut;
    uint32_t np = e->posts.len;
    for (;;) {
        uint32_t slot = get32(r), n = get32(r);
        if (r->bad)
            return -EINVAL;
        if (slot == UINT32_MAX)
            return n == 0 ? 0 : bad(r, "malformed end");
        int64_t id = (int64_t)get64(r);
        uint32_t cap = get32(r), last = get32(r);
        if (!has || cap < n || cap < FIRST_CAPS || cap > 2 * n + FIRST_CAPS || last >= np)
            return bad(r, "bucket at slot %u is malformed", slot);
        if (!fits(r, n, 4))
            return -EINVAL;
        const uint32_t *ent = take(r, (uint64_t)n * 4);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t x;
            memcpy(&x, &ent[i], 4);
            uint32_t prev = 0;
            if (i)
                memcpy(&prev, &ent[i - 1], 4);
            /* a run counts on from the plain id before it */
            if (x & GROWTH_RUN
                    ? i == 0 || (prev & GROWTH_RUN) || (uint64_t)prev + (x & ~GROWTH_RUN) >= np
                    : x >= np)
                return bad(r, "bucket at slot %u names posts that do not exist", slot);
            for (uint32_t k = x & GROWTH_RUN ? prev + 1 : x,
                          end = x & GROWTH_RUN ? prev + (x & ~GROWTH_RUN) : x;
                 k <= end; k++)
                if (post_is_free(post_at(e, k)))
                    return bad(r, "bucket at slot %u names freed post %u", slot, k);
        }
        int rc = growth_restore_bucket(g, slot, id, ent, n, cap, last);
        if (rc)
            return rc == -ENOMEM ? rc : bad(r, "bucket at slot %u is misplaced", slot);
    }
}

/* ---- the trees: every post in exactly one tree below a live cascade's root, with the
 * cascade's and each node's counts what the tree says. */

struct walk {
    uint32_t *acc;   /* per post: UNVISITED, else the sum of its children's subtree sizes */
    uint32_t *level; /* per depth of the tree being walked: nodes seen */
    uint32_t cap;
};

static int visit(struct in *r, struct walk *w, const struct engine *e, uint32_t x, uint32_t parent,
                 uint32_t depth)
{
    if (x >= e->posts.len || w->acc[x] != UNVISITED || post_at(e, x)->parent != parent)
        return bad(r, "post %u is reached twice or hangs below the wrong parent", x);
    w->acc[x] = 0;
    if (depth >= w->cap) {
        uint32_t cap = w->cap * 2;
        uint32_t *l = realloc(w->level, (size_t)cap * 4);
        if (!l)
            return -ENOMEM;
        memset(l + w->cap, 0, (size_t)(cap - w->cap) * 4);
        w->level = l;
        w->cap = cap;
    }
    w->level[depth]++;
    return 0;
}

static int walk_tree(struct in *r, struct walk *w, struct engine *e, uint32_t root, uint32_t cid,
                     uint64_t *seen)
{
    struct cascade *cr = cascade_at(e, cid);
    if (cascade_dead(e, cr) || cascade_root(e, cr) != root)
        return bad(r, "post %u roots cascade %u, which is not its", root, cid);
    uint32_t body = cascade_body_id(cr);
    struct cbody tmp, *c = body != NONE ? cbody_at(e, body) : &tmp;
    if (body == NONE)
        cascade_fig(e, cr, &tmp); /* a single node: what the tree must be */
    uint32_t depth = 0, maxd = 0, x = root;
    uint64_t nodes = 0, missing = 0;
    int rc = visit(r, w, e, root, ROOT_FLAG | cid, 0);
    while (rc == 0) {
        nodes++;
        missing += post_at(e, x)->actor == NONE;
        const struct post *p = post_at(e, x);
        if (p->child != NONE) {
            rc = visit(r, w, e, p->child, x, ++depth);
            x = p->child;
            maxd = depth > maxd ? depth : maxd;
            continue;
        }
        for (;;) { /* leaving x: its subtree is complete */
            p = post_at(e, x);
            if (p->sub != w->acc[x] + 1)
                return bad(r, "post %u counts %u below it, the tree %u", x, p->sub, w->acc[x] + 1);
            if (x == root)
                goto done;
            w->acc[p->parent] += p->sub;
            if (p->sibling != NONE) {
                rc = visit(r, w, e, p->sibling, p->parent, depth);
                x = p->sibling;
                break;
            }
            x = p->parent;
            depth--;
        }
    }
    return rc;
done:
    if (nodes - missing != c->size || missing != c->missing || maxd != c->depth ||
        maxd > (c->cap_log2 ? 1u << c->cap_log2 : 2))
        return bad(r, "cascade %u's counts do not match its tree", cid);
    for (uint32_t d = 1; d <= maxd; d++)
        if (*cascade_level(c, d) != w->level[d])
            return bad(r, "cascade %u's breadth at depth %u does not match its tree", cid, d);
    memset(w->level, 0, ((size_t)maxd + 1) * 4);
    *seen += nodes;
    return 0;
}

static int check_trees(struct in *r, struct engine *e)
{
    uint32_t n = e->posts.len;
    struct walk w = {malloc(((size_t)n + 1) * 4), calloc(64, 4), 64};
    int rc = w.acc && w.level ? 0 : -ENOMEM;
    if (rc == 0)
        memset(w.acc, 0xff, (size_t)n * 4);
    uint64_t seen = 0, live = 0;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        const struct post *p = post_at(e, i);
        if (!post_is_root(p) || post_is_free(p))
            continue;
        uint32_t cid = p->parent & ~ROOT_FLAG;
        if (cid >= e->cascades.len) {
            rc = bad(r, "post %u roots cascade %u of %u", i, cid, e->cascades.len);
            break;
        }
        live++;
        rc = walk_tree(r, &w, e, i, cid, &seen);
    }
    if (rc == 0 && (seen != n - e->post_ids.nfree || live != e->live_cascades))
        rc = bad(r, "%llu of %u posts lie in %llu trees; the engine counts %llu cascades",
                 (unsigned long long)seen, n, (unsigned long long)live,
                 (unsigned long long)e->live_cascades);
    free(w.acc);
    free(w.level);
    return rc;
}

/* The top-k indexes, from every live record: what engine_read's rebuild does per metric. */
static void rebuild_topk(struct engine *e)
{
    for (int m = 0; m < ENGINE_CASCADE_METRICS; m++)
        topk_reset(&e->ctop[m]);
    for (int m = 0; m < ENGINE_ACTOR_METRICS; m++)
        topk_reset(&e->atop[m]);
    for (uint32_t i = 0; i < e->cascades.len; i++) {
        const struct cascade *c = cascade_at(e, i);
        struct cbody tmp;
        const struct cbody *b = cascade_fig(e, c, &tmp);
        for (int m = 0; !cascade_dead(e, c) && m < ENGINE_CASCADE_METRICS; m++)
            topk_offer(&e->ctop[m], i, engine_cascade_key(b, m));
    }
    for (uint32_t i = 0; i < e->actors.len; i++)
        for (int m = 0; actor_at(e, i)->posts && m < ENGINE_ACTOR_METRICS; m++)
            topk_offer(&e->atop[m], i, engine_actor_key(actor_at(e, i), m));
}

static int load_header(struct in *f)
{
    const uint8_t *h = take(f, HDR_SIZE);
    if (!h)
        return -EINVAL;
    uint32_t v[3], nsec, crc;
    uint16_t sizes[4], want[] = {sizeof(struct post), sizeof(struct actor), sizeof(struct cascade),
                                 sizeof(struct content_list)};
    memcpy(v, h + 8, sizeof(v));
    memcpy(sizes, h + 20, sizeof(sizes));
    memcpy(&nsec, h + 28, 4);
    memcpy(&crc, h + HDR_SIZE - 4, 4);
    if (memcmp(h, MAGIC, 8) != 0)
        return bad(f, "not a cascaded snapshot (bad magic)");
    if (crc32c(0, h, HDR_SIZE - 4) != crc)
        return bad(f, "header CRC mismatch (corrupt)");
    /* another build's file is not damaged: it says so, so that callers leave it be */
    if (v[0] != ENGINE_PERSIST_VERSION) {
        bad(f, "format version %u; this build reads %u", v[0], ENGINE_PERSIST_VERSION);
        return -EPROTONOSUPPORT;
    }
    if (v[1] != HDR_SIZE || v[2] != BOM || memcmp(sizes, want, sizeof(want)) != 0 ||
        nsec != SEC_COUNT) {
        bad(f, "written by a build with another record layout or byte order");
        return -EPROTONOSUPPORT;
    }
    return 0;
}

/* The sections after the records: pairs, edges, growth, the end. */
static int load_tail(struct in *f, struct engine *e)
{
    struct in s;
    int rc;
    if ((rc = open_section(f, &s, SEC_PAIRS)))
        return rc;
    if ((rc = load_u64map(&s, e, &e->pairs, pair_ok)) || (rc = close_section(f, &s)))
        return rc;
    if ((rc = open_section(f, &s, SEC_EDGES)))
        return rc;
    if ((rc = load_u64map(&s, e, &e->edges, edge_ok)) || (rc = close_section(f, &s)))
        return rc;
    if ((rc = open_section(f, &s, SEC_GROWTH)))
        return rc;
    if ((rc = load_growth(&s, e)) || (rc = close_section(f, &s)))
        return rc;
    uint32_t next = 0;
    if (f->len - f->pos >= SEC_HDR)
        memcpy(&next, f->p + f->pos, 4);
    if (next == SEC_STREAM) { /* a cluster node's: optional */
        if ((rc = open_section(f, &s, SEC_STREAM)))
            return rc;
        uint32_t n = get32(&s);
        get32(&s);
        if (!s.bad && (n > ENGINE_STREAM_MAX || !fits(&s, n, 16)))
            return bad(&s, "%u positions", n);
        for (uint32_t i = 0; i < n && !s.bad; i++) {
            uint32_t p = get32(&s);
            get32(&s);
            uint64_t seq = get64(&s);
            if (p >= ENGINE_STREAM_MAX)
                return bad(&s, "partition %u", p);
            e->stream_seq[p] = seq;
        }
        if ((rc = close_section(f, &s)))
            return rc;
    }
    if ((rc = open_section(f, &s, SEC_END)) || (rc = close_section(f, &s)))
        return rc;
    f->sec = NULL;
    if (f->pos != f->len)
        return bad(f, "%zu bytes after the end", f->len - f->pos);
    return 0;
}

/* The tree walk of a large engine runs on a thread of its own while the tables after the
 * records load: it reads posts and cascades only, which nothing after them changes. */
#define TREE_THREAD_POSTS (1u << 16)

struct trees_job {
    struct in r; /* for its message: err is the job's own */
    struct engine *e;
    int rc;
    char err[256];
};

static void *trees_main(void *arg)
{
    struct trees_job *j = arg;
    j->rc = check_trees(&j->r, j->e);
    return NULL;
}

static int load_rest(struct in *f, struct engine *e)
{
    struct trees_job j = {.e = e};
    j.r = (struct in){.err = j.err, .errlen = sizeof(j.err)};
    pthread_t th;
    int threaded =
        e->posts.len >= TREE_THREAD_POSTS && pthread_create(&th, NULL, trees_main, &j) == 0;
    int rc = load_tail(f, e);
    if (!threaded) {
        rc = rc ? rc : check_trees(f, e);
    } else {
        pthread_join(th, NULL);
        if (rc == 0 && j.rc) {
            if (j.r.bad)
                bad(f, "%s", j.err);
            rc = j.rc;
        }
    }
    if (rc == 0) {
        rebuild_topk(e); /* the label index is built by the first labels call (labels.c) */
    }
    return rc;
}

/* The queues of names to delete after analytics copies, as saved: checked against the tables
 * once they are loaded (check_gone). */
static int load_gone(struct in *r, struct engine *e)
{
    struct idq *gone[] = {&e->ret.gone_actors[0], &e->ret.gone_actors[1], &e->ret.gone_contents[0],
                          &e->ret.gone_contents[1]};
    for (int i = 0; i < 4; i++) {
        uint32_t n = get32(r);
        if (r->bad || !fits(r, n, 4))
            return -EINVAL;
        if (n == 0)
            continue;
        if (!(gone[i]->ids = malloc((size_t)n * 4)))
            return -ENOMEM;
        memcpy(gone[i]->ids, take(r, (uint64_t)n * 4), (size_t)n * 4);
        gone[i]->n = gone[i]->cap = n;
    }
    return 0;
}

/* The outcome counts, as saved by this build or an older one. Outcomes are only ever added as new
 * rejection reasons just before EVENT_ERR_NOMEM, the last, so an older set is this one's prefix
 * plus its nomem count (10 outcomes before bad_ts came). */
static int load_outcomes(struct in *s, struct engine *e)
{
    uint32_t n = get32(s);
    if (!s->bad && (n < EVENT_ERR_NOMEM || n > EVENT_OUTCOME_COUNT))
        return bad(s, "%u event outcomes; this build reads %u to %u", n, (unsigned)EVENT_ERR_NOMEM,
                   (unsigned)EVENT_OUTCOME_COUNT);
    e->stamp = get32(s);
    const unsigned char *oc = take(s, (uint64_t)n * sizeof(uint64_t));
    if (!oc)
        return -EINVAL;
    memset(e->outcomes, 0, sizeof(e->outcomes));
    memcpy(e->outcomes, oc, (size_t)(n - 1) * sizeof(uint64_t));
    memcpy(&e->outcomes[EVENT_ERR_NOMEM], oc + (size_t)(n - 1) * sizeof(uint64_t), sizeof(uint64_t));
    return 0;
}

static int load_body(struct in *f, struct engine *e, void *user, uint32_t *user_len)
{
    struct in s;
    int rc = open_section(f, &s, SEC_USER);
    if (rc)
        return rc;
    if (s.len > ENGINE_PERSIST_USER_MAX)
        return bad(&s, "%zu bytes, at most %u", s.len, ENGINE_PERSIST_USER_MAX);
    memcpy(user, take(&s, s.len), s.len);
    *user_len = (uint32_t)s.len;

    if ((rc = open_section(f, &s, SEC_ENGINE)))
        return rc;
    if ((rc = load_outcomes(&s, e)))
        return rc;
    e->placeholders = get64(&s);
    e->live_cascades = get64(&s);
    e->ret.cut = (int64_t)get64(&s);
    e->ret.evicted_cascades = get64(&s);
    e->ret.evicted_posts = get64(&s);
    e->ret.free_c = get32(&s); /* checked against the records in load_cascades */
    e->ret.nfree_c = get32(&s);
    if ((rc = load_gone(&s, e)) || (rc = close_section(f, &s)))
        return rc;

    struct intern *interns[] = {&e->post_ids, &e->actor_ids, &e->contents, &e->labels};
    for (uint32_t i = 0; i < 4; i++) {
        if ((rc = open_section(f, &s, SEC_POST_IDS + i)))
            return rc;
        if ((rc = load_intern(&s, interns[i])) || (rc = close_section(f, &s)))
            return rc;
    }
    /* posts refer to actors and contents (counted by their intern tables), cascades to posts */
    static int (*const loaders[])(struct in *, struct engine *) = {load_posts, load_actors,
                                                                   load_cascades, load_clists};
    for (uint32_t i = 0; i < 4; i++) {
        if ((rc = open_section(f, &s, SEC_POSTS + i)))
            return rc;
        if ((rc = loaders[i](&s, e)) || (rc = close_section(f, &s)))
            return rc;
    }
    return 0;
}

/* The sections' CRCs. Nothing the load does depends on them for its safety (every value is
 * checked anyway), so a large file has them checked on a thread of its own while it loads:
 * on two cores that hides most of their cost. Frames the loader will find malformed end the
 * walk; the loader says why. */
struct crcs {
    const uint8_t *p;
    size_t len;
    uint32_t bad_tag; /* 0: every section read matches */
};

static void *check_crcs(void *arg)
{
    struct crcs *c = arg;
    size_t pos = HDR_SIZE;
    while (c->len - pos >= SEC_HDR) {
        uint32_t tag, crc;
        uint64_t len;
        memcpy(&tag, c->p + pos, 4);
        memcpy(&crc, c->p + pos + 4, 4);
        memcpy(&len, c->p + pos + 8, 8);
        if (len > c->len - pos - SEC_HDR)
            break;
        if (crc32c(0, c->p + pos + SEC_HDR, len) != crc) {
            c->bad_tag = tag >= 1 && tag <= SEC_STREAM ? tag : SEC_END;
            break;
        }
        uint64_t next = SEC_HDR + len + ((8 - (len & 7)) & 7);
        if (tag == SEC_END || next > c->len - pos)
            break;
        pos += next;
    }
    return NULL;
}

#define CRC_THREAD_BYTES (8u << 20) /* smaller files are checked before the load, inline */

int engine_load_mem(const void *buf, size_t len, struct engine **out, void *user,
                    uint32_t *user_len, char *err, size_t errlen)
{
    char dummy[1];
    struct in f = {.p = buf, .len = len, .err = err ? err : dummy, .errlen = err ? errlen : 1};
    *out = NULL;
    int rc = load_header(&f);
    if (rc)
        return rc;
    struct crcs c = {.p = buf, .len = len};
    pthread_t th;
    memset(&th, 0, sizeof(th));
#ifdef PERSIST_FUZZ_NO_CRC /* the fuzz target's build: mutations reach the checks behind */
    const int crcs = 0;
#else
    const int crcs = 1;
#endif
    int threaded =
        crcs && len >= CRC_THREAD_BYTES && pthread_create(&th, NULL, check_crcs, &c) == 0;
    if (crcs && !threaded)
        check_crcs(&c);
    struct engine *e = NULL;
    /* the CRC thread writes bad_tag: read it only once it is joined (ThreadSanitizer) */
    rc = !threaded && c.bad_tag ? -EINVAL : engine_new(&e);
    if (rc == 0)
        rc = load_body(&f, e, user, user_len);
    if (rc == 0)
        rc = load_rest(&f, e);
    if (threaded)
        pthread_join(th, NULL);
    if (c.bad_tag) { /* the truest reason, whatever else the load found */
        snprintf(f.err, f.errlen, "%s section: CRC mismatch (corrupt)", sec_names[c.bad_tag]);
        rc = -EINVAL;
    }
    if (rc) {
        if (rc == -ENOMEM && !f.bad)
            snprintf(f.err, f.errlen, "out of memory loading the snapshot");
        engine_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

int engine_load(int fd, struct engine **out, void *user, uint32_t *user_len, char *err,
                size_t errlen)
{
    struct stat st;
    *out = NULL;
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot stat: %s", strerror(errno));
        return -errno;
    }
    if (st.st_size == 0) {
        snprintf(err, errlen, "empty file");
        return -EINVAL;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "cannot map: %s", strerror(errno));
        return -errno;
    }
    madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
    int rc = engine_load_mem(p, (size_t)st.st_size, out, user, user_len, err, errlen);
    munmap(p, (size_t)st.st_size);
    return rc;
}
