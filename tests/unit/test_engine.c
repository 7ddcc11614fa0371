/* Engine unit tests on small hand-worked cascades: the DESIGN §3 numbers for in-order and
 * late-parent deliveries, duplicates, rejections and top-k lists. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cascade/engine.h"

/* One event in test shorthand: post, parent ("" for none), actor, ts; optional label/content. */
struct ev {
    const char *post, *parent, *actor;
    int64_t ts;
    const char *label, *content, *type;
};

static void str_field(struct event_field *f, const char *s)
{
    if (!s)
        return;
    f->type = EVF_STR;
    f->str = s;
    f->len = (uint32_t)strlen(s);
}

static int apply(struct engine *e, struct ev x)
{
    struct event_raw raw;
    memset(&raw, 0, sizeof(raw));
    str_field(&raw.post, x.post);
    str_field(&raw.actor, x.actor);
    if (x.parent && *x.parent)
        str_field(&raw.parent, x.parent);
    raw.ts.type = EVF_UINT;
    raw.ts.u = (uint64_t)x.ts;
    str_field(&raw.label, x.label);
    str_field(&raw.content, x.content);
    str_field(&raw.actor_type, x.type);
    return engine_apply_raw(e, &raw);
}

/* Engine strings are (pointer, length), not NUL-terminated. */
#define assert_str(ptr, len, want)                                                                 \
    do {                                                                                           \
        assert_int_equal((len), strlen(want));                                                     \
        assert_memory_equal((ptr), (want), strlen(want));                                          \
    } while (0)

static struct engine_cascade cascade_of(struct engine *e, const char *post)
{
    struct engine_cascade c;
    assert_int_equal(engine_cascade(e, post, (uint32_t)strlen(post), &c), 0);
    return c;
}

static struct engine_actor actor_of(struct engine *e, const char *id)
{
    struct engine_actor a;
    assert_int_equal(engine_actor(e, id, (uint32_t)strlen(id), &a), 0);
    return a;
}

/* The scenario of shared/conformance: a ─ b ─ c ─ d, a ─ e ─ 7 ─ f, with c arriving after d. */
static const struct ev scenario[] = {
    {"a", "", "alice", 1000, "false", "u1", NULL},
    {"b", "a", "bob", 2000, NULL, NULL, NULL},
    {"d", "c", "dave", 4000, NULL, NULL, NULL},
    {"c", "b", "carol", 3000, NULL, NULL, NULL},
    {"e", "a", "bob", 5000, NULL, NULL, NULL},
    {"7", "e", "zed", 6000, NULL, NULL, NULL},
    {"f", "7", "alice", 7000, NULL, NULL, NULL},
    {"g", "", "page1", 8000, "true", "u2", "page"},
    {"h", "g", "alice", 9000, NULL, NULL, NULL},
    {"i", "never-arrives", "nobody", 9500, NULL, NULL, NULL},
};

static void check_scenario(struct engine *e)
{
    struct engine_cascade c = cascade_of(e, "d");
    assert_str(c.root, c.root_len, "a");
    assert_int_equal(c.size, 7);
    assert_int_equal(c.missing, 0);
    assert_int_equal(c.depth, 3);
    assert_int_equal(c.max_breadth, 2);
    assert_int_equal(c.wiener, 56);
    assert_true(c.structural_virality > 8.0 / 3 - 1e-12 && c.structural_virality < 8.0 / 3 + 1e-12);
    assert_int_equal(c.unique_actors, 5);
    assert_int_equal(c.first_ts, 1000);
    assert_int_equal(c.last_ts, 7000);
    assert_str(c.label, c.label_len, "false");
    assert_str(c.content, c.content_len, "u1");

    c = cascade_of(e, "never-arrives");
    assert_int_equal(c.size, 1);
    assert_int_equal(c.missing, 1);
    assert_int_equal(c.depth, 1);
    assert_null(c.root_actor);

    struct engine_actor a = actor_of(e, "alice");
    assert_int_equal(a.posts, 3);
    assert_int_equal(a.roots, 1);
    assert_int_equal(a.shares, 2);
    assert_int_equal(a.reshares_received, 2);
    assert_int_equal(a.amplifiers, 1);
    assert_int_equal(a.reach, 6);
    assert_int_equal(a.cascades, 2);
    a = actor_of(e, "bob");
    assert_int_equal(a.reshares_received, 2);
    assert_int_equal(a.amplifiers, 2);
    assert_int_equal(a.reach, 4);
    a = actor_of(e, "page1");
    assert_int_equal(a.actor_type, EVENT_ACTOR_PAGE);
    assert_int_equal(a.reach, 1);
}

