/* An actor's neighbourhood (engine.h: engine_actor_links, engine_actor_cascades): its weighted
 * amplification links and the cascades it posted in, for the web view's actor page. The engine
 * keeps no list of an actor's posts and no edge weights, so that the ingest path pays nothing for
 * these; a query finds the actor's posts in one sequential pass over every post (32 bytes each,
 * about 1-2 ns a post from memory) and follows only those: up to the root for its cascades, to
 * the parent (an out link) and the children (in links) for its links, self-reshares and
 * placeholders aside. Counts go to small hash maps; the best `limit` come out of a bounded heap,
 * so that names are compared only against the heap's lowest entry.
 *
 * Also measured: finding the actor's cascades from the pairs set (actor << 32 | cascade) and
 * walking their trees. A pass over that set alone costs over half the posts pass, and the walks'
 * random loads lose the rest, so the simple pass stays. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "engine/engine_int.h"

struct ego {
    struct engine *e;
    uint32_t aid;
    int dirs;               /* links: enum engine_link_dir mask; 0 when counting cascades */
    struct u64map in, out;  /* neighbour -> weight */
    struct u64map cascades; /* cascade -> the actor's posts in it */
};

static void ego_destroy(struct ego *g)
{
    u64map_destroy(&g->in); /* zeroed maps are safe to destroy */
    u64map_destroy(&g->out);
    u64map_destroy(&g->cascades);
}

static int ego_init(struct ego *g, struct engine *e, const char *id, uint32_t len, int dirs)
{
    memset(g, 0, sizeof(*g));
    if (len > INTERN_MAX_LEN)
        return -ENOENT;
    g->aid = intern_find(&e->actor_ids, id, len, hash_bytes(id, len));
    if (g->aid == NONE)
        return -ENOENT;
    g->e = e;
    g->dirs = dirs;
    int rc = u64map_init(&g->in, 1);
    rc = rc ? rc : u64map_init(&g->out, 1);
    rc = rc ? rc : u64map_init(&g->cascades, 1);
    if (rc)
        ego_destroy(g);
    return rc;
}

static int count(struct u64map *m, uint64_t key)
{
    int created;
    if (u64map_reserve(m, 1))
        return -ENOMEM;
    (*u64map_put(m, key, &created))++;
    return 0;
}

/* ---------------------------------------------------------------- the actor's posts */

/* One post of the actor, in live cascade cid (when counting cascades). */
static int visit(struct ego *g, uint32_t x, uint32_t cid)
{
    const struct engine *e = g->e;
    const struct post *p = post_at(e, x);
    if (!g->dirs)
        return count(&g->cascades, cid);
    if ((g->dirs & ENGINE_LINK_OUT) && !post_is_root(p)) {
        uint32_t u = post_at(e, p->parent)->actor;
        if (u != NONE && u != g->aid && count(&g->out, u))
            return -ENOMEM;
    }
    if (g->dirs & ENGINE_LINK_IN) {
        for (uint32_t c = p->child; c != NONE; c = post_at(e, c)->sibling) {
            uint32_t v = post_at(e, c)->actor;
            if (v != NONE && v != g->aid && count(&g->in, v))
                return -ENOMEM;
        }
    }
    return 0;
}

/* Visits every post of the actor: one sequential pass over the posts; only the actor's own
 * are followed further (up to the root, or to the parent and the children). */
