/* Prometheus text exposition (see prom.h). The stats map is read by key, never by position, so
 * that a key the engine adds later shows up (as cascaded_stats_<key>) and a key it drops just
 * leaves its metric out. Every family is written whole, HELP and TYPE first. */
#include "query/prom.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mpmap.h"

static const uint64_t bucket_ns[PROM_BUCKETS] = {
    50000,    100000,   250000,   500000,    1000000,   2500000,   5000000,
    10000000, 25000000, 50000000, 100000000, 250000000, 500000000, 1000000000};

static const char *const port_names[PROM_PORTS] = {"ingest", "rpc", "http"};

/* Stats keys with a name, a type and a unit of their own; scale converts to the base unit. */
struct known {
    const char *key, *name, *type;
    double scale;
    const char *help;
};

static const struct known known[] = {
    {"posts", "cascaded_posts", "gauge", 1, "Posts observed (placeholders not included)."},
    {"placeholders", "cascaded_placeholders", "gauge", 1,
     "Posts referenced as a parent that have not arrived."},
    {"cascades", "cascaded_cascades", "gauge", 1, "Cascades (trees of reshares)."},
    {"actors", "cascaded_actors", "gauge", 1, "Accounts and pages seen."},
    {"edges", "cascaded_edges", "gauge", 1, "Amplification edges between actors."},
    {"contents", "cascaded_contents", "gauge", 1, "Distinct content keys."},
    {"labels", "cascaded_labels", "gauge", 1, "Distinct labels."},
    {"memory_allocated", "cascaded_memory_allocated_bytes", "gauge", 1,
     "Bytes allocated by the server (jemalloc)."},
    {"memory_resident", "cascaded_memory_resident_bytes", "gauge", 1,
     "Resident bytes of the allocator (jemalloc)."},
    {"memory_rss", "cascaded_memory_rss_bytes", "gauge", 1,
     "Resident bytes of the process as the kernel counts them (what --max-memory judges)."},
    {"engine_bytes", "cascaded_engine_bytes", "gauge", 1, "Bytes held by the graph engine."},
    {"memory_limit", "cascaded_memory_limit_bytes", "gauge", 1,
     "--max-memory: process RSS at which ingest is refused (0: no limit)."},
    {"refused_memory", "cascaded_events_refused_memory_total", "counter", 1,
     "Events refused, unapplied, because the server was at --max-memory."},
    {"wal_bytes", "cascaded_wal_bytes", "gauge", 1, "Bytes in the write-ahead log."},
    {"pause_max_ms", "cascaded_engine_pause_max_seconds", "gauge", 0.001,
     "The engine thread's longest stretch without looking at waiting queries, since start."},
    {"pause_max_cpu_ms", "cascaded_engine_pause_max_cpu_seconds", "gauge", 0.001,
     "The most CPU time the engine thread spent in one such stretch (the rest of the longest "
     "pause, if any, it waited for a core or the disk)."},
    {"pauses_over_10ms", "cascaded_engine_pauses_over_10ms_total", "counter", 1,
     "Engine-thread pauses longer than 10 ms (DESIGN §8's limit for background work)."},
    {"log_pause_max_ms", "cascaded_log_append_max_seconds", "gauge", 0.001,
     "The log thread's longest WAL append of one batch (no pause of the engine thread)."},
    {"log_pauses_over_10ms", "cascaded_log_appends_over_10ms_total", "counter", 1,
     "WAL appends on the log thread longer than 10 ms."},
    {"wal_writable", "cascaded_wal_writable", "gauge", 1,
     "1 when the WAL took the last batch; 0 while it refuses appends (disk full, I/O error): "
     "ingest is refused until it takes one again."},
    {"refused_wal", "cascaded_events_refused_wal_total", "counter", 1,
     "Events refused, unapplied, because the WAL could not take them."},
    {"uptime_ms", "cascaded_uptime_seconds", "gauge", 0.001, "Seconds since the server started."},
    {"ingest_rate", "cascaded_ingest_events_per_second", "gauge", 1,
     "Events ingested per second, recently."},
    {"newest_ts", "cascaded_newest_event_timestamp_seconds", "gauge", 0.001,
     "Event time of the newest event seen, in seconds since the epoch."},
    {"retention_ms", "cascaded_retention_seconds", "gauge", 0.001,
     "--retention: event time a cascade is kept after its last post (0: forever)."},
    {"retained_from_ts", "cascaded_retained_from_timestamp_seconds", "gauge", 0.001,
     "Cascades last active before this event time are evicted (0: none yet)."},
    {"evicted_cascades", "cascaded_evicted_cascades_total", "counter", 1,
     "Cascades evicted by --retention since the data directory began."},
    {"evicted_posts", "cascaded_evicted_posts_total", "counter", 1,
     "Posts evicted by --retention since the data directory began."},
    {"snapshots_written", "cascaded_snapshots_written_total", "counter", 1,
     "Engine snapshots written since start-up."},
    {"snapshots_failed", "cascaded_snapshots_failed_total", "counter", 1,
     "Engine snapshots that failed since start-up."},
    {"snapshot_last_time_ms", "cascaded_snapshot_last_timestamp_seconds", "gauge", 0.001,
     "When the last engine snapshot was taken, in seconds since the epoch (0: none yet)."},
    {"snapshot_last_events", "cascaded_snapshot_last_events", "gauge", 1,
     "Accepted events held by the last engine snapshot."},
    {"snapshot_last_bytes", "cascaded_snapshot_last_bytes", "gauge", 1,
     "Size of the last engine snapshot file."},
    {"snapshot_last_duration_ms", "cascaded_snapshot_last_duration_seconds", "gauge", 0.001,
     "Time the last engine snapshot took to write, from the fork to the file in place."},
    {"snapshot_last_fork_us", "cascaded_snapshot_last_fork_seconds", "gauge", 0.000001,
     "Time the last snapshot's fork held up the engine thread (ingest and queries)."},
    {"snapshot_running", "cascaded_snapshot_running", "gauge", 1,
     "1 while an engine snapshot is being written."},
};

