/* Random forests for the property test: trees of varied shapes (stars, chains, brooms, random
 * recursive trees) over a small pool of actors, so that actors repeat within a cascade and reshare
 * themselves, with integer and string ids, content and labels on some posts, and some posts whose
 * events are withheld so that their children keep a placeholder for good. A node's parent always
 * has a lower index: index order is a valid in-order delivery, and the oracle can walk it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prop.h"

static const char *const contents[] = {"https://news.example/a", "claim:42", "#vaccines",
                                       "https://x.example/very/long/path?q=1", "claim:7"};
static const char *const labels[] = {"false", "true", "mixed", "unverified"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

void rng_seed(struct rng *r, uint64_t seed)
{
    /* splitmix64 spreads nearby seeds (iteration numbers) far apart */
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    r->s = (z ^ (z >> 31)) | 1;
}

uint64_t rng_next(struct rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dULL;
}

uint32_t rng_below(struct rng *r, uint32_t n)
{
    return (uint32_t)((rng_next(r) >> 32) % n);
}

int rng_chance(struct rng *r, uint32_t percent)
{
    return rng_below(r, 100) < percent;
}

enum shape { SHAPE_STAR, SHAPE_CHAIN, SHAPE_RECURSIVE, SHAPE_BROOM, SHAPE_DEEP, SHAPE_COUNT };

/* Parent of the j-th node (j > 0) of a tree of t nodes starting at k0. */
static int32_t shape_parent(int shape, uint32_t k0, uint32_t j, uint32_t t, struct rng *r)
{
    switch (shape) {
    case SHAPE_STAR:
        return (int32_t)k0;
    case SHAPE_CHAIN:
        return (int32_t)(k0 + j - 1);
    case SHAPE_BROOM: /* a handle, then bristles off its end */
        return (int32_t)(j <= t / 2 ? k0 + j - 1 : k0 + t / 2);
    case SHAPE_DEEP: /* mostly extends one of the newest nodes: long, thin, branching */
        return (int32_t)(k0 + j - 1 - rng_below(r, j < 3 ? j : 3));
    default:
        return (int32_t)(k0 + rng_below(r, j));
    }
}

/* Tree sizes: many singletons and small trees, some that take most of what is left. */
static uint32_t tree_size(struct rng *r, uint32_t left, uint32_t max_tree)
{
    uint32_t t, cap = max_tree && max_tree < left ? max_tree : left;

    if (rng_chance(r, 30))
        t = 1;
    else if (rng_chance(r, 60))
        t = 2 + rng_below(r, 12);
    else
        t = 1 + rng_below(r, cap);
    return t < cap ? t : cap;
}

static void gen_shapes(struct forest *f, struct rng *r, uint32_t max_tree)
{
    uint32_t k = 0;

    while (k < f->n) {
        uint32_t t = tree_size(r, f->n - k, max_tree);
        int shape = (int)rng_below(r, SHAPE_COUNT);
        f->nodes[k].parent = -1;
        for (uint32_t j = 1; j < t; j++)
            f->nodes[k + j].parent = shape_parent(shape, k, j, t, r);
        k += t;
    }
}

static void gen_actors(struct forest *f, struct rng *r, uint32_t actors)
{
    uint32_t cap = rng_chance(r, 70) ? 6 : 40;

    f->n_actors = actors ? actors : 1 + rng_below(r, f->n < cap ? f->n : cap);
    f->actor_type = calloc(f->n_actors, 1);
    f->actor_int = calloc(f->n_actors, 1);
    for (uint32_t a = 0; a < f->n_actors; a++) {
        f->actor_type[a] = rng_chance(r, 30) ? EVENT_ACTOR_PAGE : EVENT_ACTOR_ACCOUNT;
        f->actor_int[a] = (uint8_t)rng_chance(r, 30);
    }
}

/* Unique times; parents usually earlier than children, but clocks are sometimes skewed. */
static void gen_times(struct forest *f, struct rng *r)
{
    /* sometimes near 1970: small historical times are times (negative ones are bad_ts) */
    int64_t base = rng_chance(r, 10) ? (int64_t)rng_below(r, 1000000)
                                     : 1700000000000LL + rng_below(r, 1000000);

    /* sometimes far apart: the forest then spans several growth horizons */
    int64_t step = rng_chance(r, 10) ? ENGINE_GROWTH_HORIZON_MS / 8 : 16;

    for (uint32_t k = 0; k < f->n; k++)
        f->nodes[k].ts = base + (int64_t)k * step + rng_below(r, 16);
    if (!rng_chance(r, 10))
        return;
    for (uint32_t k = f->n; k > 1; k--) {
        uint32_t j = rng_below(r, k);
        int64_t t = f->nodes[k - 1].ts;
        f->nodes[k - 1].ts = f->nodes[j].ts;
        f->nodes[j].ts = t;
    }
}

