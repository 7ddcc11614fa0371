/* The one synthetic workload model: the random numbers (xoshiro256**), the Zipf draw, the mix
 * of actors, content and cascades (defaults below), and the model that turns them into share
 * events in event time (src/gen/model.c). cascade-gen writes its events out; engine-bench,
 * ego-bench and cascade-bench apply or send the same events, so that every workload the project
 * measures or tests has one shape. Implemented in src/gen/ (libcascade_gen, on core only). */
#ifndef CASCADE_GEN_H
#define CASCADE_GEN_H

#include <stdint.h>
#include <stdio.h>

#include "cascade/event.h"

/* ---- random numbers: xoshiro256**, seeded through splitmix64 (same seed, same stream) ---- */

struct gen_rng {
    uint64_t s[4];
};

/* splitmix64's finaliser: every input bit affects every output bit. */
static inline uint64_t gen_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* stream: independent streams for independent stages, so that turning one stage's draws on or
 * off (cascade-gen's faults, a bench's own choices) does not change the events the model makes. */
static inline void gen_rng_seed(struct gen_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ gen_mix64(stream + 0x5851f42d4c957f2dULL);
    for (int i = 0; i < 4; i++) {
        x += 0x9e3779b97f4a7c15ULL;
        r->s[i] = gen_mix64(x);
    }
}

static inline uint64_t gen_rng_next(struct gen_rng *r)
{
    uint64_t *s = r->s, out = s[1] * 5, t = s[1] << 17;
    out = (out << 7 | out >> 57) * 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s[3] << 45 | s[3] >> 19;
    return out;
}

