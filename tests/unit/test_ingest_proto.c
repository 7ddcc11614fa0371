/* Unit tests for the ingest decoder (src/net/ingest_proto.h): how event maps and arrays of them
 * become struct event_raw, that any cut of the stream gives the same events, that drain stops and
 * resumes inside arrays, and that bad bytes and hostile headers are refused at the right byte
 * offset before anything is allocated for them. Events are recorded as text so that a whole
 * stream's worth compares with one string. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "net/ingest_proto.h"

/* Under AddressSanitizer (make asan-test), an attempt to allocate for a hostile header (gigabytes)
 * aborts the test instead of quietly succeeding on an overcommitting kernel. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "max_allocation_size_mb=1024";
}

/* ---- recording events as text ---------------------------------------------------------------- */

struct rec {
    char *log;
    size_t len, cap;
    long calls;
    long stop_every; /* the callback returns 1 on every stop_every-th call; 0: never */
};

static void rec_printf(struct rec *r, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    if (r->len + (size_t)n + 1 > r->cap) {
        r->cap = (r->len + (size_t)n + 1) * 2;
        r->log = realloc(r->log, r->cap);
        assert_non_null(r->log);
    }
    va_start(ap, fmt);
    vsnprintf(r->log + r->len, r->cap - r->len, fmt, ap);
    va_end(ap);
    r->len += (size_t)n;
}

