/* Unit tests of the core tables: interning, the uint64 map, segmented arrays and the top-k
 * index, each against a brute-force model on random operations. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/hash.h"
#include "core/intern.h"
#include "core/segvec.h"
#include "core/topk.h"
#include "core/u64map.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Past 65,536 slots the table grows a slice at a time (from 188,416 ids here): every id stays
 * findable while the copy is under way, and the table that replaces the old one holds them all. */
static void test_intern_dense_ids(void **state)
{
    struct intern t;
    assert_int_equal(intern_init(&t), 0);
    char buf[64];
    enum { N = 200000 };
    int saw_growth = 0;
    for (uint32_t i = 0; i < N; i++) {
        int len = snprintf(buf, sizeof(buf), "id-%u", i * 7919u);
        uint32_t id;
        int created;
        assert_int_equal(intern_get(&t, buf, (uint32_t)len, &id, &created), 0);
        assert_true(created);
        assert_int_equal(id, i); /* dense, in order of first sight */
        assert_true((uint64_t)t.count * 4 <= ((uint64_t)t.mask + 1) * 3);
        saw_growth |= t.next != NULL;
        uint32_t j = (uint32_t)(rnd() % (i + 1));
        len = snprintf(buf, sizeof(buf), "id-%u", j * 7919u);
        assert_int_equal(intern_find(&t, buf, (uint32_t)len, hash_bytes(buf, (size_t)len)), j);
    }
    assert_true(saw_growth);
    for (uint32_t i = 0; i < N; i += 97) {
        int len = snprintf(buf, sizeof(buf), "id-%u", i * 7919u);
        uint32_t id, l;
        int created;
        assert_int_equal(intern_get(&t, buf, (uint32_t)len, &id, &created), 0);
        assert_false(created);
        assert_int_equal(id, i);
        const char *s = intern_str(&t, id, &l);
        assert_int_equal(l, len);
        assert_memory_equal(s, buf, l);
    }
    assert_int_equal(intern_find(&t, "id-1", 4, hash_bytes("id-1", 4)), INTERN_NONE);
    intern_destroy(&t);
}

static void test_intern_long_and_binary(void **state)
{
    struct intern t;
    assert_int_equal(intern_init(&t), 0);
    char big[INTERN_MAX_LEN + 1];
    memset(big, 'x', sizeof(big));
    uint32_t id, l;
    int created;
    assert_int_equal(intern_get(&t, big, INTERN_MAX_LEN, &id, &created), 0);
    assert_int_equal(intern_get(&t, big, INTERN_MAX_LEN + 1, &id, &created), -E2BIG);
    /* strings differing only after a NUL byte, and the empty string, are distinct */
    assert_int_equal(intern_get(&t, "a\0b", 3, &id, &created), 0);
    assert_int_equal(intern_get(&t, "a\0c", 3, &id, &created), 0);
    assert_true(created);
    assert_int_equal(intern_get(&t, "", 0, &id, &created), 0);
    assert_true(created);
    intern_str(&t, 0, &l);
    assert_int_equal(l, INTERN_MAX_LEN);
    intern_destroy(&t);
}

/* Distinct for every k (a masked hash collided among 60 000 keys), and alike in their bits as
 * packed (actor, cascade) pairs are. */
static uint64_t model_key(uint32_t k)
{
    return (uint64_t)(k % 251) << 48 | k;
}

/* Every key of the model present with its value, every other absent, the count right. */
static void check_u64map(const struct u64map *m, const uint32_t *model, uint32_t keys)
{
    uint64_t count = 0;
    for (uint32_t k = 0; k < keys; k++) {
        uint32_t *v = u64map_get(m, model_key(k));
        if (model[k]) {
            assert_non_null(v);
            assert_int_equal(*v, model[k]);
            count++;
        } else {
            assert_null(v);
        }
    }
    assert_int_equal(m->count, count);
}

/* Random puts and deletes against a model, through many growths: the key space grows in steps
 * so that inserts, lookups and deletes all happen while the old table is half moved. */
/* A growth that starts with deleted ids on the free list (a reservation of many strings past
 * 23/32 full): ids reused before and after the copy's cursor, every live string findable while
 * the copy is half done and after, deleted ones not; and the slots as a snapshot file holds them
 * (8 bytes: the full 32 hash bits and the id) back to the same slots. */
