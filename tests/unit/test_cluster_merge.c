/* cluster/cluster_merge: the cluster endpoint's pure merge rules: ids bytewise with a prefix
 * first, numbers of any msgpack kind compared by value, a merged ranked list's order (metric
 * descending, then first_ts, then root id; or size then root id), type 7 quantiles as the
 * engine's labels take them, and the union of amplifier ids. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "cluster/cluster.h"
#include "cluster/cluster_merge.h"

/* A cascade record {root, size, first_ts, structural_virality} packed and unpacked into u
 * (whose strings point into its bytes: kept in bufs, freed at the end). */
static msgpack_sbuffer bufs[8];
static int nbufs;

static const msgpack_object *rec(msgpack_unpacked *u, const char *root, uint64_t size,
                                 int64_t first_ts, double sv)
{
    msgpack_sbuffer *sbp = &bufs[nbufs++];
#define sb (*sbp)
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "root", 4);
    msgpack_pack_str_with_body(&pk, root, strlen(root));
    msgpack_pack_str_with_body(&pk, "size", 4);
    msgpack_pack_uint64(&pk, size);
    msgpack_pack_str_with_body(&pk, "first_ts", 8);
    msgpack_pack_int64(&pk, first_ts);
    msgpack_pack_str_with_body(&pk, "structural_virality", 19);
    msgpack_pack_double(&pk, sv);
    msgpack_unpacked_init(u);
    assert_int_equal(msgpack_unpack_next(u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    return &u->data;
#undef sb
}

static void test_id_order(void **state)
{
    (void)state;
    assert_true(clm_id_cmp("ab", 2, "abc", 3) < 0); /* a proper prefix first */
    assert_true(clm_id_cmp("abc", 3, "ab", 2) > 0);
    assert_true(clm_id_cmp("ab", 2, "ab", 2) == 0);
    assert_true(clm_id_cmp("B", 1, "a", 1) < 0);              /* bytewise, not case-folded */
    assert_true(clm_id_cmp("\xff", 1, "a", 1) > 0);           /* unsigned bytes */
    assert_true(clm_id_cmp("10", 2, "9", 1) < 0);             /* ids are strings */
}

static void test_numbers(void **state)
{
    (void)state;
    msgpack_object a = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = 5};
    msgpack_object b = {.type = MSGPACK_OBJECT_NEGATIVE_INTEGER, .via.i64 = -3};
    msgpack_object c = {.type = MSGPACK_OBJECT_FLOAT64, .via.f64 = 4.5};
    msgpack_object big = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = UINT64_MAX};
    msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    assert_true(clm_num_cmp(&a, &b) > 0);
    assert_true(clm_num_cmp(&b, &a) < 0);
    assert_true(clm_num_cmp(&c, &a) < 0);
    assert_true(clm_num_cmp(&a, &c) > 0);
    assert_true(clm_num_cmp(&big, &a) > 0);
    assert_true(clm_num_cmp(&a, &big) < 0);
    assert_true(clm_num_cmp(&big, &big) == 0);
    assert_true(clm_num_cmp(&nil, &b) < 0); /* nil lowest */
    assert_true(clm_num_cmp(NULL, &nil) == 0);
    assert_true(clm_num_cmp(&a, &a) == 0);
}

static void test_cascade_order(void **state)
{
    (void)state;
    msgpack_unpacked u1, u2, u3, u4;
    const msgpack_object *a = rec(&u1, "r2", 10, 100, 2.5);
    const msgpack_object *b = rec(&u2, "r1", 10, 200, 2.75);
    const msgpack_object *c = rec(&u3, "r0", 10, 100, 1.0);
    const msgpack_object *d = rec(&u4, "r9", 11, 900, 1.0);
    assert_true(clm_cascade_cmp(d, a, "size") < 0);  /* larger first */
    assert_true(clm_cascade_cmp(a, b, "size") < 0);  /* tie: created first (first_ts) */
    assert_true(clm_cascade_cmp(c, a, "size") < 0);  /* then root id */
    assert_true(clm_cascade_cmp(a, a, "size") == 0);
    assert_true(clm_cascade_cmp(b, a, "structural_virality") < 0); /* doubles by value */
    assert_true(clm_cascade_cmp(a, b, "growth") < 0); /* absent in both: the ties decide */
    assert_true(clm_cascade_root_cmp(b, a) < 0);      /* size, then root id: r1 < r2 */
    assert_true(clm_cascade_root_cmp(d, c) < 0);
    msgpack_unpacked_destroy(&u1);
    msgpack_unpacked_destroy(&u2);
    msgpack_unpacked_destroy(&u3);
    msgpack_unpacked_destroy(&u4);
    while (nbufs)
        msgpack_sbuffer_destroy(&bufs[--nbufs]);
}

static void test_quantile(void **state)
{
    (void)state;
    const double one[] = {7};
    const double v[] = {1, 2, 3, 4, 10};
    assert_true(clm_quantile(one, 1, 0.5) == 7);
    assert_true(clm_quantile(one, 1, 0.9) == 7);
    assert_true(clm_quantile(v, 5, 0.5) == 3);
    assert_true(fabs(clm_quantile(v, 5, 0.9) - 7.6) < 1e-12); /* pos 3.6: R's type 7 */
    assert_true(clm_quantile(v, 5, 0.0) == 1);
    assert_true(clm_quantile(v, 5, 1.0) == 10);
    const double two[] = {1, 2};
    assert_true(clm_quantile(two, 2, 0.5) == 1.5);
}

static void test_idset(void **state)
{
    (void)state;
    struct clm_idset s = {0};
    const char *ids[] = {"bob", "alice", "bob", "carol", "al", "alice"};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(clm_idset_add(&s, ids[i], strlen(ids[i])), 0);
    for (int i = 0; i < 100; i++) { /* growth past the first block */
        char b[16];
        int n = snprintf(b, sizeof(b), "x%d", i % 40);
        assert_int_equal(clm_idset_add(&s, b, (size_t)n), 0);
    }
    assert_int_equal(clm_idset_finish(&s), 4 + 40);
    assert_int_equal(clm_idset_finish(&s), 4 + 40); /* idempotent */
    assert_memory_equal(s.ids[0], "al", 2);
    assert_int_equal(s.lens[0], 2);
    assert_memory_equal(s.ids[1], "alice", 5);
    assert_memory_equal(s.ids[2], "bob", 3);
    assert_memory_equal(s.ids[3], "carol", 5);
    clm_idset_free(&s);
    assert_int_equal(clm_idset_finish(&s), 0); /* empty */
    clm_idset_free(&s);
}

/* --cluster's node list: HOST:PORT, IPv6 in brackets, no duplicates, ports 1..65535. */
static void test_node_list(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(cluster_parse_check("127.0.0.1:7401", err, sizeof(err)), 0);
    assert_int_equal(cluster_parse_check("a:1,b:65535,[::1]:7401", err, sizeof(err)), 0);
    const char *bad[] = {"", "host", "host:", ":7401", "h:0", "h:65536", "h:7x", "a:1,,b:2",
                         "a:1,a:1", "[::1:7401", "a:1,"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        assert_int_equal(cluster_parse_check(bad[i], err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "--cluster"));
    }
    char many[64 * 16 + 32] = "";
    for (int i = 0; i <= CLUSTER_NODES_MAX; i++) /* one too many */
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sh%d:1", i ? "," : "", i);
    assert_int_equal(cluster_parse_check(many, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "at most"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_order),   cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_cascade_order), cmocka_unit_test(test_quantile),
        cmocka_unit_test(test_idset), cmocka_unit_test(test_node_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
