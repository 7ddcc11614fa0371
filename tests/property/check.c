/* Checks of one engine against the oracle: the cascade of every node, every actor, paths, trees,
 * counters and the top lists, plus the comparison of two engines fed different orders of one
 * forest. Engine-reported ids are mapped back to forest nodes through their exact canonical
 * bytes, so an id in the wrong form (say "0123" for 123) is caught as an unknown node. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prop.h"

static void expect_eq(const char *where, const char *what, long long exp, long long act)
{
    if (exp != act)
        prop_fail("%s: %s: expected %lld, got %lld", where, what, exp, act);
}

/* An optional string for a message: quoted, or NULL. */
static const char *show(char *buf, size_t size, const char *s, uint32_t len)
{
    if (!s)
        return "NULL";
    snprintf(buf, size, "\"%.*s\"", (int)len, s);
    return buf;
}

/* NULL means "none" in the API: it must match exactly, as must the bytes of a string. */
static void expect_str(const char *where, const char *what, const char *exp, uint32_t exp_len,
                       const char *act, uint32_t act_len)
{
    char be[ID_BUF + 3], ba[ID_BUF + 3];

    if (!exp && !act)
        return;
    if (!exp || !act || exp_len != act_len || memcmp(exp, act, exp_len) != 0)
        prop_fail("%s: %s: expected %s, got %s", where, what, show(be, sizeof(be), exp, exp_len),
                  show(ba, sizeof(ba), act, act_len));
}

#define CMP(field) expect_eq(where, #field, (long long)exp->field, (long long)act->field)

void cmp_cascade(const struct engine_cascade *exp, const struct engine_cascade *act,
                 const char *where)
{
    expect_str(where, "root", exp->root, exp->root_len, act->root, act->root_len);
    expect_str(where, "root_actor", exp->root_actor, exp->root_actor_len, act->root_actor,
               act->root_actor_len);
    expect_str(where, "content", exp->content, exp->content_len, act->content, act->content_len);
    expect_str(where, "label", exp->label, exp->label_len, act->label, act->label_len);
    CMP(size);
    CMP(missing);
    CMP(depth);
    CMP(max_breadth);
    CMP(unique_actors);
    CMP(wiener);
    CMP(first_ts);
    CMP(last_ts);
    CMP(duration_ms);
    /* exact: W and n(n-1)/2 are exact doubles, so one correctly rounded division is expected */
    if (exp->structural_virality != act->structural_virality)
        prop_fail("%s: structural_virality: expected %.17g, got %.17g (W %llu)", where,
                  exp->structural_virality, act->structural_virality,
                  (unsigned long long)act->wiener);
}

void cmp_actor(const struct engine_actor *exp, const struct engine_actor *act, const char *where)
{
    expect_str(where, "name", exp->name, exp->name_len, act->name, act->name_len);
    CMP(posts);
    CMP(roots);
    CMP(shares);
    CMP(reshares_received);
    CMP(amplifiers);
    CMP(reach);
    CMP(cascades);
    CMP(first_ts);
    CMP(last_ts);
    CMP(actor_type);
}

/* The oracle's metrics in engine form, for every cascade and actor, computed once per check. */
struct cview {
    struct engine_cascade c;
    char buf[2 * ID_BUF];
};

struct aview {
    struct engine_actor a;
    char buf[ID_BUF];
};

struct checker {
    struct engine *e;
    const struct forest *f;
    const struct oracle *o;
    struct rng *r;
    struct cview *cv;
    struct aview *av;
    char where[ID_BUF + 64];
};

static void where_post(struct checker *ck, const char *what, uint32_t k)
{
    char id[ID_BUF];
    post_id(ck->f, k, id);
    snprintf(ck->where, sizeof(ck->where), "%s %s", what, id);
}

/* ---- cascades and actors of every id ---- */

static int cmp_u32(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    return (a > b) - (a < b);
}

static void check_cascade_ids(struct checker *ck, const uint32_t *ids)
{
    uint32_t n = ck->o->n_cascades;
    uint32_t *sorted = malloc((n ? n : 1) * sizeof(*sorted));

    memcpy(sorted, ids, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_u32);
    for (uint32_t i = 1; i < n; i++)
        if (sorted[i] == sorted[i - 1])
            prop_fail("two cascades report the same cascade id %u", sorted[i]);
    free(sorted);
}

