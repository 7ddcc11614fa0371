/* String interning (see intern.h). A slot keeps the hash bits its position does not give, so
 * that a probe compares strings only on a likely match; growing the table re-reads the strings
 * in id order (the arena in the order it was written), which costs little beside the random
 * writes into the new table that a copy makes anyway. */
#include "core/intern.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/bigarr.h"
#include "core/hash.h"

#define CHUNK_SHIFT INTERN_CHUNK_SHIFT
#define CHUNK_SIZE  (1u << CHUNK_SHIFT)
#define MAX_CHUNKS  4096u /* refs are 32-bit byte offsets: 4 GiB of strings */
#define MAX_IDS     0x7fffffffu
/* Slots copied per string reserved while the table grows: the copy ends after 1/64 of the old
 * size in strings, twice as soon as the room between 23/32 and 3/4 full allows. */
#define GROW_STEP 64
/* Before the copy starts, the new table's pages (of 1024 slots) are written one per
 * TOUCH_STRINGS strings reserved: the copy writes it at random places, so that otherwise its
 * first steps would each fault in pages by the thousand (44 ms for a 512-string step at 6 M ids).
 * At 4: a 64 MB table is written after 64 K strings, the copy done after 94 K more, within the
 * 262 K strings from 23/32 to 3/4 full. */
#define PAGE_SLOTS     1024u
#define TOUCH_STRINGS  4u
/* Smaller tables grow at once at 3/4 full: copying them takes well under a millisecond. */
#define GROW_STEPWISE_FROM (1u << 16)

int intern_init(struct intern *t)
{
    memset(t, 0, sizeof(*t));
    t->slots = bigarr_alloc_random(1024 * sizeof(uint32_t));
    if (!t->slots)
        return -ENOMEM;
    t->mask = 1023;
    t->free_head = INTERN_NONE;
    t->chunk_used = CHUNK_SIZE; /* forces a chunk on the first add */
    return 0;
}

void intern_destroy(struct intern *t)
{
    for (uint32_t i = 0; i < t->nchunks; i++)
        free(t->chunks[i]);
    free(t->chunks);
    free(t->chunk_live);
    bigarr_free(t->slots, ((size_t)t->mask + 1) * sizeof(uint32_t));
    if (t->next)
        bigarr_free(t->next, ((size_t)t->next_mask + 1) * sizeof(uint32_t));
    free(t->gone);
    bigarr_free(t->refs, (size_t)t->refs_cap * sizeof(uint32_t));
    memset(t, 0, sizeof(*t));
}

static const char *ref_ptr(const struct intern *t, uint32_t ref, uint32_t *len)
{
    const unsigned char *p =
        (const unsigned char *)t->chunks[ref >> CHUNK_SHIFT] + (ref & (CHUNK_SIZE - 1));
    if (p[0] < 0x80) {
        *len = p[0];
        return (const char *)p + 1;
    }
    *len = (uint32_t)(p[0] & 0x7f) << 8 | p[1];
    return (const char *)p + 2;
}

/* The slot of id + 1 in a table of mask, for a string of hash bits h. */
static uint32_t make_slot(uint32_t h, uint32_t mask, uint32_t id)
{
    return (h & ~mask) | (id + 1);
}

/* The 32 hash bits of live id's string. */
static uint32_t id_hash(const struct intern *t, uint32_t id)
{
    uint32_t len;
    const char *s = ref_ptr(t, t->refs[id], &len);
    return intern_hash32(hash_bytes(s, len));
}

uint32_t intern_find(const struct intern *t, const char *s, uint32_t len, uint64_t hash)
{
    uint32_t h = intern_hash32(hash), mask = t->mask, fp = h & ~mask;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t slot = t->slots[i];
        if (!slot)
            return INTERN_NONE;
        if ((slot & ~mask) != fp)
            continue;
        uint32_t id = (slot & mask) - 1, l;
        const char *p = ref_ptr(t, t->refs[id], &l);
        if (l == len && memcmp(p, s, len) == 0)
            return id;
    }
}

uint32_t intern_peek(const struct intern *t, uint64_t hash)
{
    uint32_t h = intern_hash32(hash), mask = t->mask, fp = h & ~mask;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t slot = t->slots[i];
        if (!slot)
            return INTERN_NONE;
        if ((slot & ~mask) == fp)
            return (slot & mask) - 1;
    }
}

