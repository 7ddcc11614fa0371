/* Segmented arrays: records in fixed-size chunks, so growth never copies or doubles memory and
 * an index stays valid forever. Chunks come zeroed (core/bigarr: calloc, or for chunks of 2 MiB
 * and more a 2 MiB-aligned mapping each, huge pages where THP allows), so untouched capacity costs
 * no RSS. */
#ifndef CORE_SEGVEC_H
#define CORE_SEGVEC_H

#include <stddef.h>
#include <stdint.h>

struct segvec {
    char **chunks;
    uint32_t nchunks, chunks_cap;
    uint32_t len;    /* elements in use */
    uint32_t elsize; /* bytes per element */
    uint8_t shift;   /* log2 of elements per chunk */
};

/* Initialises an empty array of elsize-byte elements, 2^shift per chunk. Never fails. */
void segvec_init(struct segvec *v, uint32_t elsize, uint8_t shift);
void segvec_destroy(struct segvec *v);

/* Makes room for n more elements, so that the next n segvec_push() cannot fail. 0 or -ENOMEM. */
int segvec_reserve_slow(struct segvec *v, uint32_t n);

static inline int segvec_reserve(struct segvec *v, uint32_t n)
{
    if ((uint64_t)v->len + n <= ((uint64_t)v->nchunks << v->shift))
        return 0;
    return segvec_reserve_slow(v, n);
}

/* Appends a zeroed element and returns it; its index is len - 1. Room must be reserved. */
void *segvec_push(struct segvec *v);

/* Bytes held, for stats. */
size_t segvec_bytes(const struct segvec *v);

static inline void *segvec_at(const struct segvec *v, uint32_t i)
{
    return v->chunks[i >> v->shift] + (size_t)(i & ((1u << v->shift) - 1)) * v->elsize;
}

#endif
