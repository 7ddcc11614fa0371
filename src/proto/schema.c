/* The method table and parameter schemas (see cascade/schema.h): the one place that says what
 * each query takes, checks values from msgpack (RPC) or from text (HTTP query strings, cascade-cli
 * arguments), and prints help. The handlers are the server's (query/method.c, query/handlers.c). */
#include "cascade/schema.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT_MAX QSCHEMA_LIMIT_MAX

/* A default written once, as a number where it is used and as text in the schema. */
#define TEXT_(x) #x
#define TEXT(x)  TEXT_(x)

static const char *const cascade_by[] = {
    "size",          "depth",   "max_breadth", "structural_virality",
    "unique_actors", "last_ts", "growth",      NULL};
static const char *const actor_by[] = {"reach", "reshares_received", "amplifiers",
                                       "posts", "pagerank",          NULL};
static const char *const actor_types[] = {"account", "page", NULL};
static const char *const link_dirs[] = {"in", "out", "both", NULL};

#define P_LIMIT(def, what)                                                                         \
    {                                                                                              \
        "limit", QT_UINT, 0, NULL, 1, LIMIT_MAX, 0, 0, def, "how many " what " to return"          \
    }

static const struct qparam p_cascade[] = {
    {"post", QT_ID, 1, NULL, 0, 0, 0, 0, NULL, "any post of the cascade (a string or an integer)"},
    {"tree", QT_BOOL, 0, NULL, 0, 0, 0, 0, "false",
     "also return the nodes (post, parent, actor, ts, depth, kind, placeholder), root first"},
    {"limit", QT_UINT, 0, NULL, 1, 1000000, 0, 0, "100000",
     "with tree: at most this many nodes, breadth-first from the root"},
};

static const struct qparam p_top_cascades[] = {
    {"by", QT_ENUM, 0, cascade_by, 0, 0, 0, 0, "size",
     "the metric to rank by; growth = posts in the last window_ms of event time"},
    P_LIMIT("10", "cascades"),
    {"label", QT_STR, 0, NULL, 0, QSCHEMA_LABEL_MAX, 0, 0, NULL, "only cascades with this label"},
    {"content", QT_STR, 0, NULL, 0, QSCHEMA_CONTENT_MAX, 0, 0, NULL,
     "only cascades whose root carries this content key"},
    {"since", QT_TIME, 0, NULL, INT64_MIN, INT64_MAX, 0, 0, NULL,
     "only cascades active at or after this time (last_ts >= since): ms since the epoch or "
     "ISO 8601 (2015-01-05, 2015-01-05T14:40:46Z)"},
    {"until", QT_TIME, 0, NULL, INT64_MIN, INT64_MAX, 0, 0, NULL,
     "only cascades that started at or before this time (first_ts <= until), as since"},
    {"min_size", QT_UINT, 0, NULL, 0, UINT32_MAX, 0, 0, NULL,
     "only cascades of at least this size"},
    {"window_ms", QT_UINT, 0, NULL, 1, QSCHEMA_WINDOW_MAX_MS, 0, 0, "60000",
     "with by=growth: the window, up to the newest event's time (inclusive)"},
    {"candidates", QT_UINT, 0, NULL, 1, 100000000, 0, 0, NULL,
     "instead of limit: the top N, past limit's bound (the cluster endpoint's labels)"},
};

#define P_ACTOR_ID                                                                                 \
    {                                                                                              \
        "id", QT_ID, 1, NULL, 0, 0, 0, 0, NULL, "the actor (a string or an integer)"               \
    }

static const struct qparam p_actor[] = {
    P_ACTOR_ID,
    {"amplifier_ids", QT_BOOL, 0, NULL, 0, 0, 0, 0, "false",
     "also list the amplifiers' ids (the cluster endpoint merges them as a set; one pass over "
     "every post)"},
};

static const struct qparam p_actor_links[] = {
    P_ACTOR_ID,
    P_LIMIT("50", "links per direction (the heaviest; ties by actor id)"),
    {"direction", QT_ENUM, 0, link_dirs, 0, 0, 0, 0, "both",
     "in: who reshared the actor's posts; out: whose posts it reshared; both: in, then out"},
    {"candidates", QT_UINT, 0, NULL, 1, 100000000, 0, 0, NULL,
     "instead of limit: up to N links per direction, past limit's bound (the cluster endpoint's)"},
};

