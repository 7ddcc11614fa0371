/* The workload model (include/cascade/gen.h): a synthetic social network simulated in event
 * time, one post at a time. Cascades are branching processes with heavy-tailed reshare counts and
 * log-normal delays; one heap of scheduled reshares interleaves them, so memory follows
 * rate x delay, not the event count. cascade-gen writes its events; the benches use them. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/gen.h"

#define MIN_DELAY_MS    1000                  /* nobody reshares within a second of the original */
#define MAX_DELAY_MS    (30LL * 86400 * 1000) /* the log-normal's far tail, cut at 30 days */
#define PAGE_ROOT_P     0.2                   /* news outlets' pages post many of the originals */
#define PAGE_SHARE_P    0.02                  /* ... and few of the reshares */
#define QUOTE_P         0.09 /* reshares that quote; then replies; the rest share */
#define REPLY_P         0.06
#define GROUP_JOIN_P    0.85 /* a member takes part in a given burst of its group */
#define GROUP_SHARE_P   0.5  /* a member reshares the burst's first post, or posts the link */
#define GROUP_NORMAL    3    /* ordinary posts per member: one for every 3 of its group's keys */
#define BURST_SPAN      0.9 /* bursts happen in the first 90% of the events, so every one finishes */
#define MAX_GROUP_SIZE  64  /* a burst's participants are a 64-bit mask */
#define SECONDS_PER_DAY 86400.0 /* the default stream spans a day of event time */
#define EXACT_TERMS     100000  /* terms of the reshare-count mean summed one by one */

/* The share of each verdict among labelled content (false, true, mixed, unverified). */
static const double label_share[] = {0.40, 0.30, 0.15, 0.15};

enum pend_type { PEND_ROOT, PEND_SHARE, PEND_GROUP, PEND_BURST };

/* A post the simulation has scheduled: a reshare, a group member's post, or a group's burst. */
struct pending {
    int64_t ts;
    uint64_t parent; /* post number; 0 for a root */
    uint32_t member; /* PEND_GROUP: which member posts */
    uint32_t burst;  /* PEND_GROUP, PEND_BURST: which burst */
    uint16_t depth;
    uint8_t boosted; /* in a false-labelled cascade: spreads by the false boost */
    uint8_t type;    /* enum pend_type */
};

struct gen_model {
    struct gen_params o;
    struct gen_rng rng;
    struct pending *heap; /* min-heap on ts */
    size_t heap_len, heap_cap;
    uint64_t posts, accounts, members, pages, urls, bursts, next_burst;
    uint64_t *burst_mask; /* per burst: members whose post went out */
    int64_t next_root;
    double root_gap_ms, q[2], neg_inv_tail, p_substitute, spare;
    int has_spare;
    uint64_t perm_account, perm_page, perm_url, label_salt;
    struct gen_zipf account_z, page_z, url_z;
};

/* ---- distributions ---- */

/* Standard normal, Marsaglia's polar method; the second value of each pair is kept. */
static double normal(struct gen_model *m)
{
    if (m->has_spare) {
        m->has_spare = 0;
        return m->spare;
    }
    double x, y, s;
    do {
        x = 2.0 * gen_rng_u01(&m->rng) - 1.0;
        y = 2.0 * gen_rng_u01(&m->rng) - 1.0;
        s = x * x + y * y;
    } while (s >= 1.0 || s == 0.0);
    double f = sqrt(-2.0 * log(s) / s);
    m->spare = y * f;
    m->has_spare = 1;
    return x * f;
}

/* Most reshares come within minutes of their parent, a few only days later: log-normal. */
static int64_t draw_delay(struct gen_model *m)
{
    double d = m->o.delay_median_ms * exp(m->o.delay_sigma * normal(m));
    if (d < MIN_DELAY_MS)
        return MIN_DELAY_MS;
    return d > (double)MAX_DELAY_MS ? MAX_DELAY_MS : (int64_t)d;
}

/* Reshares of one post: none with probability 1-q, else a discrete Pareto count (P(K >= k) =
 * k^-tail), capped. One heavy draw makes a huge cascade, so cascade sizes inherit the tail. */
static uint32_t draw_reshares(struct gen_model *m, int boosted, unsigned depth)
{
    if (depth >= GEN_MAX_DEPTH || gen_rng_u01(&m->rng) >= m->q[boosted])
        return 0;
    double k = floor(pow(1.0 - gen_rng_u01(&m->rng), m->neg_inv_tail));
    return k >= (double)m->o.max_reshares ? (uint32_t)m->o.max_reshares : (uint32_t)k;
}