/* Every node of a cascade reports it, under one id; unknown posts are -ENOENT. */
static void check_cascades(struct checker *ck)
{
    const struct oracle *o = ck->o;
    uint32_t *ids = calloc(o->n_cascades + 1, sizeof(*ids));
    struct engine_cascade got;
    char id[ID_BUF];

    for (uint32_t k = 0; k < ck->f->n; k++) {
        uint32_t len = post_id(ck->f, k, id);
        int rc = engine_cascade(ck->e, id, len, &got);
        where_post(ck, "engine_cascade of post", k);
        expect_eq(ck->where, "return code", o->present[k] ? 0 : -ENOENT, rc);
        if (!o->present[k])
            continue;
        cmp_cascade(&ck->cv[o->casc[k]].c, &got, ck->where);
        if (o->root[k] == (int32_t)k) /* roots come first: their index is the lowest */
            ids[o->casc[k]] = got.id;
        expect_eq(ck->where, "cascade id (same as its root's)", ids[o->casc[k]], got.id);
    }
    check_cascade_ids(ck, ids);
    free(ids);
    expect_eq(GHOST_POST, "engine_cascade", -ENOENT,
              engine_cascade(ck->e, GHOST_POST, sizeof(GHOST_POST) - 1, &got));
    expect_eq("empty id", "engine_cascade", -ENOENT, engine_cascade(ck->e, "", 0, &got));
}

static void check_actors(struct checker *ck)
{
    struct engine_actor got;
    char id[ID_BUF];

    for (uint32_t a = 0; a < ck->f->n_actors; a++) {
        uint32_t len = actor_id(ck->f, a, id);
        int rc = engine_actor(ck->e, id, len, &got);
        snprintf(ck->where, sizeof(ck->where), "engine_actor %s", id);
        expect_eq(ck->where, "return code", ck->o->actors[a].posts ? 0 : -ENOENT, rc);
        if (rc == 0)
            cmp_actor(&ck->av[a].a, &got, ck->where);
    }
    /* rejected events and duplicates name this actor: it must not exist */
    expect_eq(GHOST, "engine_actor", -ENOENT, engine_actor(ck->e, GHOST, strlen(GHOST), &got));
}

static void check_stats(struct checker *ck, const uint64_t *outcomes)
{
    struct engine_stats st;
    const struct oracle *o = ck->o;

    engine_get_stats(ck->e, &st);
    for (int i = 0; i < EVENT_OUTCOME_COUNT; i++)
        expect_eq("stats outcomes", event_outcome_name(i), (long long)outcomes[i],
                  (long long)st.outcomes[i]);
    expect_eq("stats", "posts", (long long)o->posts, (long long)st.posts);
    expect_eq("stats", "placeholders", (long long)o->placeholders, (long long)st.placeholders);
    expect_eq("stats", "cascades", o->n_cascades, (long long)st.cascades);
    expect_eq("stats", "actors", (long long)o->actors_present, (long long)st.actors);
    expect_eq("stats", "edges", (long long)o->edges, (long long)st.edges);
    expect_eq("stats", "contents", (long long)o->contents, (long long)st.contents);
    expect_eq("stats", "retention_ms", (long long)o->retention_ms, (long long)st.retention_ms);
}

/* ---- paths and trees ---- */

struct collect {
    struct engine_node *nodes;
    uint32_t n, cap;
};

static int collect_fn(void *ctx, const struct engine_node *node)
{
    struct collect *c = ctx;

    if (c->n == c->cap)
        return 1; /* more nodes than the forest has: stop, the count check will say so */
    c->nodes[c->n++] = *node;
    return 0;
}

static int32_t eparent(const struct oracle *o, uint32_t k)
{
    return o->accepted[k] ? o->f->nodes[k].parent : -1;
}

