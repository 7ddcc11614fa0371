/* Top-k index (see topk.h). The heap keeps positions in a small side table so that an item's
 * key can be changed in place; the table is sized for the heap, not for all items, so it stays
 * in cache. */
#include "core/topk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"

#define NO_ITEM UINT32_MAX

int topk_init(struct topk *t, uint32_t cap, int monotone)
{
    memset(t, 0, sizeof(*t));
    if (cap == 0 || cap > (1u << 28))
        return -EINVAL;
    uint32_t slots = 1;
    while (slots < cap * 2)
        slots <<= 1;
    t->heap = calloc(cap, sizeof(*t->heap));
    t->pos_item = malloc(slots * sizeof(uint32_t));
    t->pos_idx = malloc(slots * sizeof(uint32_t));
    if (!t->heap || !t->pos_item || !t->pos_idx) {
        topk_destroy(t);
        return -ENOMEM;
    }
    memset(t->pos_item, 0xff, slots * sizeof(uint32_t));
    t->cap = cap;
    t->pos_mask = slots - 1;
    t->monotone = monotone;
    return 0;
}

void topk_destroy(struct topk *t)
{
    free(t->heap);
    free(t->pos_item);
    free(t->pos_idx);
    memset(t, 0, sizeof(*t));
}

/* --- position table: item -> heap index --- */

static uint32_t pos_slot(const struct topk *t, uint32_t item)
{
    uint32_t i = (uint32_t)hash_u64(item) & t->pos_mask;
    while (t->pos_item[i] != item && t->pos_item[i] != NO_ITEM)
        i = (i + 1) & t->pos_mask;
    return i;
}

/* Empties slot `hole`; entries of the probe run behind it shift back, and their heap entries
 * learn their new slot. */
static void pos_del(struct topk *t, uint32_t hole)
{
    for (uint32_t j = (hole + 1) & t->pos_mask; t->pos_item[j] != NO_ITEM;
         j = (j + 1) & t->pos_mask) {
        uint32_t home = (uint32_t)hash_u64(t->pos_item[j]) & t->pos_mask;
        if (((j - home) & t->pos_mask) >= ((j - hole) & t->pos_mask)) {
            t->pos_item[hole] = t->pos_item[j];
            t->pos_idx[hole] = t->pos_idx[j];
            t->heap[t->pos_idx[hole]].pslot = hole;
            hole = j;
        }
    }
    t->pos_item[hole] = NO_ITEM;
}

/* --- min-heap on (key, item) with "worse" at the top --- */

static int worse(const struct topk_ent *a, const struct topk_ent *b)
{
    return topk_better(b->key, b->item, a->key, a->item);
}

static void place(struct topk *t, uint32_t i, struct topk_ent e)
{
    t->heap[i] = e;
    t->pos_idx[e.pslot] = i;
}

/* A new heap entry for item, its position slot claimed. */
static struct topk_ent new_entry(struct topk *t, uint32_t item, uint64_t key)
{
    uint32_t s = pos_slot(t, item);
    t->pos_item[s] = item;
    return (struct topk_ent){key, item, s};
}

static void sift_up(struct topk *t, uint32_t i)
{
    struct topk_ent e = t->heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!worse(&e, &t->heap[p]))
            break;
        place(t, i, t->heap[p]);
        i = p;
    }
    place(t, i, e);
}

static void sift_down(struct topk *t, uint32_t i)
{
    struct topk_ent e = t->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= t->n)
            break;
        if (c + 1 < t->n && worse(&t->heap[c + 1], &t->heap[c]))
            c++;
        if (!worse(&t->heap[c], &e))
            break;
        place(t, i, t->heap[c]);
        i = c;
    }
    place(t, i, e);
}

static void leave_out(struct topk *t, uint64_t key, uint32_t item)
{
    if (!t->has_out || topk_better(key, item, t->out_key, t->out_item)) {
        t->out_key = key;
        t->out_item = item;
    }
    t->has_out = 1;
}

static void insert_or_leave(struct topk *t, uint32_t item, uint64_t key)
{
    if (t->n < t->cap) {
        t->heap[t->n] = new_entry(t, item, key);
        t->pos_idx[t->heap[t->n].pslot] = t->n;
        sift_up(t, t->n++);
        return;
    }
    struct topk_ent *min = &t->heap[0];
    if (!topk_better(key, item, min->key, min->item)) {
        leave_out(t, key, item);
        return;
    }
    leave_out(t, min->key, min->item);
    pos_del(t, min->pslot);
    t->heap[0] = new_entry(t, item, key);
    t->pos_idx[t->heap[0].pslot] = 0;
    sift_down(t, 0);
}

void topk_update(struct topk *t, uint32_t item, uint64_t key)
{
    /* Fast path: a full heap whose minimum beats this key. For growing keys the item cannot be
     * inside (its key was smaller still), so no probe is needed. */
    if (t->monotone && t->n == t->cap && !topk_better(key, item, t->heap[0].key, t->heap[0].item)) {
        leave_out(t, key, item);
        return;
    }
    uint32_t s = pos_slot(t, item);
    if (t->pos_item[s] == NO_ITEM) {
        insert_or_leave(t, item, key);
        return;
    }
    uint32_t i = t->pos_idx[s];
    uint64_t old = t->heap[i].key;
    t->heap[i].key = key;
    if (key > old)
        sift_down(t, i);
    else
        sift_up(t, i);
}

void topk_remove(struct topk *t, uint32_t item)
{
    uint32_t s = pos_slot(t, item);
    if (t->pos_item[s] == NO_ITEM)
        return;
    uint32_t i = t->pos_idx[s];
    pos_del(t, s);
    if (i == --t->n)
        return;
    struct topk_ent last = t->heap[t->n];
    place(t, i, last);
    sift_up(t, i);
    sift_down(t, t->pos_idx[last.pslot]);
}

void topk_reset(struct topk *t)
{
    t->n = 0;
    t->has_out = 0;
    t->out_key = 0;
    t->out_item = 0;
    memset(t->pos_item, 0xff, (t->pos_mask + 1) * sizeof(uint32_t));
}

void topk_offer(struct topk *t, uint32_t item, uint64_t key)
{
    insert_or_leave(t, item, key);
}

static int cmp_best_first(const void *a, const void *b)
{
    const struct topk_ent *x = a, *y = b;
    if (topk_better(x->key, x->item, y->key, y->item))
        return -1;
    return topk_better(y->key, y->item, x->key, x->item);
}

uint32_t topk_sorted(const struct topk *t, struct topk_ent *out, uint32_t *total)
{
    memcpy(out, t->heap, t->n * sizeof(*out));
    qsort(out, t->n, sizeof(*out), cmp_best_first);
    *total = t->n;
    if (!t->has_out)
        return t->n;
    uint32_t exact = 0;
    while (exact < t->n && topk_better(out[exact].key, out[exact].item, t->out_key, t->out_item))
        exact++;
    return exact;
}
