/* cascade-replay: sends the events of dumps (NDJSON, CSV, msgpack; plain, gzip, zstd) to cascaded's
 * ingest port and waits for every ack (DESIGN §7), or publishes them to a cluster's JetStream
 * stream (--nats, DESIGN §9), or checks them with --dry-run. One thread: reading, encoding and
 * the sockets take turns in a poll loop, a bounded window in flight. */
#include "cascade-replay.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cascade/nats.h"
#include "cascade/proto.h"

#ifndef CASCADE_VERSION
#define CASCADE_VERSION "dev"
#endif

#define MAX_CONNS      64   /* the router keeps a connection in 6 bits */
#define PRODUCE_BUDGET 4096 /* events read between two looks at the sockets */
#define TICK_S         0.2  /* progress refresh, and the longest poll */

struct opts {
    const char *host, *port;
    const char *token_file; /* --auth-token-file, or NULL */
    double speed; /* 0: as fast as the server acks; else this many times the dump's pace */
    unsigned conns;
    enum rp_format format;
    uint64_t from;
    int dry_run, quiet;
    struct rp_nats_opts nats; /* --nats: urls set */
    int tcp_flags;            /* options of the TCP path given (not with --nats) */
    char **files;
    unsigned nfiles;
};

struct replay {
    struct opts o;
    /* input */
    struct rp_reader rd;
    int open, input_done, input_blocked;
    unsigned fi;
    enum rp_format *file_fmt;
    uint64_t events_read, bad_lines, file_errors, done_bytes, total_bytes;
    int total_known;
    /* output */
    struct rp_route *route;
    struct rp_net net;
    struct rp_nats *nats;
    uint64_t named_rejections, checked, outcome[EVENT_OUTCOME_COUNT];
    /* pace (--speed Nx): the first event's ts and wall time, the newest ts so far */
    int paced;
    int64_t t0, tmax;
    double w0, hold_until;
    /* progress */
    int progress, progress_shown;
    double started, next_tick;
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ messages */

static void clear_progress(struct replay *r)
{
    if (r->progress_shown)
        fputs("\r\033[K", stderr);
    r->progress_shown = 0;
}

/* A line on stderr, below the progress line (which is redrawn at the next tick). */
__attribute__((format(printf, 2, 3))) static void say(struct replay *r, const char *fmt, ...)
{
    va_list ap;
    clear_progress(r);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* "file:line" for text dumps, "file: event N" for msgpack ones. */
static const char *where(const struct replay *r, uint32_t file, uint64_t line, char *buf,
                         size_t len)
{
    const char *name = strcmp(r->o.files[file], "-") ? r->o.files[file] : "<stdin>";
    if (r->file_fmt[file] == RP_FMT_MSGPACK)
        snprintf(buf, len, "%s: event %" PRIu64, name, line);
    else
        snprintf(buf, len, "%s:%" PRIu64, name, line);
    return buf;
}

static void on_reject(void *ctx, const struct rp_slot *s, const char *reason)
{
    struct replay *r = ctx;
    char at[600];
    r->named_rejections++;
    if (!r->o.quiet)
        say(r, "%s: rejected by the server: %s", where(r, s->file, s->line, at, sizeof(at)),
            reason);
}

/* 1234567 → "1.2 M", with a unit "1.2 MB"; under 1000 → "123" ("123 B"). */
static void human(double x, const char *unit, char *buf, size_t len)
{
    const char *pre[] = {"", "k", "M", "G", "T"};
    int i = 0;
    while (x >= 1000 && i < 4) {
        x /= 1000;
        i++;
    }
    snprintf(buf, len, "%.*f%s%s%s", i ? 1 : 0, x, i || *unit ? " " : "", pre[i], unit);
}

static uint64_t bytes_read(const struct replay *r)
{
    return r->done_bytes + (r->open ? r->rd.in.bytes_read : 0);
}

/* ", ETA m:ss" from the share of the input read so far; only at full speed with known sizes. */
static void eta(const struct replay *r, double secs, uint64_t rd, char *buf, size_t len)
{
    buf[0] = 0;
    if (!r->total_known || r->o.speed > 0 || rd == 0 || rd >= r->total_bytes)
        return;
    double left = secs * (double)(r->total_bytes - rd) / (double)rd;
    snprintf(buf, len, ", ETA %d:%02d", (int)left / 60, (int)left % 60);
}

/* One line, redrawn in place: "1.2 M events sent, 1.1 M acked, 950.3 k events/s, 12.0 MB of
 * 48.0 MB read, ETA 0:03". */
static void show_progress(struct replay *r, double t)
{
    uint64_t sent, ok, dup, rej;
    char a[32], b[32], c[32], d[32], e[32], left[48];
    double secs = t - r->started > 1e-3 ? t - r->started : 1e-3;
    uint64_t rd = bytes_read(r);
    if (r->o.dry_run) {
        sent = ok = r->checked;
        dup = rej = 0;
    } else if (r->nats) {
        struct cc_nats_counts nc;
        cc_nats_counts(rp_nats_pub(r->nats), &nc);
        sent = nc.added;
        ok = nc.acked;
        dup = rej = 0;
    } else {
        rp_net_totals(&r->net, &sent, &ok, &dup, &rej);
    }
    human((double)sent, "", a, sizeof(a));
    human((double)(ok + dup + rej), "", b, sizeof(b));
    human((double)(ok + dup + rej) / secs, "", c, sizeof(c));
    human((double)rd, "B", d, sizeof(d));
    human((double)r->total_bytes, "B", e, sizeof(e));
    eta(r, secs, rd, left, sizeof(left));
    if (r->o.dry_run)
        fprintf(stderr, "\r\033[K%s events checked, %s events/s", a, c);
    else
        fprintf(stderr, "\r\033[K%s events sent, %s acked, %s events/s", a, b, c);
    fprintf(stderr, ", %s%s%s read%s", d, r->total_known ? " of " : "", r->total_known ? e : "",
            left);
    r->progress_shown = 1;
}

static void tick(struct replay *r)
{
    if (!r->progress)
        return;
    double t = now_s();
    if (t < r->next_tick)
        return;
    r->next_tick = t + TICK_S;
    show_progress(r, t);
}

/* ------------------------------------------------------------------ reading */

static void close_file(struct replay *r)
{
    r->done_bytes += r->rd.in.bytes_read;
    rp_reader_close(&r->rd);
    r->open = 0;
    r->fi++;
}

static int open_next(struct replay *r)
{
    int rc = rp_reader_open(&r->rd, r->o.files[r->fi], r->o.format);
    if (rc == 0) {
        r->open = 1;
        return 0;
    }
    if (rc == -ENOMEM)
        return rc;
    say(r, "cascade-replay: cannot open %s: %s", r->o.files[r->fi], strerror(-rc));
    r->file_errors++;
    r->fi++;
    return 0;
}

/* The next event of all the files, in order: 1, 0 when all are read, -EAGAIN (stdin is not
 * ready), -ENOMEM. Bad records are reported and counted here; a file that cannot be read to its
 * end is reported, counted, and left for the next. */
static int next_event(struct replay *r, struct rp_record *rec, struct rp_slot *slot)
{
    char at[600];
    for (;;) {
        if (!r->open) {
            if (r->fi == r->o.nfiles)
                return 0;
            if (open_next(r))
                return -ENOMEM;
            continue;
        }
        int rc = rp_reader_next(&r->rd, rec);
        r->file_fmt[r->fi] = r->rd.fmt;
        if (rc == 1) {
            slot->global = r->events_read++;
            slot->line = r->rd.line;
            slot->file = r->fi;
            return 1;
        }
        if (rc == -EAGAIN || rc == -ENOMEM)
            return rc;
        if (rc == -EBADMSG) {
            r->bad_lines++;
            if (!r->o.quiet)
                say(r, "%s: bad %s: %s", where(r, r->fi, r->rd.line, at, sizeof(at)),
                    r->rd.fmt == RP_FMT_MSGPACK ? "event" : "line", r->rd.msg);
            continue;
        }
        if (rc < 0) {
            say(r, "cascade-replay: %s: %s; the rest of this file is skipped", r->rd.in.name,
                r->rd.msg);
            r->file_errors++;
        }
        close_file(r);
    }
}

/* next_event, noting in r an input that has nothing yet (-EAGAIN) or is at its end (0). */
static int take_event(struct replay *r, struct rp_record *rec, struct rp_slot *slot)
{
    int rc = next_event(r, rec, slot);
    if (rc == -EAGAIN)
        r->input_blocked = 1;
    if (rc == 0)
        r->input_done = 1;
    return rc;
}

/* ------------------------------------------------------------------ sending */

/* --speed Nx: an event is due when the dump's clock, run N times faster from the first event,
 * reaches its ts. Only a ts beyond every earlier one moves that clock, so events whose ts goes
 * backwards (or that have none) go at once. Events before a wait are sent before it. */
static void pace(struct replay *r, const struct rp_record *rec)
{
    int64_t ts;
    if (!rp_record_ts(rec, &ts))
        return;
    if (!r->paced) {
        r->paced = 1;
        r->t0 = r->tmax = ts;
        r->w0 = now_s();
        return;
    }
    if (ts <= r->tmax)
        return;
    r->tmax = ts;
    double due = r->w0 + (double)(ts - r->t0) / 1000.0 / r->o.speed;
    if (due > now_s()) {
        rp_net_flush(&r->net);
        r->hold_until = due;
    }
}

/* Reads and encodes events until a window fills, the input waits, a paced event is not due
 * yet, or PRODUCE_BUDGET events have gone by (to look at the sockets). 0 or -ENOMEM. */
static int produce(struct replay *r)
{
    for (unsigned n = 0; n < PRODUCE_BUDGET; n++) {
        if (r->hold_until > 0) {
            if (now_s() < r->hold_until)
                return 0;
            r->hold_until = 0;
            rp_net_flush(&r->net);
        }
        if (rp_net_full(&r->net) || interrupted)
            break;
        struct rp_record rec;
        struct rp_slot slot;
        int rc = take_event(r, &rec, &slot);
        if (rc == -ENOMEM)
            return rc;
        if (rc <= 0)
            break;
        unsigned k = rp_route_pick(r->route, &rec); /* skipped events too: their children follow */
        if (slot.global < r->o.from)
            continue;
        if (r->o.speed > 0)
            pace(r, &rec);
        if ((rc = rp_net_add(&r->net, k, &rec, &slot)) < 0)
            return rc;
    }
    if (r->hold_until == 0)
        rp_net_flush(&r->net);
    return 0;
}

static int poll_timeout_ms(const struct replay *r, int can_produce)
{
    if (can_produce)
        return 0;
    double wait = TICK_S;
    if (r->hold_until > 0) {
        double left = r->hold_until - now_s();
        wait = left < wait ? left : wait;
    }
    return wait > 0 ? (int)ceil(wait * 1000) : 0;
}

/* The send loop: until every event is read and acknowledged, a connection fails, or a signal. */
static int send_loop(struct replay *r)
{
    struct pollfd pfd[MAX_CONNS + 1];
    int stopping = 0;
    for (;;) {
        if (!stopping && produce(r) < 0) {
            say(r, "cascade-replay: out of memory");
            return -ENOMEM;
        }
        if (interrupted)
            return -EINTR;
        if (r->net.failed && !stopping) {
            stopping = 1; /* read no more; let the other connections settle what they have */
            r->hold_until = 0;
            rp_net_flush(&r->net);
        }
        if ((r->input_done || stopping) && r->hold_until == 0 && rp_net_idle(&r->net))
            return 0;
        int can_produce = !stopping && !r->input_done && !r->input_blocked && r->hold_until == 0 &&
                          !rp_net_full(&r->net);
        rp_net_pollfds(&r->net, pfd);
        unsigned n = r->net.n;
        if (r->input_blocked && r->open)
            pfd[n++] = (struct pollfd){.fd = r->rd.in.fd, .events = POLLIN};
        r->input_blocked = 0;
        if (poll(pfd, n, poll_timeout_ms(r, can_produce)) < 0 && errno != EINTR) {
            say(r, "cascade-replay: poll: %s", strerror(errno));
            return -errno;
        }
        rp_net_service(&r->net, pfd);
        tick(r);
    }
}

/* ------------------------------------------------------------------ --nats */

static void notes(const struct replay *r, uint64_t rej);

/* Reads and publishes until the window is full, the input waits or PRODUCE_BUDGET events have
 * gone by. A record refused for a full window is kept in *held and offered again first. */
static int nats_produce(struct replay *r, struct rp_record *held, struct rp_slot *held_slot,
                        int *have_held)
{
    for (unsigned n = 0; n < PRODUCE_BUDGET && !interrupted; n++) {
        struct rp_record rec;
        struct rp_slot slot;
        if (*have_held) {
            rec = *held;
            slot = *held_slot;
        } else {
            int rc = take_event(r, &rec, &slot);
            if (rc == -ENOMEM)
                return rc;
            if (rc <= 0)
                break;
        }
        int rc = rp_nats_add(r->nats, &rec, slot.global, slot.global < r->o.from);
        if (rc == -ENOBUFS) {
            /* the record's strings live in the reader's buffer until its next record: it is
             * not read again before this one goes */
            *held = rec;
            *held_slot = slot;
            *have_held = 1;
            return 0;
        }
        *have_held = 0;
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int nats_loop(struct replay *r)
{
    struct cc_nats *pub = rp_nats_pub(r->nats);
    struct rp_record held;
    struct rp_slot held_slot;
    int have_held = 0;
    for (;;) {
        int rc = nats_produce(r, &held, &held_slot, &have_held);
        if (rc == -ENOMEM) {
            say(r, "cascade-replay: out of memory");
            return rc;
        }
        if (interrupted)
            return -EINTR;
        if (rc == -EPIPE || cc_nats_service(pub, 0) < 0)
            return -EPIPE;
        if (r->input_done && !have_held) {
            cc_nats_flush(pub);
            if (cc_nats_idle(pub))
                return 0;
        }
        int busy = !r->input_done && !r->input_blocked && !have_held;
        if (!busy) {
            if (r->input_blocked && r->open && cc_nats_idle(pub)) {
                struct pollfd p = {.fd = r->rd.in.fd, .events = POLLIN};
                poll(&p, 1, (int)(TICK_S * 1000));
            } else if (cc_nats_service(pub, r->input_blocked ? 0.02 : TICK_S) < 0) {
                return -EPIPE;
            }
        }
        r->input_blocked = 0;
        tick(r);
    }
}

/* The one line of DESIGN §7: sent = events published, ok = events in messages JetStream acked
 * as new, dup = in messages it already had (a resend), rej 0 (the nodes judge events). */
static int nats_summary(struct replay *r, int rc)
{
    struct cc_nats *pub = rp_nats_pub(r->nats);
    struct cc_nats_counts c;
    double secs = now_s() - r->started;
    clear_progress(r);
    cc_nats_counts(pub, &c);
    notes(r, 0);
    int status = rc < 0 || c.acked != c.added || r->file_errors;
    if (rc == -EPIPE)
        fprintf(stderr, "cascade-replay: %s\n", cc_nats_error(pub));
    if (rc == -EINTR)
        fprintf(stderr, "cascade-replay: interrupted\n");
    if (c.acked != c.added)
        fprintf(stderr,
                "cascade-replay: %" PRIu64 " of %" PRIu64 " events published were not acked by "
                "JetStream\n",
                c.added - c.acked, c.added);
    if (r->file_errors)
        fprintf(stderr, "cascade-replay: %" PRIu64 " file(s) could not be read to the end\n",
                r->file_errors);
    if (!r->o.quiet && (c.resends || c.duplicates))
        fprintf(stderr,
                "cascade-replay: %" PRIu64 " messages acked, %" PRIu64 " published again (a "
                "timeout, an election or a lost connection), %" PRIu64 " events in messages "
                "JetStream already had\n",
                c.messages, c.resends, c.duplicates);
    if (status) {
        uint64_t first = cc_nats_resume(pub);
        if (first > r->events_read)
            first = r->events_read;
        if (first < r->o.from)
            first = r->o.from;
        fprintf(stderr,
                "cascade-replay: every event before number %" PRIu64
                " was acked by JetStream: add --from %" PRIu64 " to resume there\n",
                first, first);
    }
    printf("sent %" PRIu64 " ok %" PRIu64 " dup %" PRIu64 " rej 0 in %.2f s (%.0f events/s)\n",
           c.added, c.acked - c.duplicates, c.duplicates, secs,
           secs > 0 ? (double)c.added / secs : 0.0);
    fflush(stdout);
    return status;
}

/* ------------------------------------------------------------------ dry run */

static void check_event(struct replay *r, const struct rp_record *rec, const struct rp_slot *s)
{
    struct event_raw raw;
    struct event ev;
    char at[600];
    rp_record_to_raw(rec, &raw);
    int outcome = event_validate(&raw, &ev);
    r->checked++;
    r->outcome[outcome]++;
    if (outcome != EVENT_OK && !r->o.quiet)
        say(r, "%s: would be rejected: %s", where(r, s->file, s->line, at, sizeof(at)),
            event_outcome_name(outcome));
}

static int dry_loop(struct replay *r)
{
    for (;;) {
        struct rp_record rec;
        struct rp_slot slot;
        int rc = next_event(r, &rec, &slot);
        if (interrupted)
            return -EINTR;
        if (rc == -EAGAIN) {
            struct pollfd p = {.fd = r->rd.in.fd, .events = POLLIN};
            poll(&p, 1, (int)(TICK_S * 1000));
        } else if (rc == -ENOMEM) {
            say(r, "cascade-replay: out of memory");
            return rc;
        } else if (rc == 0) {
            return 0;
        } else if (slot.global >= r->o.from) {
            check_event(r, &rec, &slot);
        }
        tick(r);
    }
}

static int dry_summary(struct replay *r)
{
    uint64_t rejected = r->checked - r->outcome[EVENT_OK];
    clear_progress(r);
    printf("checked %" PRIu64 " events: %" PRIu64 " valid, %" PRIu64 " would be rejected",
           r->checked, r->outcome[EVENT_OK], rejected);
    const char *sep = " (";
    for (int k = EVENT_REJ_FIRST; k <= EVENT_REJ_LAST; k++) {
        if (r->outcome[k]) {
            printf("%s%s %" PRIu64, sep, event_outcome_name(k), r->outcome[k]);
            sep = ", ";
        }
    }
    printf("%s; %" PRIu64 " bad lines\n", rejected ? ")" : "", r->bad_lines);
    fflush(stdout);
    if (r->file_errors)
        fprintf(stderr, "cascade-replay: %" PRIu64 " file(s) could not be read to the end\n",
                r->file_errors);
    return rejected || r->bad_lines || r->file_errors ? 1 : 0;
}

/* ------------------------------------------------------------------ the end */

static void resume_hint(struct replay *r)
{
    uint64_t first = rp_net_resume_point(&r->net);
    if (first > r->events_read)
        first = r->events_read;
    /* said even when this run got no further than its --from: a resend refused at once (a full
     * disk on the server) must still tell where to go on from */
    if (first > r->o.from || (first == r->o.from && first < r->events_read))
        fprintf(stderr,
                "cascade-replay: every event before number %" PRIu64
                " was acknowledged: add --from %" PRIu64 " to resume there\n",
                first, first);
}

/* Notes on stderr about what did not go as it should, which are not failures. */
static void notes(const struct replay *r, uint64_t rej)
{
    if (r->bad_lines)
        fprintf(stderr, "cascade-replay: %" PRIu64 " bad lines skipped (reported above)\n",
                r->bad_lines);
    if (rej > r->named_rejections && !r->o.quiet)
        fprintf(stderr,
                "cascade-replay: %" PRIu64 " more rejections not itemised by the server (it "
                "names at most 8 per ack); --dry-run lists each event it would reject\n",
                rej - r->named_rejections);
    if (r->events_read <= r->o.from && r->o.from > 0)
        fprintf(stderr, "cascade-replay: --from %" PRIu64 " is past the end (%" PRIu64 " events)\n",
                r->o.from, r->events_read);
}

/* The failures, each explained on stderr: 1 if there was any, else 0. */
static int failures(struct replay *r, int rc, uint64_t sent, uint64_t acked)
{
    int status = 0;
    if (r->net.failed) {
        rp_net_report_failures(&r->net);
        status = 1;
    }
    if (rc == -EINTR)
        fprintf(stderr, "cascade-replay: interrupted\n");
    if (rc < 0)
        status = 1;
    if (acked != sent) {
        fprintf(stderr,
                "cascade-replay: %" PRIu64 " of %" PRIu64 " events sent were not acknowledged\n",
                sent - acked, sent);
        status = 1;
    }
    if (r->file_errors) {
        fprintf(stderr, "cascade-replay: %" PRIu64 " file(s) could not be read to the end\n",
                r->file_errors);
        status = 1;
    }
    return status;
}

/* The last line on stdout (DESIGN §7), after the notes: returns the exit status. */
static int send_summary(struct replay *r, int rc)
{
    uint64_t sent, ok, dup, rej;
    double secs = now_s() - r->started;
    clear_progress(r);
    rp_net_totals(&r->net, &sent, &ok, &dup, &rej);
    notes(r, rej);
    int status = failures(r, rc, sent, ok + dup + rej);
    if (status)
        resume_hint(r);
    printf("sent %" PRIu64 " ok %" PRIu64 " dup %" PRIu64 " rej %" PRIu64
           " in %.2f s (%.0f events/s)\n",
           sent, ok, dup, rej, secs, secs > 0 ? (double)sent / secs : 0.0);
    fflush(stdout);
    return status;
}

/* ------------------------------------------------------------------ command line */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cascade-replay [options] FILE...\n"
            "\n"
            "Sends the share events of dumps to a running cascaded's ingest port, waits until\n"
            "every one is acknowledged, and prints\n"
            "  sent N ok N dup N rej N in S s (R events/s)\n"
            "FILE is NDJSON (one event object per line), CSV (a header row naming the event\n"
            "keys; an empty cell is an absent key) or msgpack (event maps and/or arrays of\n"
            "them), each plain, gzip or zstd; '-' reads stdin. Files are sent in order.\n"
            "\n"
            "  --host H           server address (default 127.0.0.1)\n"
            "  --port N           its ingest port (default 7400)\n"
            "  --auth-token-file FILE\n"
            "                     the server's shared secret (its --auth-token-file), sent\n"
            "                     first on every connection as {\"auth\": TOKEN}\n"
            "  --speed max|Nx     max (default): as fast as the server acknowledges; Nx: at N\n"
            "                     times the dump's own pace, from the gaps between event ts\n"
            "                     (e.g. 10x; an event whose ts goes backwards goes at once)\n"
            "  --connections N    1..%d connections (default 1); every event of a cascade\n"
            "                     goes over the same one, so parents stay before children\n"
            "  --format F         ndjson, csv or msgpack (default: from the name after\n"
            "                     .gz/.zst: .ndjson .jsonl .json .csv .msgpack .mpk; else\n"
            "                     from the content)\n"
            "  --from N           skip the first N events of all the files together (to\n"
            "                     resume an interrupted replay: a failed run says where)\n"
            "  --dry-run          send nothing: check every event with the server's own\n"
            "                     validation and report, per line, what it would reject\n"
            "                     (duplicates and cycles depend on the server's state)\n"
            "  --quiet            no progress line, no per-line reports (counts remain)\n"
            "  --help, --version\n"
            "\n"
            "Cluster (DESIGN §9): instead of an ingest port, publish to NATS JetStream\n"
            "  --nats URL[,URL...] nats-server addresses (nats://127.0.0.1:4222, ...); every\n"
            "                     event goes to subject <stream>.<p> (lower case), p = xxh64\n"
            "                     of its cascade's root mod P: an original post's own id; for\n"
            "                     a reshare its `root` when given, else the root tracked while\n"
            "                     reading (its parent's), else its parent (a post seen before\n"
            "                     goes where it went then). ~1000 events per message; the\n"
            "                     run waits for JetStream's ack of every message, publishing\n"
            "                     again after a timeout or a leader election (503), and\n"
            "                     fails when one is unacked for 120 s\n"
            "  --stream NAME      the stream (default SHARES), created when missing\n"
            "  --partitions P     P when it creates the stream (default 16); an existing\n"
            "                     stream keeps its own\n"
            "  --replicas R       R when it creates the stream (default 3 with 3 or more URLs,\n"
            "                     else 1)\n"
            "  With --nats, the line's ok counts events JetStream stored, dup those in messages\n"
            "  it already had (published again), rej is 0 (the nodes judge the events);\n"
            "  --from works as above; --host, --port, --connections, --speed and\n"
            "  --auth-token-file do not apply.\n"
            "\n"
            "Lines that are not events (invalid JSON, not an object, a wrong CSV field count,\n"
            "over 1 MiB) are reported as FILE:LINE on stderr, counted and skipped, like the\n"
            "events the server rejects. Exit status: 0 when every event sent was\n"
            "acknowledged; 1 when not (a connection lost, the server's fatal reply, a file\n"
            "that could not be read to its end) or, with --dry-run, when some line is bad or\n"
            "would be rejected; 2 for a usage error.\n"
            "\n"
            "CASCADE_REPLAY_JSON=jansson in the environment parses every NDJSON line with\n"
            "jansson, not only those its fast path for flat objects leaves to it (slower).\n",
            MAX_CONNS);
}

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "cascade-replay: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\ntry 'cascade-replay --help'\n");
    return 2;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    if (!s[0] || s[0] == '-' || s[0] == '+' || s[0] == ' ')
        return -EINVAL;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end || x > max)
        return -EINVAL;
    *out = x;
    return 0;
}

