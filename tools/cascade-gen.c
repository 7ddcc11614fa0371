/* cascade-gen: writes a synthetic, realistically shaped stream of share events (DESIGN §2) for
 * tests, demos and benchmarks; same arguments, same bytes. This file is the command line; the
 * stages are the shared model (src/gen/model.c) -> cascade-gen-delivery.c -> cascade-gen-sink.c. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cascade-gen.h"

#ifndef CASCADE_VERSION
#define CASCADE_VERSION "dev"
#endif

#define PROGRESS_EVERY 65536 /* events between looks at the clock */

enum opt_type { OPT_U64, OPT_DBL, OPT_STR, OPT_FORMAT };

/* One table drives parsing, defaults, range checks and --help, so they cannot drift apart. */
struct opt {
    const char *name, *arg;
    enum opt_type type;
    size_t offset;   /* in struct gen_opts */
    const char *def; /* parsed like a command-line value before the command line; NULL: none */
    double min, max;
    const char *help;
};

#define AT(field) offsetof(struct gen_opts, field)
/* The model's defaults are the shared model's (cascade/gen.h), spelled as strings. */
#define DEF(x)  DEF_(x)
#define DEF_(x) #x
static const struct opt opts[] = {
    {"events", "N", OPT_U64, AT(model.events), "100000", 1, 1e9,
     "valid posts to write (duplicates and bad events come on top)"},
    {"seed", "S", OPT_U64, AT(model.seed), DEF(GEN_DEFAULT_SEED), 0, 18446744073709551615.0,
     "random seed: the same arguments give the same bytes"},
    {"format", "F", OPT_FORMAT, AT(format), NULL, 0, 0,
     "ndjson, msgpack or csv (default: from --out's name, *.msgpack or *.csv, else ndjson)"},
    {"out", "FILE", OPT_STR, AT(out), "-", 0, 0,
     "where to write (default -, stdout); a name ending in .gz is gzip-compressed"},
    {"groups-out", "FILE", OPT_STR, AT(groups_out), NULL, 0, 0,
     "write the planted groups as JSON: members and the content keys they co-shared"},
    {"start-ts", "MS", OPT_U64, AT(model.start_ts), DEF(GEN_DEFAULT_START_TS), 0, 4e15,
     "event time of the first post, ms since the Unix epoch"},
    {"rate", "R", OPT_DBL, AT(model.rate), DEF(GEN_DEFAULT_RATE), 0, 1e7,
     "events per second of event time, on average (0: events/86400, so the stream spans about "
     "a day)"},
    {"actors", "N", OPT_U64, AT(model.actors), DEF(GEN_DEFAULT_ACTORS), 0, 1e9,
     "accounts and pages (0: events/5, at least 100)"},
    {"actor-zipf", "S", OPT_DBL, AT(model.actor_zipf), DEF(GEN_DEFAULT_ACTOR_ZIPF), 0, 3,
     "Zipf exponent of activity (higher: the busiest accounts post more)"},
    {"pages", "F", OPT_DBL, AT(model.pages), DEF(GEN_DEFAULT_PAGES), 0, 0.5,
     "fraction of actors that are pages; they post 20% of the originals and 2% of the reshares, "
     "with \"actor_type\": \"page\" on each page's first event"},
    {"urls", "N", OPT_U64, AT(model.urls), DEF(GEN_DEFAULT_URLS), 0, 1e9,
     "distinct content URLs https://news.example/<n> (0: events/10, at least 10)"},
    {"url-zipf", "S", OPT_DBL, AT(model.url_zipf), DEF(GEN_DEFAULT_URL_ZIPF), 0, 3,
     "Zipf exponent of URL popularity: how often independent cascades share a URL"},
    {"branching", "B", OPT_DBL, AT(model.branching), DEF(GEN_DEFAULT_BRANCHING), 0, 0.95,
     "mean reshares per post; below 1, so cascades end (mean size 1/(1-B))"},
    {"tail", "A", OPT_DBL, AT(model.tail), DEF(GEN_DEFAULT_TAIL), 0.5, 5,
     "reshares of a post that has any: P(K >= k) = k^-A (lower: bigger viral cascades)"},
    {"max-reshares", "N", OPT_U64, AT(model.max_reshares), DEF(GEN_DEFAULT_MAX_RESHARES), 1, 1e7,
     "direct reshares of one post at most"},
    {"delay-median", "MS", OPT_DBL, AT(model.delay_median_ms), DEF(GEN_DEFAULT_DELAY_MEDIAN), 1000,
     8.64e7, "median delay from a post to each reshare of it (log-normal, at least 1 s)"},
    {"delay-sigma", "S", OPT_DBL, AT(model.delay_sigma), DEF(GEN_DEFAULT_DELAY_SIGMA), 0, 4,
     "log-normal sigma of that delay (1.8: 92% within an hour, 99.9% within a day)"},
    {"label-rate", "F", OPT_DBL, AT(model.label_rate), DEF(GEN_DEFAULT_LABEL_RATE), 0, 1,
     "fraction of URLs with a verdict, carried by the roots that post them: false 40%, "
     "true 30%, mixed 15%, unverified 15%"},
    {"false-boost", "B", OPT_DBL, AT(model.false_boost), DEF(GEN_DEFAULT_FALSE_BOOST), 0.05, 100,
     "false-labelled cascades are B times as large on average (a higher branching factor)"},
    {"groups", "K", OPT_U64, AT(model.groups), DEF(GEN_DEFAULT_GROUPS), 0, 100000,
     "coordinated groups to plant"},
    {"group-size", "M", OPT_U64, AT(model.group_size), DEF(GEN_DEFAULT_GROUP_SIZE), 2, 64,
     "accounts per group"},
    {"group-keys", "N", OPT_U64, AT(model.group_keys), DEF(GEN_DEFAULT_GROUP_KEYS), 1, 1000000,
     "bursts per group, each a new URL that about 85% of its members post or reshare "
     "within --group-spread; members also post normally, about N/3 times each"},
    {"group-spread", "MS", OPT_U64, AT(model.group_spread_ms), DEF(GEN_DEFAULT_GROUP_SPREAD), 1,
     86400000, "a burst's posts fall within this many ms"},
    {"late-parents", "P", OPT_DBL, AT(late_parents), "0", 0, 0.5,
     "fraction of posts sent before their parent (at most the share of posts that get "
     "reshares, about 15% by default)"},
    {"duplicates", "P", OPT_DBL, AT(duplicates), "0", 0, 1,
     "fraction of posts sent again, up to 5000 lines later"},
    {"bad-events", "P", OPT_DBL, AT(bad_events), "0", 0, 1,
     "invalid events per post, each one of: no actor, ts as a string, its own parent, no post id"},
};
#define NOPTS (sizeof opts / sizeof opts[0])

