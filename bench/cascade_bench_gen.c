/* The workload: share events from the shared workload model (include/cascade/gen.h, cascade-gen's
 * and engine-bench's), msgpack-encoded by proto_event_pack into per-connection batches before any
 * clock runs, so that sending costs the client only writev-sized copies and the figures measure
 * the server. A cascade's events all go over one connection, in event-time order, so that no
 * reshare arrives before its parent. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/gen.h"
#include "cascade/proto.h"
#include "cascade_bench.h"

#define ID_BYTES 96 /* one id: a prefix of at most 64 bytes and 20 digits */

/* ---- encoding ---- */

/* msgpack-c's packers ignore a failed write; the stream remembers it instead, and the encoder
 * checks once at the end (an out-of-memory workload is a setup error, not a result). */
struct stream_ext {
    struct stream s;
    int oom;
};

static int write_out(void *data, const char *buf, size_t len)
{
    struct stream_ext *x = data;
    if (msgpack_sbuffer_write(&x->s.out, buf, len))
        x->oom = 1;
    return 0;
}

static int write_body(void *data, const char *buf, size_t len)
{
    struct stream_ext *x = data;
    if (msgpack_sbuffer_write(&x->s.body, buf, len))
        x->oom = 1;
    return 0;
}

static void set_str(struct event_field *f, const char *s, uint32_t len)
{
    *f = (struct event_field){.type = EVF_STR, .str = s, .len = len};
}

struct encoder {
    const struct load_spec *sp;
    uint64_t accounts; /* pages are u<accounts + n>: one actor space, as the query load asks */
    uint32_t *actor_of;
};

/* One event of the model as the map the ingest port takes. Posts are <prefix><k> with k from 0
 * (the query load's ids), actors u<n>; a page says so on every post. */
static void pack_event(msgpack_packer *pk, struct encoder *e, const struct gen_event *ev)
{
    static const char *const kinds[] = {NULL, "quote", "reply"};
    char post[ID_BYTES], actor[ID_BYTES], parent[ID_BYTES], content[ID_BYTES];
    struct event_raw raw = {0};
    uint64_t a = ev->flags & GEN_EV_PAGE ? e->accounts + ev->actor : ev->actor;
    const char *label = gen_label_name(ev->label);
    if (e->actor_of)
        e->actor_of[ev->post - 1] = (uint32_t)a;
    set_str(&raw.post, post, gen_put_id(post, e->sp->prefix, ev->post - 1));
    set_str(&raw.actor, actor, gen_put_id(actor, "u", a));
    raw.ts = (struct event_field){.type = EVF_UINT, .u = (uint64_t)ev->ts};
    if (ev->flags & GEN_EV_PAGE)
        set_str(&raw.actor_type, "page", 4);
    if (ev->parent)
        set_str(&raw.parent, parent, gen_put_id(parent, e->sp->prefix, ev->parent - 1));
    if (ev->kind && ev->kind < 3)
        set_str(&raw.kind, kinds[ev->kind], (uint32_t)strlen(kinds[ev->kind]));
    if (ev->url)
        set_str(&raw.content, content, gen_put_id(content, "https://news.example/", ev->url));
    if (label)
        set_str(&raw.label, label, (uint32_t)strlen(label));
    proto_event_pack(pk, &raw); /* a failed write is the stream's oom, checked at the end */
}

static void stream_init(struct stream_ext *x)
{
    msgpack_sbuffer_init(&x->s.out);
    msgpack_sbuffer_init(&x->s.body);
    msgpack_packer_init(&x->s.out_pk, x, write_out);
    msgpack_packer_init(&x->s.body_pk, x, write_body);
}

