/* The ingest protocol's decoder (DESIGN §4). A header scanner checks every msgpack header against
 * the limits as bytes arrive, since msgpack-c allocates a container when it reads its header; the
 * msgpack-c unpacker behind it sees approved bytes only, and parses only complete values. */
#include "net/ingest_proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

/* msgpack-c's parse stack is a fixed array of this many open containers (MSGPACK_EMBED_STACK_SIZE
 * in its private unpack_define.h); it fails beyond it. */
#define DEPTH_CAP 32

#define HEADER_MAX 5 /* a type byte and a 32-bit length or count */

/* The unpacker's buffer starts at this size and grows to hold the largest value in flight. */
#define UNPACKER_INITIAL (32 * 1024)

/* After a value is delivered, a buffer grown past this is given back (see shrink_unpacker). */
#define UNPACKER_SHRINK_ABOVE (8 * UNPACKER_INITIAL)

/* feed() copies the caller's bytes in slices of this size, so that a huge buffer ending in a bad
 * header cannot make it reserve more than one slice beyond what is approved. */
#define FEED_SLICE (256 * 1024)

/* What a msgpack type byte announces. */
enum hkind { H_BAD, H_FIXED, H_STR, H_BIN, H_EXT, H_ARRAY, H_MAP };

struct header {
    enum hkind kind;
    uint8_t size; /* bytes of the header itself: the type byte and any length bytes */
    uint64_t n;   /* elements (array), pairs (map), or payload bytes (others; ext: without the
                     ext type byte) */
};

/* Where the scanner is in the stream. It always stands either at a header or inside a payload. */
struct scanner {
    uint64_t value_start;     /* stream offset of the current top-level value */
    uint64_t min_end;         /* that value cannot end before this offset */
    uint64_t skip;            /* payload bytes still to pass before the next header */
    uint64_t complete;        /* top-level values approved to their last byte */
    uint32_t depth;           /* open containers */
    uint64_t left[DEPTH_CAP]; /* items each open container still expects (a map: 2 per pair) */
};

struct ingest_decoder {
    struct ingest_limits lim;
    struct scanner sc;
    msgpack_unpacker *mp;     /* a pointer: msgpack-c's context points back into the struct */
    uint64_t pos;             /* stream offset of the first byte not yet approved */
    uint8_t held[HEADER_MAX]; /* the start of a header whose length bytes have not all come */
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

    char err[160];
    enum ingest_violation violation; /* which limit ended the stream, if one did */
};

void ingest_limits_default(struct ingest_limits *l)
{
    l->max_value_bytes = 4u << 20;
    l->max_array = 100000;
    l->max_map = 64;
    l->max_depth = 8;
    l->max_str = 65536;
}

int ingest_decoder_new(const struct ingest_limits *limits, struct ingest_decoder **out)
{
    struct ingest_decoder *d = calloc(1, sizeof(*d));

    *out = NULL;
    if (!d)
        return -ENOMEM;
    if (limits)
        d->lim = *limits;
    else
        ingest_limits_default(&d->lim);
    /* Deeper nesting than msgpack-c can parse would pass the scanner and then fail in msgpack-c. */
    if (d->lim.max_depth > DEPTH_CAP)
        d->lim.max_depth = DEPTH_CAP;
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

static void classify_var(uint8_t b, struct header *h)
{
    if (b == 0xc0 || b == 0xc2 || b == 0xc3) { /* nil, false, true */
        h->kind = H_FIXED;
    } else if (b >= 0xc4 && b <= 0xc6) { /* bin 8/16/32 */
        h->kind = H_BIN;
        h->size = (uint8_t)(1 + (1 << (b - 0xc4)));
    } else if (b >= 0xc7 && b <= 0xc9) { /* ext 8/16/32 */
        h->kind = H_EXT;
        h->size = (uint8_t)(1 + (1 << (b - 0xc7)));
    } else if (b == 0xca || b == 0xcb) { /* float 32/64 */
        h->kind = H_FIXED;
        h->n = b == 0xca ? 4 : 8;
    } else if (b >= 0xcc && b <= 0xd3) { /* uint 8..64, int 8..64 */
        h->kind = H_FIXED;
        h->n = 1u << ((b - 0xcc) & 3);
    } else if (b >= 0xd4 && b <= 0xd8) { /* fixext 1..16 */
        h->kind = H_EXT;
        h->n = 1u << (b - 0xd4);
    } else if (b >= 0xd9 && b <= 0xdb) { /* str 8/16/32 */
        h->kind = H_STR;
        h->size = (uint8_t)(1 + (1 << (b - 0xd9)));
    } else if (b >= 0xdc) { /* array 16/32, map 16/32 */
        h->kind = b <= 0xdd ? H_ARRAY : H_MAP;
        h->size = (b & 1) ? 5 : 3;
    } else { /* 0xc1: never used by msgpack */
        h->kind = H_BAD;
    }
}

/* Kind and header size from the type byte; n too, when the type byte holds it. */
static void classify(uint8_t b, struct header *h)
{
    h->size = 1;
    h->n = 0;
    if (b <= 0x7f || b >= 0xe0) { /* positive and negative fixint */
        h->kind = H_FIXED;
    } else if (b <= 0x9f) { /* fixmap, fixarray */
        h->kind = b <= 0x8f ? H_MAP : H_ARRAY;
        h->n = b & 0x0f;
    } else if (b <= 0xbf) { /* fixstr */
        h->kind = H_STR;
        h->n = b & 0x1f;
    } else {
        classify_var(b, h);
    }
}

static uint64_t load_be(const uint8_t *p, unsigned len)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < len; i++)
        v = v << 8 | p[i];
    return v;
}

