/* What both ends of a cascaded wire share (DESIGN §2, §4, §5): an event as the msgpack map the
 * ingest port takes, the ack and fatal maps it answers with, the msgpack-RPC envelope of the
 * query port, the auth messages of --auth-token-file, and the limits the protocol fixes. One
 * implementation, used by the server (src/net, src/query) and by libcascade-client and the
 * tools, so that the two sides cannot drift apart. Encoders append through a msgpack_packer;
 * parsers read a decoded msgpack_object and borrow its strings (nothing they return is owned).
 * Implemented in src/proto/ (proto.c, auth.c). No network I/O here. */
#ifndef CASCADE_PROTO_H
#define CASCADE_PROTO_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "cascade/event.h"

/* ------------------------------------------------------------------ limits */

#define PROTO_INGEST_PORT 7400 /* the default ports (DESIGN §7) */
#define PROTO_QUERY_PORT  7401
#define PROTO_HTTP_PORT   7402

#define PROTO_ACK_ERR_MAX 8  /* rejections an ack's "err" lists at most (the most recent) */
#define PROTO_ACK_ERR_LEN 96 /* bytes of one "event N: reason" entry, with its NUL, at most */
/* An ack's or fatal's encoded size is far below this: a client may treat anything larger on the
 * ingest port as a broken stream. */
#define PROTO_REPLY_MAX (1u << 20)

/* The server's default limits on one value (its --max-* options can change them): a client that
 * keeps under these is never cut off for size. */
#define PROTO_VALUE_MAX_DEFAULT (4u << 20) /* bytes of one top-level ingest value */
#define PROTO_STR_MAX_DEFAULT   65536      /* bytes of any str/bin/ext */
#define PROTO_RPC_REQUEST_MAX   (1u << 20) /* bytes of one RPC request (--max-rpc-request-bytes) */

#define PROTO_AUTH_TOKEN_MIN 16   /* bytes: shorter secrets are refused at start-up */
#define PROTO_AUTH_TOKEN_MAX 1024 /* bytes */
/* The ingest stream's opening map {"auth": TOKEN} at its longest: a map32 header, the key as a
 * str32 (5 + 4 bytes) and the token as a str32. */
#define PROTO_AUTH_INGEST_PREFIX_MAX (5 + 5 + 4 + 5 + PROTO_AUTH_TOKEN_MAX)

/* ------------------------------------------------------------------ events (DESIGN §2) */

/* The DESIGN §2 keys, in the order an encoded event writes them (and event_validate checks). */
enum proto_event_key {
    PROTO_EV_POST = 0,
    PROTO_EV_ACTOR,
    PROTO_EV_TS,
    PROTO_EV_PARENT,
    PROTO_EV_KIND,
    PROTO_EV_ACTOR_TYPE,
    PROTO_EV_CONTENT,
    PROTO_EV_LABEL,
    PROTO_EV_NKEYS
};

/* "post", "actor", ...; "?" out of range. A static string. */
const char *proto_event_key_name(int key);
/* PROTO_EV_* for a key spelled exactly as in DESIGN §2, or -1 (unknown keys are ignored). */
int proto_event_key_lookup(const char *s, size_t len);
/* The field of raw that key names (key in range). */
struct event_field *proto_event_field(struct event_raw *raw, int key);

/* Appends raw as one event map: every key whose field is not EVF_ABSENT, in PROTO_EV_* order.
 * EVF_NIL packs nil, EVF_UINT an unsigned int, EVF_NEGINT a negative int, EVF_STR a str;
 * EVF_OTHER (a value of none of these types) packs `false`, which the server reads as
 * EVF_OTHER again and rejects as bad_type, as it would the original. ts_max is the receiver's
 * and is not sent. 0, or -ENOMEM when the packer's write failed. */
int proto_event_pack(msgpack_packer *pk, const struct event_raw *raw);

/* ------------------------------------------------------------------ ingest replies (DESIGN §4) */

/* An ack: {"ok": N, "dup": N, "rej": N, "err": [...]}, counts cumulative for the connection. */
struct proto_ack {
    uint64_t ok, dup, rej;
    const msgpack_object *err; /* the "err" array, or NULL when absent; entries as below */
};

/* {"fatal": msg} or {"fatal": msg, "resend_from": N}: the server ends the connection. */
struct proto_fatal {
    const char *msg; /* borrowed from the decoded object; not NUL-terminated */
    uint32_t msg_len;
    int has_resend;       /* resend_from was given */
    uint64_t resend_from; /* the connection's index (from 0) of the first event to send again */
};

/* Appends an ack. errs[0..nerr) are the "event N: reason" entries, oldest first (nerr at most
 * PROTO_ACK_ERR_MAX; more are cut to the last ones). 0 or -ENOMEM. */
int proto_ack_pack(msgpack_packer *pk, uint64_t ok, uint64_t dup, uint64_t rej,
                   const char *const *errs, uint32_t nerr);
/* One "err" entry, "event N: reason" (N counts the connection's events from 0), into buf
 * (PROTO_ACK_ERR_LEN bytes are enough for any reason event_outcome_name gives). snprintf's
 * result. */
int proto_ack_err_format(char *buf, size_t len, uint64_t event, const char *reason);
/* Reads one "err" entry: 0 with *event and reason (NUL-terminated, cut to rlen) filled, or
 * -EPROTO when e is not a str of that form. */
int proto_ack_err_parse(const msgpack_object *e, uint64_t *event, char *reason, size_t rlen);

