/* Event-time retention: cascades whose last activity fell more than --retention before the
 * newest event are evicted with their posts, and every metric is left as if their events had
 * never arrived (actor counters, amplification edges, content lists, the growth index). Sweeps
 * run between two events when the newest ts has moved a step, so a replay of the same events
 * evicts at the same points; freed post and cascade ids are reused by later events. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/bigarr.h"
#include "core/hash.h"
#include "engine/engine_int.h"

#define SEC_MS    1000
#define MIN_STEPS 64 /* the cut moves in steps of retention/64, at least a second */

static int64_t floor_sec(int64_t ms)
{
    return (ms / SEC_MS - (ms % SEC_MS < 0)) * SEC_MS;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? (b > 0 ? INT64_MAX : INT64_MIN) : r;
}

/* ---------------------------------------------------------------- the heap */

static void sift_up(struct rq_entry *h, uint32_t i)
{
    struct rq_entry x = h[i];
    while (i) {
        uint32_t p = (i - 1) / 2;
        if (h[p].ts <= x.ts)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static void sift_down(struct rq_entry *h, uint32_t n, uint32_t i)
{
    struct rq_entry x = h[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h[c + 1].ts < h[c].ts)
            c++;
        if (h[c].ts >= x.ts)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static int grow_rq(struct retention *r, uint32_t need)
{
    if (need <= r->cap_rq)
        return 0;
    uint64_t cap = r->cap_rq ? r->cap_rq : 1024;
    while (cap < need)
        cap *= 2;
    /* no copy past 2 MiB (bigarr: mremap): a realloc of the heap took 42 ms at 7 M events */
    struct rq_entry *q = bigarr_resize(r->rq, r->cap_rq * sizeof(*q), cap * sizeof(*q));
    if (!q)
        return -ENOMEM;
    r->rq = q;
    r->cap_rq = (uint32_t)cap;
    return 0;
}

int retention_reserve(struct engine *e)
{
    return e->ret.ms ? grow_rq(&e->ret, e->ret.nrq + 1) : 0;
}

void retention_filed(struct engine *e, uint32_t cid, int64_t ts)
{
    struct retention *r = &e->ret;
    if (!r->ms)
        return;
    r->rq[r->nrq] = (struct rq_entry){ts, cid};
    sift_up(r->rq, r->nrq++);
}

uint32_t retention_take_cascade(struct engine *e)
{
    struct retention *r = &e->ret;
    uint32_t id = r->free_c;
    if (id != NONE) {
        r->free_c = cascade_free_next(cascade_at(e, id));
        r->nfree_c--;
    }
    return id;
}

void retention_destroy(struct engine *e)
{
    struct retention *r = &e->ret;
    bigarr_free(r->rq, r->cap_rq * sizeof(*r->rq));
    free(r->posts);
    free(r->contents);
    free(r->actors);
    free(r->victims);
    for (int i = 0; i < 2; i++) {
        free(r->gone_actors[i].ids);
        free(r->gone_contents[i].ids);
    }
    u64map_destroy(&r->onpath);
    memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------- names without posts */

/* Where the queue cannot grow the id is simply never reused: memory, not correctness. */
static void queue_gone(struct idq *q, uint32_t id)
{
    if (q->n == q->cap) {
        uint32_t cap = q->cap ? 2 * q->cap : 1024;
        uint32_t *ids = realloc(q->ids, cap * sizeof(uint32_t));
        if (!ids)
            return;
        q->ids = ids;
        q->cap = cap;
    }
    q->ids[q->n++] = id;
}

void retention_gone_content(struct engine *e, uint32_t content)
{
    queue_gone(&e->ret.gone_contents[0], content);
}

static int cmp_id(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    return (a > b) - (a < b);
}

static void sort_unique(struct idq *q)
{
    if (!q->n)
        return;
    qsort(q->ids, q->n, sizeof(uint32_t), cmp_id);
    uint32_t m = 0;
    for (uint32_t i = 0; i < q->n; i++)
        if (m == 0 || q->ids[m - 1] != q->ids[i])
            q->ids[m++] = q->ids[i];
    q->n = m;
}

static int queued(const struct idq *q, uint32_t id)
{
    return q->n && bsearch(&id, q->ids, q->n, sizeof(uint32_t), cmp_id) != NULL;
}

static void delete_actor(struct engine *e, uint32_t id)
{
    intern_del(&e->actor_ids, id);
    memset(actor_at(e, id), 0, sizeof(struct actor));
}

static void delete_content(struct engine *e, uint32_t id)
{
    struct content_list *l = clist_at(e, id);
    intern_del(&e->contents, id);
    if (l->cap) {
        free(l->u.ids);
        e->clist_heap -= (size_t)l->cap * sizeof(uint32_t);
    }
    memset(l, 0, sizeof(*l));
}

/* Deletes the ids of q[1] still without posts and not emptied again since (then q[0] has them
 * and they wait their turn); q[0] becomes q[1]. */
static void release_queue(struct engine *e, struct idq q[2], int contents)
{
    sort_unique(&q[0]);
    sort_unique(&q[1]);
    for (uint32_t i = 0; i < q[1].n; i++) {
        uint32_t id = q[1].ids[i];
        if (queued(&q[0], id))
            continue;
        if (contents && clist_at(e, id)->n == 0)
            delete_content(e, id);
        else if (!contents && actor_at(e, id)->posts == 0)
            delete_actor(e, id);
    }
    struct idq t = q[1];
    q[1] = q[0];
    q[0] = t;
    q[0].n = 0;
}

void retention_release(struct engine *e)
{
    struct retention *r = &e->ret;
    release_queue(e, r->gone_actors, 0);
    release_queue(e, r->gone_contents, 1);
    intern_compact(&e->actor_ids);
    intern_compact(&e->contents);
}

/* ---------------------------------------------------------------- evicting one cascade */

static int ensure(uint32_t **a, uint32_t *cap, uint64_t need)
{
    if (need <= *cap)
        return 0;
    if (need > UINT32_MAX)
        return -ENOMEM;
    uint64_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    uint32_t *p = realloc(*a, (c > UINT32_MAX ? UINT32_MAX : c) * sizeof(uint32_t));
    if (!p)
        return -ENOMEM;
    *a = p;
    *cap = c > UINT32_MAX ? UINT32_MAX : (uint32_t)c;
    return 0;
}

/* Everything evicting cascade c may allocate, before anything changes. */
static int reserve_evict(struct engine *e, const struct cascade *cr)
{
    struct retention *r = &e->ret;
    struct cbody tmp;
    const struct cbody *c = cascade_fig(e, cr, &tmp);
    int rc = ensure(&r->posts, &r->cap_posts, (uint64_t)r->nposts + c->size + c->missing);
    rc = rc ? rc : ensure(&r->contents, &r->cap_contents, (uint64_t)r->ncontents + c->size);
    rc = rc ? rc : ensure(&r->actors, &r->cap_actors, c->unique);
    rc = rc ? rc : u64map_reserve(&r->onpath, c->unique);
    return rc;
}

/* A reshare of `to`'s post by `from` goes: the inverse of engine.c's add_reshare. */
static void drop_reshare(struct engine *e, uint32_t from, uint32_t to)
{
    struct actor *t = actor_at(e, to);
    t->reshares--;
    if (from != to) {
        uint64_t key = u64map_pair(from, to);
        uint32_t *w = u64map_get(&e->edges, key);
        if (w && --*w == 0) {
            u64map_del(&e->edges, key);
            t->amplifiers--;
        }
    }
    engine_touch_actor(e, to);
}

/* Entering post x on the way down. An actor's reach inside the cascade is the nodes below its
 * topmost posts (no post of its own above them), so it loses sub - 1 at each of those. */
static void evict_enter(struct engine *e, uint32_t x)
{
    struct retention *r = &e->ret;
    const struct post *p = post_at(e, x);
    r->posts[r->nposts++] = x;
    if (p->actor == NONE) { /* a placeholder */
        e->placeholders--;
        return;
    }
    uint32_t a = p->actor;
    struct actor *ar = actor_at(e, a);
    int created;
    uint32_t *on = u64map_put(&r->onpath, a, &created);
    if (created)
        r->actors[r->nactors++] = a;
    if ((*on)++ == 0)
        ar->reach -= p->sub - 1;
    ar->posts--;
    if (post_is_root(p)) {
        ar->roots--;
    } else {
        uint32_t to = post_at(e, p->parent)->actor;
        if (to != NONE)
            drop_reshare(e, a, to);
    }
    uint32_t k = p->content & CONTENT_MASK;
    if (k != CONTENT_NONE)
        r->contents[r->ncontents++] = k;
}

static void evict_leave(struct engine *e, uint32_t x)
{
    uint32_t a = post_at(e, x)->actor;
    if (a != NONE)
        --*u64map_get(&e->ret.onpath, a);
}

/* Depth-first over the tree through child, sibling and parent links (no stack). */
static void evict_walk(struct engine *e, uint32_t root)
{
    uint32_t x = root;
    evict_enter(e, x);
    for (;;) {
        const struct post *p = post_at(e, x);
        if (p->child != NONE) {
            x = p->child;
            evict_enter(e, x);
            continue;
        }
        for (;;) {
            evict_leave(e, x);
            if (x == root)
                return;
            p = post_at(e, x);
            if (p->sibling != NONE) {
                x = p->sibling;
                evict_enter(e, x);
                break;
            }
            x = p->parent;
        }
    }
}

/* The cascade's actors lose it; an actor left without posts reads as never seen. */
static void release_actors(struct engine *e, uint32_t cid)
{
    struct retention *r = &e->ret;
    for (uint32_t i = 0; i < r->nactors; i++) {
        uint32_t a = r->actors[i];
        struct actor *ar = actor_at(e, a);
        u64map_del(&e->pairs, u64map_pair(a, cid));
        u64map_del(&r->onpath, a);
        ar->cascades--;
        if (ar->posts == 0) {
            e->live_actors--;
            ar->type = EVENT_ACTOR_ACCOUNT;
            ar->type_explicit = 0;
            queue_gone(&r->gone_actors[0], a);
        }
        engine_touch_actor(e, a);
    }
    r->nactors = 0;
}

/* 0, or -ENOMEM with nothing changed. The posts stay allocated (marked free for the content
 * lists' pruning) until the sweep ends. */
static int evict(struct engine *e, uint32_t cid)
{
    struct retention *r = &e->ret;
    struct cascade *c = cascade_at(e, cid);
    if (reserve_evict(e, c))
        return -ENOMEM;
    labels_unfile(e, cid);
    uint32_t first = r->nposts;
    evict_walk(e, cascade_root(e, c));
    release_actors(e, cid);
    for (uint32_t i = first; i < r->nposts; i++)
        post_at(e, r->posts[i])->sub = 0;
    for (int m = 0; m < ENGINE_CASCADE_METRICS; m++)
        topk_remove(&e->ctop[m], cid);
    struct cbody tmp;
    e->live_cascades--;
    r->evicted_cascades++;
    r->evicted_posts += cascade_fig(e, c, &tmp)->size;
    engine_release_body(e, c); /* before its root's record is cleared */
    return 0;
}

static void free_cascade(struct engine *e, uint32_t cid)
{
    struct cascade *c = cascade_at(e, cid);
    engine_release_body(e, c); /* a joined one's */
    cascade_set_freed(c, e->ret.free_c);
    e->ret.free_c = cid;
    e->ret.nfree_c++;
}

/* ---------------------------------------------------------------- sweeps */

/* The sweep's end: content lists lose the evicted posts, then their ids are freed. */
static void finish_sweep(struct engine *e)
{
    struct retention *r = &e->ret;
    if (r->ncontents) /* qsort's base may not be NULL, even for no elements */
        qsort(r->contents, r->ncontents, sizeof(uint32_t), cmp_id);
    for (uint32_t i = 0; i < r->ncontents; i++)
        if (i == 0 || r->contents[i] != r->contents[i - 1])
            content_prune(e, r->contents[i]);
    for (uint32_t i = 0; i < r->nposts; i++) {
        uint32_t x = r->posts[i];
        if (e->copy)
            copy_note_post(e, x);
        intern_del(&e->post_ids, x);
        struct post *p = post_at(e, x);
        memset(p, 0, sizeof(*p));
        p->parent = p->actor = p->child = p->sibling = NONE;
        p->content = CONTENT_NONE;
    }
    r->nposts = r->ncontents = 0;
    /* long-lived cascades keep a few strings in many chunks: move them so the chunks can go */
    intern_compact(&e->post_ids);
}

/* The cascades with last_ts below cut, off the heap (those active since they were filed are
 * filed again), sorted: the heap's order depends on when each was filed, which a loaded engine
 * (its heap rebuilt from last_ts) does not know, and ids must be freed in an order it can
 * reproduce. A victim the list cannot hold stays on the heap for the next sweep. */
static void take_victims(struct engine *e, int64_t cut)
{
    struct retention *r = &e->ret;
    r->nvictims = 0;
    while (r->nrq && r->rq[0].ts < cut) {
        uint32_t cid = r->rq[0].cid;
        struct cbody tmp;
        int64_t last = cascade_fig(e, cascade_at(e, cid), &tmp)->last_ts;
        if (last >= cut) {
            r->rq[0].ts = last;
            sift_down(r->rq, r->nrq, 0);
            continue;
        }
        if (ensure(&r->victims, &r->cap_victims, (uint64_t)r->nvictims + 1))
            break;
        r->victims[r->nvictims++] = cid;
        r->rq[0] = r->rq[--r->nrq];
        if (r->nrq)
            sift_down(r->rq, r->nrq, 0);
    }
    if (r->nvictims)
        qsort(r->victims, r->nvictims, sizeof(uint32_t), cmp_id);
}

static void sweep(struct engine *e, int64_t cut)
{
    struct retention *r = &e->ret;
    r->cut = cut;
    growth_set_floor(&e->growth, cut);
    take_victims(e, cut);
    for (uint32_t i = 0; i < r->nvictims; i++) {
        uint32_t cid = r->victims[i];
        if (i && cid == r->victims[i - 1])
            continue; /* filed twice: freed once */
        struct cascade *c = cascade_at(e, cid);
        if (!cascade_dead(e, c) && evict(e, cid)) { /* out of memory: the next sweep tries again */
            for (; i < r->nvictims; i++) { /* their entries' room is still there */
                struct cbody tmp;
                const struct cascade *v = cascade_at(e, r->victims[i]);
                retention_filed(e, r->victims[i], cascade_fig(e, v, &tmp)->last_ts);
            }
            break;
        }
        free_cascade(e, cid);
    }
    finish_sweep(e);
}

void retention_maybe_sweep(struct engine *e)
{
    struct retention *r = &e->ret;
    int64_t cut = floor_sec(sat_add(e->growth.newest, -r->ms));
    if (cut > r->cut)
        sweep(e, cut);
    r->sweep_at = sat_add(sat_add(r->cut, r->ms), r->step);
}

/* ---------------------------------------------------------------- turning it on */

/* Edge weights (posts of `from` whose parent is `to`'s), counted from the posts: a map without
 * retention keeps only the edges. */
static int weigh_edges(struct engine *e)
{
    struct u64map w;
    int rc = u64map_init(&w, 1);
    rc = rc ? rc : u64map_reserve(&w, e->edges.count);
    for (uint32_t i = 0; rc == 0 && i < e->posts.len; i++) {
        const struct post *p = post_at(e, i);
        if (p->actor == NONE || post_is_free(p) || post_is_root(p))
            continue;
        uint32_t to = post_at(e, p->parent)->actor;
        if (to == NONE || to == p->actor)
            continue;
        int created;
        if ((rc = u64map_reserve(&w, 1)) == 0)
            ++*u64map_put(&w, u64map_pair(p->actor, to), &created);
    }
    if (rc == 0 && w.count != e->edges.count)
        rc = -EINVAL; /* the posts do not give the edges the engine holds */
    if (rc) {
        u64map_destroy(&w);
        return rc;
    }
    u64map_destroy(&e->edges);
    e->edges = w;
    return 0;
}

/* One heap entry per cascade id in use, keyed by its last_ts. */
static int file_all(struct engine *e)
{
    struct retention *r = &e->ret;
    r->nrq = 0;
    int rc = grow_rq(r, e->cascades.len + 1);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < e->cascades.len; i++) {
        const struct cascade *c = cascade_at(e, i);
        struct cbody tmp;
        if (!cascade_freed(c))
            r->rq[r->nrq++] = (struct rq_entry){cascade_fig(e, c, &tmp)->last_ts, i};
    }
    for (uint32_t i = r->nrq / 2; i-- > 0;)
        sift_down(r->rq, r->nrq, i);
    return 0;
}

int engine_set_retention(struct engine *e, int64_t ms)
{
    struct retention *r = &e->ret;
    if (ms < 0)
        return -EINVAL;
    if (ms == 0) {
        bigarr_free(r->rq, r->cap_rq * sizeof(*r->rq));
        r->rq = NULL;
        r->nrq = r->cap_rq = 0;
        r->ms = 0;
        return 0;
    }
    int rc = e->edges.t.vals ? 0 : weigh_edges(e);
    rc = rc ? rc : file_all(e);
    if (rc)
        return rc;
    r->ms = ms;
    r->step = floor_sec(ms / MIN_STEPS);
    if (r->step < SEC_MS)
        r->step = SEC_MS;
    r->sweep_at = r->cut == INT64_MIN ? INT64_MIN : sat_add(sat_add(r->cut, ms), r->step);
    if (e->growth.has_newest && e->growth.newest >= r->sweep_at)
        retention_maybe_sweep(e);
    return 0;
}
