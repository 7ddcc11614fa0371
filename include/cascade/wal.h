/* Write-ahead log of accepted events (DESIGN §6): records appended to numbered segment files
 * under DATA_DIR/wal/, each record a batch of events behind a length and a CRC32C, written
 * through io_uring and made durable per the fsync policy. Start-up replays every valid record
 * and cuts a torn tail (damage with nothing intact after it, in the newest segment); any other
 * damage, or a missing segment, refuses start-up rather than drop what lies beyond it, until
 * wal_repair (cascade-wal repair) has set it aside. One writer thread.
 * The public face of src/store/wal.c, for cascade-wal and wal-bench; the server's own calls
 * (positions, replay from a snapshot's position, removing old segments) are in store/wal.h. */
#ifndef CASCADE_WAL_H
#define CASCADE_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/event.h"

enum wal_fsync { WAL_FSYNC_NO = 0, WAL_FSYNC_EVERYSEC, WAL_FSYNC_ALWAYS };

struct wal_options {
    const char *dir; /* the data dir; the WAL lives in DIR/wal/ (created if missing) */
    enum wal_fsync fsync;
    uint64_t segment_bytes; /* start a new segment past this size; 0: 64 MiB */
    int allow_history_loss; /* replay across missing segments (counted in missing) */
    int no_io_uring;        /* write with pwrite/fdatasync even where io_uring works */
};

struct wal_replay_stats {
    uint64_t records, events, bytes, segments;
    uint64_t cut_bytes;        /* bytes of torn tail cut from the newest segment (0 when clean) */
    uint64_t cut_seq, cut_off; /* where: the segment and the offset it now ends at */
    int cut_saved;             /* the cut bytes were copied to DATA_DIR/wal-damaged/ first */
    uint64_t missing;          /* segments absent, let through by allow_history_loss */
};

struct wal;

/* Opens (creating as needed) the WAL. On error returns a negative errno and writes a message a
 * user can act on into err (e.g. "cannot create /x/wal: Permission denied"). */
int wal_open(const struct wal_options *o, struct wal **out, char *err, size_t errlen);

/* Replays every valid record, oldest first, calling fn once per record with its events (their
 * strings are valid only during the call; ids always come back as strings, str non-NULL). A torn
 * tail (bad length, CRC mismatch or short read with no intact record after it, in the newest
 * segment: a crash mid-write) is cut: its bytes are copied to DATA_DIR/wal-damaged/, the segment
 * is truncated at the last good record, and st->cut_* say where and how much (callers should log
 * it). Nothing else is ever cut or skipped: damage followed by an intact record, damage in an
 * older segment, or a segment missing from the sequence (from.seq onwards) stops the replay
 * with -EBADMSG or -ENODATA and a message for the user in wal_error() (naming the file, the
 * offset and what to do); missing segments are let through with allow_history_loss. Read errors
 * (EIO) are returned, never cut. Must be called once, before wal_append (which replays without
 * a callback if it was not). fn returning non-zero stops the replay with that value. 0 or a
 * negative errno. */
typedef int (*wal_replay_fn)(void *ctx, const struct event *evs, size_t n);
int wal_replay(struct wal *w, wal_replay_fn fn, void *ctx, struct wal_replay_stats *st);

/* Appends one record holding the events evs[i] with keep[i] != 0 (keep NULL: all). When it
 * returns 0 the record is written (and, with WAL_FSYNC_ALWAYS, fsynced): the caller may ack.
 * A record with no kept event writes nothing. 0 or a negative errno (then nothing may be acked).
 * After a failed write (ENOSPC, EIO) the partial record is truncated away and the WAL stays
 * usable; after a failed fsync it is not (the kernel may have dropped the data): every later
 * append and sync returns -EIO, until the server restarts it in a new segment. -EINVAL: an event outside the DESIGN §2 bounds; nothing written.
 * Appends larger than 16 MiB are written as several records (replayed as several calls). */
int wal_append(struct wal *w, const struct event *evs, const uint8_t *keep, size_t n);

/* fsync of what was appended, now. Under WAL_FSYNC_EVERYSEC the WAL also does this once a
 * second on a thread of its own (started by the first append), so callers need not.
 * 0 or a negative errno. */
int wal_sync(struct wal *w);

/* 1 when writes go through io_uring, 0 when wal_open fell back to pwrite/fdatasync because the
 * kernel refused a ring (seccomp, io_uring_disabled): for the server to log at start-up. */
int wal_uses_io_uring(const struct wal *w);

/* Total bytes in the WAL's segments (for stats and /metrics). */
uint64_t wal_bytes(const struct wal *w);

/* Why the last wal_replay/wal_check/wal_repair failed, for the user ("" when it did not). */
const char *wal_error(const struct wal *w);

/* One damaged region of the log, or a gap in it (missing > 0: segments seq .. seq+missing-1 are
 * absent; off, len, before and after are 0). */
struct wal_damage {
    uint64_t seq;      /* the segment */
    uint64_t off, len; /* its bytes that hold no intact record */
    uint64_t before;   /* intact records in the segment before them (since earlier damage) */
    uint64_t after;    /* intact records after them, up to the next damage or the end */
    uint64_t missing;  /* a gap: how many segments are absent */
    const char *saved; /* wal_repair: the file the bytes were copied to (NULL: none) */
};

struct wal_check_stats {
    uint64_t segments, records, events; /* intact records and their events, damage or not */
    uint64_t damaged, damaged_bytes;    /* regions and their bytes */
    uint64_t missing;                   /* segments absent */
    uint64_t moved;                     /* wal_repair: intact records moved to new segments */
};

typedef int (*wal_damage_fn)(void *ctx, const struct wal_damage *d);

/* Reads every segment without changing anything, calling fn for each gap in the numbering
 * (with need_from > 0: segments from need_from on must exist, e.g. the newest snapshot's
 * position) and each damaged region, found by scanning on past it for the next intact record
 * (a length word, a payload count that fits, its CRC and a clean decode). Instead of
 * wal_replay, on a WAL not replayed. The number of problems found, or a negative errno. */
int wal_check(struct wal *w, uint64_t need_from, wal_damage_fn fn, void *ctx,
              struct wal_check_stats *st);

/* wal_check, then sets each problem aside so that start-up accepts the log: every damaged
 * region is copied to DATA_DIR/wal-damaged/SEGMENT.at-OFFSET.damaged (never deleted), the
 * intact records after a segment's first damage are copied to a new segment at the end of the
 * log (events are idempotent and order-free: they replay the same there), then the segment is
 * truncated at its first damage (a fresh header when that was its header); a gap is filled
 * with empty segments (its events are lost: reported, not recovered). A crash halfway leaves at
 * worst records twice (replayed as duplicates); run it again. fn is called per problem as it
 * is handled. The number handled, or a negative errno (message in wal_error). */
int wal_repair(struct wal *w, uint64_t need_from, wal_damage_fn fn, void *ctx,
               struct wal_check_stats *st);

/* Syncs (unless the policy is "no"), closes and frees. */
void wal_close(struct wal *w);

/* A place in the log: segment number and byte offset in it. A snapshot of the engine records
 * the position after the last record it holds, and start-up replays only what lies beyond. */
struct wal_pos {
    uint64_t seq, off;
};

/* Snapshot files are named for the WAL position they cover (store/snapfile.c): the position
 * in such a name (snap-SEQ-OFF.snap), 0, or -1 for any other name. cascade-wal reads them to
 * know which segments must exist. */
int snapshot_parse_name(const char *name, struct wal_pos *pos);

#endif