/* Appends a fatal map, with "resend_from" when resend_from is not NULL. 0 or -ENOMEM. */
int proto_fatal_pack(msgpack_packer *pk, const char *msg, const uint64_t *resend_from);

/* What one value the ingest port sent is. */
enum proto_reply {
    PROTO_REPLY_BAD = -1, /* neither: not a map, a count missing or not an unsigned int, ... */
    PROTO_REPLY_ACK = 1,
    PROTO_REPLY_FATAL = 2,
};
/* Reads one value from the ingest port: a map with a "fatal" key is a fatal (its message "?"
 * when not a str; resend_from counts only as an unsigned int), else a map with unsigned "ok",
 * "dup" and "rej" is an ack (an "err" that is not an array counts as absent). Fills *ack or
 * *fatal, whichever it is; either may be NULL when the caller does not want it. */
enum proto_reply proto_reply_parse(const msgpack_object *o, struct proto_ack *ack,
                                   struct proto_fatal *fatal);

/* ------------------------------------------------------------------ msgpack-RPC (DESIGN §5) */

/* Appends a request's envelope [0, msgid, method, [{...}]] up to the params map's header: the
 * caller then packs nparams key/value pairs. 0 or -ENOMEM. */
int proto_rpc_request_pack(msgpack_packer *pk, uint64_t msgid, const char *method, size_t mlen,
                           uint32_t nparams);

/* Appends a success response's envelope [1, msgid, nil, ...]: the caller then packs (or
 * copies) the one result value. msgid NULL packs nil; else the request's msgid as it came (any
 * type: it is echoed, not judged). 0 or -ENOMEM. */
int proto_rpc_response_head(msgpack_packer *pk, const msgpack_object *msgid);
/* Appends a whole error response [1, msgid, {"code": code, "message": msg}, nil]; msgid as
 * for proto_rpc_response_head. 0 or -ENOMEM. */
int proto_rpc_error_pack(msgpack_packer *pk, const msgpack_object *msgid, unsigned code,
                         const char *msg);

/* A response, as read. */
struct proto_rpc_response {
    int has_id; /* the msgid is an unsigned int (else nil or something else) */
    uint64_t msgid;
    const msgpack_object *error;  /* NULL when the error slot is nil */
    const msgpack_object *result; /* the result slot (nil on errors) */
    uint64_t code;                /* error: its "code", 0 when missing or not an unsigned int */
    const char *message;          /* error: its first str "message", or NULL; not NUL-terminated */
    uint32_t message_len;
};
/* Reads [1, msgid, error, result]. 0, or -EPROTO when o is not such an array. */
int proto_rpc_response_parse(const msgpack_object *o, struct proto_rpc_response *r);

/* ------------------------------------------------------------------ auth (--auth-token-file)
 *
 * The optional shared secret: loading it, comparing in constant time, and recognising the first
 * message a client sends to prove it knows it on each port (ingest: the value {"auth": TOKEN};
 * msgpack-RPC: [0, msgid, "auth", [{"token": TOKEN}]]; HTTP: an `Authorization: Bearer TOKEN`
 * header, checked by the server's loop). */

/* Reads the token from path (surrounding whitespace trimmed). *out is malloc'd, NUL-terminated,
 * owned by the caller. *loose is set when group or others may read the file (the caller warns).
 * 0, or a negative errno with a message for the user in err. */
int proto_auth_token_load(const char *path, char **out, int *loose, char *err, size_t errlen);

/* 1 when got equals want. The time taken depends on want's length only, not on where the two
 * differ nor on got's length. */
int proto_auth_token_equal(const char *want, size_t wlen, const char *got, size_t glen);

enum proto_auth_result {
    PROTO_AUTH_MORE = 0, /* not a whole message yet */
    PROTO_AUTH_OK,       /* the right token */
    PROTO_AUTH_WRONG,    /* an auth message with the wrong token */
    PROTO_AUTH_MISSING,  /* something else came first */
};

/* Ingest port: looks at the first bytes of the stream, which must be exactly the msgpack map
 * {"auth": TOKEN} (one key, a str value; the map and the strings in any of msgpack's encodings:
 * fixmap/map16/map32, fixstr/str8/str16/str32), at most PROTO_AUTH_INGEST_PREFIX_MAX bytes.
 * Parsed by hand, so that no declared length of untrusted bytes ever sizes an allocation. On
 * PROTO_AUTH_OK, *used gets the bytes the map took (the events follow it). */
enum proto_auth_result proto_auth_ingest_prefix(const char *buf, size_t len, const char *token,
                                                size_t tlen, size_t *used);

/* msgpack-RPC: req is a decoded request. PROTO_AUTH_MISSING unless it calls the `auth` method;
 * *msgid gets its msgid (0 when there is none) for the answer. */
enum proto_auth_result proto_auth_rpc_request(const msgpack_object *req, const char *token,
                                              size_t tlen, uint64_t *msgid);

/* The client's side: packs the ingest stream's opening map {"auth": TOKEN}, and the RPC request
 * [0, msgid, "auth", [{"token": TOKEN}]] (the forms the two functions above accept). */
void proto_auth_pack_ingest(msgpack_packer *pk, const char *token);
void proto_auth_pack_rpc(msgpack_packer *pk, uint64_t msgid, const char *token);
/* The server's answer to a right token: [1, msgid, nil, {"authenticated": true}]. */
void proto_auth_pack_rpc_ok(msgpack_packer *pk, uint64_t msgid);

/* The token of an `Authorization: Bearer TOKEN` header value, or NULL (*len 0). */
const char *proto_auth_bearer(const char *value, size_t len, size_t *tok_len);

#endif
