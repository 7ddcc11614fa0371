/* cascaded: the server's entry point. Parses the command line and config file (DESIGN §7),
 * recovers the engine from the WAL, starts the writer thread and the network loop, prints the
 * `ready` line once every port serves, and on SIGTERM/SIGINT drains and exits 0. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cascade/proto.h"
#include "cluster/cluster.h"
#include "core/log.h"
#include "net/loop.h"
#include "server/nats_node.h"
#include "server/options.h"
#include "server/writer.h"

#ifndef CASCADE_VERSION
#define CASCADE_VERSION "dev"
#endif

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    fprintf(stderr, "cascaded: cannot create data dir %s: %s\n", path, strerror(errno));
    return -errno;
}

/* SIGTERM and SIGINT arrive through a signalfd read by the network loop; blocked before any
 * thread starts so that every thread inherits the mask. */
static int setup_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1); /* a snapshot (the loop hands it to the writer) */
    if (pthread_sigmask(SIG_BLOCK, &set, NULL))
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_CLOEXEC);
}

/* --auth-token-file's token into *token (malloc'd; NULL without the option). 0 or -1 with a
 * message on stderr. */
static int load_token(const struct config *cfg, char **token)
{
    char err[PATH_MAX + 128];
    int loose = 0;
    *token = NULL;
    if (!cfg->auth_token_file[0])
        return 0;
    if (proto_auth_token_load(cfg->auth_token_file, token, &loose, err, sizeof(err))) {
        fprintf(stderr, "cascaded: %s\n", err);
        return -1;
    }
    if (loose)
        log_msg(LOG_WARN, "auth_token_file_readable", "path=%s hint=\"chmod 600 it\"",
                cfg->auth_token_file);
    return 0;
}

/* The loop's settings both modes share: address, connection limits and timeouts, the signal fd,
 * the token, every port, the decoders' limits, HTTP and RPC sizes. */
static void net_config(const struct config *cfg, int sfd, const char *token,
                       struct netloop_config *nc)
{
    *nc = (struct netloop_config){.bind = cfg->bind,
                                  .max_conns = cfg->max_conns,
                                  .handshake_ms = cfg->handshake_timeout * 1000,
                                  .idle_ms = cfg->idle_timeout * 1000,
                                  .signal_fd = sfd,
                                  .auth_token = token,
                                  .limits = cfg->limits,
                                  .http = cfg->http,
                                  .rpc_max = cfg->rpc_max};
    for (int i = 0; i < NET_LISTENERS; i++) {
        nc->ports[i] = (uint16_t)cfg->ports[i];
        nc->port_conns[i] = cfg->port_conns[i];
    }
    nc->http.in_max =
        cfg->http.head_max * 4 > HTTP_IN_MAX ? cfg->http.head_max * 4 : HTTP_IN_MAX;
}

static int serve(const struct config *cfg)
{
    char err[512] = "";
    struct bqueue done;
    struct writer w;
    struct netloop *n = NULL;
    int sfd = setup_signals();
    if (sfd < 0 || bqueue_init(&done, 1)) {
        fprintf(stderr, "cascaded: cannot set up signals or queues: %s\n", strerror(errno));
        return 1;
    }
    char *token;
    if (make_dir(cfg->data_dir) || load_token(cfg, &token))
        return 1;
    struct writer_config wc = {.data_dir = cfg->data_dir,
                               .fsync = cfg->fsync,
                               .analytics_interval_ms = (uint64_t)cfg->analytics_interval * 1000,
                               .snapshot_interval_ms = (uint64_t)cfg->snapshot_interval * 1000,
                               .snapshot_on_exit = cfg->snapshot_on_exit,
                               .wal_segment_bytes = (uint64_t)cfg->wal_segment_mb << 20,
                               .max_memory = cfg->max_memory,
                               .retention_ms = cfg->retention_ms,
                               .allow_history_loss = cfg->allow_history_loss};
    if (writer_start(&w, &wc, &done, err, sizeof(err))) {
        fprintf(stderr, "cascaded: %s\n", err);
        free(token);
        return 1;
    }
    struct netloop_config nc;
    net_config(cfg, sfd, token, &nc);
    nc.on_sigusr1 = writer_request_snapshot;
    nc.sigusr1_ctx = &w;
    /* decoding memory counts against --max-memory: a quarter of it for values in flight */
    struct ingest_budget budget = {.limit = cfg->max_memory ? cfg->max_memory / 4 : 1ull << 30};
    nc.limits.budget = &budget;
    char refused[256];
    if (cfg->nats[0]) {
        snprintf(refused, sizeof(refused),
                 "this cascaded is a cluster node (--nats): it takes events from the JetStream "
                 "stream %s only; publish them there (cascade-replay --nats URL ...)",
                 cfg->stream);
        nc.ingest_refused = refused;
    }
    if (netloop_new(&nc, &w.in, &done, &n, err, sizeof(err))) {
        fprintf(stderr, "cascaded: %s\n", err);
        writer_stop(&w);
        free(token);
        return 1;
    }
    struct nats_node *node = NULL;
    if (cfg->nats[0]) {
        struct nats_node_config ncfg = {.urls = cfg->nats,
                                        .partitions = cfg->partitions,
                                        .stream = cfg->stream,
                                        .stream_partitions = cfg->stream_partitions,
                                        .stream_replicas = (int)cfg->stream_replicas,
                                        .data_dir = cfg->data_dir,
                                        .limits = cfg->limits};
        if (nats_node_start(&ncfg, &w, &node, err, sizeof(err))) {
            fprintf(stderr, "cascaded: %s\n", err);
            netloop_free(n);
            writer_stop(&w);
            free(token);
            return 1;
        }
        w.partitions_fn = nats_node_partitions; /* read by the engine thread from here on */
        w.partitions_ctx = node;
    }
    uint16_t ports[NET_LISTENERS];
    netloop_ports(n, ports);
    log_msg(LOG_INFO, "ready", "version=%s bind=%s ingest=%u query=%u http=%u data_dir=%s",
            CASCADE_VERSION, cfg->bind, ports[0], ports[1], ports[2], cfg->data_dir);
    printf("ready ingest=%u query=%u http=%u\n", ports[0], ports[1], ports[2]);
    fflush(stdout);
    int rc = netloop_run(n);
    netloop_free(n);
    w.partitions_fn = NULL; /* no query is left to call it: the loop is gone */
    nats_node_stop(node);   /* its batches logged, applied and acked before the writer stops */
    writer_stop(&w);
    free(token);
    bqueue_destroy(&done);
    close(sfd);
    log_msg(LOG_INFO, "stopped", "status=%d", rc ? 1 : 0);
    return rc ? 1 : 0;
}

