/* libcascade-client's msgpack-RPC (see cascade/client.h): requests packed into one output buffer
 * and sent together (pipelining), responses read one value at a time under a size bound and a
 * deadline. The answer is untrusted input: nothing here believes its sizes beyond max_answer. */
#include "cascade/client.h"

#include "cascade/schema.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK         (64u << 10)
#define MAX_ANSWER_DEFAULT (256u << 20) /* a big cascade tree is ~100 MiB */
#define TEXT_PARAMS_MAX    64

struct cc_rpc {
    int fd;
    char where[CC_WHERE_MAX];
    size_t max_answer;
    double timeout_s, deadline; /* deadline 0: each wait gets timeout_s (0: none) */
    msgpack_sbuffer out;        /* requests packed and not yet sent */
    msgpack_packer pk;
    msgpack_unpacker up;
    msgpack_unpacked ans;
    size_t received; /* bytes of the answer being read */
    uint64_t next_id;
    char http[96]; /* the first line of an HTTP answer */
    size_t http_len;
};

int cc_rpc_wrap(int fd, const char *where, size_t max_answer, struct cc_rpc **out)
{
    struct cc_rpc *r = calloc(1, sizeof(*r));
    if (!r || !msgpack_unpacker_init(&r->up, READ_CHUNK)) {
        free(r);
        close(fd);
        return -ENOMEM;
    }
    r->fd = fd;
    snprintf(r->where, sizeof(r->where), "%s", where);
    r->max_answer = max_answer ? max_answer : MAX_ANSWER_DEFAULT;
    r->next_id = 1;
    msgpack_sbuffer_init(&r->out);
    msgpack_packer_init(&r->pk, &r->out, msgpack_sbuffer_write);
    msgpack_unpacked_init(&r->ans);
    *out = r;
    return 0;
}

void cc_rpc_close(struct cc_rpc *r)
{
    if (!r)
        return;
    close(r->fd);
    msgpack_unpacked_destroy(&r->ans);
    msgpack_unpacker_destroy(&r->up);
    msgpack_sbuffer_destroy(&r->out);
    free(r);
}

int cc_rpc_detach(struct cc_rpc *r)
{
    if (r->out.size || msgpack_unpacker_message_size(&r->up))
        return -EBUSY;
    int fd = r->fd;
    msgpack_unpacked_destroy(&r->ans);
    msgpack_unpacker_destroy(&r->up);
    msgpack_sbuffer_destroy(&r->out);
    free(r);
    return fd;
}

int cc_rpc_fd(const struct cc_rpc *r)
{
    return r->fd;
}

const char *cc_rpc_where(const struct cc_rpc *r)
{
    return r->where;
}

void cc_rpc_set_timeout(struct cc_rpc *r, double timeout_s)
{
    r->timeout_s = timeout_s;
    r->deadline = 0;
}

void cc_rpc_set_deadline(struct cc_rpc *r, double deadline)
{
    r->deadline = deadline;
}

/* The deadline of a wait starting now. 0: none. */
static double deadline_of(const struct cc_rpc *r)
{
    if (r->deadline > 0)
        return r->deadline;
    return r->timeout_s > 0 ? cc_now() + r->timeout_s : 0;
}

int cc_rpc_send(struct cc_rpc *r, const void *buf, size_t len)
{
    const char *p = buf;
    double deadline = deadline_of(r);
    while (len > 0) {
        ssize_t k = send(r->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!cc_wait(r->fd, POLLOUT, deadline))
                return -ETIMEDOUT;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EPIPE || errno == ECONNRESET))
            return -EPIPE;
        if (k < 0)
            return -errno;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

/* Reads more of the answer: 0 or a negative errno as cc_rpc_recv's. */
static int read_more(struct cc_rpc *r, double deadline)
{
    if (r->received >= r->max_answer)
        return -EMSGSIZE;
    if (!msgpack_unpacker_reserve_buffer(&r->up, READ_CHUNK))
        return -ENOMEM;
    for (;;) {
        ssize_t k = recv(r->fd, msgpack_unpacker_buffer(&r->up), READ_CHUNK, MSG_DONTWAIT);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!cc_wait(r->fd, POLLIN, deadline))
                return -ETIMEDOUT;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return -EPIPE;
        const char *b = msgpack_unpacker_buffer(&r->up);
        if (r->received == 0 && k >= 5 && !memcmp(b, "HTTP/", 5)) {
            const char *eol = memchr(b, '\r', (size_t)k);
            size_t n = eol ? (size_t)(eol - b) : k < 80 ? (size_t)k : 80;
            r->http_len = n < sizeof(r->http) ? n : sizeof(r->http);
            memcpy(r->http, b, r->http_len);
            return -EPROTONOSUPPORT;
        }
        msgpack_unpacker_buffer_consumed(&r->up, (size_t)k);
        r->received += (size_t)k;
        return 0;
    }
}

int cc_rpc_recv(struct cc_rpc *r, const msgpack_object **out)
{
    double deadline = deadline_of(r);
    for (;;) {
        msgpack_unpack_return u = msgpack_unpacker_next(&r->up, &r->ans);
        if (u == MSGPACK_UNPACK_SUCCESS) {
            /* what is left in the buffer belongs to the next answers */
            r->received = msgpack_unpacker_message_size(&r->up);
            *out = &r->ans.data;
            return 0;
        }
        if (u == MSGPACK_UNPACK_NOMEM_ERROR) /* also a hostile header's huge count */
            return -EOVERFLOW;
        if (u != MSGPACK_UNPACK_CONTINUE)
            return -EBADMSG;
        int rc = read_more(r, deadline);
        if (rc)
            return rc;
    }
}