#define NKNOWN (sizeof(known) / sizeof(known[0]))

/* ---------------------------------------------------------------- values */

static int key_is(const msgpack_object *k, const char *lit)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(lit) &&
           memcmp(k->via.str.ptr, lit, k->via.str.size) == 0;
}

static int key_has_prefix(const msgpack_object *k, const char *lit)
{
    size_t n = strlen(lit);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size > n &&
           memcmp(k->via.str.ptr, lit, n) == 0;
}

static int is_number(const msgpack_object *v)
{
    return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
           v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || v->type == MSGPACK_OBJECT_FLOAT32 ||
           v->type == MSGPACK_OBJECT_FLOAT64;
}

/* The shortest of %.15g and %.17g that reads back as d (0.559, not 0.55900000000000005). */
static int strtod_roundtrip(double d)
{
    char b[32];
    snprintf(b, sizeof(b), "%.15g", d);
    return strtod(b, NULL) == d;
}

static void put_double(struct strbuf *out, double d)
{
    if (isnan(d))
        sb_puts(out, "NaN");
    else if (isinf(d))
        sb_puts(out, d > 0 ? "+Inf" : "-Inf");
    else if (strtod_roundtrip(d))
        sb_printf(out, "%.15g", d);
    else
        sb_printf(out, "%.17g", d);
}

/* A sample's value; integers exactly, scaled ones as doubles. */
static void put_value(struct strbuf *out, const msgpack_object *v, double scale)
{
    if (scale == 1 && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        sb_printf(out, "%llu", (unsigned long long)v->via.u64);
    else if (scale == 1 && v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        sb_printf(out, "%lld", (long long)v->via.i64);
    else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        put_double(out, (double)v->via.u64 * scale);
    else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        put_double(out, (double)v->via.i64 * scale);
    else
        put_double(out, v->via.f64 * scale);
}

/* Label values come from the engine's keys: escaped as the format asks. */
static void put_label_value(struct strbuf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' || s[i] == '"')
            sb_putc(out, '\\');
        if (s[i] == '\n')
            sb_puts(out, "\\n");
        else
            sb_putc(out, s[i]);
    }
}

/* Metric names allow [a-zA-Z0-9_:]; anything else in a key becomes '_'. */
static void put_name_part(struct strbuf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        sb_putc(out, ok ? c : '_');
    }
}

static void family(struct strbuf *out, const char *name, const char *type, const char *help)
{
    sb_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---------------------------------------------------------------- the stats map */

static void event_sample(struct strbuf *out, const char *outcome, const char *reason, size_t rlen,
                         const msgpack_object *v)
{
    sb_printf(out, "cascaded_events_total{outcome=\"%s\"", outcome);
    if (reason) {
        sb_puts(out, ",reason=\"");
        put_label_value(out, reason, rlen);
        sb_putc(out, '"');
    }
    sb_puts(out, "} ");
    put_value(out, v, 1);
    sb_putc(out, '\n');
}

/* Rejections by reason, from rejected_<reason> keys or a `rejected` map; 1 if any were found. */
static int rejected_by_reason(struct strbuf *out, const msgpack_object_map *m)
{
    int found = 0;
    const msgpack_object *rm = mp_map_find(m, "rejected");
    const msgpack_object_map *src = rm && rm->type == MSGPACK_OBJECT_MAP ? &rm->via.map : m;
    size_t skip = src == m ? strlen("rejected_") : 0;
    for (uint32_t i = 0; i < src->size; i++) {
        const msgpack_object *k = &src->ptr[i].key, *v = &src->ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR || !is_number(v) ||
            (skip && !key_has_prefix(k, "rejected_")))
            continue;
        event_sample(out, "rejected", k->via.str.ptr + skip, k->via.str.size - skip, v);
        found = 1;
    }
    return found;
}

