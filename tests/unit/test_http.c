/* Unit tests of the HTTP port's pure parts (query/http.c, query/prom.c): percent-decoding,
 * routing, request parsing under the size limits, pipelining, query strings to RPC requests,
 * and Prometheus output that a strict reader accepts. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/mpmap.h"
#include "query/http.h"
#include "query/prom.h"
#include "query/web.h"

static void test_pct_decode(void **state)
{
    char out[64];
    long n = http_pct_decode("a%20b+c%26d%3D", 14, out, 1);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "a b c&d=", 8);
    assert_int_equal(http_pct_decode("a+b", 3, out, 0), 3);
    assert_memory_equal(out, "a+b", 3);
    assert_int_equal(http_pct_decode("%zz", 3, out, 1), -EINVAL);
    assert_int_equal(http_pct_decode("ab%4", 4, out, 1), -EINVAL);
    assert_int_equal(http_pct_decode("%", 1, out, 1), -EINVAL);
    assert_int_equal(http_pct_decode("%00%fF", 6, out, 1), 2);
    assert_int_equal((unsigned char)out[1], 0xff);
}

static enum http_route route(const char *t, const char **name, size_t *nl, const char **q,
                             size_t *ql)
{
    return http_route(t, strlen(t), name, nl, q, ql);
}

static void test_route(void **state)
{
    const char *name, *q;
    size_t nl, ql;
    assert_int_equal(route("/healthz", &name, &nl, &q, &ql), HTTP_R_HEALTHZ);
    assert_int_equal(route("/metrics?x=1", &name, &nl, &q, &ql), HTTP_R_METRICS);
    assert_int_equal(route("/v1/cascade?post=a&format=csv", &name, &nl, &q, &ql), HTTP_R_API);
    assert_int_equal(nl, 7);
    assert_memory_equal(name, "cascade", 7);
    assert_int_equal(ql, 17);
    assert_memory_equal(q, "post=a&format=csv", 17);
    assert_int_equal(route("/v1/stats", &name, &nl, &q, &ql), HTTP_R_API);
    assert_int_equal(ql, 0);
    assert_int_equal(route("/v1/", &name, &nl, &q, &ql), HTTP_R_NOT_FOUND);
    assert_int_equal(route("/v1/a/b", &name, &nl, &q, &ql), HTTP_R_NOT_FOUND);
    assert_int_equal(route("/", &name, &nl, &q, &ql), HTTP_R_UI);
    assert_int_equal(route("/ui/cascade/x", &name, &nl, &q, &ql), HTTP_R_UI);
    assert_int_equal(route("/uix", &name, &nl, &q, &ql), HTTP_R_NOT_FOUND);
    assert_int_equal(route("/assets/app.js?v=1", &name, &nl, &q, &ql), HTTP_R_UI);
    assert_int_equal(nl, 14);
    assert_memory_equal(name, "/assets/app.js", 14);
    assert_int_equal(route("/assets/", &name, &nl, &q, &ql), HTTP_R_NOT_FOUND);
    assert_int_equal(route("/healthzz", &name, &nl, &q, &ql), HTTP_R_NOT_FOUND);
    assert_int_equal(route("*", &name, &nl, &q, &ql), HTTP_R_NOT_FOUND);
}

/* Every page path gets the one index.html; assets by name; nothing else. */
static void test_web_find(void **state)
{
    (void)state;
    const struct web_asset *index = web_find("/", 1);
    assert_non_null(index);
    assert_string_equal(index->name, "index.html");
    assert_string_equal(index->ctype, "text/html; charset=utf-8");
    assert_true(index->len > 0);
    assert_ptr_equal(web_find("/ui", 3), index);
    assert_ptr_equal(web_find("/ui/cascade/p1", 14), index);
    assert_ptr_equal(web_find("/ui/", 4), index);
    assert_null(web_find("/uix", 4));
    assert_null(web_find("", 0));
    assert_null(web_find("/assets/", 8));
    assert_null(web_find("/assets/nope.js", 15));
    assert_null(web_find("/assets/x/app.js", 16));
    if (web_bundle_built) {
        const struct web_asset *js = web_find("/assets/app.js", 14);
        assert_non_null(js);
        assert_string_equal(js->ctype, "text/javascript; charset=utf-8");
        assert_non_null(web_find("/assets/app.css", 15));
        assert_non_null(strstr((const char *)index->data, "/assets/app.js"));
    } else {
        assert_int_equal(web_nassets, 1);
    }
}