/* One node as engine_path or engine_tree reports it; returns its forest index. */
static uint32_t check_node(struct checker *ck, const struct engine_node *nd)
{
    const struct forest *f = ck->f;
    int32_t k = post_index(f, nd->post, nd->post_len);
    char id[ID_BUF];

    if (k < 0 || !ck->o->present[k])
        prop_fail("%s: reports node \"%.*s\", which is not in the engine", ck->where,
                  (int)nd->post_len, nd->post);
    const struct node *fn = &f->nodes[k];
    int observed = ck->o->accepted[k];
    int32_t p = eparent(ck->o, (uint32_t)k);
    expect_eq(ck->where, "node depth", ck->o->depth[k], nd->depth);
    expect_eq(ck->where, "node placeholder", !observed, nd->placeholder);
    expect_eq(ck->where, "node ts", observed ? fn->ts : 0, nd->ts);
    if (observed) {
        uint32_t len = actor_id(f, fn->actor, id);
        expect_str(ck->where, "node actor", id, len, nd->actor, nd->actor_len);
        expect_eq(ck->where, "node kind",
                  fn->kind != KIND_DEFAULT ? fn->kind
                  : fn->parent < 0         ? EVENT_KIND_POST
                                           : EVENT_KIND_SHARE,
                  nd->kind);
    } else if (nd->actor) {
        prop_fail("%s: placeholder node has actor \"%.*s\"", ck->where, (int)nd->actor_len,
                  nd->actor);
    }
    if (p < 0)
        expect_eq(ck->where, "root node parent_len", 0, nd->parent_len);
    else
        expect_eq(ck->where, "node parent", p, post_index(f, nd->parent, nd->parent_len));
    return (uint32_t)k;
}

/* engine_path: the node, then each parent up to the root. */
static void check_path(struct checker *ck, uint32_t k, struct collect *col)
{
    char id[ID_BUF];
    uint32_t len = post_id(ck->f, k, id);

    col->n = 0;
    where_post(ck, "engine_path from", k);
    int rc = engine_path(ck->e, id, len, collect_fn, col);
    expect_eq(ck->where, "nodes on the path", ck->o->depth[k] + 1, rc);
    expect_eq(ck->where, "nodes visited", rc, col->n);
    int32_t x = (int32_t)k;
    for (uint32_t i = 0; i < col->n; i++, x = eparent(ck->o, (uint32_t)x))
        expect_eq(ck->where, "path node", x, check_node(ck, &col->nodes[i]));
}

/* A member of cascade c at random: trees can be asked for through any of their posts. */
static uint32_t random_member(struct checker *ck, uint32_t c)
{
    const struct oracle *o = ck->o;
    return o->mem[o->moff[c] + rng_below(ck->r, o->moff[c + 1] - o->moff[c])];
}

/* engine_tree: every node of the cascade once, breadth-first from the root. */
static void check_tree(struct checker *ck, uint32_t c, struct collect *col, uint8_t *seen)
{
    const struct ocascade *oc = &ck->o->cascades[c];
    uint32_t nodes = oc->size + oc->missing, k = random_member(ck, c);
    char id[ID_BUF];
    uint32_t len = post_id(ck->f, k, id);

    col->n = 0;
    where_post(ck, "engine_tree through", k);
    int rc = engine_tree(ck->e, id, len, 0, collect_fn, col);
    expect_eq(ck->where, "nodes in the tree", nodes, rc);
    expect_eq(ck->where, "nodes visited", rc, col->n);
    for (uint32_t i = 0; i < col->n; i++) {
        uint32_t x = check_node(ck, &col->nodes[i]);
        if (ck->o->casc[x] != (int32_t)c || seen[x])
            prop_fail("%s: node %u is from another cascade or visited twice", ck->where, i);
        seen[x] = 1;
        if (i == 0)
            expect_eq(ck->where, "first node (the root)", oc->root, x);
        else if (col->nodes[i].depth < col->nodes[i - 1].depth)
            prop_fail("%s: not breadth-first: depth %u after %u", ck->where, col->nodes[i].depth,
                      col->nodes[i - 1].depth);
    }
    uint32_t limit = 1 + rng_below(ck->r, nodes + 1);
    col->n = 0;
    rc = engine_tree(ck->e, id, len, limit, collect_fn, col);
    expect_eq(ck->where, "nodes with a limit", limit < nodes ? limit : nodes, rc);
    expect_eq(ck->where, "nodes visited with a limit", rc, col->n);
}

