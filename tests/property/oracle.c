/* The oracle: every DESIGN §3 metric recomputed from scratch for the posts accepted so far.
 * Nodes are the accepted posts and the placeholders they name as parents; a placeholder has no
 * parent of its own, so it is always the root of its cascade. Distances come from a BFS out of
 * every node (O(n²) per cascade) rather than from the Σ s·(n−s) identity the engine relies on,
 * and distinct counts from explicit marks, so the oracle cannot share the engine's shortcuts. */
#include <stdlib.h>
#include <string.h>

#include "prop.h"

/* A node's parent inside the current state: only an accepted post knows its parent. */
static int32_t eparent(const struct oracle *o, uint32_t k)
{
    return o->accepted[k] ? o->f->nodes[k].parent : -1;
}

/* Children lists of the current state in CSR form, for the BFS. */
struct adj {
    uint32_t *off, *child;
};

static void adj_build(const struct oracle *o, struct adj *g)
{
    uint32_t n = o->f->n;
    uint32_t *fill = calloc(n + 1, sizeof(*fill));

    g->off = calloc(n + 1, sizeof(*g->off));
    g->child = calloc(n ? n : 1, sizeof(*g->child));
    for (uint32_t k = 0; k < n; k++)
        if (eparent(o, k) >= 0)
            g->off[eparent(o, k) + 1]++;
    for (uint32_t k = 0; k < n; k++)
        g->off[k + 1] += g->off[k];
    for (uint32_t k = 0; k < n; k++) {
        int32_t p = eparent(o, k);
        if (p >= 0)
            g->child[g->off[p] + fill[p]++] = k;
    }
    free(fill);
}

static void adj_free(struct adj *g)
{
    free(g->off);
    free(g->child);
}

/* Sum of the distances from u to every node of its tree; dist[] is all -1 on entry and exit. */
static uint64_t bfs_sum(const struct oracle *o, const struct adj *g, uint32_t u, int32_t *dist,
                        uint32_t *queue)
{
    uint32_t head = 0, tail = 0;
    uint64_t sum = 0;

    dist[u] = 0;
    queue[tail++] = u;
    while (head < tail) {
        uint32_t x = queue[head++];
        int32_t p = eparent(o, x);
        sum += (uint64_t)dist[x];
        if (p >= 0 && dist[p] < 0) {
            dist[p] = dist[x] + 1;
            queue[tail++] = (uint32_t)p;
        }
        for (uint32_t i = g->off[x]; i < g->off[x + 1]; i++) {
            uint32_t c = g->child[i];
            if (dist[c] < 0) {
                dist[c] = dist[x] + 1;
                queue[tail++] = c;
            }
        }
    }
    for (uint32_t i = 0; i < tail; i++)
        dist[queue[i]] = -1;
    return sum;
}

static void find_present(struct oracle *o)
{
    const struct forest *f = o->f;

    for (uint32_t k = 0; k < f->n; k++) {
        if (!o->accepted[k])
            continue;
        o->present[k] = 1;
        if (f->nodes[k].parent >= 0)
            o->present[f->nodes[k].parent] = 1;
    }
    for (uint32_t k = 0; k < f->n; k++) {
        o->posts += o->accepted[k];
        o->placeholders += o->present[k] && !o->accepted[k];
    }
}

/* Parents have lower indices, so one forward pass settles roots and depths. */
static void find_roots(struct oracle *o)
{
    for (uint32_t k = 0; k < o->f->n; k++) {
        int32_t p = eparent(o, k);
        o->root[k] = -1;
        o->casc[k] = -1;
        if (!o->present[k])
            continue;
        o->root[k] = p < 0 ? (int32_t)k : o->root[p];
        o->depth[k] = p < 0 ? 0 : o->depth[p] + 1;
        if (p < 0) {
            struct ocascade *c = &o->cascades[o->n_cascades];
            memset(c, 0, sizeof(*c));
            c->root = (int32_t)k;
            c->first_ts = INT64_MAX;
            c->last_ts = INT64_MIN;
            o->casc[k] = (int32_t)o->n_cascades++;
        } else {
            o->casc[k] = o->casc[o->root[k]];
        }
    }
}

