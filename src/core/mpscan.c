/* msgpack header scanner (see mpscan.h). A value is walked as a stream of headers: a
 * container's header opens a level that expects its count of items (a map two per pair), every
 * other header is followed by bytes that are skipped, and each item completed counts down its
 * level. `least` is the value's size if every item not seen yet took one byte: each header
 * adds what it claims, so a claim is refused as soon as its bytes cannot fit. */
#include "core/mpscan.h"

#include <stdio.h>

#include <msgpack.h>

#define ZONE_CHUNK 8192 /* MSGPACK_ZONE_CHUNK_SIZE, the unpacker's */
#define ZONE_ALIGN 8    /* MSGPACK_ZONE_ALIGN: sizeof(void *) */

static void classify_var(uint8_t b, struct mpscan_head *h)
{
    if (b == 0xc0 || b == 0xc2 || b == 0xc3) { /* nil, false, true */
        h->kind = MPSCAN_SCALAR;
    } else if (b >= 0xc4 && b <= 0xc6) { /* bin 8/16/32 */
        h->kind = MPSCAN_BIN;
        h->size = (uint8_t)(1 + (1 << (b - 0xc4)));
    } else if (b >= 0xc7 && b <= 0xc9) { /* ext 8/16/32 */
        h->kind = MPSCAN_EXT;
        h->size = (uint8_t)(1 + (1 << (b - 0xc7)));
    } else if (b == 0xca || b == 0xcb) { /* float 32/64 */
        h->kind = MPSCAN_SCALAR;
        h->n = b == 0xca ? 4 : 8;
    } else if (b >= 0xcc && b <= 0xd3) { /* uint 8..64, int 8..64 */
        h->kind = MPSCAN_SCALAR;
        h->n = 1u << ((b - 0xcc) & 3);
    } else if (b >= 0xd4 && b <= 0xd8) { /* fixext 1..16 */
        h->kind = MPSCAN_EXT;
        h->n = 1u << (b - 0xd4);
    } else if (b >= 0xd9 && b <= 0xdb) { /* str 8/16/32 */
        h->kind = MPSCAN_STR;
        h->size = (uint8_t)(1 + (1 << (b - 0xd9)));
    } else if (b >= 0xdc) { /* array 16/32, map 16/32 */
        h->kind = b <= 0xdd ? MPSCAN_ARRAY : MPSCAN_MAP;
        h->size = (b & 1) ? 5 : 3;
    } else { /* 0xc1 */
        h->kind = MPSCAN_BAD;
    }
}

/* Kind and header size from the type byte; n too, when the type byte holds it. */
static void classify(uint8_t b, struct mpscan_head *h)
{
    h->size = 1;
    h->n = 0;
    if (b <= 0x7f || b >= 0xe0) { /* positive and negative fixint */
        h->kind = MPSCAN_SCALAR;
    } else if (b <= 0x9f) { /* fixmap, fixarray */
        h->kind = b <= 0x8f ? MPSCAN_MAP : MPSCAN_ARRAY;
        h->n = b & 0x0f;
    } else if (b <= 0xbf) { /* fixstr */
        h->kind = MPSCAN_STR;
        h->n = b & 0x1f;
    } else {
        classify_var(b, h);
    }
}

/* mpscan_head, inlined into the scanner's loop: it runs for every header of every value. */
static inline int read_head(const uint8_t *b, size_t len, struct mpscan_head *h)
{
    classify(b[0], h);
    if (h->kind == MPSCAN_BAD)
        return -1;
    if (len < h->size)
        return 0;
    for (unsigned i = 1; i < h->size; i++)
        h->n = h->n << 8 | b[i];
    return 1;
}

int mpscan_head(const void *p, size_t len, struct mpscan_head *h)
{
    return read_head(p, len, h);
}

void mpscan_reset(struct mpscan *s)
{
    s->pos = 0;
    s->cost = 0;
    s->zfree = ZONE_CHUNK; /* msgpack_zone_clear keeps one chunk, emptied */
    s->least = 1; /* the first header's type byte; it adds the rest */
    s->skip = 0;
    s->depth = 0;
    s->violation = MPSCAN_LIM_NONE;
}

void mpscan_init(struct mpscan *s, const struct mpscan_limits *lim)
{
    s->lim = *lim;
    if (s->lim.max_depth > MPSCAN_DEPTH_MAX)
        s->lim.max_depth = MPSCAN_DEPTH_MAX;
    mpscan_reset(s);
}

/* Bytes that must follow the header: each element of a container takes at least one. */
static uint64_t body_min(const struct mpscan_head *h)
{
    switch (h->kind) {
    case MPSCAN_MAP:
        return 2 * h->n;
    case MPSCAN_EXT:
        return h->n + 1; /* the ext type byte */
    default:
        return h->n;
    }
}

/* What malloc(n) takes from jemalloc: n rounded up to its size class (four per doubling above
 * 64 bytes). An estimate for other allocators, on the high side. */
static uint64_t alloc_size(uint64_t n)
{
    if (n <= 64)
        return (n + 15) & ~(uint64_t)15;
    uint64_t step = (1ull << (63 - __builtin_clzll(n - 1))) / 4;
    return (n + step - 1) / step * step;
}

/* msgpack_zone_malloc(size), as msgpack-c 4.x does it: into the current chunk (up to ALIGN - 1
 * bytes of padding, counted as if always paid), else a new chunk (a next pointer, then 8 KiB
 * doubled until size + ALIGN - 1 fits). */
