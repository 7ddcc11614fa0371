/* The engine's whole state as one binary file, and back (persist.c): what a restart loads
 * instead of replaying the whole WAL. Private to src/: the server's snapshots (store/snapfile.c)
 * are its one user. */
#ifndef ENGINE_PERSIST_H
#define ENGINE_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/engine.h"

#define ENGINE_PERSIST_VERSION  6
#define ENGINE_PERSIST_USER_MAX 256 /* bytes of the caller's own record in a file */

/* Writes e to fd (a regular file, written from its current offset on; the caller fsyncs), with
 * user[0..user_len) stored alongside (e.g. the WAL position the state covers). *bytes gets the
 * file's size. Reads e only, so that a forked child can write its copy. 0 or a negative errno
 * (-EINVAL: user_len too long). */
int engine_save(const struct engine *e, int fd, const void *user, uint32_t user_len,
                uint64_t *bytes);

/* Reads a file written by engine_save into a new engine (*out, the caller's to engine_free)
 * and its user record into user (room for ENGINE_PERSIST_USER_MAX; *user_len its length).
 * Every count, offset and id is checked against the file and against the rest of the state
 * (the trees must be trees, the counts their counts) before it is used, so that a truncated,
 * corrupt or hostile file is refused with a reason in err, never crashes. 0, -EINVAL (not a
 * valid file: err says why), -EPROTONOSUPPORT (a sound file of another format version or record
 * layout: another build's), -ENOMEM, or another negative errno from reading fd. */
int engine_load(int fd, struct engine **out, void *user, uint32_t *user_len, char *err,
                size_t errlen);

/* engine_load from memory. */
int engine_load_mem(const void *buf, size_t len, struct engine **out, void *user,
                    uint32_t *user_len, char *err, size_t errlen);

/* A cluster node's last applied stream sequence of partition p (DESIGN §9): kept in the engine
 * so that a snapshot holds the positions its state covers (an optional section: snapshots
 * without it load as before, with every sequence 0). p >= ENGINE_STREAM_MAX: 0 / ignored.
 * The engine thread's, like the rest of the engine. */
uint64_t engine_stream_seq(const struct engine *e, uint32_t p);
void engine_stream_set(struct engine *e, uint32_t p, uint64_t seq);

#endif
