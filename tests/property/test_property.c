/* Property test of the graph engine (DESIGN §2–3): thousands of random forests, each delivered in
 * two orders with duplicates and invalid events mixed in, every metric of every post and actor
 * checked against a from-scratch oracle along the way, and the two final states compared. A few
 * scripted scenarios (reversed chains, subtrees before their ancestors, cycles through
 * placeholders) come first, as readable reproducers of the hard cases.
 *
 * Environment: PROPERTY_ITER (forests, default 1200), PROPERTY_SEED (default fixed),
 * PROPERTY_ONLY=N (run iteration N alone), PROPERTY_TRACE=1 (print every event as NDJSON with
 * its expected outcome). A failure prints the seed and iteration and how to replay them. */
#include <errno.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "prop.h"

#define DEFAULT_ITER 1200
#define DEFAULT_SEED 20240601ULL

/* ---- scripted scenarios ---- */

/* A forest of string ids "p<k>" with actors "a0", "a1" taking turns. */
static void forest_manual(struct forest *f, uint32_t n, const int32_t *parents)
{
    memset(f, 0, sizeof(*f));
    f->n = n;
    f->n_actors = 2;
    f->nodes = calloc(n, sizeof(*f->nodes));
    f->actor_type = calloc(2, 1);
    f->actor_int = calloc(2, 1);
    f->actor_type[0] = f->actor_type[1] = EVENT_ACTOR_ACCOUNT;
    for (uint32_t k = 0; k < n; k++) {
        f->nodes[k].parent = parents[k];
        f->nodes[k].actor = k % 2;
        f->nodes[k].ts = 1000 + k;
        f->nodes[k].kind = KIND_DEFAULT;
    }
}

static void run_script(const struct forest *f, const uint32_t *script, uint32_t len)
{
    struct rng r;
    struct delivery_opts o = {.script = script, .script_len = len, .checkpoints = len};

    rng_seed(&r, 1);
    g_ctx.order = "script";
    for (o.batch_max = 0; o.batch_max <= 8; o.batch_max += 8)
        engine_free(deliver(f, &r, &o));
}

/* p39 <- p38 <- ... <- p0 sent leaf first: one placeholder that keeps moving up. */
static void test_reverse_chain(void **state)
{
    enum { N = 40 };
    int32_t parents[N];
    uint32_t script[N];
    struct forest f;

    for (uint32_t k = 0; k < N; k++) {
        parents[k] = (int32_t)k - 1;
        script[k] = N - 1 - k;
    }
    forest_manual(&f, N, parents);
    run_script(&f, script, N);
    forest_free(&f);
}

/* p0 <- p1 <- {p2 <- p3, p4}, p0 <- p5: the subtree of p1 arrives under a placeholder, then
 * p0's cascade forms apart, then p1 arrives and joins them. */
static void test_subtree_before_ancestors(void **state)
{
    static const int32_t parents[] = {-1, 0, 1, 2, 1, 0};
    static const uint32_t script[] = {3, 2, 4, 0, 5, 1};
    struct forest f;

    forest_manual(&f, 6, parents);
    run_script(&f, script, 6);
    forest_free(&f);
}

static int send_event(struct engine *e, const char *post, const char *actor, int64_t ts,
                      const char *parent)
{
    struct event_raw raw;

    memset(&raw, 0, sizeof(raw));
    raw.post = (struct event_field){.type = EVF_STR, .len = (uint32_t)strlen(post), .str = post};
    raw.actor = (struct event_field){.type = EVF_STR, .len = (uint32_t)strlen(actor), .str = actor};
    raw.ts = (struct event_field){.type = EVF_UINT, .u = (uint64_t)ts};
    if (parent)
        raw.parent =
            (struct event_field){.type = EVF_STR, .len = (uint32_t)strlen(parent), .str = parent};
    return engine_apply_raw(e, &raw);
}

/* p0 is a placeholder above p1 <- p2. An event for p0 naming p1 or p2 as its parent would close
 * a loop: it must be rejected and change nothing, and p0's real event must still be taken. */
static void test_cycle_through_placeholder(void **state)
{
    static const int32_t parents[] = {-1, 0, 1};
    static const uint8_t accepted[] = {1, 1, 1}, first_type[] = {0, 0};
    static const uint64_t outcomes[EVENT_OUTCOME_COUNT] = {[EVENT_OK] = 3, [EVENT_REJ_CYCLE] = 3};
    const struct model m = {accepted, first_type, outcomes};
    struct engine *clean, *e;
    struct forest f;
    struct rng r;

    forest_manual(&f, 3, parents);
    rng_seed(&r, 2);
    g_ctx.order = "script";
    assert_int_equal(engine_new(&clean), 0);
    assert_int_equal(engine_new(&e), 0);
    for (int i = 0; i < 2; i++) {
        struct engine *x = i ? e : clean;
        assert_int_equal(send_event(x, "p1", "a1", 1001, "p0"), EVENT_OK);
        assert_int_equal(send_event(x, "p2", "a0", 1002, "p1"), EVENT_OK);
    }
    assert_int_equal(send_event(e, "p0", "a0", 1000, "p1"), EVENT_REJ_CYCLE);
    assert_int_equal(send_event(e, "p0", "a0", 1000, "p2"), EVENT_REJ_CYCLE);
    assert_int_equal(send_event(e, "p0", "newcomer", 1000, "p2"), EVENT_REJ_CYCLE);
    check_same_state(clean, e, &f);
    assert_int_equal(send_event(e, "p0", "a0", 1000, NULL), EVENT_OK);
    check_engine(e, &f, &m, &r, 1);
    assert_int_equal(engine_actor(e, "newcomer", 8, &(struct engine_actor){0}), -ENOENT);
    engine_free(clean);
    engine_free(e);
    forest_free(&f);
}

