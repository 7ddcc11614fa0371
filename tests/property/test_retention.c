/* Property test of event-time retention (engine_set_retention): random forests whose event
 * times span several retentions, delivered by time, with stragglers, shuffled or in the main
 * test's other orders, with duplicates, invalid events and resends of evicted posts mixed in.
 * A model of the sweep schedule (retain.c) says which posts the engine must still hold; at
 * checkpoints every metric is held to the oracle of those posts (check.c), and the engine to a
 * fresh engine without retention fed only their events (check_fresh.c); some checkpoints also
 * save and load the engine, compare the copy, and carry on with it. A few scripted scenarios
 * come first, with their expectations worked out by hand from engine.h's words.
 *
 * Environment: RETENTION_ITER (forests, default 200), RETENTION_SEED (default fixed),
 * RETENTION_ONLY=N (run iteration N alone), RETENTION_PERSIST (percent of the checkpoints that
 * save and load the engine, default 25), PROPERTY_TRACE=1 (print every event with its
 * expected outcome, and every sweep of the model). A failure prints how to replay it. */
#include <errno.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "prop.h"

#define DEFAULT_ITER 200
#define DEFAULT_SEED 20261204ULL

/* ---- scripted scenarios ---- */

struct ev {
    const char *post, *actor, *parent, *content;
    int64_t ts;
};

static void fill_raw(const struct ev *x, struct event_raw *raw)
{
    memset(raw, 0, sizeof(*raw));
    raw->post =
        (struct event_field){.type = EVF_STR, .len = (uint32_t)strlen(x->post), .str = x->post};
    raw->actor =
        (struct event_field){.type = EVF_STR, .len = (uint32_t)strlen(x->actor), .str = x->actor};
    /* a negative ts is bad_ts at ingest, but the engine still applies one a WAL from before that
     * check holds: send1 and send_batch put it in after validation */
    raw->ts = (struct event_field){.type = EVF_UINT, .u = x->ts < 0 ? 0 : (uint64_t)x->ts};
    if (x->parent)
        raw->parent = (struct event_field){
            .type = EVF_STR, .len = (uint32_t)strlen(x->parent), .str = x->parent};
    if (x->content)
        raw->content = (struct event_field){
            .type = EVF_STR, .len = (uint32_t)strlen(x->content), .str = x->content};
}

static int send1(struct engine *e, const struct ev *x)
{
    struct event_raw raw;
    struct event v;
    uint8_t out;
    fill_raw(x, &raw);
    int rc = event_validate(&raw, &v);
    if (rc != EVENT_OK) {
        engine_note_outcome(e, rc);
        return rc;
    }
    v.ts = x->ts;
    engine_apply(e, &v, 1, &out);
    return out;
}

/* evs[0..n) in one engine_apply (n <= 8); returns how many were accepted. */
static size_t send_batch(struct engine *e, const struct ev *evs, size_t n, uint8_t *outs)
{
    struct event_raw raws[8];
    struct event v[8];

    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        fill_raw(&evs[i], &raws[i]);
        assert_int_equal(event_validate(&raws[i], &v[i]), EVENT_OK);
        v[i].ts = evs[i].ts;
    }
    return engine_apply(e, v, n, outs);
}

static struct engine *new_engine(int64_t ms)
{
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    assert_int_equal(engine_set_retention(e, ms), 0);
    return e;
}

static int held(struct engine *e, const char *post)
{
    struct engine_cascade c;
    int rc = engine_cascade(e, post, (uint32_t)strlen(post), &c);
    assert_true(rc == 0 || rc == -ENOENT);
    return rc == 0;
}

/* post's cascade: size observed posts below a placeholder root (the one missing node). */
static void expect_below_placeholder(struct engine *e, const char *post, const char *root,
                                     uint32_t size)
{
    struct engine_cascade c;
    assert_int_equal(engine_cascade(e, post, (uint32_t)strlen(post), &c), 0);
    assert_int_equal(c.root_len, strlen(root));
    assert_memory_equal(c.root, root, c.root_len);
    assert_null(c.root_actor);
    assert_int_equal(c.size, size);
    assert_int_equal(c.missing, 1);
}

