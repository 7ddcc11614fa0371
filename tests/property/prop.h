/* Shared types of the engine property tests: a generated forest of posts (the truth), an oracle
 * that recomputes every DESIGN §3 metric from scratch for whatever subset of it the engine holds,
 * the delivery of the forest's events in a chosen order, and the checks that hold the engine to
 * the oracle. The oracle is deliberately naive (all-pairs BFS, explicit sets) so that it shares no
 * idea, and no bug, with the engine's incremental bookkeeping. Under retention (property_retention)
 * a model of the sweep schedule (retain.c) decides which posts the engine still holds, and the
 * engine is also held to a fresh engine fed only those posts (check_fresh.c). */
#ifndef PROP_H
#define PROP_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/engine.h"
#include "cascade/event.h"

/* ---- random numbers (xorshift64*: small, deterministic for a seed) ---- */
struct rng {
    uint64_t s;
};
void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
uint32_t rng_below(struct rng *r, uint32_t n); /* uniform in [0, n), n > 0 */
int rng_chance(struct rng *r, uint32_t percent);

/* ---- the forest: every post that exists in the world, delivered or not ---- */
#define KIND_DEFAULT 0xff

struct node {
    int32_t parent;   /* index of the parent (always lower), -1: an original post */
    uint32_t actor;   /* index into the actor pool */
    int64_t ts;       /* unique within a forest, so "earliest labelled post" is never a tie */
    uint8_t int_id;   /* its id is an integer: sent as a uint or as its decimal string */
    uint8_t withheld; /* its event is never sent: it stays a placeholder if referenced */
    uint8_t kind;     /* explicit enum event_kind, or KIND_DEFAULT */
    uint8_t type;     /* explicit actor_type its event carries, or EVENT_ACTOR_UNSPECIFIED */
    const char *content, *label; /* NULL: none */
};

struct forest {
    uint32_t n, n_actors;
    struct node *nodes;
    uint8_t *actor_type;  /* per actor: the type its explicit events carry, unless fickle */
    uint8_t fickle_types; /* events disagree on their actor's type: the first one seen wins */
    uint8_t *actor_int;   /* per actor: its id is an integer */
    uint64_t int_base;    /* integer post ids are int_base + index */
    uint32_t pad_ids;     /* string ids padded towards EVENT_ID_MAX bytes */
};

#define ID_BUF     (EVENT_ID_MAX + 8)
#define ACTOR_BASE 5000000000ULL
#define GHOST      "ghost"      /* actor of events that must never be accepted */
#define GHOST_POST "ghost-post" /* a post named only by events that must never be accepted */

struct forest_params {
    uint32_t n;        /* posts */
    uint32_t max_tree; /* 0: trees may take the whole forest */
    uint32_t actors;   /* 0: a small random pool (1..6, sometimes 1..40) */
    int pad_ids;       /* -1: sometimes */
};

void forest_generate(struct forest *f, struct rng *r, const struct forest_params *p);
void forest_free(struct forest *f);
/* Writes node k's canonical id (what the engine reports) into buf; returns its length. */
uint32_t post_id(const struct forest *f, uint32_t k, char *buf);
uint32_t actor_id(const struct forest *f, uint32_t a, char *buf);
/* The distinct content keys the forest's posts carry of their own, written to keys (room for
 * f->n); returns how many. */
uint32_t forest_content_keys(const struct forest *f, const char **keys);
/* The node or actor an engine-reported id names, or -1. */
int32_t post_index(const struct forest *f, const char *s, uint32_t len);
int32_t actor_index(const struct forest *f, const char *s, uint32_t len);

/* ---- the oracle: metrics recomputed from the set of accepted posts ---- */

/* What the engine must hold, as the delivery model tracks it. */
struct model {
    const uint8_t *accepted;   /* per node: its event was accepted (and, under retention, its
                                * post not evicted since) */
    const uint8_t *first_type; /* per actor: first explicit type accepted, in delivery order */
    const uint64_t *outcomes;  /* per enum event_outcome: events that had it */
    /* Retention (0: none). An engine under retention refuses growth windows longer than it,
     * and keeps an actor's first_ts, last_ts and type from the posts accepted since it last had
     * none held, evicted ones included: actor_first/actor_last give that span per actor (NULL:
     * the span of its held posts, as without retention), first_type its first type. */
    int64_t retention_ms;
    const int64_t *actor_first, *actor_last;
};

