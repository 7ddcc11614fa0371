/* The WAL's on-disk record format, apart from any I/O so that it can be tested and fuzzed alone.
 * A record is [u32 0xC5 << 24 | payload length][u32 CRC32C of the payload][payload]; the payload
 * is a u32 event count then each event; every integer is little-endian. A cluster node's record
 * (DESIGN §9) sets WALREC_POS_FLAG in the count word and ends with the stream positions its
 * events came from: [u16 n][n x (u32 partition, u64 stream sequence)] (it may hold no event:
 * a message whose events were all rejected). Logs written before it are read unchanged. */
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
#define WALREC_POS_FLAG  0x80000000u /* in the count word: stream positions follow the events */
#define WALREC_POS_MAX   1024u       /* positions in one record at most */
#define WALREC_POS_SIZE  12u         /* one position: u32 partition, u64 sequence */
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

/* A stream position (DESIGN §9): the partition and the JetStream stream sequence of a message
 * whose events a record holds. */
struct walrec_pos {
    uint32_t partition;
    uint64_t seq;
};

/* Writes the trailer of n positions (n <= WALREC_POS_MAX) at p: 2 + 12 n bytes; returns the
 * end. The record's count word must then carry WALREC_POS_FLAG (walrec_seal's count). */
uint8_t *walrec_put_pos(uint8_t *p, const struct walrec_pos *pos, size_t n);

/* Reads a record header: 0 and the payload length, or -1 when the magic or length is wrong. */
int walrec_header(const uint8_t *hdr, uint32_t *len);

/* Checks the CRC and decodes the payload p[0..len) into *evs (grown as needed, *cap entries;
 * strings point into p). 0 and the count in *n; WALREC_BAD on any inconsistency (nothing outside
 * p[0..len) is ever read); -ENOMEM. */
#define WALREC_BAD 1
int walrec_decode(const uint8_t *hdr, const uint8_t *p, uint32_t len, struct event **evs,
                  size_t *cap, size_t *n);
/* The same, with the record's stream positions into pos (room for WALREC_POS_MAX; pos NULL:
 * read and dropped) and their number into *npos (0 for a record without them). */
int walrec_decode_pos(const uint8_t *hdr, const uint8_t *p, uint32_t len, struct event **evs,
                      size_t *cap, size_t *n, struct walrec_pos *pos, size_t *npos);

/* Whether a count word can belong to a record of len payload bytes (the cheap test a scan for
 * the next intact record makes before it pays for the CRC). */
int walrec_count_fits(uint32_t count, uint32_t len);

#endif
