/* libFuzzer target for the query port's msgpack-RPC path (query/rpc.c, the method table and the
 * handlers): the input is one request, answered by rpc_handle against a small engine built once
 * (fuzz_rpc_engine.c), with the analytics worker's first result there or (for one input in four,
 * chosen by a hash of the input) with analytics off. Whatever the request, the answer must be one
 * msgpack value [1, msgid, error, result]: msgid as the request gave it (nil when the request is
 * not [0, msgid, method, params]), error nil or {code, message} with a known code and a message,
 * result nil after an error and otherwise shaped as the method table says (a record, a list of
 * records, or a record holding a list), with string keys throughout. Before that, the query
 * port's scanner (core/mpscan.h, which checks a request's claims before msgpack-c sees it) must
 * reach the same verdict on the request whole and in pieces, and a value it finds complete must
 * be one that msgpack-c parses to the same end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mpscan.h"
#include "fuzz_rpc.h"
#include "query/method.h"
#include "query/rpc.h"

static struct engine *engine;
static struct rpc_server_stats with_analytics, without_analytics;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    engine = fuzz_rpc_engine();
    with_analytics =
        (struct rpc_server_stats){.wal_bytes = 4096, .uptime_ms = 5, .ingest_rate = 1.5};
    without_analytics = with_analytics;
    with_analytics.analytics = fuzz_rpc_analytics(engine);
    return 0;
}

static void fail(const char *why, const char *resp, size_t len)
{
    fprintf(stderr, "bad response (%s):", why);
    for (size_t i = 0; i < len && i < 512; i++)
        fprintf(stderr, " %02x", (uint8_t)resp[i]);
    fprintf(stderr, "\n");
    abort();
}

/* The bytes msgpack-c packs for o: compares msgids of any type, NaN included. */
static void repack(const msgpack_object *o, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *o);
}

static int same_object(const msgpack_object *a, const msgpack_object *b)
{
    msgpack_sbuffer sa, sb;
    repack(a, &sa);
    repack(b, &sb);
    int same = sa.size == sb.size && (sa.size == 0 || memcmp(sa.data, sb.data, sa.size) == 0);
    msgpack_sbuffer_destroy(&sa);
    msgpack_sbuffer_destroy(&sb);
    return same;
}

/* Every map key in o is a string (results become JSON objects and CSV headers). */
static int string_keys(const msgpack_object *o, int depth)
{
    if (depth > 16)
        return 0;
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (!string_keys(&o->via.array.ptr[i], depth + 1))
                return 0;
    } else if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR || !string_keys(&kv->val, depth + 1))
                return 0;
        }
    }
    return 1;
}

static const msgpack_object *map_get(const msgpack_object *o, const char *key)
{
    size_t n = strlen(key);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, key, n) == 0)
            return &o->via.map.ptr[i].val;
    }
    return NULL;
}

static int list_of_records(const msgpack_object *o)
{
    if (!o || o->type != MSGPACK_OBJECT_ARRAY)
        return 0;
    for (uint32_t i = 0; i < o->via.array.size; i++)
        if (o->via.array.ptr[i].type != MSGPACK_OBJECT_MAP)
            return 0;
    return 1;
}

static int shaped(const struct qmethod *m, const msgpack_object *result)
{
    switch (m->shape) {
    case QS_RECORD:
        return result->type == MSGPACK_OBJECT_MAP;
    case QS_LIST:
        return list_of_records(result);
    case QS_RECORD_WITH_LIST: {
        if (result->type != MSGPACK_OBJECT_MAP)
            return 0;
        const msgpack_object *list = map_get(result, m->list_key);
        return !list || list_of_records(list); /* cascade's nodes only come with tree=true */
    }
    }
    return 0;
}

static int valid_error(const msgpack_object *err)
{
    if (err->type != MSGPACK_OBJECT_MAP || err->via.map.size != 2)
        return 0;
    const msgpack_object *code = map_get(err, "code"), *msg = map_get(err, "message");
    if (!code || !msg || code->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        msg->type != MSGPACK_OBJECT_STR || msg->via.str.size == 0)
        return 0;
    uint64_t c = code->via.u64;
    return c == QERR_BAD_REQUEST || c == QERR_NOT_FOUND || c == QERR_NOT_READY ||
           c == QERR_INTERNAL;
}

/* What the request itself says: its msgid and method when it is a well-formed envelope. */
struct envelope {
    msgpack_unpacked u;
    const msgpack_object *msgid; /* NULL: the answer's msgid must be nil */
    const struct qmethod *m;     /* NULL: not a method of the table */
    int method_is_str;
};

