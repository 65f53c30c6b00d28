/* common/loop.c: see loop.h. */
#include "common/loop.h"

#include <stdio.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>

static uint64_t rng_state;

uv_loop_t *weir_loop(void)
{
    return uv_default_loop();
}

uint64_t weir_now_ms(void)
{
    return uv_now(uv_default_loop());
}

uint64_t weir_wall_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

static uint64_t next_random(void)
{
    if (rng_state == 0) {
        if (getrandom(&rng_state, sizeof(rng_state), 0) != sizeof(rng_state) || rng_state == 0)
            rng_state = weir_wall_us() | 1;
    }
    /* xorshift64*: good enough spread for picks, and no syscall per request */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

uint32_t weir_random_u32(void)
{
    return (uint32_t)(next_random() >> 32);
}

void weir_uuid4(char out[37])
{
    uint64_t hi = next_random(), lo = next_random();
    hi = (hi & 0xffffffffffff0fffull) | 0x0000000000004000ull; /* version 4 */
    lo = (lo & 0x3fffffffffffffffull) | 0x8000000000000000ull; /* RFC 4122 variant */
    /* by hand, not snprintf: one per request without x-request-id, on the hot path */
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 32; i++) {
        uint64_t word = i < 16 ? hi : lo;
        *p++ = hex[(word >> (60 - 4 * (i % 16))) & 0xf];
        if (i == 7 || i == 11 || i == 15 || i == 19)
            *p++ = '-';
    }
    *p = '\0';
}

const char *weir_http_date(void)
{
    static char buf[64];
    static time_t last;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    return buf;
}