/* In one engine_apply batch: a child before its parent, a cycle, and a duplicate. */
static void test_cycle_and_dup_in_one_batch(void **state)
{
    struct event_raw raws[4];
    struct event evs[4];
    uint8_t outs[4];
    struct engine *e;
    static const char *const posts[] = {"q", "p", "p", "r"};
    static const char *const parents[] = {"p", "q", NULL, "q"};
    static const uint8_t expect[] = {EVENT_OK, EVENT_REJ_CYCLE, EVENT_OK, EVENT_OK};

    assert_int_equal(engine_new(&e), 0);
    for (int i = 0; i < 4; i++) {
        memset(&raws[i], 0, sizeof(raws[i]));
        raws[i].post = (struct event_field){.type = EVF_STR, .len = 1, .str = posts[i]};
        raws[i].actor = (struct event_field){.type = EVF_STR, .len = 1, .str = "a"};
        raws[i].ts = (struct event_field){.type = EVF_UINT, .u = 10 + (uint64_t)i};
        if (parents[i])
            raws[i].parent = (struct event_field){.type = EVF_STR, .len = 1, .str = parents[i]};
        assert_int_equal(event_validate(&raws[i], &evs[i]), EVENT_OK);
    }
    assert_int_equal(engine_apply(e, evs, 4, outs), 3);
    assert_memory_equal(outs, expect, 4);
    assert_int_equal(engine_apply(e, evs, 4, outs), 0); /* all seen now: q, p, r are dups */
    assert_int_equal(outs[0], EVENT_DUP);
    /* a resend of a seen post is a dup, whatever its parent says */
    assert_int_equal(outs[1], EVENT_DUP);
    assert_int_equal(outs[2], EVENT_DUP);
    assert_int_equal(outs[3], EVENT_DUP);
    engine_free(e);
}

/* ---- random forests ---- */

/* Mostly small forests, where edge cases are dense, some of a few hundred posts, and a few wide
 * ones with more cascades and actors than the engine's top-k indexes keep (1024). */
static void pick_params(struct rng *r, struct forest_params *p)
{
    uint32_t roll = rng_below(r, 100);

    memset(p, 0, sizeof(*p));
    p->pad_ids = -1;
    if (roll < 40) {
        p->n = 1 + rng_below(r, 20);
    } else if (roll < 82) {
        p->n = 20 + rng_below(r, 80);
    } else if (roll < 97) {
        p->n = 100 + rng_below(r, 250);
    } else {
        p->n = 1100 + rng_below(r, 1500);
        p->max_tree = 120;
        p->actors = rng_chance(r, 50) ? 1030 + rng_below(r, 600) : 0;
    }
}

static void random_opts(struct rng *r, int trace, struct delivery_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->order = (int)rng_below(r, ORDER_COUNT);
    o->batch_max = rng_chance(r, 30) ? 0 : 1 + rng_below(r, 64);
    o->checkpoints = 3;
    o->noise_pct = 10;
    o->trace = trace;
}

static void run_iteration(uint64_t seed, uint32_t iter, int trace)
{
    struct delivery_opts oa, ob;
    struct forest_params fp;
    struct forest f;
    struct rng r;

    g_ctx = (struct ctx){.seed = seed, .iter = iter};
    rng_seed(&r, seed + 0x9e3779b97f4a7c15ULL * (iter + 1));
    pick_params(&r, &fp);
    forest_generate(&f, &r, &fp);
    random_opts(&r, trace, &oa);
    random_opts(&r, trace, &ob);
    if (rng_chance(&r, 35))
        ob.order = ORDER_IN; /* the same forest in order must end in the same state */
    if (trace)
        fprintf(stderr, "# iteration %u: %u posts, %u actors; order A %s, order B %s\n", iter, f.n,
                f.n_actors, order_name(oa.order), order_name(ob.order));
    g_ctx.order = order_name(oa.order);
    struct engine *a = deliver(&f, &r, &oa);
    g_ctx.order = order_name(ob.order);
    struct engine *b = deliver(&f, &r, &ob);
    check_same_state(a, b, &f);
    engine_free(a);
    engine_free(b);
    forest_free(&f);
}

/* One forest big enough to cross the engine's storage segments (2^16 posts, 2^14 actors,
 * 2^12 cascades) and its 1 MiB string chunks, in two orders. */
static void test_large_forest(void **state)
{
    struct forest_params fp = {.n = 70000, .max_tree = 40, .actors = 20000, .pad_ids = 1};
    struct delivery_opts oa = {
        .order = ORDER_SHUFFLE, .batch_max = 64, .checkpoints = 1, .noise_pct = 5};
    struct delivery_opts ob = {.order = ORDER_REVERSE, .checkpoints = 0, .noise_pct = 5};
    struct forest f;
    struct rng r;

    g_ctx = (struct ctx){.seed = DEFAULT_SEED, .order = "large"};
    rng_seed(&r, DEFAULT_SEED);
    forest_generate(&f, &r, &fp);
    struct engine *a = deliver(&f, &r, &oa);
    struct engine *b = deliver(&f, &r, &ob);
    check_same_state(a, b, &f);
    engine_free(a);
    engine_free(b);
    forest_free(&f);
}

static void test_random_forests(void **state)
{
    run_forests(DEFAULT_SEED, DEFAULT_ITER, run_iteration);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reverse_chain),
        cmocka_unit_test(test_subtree_before_ancestors),
        cmocka_unit_test(test_cycle_through_placeholder),
        cmocka_unit_test(test_cycle_and_dup_in_one_batch),
        cmocka_unit_test(test_large_forest),
        cmocka_unit_test(test_random_forests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
