/* engine_dump: drives libcascade's engine from a line-oriented text script on stdin and prints
 * the metrics it is asked for, so that oracle_networkx.py can hold them against networkx and
 * igraph. It goes through engine_apply_raw, the same validate-then-apply path a protocol decoder
 * takes, so the oracle also sees validation. A test tool, but a bad line is reported and skipped,
 * never a crash: the script is data.
 *
 * Input: one record per line, fields separated by TAB.
 *   event:  post TAB parent TAB actor TAB ts [TAB actor_type [TAB content [TAB label [TAB kind]]]]
 *   query:  ?cascade TAB post | ?actor TAB id | ?tree TAB post | ?stats
 *   a line starting with '#' and an empty line are ignored.
 * In a field: empty = key absent; exactly \N = nil; exactly \E = the empty string; otherwise the
 * escapes \\ \t \n \r \xHH stand for backslash, TAB, LF, CR and any byte (so that every id can be
 * written, a leading '?' or '#' too), and any other backslash is an error. Every string is sent
 * as a msgpack str would be (EVF_STR); ts is a decimal integer, sent as EVF_UINT, or EVF_NEGINT
 * when negative.
 *
 * Output (stdout), TAB-separated; strings escaped as above (other control bytes as \xHH), a NULL
 * string as \N:
 *   outcome  LINE POST NAME            for each event that is not accepted (dup, rejections)
 *   cascade  QUERY ROOT ROOT_ACTOR SIZE MISSING DEPTH MAX_BREADTH WIENER SV UNIQUE_ACTORS
 *            FIRST_TS LAST_TS DURATION_MS CONTENT LABEL          (SV printed with %.17g)
 *   actor    ID POSTS ROOTS SHARES RESHARES_RECEIVED AMPLIFIERS REACH CASCADES FIRST_TS LAST_TS
 *            ACTOR_TYPE                                  (account | page | unspecified)
 *   node     QUERY POST PARENT ACTOR TS DEPTH KIND PLACEHOLDER    (one per node, BFS order)
 *   tree     QUERY COUNT                                         (after the nodes)
 *   nocascade QUERY | noactor ID                                 (-ENOENT)
 *   stats    key=value ...                                       (engine_get_stats)
 *   bad      LINE REASON                                         (also on stderr)
 *   end      lines=N events=N ok=N bad=N
 * Exit status: 0; 3 when some line was bad; 2 on a usage, engine or output error. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/engine.h"
#include "cascade/event.h"

/* Room for any valid event even with every byte written as \xHH (ids 256, content 2048), and
 * for over-long fields, which must reach the validator to be tested for too_long. */
#define LINE_CAP   65536
#define FIELDS_MAX 8

struct dump {
    struct engine *engine;
    unsigned long long lineno, events, ok, bad;
};

static void put_escaped(const char *s, size_t len)
{
    if (s == NULL) {
        fputs("\\N", stdout);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        switch (s[i]) {
        case '\\':
            fputs("\\\\", stdout);
            break;
        case '\t':
            fputs("\\t", stdout);
            break;
        case '\n':
            fputs("\\n", stdout);
            break;
        case '\r':
            fputs("\\r", stdout);
            break;
        default:
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                printf("\\x%02x", (unsigned char)s[i]);
            else
                putchar(s[i]);
        }
    }
}

static void put_field(const char *s, size_t len)
{
    putchar('\t');
    put_escaped(s, len);
}

static void report_bad(struct dump *d, const char *reason)
{
    d->bad++;
    printf("bad\t%llu\t%s\n", d->lineno, reason);
    fprintf(stderr, "engine_dump: line %llu: %s\n", d->lineno, reason);
}

/* Reads one line (without its LF) into buf. Returns its length, -1 at end of input, or -2 when
 * the line is longer than cap or holds a NUL byte: the rest of it has then been consumed. */
