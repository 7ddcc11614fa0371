/* Coordinated link sharing (coord.h). Posts sorted by (content, ts) make every key a run of
 * posts in time order, so the posts that meet one lie next to it. Pairs are counted one actor at
 * a time (its posts' neighbours, in dense per-actor arrays), so no table of all the pairs that
 * ever met is built: only the qualifying ones are kept. An exact prefilter drops the actors that
 * can be in no qualifying pair before any pair is formed. */
#include "analytics/coord.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/u64map.h"

#define NIL              UINT32_MAX
#define RADIX_BITS       11
#define RADIX_SIZE       (1u << RADIX_BITS)
#define PREFILTER_ROUNDS 8 /* each O(n); the fixpoint is usually reached in 2-3 */

/* A post with a dense actor index, so that per-actor state is a plain array. */
struct wpost {
    uint32_t actor, content;
    int64_t ts;
};

/* A qualifying pair, with its (content, smallest gap) per co-shared key at ev[ev_off...]. */
struct qpair {
    uint32_t a, b, weight, nev;
    size_t ev_off;
};

struct ev {
    uint32_t content;
    int64_t gap;
};

/* What the actor being counted knows of another: valid when epoch is that actor + 1 (no reset
 * between actors), keys met on, the last of them, their qualifying pair. One record, so that a
 * meeting costs one cache miss. */
struct meet {
    uint32_t epoch, cnt, mark, qidx;
};

struct coord_ctx {
    int64_t window;
    uint32_t min_repeats, cap;
    double min_ratio;
    struct coord_result *res;

    struct wpost *w; /* sorted (content, ts); after the prefilter, only posts that can pair */
    size_t n;
    uint32_t nactors;
    uint32_t *ids; /* dense index -> actor id; NULL when actor ids are used as they are */
    struct u64map actor_map;
    uint32_t *nkeys; /* distinct keys posted per actor (all of them: the ratio's denominator) */
    uint8_t *alive;  /* can still be in a qualifying pair */

    uint32_t *start, *pos; /* the positions in w of actor a's posts: pos[start[a]..start[a+1]) */
    uint8_t *capd;         /* per post: its scan was cut by the cap */

    /* the actor being counted: what it knows of the others; those met on min_repeats keys */
    struct meet *meet;
    uint32_t *cand, ncand, epoch;

    struct qpair *qp;
    size_t nqp, qpcap;
    struct ev *ev;
    size_t nev, evcap;
    uint8_t *qual; /* actor is in a qualifying pair */
};

static uint64_t absdiff(int64_t x, int64_t y)
{
    /* unsigned so that the whole int64 range cannot overflow */
    return x >= y ? (uint64_t)x - (uint64_t)y : (uint64_t)y - (uint64_t)x;
}

static int within(const struct coord_ctx *c, int64_t x, int64_t y)
{
    return absdiff(x, y) <= (uint64_t)c->window;
}

/* ---- sorting: LSD radix over (ts - min), then content; passes whose digit is constant are
 * skipped. Several times faster than qsort at ten million posts. */

static uint64_t sort_digit(const struct coord_post *x, int content, unsigned sh, int64_t tmin)
{
    uint64_t v = content ? x->content : (uint64_t)x->ts - (uint64_t)tmin;
    return (v >> sh) & (RADIX_SIZE - 1);
}

/* One stable counting pass from src to dst; 0 when every post has the same digit (no move). */
static int radix_pass(const struct coord_post *src, struct coord_post *dst, size_t n, int content,
                      unsigned sh, int64_t tmin)
{
    size_t cnt[RADIX_SIZE] = {0}, sum = 0;
    for (size_t i = 0; i < n; i++)
        cnt[sort_digit(&src[i], content, sh, tmin)]++;
    for (unsigned d = 0; d < RADIX_SIZE; d++) {
        if (cnt[d] == n)
            return 0;
        size_t c = cnt[d];
        cnt[d] = sum;
        sum += c;
    }
    for (size_t i = 0; i < n; i++)
        dst[cnt[sort_digit(&src[i], content, sh, tmin)]++] = src[i];
    return 1;
}

