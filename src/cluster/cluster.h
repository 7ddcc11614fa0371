/* The cluster endpoint (`cascaded --cluster HOST:QPORT[,...]`, DESIGN §9, docs/cluster.md): a
 * process that holds no data. Its network loop is the server's (same ports, HTTP, /metrics, the
 * web view); in place of the writer, one thread takes each query and answers it by asking every
 * node over msgpack-RPC (libcascade-client) and merging their answers, so that each answer is
 * what one node fed all the events would give. Nodes hold disjoint whole cascades. */
#ifndef CLUSTER_CLUSTER_H
#define CLUSTER_CLUSTER_H

#include <stddef.h>

#include "net/batch.h"

struct cluster;

/* Checks a node list "HOST:PORT[,HOST:PORT...]" (at most CLUSTER_NODES_MAX, IPv6 hosts in
 * brackets): 0, or -EINVAL with a message in err. */
#define CLUSTER_NODES_MAX 64
int cluster_parse_check(const char *list, char *err, size_t errlen);

/* Starts the endpoint's thread over the nodes of list; token (may be NULL) is sent to each node
 * as `auth`. Batches pushed to cluster_queue() come back on done: queries answered, ingest
 * batches refused (the nodes take events, not the endpoint). Nodes are connected on first use
 * and again after a failure. *out owned by the caller (cluster_stop). 0 or a negative errno with
 * a message in err. */
int cluster_start(const char *list, const char *token, struct bqueue *done, struct cluster **out,
                  char *err, size_t errlen);
struct bqueue *cluster_queue(struct cluster *cl);
/* Answers what is queued, stops the thread, closes the node connections, frees cl. */
void cluster_stop(struct cluster *cl);

#endif
