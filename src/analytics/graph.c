/* PageRank and Leiden communities of the amplification graph with igraph 0.10 (DESIGN §3).
 * The edge list is merged first (two stable counting sorts, O(nv + ne), no per-edge allocation):
 * repeated u->v edges become one edge carrying the summed weight, which is what igraph computes
 * from multi-edges anyway, and a smaller graph for igraph to index.
 *
 * Threads: igraph 0.10 as Debian builds it is not thread-safe (IGRAPH_THREAD_SAFE 0): its error
 * handler, its FINALLY stack and its default RNG are process globals. These functions must run on
 * one thread at a time; the analytics worker is that one thread.
 *
 * Debian's igraph runs PRPACK's loops with OpenMP. We keep the calling thread to one OpenMP thread:
 * with two threads PageRank was slower here (3.6 s against 2.7 s on 1 M vertices / 4 M edges),
 * its sums came out in a different order each run (ranks differing in the 15th digit), and the
 * analytics worker must leave the other core to ingest and queries (DESIGN §1). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_DEFAULT */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <igraph.h>

#include "analytics/graph.h"

#define PAGERANK_DAMPING 0.85
#define LEIDEN_SEED      42
#define LEIDEN_BETA      0.01 /* python-igraph's default randomness of the refinement step */
/* Iterate until an iteration no longer improves the partition (python-igraph's default is 2):
 * a result that does not depend on where a fixed count happened to stop. On 1 M vertices / 4 M
 * edges it was no slower than 2 iterations (12-22 s against 19-28 s on a busy 2-core machine). */
#define LEIDEN_ITERATIONS (-1)

/* igraph's default error handler aborts the process; ours keeps the reason for the caller and
 * unwinds igraph's FINALLY stack, as every non-aborting handler must. */
static _Thread_local char igraph_reason[256];

static void record_error(const char *reason, const char *file, int line, igraph_error_t code)
{
    (void)file;
    (void)line;
    snprintf(igraph_reason, sizeof igraph_reason, "%s (%s)", reason ? reason : "?",
             igraph_strerror(code));
    IGRAPH_FINALLY_FREE();
}

static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;
static void (*omp_set_threads)(int); /* libgomp's, when igraph brought it in; else NULL */

static void install_handlers(void)
{
    igraph_set_error_handler(record_error);
    /* Warnings would go to stderr of a server; none of them changes a result we return. */
    igraph_set_warning_handler(igraph_warning_handler_ignore);
    /* Looked up rather than linked: libgomp is igraph's dependency, not ours, and a build of
     * igraph without OpenMP has none (then there is nothing to limit). */
    *(void **)&omp_set_threads = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
}

/* Once per process: igraph's handlers. Every call: one OpenMP thread for the calling thread
 * (the setting belongs to the thread that makes it). */
static void igraph_setup(void)
{
    pthread_once(&handlers_once, install_handlers);
    if (omp_set_threads)
        omp_set_threads(1);
}

/* Turns an igraph failure into -errno with "what: reason" in err. */
static int fail(igraph_error_t code, const char *what, char *err, size_t errlen)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", what, igraph_reason[0] ? igraph_reason : "igraph error");
    igraph_reason[0] = '\0';
    return code == IGRAPH_ENOMEM ? -ENOMEM : -EIO;
}

static int say(int rc, const char *msg, char *err, size_t errlen)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return rc;
}

/* One pass of a stable counting sort of in[0..n) into out by key (u or v of the edge).
 * cnt has nv + 1 slots. */
static void counting_pass(uint32_t nv, const struct graph_edge *in, size_t n,
                          struct graph_edge *out, size_t *cnt, bool by_from)
{
    memset(cnt, 0, ((size_t)nv + 1) * sizeof *cnt);
    for (size_t i = 0; i < n; i++)
        cnt[(by_from ? in[i].from : in[i].to) + 1]++;
    for (uint32_t k = 0; k < nv; k++)
        cnt[k + 1] += cnt[k];
    for (size_t i = 0; i < n; i++)
        out[cnt[by_from ? in[i].from : in[i].to]++] = in[i];
}

/* The edges of the graph igraph gets: self loops and zero weights dropped (the amplification
 * graph has neither, and neither moves PageRank or modularity), each undirected edge taken as
 * (min, max), then sorted by (from, to) and equal pairs merged with their weights added.
 * Initialises ends (from0 to0 from1 to1 ...) and weights; 0, -EINVAL (an id >= nv), -ENOMEM. */