/* E[K] of the capped Pareto count: sum over k of P(K >= k), the far terms by the midpoint rule. */
static double mean_reshare_count(double tail, uint64_t cap)
{
    uint64_t exact = cap < EXACT_TERMS ? cap : EXACT_TERMS;
    double sum = 0;
    for (uint64_t k = exact; k >= 1; k--) /* smallest terms first, for accuracy */
        sum += pow((double)k, -tail);
    if (cap > exact) {
        double a = (double)exact + 0.5, b = (double)cap + 0.5;
        sum += fabs(tail - 1.0) < 1e-9 ? log(b / a)
                                       : (pow(a, 1.0 - tail) - pow(b, 1.0 - tail)) / (tail - 1.0);
    }
    return sum;
}

/* Verdicts belong to content, as fact-checks do: every cascade of a URL carries its label. */
static uint8_t url_label(const struct gen_model *m, uint64_t url)
{
    uint64_t h = gen_mix64(url ^ m->label_salt);
    if ((double)(h >> 11) * 0x1.0p-53 >= m->o.label_rate)
        return GEN_LABEL_NONE;
    double u = (double)(gen_mix64(h) >> 11) * 0x1.0p-53;
    for (int i = 0; i < 3; i++) {
        if (u < label_share[i])
            return (uint8_t)(GEN_LABEL_FALSE + i);
        u -= label_share[i];
    }
    return GEN_LABEL_UNVERIFIED;
}

/* A bijection of k-bit numbers: xor with the key, then multiply by odd constants and xorshift,
 * each invertible modulo 2^k. */
static uint64_t mix_bits(uint64_t x, unsigned k, uint64_t key)
{
    uint64_t mask = k >= 64 ? ~0ULL : (1ULL << k) - 1;
    unsigned shift = k / 2 + 1;
    x = ((x ^ key) * 0x9e3779b97f4a7c15ULL) & mask;
    x ^= x >> shift;
    x = (x * 0xbf58476d1ce4e5b9ULL) & mask;
    return x ^ (x >> shift);
}

/* Ranks scrambled into ids 1..n, so that u1 is not the busiest account nor u2 the next: the
 * k-bit bijection, repeated until it lands below n (cycle walking; twice on average). */
static uint64_t perm(uint64_t rank, uint64_t n, uint64_t key)
{
    unsigned k = 1;
    while (k < 64 && (1ULL << k) < n)
        k++;
    uint64_t x = rank;
    do
        x = mix_bits(x, k, key);
    while (x >= n);
    return x + 1;
}

/* ---- the heap of scheduled posts ---- */

static int heap_reserve(struct gen_model *m, size_t more)
{
    if (m->heap_len + more <= m->heap_cap)
        return 0;
    size_t cap = m->heap_cap ? m->heap_cap : 4096;
    while (cap < m->heap_len + more)
        cap *= 2;
    struct pending *h = realloc(m->heap, cap * sizeof *h);
    if (!h)
        return -ENOMEM;
    m->heap = h;
    m->heap_cap = cap;
    return 0;
}

/* Room must have been reserved. */
static void heap_push(struct gen_model *m, struct pending p)
{
    size_t i = m->heap_len++;
    while (i && m->heap[(i - 1) / 2].ts > p.ts) {
        m->heap[i] = m->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    m->heap[i] = p;
}

static struct pending heap_pop(struct gen_model *m)
{
    struct pending top = m->heap[0], last = m->heap[--m->heap_len];
    size_t i = 0, n = m->heap_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && m->heap[c + 1].ts < m->heap[c].ts)
            c++;
        if (m->heap[c].ts >= last.ts)
            break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (n)
        m->heap[i] = last;
    return top;
}

/* ---- set-up ---- */

/* The knobs that only make sense together (each one alone is range-checked by its caller's
 * parser): the first problem, named by cascade-gen's options, or NULL. */
static const char *params_problem(const struct gen_params *o)
{
    if (o->groups && o->group_size < 2)
        return "--group-size must be at least 2";
    if (o->group_size > MAX_GROUP_SIZE)
        return "--group-size is at most 64";
    if (o->groups * o->group_size > 1000000)
        return "--groups x --group-size is at most 1000000";
    if (o->groups && o->group_keys < 1)
        return "--group-keys must be at least 1 with --groups";
    if (1.0 - (1.0 - o->branching) / o->false_boost < 0)
        return "--false-boost must be at least 1 - --branching";
    return NULL;
}

