/* rng.h — counter-based random streams (Random123 Philox4x32-10).
 *
 * There is no global generator. A stream is a pure function of
 * (seed, purpose, a, b, c) and a position inside it: the same arguments give
 * the same numbers in every process, on every rank count, after every resume.
 * DESIGN.md fixes what (a, b, c) mean for each purpose:
 *   RNG_INIT          a = parameter tensor index
 *   RNG_DATA_ORDER    a = epoch, b = rank (shuffle of a rank's shard)
 *   RNG_AUGMENT       a = epoch, b = row index in the split (not the rank)
 *   RNG_LOSS_WEIGHTS  a = step, b = rank, c = sample index in the rank's batch
 *   RNG_EPS           a = step, b = rank, c = sample index in the rank's batch
 *   RNG_EVAL          a = β index, b = batch, c = sample (eval.z: sample)
 *   RNG_SYNTHETIC     benchmark and test data
 *   RNG_METRICS       a = 0 row permutation, 1 / 2 FactorVAE train / eval vote
 *                     b (docs/METRICS.md)
 * Key = the 64-bit seed; counter = (position, a, b, purpose << 24 | c), so c
 * must stay below 2^24.
 */
#ifndef YOTO_RNG_H
#define YOTO_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef enum {
    RNG_INIT = 1,
    RNG_DATA_ORDER = 2,
    RNG_AUGMENT = 3,
    RNG_LOSS_WEIGHTS = 4,
    RNG_EPS = 5,
    RNG_EVAL = 6,
    RNG_SYNTHETIC = 7,
    RNG_METRICS = 8
} rng_purpose;

typedef struct {
    uint32_t key[2];
    uint32_t ctr[4]; /* ctr[0] = next block; ctr[1..3] = (a, b, purpose|c) */
    uint32_t buf[4];
    int left; /* words of buf not yet used */
} rng_stream;

rng_stream rng_stream_make(uint64_t seed, rng_purpose purpose, uint32_t a, uint32_t b,
                           uint32_t c);
/* Moves to word `pos` of the stream (0 = the first number it gives). */
void rng_seek(rng_stream *s, uint64_t pos);

uint32_t rng_u32(rng_stream *s);
uint64_t rng_u64(rng_stream *s);
double rng_uniform(rng_stream *s);          /* in (0, 1), 53 random bits */
uint64_t rng_below(rng_stream *s, uint64_t n); /* uniform in [0, n), unbiased */
double rng_normal(rng_stream *s);           /* N(0, 1), Box-Muller */
double rng_truncated_normal(rng_stream *s); /* N(0, 1) cut at +-2 (rejection) */
/* out[k] = (real)rng_normal(s) for k = 0 .. n-1 in turn, the same bits, in
 * about two thirds of the time (the uniforms first, then the transforms,
 * which no longer wait on each other) */
void rng_normal_fill(rng_stream *s, real *out, size_t n);
/* Fisher-Yates shuffle of perm[0..n) (filled with 0..n-1 first). */
void rng_permutation(rng_stream *s, uint64_t *perm, uint64_t n);

#endif
