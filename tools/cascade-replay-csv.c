/* cascade-replay: CSV dumps (RFC 4180) whose header row names the DESIGN §2 keys; an empty cell is
 * an absent key. Quoted fields may hold commas, doubled quotes and newlines, so a record may span
 * lines: messages name the line where it starts. */
#include "cascade-replay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CSV_MAX_COLS 1024

struct cell {
    const char *s;
    uint32_t len;
    int quoted;
};

/* Finds the end of the record that starts at in->start: the first newline outside quotes.
 * Returns its offset from start, or -1 when the buffer holds no complete record yet. The scan
 * resumes where the last call stopped, so a long record is not searched again from the top. */
static long find_record(struct rp_reader *rd)
{
    struct rp_input *in = &rd->in;
    const char *p = in->buf + in->start;
    size_t avail = in->end - in->start;
    for (size_t i = rd->scan; i < avail; i++) {
        if (p[i] == '"')
            rd->scan_quoted = !rd->scan_quoted;
        else if (p[i] == '\n' && !rd->scan_quoted)
            return (long)i;
        else if (p[i] == '\n')
            rd->scan_lines++;
    }
    rd->scan = avail;
    return in->eof && avail > 0 ? (long)avail : -1;
}

/* Splits one record into cells, unquoting into rd->cells. Returns the number of cells, or -1
 * (malformed) or -2 (more than max cells) with rd->msg set. */
static long split(struct rp_reader *rd, const char *p, size_t len, struct cell *cells, long max)
{
    char *out = rd->cells;
    long n = 0;
    size_t i = 0;
    for (;;) {
        if (n == max) {
            snprintf(rd->msg, sizeof(rd->msg), "more than %ld fields", max);
            return -2;
        }
        struct cell *c = &cells[n++];
        c->s = out;
        c->quoted = i < len && p[i] == '"';
        if (c->quoted) {
            for (i++;; i++) {
                if (i >= len) {
                    snprintf(rd->msg, sizeof(rd->msg), "unterminated quoted field");
                    return -1;
                }
                if (p[i] == '"' && !(i + 1 < len && p[i + 1] == '"'))
                    break;
                i += p[i] == '"'; /* a doubled quote stands for one */
                *out++ = p[i];
            }
            i++;
            if (i < len && p[i] != ',') {
                snprintf(rd->msg, sizeof(rd->msg), "text after a closing quote in field %ld", n);
                return -1;
            }
        } else {
            while (i < len && p[i] != ',')
                *out++ = p[i++];
        }
        c->len = (uint32_t)(out - c->s);
        if (i >= len)
            return n;
        i++; /* the comma */
    }
}