static void gen_node(struct forest *f, struct rng *r, uint32_t k, uint32_t int_pct,
                     uint32_t withheld_pct)
{
    struct node *nd = &f->nodes[k];
    int root = nd->parent < 0;

    /* resharing one's own post is common: it exercises self-reshares and self-edges */
    if (!root && rng_chance(r, 30))
        nd->actor = f->nodes[nd->parent].actor;
    else
        nd->actor = rng_below(r, f->n_actors);
    nd->int_id = (uint8_t)rng_chance(r, int_pct);
    nd->withheld = (uint8_t)rng_chance(r, withheld_pct);
    nd->kind = KIND_DEFAULT;
    if (rng_chance(r, 20))
        nd->kind = root ? EVENT_KIND_POST : (uint8_t)(EVENT_KIND_SHARE + rng_below(r, 3));
    nd->type = EVENT_ACTOR_UNSPECIFIED;
    if (rng_chance(r, 50))
        nd->type = f->fickle_types ? (uint8_t)(EVENT_ACTOR_ACCOUNT + rng_below(r, 2))
                                   : f->actor_type[nd->actor];
    nd->content = rng_chance(r, root ? 70 : 15) ? contents[rng_below(r, COUNT(contents))] : NULL;
    if (!root && !nd->content && rng_chance(r, 10)) { /* one its tree's root lacks */
        const struct node *top = nd;
        while (top->parent >= 0)
            top = &f->nodes[top->parent];
        do
            nd->content = contents[rng_below(r, COUNT(contents))];
        while (nd->content == top->content);
    }
    nd->label = rng_chance(r, root ? 40 : 10) ? labels[rng_below(r, COUNT(labels))] : NULL;
}

static uint64_t pick_int_base(struct forest *f, struct rng *r)
{
    switch (rng_below(r, 3)) {
    case 0:
        return 0; /* id 0 is a valid id */
    case 1:
        return 1ULL << 33; /* beyond 32 bits */
    default:
        return UINT64_MAX - (f->n - 1); /* the last node is UINT64_MAX */
    }
}

void forest_generate(struct forest *f, struct rng *r, const struct forest_params *p)
{
    static const uint32_t int_pcts[] = {0, 100, 30};
    static const uint32_t withheld_pcts[] = {0, 0, 5, 15};
    uint32_t int_pct = int_pcts[rng_below(r, COUNT(int_pcts))];
    uint32_t withheld_pct = withheld_pcts[rng_below(r, COUNT(withheld_pcts))];

    memset(f, 0, sizeof(*f));
    f->n = p->n;
    f->nodes = calloc(p->n, sizeof(*f->nodes));
    f->int_base = pick_int_base(f, r);
    f->pad_ids = p->pad_ids >= 0 ? (uint32_t)p->pad_ids : (uint32_t)rng_chance(r, 10);
    f->fickle_types = (uint8_t)rng_chance(r, 20);
    gen_shapes(f, r, p->max_tree);
    gen_actors(f, r, p->actors);
    gen_times(f, r);
    for (uint32_t k = 0; k < p->n; k++)
        gen_node(f, r, k, int_pct, withheld_pct);
}

void forest_free(struct forest *f)
{
    free(f->nodes);
    free(f->actor_type);
    free(f->actor_int);
    memset(f, 0, sizeof(*f));
}

uint32_t forest_content_keys(const struct forest *f, const char **keys)
{
    uint32_t n = 0;

    for (uint32_t k = 0; k < f->n; k++) {
        const char *c = f->nodes[k].content;
        uint32_t i = 0;
        while (c && i < n && strcmp(keys[i], c) != 0)
            i++;
        if (c && i == n)
            keys[n++] = c;
    }
    return n;
}

/* "<prefix><k>" padded with '-' to 254..256 bytes when the forest pads ids. */
static uint32_t string_id(const struct forest *f, char prefix, uint32_t k, char *buf)
{
    int len = snprintf(buf, ID_BUF, "%c%u", prefix, k);

    if (f->pad_ids) {
        int want = EVENT_ID_MAX - (int)(k % 3);
        memset(buf + len, '-', (size_t)(want - len));
        len = want;
        buf[len] = '\0';
    }
    return (uint32_t)len;
}

uint32_t post_id(const struct forest *f, uint32_t k, char *buf)
{
    if (f->nodes[k].int_id)
        return (uint32_t)snprintf(buf, ID_BUF, "%llu", (unsigned long long)(f->int_base + k));
    return string_id(f, 'p', k, buf);
}

uint32_t actor_id(const struct forest *f, uint32_t a, char *buf)
{
    if (f->actor_int[a])
        return (uint32_t)snprintf(buf, ID_BUF, "%llu", (unsigned long long)(ACTOR_BASE + a));
    return string_id(f, 'a', a, buf);
}

/* Guesses the index from the id's digits, then insists on the exact canonical bytes. */
static int64_t guess_index(const char *s, uint32_t len, char prefix, uint64_t int_base)
{
    char tmp[ID_BUF];
    char *end;

    if (len == 0 || len >= ID_BUF)
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    if (tmp[0] == prefix)
        return (int64_t)strtoul(tmp + 1, NULL, 10);
    unsigned long long v = strtoull(tmp, &end, 10);
    return (int64_t)(v - int_base);
}

int32_t post_index(const struct forest *f, const char *s, uint32_t len)
{
    char buf[ID_BUF];
    int64_t k = guess_index(s, len, 'p', f->int_base);

    if (k < 0 || k >= f->n)
        return -1;
    if (post_id(f, (uint32_t)k, buf) != len || memcmp(buf, s, len) != 0)
        return -1;
    return (int32_t)k;
}

int32_t actor_index(const struct forest *f, const char *s, uint32_t len)
{
    char buf[ID_BUF];
    int64_t a = guess_index(s, len, 'a', ACTOR_BASE);

    if (a < 0 || a >= f->n_actors)
        return -1;
    if (actor_id(f, (uint32_t)a, buf) != len || memcmp(buf, s, len) != 0)
        return -1;
    return (int32_t)a;
}
