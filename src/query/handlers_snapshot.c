/* The `snapshot` method and the snapshot figures of `stats` (handlers.h). A snapshot is written
 * by a child process while the engine goes on; the request is held by the server (the writer
 * thread) until that file is in place, then answered from snapshot_done. */
#include <errno.h>

#include "query/handlers.h"

void pack_snapshot_stats(msgpack_packer *pk, const struct rpc_server_stats *ss)
{
    const struct rpc_snapshot_status *s = &ss->snapshot;
    qpack_u64(pk, "snapshots_written", s->written);
    qpack_u64(pk, "snapshots_failed", s->failed);
    qpack_i64(pk, "snapshot_last_time_ms", s->last_unix_ms);
    qpack_u64(pk, "snapshot_last_events", s->last_events);
    qpack_u64(pk, "snapshot_last_bytes", s->last_bytes);
    qpack_u64(pk, "snapshot_last_duration_ms", s->last_ms);
    qpack_u64(pk, "snapshot_last_fork_us", s->last_fork_us);
    qpack_u64(pk, "snapshot_running", (uint64_t)s->running);
    qpack_cstr(pk, "snapshot_last_file", s->last_file[0] ? s->last_file : NULL);
}

void handle_snapshot(struct qcall *c)
{
    const struct rpc_snapshot_result *r = c->ss->snapshot_done;
    if (!r) {
        if (!c->ss->snapshot_defer) {
            qcall_fail(c, QERR_NOT_READY, "snapshot: this server does not write snapshots");
            return;
        }
        *c->ss->snapshot_defer = 1; /* answered once the file is written */
        msgpack_pack_nil(c->pk);
        return;
    }
    if (r->err) {
        qcall_fail(c, QERR_INTERNAL, "snapshot failed: %s", r->message);
        return;
    }
    msgpack_pack_map(c->pk, 4);
    qpack_cstr(c->pk, "file", r->file);
    qpack_u64(c->pk, "events", r->events);
    qpack_u64(c->pk, "bytes", r->bytes);
    qpack_u64(c->pk, "ms", r->ms);
}
