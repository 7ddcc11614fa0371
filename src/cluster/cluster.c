/* The cluster endpoint's thread and its node connections (see cluster.h): takes each query the
 * network loop hands over, answers it through query/rpc.c with the endpoint's own handler table
 * (cluster_methods.c), and talks to the nodes with libcascade-client's pipelined RPC. */
#include "cluster/cluster_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "query/rpc.h"

/* ---------------------------------------------------------------- the node list */

/* Splits one "HOST:PORT" (IPv6 in brackets) of len bytes into n. 0 or -EINVAL. */
static int parse_one(const char *s, size_t len, struct cl_node *n)
{
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ':')
            colon = s + i;
    if (!colon || colon == s || colon + 1 == s + len)
        return -EINVAL;
    size_t hl = (size_t)(colon - s), pl = len - hl - 1;
    if (s[0] == '[') { /* [v6]:port */
        if (hl < 3 || s[hl - 1] != ']')
            return -EINVAL;
        s++;
        hl -= 2;
    }
    if (hl >= sizeof(n->host) || pl >= sizeof(n->port))
        return -EINVAL;
    char *end;
    memcpy(n->port, colon + 1, pl);
    n->port[pl] = 0;
    long p = strtol(n->port, &end, 10);
    if (*end || p < 1 || p > 65535)
        return -EINVAL;
    memcpy(n->host, s, hl);
    n->host[hl] = 0;
    cc_where(n->name, sizeof(n->name), n->host, n->port);
    return 0;
}

/* Parses list into *nodes (malloc'd, or NULL when only checking). The count, or -EINVAL. */
static int parse_list(const char *list, struct cl_node **nodes, char *err, size_t errlen)
{
    struct cl_node tmp[CLUSTER_NODES_MAX];
    uint32_t n = 0;
    for (const char *p = list;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n == CLUSTER_NODES_MAX) {
            snprintf(err, errlen, "--cluster: at most %d nodes", CLUSTER_NODES_MAX);
            return -EINVAL;
        }
        memset(&tmp[n], 0, sizeof(tmp[n]));
        if (parse_one(p, len, &tmp[n])) {
            snprintf(err, errlen, "--cluster: %.*s is not HOST:PORT (the nodes' query ports)",
                     (int)(len > 80 ? 80 : len), p);
            return -EINVAL;
        }
        for (uint32_t i = 0; i < n; i++)
            if (!strcmp(tmp[i].name, tmp[n].name)) {
                snprintf(err, errlen, "--cluster: %s is listed twice", tmp[n].name);
                return -EINVAL;
            }
        n++;
        if (!e)
            break;
        p = e + 1;
    }
    if (nodes) {
        *nodes = malloc(n * sizeof(**nodes));
        if (!*nodes) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        memcpy(*nodes, tmp, n * sizeof(**nodes));
    }
    return (int)n;
}

int cluster_parse_check(const char *list, char *err, size_t errlen)
{
    int n = parse_list(list, NULL, err, errlen);
    return n < 0 ? n : 0;
}

/* ---------------------------------------------------------------- requests */

void clreq_init(struct cl_req *q, const char *method)
{
    q->method = method;
    q->n = 0;
    msgpack_sbuffer_init(&q->sb);
    msgpack_packer_init(&q->pk, &q->sb, msgpack_sbuffer_write);
}

void clreq_free(struct cl_req *q)
{
    msgpack_sbuffer_destroy(&q->sb);
}

msgpack_packer *clreq_key(struct cl_req *q, const char *key)
{
    qpack_key(&q->pk, key);
    q->n++;
    return &q->pk;
}

void clreq_forward(struct cl_req *q, const struct qcall *c, const char *const *skip)
{
    for (uint32_t i = 0; i < c->m->nparams && i < QCALL_MAX_PARAMS; i++) {
        if (!c->vals[i])
            continue;
        int skipped = 0;
        for (uint32_t k = 0; skip && skip[k]; k++)
            skipped |= !strcmp(skip[k], c->m->params[i].name);
        if (!skipped)
            msgpack_pack_object(clreq_key(q, c->m->params[i].name), *c->vals[i]);
    }
}