static void test_scenario(void **state)
{
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    for (size_t i = 0; i < sizeof(scenario) / sizeof(scenario[0]); i++)
        assert_int_equal(apply(e, scenario[i]), EVENT_OK);
    assert_int_equal(apply(e, scenario[1]), EVENT_DUP);
    check_scenario(e);
    struct engine_stats st;
    engine_get_stats(e, &st);
    assert_int_equal(st.posts, 10);
    assert_int_equal(st.placeholders, 1);
    assert_int_equal(st.cascades, 3);
    assert_int_equal(st.outcomes[EVENT_DUP], 1);
    engine_free(e);
}

/* Delivered backwards: every event but the roots arrives before its parent. */
static void test_scenario_reversed(void **state)
{
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    size_t n = sizeof(scenario) / sizeof(scenario[0]);
    for (size_t i = n; i-- > 0;)
        assert_int_equal(apply(e, scenario[i]), EVENT_OK);
    check_scenario(e);
    engine_free(e);
}

static void test_cycle_rejected(void **state)
{
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    assert_int_equal(apply(e, (struct ev){"q", "p", "x", 1}), EVENT_OK); /* p placeholder */
    assert_int_equal(apply(e, (struct ev){"r", "q", "y", 2}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"p", "r", "z", 3}), EVENT_REJ_CYCLE);
    struct engine_cascade c = cascade_of(e, "r");
    assert_str(c.root, c.root_len, "p");
    assert_int_equal(c.size, 2);
    assert_int_equal(c.missing, 1);
    assert_int_equal(engine_actor(e, "z", 1, &(struct engine_actor){0}), -ENOENT);
    engine_free(e);
}

static void test_top_cascades(void **state)
{
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    for (size_t i = 0; i < sizeof(scenario) / sizeof(scenario[0]); i++)
        apply(e, scenario[i]);
    struct engine_cascade top[4];
    int n = engine_top_cascades(e, ENGINE_BY_SIZE, NULL, top, 4);
    assert_int_equal(n, 3);
    assert_str(top[0].root, top[0].root_len, "a");
    assert_str(top[1].root, top[1].root_len, "g");
    struct engine_cascade_filter f = {.label = "true", .label_len = 4};
    n = engine_top_cascades(e, ENGINE_BY_SIZE, &f, top, 4);
    assert_int_equal(n, 1);
    assert_str(top[0].root, top[0].root_len, "g");
    struct engine_actor ta[2];
    n = engine_top_actors(e, ENGINE_BY_REACH, 0, ta, 2);
    assert_int_equal(n, 2);
    assert_str(ta[0].name, ta[0].name_len, "alice");
    assert_str(ta[1].name, ta[1].name_len, "bob");
    engine_free(e);
}

static struct engine_content content_of(struct engine *e, const char *key, int want_top,
                                        struct engine_cascade *top, uint32_t limit)
{
    struct engine_content c;
    assert_int_equal(engine_content(e, key, (uint32_t)strlen(key), &c, top, limit), want_top);
    assert_str(c.key, c.key_len, key);
    return c;
}

/* A post carries its own content, else its root's (not its parent's). */
static void test_content_own_and_root(void **state)
{
    struct engine *e;
    struct engine_cascade top[4];
    assert_int_equal(engine_new(&e), 0);
    assert_int_equal(apply(e, (struct ev){"a", "", "ann", 1000, NULL, "u1"}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"b", "a", "bob", 2000}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"c", "b", "cat", 3000, NULL, "u2"}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"d", "c", "bob", 4000}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"x", "", "ann", 500, NULL, "u2"}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"y", "x", "ann", 600, NULL, "u2"}), EVENT_OK);
    struct engine_content c = content_of(e, "u1", 1, top, 4);
    assert_int_equal(c.posts, 3); /* a, b, d */
    assert_int_equal(c.cascades, 1);
    assert_int_equal(c.unique_actors, 2);
    assert_int_equal(c.first_ts, 1000);
    assert_int_equal(c.last_ts, 4000);
    assert_str(top[0].root, top[0].root_len, "a");
    c = content_of(e, "u2", 2, top, 4);
    assert_int_equal(c.posts, 3); /* c, x, y */
    assert_int_equal(c.cascades, 2);
    assert_int_equal(c.unique_actors, 2);
    assert_int_equal(c.first_ts, 500);
    assert_int_equal(c.last_ts, 3000);
    assert_str(top[0].root, top[0].root_len, "a"); /* size 4 before size 2 */
    assert_str(top[1].root, top[1].root_len, "x");
    assert_int_equal(top[0].size, 4);
    content_of(e, "u2", 1, top, 1);
    assert_str(top[0].root, top[0].root_len, "a");
    content_of(e, "u2", 0, NULL, 0);
    struct engine_content none;
    assert_int_equal(engine_content(e, "u3", 2, &none, top, 4), -ENOENT);
    assert_int_equal(engine_content(e, "", 0, &none, top, 4), -ENOENT);
    engine_free(e);
}

