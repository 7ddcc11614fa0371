/* The sliced analytics copy (engine_copy_begin/step, issue 18) against the copy taken at once:
 * random forests delivered in random orders (late parents, placeholders filled, subtrees joined
 * or rerooted, duplicates), under retention or not (evictions, post ids reused), with a copy
 * sliced into steps of a few records between any two events. Whenever a sliced copy finishes,
 * it must equal engine_copy_take at that same instant: shares and content keys as multisets,
 * reach per actor. COPY_ITER / COPY_SEED tune it. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cascade/engine.h"

static uint64_t rng_s;

static uint32_t below(uint32_t n)
{
    rng_s ^= rng_s >> 12;
    rng_s ^= rng_s << 25;
    rng_s ^= rng_s >> 27;
    return (uint32_t)((rng_s * 2685821657736338717ull) >> 33) % n;
}

struct node {
    int32_t parent;
    uint32_t actor;
    int64_t ts;
    int content; /* -1: none */
};

static const char *const contents[] = {"u0", "u1", "u2", "u3", "u4", "u5"};

static int apply_node(struct engine *e, uint32_t seed, const struct node *nodes, uint32_t k)
{
    char post[32], parent[32], actor[32];
    struct event_raw raw;
    memset(&raw, 0, sizeof(raw));
    snprintf(post, sizeof(post), "s%u-p%u", seed, k);
    snprintf(actor, sizeof(actor), "a%u", nodes[k].actor);
    raw.post = (struct event_field){.type = EVF_STR, .str = post, .len = (uint32_t)strlen(post)};
    raw.actor = (struct event_field){.type = EVF_STR, .str = actor, .len = (uint32_t)strlen(actor)};
    raw.ts.type = EVF_UINT;
    raw.ts.u = (uint64_t)nodes[k].ts;
    if (nodes[k].parent >= 0) {
        snprintf(parent, sizeof(parent), "s%u-p%d", seed, nodes[k].parent);
        raw.parent =
            (struct event_field){.type = EVF_STR, .str = parent, .len = (uint32_t)strlen(parent)};
    }
    if (nodes[k].content >= 0) {
        const char *c = contents[nodes[k].content];
        raw.content = (struct event_field){.type = EVF_STR, .str = c, .len = (uint32_t)strlen(c)};
    }
    return engine_apply_raw(e, &raw);
}

static int cmp_share(const void *pa, const void *pb)
{
    const struct engine_share *a = pa, *b = pb;
    if (a->from != b->from)
        return a->from < b->from ? -1 : 1;
    return (a->to > b->to) - (a->to < b->to);
}

static int cmp_key(const void *pa, const void *pb)
{
    const struct engine_post_key *a = pa, *b = pb;
    if (a->actor != b->actor)
        return a->actor < b->actor ? -1 : 1;
    if (a->content != b->content)
        return a->content < b->content ? -1 : 1;
    return (a->ts > b->ts) - (a->ts < b->ts);
}

/* The finished sliced copy s against a copy of e taken now. */
static void compare(struct engine *e, struct engine_copy *s, uint32_t seed, uint32_t step)
{
    struct engine_copy t;
    assert_int_equal(engine_copy_settle(s), 0);
    assert_int_equal(engine_copy_take(e, &t), 0);
    if (s->nshares)
        qsort(s->shares, s->nshares, sizeof(*s->shares), cmp_share);
    if (t.nshares)
        qsort(t.shares, t.nshares, sizeof(*t.shares), cmp_share);
    if (s->nkeys)
        qsort(s->keys, s->nkeys, sizeof(*s->keys), cmp_key);
    if (t.nkeys)
        qsort(t.keys, t.nkeys, sizeof(*t.keys), cmp_key);
    int bad = s->nshares != t.nshares || s->nkeys != t.nkeys || s->nactors != t.nactors ||
              s->accepted != t.accepted;
    for (size_t i = 0; !bad && i < s->nshares; i++)
        bad = cmp_share(&s->shares[i], &t.shares[i]) != 0;
    for (size_t i = 0; !bad && i < s->nkeys; i++)
        bad = cmp_key(&s->keys[i], &t.keys[i]) != 0;
    for (uint32_t a = 0; !bad && a < s->nactors; a++)
        bad = s->reach[a] != t.reach[a];
    if (bad && getenv("COPY_DEBUG")) {
        for (size_t i = 0; i < s->nkeys || i < t.nkeys; i++)
            fprintf(stderr, "key %zu: %u %u %lld | %u %u %lld\n", i,
                    i < s->nkeys ? s->keys[i].actor : 0, i < s->nkeys ? s->keys[i].content : 0,
                    i < s->nkeys ? (long long)s->keys[i].ts : 0LL,
                    i < t.nkeys ? t.keys[i].actor : 0, i < t.nkeys ? t.keys[i].content : 0,
                    i < t.nkeys ? (long long)t.keys[i].ts : 0LL);
    }
    if (bad)
        fail_msg("seed %u, event %u: the sliced copy (%zu shares, %zu keys, %u actors, %" PRIu64
                 " slices) differs from the copy taken at once (%zu shares, %zu keys, %u actors)",
                 seed, step, s->nshares, s->nkeys, s->nactors, s->slices, t.nshares, t.nkeys,
                 t.nactors);
    engine_copy_free(&t);
    engine_copy_free(s);
}

struct tally {
    uint64_t copies, slices, evicted, dups;
};

