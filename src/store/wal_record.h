/* The WAL's on-disk record format, apart from any I/O so that it can be tested and fuzzed alone.
 * A record is [u32 0xC5 << 24 | payload length][u32 CRC32C of the payload][payload]; the payload
 * is a u32 event count then each event; every integer is little-endian. */
#ifndef STORE_WAL_RECORD_H
#define STORE_WAL_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/event.h"

#define WALREC_HDR       8u        /* length word + CRC */
#define WALREC_MAGIC     0xC5u     /* top byte of the length word: zeroed or stray bytes fail */
#define WALREC_MAX       0xFFFFFFu /* largest payload (24-bit length); larger appends split */
#define WALREC_COUNT     4u        /* the payload's event count */
#define WALREC_EVENT_MIN 14u       /* flags, ts, 1-byte post and actor, no parent */
#define WALREC_EVENT_MAX                                                                           \
    (1u + 8u + 3u * (2u + EVENT_ID_MAX) + 2u + EVENT_CONTENT_MAX + 1u + EVENT_LABEL_MAX)

static inline void walrec_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t walrec_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Bytes ev takes in a payload, or 0 when it breaks a bound the decoder enforces (such a record
 * would be read back as corruption and cut, with everything after it). */
size_t walrec_event_size(const struct event *ev);

/* Encodes ev (walrec_event_size(ev) > 0) at p; returns the end. */
uint8_t *walrec_put_event(uint8_t *p, const struct event *ev);

/* Fills in the header of the record at rec whose payload (count included) is rec[8..8+len). */
void walrec_seal(uint8_t *rec, uint32_t len, uint32_t count);

/* Reads a record header: 0 and the payload length, or -1 when the magic or length is wrong. */
int walrec_header(const uint8_t *hdr, uint32_t *len);

/* Checks the CRC and decodes the payload p[0..len) into *evs (grown as needed, *cap entries;
 * strings point into p). 0 and the count in *n; WALREC_BAD on any inconsistency (nothing outside
 * p[0..len) is ever read); -ENOMEM. */
#define WALREC_BAD 1
int walrec_decode(const uint8_t *hdr, const uint8_t *p, uint32_t len, struct event **evs,
                  size_t *cap, size_t *n);

#endif