static long read_line(FILE *in, char *buf, size_t cap, int *has_nul)
{
    size_t len = 0;
    int c, overflow = 0;

    *has_nul = 0;
    while ((c = getc(in)) != EOF && c != '\n') {
        if (c == '\0')
            *has_nul = 1;
        if (len < cap)
            buf[len++] = (char)c;
        else
            overflow = 1;
    }
    if (c == EOF && len == 0 && !overflow)
        return -1;
    if (overflow || *has_nul)
        return -2;
    return (long)len;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes one field in place into f. Returns NULL or a reason for rejecting the line. */
static const char *decode_field(char *s, size_t len, struct event_field *f)
{
    size_t o = 0;

    memset(f, 0, sizeof(*f));
    if (len == 0) {
        f->type = EVF_ABSENT;
        return NULL;
    }
    if (len == 2 && s[0] == '\\' && s[1] == 'N') {
        f->type = EVF_NIL;
        return NULL;
    }
    if (len == 2 && s[0] == '\\' && s[1] == 'E') {
        f->type = EVF_STR;
        f->str = s;
        f->len = 0;
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\\') {
            s[o++] = s[i];
            continue;
        }
        if (++i == len)
            return "trailing backslash";
        switch (s[i]) {
        case '\\':
            s[o++] = '\\';
            break;
        case 't':
            s[o++] = '\t';
            break;
        case 'n':
            s[o++] = '\n';
            break;
        case 'r':
            s[o++] = '\r';
            break;
        case 'x':
            if (i + 2 >= len || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                return "\\x needs two hex digits";
            s[o++] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
            i += 2;
            break;
        default:
            return "unknown escape";
        }
    }
    f->type = EVF_STR;
    f->str = s;
    f->len = (uint32_t)o;
    return NULL;
}

/* ts: an optionally signed decimal integer that fits in int64, else a reason. */
static const char *decode_ts(struct event_field *f)
{
    char tmp[32];
    char *end;
    long long v;

    if (f->type != EVF_STR)
        return NULL; /* absent or nil: passed on as such, for the validator to judge */
    if (f->len == 0 || f->len >= sizeof(tmp))
        return "ts is not a decimal integer";
    memcpy(tmp, f->str, f->len);
    tmp[f->len] = '\0';
    if (!(tmp[0] == '-' || (tmp[0] >= '0' && tmp[0] <= '9')))
        return "ts is not a decimal integer";
    errno = 0;
    v = strtoll(tmp, &end, 10);
    if (errno != 0 || *end != '\0' || end == tmp)
        return "ts is not a decimal integer in range";
    if (v < 0) {
        f->type = EVF_NEGINT;
        f->i = v;
    } else {
        f->type = EVF_UINT;
        f->u = (uint64_t)v;
    }
    f->str = NULL;
    f->len = 0;
    return NULL;
}

/* Splits line (len bytes, not NUL-terminated) at TABs; returns the field count or -1 when there
 * are more than max. */
static int split(char *line, size_t len, char **start, size_t *flen, int max)
{
    int n = 0;
    size_t begin = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && line[i] != '\t')
            continue;
        if (n == max)
            return -1;
        start[n] = line + begin;
        flen[n] = i - begin;
        n++;
        begin = i + 1;
    }
    return n;
}

static void do_event(struct dump *d, char *line, size_t len)
{
    char *start[FIELDS_MAX];
    size_t flen[FIELDS_MAX];
    struct event_field *slot[FIELDS_MAX];
    struct event_raw raw;
    const char *why;
    int n, rc;

    n = split(line, len, start, flen, FIELDS_MAX);
    if (n < 4) {
        report_bad(d, n < 0 ? "too many fields" : "an event needs post, parent, actor, ts");
        return;
    }
    memset(&raw, 0, sizeof(raw));
    slot[0] = &raw.post;
    slot[1] = &raw.parent;
    slot[2] = &raw.actor;
    slot[3] = &raw.ts;
    slot[4] = &raw.actor_type;
    slot[5] = &raw.content;
    slot[6] = &raw.label;
    slot[7] = &raw.kind;
    for (int i = 0; i < n; i++) {
        why = decode_field(start[i], flen[i], slot[i]);
        if (why != NULL) {
            report_bad(d, why);
            return;
        }
    }
    why = decode_ts(&raw.ts);
    if (why != NULL) {
        report_bad(d, why);
        return;
    }
    d->events++;
    rc = engine_apply_raw(d->engine, &raw);
    if (rc == EVENT_OK) {
        d->ok++;
        return;
    }
    printf("outcome\t%llu", d->lineno);
    put_field(raw.post.type == EVF_STR ? raw.post.str : NULL, raw.post.len);
    printf("\t%s\n", rc >= 0 ? event_outcome_name(rc) : "negative");
}

static void do_cascade(struct dump *d, const char *q, size_t qlen)
{
    struct engine_cascade c;

    if (engine_cascade(d->engine, q, (uint32_t)qlen, &c) != 0) {
        fputs("nocascade", stdout);
        put_field(q, qlen);
        putchar('\n');
        return;
    }
    fputs("cascade", stdout);
    put_field(q, qlen);
    put_field(c.root, c.root_len);
    put_field(c.root_actor, c.root_actor_len);
    printf("\t%" PRIu32 "\t%" PRIu32 "\t%" PRIu32 "\t%" PRIu32 "\t%" PRIu64 "\t%.17g\t%" PRIu32
           "\t%" PRId64 "\t%" PRId64 "\t%" PRId64,
           c.size, c.missing, c.depth, c.max_breadth, c.wiener, c.structural_virality,
           c.unique_actors, c.first_ts, c.last_ts, c.duration_ms);
    put_field(c.content, c.content_len);
    put_field(c.label, c.label_len);
    putchar('\n');
}

static const char *actor_type_name(uint8_t t)
{
    switch (t) {
    case EVENT_ACTOR_ACCOUNT:
        return "account";
    case EVENT_ACTOR_PAGE:
        return "page";
    default:
        return "unspecified";
    }
}

