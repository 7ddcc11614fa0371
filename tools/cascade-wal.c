/* cascade-wal: checks and repairs a stopped cascaded's write-ahead log (like redis-check-aof).
 * The scanning is the server's own (store/wal.c: wal_check, wal_repair), so what this reports
 * is what start-up would refuse, and what it repairs start-up accepts. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cascade/wal.h"

#ifndef CASCADE_VERSION
#define CASCADE_VERSION "dev"
#endif

enum { EXIT_OK = 0, EXIT_DAMAGED = 1, EXIT_USAGE = 2, EXIT_FAILED = 3 };

static const char usage[] =
    "usage: cascade-wal check|repair [--data-dir] DIR\n"
    "\n"
    "Reads the write-ahead log of a stopped cascaded (DIR/wal/*.wal, DIR being its\n"
    "--data-dir) with the server's own reader. Damage is found by reading on past it for\n"
    "the next intact record (length word, event count, CRC32C, clean decode).\n"
    "\n"
    "  check   reports every damaged region (file, byte offset, length, intact records\n"
    "          before and after it) and every segment missing from the numbering (between\n"
    "          two present ones, or from the newest snapshot's in DIR/snapshots on);\n"
    "          changes nothing.\n"
    "  repair  the same, then sets each problem aside so that cascaded starts again:\n"
    "          the damaged bytes are copied to DIR/wal-damaged/SEGMENT.at-OFFSET.damaged\n"
    "          (nothing is deleted), the intact records after them are moved to a new\n"
    "          segment at the end of the log (events are idempotent and order-free, so\n"
    "          they replay the same there), the segment is cut where its damage began, and\n"
    "          a missing segment is replaced by an empty one. Every intact record is kept;\n"
    "          the events of the damaged records and of missing segments are lost. A crash\n"
    "          while repairing leaves at worst records twice (replayed as duplicates): run\n"
    "          it again.\n"
    "\n"
    "The server must be stopped (both take the WAL's lock). A torn tail of the newest\n"
    "segment (a crash mid-write) is reported too, though cascaded cuts that one itself.\n"
    "\n"
    "  --help, --version\n"
    "\n"
    "Exit status: 0 no damage (check) or repaired (repair); 1 damage found (check);\n"
    "2 usage error; 3 the log could not be read or repaired (in use, I/O error).\n";

/* The newest snapshot's WAL segment (0: none): the log must hold every segment from it on. */
static uint64_t newest_snapshot_seq(const char *data_dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/snapshots", data_dir);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    uint64_t seq = 0;
    struct dirent *de;
    struct wal_pos pos;
    while ((de = readdir(d)))
        if (snapshot_parse_name(de->d_name, &pos) == 0 && pos.seq > seq)
            seq = pos.seq;
    closedir(d);
    return seq;
}

struct report {
    const char *wal_dir;
    int repair;
};

static int on_damage(void *ctx, const struct wal_damage *d)
{
    const struct report *r = ctx;
    if (d->missing) {
        printf("%s/%020" PRIu64 ".wal: missing", r->wal_dir, d->seq);
        if (d->missing > 1)
            printf(" with the %" PRIu64 " segments after it", d->missing - 1);
        printf(": their events exist nowhere else%s\n",
               r->repair ? "; replaced by empty segments (those events are lost)" : "");
        return 0;
    }
    printf("%s/%020" PRIu64 ".wal: damaged at byte %" PRIu64 ", %" PRIu64 " bytes%s; %" PRIu64
           " intact records before it, %" PRIu64 " after it\n",
           r->wal_dir, d->seq, d->off, d->len, d->off < 16 ? " (the segment header)" : "",
           d->before, d->after);
    if (r->repair) {
        if (d->saved)
            printf("  damaged bytes copied to %s\n", d->saved);
        if (d->after)
            printf("  the %" PRIu64 " intact records after it moved to a new segment at the end\n",
                   d->after);
    }
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    const char *cmd = NULL, *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return EXIT_OK;
        } else if (!strcmp(argv[i], "--version")) {
            printf("cascade-wal %s\n", CASCADE_VERSION);
            return EXIT_OK;
        } else if (!strcmp(argv[i], "--data-dir") && i + 1 < argc && !dir) {
            dir = argv[++i];
        } else if (!cmd && (!strcmp(argv[i], "check") || !strcmp(argv[i], "repair"))) {
            cmd = argv[i];
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "cascade-wal: unexpected argument '%s'\n%s", argv[i], usage);
            return EXIT_USAGE;
        }
    }
    if (!cmd || !dir) {
        fprintf(stderr, "cascade-wal: %s\n%s", !cmd ? "check or repair?" : "no DIR given", usage);
        return EXIT_USAGE;
    }
    char wal_dir[PATH_MAX];
    struct stat sb;
    snprintf(wal_dir, sizeof(wal_dir), "%s/wal", dir);
    int e = stat(wal_dir, &sb) < 0 ? errno : S_ISDIR(sb.st_mode) ? 0 : ENOTDIR;
    if (e) {
        fprintf(stderr, "cascade-wal: %s is no WAL directory (%s): is %s a cascaded --data-dir?\n",
                wal_dir, strerror(e), dir);
        return EXIT_FAILED;
    }
    struct wal_options o = {.dir = dir, .fsync = WAL_FSYNC_ALWAYS};
    struct wal *w;
    char err[512];
    int rc = wal_open(&o, &w, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "cascade-wal: %s%s\n", err, rc == -EBUSY ? ": stop it first" : "");
        return EXIT_FAILED;
    }
    int repair = !strcmp(cmd, "repair");
    struct report r = {.wal_dir = wal_dir, .repair = repair};
    struct wal_check_stats st;
    uint64_t need = newest_snapshot_seq(dir);
    rc = repair ? wal_repair(w, need, on_damage, &r, &st) : wal_check(w, need, on_damage, &r, &st);
    if (rc < 0) {
        fprintf(stderr, "cascade-wal: %s\n",
                wal_error(w)[0] ? wal_error(w) : strerror(-rc));
        wal_close(w);
        return EXIT_FAILED;
    }
    printf("%s: %" PRIu64 " segments, %" PRIu64 " intact records (%" PRIu64
           " events), %" PRIu64 " damaged regions (%" PRIu64 " bytes), %" PRIu64
           " missing segments%s\n",
           wal_dir, st.segments, st.records, st.events, st.damaged, st.damaged_bytes, st.missing,
           rc == 0 ? ": clean" : repair ? ": repaired, cascaded will start" : "");
    if (!repair && rc > 0)
        printf("run `cascade-wal repair %s` with cascaded stopped to set the damage aside and "
               "keep every intact record\n",
               dir);
    wal_close(w);
    return !repair && rc > 0 ? EXIT_DAMAGED : EXIT_OK;
}