static int sort_posts(struct coord_post *p, size_t n)
{
    if (n < 2)
        return 0;
    struct coord_post *tmp = malloc(n * sizeof(*tmp)), *src = p, *dst = tmp;
    if (!tmp)
        return -ENOMEM;
    int64_t tmin = p[0].ts, tmax = p[0].ts;
    uint32_t cmax = 0;
    for (size_t i = 0; i < n; i++) {
        tmin = p[i].ts < tmin ? p[i].ts : tmin;
        tmax = p[i].ts > tmax ? p[i].ts : tmax;
        cmax = p[i].content > cmax ? p[i].content : cmax;
    }
    uint64_t trange = (uint64_t)tmax - (uint64_t)tmin;
    for (int content = 0; content < 2; content++) {
        uint64_t range = content ? cmax : trange;
        for (unsigned sh = 0; sh < 64 && (range >> sh); sh += RADIX_BITS) {
            if (radix_pass(src, dst, n, content, sh, tmin)) {
                struct coord_post *t = src;
                src = dst;
                dst = t;
            }
        }
    }
    if (src != p)
        memcpy(p, src, n * sizeof(*p));
    free(tmp);
    return 0;
}

/* ---- dense actor indices: the ids themselves when they are dense enough (the engine's are),
 * else a hash map. */

static int map_actors(struct coord_ctx *c, const struct coord_post *p, size_t n)
{
    uint32_t max = 0;
    for (size_t i = 0; i < n; i++)
        max = p[i].actor > max ? p[i].actor : max;
    if ((uint64_t)max < 2 * (uint64_t)n + 1024) {
        c->nactors = n ? max + 1 : 0;
        return 0;
    }
    c->ids = malloc(n * sizeof(*c->ids));
    if (!c->ids || u64map_init(&c->actor_map, 1))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int created;
        if (u64map_reserve(&c->actor_map, 1))
            return -ENOMEM;
        uint32_t *v = u64map_put(&c->actor_map, p[i].actor, &created);
        if (created) {
            *v = c->nactors;
            c->ids[c->nactors++] = p[i].actor;
        }
    }
    return 0;
}

static uint32_t dense_of(const struct coord_ctx *c, uint32_t actor)
{
    return c->ids ? *u64map_get(&c->actor_map, actor) : actor;
}

static uint32_t id_of(const struct coord_ctx *c, uint32_t dense)
{
    return c->ids ? c->ids[dense] : dense;
}

static size_t run_end(const struct wpost *w, size_t n, size_t i)
{
    size_t j = i + 1;
    while (j < n && w[j].content == w[i].content)
        j++;
    return j;
}

/* Builds the working posts and every actor's count of distinct keys. */
static int load_posts(struct coord_ctx *c, const struct coord_post *p, size_t n)
{
    c->w = malloc((n ? n : 1) * sizeof(*c->w));
    c->nkeys = calloc(c->nactors + 1, sizeof(*c->nkeys));
    c->alive = calloc(c->nactors + 1, sizeof(*c->alive));
    if (!c->w || !c->nkeys || !c->alive)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        c->w[i] = (struct wpost){dense_of(c, p[i].actor), p[i].content, p[i].ts};
    c->n = n;
    /* the posts of an actor's key are adjacent only per key, not per actor: mark by run */
    uint32_t *seen = malloc((c->nactors + 1) * sizeof(*seen));
    if (!seen)
        return -ENOMEM;
    memset(seen, 0xff, (c->nactors + 1) * sizeof(*seen));
    uint32_t run = 0;
    for (size_t i = 0; i < n; run++) {
        size_t e = run_end(c->w, n, i);
        for (; i < e; i++) {
            uint32_t a = c->w[i].actor;
            if (seen[a] != run) {
                seen[a] = run;
                c->nkeys[a]++;
            }
        }
    }
    free(seen);
    for (uint32_t a = 0; a < c->nactors; a++)
        c->alive[a] = c->nkeys[a] >= c->min_repeats;
    return 0;
}