static const struct qparam p_actor_cascades[] = {
    P_ACTOR_ID,
    P_LIMIT("20", "cascades (the largest; ties by root id)"),
};

static const struct qparam p_top_actors[] = {
    {"by", QT_ENUM, 0, actor_by, 0, 0, 0, 0, "reach", "the metric to rank by"},
    P_LIMIT("10", "actors"),
    {"actor_type", QT_ENUM, 0, actor_types, 0, 0, 0, 0, NULL, "only accounts, or only pages"},
    {"candidates", QT_UINT, 0, NULL, 1, 100000000, 0, 0, NULL,
     "instead of limit: the top N, past limit's bound (the cluster endpoint's candidates)"},
};

static const struct qparam p_content[] = {
    {"key", QT_STR, 1, NULL, 0, QSCHEMA_CONTENT_MAX, 0, 0, NULL,
     "the content key: a URL, a claim id, a hashtag"},
    P_LIMIT("10", "of its cascades (largest first)"),
};

static const struct qparam p_coordination[] = {
    {"window_ms", QT_UINT, 0, NULL, 0, QSCHEMA_WINDOW_MAX_MS, 0, 0,
     TEXT(QSCHEMA_COORD_WINDOW_MS),
     "two posts of a content key at most this far apart co-share it"},
    {"min_repeats", QT_UINT, 0, NULL, 1, UINT32_MAX, 0, 0, TEXT(QSCHEMA_COORD_MIN_REPEATS),
     "distinct content keys a pair must co-share"},
    {"min_ratio", QT_FLOAT, 0, NULL, 0, 0, 0.0, 1.0, TEXT(QSCHEMA_COORD_MIN_RATIO),
     "co-shared keys / the smaller of the two actors' distinct keys"},
    P_LIMIT("10", "groups"),
};

static const struct qparam p_labels_matched[] = {
    {"a", QT_STR, 0, NULL, 0, QSCHEMA_LABEL_MAX, 0, 0, "false", "the first label"},
    {"b", QT_STR, 0, NULL, 0, QSCHEMA_LABEL_MAX, 0, 0, "true", "the label it is compared with"},
};

static const struct qparam p_path[] = {
    {"post", QT_ID, 1, NULL, 0, 0, 0, 0, NULL, "the post to start from"},
};

static const struct qparam p_communities[] = {
    P_LIMIT("10", "communities"),
    {"min_size", QT_UINT, 0, NULL, 1, UINT32_MAX, 0, 0, "2", "only communities this large"},
};

static const struct qparam p_analytics[] = {
    {"refresh", QT_BOOL, 0, NULL, 0, 0, 0, 0, "false",
     "take a new snapshot now (when the worker is idle) instead of at the next interval "
     "(changes state: RPC or HTTP POST only)"},
};

#define PARAMS(p) p, sizeof(p) / sizeof(p[0])

