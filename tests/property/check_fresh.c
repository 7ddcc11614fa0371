/* Two engines that must answer alike: an engine under retention and a fresh engine fed only the
 * posts it still holds, or an engine and its own snapshot loaded back. Every read of the public
 * API is asked of both with the same arguments. Where the two may order ties differently (a
 * fresh engine numbers its cascades and actors otherwise than one that reused evicted ids), full
 * lists are compared as multisets, sorted by value and then by a name both share, and limited
 * lists by their values position by position; a loaded snapshot must match exactly, ids and tie
 * order included. An actor's first_ts, last_ts and actor_type are compared only then: under
 * retention they cover the posts since the actor last had none held, which a fresh engine never
 * saw (the oracle check holds them to the delivery model instead). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prop.h"

struct pair {
    struct engine *a, *b;
    const struct forest *f;
    struct rng *r;
    const struct agree *how;
    char where[ID_BUF + 160];
};

static void eq(struct pair *p, const char *what, long long va, long long vb)
{
    if (va != vb)
        prop_fail("%s: %s: %s: %lld, expected (as the other engine) %lld", p->how->what, p->where,
                  what, va, vb);
}

static void same_bytes(struct pair *p, const char *what, const char *sa, uint32_t la,
                       const char *sb, uint32_t lb)
{
    if ((!sa) != (!sb) || la != lb || (sa && memcmp(sa, sb, la) != 0))
        prop_fail("%s: %s: %s: \"%.*s\", expected \"%.*s\"", p->how->what, p->where, what,
                  sa ? (int)la : 4, sa ? sa : "NULL", sb ? (int)lb : 4, sb ? sb : "NULL");
}

/* Bytewise, a shorter prefix first; NULL first. */
static int cmp_str(const char *a, uint32_t la, const char *b, uint32_t lb)
{
    if (!a || !b)
        return (a != NULL) - (b != NULL);
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

/* ---- cascades ---- */

static void cascade_pair(struct pair *p, const struct engine_cascade *ca,
                         const struct engine_cascade *cb)
{
    char where[sizeof(p->where) + 64];

    snprintf(where, sizeof(where), "%s: %s, the cascade of %.*s", p->how->what, p->where,
             (int)cb->root_len, cb->root);
    cmp_cascade(cb, ca, where);
    if (ca->growth != cb->growth)
        prop_fail("%s: growth %llu, expected %llu", where, (unsigned long long)ca->growth,
                  (unsigned long long)cb->growth);
    if (p->how->exact && ca->id != cb->id)
        prop_fail("%s: cascade id %u, expected %u", where, ca->id, cb->id);
}

static int g_metric; /* qsort has no context argument */

static int by_metric_then_root(const void *pa, const void *pb)
{
    const struct engine_cascade *a = pa, *b = pb;
    double va = cascade_metric(a, g_metric), vb = cascade_metric(b, g_metric);
    if (va != vb)
        return va > vb ? -1 : 1;
    return cmp_str(a->root, a->root_len, b->root, b->root_len);
}

/* Two answers of a ranked cascade list: the same count; the same values position by position;
 * and, when both are the whole list, the same cascades (after sorting ties by root) or, for a
 * loaded snapshot, the very same list. */
static void cascade_lists(struct pair *p, int metric, struct engine_cascade *la, int na,
                          struct engine_cascade *lb, int nb, int whole)
{
    eq(p, "entries", na, nb);
    for (int i = 0; i < na; i++)
        if (cascade_metric(&la[i], metric) != cascade_metric(&lb[i], metric))
            prop_fail("%s: %s: entry %d: value %.17g, expected %.17g", p->how->what, p->where, i,
                      cascade_metric(&la[i], metric), cascade_metric(&lb[i], metric));
    if (!whole && !p->how->exact)
        return;
    if (!p->how->exact) {
        g_metric = metric;
        qsort(la, (size_t)na, sizeof(*la), by_metric_then_root);
        qsort(lb, (size_t)nb, sizeof(*lb), by_metric_then_root);
    }
    for (int i = 0; i < na; i++)
        cascade_pair(p, &la[i], &lb[i]);
}

static void every_post(struct pair *p)
{
    char id[ID_BUF];

    for (uint32_t k = 0; k < p->f->n; k++) {
        struct engine_cascade ca, cb;
        uint32_t len = post_id(p->f, k, id);
        snprintf(p->where, sizeof(p->where), "engine_cascade of %s", id);
        int ra = engine_cascade(p->a, id, len, &ca), rb = engine_cascade(p->b, id, len, &cb);
        eq(p, "return code", ra, rb);
        if (ra == 0)
            cascade_pair(p, &ca, &cb);
    }
}

/* A filter on values the forest has, or none. */
static const struct engine_cascade_filter *some_filter(struct pair *p,
                                                       struct engine_cascade_filter *flt)
{
    const struct node *x = &p->f->nodes[rng_below(p->r, p->f->n)];

    if (rng_chance(p->r, 50))
        return NULL;
    memset(flt, 0, sizeof(*flt));
    switch (rng_below(p->r, 4)) {
    case 0:
        flt->label = x->label ? x->label : "false";
        flt->label_len = (uint32_t)strlen(flt->label);
        break;
    case 1:
        flt->content = x->content ? x->content : "claim:42";
        flt->content_len = (uint32_t)strlen(flt->content);
        break;
    case 2:
        flt->min_size = 1 + rng_below(p->r, 3);
        break;
    default:
        flt->has_since = 1;
        flt->since = x->ts;
    }
    return flt;
}

static void top_cascades(struct pair *p, uint32_t n)
{
    struct engine_cascade *la = calloc(n + 2, sizeof(*la)), *lb = calloc(n + 2, sizeof(*lb));
    struct engine_cascade_filter fbuf;

    for (int metric = 0; metric < ENGINE_CASCADE_METRICS; metric++) {
        const struct engine_cascade_filter *flt = some_filter(p, &fbuf);
        uint32_t limit = rng_chance(p->r, 50) ? n + 2 : 1 + rng_below(p->r, n + 1);
        snprintf(p->where, sizeof(p->where), "engine_top_cascades by %s (limit %u, %s)",
                 engine_cascade_metric_name(metric), limit, flt ? "filtered" : "unfiltered");
        int na = engine_top_cascades(p->a, metric, flt, la, limit);
        int nb = engine_top_cascades(p->b, metric, flt, lb, limit);
        cascade_lists(p, metric, la, na, lb, nb, limit > n);
    }
    free(la);
    free(lb);
}

static void growth(struct pair *p, uint32_t n)
{
    struct engine_cascade *la = calloc(n + 2, sizeof(*la)), *lb = calloc(n + 2, sizeof(*lb));
    int64_t max = p->how->growth_max;
    int64_t windows[] = {1, max, 1 + rng_below(p->r, (uint32_t)max), max > 1000 ? 1000 : max};
    struct engine_cascade_filter fbuf;

    for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
        const struct engine_cascade_filter *flt = some_filter(p, &fbuf);
        uint32_t limit = rng_chance(p->r, 50) ? n + 2 : 1 + rng_below(p->r, n + 1);
        snprintf(p->where, sizeof(p->where), "engine_top_growth (window %lld ms, limit %u, %s)",
                 (long long)windows[w], limit, flt ? "filtered" : "unfiltered");
        int na = engine_top_growth(p->a, windows[w], flt, la, limit);
        int nb = engine_top_growth(p->b, windows[w], flt, lb, limit);
        /* how many cascades grew is not known in advance: whole when fewer than asked */
        cascade_lists(p, ENGINE_CASCADE_METRICS, la, na, lb, nb, nb >= 0 && (uint32_t)nb < limit);
    }
    free(la);
    free(lb);
}

