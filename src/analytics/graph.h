/* Whole-graph analytics of the amplification graph with igraph (DESIGN §3): PageRank (PRPACK,
 * damping 0.85, weighted, directed, every actor a vertex) and Leiden communities of the graph
 * taken as undirected and weighted. Pure functions over an edge list: the analytics worker runs
 * them on its own thread over a snapshot, never touching the engine. */
#ifndef ANALYTICS_GRAPH_H
#define ANALYTICS_GRAPH_H

#include <stddef.h>
#include <stdint.h>

/* One weighted edge u -> v: u made w posts whose direct parent is v's post (u != v). */
struct graph_edge {
    uint32_t from, to;
    uint32_t w;
};

/* PageRank of every vertex 0..nv-1 into rank[nv] (sums to 1; a vertex without edges gets the
 * teleport share). Edges may repeat (their weights add). 0, -ENOMEM, or -EIO with a message in
 * err when igraph fails. */
int graph_pagerank(uint32_t nv, const struct graph_edge *edges, size_t ne, double *rank,
                   char *err, size_t errlen);

/* Leiden communities (modularity objective, resolution 1, fixed seed so results repeat) of the
 * undirected weighted graph (u-v and v-u edges merge, weights adding). membership[nv] gets a
 * community number per vertex, numbered by decreasing community size (0 = largest; ties by
 * smallest vertex id); *ncomm the count. Isolated vertices are communities of one. 0, -ENOMEM
 * or -EIO. */
int graph_leiden(uint32_t nv, const struct graph_edge *edges, size_t ne, uint32_t *membership,
                 uint32_t *ncomm, char *err, size_t errlen);

#endif
