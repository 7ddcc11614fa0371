/* core/mpscan: values of every msgpack type and width found complete at their last byte, whole
 * and fed in pieces; every cut of them asking for more; each limit at and one past its bound;
 * claims nested inside containers and claims that the bytes allowed cannot hold refused at
 * their header; and, on random and mutated values, the same verdict as msgpack-c wherever
 * msgpack-c can safely be asked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "core/mpscan.h"

/* Limits that only the bytes bound: what rpc_handle uses. */
static struct mpscan_limits open_limits(uint64_t max_bytes)
{
    return (struct mpscan_limits){.max_bytes = max_bytes,
                                  .max_array = UINT32_MAX,
                                  .max_map = UINT32_MAX,
                                  .max_depth = MPSCAN_DEPTH_MAX,
                                  .max_str = UINT32_MAX};
}

static const struct mpscan_limits ingest_defaults = {
    .max_bytes = 4u << 20, .max_array = 100000, .max_map = 64, .max_depth = 8, .max_str = 65536};

/* One scan of buf[0..len) from the start of a value. */
static enum mpscan_status scan(const struct mpscan_limits *l, const void *buf, size_t len,
                               struct mpscan *s)
{
    size_t used;
    mpscan_init(s, l);
    enum mpscan_status st = mpscan_feed(s, buf, len, &used);
    assert_int_equal(used, s->pos);
    return st;
}

/* The same, given `step` bytes per call (each call starting where the last one's pos left off,
 * as a caller with the value in one buffer does). */
static enum mpscan_status scan_pieces(const struct mpscan_limits *l, const uint8_t *buf, size_t len,
                                      size_t step, struct mpscan *s)
{
    mpscan_init(s, l);
    size_t have = 0;
    for (;;) {
        have = have + step < len ? have + step : len;
        size_t used, before = (size_t)s->pos;
        enum mpscan_status st = mpscan_feed(s, buf + before, have - before, &used);
        assert_int_equal(s->pos, before + used);
        if (st != MPSCAN_MORE || have == len)
            return st;
    }
}

struct packed {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void packed_init(struct packed *p)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
}

/* A value complete at its last byte: scanned whole (with bytes after it, which stay untaken),
 * a byte at a time and in pieces of 3; every cut asks for more and resumes to the same end. */
static void expect_complete(const struct mpscan_limits *l, const char *buf, size_t len)
{
    const uint8_t *b = (const uint8_t *)buf;
    uint8_t *tail = malloc(len + 7);
    memcpy(tail, buf, len);
    memset(tail + len, 0xc1, 7); /* not msgpack: must never be looked at */
    struct mpscan s;
    assert_int_equal(scan(l, tail, len + 7, &s), MPSCAN_DONE);
    assert_int_equal(s.pos, len);
    free(tail);
    assert_int_equal(scan_pieces(l, b, len, 1, &s), MPSCAN_DONE);
    assert_int_equal(s.pos, len);
    assert_int_equal(scan_pieces(l, b, len, 3, &s), MPSCAN_DONE);
    assert_int_equal(s.pos, len);
    for (size_t k = 0; k < len; k++) {
        assert_int_equal(scan(l, b, k, &s), MPSCAN_MORE);
        assert_true(s.pos <= k);
        assert_true(k - s.pos < MPSCAN_HEAD_MAX); /* at most a header cut short is left */
        size_t used;
        assert_int_equal(mpscan_feed(&s, b + s.pos, len - s.pos, &used), MPSCAN_DONE);
        assert_int_equal(s.pos, len);
    }
}