const char *cc_rpc_http_line(const struct cc_rpc *r, size_t *len)
{
    *len = r->http_len;
    return r->http;
}

msgpack_packer *cc_rpc_begin(struct cc_rpc *r, const char *method, uint32_t nparams,
                             uint64_t *msgid)
{
    *msgid = r->next_id++;
    return proto_rpc_request_pack(&r->pk, *msgid, method, strlen(method), nparams) ? NULL : &r->pk;
}

int cc_rpc_begin_text(struct cc_rpc *r, const char *method, const char *const *params,
                      size_t nparams, uint64_t *msgid, char *err, size_t errlen)
{
    struct qtext_param ps[TEXT_PARAMS_MAX];
    if (nparams > TEXT_PARAMS_MAX) {
        snprintf(err, errlen, "more than %d parameters", TEXT_PARAMS_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < nparams; i++) {
        const char *eq = strchr(params[i], '=');
        if (!eq || eq == params[i]) {
            snprintf(err, errlen, "a parameter is key=value, not %.64s", params[i]);
            return -EINVAL;
        }
        ps[i] = (struct qtext_param){.key = params[i],
                                     .key_len = (size_t)(eq - params[i]),
                                     .val = eq + 1,
                                     .val_len = strlen(eq + 1)};
    }
    size_t mark = r->out.size; /* a refused request leaves nothing behind */
    *msgid = r->next_id;
    int rc = qrequest_from_text(method, strlen(method), ps, nparams, *msgid, &r->out, err, errlen);
    if (rc) {
        r->out.size = mark;
        return rc;
    }
    r->next_id++;
    return 0;
}

int cc_rpc_flush(struct cc_rpc *r)
{
    int rc = cc_rpc_send(r, r->out.data, r->out.size);
    msgpack_sbuffer_clear(&r->out);
    return rc;
}

int cc_rpc_next(struct cc_rpc *r, struct proto_rpc_response *resp)
{
    const msgpack_object *o;
    int rc = cc_rpc_recv(r, &o);
    if (rc)
        return rc;
    return proto_rpc_response_parse(o, resp);
}

/* A message for err from a failed exchange. */
static int exchange_failed(const struct cc_rpc *r, int rc, char *err, size_t errlen)
{
    switch (rc) {
    case -ETIMEDOUT:
        snprintf(err, errlen, "timed out waiting for %s", r->where);
        break;
    case -EPIPE:
        snprintf(err, errlen, "%s closed the connection", r->where);
        break;
    case -EPROTONOSUPPORT:
        snprintf(err, errlen, "%s answered in HTTP: it is an HTTP port, not the query port",
                 r->where);
        break;
    case -EPROTO:
    case -EBADMSG:
    case -EOVERFLOW:
        snprintf(err, errlen, "%s sent no msgpack-RPC response (is it the query port?)", r->where);
        break;
    default:
        snprintf(err, errlen, "%s: %s", r->where, strerror(-rc));
    }
    return rc;
}

int cc_rpc_call(struct cc_rpc *r, const char *method, const char *const *params, size_t nparams,
                struct proto_rpc_response *resp, char *err, size_t errlen)
{
    uint64_t id;
    int rc = cc_rpc_begin_text(r, method, params, nparams, &id, err, errlen);
    if (rc)
        return rc;
    if ((rc = cc_rpc_flush(r)) && rc != -EPIPE)
        return exchange_failed(r, rc, err, errlen);
    /* after -EPIPE the server may still have said why it closed: read it */
    if ((rc = cc_rpc_next(r, resp)))
        return exchange_failed(r, rc, err, errlen);
    if (resp->has_id && resp->msgid != id)
        return exchange_failed(r, -EPROTO, err, errlen);
    if (!resp->has_id && !resp->error)
        return exchange_failed(r, -EPROTO, err, errlen);
    return 0;
}

int cc_rpc_auth(struct cc_rpc *r, const char *token, char *err, size_t errlen)
{
    struct proto_rpc_response resp;
    proto_auth_pack_rpc(&r->pk, 0, token);
    int rc = cc_rpc_flush(r);
    if ((rc && rc != -EPIPE) || (rc = cc_rpc_next(r, &resp)))
        return exchange_failed(r, rc, err, errlen);
    if (resp.error) {
        snprintf(err, errlen, "%s refused the token: %.*s", r->where,
                 resp.message ? (int)resp.message_len : 1, resp.message ? resp.message : "?");
        return -EACCES;
    }
    return 0;
}

int cc_rpc_open(const char *host, const char *port, double timeout_s, const char *token,
                struct cc_rpc **out, char *err, size_t errlen)
{
    char where[CC_WHERE_MAX], why[160];
    cc_where(where, sizeof(where), host, port);
    int fd = cc_connect(host, port, timeout_s, 0, why, sizeof(why));
    if (fd < 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", where, why);
        return fd;
    }
    int rc = cc_rpc_wrap(fd, where, 0, out);
    if (rc) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    cc_rpc_set_timeout(*out, timeout_s);
    if (token && (rc = cc_rpc_auth(*out, token, err, errlen))) {
        cc_rpc_close(*out);
        *out = NULL;
    }
    return rc;
}