static struct http_in *in_with(const char *s, size_t len)
{
    struct http_in *h;
    assert_int_equal(http_in_new(NULL, &h), 0);
    assert_int_equal(http_in_append(h, s, len), 0);
    return h;
}

static void test_pipelined(void **state)
{
    const char s[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                     "HEAD /b?c=d HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /c HTTP/1.0\r\n\r\n"
                     "GET /never";
    struct http_in *h = in_with(s, sizeof(s) - 1);
    struct http_request r;
    assert_int_equal(http_in_next(h, &r), 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.verb, HTTP_VERB_GET);
    assert_true(r.keep_alive);
    assert_int_equal(r.target_len, 2);
    assert_memory_equal(r.target, "/a", 2);
    assert_int_equal(http_in_next(h, &r), 1);
    assert_int_equal(r.verb, HTTP_VERB_HEAD);
    assert_memory_equal(r.target, "/b?c=d", 6);
    assert_int_equal(http_in_next(h, &r), 1);
    assert_false(r.keep_alive); /* HTTP/1.0 without keep-alive */
    assert_true(r.http10);
    assert_int_equal(http_in_next(h, &r), 0); /* closed after that one */
    http_in_free(h);
}

static void test_incremental(void **state)
{
    const char s[] = "GET /v1/stats HTTP/1.1\r\nConnection: close\r\n\r\n";
    struct http_in *h;
    struct http_request r;
    assert_int_equal(http_in_new(NULL, &h), 0);
    for (size_t i = 0; i < sizeof(s) - 2; i++) {
        assert_int_equal(http_in_append(h, s + i, 1), 0);
        assert_int_equal(http_in_next(h, &r), 0);
    }
    assert_int_equal(http_in_append(h, s + sizeof(s) - 2, 1), 0);
    assert_int_equal(http_in_next(h, &r), 1);
    assert_int_equal(r.status, 0);
    assert_false(r.keep_alive);
    http_in_free(h);
}

static int status_of(const char *s, size_t len)
{
    struct http_in *h = in_with(s, len);
    struct http_request r = {0};
    int got = http_in_next(h, &r);
    http_in_free(h);
    return got ? r.status : -1;
}

static void test_errors(void **state)
{
    assert_int_equal(status_of("BLAH\r\n\r\n", 8), 400);
    /* POST takes no body: its parameters are in the query string */
    const char post[] = "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    assert_int_equal(status_of(post, sizeof(post) - 1), 413);
    const char put[] = "PUT / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    assert_int_equal(status_of(put, sizeof(put) - 1), 405);
    const char hosts[] = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
    assert_int_equal(status_of(hosts, sizeof(hosts) - 1), 400);
    const char body[] = "GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    assert_int_equal(status_of(body, sizeof(body) - 1), 413);
    const char chunked[] = "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_int_equal(status_of(chunked, sizeof(chunked) - 1), 413);
    const char del[] = "DELETE / HTTP/1.1\r\n\r\n";
    assert_int_equal(status_of(del, sizeof(del) - 1), 405);
}

static void test_limits(void **state)
{
    size_t big = 40 * 1024;
    char *s = malloc(big);
    assert_non_null(s);
    /* a long target: 414 */
    memset(s, 'a', big);
    memcpy(s, "GET /", 5);
    assert_int_equal(status_of(s, big), 414);
    /* a long header: 431 */
    const char head[] = "GET / HTTP/1.1\r\nX-Big: ";
    memcpy(s, head, sizeof(head) - 1);
    assert_int_equal(status_of(s, big), 431);
    /* a head just under the limit is fine */
    size_t n = HTTP_HEAD_MAX - 4;
    memset(s, 'b', n);
    memcpy(s, head, sizeof(head) - 1);
    memcpy(s + n, "\r\n\r\n", 4);
    assert_int_equal(status_of(s, n + 4), 0);
    free(s);
    /* the input buffer is bounded */
    struct http_in *h;
    assert_int_equal(http_in_new(NULL, &h), 0);
    char chunk[4096] = {0};
    int rc = 0;
    for (size_t i = 0; i <= HTTP_IN_MAX / sizeof(chunk) && !rc; i++)
        rc = http_in_append(h, chunk, sizeof(chunk));
    assert_int_equal(rc, -ENOSPC);
    http_in_free(h);
}

static int allowed(const char *list, const char *host)
{
    struct http_limits l;
    http_limits_default(&l);
    l.allowed_hosts = list;
    return http_host_allowed(&l, host, strlen(host));
}

static void test_hosts(void **state)
{
    (void)state;
    const char *served[] = {"", "  ", "127.0.0.1", "127.0.0.1:7402", "localhost", "LOCALHOST:1",
                            "localhost.", "[::1]", "[::1]:7402", "10.0.0.5:80", "[fe80::1]",
                            "255.255.255.255"};
    for (size_t i = 0; i < sizeof(served) / sizeof(served[0]); i++)
        assert_true(allowed(NULL, served[i]));
    const char *refused[] = {"evil.example", "evil.example:7402", "127.0.0.1.evil.example",
                             "localhost.evil.example", "1.2.3", "1.2.3.4.5", "256.1.1.1",
                             "127.0.0.1:x", "127.0.0.1:123456", "[::1", "[::g]", ":80",
                             "[::1]x", "local host", "0x7f.0.0.1"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        assert_false(allowed(NULL, refused[i]));
    assert_true(allowed("evil.example", "evil.example:80"));
    assert_true(allowed("a.example, evil.example", "EVIL.example"));
    assert_false(allowed("evil.example", "other.example"));
    assert_false(allowed("evil.example", "evil.examplex"));
    assert_true(allowed("*", "anything.at.all:1"));
    assert_true(allowed("a.example,*", "b.example"));
    char big[HTTP_HOST_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_false(allowed("*", big)); /* past the bytes kept: never a name on a list */
    char err[256];
    assert_int_equal(http_hosts_check("a.example,b-c.example,*,[::1]", err, sizeof(err)), 0);
    assert_int_equal(http_hosts_check("", err, sizeof(err)), -EINVAL);
    assert_int_equal(http_hosts_check("a.example:80", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "without a port"));
    assert_int_equal(http_hosts_check("a.example,,b", err, sizeof(err)), -EINVAL);
    assert_int_equal(http_hosts_check("a b", err, sizeof(err)), -EINVAL);
}

/* The request of s, screened: its status (0: served) and *extra. */
static int screen(const char *s, const char **extra)
{
    struct http_in *h = in_with(s, strlen(s));
    struct http_request r;
    assert_int_equal(http_in_next(h, &r), 1);
    assert_int_equal(r.status, 0);
    const char *name, *q;
    size_t nl, ql;
    enum http_route rt = http_route(r.target, r.target_len, &name, &nl, &q, &ql);
    char msg[512];
    struct http_limits l;
    http_limits_default(&l);
    int st = http_screen(&l, &r, rt, name, nl, q, ql, msg, sizeof(msg), extra);
    if (st)
        assert_true(strlen(msg) > 20);
    http_in_free(h);
    return st;
}

static void test_screen(void **state)
{
    (void)state;
    const char *x;
    assert_int_equal(screen("GET /v1/stats HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n", &x), 0);
    assert_int_equal(screen("GET /v1/stats HTTP/1.1\r\nHost: evil.example\r\n\r\n", &x), 421);
    assert_int_equal(screen("GET / HTTP/1.1\r\nHost: evil.example:9\r\n\r\n", &x), 421);
    assert_int_equal(screen("GET /healthz HTTP/1.0\r\n\r\n", &x), 0);
    assert_int_equal(screen("GET /v1/snapshot HTTP/1.1\r\n\r\n", &x), 405);
    assert_string_equal(x, "Allow: POST\r\n");
    assert_int_equal(screen("HEAD /v1/snapshot?format=csv HTTP/1.1\r\n\r\n", &x), 405);
    assert_int_equal(screen("GET /v1/analytics?refresh=true HTTP/1.1\r\n\r\n", &x), 405);
    assert_int_equal(screen("GET /v1/analytics?refresh=YES HTTP/1.1\r\n\r\n", &x), 405);
    assert_int_equal(screen("GET /v1/analytics?refresh=%74rue HTTP/1.1\r\n\r\n", &x), 405);
    assert_int_equal(
        screen("GET /v1/analytics?refresh=false&refresh=1 HTTP/1.1\r\n\r\n", &x), 405);
    assert_int_equal(screen("GET /v1/analytics?refresh=false HTTP/1.1\r\n\r\n", &x), 0);
    assert_int_equal(screen("GET /v1/analytics HTTP/1.1\r\n\r\n", &x), 0);
    /* not parsed here: left to http_api_request's 400 */
    assert_int_equal(screen("GET /v1/analytics?refresh=perhaps HTTP/1.1\r\n\r\n", &x), 0);
    assert_int_equal(screen("POST /v1/snapshot HTTP/1.1\r\n\r\n", &x), 415);
    assert_int_equal(screen("POST /v1/snapshot HTTP/1.1\r\nContent-Type: text/plain\r\n"
                            "Content-Length: 0\r\n\r\n",
                            &x),
                     415);
    assert_int_equal(screen("POST /v1/snapshot HTTP/1.1\r\nContent-Type: "
                            "application/x-www-form-urlencoded\r\n\r\n",
                            &x),
                     415);
    assert_int_equal(screen("POST /v1/snapshot HTTP/1.1\r\nContent-Type: application/jsonx\r\n\r\n",
                            &x),
                     415);
    assert_int_equal(screen("POST /v1/snapshot HTTP/1.1\r\nContent-Type: Application/JSON ; "
                            "charset=utf-8\r\n\r\n",
                            &x),
                     0);
    assert_int_equal(screen("POST /v1/stats HTTP/1.1\r\nContent-Type: application/json\r\n\r\n", &x),
                     0);
    assert_int_equal(screen("POST /metrics HTTP/1.1\r\nContent-Type: application/json\r\n\r\n", &x),
                     405);
    assert_string_equal(x, "Allow: GET, HEAD\r\n");
}

static int api(const char *name, const char *q, struct http_api *a, msgpack_object *params,
               msgpack_zone *z, char *msg)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int st = http_api_request(name, strlen(name), q, strlen(q), 7, &sb, a, msg, 256);
    if (!st) {
        msgpack_object o;
        size_t off = 0;
        char *copy = msgpack_zone_malloc(z, sb.size); /* the objects point into the bytes */
        assert_non_null(copy);
        memcpy(copy, sb.data, sb.size);
        assert_int_equal(msgpack_unpack(copy, sb.size, &off, z, &o), MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(o.type, MSGPACK_OBJECT_ARRAY);
        assert_int_equal(o.via.array.size, 4);
        *params = o.via.array.ptr[3];
    }
    msgpack_sbuffer_destroy(&sb);
    return st;
}

static const msgpack_object *param(const msgpack_object *ps, const char *key)
{
    return mp_map_get(ps->type == MSGPACK_OBJECT_ARRAY ? &ps->via.array.ptr[0] : ps, key);
}

static void test_api_request(void **state)
{
    struct http_api a;
    msgpack_object ps;
    msgpack_zone z;
    char msg[256];
    msgpack_zone_init(&z, 1024);
    assert_int_equal(api("nope", "", &a, &ps, &z, msg), 404);
    assert_int_equal(api("cascade", "post=a%20b%26c&format=csv", &a, &ps, &z, msg), 0);
    assert_int_equal(a.fmt, HTTP_FMT_CSV);
    const msgpack_object *v = param(&ps, "post");
    assert_non_null(v);
    assert_int_equal(v->via.str.size, 5);
    assert_memory_equal(v->via.str.ptr, "a b&c", 5);
    assert_null(param(&ps, "format"));
    assert_int_equal(api("cascade", "post=a&format=graphml&tree=false", &a, &ps, &z, msg), 0);
    assert_int_equal(a.fmt, HTTP_FMT_GRAPHML);
    v = param(&ps, "tree");
    assert_true(v && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean);
    assert_int_equal(api("stats", "format=dot", &a, &ps, &z, msg), 400);
    assert_int_equal(api("stats", "format=xml", &a, &ps, &z, msg), 400);
    assert_int_equal(api("top_cascades", "limit=abc", &a, &ps, &z, msg), 400);
    assert_int_equal(api("top_cascades", "limit=0", &a, &ps, &z, msg), 400);
    assert_int_equal(api("top_cascades", "bogus=1", &a, &ps, &z, msg), 400);
    assert_int_equal(api("cascade", "post=%zz", &a, &ps, &z, msg), 400);
    msgpack_zone_destroy(&z);
}

static void test_api_render_error(void **state)
{
    /* [1, 7, {"code": 404, "message": "unknown post x"}, nil] */
    const char resp[] = "\x94\x01\x07\x82\xa4"
                        "code\xcd\x01\x94\xa7message\xae"
                        "unknown post x\xc0";
    struct http_api a = {0};
    struct strbuf b = STRBUF_INIT;
    const char *ct;
    assert_int_equal(http_api_render(&a, resp, sizeof(resp) - 1, &b, &ct), 404);
    assert_non_null(strstr(b.p, "unknown post x"));
    assert_non_null(strstr(b.p, "\"error\""));
    sb_free(&b);
    assert_int_equal(http_api_render(&a, "\xc1", 1, &b, &ct), 500);
    sb_free(&b);
}

static void test_head(void **state)
{
    struct strbuf b = STRBUF_INIT;
    http_head(&b, 404, "application/json", 12, 0, 0, NULL);
    assert_non_null(strstr(b.p, "HTTP/1.1 404 Not Found\r\n"));
    assert_non_null(strstr(b.p, "Content-Length: 12\r\n"));
    assert_non_null(strstr(b.p, "Connection: close\r\n"));
    assert_true(b.n > 4 && memcmp(b.p + b.n - 4, "\r\n\r\n", 4) == 0);
    sb_free(&b);
}

/* Every line is a comment or `name{labels} value`, and every sample's family has a TYPE. */
static void check_prom(const char *text)
{
    char types[64][96];
    int ntypes = 0;
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        char l[512];
        size_t len = (size_t)(end - line);
        assert_true(len < sizeof(l));
        memcpy(l, line, len);
        l[len] = 0;
        if (strncmp(l, "# TYPE ", 7) == 0) {
            assert_true(ntypes < 64);
            assert_int_equal(sscanf(l + 7, "%95s", types[ntypes]), 1);
            ntypes++;
        } else if (l[0] != '#') {
            char name[128];
            size_t k = strcspn(l, "{ ");
            assert_true(k > 0 && k < sizeof(name));
            memcpy(name, l, k);
            name[k] = 0;
            const char *sp = strrchr(l, ' ');
            assert_non_null(sp);
            char *e;
            strtod(sp + 1, &e);
            assert_true(*e == 0 || strcmp(sp + 1, "+Inf") == 0);
            int typed = 0;
            for (int t = 0; t < ntypes; t++)
                typed |= strncmp(name, types[t], strlen(types[t])) == 0;
            assert_true(typed);
        }
        line = end + 1;
    }
}

static void test_prom(void **state)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    const char *keys[] = {"posts",          "accepted",  "rejected",
                          "rejected_cycle", "uptime_ms", "new_key"};
    for (int i = 0; i < 6; i++) {
        msgpack_pack_str(&pk, strlen(keys[i]));
        msgpack_pack_str_body(&pk, keys[i], strlen(keys[i]));
        msgpack_pack_uint64(&pk, (uint64_t)i * 1000 + 1);
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    struct prom_loop l = {0};
    prom_observe(&l.latency[PROM_PORT_HTTP], 70000);
    prom_observe(&l.latency[PROM_PORT_HTTP], 5000000000ull);
    struct strbuf out = STRBUF_INIT;
    prom_render(&u.data, &l, &out);
    assert_false(out.oom);
    check_prom(out.p);
    assert_non_null(strstr(out.p, "cascaded_posts 1\n"));
    assert_non_null(strstr(out.p, "cascaded_events_total{outcome=\"accepted\"} 1001\n"));
    assert_non_null(strstr(out.p, "{outcome=\"rejected\",reason=\"cycle\"} 3001\n"));
    assert_non_null(strstr(out.p, "cascaded_uptime_seconds 4.001\n"));
    assert_non_null(strstr(out.p, "cascaded_stats_new_key 5001\n"));
    assert_non_null(strstr(out.p, "_bucket{port=\"http\",le=\"0.0001\"} 1\n"));
    assert_non_null(strstr(out.p, "_bucket{port=\"http\",le=\"+Inf\"} 2\n"));
    sb_free(&out);
    prom_render(NULL, &l, &out); /* the engine did not answer: the loop's figures still */
    check_prom(out.p);
    assert_non_null(strstr(out.p, "cascaded_up 0\n"));
    sb_free(&out);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_route),
        cmocka_unit_test(test_web_find),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_hosts),
        cmocka_unit_test(test_screen),
        cmocka_unit_test(test_api_request),
        cmocka_unit_test(test_api_render_error),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_prom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
