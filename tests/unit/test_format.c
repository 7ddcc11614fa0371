/* Unit tests of the format layer (cascade/format.h): the text renderings and the cascade exports:
 * JSON escaping, UTF-8 repair and doubles, CSV quoting and headers for each method shape, the
 * terminal table, and GraphML/DOT on a hand-built cascade. Inputs are written in a small
 * JSON-like notation (see build) and packed to msgpack, so each case reads as its data. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include <cmocka.h>
#include <msgpack.h>

#include "cascade/format.h"
#include "cascade/schema.h"
#include "core/strbuf.h"

/* ---- a JSON-like notation for test values ----------------------------------------------------
 * {k:v,...} maps (any value as key), [..] arrays, 'text' strings (bytes as the C literal gives
 * them), $ a string from the arguments, b'..' bin, 12 / -3 integers, 1.5 / nan / inf doubles,
 * f0.1 a float32, true false null. */

struct spec {
    const char *s;
    va_list ap;
};

static void put_raw(msgpack_packer *pk, const char *p, size_t n)
{
    pk->callback(pk->data, p, n);
}

static void pack_spec(struct spec *sp, msgpack_packer *pk);

/* Packs the elements of a map or array (up to close) into a buffer of their own, then the
 * header with their count. */
static void pack_container(struct spec *sp, msgpack_packer *pk, char close)
{
    msgpack_sbuffer body;
    msgpack_packer bpk;
    msgpack_sbuffer_init(&body);
    msgpack_packer_init(&bpk, &body, msgpack_sbuffer_write);
    uint32_t n = 0;
    sp->s++;
    while (*sp->s != close) {
        pack_spec(sp, &bpk);
        if (close == '}') {
            assert_int_equal(*sp->s++, ':');
            pack_spec(sp, &bpk);
        }
        n++;
        if (*sp->s == ',')
            sp->s++;
    }
    sp->s++;
    if (close == '}')
        msgpack_pack_map(pk, n);
    else
        msgpack_pack_array(pk, n);
    put_raw(pk, body.data, body.size);
    msgpack_sbuffer_destroy(&body);
}

static void pack_quoted(struct spec *sp, msgpack_packer *pk, int bin)
{
    const char *end = strchr(sp->s + 1, '\'');
    size_t n = (size_t)(end - sp->s - 1);
    if (bin) {
        msgpack_pack_bin(pk, n);
        msgpack_pack_bin_body(pk, sp->s + 1, n);
    } else {
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, sp->s + 1, n);
    }
    sp->s = end + 1;
}

static void pack_number(struct spec *sp, msgpack_packer *pk)
{
    char *end;
    if (*sp->s == 'f') {
        msgpack_pack_float(pk, strtof(sp->s + 1, &end));
    } else if (!strncmp(sp->s, "nan", 3) || !strncmp(sp->s, "inf", 3) ||
               !strncmp(sp->s, "-inf", 4) || strcspn(sp->s, ".e,]}:") < strcspn(sp->s, ",]}:")) {
        msgpack_pack_double(pk, strtod(sp->s, &end));
    } else if (*sp->s == '-') {
        msgpack_pack_int64(pk, strtoll(sp->s, &end, 10));
    } else {
        msgpack_pack_uint64(pk, strtoull(sp->s, &end, 10));
    }
    sp->s = end;
}

static void pack_spec(struct spec *sp, msgpack_packer *pk)
{
    const char *s = sp->s;
    if (*s == '{' || *s == '[') {
        pack_container(sp, pk, *s == '{' ? '}' : ']');
    } else if (*s == '\'') {
        pack_quoted(sp, pk, 0);
    } else if (*s == 'b' && s[1] == '\'') {
        sp->s++;
        pack_quoted(sp, pk, 1);
    } else if (*s == '$') {
        const char *v = va_arg(sp->ap, const char *);
        msgpack_pack_str_with_body(pk, v, strlen(v));
        sp->s++;
    } else if (!strncmp(s, "true", 4) || !strncmp(s, "null", 4)) {
        if (*s == 't')
            msgpack_pack_true(pk);
        else
            msgpack_pack_nil(pk);
        sp->s += 4;
    } else if (!strncmp(s, "false", 5)) {
        msgpack_pack_false(pk);
        sp->s += 5;
    } else {
        pack_number(sp, pk);
    }
}

