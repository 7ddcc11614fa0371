/* The query method table (DESIGN §5): every method's name, help and parameter schema, in one
 * place, so that the msgpack-RPC port, the HTTP port and cascade-cli validate the same way and
 * print the same help. The handlers run on the engine's thread (query/rpc.c calls them). */
#ifndef QUERY_METHOD_H
#define QUERY_METHOD_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum qtype {
    QT_ID = 0, /* a post or actor id: non-empty string (≤ 256 bytes) or unsigned integer */
    QT_STR,    /* a string of 1..max bytes */
    QT_UINT,   /* an unsigned integer in [min, max] */
    QT_INT,    /* a signed integer in [min, max] (ms timestamps) */
    QT_BOOL,   /* true/false (text: true, false, 1, 0, yes, no) */
    QT_FLOAT,  /* a number in [fmin, fmax] */
    QT_ENUM,   /* one of choices (a string) */
};

struct qparam {
    const char *name;
    enum qtype type;
    uint8_t required;
    const char *const *choices; /* QT_ENUM: NULL-terminated */
    int64_t min, max;           /* QT_UINT, QT_INT bounds; QT_STR: max length */
    double fmin, fmax;          /* QT_FLOAT bounds */
    const char *def;            /* the default, as text (help only; handlers apply it) */
    const char *help;
};

struct qcall;

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
    void (*run)(struct qcall *c);
};

/* Error codes of an RPC error map {"code", "message"}; the HTTP port uses them as statuses. */
enum {
    QERR_BAD_REQUEST = 400, /* malformed request, unknown or ill-typed parameter */
    QERR_NOT_FOUND = 404,   /* unknown method, post, actor, content key */
    QERR_NOT_READY = 503,   /* analytics not computed yet (PageRank, coordination, communities) */
    QERR_INTERNAL = 500,    /* out of memory */
};

/* The method called name, or NULL. */
const struct qmethod *qmethod_find(const char *name, size_t len);
/* Every method, in table order; *n gets the count. */
const struct qmethod *qmethod_all(size_t *n);
/* The parameter called name of m, or NULL. */
const struct qparam *qmethod_param(const struct qmethod *m, const char *name, size_t len);
/* "stats, cascade, ..." for error messages. */
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

#endif
