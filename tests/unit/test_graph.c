/* graph_pagerank and graph_leiden on hand-made graphs whose answers are known without igraph:
 * stars, isolated vertices, two cliques joined by one edge, repeated edges adding weights, and
 * the argument errors. tests/oracle/oracle_igraph_analytics.py holds them against python-igraph. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "analytics/graph.h"

#define E(a, b, c) ((struct graph_edge){.from = (a), .to = (b), .w = (c)})

static double sum(const double *x, uint32_t n)
{
    double s = 0;
    for (uint32_t i = 0; i < n; i++)
        s += x[i];
    return s;
}

/* Every leaf amplifies the center: the center ranks highest, leaves tie, the sum is 1. */
static void test_pagerank_star(void **state)
{
    (void)state;
    struct graph_edge ed[6];
    double r[7];
    char err[128] = "";
    for (uint32_t i = 1; i < 7; i++)
        ed[i - 1] = E(i, 0, 1);
    assert_int_equal(graph_pagerank(7, ed, 6, r, err, sizeof err), 0);
    assert_true(fabs(sum(r, 7) - 1) < 1e-12);
    for (uint32_t i = 1; i < 7; i++) {
        assert_true(r[0] > r[i]);
        assert_true(fabs(r[i] - r[1]) < 1e-15);
    }
}

/* Without edges everything teleports: 1/n each. An isolated vertex beside a graph gets the
 * smallest share, the same as a vertex nobody amplifies. */
static void test_pagerank_isolated(void **state)
{
    (void)state;
    double r[5];
    char err[128] = "";
    assert_int_equal(graph_pagerank(5, NULL, 0, r, err, sizeof err), 0);
    for (int i = 0; i < 5; i++)
        assert_true(fabs(r[i] - 0.2) < 1e-12);

    struct graph_edge ed[] = {E(0, 1, 3), E(1, 2, 1), E(2, 0, 2)};
    double q[4];
    assert_int_equal(graph_pagerank(4, ed, 3, q, err, sizeof err), 0);
    assert_true(fabs(sum(q, 4) - 1) < 1e-12);
    for (int i = 0; i < 3; i++)
        assert_true(q[3] < q[i]);
    /* Vertex 3 has no in-edges: it gets only the teleport share (1-d)/n plus its share of
     * dangling mass (its own, as it has no out-edges): (1-d)/n + d * q[3] / n. */
    assert_true(fabs(q[3] - (0.15 / 4) / (1 - 0.85 / 4)) < 1e-9);
}

/* Repeated u->v edges add their weights: the same ranks as one edge with the sum. */
static void test_pagerank_repeated_edges(void **state)
{
    (void)state;
    struct graph_edge rep[] = {E(0, 1, 1), E(0, 2, 1), E(0, 1, 2), E(2, 1, 1),
                               E(0, 1, 1), E(3, 3, 9), E(1, 2, 0)};
    struct graph_edge one[] = {E(0, 1, 4), E(0, 2, 1), E(2, 1, 1)};
    double a[4], b[4];
    char err[128] = "";
    assert_int_equal(graph_pagerank(4, rep, 7, a, err, sizeof err), 0);
    assert_int_equal(graph_pagerank(4, one, 3, b, err, sizeof err), 0);
    for (int i = 0; i < 4; i++)
        assert_true(fabs(a[i] - b[i]) < 1e-14);
    assert_true(a[1] > a[2] && a[2] > a[0]);
}

static void test_pagerank_errors(void **state)
{
    (void)state;
    struct graph_edge bad[] = {E(0, 5, 1)};
    double r[3];
    char err[128] = "";
    assert_int_equal(graph_pagerank(3, bad, 1, r, err, sizeof err), -EINVAL);
    assert_true(strlen(err) > 0);
    assert_int_equal(graph_pagerank(3, NULL, 2, r, NULL, 0), -EINVAL);
    assert_int_equal(graph_pagerank(3, NULL, 0, NULL, NULL, 0), -EINVAL);
    assert_int_equal(graph_pagerank(0, NULL, 0, NULL, err, sizeof err), 0);
}

/* Two 5-cliques (0..4 and 5..9) joined by 4-5, edges in both directions in places: two
 * communities, each clique whole. */