static int merge_edges(uint32_t nv, const struct graph_edge *edges, size_t ne, bool undirected,
                       igraph_vector_int_t *ends, igraph_vector_t *weights, char *err,
                       size_t errlen)
{
    struct graph_edge *a = NULL, *b = NULL;
    size_t *cnt = NULL, n = 0, d = 0;
    int rc = 0;

    for (size_t i = 0; i < ne; i++)
        if (edges[i].from >= nv || edges[i].to >= nv)
            return say(-EINVAL, "edge endpoint out of range", err, errlen);
    if (ne) {
        a = malloc(ne * sizeof *a);
        b = malloc(ne * sizeof *b);
        cnt = malloc(((size_t)nv + 1) * sizeof *cnt);
        if (!a || !b || !cnt) {
            rc = say(-ENOMEM, "out of memory merging edges", err, errlen);
            goto out;
        }
    }
    for (size_t i = 0; i < ne; i++) {
        struct graph_edge e = edges[i];
        if (e.from == e.to || e.w == 0)
            continue;
        if (undirected && e.from > e.to)
            a[n++] = (struct graph_edge){.from = e.to, .to = e.from, .w = e.w};
        else
            a[n++] = e;
    }
    /* Least significant key first: by to, then stably by from, leaves (from, to) order. */
    if (n) {
        counting_pass(nv, a, n, b, cnt, false);
        counting_pass(nv, b, n, a, cnt, true);
    }
    if (igraph_vector_int_init(ends, 2 * (igraph_integer_t)n)) {
        rc = fail(IGRAPH_ENOMEM, "edge vector", err, errlen);
        goto out;
    }
    if (igraph_vector_init(weights, (igraph_integer_t)n)) {
        igraph_vector_int_destroy(ends);
        rc = fail(IGRAPH_ENOMEM, "weight vector", err, errlen);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (d && a[i].from == VECTOR(*ends)[2 * d - 2] && a[i].to == VECTOR(*ends)[2 * d - 1]) {
            VECTOR(*weights)[d - 1] += a[i].w; /* exact below 2^53 */
            continue;
        }
        VECTOR(*ends)[2 * d] = a[i].from;
        VECTOR(*ends)[2 * d + 1] = a[i].to;
        VECTOR(*weights)[d] = a[i].w;
        d++;
    }
    /* Shrinking never reallocates, so it cannot fail. */
    igraph_vector_int_resize(ends, 2 * (igraph_integer_t)d);
    igraph_vector_resize(weights, (igraph_integer_t)d);
out:
    free(a);
    free(b);
    free(cnt);
    return rc;
}

/* Builds the igraph graph from merged ends, which it frees (igraph keeps its own copy). */
static int build_graph(igraph_t *g, uint32_t nv, igraph_vector_int_t *ends, bool directed,
                       char *err, size_t errlen)
{
    igraph_error_t e = igraph_create(g, ends, nv, directed);
    igraph_vector_int_destroy(ends);
    return e ? fail(e, "igraph_create", err, errlen) : 0;
}

int graph_pagerank(uint32_t nv, const struct graph_edge *edges, size_t ne, double *rank, char *err,
                   size_t errlen)
{
    igraph_vector_int_t ends;
    igraph_vector_t weights, vec;
    igraph_t g;
    igraph_error_t e;
    int rc;

    if ((ne && !edges) || (nv && !rank))
        return say(-EINVAL, "null argument", err, errlen);
    if (nv == 0)
        return 0;
    igraph_setup();
    rc = merge_edges(nv, edges, ne, false, &ends, &weights, err, errlen);
    if (rc)
        return rc;
    rc = build_graph(&g, nv, &ends, true, err, errlen);
    if (rc)
        goto out_weights;
    if (igraph_vector_init(&vec, 0)) {
        rc = fail(IGRAPH_ENOMEM, "pagerank vector", err, errlen);
        goto out_graph;
    }
    /* What python-igraph's Graph.pagerank(weights=..., damping=0.85) calls: PRPACK, directed,
     * no ARPACK options; dangling vertices teleport uniformly. */
    e = igraph_pagerank(&g, IGRAPH_PAGERANK_ALGO_PRPACK, &vec, NULL, igraph_vss_all(),
                        IGRAPH_DIRECTED, PAGERANK_DAMPING, &weights, NULL);
    if (e) {
        rc = fail(e, "igraph_pagerank", err, errlen);
    } else if (igraph_vector_size(&vec) != nv) {
        rc = say(-EIO, "igraph_pagerank: wrong result size", err, errlen);
    } else {
        for (uint32_t i = 0; i < nv; i++)
            rank[i] = VECTOR(vec)[i];
    }
    igraph_vector_destroy(&vec);
out_graph:
    igraph_destroy(&g);
out_weights:
    igraph_vector_destroy(&weights);
    return rc;
}

/* Renumbers igraph's communities (memb[v] < nv) by decreasing size, ties by smallest member:
 * communities in order of first appearance are in order of smallest member, and a stable
 * counting sort by size keeps that order among equals. O(nv), no comparison sort. */
