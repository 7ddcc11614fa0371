/* cascade-gen's private interface: the model yields valid events in event time, delivery reorders,
 * resends and corrupts some as a flaky producer would, the sink encodes them (NDJSON, msgpack,
 * CSV). Data flows one way through the three. */
#ifndef CASCADE_GEN_H
#define CASCADE_GEN_H

#include <stdint.h>
#include <stdio.h>

enum gen_format { GEN_NDJSON = 0, GEN_MSGPACK, GEN_CSV };

/* Every knob of the command line; cascade-gen.c's option table fills it in. */
struct gen_opts {
    uint64_t events, seed, actors, urls, start_ts, max_reshares;
    uint64_t groups, group_size, group_keys, group_spread_ms;
    double rate, actor_zipf, url_zipf, pages, branching, tail, delay_median_ms, delay_sigma;
    double label_rate, false_boost, late_parents, duplicates, bad_events;
    int format; /* enum gen_format, or -1: from the output file's name */
    const char *out, *groups_out;
};

/* ---- random numbers: xoshiro256**, seeded through splitmix64 (same seed, same stream) ---- */

struct rng {
    uint64_t s[4];
};

static inline uint64_t gen_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* stream: independent streams for independent stages, so that turning faults on does not
 * change which events the model makes. */
static inline void rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ gen_mix64(stream + 0x5851f42d4c957f2dULL);
    for (int i = 0; i < 4; i++) {
        x += 0x9e3779b97f4a7c15ULL;
        r->s[i] = gen_mix64(x);
    }
}

static inline uint64_t rng_next(struct rng *r)
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
static inline double rng_u01(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n), n > 0 (the modulo bias is below 2^-32 for the n used here). */
static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
    return rng_next(r) % n;
}

/* ---- events ---- */

enum gen_label { LABEL_NONE = 0, LABEL_FALSE, LABEL_TRUE, LABEL_MIXED, LABEL_UNVERIFIED };
enum gen_kind { KIND_DEFAULT = 0, KIND_QUOTE, KIND_REPLY }; /* default: post or share */

/* Ways an event is made invalid (DESIGN §2 rejection reasons in brackets). */
enum gen_bad {
    BAD_NONE = 0,
    BAD_NO_ACTOR,    /* [missing_actor] */
    BAD_TS_STRING,   /* ts as an ISO 8601 string [bad_type] */
    BAD_SELF_PARENT, /* [self_parent] */
    BAD_NO_POST,     /* [missing_post] */
    BAD_KINDS
};

#define EV_PAGE       1u /* the actor is a page: `page<n>`, else an account `u<n>` */
#define EV_ACTOR_TYPE 2u /* carries "actor_type": "page" (the page's first event on the wire) */

/* One event with every id already a number: post `p<post>`, parent `p<parent>` (0: none), actor
 * `u<actor>` or `page<actor>`, content `https://news.example/<url>` (0: none). */
struct gen_event {
    uint64_t post, parent, actor, url;
    int64_t ts;
    uint32_t children; /* reshares the model has scheduled for it (not part of the event) */
    uint8_t label, kind, flags, bad;
};

/* ---- the model: cascade-gen-model.c ---- */

struct model;

/* Checks the knobs against each other (a message on stderr and -EINVAL), allocates.
 * 0, -EINVAL or -ENOMEM. */
int model_new(struct model **out, const struct gen_opts *o);
void model_free(struct model *m);

/* The next event in event time: 1, 0 after opts.events events, -ENOMEM. */
int model_next(struct model *m, struct gen_event *ev);

uint64_t model_pages(const struct model *m); /* page numbers are 1..model_pages() */

/* The planted groups as JSON (members, and the content keys they co-shared), 0 or -EIO. */
int model_write_groups(const struct model *m, FILE *f);

/* ---- the sink: cascade-gen-sink.c ---- */

struct sink;

/* path NULL or "-": stdout; a name ending in .gz is gzip-compressed. 0 or -errno (reported). */
int sink_open(struct sink **out, const char *path, enum gen_format fmt);
int sink_event(struct sink *s, const struct gen_event *ev); /* 0 or -errno (reported) */
int sink_close(struct sink *s, int failed); /* flushes; on failure removes the file */

/* ---- delivery faults: cascade-gen-delivery.c ---- */

struct delivery;

struct delivery_counts {
    uint64_t lines, late, duplicates, bad;
};

int delivery_new(struct delivery **out, const struct gen_opts *o, uint64_t pages,
                 struct sink *sink);
/* Takes the model's events in order; writes them, some held back, resent or corrupted. */
int delivery_push(struct delivery *d, const struct gen_event *ev);
int delivery_finish(struct delivery *d); /* writes what is still held back */
struct delivery_counts delivery_counts(const struct delivery *d);
void delivery_free(struct delivery *d);

#endif
