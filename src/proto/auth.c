/* --auth-token-file: the shared secret and the first message of each port (see cascade/proto.h).
 * The comparison never exits early, so that the time of a wrong guess says nothing about how much
 * of it was right. */
#include "cascade/proto.h"

#include "cascade/mp.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int load_fail(char *err, size_t errlen, int rc, const char *path, const char *why)
{
    snprintf(err, errlen, "--auth-token-file %s: %s", path, why);
    return rc;
}

int proto_auth_token_load(const char *path, char **out, int *loose, char *err, size_t errlen)
{
    char buf[PROTO_AUTH_TOKEN_MAX + 64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return load_fail(err, errlen, -errno, path, strerror(errno));
    struct stat st;
    ssize_t n = fstat(fd, &st) == 0 ? read(fd, buf, sizeof(buf)) : -1;
    int saved = errno;
    close(fd);
    if (n < 0)
        return load_fail(err, errlen, -saved, path, strerror(saved));
    if ((size_t)n == sizeof(buf))
        return load_fail(err, errlen, -EINVAL, path, "longer than 1024 bytes");
    size_t lo = 0, hi = (size_t)n;
    while (lo < hi && isspace((unsigned char)buf[lo]))
        lo++;
    while (hi > lo && isspace((unsigned char)buf[hi - 1]))
        hi--;
    if (hi - lo < PROTO_AUTH_TOKEN_MIN)
        return load_fail(err, errlen, -EINVAL, path,
                         "the token is shorter than 16 bytes (e.g. `openssl rand -hex 32`)");
    if (hi - lo > PROTO_AUTH_TOKEN_MAX)
        return load_fail(err, errlen, -EINVAL, path, "longer than 1024 bytes");
    for (size_t i = lo; i < hi; i++)
        if (!isgraph((unsigned char)buf[i]))
            return load_fail(err, errlen, -EINVAL, path,
                             "the token must be printable ASCII without spaces");
    char *t = malloc(hi - lo + 1);
    if (!t)
        return load_fail(err, errlen, -ENOMEM, path, "out of memory");
    memcpy(t, buf + lo, hi - lo);
    t[hi - lo] = '\0';
    *out = t;
    *loose = (st.st_mode & (S_IRWXG | S_IRWXO)) != 0;
    return 0;
}

int proto_auth_token_equal(const char *want, size_t wlen, const char *got, size_t glen)
{
    volatile unsigned char diff = (unsigned char)(wlen != glen);
    for (size_t i = 0; i < wlen; i++)
        diff |= (unsigned char)(want[i] ^ (i < glen ? got[i] : (char)~want[i]));
    return diff == 0;
}

enum proto_auth_result proto_auth_ingest_prefix(const char *buf, size_t len, const char *token,
                                                size_t tlen, size_t *used)
{
    const unsigned char *b = (const unsigned char *)buf;
    struct mpscan_head h;
    size_t off = 0;
    /* a map of one pair, whose key is the str "auth" */
    int r = len ? mpscan_head(b, len, &h) : 0;
    if (r <= 0)
        return r < 0 ? PROTO_AUTH_MISSING : PROTO_AUTH_MORE;
    if (h.kind != MPSCAN_MAP || h.n != 1)
        return PROTO_AUTH_MISSING;
    off = h.size;
    r = len > off ? mpscan_head(b + off, len - off, &h) : 0;
    if (r <= 0)
        return r < 0 ? PROTO_AUTH_MISSING : PROTO_AUTH_MORE;
    if (h.kind != MPSCAN_STR || h.n != 4)
        return PROTO_AUTH_MISSING;
    off += h.size;
    size_t k = len - off < 4 ? len - off : 4;
    if (memcmp(b + off, "auth", k) != 0)
        return PROTO_AUTH_MISSING;
    if (k < 4)
        return PROTO_AUTH_MORE;
    off += 4;
    /* its value, the token */
    r = len > off ? mpscan_head(b + off, len - off, &h) : 0;
    if (r == 0)
        return PROTO_AUTH_MORE;
    if (r < 0 || h.kind != MPSCAN_STR || h.n > PROTO_AUTH_TOKEN_MAX)
        return PROTO_AUTH_WRONG; /* not a str, or longer than any token */
    off += h.size;
    if (len - off < h.n)
        return PROTO_AUTH_MORE;
    *used = off + h.n;
    return proto_auth_token_equal(token, tlen, buf + off, h.n) ? PROTO_AUTH_OK : PROTO_AUTH_WRONG;
}

static int obj_is(const msgpack_object *o, const char *s)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

enum proto_auth_result proto_auth_rpc_request(const msgpack_object *req, const char *token,
                                              size_t tlen, uint64_t *msgid)
{
    *msgid = 0;
    if (req->type != MSGPACK_OBJECT_ARRAY || req->via.array.size != 4)
        return PROTO_AUTH_MISSING;
    const msgpack_object *a = req->via.array.ptr;
    if (a[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *msgid = a[1].via.u64;
    if (!obj_is(&a[2], "auth"))
        return PROTO_AUTH_MISSING;
    if (a[3].type != MSGPACK_OBJECT_ARRAY || a[3].via.array.size != 1 ||
        a[3].via.array.ptr[0].type != MSGPACK_OBJECT_MAP)
        return PROTO_AUTH_WRONG;
    const msgpack_object *t = mp_map_get_typed(&a[3].via.array.ptr[0], "token", MSGPACK_OBJECT_STR);
    return t && proto_auth_token_equal(token, tlen, t->via.str.ptr, t->via.str.size)
               ? PROTO_AUTH_OK
               : PROTO_AUTH_WRONG;
}

void proto_auth_pack_ingest(msgpack_packer *pk, const char *token)
{
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "auth", 4);
    msgpack_pack_str_with_body(pk, token, strlen(token));
}

void proto_auth_pack_rpc(msgpack_packer *pk, uint64_t msgid, const char *token)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint64(pk, msgid);
    msgpack_pack_str_with_body(pk, "auth", 4);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "token", 5);
    msgpack_pack_str_with_body(pk, token, strlen(token));
}

void proto_auth_pack_rpc_ok(msgpack_packer *pk, uint64_t msgid)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_uint64(pk, msgid);
    msgpack_pack_nil(pk);
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "authenticated", 13);
    msgpack_pack_true(pk);
}

const char *proto_auth_bearer(const char *value, size_t len, size_t *tok_len)
{
    *tok_len = 0;
    while (len && (*value == ' ' || *value == '\t'))
        value++, len--;
    if (len < 7 || strncasecmp(value, "bearer ", 7) != 0)
        return NULL;
    value += 7;
    len -= 7;
    while (len && (*value == ' ' || *value == '\t'))
        value++, len--;
    while (len && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    *tok_len = len;
    return len ? value : NULL;
}