const char *gen_params_warning(const struct gen_params *o)
{
    if ((double)o->groups * (double)o->group_keys * (double)o->group_size > (double)o->events / 2)
        return "the groups' bursts take more than half of the events; expect groups with few or "
               "no co-shared keys";
    return NULL;
}

/* The id spaces: accounts (the Zipf pool, then the group members), pages, URLs. */
static void size_spaces(struct gen_model *m)
{
    const struct gen_params *o = &m->o;
    uint64_t actors = o->actors ? o->actors : (o->events / 5 > 100 ? o->events / 5 : 100);
    m->pages = o->pages > 0 ? (uint64_t)llround((double)actors * o->pages) : 0;
    m->pages = o->pages > 0 && m->pages == 0 ? 1 : m->pages;
    m->pages = m->pages >= actors ? actors - 1 : m->pages;
    m->accounts = actors - m->pages;
    m->members = o->groups * o->group_size;
    m->urls = o->urls ? o->urls : (o->events / 10 > 10 ? o->events / 10 : 10);
    m->bursts = o->groups * o->group_keys;
    gen_zipf_init(&m->account_z, m->accounts, o->actor_zipf);
    gen_zipf_init(&m->page_z, m->pages ? m->pages : 1, o->actor_zipf);
    gen_zipf_init(&m->url_z, m->urls, o->url_zipf);
    m->perm_account = gen_rng_next(&m->rng);
    m->perm_page = gen_rng_next(&m->rng);
    m->perm_url = gen_rng_next(&m->rng);
    m->label_salt = gen_rng_next(&m->rng);
}

/* Branching factors, and the root rate that makes the stream run at --rate events/s. False
 * cascades get the branching factor b' with 1/(1-b') = boost/(1-b): --false-boost multiplies
 * their expected size, which is what "spreads B times further" means to an analyst. */
static void size_spread(struct gen_model *m)
{
    const struct gen_params *o = &m->o;
    double mean_k = mean_reshare_count(o->tail, o->max_reshares);
    double b_false = 1.0 - (1.0 - o->branching) / o->false_boost;
    m->q[0] = o->branching / mean_k;
    m->q[1] = b_false / mean_k;
    m->neg_inv_tail = -1.0 / o->tail;
    double f_false = o->label_rate * label_share[0];
    double mean_size = (1.0 - f_false + f_false * o->false_boost) / (1.0 - o->branching);
    double rate = o->rate > 0 ? o->rate : (double)o->events / SECONDS_PER_DAY;
    m->root_gap_ms = 1000.0 * mean_size / rate;
    m->next_root = (int64_t)o->start_ts;
    double normal_posts = (double)m->members * (double)o->group_keys / GROUP_NORMAL;
    m->p_substitute = fmin(0.5, normal_posts / (double)o->events);
}

int gen_model_new(struct gen_model **out, const struct gen_params *o, char *err, size_t errlen)
{
    *out = NULL;
    const char *problem = params_problem(o);
    if (problem) {
        snprintf(err, errlen, "%s", problem);
        return -EINVAL;
    }
    struct gen_model *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->o = *o;
    gen_rng_seed(&m->rng, o->seed, 1);
    size_spaces(m);
    size_spread(m);
    m->burst_mask = calloc(m->bursts ? m->bursts : 1, sizeof *m->burst_mask);
    if (!m->burst_mask || heap_reserve(m, 4096)) {
        gen_model_free(m);
        return -ENOMEM;
    }
    *out = m;
    return 0;
}

void gen_model_free(struct gen_model *m)
{
    if (!m)
        return;
    free(m->heap);
    free(m->burst_mask);
    free(m);
}

struct gen_spaces gen_model_spaces(const struct gen_model *m)
{
    return (struct gen_spaces){m->accounts + m->members, m->pages, m->urls + m->bursts};
}

/* ---- actors ---- */

static void set_account(struct gen_model *m, struct gen_event *ev, uint64_t rank)
{
    ev->actor = perm(rank, m->accounts + m->members, m->perm_account);
    ev->flags &= (uint8_t)~GEN_EV_PAGE;
}

