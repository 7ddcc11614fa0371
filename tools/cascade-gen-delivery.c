/* cascade-gen's delivery: what a flaky producer does to a clean stream (late parents, duplicates,
 * invalid events). Own random stream, bad events numbered past the model's posts: the valid events
 * are the same with faults on or off, only their order and the extra lines differ. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/u64map.h"
#include "cascade-gen.h"

#define DUP_SPAN 5000 /* a duplicate follows its original within this many lines */

/* A resend waiting for its line. */
struct resend {
    uint64_t due; /* line number it goes out at */
    struct gen_event ev;
};

struct delivery {
    struct sink *sink;
    struct gen_rng rng;
    double p_late, p_dup, p_bad, late_credit;
    struct u64map held_at;   /* post number -> slot in held */
    struct gen_event *held;  /* held-back parents; free slots chained through .post */
    uint32_t held_cap, free; /* free: first free slot + 1, 0 for none */
    struct resend *resends;  /* min-heap on due */
    size_t resends_len, resends_cap;
    uint64_t next_bad_post, *page_seen;
    struct delivery_counts counts;
};

int delivery_new(struct delivery **out, const struct gen_opts *o, uint64_t pages, struct sink *sink)
{
    struct delivery *d = calloc(1, sizeof *d);
    *out = d;
    if (!d)
        return -ENOMEM;
    d->sink = sink;
    gen_rng_seed(&d->rng, o->model.seed, 2);
    d->p_late = o->late_parents;
    d->p_dup = o->duplicates;
    d->p_bad = o->bad_events;
    d->next_bad_post = o->model.events + 1;
    d->page_seen = calloc(pages / 64 + 1, sizeof *d->page_seen);
    if (!d->page_seen || u64map_init(&d->held_at, 1))
        return -ENOMEM;
    return 0;
}

void delivery_free(struct delivery *d)
{
    if (!d)
        return;
    u64map_destroy(&d->held_at);
    free(d->held);
    free(d->resends);
    free(d->page_seen);
    free(d);
}

struct delivery_counts delivery_counts(const struct delivery *d)
{
    return d->counts;
}

/* ---- resends ---- */

static int resend_push(struct delivery *d, uint64_t due, const struct gen_event *ev)
{
    if (d->resends_len == d->resends_cap) {
        size_t cap = d->resends_cap ? 2 * d->resends_cap : 256;
        struct resend *r = realloc(d->resends, cap * sizeof *r);
        if (!r)
            return -ENOMEM;
        d->resends = r;
        d->resends_cap = cap;
    }
    size_t i = d->resends_len++;
    while (i && d->resends[(i - 1) / 2].due > due) {
        d->resends[i] = d->resends[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    d->resends[i] = (struct resend){.due = due, .ev = *ev};
    return 0;
}

static struct gen_event resend_pop(struct delivery *d)
{
    struct gen_event top = d->resends[0].ev;
    struct resend last = d->resends[--d->resends_len];
    size_t i = 0, n = d->resends_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && d->resends[c + 1].due < d->resends[c].due)
            c++;
        if (d->resends[c].due >= last.due)
            break;
        d->resends[i] = d->resends[c];
        i = c;
    }
    if (n)
        d->resends[i] = last;
    return top;
}

/* One line out, then any resends that have come due. */
static int write_line(struct delivery *d, const struct gen_event *ev)
{
    int rc = sink_event(d->sink, ev);
    d->counts.lines++;
    while (!rc && d->resends_len && d->resends[0].due <= d->counts.lines) {
        struct gen_event dup = resend_pop(d);
        rc = sink_event(d->sink, &dup);
        d->counts.lines++;
        d->counts.duplicates++;
    }
    return rc;
}

/* ---- one valid event on the wire, with the faults that follow it ---- */

/* An invalid copy under a fresh post number: one of the ways producers get events wrong. */
static struct gen_event corrupt(struct delivery *d, const struct gen_event *ev)
{
    struct gen_event bad = *ev;
    bad.post = d->next_bad_post++;
    bad.flags &= (uint8_t)~EV_ACTOR_TYPE;
    bad.bad = (uint8_t)(BAD_NONE + 1 + gen_rng_below(&d->rng, BAD_KINDS - 1));
    if (bad.bad == BAD_SELF_PARENT)
        bad.parent = bad.post;
    return bad;
}

