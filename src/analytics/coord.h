/* Coordinated link sharing (DESIGN §3): actors that post the same content keys within window_ms
 * of each other, again and again. A pure computation over the (actor, content key, ts) of every
 * post that carries a content key (its own, else its cascade root's); the analytics worker feeds
 * it a snapshot.
 *
 * How it stays fast on viral content (see coord.c): posts are sorted by (content, ts), so the
 * posts that meet one are its neighbours in that order. An actor that posted fewer than
 * min_repeats keys, or that meets nobody within the window on at least min_repeats keys, can be
 * in no qualifying pair and is dropped first, with its posts and every post that meets nobody
 * (rounds to a fixpoint; this removes the one-off crowd of a viral link and changes no result).
 * Pairs are then counted one actor at a time in per-actor arrays, so memory is linear in the
 * posts and actors plus the qualifying pairs' evidence: no pair that fails is stored. Each post
 * looks at most max_window_posts posts of its key on each side within the window; when a side holds
 * more, only the nearest max_window_posts are seen and the key counts in keys_capped: the work is
 * bounded by 2 * max_window_posts per post (twice that for actors in qualifying pairs, whose posts
 * are scanned again for the gaps), and pairs that meet on such a key only beyond that many posts
 * lose that key (weight, ratio, contents, gaps). With keys_capped == 0 the result is exact: the
 * same as comparing every pair of posts.
 *
 * Medians: over an even count, the lower middle value (always an observed gap, an integer). */
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
    /* a post is compared with at most this many posts of its key on each side within the window;
     * more and the key is capped (see above). 0: COORD_MAX_WINDOW_POSTS */
    uint32_t max_window_posts;
};

#define COORD_DEFAULT_WINDOW_MS   10000
#define COORD_DEFAULT_MIN_REPEATS 3
#define COORD_DEFAULT_MIN_RATIO   0.3
#define COORD_MAX_WINDOW_POSTS    1000

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
    int64_t median_gap;    /* median over all co-shared (pair, key) of the smallest gap */
    uint64_t total_weight; /* sum of the pairs' weights */
};

struct coord_result {
    struct coord_group *groups; /* largest first (members, then weight, then smallest member) */
    uint32_t ngroups;
    uint64_t pairs_examined; /* (post, post) comparisons made: the work done */
    uint32_t keys_capped;    /* content keys whose windows were too crowded to pair exhaustively */
};

/* Computes the groups from posts[n] (any order; the array is reordered, its values are kept).
 * Owns nothing of posts; res is filled with malloc'd memory (coord_result_free). p NULL: the
 * defaults. A pair needs at least one co-shared key whatever min_repeats says. 0, -EINVAL
 * (window_ms < 0, min_ratio NaN, n >= 2^32 - 1) or -ENOMEM. */
int coord_compute(struct coord_post *posts, size_t n, const struct coord_params *p,
                  struct coord_result *res);
void coord_result_free(struct coord_result *res);

#endif