struct ocascade {
    int32_t root;
    uint32_t size, missing, depth, max_breadth, unique_actors;
    uint64_t wiener;
    double virality;
    int64_t first_ts, last_ts;
    const char *label; /* root's, else the earliest labelled post's */
};

struct oactor {
    uint32_t posts, roots, shares, reshares_received, amplifiers, reach, cascades;
    int64_t first_ts, last_ts;
    uint8_t type;
};

struct oracle {
    const struct forest *f;
    const uint8_t *accepted, *first_type;
    int64_t retention_ms;                    /* from the model */
    const int64_t *actor_first, *actor_last; /* from the model */
    uint8_t *present; /* accepted, or a placeholder: some accepted post names it as parent */
    int32_t *root;    /* per present node */
    int32_t *casc;    /* per present node: index into cascades */
    uint32_t *depth;
    struct ocascade *cascades;
    uint32_t n_cascades;
    uint32_t *moff, *mem; /* cascade c's nodes: mem[moff[c] .. moff[c + 1]) */
    struct oactor *actors;
    uint64_t posts, placeholders, actors_present, edges;
    uint64_t contents; /* distinct content keys among the accepted posts' own */
};

void oracle_compute(struct oracle *o, const struct forest *f, const struct model *m);
void oracle_free(struct oracle *o);
/* The metrics as the engine should report them; their strings are written to buf, which holds
 * 2 * ID_BUF bytes. */
void oracle_cascade_view(const struct oracle *o, uint32_t c, char *buf, struct engine_cascade *out);
void oracle_actor_view(const struct oracle *o, uint32_t a, char *buf, struct engine_actor *out);

/* ---- failure reporting: every mismatch names the seed and iteration to replay ---- */
struct ctx {
    uint64_t seed;
    uint32_t iter, step; /* step: events sent so far in this delivery */
    const char *order, *phase;
};
extern struct ctx g_ctx;
void prop_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* The program a failure's replay line names, and the prefix of its environment knobs. */
struct replay {
    const char *env, *prog;
};
extern struct replay g_replay;
uint64_t env_u64(const char *name, uint64_t def);
/* Runs iteration(seed, i, trace) for the forests the knobs ask for; returns how many. */
typedef void (*iteration_fn)(uint64_t seed, uint32_t iter, int trace);
uint64_t run_forests(uint64_t def_seed, uint64_t def_iter, iteration_fn iteration);

#define EXPECT_INT(what, exp, act)                                                                 \
    do {                                                                                           \
        long long e_ = (long long)(exp), a_ = (long long)(act);                                    \
        if (e_ != a_)                                                                              \
            prop_fail("%s: expected %lld, got %lld", (what), e_, a_);                              \
    } while (0)

/* ---- delivery: one engine fed one order of the forest, checked along the way ---- */
enum order {
    ORDER_IN,            /* parents before children: the easy case */
    ORDER_REVERSE,       /* children first: every chain arrives backwards */
    ORDER_SHUFFLE,       /* uniformly random */
    ORDER_SUBTREES,      /* whole subtrees before their ancestors */
    ORDER_DEEPEST_FIRST, /* level by level from the leaves up */
    ORDER_NEARLY_SORTED, /* in order with local swaps: a few late parents */
    ORDER_COUNT,         /* the orders above are the ones test_property.c draws from */
    /* by event time, for the retention test: the order of a live firehose */
    ORDER_TS = ORDER_COUNT,
    ORDER_TS_LATE, /* by event time, but some events held back up to 3 retentions: stragglers */
    ORDER_ALL
};
const char *order_name(int order);

