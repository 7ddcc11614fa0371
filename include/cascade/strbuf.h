/* A growable byte buffer for building text answers (JSON, CSV, Prometheus, GraphML, tables),
 * and for received bytes waiting to be parsed (the query port's requests). Implemented in
 * src/core/strbuf.c; public because the format layer (cascade/format.h) writes into one, for the
 * server and for cascade-cli alike.
 * Appends never fail loudly: the first allocation failure sets `oom`, later appends do nothing,
 * and the owner checks `oom` once at the end. */
#ifndef CASCADE_STRBUF_H
#define CASCADE_STRBUF_H

#include <stddef.h>

struct strbuf {
    char *p;       /* malloc'd, NUL-terminated when n > 0; owned by the strbuf */
    size_t n, cap; /* bytes used (without the NUL), capacity */
    int oom;
};

#define STRBUF_INIT {0}

void sb_append(struct strbuf *b, const char *s, size_t len);
void sb_puts(struct strbuf *b, const char *s);
void sb_putc(struct strbuf *b, char c);
void sb_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes (n <= b->n): what a reader took from the front of received bytes. */
void sb_consume(struct strbuf *b, size_t n);
/* Hands the bytes over: *out is malloc'd (owned by the caller), the strbuf is left empty.
 * -ENOMEM (and the bytes freed) when an append had failed. */
int sb_take(struct strbuf *b, char **out, size_t *len);
void sb_free(struct strbuf *b);

#endif
