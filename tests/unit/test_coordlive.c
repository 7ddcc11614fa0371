/* engine/coordlive (live coordination, DESIGN §3): thousands of random event streams per
 * similarity, fed one post at a time in any arrival order (late parents, duplicates, ties, window
 * edges, self pairs), checked after every batch against an all-pairs reference written plainly
 * here, for each kind and for kind=all; with a small cap, lateness and forget horizon, every
 * group and pair marked exact must be the reference's. The window estimate against a plain
 * reading of §3. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/hash.h"
#include "engine/coordhook.h"
#include "engine/coordlive.h"
#include "engine/engine_int.h"

#define MAXE 96 /* events per stream */
#define MAXA 12
#define NOKEY UINT32_MAX

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* ---------------------------------------------------------------- the event model */

enum { K_POST, K_SHARE, K_QUOTE, K_REPLY };

struct gev {
    uint32_t post, actor, parent; /* parent 0: none; ids from 1 */
    int64_t ts;
    uint32_t content; /* 0: none */
    int kind;
};

/* The posts fed to one kind: what the reference computes from. */
struct fed {
    uint32_t post[MAXE], actor[MAXE], key[MAXE];
    int64_t ts[MAXE];
    size_t n;
};

struct world {
    struct gev ev[MAXE];
    size_t n;
    /* applied state, by post id (1..MAXE) */
    int seen[MAXE + 1];
    struct gev obs[MAXE + 1];
    uint32_t linkkey[MAXE + 1]; /* NOKEY until known */
    struct fed fed[COORDLIVE_KINDS];
    struct coordlive *cl[COORDLIVE_KINDS];
    int64_t window;
    /* the same events through the engine and its hook, and instances fed the model's posts in
     * the engine's ids: the hook must give the same answers */
    struct engine *eng;
    struct coordlive *mirror[COORDLIVE_KINDS];
};

static uint32_t eng_id(const struct intern *t, char prefix, uint32_t n)
{
    char s[16];
    int len = snprintf(s, sizeof s, "%c%u", prefix, n);
    uint32_t id = intern_find(t, s, (uint32_t)len, hash_bytes(s, (size_t)len));
    assert_true(id != NONE);
    return id;
}

/* Applies the model's event to the engine (duplicates and all), as a producer would send it. */
static void engine_send(struct world *w, const struct gev *g)
{
    char post[16], actor[16], parent[16], content[16];
    struct event ev;
    memset(&ev, 0, sizeof(ev));
    ev.post.str = post;
    ev.post.len = (uint32_t)snprintf(post, sizeof post, "p%u", g->post);
    ev.actor.str = actor;
    ev.actor.len = (uint32_t)snprintf(actor, sizeof actor, "a%u", g->actor);
    if (g->parent) {
        ev.parent.str = parent;
        ev.parent.len = (uint32_t)snprintf(parent, sizeof parent, "p%u", g->parent);
    }
    if (g->content) {
        ev.content = content;
        ev.content_len = (uint16_t)snprintf(content, sizeof content, "k%u", g->content);
    }
    ev.ts = g->ts;
    static const uint8_t kinds[] = {EVENT_KIND_POST, EVENT_KIND_SHARE, EVENT_KIND_QUOTE,
                                    EVENT_KIND_REPLY};
    ev.kind = kinds[g->kind];
    uint8_t out;
    engine_apply(w->eng, &ev, 1, &out);
    assert_true(out == EVENT_OK || out == EVENT_DUP);
}

/* The post's content key for kind link (§3: its own, else its cascade root's), NOKEY while its
 * root is not known or carries none. */
static uint32_t link_key(const struct world *w, uint32_t p)
{
    const struct gev *e = &w->obs[p];
    if (e->content)
        return e->content;
    for (int guard = 0; guard <= MAXE; guard++) {
        if (!e->parent)
            return e->content ? e->content : NOKEY;
        if (!w->seen[e->parent])
            return NOKEY;
        e = &w->obs[e->parent];
    }
    fail_msg("cycle");
    return NOKEY;
}

static void feed(struct world *w, int kind, uint32_t key, const struct gev *e)
{
    struct fed *f = &w->fed[kind];
    f->post[f->n] = e->post;
    f->actor[f->n] = e->actor;
    f->key[f->n] = key;
    f->ts[f->n] = e->ts;
    f->n++;
    assert_int_equal(coordlive_add(w->cl[kind], key, e->actor, e->post, e->ts), 0);
    if (w->eng) {
        const struct engine *g = w->eng;
        uint32_t k = kind == COORDLIVE_LINK ? eng_id(&g->contents, 'k', key)
                                            : eng_id(&g->post_ids, 'p', key);
        assert_int_equal(coordlive_add(w->mirror[kind], k, eng_id(&g->actor_ids, 'a', e->actor),
                                       eng_id(&g->post_ids, 'p', e->post), e->ts),
                         0);
    }
}

