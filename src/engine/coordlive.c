/* Live coordination (coordlive.h): per key a ts-sorted window of recent posts, per actor pair
 * its co-shared keys with their closest pair of posts. A post's meetings are the posts of its key
 * within the window in that key's list; each one updates one pair. Groups are read from the pairs
 * that can qualify (an index of the pairs of weight >= heavy), not from the posts. */
#include "engine/coordlive.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/segvec.h"
#include "core/u64map.h"

#define NIL     UINT32_MAX
#define FLAGGED 0x80000000u /* in an actor's word: a cap may have cost it a meeting */
#define SWEEP   2           /* idle key lists looked at per post */

struct rp { /* a recent post of a key */
    int64_t ts;
    uint32_t actor, post;
};

struct klist {
    struct rp *p;       /* p[off .. off + n), sorted by (ts, post) */
    uint32_t off, n, cap;
    uint32_t key;       /* or, on the free list, the next free slot */
    int64_t drop_max;   /* the latest ts dropped by the cap (dropped: set) */
    int64_t exp_max;    /* the latest ts dropped early, out of every in-order post's reach */
    uint8_t used, dropped, expired;
};

struct pair {
    uint32_t a, b;
    uint32_t n, cap; /* co-shared keys; cap 1: the one is inline */
    union {
        struct coordlive_ev one;
        struct coordlive_ev *many;
    } u;
    uint8_t used;
    uint8_t heavy; /* its index is in cl->heavyv (kept when the slot is freed and reused) */
    uint8_t lost;  /* it may have had one co-share more, forgotten (a pair is forgotten once) */
};

/* A pair of weight 1 waiting to be forgotten: its key in pairmap and its co-share's ts. */
struct fq {
    uint64_t pk;
    int64_t ts;
};

/* The forgotten pairs: Bloom filters, each twice the last, 10 bits and 7 probes an entry. */
#define BLOOM_MAX    32
#define BLOOM_FIRST  (1u << 16)
#define BLOOM_PROBES 7
struct bloom {
    uint64_t *bits;
    uint64_t nbits, n, max;
};

struct coordlive {
    uint8_t kind;
    int64_t window, lateness;
    uint32_t cap, heavy;

    int64_t newest, expired_max;
    int has_newest, has_expired;

    struct segvec actors; /* uint32_t per actor id: distinct keys | FLAGGED */
    struct u64map akeys;  /* (actor, key) posted */
    struct u64map keymap; /* key -> klist slot */
    struct segvec klists;
    uint32_t kfree, sweep;
    struct u64map pairmap; /* (a, b) -> pair slot */
    struct segvec pairs;
    uint32_t pfree, evict_cursor;
    struct segvec heavyv; /* uint32_t pair slots */

    int64_t forget;    /* weight-1 pairs this far behind newest are forgotten; < 0: never */
    struct fq *fq;     /* ring of the pairs created, oldest first */
    size_t fhead, flen, fcap;
    struct bloom bloom[BLOOM_MAX];
    uint32_t nbloom;
    uint64_t forgotten;

    size_t heap; /* bytes of the per-key and per-pair arrays */
    uint64_t posts, meetings, npairs, coshares, capped_drops, flagged, late_misses;
    int broken, incomplete;
};

/* y is at most d after x (x may be after y) */
static int upto(int64_t x, int64_t y, uint64_t d)
{
    return y <= x || (uint64_t)y - (uint64_t)x <= d;
}

int coordlive_new(struct coordlive **out, const struct coordlive_params *p, uint8_t kind)
{
    static const struct coordlive_params defaults = {0, COORDLIVE_DEFAULT_LATENESS_MS, 0, 0};
    p = p ? p : &defaults;
    *out = NULL;
    if (p->window_ms < 0 || p->window_ms > INT32_MAX || p->lateness_ms < 0 ||
        kind >= COORDLIVE_KINDS)
        return -EINVAL;
    struct coordlive *cl = calloc(1, sizeof(*cl));
    if (!cl)
        return -ENOMEM;
    cl->kind = kind;
    cl->window = p->window_ms ? p->window_ms : COORDLIVE_DEFAULT_WINDOW_MS;
    cl->lateness = p->lateness_ms;
    cl->cap = p->max_key_posts ? p->max_key_posts : COORDLIVE_DEFAULT_KEY_POSTS;
    cl->heavy = p->heavy ? p->heavy : COORDLIVE_DEFAULT_HEAVY;
    cl->forget = p->forget_ms ? p->forget_ms : COORDLIVE_DEFAULT_FORGET_MS;
    cl->kfree = cl->pfree = NIL;
    segvec_init(&cl->actors, sizeof(uint32_t), 14);
    segvec_init(&cl->klists, sizeof(struct klist), 10);
    segvec_init(&cl->pairs, sizeof(struct pair), 12);
    segvec_init(&cl->heavyv, sizeof(uint32_t), 12);
    int rc = u64map_init(&cl->akeys, 0);
    if (!rc)
        rc = u64map_init(&cl->keymap, 1);
    if (!rc)
        rc = u64map_init(&cl->pairmap, 1);
    if (rc) {
        coordlive_free(cl);
        return -ENOMEM;
    }
    *out = cl;
    return 0;
}

