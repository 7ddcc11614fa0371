/* engine_top_growth on small hand-made streams: the window's edges to the millisecond (inside a
 * second and on its boundary, before 1970 too), events out of ts order, the horizon dropping old
 * seconds, late parents joining counted cascades, filters, ties and bad windows. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cascade/engine.h"

#define H ENGINE_GROWTH_HORIZON_MS

/* Sends one event through engine_apply: post, parent (NULL: a root), ts, label, content. */
static int send(struct engine *e, const char *post, const char *parent, int64_t ts,
                const char *label, const char *content)
{
    struct event_raw raw = {0};
    struct event ev;
    uint8_t out;
    raw.post = (struct event_field){.type = EVF_STR, .str = post, .len = (uint32_t)strlen(post)};
    raw.actor = (struct event_field){.type = EVF_STR, .str = "u", .len = 1};
    /* a negative ts is bad_ts at ingest; the engine still applies one that a WAL from before
     * that check holds, so it goes in after validation */
    raw.ts = (struct event_field){.type = EVF_UINT, .u = ts < 0 ? 0 : (uint64_t)ts};
    if (parent)
        raw.parent =
            (struct event_field){.type = EVF_STR, .str = parent, .len = (uint32_t)strlen(parent)};
    if (label)
        raw.label = (struct event_field){.type = EVF_STR, .str = label, .len = strlen(label)};
    if (content)
        raw.content = (struct event_field){.type = EVF_STR, .str = content, .len = strlen(content)};
    assert_int_equal(event_validate(&raw, &ev), EVENT_OK);
    ev.ts = ts;
    engine_apply(e, &ev, 1, &out);
    return out;
}

#define SEND(e, ...) assert_int_equal(send(e, __VA_ARGS__), EVENT_OK)

/* The growth of the cascade rooted at root within window, or 0 when it is not listed. */
static uint64_t growth_of(struct engine *e, int64_t window, const char *root)
{
    struct engine_cascade top[16];
    int n = engine_top_growth(e, window, NULL, top, 16);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        assert_true(top[i].growth > 0);
        if (top[i].root_len == strlen(root) && memcmp(top[i].root, root, top[i].root_len) == 0)
            return top[i].growth;
    }
    return 0;
}

static struct engine *new_engine(void)
{
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    return e;
}

/* newest 10000: a post exactly window_ms before it counts, one a millisecond older does not,
 * whether the window starts on a second's boundary (7000) or inside one (7400). */
static void test_window_edges(void **state)
{
    struct engine *e = new_engine();
    SEND(e, "r", NULL, 6999, NULL, NULL);
    SEND(e, "a", "r", 7000, NULL, NULL);
    SEND(e, "b", "r", 7399, NULL, NULL);
    SEND(e, "c", "r", 7400, NULL, NULL);
    SEND(e, "d", "r", 10000, NULL, NULL);
    assert_int_equal(growth_of(e, 3001, "r"), 5); /* from 6999 */
    assert_int_equal(growth_of(e, 3000, "r"), 4); /* from 7000 */
    assert_int_equal(growth_of(e, 2999, "r"), 3); /* from 7001 */
    assert_int_equal(growth_of(e, 2601, "r"), 3); /* from 7399 */
    assert_int_equal(growth_of(e, 2600, "r"), 2); /* from 7400 */
    assert_int_equal(growth_of(e, 2599, "r"), 1);
    assert_int_equal(growth_of(e, 1, "r"), 1);
    /* seconds counted by the queries above take later arrivals too */
    SEND(e, "f", "r", 7000, NULL, NULL);
    SEND(e, "g", "r", 9999, NULL, NULL);
    assert_int_equal(growth_of(e, 3000, "r"), 6);
    assert_int_equal(growth_of(e, 1, "r"), 2);
    struct engine_stats st;
    engine_get_stats(e, &st);
    assert_int_equal(st.newest_ts, 10000);
    engine_free(e);
}

/* Consecutive post ids in one second are kept as a run, which grows after a query counted it. */
static void test_counted_run_grows(void **state)
{
    struct engine *e = new_engine();
    SEND(e, "r", NULL, 20000, NULL, NULL);
    assert_int_equal(growth_of(e, 1000, "r"), 1);
    SEND(e, "a", "r", 20001, NULL, NULL);
    assert_int_equal(growth_of(e, 1000, "r"), 2);
    SEND(e, "b", "r", 20002, NULL, NULL);
    assert_int_equal(growth_of(e, 1000, "r"), 3);
    SEND(e, "c", "r", 20003, NULL, NULL);
    SEND(e, "d", "r", 20004, NULL, NULL);
    assert_int_equal(growth_of(e, 1000, "r"), 5);
    assert_int_equal(growth_of(e, 2, "r"), 3); /* the run read post by post */
    engine_free(e);
}