static void test_intern_growth_reuse(void **state)
{
    (void)state;
    enum { N = 47000, MORE = 20000 };
    struct intern t;
    assert_int_equal(intern_init(&t), 0);
    char(*names)[16] = calloc(N + MORE, sizeof(*names));
    uint32_t *id_of = malloc((N + MORE) * sizeof(uint32_t));
    uint8_t *live = calloc(N + MORE, 1);
    assert_non_null(names);
    for (uint32_t k = 0; k < N; k++) {
        int len = snprintf(names[k], sizeof(names[k]), "g%u", k);
        int created;
        assert_int_equal(intern_get(&t, names[k], (uint32_t)len, &id_of[k], &created), 0);
        live[k] = 1;
    }
    assert_int_equal(t.mask, 65535);        /* just under 23/32 full */
    for (uint32_t k = 0; k < N; k += 470) { /* 100 deleted, spread over the ids */
        intern_del(&t, id_of[k]);
        live[k] = 0;
    }
    uint32_t next = N;
    /* the growth starts: its first steps write the new table's 128 pages (one per 4 strings
     * reserved), the next copies 19 200 ids, so that the deleted ids reused below lie both
     * before and after the copy's cursor */
    assert_int_equal(intern_reserve(&t, 300, 300 * 16), 0);
    assert_non_null(t.next);
    assert_int_equal(intern_reserve(&t, 300, 300 * 16), 0);
    assert_int_equal(t.copied, 0);
    assert_int_equal(intern_reserve(&t, 300, 300 * 16), 0);
    assert_int_equal(t.copied, 300 * 64);
    int saw_half = 0;
    while (next < N + MORE) {
        uint32_t n = N + MORE - next < 300 ? N + MORE - next : 300;
        assert_int_equal(intern_reserve(&t, n, n * 16), 0);
        saw_half |= t.next != NULL;
        for (uint32_t j = 0; j < n; j++, next++) {
            uint32_t len = (uint32_t)snprintf(names[next], sizeof(names[next]), "g%u", next);
            uint64_t h = hash_bytes(names[next], len);
            assert_int_equal(intern_find(&t, names[next], len, h), INTERN_NONE);
            id_of[next] = intern_add(&t, names[next], len, h);
            live[next] = 1;
        }
        for (uint32_t k = 0; k < next; k++) {
            uint32_t len = (uint32_t)strlen(names[k]);
            uint32_t f = intern_find(&t, names[k], len, hash_bytes(names[k], len));
            assert_int_equal(f, live[k] ? id_of[k] : INTERN_NONE);
        }
    }
    assert_true(saw_half);
    assert_null(t.next);
    assert_int_equal(t.mask, 131071);
    assert_int_equal(t.nfree, 0);
    uint64_t *file = malloc(((size_t)t.mask + 1) * sizeof(uint64_t));
    assert_non_null(file);
    uint64_t *file2 = malloc(((size_t)t.mask + 1) * sizeof(uint64_t));
    uint32_t *hashes = intern_hashes(&t);
    assert_non_null(file2);
    assert_non_null(hashes);
    intern_export_slots(&t, NULL, file, 0, t.mask + 1);
    intern_export_slots(&t, hashes, file2, 0, t.mask + 1);
    assert_memory_equal(file, file2, ((size_t)t.mask + 1) * sizeof(uint64_t));
    free(file2);
    free(hashes);
    for (uint32_t i = 0; i <= t.mask; i++) {
        assert_int_equal(intern_import_slot(t.mask, file[i]), t.slots[i]);
        if (!file[i])
            continue;
        uint32_t id = (uint32_t)file[i] - 1, len;
        const char *s = intern_str(&t, id, &len);
        assert_int_equal(file[i] >> 32, intern_hash32(hash_bytes(s, len)));
    }
    free(file);
    free(names);
    free(id_of);
    free(live);
    intern_destroy(&t);
}

/* Deletion against a model: random adds and deletes (growth under way included), every live
 * string findable with its id, deleted ones not, deleted ids reused before new ones, chunks whose
 * strings all went given back, compaction moving strings without changing ids, and a free list
 * rebuilt from the slots equal to the one kept. */
static int same_string(const struct intern *t, uint32_t id, const char *want)
{
    uint32_t len;
    const char *s = intern_str(t, id, &len);
    return len == strlen(want) && memcmp(s, want, len) == 0;
}