static int renumber(uint32_t nv, const igraph_vector_int_t *memb, uint32_t *membership,
                    uint32_t *ncomm, char *err, size_t errlen)
{
    uint32_t *order = malloc((size_t)nv * sizeof *order);  /* igraph's id -> first-seen rank */
    uint32_t *size = calloc(nv, sizeof *size);             /* by first-seen rank */
    size_t *start = calloc((size_t)nv + 2, sizeof *start); /* by size */
    uint32_t k = 0;
    int rc = 0;

    if (!order || !size || !start) {
        rc = say(-ENOMEM, "out of memory renumbering communities", err, errlen);
        goto out;
    }
    memset(order, 0xff, (size_t)nv * sizeof *order);
    for (uint32_t v = 0; v < nv; v++) {
        igraph_integer_t c = VECTOR(*memb)[v];
        if (c < 0 || c >= (igraph_integer_t)nv) {
            rc = say(-EIO, "igraph_community_leiden: membership out of range", err, errlen);
            goto out;
        }
        if (order[c] == UINT32_MAX)
            order[c] = k++;
        size[order[c]]++;
    }
    for (uint32_t j = 0; j < k; j++)
        start[size[j]]++;
    for (size_t s = nv, at = 0; s >= 1; s--) { /* largest sizes get the smallest numbers */
        size_t c = start[s];
        start[s] = at;
        at += c;
    }
    /* size[] now becomes the final number of each first-seen rank. */
    for (uint32_t j = 0; j < k; j++)
        size[j] = (uint32_t)start[size[j]]++;
    for (uint32_t v = 0; v < nv; v++)
        membership[v] = size[order[VECTOR(*memb)[v]]];
    *ncomm = k;
out:
    free(order);
    free(size);
    free(start);
    return rc;
}

int graph_leiden(uint32_t nv, const struct graph_edge *edges, size_t ne, uint32_t *membership,
                 uint32_t *ncomm, char *err, size_t errlen)
{
    igraph_vector_int_t ends, memb;
    igraph_vector_t weights, strength;
    igraph_integer_t nb = 0;
    igraph_t g;
    igraph_error_t e;
    double total;
    int rc;

    if ((ne && !edges) || (nv && !membership) || !ncomm)
        return say(-EINVAL, "null argument", err, errlen);
    *ncomm = 0;
    if (nv == 0)
        return 0;
    igraph_setup();
    rc = merge_edges(nv, edges, ne, true, &ends, &weights, err, errlen);
    if (rc)
        return rc;
    if (igraph_vector_size(&weights) == 0) {
        /* No edges: modularity's resolution 1/(2m) is undefined; every vertex is alone. */
        igraph_vector_int_destroy(&ends);
        igraph_vector_destroy(&weights);
        for (uint32_t v = 0; v < nv; v++)
            membership[v] = v;
        *ncomm = nv;
        return 0;
    }
    rc = build_graph(&g, nv, &ends, false, err, errlen);
    if (rc)
        goto out_weights;
    if (igraph_vector_init(&strength, 0)) {
        rc = fail(IGRAPH_ENOMEM, "strength vector", err, errlen);
        goto out_graph;
    }
    if (igraph_vector_int_init(&memb, 0)) {
        rc = fail(IGRAPH_ENOMEM, "membership vector", err, errlen);
        goto out_strength;
    }
    /* Modularity as python-igraph's community_leiden(objective_function="modularity") sets it
     * up: node weights = weighted degree, resolution 1 / sum of node weights = 1 / (2m). */
    e = igraph_strength(&g, &strength, igraph_vss_all(), IGRAPH_ALL, IGRAPH_LOOPS, &weights);
    if (e) {
        rc = fail(e, "igraph_strength", err, errlen);
        goto out_memb;
    }
    total = igraph_vector_sum(&strength);
    /* The same seed each run: the same graph gives the same communities. */
    e = igraph_rng_seed(igraph_rng_default(), LEIDEN_SEED);
    if (e) {
        rc = fail(e, "igraph_rng_seed", err, errlen);
        goto out_memb;
    }
    e = igraph_community_leiden(&g, &weights, &strength, 1.0 / total, LEIDEN_BETA, false,
                                LEIDEN_ITERATIONS, &memb, &nb, NULL);
    if (e) {
        rc = fail(e, "igraph_community_leiden", err, errlen);
        goto out_memb;
    }
    if (igraph_vector_int_size(&memb) != nv) {
        rc = say(-EIO, "igraph_community_leiden: wrong result size", err, errlen);
        goto out_memb;
    }
    rc = renumber(nv, &memb, membership, ncomm, err, errlen);
out_memb:
    igraph_vector_int_destroy(&memb);
out_strength:
    igraph_vector_destroy(&strength);
out_graph:
    igraph_destroy(&g);
out_weights:
    igraph_vector_destroy(&weights);
    return rc;
}