/* The nodes of each cascade, grouped (a counting sort by cascade), so that per-cascade work
 * costs the cascade's size, not the forest's. */
static void group_members(struct oracle *o)
{
    uint32_t n = o->f->n, *fill = calloc(o->n_cascades + 1, sizeof(*fill));

    o->moff = calloc(o->n_cascades + 1, sizeof(*o->moff));
    o->mem = calloc(n ? n : 1, sizeof(*o->mem));
    for (uint32_t k = 0; k < n; k++)
        if (o->present[k])
            o->moff[o->casc[k] + 1]++;
    for (uint32_t c = 0; c < o->n_cascades; c++)
        o->moff[c + 1] += o->moff[c];
    for (uint32_t k = 0; k < n; k++)
        if (o->present[k])
            o->mem[o->moff[o->casc[k]] + fill[o->casc[k]]++] = k;
    free(fill);
}

/* Counts, depth, times and label of each cascade, one node at a time. */
static void cascade_counts(struct oracle *o)
{
    const struct forest *f = o->f;

    for (uint32_t k = 0; k < f->n; k++) {
        if (!o->present[k])
            continue;
        struct ocascade *c = &o->cascades[o->casc[k]];
        const struct node *nd = &f->nodes[k];
        if (o->depth[k] > c->depth)
            c->depth = o->depth[k];
        if (!o->accepted[k]) {
            c->missing++;
            continue;
        }
        c->size++;
        c->first_ts = nd->ts < c->first_ts ? nd->ts : c->first_ts;
        c->last_ts = nd->ts > c->last_ts ? nd->ts : c->last_ts;
    }
}

/* The root's label, else the one of the earliest labelled post (times are unique). */
static void cascade_labels(struct oracle *o)
{
    const struct forest *f = o->f;

    for (uint32_t c = 0; c < o->n_cascades; c++) {
        struct ocascade *oc = &o->cascades[c];
        int64_t best = INT64_MAX;
        if (o->accepted[oc->root] && f->nodes[oc->root].label) {
            oc->label = f->nodes[oc->root].label;
            continue;
        }
        for (uint32_t i = o->moff[c]; i < o->moff[c + 1]; i++) {
            uint32_t k = o->mem[i];
            if (o->accepted[k] && f->nodes[k].label && f->nodes[k].ts < best) {
                best = f->nodes[k].ts;
                oc->label = f->nodes[k].label;
            }
        }
    }
}

static void cascade_breadth(struct oracle *o)
{
    uint32_t *width = calloc(o->f->n + 1, sizeof(*width));

    for (uint32_t c = 0; c < o->n_cascades; c++) {
        struct ocascade *oc = &o->cascades[c];
        memset(width, 0, (oc->depth + 1) * sizeof(*width));
        for (uint32_t i = o->moff[c]; i < o->moff[c + 1]; i++)
            width[o->depth[o->mem[i]]]++;
        for (uint32_t d = 0; d <= oc->depth; d++)
            if (width[d] > oc->max_breadth)
                oc->max_breadth = width[d];
    }
    free(width);
}

static void cascade_unique_actors(struct oracle *o)
{
    uint32_t *mark = calloc(o->f->n_actors, sizeof(*mark));

    for (uint32_t c = 0; c < o->n_cascades; c++) {
        for (uint32_t i = o->moff[c]; i < o->moff[c + 1]; i++) {
            uint32_t k = o->mem[i], a = o->f->nodes[k].actor;
            if (!o->accepted[k] || mark[a] == c + 1)
                continue;
            mark[a] = c + 1;
            o->cascades[c].unique_actors++;
        }
    }
    free(mark);
}

/* W summed over ordered pairs by one BFS per node, then halved. */
static void cascade_wiener(struct oracle *o)
{
    uint32_t n = o->f->n;
    int32_t *dist = malloc(n * sizeof(*dist));
    uint32_t *queue = malloc(n * sizeof(*queue));
    struct adj g;

    adj_build(o, &g);
    memset(dist, 0xff, n * sizeof(*dist));
    for (uint32_t k = 0; k < n; k++)
        if (o->present[k])
            o->cascades[o->casc[k]].wiener += bfs_sum(o, &g, k, dist, queue);
    for (uint32_t c = 0; c < o->n_cascades; c++) {
        struct ocascade *oc = &o->cascades[c];
        uint64_t nodes = oc->size + oc->missing;
        oc->wiener /= 2;
        oc->virality =
            nodes > 1 ? (double)oc->wiener / ((double)nodes * (double)(nodes - 1) / 2) : 0.0;
    }
    adj_free(&g);
    free(dist);
    free(queue);
}

