/* coord_compute (coordinated link sharing): the window's edge to the millisecond, the ratio and
 * min_repeats thresholds, self pairs and repeated posts, components, the evidence on a hand case,
 * viral crowds that must cost little, the cap, and random inputs against an O(n^2) reference. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "analytics/coord.h"

#define MAXP 512

struct input {
    struct coord_post p[MAXP];
    size_t n;
};

static void add(struct input *in, uint32_t actor, uint32_t content, int64_t ts)
{
    assert_true(in->n < MAXP);
    in->p[in->n++] = (struct coord_post){actor, content, ts};
}

static struct coord_params params(int64_t window, uint32_t repeats, double ratio)
{
    return (struct coord_params){window, repeats, ratio, 0};
}

static void compute(struct input *in, struct coord_params p, struct coord_result *r)
{
    assert_int_equal(coord_compute(in->p, in->n, &p, r), 0);
}

/* a and b post keys 0..k-1, b gap ms after a. */
static void share(struct input *in, uint32_t a, uint32_t b, uint32_t k, int64_t gap)
{
    for (uint32_t i = 0; i < k; i++) {
        add(in, a, i, 100000 * i);
        add(in, b, i, 100000 * i + gap);
    }
}

static void window_edge(void **state)
{
    struct input in = {0};
    struct coord_result r;
    share(&in, 1, 2, 3, 10000);
    compute(&in, params(10000, 3, 0.3), &r);
    assert_int_equal(r.ngroups, 1);
    assert_int_equal(r.groups[0].pairs[0].median_gap, 10000);
    coord_result_free(&r);
    in.n = 0;
    share(&in, 1, 2, 3, 10001);
    compute(&in, params(10000, 3, 0.3), &r);
    assert_int_equal(r.ngroups, 0);
    coord_result_free(&r);
}

/* a and b co-share 3 keys; b also posts `extra` keys of its own, a posts 7 of its own. */
static uint32_t ratio_groups(uint32_t extra, double min_ratio)
{
    struct input in = {0};
    struct coord_result r;
    share(&in, 1, 2, 3, 5);
    for (uint32_t i = 0; i < 7; i++)
        add(&in, 1, 100 + i, 0);
    for (uint32_t i = 0; i < extra; i++)
        add(&in, 2, 200 + i, 0);
    compute(&in, params(10000, 3, min_ratio), &r);
    uint32_t n = r.ngroups;
    if (n)
        assert_true(r.groups[0].pairs[0].ratio == 3.0 / (3 + (extra < 7 ? extra : 7)));
    coord_result_free(&r);
    return n;
}

static void ratio_threshold(void **state)
{
    assert_int_equal(ratio_groups(7, 0.3), 1);  /* 3 / min(10, 10) = 0.3: at */
    assert_int_equal(ratio_groups(8, 0.3), 1);  /* min is still a's 10 */
    assert_int_equal(ratio_groups(7, 0.31), 0); /* just above the ratio */
    assert_int_equal(ratio_groups(6, 0.3), 1);  /* 3 / 9 */
    assert_int_equal(ratio_groups(7, 0.30000000000000004), 0);
}

static void min_repeats_edge(void **state)
{
    struct input in = {0};
    struct coord_result r;
    share(&in, 1, 2, 2, 0);
    compute(&in, params(10000, 3, 0.3), &r);
    assert_int_equal(r.ngroups, 0);
    coord_result_free(&r);
    compute(&in, params(10000, 2, 0.3), &r);
    assert_int_equal(r.ngroups, 1);
    assert_int_equal(r.groups[0].pairs[0].weight, 2);
    coord_result_free(&r);
    /* min_repeats 0 still needs a meeting: a lone actor forms no group */
    in.n = 0;
    add(&in, 1, 1, 0);
    add(&in, 2, 2, 0);
    compute(&in, params(10000, 0, 0), &r);
    assert_int_equal(r.ngroups, 0);
    coord_result_free(&r);
}

static void self_pairs(void **state)
{
    struct input in = {0};
    struct coord_result r;
    for (int k = 0; k < 5; k++)
        for (int i = 0; i < 4; i++)
            add(&in, 7, (uint32_t)k, i * 10);
    add(&in, 8, 0, 100000); /* out of 7's window */
    compute(&in, params(10000, 1, 0), &r);
    assert_int_equal(r.ngroups, 0);
    coord_result_free(&r);
}

