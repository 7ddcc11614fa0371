/* Inside the cluster endpoint: the node connections and the requests sent to them
 * (cluster.c), and the method handlers that merge the answers (cluster_methods.c). Everything
 * here runs on the endpoint's one thread. */
#ifndef CLUSTER_INT_H
#define CLUSTER_INT_H

#include <msgpack.h>
#include <pthread.h>
#include <stdint.h>

#include "cascade/client.h"
#include "cluster/cluster.h"
#include "query/handlers.h"

#define CLUSTER_TIMEOUT_S 10.0 /* one node's answer, each call that waits */
#define CLUSTER_PIPELINE  128  /* requests in flight to one node (round 2 of top_actors) */

struct cl_node {
    char host[256], port[8], name[CC_WHERE_MAX];
    struct cc_rpc *r; /* NULL: not connected (connected on first use) */
    char why[256];    /* why the last call failed */
};

struct cluster {
    struct cl_node *nodes;
    uint32_t n;
    char *token;
    struct bqueue in;
    struct bqueue *done;
    pthread_t thread;
    int started;
    uint64_t start_ms;
};

/* A request's parameters, packed as map pairs (the envelope comes from cc_rpc_begin). */
struct cl_req {
    const char *method;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t n;
};

void clreq_init(struct cl_req *q, const char *method);
void clreq_free(struct cl_req *q);
/* Packs key; the caller packs its value with the returned packer. */
msgpack_packer *clreq_key(struct cl_req *q, const char *key);
/* Every parameter the caller gave c, but those named in skip (NULL-terminated, may be NULL). */
void clreq_forward(struct cl_req *q, const struct qcall *c, const char *const *skip);

/* The same request to every node, one answer each in resp[0..n) (valid until the next call
 * that reads from that node). 0; -EIO when a node could not be asked or did not answer: c is
 * failed with 503 naming it (the other nodes' answers are read all the same, so that their
 * connections stay in step). A node's error answer is in its resp (error set), for the caller. */
int cl_ask_all(struct cluster *cl, struct qcall *c, const struct cl_req *q,
               struct proto_rpc_response *resp);

/* As cl_ask_all, with request q[i] to node i (NULL: node i is not asked; resp[i] is zeroed,
 * its result NULL). */
int cl_ask_nodes(struct cluster *cl, struct qcall *c, const struct cl_req *const *q,
                 struct proto_rpc_response *resp);

/* Many requests to one node: build(ctx, i, q) fills request i (q is initialised and freed
 * here), each(ctx, i, resp) reads its answer; in chunks of CLUSTER_PIPELINE. 0, -EIO as
 * cl_ask_all, or what each returned (non-zero stops). */
typedef void (*cl_build_fn)(void *ctx, uint32_t i, struct cl_req *q);
typedef int (*cl_each_fn)(void *ctx, uint32_t i, const struct proto_rpc_response *resp);
int cl_ask_many(struct cluster *cl, struct qcall *c, uint32_t node, uint32_t nreq,
                cl_build_fn build, cl_each_fn each, void *ctx);

/* The handler of method m on the endpoint (cluster_methods.c), NULL: not served. */
qhandler_fn cluster_handler(const struct qmethod *m);

#endif
