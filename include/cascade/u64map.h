/* Open-addressing hash map from uint64 keys to uint32 values (or a set, without values): the
 * engine's (actor, cascade) membership set and its amplification edges. Linear probing with
 * backward-shift deletion, so there are no tombstones and lookups stay short after joins; the
 * table grows incrementally, a little per reservation, so no insert waits for a whole rehash.
 * Implemented in src/core/u64map.c; public so that the tools (cascade-gen) reach it without
 * the server's private headers. */
#ifndef CASCADE_U64MAP_H
#define CASCADE_U64MAP_H

#include <stddef.h>
#include <stdint.h>

#define U64MAP_EMPTY UINT64_MAX /* the one key that cannot be stored */

struct u64map_table {
    uint64_t *keys; /* ~key per slot, 0 when empty (see u64map.c) */
    uint32_t *vals; /* NULL for a set */
    uint64_t mask; /* slots - 1: the last slot's index (slots: a power of two or 3/2 of one) */
};

struct u64map {
    struct u64map_table t;   /* where inserts go */
    struct u64map_table old; /* while growing: the previous table, emptied cluster by cluster */
    uint64_t count;          /* keys in both */
    uint64_t old_left;       /* keys still in old */
    uint64_t walk_pos, walk_left; /* the migration's next old slot and how many remain */
};

/* with_values: 0 for a set. 0 or -ENOMEM. */
int u64map_init(struct u64map *m, int with_values);
void u64map_destroy(struct u64map *m);

/* Makes room for n more keys so that u64map_put() cannot fail. 0 or -ENOMEM. */
int u64map_reserve_slow(struct u64map *m, uint64_t n);

static inline int u64map_reserve(struct u64map *m, uint64_t n)
{
    /* load factor at most 3/4; while growing, every reservation moves part of the old table */
    if (!m->old.keys && (m->count + n) * 4 <= (m->t.mask + 1) * 3)
        return 0;
    return u64map_reserve_slow(m, n);
}

/* Inserts key if absent (value 0). Returns a pointer to its value (NULL for a set) and sets
 * *created. Room must be reserved. */
uint32_t *u64map_put(struct u64map *m, uint64_t key, int *created);

/* The value slot of key, or NULL when absent; for a set, non-NULL (not dereferenceable) when
 * present. */
uint32_t *u64map_get(const struct u64map *m, uint64_t key);

int u64map_has(const struct u64map *m, uint64_t key);

/* Removes key; 1 if it was there, else 0. */
int u64map_del(struct u64map *m, uint64_t key);

/* Completes a growth in progress, so that every key is in m->t. Iteration:
 * u64map_finish(m); for (i = 0; i <= m->t.mask; i++) if (u64map_slot(m, i, &key)) ... */
void u64map_finish(struct u64map *m);

/* 1 and the key stored in slot i of m->t, or 0 for an empty slot. */
int u64map_slot(const struct u64map *m, uint64_t i, uint64_t *key);

size_t u64map_bytes(const struct u64map *m);

/* Hints the CPU to fetch the slot a lookup of key will start at. */
void u64map_prefetch(const struct u64map *m, uint64_t key);

static inline uint64_t u64map_pair(uint32_t hi, uint32_t lo)
{
    return (uint64_t)hi << 32 | lo;
}

#endif