static void repeats_count_once(void **state)
{
    struct input in = {0};
    struct coord_result r;
    for (uint32_t k = 0; k < 3; k++)
        for (int i = 0; i < 10; i++)
            add(&in, i % 2 ? 1 : 2, k, 1000000 * k + 7 * i);
    compute(&in, params(10000, 3, 0.3), &r);
    assert_int_equal(r.ngroups, 1);
    assert_int_equal(r.groups[0].pairs[0].weight, 3);
    assert_int_equal(r.groups[0].pairs[0].median_gap, 7);
    assert_int_equal(r.groups[0].ncontents, 3);
    coord_result_free(&r);
}

static void two_groups_and_chain(void **state)
{
    struct input in = {0};
    struct coord_result r;
    /* a chain 10-11 on keys 0-2 and 11-12 on keys 50-52: 10 and 12 never meet */
    share(&in, 10, 11, 3, 1);
    for (uint32_t i = 0; i < 3; i++) {
        add(&in, 11, 50 + i, 5000000 + i * 100000);
        add(&in, 12, 50 + i, 5000000 + i * 100000 + 2);
    }
    /* a separate pair 20-21 on 4 keys */
    for (uint32_t i = 0; i < 4; i++) {
        add(&in, 21, 80 + i, i * 100000);
        add(&in, 20, 80 + i, i * 100000 + 3);
    }
    compute(&in, params(10000, 3, 0.3), &r);
    assert_int_equal(r.ngroups, 2);
    struct coord_group *g = &r.groups[0];
    assert_int_equal(g->nmembers, 3);
    assert_int_equal(g->members[0], 10);
    assert_int_equal(g->members[2], 12);
    assert_int_equal(g->npairs, 2);
    assert_int_equal(g->pairs[0].a, 10);
    assert_int_equal(g->pairs[1].b, 12);
    assert_int_equal(g->ncontents, 6);
    assert_int_equal(g->total_weight, 6);
    g = &r.groups[1];
    assert_int_equal(g->nmembers, 2);
    assert_int_equal(g->pairs[0].a, 20);
    assert_int_equal(g->pairs[0].b, 21);
    assert_int_equal(g->pairs[0].weight, 4);
    assert_int_equal(g->median_gap, 3);
    coord_result_free(&r);
}

/* Smallest gaps per key 50, 300, 100, 200 for (1,2) and 0, 0, 0 for (2,3) on 9..11. */
static void evidence(void **state)
{
    struct input in = {0};
    struct coord_result r;
    int64_t t[4] = {0, 1000000, 2000000, 3000000}, gaps[4] = {50, 300, 100, 200};
    for (uint32_t k = 0; k < 4; k++) {
        add(&in, 1, k * 2, t[k]);
        add(&in, 2, k * 2, t[k] + gaps[k]);
        add(&in, 1, k * 2, t[k] + gaps[k] + 5000); /* farther than the smallest gap */
        add(&in, 2, k * 2, t[k] - 9000);
    }
    for (uint32_t k = 9; k < 12; k++) {
        add(&in, 2, k, 9000000 + k);
        add(&in, 3, k, 9000000 + k);
    }
    compute(&in, params(10000, 3, 0.3), &r);
    assert_int_equal(r.ngroups, 1);
    struct coord_group *g = &r.groups[0];
    assert_int_equal(g->nmembers, 3);
    assert_int_equal(g->npairs, 2);
    assert_int_equal(g->pairs[0].weight, 4);
    assert_int_equal(g->pairs[0].median_gap, 100); /* 50 100 200 300: the lower middle */
    assert_true(g->pairs[0].ratio == 4.0 / 4);
    assert_int_equal(g->pairs[1].weight, 3);
    assert_int_equal(g->pairs[1].median_gap, 0);
    assert_true(g->pairs[1].ratio == 3.0 / 3); /* 3 posted 3 keys */
    assert_int_equal(g->median_gap, 50);       /* 0 0 0 50 100 200 300 */
    uint32_t want[] = {0, 2, 4, 6, 9, 10, 11};
    assert_int_equal(g->ncontents, 7);
    assert_memory_equal(g->contents, want, sizeof(want));
    assert_int_equal(g->total_weight, 7);
    coord_result_free(&r);
}

/* Adds 5 actors sharing 20 keys 100 ms apart to the crowd in p[n] (room for 100 more), and checks
 * that exactly they come out, at a cost linear in the posts. Frees p. */