static void do_actor(struct dump *d, const char *q, size_t qlen)
{
    struct engine_actor a;

    if (engine_actor(d->engine, q, (uint32_t)qlen, &a) != 0) {
        fputs("noactor", stdout);
        put_field(q, qlen);
        putchar('\n');
        return;
    }
    fputs("actor", stdout);
    put_field(a.name, a.name_len);
    printf("\t%" PRIu32 "\t%" PRIu32 "\t%" PRIu32 "\t%" PRIu32 "\t%" PRIu32 "\t%" PRIu32
           "\t%" PRIu32 "\t%" PRId64 "\t%" PRId64 "\t%s\n",
           a.posts, a.roots, a.shares, a.reshares_received, a.amplifiers, a.reach, a.cascades,
           a.first_ts, a.last_ts, actor_type_name(a.actor_type));
}

struct tree_ctx {
    const char *q;
    size_t qlen;
};

static int print_node(void *ctx, const struct engine_node *n)
{
    const struct tree_ctx *t = ctx;

    fputs("node", stdout);
    put_field(t->q, t->qlen);
    put_field(n->post, n->post_len);
    put_field(n->parent, n->parent_len);
    put_field(n->actor, n->actor_len);
    printf("\t%" PRId64 "\t%" PRIu32 "\t%u\t%u\n", n->ts, n->depth, (unsigned)n->kind,
           (unsigned)n->placeholder);
    return 0;
}

static void do_tree(struct dump *d, const char *q, size_t qlen)
{
    struct tree_ctx t = {q, qlen};
    int n = engine_tree(d->engine, q, (uint32_t)qlen, 0, print_node, &t);

    if (n < 0) {
        fputs("nocascade", stdout);
        put_field(q, qlen);
        putchar('\n');
        return;
    }
    fputs("tree", stdout);
    put_field(q, qlen);
    printf("\t%d\n", n);
}

static void do_stats(struct dump *d)
{
    struct engine_stats s;

    engine_get_stats(d->engine, &s);
    printf("stats\tposts=%" PRIu64 "\tplaceholders=%" PRIu64 "\tcascades=%" PRIu64
           "\tactors=%" PRIu64 "\tedges=%" PRIu64,
           s.posts, s.placeholders, s.cascades, s.actors, s.edges);
    for (int i = 0; i < EVENT_OUTCOME_COUNT; i++)
        printf("\t%s=%" PRIu64, event_outcome_name(i), s.outcomes[i]);
    putchar('\n');
}

static void do_query(struct dump *d, char *line, size_t len)
{
    char *start[2];
    size_t flen[2];
    struct event_field arg;
    const char *why;
    int n = split(line, len, start, flen, 2);

    if (n == 1 && flen[0] == 6 && memcmp(start[0], "?stats", 6) == 0) {
        do_stats(d);
        return;
    }
    if (n != 2) {
        report_bad(d, "a query is ?cascade, ?actor or ?tree and one argument, or ?stats");
        return;
    }
    why = decode_field(start[1], flen[1], &arg);
    if (why == NULL && arg.type != EVF_STR)
        why = "a query's argument must be a string";
    if (why != NULL) {
        report_bad(d, why);
        return;
    }
    if (flen[0] == 8 && memcmp(start[0], "?cascade", 8) == 0)
        do_cascade(d, arg.str, arg.len);
    else if (flen[0] == 6 && memcmp(start[0], "?actor", 6) == 0)
        do_actor(d, arg.str, arg.len);
    else if (flen[0] == 5 && memcmp(start[0], "?tree", 5) == 0)
        do_tree(d, arg.str, arg.len);
    else
        report_bad(d, "unknown query");
}

int main(int argc, char **argv)
{
    static char line[LINE_CAP];
    struct dump d = {0};
    long len;
    int has_nul;

    if (argc != 1) {
        fprintf(stderr, "usage: %s < script (see the comment at the top of engine_dump.c)\n",
                argv[0]);
        return 2;
    }
    if (engine_new(&d.engine) != 0) {
        fprintf(stderr, "engine_dump: engine_new failed\n");
        return 2;
    }
    while ((len = read_line(stdin, line, sizeof(line), &has_nul)) != -1) {
        d.lineno++;
        if (len == -2) {
            report_bad(&d, has_nul ? "NUL byte in line" : "line too long");
            continue;
        }
        if (len > 0 && line[len - 1] == '\r')
            len--; /* tolerate CRLF scripts */
        if (len == 0 || line[0] == '#')
            continue;
        if (line[0] == '?')
            do_query(&d, line, (size_t)len);
        else
            do_event(&d, line, (size_t)len);
    }
    printf("end\tlines=%llu\tevents=%llu\tok=%llu\tbad=%llu\n", d.lineno, d.events, d.ok, d.bad);
    engine_free(d.engine);
    if (ferror(stdin) || fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "engine_dump: I/O error\n");
        return 2;
    }
    return d.bad ? 3 : 0;
}