static void test_every_type_complete(void **state)
{
    (void)state;
    static char blob[70000];
    memset(blob, 'x', sizeof(blob));
    const size_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536};
    struct mpscan_limits l = open_limits(1u << 20);
    for (int kind = 0; kind < 3; kind++) {
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            struct packed p;
            packed_init(&p);
            if (kind == 0)
                msgpack_pack_str_with_body(&p.pk, blob, lens[i]);
            else if (kind == 1)
                msgpack_pack_bin_with_body(&p.pk, blob, lens[i]);
            else
                msgpack_pack_ext_with_body(&p.pk, blob, lens[i], 7); /* fixext for 1,2,4,8,16 */
            if (lens[i] < 300) /* every cut of the long ones costs more time than it tells */
                expect_complete(&l, p.sb.data, p.sb.size);
            struct mpscan s;
            assert_int_equal(scan(&l, p.sb.data, p.sb.size, &s), MPSCAN_DONE);
            assert_int_equal(s.pos, p.sb.size);
            msgpack_sbuffer_destroy(&p.sb);
        }
    }
    for (size_t n = 1; n <= 16; n *= 2) { /* fixext 1..16 */
        struct packed p;
        packed_init(&p);
        msgpack_pack_ext_with_body(&p.pk, blob, n, -3);
        assert_int_equal((uint8_t)p.sb.data[0], 0xd4 + __builtin_ctz((unsigned)n));
        expect_complete(&l, p.sb.data, p.sb.size);
        msgpack_sbuffer_destroy(&p.sb);
    }
    /* scalars: nil, bools, every integer width, floats */
    struct packed p;
    packed_init(&p);
    msgpack_pack_array(&p.pk, 17);
    msgpack_pack_nil(&p.pk);
    msgpack_pack_true(&p.pk);
    msgpack_pack_false(&p.pk);
    msgpack_pack_uint64(&p.pk, 5);
    msgpack_pack_uint64(&p.pk, 200);
    msgpack_pack_uint64(&p.pk, 60000);
    msgpack_pack_uint64(&p.pk, 4000000000u);
    msgpack_pack_uint64(&p.pk, UINT64_MAX);
    msgpack_pack_int64(&p.pk, -5);
    msgpack_pack_int64(&p.pk, -100);
    msgpack_pack_int64(&p.pk, -30000);
    msgpack_pack_int64(&p.pk, -2000000000);
    msgpack_pack_int64(&p.pk, INT64_MIN);
    msgpack_pack_float(&p.pk, 1.5f);
    msgpack_pack_double(&p.pk, 2.5);
    msgpack_pack_array(&p.pk, 0);
    msgpack_pack_map(&p.pk, 0);
    expect_complete(&l, p.sb.data, p.sb.size);
    msgpack_sbuffer_destroy(&p.sb);
}

static void test_containers_complete(void **state)
{
    (void)state;
    struct mpscan_limits l = open_limits(1u << 20);
    const uint32_t counts[] = {0, 1, 15, 16, 65535, 65536};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        for (int map = 0; map < 2; map++) {
            struct packed p;
            packed_init(&p);
            if (map)
                msgpack_pack_map(&p.pk, counts[i]);
            else
                msgpack_pack_array(&p.pk, counts[i]);
            for (uint32_t k = 0; k < counts[i] * (map ? 2u : 1u); k++)
                msgpack_pack_uint32(&p.pk, k);
            if (counts[i] < 100)
                expect_complete(&l, p.sb.data, p.sb.size);
            struct mpscan s;
            assert_int_equal(scan(&l, p.sb.data, p.sb.size, &s), MPSCAN_DONE);
            assert_int_equal(s.pos, p.sb.size);
            /* the last byte missing: not complete, and the claims still fit */
            assert_int_equal(scan(&l, p.sb.data, p.sb.size - 1, &s), MPSCAN_MORE);
            msgpack_sbuffer_destroy(&p.sb);
        }
    }
    /* an RPC request, nested maps and arrays, containers ending together */
    struct packed p;
    packed_init(&p);
    msgpack_pack_array(&p.pk, 4);
    msgpack_pack_uint8(&p.pk, 0);
    msgpack_pack_uint32(&p.pk, 12345);
    msgpack_pack_str_with_body(&p.pk, "top_cascades", 12);
    msgpack_pack_array(&p.pk, 1);
    msgpack_pack_map(&p.pk, 2);
    msgpack_pack_str_with_body(&p.pk, "by", 2);
    msgpack_pack_str_with_body(&p.pk, "size", 4);
    msgpack_pack_str_with_body(&p.pk, "x", 1);
    msgpack_pack_array(&p.pk, 2);
    msgpack_pack_array(&p.pk, 1);
    msgpack_pack_map(&p.pk, 0);
    msgpack_pack_array(&p.pk, 0);
    expect_complete(&l, p.sb.data, p.sb.size);
    expect_complete(&ingest_defaults, p.sb.data, p.sb.size);
    msgpack_sbuffer_destroy(&p.sb);
}

