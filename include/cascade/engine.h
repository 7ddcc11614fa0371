/* The graph engine: posts, cascades, actors and the amplification graph, with every DESIGN §3
 * metric (but PageRank and coordination) maintained incrementally as events are applied.
 * Single writer: one thread applies and reads; callers serialise access (the server runs every
 * engine call on its engine thread, so a read always sees the state between two batches). */
#ifndef CASCADE_ENGINE_H
#define CASCADE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/event.h"

struct engine;

/* Cascade metrics of DESIGN §3. Strings borrow from the engine: valid until the next apply. */
struct engine_cascade {
    uint32_t id; /* internal cascade index (stable until the cascade is joined into another) */
    const char *root;
    const char *root_actor; /* NULL when the root is a placeholder */
    const char *content;    /* the root's content, or NULL */
    const char *label;      /* the root's label, else the earliest (by ts) labelled post's */
    uint32_t root_len, root_actor_len, content_len, label_len;
    uint32_t size, missing, depth, max_breadth, unique_actors;
    double structural_virality;
    uint64_t wiener; /* W: sum of distances over unordered pairs of nodes */
    int64_t first_ts, last_ts, duration_ms;
    uint64_t growth; /* engine_top_growth only: its posts with ts in [newest - window, newest] */
};

/* What one content key (a URL, claim id, hashtag) amounts to. A post's content is its own, else
 * its cascade root's (DESIGN §2), so it follows joins. */
struct engine_content {
    const char *key;
    uint32_t key_len;
    uint64_t posts;         /* observed posts whose content is key */
    uint32_t cascades;      /* distinct cascades holding at least one of them */
    uint32_t unique_actors; /* distinct actors among them */
    int64_t first_ts, last_ts;
};

/* Actor metrics of DESIGN §3 (pagerank comes from the analytics worker). */
struct engine_actor {
    uint32_t id;
    const char *name;
    uint32_t name_len;
    uint32_t posts, roots, shares, reshares_received, amplifiers, reach, cascades;
    int64_t first_ts, last_ts;
    uint8_t actor_type; /* EVENT_ACTOR_ACCOUNT or EVENT_ACTOR_PAGE */
};

/* One node of a cascade tree or path; placeholders have actor == NULL. */
struct engine_node {
    const char *post, *parent, *actor;
    uint32_t post_len, parent_len, actor_len;
    int64_t ts; /* 0 for a placeholder */
    uint32_t depth;
    uint8_t kind; /* enum event_kind */
    uint8_t placeholder;
};

struct engine_stats {
    uint64_t outcomes[EVENT_OUTCOME_COUNT]; /* accepted, duplicate, per rejection reason */
    uint64_t posts, placeholders, cascades, actors, edges, contents, labels;
    uint64_t bytes;            /* bytes the engine's tables hold (capacity, not RSS) */
    int64_t newest_ts;         /* the largest ts of an accepted event (0 before the first) */
    int64_t retention_ms;      /* 0: retention off */
    int64_t retained_from;     /* the cut: cascades last active before it are gone (0: none) */
    uint64_t evicted_cascades; /* since the data directory began */
    uint64_t evicted_posts;
    int old_ts; /* a post with ts < ENGINE_SECONDS_BELOW_MS was ever accepted (or unknown) */
};

enum engine_cascade_metric {
    ENGINE_BY_SIZE = 0,
    ENGINE_BY_DEPTH,
    ENGINE_BY_MAX_BREADTH,
    ENGINE_BY_VIRALITY,
    ENGINE_BY_UNIQUE_ACTORS,
    ENGINE_BY_LAST_TS,
    ENGINE_CASCADE_METRICS
};

enum engine_actor_metric {
    ENGINE_BY_REACH = 0,
    ENGINE_BY_RESHARES,
    ENGINE_BY_AMPLIFIERS,
    ENGINE_BY_POSTS,
    ENGINE_ACTOR_METRICS
};

/* Filters for engine_top_cascades; zero/NULL fields do not filter. */
struct engine_cascade_filter {
    const char *label, *content;
    uint32_t label_len, content_len;
    int has_since, has_until;
    int64_t since, until; /* on last_ts >= since and first_ts <= until: active in the window */
    uint32_t min_size;
};

/* Creates an empty engine; *out is owned by the caller (engine_free). 0 or -ENOMEM. */
int engine_new(struct engine **out);
void engine_free(struct engine *e);