/* ---- the prefilter. weight(a, b) <= the keys on which a meets anybody alive within the window,
 * so an actor with fewer than min_repeats such keys is in no qualifying pair; dropping it can
 * only lower the others' counts, hence the rounds. Exact: it removes nothing that could count. */

/* Sets nb[i] when post i (alive) has a post of another alive actor within the window, looking
 * one way (dir 1: earlier posts; -1: later ones). It keeps the latest actor seen and the latest
 * post by anyone else, which is all "another actor" needs. */
static void sweep_neighbours(const struct coord_ctx *c, size_t lo, size_t hi, int dir, uint8_t *nb)
{
    uint32_t last = NIL;
    int64_t last_ts = 0, other_ts = 0;
    int have_other = 0;
    for (size_t k = 0; k < hi - lo; k++) {
        size_t i = dir > 0 ? lo + k : hi - 1 - k;
        uint32_t x = c->w[i].actor;
        int64_t t = c->w[i].ts;
        if (!c->alive[x])
            continue;
        if (last != NIL && x != last)
            nb[i] |= within(c, t, last_ts);
        else if (last != NIL && have_other)
            nb[i] |= within(c, t, other_ts);
        if (x != last && last != NIL) {
            other_ts = last_ts;
            have_other = 1;
        }
        last = x;
        last_ts = t;
    }
}

/* One round: recounts the keys on which each alive actor meets someone; 1 if an actor died. */
static int prefilter_round(struct coord_ctx *c, uint8_t *nb, uint32_t *met, uint32_t *seen)
{
    memset(nb, 0, c->n);
    memset(met, 0, c->nactors * sizeof(*met));
    memset(seen, 0xff, c->nactors * sizeof(*seen));
    uint32_t run = 0;
    for (size_t i = 0; i < c->n; run++) {
        size_t e = run_end(c->w, c->n, i);
        sweep_neighbours(c, i, e, 1, nb);
        sweep_neighbours(c, i, e, -1, nb);
        for (; i < e; i++) {
            uint32_t a = c->w[i].actor;
            if (nb[i] && seen[a] != run) {
                seen[a] = run;
                met[a]++;
            }
        }
    }
    int died = 0;
    for (uint32_t a = 0; a < c->nactors; a++) {
        if (c->alive[a] && met[a] < c->min_repeats) {
            c->alive[a] = 0;
            died = 1;
        }
    }
    return died;
}

/* Keeps only the posts of alive actors that meet someone (nb from the last round, taken over a
 * superset of the alive actors, so a post without a neighbour there has none now either). */
static int prefilter(struct coord_ctx *c)
{
    if (!c->n)
        return 0;
    uint8_t *nb = malloc(c->n);
    uint32_t *met = malloc((c->nactors + 1) * sizeof(*met));
    uint32_t *seen = malloc((c->nactors + 1) * sizeof(*seen));
    int rc = -ENOMEM;
    if (!nb || !met || !seen)
        goto out;
    for (int r = 0; r < PREFILTER_ROUNDS && prefilter_round(c, nb, met, seen); r++)
        ;
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++)
        if (nb[i] && c->alive[c->w[i].actor])
            c->w[k++] = c->w[i];
    c->n = k;
    rc = 0;
out:
    free(nb);
    free(met);
    free(seen);
    return rc;
}

/* ---- counting, one actor at a time */

/* Actor b met the current actor on key content (posts come key by key, so one mark suffices). */
static void note_meet(struct coord_ctx *c, uint32_t b, uint32_t content)
{
    struct meet *m = &c->meet[b];
    if (m->epoch != c->epoch)
        *m = (struct meet){c->epoch, 0, content, NIL};
    else if (m->mark == content)
        return;
    m->mark = content;
    if (++m->cnt == c->min_repeats) /* most pairs meet once: only these are looked at again */
        c->cand[c->ncand++] = b;
}