/* Refused at the header at `at` with violation v and message msg, whole and a byte at a time. */
static void expect_refused(const struct mpscan_limits *l, const void *buf, size_t len,
                           enum mpscan_status st, enum mpscan_violation v, size_t at,
                           const char *msg)
{
    struct mpscan s;
    char got[160];
    for (size_t step = 1; step <= len; step += len > 1 ? len - 1 : 1) {
        assert_int_equal(scan_pieces(l, buf, len, step, &s), st);
        assert_int_equal(s.violation, v);
        assert_int_equal(s.pos, at);
        mpscan_describe(&s, got, sizeof(got));
        assert_string_equal(got, msg);
    }
}

static void test_limits(void **state)
{
    (void)state;
    struct mpscan_limits l = {
        .max_bytes = 1000, .max_array = 20, .max_map = 10, .max_depth = 3, .max_str = 512};
    uint8_t buf[2048];
    memset(buf, 0x01, sizeof(buf));
    struct mpscan s;

    /* arrays: 20 elements pass, 21 do not */
    buf[0] = 0xdc, buf[1] = 0, buf[2] = 20;
    assert_int_equal(scan(&l, buf, 23, &s), MPSCAN_DONE);
    buf[2] = 21;
    expect_refused(&l, buf, 24, MPSCAN_LIMIT, MPSCAN_LIM_ARRAY, 0,
                   "array of 21 elements exceeds the limit of 20");
    /* maps: 10 keys pass, 11 do not (a fixmap's count is in its type byte) */
    buf[0] = 0x8a;
    assert_int_equal(scan(&l, buf, 21, &s), MPSCAN_DONE);
    buf[0] = 0x8b;
    expect_refused(&l, buf, 23, MPSCAN_LIMIT, MPSCAN_LIM_MAP, 0,
                   "map of 11 keys exceeds the limit of 10");
    /* str, bin, ext: 512 bytes pass, 513 do not */
    const uint8_t heads[3][4] = {{0xda, 0x02, 0x00}, {0xc5, 0x02, 0x00}, {0xc8, 0x02, 0x00, 9}};
    const char *names[3] = {"str", "bin", "ext"};
    for (int k = 0; k < 3; k++) {
        size_t hs = k == 2 ? 4 : 3;
        memcpy(buf, heads[k], hs);
        assert_int_equal(scan(&l, buf, hs + 512, &s), MPSCAN_DONE);
        assert_int_equal(s.pos, hs + 512);
        buf[2] = 0x01;
        char msg[80];
        snprintf(msg, sizeof(msg), "%s of 513 bytes exceeds the limit of 512", names[k]);
        expect_refused(&l, buf, hs + 513, MPSCAN_LIMIT, MPSCAN_LIM_STRING, 0, msg);
    }
    /* depth: 3 open containers pass (empty ones count), a 4th does not; at byte 3 */
    const uint8_t deep3[] = {0x91, 0x91, 0x90}, deep4[] = {0x91, 0x91, 0x81, 0x90, 0x01};
    assert_int_equal(scan(&l, deep3, sizeof(deep3), &s), MPSCAN_DONE);
    expect_refused(&l, deep4, sizeof(deep4), MPSCAN_LIMIT, MPSCAN_LIM_DEPTH, 3,
                   "nesting depth of 4 exceeds the limit of 3");
    /* bytes: a value of exactly max_bytes passes, one more does not, and a str that cannot fit
     * is refused at its header, before its bytes come */
    l.max_str = 4096;
    buf[0] = 0xda, buf[1] = 0x03, buf[2] = 0xe5; /* 997 + 3 */
    assert_int_equal(scan(&l, buf, 1000, &s), MPSCAN_DONE);
    buf[2] = 0xe6;
    expect_refused(&l, buf, 3, MPSCAN_LIMIT, MPSCAN_LIM_BYTES, 0,
                   "value of at least 1001 bytes exceeds the limit of 1000");
    /* a limit above msgpack-c's parse stack is lowered to it */
    struct mpscan_limits deep = open_limits(1000);
    deep.max_depth = 1000;
    uint8_t nest[40];
    memset(nest, 0x91, sizeof(nest));
    expect_refused(&deep, nest, sizeof(nest), MPSCAN_LIMIT, MPSCAN_LIM_DEPTH, 32,
                   "nesting depth of 33 exceeds the limit of 32");
}