static const struct qmethod methods[] = {
    {"stats", "ingest counters, table sizes, ingest rate, WAL position, memory, uptime", NULL, 0,
     QS_RECORD, NULL},
    {"cascade", "the metrics of the cascade holding a post (and its tree with tree=true)",
     PARAMS(p_cascade), QS_RECORD_WITH_LIST, "nodes"},
    {"top_cascades", "cascades ranked by a metric, with filters", PARAMS(p_top_cascades), QS_LIST,
     NULL},
    {"actor", "the metrics of one account or page", PARAMS(p_actor), QS_RECORD, NULL},
    {"top_actors", "accounts and pages ranked by a metric", PARAMS(p_top_actors), QS_LIST, NULL},
    {"actor_links",
     "an actor's weighted amplification links: in = who reshared its posts, out = whose posts it "
     "reshared (self-reshares aside), heaviest first, ties by actor id; each with the "
     "neighbour's actor_type and reach (one pass over every post: ~1.5 ms per million)",
     PARAMS(p_actor_links), QS_LIST, NULL},
    {"actor_cascades",
     "the cascades an actor posted in, as top_cascades records plus actor_posts (its posts in "
     "each), by size descending, then root id ascending (one pass over every post: ~1.5 ms per "
     "million)",
     PARAMS(p_actor_cascades), QS_LIST, NULL},
    {"content", "what one content key amounts to, and its largest cascades", PARAMS(p_content),
     QS_RECORD_WITH_LIST, "top_cascades"},
    {"labels", "per label: cascades and the mean, sd, median, p90, max of their metrics", NULL, 0,
     QS_LIST, NULL},
    {"labels_matched",
     "label a against label b per metric, cascades of equal size compared (strata by "
     "floor(log2 size)): the van Elteren z and p, and the plain Mann-Whitney z and p beside it; "
     "per stratum the counts and medians (one pass over the cascades)",
     PARAMS(p_labels_matched), QS_LIST, NULL},
    {"coordination", "groups of actors sharing the same content keys within a window",
     PARAMS(p_coordination), QS_LIST, NULL},
    {"path", "the chain from a post up to its cascade's root", PARAMS(p_path), QS_LIST, NULL},
    {"communities", "Leiden communities of the amplification graph", PARAMS(p_communities), QS_LIST,
     NULL},
    {"analytics", "the analytics worker: the last snapshot's age, sizes and timings",
     PARAMS(p_analytics), QS_RECORD, NULL},
    {"snapshot",
     "write a snapshot of the engine now (start-up loads it and replays only the WAL after it); "
     "answers once the file is in place (changes state: RPC or HTTP POST only)",
     NULL, 0, QS_RECORD, NULL},
};

#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

const struct qmethod *qmethod_find(const char *name, size_t len)
{
    for (size_t i = 0; i < NMETHODS; i++)
        if (strlen(methods[i].name) == len && memcmp(methods[i].name, name, len) == 0)
            return &methods[i];
    return NULL;
}

const struct qmethod *qmethod_all(size_t *n)
{
    *n = NMETHODS;
    return methods;
}

const struct qparam *qmethod_param(const struct qmethod *m, const char *name, size_t len)
{
    for (uint32_t i = 0; i < m->nparams; i++)
        if (strlen(m->params[i].name) == len && memcmp(m->params[i].name, name, len) == 0)
            return &m->params[i];
    return NULL;
}

static char names_text[256];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void build_names(void)
{
    size_t used = 0;
    for (size_t i = 0; i < NMETHODS && used < sizeof(names_text); i++) {
        int k = snprintf(names_text + used, sizeof(names_text) - used, "%s%s", i ? ", " : "",
                         methods[i].name);
        if (k < 0)
            break;
        used += (size_t)k;
    }
}

const char *qmethod_names(void)
{
    pthread_once(&names_once, build_names); /* the HTTP loop, the writer and tools all ask */
    return names_text;
}

/* ---------------------------------------------------------------- checking values */

static void choices_text(const struct qparam *p, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = 0;
    for (const char *const *c = p->choices; *c && used < cap; c++) {
        int k = snprintf(buf + used, cap - used, "%s%s", c == p->choices ? "" : ", ", *c);
        if (k < 0)
            break;
        used += (size_t)k;
    }
}

/* The sentence a user needs when a value of p is wrong. */
static void explain(const struct qparam *p, char *err, size_t errlen)
{
    char ch[256];
    switch (p->type) {
    case QT_ID:
        snprintf(err, errlen,
                 "parameter %s must be a non-empty string of at most %d bytes or an unsigned "
                 "integer",
                 p->name, QSCHEMA_ID_MAX);
        break;
    case QT_STR:
        snprintf(err, errlen,
                 "parameter %s must be a non-empty string of at most %" PRId64 " bytes", p->name,
                 p->max);
        break;
    case QT_UINT:
        snprintf(err, errlen, "parameter %s must be an integer from %" PRId64 " to %" PRId64,
                 p->name, p->min, p->max);
        break;
    case QT_TIME:
        snprintf(err, errlen,
                 "parameter %s must be a time: an integer (milliseconds since the epoch) or "
                 "ISO 8601 (2015-01-05, 2015-01-05T14:40:46Z, 2015-01-05T14:40:46.250+02:00)",
                 p->name);
        break;
    case QT_BOOL:
        snprintf(err, errlen, "parameter %s must be true or false", p->name);
        break;
    case QT_FLOAT:
        snprintf(err, errlen, "parameter %s must be a number from %g to %g", p->name, p->fmin,
                 p->fmax);
        break;
    case QT_ENUM:
        choices_text(p, ch, sizeof(ch));
        snprintf(err, errlen, "parameter %s must be one of %s", p->name, ch);
        break;
    }
}

