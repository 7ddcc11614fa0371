/* The format layer (src/format/): text renderings of query results (msgpack objects) shared by
 * the HTTP port and cascade-cli — JSON, CSV, an aligned terminal table, and GraphML/DOT exports
 * of a cascade tree. It depends on core only and does no I/O: every renderer appends to a
 * strbuf (cascade/strbuf.h; appends never fail loudly, out->oom is set on the first failed one). */
#ifndef CASCADE_FORMAT_H
#define CASCADE_FORMAT_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "cascade/strbuf.h"

/* Any msgpack value as JSON: maps with non-string keys get their keys rendered as strings,
 * strings are escaped (invalid UTF-8 becomes U+FFFD), binary as base64 strings, non-finite
 * doubles as null. Nesting is bounded by the msgpack decoder's own limits. */
void format_json(const msgpack_object *o, struct strbuf *out);

/* Which values of a result are the rows of CSV and tables: an array gives one row per element, a
 * map one row, and a map with list_key (not NULL: the key of the list a "record with a list"
 * result holds, e.g. a cascade's `nodes`) that list's elements. The schema's shape of a method
 * gives list_key (cascade/schema.h: qmethod_rows_key). */

/* The rows of result as CSV (RFC 4180, header line first, CRLF line ends); nested values inside
 * a row are written as JSON text in one cell. */
void format_csv(const msgpack_object *result, const char *list_key, struct strbuf *out);

/* The same rows as an aligned text table for a terminal (a record with a list: the record's
 * fields as `key  value` lines, then the list as a table). */
void format_table(const msgpack_object *result, const char *list_key, struct strbuf *out);

/* A cascade result taken with tree=true (its metrics plus `nodes`: post, parent, actor, ts,
 * depth, kind, placeholder) as GraphML (Gephi) or DOT (Graphviz): 0, or -EINVAL when result is
 * not a cascade result with nodes (-ENOMEM: out->oom is set). */
int format_graphml(const msgpack_object *result, struct strbuf *out);
int format_dot(const msgpack_object *result, struct strbuf *out);

/* Decodes the UTF-8 sequence at s (n > 0 bytes left): its length in bytes, with the code point
 * in *cp; an invalid, overlong or truncated sequence counts as one byte of U+FFFD. Every
 * renderer repairs strings this way; a caller that prints text of its own can too. */
size_t format_utf8_next(const char *s, size_t n, uint32_t *cp);

#endif
