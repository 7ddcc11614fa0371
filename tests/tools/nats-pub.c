/* nats-pub: libcascade-client's JetStream publisher (cascade/nats.h) driven directly, for
 * test_nats_replay: N events p<i> (actor a<i%7>, reshares of p<i-1> every other one, each with
 * `root` r<i%5>, so partition = xxh64("r<i%5>") mod P) and one annotation to every partition
 * (CC_NATS_ALL); waits for every ack and prints "added A acked K resume R partitions P".
 * usage: nats-pub URLS STREAM PARTITIONS N */
#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/nats.h"

static void str_field(struct event_field *f, const char *s)
{
    f->type = EVF_STR;
    f->str = s;
    f->len = (uint32_t)strlen(s);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: nats-pub URLS STREAM PARTITIONS N\n");
        return 2;
    }
    char err[300];
    struct cc_nats *s;
    struct cc_nats_opts o = {
        .stream = argv[2], .partitions = (uint32_t)atoi(argv[3]), .replicas = 1};
    if (cc_nats_open(argv[1], &o, &s, err, sizeof(err))) {
        fprintf(stderr, "nats-pub: %s\n", err);
        return 1;
    }
    struct cc_nats_info info;
    cc_nats_info(s, &info);
    long n = atol(argv[4]);
    for (long i = 0; i < n; i++) {
        char post[32], parent[32], actor[32], root[32];
        struct event_raw ev;
        memset(&ev, 0, sizeof(ev));
        snprintf(post, sizeof(post), "p%ld", i);
        snprintf(parent, sizeof(parent), "p%ld", i - 1);
        snprintf(actor, sizeof(actor), "a%ld", i % 7);
        snprintf(root, sizeof(root), "r%ld", i % 5);
        str_field(&ev.post, post);
        str_field(&ev.actor, actor);
        ev.ts.type = EVF_UINT;
        ev.ts.u = 1700000000000ull + (uint64_t)i;
        if (i % 2)
            str_field(&ev.parent, parent);
        uint32_t part = cc_nats_partition_of(root, strlen(root), info.partitions);
        int rc;
        while ((rc = cc_nats_add(s, part, &ev, root, strlen(root), (uint64_t)i)) == -ENOBUFS)
            cc_nats_service(s, 0.1);
        if (rc) {
            fprintf(stderr, "nats-pub: add: %d %s\n", rc, cc_nats_error(s));
            return 1;
        }
    }
    /* an annotation: a map without `post`, to every partition */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "annotation", 10);
    msgpack_pack_str_with_body(&pk, "fact_check", 10);
    msgpack_pack_str_with_body(&pk, "content", 7);
    msgpack_pack_str_with_body(&pk, "https://x.example/1", 19);
    msgpack_pack_str_with_body(&pk, "ts", 2);
    msgpack_pack_uint64(&pk, 1700000000000ull);
    msgpack_pack_str_with_body(&pk, "label", 5);
    msgpack_pack_str_with_body(&pk, "false", 5);
    int rc = cc_nats_add_packed(s, CC_NATS_ALL, sb.data, sb.size, (uint64_t)n);
    msgpack_sbuffer_destroy(&sb);
    if (rc == 0)
        rc = cc_nats_wait(s, 60);
    struct cc_nats_counts c;
    cc_nats_counts(s, &c);
    uint64_t resume = cc_nats_resume(s);
    printf("added %" PRIu64 " acked %" PRIu64 " resume %s partitions %" PRIu32 "\n", c.added,
           c.acked, resume == UINT64_MAX ? "none" : "some", info.partitions);
    if (rc)
        fprintf(stderr, "nats-pub: %d %s\n", rc, cc_nats_error(s));
    cc_nats_close(s);
    return rc ? 1 : 0;
}
