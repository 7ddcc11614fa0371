/* Delivery of a forest to an engine: an order for its events (parents late, subtrees before their
 * ancestors, chains backwards), noise mixed in (duplicates, some with changed fields; self
 * parents; cycles through placeholders; events that fail validation), through engine_apply_raw or
 * in batches through engine_apply. A model of what the engine must hold (the accepted set) gives
 * the expected outcome of every event as it is sent; at checkpoints the whole engine is checked
 * against the oracle of that set.
 *
 * Under retention the accepted set is what the engine still holds: retain.c's sweeps take posts
 * out of it as the engine should evict them, so a resent evicted post is expected to be new
 * again. Checkpoints then also hold the engine to a fresh engine fed the held posts' events,
 * and some save and load it and carry on with the loaded copy. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/persist.h"
#include "prop.h"

#define BATCH_CAP 64

struct retain_tally g_tally;

static const char *const kind_names[] = {"post", "share", "quote", "reply"};
static const char *const type_names[] = {"", "account", "page"};

/* One event as sent, with the bytes its fields point to. */
struct msg {
    struct event_raw raw;
    char post[ID_BUF], parent[ID_BUF], actor[ID_BUF];
    int expect;   /* enum event_outcome */
    int32_t node; /* the node it creates if accepted, else -1 */
};

struct run {
    const struct forest *f;
    struct rng *r;
    const struct delivery_opts *o;
    struct engine *e;
    uint8_t *accepted;   /* the model: what the engine holds once the batch is applied */
    uint8_t *first_type; /* per actor: first explicit actor_type accepted, in delivery order */
    uint32_t *acc_list, n_acc;
    uint64_t outcomes[EVENT_OUTCOME_COUNT];
    struct msg *batch; /* fixed storage: validated events borrow from it */
    struct event evs[BATCH_CAP];
    uint32_t n_batch, batch_target, seq;
    /* retention (o->retention_ms): the sweep model and what the engine's actors keep */
    struct retain ret;
    uint32_t *held;               /* per actor: its posts held */
    int64_t *ep_first, *ep_last;  /* per actor: its accepted posts' span since it had none held */
    uint32_t *gone, n_gone, *out; /* evicted nodes (for resends); sweep scratch */
};

const char *order_name(int order)
{
    static const char *const names[ORDER_ALL] = {
        "in", "reverse", "shuffle", "subtrees", "deepest_first", "nearly_sorted", "ts", "ts_late"};
    return order >= 0 && order < ORDER_ALL ? names[order] : "script";
}

/* ---- orders ---- */

static void shuffle(struct rng *r, uint32_t *a, uint32_t n)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = rng_below(r, i), t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* Emits the not yet emitted nodes of a few random subtrees first (pivots may nest, so a deep
 * subtree can come before the one that holds it), then the rest. */
static uint32_t order_subtrees(const struct forest *f, struct rng *r, uint32_t *out)
{
    uint8_t *done = calloc(f->n, 1), *in = calloc(f->n, 1);
    uint32_t m = 1 + rng_below(r, 4), len = 0;

    for (uint32_t p = 0; p < m; p++) {
        uint32_t pivot = rng_below(r, f->n), start = len;
        memset(in, 0, f->n);
        for (uint32_t k = pivot; k < f->n; k++) {
            int32_t par = f->nodes[k].parent;
            in[k] = k == pivot || (par >= (int32_t)pivot && in[par]);
            if (in[k] && !done[k]) {
                done[k] = 1;
                out[len++] = k;
            }
        }
        if (rng_chance(r, 50))
            shuffle(r, out + start, len - start);
    }
    uint32_t rest = len;
    for (uint32_t k = 0; k < f->n; k++)
        if (!done[k])
            out[len++] = k;
    if (rng_chance(r, 50))
        shuffle(r, out + rest, len - rest);
    free(done);
    free(in);
    return len;
}

static uint32_t order_deepest_first(const struct forest *f, uint32_t *out)
{
    uint32_t *depth = calloc(f->n, sizeof(*depth)), max = 0, len = 0;

    for (uint32_t k = 0; k < f->n; k++) {
        depth[k] = f->nodes[k].parent < 0 ? 0 : depth[f->nodes[k].parent] + 1;
        max = depth[k] > max ? depth[k] : max;
    }
    for (uint32_t d = max + 1; d-- > 0;)
        for (uint32_t k = 0; k < f->n; k++)
            if (depth[k] == d)
                out[len++] = k;
    free(depth);
    return len;
}