static void check_paths_and_trees(struct checker *ck, int full)
{
    const struct oracle *o = ck->o;
    struct collect col = {.cap = ck->f->n + 1};
    uint8_t *seen = calloc(ck->f->n, 1);
    char id[ID_BUF];

    col.nodes = calloc(col.cap, sizeof(*col.nodes));
    for (uint32_t k = 0; k < ck->f->n; k++) {
        if (o->present[k] && (full || rng_chance(ck->r, 10)))
            check_path(ck, k, &col);
        if (!o->present[k]) {
            uint32_t len = post_id(ck->f, k, id);
            where_post(ck, "engine_path/engine_tree of unknown post", k);
            expect_eq(ck->where, "path", -ENOENT, engine_path(ck->e, id, len, collect_fn, &col));
            expect_eq(ck->where, "tree", -ENOENT, engine_tree(ck->e, id, len, 0, collect_fn, &col));
        }
    }
    for (uint32_t c = 0; c < o->n_cascades; c++)
        check_tree(ck, c, &col, seen);
    free(col.nodes);
    free(seen);
}

/* ---- top lists ---- */

double cascade_metric(const struct engine_cascade *c, int metric)
{
    switch (metric) {
    case ENGINE_BY_SIZE:
        return c->size;
    case ENGINE_BY_DEPTH:
        return c->depth;
    case ENGINE_BY_MAX_BREADTH:
        return c->max_breadth;
    case ENGINE_BY_VIRALITY:
        return c->structural_virality;
    case ENGINE_BY_UNIQUE_ACTORS:
        return c->unique_actors;
    case ENGINE_BY_LAST_TS:
        return (double)c->last_ts; /* |ts| < 2^53: exact */
    default:
        return (double)c->growth; /* the ranking of engine_top_growth */
    }
}

double actor_metric(const struct engine_actor *a, int metric)
{
    switch (metric) {
    case ENGINE_BY_REACH:
        return a->reach;
    case ENGINE_BY_RESHARES:
        return a->reshares_received;
    case ENGINE_BY_AMPLIFIERS:
        return a->amplifiers;
    default:
        return a->posts;
    }
}

static int by_value_desc(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a < b) - (a > b);
}

static int same_str(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    return a && alen == blen && memcmp(a, b, alen) == 0;
}

int cascade_passes(const struct engine_cascade *c, const struct engine_cascade_filter *flt)
{
    if (!flt)
        return 1;
    if (flt->label && !same_str(c->label, c->label_len, flt->label, flt->label_len))
        return 0;
    if (flt->content && !same_str(c->content, c->content_len, flt->content, flt->content_len))
        return 0;
    if ((flt->has_since && c->last_ts < flt->since) || (flt->has_until && c->first_ts > flt->until))
        return 0;
    return c->size >= flt->min_size;
}

/* Filters on values that occur in the forest (so that some cascades pass) or on none. */
static const struct engine_cascade_filter *random_filter(struct checker *ck,
                                                         struct engine_cascade_filter *flt)
{
    const struct node *a = &ck->f->nodes[rng_below(ck->r, ck->f->n)];
    const struct node *b = &ck->f->nodes[rng_below(ck->r, ck->f->n)];

    if (rng_chance(ck->r, 40))
        return NULL;
    memset(flt, 0, sizeof(*flt));
    flt->min_size = rng_chance(ck->r, 30) ? rng_below(ck->r, 5) : 0;
    if (rng_chance(ck->r, 25))
        flt->label = a->label ? a->label : "no-such-label";
    if (rng_chance(ck->r, 25))
        flt->content = b->content ? b->content : "no-such-content";
    flt->label_len = flt->label ? (uint32_t)strlen(flt->label) : 0;
    flt->content_len = flt->content ? (uint32_t)strlen(flt->content) : 0;
    flt->has_since = rng_chance(ck->r, 25);
    flt->since = a->ts;
    flt->has_until = rng_chance(ck->r, 25);
    flt->until = b->ts;
    return flt;
}

/* The returned cascades' values must be the top of the oracle's sorted values, position by
 * position; ids are not compared where values tie, as tie order is the engine's own. */