/* The requests that left the server at a VmSize of hundreds of GB: a few bytes claiming
 * containers of hundreds of millions of entries, bare or nested. */
static void test_hostile_claims(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len, at;
        enum mpscan_violation with_defaults;
    } cases[] = {
        {"\xdd\x10\x00\x00\x00", 5, 0, MPSCAN_LIM_ARRAY},
        {"\xdf\x10\x00\x00\x00", 5, 0, MPSCAN_LIM_MAP},
        {"\xdd\xff\xff\xff\xff", 5, 0, MPSCAN_LIM_ARRAY},
        {"\xdf\xff\xff\xff\xff", 5, 0, MPSCAN_LIM_MAP},
        {"\x94\x00\x01\xa5stats\xdd\x10\x00\x00\x00", 14, 9, MPSCAN_LIM_ARRAY},
        {"\x91\xdf\x10\x00\x00\x00", 6, 1, MPSCAN_LIM_MAP},
        {"\x92\x91\x81\xa1k\xdb\xff\xff\xff\xff", 10, 5, MPSCAN_LIM_STRING},
        {"\xc9\xff\xff\xff\xff\x01", 6, 0, MPSCAN_LIM_STRING},
    };
    struct mpscan_limits rpc_port = ingest_defaults;
    rpc_port.max_bytes = 1u << 20; /* --max-rpc-request-bytes */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mpscan s;
        assert_int_equal(scan(&rpc_port, cases[i].bytes, cases[i].len, &s), MPSCAN_LIMIT);
        assert_int_equal(s.violation, cases[i].with_defaults);
        assert_int_equal(s.pos, cases[i].at);
        /* with only the bytes to bound them, the claims are refused all the same */
        struct mpscan_limits l = open_limits(1u << 20);
        assert_int_equal(scan(&l, cases[i].bytes, cases[i].len, &s), MPSCAN_LIMIT);
        assert_int_equal(s.violation, MPSCAN_LIM_BYTES);
        assert_int_equal(s.pos, cases[i].at);
        /* and where the bytes given are all there are (rpc_handle) */
        l = open_limits(cases[i].len);
        assert_int_equal(scan(&l, cases[i].bytes, cases[i].len, &s), MPSCAN_LIMIT);
        assert_int_equal(s.violation, MPSCAN_LIM_BYTES);
    }
}