/* Applies n validated events in order; outcomes[i] gets an enum event_outcome per event.
 * Returns the number of events accepted. An event that fails with EVENT_ERR_NOMEM changed
 * nothing; later events are still tried. */
size_t engine_apply(struct engine *e, const struct event *evs, size_t n, uint8_t *outcomes);

/* Counts an event rejected before it reached the engine (by event_validate), so that the
 * engine's stats hold every outcome. */
void engine_note_outcome(struct engine *e, int outcome);

/* Validates and applies one raw event: the convenience path for tools and tests. */
int engine_apply_raw(struct engine *e, const struct event_raw *raw);

/* Looks up the cascade that holds post (any post of it, placeholders included).
 * 0, or -ENOENT for an unknown post. */
int engine_cascade(struct engine *e, const char *post, uint32_t len, struct engine_cascade *out);

/* 0 or -ENOENT. */
int engine_actor(struct engine *e, const char *id, uint32_t len, struct engine_actor *out);

/* Calls fn for each node from post up to its root (post first). Returns the number of nodes or
 * -ENOENT. fn returning non-zero stops the walk. */
typedef int (*engine_node_fn)(void *ctx, const struct engine_node *node);
int engine_path(struct engine *e, const char *post, uint32_t len, engine_node_fn fn, void *ctx);

/* Calls fn for the nodes of post's cascade in breadth-first order from the root, at most limit
 * of them (0: all). Returns the number visited or -ENOENT / -ENOMEM. */
int engine_tree(struct engine *e, const char *post, uint32_t len, uint32_t limit, engine_node_fn fn,
                void *ctx);

/* Fills out[0..limit) with the top cascades by metric, best first (ties: older cascade first),
 * among those passing filter (may be NULL). Returns how many were written, or -EINVAL / -ENOMEM.
 * Without a filter, or with one that most top cascades pass, and a limit up to 1024, the cost is
 * bounded by the limit, not by the number of cascades; otherwise the answer (still exact) comes
 * from a scan of every cascade. */
int engine_top_cascades(struct engine *e, int metric, const struct engine_cascade_filter *filter,
                        struct engine_cascade *out, uint32_t limit);

/* Growth windows reach back at most this far from the newest event (event time). */
#define ENGINE_GROWTH_HORIZON_MS (7LL * 24 * 3600 * 1000)
/* 1973-01-01T00:00:00Z in ms: a time below it in a query reads as seconds (DESIGN §5) unless
 * the data holds such times (engine_stats.old_ts) */
#define ENGINE_SECONDS_BELOW_MS 94694400000LL

/* The cascades with the most posts whose ts lies in [newest - window_ms, newest] (newest: the
 * largest ts accepted so far), best first (ties: older cascade first), among those passing
 * filter (may be NULL); cascades without such a post are left out. Each one's growth is set.
 * Cost: the activity inside the window (counts are kept per time bucket as events arrive), not
 * the number of cascades or posts held. Returns how many were written; -EINVAL for a window_ms
 * outside [1, ENGINE_GROWTH_HORIZON_MS]; -ENOMEM. */
int engine_top_growth(struct engine *e, int64_t window_ms,
                      const struct engine_cascade_filter *filter, struct engine_cascade *out,
                      uint32_t limit);

/* The figures of one content key, and its largest cascades by size (ties: older first) in
 * top[0..limit). Returns how many cascades were written to top, -ENOENT for a key no post
 * carries, -ENOMEM. Cost: the posts that carry key. */
int engine_content(struct engine *e, const char *key, uint32_t len, struct engine_content *out,
                   struct engine_cascade *top, uint32_t limit);

/* Top actors by metric; actor_type 0 for any. Returns how many were written, or -EINVAL. */
int engine_top_actors(struct engine *e, int metric, int actor_type, struct engine_actor *out,
                      uint32_t limit);

void engine_get_stats(const struct engine *e, struct engine_stats *out);