/* Applies one event as the engine would: the first event of a post id wins. */
static void apply(struct world *w, const struct gev *e)
{
    if (w->eng)
        engine_send(w, e);
    if (w->seen[e->post])
        return; /* a duplicate */
    w->seen[e->post] = 1;
    w->obs[e->post] = *e;
    if (e->parent && (e->kind == K_SHARE || e->kind == K_QUOTE))
        feed(w, COORDLIVE_RESHARE, e->parent, e);
    if (e->parent && e->kind == K_REPLY)
        feed(w, COORDLIVE_REPLY, e->parent, e);
    /* link keys: this post's, and those of posts whose root it completes (late parents) */
    for (uint32_t p = 1; p <= MAXE; p++) {
        if (!w->seen[p])
            continue;
        uint32_t k = link_key(w, p);
        if (w->linkkey[p] == NOKEY && k != NOKEY) {
            w->linkkey[p] = k;
            feed(w, COORDLIVE_LINK, k, &w->obs[p]);
        } else {
            assert_true(w->linkkey[p] == k); /* a key, once known, never changes */
        }
    }
}

/* ---------------------------------------------------------------- the reference */

struct rev {
    uint32_t key, pa, pb;
    int64_t dt, ts;
};

struct rpair {
    uint32_t n;
    struct rev ev[MAXE]; /* by key */
};

struct ref {
    struct rpair pair[MAXA][MAXA]; /* [a][b], a < b */
    uint32_t k[MAXA];
    int qual[MAXA][MAXA];
};

static int64_t iabs(int64_t x)
{
    return x < 0 ? -x : x;
}

/* The closer of two meetings: |dt|, the earlier ts, then the post ids. */
static int closer(const struct rev *x, const struct rev *y)
{
    if (iabs(x->dt) != iabs(y->dt))
        return iabs(x->dt) < iabs(y->dt);
    if (x->ts != y->ts)
        return x->ts < y->ts;
    if (x->pa != y->pa)
        return x->pa < y->pa;
    return x->pb < y->pb;
}

static double ref_sim(int sim, uint32_t w, uint32_t ka, uint32_t kb)
{
    double d;
    if (sim == COORDLIVE_SIM_MIN)
        d = ka < kb ? ka : kb;
    else if (sim == COORDLIVE_SIM_JACCARD)
        d = (double)ka + (double)kb - (double)w;
    else
        d = ka > kb ? ka : kb;
    return (double)w / d;
}

static void ref_compute(const struct fed *f, int64_t window, const struct coordlive_query *q,
                        struct ref *r)
{
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < f->n; i++) { /* k: distinct keys per actor */
        int first = 1;
        for (size_t j = 0; j < i; j++)
            if (f->actor[j] == f->actor[i] && f->key[j] == f->key[i])
                first = 0;
        r->k[f->actor[i]] += first;
    }
    for (size_t i = 0; i < f->n; i++) {
        for (size_t j = 0; j < f->n; j++) {
            if (f->key[i] != f->key[j] || f->actor[i] >= f->actor[j])
                continue;
            if (iabs(f->ts[i] - f->ts[j]) > window)
                continue;
            struct rpair *p = &r->pair[f->actor[i]][f->actor[j]];
            struct rev m = {f->key[i], f->post[i], f->post[j], f->ts[j] - f->ts[i],
                            f->ts[i] < f->ts[j] ? f->ts[i] : f->ts[j]};
            uint32_t at = 0;
            while (at < p->n && p->ev[at].key < m.key)
                at++;
            if (at < p->n && p->ev[at].key == m.key) {
                if (closer(&m, &p->ev[at]))
                    p->ev[at] = m;
                continue;
            }
            memmove(&p->ev[at + 1], &p->ev[at], (p->n - at) * sizeof(m));
            p->ev[at] = m;
            p->n++;
        }
    }
    uint32_t rep = q->min_repeats ? q->min_repeats : 3;
    for (uint32_t a = 0; a < MAXA; a++)
        for (uint32_t b = a + 1; b < MAXA; b++) {
            uint32_t w = r->pair[a][b].n;
            r->qual[a][b] = w && w >= rep &&
                            ref_sim(q->similarity, w, r->k[a], r->k[b]) >= q->min_ratio;
        }
}

/* A reference group, in the result's terms. */
struct rgroup {
    uint32_t members[MAXA], nmembers, npairs, nkeys;
    struct coordlive_gpair pairs[3 * MAXA * MAXA];
    struct coordlive_key keys[3 * MAXE];
    uint64_t weight;
    double median;
    int64_t first_ts, last_ts;
    uint8_t kinds;
};

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static int cmp_rgroup(const void *x, const void *y)
{
    const struct rgroup *a = x, *b = y;
    if (a->nmembers != b->nmembers)
        return a->nmembers > b->nmembers ? -1 : 1;
    if (a->weight != b->weight)
        return a->weight > b->weight ? -1 : 1;
    return (a->members[0] > b->members[0]) - (a->members[0] < b->members[0]);
}

