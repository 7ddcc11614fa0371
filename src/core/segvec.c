/* Segmented arrays (see segvec.h). */
#include "core/segvec.h"

#include <errno.h>
#include <stdlib.h>

#include "core/bigarr.h"

void segvec_init(struct segvec *v, uint32_t elsize, uint8_t shift)
{
    *v = (struct segvec){.elsize = elsize, .shift = shift};
}

static size_t chunk_bytes(const struct segvec *v)
{
    return ((size_t)1 << v->shift) * v->elsize;
}

void segvec_destroy(struct segvec *v)
{
    for (uint32_t i = 0; i < v->nchunks; i++)
        bigarr_free(v->chunks[i], chunk_bytes(v));
    free(v->chunks);
    v->chunks = NULL;
    v->nchunks = v->chunks_cap = v->len = 0;
}

static int add_chunk(struct segvec *v)
{
    if (v->nchunks == v->chunks_cap) {
        uint32_t cap = v->chunks_cap ? v->chunks_cap * 2 : 16;
        char **c = realloc(v->chunks, cap * sizeof(*c));
        if (!c)
            return -ENOMEM;
        v->chunks = c;
        v->chunks_cap = cap;
    }
    char *chunk = bigarr_alloc(chunk_bytes(v)); /* 2 MiB ones: a huge page each */
    if (!chunk)
        return -ENOMEM;
    v->chunks[v->nchunks++] = chunk;
    return 0;
}

int segvec_reserve_slow(struct segvec *v, uint32_t n)
{
    uint64_t want = (uint64_t)v->len + n;
    if (want > UINT32_MAX)
        return -ENOMEM;
    while (((uint64_t)v->nchunks << v->shift) < want) {
        int rc = add_chunk(v);
        if (rc)
            return rc;
    }
    return 0;
}

void *segvec_push(struct segvec *v)
{
    return segvec_at(v, v->len++);
}

size_t segvec_bytes(const struct segvec *v)
{
    return ((size_t)v->nchunks << v->shift) * v->elsize + v->chunks_cap * sizeof(char *);
}
