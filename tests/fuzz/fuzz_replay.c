/* libFuzzer target for cascade-replay's readers (tools/cascade-replay-{input,reader,ndjson,
 * fastjson,csv,msgpack,record}.c), built once per format: FUZZ_REPLAY_FORMAT is RP_FMT_NDJSON,
 * RP_FMT_CSV or RP_FMT_MSGPACK. The input is a dump file (plain, gzip or zstd). It is read twice:
 * whole, as a regular file, and in random-sized pieces through a pipe, as stdin would deliver it
 * (-EAGAIN between pieces); both must give the same records, bad records, messages and line
 * numbers. For NDJSON the piecewise read also turns the fast path off, so jansson judges every
 * line the fast path accepted. Each record must hold only what its format can produce, line
 * numbers must increase, and the msgpack map the tool sends for it, decoded by the server's own
 * ingest decoder, must get the verdict that --dry-run gives it (event_validate). The pieces and
 * the choice of letting the reader sniff the format come from a hash of the input, so that the
 * seeds in corpus/replay_<format>/ are plain dump files. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cascade-replay.h"
#include "fuzz_rng.h"
#include "net/ingest_proto.h"

#ifndef FUZZ_REPLAY_FORMAT
#error "build with -DFUZZ_REPLAY_FORMAT=RP_FMT_NDJSON, RP_FMT_CSV or RP_FMT_MSGPACK"
#endif

#define MAX_STEPS 100000 /* records and bad records compared per input */

static int memfd = -1;

/* What one read of the file saw, step by step. */
struct run {
    uint64_t digest;
    long steps;
    int last_rc; /* 0 at the end of the file, else the error that stopped it */
    char last_msg[256];
};

/* The server's verdict on the map cascade-replay sends for rec, through its ingest decoder. */
struct verdict {
    long events;
    int outcome;
};

static int on_event(void *ctx, const struct event_raw *raw)
{
    struct verdict *v = ctx;
    struct event ev;
    v->events++;
    v->outcome = raw ? event_validate(raw, &ev) : EVENT_REJ_BAD_TYPE;
    return 0;
}

static void check_sent_verdict(const struct rp_record *rec)
{
    struct event_raw raw;
    struct event ev;
    rp_record_to_raw(rec, &raw);
    int dry = event_validate(&raw, &ev);

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    struct ingest_decoder *d;
    struct verdict v = {0};
    /* the dry run has no server clock: the decoder's future check (bad_ts) is off here */
    struct ingest_limits lim;
    ingest_limits_default(&lim);
    lim.max_future_ms = 0;
    if (rp_record_pack(rec, &pk) || ingest_decoder_new(&lim, &d))
        abort();
    /* the server must take what the tool sends without ending the connection */
    if (ingest_decoder_feed(d, sb.data, sb.size) != 0 || ingest_decoder_drain(d, on_event, &v) != 1)
        abort();
    ingest_decoder_free(d);
    msgpack_sbuffer_destroy(&sb);
    if (v.events != 1 || v.outcome != dry) {
        fprintf(stderr, "dry run says %s, the server would say %s\n", event_outcome_name(dry),
                event_outcome_name(v.outcome));
        abort();
    }
}

/* The types each format can produce for a key (fmt: the format the reader settled on). */
static void check_value(int key, const struct rp_value *v, enum rp_format fmt)
{
    if (v->type > RV_EXT || (v->type == RV_NEGINT && v->i >= 0))
        abort();
    if (v->type == RV_STR && ((!v->s && v->len) || v->len > RP_RECORD_MAX))
        abort();
    /* CSV: every cell is text, an empty one is absent, and ts may be an integer */
    if (fmt == RP_FMT_CSV && !(v->type == RV_ABSENT || (v->type == RV_STR && v->len > 0) ||
                               (key == RK_TS && (v->type == RV_UINT || v->type == RV_NEGINT))))
        abort();
    if (fmt == RP_FMT_NDJSON && (v->type == RV_BIN || v->type == RV_EXT))
        abort();
}

static uint64_t record_digest(uint64_t h, const struct rp_record *rec, enum rp_format fmt)
{
    for (int k = 0; k < RK_READ; k++) { /* the root hint (--nats) too */
        const struct rp_value *v = &rec->v[k];
        check_value(k, v, fmt);
        h = mix(h, v->type);
        switch (v->type) {
        case RV_STR:
            h = mix(h, v->len);
            for (uint32_t i = 0; i < v->len; i++) /* ASan checks every byte is readable */
                h = mix(h, (uint8_t)v->s[i]);
            break;
        case RV_UINT:
            h = mix(h, v->u);
            break;
        case RV_NEGINT:
            h = mix(h, (uint64_t)v->i);
            break;
        case RV_FLOAT: {
            uint64_t bits;
            memcpy(&bits, &v->d, sizeof(bits));
            h = mix(h, v->d != v->d ? 1 : bits); /* every NaN alike */
            break;
        }
        case RV_BOOL:
            h = mix(h, v->b);
            break;
        case RV_EXT:
            h = mix(h, (uint8_t)v->ext);
            break;
        }
    }
    return h;
}

