/* Writes the seed corpus of fuzz_snapshot_load (tests/fuzz/corpus/snapshot/): snapshots of
 * small engines made by the real engine_save (empty; a few posts; late parents, joins,
 * placeholders, labels, contents and old events across growth buckets). Run:
 *     build-fuzz/tests/fuzz/make_snapshot_corpus tests/fuzz/corpus/snapshot */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cascade/engine.h"
#include "engine/persist.h"

static void field(struct event_field *f, const char *s)
{
    f->type = EVF_STR;
    f->str = s;
    f->len = (uint32_t)strlen(s);
}

/* Event i of n: posts in reverse order every third one (late parents, joins). */
static void apply(struct engine *e, int i, int n)
{
    char post[16], parent[16], actor[16], content[16];
    int p = i % 3 == 0 ? n - 1 - i : i;
    struct event_raw raw;
    memset(&raw, 0, sizeof(raw));
    snprintf(post, sizeof(post), "p%d", p);
    snprintf(parent, sizeof(parent), "p%d", p / 2);
    snprintf(actor, sizeof(actor), "a%d", p % 5);
    snprintf(content, sizeof(content), "c%d", p % 3);
    field(&raw.post, post);
    field(&raw.actor, actor);
    if (p)
        field(&raw.parent, parent);
    if (p % 4 == 0)
        field(&raw.content, content);
    if (p % 7 == 0)
        field(&raw.label, p % 2 ? "false" : "true");
    if (p % 6 == 0)
        field(&raw.actor_type, "page");
    raw.ts.type = EVF_UINT;
    raw.ts.u = 1700000000000ull + (uint64_t)p * (i % 2 ? 1500 : 700000);
    engine_apply_raw(e, &raw);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_snapshot_corpus DIR\n");
        return 2;
    }
    /* the last one under a 1 h retention: evicted cascades leave free ids and chunks behind */
    static const int sizes[] = {0, 3, 40, 300};
    static const int64_t retention[] = {0, 0, 0, 3600000};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        struct engine *e;
        if (engine_new(&e) || engine_set_retention(e, retention[k]))
            return 1;
        for (int i = 0; i < sizes[k]; i++)
            apply(e, i, sizes[k]);
        char path[4096];
        snprintf(path, sizeof(path), "%s/engine-%s%d.snap", argv[1], retention[k] ? "ret-" : "",
                 sizes[k]);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        uint64_t bytes;
        if (fd < 0 || engine_save(e, fd, "seed", 4, &bytes) || close(fd)) {
            perror(path);
            return 1;
        }
        printf("%s: %llu bytes\n", path, (unsigned long long)bytes);
        engine_free(e);
    }
    return 0;
}
