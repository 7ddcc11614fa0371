/* Snapshot files (see snapfile.h): naming, the write-then-rename protocol, choosing what to
 * load, retention. The bytes inside are engine/persist.c's. */
#include "store/snapfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "engine/persist.h"
#include "store/trash.h"

#define DIGITS 20
#define PREFIX "snap-"
#define SUFFIX ".snap"
#define TMP    ".tmp"
#define BAD    ".corrupt" /* appended to a refused snapshot's name */

struct found {
    struct wal_pos pos;
    char name[SNAPSHOT_NAME_MAX];
};

static void dir_path(char *out, size_t len, const char *data_dir)
{
    snprintf(out, len, "%s/snapshots", data_dir);
}

static void file_name(char *out, struct wal_pos pos, const char *suffix)
{
    snprintf(out, SNAPSHOT_NAME_MAX, PREFIX "%0*" PRIu64 "-%0*" PRIu64 "%s", DIGITS, pos.seq,
             DIGITS, pos.off, suffix);
}

static int parse_digits(const char *s, uint64_t *v)
{
    *v = 0;
    for (int i = 0; i < DIGITS; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9 || *v > (UINT64_MAX - d) / 10)
            return -1;
        *v = *v * 10 + d;
    }
    return 0;
}

/* The position in a snapshot's (or .tmp's) name: 0, or -1 for another file. */
static int parse_name(const char *name, const char *suffix, struct wal_pos *pos)
{
    size_t plen = strlen(PREFIX), want = plen + 2 * DIGITS + 1 + strlen(suffix);
    if (strlen(name) != want || strncmp(name, PREFIX, plen) != 0 || name[plen + DIGITS] != '-' ||
        strcmp(name + plen + 2 * DIGITS + 1, suffix) != 0)
        return -1;
    return parse_digits(name + plen, &pos->seq) || parse_digits(name + plen + DIGITS + 1, &pos->off)
               ? -1
               : 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

void snapshot_name(char *out, struct wal_pos pos)
{
    file_name(out, pos, SUFFIX);
}

int snapshot_parse_name(const char *name, struct wal_pos *pos)
{
    return parse_name(name, SUFFIX, pos);
}

int snapshot_dir_init(const char *data_dir, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    dir_path(dir, sizeof(dir), data_dir);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(e));
        return -e;
    }
    return 0;
}

int snapshot_write(const char *data_dir, const struct engine *e, const struct snapshot_meta *meta,
                   char *name, uint64_t *bytes)
{
    char dir[PATH_MAX], tmp[PATH_MAX + SNAPSHOT_NAME_MAX], fin[PATH_MAX + SNAPSHOT_NAME_MAX];
    char base[SNAPSHOT_NAME_MAX];
    dir_path(dir, sizeof(dir), data_dir);
    file_name(base, meta->pos, TMP);
    snprintf(tmp, sizeof(tmp), "%s/%s", dir, base);
    file_name(name, meta->pos, SUFFIX);
    snprintf(fin, sizeof(fin), "%s/%s", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = engine_save(e, fd, meta, sizeof(*meta), bytes);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, fin) < 0)
        rc = -errno;
    if (rc == 0)
        rc = fsync_dir(dir);
    if (rc < 0)
        unlink(tmp);
    return rc;
}

static int cmp_found_desc(const void *a, const void *b)
{
    return -wal_pos_cmp(((const struct found *)a)->pos, ((const struct found *)b)->pos);
}

/* The snapshots in the directory, newest first (*n of them; *out malloc'd). */
static int list(const char *dir, struct found **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    size_t cap = 0;
    struct dirent *de;
    struct wal_pos pos;
    int rc = 0;
    while ((de = readdir(d))) {
        if (parse_name(de->d_name, SUFFIX, &pos) < 0)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            struct found *f = realloc(*out, cap * sizeof(*f));
            if (!f) {
                rc = -ENOMEM;
                break;
            }
            *out = f;
        }
        (*out)[*n].pos = pos;
        memcpy((*out)[*n].name, de->d_name, strlen(de->d_name) + 1); /* parse_name: it fits */
        ++*n;
    }
    closedir(d);
    if (rc == 0 && *n > 1)
        qsort(*out, *n, sizeof(**out), cmp_found_desc);
    return rc;
}

