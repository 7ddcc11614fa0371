/* Old snapshots and WAL segments deleted off the calling thread (see trash.h). */
#include "store/trash.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TRASH_DIR "trash"

struct trash {
    int dirfd;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int queued;      /* renamed in since the thread last emptied the directory (under mu) */
    uint64_t serial; /* names of the renamed files (under mu) */
    int stop;        /* under mu */
};

/* Unlinks everything in the trash (until a stop). */
static void empty_dir(struct trash *t)
{
    int fd = dup(t->dirfd);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    rewinddir(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        unlinkat(t->dirfd, de->d_name, 0); /* a failure: left for the next start */
        pthread_mutex_lock(&t->mu);
        int stop = t->stop;
        pthread_mutex_unlock(&t->mu);
        if (stop)
            break;
    }
    closedir(d);
}

static void *trash_main(void *arg)
{
    struct trash *t = arg;
    empty_dir(t); /* a crash's leftovers */
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        if (!t->queued) {
            pthread_cond_wait(&t->cv, &t->mu);
            continue;
        }
        t->queued = 0;
        pthread_mutex_unlock(&t->mu);
        empty_dir(t);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int trash_open(const char *data_dir, struct trash **out, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", data_dir, TRASH_DIR) >= (int)sizeof(path)) {
        snprintf(err, errlen, "data dir path too long: %s", data_dir);
        return -ENAMETOOLONG;
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(e));
        return -e;
    }
    struct trash *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    t->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (t->dirfd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        free(t);
        return -e;
    }
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    int rc = pthread_create(&t->th, NULL, trash_main, t);
    if (rc) {
        snprintf(err, errlen, "cannot start the trash thread: %s", strerror(rc));
        pthread_cond_destroy(&t->cv);
        pthread_mutex_destroy(&t->mu);
        close(t->dirfd);
        free(t);
        return -rc;
    }
    *out = t;
    return 0;
}

int trash_remove(struct trash *t, int dirfd, const char *name)
{
    if (t) {
        char to[48];
        pthread_mutex_lock(&t->mu);
        snprintf(to, sizeof(to), "%020llu", (unsigned long long)++t->serial);
        pthread_mutex_unlock(&t->mu);
        /* the pid too: a crash's leftover of the same name would be replaced (and so unlinked
         * right here) by the rename */
        snprintf(to + 20, sizeof(to) - 20, "-%ld", (long)getpid());
        if (renameat(dirfd, name, t->dirfd, to) == 0) {
            pthread_mutex_lock(&t->mu);
            t->queued = 1;
            pthread_cond_signal(&t->cv);
            pthread_mutex_unlock(&t->mu);
            return 0;
        }
        if (errno == ENOENT)
            return -ENOENT;
    }
    return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
}

void trash_close(struct trash *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->th, NULL);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    close(t->dirfd);
    free(t);
}
