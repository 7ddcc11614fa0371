/* Unit tests of the big arrays (core/bigarr.c) and of the growth that uses them (intern offsets
 * and slots, u64map tables, segmented arrays' 2 MiB chunks): contents survive a resize (in place
 * or moved), new bytes are zero, big ones are 2 MiB-aligned, and a failing mmap or mremap (from
 * the wrappers defined here, which the static library's calls bind to) leaves -ENOMEM and the
 * table as it was, usable once memory comes back. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/bigarr.h"
#include "core/hash.h"
#include "core/intern.h"
#include "core/segvec.h"
#include "core/u64map.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

#define MIB ((size_t)1 << 20)

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 31 + seed);
}

static int same(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 31 + seed))
            return 0;
    return 1;
}

/* Small and big, grown across the 2 MiB line and on, shrunk and grown again. */
static void test_resize_keeps_and_zeroes(void **state)
{
    (void)state;
    size_t sizes[] = {0, 100, 4096, MIB, 2 * MIB, 2 * MIB + 8, 5 * MIB, 64 * MIB, 3 * MIB, MIB, 70};
    size_t n = sizeof(sizes) / sizeof(sizes[0]);
    unsigned char *p = bigarr_alloc(sizes[0]);
    assert_non_null(p);
    for (size_t i = 1; i < n; i++) {
        size_t old = sizes[i - 1], now = sizes[i];
        fill(p, old, (unsigned)i);
        p = bigarr_resize(p, old, now);
        assert_non_null(p);
        size_t kept = old < now ? old : now;
        assert_true(same(p, kept, (unsigned)i));
        if (now > old)
            assert_true(all_zero(p + old, now - old));
        if (now >= BIGARR_HUGE)
            assert_int_equal((uintptr_t)p % BIGARR_HUGE, 0);
    }
    bigarr_free(p, sizes[n - 1]);
    /* a shrink in place, then a growth: the bytes given up come back zero */
    p = bigarr_alloc(6 * MIB);
    fill(p, 6 * MIB, 7);
    p = bigarr_resize(p, 6 * MIB, 5 * MIB + 3);
    p = bigarr_resize(p, 5 * MIB + 3, 6 * MIB);
    assert_true(same(p, 5 * MIB + 3, 7));
    assert_true(all_zero(p + 5 * MIB + 3, MIB - 3));
    bigarr_free(p, 6 * MIB);
    bigarr_free(NULL, 5 * MIB);
    /* a hash table's array (no huge pages): zeroed, aligned, resized as the others */
    p = bigarr_alloc_random(3 * MIB);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % BIGARR_HUGE, 0);
    assert_true(all_zero(p, 3 * MIB));
    fill(p, 3 * MIB, 9);
    p = bigarr_resize(p, 3 * MIB, 9 * MIB);
    assert_true(same(p, 3 * MIB, 9));
    assert_true(all_zero(p + 3 * MIB, 6 * MIB));
    bigarr_free(p, 9 * MIB);
}

/* Many arrays growing in turn, so that most growths cannot extend in place and move. */
static void test_interleaved_growth_moves(void **state)
{
    (void)state;
    enum { K = 4 };
    unsigned char *a[K];
    size_t sz[K], before = bigarr_mapped();
    for (int k = 0; k < K; k++) {
        sz[k] = 2 * MIB;
        a[k] = bigarr_alloc(sz[k]);
        assert_non_null(a[k]);
        fill(a[k], sz[k], (unsigned)k);
    }
    for (int round = 0; round < 6; round++) {
        for (int k = 0; k < K; k++) {
            size_t now = sz[k] + sz[k] / 2;
            a[k] = bigarr_resize(a[k], sz[k], now);
            assert_non_null(a[k]);
            assert_int_equal((uintptr_t)a[k] % BIGARR_HUGE, 0);
            assert_true(same(a[k], sz[k], (unsigned)k));
            assert_true(all_zero(a[k] + sz[k], now - sz[k]));
            fill(a[k], now, (unsigned)k);
            sz[k] = now;
        }
    }
    size_t all = 0;
    for (int k = 0; k < K; k++)
        all += (sz[k] + BIGARR_HUGE - 1) / BIGARR_HUGE * BIGARR_HUGE;
    assert_int_equal(bigarr_mapped(), before + all); /* the figure follows every move */
    for (int k = 0; k < K; k++)
        bigarr_free(a[k], sz[k]);
    assert_int_equal(bigarr_mapped(), before);
}

#ifndef UNDER_SANITIZER

/* mmap and mremap as the static library sees them: the kernel's, unless a failure is armed. */
static int fail_mmap, fail_mremap;

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (fail_mmap) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

void *mremap(void *old, size_t old_len, size_t len, int flags, ...)
{
    void *to = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        to = va_arg(ap, void *);
        va_end(ap);
    }
    if (fail_mremap) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return (void *)syscall(SYS_mremap, old, old_len, len, flags, to);
}

static void arm(int mm, int mr)
{
    fail_mmap = mm;
    fail_mremap = mr;
}

static void test_resize_failure_keeps_array(void **state)
{
    (void)state;
    arm(0, 0);
    unsigned char *p = bigarr_alloc(4 * MIB);
    assert_non_null(p);
    fill(p, 4 * MIB, 3);
    arm(1, 1); /* neither in place nor moved */
    assert_null(bigarr_resize(p, 4 * MIB, 40 * MIB));
    assert_null(bigarr_alloc(4 * MIB));
    arm(0, 1); /* the move's target can be reserved, the move fails: the target goes back */
    assert_null(bigarr_resize(p, 4 * MIB, 40 * MIB));
    arm(0, 0);
    assert_true(same(p, 4 * MIB, 3));
    p = bigarr_resize(p, 4 * MIB, 40 * MIB);
    assert_non_null(p);
    assert_true(same(p, 4 * MIB, 3));
    bigarr_free(p, 40 * MIB);
    assert_int_equal(bigarr_mapped(), 0); /* failures left nothing mapped behind */
}

