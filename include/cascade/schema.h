/* The query method schema (DESIGN §5): every method's name, help, parameters (type, bounds,
 * default, help) and result shape, apart from the handlers that answer them (those are the
 * server's: query/method.c maps each method here to one). The msgpack-RPC port, the HTTP port
 * and cascade-cli validate and document with it, so they agree on what a call may carry and say
 * so in the same words. It depends on msgpack-c only: no engine, analytics or query headers. */
#ifndef CASCADE_SCHEMA_H
#define CASCADE_SCHEMA_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Bounds the schema states for the server's own limits; query/method.c checks at compile time
 * that each equals the constant it stands for (named after the =). */
#define QSCHEMA_ID_MAX        256   /* = EVENT_ID_MAX: bytes in a post or actor id */
#define QSCHEMA_CONTENT_MAX   2048  /* = EVENT_CONTENT_MAX */
#define QSCHEMA_LABEL_MAX     64    /* = EVENT_LABEL_MAX */
#define QSCHEMA_WINDOW_MAX_MS (7LL * 24 * 3600 * 1000) /* = ENGINE_GROWTH_HORIZON_MS */
#define QSCHEMA_LIMIT_MAX     1000  /* the largest `limit` of a ranked list */
/* The coordination defaults (= COORD_DEFAULT_*), written as text in the help. */
#define QSCHEMA_COORD_WINDOW_MS   10000
#define QSCHEMA_COORD_MIN_REPEATS 3
#define QSCHEMA_COORD_MIN_RATIO   0.3

enum qtype {
    QT_ID = 0, /* a post or actor id: non-empty string (≤ 256 bytes) or unsigned integer */
    QT_STR,    /* a string of 1..max bytes */
    QT_UINT,   /* an unsigned integer in [min, max] */
    QT_TIME,   /* a time: a signed integer in [min, max] (ms since the epoch), or an ISO 8601
               * string (qtime_parse); text that is all digits is the integer */
    QT_BOOL,   /* true/false (text: true, false, 1, 0, yes, no) */
    QT_FLOAT,  /* a number in [fmin, fmax] */
    QT_ENUM,   /* one of choices (a string) */
};

#define QT_INT QT_TIME /* its former name */

/* 1973-01-01T00:00:00Z in ms: a positive time below it reads as a date before 1973, and is most
 * likely seconds since the epoch instead (the server refuses it while its data holds no earlier
 * time, DESIGN §5). */
#define QSCHEMA_SECONDS_BELOW_MS 94694400000LL

struct qparam {
    const char *name;
    enum qtype type;
    uint8_t required;
    const char *const *choices; /* QT_ENUM: NULL-terminated */
    int64_t min, max;           /* QT_UINT, QT_TIME bounds; QT_STR: max length */
    double fmin, fmax;          /* QT_FLOAT bounds */
    const char *def;            /* the default, as text (help only; handlers apply it) */
    const char *help;
};

/* How a result is laid out, so that text renderers (CSV, tables) know what the rows are. */
enum qshape {
    QS_RECORD = 0,       /* one flat map */
    QS_LIST,             /* an array of flat maps */
    QS_RECORD_WITH_LIST, /* a flat map plus one array of flat maps under `list_key` */
};

struct qmethod {
    const char *name;
    const char *help;
    const struct qparam *params;
    uint32_t nparams;
    enum qshape shape;
    const char *list_key; /* QS_RECORD_WITH_LIST: the key of the list (the CSV rows) */
};

/* The key of the list whose elements are the rows of m's result (QS_RECORD_WITH_LIST), else
 * NULL (m NULL too): the list_key the renderers of cascade/format.h take. */
static inline const char *qmethod_rows_key(const struct qmethod *m)
{
    return m && m->shape == QS_RECORD_WITH_LIST ? m->list_key : NULL;
}

/* The method called name (len bytes, not NUL-terminated), or NULL. Entries are static. */
const struct qmethod *qmethod_find(const char *name, size_t len);
/* Every method, in table order; *n gets the count. */
const struct qmethod *qmethod_all(size_t *n);
/* The parameter called name of m, or NULL. */
const struct qparam *qmethod_param(const struct qmethod *m, const char *name, size_t len);
/* "stats, cascade, ..." for error messages (static storage). */
const char *qmethod_names(void);

/* Checks one parameter value against its schema: 0, or -EINVAL with a message in err. */
int qparam_check(const struct qparam *p, const msgpack_object *v, char *err, size_t errlen);

/* Packs text (a query-string or key=value value) as the msgpack value p's type asks for:
 * 0, or -EINVAL with a message naming the parameter in err. */
int qparam_pack_text(const struct qparam *p, const char *v, size_t len, msgpack_packer *pk,
                     char *err, size_t errlen);

/* One key=value of a query string or a command line (not NUL-terminated). */
struct qtext_param {
    const char *key, *val;
    size_t key_len, val_len;
};

/* Builds the msgpack-RPC request [0, msgid, method, [{params}]] from text pairs into out (which
 * the caller initialised). 0; -ENOENT for an unknown method; -EINVAL for an unknown or bad
 * parameter; -ENOMEM. The message in err is for a user. */
int qrequest_from_text(const char *method, size_t mlen, const struct qtext_param *ps, size_t n,
                       uint64_t msgid, msgpack_sbuffer *out, char *err, size_t errlen);

/* DESIGN §5: a call that changes the server's state (snapshot; analytics refresh=true) is
 * served over RPC and HTTP POST, never on HTTP GET. For m called with the text parameters ps:
 * NULL when it only reads, "" when every call of m changes state, else the name of the boolean
 * parameter whose true value makes it do so. */
const char *qmethod_changes_state(const struct qmethod *m, const struct qtext_param *ps, size_t n);

/* Help: one method with its parameters, or (m == NULL) every method on one line each. */
void qmethod_usage(FILE *f, const struct qmethod *m);

/* An ISO 8601 time to ms since the epoch: a date (2015-01-05, midnight UTC) or a date and time
 * (2015-01-05T14:40:46Z; a space may stand for the T; seconds optional; a fraction of up to nine
 * digits, truncated to the ms; then Z, +HH:MM, -HH:MM, +HHMM or nothing, which means UTC). Years
 * 0000-9999, every field range-checked (2015-02-29 is refused). 0, or -EINVAL. */
int qtime_parse(const char *s, size_t len, int64_t *ms);

#endif