static int parse_speed(const char *s, double *speed)
{
    char *end;
    if (strcmp(s, "max") == 0) {
        *speed = 0;
        return 0;
    }
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || strcmp(end, "x") != 0 || !(x > 0) || !isfinite(x))
        return -EINVAL;
    *speed = x;
    return 0;
}

static int parse_format(const char *s, enum rp_format *f)
{
    if (strcmp(s, "ndjson") == 0)
        *f = RP_FMT_NDJSON;
    else if (strcmp(s, "csv") == 0)
        *f = RP_FMT_CSV;
    else if (strcmp(s, "msgpack") == 0)
        *f = RP_FMT_MSGPACK;
    else
        return -EINVAL;
    return 0;
}

/* One option with its argument: 0, or the exit status of a usage error. */
static int take_option(struct opts *o, int c, const char *arg)
{
    uint64_t x;
    if (strchr("HpscT", c))
        o->tcp_flags = 1;
    switch (c) {
    case 'H':
        o->host = arg;
        return arg[0] ? 0 : bad_usage("--host needs an address%s", "");
    case 'p':
        o->port = arg;
        return parse_u64(arg, 65535, &x) == 0 && x > 0
                   ? 0
                   : bad_usage("--port must be a port number (1..65535), not '%s'", arg);
    case 's':
        return parse_speed(arg, &o->speed) == 0
                   ? 0
                   : bad_usage("--speed must be max or a positive factor like 10x, not '%s'", arg);
    case 'c':
        if (parse_u64(arg, MAX_CONNS, &x) || x == 0)
            return bad_usage("--connections must be 1..64, not '%s'", arg);
        o->conns = (unsigned)x;
        return 0;
    case 'f':
        return parse_format(arg, &o->format) == 0
                   ? 0
                   : bad_usage("--format must be ndjson, csv or msgpack, not '%s'", arg);
    case 'F':
        return parse_u64(arg, UINT64_MAX, &o->from) == 0
                   ? 0
                   : bad_usage("--from must be a number of events, not '%s'", arg);
    case 'T':
        o->token_file = arg;
        return arg[0] ? 0 : bad_usage("--auth-token-file needs a file%s", "");
    case 'n':
        o->dry_run = 1;
        return 0;
    case 'N':
        o->nats.urls = arg;
        return arg[0] ? 0 : bad_usage("--nats needs URL[,URL...]%s", "");
    case 'S':
        o->nats.stream = arg;
        return arg[0] && strlen(arg) < 64 && !strpbrk(arg, ". *>\t")
                   ? 0
                   : bad_usage("--stream must be a stream name (no '.', ' ', '*', '>'), not '%s'",
                               arg);
    case 'P':
        if (parse_u64(arg, CC_NATS_MAX_PARTITIONS, &x) || x == 0)
            return bad_usage("--partitions must be 1..4096, not '%s'", arg);
        o->nats.partitions = (uint32_t)x;
        return 0;
    case 'R':
        if (parse_u64(arg, 5, &x) || x == 0)
            return bad_usage("--replicas must be 1..5, not '%s'", arg);
        o->nats.replicas = (int)x;
        return 0;
    case 'q':
        o->quiet = 1;
        return 0;
    default:
        return bad_usage("unknown option%s", "");
    }
}

