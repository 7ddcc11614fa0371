/* Test hooks of the WAL: fault injection in the manner of SQLite's I/O error tests, so that unit
 * tests can drive the short-write, failed-write and fallback paths. Production code never sets
 * them (but cascaded reads CASCADE_TEST_WAL_FAULTS, see writer.c, for the integration tests).
 * The countdowns are taken atomically: the everysec syncer takes fsync faults from its thread. */
#ifndef STORE_WAL_INT_H
#define STORE_WAL_INT_H

#include <stdint.h>

struct wal_faults {
    int no_uring;       /* wal_open skips io_uring: the pwrite/fdatasync path */
    uint32_t max_write; /* cap on the bytes of one write op, as if the kernel wrote short */
    int fail_write;     /* the Nth write op from now fails with err (0: none) */
    int fail_fsync;     /* the Nth fsync op from now fails with err (0: none) */
    int err;            /* the errno injected (0: EIO) */
    int delay_ms;       /* every write of records or a header first sleeps this long (a slow
                         * disk), on the appending thread */
};

extern struct wal_faults wal_faults;

#endif
