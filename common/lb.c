/* common/lb.c: see lb.h. */
#include "common/lb.h"

void weir_lb_init(weir_lb_t *lb, weir_lb_policy_t policy)
{
    lb->policy = policy;
    lb->rr_next = 0;
}

/* The index of the k-th (0-based) eligible candidate; the caller guarantees it exists. */
static size_t nth_eligible(size_t n, const bool *eligible, size_t k)
{
    if (eligible == NULL)
        return k;
    for (size_t i = 0; i < n; i++) {
        if (eligible[i] && k-- == 0)
            return i;
    }
    return 0; /* not reached: k < number of eligible candidates */
}

int weir_lb_pick(weir_lb_t *lb, size_t n, const bool *eligible, const uint32_t *active, uint32_t r1,
                 uint32_t r2)
{
    size_t m = n;
    if (eligible != NULL) {
        m = 0;
        for (size_t i = 0; i < n; i++)
            m += eligible[i];
    }
    if (m == 0)
        return -1;

    switch (lb->policy) {
    case WEIR_LB_ROUND_ROBIN: {
        /* Scan from the cursor so an excluded endpoint passes its turn to the next one rather
         * than to a random one; the cursor then moves past the chosen endpoint. */
        size_t start = lb->rr_next % n;
        for (size_t k = 0; k < n; k++) {
            size_t i = (start + k) % n;
            if (eligible == NULL || eligible[i]) {
                lb->rr_next = (uint32_t)((i + 1) % n);
                return (int)i;
            }
        }
        return -1; /* not reached: m > 0 */
    }
    case WEIR_LB_LEAST_REQUEST: {
        /* Envoy's P2C: the first sample stands unless the second has strictly fewer active
         * requests. Both samples may land on the same endpoint, as in Envoy. */
        size_t a = nth_eligible(n, eligible, r1 % m);
        size_t b = nth_eligible(n, eligible, r2 % m);
        if (active != NULL && active[b] < active[a])
            return (int)b;
        return (int)a;
    }
    case WEIR_LB_RANDOM:
    case WEIR_LB_PASSTHROUGH:
    default:
        return (int)nth_eligible(n, eligible, r1 % m);
    }
}

bool weir_lb_percent_hits(double percent, uint32_t draw)
{
    /* rounding to a whole millionth keeps 12.3456 % from losing its last draw to 0.1 % error */
    uint32_t threshold = percent <= 0 ? 0 : percent >= 100 ? 1000000u
                                                          : (uint32_t)(percent * 10000.0 + 0.5);
    return draw % 1000000u < threshold;
}
