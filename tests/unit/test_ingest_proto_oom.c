/* Allocation failures in the ingest decoder, SQLite-style: the same stream is decoded again and
 * again with the Nth allocation failing (the decoder's own and msgpack-c's), for every N until a
 * run needs no more. Each run must end in order (0 or -ENOMEM, never a crash or -EPROTO), deliver
 * a prefix of the right events, and free everything it allocated. The failures come from malloc
 * and friends defined here, which the dynamic linker also binds msgpack-c's calls to (glibc). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "net/ingest_proto.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

#ifndef UNDER_SANITIZER

/* glibc's allocator under its other names: the sanitizers bring their own malloc, hence the
 * test is skipped under them. */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

static bool armed;    /* count and fail only inside a run */
static long fail_at;  /* the allocation (0-based) that fails in this run */
static long n_allocs; /* allocations attempted in this run */
static long live;     /* blocks allocated and not yet freed, over the run */

static bool fail_now(void)
{
    return armed && n_allocs++ == fail_at;
}

void *malloc(size_t n)
{
    void *p;

    if (fail_now())
        return NULL;
    p = __libc_malloc(n);
    live += p != NULL;
    return p;
}

void *calloc(size_t n, size_t size)
{
    void *p;

    if (fail_now())
        return NULL;
    p = __libc_calloc(n, size);
    live += p != NULL;
    return p;
}

void *realloc(void *p, size_t n)
{
    void *q;

    if (p && n == 0) {
        live--;
        return __libc_realloc(p, 0);
    }
    if (fail_now())
        return NULL;
    q = __libc_realloc(p, n);
    live += !p && q;
    return q;
}

void free(void *p)
{
    live -= p != NULL;
    __libc_free(p);
}

/* ---- one run --------------------------------------------------------------------------------- */

#define MAX_EVENTS 4096

struct run {
    uint64_t digest[MAX_EVENTS]; /* of each event delivered, in order */
    long events;
    bool nomem; /* a call returned -ENOMEM */
};

static uint64_t mix(uint64_t h, uint64_t v)
{
    return (h ^ v) * 0x100000001b3ull;
}

static uint64_t mix_field(uint64_t h, const struct event_field *f)
{
    h = mix(h, f->type);
    h = mix(h, f->type == EVF_UINT ? f->u : (uint64_t)f->i);
    if (f->type == EVF_STR) {
        h = mix(h, f->len);
        for (uint32_t i = 0; i < f->len; i++)
            h = mix(h, (uint8_t)f->str[i]);
    }
    return h;
}

/* Records without allocating: an allocation failing in here would not be the decoder's. */
static int on_event(void *ctx, const struct event_raw *raw)
{
    struct run *r = ctx;
    uint64_t h = 0xcbf29ce484222325ull;

    assert_true(r->events < MAX_EVENTS);
    if (raw) {
        h = mix_field(h, &raw->post);
        h = mix_field(h, &raw->actor);
        h = mix_field(h, &raw->ts);
        h = mix_field(h, &raw->content);
    }
    r->digest[r->events++] = h;
    return r->events % 7 == 0; /* stop now and then, inside arrays too */
}

/* Drains until idle or -ENOMEM; after -ENOMEM the decoder must stay dead and idle. */
static void drain(struct ingest_decoder *d, struct run *r)
{
    while (!ingest_decoder_idle(d)) {
        long n = ingest_decoder_drain(d, on_event, r);
        if (n == -ENOMEM) {
            r->nomem = true;
            assert_true(ingest_decoder_idle(d));
            assert_int_equal(ingest_decoder_drain(d, on_event, r), -ENOMEM);
            assert_int_equal(ingest_decoder_feed(d, "\x80", 1), -ENOMEM);
            return;
        }
        assert_true(n >= 0);
    }
}

static void run_stream(const char *s, size_t n, struct run *r)
{
    struct ingest_decoder *d = NULL;
    int rc;

    memset(r, 0, sizeof(*r));
    rc = ingest_decoder_new(NULL, &d);
    if (rc == -ENOMEM) {
        assert_null(d);
        r->nomem = true;
        return;
    }
    assert_int_equal(rc, 0);
    for (size_t off = 0; off < n && !r->nomem; off += 3001) {
        rc = ingest_decoder_feed(d, s + off, n - off < 3001 ? n - off : 3001);
        if (rc == -ENOMEM) {
            r->nomem = true;
            assert_int_equal(ingest_decoder_feed(d, "\x80", 1), -ENOMEM);
        } else {
            assert_int_equal(rc, 0);
        }
        drain(d, r); /* what was taken before the failure can still come out */
    }
    ingest_decoder_free(d);
}

/* Small events, an array of them, a value of ~300 KB (the buffer grows, then shrinks back),
 * and more small events. */
static void build_stream(msgpack_sbuffer *sb)
{
    static char big[30000];
    msgpack_packer pk;

    memset(big, 'c', sizeof(big));
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    for (int round = 0; round < 2; round++) {
        msgpack_pack_array(&pk, 40);
        for (int i = 0; i < 40; i++) {
            msgpack_pack_map(&pk, 3);
            msgpack_pack_str_with_body(&pk, "post", 4);
            msgpack_pack_uint64(&pk, (uint64_t)i);
            msgpack_pack_str_with_body(&pk, "actor", 5);
            msgpack_pack_str_with_body(&pk, "someone", 7);
            msgpack_pack_str_with_body(&pk, "ts", 2);
            msgpack_pack_int64(&pk, -i);
        }
        msgpack_pack_array(&pk, 10);
        for (int i = 0; i < 10; i++) {
            msgpack_pack_map(&pk, 1);
            msgpack_pack_str_with_body(&pk, "content", 7);
            msgpack_pack_str_with_body(&pk, big, sizeof(big));
        }
        for (int i = 0; i < 30; i++) {
            msgpack_pack_map(&pk, 2);
            msgpack_pack_str_with_body(&pk, "post", 4);
            msgpack_pack_str_with_body(&pk, "p", 1);
            msgpack_pack_str_with_body(&pk, "ts", 2);
            msgpack_pack_uint64(&pk, (uint64_t)i);
        }
    }
}

static struct run ref, got;

static void test_every_allocation_fails(void **state)
{
    msgpack_sbuffer sb;
    long runs = 0, failed_runs = 0;

    msgpack_sbuffer_init(&sb);
    build_stream(&sb);
    run_stream(sb.data, sb.size, &ref);
    assert_false(ref.nomem);
    assert_int_equal(ref.events, 2 * (40 + 10 + 30));

    for (fail_at = 0;; fail_at++) {
        long live_before = live;
        n_allocs = 0;
        armed = true;
        run_stream(sb.data, sb.size, &got);
        armed = false;
        runs++;
        assert_int_equal(live, live_before); /* nothing leaked, whatever failed */
        assert_true(got.events <= ref.events);
        for (long i = 0; i < got.events; i++) {
            if (got.digest[i] != ref.digest[i])
                fail_msg("allocation %ld failing: event %ld differs", fail_at, i);
        }
        if (n_allocs <= fail_at) { /* no allocation failed: the run is complete */
            assert_false(got.nomem);
            assert_int_equal(got.events, ref.events);
            break;
        }
        if (!got.nomem) /* a failure the decoder got round must not lose anything */
            assert_int_equal(got.events, ref.events);
        failed_runs += got.nomem;
    }
    print_message("%ld runs, %ld ended in -ENOMEM\n", runs, failed_runs);
    assert_true(runs > 10);
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else /* UNDER_SANITIZER */

static void test_skipped_under_sanitizers(void **state)
{
    skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skipped_under_sanitizers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif
