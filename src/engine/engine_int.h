/* The engine's records and tables, shared by the apply path (engine.c) and the read path
 * (engine_read.c). Every record is addressed by a dense 32-bit id: a post's id is its interned
 * post-id string's, an actor's its interned name's; cascades are numbered as they are made. */
#ifndef ENGINE_INT_H
#define ENGINE_INT_H

#include <stdint.h>

#include "cascade/engine.h"
#include "core/intern.h"
#include "core/segvec.h"
#include "core/topk.h"
#include "core/u64map.h"

struct coordhook;

#define NONE         UINT32_MAX
#define ROOT_FLAG    0x80000000u /* post.parent of a root: ROOT_FLAG | cascade id */
#define CONTENT_MASK 0x3fffffffu /* post.content: content id in the low 30 bits, kind above */
#define CONTENT_NONE CONTENT_MASK
#define TOPK_CAP     1024

/* 32 bytes: two per cache line. Placeholders (posts referred to as a parent before their own
 * event) have actor == NONE and are always the root of their cascade. */
struct post {
    uint32_t parent;  /* post id, or ROOT_FLAG | cascade id */
    uint32_t actor;   /* actor id, NONE for a placeholder */
    uint32_t child;   /* first child, NONE if a leaf */
    uint32_t sibling; /* next child of the same parent, NONE if last */
    uint32_t sub;     /* nodes in the subtree rooted here, this one included */
    uint32_t content; /* content id | kind << 30 */
    int64_t ts;
};

/* A cascade id's record, 8 bytes. A cascade of one node (a root post alone; 84 % of the
 * cascades of cascade-gen's workload at 10 M events) has nothing more: its figures follow from
 * its root (cascade_fig), its label is its root's. Its second node gives it a body (struct
 * cbody) with the figures, the root and the flags. Read and write it through the cascade_*
 * accessors below. */
struct cascade {
    uint32_t rb;  /* CASCADE_BODY | body index (engine.cbodies); else the root post of a single
                     node, or for a freed id the next free one */
    uint32_t lab; /* label id in the low 31 bits (LABEL_NIL: none; LABEL_FREED: a freed id), and
                     CASCADE_DIRTY: on the list of cascades whose top-k keys are stale */
};
#define CASCADE_BODY  0x80000000u
#define CASCADE_DIRTY 0x80000000u
#define LABEL_BITS    0x7fffffffu
#define LABEL_NIL     0x7fffffffu
#define LABEL_FREED   0x7ffffffeu
#define LABEL_MAX     0x7ffffffdu /* label ids stay below this (engine.c's reserve) */

/* The figures of a cascade of n = size + missing nodes. The Wiener index is W = n*s1 - s2 with
 * s1 = Σ s and s2 = Σ s² over the tree's edges (s = nodes below the edge), so that adding a leaf
 * only touches its ancestors. Breadth per depth is kept for depths 1.. (depth 0 is the root
 * alone): inline while the cascade is at most 2 deep, which most are, else in an array of
 * 2^cap_log2. A freed body is linked through size. 80 bytes. */
struct cbody {
    uint32_t root;
    uint32_t size, missing, depth, max_breadth, unique;
    uint8_t cap_log2;   /* 0: levels inline */
    uint8_t label_root; /* the label is the root's own */
    uint8_t dead;       /* joined into another cascade */
    uint64_t s1, s2;
    int64_t first_ts, last_ts;
    int64_t label_ts; /* ts of the post the label came from (when not the root's) */
    union {
        uint32_t *ext;
        uint32_t inl[2];
    } lv;
};

struct actor {
    uint32_t posts, roots, reshares, amplifiers, reach, cascades;
    uint32_t stamp; /* last event that counted this actor in a reach walk */
    uint8_t type;   /* enum event_actor_type; UNSPECIFIED reads as account */
    uint8_t type_explicit;
    uint8_t dirty; /* on the list of actors whose top-k keys are stale */
    int64_t first_ts, last_ts;
};

/* Recent activity for engine_top_growth (growth.c): the posts of each second of event time, in a
 * ring of pages covering ENGINE_GROWTH_HORIZON_MS back from the newest event. */
struct growth_page;
struct growth_bucket;

struct growth {
    struct growth_page **pages;     /* GROWTH_PAGES entries; a page is allocated on first use */
    struct growth_page *spare_page; /* reserved for a note that lands on a missing page */
    uint32_t *spare_ent;            /* reserved for a note that starts a new bucket */
    int64_t newest;                 /* the largest ts accepted (valid when has_newest) */
    int64_t lo_bucket;              /* buckets below this are dropped */
    int64_t floor;                  /* retention's cut: posts older are not filed */
    int has_newest;
    int old_ts; /* a post with ts < ENGINE_SECONDS_BELOW_MS was accepted (sticky; an older
                   snapshot that does not say counts as yes) */
    size_t bytes;
};

/* Per content id (content.c): the posts through which its carriers are found at query time.
 * A post is listed when its event gives it own content and it is then a root, or its root's
 * content differs. One id inline, else an array. 16 bytes. */
struct content_list {
    uint32_t n, cap; /* cap 0: the id (if n == 1) is inline */
    union {
        uint32_t one;
        uint32_t *ids;
    } u;
};

/* Event-time retention (retention.c). Every cascade id in use (live or joined) has one entry in
 * a min-heap keyed by a last_ts it once had (entries are refiled lazily, when they surface); a
 * sweep, run between two events whenever the newest ts has moved a step, evicts the cascades
 * whose last_ts fell below the cut and frees joined ones the same way. Freed cascade ids are
 * linked through cascade.root; post ids are freed through the post-id intern table. */
struct rq_entry {
    int64_t ts;
    uint32_t cid;
};

/* Ids whose actor or content has no retained post left. Their names may still be named by the
 * analytics worker's latest result (taken from a copy of the engine), so an id is deleted, and
 * may be reused, only once two copies have been taken since it was last emptied: by then the
 * result built on the copy that still had it is gone. [0]: since the last copy, [1]: before. */
struct idq {
    uint32_t *ids;
    uint32_t n, cap;
};

struct retention {
    int64_t ms;       /* 0: keep everything */
    int64_t step;     /* how far the cut moves at least between two sweeps */
    int64_t cut;      /* cascades with last_ts below it are gone; INT64_MIN before a sweep */
    int64_t sweep_at; /* the newest ts that starts the next sweep */
    struct rq_entry *rq;
    uint32_t nrq, cap_rq;
    uint32_t free_c, nfree_c; /* freed cascade ids (NONE ends the list) */
    uint64_t evicted_cascades, evicted_posts;
    /* sweep scratch: the posts evicted (freed at the sweep's end, once the content lists no
     * longer name them), contents to filter, the actors of the cascade being evicted */
    uint32_t *posts, *contents, *actors;
    uint32_t nposts, cap_posts, ncontents, cap_contents, nactors, cap_actors;
    uint32_t *victims; /* the cascades a sweep evicts, in id order */
    uint32_t nvictims, cap_victims;
    struct u64map onpath; /* actor -> its posts on the walk's current path */
    struct idq gone_actors[2], gone_contents[2];
};

/* The label summary's per-label index (labels.c). */
struct lab_stats;
struct labels_index {
    struct lab_stats **slot; /* [0]: the unlabelled cascades, [1 + label id]: a label's */
    uint32_t nslot;
    int on;    /* 0 until the first engine_labels: the apply path keeps no index nobody reads */
    int stale; /* an update could not allocate: engine_labels rebuilds it first */
};

#define ENGINE_STREAM_MAX 4096 /* partitions of a cluster's stream (CC_NATS_MAX_PARTITIONS) */

struct engine {
    struct intern post_ids, actor_ids, contents, labels;
    struct segvec posts, actors, cascades;
    struct segvec cbodies; /* struct cbody, for the cascades of more than one node */
    uint32_t free_body;    /* freed bodies, linked through their size (NONE ends it) */
    /* actor << 32 | cascade: the actor posted in the cascade, other than as the actor of its
     * root post (that one is known from the root: most cascades are a root alone) */
    struct u64map pairs;
    /* from << 32 | to: the amplification graph's edges. Weights are not kept here: they are
     * the count of posts whose parent's actor is `to`, which a snapshot recounts from the posts
     * in one pass; a set costs 4 bytes a slot less on the ingest path. */
    struct u64map edges;
    struct topk ctop[ENGINE_CASCADE_METRICS];
    struct topk atop[ENGINE_ACTOR_METRICS];
    uint64_t outcomes[EVENT_OUTCOME_COUNT];
    uint64_t placeholders, live_cascades;
    uint32_t stamp;
    /* Records changed in this batch: their top-k keys are updated once, when the batch ends. */
    uint32_t *dirty_c, *dirty_a;
    uint32_t ndirty_c, ndirty_a, cap_dirty_c, cap_dirty_a;
    uint32_t *path;    /* scratch: ancestors of the post being attached */
    uint32_t *tracked; /* scratch: 3 * path_cap: actors whose reach a join changes, counters */
    uint32_t path_cap;
    struct growth growth;
    struct copy_job *copy; /* the analytics copy under way (analytics_copy.c), or NULL */
    struct segvec clists;                /* struct content_list per content id */
    size_t clist_heap;                   /* bytes of the lists' arrays */
    uint64_t live_actors, live_contents; /* with a post / a listed post */
    struct retention ret;
    struct coordhook *coord; /* live coordination (coordhook.c), NULL: off */
    struct labels_index labels_ix;
    /* a cluster node's last applied stream sequence per partition (DESIGN §9; persist.c's
     * engine_stream_*: kept in snapshots, set from the WAL's records) */
    uint64_t stream_seq[ENGINE_STREAM_MAX];
};

