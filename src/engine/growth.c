/* Recent activity for engine_top_growth: every observed post is filed, as it is applied, under
 * the second of event time its ts falls in. A query reads only the seconds inside its window:
 * whole seconds through per-cascade counts (built the first time a query needs them, topped up
 * from the posts filed since), the second at the window's lower edge post by post, at ms
 * resolution. Nothing older than ENGINE_GROWTH_HORIZON_MS before the newest event is kept.
 *
 * The apply path only appends a post id to its second's array (consecutive ids, the common case
 * of events applied in ts order, take one "run" entry for the lot); counts are keyed by the
 * cascade a post was in when counted, and a cascade that has since joined another is resolved
 * to its successor at query time, so joins cost the index nothing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/topk.h"
#include "core/u64map.h"
#include "engine/engine_int.h"

#define BUCKET_MS  1000
#define PAGE_SHIFT 10 /* 1024 seconds a page */
#define PAGE_SLOTS (1u << PAGE_SHIFT)
#define RING_SHIFT 20 /* 2^20 seconds > the horizon's 604 801 buckets: slots never collide */
#define RING_MASK  ((1u << RING_SHIFT) - 1)
#define PAGES      (1u << (RING_SHIFT - PAGE_SHIFT))
#define FIRST_CAP  4

/* One second. ent[] holds post ids; an entry GROWTH_RUN | k stands for the k ids that follow the
 * (plain) entry before it. Posts before the cursor (entries before cur_ent, and cur_off posts
 * of entry cur_ent) are summed up in counts[], sorted by cascade: cascade << 32 | posts. */
struct growth_bucket {
    int64_t id; /* the second: floor(ts / 1000) */
    uint32_t *ent;
    uint64_t *counts;
    uint32_t n, cap, last; /* last: the last post id appended */
    uint32_t cur_ent, cur_off, ncounts;
};

struct growth_page {
    uint32_t used; /* buckets with an array */
    struct growth_bucket b[PAGE_SLOTS];
};

static int64_t sat_sub(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_sub_overflow(a, b, &r) ? INT64_MIN : r;
}

static int64_t bucket_of(int64_t ts)
{
    return ts / BUCKET_MS - (ts % BUCKET_MS < 0); /* floor, for times before 1970 too */
}

static uint32_t ring_slot(int64_t bucket)
{
    return (uint32_t)((uint64_t)bucket & RING_MASK);
}

static struct growth_page **page_ref(struct growth *g, int64_t bucket)
{
    return &g->pages[ring_slot(bucket) >> PAGE_SHIFT];
}

/* The bucket of second b, or NULL when nothing is filed under it. */
static struct growth_bucket *find_bucket(const struct growth *g, int64_t b)
{
    struct growth_page *pg = g->pages[ring_slot(b) >> PAGE_SHIFT];
    if (!pg)
        return NULL;
    struct growth_bucket *bk = &pg->b[ring_slot(b) & (PAGE_SLOTS - 1)];
    return bk->cap && bk->id == b ? bk : NULL;
}

int growth_init(struct growth *g)
{
    memset(g, 0, sizeof(*g));
    g->floor = INT64_MIN;
    g->pages = calloc(PAGES, sizeof(*g->pages));
    if (!g->pages)
        return -ENOMEM;
    g->bytes = PAGES * sizeof(*g->pages);
    return 0;
}

static void drop_bucket(struct growth *g, struct growth_page **pg, struct growth_bucket *bk)
{
    g->bytes -= bk->cap * sizeof(uint32_t) + bk->ncounts * sizeof(uint64_t);
    free(bk->ent);
    free(bk->counts);
    memset(bk, 0, sizeof(*bk));
    if (--(*pg)->used == 0) {
        free(*pg);
        *pg = NULL;
        g->bytes -= sizeof(struct growth_page);
    }
}

static void drop_page(struct growth *g, struct growth_page **pg)
{
    for (uint32_t i = 0; *pg && i < PAGE_SLOTS; i++)
        if ((*pg)->b[i].cap)
            drop_bucket(g, pg, &(*pg)->b[i]);
}

void growth_destroy(struct growth *g)
{
    if (!g->pages)
        return;
    for (uint32_t i = 0; i < PAGES; i++)
        drop_page(g, &g->pages[i]);
    free(g->pages);
    free(g->spare_page);
    free(g->spare_ent);
    memset(g, 0, sizeof(*g));
}

