/* cascade-replay: the common NDJSON line (a flat object of plain ASCII strings, small integers and
 * literals) read in place, ten times faster than jansson (bench/results/replay-<date>.md); every
 * other line goes to jansson, which stays the reference. */
#include "cascade-replay.h"

#include <string.h>

struct cursor {
    const char *p, *end;
};

static void skip_ws(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n'))
        c->p++;
}

/* A string of printable ASCII without escapes; its body in s and len; 0 to give up. */
static int string(struct cursor *c, const char **s, uint32_t *len)
{
    if (c->p == c->end || *c->p != '"')
        return 0;
    const char *start = ++c->p;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            *s = start;
            *len = (uint32_t)(c->p - start);
            c->p++;
            return 1;
        }
        if (ch == '\\' || ch < 0x20 || ch >= 0x80)
            return 0;
        c->p++;
    }
    return 0;
}

/* An integer of at most 18 digits (so it cannot overflow), no fraction or exponent. */
static int integer(struct cursor *c, struct rp_value *v)
{
    int neg = *c->p == '-';
    const char *d = c->p + neg, *q = d;
    uint64_t x = 0;
    while (q < c->end && *q >= '0' && *q <= '9' && q - d <= 18)
        x = x * 10 + (uint64_t)(*q++ - '0');
    size_t n = (size_t)(q - d);
    if (n == 0 || n > 18 || (n > 1 && *d == '0'))
        return 0;
    if (q < c->end && (*q == '.' || *q == 'e' || *q == 'E' || (*q >= '0' && *q <= '9')))
        return 0;
    c->p = q;
    if (neg && x > 0) {
        v->type = RV_NEGINT;
        v->i = -(int64_t)x;
    } else {
        v->type = RV_UINT; /* as jansson: -0 is the integer 0 */
        v->u = x;
    }
    return 1;
}

static int literal(struct cursor *c, const char *word, struct rp_value *v, uint8_t type, int b)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return 0;
    c->p += n;
    v->type = type;
    v->b = (uint8_t)b;
    return 1;
}

static int value(struct cursor *c, struct rp_value *v)
{
    if (c->p == c->end)
        return 0;
    switch (*c->p) {
    case '"':
        v->type = RV_STR;
        return string(c, &v->s, &v->len);
    case 't':
        return literal(c, "true", v, RV_BOOL, 1);
    case 'f':
        return literal(c, "false", v, RV_BOOL, 0);
    case 'n':
        return literal(c, "null", v, RV_NIL, 0);
    default:
        return (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) && integer(c, v);
    }
}

/* One "key": value member; unknown keys are read (to be sure the line is valid) and dropped. */
static int member(struct cursor *c, struct rp_record *rec)
{
    const char *key;
    uint32_t klen;
    struct rp_value v = {0};
    skip_ws(c);
    if (!string(c, &key, &klen))
        return 0;
    skip_ws(c);
    if (c->p == c->end || *c->p++ != ':')
        return 0;
    skip_ws(c);
    if (!value(c, &v))
        return 0;
    int k = rp_key_lookup(key, klen);
    if (k >= 0)
        rec->v[k] = v; /* a repeated key: the last one wins, as in jansson */
    skip_ws(c);
    return 1;
}

/* jansson parses about 0.4 M lines/s, less than half of what the server ingests, so the replay
 * was bound by it. Here, anything unusual (escapes, UTF-8, floats, nesting, numbers of 19 digits
 * or more, any syntax error) makes this give up rather than decide, so that on every line it does
 * accept the two agree; the integration test holds them to that. */
int rp_json_fast(const char *line, size_t len, struct rp_record *rec)
{
    struct cursor c = {line, line + len};
    skip_ws(&c);
    if (c.p == c.end || *c.p++ != '{')
        return 0;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}') {
        c.p++;
    } else {
        for (;;) {
            if (!member(&c, rec))
                return 0;
            if (c.p == c.end)
                return 0;
            char ch = *c.p++;
            if (ch == '}')
                break;
            if (ch != ',')
                return 0;
        }
    }
    skip_ws(&c);
    return c.p == c.end;
}
