/* libFuzzer target for the HTTP port's request path (query/http.c): the input is the bytes a
 * client sends, fed in pieces whose sizes come from the input's first byte, parsed request by
 * request, routed, and (for /v1/ targets) turned into msgpack-RPC requests through the method
 * table. Anything but a clean answer or refusal (a crash, a leak, UB) is a bug. */
#include <stddef.h>
#include <stdint.h>

#include "query/http.h"

static void handle(const struct http_request *r)
{
    const char *name, *query;
    size_t name_len, query_len;
    if (r->status)
        return;
    enum http_route route =
        http_route(r->target, r->target_len, &name, &name_len, &query, &query_len);
    /* the verb/Host screen sees every routed request, with and without an allow-list */
    char msg[256];
    const char *extra = NULL;
    struct http_limits lim;
    http_limits_default(&lim);
    http_screen(&lim, r, route, name, name_len, query, query_len, msg, sizeof(msg), &extra);
    lim.allowed_hosts = "example.org,*.x,[::1]";
    http_screen(&lim, r, route, name, name_len, query, query_len, msg, sizeof(msg), &extra);
    if (route != HTTP_R_API)
        return;
    struct http_api api;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    http_api_request(name, name_len, query, query_len, 1, &sb, &api, msg, sizeof(msg));
    msgpack_sbuffer_destroy(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] * 8 + 1; /* 1..2041 bytes per recv */
    struct http_in *h;
    if (http_in_new(NULL, &h))
        return 0;
    struct http_request r;
    for (size_t off = 1; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        if (http_in_append(h, (const char *)data + off, n))
            break;
        while (http_in_next(h, &r))
            handle(&r);
    }
    http_in_free(h);
    return 0;
}
