/* The writer thread: the engine's single writer. It takes batches from the network loop in
 * order, applies ingest batches to the engine, appends the accepted events to the WAL (durable
 * per the fsync policy before the batch goes back, so acks never run ahead of the log), and
 * answers queries between chunks of a batch (queries queue ahead of ingest). Under `everysec` the
 * WAL fsyncs on a thread of its own. */
#ifndef SERVER_WRITER_H
#define SERVER_WRITER_H

#include <pthread.h>
#include <stdint.h>

#include "analytics/worker.h"
#include "cascade/engine.h"
#include "net/batch.h"
#include "store/wal.h"

#define WRITER_RATE_SAMPLES 6

/* The accepted count sampled about once a second: `stats` reports the rate over them. */
struct writer_rate {
    uint64_t ms[WRITER_RATE_SAMPLES], accepted[WRITER_RATE_SAMPLES];
    uint32_t head, n;
};

struct writer {
    struct engine *engine;
    struct wal *wal;
    enum wal_fsync fsync;
    struct bqueue in;    /* from the network loop */
    struct bqueue *done; /* back to it */
    pthread_t thread;
    int started;
    uint64_t start_ms;
    uint8_t *scratch; /* outcomes of the valid events of one batch */
    uint32_t scratch_cap;
    struct writer_rate rate;
    struct analytics *analytics;
};

/* Opens the WAL under data_dir, replays it into a new engine (logging what it found and cut),
 * starts the analytics worker (a snapshot every analytics_interval_ms when events arrived; 0:
 * only on request) and the thread. On failure a negative errno and a message in err. */
int writer_start(struct writer *w, const char *data_dir, enum wal_fsync fsync,
                 uint64_t analytics_interval_ms, struct bqueue *done, char *err, size_t errlen);

/* Finishes every batch queued so far, syncs and closes the WAL, frees the engine. */
void writer_stop(struct writer *w);

#endif
