/* Unit tests for event_validate (DESIGN §2, include/cascade/event.h): every rejection reason for
 * every field, the documented order of the checks, id canonicalisation (123 ≡ "123") and the
 * defaults a validated event gets. Validation is pure, so each test builds one raw event from a
 * valid base and changes what it is about. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cascade/event.h"

/* Big enough for the longest field under test (content: EVENT_CONTENT_MAX + 1). */
static char big[EVENT_CONTENT_MAX + 8];

static struct event_field f_strn(const char *s, uint32_t len)
{
    return (struct event_field){.type = EVF_STR, .len = len, .str = s};
}

static struct event_field f_str(const char *s)
{
    return f_strn(s, (uint32_t)strlen(s));
}

static struct event_field f_uint(uint64_t u)
{
    return (struct event_field){.type = EVF_UINT, .u = u};
}

static struct event_field f_negint(int64_t i)
{
    return (struct event_field){.type = EVF_NEGINT, .i = i};
}

static struct event_field f_nil(void)
{
    return (struct event_field){.type = EVF_NIL};
}

/* A float, bool, bin, array, map or ext: the decoder does not tell them apart. */
static struct event_field f_other(void)
{
    return (struct event_field){.type = EVF_OTHER};
}

static struct event_field f_absent(void)
{
    return (struct event_field){.type = EVF_ABSENT};
}

/* A string of len bytes, not NUL-terminated at len: validation must go by len alone. */
static struct event_field f_long(uint32_t len)
{
    memset(big, 'x', sizeof(big));
    return f_strn(big, len);
}

static struct event_raw base_raw(void)
{
    struct event_raw r;
    memset(&r, 0, sizeof(r));
    r.post = f_str("p1");
    r.actor = f_str("a1");
    r.ts = f_uint(1700000000000ULL);
    return r;
}

static int validate(const struct event_raw *r, struct event *out)
{
    memset(out, 0xa5, sizeof(*out)); /* poison: every field read must have been written */
    return event_validate(r, out);
}

static int check(const struct event_raw *r)
{
    struct event ev;
    return validate(r, &ev);
}

static void assert_id(const struct event_id *id, const char *want)
{
    assert_int_equal(id->len, strlen(want));
    assert_memory_equal(event_id_str(id), want, id->len);
}

static void test_minimal_event(void **state)
{
    struct event_raw r = base_raw();
    struct event ev;

    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_id(&ev.post, "p1");
    assert_id(&ev.actor, "a1");
    assert_int_equal(ev.ts, 1700000000000LL);
    assert_false(event_has_parent(&ev));
    assert_int_equal(ev.parent.len, 0);
    assert_int_equal(ev.kind, EVENT_KIND_POST);
    assert_int_equal(ev.actor_type, EVENT_ACTOR_UNSPECIFIED);
    assert_null(ev.content);
    assert_null(ev.label);
}

static void test_all_fields(void **state)
{
    struct event_raw r = base_raw();
    struct event ev;

    r.parent = f_str("p0");
    r.kind = f_str("quote");
    r.actor_type = f_str("page");
    r.content = f_str("https://example.org/claim");
    r.label = f_str("false");
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_true(event_has_parent(&ev));
    assert_id(&ev.parent, "p0");
    assert_int_equal(ev.kind, EVENT_KIND_QUOTE);
    assert_int_equal(ev.actor_type, EVENT_ACTOR_PAGE);
    assert_int_equal(ev.content_len, strlen("https://example.org/claim"));
    assert_memory_equal(ev.content, "https://example.org/claim", ev.content_len);
    assert_int_equal(ev.label_len, 5);
    assert_memory_equal(ev.label, "false", 5);
}