/* 0 to go on, or 1 + the exit status when the command line says to stop (help, errors). */
static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'},
        {"speed", required_argument, 0, 's'},
        {"connections", required_argument, 0, 'c'},
        {"format", required_argument, 0, 'f'},
        {"from", required_argument, 0, 'F'},
        {"auth-token-file", required_argument, 0, 'T'},
        {"dry-run", no_argument, 0, 'n'},
        {"nats", required_argument, 0, 'N'},
        {"stream", required_argument, 0, 'S'},
        {"partitions", required_argument, 0, 'P'},
        {"replicas", required_argument, 0, 'R'},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    *o = (struct opts){.host = "127.0.0.1", .port = "7400", .conns = 1};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == 'V') {
            printf("cascade-replay %s\n", CASCADE_VERSION);
            return 1;
        }
        if (c == ':')
            return 1 + bad_usage("%s needs a value", argv[optind - 1]);
        if (c == '?')
            return 1 + bad_usage("unknown option '%s'", argv[optind - 1]);
        int rc = take_option(o, c, optarg);
        if (rc)
            return 1 + rc;
    }
    if (optind == argc)
        return 1 + bad_usage("no FILE given (use '-' for stdin)%s", "");
    if (o->nats.urls && o->tcp_flags)
        return 1 + bad_usage("--host, --port, --connections, --speed and --auth-token-file do "
                             "not apply with --nats%s",
                             "");
    if (!o->nats.urls && (o->nats.stream || o->nats.partitions || o->nats.replicas))
        return 1 + bad_usage("--stream, --partitions and --replicas need --nats%s", "");
    o->files = argv + optind;
    o->nfiles = (unsigned)(argc - optind);
    return 0;
}

