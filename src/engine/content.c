/* engine_content: the posts that carry one content key, found from a short list per key rather
 * than a scan. A post carries its own content, else its cascade root's (DESIGN §2), and a root
 * changes when a late parent arrives; so the list holds the posts where a key enters a tree: a
 * root that has it (its whole cascade, but the posts with other content of their own, carries
 * it), and a post whose own content differs from its root's (its subtree's posts with that
 * content of their own carry it, whatever the root becomes). Every carrier lies below a listed
 * post, so a query walks those subtrees and lists nothing else: O(posts in them).
 *
 * Memory: a 16-byte head per content id, and 4 bytes per listed post (most posts have no
 * content of their own and are never listed). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/u64map.h"
#include "engine/engine_int.h"

#define FIRST_CAP 4

/* ---------------------------------------------------------------- the lists */

int content_reserve(struct engine *e, uint32_t content)
{
    if (content == NONE)
        return segvec_reserve(&e->clists, 1);
    struct content_list *l = clist_at(e, content);
    if (l->cap == 0) {
        if (l->n == 0)
            return 0; /* the one inline id is free */
        uint32_t *ids = malloc(FIRST_CAP * sizeof(uint32_t));
        if (!ids)
            return -ENOMEM;
        ids[0] = l->u.one;
        l->u.ids = ids;
        l->cap = FIRST_CAP;
        e->clist_heap += FIRST_CAP * sizeof(uint32_t);
        return 0;
    }
    if (l->n < l->cap)
        return 0;
    uint32_t *ids = realloc(l->u.ids, 2 * (size_t)l->cap * sizeof(uint32_t));
    if (!ids)
        return -ENOMEM;
    e->clist_heap += l->cap * sizeof(uint32_t);
    l->u.ids = ids;
    l->cap *= 2;
    return 0;
}

void content_new(struct engine *e, uint32_t id)
{
    if (id < e->clists.len) /* a reused id: its list was emptied and freed on release */
        memset(clist_at(e, id), 0, sizeof(struct content_list));
    else
        segvec_push(&e->clists); /* zeroed: an empty list */
}

void content_note(struct engine *e, uint32_t content, uint32_t post)
{
    struct content_list *l = clist_at(e, content);
    if (l->cap == 0)
        l->u.one = post;
    else
        l->u.ids[l->n] = post;
    e->live_contents += l->n++ == 0;
}

/* A pruned list gives memory back as it would have grown (a snapshot's load holds lists to
 * that shape): to the inline id at most one post, else halved while half still holds them. */
static void shrink(struct engine *e, struct content_list *l)
{
    uint32_t old = l->cap, cap = old;
    if (l->n <= 1) {
        uint32_t one = l->n ? l->u.ids[0] : 0;
        free(l->u.ids);
        l->u.one = one;
        l->cap = 0;
    } else {
        while (cap / 2 >= l->n && cap / 2 >= FIRST_CAP)
            cap /= 2;
        uint32_t *ids = cap < old ? realloc(l->u.ids, (size_t)cap * sizeof(uint32_t)) : NULL;
        if (ids)
            l->u.ids = ids;
        l->cap = cap; /* a failed shrink keeps the larger block, which holds cap ids as well */
    }
    e->clist_heap -= (size_t)(old - l->cap) * sizeof(uint32_t);
}

void content_prune(struct engine *e, uint32_t content)
{
    struct content_list *l = clist_at(e, content);
    uint32_t had = l->n;
    if (l->cap == 0) {
        if (l->n && post_is_free(post_at(e, l->u.one)))
            l->n = 0;
    } else {
        uint32_t m = 0;
        for (uint32_t i = 0; i < l->n; i++)
            if (!post_is_free(post_at(e, l->u.ids[i])))
                l->u.ids[m++] = l->u.ids[i];
        l->n = m;
        shrink(e, l);
    }
    if (had && !l->n) {
        e->live_contents--;
        retention_gone_content(e, content);
    }
}

void content_destroy(struct engine *e)
{
    for (uint32_t i = 0; i < e->clists.len; i++)
        if (clist_at(e, i)->cap)
            free(clist_at(e, i)->u.ids);
    segvec_destroy(&e->clists);
    e->clist_heap = 0;
}

size_t content_bytes(const struct engine *e)
{
    return segvec_bytes(&e->clists) + e->clist_heap;
}

/* ---------------------------------------------------------------- the query */

struct cwalk {
    struct engine *e;
    uint32_t key;
    uint32_t cid;       /* the cascade of the subtree being walked */
    int cid_counted;    /* it is in `cascades` already */
    struct u64map seen; /* posts counted by walks below a root (they may nest) */
    struct u64map actors, cascades;
    uint64_t *order; /* per cascade: (UINT32_MAX - size) << 32 | id, to sort */
    uint32_t ncascades, cap;
    struct engine_content *out;
};

static int add_to_set(struct u64map *m, uint64_t key, int *created)
{
    if (u64map_reserve(m, 1))
        return -ENOMEM;
    u64map_put(m, key, created);
    return 0;
}