/* Decoders hand out strings inside their buffer, with no NUL after them. */
static void test_strings_are_not_nul_terminated(void **state)
{
    struct event_raw r = base_raw();
    struct event ev;

    r.post = f_strn("p12345", 3);
    r.actor = f_strn("actor-and-more", 5);
    r.parent = f_strn("p9xyz", 2);
    r.kind = f_strn("sharexyz", 5);
    r.content = f_strn("claimXYZ", 5);
    r.label = f_strn("mixedXYZ", 5);
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_id(&ev.post, "p12");
    assert_id(&ev.actor, "actor");
    assert_id(&ev.parent, "p9");
    assert_int_equal(ev.kind, EVENT_KIND_SHARE);
    assert_int_equal(ev.content_len, 5);
    assert_int_equal(ev.label_len, 5);
}

static void test_missing_post(void **state)
{
    struct event_raw r = base_raw();

    r.post = f_absent();
    assert_int_equal(check(&r), EVENT_REJ_MISSING_POST);
    /* nil means "no value", as it does for the optional keys */
    r.post = f_nil();
    assert_int_equal(check(&r), EVENT_REJ_MISSING_POST);
    r.post = f_str("");
    assert_int_equal(check(&r), EVENT_REJ_MISSING_POST);
}

static void test_missing_actor(void **state)
{
    struct event_raw r = base_raw();

    r.actor = f_absent();
    assert_int_equal(check(&r), EVENT_REJ_MISSING_ACTOR);
    r.actor = f_nil();
    assert_int_equal(check(&r), EVENT_REJ_MISSING_ACTOR);
    r.actor = f_str("");
    assert_int_equal(check(&r), EVENT_REJ_MISSING_ACTOR);
}

static void test_missing_ts(void **state)
{
    struct event_raw r = base_raw();

    r.ts = f_absent();
    assert_int_equal(check(&r), EVENT_REJ_MISSING_TS);
    r.ts = f_nil();
    assert_int_equal(check(&r), EVENT_REJ_MISSING_TS);
}

static void test_bad_type_ids(void **state)
{
    struct event_field bad[] = {f_negint(-1), f_negint(INT64_MIN), f_other()};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct event_raw r = base_raw();
        r.post = bad[i];
        assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
        r = base_raw();
        r.actor = bad[i];
        assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
        r = base_raw();
        r.parent = bad[i];
        assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    }
}

/* An empty parent is not "no parent" (that is absent or nil): it is a bad value. */
static void test_empty_parent_is_bad_type(void **state)
{
    struct event_raw r = base_raw();

    r.parent = f_str("");
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
}

static void test_ts_types(void **state)
{
    struct event_raw r = base_raw();
    struct event ev;

    r.ts = f_str("1700000000000");
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    r.ts = f_other();
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    /* 1970 is a time; without a receiver's bound (ts_max 0: WAL replay, a dump checked
     * offline) so is the end of int64 */
    r.ts = f_uint(0);
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.ts, 0);
    r.ts = f_uint(INT64_MAX);
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.ts, INT64_MAX);
}

/* DESIGN §2 bad_ts: negative, or past the receiver's clock plus --max-future-ms (ts_max). */
static void test_bad_ts_bounds(void **state)
{
    const int64_t now = 1796666559088LL, day = 86400000LL;
    struct event_raw r = base_raw();
    struct event ev;

    r.ts_max = event_ts_max(now, day);
    assert_int_equal(r.ts_max, now + day);
    r.ts = f_negint(-1);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TS);
    r.ts = f_negint(INT64_MIN);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TS);
    r.ts = f_uint(0);
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.ts, 0);
    r.ts = f_uint(1000); /* tests and dumps use small historical times: no floor */
    assert_int_equal(check(&r), EVENT_OK);
    r.ts = f_uint((uint64_t)(now + day));
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.ts, now + day);
    r.ts = f_uint((uint64_t)(now + day + 1));
    assert_int_equal(check(&r), EVENT_REJ_BAD_TS);
    r.ts = f_uint((uint64_t)now * 1000); /* microseconds */
    assert_int_equal(check(&r), EVENT_REJ_BAD_TS);
    r.ts = f_uint(INT64_MAX);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TS);
    r.ts = f_uint((uint64_t)INT64_MAX + 1); /* not an int64 at all: still a bad type */
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    /* without a bound the future passes, a negative ts never does */
    r.ts_max = 0;
    r.ts = f_uint((uint64_t)now * 1000);
    assert_int_equal(check(&r), EVENT_OK);
    r.ts = f_negint(-5);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TS);
    r.ts = f_negint(INT64_MIN);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TS);
}

