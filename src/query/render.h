/* Text renderings of query results (msgpack objects): JSON for the HTTP port and `cascade-cli
 * --json`, CSV for `?format=csv`, and an aligned text table for the CLI. The row layout comes
 * from the method's shape (query/method.h): a list gives one row per record, a record one row,
 * a record with a list the list's rows. */
#ifndef QUERY_RENDER_H
#define QUERY_RENDER_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "query/method.h"

/* Any msgpack value as JSON: maps with non-string keys get their keys rendered as strings,
 * strings are escaped (invalid UTF-8 becomes U+FFFD), binary as base64 strings, non-finite
 * doubles as null. Nesting is bounded by the msgpack decoder's own limits. */
void render_json(const msgpack_object *o, struct strbuf *out);

/* The rows of result (a result of method m) as CSV (RFC 4180, header line first, CRLF line
 * ends); nested values inside a row are written as JSON text in one cell. */
void render_csv(const struct qmethod *m, const msgpack_object *result, struct strbuf *out);

/* The same rows as an aligned text table for a terminal (a record with a list: the record's
 * fields as `key  value` lines, then the list as a table). */
void render_table(const struct qmethod *m, const msgpack_object *result, struct strbuf *out);

/* Decodes the UTF-8 sequence at s (n > 0 bytes left): its length in bytes, with the code point
 * in *cp; an invalid, overlong or truncated sequence counts as one byte of U+FFFD. For the
 * exporters, which sanitise strings the same way (query/export.c). */
size_t render_utf8_next(const char *s, size_t n, uint32_t *cp);

#endif
