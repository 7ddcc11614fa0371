/* libcascade-client's JetStream publish path (DESIGN §9): events go in batches (about 1,000 per
 * message, a msgpack array of event maps, as on the ingest port) to the partition subjects of a
 * cascaded cluster's stream; JetStream's acks are awaited in a bounded window; a message that
 * gets no ack, a "no responders" or a 503 (a leader election) is published again after a back-off,
 * with the same Nats-Msg-Id so that JetStream stores it once. Prefix cc_nats_. Links libnats
 * (Debian's libnats-dev): build with `pkg-config --cflags --libs --static cascade-client`.
 * One thread per object (libnats runs its own threads inside). Returns
 * 0 or a negative errno; messages for the user go into caller-given buffers or cc_nats_error. */
#ifndef CASCADE_NATS_H
#define CASCADE_NATS_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/event.h"

#define CC_NATS_STREAM_DEFAULT     "SHARES"
#define CC_NATS_PARTITIONS_DEFAULT 16
#define CC_NATS_MAX_PARTITIONS     4096
#define CC_NATS_ALL                UINT32_MAX /* cc_nats_add_packed: to every partition (annotations, §2) */

struct cc_nats_opts {
    const char *stream;    /* NULL: "SHARES". Subjects: its name in lower case, ".<p>" */
    uint32_t partitions;   /* P when the stream is created (0: 16); an existing stream's wins */
    int replicas;          /* R when the stream is created (0: 3 with 3 or more URLs, else 1) */
    uint32_t batch_events; /* events per message, at most (0: 1000) */
    size_t batch_bytes;    /* bytes per message, at most (0: 512 KiB; the server's max_payload
                              is 1 MiB by default) */
    uint32_t window;       /* messages published and not yet acked, at most (0: 64) */
    double ack_timeout_s;  /* no ack this long: publish the message again (0: 5) */
    double give_up_s;      /* a message unacked this long, or no stream this long: fail (0: 120) */
    double connect_timeout_s; /* the first connection (0: 10) */
};

struct cc_nats_info {
    uint32_t partitions; /* P: the stream's subjects are <prefix>.0 .. <prefix>.P-1 */
    int replicas;        /* the stream's R */
    int created;         /* 1 when cc_nats_open created the stream */
    char prefix[64];     /* the subject prefix ("shares") */
};

struct cc_nats_counts {
    uint64_t added;      /* events added (an annotation once per partition it goes to) */
    uint64_t acked;      /* events in messages JetStream acked */
    uint64_t messages;   /* messages acked */
    uint64_t duplicates; /* of them, events in messages JetStream already had (a resend) */
    uint64_t resends;    /* publishes after a timeout, a 503 or a lost connection */
};

struct cc_nats;

/* Connects to urls ("nats://127.0.0.1:4222,nats://..." or host:port, comma-separated; libnats
 * reconnects among them for ever), finds the stream or creates it. *out is owned by the caller
 * (cc_nats_close). 0; or -ECONNREFUSED, -ETIMEDOUT, -EINVAL (a stream whose subjects are not
 * <prefix>.0..P-1, or R beyond the cluster), -EPROTONOSUPPORT (no JetStream on the server),
 * -ENOMEM, -EIO with a message in err. */
int cc_nats_open(const char *urls, const struct cc_nats_opts *o, struct cc_nats **out, char *err,
                 size_t errlen);
/* Closes without waiting: what was not acked is not counted (cc_nats_wait first). */
void cc_nats_close(struct cc_nats *s);
void cc_nats_info(const struct cc_nats *s, struct cc_nats_info *info);

/* The partition of a routing key (DESIGN §9): xxh64(key, seed 0) mod partitions. */
uint32_t cc_nats_partition_of(const void *key, size_t len, uint32_t partitions);

/* Packs ev (proto_event_pack), with `root` = root[0..rootlen) added when root is not NULL, into
 * partition's open batch; a full batch is closed and published by the next cc_nats_service.
 * index is the caller's number of the event (cascade-replay's --from count), for the resume
 * point. 0; -ENOBUFS when the window and the queue are full (service until not); -EPIPE when
 * the publisher has failed (cc_nats_error); -EINVAL (no such partition); -ENOMEM. */
int cc_nats_add(struct cc_nats *s, uint32_t partition, const struct event_raw *ev, const void *root,
                size_t rootlen, uint64_t index);
/* The same with an already packed msgpack map (an event or an annotation), copied; partition
 * CC_NATS_ALL puts it into every partition's batch. */
int cc_nats_add_packed(struct cc_nats *s, uint32_t partition, const void *map, size_t len,
                       uint64_t index);
/* Closes every open batch, so that the next services publish them. */
void cc_nats_flush(struct cc_nats *s);

/* Takes the acks that came, publishes closed batches as the window allows, publishes again
 * what timed out or was refused for the time being (after a back-off), waiting at most wait_s
 * for an ack when there is nothing else to do. 1 when some ack came, 0 when none; -EPIPE once
 * it has failed (a message unacked for give_up_s, or an error JetStream will not get over). */
int cc_nats_service(struct cc_nats *s, double wait_s);
/* Whether cc_nats_add would say -ENOBUFS; whether every event added is acked. */
int cc_nats_full(const struct cc_nats *s);
int cc_nats_idle(const struct cc_nats *s);
/* cc_nats_flush, then services until every event added is acked (0), the publisher fails
 * (-EPIPE) or timeout_s passes (-ETIMEDOUT; <= 0: no limit beyond give_up_s). */
int cc_nats_wait(struct cc_nats *s, double timeout_s);

void cc_nats_counts(const struct cc_nats *s, struct cc_nats_counts *c);
/* The smallest index of an event added and not acked, or UINT64_MAX when all are: a producer
 * that starts again from it (--from) loses nothing (what it resends again is a duplicate). */
uint64_t cc_nats_resume(const struct cc_nats *s);
/* Why it failed ("" while it has not). */
const char *cc_nats_error(const struct cc_nats *s);

#endif