/* bad_ts is the ts's own check: after post and actor, before parent and the options. */
static void test_bad_ts_order(void **state)
{
    struct event_raw r = base_raw();

    r.ts = f_negint(-1);
    r.post = f_absent();
    assert_int_equal(check(&r), EVENT_REJ_MISSING_POST);
    r = base_raw();
    r.ts = f_negint(-1);
    r.actor = f_uint(0); /* an id */
    r.parent = f_other();
    r.label = f_long(EVENT_LABEL_MAX + 1);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TS);
    r = base_raw();
    r.ts_max = 5;
    r.ts = f_uint(6);
    r.parent = f_str("p1"); /* self_parent comes last */
    assert_int_equal(check(&r), EVENT_REJ_BAD_TS);
}

static void test_ts_max(void **state)
{
    assert_int_equal(event_ts_max(1000, 0), 0); /* 0: no future check */
    assert_int_equal(event_ts_max(1000, -5), 0);
    assert_int_equal(event_ts_max(1000, 86400000), 86401000);
    assert_int_equal(event_ts_max(INT64_MAX - 10, 86400000), INT64_MAX); /* saturates */
    assert_int_equal(event_ts_max(-7, 1), 2);  /* a clock before 1970: never the "no bound" 0 */
    assert_true(event_ts_max(0, 1) > 0);
}

/* A time that does not fit in int64 must not wrap around to a negative one. */
static void test_ts_out_of_range(void **state)
{
    struct event_raw r = base_raw();

    r.ts = f_uint((uint64_t)INT64_MAX + 1);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    r.ts = f_uint(UINT64_MAX);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
}

static void test_kind_defaults(void **state)
{
    struct event_raw r = base_raw();
    struct event ev;

    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.kind, EVENT_KIND_POST);
    r.parent = f_str("p0");
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.kind, EVENT_KIND_SHARE);
    /* nil kind is no kind */
    r.kind = f_nil();
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.kind, EVENT_KIND_SHARE);
    /* a nil parent is no parent, so the default is post again */
    r.parent = f_nil();
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_false(event_has_parent(&ev));
    assert_int_equal(ev.kind, EVENT_KIND_POST);
}

static void test_kind_explicit(void **state)
{
    static const struct {
        const char *name;
        int kind;
    } kinds[] = {
        {"share", EVENT_KIND_SHARE}, {"quote", EVENT_KIND_QUOTE}, {"reply", EVENT_KIND_REPLY}};
    struct event_raw r = base_raw();
    struct event ev;

    r.kind = f_str("post");
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.kind, EVENT_KIND_POST);
    r.parent = f_uint(42);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        r.kind = f_str(kinds[i].name);
        assert_int_equal(validate(&r, &ev), EVENT_OK);
        assert_int_equal(ev.kind, kinds[i].kind);
    }
}

/* Prefixes and extensions of valid names catch comparisons that ignore the length. */
static void test_kind_invalid(void **state)
{
    static const char *const bad[] = {"repost", "", "pos", "posts", "shares", "Share", "retweet"};
    struct event_raw r = base_raw();

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r.kind = f_str(bad[i]);
        assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    }
    r.kind = f_uint(1);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    r.kind = f_negint(-1);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    r.kind = f_other();
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
}