/* ---- contents ---- */

static void contents(struct pair *p, uint32_t n)
{
    struct engine_cascade *la = calloc(n + 2, sizeof(*la)), *lb = calloc(n + 2, sizeof(*lb));
    const char **keys = calloc(p->f->n + 2, sizeof(*keys));
    uint32_t nkeys = 0;

    keys[nkeys++] = "no-such-content";
    nkeys += forest_content_keys(p->f, keys + 1);
    for (uint32_t i = 0; i < nkeys; i++) {
        struct engine_content ca, cb;
        uint32_t len = (uint32_t)strlen(keys[i]);
        snprintf(p->where, sizeof(p->where), "engine_content \"%s\"", keys[i]);
        int na = engine_content(p->a, keys[i], len, &ca, la, n + 2);
        int nb = engine_content(p->b, keys[i], len, &cb, lb, n + 2);
        eq(p, "return code", na, nb);
        if (na < 0)
            continue;
        same_bytes(p, "key", ca.key, ca.key_len, cb.key, cb.key_len);
        eq(p, "posts", (long long)ca.posts, (long long)cb.posts);
        eq(p, "cascades", ca.cascades, cb.cascades);
        eq(p, "unique_actors", ca.unique_actors, cb.unique_actors);
        eq(p, "first_ts", ca.first_ts, cb.first_ts);
        eq(p, "last_ts", ca.last_ts, cb.last_ts);
        cascade_lists(p, ENGINE_BY_SIZE, la, na, lb, nb, 1);
    }
    free(keys);
    free(la);
    free(lb);
}