/* Records per chunk of each segmented array, as constants so that an access is a shift, a
 * mask and a load. */
#define POST_SHIFT    16
#define ACTOR_SHIFT   14
#define CASCADE_SHIFT 12
#define CBODY_SHIFT   12
#define CLIST_SHIFT   12
#define CHUNK_AT(v, type, shift, id)                                                               \
    ((type *)(v).chunks[(id) >> (shift)] + ((id) & ((1u << (shift)) - 1)))

static inline struct post *post_at(const struct engine *e, uint32_t id)
{
    return CHUNK_AT(e->posts, struct post, POST_SHIFT, id);
}

static inline struct actor *actor_at(const struct engine *e, uint32_t id)
{
    return CHUNK_AT(e->actors, struct actor, ACTOR_SHIFT, id);
}

static inline struct cascade *cascade_at(const struct engine *e, uint32_t id)
{
    return CHUNK_AT(e->cascades, struct cascade, CASCADE_SHIFT, id);
}

static inline struct content_list *clist_at(const struct engine *e, uint32_t id)
{
    return CHUNK_AT(e->clists, struct content_list, CLIST_SHIFT, id);
}

static inline struct cbody *cbody_at(const struct engine *e, uint32_t id)
{
    return CHUNK_AT(e->cbodies, struct cbody, CBODY_SHIFT, id);
}

#define CASCADE_FREE 2 /* cascade_dead of an id on the free list */

/* Cascade c's body index, NONE for a single node (or a freed id). */
static inline uint32_t cascade_body_id(const struct cascade *c)
{
    return c->rb & CASCADE_BODY ? c->rb & ~CASCADE_BODY : NONE;
}

static inline int cascade_freed(const struct cascade *c)
{
    return (c->lab & LABEL_BITS) == LABEL_FREED;
}

/* A freed id (its body given back): it links to the next freed one (NONE ends the list). */
#define FREE_END 0x7fffffffu /* NONE without CASCADE_BODY: cascade ids stay below it */
static inline void cascade_set_freed(struct cascade *c, uint32_t next)
{
    c->rb = next == NONE ? FREE_END : next;
    c->lab = LABEL_FREED;
}

static inline uint32_t cascade_free_next(const struct cascade *c)
{
    return c->rb == FREE_END ? NONE : c->rb;
}

/* 0: live, 1: joined into another cascade, CASCADE_FREE: a freed id. */
static inline int cascade_dead(const struct engine *e, const struct cascade *c)
{
    if (c->rb & CASCADE_BODY)
        return cbody_at(e, c->rb & ~CASCADE_BODY)->dead;
    return cascade_freed(c) ? CASCADE_FREE : 0;
}

/* The root post (not of a freed id: see cascade_free_next). */
static inline uint32_t cascade_root(const struct engine *e, const struct cascade *c)
{
    return c->rb & CASCADE_BODY ? cbody_at(e, c->rb & ~CASCADE_BODY)->root : c->rb;
}

/* The label id or NONE. */
static inline uint32_t cascade_label(const struct cascade *c)
{
    uint32_t l = c->lab & LABEL_BITS;
    return l == LABEL_NIL || l == LABEL_FREED ? NONE : l;
}

static inline void cascade_set_label(struct cascade *c, uint32_t label)
{
    c->lab = (c->lab & CASCADE_DIRTY) | (label == NONE ? LABEL_NIL : label);
}

