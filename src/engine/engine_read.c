/* The engine's read path: point lookups (cascade, actor, path, tree), top-k lists and stats.
 * Top-k lists come from the per-metric indexes (core/topk.h); a list the index cannot answer
 * exactly (a limit above its size, a filter that drops most of it) is recomputed by a scan, so
 * answers are always exact, and cost O(limit) unless a selective filter forces the scan. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "engine/engine_int.h"

static const char *const cascade_metric_names[ENGINE_CASCADE_METRICS] = {
    "size", "depth", "max_breadth", "structural_virality", "unique_actors", "last_ts",
};
static const char *const actor_metric_names[ENGINE_ACTOR_METRICS] = {
    "reach",
    "reshares_received",
    "amplifiers",
    "posts",
};

static int parse_name(const char *const *names, int n, const char *s, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return i;
    return -EINVAL;
}

int engine_cascade_metric_parse(const char *name, size_t len)
{
    return parse_name(cascade_metric_names, ENGINE_CASCADE_METRICS, name, len);
}

int engine_actor_metric_parse(const char *name, size_t len)
{
    return parse_name(actor_metric_names, ENGINE_ACTOR_METRICS, name, len);
}

const char *engine_cascade_metric_name(int metric)
{
    return metric >= 0 && metric < ENGINE_CASCADE_METRICS ? cascade_metric_names[metric] : NULL;
}

const char *engine_actor_metric_name(int metric)
{
    return metric >= 0 && metric < ENGINE_ACTOR_METRICS ? actor_metric_names[metric] : NULL;
}

static uint32_t find_id(const struct intern *t, const char *s, uint32_t len)
{
    if (len > INTERN_MAX_LEN)
        return NONE;
    return intern_find(t, s, len, hash_bytes(s, len));
}

/* ---------------------------------------------------------------- cascades */

void engine_describe_cascade(const struct engine *e, uint32_t cid, struct engine_cascade *o)
{
    const struct cascade *cr = cascade_at(e, cid);
    struct cbody tmp;
    const struct cbody *c = cascade_fig(e, cr, &tmp);
    const struct post *root = post_at(e, c->root);
    memset(o, 0, sizeof(*o));
    o->id = cid;
    o->root = intern_str(&e->post_ids, c->root, &o->root_len);
    if (root->actor != NONE)
        o->root_actor = intern_str(&e->actor_ids, root->actor, &o->root_actor_len);
    if ((root->content & CONTENT_MASK) != CONTENT_NONE)
        o->content = intern_str(&e->contents, root->content & CONTENT_MASK, &o->content_len);
    if (cascade_label(cr) != NONE)
        o->label = intern_str(&e->labels, cascade_label(cr), &o->label_len);
    o->size = c->size;
    o->missing = c->missing;
    o->depth = c->depth;
    o->max_breadth = c->max_breadth;
    o->unique_actors = c->unique;
    unsigned __int128 w = cascade_wiener(c);
    o->wiener = w > UINT64_MAX ? UINT64_MAX : (uint64_t)w;
    o->structural_virality = cascade_virality(c);
    o->first_ts = c->first_ts;
    o->last_ts = c->last_ts;
    o->duration_ms = c->last_ts - c->first_ts;
}

int engine_cascade(struct engine *e, const char *post, uint32_t len, struct engine_cascade *out)
{
    uint32_t p = find_id(&e->post_ids, post, len);
    if (p == NONE)
        return -ENOENT;
    engine_describe_cascade(e, engine_find_cascade(e, p), out);
    return 0;
}

/* ---------------------------------------------------------------- actors */

void engine_describe_actor(const struct engine *e, uint32_t aid, struct engine_actor *o)
{
    const struct actor *a = actor_at(e, aid);
    memset(o, 0, sizeof(*o));
    o->id = aid;
    o->name = intern_str(&e->actor_ids, aid, &o->name_len);
    o->posts = a->posts;
    o->roots = a->roots;
    o->shares = a->posts - a->roots;
    o->reshares_received = a->reshares;
    o->amplifiers = a->amplifiers;
    o->reach = a->reach;
    o->cascades = a->cascades;
    o->first_ts = a->first_ts;
    o->last_ts = a->last_ts;
    o->actor_type = a->type;
}