static void events(struct strbuf *out, const msgpack_object_map *m)
{
    static const char *const plain[][2] = {
        {"accepted", "accepted"}, {"duplicate", "duplicate"}, {"errors", "error"}};
    family(out, "cascaded_events_total", "counter",
           "Ingest events by outcome, and rejected ones by reason.");
    for (int i = 0; i < 3; i++) {
        const msgpack_object *v = mp_map_find(m, plain[i][0]);
        if (v && is_number(v))
            event_sample(out, plain[i][1], NULL, 0, v);
    }
    const msgpack_object *total = mp_map_find(m, "rejected");
    if (!rejected_by_reason(out, m) && total && is_number(total))
        event_sample(out, "rejected", NULL, 0, total);
}

/* The longest engine-thread job of each kind (the stats map pause_max_ms_by_job). */
static void pause_by_job(struct strbuf *out, const msgpack_object_map *m)
{
    const msgpack_object *v = mp_map_find(m, "pause_max_ms_by_job");
    if (!v || v->type != MSGPACK_OBJECT_MAP || v->via.map.size == 0)
        return;
    family(out, "cascaded_engine_job_max_seconds", "gauge",
           "The longest single job of each kind since start (on the engine thread, but "
           "wal_append: on the log thread; stats pause_thread_by_job).");
    for (uint32_t i = 0; i < v->via.map.size; i++) {
        const msgpack_object *k = &v->via.map.ptr[i].key, *x = &v->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR || !is_number(x))
            continue;
        sb_puts(out, "cascaded_engine_job_max_seconds{job=\"");
        put_label_value(out, k->via.str.ptr, k->via.str.size);
        sb_puts(out, "\"} ");
        put_value(out, x, 0.001);
        sb_putc(out, '\n');
    }
}

static int handled_elsewhere(const msgpack_object *k)
{
    for (size_t i = 0; i < NKNOWN; i++)
        if (key_is(k, known[i].key))
            return 1;
    return key_is(k, "accepted") || key_is(k, "duplicate") || key_is(k, "errors") ||
           key_is(k, "rejected") || key_has_prefix(k, "rejected_");
}

/* A cluster node's partitions (the stats array `partitions`, DESIGN §9): one series each. */
static void partitions(struct strbuf *out, const msgpack_object_map *m)
{
    static const struct {
        const char *key, *name, *help;
    } fam[] = {
        {"stream_seq", "cascaded_partition_stream_seq",
         "A cluster node's partition: the last sequence of the stream in it."},
        {"applied_seq", "cascaded_partition_applied_seq",
         "A cluster node's partition: the last stream sequence the node applied."},
        {"lag", "cascaded_partition_lag",
         "A cluster node's partition: messages in the stream the node has not applied yet."},
    };
    const msgpack_object *v = mp_map_find(m, "partitions");
    if (!v || v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size == 0)
        return;
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        family(out, fam[f].name, "gauge", fam[f].help);
        for (uint32_t i = 0; i < v->via.array.size; i++) {
            const msgpack_object *e = &v->via.array.ptr[i];
            if (e->type != MSGPACK_OBJECT_MAP)
                continue;
            const msgpack_object *p = mp_map_find(&e->via.map, "partition");
            const msgpack_object *x = mp_map_find(&e->via.map, fam[f].key);
            if (!p || !x || p->type != MSGPACK_OBJECT_POSITIVE_INTEGER || !is_number(x))
                continue;
            sb_printf(out, "%s{partition=\"%llu\"} ", fam[f].name,
                      (unsigned long long)p->via.u64);
            put_value(out, x, 1);
            sb_putc(out, '\n');
        }
    }
}