static uint64_t mix_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = mix(h, (uint8_t)*s);
    return h;
}

/* One call's outcome into the run; 1 to go on, 0 when the file is done. */
static int step(struct rp_reader *rd, struct run *r, int rc, const struct rp_record *rec,
                uint64_t *last_line)
{
    r->steps++;
    r->digest = mix(r->digest, (uint64_t)rc);
    if (rc == 1 || rc == -EBADMSG) {
        if (rd->line <= *last_line) {
            fprintf(stderr, "line %llu after line %llu\n", (unsigned long long)rd->line,
                    (unsigned long long)*last_line);
            abort();
        }
        *last_line = rd->line;
        r->digest = mix(r->digest, rd->line);
    }
    if (rc == 1) {
        r->digest = record_digest(r->digest, rec, rd->fmt);
        check_sent_verdict(rec);
        return r->steps < MAX_STEPS;
    }
    if (rc < 0 && !rd->msg[0])
        abort(); /* every error says why */
    r->digest = mix_str(r->digest, rd->msg);
    if (rc == -EBADMSG)
        return r->steps < MAX_STEPS;
    r->last_rc = rc;
    snprintf(r->last_msg, sizeof(r->last_msg), "%s", rd->msg);
    return 0;
}

static void open_reader(struct rp_reader *rd, int fd, enum rp_format fmt, int fast_json)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    if (rp_reader_open(rd, path, fmt) != 0)
        abort();
    rd->fast_json = fast_json;
}

static void run_whole(const uint8_t *data, size_t size, enum rp_format fmt, struct run *r)
{
    struct rp_reader rd;
    struct rp_record rec;
    uint64_t last_line = 0;
    memset(r, 0, sizeof(*r));
    if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
        abort();
    open_reader(&rd, memfd, fmt, 1);
    for (;;) {
        int rc = rp_reader_next(&rd, &rec);
        if (rc == -EAGAIN)
            abort(); /* a regular file is never "not ready" */
        if (!step(&rd, r, rc, &rec, &last_line))
            break;
    }
    rp_reader_close(&rd);
}

static void run_pieces(const uint8_t *data, size_t size, enum rp_format fmt, struct rng *rng,
                       struct run *r)
{
    struct rp_reader rd;
    struct rp_record rec;
    uint64_t last_line = 0;
    int p[2];
    size_t off = 0;
    memset(r, 0, sizeof(*r));
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
        abort();
    open_reader(&rd, p[0], fmt, FUZZ_REPLAY_FORMAT != RP_FMT_NDJSON);
    close(p[0]);
    for (;;) {
        int rc = rp_reader_next(&rd, &rec);
        if (rc == -EAGAIN) {
            if (p[1] < 0)
                abort(); /* the writer is gone: the reader must see the end, not wait */
            if (off == size) {
                close(p[1]);
                p[1] = -1;
                continue;
            }
            size_t k = 1 + rng_below(rng, rng_below(rng, 4) == 0 ? 4096 : 8);
            ssize_t n = write(p[1], data + off, k < size - off ? k : size - off);
            if (n < 0 && errno != EAGAIN)
                abort();
            off += n > 0 ? (size_t)n : 0;
            continue;
        }
        if (!step(&rd, r, rc, &rec, &last_line))
            break;
    }
    rp_reader_close(&rd);
    if (p[1] >= 0)
        close(p[1]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    memfd = memfd_create("fuzz_replay", MFD_CLOEXEC);
    if (memfd < 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rng rng = {0x9e3779b97f4a7c15ull};
    struct run whole, pieces;
    for (size_t i = 0; i < size; i++)
        rng.s = mix(rng.s, data[i]);
    rng.s |= 1;
    /* sometimes the reader is left to tell the format from the first bytes */
    enum rp_format fmt = rng_below(&rng, 4) == 0 ? RP_FMT_AUTO : FUZZ_REPLAY_FORMAT;
    run_whole(data, size, fmt, &whole);
    run_pieces(data, size, fmt, &rng, &pieces);
    /* Corrupt compressed data: what comes out before the error (zstd decodes whole blocks), and
     * even whether the error or a bad CSV header made of that output comes first, depend on how
     * much arrived; such files are only held to not crashing. */
    int corrupt =
        strncmp(whole.last_msg, "corrupt ", 8) == 0 || strncmp(pieces.last_msg, "corrupt ", 8) == 0;
    if (!corrupt && (whole.digest != pieces.digest || whole.steps != pieces.steps ||
                     whole.last_rc != pieces.last_rc)) {
        fprintf(stderr, "whole: %ld steps, rc %d \"%s\"; in pieces: %ld steps, rc %d \"%s\"\n",
                whole.steps, whole.last_rc, whole.last_msg, pieces.steps, pieces.last_rc,
                pieces.last_msg);
        abort();
    }
    return 0;
}