static void check_planted(struct coord_post *p, size_t n)
{
    for (uint32_t k = 0; k < 20; k++)
        for (uint32_t a = 0; a < 5; a++)
            p[n++] = (struct coord_post){1000000 + a, 1000 + k, 50000000 + k * 60000 + a * 100};
    struct coord_result r;
    assert_int_equal(coord_compute(p, n, NULL, &r), 0);
    assert_int_equal(r.keys_capped, 0);
    assert_int_equal(r.ngroups, 1);
    assert_int_equal(r.groups[0].nmembers, 5);
    assert_int_equal(r.groups[0].npairs, 10);
    assert_int_equal(r.groups[0].ncontents, 20);
    assert_int_equal(r.groups[0].members[0], 1000000);
    assert_int_equal(r.groups[0].pairs[0].weight, 20);
    assert_true(r.pairs_examined < 50 * n);
    coord_result_free(&r);
    free(p);
}

/* 100k one-off sharers of one key, 10 posts a second, so 100 within any 10 s window */
static void viral_crowd(void **state)
{
    struct coord_post *p = malloc((100000 + 100) * sizeof(*p));
    assert_non_null(p);
    for (uint32_t i = 0; i < 100000; i++)
        p[i] = (struct coord_post){i, 7, 50000000 + i * 100};
    check_planted(p, 100000);
}

/* 20k actors that each share the viral key and 3 keys of their own: enough keys to pass the first
 * filter, but they meet nobody on any other key, so the rounds drop them before pairing. */
static void viral_loners(void **state)
{
    size_t n = 0;
    struct coord_post *p = malloc((80000 + 100) * sizeof(*p));
    assert_non_null(p);
    for (uint32_t i = 0; i < 20000; i++) {
        p[n++] = (struct coord_post){i, 7, 50000000 + i * 10};
        for (uint32_t k = 0; k < 3; k++)
            p[n++] = (struct coord_post){i, 10000 + 3 * i + k, 0};
    }
    check_planted(p, n);
}

/* 300 actors all posting 3 keys within one window: 44850 real pairs. Under a cap of 100 the
 * keys are capped and the work bounded; without, every pair is there. */
static void crowd_cap(void **state)
{
    static struct coord_post p[900];
    size_t n = 0;
    for (uint32_t k = 0; k < 3; k++)
        for (uint32_t a = 0; a < 300; a++)
            p[n++] = (struct coord_post){a, k, k * 100000 + a};
    struct coord_params cp = params(10000, 3, 0.3);
    struct coord_result r;
    cp.max_window_posts = 100;
    assert_int_equal(coord_compute(p, n, &cp, &r), 0);
    assert_int_equal(r.keys_capped, 3);
    assert_true(r.pairs_examined <= 4 * n * 100); /* two sides, two scans */
    assert_int_equal(r.ngroups, 1);
    assert_true(r.groups[0].npairs < 300 * 299 / 2);
    coord_result_free(&r);
    cp.max_window_posts = 0;
    assert_int_equal(coord_compute(p, n, &cp, &r), 0);
    assert_int_equal(r.keys_capped, 0);
    assert_int_equal(r.ngroups, 1);
    assert_int_equal(r.groups[0].nmembers, 300);
    assert_int_equal(r.groups[0].npairs, 300 * 299 / 2);
    assert_int_equal(r.groups[0].ncontents, 3);
    coord_result_free(&r);
}

static void bad_and_empty(void **state)
{
    struct coord_result r;
    struct coord_post p[1] = {{1, 1, 0}};
    struct coord_params bad = params(-1, 3, 0.3);
    assert_int_equal(coord_compute(p, 1, &bad, &r), -EINVAL);
    assert_int_equal(coord_compute(p, 0, NULL, &r), 0);
    assert_int_equal(r.ngroups, 0);
    coord_result_free(&r);
    assert_int_equal(coord_compute(p, 1, NULL, &r), 0);
    assert_int_equal(r.ngroups, 0);
    coord_result_free(&r);
}

/* ---- the O(n^2) reference */

#define RA       30
#define RK       20
#define NIL_COMP UINT32_MAX

struct ref {
    uint32_t actors[RA], keys[RK], na, nk;
    int64_t gap[RA][RA][RK]; /* smallest gap, -1: never met */
    uint32_t nkeys[RA];
};

static uint32_t slot(uint32_t *tab, uint32_t *n, uint32_t v)
{
    for (uint32_t i = 0; i < *n; i++)
        if (tab[i] == v)
            return i;
    tab[*n] = v;
    return (*n)++;
}

