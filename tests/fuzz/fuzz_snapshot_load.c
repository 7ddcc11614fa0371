/* libFuzzer target: engine snapshot files (src/engine/persist.c). The input is a whole file;
 * persist.c is compiled here with PERSIST_FUZZ_NO_CRC so that a mutated section still reaches
 * the checks of counts, offsets and trees behind its CRC. Whatever loads is queried, changed
 * and saved and loaded again (which must succeed): a file the checks let through must leave an
 * engine that works. Seeds: make_snapshot_corpus (see CMakeLists.txt). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cascade/engine.h"
#include "engine/persist.h"

static void field(struct event_field *f, const char *s)
{
    f->type = EVF_STR;
    f->str = s;
    f->len = (uint32_t)strlen(s);
}

static void exercise(struct engine *e)
{
    static struct engine_cascade cs[32];
    static struct engine_actor as[32];
    struct engine_stats st;
    engine_get_stats(e, &st);
    for (int m = 0; m < ENGINE_CASCADE_METRICS; m++)
        engine_top_cascades(e, m, NULL, cs, 32);
    for (int m = 0; m < ENGINE_ACTOR_METRICS; m++)
        engine_top_actors(e, m, 0, as, 32);
    engine_top_growth(e, 60000, NULL, cs, 32);
    engine_top_growth(e, ENGINE_GROWTH_HORIZON_MS, NULL, cs, 32);
    for (uint32_t i = 0; i < 16 && i < st.actors; i++)
        engine_actor_at(e, i, &as[0]);
    for (uint32_t i = 0; i < 16 && i < st.contents; i++) {
        uint32_t len;
        const char *key = engine_content_key(e, i, &len);
        struct engine_content c;
        if (key)
            engine_content(e, key, len, &c, cs, 8);
    }
    struct engine_label_summary *ls;
    uint32_t nl;
    if (engine_labels(e, &ls, &nl) == 0)
        free(ls);
    struct engine_copy snap;
    if (engine_copy_take(e, &snap) == 0)
        engine_copy_free(&snap);
    /* new events joining whatever is there: posts p0.., parents among them */
    char post[16], parent[16];
    for (int k = 0; k < 8; k++) {
        struct event_raw raw;
        memset(&raw, 0, sizeof(raw));
        snprintf(post, sizeof(post), "p%d", k * 7 % 11);
        snprintf(parent, sizeof(parent), "p%d", k * 5 % 13);
        field(&raw.post, post);
        field(&raw.parent, parent);
        field(&raw.actor, k % 2 ? "a1" : "a2");
        raw.ts.type = EVF_UINT;
        raw.ts.u = 1700000000000ull + (uint64_t)k * 1000;
        engine_apply_raw(e, &raw);
    }
    engine_top_cascades(e, ENGINE_BY_SIZE, NULL, cs, 32);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct engine *e;
    char err[256];
    uint8_t user[ENGINE_PERSIST_USER_MAX];
    uint32_t ulen;
    if (engine_load_mem(data, size, &e, user, &ulen, err, sizeof(err)) != 0)
        return 0;
    exercise(e);
    int fd = memfd_create("snap", 0);
    uint64_t bytes;
    if (fd >= 0 && engine_save(e, fd, user, ulen, &bytes) == 0) {
        void *p = mmap(NULL, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
        struct engine *again;
        if (p != MAP_FAILED) {
            if (engine_load_mem(p, bytes, &again, user, &ulen, err, sizeof(err)) != 0) {
                fprintf(stderr, "a saved engine does not load back: %s\n", err);
                abort();
            }
            engine_free(again);
            munmap(p, bytes);
        }
    }
    if (fd >= 0)
        close(fd);
    engine_free(e);
    return 0;
}