#define HELP_INDENT 25  /* where the descriptions start */
#define HELP_WIDTH  100 /* and where they wrap */

/* Prints text from column col, wrapping at spaces so that no line passes HELP_WIDTH. */
static void print_wrapped(FILE *f, const char *text, int col)
{
    while (*text) {
        int room = HELP_WIDTH - col, len = (int)strlen(text);
        if (len > room) {
            int cut = room;
            while (cut > 0 && text[cut] != ' ')
                cut--;
            len = cut > 0 ? cut : room;
        }
        fprintf(f, "%.*s\n", len, text);
        text += len;
        while (*text == ' ')
            text++;
        if (*text)
            fprintf(f, "%*s", HELP_INDENT, "");
        col = HELP_INDENT;
    }
}

static void usage(FILE *f)
{
    fputs("usage: cascade-gen [options]\n\n"
          "Writes a synthetic stream of share events (DESIGN §2) in event-time order,\n"
          "parents before their reshares except where --late-parents reorders them:\n"
          "posts p1..pN, accounts u<n>, pages page<n>. Cascades grow by a branching\n"
          "process with heavy-tailed reshare counts and log-normal delays; content URLs\n"
          "recur across cascades; planted groups post the same URLs within seconds of\n"
          "each other. The same arguments give the same bytes.\n\n",
          f);
    for (size_t i = 0; i < NOPTS; i++) {
        char left[40], text[512];
        snprintf(left, sizeof left, "--%s %s", opts[i].name, opts[i].arg);
        int shown = opts[i].def && strcmp(opts[i].def, "-");
        snprintf(text, sizeof text, "%s%s%s%s", opts[i].help, shown ? " [" : "",
                 shown ? opts[i].def : "", shown ? "]" : "");
        fprintf(f, "  %-*s", HELP_INDENT - 2, left);
        print_wrapped(f, text, HELP_INDENT);
    }
    fputs("  --help                 this text\n"
          "  --version              the version\n\n"
          "[x] is the default. Progress goes to stderr when it is a terminal.\n"
          "Exit status: 0 done, 1 failed (no partial output file is left), 2 bad arguments.\n",
          f);
}

/* ---- parsing ---- */

static int bad_value(const struct opt *o, const char *val)
{
    fprintf(stderr, "cascade-gen: bad value for --%s: '%s' (see cascade-gen --help)\n", o->name,
            val);
    return -EINVAL;
}

static int parse_format(const char *val)
{
    static const char *const names[] = {"ndjson", "msgpack", "csv"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(val, names[i]))
            return i;
    return -1;
}

static int set_value(const struct opt *o, const char *val, struct gen_opts *g)
{
    char *end, *at = (char *)g + o->offset;
    errno = 0;
    if (o->type == OPT_STR) {
        *(const char **)at = val;
    } else if (o->type == OPT_FORMAT) {
        if ((*(int *)at = parse_format(val)) < 0)
            return bad_value(o, val);
    } else if (o->type == OPT_U64) {
        uint64_t v = strtoull(val, &end, 10);
        if (errno || end == val || *end || *val == '-' || v < o->min || (double)v > o->max)
            return bad_value(o, val);
        *(uint64_t *)at = v;
    } else {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v) || v < o->min || v > o->max)
            return bad_value(o, val);
        *(double *)at = v;
    }
    return 0;
}

