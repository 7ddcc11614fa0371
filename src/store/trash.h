/* Deleting big files without waiting for it (trash_*): an old snapshot (1 GB at 10 M events) or
 * WAL segment is renamed into DATA_DIR/trash, a metadata operation, and a thread of its own
 * unlinks it. Unlinking a 1 GB file took 310 ms on the development machine, which on the engine
 * thread is a pause (DESIGN §8). Whatever a crash leaves in the trash goes at the next start. */
#ifndef STORE_TRASH_H
#define STORE_TRASH_H

#include <stddef.h>

struct trash;

/* Creates DATA_DIR/trash if missing and starts the thread, which first empties it. *out is owned
 * by the caller (trash_close). 0, or a negative errno with a message in err. */
int trash_open(const char *data_dir, struct trash **out, char *err, size_t errlen);

/* Removes name (relative to dirfd, or a path with AT_FDCWD) at once from where it was: into the
 * trash, for the thread to unlink; unlinked here when t is NULL or the rename fails (another
 * filesystem). 0, or a negative errno (-ENOENT: no such file). */
int trash_remove(struct trash *t, int dirfd, const char *name);

/* Stops the thread (files not unlinked yet stay for the next start) and frees t (NULL: nothing). */
void trash_close(struct trash *t);

#endif
