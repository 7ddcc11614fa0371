/* The engine and analytics worker behind fuzz_rpc (see fuzz_rpc.h). */
#include "fuzz_rpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analytics/worker.h"

struct ev {
    const char *post, *parent, *actor;
    int64_t ts;
    const char *kind, *actor_type, *content, *label;
};

static const struct ev events[] = {
    /* a claim labelled false, reshared in a tree of depth 3 */
    {"p1", NULL, "alice", 1700000000000, NULL, "account", FUZZ_RPC_CONTENT, FUZZ_RPC_LABEL},
    {"p2", "p1", "bob", 1700000060000, "share", NULL, NULL, NULL},
    {"p3", "p2", "carol", 1700000120000, "quote", NULL, NULL, NULL},
    {"p4", "p1", "bob", 1700000180000, "reply", NULL, NULL, NULL},
    {"p5", "p3", "dave", 1700000240000, NULL, "page", NULL, NULL},
    /* a true claim from a page, integer-looking ids */
    {"100", NULL, "42", 1700000300000, NULL, "page", "https://news.example/1", "true"},
    {"101", "100", "alice", 1700000310000, NULL, NULL, NULL, NULL},
    {"102", "101", "erin", 1700000320000, NULL, NULL, NULL, NULL},
    /* under a post never seen (a placeholder root) */
    {"q1", "ghost", "frank", 1700000400000, NULL, NULL, NULL, NULL},
    {"q2", "q1", "alice", 1700000410000, NULL, NULL, NULL, NULL},
    /* u1..u3 post the same three keys within seconds of each other: a coordinated group */
    {"c1", NULL, "u1", 1700001000000, NULL, NULL, "https://x.example/a", NULL},
    {"c2", NULL, "u2", 1700001001000, NULL, NULL, "https://x.example/a", NULL},
    {"c3", NULL, "u3", 1700001002000, NULL, NULL, "https://x.example/a", NULL},
    {"c4", NULL, "u1", 1700002000000, NULL, NULL, "https://x.example/b", NULL},
    {"c5", NULL, "u2", 1700002001000, NULL, NULL, "https://x.example/b", NULL},
    {"c6", NULL, "u3", 1700002002000, NULL, NULL, "https://x.example/b", NULL},
    {"c7", NULL, "u1", 1700003000000, NULL, NULL, "https://x.example/c", NULL},
    {"c8", NULL, "u2", 1700003001000, NULL, NULL, "https://x.example/c", NULL},
    {"c9", NULL, "u3", 1700003002000, NULL, NULL, "https://x.example/c", NULL},
    {"c10", "c1", "bob", 1700003100000, NULL, NULL, NULL, "unverified"},
};

static void str_field(struct event_field *f, const char *s)
{
    if (!s)
        return;
    f->type = EVF_STR;
    f->str = s;
    f->len = (uint32_t)strlen(s);
}

struct engine *fuzz_rpc_engine(void)
{
    struct engine *e;
    if (engine_new(&e) != 0)
        abort();
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        const struct ev *v = &events[i];
        struct event_raw raw;
        memset(&raw, 0, sizeof(raw));
        str_field(&raw.post, v->post);
        str_field(&raw.parent, v->parent);
        str_field(&raw.actor, v->actor);
        str_field(&raw.kind, v->kind);
        str_field(&raw.actor_type, v->actor_type);
        str_field(&raw.content, v->content);
        str_field(&raw.label, v->label);
        raw.ts.type = EVF_UINT;
        raw.ts.u = (uint64_t)v->ts;
        int rc = engine_apply_raw(e, &raw);
        if (rc != EVENT_OK) {
            fprintf(stderr, "fuzz_rpc: event %s: %s\n", v->post, event_outcome_name(rc));
            abort();
        }
    }
    return e;
}

struct analytics *fuzz_rpc_analytics(struct engine *e)
{
    struct analytics *a;
    char err[256];
    if (analytics_start(&a, 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_rpc: analytics: %s\n", err);
        abort();
    }
    analytics_request(a);
    analytics_tick(a, e);
    for (int i = 0; i < 1000; i++) { /* up to 10 s; a few ms on this graph */
        struct analytics_result *r = analytics_get(a);
        if (r) {
            analytics_put(a, r);
            return a;
        }
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    }
    fprintf(stderr, "fuzz_rpc: no analytics result after 10 s\n");
    abort();
}
