/* cascade-gen's sink: events encoded as NDJSON, msgpack or CSV into a large buffer, written to a
 * file descriptor or through zlib's gzip stream. One function decides which keys an event has and
 * what their values are; the three encoders only spell them, so the formats cannot disagree. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <zlib.h>

#include "cascade-gen.h"
#include "cascade/proto.h"

#define BUF_BYTES   (1u << 20)
#define EVENT_BYTES 1024 /* an encoded event is far smaller: flush when less than this is free */
#define GZIP_LEVEL  6    /* zlib's default: gzip -d, zcat and Python read it */

/* The DESIGN §2 keys are proto's (PROTO_EV_*), in the order every format writes them (CSV: its
 * columns). */
#define NF PROTO_EV_NKEYS
static const char *const label_names[] = {"", "false", "true", "mixed", "unverified"};
static const char *const kind_names[] = {"", "quote", "reply"};

struct field {
    const char *str; /* NULL: the integer num */
    uint32_t len;
    uint64_t num;
};

/* The fields present in one event; absent ones have present[k] == 0. Strings point into scratch. */
struct fields {
    struct field f[NF];
    uint8_t present[NF];
    char scratch[256];
};

struct sink {
    int fd;
    gzFile gz;
    char *path;  /* NULL for stdout */
    int regular; /* path is a regular file (we truncated it): remove it if the run fails */
    char *buf;
    size_t len;
    enum gen_format fmt;
    msgpack_packer pk;
};

/* ---- the fields of an event ---- */

static uint32_t put_u64(char *p, uint64_t v)
{
    char tmp[20];
    uint32_t n = 0, len;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    len = n;
    while (n)
        *p++ = tmp[--n];
    return len;
}

/* prefix followed by a number, as a string field. */
static char *set_id(struct fields *fs, enum proto_event_key k, char *at, const char *prefix,
                    uint64_t v)
{
    size_t plen = strlen(prefix);
    memcpy(at, prefix, plen);
    uint32_t len = (uint32_t)plen + put_u64(at + plen, v);
    fs->f[k] = (struct field){.str = at, .len = len};
    fs->present[k] = 1;
    return at + len;
}

static void set_str(struct fields *fs, enum proto_event_key k, const char *s)
{
    fs->f[k] = (struct field){.str = s, .len = (uint32_t)strlen(s)};
    fs->present[k] = 1;
}

