/* Unit tests of the method schema (cascade/schema.h), the dispatch table (query/method.h) and
 * msgpack-RPC dispatch (query/rpc.h): building requests from text (types, bounds, unknown methods
 * and parameters), checking msgpack values against a parameter's schema, lookups and help; then
 * rpc_handle driven directly on a small engine: malformed envelopes, parameter binding (unknown,
 * missing, nil as absent), error codes 400/404/503 and the msgid echoed in every response. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "analytics/coord.h"
#include "cascade/engine.h"
#include "cascade/schema.h"
#include "core/mpmap.h"
#include "query/method.h"
#include "query/rpc.h"

/* ---------------------------------------------------------------- helpers */

static int contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

static int str_is(const msgpack_object *o, const char *s)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* One text request: the return code, the error message, and the unpacked request. */
struct textreq {
    int rc;
    char err[512];
    msgpack_sbuffer sb;
    msgpack_unpacked u;
};

/* Builds `method key=val` (key NULL: no parameter) with msgid. */
static void text_request(struct textreq *t, const char *method, const char *key, const char *val,
                         uint64_t msgid)
{
    struct qtext_param p = {key, val, key ? strlen(key) : 0, val ? strlen(val) : 0};
    memset(t, 0, sizeof(*t));
    msgpack_sbuffer_init(&t->sb);
    msgpack_unpacked_init(&t->u);
    t->rc = qrequest_from_text(method, strlen(method), &p, key ? 1 : 0, msgid, &t->sb, t->err,
                               sizeof(t->err));
    if (t->rc == 0) {
        assert_int_equal(msgpack_unpack_next(&t->u, t->sb.data, t->sb.size, NULL),
                         MSGPACK_UNPACK_SUCCESS);
    }
}

static void text_done(struct textreq *t)
{
    msgpack_unpacked_destroy(&t->u);
    msgpack_sbuffer_destroy(&t->sb);
}