static const int64_t *g_keys; /* qsort has no context argument */

static int by_key(const void *pa, const void *pb)
{
    int64_t a = g_keys[*(const uint32_t *)pa], b = g_keys[*(const uint32_t *)pb];
    return (a > b) - (a < b);
}

/* By ts; with late > 0, 15% of the events held back by up to late ms of event time. */
static void order_by_ts(const struct forest *f, struct rng *r, int64_t late, uint32_t *out)
{
    int64_t *keys = calloc(f->n + 1, sizeof(*keys));

    for (uint32_t k = 0; k < f->n; k++) {
        keys[k] = f->nodes[k].ts;
        if (late > 0 && rng_chance(r, 15))
            keys[k] += 1 + rng_below(r, (uint32_t)late);
    }
    g_keys = keys;
    qsort(out, f->n, sizeof(*out), by_key);
    free(keys);
}

static void make_order(const struct forest *f, struct rng *r, const struct delivery_opts *o,
                       uint32_t *out)
{
    int order = o->order;

    for (uint32_t k = 0; k < f->n; k++)
        out[k] = order == ORDER_REVERSE ? f->n - 1 - k : k;
    if (order == ORDER_TS || order == ORDER_TS_LATE)
        order_by_ts(f, r, order == ORDER_TS_LATE ? 3 * o->retention_ms + 1 : 0, out);
    else if (order == ORDER_SHUFFLE)
        shuffle(r, out, f->n);
    else if (order == ORDER_SUBTREES)
        order_subtrees(f, r, out);
    else if (order == ORDER_DEEPEST_FIRST)
        order_deepest_first(f, out);
    else if (order == ORDER_NEARLY_SORTED)
        for (uint32_t i = 0; f->n > 1 && i < f->n / 4 + 1; i++) {
            uint32_t a = rng_below(r, f->n), b = a + rng_below(r, 6);
            b = b < f->n ? b : f->n - 1;
            uint32_t t = out[a];
            out[a] = out[b];
            out[b] = t;
        }
}

/* ---- building events ---- */

static struct event_field str_field(const char *s, uint32_t len)
{
    return (struct event_field){.type = EVF_STR, .len = len, .str = s};
}

static struct event_field cstr_field(const char *s)
{
    return str_field(s, (uint32_t)strlen(s));
}

/* An id as its decimal string or, for integer ids, sometimes as the integer itself: the engine
 * must treat both as one id. */
static struct event_field id_field(struct rng *r, int is_int, uint64_t value, char *buf,
                                   uint32_t len)
{
    if (is_int && rng_chance(r, 50))
        return (struct event_field){.type = EVF_UINT, .u = value};
    return str_field(buf, len);
}

static struct event_field post_field(const struct forest *f, struct rng *r, uint32_t k, char *buf)
{
    uint32_t len = post_id(f, k, buf);
    return id_field(r, f->nodes[k].int_id, f->int_base + k, buf, len);
}

static struct event_field actor_field(const struct forest *f, struct rng *r, uint32_t a, char *buf)
{
    uint32_t len = actor_id(f, a, buf);
    return id_field(r, f->actor_int[a], ACTOR_BASE + a, buf, len);
}

static struct event_field ts_field(int64_t ts)
{
    if (ts < 0)
        return (struct event_field){.type = EVF_NEGINT, .i = ts};
    return (struct event_field){.type = EVF_UINT, .u = (uint64_t)ts};
}

/* Optional strings: absent, or sometimes an explicit nil, when there is none. */
static struct event_field opt_field(struct rng *r, const char *s)
{
    if (s)
        return cstr_field(s);
    return (struct event_field){.type = rng_chance(r, 20) ? EVF_NIL : EVF_ABSENT};
}