/* Loads one file: 0 with *out set, or a negative errno with the reason in err. */
static int load_one(const char *path, struct wal_pos named, struct engine **out,
                    struct snapshot_meta *meta, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return -errno;
    }
    uint8_t user[ENGINE_PERSIST_USER_MAX];
    uint32_t ulen = 0;
    int rc = engine_load(fd, out, user, &ulen, err, errlen);
    close(fd);
    if (rc)
        return rc;
    if (ulen != sizeof(*meta)) {
        rc = -EINVAL;
        snprintf(err, errlen, "its record holds %u bytes, not %zu", ulen, sizeof(*meta));
    } else {
        memcpy(meta, user, sizeof(*meta));
        if (wal_pos_cmp(meta->pos, named) != 0) {
            rc = -EINVAL;
            snprintf(err, errlen, "it covers WAL position %" PRIu64 ":%" PRIu64 ", not its name's",
                     meta->pos.seq, meta->pos.off);
        }
    }
    if (rc) {
        engine_free(*out);
        *out = NULL;
    }
    return rc;
}

int snapshot_load_newest(const char *data_dir, struct engine **out, struct snapshot_meta *meta,
                         char *name, unsigned *refused)
{
    char dir[PATH_MAX], path[PATH_MAX + SNAPSHOT_NAME_MAX], err[256];
    struct found *f;
    size_t n;
    *out = NULL;
    *refused = 0;
    dir_path(dir, sizeof(dir), data_dir);
    int rc = list(dir, &f, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, f[i].name);
        err[0] = 0;
        rc = load_one(path, f[i].pos, out, meta, err, sizeof(err));
        if (rc == 0) {
            snprintf(name, SNAPSHOT_NAME_MAX, "%s", f[i].name);
            break;
        }
        if (rc == -ENOMEM)
            break;
        ++*refused;
        /* set aside, so that retention keeps counting intact snapshots only */
        char aside[sizeof(path) + 16];
        snprintf(aside, sizeof(aside), "%s" BAD, path);
        int moved = rc == -EINVAL && rename(path, aside) == 0;
        log_msg(LOG_WARN, "snapshot_refused",
                "file=%s reason=\"%s\" renamed_to=%s action=\"trying the previous snapshot, else "
                "the whole WAL\"",
                path, err,
                moved                    ? aside
                : rc == -EPROTONOSUPPORT ? "(left in place: another build's, which can read it)"
                                         : "(left in place)");
        rc = 0;
    }
    free(f);
    return rc;
}

int snapshot_prune(const char *data_dir, unsigned keep, struct wal_pos *oldest,
                   struct trash *trash)
{
    char dir[PATH_MAX], path[PATH_MAX + 260];
    struct found *f;
    size_t n;
    *oldest = (struct wal_pos){0, 0};
    dir_path(dir, sizeof(dir), data_dir);
    int rc = list(dir, &f, &n), removed = 0;
    if (rc)
        return rc;
    for (size_t i = keep; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, f[i].name);
        if (trash_remove(trash, AT_FDCWD, path) == 0)
            removed++;
    }
    if (keep && n >= keep) /* with fewer, the fallback for a bad one is the whole WAL */
        *oldest = f[keep - 1].pos;
    free(f);
    /* leftovers of a write that did not finish (a crash, a full disk) */
    DIR *d = opendir(dir);
    struct dirent *de;
    struct wal_pos pos;
    while (d && (de = readdir(d))) {
        if (parse_name(de->d_name, TMP, &pos) < 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (trash_remove(trash, AT_FDCWD, path) == 0)
            removed++;
    }
    if (d)
        closedir(d);
    if (removed)
        fsync_dir(dir);
    return removed;
}
