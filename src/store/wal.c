/* The write-ahead log: numbered segment files of CRC-checked records (format in wal_record.h),
 * appended through one io_uring (pwrite/fdatasync when the kernel refuses a ring) and replayed at
 * start-up. Damage is told apart by scanning past it for the next intact record: a torn tail of
 * the newest segment is cut (its bytes kept aside), anything else refuses start-up until
 * wal_repair (cascade-wal) has moved the damage aside and the intact records after it on. */
#include "store/wal.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/trash.h"
#include "store/wal_int.h"
#include "store/wal_record.h"

/* Segment header: u32 magic "CWAL", u16 version, u16 header size, u64 sequence number. */
#define SEG_MAGIC       0x4C415743u
#define SEG_VERSION     1u
#define SEG_HDR         16u
#define SEG_DIGITS      20 /* zero-padded so that names sort like their numbers */
#define SEG_NAME_LEN    (SEG_DIGITS + 4)
#define SEG_DEFAULT_MAX (64ull << 20)

#define READ_CHUNK  (4u << 20)
#define WRITE_MAX   (1u << 30) /* per write op: io_uring lengths are 32-bit */
#define STALLS_MAX  100        /* rounds without progress (EINTR, EAGAIN) before giving up */
#define RING_DEPTH  8
#define PRESYNC_AT  32 /* the last 1/32 of a segment: fsynced ahead of its roll */
#define OP_WRITE    1
#define OP_FSYNC    2
#define SEG_CLEAN   0 /* replay_segment: the segment ends on a record boundary */
#define SEG_CUT     1 /* ... it must be cut at *good */
#define SEG_STOPPED 2 /* ... the callback stopped the replay */
#define SEG_DAMAGED 3 /* ... it holds damage with intact records after it */
#define DAMAGED_DIR "wal-damaged"
#define ERR_MAX     1536

struct wal_faults wal_faults;

struct seg {
    uint64_t seq, size;
};

struct wal {
    char *path; /* DIR/wal */
    size_t dirlen; /* path[0..dirlen) is DIR */
    int allow_loss; /* wal_options.allow_history_loss */
    char err[ERR_MAX]; /* wal_error() */
    int dirfd;  /* held open with an flock: one process per WAL */
    struct trash *trash; /* wal_set_trash: where removed segments go (NULL: unlinked) */
    enum wal_fsync policy;
    uint64_t seg_max;
    struct seg *segs; /* by sequence; the last one is appended to */
    size_t nseg, segcap;
    uint64_t total; /* bytes in all segments */
    int fd;         /* the last segment, open for writing once ready */
    int ready;      /* replayed: fd is open, segs[nseg - 1].size is its valid end */
    int failed;     /* a write or fsync left state we cannot vouch for: refuse appends
                     * (WAL_FAILED_DATA: a new segment may go on; WAL_FAILED_RING: not) */
    int dirty;      /* appended since the last fsync */
    int uring;
    struct io_uring ring;
    uint8_t *buf; /* encoded records of one append */
    size_t cap;
    /* everysec: a thread of its own fsyncs once a second, so the appending thread never waits
     * for the disk. mu guards fd (swapped by roll), dirty and failed against it, and segs,
     * nseg and total against a thread that reads positions or removes old segments while
     * another appends (the server's engine and log threads). */
    pthread_t syncer;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int syncer_on, syncer_stop;
    uint64_t presynced; /* the segment whose fsync ahead of its roll was asked for */
    int presync_due;    /* ... and the syncer has not started it yet */
    wal_pos_fn posfn;   /* wal_set_pos_fn: replay hands it each record's stream positions */
    void *posctx;
};

/* Why appends are refused. DATA: a failed fsync (the kernel may have dropped written pages) or
 * a failed cut after a failed write (the segment may end in garbage): the current segment cannot
 * be vouched for, but a new one can be written (wal_restart_segment). RING: SQEs pointing at our
 * buffer may still be queued, so nothing of this WAL may write again. */
enum { WAL_OK = 0, WAL_FAILED_DATA = 1, WAL_FAILED_RING = 2 };

/* Marks the WAL unusable; under mu because the syncer reads it. A RING failure is never
 * downgraded. */
static void set_failed_as(struct wal *w, int why)
{
    pthread_mutex_lock(&w->mu);
    if (w->failed < why)
        w->failed = why;
    pthread_mutex_unlock(&w->mu);
}

static void set_failed(struct wal *w)
{
    set_failed_as(w, WAL_FAILED_DATA);
}

/* ---- errors and names ---- */

static int fail(char *err, size_t errlen, int e, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -e;
}

static void seg_name(char out[SEG_NAME_LEN + 1], uint64_t seq)
{
    snprintf(out, SEG_NAME_LEN + 1, "%0*" PRIu64 ".wal", SEG_DIGITS, seq);
}