static void stats_metrics(struct strbuf *out, const msgpack_object_map *m)
{
    events(out, m);
    pause_by_job(out, m);
    partitions(out, m);
    for (size_t i = 0; i < NKNOWN; i++) {
        const msgpack_object *v = mp_map_find(m, known[i].key);
        if (!v || !is_number(v))
            continue;
        family(out, known[i].name, known[i].type, known[i].help);
        sb_printf(out, "%s ", known[i].name);
        put_value(out, v, known[i].scale);
        sb_putc(out, '\n');
    }
    /* keys this file does not know yet still get out, under a generic name */
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR || !is_number(v) || handled_elsewhere(k))
            continue;
        struct strbuf name = STRBUF_INIT;
        sb_puts(&name, "cascaded_stats_");
        put_name_part(&name, k->via.str.ptr, k->via.str.size);
        if (name.oom) {
            out->oom = 1;
        } else {
            family(out, name.p, "gauge",
                   "A figure of the stats method without a metric of its own.");
            sb_printf(out, "%s ", name.p);
            put_value(out, v, 1);
            sb_putc(out, '\n');
        }
        sb_free(&name);
    }
}

/* ---------------------------------------------------------------- the loop's own */

void prom_observe(struct prom_hist *h, uint64_t ns)
{
    for (int i = 0; i < PROM_BUCKETS; i++) {
        if (ns <= bucket_ns[i]) {
            h->bucket[i]++;
            break;
        }
    }
    h->count++;
    h->sum_ns += ns;
}

static void per_port(struct strbuf *out, const char *name, const char *type, const char *help,
                     const uint64_t v[PROM_PORTS])
{
    family(out, name, type, help);
    for (int p = 0; p < PROM_PORTS; p++)
        sb_printf(out, "%s{port=\"%s\"} %llu\n", name, port_names[p], (unsigned long long)v[p]);
}

static void limit_violations(struct strbuf *out, const struct prom_loop *l)
{
    static const char *const names[PROM_LIMITS] = {
        "ingest_value_bytes",  "ingest_array", "ingest_map_keys",   "ingest_depth",
        "ingest_string_bytes", "ingest_value_memory",
        "connections",         "rpc_request_bytes", "rpc_array",
        "rpc_map_keys",        "rpc_depth",    "rpc_string_bytes",  "rpc_value_memory",
        "http_head_bytes",
        "http_target_bytes",   "http_body",    "http_buffer_bytes", "handshake_timeout",
        "idle_timeout",
    };
    const char *name = "cascaded_limit_violations_total";
    family(out, name, "counter",
           "Inputs refused for breaking a limit (the client got an error saying which), by limit.");
    for (int i = 0; i < PROM_LIMITS; i++)
        sb_printf(out, "%s{limit=\"%s\"} %llu\n", name, names[i], (unsigned long long)l->limits[i]);
}

static void histogram(struct strbuf *out, const struct prom_loop *l)
{
    const char *name = "cascaded_query_duration_seconds";
    family(out, name, "histogram",
           "Queries from a complete request to its response being queued, by port.");
    for (int p = PROM_PORT_RPC; p <= PROM_PORT_HTTP; p++) {
        const struct prom_hist *h = &l->latency[p];
        uint64_t cum = 0;
        for (int i = 0; i < PROM_BUCKETS; i++) {
            cum += h->bucket[i];
            sb_printf(out, "%s_bucket{port=\"%s\",le=\"%g\"} %llu\n", name, port_names[p],
                      (double)bucket_ns[i] / 1e9, (unsigned long long)cum);
        }
        sb_printf(out, "%s_bucket{port=\"%s\",le=\"+Inf\"} %llu\n", name, port_names[p],
                  (unsigned long long)h->count);
        sb_printf(out, "%s_sum{port=\"%s\"} %.9f\n", name, port_names[p], (double)h->sum_ns / 1e9);
        sb_printf(out, "%s_count{port=\"%s\"} %llu\n", name, port_names[p],
                  (unsigned long long)h->count);
    }
}

void prom_render(const msgpack_object *stats, const struct prom_loop *loop, struct strbuf *out)
{
    if (stats && stats->type == MSGPACK_OBJECT_MAP)
        stats_metrics(out, &stats->via.map);
    family(out, "cascaded_up", "gauge", "1 when the engine answered the stats query.");
    sb_printf(out, "cascaded_up %d\n", stats && stats->type == MSGPACK_OBJECT_MAP);
    per_port(out, "cascaded_connections_open", "gauge", "Connections open, by port.", loop->open);
    per_port(out, "cascaded_connections_accepted_total", "counter",
             "Connections accepted since the start, by port.", loop->accepted);
    per_port(out, "cascaded_received_bytes_total", "counter",
             "Bytes received since the start, by port.", loop->bytes_in);
    per_port(out, "cascaded_auth_failures_total", "counter",
             "Connections or requests refused for a missing or wrong --auth-token-file token, "
             "by port.",
             loop->auth_failures);
    per_port(out, "cascaded_malformed_total", "counter",
             "Connections ended or requests refused for bytes that are not the port's protocol, "
             "by port.",
             loop->malformed);
    limit_violations(out, loop);
    histogram(out, loop);
}