static void test_actor_type(void **state)
{
    static const char *const bad[] = {"group", "", "acc", "accounts", "pages", "Page"};
    struct event_raw r = base_raw();
    struct event ev;

    r.actor_type = f_str("account");
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.actor_type, EVENT_ACTOR_ACCOUNT);
    r.actor_type = f_str("page");
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.actor_type, EVENT_ACTOR_PAGE);
    r.actor_type = f_nil();
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.actor_type, EVENT_ACTOR_UNSPECIFIED);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r.actor_type = f_str(bad[i]);
        assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    }
    r.actor_type = f_uint(1);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    r.actor_type = f_other();
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
}

static void test_content_and_label_types(void **state)
{
    struct event_field bad[] = {f_uint(7), f_negint(-7), f_other()};
    struct event_raw r = base_raw();
    struct event ev;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = base_raw();
        r.content = bad[i];
        assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
        r = base_raw();
        r.label = bad[i];
        assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    }
    r = base_raw();
    r.content = f_nil();
    r.label = f_nil();
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_null(ev.content);
    assert_null(ev.label);
}

static void test_id_lengths(void **state)
{
    struct event_raw r = base_raw();
    struct event ev;

    r.post = f_long(EVENT_ID_MAX);
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.post.len, EVENT_ID_MAX);
    r.post = f_long(EVENT_ID_MAX + 1);
    assert_int_equal(check(&r), EVENT_REJ_TOO_LONG);

    r = base_raw();
    r.actor = f_long(EVENT_ID_MAX);
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.actor.len, EVENT_ID_MAX);
    r.actor = f_long(EVENT_ID_MAX + 1);
    assert_int_equal(check(&r), EVENT_REJ_TOO_LONG);

    r = base_raw();
    r.parent = f_long(EVENT_ID_MAX);
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.parent.len, EVENT_ID_MAX);
    r.parent = f_long(EVENT_ID_MAX + 1);
    assert_int_equal(check(&r), EVENT_REJ_TOO_LONG);
}

static void test_content_and_label_lengths(void **state)
{
    struct event_raw r = base_raw();
    struct event ev;

    r.content = f_long(EVENT_CONTENT_MAX);
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.content_len, EVENT_CONTENT_MAX);
    r.content = f_long(EVENT_CONTENT_MAX + 1);
    assert_int_equal(check(&r), EVENT_REJ_TOO_LONG);

    r = base_raw();
    r.label = f_long(EVENT_LABEL_MAX);
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_int_equal(ev.label_len, EVENT_LABEL_MAX);
    r.label = f_long(EVENT_LABEL_MAX + 1);
    assert_int_equal(check(&r), EVENT_REJ_TOO_LONG);
}

static void test_integer_ids(void **state)
{
    struct event_raw r = base_raw();
    struct event ev;

    r.post = f_uint(123);
    r.actor = f_uint(0);
    r.parent = f_uint(UINT64_MAX);
    assert_int_equal(validate(&r, &ev), EVENT_OK);
    assert_id(&ev.post, "123");
    assert_id(&ev.actor, "0");
    assert_id(&ev.parent, "18446744073709551615");
    /* event_id_str is documented as a C string for integer ids */
    assert_string_equal(event_id_str(&ev.post), "123");
    assert_string_equal(event_id_str(&ev.parent), "18446744073709551615");
    assert_true(event_has_parent(&ev));
    assert_int_equal(ev.kind, EVENT_KIND_SHARE);
}

/* 123 and "123" must come out byte-identical, since the engine keys posts and actors by them. */
static void test_integer_and_string_ids_agree(void **state)
{
    static const uint64_t ids[] = {0, 7, 123, 4294967296ULL, UINT64_MAX};
    static const char *const strs[] = {"0", "7", "123", "4294967296", "18446744073709551615"};

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        struct event_raw ri = base_raw(), rs = base_raw();
        struct event ei, es;
        ri.post = f_uint(ids[i]);
        ri.actor = f_uint(ids[i]);
        rs.post = f_str(strs[i]);
        rs.actor = f_str(strs[i]);
        assert_int_equal(validate(&ri, &ei), EVENT_OK);
        assert_int_equal(validate(&rs, &es), EVENT_OK);
        assert_int_equal(ei.post.len, es.post.len);
        assert_memory_equal(event_id_str(&ei.post), event_id_str(&es.post), ei.post.len);
        assert_int_equal(ei.actor.len, es.actor.len);
        assert_memory_equal(event_id_str(&ei.actor), event_id_str(&es.actor), ei.actor.len);
    }
}