static void expect_cut(struct engine *e, int64_t cut, uint64_t cascades, uint64_t posts)
{
    struct engine_stats st;
    engine_get_stats(e, &st);
    assert_int_equal(st.retained_from, cut);
    assert_int_equal(st.evicted_cascades, cascades);
    assert_int_equal(st.evicted_posts, posts);
}

/* ms = 200 s: step = floor_to_second(200000 / 64) = 3 s, so the cut lags the newest event by
 * up to 3 s more than the retention. The times below put events on either side of each point:
 *   A 1000000: first sweep, cut 800000, next sweep at 800000 + 200000 + 3000 = 1003000
 *   B 1002500: no sweep
 *   X 1201500: cut floor(1001500) = 1001000: A (last 1000000) goes, B stays;
 *              next sweep at 1001000 + 203000 = 1204000
 *   Y 1203999: no sweep, though B (1002500) is older than floor(1003999) = 1003000
 *   Z 1204000: cut 1004000: B goes. */
static void run_step_schedule(int batched)
{
    static const struct ev evs[] = {{"A", "a", NULL, NULL, 1000000},
                                    {"B", "b", NULL, NULL, 1002500},
                                    {"X", "x", NULL, NULL, 1201500},
                                    {"Y", "x", NULL, NULL, 1203999},
                                    {"Z", "x", NULL, NULL, 1204000}};
    static const int64_t cuts[] = {800000, 800000, 1001000, 1001000, 1004000};
    static const char *const gone[] = {NULL, NULL, "A", NULL, "B"};
    struct engine *e = new_engine(200000);

    if (batched) { /* one engine_apply: the sweeps still run between the events */
        uint8_t outs[5];
        assert_int_equal(send_batch(e, evs, 5, outs), 5);
        expect_cut(e, 1004000, 2, 2);
    }
    for (int i = 0; !batched && i < 5; i++) {
        assert_int_equal(send1(e, &evs[i]), EVENT_OK);
        assert_true(!gone[i] || !held(e, gone[i]));
        expect_cut(e, cuts[i], (uint64_t)(i >= 2) + (i >= 4), (uint64_t)(i >= 2) + (i >= 4));
        assert_int_equal(held(e, "B"), i >= 1 && i < 4);
    }
    assert_false(held(e, "A"));
    assert_false(held(e, "B"));
    assert_true(held(e, "X") && held(e, "Y") && held(e, "Z"));
    assert_int_equal(engine_actor(e, "a", 1, &(struct engine_actor){0}), -ENOENT);
    assert_int_equal(engine_actor(e, "b", 1, &(struct engine_actor){0}), -ENOENT);
    engine_free(e);
}

static void test_step_schedule(void **state)
{
    (void)state;
    run_step_schedule(0);
    run_step_schedule(1);
}

/* Times before the epoch: the cut is floored towards minus infinity. ms = 1.5 s, step 1 s:
 *   A -2001: cut floor(-3501) = -4000, next sweep at -4000 + 1500 + 1000 = -1500
 *   B -2500, and its reply B2 -2000: no sweep
 *   C  -200: cut floor(-1700) = -2000: A (-2001) goes; B's tree, filed when it ended at -2500,
 *            now ends exactly at the cut, which is not older than it: it stays.
 * A cut rounded towards zero (-1000) would take B's tree too. */
static void test_negative_times(void **state)
{
    (void)state;
    static const struct ev evs[] = {{"A", "a", NULL, NULL, -2001},
                                    {"B", "b", NULL, NULL, -2500},
                                    {"B2", "b", "B", NULL, -2000},
                                    {"C", "c", NULL, NULL, -200}};
    struct engine *e = new_engine(1500);

    for (int i = 0; i < 4; i++)
        assert_int_equal(send1(e, &evs[i]), EVENT_OK);
    expect_cut(e, -2000, 1, 1);
    assert_false(held(e, "A"));
    assert_true(held(e, "B") && held(e, "B2"));
    engine_free(e);
}

/* An evicted chain's ids come back. ms = 10 s: p0 <- p1 <- p2 at 100000..100200 (first sweep
 * cut 90000, next at 101000); q at 111000 sweeps to cut 101000 and evicts the chain. Then a
 * child of p1 hangs below a placeholder p1, p1's own event (with its old time, before the cut)
 * is new again and fills it, below a placeholder p0; p2 is new again; a second p2 is a
 * duplicate. */