/* Closes the current batch: its array header, then its events, then its mark. */
static void stream_flush(struct stream_ext *x)
{
    struct stream *s = &x->s;
    if (!s->in_body)
        return;
    msgpack_pack_array(&s->out_pk, s->in_body);
    write_out(x, s->body.data, s->body.size);
    msgpack_sbuffer_clear(&s->body);
    if (s->nmarks == s->cap) {
        uint64_t cap = s->cap ? 2 * s->cap : 1024;
        struct mark *m = realloc(s->marks, cap * sizeof *m);
        if (!m) {
            x->oom = 1;
            return;
        }
        s->marks = m, s->cap = cap;
    }
    s->events += s->in_body;
    s->marks[s->nmarks++] = (struct mark){s->out.size, s->events};
    s->in_body = 0;
}

static void stream_free(struct stream *s)
{
    msgpack_sbuffer_destroy(&s->out);
    msgpack_sbuffer_destroy(&s->body);
    free(s->marks);
}

/* Runs the model and appends each event to its cascade's connection (chosen by a hash of the
 * cascade's root, so that every cascade keeps to one). */
static int encode(struct workload *w, struct stream_ext *xs, const struct load_spec *sp,
                  uint32_t *actor_of)
{
    struct gen_params p;
    struct gen_model *m;
    char err[160];
    gen_params_bench(&p, sp->events, sp->seed); /* engine-bench's stream for the same seed */
    int rc = gen_model_new(&m, &p, err, sizeof err);
    if (rc)
        return rc;
    uint32_t *root = malloc(sp->events * sizeof *root), *size = calloc(sp->events, sizeof *size);
    struct encoder e = {.sp = sp, .accounts = gen_model_spaces(m).accounts, .actor_of = actor_of};
    int oom = !root || !size;
    struct gen_event ev;
    for (uint32_t c = 0; c < sp->conns; c++)
        stream_init(&xs[c]);
    for (uint64_t i = 0; !oom && i < sp->events; i++) {
        if ((rc = gen_model_next(m, &ev)) != 1) {
            oom = 1;
            break;
        }
        uint32_t k = (uint32_t)(ev.post - 1), r = ev.parent ? root[ev.parent - 1] : k;
        root[k] = r;
        w->cascades += !ev.parent;
        if (++size[r] > w->largest)
            w->largest = size[r];
        struct stream_ext *x = &xs[gen_mix64(r ^ sp->seed) % sp->conns];
        pack_event(&x->s.body_pk, &e, &ev);
        if (++x->s.in_body == sp->batch)
            stream_flush(x);
    }
    for (uint32_t c = 0; c < sp->conns; c++) {
        stream_flush(&xs[c]);
        oom |= xs[c].oom;
    }
    gen_model_free(m);
    free(root);
    free(size);
    return oom ? -ENOMEM : 0;
}

/* Generating and encoding are one pass: gen_s holds both, enc_s stays 0. */
int workload_build(struct workload *w, const struct load_spec *spec, int keep_actors)
{
    struct stream_ext *xs = calloc(spec->conns, sizeof *xs);
    *w = (struct workload){.spec = *spec};
    w->st = calloc(spec->conns, sizeof *w->st);
    w->actor = keep_actors ? calloc(spec->events, sizeof *w->actor) : NULL;
    if (!xs || !w->st || (keep_actors && !w->actor)) {
        free(xs);
        workload_free(w);
        return -ENOMEM;
    }
    uint64_t t0 = now_ns();
    int rc = encode(w, xs, spec, w->actor);
    w->gen_s = secs(now_ns() - t0);
    for (uint32_t c = 0; c < spec->conns; c++) {
        w->st[c] = xs[c].s; /* the packers point into xs: they are not used after this */
        w->bytes += xs[c].s.out.size;
    }
    free(xs);
    if (rc)
        workload_free(w);
    return rc;
}

void workload_free(struct workload *w)
{
    for (uint32_t c = 0; w->st && c < w->spec.conns; c++)
        stream_free(&w->st[c]);
    free(w->st);
    free(w->actor);
    w->st = NULL;
    w->actor = NULL;
}