static void actor_posts(struct oracle *o)
{
    const struct forest *f = o->f;

    for (uint32_t a = 0; a < f->n_actors; a++) {
        o->actors[a].first_ts = INT64_MAX;
        o->actors[a].last_ts = INT64_MIN;
        o->actors[a].type = EVENT_ACTOR_ACCOUNT;
    }
    for (uint32_t k = 0; k < f->n; k++) {
        const struct node *nd = &f->nodes[k];
        struct oactor *oa = &o->actors[nd->actor];
        if (!o->accepted[k])
            continue;
        o->actors_present += oa->posts == 0;
        oa->posts++;
        oa->roots += nd->parent < 0;
        oa->shares += nd->parent >= 0;
        oa->first_ts = nd->ts < oa->first_ts ? nd->ts : oa->first_ts;
        oa->last_ts = nd->ts > oa->last_ts ? nd->ts : oa->last_ts;
    }
    for (uint32_t a = 0; a < f->n_actors; a++)
        if (o->first_type[a] != EVENT_ACTOR_UNSPECIFIED)
            o->actors[a].type = o->first_type[a];
    for (uint32_t a = 0; o->actor_first && a < f->n_actors; a++) {
        if (!o->actors[a].posts)
            continue;
        /* the model's span covers the held posts: a narrower one would be the model's bug */
        if (o->actor_first[a] > o->actors[a].first_ts || o->actor_last[a] < o->actors[a].last_ts)
            prop_fail("model: actor %u's span [%lld, %lld] misses a held post's time", a,
                      (long long)o->actor_first[a], (long long)o->actor_last[a]);
        o->actors[a].first_ts = o->actor_first[a];
        o->actors[a].last_ts = o->actor_last[a];
    }
}

/* Distinct keys among the accepted posts' own contents (what they carry from their root is some
 * accepted root's own), by their bytes. */
static void count_contents(struct oracle *o)
{
    const struct forest *f = o->f;
    const char **seen = calloc(f->n + 1, sizeof(*seen));

    for (uint32_t k = 0; k < f->n; k++) {
        const char *c = f->nodes[k].content;
        uint32_t i = 0;
        if (!o->accepted[k] || !c)
            continue;
        while (i < o->contents && strcmp(seen[i], c) != 0)
            i++;
        if (i == o->contents)
            seen[o->contents++] = c;
    }
    free(seen);
}

static int cmp_u64(const void *pa, const void *pb)
{
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return (a > b) - (a < b);
}

/* Direct reshares between accepted posts: received counts, and the distinct (u, v) pairs that
 * are both the graph's edges and the amplifier sets. */
static void actor_reshares(struct oracle *o)
{
    const struct forest *f = o->f;
    uint64_t *pairs = malloc((f->n ? f->n : 1) * sizeof(*pairs));
    uint32_t m = 0;

    for (uint32_t k = 0; k < f->n; k++) {
        int32_t p = f->nodes[k].parent;
        if (!o->accepted[k] || p < 0 || !o->accepted[p])
            continue;
        uint32_t u = f->nodes[k].actor, v = f->nodes[p].actor;
        o->actors[v].reshares_received++;
        if (u != v)
            pairs[m++] = (uint64_t)v << 32 | u;
    }
    qsort(pairs, m, sizeof(*pairs), cmp_u64);
    for (uint32_t i = 0; i < m; i++) {
        if (i > 0 && pairs[i] == pairs[i - 1])
            continue;
        o->edges++;
        o->actors[pairs[i] >> 32].amplifiers++;
    }
    free(pairs);
}

/* Each accepted post adds one to the reach of every distinct actor among its proper ancestors. */
static void actor_reach(struct oracle *o)
{
    uint32_t *mark = calloc(o->f->n_actors, sizeof(*mark));

    for (uint32_t q = 0; q < o->f->n; q++) {
        if (!o->accepted[q])
            continue;
        for (int32_t x = eparent(o, q); x >= 0; x = eparent(o, (uint32_t)x)) {
            uint32_t a = o->f->nodes[x].actor;
            if (!o->accepted[x] || mark[a] == q + 1)
                continue;
            mark[a] = q + 1;
            o->actors[a].reach++;
        }
    }
    free(mark);
}

