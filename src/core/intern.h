/* String interning: each distinct byte string gets a dense uint32 id (0, 1, 2, ...) once, so the
 * engine's records can be plain arrays indexed by id. Strings live in a chunked arena; the table
 * is open addressing with linear probing over 4-byte slots: the id + 1 in the low bits (as many
 * as the table has slot-index bits, so that it always fits: a table is never 3/4 full) and the
 * 32-bit hash's bits above those in the rest. The hash's low bits are the home slot, so a slot
 * keeps exactly the hash bits that its position does not say (8 of them at 2^24 slots): a probe
 * compares strings only on a likely match, at half the bytes per slot of a full hash beside the
 * id (-6.7 bytes per post at 10 M post ids). What a slot does not keep (its home) is read back
 * from its string when a table grows, a string is deleted, or a table is saved.
 * A deleted string's id is handed out again (last freed, first reused) and an arena chunk whose
 * strings are all deleted goes back to the allocator, so a table under retention stays bounded. */
#ifndef CORE_INTERN_H
#define CORE_INTERN_H

#include <stddef.h>
#include <stdint.h>

#define INTERN_NONE        UINT32_MAX
#define INTERN_CHUNK_SHIFT 20    /* the arena is in 1 MiB chunks */
#define INTERN_MAX_LEN     16383 /* longest string the arena takes (2-byte length prefix) */

struct intern {
    uint32_t *slots; /* 0: empty; else (hash32 & ~mask) | (id + 1) */
    uint32_t mask;   /* slot count - 1 (a power of two) */
    /* the table twice the size being filled beside slots, which alone answers lookups until
     * the last id is copied (see intern_reserve_slow); NULL when no growth is under way */
    uint32_t *next;
    uint32_t next_mask, copied; /* ids [0, copied) are in next, if live */
    uint32_t copy_end;          /* ids from here on were added during the growth: in both */
    uint32_t touched; /* strings reserved since the growth began, while next's pages are written */
    uint8_t *gone;              /* during a growth, per id below copy_end: 1 if deleted */
    uint32_t count;             /* ids handed out: live ones and deleted ones */
    uint32_t nfree, free_head;  /* deleted ids, linked through refs[] (INTERN_NONE ends it) */
    uint32_t *refs;             /* id -> arena offset (a deleted id: the next deleted one) */
    uint32_t refs_cap;
    char **chunks;        /* arena: 1 MiB chunks, a string never spans two; NULL: given back */
    uint32_t *chunk_live; /* per chunk: bytes of strings not deleted */
    uint32_t nchunks, chunks_cap, chunk_used;
    uint32_t cur;    /* the chunk strings are added to */
    uint32_t nalloc; /* chunks held (not NULL) */
};

/* Strings present: ids handed out less the deleted ones. */
static inline uint32_t intern_live(const struct intern *t)
{
    return t->count - t->nfree;
}

/* 0 or -ENOMEM; an empty table that grows as needed. */
int intern_init(struct intern *t);
void intern_destroy(struct intern *t);

static inline uint32_t intern_hash32(uint64_t hash)
{
    return (uint32_t)(hash >> 32);
}

/* The id of s, or INTERN_NONE. hash = hash_bytes(s, len). */
uint32_t intern_find(const struct intern *t, const char *s, uint32_t len, uint64_t hash);

/* Makes room for n more strings of at most bytes bytes in all, so that intern_add() cannot fail.
 * 0, -ENOMEM, or -E2BIG when the table is full (2^31 ids or 4 GiB of strings). A large table
 * grows a step at a time past 23/32 full (a slice of the copy per string reserved), so that no
 * single call pays for the whole copy; it is never more than 3/4 full. */
int intern_reserve_slow(struct intern *t, uint32_t n, uint32_t bytes);

static inline int intern_reserve(struct intern *t, uint32_t n, uint32_t bytes)
{
    uint64_t want = (uint64_t)intern_live(t) + n;
    if (want * 32 <= ((uint64_t)t->mask + 1) * 23 && (uint64_t)t->count + n <= t->refs_cap &&
        (uint64_t)t->chunk_used + bytes + 2ull * n <= (1u << INTERN_CHUNK_SHIFT))
        return 0;
    return intern_reserve_slow(t, n, bytes);
}

/* Adds s (not yet present, len <= INTERN_MAX_LEN) and returns its id: the last deleted one if
 * any, else a new one. Room must be reserved. */
uint32_t intern_add(struct intern *t, const char *s, uint32_t len, uint64_t hash);

/* Finds or adds s; *created tells which. 0 or a negative errno from intern_reserve. */
int intern_get(struct intern *t, const char *s, uint32_t len, uint32_t *id, int *created);

/* Deletes the string of live id: lookups no longer find it, its id goes on the free list and its
 * chunk back to the allocator once nothing in it is live. Never fails; finishes a growth under
 * way first (deleting across a half-copied table is not worth its cases). */
void intern_del(struct intern *t, uint32_t id);

/* When the arena holds more than twice the bytes of its live strings (deleted ones leave holes
 * that pin their chunks), moves the live strings out of the chunks at most half live into fresh
 * ones and gives the emptied chunks back. Ids and slots do not change; offsets do, so strings
 * handed out before are invalid after. O(ids) when it runs. 0 or -ENOMEM (what moved stays
 * moved; the rest waits for the next call). */
int intern_compact(struct intern *t);

/* For a table read back from a file: adopts the free list saved as its head and the links in
 * refs[] (so that ids are reused in the order the saved table would have), after checking that
 * it links exactly the ids no slot holds, each once; recounts the per-chunk live bytes from the
 * live ids' strings. 0, -EINVAL (a broken chain: the list is left empty) or -ENOMEM. */
int intern_rebuild_free(struct intern *t, uint32_t head);

/* The string of id (not NUL-terminated), owned by the table; *len gets its length. */
const char *intern_str(const struct intern *t, uint32_t id, uint32_t *len);

/* Hints the CPU to fetch the slot a lookup of hash will start at. */
static inline void intern_prefetch(const struct intern *t, uint64_t hash)
{
    __builtin_prefetch(&t->slots[intern_hash32(hash) & t->mask]);
}

/* Snapshot files hold a table's slots as 8 bytes each, hash32 << 32 | (id + 1), at the same
 * places (a table with full hashes, filled and emptied in the same order, would have them
 * there). intern_export_slots writes slots [from, from + n) so; each live one's hash comes from
 * hashes[id] (intern_hashes), or with hashes NULL from its string, read in slot order (a random
 * walk of the arena: twice as slow at 10 M ids). intern_import_slot turns a file's slot back
 * into a slot of a table of mask. */
void intern_export_slots(const struct intern *t, const uint32_t *hashes, uint64_t *out,
                         uint32_t from, uint32_t n);

/* The hash bits of every id's string, by id (0 for a deleted id), computed in id order: a
 * malloc'd array of count entries, the caller's to free, or NULL without memory. */
uint32_t *intern_hashes(const struct intern *t);

static inline uint32_t intern_import_slot(uint32_t mask, uint64_t file_slot)
{
    return file_slot ? ((uint32_t)(file_slot >> 32) & ~mask) | ((uint32_t)file_slot & mask) : 0;
}

/* The id in the first slot whose hash bits match, without comparing strings: a guess for
 * prefetching, or INTERN_NONE. */
uint32_t intern_peek(const struct intern *t, uint64_t hash);

/* Hints the CPU to fetch the string of id (its arena offset must be cached or coming). */
void intern_prefetch_str(const struct intern *t, uint32_t id);

size_t intern_bytes(const struct intern *t);

#endif
