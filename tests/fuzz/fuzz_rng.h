/* What the fuzz targets derive from an input besides its bytes (chunk sizes, stops, limits): a
 * small generator seeded from a hash of the input, so that seeds stay plain files. */
#ifndef FUZZ_RNG_H
#define FUZZ_RNG_H

#include <stdint.h>

struct rng {
    uint64_t s;
};

static inline uint64_t rng_next(struct rng *r)
{
    /* xorshift64*: good enough to pick chunk sizes */
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ull;
}

static inline uint32_t rng_below(struct rng *r, uint32_t n)
{
    return n ? (uint32_t)(rng_next(r) % n) : 0;
}

/* FNV-1a style: the digests the targets compare, and the seeding. */
static inline uint64_t mix(uint64_t h, uint64_t v)
{
    return (h ^ v) * 0x100000001b3ull;
}

#endif