int engine_actor(struct engine *e, const char *id, uint32_t len, struct engine_actor *out)
{
    uint32_t a = find_id(&e->actor_ids, id, len);
    if (a == NONE || actor_at(e, a)->posts == 0) /* never seen, or every post evicted */
        return -ENOENT;
    engine_describe_actor(e, a, out);
    return 0;
}

/* ---------------------------------------------------------------- nodes: path and tree */

static void describe_node(const struct engine *e, uint32_t id, uint32_t depth,
                          struct engine_node *o)
{
    const struct post *p = post_at(e, id);
    memset(o, 0, sizeof(*o));
    o->post = intern_str(&e->post_ids, id, &o->post_len);
    if (!post_is_root(p))
        o->parent = intern_str(&e->post_ids, p->parent, &o->parent_len);
    o->placeholder = p->actor == NONE;
    if (!o->placeholder) {
        o->actor = intern_str(&e->actor_ids, p->actor, &o->actor_len);
        o->ts = p->ts;
        o->kind = (uint8_t)(p->content >> 30);
    }
    o->depth = depth;
}

int engine_path(struct engine *e, const char *post, uint32_t len, engine_node_fn fn, void *ctx)
{
    uint32_t p = find_id(&e->post_ids, post, len);
    if (p == NONE)
        return -ENOENT;
    uint32_t depth = 0;
    for (uint32_t x = p; !post_is_root(post_at(e, x)); x = post_at(e, x)->parent)
        depth++;
    int n = 0;
    for (uint32_t x = p;; x = post_at(e, x)->parent) {
        struct engine_node node;
        describe_node(e, x, depth - (uint32_t)n, &node);
        n++;
        if (fn(ctx, &node) || post_is_root(post_at(e, x)))
            break;
    }
    return n;
}

int engine_tree(struct engine *e, const char *post, uint32_t len, uint32_t limit, engine_node_fn fn,
                void *ctx)
{
    uint32_t p = find_id(&e->post_ids, post, len);
    if (p == NONE)
        return -ENOENT;
    const struct cascade *c = cascade_at(e, engine_find_cascade(e, p));
    struct cbody tmp;
    const struct cbody *b = cascade_fig(e, c, &tmp);
    uint32_t n = b->size + b->missing;
    if (limit && limit < n)
        n = limit;
    uint32_t *queue = malloc((size_t)n * sizeof(uint32_t));
    if (!queue)
        return -ENOMEM;
    /* breadth-first: the queue holds one level after another, level_end marks the boundary */
    uint32_t head = 0, tail = 0, depth = 0, level_end = 1;
    queue[tail++] = b->root;
    while (head < tail) {
        if (head == level_end) {
            depth++;
            level_end = tail;
        }
        uint32_t x = queue[head++];
        struct engine_node node;
        describe_node(e, x, depth, &node);
        if (fn(ctx, &node))
            break;
        for (uint32_t ch = post_at(e, x)->child; ch != NONE && tail < n;
             ch = post_at(e, ch)->sibling)
            queue[tail++] = ch;
    }
    free(queue);
    return (int)head;
}

/* ---------------------------------------------------------------- top-k */

int engine_match(const struct engine *e, uint32_t cid, const struct cascade_match *m)
{
    const struct cascade *c = cascade_at(e, cid);
    const struct engine_cascade_filter *f = m->f;
    if (cascade_dead(e, c))
        return 0;
    if (!f)
        return 1;
    if (f->label && cascade_label(c) != m->label)
        return 0;
    if (f->content && (post_at(e, cascade_root(e, c))->content & CONTENT_MASK) != m->content)
        return 0;
    struct cbody tmp;
    const struct cbody *b = cascade_fig(e, c, &tmp);
    if (f->has_since && b->last_ts < f->since)
        return 0;
    if (f->has_until && b->first_ts > f->until)
        return 0;
    return b->size >= f->min_size;
}