/* --cluster: the cluster's query endpoint (src/cluster): the same loop and ports, with the
 * endpoint's thread in place of the writer; no data dir, no WAL. */
static int serve_cluster(const struct config *cfg)
{
    char err[512] = "";
    struct bqueue done;
    struct cluster *cl = NULL;
    struct netloop *n = NULL;
    char *token = NULL;
    int sfd = setup_signals();
    if (sfd < 0 || bqueue_init(&done, 1)) {
        fprintf(stderr, "cascaded: cannot set up signals or queues: %s\n", strerror(errno));
        return 1;
    }
    if (load_token(cfg, &token) || cluster_start(cfg->cluster, token, &done, &cl, err,
                                                 sizeof(err))) {
        if (err[0])
            fprintf(stderr, "cascaded: %s\n", err);
        free(token);
        return 1;
    }
    struct netloop_config nc;
    net_config(cfg, sfd, token, &nc);
    nc.ingest_refused = "this cascaded is the cluster's query endpoint (--cluster): it holds no "
                        "data; send events to the nodes (or to the stream)";
    struct ingest_budget budget = {.limit = 1ull << 30};
    nc.limits.budget = &budget;
    if (netloop_new(&nc, cluster_queue(cl), &done, &n, err, sizeof(err))) {
        fprintf(stderr, "cascaded: %s\n", err);
        cluster_stop(cl);
        free(token);
        return 1;
    }
    uint16_t ports[NET_LISTENERS];
    netloop_ports(n, ports);
    log_msg(LOG_INFO, "ready", "version=%s bind=%s ingest=%u query=%u http=%u cluster=%s",
            CASCADE_VERSION, cfg->bind, ports[0], ports[1], ports[2], cfg->cluster);
    printf("ready ingest=%u query=%u http=%u\n", ports[0], ports[1], ports[2]);
    fflush(stdout);
    int rc = netloop_run(n);
    netloop_free(n);
    cluster_stop(cl);
    free(token);
    bqueue_destroy(&done);
    close(sfd);
    log_msg(LOG_INFO, "stopped", "status=%d", rc ? 1 : 0);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            options_usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--help-markdown")) { /* README's table: test_options.py */
            options_markdown(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("cascaded %s\n", CASCADE_VERSION);
            return 0;
        }
    }
    struct config cfg;
    if (options_parse(argc, argv, &cfg))
        return 2;
    if (cfg.delete_durables[0]) { /* an operator's one-shot for a node lost for good */
        char err[512] = "";
        if (nats_node_delete_durables(cfg.nats, cfg.stream, cfg.delete_durables, stdout, err,
                                      sizeof(err))) {
            fprintf(stderr, "cascaded: --delete-durables %s: %s\n", cfg.delete_durables, err);
            return 1;
        }
        return 0;
    }
    return cfg.cluster[0] ? serve_cluster(&cfg) : serve(&cfg);
}
