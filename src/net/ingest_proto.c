/* The ingest protocol's decoder (DESIGN §4). The header scanner (core/mpscan.h) checks every
 * msgpack header against the limits as bytes arrive, since msgpack-c allocates a container when
 * it reads its header, and adds up what unpacking the value will cost; the msgpack-c unpacker
 * behind it sees approved bytes only, parses only complete values, and only once their cost is
 * reserved in the process's decoding budget. */
#include "net/ingest_proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>

#include "core/mpscan.h"

/* The unpacker's buffer starts at this size and grows to hold the largest value in flight. */
#define UNPACKER_INITIAL (32 * 1024)

/* After a value is delivered, a buffer grown past this is given back (see shrink_unpacker). */
#define UNPACKER_SHRINK_ABOVE (8 * UNPACKER_INITIAL)

/* feed() copies the caller's bytes in slices of this size, so that a huge buffer ending in a bad
 * header cannot make it reserve more than one slice beyond what is approved. */
#define FEED_SLICE (256 * 1024)

struct ingest_decoder {
    struct mpscan sc;              /* the value being approved */
    uint64_t value_start;          /* its stream offset */
    uint64_t complete;             /* top-level values approved to their last byte */
    msgpack_unpacker *mp;          /* a pointer: msgpack-c's context points back into the struct */
    uint64_t pos;                  /* stream offset of the first byte not yet approved */
    uint8_t held[MPSCAN_HEAD_MAX]; /* the start of a header whose length bytes have not all come */
    size_t held_len;
    int feed_err;  /* 0, or what feed() returns from now on (-EPROTO, -ENOMEM) */
    int drain_err; /* 0, or what drain() returns from now on: msgpack-c's state is lost */

    msgpack_object cur; /* the value being delivered; its objects live in mp's zone */
    bool have_cur;
    uint32_t cur_events; /* events in it: an array's elements, else 1 */
    uint32_t cur_next;   /* the next one to deliver */
    uint64_t cur_bytes;  /* its size in the stream */
    uint64_t taken;      /* values msgpack-c has parsed */
    uint64_t delivered;  /* stream bytes of the values fully delivered */

    struct ingest_budget *budget;
    struct reservation {
        uint64_t value; /* which (the count of values approved before it) */
        uint64_t cost;
    } *res;                       /* values holding budget, oldest first: res[res_head..res_n) */
    uint32_t res_head, res_n, res_cap;

    int64_t max_future_ms; /* see ingest_limits */
    int64_t ts_max;        /* the events of this drain: event_ts_max at its start */

    char err[160];
    enum ingest_violation violation; /* which limit ended the stream, if one did */
};

void ingest_limits_default(struct ingest_limits *l)
{
    l->max_value_bytes = 4u << 20;
    l->max_value_memory = 64u << 20;
    l->budget = NULL;
    l->max_array = 100000;
    l->max_map = 64;
    l->max_depth = 8;
    l->max_str = 65536;
    l->max_future_ms = 86400000;
}

/* The limits are the scanner's: its max_bytes is the value's, and it lowers max_depth to what
 * msgpack-c can parse (deeper nesting would pass the scanner and then fail in msgpack-c). */
_Static_assert(INGEST_LIMIT_VALUE == (int)MPSCAN_LIM_BYTES &&
                   INGEST_LIMIT_ARRAY == (int)MPSCAN_LIM_ARRAY &&
                   INGEST_LIMIT_MAP == (int)MPSCAN_LIM_MAP &&
                   INGEST_LIMIT_DEPTH == (int)MPSCAN_LIM_DEPTH &&
                   INGEST_LIMIT_STRING == (int)MPSCAN_LIM_STRING,
               "enum ingest_violation follows enum mpscan_violation");
_Static_assert(INGEST_LIMIT_MEMORY == (int)MPSCAN_LIM_COST,
               "enum ingest_violation follows enum mpscan_violation");

int ingest_decoder_new(const struct ingest_limits *limits, struct ingest_decoder **out)
{
    struct ingest_decoder *d = calloc(1, sizeof(*d));
    struct ingest_limits l;

    *out = NULL;
    if (!d)
        return -ENOMEM;
    if (limits)
        l = *limits;
    else
        ingest_limits_default(&l);
    /* a value costing more than the whole budget could never be decoded: over the limit */
    uint64_t max_cost = l.max_value_memory;
    if (l.budget && (!max_cost || l.budget->limit < max_cost))
        max_cost = l.budget->limit ? l.budget->limit : 1;
    mpscan_init(&d->sc, &(struct mpscan_limits){.max_bytes = l.max_value_bytes,
                                                .max_array = l.max_array,
                                                .max_map = l.max_map,
                                                .max_depth = l.max_depth,
                                                .max_str = l.max_str,
                                                .max_cost = max_cost});
    d->budget = l.budget;
    d->max_future_ms = l.max_future_ms;
    d->mp = msgpack_unpacker_new(UNPACKER_INITIAL);
    if (!d->mp) {
        free(d);
        return -ENOMEM;
    }
    *out = d;
    return 0;
}

void ingest_decoder_free(struct ingest_decoder *d)
{
    if (!d)
        return;
    for (uint32_t i = d->res_head; i < d->res_n; i++)
        d->budget->used -= d->res[i].cost;
    free(d->res);
    msgpack_unpacker_free(d->mp);
    free(d);
}

static void set_error(struct ingest_decoder *d, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(d->err, sizeof(d->err), fmt, ap);
    va_end(ap);
}

/* ---- the header scanner ---------------------------------------------------------------------- */

/* The scanner stopped at a header that breaks a limit or is not msgpack: the stream is refused,
 * with that header's stream offset in the message. */
static void refuse(struct ingest_decoder *d)
{
    char what[128];

    mpscan_describe(&d->sc, what, sizeof(what));
    set_error(d, "%s at byte %llu", what, (unsigned long long)(d->value_start + d->sc.pos));
    d->violation = (enum ingest_violation)d->sc.violation;
    d->feed_err = -EPROTO;
}

/* The value just approved costs more than INGEST_BUDGET_FREE to unpack: its cost is reserved
 * (0), or it is refused for want of room (-1, d->feed_err set). */
static int reserve(struct ingest_decoder *d, uint64_t cost)
{
    struct ingest_budget *b = d->budget;

    if (b->used + cost > b->limit) {
        b->refused++;
        set_error(d,
                  "the server's memory for decoding is taken (%llu of %llu bytes; see "
                  "--max-memory): the value at byte %llu, needing %llu, was refused; resend it "
                  "later",
                  (unsigned long long)b->used, (unsigned long long)b->limit,
                  (unsigned long long)d->value_start, (unsigned long long)cost);
        d->violation = INGEST_LIMIT_MEMORY;
        d->feed_err = -EPROTO;
        return -1;
    }
    if (d->res_n == d->res_cap && d->res_head >= d->res_cap / 2 && d->res_head > 0) {
        memmove(d->res, d->res + d->res_head, (d->res_n - d->res_head) * sizeof(*d->res));
        d->res_n -= d->res_head;
        d->res_head = 0;
    }
    if (d->res_n == d->res_cap) {
        uint32_t cap = d->res_cap ? d->res_cap * 2 : 8;
        struct reservation *r = realloc(d->res, cap * sizeof(*r));
        if (!r) {
            set_error(d, "out of memory");
            d->feed_err = -ENOMEM;
            return -1;
        }
        d->res = r;
        d->res_cap = cap;
    }
    d->res[d->res_n++] = (struct reservation){d->complete, cost};
    b->used += cost;
    return 0;
}

/* Scans s[0..n), whose first byte is at stream offset d->pos, and returns how many bytes from the
 * start are approved: all of them, less a trailing incomplete header, or up to a bad header or
 * the start of a value the budget has no room for (then d->feed_err is set). */
static size_t scan(struct ingest_decoder *d, const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t used, start = i;
        enum mpscan_status st = mpscan_feed(&d->sc, s + i, n - i, &used);

        i += used;
        if (st == MPSCAN_MORE)
            break;
        if (st != MPSCAN_DONE) {
            refuse(d);
            break;
        }
        /* a value begun in an earlier slice has its first bytes approved already: harmless,
         * since msgpack-c parses complete values only */
        if (d->budget && d->sc.cost > INGEST_BUDGET_FREE && reserve(d, d->sc.cost) < 0)
            return start;
        d->complete++;
        mpscan_reset(&d->sc);
        d->value_start = d->pos + i;
    }
    return i;
}

/* ---- feeding --------------------------------------------------------------------------------- */

/* Copies the held header bytes and one slice straight into the unpacker's free space, scans them
 * there, and tells the unpacker about the approved prefix only. */