/* The smallest gap of qualifying pair (current actor, b) on key content. */
static void note_gap(struct coord_ctx *c, uint32_t b, uint32_t content, int64_t gap)
{
    if (c->meet[b].qidx == NIL)
        return;
    struct qpair *q = &c->qp[c->meet[b].qidx];
    if (q->nev && c->ev[q->ev_off + q->nev - 1].content == content) {
        struct ev *last = &c->ev[q->ev_off + q->nev - 1];
        last->gap = gap < last->gap ? gap : last->gap;
    } else if (q->nev < q->weight) { /* always: the same scan found weight keys */
        c->ev[q->ev_off + q->nev++] = (struct ev){content, gap};
    }
}

/* Visits the posts of post i's key within the window, at most cap on each side, nearest first,
 * and notes those of actors above a (each pair is counted from its smaller actor). 1 when the cap
 * cut a side short. Exact without the cap: every post that meets post i is visited. */
static int scan_post(struct coord_ctx *c, uint32_t a, size_t i, int gaps)
{
    const struct wpost *w = c->w;
    int64_t t = w[i].ts;
    uint32_t content = w[i].content;
    int capped = 0;
    for (int dir = -1; dir <= 1; dir += 2) {
        uint32_t k = 0;
        for (size_t j = i; dir < 0 ? j > 0 : j + 1 < c->n; k++) {
            j = dir < 0 ? j - 1 : j + 1;
            if (w[j].content != content || !within(c, t, w[j].ts))
                break;
            if (k == c->cap) {
                capped = 1;
                break;
            }
            uint32_t b = w[j].actor;
            if (b > a && gaps)
                note_gap(c, b, content, (int64_t)absdiff(t, w[j].ts));
            else if (b > a)
                note_meet(c, b, content);
        }
        c->res->pairs_examined += k;
    }
    return capped;
}

static int push_qpair(struct coord_ctx *c, uint32_t a, uint32_t b, uint32_t weight)
{
    if (c->nqp == NIL) /* meet.qidx holds the index */
        return -ENOMEM;
    if (c->nqp == c->qpcap) {
        size_t cap = c->qpcap ? 2 * c->qpcap : 1024;
        struct qpair *np = realloc(c->qp, cap * sizeof(*np));
        if (!np)
            return -ENOMEM;
        c->qp = np;
        c->qpcap = cap;
    }
    c->meet[b].qidx = (uint32_t)c->nqp;
    c->qp[c->nqp++] = (struct qpair){a, b, weight, 0, c->nev};
    c->nev += weight;
    c->qual[a] = c->qual[b] = 1;
    return 0;
}

static int qualifies(const struct coord_ctx *c, uint32_t w, uint32_t a, uint32_t b)
{
    uint32_t m = c->nkeys[a] < c->nkeys[b] ? c->nkeys[a] : c->nkeys[b];
    return w >= c->min_repeats && (double)w / (double)m >= c->min_ratio;
}

/* Keeps the qualifying pairs among those a met; 1 if there is one, 0, or -ENOMEM. */
static int keep_qualifying(struct coord_ctx *c, uint32_t a)
{
    size_t first = c->nqp;
    for (uint32_t k = 0; k < c->ncand; k++) {
        uint32_t b = c->cand[k];
        if (qualifies(c, c->meet[b].cnt, a, b) && push_qpair(c, a, b, c->meet[b].cnt))
            return -ENOMEM;
    }
    if (c->nev > c->evcap) {
        size_t cap = c->nev > 2 * c->evcap ? c->nev : 2 * c->evcap;
        struct ev *ne = realloc(c->ev, cap * sizeof(*ne));
        if (!ne)
            return -ENOMEM;
        c->ev = ne;
        c->evcap = cap;
    }
    return c->nqp > first;
}

