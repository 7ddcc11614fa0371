/* The wire's messages (see cascade/proto.h): events, acks and fatals on the ingest port, the
 * msgpack-RPC envelope on the query port. Encoders and parsers sit side by side so that what
 * one writes is what the other reads; parsers trust nothing in the object they are given. */
#include "cascade/proto.h"

#include "cascade/mp.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* msgpack-c's pack functions return the write callback's result: nonzero when it failed. */
static int pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);
    return msgpack_pack_str(pk, len) || msgpack_pack_str_body(pk, s, len) ? -ENOMEM : 0;
}

/* ------------------------------------------------------------------ events */

static const char *const key_names[PROTO_EV_NKEYS] = {
    [PROTO_EV_POST] = "post",       [PROTO_EV_ACTOR] = "actor",
    [PROTO_EV_TS] = "ts",           [PROTO_EV_PARENT] = "parent",
    [PROTO_EV_KIND] = "kind",       [PROTO_EV_ACTOR_TYPE] = "actor_type",
    [PROTO_EV_CONTENT] = "content", [PROTO_EV_LABEL] = "label",
};

const char *proto_event_key_name(int key)
{
    return key >= 0 && key < PROTO_EV_NKEYS ? key_names[key] : "?";
}

int proto_event_key_lookup(const char *s, size_t len)
{
    for (int k = 0; k < PROTO_EV_NKEYS; k++)
        if (strlen(key_names[k]) == len && memcmp(key_names[k], s, len) == 0)
            return k;
    return -1;
}

struct event_field *proto_event_field(struct event_raw *raw, int key)
{
    struct event_field *f[PROTO_EV_NKEYS] = {
        [PROTO_EV_POST] = &raw->post,       [PROTO_EV_ACTOR] = &raw->actor,
        [PROTO_EV_TS] = &raw->ts,           [PROTO_EV_PARENT] = &raw->parent,
        [PROTO_EV_KIND] = &raw->kind,       [PROTO_EV_ACTOR_TYPE] = &raw->actor_type,
        [PROTO_EV_CONTENT] = &raw->content, [PROTO_EV_LABEL] = &raw->label,
    };
    return f[key];
}

static int pack_field(msgpack_packer *pk, const struct event_field *f)
{
    switch (f->type) {
    case EVF_NIL:
        return msgpack_pack_nil(pk);
    case EVF_UINT:
        return msgpack_pack_uint64(pk, f->u);
    case EVF_NEGINT:
        return msgpack_pack_int64(pk, f->i);
    case EVF_STR: /* an empty str may come with a NULL pointer: no body to copy */
        return msgpack_pack_str(pk, f->len) ||
               (f->len && msgpack_pack_str_body(pk, f->str, f->len));
    default:
        return msgpack_pack_false(pk);
    }
}

int proto_event_pack(msgpack_packer *pk, const struct event_raw *raw)
{
    struct event_raw *r = (struct event_raw *)raw; /* proto_event_field only reads through it */
    size_t n = 0;
    for (int k = 0; k < PROTO_EV_NKEYS; k++)
        n += proto_event_field(r, k)->type != EVF_ABSENT;
    if (msgpack_pack_map(pk, n))
        return -ENOMEM;
    for (int k = 0; k < PROTO_EV_NKEYS; k++) {
        const struct event_field *f = proto_event_field(r, k);
        if (f->type == EVF_ABSENT)
            continue;
        if (pack_cstr(pk, key_names[k]) || pack_field(pk, f))
            return -ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------------ ingest replies */

int proto_ack_pack(msgpack_packer *pk, uint64_t ok, uint64_t dup, uint64_t rej,
                   const char *const *errs, uint32_t nerr)
{
    uint32_t k = nerr < PROTO_ACK_ERR_MAX ? nerr : PROTO_ACK_ERR_MAX;
    int bad = msgpack_pack_map(pk, 4) || pack_cstr(pk, "ok") || msgpack_pack_uint64(pk, ok) ||
              pack_cstr(pk, "dup") || msgpack_pack_uint64(pk, dup) || pack_cstr(pk, "rej") ||
              msgpack_pack_uint64(pk, rej) || pack_cstr(pk, "err") || msgpack_pack_array(pk, k);
    for (uint32_t i = nerr - k; !bad && i < nerr; i++)
        bad = pack_cstr(pk, errs[i]);
    return bad ? -ENOMEM : 0;
}

int proto_ack_err_format(char *buf, size_t len, uint64_t event, const char *reason)
{
    return snprintf(buf, len, "event %" PRIu64 ": %s", event, reason);
}

int proto_ack_err_parse(const msgpack_object *e, uint64_t *event, char *reason, size_t rlen)
{
    static const char pre[] = "event ";
    if (e->type != MSGPACK_OBJECT_STR || rlen == 0)
        return -EPROTO;
    const char *p = e->via.str.ptr, *end = p + e->via.str.size;
    if ((size_t)(end - p) < sizeof(pre) - 1 || memcmp(p, pre, sizeof(pre) - 1) != 0)
        return -EPROTO;
    p += sizeof(pre) - 1;
    uint64_t n = 0;
    const char *digits = p;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - 9) / 10)
            return -EPROTO;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    if (p == digits || end - p < 2 || p[0] != ':' || p[1] != ' ')
        return -EPROTO;
    p += 2;
    size_t len = (size_t)(end - p) < rlen - 1 ? (size_t)(end - p) : rlen - 1;
    memcpy(reason, p, len);
    reason[len] = '\0';
    *event = n;
    return 0;
}

