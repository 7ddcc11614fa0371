/* Encoding and bounded decoding of WAL records. One event: a flags byte (kind, actor type,
 * presence of content and label), ts as int64, then post, actor, parent, [content], [label] as
 * varint-length-prefixed bytes. The decoder trusts no length: each is checked against the
 * DESIGN §2 bound and against the bytes left before it is used. */
#include "store/wal_record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"

#define F_KIND_MASK   0x03u
#define F_ATYPE_SHIFT 2
#define F_ATYPE_MASK  0x0Cu
#define F_CONTENT     0x10u
#define F_LABEL       0x20u
#define F_UNKNOWN     0xC0u

static size_t varint_size(uint32_t v)
{
    return v < 0x80 ? 1 : 2; /* every length here is < 2^14 */
}

static int id_ok(const struct event_id *id, uint32_t min)
{
    return id->len >= min && id->len <= EVENT_ID_MAX;
}

size_t walrec_event_size(const struct event *ev)
{
    if (!id_ok(&ev->post, 1) || !id_ok(&ev->actor, 1) || !id_ok(&ev->parent, 0))
        return 0;
    if (ev->kind > EVENT_KIND_REPLY || ev->actor_type > EVENT_ACTOR_PAGE)
        return 0;
    if (ev->content_len > EVENT_CONTENT_MAX || ev->label_len > EVENT_LABEL_MAX)
        return 0;
    size_t n = 1 + 8;
    n += varint_size(ev->post.len) + ev->post.len;
    n += varint_size(ev->actor.len) + ev->actor.len;
    n += varint_size(ev->parent.len) + ev->parent.len;
    if (ev->content)
        n += varint_size(ev->content_len) + ev->content_len;
    if (ev->label)
        n += varint_size(ev->label_len) + ev->label_len;
    return n;
}

static uint8_t *put_bytes(uint8_t *p, const char *s, uint32_t len)
{
    if (len >= 0x80) {
        *p++ = (uint8_t)(len | 0x80);
        *p++ = (uint8_t)(len >> 7);
    } else {
        *p++ = (uint8_t)len;
    }
    if (len)
        memcpy(p, s, len);
    return p + len;
}

uint8_t *walrec_put_event(uint8_t *p, const struct event *ev)
{
    uint8_t flags = (uint8_t)(ev->kind | ev->actor_type << F_ATYPE_SHIFT);
    flags |= ev->content ? F_CONTENT : 0;
    flags |= ev->label ? F_LABEL : 0;
    *p++ = flags;
    uint64_t ts = (uint64_t)ev->ts;
    walrec_put32(p, (uint32_t)ts);
    walrec_put32(p + 4, (uint32_t)(ts >> 32));
    p += 8;
    p = put_bytes(p, event_id_str(&ev->post), ev->post.len);
    p = put_bytes(p, event_id_str(&ev->actor), ev->actor.len);
    p = put_bytes(p, event_id_str(&ev->parent), ev->parent.len);
    if (ev->content)
        p = put_bytes(p, ev->content, ev->content_len);
    if (ev->label)
        p = put_bytes(p, ev->label, ev->label_len);
    return p;
}

void walrec_seal(uint8_t *rec, uint32_t len, uint32_t count)
{
    walrec_put32(rec + WALREC_HDR, count);
    walrec_put32(rec, WALREC_MAGIC << 24 | len);
    walrec_put32(rec + 4, crc32c(0, rec + WALREC_HDR, len));
}

int walrec_header(const uint8_t *hdr, uint32_t *len)
{
    uint32_t word = walrec_get32(hdr);
    *len = word & WALREC_MAX;
    if (word >> 24 != WALREC_MAGIC || *len < WALREC_COUNT)
        return -1;
    return 0;
}

/* A cursor over the payload; every read checks what is left first. */
struct cur {
    const uint8_t *p, *end;
};

static int get_len(struct cur *c, uint32_t max, uint32_t *len)
{
    if (c->p == c->end)
        return -1;
    uint32_t v = *c->p++;
    if (v & 0x80) {
        /* Two bytes at most, and canonical (no zero high byte), so one event has one encoding. */
        if (c->p == c->end || *c->p == 0 || *c->p & 0x80)
            return -1;
        v = (v & 0x7f) | (uint32_t)*c->p++ << 7;
    }
    if (v > max)
        return -1;
    *len = v;
    return 0;
}

static int get_str(struct cur *c, uint32_t min, uint32_t max, const char **s, uint32_t *len)
{
    if (get_len(c, max, len) < 0 || *len < min || (size_t)(c->end - c->p) < *len)
        return -1;
    *s = (const char *)c->p;
    c->p += *len;
    return 0;
}

static int get_id(struct cur *c, uint32_t min, struct event_id *id)
{
    return get_str(c, min, EVENT_ID_MAX, &id->str, &id->len);
}