/* ---------------------------------------------------------------- node I/O */

static void node_fail(struct cl_node *nd, int rc, const char *why)
{
    if (why && *why)
        snprintf(nd->why, sizeof(nd->why), "%s", why);
    else
        snprintf(nd->why, sizeof(nd->why), "%s", strerror(rc < 0 ? -rc : rc));
    if (nd->r)
        cc_rpc_close(nd->r);
    nd->r = NULL;
}

static int node_connect(struct cluster *cl, struct cl_node *nd)
{
    if (nd->r)
        return 0;
    char err[256] = "";
    int rc = cc_rpc_open(nd->host, nd->port, CLUSTER_TIMEOUT_S, cl->token, &nd->r, err,
                         sizeof(err));
    if (rc) {
        nd->r = NULL;
        node_fail(nd, rc, err);
        log_msg(LOG_WARN, "cluster_node_down", "node=%s why=\"%s\"", nd->name, nd->why);
    }
    return rc;
}

/* Packs q into nd's output (not sent yet). */
static int node_pack(struct cluster *cl, struct cl_node *nd, const struct cl_req *q)
{
    int rc = node_connect(cl, nd);
    if (rc)
        return rc;
    uint64_t id;
    msgpack_packer *pk = cc_rpc_begin(nd->r, q->method, q->n, &id);
    if (!pk) {
        node_fail(nd, -ENOMEM, "out of memory");
        return -ENOMEM;
    }
    if (q->sb.size && pk->callback(pk->data, q->sb.data, q->sb.size)) {
        node_fail(nd, -ENOMEM, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

static int node_flush(struct cl_node *nd)
{
    cc_rpc_set_timeout(nd->r, CLUSTER_TIMEOUT_S);
    int rc = cc_rpc_flush(nd->r);
    if (rc)
        node_fail(nd, rc, NULL);
    return rc;
}

static int node_next(struct cl_node *nd, struct proto_rpc_response *resp)
{
    int rc = cc_rpc_next(nd->r, resp);
    if (rc)
        node_fail(nd, rc, rc == -EPIPE ? "it closed the connection" : NULL);
    return rc;
}

static void fail_node(struct qcall *c, const struct cl_node *nd)
{
    if (!c->code)
        qcall_fail(c, QERR_NOT_READY, "cluster node %s is unreachable: %s (no partial answer)",
                   nd->name, nd->why);
}

int cl_ask_nodes(struct cluster *cl, struct qcall *c, const struct cl_req *const *q,
                 struct proto_rpc_response *resp)
{
    int bad = 0;
    uint8_t sent[CLUSTER_NODES_MAX] = {0};
    for (uint32_t i = 0; i < cl->n; i++) {
        struct cl_node *nd = &cl->nodes[i];
        if (!q[i])
            continue;
        if (node_pack(cl, nd, q[i]) || node_flush(nd)) {
            fail_node(c, nd);
            bad = 1;
            continue;
        }
        sent[i] = 1;
    }
    for (uint32_t i = 0; i < cl->n; i++) {
        memset(&resp[i], 0, sizeof(resp[i]));
        if (sent[i] && node_next(&cl->nodes[i], &resp[i])) {
            fail_node(c, &cl->nodes[i]);
            bad = 1;
        }
    }
    return bad ? -EIO : 0;
}

int cl_ask_all(struct cluster *cl, struct qcall *c, const struct cl_req *q,
               struct proto_rpc_response *resp)
{
    const struct cl_req *qs[CLUSTER_NODES_MAX];
    for (uint32_t i = 0; i < cl->n; i++)
        qs[i] = q;
    return cl_ask_nodes(cl, c, qs, resp);
}

int cl_ask_many(struct cluster *cl, struct qcall *c, uint32_t node, uint32_t nreq,
                cl_build_fn build, cl_each_fn each, void *ctx)
{
    struct cl_node *nd = &cl->nodes[node];
    for (uint32_t at = 0; at < nreq; at += CLUSTER_PIPELINE) {
        uint32_t k = nreq - at < CLUSTER_PIPELINE ? nreq - at : CLUSTER_PIPELINE;
        for (uint32_t i = 0; i < k; i++) {
            struct cl_req q;
            build(ctx, at + i, &q);
            int rc = node_pack(cl, nd, &q);
            clreq_free(&q);
            if (rc) {
                fail_node(c, nd);
                return -EIO;
            }
        }
        if (node_flush(nd)) {
            fail_node(c, nd);
            return -EIO;
        }
        int stop = 0;
        for (uint32_t i = 0; i < k; i++) {
            struct proto_rpc_response resp;
            if (node_next(nd, &resp)) {
                fail_node(c, nd);
                return -EIO;
            }
            if (!stop)
                stop = each(ctx, at + i, &resp); /* the rest are read, to stay in step */
        }
        if (stop)
            return stop;
    }
    return 0;
}

/* ---------------------------------------------------------------- the thread */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void answer(struct cluster *cl, struct batch *b)
{
    struct rpc_dispatch d = {.handler = cluster_handler, .ctx = cl};
    if (rpc_handle_with(&d, b->req, b->req_len, &b->resp, &b->resp_len)) {
        b->resp = NULL;
        b->resp_len = 0;
    }
}

static void *cluster_main(void *arg)
{
    struct cluster *cl = arg;
    for (;;) {
        struct batch *b = bqueue_pop_wait(&cl->in, 1000);
        if (!b)
            continue;
        if (b->kind == BATCH_STOP) {
            batch_free(b);
            break;
        }
        if (b->kind == BATCH_QUERY) {
            answer(cl, b);
        } else {
            /* events go to the nodes (or the stream), never here: the loop refuses them
             * (netloop_config.ingest_refused); should a batch come all the same, each event is
             * refused and the producer's fatal names the first of them to resend */
            for (uint32_t i = 0; i < b->n; i++)
                if (b->vidx[i] != UINT32_MAX)
                    b->outcome[i] = EVENT_ERR_NOMEM;
        }
        bqueue_push(cl->done, b);
    }
    return NULL;
}

int cluster_start(const char *list, const char *token, struct bqueue *done, struct cluster **out,
                  char *err, size_t errlen)
{
    struct cluster *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int n = parse_list(list, &cl->nodes, err, errlen);
    if (n < 0) {
        free(cl);
        return n;
    }
    cl->n = (uint32_t)n;
    cl->done = done;
    cl->start_ms = now_ms();
    if (token && !(cl->token = strdup(token))) {
        free(cl->nodes);
        free(cl);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = bqueue_init(&cl->in, 0);
    if (rc == 0 && (rc = -pthread_create(&cl->thread, NULL, cluster_main, cl)))
        bqueue_destroy(&cl->in);
    if (rc) {
        snprintf(err, errlen, "cannot start the cluster thread: %s", strerror(-rc));
        free(cl->token);
        free(cl->nodes);
        free(cl);
        return rc;
    }
    cl->started = 1;
    for (uint32_t i = 0; i < cl->n; i++)
        log_msg(LOG_INFO, "cluster_node", "node=%s", cl->nodes[i].name);
    *out = cl;
    return 0;
}

struct bqueue *cluster_queue(struct cluster *cl)
{
    return &cl->in;
}

void cluster_stop(struct cluster *cl)
{
    if (!cl)
        return;
    struct batch *stop;
    if (cl->started && batch_new(BATCH_STOP, 0, &stop) == 0) {
        bqueue_push(&cl->in, stop);
        pthread_join(cl->thread, NULL);
    }
    for (uint32_t i = 0; i < cl->n; i++)
        if (cl->nodes[i].r)
            cc_rpc_close(cl->nodes[i].r);
    bqueue_destroy(&cl->in);
    free(cl->token);
    free(cl->nodes);
    free(cl);
}
