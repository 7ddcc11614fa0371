/* The engine's feed of live coordination (coordhook.h): keys of each kind from the post
 * records, and the sliced walks that give a late root's content to its subtree. */
#include "engine/coordhook.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

/* Per applied post, a walk visits at most WALK_NODES nodes and stops once its posts made
 * WALK_MEETINGS meetings (each post meets at most max_key_posts posts: ~0.2 us a meeting). */
#define WALK_NODES    256
#define WALK_MEETINGS 4096

struct coordhook {
    struct coordlive *cl[COORDLIVE_KINDS];
    uint64_t *fed;       /* bit per post id: its link key was fed */
    uint32_t fed_words;
    uint32_t *stack;     /* the subtree walks' nodes still to visit */
    uint32_t nstack, stack_cap;
    uint32_t walk_nodes;    /* the walks' budget per applied post */
    uint64_t walk_meetings;
    int broken;
};

int coordhook_enable(struct engine *e, const struct coordlive_params *p)
{
    if (e->coord)
        return -EEXIST;
    struct coordhook *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    for (int k = 0; k < COORDLIVE_KINDS; k++) {
        int rc = coordlive_new(&h->cl[k], p, (uint8_t)k);
        if (rc) {
            for (int j = 0; j < k; j++)
                coordlive_free(h->cl[j]);
            free(h);
            return rc;
        }
    }
    h->walk_nodes = WALK_NODES;
    h->walk_meetings = WALK_MEETINGS;
    e->coord = h;
    return 0;
}

void coordhook_budget(struct engine *e, uint32_t nodes, uint64_t meetings)
{
    if (e->coord) {
        e->coord->walk_nodes = nodes ? nodes : 1;
        e->coord->walk_meetings = meetings ? meetings : 1;
    }
}

int coordhook_walking(const struct engine *e)
{
    return e->coord && e->coord->nstack != 0;
}

void coordhook_disable(struct engine *e)
{
    struct coordhook *h = e->coord;
    if (!h)
        return;
    for (int k = 0; k < COORDLIVE_KINDS; k++)
        coordlive_free(h->cl[k]);
    free(h->fed);
    free(h->stack);
    free(h);
    e->coord = NULL;
}

struct coordlive *coordhook_instance(const struct engine *e, int kind)
{
    return e->coord && kind >= 0 && kind < COORDLIVE_KINDS ? e->coord->cl[kind] : NULL;
}

/* An allocation failed: from now on nothing is exact. */
static void set_broken(struct coordhook *h)
{
    h->broken = 1;
    for (int k = 0; k < COORDLIVE_KINDS; k++)
        coordlive_set_incomplete(h->cl[k], 1);
}

static int fed_room(struct coordhook *h, uint32_t p)
{
    if (p / 64 < h->fed_words)
        return 0;
    uint32_t words = h->fed_words ? h->fed_words : 1024;
    while (words <= p / 64)
        words *= 2;
    uint64_t *n = realloc(h->fed, (size_t)words * sizeof(*n));
    if (!n)
        return -ENOMEM;
    memset(n + h->fed_words, 0, (size_t)(words - h->fed_words) * sizeof(*n));
    h->fed = n;
    h->fed_words = words;
    return 0;
}

static int is_fed(const struct coordhook *h, uint32_t p)
{
    return p / 64 < h->fed_words && (h->fed[p / 64] >> (p % 64) & 1);
}

/* The content of p's cascade root, NONE under a placeholder root or a root without one. */
static uint32_t root_key(const struct engine *e, uint32_t p)
{
    const struct post *r = post_at(e, p);
    while (!post_is_root(r))
        r = post_at(e, r->parent);
    uint32_t c = r->content & CONTENT_MASK;
    return r->actor == NONE || c == CONTENT_NONE ? NONE : c;
}

/* The post's link key: its own content, else its root's. */
static uint32_t link_key(const struct engine *e, uint32_t p)
{
    uint32_t c = post_at(e, p)->content & CONTENT_MASK;
    return c != CONTENT_NONE ? c : root_key(e, p);
}

static void add(struct coordhook *h, int kind, uint32_t key, const struct post *r, uint32_t p)
{
    if (coordlive_add(h->cl[kind], key, r->actor, p, r->ts))
        set_broken(h);
}

/* Feeds p's link key if it has one now and it was not fed. */
static void feed_link(struct engine *e, struct coordhook *h, uint32_t p)
{
    if (is_fed(h, p))
        return;
    uint32_t k = link_key(e, p);
    if (k == NONE)
        return;
    if (fed_room(h, p)) {
        set_broken(h);
        return;
    }
    h->fed[p / 64] |= 1ULL << (p % 64);
    add(h, COORDLIVE_LINK, k, post_at(e, p), p);
}

static int push_children(struct coordhook *h, const struct engine *e, uint32_t p)
{
    for (uint32_t c = post_at(e, p)->child; c != NONE; c = post_at(e, c)->sibling) {
        if (h->nstack == h->stack_cap) {
            uint32_t cap = h->stack_cap ? 2 * h->stack_cap : 256;
            uint32_t *n = realloc(h->stack, (size_t)cap * sizeof(*n));
            if (!n)
                return -ENOMEM;
            h->stack = n;
            h->stack_cap = cap;
        }
        h->stack[h->nstack++] = c;
    }
    return 0;
}

/* Visits up to budget nodes of the walks under way. Nodes are looked at afresh (their key from
 * their root as it is now), so that joins, new children and reused ids between two slices cost
 * nothing but a visit: a post applied meanwhile was fed by its own call. */
static void walk(struct engine *e, struct coordhook *h, uint32_t budget, uint64_t meetings)
{
    struct coordlive_stats st;
    coordlive_stats(h->cl[COORDLIVE_LINK], &st);
    uint64_t until = st.meetings + meetings;
    while (h->nstack && budget-- && st.meetings < until) {
        uint32_t q = h->stack[--h->nstack];
        const struct post *r = post_at(e, q);
        if (post_is_free(r) || r->actor == NONE)
            continue;
        feed_link(e, h, q);
        if (push_children(h, e, q)) {
            set_broken(h);
            h->nstack = 0;
        }
        coordlive_stats(h->cl[COORDLIVE_LINK], &st);
    }
    for (int k = 0; k < COORDLIVE_KINDS && !h->broken; k++)
        coordlive_set_incomplete(h->cl[k], h->nstack != 0);
}

void coordhook_post(struct engine *e, uint32_t p, int filled)
{
    struct coordhook *h = e->coord;
    const struct post *r = post_at(e, p);
    if (p / 64 < h->fed_words) /* a reused id: not fed yet */
        h->fed[p / 64] &= ~(1ULL << (p % 64));
    uint32_t kind = r->content >> 30;
    if (!post_is_root(r) && (kind == EVENT_KIND_SHARE || kind == EVENT_KIND_QUOTE))
        add(h, COORDLIVE_RESHARE, r->parent, r, p);
    else if (!post_is_root(r) && kind == EVENT_KIND_REPLY)
        add(h, COORDLIVE_REPLY, r->parent, r, p);
    feed_link(e, h, p);
    /* a filled placeholder: its subtree may have a root with content now */
    if (filled && root_key(e, p) != NONE && push_children(h, e, p))
        set_broken(h);
    if (h->nstack)
        walk(e, h, h->walk_nodes, h->walk_meetings);
}

void coordhook_drain(struct engine *e)
{
    if (e->coord)
        walk(e, e->coord, UINT32_MAX, UINT64_MAX / 2);
}
