/* The C side of oracle_igraph_analytics.py: reads an amplification graph from stdin (nv, then
 * one `u v w` per edge), runs graph_pagerank and graph_leiden and prints `ncomm K` then one line
 * per vertex, `pagerank membership`, ranks with %.17g. Timings of each step go to stderr, so
 * the same driver measures the big graphs. --twice runs Leiden again in the process and fails
 * when the membership differs (the seed must make it repeat). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analytics/graph.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Reads all of stdin into a NUL-terminated buffer. */
static char *slurp(size_t *len)
{
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, stdin);
        n += r;
        if (r == 0) {
            buf[n] = '\0';
            *len = n;
            return buf;
        }
    }
    free(buf);
    return NULL;
}

int main(int argc, char **argv)
{
    int twice = argc > 1 && strcmp(argv[1], "--twice") == 0;
    size_t len, ne = 0, cap = 1024;
    char *buf = slurp(&len), *p, *end, err[256] = "";
    struct graph_edge *ed = malloc(cap * sizeof *ed);
    double t0 = now(), t1;
    if (!buf || !ed) {
        fprintf(stderr, "graph_oracle: out of memory reading input\n");
        return 2;
    }
    p = buf;
    unsigned long nv = strtoul(p, &end, 10);
    if (end == p || nv > UINT32_MAX) {
        fprintf(stderr, "graph_oracle: expected the vertex count first\n");
        return 2;
    }
    for (p = end;;) {
        unsigned long x[3];
        int k;
        for (k = 0; k < 3; k++) {
            x[k] = strtoul(p, &end, 10);
            if (end == p)
                break;
            p = end;
        }
        if (k == 0)
            break;
        if (k < 3 || x[0] > UINT32_MAX || x[1] > UINT32_MAX || x[2] > UINT32_MAX) {
            fprintf(stderr, "graph_oracle: bad edge line after %zu edges\n", ne);
            return 2;
        }
        if (ne == cap) {
            struct graph_edge *ne2 = realloc(ed, 2 * cap * sizeof *ed);
            if (!ne2) {
                fprintf(stderr, "graph_oracle: out of memory reading edges\n");
                return 2;
            }
            ed = ne2;
            cap *= 2;
        }
        ed[ne++] =
            (struct graph_edge){.from = (uint32_t)x[0], .to = (uint32_t)x[1], .w = (uint32_t)x[2]};
    }
    free(buf);
    t1 = now();
    fprintf(stderr, "read %lu vertices %zu edges: %.3f s\n", nv, ne, t1 - t0);

    double *rank = malloc((nv ? nv : 1) * sizeof *rank);
    uint32_t *memb = malloc((nv ? nv : 1) * sizeof *memb), ncomm = 0;
    if (!rank || !memb) {
        fprintf(stderr, "graph_oracle: out of memory\n");
        return 2;
    }
    t0 = now();
    int rc = graph_pagerank((uint32_t)nv, ed, ne, rank, err, sizeof err);
    t1 = now();
    if (rc) {
        fprintf(stderr, "graph_pagerank: %s (%s)\n", strerror(-rc), err);
        return 1;
    }
    fprintf(stderr, "graph_pagerank: %.3f s\n", t1 - t0);
    t0 = now();
    rc = graph_leiden((uint32_t)nv, ed, ne, memb, &ncomm, err, sizeof err);
    t1 = now();
    if (rc) {
        fprintf(stderr, "graph_leiden: %s (%s)\n", strerror(-rc), err);
        return 1;
    }
    fprintf(stderr, "graph_leiden: %.3f s, %u communities\n", t1 - t0, ncomm);
    if (twice) {
        uint32_t *again = malloc((nv ? nv : 1) * sizeof *again), n2 = 0;
        if (!again) {
            fprintf(stderr, "graph_oracle: out of memory\n");
            return 2;
        }
        rc = graph_leiden((uint32_t)nv, ed, ne, again, &n2, err, sizeof err);
        if (rc || n2 != ncomm || memcmp(again, memb, nv * sizeof *memb) != 0) {
            fprintf(stderr, "graph_leiden: a second run in the process differs (rc %d)\n", rc);
            return 1;
        }
        free(again);
    }
    printf("ncomm %u\n", ncomm);
    for (unsigned long v = 0; v < nv; v++)
        printf("%.17g %u\n", rank[v], memb[v]);
    free(ed);
    free(rank);
    free(memb);
    return fflush(stdout) == 0 ? 0 : 1;
}