struct val {
    msgpack_sbuffer sb; /* the unpacked strings point into it */
    msgpack_unpacked u;
    msgpack_object *o;
};

static struct val *build(const char *fmt, ...)
{
    struct spec sp = {.s = fmt};
    struct val *v = calloc(1, sizeof(*v));
    assert_non_null(v);
    msgpack_packer pk;
    msgpack_sbuffer_init(&v->sb);
    msgpack_packer_init(&pk, &v->sb, msgpack_sbuffer_write);
    va_start(sp.ap, fmt);
    pack_spec(&sp, &pk);
    va_end(sp.ap);
    assert_int_equal(*sp.s, 0);
    msgpack_unpacked_init(&v->u);
    assert_int_equal(msgpack_unpack_next(&v->u, v->sb.data, v->sb.size, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    v->o = &v->u.data;
    return v;
}

static void val_free(struct val *v)
{
    msgpack_unpacked_destroy(&v->u);
    msgpack_sbuffer_destroy(&v->sb);
    free(v);
}

/* ---- running a renderer ------------------------------------------------------------------------
 */

enum what { JSON, CSV, TABLE, GRAPHML, DOT };

static const struct qmethod M_LIST = {.name = "top_cascades", .shape = QS_LIST};
static const struct qmethod M_RECORD = {.name = "actor", .shape = QS_RECORD};
static const struct qmethod M_TREE = {
    .name = "cascade", .shape = QS_RECORD_WITH_LIST, .list_key = "nodes"};

/* The rendering of v as a malloc'd string (the caller frees it); *rc gets the export's code. */
static char *render(enum what w, const struct qmethod *m, const struct val *v, int *rc)
{
    struct strbuf b = STRBUF_INIT;
    int r = 0;
    switch (w) {
    case JSON:
        format_json(v->o, &b);
        break;
    case CSV:
        format_csv(v->o, qmethod_rows_key(m), &b);
        break;
    case TABLE:
        format_table(v->o, qmethod_rows_key(m), &b);
        break;
    case GRAPHML:
        r = format_graphml(v->o, &b);
        break;
    case DOT:
        r = format_dot(v->o, &b);
        break;
    }
    if (rc)
        *rc = r;
    char *s;
    size_t n;
    assert_int_equal(sb_take(&b, &s, &n), 0);
    if (n == 0) /* sb_take promises a NUL only after some bytes */
        s[0] = 0;
    assert_int_equal(strlen(s), n);
    return s;
}

/* Renders the value given in notation and compares with want. */
static void expect(enum what w, const struct qmethod *m, const char *want, struct val *v)
{
    char *got = render(w, m, v, NULL);
    assert_string_equal(got, want);
    free(got);
    val_free(v);
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* ---- JSON ---------------------------------------------------------------------------------------
 */

static void test_json_escaping(void **state)
{
    expect(JSON, NULL, "\"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f\\u2028é€𝄞\"",
           build("$", "q\"b\\s/\n\r\t\b\f\x01\x1f\x7f\xe2\x80\xa8é€𝄞"));
    expect(JSON, NULL, "\"\\u009b[31m\"", build("$", "\xc2\x9b[31m"));
    expect(JSON, NULL, "\"\"", build("''"));
}

static void test_json_invalid_utf8(void **state)
{
    /* a stray continuation, an invalid lead, an overlong '/', a surrogate, a truncated end */
    expect(JSON, NULL,
           "\"a\xef\xbf\xbd"
           "b\xef\xbf\xbd"
           "c\xef\xbf\xbd\xef\xbf\xbd"
           "d"
           "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
           "e\xef\xbf\xbd\xef\xbf\xbd\"",
           build("$", "a\x80"
                      "b\xff"
                      "c\xc0\xaf"
                      "d\xed\xa0\x80"
                      "e\xe2\x82"));
    expect(JSON, NULL, "\"\xf4\x8f\xbf\xbf\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"",
           build("$", "\xf4\x8f\xbf\xbf\xf4\x90\x80\x80"));
}

static void test_json_numbers(void **state)
{
    expect(JSON, NULL, "[0,18446744073709551615,-9223372036854775808,-1]",
           build("[0,18446744073709551615,-9223372036854775808,-1]"));
    expect(JSON, NULL, "[0.1,3.0,-0.0,1e+300,null,null,null,2.5,0.1]",
           build("[0.1,3.0,-0.0,1e300,nan,inf,-inf,2.5,f0.1]"));
    expect(JSON, NULL, "[true,false,null]", build("[true,false,null]"));
}

/* Every double's text reads back as the same double. */
static void test_json_double_roundtrip(void **state)
{
    const double ds[] = {1.0 / 3,
                         2.0 / 3,
                         0.1 + 0.2,
                         1e-310,
                         5e-324,
                         1.7976931348623157e308,
                         123456789.123456789,
                         4.35,
                         2.0 / 7 * 1e20};
    for (size_t i = 0; i < sizeof(ds) / sizeof(ds[0]); i++) {
        msgpack_object o = {.type = MSGPACK_OBJECT_FLOAT64, .via.f64 = ds[i]};
        struct strbuf b = STRBUF_INIT;
        format_json(&o, &b);
        assert_false(b.oom);
        assert_true(strtod(b.p, NULL) == ds[i]);
        sb_free(&b);
    }
}

static void test_json_nested_keys_bin(void **state)
{
    expect(JSON, NULL,
           "{\"a\":[1,{\"b\":null}],\"1\":\"x\",\"null\":true,\"[1,\\\"k\\\"]\":2,"
           "\"-4\":0,\"Zm9v\":1}",
           build("{'a':[1,{'b':null}],1:'x',null:true,[1,'k']:2,-4:0,b'foo':1}"));
    expect(JSON, NULL, "[\"\",\"Zg==\",\"Zm8=\",\"Zm9v\",\"Zm9vYmFy\"]",
           build("[b'',b'f',b'fo',b'foo',b'foobar']"));
}

static void test_json_bin_bytes(void **state)
{
    /* the last one: bytes 0xff 0xef, which a quoted literal can hold */
    expect(JSON, NULL, "\"/+8=\"", build("b'\xff\xef'"));
    expect(JSON, NULL, "{}", build("{}"));
    expect(JSON, NULL, "[[],[[]]]", build("[[],[[]]]"));
}

/* Nesting deeper than the bound becomes null instead of recursing without end. */
static void test_json_deep(void **state)
{
    enum { DEPTH = 200 };
    msgpack_object o[DEPTH];
    for (int i = 0; i < DEPTH; i++) {
        o[i].type = MSGPACK_OBJECT_ARRAY;
        o[i].via.array.size = i + 1 < DEPTH ? 1 : 0;
        o[i].via.array.ptr = i + 1 < DEPTH ? &o[i + 1] : NULL;
    }
    struct strbuf b = STRBUF_INIT;
    format_json(&o[0], &b);
    assert_false(b.oom);
    assert_non_null(strstr(b.p, "null"));
    assert_true(b.n < 2 * DEPTH);
    sb_free(&b);
}

/* ---- CSV ----------------------------------------------------------------------------------------
 */

static void test_csv_quoting_and_union(void **state)
{
    expect(
        CSV, &M_LIST,
        "a,b,c,d\r\n"
        "1,\"x,y\",,\r\n"
        ",\"q\"\"uote\",,\r\n"
        "2.5,,\"line\nbreak\",\"[1,{\"\"k\"\":\"\"v\"\"}]\"\r\n"
        "true,\"cr\rhere\",,\r\n",
        build("[{'a':1,'b':'x,y'},{'b':$,'c':null},{'a':2.5,'c':'line\nbreak','d':[1,{'k':'v'}]},"
              "{'b':'cr\rhere','a':true}]",
              "q\"uote"));
    /* a header that needs quoting, and a key that is not a string */
    expect(CSV, &M_LIST, "\"x,y\",7\r\n1,2\r\n", build("[{'x,y':1,7:2}]"));
}

static void test_csv_shapes(void **state)
{
    expect(CSV, &M_RECORD,
           "id,posts\r\nal\xef\xbf\xbd"
           "ce,3\r\n",
           build("{'id':'al\xff"
                 "ce','posts':3}"));
    expect(CSV, &M_TREE, "post,parent\r\np1,\r\np2,p1\r\n",
           build("{'size':2,'nodes':[{'post':'p1','parent':null},{'post':'p2','parent':'p1'}]}"));
    expect(CSV, &M_LIST, "", build("[]"));
    expect(CSV, &M_TREE, "", build("{'size':0,'nodes':[]}"));
    expect(CSV, &M_TREE, "size\r\n0\r\n", build("{'size':0}")); /* without its list */
    /* rows that are not maps: one `value` column */
    expect(CSV, &M_LIST, "value\r\n1\r\nx\r\n", build("[1,'x']"));
    /* no method: the value's own type decides */
    expect(CSV, NULL, "k\r\nv\r\n", build("{'k':'v'}"));
}

/* ---- table --------------------------------------------------------------------------------------
 */

static void test_table_list(void **state)
{
    expect(TABLE, &M_LIST,
           "post    size  label\n"
           "------  ----  -----\n"
           "p1        10  false\n"
           "longer     2\n"
           "\xc3\xa9t\xc3\xa9       -1  x\n",
           build("[{'post':'p1','size':10,'label':'false'},{'post':'longer','size':2,'label':null},"
                 "{'post':'\xc3\xa9t\xc3\xa9','size':-1,'label':'x'}]"));
    expect(TABLE, &M_LIST, "(no rows)\n", build("[]"));
}

static void test_table_truncates_and_escapes(void **state)
{
    char longs[201];
    memset(longs, 'x', 200);
    longs[200] = 0;
    struct val *v = build("[{'c':$},{'c':$}]", longs, "\x1b[2J");
    char *got = render(TABLE, &M_LIST, v, NULL);
    /* 59 x's and an ellipsis, the width of the column */
    assert_non_null(
        strstr(got, "\n"
                    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\xe2\x80\xa6\n"));
    assert_null(strstr(got, "\x1b"));
    assert_non_null(strstr(got, "\\u001b[2J"));
    free(got);
    val_free(v);
}

static void test_table_record(void **state)
{
    expect(TABLE, &M_RECORD, "a         1\nlong_key  v w\nnested    {\"k\":[1,2]}\nnone\n",
           build("{'a':1,'long_key':'v w','nested':{'k':[1,2]},'none':null}"));
    expect(TABLE, &M_TREE,
           "root  p1\nsize  2\n\nnodes:\npost  parent\n----  ------\np1\np2    p1\n",
           build("{'root':'p1','size':2,'nodes':[{'post':'p1','parent':null},"
                 "{'post':'p2','parent':'p1'}]}"));
    expect(TABLE, &M_TREE, "root  p1\n\nnodes:\n(no rows)\n", build("{'root':'p1','nodes':[]}"));
    expect(TABLE, &M_TREE, "root  p1\n", build("{'root':'p1'}"));
    expect(TABLE, NULL, "42\n", build("42"));
}

/* ---- exports ------------------------------------------------------------------------------------
 */

/* A cascade: root R (a name to escape), a placeholder M under it, C under M, the integer post
 * 17 under C, and a node whose parent the answer left out. */
static struct val *cascade(void)
{
    return build(
        "{'root':$,'root_actor':'a&b','size':4,'missing':1,'depth':3,"
        "'structural_virality':1.5,'label':null,'content':'<x>','nodes':["
        "{'post':$,'parent':null,'actor':'a&b','ts':1,'depth':0,'kind':'post','placeholder':false},"
        "{'post':'m','parent':$,'actor':null,'ts':null,'depth':1,'kind':null,'placeholder':true},"
        "{'post':'c','parent':'m','actor':'x\\y','ts':3,'depth':2,'kind':'share','placeholder':"
        "false},"
        "{'post':17,'parent':'c','actor':'y','ts':4,'depth':3,'kind':'reply','placeholder':false},"
        "{'post':'o','parent':'gone','actor':'z','ts':5,'depth':9,'kind':'share','placeholder':"
        "false}]}",
        "r<&\"1", "r<&\"1", "r<&\"1");
}

static void test_graphml(void **state)
{
    struct val *v = cascade();
    int rc;
    char *g = render(GRAPHML, NULL, v, &rc);
    assert_int_equal(rc, 0);
    assert_true(!strncmp(g, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<graphml ", 46));
    assert_int_equal(count(g, "<node "), 5);
    assert_int_equal(count(g, "<edge "), 3);
    assert_int_equal(count(g, "<data key=\"placeholder\">true</data>"), 1);
    assert_int_equal(count(g, "<data key=\"placeholder\">false</data>"), 4);
    assert_int_equal(count(g, "<data key=\"post\">r&lt;&amp;&quot;1</data>"), 1);
    assert_int_equal(count(g, "<data key=\"post\">17</data>"), 1);
    assert_int_equal(count(g, "<edge source=\"n2\" target=\"n3\"/>"), 1);
    assert_non_null(strstr(g, "attr.name=\"structural_virality\" attr.type=\"double\""));
    assert_non_null(strstr(g, "attr.name=\"size\" attr.type=\"long\""));
    assert_non_null(strstr(g, "&lt;x&gt;</data>"));
    for (const char *k = "post\0actor\0ts\0depth\0kind\0placeholder\0"; *k; k += strlen(k) + 1) {
        char decl[80];
        snprintf(decl, sizeof(decl), "<key id=\"%s\" for=\"node\"", k);
        assert_int_equal(count(g, decl), 1);
    }
    /* no raw markup characters inside values: every '&' starts an entity */
    for (const char *p = g; (p = strchr(p, '&')); p++)
        assert_true(!strncmp(p, "&amp;", 5) || !strncmp(p, "&lt;", 4) || !strncmp(p, "&gt;", 4) ||
                    !strncmp(p, "&quot;", 6) || !strncmp(p, "&apos;", 6));
    assert_null(strstr(g, "a&b"));
    assert_non_null(strstr(g, "</graph>\n</graphml>\n"));
    free(g);
    val_free(v);
}

static void test_dot(void **state)
{
    struct val *v = cascade();
    int rc;
    char *d = render(DOT, NULL, v, &rc);
    assert_int_equal(rc, 0);
    assert_true(!strncmp(d, "digraph cascade {\n", 18));
    assert_int_equal(count(d, " -> "), 3);
    assert_int_equal(count(d, "[label="), 5);
    assert_int_equal(count(d, "style=dashed"), 1);
    assert_non_null(strstr(d, "\"r<&\\\"1\" [label=\"r<&\\\"1\\na&b\"];\n"));
    assert_non_null(strstr(d, "\"m\" [label=\"m\\n(missing)\", style=dashed];\n"));
    assert_non_null(strstr(d, "\"c\" [label=\"c\\nx\\\\y\"];\n"));
    assert_non_null(strstr(d, "\"r<&\\\"1\" -> \"m\";\n"));
    assert_non_null(strstr(d, "\"c\" -> \"17\";\n"));
    assert_null(strstr(d, "\"gone\""));
    assert_string_equal(d + strlen(d) - 2, "}\n");
    free(d);
    val_free(v);
}

static void test_export_rejects(void **state)
{
    const char *bad[] = {"{'size':1}", "[1,2]", "{'nodes':{'post':'x'}}", "'nodes'"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct val *v = build(bad[i]);
        int rc;
        free(render(GRAPHML, NULL, v, &rc));
        assert_int_equal(rc, -EINVAL);
        free(render(DOT, NULL, v, &rc));
        assert_int_equal(rc, -EINVAL);
        val_free(v);
    }
    /* an empty tree and nodes that are not maps are fine: no nodes */
    struct val *v = build("{'nodes':[1,'x',{'parent':'y'}]}");
    int rc;
    char *d = render(DOT, NULL, v, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(d, "digraph cascade {\n  node [shape=box];\n}\n");
    free(d);
    val_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_json_invalid_utf8),
        cmocka_unit_test(test_json_numbers),
        cmocka_unit_test(test_json_double_roundtrip),
        cmocka_unit_test(test_json_nested_keys_bin),
        cmocka_unit_test(test_json_bin_bytes),
        cmocka_unit_test(test_json_deep),
        cmocka_unit_test(test_csv_quoting_and_union),
        cmocka_unit_test(test_csv_shapes),
        cmocka_unit_test(test_table_list),
        cmocka_unit_test(test_table_truncates_and_escapes),
        cmocka_unit_test(test_table_record),
        cmocka_unit_test(test_graphml),
        cmocka_unit_test(test_dot),
        cmocka_unit_test(test_export_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