/* The same edges before 1970: seconds are floor(ts / 1000). */
static void test_negative_times(void **state)
{
    struct engine *e = new_engine();
    SEND(e, "r", NULL, -1001, NULL, NULL);
    SEND(e, "a", "r", -1000, NULL, NULL);
    SEND(e, "b", "r", -1, NULL, NULL);
    SEND(e, "c", "r", 0, NULL, NULL);
    assert_int_equal(growth_of(e, 1001, "r"), 4);
    assert_int_equal(growth_of(e, 1000, "r"), 3);
    assert_int_equal(growth_of(e, 999, "r"), 2);
    assert_int_equal(growth_of(e, 1, "r"), 2);
    struct engine_stats st;
    engine_get_stats(e, &st);
    assert_int_equal(st.newest_ts, 0);
    engine_free(e);
}

/* Events far from ts order: the newest is the largest ts, and late ones land in old seconds. */
static void test_out_of_order(void **state)
{
    struct engine *e = new_engine();
    struct engine_stats st;
    engine_get_stats(e, &st);
    assert_int_equal(st.newest_ts, 0);
    SEND(e, "r", NULL, 50000, NULL, NULL);
    SEND(e, "a", "r", 20000, NULL, NULL);
    assert_int_equal(growth_of(e, 10000, "r"), 1);
    assert_int_equal(growth_of(e, 30000, "r"), 2);
    SEND(e, "b", "r", 45000, NULL, NULL);
    SEND(e, "c", "r", 39999, NULL, NULL);
    SEND(e, "d", "r", 40000, NULL, NULL);
    assert_int_equal(growth_of(e, 10000, "r"), 3);
    assert_int_equal(growth_of(e, 30000, "r"), 5);
    engine_get_stats(e, &st);
    assert_int_equal(st.newest_ts, 50000);
    engine_free(e);
}

/* A post exactly the horizon before the newest still counts for the widest window; once the
 * newest moves on it is gone, and a post older than the horizon is never counted. */
static void test_horizon(void **state)
{
    struct engine *e = new_engine();
    struct engine_stats before, after;
    SEND(e, "r", NULL, 1000, NULL, NULL);
    SEND(e, "s", NULL, 1500, NULL, NULL);
    SEND(e, "a", "r", 1000 + H, NULL, NULL);
    assert_int_equal(growth_of(e, H, "r"), 2);
    assert_int_equal(growth_of(e, H, "s"), 1);
    assert_int_equal(growth_of(e, H - 1, "r"), 1);
    SEND(e, "b", "r", 1001 + H, NULL, NULL);
    assert_int_equal(growth_of(e, H, "r"), 2);
    assert_int_equal(growth_of(e, H, "s"), 1);
    SEND(e, "old", "s", 1000, NULL, NULL); /* older than the horizon on arrival */
    assert_int_equal(growth_of(e, H, "s"), 1);
    SEND(e, "edge", "r", 1001, NULL, NULL); /* exactly the horizon before the newest */
    assert_int_equal(growth_of(e, H, "r"), 3);
    SEND(e, "c", "r", 1501 + H, NULL, NULL);
    assert_int_equal(growth_of(e, H, "s"), 0);
    assert_int_equal(growth_of(e, H, "r"), 3);
    /* a jump far past the ring drops every second there is */
    engine_get_stats(e, &before);
    SEND(e, "z", NULL, 1000 + 40 * H, NULL, NULL);
    engine_get_stats(e, &after);
    assert_true(after.bytes < before.bytes);
    assert_int_equal(growth_of(e, H, "r"), 0);
    assert_int_equal(growth_of(e, H, "z"), 1);
    /* and the ring keeps working from there, on both sides of the new newest */
    SEND(e, "y", "z", 999 + 40 * H, NULL, NULL);
    SEND(e, "x", "z", 1000 + 41 * H, NULL, NULL);
    assert_int_equal(growth_of(e, H, "z"), 2);
    assert_int_equal(growth_of(e, 1, "z"), 1);
    engine_free(e);
}

/* A placeholder-rooted cascade, counted by a query, joins another when the missing parent
 * arrives: its counts belong to the cascade it joined. */
static void test_join(void **state)
{
    struct engine *e = new_engine();
    struct engine_cascade top[4];
    SEND(e, "r", NULL, 1000, NULL, NULL);
    SEND(e, "c", "p", 2500, NULL, NULL); /* under placeholder p */
    SEND(e, "d", "c", 3000, NULL, NULL);
    SEND(e, "e", "q", 3500, NULL, NULL); /* under placeholder q */
    assert_int_equal(engine_top_growth(e, 10000, NULL, top, 4), 3);
    assert_int_equal(growth_of(e, 10000, "p"), 2);
    SEND(e, "p", "r", 4000, NULL, NULL); /* p joins r's cascade */
    assert_int_equal(engine_top_growth(e, 10000, NULL, top, 4), 2);
    assert_int_equal(growth_of(e, 10000, "r"), 4);
    assert_int_equal(growth_of(e, 10000, "p"), 0);
    assert_int_equal(growth_of(e, 1600, "r"), 3); /* from 2400, inside a second: c, d, p */
    SEND(e, "q", "c", 4500, NULL, NULL);          /* and q's cascade joins below c */
    assert_int_equal(engine_top_growth(e, 10000, NULL, top, 4), 1);
    assert_int_equal(top[0].growth, 6);
    assert_int_equal(top[0].size, 6);
    SEND(e, "s", "t", 5000, NULL, NULL); /* a reroot keeps its cascade */
    SEND(e, "t", "u", 5001, NULL, NULL);
    assert_int_equal(growth_of(e, 10000, "u"), 2);
    engine_free(e);
}

