/* The ingest protocol's decoder (DESIGN §4): a stream of msgpack values, each an event map or an
 * array of event maps, arriving in whatever pieces recv delivers. Every length, count and
 * nesting depth is checked against limits before msgpack-c allocates anything for it, and a
 * malformed stream is reported with the byte offset where it went wrong. One decoder per
 * connection; not thread-safe. */
#ifndef NET_INGEST_PROTO_H
#define NET_INGEST_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/event.h"

/* Decoding memory shared by every decoder of a process (of one thread: not locked): a value that
 * costs more than INGEST_BUDGET_FREE to unpack (core/mpscan's cost) reserves its cost here when
 * the scanner has approved its last byte, before msgpack-c sees it, and gives it back once its
 * events are delivered. A value that finds too little left is refused (the producer resends it
 * later), one that could never fit is refused as over the limit. */
struct ingest_budget {
    uint64_t limit; /* bytes */
    uint64_t used;
    uint64_t refused; /* values refused for want of room */
};

/* Values that cost at most this are not reserved: one at a time per connection is unpacked. */
#define INGEST_BUDGET_FREE (64u * 1024)

struct ingest_limits {
    uint32_t max_value_bytes; /* one top-level value (an event, or an array of them): 4 MiB */
    uint64_t max_value_memory; /* what msgpack-c may allocate to unpack one value (mpscan's cost):
                                * 64 MiB; 4 MiB of cascade-gen's events cost ~18 MiB, of events
                                * with all 8 keys ~24 MiB, 100,000 arrays of 38 nils (4.1 MB)
                                * ~127 MiB; 0: no bound */
    struct ingest_budget *budget; /* NULL: none */
    uint32_t max_array;       /* elements in any array: 100000 */
    uint32_t max_map;         /* keys in any map: 64 */
    uint32_t max_depth;       /* nesting of arrays/maps: 8 */
    uint32_t max_str;         /* bytes in any str/bin/ext: 65536 */
    int64_t max_future_ms;    /* an event's ts at most this far past the clock (DESIGN §2
                               * bad_ts): 86400000; 0: no future check */
};

void ingest_limits_default(struct ingest_limits *l);

struct ingest_decoder;

/* limits: NULL for the defaults (copied). *out is owned by the caller. 0 or -ENOMEM. */
int ingest_decoder_new(const struct ingest_limits *limits, struct ingest_decoder **out);
void ingest_decoder_free(struct ingest_decoder *d);

/* Appends len received bytes. 0; -EPROTO when the bytes are not msgpack or break a limit (the
 * decoder is dead from then on: see ingest_decoder_error); -ENOMEM (dead too: part of buf may
 * have been taken). Events before the bad byte can still be drained. */
int ingest_decoder_feed(struct ingest_decoder *d, const void *buf, size_t len);

/* Called once per event, in stream order. raw is NULL when the value in the event's place is
 * not a map (e.g. a bare integer, or a string inside an array): that is one event rejected as
 * bad_type. raw->ts_max is the clock at the drain plus max_future_ms (event_ts_max), so that
 * event_validate refuses a ts too far ahead. raw's strings are only valid during the call. Return 0 to go on, 1 to stop after
 * this event (the next drain resumes at the following one, even inside an array). */
typedef int (*ingest_event_fn)(void *ctx, const struct event_raw *raw);

/* Decodes complete values fed so far and hands their events to fn. Returns the number of events
 * delivered (>= 0), or -ENOMEM (msgpack-c failed mid-value: the decoder is dead), or -EPROTO if
 * msgpack-c ever refused bytes the scanner approved (a bug; see ingest_decoder_error). */
long ingest_decoder_drain(struct ingest_decoder *d, ingest_event_fn fn, void *ctx);

/* After -EPROTO: "malformed msgpack at byte N" or "... limit ... at byte N" (static storage in
 * the decoder). N counts from the start of the stream (byte 0 is the first byte received). */
const char *ingest_decoder_error(const struct ingest_decoder *d);

/* After -EPROTO: the limit the stream broke, or INGEST_LIMIT_NONE when it was not msgpack. */
enum ingest_violation {
    INGEST_LIMIT_NONE = 0,
    INGEST_LIMIT_VALUE,  /* max_value_bytes */
    INGEST_LIMIT_ARRAY,  /* max_array */
    INGEST_LIMIT_MAP,    /* max_map */
    INGEST_LIMIT_DEPTH,  /* max_depth */
    INGEST_LIMIT_STRING, /* max_str */
    INGEST_LIMIT_MEMORY, /* max_value_memory, or the budget had no room for the value */
    INGEST_LIMIT_KINDS
};
enum ingest_violation ingest_decoder_violation(const struct ingest_decoder *d);

/* Bytes fed but not yet decoded into delivered events (for backpressure accounting). */
size_t ingest_decoder_pending(const struct ingest_decoder *d);

/* Whether drain would deliver nothing more until more bytes are fed. */
int ingest_decoder_idle(const struct ingest_decoder *d);

#endif