static int count_post(struct cwalk *w, const struct post *p)
{
    int created;
    if (!w->cid_counted) {
        if (add_to_set(&w->cascades, w->cid, &created))
            return -ENOMEM;
        if (created) {
            if (w->ncascades == w->cap) {
                uint32_t cap = w->cap ? 2 * w->cap : 64;
                uint64_t *o = realloc(w->order, cap * sizeof(uint64_t));
                if (!o)
                    return -ENOMEM;
                w->order = o;
                w->cap = cap;
            }
            uint32_t size = cascade_size(w->e, cascade_at(w->e, w->cid));
            w->order[w->ncascades++] = (uint64_t)(UINT32_MAX - size) << 32 | w->cid;
        }
        w->cid_counted = 1;
    }
    if (add_to_set(&w->actors, p->actor, &created))
        return -ENOMEM;
    if (w->out->posts++ == 0)
        w->out->first_ts = w->out->last_ts = p->ts;
    if (p->ts < w->out->first_ts)
        w->out->first_ts = p->ts;
    if (p->ts > w->out->last_ts)
        w->out->last_ts = p->ts;
    return 0;
}

/* Below a root that has the key: posts without content of their own, or with the key. */
static int visit_rooted(struct cwalk *w, uint32_t x)
{
    const struct post *p = post_at(w->e, x);
    uint32_t own = p->content & CONTENT_MASK;
    if (own != CONTENT_NONE && own != w->key)
        return 1;
    return count_post(w, p) ? -ENOMEM : 1;
}

/* Below a root that lacks it: posts with the key as their own. A post counted already was
 * reached by an earlier walk of its whole subtree: that part is skipped. */
static int visit_below(struct cwalk *w, uint32_t x)
{
    const struct post *p = post_at(w->e, x);
    if ((p->content & CONTENT_MASK) != w->key)
        return 1;
    int created;
    if (add_to_set(&w->seen, x, &created))
        return -ENOMEM;
    if (!created)
        return 0;
    return count_post(w, p) ? -ENOMEM : 1;
}

/* Visits top's subtree in preorder through child, sibling and parent links; visit returns 1 to
 * go below a node, 0 to skip its subtree, or a negative errno to stop. */
static int walk(struct cwalk *w, uint32_t top, int (*visit)(struct cwalk *, uint32_t))
{
    uint32_t x = top;
    for (;;) {
        int rc = visit(w, x);
        if (rc < 0)
            return rc;
        if (rc > 0 && post_at(w->e, x)->child != NONE) {
            x = post_at(w->e, x)->child;
            continue;
        }
        while (x != top && post_at(w->e, x)->sibling == NONE)
            x = post_at(w->e, x)->parent;
        if (x == top)
            return 0;
        x = post_at(w->e, x)->sibling;
    }
}

/* The walk from one listed post x (which has the key as its own content). */
static int from_listed(struct cwalk *w, uint32_t x)
{
    uint32_t r = x;
    while (!post_is_root(post_at(w->e, r)))
        r = post_at(w->e, r)->parent;
    w->cid = post_at(w->e, r)->parent & ~ROOT_FLAG;
    w->cid_counted = 0;
    if (r == x)
        return walk(w, x, visit_rooted);
    if ((post_at(w->e, r)->content & CONTENT_MASK) == w->key)
        return 0; /* the root is listed too: its walk counts x's subtree */
    return walk(w, x, visit_below);
}

static int cwalk_init(struct cwalk *w, struct engine *e, uint32_t key, struct engine_content *out)
{
    memset(w, 0, sizeof(*w));
    w->e = e;
    w->key = key;
    w->out = out;
    if (u64map_init(&w->seen, 0))
        return -ENOMEM;
    if (u64map_init(&w->actors, 0)) {
        u64map_destroy(&w->seen);
        return -ENOMEM;
    }
    if (u64map_init(&w->cascades, 0)) {
        u64map_destroy(&w->seen);
        u64map_destroy(&w->actors);
        return -ENOMEM;
    }
    return 0;
}

static void cwalk_destroy(struct cwalk *w)
{
    u64map_destroy(&w->seen);
    u64map_destroy(&w->actors);
    u64map_destroy(&w->cascades);
    free(w->order);
}

static int cmp_u64(const void *pa, const void *pb)
{
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return (a > b) - (a < b);
}

int engine_content(struct engine *e, const char *key, uint32_t len, struct engine_content *out,
                   struct engine_cascade *top, uint32_t limit)
{
    if (len > INTERN_MAX_LEN)
        return -ENOENT;
    uint32_t id = intern_find(&e->contents, key, len, hash_bytes(key, len));
    if (id == NONE)
        return -ENOENT;
    memset(out, 0, sizeof(*out));
    struct cwalk w;
    if (cwalk_init(&w, e, id, out))
        return -ENOMEM;
    const struct content_list *l = clist_at(e, id);
    const uint32_t *ids = l->cap ? l->u.ids : &l->u.one;
    int rc = 0;
    for (uint32_t i = 0; i < l->n && rc == 0; i++)
        rc = from_listed(&w, ids[i]);
    if (rc == 0 && out->posts == 0)
        rc = -ENOENT;
    if (rc == 0) {
        out->key = intern_str(&e->contents, id, &out->key_len);
        out->cascades = w.ncascades;
        out->unique_actors = (uint32_t)w.actors.count;
        qsort(w.order, w.ncascades, sizeof(uint64_t), cmp_u64); /* size desc, then older */
        uint32_t k = limit < w.ncascades ? limit : w.ncascades;
        for (uint32_t i = 0; i < k; i++)
            engine_describe_cascade(e, (uint32_t)w.order[i], &top[i]);
        rc = (int)k;
    }
    cwalk_destroy(&w);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}