int engine_match_prepare(const struct engine *e, const struct engine_cascade_filter *f,
                         struct cascade_match *m)
{
    m->f = f;
    m->label = m->content = NONE;
    if (!f)
        return 1;
    if (f->label && (m->label = find_id(&e->labels, f->label, f->label_len)) == NONE)
        return 0;
    if (f->content && (m->content = find_id(&e->contents, f->content, f->content_len)) == NONE)
        return 0;
    return 1;
}

/* What the top-k search needs to know about one kind of item (cascades or actors). */
struct top_query {
    struct engine *e;
    struct topk *index;
    int metric;
    uint32_t count; /* items, live or not */
    int (*alive)(const struct top_query *q, uint32_t item);
    int (*passes)(const struct top_query *q, uint32_t item); /* alive and matching */
    uint64_t (*key)(const struct top_query *q, uint32_t item);
    const void *arg;
};

static void rebuild(const struct top_query *q)
{
    topk_reset(q->index);
    for (uint32_t i = 0; i < q->count; i++)
        if (q->alive(q, i))
            topk_offer(q->index, i, q->key(q, i));
}

/* Takes from the index's certain prefix the items passing the filter; returns how many, or
 * -1 when the index cannot tell (more items may qualify than it holds). *shrunk tells whether
 * the certain prefix is shorter than the heap: items went away, a rebuild would restore it. */
static int from_index(const struct top_query *q, uint32_t *items, uint32_t limit, int *shrunk)
{
    struct topk_ent *ents = malloc(q->index->cap * sizeof(*ents));
    if (!ents)
        return -ENOMEM;
    uint32_t total, exact = topk_sorted(q->index, ents, &total), k = 0;
    for (uint32_t i = 0; i < exact && k < limit; i++)
        if (q->passes(q, ents[i].item))
            items[k++] = ents[i].item;
    free(ents);
    *shrunk = exact < total || (total < q->index->cap && q->index->has_out);
    int complete = k == limit || (!q->index->has_out && exact == total);
    return complete ? (int)k : -1;
}

/* Exact top `limit` passing the filter by a scan of every item. */
static int by_scan(const struct top_query *q, uint32_t *items, uint32_t limit)
{
    struct topk tmp;
    if (topk_init(&tmp, limit, 1))
        return -ENOMEM;
    for (uint32_t i = 0; i < q->count; i++)
        if (q->passes(q, i))
            topk_offer(&tmp, i, q->key(q, i));
    struct topk_ent *ents = malloc(limit * sizeof(*ents));
    if (!ents) {
        topk_destroy(&tmp);
        return -ENOMEM;
    }
    uint32_t total;
    topk_sorted(&tmp, ents, &total);
    for (uint32_t i = 0; i < total; i++)
        items[i] = ents[i].item;
    free(ents);
    topk_destroy(&tmp);
    return (int)total;
}

static int top_items(const struct top_query *q, uint32_t *items, uint32_t limit)
{
    int shrunk, k = from_index(q, items, limit, &shrunk);
    if (k != -1)
        return k;
    if (shrunk) { /* joins removed items: a rebuilt index may answer */
        rebuild(q);
        k = from_index(q, items, limit, &shrunk);
        if (k != -1)
            return k;
    }
    /* a limit above the index's size, or a filter most of it fails */
    return by_scan(q, items, limit);
}

static uint64_t cascade_key_of(const struct top_query *q, uint32_t item)
{
    struct cbody tmp;
    return engine_cascade_key(cascade_fig(q->e, cascade_at(q->e, item), &tmp), q->metric);
}

static int cascade_alive(const struct top_query *q, uint32_t item)
{
    return !cascade_dead(q->e, cascade_at(q->e, item));
}

