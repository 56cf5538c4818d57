/* rng.c — Philox streams (see rng.h). */
#include "rng.h"

#include <Random123/philox.h>
#include <math.h>

#include "common.h"

rng_stream rng_stream_make(uint64_t seed, rng_purpose purpose, uint32_t a, uint32_t b,
                           uint32_t c) {
    YT_CHECK(c < (1u << 24));
    rng_stream s = {0};
    s.key[0] = (uint32_t)seed;
    s.key[1] = (uint32_t)(seed >> 32);
    s.ctr[1] = a;
    s.ctr[2] = b;
    s.ctr[3] = ((uint32_t)purpose << 24) | c;
    return s;
}

static void refill(rng_stream *s) {
    philox4x32_ctr_t c = {{s->ctr[0], s->ctr[1], s->ctr[2], s->ctr[3]}};
    philox4x32_key_t k = {{s->key[0], s->key[1]}};
    philox4x32_ctr_t r = philox4x32(c, k);
    for (int i = 0; i < 4; i++) s->buf[i] = r.v[i];
    s->left = 4;
    s->ctr[0]++;
}

void rng_seek(rng_stream *s, uint64_t pos) {
    YT_CHECK(pos / 4 <= UINT32_MAX);
    s->ctr[0] = (uint32_t)(pos / 4);
    s->left = 0;
    int skip = (int)(pos % 4);
    if (skip) {
        refill(s);
        s->left -= skip;
    }
}

uint32_t rng_u32(rng_stream *s) {
    if (s->left == 0) refill(s);
    return s->buf[4 - s->left--];
}

uint64_t rng_u64(rng_stream *s) {
    uint64_t hi = rng_u32(s);
    return (hi << 32) | rng_u32(s);
}

double rng_uniform(rng_stream *s) {
    /* 53 bits, shifted by half a step so that 0 and 1 never occur */
    return ((double)(rng_u64(s) >> 11) + 0.5) * 0x1.0p-53;
}

uint64_t rng_below(rng_stream *s, uint64_t n) {
    YT_CHECK(n > 0);
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    uint64_t x;
    do x = rng_u64(s);
    while (x >= limit);
    return x % n;
}

/* Box-Muller's first value from a pair of uniforms: rng_normal and
 * rng_normal_fill share it, so they give the same bits */
static inline double box_muller(double u1, double u2) {
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double rng_normal(rng_stream *s) {
    /* one value per pair of uniforms: no cached second value, so a stream's
     * numbers depend only on its position */
    double u1 = rng_uniform(s), u2 = rng_uniform(s);
    return box_muller(u1, u2);
}

void rng_normal_fill(rng_stream *s, real *out, size_t n) {
    enum { CHUNK = 64 };
    double u1[CHUNK], u2[CHUNK];
    for (size_t k = 0; k < n; k += CHUNK) {
        const size_t m = YT_MIN((size_t)CHUNK, n - k);
        for (size_t i = 0; i < m; i++) {
            u1[i] = rng_uniform(s);
            u2[i] = rng_uniform(s);
        }
        for (size_t i = 0; i < m; i++)
            out[k + i] = (real)box_muller(u1[i], u2[i]);
    }
}

double rng_truncated_normal(rng_stream *s) {
    double x;
    do x = rng_normal(s);
    while (fabs(x) > 2.0);
    return x;
}

void rng_permutation(rng_stream *s, uint64_t *perm, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) perm[i] = i;
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = rng_below(s, i);
        uint64_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}
