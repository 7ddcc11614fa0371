/* proto/auth: the token file's checks, the constant-time comparison, the ingest prefix
 * {"auth": TOKEN} fed a byte at a time and in its other str encodings (str8, 16 and 32), the
 * RPC auth request, and Bearer headers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cascade/proto.h"

#define TOKEN "0123456789abcdef-token"

static void test_equal(void **state)
{
    (void)state;
    size_t n = strlen(TOKEN);
    assert_true(proto_auth_token_equal(TOKEN, n, TOKEN, n));
    assert_false(proto_auth_token_equal(TOKEN, n, TOKEN, n - 1));
    assert_false(proto_auth_token_equal(TOKEN, n - 1, TOKEN, n));
    assert_false(proto_auth_token_equal(TOKEN, n, "0123456789abcdef-tokeN", n));
    assert_false(proto_auth_token_equal(TOKEN, n, "", 0));
    char longer[64];
    snprintf(longer, sizeof(longer), "%sX", TOKEN);
    assert_false(proto_auth_token_equal(TOKEN, n, longer, n + 1));
}

/* The map {"auth": TOKEN} with the token's str header in the given form, then "tail". */
static size_t auth_map(unsigned char *out, int form, const char *token)
{
    size_t n = strlen(token), o = 0;
    const unsigned char head[] = {0x81, 0xa4, 'a', 'u', 't', 'h'};
    memcpy(out, head, sizeof(head));
    o = sizeof(head);
    if (form == 0) {
        out[o++] = (unsigned char)(0xa0 | n);
    } else if (form == 1) {
        out[o++] = 0xd9;
        out[o++] = (unsigned char)n;
    } else if (form == 2) {
        out[o++] = 0xda;
        out[o++] = 0;
        out[o++] = (unsigned char)n;
    } else {
        memcpy(out + o, "\xdb\0\0\0", 4);
        o += 4;
        out[o++] = (unsigned char)n;
    }
    memcpy(out + o, token, n);
    o += n;
    memcpy(out + o, "tail", 4);
    return o;
}

static void test_ingest_prefix(void **state)
{
    (void)state;
    unsigned char buf[128];
    size_t tlen = strlen(TOKEN), used;
    for (int form = 0; form < 4; form++) {
        size_t len = auth_map(buf, form, TOKEN);
        for (size_t k = 0; k < len; k++) /* every proper prefix asks for more */
            assert_int_equal(proto_auth_ingest_prefix((char *)buf, k, TOKEN, tlen, &used),
                             PROTO_AUTH_MORE);
        used = 0;
        assert_int_equal(proto_auth_ingest_prefix((char *)buf, len + 4, TOKEN, tlen, &used),
                         PROTO_AUTH_OK);
        assert_int_equal(used, len);
        auth_map(buf, form, "0123456789abcdef-tokeX");
        assert_int_equal(proto_auth_ingest_prefix((char *)buf, len, TOKEN, tlen, &used),
                         PROTO_AUTH_WRONG);
    }
    /* an event first, a map of two keys, a non-str token: refused at the first telling byte */
    static const unsigned char event[] = {0x83, 0xa4, 'p', 'o', 's', 't'};
    assert_int_equal(proto_auth_ingest_prefix((const char *)event, 1, TOKEN, tlen, &used),
                     PROTO_AUTH_MISSING);
    static const unsigned char two[] = {0x82, 0xa4, 'a', 'u', 't', 'h'};
    assert_int_equal(proto_auth_ingest_prefix((const char *)two, 6, TOKEN, tlen, &used),
                     PROTO_AUTH_MISSING);
    static const unsigned char num[] = {0x81, 0xa4, 'a', 'u', 't', 'h', 0x05};
    assert_int_equal(proto_auth_ingest_prefix((const char *)num, 7, TOKEN, tlen, &used),
                     PROTO_AUTH_WRONG);
    static const unsigned char huge[] = {0x81, 0xa4, 'a', 'u', 't', 'h', 0xda, 0xff, 0xff};
    assert_int_equal(proto_auth_ingest_prefix((const char *)huge, 9, TOKEN, tlen, &used),
                     PROTO_AUTH_WRONG);
}

static enum proto_auth_result rpc(const char *method, const char *key, const char *token,
                                  uint64_t *id)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint32(&pk, 77);
    msgpack_pack_str_with_body(&pk, method, strlen(method));
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, key, strlen(key));
    msgpack_pack_str_with_body(&pk, token, strlen(token));
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    enum proto_auth_result r = proto_auth_rpc_request(&u.data, TOKEN, strlen(TOKEN), id);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

static void test_rpc(void **state)
{
    (void)state;
    uint64_t id;
    assert_int_equal(rpc("auth", "token", TOKEN, &id), PROTO_AUTH_OK);
    assert_int_equal(id, 77);
    assert_int_equal(rpc("auth", "token", "nope", &id), PROTO_AUTH_WRONG);
    assert_int_equal(rpc("auth", "tok", TOKEN, &id), PROTO_AUTH_WRONG);
    assert_int_equal(rpc("stats", "token", TOKEN, &id), PROTO_AUTH_MISSING);
    assert_int_equal(id, 77);
}

static void test_bearer(void **state)
{
    (void)state;
    size_t n;
    const char *h = "Bearer abc ";
    const char *t = proto_auth_bearer(h, strlen(h), &n);
    assert_non_null(t);
    assert_int_equal(n, 3);
    assert_memory_equal(t, "abc", 3);
    assert_non_null(proto_auth_bearer("  bearer  xyz", 13, &n));
    assert_int_equal(n, 3);
    assert_null(proto_auth_bearer("Basic abc", 9, &n));
    assert_null(proto_auth_bearer("Bearer ", 7, &n));
    assert_null(proto_auth_bearer("", 0, &n));
}

static int load(const char *content, mode_t mode, char **tok, int *loose)
{
    char path[] = "/tmp/cascade-auth-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    fchmod(fd, mode);
    close(fd);
    char err[256];
    int rc = proto_auth_token_load(path, tok, loose, err, sizeof(err));
    if (rc)
        assert_true(strstr(err, path) != NULL); /* the message names the file */
    unlink(path);
    return rc;
}

static void test_load(void **state)
{
    (void)state;
    char *tok = NULL;
    int loose = -1;
    assert_int_equal(load("\n  " TOKEN "  \n\n", 0600, &tok, &loose), 0);
    assert_string_equal(tok, TOKEN);
    assert_int_equal(loose, 0);
    free(tok);
    assert_int_equal(load(TOKEN, 0644, &tok, &loose), 0);
    assert_int_equal(loose, 1);
    free(tok);
    assert_int_equal(load("short\n", 0600, &tok, &loose), -EINVAL);
    assert_int_equal(load("0123456789 abcdefgh", 0600, &tok, &loose), -EINVAL);
    char big[1200];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(load(big, 0600, &tok, &loose), -EINVAL);
    char err[256];
    assert_int_equal(proto_auth_token_load("/nonexistent/token", &tok, &loose, err, sizeof(err)),
                     -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal), cmocka_unit_test(test_ingest_prefix),
        cmocka_unit_test(test_rpc),   cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
