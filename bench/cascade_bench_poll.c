/* --poll METHOD: one more RPC connection that calls METHOD (no parameters) every --poll-every
 * seconds while the timed phase runs, as a dashboard would (`labels`, `stats`), so that the
 * engine-thread cost of such calls shows in the server's pauses and in the calls' own latency. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/client.h"
#include "cascade/proto.h"
#include "cascade_bench.h"

static void *poll_main(void *arg)
{
    struct poller *p = arg;
    struct poll_result *r = &p->r;
    char err[256];
    struct cc_rpc *c = NULL;
    if (cc_rpc_open(p->host, p->qport, p->timeout, bench_token, &c, err, sizeof err)) {
        snprintf(r->first_error, sizeof r->first_error, "connect: %s", err);
        r->failed = 1;
        return NULL;
    }
    uint64_t every = (uint64_t)(p->every * 1e9), due = now_ns();
    while (!atomic_load(&p->stop)) {
        uint64_t t = now_ns();
        if (t < due) {
            uint64_t nap = due - t;
            sleep_ns(nap < 20000000u ? nap : 20000000u); /* wakes for stop within 20 ms */
            continue;
        }
        struct proto_rpc_response resp;
        int rc = cc_rpc_call(c, p->method, NULL, 0, &resp, err, sizeof err);
        uint64_t lat = now_ns() - t;
        if (rc || resp.error) {
            r->errors++;
            if (!r->first_error[0])
                snprintf(r->first_error, sizeof r->first_error, "%s",
                         rc ? err : "the server answered an error");
            if (rc) /* the connection is gone: nothing more to measure */
                break;
        } else if (r->n < POLL_KEPT) {
            r->lat_ns[r->n++] = lat;
        }
        r->calls++;
        due += every;
        if (due < now_ns()) /* a call longer than the period: the next one right away, once */
            due = now_ns();
    }
    cc_rpc_close(c);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int poll_start(struct poller *p, const char *host, const char *qport, const char *method,
               double every, double timeout)
{
    memset(&p->r, 0, sizeof p->r);
    p->host = host, p->qport = qport, p->method = method, p->every = every, p->timeout = timeout;
    atomic_store(&p->stop, 0);
    int rc = pthread_create(&p->th, NULL, poll_main, p);
    p->running = rc == 0;
    return -rc;
}

void poll_stop(struct poller *p)
{
    if (!p->running)
        return;
    atomic_store(&p->stop, 1);
    pthread_join(p->th, NULL);
    p->running = 0;
    qsort(p->r.lat_ns, p->r.n, sizeof p->r.lat_ns[0], cmp_u64);
}
