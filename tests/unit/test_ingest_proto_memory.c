/* What decoding an ingest value costs, and that it is bounded before it is paid (net/ingest_proto.h,
 * core/mpscan.h): the scanner's cost of a value is at least what msgpack-c's unpacker really
 * allocates for it (measured on the heap while its events are delivered) and not far above; a
 * hostile value (100,000 arrays of 38 nils, 4.1 MB that unpack to ~130 MB) is refused at its
 * header past --max-value-memory with nothing allocated for it, while a 4 MiB array of typical
 * events passes; decoders share a budget, reserved before msgpack-c sees a value and given back
 * once its events are delivered (or the decoder is freed); and the decoder stamps each event
 * with the clock's ts_max so that validation refuses a ts too far ahead (bad_ts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <msgpack.h>

#include "core/mpscan.h"
#include "net/ingest_proto.h"

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

struct sink {
    long events;
    size_t heap_at_first; /* the heap while the first event is delivered: the value unpacked */
    int outcome;          /* event_validate of the last event */
    int64_t ts_max;
    long stop_every; /* on_event asks drain to stop after every stop_every-th event; 0: never */
};

static int on_event(void *ctx, const struct event_raw *raw)
{
    struct sink *s = ctx;
    struct event ev;
    if (s->events++ == 0)
        s->heap_at_first = heap_in_use();
    s->outcome = raw ? event_validate(raw, &ev) : EVENT_REJ_BAD_TYPE;
    s->ts_max = raw ? raw->ts_max : -1;
    return s->stop_every && s->events % s->stop_every == 0;
}

static long drain_all(struct ingest_decoder *d, struct sink *s)
{
    long total = 0;
    while (!ingest_decoder_idle(d)) {
        long n = ingest_decoder_drain(d, on_event, s);
        assert_true(n >= 0);
        total += n;
    }
    return total;
}

static msgpack_sbuffer packed(void (*build)(msgpack_packer *, int), int n)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    build(&pk, n);
    return sb;
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* [[nil x 38] x n]: the hostile value of issue 16 at n = 100,000. */
static void build_nils(msgpack_packer *pk, int n)
{
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        msgpack_pack_array(pk, 38);
        for (int k = 0; k < 38; k++)
            msgpack_pack_nil(pk);
    }
}

/* n events as cascade-gen writes them: post, actor, ts, sometimes parent and content. */
static void build_events(msgpack_packer *pk, int n)
{
    char buf[64];
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        int parent = i % 3 != 0, content = i % 2 == 0;
        msgpack_pack_map(pk, 3 + (size_t)parent + (size_t)content);
        pack_cstr(pk, "post");
        snprintf(buf, sizeof(buf), "p%d", i);
        pack_cstr(pk, buf);
        pack_cstr(pk, "actor");
        snprintf(buf, sizeof(buf), "u%d", i % 5000);
        pack_cstr(pk, buf);
        pack_cstr(pk, "ts");
        msgpack_pack_uint64(pk, 1700000000000ull + (uint64_t)i * 37);
        if (parent) {
            pack_cstr(pk, "parent");
            snprintf(buf, sizeof(buf), "p%d", i - 1);
            pack_cstr(pk, buf);
        }
        if (content) {
            pack_cstr(pk, "content");
            snprintf(buf, sizeof(buf), "https://news.example/%d", i % 4000);
            pack_cstr(pk, buf);
        }
    }
}

/* Maps inside maps inside arrays: every kind of container the cost counts. */
static void build_nested(msgpack_packer *pk, int n)
{
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        msgpack_pack_map(pk, 4);
        pack_cstr(pk, "post");
        msgpack_pack_uint32(pk, (uint32_t)i);
        pack_cstr(pk, "actor");
        msgpack_pack_uint32(pk, 7);
        pack_cstr(pk, "ts");
        msgpack_pack_uint32(pk, 1000);
        pack_cstr(pk, "meta");
        msgpack_pack_map(pk, 2);
        pack_cstr(pk, "a");
        msgpack_pack_array(pk, (size_t)(i % 40));
        for (int k = 0; k < i % 40; k++)
            msgpack_pack_nil(pk);
        pack_cstr(pk, "b");
        msgpack_pack_array(pk, 0);
    }
}

