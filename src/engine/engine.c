/* The engine's write path: applying events to posts, cascades, actors and edges with every
 * metric kept exact. Each event first looks things up and reserves every byte it may need; only
 * then does it change state, so a failure (out of memory, a cycle) leaves nothing half done.
 * A new leaf costs O(depth); a late parent joining a subtree costs O(depth + subtree). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "engine/coordhook.h"
#include "engine/engine_int.h"

/* ---------------------------------------------------------------- lifecycle */

static int ensure_path(struct engine *e, uint32_t n);

int engine_new(struct engine **out)
{
    struct engine *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    segvec_init(&e->posts, sizeof(struct post), POST_SHIFT);
    segvec_init(&e->actors, sizeof(struct actor), ACTOR_SHIFT);
    segvec_init(&e->cascades, sizeof(struct cascade), CASCADE_SHIFT);
    segvec_init(&e->cbodies, sizeof(struct cbody), CBODY_SHIFT);
    e->free_body = NONE;
    segvec_init(&e->clists, sizeof(struct content_list), CLIST_SHIFT);
    int rc = intern_init(&e->post_ids);
    rc = rc ? rc : intern_init(&e->actor_ids);
    rc = rc ? rc : intern_init(&e->contents);
    rc = rc ? rc : intern_init(&e->labels);
    rc = rc ? rc : u64map_init(&e->pairs, 0);
    rc = rc ? rc : u64map_init(&e->edges, 0);
    rc = rc ? rc : u64map_init(&e->ret.onpath, 1);
    e->ret.cut = INT64_MIN;
    e->ret.free_c = NONE;
    for (int m = 0; !rc && m < ENGINE_CASCADE_METRICS; m++)
        rc = topk_init(&e->ctop[m], TOPK_CAP, m != ENGINE_BY_VIRALITY);
    for (int m = 0; !rc && m < ENGINE_ACTOR_METRICS; m++)
        rc = topk_init(&e->atop[m], TOPK_CAP, 1);
    rc = rc ? rc : ensure_path(e, 64);
    rc = rc ? rc : growth_init(&e->growth);
    if (rc) {
        engine_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void engine_free(struct engine *e)
{
    if (!e)
        return;
    for (uint32_t i = 0; i < e->cbodies.len; i++)
        if (cbody_at(e, i)->cap_log2)
            free(cbody_at(e, i)->lv.ext);
    segvec_destroy(&e->posts);
    segvec_destroy(&e->actors);
    segvec_destroy(&e->cascades);
    segvec_destroy(&e->cbodies);
    intern_destroy(&e->post_ids);
    intern_destroy(&e->actor_ids);
    intern_destroy(&e->contents);
    intern_destroy(&e->labels);
    u64map_destroy(&e->pairs);
    u64map_destroy(&e->edges);
    for (int m = 0; m < ENGINE_CASCADE_METRICS; m++)
        topk_destroy(&e->ctop[m]);
    for (int m = 0; m < ENGINE_ACTOR_METRICS; m++)
        topk_destroy(&e->atop[m]);
    free(e->path);
    free(e->tracked);
    free(e->dirty_c);
    free(e->dirty_a);
    copy_job_free(e);
    growth_destroy(&e->growth);
    content_destroy(e);
    retention_destroy(e);
    labels_destroy(e);
    free(e);
}

/* ---------------------------------------------------------------- small helpers */

uint32_t engine_find_cascade(const struct engine *e, uint32_t post)
{
    const struct post *p = post_at(e, post);
    while (!post_is_root(p))
        p = post_at(e, p->parent);
    return p->parent & ~ROOT_FLAG;
}

uint32_t engine_live_cascade(const struct engine *e, uint32_t cid)
{
    /* a joined cascade's root now hangs below a post of the cascade it joined */
    const struct cascade *c = cascade_at(e, cid);
    return cascade_dead(e, c) ? engine_find_cascade(e, cascade_root(e, c)) : cid;
}

uint64_t engine_cascade_key(const struct cbody *c, int metric)
{
    switch (metric) {
    case ENGINE_BY_SIZE:
        return c->size;
    case ENGINE_BY_DEPTH:
        return c->depth;
    case ENGINE_BY_MAX_BREADTH:
        return c->max_breadth;
    case ENGINE_BY_UNIQUE_ACTORS:
        return c->unique;
    case ENGINE_BY_LAST_TS:
        return (uint64_t)c->last_ts ^ (1ull << 63);
    default: {
        /* non-negative doubles order like their bit patterns */
        double sv = cascade_virality(c);
        uint64_t bits;
        memcpy(&bits, &sv, sizeof(bits));
        return bits;
    }
    }
}

uint64_t engine_actor_key(const struct actor *a, int metric)
{
    switch (metric) {
    case ENGINE_BY_REACH:
        return a->reach;
    case ENGINE_BY_RESHARES:
        return a->reshares;
    case ENGINE_BY_AMPLIFIERS:
        return a->amplifiers;
    default:
        return a->posts;
    }
}

static void index_cascade(struct engine *e, uint32_t cid)
{
    struct cbody tmp;
    const struct cbody *c = cascade_fig(e, cascade_at(e, cid), &tmp);
    for (int m = 0; m < ENGINE_CASCADE_METRICS; m++)
        topk_update(&e->ctop[m], cid, engine_cascade_key(c, m));
}

static void index_actor(struct engine *e, uint32_t aid)
{
    const struct actor *a = actor_at(e, aid);
    for (int m = 0; m < ENGINE_ACTOR_METRICS; m++) {
        if (a->posts)
            topk_update(&e->atop[m], aid, engine_actor_key(a, m));
        else /* every post of it evicted: it reads as unknown */
            topk_remove(&e->atop[m], aid);
    }
}

/* Appends id to a dirty list; -ENOMEM if it cannot grow. */
static int push_dirty(uint32_t **list, uint32_t *n, uint32_t *cap, uint32_t id)
{
    if (*n == *cap) {
        uint32_t ncap = *cap ? *cap * 2 : 4096;
        uint32_t *l = realloc(*list, ncap * sizeof(uint32_t));
        if (!l)
            return -ENOMEM;
        *list = l;
        *cap = ncap;
    }
    (*list)[(*n)++] = id;
    return 0;
}

/* A hot cascade gets many events between two top-k reads: its keys are indexed once, when the
 * next read needs them (engine_flush_cascades), not per event. Where the list cannot grow, index
 * now. */
static void touch_cascade(struct engine *e, uint32_t cid)
{
    struct cascade *c = cascade_at(e, cid);
    if (c->lab & CASCADE_DIRTY)
        return;
    if (push_dirty(&e->dirty_c, &e->ndirty_c, &e->cap_dirty_c, cid))
        index_cascade(e, cid);
    else
        c->lab |= CASCADE_DIRTY;
}

static void touch_actor(struct engine *e, uint32_t aid)
{
    struct actor *a = actor_at(e, aid);
    if (e->copy) /* every change to a reach touches its actor */
        copy_note_actor(e, aid);
    if (a->dirty)
        return;
    if (push_dirty(&e->dirty_a, &e->ndirty_a, &e->cap_dirty_a, aid))
        index_actor(e, aid);
    else
        a->dirty = 1;
}

void engine_touch_actor(struct engine *e, uint32_t aid)
{
    touch_actor(e, aid);
}

/* Re-indexes the oldest records waiting on the dirty lists named by which (FLUSH_CASCADES,
 * FLUSH_ACTORS), at most max of each, and never the newest keep (the likeliest to be touched
 * again); the rest move to the front. */
#define FLUSH_CASCADES 1
#define FLUSH_ACTORS   2
static void flush_dirty(struct engine *e, int which, uint32_t keep, uint32_t max)
{
    if ((which & FLUSH_CASCADES) && e->ndirty_c > keep) {
        uint32_t k = e->ndirty_c - keep < max ? e->ndirty_c - keep : max;
        for (uint32_t i = 0; i < k; i++) {
            struct cascade *c = cascade_at(e, e->dirty_c[i]);
            c->lab &= ~CASCADE_DIRTY;
            if (!cascade_dead(e, c))
                index_cascade(e, e->dirty_c[i]);
        }
        e->ndirty_c -= k;
        memmove(e->dirty_c, e->dirty_c + k, e->ndirty_c * sizeof(uint32_t));
    }
    if ((which & FLUSH_ACTORS) && e->ndirty_a > keep) {
        uint32_t k = e->ndirty_a - keep < max ? e->ndirty_a - keep : max;
        for (uint32_t i = 0; i < k; i++) {
            actor_at(e, e->dirty_a[i])->dirty = 0;
            index_actor(e, e->dirty_a[i]);
        }
        e->ndirty_a -= k;
        memmove(e->dirty_a, e->dirty_a + k, e->ndirty_a * sizeof(uint32_t));
    }
}

/* What a top-k read of one kind needs: its own list only (a top_cascades read flushing up to
 * 4,096 dirty actors too held point queries behind it: bench/results/query-tail-2026-12-08.md). */
void engine_flush_cascades(struct engine *e)
{
    flush_dirty(e, FLUSH_CASCADES, 0, UINT32_MAX);
}

void engine_flush_actors(struct engine *e)
{
    flush_dirty(e, FLUSH_ACTORS, 0, UINT32_MAX);
}

static void next_stamp(struct engine *e)
{
    if (++e->stamp == 0) {
        for (uint32_t i = 0; i < e->actors.len; i++)
            actor_at(e, i)->stamp = 0;
        e->stamp = 1;
    }
}

/* Grows the path scratch (and the tracked-actor scratch beside it) to hold n entries. */
static int ensure_path(struct engine *e, uint32_t n)
{
    if (n <= e->path_cap)
        return 0;
    uint32_t cap = e->path_cap ? e->path_cap : 64;
    while (cap < n)
        cap *= 2;
    uint32_t *p = realloc(e->path, cap * sizeof(uint32_t));
    if (!p)
        return -ENOMEM;
    e->path = p;
    uint32_t *t = realloc(e->tracked, 3 * (size_t)cap * sizeof(uint32_t));
    if (!t)
        return -ENOMEM;
    e->tracked = t;
    e->path_cap = cap;
    return 0;
}

/* Collects q and its ancestors into e->path (q first, root last). */
static int walk_up(struct engine *e, uint32_t q, uint32_t *len)
{
    uint32_t n = 0;
    for (;;) {
        if (n == e->path_cap && ensure_path(e, n + 1))
            return -ENOMEM;
        e->path[n++] = q;
        const struct post *p = post_at(e, q);
        if (post_is_root(p))
            break;
        q = p->parent;
    }
    *len = n;
    return 0;
}

/* Makes room for n levels (depths 0..n-1); depth 0 is not stored. */
static int ensure_levels(struct cbody *c, uint32_t n)
{
    uint32_t cap = c->cap_log2 ? 1u << c->cap_log2 : 2, want = n - 1;
    if (want <= cap)
        return 0;
    uint8_t log2 = 2;
    while ((1u << log2) < want)
        log2++;
    uint32_t ncap = 1u << log2;
    uint32_t *lv = realloc(c->cap_log2 ? c->lv.ext : NULL, ncap * sizeof(uint32_t));
    if (!lv)
        return -ENOMEM;
    if (!c->cap_log2)
        memcpy(lv, c->lv.inl, sizeof(c->lv.inl));
    memset(lv + cap, 0, (ncap - cap) * sizeof(uint32_t));
    c->lv.ext = lv;
    c->cap_log2 = log2;
    return 0;
}

/* The body of cascade c, made from its single node's figures if it has none yet (room for one
 * body must have been reserved: segvec_reserve(&e->cbodies, 1)). */
static struct cbody *cascade_body(struct engine *e, struct cascade *c)
{
    if (c->rb & CASCADE_BODY)
        return cbody_at(e, c->rb & ~CASCADE_BODY);
    struct cbody one;
    cascade_fig(e, c, &one);
    uint32_t id = e->free_body;
    struct cbody *b;
    if (id != NONE) {
        b = cbody_at(e, id);
        e->free_body = b->size;
    } else {
        id = e->cbodies.len;
        b = segvec_push(&e->cbodies);
    }
    *b = one;
    c->rb = CASCADE_BODY | id;
    return b;
}

void engine_release_body(struct engine *e, struct cascade *c)
{
    uint32_t id = cascade_body_id(c);
    if (id == NONE)
        return;
    struct cbody *b = cbody_at(e, id);
    if (b->cap_log2)
        free(b->lv.ext);
    c->rb = b->root; /* the record alone names the root again */
    *b = (struct cbody){.size = e->free_body};
    e->free_body = id;
}

/* ---------------------------------------------------------------- lookups and reservation */

/* What an event resolves to before anything changes. */
struct plan {
    const char *ps, *qs, *as;
    uint64_t ph, qh, ah, ch;
    uint32_t p, q, a; /* NONE: not known yet */
    uint32_t content; /* the event's content id; NONE: none, or not interned yet */
    uint32_t plen;    /* ancestors of q collected in e->path */
};

static uint32_t count_children(const struct engine *e, uint32_t p)
{
    uint32_t n = 0;
    for (uint32_t x = post_at(e, p)->child; x != NONE; x = post_at(e, x)->sibling)
        n++;
    return n;
}

/* Levels the receiving cascade needs once the event is applied. */
static uint32_t levels_needed(const struct engine *e, const struct plan *pl, int has_parent)
{
    if (!has_parent)
        return 0;
    struct cbody tmp;
    if (pl->q == NONE) {
        if (pl->p == NONE)
            return 0;
        const struct cascade *t = cascade_at(e, post_at(e, pl->p)->parent & ~ROOT_FLAG);
        return cascade_fig(e, t, &tmp)->depth + 2;
    }
    const struct cascade *c = cascade_at(e, post_at(e, e->path[pl->plen - 1])->parent & ~ROOT_FLAG);
    uint32_t deepest = pl->plen, cdepth = cascade_fig(e, c, &tmp)->depth;
    if (pl->p != NONE)
        deepest += cascade_fig(e, cascade_at(e, post_at(e, pl->p)->parent & ~ROOT_FLAG), &tmp)->depth;
    return (deepest > cdepth ? deepest : cdepth) + 1;
}

static int reserve(struct engine *e, const struct event *ev, const struct plan *pl)
{
    int has_parent = event_has_parent(ev);
    uint32_t new_posts = (pl->p == NONE) + (has_parent && pl->q == NONE);
    uint32_t bytes = (pl->p == NONE ? ev->post.len : 0) + (has_parent ? ev->parent.len : 0);
    uint32_t edges = 1 + (pl->p != NONE ? count_children(e, pl->p) : 0);
    int rc = intern_reserve(&e->post_ids, new_posts, bytes);
    rc = rc ? rc : segvec_reserve(&e->posts, new_posts);
    rc = rc ? rc : intern_reserve(&e->actor_ids, 1, ev->actor.len);
    rc = rc ? rc : segvec_reserve(&e->actors, 1);
    rc = rc ? rc : intern_reserve(&e->contents, 1, ev->content_len);
    if (!rc && ev->content)
        rc = content_reserve(e, pl->content);
    rc = rc ? rc : growth_reserve(&e->growth, ev->ts);
    rc = rc ? rc : intern_reserve(&e->labels, 1, ev->label_len);
    if (!rc && ev->label && e->labels.count >= LABEL_MAX && /* cascade.lab's 31 bits */
        intern_find(&e->labels, ev->label, ev->label_len, hash_bytes(ev->label, ev->label_len)) ==
            NONE)
        rc = -E2BIG;
    rc = rc ? rc : segvec_reserve(&e->cascades, 1);
    rc = rc ? rc : segvec_reserve(&e->cbodies, 1); /* at most one cascade gets a body */
    rc = rc ? rc : retention_reserve(e);
    rc = rc ? rc : u64map_reserve(&e->pairs, 1);
    rc = rc ? rc : u64map_reserve(&e->edges, edges);
    uint32_t lv = levels_needed(e, pl, has_parent);
    if (!rc && lv > 3) { /* more than inline levels; the body is the one the event makes */
        uint32_t root = pl->q != NONE ? e->path[pl->plen - 1] : pl->p;
        struct cascade *c = cascade_at(e, post_at(e, root)->parent & ~ROOT_FLAG);
        rc = ensure_levels(cascade_body(e, c), lv);
    }
    return rc;
}

/* ---------------------------------------------------------------- records */

static uint32_t new_post(struct engine *e, const char *s, uint32_t len, uint64_t hash)
{
    uint32_t id = intern_add(&e->post_ids, s, len, hash);
    struct post *p = id < e->posts.len ? post_at(e, id) : segvec_push(&e->posts);
    memset(p, 0, sizeof(*p));
    p->parent = p->actor = p->child = p->sibling = NONE;
    p->content = CONTENT_NONE;
    if (e->copy)
        copy_note_post(e, id);
    return id;
}

static uint32_t new_placeholder(struct engine *e, const struct plan *pl, uint32_t len)
{
    e->placeholders++;
    return new_post(e, pl->qs, len, pl->qh);
}

/* A new cascade rooted at root; with_body: it starts with more than one node. */
static uint32_t new_cascade(struct engine *e, uint32_t root, int64_t ts, int with_body)
{
    uint32_t id = retention_take_cascade(e);
    struct cascade *c;
    if (id == NONE) {
        id = e->cascades.len;
        c = segvec_push(&e->cascades);
    } else {
        c = cascade_at(e, id);
    }
    retention_filed(e, id, ts);
    c->rb = root;
    c->lab = LABEL_NIL;
    post_at(e, root)->parent = ROOT_FLAG | id;
    if (with_body) {
        struct cbody *b = cascade_body(e, c);
        *b = (struct cbody){.root = root, .first_ts = ts, .last_ts = ts};
    }
    e->live_cascades++;
    return id;
}

static uint32_t intern_opt(struct intern *t, const char *s, uint32_t len)
{
    if (!s)
        return NONE;
    uint64_t h = hash_bytes(s, len);
    uint32_t id = intern_find(t, s, len, h);
    return id != NONE ? id : intern_add(t, s, len, h);
}

static uint32_t get_actor(struct engine *e, const struct event *ev, const struct plan *pl)
{
    uint32_t a = pl->a;
    if (a == NONE) {
        a = intern_add(&e->actor_ids, pl->as, ev->actor.len, pl->ah);
        struct actor *r = a < e->actors.len ? actor_at(e, a) : segvec_push(&e->actors);
        memset(r, 0, sizeof(*r));
        r->type = EVENT_ACTOR_ACCOUNT;
    }
    struct actor *r = actor_at(e, a);
    if (ev->actor_type != EVENT_ACTOR_UNSPECIFIED && !r->type_explicit) {
        r->type = ev->actor_type;
        r->type_explicit = 1;
    }
    if (r->posts++ == 0) {
        r->first_ts = r->last_ts = ev->ts;
        e->live_actors++;
    }
    if (ev->ts < r->first_ts)
        r->first_ts = ev->ts;
    if (ev->ts > r->last_ts)
        r->last_ts = ev->ts;
    r->roots += !event_has_parent(ev);
    return a;
}

static void set_observed(struct engine *e, uint32_t p, uint32_t a, const struct event *ev,
                         uint32_t content)
{
    struct post *r = post_at(e, p);
    r->actor = a;
    r->ts = ev->ts;
    r->content = (content == NONE ? CONTENT_NONE : content) | (uint32_t)ev->kind << 30;
}

/* The event's content id, interned (with its post list) if new; NONE without content. */
static uint32_t event_content(struct engine *e, const struct event *ev, const struct plan *pl)
{
    if (!ev->content || pl->content != NONE)
        return pl->content;
    uint32_t id = intern_add(&e->contents, ev->content, ev->content_len, pl->ch);
    content_new(e, id);
    return id;
}

static void link_child(struct engine *e, uint32_t parent, uint32_t child)
{
    struct post *c = post_at(e, child), *p = post_at(e, parent);
    c->parent = parent;
    c->sibling = p->child;
    p->child = child;
}

static void cascade_ts(struct cbody *c, int64_t ts)
{
    if (ts < c->first_ts)
        c->first_ts = ts;
    if (ts > c->last_ts)
        c->last_ts = ts;
}

/* DESIGN §2: a cascade's label is its root's, else the earliest (by ts) labelled post's. A post
 * that is not the root makes a second node: c has its body then. */
static void offer_label(struct engine *e, struct cascade *c, uint32_t label, int64_t ts,
                        int is_root)
{
    if (label == NONE)
        return;
    uint32_t body = cascade_body_id(c);
    if (is_root) {
        cascade_set_label(c, label);
        if (body != NONE) /* a single node's label can only be its root's */
            cbody_at(e, body)->label_root = 1;
        return;
    }
    struct cbody *b = cbody_at(e, body);
    if (!b->label_root && (cascade_label(c) == NONE || ts < b->label_ts)) {
        cascade_set_label(c, label);
        b->label_ts = ts;
    }
}

static void add_level(struct cbody *c, uint32_t depth, uint32_t count)
{
    if (depth == 0) { /* the root, alone at its depth */
        if (c->max_breadth < 1)
            c->max_breadth = 1;
        return;
    }
    uint32_t *lv = cascade_level(c, depth);
    *lv += count;
    if (*lv > c->max_breadth)
        c->max_breadth = *lv;
    if (depth > c->depth)
        c->depth = depth;
}

/* The actor of cascade cid's root post: NONE for a placeholder. It is in the cascade without
 * a pair (engine.pairs). */
static uint32_t root_actor(const struct engine *e, uint32_t cid)
{
    return post_at(e, cascade_root(e, cascade_at(e, cid)))->actor;
}

/* Whether actor a posted in cascade cid. */
static int in_cascade(const struct engine *e, uint32_t a, uint32_t cid)
{
    return a == root_actor(e, cid) || u64map_has(&e->pairs, u64map_pair(a, cid));
}

/* Records that actor a, not the root's actor, posted in cascade cid (which has its body). */
static void add_pair(struct engine *e, uint32_t a, uint32_t cid)
{
    int created;
    u64map_put(&e->pairs, u64map_pair(a, cid), &created);
    if (created) {
        cbody_at(e, cascade_body_id(cascade_at(e, cid)))->unique++;
        actor_at(e, a)->cascades++;
    }
}

/* Actor `from` reshared a post of `parent`'s actor (if the parent is observed). */
static void add_reshare(struct engine *e, uint32_t parent, uint32_t from)
{
    uint32_t to = post_at(e, parent)->actor;
    if (to == NONE)
        return;
    struct actor *t = actor_at(e, to);
    t->reshares++;
    if (from != to) {
        int created;
        uint32_t *w = u64map_put(&e->edges, u64map_pair(from, to), &created);
        if (w) /* weights are kept only under retention, which takes them away again */
            ++*w;
        t->amplifiers += created;
    }
    touch_actor(e, to);
}

/* ---------------------------------------------------------------- subtree walks */

/* Visits the subtree of root depth-first without a stack, through parent and sibling links:
 * enter() on the way down, leave() on the way up. */
typedef void (*visit_fn)(struct engine *e, uint32_t node, void *ctx);

static void visit_subtree(struct engine *e, uint32_t root, visit_fn enter, visit_fn leave,
                          void *ctx)
{
    uint32_t x = root;
    enter(e, x, ctx);
    for (;;) {
        const struct post *p = post_at(e, x);
        if (p->child != NONE) {
            x = p->child;
            enter(e, x, ctx);
            continue;
        }
        for (;;) {
            if (leave)
                leave(e, x, ctx);
            if (x == root)
                return;
            p = post_at(e, x);
            if (p->sibling != NONE) {
                x = p->sibling;
                enter(e, x, ctx);
                break;
            }
            x = p->parent;
        }
    }
}

/* Reach within a subtree: for each tracked actor, how many nodes have a proper ancestor inside
 * the subtree posted by that actor. tracked[0..n) are actors, cnt and within are counters. */
struct reach_ctx {
    const uint32_t *tracked;
    uint32_t *cnt, *within;
    uint32_t n;
};

static void reach_enter(struct engine *e, uint32_t node, void *arg)
{
    struct reach_ctx *r = arg;
    uint32_t a = post_at(e, node)->actor;
    for (uint32_t i = 0; i < r->n; i++) {
        r->within[i] += r->cnt[i] > 0;
        r->cnt[i] += r->tracked[i] == a;
    }
}

static void reach_leave(struct engine *e, uint32_t node, void *arg)
{
    struct reach_ctx *r = arg;
    uint32_t a = post_at(e, node)->actor;
    for (uint32_t i = 0; i < r->n; i++)
        r->cnt[i] -= r->tracked[i] == a;
}

/* Fills e->tracked[2n..3n) with each tracked actor's reach inside root's subtree. */
static uint32_t *reach_within(struct engine *e, uint32_t root, uint32_t n)
{
    struct reach_ctx r = {e->tracked, e->tracked + n, e->tracked + 2 * n, n};
    memset(r.cnt, 0, 2 * (size_t)n * sizeof(uint32_t));
    visit_subtree(e, root, reach_enter, reach_leave, &r);
    return r.within;
}

/* Moves a joined subtree's (actor, cascade) pairs from cascade `from` to `to` (whose root's
 * actor is to_root). */
struct rekey_ctx {
    uint32_t from, to, to_root;
};

/* Actor a, a member of the joined cascade, becomes one of k->to. */
static void rekey_actor(struct engine *e, uint32_t a, const struct rekey_ctx *k)
{
    int created = 0;
    if (a != k->to_root)
        u64map_put(&e->pairs, u64map_pair(a, k->to), &created);
    if (created) /* `to` received a subtree: it has a body */
        cbody_at(e, cascade_body_id(cascade_at(e, k->to)))->unique++;
    else
        actor_at(e, a)->cascades--; /* it was counted in both */
}

static void rekey_enter(struct engine *e, uint32_t node, void *arg)
{
    struct rekey_ctx *k = arg;
    uint32_t a = post_at(e, node)->actor;
    if (a != NONE && u64map_del(&e->pairs, u64map_pair(a, k->from)))
        rekey_actor(e, a, k);
}

/* ---------------------------------------------------------------- new posts */

static void add_root(struct engine *e, uint32_t p, uint32_t a, const struct event *ev,
                     uint32_t label)
{
    uint32_t cid = new_cascade(e, p, ev->ts, 0); /* a single node: no body */
    struct cascade *c = cascade_at(e, cid);
    post_at(e, p)->sub = 1;
    offer_label(e, c, label, ev->ts, 1);
    actor_at(e, a)->cascades++; /* the root's actor: no pair */
    touch_cascade(e, cid);
    labels_after(e, cid, NULL);
}

static void add_under_placeholder(struct engine *e, uint32_t p, uint32_t a, const struct event *ev,
                                  const struct plan *pl, uint32_t label)
{
    uint32_t q = new_placeholder(e, pl, ev->parent.len);
    uint32_t cid = new_cascade(e, q, ev->ts, 1);
    struct cascade *c = cascade_at(e, cid);
    struct cbody *b = cbody_at(e, cascade_body_id(c));
    link_child(e, q, p);
    post_at(e, q)->sub = 2;
    post_at(e, p)->sub = 1;
    b->size = b->missing = 1;
    add_level(b, 0, 1);
    add_level(b, 1, 1);
    b->s1 = b->s2 = 1;
    offer_label(e, c, label, ev->ts, 0);
    add_pair(e, a, cid);
    touch_cascade(e, cid);
    labels_after(e, cid, NULL);
}

/* Actors on the path e->path[0..plen), each once, into e->tracked; returns how many. */
static uint32_t path_actors(struct engine *e, uint32_t plen)
{
    uint32_t n = 0;
    next_stamp(e);
    for (uint32_t i = 0; i < plen; i++) {
        uint32_t a = post_at(e, e->path[i])->actor;
        if (a == NONE || actor_at(e, a)->stamp == e->stamp)
            continue;
        actor_at(e, a)->stamp = e->stamp;
        e->tracked[n++] = a;
    }
    return n;
}

/* Counts a new post below the ancestors in e->path[0..plen) for reach, once per actor. */
static void count_reach(struct engine *e, uint32_t plen)
{
    uint32_t n = path_actors(e, plen);
    for (uint32_t i = 0; i < n; i++) {
        actor_at(e, e->tracked[i])->reach++;
        touch_actor(e, e->tracked[i]);
    }
}

/* The common case: a new post under a known parent e->path[0]. */
static void add_leaf(struct engine *e, uint32_t p, uint32_t a, const struct event *ev,
                     uint32_t plen, uint32_t label)
{
    uint32_t root = e->path[plen - 1];
    uint32_t cid = post_at(e, root)->parent & ~ROOT_FLAG;
    struct cascade *c = cascade_at(e, cid);
    struct labels_was was;
    labels_before(e, cid, &was);
    struct cbody *b = cascade_body(e, c);
    for (uint32_t i = 0; i + 1 < plen; i++) {
        struct post *x = post_at(e, e->path[i]);
        b->s2 += 2ull * x->sub + 1;
        x->sub++;
    }
    post_at(e, root)->sub++;
    b->s1 += plen;
    b->s2 += 1;
    link_child(e, e->path[0], p);
    post_at(e, p)->sub = 1;
    add_level(b, plen, 1);
    b->size++;
    cascade_ts(b, ev->ts);
    offer_label(e, c, label, ev->ts, 0);
    if (a != post_at(e, root)->actor)
        add_pair(e, a, cid);
    count_reach(e, plen);
    add_reshare(e, e->path[0], a);
    touch_cascade(e, cid);
    labels_after(e, cid, &was);
}

/* ---------------------------------------------------------------- late parents */

/* Placeholder p, root of cascade tid, gets its own event: it becomes a post of actor a. */
static void fill(struct engine *e, uint32_t p, uint32_t a, const struct event *ev, uint32_t tid,
                 uint32_t content)
{
    /* p is a placeholder: tid has more than one node, so a body */
    struct cbody *t = cbody_at(e, cascade_body_id(cascade_at(e, tid)));
    uint32_t below = post_at(e, p)->sub - 1, already = 0;
    if (e->copy) /* its children's shares appear; reroot or join may move the subtree */
        copy_note_subtree(e, p);
    int member = u64map_has(&e->pairs, u64map_pair(a, tid));
    if (member) {
        /* a posted inside the subtree: some of it is in a's reach already */
        e->tracked[0] = a;
        already = reach_within(e, p, 1)[0];
    }
    set_observed(e, p, a, ev, content);
    e->placeholders--;
    t->missing--;
    t->size++;
    cascade_ts(t, ev->ts);
    /* a is the root's actor now: in tid without a pair */
    if (member) {
        u64map_del(&e->pairs, u64map_pair(a, tid));
    } else {
        t->unique++;
        actor_at(e, a)->cascades++;
    }
    struct actor *r = actor_at(e, a);
    r->reach += below - already;
    for (uint32_t x = post_at(e, p)->child; x != NONE; x = post_at(e, x)->sibling)
        add_reshare(e, p, post_at(e, x)->actor);
    touch_actor(e, a);
}

/* Filled post p (root of tid) whose parent is unknown: a new placeholder goes above it. */
static void reroot(struct engine *e, uint32_t p, const struct event *ev, const struct plan *pl,
                   uint32_t tid, uint32_t label)
{
    struct cascade *tc = cascade_at(e, tid);
    struct cbody *t = cbody_at(e, cascade_body_id(tc)); /* p was a placeholder */
    uint32_t q = new_placeholder(e, pl, ev->parent.len);
    uint64_t n = post_at(e, p)->sub;
    struct post *qr = post_at(e, q);
    qr->parent = ROOT_FLAG | tid;
    qr->sub = (uint32_t)n + 1;
    qr->child = p;
    post_at(e, p)->parent = q;
    t->root = q;
    int created; /* p's actor is no longer the root's: it takes a pair (fill left none) */
    u64map_put(&e->pairs, u64map_pair(post_at(e, p)->actor, tid), &created);
    t->missing++;
    uint32_t *lv = cascade_level(t, 1);
    memmove(lv + 1, lv, t->depth * sizeof(uint32_t));
    lv[0] = 1; /* the old root, now at depth 1 */
    t->depth++;
    t->s1 += n;
    t->s2 += n * n;
    offer_label(e, tc, label, ev->ts, 0);
    touch_cascade(e, tid);
}

/* Every path actor now reaches the whole joined subtree, less what it reached there already. */
static void join_reach(struct engine *e, uint32_t p, uint32_t tid, uint32_t plen, uint32_t n_t)
{
    uint32_t n = path_actors(e, plen);
    uint32_t *within = NULL;
    for (uint32_t i = 0; i < n && !within; i++)
        if (in_cascade(e, e->tracked[i], tid))
            within = reach_within(e, p, n);
    for (uint32_t i = 0; i < n; i++) {
        actor_at(e, e->tracked[i])->reach += n_t - (within ? within[i] : 0);
        touch_actor(e, e->tracked[i]);
    }
}

static void join_shape(struct cascade *cc, struct cbody *c, const struct cascade *tc,
                       struct cbody *t, uint32_t plen)
{
    for (uint32_t k = 0; k <= t->depth; k++)
        add_level(c, plen + k, k ? *cascade_level(t, k) : 1);
    c->size += t->size;
    c->missing += t->missing;
    cascade_ts(c, t->first_ts);
    cascade_ts(c, t->last_ts);
    if (!c->label_root && cascade_label(tc) != NONE &&
        (cascade_label(cc) == NONE || t->label_ts < c->label_ts)) {
        cascade_set_label(cc, cascade_label(tc));
        c->label_ts = t->label_ts;
    }
}

static void kill_cascade(struct engine *e, uint32_t tid)
{
    /* the body is kept: retention reads its last_ts, engine_live_cascade its root */
    struct cbody *t = cbody_at(e, cascade_body_id(cascade_at(e, tid)));
    t->dead = 1;
    if (t->cap_log2)
        free(t->lv.ext);
    t->cap_log2 = 0;
    e->live_cascades--;
    for (int m = 0; m < ENGINE_CASCADE_METRICS; m++)
        topk_remove(&e->ctop[m], tid);
}

/* Filled post p, root of cascade tid, joins below e->path[0] in that post's cascade. */
static void join(struct engine *e, uint32_t p, uint32_t a, uint32_t tid, uint32_t plen,
                 const struct event *ev, uint32_t label)
{
    uint32_t root = e->path[plen - 1];
    uint32_t cid = post_at(e, root)->parent & ~ROOT_FLAG;
    struct cascade *cc = cascade_at(e, cid), *tc = cascade_at(e, tid);
    struct labels_was was;
    labels_before(e, cid, &was);
    struct cbody *c = cascade_body(e, cc), *t = cbody_at(e, cascade_body_id(tc));
    uint64_t n_t = post_at(e, p)->sub;

    join_reach(e, p, tid, plen, (uint32_t)n_t);
    for (uint32_t i = 0; i + 1 < plen; i++) {
        struct post *x = post_at(e, e->path[i]);
        c->s2 += 2 * (uint64_t)x->sub * n_t + n_t * n_t;
        x->sub += (uint32_t)n_t;
    }
    post_at(e, root)->sub += (uint32_t)n_t;
    c->s1 += t->s1 + n_t * plen;
    c->s2 += t->s2 + n_t * n_t;
    join_shape(cc, c, tc, t, plen);
    offer_label(e, cc, label, ev->ts, 0);
    struct rekey_ctx k = {tid, cid, root_actor(e, cid)};
    rekey_actor(e, a, &k); /* tid's root's actor: no pair to move (fill left none) */
    visit_subtree(e, p, rekey_enter, NULL, &k);
    link_child(e, e->path[0], p);
    add_reshare(e, e->path[0], a);
    kill_cascade(e, tid);
    touch_cascade(e, cid);
    labels_after(e, cid, &was);
}

/* ---------------------------------------------------------------- apply */

/* hashes of the event's ids, computed ahead by the prefetch pipeline */
struct ev_hashes {
    uint64_t ph, qh, ah;
    uint32_t qp, ap; /* stage_peek's guesses at the parent's and actor's ids, for stage_near */
};

static int plan_event(struct engine *e, const struct event *ev, const struct ev_hashes *h,
                      struct plan *pl)
{
    pl->ps = event_id_str(&ev->post);
    pl->ph = h->ph;
    pl->p = intern_find(&e->post_ids, pl->ps, ev->post.len, pl->ph);
    if (pl->p != NONE && post_at(e, pl->p)->actor != NONE)
        return EVENT_DUP;
    pl->q = NONE;
    pl->plen = 0;
    if (event_has_parent(ev)) {
        pl->qs = event_id_str(&ev->parent);
        pl->qh = h->qh;
        pl->q = intern_find(&e->post_ids, pl->qs, ev->parent.len, pl->qh);
        if (pl->q != NONE) {
            if (walk_up(e, pl->q, &pl->plen))
                return EVENT_ERR_NOMEM;
            if (pl->p != NONE && e->path[pl->plen - 1] == pl->p)
                return EVENT_REJ_CYCLE;
        }
    }
    pl->as = event_id_str(&ev->actor);
    pl->ah = h->ah;
    pl->a = intern_find(&e->actor_ids, pl->as, ev->actor.len, pl->ah);
    pl->content = NONE;
    if (ev->content) {
        pl->ch = hash_bytes(ev->content, ev->content_len);
        pl->content = intern_find(&e->contents, ev->content, ev->content_len, pl->ch);
    }
    return reserve(e, ev, pl) ? EVENT_ERR_NOMEM : EVENT_OK;
}

static int apply_one(struct engine *e, const struct event *ev, const struct ev_hashes *h)
{
    struct plan pl = {0};
    int rc = plan_event(e, ev, h, &pl);
    if (rc != EVENT_OK)
        return rc;
    uint32_t a = get_actor(e, ev, &pl);
    uint32_t label = intern_opt(&e->labels, ev->label, ev->label_len);
    uint32_t content = event_content(e, ev, &pl);
    int has_parent = event_has_parent(ev);
    /* the post's root once the event is applied: itself, a known post, or NONE (a placeholder) */
    uint32_t p = pl.p, root = NONE;
    if (p == NONE) {
        p = new_post(e, pl.ps, ev->post.len, pl.ph);
        set_observed(e, p, a, ev, content);
        if (!has_parent) {
            add_root(e, p, a, ev, label);
            root = p;
        } else if (pl.q == NONE) {
            add_under_placeholder(e, p, a, ev, &pl, label);
        } else {
            add_leaf(e, p, a, ev, pl.plen, label);
            root = e->path[pl.plen - 1];
        }
    } else {
        uint32_t tid = post_at(e, p)->parent & ~ROOT_FLAG;
        struct labels_was was; /* tid's, as filed in the label index */
        labels_before(e, tid, &was);
        fill(e, p, a, ev, tid, content);
        if (!has_parent) {
            offer_label(e, cascade_at(e, tid), label, ev->ts, 1);
            touch_cascade(e, tid);
            labels_after(e, tid, &was);
            root = p;
        } else if (pl.q == NONE) {
            reroot(e, p, ev, &pl, tid, label);
            labels_after(e, tid, &was);
        } else {
            labels_drop(e, &was); /* it joins cid */
            join(e, p, a, tid, pl.plen, ev, label);
            root = e->path[pl.plen - 1];
        }
    }
    /* A post whose content its root already carries is found through the root's list entry. */
    if (content != NONE &&
        (root == p || root == NONE || (post_at(e, root)->content & CONTENT_MASK) != content))
        content_note(e, content, p);
    growth_note(&e->growth, p, ev->ts);
    touch_actor(e, a);
    if (e->coord) /* live coordination, when enabled (coordhook.h) */
        coordhook_post(e, p, pl.p != NONE);
    return EVENT_OK;
}

/* The prefetch pipeline. Applying an event chases pointers: hash slot, id, string, record,
 * ancestors. One event at a time, each load waits for the one before; so while event i is
 * applied, the slots of event i+HASH_AHEAD and the records of event i+PEEK_AHEAD are already
 * on their way. Prefetches are hints only: a guess that misses (an id created by an event in
 * between) costs a little time, never correctness. */
#define DIRTY_KEEP (1u << 12)
#define DIRTY_STEP (1u << 12)
#define HASH_AHEAD 12
#define PEEK_AHEAD 6
#define NEAR_AHEAD 2
#define RING       16 /* > HASH_AHEAD, a power of two */

static void stage_hash(struct engine *e, const struct event *ev, struct ev_hashes *h)
{
    h->ph = hash_bytes(event_id_str(&ev->post), ev->post.len);
    intern_prefetch(&e->post_ids, h->ph);
    h->ah = hash_bytes(event_id_str(&ev->actor), ev->actor.len);
    intern_prefetch(&e->actor_ids, h->ah);
    h->qh = 0;
    h->qp = h->ap = NONE; /* no guesses until stage_peek (the first events of a batch get none) */
    if (event_has_parent(ev)) {
        h->qh = hash_bytes(event_id_str(&ev->parent), ev->parent.len);
        intern_prefetch(&e->post_ids, h->qh);
    }
}

static void stage_peek(struct engine *e, const struct event *ev, struct ev_hashes *h)
{
    uint32_t a = h->ap = intern_peek(&e->actor_ids, h->ah);
    if (a != NONE) {
        __builtin_prefetch(&e->actor_ids.refs[a]);
        __builtin_prefetch(actor_at(e, a));
    }
    h->qp = NONE;
    if (!event_has_parent(ev))
        return;
    uint32_t q = h->qp = intern_peek(&e->post_ids, h->qh);
    if (q != NONE) {
        __builtin_prefetch(&e->post_ids.refs[q]);
        __builtin_prefetch(post_at(e, q));
    }
}

/* With the parent's record and id offsets cached: the id strings, the parent's parent or
 * cascade, its actor, and the edge and pair slots. */
static void stage_near(struct engine *e, const struct event *ev, const struct ev_hashes *h)
{
    uint32_t q = h->qp, a = h->ap;
    if (a != NONE)
        intern_prefetch_str(&e->actor_ids, a);
    if (!event_has_parent(ev) || q == NONE)
        return;
    const struct post *qr = post_at(e, q);
    if (post_is_free(qr)) /* a guess at a deleted id: its links lead nowhere */
        return;
    intern_prefetch_str(&e->post_ids, q);
    if (qr->actor != NONE) {
        __builtin_prefetch(actor_at(e, qr->actor));
        if (a != NONE)
            u64map_prefetch(&e->edges, u64map_pair(a, qr->actor));
    }
    if (post_is_root(qr)) {
        __builtin_prefetch(cascade_at(e, qr->parent & ~ROOT_FLAG));
        if (a != NONE)
            u64map_prefetch(&e->pairs, u64map_pair(a, qr->parent & ~ROOT_FLAG));
    } else {
        __builtin_prefetch(post_at(e, qr->parent));
    }
}

size_t engine_apply(struct engine *e, const struct event *evs, size_t n, uint8_t *outcomes)
{
    struct ev_hashes ring[RING];
    size_t ok = 0;
    for (size_t i = 0; i < n && i < HASH_AHEAD; i++)
        stage_hash(e, &evs[i], &ring[i % RING]);
    for (size_t i = 0; i < n; i++) {
        if (i + HASH_AHEAD < n)
            stage_hash(e, &evs[i + HASH_AHEAD], &ring[(i + HASH_AHEAD) % RING]);
        if (i + PEEK_AHEAD < n)
            stage_peek(e, &evs[i + PEEK_AHEAD], &ring[(i + PEEK_AHEAD) % RING]);
        if (i + NEAR_AHEAD < n)
            stage_near(e, &evs[i + NEAR_AHEAD], &ring[(i + NEAR_AHEAD) % RING]);
        int rc = apply_one(e, &evs[i], &ring[i % RING]);
        e->outcomes[rc]++;
        outcomes[i] = (uint8_t)rc;
        ok += rc == EVENT_OK;
        if (rc == EVENT_OK && e->ret.ms && e->growth.newest >= e->ret.sweep_at)
            retention_maybe_sweep(e);
    }
    /* The top-k indexes catch up lazily: before a top-k read, and here for what waits past the
     * newest DIRTY_KEEP of each list, DIRTY_STEP at most a call, so that a hot cascade touched
     * in many batches is re-indexed about once while no call re-indexes more than a slice
     * (flushing whole lists of 65,536 took 15-30 ms in one 512-event call at 10 M events,
     * issue 18; an event that dirties a whole big cascade's actors is caught up over calls). */
    if (e->ndirty_c > DIRTY_KEEP || e->ndirty_a > DIRTY_KEEP)
        flush_dirty(e, FLUSH_CASCADES | FLUSH_ACTORS, DIRTY_KEEP, DIRTY_STEP);
    return ok;
}

void engine_note_outcome(struct engine *e, int outcome)
{
    if (outcome >= 0 && outcome < EVENT_OUTCOME_COUNT)
        e->outcomes[outcome]++;
}

int engine_apply_raw(struct engine *e, const struct event_raw *raw)
{
    struct event ev;
    int rc = event_validate(raw, &ev);
    if (rc != EVENT_OK) {
        e->outcomes[rc]++;
        return rc;
    }
    uint8_t out;
    engine_apply(e, &ev, 1, &out);
    return out;
}
