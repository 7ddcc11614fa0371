/* cascade-replay --nats: which partition each event goes to, and the events handed to
 * libcascade-client's JetStream publisher (cascade/nats.h). The routing key of DESIGN §9 is
 * tracked per post as xxh64 of the key, the hash the partition is taken from, so that a child
 * finds its cascade's partition from its parent's entry in one lookup. */
#include "cascade-replay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "cascade/hash.h"
#include "cascade/nats.h"

#define TRACK_MIN_SLOTS (1u << 16)
#define TRACK_MAX_SLOTS (1u << 21) /* 32 MiB a generation, a million posts and more */

struct slot {
    uint64_t tag; /* hash of the post id, never 0; 0: empty */
    uint64_t key; /* xxh64 of its routing key */
};

struct gen {
    struct slot *s;
    size_t mask, used;
};

struct rp_nats {
    struct cc_nats *pub;
    uint32_t parts;
    struct gen cur, old;
};

static int gen_init(struct gen *g, size_t slots)
{
    g->s = calloc(slots, sizeof(*g->s));
    if (!g->s)
        return -ENOMEM;
    g->mask = slots - 1;
    g->used = 0;
    return 0;
}

static struct slot *probe(const struct gen *g, uint64_t tag)
{
    size_t i = (size_t)tag & g->mask;
    while (g->s[i].tag && g->s[i].tag != tag)
        i = (i + 1) & g->mask;
    return &g->s[i];
}

static void put(struct gen *g, uint64_t tag, uint64_t key)
{
    struct slot *s = probe(g, tag);
    g->used += s->tag == 0;
    s->tag = tag;
    s->key = key;
}

/* Doubles the current generation; at its limit (or out of memory) it becomes the old one and
 * the one before is forgotten. */
static int make_room(struct rp_nats *n)
{
    struct gen *g = &n->cur, bigger;
    size_t slots = g->mask + 1;
    if (slots < TRACK_MAX_SLOTS && gen_init(&bigger, slots * 2) == 0) {
        for (size_t i = 0; i < slots; i++) {
            if (g->s[i].tag)
                put(&bigger, g->s[i].tag, g->s[i].key);
        }
        free(g->s);
        *g = bigger;
        return 0;
    }
    free(n->old.s);
    n->old = *g;
    if (gen_init(g, slots)) {
        *g = n->old;
        memset(g->s, 0, slots * sizeof(*g->s));
        g->used = 0;
        n->old.s = NULL;
        n->old.mask = n->old.used = 0;
    }
    return 0;
}

static int lookup(const struct rp_nats *n, uint64_t tag, uint64_t *key)
{
    const struct slot *s = probe(&n->cur, tag);
    if (!s->tag && n->old.s)
        s = probe(&n->old, tag);
    if (!s->tag)
        return 0;
    *key = s->key;
    return 1;
}

static uint64_t tag_of(const char *s, size_t len)
{
    uint64_t t = hash_bytes(s, len);
    return t ? t : 1;
}

int rp_nats_open(const struct rp_nats_opts *o, struct rp_nats **out, char *err, size_t errlen)
{
    struct rp_nats *n = calloc(1, sizeof(*n));
    if (!n || gen_init(&n->cur, TRACK_MIN_SLOTS)) {
        free(n);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct cc_nats_opts po = {
        .stream = o->stream, .partitions = o->partitions, .replicas = o->replicas};
    int rc = cc_nats_open(o->urls, &po, &n->pub, err, errlen);
    if (rc) {
        rp_nats_close(n);
        return rc;
    }
    struct cc_nats_info info;
    cc_nats_info(n->pub, &info);
    n->parts = info.partitions;
    *out = n;
    return 0;
}

void rp_nats_close(struct rp_nats *n)
{
    if (!n)
        return;
    cc_nats_close(n->pub);
    free(n->cur.s);
    free(n->old.s);
    free(n);
}

struct cc_nats *rp_nats_pub(struct rp_nats *n)
{
    return n->pub;
}

/* The routing key's hash (DESIGN §9): for a reshare, `root` when given, else the parent's
 * tracked key, else the parent; for an original post its own id, whatever `root` says, so that
 * every copy of a root lands in the same partition (docs/cluster.md: why that makes the
 * resolution step exact); a post already tracked keeps its key (*known). 0 in *have when the
 * event has no usable id at all. */
static uint64_t route(struct rp_nats *n, const struct rp_record *rec, int *have, uint64_t *post_tag,
                      int *known)
{
    char num[24];
    const char *s;
    size_t len;
    uint64_t key = 0;
    *have = 1;
    *post_tag = rp_value_id(&rec->v[RK_POST], num, &s, &len) ? tag_of(s, len) : 0;
    /* a post seen before goes where it went then: a resend (a duplicate) must land in the same
     * partition as its first copy even if its parent became known in between */
    if (*post_tag && (*known = lookup(n, *post_tag, &key)))
        return key;
    if (rp_value_id(&rec->v[RK_PARENT], num, &s, &len)) {
        const char *ps = s;
        size_t plen = len;
        if (rp_value_id(&rec->v[RK_ROOT], num, &s, &len))
            return XXH64(s, len, 0);
        if (lookup(n, tag_of(ps, plen), &key))
            return key;
        return XXH64(ps, plen, 0);
    }
    if (rp_value_id(&rec->v[RK_POST], num, &s, &len))
        return XXH64(s, len, 0);
    *have = 0;
    return 0;
}

int rp_nats_add(struct rp_nats *n, const struct rp_record *rec, uint64_t global, int skip)
{
    if (!skip && cc_nats_full(n->pub))
        return -ENOBUFS; /* before tracking: the caller calls again with this record */
    int have, known = 0;
    uint64_t post_tag, key = route(n, rec, &have, &post_tag, &known);
    if (post_tag && !known) {
        if ((n->cur.used + 1) * 2 > n->cur.mask + 1)
            make_room(n);
        put(&n->cur, post_tag, key);
    }
    if (skip)
        return 0;
    struct event_raw raw;
    rp_record_to_wire(rec, &raw);
    char num[24];
    const char *root = NULL;
    size_t rootlen = 0;
    if (!rp_value_id(&rec->v[RK_ROOT], num, &root, &rootlen))
        root = NULL;
    else if (rootlen > RP_STR_KEEP)
        rootlen = RP_STR_KEEP;
    /* the same arithmetic as cc_nats_partition_of, from the tracked hash */
    uint32_t part = have ? (uint32_t)(key % n->parts) : 0;
    return cc_nats_add(n->pub, part, &raw, root, rootlen, global);
}