static uint64_t cost_of(const msgpack_sbuffer *sb)
{
    struct mpscan s;
    size_t used;
    mpscan_init(&s, &(struct mpscan_limits){.max_bytes = UINT64_MAX,
                                            .max_array = UINT32_MAX,
                                            .max_map = UINT32_MAX,
                                            .max_depth = MPSCAN_DEPTH_MAX,
                                            .max_str = UINT32_MAX});
    assert_int_equal(mpscan_feed(&s, sb->data, sb->size, &used), MPSCAN_DONE);
    assert_int_equal(used, sb->size);
    return s.cost;
}

static struct ingest_limits open_limits(void)
{
    struct ingest_limits l;
    ingest_limits_default(&l);
    l.max_value_bytes = 16u << 20;
    l.max_value_memory = 0; /* no bound: to measure */
    return l;
}

/* The cost is what msgpack-c allocates (glibc here; the model counts jemalloc's size classes,
 * which round up more) and not much more. */
static void check_cost_matches(void (*build)(msgpack_packer *, int), int n)
{
    msgpack_sbuffer sb = packed(build, n);
    uint64_t cost = cost_of(&sb);
    struct ingest_limits l = open_limits();
    struct ingest_decoder *d;
    assert_int_equal(ingest_decoder_new(&l, &d), 0);
    assert_int_equal(ingest_decoder_feed(d, sb.data, sb.size), 0);
    struct sink s = {0};
    size_t before = heap_in_use();
    assert_int_equal(drain_all(d, &s), n);
    size_t real = s.heap_at_first > before ? s.heap_at_first - before : 0;
    print_message("%d values: %zu bytes of msgpack, cost %llu, msgpack-c took %zu\n", n, sb.size,
                  (unsigned long long)cost, real);
    if (real > 0) { /* AddressSanitizer's allocator has no mallinfo figures: nothing to compare */
        assert_true(cost >= real);
        assert_true(cost <= real + real / 2 + (64u << 10));
    }
    ingest_decoder_free(d);
    msgpack_sbuffer_destroy(&sb);
}

static void test_cost_matches_msgpack_c(void **state)
{
    check_cost_matches(build_nils, 20000);
    check_cost_matches(build_events, 60000);
    check_cost_matches(build_nested, 30000);
}

static void test_cost_of_small_values(void **state)
{
    /* the zone's kept 8 KiB chunk takes small containers at no cost */
    msgpack_sbuffer sb = packed(build_events, 10);
    assert_int_equal(cost_of(&sb), 0);
    msgpack_sbuffer_destroy(&sb);
    /* 1,000 nils: 24,000 bytes, a 32 KiB chunk, which jemalloc serves from its 40 KiB class */
    sb = packed(build_nils, 0);
    msgpack_sbuffer_clear(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 1000);
    for (int i = 0; i < 1000; i++)
        msgpack_pack_nil(&pk);
    assert_int_equal(cost_of(&sb), 40960);
    msgpack_sbuffer_destroy(&sb);
}

/* Issue 16: 4.1 MB that cost ~130 MB to unpack. Refused at a header with the default limits,
 * before msgpack-c allocated anything for the value; the events before it are delivered. */
static void test_hostile_value_refused(void **state)
{
    msgpack_sbuffer sb = packed(build_nils, 100000);
    assert_true(cost_of(&sb) > (120u << 20)); /* ~127 MiB; 134 MB measured (VmHWM) */
    struct ingest_decoder *d;
    assert_int_equal(ingest_decoder_new(NULL, &d), 0);
    static const char ev[] = "\x83\xa4post\xa1x\xa5" "actor\xa1y\xa2ts\xcd\x03\xe8";
    assert_int_equal(ingest_decoder_feed(d, ev, sizeof(ev) - 1), 0);
    size_t before = heap_in_use();
    assert_int_equal(ingest_decoder_feed(d, sb.data, sb.size), -EPROTO);
    assert_true(heap_in_use() < before + (8u << 20)); /* the bytes it approved, not objects */
    assert_int_equal(ingest_decoder_violation(d), INGEST_LIMIT_MEMORY);
    const char *err = ingest_decoder_error(d);
    assert_non_null(strstr(err, "memory to decode exceeds the limit of 67108864 at byte "));
    struct sink s = {0};
    assert_int_equal(drain_all(d, &s), 1); /* the event before it */
    assert_int_equal(s.outcome, EVENT_OK);
    ingest_decoder_free(d);
    msgpack_sbuffer_destroy(&sb);
}

