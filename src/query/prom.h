/* Prometheus text exposition (format 0.0.4) for GET /metrics: the engine's `stats` result (a
 * msgpack map, whatever numeric keys it has) and the network loop's own counters, among them a
 * query latency histogram per port that the loop feeds. */
#ifndef QUERY_PROM_H
#define QUERY_PROM_H

#include <msgpack.h>
#include <stdint.h>

#include "core/strbuf.h"

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define PROM_BUCKETS      14 /* finite upper bounds, 50 µs .. 1 s; +Inf is the count */

/* Ports, in the order of the loop's listeners (net/loop.h: ingest, query, http). */
enum { PROM_PORT_INGEST = 0, PROM_PORT_RPC, PROM_PORT_HTTP, PROM_PORTS };

struct prom_hist {
    uint64_t bucket[PROM_BUCKETS]; /* observations in (le[i-1], le[i]]: made cumulative on output */
    uint64_t count, sum_ns;
};

/* Limits whose violations /metrics counts (cascaded_limit_violations_total{limit=...}). The
 * ingest ones are in net/ingest_proto.h's order. */
enum prom_limit {
    PROM_LIM_INGEST_VALUE = 0, /* one msgpack value (event or array) over --max-value-bytes */
    PROM_LIM_INGEST_ARRAY,     /* --max-array */
    PROM_LIM_INGEST_MAP,       /* --max-map-keys */
    PROM_LIM_INGEST_DEPTH,     /* --max-depth */
    PROM_LIM_INGEST_STRING,    /* --max-string-bytes */
    PROM_LIM_INGEST_MEMORY,    /* --max-value-memory, or no room in the decoding budget */
    PROM_LIM_CONNECTIONS,      /* --max-connections: a connection refused */
    PROM_LIM_RPC_REQUEST,      /* --max-rpc-request-bytes: a request's bytes, or its claims */
    PROM_LIM_RPC_ARRAY,        /* --max-array in a request (in core/mpscan.h's order) */
    PROM_LIM_RPC_MAP,          /* --max-map-keys in a request */
    PROM_LIM_RPC_DEPTH,        /* --max-depth in a request */
    PROM_LIM_RPC_STRING,       /* --max-string-bytes in a request */
    PROM_LIM_RPC_MEMORY,       /* --max-value-memory: unpacking a request would cost more */
    PROM_LIM_HTTP_HEAD,        /* 431 */
    PROM_LIM_HTTP_TARGET,      /* 414 */
    PROM_LIM_HTTP_BODY,        /* 413: requests have no body */
    PROM_LIM_HTTP_BUFFER,      /* a peer that sent over 1 MiB unanswered */
    PROM_LIM_HANDSHAKE_TIMEOUT, /* --handshake-timeout: no request head or auth in time */
    PROM_LIM_IDLE_TIMEOUT,      /* --idle-timeout: a connection quiet for too long */
    PROM_LIMITS
};

struct prom_loop {
    uint64_t open[PROM_PORTS], accepted[PROM_PORTS], bytes_in[PROM_PORTS];
    uint64_t auth_failures[PROM_PORTS]; /* connections or requests refused for want of the token */
    uint64_t malformed[PROM_PORTS];     /* bytes that are not msgpack / not HTTP (400) */
    uint64_t limits[PROM_LIMITS];
    struct prom_hist latency[PROM_PORTS]; /* rpc and http only */
};

void prom_observe(struct prom_hist *h, uint64_t ns);

/* Appends the exposition to out; stats may be NULL (or not a map) when the engine could not
 * answer: then only the loop's figures are there. */
void prom_render(const msgpack_object *stats, const struct prom_loop *loop, struct strbuf *out);

#endif