static int find_posts(struct ego *g)
{
    const struct engine *e = g->e;
    uint32_t n = e->posts.len, per = 1u << POST_SHIFT;
    for (uint32_t base = 0; base < n; base += per) {
        const struct post *chunk = post_at(e, base);
        uint32_t m = n - base < per ? n - base : per;
        for (uint32_t j = 0; j < m; j++) {
            if (chunk[j].actor != g->aid)
                continue;
            int rc = visit(g, base + j, g->dirs ? NONE : engine_find_cascade(e, base + j));
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- ranking */

/* An actor with its weight, or a cascade with the actor's posts in it. */
struct ranked {
    uint32_t id, n;
};

struct rank_ctx {
    const struct engine *e;
    int cascades; /* cascades: by size, then root post id; else actors by weight, then name */
};

/* > 0 when a ranks above b. */
static int rank_cmp(const struct rank_ctx *x, const struct ranked *a, const struct ranked *b)
{
    uint64_t ka = x->cascades ? cascade_size(x->e, cascade_at(x->e, a->id)) : a->n;
    uint64_t kb = x->cascades ? cascade_size(x->e, cascade_at(x->e, b->id)) : b->n;
    if (ka != kb)
        return ka > kb ? 1 : -1;
    const struct intern *names = x->cascades ? &x->e->post_ids : &x->e->actor_ids;
    uint32_t ia = x->cascades ? cascade_root(x->e, cascade_at(x->e, a->id)) : a->id;
    uint32_t ib = x->cascades ? cascade_root(x->e, cascade_at(x->e, b->id)) : b->id;
    uint32_t la, lb;
    const char *sa = intern_str(names, ia, &la), *sb = intern_str(names, ib, &lb);
    int c = memcmp(sa, sb, la < lb ? la : lb);
    if (c == 0)
        c = (la > lb) - (la < lb);
    return -c; /* the smaller name ranks above */
}

/* A heap of n items with the lowest-ranked on top: restores it below i. */
static void sift_down(const struct rank_ctx *x, struct ranked *h, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && rank_cmp(x, &h[l], &h[w]) < 0)
            w = l;
        if (r < n && rank_cmp(x, &h[r], &h[w]) < 0)
            w = r;
        if (w == i)
            return;
        struct ranked t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Moves the best min(n, limit) items to the front, best first; returns how many. An item
 * outside the heap costs one comparison with its lowest entry: O(n log limit). */
static uint32_t select_best(const struct rank_ctx *x, struct ranked *items, uint32_t n,
                            uint32_t limit)
{
    uint32_t k = n < limit ? n : limit;
    for (uint32_t i = k / 2; i-- > 0;)
        sift_down(x, items, k, i);
    for (uint32_t i = k; i < n; i++) {
        if (k && rank_cmp(x, &items[i], &items[0]) > 0) {
            items[0] = items[i];
            sift_down(x, items, k, 0);
        }
    }
    for (uint32_t m = k; m > 1; m--) { /* the lowest goes last each time */
        struct ranked t = items[0];
        items[0] = items[m - 1];
        items[m - 1] = t;
        sift_down(x, items, m - 1, 0);
    }
    return k;
}

/* The entries of a counting map as ranked items (*out malloc'd); then the best `limit`. */
static int ranked_from(const struct rank_ctx *x, struct u64map *m, uint32_t limit,
                       struct ranked **out, uint32_t *n)
{
    struct ranked *items = malloc(((size_t)m->count + 1) * sizeof(*items));
    if (!items)
        return -ENOMEM;
    uint32_t k = 0;
    u64map_finish(m);
    for (uint64_t i = 0, key; i <= m->t.mask; i++)
        if (u64map_slot(m, i, &key))
            items[k++] = (struct ranked){(uint32_t)key, m->t.vals[i]};
    *n = select_best(x, items, k, limit);
    *out = items;
    return 0;
}

/* ---------------------------------------------------------------- the queries */

static uint32_t pack_links(struct ego *g, struct u64map *m, int dir, uint32_t limit,
                           struct engine_link *out, int *rc)
{
    const struct rank_ctx x = {g->e, 0};
    struct ranked *items;
    uint32_t n;
    if ((*rc = ranked_from(&x, m, limit, &items, &n)))
        return 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct actor *a = actor_at(g->e, items[i].id);
        struct engine_link *l = &out[i];
        memset(l, 0, sizeof(*l));
        l->direction = (uint8_t)dir;
        l->actor_type = a->type == EVENT_ACTOR_PAGE ? EVENT_ACTOR_PAGE : EVENT_ACTOR_ACCOUNT;
        l->actor_id = items[i].id;
        l->actor = intern_str(&g->e->actor_ids, items[i].id, &l->actor_len);
        l->weight = items[i].n;
        l->reach = a->reach;
    }
    free(items);
    return n;
}

int engine_actor_links(struct engine *e, const char *id, uint32_t len, int directions,
                       uint32_t limit, struct engine_link *out)
{
    if (!(directions & ENGINE_LINK_BOTH) || (directions & ~ENGINE_LINK_BOTH))
        return -EINVAL;
    struct ego g;
    int rc = ego_init(&g, e, id, len, directions);
    rc = rc ? rc : find_posts(&g);
    uint32_t k = 0;
    if (rc == 0 && (directions & ENGINE_LINK_IN))
        k += pack_links(&g, &g.in, ENGINE_LINK_IN, limit, out, &rc);
    if (rc == 0 && (directions & ENGINE_LINK_OUT))
        k += pack_links(&g, &g.out, ENGINE_LINK_OUT, limit, out + k, &rc);
    ego_destroy(&g);
    return rc ? rc : (int)k;
}

int engine_actor_cascades(struct engine *e, const char *id, uint32_t len,
                          struct engine_actor_cascade *out, uint32_t limit)
{
    struct ego g;
    int rc = ego_init(&g, e, id, len, 0);
    rc = rc ? rc : find_posts(&g);
    struct ranked *items = NULL;
    uint32_t n = 0;
    const struct rank_ctx x = {e, 1};
    if (rc == 0)
        rc = ranked_from(&x, &g.cascades, limit, &items, &n);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        engine_describe_cascade(e, items[i].id, &out[i].cascade);
        out[i].actor_posts = items[i].n;
    }
    free(items);
    ego_destroy(&g);
    return rc ? rc : (int)n;
}
