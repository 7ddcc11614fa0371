/* Live coordination (DESIGN §3 "Coordination", issue 20): one instance per kind (link, reshare,
 * reply) is fed every post that carries a key of that kind as it is applied, and keeps the pair
 * weights and their evidence up to date, so that the coordinated groups can be read at any moment
 * from the pairs that can qualify, never recomputed from the posts. Standalone (core only), so
 * that the unit test holds it to an all-pairs reference; the engine calls it, one call per post.
 *
 * What it keeps:
 *  - per key, its recent posts (ts-sorted; ts >= newest - window - lateness), at most
 *    max_key_posts of them;
 *  - per actor, k = the number of distinct keys it posted (an (actor, key) set);
 *  - per actor pair that co-shared a key, per co-shared key the closest pair of posts (ids, Δt,
 *    the earlier ts). Closest = smallest |Δt|, then the earliest, then the smaller post ids: a
 *    total order, so the evidence does not depend on arrival order. `leads` = the closest pair's
 *    earlier poster (equal ts: neither).
 *
 * Where the answer stays exact. A post meets exactly the posts of its key still in that key's
 * recent list. Two things can leave out a meeting:
 *  - the cap: a key holding max_key_posts recent posts drops its earliest one. The dropped post's
 *    actor is flagged, and so is the actor of every later post of that key within the window of
 *    a dropped one; so both actors of a missed meeting are flagged, and a group none of whose
 *    members is flagged is exactly what the all-pairs computation gives (its pairs, weights,
 *    evidence, members). Groups with a flagged member say exact = 0.
 *  - lateness: a post arriving with ts more than lateness_ms behind the newest ts may have missed
 *    posts already expired from its key's list; that is counted (late_misses) and then no group
 *    is exact. With events in ts order, or late by at most lateness_ms, nothing is missed.
 *  - forgetting (forget_ms >= 0; off by default): a pair of weight 1 whose co-share is forget_ms
 *    behind the newest post is dropped into Bloom filters (10 bits a pair). If the pair meets
 *    again, its new record says `lost` (its weight is n or n + 1); a lost pair that qualifies,
 *    or would at n + 1, makes its actors unsure, and a group with an unsure member is not exact.
 *    Forgotten pairs of weight 1 could only qualify at min_repeats 1: then nothing is exact.
 *    Measured on cascade-gen's workload (bench/coordlive_bench.c): it cuts the pairs kept ~10x
 *    at a 10-minute horizon but loses planted groups whose co-shares are spread over hours
 *    (they come out unsure, below min_repeats), so it stays off.
 * Retention (coordlive_evict_before): a co-share goes when its closest pair's earlier post is
 * before the horizon (the pairs of evicted posts go with them), pairs with no co-share left go;
 * k(a) keeps counting the keys of evicted posts (an (actor, key) set with times would cost
 * 16 B more per entry), so after an eviction similarities are lower bounds.
 *
 * Memory (measured, bench/coordlive_bench.c, cascade-gen's bench stream, window 10 s): about
 * 2.3 pairs per link post (3.4 at 10 M events: viral bursts meet up to max_key_posts posts
 * each), so 164 B per event for link, 250 B per event for the three kinds at 10 M events: the
 * pairs (48 B a slot plus the map) are all of it, and the map and slots keep their high-water
 * mark after a burst. Issue 20's 16 B per event is not met by keeping every pair:
 * bench/results/coordlive-2026-12-08.md has the figures, why, and what would meet it.
 *
 * Threads: not thread-safe; the engine's writer thread owns it. Work per post: O(log) lookups
 * plus one visit per recent post of its key within the window (at most max_key_posts), and per
 * meeting an O(log weight) search of the pair's evidence. */
#ifndef ENGINE_COORDLIVE_H
#define ENGINE_COORDLIVE_H

#include <stddef.h>
#include <stdint.h>

#define COORDLIVE_DEFAULT_WINDOW_MS   10000
#define COORDLIVE_DEFAULT_LATENESS_MS 60000
#define COORDLIVE_DEFAULT_KEY_POSTS   1000
#define COORDLIVE_DEFAULT_HEAVY       3
#define COORDLIVE_DEFAULT_FORGET_MS   (-1) /* never: see the header */

enum coordlive_kind { COORDLIVE_LINK, COORDLIVE_RESHARE, COORDLIVE_REPLY, COORDLIVE_KINDS };
enum coordlive_sim { COORDLIVE_SIM_MAX, COORDLIVE_SIM_MIN, COORDLIVE_SIM_JACCARD };

struct coordlive_params {
    int64_t window_ms;      /* two posts at most this far apart co-share; 0: the default */
    int64_t lateness_ms;    /* how far behind the newest ts a post may come and still be exact */
    uint32_t max_key_posts; /* the cap on a key's recent posts; 0: the default */
    uint32_t heavy;         /* pairs of at least this weight are indexed for the queries */
    int64_t forget_ms;      /* pairs of weight 1 this far behind the newest post are forgotten
                               (0: the default, never; < 0: never) */
};

struct coordlive;

/* Allocates an instance for one kind; p NULL: the defaults. 0, -EINVAL or -ENOMEM. The caller
 * owns *out (coordlive_free). */