/* Components of the union of the kinds' qualifying pairs (refs[kinds[i]]). */
static size_t ref_groups(struct ref *const *refs, const int *kinds, size_t nk, int sim,
                         struct rgroup *out)
{
    int comp[MAXA];
    for (int a = 0; a < MAXA; a++)
        comp[a] = -1;
    int adj[MAXA][MAXA] = {{0}};
    for (size_t i = 0; i < nk; i++)
        for (int a = 0; a < MAXA; a++)
            for (int b = a + 1; b < MAXA; b++)
                if (refs[i]->qual[a][b])
                    adj[a][b] = adj[b][a] = 1;
    size_t ng = 0;
    for (int s = 0; s < MAXA; s++) {
        int any = 0;
        for (int b = 0; b < MAXA; b++)
            any |= adj[s][b];
        if (!any || comp[s] >= 0)
            continue;
        int stack[MAXA], sp = 0; /* depth-first from s */
        comp[s] = (int)ng;
        stack[sp++] = s;
        while (sp) {
            int x = stack[--sp];
            for (int y = 0; y < MAXA; y++)
                if (adj[x][y] && comp[y] < 0) {
                    comp[y] = (int)ng;
                    stack[sp++] = y;
                }
        }
        ng++;
    }
    for (size_t g = 0; g < ng; g++) {
        struct rgroup *G = &out[g];
        memset(G, 0, sizeof(*G));
        int64_t gaps[3 * MAXA * MAXA * 8];
        size_t ngaps = 0;
        G->first_ts = INT64_MAX;
        G->last_ts = INT64_MIN;
        for (int a = 0; a < MAXA; a++)
            if (comp[a] == (int)g)
                G->members[G->nmembers++] = (uint32_t)a;
        for (size_t i = 0; i < nk; i++) /* pairs by (kind, a, b) */
            for (int a = 0; a < MAXA; a++)
                for (int b = a + 1; b < MAXA; b++) {
                    if (!refs[i]->qual[a][b] || comp[a] != (int)g)
                        continue;
                    const struct rpair *p = &refs[i]->pair[a][b];
                    struct coordlive_gpair *gp = &G->pairs[G->npairs++];
                    memset(gp, 0, sizeof(*gp));
                    gp->a = (uint32_t)a;
                    gp->b = (uint32_t)b;
                    gp->kind = (uint8_t)kinds[i];
                    gp->weight = p->n;
                    gp->similarity = ref_sim(sim, p->n, refs[i]->k[a], refs[i]->k[b]);
                    G->weight += p->n;
                    G->kinds |= (uint8_t)(1u << kinds[i]);
                    for (uint32_t j = 0; j < p->n; j++) {
                        gp->leads_a += p->ev[j].dt > 0;
                        gp->leads_b += p->ev[j].dt < 0;
                        gaps[ngaps++] = iabs(p->ev[j].dt);
                        if (p->ev[j].ts < G->first_ts)
                            G->first_ts = p->ev[j].ts;
                        if (p->ev[j].ts + iabs(p->ev[j].dt) > G->last_ts)
                            G->last_ts = p->ev[j].ts + iabs(p->ev[j].dt);
                        int dup = 0;
                        for (uint32_t x = 0; x < G->nkeys; x++)
                            dup |= G->keys[x].kind == kinds[i] && G->keys[x].key == p->ev[j].key;
                        if (!dup)
                            G->keys[G->nkeys++] = (struct coordlive_key){p->ev[j].key,
                                                                         (uint8_t)kinds[i]};
                    }
                }
        for (uint32_t x = 1; x < G->nkeys; x++) /* insertion sort by (kind, key) */
            for (uint32_t y = x; y > 0; y--) {
                struct coordlive_key *u = &G->keys[y - 1], *v = &G->keys[y];
                if (u->kind < v->kind || (u->kind == v->kind && u->key < v->key))
                    break;
                struct coordlive_key t = *u;
                *u = *v;
                *v = t;
            }
        qsort(gaps, ngaps, sizeof(*gaps), cmp_i64);
        double h = (double)(ngaps - 1) * 0.5;
        size_t lo = (size_t)floor(h);
        G->median = lo + 1 < ngaps ? gaps[lo] + (h - lo) * (double)(gaps[lo + 1] - gaps[lo])
                                   : (double)gaps[ngaps - 1];
    }
    qsort(out, ng, sizeof(*out), cmp_rgroup);
    return ng;
}

static int same_group(const struct coordlive_group *g, const struct rgroup *r)
{
    if (g->nmembers != r->nmembers || g->npairs != r->npairs || g->nkeys != r->nkeys ||
        g->weight != r->weight || g->kinds != r->kinds || g->first_ts != r->first_ts ||
        g->last_ts != r->last_ts || fabs(g->median_gap_ms - r->median) > 1e-9)
        return 0;
    for (uint32_t i = 0; i < r->nmembers; i++)
        if (g->members[i] != r->members[i])
            return 0;
    for (uint32_t i = 0; i < r->nkeys; i++)
        if (g->keys[i].key != r->keys[i].key || g->keys[i].kind != r->keys[i].kind)
            return 0;
    for (uint32_t i = 0; i < r->npairs; i++) {
        const struct coordlive_gpair *x = &g->pairs[i], *y = &r->pairs[i];
        if (x->a != y->a || x->b != y->b || x->kind != y->kind || x->weight != y->weight ||
            x->leads_a != y->leads_a || x->leads_b != y->leads_b || x->similarity != y->similarity)
            return 0;
    }
    return 1;
}

