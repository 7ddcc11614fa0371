/* cascade-gen's private interface: the model (include/cascade/gen.h, shared with the benches)
 * yields valid events in event time, delivery reorders, resends and corrupts some as a flaky
 * producer would, the sink encodes them (NDJSON, msgpack, CSV). Data flows one way through the
 * three. */
#ifndef CASCADE_GEN_TOOL_H
#define CASCADE_GEN_TOOL_H

#include <stdint.h>
#include <stdio.h>

#include "cascade/gen.h"

enum gen_format { GEN_NDJSON = 0, GEN_MSGPACK, GEN_CSV };

/* Every knob of the command line; cascade-gen.c's option table fills it in. The model's knobs
 * are the shared model's (include/cascade/gen.h); the rest are the delivery's and the sink's. */
struct gen_opts {
    struct gen_params model;
    double late_parents, duplicates, bad_events;
    int format; /* enum gen_format, or -1: from the output file's name */
    const char *out, *groups_out;
};

/* Ways an event is made invalid (DESIGN §2 rejection reasons in brackets), in gen_event.bad. */
enum gen_bad {
    BAD_NONE = 0,
    BAD_NO_ACTOR,    /* [missing_actor] */
    BAD_TS_STRING,   /* ts as an ISO 8601 string [bad_type] */
    BAD_SELF_PARENT, /* [self_parent] */
    BAD_NO_POST,     /* [missing_post] */
    BAD_KINDS
};

/* The sink spells the model's event flags without their prefix. */
#define EV_PAGE       GEN_EV_PAGE
#define EV_ACTOR_TYPE GEN_EV_ACTOR_TYPE

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