static uint32_t fnv1a(const char *s, uint32_t len)
{
    uint32_t h = 2166136261u;

    for (uint32_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static void rec_field(struct rec *r, const char *name, const struct event_field *f)
{
    switch (f->type) {
    case EVF_ABSENT:
        return;
    case EVF_NIL:
        rec_printf(r, " %s=nil", name);
        return;
    case EVF_UINT:
        rec_printf(r, " %s=u:%llu", name, (unsigned long long)f->u);
        return;
    case EVF_NEGINT:
        rec_printf(r, " %s=i:%lld", name, (long long)f->i);
        return;
    case EVF_STR:
        assert_true(f->len == 0 || f->str != NULL);
        /* long strings as length and hash; also reads every byte (ASan checks it is valid) */
        if (f->len <= 24)
            rec_printf(r, " %s=s:%.*s", name, (int)f->len, f->str);
        else
            rec_printf(r, " %s=s#%u:%08x", name, f->len, fnv1a(f->str, f->len));
        return;
    case EVF_OTHER:
        rec_printf(r, " %s=other", name);
        return;
    default:
        fail_msg("field %s has type %u", name, f->type);
    }
}

static int on_event(void *ctx, const struct event_raw *raw)
{
    struct rec *r = ctx;

    r->calls++;
    if (!raw) {
        rec_printf(r, "{bad}");
    } else {
        rec_printf(r, "{");
        rec_field(r, "post", &raw->post);
        rec_field(r, "actor", &raw->actor);
        rec_field(r, "ts", &raw->ts);
        rec_field(r, "parent", &raw->parent);
        rec_field(r, "kind", &raw->kind);
        rec_field(r, "actor_type", &raw->actor_type);
        rec_field(r, "content", &raw->content);
        rec_field(r, "label", &raw->label);
        rec_printf(r, " }");
    }
    return r->stop_every > 0 && r->calls % r->stop_every == 0;
}

static void rec_init(struct rec *r, long stop_every)
{
    memset(r, 0, sizeof(*r));
    r->stop_every = stop_every;
    rec_printf(r, "%s", "");
}

static void rec_free(struct rec *r)
{
    free(r->log);
}

/* Drains until idle, as the server does, and checks the counts add up. */
static void drain_all(struct ingest_decoder *d, struct rec *r)
{
    long before = r->calls, total = 0;

    while (!ingest_decoder_idle(d)) {
        long n = ingest_decoder_drain(d, on_event, r);
        assert_true(n >= 0);
        total += n;
    }
    assert_int_equal(ingest_decoder_drain(d, on_event, r), 0);
    assert_int_equal(total, r->calls - before);
}

static struct ingest_decoder *new_decoder(const struct ingest_limits *l)
{
    struct ingest_decoder *d = NULL;

    assert_int_equal(ingest_decoder_new(l, &d), 0);
    assert_non_null(d);
    return d;
}

/* Feeds s in pieces of `chunk` bytes (0: all at once), draining after each. Returns the first
 * error of feed, or 0. */
static int run_chunks(const void *s, size_t n, size_t chunk, struct rec *r, char *err, size_t cap)
{
    struct ingest_decoder *d = new_decoder(NULL);
    const uint8_t *p = s;
    int rc = 0;

    if (chunk == 0)
        chunk = n ? n : 1;
    for (size_t off = 0; off < n && rc == 0; off += chunk) {
        rc = ingest_decoder_feed(d, p + off, n - off < chunk ? n - off : chunk);
        drain_all(d, r);
    }
    if (rc == 0)
        assert_int_equal(ingest_decoder_pending(d), 0);
    if (err)
        snprintf(err, cap, "%s", ingest_decoder_error(d));
    ingest_decoder_free(d);
    return rc;
}

/* The same with one cut at byte k. */
static int run_split(const void *s, size_t n, size_t k, struct rec *r, char *err, size_t cap)
{
    struct ingest_decoder *d = new_decoder(NULL);
    int rc = ingest_decoder_feed(d, s, k);

    drain_all(d, r);
    if (rc == 0) {
        rc = ingest_decoder_feed(d, (const uint8_t *)s + k, n - k);
        drain_all(d, r);
    }
    snprintf(err, cap, "%s", ingest_decoder_error(d));
    ingest_decoder_free(d);
    return rc;
}

/* ---- building streams ------------------------------------------------------------------------ */

struct mp {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void mp_init(struct mp *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mp_free(struct mp *m)
{
    msgpack_sbuffer_destroy(&m->sb);
}

static void pstrn(struct mp *m, const char *s, size_t len)
{
    msgpack_pack_str(&m->pk, len);
    msgpack_pack_str_body(&m->pk, s, len);
}

static void pstr(struct mp *m, const char *s)
{
    pstrn(m, s, strlen(s));
}

static void praw(struct mp *m, const void *bytes, size_t len)
{
    msgpack_sbuffer_write(&m->sb, bytes, len);
}

/* {"post": post, "actor": actor, "ts": ts} */
static void pevent(struct mp *m, const char *post, const char *actor, uint64_t ts)
{
    msgpack_pack_map(&m->pk, 3);
    pstr(m, "post");
    pstr(m, post);
    pstr(m, "actor");
    pstr(m, actor);
    pstr(m, "ts");
    msgpack_pack_uint64(&m->pk, ts);
}

/* A stream with every shape the decoder meets: maps and arrays of them (fix, 16- and 32-bit
 * headers), every value type, unknown and non-string keys, duplicates, non-map values, empty
 * containers, strings long enough for str8 and str16 headers. */
static void build_mixed(struct mp *m)
{
    static char long_str[300];

    memset(long_str, 'L', sizeof(long_str));
    pevent(m, "p1", "a1", 1000);

    msgpack_pack_array(&m->pk, 4);
    msgpack_pack_map(&m->pk, 5);
    pstr(m, "post");
    msgpack_pack_uint64(&m->pk, 2);
    pstr(m, "actor");
    pstr(m, "a2");
    pstr(m, "ts");
    msgpack_pack_int64(&m->pk, -5);
    pstr(m, "parent");
    msgpack_pack_nil(&m->pk);
    pstr(m, "kind");
    pstr(m, "share");
    msgpack_pack_map(&m->pk, 6);
    pstr(m, "post");
    pstr(m, "p3");
    pstr(m, "actor");
    pstr(m, "a3");
    pstr(m, "ts");
    msgpack_pack_uint64(&m->pk, 1001);
    pstr(m, "parent");
    pstr(m, "p1");
    pstr(m, "content");
    pstr(m, "https://example.org/a-claim-that-spreads"); /* str8 */
    pstr(m, "label");
    pstr(m, "false");
    msgpack_pack_int(&m->pk, 7); /* not a map: bad_type */
    msgpack_pack_map(&m->pk, 5);
    pstr(m, "zzz"); /* unknown, with a nested value */
    msgpack_pack_array(&m->pk, 3);
    msgpack_pack_int(&m->pk, 1);
    msgpack_pack_int(&m->pk, 2);
    msgpack_pack_map(&m->pk, 0);
    pstr(m, "post");
    pstr(m, "p4");
    pstr(m, "actor");
    pstr(m, "a4");
    pstr(m, "ts");
    msgpack_pack_uint64(&m->pk, 1002);
    pstr(m, "post"); /* duplicate: the last wins */
    pstr(m, "p4b");

    msgpack_pack_int(&m->pk, 42); /* a bare top-level value */

    msgpack_pack_map(&m->pk, 9);
    pstr(m, "post");
    pstr(m, "p5");
    pstr(m, "actor");
    pstrn(m, long_str, sizeof(long_str)); /* str16 */
    pstr(m, "ts");
    msgpack_pack_uint64(&m->pk, UINT64_MAX);
    pstr(m, "kind");
    msgpack_pack_double(&m->pk, 1.5);
    pstr(m, "actor_type");
    msgpack_pack_true(&m->pk);
    pstr(m, "content");
    msgpack_pack_bin(&m->pk, 2);
    msgpack_pack_bin_body(&m->pk, "xy", 2);
    pstr(m, "label");
    msgpack_pack_ext(&m->pk, 4, 7);
    msgpack_pack_ext_body(&m->pk, "abcd", 4);
    msgpack_pack_int(&m->pk, 5); /* a non-string key */
    pstr(m, "post");
    pstr(m, "parent");
    msgpack_pack_float(&m->pk, 2.5f);

    msgpack_pack_array(&m->pk, 0); /* no events */
    msgpack_pack_map(&m->pk, 0);   /* an event with no fields */

    /* array 16 and 32 headers, map 16 */
    praw(m, "\xdc\x00\x02", 3);
    pevent(m, "p6", "a6", 6);
    praw(m, "\xde\x00\x01", 3);
    pstr(m, "post");
    pstr(m, "p7");
    praw(m, "\xdd\x00\x00\x00\x01", 5);
    pevent(m, "p8", "a8", 8);
}

static const char mixed_expected[] =
    "{ post=s:p1 actor=s:a1 ts=u:1000 }"
    "{ post=u:2 actor=s:a2 ts=i:-5 parent=nil kind=s:share }"
    "{ post=s:p3 actor=s:a3 ts=u:1001 parent=s:p1 content=s#40:a1dcbbb9 label=s:false }"
    "{bad}"
    "{ post=s:p4b actor=s:a4 ts=u:1002 }"
    "{bad}"
    "{ post=s:p5 actor=s#300:__L300__ ts=u:18446744073709551615 parent=other kind=other "
    "actor_type=other content=other label=other }"
    "{ }"
    "{ post=s:p6 actor=s:a6 ts=u:6 }"
    "{ post=s:p7 }"
    "{ post=s:p8 actor=s:a8 ts=u:8 }";

/* mixed_expected with the hashes of this run's long strings filled in. */
static char *mixed_expected_text(void)
{
    static char buf[1024];
    char long_str[300];
    const char *url = "https://example.org/a-claim-that-spreads";
    char h300[16], h40[16];
    const char *p;
    size_t o = 0;

    memset(long_str, 'L', sizeof(long_str));
    snprintf(h300, sizeof(h300), "%08x", fnv1a(long_str, 300));
    snprintf(h40, sizeof(h40), "%08x", fnv1a(url, (uint32_t)strlen(url)));
    for (p = mixed_expected; *p;) {
        if (strncmp(p, "__L300__", 8) == 0) {
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s", h300);
            p += 8;
        } else if (strncmp(p, "a1dcbbb9", 8) == 0) {
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s", h40);
            p += 8;
        } else {
            buf[o++] = *p++;
        }
    }
    buf[o] = 0;
    return buf;
}

/* ---- decoding -------------------------------------------------------------------------------- */

static void test_single_map(void **state)
{
    struct mp m;
    struct rec r;

    mp_init(&m);
    pevent(&m, "p1", "acct", 1700000000000ull);
    rec_init(&r, 0);
    assert_int_equal(run_chunks(m.sb.data, m.sb.size, 0, &r, NULL, 0), 0);
    assert_string_equal(r.log, "{ post=s:p1 actor=s:acct ts=u:1700000000000 }");
    rec_free(&r);
    mp_free(&m);
}

static void test_array_of_maps(void **state)
{
    struct mp m;
    struct rec r;

    mp_init(&m);
    msgpack_pack_array(&m.pk, 3);
    pevent(&m, "a", "x", 1);
    pevent(&m, "b", "y", 2);
    pevent(&m, "c", "z", 3);
    pevent(&m, "d", "w", 4); /* and a map after the array */
    rec_init(&r, 0);
    assert_int_equal(run_chunks(m.sb.data, m.sb.size, 0, &r, NULL, 0), 0);
    assert_int_equal(r.calls, 4);
    assert_string_equal(r.log, "{ post=s:a actor=s:x ts=u:1 }{ post=s:b actor=s:y ts=u:2 }"
                               "{ post=s:c actor=s:z ts=u:3 }{ post=s:d actor=s:w ts=u:4 }");
    rec_free(&r);
    mp_free(&m);
}

/* Captures the fields of one event as they were during the callback. */
struct capture {
    struct event_raw raw;
    char strs[8][32];
    int events;
};

static int on_capture(void *ctx, const struct event_raw *raw)
{
    struct capture *c = ctx;
    const struct event_field *f[8] = {&raw->post, &raw->actor,      &raw->ts,      &raw->parent,
                                      &raw->kind, &raw->actor_type, &raw->content, &raw->label};

    c->events++;
    c->raw = *raw;
    for (int i = 0; i < 8; i++) {
        if (f[i]->type == EVF_STR && f[i]->len < sizeof(c->strs[i])) {
            memcpy(c->strs[i], f[i]->str, f[i]->len);
            c->strs[i][f[i]->len] = 0;
        }
    }
    return 0;
}

static void test_value_types(void **state)
{
    struct mp m;
    struct capture c;
    struct ingest_decoder *d = new_decoder(NULL);

    mp_init(&m);
    msgpack_pack_map(&m.pk, 8);
    pstr(&m, "post");
    msgpack_pack_uint64(&m.pk, 123);
    pstr(&m, "actor");
    pstr(&m, "acct");
    pstr(&m, "ts");
    msgpack_pack_int64(&m.pk, INT64_MIN);
    pstr(&m, "parent");
    msgpack_pack_nil(&m.pk);
    pstr(&m, "kind");
    msgpack_pack_false(&m.pk);
    pstr(&m, "actor_type");
    msgpack_pack_map(&m.pk, 0);
    pstr(&m, "content");
    pstr(&m, "");
    pstr(&m, "label");
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_nil(&m.pk);
    memset(&c, 0, sizeof(c));
    assert_int_equal(ingest_decoder_feed(d, m.sb.data, m.sb.size), 0);
    assert_int_equal(ingest_decoder_drain(d, on_capture, &c), 1);
    assert_int_equal(c.events, 1);
    assert_int_equal(c.raw.post.type, EVF_UINT);
    assert_int_equal(c.raw.post.u, 123);
    assert_int_equal(c.raw.actor.type, EVF_STR);
    assert_int_equal(c.raw.actor.len, 4);
    assert_string_equal(c.strs[1], "acct");
    assert_int_equal(c.raw.ts.type, EVF_NEGINT);
    assert_true(c.raw.ts.i == INT64_MIN);
    assert_int_equal(c.raw.parent.type, EVF_NIL);
    assert_int_equal(c.raw.kind.type, EVF_OTHER);
    assert_int_equal(c.raw.actor_type.type, EVF_OTHER);
    assert_int_equal(c.raw.content.type, EVF_STR);
    assert_int_equal(c.raw.content.len, 0);
    assert_int_equal(c.raw.label.type, EVF_OTHER);
    ingest_decoder_free(d);
    mp_free(&m);
}

/* Every msgpack form of an integer gives the same field: fixint, int 8..64, uint 8..64. */
static void test_integer_forms(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *text;
    } forms[] = {
        {"\x05", 1, "u:5"},
        {"\xcc\xff", 2, "u:255"},
        {"\xcd\x01\x00", 3, "u:256"},
        {"\xce\x00\x01\x00\x00", 5, "u:65536"},
        {"\xcf\x00\x00\x00\x01\x00\x00\x00\x00", 9, "u:4294967296"},
        {"\xff", 1, "i:-1"},
        {"\xd0\x80", 2, "i:-128"},
        {"\xd1\x80\x00", 3, "i:-32768"},
        {"\xd2\x80\x00\x00\x00", 5, "i:-2147483648"},
        {"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9, "i:-9223372036854775808"},
        {"\xd0\x05", 2, "u:5"}, /* a signed form of a non-negative value is still unsigned */
        {"\xc0", 1, "nil"},
        {"\xca\x3f\x80\x00\x00", 5, "other"},
        {"\xd4\x01\x00", 3, "other"},              /* fixext 1 */
        {"\xd8\x01zyxwvutsrqponmlk", 18, "other"}, /* fixext 16 */
        {"\xc4\x00", 2, "other"},                  /* empty bin */
    };

    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        struct mp m;
        struct rec r;
        char want[64];

        mp_init(&m);
        msgpack_pack_map(&m.pk, 1);
        pstr(&m, "ts");
        praw(&m, forms[i].bytes, forms[i].len);
        rec_init(&r, 0);
        assert_int_equal(run_chunks(m.sb.data, m.sb.size, 1, &r, NULL, 0), 0);
        snprintf(want, sizeof(want), "{ ts=%s }", forms[i].text);
        assert_string_equal(r.log, want);
        rec_free(&r);
        mp_free(&m);
    }
}

static void test_unknown_and_odd_keys(void **state)
{
    struct mp m;
    struct rec r;

    mp_init(&m);
    msgpack_pack_map(&m.pk, 12);
    pstr(&m, "x");
    msgpack_pack_int(&m.pk, 1);
    pstr(&m, "post");
    pstr(&m, "first");
    msgpack_pack_int(&m.pk, 5); /* integer key */
    pstr(&m, "actor");
    msgpack_pack_nil(&m.pk); /* nil key */
    pstr(&m, "actor");
    msgpack_pack_bin(&m.pk, 5); /* bin key spelling a known name */
    msgpack_pack_bin_body(&m.pk, "actor", 5);
    pstr(&m, "nope");
    msgpack_pack_array(&m.pk, 1); /* array key */
    pstr(&m, "post");
    pstr(&m, "nope");
    pstr(&m, "actor");
    pstr(&m, "a");
    pstr(&m, "ts");
    msgpack_pack_int(&m.pk, 9);
    pstr(&m, "Post"); /* case matters */
    pstr(&m, "nope");
    pstr(&m, "tsx"); /* prefixes and extensions of known keys */
    pstr(&m, "nope");
    pstr(&m, "pos");
    pstr(&m, "nope");
    pstr(&m, "post"); /* duplicate known key: the last wins */
    pstr(&m, "second");
    rec_init(&r, 0);
    assert_int_equal(run_chunks(m.sb.data, m.sb.size, 0, &r, NULL, 0), 0);
    assert_string_equal(r.log, "{ post=s:second actor=s:a ts=u:9 }");
    rec_free(&r);
    mp_free(&m);
}

static void test_non_map_values(void **state)
{
    struct mp m;
    struct rec r;

    mp_init(&m);
    msgpack_pack_int(&m.pk, 42);
    pstr(&m, "a string");
    msgpack_pack_nil(&m.pk);
    msgpack_pack_array(&m.pk, 5);
    msgpack_pack_int(&m.pk, 1);
    msgpack_pack_map(&m.pk, 1);
    pstr(&m, "post");
    pstr(&m, "x");
    pstr(&m, "y");
    msgpack_pack_array(&m.pk, 0);
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_map(&m.pk, 0);
    msgpack_pack_true(&m.pk);
    msgpack_pack_double(&m.pk, 0.5);
    msgpack_pack_bin(&m.pk, 1);
    msgpack_pack_bin_body(&m.pk, "b", 1);
    rec_init(&r, 0);
    assert_int_equal(run_chunks(m.sb.data, m.sb.size, 0, &r, NULL, 0), 0);
    /* one bad_type event per value in an event's place; a map nested deeper is not an event */
    assert_string_equal(r.log, "{bad}{bad}{bad}{bad}{ post=s:x }{bad}{bad}{bad}{bad}{bad}{bad}");
    rec_free(&r);
    mp_free(&m);
}

static void test_empty_containers(void **state)
{
    struct rec r;

    rec_init(&r, 0);
    /* [] gives no event, {} an event without fields, [[]] one bad event */
    assert_int_equal(run_chunks("\x90\x80\x91\x90\x90", 5, 1, &r, NULL, 0), 0);
    assert_string_equal(r.log, "{ }{bad}");
    rec_free(&r);
}

static void test_mixed_stream(void **state)
{
    struct mp m;
    struct rec r;

    mp_init(&m);
    build_mixed(&m);
    rec_init(&r, 0);
    assert_int_equal(run_chunks(m.sb.data, m.sb.size, 0, &r, NULL, 0), 0);
    assert_string_equal(r.log, mixed_expected_text());
    rec_free(&r);
    mp_free(&m);
}

/* Every single cut, every byte alone, and every byte alone with a stop after each event. */
static void test_split_everywhere(void **state)
{
    struct mp m;
    const char *want = mixed_expected_text();
    char err[200];

    mp_init(&m);
    build_mixed(&m);
    for (size_t k = 0; k <= m.sb.size; k++) {
        struct rec r;
        rec_init(&r, 0);
        assert_int_equal(run_split(m.sb.data, m.sb.size, k, &r, err, sizeof(err)), 0);
        if (strcmp(r.log, want) != 0)
            fail_msg("cut at byte %zu of %zu: got %s", k, m.sb.size, r.log);
        rec_free(&r);
    }
    for (long stop = 0; stop <= 3; stop++) {
        struct rec r;
        rec_init(&r, stop);
        assert_int_equal(run_chunks(m.sb.data, m.sb.size, 1, &r, NULL, 0), 0);
        assert_string_equal(r.log, want);
        rec_free(&r);
    }
    for (size_t chunk = 2; chunk < 40; chunk += 3) {
        struct rec r;
        rec_init(&r, 2);
        assert_int_equal(run_chunks(m.sb.data, m.sb.size, chunk, &r, NULL, 0), 0);
        assert_string_equal(r.log, want);
        rec_free(&r);
    }
    mp_free(&m);
}

/* fn returning 1 stops after that event; the next drain resumes at the following one, inside the
 * same array, and a value counts as pending until its last event is out. */
static void test_drain_stop_resume(void **state)
{
    struct mp m;
    struct rec r;
    struct ingest_decoder *d = new_decoder(NULL);
    size_t array_len, total;

    mp_init(&m);
    msgpack_pack_array(&m.pk, 4);
    pevent(&m, "p0", "a", 0);
    pevent(&m, "p1", "a", 1);
    pevent(&m, "p2", "a", 2);
    pevent(&m, "p3", "a", 3);
    array_len = m.sb.size;
    pevent(&m, "p4", "a", 4);
    total = m.sb.size;

    rec_init(&r, 1);
    assert_int_equal(ingest_decoder_feed(d, m.sb.data, m.sb.size), 0);
    for (int i = 0; i < 3; i++) {
        assert_false(ingest_decoder_idle(d));
        assert_int_equal(ingest_decoder_drain(d, on_event, &r), 1);
        assert_int_equal(ingest_decoder_pending(d), total);
    }
    /* the last of the array: the array is out */
    assert_int_equal(ingest_decoder_drain(d, on_event, &r), 1);
    assert_int_equal(ingest_decoder_pending(d), total - array_len);
    assert_false(ingest_decoder_idle(d));
    assert_int_equal(ingest_decoder_drain(d, on_event, &r), 1);
    assert_int_equal(ingest_decoder_pending(d), 0);
    assert_true(ingest_decoder_idle(d));
    assert_int_equal(ingest_decoder_drain(d, on_event, &r), 0);
    assert_string_equal(r.log, "{ post=s:p0 actor=s:a ts=u:0 }{ post=s:p1 actor=s:a ts=u:1 }"
                               "{ post=s:p2 actor=s:a ts=u:2 }{ post=s:p3 actor=s:a ts=u:3 }"
                               "{ post=s:p4 actor=s:a ts=u:4 }");
    rec_free(&r);

    /* a stop in the middle, then more bytes fed before resuming: the held array's strings must
     * survive the unpacker moving its buffer */
    ingest_decoder_free(d);
    d = new_decoder(NULL);
    rec_init(&r, 2);
    assert_int_equal(ingest_decoder_feed(d, m.sb.data, array_len), 0);
    assert_int_equal(ingest_decoder_drain(d, on_event, &r), 2);
    for (int i = 0; i < 5000; i++) { /* ~150 KB: more than the unpacker's first buffer */
        assert_int_equal(ingest_decoder_feed(d, m.sb.data + array_len, total - array_len), 0);
    }
    r.stop_every = 0;
    assert_int_equal(ingest_decoder_drain(d, on_event, &r), 2 + 5000);
    {
        const char *want = "{ post=s:p0 actor=s:a ts=u:0 }{ post=s:p1 actor=s:a ts=u:1 }"
                           "{ post=s:p2 actor=s:a ts=u:2 }{ post=s:p3 actor=s:a ts=u:3 }"
                           "{ post=s:p4 actor=s:a ts=u:4 }";
        assert_int_equal(strncmp(r.log, want, strlen(want)), 0);
    }
    assert_int_equal(ingest_decoder_pending(d), 0);
    assert_true(ingest_decoder_idle(d));
    rec_free(&r);
    ingest_decoder_free(d);
    mp_free(&m);
}

/* ---- malformed input ------------------------------------------------------------------------- */

/* Two events, an array of two, then a map whose first value is the never-used byte 0xc1. */
static size_t build_bad(struct mp *m)
{
    size_t bad;

    pevent(m, "p1", "a", 1);
    msgpack_pack_array(&m->pk, 2);
    pevent(m, "p2", "a", 2);
    pevent(m, "p3", "a", 3);
    msgpack_pack_map(&m->pk, 2);
    pstr(m, "post");
    bad = m->sb.size;
    praw(m, "\xc1", 1);
    pevent(m, "p4", "a", 4); /* never delivered: nothing after the bad byte is */
    return bad;
}

static const char bad_expected[] = "{ post=s:p1 actor=s:a ts=u:1 }{ post=s:p2 actor=s:a ts=u:2 }"
                                   "{ post=s:p3 actor=s:a ts=u:3 }";

static void test_malformed_c1(void **state)
{
    struct mp m;
    struct rec r;
    struct ingest_decoder *d = new_decoder(NULL);
    char want[80];
    size_t bad;

    mp_init(&m);
    bad = build_bad(&m);
    snprintf(want, sizeof(want), "malformed msgpack at byte %zu", bad);
    assert_string_equal(ingest_decoder_error(d), "");
    assert_int_equal(ingest_decoder_feed(d, m.sb.data, m.sb.size), -EPROTO);
    assert_string_equal(ingest_decoder_error(d), want);
    /* what came before is still there */
    rec_init(&r, 0);
    assert_false(ingest_decoder_idle(d));
    assert_int_equal(ingest_decoder_drain(d, on_event, &r), 3);
    assert_string_equal(r.log, bad_expected);
    assert_true(ingest_decoder_idle(d));
    assert_int_equal(ingest_decoder_drain(d, on_event, &r), 0);
    /* dead from then on, with the same message */
    assert_int_equal(ingest_decoder_feed(d, "\x80", 1), -EPROTO);
    assert_int_equal(ingest_decoder_feed(d, "", 0), -EPROTO);
    assert_string_equal(ingest_decoder_error(d), want);
    rec_free(&r);
    ingest_decoder_free(d);
    mp_free(&m);
}

static void test_malformed_split_everywhere(void **state)
{
    struct mp m;
    char want[80], err[200];
    size_t bad;

    mp_init(&m);
    bad = build_bad(&m);
    snprintf(want, sizeof(want), "malformed msgpack at byte %zu", bad);
    for (size_t k = 0; k <= m.sb.size; k++) {
        struct rec r;
        rec_init(&r, 1);
        assert_int_equal(run_split(m.sb.data, m.sb.size, k, &r, err, sizeof(err)), -EPROTO);
        assert_string_equal(err, want);
        assert_string_equal(r.log, bad_expected);
        rec_free(&r);
    }
    for (size_t chunk = 1; chunk < 8; chunk++) {
        struct rec r;
        rec_init(&r, 0);
        assert_int_equal(run_chunks(m.sb.data, m.sb.size, chunk, &r, err, sizeof(err)), -EPROTO);
        assert_string_equal(err, want);
        assert_string_equal(r.log, bad_expected);
        rec_free(&r);
    }
    mp_free(&m);
}

static void test_malformed_places(void **state)
{
    struct rec r;
    char err[200];

    rec_init(&r, 0);
    assert_int_equal(run_chunks("\xc1", 1, 0, &r, err, sizeof(err)), -EPROTO);
    assert_string_equal(err, "malformed msgpack at byte 0");
    /* as a map key, as an array element */
    assert_int_equal(run_chunks("\x81\xc1\x01", 3, 0, &r, err, sizeof(err)), -EPROTO);
    assert_string_equal(err, "malformed msgpack at byte 1");
    assert_int_equal(run_chunks("\x93\x01\x02\xc1", 4, 1, &r, err, sizeof(err)), -EPROTO);
    assert_string_equal(err, "malformed msgpack at byte 3");
    assert_string_equal(r.log, "");
    /* inside a payload 0xc1 is just a byte */
    assert_int_equal(run_chunks("\x81\xa4post\xa1\xc1", 8, 1, &r, err, sizeof(err)), 0);
    assert_string_equal(r.log, "{ post=s:\xc1 }");
    rec_free(&r);
}

/* The byte offset counts from the start of the stream, across many feeds and values. */
static void test_malformed_offset_far(void **state)
{
    struct mp m;
    struct rec r;
    struct ingest_decoder *d = new_decoder(NULL);
    char want[80];
    int rc = 0;
    size_t fed = 0;

    mp_init(&m);
    pevent(&m, "post-0001", "actor-0001", 1); /* some tens of bytes */
    rec_init(&r, 0);
    while (fed < 1048577 - m.sb.size) {
        rc = ingest_decoder_feed(d, m.sb.data, m.sb.size);
        assert_int_equal(rc, 0);
        fed += m.sb.size;
        drain_all(d, &r);
    }
    assert_int_equal(ingest_decoder_feed(d, "\x91\x92\x01\xc1", 4), -EPROTO);
    snprintf(want, sizeof(want), "malformed msgpack at byte %zu", fed + 3);
    assert_string_equal(ingest_decoder_error(d), want);
    assert_int_equal(r.calls, (long)(fed / m.sb.size));
    assert_int_equal(ingest_decoder_pending(d), 3);
    rec_free(&r);
    ingest_decoder_free(d);
    mp_free(&m);
}

/* ---- limits ---------------------------------------------------------------------------------- */

/* Heap in use, from glibc (ASan's allocator is not counted: under ASan this is flat, and the
 * max_allocation_size above does the checking). */
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* Feeds prefix then a header that is never followed by data: refused at once, with msg. */
static void expect_refused(const struct ingest_limits *l, const void *prefix, size_t plen,
                           const void *hdr, size_t hlen, const char *msg)
{
    struct ingest_decoder *d = new_decoder(l);
    size_t heap = heap_in_use();
    struct rec r;

    rec_init(&r, 0);
    assert_int_equal(ingest_decoder_feed(d, prefix, plen), 0);
    assert_int_equal(ingest_decoder_feed(d, hdr, hlen), -EPROTO);
    assert_string_equal(ingest_decoder_error(d), msg);
    assert_true(heap_in_use() < heap + (1u << 20));
    drain_all(d, &r);
    assert_true(heap_in_use() < heap + (1u << 20));
    rec_free(&r);
    ingest_decoder_free(d);
}

/* Feeds bytes that stay within the limits: taken, nothing to deliver yet, no error. */
static void expect_accepted(const struct ingest_limits *l, const void *bytes, size_t len)
{
    struct ingest_decoder *d = new_decoder(l);

    assert_int_equal(ingest_decoder_feed(d, bytes, len), 0);
    assert_string_equal(ingest_decoder_error(d), "");
    assert_int_equal(ingest_decoder_pending(d), len);
    assert_true(ingest_decoder_idle(d));
    ingest_decoder_free(d);
}

/* A 17-byte event: {"post": "p1", "actor": "a"} */
static const char ev17[] = "\x82\xa4post\xa2p1\xa5\x61\x63tor\xa1\x61";

static void test_limit_array(void **state)
{
    assert_int_equal(sizeof(ev17) - 1, 17);
    expect_refused(NULL, ev17, 17, "\xdd\xff\xff\xff\xff", 5,
                   "array of 4294967295 elements exceeds the limit of 100000 at byte 17");
    expect_refused(NULL, ev17, 17, "\xdd\x00\x01\x86\xa1", 5,
                   "array of 100001 elements exceeds the limit of 100000 at byte 17");
    expect_accepted(NULL, "\xdd\x00\x01\x86\xa0", 5);
    /* nested: the inner array's own header is the offending byte */
    expect_refused(NULL, "\x92\x80", 2, "\xdd\xff\xff\xff\xff", 5,
                   "array of 4294967295 elements exceeds the limit of 100000 at byte 2");
}

static void test_limit_map(void **state)
{
    expect_refused(NULL, "", 0, "\xdf\xff\xff\xff\xff", 5,
                   "map of 4294967295 keys exceeds the limit of 64 at byte 0");
    expect_refused(NULL, ev17, 17, "\xde\x00\x41", 3,
                   "map of 65 keys exceeds the limit of 64 at byte 17");
    expect_accepted(NULL, "\xde\x00\x40", 3);
    /* as a value inside an event */
    expect_refused(NULL, "\x81\xa4post", 6, "\xdf\x00\x01\x00\x00", 5,
                   "map of 65536 keys exceeds the limit of 64 at byte 6");
}

static void test_limit_str(void **state)
{
    expect_refused(NULL, "\x81\xa4post", 6, "\xdb\xff\xff\xff\xff", 5,
                   "str of 4294967295 bytes exceeds the limit of 65536 at byte 6");
    expect_refused(NULL, "", 0, "\xdb\x00\x01\x00\x01", 5,
                   "str of 65537 bytes exceeds the limit of 65536 at byte 0");
    expect_refused(NULL, "\x91", 1, "\xc6\xff\xff\xff\xff", 5,
                   "bin of 4294967295 bytes exceeds the limit of 65536 at byte 1");
    expect_refused(NULL, "\x91", 1, "\xc9\xff\xff\xff\xff\x01", 6,
                   "ext of 4294967295 bytes exceeds the limit of 65536 at byte 1");
    expect_accepted(NULL, "\xdb\x00\x01\x00\x00", 5);
    expect_accepted(NULL, "\xc6\x00\x01\x00\x00", 5);
}

static void test_limit_small_str(void **state)
{
    struct ingest_limits l;

    ingest_limits_default(&l);
    l.max_str = 3;
    expect_refused(&l, "", 0, "\xa4", 1, "str of 4 bytes exceeds the limit of 3 at byte 0");
    expect_refused(&l, "", 0, "\xd6", 1, "ext of 4 bytes exceeds the limit of 3 at byte 0");
    expect_refused(&l, "\xa3xyz", 4, "\xc7\x04", 2,
                   "ext of 4 bytes exceeds the limit of 3 at byte 4");
    expect_accepted(&l, "\xa3xy", 3);
}

static void test_limit_depth(void **state)
{
    struct ingest_limits l;
    struct rec r;

    expect_refused(NULL, "\x91\x91\x91\x91\x91\x91\x91\x91", 8, "\x91", 1,
                   "nesting depth of 9 exceeds the limit of 8 at byte 8");
    expect_refused(NULL, "\x81\xa1k\x81\xa1k\x91\x91\x91\x91\x81\xa1k\x91", 14, "\x80", 1,
                   "nesting depth of 9 exceeds the limit of 8 at byte 14");
    /* eight deep is fine: one array holding seven more, an event of bad type */
    rec_init(&r, 0);
    assert_int_equal(run_chunks("\x91\x91\x91\x91\x91\x91\x91\x90", 8, 1, &r, NULL, 0), 0);
    assert_string_equal(r.log, "{bad}");
    rec_free(&r);
    /* a configured depth beyond what msgpack-c can parse is capped */
    ingest_limits_default(&l);
    l.max_depth = 1000;
    {
        char deep[33];
        memset(deep, 0x91, sizeof(deep));
        expect_refused(&l, deep, 32, "\x91", 1,
                       "nesting depth of 33 exceeds the limit of 32 at byte 32");
    }
}

static void test_limit_value_size(void **state)
{
    struct ingest_limits l;
    struct rec r;

    ingest_limits_default(&l);
    l.max_value_bytes = 100;
    /* an array that cannot fit: refused at its header, before its elements are waited for */
    expect_refused(&l, "", 0, "\xdc\x00\x62", 3,
                   "value of at least 101 bytes exceeds the limit of 100 at byte 0");
    expect_accepted(&l, "\xdc\x00\x61", 3);
    /* a string that cannot fit in what is left */
    l.max_value_bytes = 64;
    expect_refused(&l, "\x81\xa4post", 6, "\xd9\x3c", 2,
                   "value of at least 68 bytes exceeds the limit of 64 at byte 6");
    /* a map's later keys count what came before; each top-level value starts from zero */
    {
        struct mp m;
        char s58[58];
        memset(s58, 's', sizeof(s58));
        mp_init(&m);
        msgpack_pack_map(&m.pk, 1);
        pstr(&m, "post");
        pstrn(&m, s58, sizeof(s58)); /* 1 + 5 + 2 + 58 = 66: too big */
        expect_refused(&l, "", 0, m.sb.data, m.sb.size,
                       "value of at least 66 bytes exceeds the limit of 64 at byte 6");
        msgpack_sbuffer_clear(&m.sb);
        msgpack_pack_map(&m.pk, 1);
        pstr(&m, "post");
        pstrn(&m, s58, 56); /* 64: fits, twice in a row */
        pstrn(&m, s58, 0);  /* a 1-byte value after it */
        rec_init(&r, 0);
        {
            struct ingest_decoder *d = new_decoder(&l);
            assert_int_equal(ingest_decoder_feed(d, m.sb.data, m.sb.size), 0);
            assert_int_equal(ingest_decoder_feed(d, m.sb.data, m.sb.size), 0);
            drain_all(d, &r);
            assert_int_equal(r.calls, 4);
            ingest_decoder_free(d);
        }
        rec_free(&r);
        mp_free(&m);
    }
}

/* A 16 MiB limit reached by real bytes: an array of 100000 that would hold 64 KiB strings is
 * refused at the string header that makes the value too big, at whatever chunk. */
static void test_limit_value_size_default(void **state)
{
    struct ingest_limits l;
    ingest_limits_default(&l);
    l.max_value_bytes = 16u << 20;
    struct ingest_decoder *d = new_decoder(&l);
    static char payload[65536 + 5];
    uint64_t at = 5;
    char want[120];
    int rc = 0, i;

    memcpy(payload, "\xdb\x00\x01\x00\x00", 5);
    memset(payload + 5, 'x', 65536);
    assert_int_equal(ingest_decoder_feed(d, "\xdd\x00\x01\x86\xa0", 5), 0);
    for (i = 0; i < 300 && rc == 0; i++) {
        rc = ingest_decoder_feed(d, payload, sizeof(payload));
        if (rc == 0)
            at += sizeof(payload);
    }
    /* With n strings announced, the value needs at least 5 + n * 65541 + (100000 - n) bytes:
     * more than 16 MiB first for n = 255. */
    assert_int_equal(rc, -EPROTO);
    assert_int_equal(i, 255);
    snprintf(want, sizeof(want),
             "value of at least %llu bytes exceeds the limit of 16777216 at byte %llu",
             (unsigned long long)(at + 65541 + 100000 - 255), (unsigned long long)at);
    assert_string_equal(ingest_decoder_error(d), want);
    assert_int_equal(ingest_decoder_pending(d), at);
    ingest_decoder_free(d);
}

/* A header's length bytes may come in a later feed; the offset is still its type byte's. */
static void test_limit_header_split(void **state)
{
    struct ingest_decoder *d = new_decoder(NULL);

    assert_int_equal(ingest_decoder_feed(d, ev17, 17), 0);
    assert_int_equal(ingest_decoder_feed(d, "\xdd", 1), 0);
    assert_int_equal(ingest_decoder_feed(d, "\x00\x01", 2), 0);
    assert_int_equal(ingest_decoder_pending(d), 20);
    assert_int_equal(ingest_decoder_feed(d, "\x86\xa1\x80", 3), -EPROTO);
    assert_string_equal(ingest_decoder_error(d),
                        "array of 100001 elements exceeds the limit of 100000 at byte 17");
    ingest_decoder_free(d);
}

/* ---- pending and truncated values ------------------------------------------------------------ */

static void test_truncated_value(void **state)
{
    struct mp m;
    struct rec r;
    struct ingest_decoder *d = new_decoder(NULL);
    size_t half;

    mp_init(&m);
    pevent(&m, "post", "actor", 12345);
    half = m.sb.size / 2;
    rec_init(&r, 0);
    assert_int_equal(ingest_decoder_feed(d, m.sb.data, half), 0);
    assert_true(ingest_decoder_idle(d));
    assert_int_equal(ingest_decoder_drain(d, on_event, &r), 0);
    assert_int_equal(ingest_decoder_pending(d), half);
    assert_string_equal(ingest_decoder_error(d), "");
    assert_int_equal(ingest_decoder_feed(d, m.sb.data + half, m.sb.size - half), 0);
    assert_false(ingest_decoder_idle(d));
    assert_int_equal(ingest_decoder_drain(d, on_event, &r), 1);
    assert_string_equal(r.log, "{ post=s:post actor=s:actor ts=u:12345 }");
    assert_int_equal(ingest_decoder_pending(d), 0);
    rec_free(&r);
    ingest_decoder_free(d);
    mp_free(&m);
}

static void test_pending_accounting(void **state)
{
    struct mp m;
    struct rec r;
    struct ingest_decoder *d = new_decoder(NULL);
    size_t a, b, c;

    mp_init(&m);
    pevent(&m, "A", "x", 1);
    a = m.sb.size;
    pevent(&m, "B", "x", 2);
    b = m.sb.size - a;
    pevent(&m, "C", "x", 3);
    c = m.sb.size - a - b;
    assert_int_equal(ingest_decoder_pending(d), 0);
    assert_int_equal(ingest_decoder_feed(d, m.sb.data, a + b + c / 2), 0);
    assert_int_equal(ingest_decoder_pending(d), a + b + c / 2);
    rec_init(&r, 1);
    assert_int_equal(ingest_decoder_drain(d, on_event, &r), 1);
    assert_int_equal(ingest_decoder_pending(d), b + c / 2);
    assert_int_equal(ingest_decoder_drain(d, on_event, &r), 1);
    assert_int_equal(ingest_decoder_pending(d), c / 2);
    assert_int_equal(ingest_decoder_drain(d, on_event, &r), 0);
    assert_int_equal(ingest_decoder_feed(d, m.sb.data + a + b + c / 2, c - c / 2), 0);
    assert_int_equal(ingest_decoder_pending(d), c);
    assert_int_equal(ingest_decoder_drain(d, on_event, &r), 1);
    assert_int_equal(ingest_decoder_pending(d), 0);
    /* a header cut after its type byte is pending too */
    assert_int_equal(ingest_decoder_feed(d, "\xdc", 1), 0);
    assert_int_equal(ingest_decoder_pending(d), 1);
    rec_free(&r);
    ingest_decoder_free(d);
    mp_free(&m);
}

/* Memory follows what is pending, not what went through: a long stream, and a big value followed
 * by small ones, leave the heap where it was. */
static void test_memory_bounded(void **state)
{
    struct mp m;
    struct rec r;
    struct mp bigv;
    struct ingest_limits l;
    ingest_limits_default(&l);
    l.max_value_bytes = 16u << 20; /* room for the 6 MB value below */
    struct ingest_decoder *d = new_decoder(&l);
    size_t base, peak = 0;
    long calls;
    static char big[60000];

    mp_init(&m);
    for (int i = 0; i < 100; i++)
        pevent(&m, "some-post-id", "some-actor-id", (uint64_t)i);
    rec_init(&r, 0);
    assert_int_equal(ingest_decoder_feed(d, m.sb.data, 1000), 0); /* warm up */
    drain_all(d, &r);
    base = heap_in_use();
    for (int round = 0; round < 2000; round++) { /* ~8 MB in uneven chunks */
        for (size_t off = 0; off < m.sb.size; off += 1531) {
            size_t k = m.sb.size - off < 1531 ? m.sb.size - off : 1531;
            assert_int_equal(ingest_decoder_feed(d, m.sb.data + off, k), 0);
            r.len = 0;
            drain_all(d, &r);
        }
        if (heap_in_use() > peak)
            peak = heap_in_use();
    }
    assert_true(peak < base + (256u << 10));

    /* one 6 MB value, then small ones: the unpacker gives its big buffer back */
    memset(big, 'b', sizeof(big));
    mp_init(&bigv);
    msgpack_pack_array(&bigv.pk, 100);
    for (int i = 0; i < 100; i++) {
        msgpack_pack_map(&bigv.pk, 1);
        pstr(&bigv, "content");
        pstrn(&bigv, big, sizeof(big));
    }
    assert_int_equal(ingest_decoder_feed(d, bigv.sb.data, bigv.sb.size), 0);
    mp_free(&bigv);
    r.len = 0;
    calls = r.calls;
    drain_all(d, &r);
    assert_int_equal(r.calls - calls, 100);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ingest_decoder_feed(d, m.sb.data, 77), 0);
        drain_all(d, &r);
    }
    assert_true(heap_in_use() < base + (256u << 10));
    rec_free(&r);
    ingest_decoder_free(d);
    mp_free(&m);
}

static void test_limits_default(void **state)
{
    struct ingest_limits l;

    ingest_limits_default(&l);
    assert_int_equal(l.max_value_bytes, 4u << 20);
    assert_int_equal(l.max_array, 100000);
    assert_int_equal(l.max_map, 64);
    assert_int_equal(l.max_depth, 8);
    assert_int_equal(l.max_str, 65536);
    ingest_decoder_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_map),
        cmocka_unit_test(test_array_of_maps),
        cmocka_unit_test(test_value_types),
        cmocka_unit_test(test_integer_forms),
        cmocka_unit_test(test_unknown_and_odd_keys),
        cmocka_unit_test(test_non_map_values),
        cmocka_unit_test(test_empty_containers),
        cmocka_unit_test(test_mixed_stream),
        cmocka_unit_test(test_split_everywhere),
        cmocka_unit_test(test_drain_stop_resume),
        cmocka_unit_test(test_malformed_c1),
        cmocka_unit_test(test_malformed_split_everywhere),
        cmocka_unit_test(test_malformed_places),
        cmocka_unit_test(test_malformed_offset_far),
        cmocka_unit_test(test_limit_array),
        cmocka_unit_test(test_limit_map),
        cmocka_unit_test(test_limit_str),
        cmocka_unit_test(test_limit_small_str),
        cmocka_unit_test(test_limit_depth),
        cmocka_unit_test(test_limit_value_size),
        cmocka_unit_test(test_limit_value_size_default),
        cmocka_unit_test(test_limit_header_split),
        cmocka_unit_test(test_truncated_value),
        cmocka_unit_test(test_pending_accounting),
        cmocka_unit_test(test_memory_bounded),
        cmocka_unit_test(test_limits_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