/* Whether the label is the root's own (a single node's can only be). */
static inline int cascade_label_root(const struct engine *e, const struct cascade *c)
{
    if (c->rb & CASCADE_BODY)
        return cbody_at(e, c->rb & ~CASCADE_BODY)->label_root;
    return cascade_label(c) != NONE;
}

/* The figures of cascade c: its body, or those of a single node (its root, observed) in *tmp. */
static inline const struct cbody *cascade_fig(const struct engine *e, const struct cascade *c,
                                              struct cbody *tmp)
{
    if (c->rb & CASCADE_BODY)
        return cbody_at(e, c->rb & ~CASCADE_BODY);
    *tmp = (struct cbody){0};
    if (!cascade_freed(c)) {
        int64_t ts = post_at(e, c->rb)->ts;
        *tmp = (struct cbody){.root = c->rb, .size = 1, .max_breadth = 1, .unique = 1,
                              .label_root = cascade_label(c) != NONE, .first_ts = ts,
                              .last_ts = ts};
    }
    return tmp;
}

/* The observed posts of cascade c (not a freed one). */
static inline uint32_t cascade_size(const struct engine *e, const struct cascade *c)
{
    return c->rb & CASCADE_BODY ? cbody_at(e, c->rb & ~CASCADE_BODY)->size : 1;
}

/* The count of nodes at depth d >= 1 (capacity must have been ensured). */
static inline uint32_t *cascade_level(struct cbody *b, uint32_t d)
{
    return (b->cap_log2 ? b->lv.ext : b->lv.inl) + (d - 1);
}

static inline int post_is_root(const struct post *p)
{
    return (p->parent & ROOT_FLAG) != 0;
}

/* The Wiener index W = n*s1 - s2 (may exceed 64 bits on huge cascades). */
static inline unsigned __int128 cascade_wiener(const struct cbody *c)
{
    return (unsigned __int128)((uint64_t)c->size + c->missing) * c->s1 - c->s2;
}

/* Structural virality: W over the n(n-1)/2 pairs of nodes, 0 for a single node. */
static inline double cascade_virality(const struct cbody *c)
{
    uint64_t n = (uint64_t)c->size + c->missing;
    return n > 1 ? (double)cascade_wiener(c) / ((double)n * (double)(n - 1) / 2.0) : 0.0;
}

/* Marks an actor's top-k keys stale (they are brought up to date before the next top-k read). */
void engine_touch_actor(struct engine *e, uint32_t aid);

/* Gives cascade c's body (and its level array) back, if it has one. */
void engine_release_body(struct engine *e, struct cascade *c);

/* Brings the top-k indexes up to date with every record changed since the last call. */
void engine_flush_cascades(struct engine *e); /* one dirty list only: what a top-k read needs */
void engine_flush_actors(struct engine *e);

/* Walks from post id up to its root; returns the root's cascade id. */
uint32_t engine_find_cascade(const struct engine *e, uint32_t post);

/* Sort keys of the top-k indexes. */
uint64_t engine_cascade_key(const struct cbody *c, int metric);
uint64_t engine_actor_key(const struct actor *a, int metric);

/* The cascade of a post, a dead (joined) cascade's successor, and the metrics a read reports. */
uint32_t engine_live_cascade(const struct engine *e, uint32_t cid);
void engine_describe_cascade(const struct engine *e, uint32_t cid, struct engine_cascade *o);
void engine_describe_actor(const struct engine *e, uint32_t aid, struct engine_actor *o);

/* engine_top_cascades' filter, with its strings resolved to ids once. */
struct cascade_match {
    uint32_t label, content;
    const struct engine_cascade_filter *f;
};

/* 0 when the filter names a label or content no post has (nothing can pass), else 1. */
int engine_match_prepare(const struct engine *e, const struct engine_cascade_filter *f,
                         struct cascade_match *m);
/* 1 when live cascade cid passes the filter. */
int engine_match(const struct engine *e, uint32_t cid, const struct cascade_match *m);

/* ---- analytics_copy.c: while a sliced copy is under way (e->copy), the write path notes what
 * may change a copied slot. A post created at an id (new or reused) or freed: */
void copy_note_post(struct engine *e, uint32_t id);
/* A placeholder filled: its subtree's shares and content keys (and cascade root) may change. */
void copy_note_subtree(struct engine *e, uint32_t root);
/* An actor's reach may have changed (engine.c's touch_actor). */
void copy_note_actor(struct engine *e, uint32_t aid);
void copy_job_free(struct engine *e);