/* The event that creates node k, as the forest says. */
static void build_real(struct run *run, uint32_t k, struct msg *m)
{
    const struct forest *f = run->f;
    const struct node *nd = &f->nodes[k];

    memset(m, 0, sizeof(*m));
    m->node = (int32_t)k;
    m->raw.post = post_field(f, run->r, k, m->post);
    m->raw.actor = actor_field(f, run->r, nd->actor, m->actor);
    m->raw.ts = ts_field(nd->ts);
    if (nd->parent >= 0)
        m->raw.parent = post_field(f, run->r, (uint32_t)nd->parent, m->parent);
    else
        m->raw.parent = opt_field(run->r, NULL);
    m->raw.kind = opt_field(run->r, nd->kind == KIND_DEFAULT ? NULL : kind_names[nd->kind]);
    m->raw.actor_type = opt_field(run->r, nd->type ? type_names[nd->type] : NULL);
    m->raw.content = opt_field(run->r, nd->content);
    m->raw.label = opt_field(run->r, nd->label);
    m->expect = run->accepted[k] ? EVENT_DUP : EVENT_OK;
}

/* A resend of an accepted post; half of them with other fields, which must change nothing. */
static void build_dup(struct run *run, struct msg *m)
{
    uint32_t k = run->acc_list[rng_below(run->r, run->n_acc)];

    build_real(run, k, m);
    if (rng_chance(run->r, 50))
        return;
    m->raw.actor = cstr_field(GHOST);
    m->raw.ts = ts_field(3);
    m->raw.label = cstr_field("true");
    m->raw.content = cstr_field("changed");
    uint32_t j = rng_below(run->r, run->f->n); /* maybe its own descendant: still a dup */
    if (j != k)
        m->raw.parent = post_field(run->f, run->r, j, m->parent);
    else
        m->raw.parent = cstr_field(GHOST_POST);
}

/* Under retention: the event of a post evicted since it was accepted, which is new again. Returns
 * 0 when no evicted post is found (by a few random tries). */
static int build_resend(struct run *run, struct msg *m)
{
    for (int tries = 0; run->n_gone && tries < 4; tries++) {
        uint32_t k = run->gone[rng_below(run->r, run->n_gone)];
        if (!run->accepted[k]) {
            build_real(run, k, m);
            g_tally.resends++;
            return 1;
        }
    }
    return 0;
}

static void build_self_parent(struct run *run, struct msg *m)
{
    uint32_t k = rng_below(run->r, run->f->n);

    build_real(run, k, m);
    m->raw.parent = post_field(run->f, run->r, k, m->parent);
    m->expect = EVENT_REJ_SELF_PARENT;
}

/* A post Y (accepted) below a placeholder X, found by a few random tries; 0 if none. */
static int find_under_placeholder(struct run *run, uint32_t *x_out, uint32_t *y_out)
{
    const struct forest *f = run->f;

    for (int tries = 0; tries < 8; tries++) {
        uint32_t y = run->acc_list[rng_below(run->r, run->n_acc)], x = y;
        while (run->accepted[x] && f->nodes[x].parent >= 0)
            x = (uint32_t)f->nodes[x].parent;
        if (!run->accepted[x]) {
            *x_out = x;
            *y_out = y;
            return 1;
        }
    }
    return 0;
}

/* An event for a placeholder X whose parent lies in X's own subtree. Returns 0 when no accepted
 * post was found below a placeholder. */
static int build_cycle(struct run *run, struct msg *m)
{
    const struct forest *f = run->f;
    uint32_t x, y;

    if (!find_under_placeholder(run, &x, &y))
        return 0;
    build_real(run, x, m);
    m->raw.parent = post_field(f, run->r, y, m->parent);
    if (rng_chance(run->r, 50))
        m->raw.actor = cstr_field(GHOST); /* a rejected event must not create its actor */
    m->expect = EVENT_REJ_CYCLE;
    m->node = -1;
    return 1;
}

/* One field of an event made invalid, and the rejection it must get. */
struct fault {
    size_t field; /* offsetof(struct event_raw, ...) */
    struct event_field value;
    int expect;
};

#define RAW(f) offsetof(struct event_raw, f)
static char long_str[EVENT_CONTENT_MAX + 1]; /* content of no importance: only its length */