/* The "wrong ts type" fault: the same instant as an ISO 8601 string, a common producer bug. */
static char *set_iso_ts(struct fields *fs, char *at, int64_t ts)
{
    time_t secs = (time_t)(ts / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t len = strftime(at, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    len += (size_t)snprintf(at + len, 8, ".%03dZ", (int)(ts % 1000));
    fs->f[PROTO_EV_TS] = (struct field){.str = at, .len = (uint32_t)len};
    fs->present[PROTO_EV_TS] = 1;
    return at + len;
}

static void event_fields(const struct gen_event *ev, struct fields *fs)
{
    char *at = fs->scratch;
    memset(fs->present, 0, sizeof fs->present);
    if (ev->bad != BAD_NO_POST)
        at = set_id(fs, PROTO_EV_POST, at, "p", ev->post);
    if (ev->bad != BAD_NO_ACTOR)
        at = set_id(fs, PROTO_EV_ACTOR, at, ev->flags & EV_PAGE ? "page" : "u", ev->actor);
    if (ev->bad == BAD_TS_STRING) {
        at = set_iso_ts(fs, at, ev->ts);
    } else {
        fs->f[PROTO_EV_TS] = (struct field){.num = (uint64_t)ev->ts};
        fs->present[PROTO_EV_TS] = 1;
    }
    if (ev->parent)
        at = set_id(fs, PROTO_EV_PARENT, at, "p", ev->parent);
    if (ev->kind)
        set_str(fs, PROTO_EV_KIND, kind_names[ev->kind]);
    if (ev->flags & EV_ACTOR_TYPE)
        set_str(fs, PROTO_EV_ACTOR_TYPE, "page");
    if (ev->url)
        set_id(fs, PROTO_EV_CONTENT, at, "https://news.example/", ev->url);
    if (ev->label)
        set_str(fs, PROTO_EV_LABEL, label_names[ev->label]);
}

/* ---- encoders; none of the values needs escaping (ids, digits, URLs, fixed words) ---- */

static char *put(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

static char *put_value(char *p, const struct field *f, int quote)
{
    if (!f->str)
        return p + put_u64(p, f->num);
    if (quote)
        *p++ = '"';
    p = put(p, f->str, f->len);
    if (quote)
        *p++ = '"';
    return p;
}

static void encode_ndjson(struct sink *s, const struct fields *fs)
{
    char *p = s->buf + s->len, sep = '{';
    for (int k = 0; k < NF; k++) {
        if (!fs->present[k])
            continue;
        *p++ = sep;
        *p++ = '"';
        p = put(p, proto_event_key_name(k), strlen(proto_event_key_name(k)));
        p = put(p, "\":", 2);
        p = put_value(p, &fs->f[k], 1);
        sep = ',';
    }
    p = put(p, "}\n", 2);
    s->len = (size_t)(p - s->buf);
}

/* Empty cell: key absent. The header names the columns. */
static void encode_csv(struct sink *s, const struct fields *fs)
{
    char *p = s->buf + s->len;
    for (int k = 0; k < NF; k++) {
        if (k)
            *p++ = ',';
        if (fs->present[k])
            p = put_value(p, &fs->f[k], 0);
    }
    *p++ = '\n';
    s->len = (size_t)(p - s->buf);
}

static int msgpack_append(void *data, const char *buf, size_t len)
{
    struct sink *s = data;
    memcpy(s->buf + s->len, buf, len);
    s->len += len;
    return 0;
}

/* One map per event, concatenated: the stream the ingest port takes, encoded by proto (the keys
 * here are proto's, in its order). */
static void encode_msgpack(struct sink *s, const struct fields *fs)
{
    struct event_raw raw = {0};
    for (int k = 0; k < NF; k++) {
        if (!fs->present[k])
            continue;
        const struct field *f = &fs->f[k];
        *proto_event_field(&raw, k) =
            f->str ? (struct event_field){.type = EVF_STR, .str = f->str, .len = f->len}
                   : (struct event_field){.type = EVF_UINT, .u = f->num};
    }
    proto_event_pack(&s->pk, &raw); /* msgpack_append cannot fail: sink_event keeps room */
}

/* ---- output ---- */

static int report(const struct sink *s, const char *what, int err)
{
    fprintf(stderr, "cascade-gen: %s %s: %s\n", what, s->path ? s->path : "stdout", strerror(err));
    return -err;
}

static int write_all(struct sink *s, const char *p, size_t len)
{
    if (s->gz) {
        if (len && gzwrite(s->gz, p, (unsigned)len) == 0) {
            int zerr;
            const char *msg = gzerror(s->gz, &zerr);
            fprintf(stderr, "cascade-gen: writing %s: %s\n", s->path,
                    zerr == Z_ERRNO ? strerror(errno) : msg);
            return -EIO;
        }
        return 0;
    }
    while (len) {
        ssize_t n = write(s->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return report(s, "writing", errno);
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int flush(struct sink *s)
{
    int rc = write_all(s, s->buf, s->len);
    s->len = 0;
    return rc;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int open_output(struct sink *s, const char *path)
{
    if (!path || !strcmp(path, "-")) {
        s->fd = STDOUT_FILENO;
        return 0;
    }
    if (!(s->path = strdup(path)))
        return -ENOMEM;
    s->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (s->fd < 0)
        return report(s, "cannot create", errno);
    struct stat st;
    s->regular = fstat(s->fd, &st) == 0 && S_ISREG(st.st_mode); /* never a device or a FIFO */
    if (has_suffix(path, ".gz")) {
        char mode[8];
        snprintf(mode, sizeof mode, "wb%d", GZIP_LEVEL);
        if (!(s->gz = gzdopen(s->fd, mode)))
            return report(s, "cannot compress", errno ? errno : ENOMEM);
    }
    return 0;
}

int sink_open(struct sink **out, const char *path, enum gen_format fmt)
{
    struct sink *s = calloc(1, sizeof *s);
    *out = s;
    if (!s)
        return -ENOMEM;
    s->fd = -1;
    s->fmt = fmt;
    if (!(s->buf = malloc(BUF_BYTES)))
        return -ENOMEM;
    msgpack_packer_init(&s->pk, s, msgpack_append);
    int rc = open_output(s, path);
    if (rc || fmt != GEN_CSV)
        return rc;
    for (int k = 0; k < NF; k++)
        s->len += (size_t)sprintf(s->buf + s->len, "%s%s", k ? "," : "", proto_event_key_name(k));
    s->buf[s->len++] = '\n';
    return 0;
}

int sink_event(struct sink *s, const struct gen_event *ev)
{
    struct fields fs;
    event_fields(ev, &fs);
    if (s->fmt == GEN_NDJSON)
        encode_ndjson(s, &fs);
    else if (s->fmt == GEN_CSV)
        encode_csv(s, &fs);
    else
        encode_msgpack(s, &fs);
    return s->len > BUF_BYTES - EVENT_BYTES ? flush(s) : 0;
}

/* Flushes and closes. A failed run leaves no half-written file behind to be mistaken for data. */
int sink_close(struct sink *s, int failed)
{
    if (!s)
        return 0;
    int rc = failed || s->fd < 0 ? 0 : flush(s);
    if (s->gz) {
        int zrc = gzclose(s->gz);
        if (!failed && !rc && zrc != Z_OK)
            rc = report(s, "closing", zrc == Z_ERRNO ? errno : EIO);
    } else if (s->path && s->fd >= 0 && close(s->fd) && !failed && !rc) {
        rc = report(s, "closing", errno);
    }
    if (s->regular && (failed || rc))
        unlink(s->path);
    free(s->path);
    free(s->buf);
    free(s);
    return rc;
}