struct delivery_opts {
    int order;
    const uint32_t *script; /* if set: deliver exactly these nodes in this order, no noise */
    uint32_t script_len;
    uint32_t batch_max;   /* 0: engine_apply_raw per event; else engine_apply batches */
    uint32_t checkpoints; /* intermediate full checks expected per delivery (≥ n: all) */
    uint32_t noise_pct;   /* chance per event of a duplicate or an invalid event */
    int trace;            /* print every event and its outcome to stderr */
    /* Retention: engine_set_retention(retention_ms) before the first event, the model of
     * retain.c deciding what is held, noise that resends evicted posts, and at each checkpoint
     * the engine held to a fresh engine fed the held posts; persist_pct of the checkpoints
     * save and load the engine and go on with the loaded one. */
    int64_t retention_ms;
    uint32_t persist_pct;
};

/* Delivers f to a new engine, checking outcomes as it goes and every metric at checkpoints and
 * at the end; returns the engine (caller frees) in its final state. */
struct engine *deliver(const struct forest *f, struct rng *r, const struct delivery_opts *o);
/* Checks every metric, query and counter of e against the oracle of accepted. */
void check_engine(struct engine *e, const struct forest *f, const struct model *m, struct rng *r,
                  int full);
/* engine_top_growth and engine_content against counts over every accepted post; cv holds the
 * oracle's view of each cascade (oracle_cascade_view). */
void check_recent(struct engine *e, const struct forest *f, const struct oracle *o,
                  const struct engine_cascade *cv, struct rng *r);
/* The oracle's side of engine_cascade_filter. */
int cascade_passes(const struct engine_cascade *c, const struct engine_cascade_filter *flt);
/* Two engines fed the same forest must agree on every metric of every post and actor. */
void check_same_state(struct engine *a, struct engine *b, const struct forest *f);

/* ---- retention: the sweep schedule of engine_set_retention, simulated (retain.c) ---- */
struct retain {
    int64_t ms, step;
    int64_t newest, cut, sweep_at; /* valid once any / swept */
    int any, swept;
    uint64_t evicted_cascades, evicted_posts;
    uint32_t sweeps;
    int32_t *top;  /* scratch per node: the top of its tree among the held posts */
    int64_t *last; /* scratch per node (as a top): the newest held post below it */
};

int64_t floor_second(int64_t ms); /* the multiple of 1000 at or below ms */
void retain_init(struct retain *m, int64_t ms, uint32_t n);
void retain_free(struct retain *m);
/* An event with time ts was accepted: 1 when a sweep runs now (to m->cut). */
int retain_accepted(struct retain *m, int64_t ts);
/* The sweep: clears held[k] for every post of each tree whose newest held post is older than
 * m->cut; writes those posts to out (room for f->n) and returns their number. */
uint32_t retain_sweep(struct retain *m, const struct forest *f, uint8_t *held, uint32_t *out);

/* What the retention runs exercised, for the test's closing line: a run that never evicts or
 * never resends would pass without testing much. */
struct retain_tally {
    uint64_t sweeps, evicted_posts, evicted_cascades, resends, checkpoints, loads;
};
extern struct retain_tally g_tally;

/* How engines_agree compares two engines. */
struct agree {
    int exact;          /* b is a from a snapshot of a: ids, trees' order, actor times agree */
    int64_t growth_max; /* the longest growth window to ask both */
    int take;           /* also compare engine_copy_take, which lets names go (retention) */
    const char *what;   /* for messages */
};
/* Engine a against engine b: stats, every post's cascade, every actor, the top lists (as
 * multisets of values where ties may order differently), growth, contents, labels, actor links
 * and cascades. */
void engines_agree(struct engine *a, struct engine *b, const struct forest *f, struct rng *r,
                   const struct agree *how);

/* Field-by-field comparisons, shared by the oracle checks and the engine-vs-engine check. */
double cascade_metric(const struct engine_cascade *c, int metric); /* ENGINE_CASCADE_METRICS:
                                                                    * growth */
double actor_metric(const struct engine_actor *a, int metric);
void cmp_cascade(const struct engine_cascade *exp, const struct engine_cascade *act,
                 const char *where);
void cmp_actor(const struct engine_actor *exp, const struct engine_actor *act, const char *where);

#endif