static void check_top_cascades_by(struct checker *ck, int metric, double *vals,
                                  struct engine_cascade *out, uint8_t *seen)
{
    const struct oracle *o = ck->o;
    struct engine_cascade_filter fbuf;
    const struct engine_cascade_filter *flt = random_filter(ck, &fbuf);
    uint32_t m = 0;

    for (uint32_t c = 0; c < o->n_cascades; c++)
        if (cascade_passes(&ck->cv[c].c, flt))
            vals[m++] = cascade_metric(&ck->cv[c].c, metric);
    qsort(vals, m, sizeof(*vals), by_value_desc);
    uint32_t limit = 1 + rng_below(ck->r, m + 3);
    int rc = engine_top_cascades(ck->e, metric, flt, out, limit);
    snprintf(ck->where, sizeof(ck->where), "engine_top_cascades by %s (limit %u, %s)",
             engine_cascade_metric_name(metric), limit, flt ? "filtered" : "unfiltered");
    expect_eq(ck->where, "count", limit < m ? limit : m, rc);
    memset(seen, 0, o->n_cascades);
    for (int i = 0; i < rc; i++) {
        int32_t k = post_index(ck->f, out[i].root, out[i].root_len);
        if (k < 0 || o->root[k] != k || seen[o->casc[k]] || !cascade_passes(&out[i], flt))
            prop_fail("%s: entry %d (root \"%.*s\") is no cascade root, a repeat, or fails the "
                      "filter",
                      ck->where, i, (int)out[i].root_len, out[i].root);
        seen[o->casc[k]] = 1;
        cmp_cascade(&ck->cv[o->casc[k]].c, &out[i], ck->where);
        if (cascade_metric(&out[i], metric) != vals[i])
            prop_fail("%s: entry %d: value %.17g, expected %.17g", ck->where, i,
                      cascade_metric(&out[i], metric), vals[i]);
    }
}

static void check_top_cascades(struct checker *ck)
{
    uint32_t cap = ck->o->n_cascades + 3;
    double *vals = calloc(cap, sizeof(*vals));
    struct engine_cascade *out = calloc(cap, sizeof(*out));
    uint8_t *seen = calloc(cap, 1);

    for (int metric = 0; metric < ENGINE_CASCADE_METRICS; metric++)
        check_top_cascades_by(ck, metric, vals, out, seen);
    expect_eq("engine_top_cascades", "unknown metric", -EINVAL,
              engine_top_cascades(ck->e, ENGINE_CASCADE_METRICS, NULL, out, 1));
    expect_eq("engine_top_cascades", "negative metric", -EINVAL,
              engine_top_cascades(ck->e, -1, NULL, out, 1));
    free(vals);
    free(out);
    free(seen);
}

static void check_top_actors_by(struct checker *ck, int metric, int type, double *vals,
                                struct engine_actor *out, uint8_t *seen)
{
    const struct forest *f = ck->f;
    uint32_t m = 0;

    for (uint32_t a = 0; a < f->n_actors; a++)
        if (ck->o->actors[a].posts && (type == 0 || ck->o->actors[a].type == type))
            vals[m++] = actor_metric(&ck->av[a].a, metric);
    qsort(vals, m, sizeof(*vals), by_value_desc);
    uint32_t limit = 1 + rng_below(ck->r, m + 3);
    int rc = engine_top_actors(ck->e, metric, type, out, limit);
    snprintf(ck->where, sizeof(ck->where), "engine_top_actors by %s (type %d, limit %u)",
             engine_actor_metric_name(metric), type, limit);
    expect_eq(ck->where, "count", limit < m ? limit : m, rc);
    memset(seen, 0, f->n_actors);
    for (int i = 0; i < rc; i++) {
        int32_t a = actor_index(f, out[i].name, out[i].name_len);
        if (a < 0 || seen[a])
            prop_fail("%s: entry %d (\"%.*s\") is unknown or a repeat", ck->where, i,
                      (int)out[i].name_len, out[i].name);
        seen[a] = 1;
        cmp_actor(&ck->av[a].a, &out[i], ck->where);
        if (actor_metric(&out[i], metric) != vals[i])
            prop_fail("%s: entry %d: value %.17g, expected %.17g", ck->where, i,
                      actor_metric(&out[i], metric), vals[i]);
    }
}