static int cascade_filter(const struct top_query *q, uint32_t item)
{
    return engine_match(q->e, item, q->arg);
}

int engine_top_cascades(struct engine *e, int metric, const struct engine_cascade_filter *filter,
                        struct engine_cascade *out, uint32_t limit)
{
    if (metric < 0 || metric >= ENGINE_CASCADE_METRICS)
        return -EINVAL;
    engine_flush_cascades(e);
    struct cascade_match m;
    if (limit > e->live_cascades)
        limit = (uint32_t)e->live_cascades; /* no point making room for more than exist */
    if (limit == 0 || !engine_match_prepare(e, filter, &m))
        return 0;
    struct top_query q = {
        e, &e->ctop[metric], metric, e->cascades.len, cascade_alive, cascade_filter, cascade_key_of,
        &m};
    uint32_t *items = malloc(limit * sizeof(uint32_t));
    if (!items)
        return -ENOMEM;
    int k = top_items(&q, items, limit);
    for (int i = 0; i < k; i++)
        engine_describe_cascade(e, items[i], &out[i]);
    free(items);
    return k;
}

static uint64_t actor_key_of(const struct top_query *q, uint32_t item)
{
    return engine_actor_key(actor_at(q->e, item), q->metric);
}

static int actor_alive(const struct top_query *q, uint32_t item)
{
    return actor_at(q->e, item)->posts != 0;
}

static int actor_filter(const struct top_query *q, uint32_t item)
{
    int type = *(const int *)q->arg;
    const struct actor *a = actor_at(q->e, item);
    return a->posts && (type == 0 || a->type == type);
}

int engine_top_actors(struct engine *e, int metric, int actor_type, struct engine_actor *out,
                      uint32_t limit)
{
    if (metric < 0 || metric >= ENGINE_ACTOR_METRICS || actor_type < 0 ||
        actor_type > EVENT_ACTOR_PAGE)
        return -EINVAL;
    engine_flush_actors(e);
    if (limit > e->live_actors)
        limit = (uint32_t)e->live_actors;
    if (limit == 0)
        return 0;
    struct top_query q = {e,           &e->atop[metric], metric,       e->actors.len,
                          actor_alive, actor_filter,     actor_key_of, &actor_type};
    uint32_t *items = malloc(limit * sizeof(uint32_t));
    if (!items)
        return -ENOMEM;
    int k = top_items(&q, items, limit);
    for (int i = 0; i < k; i++)
        engine_describe_actor(e, items[i], &out[i]);
    free(items);
    return k;
}

/* ---------------------------------------------------------------- stats */

void engine_get_stats(const struct engine *e, struct engine_stats *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->outcomes, e->outcomes, sizeof(out->outcomes));
    out->posts = intern_live(&e->post_ids) - e->placeholders;
    out->placeholders = e->placeholders;
    out->cascades = e->live_cascades;
    out->actors = e->live_actors;
    out->edges = e->edges.count;
    out->contents = e->live_contents;
    out->labels = e->labels.count;
    out->newest_ts = e->growth.has_newest ? e->growth.newest : 0;
    out->retention_ms = e->ret.ms;
    out->retained_from = e->ret.ms && e->ret.cut != INT64_MIN ? e->ret.cut : 0;
    out->evicted_cascades = e->ret.evicted_cascades;
    out->evicted_posts = e->ret.evicted_posts;
    out->old_ts = e->growth.old_ts;
    out->bytes = segvec_bytes(&e->posts) + segvec_bytes(&e->actors) + segvec_bytes(&e->cascades) +
                 segvec_bytes(&e->cbodies) +
                 intern_bytes(&e->post_ids) + intern_bytes(&e->actor_ids) +
                 intern_bytes(&e->contents) + intern_bytes(&e->labels) + u64map_bytes(&e->pairs) +
                 u64map_bytes(&e->edges) + e->growth.bytes + content_bytes(e) +
                 (size_t)e->ret.cap_rq * sizeof(struct rq_entry) + labels_bytes(e);
}
