/* Big arrays (bigarr_*): arrays of 2 MiB or more live in mappings of their own, 2 MiB-aligned and
 * marked MADV_HUGEPAGE, so that the kernel may back them with huge pages (a fork copies one page
 * table entry per 2 MiB instead of 512) and a resize moves page tables (mremap) instead of
 * copying bytes: growing a 100 MB array costs microseconds, not tens of milliseconds.
 * Smaller arrays come from malloc. The caller keeps the size and passes it back, exactly as it was
 * allocated or last resized, to bigarr_resize and bigarr_free. */
#ifndef CORE_BIGARR_H
#define CORE_BIGARR_H

#include <stddef.h>

#define BIGARR_HUGE ((size_t)2 << 20) /* from this size on: a mapping of its own */

/* bytes zeroed bytes (pages come zero on first touch: untouched ones cost no RSS), or NULL.
 * bytes 0 gives a valid pointer to free. Owned by the caller: bigarr_free(p, bytes). */
void *bigarr_alloc(size_t bytes);

/* The same for an array first touched at random places (a hash table): no MADV_HUGEPAGE, since a
 * huge page's first touch zeroes 2 MiB at once, and a fresh table's first few hundred random
 * writes would fault in all of it within one apply chunk (20 ms of CPU for the edge map at 7.7 M
 * events, against 8 ms with 4 KiB pages). Resized and freed as any other. */
void *bigarr_alloc_random(size_t bytes);

/* Resizes p (from bigarr_alloc or bigarr_resize, of old bytes) to bytes; a growth's new bytes
 * are zero. Returns the array, which may have moved, or NULL with p untouched. */
void *bigarr_resize(void *p, size_t old, size_t bytes);

/* Frees p of bytes (NULL: nothing). */
void bigarr_free(void *p, size_t bytes);

/* Bytes in big arrays' mappings now, process-wide (each array's size rounded up to 2 MiB):
 * what an allocator's own figure (jemalloc's stats.allocated) no longer counts. */
size_t bigarr_mapped(void);

#endif