static const struct fault faults[] = {
    {RAW(post), {.type = EVF_ABSENT}, EVENT_REJ_MISSING_POST},
    {RAW(post), {.type = EVF_NEGINT, .i = -1}, EVENT_REJ_BAD_TYPE},
    {RAW(post), {.type = EVF_STR, .len = EVENT_ID_MAX + 1, .str = long_str}, EVENT_REJ_TOO_LONG},
    {RAW(actor), {.type = EVF_STR, .len = 0, .str = ""}, EVENT_REJ_MISSING_ACTOR},
    {RAW(actor), {.type = EVF_OTHER}, EVENT_REJ_BAD_TYPE},
    {RAW(ts), {.type = EVF_NIL}, EVENT_REJ_MISSING_TS},
    {RAW(ts), {.type = EVF_STR, .len = 13, .str = "1700000000000"}, EVENT_REJ_BAD_TYPE},
    {RAW(ts), {.type = EVF_NEGINT, .i = -1}, EVENT_REJ_BAD_TS},
    {RAW(parent), {.type = EVF_NEGINT, .i = -3}, EVENT_REJ_BAD_TYPE},
    {RAW(parent), {.type = EVF_STR, .len = 0, .str = ""}, EVENT_REJ_BAD_TYPE},
    {RAW(kind), {.type = EVF_STR, .len = 6, .str = "repost"}, EVENT_REJ_BAD_TYPE},
    {RAW(actor_type), {.type = EVF_STR, .len = 5, .str = "group"}, EVENT_REJ_BAD_TYPE},
    {RAW(content),
     {.type = EVF_STR, .len = EVENT_CONTENT_MAX + 1, .str = long_str},
     EVENT_REJ_TOO_LONG},
    {RAW(label),
     {.type = EVF_STR, .len = EVENT_LABEL_MAX + 1, .str = long_str},
     EVENT_REJ_TOO_LONG},
};

/* An event for a real (maybe not yet sent) post that fails validation in one field: it must
 * not create the post, its placeholder parent or its actor. */
static void build_invalid(struct run *run, struct msg *m)
{
    const struct fault *ft = &faults[rng_below(run->r, sizeof(faults) / sizeof(faults[0]))];

    build_real(run, rng_below(run->r, run->f->n), m);
    memcpy((char *)&m->raw + ft->field, &ft->value, sizeof(ft->value));
    m->expect = ft->expect;
    m->node = -1;
}

/* ---- sending ---- */

static void trace_field(const char *key, const struct event_field *fl)
{
    if (fl->type == EVF_ABSENT)
        return;
    if (fl->type == EVF_STR)
        fprintf(stderr, ", \"%s\": \"%.*s\"", key, (int)fl->len, fl->str);
    else if (fl->type == EVF_UINT)
        fprintf(stderr, ", \"%s\": %llu", key, (unsigned long long)fl->u);
    else if (fl->type == EVF_NEGINT)
        fprintf(stderr, ", \"%s\": %lld", key, (long long)fl->i);
    else
        fprintf(stderr, ", \"%s\": %s", key, fl->type == EVF_NIL ? "null" : "1.5");
}

/* One NDJSON line per event, with the outcome the model expects: a replayable reproducer. */
static void trace_msg(struct run *run, const struct msg *m)
{
    const struct event_raw *r = &m->raw;

    fprintf(stderr, "{\"seq\": %u", run->seq);
    trace_field("post", &r->post);
    trace_field("actor", &r->actor);
    trace_field("ts", &r->ts);
    trace_field("parent", &r->parent);
    trace_field("kind", &r->kind);
    trace_field("actor_type", &r->actor_type);
    trace_field("content", &r->content);
    trace_field("label", &r->label);
    fprintf(stderr, "}  -> %s\n", event_outcome_name(m->expect));
}

/* A sweep of the retention model: the evicted posts leave the accepted set, and an actor left
 * with none starts afresh (its first type, first_ts and last_ts come from its next posts). */
static void model_sweep(struct run *run)
{
    const struct forest *f = run->f;
    uint64_t before = run->ret.evicted_cascades;
    uint32_t n = retain_sweep(&run->ret, f, run->accepted, run->out), m = 0;

    g_tally.sweeps++;
    g_tally.evicted_cascades += run->ret.evicted_cascades - before;
    g_tally.evicted_posts += n;

    if (run->o->trace)
        fprintf(stderr, "# sweep to cut %lld: %u posts evicted\n", (long long)run->ret.cut, n);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t a = f->nodes[run->out[i]].actor;
        if (--run->held[a] == 0)
            run->first_type[a] = EVENT_ACTOR_UNSPECIFIED;
        run->gone[run->n_gone++] = run->out[i];
    }
    for (uint32_t i = 0; n && i < run->n_acc; i++)
        if (run->accepted[run->acc_list[i]])
            run->acc_list[m++] = run->acc_list[i];
    run->n_acc = n ? m : run->n_acc;
    /* the evicted list only feeds resends: keep the ones not held again, at most f->n */
    if (run->n_gone > f->n) {
        m = 0;
        for (uint32_t i = 0; i < run->n_gone; i++)
            if (!run->accepted[run->gone[i]] && m < f->n)
                run->gone[m++] = run->gone[i];
        run->n_gone = m;
    }
}