static struct ref refs_store[COORDLIVE_KINDS];
static struct rgroup rg_store[MAXA];

/* Every pair's evidence as coordlive_pair gives it, where it says exact. */
static void check_pairs(struct world *w, int kind, const struct ref *r, int strict)
{
    for (uint32_t a = 0; a < MAXA; a++)
        for (uint32_t b = a + 1; b < MAXA; b++) {
            struct coordlive_pairinfo pi;
            assert_int_equal(coordlive_pair(w->cl[kind], b, a, &pi), 0);
            assert_int_equal(pi.a, a);
            assert_int_equal(pi.b, b);
            assert_int_equal(pi.k_a, r->k[a]);
            assert_int_equal(pi.k_b, r->k[b]);
            if (strict)
                assert_true(pi.exact);
            if (pi.exact) {
                const struct rpair *p = &r->pair[a][b];
                assert_int_equal(pi.nev, p->n);
                for (uint32_t j = 0; j < p->n; j++) {
                    assert_int_equal(pi.ev[j].key, p->ev[j].key);
                    assert_int_equal(pi.ev[j].post_a, p->ev[j].pa);
                    assert_int_equal(pi.ev[j].post_b, p->ev[j].pb);
                    assert_int_equal(pi.ev[j].dt, p->ev[j].dt);
                    assert_int_equal(pi.ev[j].ts, p->ev[j].ts);
                }
            }
            free(pi.ev);
        }
}

/* The live groups of kinds[0..nk) against the reference; strict: every one must be exact. */
static void check_groups(struct world *w, const int *kinds, size_t nk,
                         const struct coordlive_query *q, int strict)
{
    struct coordlive *cls[COORDLIVE_KINDS];
    struct ref *refs[COORDLIVE_KINDS];
    for (size_t i = 0; i < nk; i++) {
        cls[i] = w->cl[kinds[i]];
        refs[i] = &refs_store[kinds[i]];
    }
    size_t ng = ref_groups(refs, kinds, nk, q->similarity, rg_store);
    struct coordlive_result res;
    assert_int_equal(coordlive_groups(cls, nk, q, &res), 0);
    if (strict) {
        assert_true(res.exact);
        assert_int_equal(res.ngroups, ng);
    }
    if (res.exact)
        assert_int_equal(res.ngroups, ng);
    for (uint32_t i = 0; i < res.ngroups; i++) {
        const struct coordlive_group *g = &res.groups[i];
        if (strict || res.exact) {
            assert_true(g->exact);
            assert_true(same_group(g, &rg_store[i]));
        } else if (g->exact) { /* a group with no flagged member is the reference's */
            int found = 0;
            for (size_t j = 0; j < ng; j++)
                found |= same_group(g, &rg_store[j]);
            assert_true(found);
        }
    }
    coordlive_result_free(&res);
}

static void same_results(const struct coordlive_result *x, const struct coordlive_result *y)
{
    assert_int_equal(x->ngroups, y->ngroups);
    assert_int_equal(x->exact, y->exact);
    for (uint32_t i = 0; i < x->ngroups; i++) {
        const struct coordlive_group *g = &x->groups[i], *h = &y->groups[i];
        assert_int_equal(g->nmembers, h->nmembers);
        assert_int_equal(g->npairs, h->npairs);
        assert_int_equal(g->nkeys, h->nkeys);
        assert_int_equal(g->weight, h->weight);
        assert_int_equal(g->first_ts, h->first_ts);
        assert_int_equal(g->last_ts, h->last_ts);
        assert_int_equal(g->kinds, h->kinds);
        assert_int_equal(g->exact, h->exact);
        assert_true(g->median_gap_ms == h->median_gap_ms);
        assert_memory_equal(g->members, h->members, g->nmembers * sizeof(uint32_t));
        for (uint32_t j = 0; j < g->nkeys; j++)
            assert_true(g->keys[j].key == h->keys[j].key && g->keys[j].kind == h->keys[j].kind);
        for (uint32_t j = 0; j < g->npairs; j++) {
            const struct coordlive_gpair *a = &g->pairs[j], *b = &h->pairs[j];
            assert_true(a->a == b->a && a->b == b->b && a->kind == b->kind &&
                        a->weight == b->weight && a->leads_a == b->leads_a &&
                        a->leads_b == b->leads_b && a->similarity == b->similarity);
        }
    }
}

static uint64_t walks_seen;

