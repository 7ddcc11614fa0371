/* A child's own memory from /proc (see procmem.h). */
#include "core/procmem.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int procmem_private_bytes(pid_t pid, uint64_t *out)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? -ENOENT : -errno;
    uint64_t sum = 0;
    int seen = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "Private_Clean: %llu kB", &kb) == 1 ||
            sscanf(line, "Private_Dirty: %llu kB", &kb) == 1) {
            sum += kb * 1024ull;
            seen++;
        }
    }
    fclose(f);
    if (seen < 2) /* an exited child's file is empty */
        return seen ? -ENODATA : -ENOENT;
    *out = sum;
    return 0;
}

struct procmem_watch {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned interval_ms;
    pid_t pid; /* under mu */
    int stop;  /* under mu */
    _Atomic uint64_t bytes, peak;
};

static void deadline_in(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *watch_main(void *arg)
{
    struct procmem_watch *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        pid_t pid = w->pid;
        if (pid) {
            pthread_mutex_unlock(&w->mu); /* the read is slow: never under the lock */
            uint64_t b = 0;
            int rc = procmem_private_bytes(pid, &b);
            pthread_mutex_lock(&w->mu);
            if (w->pid == pid) { /* not re-aimed meanwhile */
                atomic_store(&w->bytes, rc ? 0 : b);
                if (!rc && b > atomic_load(&w->peak))
                    atomic_store(&w->peak, b);
            }
            if (w->stop)
                break;
            if (w->pid != pid)
                continue; /* a new pid: sample it at once */
        }
        struct timespec ts;
        deadline_in(&ts, w->interval_ms);
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int procmem_watch_start(unsigned interval_ms, struct procmem_watch **out)
{
    struct procmem_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->interval_ms = interval_ms < 10 ? 10 : interval_ms;
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (!rc) {
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        rc = pthread_cond_init(&w->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (rc) {
        free(w);
        return -rc;
    }
    pthread_mutex_init(&w->mu, NULL);
    rc = pthread_create(&w->th, NULL, watch_main, w);
    if (rc) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return -rc;
    }
    *out = w;
    return 0;
}

void procmem_watch_set(struct procmem_watch *w, pid_t pid)
{
    pthread_mutex_lock(&w->mu);
    w->pid = pid;
    atomic_store(&w->bytes, 0);
    atomic_store(&w->peak, 0);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

uint64_t procmem_watch_bytes(const struct procmem_watch *w, uint64_t *peak)
{
    if (peak)
        *peak = atomic_load(&w->peak);
    return atomic_load(&w->bytes);
}

void procmem_watch_stop(struct procmem_watch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
