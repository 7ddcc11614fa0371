/* proto: every encoder read back by its parser (ack, fatal, RPC envelope), an event packed by
 * proto_event_pack and decoded by the server's own ingest decoder into the same event_raw, and
 * malformed replies and responses refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cascade/mp.h"
#include "cascade/proto.h"
#include "net/ingest_proto.h"

/* One packed value, unpacked again: the test's sbuffer and unpacked. */
struct packed {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
};

static void packed_init(struct packed *p)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
    msgpack_unpacked_init(&p->u);
}

static const msgpack_object *packed_read(struct packed *p)
{
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&p->u, p->sb.data, p->sb.size, &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, p->sb.size); /* exactly one value */
    return &p->u.data;
}

static void packed_free(struct packed *p)
{
    msgpack_unpacked_destroy(&p->u);
    msgpack_sbuffer_destroy(&p->sb);
}

/* The bytes of a msgpack value written by hand (a string literal), unpacked. */
#define UNPACK(u, lit) unpack_bytes(u, lit, sizeof(lit) - 1)
static const msgpack_object *unpack_bytes(msgpack_unpacked *u, const char *b, size_t len)
{
    msgpack_unpacked_init(u);
    assert_int_equal(msgpack_unpack_next(u, b, len, NULL), MSGPACK_UNPACK_SUCCESS);
    return &u->data;
}

static void test_ack_round_trip(void **state)
{
    (void)state;
    char errs[10][PROTO_ACK_ERR_LEN];
    const char *ptrs[10];
    for (int i = 0; i < 10; i++) {
        proto_ack_err_format(errs[i], sizeof(errs[i]), 1000 + (uint64_t)i,
                             i % 2 ? "missing_actor" : "bad_ts");
        ptrs[i] = errs[i];
    }
    struct packed p;
    packed_init(&p);
    assert_int_equal(proto_ack_pack(&p.pk, 5, UINT64_MAX, 10, ptrs, 10), 0);
    struct proto_ack a;
    struct proto_fatal f;
    assert_int_equal(proto_reply_parse(packed_read(&p), &a, &f), PROTO_REPLY_ACK);
    assert_int_equal(a.ok, 5);
    assert_true(a.dup == UINT64_MAX);
    assert_int_equal(a.rej, 10);
    assert_non_null(a.err);
    /* only the last PROTO_ACK_ERR_MAX, oldest first */
    assert_int_equal(a.err->via.array.size, PROTO_ACK_ERR_MAX);
    for (uint32_t i = 0; i < PROTO_ACK_ERR_MAX; i++) {
        uint64_t ev;
        char reason[32];
        assert_int_equal(proto_ack_err_parse(&a.err->via.array.ptr[i], &ev, reason, sizeof reason),
                         0);
        assert_int_equal(ev, 1002 + i);
        assert_string_equal(reason, (i % 2) ? "missing_actor" : "bad_ts");
    }
    packed_free(&p);

    /* no rejections: an empty err array */
    packed_init(&p);
    assert_int_equal(proto_ack_pack(&p.pk, 0, 0, 0, NULL, 0), 0);
    assert_int_equal(proto_reply_parse(packed_read(&p), &a, NULL), PROTO_REPLY_ACK);
    assert_int_equal(a.ok + a.dup + a.rej, 0);
    assert_int_equal(a.err->via.array.size, 0);
    packed_free(&p);
}

static void test_ack_err_parse_refuses(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "event",
                         "event :x",
                         "event 12 bad_ts",
                         "event 12:",
                         "Event 1: x",
                         "event 99999999999999999999: x",
                         "event -1: x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        msgpack_object o = {.type = MSGPACK_OBJECT_STR};
        o.via.str.ptr = bad[i];
        o.via.str.size = (uint32_t)strlen(bad[i]);
        uint64_t ev;
        char reason[16];
        assert_int_equal(proto_ack_err_parse(&o, &ev, reason, sizeof reason), -EPROTO);
    }
    msgpack_object n = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER};
    uint64_t ev;
    char reason[16];
    assert_int_equal(proto_ack_err_parse(&n, &ev, reason, sizeof reason), -EPROTO);
    /* a long reason is cut to the buffer, NUL-terminated */
    msgpack_object o = {.type = MSGPACK_OBJECT_STR};
    o.via.str.ptr = "event 7: a_very_long_reason_indeed";
    o.via.str.size = (uint32_t)strlen(o.via.str.ptr);
    assert_int_equal(proto_ack_err_parse(&o, &ev, reason, 6), 0);
    assert_int_equal(ev, 7);
    assert_string_equal(reason, "a_ver");
}