/* The parameter map of a built request, after checking the envelope [0, msgid, method, [map]]. */
static const msgpack_object *request_params(const struct textreq *t, const char *method,
                                            uint64_t msgid)
{
    const msgpack_object *o = &t->u.data;
    assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(o->via.array.size, 4);
    const msgpack_object *a = o->via.array.ptr;
    assert_int_equal(a[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(a[0].via.u64, 0);
    assert_int_equal(a[1].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_true(a[1].via.u64 == msgid);
    assert_true(str_is(&a[2], method));
    assert_int_equal(a[3].type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(a[3].via.array.size, 1);
    assert_int_equal(a[3].via.array.ptr[0].type, MSGPACK_OBJECT_MAP);
    return &a[3].via.array.ptr[0];
}

/* The single value of `method key=val`, which must be accepted. */
static msgpack_object text_value(struct textreq *t, const char *method, const char *key,
                                 const char *val)
{
    text_request(t, method, key, val, 42);
    if (t->rc != 0)
        fail_msg("%s %s=%s: rc %d (%s)", method, key, val, t->rc, t->err);
    const msgpack_object *m = request_params(t, method, 42);
    assert_int_equal(m->via.map.size, 1);
    assert_true(str_is(&m->via.map.ptr[0].key, key));
    return m->via.map.ptr[0].val;
}

/* `method key=val` must be refused with -EINVAL and a message naming key. */
static void text_refused(const char *method, const char *key, const char *val)
{
    struct textreq t;
    text_request(&t, method, key, val, 1);
    if (t.rc != -EINVAL || !contains(t.err, key))
        fail_msg("%s %s=%s: rc %d, message \"%s\" (want -EINVAL naming %s)", method, key, val, t.rc,
                 t.err, key);
    text_done(&t);
}

/* ---------------------------------------------------------------- text requests */

static void test_unknown_method(void **state)
{
    struct textreq t;
    text_request(&t, "no_such_method", NULL, NULL, 1);
    assert_int_equal(t.rc, -ENOENT);
    assert_true(contains(t.err, "no_such_method"));
    size_t n;
    const struct qmethod *all = qmethod_all(&n);
    for (size_t i = 0; i < n; i++)
        if (!contains(t.err, all[i].name))
            fail_msg("the message \"%s\" does not list %s", t.err, all[i].name);
    text_done(&t);
    /* a prefix or an extension of a name is not the name */
    text_request(&t, "stat", NULL, NULL, 1);
    assert_int_equal(t.rc, -ENOENT);
    text_done(&t);
    text_request(&t, "statsx", NULL, NULL, 1);
    assert_int_equal(t.rc, -ENOENT);
    text_done(&t);
}

static void test_unknown_param(void **state)
{
    struct textreq t;
    text_request(&t, "cascade", "bogus", "1", 1);
    assert_int_equal(t.rc, -EINVAL);
    assert_true(contains(t.err, "bogus"));
    assert_true(contains(t.err, "post")); /* it says what the method takes */
    text_done(&t);
    text_request(&t, "stats", "limit", "5", 1);
    assert_int_equal(t.rc, -EINVAL);
    assert_true(contains(t.err, "limit"));
    text_done(&t);
}

static void test_text_uint(void **state)
{
    struct textreq t;
    msgpack_object v = text_value(&t, "top_cascades", "limit", "1");
    assert_int_equal(v.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(v.via.u64, 1);
    text_done(&t);
    v = text_value(&t, "top_cascades", "limit", "1000");
    assert_int_equal(v.via.u64, 1000);
    text_done(&t);
    v = text_value(&t, "top_cascades", "min_size", "0");
    assert_int_equal(v.via.u64, 0);
    text_done(&t);
    v = text_value(&t, "top_cascades", "window_ms", "604800000");
    assert_int_equal(v.via.u64, 604800000);
    text_done(&t);
    text_refused("top_cascades", "limit", "0");
    text_refused("top_cascades", "limit", "1001");
    text_refused("top_cascades", "limit", "abc");
    text_refused("top_cascades", "limit", "-1");
    text_refused("top_cascades", "limit", "");
    text_refused("top_cascades", "limit", "1.5");
    text_refused("top_cascades", "limit", " 5");
    text_refused("top_cascades", "limit", "99999999999999999999999");
    text_refused("top_cascades", "window_ms", "0");
    text_refused("top_cascades", "window_ms", "604800001");
    text_refused("top_actors", "limit", "5000");
    text_refused("actor_links", "limit", "0");
    text_refused("actor_links", "limit", "1001");
    text_refused("actor_cascades", "limit", "0");
    text_refused("actor_cascades", "limit", "1001");
    text_refused("coordination", "min_repeats", "0");
}

static void test_text_int(void **state)
{
    struct textreq t;
    msgpack_object v = text_value(&t, "top_cascades", "since", "-5");
    assert_int_equal(v.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    assert_int_equal(v.via.i64, -5);
    text_done(&t);
    v = text_value(&t, "top_cascades", "until", "1700000000000");
    assert_int_equal(v.via.u64, 1700000000000ULL);
    text_done(&t);
    v = text_value(&t, "top_cascades", "since", "-9223372036854775808");
    assert_true(v.via.i64 == INT64_MIN);
    text_done(&t);
    v = text_value(&t, "top_cascades", "until", "9223372036854775807");
    assert_true(v.via.u64 == (uint64_t)INT64_MAX);
    text_done(&t);
    text_refused("top_cascades", "since", "9223372036854775808");
    text_refused("top_cascades", "since", "-9223372036854775809");
    text_refused("top_cascades", "since", "-");
    text_refused("top_cascades", "since", "yesterday");
    text_refused("top_cascades", "until", "12ms");
}

/* ISO 8601 times (DESIGN §5); the expected ms are Python's datetime.fromisoformat, UTC. */
static void test_time_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {
        {"2015-01-05", 1420416000000LL},
        {"2015-01-05T14:40:46Z", 1420468846000LL},
        {"2015-01-05T14:40:46.250+02:00", 1420461646250LL},
        {"2015-01-05 14:40", 1420468800000LL},
        {"2015-01-05t14:40:46z", 1420468846000LL},
        {"1970-01-01", 0},
        {"1969-12-31T23:59:59.999Z", -1},
        {"2000-02-29T00:00:00-0530", 951802200000LL},
        {"0001-01-01", -62135596800000LL},
        {"9999-12-31T23:59:59.999Z", 253402300799999LL},
        {"2016-12-31T23:59:59+00:00", 1483228799000LL},
        {"1972-12-31T23:59:59.999Z", 94694399999LL},
        {"1973-01-01", ENGINE_SECONDS_BELOW_MS},
        {"2015-01-05T14:40:46.123456789Z", 1420468846123LL}, /* truncated to the ms */
        {"2015-01-05T14:40:46.5", 1420468846500LL},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t ms = 7;
        if (qtime_parse(good[i].s, strlen(good[i].s), &ms) != 0 || ms != good[i].ms)
            fail_msg("%s: got %lld, want %lld", good[i].s, (long long)ms, (long long)good[i].ms);
    }
    static const char *const bad[] = {
        "",           "2015",           "2015-1-5",          "2015-13-01",
        "2015-00-10", "2015-02-29",     "1900-02-29",        "2015-04-31",
        "2015-01-00", "2015-01-05T",    "2015-01-05T24:00",  "2015-01-05T14:60",
        "2015-01-05T14:40:60", "2015-01-05T14:40:46.", "2015-01-05T14:40:46.1234567890Z",
        "2015-01-05T14:40+25:00", "2015-01-05T14:40+02:60", "2015-01-05T14:40+2",
        "2015-01-05T14:40:46Z ", "2015-01-05X14:40", "+2015-01-05", "2015-01-05Z",
        "20150105",   "2015-01-05T1:40", "2015-01-05T14:40:4", "abcd-ef-gh",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = 7;
        if (qtime_parse(bad[i], strlen(bad[i]), &ms) != -EINVAL || ms != 7)
            fail_msg("%s: accepted as %lld", bad[i], (long long)ms);
    }
    /* a leap year's day, and 2000 (divisible by 400) */
    int64_t a, b;
    assert_int_equal(qtime_parse("2016-02-29", 10, &a), 0);
    assert_int_equal(qtime_parse("2016-03-01", 10, &b), 0);
    assert_true(b - a == 86400000LL);
    /* text: an ISO time goes on as its ms, digits as the integer, nonsense is refused */
    struct textreq t;
    msgpack_object v = text_value(&t, "top_cascades", "since", "2015-01-05T14:40:46Z");
    assert_int_equal(v.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_true(v.via.u64 == 1420468846000ULL);
    text_done(&t);
    v = text_value(&t, "top_cascades", "until", "1969-12-31T23:59:59Z");
    assert_int_equal(v.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    assert_true(v.via.i64 == -1000);
    text_done(&t);
    text_refused("top_cascades", "since", "2015-02-30");
    text_refused("top_cascades", "until", "2015-01-05T14:40:46+0200x");
}

static void test_text_bool(void **state)
{
    static const char *const yes[] = {"true", "1", "yes", "TRUE", "Yes"};
    static const char *const no[] = {"false", "0", "no", "False"};
    struct textreq t;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        msgpack_object v = text_value(&t, "cascade", "tree", yes[i]);
        assert_int_equal(v.type, MSGPACK_OBJECT_BOOLEAN);
        assert_true(v.via.boolean);
        text_done(&t);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        msgpack_object v = text_value(&t, "cascade", "tree", no[i]);
        assert_int_equal(v.type, MSGPACK_OBJECT_BOOLEAN);
        assert_false(v.via.boolean);
        text_done(&t);
    }
    text_refused("cascade", "tree", "maybe");
    text_refused("cascade", "tree", "2");
    text_refused("cascade", "tree", "");
    text_refused("cascade", "tree", "truex");
}

static void test_text_float(void **state)
{
    struct textreq t;
    msgpack_object v = text_value(&t, "coordination", "min_ratio", "0.5");
    assert_true(v.type == MSGPACK_OBJECT_FLOAT64 || v.type == MSGPACK_OBJECT_FLOAT32);
    assert_true(v.via.f64 == 0.5);
    text_done(&t);
    v = text_value(&t, "coordination", "min_ratio", "1");
    assert_true(v.via.f64 == 1.0);
    text_done(&t);
    v = text_value(&t, "coordination", "min_ratio", "0");
    assert_true(v.via.f64 == 0.0);
    text_done(&t);
    text_refused("coordination", "min_ratio", "1.5");
    text_refused("coordination", "min_ratio", "-0.1");
    text_refused("coordination", "min_ratio", "abc");
    text_refused("coordination", "min_ratio", "nan");
    text_refused("coordination", "min_ratio", "inf");
    text_refused("coordination", "min_ratio", "0.5x");
    text_refused("coordination", "min_ratio", "");
}

static void test_text_enum_str_id(void **state)
{
    struct textreq t;
    msgpack_object v = text_value(&t, "top_cascades", "by", "structural_virality");
    assert_true(str_is(&v, "structural_virality"));
    text_done(&t);
    v = text_value(&t, "top_actors", "actor_type", "page");
    assert_true(str_is(&v, "page"));
    text_done(&t);
    text_refused("top_cascades", "by", "bogus");
    text_refused("top_cascades", "by", "SIZE");
    text_refused("top_cascades", "by", "");
    text_refused("top_actors", "by", "size");
    text_refused("top_actors", "actor_type", "robot");
    v = text_value(&t, "actor_links", "direction", "in");
    assert_true(str_is(&v, "in"));
    text_done(&t);
    text_refused("actor_links", "direction", "sideways");
    text_refused("actor_links", "direction", "IN");
    text_refused("actor_cascades", "direction", "in"); /* not one of its parameters */
    /* the message lists the choices */
    text_request(&t, "top_cascades", "by", "bogus", 1);
    assert_true(contains(t.err, "size") && contains(t.err, "growth"));
    text_done(&t);

    /* ids stay strings, as typed: "07" is not 7 */
    v = text_value(&t, "cascade", "post", "07");
    assert_true(str_is(&v, "07"));
    text_done(&t);
    v = text_value(&t, "actor", "id", "123");
    assert_true(str_is(&v, "123"));
    text_done(&t);
    v = text_value(&t, "path", "post", "-3");
    assert_true(str_is(&v, "-3"));
    text_done(&t);
    char id[300];
    memset(id, 'p', 256);
    id[256] = 0;
    v = text_value(&t, "cascade", "post", id);
    assert_int_equal(v.via.str.size, 256);
    text_done(&t);
    id[256] = 'p';
    id[257] = 0;
    text_refused("cascade", "post", id);
    text_refused("cascade", "post", "");
    text_refused("actor", "id", "");

    v = text_value(&t, "top_cascades", "label", "false");
    assert_true(str_is(&v, "false"));
    text_done(&t);
    char label[70];
    memset(label, 'l', 64);
    label[64] = 0;
    v = text_value(&t, "top_cascades", "label", label);
    assert_int_equal(v.via.str.size, 64);
    text_done(&t);
    label[64] = 'l';
    label[65] = 0;
    text_refused("top_cascades", "label", label);
    text_refused("top_cascades", "label", "");
    text_refused("content", "key", "");
}

static void test_request_shape(void **state)
{
    struct qtext_param ps[] = {
        {"by", "depth", 2, 5},
        {"limit", "7", 5, 1},
        {"label", "true", 5, 4},
        {"since", "-1", 5, 2},
    };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[256];
    uint64_t msgid = (1ULL << 40) + 3;
    assert_int_equal(qrequest_from_text("top_cascades", 12, ps, 4, msgid, &sb, err, sizeof(err)),
                     0);
    struct textreq t = {0};
    t.sb = sb;
    msgpack_unpacked_init(&t.u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&t.u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, sb.size); /* one value, nothing after it */
    const msgpack_object *m = request_params(&t, "top_cascades", msgid);
    assert_int_equal(m->via.map.size, 4);
    assert_true(str_is(mp_map_get(m, "by"), "depth"));
    assert_int_equal(mp_map_get(m, "limit")->via.u64, 7);
    assert_true(str_is(mp_map_get(m, "label"), "true"));
    assert_int_equal(mp_map_get(m, "since")->via.i64, -1);
    text_done(&t);

    /* no parameters: [0, msgid, method, [{}]] */
    text_request(&t, "stats", NULL, NULL, 0);
    assert_int_equal(t.rc, 0);
    m = request_params(&t, "stats", 0);
    assert_int_equal(m->via.map.size, 0);
    text_done(&t);

    /* the method name is not NUL-terminated: only mlen bytes count */
    msgpack_sbuffer_init(&sb);
    assert_int_equal(qrequest_from_text("labelsXYZ", 6, NULL, 0, 5, &sb, err, sizeof(err)), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* ---------------------------------------------------------------- msgpack values */

/* Packs one value with fn, unpacks it into *u, checks it against method's param. */
static int check_value(const char *method, const char *param, void (*fn)(msgpack_packer *, void *),
                       void *arg, char *err, size_t errlen)
{
    const struct qmethod *m = qmethod_find(method, strlen(method));
    assert_non_null(m);
    const struct qparam *p = qmethod_param(m, param, strlen(param));
    assert_non_null(p);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    fn(&pk, arg);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    err[0] = 0;
    int rc = qparam_check(p, &u.data, err, errlen);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void pk_uint(msgpack_packer *pk, void *a)
{
    msgpack_pack_uint64(pk, *(uint64_t *)a);
}
static void pk_int(msgpack_packer *pk, void *a)
{
    msgpack_pack_int64(pk, *(int64_t *)a);
}
static void pk_str(msgpack_packer *pk, void *a)
{
    size_t n = strlen(a);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, a, n);
}
static void pk_double(msgpack_packer *pk, void *a)
{
    msgpack_pack_double(pk, *(double *)a);
}
static void pk_float(msgpack_packer *pk, void *a)
{
    msgpack_pack_float(pk, (float)*(double *)a);
}
static void pk_nil(msgpack_packer *pk, void *a)
{
    msgpack_pack_nil(pk);
}
static void pk_true(msgpack_packer *pk, void *a)
{
    msgpack_pack_true(pk);
}
static void pk_false(msgpack_packer *pk, void *a)
{
    msgpack_pack_false(pk);
}
static void pk_array(msgpack_packer *pk, void *a)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_uint8(pk, 1);
}
static void pk_map(msgpack_packer *pk, void *a)
{
    msgpack_pack_map(pk, 0);
}
static void pk_bin(msgpack_packer *pk, void *a)
{
    msgpack_pack_bin(pk, 2);
    msgpack_pack_bin_body(pk, "ab", 2);
}

#define OK(method, param, fn, arg)                                                                 \
    do {                                                                                           \
        char e_[256];                                                                              \
        if (check_value(method, param, fn, arg, e_, sizeof(e_)) != 0)                              \
            fail_msg("%s %s (%s): refused: %s", method, param, #fn, e_);                           \
    } while (0)
#define BAD(method, param, fn, arg)                                                                \
    do {                                                                                           \
        char e_[256];                                                                              \
        if (check_value(method, param, fn, arg, e_, sizeof(e_)) != -EINVAL)                        \
            fail_msg("%s %s (%s): accepted", method, param, #fn);                                  \
        if (!contains(e_, param))                                                                  \
            fail_msg("%s %s (%s): message \"%s\" does not name it", method, param, #fn, e_);       \
    } while (0)

static void test_check_id(void **state)
{
    uint64_t u = 7, big = UINT64_MAX;
    int64_t neg = -3;
    double d = 1.5;
    char s256[257], s257[258];
    memset(s256, 'x', 256);
    s256[256] = 0;
    memset(s257, 'x', 257);
    s257[257] = 0;
    OK("cascade", "post", pk_str, "a");
    OK("cascade", "post", pk_str, s256);
    OK("cascade", "post", pk_uint, &u);
    OK("cascade", "post", pk_uint, &big);
    OK("actor", "id", pk_str, "07");
    BAD("cascade", "post", pk_str, "");
    BAD("cascade", "post", pk_str, s257);
    BAD("cascade", "post", pk_int, &neg);
    BAD("cascade", "post", pk_double, &d);
    BAD("cascade", "post", pk_true, NULL);
    BAD("cascade", "post", pk_array, NULL);
    BAD("cascade", "post", pk_map, NULL);
    BAD("cascade", "post", pk_bin, NULL);
    /* nil is not a value: the RPC layer treats it as absent before checking (rpc.c) */
    BAD("cascade", "post", pk_nil, NULL);
    BAD("path", "post", pk_nil, NULL);
}

static void test_check_numbers(void **state)
{
    uint64_t u0 = 0, u1 = 1, u1000 = 1000, u1001 = 1001, u5000 = 5000;
    uint64_t over = (uint64_t)INT64_MAX + 1, win = 604800000, win1 = 604800001;
    int64_t neg = -1, m5 = -5, imin = INT64_MIN;
    double half = 0.5, one = 1.0, onehalf = 1.5, minus = -0.1, zero = 0;
    OK("top_cascades", "limit", pk_uint, &u1);
    OK("top_cascades", "limit", pk_uint, &u1000);
    BAD("top_cascades", "limit", pk_uint, &u0);
    BAD("top_cascades", "limit", pk_uint, &u1001);
    BAD("top_cascades", "limit", pk_uint, &u5000);
    BAD("top_cascades", "limit", pk_int, &neg);
    BAD("top_cascades", "limit", pk_str, "x");
    BAD("top_cascades", "limit", pk_str, "10");
    BAD("top_cascades", "limit", pk_double, &one);
    BAD("top_cascades", "limit", pk_true, NULL);
    BAD("top_cascades", "limit", pk_nil, NULL);
    OK("cascade", "limit", pk_uint, &u5000); /* the tree's limit goes higher */
    OK("top_cascades", "window_ms", pk_uint, &win);
    BAD("top_cascades", "window_ms", pk_uint, &win1);
    BAD("top_cascades", "window_ms", pk_uint, &u0);
    OK("top_cascades", "min_size", pk_uint, &u0);

    OK("top_cascades", "since", pk_int, &m5);
    OK("top_cascades", "since", pk_int, &imin);
    OK("top_cascades", "until", pk_uint, &win);
    BAD("top_cascades", "since", pk_uint, &over);
    BAD("top_cascades", "since", pk_str, "-5");
    BAD("top_cascades", "until", pk_double, &half);

    OK("coordination", "min_ratio", pk_double, &half);
    OK("coordination", "min_ratio", pk_float, &half);
    OK("coordination", "min_ratio", pk_double, &zero);
    OK("coordination", "min_ratio", pk_double, &one);
    OK("coordination", "min_ratio", pk_uint, &u1);
    OK("coordination", "min_ratio", pk_uint, &u0);
    BAD("coordination", "min_ratio", pk_double, &onehalf);
    BAD("coordination", "min_ratio", pk_double, &minus);
    BAD("coordination", "min_ratio", pk_int, &neg);
    BAD("coordination", "min_ratio", pk_str, "0.5");
    double not_a_number = NAN;
    BAD("coordination", "min_ratio", pk_double, &not_a_number);
}

static void test_check_bool_enum_str(void **state)
{
    uint64_t u0 = 0, u1 = 1, u2 = 2;
    OK("cascade", "tree", pk_true, NULL);
    OK("cascade", "tree", pk_false, NULL);
    OK("cascade", "tree", pk_uint, &u0);
    OK("cascade", "tree", pk_uint, &u1);
    BAD("cascade", "tree", pk_uint, &u2);
    BAD("cascade", "tree", pk_str, "yes");
    BAD("cascade", "tree", pk_str, "true");
    BAD("cascade", "tree", pk_nil, NULL);

    OK("top_cascades", "by", pk_str, "size");
    OK("top_cascades", "by", pk_str, "growth");
    OK("top_actors", "by", pk_str, "pagerank");
    BAD("top_cascades", "by", pk_str, "Size");
    BAD("top_cascades", "by", pk_str, "reach");
    BAD("top_cascades", "by", pk_str, "");
    BAD("top_cascades", "by", pk_uint, &u0);
    BAD("top_actors", "actor_type", pk_str, "robot");

    char long_label[70];
    memset(long_label, 'l', 65);
    long_label[65] = 0;
    OK("top_cascades", "label", pk_str, "false");
    BAD("top_cascades", "label", pk_str, long_label);
    long_label[64] = 0;
    OK("top_cascades", "label", pk_str, long_label);
    BAD("top_cascades", "label", pk_str, "");
    BAD("top_cascades", "label", pk_uint, &u1);
    OK("content", "key", pk_str, "https://example.org/x");
    BAD("content", "key", pk_bin, NULL);
}

/* ---------------------------------------------------------------- calls that change state */

static const char *changes(const char *method, const char *k1, const char *v1, const char *k2,
                           const char *v2)
{
    struct qtext_param ps[2] = {{k1, v1, k1 ? strlen(k1) : 0, v1 ? strlen(v1) : 0},
                                {k2, v2, k2 ? strlen(k2) : 0, v2 ? strlen(v2) : 0}};
    const struct qmethod *m = qmethod_find(method, strlen(method));
    assert_non_null(m);
    return qmethod_changes_state(m, ps, k2 ? 2 : k1 ? 1 : 0);
}

/* DESIGN §5: snapshot and analytics refresh=true change state (never on HTTP GET); nothing
 * else does. */
static void test_changes_state(void **state)
{
    (void)state;
    assert_string_equal(changes("snapshot", NULL, NULL, NULL, NULL), "");
    assert_null(changes("analytics", NULL, NULL, NULL, NULL));
    assert_null(changes("analytics", "refresh", "false", NULL, NULL));
    assert_null(changes("analytics", "refresh", "no", NULL, NULL));
    assert_null(changes("analytics", "refresh", "perhaps", NULL, NULL)); /* refused as a 400 */
    assert_string_equal(changes("analytics", "refresh", "true", NULL, NULL), "refresh");
    assert_string_equal(changes("analytics", "refresh", "TRUE", NULL, NULL), "refresh");
    assert_string_equal(changes("analytics", "refresh", "1", NULL, NULL), "refresh");
    assert_string_equal(changes("analytics", "refresh", "false", "refresh", "yes"), "refresh");
    size_t n;
    const struct qmethod *all = qmethod_all(&n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i].name, "snapshot") && strcmp(all[i].name, "analytics")) {
            struct qtext_param p = {"refresh", "true", 7, 4};
            assert_null(qmethod_changes_state(&all[i], &p, 1));
        }
}

/* ---------------------------------------------------------------- lookups and help */

static void test_find(void **state)
{
    size_t n;
    const struct qmethod *all = qmethod_all(&n);
    assert_int_equal(n, 15);
    static const char *const names[] = {
        "stats",        "cascade",        "top_cascades", "actor",
        "top_actors",   "actor_links",    "actor_cascades", "content",
        "labels",       "labels_matched", "coordination", "path",
        "communities",  "analytics",      "snapshot"};
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(all[i].name, names[i]);
        assert_ptr_equal(qmethod_find(names[i], strlen(names[i])), &all[i]);
        assert_true(contains(qmethod_names(), names[i]));
        assert_non_null(qmethod_handler(&all[i])); /* the dispatch table covers the schema */
        for (uint32_t k = 0; k < all[i].nparams; k++) {
            const struct qparam *p = &all[i].params[k];
            assert_ptr_equal(qmethod_param(&all[i], p->name, strlen(p->name)), p);
        }
    }
    assert_null(qmethod_find("", 0));
    assert_null(qmethod_find("cascades", 8));
    assert_null(qmethod_find("cascade", 6));
    assert_non_null(qmethod_find("cascadeXX", 7)); /* only len bytes count */

    const struct qmethod *c = qmethod_find("cascade", 7);
    const struct qparam *p = qmethod_param(c, "post", 4);
    assert_non_null(p);
    assert_true(p->required);
    assert_int_equal(p->type, QT_ID);
    assert_false(qmethod_param(c, "tree", 4)->required);
    assert_null(qmethod_param(c, "posts", 5));
    assert_null(qmethod_param(c, "pos", 3));
    assert_null(qmethod_param(c, "id", 2));
    assert_null(qmethod_param(qmethod_find("stats", 5), "limit", 5));
    assert_true(qmethod_param(qmethod_find("actor", 5), "id", 2)->required);
    assert_true(qmethod_param(qmethod_find("actor_links", 11), "id", 2)->required);
    assert_true(qmethod_param(qmethod_find("actor_cascades", 14), "id", 2)->required);
    assert_int_equal(qmethod_find("actor_links", 11)->shape, QS_LIST);
    assert_int_equal(qmethod_find("actor_cascades", 14)->shape, QS_LIST);
    assert_true(qmethod_param(qmethod_find("content", 7), "key", 3)->required);
    assert_true(qmethod_param(qmethod_find("path", 4), "post", 4)->required);
    assert_false(qmethod_param(qmethod_find("top_cascades", 12), "by", 2)->required);
}

static char *usage_text(const struct qmethod *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    qmethod_usage(f, m);
    fclose(f);
    return buf;
}

static void test_usage(void **state)
{
    size_t n;
    const struct qmethod *all = qmethod_all(&n);
    char *text = usage_text(NULL);
    int lines = 0;
    for (const char *s = text; *s; s++)
        lines += *s == '\n';
    assert_int_equal(lines, (int)n); /* one line per method */
    for (size_t i = 0; i < n; i++) {
        if (!contains(text, all[i].name) || !contains(text, all[i].help))
            fail_msg("the method list lacks %s: %s", all[i].name, text);
    }
    free(text);
    for (size_t i = 0; i < n; i++) {
        text = usage_text(&all[i]);
        assert_true(contains(text, all[i].name));
        if (all[i].nparams == 0)
            assert_true(contains(text, "no parameters"));
        for (uint32_t k = 0; k < all[i].nparams; k++) {
            const struct qparam *p = &all[i].params[k];
            char want[80];
            snprintf(want, sizeof(want), "%s=", p->name);
            if (!contains(text, want) || !contains(text, p->help))
                fail_msg("help of %s lacks %s: %s", all[i].name, p->name, text);
            if (p->def) {
                snprintf(want, sizeof(want), "default: %s", p->def);
                assert_true(contains(text, want));
            }
        }
        free(text);
    }
    text = usage_text(qmethod_find("cascade", 7));
    assert_true(contains(text, "post=id (required)"));
    free(text);
    text = usage_text(qmethod_find("top_cascades", 12));
    assert_true(contains(text, "by={size, depth, max_breadth, structural_virality, unique_actors, "
                               "last_ts, growth}"));
    free(text);
}

/* ---------------------------------------------------------------- rpc_handle */

struct ev {
    const char *post, *parent, *actor;
    int64_t ts;
    const char *label;
};

static void str_field(struct event_field *f, const char *s)
{
    if (!s)
        return;
    f->type = EVF_STR;
    f->str = s;
    f->len = (uint32_t)strlen(s);
}

/* a ─ b ─ c, a ─ d; e under the placeholder x */
static struct engine *small_engine(void)
{
    static const struct ev evs[] = {
        {"a", NULL, "alice", 1000, "false"}, {"b", "a", "bob", 2000, NULL},
        {"c", "b", "carol", 3000, NULL},     {"d", "a", "bob", 4000, NULL},
        {"e", "x", "erin", 5000, NULL},
    };
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        struct event_raw raw;
        memset(&raw, 0, sizeof(raw));
        str_field(&raw.post, evs[i].post);
        str_field(&raw.parent, evs[i].parent);
        str_field(&raw.actor, evs[i].actor);
        str_field(&raw.label, evs[i].label);
        raw.ts.type = EVF_UINT;
        raw.ts.u = (uint64_t)evs[i].ts;
        assert_int_equal(engine_apply_raw(e, &raw), EVENT_OK);
    }
    return e;
}

static int group_setup(void **state)
{
    *state = small_engine();
    return 0;
}

static int group_teardown(void **state)
{
    engine_free(*state);
    return 0;
}

/* One response [1, msgid, error, result], unpacked. */
struct resp {
    msgpack_unpacked u;
    char *buf;
    const msgpack_object *msgid, *error, *result;
    uint64_t code;
    const char *message;
    uint32_t message_len;
};

static void call_raw(struct engine *e, const char *req, size_t len, struct resp *r)
{
    static const struct rpc_server_stats ss = {.uptime_ms = 5, .ingest_rate = 1.5};
    size_t rlen = 0;
    memset(r, 0, sizeof(*r));
    assert_int_equal(rpc_handle(e, &ss, req, len, &r->buf, &rlen), 0);
    msgpack_unpacked_init(&r->u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&r->u, r->buf, rlen, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, rlen);
    const msgpack_object *o = &r->u.data;
    assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(o->via.array.size, 4);
    assert_int_equal(o->via.array.ptr[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(o->via.array.ptr[0].via.u64, 1);
    r->msgid = &o->via.array.ptr[1];
    r->error = &o->via.array.ptr[2];
    r->result = &o->via.array.ptr[3];
    if (r->error->type != MSGPACK_OBJECT_NIL) {
        /* an error: {"code", "message"} and a nil result */
        assert_int_equal(r->error->type, MSGPACK_OBJECT_MAP);
        const msgpack_object *c = mp_map_get(r->error, "code");
        const msgpack_object *m = mp_map_get(r->error, "message");
        assert_non_null(c);
        assert_non_null(m);
        assert_int_equal(c->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        assert_int_equal(m->type, MSGPACK_OBJECT_STR);
        assert_true(m->via.str.size > 0);
        assert_int_equal(r->result->type, MSGPACK_OBJECT_NIL);
        r->code = c->via.u64;
        r->message = m->via.str.ptr;
        r->message_len = m->via.str.size;
    }
}

static void resp_done(struct resp *r)
{
    msgpack_unpacked_destroy(&r->u);
    free(r->buf);
}

static int message_has(const struct resp *r, const char *s)
{
    size_t n = strlen(s);
    for (uint32_t i = 0; i + n <= r->message_len; i++)
        if (memcmp(r->message + i, s, n) == 0)
            return 1;
    return 0;
}

static int msgid_is(const struct resp *r, uint64_t id)
{
    return r->msgid->type == MSGPACK_OBJECT_POSITIVE_INTEGER && r->msgid->via.u64 == id;
}

/* A request packer: [0, msgid, method, [ {npairs} ]]; the caller packs the pairs. */
struct req {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static msgpack_packer *req_begin(struct req *q, uint64_t msgid, const char *method, int npairs)
{
    msgpack_sbuffer_init(&q->sb);
    msgpack_packer_init(&q->pk, &q->sb, msgpack_sbuffer_write);
    msgpack_pack_array(&q->pk, 4);
    msgpack_pack_uint8(&q->pk, 0);
    msgpack_pack_uint64(&q->pk, msgid);
    pk_str(&q->pk, (void *)method);
    msgpack_pack_array(&q->pk, 1);
    msgpack_pack_map(&q->pk, (size_t)npairs);
    return &q->pk;
}

static void req_call(struct engine *e, struct req *q, struct resp *r)
{
    call_raw(e, q->sb.data, q->sb.size, r);
    msgpack_sbuffer_destroy(&q->sb);
}

/* A request made of one packed value built by fn. */
static void call_value(struct engine *e, void (*fn)(msgpack_packer *, void *), void *arg,
                       struct resp *r)
{
    struct req q;
    msgpack_sbuffer_init(&q.sb);
    msgpack_packer_init(&q.pk, &q.sb, msgpack_sbuffer_write);
    fn(&q.pk, arg);
    req_call(e, &q, r);
}

static void env_response(msgpack_packer *pk, void *a)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_uint8(pk, 5);
    pk_str(pk, "stats");
    msgpack_pack_array(pk, 0);
}

static void env_three(msgpack_packer *pk, void *a)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint8(pk, 6);
    pk_str(pk, "stats");
}

static void env_method_int(msgpack_packer *pk, void *a)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint8(pk, 8);
    msgpack_pack_uint8(pk, 42);
    msgpack_pack_array(pk, 0);
}

static void env_params_not_map(msgpack_packer *pk, void *a)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint8(pk, 9);
    pk_str(pk, "cascade");
    msgpack_pack_array(pk, 1);
    msgpack_pack_uint8(pk, 7);
}

static void env_bare_map(msgpack_packer *pk, void *a)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint8(pk, 10);
    pk_str(pk, "cascade");
    msgpack_pack_map(pk, 1);
    pk_str(pk, "post");
    pk_str(pk, "c");
}

static void env_string_msgid(msgpack_packer *pk, void *a)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, 0);
    pk_str(pk, "id-1");
    pk_str(pk, "labels");
    msgpack_pack_array(pk, 0);
}

static void test_rpc_envelope(void **state)
{
    struct engine *e = *state;
    struct resp r;

    /* bytes that are not msgpack, and a truncated value */
    call_raw(e, "\xc1", 1, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    assert_int_equal(r.msgid->type, MSGPACK_OBJECT_NIL);
    resp_done(&r);
    call_raw(e, "\x94\x00\x01", 3, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    resp_done(&r);
    call_raw(e, "", 0, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    resp_done(&r);
    /* not an array: a string, nil, a map */
    call_value(e, pk_str, "stats", &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    assert_true(message_has(&r, "[0, msgid, method"));
    resp_done(&r);
    call_value(e, pk_nil, NULL, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    resp_done(&r);
    call_value(e, pk_map, NULL, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    resp_done(&r);
    /* a response sent as a request, and three elements */
    call_value(e, env_response, NULL, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    resp_done(&r);
    call_value(e, env_three, NULL, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    resp_done(&r);
    /* a method that is not a string: the msgid still comes back */
    call_value(e, env_method_int, NULL, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    assert_true(msgid_is(&r, 8));
    assert_true(message_has(&r, "method"));
    resp_done(&r);
    /* params that are not a map */
    call_value(e, env_params_not_map, NULL, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    assert_true(msgid_is(&r, 9));
    assert_true(message_has(&r, "params"));
    resp_done(&r);
    /* a bare map as params is accepted */
    call_value(e, env_bare_map, NULL, &r);
    assert_int_equal(r.error->type, MSGPACK_OBJECT_NIL);
    assert_true(msgid_is(&r, 10));
    assert_int_equal(mp_map_get(r.result, "size")->via.u64, 4);
    resp_done(&r);
    /* a msgid of another type is echoed as it came */
    call_value(e, env_string_msgid, NULL, &r);
    assert_int_equal(r.error->type, MSGPACK_OBJECT_NIL);
    assert_true(str_is(r.msgid, "id-1"));
    resp_done(&r);
    /* more than 1 MiB is refused */
    size_t big = (1u << 20) + 16;
    char *buf = calloc(1, big);
    assert_non_null(buf);
    call_raw(e, buf, big, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    resp_done(&r);
    free(buf);
}

static void test_rpc_params(void **state)
{
    struct engine *e = *state;
    struct resp r;
    struct req q;

    /* unknown method: 404 with the list */
    req_begin(&q, 11, "nope", 0);
    req_call(e, &q, &r);
    assert_int_equal(r.code, QERR_NOT_FOUND);
    assert_true(msgid_is(&r, 11));
    assert_true(message_has(&r, "nope") && message_has(&r, "top_actors"));
    resp_done(&r);

    /* unknown parameter: 400 naming it */
    msgpack_packer *pk = req_begin(&q, 12, "cascade", 2);
    pk_str(pk, "post");
    pk_str(pk, "a");
    pk_str(pk, "bogus");
    msgpack_pack_uint8(pk, 1);
    req_call(e, &q, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    assert_true(msgid_is(&r, 12));
    assert_true(message_has(&r, "bogus"));
    resp_done(&r);

    /* a key that is not a string */
    pk = req_begin(&q, 13, "cascade", 1);
    msgpack_pack_uint8(pk, 1);
    pk_str(pk, "a");
    req_call(e, &q, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    resp_done(&r);

    /* missing required parameter */
    req_begin(&q, 14, "cascade", 0);
    req_call(e, &q, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    assert_true(msgid_is(&r, 14));
    assert_true(message_has(&r, "post"));
    resp_done(&r);

    /* nil is absent: for a required parameter, missing */
    pk = req_begin(&q, 15, "actor", 1);
    pk_str(pk, "id");
    msgpack_pack_nil(pk);
    req_call(e, &q, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    assert_true(message_has(&r, "missing") && message_has(&r, "id"));
    resp_done(&r);

    /* nil is absent: for an optional one, the default */
    pk = req_begin(&q, 16, "top_cascades", 3);
    pk_str(pk, "label");
    msgpack_pack_nil(pk);
    pk_str(pk, "limit");
    msgpack_pack_nil(pk);
    pk_str(pk, "by");
    msgpack_pack_nil(pk);
    req_call(e, &q, &r);
    assert_int_equal(r.error->type, MSGPACK_OBJECT_NIL);
    assert_int_equal(r.result->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(r.result->via.array.size, 2); /* both cascades, by size */
    assert_true(str_is(mp_map_get(&r.result->via.array.ptr[0], "root"), "a"));
    assert_true(str_is(mp_map_get(&r.result->via.array.ptr[1], "root"), "x"));
    resp_done(&r);

    /* ill-typed */
    pk = req_begin(&q, 17, "cascade", 2);
    pk_str(pk, "post");
    pk_str(pk, "a");
    pk_str(pk, "tree");
    pk_str(pk, "yes");
    req_call(e, &q, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    assert_true(message_has(&r, "tree"));
    resp_done(&r);
    pk = req_begin(&q, 18, "top_cascades", 1);
    pk_str(pk, "limit");
    msgpack_pack_uint16(pk, 5000);
    req_call(e, &q, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    assert_true(message_has(&r, "limit"));
    resp_done(&r);

    /* window_ms only with by=growth */
    pk = req_begin(&q, 19, "top_cascades", 1);
    pk_str(pk, "window_ms");
    msgpack_pack_uint16(pk, 5000);
    req_call(e, &q, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    assert_true(message_has(&r, "window_ms"));
    resp_done(&r);

    /* unknown ids: 404; an integer id is its decimal string */
    static const char *const lookups[][2] = {{"cascade", "post"},
                                             {"path", "post"},
                                             {"actor", "id"},
                                             {"actor_links", "id"},
                                             {"actor_cascades", "id"}};
    for (size_t i = 0; i < sizeof(lookups) / sizeof(lookups[0]); i++) {
        pk = req_begin(&q, 20 + i, lookups[i][0], 1);
        pk_str(pk, (void *)lookups[i][1]);
        pk_str(pk, "no-such-thing");
        req_call(e, &q, &r);
        assert_int_equal(r.code, QERR_NOT_FOUND);
        assert_true(msgid_is(&r, 20 + i));
        assert_true(message_has(&r, "no-such-thing"));
        resp_done(&r);
        pk = req_begin(&q, 30 + i, lookups[i][0], 1);
        pk_str(pk, (void *)lookups[i][1]);
        msgpack_pack_uint32(pk, 123456);
        req_call(e, &q, &r);
        assert_int_equal(r.code, QERR_NOT_FOUND);
        assert_true(message_has(&r, "123456"));
        resp_done(&r);
    }

    /* analytics: 503 */
    static const char *const later[] = {"coordination", "communities"};
    for (size_t i = 0; i < 2; i++) {
        req_begin(&q, 40 + i, later[i], 0);
        req_call(e, &q, &r);
        assert_int_equal(r.code, QERR_NOT_READY);
        assert_true(msgid_is(&r, 40 + i));
        resp_done(&r);
    }
    pk = req_begin(&q, 42, "top_actors", 1);
    pk_str(pk, "by");
    pk_str(pk, "pagerank");
    req_call(e, &q, &r);
    assert_int_equal(r.code, QERR_NOT_READY);
    resp_done(&r);
    /* a bad parameter is a 400 even where the answer would be a 503 */
    pk = req_begin(&q, 43, "coordination", 1);
    pk_str(pk, "min_ratio");
    msgpack_pack_double(pk, 1.5);
    req_call(e, &q, &r);
    assert_int_equal(r.code, QERR_BAD_REQUEST);
    resp_done(&r);
}

static void test_rpc_results(void **state)
{
    struct engine *e = *state;
    struct resp r;
    struct req q;

    /* stats: the engine's counters and the server's figures */
    req_begin(&q, UINT64_MAX, "stats", 0);
    req_call(e, &q, &r);
    assert_int_equal(r.error->type, MSGPACK_OBJECT_NIL);
    assert_true(msgid_is(&r, UINT64_MAX));
    assert_int_equal(mp_map_get(r.result, "posts")->via.u64, 5);
    assert_int_equal(mp_map_get(r.result, "placeholders")->via.u64, 1);
    assert_int_equal(mp_map_get(r.result, "cascades")->via.u64, 2);
    assert_int_equal(mp_map_get(r.result, "accepted")->via.u64, 5);
    assert_int_equal(mp_map_get(r.result, "rejected")->via.u64, 0);
    assert_int_equal(mp_map_get(r.result, "rejected_cycle")->via.u64, 0);
    assert_int_equal(mp_map_get(r.result, "uptime_ms")->via.u64, 5);
    assert_true(mp_map_get(r.result, "ingest_rate")->via.f64 == 1.5);
    resp_done(&r);

    /* cascade by an integer-free string id, with its tree */
    msgpack_packer *pk = req_begin(&q, 50, "cascade", 2);
    pk_str(pk, "post");
    pk_str(pk, "c");
    pk_str(pk, "tree");
    msgpack_pack_true(pk);
    req_call(e, &q, &r);
    assert_int_equal(r.error->type, MSGPACK_OBJECT_NIL);
    assert_true(str_is(mp_map_get(r.result, "root"), "a"));
    assert_true(str_is(mp_map_get(r.result, "label"), "false"));
    assert_int_equal(mp_map_get(r.result, "size")->via.u64, 4);
    assert_int_equal(mp_map_get(r.result, "depth")->via.u64, 2);
    assert_int_equal(mp_map_get(r.result, "max_breadth")->via.u64, 2);
    assert_int_equal(mp_map_get(r.result, "wiener")->via.u64, 10);
    const msgpack_object *nodes = mp_map_get(r.result, "nodes");
    assert_int_equal(nodes->via.array.size, 4);
    assert_true(str_is(mp_map_get(&nodes->via.array.ptr[0], "post"), "a"));
    assert_int_equal(mp_map_get(&nodes->via.array.ptr[0], "parent")->type, MSGPACK_OBJECT_NIL);
    assert_true(str_is(mp_map_get(&nodes->via.array.ptr[3], "post"), "c"));
    assert_int_equal(mp_map_get(&nodes->via.array.ptr[3], "depth")->via.u64, 2);
    assert_int_equal(mp_map_get(r.result, "nodes_truncated")->type, MSGPACK_OBJECT_BOOLEAN);
    assert_false(mp_map_get(r.result, "nodes_truncated")->via.boolean);
    resp_done(&r);

    /* tree with limit: truncated */
    pk = req_begin(&q, 51, "cascade", 3);
    pk_str(pk, "post");
    pk_str(pk, "a");
    pk_str(pk, "tree");
    msgpack_pack_uint8(pk, 1);
    pk_str(pk, "limit");
    msgpack_pack_uint8(pk, 2);
    req_call(e, &q, &r);
    assert_int_equal(mp_map_get(r.result, "nodes")->via.array.size, 2);
    assert_true(mp_map_get(r.result, "nodes_truncated")->via.boolean);
    resp_done(&r);

    /* the placeholder cascade, asked by the placeholder */
    pk = req_begin(&q, 52, "cascade", 1);
    pk_str(pk, "post");
    pk_str(pk, "x");
    req_call(e, &q, &r);
    assert_int_equal(r.error->type, MSGPACK_OBJECT_NIL);
    assert_int_equal(mp_map_get(r.result, "missing")->via.u64, 1);
    assert_int_equal(mp_map_get(r.result, "root_actor")->type, MSGPACK_OBJECT_NIL);
    assert_null(mp_map_get(r.result, "nodes"));
    resp_done(&r);

    /* path: c, b, a with depths 2, 1, 0 */
    pk = req_begin(&q, 53, "path", 1);
    pk_str(pk, "post");
    pk_str(pk, "c");
    req_call(e, &q, &r);
    assert_int_equal(r.result->via.array.size, 3);
    static const char *const chain[] = {"c", "b", "a"};
    for (uint32_t i = 0; i < 3; i++) {
        assert_true(str_is(mp_map_get(&r.result->via.array.ptr[i], "post"), chain[i]));
        assert_int_equal(mp_map_get(&r.result->via.array.ptr[i], "depth")->via.u64, 2 - i);
    }
    resp_done(&r);

    /* actor: bob */
    pk = req_begin(&q, 54, "actor", 1);
    pk_str(pk, "id");
    pk_str(pk, "bob");
    req_call(e, &q, &r);
    assert_int_equal(mp_map_get(r.result, "posts")->via.u64, 2);
    assert_int_equal(mp_map_get(r.result, "reshares_received")->via.u64, 1);
    assert_true(str_is(mp_map_get(r.result, "actor_type"), "account"));
    assert_int_equal(mp_map_get(r.result, "pagerank")->type, MSGPACK_OBJECT_NIL);
    resp_done(&r);

    /* labels: "false", then the unlabelled */
    req_begin(&q, 55, "labels", 0);
    req_call(e, &q, &r);
    assert_int_equal(r.result->via.array.size, 2);
    assert_true(str_is(mp_map_get(&r.result->via.array.ptr[0], "label"), "false"));
    assert_int_equal(mp_map_get(&r.result->via.array.ptr[1], "label")->type, MSGPACK_OBJECT_NIL);
    resp_done(&r);
}

/* The schema's copy of the coordination default (a double: method.c cannot check it at build
 * time) equals the analytics' own. */
static void test_schema_defaults(void **state)
{
    assert_true(QSCHEMA_COORD_MIN_RATIO == COORD_DEFAULT_MIN_RATIO);
}

int main(void)
{
    const struct CMUnitTest text[] = {
        cmocka_unit_test(test_schema_defaults),
        cmocka_unit_test(test_unknown_method),
        cmocka_unit_test(test_unknown_param),
        cmocka_unit_test(test_text_uint),
        cmocka_unit_test(test_text_int),
        cmocka_unit_test(test_time_parse),
        cmocka_unit_test(test_text_bool),
        cmocka_unit_test(test_text_float),
        cmocka_unit_test(test_text_enum_str_id),
        cmocka_unit_test(test_request_shape),
        cmocka_unit_test(test_check_id),
        cmocka_unit_test(test_check_numbers),
        cmocka_unit_test(test_check_bool_enum_str),
        cmocka_unit_test(test_changes_state),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_usage),
    };
    const struct CMUnitTest rpc[] = {
        cmocka_unit_test(test_rpc_envelope),
        cmocka_unit_test(test_rpc_params),
        cmocka_unit_test(test_rpc_results),
    };
    int failed = cmocka_run_group_tests(text, NULL, NULL);
    failed += cmocka_run_group_tests(rpc, group_setup, group_teardown);
    return failed ? 1 : 0;
}
