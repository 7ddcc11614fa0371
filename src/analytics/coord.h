/* Coordinated link sharing (DESIGN §3): actors that post the same content keys within window_ms
 * of each other, again and again. A pure computation over the (actor, content key, ts) of every
 * post that carries a content key (its own, else its cascade root's); the analytics worker feeds
 * it a snapshot. */
#ifndef ANALYTICS_COORD_H
#define ANALYTICS_COORD_H

#include <stddef.h>
#include <stdint.h>

struct coord_post {
    uint32_t actor, content;
    int64_t ts;
};

struct coord_params {
    int64_t window_ms;    /* two posts at most this far apart co-share (inclusive); default 10000 */
    uint32_t min_repeats; /* weight(a,b) >= this; default 3 */
    double min_ratio;     /* weight / min(keys(a), keys(b)) >= this; default 0.3 */
};

/* A tie between two members of a group. */
struct coord_pair {
    uint32_t a, b;      /* actor ids, a < b */
    uint32_t weight;    /* distinct content keys co-shared within the window */
    double ratio;       /* weight / min(distinct keys of a, of b) */
    int64_t median_gap; /* median over the co-shared keys of the smallest |ts_a - ts_b| */
};

/* One coordinated group: a connected component of the qualifying pairs. */
struct coord_group {
    uint32_t *members; /* actor ids, ascending */
    uint32_t nmembers;
    uint32_t *contents; /* content ids co-shared by some qualifying pair of the group, ascending */
    uint32_t ncontents;
    struct coord_pair *pairs; /* the qualifying pairs inside the group */
    uint32_t npairs;
    int64_t median_gap; /* median over all co-shared (pair, key) of the smallest gap */
};

struct coord_result {
    struct coord_group *groups; /* largest first (members, then weight, then smallest member) */
    uint32_t ngroups;
    uint64_t pairs_examined; /* (post, post) comparisons made: the work done */
    uint32_t keys_capped;    /* content keys whose windows were too crowded to pair exhaustively */
};

/* Computes the groups from posts[n] (any order; the array is reordered). Owns nothing of posts;
 * res is filled with malloc'd memory (coord_result_free). 0 or -ENOMEM. */
int coord_compute(struct coord_post *posts, size_t n, const struct coord_params *p,
                  struct coord_result *res);
void coord_result_free(struct coord_result *res);

#endif