static int enum_index(const struct qparam *p, const char *s, size_t len)
{
    for (int i = 0; p->choices[i]; i++)
        if (strlen(p->choices[i]) == len && memcmp(p->choices[i], s, len) == 0)
            return i;
    return -1;
}

static int check_int(const struct qparam *p, const msgpack_object *v)
{
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return v->via.u64 <= (uint64_t)INT64_MAX && (int64_t)v->via.u64 >= p->min &&
               (int64_t)v->via.u64 <= p->max;
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return p->type == QT_TIME && v->via.i64 >= p->min && v->via.i64 <= p->max;
    return 0;
}

int qparam_check(const struct qparam *p, const msgpack_object *v, char *err, size_t errlen)
{
    int ok = 0;
    switch (p->type) {
    case QT_ID:
        ok = (v->type == MSGPACK_OBJECT_STR && v->via.str.size > 0 &&
              v->via.str.size <= QSCHEMA_ID_MAX) ||
             v->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
        break;
    case QT_STR:
        ok = v->type == MSGPACK_OBJECT_STR && v->via.str.size > 0 &&
             (int64_t)v->via.str.size <= p->max;
        break;
    case QT_UINT:
        ok = check_int(p, v);
        break;
    case QT_TIME: {
        int64_t ms;
        ok = check_int(p, v) || (v->type == MSGPACK_OBJECT_STR &&
                                 qtime_parse(v->via.str.ptr, v->via.str.size, &ms) == 0 &&
                                 ms >= p->min && ms <= p->max);
        break;
    }
    case QT_BOOL:
        ok = v->type == MSGPACK_OBJECT_BOOLEAN ||
             (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= 1);
        break;
    case QT_FLOAT: {
        double d = v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64
                       ? v->via.f64
                   : v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (double)v->via.u64
                   : v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? (double)v->via.i64
                                                                : NAN;
        ok = isfinite(d) && d >= p->fmin && d <= p->fmax;
        break;
    }
    case QT_ENUM:
        ok = v->type == MSGPACK_OBJECT_STR && enum_index(p, v->via.str.ptr, v->via.str.size) >= 0;
        break;
    }
    if (ok)
        return 0;
    explain(p, err, errlen);
    return -EINVAL;
}

/* ---------------------------------------------------------------- text values */

static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int parse_bool(const char *s, size_t len)
{
    static const char *const yes[] = {"true", "1", "yes"}, *const no[] = {"false", "0", "no"};
    for (int i = 0; i < 3; i++) {
        if (strlen(yes[i]) == len && strncasecmp(yes[i], s, len) == 0)
            return 1;
        if (strlen(no[i]) == len && strncasecmp(no[i], s, len) == 0)
            return 0;
    }
    return -1;
}

static int parse_double(const char *s, size_t len, double *out)
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    char *end;
    errno = 0;
    *out = strtod(buf, &end);
    return *end || errno ? -1 : 0;
}

/* ---------------------------------------------------------------- ISO 8601 times */

/* n digits at *p as a number (no sign); -1 when any is not a digit. */
static int digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (March-based years, so the
 * leap day falls at the end of one). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int month_days(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return days[m - 1] + (m == 2 && leap);
}