static void test_self_parent(void **state)
{
    struct event_raw r = base_raw();

    r.post = f_str("7");
    r.parent = f_str("7");
    assert_int_equal(check(&r), EVENT_REJ_SELF_PARENT);
    r.post = f_uint(7);
    r.parent = f_uint(7);
    assert_int_equal(check(&r), EVENT_REJ_SELF_PARENT);
    r.post = f_uint(7);
    r.parent = f_str("7");
    assert_int_equal(check(&r), EVENT_REJ_SELF_PARENT);
    r.post = f_str("7");
    r.parent = f_uint(7);
    assert_int_equal(check(&r), EVENT_REJ_SELF_PARENT);
    r.post = f_uint(UINT64_MAX);
    r.parent = f_str("18446744073709551615");
    assert_int_equal(check(&r), EVENT_REJ_SELF_PARENT);
    r.post = f_long(EVENT_ID_MAX);
    r.parent = f_long(EVENT_ID_MAX);
    assert_int_equal(check(&r), EVENT_REJ_SELF_PARENT);
}

/* Only integers are canonicalised: "07" is a string id of its own, not the integer 7. */
static void test_near_self_parent(void **state)
{
    struct event_raw r = base_raw();

    r.post = f_uint(7);
    r.parent = f_str("07");
    assert_int_equal(check(&r), EVENT_OK);
    r.post = f_str("7");
    r.parent = f_str("70");
    assert_int_equal(check(&r), EVENT_OK);
    r.post = f_strn("77", 1);
    r.parent = f_str("77");
    assert_int_equal(check(&r), EVENT_OK);
    r.post = f_str("p1");
    r.parent = f_str("P1");
    assert_int_equal(check(&r), EVENT_OK);
}

/* event.h: fields in the order post, actor, ts, parent, kind, actor_type, content, label, each
 * for presence, then type, then length; then self_parent. Each case has two faults: the first in
 * that order must win. */
static void test_order_of_checks(void **state)
{
    struct event_raw r;

    r = base_raw(); /* post before actor */
    r.post = f_absent();
    r.actor = f_absent();
    assert_int_equal(check(&r), EVENT_REJ_MISSING_POST);
    r = base_raw(); /* a field's type before the next field's presence */
    r.post = f_other();
    r.actor = f_absent();
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    r = base_raw(); /* a field's length before the next field's presence */
    r.post = f_long(EVENT_ID_MAX + 1);
    r.actor = f_absent();
    assert_int_equal(check(&r), EVENT_REJ_TOO_LONG);
    r = base_raw(); /* actor before ts */
    r.actor = f_absent();
    r.ts = f_other();
    assert_int_equal(check(&r), EVENT_REJ_MISSING_ACTOR);
    r = base_raw();
    r.actor = f_long(EVENT_ID_MAX + 1);
    r.ts = f_absent();
    assert_int_equal(check(&r), EVENT_REJ_TOO_LONG);
    r = base_raw(); /* ts before parent */
    r.ts = f_absent();
    r.parent = f_other();
    assert_int_equal(check(&r), EVENT_REJ_MISSING_TS);
    r = base_raw();
    r.ts = f_str("1");
    r.parent = f_long(EVENT_ID_MAX + 1);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
}

