/* Shared types of the engine property test: a generated forest of posts (the truth), an oracle
 * that recomputes every DESIGN §3 metric from scratch for whatever subset of it the engine has
 * accepted, the delivery of the forest's events in a chosen order, and the checks that hold the
 * engine to the oracle. The oracle is deliberately naive (all-pairs BFS, explicit sets) so that it
 * shares no idea, and no bug, with the engine's incremental bookkeeping. */
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
/* The node or actor an engine-reported id names, or -1. */
int32_t post_index(const struct forest *f, const char *s, uint32_t len);
int32_t actor_index(const struct forest *f, const char *s, uint32_t len);

/* ---- the oracle: metrics recomputed from the set of accepted posts ---- */

/* What the engine must hold, as the delivery model tracks it. */
struct model {
    const uint8_t *accepted;   /* per node: its event was accepted */
    const uint8_t *first_type; /* per actor: first explicit type accepted, in delivery order */
    const uint64_t *outcomes;  /* per enum event_outcome: events that had it */
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
    uint8_t *present; /* accepted, or a placeholder: some accepted post names it as parent */
    int32_t *root;    /* per present node */
    int32_t *casc;    /* per present node: index into cascades */
    uint32_t *depth;
    struct ocascade *cascades;
    uint32_t n_cascades;
    uint32_t *moff, *mem; /* cascade c's nodes: mem[moff[c] .. moff[c + 1]) */
    struct oactor *actors;
    uint64_t posts, placeholders, actors_present, edges;
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
    ORDER_COUNT
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

/* Field-by-field comparisons, shared by the oracle checks and the engine-vs-engine check. */
void cmp_cascade(const struct engine_cascade *exp, const struct engine_cascade *act,
                 const char *where);
void cmp_actor(const struct engine_actor *exp, const struct engine_actor *act, const char *where);

#endif
