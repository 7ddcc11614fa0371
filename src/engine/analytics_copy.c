/* Copies of the engine's posts for the analytics worker (engine.h: engine_copy_take): the
 * amplification graph as one (from, to) per share, and (actor, content key, ts) per post for
 * coordination. One pass over the posts in id order; the parent's and root's records are the
 * random loads, so they are prefetched a few posts ahead. Not the snapshot files on disk: those
 * are engine/persist.c's format, written by store/snapfile.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

#define AHEAD 8

/* The cascade root of post id, memoised in root[] (NONE: not known yet) so that each post's
 * ancestors are walked once over the whole pass. */
static uint32_t root_of(const struct engine *e, uint32_t id, uint32_t *root, uint32_t *stack)
{
    uint32_t n = 0, x = id;
    while (root[x] == NONE && !post_is_root(post_at(e, x))) {
        stack[n++] = x;
        x = post_at(e, x)->parent;
    }
    uint32_t r = root[x] == NONE ? x : root[x];
    root[x] = r;
    while (n)
        root[stack[--n]] = r;
    return r;
}

static void take(struct engine *e, struct engine_copy *s, uint32_t *root, uint32_t *stack)
{
    uint32_t n = e->posts.len;
    for (uint32_t i = 0; i < n; i++) {
        if (i + AHEAD < n) {
            const struct post *q = post_at(e, i + AHEAD);
            if (!post_is_root(q))
                __builtin_prefetch(post_at(e, q->parent));
        }
        const struct post *p = post_at(e, i);
        if (p->actor == NONE)
            continue; /* a placeholder: no post of anyone yet */
        if (!post_is_root(p)) {
            const struct post *par = post_at(e, p->parent);
            if (par->actor != NONE && par->actor != p->actor)
                s->shares[s->nshares++] = (struct engine_share){p->actor, par->actor};
        }
        uint32_t content = p->content & CONTENT_MASK;
        if (content == CONTENT_NONE)
            content = post_at(e, root_of(e, i, root, stack))->content & CONTENT_MASK;
        if (content != CONTENT_NONE)
            s->keys[s->nkeys++] = (struct engine_post_key){p->actor, content, p->ts};
    }
}

int engine_copy_take(struct engine *e, struct engine_copy *s)
{
    memset(s, 0, sizeof(*s));
    /* the result built on the previous copy is the only one left that may name the ids
     * emptied before it: their names can go (retention.c) */
    retention_release(e);
    uint32_t n = e->posts.len;
    s->nactors = e->actors.len;
    s->accepted = e->outcomes[EVENT_OK];
    uint32_t *root = malloc(((size_t)n + 1) * sizeof(uint32_t));
    uint32_t *stack = malloc(((size_t)n + 1) * sizeof(uint32_t));
    s->shares = malloc(((size_t)n + 1) * sizeof(*s->shares));
    s->keys = malloc(((size_t)n + 1) * sizeof(*s->keys));
    s->reach = malloc(((size_t)s->nactors + 1) * sizeof(uint32_t));
    if (!root || !stack || !s->shares || !s->keys || !s->reach) {
        free(root);
        free(stack);
        engine_copy_free(s);
        return -ENOMEM;
    }
    memset(root, 0xff, (size_t)n * sizeof(uint32_t));
    take(e, s, root, stack);
    for (uint32_t a = 0; a < s->nactors; a++)
        s->reach[a] = actor_at(e, a)->reach;
    free(root);
    free(stack);
    /* give back the slack: most posts are not shares */
    struct engine_share *sh = realloc(s->shares, (s->nshares + 1) * sizeof(*sh));
    if (sh)
        s->shares = sh;
    return 0;
}

void engine_copy_free(struct engine_copy *s)
{
    free(s->shares);
    free(s->keys);
    free(s->reach);
    memset(s, 0, sizeof(*s));
}

int engine_actor_at(struct engine *e, uint32_t id, struct engine_actor *out)
{
    if (id >= e->actors.len || actor_at(e, id)->posts == 0) /* evicted since the copy */
        return -ENOENT;
    engine_describe_actor(e, id, out);
    return 0;
}

const char *engine_content_key(const struct engine *e, uint32_t id, uint32_t *len)
{
    if (id >= e->contents.count || clist_at(e, id)->n == 0) /* evicted since the copy */
        return NULL;
    return intern_str(&e->contents, id, len);
}
