/* Big arrays (see bigarr.h): mappings of their own, aligned to 2 MiB and advised MADV_HUGEPAGE,
 * grown by mremap; smaller ones from malloc. */
#include "core/bigarr.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static atomic_size_t mapped; /* bytes in big arrays' mappings (relaxed: a figure for stats) */

size_t bigarr_mapped(void)
{
    return atomic_load_explicit(&mapped, memory_order_relaxed);
}

static void count(size_t add, size_t sub)
{
    atomic_fetch_add_explicit(&mapped, add, memory_order_relaxed);
    atomic_fetch_sub_explicit(&mapped, sub, memory_order_relaxed);
}

/* A big array's mapping: its bytes rounded up to 2 MiB, so that it is huge pages end to end. */
static size_t map_len(size_t bytes)
{
    return (bytes + BIGARR_HUGE - 1) & ~(BIGARR_HUGE - 1);
}

/* len bytes (a multiple of 2 MiB) of address space at a 2 MiB boundary: over-map by 2 MiB and
 * trim both ends. prot PROT_NONE only reserves it (for a move's target). NULL on failure. */
static char *map_aligned(size_t len, int prot)
{
    size_t span = len + BIGARR_HUGE;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (prot == PROT_NONE ? MAP_NORESERVE : 0);
    char *p = mmap(NULL, span, prot, flags, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    char *a = (char *)(((uintptr_t)p + BIGARR_HUGE - 1) & ~(uintptr_t)(BIGARR_HUGE - 1));
    if (a > p)
        munmap(p, (size_t)(a - p));
    if (a + len < p + span)
        munmap(a + len, (size_t)(p + span - (a + len)));
    return a;
}

static void *alloc(size_t bytes, int huge)
{
    if (bytes < BIGARR_HUGE)
        return calloc(bytes ? bytes : 1, 1);
    if (bytes > SIZE_MAX - 2 * BIGARR_HUGE)
        return NULL;
    size_t len = map_len(bytes);
    char *a = map_aligned(len, PROT_READ | PROT_WRITE);
    if (!a)
        return NULL;
    if (huge)
        madvise(a, len, MADV_HUGEPAGE); /* a hint: without THP the array works the same */
    count(len, 0);
    return a;
}

void *bigarr_alloc(size_t bytes)
{
    return alloc(bytes, 1);
}

void *bigarr_alloc_random(size_t bytes)
{
    return alloc(bytes, 0);
}

void bigarr_free(void *p, size_t bytes)
{
    if (!p)
        return;
    if (bytes < BIGARR_HUGE)
        free(p);
    else {
        munmap(p, map_len(bytes));
        count(0, map_len(bytes));
    }
}

/* Both sizes big: shrink by unmapping the tail; grow in place when the addresses after the
 * mapping are free, else move the page tables to a fresh 2 MiB-aligned range (huge pages move
 * whole). Nothing is copied either way. */
static void *resize_mapped(char *p, size_t old, size_t bytes)
{
    size_t ol = map_len(old), nl = map_len(bytes);
    if (bytes < old) /* what a later growth gets back must be zero */
        memset(p + bytes, 0, (old < nl ? old : nl) - bytes);
    if (nl == ol)
        return p;
    if (nl < ol) {
        munmap(p + nl, ol - nl);
        count(0, ol - nl);
        return p;
    }
    void *q = mremap(p, ol, nl, 0);
    if (q != MAP_FAILED) {
        count(nl - ol, 0);
        return q;
    }
    char *t = map_aligned(nl, PROT_NONE);
    if (!t)
        return NULL;
    q = mremap(p, ol, nl, MREMAP_MAYMOVE | MREMAP_FIXED, t);
    if (q == MAP_FAILED) {
        munmap(t, nl);
        return NULL;
    }
    count(nl - ol, 0);
    return q; /* the mapping keeps its MADV_HUGEPAGE mark, the grown part with it */
}

void *bigarr_resize(void *p, size_t old, size_t bytes)
{
    if (!p)
        return bigarr_alloc(bytes);
    if (old >= BIGARR_HUGE && bytes >= BIGARR_HUGE) {
        if (bytes > SIZE_MAX - 2 * BIGARR_HUGE)
            return NULL;
        return resize_mapped(p, old, bytes);
    }
    if (old < BIGARR_HUGE && bytes < BIGARR_HUGE) {
        char *q = realloc(p, bytes ? bytes : 1);
        if (q && bytes > old)
            memset(q + old, 0, bytes - old);
        return q;
    }
    /* across the 2 MiB line: one copy of less than 2 MiB */
    char *q = bigarr_alloc(bytes);
    if (!q)
        return NULL;
    memcpy(q, p, old < bytes ? old : bytes);
    bigarr_free(p, old);
    return q;
}