static void test_filters_and_ties(void **state)
{
    struct engine *e = new_engine();
    struct engine_cascade top[8], c;
    SEND(e, "old", NULL, 100, "false", "url1"); /* active only long ago */
    SEND(e, "a", NULL, 5000, "false", "url1");
    SEND(e, "b", NULL, 5100, "true", "url2");
    SEND(e, "a1", "a", 6000, NULL, NULL);
    SEND(e, "b1", "b", 6100, NULL, NULL);
    SEND(e, "c", NULL, 6200, NULL, NULL);
    SEND(e, "c1", "c", 6300, NULL, NULL);
    SEND(e, "c2", "c", 6400, NULL, NULL);
    SEND(e, "old1", "old", 6500, NULL, NULL);
    int n = engine_top_growth(e, 2000, NULL, top, 8);
    assert_int_equal(n, 4);
    assert_memory_equal(top[0].root, "c", 1);
    assert_int_equal(top[0].growth, 3);
    assert_memory_equal(top[1].root, "a", 1); /* a, b: 2 each, a older */
    assert_memory_equal(top[2].root, "b", 1);
    assert_memory_equal(top[3].root, "old", 3);
    assert_int_equal(top[3].growth, 1);
    /* every other field as engine_cascade reports it */
    assert_int_equal(engine_cascade(e, "b1", 2, &c), 0);
    c.growth = top[2].growth;
    assert_memory_equal(&c, &top[2], sizeof(c));
    assert_int_equal(engine_top_growth(e, 2000, NULL, top, 2), 2);
    assert_memory_equal(top[1].root, "a", 1);
    assert_int_equal(engine_top_growth(e, 2000, NULL, top, 0), 0);

    struct engine_cascade_filter f = {.label = "false", .label_len = 5};
    n = engine_top_growth(e, 2000, &f, top, 8);
    assert_int_equal(n, 2);
    assert_memory_equal(top[0].root, "a", 1);
    assert_memory_equal(top[1].root, "old", 3);
    f = (struct engine_cascade_filter){.content = "url2", .content_len = 4};
    n = engine_top_growth(e, 2000, &f, top, 8);
    assert_int_equal(n, 1);
    assert_memory_equal(top[0].root, "b", 1);
    f = (struct engine_cascade_filter){.min_size = 3};
    assert_int_equal(engine_top_growth(e, 2000, &f, top, 8), 1);
    f = (struct engine_cascade_filter){.has_until = 1, .until = 4000}; /* began by then */
    n = engine_top_growth(e, 2000, &f, top, 8);
    assert_int_equal(n, 1);
    assert_memory_equal(top[0].root, "old", 3);
    f = (struct engine_cascade_filter){.has_since = 1, .since = 6150}; /* still active then */
    assert_int_equal(engine_top_growth(e, 2000, &f, top, 8), 2);
    f = (struct engine_cascade_filter){.label = "nope", .label_len = 4};
    assert_int_equal(engine_top_growth(e, 2000, &f, top, 8), 0);
    f = (struct engine_cascade_filter){.content = "nope", .content_len = 4};
    assert_int_equal(engine_top_growth(e, 2000, &f, top, 8), 0);
    engine_free(e);
}

static void test_bad_windows(void **state)
{
    struct engine *e = new_engine();
    struct engine_cascade top[2];
    assert_int_equal(engine_top_growth(e, 1000, NULL, top, 2), 0); /* nothing yet */
    assert_int_equal(engine_top_growth(e, 0, NULL, top, 2), -EINVAL);
    SEND(e, "r", NULL, INT64_MIN + 5, NULL, NULL);
    assert_int_equal(engine_top_growth(e, 0, NULL, top, 2), -EINVAL);
    assert_int_equal(engine_top_growth(e, -1, NULL, top, 2), -EINVAL);
    assert_int_equal(engine_top_growth(e, H + 1, NULL, top, 2), -EINVAL);
    assert_int_equal(engine_top_growth(e, INT64_MIN, NULL, top, 2), -EINVAL);
    assert_int_equal(engine_top_growth(e, H, NULL, top, 2), 1); /* saturates at INT64_MIN */
    assert_int_equal(engine_top_growth(e, 1, NULL, top, 2), 1);
    SEND(e, "s", NULL, INT64_MAX, NULL, NULL);
    assert_int_equal(engine_top_growth(e, H, NULL, top, 2), 1);
    assert_int_equal(top[0].growth, 1);
    assert_memory_equal(top[0].root, "s", 1);
    engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_edges),     cmocka_unit_test(test_counted_run_grows),
        cmocka_unit_test(test_negative_times),   cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_horizon),          cmocka_unit_test(test_join),
        cmocka_unit_test(test_filters_and_ties), cmocka_unit_test(test_bad_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