/* A 4 MiB array of typical events passes the default bound. */
static void test_legit_value_passes(void **state)
{
    msgpack_sbuffer sb = packed(build_events, 64000);
    assert_true(sb.size > (3u << 20) && sb.size <= (4u << 20));
    uint64_t cost = cost_of(&sb);
    print_message("64,000 events: %zu bytes, cost %llu\n", sb.size, (unsigned long long)cost);
    assert_true(cost < (32u << 20));
    struct ingest_decoder *d;
    assert_int_equal(ingest_decoder_new(NULL, &d), 0);
    assert_int_equal(ingest_decoder_feed(d, sb.data, sb.size), 0);
    struct sink s = {0};
    assert_int_equal(drain_all(d, &s), 64000);
    ingest_decoder_free(d);
    msgpack_sbuffer_destroy(&sb);
}

/* Two decoders, a budget for one value: the second is refused until the first is delivered. */
static void test_budget_shared(void **state)
{
    msgpack_sbuffer sb = packed(build_events, 30000);
    uint64_t cost = cost_of(&sb);
    assert_true(cost > INGEST_BUDGET_FREE);
    struct ingest_budget b = {.limit = cost + cost / 2};
    struct ingest_limits l;
    ingest_limits_default(&l);
    l.budget = &b;
    struct ingest_decoder *d1, *d2, *d3;
    assert_int_equal(ingest_decoder_new(&l, &d1), 0);
    assert_int_equal(ingest_decoder_new(&l, &d2), 0);
    assert_int_equal(ingest_decoder_new(&l, &d3), 0);

    assert_int_equal(ingest_decoder_feed(d1, sb.data, sb.size), 0);
    assert_int_equal(b.used, cost);
    assert_int_equal(ingest_decoder_feed(d2, sb.data, sb.size), -EPROTO);
    assert_int_equal(ingest_decoder_violation(d2), INGEST_LIMIT_MEMORY);
    assert_non_null(strstr(ingest_decoder_error(d2), "resend it later"));
    assert_int_equal(b.refused, 1);
    assert_int_equal(b.used, cost);
    struct sink s = {0};
    assert_int_equal(drain_all(d2, &s), 0); /* nothing of the refused value */

    assert_int_equal(drain_all(d1, &s), 30000);
    assert_int_equal(b.used, 0);
    /* small values are not reserved; a freed decoder gives back what it held */
    assert_int_equal(ingest_decoder_feed(d3, sb.data, sb.size), 0);
    assert_int_equal(ingest_decoder_feed(d3, sb.data, 200), 0); /* a value cut short */
    assert_int_equal(b.used, cost);
    ingest_decoder_free(d3);
    assert_int_equal(b.used, 0);
    ingest_decoder_free(d1);
    ingest_decoder_free(d2);
    msgpack_sbuffer_destroy(&sb);
}

/* Many values queued in one decoder: each holds its cost until its own events are out. */
static void test_budget_many_values(void **state)
{
    msgpack_sbuffer sb = packed(build_events, 3000);
    uint64_t cost = cost_of(&sb);
    assert_true(cost > INGEST_BUDGET_FREE);
    struct ingest_budget b = {.limit = 1ull << 40};
    struct ingest_limits l;
    ingest_limits_default(&l);
    l.budget = &b;
    struct ingest_decoder *d;
    assert_int_equal(ingest_decoder_new(&l, &d), 0);
    for (int i = 0; i < 40; i++)
        assert_int_equal(ingest_decoder_feed(d, sb.data, sb.size), 0);
    assert_int_equal(b.used, 40 * cost);
    struct sink s = {.stop_every = 3000};
    for (int i = 40; i > 0; i--) { /* one value per drain: stop after its last event */
        long got = 0;
        while (got < 3000) {
            long n = ingest_decoder_drain(d, on_event, &s);
            assert_true(n > 0);
            got += n;
        }
        assert_int_equal(got, 3000);
        assert_int_equal(b.used, (uint64_t)(i - 1) * cost);
    }
    ingest_decoder_free(d);
    msgpack_sbuffer_destroy(&sb);
}