static void test_fatal_round_trip(void **state)
{
    (void)state;
    struct packed p;
    struct proto_fatal f;
    packed_init(&p);
    assert_int_equal(proto_fatal_pack(&p.pk, "malformed msgpack at byte 12", NULL), 0);
    assert_int_equal(proto_reply_parse(packed_read(&p), NULL, &f), PROTO_REPLY_FATAL);
    assert_int_equal(f.msg_len, strlen("malformed msgpack at byte 12"));
    assert_memory_equal(f.msg, "malformed msgpack at byte 12", f.msg_len);
    assert_false(f.has_resend);
    packed_free(&p);

    uint64_t from = 1234567890123ULL;
    packed_init(&p);
    assert_int_equal(proto_fatal_pack(&p.pk, "resend", &from), 0);
    assert_int_equal(proto_reply_parse(packed_read(&p), NULL, &f), PROTO_REPLY_FATAL);
    assert_true(f.has_resend);
    assert_true(f.resend_from == from);
    packed_free(&p);
}

static void test_reply_refuses(void **state)
{
    (void)state;
    msgpack_unpacked u;
    struct proto_ack a;
    struct proto_fatal f;
    /* [1]: not a map */
    assert_int_equal(proto_reply_parse(UNPACK(&u, "\x91\x01"), &a, &f), PROTO_REPLY_BAD);
    msgpack_unpacked_destroy(&u);
    /* {"ok": 1, "dup": 2}: no rej */
    assert_int_equal(proto_reply_parse(UNPACK(&u, "\x82\xa2ok\x01\xa3"
                                                  "dup\x02"),
                                       &a, &f),
                     PROTO_REPLY_BAD);
    msgpack_unpacked_destroy(&u);
    /* {"ok": -1, "dup": 0, "rej": 0}: a negative count */
    assert_int_equal(proto_reply_parse(UNPACK(&u, "\x83\xa2ok\xff\xa3"
                                                  "dup\x00\xa3rej\x00"),
                                       &a, &f),
                     PROTO_REPLY_BAD);
    msgpack_unpacked_destroy(&u);
    /* {"ok": "1", "dup": 0, "rej": 0}: a str count */
    assert_int_equal(proto_reply_parse(UNPACK(&u, "\x83\xa2ok\xa1"
                                                  "1\xa3"
                                                  "dup\x00\xa3rej\x00"),
                                       &a, &f),
                     PROTO_REPLY_BAD);
    msgpack_unpacked_destroy(&u);
    /* {"ok": 1, "dup": 0, "rej": 0, "err": 5}: an err that is no array counts as none */
    assert_int_equal(proto_reply_parse(UNPACK(&u, "\x84\xa2ok\x01\xa3"
                                                  "dup\x00\xa3rej\x00"
                                                  "\xa3"
                                                  "err\x05"),
                                       &a, &f),
                     PROTO_REPLY_ACK);
    assert_null(a.err);
    msgpack_unpacked_destroy(&u);
    /* {"fatal": 3}: still a fatal, its message unknown */
    assert_int_equal(proto_reply_parse(UNPACK(&u, "\x81\xa5"
                                                  "fatal\x03"),
                                       &a, &f),
                     PROTO_REPLY_FATAL);
    assert_int_equal(f.msg_len, 1);
    assert_memory_equal(f.msg, "?", 1);
    assert_false(f.has_resend);
    msgpack_unpacked_destroy(&u);
}

static void test_rpc_request(void **state)
{
    (void)state;
    struct packed p;
    packed_init(&p);
    assert_int_equal(proto_rpc_request_pack(&p.pk, 42, "cascade", 7, 1), 0);
    msgpack_pack_str_with_body(&p.pk, "post", 4);
    msgpack_pack_str_with_body(&p.pk, "p1", 2);
    const msgpack_object *o = packed_read(&p);
    assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(o->via.array.size, 4);
    const msgpack_object *a = o->via.array.ptr;
    assert_int_equal(a[0].via.u64, 0);
    assert_int_equal(a[1].via.u64, 42);
    assert_int_equal(a[2].via.str.size, 7);
    assert_memory_equal(a[2].via.str.ptr, "cascade", 7);
    assert_int_equal(a[3].type, MSGPACK_OBJECT_ARRAY);
    const msgpack_object *post = mp_map_get(&a[3].via.array.ptr[0], "post");
    assert_non_null(post);
    assert_memory_equal(post->via.str.ptr, "p1", 2);
    packed_free(&p);

    /* the auth request is one too, and proto_auth_rpc_request takes it */
    packed_init(&p);
    proto_auth_pack_rpc(&p.pk, 9, "0123456789abcdef");
    uint64_t id;
    assert_int_equal(proto_auth_rpc_request(packed_read(&p), "0123456789abcdef", 16, &id),
                     PROTO_AUTH_OK);
    assert_int_equal(id, 9);
    packed_free(&p);
}