/* Anyone: a page with probability page_p, else an account, each by Zipf activity. Now and then
 * a group member stands in, which is the members' ordinary activity between bursts. */
static void pick_actor(struct gen_model *m, struct gen_event *ev, double page_p)
{
    if (m->members && gen_rng_u01(&m->rng) < m->p_substitute) {
        set_account(m, ev, m->accounts + gen_rng_below(&m->rng, m->members));
    } else if (m->pages && gen_rng_u01(&m->rng) < page_p) {
        ev->actor = perm(gen_zipf_draw(&m->page_z, &m->rng), m->pages, m->perm_page);
        ev->flags |= GEN_EV_PAGE;
    } else {
        set_account(m, ev, gen_zipf_draw(&m->account_z, &m->rng));
    }
}

/* ---- posts ---- */

static void set_content(struct gen_model *m, struct gen_event *ev, uint64_t url, struct pending *p)
{
    ev->url = perm(url, m->urls + m->bursts, m->perm_url);
    ev->label = url_label(m, url);
    p->boosted = ev->label == GEN_LABEL_FALSE;
}

static void make_root(struct gen_model *m, struct pending *p, struct gen_event *ev)
{
    pick_actor(m, ev, PAGE_ROOT_P);
    set_content(m, ev, gen_zipf_draw(&m->url_z, &m->rng), p);
}

static void make_share(struct gen_model *m, const struct pending *p, struct gen_event *ev)
{
    double u = gen_rng_u01(&m->rng);
    ev->parent = p->parent;
    ev->kind = u < QUOTE_P             ? GEN_KIND_QUOTE
               : u < QUOTE_P + REPLY_P ? GEN_KIND_REPLY
                                       : GEN_KIND_DEFAULT;
    pick_actor(m, ev, PAGE_SHARE_P);
}

/* A member's post in a burst: the link itself, or a reshare of the burst's first post. */
static void make_group_post(struct gen_model *m, struct pending *p, struct gen_event *ev)
{
    set_account(m, ev, m->accounts + p->member);
    m->burst_mask[p->burst] |= 1ULL << (p->member % m->o.group_size);
    if (p->parent)
        ev->parent = p->parent;
    else
        set_content(m, ev, m->urls + p->burst, p);
}

