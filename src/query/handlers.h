/* The query handlers behind the method table (query/method.c). query/rpc.c checks a request's
 * parameters against the method's schema, fills a qcall, and calls the handler on the engine's
 * thread; a handler packs its result with c->pk or sets c->code and c->err. */
#ifndef QUERY_HANDLERS_H
#define QUERY_HANDLERS_H

#include <msgpack.h>
#include <stdint.h>

#include "cascade/engine.h"
#include "query/method.h"
#include "query/rpc.h"

#define QCALL_MAX_PARAMS 16

struct qcall {
    struct engine *e;
    const struct rpc_server_stats *ss;
    const struct qmethod *m;
    const msgpack_object *vals[QCALL_MAX_PARAMS]; /* per schema param; NULL when absent */
    msgpack_packer *pk;
    int code; /* 0, or a QERR_* code with err set */
    char err[256];
    void *ctx; /* rpc_dispatch.ctx (the cluster endpoint's); NULL for the engine's handlers */
};

/* Typed values of checked parameters; absent: the default written in the method table (0,
 * false when it has none). */
int qcall_has(const struct qcall *c, const char *name);
uint64_t qcall_uint(const struct qcall *c, const char *name);
int64_t qcall_int(const struct qcall *c, const char *name);
int qcall_bool(const struct qcall *c, const char *name);
double qcall_float(const struct qcall *c, const char *name);
/* A string (QT_STR, QT_ENUM); absent: its default in the method table, else NULL. */
const char *qcall_str(const struct qcall *c, const char *name, uint32_t *len);
/* An id as its canonical bytes (an integer becomes its decimal string, in buf[24]). */
const char *qcall_id(const struct qcall *c, const char *name, char *buf, uint32_t *len);

/* Packing a flat record: a key, then its value (strings: nil when s is NULL). */
void qpack_key(msgpack_packer *pk, const char *k);
void qpack_strv(msgpack_packer *pk, const char *s, size_t len); /* a value alone */
void qpack_u64(msgpack_packer *pk, const char *k, uint64_t v);
void qpack_i64(msgpack_packer *pk, const char *k, int64_t v);
void qpack_f64(msgpack_packer *pk, const char *k, double v);
void qpack_bool(msgpack_packer *pk, const char *k, int v);
void qpack_str(msgpack_packer *pk, const char *k, const char *s, size_t len);
void qpack_cstr(msgpack_packer *pk, const char *k, const char *s);

void qcall_fail(struct qcall *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void handle_stats(struct qcall *c);
void handle_cascade(struct qcall *c);
void handle_top_cascades(struct qcall *c);
void handle_actor(struct qcall *c);
void handle_top_actors(struct qcall *c);
void handle_actor_links(struct qcall *c);
void handle_actor_cascades(struct qcall *c);
void handle_content(struct qcall *c);
void handle_labels(struct qcall *c);
void handle_labels_matched(struct qcall *c);
/* labels_matched's result for labels a and b from mm[MATCHED_METRICS] (analytics/matched.h). */
struct matched_metric;
void pack_labels_matched(msgpack_packer *pk, const char *a, uint32_t alen, const char *b,
                         uint32_t blen, const struct matched_metric *mm);
void handle_path(struct qcall *c);
void handle_coordination(struct qcall *c);
void handle_communities(struct qcall *c);
void handle_analytics(struct qcall *c);
void handle_snapshot(struct qcall *c);

/* handlers_snapshot.c: the snapshot figures `stats` ends with (SNAPSHOT_STATS keys). */
#define SNAPSHOT_STATS 9
void pack_snapshot_stats(msgpack_packer *pk, const struct rpc_server_stats *ss);

/* PageRank of actor (dense id) in the latest analytics result and that result's age: 0, or
 * -ENODATA when there is none (or the actor is newer than it). */
int pagerank_of(const struct qcall *c, uint32_t actor, double *rank, uint64_t *age_ms);
/* The latest ranking by PageRank, filtered by actor_type (0: any): how many were written, or
 * -ENODATA with c failed (503). */
int top_by_pagerank(struct qcall *c, int actor_type, struct engine_actor *out, uint32_t limit);

#endif