/* Whether a post at ts would be filed: not when it is older than the horizon allows. */
static int filed(const struct growth *g, int64_t ts)
{
    return ts >= g->floor && (!g->has_newest || ts >= sat_sub(g->newest, ENGINE_GROWTH_HORIZON_MS));
}

int growth_reserve(struct growth *g, int64_t ts)
{
    if (!filed(g, ts))
        return 0;
    int64_t b = bucket_of(ts);
    struct growth_page *pg = *page_ref(g, b);
    struct growth_bucket *bk = pg ? &pg->b[ring_slot(b) & (PAGE_SLOTS - 1)] : NULL;
    if (bk && bk->cap && bk->id == b) {
        if (bk->n < bk->cap)
            return 0;
        uint32_t *ent = realloc(bk->ent, 2 * (size_t)bk->cap * sizeof(uint32_t));
        if (!ent)
            return -ENOMEM;
        g->bytes += bk->cap * sizeof(uint32_t);
        bk->ent = ent;
        bk->cap *= 2;
        return 0;
    }
    /* A new second. Its slot may still hold a second that growth_note will drop first (when ts
     * moves the horizon by more than the ring), and dropping it may free its page: so what the
     * note will need is set aside here rather than put in place. */
    if (!g->spare_ent) {
        if (!(g->spare_ent = malloc(FIRST_CAP * sizeof(uint32_t))))
            return -ENOMEM;
        g->bytes += FIRST_CAP * sizeof(uint32_t);
    }
    if (!g->spare_page) {
        if (!(g->spare_page = calloc(1, sizeof(struct growth_page))))
            return -ENOMEM;
        g->bytes += sizeof(struct growth_page);
    }
    return 0;
}

static void drop_below(struct growth *g, int64_t lo);

/* The newest event moved to ts: drops the seconds now beyond the horizon. Each second is passed
 * once over the engine's life (a jump past the whole ring drops every page instead). */
static void advance(struct growth *g, int64_t ts)
{
    int64_t lo = bucket_of(sat_sub(ts, ENGINE_GROWTH_HORIZON_MS));
    int had = g->has_newest;
    g->newest = ts;
    g->has_newest = 1;
    if (!had) {
        g->lo_bucket = lo;
        return;
    }
    drop_below(g, lo);
}

/* Drops the seconds from lo_bucket up to lo. */
static void drop_below(struct growth *g, int64_t lo)
{
    if (lo <= g->lo_bucket)
        return;
    if ((uint64_t)lo - (uint64_t)g->lo_bucket >= PAGES * (uint64_t)PAGE_SLOTS) {
        for (uint32_t i = 0; i < PAGES; i++)
            drop_page(g, &g->pages[i]);
    } else {
        for (int64_t b = g->lo_bucket; b < lo;) {
            struct growth_page **pg = page_ref(g, b);
            if (!*pg) { /* on to the next page */
                b += PAGE_SLOTS - (ring_slot(b) & (PAGE_SLOTS - 1));
                continue;
            }
            struct growth_bucket *bk = &(*pg)->b[ring_slot(b) & (PAGE_SLOTS - 1)];
            if (bk->cap && bk->id == b)
                drop_bucket(g, pg, bk);
            b++;
        }
    }
    g->lo_bucket = lo;
}

void growth_note(struct growth *g, uint32_t post, int64_t ts)
{
    g->old_ts |= ts < ENGINE_SECONDS_BELOW_MS;
    if (!g->has_newest || ts > g->newest)
        advance(g, ts);
    if (ts < sat_sub(g->newest, ENGINE_GROWTH_HORIZON_MS) || ts < g->floor)
        return;
    int64_t b = bucket_of(ts);
    struct growth_page **pg = page_ref(g, b);
    if (!*pg) {
        *pg = g->spare_page;
        g->spare_page = NULL;
    }
    struct growth_bucket *bk = &(*pg)->b[ring_slot(b) & (PAGE_SLOTS - 1)];
    if (!bk->cap) { /* growth_reserve set this aside; any older second here is dropped by now */
        bk->id = b;
        bk->ent = g->spare_ent;
        bk->cap = FIRST_CAP;
        g->spare_ent = NULL;
        (*pg)->used++;
    }
    if (bk->n && post == bk->last + 1) {
        uint32_t *x = &bk->ent[bk->n - 1];
        if (*x & GROWTH_RUN) {
            if (*x != UINT32_MAX) {
                ++*x;
                bk->last = post;
                return;
            }
        } else {
            bk->ent[bk->n++] = GROWTH_RUN | 1;
            bk->last = post;
            return;
        }
    }
    bk->ent[bk->n++] = post;
    bk->last = post;
}