/* The model's side of sending m: tallies and, if it is accepted, the new post. */
static void model_apply(struct run *run, const struct msg *m)
{
    run->outcomes[m->expect]++;
    run->seq++;
    if (m->expect != EVENT_OK)
        return;
    const struct node *nd = &run->f->nodes[m->node];
    run->accepted[m->node] = 1;
    run->acc_list[run->n_acc++] = (uint32_t)m->node;
    if (!run->first_type[nd->actor])
        run->first_type[nd->actor] = nd->type;
    if (!run->o->retention_ms)
        return;
    if (run->held[nd->actor]++ == 0)
        run->ep_first[nd->actor] = run->ep_last[nd->actor] = nd->ts;
    if (nd->ts < run->ep_first[nd->actor])
        run->ep_first[nd->actor] = nd->ts;
    if (nd->ts > run->ep_last[nd->actor])
        run->ep_last[nd->actor] = nd->ts;
    if (retain_accepted(&run->ret, nd->ts))
        model_sweep(run);
}

static void flush(struct run *run)
{
    uint8_t outs[BATCH_CAP];
    size_t ok = 0;

    if (run->n_batch == 0)
        return;
    g_ctx.phase = "engine_apply batch";
    size_t got = engine_apply(run->e, run->evs, run->n_batch, outs);
    for (uint32_t i = 0; i < run->n_batch; i++) {
        if (outs[i] != run->batch[i].expect)
            prop_fail("event %u of a batch of %u (post %s): expected %s, got %s", i, run->n_batch,
                      event_id_str(&run->evs[i].post), event_outcome_name(run->batch[i].expect),
                      event_outcome_name(outs[i]));
        ok += outs[i] == EVENT_OK;
    }
    EXPECT_INT("engine_apply's count of accepted events", ok, got);
    run->n_batch = 0;
    if (run->o->batch_max)
        run->batch_target = 1 + rng_below(run->r, run->o->batch_max);
}

static void send_raw(struct run *run, const struct msg *m)
{
    g_ctx.phase = "engine_apply_raw";
    int got = engine_apply_raw(run->e, &m->raw);
    if (got != m->expect)
        prop_fail("event #%u: expected %s, got %s (PROPERTY_TRACE=1 prints the events)", run->seq,
                  event_outcome_name(m->expect), event_outcome_name(got));
}

/* Copies m, pointing the copy's string fields at the copy's own buffers. */
static void msg_copy(struct msg *dst, const struct msg *src)
{
    struct event_field *fields[] = {&dst->raw.post,    &dst->raw.actor, &dst->raw.ts,
                                    &dst->raw.parent,  &dst->raw.kind,  &dst->raw.actor_type,
                                    &dst->raw.content, &dst->raw.label};
    uintptr_t lo = (uintptr_t)src, hi = lo + sizeof(*src);

    *dst = *src;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        uintptr_t p = (uintptr_t)fields[i]->str;
        if (p >= lo && p < hi)
            fields[i]->str = (const char *)dst + (p - lo);
    }
}

/* Valid events join the batch (or go alone without batching); invalid ones must fail
 * validation as expected and then go through engine_apply_raw after the batch. */
static void send(struct run *run, const struct msg *m)
{
    struct event ev;
    int v = event_validate(&m->raw, &ev);
    int fails_validation =
        m->expect != EVENT_OK && m->expect != EVENT_DUP && m->expect != EVENT_REJ_CYCLE;

    g_ctx.step = run->seq;
    if (run->o->trace)
        trace_msg(run, m);
    if (fails_validation)
        EXPECT_INT("event_validate of an invalid event (outcome)", m->expect, v);
    else
        EXPECT_INT("event_validate of a valid event (outcome)", EVENT_OK, v);
    if (fails_validation || run->o->batch_max == 0) {
        flush(run);
        send_raw(run, m);
    } else {
        msg_copy(&run->batch[run->n_batch], m);
        event_validate(&run->batch[run->n_batch].raw, &run->evs[run->n_batch]);
        if (++run->n_batch >= run->batch_target)
            flush(run);
    }
    model_apply(run, m);
}