int qtime_parse(const char *s, size_t len, int64_t *ms)
{
    const char *p = s, *end = s + len;
    if (len < 10 || p[4] != '-' || p[7] != '-')
        return -EINVAL;
    int y = digits(p, 4), mo = digits(p + 5, 2), d = digits(p + 8, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo))
        return -EINVAL;
    p += 10;
    int h = 0, mi = 0, sec = 0, frac = 0;
    int64_t off_min = 0;
    if (p < end) {
        if ((*p != 'T' && *p != 't' && *p != ' ') || end - p < 6 || p[3] != ':')
            return -EINVAL;
        h = digits(p + 1, 2), mi = digits(p + 4, 2);
        if (h < 0 || h > 23 || mi < 0 || mi > 59)
            return -EINVAL;
        p += 6;
        if (p < end && *p == ':') {
            if (end - p < 3 || (sec = digits(p + 1, 2)) < 0 || sec > 59)
                return -EINVAL;
            p += 3;
            if (p < end && (*p == '.' || *p == ',')) {
                int n = 0;
                for (p++; p < end && *p >= '0' && *p <= '9'; p++, n++)
                    if (n < 3)
                        frac = frac * 10 + (*p - '0');
                if (n == 0 || n > 9)
                    return -EINVAL;
                for (; n < 3; n++)
                    frac *= 10;
            }
        }
        if (p < end && (*p == 'Z' || *p == 'z')) {
            p++;
        } else if (p < end && (*p == '+' || *p == '-')) {
            int sign = *p == '-' ? -1 : 1, oh, om;
            if (end - p == 6 && p[3] == ':')
                oh = digits(p + 1, 2), om = digits(p + 4, 2);
            else if (end - p == 5)
                oh = digits(p + 1, 2), om = digits(p + 3, 2);
            else
                return -EINVAL;
            if (oh < 0 || oh > 23 || om < 0 || om > 59)
                return -EINVAL;
            off_min = sign * (oh * 60 + om);
            p = end;
        }
    }
    if (p != end)
        return -EINVAL;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off_min * 60;
    *ms = secs * 1000 + frac;
    return 0;
}

/* Text to a msgpack value of the right type, without range checks (qparam_check does those). */
static int pack_text(const struct qparam *p, const char *v, size_t len, msgpack_packer *pk)
{
    uint64_t u;
    double d;
    int b;
    switch (p->type) {
    case QT_ID:
    case QT_STR:
    case QT_ENUM:
        msgpack_pack_str(pk, len);
        return msgpack_pack_str_body(pk, v, len);
    case QT_UINT:
        return parse_u64(v, len, &u) ? -EINVAL : msgpack_pack_uint64(pk, u);
    case QT_TIME: {
        int64_t ms;
        if (len > 0 && v[0] == '-') {
            if (parse_u64(v + 1, len - 1, &u) || u > (uint64_t)INT64_MAX + 1)
                return -EINVAL;
            return msgpack_pack_int64(pk, u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u);
        }
        if (parse_u64(v, len, &u) == 0)
            return msgpack_pack_uint64(pk, u);
        /* an ISO 8601 time goes on as its ms, so handlers read one form only */
        return qtime_parse(v, len, &ms) ? -EINVAL : msgpack_pack_int64(pk, ms);
    }
    case QT_BOOL:
        if ((b = parse_bool(v, len)) < 0)
            return -EINVAL;
        return b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case QT_FLOAT:
        return parse_double(v, len, &d) ? -EINVAL : msgpack_pack_double(pk, d);
    }
    return -EINVAL;
}

int qparam_pack_text(const struct qparam *p, const char *v, size_t len, msgpack_packer *pk,
                     char *err, size_t errlen)
{
    /* Pack into a scratch buffer first so that the value can be checked like an RPC one. */
    msgpack_sbuffer sb;
    msgpack_packer spk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&spk, &sb, msgpack_sbuffer_write);
    int rc = pack_text(p, v, len, &spk);
    if (rc == 0 && !sb.data)
        rc = -ENOMEM;
    if (rc == 0) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, sb.data, sb.size, NULL) != MSGPACK_UNPACK_SUCCESS)
            rc = -ENOMEM;
        else if ((rc = qparam_check(p, &u.data, err, errlen)) == 0)
            rc = msgpack_sbuffer_write(pk->data, sb.data, sb.size) ? -ENOMEM : 0;
        msgpack_unpacked_destroy(&u);
    } else if (rc == -EINVAL) {
        explain(p, err, errlen);
    }
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void param_names(const struct qmethod *m, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = 0;
    if (m->nparams == 0)
        snprintf(buf, cap, "none");
    for (uint32_t i = 0; i < m->nparams && used < cap; i++) {
        int k = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", m->params[i].name);
        if (k < 0)
            break;
        used += (size_t)k;
    }
}