int proto_fatal_pack(msgpack_packer *pk, const char *msg, const uint64_t *resend_from)
{
    int bad =
        msgpack_pack_map(pk, resend_from ? 2 : 1) || pack_cstr(pk, "fatal") || pack_cstr(pk, msg);
    if (!bad && resend_from)
        bad = pack_cstr(pk, "resend_from") || msgpack_pack_uint64(pk, *resend_from);
    return bad ? -ENOMEM : 0;
}

static int get_count(const msgpack_object *m, const char *key, uint64_t *out)
{
    const msgpack_object *v = mp_map_get(m, key);
    if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return -1;
    *out = v->via.u64;
    return 0;
}

enum proto_reply proto_reply_parse(const msgpack_object *o, struct proto_ack *ack,
                                   struct proto_fatal *fatal)
{
    struct proto_ack a = {0};
    struct proto_fatal f = {.msg = "?", .msg_len = 1};
    if (o->type != MSGPACK_OBJECT_MAP)
        return PROTO_REPLY_BAD;
    const msgpack_object *v = mp_map_get(o, "fatal");
    if (v) {
        if (v->type == MSGPACK_OBJECT_STR) {
            f.msg = v->via.str.ptr;
            f.msg_len = v->via.str.size;
        }
        f.has_resend = get_count(o, "resend_from", &f.resend_from) == 0;
        if (fatal)
            *fatal = f;
        return PROTO_REPLY_FATAL;
    }
    if (get_count(o, "ok", &a.ok) || get_count(o, "dup", &a.dup) || get_count(o, "rej", &a.rej))
        return PROTO_REPLY_BAD;
    v = mp_map_get(o, "err");
    a.err = v && v->type == MSGPACK_OBJECT_ARRAY ? v : NULL;
    if (ack)
        *ack = a;
    return PROTO_REPLY_ACK;
}

/* ------------------------------------------------------------------ msgpack-RPC */

int proto_rpc_request_pack(msgpack_packer *pk, uint64_t msgid, const char *method, size_t mlen,
                           uint32_t nparams)
{
    return msgpack_pack_array(pk, 4) || msgpack_pack_uint8(pk, 0) ||
                   msgpack_pack_uint64(pk, msgid) || msgpack_pack_str(pk, mlen) ||
                   msgpack_pack_str_body(pk, method, mlen) || msgpack_pack_array(pk, 1) ||
                   msgpack_pack_map(pk, nparams)
               ? -ENOMEM
               : 0;
}

static int pack_msgid(msgpack_packer *pk, const msgpack_object *msgid)
{
    return msgid ? msgpack_pack_object(pk, *msgid) : msgpack_pack_nil(pk);
}

int proto_rpc_response_head(msgpack_packer *pk, const msgpack_object *msgid)
{
    return msgpack_pack_array(pk, 4) || msgpack_pack_uint8(pk, 1) || pack_msgid(pk, msgid) ||
                   msgpack_pack_nil(pk)
               ? -ENOMEM
               : 0;
}

int proto_rpc_error_pack(msgpack_packer *pk, const msgpack_object *msgid, unsigned code,
                         const char *msg)
{
    return msgpack_pack_array(pk, 4) || msgpack_pack_uint8(pk, 1) || pack_msgid(pk, msgid) ||
                   msgpack_pack_map(pk, 2) || pack_cstr(pk, "code") ||
                   msgpack_pack_uint64(pk, code) || pack_cstr(pk, "message") ||
                   pack_cstr(pk, msg) || msgpack_pack_nil(pk)
               ? -ENOMEM
               : 0;
}

int proto_rpc_response_parse(const msgpack_object *o, struct proto_rpc_response *r)
{
    memset(r, 0, sizeof(*r));
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4 ||
        o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o->via.array.ptr[0].via.u64 != 1)
        return -EPROTO;
    const msgpack_object *a = o->via.array.ptr;
    if (a[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        r->has_id = 1;
        r->msgid = a[1].via.u64;
    }
    r->result = &a[3];
    if (a[2].type == MSGPACK_OBJECT_NIL)
        return 0;
    r->error = &a[2];
    const msgpack_object *code = mp_map_get_typed(&a[2], "code", MSGPACK_OBJECT_POSITIVE_INTEGER);
    const msgpack_object *msg = mp_map_get_typed(&a[2], "message", MSGPACK_OBJECT_STR);
    r->code = code ? code->via.u64 : 0;
    if (msg) {
        r->message = msg->via.str.ptr;
        r->message_len = msg->via.str.size;
    }
    return 0;
}