static int get_event(struct cur *c, struct event *ev)
{
    memset(ev, 0, sizeof(*ev));
    if (c->end - c->p < 9)
        return -1;
    uint8_t flags = *c->p++;
    ev->kind = flags & F_KIND_MASK;
    ev->actor_type = (flags & F_ATYPE_MASK) >> F_ATYPE_SHIFT;
    if ((flags & F_UNKNOWN) || ev->actor_type > EVENT_ACTOR_PAGE)
        return -1;
    ev->ts = (int64_t)((uint64_t)walrec_get32(c->p) | (uint64_t)walrec_get32(c->p + 4) << 32);
    c->p += 8;
    if (get_id(c, 1, &ev->post) < 0 || get_id(c, 1, &ev->actor) < 0 ||
        get_id(c, 0, &ev->parent) < 0)
        return -1;
    uint32_t len;
    if (flags & F_CONTENT) {
        if (get_str(c, 0, EVENT_CONTENT_MAX, &ev->content, &len) < 0)
            return -1;
        ev->content_len = (uint16_t)len;
    }
    if (flags & F_LABEL) {
        if (get_str(c, 0, EVENT_LABEL_MAX, &ev->label, &len) < 0)
            return -1;
        ev->label_len = (uint8_t)len;
    }
    return 0;
}

static int reserve(struct event **evs, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    size_t want = *cap ? *cap : 256;
    while (want < n)
        want *= 2;
    struct event *e = realloc(*evs, want * sizeof(*e));
    if (!e)
        return -ENOMEM;
    *evs = e;
    *cap = want;
    return 0;
}

uint8_t *walrec_put_pos(uint8_t *p, const struct walrec_pos *pos, size_t n)
{
    *p++ = (uint8_t)n;
    *p++ = (uint8_t)(n >> 8);
    for (size_t i = 0; i < n; i++, p += WALREC_POS_SIZE) {
        walrec_put32(p, pos[i].partition);
        walrec_put32(p + 4, (uint32_t)pos[i].seq);
        walrec_put32(p + 8, (uint32_t)(pos[i].seq >> 32));
    }
    return p;
}

int walrec_count_fits(uint32_t count, uint32_t len)
{
    if (len < WALREC_COUNT)
        return 0;
    if (count & WALREC_POS_FLAG) /* a position trailer of at least one position follows */
        return len >= WALREC_COUNT + 2 + WALREC_POS_SIZE &&
               (count & ~WALREC_POS_FLAG) <= (len - WALREC_COUNT - 2 - WALREC_POS_SIZE) /
                                                   WALREC_EVENT_MIN;
    return count != 0 && count <= (len - WALREC_COUNT) / WALREC_EVENT_MIN;
}

int walrec_decode_pos(const uint8_t *hdr, const uint8_t *p, uint32_t len, struct event **evs,
                      size_t *cap, size_t *n, struct walrec_pos *pos, size_t *npos)
{
    if (len < WALREC_COUNT || crc32c(0, p, len) != walrec_get32(hdr + 4))
        return WALREC_BAD;
    uint32_t word = walrec_get32(p), count = word & ~WALREC_POS_FLAG;
    /* The count must fit the bytes: bounds the allocation by the record, never by the claim. */
    if (!walrec_count_fits(word, len))
        return WALREC_BAD;
    int rc = reserve(evs, cap, count ? count : 1);
    if (rc < 0)
        return rc;
    struct cur c = {p + WALREC_COUNT, p + len};
    for (uint32_t i = 0; i < count; i++)
        if (get_event(&c, &(*evs)[i]) < 0)
            return WALREC_BAD;
    size_t np = 0;
    if (word & WALREC_POS_FLAG) {
        if (c.end - c.p < 2)
            return WALREC_BAD;
        np = (size_t)c.p[0] | (size_t)c.p[1] << 8;
        c.p += 2;
        if (np == 0 || np > WALREC_POS_MAX || (size_t)(c.end - c.p) != np * WALREC_POS_SIZE)
            return WALREC_BAD;
        for (size_t i = 0; pos && i < np; i++) {
            const uint8_t *q = c.p + i * WALREC_POS_SIZE;
            pos[i].partition = walrec_get32(q);
            pos[i].seq = (uint64_t)walrec_get32(q + 4) | (uint64_t)walrec_get32(q + 8) << 32;
        }
        c.p = c.end;
    }
    if (c.p != c.end)
        return WALREC_BAD; /* trailing bytes: not what the encoder writes */
    *n = count;
    if (npos)
        *npos = np;
    return 0;
}

int walrec_decode(const uint8_t *hdr, const uint8_t *p, uint32_t len, struct event **evs,
                  size_t *cap, size_t *n)
{
    return walrec_decode_pos(hdr, p, len, evs, cap, n, NULL, NULL);
}
