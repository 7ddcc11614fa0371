/* cascade-replay: msgpack dumps, a stream of event maps and/or arrays of them (what the ingest port
 * takes). An event's extent is measured from its headers before msgpack-c sees it, so a huge one,
 * or a header that claims gigabytes, is skipped in constant memory. */
#include "cascade-replay.h"

#include "cascade/mp.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* One msgpack header at p, read by core's scanner and counted the way the walkers below step:
 * the bytes up to the body (head), the body's bytes to pass over, and the values it contains.
 * 1, 0 when more bytes are needed, -1 for the one byte that is never valid (0xc1). */
static int mp_head(const unsigned char *p, size_t avail, size_t *head, uint64_t *body,
                   uint64_t *children)
{
    struct mpscan_head h;
    if (avail < 1)
        return 0;
    int rc = mpscan_head(p, avail, &h);
    if (rc <= 0)
        return rc;
    *head = h.size;
    *body = *children = 0;
    switch (h.kind) {
    case MPSCAN_ARRAY:
        *children = h.n;
        break;
    case MPSCAN_MAP:
        *children = 2 * h.n;
        break;
    case MPSCAN_EXT:
        *body = h.n + 1; /* the ext type byte, then its data */
        break;
    default: /* scalars' value bytes, str and bin data */
        *body = h.n;
        break;
    }
    return 1;
}

/* Bytes of the complete value at p, 0 if it is not all in the buffer yet, -E2BIG if it is over
 * limit, -EBADMSG if malformed. Counting values left rather than recursing: any nesting depth. */
static long mp_extent(const unsigned char *p, size_t avail, size_t limit)
{
    size_t off = 0, head;
    uint64_t left = 1, body, children;
    while (left) {
        int rc = mp_head(p + off, avail - off, &head, &body, &children);
        if (rc < 0)
            return -EBADMSG;
        if (rc == 0)
            return avail >= limit ? -E2BIG : 0;
        if (body > limit || off + head + body > limit)
            return -E2BIG;
        off += head + body;
        left += children - 1;
        if (off > avail)
            return 0;
    }
    return (long)off;
}

static void consume(struct rp_reader *rd, size_t n)
{
    rd->in.start += n;
    rd->offset += n;
}

/* Reads more of the file while skipping: 1, or <0 (the end of the file is a truncation here). */
static int skip_fill(struct rp_reader *rd)
{
    int rc = rp_input_fill(&rd->in);
    if (rc == 0) {
        snprintf(rd->msg, sizeof(rd->msg), "truncated msgpack: the file ends in event %llu",
                 (unsigned long long)rd->line);
        return -EPROTO;
    }
    return rc;
}

/* Skips an over-long event a header at a time, in whatever pieces the file arrives. */
static int skip_big(struct rp_reader *rd)
{
    struct rp_input *in = &rd->in;
    while (rd->skip_left || rd->skip_body) {
        size_t avail = in->end - in->start, head;
        uint64_t body, children;
        int rc;
        if (rd->skip_body) {
            size_t n = avail < rd->skip_body ? avail : (size_t)rd->skip_body;
            consume(rd, n);
            rd->skip_body -= n;
            if (rd->skip_body && (rc = skip_fill(rd)) < 0)
                return rc;
            continue;
        }
        rc = mp_head((const unsigned char *)in->buf + in->start, avail, &head, &body, &children);
        if (rc < 0) {
            snprintf(rd->msg, sizeof(rd->msg), "malformed msgpack at byte %llu",
                     (unsigned long long)rd->offset);
            return -EPROTO;
        }
        if (rc == 0) {
            if ((rc = skip_fill(rd)) < 0)
                return rc;
            continue;
        }
        consume(rd, head);
        rd->skip_body = body;
        rd->skip_left = rd->skip_left - 1 + children;
    }
    return 1;
}

static void obj_to_value(const msgpack_object *o, struct rp_value *v)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        v->type = RV_NIL;
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        v->type = RV_BOOL;
        v->b = o->via.boolean;
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        v->type = RV_UINT;
        v->u = o->via.u64;
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        v->type = RV_NEGINT;
        v->i = o->via.i64;
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        v->type = RV_FLOAT;
        v->d = o->via.f64;
        break;
    case MSGPACK_OBJECT_STR:
        v->type = RV_STR;
        v->s = o->via.str.ptr;
        v->len = o->via.str.size;
        break;
    case MSGPACK_OBJECT_ARRAY:
        v->type = RV_ARRAY;
        break;
    case MSGPACK_OBJECT_MAP:
        v->type = RV_MAP;
        break;
    case MSGPACK_OBJECT_BIN:
        v->type = RV_BIN;
        break;
    case MSGPACK_OBJECT_EXT:
        v->type = RV_EXT;
        v->ext = o->via.ext.type;
        break;
    }
}

