/* nats-drain: one partition of a cascaded stream read through a durable pull consumer, the way a
 * node will consume it (docs/cluster.md): FilterSubject <prefix>.<p>, explicit acks, AckWait and
 * MaxAckPending set here (libnats takes AckWait in nanoseconds). test_nats_consumer uses it to pin
 * down the libnats 3.4 / nats-server 2.9 behaviour the node relies on: a durable survives
 * natsSubscription_Destroy (Unsubscribe would delete it), an unacked message comes back after
 * AckWait with its stream sequence, and an acked one never does.
 * usage: nats-drain URLS STREAM SUBJECT DURABLE ACK_WAIT_MS MAX_MSGS ack|noack [unsubscribe]
 * Fetches until MAX_MSGS messages or until a fetch finds nothing for 1 s, acks them (ack) or not,
 * closes with Destroy (with `unsubscribe`: Unsubscribe first, which deletes the durable), and
 * prints "msgs M events E first F last L redelivered R" (F, L: stream
 * sequences; R: messages delivered more than once). Exit 0, or 2 on an error. */
#include <inttypes.h>
#include <msgpack.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t events_in(natsMsg *m)
{
    msgpack_unpacked u;
    size_t off = 0;
    uint32_t n = 0;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &off) ==
            MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY)
        n = u.data.via.array.size;
    msgpack_unpacked_destroy(&u);
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 8 && !(argc == 9 && strcmp(argv[8], "unsubscribe") == 0)) {
        fprintf(stderr,
                "usage: nats-drain URLS STREAM SUBJECT DURABLE ACK_WAIT_MS MAX_MSGS ack|noack "
                "[unsubscribe]\n");
        return 2;
    }
    long max = atol(argv[6]);
    int ack = argv[7][0] == 'a';
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = argv[2];
    so.ManualAck = true;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.AckWait = (int64_t)atol(argv[5]) * 1000000; /* ns */
    so.Config.MaxAckPending = 20000; /* the default 1000 would bound what a node has in flight */
    natsStatus st = natsConnection_ConnectTo(&nc, argv[1]);
    if (st == NATS_OK)
        st = natsConnection_JetStream(&js, nc, NULL);
    if (st == NATS_OK)
        st = js_PullSubscribe(&sub, js, argv[3], argv[4], NULL, &so, &jerr);
    if (st != NATS_OK) {
        fprintf(stderr, "nats-drain: %s (JetStream error %d): %s\n", natsStatus_GetText(st),
                (int)jerr, nats_GetLastError(NULL));
        return 2;
    }
    uint64_t msgs = 0, events = 0, first = 0, last = 0, redelivered = 0;
    while ((long)msgs < max) {
        natsMsgList list = {0};
        int want = max - (long)msgs < 64 ? (int)(max - (long)msgs) : 64;
        st = natsSubscription_Fetch(&list, sub, want, 1000, &jerr);
        if (st == NATS_TIMEOUT)
            break; /* nothing more for now */
        if (st != NATS_OK) {
            fprintf(stderr, "nats-drain: fetch: %s (%d)\n", natsStatus_GetText(st), (int)jerr);
            return 2;
        }
        for (int i = 0; i < list.Count; i++) {
            jsMsgMetaData *meta = NULL;
            if (natsMsg_GetMetaData(&meta, list.Msgs[i]) != NATS_OK) {
                fprintf(stderr, "nats-drain: a message without JetStream metadata\n");
                return 2;
            }
            uint64_t seq = meta->Sequence.Stream;
            first = first && first < seq ? first : seq;
            last = last > seq ? last : seq;
            redelivered += meta->NumDelivered > 1;
            jsMsgMetaData_Destroy(meta);
            events += events_in(list.Msgs[i]);
            msgs++;
            if (ack && natsMsg_AckSync(list.Msgs[i], NULL, &jerr) != NATS_OK) {
                fprintf(stderr, "nats-drain: ack: %s\n", nats_GetLastError(NULL));
                return 2;
            }
        }
        natsMsgList_Destroy(&list);
    }
    printf("msgs %" PRIu64 " events %" PRIu64 " first %" PRIu64 " last %" PRIu64
           " redelivered %" PRIu64 "\n",
           msgs, events, first, last, redelivered);
    if (argc == 9)
        natsSubscription_Unsubscribe(sub); /* deletes the durable: what a node must never do */
    natsSubscription_Destroy(sub);         /* alone, keeps the durable */
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return 0;
}
