/* Writes the seed corpus of fuzz_wal_replay (tests/fuzz/corpus/wal/): segment bodies (what
 * follows the 16-byte header) made by the real WAL writer, clean ones and damaged ones, so that
 * the fuzzer starts from records that pass the CRC and reaches the decoder at once. Run:
 *     build-fuzz/tests/fuzz/make_wal_corpus tests/fuzz/corpus/wal */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/wal.h"

#define SEG_HDR 16

static char tmp[64];
static char big[EVENT_CONTENT_MAX];

/* Event k of a small cascade: every optional field present or absent in turn. */
static struct event event_k(int k, char *post, char *parent)
{
    struct event ev = {.ts = 1700000000000 + k * 1000 - (k == 3 ? 3400000000000 : 0)};
    ev.post.str = post;
    ev.post.len = (uint32_t)sprintf(post, "post-%d", k);
    ev.actor.str = k % 2 ? "acct/1" : "page\x00\xff";
    ev.actor.len = 6; /* both spellings are 6 bytes, NUL and 0xff included */
    ev.actor_type = (uint8_t)(k % 3);
    if (k > 0) {
        ev.parent.str = parent;
        ev.parent.len = (uint32_t)sprintf(parent, "post-%d", k - 1);
        ev.kind = (uint8_t)(1 + k % 3);
    }
    if (k % 3 != 2) {
        ev.content = k == 4 ? big : "https://claim.example/a";
        ev.content_len = k == 4 ? EVENT_CONTENT_MAX : 23;
    }
    if (k % 2 == 0) {
        ev.label = k == 4 ? "unverified" : "false";
        ev.label_len = k == 4 ? 10 : 5;
    }
    return ev;
}

/* Appends `records` records of `per` events each into a fresh WAL; returns its segment body.
 * npos > 0: each record also carries npos stream positions (a cluster node's, DESIGN §9), and
 * per == 0 makes records of positions only. */
static unsigned char *make_log_pos(int records, int per, size_t npos, size_t *len);

static unsigned char *make_log(int records, int per, size_t *len)
{
    return make_log_pos(records, per, 0, len);
}

static unsigned char *make_log_pos(int records, int per, size_t npos, size_t *len)
{
    struct wal_options o = {.dir = tmp, .fsync = WAL_FSYNC_NO};
    struct wal *w;
    char err[256];
    if (wal_open(&o, &w, err, sizeof(err)) != 0 || wal_replay(w, NULL, NULL, NULL) != 0) {
        fprintf(stderr, "make_wal_corpus: %s\n", err);
        exit(1);
    }
    char posts[8][32], parents[8][32];
    struct event evs[8];
    for (int r = 0; r < records; r++) {
        for (int k = 0; k < per; k++)
            evs[k] = event_k((r * per + k) % 6, posts[k], parents[k]);
        struct walrec_pos pos[3];
        for (size_t i = 0; i < npos && i < 3; i++)
            pos[i] = (struct walrec_pos){.partition = (uint32_t)(r + i) % 8,
                                         .seq = (uint64_t)r * 1000 + i + 1};
        if (npos ? wal_append_pos(w, evs, NULL, (size_t)per, pos, npos < 3 ? npos : 3)
                 : wal_append(w, evs, NULL, (size_t)per))
            exit(1);
    }
    wal_close(w);
    char path[128];
    snprintf(path, sizeof(path), "%s/wal/00000000000000000001.wal", tmp);
    FILE *f = fopen(path, "rb");
    static unsigned char buf[1 << 20];
    size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
    if (f)
        fclose(f);
    remove(path);
    *len = n - SEG_HDR;
    return buf + SEG_HDR;
}

static void put(const char *out, const char *name, const unsigned char *b, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", out, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_wal_corpus OUT_DIR\n");
        return 2;
    }
    snprintf(tmp, sizeof(tmp), "/tmp/make_wal_corpus.XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    memset(big, 'x', sizeof(big));
    mkdir(argv[1], 0755);
    size_t len;
    unsigned char *b = make_log(1, 3, &len);
    put(argv[1], "one_record", b, len);
    b = make_log(4, 2, &len);
    put(argv[1], "four_records", b, len);
    b = make_log(1, 6, &len); /* the 2048-byte content, both kinds of id, every kind */
    put(argv[1], "all_fields", b, len);
    b = make_log_pos(3, 2, 2, &len);
    put(argv[1], "stream_positions", b, len);
    b = make_log_pos(2, 0, 1, &len);
    put(argv[1], "stream_positions_only", b, len);
    b = make_log(3, 1, &len);
    put(argv[1], "torn_tail", b, len - 5);
    b[len / 2] ^= 0x20;
    put(argv[1], "bad_crc_middle", b, len);
    nftw(tmp, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