/* Event-time retention. With ms > 0, a cascade whose last_ts lies more than ms (rounded to the
 * second below) before the newest accepted ts is evicted with all its posts, within
 * max(1 s, ms / 64) of event time after it expires; sweeps run between two events, at points
 * fixed by the events alone, so replaying the same events gives the same state. After an
 * eviction every metric reads as if the evicted posts' events had never arrived: cascades,
 * contents, amplification edges and the actor counters (posts, roots, shares,
 * reshares_received, amplifiers, reach, cascades) count retained posts only; an actor or content
 * with no retained post is unknown again. Exceptions: an actor's first_ts, last_ts and
 * actor_type cover the posts since it last had none retained. A later event may reuse an evicted
 * post's id (it is new then), and a child of an evicted post hangs below a placeholder. Growth
 * windows longer than ms are refused. Call after engine_new or engine_load, before the events
 * that should see it. 0, -EINVAL (ms < 0) or -ENOMEM. */
int engine_set_retention(struct engine *e, int64_t ms);

/* The label summary of DESIGN §3. Quantiles are exact and interpolate linearly between the two
 * nearest ranks (pandas' and numpy's default): q at position q * (n - 1) of the sorted values. */
enum engine_label_metric {
    ENGINE_LABEL_SIZE = 0,
    ENGINE_LABEL_DEPTH,
    ENGINE_LABEL_MAX_BREADTH,
    ENGINE_LABEL_VIRALITY,
    ENGINE_LABEL_UNIQUE_ACTORS,
    ENGINE_LABEL_METRICS
};

struct engine_dist {
    double mean, median, p90, max;
    double sd; /* the sample standard deviation (n - 1); NAN for a single cascade */
};

struct engine_label_summary {
    const char *label; /* NULL: the cascades without a label */
    uint32_t label_len;
    uint32_t cascades;
    struct engine_dist dist[ENGINE_LABEL_METRICS];
    double duration_median;
};

/* One summary per label that some live cascade carries, by label name, then the unlabelled
 * cascades last (if any). *out is malloc'd, owned by the caller (free). Cost: a read of the
 * per-label index the apply path keeps (labels.c), not of the cascades. 0 or -ENOMEM. */
int engine_labels(struct engine *e, struct engine_label_summary **out, uint32_t *n);

/* One cascade of label A or B for the size-matched comparison (DESIGN §3): its size and the
 * metrics compared, duration_ms last. */
struct engine_labeled {
    uint8_t group; /* 0: label A, 1: label B */
    uint32_t size;
    double v[ENGINE_LABEL_METRICS]; /* v[ENGINE_LABEL_SIZE] holds duration_ms */
};

/* Every live cascade whose label is a (group 0) or b (group 1), by a pass over the cascade
 * records (about 1 ms per 10^6 cascades, plus the matching ones' figures). *out is malloc'd,
 * owned by the caller (free; NULL when none). 0 or -ENOMEM. */
int engine_labeled(const struct engine *e, const char *a, uint32_t alen, const char *b,
                   uint32_t blen, struct engine_labeled **out, size_t *n);
const char *engine_label_metric_name(int metric);

/* What the analytics worker computes on (DESIGN §1; engine/analytics_copy.c): copied out on the
 * engine's thread, used on the worker's. Actors and content keys by their dense ids (engine_actor_at, engine_content_key
 * turn them back into names). */
struct engine_share {
    uint32_t from, to; /* a post of `from` whose direct parent is a post of `to` (from != to) */
};

struct engine_post_key {
    uint32_t actor, content; /* content: the post's own key, else its cascade root's */
    int64_t ts;
};

struct engine_copy {
    uint32_t nactors;             /* every actor id is below this */
    struct engine_share *shares;  /* one per such post (repeats: the edge's weight) */
    struct engine_post_key *keys; /* one per observed post that carries a content key */
    uint32_t *reach;              /* per actor id: its reach when the copy was taken */
    size_t nshares, nkeys;
    uint64_t accepted; /* accepted events when it was taken: tells whether the graph changed */
    size_t nslots;     /* until engine_copy_settle: shares/keys are per-post-id slots */
    uint64_t slices;   /* engine_copy_step calls it took */
    struct copy_job *job; /* private (analytics_copy.c): the storage behind the arrays */
};

/* The copy taken a slice at a time between batches (issue 18: no long pause), still exactly
 * the copy of one instant, the end of its last slice (analytics_copy.c says how). begin: 0,
 * -EALREADY (one is under way), -ENOMEM. step: works for about budget_ns and/or budget_units
 * records (0: no limit); 1 with *out filled when the copy is finished (call engine_copy_settle
 * on it, off the engine's thread, then free it with engine_copy_free), 0 when more remains,
 * -ENOMEM (the copy is dropped), -EINVAL (none under way). */