int qrequest_from_text(const char *method, size_t mlen, const struct qtext_param *ps, size_t n,
                       uint64_t msgid, msgpack_sbuffer *out, char *err, size_t errlen)
{
    const struct qmethod *m = qmethod_find(method, mlen);
    if (!m) {
        snprintf(err, errlen, "unknown method %.*s (methods: %s)", (int)(mlen > 64 ? 64 : mlen),
                 method, qmethod_names());
        return -ENOENT;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint64(&pk, msgid);
    msgpack_pack_str(&pk, mlen);
    msgpack_pack_str_body(&pk, method, mlen);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, n);
    for (size_t i = 0; i < n; i++) {
        const struct qparam *p = qmethod_param(m, ps[i].key, ps[i].key_len);
        if (!p) {
            char names[512];
            param_names(m, names, sizeof(names));
            snprintf(err, errlen, "unknown parameter %.*s for %s (it takes: %s)",
                     (int)(ps[i].key_len > 64 ? 64 : ps[i].key_len), ps[i].key, m->name, names);
            return -EINVAL;
        }
        msgpack_pack_str(&pk, ps[i].key_len);
        msgpack_pack_str_body(&pk, ps[i].key, ps[i].key_len);
        int rc = qparam_pack_text(p, ps[i].val, ps[i].val_len, &pk, err, errlen);
        if (rc)
            return rc;
    }
    if (!out->data) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

/* The calls that change state: the method, and the boolean parameter that makes a call of it one
 * (NULL: every call). */
static const struct {
    const char *method, *param;
} writers[] = {{"snapshot", NULL}, {"analytics", "refresh"}};

const char *qmethod_changes_state(const struct qmethod *m, const struct qtext_param *ps, size_t n)
{
    for (size_t w = 0; w < sizeof(writers) / sizeof(writers[0]); w++) {
        if (strcmp(m->name, writers[w].method) != 0)
            continue;
        if (!writers[w].param)
            return "";
        /* any true value counts: a repeated parameter must not slip one past */
        for (size_t i = 0; i < n; i++)
            if (ps[i].key_len == strlen(writers[w].param) &&
                memcmp(ps[i].key, writers[w].param, ps[i].key_len) == 0 &&
                parse_bool(ps[i].val, ps[i].val_len) == 1)
                return writers[w].param;
    }
    return NULL;
}

/* ---------------------------------------------------------------- help */

static const char *type_name(const struct qparam *p)
{
    static const char *const names[] = {"id",   "string", "integer", "time",
                                        "bool", "number", "choice"};
    return names[p->type];
}

void qmethod_usage(FILE *f, const struct qmethod *m)
{
    if (!m) {
        for (size_t i = 0; i < NMETHODS; i++)
            fprintf(f, "  %-15s %s\n", methods[i].name, methods[i].help);
        return;
    }
    fprintf(f, "%s: %s\n", m->name, m->help);
    if (m->nparams == 0)
        fprintf(f, "  (no parameters)\n");
    for (uint32_t i = 0; i < m->nparams; i++) {
        const struct qparam *p = &m->params[i];
        char ch[256] = "";
        if (p->type == QT_ENUM)
            choices_text(p, ch, sizeof(ch));
        fprintf(f, "  %s=%s%s%s%s%s\n      %s\n", p->name, p->type == QT_ENUM ? "{" : "",
                p->type == QT_ENUM ? ch : type_name(p), p->type == QT_ENUM ? "}" : "",
                p->required ? " (required)" : "", "", p->help);
        if (p->def)
            fprintf(f, "      default: %s\n", p->def);
    }
}