/* Uniform in [0, 1). */
static inline double gen_rng_u01(struct gen_rng *r)
{
    return (double)(gen_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n), n > 0 (the modulo bias is below 2^-32 for the n used here). */
static inline uint64_t gen_rng_below(struct gen_rng *r, uint64_t n)
{
    return gen_rng_next(r) % n;
}

/* ---- Zipf: continuous, over ranks 0..n-1 by inverse CDF; rank 0 is the most popular ---- */

struct gen_zipf {
    uint64_t n;
    double c, inv; /* (n+1)^(1-s) - 1 and 1/(1-s); for s = 1, c = ln(n+1) and inv = 0 */
};

void gen_zipf_init(struct gen_zipf *z, uint64_t n, double s); /* n > 0, s >= 0 */
uint64_t gen_zipf_draw(const struct gen_zipf *z, struct gen_rng *r);

/* ---- the mix: the model's defaults (cascade-gen's --help shows them; the benches use them) ----
 * Plain literals, so that cascade-gen's option table can spell them as its default strings. */

#define GEN_DEFAULT_SEED         1
#define GEN_DEFAULT_START_TS     1700000000000 /* ms since the epoch: 2023-11-14 */
#define GEN_DEFAULT_RATE         0    /* events/s of event time; 0: the stream spans a day */
#define GEN_DEFAULT_ACTORS       0    /* 0: events/5, at least 100 */
#define GEN_DEFAULT_ACTOR_ZIPF   0.7  /* activity: the busiest accounts post more */
#define GEN_DEFAULT_PAGES        0.02 /* fraction of actors that are pages */
#define GEN_DEFAULT_URLS         0    /* 0: events/10, at least 10 */
#define GEN_DEFAULT_URL_ZIPF     0.75 /* how often independent cascades share a URL */
#define GEN_DEFAULT_BRANCHING    0.4  /* mean reshares per post (mean cascade size 1/(1-B)) */
#define GEN_DEFAULT_TAIL         1.5  /* P(K >= k) = k^-A for a post's reshares, when it has any */
#define GEN_DEFAULT_MAX_RESHARES 100000
#define GEN_DEFAULT_DELAY_MEDIAN 300000 /* ms from a post to each reshare of it (log-normal) */
#define GEN_DEFAULT_DELAY_SIGMA  1.8
#define GEN_DEFAULT_LABEL_RATE   0.1 /* fraction of URLs with a verdict */
#define GEN_DEFAULT_FALSE_BOOST  2   /* false-labelled cascades are this many times as large */
#define GEN_DEFAULT_GROUPS       0   /* coordinated groups planted */
#define GEN_DEFAULT_GROUP_SIZE   5
#define GEN_DEFAULT_GROUP_KEYS   20
#define GEN_DEFAULT_GROUP_SPREAD 5000 /* ms within which a group's burst falls */

#define GEN_MAX_DEPTH 100 /* reshares of reshares stop at this depth */

/* The model's knobs (cascade-gen's command line documents each one). */
struct gen_params {
    uint64_t events, seed, actors, urls, start_ts, max_reshares;
    uint64_t groups, group_size, group_keys, group_spread_ms;
    double rate, actor_zipf, url_zipf, pages, branching, tail, delay_median_ms, delay_sigma;
    double label_rate, false_boost;
};

/* Every knob at its default, for events events. */
void gen_params_default(struct gen_params *p, uint64_t events);

/* The benchmarks' stream (engine-bench, cascade-bench): the defaults at a fixed pace of event
 * time, so that a run's span (and what a retention window evicts) follows its event count. */
#define GEN_BENCH_MS_PER_EVENT 8 /* 10 M events span about a day */
void gen_params_bench(struct gen_params *p, uint64_t events, uint64_t seed);

/* ---- events ---- */

enum gen_label {
    GEN_LABEL_NONE = 0,
    GEN_LABEL_FALSE,
    GEN_LABEL_TRUE,
    GEN_LABEL_MIXED,
    GEN_LABEL_UNVERIFIED
};
enum gen_kind { GEN_KIND_DEFAULT = 0, GEN_KIND_QUOTE, GEN_KIND_REPLY }; /* default: post or share */

#define GEN_EV_PAGE 1u /* the actor is a page: `page<n>`, else an account `u<n>` */
#define GEN_EV_ACTOR_TYPE                                                                          \
    2u /* carries "actor_type": "page" (set by a writer, not by the model)                         \
        */

/* One event with every id a number: post `p<post>`, parent `p<parent>` (0: none), actor
 * `u<actor>` or `page<actor>`, content `https://news.example/<url>` (0: none). Post numbers
 * count from 1 in event-time order, so a parent's number is always below its reshares'. */
struct gen_event {
    uint64_t post, parent, actor, url;
    int64_t ts;
    uint32_t children; /* reshares the model has scheduled for it (not part of the event) */
    uint8_t label, kind, flags;
    uint8_t bad; /* 0 from the model; cascade-gen's delivery marks its invalid copies here */
};

/* "false", "true", "mixed", "unverified"; NULL for GEN_LABEL_NONE. */
const char *gen_label_name(unsigned label);

/* prefix followed by the decimal digits of v, written at buf (not terminated): its length. By
 * hand, not snprintf: writing 10 M events' ids is then seconds shorter. */
uint32_t gen_put_id(char *buf, const char *prefix, uint64_t v);

/* Bytes of text gen_event_fill writes at most. */
#define GEN_EVENT_TEXT 128

/* ev as a validated struct event with cascade-gen's names (above): the ids and the content are
 * written into text (GEN_EVENT_TEXT bytes), which *out borrows; actor_type is page on every
 * page's event; kind is post, share, quote or reply. */
void gen_event_fill(const struct gen_event *ev, struct event *out, char *text);

/* ---- the model: src/gen/model.c ----
 * A social network simulated in event time, one post at a time: cascades are branching
 * processes with heavy-tailed reshare counts and log-normal delays, actors and URLs are drawn
 * by Zipf popularity, verdicts belong to URLs, planted groups post the same new URLs within
 * seconds of each other. Memory follows rate x delay, not the event count. */

struct gen_model;

/* Checks the knobs against each other and allocates. 0; -EINVAL with a message in err (for the
 * user, without a program name); -ENOMEM. */
int gen_model_new(struct gen_model **out, const struct gen_params *p, char *err, size_t errlen);
void gen_model_free(struct gen_model *m);

/* A warning about knobs that work but give a poor result (a static string), or NULL. */
const char *gen_params_warning(const struct gen_params *p);

/* The next event in event time: 1, 0 after p.events events, -ENOMEM. */
int gen_model_next(struct gen_model *m, struct gen_event *ev);

/* The id spaces: account numbers are 1..accounts (group members included), page numbers
 * 1..pages, URL numbers 1..urls (the groups' burst URLs included). */
struct gen_spaces {
    uint64_t accounts, pages, urls;
};
struct gen_spaces gen_model_spaces(const struct gen_model *m);

/* The planted groups as JSON (members, and the content keys they co-shared), 0 or -EIO. */
int gen_model_write_groups(const struct gen_model *m, FILE *f);

#endif
