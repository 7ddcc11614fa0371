/* Snapshot files of the engine (DESIGN §6): DATA_DIR/snapshots/snap-SEQ-OFF.snap, where
 * SEQ-OFF is the WAL position (store/wal.h) the state covers, zero-padded so that names sort
 * by position. A snapshot is written to a .tmp name, fsynced, renamed, and the directory
 * fsynced, so a .snap file is always whole; start-up loads the newest that reads back intact
 * (engine/persist.c checks it) and replays the WAL from its position. The two newest are kept,
 * so that a damaged newest one still leaves an older one whose WAL is still there.
 * Not to be confused with engine_copy_take (engine/analytics_copy.c: the analytics worker's
 * copy of the graph) nor the `snapshot` method (query/handlers_snapshot.c), which asks for one. */
#ifndef STORE_SNAPFILE_H
#define STORE_SNAPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/engine.h"
#include "store/wal.h"

#define SNAPSHOT_KEEP     2
#define SNAPSHOT_NAME_MAX 64

/* What a snapshot file holds besides the engine (persist.c's user record). */
struct snapshot_meta {
    struct wal_pos pos; /* the WAL position the state covers */
    uint64_t events;    /* accepted events in it */
    int64_t written_ms; /* wall clock (ms since 1970) when it was taken */
};

/* The file name of the snapshot of pos (room for SNAPSHOT_NAME_MAX). */
void snapshot_name(char *out, struct wal_pos pos);

/* snapshot_parse_name, the position in a snapshot file's name, is in include/cascade/wal.h. */

/* Creates DATA_DIR/snapshots if missing. 0, or a negative errno with a message in err. */
int snapshot_dir_init(const char *data_dir, char *err, size_t errlen);

/* Writes e as the snapshot of meta->pos: the .tmp file, fsync, rename, directory fsync. name
 * gets the file's name (room for SNAPSHOT_NAME_MAX), *bytes its size. 0 or a negative errno
 * (the .tmp file is removed). Reads e only: meant for a forked child. */
int snapshot_write(const char *data_dir, const struct engine *e, const struct snapshot_meta *meta,
                   char *name, uint64_t *bytes);

/* Loads the newest snapshot that reads back intact into *out (NULL when there is none, or none
 * is intact), logging each one refused and why (LOG_WARN); a damaged file is renamed to
 * NAME.corrupt (kept for a look, never loaded or counted again), another build's (a format
 * version or record layout this one does not read) is left as it is. meta and name describe the one
 * loaded. *refused counts those refused. 0, or -ENOMEM / an I/O error from the directory. */
int snapshot_load_newest(const char *data_dir, struct engine **out, struct snapshot_meta *meta,
                         char *name, unsigned *refused);

/* Keeps the `keep` newest snapshots and removes the rest and any leftover .tmp files (a crash
 * while writing), through trash (store/trash.h: renamed away at once, unlinked by its thread;
 * NULL: unlinked here). *oldest gets the position of the oldest one kept when there are `keep`
 * of them, else {0, 0} (with fewer, a damaged snapshot falls back on the whole WAL): the WAL
 * before it is no longer needed. Returns how many files went, or a negative errno. */
struct trash;
int snapshot_prune(const char *data_dir, unsigned keep, struct wal_pos *oldest,
                   struct trash *trash);

#endif