static int send_valid(struct delivery *d, struct gen_event *ev)
{
    if ((ev->flags & EV_PAGE) && !(d->page_seen[ev->actor / 64] & 1ULL << ev->actor % 64)) {
        d->page_seen[ev->actor / 64] |= 1ULL << ev->actor % 64; /* page numbers are 1..pages */
        ev->flags |= EV_ACTOR_TYPE;
    }
    int rc = write_line(d, ev);
    if (!rc && d->p_dup > 0 && gen_rng_u01(&d->rng) < d->p_dup)
        rc = resend_push(d, d->counts.lines + 1 + gen_rng_below(&d->rng, DUP_SPAN), ev);
    if (!rc && d->p_bad > 0 && gen_rng_u01(&d->rng) < d->p_bad) {
        struct gen_event bad = corrupt(d, ev);
        rc = write_line(d, &bad);
        d->counts.bad++;
    }
    return rc;
}

/* ---- late parents ---- */

static int hold(struct delivery *d, const struct gen_event *ev)
{
    if (!d->free) {
        uint32_t cap = d->held_cap ? 2 * d->held_cap : 256;
        struct gen_event *h = realloc(d->held, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        for (uint32_t i = d->held_cap; i < cap; i++)
            h[i].post = i + 1 < cap ? i + 2 : 0;
        d->free = d->held_cap + 1;
        d->held = h;
        d->held_cap = cap;
    }
    if (u64map_reserve(&d->held_at, 1))
        return -ENOMEM;
    uint32_t slot = d->free - 1;
    d->free = (uint32_t)d->held[slot].post;
    d->held[slot] = *ev;
    int created;
    *u64map_put(&d->held_at, ev->post, &created) = slot;
    return 0;
}

/* Takes post out of the held set into *ev; 0 if it was not held. */
static int release(struct delivery *d, uint64_t post, struct gen_event *ev)
{
    uint32_t *slot = d->held_at.count ? u64map_get(&d->held_at, post) : NULL;
    if (!slot)
        return 0;
    uint32_t i = *slot;
    *ev = d->held[i];
    u64map_del(&d->held_at, post);
    d->held[i].post = d->free;
    d->free = i + 1;
    return 1;
}

/* Sends ev; if its parent was held back, the parent goes right after it (and so on up). */
static int send_chain(struct delivery *d, struct gen_event ev)
{
    for (;;) {
        int rc = send_valid(d, &ev);
        if (rc || !ev.parent || !release(d, ev.parent, &ev))
            return rc;
        d->counts.late++; /* the event just sent came before its parent */
    }
}

/* A parent is held only when it has reshares coming: each hold then makes one late event. The
 * credit spreads holds evenly, so the late fraction is --late-parents whatever share of posts
 * have reshares (as long as enough do; a child of a held parent is never held itself). */
int delivery_push(struct delivery *d, const struct gen_event *ev)
{
    d->late_credit += d->p_late;
    int parent_held = ev->parent && d->held_at.count && u64map_has(&d->held_at, ev->parent);
    if (ev->children && !parent_held && d->late_credit >= 1.0) {
        d->late_credit -= 1.0;
        return hold(d, ev);
    }
    return send_chain(d, *ev);
}

static int cmp_post(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Parents whose reshares never came (the stream ended first) go out in post order, then the
 * resends still waiting. */
int delivery_finish(struct delivery *d)
{
    uint64_t n = 0, *posts = malloc((d->held_at.count + 1) * sizeof *posts);
    if (!posts)
        return -ENOMEM;
    u64map_finish(&d->held_at);
    for (uint64_t i = 0; i <= d->held_at.t.mask; i++)
        if (u64map_slot(&d->held_at, i, &posts[n]))
            n++;
    qsort(posts, n, sizeof *posts, cmp_post);
    int rc = 0;
    struct gen_event ev;
    for (uint64_t i = 0; !rc && i < n; i++)
        if (release(d, posts[i], &ev))
            rc = send_chain(d, ev);
    free(posts);
    while (!rc && d->resends_len) {
        ev = resend_pop(d);
        rc = sink_event(d->sink, &ev);
        d->counts.lines++;
        d->counts.duplicates++;
    }
    return rc;
}
