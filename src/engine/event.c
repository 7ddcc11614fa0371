/* Validation of share events against DESIGN §2: presence, types, lengths and ranges of every
 * key, with integer ids turned into their decimal strings so that 123 and "123" are one id. */
#include "cascade/event.h"

#include <stdio.h>
#include <string.h>

static const char *const outcome_names[EVENT_OUTCOME_COUNT] = {
    [EVENT_OK] = "ok",
    [EVENT_DUP] = "dup",
    [EVENT_REJ_MISSING_POST] = "missing_post",
    [EVENT_REJ_MISSING_ACTOR] = "missing_actor",
    [EVENT_REJ_MISSING_TS] = "missing_ts",
    [EVENT_REJ_BAD_TYPE] = "bad_type",
    [EVENT_REJ_TOO_LONG] = "too_long",
    [EVENT_REJ_SELF_PARENT] = "self_parent",
    [EVENT_REJ_CYCLE] = "cycle",
    [EVENT_REJ_BAD_TS] = "bad_ts",
    [EVENT_ERR_NOMEM] = "nomem",
};

const char *event_outcome_name(int outcome)
{
    if (outcome < 0 || outcome >= EVENT_OUTCOME_COUNT)
        return "unknown";
    return outcome_names[outcome];
}

/* An id field: a string of 1..EVENT_ID_MAX bytes or an unsigned integer. `missing` is the
 * reason for an absent (or, for required ids, nil or empty) value. */
static int take_id(const struct event_field *f, struct event_id *id, int missing)
{
    memset(id, 0, sizeof(*id));
    switch (f->type) {
    case EVF_ABSENT:
    case EVF_NIL:
        return missing;
    case EVF_UINT:
        id->len = (uint32_t)snprintf(id->num, sizeof(id->num), "%llu", (unsigned long long)f->u);
        return EVENT_OK;
    case EVF_STR:
        if (f->len == 0)
            return missing;
        if (f->len > EVENT_ID_MAX)
            return EVENT_REJ_TOO_LONG;
        id->str = f->str;
        id->len = f->len;
        return EVENT_OK;
    default:
        return EVENT_REJ_BAD_TYPE;
    }
}

/* A ts past ts_max (one in microseconds, say) would become the newest ts: retention would evict
 * everything before it and growth windows would end there. A negative one is no time a share
 * was made at, and first_ts..last_ts spans could overflow. */
static int take_ts(const struct event_field *f, int64_t ts_max, int64_t *ts)
{
    uint64_t u;
    switch (f->type) {
    case EVF_ABSENT:
    case EVF_NIL:
        return EVENT_REJ_MISSING_TS;
    case EVF_UINT:
        if (f->u > (uint64_t)INT64_MAX)
            return EVENT_REJ_BAD_TYPE;
        u = f->u;
        break;
    case EVF_NEGINT:
        if (f->i < 0)
            return EVENT_REJ_BAD_TS;
        u = (uint64_t)f->i;
        break;
    default:
        return EVENT_REJ_BAD_TYPE;
    }
    if (ts_max > 0 && u > (uint64_t)ts_max)
        return EVENT_REJ_BAD_TS;
    *ts = (int64_t)u;
    return EVENT_OK;
}

int64_t event_ts_max(int64_t now_ms, int64_t max_future_ms)
{
    if (max_future_ms <= 0)
        return 0;
    if (now_ms < 1)
        now_ms = 1;
    return now_ms > INT64_MAX - max_future_ms ? INT64_MAX : now_ms + max_future_ms;
}

/* An optional string of at most max bytes; absent and nil leave *s NULL. */
static int take_str(const struct event_field *f, uint32_t max, const char **s, uint32_t *len)
{
    *s = NULL;
    *len = 0;
    if (f->type == EVF_ABSENT || f->type == EVF_NIL)
        return EVENT_OK;
    if (f->type != EVF_STR)
        return EVENT_REJ_BAD_TYPE;
    if (f->len > max)
        return EVENT_REJ_TOO_LONG;
    *s = f->str;
    *len = f->len;
    return EVENT_OK;
}

/* An optional enum spelled as one of names[0..n); absent/nil gives -1. */
static int take_enum(const struct event_field *f, const char *const *names, int n, int *out)
{
    *out = -1;
    if (f->type == EVF_ABSENT || f->type == EVF_NIL)
        return EVENT_OK;
    if (f->type != EVF_STR)
        return EVENT_REJ_BAD_TYPE;
    for (int i = 0; i < n; i++) {
        if (strlen(names[i]) == f->len && memcmp(names[i], f->str, f->len) == 0) {
            *out = i;
            return EVENT_OK;
        }
    }
    return EVENT_REJ_BAD_TYPE;
}

static int take_parent(const struct event_field *f, struct event_id *id)
{
    if (f->type == EVF_ABSENT || f->type == EVF_NIL) {
        memset(id, 0, sizeof(*id));
        return EVENT_OK;
    }
    int rc = take_id(f, id, EVENT_REJ_BAD_TYPE);
    return rc;
}

static int same_id(const struct event_id *a, const struct event_id *b)
{
    return a->len == b->len && memcmp(event_id_str(a), event_id_str(b), a->len) == 0;
}

static int take_options(const struct event_raw *raw, struct event *ev)
{
    static const char *const kinds[] = {"post", "share", "quote", "reply"};
    static const char *const types[] = {"account", "page"};
    int kind, type, rc;
    uint32_t clen, llen;

    if ((rc = take_enum(&raw->kind, kinds, 4, &kind)))
        return rc;
    if ((rc = take_enum(&raw->actor_type, types, 2, &type)))
        return rc;
    if ((rc = take_str(&raw->content, EVENT_CONTENT_MAX, &ev->content, &clen)))
        return rc;
    if ((rc = take_str(&raw->label, EVENT_LABEL_MAX, &ev->label, &llen)))
        return rc;
    ev->content_len = (uint16_t)clen;
    ev->label_len = (uint8_t)llen;
    if (kind < 0)
        kind = event_has_parent(ev) ? EVENT_KIND_SHARE : EVENT_KIND_POST;
    ev->kind = (uint8_t)kind;
    ev->actor_type = (uint8_t)(type < 0 ? EVENT_ACTOR_UNSPECIFIED : type + 1);
    return EVENT_OK;
}

int event_validate(const struct event_raw *raw, struct event *ev)
{
    int rc;
    memset(ev, 0, sizeof(*ev));
    if ((rc = take_id(&raw->post, &ev->post, EVENT_REJ_MISSING_POST)))
        return rc;
    if ((rc = take_id(&raw->actor, &ev->actor, EVENT_REJ_MISSING_ACTOR)))
        return rc;
    if ((rc = take_ts(&raw->ts, raw->ts_max, &ev->ts)))
        return rc;
    if ((rc = take_parent(&raw->parent, &ev->parent)))
        return rc;
    if ((rc = take_options(raw, ev)))
        return rc;
    if (event_has_parent(ev) && same_id(&ev->post, &ev->parent))
        return EVENT_REJ_SELF_PARENT;
    return EVENT_OK;
}