static void test_evicted_ids_come_back(void **state)
{
    (void)state;
    static const struct ev chain[] = {{"p0", "a0", NULL, "claim:1", 100000},
                                      {"p1", "a1", "p0", NULL, 100100},
                                      {"p2", "a0", "p1", NULL, 100200},
                                      {"q", "b", NULL, NULL, 111000}};
    static const struct ev p3 = {"p3", "b", "p1", NULL, 111100};
    struct engine *e = new_engine(10000);
    struct engine_cascade c;
    struct engine_content ct;

    for (int i = 0; i < 4; i++)
        assert_int_equal(send1(e, &chain[i]), EVENT_OK);
    expect_cut(e, 101000, 1, 3);
    assert_false(held(e, "p0") || held(e, "p1") || held(e, "p2"));
    assert_int_equal(engine_actor(e, "a0", 2, &(struct engine_actor){0}), -ENOENT);
    assert_int_equal(engine_content(e, "claim:1", 7, &ct, NULL, 0), -ENOENT);

    assert_int_equal(send1(e, &p3), EVENT_OK);
    expect_below_placeholder(e, "p3", "p1", 1);

    assert_int_equal(send1(e, &chain[1]), EVENT_OK); /* p1 again: new, not a duplicate */
    assert_int_equal(engine_cascade(e, "p3", 2, &c), 0);
    assert_memory_equal(c.root, "p0", 2);
    assert_int_equal(c.size, 2);
    assert_int_equal(c.missing, 1);
    assert_int_equal(c.depth, 2);
    assert_int_equal(c.first_ts, 100100);
    assert_int_equal(c.last_ts, 111100);

    assert_int_equal(send1(e, &chain[2]), EVENT_OK);
    assert_int_equal(send1(e, &chain[2]), EVENT_DUP);
    assert_int_equal(engine_cascade(e, "p2", 2, &c), 0);
    assert_int_equal(c.size, 3);
    struct engine_actor a;
    assert_int_equal(engine_actor(e, "a0", 2, &a), 0);
    assert_int_equal(a.posts, 1);
    assert_int_equal(a.first_ts, 100200); /* its posts since it last had none held */
    assert_int_equal(engine_actor(e, "a1", 2, &a), 0);
    assert_int_equal(a.reach, 2); /* p2 and p3 */
    assert_int_equal(a.reshares_received, 2);
    assert_int_equal(a.amplifiers, 2); /* a0 and b */
    expect_cut(e, 101000, 1, 3);
    engine_free(e);
}

/* A late parent joins a cascade below a placeholder into an older one, and a later reply keeps
 * the joined cascade alive while a lone root of the same age goes. ms = 10 s:
 *   r 100000 (first sweep, cut 90000, next at 101000); s 100400, a lone root;
 *   c 100500, child of m (unknown: a placeholder); m 100300, child of r: joins c's tree into r's
 *   x 109000: cut 99000, nothing older; next sweep at 110000
 *   y 111600, child of c: the tree of r now ends at 111600; the sweep to cut 101000 evicts s
 *   only (r's tree ended at 100500 before y came). */
static void test_join_and_reply(void **state)
{
    (void)state;
    static const struct ev evs[] = {{"r", "a", NULL, NULL, 100000}, {"s", "b", NULL, NULL, 100400},
                                    {"c", "b", "m", NULL, 100500},  {"m", "a", "r", NULL, 100300},
                                    {"x", "c", NULL, NULL, 109000}, {"y", "c", "c", NULL, 111600}};
    struct engine *e = new_engine(10000);
    struct engine_cascade c;

    for (int i = 0; i < 6; i++)
        assert_int_equal(send1(e, &evs[i]), EVENT_OK);
    expect_cut(e, 101000, 1, 1);
    assert_false(held(e, "s"));
    assert_int_equal(engine_cascade(e, "y", 1, &c), 0);
    assert_memory_equal(c.root, "r", 1);
    assert_int_equal(c.size, 4);
    assert_int_equal(c.missing, 0);
    assert_int_equal(c.last_ts, 111600);
    engine_free(e);
}

