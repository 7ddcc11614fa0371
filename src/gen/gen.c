/* The workload model's small pieces (include/cascade/gen.h): the Zipf draw, the default knobs,
 * and an event as the engine takes it, with cascade-gen's names. The model itself is model.c. */
#include <math.h>
#include <string.h>

#include "cascade/gen.h"

void gen_zipf_init(struct gen_zipf *z, uint64_t n, double s)
{
    z->n = n;
    if (fabs(1.0 - s) < 1e-9) {
        z->c = log((double)n + 1.0);
        z->inv = 0;
    } else {
        z->c = pow((double)n + 1.0, 1.0 - s) - 1.0;
        z->inv = 1.0 / (1.0 - s);
    }
}

uint64_t gen_zipf_draw(const struct gen_zipf *z, struct gen_rng *r)
{
    double u = gen_rng_u01(r);
    double x = z->inv == 0 ? exp(u * z->c) : pow(1.0 + u * z->c, z->inv);
    uint64_t k = x < 1.0 ? 0 : (uint64_t)x - 1;
    return k >= z->n ? z->n - 1 : k;
}

void gen_params_default(struct gen_params *p, uint64_t events)
{
    *p = (struct gen_params){.events = events,
                             .seed = GEN_DEFAULT_SEED,
                             .actors = GEN_DEFAULT_ACTORS,
                             .urls = GEN_DEFAULT_URLS,
                             .start_ts = GEN_DEFAULT_START_TS,
                             .max_reshares = GEN_DEFAULT_MAX_RESHARES,
                             .groups = GEN_DEFAULT_GROUPS,
                             .group_size = GEN_DEFAULT_GROUP_SIZE,
                             .group_keys = GEN_DEFAULT_GROUP_KEYS,
                             .group_spread_ms = GEN_DEFAULT_GROUP_SPREAD,
                             .rate = GEN_DEFAULT_RATE,
                             .actor_zipf = GEN_DEFAULT_ACTOR_ZIPF,
                             .url_zipf = GEN_DEFAULT_URL_ZIPF,
                             .pages = GEN_DEFAULT_PAGES,
                             .branching = GEN_DEFAULT_BRANCHING,
                             .tail = GEN_DEFAULT_TAIL,
                             .delay_median_ms = GEN_DEFAULT_DELAY_MEDIAN,
                             .delay_sigma = GEN_DEFAULT_DELAY_SIGMA,
                             .label_rate = GEN_DEFAULT_LABEL_RATE,
                             .false_boost = GEN_DEFAULT_FALSE_BOOST};
}

void gen_params_bench(struct gen_params *p, uint64_t events, uint64_t seed)
{
    gen_params_default(p, events);
    p->seed = seed;
    p->rate = 1000.0 / GEN_BENCH_MS_PER_EVENT;
}

const char *gen_label_name(unsigned label)
{
    static const char *const names[] = {NULL, "false", "true", "mixed", "unverified"};
    return label < sizeof names / sizeof names[0] ? names[label] : NULL;
}

uint32_t gen_put_id(char *buf, const char *prefix, uint64_t v)
{
    char digits[20];
    size_t len = strlen(prefix), n = 0;
    memcpy(buf, prefix, len);
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        buf[len++] = digits[--n];
    return (uint32_t)len;
}

/* gen_put_id at p; id (when not NULL) borrows it. Returns the end. */
static char *put_id(char *p, const char *prefix, uint64_t v, struct event_id *id)
{
    uint32_t len = gen_put_id(p, prefix, v);
    if (id) {
        id->str = p;
        id->len = len;
    }
    return p + len;
}

void gen_event_fill(const struct gen_event *ev, struct event *out, char *text)
{
    static const uint8_t kinds[] = {EVENT_KIND_SHARE, EVENT_KIND_QUOTE, EVENT_KIND_REPLY};
    *out = (struct event){.ts = ev->ts};
    char *p = put_id(text, "p", ev->post, &out->post);
    p = put_id(p, ev->flags & GEN_EV_PAGE ? "page" : "u", ev->actor, &out->actor);
    out->actor_type = ev->flags & GEN_EV_PAGE ? EVENT_ACTOR_PAGE : EVENT_ACTOR_UNSPECIFIED;
    out->kind = EVENT_KIND_POST;
    if (ev->parent) {
        p = put_id(p, "p", ev->parent, &out->parent);
        out->kind = kinds[ev->kind < 3 ? ev->kind : 0];
    }
    if (ev->url) {
        char *content = p;
        p = put_id(p, "https://news.example/", ev->url, NULL);
        out->content = content;
        out->content_len = (uint16_t)(p - content);
    }
    out->label = gen_label_name(ev->label);
    out->label_len = out->label ? (uint8_t)strlen(out->label) : 0;
}
