/* Unit tests of an actor's neighbourhood (engine.h: engine_actor_links, engine_actor_cascades) on
 * a hand-worked scenario: self-reshares left out, a late parent that fills a placeholder and joins
 * its cascade into another (the link through it appears then), a placeholder that stays, ties
 * broken by name, limits and directions, and the same answers whatever the arrival order. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cascade/engine.h"

/* One event: post, parent ("" for none), actor, ts, actor_type (NULL for none). */
struct ev {
    const char *post, *parent, *actor;
    int64_t ts;
    const char *type;
};

static void str_field(struct event_field *f, const char *s)
{
    if (!s)
        return;
    f->type = EVF_STR;
    f->str = s;
    f->len = (uint32_t)strlen(s);
}

static void apply(struct engine *e, const struct ev *x)
{
    struct event_raw raw;
    memset(&raw, 0, sizeof(raw));
    str_field(&raw.post, x->post);
    str_field(&raw.actor, x->actor);
    if (*x->parent)
        str_field(&raw.parent, x->parent);
    raw.ts.type = EVF_UINT;
    raw.ts.u = (uint64_t)x->ts;
    str_field(&raw.actor_type, x->type);
    assert_int_equal(engine_apply_raw(e, &raw), EVENT_OK);
}

/* x is the actor under study. Comments: what each event adds to x's links. */
static const struct ev scenario[] = {
    {"r1", "", "x", 1, NULL},           /* cascade r1 */
    {"s1", "r1", "a", 2, NULL},         /* in a */
    {"s2", "r1", "a", 3, NULL},         /* in a */
    {"s3", "r1", "x", 4, NULL},         /* a self-reshare: nothing */
    {"s4", "s3", "b", 5, NULL},         /* in b */
    {"r2", "", "b", 6, NULL},           /* cascade r2 */
    {"t1", "r2", "x", 7, NULL},         /* out b */
    {"t2", "t1", "c", 8, NULL},         /* in c */
    {"u2", "u1", "x", 9, NULL},         /* below placeholder u1: nothing yet */
    {"u3", "u2", "a", 10, NULL},        /* in a */
    {"u1", "r2", "pg", 11, "page"},     /* fills u1, joins its cascade into r2: out pg */
    {"t3", "r2", "x", 12, NULL},        /* out b */
    {"q0", "", "c", 13, NULL},          /* cascade q0 */
    {"q1", "q0", "x", 14, NULL},        /* out c */
    {"q2", "q0", "a", 15, NULL},        /* */
    {"q3", "q0", "b", 16, NULL},        /* */
    {"q4", "q0", "b", 17, NULL},        /* */
    {"v2", "v-missing", "x", 18, NULL}, /* below a placeholder that stays: nothing */
    {"v3", "v2", "x", 19, NULL},        /* a self-reshare: nothing */
    {"w1", "", "x", 20, NULL},          /* a singleton cascade */
};
#define NSCENARIO (sizeof(scenario) / sizeof(scenario[0]))

struct want_link {
    int dir;
    const char *actor;
    uint32_t weight;
};

static int str_is(const char *s, uint32_t len, const char *want)
{
    return len == strlen(want) && memcmp(s, want, len) == 0;
}

static void check_links(struct engine *e, const char *id, int dirs, uint32_t limit,
                        const struct want_link *want, int n)
{
    struct engine_link out[16];
    assert_true(2 * limit <= 16);
    int k = engine_actor_links(e, id, (uint32_t)strlen(id), dirs, limit, out);
    if (k != n)
        fail_msg("links of %s (dirs %d, limit %u): %d records, want %d", id, dirs, limit, k, n);
    for (int i = 0; i < n; i++) {
        if (out[i].direction != want[i].dir ||
            !str_is(out[i].actor, out[i].actor_len, want[i].actor) ||
            out[i].weight != want[i].weight)
            fail_msg("links of %s [%d]: %d %.*s %u, want %d %s %u", id, i, out[i].direction,
                     (int)out[i].actor_len, out[i].actor, out[i].weight, want[i].dir, want[i].actor,
                     want[i].weight);
        struct engine_actor a;
        assert_int_equal(engine_actor(e, want[i].actor, (uint32_t)strlen(want[i].actor), &a), 0);
        assert_int_equal(out[i].reach, a.reach);
        assert_int_equal(out[i].actor_id, a.id);
        assert_int_equal(out[i].actor_type,
                         strcmp(want[i].actor, "pg") == 0 ? EVENT_ACTOR_PAGE : EVENT_ACTOR_ACCOUNT);
    }
}