static void test_leiden_two_cliques(void **state)
{
    (void)state;
    struct graph_edge ed[64];
    size_t n = 0;
    for (uint32_t base = 0; base <= 5; base += 5)
        for (uint32_t i = 0; i < 5; i++)
            for (uint32_t j = i + 1; j < 5; j++) {
                ed[n++] = E(base + i, base + j, 1);
                if ((i + j) % 2)
                    ed[n++] = E(base + j, base + i, 2);
            }
    ed[n++] = E(4, 5, 1);
    uint32_t m[10], m2[10], k = 0, k2 = 0;
    char err[128] = "";
    assert_int_equal(graph_leiden(10, ed, n, m, &k, err, sizeof err), 0);
    assert_int_equal(k, 2);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(m[i], 0); /* equal sizes: the one holding vertex 0 is first */
        assert_int_equal(m[5 + i], 1);
    }
    assert_int_equal(graph_leiden(10, ed, n, m2, &k2, err, sizeof err), 0);
    assert_int_equal(k2, k);
    assert_memory_equal(m, m2, sizeof m);
}

/* Numbering: a 3-clique on high ids, a 6-clique, isolated vertices (communities of one, in
 * vertex order after the larger ones). */
static void test_leiden_numbering(void **state)
{
    (void)state;
    uint32_t big[] = {2, 4, 6, 8, 10, 12}, small[] = {13, 14, 15};
    struct graph_edge ed[32];
    size_t n = 0;
    for (int i = 0; i < 6; i++)
        for (int j = i + 1; j < 6; j++)
            ed[n++] = E(big[i], big[j], 1);
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            ed[n++] = E(small[j], small[i], 1);
    uint32_t m[16], k = 0;
    char err[128] = "";
    assert_int_equal(graph_leiden(16, ed, n, m, &k, err, sizeof err), 0);
    assert_int_equal(k, 2 + 7);
    for (int i = 0; i < 6; i++)
        assert_int_equal(m[big[i]], 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(m[small[i]], 1);
    /* The singletons 0 1 3 5 7 9 11 follow, by vertex id. */
    uint32_t alone[] = {0, 1, 3, 5, 7, 9, 11};
    for (int i = 0; i < 7; i++)
        assert_int_equal(m[alone[i]], 2 + (uint32_t)i);
}

/* Repeated edges add weights: a heavy pair pulls a vertex out of a weakly bound triangle. */
static void test_leiden_weights(void **state)
{
    (void)state;
    struct graph_edge ed[] = {E(0, 1, 1), E(1, 2, 1), E(2, 0, 1), E(2, 3, 5), E(3, 2, 5),
                              E(2, 3, 5), E(3, 4, 1), E(4, 5, 1), E(5, 3, 1)};
    uint32_t m[6], k = 0;
    char err[128] = "";
    assert_int_equal(graph_leiden(6, ed, 9, m, &k, err, sizeof err), 0);
    assert_int_equal(m[2], m[3]);
}

static void test_leiden_edge_cases(void **state)
{
    (void)state;
    uint32_t m[4], k = 99;
    char err[128] = "";
    assert_int_equal(graph_leiden(0, NULL, 0, NULL, &k, err, sizeof err), 0);
    assert_int_equal(k, 0);
    assert_int_equal(graph_leiden(4, NULL, 0, m, &k, err, sizeof err), 0);
    assert_int_equal(k, 4);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(m[i], i);
    /* Only self loops and zero weights: no edges left. */
    struct graph_edge loops[] = {E(1, 1, 3), E(0, 2, 0)};
    assert_int_equal(graph_leiden(4, loops, 2, m, &k, err, sizeof err), 0);
    assert_int_equal(k, 4);
    struct graph_edge one[] = {E(3, 1, 1)};
    assert_int_equal(graph_leiden(4, one, 1, m, &k, err, sizeof err), 0);
    assert_int_equal(k, 3);
    assert_int_equal(m[1], 0);
    assert_int_equal(m[3], 0);
    assert_int_equal(m[0], 1);
    assert_int_equal(m[2], 2);
    struct graph_edge bad[] = {E(4, 0, 1)};
    assert_int_equal(graph_leiden(4, bad, 1, m, &k, err, sizeof err), -EINVAL);
    assert_int_equal(graph_leiden(4, one, 1, m, NULL, err, sizeof err), -EINVAL);
    assert_int_equal(graph_leiden(4, one, 1, NULL, &k, NULL, 0), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pagerank_star),           cmocka_unit_test(test_pagerank_isolated),
        cmocka_unit_test(test_pagerank_repeated_edges), cmocka_unit_test(test_pagerank_errors),
        cmocka_unit_test(test_leiden_two_cliques),      cmocka_unit_test(test_leiden_numbering),
        cmocka_unit_test(test_leiden_weights),          cmocka_unit_test(test_leiden_edge_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
