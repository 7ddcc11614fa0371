/* cascaded's options: one table (options.c) from which the command line, the config file, the
 * defaults, `--help` and README's configuration table (`--help-markdown`) all come, so that an
 * option is added in one place and the documentation cannot drift from what is parsed. */
#ifndef CASCADE_SERVER_OPTIONS_H
#define CASCADE_SERVER_OPTIONS_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "net/loop.h"
#include "server/writer.h"

struct config {
    char bind[64];
    unsigned ports[NET_LISTENERS];
    char data_dir[PATH_MAX];
    enum wal_fsync fsync;
    unsigned max_conns;
    unsigned port_conns[NET_LISTENERS]; /* 0: the port's share of max_conns (net/loop.c) */
    unsigned handshake_timeout, idle_timeout; /* seconds; idle 0: never */
    struct ingest_limits limits; /* the ingest decoder's, checked before anything is allocated */
    struct http_limits http;
    uint32_t rpc_max;            /* bytes of one RPC request */
    unsigned analytics_interval; /* seconds; 0: only on request */
    unsigned snapshot_interval;  /* seconds; 0: only on request */
    int snapshot_on_exit;
    unsigned wal_segment_mb;
    uint64_t max_memory;  /* bytes; 0: no limit */
    int64_t retention_ms; /* event time; 0: keep everything */
    char cluster[4096]; /* --cluster: the nodes' query ports; empty: not the cluster endpoint */
    int allow_history_loss;
    char auth_token_file[PATH_MAX]; /* empty: no authentication */
    char http_allowed_hosts[1024];  /* http.allowed_hosts points here once set */
    /* a cluster node (DESIGN §9): empty nats: a plain server */
    char nats[1024], partitions[1024], stream[64];
    unsigned stream_partitions, stream_replicas;
    char delete_durables[40]; /* --delete-durables NODE_ID: delete them and exit; empty: serve */
};

/* The defaults, then the config file (wherever --config appears), then the other options over
 * it, then the checks between options. 0, or -EINVAL with a message on stderr. */
int options_parse(int argc, char **argv, struct config *c);

/* The `--help` text. */
void options_usage(FILE *out);

/* README's configuration table (`--help-markdown`): its flag, default and meaning columns. */
void options_markdown(FILE *out);

#endif
