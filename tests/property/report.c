/* What both property programs (test_property.c, test_retention.c) share around their checks:
 * the context a failure reports, the message that says how to replay it, and the loop over
 * random forests with its environment knobs (<PREFIX>_SEED, <PREFIX>_ITER, <PREFIX>_ONLY and
 * PROPERTY_TRACE). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "prop.h"

struct ctx g_ctx;
struct replay g_replay = {"PROPERTY", "property_engine"};

void prop_fail(const char *fmt, ...)
{
    char msg[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fail_msg("%s\n  [seed %llu, iteration %u, order %s, %s, after %u events]\n"
             "  replay: %s_SEED=%llu %s_ONLY=%u PROPERTY_TRACE=1 ./%s",
             msg, (unsigned long long)g_ctx.seed, g_ctx.iter, g_ctx.order ? g_ctx.order : "-",
             g_ctx.phase ? g_ctx.phase : "-", g_ctx.step, g_replay.env,
             (unsigned long long)g_ctx.seed, g_replay.env, g_ctx.iter, g_replay.prog);
    abort(); /* not reached: fail_msg long-jumps back into cmocka */
}

uint64_t env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : def;
}

/* <g_replay.env>_<what> */
static uint64_t knob(const char *what, uint64_t def)
{
    char name[64];
    snprintf(name, sizeof(name), "%s_%s", g_replay.env, what);
    return env_u64(name, def);
}

uint64_t run_forests(uint64_t def_seed, uint64_t def_iter, iteration_fn iteration)
{
    uint64_t seed = knob("SEED", def_seed), iters = knob("ITER", def_iter);
    int trace = getenv("PROPERTY_TRACE") != NULL;
    char only[64];

    printf("%s: seed %llu, %llu forests\n", g_replay.prog, (unsigned long long)seed,
           (unsigned long long)iters);
    snprintf(only, sizeof(only), "%s_ONLY", g_replay.env);
    if (getenv(only)) {
        iteration(seed, (uint32_t)env_u64(only, 0), trace);
        return 1;
    }
    for (uint64_t i = 0; i < iters; i++)
        iteration(seed, (uint32_t)i, trace);
    return iters;
}
