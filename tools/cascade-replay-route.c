/* cascade-replay: which connection each event goes over. All events of a cascade share one, so
 * parents reach the server before their children as in the dump; the post → connection map is
 * bounded, and what it forgets costs order only, which no metric depends on (DESIGN §2). */
#include "cascade-replay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/hash.h"

#define ROUTE_MIN_SLOTS (1u << 16)
#define ROUTE_MAX_SLOTS (1u << 22) /* 32 MiB a generation */
#define CONN_BITS       6          /* a slot is the post's hash with a connection in its low bits */
#define CONN_MASK       ((1u << CONN_BITS) - 1)

struct gen {
    uint64_t *slot; /* 0: empty */
    size_t mask, used;
};

struct rp_route {
    unsigned n;
    struct gen cur, old;
};

static int gen_init(struct gen *g, size_t slots)
{
    g->slot = calloc(slots, sizeof(*g->slot));
    if (!g->slot)
        return -ENOMEM;
    g->mask = slots - 1;
    g->used = 0;
    return 0;
}

static uint64_t tag_of(uint64_t h)
{
    uint64_t t = h & ~(uint64_t)CONN_MASK;
    return t ? t : (uint64_t)1 << CONN_BITS;
}

/* The slot holding tag, or the empty slot where it would go. */
static uint64_t *probe(const struct gen *g, uint64_t tag)
{
    size_t i = (size_t)(tag >> CONN_BITS) & g->mask;
    while (g->slot[i] && (g->slot[i] & ~(uint64_t)CONN_MASK) != tag)
        i = (i + 1) & g->mask;
    return &g->slot[i];
}

static void put(struct gen *g, uint64_t tag, unsigned conn)
{
    uint64_t *s = probe(g, tag);
    g->used += *s == 0;
    *s = tag | conn;
}

/* Doubles the current generation, or, at its size limit or out of memory, makes it the old one. */
static void make_room(struct rp_route *rt)
{
    struct gen *g = &rt->cur, bigger;
    size_t slots = g->mask + 1;
    if (slots < ROUTE_MAX_SLOTS && gen_init(&bigger, slots * 2) == 0) {
        for (size_t i = 0; i < slots; i++) {
            if (g->slot[i])
                put(&bigger, g->slot[i] & ~(uint64_t)CONN_MASK, g->slot[i] & CONN_MASK);
        }
        free(g->slot);
        *g = bigger;
        return;
    }
    free(rt->old.slot);
    rt->old = *g;
    if (gen_init(g, slots) != 0) { /* keep going with the old table's memory, emptied */
        *g = rt->old;
        memset(g->slot, 0, slots * sizeof(*g->slot));
        g->used = 0;
        rt->old.slot = NULL;
        rt->old.mask = rt->old.used = 0;
    }
}

int rp_route_new(unsigned nconns, struct rp_route **out)
{
    struct rp_route *rt = calloc(1, sizeof(*rt));
    if (!rt)
        return -ENOMEM;
    rt->n = nconns;
    if (nconns > 1 && gen_init(&rt->cur, ROUTE_MIN_SLOTS)) {
        free(rt);
        return -ENOMEM;
    }
    *out = rt;
    return 0;
}

void rp_route_free(struct rp_route *rt)
{
    if (!rt)
        return;
    free(rt->cur.slot);
    free(rt->old.slot);
    free(rt);
}

static int lookup(const struct rp_route *rt, uint64_t tag)
{
    uint64_t s = *probe(&rt->cur, tag);
    if (!s && rt->old.slot)
        s = *probe(&rt->old, tag);
    return s ? (int)(s & CONN_MASK) : -1;
}

static uint64_t id_hash(const struct rp_value *v, int *ok)
{
    char num[24];
    const char *s;
    size_t len;
    *ok = rp_value_id(v, num, &s, &len);
    return *ok ? hash_bytes(s, len) : 0;
}

/* An event inherits its parent's connection; an event whose parent was never seen goes by a hash
 * of the parent id (where the parent goes too, should it be a root that comes later); a root by a
 * hash of its own id. The map keeps two generations of at most ROUTE_MAX_SLOTS / 2 posts and drops
 * the older when the newer is full: a child of a forgotten parent may then reach the server first
 * and wait under a placeholder, and the metrics come out the same. */
unsigned rp_route_pick(struct rp_route *rt, const struct rp_record *rec)
{
    if (rt->n <= 1)
        return 0;
    int has_post, has_parent, conn = -1;
    uint64_t post = id_hash(&rec->v[RK_POST], &has_post);
    uint64_t parent = id_hash(&rec->v[RK_PARENT], &has_parent);
    if (has_parent)
        conn = lookup(rt, tag_of(parent));
    if (conn < 0 && (has_parent || has_post))
        conn = (int)(((has_parent ? parent : post) >> 32) % rt->n);
    if (conn < 0)
        return 0; /* no usable id: the server rejects it, over any connection */
    if (has_post) {
        if ((rt->cur.used + 1) * 2 > rt->cur.mask + 1)
            make_room(rt);
        put(&rt->cur, tag_of(post), (unsigned)conn);
    }
    return (unsigned)conn;
}
