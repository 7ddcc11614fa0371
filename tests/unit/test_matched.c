/* Unit tests of the size-matched comparison (analytics/matched.c, DESIGN §3) on cases worked by
 * hand: mid-ranks under ties, the tie term, strata that hold one label only, and the nil cases.
 * (integration_labels_matched checks the same against scipy on real and generated data.) */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "analytics/matched.h"

/* a cascade of group g, size s, whose every compared metric is x */
static struct engine_labeled lab(uint8_t g, uint32_t s, double x)
{
    struct engine_labeled v = {.group = g, .size = s};
    for (int m = 0; m < ENGINE_LABEL_METRICS; m++)
        v.v[m] = x;
    return v;
}

static void near(double got, double want)
{
    if (!(fabs(got - want) <= 1e-12 * fmax(1.0, fabs(want))))
        fail_msg("got %.17g, want %.17g", got, want);
}

/* A = {1, 2, 2}, B = {2, 3}, one stratum (sizes 4-7). Sorted: 1a 2a 2a 2b 3b; ranks 1, then
 * (2+3+4)/3 = 3 for the three 2s, then 5: R = 1 + 3 + 3 = 7. N = 5, ties 3^3 - 3 = 24.
 * T = 7/6, E = 3/2, Var = 3*2 / (12*36) * (6 - 24/20) = 1/15: z = (7/6 - 3/2) * sqrt(15). The
 * Mann-Whitney view: U = 7 - 6 = 1, mean 3, var 2.4: z = -2/sqrt(2.4), the same. */
static void test_ties_one_stratum(void **state)
{
    (void)state;
    struct engine_labeled v[] = {lab(0, 4, 1), lab(0, 5, 2), lab(0, 7, 2), lab(1, 6, 2), lab(1, 4, 3)};
    struct matched_metric mm[MATCHED_METRICS];
    assert_int_equal(matched_compare(v, 5, mm), 0);
    double z = (7.0 / 6 - 1.5) * sqrt(15.0);
    for (int m = 0; m < MATCHED_METRICS; m++) {
        assert_int_equal(mm[m].strata, 1);
        assert_int_equal(mm[m].cascades, 5);
        assert_int_equal(mm[m].n_a, 3);
        assert_int_equal(mm[m].n_b, 2);
        near(mm[m].z, z);
        near(mm[m].z, -2 / sqrt(2.4));
        near(mm[m].p, erfc(fabs(z) / sqrt(2.0)));
        near(mm[m].z_all, z); /* one stratum: matched = unmatched */
        near(mm[m].median_a, 2);
        near(mm[m].median_b, 2.5);
        assert_int_equal(mm[m].by[0].stratum, 2);
        near(mm[m].by[0].median_b, 2.5);
    }
    assert_string_equal(mm[0].metric, "depth");
    assert_string_equal(mm[4].metric, "duration_ms");
    matched_free(mm);
}

/* Two strata, and a third that holds A only (left out of the matched sums, kept in the
 * unmatched). Stratum 0 (size 1): A {5}, B {1}: R = 2, N = 2, T = 2/3, E = 1/2,
 * Var = 1/(12*9) * 3 = 1/36. Stratum 3 (sizes 8-15): A {1}, B {2, 3}: R = 1, N = 3, T = 1/4,
 * E = 1/2, Var = 2/(12*16) * 4 = 1/24. z = (11/12 - 1) / sqrt(1/36 + 1/24). */
static void test_strata(void **state)
{
    (void)state;
    struct engine_labeled v[] = {lab(0, 1, 5), lab(1, 1, 1), lab(0, 9, 1), lab(1, 12, 2),
                                 lab(1, 15, 3), lab(0, 100, 7)};
    struct matched_metric mm[MATCHED_METRICS];
    assert_int_equal(matched_compare(v, 6, mm), 0);
    assert_int_equal(mm[1].strata, 2);
    assert_int_equal(mm[1].cascades, 5);
    assert_int_equal(mm[1].n_a, 3);
    near(mm[1].z, (11.0 / 12 - 1) / sqrt(1.0 / 36 + 1.0 / 24));
    assert_int_equal(mm[1].by[0].stratum, 0);
    assert_int_equal(mm[1].by[1].stratum, 3);
    assert_int_equal(mm[1].by[1].n_b, 2);
    /* unmatched over all six: A {5, 1, 7}, B {1, 2, 3}; ranks 1.5a 1.5b 3b 4b 5a 6a: R = 12.5,
     * N = 6, ties 6: z = (12.5/7 - 3/2) / sqrt(9/(12*49) * (7 - 6/30)) */
    near(mm[1].z_all, (12.5 / 7 - 1.5) / sqrt(9.0 / (12 * 49) * (7 - 6.0 / 30)));
    matched_free(mm);
}

static void test_undefined(void **state)
{
    (void)state;
    struct matched_metric mm[MATCHED_METRICS];
    /* no cascade at all */
    assert_int_equal(matched_compare(NULL, 0, mm), 0);
    assert_true(isnan(mm[0].z) && isnan(mm[0].p) && isnan(mm[0].z_all) && isnan(mm[0].median_a));
    assert_int_equal(mm[0].strata, 0);
    matched_free(mm);
    /* A only */
    struct engine_labeled a[] = {lab(0, 2, 1), lab(0, 3, 2)};
    assert_int_equal(matched_compare(a, 2, mm), 0);
    assert_true(isnan(mm[2].z) && isnan(mm[2].z_all));
    near(mm[2].median_a, 1.5);
    matched_free(mm);
    /* both labels, but in different strata: no matched figure, an unmatched one */
    struct engine_labeled d[] = {lab(0, 2, 1), lab(1, 64, 2)};
    assert_int_equal(matched_compare(d, 2, mm), 0);
    assert_true(isnan(mm[0].z) && !isnan(mm[0].z_all));
    assert_int_equal(mm[0].strata, 0);
    matched_free(mm);
    /* every value equal: Var = 0 */
    struct engine_labeled e[] = {lab(0, 2, 4), lab(1, 2, 4), lab(1, 3, 4)};
    assert_int_equal(matched_compare(e, 3, mm), 0);
    assert_true(isnan(mm[3].z) && isnan(mm[3].p) && isnan(mm[3].z_all));
    matched_free(mm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ties_one_stratum),
        cmocka_unit_test(test_strata),
        cmocka_unit_test(test_undefined),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
