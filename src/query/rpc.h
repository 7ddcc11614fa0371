/* msgpack-RPC on the query port (DESIGN §5): `[0, msgid, method, [params]]` in, `[1, msgid,
 * error, result]` out, every method and its parameter schema from query/method.h. Runs on the
 * engine's thread, between two applied chunks of events, so every answer sees the state as of one
 * moment. The HTTP port and cascade-cli build the same requests (qrequest_from_text). */
#ifndef QUERY_RPC_H
#define QUERY_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/engine.h"

struct analytics;

/* What the server adds to the engine's own figures in `stats`. */
struct rpc_server_stats {
    uint64_t wal_bytes;
    uint64_t uptime_ms;
    double ingest_rate; /* accepted events per second, over the last few seconds */
    uint64_t mem_allocated, mem_resident; /* jemalloc's figures, else the process RSS */
    struct analytics *analytics;          /* NULL: analytics off (the methods answer 503) */
};

/* Answers one request (the bytes of one msgpack value). *resp is malloc'd, owned by the caller.
 * Always produces a response (an error response for a bad request) unless out of memory:
 * 0 or -ENOMEM. */
int rpc_handle(struct engine *e, const struct rpc_server_stats *ss, const char *req, size_t len,
               char **resp, size_t *resp_len);

#endif
