/* Writes the seed corpus of fuzz_rpc (corpus/rpc/): msgpack-RPC requests generated from the method
 * table, so that every method, including ones added later, is seeded: each method with no
 * params, with every parameter at a valid value (its default, else an id the fuzz engine holds),
 * with each parameter alone at its bounds and just past them, with the wrong type and nil; then
 * malformed envelopes. Run after a method is added or changed:
 *   cmake --build build-fuzz --target make_rpc_corpus
 *   build-fuzz/tests/fuzz/make_rpc_corpus tests/fuzz/corpus/rpc */
#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_rpc.h"
#include "query/method.h"

static const char *dir;
static int written;

static void save(const char *name, const msgpack_sbuffer *sb)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(sb->data, 1, sb->size, f) != sb->size || fclose(f) != 0) {
        fprintf(stderr, "make_rpc_corpus: cannot write %s\n", path);
        exit(1);
    }
    written++;
}

struct req {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

/* Starts [0, msgid, method, [{npairs}]]; the caller packs the pairs. */
static void req_begin(struct req *r, const char *method, uint32_t npairs)
{
    msgpack_sbuffer_init(&r->sb);
    msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
    msgpack_pack_array(&r->pk, 4);
    msgpack_pack_uint8(&r->pk, 0);
    msgpack_pack_uint32(&r->pk, (uint32_t)written + 1);
    msgpack_pack_str_with_body(&r->pk, method, strlen(method));
    msgpack_pack_array(&r->pk, 1);
    msgpack_pack_map(&r->pk, npairs);
}

static void req_save(struct req *r, const char *fmt, const char *a, const char *b)
{
    char name[256];
    snprintf(name, sizeof(name), fmt, a, b);
    save(name, &r->sb);
    msgpack_sbuffer_destroy(&r->sb);
}

static void key(struct req *r, const char *k)
{
    msgpack_pack_str_with_body(&r->pk, k, strlen(k));
}

/* A value of p's type that the fuzz engine makes meaningful. */
static void pack_valid(struct req *r, const struct qparam *p)
{
    char err[256];
    const char *text = p->def;
    if (!text) {
        if (p->type == QT_ID)
            text = strcmp(p->name, "post") == 0 ? FUZZ_RPC_POST : FUZZ_RPC_ACTOR;
        else if (strcmp(p->name, "label") == 0)
            text = FUZZ_RPC_LABEL;
        else if (p->type == QT_STR)
            text = FUZZ_RPC_CONTENT;
        else if (p->type == QT_ENUM)
            text = p->choices[0];
        else if (p->type == QT_BOOL)
            text = "true";
        else
            text = p->type == QT_TIME ? "1700000100000" : "1";
    }
    if (qparam_pack_text(p, text, strlen(text), &r->pk, err, sizeof(err)) != 0) {
        fprintf(stderr, "make_rpc_corpus: %s=%s: %s\n", p->name, text, err);
        exit(1);
    }
}

static void one_param(const struct qmethod *m, const struct qparam *p, const char *what,
                      void (*pack)(msgpack_packer *pk, const struct qparam *p))
{
    struct req r;
    req_begin(&r, m->name, 1);
    key(&r, p->name);
    pack(&r.pk, p);
    char suffix[128];
    snprintf(suffix, sizeof(suffix), "%s_%s", p->name, what);
    req_save(&r, "%s_%s", m->name, suffix);
}

static void pack_min(msgpack_packer *pk, const struct qparam *p)
{
    if (p->type == QT_FLOAT)
        msgpack_pack_double(pk, p->fmin);
    else
        msgpack_pack_int64(pk, p->min);
}

static void pack_max(msgpack_packer *pk, const struct qparam *p)
{
    if (p->type == QT_FLOAT)
        msgpack_pack_double(pk, p->fmax);
    else if (p->type == QT_UINT)
        msgpack_pack_uint64(pk, (uint64_t)p->max);
    else
        msgpack_pack_int64(pk, p->max);
}

static void pack_past(msgpack_packer *pk, const struct qparam *p)
{
    if (p->type == QT_FLOAT)
        msgpack_pack_double(pk, p->fmax + 0.5);
    else if (p->max == INT64_MAX)
        msgpack_pack_uint64(pk, (uint64_t)INT64_MAX + 1);
    else
        msgpack_pack_int64(pk, p->max + 1);
}

/* A string of max bytes (QT_STR) or one past (QT_ID's 256). */
static void pack_long(msgpack_packer *pk, const struct qparam *p)
{
    size_t n = p->type == QT_STR ? (size_t)p->max + 1 : 257;
    char *s = malloc(n);
    if (!s)
        exit(1);
    memset(s, 'x', n);
    msgpack_pack_str_with_body(pk, s, n);
    free(s);
}

static void pack_wrong_type(msgpack_packer *pk, const struct qparam *p)
{
    if (p->type == QT_ID || p->type == QT_STR || p->type == QT_ENUM)
        msgpack_pack_double(pk, -1.5);
    else
        msgpack_pack_str_with_body(pk, "12", 2);
}

static void pack_nil(msgpack_packer *pk, const struct qparam *p)
{
    msgpack_pack_nil(pk);
}

static void method_seeds(const struct qmethod *m)
{
    struct req r;
    req_begin(&r, m->name, 0);
    req_save(&r, "%s_no_params%s", m->name, "");

    req_begin(&r, m->name, m->nparams);
    for (uint32_t i = 0; i < m->nparams; i++) {
        key(&r, m->params[i].name);
        pack_valid(&r, &m->params[i]);
    }
    req_save(&r, "%s_all_params%s", m->name, "");

    for (uint32_t i = 0; i < m->nparams; i++) {
        const struct qparam *p = &m->params[i];
        if (p->type == QT_UINT || p->type == QT_TIME || p->type == QT_FLOAT) {
            one_param(m, p, "min", pack_min);
            one_param(m, p, "max", pack_max);
            one_param(m, p, "past_max", pack_past);
        }
        if (p->type == QT_STR || p->type == QT_ID)
            one_param(m, p, "too_long", pack_long);
        one_param(m, p, "wrong_type", pack_wrong_type);
        one_param(m, p, "nil", pack_nil);
    }
}

/* Requests that are not [0, msgid, method, [params]], or nearly. */
static void envelope_seeds(void)
{
    static const struct {
        const char *name;
        const char *bytes;
        size_t len;
    } raw[] = {
        {"env_not_array", "\x81\xa1k\x01", 4},
        {"env_three", "\x93\x00\x01\xa5stats", 9},
        {"env_response_type", "\x94\x01\x01\xa5stats\x90", 10},
        {"env_notification", "\x93\x02\xa5stats\x90", 9},
        {"env_method_int", "\x94\x00\x01\x07\x90", 5},
        {"env_params_map", "\x94\x00\x01\xa5stats\x80", 10},
        {"env_params_nil", "\x94\x00\x01\xa5stats\xc0", 10},
        {"env_params_not_map", "\x94\x00\x01\xa5stats\x91\x01", 11},
        {"env_msgid_str", "\x94\x00\xa2id\xa5stats\x90", 12},
        {"env_msgid_nan", "\x94\x00\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00\xa5stats\x90", 18},
        {"env_msgid_map", "\x94\x00\x81\xa1k\x92\x01\xc0\xa5stats\x90", 15},
        {"env_truncated", "\x94\x00\x01\xa5sta", 7},
        {"env_trailing", "\x94\x00\x01\xa5stats\x90\x94\x00", 12},
        {"env_unknown_method", "\x94\x00\x01\xa4nope\x90", 9},
        {"env_unknown_param", "\x94\x00\x01\xa5stats\x91\x81\xa1z\x01", 14},
        {"env_int_key", "\x94\x00\x01\xa4path\x91\x81\x01\xa1x", 13},
        {"env_empty", "", 0},
        /* msgpack-c sized these containers from their headers: ~100 GiB asked for */
        {"regress_huge_map_claim", "\x94\x00\x01\xa5stats\xdf\xdf\xdf\xdf\xdf\x91\x01", 16},
        {"regress_huge_array_claim", "\x94\x00\x01\xa5stats\xdd\x7f\xff\xff\xff\x01", 15},
    };
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
        msgpack_sbuffer sb = {.size = raw[i].len, .data = (char *)raw[i].bytes};
        save(raw[i].name, &sb);
    }
    struct req r; /* the last of a repeated parameter wins */
    req_begin(&r, "cascade", 2);
    key(&r, "post");
    msgpack_pack_str_with_body(&r.pk, "nope", 4);
    key(&r, "post");
    msgpack_pack_uint32(&r.pk, 101);
    req_save(&r, "%s%s", "env_repeated_param", "");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    size_t n;
    const struct qmethod *ms = qmethod_all(&n);
    for (size_t i = 0; i < n; i++)
        method_seeds(&ms[i]);
    envelope_seeds();
    printf("%d seeds in %s\n", written, dir);
    return 0;
}