/* Under a placeholder a post without content has none; it takes the root's once the missing
 * parent arrives, and the new root's again when that one joins another cascade. */
static void test_content_late_parents(void **state)
{
    struct engine *e;
    struct engine_cascade top[4];
    struct engine_content c;
    assert_int_equal(engine_new(&e), 0);
    assert_int_equal(apply(e, (struct ev){"x", "p", "ann", 2000}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"y", "x", "bob", 3000, NULL, "u1"}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"z", "y", "cat", 3500}), EVENT_OK);
    c = content_of(e, "u1", 1, top, 4);
    assert_int_equal(c.posts, 1); /* y only: z takes its root's, and p is a placeholder */
    assert_str(top[0].root, top[0].root_len, "p");
    assert_int_equal(apply(e, (struct ev){"p", "q", "dan", 1500, NULL, "u2"}), EVENT_OK);
    c = content_of(e, "u2", 1, top, 4);
    assert_int_equal(c.posts, 1); /* p, whose root is now the placeholder q */
    assert_int_equal(apply(e, (struct ev){"q", "", "eve", 1000, NULL, "u2"}), EVENT_OK);
    c = content_of(e, "u2", 1, top, 4);
    assert_int_equal(c.posts, 4); /* q, p, x, z */
    assert_int_equal(c.first_ts, 1000);
    assert_int_equal(c.last_ts, 3500);
    assert_str(top[0].root, top[0].root_len, "q");
    /* a cascade whose root has u1 takes the whole tree in by q's join below it */
    assert_int_equal(apply(e, (struct ev){"r", "", "fay", 500, NULL, "u1"}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"r2", "r", "fay", 600}), EVENT_OK);
    c = content_of(e, "u1", 2, top, 4);
    assert_int_equal(c.posts, 3); /* r, r2; y */
    assert_int_equal(apply(e, (struct ev){"q", "r2", "eve", 1000, NULL, "u2"}), EVENT_DUP);
    engine_free(e);
    /* the same, with q's event naming r2 as its parent */
    assert_int_equal(engine_new(&e), 0);
    assert_int_equal(apply(e, (struct ev){"x", "p", "ann", 2000}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"y", "x", "bob", 3000, NULL, "u1"}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"p", "q", "dan", 1500, NULL, "u2"}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"z", "y", "cat", 3500}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"r", "", "fay", 500, NULL, "u1"}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"r2", "r", "fay", 600}), EVENT_OK);
    assert_int_equal(apply(e, (struct ev){"q", "r2", "eve", 1000}), EVENT_OK);
    c = content_of(e, "u1", 1, top, 4);
    assert_int_equal(c.posts, 6); /* r, r2, q, x, y, z: not p, which has its own */
    assert_int_equal(c.cascades, 1);
    assert_int_equal(c.unique_actors, 5); /* fay twice */
    assert_str(top[0].root, top[0].root_len, "r");
    assert_int_equal(top[0].size, 7);
    c = content_of(e, "u2", 1, top, 4);
    assert_int_equal(c.posts, 1);
    assert_int_equal(c.first_ts, 1500);
    engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenario),
        cmocka_unit_test(test_scenario_reversed),
        cmocka_unit_test(test_cycle_rejected),
        cmocka_unit_test(test_top_cascades),
        cmocka_unit_test(test_content_own_and_root),
        cmocka_unit_test(test_content_late_parents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