static void set_defaults(struct gen_opts *g)
{
    memset(g, 0, sizeof *g);
    g->format = -1;
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].def)
            set_value(&opts[i], opts[i].def, g);
}

static const struct opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(opts[i].name) == len && !strncmp(opts[i].name, name, len))
            return &opts[i];
    return NULL;
}

/* Returns 0 to run, 1 when --help or --version answered, -EINVAL on a bad command line. */
static int parse_args(int argc, char **argv, struct gen_opts *g)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--version")) {
            printf("cascade-gen %s\n", CASCADE_VERSION);
            return 1;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a) - 2;
        const struct opt *o = strncmp(a, "--", 2) ? NULL : find_opt(a + 2, len);
        if (!o) {
            fprintf(stderr, "cascade-gen: unknown argument %s (see cascade-gen --help)\n", a);
            return -EINVAL;
        }
        if (!eq && i + 1 >= argc) {
            fprintf(stderr, "cascade-gen: --%s needs a value (see cascade-gen --help)\n", o->name);
            return -EINVAL;
        }
        if (set_value(o, eq ? eq + 1 : argv[++i], g))
            return -EINVAL;
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* Without --format, the output's name says it (a .gz suffix aside), as for cascade-replay. */
static enum gen_format format_from_name(const char *path)
{
    char name[4096];
    snprintf(name, sizeof name, "%s", path ? path : "");
    if (ends_with(name, ".gz"))
        name[strlen(name) - 3] = 0;
    if (ends_with(name, ".msgpack") || ends_with(name, ".mpk"))
        return GEN_MSGPACK;
    return ends_with(name, ".csv") ? GEN_CSV : GEN_NDJSON;
}

/* ---- running ---- */

struct progress {
    int on;
    double start, last;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void progress_tick(struct progress *p, uint64_t done, uint64_t total)
{
    double t = now_s();
    if (!p->on || t - p->last < 0.5)
        return;
    p->last = t;
    fprintf(stderr, "\rcascade-gen: %" PRIu64 " of %" PRIu64 " events (%d%%)", done, total,
            (int)(100.0 * (double)done / (double)total));
}

static void progress_end(const struct progress *p, const struct delivery *d, uint64_t events)
{
    if (!p->on)
        return;
    struct delivery_counts c = delivery_counts(d);
    fprintf(stderr,
            "\r\033[Kcascade-gen: %" PRIu64 " events, %" PRIu64 " lines (%" PRIu64 " late, %" PRIu64
            " duplicates, %" PRIu64 " bad) in %.1f s\n",
            events, c.lines, c.late, c.duplicates, c.bad, now_s() - p->start);
}

static int write_groups(const struct gen_model *m, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cascade-gen: cannot create %s: %s\n", path, strerror(errno));
        return -EIO;
    }
    int rc = gen_model_write_groups(m, f);
    if (fclose(f) || rc) {
        fprintf(stderr, "cascade-gen: writing %s failed\n", path);
        return -EIO;
    }
    return 0;
}

/* The three stages, events flowing model -> delivery -> sink. */
static int generate(const struct gen_opts *o, struct gen_model *m, struct progress *p)
{
    struct sink *s = NULL;
    struct delivery *d = NULL;
    enum gen_format fmt = o->format >= 0 ? (enum gen_format)o->format : format_from_name(o->out);
    int rc = sink_open(&s, o->out, fmt);
    if (!rc)
        rc = delivery_new(&d, o, gen_model_spaces(m).pages, s);
    struct gen_event ev;
    uint64_t n = 0;
    while (!rc && (rc = gen_model_next(m, &ev)) > 0) {
        rc = delivery_push(d, &ev);
        if (++n % PROGRESS_EVERY == 0)
            progress_tick(p, n, o->model.events);
    }
    if (!rc)
        rc = delivery_finish(d);
    int close_rc = sink_close(s, rc != 0);
    rc = rc ? rc : close_rc;
    if (!rc)
        progress_end(p, d, n);
    delivery_free(d);
    return rc;
}

int main(int argc, char **argv)
{
    struct gen_opts o;
    set_defaults(&o);
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    struct gen_model *m;
    char err[160];
    if ((rc = gen_model_new(&m, &o.model, err, sizeof err))) {
        if (rc == -EINVAL)
            fprintf(stderr, "cascade-gen: %s (see cascade-gen --help)\n", err);
        else
            fputs("cascade-gen: out of memory\n", stderr);
        return rc == -EINVAL ? 2 : 1;
    }
    const char *warning = gen_params_warning(&o.model);
    if (warning)
        fprintf(stderr, "cascade-gen: warning: %s\n", warning);
    struct progress p = {.on = isatty(STDERR_FILENO), .start = now_s()};
    rc = generate(&o, m, &p);
    if (!rc && o.groups_out)
        rc = write_groups(m, o.groups_out);
    if (rc == -ENOMEM)
        fputs("cascade-gen: out of memory\n", stderr);
    gen_model_free(m);
    return rc ? 1 : 0;
}
