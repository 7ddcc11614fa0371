/* msgpack-RPC on the query port (DESIGN §5): `[0, msgid, method, [params]]` in, `[1, msgid,
 * error, result]` out. Runs on the engine's thread, between batches, so every answer sees the
 * state as of one moment. This first cut serves stats, cascade, actor, path, top_cascades and
 * top_actors (by a metric, no filters); the query issue brings the full method table shared with
 * HTTP and the CLI. */
#ifndef QUERY_RPC_H
#define QUERY_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/engine.h"

/* What the server adds to the engine's own figures in `stats`. */
struct rpc_server_stats {
    uint64_t wal_bytes;
    uint64_t uptime_ms;
};

/* Answers one request (the bytes of one msgpack value). *resp is malloc'd, owned by the caller.
 * Always produces a response (an error response for a bad request) unless out of memory:
 * 0 or -ENOMEM. */
int rpc_handle(struct engine *e, const struct rpc_server_stats *ss, const char *req, size_t len,
               char **resp, size_t *resp_len);

#endif