static void test_intern_delete(void **state)
{
    (void)state;
    enum { N = 300000, ROUNDS = 6 };
    struct intern t;
    assert_int_equal(intern_init(&t), 0);
    char(*names)[24] = calloc(N, sizeof(*names)); /* by key k: its string */
    uint32_t *id_of = malloc(N * sizeof(uint32_t)), *key_of = malloc(N * sizeof(uint32_t));
    uint8_t *live = calloc(N, 1);
    assert_non_null(names);
    uint32_t next = 0, nlive = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (uint32_t i = 0; i < N / 2 && next < N; i++, next++) { /* add a batch */
            int len =
                snprintf(names[next], sizeof(names[next]), "s%u-%u", next, next * 2654435761u);
            uint32_t freed_head = t.free_head, id;
            int created;
            assert_int_equal(intern_get(&t, names[next], (uint32_t)len, &id, &created), 0);
            assert_true(created);
            if (freed_head != INTERN_NONE)
                assert_int_equal(id, freed_head); /* a deleted id first */
            id_of[next] = id;
            key_of[id] = next;
            live[next] = 1;
            nlive++;
        }
        for (uint32_t k = 0; k < next; k++) /* delete most of the older ones */
            if (live[k] && (k < next - N / 4 ? rnd() % 10 != 0 : rnd() % 5 == 0)) {
                intern_del(&t, id_of[k]);
                live[k] = 0;
                nlive--;
            }
        assert_int_equal(intern_live(&t), nlive);
        size_t before = intern_bytes(&t);
        assert_int_equal(intern_compact(&t), 0);
        assert_true(intern_bytes(&t) <= before);
        for (uint32_t k = 0; k < next; k++) {
            uint32_t f = intern_find(&t, names[k], (uint32_t)strlen(names[k]),
                                     hash_bytes(names[k], strlen(names[k])));
            if (live[k]) {
                assert_int_equal(f, id_of[k]);
                assert_true(same_string(&t, id_of[k], names[k]));
            } else {
                assert_true(f == INTERN_NONE || key_of[f] != k);
            }
        }
    }
    /* what is live is a small part of all that was added: the arena followed it down */
    assert_true(nlive < N / 4);
    assert_true((uint64_t)t.nalloc << INTERN_CHUNK_SHIFT <= 4ull * nlive * 24 + (8u << 20));
    uint32_t head = t.free_head, nfree = t.nfree;
    uint8_t *was_free = calloc(t.count, 1);
    for (uint32_t x = head; x != INTERN_NONE; x = t.refs[x])
        was_free[x] = 1;
    assert_int_equal(intern_rebuild_free(&t, head), 0);
    assert_int_equal(t.nfree, nfree);
    assert_int_equal(t.free_head, head);
    for (uint32_t x = t.free_head; x != INTERN_NONE; x = t.refs[x])
        assert_true(was_free[x]);
    if (nfree > 1) { /* a chain that skips a deleted id, or loops, is refused */
        uint32_t second = t.refs[head];
        assert_int_equal(intern_rebuild_free(&t, second), -EINVAL);
        assert_int_equal(t.nfree, 0);
        t.refs[head] = head;
        assert_int_equal(intern_rebuild_free(&t, head), -EINVAL);
        /* ids past the table, at the head or as a link, are refused before being followed */
        assert_int_equal(intern_rebuild_free(&t, t.count + 7), -EINVAL);
        assert_int_equal(intern_rebuild_free(&t, 0xFFFF00FFu), -EINVAL);
        t.refs[head] = 0xFFFF00FFu;
        assert_int_equal(intern_rebuild_free(&t, head), -EINVAL);
        t.refs[head] = second;
        assert_int_equal(intern_rebuild_free(&t, head), 0);
        assert_int_equal(t.nfree, nfree);
    }
    free(was_free);
    if (nfree) { /* the slots as a snapshot holds them, with deleted ids about */
        size_t n = (size_t)t.mask + 1;
        uint64_t *a = malloc(n * 8), *b = malloc(n * 8);
        uint32_t *hashes = intern_hashes(&t);
        assert_non_null(a);
        assert_non_null(b);
        assert_non_null(hashes);
        intern_export_slots(&t, NULL, a, 0, t.mask + 1);
        intern_export_slots(&t, hashes, b, 0, t.mask + 1);
        assert_memory_equal(a, b, n * 8);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(intern_import_slot(t.mask, a[i]), t.slots[i]);
        free(a);
        free(b);
        free(hashes);
    }
    free(names);
    free(id_of);
    free(key_of);
    free(live);
    intern_destroy(&t);
}