int coordlive_new(struct coordlive **out, const struct coordlive_params *p, uint8_t kind);
void coordlive_free(struct coordlive *cl);

/* Post `post` of `actor` at ts carries `key`. Each post once (the caller drops duplicates). 0 or
 * -ENOMEM; after -ENOMEM the post may be partly counted: the instance says so (not exact) from
 * then on. */
int coordlive_add(struct coordlive *cl, uint32_t key, uint32_t actor, uint32_t post, int64_t ts);

/* Retention: drops the co-shares whose closest pair starts before horizon and the pairs left
 * with none, visiting at most budget pairs (a cursor goes round); returns 1 while a round is not
 * finished, so that the caller can spread it over calls. */
int coordlive_evict_before(struct coordlive *cl, int64_t horizon, uint32_t budget);

/* While set, the instance knows it has not been fed every post yet (its feeder is catching up):
 * nothing it answers is exact. */
void coordlive_set_incomplete(struct coordlive *cl, int incomplete);

/* Bytes held (all of its allocations). */
size_t coordlive_bytes(const struct coordlive *cl);

/* Counters, for stats and the tests. */
struct coordlive_stats {
    uint64_t posts, meetings, pairs, coshares, capped_drops, flagged_actors, late_misses;
    uint64_t forgotten; /* pairs of weight 1 forgotten (into the Bloom filters) */
    uint64_t forget_queue; /* pairs waiting to be looked at for forgetting */
    int64_t window_ms;
    int broken; /* an allocation failed part-way: nothing is exact */
};
void coordlive_stats(const struct coordlive *cl, struct coordlive_stats *st);

/* ---- reading */

struct coordlive_query {
    uint32_t min_repeats; /* 0: COORDLIVE_DEFAULT_HEAVY (3) */
    double min_ratio;     /* similarity >= this */
    int similarity;       /* enum coordlive_sim */
};

struct coordlive_ev {
    uint32_t key;
    uint32_t post_a, post_b; /* the closest pair: a's post, b's post */
    int32_t dt;              /* ts_b - ts_a (so > 0: a led) */
    int64_t ts;              /* the earlier of the two */
};

struct coordlive_key {
    uint32_t key;
    uint8_t kind;
};

struct coordlive_gpair {
    uint32_t a, b; /* a < b */
    uint8_t kind;
    uint32_t weight, leads_a, leads_b;
    double similarity;
};

struct coordlive_group {
    uint32_t *members; /* ascending */
    uint32_t nmembers;
    struct coordlive_gpair *pairs; /* the qualifying pairs, by (kind, a, b) */
    uint32_t npairs;
    struct coordlive_key *keys; /* distinct (kind, key) of their evidence, ascending */
    uint32_t nkeys;
    uint64_t weight;       /* sum of the pairs' weights */
    double median_gap_ms;  /* type 7 over the pairs' co-shares' |Δt| */
    int64_t first_ts, last_ts; /* of those co-shares (earlier post, later post) */
    uint8_t kinds;         /* bit k: a qualifying pair of kind k */
    uint8_t exact;
};

struct coordlive_result {
    struct coordlive_group *groups; /* members desc, weight desc, smallest member asc */
    uint32_t ngroups;
    uint8_t exact; /* every group exact and none can be missing */
};

/* The groups of the union of the qualifying pairs of cls[0..n) (one per kind; n 1 for one
 * kind). Reads pairs of weight >= heavy from an index (3 ms at 10 M generated events), all
 * pairs when q->min_repeats < heavy (tens of millions there: not for the engine thread).
 * res is malloc'd (coordlive_result_free). 0, -EINVAL or -ENOMEM. */
int coordlive_groups(struct coordlive *const *cls, size_t n, const struct coordlive_query *q,
                     struct coordlive_result *res);
void coordlive_result_free(struct coordlive_result *res);

/* The evidence of pair (a, b) (any order; reported with a < b): ev[] by key, malloc'd for the
 * caller (free), NULL when they co-shared nothing (then 0 with *nev 0). k_a, k_b: their
 * distinct keys. 0 or -ENOMEM. */
struct coordlive_pairinfo {
    uint32_t a, b, weight, leads_a, leads_b, k_a, k_b;
    uint8_t exact;
    struct coordlive_ev *ev;
    uint32_t nev;
};
int coordlive_pair(const struct coordlive *cl, uint32_t a, uint32_t b,
                   struct coordlive_pairinfo *out);

/* The similarity of a pair of weight w between actors of ka and kb keys. */
double coordlive_similarity(int sim, uint32_t w, uint32_t ka, uint32_t kb);

/* ---- the window estimate (DESIGN §3, CooRnet's estimate_coord_interval) */

struct coordlive_kts {
    uint32_t key;
    int64_t ts;
};

/* Over kts[n] (reordered): *est the estimate in ms (type 7 quantiles, not rounded), *keys_used
 * the keys with d2 <= Q. 0, -ENODATA (no key with 2 posts), -EINVAL (q, p outside [0, 1]) or
 * -ENOMEM. */
int coordlive_window_estimate(struct coordlive_kts *kts, size_t n, double q, double p, double *est,
                              uint32_t *keys_used);

#endif