/* The bytes of a big array's mapping (2 MiB units). */
static size_t mapped(size_t bytes)
{
    return (bytes + BIGARR_HUGE - 1) / BIGARR_HUGE * BIGARR_HUGE;
}

static uint64_t key_hash(const char *s, uint32_t len)
{
    return hash_bytes(s, len);
}

/* An intern table past 2 MiB of offsets: a reservation that needs more offsets or slots fails
 * cleanly without memory, every string stays found, and it succeeds once memory is back. */
static void test_intern_growth_failure(void **state)
{
    (void)state;
    arm(0, 0);
    struct intern t;
    assert_int_equal(intern_init(&t), 0);
    char buf[32];
    uint32_t n = 0;
    /* up to a full table whose next offsets (3/2 as many) need a larger mapping */
    while (t.refs_cap < 600000 || t.count < t.refs_cap ||
           mapped((size_t)t.refs_cap * 6) == mapped((size_t)t.refs_cap * 4)) {
        int len = snprintf(buf, sizeof(buf), "s%u", n);
        uint32_t id;
        int created;
        assert_int_equal(intern_get(&t, buf, (uint32_t)len, &id, &created), 0);
        assert_int_equal(id, n);
        n++;
    }
    assert_true((size_t)t.refs_cap * 4 >= BIGARR_HUGE);
    arm(1, 1);
    int len = snprintf(buf, sizeof(buf), "s%u", n);
    assert_int_equal(intern_reserve(&t, 1, (uint32_t)len), -ENOMEM);
    arm(0, 0);
    for (uint32_t i = 0; i < n; i += 997) {
        len = snprintf(buf, sizeof(buf), "s%u", i);
        assert_int_equal(intern_find(&t, buf, (uint32_t)len, key_hash(buf, (uint32_t)len)), i);
    }
    for (uint32_t k = 0; k < 1000; k++, n++) {
        len = snprintf(buf, sizeof(buf), "s%u", n);
        uint32_t id;
        int created;
        assert_int_equal(intern_get(&t, buf, (uint32_t)len, &id, &created), 0);
        assert_int_equal(id, n);
        assert_true(created);
    }
    for (uint32_t i = 0; i < n; i += 991) {
        len = snprintf(buf, sizeof(buf), "s%u", i);
        assert_int_equal(intern_find(&t, buf, (uint32_t)len, key_hash(buf, (uint32_t)len)), i);
    }
    intern_destroy(&t);
}

/* A u64map whose next table (past 2 MiB) cannot be had: -ENOMEM, every key still there. */
static void test_u64map_growth_failure(void **state)
{
    (void)state;
    arm(0, 0);
    struct u64map m;
    assert_int_equal(u64map_init(&m, 1), 0);
    uint64_t n = 0;
    int failed = 0;
    while (n < 2000000 && !failed) {
        if ((m.t.mask + 1) * 8 >= BIGARR_HUGE && (m.count + 1) * 4 > (m.t.mask + 1) * 3) {
            arm(1, 1); /* the next reservation must allocate a table */
            assert_int_equal(u64map_reserve(&m, 1), -ENOMEM);
            arm(0, 0);
            failed = 1;
        }
        assert_int_equal(u64map_reserve(&m, 1), 0);
        int created;
        *u64map_put(&m, n * 0x9e3779b97f4a7c15ull, &created) = (uint32_t)n;
        assert_true(created);
        n++;
    }
    assert_true(failed);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t *v = u64map_get(&m, i * 0x9e3779b97f4a7c15ull);
        assert_non_null(v);
        assert_int_equal(*v, (uint32_t)i);
    }
    u64map_destroy(&m);
}

/* Segmented arrays of 2 MiB chunks: a chunk that cannot be had fails the reservation, the
 * records before stay, and the chunks are 2 MiB-aligned. */
static void test_segvec_chunk_failure(void **state)
{
    (void)state;
    arm(0, 0);
    struct segvec v;
    segvec_init(&v, 32, 16);
    for (uint32_t i = 0; i < (1u << 16); i++) {
        assert_int_equal(segvec_reserve(&v, 1), 0);
        *(uint32_t *)segvec_push(&v) = i;
    }
    assert_int_equal((uintptr_t)v.chunks[0] % BIGARR_HUGE, 0);
    arm(1, 1);
    assert_int_equal(segvec_reserve(&v, 1), -ENOMEM);
    arm(0, 0);
    assert_int_equal(segvec_reserve(&v, 1), 0);
    *(uint32_t *)segvec_push(&v) = 1u << 16;
    for (uint32_t i = 0; i <= (1u << 16); i++)
        assert_int_equal(*(uint32_t *)segvec_at(&v, i), i);
    assert_true(all_zero((unsigned char *)segvec_at(&v, (1u << 16)) + 4, 28));
    segvec_destroy(&v);
}

#endif /* UNDER_SANITIZER */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_keeps_and_zeroes),
        cmocka_unit_test(test_interleaved_growth_moves),
#ifndef UNDER_SANITIZER
        cmocka_unit_test(test_resize_failure_keeps_array),
        cmocka_unit_test(test_intern_growth_failure),
        cmocka_unit_test(test_u64map_growth_failure),
        cmocka_unit_test(test_segvec_chunk_failure),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