/* The engine's hook against the instances fed the model's posts in the engine's ids. */
static void check_engine(struct world *w, const struct coordlive_query *q)
{
    if (coordhook_walking(w->eng)) { /* not every post is in: nothing may say exact */
        struct coordlive *hook = coordhook_instance(w->eng, COORDLIVE_LINK);
        struct coordlive_result x;
        assert_int_equal(coordlive_groups(&hook, 1, q, &x), 0);
        assert_false(x.exact);
        for (uint32_t i = 0; i < x.ngroups; i++)
            assert_false(x.groups[i].exact);
        coordlive_result_free(&x);
        walks_seen++;
    }
    coordhook_drain(w->eng);
    struct coordlive *hook[COORDLIVE_KINDS];
    for (int k = 0; k < COORDLIVE_KINDS; k++) {
        hook[k] = coordhook_instance(w->eng, k);
        struct coordlive_stats a, b;
        coordlive_stats(hook[k], &a);
        coordlive_stats(w->mirror[k], &b);
        assert_int_equal(a.posts, b.posts);
        assert_int_equal(a.pairs, b.pairs);
        assert_int_equal(a.coshares, b.coshares);
        struct coordlive_result x, y;
        assert_int_equal(coordlive_groups(&hook[k], 1, q, &x), 0);
        assert_int_equal(coordlive_groups(&w->mirror[k], 1, q, &y), 0);
        same_results(&x, &y);
        coordlive_result_free(&x);
        coordlive_result_free(&y);
        uint32_t nact = w->eng->actor_ids.count;
        for (uint32_t a1 = 0; a1 < nact; a1++)
            for (uint32_t b1 = a1 + 1; b1 < nact; b1++) {
                struct coordlive_pairinfo pa, pb;
                assert_int_equal(coordlive_pair(hook[k], a1, b1, &pa), 0);
                assert_int_equal(coordlive_pair(w->mirror[k], a1, b1, &pb), 0);
                assert_int_equal(pa.nev, pb.nev);
                assert_int_equal(pa.k_a, pb.k_a);
                assert_int_equal(pa.k_b, pb.k_b);
                assert_int_equal(pa.exact, pb.exact);
                if (pa.nev)
                    assert_memory_equal(pa.ev, pb.ev, pa.nev * sizeof(*pa.ev));
                free(pa.ev);
                free(pb.ev);
            }
    }
    struct coordlive_result x, y;
    assert_int_equal(coordlive_groups(hook, COORDLIVE_KINDS, q, &x), 0);
    assert_int_equal(coordlive_groups(w->mirror, COORDLIVE_KINDS, q, &y), 0);
    same_results(&x, &y);
    coordlive_result_free(&x);
    coordlive_result_free(&y);
}

static void check_all(struct world *w, const struct coordlive_query *q, int strict)
{
    for (int k = 0; k < COORDLIVE_KINDS; k++)
        ref_compute(&w->fed[k], w->window, q, &refs_store[k]);
    for (int k = 0; k < COORDLIVE_KINDS; k++) {
        check_groups(w, &k, 1, q, strict);
        check_pairs(w, k, &refs_store[k], strict);
    }
    static const int all[] = {COORDLIVE_LINK, COORDLIVE_RESHARE, COORDLIVE_REPLY};
    check_groups(w, all, 3, q, strict);
}

/* ---------------------------------------------------------------- random streams */

static void gen_stream(struct world *w, int64_t range, int in_order)
{
    uint32_t nposts = 8 + rnd(MAXE - 20);
    uint32_t nactors = 2 + rnd(MAXA - 2), nkeys = 1 + rnd(6);
    w->n = 0;
    for (uint32_t p = 1; p <= nposts; p++) {
        struct gev *e = &w->ev[w->n++];
        e->post = p;
        e->actor = rnd(nactors);
        e->ts = rnd(4) == 0 && p > 1 ? w->ev[rnd(p - 1)].ts + (int64_t)rnd(3) * w->window
                                     : (int64_t)rnd((uint32_t)range + 1);
        e->parent = p > 1 && rnd(5) < 3 ? 1 + rnd(p - 1) : 0;
        e->kind = e->parent ? 1 + (int)rnd(3) : K_POST;
        e->content = rnd(e->parent ? 3 : 5) < 2 ? 0 : 1 + rnd(nkeys);
    }
    while (w->n < MAXE && rnd(6) == 0) { /* duplicates: a post id again, maybe different */
        struct gev *e = &w->ev[w->n];
        *e = w->ev[rnd((uint32_t)w->n)];
        if (rnd(2))
            e->ts += rnd(3), e->actor = rnd(nactors);
        w->n++;
    }
    for (size_t i = w->n - 1; i > 0; i--) { /* arrival order */
        size_t j = rnd((uint32_t)i + 1);
        struct gev t = w->ev[i];
        w->ev[i] = w->ev[j];
        w->ev[j] = t;
    }
    if (in_order) /* by ts (stable enough: ties keep their shuffled order) */
        for (size_t i = 1; i < w->n; i++)
            for (size_t j = i; j > 0 && w->ev[j - 1].ts > w->ev[j].ts; j--) {
                struct gev t = w->ev[j];
                w->ev[j] = w->ev[j - 1];
                w->ev[j - 1] = t;
            }
}

static struct world world_store;

/* Retention at horizon h, spread over calls: each pair keeps exactly the co-shares whose closest
 * pair starts at h or later, and the pairs left with none are gone. */
static void check_retention(struct world *w, const struct coordlive_query *q, int64_t h)
{
    for (int k = 0; k < COORDLIVE_KINDS; k++) {
        struct ref *r = &refs_store[k];
        ref_compute(&w->fed[k], w->window, q, r);
        while (coordlive_evict_before(w->cl[k], h, 1 + rnd(3)))
            ;
        uint64_t pairs = 0, coshares = 0;
        for (uint32_t a = 0; a < MAXA; a++)
            for (uint32_t b = a + 1; b < MAXA; b++) {
                struct rpair *p = &r->pair[a][b];
                uint32_t n = 0;
                for (uint32_t j = 0; j < p->n; j++)
                    if (p->ev[j].ts >= h)
                        p->ev[n++] = p->ev[j];
                p->n = n;
                pairs += n > 0;
                coshares += n;
            }
        check_pairs(w, k, r, 1);
        struct coordlive_stats st;
        coordlive_stats(w->cl[k], &st);
        assert_int_equal(st.pairs, pairs);
        assert_int_equal(st.coshares, coshares);
    }
}

/* mode 0: no cap, unbounded lateness, nothing forgotten, any order: always exact. 1: small cap,
 * lateness and forget horizon, any order: the groups marked exact are exact. 2: the same in ts
 * order. */
static void run_streams(int sim, int mode, int trials, uint64_t seed)
{
    rng_state = seed;
    uint64_t forgotten = 0;
    for (int t = 0; t < trials; t++) {
        struct world *w = &world_store;
        memset(w, 0, sizeof(*w));
        static const int64_t windows[] = {1, 2, 5, 20, 100};
        w->window = windows[rnd(5)];
        int64_t range = w->window * (1 + rnd(6)) + rnd(30);
        struct coordlive_params p = {w->window, mode ? (int64_t)rnd(3) * w->window : INT32_MAX,
                                     mode ? 1 + rnd(rnd(2) ? 4 : MAXE) : MAXE, 1 + rnd(4),
                                     mode ? 1 + (int64_t)rnd((uint32_t)(3 * w->window)) : -1};
        for (int k = 0; k < COORDLIVE_KINDS; k++)
            assert_int_equal(coordlive_new(&w->cl[k], &p, (uint8_t)k), 0);
        if (mode == 0) {
            assert_int_equal(engine_new(&w->eng), 0);
            assert_int_equal(coordhook_enable(w->eng, &p), 0);
            assert_int_equal(coordhook_enable(w->eng, &p), -EEXIST);
            if (rnd(2)) /* walks spread over several posts */
                coordhook_budget(w->eng, 1 + rnd(3), 1 + rnd(8));
            for (int k = 0; k < COORDLIVE_KINDS; k++)
                assert_int_equal(coordlive_new(&w->mirror[k], &p, (uint8_t)k), 0);
        }
        for (uint32_t i = 0; i <= MAXE; i++)
            w->linkkey[i] = NOKEY;
        gen_stream(w, range, mode == 2);
        static const double ratios[] = {0, 0.2, 0.3, 0.5, 1.0};
        struct coordlive_query q = {1 + rnd(3), ratios[rnd(5)], sim};
        for (size_t i = 0; i < w->n;) {
            size_t batch = 1 + rnd(6);
            for (; batch && i < w->n; batch--, i++)
                apply(w, &w->ev[i]);
            check_all(w, &q, mode == 0);
            if (w->eng)
                check_engine(w, &q);
        }
        if (mode == 0)
            check_retention(w, &q, (int64_t)rnd((uint32_t)range + 2));
        for (int k = 0; k < COORDLIVE_KINDS; k++) {
            struct coordlive_stats st;
            coordlive_stats(w->cl[k], &st);
            forgotten += st.forgotten;
            coordlive_free(w->cl[k]);
            coordlive_free(w->mirror[k]);
        }
        if (w->eng) {
            coordhook_disable(w->eng);
            engine_free(w->eng);
        }
    }
    if (mode) /* the streams did exercise forgetting */
        assert_true(forgotten > 0);
    else /* and walks left under way between batches */
        assert_true(walks_seen > 0);
}

static void random_max(void **state)
{
    (void)state;
    run_streams(COORDLIVE_SIM_MAX, 0, 1500, 0x9e3779b97f4a7c15ull);
}

static void random_min(void **state)
{
    (void)state;
    run_streams(COORDLIVE_SIM_MIN, 0, 1500, 0x1234567887654321ull);
}

static void random_jaccard(void **state)
{
    (void)state;
    run_streams(COORDLIVE_SIM_JACCARD, 0, 1500, 0xdeadbeefcafef00dull);
}