int engine_copy_begin(struct engine *e);
int engine_copy_step(struct engine *e, uint64_t budget_ns, uint64_t budget_units,
                     struct engine_copy *out);
void engine_copy_abort(struct engine *e);
int engine_copy_active(const struct engine *e);
/* Packs a finished copy's slots into shares[nshares] and keys[nkeys]; O(posts), any thread.
 * 0 or -ENOMEM (free it with engine_copy_free all the same). */
int engine_copy_settle(struct engine_copy *s);
/* Gives back a settled copy's shares (keys and reach stay). */
void engine_copy_free_shares(struct engine_copy *s);

/* The whole copy at once (settled): O(posts) on the caller's thread. 0, -EBUSY (a sliced copy
 * is under way) or -ENOMEM. Free with engine_copy_free. */
int engine_copy_take(struct engine *e, struct engine_copy *out);
void engine_copy_free(struct engine_copy *s);

/* The actor with dense id `id` (< engine_copy.nactors): 0 or -ENOENT. */
int engine_actor_at(struct engine *e, uint32_t id, struct engine_actor *out);
/* The content key with dense id `id`, or NULL. Borrowed, valid for the engine's life. */
const char *engine_content_key(const struct engine *e, uint32_t id, uint32_t *len);

/* Metric names as the protocols spell them ("size", "structural_virality", "reach", ...);
 * -EINVAL for an unknown name. */
int engine_cascade_metric_parse(const char *name, size_t len);
int engine_actor_metric_parse(const char *name, size_t len);
const char *engine_cascade_metric_name(int metric);
const char *engine_actor_metric_name(int metric);

/* ---- An actor's neighbourhood (ego.c), for the web view's actor page. Nothing is kept per
 * actor for these (the ingest path pays nothing): each query makes one sequential pass over every
 * post and follows only the actor's own (to the root, the parent, the children). Cost: about
 * 1.5 ns a post held plus the actor's posts times their depth or children; measured with
 * bench/ego_bench.c on cascade-gen dumps: 0.8 ms (busiest actor 2 ms) at 1 M posts, 14 ms (busiest
 * 27-30 ms) at 10 M. */

enum engine_link_dir { ENGINE_LINK_IN = 1, ENGINE_LINK_OUT = 2, ENGINE_LINK_BOTH = 3 };

/* One edge of the amplification graph at the actor (DESIGN §3, so never the actor itself).
 * in: `actor` made `weight` posts whose direct parent is a post of the asked actor; out: the
 * asked actor made `weight` posts whose direct parent is a post of `actor`. */
struct engine_link {
    uint8_t direction;  /* ENGINE_LINK_IN or ENGINE_LINK_OUT */
    uint8_t actor_type; /* the neighbour's: EVENT_ACTOR_ACCOUNT or EVENT_ACTOR_PAGE */
    uint32_t actor_id;  /* its dense id */
    const char *actor;  /* its name, borrowed from the engine: valid until the next apply */
    uint32_t actor_len;
    uint32_t weight;
    uint32_t reach; /* the neighbour's current reach */
};

/* The heaviest links of actor id, at most limit per direction asked (directions: a mask of
 * enum engine_link_dir): heaviest first, ties by neighbour name (bytewise, a shorter prefix
 * first); the in links, then the out links. out is the caller's, with room for limit records
 * per direction asked. Returns how many were written; -ENOENT for an unknown actor, -EINVAL
 * for an empty direction mask, -ENOMEM. */
int engine_actor_links(struct engine *e, const char *id, uint32_t len, int directions,
                       uint32_t limit, struct engine_link *out);

/* A cascade the actor posted in, and how many of its posts it holds. */
struct engine_actor_cascade {
    struct engine_cascade cascade;
    uint32_t actor_posts;
};

/* The cascades actor id posted in (live ones: a joined cascade is counted as the one it joined),
 * at most limit, by size descending, then root post id ascending (bytewise). out is the
 * caller's, with room for limit records. Returns how many were written; -ENOENT for an unknown
 * actor, -ENOMEM. */
int engine_actor_cascades(struct engine *e, const char *id, uint32_t len,
                          struct engine_actor_cascade *out, uint32_t limit);

#endif