/* ---- retention.c */
int retention_reserve(struct engine *e); /* room for one more cascade id in the heap */
void retention_filed(struct engine *e, uint32_t cid, int64_t ts); /* a new cascade id */
uint32_t retention_take_cascade(struct engine *e);                /* a freed cascade id, or NONE */
void retention_maybe_sweep(struct engine *e);                     /* after an accepted event */
void retention_destroy(struct engine *e);
void retention_gone_content(struct engine *e, uint32_t content); /* its list emptied */
/* Deletes the names queued two copies ago that still have no retained post (a snapshot keeps
 * the queues, so a loaded engine deletes them when the saved one would have). */
void retention_release(struct engine *e);
/* A freed post's record: no actor, no links, nothing below it. */
static inline int post_is_free(const struct post *p)
{
    return p->sub == 0;
}

/* ---- labels.c: the label summary's index. A cascade's keys there are read before the apply
 * path changes it (labels_before) and refiled after (labels_after; w NULL: a new cascade); a
 * joined one is dropped with what labels_before read, an evicted one unfiled. */
#define LABELS_NV (ENGINE_LABEL_METRICS + 1) /* the metrics and duration_ms */
struct labels_was {
    uint32_t label;
    int single; /* a root alone (key is not set) */
    uint64_t key[LABELS_NV];
};
void labels_before(const struct engine *e, uint32_t cid, struct labels_was *w);
void labels_after(struct engine *e, uint32_t cid, const struct labels_was *w);
void labels_drop(struct engine *e, const struct labels_was *w);
void labels_unfile(struct engine *e, uint32_t cid);
int labels_rebuild(struct engine *e); /* from every live cascade; 0 or -ENOMEM (then stale) */
void labels_destroy(struct engine *e);
size_t labels_bytes(const struct engine *e);
/* Tests only: non-zero shrinks the dense ranges to that many keys, and the leaves to 4 keys, for
 * the engines made from then on, so that small test cascades reach the leaves and buckets and
 * split and merge them. */
extern uint32_t labels_test_dense;
/* The summary by a pass over every cascade (what engine_labels computed before the index): the
 * tests' oracle. Same contract as engine_labels. */
int engine_labels_scan(struct engine *e, struct engine_label_summary **out, uint32_t *n);

/* ---- growth.c: the recent-activity index. The apply path reserves before it changes anything
 * and notes after, so a note cannot fail. */
int growth_init(struct growth *g);
void growth_destroy(struct growth *g);
int growth_reserve(struct growth *g, int64_t ts);
void growth_note(struct growth *g, uint32_t post, int64_t ts);
/* Drops every second before floor's and files nothing older than floor from now on. */
void growth_set_floor(struct growth *g, int64_t floor);

/* Persistence of the growth index (persist.c): each filed second's post entries, as they are
 * (a query's per-cascade counts are a cache, rebuilt on demand). slot: the second's place in
 * the ring. fn returning non-zero stops the walk with that value. An entry GROWTH_RUN | k
 * stands for the k post ids that follow the plain entry before it (post ids are below 2^31,
 * core/intern.h); snapshot files hold entries so, so the bit is part of their format. */
#define GROWTH_RUN 0x80000000u
typedef int (*growth_bucket_fn)(void *ctx, uint32_t slot, int64_t id, const uint32_t *ent,
                                uint32_t n, uint32_t cap, uint32_t last);
int growth_each_bucket(const struct growth *g, growth_bucket_fn fn, void *ctx);
/* Files a copy of ent[0..n) (room for cap) as second id at slot: 0, -ENOMEM, or -EINVAL when
 * slot does not fit id or is taken. */
int growth_restore_bucket(struct growth *g, uint32_t slot, int64_t id, const uint32_t *ent,
                          uint32_t n, uint32_t cap, uint32_t last);

/* ---- content.c: the per-content post lists, reserved and noted the same way. content is an
 * existing content id, or NONE for one the event is about to intern. */
int content_reserve(struct engine *e, uint32_t content);
void content_new(struct engine *e, uint32_t id); /* right after interning content id */
void content_note(struct engine *e, uint32_t content, uint32_t post);
/* Removes the freed posts (post_is_free) from content's list. */
void content_prune(struct engine *e, uint32_t content);
void content_destroy(struct engine *e);
size_t content_bytes(const struct engine *e);

#endif
