/* The optional shared secret of --auth-token-file: loading it, comparing in constant time, and
 * recognising the first message a client sends to prove it knows it on each port (ingest: the
 * value {"auth": TOKEN}; msgpack-RPC: [0, msgid, "auth", [{"token": TOKEN}]]; HTTP: an
 * `Authorization: Bearer TOKEN` header, checked in net/loop.c). Nothing here does network I/O. */
#ifndef NET_AUTH_H
#define NET_AUTH_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_TOKEN_MIN 16   /* bytes: shorter secrets are refused at start-up */
#define AUTH_TOKEN_MAX 1024 /* bytes */
/* The ingest stream's opening map {"auth": TOKEN} at its longest: a map32 header, the key as a
 * str32 (5 + 4 bytes) and the token as a str32. */
#define AUTH_INGEST_PREFIX_MAX (5 + 5 + 4 + 5 + AUTH_TOKEN_MAX)

/* Reads the token from path (surrounding whitespace trimmed). *out is malloc'd, NUL-terminated,
 * owned by the caller. *loose is set when group or others may read the file (the caller warns).
 * 0, or a negative errno with a message for the user in err. */
int auth_token_load(const char *path, char **out, int *loose, char *err, size_t errlen);

/* 1 when got equals want. The time taken depends on want's length only, not on where the two
 * differ nor on got's length. */
int auth_token_equal(const char *want, size_t wlen, const char *got, size_t glen);

enum auth_result {
    AUTH_MORE = 0, /* not a whole message yet */
    AUTH_OK,       /* the right token */
    AUTH_WRONG,    /* an auth message with the wrong token */
    AUTH_MISSING,  /* something else came first */
};

/* Ingest port: looks at the first bytes of the stream, which must be exactly the msgpack map
 * {"auth": TOKEN} (one key, a str value; the map and the strings in any of msgpack's encodings:
 * fixmap/map16/map32, fixstr/str8/str16/str32), at most AUTH_INGEST_PREFIX_MAX bytes. Parsed by
 * hand, so that no declared length of untrusted bytes ever sizes an allocation. On AUTH_OK,
 * *used gets the bytes the map took (the events follow it). */
enum auth_result auth_ingest_prefix(const char *buf, size_t len, const char *token, size_t tlen,
                                    size_t *used);

/* msgpack-RPC: req is a decoded request. AUTH_MISSING unless it calls the `auth` method;
 * *msgid gets its msgid (0 when there is none) for the answer. */
enum auth_result auth_rpc_request(const msgpack_object *req, const char *token, size_t tlen,
                                  uint64_t *msgid);

/* The client's side: packs the ingest stream's opening map {"auth": TOKEN}, and the RPC request
 * [0, msgid, "auth", [{"token": TOKEN}]] (the forms the two functions above accept). */
void auth_pack_ingest(msgpack_packer *pk, const char *token);
void auth_pack_rpc(msgpack_packer *pk, uint64_t msgid, const char *token);

/* The token of an `Authorization: Bearer TOKEN` header value, or NULL (*len 0). */
const char *auth_bearer(const char *value, size_t len, size_t *tok_len);

#endif
