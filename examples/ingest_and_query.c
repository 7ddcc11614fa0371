/* ingest_and_query: a short program on libcascade-client. It sends five share events to a running
 * cascaded (one of them without an actor, which the server rejects), waits until every event is
 * acknowledged, then asks the query port for the cascade of the first post and for `stats`.
 *
 *   cc ingest_and_query.c $(pkg-config --cflags --libs cascade-client) -o ingest_and_query
 *   ./ingest_and_query 127.0.0.1 7400 7401 [TOKEN]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <cascade/client.h>

static struct event_field str(const char *s)
{
    return (struct event_field){.type = EVF_STR, .str = s, .len = (uint32_t)strlen(s)};
}

static struct event_field num(uint64_t v)
{
    return (struct event_field){.type = EVF_UINT, .u = v};
}

static void on_reject(void *ctx, uint64_t index, const char *reason)
{
    (void)ctx;
    printf("rejected event %" PRIu64 ": %s\n", index, reason);
}

/* A field of an answer map as a str ("?" when it is not one), or as an unsigned int (0). */
static const char *get_str(const msgpack_object *map, const char *key, int *len)
{
    const msgpack_object *v = mp_map_get(map, key);
    int ok = v && v->type == MSGPACK_OBJECT_STR;
    *len = ok ? (int)v->via.str.size : 1;
    return ok ? v->via.str.ptr : "?";
}

static uint64_t get_u64(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = mp_map_get(map, key);
    return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

static int ingest(const char *host, const char *port, const char *token)
{
    struct cc_ingest_opts o = {.token = token, .on_reject = on_reject};
    struct cc_ingest *s;
    char err[512];
    if (cc_ingest_open(host, port, &o, &s, err, sizeof err)) {
        fprintf(stderr, "ingest_and_query: %s\n", err);
        return 1;
    }
    const int64_t t0 = 1700000000000;
    struct event_raw ev[5] = {
        {.post = str("p1"), .actor = str("alice"), .ts = num(t0), .content = str("claim-1")},
        {.post = str("p2"), .actor = str("bob"), .ts = num(t0 + 1000), .parent = str("p1")},
        {.post = str("p3"), .actor = str("carol"), .ts = num(t0 + 2000), .parent = str("p2")},
        {.post = str("p4"),
         .actor = str("dave"),
         .ts = num(t0 + 3000),
         .parent = str("p1"),
         .kind = str("quote")},
        {.post = str("p5"), .ts = num(t0 + 4000)}, /* no actor: rejected */
    };
    for (int i = 0; i < 5; i++)
        if (cc_ingest_add(s, &ev[i])) {
            fprintf(stderr, "ingest_and_query: cannot queue event %d\n", i);
            cc_ingest_close(s);
            return 1;
        }
    int rc = cc_ingest_wait(s, 30);
    struct cc_ingest_counts c;
    cc_ingest_counts(s, &c);
    printf("ingest: sent %" PRIu64 " ok %" PRIu64 " dup %" PRIu64 " rej %" PRIu64 "\n", c.added,
           c.ok, c.dup, c.rej);
    if (rc) {
        const char *why;
        cc_ingest_state(s, &why);
        fprintf(stderr, "ingest_and_query: %s; resend from event %" PRIu64 "\n",
                rc == -ETIMEDOUT ? "timed out" : why, cc_ingest_resume(s));
    }
    cc_ingest_close(s);
    return rc ? 1 : 0;
}

static int query(const char *host, const char *port, const char *token)
{
    struct cc_rpc *r;
    struct proto_rpc_response resp;
    char err[512];
    if (cc_rpc_open(host, port, 30, token, &r, err, sizeof err)) {
        fprintf(stderr, "ingest_and_query: %s\n", err);
        return 1;
    }
    const char *params[] = {"post=p3"};
    int rc = cc_rpc_call(r, "cascade", params, 1, &resp, err, sizeof err);
    if (!rc && !resp.error) {
        int len;
        const char *root = get_str(resp.result, "root", &len);
        printf("cascade p3: root %.*s size %" PRIu64 " depth %" PRIu64 "\n", len, root,
               get_u64(resp.result, "size"), get_u64(resp.result, "depth"));
    }
    /* two calls pipelined: both requests go out before either answer is read */
    uint64_t id1, id2;
    if (!rc && !(rc = cc_rpc_begin_text(r, "stats", NULL, 0, &id1, err, sizeof err)) &&
        !(rc = cc_rpc_begin_text(r, "cascade", (const char *const[]){"post=nope"}, 1, &id2, err,
                                 sizeof err)) &&
        !(rc = cc_rpc_flush(r)) && !(rc = cc_rpc_next(r, &resp)) && resp.msgid == id1)
        printf("stats: accepted %" PRIu64 " rejected %" PRIu64 " cascades %" PRIu64 "\n",
               get_u64(resp.result, "accepted"), get_u64(resp.result, "rejected"),
               get_u64(resp.result, "cascades"));
    if (!rc && !(rc = cc_rpc_next(r, &resp)) && resp.msgid == id2 && resp.error)
        printf("cascade nope: error %" PRIu64 "\n", resp.code);
    if (rc)
        fprintf(stderr, "ingest_and_query: query failed: %s\n", rc < -1 ? err : "?");
    cc_rpc_close(r);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: ingest_and_query HOST INGEST_PORT QUERY_PORT [TOKEN]\n");
        return 2;
    }
    const char *token = argc > 4 ? argv[4] : NULL;
    if (ingest(argv[1], argv[2], token))
        return 1;
    return query(argv[1], argv[3], token);
}
