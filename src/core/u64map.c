/* uint64 hash map (see u64map.h). Growing is incremental: the old table stays readable while
 * each later reservation moves a few of its clusters (maximal runs of full slots) into the new
 * one. A cluster moves whole, so a lookup in the old table either finds its key's cluster intact
 * or finds an empty slot at once; no operation ever waits for a whole rehash.
 * Tables grow by 3/2 and 4/3 in turn (1024, 1536, 2048, 3072, ...), not by 2: a table that has
 * just grown is half full or more instead of 3/8, so the map holds fewer empty slots. A key's
 * home slot is its hash scaled to the table's size (the high bits of hash * size). */
#include "core/u64map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/bigarr.h"
#include "core/hash.h"

#define MIGRATE_SLOTS                                                                              \
    64 /* old slots walked per reservation: done long before the new table fills */

/* A set answers u64map_get with a pointer to this: present, but no value. */
static uint32_t set_present;

/* Slots hold ~key, so that an empty slot is 0 and a new table comes zeroed from calloc, page by
 * page as it is first touched, instead of a memset of the whole table in one go. */
#define EMPTY 0

static inline uint64_t key_of(uint64_t stored)
{
    return ~stored;
}

/* Slots in t: t->mask is the last slot's index. */
static inline uint64_t slots_of(const struct u64map_table *t)
{
    return t->mask + 1;
}

static inline uint64_t home_of(const struct u64map_table *t, uint64_t key)
{
    return (uint64_t)(((unsigned __int128)hash_u64(key) * slots_of(t)) >> 64);
}

static inline uint64_t next_slot(const struct u64map_table *t, uint64_t i)
{
    return i == t->mask ? 0 : i + 1;
}

/* Slots from a forward to b, around the end of the table. */
static inline uint64_t ahead(const struct u64map_table *t, uint64_t a, uint64_t b)
{
    return b >= a ? b - a : b + slots_of(t) - a;
}

/* The size after n: 3/2 of a power of two, else the next power of two. */
static uint64_t grown_size(uint64_t n)
{
    return (n & (n - 1)) == 0 ? n + n / 2 : n / 3 * 4;
}

static int alloc_table(struct u64map_table *t, uint64_t n, int with_values)
{
    t->keys = bigarr_alloc_random(n * sizeof(uint64_t));
    if (!t->keys)
        return -ENOMEM;
    t->vals = NULL;
    if (with_values) {
        t->vals = bigarr_alloc_random(n * sizeof(uint32_t));
        if (!t->vals) {
            bigarr_free(t->keys, n * sizeof(uint64_t));
            t->keys = NULL; /* a map whose init failed stays safe to destroy */
            return -ENOMEM;
        }
    }
    t->mask = n - 1;
    return 0;
}

static void free_table(struct u64map_table *t)
{
    if (t->keys) {
        bigarr_free(t->keys, slots_of(t) * sizeof(uint64_t));
        bigarr_free(t->vals, slots_of(t) * sizeof(uint32_t));
    }
    memset(t, 0, sizeof(*t));
}

int u64map_init(struct u64map *m, int with_values)
{
    memset(m, 0, sizeof(*m));
    return alloc_table(&m->t, 1024, with_values);
}

void u64map_destroy(struct u64map *m)
{
    free_table(&m->t);
    free_table(&m->old);
    memset(m, 0, sizeof(*m));
}

static uint64_t find_slot(const struct u64map_table *t, uint64_t key)
{
    uint64_t i = home_of(t, key), stored = ~key;
    while (t->keys[i] != stored && t->keys[i] != EMPTY)
        i = next_slot(t, i);
    return i;
}

/* The slot of key in the old table, or UINT64_MAX when it is not there (or nothing migrates). */
static uint64_t old_slot(const struct u64map *m, uint64_t key)
{
    if (!m->old.keys)
        return UINT64_MAX;
    uint64_t i = find_slot(&m->old, key);
    return m->old.keys[i] == EMPTY ? UINT64_MAX : i;
}

static void put_new(struct u64map_table *t, uint64_t key, uint32_t val)
{
    uint64_t j = find_slot(t, key);
    t->keys[j] = ~key;
    if (t->vals)
        t->vals[j] = val;
}

/* Moves the cluster that starts at old slot i (full, after an empty one) into the new table;
 * returns the slot after it. */
static uint64_t move_cluster(struct u64map *m, uint64_t i)
{
    struct u64map_table *o = &m->old;
    while (o->keys[i] != EMPTY) {
        put_new(&m->t, key_of(o->keys[i]), o->vals ? o->vals[i] : 0);
        o->keys[i] = EMPTY;
        m->old_left--;
        i = next_slot(o, i);
    }
    return i;
}