static void zone_malloc(struct mpscan *s, uint64_t size)
{
    uint64_t need = size + ZONE_ALIGN - 1;
    if (need <= s->zfree) {
        s->zfree -= need;
        return;
    }
    uint64_t sz = ZONE_CHUNK;
    while (sz < need)
        sz *= 2;
    s->cost += alloc_size(sizeof(void *) + sz);
    s->zfree = sz - need;
}

/* One more item of the innermost open container is complete, and with it maybe the containers
 * around it: 1 when that completes the value. */
static int item_done(struct mpscan *s)
{
    while (s->depth > 0) {
        if (--s->left[s->depth - 1] > 0)
            return 0;
        s->depth--;
    }
    return 1;
}

static enum mpscan_violation check(const struct mpscan *s, const struct mpscan_head *h)
{
    const struct mpscan_limits *l = &s->lim;

    if ((h->kind == MPSCAN_ARRAY || h->kind == MPSCAN_MAP) && s->depth + 1 > l->max_depth)
        return MPSCAN_LIM_DEPTH;
    if (h->kind == MPSCAN_ARRAY && h->n > l->max_array)
        return MPSCAN_LIM_ARRAY;
    if (h->kind == MPSCAN_MAP && h->n > l->max_map)
        return MPSCAN_LIM_MAP;
    if ((h->kind == MPSCAN_STR || h->kind == MPSCAN_BIN || h->kind == MPSCAN_EXT) &&
        h->n > l->max_str)
        return MPSCAN_LIM_STRING;
    if (s->least > l->max_bytes)
        return MPSCAN_LIM_BYTES;
    return l->max_cost && s->cost > l->max_cost ? MPSCAN_LIM_COST : MPSCAN_LIM_NONE;
}

/* A complete header: check it, then expect what it announces. */
static enum mpscan_status take(struct mpscan *s, const struct mpscan_head *h)
{
    if (h->kind == MPSCAN_BAD) {
        s->bad = *h;
        return MPSCAN_MALFORMED;
    }
    /* The item was counted as one byte when its container's header came (the value itself at
     * the start); now its size is known better. */
    s->least += h->size + body_min(h) - 1;
    /* n is at most max_array or max_map when the other checks pass; counted first anyway, so
     * that the check below sees what this header would cost */
    if (h->kind == MPSCAN_ARRAY)
        zone_malloc(s, h->n * sizeof(msgpack_object));
    else if (h->kind == MPSCAN_MAP)
        zone_malloc(s, h->n * sizeof(msgpack_object_kv));
    s->violation = check(s, h);
    if (s->violation != MPSCAN_LIM_NONE) {
        s->bad = *h;
        return MPSCAN_LIMIT;
    }
    if ((h->kind == MPSCAN_ARRAY || h->kind == MPSCAN_MAP) && h->n > 0) {
        s->left[s->depth++] = h->kind == MPSCAN_MAP ? 2 * h->n : h->n;
        return MPSCAN_MORE;
    }
    s->skip = body_min(h);
    return s->skip == 0 && item_done(s) ? MPSCAN_DONE : MPSCAN_MORE;
}

enum mpscan_status mpscan_feed(struct mpscan *s, const void *buf, size_t len, size_t *used)
{
    const uint8_t *p = buf;
    enum mpscan_status st = MPSCAN_MORE;
    size_t i = 0;

    while (i < len) {
        struct mpscan_head h;

        if (s->skip > 0) {
            size_t k = s->skip < len - i ? (size_t)s->skip : len - i;
            s->skip -= k;
            i += k;
            if (s->skip == 0 && item_done(s)) {
                st = MPSCAN_DONE;
                break;
            }
            continue;
        }
        if (read_head(p + i, len - i, &h) == 0)
            break; /* its length bytes are still on the way */
        st = take(s, &h);
        if (st == MPSCAN_LIMIT || st == MPSCAN_MALFORMED)
            break;
        i += h.size;
        if (st == MPSCAN_DONE)
            break;
    }
    s->pos += i;
    *used = i;
    return st;
}

int mpscan_describe(const struct mpscan *s, char *buf, size_t len)
{
    unsigned long long n = s->bad.n;
    const char *what = s->bad.kind == MPSCAN_STR   ? "str"
                       : s->bad.kind == MPSCAN_BIN ? "bin"
                                                   : "ext";

    switch (s->violation) {
    case MPSCAN_LIM_BYTES:
        return snprintf(buf, len, "value of at least %llu bytes exceeds the limit of %llu",
                        (unsigned long long)s->least, (unsigned long long)s->lim.max_bytes);
    case MPSCAN_LIM_ARRAY:
        return snprintf(buf, len, "array of %llu elements exceeds the limit of %u", n,
                        s->lim.max_array);
    case MPSCAN_LIM_MAP:
        return snprintf(buf, len, "map of %llu keys exceeds the limit of %u", n, s->lim.max_map);
    case MPSCAN_LIM_DEPTH:
        return snprintf(buf, len, "nesting depth of %u exceeds the limit of %u", s->depth + 1,
                        s->lim.max_depth);
    case MPSCAN_LIM_STRING:
        return snprintf(buf, len, "%s of %llu bytes exceeds the limit of %u", what, n,
                        s->lim.max_str);
    case MPSCAN_LIM_COST:
        return snprintf(buf, len,
                        "value needing at least %llu bytes of memory to decode exceeds the "
                        "limit of %llu",
                        (unsigned long long)s->cost, (unsigned long long)s->lim.max_cost);
    default:
        return snprintf(buf, len, "malformed msgpack");
    }
}