static void check_top_actors(struct checker *ck)
{
    uint32_t cap = ck->f->n_actors + 3;
    double *vals = calloc(cap, sizeof(*vals));
    struct engine_actor *out = calloc(cap, sizeof(*out));
    uint8_t *seen = calloc(cap, 1);

    for (int metric = 0; metric < ENGINE_ACTOR_METRICS; metric++)
        for (int type = 0; type <= EVENT_ACTOR_PAGE; type++)
            check_top_actors_by(ck, metric, type, vals, out, seen);
    expect_eq("engine_top_actors", "unknown metric", -EINVAL,
              engine_top_actors(ck->e, ENGINE_ACTOR_METRICS, 0, out, 1));
    free(vals);
    free(out);
    free(seen);
}

/* ---- entry points ---- */

void check_engine(struct engine *e, const struct forest *f, const struct model *m, struct rng *r,
                  int full)
{
    struct oracle o;
    struct checker ck = {.e = e, .f = f, .o = &o, .r = r};

    oracle_compute(&o, f, m);
    ck.cv = calloc(o.n_cascades + 1, sizeof(*ck.cv));
    ck.av = calloc(f->n_actors, sizeof(*ck.av));
    for (uint32_t c = 0; c < o.n_cascades; c++)
        oracle_cascade_view(&o, c, ck.cv[c].buf, &ck.cv[c].c);
    for (uint32_t a = 0; a < f->n_actors; a++)
        oracle_actor_view(&o, a, ck.av[a].buf, &ck.av[a].a);
    check_stats(&ck, m->outcomes);
    check_cascades(&ck);
    check_actors(&ck);
    check_paths_and_trees(&ck, full);
    check_top_cascades(&ck);
    check_top_actors(&ck);
    struct engine_cascade *views = calloc(o.n_cascades + 1, sizeof(*views));
    for (uint32_t c = 0; c < o.n_cascades; c++)
        views[c] = ck.cv[c].c;
    check_recent(e, f, &o, views, r);
    free(views);
    free(ck.cv);
    free(ck.av);
    oracle_free(&o);
}

static void same_cascades(struct engine *a, struct engine *b, const struct forest *f)
{
    char id[ID_BUF], where[ID_BUF + 64];

    for (uint32_t k = 0; k < f->n; k++) {
        struct engine_cascade ca, cb;
        uint32_t len = post_id(f, k, id);
        snprintf(where, sizeof(where), "cascade of %s, order A vs order B", id);
        int ra = engine_cascade(a, id, len, &ca), rb = engine_cascade(b, id, len, &cb);
        expect_eq(where, "return code", ra, rb);
        if (ra == 0)
            cmp_cascade(&ca, &cb, where);
    }
}

static void same_actors(struct engine *a, struct engine *b, const struct forest *f)
{
    char id[ID_BUF], where[ID_BUF + 64];

    for (uint32_t x = 0; x < f->n_actors; x++) {
        struct engine_actor aa, ab;
        uint32_t len = actor_id(f, x, id);
        snprintf(where, sizeof(where), "actor %s, order A vs order B", id);
        int ra = engine_actor(a, id, len, &aa), rb = engine_actor(b, id, len, &ab);
        expect_eq(where, "return code", ra, rb);
        if (ra != 0)
            continue;
        if (f->fickle_types) /* then the first type seen depends on the order */
            aa.actor_type = ab.actor_type;
        cmp_actor(&aa, &ab, where);
    }
}

void check_same_state(struct engine *a, struct engine *b, const struct forest *f)
{
    struct engine_stats sa, sb;

    g_ctx.phase = "engine vs engine";
    same_cascades(a, b, f);
    same_actors(a, b, f);
    engine_get_stats(a, &sa);
    engine_get_stats(b, &sb);
    expect_eq("stats A vs B", "posts", (long long)sa.posts, (long long)sb.posts);
    expect_eq("stats A vs B", "placeholders", (long long)sa.placeholders,
              (long long)sb.placeholders);
    expect_eq("stats A vs B", "cascades", (long long)sa.cascades, (long long)sb.cascades);
    expect_eq("stats A vs B", "actors", (long long)sa.actors, (long long)sb.actors);
    expect_eq("stats A vs B", "edges", (long long)sa.edges, (long long)sb.edges);
}