/* A sweep in the middle of one engine_apply batch evicts a post that a later event of the same
 * batch names as its parent. engine_apply looks the parent up a few events ahead to prefetch
 * its record (stage_peek, then stage_near); the lookup made before the sweep must not be trusted
 * after it, when the record is freed (and not yet reused: the events between are duplicates).
 * ms = 10 s: P 100000 (alone: first sweep, cut 90000, next at 101000), then one batch: Q 111000
 * sweeps to cut 101000 and evicts P; five resends of Q; C, a reply to P, which must hang below
 * a placeholder for P. */
static void test_batch_names_evicted_parent(void **state)
{
    (void)state;
    static const struct ev first = {"P", "a", NULL, NULL, 100000};
    static const struct ev batch[] = {
        {"Q", "b", NULL, NULL, 111000}, {"Q", "b", NULL, NULL, 111000},
        {"Q", "b", NULL, NULL, 111000}, {"Q", "b", NULL, NULL, 111000},
        {"Q", "b", NULL, NULL, 111000}, {"Q", "b", NULL, NULL, 111000},
        {"C", "c", "P", NULL, 111010}};
    enum { N = sizeof(batch) / sizeof(batch[0]) };
    uint8_t outs[N];
    struct engine *e = new_engine(10000);

    assert_int_equal(send1(e, &first), EVENT_OK);
    assert_int_equal(send_batch(e, batch, N, outs), 2);
    assert_int_equal(outs[N - 1], EVENT_OK);
    expect_cut(e, 101000, 1, 1);
    expect_below_placeholder(e, "C", "P", 1);
    engine_free(e);
}

/* ---- random forests ---- */

/* Retentions of a few ms to 400 s: mostly 1-30 s (step 1 s), some of 128 s and more (steps of
 * 2-6 s), rarely a multiple of a second. */
static int64_t pick_retention(struct rng *r)
{
    uint32_t roll = rng_below(r, 100);

    if (roll < 5)
        return 1 + rng_below(r, 999);
    if (roll < 20)
        return 1000 + rng_below(r, 1000);
    if (roll < 88)
        return 2000 + rng_below(r, 28001);
    return 64000 + rng_below(r, 336001);
}

static const int64_t *g_ts; /* qsort has no context argument */

static int by_ts(const void *pa, const void *pb)
{
    int64_t a = g_ts[*(const uint32_t *)pa], b = g_ts[*(const uint32_t *)pb];
    return (a > b) - (a < b);
}

/* New times for the forest's posts: roots spread over span, a child mostly within half a
 * retention of its parent, sometimes much later (a tree kept alive across sweeps, or joined
 * late), sometimes before it (skewed clocks); then made unique, as the oracle's labels need. */
static void retime(struct forest *f, struct rng *r, int64_t ms, int64_t span)
{
    /* sometimes from 1970 on: the cut (newest - retention) is then negative, floored towards
     * minus infinity; event times themselves are never negative (bad_ts) */
    int64_t base = rng_chance(r, 12) ? 0 : 1700000000000LL + rng_below(r, 1000000);
    int64_t *ts = calloc(f->n + 1, sizeof(*ts));
    uint32_t *idx = calloc(f->n + 1, sizeof(*idx));

    for (uint32_t k = 0; k < f->n; k++) {
        int32_t p = f->nodes[k].parent;
        uint32_t roll = rng_below(r, 100);
        if (p < 0)
            ts[k] = base + rng_below(r, (uint32_t)span);
        else if (roll < 65)
            ts[k] = ts[p] + 1 + rng_below(r, (uint32_t)(ms / 2 + 1));
        else if (roll < 85)
            ts[k] = ts[p] + 1 + rng_below(r, (uint32_t)(2 * ms));
        else if (roll < 95)
            ts[k] = ts[p] + rng_below(r, (uint32_t)(5 * ms));
        else
            ts[k] = ts[p] - rng_below(r, (uint32_t)ms);
        if (ts[k] < 0)
            ts[k] = 0;
        idx[k] = k;
    }
    g_ts = ts;
    qsort(idx, f->n, sizeof(*idx), by_ts);
    for (uint32_t i = 1; i < f->n; i++)
        if (ts[idx[i]] <= ts[idx[i - 1]])
            ts[idx[i]] = ts[idx[i - 1]] + 1;
    for (uint32_t k = 0; k < f->n; k++)
        f->nodes[k].ts = ts[k];
    free(ts);
    free(idx);
}