/* ---- actors ---- */

static void actor_pair(struct pair *p, const struct engine_actor *xa, const struct engine_actor *xb)
{
    struct engine_actor ca = *xa;
    char where[sizeof(p->where) + 64];

    snprintf(where, sizeof(where), "%s: %s, actor %.*s", p->how->what, p->where, (int)xb->name_len,
             xb->name);
    if (!p->how->exact) { /* held posts' counters only: see the top of the file */
        ca.first_ts = xb->first_ts;
        ca.last_ts = xb->last_ts;
        ca.actor_type = xb->actor_type;
    } else if (ca.id != xb->id) {
        prop_fail("%s: actor id %u, expected %u", where, ca.id, xb->id);
    }
    cmp_actor(xb, &ca, where);
}

static int by_ametric_then_name(const void *pa, const void *pb)
{
    const struct engine_actor *a = pa, *b = pb;
    double va = actor_metric(a, g_metric), vb = actor_metric(b, g_metric);
    if (va != vb)
        return va > vb ? -1 : 1;
    return cmp_str(a->name, a->name_len, b->name, b->name_len);
}

static void top_actors(struct pair *p, uint32_t n)
{
    struct engine_actor *la = calloc(n + 2, sizeof(*la)), *lb = calloc(n + 2, sizeof(*lb));

    for (int metric = 0; metric < ENGINE_ACTOR_METRICS; metric++) {
        /* a type filter only between a snapshot and its original: types follow the epochs */
        for (int type = 0; type <= (p->how->exact ? EVENT_ACTOR_PAGE : 0); type++) {
            uint32_t limit = rng_chance(p->r, 50) ? n + 2 : 1 + rng_below(p->r, n + 1);
            snprintf(p->where, sizeof(p->where), "engine_top_actors by %s (type %d, limit %u)",
                     engine_actor_metric_name(metric), type, limit);
            int na = engine_top_actors(p->a, metric, type, la, limit);
            int nb = engine_top_actors(p->b, metric, type, lb, limit);
            eq(p, "entries", na, nb);
            for (int i = 0; i < na; i++)
                eq(p, "value at a position", (long long)actor_metric(&la[i], metric),
                   (long long)actor_metric(&lb[i], metric));
            if (limit <= n && !p->how->exact)
                continue;
            if (!p->how->exact) {
                g_metric = metric;
                qsort(la, (size_t)na, sizeof(*la), by_ametric_then_name);
                qsort(lb, (size_t)nb, sizeof(*lb), by_ametric_then_name);
            }
            for (int i = 0; i < na; i++)
                actor_pair(p, &la[i], &lb[i]);
        }
    }
    free(la);
    free(lb);
}