static void read_envelope(const uint8_t *data, size_t size, struct envelope *env)
{
    if (msgpack_unpack_next(&env->u, (const char *)data, size, NULL) != MSGPACK_UNPACK_SUCCESS)
        return;
    const msgpack_object *o = &env->u.data;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4 ||
        o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o->via.array.ptr[0].via.u64 != 0)
        return;
    env->msgid = &o->via.array.ptr[1];
    const msgpack_object *method = &o->via.array.ptr[2], *params = &o->via.array.ptr[3];
    int params_ok = params->type != MSGPACK_OBJECT_ARRAY || params->via.array.size == 0 ||
                    params->via.array.ptr[0].type == MSGPACK_OBJECT_MAP;
    if (method->type == MSGPACK_OBJECT_STR && params_ok) {
        env->method_is_str = 1;
        env->m = qmethod_find(method->via.str.ptr, method->via.str.size);
    }
}

static void check(const struct envelope *env, const char *resp, size_t len)
{
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, resp, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
        fail("not one msgpack value", resp, len);
    const msgpack_object *o = &u.data;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4 ||
        o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o->via.array.ptr[0].via.u64 != 1)
        fail("not [1, msgid, error, result]", resp, len);
    const msgpack_object *msgid = &o->via.array.ptr[1], *err = &o->via.array.ptr[2],
                         *result = &o->via.array.ptr[3];
    if (env->msgid ? !same_object(env->msgid, msgid) : msgid->type != MSGPACK_OBJECT_NIL)
        fail("msgid not echoed", resp, len);
    if (err->type != MSGPACK_OBJECT_NIL) {
        if (!valid_error(err) || result->type != MSGPACK_OBJECT_NIL)
            fail("malformed error", resp, len);
        if (env->method_is_str && !env->m && map_get(err, "code")->via.u64 != QERR_NOT_FOUND)
            fail("an unknown method is not a 404", resp, len);
    } else if (!env->m || !shaped(env->m, result) || !string_keys(result, 0)) {
        fail(env->m ? "result not shaped as the method table says" : "success without a method",
             resp, len);
    }
    msgpack_unpacked_destroy(&u);
}

/* The scanner as net/loop.c runs it, under small limits so that inputs reach each of them: the
 * request whole, then cut into pieces of 1..8 bytes (each call resuming at pos, as the loop's
 * buffer does). */
static void check_scan(const uint8_t *data, size_t size, uint64_t h)
{
    static const struct mpscan_limits port = {
        .max_bytes = 2048, .max_array = 20, .max_map = 10, .max_depth = 4, .max_str = 512};
    struct mpscan whole, parts;
    size_t used, have = 0, step = 1 + (size_t)(h >> 8) % 8;
    mpscan_init(&whole, &port);
    enum mpscan_status st = mpscan_feed(&whole, data, size, &used), sp;
    if (used != whole.pos)
        abort();
    mpscan_init(&parts, &port);
    do {
        have = have + step < size ? have + step : size;
        sp = mpscan_feed(&parts, data + parts.pos, have - parts.pos, &used);
    } while (sp == MPSCAN_MORE && have < size);
    if (sp != st || parts.pos != whole.pos || parts.violation != whole.violation) {
        fprintf(stderr, "scanner: whole %d at %llu, in pieces of %zu %d at %llu\n", st,
                (unsigned long long)whole.pos, step, sp, (unsigned long long)parts.pos);
        abort();
    }
    if (st != MPSCAN_DONE)
        return;
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, (const char *)data, whole.pos, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != whole.pos) {
        fprintf(stderr, "scanner: a value of %llu bytes msgpack-c does not parse so\n",
                (unsigned long long)whole.pos);
        abort();
    }
    msgpack_unpacked_destroy(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 0x100000001b3ull;
    const struct rpc_server_stats *ss = h % 4 == 0 ? &without_analytics : &with_analytics;
    check_scan(data, size, h);

    char *resp = NULL;
    size_t len = 0;
    if (rpc_handle(engine, ss, (const char *)data, size, &resp, &len) != 0)
        abort(); /* -ENOMEM: not with requests this small */
    /* The request is only unpacked here when rpc_handle did: msgpack-c would otherwise size
     * containers from headers that claim billions of entries (see one_value in rpc.c). */
    static const char refused[] = "request is not one msgpack value";
    struct envelope env;
    memset(&env, 0, sizeof(env));
    msgpack_unpacked_init(&env.u);
    if (!(len > 3 && (uint8_t)resp[2] == 0xc0 && memmem(resp, len, refused, sizeof(refused) - 1)))
        read_envelope(data, size, &env); /* [1, nil, ...]: no msgid to echo anyway */
    check(&env, resp, len);
    msgpack_unpacked_destroy(&env.u);
    free(resp);
    return 0;
}