/* The index of v in tab[n]; it must be there. */
static uint32_t index_of(const uint32_t *tab, uint32_t n, uint32_t v)
{
    for (uint32_t i = 0; i < n; i++)
        if (tab[i] == v)
            return i;
    fail_msg("actor %u is not in the input", v);
    return 0;
}

static void ref_meet(struct ref *f, const struct coord_post *p, size_t n, int64_t w)
{
    memset(f->gap, 0xff, sizeof(f->gap));
    uint8_t posted[RA][RK] = {{0}};
    for (size_t i = 0; i < n; i++) {
        uint32_t a = slot(f->actors, &f->na, p[i].actor), k = slot(f->keys, &f->nk, p[i].content);
        f->nkeys[a] += !posted[a][k];
        posted[a][k] = 1;
        for (size_t j = 0; j < i; j++) {
            uint32_t b = slot(f->actors, &f->na, p[j].actor);
            int64_t d = p[i].ts > p[j].ts ? p[i].ts - p[j].ts : p[j].ts - p[i].ts;
            if (a == b || p[j].content != p[i].content || d > w)
                continue;
            int64_t *g = &f->gap[a < b ? a : b][a < b ? b : a][k];
            if (*g < 0 || d < *g)
                *g = d;
        }
    }
}

static int ref_weight(const struct ref *f, uint32_t a, uint32_t b)
{
    int w = 0;
    for (uint32_t k = 0; k < f->nk; k++)
        w += f->gap[a][b][k] >= 0;
    return w;
}

static int ref_qual(const struct ref *f, uint32_t a, uint32_t b, const struct coord_params *p)
{
    uint32_t w = (uint32_t)ref_weight(f, a, b), m = p->min_repeats ? p->min_repeats : 1;
    uint32_t mk = f->nkeys[a] < f->nkeys[b] ? f->nkeys[a] : f->nkeys[b];
    return w >= m && (double)w / mk >= p->min_ratio;
}

static int cmp64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* Checks group g against the reference's component c. */
static void ref_check_group(const struct ref *f, const struct coord_group *g, const uint32_t *comp,
                            uint32_t c, const struct coord_params *p)
{
    uint32_t nm = 0, np = 0;
    static int64_t gaps[RA * RA * RK];
    size_t ng = 0;
    uint8_t keys[RK] = {0};
    for (uint32_t a = 0; a < f->na; a++)
        nm += comp[a] == c;
    assert_int_equal(g->nmembers, nm);
    for (uint32_t i = 0; i < g->nmembers; i++)
        assert_int_equal(comp[index_of(f->actors, f->na, g->members[i])], c);
    for (uint32_t a = 0; a < f->na; a++)
        for (uint32_t b = a + 1; b < f->na; b++) {
            if (comp[a] != c || !ref_qual(f, a, b, p))
                continue;
            int64_t pg[RK];
            size_t npg = 0;
            for (uint32_t k = 0; k < f->nk; k++)
                if (f->gap[a][b][k] >= 0) {
                    pg[npg++] = gaps[ng++] = f->gap[a][b][k];
                    keys[k] = 1;
                }
            qsort(pg, npg, sizeof(int64_t), cmp64);
            uint32_t lo = f->actors[a] < f->actors[b] ? f->actors[a] : f->actors[b];
            uint32_t hi = f->actors[a] ^ f->actors[b] ^ lo;
            int found = 0;
            for (uint32_t i = 0; i < g->npairs; i++) {
                const struct coord_pair *q = &g->pairs[i];
                if (q->a != lo || q->b != hi)
                    continue;
                found = 1;
                assert_int_equal(q->weight, npg);
                assert_int_equal(q->median_gap, pg[(npg - 1) / 2]);
            }
            assert_true(found);
            np++;
        }
    assert_int_equal(g->npairs, np);
    qsort(gaps, ng, sizeof(int64_t), cmp64);
    assert_int_equal(g->median_gap, gaps[(ng - 1) / 2]);
    uint32_t nk = 0;
    for (uint32_t k = 0; k < f->nk; k++)
        if (keys[k]) {
            int in = 0;
            for (uint32_t i = 0; i < g->ncontents; i++)
                in |= g->contents[i] == f->keys[k];
            assert_true(in);
            nk++;
        }
    assert_int_equal(g->ncontents, nk);
}

