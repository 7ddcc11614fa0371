/* Hashing for the engine's tables: XXH3 over bytes, a 64-bit mixer over integer keys.
 * One place to change the hash function for every table.
 * Public so that the tools hash ids exactly as the server does (cascade-replay routes by it). */
#ifndef CASCADE_HASH_H
#define CASCADE_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

static inline uint64_t hash_bytes(const void *p, size_t len)
{
    return XXH3_64bits(p, len);
}

/* splitmix64's finaliser: every input bit affects every output bit, cheap for packed id pairs. */
static inline uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

#endif
