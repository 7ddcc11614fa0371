/* cascade-replay: NDJSON dumps, one object per line, read by the fast path or else by jansson.
 * Values keep their JSON type (an integer stays an integer, a string a string, anything else goes
 * as what it is), so that the server accepts or rejects each event for the reason it deserves. */
#include "cascade-replay.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void json_to_value(const json_t *j, struct rp_value *v)
{
    switch (json_typeof(j)) {
    case JSON_STRING:
        v->type = RV_STR;
        v->s = json_string_value(j);
        v->len = (uint32_t)json_string_length(j);
        break;
    case JSON_INTEGER: {
        json_int_t x = json_integer_value(j);
        if (x >= 0) {
            v->type = RV_UINT;
            v->u = (uint64_t)x;
        } else {
            v->type = RV_NEGINT;
            v->i = (int64_t)x;
        }
        break;
    }
    case JSON_REAL:
        v->type = RV_FLOAT;
        v->d = json_real_value(j);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        v->type = RV_BOOL;
        v->b = json_is_true(j);
        break;
    case JSON_NULL:
        v->type = RV_NIL;
        break;
    case JSON_ARRAY:
        v->type = RV_ARRAY;
        break;
    case JSON_OBJECT:
        v->type = RV_MAP;
        break;
    }
}

static int parse_line(struct rp_reader *rd, const char *line, size_t len, struct rp_record *rec)
{
    json_error_t err;
    if (rd->fast_json && rp_json_fast(line, len, rec))
        return 1;
    memset(rec, 0, sizeof(*rec));
    if (rd->json)
        json_decref(rd->json);
    /* DECODE_ANY: a line holding a bare number or string is reported as "not an object" rather
     * than as invalid JSON; ALLOW_NUL: "\u0000" is legal JSON and the server takes any bytes */
    rd->json = json_loadb(line, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!rd->json) {
        snprintf(rd->msg, sizeof(rd->msg), "invalid JSON: %s (column %d)", err.text, err.column);
        return -EBADMSG;
    }
    if (!json_is_object(rd->json)) {
        snprintf(rd->msg, sizeof(rd->msg), "not a JSON object (an event is one object per line)");
        return -EBADMSG;
    }
    for (int k = 0; k < RK_READ; k++) {
        const json_t *v = json_object_get(rd->json, rp_key_name(k));
        if (v)
            json_to_value(v, &rec->v[k]);
    }
    return 1;
}

static int blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!strchr(" \t\r\f\v", s[i]))
            return 0;
    }
    return 1;
}

/* The next complete line in the buffer: its length (without the newline), or -1 for none yet. */
static long find_line(struct rp_reader *rd)
{
    struct rp_input *in = &rd->in;
    const char *p = in->buf + in->start;
    size_t avail = in->end - in->start;
    const char *nl = memchr(p + rd->scan, '\n', avail - rd->scan);
    if (nl)
        return nl - p;
    rd->scan = avail;
    return in->eof && avail > 0 ? (long)avail : -1;
}

int rp_ndjson_next(struct rp_reader *rd, struct rp_record *rec)
{
    struct rp_input *in = &rd->in;
    for (;;) {
        if (rd->discarding) {
            int rc = rp_discard_line(rd, 0);
            if (rc <= 0)
                return rc;
        }
        long len = find_line(rd);
        /* too long whether or not its end came in the same fill, so that read sizes do not
         * decide */
        if (len >= (long)RP_RECORD_MAX || (len < 0 && in->end - in->start >= RP_RECORD_MAX)) {
            rd->line = rd->next_line;
            rd->discarding = 1;
            rd->scan = 0;
            snprintf(rd->msg, sizeof(rd->msg), "line longer than %u bytes", RP_RECORD_MAX);
            return -EBADMSG;
        }
        if (len < 0) {
            int rc = rp_input_fill(in);
            if (rc <= 0 && !(rc == 0 && in->end > in->start))
                return rc;
            continue;
        }
        const char *line = in->buf + in->start;
        in->start += (size_t)len + (in->start + (size_t)len < in->end);
        rd->scan = 0;
        rd->line = rd->next_line++;
        if ((size_t)len > 0 && line[len - 1] == '\r')
            len--;
        if (blank(line, (size_t)len))
            continue;
        return parse_line(rd, line, (size_t)len, rec);
    }
}