struct nodes {
    struct engine_node *v;
    uint32_t n, cap;
};

static int collect(void *ctx, const struct engine_node *nd)
{
    struct nodes *c = ctx;
    if (c->n == c->cap)
        return 1;
    c->v[c->n++] = *nd;
    return 0;
}

/* Each actor's counters; then, for a sample, its links and cascades (ego.c), whose order is
 * by values and names, never ids. */
static void actors(struct pair *p)
{
    uint32_t na_ = p->f->n_actors, cap = na_ + 2;
    struct engine_link *la = calloc(2 * cap, sizeof(*la)), *lb = calloc(2 * cap, sizeof(*lb));
    uint32_t ccap = p->f->n + 2;
    struct engine_actor_cascade *ca = calloc(ccap, sizeof(*ca)), *cb = calloc(ccap, sizeof(*cb));
    char id[ID_BUF];

    for (uint32_t x = 0; x < na_; x++) {
        struct engine_actor xa, xb;
        uint32_t len = actor_id(p->f, x, id);
        snprintf(p->where, sizeof(p->where), "engine_actor %s", id);
        int ra = engine_actor(p->a, id, len, &xa), rb = engine_actor(p->b, id, len, &xb);
        eq(p, "return code", ra, rb);
        if (ra != 0)
            continue;
        actor_pair(p, &xa, &xb);
        if (na_ > 40 && !rng_chance(p->r, 5))
            continue;
        snprintf(p->where, sizeof(p->where), "engine_actor_links %s", id);
        int n1 = engine_actor_links(p->a, id, len, ENGINE_LINK_BOTH, cap, la);
        int n2 = engine_actor_links(p->b, id, len, ENGINE_LINK_BOTH, cap, lb);
        eq(p, "links", n1, n2);
        for (int i = 0; i < n1; i++) {
            eq(p, "link direction", la[i].direction, lb[i].direction);
            same_bytes(p, "link actor", la[i].actor, la[i].actor_len, lb[i].actor, lb[i].actor_len);
            eq(p, "link weight", la[i].weight, lb[i].weight);
            eq(p, "link reach", la[i].reach, lb[i].reach);
            if (p->how->exact)
                eq(p, "link actor_type", la[i].actor_type, lb[i].actor_type);
        }
        snprintf(p->where, sizeof(p->where), "engine_actor_cascades %s", id);
        n1 = engine_actor_cascades(p->a, id, len, ca, ccap);
        n2 = engine_actor_cascades(p->b, id, len, cb, ccap);
        eq(p, "cascades", n1, n2);
        for (int i = 0; i < n1; i++) {
            eq(p, "actor_posts", ca[i].actor_posts, cb[i].actor_posts);
            cascade_pair(p, &ca[i].cascade, &cb[i].cascade);
        }
    }
    free(la);
    free(lb);
    free(ca);
    free(cb);
}

/* Between a snapshot and its original: each cascade's tree node by node, in the same order. */
static void trees(struct pair *p)
{
    struct nodes ta = {.cap = p->f->n + 1}, tb = {.cap = p->f->n + 1};
    char id[ID_BUF];

    ta.v = calloc(ta.cap, sizeof(*ta.v));
    tb.v = calloc(tb.cap, sizeof(*tb.v));
    for (uint32_t k = 0; k < p->f->n; k++) {
        if (!rng_chance(p->r, 20))
            continue;
        uint32_t len = post_id(p->f, k, id);
        ta.n = tb.n = 0;
        snprintf(p->where, sizeof(p->where), "engine_tree through %s", id);
        int ra = engine_tree(p->a, id, len, 0, collect, &ta);
        int rb = engine_tree(p->b, id, len, 0, collect, &tb);
        eq(p, "nodes", ra, rb);
        for (uint32_t i = 0; ra > 0 && i < ta.n; i++) {
            const struct engine_node *x = &ta.v[i], *y = &tb.v[i];
            same_bytes(p, "node post", x->post, x->post_len, y->post, y->post_len);
            same_bytes(p, "node parent", x->parent, x->parent_len, y->parent, y->parent_len);
            same_bytes(p, "node actor", x->actor, x->actor_len, y->actor, y->actor_len);
            eq(p, "node ts", x->ts, y->ts);
            eq(p, "node depth", x->depth, y->depth);
            eq(p, "node kind", x->kind, y->kind);
            eq(p, "node placeholder", x->placeholder, y->placeholder);
        }
    }
    free(ta.v);
    free(tb.v);
}