/* Walks at least `slots` old slots, moving every cluster met; frees the old table at the end. */
static void migrate(struct u64map *m, uint64_t slots)
{
    while (m->old.keys && slots > 0) {
        if (m->old_left == 0 || m->walk_left == 0) {
            free_table(&m->old);
            return;
        }
        uint64_t i = m->walk_pos;
        if (m->old.keys[i] != EMPTY) {
            uint64_t next = move_cluster(m, i);
            uint64_t len = ahead(&m->old, i, next);
            slots -= len < slots ? len : slots;
            m->walk_left -= len < m->walk_left ? len : m->walk_left;
            m->walk_pos = next;
        } else {
            m->walk_pos = next_slot(&m->old, i);
            m->walk_left--;
            slots--;
        }
    }
    if (m->old.keys && (m->old_left == 0 || m->walk_left == 0))
        free_table(&m->old);
}

void u64map_finish(struct u64map *m)
{
    migrate(m, UINT64_MAX);
}

/* Starts moving into a table of the next size. The walk starts just after an empty slot, so that
 * every cluster is met from its first slot (none wraps around the walk's start). */
static int grow(struct u64map *m)
{
    u64map_finish(m);
    struct u64map_table fresh;
    if (alloc_table(&fresh, grown_size(slots_of(&m->t)), m->t.vals != NULL))
        return -ENOMEM;
    m->old = m->t;
    m->t = fresh;
    m->old_left = m->count;
    uint64_t e = 0;
    while (m->old.keys[e] != EMPTY)
        e++; /* the load factor is at most 3/4: an empty slot exists */
    m->walk_pos = next_slot(&m->old, e);
    m->walk_left = m->old.mask + 1;
    return 0;
}

int u64map_reserve_slow(struct u64map *m, uint64_t n)
{
    migrate(m, MIGRATE_SLOTS);
    /* load factor of the new table at most 3/4, counting what still waits in the old one */
    while ((m->count + n) * 4 > (m->t.mask + 1) * 3) {
        int rc = grow(m);
        if (rc)
            return rc;
    }
    return 0;
}

uint32_t *u64map_put(struct u64map *m, uint64_t key, int *created)
{
    uint64_t o = old_slot(m, key);
    if (o != UINT64_MAX) {
        *created = 0;
        return m->old.vals ? &m->old.vals[o] : &set_present;
    }
    uint64_t i = find_slot(&m->t, key);
    *created = m->t.keys[i] == EMPTY;
    if (*created) {
        m->t.keys[i] = ~key;
        m->count++;
        if (m->t.vals)
            m->t.vals[i] = 0;
    }
    return m->t.vals ? &m->t.vals[i] : &set_present;
}

uint32_t *u64map_get(const struct u64map *m, uint64_t key)
{
    uint64_t o = old_slot(m, key);
    if (o != UINT64_MAX)
        return m->old.vals ? &m->old.vals[o] : &set_present;
    uint64_t i = find_slot(&m->t, key);
    if (m->t.keys[i] == EMPTY)
        return NULL;
    return m->t.vals ? &m->t.vals[i] : &set_present;
}

int u64map_has(const struct u64map *m, uint64_t key)
{
    return u64map_get(m, key) != NULL;
}

/* Backward-shift deletion in one table: pull later members of the probe run into the hole when
 * their home slot does not lie strictly between the hole and their current slot. The run stays
 * one cluster (or splits in two), so the old table's clusters remain whole. */
static void delete_at(struct u64map_table *t, uint64_t hole)
{
    for (uint64_t j = next_slot(t, hole); t->keys[j] != EMPTY; j = next_slot(t, j)) {
        uint64_t home = home_of(t, key_of(t->keys[j]));
        if (ahead(t, home, j) >= ahead(t, hole, j)) {
            t->keys[hole] = t->keys[j];
            if (t->vals)
                t->vals[hole] = t->vals[j];
            hole = j;
        }
    }
    t->keys[hole] = EMPTY;
}

int u64map_del(struct u64map *m, uint64_t key)
{
    uint64_t o = old_slot(m, key);
    if (o != UINT64_MAX) {
        delete_at(&m->old, o);
        m->old_left--;
        m->count--;
        return 1;
    }
    uint64_t i = find_slot(&m->t, key);
    if (m->t.keys[i] == EMPTY)
        return 0;
    delete_at(&m->t, i);
    m->count--;
    return 1;
}

size_t u64map_bytes(const struct u64map *m)
{
    size_t per = sizeof(uint64_t) + (m->t.vals ? sizeof(uint32_t) : 0);
    return (m->t.mask + 1) * per + (m->old.keys ? (m->old.mask + 1) * per : 0);
}

void u64map_prefetch(const struct u64map *m, uint64_t key)
{
    __builtin_prefetch(&m->t.keys[home_of(&m->t, key)]);
    if (m->old.keys)
        __builtin_prefetch(&m->old.keys[home_of(&m->old, key)]);
}

int u64map_slot(const struct u64map *m, uint64_t i, uint64_t *key)
{
    if (m->t.keys[i] == EMPTY)
        return 0;
    *key = key_of(m->t.keys[i]);
    return 1;
}
