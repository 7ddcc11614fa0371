/* Delivery of a forest to an engine: an order for its events (parents late, subtrees before their
 * ancestors, chains backwards), noise mixed in (duplicates, some with changed fields; self
 * parents; cycles through placeholders; events that fail validation), through engine_apply_raw or
 * in batches through engine_apply. A model of what the engine must hold (the accepted set) gives
 * the expected outcome of every event as it is sent; at checkpoints the whole engine is checked
 * against the oracle of that set. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prop.h"

#define BATCH_CAP 64

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
};

const char *order_name(int order)
{
    static const char *const names[ORDER_COUNT] = {"in",       "reverse",       "shuffle",
                                                   "subtrees", "deepest_first", "nearly_sorted"};
    return order >= 0 && order < ORDER_COUNT ? names[order] : "script";
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

static void make_order(const struct forest *f, struct rng *r, int order, uint32_t *out)
{
    for (uint32_t k = 0; k < f->n; k++)
        out[k] = order == ORDER_REVERSE ? f->n - 1 - k : k;
    if (order == ORDER_SHUFFLE)
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
    m->raw.ts = ts_field(-1);
    m->raw.label = cstr_field("true");
    m->raw.content = cstr_field("changed");
    uint32_t j = rng_below(run->r, run->f->n); /* maybe its own descendant: still a dup */
    if (j != k)
        m->raw.parent = post_field(run->f, run->r, j, m->parent);
    else
        m->raw.parent = cstr_field(GHOST_POST);
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

static void checkpoint(struct run *run, int full)
{
    struct model m = {run->accepted, run->first_type, run->outcomes};

    flush(run);
    g_ctx.phase = full ? "final check" : "checkpoint";
    check_engine(run->e, run->f, &m, run->r, full);
}

static void maybe_noise(struct run *run)
{
    struct msg m;

    if (!rng_chance(run->r, run->o->noise_pct))
        return;
    switch (rng_below(run->r, 4)) {
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
    default:
        build_invalid(run, &m);
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
}

static uint32_t delivery_order(const struct forest *f, struct rng *r, const struct delivery_opts *o,
                               uint32_t *order)
{
    uint32_t len = 0;

    if (o->script) {
        memcpy(order, o->script, o->script_len * sizeof(*order));
        return o->script_len;
    }
    make_order(f, r, o->order, order);
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
    return run.e;
}