static void feed_slice(struct ingest_decoder *d, const uint8_t *buf, size_t len)
{
    size_t total = d->held_len + len, ok;
    uint8_t *span;

    /* Grows the buffer, or moves unparsed bytes to the front of it (or to a new one). */
    if (!msgpack_unpacker_reserve_buffer(d->mp, total)) {
        set_error(d, "out of memory");
        d->feed_err = -ENOMEM;
        return;
    }
    span = (uint8_t *)msgpack_unpacker_buffer(d->mp);
    memcpy(span, d->held, d->held_len);
    memcpy(span + d->held_len, buf, len);
    ok = scan(d, span, total);
    msgpack_unpacker_buffer_consumed(d->mp, ok);
    d->pos += ok;
    d->held_len = d->feed_err < 0 ? 0 : total - ok;
    memcpy(d->held, span + ok, d->held_len);
}

int ingest_decoder_feed(struct ingest_decoder *d, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0 && d->feed_err == 0) {
        size_t k = len < FEED_SLICE ? len : FEED_SLICE;
        feed_slice(d, p, k);
        p += k;
        len -= k;
    }
    return d->feed_err;
}

/* ---- draining -------------------------------------------------------------------------------- */

/* The field in raw for a key of len bytes, or NULL for a key we do not know. Keys are told apart
 * by length first: this runs for every key of every event. */
static struct event_field *field_for(struct event_raw *raw, const char *k, uint32_t len)
{
    switch (len) {
    case 2:
        return memcmp(k, "ts", 2) == 0 ? &raw->ts : NULL;
    case 4:
        if (memcmp(k, "post", 4) == 0)
            return &raw->post;
        return memcmp(k, "kind", 4) == 0 ? &raw->kind : NULL;
    case 5:
        if (memcmp(k, "actor", 5) == 0)
            return &raw->actor;
        return memcmp(k, "label", 5) == 0 ? &raw->label : NULL;
    case 6:
        return memcmp(k, "parent", 6) == 0 ? &raw->parent : NULL;
    case 7:
        return memcmp(k, "content", 7) == 0 ? &raw->content : NULL;
    case 10:
        return memcmp(k, "actor_type", 10) == 0 ? &raw->actor_type : NULL;
    default:
        return NULL;
    }
}

static void set_field(struct event_field *f, const msgpack_object *v)
{
    memset(f, 0, sizeof(*f));
    switch (v->type) {
    case MSGPACK_OBJECT_NIL:
        f->type = EVF_NIL;
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        f->type = EVF_UINT;
        f->u = v->via.u64;
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        f->type = EVF_NEGINT;
        f->i = v->via.i64;
        break;
    case MSGPACK_OBJECT_STR:
        f->type = EVF_STR;
        f->str = v->via.str.ptr;
        f->len = v->via.str.size;
        break;
    default:
        f->type = EVF_OTHER;
        break;
    }
}

/* One event from one object: a map is an event; anything else in its place is rejected as a bad
 * type, which the callback sees as raw == NULL. Later duplicates of a key overwrite earlier. */
static int emit(const msgpack_object *o, int64_t ts_max, ingest_event_fn fn, void *ctx)
{
    struct event_raw raw;

    if (o->type != MSGPACK_OBJECT_MAP)
        return fn(ctx, NULL);
    memset(&raw, 0, sizeof(raw));
    raw.ts_max = ts_max;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        struct event_field *f;
        if (kv->key.type != MSGPACK_OBJECT_STR) /* not a key of ours: ignored like unknown ones */
            continue;
        f = field_for(&raw, kv->key.via.str.ptr, kv->key.via.str.size);
        if (f)
            set_field(f, &kv->val);
    }
    return fn(ctx, &raw);
}

/* msgpack-c's state is lost: drain() and feed() only report an error from now on. A message
 * already given (the caller may hold the pointer) stays as it was. */
static int broken(struct ingest_decoder *d, int err)
{
    d->drain_err = err;
    if (d->feed_err)
        return err;
    d->feed_err = err;
    if (err == -ENOMEM)
        set_error(d, "out of memory");
    else
        set_error(d, "malformed msgpack at byte %llu", (unsigned long long)d->delivered);
    return err;
}