/* ---- labels ---- */

#define FIGURES (4 * ENGINE_LABEL_METRICS + 1)

/* A summary's figures in one array: each metric's mean, median, p90, max, then the median
 * duration. */
static void figures(const struct engine_label_summary *s, double *out)
{
    for (int m = 0; m < ENGINE_LABEL_METRICS; m++) {
        out[4 * m] = s->dist[m].mean;
        out[4 * m + 1] = s->dist[m].median;
        out[4 * m + 2] = s->dist[m].p90;
        out[4 * m + 3] = s->dist[m].max;
    }
    out[4 * ENGINE_LABEL_METRICS] = s->duration_median;
}

static void labels(struct pair *p)
{
    struct engine_label_summary *sa, *sb;
    uint32_t na, nb;
    double x[FIGURES], y[FIGURES];

    snprintf(p->where, sizeof(p->where), "engine_labels");
    if (engine_labels(p->a, &sa, &na) != 0 || engine_labels(p->b, &sb, &nb) != 0)
        prop_fail("engine_labels failed");
    eq(p, "summaries", na, nb);
    for (uint32_t i = 0; i < na; i++) {
        snprintf(p->where, sizeof(p->where), "engine_labels, summary %u", i);
        same_bytes(p, "label", sa[i].label, sa[i].label_len, sb[i].label, sb[i].label_len);
        eq(p, "cascades", sa[i].cascades, sb[i].cascades);
        figures(&sa[i], x);
        figures(&sb[i], y);
        for (int q = 0; q < FIGURES; q++) {
            /* a mean of viralities is a sum in the engine's cascade order, which a fresh
             * engine's differs from: equal to rounding; every other figure is exact */
            int sum = q == 4 * ENGINE_LABEL_VIRALITY;
            double tol = sum && !p->how->exact ? 1e-12 * fabs(y[q]) : 0;
            if (fabs(x[q] - y[q]) > tol)
                prop_fail(
                    "%s: %s: figure %d (metric %s): %.17g, expected %.17g", p->how->what, p->where,
                    q, q / 4 < ENGINE_LABEL_METRICS ? engine_label_metric_name(q / 4) : "duration",
                    x[q], y[q]);
        }
    }
    free(sa);
    free(sb);
}

/* ---- the analytics worker's copy ---- */

#define REC (2 * ID_BUF + 64)

static int cmp_rec(const void *a, const void *b)
{
    return strcmp(a, b);
}

static const char *name_at(struct engine *e, uint32_t id, uint32_t *len)
{
    struct engine_actor x;
    if (engine_actor_at(e, id, &x) != 0)
        prop_fail("engine_copy_take names actor %u, which engine_actor_at does not know", id);
    *len = x.name_len;
    return x.name;
}

/* The copy as sorted text records: shares by names, content keys by names and times, and every
 * held actor's reach. Returns the number of records. */