/* Claims add up: each is small, but together they cannot fit. */
static void test_claims_add_up(void **state)
{
    (void)state;
    struct mpscan s;
    /* [str8 of 40, [15 items], str8 of 40] needs 1 + 42 + 16 + 42 = 101 bytes */
    uint8_t v[101];
    memset(v, 'a', sizeof(v));
    v[0] = 0x93;
    v[1] = 0xd9, v[2] = 40;
    v[43] = 0x9f;
    for (int k = 0; k < 15; k++)
        v[44 + k] = (uint8_t)k;
    v[59] = 0xd9, v[60] = 40;
    struct mpscan_limits l = open_limits(101);
    assert_int_equal(scan(&l, v, sizeof(v), &s), MPSCAN_DONE);
    assert_int_equal(s.pos, 101);
    l.max_bytes = 100;
    expect_refused(&l, v, sizeof(v), MPSCAN_LIMIT, MPSCAN_LIM_BYTES, 59,
                   "value of at least 101 bytes exceeds the limit of 100");
    /* the outer claim alone: 3 items after 1 byte need 4 */
    l.max_bytes = 3;
    expect_refused(&l, v, sizeof(v), MPSCAN_LIMIT, MPSCAN_LIM_BYTES, 0,
                   "value of at least 4 bytes exceeds the limit of 3");
    /* a map's pairs count twice: {15 pairs} needs 31 bytes */
    uint8_t m[31];
    memset(m, 0, sizeof(m));
    m[0] = 0x8f;
    l.max_bytes = 31;
    assert_int_equal(scan(&l, m, sizeof(m), &s), MPSCAN_DONE);
    l.max_bytes = 30;
    expect_refused(&l, m, sizeof(m), MPSCAN_LIMIT, MPSCAN_LIM_BYTES, 0,
                   "value of at least 31 bytes exceeds the limit of 30");
}

static void test_malformed(void **state)
{
    (void)state;
    struct mpscan_limits l = open_limits(1000);
    expect_refused(&l, "\xc1", 1, MPSCAN_MALFORMED, MPSCAN_LIM_NONE, 0, "malformed msgpack");
    expect_refused(&l, "\x92\x01\xc1", 3, MPSCAN_MALFORMED, MPSCAN_LIM_NONE, 2,
                   "malformed msgpack");
    expect_refused(&l, "\x81\xa1k\x91\xc1", 5, MPSCAN_MALFORMED, MPSCAN_LIM_NONE, 4,
                   "malformed msgpack");
    /* 0xc1 inside a str is a byte of the str */
    struct mpscan s;
    assert_int_equal(scan(&l, "\xa2\xc1\xc1", 3, &s), MPSCAN_DONE);
}

/* mpscan_head: every header whole, cut short (0), and 0xc1 (-1). */
static void test_head(void **state)
{
    (void)state;
    struct mpscan_head h;
    static const struct {
        const char *b;
        size_t len;
        enum mpscan_kind kind;
        uint8_t size;
        uint64_t n;
    } heads[] = {
        {"\x05", 1, MPSCAN_SCALAR, 1, 0},
        {"\xe0", 1, MPSCAN_SCALAR, 1, 0},
        {"\xcf", 1, MPSCAN_SCALAR, 1, 8},
        {"\xa3", 1, MPSCAN_STR, 1, 3},
        {"\xd9\x20", 2, MPSCAN_STR, 2, 32},
        {"\xda\x01\x00", 3, MPSCAN_STR, 3, 256},
        {"\xdb\x00\x01\x00\x00", 5, MPSCAN_STR, 5, 65536},
        {"\xc4\x07", 2, MPSCAN_BIN, 2, 7},
        {"\xc9\x00\x00\x00\x09", 5, MPSCAN_EXT, 5, 9},
        {"\xd8", 1, MPSCAN_EXT, 1, 16},
        {"\x9f", 1, MPSCAN_ARRAY, 1, 15},
        {"\xdd\x10\x00\x00\x00", 5, MPSCAN_ARRAY, 5, 268435456},
        {"\x8f", 1, MPSCAN_MAP, 1, 15},
        {"\xde\xff\xff", 3, MPSCAN_MAP, 3, 65535},
    };
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        assert_int_equal(mpscan_head(heads[i].b, heads[i].len, &h), 1);
        assert_int_equal(h.kind, heads[i].kind);
        assert_int_equal(h.size, heads[i].size);
        assert_int_equal(h.n, heads[i].n);
        for (size_t k = 1; k < heads[i].len; k++)
            assert_int_equal(mpscan_head(heads[i].b, k, &h), 0);
    }
    assert_int_equal(mpscan_head("\xc1", 1, &h), -1);
    assert_int_equal(h.kind, MPSCAN_BAD);
}

