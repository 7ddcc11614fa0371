/* cascade-replay: one dump file as a sequence of events, whatever its format, which comes from
 * --format, else the name (after .gz/.zst), else the first bytes. */
#include "cascade-replay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && strncasecmp(s + len - n, suffix, n) == 0;
}

enum rp_format rp_format_from_name(const char *path)
{
    static const struct {
        const char *ext;
        enum rp_format fmt;
    } exts[] = {
        {".ndjson", RP_FMT_NDJSON}, {".jsonl", RP_FMT_NDJSON},    {".json", RP_FMT_NDJSON},
        {".csv", RP_FMT_CSV},       {".msgpack", RP_FMT_MSGPACK}, {".mpk", RP_FMT_MSGPACK},
    };
    size_t len = strlen(path);
    if (ends_with(path, len, ".gz"))
        len -= 3;
    else if (ends_with(path, len, ".zst"))
        len -= 4;
    else if (ends_with(path, len, ".zstd"))
        len -= 5;
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        if (ends_with(path, len, exts[i].ext))
            return exts[i].fmt;
    }
    return RP_FMT_AUTO;
}

const char *rp_format_name(enum rp_format f)
{
    switch (f) {
    case RP_FMT_NDJSON:
        return "ndjson";
    case RP_FMT_CSV:
        return "csv";
    case RP_FMT_MSGPACK:
        return "msgpack";
    default:
        return "auto";
    }
}

int rp_reader_open(struct rp_reader *rd, const char *path, enum rp_format fmt)
{
    memset(rd, 0, sizeof(*rd));
    int rc = rp_input_open(&rd->in, path);
    if (rc)
        return rc;
    rd->fmt = fmt != RP_FMT_AUTO ? fmt : rp_format_from_name(path);
    rd->next_line = 1;
    const char *json = getenv("CASCADE_REPLAY_JSON");
    rd->fast_json = !json || strcmp(json, "jansson") != 0;
    return 0;
}

void rp_reader_close(struct rp_reader *rd)
{
    rp_input_close(&rd->in);
    if (rd->json)
        json_decref(rd->json);
    rd->json = NULL;
    if (rd->mp_init)
        msgpack_unpacked_destroy(&rd->mp);
    rd->mp_init = 0;
    free(rd->col_key);
    free(rd->cells);
    rd->col_key = NULL;
    rd->cells = NULL;
}

static int is_msgpack_container(unsigned char c)
{
    return (c >= 0x80 && c <= 0x9f) || (c >= 0xdc && c <= 0xdf);
}

/* Decides the format from the first bytes (read until a non-blank one, or the end): msgpack
 * streams begin with a map or array marker (0x80 and up), which no text begins with; '{' means
 * NDJSON; other text is taken as CSV with a header row. */
static int sniff(struct rp_reader *rd)
{
    struct rp_input *in = &rd->in;
    for (;;) {
        size_t i = in->start;
        if (i < in->end && is_msgpack_container((unsigned char)in->buf[i])) {
            rd->fmt = RP_FMT_MSGPACK;
            return 0;
        }
        if (in->end - i >= 3 && memcmp(in->buf + i, "\xef\xbb\xbf", 3) == 0)
            i += 3; /* a UTF-8 byte order mark */
        while (i < in->end && strchr(" \t\r\n", in->buf[i]))
            i++;
        if (i < in->end) {
            char c = in->buf[i];
            rd->fmt = c == '{' || c == '['      ? RP_FMT_NDJSON
                      : (c >= 0x20 && c < 0x7f) ? RP_FMT_CSV
                                                : RP_FMT_MSGPACK;
            return 0;
        }
        int rc = rp_input_fill(in);
        if (rc == 0 || rc == -ENOBUFS) { /* empty, or nothing but blanks: no events either way */
            rd->fmt = RP_FMT_NDJSON;
            return 0;
        }
        if (rc < 0)
            return rc;
    }
}

/* Text formats: a UTF-8 byte order mark at the very start is not part of the first record. */
static int skip_bom(struct rp_reader *rd)
{
    struct rp_input *in = &rd->in;
    while (in->end - in->start < 3 && !in->eof) {
        int rc = rp_input_fill(in);
        if (rc < 0)
            return rc;
    }
    if (in->end - in->start >= 3 && memcmp(in->buf + in->start, "\xef\xbb\xbf", 3) == 0)
        in->start += 3;
    rd->bom_checked = 1;
    return 0;
}

int rp_reader_next(struct rp_reader *rd, struct rp_record *rec)
{
    int rc;
    rd->msg[0] = 0;
    if (rd->fmt == RP_FMT_AUTO && (rc = sniff(rd)) < 0)
        goto fail;
    if (rd->fmt != RP_FMT_MSGPACK && !rd->bom_checked && (rc = skip_bom(rd)) < 0)
        goto fail;
    memset(rec, 0, sizeof(*rec));
    if (rd->fmt == RP_FMT_MSGPACK)
        rc = rp_msgpack_next(rd, rec);
    else if (rd->fmt == RP_FMT_CSV)
        rc = rp_csv_next(rd, rec);
    else
        rc = rp_ndjson_next(rd, rec);
    if (rc >= 0 || rc == -EBADMSG)
        return rc;
fail:
    if (rc != -EAGAIN && !rd->msg[0])
        strncpy(rd->msg, rd->in.err[0] ? rd->in.err : strerror(-rc), sizeof(rd->msg) - 1);
    return rc;
}

/* Skips bytes up to and including the newline that ends an over-long line; CSV newlines inside
 * quotes do not end a record, so the quote state is followed through the skipped bytes. */
int rp_discard_line(struct rp_reader *rd, int csv)
{
    struct rp_input *in = &rd->in;
    for (;;) {
        for (size_t i = in->start; i < in->end; i++) {
            char c = in->buf[i];
            if (csv && c == '"')
                rd->scan_quoted = !rd->scan_quoted;
            else if (c == '\n' && !(csv && rd->scan_quoted)) {
                in->start = i + 1;
                rd->discarding = 0;
                rd->next_line++;
                return 1;
            } else if (c == '\n')
                rd->next_line++;
        }
        rd->offset += in->end - in->start;
        in->start = in->end;
        int rc = rp_input_fill(in);
        if (rc <= 0) {
            if (rc == 0)
                rd->discarding = 0;
            return rc;
        }
    }
}
