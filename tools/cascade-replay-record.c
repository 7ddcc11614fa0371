/* cascade-replay: one event as read from any dump format, turned into the event_raw that the
 * project's own event_validate checks (--dry-run) or that proto_event_pack sends to cascaded.
 * Types are kept as read, so that the server judges exactly what the dump said: a value of a type
 * event_raw does not tell apart (float, bool, bin, ...) goes as one the server rejects alike. */
#include "cascade-replay.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* The record's keys are proto's (RK_* == PROTO_EV_*: cascade-replay.h checks it). */
int rp_key_lookup(const char *s, size_t len)
{
    int k = proto_event_key_lookup(s, len);
    if (k < 0 && len == 4 && memcmp(s, "root", 4) == 0)
        k = RK_ROOT;
    return k;
}

const char *rp_key_name(int key)
{
    return key == RK_ROOT ? "root" : proto_event_key_name(key);
}

/* keep: strings longer than this are cut to it (the wire form), or 0 (as read). */
static void value_to_field(const struct rp_value *v, struct event_field *f, uint32_t keep)
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
        f->len = keep && v->len > keep ? keep : v->len;
        break;
    default:
        f->type = EVF_OTHER;
        break;
    }
}

static void to_raw(const struct rp_record *r, struct event_raw *raw, uint32_t keep)
{
    for (int k = 0; k < RK_COUNT; k++)
        value_to_field(&r->v[k], proto_event_field(raw, k), keep);
    raw->ts_max = 0; /* no server clock here: only a negative ts is bad_ts */
}

void rp_record_to_raw(const struct rp_record *r, struct event_raw *raw)
{
    to_raw(r, raw, 0);
}

void rp_record_to_wire(const struct rp_record *r, struct event_raw *raw)
{
    to_raw(r, raw, RP_STR_KEEP);
}

int rp_record_pack(const struct rp_record *r, msgpack_packer *pk)
{
    struct event_raw raw;
    rp_record_to_wire(r, &raw);
    return proto_event_pack(pk, &raw);
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