static void trim(const char **s, uint32_t *len)
{
    while (*len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

static int header(struct rp_reader *rd, struct cell *cells, long n)
{
    int known = 0;
    rd->col_key = malloc((size_t)n);
    if (!rd->col_key)
        return -ENOMEM;
    rd->ncols = (uint32_t)n;
    for (long c = 0; c < n; c++) {
        const char *s = cells[c].s;
        uint32_t len = cells[c].len;
        trim(&s, &len);
        rd->col_key[c] = -1;
        for (int k = 0; k < RK_READ; k++) {
            const char *name = rp_key_name(k);
            if (strlen(name) == len && strncasecmp(name, s, len) == 0) {
                rd->col_key[c] = (int8_t)k;
                known++;
            }
        }
    }
    if (!known) {
        snprintf(rd->msg, sizeof(rd->msg),
                 "line %llu: the CSV header names none of the event keys (post, actor, ts, "
                 "parent, kind, actor_type, content, label)",
                 (unsigned long long)rd->line);
        return -EPROTO;
    }
    rd->header_done = 1;
    return 0;
}

/* ts: an integer when the cell is one (spaces around allowed), else the text as it was. */
static void cell_ts(const struct cell *c, struct rp_value *v)
{
    const char *s = c->s;
    uint32_t len = c->len;
    trim(&s, &len);
    int neg = len > 0 && s[0] == '-';
    uint64_t x = 0;
    uint32_t i = (uint32_t)neg;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (x > (UINT64_MAX - 9) / 10)
            break;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == len && len > (uint32_t)neg && (!neg || x <= (uint64_t)INT64_MAX + 1)) {
        v->type = neg && x ? RV_NEGINT : RV_UINT; /* as in NDJSON: -0 is the integer 0 */
        v->u = x;
        v->i = neg ? (int64_t)(0 - x) : 0;
        return;
    }
    v->type = RV_STR;
    v->s = c->s;
    v->len = c->len;
}

/* Every cell is text: ids stay strings (123 ≡ "123" on the server), and ts becomes an integer when
 * it is one, else it goes as text for the server to reject as bad_type. */
static int row(struct rp_reader *rd, struct cell *cells, long n, struct rp_record *rec)
{
    if ((uint32_t)n != rd->ncols) {
        snprintf(rd->msg, sizeof(rd->msg), "%ld fields where the header has %u", n, rd->ncols);
        return -EBADMSG;
    }
    for (long c = 0; c < n; c++) {
        int k = rd->col_key[c];
        if (k < 0 || cells[c].len == 0)
            continue;
        if (k == RK_TS) {
            cell_ts(&cells[c], &rec->v[k]);
        } else {
            rec->v[k].type = RV_STR;
            rec->v[k].s = cells[c].s;
            rec->v[k].len = cells[c].len;
        }
    }
    return 1;
}

static int record(struct rp_reader *rd, const char *p, size_t len, struct rp_record *rec)
{
    static struct cell cells[CSV_MAX_COLS + 1];
    if (!rd->cells && !(rd->cells = malloc(RP_RECORD_MAX)))
        return -ENOMEM;
    long max = rd->header_done ? (long)rd->ncols + 1 : CSV_MAX_COLS;
    long n = split(rd, p, len, cells, max);
    if (n < 0 && !rd->header_done) {
        char why[sizeof(rd->msg)];
        memcpy(why, rd->msg, sizeof(why));
        snprintf(rd->msg, sizeof(rd->msg), "line %llu: bad CSV header: %.200s",
                 (unsigned long long)rd->line, why);
        return -EPROTO;
    }
    if (n == -2)
        snprintf(rd->msg, sizeof(rd->msg), "more fields than the header's %u", rd->ncols);
    if (n < 0)
        return -EBADMSG;
    if (!rd->header_done) {
        int rc = header(rd, cells, n);
        return rc ? rc : 0;
    }
    return row(rd, cells, n, rec);
}

/* Takes the record of len bytes at in->start off the buffer and sets its line numbers. */
static const char *take(struct rp_reader *rd, size_t *len)
{
    struct rp_input *in = &rd->in;
    const char *p = in->buf + in->start;
    in->start += *len + (in->start + *len < in->end);
    rd->line = rd->next_line;
    rd->next_line += 1 + rd->scan_lines;
    rd->scan = 0;
    rd->scan_lines = 0;
    rd->scan_quoted = 0;
    if (*len > 0 && p[*len - 1] == '\r')
        (*len)--;
    return p;
}

static int too_long(struct rp_reader *rd)
{
    rd->line = rd->next_line;
    rd->discarding = 1;
    rd->scan = 0;
    rd->scan_lines = 0;
    rd->scan_quoted = 0;
    snprintf(rd->msg, sizeof(rd->msg), "record longer than %u bytes", RP_RECORD_MAX);
    return -EBADMSG;
}

int rp_csv_next(struct rp_reader *rd, struct rp_record *rec)
{
    struct rp_input *in = &rd->in;
    for (;;) {
        if (rd->discarding) {
            int rc = rp_discard_line(rd, 1);
            /* -EAGAIN: stdin will say more, and the discarding goes on inside quotes or not */
            if (rc != -EAGAIN)
                rd->scan_quoted = 0;
            if (rc <= 0)
                return rc;
        }
        long end = find_record(rd);
        /* Too long whether or not its end is in the buffer: a fill may bring more than
         * RP_CHUNK, and the end with it, while cells holds only RP_RECORD_MAX bytes. */
        if (end >= (long)RP_RECORD_MAX || (end < 0 && in->end - in->start >= RP_RECORD_MAX))
            return too_long(rd);
        if (end < 0) {
            int rc = rp_input_fill(in);
            if (rc <= 0 && !(rc == 0 && in->end > in->start))
                return rc;
            continue;
        }
        size_t len = (size_t)end;
        const char *p = take(rd, &len);
        if (len == 0)
            continue; /* a blank line */
        int rc = record(rd, p, len, rec);
        if (rc != 0)
            return rc;
    }
}