static void test_order_of_checks_optional(void **state)
{
    struct event_raw r;

    r = base_raw(); /* parent before kind */
    r.parent = f_long(EVENT_ID_MAX + 1);
    r.kind = f_str("repost");
    assert_int_equal(check(&r), EVENT_REJ_TOO_LONG);
    r = base_raw(); /* kind before content */
    r.kind = f_str("repost");
    r.content = f_long(EVENT_CONTENT_MAX + 1);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    r = base_raw(); /* actor_type before content */
    r.actor_type = f_str("group");
    r.content = f_long(EVENT_CONTENT_MAX + 1);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    r = base_raw(); /* content before label */
    r.content = f_long(EVENT_CONTENT_MAX + 1);
    r.label = f_other();
    assert_int_equal(check(&r), EVENT_REJ_TOO_LONG);
    r = base_raw();
    r.content = f_other();
    r.label = f_long(EVENT_LABEL_MAX + 1);
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
}

/* self_parent comes after every field check, even those of later fields. */
static void test_self_parent_checked_last(void **state)
{
    struct event_raw r = base_raw();

    r.post = f_uint(7);
    r.parent = f_str("7");
    r.label = f_long(EVENT_LABEL_MAX + 1);
    assert_int_equal(check(&r), EVENT_REJ_TOO_LONG);
    r.label = f_absent();
    r.kind = f_str("repost");
    assert_int_equal(check(&r), EVENT_REJ_BAD_TYPE);
    r.kind = f_absent();
    r.actor = f_absent();
    assert_int_equal(check(&r), EVENT_REJ_MISSING_ACTOR);
}

static void test_outcome_names(void **state)
{
    static const char *const names[EVENT_OUTCOME_COUNT] = {
        [EVENT_OK] = "ok",
        [EVENT_DUP] = "dup",
        [EVENT_REJ_MISSING_POST] = "missing_post",
        [EVENT_REJ_MISSING_ACTOR] = "missing_actor",
        [EVENT_REJ_MISSING_TS] = "missing_ts",
        [EVENT_REJ_BAD_TYPE] = "bad_type",
        [EVENT_REJ_TOO_LONG] = "too_long",
        [EVENT_REJ_SELF_PARENT] = "self_parent",
        [EVENT_REJ_CYCLE] = "cycle",
        [EVENT_REJ_BAD_TS] = "bad_ts",
        [EVENT_ERR_NOMEM] = "nomem",
    };

    for (int i = 0; i < EVENT_OUTCOME_COUNT; i++) {
        assert_non_null(names[i]); /* a new outcome needs a name here too */
        assert_string_equal(event_outcome_name(i), names[i]);
    }
    /* callers print whatever they were given: never a NULL */
    assert_non_null(event_outcome_name(-1));
    assert_non_null(event_outcome_name(EVENT_OUTCOME_COUNT));
    assert_non_null(event_outcome_name(255));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_event),
        cmocka_unit_test(test_all_fields),
        cmocka_unit_test(test_strings_are_not_nul_terminated),
        cmocka_unit_test(test_missing_post),
        cmocka_unit_test(test_missing_actor),
        cmocka_unit_test(test_missing_ts),
        cmocka_unit_test(test_bad_type_ids),
        cmocka_unit_test(test_empty_parent_is_bad_type),
        cmocka_unit_test(test_ts_types),
        cmocka_unit_test(test_ts_out_of_range),
        cmocka_unit_test(test_bad_ts_bounds),
        cmocka_unit_test(test_bad_ts_order),
        cmocka_unit_test(test_ts_max),
        cmocka_unit_test(test_kind_defaults),
        cmocka_unit_test(test_kind_explicit),
        cmocka_unit_test(test_kind_invalid),
        cmocka_unit_test(test_actor_type),
        cmocka_unit_test(test_content_and_label_types),
        cmocka_unit_test(test_id_lengths),
        cmocka_unit_test(test_content_and_label_lengths),
        cmocka_unit_test(test_integer_ids),
        cmocka_unit_test(test_integer_and_string_ids_agree),
        cmocka_unit_test(test_self_parent),
        cmocka_unit_test(test_near_self_parent),
        cmocka_unit_test(test_order_of_checks),
        cmocka_unit_test(test_order_of_checks_optional),
        cmocka_unit_test(test_self_parent_checked_last),
        cmocka_unit_test(test_outcome_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
