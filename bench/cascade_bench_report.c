/* The report: one human-readable table on stdout, and with --json every figure as one JSON object
 * {"command", "params", "results"}. Latencies are nearest-rank percentiles of the sorted samples;
 * the server's own are read off its histogram's delta, so they are bucket upper bounds. Its
 * engine-thread pauses are its own `stats` figures, maxima since it started. */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "cascade_bench.h"

static const char *const cmd_names[] = {"ingest", "query", "mixed"};
static const double pcts[] = {0.5, 0.9, 0.99, 0.999, 1.0};
static const char *const pct_names[] = {"p50", "p90", "p99", "p999", "max"};
#define NPCTS 5

double pct_ms(const uint64_t *sorted, uint64_t n, double p)
{
    if (!n)
        return 0;
    uint64_t i = (uint64_t)ceil(p * (double)n);
    return (double)sorted[i ? i - 1 : 0] * 1e-6;
}

/* Guarded: a run that failed at once has no duration. */
static double rate(double x, double seconds)
{
    return seconds > 0 ? x / seconds : 0;
}

static double acked(const struct ingest_result *r)
{
    return (double)(r->ok + r->dup + r->rej);
}

/* Over what was acked: a failed run's rate must not count what never got through. */
static double mb_per_s(const struct ingest_result *r)
{
    return rate((double)r->bytes * acked(r) / (double)r->events / 1e6, r->seconds);
}

static uint64_t events_loaded(const struct report *rep)
{
    return (rep->load ? rep->load->spec.events : 0) +
           (rep->preload ? rep->preload->spec.events : 0);
}

static double per_event(long long bytes, uint64_t n)
{
    return bytes < 0 || !n ? -1 : (double)bytes / (double)n;
}

/* The server's delta over the query phase: the smallest bucket bound that holds the p-th query. */
static double hist_pct_ms(const struct hist *b, const struct hist *a, double p)
{
    uint64_t total = a->count - b->count, need = (uint64_t)ceil(p * (double)total);
    for (int i = 0; total && i < a->n; i++) {
        uint64_t before = i < b->n ? b->cum[i] : 0;
        if (a->cum[i] - before >= (need ? need : 1))
            return a->le[i] * 1e3;
    }
    return NAN;
}

static int have_hist(const struct report *rep)
{
    return rep->before && rep->after && rep->before->n && rep->after->n == rep->before->n;
}

/* ---- the table ---- */

static void print_ingest(const char *name, const struct workload *w, const struct ingest_result *r)
{
    printf("%-10s %" PRIu64 " events (%u cascades, largest %u) in batches of %u over %u "
           "connections; encoded %.1f MB in %.2f s (not timed)\n",
           name, w->spec.events, w->cascades, w->largest, w->spec.batch, w->spec.conns,
           w->bytes / 1e6, w->gen_s + w->enc_s);
    printf("%-10s %.3f s: %.0f events/s, %.1f MB/s; acked ok %" PRIu64 " dup %" PRIu64
           " rej %" PRIu64 " of %" PRIu64 "\n",
           "", r->seconds, rate(acked(r), r->seconds), mb_per_s(r), r->ok, r->dup, r->rej,
           r->events);
    if (r->target_rate > 0)
        printf("%-10s open loop: target %.0f events/s, achieved %.0f events/s (%.1f%%); a batch "
               "went out at most %.2f ms after its due time; ack latency below is from the due "
               "time\n",
               "", r->target_rate, rate(acked(r), r->seconds),
               100.0 * rate(acked(r), r->seconds) / r->target_rate, r->max_lag_ns * 1e-6);
    printf("%-10s ack latency p50 %.2f ms, p99 %.2f ms, p999 %.2f ms, max %.2f ms over %" PRIu64
           " batches; longest wait for an ack %.1f ms; client CPU %.2f s\n",
           "", pct_ms(r->lat_ns, r->nlat, 0.5), pct_ms(r->lat_ns, r->nlat, 0.99),
           pct_ms(r->lat_ns, r->nlat, 0.999), pct_ms(r->lat_ns, r->nlat, 1.0), r->nlat,
           r->max_gap_ns * 1e-6, r->cpu_s);
    if (r->nper_s) {
        printf("%-10s per second:", "");
        for (uint32_t i = 0; i < r->nper_s; i++)
            printf(" %.0f", r->per_s[i]);
        printf("\n");
    }
    for (int i = 0; i < r->nmsgs; i++)
        printf("%-10s %s\n", "", r->msgs[i]);
}

