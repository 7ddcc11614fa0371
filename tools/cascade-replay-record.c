/* cascade-replay: one event as read from any dump format, turned into the event_raw that the
 * project's own event_validate checks (--dry-run) or into the msgpack map sent to cascaded.
 * Types are kept as read, so that the server judges exactly what the dump said. */
#include "cascade-replay.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const key_names[RK_COUNT] = {
    [RK_POST] = "post",       [RK_ACTOR] = "actor", [RK_TS] = "ts",
    [RK_PARENT] = "parent",   [RK_KIND] = "kind",   [RK_ACTOR_TYPE] = "actor_type",
    [RK_CONTENT] = "content", [RK_LABEL] = "label",
};

int rp_key_lookup(const char *s, size_t len)
{
    for (int k = 0; k < RK_COUNT; k++) {
        if (strlen(key_names[k]) == len && memcmp(key_names[k], s, len) == 0)
            return k;
    }
    return -1;
}

const char *rp_key_name(int key)
{
    return key >= 0 && key < RK_COUNT ? key_names[key] : "?";
}

static void value_to_field(const struct rp_value *v, struct event_field *f)
{
    memset(f, 0, sizeof(*f));
    switch (v->type) {
    case RV_ABSENT:
        f->type = EVF_ABSENT;
        break;
    case RV_NIL:
        f->type = EVF_NIL;
        break;
    case RV_UINT:
        f->type = EVF_UINT;
        f->u = v->u;
        break;
    case RV_NEGINT:
        f->type = EVF_NEGINT;
        f->i = v->i;
        break;
    case RV_STR:
        f->type = EVF_STR;
        f->str = v->s;
        f->len = v->len;
        break;
    default:
        f->type = EVF_OTHER;
        break;
    }
}

void rp_record_to_raw(const struct rp_record *r, struct event_raw *raw)
{
    struct event_field *f[RK_COUNT] = {
        [RK_POST] = &raw->post,       [RK_ACTOR] = &raw->actor, [RK_TS] = &raw->ts,
        [RK_PARENT] = &raw->parent,   [RK_KIND] = &raw->kind,   [RK_ACTOR_TYPE] = &raw->actor_type,
        [RK_CONTENT] = &raw->content, [RK_LABEL] = &raw->label,
    };
    for (int k = 0; k < RK_COUNT; k++)
        value_to_field(&r->v[k], f[k]);
    raw->ts_max = 0; /* no server clock here: only a negative ts is bad_ts */
}

static int pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    if (msgpack_pack_str(pk, len))
        return -ENOMEM;
    return msgpack_pack_str_body(pk, s, len) ? -ENOMEM : 0;
}

/* Containers, bin and ext go as empty ones of the same type: the server rejects them as bad_type
 * whatever they hold, and an empty one cannot break its limits on nesting and sizes. */
static int pack_value(msgpack_packer *pk, const struct rp_value *v)
{
    switch (v->type) {
    case RV_NIL:
        return msgpack_pack_nil(pk);
    case RV_UINT:
        return msgpack_pack_uint64(pk, v->u);
    case RV_NEGINT:
        return msgpack_pack_int64(pk, v->i);
    case RV_STR:
        return pack_str(pk, v->s, v->len < RP_STR_KEEP ? v->len : RP_STR_KEEP);
    case RV_FLOAT:
        return msgpack_pack_double(pk, v->d);
    case RV_BOOL:
        return v->b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case RV_ARRAY:
        return msgpack_pack_array(pk, 0);
    case RV_MAP:
        return msgpack_pack_map(pk, 0);
    case RV_BIN:
        return msgpack_pack_bin(pk, 0);
    case RV_EXT:
        return msgpack_pack_ext(pk, 0, v->ext);
    default:
        return 0;
    }
}

int rp_record_pack(const struct rp_record *r, msgpack_packer *pk)
{
    size_t n = 0;
    for (int k = 0; k < RK_COUNT; k++)
        n += r->v[k].type != RV_ABSENT;
    if (msgpack_pack_map(pk, n))
        return -ENOMEM;
    for (int k = 0; k < RK_COUNT; k++) {
        if (r->v[k].type == RV_ABSENT)
            continue;
        if (pack_str(pk, key_names[k], strlen(key_names[k])) || pack_value(pk, &r->v[k]))
            return -ENOMEM;
    }
    return 0;
}

int rp_value_id(const struct rp_value *v, char num[24], const char **s, size_t *len)
{
    if (v->type == RV_UINT) {
        *len = (size_t)snprintf(num, 24, "%" PRIu64, v->u);
        *s = num;
        return 1;
    }
    if (v->type == RV_STR && v->len > 0) {
        *s = v->s;
        *len = v->len;
        return 1;
    }
    return 0;
}

int rp_record_ts(const struct rp_record *r, int64_t *ts)
{
    const struct rp_value *v = &r->v[RK_TS];
    if (v->type == RV_UINT && v->u <= (uint64_t)INT64_MAX) {
        *ts = (int64_t)v->u;
        return 1;
    }
    if (v->type == RV_NEGINT) {
        *ts = v->i;
        return 1;
    }
    return 0;
}