void coordlive_free(struct coordlive *cl)
{
    if (!cl)
        return;
    for (uint32_t i = 0; i < cl->klists.len; i++)
        free(((struct klist *)segvec_at(&cl->klists, i))->p);
    for (uint32_t i = 0; i < cl->pairs.len; i++) {
        struct pair *pr = segvec_at(&cl->pairs, i);
        if (pr->cap > 1)
            free(pr->u.many);
    }
    segvec_destroy(&cl->actors);
    segvec_destroy(&cl->klists);
    segvec_destroy(&cl->pairs);
    segvec_destroy(&cl->heavyv);
    free(cl->fq);
    for (uint32_t i = 0; i < cl->nbloom; i++)
        free(cl->bloom[i].bits);
    u64map_destroy(&cl->akeys);
    u64map_destroy(&cl->keymap);
    u64map_destroy(&cl->pairmap);
    free(cl);
}

/* ---------------------------------------------------------------- actors */

static uint32_t *actor_word(const struct coordlive *cl, uint32_t a)
{
    return a < cl->actors.len ? segvec_at(&cl->actors, a) : NULL;
}

static int ensure_actor(struct coordlive *cl, uint32_t a)
{
    if (a < cl->actors.len)
        return 0;
    if (segvec_reserve(&cl->actors, a + 1 - cl->actors.len))
        return -ENOMEM;
    while (cl->actors.len <= a)
        segvec_push(&cl->actors);
    return 0;
}

static void flag_actor(struct coordlive *cl, uint32_t a)
{
    uint32_t *w = actor_word(cl, a);
    if (w && !(*w & FLAGGED)) {
        *w |= FLAGGED;
        cl->flagged++;
    }
}

/* ---------------------------------------------------------------- key lists */

static struct klist *klist_at(const struct coordlive *cl, uint32_t i)
{
    return segvec_at(&cl->klists, i);
}

static int expired(const struct coordlive *cl, int64_t ts)
{
    return cl->has_newest && ts < cl->newest &&
           (uint64_t)cl->newest - (uint64_t)ts > (uint64_t)cl->window + (uint64_t)cl->lateness;
}

static void note_expired(struct coordlive *cl, int64_t ts)
{
    if (!cl->has_expired || ts > cl->expired_max)
        cl->expired_max = ts;
    cl->has_expired = 1;
}

/* Drops the list's posts that no post within the lateness can meet any more. */
static void trim(struct coordlive *cl, struct klist *k)
{
    while (k->n && expired(cl, k->p[k->off].ts)) {
        note_expired(cl, k->p[k->off].ts);
        k->off++;
        k->n--;
    }
}

static void free_klist(struct coordlive *cl, uint32_t slot)
{
    struct klist *k = klist_at(cl, slot);
    if (k->dropped)
        note_expired(cl, k->drop_max);
    if (k->expired)
        note_expired(cl, k->exp_max);
    u64map_del(&cl->keymap, k->key);
    cl->heap -= (size_t)k->cap * sizeof(struct rp);
    free(k->p);
    memset(k, 0, sizeof(*k));
    k->key = cl->kfree;
    cl->kfree = slot;
}

/* Trims a few lists at the sweep cursor, freeing those left empty, so idle keys go. */
static void sweep(struct coordlive *cl)
{
    for (int i = 0; i < SWEEP && cl->klists.len; i++) {
        if (cl->sweep >= cl->klists.len)
            cl->sweep = 0;
        uint32_t s = cl->sweep++;
        struct klist *k = klist_at(cl, s);
        if (!k->used)
            continue;
        trim(cl, k);
        if (!k->n)
            free_klist(cl, s);
    }
}

/* The list of key, created empty if need be (room reserved by the caller). */
static struct klist *get_klist(struct coordlive *cl, uint32_t key)
{
    int created;
    uint32_t *v = u64map_put(&cl->keymap, key, &created);
    if (!created)
        return klist_at(cl, *v);
    uint32_t slot;
    if (cl->kfree != NIL) {
        slot = cl->kfree;
        cl->kfree = klist_at(cl, slot)->key;
    } else {
        segvec_push(&cl->klists);
        slot = cl->klists.len - 1;
    }
    struct klist *k = klist_at(cl, slot);
    memset(k, 0, sizeof(*k));
    k->used = 1;
    k->key = key;
    *v = slot;
    return k;
}

static int rp_before(const struct rp *x, int64_t ts, uint32_t post)
{
    return x->ts < ts || (x->ts == ts && x->post < post);
}