void intern_prefetch_str(const struct intern *t, uint32_t id)
{
    /* id is a guess: a deleted one's offset is a free-list link, its chunk may be gone */
    uint32_t ref = t->refs[id], ci = ref >> CHUNK_SHIFT;
    if (ci < t->nchunks && t->chunks[ci])
        __builtin_prefetch(t->chunks[ci] + (ref & (CHUNK_SIZE - 1)));
}

/* Files id (hash bits h) in a table of mask: at the first empty slot from its home. */
static void place(uint32_t *slots, uint32_t mask, uint32_t h, uint32_t id)
{
    uint32_t j = h & mask;
    while (slots[j])
        j = (j + 1) & mask;
    slots[j] = make_slot(h, mask, id);
}

/* Allocates the table twice the size; the live ids are copied into it by copy_slots, in id
 * order. Ids deleted now are marked in gone (none is deleted while a growth is under way:
 * intern_del finishes it first). */
static int begin_growth(struct intern *t)
{
    uint64_t n = ((uint64_t)t->mask + 1) * 2;
    if (n > ((uint64_t)1 << 32))
        return -E2BIG;
    t->gone = NULL;
    if (t->nfree) {
        if (!(t->gone = calloc((size_t)t->count + 1, 1)))
            return -ENOMEM;
        for (uint32_t x = t->free_head, k = 0; x != INTERN_NONE && k < t->count; k++) {
            t->gone[x] = 1;
            x = t->refs[x];
        }
    }
    if (!(t->next = bigarr_alloc_random(n * sizeof(uint32_t)))) {
        free(t->gone);
        t->gone = NULL;
        return -ENOMEM;
    }
    t->next_mask = (uint32_t)(n - 1);
    t->copied = 0;
    t->copy_end = t->count;
    t->touched = 0;
    return 0;
}

/* Copies up to k more ids into the next table; once all are, it replaces the current one. */
static void copy_slots(struct intern *t, uint64_t k)
{
    uint64_t credits = ((uint64_t)t->next_mask + 1) / PAGE_SLOTS * TOUCH_STRINGS;
    if (k != UINT64_MAX && t->touched < credits) { /* k / GROW_STEP strings reserved */
        uint64_t to = t->touched + (k + GROW_STEP - 1) / GROW_STEP;
        for (; t->touched < to && t->touched < credits; t->touched++)
            if (t->touched % TOUCH_STRINGS == 0) /* new ids may be there already: kept */
                __atomic_fetch_or(&t->next[(size_t)(t->touched / TOUCH_STRINGS) * PAGE_SLOTS], 0,
                                  __ATOMIC_RELAXED);
        return;
    }
    uint64_t end = t->copy_end;
    if (k < end - t->copied)
        end = t->copied + k;
    /* in blocks: the hashes first, with their home slots fetched, then the places, so that
     * the random writes into the new table wait on many loads at once rather than on one */
    uint32_t hs[16];
    for (uint32_t id = t->copied; id < end;) {
        uint32_t n = end - id < 16 ? (uint32_t)(end - id) : 16;
        for (uint32_t j = 0; j < n; j++) {
            hs[j] = t->gone && t->gone[id + j] ? 0 : id_hash(t, id + j);
            __builtin_prefetch(&t->next[hs[j] & t->next_mask], 1);
        }
        for (uint32_t j = 0; j < n; j++)
            if (!t->gone || !t->gone[id + j])
                place(t->next, t->next_mask, hs[j], id + j);
        id += n;
    }
    t->copied = (uint32_t)end;
    if (end < t->copy_end)
        return;
    bigarr_free(t->slots, ((size_t)t->mask + 1) * sizeof(uint32_t));
    free(t->gone);
    t->gone = NULL;
    t->slots = t->next;
    t->mask = t->next_mask;
    t->next = NULL;
    t->next_mask = t->copied = t->copy_end = t->touched = 0;
}

static int grow_slots(struct intern *t)
{
    int rc = t->next ? 0 : begin_growth(t);
    if (!rc)
        copy_slots(t, UINT64_MAX);
    return rc;
}

