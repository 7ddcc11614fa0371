/* Top-k index over items whose keys change: a min-heap of the best `cap` items plus an upper
 * bound on the key of every item outside it. Items in the heap whose key beats that bound are
 * exactly the best items, in order, whatever the keys did (grew, shrank, or items went away);
 * when too few do, the owner rebuilds the heap with a full scan. For keys that only grow the
 * bound never overtakes the heap, so rebuilds only follow removals. Updates cost O(1) for an item
 * that stays outside (a compare with the heap's minimum) and O(log cap) inside. */
#ifndef CORE_TOPK_H
#define CORE_TOPK_H

#include <stddef.h>
#include <stdint.h>

struct topk_ent {
    uint64_t key;
    uint32_t item;
    uint32_t pslot; /* the item's slot in the position table, so a move needs no hashing */
};

struct topk {
    struct topk_ent *heap; /* min-heap: heap[0] is the worst item kept */
    uint32_t n, cap;
    int monotone;     /* keys never shrink: items outside need no membership probe */
    int has_out;      /* some item has ever been left out since the last rebuild */
    uint64_t out_key; /* (out_key, out_item): every item outside ranks at or below it */
    uint32_t out_item;
    uint32_t *pos_item, *pos_idx; /* item -> heap index, open addressing over 2*cap slots */
    uint32_t pos_mask;
};

/* Ordering: larger key first; on equal keys, the smaller item id first. */
static inline int topk_better(uint64_t ka, uint32_t ia, uint64_t kb, uint32_t ib)
{
    return ka > kb || (ka == kb && ia < ib);
}

/* 0 or -ENOMEM. */
int topk_init(struct topk *t, uint32_t cap, int monotone);
void topk_destroy(struct topk *t);

/* Records item's new key. */
void topk_update(struct topk *t, uint32_t item, uint64_t key);

/* Forgets item (it no longer exists). */
void topk_remove(struct topk *t, uint32_t item);

/* Rebuild: topk_reset(), then topk_offer() every live item once. */
void topk_reset(struct topk *t);
void topk_offer(struct topk *t, uint32_t item, uint64_t key);

/* Copies the heap into out (room for t->cap), best first, and returns how many of those are
 * certainly the best items overall (a prefix of out). *total gets the number copied. */
uint32_t topk_sorted(const struct topk *t, struct topk_ent *out, uint32_t *total);

#endif