/* The pairs (a, b > a): count the keys each b met a on, keep those that qualify, and for them
 * scan again for the smallest gaps (the same scans, so the same keys). */
static int count_actor(struct coord_ctx *c, uint32_t a)
{
    c->ncand = 0;
    c->epoch = a + 1;
    for (uint32_t k = c->start[a]; k < c->start[a + 1]; k++)
        c->capd[c->pos[k]] |= scan_post(c, a, c->pos[k], 0);
    int rc = keep_qualifying(c, a);
    if (rc > 0)
        for (uint32_t k = c->start[a]; k < c->start[a + 1]; k++)
            scan_post(c, a, c->pos[k], 1);
    return rc < 0 ? rc : 0;
}

/* Groups the posts' positions by actor (ascending, so key by key) and allocates the scratch. */
static int index_actors(struct coord_ctx *c)
{
    size_t na = (size_t)c->nactors + 1;
    c->start = calloc(na + 1, sizeof(*c->start));
    c->pos = malloc((c->n + 1) * sizeof(*c->pos));
    c->capd = calloc(c->n + 1, 1);
    c->meet = calloc(na, sizeof(*c->meet));
    c->qual = calloc(na, 1);
    c->cand = malloc(na * sizeof(*c->cand));
    if (!c->start || !c->pos || !c->capd || !c->meet || !c->qual || !c->cand)
        return -ENOMEM;
    for (size_t i = 0; i < c->n; i++)
        c->start[c->w[i].actor + 1]++;
    for (uint32_t a = 0; a < c->nactors; a++)
        c->start[a + 1] += c->start[a];
    for (size_t i = 0; i < c->n; i++)
        c->pos[c->start[c->w[i].actor]++] = (uint32_t)i;
    for (uint32_t a = c->nactors; a > 0; a--) /* the fill moved each start to the next's */
        c->start[a] = c->start[a - 1];
    c->start[0] = 0;
    return 0;
}

static int count_pairs(struct coord_ctx *c)
{
    int rc = index_actors(c);
    for (uint32_t a = 0; !rc && a < c->nactors; a++)
        rc = count_actor(c, a);
    if (rc)
        return rc;
    for (size_t i = 0; i < c->n;) { /* keys_capped: the keys with a capped post */
        size_t e = run_end(c->w, c->n, i);
        int capped = 0;
        for (; i < e; i++)
            capped |= c->capd[i];
        c->res->keys_capped += capped;
    }
    return 0;
}

/* ---- groups */

