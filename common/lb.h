/* common/lb.h: endpoint pickers: LEAST_REQUEST (Envoy's power of two choices, Istio's
 * default), ROUND_ROBIN and RANDOM.
 *
 * Pure: randomness comes in as arguments and the only state is the round-robin cursor, so
 * tests drive every decision. Endpoints are described by their active request counts.
 * Owned by the cluster that embeds it; loop thread only. */
#ifndef WEIR_LB_H
#define WEIR_LB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

typedef struct {
    weir_lb_policy_t policy;
    uint32_t rr_next; /* ROUND_ROBIN cursor */
} weir_lb_t;

void weir_lb_init(weir_lb_t *lb, weir_lb_policy_t policy);

/* Chooses among n candidates. eligible[i] false skips candidate i (NULL: all eligible);
 * active[i] is candidate i's in-flight request count (LEAST_REQUEST). Returns the index, or -1
 * when no candidate is eligible.
 *  - ROUND_ROBIN: the next eligible index at or after the cursor, cursor moves past it.
 *  - RANDOM: the (r1 mod eligible)-th eligible candidate.
 *  - LEAST_REQUEST: two eligible candidates, the (r1 mod m)-th and the (r2 mod m)-th, and the
 *    one with fewer active requests wins (the first on a tie), as Envoy's P2C.
 *  - PASSTHROUGH behaves as RANDOM here (the caller handles original-destination). */
int weir_lb_pick(weir_lb_t *lb, size_t n, const bool *eligible, const uint32_t *active, uint32_t r1,
                 uint32_t r2);

/* Istio's percentages (fault delay and abort, mirrorPercentage) rolled as Envoy rolls a
 * FractionalPercent of denominator MILLION: `draw` (any 32-bit random value) is reduced to
 * [0, 1000000) and hits when it is below percent x 10^4. So 0 never hits, 100 always does, and
 * the 4 decimals Istio allows are honoured exactly. */
bool weir_lb_percent_hits(double percent, uint32_t draw);

#endif