/* Larger forests than the main test's (a few hundred posts over several retentions, so that
 * sweeps come often and trees live through several), some of 1500-3000 posts with many actors. */
static void pick_params(struct rng *r, struct forest_params *p)
{
    uint32_t roll = rng_below(r, 100);

    memset(p, 0, sizeof(*p));
    p->pad_ids = -1;
    if (roll < 35) {
        p->n = 1 + rng_below(r, 60);
    } else if (roll < 82) {
        p->n = 60 + rng_below(r, 340);
    } else if (roll < 97) {
        p->n = 400 + rng_below(r, 800);
        p->max_tree = 200;
    } else {
        p->n = 1500 + rng_below(r, 1500);
        p->max_tree = 60;
        p->actors = rng_chance(r, 50) ? 200 + rng_below(r, 400) : 0;
    }
}

static int pick_order(struct rng *r)
{
    uint32_t roll = rng_below(r, 100);

    if (roll < 35)
        return ORDER_TS;
    if (roll < 65)
        return ORDER_TS_LATE;
    if (roll < 80)
        return ORDER_SHUFFLE;
    return (int)rng_below(r, ORDER_COUNT);
}

static uint32_t g_persist_pct = 25;

static void run_iteration(uint64_t seed, uint32_t iter, int trace)
{
    struct forest_params fp;
    struct delivery_opts o;
    struct forest f;
    struct rng r;

    g_ctx = (struct ctx){.seed = seed, .iter = iter};
    rng_seed(&r, seed + 0x9e3779b97f4a7c15ULL * (iter + 1));
    pick_params(&r, &fp);
    forest_generate(&f, &r, &fp);
    int64_t ms = pick_retention(&r);
    retime(&f, &r, ms, ms * (3 + rng_below(&r, 8)));
    memset(&o, 0, sizeof(o));
    o.order = pick_order(&r);
    o.batch_max = rng_chance(&r, 30) ? 0 : 1 + rng_below(&r, 64);
    o.checkpoints = 3 + rng_below(&r, 6);
    o.noise_pct = 15;
    o.trace = trace;
    o.retention_ms = ms;
    o.persist_pct = g_persist_pct;
    if (trace)
        fprintf(stderr, "# iteration %u: %u posts, %u actors, retention %lld ms, order %s\n", iter,
                f.n, f.n_actors, (long long)ms, order_name(o.order));
    g_ctx.order = order_name(o.order);
    engine_free(deliver(&f, &r, &o));
    forest_free(&f);
}

static void test_random_forests(void **state)
{
    (void)state;
    g_persist_pct = (uint32_t)env_u64("RETENTION_PERSIST", g_persist_pct);
    uint64_t iters = run_forests(DEFAULT_SEED, DEFAULT_ITER, run_iteration);
    printf("property_retention: %llu sweeps evicted %llu cascades (%llu posts); %llu evicted "
           "posts resent; %llu checkpoints, %llu snapshots loaded and carried on\n",
           (unsigned long long)g_tally.sweeps, (unsigned long long)g_tally.evicted_cascades,
           (unsigned long long)g_tally.evicted_posts, (unsigned long long)g_tally.resends,
           (unsigned long long)g_tally.checkpoints, (unsigned long long)g_tally.loads);
    /* a schedule that never evicts, or noise that never resends, would test little */
    if (iters >= 50)
        assert_true(g_tally.evicted_cascades > iters && g_tally.resends > iters / 4);
}

int main(void)
{
    g_replay = (struct replay){"RETENTION", "property_retention"};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_schedule),
        cmocka_unit_test(test_negative_times),
        cmocka_unit_test(test_evicted_ids_come_back),
        cmocka_unit_test(test_join_and_reply),
        cmocka_unit_test(test_batch_names_evicted_parent),
        cmocka_unit_test(test_random_forests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