static size_t copy_records(struct engine *e, char **out)
{
    struct engine_copy s;

    if (engine_copy_take(e, &s) != 0)
        prop_fail("engine_copy_take failed");
    size_t n = 0, cap = s.nshares + s.nkeys + s.nactors + 1;
    char *rec = calloc(cap, REC);
    for (size_t i = 0; i < s.nshares; i++) {
        uint32_t lf, lt;
        const char *from = name_at(e, s.shares[i].from, &lf);
        const char *to = name_at(e, s.shares[i].to, &lt);
        snprintf(rec + REC * n++, REC, "share %.*s -> %.*s", (int)lf, from, (int)lt, to);
    }
    for (size_t i = 0; i < s.nkeys; i++) {
        uint32_t la, lk;
        const char *who = name_at(e, s.keys[i].actor, &la);
        const char *key = engine_content_key(e, s.keys[i].content, &lk);
        if (!key)
            prop_fail("engine_copy_take names content %u, which has no key", s.keys[i].content);
        snprintf(rec + REC * n++, REC, "key %.*s %.*s %lld", (int)la, who, (int)lk, key,
                 (long long)s.keys[i].ts);
    }
    for (uint32_t id = 0; id < s.nactors; id++) {
        struct engine_actor x;
        if (engine_actor_at(e, id, &x) == 0 && x.posts)
            snprintf(rec + REC * n++, REC, "reach %.*s %u", (int)x.name_len, x.name, s.reach[id]);
    }
    engine_copy_free(&s);
    qsort(rec, n, REC, cmp_rec);
    *out = rec;
    return n;
}

static void copies(struct pair *p)
{
    char *ra, *rb;
    size_t na = copy_records(p->a, &ra), nb = copy_records(p->b, &rb);

    snprintf(p->where, sizeof(p->where), "engine_copy_take");
    for (size_t i = 0; i < na && i < nb; i++)
        if (strcmp(ra + REC * i, rb + REC * i) != 0)
            prop_fail("%s: %s: record %zu: \"%s\", expected \"%s\"", p->how->what, p->where, i,
                      ra + REC * i, rb + REC * i);
    eq(p, "records", (long long)na, (long long)nb);
    free(ra);
    free(rb);
}

/* ---- entry point ---- */

void engines_agree(struct engine *a, struct engine *b, const struct forest *f, struct rng *r,
                   const struct agree *how)
{
    struct pair p = {.a = a, .b = b, .f = f, .r = r, .how = how};
    struct engine_stats sa, sb;

    engine_get_stats(a, &sa);
    engine_get_stats(b, &sb);
    snprintf(p.where, sizeof(p.where), "stats");
    eq(&p, "posts", (long long)sa.posts, (long long)sb.posts);
    eq(&p, "placeholders", (long long)sa.placeholders, (long long)sb.placeholders);
    eq(&p, "cascades", (long long)sa.cascades, (long long)sb.cascades);
    eq(&p, "actors", (long long)sa.actors, (long long)sb.actors);
    eq(&p, "edges", (long long)sa.edges, (long long)sb.edges);
    eq(&p, "contents", (long long)sa.contents, (long long)sb.contents);
    eq(&p, "newest_ts", sa.newest_ts, sb.newest_ts);
    if (how->exact) {
        for (int i = 0; i < EVENT_OUTCOME_COUNT; i++)
            eq(&p, event_outcome_name(i), (long long)sa.outcomes[i], (long long)sb.outcomes[i]);
        eq(&p, "labels", (long long)sa.labels, (long long)sb.labels);
        eq(&p, "evicted_cascades", (long long)sa.evicted_cascades, (long long)sb.evicted_cascades);
        eq(&p, "evicted_posts", (long long)sa.evicted_posts, (long long)sb.evicted_posts);
        if (sa.retention_ms && sb.retention_ms) /* a copy loaded without it reports no cut */
            eq(&p, "retained_from", sa.retained_from, sb.retained_from);
    }
    uint32_t n = (uint32_t)sb.cascades, nact = (uint32_t)sb.actors;
    every_post(&p);
    actors(&p);
    top_cascades(&p, n);
    top_actors(&p, nact);
    growth(&p, n);
    contents(&p, n);
    labels(&p);
    if (how->exact)
        trees(&p);
    if (how->take)
        copies(&p);
}