void growth_set_floor(struct growth *g, int64_t floor)
{
    g->floor = floor;
    if (g->has_newest)
        drop_below(g, bucket_of(floor));
}

/* ---------------------------------------------------------------- queries */

/* A position in a bucket's posts: entry ent, of which off posts are behind. */
struct cursor {
    uint32_t ent, off;
};

static int next_post(const struct growth_bucket *bk, struct cursor *c, uint32_t *post)
{
    while (c->ent < bk->n) {
        uint32_t x = bk->ent[c->ent];
        uint32_t k = x & GROWTH_RUN ? x & ~GROWTH_RUN : 1;
        if (c->off < k) {
            c->off++;
            *post = x & GROWTH_RUN ? bk->ent[c->ent - 1] + c->off : x;
            return 1;
        }
        if (c->ent + 1 == bk->n)
            return 0; /* stay on the last entry: a run there may still grow */
        c->ent++;
        c->off = 0;
    }
    return 0;
}

static int cmp_u64(const void *pa, const void *pb)
{
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return (a > b) - (a < b);
}

/* Brings a bucket's counts up to date with the posts filed since they were made. Cascades that
 * joined others are re-keyed to their successors on the way. 0 or -ENOMEM. */
static int fold(const struct engine *e, struct growth *g, struct growth_bucket *bk)
{
    struct cursor c = {bk->cur_ent, bk->cur_off};
    uint32_t post, tail = 0;
    while (next_post(bk, &c, &post))
        tail++;
    if (!tail)
        return 0;
    uint64_t *all = malloc(((size_t)bk->ncounts + tail) * sizeof(uint64_t));
    if (!all)
        return -ENOMEM;
    uint32_t n = 0;
    for (uint32_t i = 0; i < bk->ncounts; i++) {
        uint32_t cid = engine_live_cascade(e, (uint32_t)(bk->counts[i] >> 32));
        all[n++] = (uint64_t)cid << 32 | (uint32_t)bk->counts[i];
    }
    c = (struct cursor){bk->cur_ent, bk->cur_off};
    while (next_post(bk, &c, &post))
        all[n++] = (uint64_t)engine_find_cascade(e, post) << 32 | 1;
    qsort(all, n, sizeof(uint64_t), cmp_u64);
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (m && all[m - 1] >> 32 == all[i] >> 32)
            all[m - 1] += (uint32_t)all[i];
        else
            all[m++] = all[i];
    }
    uint64_t *shrunk = realloc(all, m * sizeof(uint64_t));
    g->bytes += (size_t)m * sizeof(uint64_t) - (size_t)bk->ncounts * sizeof(uint64_t);
    free(bk->counts);
    bk->counts = shrunk ? shrunk : all;
    bk->ncounts = m;
    bk->cur_ent = c.ent;
    bk->cur_off = c.off;
    return 0;
}

/* Adds n posts to cascade cid's growth in the query's scratch map. */
static int add_growth(struct u64map *acc, uint32_t cid, uint32_t n)
{
    if (u64map_reserve(acc, 1))
        return -ENOMEM;
    int created;
    *u64map_put(acc, cid, &created) += n;
    return 0;
}

/* Sums, per live cascade, the posts with ts in [lo, newest] into acc. */
static int collect(struct engine *e, int64_t lo, struct u64map *acc)
{
    struct growth *g = &e->growth;
    int64_t first = bucket_of(lo), last = bucket_of(g->newest);
    for (int64_t b = first; b <= last;) {
        if (!*page_ref(g, b)) {
            b += PAGE_SLOTS - (ring_slot(b) & (PAGE_SLOTS - 1));
            continue;
        }
        struct growth_bucket *bk = find_bucket(g, b);
        int partial = b == first && lo % BUCKET_MS != 0;
        b++;
        if (!bk)
            continue;
        if (partial) { /* the window starts inside this second: each post's own ts decides */
            struct cursor c = {0, 0};
            uint32_t post;
            while (next_post(bk, &c, &post))
                if (post_at(e, post)->ts >= lo && add_growth(acc, engine_find_cascade(e, post), 1))
                    return -ENOMEM;
            continue;
        }
        if (fold(e, g, bk))
            return -ENOMEM;
        for (uint32_t i = 0; i < bk->ncounts; i++)
            if (add_growth(acc, engine_live_cascade(e, (uint32_t)(bk->counts[i] >> 32)),
                           (uint32_t)bk->counts[i]))
                return -ENOMEM;
    }
    return 0;
}