static void test_u64map_model(void **state)
{
    struct u64map m;
    assert_int_equal(u64map_init(&m, 1), 0);
    enum { KEYS = 60000 };
    static uint32_t model[KEYS]; /* 0: absent, else value */
    memset(model, 0, sizeof(model));
    int grew_midway = 0;
    for (int step = 0; step < 600000; step++) {
        uint32_t span = 500 + (uint32_t)((uint64_t)step * (KEYS - 500) / 600000);
        uint32_t k = (uint32_t)(rnd() % span);
        uint64_t key = model_key(k);
        if (rnd() % 4 == 0) {
            assert_int_equal(u64map_del(&m, key), model[k] != 0);
            model[k] = 0;
        } else {
            int created;
            assert_int_equal(u64map_reserve(&m, 1), 0);
            uint32_t *v = u64map_put(&m, key, &created);
            assert_int_equal(created, model[k] == 0);
            *v = model[k] = (uint32_t)(rnd() | 1);
        }
        if (m.old.keys && grew_midway++ % 7 == 0)
            check_u64map(&m, model, span);
    }
    assert_true(grew_midway > 0); /* the checks above did see half-moved tables */
    check_u64map(&m, model, KEYS);
    u64map_finish(&m);
    assert_null(m.old.keys);
    check_u64map(&m, model, KEYS);
    uint64_t n = 0;
    uint64_t key;
    for (uint64_t i = 0; i <= m.t.mask; i++)
        n += (uint64_t)u64map_slot(&m, i, &key);
    assert_int_equal(n, m.count);
    u64map_destroy(&m);
}

static void test_segvec_stable(void **state)
{
    struct segvec v;
    segvec_init(&v, sizeof(uint64_t), 4);
    uint64_t *first = NULL;
    for (uint32_t i = 0; i < 1000; i++) {
        assert_int_equal(segvec_reserve(&v, 1), 0);
        uint64_t *x = segvec_push(&v);
        assert_int_equal(*x, 0); /* zeroed */
        *x = i * 3ull;
        if (i == 0)
            first = x;
    }
    assert_ptr_equal(segvec_at(&v, 0), first); /* growth never moves elements */
    for (uint32_t i = 0; i < 1000; i++)
        assert_int_equal(*(uint64_t *)segvec_at(&v, i), i * 3ull);
    segvec_destroy(&v);
}

/* Brute-force best-k of the model, compared with the index's certain prefix. */
static void check_topk(struct topk *t, const uint64_t *keys, const int *live, uint32_t n)
{
    struct topk_ent got[64];
    uint32_t total, exact = topk_sorted(t, got, &total);
    uint8_t used[512] = {0};
    for (uint32_t r = 0; r < exact; r++) {
        uint32_t best = UINT32_MAX;
        for (uint32_t i = 0; i < n; i++)
            if (live[i] && !used[i] &&
                (best == UINT32_MAX || topk_better(keys[i], i, keys[best], best)))
                best = i;
        assert_int_equal(got[r].item, best);
        assert_int_equal(got[r].key, keys[best]);
        used[best] = 1;
    }
}

static void run_topk(int monotone)
{
    enum { N = 500, CAP = 32 };
    struct topk t;
    assert_int_equal(topk_init(&t, CAP, monotone), 0);
    uint64_t keys[N] = {0};
    int live[N] = {0};
    for (int step = 0; step < 200000; step++) {
        uint32_t i = (uint32_t)(rnd() % N);
        if (!monotone && live[i] && rnd() % 50 == 0) {
            topk_remove(&t, i);
            live[i] = 0;
            continue;
        }
        if (monotone)
            keys[i] += rnd() % 3;
        else
            keys[i] = rnd() % 1000;
        live[i] = 1;
        topk_update(&t, i, keys[i]);
        if (step % 997 == 0)
            check_topk(&t, keys, live, N);
        if (step % 20011 == 0) { /* a rebuild restores a full, exact heap */
            topk_reset(&t);
            for (uint32_t j = 0; j < N; j++)
                if (live[j])
                    topk_offer(&t, j, keys[j]);
            struct topk_ent tmp[CAP];
            uint32_t total, exact = topk_sorted(&t, tmp, &total);
            assert_int_equal(exact, total);
            check_topk(&t, keys, live, N);
        }
    }
    topk_destroy(&t);
}

static void test_topk_monotone(void **state)
{
    run_topk(1);
}

static void test_topk_any_direction(void **state)
{
    run_topk(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intern_dense_ids), cmocka_unit_test(test_intern_long_and_binary),
        cmocka_unit_test(test_intern_delete),    cmocka_unit_test(test_intern_growth_reuse),
        cmocka_unit_test(test_u64map_model),     cmocka_unit_test(test_segvec_stable),
        cmocka_unit_test(test_topk_monotone),    cmocka_unit_test(test_topk_any_direction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