/* Has msgpack-c parse the next complete value. 1: taken, 0: none is complete yet, or -errno. */
static int take_value(struct ingest_decoder *d)
{
    int rc;

    /* Only whole values are parsed, so that msgpack-c never holds a half-built one. */
    if (d->taken == d->complete)
        return 0;
    rc = msgpack_unpacker_execute(d->mp);
    if (rc == MSGPACK_UNPACK_NOMEM_ERROR)
        return broken(d, -ENOMEM);
    if (rc <= 0) /* msgpack-c disagrees with the scanner: a bug in one of them */
        return broken(d, -EPROTO);
    d->cur = msgpack_unpacker_data(d->mp);
    d->cur_bytes = msgpack_unpacker_parsed_size(d->mp);
    msgpack_unpacker_reset(d->mp);
    d->cur_events = d->cur.type == MSGPACK_OBJECT_ARRAY ? d->cur.via.array.size : 1;
    d->cur_next = 0;
    d->have_cur = true;
    d->taken++;
    return 1;
}

/* A large buffer stays large in msgpack-c: after a burst of big values, move what is left to a
 * fresh unpacker. Optional: on failure the old one is kept. */
static void shrink_unpacker(struct ingest_decoder *d)
{
    msgpack_unpacker *old = d->mp, *fresh;
    /* msgpack-c has no accessor for the unparsed bytes [off, used) of its buffer */
    size_t unparsed = old->used - old->off;

    if (old->used + old->free <= UNPACKER_SHRINK_ABOVE || unparsed > UNPACKER_INITIAL / 2)
        return;
    fresh = msgpack_unpacker_new(UNPACKER_INITIAL);
    if (!fresh)
        return;
    if (!msgpack_unpacker_reserve_buffer(fresh, unparsed)) {
        msgpack_unpacker_free(fresh);
        return;
    }
    memcpy(msgpack_unpacker_buffer(fresh), old->buffer + old->off, unparsed);
    msgpack_unpacker_buffer_consumed(fresh, unparsed);
    msgpack_unpacker_free(old);
    d->mp = fresh;
}

/* The value is delivered: its objects and the buffer space of its strings can be reused. */
static void release_value(struct ingest_decoder *d)
{
    if (d->res_head < d->res_n && d->res[d->res_head].value == d->taken - 1) {
        d->budget->used -= d->res[d->res_head].cost;
        if (++d->res_head == d->res_n)
            d->res_head = d->res_n = 0;
    }
    d->have_cur = false;
    d->delivered += d->cur_bytes;
    memset(&d->cur, 0, sizeof(d->cur));
    /* Flushing first hands the buffer reference to the zone, whose clearing drops it again: the
     * unpacker then knows no string points into its buffer and may rewind it. Best effort. */
    if (d->mp->z) {
        msgpack_unpacker_flush_zone(d->mp);
        msgpack_unpacker_reset_zone(d->mp);
    }
    shrink_unpacker(d);
}

/* Hands the current value's remaining events to fn. Returns true when fn asked to stop. */
static bool deliver(struct ingest_decoder *d, ingest_event_fn fn, void *ctx, long *count)
{
    while (d->cur_next < d->cur_events) {
        const msgpack_object *o = &d->cur;
        if (o->type == MSGPACK_OBJECT_ARRAY)
            o = &o->via.array.ptr[d->cur_next];
        d->cur_next++;
        (*count)++;
        if (emit(o, d->ts_max, fn, ctx) != 0)
            return true;
    }
    return false;
}

long ingest_decoder_drain(struct ingest_decoder *d, ingest_event_fn fn, void *ctx)
{
    long count = 0;

    if (d->drain_err)
        return d->drain_err;
    if (d->max_future_ms > 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        d->ts_max = event_ts_max((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
                                 d->max_future_ms);
    }
    for (;;) {
        bool stop;

        if (!d->have_cur) {
            int rc = take_value(d);
            if (rc <= 0)
                return rc < 0 ? rc : count;
        }
        stop = deliver(d, fn, ctx, &count);
        if (d->cur_next == d->cur_events)
            release_value(d);
        if (stop)
            return count;
    }
}

enum ingest_violation ingest_decoder_violation(const struct ingest_decoder *d)
{
    return d->violation;
}

const char *ingest_decoder_error(const struct ingest_decoder *d)
{
    return d->err;
}

size_t ingest_decoder_pending(const struct ingest_decoder *d)
{
    return (size_t)(d->pos + d->held_len - d->delivered);
}

int ingest_decoder_idle(const struct ingest_decoder *d)
{
    return d->drain_err != 0 || (!d->have_cur && d->taken == d->complete);
}