/* The best `limit` of the collected cascades that pass the filter, into out. */
static int rank(struct engine *e, struct u64map *acc, const struct cascade_match *m,
                struct engine_cascade *out, uint32_t limit)
{
    if (limit > acc->count)
        limit = (uint32_t)acc->count;
    if (limit == 0)
        return 0;
    struct topk best;
    struct topk_ent *ents = malloc(limit * sizeof(*ents));
    if (!ents || topk_init(&best, limit, 1)) {
        free(ents);
        return -ENOMEM;
    }
    u64map_finish(acc);
    uint64_t cid;
    for (uint64_t i = 0; i <= acc->t.mask; i++)
        if (u64map_slot(acc, i, &cid) && engine_match(e, (uint32_t)cid, m))
            topk_offer(&best, (uint32_t)cid, acc->t.vals[i]);
    uint32_t total;
    topk_sorted(&best, ents, &total);
    for (uint32_t i = 0; i < total; i++) {
        engine_describe_cascade(e, ents[i].item, &out[i]);
        out[i].growth = ents[i].key;
    }
    topk_destroy(&best);
    free(ents);
    return (int)total;
}

int engine_top_growth(struct engine *e, int64_t window_ms,
                      const struct engine_cascade_filter *filter, struct engine_cascade *out,
                      uint32_t limit)
{
    /* under retention, posts older than the cut are not filed: a longer window would miss them */
    if (window_ms < 1 || window_ms > ENGINE_GROWTH_HORIZON_MS ||
        (e->ret.ms && window_ms > e->ret.ms))
        return -EINVAL;
    struct cascade_match m;
    if (!e->growth.has_newest || limit == 0 || !engine_match_prepare(e, filter, &m))
        return 0;
    struct u64map acc;
    if (u64map_init(&acc, 1))
        return -ENOMEM;
    int rc = collect(e, sat_sub(e->growth.newest, window_ms), &acc);
    if (rc == 0)
        rc = rank(e, &acc, &m, out, limit);
    u64map_destroy(&acc);
    return rc;
}

/* ---------------------------------------------------------------- persistence (persist.c) */

int growth_each_bucket(const struct growth *g, growth_bucket_fn fn, void *ctx)
{
    for (uint32_t p = 0; p < PAGES; p++) {
        const struct growth_page *pg = g->pages[p];
        for (uint32_t i = 0; pg && i < PAGE_SLOTS; i++) {
            const struct growth_bucket *bk = &pg->b[i];
            if (!bk->cap)
                continue;
            int rc = fn(ctx, p << PAGE_SHIFT | i, bk->id, bk->ent, bk->n, bk->cap, bk->last);
            if (rc)
                return rc;
        }
    }
    return 0;
}

int growth_restore_bucket(struct growth *g, uint32_t slot, int64_t id, const uint32_t *ent,
                          uint32_t n, uint32_t cap, uint32_t last)
{
    if (slot > RING_MASK || ring_slot(id) != slot || cap == 0 || n > cap)
        return -EINVAL;
    struct growth_page **pg = &g->pages[slot >> PAGE_SHIFT];
    if (!*pg) {
        if (!(*pg = calloc(1, sizeof(struct growth_page))))
            return -ENOMEM;
        g->bytes += sizeof(struct growth_page);
    }
    struct growth_bucket *bk = &(*pg)->b[slot & (PAGE_SLOTS - 1)];
    if (bk->cap)
        return -EINVAL; /* the slot is taken */
    uint32_t *copy = malloc((size_t)cap * sizeof(uint32_t));
    if (!copy)
        return -ENOMEM;
    memcpy(copy, ent, (size_t)n * sizeof(uint32_t));
    *bk = (struct growth_bucket){.id = id, .ent = copy, .n = n, .cap = cap, .last = last};
    (*pg)->used++;
    g->bytes += (size_t)cap * sizeof(uint32_t);
    return 0;
}