static void print_lat_row(const char *name, const struct lat_set *s)
{
    printf("  %-13s %9" PRIu64 " %7" PRIu64, name, s->n, s->errors);
    for (int i = 0; i < NPCTS; i++)
        printf(" %9.3f", pct_ms(s->v, s->n, pcts[i]));
    printf("\n");
}

static void print_query(const struct report *rep)
{
    const struct query_result *r = rep->query;
    printf("queries    target %.0f/s, achieved %.1f/s over %.3f s: %" PRIu64 " sent, %" PRIu64
           " answered, %" PRIu64 " errors, %" PRIu64 " lost; at most %" PRIu64
           " in flight; query thread CPU %.2f s\n",
           r->target_rate, rate((double)r->answered, r->seconds), r->seconds, r->scheduled,
           r->answered, r->errors, r->lost, r->max_in_flight, r->cpu_s);
    if (r->first_error[0])
        printf("           first error: %s\n", r->first_error);
    printf("  latency from the scheduled send, ms (client side)\n");
    printf("  %-13s %9s %7s", "method", "count", "errors");
    for (int i = 0; i < NPCTS; i++)
        printf(" %9s", pct_names[i]);
    printf("\n");
    for (int m = 0; m < NMETHODS; m++)
        if (rep->o->mix[m])
            print_lat_row(method_names[m], &r->per[m]);
    print_lat_row("all", &r->all);
    if (have_hist(rep)) {
        printf("  %-13s %9" PRIu64 " %7s", "server side", rep->after->count - rep->before->count,
               "-");
        for (int i = 0; i < NPCTS; i++)
            printf(" %9.3f", hist_pct_ms(rep->before, rep->after, pcts[i]));
        printf("\n  (server side: its rpc histogram's delta, request parsed to response queued;\n"
               "   each figure is the upper bound of the bucket that holds it)\n");
    } else if (rep->after) {
        printf("  server histogram: not read (no http port, or no rpc buckets in /metrics)\n");
    }
}

static void print_calibration(const struct report *rep)
{
    const struct ingest_result *c = rep->calib_in;
    const struct query_result *q = rep->calib_query;
    double flat = rate(acked(c), c->seconds);
    printf("calibration %" PRIu64 " events flat out with queries beside: %.0f events/s (query p99 "
           "%.3f ms); the timed ingest's target is %g%% of it: %.0f events/s\n",
           c->events, flat, q ? pct_ms(q->all.v, q->all.n, 0.99) : NAN, rep->o->ingest_pct,
           flat * rep->o->ingest_pct / 100.0);
}

static uint64_t over_in_phase(const struct report *rep)
{
    const struct pauses *b = rep->pauses_before, *a = rep->pauses;
    return b && b->read && a->over_10ms >= b->over_10ms ? a->over_10ms - b->over_10ms
                                                        : a->over_10ms;
}

/* Whether the longest pause fell in the timed phase: it grew during it. */
static int max_in_phase(const struct report *rep)
{
    const struct pauses *b = rep->pauses_before, *a = rep->pauses;
    return !b || !b->read || a->max_ms > b->max_ms;
}