/* Who takes part in a burst, in posting order: each member with GROUP_JOIN_P, at least two. */
static unsigned burst_members(struct gen_model *m, uint32_t *who)
{
    unsigned n = 0, size = (unsigned)m->o.group_size;
    for (unsigned j = 0; j < size; j++)
        if (gen_rng_u01(&m->rng) < GROUP_JOIN_P)
            who[n++] = j;
    for (unsigned j = 0; n < 2 && j < size; j++)
        if (n == 0 || who[0] != j)
            who[n++] = j;
    for (unsigned i = n - 1; i > 0; i--) { /* Fisher-Yates */
        unsigned k = (unsigned)gen_rng_below(&m->rng, i + 1);
        uint32_t t = who[i];
        who[i] = who[k];
        who[k] = t;
    }
    return n;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* A group's burst: the first member posts the link now; the others follow within
 * --group-spread ms, each posting the link too or resharing the first post. */
static int make_burst(struct gen_model *m, struct pending *p, struct gen_event *ev)
{
    uint32_t who[MAX_GROUP_SIZE];
    int64_t at[MAX_GROUP_SIZE];
    unsigned n = burst_members(m, who);
    uint32_t base = (uint32_t)(p->burst % m->o.groups * m->o.group_size);
    p->member = base + who[0];
    p->parent = 0;
    make_group_post(m, p, ev);
    if (heap_reserve(m, n))
        return -ENOMEM;
    for (unsigned i = 1; i < n; i++)
        at[i] = ev->ts + 1 + (int64_t)gen_rng_below(&m->rng, m->o.group_spread_ms);
    qsort(at + 1, n - 1, sizeof at[0], cmp_i64);
    for (unsigned i = 1; i < n; i++) {
        int share = gen_rng_u01(&m->rng) < GROUP_SHARE_P;
        heap_push(m, (struct pending){.ts = at[i],
                                      .parent = share ? ev->post : 0,
                                      .member = base + who[i],
                                      .burst = p->burst,
                                      .depth = share,
                                      .boosted = p->boosted,
                                      .type = PEND_GROUP});
        ev->children += (uint32_t)share;
    }
    return 0;
}

/* Bursts are spread evenly over the stream by event count, round-robin over the groups. */
static int fire_bursts(struct gen_model *m)
{
    while (m->next_burst < m->bursts) {
        double due =
            BURST_SPAN * (double)m->o.events * ((double)m->next_burst + 0.5) / (double)m->bursts;
        if ((double)m->posts < floor(due))
            return 0;
        if (heap_reserve(m, 1))
            return -ENOMEM;
        int64_t now = m->heap_len && m->heap[0].ts < m->next_root ? m->heap[0].ts : m->next_root;
        heap_push(m, (struct pending){.ts = now + (int64_t)gen_rng_below(&m->rng, 1000),
                                      .burst = (uint32_t)m->next_burst++,
                                      .type = PEND_BURST});
    }
    return 0;
}

/* The post's own reshares, each at its parent's time plus a fresh delay. */
static int schedule_reshares(struct gen_model *m, const struct pending *p, struct gen_event *ev)
{
    uint32_t n = draw_reshares(m, p->boosted, p->depth);
    if (heap_reserve(m, n))
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        heap_push(m, (struct pending){.ts = ev->ts + draw_delay(m),
                                      .parent = ev->post,
                                      .depth = (uint16_t)(p->depth + 1),
                                      .boosted = p->boosted,
                                      .type = PEND_SHARE});
    ev->children += n;
    return 0;
}

/* Whichever comes first in event time: a scheduled post, or the next original post (roots
 * arrive as a Poisson process). */
static struct pending next_pending(struct gen_model *m)
{
    if (m->heap_len && m->heap[0].ts <= m->next_root)
        return heap_pop(m);
    struct pending p = {.ts = m->next_root, .type = PEND_ROOT};
    double gap = -log(1.0 - gen_rng_u01(&m->rng)) * m->root_gap_ms;
    m->next_root += (int64_t)llround(gap);
    return p;
}

int gen_model_next(struct gen_model *m, struct gen_event *ev)
{
    if (m->posts >= m->o.events)
        return 0;
    int rc = fire_bursts(m);
    if (rc)
        return rc;
    struct pending p = next_pending(m);
    memset(ev, 0, sizeof *ev);
    ev->post = ++m->posts;
    ev->ts = p.ts;
    switch (p.type) {
    case PEND_ROOT:
        make_root(m, &p, ev);
        break;
    case PEND_SHARE:
        make_share(m, &p, ev);
        break;
    case PEND_GROUP:
        make_group_post(m, &p, ev);
        break;
    default:
        if ((rc = make_burst(m, &p, ev)))
            return rc;
    }
    rc = schedule_reshares(m, &p, ev);
    return rc ? rc : 1;
}

/* ---- ground truth ---- */

static void write_group(const struct gen_model *m, FILE *f, uint64_t g)
{
    uint64_t size = m->o.group_size, first = m->accounts + g * size;
    fprintf(f, "  {\"group\": %" PRIu64 ", \"members\": [", g + 1);
    for (uint64_t j = 0; j < size; j++)
        fprintf(f, "%s\"u%" PRIu64 "\"", j ? ", " : "",
                perm(first + j, m->accounts + m->members, m->perm_account));
    fputs("],\n   \"content\": [", f);
    const char *sep = "";
    for (uint64_t b = g; b < m->bursts; b += m->o.groups) {
        if (__builtin_popcountll(m->burst_mask[b]) < 2)
            continue; /* the stream ended before a second member posted it */
        fprintf(f, "%s\"https://news.example/%" PRIu64 "\"", sep,
                perm(m->urls + b, m->urls + m->bursts, m->perm_url));
        sep = ", ";
    }
    fprintf(f, "]}%s\n", g + 1 < m->o.groups ? "," : "");
}

int gen_model_write_groups(const struct gen_model *m, FILE *f)
{
    fprintf(f,
            "{\"seed\": %" PRIu64 ", \"events\": %" PRIu64 ", \"group_spread_ms\": %" PRIu64
            ",\n \"coordination\": {\"window_ms\": 10000, \"min_repeats\": 3, \"min_ratio\": 0.3},"
            "\n \"groups\": [\n",
            m->o.seed, m->o.events, m->o.group_spread_ms);
    for (uint64_t g = 0; g < m->o.groups; g++)
        write_group(m, f, g);
    fputs(" ]}\n", f);
    return ferror(f) ? -EIO : 0;
}
