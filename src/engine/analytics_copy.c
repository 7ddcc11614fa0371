/* Copies of the engine's posts for the analytics worker (engine.h: engine_copy_begin/step): the
 * amplification graph as one (from, to) per share, (actor, content key, ts) per post for
 * coordination, and every actor's reach. Not the snapshot files on disk: those are
 * engine/persist.c's format, written by store/snapfile.c.
 *
 * Why sliced (issue 18, DESIGN §8: no engine-thread pause over 10 ms): one pass over 10 M posts
 * held the engine thread ~300 ms. The copy is now taken a slice at a time between batches
 * (analytics_tick gives each slice a time budget), and must still equal a copy taken at one
 * instant, the instant its last slice ends. So it keeps one slot per post id (a share slot and
 * a key slot, indexed by the id) and one reach slot per actor id, and a cursor over each: the
 * slots below the cursor have been written. Whatever changes a slot below the cursor while the
 * copy is under way is noted by a hook on the engine's write path and copied again before the
 * copy ends:
 *   - a post created at an id below the cursor (ids are reused after retention) or freed by
 *     retention: copy_note_post, one bit in a bitmap of posts to copy again;
 *   - a placeholder filled: its children's shares appear, and its subtree may join another
 *     cascade or get a placeholder above it, which changes the content key of every post in
 *     it that has none of its own. copy_note_subtree queues the subtree's root; its subtree is
 *     walked later (a walk resumes across slices: nodes inside a subtree never move, new
 *     children are noted as new posts, and retention evicts a whole cascade at once, which
 *     cancels the walk through copy_note_post of its root);
 *   - an actor's reach: every change to it goes through engine.c's touch_actor, which calls
 *     copy_note_actor (a bit per actor below the actor cursor).
 * A post without content of its own carries its cascade root's: the key slot of such a post,
 * once written, remembers that content (K_MEMO), so that a descendant's look-up stops at its
 * first such ancestor instead of walking to the root. A remembered content goes stale only
 * when a filled placeholder's subtree moves or is filled (then every stale slot lies in a
 * queued subtree, whose walk writes them again) or when the id is freed and reused
 * (copy_note_post clears the slot). Roots are never remembered: read from their records.
 * The copy ends when both cursors have reached the tables' ends and nothing is left to copy
 * again; that last slice is bounded like every other (each kind of work checks the budget),
 * and handing the copy over is O(1). A copy that cannot finish within one slice under a churn
 * faster than a slice's budget simply goes on in the next slices.
 *
 * Memory: the slots are anonymous mappings (zero-filled, grown by mremap, which moves page
 * tables and copies nothing: posts created during the copy need no stall to make room): a key
 * slot (16 bytes: actor, content with two flags, ts), a share slot (4: the parent's actor + 1;
 * its `from` is the key slot's actor) and 1/8 of a bitmap per post id, 20.1 bytes a post while
 * the copy is under way. The one-pass copy held keys (16), a root memo (4) and the shares it
 * wrote (8 each): 24.4 bytes a post measured at 10 M events (bench/results/analytics-copy-
 * 2026-12-07.md). The worker packs the slots (engine_copy_settle): keys in place, shares into
 * an array of their own, then gives the share slots back, off the engine thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine_int.h"

#define AHEAD       8
#define CHECK_EVERY 256 /* units of work between two looks at the clock */

/* An anonymous mapping: zero-filled pages, grown in place or moved by mremap. */
struct vm {
    void *p;
    size_t bytes;
};

static size_t page_round(size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return (n + pg - 1) / pg * pg;
}