static void print_pauses(const struct report *rep)
{
    const struct pauses *p = rep->pauses;
    if (!p || !p->read) {
        printf("pauses     not read (no `stats` answer with pause_max_ms from the server)\n");
        return;
    }
    printf("pauses     the server's engine thread, since it started (its `stats`): longest %.2f ms "
           "(%s, %s the timed phase",
           p->max_ms, p->max_job[0] ? p->max_job : "none", max_in_phase(rep) ? "in" : "before");
    if (p->max_cpu_ms >= 0) /* the rest of it the thread waited for a core */
        printf("; %.2f ms of it CPU", p->max_cpu_ms);
    printf("); %" PRIu64 " over 10 ms, %" PRIu64 " of them in the timed phase\n", p->over_10ms,
           over_in_phase(rep));
    printf("%-10s longest job by kind, ms:", "");
    for (int i = 0; i < p->njobs; i++) {
        int other = p->thread[i][0] && strcmp(p->thread[i], "engine");
        printf("%s %s %.2f", i ? "," : "", p->job[i], p->job_ms[i]);
        if (other)
            printf(" (on the %s thread, not a pause)", p->thread[i]);
    }
    printf("\n");
}

static void print_server(const struct report *rep)
{
    const struct server *sv = rep->sv;
    double mib = 1048576.0;
    uint64_t n = events_loaded(rep);
    if (sv->pid <= 0)
        return;
    printf("server     pid %d: peak RSS (VmHWM) %.1f MiB = %.1f bytes/event; RSS at the end %.1f "
           "MiB = %.1f bytes/event",
           (int)sv->pid, sv->hwm / mib, per_event(sv->hwm, n), sv->rss_end / mib,
           per_event(sv->rss_end, n));
    if (sv->started)
        printf(" (%.1f MiB at ready)", sv->rss_ready / mib);
    printf("\nserver CPU %.2f s in all; by thread:", sv->cpu);
    for (int i = 0; i < sv->nthreads; i++)
        printf("%s %s/%d %.2f s", i ? "," : "", sv->threads[i].comm, sv->threads[i].tid,
               sv->threads[i].cpu);
    printf("\n");
    if (!sv->started)
        return;
    printf("server     data dir %.1f MiB; SIGTERM to exit %.2f s, exit status %d; log: %d warn, "
           "%d error lines\n",
           sv->data_bytes / mib, sv->stop_s, sv->status, sv->warns, sv->errors);
    for (int i = 0; i < sv->nlog; i++)
        printf("  %s\n", sv->log_lines[i]);
}

static void print_poll(const struct report *rep)
{
    const struct poll_result *p = rep->poll;
    printf("poll       %s every %g s: %" PRIu64 " calls, %" PRIu64 " errors; latency ms p50 %.3f, "
           "p99 %.3f, max %.3f\n",
           rep->o->poll, rep->o->poll_every, p->calls, p->errors, pct_ms(p->lat_ns, p->n, 0.5),
           pct_ms(p->lat_ns, p->n, 0.99), pct_ms(p->lat_ns, p->n, 1.0));
    if (p->first_error[0])
        printf("%-10s first error: %s\n", "", p->first_error);
}

void report_print(const struct report *rep)
{
    const struct opts *o = rep->o;
    printf(PROG " %s: seed %" PRIu64, cmd_names[o->cmd], o->seed);
    if (o->server)
        printf(", server %s --fsync %s", o->server, o->fsync);
    printf("\n");
    if (rep->preload && rep->preload_in)
        print_ingest("preload", rep->preload, rep->preload_in);
    if (rep->calib && rep->calib_in)
        print_calibration(rep);
    if (rep->load && rep->ingest)
        print_ingest("ingest", rep->load, rep->ingest);
    if (rep->query)
        print_query(rep);
    if (rep->poll)
        print_poll(rep);
    print_server(rep);
    print_pauses(rep);
    printf("client     CPU %.2f s over %.2f s of load (%.0f%% of one core)\n", rep->client_cpu_s,
           rep->wall_s, rate(100.0 * rep->client_cpu_s, rep->wall_s));
    printf("result     %s\n", rep->failed ? "FAILED" : "ok");
}

/* ---- JSON ---- */

struct jw {
    FILE *f;
    int comma;
};