/* Decodes the event of size bytes at in->start (complete, within the limit). */
static int decode(struct rp_reader *rd, size_t size, struct rp_record *rec)
{
    const char *p = rd->in.buf + rd->in.start;
    size_t off = 0;
    if (!rd->mp_init) {
        msgpack_unpacked_init(&rd->mp);
        rd->mp_init = 1;
    }
    msgpack_unpack_return ret = msgpack_unpack_next(&rd->mp, p, size, &off);
    consume(rd, size);
    if (ret != MSGPACK_UNPACK_SUCCESS) {
        /* msgpack-c says "no memory" too when a value nests deeper than its 32 levels; at most
         * RP_RECORD_MAX bytes, this event is the likelier culprit than the machine */
        snprintf(rd->msg, sizeof(rd->msg),
                 "msgpack-c cannot decode this event (nested over 32 levels?)");
        return -EBADMSG;
    }
    const msgpack_object *o = &rd->mp.data;
    if (o->type != MSGPACK_OBJECT_MAP) {
        snprintf(rd->msg, sizeof(rd->msg), "not a msgpack map (an event is a map)");
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            continue;
        int k = rp_key_lookup(kv->key.via.str.ptr, kv->key.via.str.size);
        if (k >= 0)
            obj_to_value(&kv->val, &rec->v[k]);
    }
    return 1;
}

/* A top-level array is a batch of events, not an event: step into it. 1 if one was entered. */
static int enter_array(struct rp_reader *rd)
{
    const unsigned char *p = (const unsigned char *)rd->in.buf + rd->in.start;
    size_t avail = rd->in.end - rd->in.start, head;
    uint64_t body, children;
    unsigned c = avail ? p[0] : 0;
    if (!((c >= 0x90 && c <= 0x9f) || c == 0xdc || c == 0xdd))
        return 0;
    if (mp_head(p, avail, &head, &body, &children) <= 0)
        return -EAGAIN; /* the header is not all here yet */
    consume(rd, head);
    rd->array_left = children;
    return 1;
}

/* Reads until the buffer holds a byte: 1, 0 at the end of the file, or <0. */
static int need_byte(struct rp_reader *rd)
{
    while (rd->in.end == rd->in.start) {
        int rc = rp_input_fill(&rd->in);
        if (rc <= 0)
            return rc;
    }
    return 1;
}

static int truncated(struct rp_reader *rd)
{
    snprintf(rd->msg, sizeof(rd->msg), "truncated msgpack: the file ends inside event %llu",
             (unsigned long long)rd->next_line);
    return -EPROTO;
}

/* The next event value at in->start, measured: its size, or <0 (already reported). */
static long next_extent(struct rp_reader *rd)
{
    for (;;) {
        const unsigned char *p = (const unsigned char *)rd->in.buf + rd->in.start;
        long n = mp_extent(p, rd->in.end - rd->in.start, RP_RECORD_MAX);
        if (n != 0)
            return n;
        int rc = rp_input_fill(&rd->in);
        if (rc == 0)
            return truncated(rd);
        if (rc < 0)
            return rc;
    }
}

/* Events are numbered from 1 in each file (rd->line), for messages. */
int rp_msgpack_next(struct rp_reader *rd, struct rp_record *rec)
{
    int rc;
    if ((rd->skip_left || rd->skip_body) && (rc = skip_big(rd)) <= 0)
        return rc;
    for (;;) {
        if ((rc = need_byte(rd)) <= 0)
            return rc == 0 && rd->array_left ? truncated(rd) : rc;
        if (rd->array_left == 0 && (rc = enter_array(rd)) != 0) {
            if (rc == -EAGAIN && (rc = rp_input_fill(&rd->in)) <= 0)
                return rc == 0 ? truncated(rd) : rc;
            continue;
        }
        long n = next_extent(rd);
        if (n < 0 && n != -E2BIG && n != -EBADMSG)
            return (int)n;
        rd->line = rd->next_line++;
        rd->array_left -= rd->array_left > 0;
        if (n == -EBADMSG) {
            snprintf(rd->msg, sizeof(rd->msg), "malformed msgpack at byte %llu",
                     (unsigned long long)rd->offset);
            return -EPROTO;
        }
        if (n == -E2BIG) {
            rd->skip_left = 1;
            snprintf(rd->msg, sizeof(rd->msg), "event larger than %u bytes", RP_RECORD_MAX);
            return -EBADMSG;
        }
        return decode(rd, (size_t)n, rec);
    }
}
