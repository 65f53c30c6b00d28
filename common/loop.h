/* common/loop.h: process-wide loop glue: the uv loop, a cached clock, randomness and the
 * HTTP Date header, so the request path never makes a syscall for any of them.
 * Everything here runs on the loop thread. */
#ifndef WEIR_LOOP_H
#define WEIR_LOOP_H

#include <stdint.h>
#include <uv.h>

/* The loop every module uses (uv_default_loop()). */
uv_loop_t *weir_loop(void);

/* Milliseconds of the loop's cached monotonic clock (uv_now). */
uint64_t weir_now_ms(void);

/* Wall-clock time in microseconds since the epoch, for access-log timestamps. */
uint64_t weir_wall_us(void);

/* A fast pseudo-random number (xorshift), seeded from getrandom() at first use. Not for
 * secrets: weighted picks, load balancing and request ids only. */
uint32_t weir_random_u32(void);

/* Writes a UUIDv4 (36 chars + NUL) into out, as Envoy generates x-request-id. */
void weir_uuid4(char out[37]);

/* "Thu, 26 Nov 2026 07:55:57 GMT", recomputed at most once a second. */
const char *weir_http_date(void);

#endif
