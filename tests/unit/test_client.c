/* libcascade-client against a scripted server on a loopback socket (this test plays the server,
 * with proto's encoders): the ingest stream's batches, acks, rejections named by index, the
 * window, a fatal with resend_from and the resume point, replies that are no acks; RPC calls one
 * at a time and pipelined, an HTTP answer, a server that closes, and a deadline. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "cascade/client.h"

/* ---- the scripted server ---- */

struct server {
    int lfd, fd;
    char port[16];
    msgpack_unpacker up; /* what the client sent */
};

static void server_listen(struct server *s)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &len), 0);
    snprintf(s->port, sizeof(s->port), "%u", ntohs(a.sin_port));
    s->fd = -1;
    assert_true(msgpack_unpacker_init(&s->up, 1 << 16));
}

static void server_accept(struct server *s)
{
    s->fd = accept(s->lfd, NULL, NULL);
    assert_true(s->fd >= 0);
}

static void server_close(struct server *s)
{
    if (s->fd >= 0)
        close(s->fd);
    close(s->lfd);
    msgpack_unpacker_destroy(&s->up);
}

/* The next value the client sent (blocking), into u (the caller destroys it). */
static const msgpack_object *server_read(struct server *s, msgpack_unpacked *u)
{
    msgpack_unpacked_init(u);
    while (msgpack_unpacker_next(&s->up, u) != MSGPACK_UNPACK_SUCCESS) {
        assert_true(msgpack_unpacker_reserve_buffer(&s->up, 4096));
        ssize_t n = recv(s->fd, msgpack_unpacker_buffer(&s->up), 4096, 0);
        assert_true(n > 0);
        msgpack_unpacker_buffer_consumed(&s->up, (size_t)n);
    }
    return &u->data;
}