/* A value costing more than the whole budget can never pass: over the limit, whatever is free. */
static void test_value_over_budget_is_a_limit(void **state)
{
    msgpack_sbuffer sb = packed(build_events, 30000);
    uint64_t cost = cost_of(&sb);
    struct ingest_budget b = {.limit = cost / 2};
    struct ingest_limits l;
    ingest_limits_default(&l);
    l.budget = &b;
    struct ingest_decoder *d;
    assert_int_equal(ingest_decoder_new(&l, &d), 0);
    assert_int_equal(ingest_decoder_feed(d, sb.data, sb.size), -EPROTO);
    assert_int_equal(ingest_decoder_violation(d), INGEST_LIMIT_MEMORY);
    assert_non_null(strstr(ingest_decoder_error(d), "exceeds the limit of"));
    assert_int_equal(b.refused, 0);
    assert_int_equal(b.used, 0);
    ingest_decoder_free(d);
    msgpack_sbuffer_destroy(&sb);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void feed_ts(struct ingest_decoder *d, uint64_t ts, struct sink *s)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_cstr(&pk, "post");
    pack_cstr(&pk, "p");
    pack_cstr(&pk, "actor");
    pack_cstr(&pk, "a");
    pack_cstr(&pk, "ts");
    msgpack_pack_uint64(&pk, ts);
    assert_int_equal(ingest_decoder_feed(d, sb.data, sb.size), 0);
    assert_int_equal(drain_all(d, s), 1);
    msgpack_sbuffer_destroy(&sb);
}

/* The decoder's clock: a ts a day and a minute ahead is bad_ts, a day less a minute is not;
 * microseconds are; with max_future_ms 0 there is no bound. */
static void test_future_ts(void **state)
{
    struct ingest_decoder *d;
    struct sink s = {0};
    const int64_t day = 86400000;
    assert_int_equal(ingest_decoder_new(NULL, &d), 0);
    int64_t now = wall_ms();
    feed_ts(d, (uint64_t)(now + day - 60000), &s);
    assert_int_equal(s.outcome, EVENT_OK);
    assert_true(s.ts_max >= now + day && s.ts_max <= wall_ms() + day);
    feed_ts(d, (uint64_t)(now + day + 60000), &s);
    assert_int_equal(s.outcome, EVENT_REJ_BAD_TS);
    feed_ts(d, (uint64_t)now * 1000, &s);
    assert_int_equal(s.outcome, EVENT_REJ_BAD_TS);
    feed_ts(d, 1000, &s);
    assert_int_equal(s.outcome, EVENT_OK);
    ingest_decoder_free(d);

    struct ingest_limits l;
    ingest_limits_default(&l);
    assert_int_equal(l.max_future_ms, day);
    l.max_future_ms = 0;
    assert_int_equal(ingest_decoder_new(&l, &d), 0);
    feed_ts(d, (uint64_t)now * 1000, &s);
    assert_int_equal(s.outcome, EVENT_OK);
    assert_int_equal(s.ts_max, 0);
    ingest_decoder_free(d);
}

static void test_defaults(void **state)
{
    struct ingest_limits l;
    ingest_limits_default(&l);
    assert_int_equal(l.max_value_memory, 64u << 20);
    assert_null(l.budget);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cost_matches_msgpack_c),
        cmocka_unit_test(test_cost_of_small_values),
        cmocka_unit_test(test_hostile_value_refused),
        cmocka_unit_test(test_legit_value_passes),
        cmocka_unit_test(test_budget_shared),
        cmocka_unit_test(test_budget_many_values),
        cmocka_unit_test(test_value_over_budget_is_a_limit),
        cmocka_unit_test(test_future_ts),
        cmocka_unit_test(test_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