static uint32_t uf_find(uint32_t *uf, uint32_t x)
{
    while (uf[x] != x) {
        uf[x] = uf[uf[x]];
        x = uf[x];
    }
    return x;
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static int cmp_ev_gap(const void *x, const void *y)
{
    return cmp_i64(&((const struct ev *)x)->gap, &((const struct ev *)y)->gap);
}

static int cmp_pair(const void *x, const void *y)
{
    const struct coord_pair *a = x, *b = y;
    if (a->a != b->a)
        return (a->a > b->a) - (a->a < b->a);
    return (a->b > b->b) - (a->b < b->b);
}

static int cmp_group(const void *x, const void *y)
{
    const struct coord_group *a = x, *b = y;
    if (a->nmembers != b->nmembers)
        return a->nmembers > b->nmembers ? -1 : 1;
    if (a->total_weight != b->total_weight)
        return a->total_weight > b->total_weight ? -1 : 1;
    return cmp_u32(&a->members[0], &b->members[0]);
}

/* The pair as reported: original ids in order, its median smallest gap (its evidence sorted). */
static struct coord_pair report_pair(const struct coord_ctx *c, const struct qpair *q)
{
    uint32_t a = id_of(c, q->a), b = id_of(c, q->b);
    struct ev *ev = &c->ev[q->ev_off];
    qsort(ev, q->nev, sizeof(*ev), cmp_ev_gap);
    uint32_t m = c->nkeys[q->a] < c->nkeys[q->b] ? c->nkeys[q->a] : c->nkeys[q->b];
    return (struct coord_pair){a < b ? a : b, a < b ? b : a, q->weight, (double)q->weight / m,
                               q->nev ? ev[(q->nev - 1) / 2].gap : 0};
}

/* Contents (sorted, unique) and the median gap of group g from its pairs' evidence. */
static void finish_group(const struct coord_ctx *c, struct coord_group *g, const uint32_t *qidx,
                         int64_t *gaps)
{
    size_t n = 0;
    for (uint32_t k = 0; k < g->npairs; k++) {
        const struct qpair *q = &c->qp[qidx[k]];
        for (uint32_t j = 0; j < q->nev; j++) {
            g->contents[n] = c->ev[q->ev_off + j].content;
            gaps[n++] = c->ev[q->ev_off + j].gap;
        }
    }
    qsort(g->contents, n, sizeof(uint32_t), cmp_u32);
    qsort(gaps, n, sizeof(int64_t), cmp_i64);
    g->median_gap = n ? gaps[(n - 1) / 2] : 0;
    uint32_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (!u || g->contents[u - 1] != g->contents[i])
            g->contents[u++] = g->contents[i];
    g->ncontents = u;
    qsort(g->members, g->nmembers, sizeof(uint32_t), cmp_u32);
    qsort(g->pairs, g->npairs, sizeof(*g->pairs), cmp_pair);
}

/* Allocates each group's arrays from the counts gathered in nm (members), np (pairs), ne
 * (evidence). */
static int alloc_groups(struct coord_result *res, const uint32_t *nm, const uint32_t *np,
                        const size_t *ne)
{
    for (uint32_t g = 0; g < res->ngroups; g++) {
        struct coord_group *gr = &res->groups[g];
        gr->members = malloc(nm[g] * sizeof(uint32_t));
        gr->pairs = malloc(np[g] * sizeof(*gr->pairs));
        gr->contents = malloc(ne[g] * sizeof(uint32_t));
        if (!gr->members || !gr->pairs || !gr->contents)
            return -ENOMEM;
    }
    return 0;
}

/* Components of the qualifying pairs, laid out as groups. gid: per actor, its group. */
static int fill_groups(struct coord_ctx *c, uint32_t *uf, uint32_t *gid, uint32_t *qidx,
                       int64_t *gaps)
{
    struct coord_result *res = c->res;
    uint32_t *nm = calloc(res->ngroups, sizeof(*nm)), *np = calloc(res->ngroups, sizeof(*np));
    size_t *ne = calloc(res->ngroups, sizeof(*ne));
    uint32_t *pstart = calloc(res->ngroups + 1, sizeof(*pstart));
    int rc = -ENOMEM;
    if (!nm || !np || !ne || !pstart)
        goto out;
    for (uint32_t a = 0; a < c->nactors; a++)
        if (c->qual[a])
            nm[gid[uf_find(uf, a)]]++;
    for (size_t k = 0; k < c->nqp; k++) {
        uint32_t g = gid[uf_find(uf, c->qp[k].a)];
        np[g]++;
        ne[g] += c->qp[k].nev;
    }
    if ((rc = alloc_groups(res, nm, np, ne)))
        goto out;
    for (uint32_t g = 0; g < res->ngroups; g++)
        pstart[g + 1] = pstart[g] + np[g];
    for (uint32_t a = 0; a < c->nactors; a++) {
        struct coord_group *gr = c->qual[a] ? &res->groups[gid[uf_find(uf, a)]] : NULL;
        if (gr)
            gr->members[gr->nmembers++] = id_of(c, a);
    }
    for (size_t k = 0; k < c->nqp; k++) {
        uint32_t g = gid[uf_find(uf, c->qp[k].a)];
        struct coord_group *gr = &res->groups[g];
        qidx[pstart[g] + gr->npairs] = (uint32_t)k;
        gr->pairs[gr->npairs++] = report_pair(c, &c->qp[k]);
        gr->total_weight += c->qp[k].weight;
    }
    for (uint32_t g = 0; g < res->ngroups; g++)
        finish_group(c, &res->groups[g], qidx + pstart[g], gaps);
    qsort(res->groups, res->ngroups, sizeof(*res->groups), cmp_group);
    rc = 0;
out:
    free(nm);
    free(np);
    free(ne);
    free(pstart);
    return rc;
}

static int build_groups(struct coord_ctx *c)
{
    size_t na = (size_t)c->nactors + 1;
    uint32_t *uf = malloc(na * sizeof(*uf)), *gid = malloc(na * sizeof(*gid));
    uint32_t *qidx = malloc((c->nqp + 1) * sizeof(*qidx));
    int64_t *gaps = malloc((c->nev + 1) * sizeof(*gaps));
    int rc = -ENOMEM;
    if (!uf || !gid || !qidx || !gaps)
        goto out;
    for (uint32_t a = 0; a < c->nactors; a++)
        uf[a] = a, gid[a] = NIL;
    for (size_t k = 0; k < c->nqp; k++)
        uf[uf_find(uf, c->qp[k].a)] = uf_find(uf, c->qp[k].b);
    uint32_t ng = 0;
    for (uint32_t a = 0; a < c->nactors; a++)
        if (c->qual[a] && gid[uf_find(uf, a)] == NIL)
            gid[uf_find(uf, a)] = ng++;
    c->res->groups = calloc(ng ? ng : 1, sizeof(*c->res->groups));
    if (!c->res->groups)
        goto out;
    c->res->ngroups = ng;
    rc = fill_groups(c, uf, gid, qidx, gaps);
out:
    free(uf);
    free(gid);
    free(qidx);
    free(gaps);
    return rc;
}

/* ---- entry points */

static int init_ctx(struct coord_ctx *c, const struct coord_params *p, size_t n,
                    struct coord_result *res)
{
    static const struct coord_params defaults = {COORD_DEFAULT_WINDOW_MS, COORD_DEFAULT_MIN_REPEATS,
                                                 COORD_DEFAULT_MIN_RATIO, 0};
    memset(c, 0, sizeof(*c));
    memset(res, 0, sizeof(*res));
    p = p ? p : &defaults;
    if (p->window_ms < 0 || isnan(p->min_ratio) || n >= NIL)
        return -EINVAL;
    c->window = p->window_ms;
    c->min_repeats = p->min_repeats ? p->min_repeats : 1; /* a pair must meet at least once */
    c->min_ratio = p->min_ratio;
    c->cap = p->max_window_posts ? p->max_window_posts : COORD_MAX_WINDOW_POSTS;
    c->res = res;
    return 0;
}

static void free_ctx(struct coord_ctx *c)
{
    void *owned[] = {c->w,    c->ids,  c->nkeys, c->alive, c->start, c->pos,
                     c->capd, c->meet, c->qp,    c->ev,    c->qual,  c->cand};
    for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
        free(owned[i]);
    u64map_destroy(&c->actor_map);
}

int coord_compute(struct coord_post *posts, size_t n, const struct coord_params *p,
                  struct coord_result *res)
{
    struct coord_ctx c;
    int rc = init_ctx(&c, p, n, res);
    if (rc)
        return rc;
    if ((rc = sort_posts(posts, n)) || (rc = map_actors(&c, posts, n)) ||
        (rc = load_posts(&c, posts, n)) || (rc = prefilter(&c)) || (rc = count_pairs(&c)))
        goto out;
    if (c.nqp)
        rc = build_groups(&c);
out:
    free_ctx(&c);
    if (rc)
        coord_result_free(res);
    return rc;
}

void coord_result_free(struct coord_result *res)
{
    for (uint32_t g = 0; res->groups && g < res->ngroups; g++) {
        free(res->groups[g].members);
        free(res->groups[g].contents);
        free(res->groups[g].pairs);
    }
    free(res->groups);
    memset(res, 0, sizeof(*res));
}