static void server_send(struct server *s, const void *p, size_t len)
{
    assert_int_equal(send(s->fd, p, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void server_ack(struct server *s, uint64_t ok, uint64_t dup, uint64_t rej,
                       const char *const *errs, uint32_t nerr)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    assert_int_equal(proto_ack_pack(&pk, ok, dup, rej, errs, nerr), 0);
    server_send(s, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Services the stream until an ack (or a failure) has been taken in. */
static void client_take(struct cc_ingest *in)
{
    for (int i = 0; i < 200; i++) {
        struct pollfd p;
        cc_ingest_pollfd(in, &p);
        if (p.fd < 0)
            return;
        if (poll(&p, 1, 50) > 0 && cc_ingest_service(in, p.revents))
            return;
        if (cc_ingest_state(in, NULL) != CC_INGEST_OPEN)
            return;
    }
    fail_msg("no ack taken in");
}

static struct event_raw event(const char *post, const char *actor)
{
    struct event_raw r = {0};
    r.post = (struct event_field){.type = EVF_STR, .str = post, .len = (uint32_t)strlen(post)};
    if (actor)
        r.actor =
            (struct event_field){.type = EVF_STR, .str = actor, .len = (uint32_t)strlen(actor)};
    r.ts = (struct event_field){.type = EVF_UINT, .u = 1000};
    return r;
}

/* ---- ingest ---- */

struct rejects {
    int n;
    uint64_t index[8];
    char reason[8][32];
};

static void on_reject(void *ctx, uint64_t index, const char *reason)
{
    struct rejects *r = ctx;
    assert_true(r->n < 8);
    r->index[r->n] = index;
    snprintf(r->reason[r->n++], sizeof(r->reason[0]), "%s", reason);
}

static void test_ingest_acks(void **state)
{
    (void)state;
    struct server s;
    server_listen(&s);
    struct rejects rj = {0};
    struct cc_ingest_opts o = {
        .batch_events = 2, .token = "0123456789abcdef", .on_reject = on_reject, .ctx = &rj};
    struct cc_ingest *in;
    char err[256];
    assert_int_equal(cc_ingest_open("127.0.0.1", s.port, &o, &in, err, sizeof err), 0);
    server_accept(&s);
    const char *posts[] = {"p0", "p1", "p2"};
    for (int i = 0; i < 3; i++) {
        struct event_raw ev = event(posts[i], i == 1 ? NULL : "a");
        assert_int_equal(cc_ingest_add(in, &ev), 0);
    }
    cc_ingest_flush(in);
    cc_ingest_service(in, 0); /* writes */

    /* the stream opens with {"auth": TOKEN}, then a batch of 2 and one of 1 */
    msgpack_unpacked u;
    const msgpack_object *v = server_read(&s, &u);
    assert_non_null(mp_map_get(v, "auth"));
    msgpack_unpacked_destroy(&u);
    v = server_read(&s, &u);
    assert_int_equal(v->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(v->via.array.size, 2);
    msgpack_unpacked_destroy(&u);
    v = server_read(&s, &u);
    assert_int_equal(v->via.array.size, 1);
    msgpack_unpacked_destroy(&u);

    struct cc_ingest_counts c;
    cc_ingest_counts(in, &c);
    assert_int_equal(c.added, 3);
    assert_int_equal(c.sent, 3);
    assert_false(cc_ingest_idle(in));
    assert_int_equal(cc_ingest_resume(in), 0);

    /* two acked, the second rejected; then the third, a duplicate */
    char e1[PROTO_ACK_ERR_LEN];
    proto_ack_err_format(e1, sizeof e1, 1, "missing_actor");
    const char *errs[] = {e1};
    server_ack(&s, 1, 0, 1, errs, 1);
    client_take(in);
    assert_int_equal(rj.n, 1);
    assert_int_equal(rj.index[0], 1);
    assert_string_equal(rj.reason[0], "missing_actor");
    assert_int_equal(cc_ingest_resume(in), 2);
    server_ack(&s, 1, 1, 1, NULL, 0);
    client_take(in);
    assert_true(cc_ingest_idle(in));
    assert_int_equal(cc_ingest_wait(in, 1), 0);
    cc_ingest_counts(in, &c);
    assert_int_equal(c.ok + c.dup + c.rej, 3);
    assert_int_equal(cc_ingest_resume(in), 3);
    assert_int_equal(cc_ingest_state(in, NULL), CC_INGEST_OPEN);
    cc_ingest_close(in);
    server_close(&s);
}

static void test_ingest_window_and_fatal(void **state)
{
    (void)state;
    struct server s;
    server_listen(&s);
    struct cc_ingest_opts o = {.window_events = 4, .batch_events = 4};
    struct cc_ingest *in;
    char err[256];
    assert_int_equal(cc_ingest_open("127.0.0.1", s.port, &o, &in, err, sizeof err), 0);
    server_accept(&s);
    struct event_raw ev = event("p", "a");
    int added = 0;
    while (!cc_ingest_full(in)) {
        assert_int_equal(cc_ingest_add(in, &ev), 0);
        added++;
    }
    assert_int_equal(added, 4); /* the window */
    cc_ingest_service(in, 0);
    msgpack_unpacked u;
    server_read(&s, &u);
    msgpack_unpacked_destroy(&u);
    /* one acked, then the server gives up at event 1 */
    server_ack(&s, 1, 0, 0, NULL, 0);
    client_take(in);
    assert_false(cc_ingest_full(in));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t from = 1;
    proto_fatal_pack(&pk, "the server could not log event 1", &from);
    server_send(&s, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    client_take(in);
    const char *why;
    assert_int_equal(cc_ingest_state(in, &why), CC_INGEST_FATAL);
    assert_non_null(strstr(why, "could not log event 1"));
    assert_int_equal(cc_ingest_resume(in), 1);
    assert_true(cc_ingest_idle(in));
    assert_int_equal(cc_ingest_wait(in, 1), -EPIPE);
    assert_int_equal(cc_ingest_add(in, &ev), -EPIPE);
    cc_ingest_close(in);
    server_close(&s);
}

static void test_ingest_bad_replies(void **state)
{
    (void)state;
    /* an ack covering more than was sent, then something that is no ack at all */
    for (int round = 0; round < 2; round++) {
        struct server s;
        server_listen(&s);
        struct cc_ingest *in;
        char err[256];
        assert_int_equal(cc_ingest_open("127.0.0.1", s.port, NULL, &in, err, sizeof err), 0);
        server_accept(&s);
        struct event_raw ev = event("p", "a");
        assert_int_equal(cc_ingest_add(in, &ev), 0);
        cc_ingest_flush(in);
        cc_ingest_service(in, 0);
        if (round == 0)
            server_ack(&s, 5, 0, 0, NULL, 0);
        else
            server_send(&s, "\x81\xa2ok\xa1x", 6); /* {"ok": "x"} */
        client_take(in);
        const char *why;
        assert_int_equal(cc_ingest_state(in, &why), CC_INGEST_LOST);
        assert_non_null(strstr(why, round == 0 ? "do not match" : "not an ack"));
        assert_int_equal(cc_ingest_resume(in), 0);
        cc_ingest_close(in);
        server_close(&s);
    }
}

static void test_connect_refused(void **state)
{
    (void)state;
    struct server s;
    server_listen(&s);
    char port[16];
    snprintf(port, sizeof port, "%s", s.port);
    server_close(&s); /* nobody listens there now */
    struct cc_ingest *in;
    char err[256];
    assert_int_equal(cc_ingest_open("127.0.0.1", port, NULL, &in, err, sizeof err), -ECONNREFUSED);
    assert_non_null(strstr(err, "cannot connect to 127.0.0.1:"));
    char why[128];
    assert_int_equal(cc_connect("no-such-host.invalid", "1", 1, 0, why, sizeof why), -CC_ERESOLVE);
    char where[CC_WHERE_MAX];
    cc_where(where, sizeof where, "::1", "7401");
    assert_string_equal(where, "[::1]:7401");
}

/* ---- RPC ---- */

static void answer(struct server *s, uint64_t msgid, const char *key, uint64_t val)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    const msgpack_object id = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = msgid};
    if (key) {
        proto_rpc_response_head(&pk, &id);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, key, strlen(key));
        msgpack_pack_uint64(&pk, val);
    } else {
        proto_rpc_error_pack(&pk, &id, 404, "unknown post nope");
    }
    server_send(s, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* A query connection to the scripted server, accepted there. */
static struct cc_rpc *rpc_to(struct server *s, int flags)
{
    struct cc_rpc *r;
    char why[128];
    int fd = cc_connect("127.0.0.1", s->port, 5, flags, why, sizeof why);
    assert_true(fd >= 0);
    assert_int_equal(cc_rpc_wrap(fd, "here", 0, &r), 0);
    cc_rpc_set_timeout(r, 5);
    server_accept(s);
    return r;
}

static void test_rpc_calls(void **state)
{
    (void)state;
    struct server s;
    server_listen(&s);
    struct cc_rpc *r = rpc_to(&s, 0);
    char err[256];

    /* pipelined: two requests out before either answer; two refused locally in between */
    uint64_t a, b;
    assert_int_equal(cc_rpc_begin_text(r, "stats", NULL, 0, &a, err, sizeof err), 0);
    const char *p[] = {"post=nope"};
    assert_int_equal(cc_rpc_begin_text(r, "no_such_method", NULL, 0, &b, err, sizeof err), -ENOENT);
    const char *bad[] = {"limit"};
    assert_int_equal(cc_rpc_begin_text(r, "top_cascades", bad, 1, &b, err, sizeof err), -EINVAL);
    assert_int_equal(cc_rpc_begin_text(r, "cascade", p, 1, &b, err, sizeof err), 0);
    assert_int_equal(b, a + 1); /* the refused ones took no id */
    assert_int_equal(cc_rpc_flush(r), 0);
    msgpack_unpacked u;
    const msgpack_object *req = server_read(&s, &u);
    assert_int_equal(req->via.array.ptr[1].via.u64, a);
    assert_memory_equal(req->via.array.ptr[2].via.str.ptr, "stats", 5);
    msgpack_unpacked_destroy(&u);
    req = server_read(&s, &u);
    assert_int_equal(req->via.array.ptr[1].via.u64, b); /* the refused ones left nothing */
    msgpack_unpacked_destroy(&u);
    answer(&s, a, "posts", 7);
    answer(&s, b, NULL, 0);
    struct proto_rpc_response resp;
    assert_int_equal(cc_rpc_next(r, &resp), 0);
    assert_int_equal(resp.msgid, a);
    assert_int_equal(mp_map_get(resp.result, "posts")->via.u64, 7);
    assert_int_equal(cc_rpc_next(r, &resp), 0);
    assert_int_equal(resp.msgid, b);
    assert_int_equal(resp.code, 404);

    /* one call; then a deadline that passes with no answer */
    uint64_t next = b + 1;
    answer(&s, next, "size", 3); /* answered ahead: the client reads it after sending */
    assert_int_equal(cc_rpc_call(r, "cascade", p, 1, &resp, err, sizeof err), 0);
    assert_int_equal(mp_map_get(resp.result, "size")->via.u64, 3);
    server_read(&s, &u);
    msgpack_unpacked_destroy(&u);
    cc_rpc_set_deadline(r, cc_now() + 0.05);
    const msgpack_object *o;
    assert_int_equal(cc_rpc_recv(r, &o), -ETIMEDOUT);

    /* the server closes: -EPIPE */
    close(s.fd);
    s.fd = -1;
    cc_rpc_set_timeout(r, 5);
    assert_int_equal(cc_rpc_recv(r, &o), -EPIPE);
    cc_rpc_close(r);
    server_close(&s);
}

static void test_rpc_http_and_auth(void **state)
{
    (void)state;
    struct server s;
    server_listen(&s);
    struct cc_rpc *r = rpc_to(&s, 0);
    char err[256];
    const char http[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    server_send(&s, http, sizeof http - 1);
    const msgpack_object *o;
    assert_int_equal(cc_rpc_recv(r, &o), -EPROTONOSUPPORT);
    size_t len;
    const char *line = cc_rpc_http_line(r, &len);
    assert_int_equal(len, strlen("HTTP/1.1 400 Bad Request"));
    assert_memory_equal(line, "HTTP/1.1 400 Bad Request", len);
    cc_rpc_close(r);
    close(s.fd);

    /* auth: a refusal comes back as -EACCES with the server's words */
    r = rpc_to(&s, CC_BLOCKING);
    int fd = cc_rpc_fd(r);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    const msgpack_object zero = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = 0};
    proto_rpc_error_pack(&pk, &zero, 401, "authentication failed: wrong token");
    server_send(&s, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(cc_rpc_auth(r, "0123456789abcdef", err, sizeof err), -EACCES);
    assert_non_null(strstr(err, "wrong token"));
    msgpack_unpacked u;
    uint64_t id;
    assert_int_equal(proto_auth_rpc_request(server_read(&s, &u), "0123456789abcdef", 16, &id),
                     PROTO_AUTH_OK);
    msgpack_unpacked_destroy(&u);
    assert_int_equal(cc_rpc_detach(r), fd);
    close(fd);
    server_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ingest_acks),        cmocka_unit_test(test_ingest_window_and_fatal),
        cmocka_unit_test(test_ingest_bad_replies), cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_rpc_calls),          cmocka_unit_test(test_rpc_http_and_auth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
