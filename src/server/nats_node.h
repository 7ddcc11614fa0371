/* A cluster node (DESIGN §9, docs/cluster.md "Nodes"): cascaded --nats consumes some partitions
 * of the JetStream stream instead of its ingest port. One durable pull consumer per partition
 * (`cascaded-<node id>-p<N>`), fetched on a thread of its own; each message is decoded with the
 * ingest port's decoder and validation and handed to the writer with its (partition, stream
 * sequence), which the WAL logs in the same record as its events; a message is acked once the
 * log thread has written it (under the fsync policy), and the engine keeps each partition's last
 * applied sequence (WAL records, snapshots), so that a redelivered message is applied once.
 * Prefix nats_node_. */
#ifndef SERVER_NATS_NODE_H
#define SERVER_NATS_NODE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "net/ingest_proto.h"
#include "query/rpc.h"
#include "server/writer.h"

struct nats_node_config {
    const char *urls;       /* "nats://h:p,nats://h:p" */
    const char *partitions; /* LIST: "0,2-3" */
    const char *stream;     /* NULL or "": SHARES */
    uint32_t stream_partitions; /* P when the node creates the stream (0: 16) */
    int stream_replicas;        /* R when the node creates the stream (0: 1) */
    const char *data_dir;       /* the node id lives in DATA_DIR/node-id */
    struct ingest_limits limits; /* the ingest port's: the same validation for stream events */
};

struct nats_node;

/* Checks LIST's syntax ("N", "N-M", comma-separated, each below max): 0, or -EINVAL with a
 * message in err. set (max bytes, may be NULL) gets 1 for each partition in it. */
int nats_node_parse_list(const char *list, uint32_t max, uint8_t *set, char *err, size_t errlen);

/* Connects, creates the stream when it is missing (libcascade-client's cc_nats_open), reads the
 * node id (created at first start), (re)creates each partition's durable at the sequence after
 * the last one the engine applied, and starts the consuming thread, which submits to w. w must
 * be started (its recovery done) and nothing else may submit stream batches. *out is the
 * caller's (nats_node_stop). 0 or a negative errno with a message in err. */
int nats_node_start(const struct nats_node_config *cfg, struct writer *w, struct nats_node **out,
                    char *err, size_t errlen);

/* Stops fetching, waits for the batches in flight to be logged and applied (their messages
 * acked), closes the consumers with Destroy (which keeps the durables) and the connection.
 * Before writer_stop. NULL: nothing. */
void nats_node_stop(struct nats_node *n);

/* --delete-durables: deletes the durables of node node_id on the stream (every consumer named
 * `cascaded-<node_id>-p<N>`: a node lost for good leaves them holding every message as unacked
 * work for nobody), each name on a "deleted NAME" line of out, then a "deleted K durables ..."
 * line. A running node whose durables are deleted makes them again from its WAL's position.
 * 0 (also when there were none), or a negative errno with a message in err. */
int nats_node_delete_durables(const char *urls, const char *stream, const char *node_id, FILE *out,
                              char *err, size_t errlen);

/* The writer's partitions_fn (ctx: the node): each partition's stream sequence, applied sequence
 * and lag, as last seen; on the engine thread. */
void nats_node_partitions(void *ctx, const struct rpc_partition **parts, uint32_t *n);

#endif