/* One more item of the innermost open container is complete, and with it maybe the containers
 * around it, and maybe the whole top-level value. */
static void item_done(struct scanner *sc)
{
    while (sc->depth > 0) {
        if (--sc->left[sc->depth - 1] > 0)
            return;
        sc->depth--;
    }
    sc->complete++;
}

static int check_counts(struct ingest_decoder *d, const struct header *h, uint64_t at)
{
    const struct ingest_limits *l = &d->lim;
    unsigned long long n = h->n, pos = at;
    bool container = h->kind == H_ARRAY || h->kind == H_MAP;

    if (container && d->sc.depth + 1 > l->max_depth) {
        d->violation = INGEST_LIMIT_DEPTH;
        set_error(d, "nesting depth of %u exceeds the limit of %u at byte %llu", d->sc.depth + 1,
                  l->max_depth, pos);
        return -EPROTO;
    }
    if (h->kind == H_ARRAY && n > l->max_array) {
        d->violation = INGEST_LIMIT_ARRAY;
        set_error(d, "array of %llu elements exceeds the limit of %u at byte %llu", n, l->max_array,
                  pos);
        return -EPROTO;
    }
    if (h->kind == H_MAP && n > l->max_map) {
        d->violation = INGEST_LIMIT_MAP;
        set_error(d, "map of %llu keys exceeds the limit of %u at byte %llu", n, l->max_map, pos);
        return -EPROTO;
    }
    if ((h->kind == H_STR || h->kind == H_BIN || h->kind == H_EXT) && n > l->max_str) {
        const char *what = h->kind == H_STR ? "str" : h->kind == H_BIN ? "bin" : "ext";
        d->violation = INGEST_LIMIT_STRING;
        set_error(d, "%s of %llu bytes exceeds the limit of %u at byte %llu", what, n, l->max_str,
                  pos);
        return -EPROTO;
    }
    return 0;
}

/* Bytes that must follow the header: each element of a container takes at least one. */
static uint64_t body_min(const struct header *h)
{
    switch (h->kind) {
    case H_MAP:
        return 2 * h->n;
    case H_EXT:
        return h->n + 1; /* the ext type byte */
    default:
        return h->n;
    }
}

/* The value's size is checked against the least it can still take, so that a header announcing
 * more than the limit leaves is refused at once, not after megabytes have been buffered. */
static int check_size(struct ingest_decoder *d, const struct header *h, uint64_t at)
{
    struct scanner *sc = &d->sc;
    unsigned long long least;

    /* The item was counted as one byte when its container's header came; now it is known. */
    sc->min_end += h->size + body_min(h) - 1;
    least = sc->min_end - sc->value_start;
    if (least > d->lim.max_value_bytes) {
        d->violation = INGEST_LIMIT_VALUE;
        set_error(d, "value of at least %llu bytes exceeds the limit of %u at byte %llu", least,
                  d->lim.max_value_bytes, (unsigned long long)at);
        return -EPROTO;
    }
    return 0;
}

/* A complete header at stream offset at: check it, then expect what it announces. */
static int take_header(struct ingest_decoder *d, const struct header *h, uint64_t at)
{
    struct scanner *sc = &d->sc;
    int rc;

    if (h->kind == H_BAD) {
        set_error(d, "malformed msgpack at byte %llu", (unsigned long long)at);
        return -EPROTO;
    }
    if (sc->depth == 0) { /* a header outside any container starts a top-level value */
        sc->value_start = at;
        sc->min_end = at + 1;
    }
    rc = check_counts(d, h, at);
    if (rc == 0)
        rc = check_size(d, h, at);
    if (rc < 0)
        return rc;
    if ((h->kind == H_ARRAY || h->kind == H_MAP) && h->n > 0) {
        sc->left[sc->depth++] = h->kind == H_MAP ? 2 * h->n : h->n;
        return 0;
    }
    sc->skip = body_min(h);
    if (sc->skip == 0)
        item_done(sc);
    return 0;
}

/* Scans s[0..n), whose first byte is at stream offset d->pos, and returns how many bytes from the
 * start are approved: all of them, less a trailing incomplete header, or up to a bad header (then
 * d->feed_err is set). */
static size_t scan(struct ingest_decoder *d, const uint8_t *s, size_t n)
{
    struct scanner *sc = &d->sc;
    size_t i = 0;

    while (i < n) {
        struct header h;

        if (sc->skip > 0) {
            size_t k = sc->skip < n - i ? (size_t)sc->skip : n - i;
            sc->skip -= k;
            i += k;
            if (sc->skip == 0)
                item_done(sc);
            continue;
        }
        classify(s[i], &h);
        if (h.kind != H_BAD && n - i < h.size)
            break; /* its length bytes are still on the way */
        if (h.size > 1)
            h.n = load_be(s + i + 1, h.size - 1u);
        d->feed_err = take_header(d, &h, d->pos + i);
        if (d->feed_err < 0)
            break;
        i += h.size;
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
static int emit(const msgpack_object *o, ingest_event_fn fn, void *ctx)
{
    struct event_raw raw;

    if (o->type != MSGPACK_OBJECT_MAP)
        return fn(ctx, NULL);
    memset(&raw, 0, sizeof(raw));
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
    if (d->taken == d->sc.complete)
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
        if (emit(o, fn, ctx) != 0)
            return true;
    }
    return false;
}

long ingest_decoder_drain(struct ingest_decoder *d, ingest_event_fn fn, void *ctx)
{
    long count = 0;

    if (d->drain_err)
        return d->drain_err;
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
    return d->drain_err != 0 || (!d->have_cur && d->taken == d->sc.complete);
}