/* ---- retention's checks ---- */

/* A new engine, without retention, fed the held posts' events (in index order, parents first,
 * or shuffled). */
static struct engine *fresh_engine(struct run *run)
{
    const struct forest *f = run->f;
    uint32_t *order = calloc(f->n + 1, sizeof(*order)), n = 0;
    struct engine *fresh;
    struct msg m;

    if (engine_new(&fresh) != 0)
        prop_fail("engine_new failed");
    for (uint32_t k = 0; k < f->n; k++)
        if (run->accepted[k])
            order[n++] = k;
    if (rng_chance(run->r, 50))
        shuffle(run->r, order, n);
    g_ctx.phase = "feeding the fresh engine";
    for (uint32_t i = 0; i < n; i++) {
        build_real(run, order[i], &m);
        int got = engine_apply_raw(fresh, &m.raw);
        if (got != EVENT_OK)
            prop_fail("fresh engine: post %s: %s", m.post, event_outcome_name(got));
    }
    free(order);
    return fresh;
}

/* The engine's bytes as engine_save writes them, read back (into *len bytes). */
static uint8_t *save_bytes(struct engine *e, size_t *len)
{
    int fd = memfd_create("retention-snapshot", 0);
    uint64_t bytes = 0;

    if (fd < 0)
        prop_fail("memfd_create failed");
    int rc = engine_save(e, fd, "u", 1, &bytes);
    if (rc != 0)
        prop_fail("engine_save: %d", rc);
    uint8_t *buf = malloc(bytes + 1);
    if (pread(fd, buf, bytes, 0) != (ssize_t)bytes)
        prop_fail("reading the snapshot back failed");
    close(fd);
    *len = bytes;
    return buf;
}

static struct engine *load_bytes(const uint8_t *buf, size_t len, int64_t retention_ms)
{
    struct engine *e;
    char err[256] = "", user[ENGINE_PERSIST_USER_MAX];
    uint32_t ulen = 0;
    int rc = engine_load_mem(buf, len, &e, user, &ulen, err, sizeof(err));

    if (rc != 0)
        prop_fail("engine_load_mem: %d (%s)", rc, err);
    if (retention_ms && (rc = engine_set_retention(e, retention_ms)) != 0)
        prop_fail("engine_set_retention after a load: %d", rc);
    return e;
}

/* A snapshot of the engine loaded twice: without retention it must answer as the original
 * (but for the retention itself), and with it the loaded copy replaces the original from here
 * on, so that everything after (sweeps, id reuse, resends) runs on loaded state. */
static void persist_swap(struct run *run)
{
    int64_t ms = run->o->retention_ms;
    struct agree how = {.exact = 1, .growth_max = ms};
    struct engine_stats st;
    size_t len;
    uint8_t *buf = save_bytes(run->e, &len);

    g_ctx.phase = "loaded without retention vs the original";
    struct engine *plain = load_bytes(buf, len, 0);
    engine_get_stats(plain, &st);
    EXPECT_INT("loaded without retention: retention_ms", 0, st.retention_ms);
    how.what = g_ctx.phase;
    engines_agree(plain, run->e, run->f, run->r, &how);
    engine_free(plain);

    g_ctx.phase = "loaded with retention vs the original";
    struct engine *loaded = load_bytes(buf, len, ms);
    how.what = g_ctx.phase;
    engines_agree(loaded, run->e, run->f, run->r, &how);
    engine_free(run->e);
    run->e = loaded;
    free(buf);
    g_tally.loads++;
}

static void check_retention(struct run *run)
{
    const struct retain *m = &run->ret;
    struct engine_stats st;

    g_tally.checkpoints++;
    g_ctx.phase = "retention stats";
    engine_get_stats(run->e, &st);
    EXPECT_INT("stats retained_from (the cut)", m->swept ? m->cut : 0, st.retained_from);
    EXPECT_INT("stats evicted_cascades", m->evicted_cascades, st.evicted_cascades);
    EXPECT_INT("stats evicted_posts", m->evicted_posts, st.evicted_posts);
    struct engine *fresh = fresh_engine(run);
    /* the analytics worker's copy lets emptied names go: half the time, in both engines */
    struct agree how = {.growth_max = run->o->retention_ms,
                        .take = rng_chance(run->r, 50),
                        .what = "the engine vs a fresh engine fed its held posts"};
    g_ctx.phase = how.what;
    engines_agree(run->e, fresh, run->f, run->r, &how);
    engine_free(fresh);
    if (rng_chance(run->r, run->o->persist_pct))
        persist_swap(run);
}