static void test_rpc_response_round_trip(void **state)
{
    (void)state;
    struct packed p;
    struct proto_rpc_response r;
    const msgpack_object id = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = 77};

    packed_init(&p);
    assert_int_equal(proto_rpc_response_head(&p.pk, &id), 0);
    msgpack_pack_map(&p.pk, 1);
    msgpack_pack_str_with_body(&p.pk, "size", 4);
    msgpack_pack_uint32(&p.pk, 3);
    assert_int_equal(proto_rpc_response_parse(packed_read(&p), &r), 0);
    assert_true(r.has_id);
    assert_int_equal(r.msgid, 77);
    assert_null(r.error);
    assert_int_equal(mp_map_get(r.result, "size")->via.u64, 3);
    packed_free(&p);

    packed_init(&p);
    assert_int_equal(proto_rpc_error_pack(&p.pk, NULL, 404, "unknown post p9"), 0);
    assert_int_equal(proto_rpc_response_parse(packed_read(&p), &r), 0);
    assert_false(r.has_id);
    assert_non_null(r.error);
    assert_int_equal(r.code, 404);
    assert_int_equal(r.message_len, strlen("unknown post p9"));
    assert_memory_equal(r.message, "unknown post p9", r.message_len);
    assert_int_equal(r.result->type, MSGPACK_OBJECT_NIL);
    packed_free(&p);

    /* the server's answer to a right token */
    packed_init(&p);
    proto_auth_pack_rpc_ok(&p.pk, 5);
    assert_int_equal(proto_rpc_response_parse(packed_read(&p), &r), 0);
    assert_int_equal(r.msgid, 5);
    assert_null(r.error);
    assert_true(mp_map_get(r.result, "authenticated")->via.boolean);
    packed_free(&p);
}

static void test_rpc_response_refuses(void **state)
{
    (void)state;
    msgpack_unpacked u;
    struct proto_rpc_response r;
    /* a request, not a response */
    assert_int_equal(proto_rpc_response_parse(UNPACK(&u, "\x94\x00\x01\xa1x\x90"), &r), -EPROTO);
    msgpack_unpacked_destroy(&u);
    /* three elements */
    assert_int_equal(proto_rpc_response_parse(UNPACK(&u, "\x93\x01\x01\xc0"), &r), -EPROTO);
    msgpack_unpacked_destroy(&u);
    /* a map */
    assert_int_equal(proto_rpc_response_parse(UNPACK(&u, "\x80"), &r), -EPROTO);
    msgpack_unpacked_destroy(&u);
    /* an error that is not a map: an error all the same, code 0, no message */
    assert_int_equal(proto_rpc_response_parse(UNPACK(&u, "\x94\x01\x01\x05\xc0"), &r), 0);
    assert_non_null(r.error);
    assert_int_equal(r.code, 0);
    assert_null(r.message);
    msgpack_unpacked_destroy(&u);
}

/* ---- events: packed here, decoded by the server's ingest decoder ---- */

struct got {
    int n;
    struct event_raw raw[4];
    char strs[4][8][64]; /* copies: the decoder's buffer moves on */
};

static int on_event(void *ctx, const struct event_raw *raw)
{
    struct got *g = ctx;
    assert_non_null(raw);
    assert_true(g->n < 4);
    g->raw[g->n] = *raw;
    for (int k = 0; k < PROTO_EV_NKEYS; k++) {
        struct event_field *f = proto_event_field(&g->raw[g->n], k);
        if (f->type == EVF_STR) {
            assert_true(f->len < 64);
            memcpy(g->strs[g->n][k], f->str, f->len);
            f->str = g->strs[g->n][k];
        }
    }
    g->n++;
    return 0;
}

static struct event_field fstr(const char *s)
{
    return (struct event_field){.type = EVF_STR, .str = s, .len = (uint32_t)strlen(s)};
}