/* refs grow by 3/2 without a copy once they pass 2 MiB (bigarr: mremap), so that no reservation
 * waits for tens of megabytes to be copied (20 ms at 5 M ids). */
static int grow_refs(struct intern *t, uint32_t need)
{
    uint64_t cap = t->refs_cap ? t->refs_cap : 1024;
    while (cap < need)
        cap += cap / 2;
    uint32_t *r = bigarr_resize(t->refs, (size_t)t->refs_cap * sizeof(uint32_t),
                                cap * sizeof(uint32_t));
    if (!r)
        return -ENOMEM;
    t->refs = r;
    t->refs_cap = (uint32_t)cap;
    return 0;
}

static int grow_chunks(struct intern *t)
{
    uint32_t cap = t->chunks_cap ? t->chunks_cap * 2 : 16;
    char **c = realloc(t->chunks, cap * sizeof(*c));
    if (!c)
        return -ENOMEM;
    t->chunks = c;
    uint32_t *l = realloc(t->chunk_live, cap * sizeof(*l));
    if (!l)
        return -ENOMEM;
    t->chunk_live = l;
    t->chunks_cap = cap;
    return 0;
}

/* A fresh chunk becomes the current one, in the place of one given back if there is one (refs
 * hold a chunk index in 12 bits, so places must be reused). */
static int add_chunk(struct intern *t)
{
    uint32_t at = 0;
    while (at < t->nchunks && t->chunks[at])
        at++;
    if (at == MAX_CHUNKS)
        return -E2BIG;
    if (at == t->chunks_cap) {
        int rc = grow_chunks(t);
        if (rc)
            return rc;
    }
    char *chunk = malloc(CHUNK_SIZE);
    if (!chunk)
        return -ENOMEM;
    if (at == t->nchunks)
        t->nchunks++;
    t->chunks[at] = chunk;
    t->chunk_live[at] = 0;
    /* the chunk left behind may hold only deleted strings by now */
    if (t->nalloc && t->cur != at && t->chunk_live[t->cur] == 0) {
        free(t->chunks[t->cur]);
        t->chunks[t->cur] = NULL;
        t->nalloc--;
    }
    t->nalloc++;
    t->cur = at;
    t->chunk_used = 0;
    return 0;
}

int intern_reserve_slow(struct intern *t, uint32_t n, uint32_t bytes)
{
    uint64_t want = (uint64_t)intern_live(t) + n;
    uint64_t ids = (uint64_t)t->count + n; /* as if no deleted id were reused */
    if (ids > MAX_IDS)
        return -E2BIG;
    /* Past 23/32 full, a large table starts growing: each string reserved copies GROW_STEP
     * slots into the table twice the size, which replaces it once all are copied, well before
     * the 3/4 that no table passes (were it reached first, the rest would be copied at once). */
    if (t->next)
        copy_slots(t, (uint64_t)n * GROW_STEP);
    else if (want * 32 > ((uint64_t)t->mask + 1) * 23 && t->mask >= GROW_STEPWISE_FROM - 1 &&
             want * 4 <= ((uint64_t)t->mask + 1) * 3 && begin_growth(t) == 0)
        copy_slots(t, (uint64_t)n * GROW_STEP);
    while (want * 4 > ((uint64_t)t->mask + 1) * 3) {
        int rc = grow_slots(t);
        if (rc)
            return rc;
    }
    if (ids > t->refs_cap) {
        int rc = grow_refs(t, (uint32_t)ids);
        if (rc)
            return rc;
    }
    /* each string needs its length prefix; n strings may each waste the tail of a chunk, so
     * reserve conservatively: a fresh chunk if the current one cannot take them all. */
    uint64_t need = (uint64_t)bytes + 2ull * n;
    if (t->chunk_used + need > CHUNK_SIZE) {
        if (need > CHUNK_SIZE)
            return -E2BIG;
        return add_chunk(t);
    }
    return 0;
}

