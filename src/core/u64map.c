/* uint64 hash map (see u64map.h). */
#include "core/u64map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"

/* A set answers u64map_get with a pointer to this: present, but no value. */
static uint32_t set_present;

static int alloc_table(struct u64map *m, uint64_t n, int with_values)
{
    m->keys = malloc(n * sizeof(uint64_t));
    if (!m->keys)
        return -ENOMEM;
    memset(m->keys, 0xff, n * sizeof(uint64_t));
    m->vals = NULL;
    if (with_values) {
        m->vals = calloc(n, sizeof(uint32_t));
        if (!m->vals) {
            free(m->keys);
            return -ENOMEM;
        }
    }
    m->mask = n - 1;
    return 0;
}

int u64map_init(struct u64map *m, int with_values)
{
    m->count = 0;
    return alloc_table(m, 1024, with_values);
}

void u64map_destroy(struct u64map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

static uint64_t find_slot(const struct u64map *m, uint64_t key)
{
    uint64_t i = hash_u64(key) & m->mask;
    while (m->keys[i] != key && m->keys[i] != U64MAP_EMPTY)
        i = (i + 1) & m->mask;
    return i;
}

static int grow(struct u64map *m)
{
    struct u64map old = *m;
    if (alloc_table(m, (old.mask + 1) * 2, old.vals != NULL)) {
        *m = old;
        return -ENOMEM;
    }
    m->count = old.count;
    for (uint64_t i = 0; i <= old.mask; i++) {
        if (old.keys[i] == U64MAP_EMPTY)
            continue;
        uint64_t j = find_slot(m, old.keys[i]);
        m->keys[j] = old.keys[i];
        if (m->vals)
            m->vals[j] = old.vals[i];
    }
    free(old.keys);
    free(old.vals);
    return 0;
}

int u64map_reserve_slow(struct u64map *m, uint64_t n)
{
    /* load factor at most 3/4 */
    while ((m->count + n) * 4 > (m->mask + 1) * 3) {
        int rc = grow(m);
        if (rc)
            return rc;
    }
    return 0;
}

uint32_t *u64map_put(struct u64map *m, uint64_t key, int *created)
{
    uint64_t i = find_slot(m, key);
    *created = m->keys[i] == U64MAP_EMPTY;
    if (*created) {
        m->keys[i] = key;
        m->count++;
        if (m->vals)
            m->vals[i] = 0;
    }
    return m->vals ? &m->vals[i] : &set_present;
}

uint32_t *u64map_get(const struct u64map *m, uint64_t key)
{
    uint64_t i = find_slot(m, key);
    if (m->keys[i] == U64MAP_EMPTY)
        return NULL;
    return m->vals ? &m->vals[i] : &set_present;
}

int u64map_has(const struct u64map *m, uint64_t key)
{
    return m->keys[find_slot(m, key)] != U64MAP_EMPTY;
}

/* Backward-shift deletion: pull later members of the probe run into the hole when their home
 * slot does not lie strictly between the hole and their current slot. */
int u64map_del(struct u64map *m, uint64_t key)
{
    uint64_t i = find_slot(m, key);
    if (m->keys[i] == U64MAP_EMPTY)
        return 0;
    uint64_t hole = i;
    for (uint64_t j = (i + 1) & m->mask; m->keys[j] != U64MAP_EMPTY; j = (j + 1) & m->mask) {
        uint64_t home = hash_u64(m->keys[j]) & m->mask;
        /* distance from home to j vs from home to hole, cyclically */
        if (((j - home) & m->mask) >= ((j - hole) & m->mask)) {
            m->keys[hole] = m->keys[j];
            if (m->vals)
                m->vals[hole] = m->vals[j];
            hole = j;
        }
    }
    m->keys[hole] = U64MAP_EMPTY;
    m->count--;
    return 1;
}

size_t u64map_bytes(const struct u64map *m)
{
    return (m->mask + 1) * (sizeof(uint64_t) + (m->vals ? sizeof(uint32_t) : 0));
}

void u64map_prefetch(const struct u64map *m, uint64_t key)
{
    __builtin_prefetch(&m->keys[hash_u64(key) & m->mask]);
}
