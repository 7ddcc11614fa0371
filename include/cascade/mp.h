/* The msgpack helpers every reader of the wire shares, server and clients alike: the header
 * scanner (mpscan_*), which checks a value's claimed sizes before msgpack-c allocates for them,
 * and the map lookup (mp_map_*). Implemented in src/core/mpscan.c and src/core/mpmap.c; public so
 * that libcascade-client and the tools reach them without the server's private headers. */
#ifndef CASCADE_MP_H
#define CASCADE_MP_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ map lookup
 *
 * Looking a key up in a decoded msgpack map: the one walk every reader of a request, an answer
 * or an error map uses, so that they agree on which keys count (str only) and which of two equal
 * keys wins. */

/* The value of the first str key equal to key (bytes, case counts) in map, or NULL when map is
 * not a map or has no such key. Keys of other types (bin included) never match. */
const msgpack_object *mp_map_get(const msgpack_object *map, const char *key);

/* As mp_map_get, but only pairs whose value is of type count: the first "token" that is a str,
 * not the first "token". */
const msgpack_object *mp_map_get_typed(const msgpack_object *map, const char *key,
                                       msgpack_object_type type);

/* As mp_map_get, for a caller that holds the map's pairs already (map->via.map). */
const msgpack_object *mp_map_find(const msgpack_object_map *m, const char *key);

/* As mp_map_get, but the last of equal keys: for readers where a later duplicate overwrites an
 * earlier one, as the ingest port's events do. */
const msgpack_object *mp_map_get_last(const msgpack_object *map, const char *key);

/* ------------------------------------------------------------------ header scanner
 *
 * A msgpack value's headers, checked before anything decodes it. msgpack-c sizes a container
 * from its header, before a single element has arrived: a 5-byte array32 header claiming 268 M
 * elements has it reserve gigabytes. The scanner checks every claimed count and length against
 * limits and against the fewest bytes the value can still take (every element takes at least
 * one byte), so that a value it approves costs msgpack-c at most a small multiple of its real
 * size. It reads headers only: no allocation, no recursion (a bounded stack of open
 * containers), and it resumes where it stopped, so bytes arriving in pieces are each looked at
 * once. The ingest decoder, the query port, rpc_handle, the auth prefix and the clients use it. */

/* msgpack-c's parse stack holds this many open containers (MSGPACK_EMBED_STACK_SIZE in its
 * private unpack_define.h) and fails beyond it: deeper limits are lowered to it. */
#define MPSCAN_DEPTH_MAX 32

#define MPSCAN_HEAD_MAX 5 /* a header's bytes at most: a type byte and a 32-bit length or count */

/* What a type byte announces. */
enum mpscan_kind {
    MPSCAN_BAD = 0, /* 0xc1, which msgpack never uses */
    MPSCAN_SCALAR,  /* nil, bool, integers, floats: n bytes of value follow the type byte */
    MPSCAN_STR,
    MPSCAN_BIN,
    MPSCAN_EXT,
    MPSCAN_ARRAY,
    MPSCAN_MAP,
};

struct mpscan_head {
    enum mpscan_kind kind;
    uint8_t size; /* bytes of the header itself: the type byte and any length bytes */
    uint64_t n;   /* elements (array), pairs (map), or the bytes after the header (the
                     others; ext: without its type byte) */
};

/* Reads the header at p[0..len), len >= 1: 1 when it is all there, 0 when its length bytes
 * are still to come, -1 for MPSCAN_BAD. */
int mpscan_head(const void *p, size_t len, struct mpscan_head *h);

struct mpscan_limits {
    uint64_t max_bytes; /* the whole value */
    uint32_t max_array; /* elements of one array */
    uint32_t max_map;   /* keys of one map */
    uint32_t max_depth; /* nesting of arrays and maps (lowered to MPSCAN_DEPTH_MAX) */
    uint32_t max_str;   /* bytes of one str, bin or ext */
    uint64_t max_cost;  /* bytes msgpack-c allocates to unpack the value (see `cost`); 0: any */
};

enum mpscan_status {
    MPSCAN_MORE = 0,  /* the value goes on past the bytes given */
    MPSCAN_DONE,      /* the value is complete: it is pos bytes long */
    MPSCAN_LIMIT,     /* a header breaks a limit (violation says which) */
    MPSCAN_MALFORMED, /* the bytes are not msgpack */
};

/* In the order of net/ingest_proto.h's enum ingest_violation and of query/prom.h's limits. */
enum mpscan_violation {
    MPSCAN_LIM_NONE = 0,
    MPSCAN_LIM_BYTES, /* max_bytes: what the headers claim cannot fit */
    MPSCAN_LIM_ARRAY,
    MPSCAN_LIM_MAP,
    MPSCAN_LIM_DEPTH,
    MPSCAN_LIM_STRING,
    MPSCAN_LIM_COST, /* max_cost: unpacking it would allocate too much */
};

/* One value's scan. pos counts the bytes taken; on MPSCAN_LIMIT and MPSCAN_MALFORMED it stops
 * at the header at fault, which `bad` holds.
 *
 * cost is what msgpack-c's unpacker (4.x, C API) will allocate for the headers seen so far:
 * it gives each array of n elements n msgpack_objects (24 bytes) and each map of n pairs n
 * msgpack_object_kvs (48 bytes) from its zone, even for n = 0, and points strings, bins and
 * exts into its buffer (they cost the value's own bytes, which max_bytes bounds). The zone
 * hands out 8-byte aligned pieces of 8 KiB chunks; a piece that does not fit the current chunk
 * takes a new one, 8 KiB doubled until it fits; a chunk costs what the allocator gives for it
 * (jemalloc's size classes: four per doubling). An array of 100,000 arrays of 38 nils is 4.1 MB
 * of msgpack and costs 133 MB this way; the server's peak RSS grew by 134 MB unpacking it. The
 * chunk the zone keeps between values is not counted. */
struct mpscan {
    struct mpscan_limits lim;
    uint64_t pos;
    uint64_t cost;  /* bytes, as above, for the headers seen so far */
    uint64_t zfree; /* what the zone's current chunk has left, as modelled */
    uint64_t least; /* the fewest bytes the value can take, from the headers seen so far */
    uint64_t skip;  /* bytes after the last header still to pass */
    uint32_t depth; /* open containers */
    uint64_t left[MPSCAN_DEPTH_MAX]; /* items each still expects (a map: 2 per pair) */
    enum mpscan_violation violation;
    struct mpscan_head bad;
};

/* Ready to scan a value under lim (copied). */
void mpscan_init(struct mpscan *s, const struct mpscan_limits *lim);

/* Ready for the next value, under the same limits. */
void mpscan_reset(struct mpscan *s);

/* Scans on through buf[0..len), the bytes that follow the pos taken so far, and stops after
 * the value's last byte (MPSCAN_DONE), at a header that breaks a limit or is not msgpack, or
 * at the end of buf (MPSCAN_MORE). *used gets the bytes taken, which pos counts too; on
 * MPSCAN_MORE a header cut short by the end of buf is not taken: the next call must begin
 * with its first byte again. Once it has answered MPSCAN_LIMIT or MPSCAN_MALFORMED, s must be
 * reset before it is used again. */
enum mpscan_status mpscan_feed(struct mpscan *s, const void *buf, size_t len, size_t *used);

/* After MPSCAN_LIMIT or MPSCAN_MALFORMED, what was wrong, e.g. "array of 268435456 elements
 * exceeds the limit of 100000" or "malformed msgpack" (snprintf's result). */
int mpscan_describe(const struct mpscan *s, char *buf, size_t len);

#endif
