/* The server's side of the write-ahead log (src/store/wal.c): positions, replay from a
 * snapshot's position and removal of the segments a snapshot covers. The rest of the API (open,
 * replay, append, sync, check, repair) is public, in include/cascade/wal.h. */
#ifndef STORE_WAL_H
#define STORE_WAL_H

#include "cascade/wal.h"
#include "store/wal_record.h"

/* A cluster node's records carry the stream positions (partition, JetStream sequence) of the
 * messages their events came from (DESIGN §9). wal_append_pos appends evs as wal_append does,
 * with pos[0..npos) (npos <= WALREC_POS_MAX) in its last record; with npos > 0 a record is
 * written even when no event is kept. */
int wal_append_pos(struct wal *w, const struct event *evs, const uint8_t *keep, size_t n,
                   const struct walrec_pos *pos, size_t npos);
/* Replay calls fn with a record's positions right after the replay callback had its events
 * (set before the replay; NULL: positions are read and dropped). Non-zero stops the replay. */
typedef int (*wal_pos_fn)(void *ctx, const struct walrec_pos *pos, size_t n);
void wal_set_pos_fn(struct wal *w, wal_pos_fn fn, void *ctx);

/* -1, 0 or 1 as a lies before, at or after b. */
int wal_pos_cmp(struct wal_pos a, struct wal_pos b);

/* wal_replay of the records at or after from only: segments numbered below from.seq are not
 * read, segment from.seq is read from byte from.off. ({0, 0} replays everything.) When the log
 * ends before from (its tail was lost in a crash after the snapshot was written: the snapshot
 * is newer than the log), appends go to a new segment after from.seq, so that a later replay
 * from the same position never starts inside a record; segment from.seq itself is created
 * empty when it is missing (only with allow_history_loss), so that the next start finds no gap. */
int wal_replay_from(struct wal *w, struct wal_pos from, wal_replay_fn fn, void *ctx,
                    struct wal_replay_stats *st);

/* The position after the last record appended (or replayed). Valid once replayed. */
struct wal_pos wal_position(const struct wal *w);

/* Removes the segments numbered below seq, never the one appended to: the log before a
 * snapshot. Returns how many went, or a negative errno (those removed before it stay gone). */
int wal_remove_before(struct wal *w, uint64_t seq);
/* Segments wal_remove_before removes go through trash (store/trash.h: renamed away at once,
 * unlinked by its thread) from now on; NULL (the default): unlinked by the caller. */
struct trash;
void wal_set_trash(struct wal *w, struct trash *trash);

/* Segments in the log (for stats and tests). */
uint64_t wal_segments(const struct wal *w);

/* The number of the oldest segment (0: none). Above 1, the log's beginning was removed after a
 * snapshot: the events before it live only in snapshots. */
uint64_t wal_first_segment(const struct wal *w);

/* 1 when appends are refused because a write or fsync left the log in a state it cannot vouch
 * for (see wal_append), 0 otherwise. */
int wal_failed(struct wal *w);

/* After a failed fsync (or a failed cut of a failed write), goes on in a new segment: the
 * records of the current one may be lost or end in garbage, so the caller must have them
 * covered by a snapshot taken at *pos (the new segment's start) before it acks anything more;
 * until then a crash leaves that segment to the start-up damage checks. Sets *pos, 0 when the
 * WAL takes appends again (also when it had not failed); -EIO when it cannot go on at all (the
 * io_uring is unusable), or the errno of creating the segment (it stays failed). */
int wal_restart_segment(struct wal *w, struct wal_pos *pos);

#endif
