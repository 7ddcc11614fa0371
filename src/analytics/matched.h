/* The size-matched comparison of two labels (DESIGN §3, after Juul & Ugander, PNAS 2021): per
 * metric, cascades of label A and B put in size strata s = floor(log2(size)), the van Elteren
 * statistic over the strata that hold both labels (a Mann-Whitney rank sum per stratum, weighted
 * by 1/(N+1)), and the same over all cascades as one stratum (the plain Mann-Whitney test, as
 * scipy's mannwhitneyu(method="asymptotic", use_continuity=False) computes it). A pure
 * computation over the values engine_labeled gathers. */
#ifndef ANALYTICS_MATCHED_H
#define ANALYTICS_MATCHED_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/engine.h"

#define MATCHED_METRICS 5 /* depth, max_breadth, structural_virality, unique_actors, duration_ms */

struct matched_stratum {
    int stratum; /* sizes 2^stratum .. 2^(stratum+1) - 1 */
    uint32_t n_a, n_b;
    double median_a, median_b; /* type 7 */
};

struct matched_metric {
    const char *metric; /* the protocol's name */
    uint32_t strata;    /* strata holding both labels */
    uint64_t cascades;  /* cascades in those strata */
    uint64_t n_a, n_b;  /* all cascades of each label */
    double median_a, median_b;
    double z, p;         /* matched: NAN when no stratum holds both, or Var[T] = 0 */
    double z_all, p_all; /* unmatched: NAN when a label has no cascade, or Var = 0 */
    struct matched_stratum *by; /* the strata holding both, ascending; malloc'd (matched_free) */
};

/* The comparison of every metric over v[0..n) (group 0: A, 1: B). out[] is filled in the order
 * above; free it with matched_free. 0 or -ENOMEM (nothing to free then). */
int matched_compare(const struct engine_labeled *v, size_t n, struct matched_metric out[MATCHED_METRICS]);
void matched_free(struct matched_metric out[MATCHED_METRICS]);

#endif