static void random_capped(void **state)
{
    (void)state;
    for (int sim = 0; sim < 3; sim++) {
        run_streams(sim, 1, 600, 0xabcdef0123456789ull + (uint64_t)sim);
        run_streams(sim, 2, 600, 0x5555aaaa5555aaaaull + (uint64_t)sim);
    }
}

/* ---------------------------------------------------------------- hand cases */

static void window_edge_and_leads(void **state)
{
    (void)state;
    struct coordlive *cl;
    struct coordlive_params p = {10000, 60000, 0, 0};
    assert_int_equal(coordlive_new(&cl, &p, COORDLIVE_LINK), 0);
    /* actor 1 and 2 on keys 1..3, 2 exactly 10000 ms after 1 on key 1, before 1 on key 2, tie on
     * key 3; key 4 10001 ms apart: not co-shared; self pairs on key 5 */
    uint32_t post = 1;
    assert_int_equal(coordlive_add(cl, 1, 1, post++, 0), 0);
    assert_int_equal(coordlive_add(cl, 1, 2, post++, 10000), 0);
    assert_int_equal(coordlive_add(cl, 2, 2, post++, 20000), 0);
    assert_int_equal(coordlive_add(cl, 2, 1, post++, 20005), 0);
    assert_int_equal(coordlive_add(cl, 3, 1, post++, 30000), 0);
    assert_int_equal(coordlive_add(cl, 3, 2, post++, 30000), 0);
    assert_int_equal(coordlive_add(cl, 4, 1, post++, 40000), 0);
    assert_int_equal(coordlive_add(cl, 4, 2, post++, 50001), 0);
    assert_int_equal(coordlive_add(cl, 5, 1, post++, 60000), 0);
    assert_int_equal(coordlive_add(cl, 5, 1, post++, 60001), 0);
    struct coordlive_pairinfo pi;
    assert_int_equal(coordlive_pair(cl, 2, 1, &pi), 0);
    assert_int_equal(pi.weight, 3);
    assert_int_equal(pi.k_a, 5);
    assert_int_equal(pi.k_b, 4);
    assert_int_equal(pi.leads_a, 1);
    assert_int_equal(pi.leads_b, 1);
    assert_int_equal(pi.ev[0].dt, 10000);
    assert_int_equal(pi.ev[1].dt, -5);
    assert_int_equal(pi.ev[2].dt, 0);
    free(pi.ev);
    struct coordlive *cls[] = {cl};
    struct coordlive_result res;
    struct coordlive_query q = {3, 0.3, COORDLIVE_SIM_MAX};
    assert_int_equal(coordlive_groups(cls, 1, &q, &res), 0);
    assert_int_equal(res.ngroups, 1); /* 3 / max(5, 4) = 0.6 */
    assert_true(res.exact && res.groups[0].exact);
    assert_int_equal(res.groups[0].first_ts, 0);
    assert_int_equal(res.groups[0].last_ts, 30000);
    assert_true(res.groups[0].median_gap_ms == 5);
    coordlive_result_free(&res);
    q.min_ratio = 0.61;
    assert_int_equal(coordlive_groups(cls, 1, &q, &res), 0);
    assert_int_equal(res.ngroups, 0);
    coordlive_result_free(&res);
    /* retention: the co-shares whose closest pair starts before 20000 go */
    while (coordlive_evict_before(cl, 20000, 1))
        ;
    assert_int_equal(coordlive_pair(cl, 1, 2, &pi), 0);
    assert_int_equal(pi.weight, 2);
    assert_int_equal(pi.ev[0].key, 2);
    free(pi.ev);
    while (coordlive_evict_before(cl, 100000, 7))
        ;
    assert_int_equal(coordlive_pair(cl, 1, 2, &pi), 0);
    assert_int_equal(pi.weight, 0);
    assert_null(pi.ev);
    struct coordlive_stats st;
    coordlive_stats(cl, &st);
    assert_int_equal(st.pairs, 0);
    assert_int_equal(st.coshares, 0);
    coordlive_free(cl);
}

/* A viral key: the cap bounds the work and flags; the late post is counted. */
static void cap_and_lateness(void **state)
{
    (void)state;
    struct coordlive *cl;
    struct coordlive_params p = {1000, 0, 8, 0};
    assert_int_equal(coordlive_new(&cl, &p, COORDLIVE_LINK), 0);
    assert_int_equal(coordlive_add(cl, 8, 1, 1, 0), 0);
    for (uint32_t i = 0; i < 100000; i++)
        assert_int_equal(coordlive_add(cl, 7, i % 5000, i + 2, i / 10), 0);
    struct coordlive_stats st;
    coordlive_stats(cl, &st);
    assert_true(st.meetings <= 8ull * 100000);
    assert_true(st.capped_drops > 0);
    assert_true(st.flagged_actors > 0);
    assert_int_equal(st.late_misses, 0);
    /* key 8's post has left the lists: a post 9499 ms late may have missed it */
    assert_int_equal(coordlive_add(cl, 8, 2, 200000, 500), 0);
    coordlive_stats(cl, &st);
    assert_int_equal(st.late_misses, 1);
    assert_true(coordlive_bytes(cl) > 0);
    coordlive_free(cl);
    assert_int_equal(coordlive_new(&cl, &(struct coordlive_params){-1, 0, 0, 0}, 0), -EINVAL);
    assert_null(cl);
}