static void checkpoint(struct run *run, int full)
{
    struct model m = {run->accepted, run->first_type, run->outcomes};

    flush(run);
    if (run->o->retention_ms) {
        m.retention_ms = run->o->retention_ms;
        m.actor_first = run->ep_first;
        m.actor_last = run->ep_last;
    }
    g_ctx.phase = full ? "final check" : "checkpoint";
    check_engine(run->e, run->f, &m, run->r, full);
    if (run->o->retention_ms)
        check_retention(run);
}

static void maybe_noise(struct run *run)
{
    struct msg m;

    if (!rng_chance(run->r, run->o->noise_pct))
        return;
    switch (rng_below(run->r, run->o->retention_ms ? 5 : 4)) {
    case 0:
        if (run->n_acc == 0)
            return;
        build_dup(run, &m);
        break;
    case 1:
        build_self_parent(run, &m);
        break;
    case 2:
        if (run->n_acc == 0 || !build_cycle(run, &m))
            return;
        break;
    case 3:
        build_invalid(run, &m);
        break;
    default:
        if (!build_resend(run, &m))
            return;
        break;
    }
    send(run, &m);
}

static void run_init(struct run *run, const struct forest *f, struct rng *r,
                     const struct delivery_opts *o)
{
    memset(run, 0, sizeof(*run));
    run->f = f;
    run->r = r;
    run->o = o;
    memset(long_str, 'z', sizeof(long_str)); /* readable in traces */
    run->accepted = calloc(f->n, 1);
    run->first_type = calloc(f->n_actors, 1);
    run->acc_list = calloc(f->n, sizeof(*run->acc_list));
    run->batch = calloc(BATCH_CAP, sizeof(*run->batch));
    run->batch_target = o->batch_max ? 1 + rng_below(r, o->batch_max) : 1;
    if (engine_new(&run->e) != 0)
        prop_fail("engine_new failed");
    if (!o->retention_ms)
        return;
    if (engine_set_retention(run->e, o->retention_ms) != 0)
        prop_fail("engine_set_retention(%lld) failed", (long long)o->retention_ms);
    retain_init(&run->ret, o->retention_ms, f->n);
    run->held = calloc(f->n_actors, sizeof(*run->held));
    run->ep_first = calloc(f->n_actors, sizeof(*run->ep_first));
    run->ep_last = calloc(f->n_actors, sizeof(*run->ep_last));
    run->gone = calloc(2 * f->n + 1, sizeof(*run->gone));
    run->out = calloc(f->n + 1, sizeof(*run->out));
}

static uint32_t delivery_order(const struct forest *f, struct rng *r, const struct delivery_opts *o,
                               uint32_t *order)
{
    uint32_t len = 0;

    if (o->script) {
        memcpy(order, o->script, o->script_len * sizeof(*order));
        return o->script_len;
    }
    make_order(f, r, o, order);
    for (uint32_t i = 0; i < f->n; i++)
        if (!f->nodes[order[i]].withheld)
            order[len++] = order[i];
    return len;
}

struct engine *deliver(const struct forest *f, struct rng *r, const struct delivery_opts *o)
{
    struct run run;
    struct msg m;
    uint32_t *order = calloc(f->n + (o->script ? o->script_len : 0), sizeof(*order));
    uint32_t len = delivery_order(f, r, o, order);

    run_init(&run, f, r, o);
    for (uint32_t i = 0; i < len; i++) {
        maybe_noise(&run);
        build_real(&run, order[i], &m);
        send(&run, &m);
        if (rng_below(r, len) < o->checkpoints)
            checkpoint(&run, 0);
    }
    maybe_noise(&run);
    checkpoint(&run, 1);
    free(order);
    free(run.accepted);
    free(run.first_type);
    free(run.acc_list);
    free(run.batch);
    retain_free(&run.ret);
    free(run.held);
    free(run.ep_first);
    free(run.ep_last);
    free(run.gone);
    free(run.out);
    return run.e;
}
