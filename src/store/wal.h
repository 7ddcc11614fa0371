/* Write-ahead log of accepted events (DESIGN §6): records appended to numbered segment files
 * under DATA_DIR/wal/, each record a batch of events behind a length and a CRC32C, written
 * through io_uring and made durable per the fsync policy. Start-up replays every valid record
 * and cuts a torn or corrupt tail instead of refusing to start. One writer thread. */
#ifndef STORE_WAL_H
#define STORE_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/event.h"

enum wal_fsync { WAL_FSYNC_NO = 0, WAL_FSYNC_EVERYSEC, WAL_FSYNC_ALWAYS };

struct wal_options {
    const char *dir; /* the data dir; the WAL lives in DIR/wal/ (created if missing) */
    enum wal_fsync fsync;
    uint64_t segment_bytes; /* start a new segment past this size; 0: 64 MiB */
};

struct wal_replay_stats {
    uint64_t records, events, bytes, segments;
    uint64_t cut_bytes; /* bytes of torn/corrupt tail removed (0 when clean) */
};

struct wal;

/* Opens (creating as needed) the WAL. On error returns a negative errno and writes a message a
 * user can act on into err (e.g. "cannot create /x/wal: Permission denied"). */
int wal_open(const struct wal_options *o, struct wal **out, char *err, size_t errlen);

/* Replays every valid record, oldest first, calling fn once per record with its events (their
 * strings are valid only during the call; ids always come back as strings, str non-NULL). A torn
 * or corrupt tail (bad length, CRC mismatch, short read) is cut: the segment is truncated at the
 * last good record, later segments are removed, and st->cut_bytes says how much went. Damage in
 * the middle of an older segment is cut the same way, with everything after it: the engine must
 * hold a prefix of the acknowledged history, never that history with a hole in it (callers
 * should log cut_bytes loudly). Read errors (EIO) are returned, never cut. Must be called once,
 * before wal_append (which replays without a callback if it was not). fn returning non-zero
 * stops the replay with that value. 0 or a negative errno. */
typedef int (*wal_replay_fn)(void *ctx, const struct event *evs, size_t n);
int wal_replay(struct wal *w, wal_replay_fn fn, void *ctx, struct wal_replay_stats *st);

/* A place in the log: segment number and byte offset in it. A snapshot of the engine records
 * the position after the last record it holds, and start-up replays only what lies beyond. */
struct wal_pos {
    uint64_t seq, off;
};

/* -1, 0 or 1 as a lies before, at or after b. */
int wal_pos_cmp(struct wal_pos a, struct wal_pos b);

/* wal_replay of the records at or after from only: segments numbered below from.seq are not
 * read, segment from.seq is read from byte from.off. ({0, 0} replays everything.) When the log
 * ends before from (its tail was lost in a crash after the snapshot was written: the snapshot
 * is newer than the log), appends go to a new segment after from.seq, so that a later replay
 * from the same position never starts inside a record. */
int wal_replay_from(struct wal *w, struct wal_pos from, wal_replay_fn fn, void *ctx,
                    struct wal_replay_stats *st);

/* The position after the last record appended (or replayed). Valid once replayed. */
struct wal_pos wal_position(const struct wal *w);

/* Removes the segments numbered below seq, never the one appended to: the log before a
 * snapshot. Returns how many went, or a negative errno (those removed before it stay gone). */
int wal_remove_before(struct wal *w, uint64_t seq);

/* Segments in the log (for stats and tests). */
uint64_t wal_segments(const struct wal *w);

/* The number of the oldest segment (0: none). Above 1, the log's beginning was removed after a
 * snapshot: the events before it live only in snapshots. */
uint64_t wal_first_segment(const struct wal *w);

/* Appends one record holding the events evs[i] with keep[i] != 0 (keep NULL: all). When it
 * returns 0 the record is written (and, with WAL_FSYNC_ALWAYS, fsynced): the caller may ack.
 * A record with no kept event writes nothing. 0 or a negative errno (then nothing may be acked).
 * After a failed write (ENOSPC, EIO) the partial record is truncated away and the WAL stays
 * usable; after a failed fsync it is not (the kernel may have dropped the data): every later
 * append and sync returns -EIO. -EINVAL: an event outside the DESIGN §2 bounds; nothing written.
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

/* Syncs (unless the policy is "no"), closes and frees. */
void wal_close(struct wal *w);

#endif