/* ---------------------------------------------------------------- the window estimate */

static double ref_q7(double *x, size_t n, double q)
{
    for (size_t i = 1; i < n; i++) /* insertion sort */
        for (size_t j = i; j > 0 && x[j - 1] > x[j]; j--) {
            double t = x[j];
            x[j] = x[j - 1];
            x[j - 1] = t;
        }
    double h = (double)(n - 1) * q;
    size_t lo = (size_t)floor(h);
    if (lo + 1 >= n)
        return x[n - 1];
    return x[lo] + (h - (double)lo) * (x[lo + 1] - x[lo]);
}

/* §3 read plainly: returns -1 when no key has 2 posts. */
static double ref_estimate(const struct coordlive_kts *kts, size_t n, double q, double p,
                           uint32_t *used)
{
    static double d2[4096], tp[4096], sel[4096];
    static int64_t ts[4096];
    uint32_t keys[4096];
    size_t nkeys = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t j = 0; j < nkeys; j++)
            seen |= keys[j] == kts[i].key;
        if (!seen)
            keys[nkeys++] = kts[i].key;
    }
    for (size_t k = 0; k < nkeys; k++) {
        size_t c = 0;
        for (size_t i = 0; i < n; i++)
            if (kts[i].key == keys[k])
                ts[c++] = kts[i].ts;
        if (c < 2)
            continue;
        qsort(ts, c, sizeof(*ts), cmp_i64);
        d2[m] = (double)(ts[1] - ts[0]);
        size_t r = 1;
        while (!((double)r / (double)c > p))
            r++;
        tp[m] = (double)(ts[r - 1] - ts[0]);
        m++;
    }
    if (!m)
        return -1;
    static double tmp[4096];
    memcpy(tmp, d2, m * sizeof(double));
    double Q = ref_q7(tmp, m, q);
    size_t u = 0;
    for (size_t i = 0; i < m; i++)
        if (d2[i] <= Q)
            sel[u++] = tp[i];
    *used = (uint32_t)u;
    return ref_q7(sel, u, p);
}

static void window_estimate(void **state)
{
    (void)state;
    /* by hand: keys a {0, 10, 20, 100}, b {5, 5}, c {0, 1000}, d {7}: d2 = 10, 0, 1000;
     * Q (q 0.5) = 10: keys a, b; t_p (p 0.5): a rank 3 -> 20, b rank 2 -> 0; estimate 10 */
    struct coordlive_kts k[] = {{1, 100}, {1, 0}, {1, 20}, {1, 10}, {2, 5},
                                {2, 5},   {3, 0}, {3, 1000}, {4, 7}};
    double est;
    uint32_t used;
    assert_int_equal(coordlive_window_estimate(k, 9, 0.5, 0.5, &est, &used), 0);
    assert_true(est == 10);
    assert_int_equal(used, 2);
    assert_int_equal(coordlive_window_estimate(k + 8, 1, 0.1, 0.5, &est, &used), -ENODATA);
    assert_int_equal(coordlive_window_estimate(k, 9, 1.5, 0.5, &est, &used), -EINVAL);
    static struct coordlive_kts r[4096], copy[4096];
    rng_state = 0x0123456789abcdefull;
    static const double qs[] = {0, 0.1, 0.25, 0.5, 0.9, 1}, ps[] = {0, 0.1, 0.5, 0.75, 0.99};
    for (int t = 0; t < 3000; t++) {
        size_t n = 1 + rnd(t % 10 == 0 ? 4000 : 200);
        uint32_t nk = 1 + rnd(t % 10 == 0 ? 500 : 40);
        for (size_t i = 0; i < n; i++)
            r[i] = (struct coordlive_kts){rnd(nk), (int64_t)rnd(rnd(2) ? 50 : 100000)};
        double q = qs[rnd(6)], p = ps[rnd(5)];
        uint32_t ru = 0;
        double want = ref_estimate(r, n, q, p, &ru);
        memcpy(copy, r, n * sizeof(*r));
        int rc = coordlive_window_estimate(copy, n, q, p, &est, &used);
        if (want < 0) {
            assert_int_equal(rc, -ENODATA);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(used, ru);
        assert_true(fabs(est - want) <= 1e-6 * (1 + fabs(want)));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(window_edge_and_leads), cmocka_unit_test(cap_and_lateness),
        cmocka_unit_test(window_estimate),       cmocka_unit_test(random_max),
        cmocka_unit_test(random_min),            cmocka_unit_test(random_jaccard),
        cmocka_unit_test(random_capped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