static void one_run(uint32_t seed, struct tally *tl)
{
    rng_s = 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed * 0x100000001b3ull) ^ seed;
    below(2);
    uint32_t n = 200 + below(800), nactors = 2 + below(30);
    struct node *nodes = calloc(n, sizeof(*nodes));
    uint32_t *order = calloc(n, sizeof(uint32_t));
    assert_non_null(nodes);
    assert_non_null(order);
    /* a forest: parents come before their children in ts; some big trees for long walks */
    for (uint32_t k = 0; k < n; k++) {
        int root = k == 0 || below(100) < 12;
        nodes[k].parent = root ? -1 : (int32_t)(k - 1 - below(k < 40 ? k : 40));
        nodes[k].actor = below(nactors);
        nodes[k].ts = 1000000 + (int64_t)k * 1000;
        int withc = root ? below(100) < 70 : below(100) < 15;
        nodes[k].content = withc ? (int)below(6) : -1;
    }
    /* nearly in order, with some posts held back (late parents: placeholders filled later,
     * subtrees joined) and some swapped far */
    for (uint32_t k = 0; k < n; k++)
        order[k] = k;
    uint32_t late = below(100) < 50 ? n / 4 : n / 20;
    for (uint32_t m = 0; m < late; m++) {
        uint32_t i = below(n), j = i + below(n - i);
        uint32_t x = order[i];
        memmove(order + i, order + i + 1, (j - i) * sizeof(uint32_t));
        order[j] = x;
    }
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    int64_t retention = below(100) < 60 ? 20000 + below(100000) : 0;
    if (retention)
        assert_int_equal(engine_set_retention(e, retention), 0);
    uint32_t units = 1 + below(below(2) ? 8 : 200);
    for (uint32_t i = 0; i < n; i++) {
        int orc = apply_node(e, seed, nodes, order[i]);
        if (getenv("COPY_TRACE"))
            fprintf(stderr, "ev %u: node %u parent %d content %d actor %u -> %d active %d\n", i,
                    order[i], nodes[order[i]].parent, nodes[order[i]].content,
                    nodes[order[i]].actor, orc, engine_copy_active(e));
        if (below(100) < 5) { /* a resend of an earlier event: a duplicate, or a post again
                                 after its eviction */
            apply_node(e, seed, nodes, order[below(i + 1)]);
            tl->dups++;
        }
        if (below(3))
            continue; /* a batch ends about one event in three */
        if (!engine_copy_active(e) && below(100) < 30)
            assert_int_equal(engine_copy_begin(e), 0);
        if (engine_copy_active(e)) {
            struct engine_copy s;
            int rc = engine_copy_step(e, 0, 1 + below(units), &s);
            assert_true(rc == 0 || rc == 1);
            tl->slices++;
            if (rc == 1) {
                compare(e, &s, seed, i);
                tl->copies++;
            }
        }
    }
    /* the last copy finishes with nothing more applied */
    if (engine_copy_active(e)) {
        struct engine_copy s;
        int rc;
        while ((rc = engine_copy_step(e, 0, 1 + below(units), &s)) == 0)
            tl->slices++;
        assert_int_equal(rc, 1);
        compare(e, &s, seed, n);
        tl->copies++;
    }
    struct engine_stats st;
    engine_get_stats(e, &st);
    tl->evicted += st.evicted_posts;
    engine_free(e);
    free(nodes);
    free(order);
}

static void test_sliced_equals_whole(void **state)
{
    (void)state;
    const char *it = getenv("COPY_ITER"), *sd = getenv("COPY_SEED");
    uint32_t iters = it ? (uint32_t)strtoul(it, NULL, 10) : 400;
    uint32_t seed0 = sd ? (uint32_t)strtoul(sd, NULL, 10) : 1;
    struct tally tl = {0};
    for (uint32_t i = 0; i < iters; i++)
        one_run(seed0 + i, &tl);
    printf("sliced copies: %u runs, %" PRIu64 " copies in %" PRIu64 " slices, %" PRIu64
           " posts evicted, %" PRIu64 " resends\n",
           iters, tl.copies, tl.slices, tl.evicted, tl.dups);
    assert_true(tl.copies > iters); /* the runs did copy */
    assert_true(tl.evicted > 0);    /* and retention did evict */
}

/* A copy begun twice, a copy taken at once while one is under way, one dropped. */
static void test_copy_api(void **state)
{
    (void)state;
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    struct node nodes[3] = {{-1, 0, 1000, 0}, {0, 1, 2000, -1}, {1, 2, 3000, -1}};
    for (uint32_t k = 0; k < 3; k++)
        assert_int_equal(apply_node(e, 7, nodes, k), 0);
    struct engine_copy s;
    assert_int_equal(engine_copy_step(e, 0, 0, &s), -EINVAL);
    assert_int_equal(engine_copy_begin(e), 0);
    assert_int_equal(engine_copy_begin(e), -EALREADY);
    assert_int_equal(engine_copy_take(e, &s), -EBUSY);
    engine_copy_abort(e);
    assert_false(engine_copy_active(e));
    assert_int_equal(engine_copy_take(e, &s), 0);
    assert_int_equal(s.nshares, 2);
    assert_int_equal(s.nkeys, 3);
    engine_copy_free(&s);
    assert_int_equal(engine_copy_begin(e), 0);
    engine_free(e); /* with a copy under way */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_api),
        cmocka_unit_test(test_sliced_equals_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
