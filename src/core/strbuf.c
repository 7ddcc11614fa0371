/* Growable byte buffer (see strbuf.h). */
#include "core/strbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(struct strbuf *b, size_t more)
{
    if (b->oom)
        return -1;
    if (b->n + more + 1 <= b->cap)
        return 0;
    int fresh = b->p == NULL;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    if (fresh)
        p[0] = 0; /* an empty buffer taken at once is still a C string */
    return 0;
}

void sb_append(struct strbuf *b, const char *s, size_t len)
{
    if (!len) /* s may be NULL then (msgpack's empty strings) */
        return;
    if (reserve(b, len))
        return;
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
}

void sb_puts(struct strbuf *b, const char *s)
{
    sb_append(b, s, strlen(s));
}

void sb_putc(struct strbuf *b, char c)
{
    sb_append(b, &c, 1);
}

void sb_printf(struct strbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (k < 0)
        return;
    if ((size_t)k < sizeof(small)) {
        sb_append(b, small, (size_t)k);
        return;
    }
    if (reserve(b, (size_t)k))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

void sb_consume(struct strbuf *b, size_t n)
{
    if (!n)
        return;
    memmove(b->p, b->p + n, b->n - n + 1); /* the NUL too */
    b->n -= n;
}

int sb_take(struct strbuf *b, char **out, size_t *len)
{
    if (b->oom) {
        sb_free(b);
        return -ENOMEM;
    }
    if (!b->p && reserve(b, 0))
        return -ENOMEM;
    *out = b->p;
    *len = b->n;
    b->p = NULL;
    b->n = b->cap = 0;
    return 0;
}

void sb_free(struct strbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    b->oom = 0;
}