static uint32_t ref_find(uint32_t *uf, uint32_t x)
{
    while (uf[x] != x)
        x = uf[x];
    return x;
}

static void ref_compare(const struct coord_post *p, size_t n, const struct coord_params *cp,
                        const struct coord_result *r)
{
    static struct ref f;
    memset(&f, 0, sizeof(f));
    ref_meet(&f, p, n, cp->window_ms);
    uint32_t uf[RA], comp[RA], qual[RA] = {0}, ncomp = 0;
    for (uint32_t a = 0; a < f.na; a++)
        uf[a] = a;
    for (uint32_t a = 0; a < f.na; a++)
        for (uint32_t b = a + 1; b < f.na; b++)
            if (ref_qual(&f, a, b, cp)) {
                uf[ref_find(uf, a)] = ref_find(uf, b);
                qual[a] = qual[b] = 1;
            }
    for (uint32_t a = 0; a < f.na; a++)
        comp[a] = qual[a] ? ref_find(uf, a) : NIL_COMP;
    for (uint32_t a = 0; a < f.na; a++)
        ncomp += qual[a] && ref_find(uf, a) == a;
    assert_int_equal(r->ngroups, ncomp);
    for (uint32_t g = 0; g < r->ngroups; g++) {
        const struct coord_group *gr = &r->groups[g];
        uint32_t c = comp[index_of(f.actors, f.na, gr->members[0])];
        ref_check_group(&f, gr, comp, c, cp);
        if (g) { /* largest first */
            const struct coord_group *pr = &r->groups[g - 1];
            assert_true(pr->nmembers > gr->nmembers ||
                        (pr->nmembers == gr->nmembers && (pr->total_weight > gr->total_weight ||
                                                          (pr->total_weight == gr->total_weight &&
                                                           pr->members[0] < gr->members[0]))));
        }
    }
}

static uint32_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*s >> 33);
}

static void brute_force(void **state)
{
    static const double ratios[] = {0, 0.1, 0.3, 0.5, 1.0};
    static struct coord_post p[300], copy[300];
    uint32_t with_groups = 0, multi = 0, capped = 0;
    for (uint64_t seed = 1; seed <= 3000; seed++) {
        uint64_t s = seed;
        size_t n = 1 + rnd(&s) % 300;
        uint32_t na = 2 + rnd(&s) % 29, nk = 1 + rnd(&s) % 20, sparse = rnd(&s) % 2;
        int64_t span = 1 + rnd(&s) % 100000, base = (int64_t)(rnd(&s) % 3) - 1;
        for (size_t i = 0; i < n; i++) {
            uint32_t a = rnd(&s) % na, k = rnd(&s) % nk;
            p[i] = (struct coord_post){sparse ? a * 148000007u : a, k ? k * 3 : UINT32_MAX,
                                       base * 1000000000000LL + rnd(&s) % span};
        }
        struct coord_params cp = params(rnd(&s) % 20000, rnd(&s) % 5, ratios[rnd(&s) % 5]);
        /* 300 never binds with 300 posts; 1-4 often does, and then only keys_capped == 0 is
         * promised exact */
        uint32_t caps[] = {0, 300, 1 + rnd(&s) % 4};
        cp.max_window_posts = caps[rnd(&s) % 3];
        memcpy(copy, p, n * sizeof(*p));
        struct coord_result r;
        assert_int_equal(coord_compute(p, n, &cp, &r), 0);
        assert_true(r.keys_capped == 0 || cp.max_window_posts < 5);
        capped += r.keys_capped > 0;
        if (!r.keys_capped)
            ref_compare(copy, n, &cp, &r);
        with_groups += r.ngroups > 0;
        multi += r.ngroups > 1;
        coord_result_free(&r);
    }
    print_message("%u of 3000 inputs had groups, %u more than one, %u capped\n", with_groups, multi,
                  capped);
    assert_true(with_groups > 500 && multi > 100 && capped > 100 && capped < 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(window_edge),        cmocka_unit_test(ratio_threshold),
        cmocka_unit_test(min_repeats_edge),   cmocka_unit_test(self_pairs),
        cmocka_unit_test(repeats_count_once), cmocka_unit_test(two_groups_and_chain),
        cmocka_unit_test(evidence),           cmocka_unit_test(viral_crowd),
        cmocka_unit_test(viral_loners),       cmocka_unit_test(crowd_cap),
        cmocka_unit_test(bad_and_empty),      cmocka_unit_test(brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