static void actor_cascades(struct oracle *o)
{
    uint32_t *mark = calloc(o->f->n_actors, sizeof(*mark));

    for (uint32_t c = 0; c < o->n_cascades; c++) {
        for (uint32_t i = o->moff[c]; i < o->moff[c + 1]; i++) {
            uint32_t k = o->mem[i], a = o->f->nodes[k].actor;
            if (!o->accepted[k] || mark[a] == c + 1)
                continue;
            mark[a] = c + 1;
            o->actors[a].cascades++;
        }
    }
    free(mark);
}

void oracle_compute(struct oracle *o, const struct forest *f, const struct model *m)
{
    uint32_t n = f->n ? f->n : 1;

    memset(o, 0, sizeof(*o));
    o->f = f;
    o->accepted = m->accepted;
    o->first_type = m->first_type;
    o->retention_ms = m->retention_ms;
    o->actor_first = m->actor_first;
    o->actor_last = m->actor_last;
    o->present = calloc(n, 1);
    o->root = calloc(n, sizeof(*o->root));
    o->casc = calloc(n, sizeof(*o->casc));
    o->depth = calloc(n, sizeof(*o->depth));
    o->cascades = calloc(n, sizeof(*o->cascades));
    o->actors = calloc(f->n_actors, sizeof(*o->actors));
    find_present(o);
    find_roots(o);
    group_members(o);
    cascade_counts(o);
    cascade_labels(o);
    cascade_breadth(o);
    cascade_unique_actors(o);
    cascade_wiener(o);
    actor_posts(o);
    actor_reshares(o);
    actor_reach(o);
    actor_cascades(o);
    count_contents(o);
}

void oracle_free(struct oracle *o)
{
    free(o->present);
    free(o->root);
    free(o->casc);
    free(o->depth);
    free(o->cascades);
    free(o->actors);
    free(o->moff);
    free(o->mem);
    memset(o, 0, sizeof(*o));
}

static void set_str(const char **s, uint32_t *len, const char *v)
{
    *s = v;
    *len = v ? (uint32_t)strlen(v) : 0;
}

void oracle_cascade_view(const struct oracle *o, uint32_t c, char *buf, struct engine_cascade *out)
{
    const struct ocascade *oc = &o->cascades[c];
    const struct node *root = &o->f->nodes[oc->root];
    int observed = o->accepted[oc->root];

    memset(out, 0, sizeof(*out));
    out->root = buf;
    out->root_len = post_id(o->f, (uint32_t)oc->root, buf);
    if (observed) {
        out->root_actor = buf + ID_BUF;
        out->root_actor_len = actor_id(o->f, root->actor, buf + ID_BUF);
    }
    set_str(&out->content, &out->content_len, observed ? root->content : NULL);
    set_str(&out->label, &out->label_len, oc->label);
    out->size = oc->size;
    out->missing = oc->missing;
    out->depth = oc->depth;
    out->max_breadth = oc->max_breadth;
    out->unique_actors = oc->unique_actors;
    out->structural_virality = oc->virality;
    out->wiener = oc->wiener;
    out->first_ts = oc->first_ts;
    out->last_ts = oc->last_ts;
    out->duration_ms = oc->last_ts - oc->first_ts;
}

void oracle_actor_view(const struct oracle *o, uint32_t a, char *buf, struct engine_actor *out)
{
    const struct oactor *oa = &o->actors[a];

    memset(out, 0, sizeof(*out));
    out->name = buf;
    out->name_len = actor_id(o->f, a, buf);
    out->posts = oa->posts;
    out->roots = oa->roots;
    out->shares = oa->shares;
    out->reshares_received = oa->reshares_received;
    out->amplifiers = oa->amplifiers;
    out->reach = oa->reach;
    out->cascades = oa->cascades;
    out->first_ts = oa->first_ts;
    out->last_ts = oa->last_ts;
    out->actor_type = oa->type;
}