uint32_t intern_add(struct intern *t, const char *s, uint32_t len, uint64_t hash)
{
    uint32_t ref = (t->cur << CHUNK_SHIFT) | t->chunk_used, used = t->chunk_used;
    unsigned char *p = (unsigned char *)t->chunks[t->cur] + t->chunk_used;
    if (len < 0x80) {
        *p++ = (unsigned char)len;
        t->chunk_used += 1;
    } else {
        *p++ = (unsigned char)(0x80 | (len >> 8));
        *p++ = (unsigned char)len;
        t->chunk_used += 2;
    }
    memcpy(p, s, len);
    t->chunk_used += len;
    t->chunk_live[t->cur] += t->chunk_used - used;

    uint32_t id;
    if (t->free_head != INTERN_NONE) {
        id = t->free_head;
        t->free_head = t->refs[id];
        t->nfree--;
    } else {
        id = t->count++;
    }
    t->refs[id] = ref;
    uint32_t h = intern_hash32(hash);
    place(t->slots, t->mask, h, id);
    if (t->next) {
        if (id < t->copied || id >= t->copy_end)
            place(t->next, t->next_mask, h, id);
        else if (t->gone)
            t->gone[id] = 0; /* a reused id not yet copied will be */
    }
    return id;
}

int intern_get(struct intern *t, const char *s, uint32_t len, uint32_t *id, int *created)
{
    if (len > INTERN_MAX_LEN)
        return -E2BIG;
    uint64_t hash = hash_bytes(s, len);
    uint32_t found = intern_find(t, s, len, hash);
    if (found != INTERN_NONE) {
        *id = found;
        *created = 0;
        return 0;
    }
    int rc = intern_reserve(t, 1, len);
    if (rc)
        return rc;
    *id = intern_add(t, s, len, hash);
    *created = 1;
    return 0;
}

const char *intern_str(const struct intern *t, uint32_t id, uint32_t *len)
{
    return ref_ptr(t, t->refs[id], len);
}

/* Linear probing's deletion without tombstones: each later slot of the cluster that may live
 * at the hole (its home is not cyclically within (hole, slot]) moves into it. A slot's home is
 * read back from its string. */
static void remove_slot(const struct intern *t, uint32_t *slots, uint32_t mask, uint32_t i)
{
    for (uint32_t j = i;;) {
        j = (j + 1) & mask;
        if (!slots[j])
            break;
        uint32_t k = id_hash(t, (slots[j] & mask) - 1) & mask;
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays)
            continue;
        slots[i] = slots[j];
        i = j;
    }
    slots[i] = 0;
}

static uint32_t string_bytes(uint32_t len)
{
    return len + (len < 0x80 ? 1 : 2);
}

void intern_del(struct intern *t, uint32_t id)
{
    if (t->next)
        copy_slots(t, UINT64_MAX);
    uint32_t len;
    const char *s = intern_str(t, id, &len);
    uint32_t h = intern_hash32(hash_bytes(s, len));
    uint32_t want = make_slot(h, t->mask, id);
    uint32_t i = h & t->mask;
    while (t->slots[i] != want)
        i = (i + 1) & t->mask;
    remove_slot(t, t->slots, t->mask, i);

    uint32_t ci = t->refs[id] >> CHUNK_SHIFT;
    t->chunk_live[ci] -= string_bytes(len);
    if (t->chunk_live[ci] == 0 && ci != t->cur) {
        free(t->chunks[ci]);
        t->chunks[ci] = NULL;
        t->nalloc--;
    }
    t->refs[id] = t->free_head;
    t->free_head = id;
    t->nfree++;
}

/* Per id: 1 when deleted (on the free list). NULL without memory. */
static uint8_t *deleted_ids(const struct intern *t)
{
    uint8_t *d = calloc((size_t)t->count + 1, 1);
    for (uint32_t x = t->free_head, k = 0; d && x != INTERN_NONE && k < t->count; k++) {
        d[x] = 1;
        x = t->refs[x];
    }
    return d;
}

/* Copies live string id into the current chunk (starting a new one when it is full). */
static int move_string(struct intern *t, uint32_t id)
{
    uint32_t len, old = t->refs[id], from = old >> CHUNK_SHIFT;
    const char *s = ref_ptr(t, old, &len);
    uint32_t need = string_bytes(len);
    if (t->chunk_used + need > CHUNK_SIZE) {
        int rc = add_chunk(t);
        if (rc)
            return rc;
    }
    char *to = t->chunks[t->cur] + t->chunk_used;
    memcpy(to, s - (need - len), need); /* the length prefix and the bytes */
    t->refs[id] = (t->cur << CHUNK_SHIFT) | t->chunk_used;
    t->chunk_used += need;
    t->chunk_live[t->cur] += need;
    t->chunk_live[from] -= need;
    if (t->chunk_live[from] == 0) {
        free(t->chunks[from]);
        t->chunks[from] = NULL;
        t->nalloc--;
    }
    return 0;
}