/* Every file must be there before anything is sent: better no replay than half of one. */
static int check_files(struct replay *r)
{
    r->total_known = 1;
    for (unsigned i = 0; i < r->o.nfiles; i++) {
        struct stat st;
        const char *f = r->o.files[i];
        int rc = strcmp(f, "-") ? stat(f, &st) : fstat(STDIN_FILENO, &st);
        if (rc == 0 && S_ISDIR(st.st_mode))
            errno = EISDIR;
        if (rc != 0 || S_ISDIR(st.st_mode) || (strcmp(f, "-") && access(f, R_OK) != 0)) {
            fprintf(stderr, "cascade-replay: cannot read %s: %s\n", f, strerror(errno));
            return -1;
        }
        if (S_ISREG(st.st_mode))
            r->total_bytes += (uint64_t)st.st_size;
        else
            r->total_known = 0;
    }
    return 0;
}

static void on_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int run(struct replay *r)
{
    char err[600];
    int rc;
    if (r->o.dry_run) {
        r->started = now_s();
        rc = dry_loop(r);
        if (rc == -EINTR)
            say(r, "cascade-replay: interrupted");
        return dry_summary(r) || rc < 0 ? 1 : 0;
    }
    if (r->o.nats.urls) {
        if (rp_nats_open(&r->o.nats, &r->nats, err, sizeof(err))) {
            fprintf(stderr, "cascade-replay: %s\n", err);
            return 1;
        }
        struct cc_nats_info info;
        cc_nats_info(rp_nats_pub(r->nats), &info);
        if (!r->o.quiet)
            fprintf(stderr,
                    "cascade-replay: stream %s%s: %" PRIu32 " partitions (%s.0..%" PRIu32
                    "), %d replicas\n",
                    r->o.nats.stream ? r->o.nats.stream : CC_NATS_STREAM_DEFAULT,
                    info.created ? " (created)" : "", info.partitions, info.prefix,
                    info.partitions - 1, info.replicas);
        r->started = now_s();
        return nats_summary(r, nats_loop(r));
    }
    if (rp_route_new(r->o.conns, &r->route)) {
        fprintf(stderr, "cascade-replay: out of memory\n");
        return 1;
    }
    r->net.on_reject = on_reject;
    r->net.ctx = r;
    int loose;
    if (r->o.token_file &&
        proto_auth_token_load(r->o.token_file, &r->net.token, &loose, err, sizeof(err))) {
        fprintf(stderr, "cascade-replay: %s\n", err);
        return 1;
    }
    if (rp_net_open(&r->net, r->o.host, r->o.port, r->o.conns, err, sizeof(err))) {
        fprintf(stderr, "cascade-replay: %s\n", err);
        return 1;
    }
    r->started = now_s();
    rc = send_loop(r);
    return send_summary(r, rc);
}

int main(int argc, char **argv)
{
    struct replay r;
    memset(&r, 0, sizeof(r));
    int rc = parse_args(argc, argv, &r.o);
    if (rc)
        return rc - 1;
    if (check_files(&r))
        return 1;
    r.file_fmt = calloc(r.o.nfiles, sizeof(*r.file_fmt));
    if (!r.file_fmt) {
        fprintf(stderr, "cascade-replay: out of memory\n");
        return 1;
    }
    r.progress = !r.o.quiet && isatty(STDERR_FILENO);
    on_signals();
    int status = run(&r);
    if (r.open)
        rp_reader_close(&r.rd);
    rp_net_close(&r.net);
    rp_nats_close(r.nats);
    rp_route_free(r.route);
    free(r.file_fmt);
    return status;
}