static void jstr_raw(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* A member's key (NULL: an array element), after a comma when one is due. */
static void jkey(struct jw *j, const char *k)
{
    if (j->comma)
        fputc(',', j->f);
    if (k) {
        jstr_raw(j->f, k);
        fputc(':', j->f);
    }
    j->comma = 1;
}

static void jopen(struct jw *j, const char *k, char bracket)
{
    jkey(j, k);
    fputc(bracket, j->f);
    j->comma = 0;
}

static void jclose(struct jw *j, char bracket)
{
    fputc(bracket, j->f);
    j->comma = 1;
}

/* JSON has no NaN or infinity: an absent figure is null. */
static void jnum(struct jw *j, const char *k, double v)
{
    jkey(j, k);
    if (isfinite(v))
        fprintf(j->f, "%.6g", v);
    else
        fputs("null", j->f);
}

static void jint(struct jw *j, const char *k, long long v)
{
    jkey(j, k);
    fprintf(j->f, "%lld", v);
}

static void jstr(struct jw *j, const char *k, const char *s)
{
    jkey(j, k);
    if (s)
        jstr_raw(j->f, s);
    else
        fputs("null", j->f);
}

static void jbool(struct jw *j, const char *k, int v)
{
    jkey(j, k);
    fputs(v ? "true" : "false", j->f);
}

static void json_pcts(struct jw *j, const char *k, const uint64_t *v, uint64_t n)
{
    jopen(j, k, '{');
    for (int i = 0; i < NPCTS; i++)
        jnum(j, pct_names[i], pct_ms(v, n, pcts[i]));
    jclose(j, '}');
}

static void json_params(struct jw *j, const struct opts *o)
{
    jopen(j, "params", '{');
    jint(j, "events", (long long)o->events);
    jint(j, "batch", o->batch);
    jint(j, "connections", o->conns);
    jint(j, "window", o->window);
    jkey(j, "seed");
    fprintf(j->f, "%" PRIu64, o->seed); /* the whole range: seeds are 64-bit */
    jstr(j, "prefix", o->prefix);
    if (o->cmd != CMD_INGEST) {
        jnum(j, "rate", o->rate);
        if (o->cmd == CMD_QUERY)
            jnum(j, "seconds", o->seconds);
        else
            jint(j, "query_connections", o->qconns), jint(j, "preload", (long long)o->preload);
        if (o->cmd == CMD_MIXED) {
            jnum(j, "ingest_rate", o->ingest_pct > 0 ? NAN : o->ingest_rate);
            jnum(j, "ingest_rate_percent", o->ingest_pct > 0 ? o->ingest_pct : NAN);
            jint(j, "calibration_events", (long long)o->calib_events);
        }
        jopen(j, "mix", '{');
        for (int m = 0; m < NMETHODS; m++)
            jint(j, method_names[m], o->mix[m]);
        jclose(j, '}');
    }
    jstr(j, "server", o->server);
    jstr(j, "fsync", o->server ? o->fsync : NULL);
    jopen(j, "server_args", '[');
    for (int i = 0; i < o->nserver_args; i++)
        jstr(j, NULL, o->server_args[i]);
    jclose(j, ']');
    jstr(j, "poll", o->poll);
    jclose(j, '}');
}

static void json_ingest(struct jw *j, const char *k, const struct workload *w,
                        const struct ingest_result *r)
{
    jopen(j, k, '{');
    jint(j, "events", (long long)r->events);
    jint(j, "cascades", w->cascades);
    jint(j, "bytes", (long long)r->bytes);
    jnum(j, "seconds", r->seconds);
    jnum(j, "events_per_s", rate(acked(r), r->seconds));
    jnum(j, "target_events_per_s", r->target_rate > 0 ? r->target_rate : NAN); /* null: flat out */
    jnum(j, "max_send_lag_ms", r->target_rate > 0 ? r->max_lag_ns * 1e-6 : NAN);
    jnum(j, "mb_per_s", mb_per_s(r));
    jint(j, "ok", (long long)r->ok);
    jint(j, "dup", (long long)r->dup);
    jint(j, "rej", (long long)r->rej);
    jbool(j, "all_ok", !r->failed);
    jint(j, "batches_acked", (long long)r->nlat);
    json_pcts(j, "ack_ms", r->lat_ns, r->nlat);
    jnum(j, "max_ack_gap_ms", r->max_gap_ns * 1e-6);
    jnum(j, "client_cpu_seconds", r->cpu_s);
    jopen(j, "per_second", '[');
    for (uint32_t i = 0; i < r->nper_s; i++)
        jnum(j, NULL, r->per_s[i]);
    jclose(j, ']');
    jopen(j, "errors", '[');
    for (int i = 0; i < r->nmsgs; i++)
        jstr(j, NULL, r->msgs[i]);
    jclose(j, ']');
    jclose(j, '}');
}

static void json_lat(struct jw *j, const char *k, const struct lat_set *s)
{
    jopen(j, k, '{');
    jint(j, "count", (long long)s->n);
    jint(j, "errors", (long long)s->errors);
    for (int i = 0; i < NPCTS; i++)
        jnum(j, pct_names[i], pct_ms(s->v, s->n, pcts[i]));
    jclose(j, '}');
}

static void json_server_hist(struct jw *j, const struct report *rep)
{
    const struct hist *b = rep->before, *a = rep->after;
    jopen(j, "server_latency_ms", '{');
    jint(j, "count", (long long)(a->count - b->count));
    for (int i = 0; i < NPCTS; i++)
        jnum(j, pct_names[i], hist_pct_ms(b, a, pcts[i]));
    jopen(j, "buckets", '[');
    for (int i = 0; i < a->n; i++) {
        jopen(j, NULL, '{');
        jnum(j, "le_ms", a->le[i] * 1e3);
        jint(j, "count", (long long)(a->cum[i] - b->cum[i]));
        jclose(j, '}');
    }
    jclose(j, ']');
    jclose(j, '}');
}

static void json_query(struct jw *j, const struct report *rep)
{
    const struct query_result *r = rep->query;
    jopen(j, "query", '{');
    jnum(j, "target_qps", r->target_rate);
    jnum(j, "achieved_qps", rate((double)r->answered, r->seconds));
    jnum(j, "seconds", r->seconds);
    jint(j, "sent", (long long)r->scheduled);
    jint(j, "answered", (long long)r->answered);
    jint(j, "errors", (long long)r->errors);
    jint(j, "lost", (long long)r->lost);
    jint(j, "max_in_flight", (long long)r->max_in_flight);
    jstr(j, "first_error", r->first_error[0] ? r->first_error : NULL);
    jnum(j, "client_cpu_seconds", r->cpu_s);
    jopen(j, "latency_ms", '{');
    for (int m = 0; m < NMETHODS; m++)
        if (rep->o->mix[m])
            json_lat(j, method_names[m], &r->per[m]);
    json_lat(j, "all", &r->all);
    jclose(j, '}');
    if (have_hist(rep))
        json_server_hist(j, rep);
    jclose(j, '}');
}

static void json_calibration(struct jw *j, const struct report *rep)
{
    const struct ingest_result *c = rep->calib_in;
    const struct query_result *q = rep->calib_query;
    jopen(j, "calibration", '{');
    jint(j, "events", (long long)c->events);
    jnum(j, "seconds", c->seconds);
    jnum(j, "events_per_s", rate(acked(c), c->seconds));
    jbool(j, "all_ok", !c->failed);
    jnum(j, "percent", rep->o->ingest_pct);
    jnum(j, "target_events_per_s", rate(acked(c), c->seconds) * rep->o->ingest_pct / 100.0);
    jnum(j, "query_p99_ms", q ? pct_ms(q->all.v, q->all.n, 0.99) : NAN);
    jclose(j, '}');
}

/* null when the server did not say */
static void json_pauses(struct jw *j, const struct report *rep)
{
    const struct pauses *p = rep->pauses;
    if (!p || !p->read) {
        jkey(j, "pauses");
        fputs("null", j->f);
        return;
    }
    jopen(j, "pauses", '{');
    jnum(j, "pause_max_ms", p->max_ms);
    jnum(j, "pause_max_cpu_ms", p->max_cpu_ms >= 0 ? p->max_cpu_ms : NAN);
    jstr(j, "pause_max_job", p->max_job[0] ? p->max_job : NULL);
    jint(j, "pauses_over_10ms", (long long)p->over_10ms);
    jopen(j, "pause_max_ms_by_job", '{');
    for (int i = 0; i < p->njobs; i++)
        jnum(j, p->job[i], p->job_ms[i]);
    jclose(j, '}');
    jopen(j, "pause_thread_by_job", '{');
    for (int i = 0; i < p->njobs; i++)
        jstr(j, p->job[i], p->thread[i][0] ? p->thread[i] : NULL);
    jclose(j, '}');
    jint(j, "pauses_over_10ms_in_timed_phase", (long long)over_in_phase(rep));
    jbool(j, "pause_max_in_timed_phase", max_in_phase(rep));
    jclose(j, '}');
}

static void json_server(struct jw *j, const struct report *rep)
{
    const struct server *sv = rep->sv;
    uint64_t n = events_loaded(rep);
    jopen(j, "server", '{');
    jint(j, "pid", sv->pid);
    jint(j, "peak_rss_bytes", sv->hwm);
    jint(j, "rss_end_bytes", sv->rss_end);
    jnum(j, "peak_rss_bytes_per_event", per_event(sv->hwm, n));
    jnum(j, "rss_end_bytes_per_event", per_event(sv->rss_end, n));
    jnum(j, "cpu_seconds", sv->cpu);
    jopen(j, "threads", '[');
    for (int i = 0; i < sv->nthreads; i++) {
        jopen(j, NULL, '{');
        jint(j, "tid", sv->threads[i].tid);
        jstr(j, "name", sv->threads[i].comm);
        jnum(j, "cpu_seconds", sv->threads[i].cpu);
        jclose(j, '}');
    }
    jclose(j, ']');
    if (sv->started) {
        jint(j, "rss_ready_bytes", sv->rss_ready);
        jint(j, "data_dir_bytes", sv->data_bytes);
        jnum(j, "stop_seconds", sv->stop_s);
        jint(j, "exit_status", sv->status);
        jint(j, "log_warn", sv->warns);
        jint(j, "log_error", sv->errors);
        jopen(j, "log", '[');
        for (int i = 0; i < sv->nlog; i++)
            jstr(j, NULL, sv->log_lines[i]);
        jclose(j, ']');
    }
    jclose(j, '}');
}

int report_json(const struct report *rep, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    struct jw j = {f, 0};
    jopen(&j, NULL, '{');
    jstr(&j, "command", cmd_names[rep->o->cmd]);
    json_params(&j, rep->o);
    jopen(&j, "results", '{');
    if (rep->preload && rep->preload_in)
        json_ingest(&j, "preload", rep->preload, rep->preload_in);
    if (rep->calib && rep->calib_in)
        json_calibration(&j, rep);
    if (rep->load && rep->ingest)
        json_ingest(&j, "ingest", rep->load, rep->ingest);
    if (rep->query)
        json_query(&j, rep);
    if (rep->poll) {
        const struct poll_result *p = rep->poll;
        jopen(&j, "poll", '{');
        jstr(&j, "method", rep->o->poll);
        jnum(&j, "every_s", rep->o->poll_every);
        jint(&j, "calls", (long long)p->calls);
        jint(&j, "errors", (long long)p->errors);
        jnum(&j, "p50_ms", pct_ms(p->lat_ns, p->n, 0.5));
        jnum(&j, "p99_ms", pct_ms(p->lat_ns, p->n, 0.99));
        jnum(&j, "max_ms", pct_ms(p->lat_ns, p->n, 1.0));
        jclose(&j, '}');
    }
    if (rep->sv->pid > 0)
        json_server(&j, rep);
    json_pauses(&j, rep);
    jnum(&j, "client_cpu_seconds", rep->client_cpu_s);
    jnum(&j, "wall_seconds", rep->wall_s);
    jstr(&j, "result", rep->failed ? "failed" : "ok");
    jclose(&j, '}');
    jclose(&j, '}');
    fputc('\n', f);
    int bad = ferror(f);
    return fclose(f) || bad ? -EIO : 0;
}