/* Room for `bytes`, with slack so that a growing table does not remap at every slice. */
static int vm_ensure(struct vm *v, size_t bytes)
{
    if (bytes <= v->bytes)
        return 0;
    size_t want = page_round(bytes + bytes / 4 + 65536);
    void *p = v->p ? mremap(v->p, v->bytes, want, MREMAP_MAYMOVE)
                   : mmap(NULL, want, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -ENOMEM;
    v->p = p;
    v->bytes = want;
    return 0;
}

static void vm_free(struct vm *v)
{
    if (v->p)
        munmap(v->p, v->bytes);
    v->p = NULL;
    v->bytes = 0;
}

/* Gives back the pages past the first `keep` bytes. */
static void vm_trim(struct vm *v, size_t keep)
{
    size_t k = page_round(keep);
    if (!v->p || k >= v->bytes)
        return;
    if (k == 0) {
        vm_free(v);
        return;
    }
    munmap((char *)v->p + k, v->bytes - k);
    v->bytes = k;
}

/* A copy under way (engine.copy), then the finished copy's storage (engine_copy.job). */
struct copy_job {
    struct vm tos;    /* uint32_t per post id: its parent's actor + 1 when a share, else 0 */
    struct vm keys;   /* struct engine_post_key per post id: the post's actor (0 for no post),
                         content with K_KEY / K_MEMO, ts */
    struct vm reach;  /* uint32_t per actor id */
    struct engine_share *shares; /* packed by engine_copy_settle (malloc'd) */
    struct vm pbits;  /* uint64_t words: posts below cur to copy again */
    struct vm abits;  /* uint64_t words: actors below acur to copy again */
    uint32_t cur, acur;     /* posts [0, cur) and actors [0, acur) have their slots written */
    uint32_t npbits, nabits; /* bits set */
    uint32_t pword, aword;   /* where the next pass over each bitmap resumes */
    uint32_t *subs;          /* filled placeholders whose subtrees to copy again, a FIFO */
    uint32_t head, nsubs, cap_subs;
    uint32_t walk_root, walk_at; /* the subtree walk under way (NONE: none; walk_at NONE:
                                    not entered yet) */
    int failed;                  /* a hook could not note a change: the copy is dropped */
    int settled;
    uint64_t slices;
};

static void job_free(struct copy_job *j)
{
    if (!j)
        return;
    vm_free(&j->tos);
    vm_free(&j->keys);
    vm_free(&j->reach);
    free(j->shares);
    vm_free(&j->pbits);
    vm_free(&j->abits);
    free(j->subs);
    free(j);
}

/* The content field of a key slot. */
#define K_KEY     0x40000000u /* the post has a content key (the low 30 bits) */
#define K_MEMO    0x80000000u /* the low 30 bits are the post's root's content (it has none) */
#define K_CONTENT 0x3fffffffu /* CONTENT_MASK: CONTENT_NONE for none */

static inline struct engine_post_key *key_slot(const struct copy_job *j, uint32_t id)
{
    return (struct engine_post_key *)j->keys.p + id;
}

static inline uint32_t *to_slot(const struct copy_job *j, uint32_t id)
{
    return (uint32_t *)j->tos.p + id;
}

static inline size_t slots_cap(const struct copy_job *j)
{
    size_t a = j->keys.bytes / sizeof(struct engine_post_key), b = j->tos.bytes / sizeof(uint32_t);
    return a < b ? a : b;
}

static int mark(struct vm *bits, uint32_t *nset, uint32_t id)
{
    uint64_t *w = (uint64_t *)bits->p + id / 64, b = 1ull << (id % 64);
    if (*w & b)
        return 0;
    *w |= b;
    ++*nset;
    return 1;
}

/* ---------------------------------------------------------------- hooks (engine_int.h) */

void copy_note_post(struct engine *e, uint32_t id)
{
    struct copy_job *j = e->copy;
    if (id < slots_cap(j)) { /* what it remembered is of the post that had the id */
        *key_slot(j, id) = (struct engine_post_key){0, 0, 0};
        *to_slot(j, id) = 0;
    }
    if (id < j->cur)
        mark(&j->pbits, &j->npbits, id);
    if (id == j->walk_root) /* evicted: the whole cascade goes, each post noted here */
        j->walk_root = NONE;
}

void copy_note_subtree(struct engine *e, uint32_t root)
{
    struct copy_job *j = e->copy;
    if (j->head == j->nsubs)
        j->head = j->nsubs = 0;
    if (j->nsubs == j->cap_subs) {
        uint32_t cap = j->cap_subs ? 2 * j->cap_subs : 256;
        uint32_t *s = realloc(j->subs, cap * sizeof(uint32_t));
        if (!s) {
            j->failed = 1;
            return;
        }
        j->subs = s;
        j->cap_subs = cap;
    }
    j->subs[j->nsubs++] = root;
}

void copy_note_actor(struct engine *e, uint32_t aid)
{
    struct copy_job *j = e->copy;
    if (aid < j->acur)
        mark(&j->abits, &j->nabits, aid);
}

void copy_job_free(struct engine *e)
{
    job_free(e->copy);
    e->copy = NULL;
}

/* ---------------------------------------------------------------- copying one record */

/* The content of the cascade root of post id (not a root): from the first ancestor whose slot
 * remembers it, else from the root's record. */
static uint32_t root_content(const struct engine *e, const struct copy_job *j, uint32_t id)
{
    uint32_t x = post_at(e, id)->parent;
    for (;;) {
        const struct post *p = post_at(e, x);
        if (post_is_root(p))
            return p->content & CONTENT_MASK;
        uint32_t c = key_slot(j, x)->content;
        if (c & K_MEMO)
            return c & K_CONTENT;
        x = p->parent;
    }
}

/* Writes post i's slots; rc: its cascade root's content, or NONE to look it up. */
static void copy_post(const struct engine *e, struct copy_job *j, uint32_t i, uint32_t rc)
{
    struct engine_post_key *k = key_slot(j, i);
    uint32_t *to = to_slot(j, i);
    const struct post *p = post_at(e, i);
    *to = 0;
    if (p->actor == NONE) { /* a placeholder (no post of anyone yet) or a freed id */
        *k = (struct engine_post_key){0, 0, 0};
        return;
    }
    if (!post_is_root(p)) {
        uint32_t pa = post_at(e, p->parent)->actor;
        if (pa != NONE && pa != p->actor)
            *to = pa + 1;
    }
    uint32_t content = p->content & CONTENT_MASK;
    if (content != CONTENT_NONE) {
        *k = (struct engine_post_key){p->actor, content | K_KEY, p->ts};
        return;
    }
    if (post_is_root(p))
        rc = CONTENT_NONE;
    else if (rc == NONE)
        rc = root_content(e, j, i);
    *k = (struct engine_post_key){p->actor, rc | K_MEMO | (rc != CONTENT_NONE ? K_KEY : 0), p->ts};
}

/* ---------------------------------------------------------------- budgets */

struct budget {
    uint64_t deadline_ns; /* 0: none */
    uint64_t units;       /* left; UINT64_MAX: no limit */
    uint32_t since_check;
    int spent;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Charges n units of work; 1 once the budget is spent. */
static int charge(struct budget *b, uint32_t n)
{
    if (b->spent)
        return 1;
    if (b->units != UINT64_MAX) {
        b->units = b->units > n ? b->units - n : 0;
        if (b->units == 0)
            return b->spent = 1;
    }
    if (b->deadline_ns && (b->since_check += n) >= CHECK_EVERY) {
        b->since_check = 0;
        if (mono_ns() >= b->deadline_ns)
            return b->spent = 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- the kinds of work */

static void scan_posts(struct engine *e, struct copy_job *j, struct budget *b)
{
    uint32_t n = e->posts.len;
    while (j->cur < n) {
        uint32_t i = j->cur;
        if (i + AHEAD < n) {
            const struct post *q = post_at(e, i + AHEAD);
            if (!post_is_root(q) && !post_is_free(q))
                __builtin_prefetch(post_at(e, q->parent));
        }
        copy_post(e, j, i, NONE);
        j->cur = i + 1;
        if (charge(b, 1))
            return;
    }
}

static void scan_actors(struct engine *e, struct copy_job *j, struct budget *b)
{
    uint32_t *reach = j->reach.p;
    while (j->acur < e->actors.len) {
        reach[j->acur] = actor_at(e, j->acur)->reach;
        j->acur++;
        if (charge(b, 1))
            return;
    }
}

/* The true cascade root of post x, from the records (a remembered content may be stale inside
 * x's subtree). */
static uint32_t walk_to_root(const struct engine *e, uint32_t x)
{
    while (!post_is_root(post_at(e, x)))
        x = post_at(e, x)->parent;
    return x;
}

/* The next node of a depth-first walk of root's subtree after x (NONE: x not entered yet), or
 * NONE at its end. */
static uint32_t walk_next(const struct engine *e, uint32_t root, uint32_t x)
{
    if (x == NONE)
        return root;
    const struct post *p = post_at(e, x);
    if (p->child != NONE)
        return p->child;
    while (x != root && post_at(e, x)->sibling == NONE)
        x = post_at(e, x)->parent;
    return x == root ? NONE : post_at(e, x)->sibling;
}

/* Copies the queued subtrees again, every post of them (which remember the right root content
 * again). */
static void walk_subtrees(struct engine *e, struct copy_job *j, struct budget *b)
{
    while (!b->spent) {
        if (j->walk_root == NONE) {
            if (j->head == j->nsubs) {
                j->head = j->nsubs = 0;
                return;
            }
            uint32_t p = j->subs[j->head++];
            if (post_is_free(post_at(e, p)))
                continue; /* evicted since: each of its posts was noted */
            j->walk_root = p;
            j->walk_at = NONE;
        }
        /* the root as of this slice: the subtree may have moved since the last one */
        uint32_t r = walk_to_root(e, j->walk_root);
        uint32_t rc = post_at(e, r)->content & CONTENT_MASK;
        for (;;) {
            uint32_t x = walk_next(e, j->walk_root, j->walk_at);
            if (x == NONE) {
                j->walk_root = NONE;
                break;
            }
            copy_post(e, j, x, rc);
            j->walk_at = x;
            if (charge(b, 1))
                return;
        }
    }
}

/* Copies again the records whose bits are set, resuming where the last pass stopped. */
static void recopy(struct engine *e, struct copy_job *j, struct vm *bits, uint32_t *nset,
                   uint32_t *word, uint32_t limit, int actors, struct budget *b)
{
    uint64_t *w = bits->p;
    uint32_t nwords = (limit + 63) / 64;
    while (*nset) {
        if (*word >= nwords)
            *word = 0;
        uint64_t v = w[*word];
        if (!v) {
            ++*word;
            if (charge(b, 1))
                return;
            continue;
        }
        uint32_t id = *word * 64 + (uint32_t)__builtin_ctzll(v);
        w[*word] = v & (v - 1);
        --*nset;
        if (actors)
            ((uint32_t *)j->reach.p)[id] = actor_at(e, id)->reach;
        else
            copy_post(e, j, id, NONE);
        if (charge(b, 1))
            return;
    }
}

/* ---------------------------------------------------------------- the copy's life */

int engine_copy_begin(struct engine *e)
{
    if (e->copy)
        return -EALREADY;
    struct copy_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->walk_root = NONE;
    e->copy = j;
    /* the result built on the previous copy is the only one left that may name the ids
     * emptied before it: their names can go (retention.c). Done when the copy starts: no name
     * is deleted (or its id reused) while it is under way, and one emptied before this start
     * was empty when the previous copy ended, or emptied again since (then it waits). */
    retention_release(e);
    return 0;
}

void engine_copy_abort(struct engine *e)
{
    copy_job_free(e);
}

int engine_copy_active(const struct engine *e)
{
    return e->copy != NULL;
}

/* Room for every post and actor id there is now. */
static int ensure_room(struct engine *e, struct copy_job *j)
{
    size_t np = (size_t)e->posts.len + 1, na = (size_t)e->actors.len + 1;
    int rc = vm_ensure(&j->tos, np * sizeof(uint32_t));
    rc = rc ? rc : vm_ensure(&j->keys, np * sizeof(struct engine_post_key));
    rc = rc ? rc : vm_ensure(&j->pbits, (np + 63) / 64 * sizeof(uint64_t));
    rc = rc ? rc : vm_ensure(&j->reach, na * sizeof(uint32_t));
    rc = rc ? rc : vm_ensure(&j->abits, (na + 63) / 64 * sizeof(uint64_t));
    return rc;
}

int engine_copy_step(struct engine *e, uint64_t budget_ns, uint64_t budget_units,
                     struct engine_copy *out)
{
    struct copy_job *j = e->copy;
    if (!j)
        return -EINVAL;
    if (j->failed || ensure_room(e, j)) {
        copy_job_free(e);
        return -ENOMEM;
    }
    j->slices++;
    struct budget b = {budget_ns ? mono_ns() + budget_ns : 0,
                       budget_units ? budget_units : UINT64_MAX, 0, 0};
    while (!b.spent) {
        if (j->cur < e->posts.len)
            scan_posts(e, j, &b);
        else if (j->acur < e->actors.len)
            scan_actors(e, j, &b);
        else if (j->walk_root != NONE || j->head < j->nsubs)
            walk_subtrees(e, j, &b);
        else if (j->npbits)
            recopy(e, j, &j->pbits, &j->npbits, &j->pword, j->cur, 0, &b);
        else if (j->nabits)
            recopy(e, j, &j->abits, &j->nabits, &j->aword, j->acur, 1, &b);
        else {
            /* everything is as it is now: this is the copy's instant */
            memset(out, 0, sizeof(*out));
            out->nactors = e->actors.len;
            out->accepted = e->outcomes[EVENT_OK];
            out->shares = NULL; /* until engine_copy_settle */
            out->keys = j->keys.p;
            out->reach = j->reach.p;
            out->nslots = j->cur;
            out->slices = j->slices;
            out->job = j;
            e->copy = NULL;
            return 1;
        }
    }
    return 0;
}

int engine_copy_settle(struct engine_copy *s)
{
    struct copy_job *j = s->job;
    if (!j || j->settled)
        return 0;
    /* scratch first: the pages go back before the packed arrays are made */
    vm_free(&j->pbits);
    vm_free(&j->abits);
    free(j->subs);
    j->subs = NULL;
    const uint32_t *to = j->tos.p;
    struct engine_post_key *k = j->keys.p;
    size_t ns = 0, nk = 0;
    for (size_t i = 0; i < s->nslots; i++)
        ns += to[i] != 0;
    j->shares = malloc((ns + 1) * sizeof(struct engine_share));
    if (!j->shares)
        return -ENOMEM;
    size_t w = 0;
    for (size_t i = 0; i < s->nslots; i++) {
        if (to[i])
            j->shares[w++] = (struct engine_share){k[i].actor, to[i] - 1};
        if (k[i].content & K_KEY)
            k[nk++] = (struct engine_post_key){k[i].actor, k[i].content & K_CONTENT, k[i].ts};
    }
    vm_free(&j->tos);
    s->shares = j->shares;
    s->nshares = ns;
    s->keys = k;
    s->nkeys = nk;
    s->nslots = 0;
    vm_trim(&j->keys, nk * sizeof(struct engine_post_key));
    if (!j->keys.p)
        s->keys = NULL;
    j->settled = 1;
    return 0;
}

void engine_copy_free_shares(struct engine_copy *s)
{
    if (s->job) {
        free(s->job->shares);
        s->job->shares = NULL;
    }
    s->shares = NULL;
    s->nshares = 0;
}

int engine_copy_take(struct engine *e, struct engine_copy *s)
{
    memset(s, 0, sizeof(*s));
    int rc = engine_copy_begin(e);
    if (rc)
        return rc == -EALREADY ? -EBUSY : rc;
    rc = engine_copy_step(e, 0, 0, s);
    if (rc < 0)
        return rc;
    if ((rc = engine_copy_settle(s)))
        engine_copy_free(s);
    return rc;
}

void engine_copy_free(struct engine_copy *s)
{
    job_free(s->job);
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