/* ---- against msgpack-c -------------------------------------------------------------------- */

static uint64_t rng = 0x2545f4914f6cdd1dULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void pack_random(msgpack_packer *pk, int depth)
{
    static const char bytes[300] = "some bytes";
    unsigned what = (unsigned)(rnd() % (depth < 6 ? 12 : 9));
    switch (what) {
    case 0:
        msgpack_pack_nil(pk);
        break;
    case 1:
        msgpack_pack_uint64(pk, rnd() >> (rnd() % 64));
        break;
    case 2:
        msgpack_pack_int64(pk, -(int64_t)(rnd() >> (1 + rnd() % 63)));
        break;
    case 3:
        msgpack_pack_double(pk, 0.25);
        break;
    case 4:
        msgpack_pack_str_with_body(pk, bytes, rnd() % 300);
        break;
    case 5:
        msgpack_pack_bin_with_body(pk, bytes, rnd() % 40);
        break;
    case 6:
        msgpack_pack_ext_with_body(pk, bytes, rnd() % 20, 1);
        break;
    case 7:
        msgpack_pack_true(pk);
        break;
    case 8:
        msgpack_pack_float(pk, 1.0f);
        break;
    case 9:
    case 10: {
        uint32_t n = (uint32_t)(rnd() % 20);
        msgpack_pack_array(pk, n);
        for (uint32_t i = 0; i < n; i++)
            pack_random(pk, depth + 1);
        break;
    }
    default: {
        uint32_t n = (uint32_t)(rnd() % 18);
        msgpack_pack_map(pk, n);
        for (uint32_t i = 0; i < 2 * n; i++)
            pack_random(pk, depth + 1);
    }
    }
}

/* Where the scanner approves or rejects without a limit, msgpack-c agrees: a value it finds
 * complete msgpack-c parses to the same end, one it finds malformed msgpack-c refuses, one it
 * waits on msgpack-c waits on. (msgpack-c is not asked about values the scanner refuses for
 * their claims: that is what would have it reserve gigabytes.) */
static void agree_with_msgpack_c(const char *buf, size_t len)
{
    struct mpscan_limits l = open_limits(len);
    struct mpscan s, t;
    enum mpscan_status st = scan(&l, buf, len, &s);
    assert_int_equal(scan_pieces(&l, (const uint8_t *)buf, len, 1 + rnd() % 7, &t), st);
    assert_int_equal(t.pos, s.pos);
    assert_int_equal(t.violation, s.violation);
    if (st == MPSCAN_LIMIT)
        return;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&u, buf, len, &off);
    if (st == MPSCAN_DONE) {
        assert_int_equal(r, MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(off, s.pos);
    } else if (st == MPSCAN_MALFORMED) {
        assert_int_equal(r, MSGPACK_UNPACK_PARSE_ERROR);
    } else {
        assert_int_equal(r, MSGPACK_UNPACK_CONTINUE);
    }
    msgpack_unpacked_destroy(&u);
}

static void test_against_msgpack_c(void **state)
{
    (void)state;
    for (int round = 0; round < 3000; round++) {
        struct packed p;
        packed_init(&p);
        pack_random(&p.pk, 0);
        agree_with_msgpack_c(p.sb.data, p.sb.size);
        /* cut short, then a few bytes changed */
        agree_with_msgpack_c(p.sb.data, (size_t)(rnd() % p.sb.size));
        for (int k = 0; k < 3; k++)
            p.sb.data[rnd() % p.sb.size] = (char)rnd();
        agree_with_msgpack_c(p.sb.data, p.sb.size);
        msgpack_sbuffer_destroy(&p.sb);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type_complete),
        cmocka_unit_test(test_containers_complete),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_hostile_claims),
        cmocka_unit_test(test_claims_add_up),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_against_msgpack_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