static void assert_field_equal(const struct event_field *a, const struct event_field *b)
{
    assert_int_equal(a->type, b->type);
    if (a->type == EVF_STR) {
        assert_int_equal(a->len, b->len);
        assert_memory_equal(a->str, b->str, a->len);
    } else if (a->type == EVF_UINT) {
        assert_true(a->u == b->u);
    } else if (a->type == EVF_NEGINT) {
        assert_true(a->i == b->i);
    }
}

static void test_event_round_trip(void **state)
{
    (void)state;
    struct event_raw in[3];
    memset(in, 0, sizeof in);
    /* every key, strings and integers */
    in[0].post = fstr("p1");
    in[0].actor = (struct event_field){.type = EVF_UINT, .u = UINT64_MAX};
    in[0].ts = (struct event_field){.type = EVF_UINT, .u = 1420070400000ULL};
    in[0].parent = fstr("p0");
    in[0].kind = fstr("quote");
    in[0].actor_type = fstr("page");
    in[0].content = fstr("https://news.example/1");
    in[0].label = fstr("false");
    /* a few keys only; nil parent, negative ts, an empty str, a value of another type */
    in[1].post = fstr("");
    in[1].ts = (struct event_field){.type = EVF_NEGINT, .i = -5};
    in[1].parent = (struct event_field){.type = EVF_NIL};
    in[1].label = (struct event_field){.type = EVF_OTHER};
    /* nothing at all: an empty map */

    struct packed p;
    packed_init(&p);
    for (int i = 0; i < 3; i++)
        assert_int_equal(proto_event_pack(&p.pk, &in[i]), 0);
    struct ingest_decoder *d;
    assert_int_equal(ingest_decoder_new(NULL, &d), 0);
    assert_int_equal(ingest_decoder_feed(d, p.sb.data, p.sb.size), 0);
    struct got g = {0};
    assert_int_equal(ingest_decoder_drain(d, on_event, &g), 3);
    assert_int_equal(g.n, 3);
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < PROTO_EV_NKEYS; k++)
            assert_field_equal(proto_event_field(&g.raw[i], k), proto_event_field(&in[i], k));
    /* the verdicts agree too: the empty post is missing_post */
    struct event ev;
    assert_int_equal(event_validate(&g.raw[1], &ev), EVENT_REJ_MISSING_POST);
    ingest_decoder_free(d);
    packed_free(&p);
}

static void test_event_keys(void **state)
{
    (void)state;
    for (int k = 0; k < PROTO_EV_NKEYS; k++) {
        const char *name = proto_event_key_name(k);
        assert_int_equal(proto_event_key_lookup(name, strlen(name)), k);
    }
    assert_int_equal(proto_event_key_lookup("posts", 5), -1);
    assert_int_equal(proto_event_key_lookup("pos", 3), -1);
    assert_string_equal(proto_event_key_name(PROTO_EV_NKEYS), "?");
    assert_string_equal(proto_event_key_name(-1), "?");
}

/* A packer whose writes fail: every encoder says so. */
static int write_fails(void *data, const char *buf, size_t len)
{
    (void)data, (void)buf, (void)len;
    return -1;
}

static void test_write_failure(void **state)
{
    (void)state;
    msgpack_packer pk;
    msgpack_packer_init(&pk, NULL, write_fails);
    struct event_raw raw = {.post = fstr("p")};
    uint64_t from = 1;
    assert_int_equal(proto_event_pack(&pk, &raw), -ENOMEM);
    assert_int_equal(proto_ack_pack(&pk, 1, 2, 3, NULL, 0), -ENOMEM);
    assert_int_equal(proto_fatal_pack(&pk, "x", &from), -ENOMEM);
    assert_int_equal(proto_rpc_request_pack(&pk, 1, "stats", 5, 0), -ENOMEM);
    assert_int_equal(proto_rpc_response_head(&pk, NULL), -ENOMEM);
    assert_int_equal(proto_rpc_error_pack(&pk, NULL, 400, "x"), -ENOMEM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ack_round_trip),       cmocka_unit_test(test_ack_err_parse_refuses),
        cmocka_unit_test(test_fatal_round_trip),     cmocka_unit_test(test_reply_refuses),
        cmocka_unit_test(test_rpc_request),          cmocka_unit_test(test_rpc_response_round_trip),
        cmocka_unit_test(test_rpc_response_refuses), cmocka_unit_test(test_event_round_trip),
        cmocka_unit_test(test_event_keys),           cmocka_unit_test(test_write_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