/* The first index of the list (relative to off) whose ts >= t. */
static uint32_t lower(const struct klist *k, int64_t t)
{
    uint32_t lo = 0, hi = k->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (k->p[k->off + mid].ts < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Room for one more post at the end of the list. 0 or -ENOMEM. */
static int klist_room(struct coordlive *cl, struct klist *k)
{
    if (k->off + k->n < k->cap)
        return 0;
    if (k->off && k->n < k->cap / 2 + 1) { /* slide down rather than grow */
        memmove(k->p, k->p + k->off, (size_t)k->n * sizeof(*k->p));
        k->off = 0;
        if (k->n < k->cap)
            return 0;
    }
    uint32_t cap = k->cap ? 2 * k->cap : 4;
    struct rp *np = malloc((size_t)cap * sizeof(*np));
    if (!np)
        return -ENOMEM;
    if (k->n)
        memcpy(np, k->p + k->off, (size_t)k->n * sizeof(*np));
    free(k->p);
    cl->heap += ((size_t)cap - k->cap) * sizeof(*np);
    k->p = np;
    k->cap = cap;
    k->off = 0;
    return 0;
}

static void klist_insert(struct klist *k, int64_t ts, uint32_t actor, uint32_t post)
{
    uint32_t i = k->n; /* mostly at the end: posts come about in ts order */
    while (i > 0 && !rp_before(&k->p[k->off + i - 1], ts, post))
        i--;
    struct rp *base = k->p + k->off;
    memmove(base + i + 1, base + i, (size_t)(k->n - i) * sizeof(*base));
    base[i] = (struct rp){ts, actor, post};
    k->n++;
}

/* The cap: the list's earliest post goes. If no post in ts order can meet it any more, only a
 * late post would miss it (exp_max); else its actor, and later those of the posts it would
 * have met, are flagged (drop_max). */
static void klist_drop_first(struct coordlive *cl, struct klist *k)
{
    const struct rp *x = &k->p[k->off];
    if (!upto(x->ts, cl->newest, (uint64_t)cl->window)) {
        if (!k->expired || x->ts > k->exp_max)
            k->exp_max = x->ts;
        k->expired = 1;
    } else {
        if (!k->dropped || x->ts > k->drop_max)
            k->drop_max = x->ts;
        k->dropped = 1;
        flag_actor(cl, x->actor);
        cl->capped_drops++;
    }
    k->off++;
    k->n--;
}

/* ---------------------------------------------------------------- pairs */

static struct pair *pair_at(const struct coordlive *cl, uint32_t i)
{
    return segvec_at(&cl->pairs, i);
}

static struct coordlive_ev *pair_ev(struct pair *p)
{
    return p->cap > 1 ? p->u.many : &p->u.one;
}

static const struct coordlive_ev *pair_cev(const struct pair *p)
{
    return p->cap > 1 ? p->u.many : &p->u.one;
}

/* The index of key in p's evidence, or where it would go (*found 0). */
static uint32_t ev_find(const struct pair *p, uint32_t key, int *found)
{
    const struct coordlive_ev *ev = pair_cev(p);
    uint32_t lo = 0, hi = p->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ev[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < p->n && ev[lo].key == key;
    return lo;
}

/* Closest first: |dt|, then the earlier ts, then the post ids. */
static int ev_better(const struct coordlive_ev *x, const struct coordlive_ev *y)
{
    uint32_t gx = (uint32_t)(x->dt < 0 ? -(int64_t)x->dt : x->dt);
    uint32_t gy = (uint32_t)(y->dt < 0 ? -(int64_t)y->dt : y->dt);
    if (gx != gy)
        return gx < gy;
    if (x->ts != y->ts)
        return x->ts < y->ts;
    if (x->post_a != y->post_a)
        return x->post_a < y->post_a;
    return x->post_b < y->post_b;
}

static int ev_insert(struct coordlive *cl, struct pair *p, uint32_t at,
                     const struct coordlive_ev *e)
{
    if (p->n == p->cap) {
        uint32_t cap = p->cap < 4 ? 4 : 2 * p->cap;
        struct coordlive_ev *ne = malloc((size_t)cap * sizeof(*ne));
        if (!ne)
            return -ENOMEM;
        memcpy(ne, pair_cev(p), (size_t)p->n * sizeof(*ne));
        if (p->cap > 1)
            free(p->u.many);
        cl->heap += ((size_t)cap - (p->cap > 1 ? p->cap : 0)) * sizeof(*ne);
        p->u.many = ne;
        p->cap = cap;
    }
    struct coordlive_ev *ev = pair_ev(p);
    memmove(ev + at + 1, ev + at, (size_t)(p->n - at) * sizeof(*ev));
    ev[at] = *e;
    p->n++;
    cl->coshares++;
    return 0;
}

/* ---------------------------------------------------------------- forgetting */

static int bloom_has(const struct coordlive *cl, uint64_t pk)
{
    uint64_t h1 = hash_u64(pk), h2 = hash_u64(pk ^ 0x9e3779b97f4a7c15ULL) | 1;
    for (uint32_t f = 0; f < cl->nbloom; f++) {
        const struct bloom *b = &cl->bloom[f];
        int all = 1;
        for (uint64_t i = 0; all && i < BLOOM_PROBES; i++) {
            uint64_t bit = (h1 + i * h2) % b->nbits;
            all = (b->bits[bit / 64] >> (bit % 64)) & 1;
        }
        if (all)
            return 1;
    }
    return 0;
}

/* 0 or -ENOMEM (then the pair is kept: nothing is lost). */
static int bloom_add(struct coordlive *cl, uint64_t pk)
{
    struct bloom *b = cl->nbloom ? &cl->bloom[cl->nbloom - 1] : NULL;
    if (!b || b->n == b->max) {
        if (cl->nbloom == BLOOM_MAX)
            return -ENOMEM;
        uint64_t max = b ? 2 * b->max : BLOOM_FIRST;
        uint64_t *bits = calloc(max * 10 / 64 + 1, sizeof(uint64_t));
        if (!bits)
            return -ENOMEM;
        b = &cl->bloom[cl->nbloom++];
        *b = (struct bloom){bits, (max * 10 / 64 + 1) * 64, 0, max};
        cl->heap += (max * 10 / 64 + 1) * sizeof(uint64_t);
    }
    uint64_t h1 = hash_u64(pk), h2 = hash_u64(pk ^ 0x9e3779b97f4a7c15ULL) | 1;
    for (uint64_t i = 0; i < BLOOM_PROBES; i++) {
        uint64_t bit = (h1 + i * h2) % b->nbits;
        b->bits[bit / 64] |= 1ULL << (bit % 64);
    }
    b->n++;
    return 0;
}

static int fq_push(struct coordlive *cl, uint64_t pk, int64_t ts)
{
    if (cl->forget < 0)
        return 0;
    if (cl->flen == cl->fcap) {
        size_t cap = cl->fcap ? 2 * cl->fcap : 1024;
        struct fq *n = malloc(cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        for (size_t i = 0; i < cl->flen; i++)
            n[i] = cl->fq[(cl->fhead + i) % cl->fcap];
        free(cl->fq);
        cl->heap += (cap - cl->fcap) * sizeof(*n);
        cl->fq = n;
        cl->fcap = cap;
        cl->fhead = 0;
    }
    cl->fq[(cl->fhead + cl->flen++) % cl->fcap] = (struct fq){pk, ts};
    return 0;
}

static void free_pair(struct coordlive *cl, uint32_t slot);

/* Forgets a few of the oldest pairs of weight 1 that are forget ms behind the newest post:
 * into the Bloom filters, so that if they meet again their record says lost. */
static void forget_some(struct coordlive *cl, int budget)
{
    while (cl->flen && budget-- > 0) {
        struct fq f = cl->fq[cl->fhead];
        if (!(f.ts < cl->newest && (uint64_t)cl->newest - (uint64_t)f.ts > (uint64_t)cl->forget))
            return;
        cl->fhead = (cl->fhead + 1) % cl->fcap;
        cl->flen--;
        const uint32_t *v = u64map_get(&cl->pairmap, f.pk);
        if (!v)
            continue;
        struct pair *p = segvec_at(&cl->pairs, *v);
        if (p->n != 1 || p->lost)
            continue; /* kept for good */
        int64_t ts = p->u.one.ts;
        if (!(ts < cl->newest && (uint64_t)cl->newest - (uint64_t)ts > (uint64_t)cl->forget)) {
            fq_push(cl, f.pk, ts); /* its closest pair moved later; room: one was popped */
            continue;
        }
        if (bloom_add(cl, f.pk))
            return;
        free_pair(cl, *v);
        cl->coshares--;
        cl->forgotten++;
    }
}

/* The pair (a, b), created if need be (*created). NULL on -ENOMEM. */
static struct pair *get_pair(struct coordlive *cl, uint32_t a, uint32_t b, uint32_t *slot,
                             int *created)
{
    if (u64map_reserve(&cl->pairmap, 1) || segvec_reserve(&cl->pairs, 1))
        return NULL;
    uint32_t *v = u64map_put(&cl->pairmap, u64map_pair(a, b), created);
    if (!*created) {
        *slot = *v;
        return pair_at(cl, *v);
    }
    uint32_t s;
    uint8_t heavy = 0;
    if (cl->pfree != NIL) {
        s = cl->pfree;
        cl->pfree = pair_at(cl, s)->a;
        heavy = pair_at(cl, s)->heavy;
    } else {
        segvec_push(&cl->pairs);
        s = cl->pairs.len - 1;
    }
    struct pair *p = pair_at(cl, s);
    memset(p, 0, sizeof(*p));
    *p = (struct pair){.a = a, .b = b, .cap = 1, .used = 1, .heavy = heavy};
    p->lost = cl->nbloom && bloom_has(cl, u64map_pair(a, b));
    *v = s;
    *slot = s;
    cl->npairs++;
    return p;
}

/* Post x of the list met the new post (actor, post, ts) on key. */
static int meet(struct coordlive *cl, const struct rp *x, uint32_t key, uint32_t actor,
                uint32_t post, int64_t ts)
{
    struct coordlive_ev e = {.key = key};
    uint32_t a, b;
    int64_t ta, tb;
    if (x->actor < actor) {
        a = x->actor, b = actor, e.post_a = x->post, e.post_b = post, ta = x->ts, tb = ts;
    } else {
        a = actor, b = x->actor, e.post_a = post, e.post_b = x->post, ta = ts, tb = x->ts;
    }
    e.dt = (int32_t)(tb - ta); /* |tb - ta| <= window <= INT32_MAX */
    e.ts = ta < tb ? ta : tb;
    cl->meetings++;
    uint32_t slot;
    int created;
    struct pair *p = get_pair(cl, a, b, &slot, &created);
    if (!p || (created && fq_push(cl, u64map_pair(a, b), e.ts)))
        return -ENOMEM;
    int found;
    uint32_t at = ev_find(p, key, &found);
    if (found) {
        struct coordlive_ev *old = &pair_ev(p)[at];
        if (ev_better(&e, old))
            *old = e;
        return 0;
    }
    if (p->n + 1u + p->lost >= cl->heavy && !p->heavy) {
        if (segvec_reserve(&cl->heavyv, 1))
            return -ENOMEM;
        *(uint32_t *)segvec_push(&cl->heavyv) = slot;
        p->heavy = 1;
    }
    return ev_insert(cl, p, at, &e);
}

/* ---------------------------------------------------------------- add */

static int add(struct coordlive *cl, uint32_t key, uint32_t actor, uint32_t post, int64_t ts)
{
    if (ensure_actor(cl, actor) || u64map_reserve(&cl->akeys, 1) ||
        u64map_reserve(&cl->keymap, 1) || segvec_reserve(&cl->klists, 1))
        return -ENOMEM;
    if (!cl->has_newest || ts > cl->newest)
        cl->newest = ts;
    cl->has_newest = 1;
    cl->posts++;
    int created;
    u64map_put(&cl->akeys, u64map_pair(actor, key), &created);
    if (created)
        (*actor_word(cl, actor))++;
    struct klist *k = get_klist(cl, key);
    trim(cl, k);
    /* a late post may have missed posts that left the lists already (this trim included) */
    if ((cl->has_expired && upto(cl->expired_max, ts, (uint64_t)cl->window)) ||
        (k->expired && upto(k->exp_max, ts, (uint64_t)cl->window)))
        cl->late_misses++;
    if (k->dropped && upto(k->drop_max, ts, (uint64_t)cl->window))
        flag_actor(cl, actor);
    int64_t lo_ts = ts - cl->window; /* ts >= INT64_MIN + window: checked by the caller */
    for (uint32_t i = lower(k, lo_ts); i < k->n; i++) {
        const struct rp *x = &k->p[k->off + i];
        if (!upto(ts, x->ts, (uint64_t)cl->window))
            break;
        if (x->actor != actor) {
            int rc = meet(cl, x, key, actor, post, ts);
            if (rc)
                return rc;
        }
    }
    if (klist_room(cl, k))
        return -ENOMEM;
    klist_insert(k, ts, actor, post);
    if (k->n > cl->cap)
        klist_drop_first(cl, k);
    return 0;
}

int coordlive_add(struct coordlive *cl, uint32_t key, uint32_t actor, uint32_t post, int64_t ts)
{
    if (actor == NIL || ts < INT64_MIN / 2 || ts > INT64_MAX / 2)
        return -EINVAL;
    int rc = add(cl, key, actor, post, ts);
    if (rc)
        cl->broken = 1;
    sweep(cl);
    forget_some(cl, 8); /* more than the pairs a post makes, on average */
    return rc;
}

/* ---------------------------------------------------------------- retention */

static void free_pair(struct coordlive *cl, uint32_t slot)
{
    struct pair *p = pair_at(cl, slot);
    u64map_del(&cl->pairmap, u64map_pair(p->a, p->b));
    if (p->cap > 1) {
        free(p->u.many);
        cl->heap -= (size_t)p->cap * sizeof(struct coordlive_ev);
    }
    uint8_t heavy = p->heavy;
    memset(p, 0, sizeof(*p));
    p->heavy = heavy; /* its slot stays in heavyv */
    p->a = cl->pfree;
    cl->pfree = slot;
    cl->npairs--;
}

int coordlive_evict_before(struct coordlive *cl, int64_t horizon, uint32_t budget)
{
    for (uint32_t v = 0; v < budget; v++) {
        if (cl->evict_cursor >= cl->pairs.len) {
            cl->evict_cursor = 0;
            return 0;
        }
        uint32_t s = cl->evict_cursor++;
        struct pair *p = pair_at(cl, s);
        if (!p->used)
            continue;
        struct coordlive_ev *ev = pair_ev(p);
        uint32_t k = 0;
        for (uint32_t i = 0; i < p->n; i++)
            if (ev[i].ts >= horizon)
                ev[k++] = ev[i];
        cl->coshares -= p->n - k;
        p->n = k;
        if (!k)
            free_pair(cl, s);
    }
    if (cl->evict_cursor < cl->pairs.len)
        return 1;
    cl->evict_cursor = 0;
    return 0;
}

/* ---------------------------------------------------------------- figures */

void coordlive_set_incomplete(struct coordlive *cl, int incomplete)
{
    cl->incomplete = incomplete != 0;
}

size_t coordlive_bytes(const struct coordlive *cl)
{
    return sizeof(*cl) + cl->heap + segvec_bytes(&cl->actors) + segvec_bytes(&cl->klists) +
           segvec_bytes(&cl->pairs) + segvec_bytes(&cl->heavyv) + u64map_bytes(&cl->akeys) +
           u64map_bytes(&cl->keymap) + u64map_bytes(&cl->pairmap);
}

void coordlive_stats(const struct coordlive *cl, struct coordlive_stats *st)
{
    *st = (struct coordlive_stats){cl->posts,       cl->meetings,     cl->npairs,
                                   cl->coshares,    cl->capped_drops, cl->flagged,
                                   cl->late_misses, cl->forgotten,    cl->flen,
                                   cl->window,      cl->broken};
}

double coordlive_similarity(int sim, uint32_t w, uint32_t ka, uint32_t kb)
{
    uint32_t mx = ka > kb ? ka : kb, mn = ka < kb ? ka : kb;
    double d = sim == COORDLIVE_SIM_MIN       ? (double)mn
               : sim == COORDLIVE_SIM_JACCARD ? (double)ka + (double)kb - (double)w
                                              : (double)mx;
    return d > 0 ? (double)w / d : 0;
}

static uint32_t nkeys_of(const struct coordlive *cl, uint32_t a)
{
    const uint32_t *w = actor_word(cl, a);
    return w ? *w & ~FLAGGED : 0;
}

static int is_flagged(const struct coordlive *cl, uint32_t a)
{
    const uint32_t *w = actor_word(cl, a);
    return w && (*w & FLAGGED);
}

static void leads(const struct pair *p, uint32_t *la, uint32_t *lb)
{
    const struct coordlive_ev *ev = pair_cev(p);
    *la = *lb = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        *la += ev[i].dt > 0;
        *lb += ev[i].dt < 0;
    }
}

int coordlive_pair(const struct coordlive *cl, uint32_t a, uint32_t b,
                   struct coordlive_pairinfo *out)
{
    if (a > b) {
        uint32_t t = a;
        a = b;
        b = t;
    }
    memset(out, 0, sizeof(*out));
    out->a = a;
    out->b = b;
    out->k_a = nkeys_of(cl, a);
    out->k_b = nkeys_of(cl, b);
    out->exact = !cl->broken && !cl->incomplete && !cl->late_misses && !is_flagged(cl, a) &&
                 !is_flagged(cl, b);
    const uint32_t *v = a == b ? NULL : u64map_get(&cl->pairmap, u64map_pair(a, b));
    if (!v) {
        if (a != b && cl->nbloom && bloom_has(cl, u64map_pair(a, b)))
            out->exact = 0; /* maybe forgotten: it co-shared a key */
        return 0;
    }
    const struct pair *p = pair_at(cl, *v);
    if (p->lost)
        out->exact = 0;
    out->ev = malloc((size_t)p->n * sizeof(*out->ev));
    if (!out->ev)
        return -ENOMEM;
    memcpy(out->ev, pair_cev(p), (size_t)p->n * sizeof(*out->ev));
    out->nev = out->weight = p->n;
    leads(p, &out->leads_a, &out->leads_b);
    return 0;
}

/* ---------------------------------------------------------------- groups */

struct qp { /* a qualifying pair: its instance and slot */
    uint32_t inst, slot;
};

struct gctx {
    struct coordlive *const *cls;
    size_t ncls;
    const struct coordlive_query *q;
    struct qp *qp;
    size_t nqp, qpcap;
    struct u64map amap; /* actor -> dense */
    uint32_t *ids, *uf, nact, idcap;
    struct u64map unsure; /* actors of pairs whose weight a forgotten co-share may change */
    int unsure_oom, missing; /* missing: a forgotten pair of weight 1 could qualify */
};

static int push_qp(struct gctx *g, uint32_t inst, uint32_t slot)
{
    if (g->nqp == g->qpcap) {
        size_t cap = g->qpcap ? 2 * g->qpcap : 64;
        struct qp *n = realloc(g->qp, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        g->qp = n;
        g->qpcap = cap;
    }
    g->qp[g->nqp++] = (struct qp){inst, slot};
    return 0;
}

static int qualifies_at(const struct coordlive *cl, const struct pair *p,
                        const struct coordlive_query *q, uint32_t min_repeats, uint32_t w)
{
    if (w < min_repeats)
        return 0;
    return coordlive_similarity(q->similarity, w, nkeys_of(cl, p->a), nkeys_of(cl, p->b)) >=
           q->min_ratio;
}

static void note_unsure(struct gctx *g, uint32_t a)
{
    int created;
    if (u64map_reserve(&g->unsure, 1))
        g->unsure_oom = 1; /* then no group is exact */
    else
        u64map_put(&g->unsure, a, &created);
}

/* Pair p qualifies (1) or not (0). Its true weight is n or, if lost, maybe n + 1: where that
 * could change the answer (or the group's figures), its actors are unsure. */
static int qualifies(struct gctx *g, const struct coordlive *cl, const struct pair *p,
                     uint32_t min_repeats)
{
    if (!p->used)
        return 0;
    int now = qualifies_at(cl, p, g->q, min_repeats, p->n);
    if (p->lost && (now || qualifies_at(cl, p, g->q, min_repeats, p->n + 1))) {
        note_unsure(g, p->a);
        note_unsure(g, p->b);
    }
    return now;
}

static int collect(struct gctx *g, uint32_t inst, uint32_t min_repeats)
{
    const struct coordlive *cl = g->cls[inst];
    /* a forgotten pair had weight 1: it could qualify only at min_repeats 1 */
    g->missing |= cl->forgotten && min_repeats <= 1;
    if (min_repeats >= cl->heavy) {
        for (uint32_t i = 0; i < cl->heavyv.len; i++) {
            uint32_t s = *(const uint32_t *)segvec_at(&cl->heavyv, i);
            if (qualifies(g, cl, pair_at(cl, s), min_repeats) && push_qp(g, inst, s))
                return -ENOMEM;
        }
        return 0;
    }
    for (uint32_t s = 0; s < cl->pairs.len; s++)
        if (qualifies(g, cl, pair_at(cl, s), min_repeats) && push_qp(g, inst, s))
            return -ENOMEM;
    return 0;
}

static int dense(struct gctx *g, uint32_t actor, uint32_t *out)
{
    if (u64map_reserve(&g->amap, 1))
        return -ENOMEM;
    int created;
    uint32_t *v = u64map_put(&g->amap, actor, &created);
    if (created) {
        if (g->nact == g->idcap) {
            uint32_t cap = g->idcap ? 2 * g->idcap : 64;
            uint32_t *ni = realloc(g->ids, (size_t)cap * sizeof(*ni));
            if (!ni)
                return -ENOMEM;
            g->ids = ni;
            uint32_t *nu = realloc(g->uf, (size_t)cap * sizeof(*nu));
            if (!nu)
                return -ENOMEM;
            g->uf = nu;
            g->idcap = cap;
        }
        *v = g->nact;
        g->ids[g->nact] = actor;
        g->uf[g->nact] = g->nact;
        g->nact++;
    }
    *out = *v;
    return 0;
}

static uint32_t uf_find(uint32_t *uf, uint32_t x)
{
    while (uf[x] != x) {
        uf[x] = uf[uf[x]];
        x = uf[x];
    }
    return x;
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

static int cmp_key(const void *x, const void *y)
{
    const struct coordlive_key *a = x, *b = y;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    return (a->key > b->key) - (a->key < b->key);
}

static int cmp_gpair(const void *x, const void *y)
{
    const struct coordlive_gpair *a = x, *b = y;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    if (a->a != b->a)
        return (a->a > b->a) - (a->a < b->a);
    return (a->b > b->b) - (a->b < b->b);
}

static int cmp_group(const void *x, const void *y)
{
    const struct coordlive_group *a = x, *b = y;
    if (a->nmembers != b->nmembers)
        return a->nmembers > b->nmembers ? -1 : 1;
    if (a->weight != b->weight)
        return a->weight > b->weight ? -1 : 1;
    return cmp_u32(&a->members[0], &b->members[0]);
}

/* Type 7 quantile of sorted x[n] (n > 0). */
static double q7_u32(const uint32_t *x, size_t n, double q)
{
    double h = (double)(n - 1) * q;
    size_t lo = (size_t)floor(h);
    if (lo + 1 >= n)
        return x[n - 1];
    return x[lo] + (h - (double)lo) * ((double)x[lo + 1] - (double)x[lo]);
}

static int result_exact(const struct gctx *g)
{
    if (g->unsure.count || g->unsure_oom || g->missing)
        return 0;
    for (size_t i = 0; i < g->ncls; i++)
        if (g->cls[i]->broken || g->cls[i]->incomplete || g->cls[i]->late_misses ||
            g->cls[i]->flagged)
            return 0;
    return 1;
}

static int member_flagged(const struct gctx *g, uint32_t actor)
{
    if (g->unsure_oom || g->missing || u64map_has(&g->unsure, actor))
        return 1;
    for (size_t i = 0; i < g->ncls; i++)
        if (g->cls[i]->broken || g->cls[i]->incomplete || g->cls[i]->late_misses ||
            is_flagged(g->cls[i], actor))
            return 1;
    return 0;
}

/* Fills group gr from the qualifying pairs qp[idx[0..np)]. */
static int fill_group(struct gctx *g, struct coordlive_group *gr, const uint32_t *idx, uint32_t np)
{
    size_t nev = 0;
    for (uint32_t i = 0; i < np; i++)
        nev += pair_at(g->cls[g->qp[idx[i]].inst], g->qp[idx[i]].slot)->n;
    gr->pairs = malloc((size_t)np * sizeof(*gr->pairs));
    gr->keys = malloc((nev ? nev : 1) * sizeof(*gr->keys));
    gr->members = malloc((size_t)(2 * np) * sizeof(*gr->members));
    uint32_t *gaps = malloc((nev ? nev : 1) * sizeof(*gaps));
    if (!gr->pairs || !gr->keys || !gr->members || !gaps) {
        free(gaps);
        return -ENOMEM;
    }
    size_t k = 0;
    uint32_t m = 0;
    gr->first_ts = INT64_MAX;
    gr->last_ts = INT64_MIN;
    for (uint32_t i = 0; i < np; i++) {
        const struct coordlive *cl = g->cls[g->qp[idx[i]].inst];
        const struct pair *p = pair_at(cl, g->qp[idx[i]].slot);
        struct coordlive_gpair *gp = &gr->pairs[i];
        *gp = (struct coordlive_gpair){p->a, p->b, cl->kind, p->n, 0, 0, 0};
        leads(p, &gp->leads_a, &gp->leads_b);
        gp->similarity = coordlive_similarity(g->q->similarity, p->n, nkeys_of(cl, p->a),
                                              nkeys_of(cl, p->b));
        gr->weight += p->n;
        gr->kinds |= (uint8_t)(1u << cl->kind);
        gr->members[m++] = p->a;
        gr->members[m++] = p->b;
        const struct coordlive_ev *ev = pair_cev(p);
        for (uint32_t j = 0; j < p->n; j++, k++) {
            uint32_t gap = (uint32_t)(ev[j].dt < 0 ? -(int64_t)ev[j].dt : ev[j].dt);
            gr->keys[k] = (struct coordlive_key){ev[j].key, cl->kind};
            gaps[k] = gap;
            gr->first_ts = ev[j].ts < gr->first_ts ? ev[j].ts : gr->first_ts;
            gr->last_ts = ev[j].ts + gap > gr->last_ts ? ev[j].ts + gap : gr->last_ts;
        }
    }
    gr->npairs = np;
    qsort(gr->pairs, np, sizeof(*gr->pairs), cmp_gpair);
    qsort(gr->members, m, sizeof(uint32_t), cmp_u32);
    uint32_t u = 0;
    for (uint32_t i = 0; i < m; i++)
        if (!u || gr->members[u - 1] != gr->members[i])
            gr->members[u++] = gr->members[i];
    gr->nmembers = u;
    qsort(gr->keys, k, sizeof(*gr->keys), cmp_key);
    size_t uk = 0;
    for (size_t i = 0; i < k; i++)
        if (!uk || cmp_key(&gr->keys[uk - 1], &gr->keys[i]))
            gr->keys[uk++] = gr->keys[i];
    gr->nkeys = (uint32_t)uk;
    qsort(gaps, k, sizeof(*gaps), cmp_u32);
    gr->median_gap_ms = k ? q7_u32(gaps, k, 0.5) : 0;
    if (!k)
        gr->first_ts = gr->last_ts = 0;
    free(gaps);
    gr->exact = 1;
    for (uint32_t i = 0; i < u; i++)
        if (member_flagged(g, gr->members[i]))
            gr->exact = 0;
    return 0;
}

static int build(struct gctx *g, struct coordlive_result *res)
{
    for (size_t i = 0; i < g->nqp; i++) {
        const struct pair *p = pair_at(g->cls[g->qp[i].inst], g->qp[i].slot);
        uint32_t x, y;
        if (dense(g, p->a, &x) || dense(g, p->b, &y))
            return -ENOMEM;
        g->uf[uf_find(g->uf, x)] = uf_find(g->uf, y);
    }
    /* group number per root, pairs bucketed by group */
    uint32_t *gid = malloc(((size_t)g->nact + 1) * sizeof(*gid));
    uint32_t *cnt = NULL, *start = NULL, *idx = NULL;
    int rc = -ENOMEM;
    if (!gid)
        goto out;
    uint32_t ng = 0;
    for (uint32_t a = 0; a < g->nact; a++)
        gid[a] = NIL;
    for (uint32_t a = 0; a < g->nact; a++)
        if (gid[uf_find(g->uf, a)] == NIL)
            gid[uf_find(g->uf, a)] = ng++;
    cnt = calloc((size_t)ng + 1, sizeof(*cnt));
    start = calloc((size_t)ng + 1, sizeof(*start));
    idx = malloc((g->nqp + 1) * sizeof(*idx));
    res->groups = calloc((size_t)ng + 1, sizeof(*res->groups));
    if (!cnt || !start || !idx || !res->groups)
        goto out;
    res->ngroups = ng;
    uint32_t *qg = idx; /* first: each pair's group, then reused for the bucketed order */
    for (size_t i = 0; i < g->nqp; i++) {
        const struct pair *p = pair_at(g->cls[g->qp[i].inst], g->qp[i].slot);
        uint32_t x = *u64map_get(&g->amap, p->a);
        cnt[gid[uf_find(g->uf, x)]]++;
    }
    for (uint32_t i = 0; i < ng; i++)
        start[i + 1] = start[i] + cnt[i];
    memset(cnt, 0, (size_t)ng * sizeof(*cnt));
    for (size_t i = 0; i < g->nqp; i++) {
        const struct pair *p = pair_at(g->cls[g->qp[i].inst], g->qp[i].slot);
        uint32_t gi = gid[uf_find(g->uf, *u64map_get(&g->amap, p->a))];
        qg[start[gi] + cnt[gi]++] = (uint32_t)i;
    }
    for (uint32_t i = 0; i < ng; i++)
        if ((rc = fill_group(g, &res->groups[i], idx + start[i], cnt[i])))
            goto out;
    qsort(res->groups, ng, sizeof(*res->groups), cmp_group);
    rc = 0;
out:
    free(gid);
    free(cnt);
    free(start);
    free(idx);
    return rc;
}

int coordlive_groups(struct coordlive *const *cls, size_t n, const struct coordlive_query *q,
                     struct coordlive_result *res)
{
    memset(res, 0, sizeof(*res));
    if (!n || isnan(q->min_ratio) || q->similarity < COORDLIVE_SIM_MAX ||
        q->similarity > COORDLIVE_SIM_JACCARD)
        return -EINVAL;
    struct gctx g = {.cls = cls, .ncls = n, .q = q};
    uint32_t min_repeats = q->min_repeats ? q->min_repeats : COORDLIVE_DEFAULT_HEAVY;
    int rc = u64map_init(&g.amap, 1);
    if (!rc)
        rc = u64map_init(&g.unsure, 0);
    for (size_t i = 0; !rc && i < n; i++)
        rc = collect(&g, (uint32_t)i, min_repeats);
    if (!rc)
        rc = build(&g, res);
    res->exact = result_exact(&g);
    free(g.qp);
    free(g.ids);
    free(g.uf);
    u64map_destroy(&g.amap);
    u64map_destroy(&g.unsure);
    if (rc)
        coordlive_result_free(res);
    return rc;
}

void coordlive_result_free(struct coordlive_result *res)
{
    for (uint32_t i = 0; res->groups && i < res->ngroups; i++) {
        free(res->groups[i].members);
        free(res->groups[i].pairs);
        free(res->groups[i].keys);
    }
    free(res->groups);
    memset(res, 0, sizeof(*res));
}

/* ---------------------------------------------------------------- window estimate */

static int cmp_kts(const void *x, const void *y)
{
    const struct coordlive_kts *a = x, *b = y;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return (a->ts > b->ts) - (a->ts < b->ts);
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static double q7_i64(const int64_t *x, size_t n, double q)
{
    double h = (double)(n - 1) * q;
    size_t lo = (size_t)floor(h);
    if (lo + 1 >= n)
        return (double)x[n - 1];
    return (double)x[lo] + (h - (double)lo) * ((double)x[lo + 1] - (double)x[lo]);
}

/* The smallest rank r (from 1) with r / n > p. */
static size_t rank_above(size_t n, double p)
{
    size_t r = (size_t)floor(p * (double)n) + 1;
    while (r > 1 && (double)(r - 1) / (double)n > p)
        r--;
    while ((double)r / (double)n <= p)
        r++;
    return r;
}

int coordlive_window_estimate(struct coordlive_kts *kts, size_t n, double q, double p, double *est,
                              uint32_t *keys_used)
{
    if (!(q >= 0 && q <= 1 && p >= 0 && p < 1))
        return -EINVAL;
    qsort(kts, n, sizeof(*kts), cmp_kts);
    size_t nk = 0;
    for (size_t i = 0; i < n;) {
        size_t e = i + 1;
        while (e < n && kts[e].key == kts[i].key)
            e++;
        nk += e - i >= 2;
        i = e;
    }
    if (!nk)
        return -ENODATA;
    int64_t *d2 = malloc(nk * sizeof(*d2)), *sorted = malloc(nk * sizeof(*sorted));
    int64_t *tp = malloc(nk * sizeof(*tp));
    if (!d2 || !sorted || !tp) {
        free(d2);
        free(sorted);
        free(tp);
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t e = i + 1;
        while (e < n && kts[e].key == kts[i].key)
            e++;
        if (e - i >= 2) {
            d2[k] = kts[i + 1].ts - kts[i].ts;
            tp[k] = kts[i + rank_above(e - i, p) - 1].ts - kts[i].ts;
            k++;
        }
        i = e;
    }
    memcpy(sorted, d2, nk * sizeof(*d2));
    qsort(sorted, nk, sizeof(*sorted), cmp_i64);
    double Q = q7_i64(sorted, nk, q);
    size_t u = 0;
    for (size_t i = 0; i < nk; i++)
        if ((double)d2[i] <= Q)
            sorted[u++] = tp[i];
    qsort(sorted, u, sizeof(*sorted), cmp_i64);
    *est = q7_i64(sorted, u, p); /* u >= 1: the smallest d2 is <= Q */
    *keys_used = (uint32_t)u;
    free(d2);
    free(sorted);
    free(tp);
    return 0;
}
