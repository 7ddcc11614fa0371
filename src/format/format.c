/* Text renderings of query results (see cascade/format.h): JSON, CSV and a terminal table. CSV
 * and the table share one walk over the rows (rows_of, the column union) and one string escaper,
 * so a value reads the same in every format. Nothing trusts the result: a value that is not
 * what the caller's list_key promises is still rendered (as one cell, or as JSON in a cell). */
#include "cascade/format.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mpmap.h"
#include "core/strbuf.h"

/* Deeper values become null: msgpack-c's decoder already stops at 32 levels, this bounds the
 * recursion for hand-built objects too. */
#define JSON_MAX_DEPTH 64
/* A row with more keys than this adds no more columns: keeps the column search bounded on a
 * hostile answer (the CLI renders what a server sent). */
#define MAX_COLUMNS 1024
/* Table cells longer than this (in code points) end in an ellipsis. */
#define TABLE_CELL_MAX 60

/* ---------------------------------------------------------------- UTF-8 and escaping */

size_t format_utf8_next(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    uint32_t c = u[0], min;
    size_t len;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, c &= 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, c &= 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, c &= 0x07, min = 0x10000;
    } else {
        goto bad;
    }
    if (n < len)
        goto bad;
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xc0) != 0x80)
            goto bad;
        c = (c << 6) | (u[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        goto bad;
    *cp = c;
    return len;
bad:
    *cp = 0xfffd;
    return 1;
}

static void put_utf8(struct strbuf *out, uint32_t c)
{
    char b[4];
    if (c < 0x80) {
        sb_putc(out, (char)c);
    } else if (c < 0x800) {
        b[0] = (char)(0xc0 | c >> 6), b[1] = (char)(0x80 | (c & 0x3f));
        sb_append(out, b, 2);
    } else if (c < 0x10000) {
        b[0] = (char)(0xe0 | c >> 12), b[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        b[2] = (char)(0x80 | (c & 0x3f));
        sb_append(out, b, 3);
    } else {
        b[0] = (char)(0xf0 | c >> 18), b[1] = (char)(0x80 | ((c >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((c >> 6) & 0x3f)), b[3] = (char)(0x80 | (c & 0x3f));
        sb_append(out, b, 4);
    }
}

enum esc {
    ESC_JSON,  /* inside a JSON string: quotes, backslashes and control characters */
    ESC_TERM,  /* for a terminal: control characters only, so no escape sequence gets through */
    ESC_PLAIN, /* CSV: UTF-8 repaired, everything else as it is (the cell is quoted instead) */
};

/* Control characters, C1 included (0x9b is a terminal's CSI), and the two JavaScript line
 * separators, which break JSON embedded in a <script>. */
static int is_control(uint32_t c)
{
    return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x2028 || c == 0x2029;
}

/* JSON's short escapes where there is one, \uXXXX otherwise. */
static void put_escaped_cp(struct strbuf *out, uint32_t c)
{
    static const char shorts[] = "\b\f\n\r\t", letters[] = "bfnrt";
    const char *p = c && c < 0x20 ? strchr(shorts, (int)c) : NULL;
    if (p) {
        char e[2] = {'\\', letters[p - shorts]};
        sb_append(out, e, 2);
    } else {
        sb_printf(out, "\\u%04" PRIx32, c);
    }
}

static int needs_escape(uint32_t c, enum esc mode)
{
    if (mode == ESC_PLAIN)
        return 0;
    return is_control(c) || (mode == ESC_JSON && (c == '"' || c == '\\'));
}

static void put_text(struct strbuf *out, const char *s, size_t n, enum esc mode)
{
    size_t i = 0, run = 0; /* s[run, i) is safe as it is and not yet appended */
    if (n == 0)
        return; /* an empty msgpack string may have a NULL pointer */
    while (i < n) {
        uint32_t c;
        size_t len = format_utf8_next(s + i, n - i, &c);
        int bad = c == 0xfffd && len == 1;
        if (!bad && !needs_escape(c, mode)) {
            i += len;
            continue;
        }
        sb_append(out, s + run, i - run);
        if (bad)
            put_utf8(out, 0xfffd);
        else if (c == '"' || c == '\\')
            sb_putc(out, '\\'), sb_putc(out, (char)c);
        else
            put_escaped_cp(out, c);
        i += len;
        run = i;
    }
    sb_append(out, s + run, n - run);
}

static void put_base64(struct strbuf *out, const char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *u = (const unsigned char *)p;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)u[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)u[i + 1] << 8;
        if (i + 2 < n)
            v |= u[i + 2];
        char q[4] = {tab[v >> 18], tab[(v >> 12) & 63], tab[(v >> 6) & 63], tab[v & 63]};
        if (i + 1 >= n)
            q[2] = '=';
        if (i + 2 >= n)
            q[3] = '=';
        sb_append(out, q, 4);
    }
}

/* The shortest of %.15g..%.17g (%.6g..%.9g for a float32) that reads back as the same value,
 * so 0.1 prints as 0.1 and every double still round-trips. An integral value keeps a ".0":
 * a float column stays float in pandas and in Python's json. */
static void put_double(struct strbuf *out, double d, int is_f32)
{
    if (!isfinite(d)) {
        sb_puts(out, "null");
        return;
    }
    char buf[40];
    int lo = is_f32 ? 6 : 15, hi = is_f32 ? 9 : 17;
    for (int prec = lo; prec <= hi; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, d);
        double back = strtod(buf, NULL);
        if (prec == hi || (is_f32 ? (float)back == (float)d : back == d))
            break;
    }
    sb_puts(out, buf);
    if (!strpbrk(buf, ".eE"))
        sb_puts(out, ".0");
}

/* ---------------------------------------------------------------- JSON */

static void json_value(const msgpack_object *o, struct strbuf *out, int depth);

/* A map key as a JSON string: strings as they are, anything else as its JSON text (5 → "5"). */
static void json_key(const msgpack_object *k, struct strbuf *out, int depth)
{
    sb_putc(out, '"');
    if (k->type == MSGPACK_OBJECT_STR) {
        put_text(out, k->via.str.ptr, k->via.str.size, ESC_JSON);
    } else if (k->type == MSGPACK_OBJECT_BIN) {
        put_base64(out, k->via.bin.ptr, k->via.bin.size);
    } else {
        struct strbuf tmp = STRBUF_INIT;
        json_value(k, &tmp, depth + 1);
        if (tmp.oom)
            out->oom = 1;
        put_text(out, tmp.p ? tmp.p : "", tmp.n, ESC_JSON);
        sb_free(&tmp);
    }
    sb_putc(out, '"');
}

static void json_array(const msgpack_object_array *a, struct strbuf *out, int depth)
{
    sb_putc(out, '[');
    for (uint32_t i = 0; i < a->size && !out->oom; i++) {
        if (i)
            sb_putc(out, ',');
        json_value(&a->ptr[i], out, depth + 1);
    }
    sb_putc(out, ']');
}

static void json_map(const msgpack_object_map *m, struct strbuf *out, int depth)
{
    sb_putc(out, '{');
    for (uint32_t i = 0; i < m->size && !out->oom; i++) {
        if (i)
            sb_putc(out, ',');
        json_key(&m->ptr[i].key, out, depth);
        sb_putc(out, ':');
        json_value(&m->ptr[i].val, out, depth + 1);
    }
    sb_putc(out, '}');
}

static void json_value(const msgpack_object *o, struct strbuf *out, int depth)
{
    if (depth > JSON_MAX_DEPTH) {
        sb_puts(out, "null");
        return;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_BOOLEAN:
        sb_puts(out, o->via.boolean ? "true" : "false");
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        sb_printf(out, "%" PRIu64, o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        sb_printf(out, "%" PRId64, o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
        put_double(out, o->via.f64, 1);
        break;
    case MSGPACK_OBJECT_FLOAT64:
        put_double(out, o->via.f64, 0);
        break;
    case MSGPACK_OBJECT_STR:
        sb_putc(out, '"');
        put_text(out, o->via.str.ptr, o->via.str.size, ESC_JSON);
        sb_putc(out, '"');
        break;
    case MSGPACK_OBJECT_BIN:
        sb_putc(out, '"');
        put_base64(out, o->via.bin.ptr, o->via.bin.size);
        sb_putc(out, '"');
        break;
    case MSGPACK_OBJECT_EXT: /* no ext types in the protocol: its bytes, like bin */
        sb_putc(out, '"');
        put_base64(out, o->via.ext.ptr, o->via.ext.size);
        sb_putc(out, '"');
        break;
    case MSGPACK_OBJECT_ARRAY:
        json_array(&o->via.array, out, depth);
        break;
    case MSGPACK_OBJECT_MAP:
        json_map(&o->via.map, out, depth);
        break;
    default:
        sb_puts(out, "null");
        break;
    }
}

void format_json(const msgpack_object *o, struct strbuf *out)
{
    json_value(o, out, 0);
}

/* ---------------------------------------------------------------- rows and columns */

/* The rows of result (list_key: see format.h): n values at *rows (maps, normally). A shape the
 * result does not have falls back on its own type: an array is a list, anything else a row. */
static void rows_of(const char *list_key, const msgpack_object *r, const msgpack_object **rows,
                    uint32_t *n)
{
    if (r->type == MSGPACK_OBJECT_ARRAY) {
        *rows = r->via.array.ptr, *n = r->via.array.size;
        return;
    }
    if (list_key && r->type == MSGPACK_OBJECT_MAP) {
        const msgpack_object *l = mp_map_get(r, list_key);
        if (l && l->type == MSGPACK_OBJECT_ARRAY) {
            *rows = l->via.array.ptr, *n = l->via.array.size;
            return;
        } /* asked without its list (cascade without tree): the record is the row */
    }
    *rows = r, *n = 1;
}

/* A row that is not a map is one cell under this column. */
static const msgpack_object VALUE_KEY = {.type = MSGPACK_OBJECT_STR,
                                         .via.str = {.size = 5, .ptr = "value"}};

struct columns {
    const msgpack_object **key;
    uint32_t n, cap;
};

static int key_eq(const msgpack_object *a, const msgpack_object *b)
{
    if (a->type == MSGPACK_OBJECT_STR && b->type == MSGPACK_OBJECT_STR)
        return a->via.str.size == b->via.str.size &&
               memcmp(a->via.str.ptr, b->via.str.ptr, a->via.str.size) == 0;
    return msgpack_object_equal(*a, *b);
}

/* Rows usually share one key order, so position `hint` is tried before the search. */
static int column_index(const struct columns *c, const msgpack_object *k, uint32_t hint)
{
    if (hint < c->n && key_eq(c->key[hint], k))
        return (int)hint;
    for (uint32_t i = 0; i < c->n; i++)
        if (key_eq(c->key[i], k))
            return (int)i;
    return -1;
}

static int column_add(struct columns *c, const msgpack_object *k, uint32_t hint)
{
    if (column_index(c, k, hint) >= 0 || c->n >= MAX_COLUMNS)
        return 0;
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 16;
        const msgpack_object **p = realloc(c->key, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        c->key = p, c->cap = cap;
    }
    c->key[c->n++] = k;
    return 0;
}

/* The header: the union of the rows' keys, in first-seen order. skip (may be NULL) is left out. */
static int columns_collect(struct columns *c, const msgpack_object *rows, uint32_t n,
                           const char *skip)
{
    for (uint32_t r = 0; r < n; r++) {
        if (rows[r].type != MSGPACK_OBJECT_MAP) {
            if (column_add(c, &VALUE_KEY, 0))
                return -ENOMEM;
            continue;
        }
        const msgpack_object_map *m = &rows[r].via.map;
        for (uint32_t i = 0; i < m->size; i++) {
            const msgpack_object *k = &m->ptr[i].key;
            if (skip && k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(skip) &&
                memcmp(k->via.str.ptr, skip, k->via.str.size) == 0)
                continue;
            if (column_add(c, k, i))
                return -ENOMEM;
        }
    }
    return 0;
}

/* The value of column col in row, or NULL when the row lacks it. */
static const msgpack_object *cell_of(const msgpack_object *row, const msgpack_object *key,
                                     uint32_t col)
{
    if (row->type != MSGPACK_OBJECT_MAP)
        return key_eq(key, &VALUE_KEY) ? row : NULL;
    const msgpack_object_map *m = &row->via.map;
    if (col < m->size && key_eq(&m->ptr[col].key, key))
        return &m->ptr[col].val;
    for (uint32_t i = 0; i < m->size; i++)
        if (key_eq(&m->ptr[i].key, key))
            return &m->ptr[i].val;
    return NULL;
}

/* A cell's text: nil and absent are empty, strings as they are, bin as base64, anything else
 * (numbers, booleans, nested values) as its JSON text. */
static void cell_text(const msgpack_object *v, struct strbuf *out, enum esc mode)
{
    if (!v || v->type == MSGPACK_OBJECT_NIL)
        return;
    if (v->type == MSGPACK_OBJECT_STR)
        put_text(out, v->via.str.ptr, v->via.str.size, mode);
    else if (v->type == MSGPACK_OBJECT_BIN)
        put_base64(out, v->via.bin.ptr, v->via.bin.size);
    else if (mode == ESC_TERM &&
             (v->type == MSGPACK_OBJECT_FLOAT64 || v->type == MSGPACK_OBJECT_FLOAT32))
        sb_printf(out, "%.6g", v->via.f64); /* a person reads 6 digits; --json keeps them all */
    else
        json_value(v, out, 0);
}

/* ---------------------------------------------------------------- CSV */

static void csv_field(struct strbuf *out, const char *s, size_t n)
{
    if (!s)
        return;
    if (!memchr(s, '"', n) && !memchr(s, ',', n) && !memchr(s, '\n', n) && !memchr(s, '\r', n)) {
        sb_append(out, s, n);
        return;
    }
    sb_putc(out, '"');
    for (const char *q; (q = memchr(s, '"', n)); n -= (size_t)(q + 1 - s), s = q + 1) {
        sb_append(out, s, (size_t)(q + 1 - s));
        sb_putc(out, '"');
    }
    sb_append(out, s, n);
    sb_putc(out, '"');
}

/* One CSV line: the header (row == NULL) or a row's cells. */
static void csv_line(const struct columns *c, const msgpack_object *row, struct strbuf *scratch,
                     struct strbuf *out)
{
    for (uint32_t i = 0; i < c->n; i++) {
        scratch->n = 0;
        if (row)
            cell_text(cell_of(row, c->key[i], i), scratch, ESC_PLAIN);
        else
            cell_text(c->key[i], scratch, ESC_PLAIN);
        if (scratch->oom)
            out->oom = 1;
        if (i)
            sb_putc(out, ',');
        csv_field(out, scratch->p, scratch->n);
    }
    sb_puts(out, "\r\n");
}

void format_csv(const msgpack_object *result, const char *list_key, struct strbuf *out)
{
    const msgpack_object *rows;
    uint32_t n;
    rows_of(list_key, result, &rows, &n);
    struct columns c = {0};
    struct strbuf scratch = STRBUF_INIT;
    if (columns_collect(&c, rows, n, NULL)) {
        out->oom = 1;
    } else if (c.n > 0) {
        csv_line(&c, NULL, &scratch, out);
        for (uint32_t r = 0; r < n && !out->oom; r++)
            csv_line(&c, &rows[r], &scratch, out);
    }
    sb_free(&scratch);
    free(c.key);
}

/* ---------------------------------------------------------------- table */

static size_t display_width(const char *s, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        w += ((unsigned char)s[i] & 0xc0) != 0x80;
    return w;
}

/* Byte length of the first w code points of s (valid UTF-8). */
static size_t prefix_bytes(const char *s, size_t n, size_t w)
{
    size_t i = 0;
    for (; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80 && w-- == 0)
            break;
    return i;
}

static void pad(struct strbuf *out, size_t k)
{
    static const char sp[] = "                                ";
    for (; k > sizeof(sp) - 1; k -= sizeof(sp) - 1)
        sb_append(out, sp, sizeof(sp) - 1);
    sb_append(out, sp, k);
}

/* One cell, truncated to TABLE_CELL_MAX with an ellipsis, padded to width (right-aligned when
 * right). The last column gets no trailing blanks. */
static void table_cell(struct strbuf *out, const char *s, size_t n, size_t width, int right,
                       int last)
{
    size_t w = display_width(s, n);
    int cut = w > TABLE_CELL_MAX;
    if (cut) {
        n = prefix_bytes(s, n, TABLE_CELL_MAX - 1);
        w = TABLE_CELL_MAX;
    }
    if (right)
        pad(out, width - w);
    sb_append(out, s, n);
    if (cut)
        sb_puts(out, "\u2026");
    if (!right && !last)
        pad(out, width - w);
}

/* Drops the blanks that padding left at the end of the line begun at start. */
static void trim_line(struct strbuf *out, size_t start)
{
    while (out->n > start && out->p[out->n - 1] == ' ')
        out->n--;
    if (out->p)
        out->p[out->n] = 0;
}

static int is_number(const msgpack_object *v)
{
    return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
           v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || v->type == MSGPACK_OBJECT_FLOAT32 ||
           v->type == MSGPACK_OBJECT_FLOAT64;
}

struct layout {
    size_t *width;
    uint8_t *right; /* every non-empty cell of the column is a number */
};

static size_t capped_width(const struct strbuf *s)
{
    size_t w = display_width(s->p ? s->p : "", s->n);
    return w > TABLE_CELL_MAX ? TABLE_CELL_MAX : w;
}

static void layout_measure(struct layout *l, const struct columns *c, const msgpack_object *rows,
                           uint32_t n, struct strbuf *scratch)
{
    for (uint32_t i = 0; i < c->n; i++) {
        scratch->n = 0;
        cell_text(c->key[i], scratch, ESC_TERM);
        l->width[i] = capped_width(scratch);
        l->right[i] = 1;
    }
    for (uint32_t r = 0; r < n; r++) {
        for (uint32_t i = 0; i < c->n; i++) {
            const msgpack_object *v = cell_of(&rows[r], c->key[i], i);
            scratch->n = 0;
            cell_text(v, scratch, ESC_TERM);
            size_t w = capped_width(scratch);
            if (w > l->width[i])
                l->width[i] = w;
            if (v && v->type != MSGPACK_OBJECT_NIL && !is_number(v))
                l->right[i] = 0;
        }
    }
}

/* The header (row == NULL), the rule under it (rule), or a row. */
static void table_line(const struct layout *l, const struct columns *c, const msgpack_object *row,
                       int rule, struct strbuf *scratch, struct strbuf *out)
{
    size_t start = out->n;
    for (uint32_t i = 0; i < c->n; i++) {
        int last = i + 1 == c->n;
        if (i)
            sb_puts(out, "  ");
        if (rule) {
            for (size_t k = 0; k < l->width[i]; k++)
                sb_putc(out, '-');
            continue;
        }
        scratch->n = 0;
        cell_text(row ? cell_of(row, c->key[i], i) : c->key[i], scratch, ESC_TERM);
        table_cell(out, scratch->p ? scratch->p : "", scratch->n, l->width[i], l->right[i], last);
    }
    trim_line(out, start);
    sb_putc(out, '\n');
}

static void table_rows(const msgpack_object *rows, uint32_t n, struct strbuf *out)
{
    struct columns c = {0};
    struct strbuf scratch = STRBUF_INIT;
    struct layout l = {0};
    if (n == 0) {
        sb_puts(out, "(no rows)\n");
        return;
    }
    if (columns_collect(&c, rows, n, NULL) || !(l.width = calloc(c.n + 1, sizeof(*l.width))) ||
        !(l.right = calloc(c.n + 1, 1))) {
        out->oom = 1;
        goto done;
    }
    layout_measure(&l, &c, rows, n, &scratch);
    table_line(&l, &c, NULL, 0, &scratch, out);
    table_line(&l, &c, NULL, 1, &scratch, out);
    for (uint32_t r = 0; r < n && !out->oom; r++)
        table_line(&l, &c, &rows[r], 0, &scratch, out);
    if (scratch.oom)
        out->oom = 1;
done:
    free(l.width);
    free(l.right);
    free(c.key);
    sb_free(&scratch);
}

/* A record as `key  value` lines, keys padded to the longest; skip (may be NULL) left out. */
static void table_record(const msgpack_object *rec, const char *skip, struct strbuf *out)
{
    struct columns c = {0};
    struct strbuf scratch = STRBUF_INIT;
    size_t kw = 0;
    if (columns_collect(&c, rec, 1, skip)) {
        out->oom = 1;
        goto done;
    }
    for (uint32_t i = 0; i < c.n; i++) {
        scratch.n = 0;
        cell_text(c.key[i], &scratch, ESC_TERM);
        size_t w = capped_width(&scratch);
        kw = w > kw ? w : kw;
    }
    for (uint32_t i = 0; i < c.n; i++) {
        size_t start = out->n;
        scratch.n = 0;
        cell_text(c.key[i], &scratch, ESC_TERM);
        table_cell(out, scratch.p ? scratch.p : "", scratch.n, kw, 0, 0);
        sb_puts(out, "  ");
        scratch.n = 0;
        cell_text(cell_of(rec, c.key[i], i), &scratch, ESC_TERM);
        sb_append(out, scratch.p ? scratch.p : "", scratch.n);
        trim_line(out, start);
        sb_putc(out, '\n');
    }
    if (scratch.oom)
        out->oom = 1;
done:
    free(c.key);
    sb_free(&scratch);
}

void format_table(const msgpack_object *result, const char *list_key, struct strbuf *out)
{
    const msgpack_object *rows;
    uint32_t n;
    if (result->type == MSGPACK_OBJECT_MAP && list_key && mp_map_get(result, list_key)) {
        table_record(result, list_key, out);
        rows_of(list_key, result, &rows, &n);
        sb_printf(out, "\n%s:\n", list_key);
        table_rows(rows, n, out);
    } else if (result->type == MSGPACK_OBJECT_MAP) {
        table_record(result, NULL, out);
    } else if (result->type == MSGPACK_OBJECT_ARRAY) {
        rows_of(list_key, result, &rows, &n);
        table_rows(rows, n, out);
    } else {
        struct strbuf scratch = STRBUF_INIT;
        cell_text(result, &scratch, ESC_TERM);
        sb_append(out, scratch.p ? scratch.p : "", scratch.n);
        sb_putc(out, '\n');
        if (scratch.oom)
            out->oom = 1;
        sb_free(&scratch);
    }
}
