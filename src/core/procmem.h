/* What a forked child costs in memory beyond its parent (procmem_*): the pages it holds alone —
 * copy-on-write breaks while the parent goes on writing, and what the child allocates — read
 * from /proc/PID/smaps_rollup. Reading it walks the child's whole page table (tens of ms at a few
 * GiB), so a watcher thread does it and callers read its last figure without waiting. */
#ifndef CORE_PROCMEM_H
#define CORE_PROCMEM_H

#include <stdint.h>
#include <sys/types.h>

/* Private_Clean + Private_Dirty of pid (bytes) in *out: 0, or a negative errno (-ENOENT: no such
 * process; -ENODATA: the file lacks the fields). */
int procmem_private_bytes(pid_t pid, uint64_t *out);

struct procmem_watch;

/* Starts the watcher thread, which samples the watched pid every interval_ms (at least 10).
 * *out is owned by the caller (procmem_watch_stop). 0 or a negative errno. */
int procmem_watch_start(unsigned interval_ms, struct procmem_watch **out);
/* Watches pid from now on (0: none): the figure reads 0 until the first sample of it, which is
 * taken at once. */
void procmem_watch_set(struct procmem_watch *w, pid_t pid);
/* The last sample's bytes for the pid being watched (0 when none, or not sampled yet), and the
 * largest seen since procmem_watch_set named it (in *peak, when not NULL). Never blocks. */
uint64_t procmem_watch_bytes(const struct procmem_watch *w, uint64_t *peak);
/* Stops and joins the thread, frees w (NULL: nothing). */
void procmem_watch_stop(struct procmem_watch *w);

#endif