struct want_cascade {
    const char *root;
    uint32_t size, missing, actor_posts;
};

static void check_cascades(struct engine *e, const char *id, uint32_t limit,
                           const struct want_cascade *want, int n)
{
    struct engine_actor_cascade out[8];
    assert_true(limit <= 8);
    int k = engine_actor_cascades(e, id, (uint32_t)strlen(id), out, limit);
    if (k != n)
        fail_msg("cascades of %s (limit %u): %d records, want %d", id, limit, k, n);
    for (int i = 0; i < n; i++) {
        const struct engine_cascade *c = &out[i].cascade;
        if (!str_is(c->root, c->root_len, want[i].root) || c->size != want[i].size ||
            c->missing != want[i].missing || out[i].actor_posts != want[i].actor_posts)
            fail_msg("cascades of %s [%d]: %.*s size %u missing %u actor_posts %u, want %s %u %u "
                     "%u",
                     id, i, (int)c->root_len, c->root, c->size, c->missing, out[i].actor_posts,
                     want[i].root, want[i].size, want[i].missing, want[i].actor_posts);
        /* the same record as the cascade query gives */
        struct engine_cascade direct;
        assert_int_equal(engine_cascade(e, want[i].root, (uint32_t)strlen(want[i].root), &direct),
                         0);
        assert_int_equal(direct.id, c->id);
        assert_int_equal(direct.wiener, c->wiener);
        assert_int_equal(direct.unique_actors, c->unique_actors);
    }
}

static const struct want_link x_links[] = {
    {ENGINE_LINK_IN, "a", 3},  {ENGINE_LINK_IN, "b", 1},  {ENGINE_LINK_IN, "c", 1},
    {ENGINE_LINK_OUT, "b", 2}, {ENGINE_LINK_OUT, "c", 1}, {ENGINE_LINK_OUT, "pg", 1},
};

static const struct want_cascade x_cascades[] = {
    {"r2", 7, 0, 3}, {"q0", 5, 0, 1}, {"r1", 5, 0, 2}, {"v-missing", 2, 1, 2}, {"w1", 1, 0, 1},
};

static void check_scenario(struct engine *e)
{
    check_links(e, "x", ENGINE_LINK_BOTH, 5, x_links, 6);
    check_links(e, "x", ENGINE_LINK_IN, 5, x_links, 3);
    check_links(e, "x", ENGINE_LINK_OUT, 5, x_links + 3, 3);
    const struct want_link x_top1[] = {{ENGINE_LINK_IN, "a", 3}, {ENGINE_LINK_OUT, "b", 2}};
    check_links(e, "x", ENGINE_LINK_BOTH, 1, x_top1, 2);
    /* ties at the cut: the smaller name stays */
    check_links(e, "x", ENGINE_LINK_BOTH, 2,
                (const struct want_link[]){x_links[0], x_links[1], x_links[3], x_links[4]}, 4);

    /* c: reshared by b twice, by a and by x once each; reshares x once */
    const struct want_link c_links[] = {{ENGINE_LINK_IN, "b", 2},
                                        {ENGINE_LINK_IN, "a", 1},
                                        {ENGINE_LINK_IN, "x", 1},
                                        {ENGINE_LINK_OUT, "x", 1}};
    check_links(e, "c", ENGINE_LINK_BOTH, 5, c_links, 4);
    /* pg: one post, a reshare of b's, reshared by x */
    const struct want_link pg_links[] = {{ENGINE_LINK_IN, "x", 1}, {ENGINE_LINK_OUT, "b", 1}};
    check_links(e, "pg", ENGINE_LINK_BOTH, 5, pg_links, 2);

    check_cascades(e, "x", 8, x_cascades, 5);
    check_cascades(e, "x", 2, x_cascades, 2);
    const struct want_cascade a_cascades[] = {{"r2", 7, 0, 1}, {"q0", 5, 0, 1}, {"r1", 5, 0, 2}};
    check_cascades(e, "a", 8, a_cascades, 3);

    /* every post and cascade of x is counted once: the actor record agrees */
    struct engine_actor a;
    assert_int_equal(engine_actor(e, "x", 1, &a), 0);
    uint32_t posts = 0;
    for (size_t i = 0; i < sizeof(x_cascades) / sizeof(x_cascades[0]); i++)
        posts += x_cascades[i].actor_posts;
    assert_int_equal(posts, a.posts);
    assert_int_equal(a.cascades, 5);
}