int intern_compact(struct intern *t)
{
    uint64_t live = 0;
    for (uint32_t c = 0; c < t->nchunks; c++)
        live += t->chunks[c] ? t->chunk_live[c] : 0;
    if ((uint64_t)t->nalloc * CHUNK_SIZE <= 2 * live + 4ull * CHUNK_SIZE)
        return 0;
    uint32_t nsparse = t->nchunks;
    uint8_t *sparse = calloc((size_t)nsparse + 1, 1), *deleted = deleted_ids(t);
    int rc = sparse && deleted ? 0 : -ENOMEM;
    for (uint32_t c = 0; rc == 0 && c < nsparse; c++)
        sparse[c] = t->chunks[c] && c != t->cur && t->chunk_live[c] <= CHUNK_SIZE / 2;
    for (uint32_t id = 0; rc == 0 && id < t->count; id++) {
        uint32_t c = t->refs[id] >> CHUNK_SHIFT;
        if (!deleted[id] && c < nsparse && sparse[c] && c != t->cur)
            rc = move_string(t, id);
    }
    free(sparse);
    free(deleted);
    return rc;
}

int intern_rebuild_free(struct intern *t, uint32_t head)
{
    uint8_t *live = calloc((size_t)t->count + 1, 1);
    if (!live)
        return -ENOMEM;
    uint32_t nlive = 0;
    for (uint64_t i = 0; i <= t->mask; i++)
        if (t->slots[i]) {
            live[(t->slots[i] & t->mask) - 1] = 1;
            nlive++;
        }
    for (uint32_t c = 0; c < t->nchunks; c++)
        t->chunk_live[c] = 0;
    for (uint32_t id = 0; id < t->count; id++) {
        if (live[id]) {
            uint32_t len;
            intern_str(t, id, &len);
            t->chunk_live[t->refs[id] >> CHUNK_SHIFT] += string_bytes(len);
        }
    }
    /* the chain as it was saved, so that ids are reused in the order the saved table would
     * have reused them: it must link every deleted id once, and nothing else */
    t->free_head = head;
    t->nfree = 0;
    int rc = 0;
    for (uint32_t x = head; x != INTERN_NONE; x = t->refs[x]) {
        if (x >= t->count || live[x]) {
            rc = -EINVAL; /* stop before refs[x] is read: x may be past the table */
            break;
        }
        live[x] = 2; /* a cycle comes back to it */
        t->nfree++;
    }
    if (rc == 0 && nlive + t->nfree != t->count)
        rc = -EINVAL;
    if (rc) {
        t->free_head = INTERN_NONE;
        t->nfree = 0;
    }
    free(live);
    return rc;
}

uint32_t *intern_hashes(const struct intern *t)
{
    uint32_t *hs = malloc(((size_t)t->count + 1) * sizeof(uint32_t));
    uint8_t *deleted = t->nfree ? deleted_ids(t) : NULL;
    if (!hs || (t->nfree && !deleted)) {
        free(hs);
        return NULL;
    }
    for (uint32_t id = 0; id < t->count; id++)
        hs[id] = deleted && deleted[id] ? 0 : id_hash(t, id);
    free(deleted);
    return hs;
}

void intern_export_slots(const struct intern *t, const uint32_t *hashes, uint64_t *out,
                         uint32_t from, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        uint32_t slot = t->slots[from + k], id = (slot & t->mask) - 1;
        out[k] = slot ? (uint64_t)(hashes ? hashes[id] : id_hash(t, id)) << 32 | (id + 1) : 0;
    }
}

size_t intern_bytes(const struct intern *t)
{
    size_t next = t->next ? ((size_t)t->next_mask + 1) * sizeof(uint32_t) : 0;
    size_t gone = t->gone ? (size_t)t->copy_end + 1 : 0;
    return ((size_t)t->mask + 1) * sizeof(uint32_t) + next + gone +
           (size_t)t->refs_cap * sizeof(uint32_t) + (size_t)t->nalloc * CHUNK_SIZE;
}
