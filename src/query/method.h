/* The server's side of the method table: the schema (cascade/schema.h: names, parameters, help)
 * is shared with the clients; this maps each of its methods to the handler that answers it on
 * the engine's thread (query/rpc.c calls it), and names the RPC error codes. */
#ifndef QUERY_METHOD_H
#define QUERY_METHOD_H

#include "cascade/schema.h"

struct qcall;
typedef void (*qhandler_fn)(struct qcall *c);

/* The handler of m (a method of the schema's table), or NULL when the dispatch table has none
 * (a unit test checks that every method has one). */
qhandler_fn qmethod_handler(const struct qmethod *m);

/* Error codes of an RPC error map {"code", "message"}; the HTTP port uses them as statuses. */
enum {
    QERR_BAD_REQUEST = 400, /* malformed request, unknown or ill-typed parameter */
    QERR_NOT_FOUND = 404,   /* unknown method, post, actor, content key */
    QERR_NOT_READY = 503,   /* analytics not computed yet (PageRank, coordination, communities) */
    QERR_INTERNAL = 500,    /* out of memory */
    QERR_NOT_IMPLEMENTED = 501, /* the cluster endpoint cannot answer it exactly (src/cluster) */
};

#endif
