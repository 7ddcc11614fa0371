/* The cluster endpoint's merge rules, pure (no I/O, no server state): how records from several
 * nodes rank together, the quantiles of merged values, and the set of ids an actor's
 * amplifiers form. tests/unit/test_cluster_merge.c holds them to the rules docs/cluster.md
 * states. */
#ifndef CLUSTER_MERGE_H
#define CLUSTER_MERGE_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/* Public ids bytewise, a proper prefix first (the engine's order of names): <0, 0, >0. */
int clm_id_cmp(const char *a, size_t al, const char *b, size_t bl);

/* Two numbers of a record (positive or negative integers, floats; nil or absent lowest):
 * <0, 0, >0. */
int clm_num_cmp(const msgpack_object *a, const msgpack_object *b);

/* The order of a merged ranked list of cascade records (maps as the nodes pack them): key
 * descending (e.g. "size", "growth"), then first_ts ascending (the cascade created first, as
 * a node breaks ties when events arrive in time order), then root id bytewise. For qsort-like
 * use: <0 when a ranks first. */
int clm_cascade_cmp(const msgpack_object *a, const msgpack_object *b, const char *key);

/* The same for a cascade list ranked by size, then root id (actor_cascades). */
int clm_cascade_root_cmp(const msgpack_object *a, const msgpack_object *b);

/* Type 7 quantile (linear interpolation) of sorted[0..n), n >= 1, as engine/labels.c. */
double clm_quantile(const double *sorted, size_t n, double q);

/* A set of ids (copies), for the union of an actor's amplifiers across nodes. */
struct clm_idset {
    char **ids;
    uint32_t *lens;
    size_t n, cap;
    int sorted; /* clm_idset_finish ran: ids sorted and unique */
};
/* 0 or -ENOMEM. */
int clm_idset_add(struct clm_idset *s, const char *id, size_t len);
/* Sorts and removes duplicates; the count. */
size_t clm_idset_finish(struct clm_idset *s);
void clm_idset_free(struct clm_idset *s);

#endif