static int parse_seg_name(const char *name, uint64_t *seq)
{
    if (strlen(name) != SEG_NAME_LEN || strcmp(name + SEG_DIGITS, ".wal") != 0)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < SEG_DIGITS; i++) {
        unsigned d = (unsigned)(name[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *seq = v;
    return 0;
}

static void seg_header(uint8_t h[SEG_HDR], uint64_t seq)
{
    walrec_put32(h, SEG_MAGIC);
    walrec_put32(h + 4, SEG_VERSION | SEG_HDR << 16);
    walrec_put32(h + 8, (uint32_t)seq);
    walrec_put32(h + 12, (uint32_t)(seq >> 32));
}

/* 0: ours; 1: not a segment header (torn creation or garbage: cut); -EPROTONOSUPPORT: a segment
 * from a newer format, which must not be cut as if it were garbage. */
static int seg_header_check(const uint8_t h[SEG_HDR])
{
    if (walrec_get32(h) != SEG_MAGIC)
        return 1;
    uint32_t v = walrec_get32(h + 4);
    if ((v & 0xffff) != SEG_VERSION)
        return -EPROTONOSUPPORT;
    return (v >> 16) == SEG_HDR ? 0 : 1;
}

/* ---- opening ---- */

/* mkdir -p: the data dir may be a fresh path several levels deep. */
static int mkdir_p(char *path, char *err, size_t errlen)
{
    for (char *p = path + 1;; p++) {
        char c = *p;
        if (c != '/' && c != '\0')
            continue;
        *p = '\0';
        struct stat st;
        int rc = 0, e = mkdir(path, 0755) < 0 ? errno : 0;
        if (e == EEXIST)
            e = stat(path, &st) < 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
        if (e)
            rc = fail(err, errlen, e, "cannot create %s: %s", path, strerror(e));
        *p = c;
        if (rc < 0 || c == '\0')
            return rc;
    }
}

static int open_dir(struct wal *w, const char *dir, char *err, size_t errlen)
{
    size_t n = strlen(dir);
    w->path = malloc(n + sizeof("/wal"));
    if (!w->path)
        return fail(err, errlen, ENOMEM, "out of memory opening the WAL in %s", dir);
    memcpy(w->path, dir, n);
    memcpy(w->path + n, "/wal", sizeof("/wal"));
    w->dirlen = n;
    int rc = mkdir_p(w->path, err, errlen);
    if (rc < 0)
        return rc;
    w->dirfd = open(w->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0)
        return fail(err, errlen, errno, "cannot open %s: %s", w->path, strerror(errno));
    /* Two writers on one log would interleave records; the lock goes with the process. */
    if (flock(w->dirfd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            return fail(err, errlen, EBUSY,
                        "%s is in use by another process (another cascaded on this data dir?)",
                        w->path);
        return fail(err, errlen, errno, "cannot lock %s: %s", w->path, strerror(errno));
    }
    return 0;
}

/* Under mu: a remover on another thread changes nseg and moves the array. */
static int push_seg(struct wal *w, uint64_t seq, uint64_t size)
{
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    if (w->nseg == w->segcap) {
        size_t cap = w->segcap ? w->segcap * 2 : 16;
        struct seg *s = realloc(w->segs, cap * sizeof(*s));
        if (s) {
            w->segs = s;
            w->segcap = cap;
        } else {
            rc = -ENOMEM;
        }
    }
    if (rc == 0) {
        w->segs[w->nseg++] = (struct seg){seq, size};
        w->total += size;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static int cmp_seg(const void *a, const void *b)
{
    uint64_t x = ((const struct seg *)a)->seq, y = ((const struct seg *)b)->seq;
    return x < y ? -1 : x > y;
}

static int list_segments(struct wal *w, char *err, size_t errlen)
{
    DIR *d = opendir(w->path);
    if (!d)
        return fail(err, errlen, errno, "cannot read %s: %s", w->path, strerror(errno));
    int rc = 0;
    struct dirent *de;
    uint64_t seq;
    struct stat st;
    while (rc == 0 && (errno = 0, de = readdir(d))) {
        if (parse_seg_name(de->d_name, &seq) < 0)
            continue; /* not ours: left alone */
        if (fstatat(w->dirfd, de->d_name, &st, 0) < 0)
            rc = fail(err, errlen, errno, "cannot stat %s/%s: %s", w->path, de->d_name,
                      strerror(errno));
        else if (push_seg(w, seq, (uint64_t)st.st_size) < 0)
            rc = fail(err, errlen, ENOMEM, "out of memory listing %s", w->path);
    }
    if (rc == 0 && errno)
        rc = fail(err, errlen, errno, "cannot read %s: %s", w->path, strerror(errno));
    closedir(d);
    if (w->nseg > 1)
        qsort(w->segs, w->nseg, sizeof(*w->segs), cmp_seg);
    return rc;
}

/* Refuses segments of a newer format up front, where the message can name the file; torn or
 * foreign headers are left for the replay. A newer build appends after what an older one
 * wrote, so another version only in the log's suffix is a newer format; before a segment of
 * ours it is damage (a flipped bit), left for the replay to report and wal_repair to mend. */
static int check_headers(struct wal *w, char *err, size_t errlen)
{
    size_t newer = SIZE_MAX; /* the first of a run of other-version segments up to here */
    uint32_t version = 0;
    for (size_t i = 0; i < w->nseg; i++) {
        char name[SEG_NAME_LEN + 1];
        uint8_t h[SEG_HDR];
        seg_name(name, w->segs[i].seq);
        int fd = openat(w->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return fail(err, errlen, errno, "cannot open %s/%s: %s", w->path, name,
                        strerror(errno));
        ssize_t got = pread(fd, h, SEG_HDR, 0);
        int e = errno;
        close(fd);
        if (got < 0)
            return fail(err, errlen, e, "cannot read %s/%s: %s", w->path, name, strerror(e));
        int rc = got == SEG_HDR ? seg_header_check(h) : 1;
        if (rc < 0 && newer == SIZE_MAX) {
            newer = i;
            version = walrec_get32(h + 4) & 0xffff;
        } else if (rc == 0) {
            newer = SIZE_MAX;
        }
    }
    if (newer == SIZE_MAX)
        return 0;
    char name[SEG_NAME_LEN + 1];
    seg_name(name, w->segs[newer].seq);
    return fail(err, errlen, EPROTONOSUPPORT,
                "%s/%s was written by a newer cascaded (WAL format %u; this one reads %u)",
                w->path, name, version, SEG_VERSION);
}

static void stop_syncer(struct wal *w)
{
    if (!w->syncer_on)
        return;
    pthread_mutex_lock(&w->mu);
    w->syncer_stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->syncer, NULL);
    w->syncer_on = 0;
}

static void wal_free(struct wal *w)
{
    stop_syncer(w);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    if (w->fd >= 0)
        close(w->fd);
    if (w->dirfd >= 0)
        close(w->dirfd); /* releases the flock */
    if (w->uring)
        io_uring_queue_exit(&w->ring);
    free(w->segs);
    free(w->buf);
    free(w->path);
    free(w);
}

int wal_open(const struct wal_options *o, struct wal **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!o || !o->dir || !o->dir[0])
        return fail(err, errlen, EINVAL, "no data directory given for the WAL");
    if (o->fsync != WAL_FSYNC_NO && o->fsync != WAL_FSYNC_EVERYSEC && o->fsync != WAL_FSYNC_ALWAYS)
        return fail(err, errlen, EINVAL, "unknown fsync policy %d", (int)o->fsync);
    struct wal *w = calloc(1, sizeof(*w));
    if (!w)
        return fail(err, errlen, ENOMEM, "out of memory opening the WAL in %s", o->dir);
    w->fd = w->dirfd = -1;
    w->policy = o->fsync;
    w->allow_loss = o->allow_history_loss;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->seg_max = o->segment_bytes ? o->segment_bytes : SEG_DEFAULT_MAX;
    int rc = open_dir(w, o->dir, err, errlen);
    if (rc == 0)
        rc = list_segments(w, err, errlen);
    if (rc == 0)
        rc = check_headers(w, err, errlen);
    if (rc < 0) {
        wal_free(w);
        return rc;
    }
    /* A ring can be refused (seccomp in containers, io_uring_disabled): plain syscalls then. */
    w->uring = !wal_faults.no_uring && !o->no_io_uring && io_uring_queue_init(RING_DEPTH, &w->ring, 0) == 0;
    *out = w;
    return 0;
}

/* The readers below may run on another thread than the appender's: they take mu, which is
 * state of the WAL's locking, not of its contents (hence the cast of const away). */
static void lock_c(const struct wal *w)
{
    pthread_mutex_lock((pthread_mutex_t *)&w->mu);
}

static void unlock_c(const struct wal *w)
{
    pthread_mutex_unlock((pthread_mutex_t *)&w->mu);
}

struct wal_pos wal_position(const struct wal *w)
{
    lock_c(w);
    struct wal_pos p = {0, 0};
    if (w->nseg)
        p = (struct wal_pos){w->segs[w->nseg - 1].seq, w->segs[w->nseg - 1].size};
    unlock_c(w);
    return p;
}

uint64_t wal_segments(const struct wal *w)
{
    lock_c(w);
    uint64_t n = w->nseg;
    unlock_c(w);
    return n;
}

uint64_t wal_first_segment(const struct wal *w)
{
    lock_c(w);
    uint64_t seq = w->nseg ? w->segs[0].seq : 0;
    unlock_c(w);
    return seq;
}

/* Safe beside wal_append on another thread (one remover at a time): the segments removed are
 * never the one appended to, and the files are unlinked outside mu, so that an append is not
 * held up by the file system freeing them. */
int wal_remove_before(struct wal *w, uint64_t seq)
{
    size_t n = 0, k = 0;
    int rc = 0;
    char name[SEG_NAME_LEN + 1];
    pthread_mutex_lock(&w->mu);
    while (n + 1 < w->nseg && w->segs[n].seq < seq)
        n++;
    pthread_mutex_unlock(&w->mu);
    /* segments [0, n) stay first meanwhile: the appender only adds at the end */
    while (k < n) {
        pthread_mutex_lock(&w->mu);
        uint64_t s = w->segs[k].seq;
        pthread_mutex_unlock(&w->mu);
        seg_name(name, s);
        int r = trash_remove(w->trash, w->dirfd, name);
        if (r < 0 && r != -ENOENT) {
            rc = r;
            break;
        }
        k++;
    }
    if (k) {
        pthread_mutex_lock(&w->mu);
        for (size_t i = 0; i < k; i++)
            w->total -= w->segs[i].size;
        memmove(w->segs, w->segs + k, (w->nseg - k) * sizeof(*w->segs));
        w->nseg -= k;
        pthread_mutex_unlock(&w->mu);
    }
    return rc < 0 ? rc : (int)k;
}

void wal_set_trash(struct wal *w, struct trash *trash)
{
    w->trash = trash;
}

int wal_uses_io_uring(const struct wal *w)
{
    return w->uring;
}

uint64_t wal_bytes(const struct wal *w)
{
    lock_c(w);
    uint64_t t = w->total;
    unlock_c(w);
    return t;
}

/* ---- writing: io_uring, or pwrite/fdatasync ---- */

/* Fault injection: the errno for this op when a countdown reaches it, else 0. */
static int fault_take(int *countdown)
{
    /* atomic: the everysec syncer takes fsync faults from its own thread */
    int c = __atomic_load_n(countdown, __ATOMIC_RELAXED);
    while (c > 0 &&
           !__atomic_compare_exchange_n(countdown, &c, c - 1, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    if (c != 1)
        return 0;
    return -(wal_faults.err ? wal_faults.err : EIO);
}

static size_t chunk_of(size_t left)
{
    size_t c = left < WRITE_MAX ? left : WRITE_MAX;
    if (wal_faults.max_write && c > wal_faults.max_write)
        c = wal_faults.max_write;
    return c;
}

static int retryable(int res)
{
    return res == -EINTR || res == -EAGAIN || res == -ECANCELED;
}

static int ring_submit(struct wal *w, unsigned nr)
{
    unsigned done = 0;
    int stalls = 0;
    while (done < nr) {
        int rc = io_uring_submit_and_wait(&w->ring, nr - done);
        if (rc > 0) {
            done += (unsigned)rc;
            continue;
        }
        /* -EINTR/-EAGAIN from io_uring_enter mean nothing was taken: the SQEs are still queued. */
        if ((rc == 0 || rc == -EINTR || rc == -EAGAIN) && ++stalls <= STALLS_MAX)
            continue;
        /* SQEs pointing at our buffer may still be queued: never reuse the ring */
        set_failed_as(w, WAL_FAILED_RING);
        return rc < 0 ? rc : -EIO;
    }
    return 0;
}

static int ring_reap(struct wal *w, unsigned nr, int *wres, int *fres)
{
    for (unsigned i = 0; i < nr; i++) {
        struct io_uring_cqe *cqe;
        int rc;
        while ((rc = io_uring_wait_cqe(&w->ring, &cqe)) == -EINTR)
            ;
        if (rc < 0) {
            set_failed_as(w, WAL_FAILED_RING);
            return rc;
        }
        if (io_uring_cqe_get_data64(cqe) == OP_FSYNC)
            *fres = cqe->res;
        else
            *wres = cqe->res;
        io_uring_cqe_seen(&w->ring, cqe);
    }
    return 0;
}

/* One submission: a write of chunk bytes (if any) and, with with_sync, an fdatasync linked
 * behind it. IOSQE_IO_LINK starts the fsync only once the write completed in full; a short or
 * failed write cancels it (-ECANCELED), and the caller resubmits the rest with a new fsync. */
static int ring_round(struct wal *w, int fd, const uint8_t *p, size_t chunk, uint64_t off,
                      int with_sync, int *wres, int *fres)
{
    int wfault = chunk ? fault_take(&wal_faults.fail_write) : 0;
    int ffault = with_sync && !wfault ? fault_take(&wal_faults.fail_fsync) : 0;
    unsigned nr = 0;
    *wres = wfault;
    *fres = wfault ? -ECANCELED : ffault;
    if (chunk && !wfault) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring); /* never NULL: drained */
        io_uring_prep_write(sqe, fd, p, (unsigned)chunk, off);
        io_uring_sqe_set_data64(sqe, OP_WRITE);
        if (with_sync && !ffault)
            sqe->flags |= IOSQE_IO_LINK;
        nr++;
    }
    if (with_sync && !wfault && !ffault) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sqe, OP_FSYNC);
        nr++;
    }
    if (nr == 0)
        return 0;
    int rc = ring_submit(w, nr);
    return rc < 0 ? rc : ring_reap(w, nr, wres, fres);
}

static int ring_write(struct wal *w, int fd, const uint8_t *p, size_t len, uint64_t off, int sync)
{
    size_t done = 0;
    for (int stalls = 0; stalls <= STALLS_MAX;) {
        size_t chunk = chunk_of(len - done);
        int with_sync = sync && done + chunk == len;
        int wres = 0, fres = 0;
        int rc = ring_round(w, fd, p + done, chunk, off + done, with_sync, &wres, &fres);
        if (rc < 0)
            return rc;
        if (wres < 0 && !retryable(wres))
            return wres;
        if (wres > 0)
            done += (size_t)wres;
        else if (chunk)
            stalls++;
        if (done < len)
            continue;
        if (!sync || fres >= 0)
            return 0;
        if (!retryable(fres)) {
            set_failed(w); /* after a failed fsync the page cache may have dropped our data */
            return fres;
        }
        stalls++; /* the next round has chunk 0: the fsync alone */
    }
    return -EIO;
}

static int plain_sync(struct wal *w, int fd)
{
    int rc = fault_take(&wal_faults.fail_fsync);
    while (rc == 0 && fdatasync(fd) < 0)
        rc = errno == EINTR ? 0 : -errno;
    if (rc < 0)
        set_failed(w);
    return rc;
}

static int plain_write(struct wal *w, int fd, const uint8_t *p, size_t len, uint64_t off, int sync)
{
    size_t done = 0;
    for (int stalls = 0; done < len;) {
        size_t chunk = chunk_of(len - done);
        ssize_t got = fault_take(&wal_faults.fail_write);
        if (got == 0 && (got = pwrite(fd, p + done, chunk, (off_t)(off + done))) < 0)
            got = -errno;
        if (got > 0) {
            done += (size_t)got;
        } else if ((got < 0 && !retryable((int)got)) || ++stalls > STALLS_MAX) {
            return got < 0 ? (int)got : -EIO;
        }
    }
    return sync ? plain_sync(w, fd) : 0;
}

/* Writes p[0..len) at off in fd, then with sync makes it durable. Handles short writes. */
static int io_write(struct wal *w, int fd, const uint8_t *p, size_t len, uint64_t off, int sync)
{
    if (wal_faults.delay_ms > 0 && len) {
        struct timespec d = {wal_faults.delay_ms / 1000, (long)(wal_faults.delay_ms % 1000) * 1000000L};
        while (nanosleep(&d, &d) < 0 && errno == EINTR)
            ;
    }
    if (w->uring)
        return ring_write(w, fd, p, len, off, sync);
    return plain_write(w, fd, p, len, off, sync);
}

static int io_sync(struct wal *w, int fd)
{
    static const uint8_t nothing[1];
    return io_write(w, fd, nothing, 0, 0, 1); /* no bytes: the fsync alone */
}

static int sync_dir(struct wal *w)
{
    return fsync(w->dirfd) < 0 ? -errno : 0;
}

/* ---- segments ---- */

/* The segment appended to (under mu: see struct wal). */
static struct seg tail_seg(struct wal *w)
{
    pthread_mutex_lock(&w->mu);
    struct seg t = w->segs[w->nseg - 1];
    pthread_mutex_unlock(&w->mu);
    return t;
}

/* Creates segment seq with its header, durable (file and directory entry) unless the policy is
 * "no", so that a crash never leaves records in a file the directory forgot. */
static int create_segment(struct wal *w, uint64_t seq, int *out)
{
    char name[SEG_NAME_LEN + 1];
    uint8_t h[SEG_HDR];
    seg_name(name, seq);
    seg_header(h, seq);
    int fd = openat(w->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int sync = w->policy != WAL_FSYNC_NO;
    int rc = io_write(w, fd, h, SEG_HDR, 0, sync);
    if (rc == 0 && sync)
        rc = sync_dir(w);
    if (rc == 0)
        rc = push_seg(w, seq, SEG_HDR);
    if (rc < 0) {
        close(fd);
        unlinkat(w->dirfd, name, 0);
        return rc;
    }
    *out = fd;
    return 0;
}

/* Creates segment seq and appends to it from now on (the descriptor swapped under mu, since the
 * syncer fsyncs a duplicate of it); with clear_failed the WAL takes appends again. */
static int switch_segment(struct wal *w, uint64_t seq, int clear_failed)
{
    int fd;
    int rc = create_segment(w, seq, &fd);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&w->mu);
    close(w->fd);
    w->fd = fd;
    w->dirty = 0;
    if (clear_failed)
        w->failed = WAL_OK;
    pthread_mutex_unlock(&w->mu);
    return 0;
}

/* Moves appends to a new segment. The old one is made durable first: a later wal_sync only
 * reaches the new file, and a lost tail before kept records would be a hole in the history. */
static int roll(struct wal *w)
{
    pthread_mutex_lock(&w->mu);
    int dirty = w->dirty;
    pthread_mutex_unlock(&w->mu);
    if (dirty && w->policy != WAL_FSYNC_NO) {
        int rc = io_sync(w, w->fd);
        if (rc < 0)
            return rc;
    }
    return switch_segment(w, tail_seg(w).seq + 1, 0);
}

/* The newest segment open for appends; an empty log starts at segment first. */
static int open_tail(struct wal *w, uint64_t first)
{
    if (w->nseg == 0)
        return create_segment(w, first, &w->fd);
    char name[SEG_NAME_LEN + 1];
    seg_name(name, w->segs[w->nseg - 1].seq);
    w->fd = openat(w->dirfd, name, O_WRONLY | O_CLOEXEC);
    return w->fd < 0 ? -errno : 0;
}

/* ---- replay, check and repair ---- */

/* A window on one segment file, refilled in large reads; records are decoded in place. */
struct reader {
    int fd;
    uint8_t *buf;
    size_t cap, len, pos; /* buf[pos..len) holds file bytes base + pos .. base + len */
    uint64_t base, size;
};

struct replay {
    struct reader rd;
    struct wal_pos from; /* records before this are skipped unread */
    uint64_t skip;       /* in the segment being read: the offset to start at */
    wal_replay_fn fn;
    void *ctx;
    int stop; /* what fn returned when it stopped the replay */
    struct event *evs;
    size_t evcap;
    struct wal_replay_stats *st;
    int scan;              /* check/repair: report every damaged region and read on past it */
    wal_damage_fn on_damage; /* scan: called per region */
    void *dctx;
    struct wal_damage dmg; /* the segment's first damaged region */
    wal_pos_fn posfn;      /* the record's stream positions, after fn had its events */
    void *posctx;
    size_t npos;
    struct walrec_pos pos[WALREC_POS_MAX];
};

const char *wal_error(const struct wal *w)
{
    return w->err;
}

static int wal_fail(struct wal *w, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int wal_fail(struct wal *w, int e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof(w->err), fmt, ap);
    va_end(ap);
    return -e;
}

/* The window holds READ_CHUNK bytes, or all the rest of a smaller file, or one larger record. */
static int rd_grow(struct reader *r, size_t n)
{
    uint64_t rest = r->size - r->base;
    size_t cap = rest < READ_CHUNK ? (size_t)rest : READ_CHUNK;
    if (cap < n)
        cap = n;
    if (cap <= r->cap)
        return 0;
    uint8_t *b = realloc(r->buf, cap);
    if (!b)
        return -ENOMEM;
    r->buf = b;
    r->cap = cap;
    return 0;
}

/* Makes n bytes available at buf + pos: 1; 0 when the file ends first; or a negative errno. The
 * size check comes first, so a corrupt length never makes us allocate more than the file. */
static int rd_need(struct reader *r, size_t n)
{
    if (r->len - r->pos >= n)
        return 1;
    if (r->size - (r->base + r->pos) < n)
        return 0;
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->base += r->pos;
        r->len -= r->pos;
        r->pos = 0;
    }
    if (rd_grow(r, n) < 0)
        return -ENOMEM;
    while (r->len < n) {
        ssize_t got = pread(r->fd, r->buf + r->len, r->cap - r->len, (off_t)(r->base + r->len));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            return 0; /* shorter than fstat said */
        r->len += (size_t)got;
    }
    return 1;
}

/* Puts the reader at file offset at (the window is kept when it covers it). */
static void rd_seek(struct reader *r, uint64_t at)
{
    if (at >= r->base && at <= r->base + r->len) {
        r->pos = (size_t)(at - r->base);
    } else {
        r->base = at;
        r->len = r->pos = 0;
    }
}

/* Reads and checks one record at the reader's position: 1 with it decoded, 0 when it is torn or
 * corrupt, or a negative errno. */
static int next_record(struct replay *rp, size_t *n, uint32_t *len)
{
    struct reader *r = &rp->rd;
    int rc = rd_need(r, WALREC_HDR);
    if (rc <= 0)
        return rc;
    if (walrec_header(r->buf + r->pos, len) < 0)
        return 0;
    rc = rd_need(r, WALREC_HDR + (size_t)*len);
    if (rc <= 0)
        return rc;
    const uint8_t *h = r->buf + r->pos;
    rc = walrec_decode_pos(h, h + WALREC_HDR, *len, &rp->evs, &rp->evcap, n, rp->pos,
                           &rp->npos);
    if (rc < 0)
        return rc;
    return rc == 0;
}

/* From one byte past the reader's position, looks for the next intact record: 1 with the reader
 * at it, 0 when the segment holds none (the reader at its end), or a negative errno. Candidates
 * are the offsets whose length word carries the magic byte; a payload count that cannot fit is
 * refused before the CRC is paid. */
static int resync(struct replay *rp)
{
    struct reader *r = &rp->rd;
    uint64_t at = r->base + r->pos + 1;
    for (;;) {
        if (at + WALREC_HDR + WALREC_COUNT > r->size) {
            rd_seek(r, r->size);
            return 0;
        }
        rd_seek(r, at);
        int rc = rd_need(r, WALREC_HDR + WALREC_COUNT);
        if (rc <= 0) {
            rd_seek(r, r->size);
            return rc;
        }
        const uint8_t *p = r->buf + r->pos;
        const uint8_t *hit = memchr(p + 3, WALREC_MAGIC, r->len - r->pos - 3);
        if (!hit) {
            at = r->base + r->len - 3; /* past every byte looked at; the last 3 may start one */
            continue;
        }
        rd_seek(r, r->base + (uint64_t)(hit - 3 - r->buf));
        rc = rd_need(r, WALREC_HDR + WALREC_COUNT);
        if (rc < 0)
            return rc;
        uint32_t len;
        if (rc == 1 && walrec_header(r->buf + r->pos, &len) == 0) {
            uint32_t count = walrec_get32(r->buf + r->pos + WALREC_HDR);
            if (walrec_count_fits(count, len)) {
                size_t n;
                rc = next_record(rp, &n, &len);
                if (rc != 0)
                    return rc;
            }
        }
        at = r->base + r->pos + 1;
    }
}

/* Counts the intact records from the reader's position on: 1 when damage stops the count (the
 * reader at it), 0 at the end of the segment, or a negative errno. */
static int count_intact(struct replay *rp, uint64_t *count)
{
    struct reader *r = &rp->rd;
    for (*count = 0;; (*count)++) {
        if (r->base + r->pos == r->size)
            return 0;
        size_t n;
        uint32_t len;
        int rc = next_record(rp, &n, &len);
        if (rc <= 0)
            return rc < 0 ? rc : 1;
        r->pos += WALREC_HDR + len;
        rp->st->records++;
        rp->st->events += n;
    }
}

/* Damage at offset x of segment seq, before it `before` intact records: finds where it ends and
 * how many intact records follow. rp->dmg gets the first region; SEG_CUT when nothing intact
 * follows it, SEG_DAMAGED when something does. A scan reports every region to on_damage and
 * reads on to the end. */
static int damaged(struct replay *rp, uint64_t seq, uint64_t x, uint64_t before)
{
    struct reader *r = &rp->rd;
    int first = 0;
    for (;;) {
        int found = resync(rp);
        if (found < 0)
            return found;
        uint64_t y = found ? r->base + r->pos : r->size, after = 0;
        int more = found ? count_intact(rp, &after) : 0;
        if (more < 0)
            return more;
        struct wal_damage d = {.seq = seq, .off = x, .len = y - x, .before = before, .after = after};
        if (!first) {
            rp->dmg = d;
            first = found ? SEG_DAMAGED : SEG_CUT;
        }
        if (!rp->scan)
            return first;
        int rc = rp->on_damage ? rp->on_damage(rp->dctx, &d) : 0;
        if (rc)
            return rc < 0 ? rc : -ECANCELED;
        if (!more)
            return first;
        x = r->base + r->pos;
        before = after;
    }
}

/* Replays (scanning: checks) the records of the open segment; *good is the end of the intact
 * records before its first damage. */
static int replay_records(struct replay *rp, uint64_t seq, uint64_t *good)
{
    struct reader *r = &rp->rd;
    uint64_t before = 0;
    *good = 0;
    int rc = rd_need(r, SEG_HDR);
    if (rc < 0)
        return rc;
    /* another version here is damage: wal_open refused a newer format already */
    rc = rc ? seg_header_check(r->buf + r->pos) : 1;
    if (rc == 0) {
        r->pos += SEG_HDR;
        if (rp->skip > SEG_HDR) { /* a snapshot holds the records before skip: jump over them */
            if (rp->skip >= r->size) {
                *good = r->size;
                return SEG_CLEAN;
            }
            rd_seek(r, rp->skip);
        }
        for (;; before++) {
            *good = r->base + r->pos;
            if (*good == r->size)
                return SEG_CLEAN;
            size_t n;
            uint32_t len;
            rc = next_record(rp, &n, &len);
            if (rc < 0)
                return rc;
            if (rc == 0)
                break;
            r->pos += WALREC_HDR + len;
            rp->st->records++;
            rp->st->events += n;
            if (rp->fn && (rp->stop = rp->fn(rp->ctx, rp->evs, n)) != 0)
                return SEG_STOPPED;
            if (rp->npos && rp->posfn &&
                (rp->stop = rp->posfn(rp->posctx, rp->pos, rp->npos)) != 0)
                return SEG_STOPPED;
        }
    }
    return damaged(rp, seq, *good, before);
}

static int replay_segment(struct wal *w, size_t i, struct replay *rp, uint64_t *good)
{
    char name[SEG_NAME_LEN + 1];
    seg_name(name, w->segs[i].seq);
    struct reader *r = &rp->rd;
    r->fd = openat(w->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0)
        return wal_fail(w, errno, "cannot open %s/%s: %s", w->path, name, strerror(errno));
    struct stat st;
    int rc = fstat(r->fd, &st) < 0 ? -errno : 0;
    if (rc == 0) {
        w->total += (uint64_t)st.st_size - w->segs[i].size; /* in case it changed since open */
        w->segs[i].size = r->size = (uint64_t)st.st_size;
        r->base = r->len = r->pos = 0;
        rc = replay_records(rp, w->segs[i].seq, good);
    }
    close(r->fd);
    if (rc < 0 && !w->err[0])
        wal_fail(w, -rc, "cannot read %s/%s: %s", w->path, name, strerror(-rc));
    return rc;
}

static int write_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
    while (len) {
        ssize_t got = pwrite(fd, p, len, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return got < 0 ? -errno : -EIO;
        p += got;
        len -= (size_t)got;
        off += (uint64_t)got;
    }
    return 0;
}

/* Copies bytes [off, off + len) of file src (from) to dst at dst_off. */
static int copy_range(int src, uint64_t off, uint64_t len, int dst, uint64_t dst_off)
{
    static const size_t chunk = 1u << 20;
    uint8_t *buf = malloc(chunk);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    while (rc == 0 && len) {
        size_t want = len < chunk ? (size_t)len : chunk;
        ssize_t got = pread(src, buf, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            rc = got < 0 ? -errno : -EIO;
            break;
        }
        rc = write_all(dst, buf, (size_t)got, dst_off);
        off += (uint64_t)got;
        dst_off += (uint64_t)got;
        len -= (uint64_t)got;
    }
    free(buf);
    return rc;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* Copies bytes [off, off + len) of segment seq to DIR/wal-damaged/NAME.at-OFF.damaged, made
 * durable; out gets that path. Damaged bytes are never simply deleted: a human may want them. */
static int save_damaged(struct wal *w, uint64_t seq, uint64_t off, uint64_t len, char *out,
                        size_t outlen)
{
    char name[SEG_NAME_LEN + 1], dir[PATH_MAX];
    seg_name(name, seq);
    snprintf(dir, sizeof(dir), "%.*s/" DAMAGED_DIR, (int)w->dirlen, w->path);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return wal_fail(w, errno, "cannot create %s: %s", dir, strerror(errno));
    snprintf(out, outlen, "%s/%s.at-%" PRIu64 ".damaged", dir, name, off);
    int src = openat(w->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return wal_fail(w, errno, "cannot open %s/%s: %s", w->path, name, strerror(errno));
    int dst = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = dst < 0 ? -errno : copy_range(src, off, len, dst, 0);
    if (rc == 0 && fsync(dst) < 0)
        rc = -errno;
    if (dst >= 0)
        close(dst);
    close(src);
    if (rc == 0)
        rc = fsync_path(dir);
    if (rc < 0)
        return wal_fail(w, -rc, "cannot copy the damaged bytes of %s/%s to %s: %s", w->path, name,
                        out, strerror(-rc));
    return 0;
}

/* Cuts the torn tail of the newest segment i at byte good: its bytes are kept aside first when
 * that can be done, then the segment is truncated, or removed when not even its header is good
 * (a crash while rolling). */
static int cut_log(struct wal *w, size_t i, uint64_t good, struct wal_replay_stats *st)
{
    char name[SEG_NAME_LEN + 1], saved[PATH_MAX + 64];
    struct seg *s = &w->segs[i];
    seg_name(name, s->seq);
    st->cut_saved = s->size > good && save_damaged(w, s->seq, good, s->size - good, saved,
                                                   sizeof(saved)) == 0;
    w->err[0] = '\0'; /* a failed copy is no reason to refuse: the tail was never acked whole */
    int keep = good >= SEG_HDR, rc;
    if (keep) {
        int fd = openat(w->dirfd, name, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        rc = ftruncate(fd, (off_t)good) < 0 || fsync(fd) < 0 ? -errno : 0;
        close(fd);
    } else {
        rc = unlinkat(w->dirfd, name, 0) < 0 ? -errno : sync_dir(w);
    }
    if (rc < 0)
        return wal_fail(w, -rc, "cannot cut the torn tail of %s/%s: %s", w->path, name,
                        strerror(-rc));
    st->cut_bytes += s->size - good;
    st->cut_seq = s->seq;
    st->cut_off = good;
    w->total -= s->size - good;
    s->size = good;
    if (!keep)
        w->nseg--;
    return 0;
}

/* The message that refuses start-up over damage other than a torn tail. */
static int refuse_damage(struct wal *w, size_t i, const struct wal_damage *d, int kind)
{
    char name[SEG_NAME_LEN + 1];
    seg_name(name, d->seq);
    size_t later = w->nseg - i - 1;
    const char *what =
        d->off < SEG_HDR ? "its segment header is not intact" : "they hold no intact record";
    if (kind == SEG_DAMAGED)
        return wal_fail(
            w, EBADMSG,
            "the WAL is damaged: %s/%s, %" PRIu64 " bytes at byte offset %" PRIu64
            " (%s), with %" PRIu64 " intact records after them in that file (and %zu later "
            "segments). Starting would drop acknowledged events, so cascaded does not. Run "
            "`cascade-wal repair %.*s` (it copies the damaged bytes to %.*s/" DAMAGED_DIR
            "/ and keeps every intact record before and after them), then start again",
            w->path, name, d->len, d->off, what, d->after, later, (int)w->dirlen, w->path,
            (int)w->dirlen, w->path);
    return wal_fail(
        w, EBADMSG,
        "the WAL is damaged: %s/%s holds no intact record from byte offset %" PRIu64
        " to its end (%" PRIu64 " bytes: truncated or overwritten), yet %zu later segments follow "
        "it, so this is no torn tail of a crash. Starting would drop acknowledged events, so "
        "cascaded does not. Restore the file if you can, or run `cascade-wal repair %.*s` (it "
        "copies the damaged bytes to %.*s/" DAMAGED_DIR "/ and keeps every intact record), then "
        "start again",
        w->path, name, d->off, d->len, later, (int)w->dirlen, w->path, (int)w->dirlen, w->path);
}

/* The segments from from.seq on (all when 0) must be numbered without a gap, and with a
 * snapshot the first must be from.seq: a missing segment's events exist nowhere else. With
 * allow_history_loss they are counted and let through; else -ENODATA with a message. */
static int check_gaps(struct wal *w, struct wal_pos from, struct wal_replay_stats *st)
{
    size_t i = 0;
    while (i < w->nseg && w->segs[i].seq < from.seq)
        i++;
    uint64_t expect = from.seq ? from.seq : i < w->nseg ? w->segs[i].seq : 0, missing = 0;
    uint64_t gap_from = 0, gap_to = 0;
    int none_left = from.seq && i == w->nseg; /* nothing at or after the snapshot's segment */
    if (none_left) {
        gap_from = gap_to = from.seq;
        missing = 1;
    }
    for (; i < w->nseg; i++) {
        if (w->segs[i].seq != expect && !missing) {
            gap_from = expect;
            gap_to = w->segs[i].seq - 1;
        }
        missing += w->segs[i].seq - expect;
        expect = w->segs[i].seq + 1;
    }
    st->missing = missing;
    if (!missing || w->allow_loss)
        return 0;
    char name[SEG_NAME_LEN + 1], range[64] = "";
    seg_name(name, gap_from);
    if (gap_to > gap_from)
        snprintf(range, sizeof(range), " to %020" PRIu64 ".wal", gap_to);
    char where[160];
    if (from.seq && gap_from == from.seq)
        snprintf(where, sizeof(where), ": the snapshot loaded continues from segment %" PRIu64 "%s",
                 from.seq, none_left ? ", and no segment from there on is left" : "");
    else
        snprintf(where, sizeof(where), " after segment %" PRIu64, gap_from - 1);
    return wal_fail(
        w, ENODATA,
        "the WAL is missing segments: %s/%s%s (%" PRIu64 " segment(s) in all)%s, and the "
        "events in them exist nowhere else. Starting would lose them without a word, "
        "so cascaded does not. Restore the files if you can; or start with "
        "--allow-history-loss (or run `cascade-wal repair %.*s`, which puts empty segments in "
        "their place) to go on without them",
        w->path, name, range, missing, where, (int)w->dirlen, w->path);
}

static int replay_all(struct wal *w, struct replay *rp)
{
    for (size_t i = 0; i < w->nseg; i++) {
        uint64_t good = 0;
        if (w->segs[i].seq < rp->from.seq)
            continue;
        rp->skip = w->segs[i].seq == rp->from.seq ? rp->from.off : 0;
        int rc = replay_segment(w, i, rp, &good);
        if (rc < 0)
            return rc;
        if (rc == SEG_STOPPED)
            return rp->stop;
        if (rc == SEG_CUT && i + 1 == w->nseg) { /* a torn tail: a crash mid-write */
            rc = cut_log(w, i, good, rp->st);
            if (rc < 0)
                return rc;
            rp->st->segments += good >= SEG_HDR;
            break;
        }
        if (rc != SEG_CLEAN)
            return refuse_damage(w, i, &rp->dmg, rc);
        rp->st->segments++;
    }
    return 0;
}

int wal_pos_cmp(struct wal_pos a, struct wal_pos b)
{
    if (a.seq != b.seq)
        return a.seq < b.seq ? -1 : 1;
    return a.off < b.off ? -1 : a.off > b.off;
}

int wal_replay(struct wal *w, wal_replay_fn fn, void *ctx, struct wal_replay_stats *st)
{
    return wal_replay_from(w, (struct wal_pos){0, 0}, fn, ctx, st);
}

int wal_replay_from(struct wal *w, struct wal_pos from, wal_replay_fn fn, void *ctx,
                    struct wal_replay_stats *st)
{
    struct wal_replay_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof(*st));
    w->err[0] = '\0';
    if (w->ready)
        return -EINVAL; /* the log is replayed once, before the first append */
    int rc = check_gaps(w, from, st);
    if (rc < 0)
        return rc;
    struct replay *rp = calloc(1, sizeof(*rp)); /* its positions take 16 KiB */
    if (!rp)
        return -ENOMEM;
    *rp = (struct replay){.from = from, .fn = fn, .ctx = ctx, .st = st, .posfn = w->posfn,
                          .posctx = w->posctx};
    rc = replay_all(w, rp);
    free(rp->rd.buf);
    free(rp->evs);
    free(rp);
    if (rc != 0)
        return rc;
    rc = open_tail(w, from.seq ? from.seq : 1);
    if (rc < 0)
        return rc;
    if (w->segs[w->nseg - 1].seq < from.seq) {
        /* The log ends before the snapshot's segment (let through above): that segment is
         * created empty, so that the next start finds no gap after the snapshot. */
        rc = switch_segment(w, from.seq, 0);
        if (rc < 0)
            return rc;
    }
    if (wal_pos_cmp(wal_position(w), from) < 0) {
        /* The log ends before the snapshot's position: continue past it, in a new segment. */
        uint64_t last = w->segs[w->nseg - 1].seq;
        rc = switch_segment(w, (last > from.seq ? last : from.seq) + 1, 0);
        if (rc < 0)
            return rc;
    }
    st->bytes = w->total;
    w->ready = 1;
    return 0;
}

/* ---- check and repair (cascade-wal) ---- */

struct regions {
    struct wal_damage *d;
    size_t n, cap;
    wal_damage_fn fn; /* check: passed on at once */
    void *ctx;
    int collect; /* repair: kept for after the segment's scan */
    struct wal_check_stats *st;
};

static int on_region(void *ctx, const struct wal_damage *d)
{
    struct regions *g = ctx;
    g->st->damaged++;
    g->st->damaged_bytes += d->len;
    if (!g->collect)
        return g->fn ? g->fn(g->ctx, d) : 0;
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        struct wal_damage *p = realloc(g->d, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        g->d = p;
        g->cap = cap;
    }
    g->d[g->n++] = *d;
    return 0;
}

static int report_gap(struct wal *w, uint64_t seq, uint64_t missing, int repair,
                      wal_damage_fn fn, void *ctx, struct wal_check_stats *st)
{
    struct wal_damage d = {.seq = seq, .missing = missing};
    st->missing += missing;
    for (uint64_t q = seq; repair && q < seq + missing; q++) {
        int fd, rc = create_segment(w, q, &fd);
        if (rc < 0) {
            char name[SEG_NAME_LEN + 1];
            seg_name(name, q);
            return wal_fail(w, -rc, "cannot create %s/%s: %s", w->path, name, strerror(-rc));
        }
        close(fd);
    }
    int rc = fn ? fn(ctx, &d) : 0;
    return rc ? (rc < 0 ? rc : -ECANCELED) : 1;
}

/* Gaps in the numbering (and before need_from, when given: the segments from there on must
 * exist), each reported to fn and, repairing, filled with empty segments. How many, or -errno. */
static int scan_gaps(struct wal *w, uint64_t need_from, int repair, wal_damage_fn fn, void *ctx,
                     struct wal_check_stats *st)
{
    size_t n0 = w->nseg;
    int found = 0, rc = 0;
    uint64_t expect = n0 ? w->segs[0].seq : need_from;
    if (need_from && expect > need_from)
        expect = need_from;
    for (size_t i = 0; rc >= 0 && i < n0; i++) {
        uint64_t seq = w->segs[i].seq;
        if (seq > expect)
            found += rc = report_gap(w, expect, seq - expect, repair, fn, ctx, st);
        expect = seq + 1;
    }
    if (rc >= 0 && need_from && expect <= need_from)
        found += rc = report_gap(w, expect, need_from - expect + 1, repair, fn, ctx, st);
    if (w->nseg > n0)
        qsort(w->segs, w->nseg, sizeof(*w->segs), cmp_seg);
    return rc < 0 ? rc : found;
}

/* Segment i had the damaged regions g: each is copied aside, the intact records after the first
 * go to a new segment at the end, then the segment is cut at the first. */
static int repair_segment(struct wal *w, size_t i, struct regions *g, wal_damage_fn fn, void *ctx,
                          struct wal_check_stats *st)
{
    char name[SEG_NAME_LEN + 1], saved[PATH_MAX + 64];
    uint64_t seq = w->segs[i].seq, size = w->segs[i].size, cut = g->d[0].off;
    seg_name(name, seq);
    for (size_t k = 0; k < g->n; k++) {
        g->d[k].saved = NULL;
        if (g->d[k].len) {
            int rc = save_damaged(w, seq, g->d[k].off, g->d[k].len, saved, sizeof(saved));
            if (rc < 0)
                return rc;
            g->d[k].saved = saved;
        }
        int rc = fn ? fn(ctx, &g->d[k]) : 0;
        if (rc)
            return rc < 0 ? rc : -ECANCELED;
        st->moved += g->d[k].after;
    }
    int src = openat(w->dirfd, name, O_RDWR | O_CLOEXEC);
    if (src < 0)
        return wal_fail(w, errno, "cannot open %s/%s: %s", w->path, name, strerror(errno));
    int rc = 0, dst = -1;
    uint64_t at = SEG_HDR;
    for (size_t k = 0; rc == 0 && k < g->n; k++) {
        uint64_t from = g->d[k].off + g->d[k].len;
        uint64_t to = k + 1 < g->n ? g->d[k + 1].off : size;
        if (from >= to)
            continue;
        if (dst < 0 && (rc = create_segment(w, w->segs[w->nseg - 1].seq + 1, &dst)) < 0)
            break;
        rc = copy_range(src, from, to - from, dst, at);
        at += to - from;
    }
    if (rc == 0 && dst >= 0) {
        rc = fsync(dst) < 0 ? -errno : 0;
        w->total += at - SEG_HDR;
        w->segs[w->nseg - 1].size = at;
    }
    if (dst >= 0)
        close(dst);
    if (rc == 0) {
        uint8_t h[SEG_HDR];
        seg_header(h, seq);
        uint64_t keep = cut < SEG_HDR ? 0 : cut;
        rc = ftruncate(src, (off_t)keep) < 0 ? -errno : 0;
        if (rc == 0 && keep == 0)
            rc = write_all(src, h, SEG_HDR, 0);
        if (rc == 0 && fsync(src) < 0)
            rc = -errno;
        keep = keep ? keep : SEG_HDR;
        w->total -= w->segs[i].size - keep;
        w->segs[i].size = keep;
    }
    close(src);
    if (rc < 0 && !w->err[0])
        wal_fail(w, -rc, "cannot repair %s/%s: %s", w->path, name, strerror(-rc));
    return rc;
}

static int check_or_repair(struct wal *w, uint64_t need_from, int repair, wal_damage_fn fn,
                           void *ctx, struct wal_check_stats *st)
{
    struct wal_check_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof(*st));
    w->err[0] = '\0';
    if (w->ready)
        return -EINVAL;
    int rc = scan_gaps(w, need_from, repair, fn, ctx, st), gaps = rc;
    if (rc < 0)
        return rc;
    struct wal_replay_stats rs = {0};
    struct regions g = {.fn = fn, .ctx = ctx, .collect = repair, .st = st};
    struct replay rp = {.st = &rs, .scan = 1, .on_damage = on_region, .dctx = &g};
    size_t n0 = w->nseg;
    for (size_t i = 0; rc >= 0 && i < n0; i++) {
        uint64_t good;
        g.n = 0;
        int seg = replay_segment(w, i, &rp, &good);
        if (seg < 0) {
            rc = seg;
            break;
        }
        st->segments++;
        if (seg != SEG_CLEAN && repair)
            rc = repair_segment(w, i, &g, fn, ctx, st);
    }
    free(rp.rd.buf);
    free(rp.evs);
    free(g.d);
    st->records = rs.records;
    st->events = rs.events;
    if (rc >= 0 && repair && (rc = sync_dir(w)) < 0)
        wal_fail(w, -rc, "cannot sync %s: %s", w->path, strerror(-rc));
    return rc < 0 ? rc : gaps + (int)st->damaged;
}

int wal_check(struct wal *w, uint64_t need_from, wal_damage_fn fn, void *ctx,
              struct wal_check_stats *st)
{
    return check_or_repair(w, need_from, 0, fn, ctx, st);
}

int wal_repair(struct wal *w, uint64_t need_from, wal_damage_fn fn, void *ctx,
               struct wal_check_stats *st)
{
    return check_or_repair(w, need_from, 1, fn, ctx, st);
}

/* ---- appending ---- */

static int reserve_buf(struct wal *w, size_t n)
{
    if (n <= w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : 64 << 10;
    while (cap < n)
        cap *= 2;
    uint8_t *b = realloc(w->buf, cap);
    if (!b)
        return -ENOMEM;
    w->buf = b;
    w->cap = cap;
    return 0;
}

/* Encodes the kept events into w->buf as one record, or several when they overflow the 24-bit
 * length. An event the decoder would refuse is refused here (-EINVAL), before anything is
 * written: once on disk it would read back as corruption and cut everything after it. */
static int encode(struct wal *w, const struct event *evs, const uint8_t *keep, size_t n,
                  const struct walrec_pos *pos, size_t npos, size_t *out)
{
    size_t used = 0, rec = 0;
    uint32_t count = 0;
    /* the positions go at the end of the last record: room for them in every one */
    size_t trailer = npos ? 2 + npos * WALREC_POS_SIZE : 0;
    if (npos > WALREC_POS_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (keep && !keep[i])
            continue;
        size_t es = walrec_event_size(&evs[i]);
        if (es == 0)
            return -EINVAL;
        if (count && used - rec - WALREC_HDR + es + trailer > WALREC_MAX) {
            walrec_seal(w->buf + rec, (uint32_t)(used - rec - WALREC_HDR), count);
            rec = used;
            count = 0;
        }
        size_t head = count ? 0 : WALREC_HDR + WALREC_COUNT;
        if (reserve_buf(w, used + head + es) < 0)
            return -ENOMEM;
        used += head;
        walrec_put_event(w->buf + used, &evs[i]);
        used += es;
        count++;
    }
    if (npos) {
        if (!count) { /* positions alone: a message whose events were all rejected */
            if (reserve_buf(w, used + WALREC_HDR + WALREC_COUNT + trailer) < 0)
                return -ENOMEM;
            used += WALREC_HDR + WALREC_COUNT;
        } else if (reserve_buf(w, used + trailer) < 0) {
            return -ENOMEM;
        }
        used = (size_t)(walrec_put_pos(w->buf + used, pos, npos) - w->buf);
        walrec_seal(w->buf + rec, (uint32_t)(used - rec - WALREC_HDR), count | WALREC_POS_FLAG);
    } else if (count) {
        walrec_seal(w->buf + rec, (uint32_t)(used - rec - WALREC_HDR), count);
    }
    *out = used;
    return 0;
}

/* After a failed write the file may hold part of the record: cut it off, or the next record
 * would land after garbage that replay stops at. If even that fails, stop appending. */
static int undo_write(struct wal *w, int rc)
{
    if (ftruncate(w->fd, (off_t)tail_seg(w).size) < 0)
        set_failed(w);
    return rc;
}

/* The everysec syncer: fsyncs a duplicate of the current segment's descriptor, so that a roll
 * may close the original meanwhile; a roll fsyncs the old segment itself. */
static void *syncer_main(void *arg)
{
    struct wal *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->syncer_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        if (!w->presync_due) /* asked while the last fsync ran: at once */
            pthread_cond_timedwait(&w->cv, &w->mu, &until);
        w->presync_due = 0;
        if (w->syncer_stop || !w->dirty || w->failed)
            continue;
        int fd = dup(w->fd);
        w->dirty = 0;
        pthread_mutex_unlock(&w->mu);
        int rc = fault_take(&wal_faults.fail_fsync);
        if (rc == 0)
            rc = fd < 0 || fdatasync(fd) < 0 ? -errno : 0;
        if (fd >= 0)
            close(fd);
        pthread_mutex_lock(&w->mu);
        if (rc < 0)
            w->failed = w->failed > WAL_FAILED_DATA ? w->failed : WAL_FAILED_DATA; /* see set_failed_as */
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static int start_syncer(struct wal *w)
{
    if (w->syncer_on || w->policy != WAL_FSYNC_EVERYSEC)
        return 0;
    int rc = pthread_create(&w->syncer, NULL, syncer_main, w);
    if (rc)
        return -rc;
    w->syncer_on = 1;
    return 0;
}

static int failed(struct wal *w)
{
    pthread_mutex_lock(&w->mu);
    int f = w->failed;
    pthread_mutex_unlock(&w->mu);
    return f;
}

int wal_append(struct wal *w, const struct event *evs, const uint8_t *keep, size_t n)
{
    return wal_append_pos(w, evs, keep, n, NULL, 0);
}

void wal_set_pos_fn(struct wal *w, wal_pos_fn fn, void *ctx)
{
    w->posfn = fn;
    w->posctx = ctx;
}

int wal_append_pos(struct wal *w, const struct event *evs, const uint8_t *keep, size_t n,
                   const struct walrec_pos *pos, size_t npos)
{
    if (failed(w))
        return -EIO;
    if (!w->ready) {
        /* No replay yet: validate (and cut) the log first, or we could append behind a torn
         * record and lose everything written from here on at the next start. */
        int rc = wal_replay(w, NULL, NULL, NULL);
        if (rc != 0)
            return rc < 0 ? rc : -EIO;
    }
    size_t len;
    int rc = encode(w, evs, keep, n, pos, npos, &len);
    if (rc < 0 || len == 0)
        return rc;
    struct seg s = tail_seg(w);
    if (s.size > SEG_HDR && s.size + len > w->seg_max) {
        rc = roll(w);
        if (rc < 0)
            return rc;
        s = tail_seg(w);
    }
    int always = w->policy == WAL_FSYNC_ALWAYS;
    rc = io_write(w, w->fd, w->buf, len, s.size, always);
    if (rc < 0)
        return undo_write(w, rc);
    pthread_mutex_lock(&w->mu);
    w->segs[w->nseg - 1].size += len;
    w->total += len;
    w->dirty = !always;
    /* Near its end the syncer fsyncs the segment at once rather than up to a second later:
     * the roll must fsync it before the next one takes records (see roll), and with a second of
     * data dirty that fsync held the appender for 15-355 ms (10 M events, a busy disk). */
    if (w->syncer_on && w->presynced != s.seq && s.size + len > w->seg_max - w->seg_max / PRESYNC_AT) {
        w->presynced = s.seq;
        w->presync_due = 1;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return start_syncer(w);
}

int wal_failed(struct wal *w)
{
    return failed(w) != WAL_OK;
}

int wal_restart_segment(struct wal *w, struct wal_pos *pos)
{
    int why = failed(w);
    if (why == WAL_OK) {
        *pos = wal_position(w);
        return 0;
    }
    if (why != WAL_FAILED_DATA || !w->ready)
        return -EIO;
    int rc = switch_segment(w, tail_seg(w).seq + 1, 1);
    if (rc < 0)
        return rc;
    *pos = wal_position(w);
    return 0;
}

int wal_sync(struct wal *w)
{
    pthread_mutex_lock(&w->mu);
    int f = w->failed, dirty = w->dirty;
    pthread_mutex_unlock(&w->mu);
    if (f)
        return -EIO;
    if (!w->ready || !dirty)
        return 0;
    int rc = io_sync(w, w->fd);
    pthread_mutex_lock(&w->mu);
    if (rc == 0)
        w->dirty = 0;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void wal_close(struct wal *w)
{
    if (!w)
        return;
    stop_syncer(w);
    if (w->policy != WAL_FSYNC_NO)
        wal_sync(w);
    wal_free(w);
}