static void test_in_order(void **state)
{
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    for (size_t i = 0; i < NSCENARIO; i++)
        apply(e, &scenario[i]);
    check_scenario(e);
    engine_free(e);
}

/* Backwards: every reshare arrives before its parent (placeholders everywhere, joins). */
static void test_reversed(void **state)
{
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    for (size_t i = NSCENARIO; i-- > 0;)
        apply(e, &scenario[i]);
    check_scenario(e);
    engine_free(e);
}

/* Before u1 arrives, x's post u2 hangs below a placeholder: no out link to pg yet, and the
 * cascade below u1 is a cascade of its own. */
static void test_before_the_late_parent(void **state)
{
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    for (size_t i = 0; i < NSCENARIO; i++)
        if (strcmp(scenario[i].post, "u1") != 0)
            apply(e, &scenario[i]);
    const struct want_link out[] = {{ENGINE_LINK_OUT, "b", 2}, {ENGINE_LINK_OUT, "c", 1}};
    check_links(e, "x", ENGINE_LINK_OUT, 5, out, 2);
    const struct want_cascade casc[] = {{"q0", 5, 0, 1}, {"r1", 5, 0, 2},        {"r2", 4, 0, 2},
                                        {"u1", 2, 1, 1}, {"v-missing", 2, 1, 2}, {"w1", 1, 0, 1}};
    check_cascades(e, "x", 8, casc, 6);
    engine_free(e);
}

static void test_errors(void **state)
{
    struct engine *e;
    struct engine_link links[4];
    struct engine_actor_cascade casc[2];
    assert_int_equal(engine_new(&e), 0);
    assert_int_equal(engine_actor_links(e, "x", 1, ENGINE_LINK_BOTH, 2, links), -ENOENT);
    assert_int_equal(engine_actor_cascades(e, "x", 1, casc, 2), -ENOENT);
    for (size_t i = 0; i < NSCENARIO; i++)
        apply(e, &scenario[i]);
    assert_int_equal(engine_actor_links(e, "nobody", 6, ENGINE_LINK_BOTH, 2, links), -ENOENT);
    assert_int_equal(engine_actor_cascades(e, "nobody", 6, casc, 2), -ENOENT);
    /* a post id or a placeholder is not an actor */
    assert_int_equal(engine_actor_cascades(e, "u1", 2, casc, 2), -ENOENT);
    assert_int_equal(engine_actor_links(e, "x", 1, 0, 2, links), -EINVAL);
    assert_int_equal(engine_actor_links(e, "x", 1, 4, 2, links), -EINVAL);
    assert_int_equal(engine_actor_links(e, "x", 1, ENGINE_LINK_BOTH, 0, links), 0);
    assert_int_equal(engine_actor_cascades(e, "x", 1, casc, 0), 0);
    /* an actor with no links at all: only self-reshares */
    struct ev solo[] = {{"m1", "", "me", 30, NULL}, {"m2", "m1", "me", 31, NULL}};
    apply(e, &solo[0]);
    apply(e, &solo[1]);
    assert_int_equal(engine_actor_links(e, "me", 2, ENGINE_LINK_BOTH, 2, links), 0);
    assert_int_equal(engine_actor_cascades(e, "me", 2, casc, 2), 1);
    assert_int_equal(casc[0].actor_posts, 2);
    engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_reversed),
        cmocka_unit_test(test_before_the_late_parent),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
