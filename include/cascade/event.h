/* Share events (DESIGN §2): the decoded-but-untrusted form a protocol decoder fills in, the
 * validated form the engine applies, and the outcome of each event, rejection reasons included.
 * Validation is pure (no engine state): every check except `cycle` happens here. */
#ifndef CASCADE_EVENT_H
#define CASCADE_EVENT_H

#include <stdint.h>

#define EVENT_ID_MAX      256  /* bytes in a post or actor id */
#define EVENT_CONTENT_MAX 2048 /* bytes in `content` */
#define EVENT_LABEL_MAX   64   /* bytes in `label` */

/* What a decoder saw for one key. Strings point into the decoder's buffer (not owned). */
enum event_ftype {
    EVF_ABSENT = 0, /* key not present */
    EVF_NIL,
    EVF_UINT,   /* non-negative integer: u */
    EVF_NEGINT, /* negative integer: i */
    EVF_STR,    /* str/len */
    EVF_OTHER,  /* float, bool, bin, array, map, ext */
};

struct event_field {
    uint8_t type; /* enum event_ftype */
    uint32_t len;
    const char *str;
    uint64_t u;
    int64_t i;
};

/* The DESIGN §2 keys of one event, as decoded; unknown keys are not represented. ts_max is the
 * receiver's, not the event's: the latest ts it takes (its clock plus --max-future-ms, see
 * event_ts_max), set by the ingest decoder; 0 (as a zeroed raw has it): no bound, as when the
 * WAL is replayed or a dump is checked offline. */
struct event_raw {
    struct event_field post, actor, ts, parent, kind, actor_type, content, label;
    int64_t ts_max;
};

enum event_kind { EVENT_KIND_POST = 0, EVENT_KIND_SHARE, EVENT_KIND_QUOTE, EVENT_KIND_REPLY };
enum event_actor_type { EVENT_ACTOR_UNSPECIFIED = 0, EVENT_ACTOR_ACCOUNT, EVENT_ACTOR_PAGE };

/* An id in canonical form: integers are kept as their decimal digits in `num`, so that 123 and
 * "123" are the same id. Read it with event_id_str(); never copy `str` without `num`. */
struct event_id {
    const char *str; /* NULL: the id is the digits in num; also NULL with len 0: no id */
    uint32_t len;
    char num[24];
};

/* A validated event. String pointers borrow from the event_raw's buffers. */
struct event {
    struct event_id post, actor, parent; /* parent.len == 0: no parent (an original post) */
    int64_t ts;
    const char *content; /* NULL: none (the post carries its cascade root's) */
    const char *label;   /* NULL: none */
    uint16_t content_len;
    uint8_t label_len;
    uint8_t kind;       /* enum event_kind, defaulted per DESIGN §2 */
    uint8_t actor_type; /* enum event_actor_type */
};

/* Outcome of one event. Order matters: EVENT_REJ_FIRST.. are the rejection reasons, counted per
 * reason; keep event_outcome_name() in step. */
enum event_outcome {
    EVENT_OK = 0,
    EVENT_DUP,
    EVENT_REJ_MISSING_POST,
    EVENT_REJ_MISSING_ACTOR,
    EVENT_REJ_MISSING_TS,
    EVENT_REJ_BAD_TYPE,
    EVENT_REJ_TOO_LONG,
    EVENT_REJ_SELF_PARENT,
    EVENT_REJ_CYCLE,
    EVENT_REJ_BAD_TS, /* negative, or past the receiver's ts_max */
    EVENT_ERR_NOMEM, /* not the event's fault: the engine could not grow; nothing was changed */
    EVENT_OUTCOME_COUNT
};
#define EVENT_REJ_FIRST EVENT_REJ_MISSING_POST
#define EVENT_REJ_LAST  EVENT_REJ_BAD_TS

/* "ok", "dup", "missing_post", ... "cycle", "bad_ts", "nomem"; a static string. */
const char *event_outcome_name(int outcome);

/* Validates raw against DESIGN §2 and fills out. Returns EVENT_OK or a rejection reason.
 * Fields are checked in the order post, actor, ts, parent, kind, actor_type, content, label, each
 * for presence, then type, then length (ts: range, bad_ts); then self_parent. An empty string id
 * counts as missing (post, actor) or as a bad type (parent). Negative integer ids are bad types.
 * A negative ts is bad_ts; so is one past raw->ts_max when that is set. There is no floor: dumps
 * and tests use small historical times (ts 0 is 1970). */
int event_validate(const struct event_raw *raw, struct event *out);

/* The ts_max of a receiver whose clock reads now_ms (ms since the epoch) and that takes events
 * at most max_future_ms ahead of it: now_ms + max_future_ms, saturated, never below 1 (so never
 * the "no bound" 0); 0 when max_future_ms <= 0 (no future check). */
int64_t event_ts_max(int64_t now_ms, int64_t max_future_ms);

static inline const char *event_id_str(const struct event_id *id)
{
    return id->str ? id->str : id->num;
}

static inline int event_has_parent(const struct event *ev)
{
    return ev->parent.len > 0;
}

#endif
