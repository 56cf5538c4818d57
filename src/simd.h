/* simd.h — portable short vectors of `real` for the hot loops (internal to
 * the numerics: layers, convk, loss, optim; so it lives in src/).
 *
 * GCC vector extensions: one `rvec` is 32 bytes, 8 floats or 4 doubles, so
 * the same kernel source serves the float and the double build. Functions
 * marked YT_SIMD_CLONES are compiled twice, for Haswell-class CPUs (AVX2 +
 * FMA: one ymm register per rvec, a*b + c contracted to one FMA under
 * -ffp-contract=fast) and for plain x86-64 (two SSE registers per rvec), and
 * the dynamic loader picks one at startup: binaries run on any x86-64 and
 * use the vector units where they exist. Helpers taking or returning rvec are
 * always_inline, so no vector ever crosses a call between the two ISAs.
 *
 * bin/yoto-avx512 (make avx512) is built with -march=x86-64-v4 and
 * SIMD_BYTES=64: one zmm register per rvec (16 floats), no clones; it runs
 * only on CPUs with AVX-512 (isa.c refuses others before any of it runs).
 */
#ifndef YOTO_SIMD_H
#define YOTO_SIMD_H

#include <string.h>

#include "common.h"

#ifndef SIMD_BYTES
#define SIMD_BYTES 32
#endif
#if SIMD_BYTES != 32 && SIMD_BYTES != 64
#error "SIMD_BYTES is 32 (AVX2 and baseline) or 64 (AVX-512)"
#endif
typedef real rvec __attribute__((vector_size(SIMD_BYTES)));
/* reals per rvec */
#define VL ((int)(SIMD_BYTES / sizeof(real)))

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__AVX512F__)
#define YT_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define YT_SIMD_CLONES
#endif
#define YT_INLINE static inline __attribute__((always_inline))
/* rvec values never cross a real call (always_inline), so the baseline ABI
 * note about passing 32-byte vectors without AVX does not apply */
#pragma GCC diagnostic ignored "-Wpsabi"

/* unaligned load and store (an rvec that may sit anywhere a real may) */
typedef real rvec_u __attribute__((vector_size(SIMD_BYTES), aligned(sizeof(real)), may_alias));
YT_INLINE rvec vload(const real *p) {
    return *(const rvec_u *)p;
}
YT_INLINE void vstore(real *p, rvec v) {
    *(rvec_u *)p = v;
}
/* A non-temporal store of v to p (aligned to SIMD_BYTES): the line goes
 * to memory without being read first or kept in this core's cache, and
 * without waiting for other cores' copies to be dropped. vstream_fence
 * orders such stores before the stores that follow (a barrier's). */
#if SIMD_BYTES == 64 && !defined(YOTO_DOUBLE)
YT_INLINE void vstream(real *p, rvec v) {
    __builtin_ia32_movntps512(p, v);
}
#else
YT_INLINE void vstream(real *p, rvec v) {
    for (int k = 0; k < SIMD_BYTES / 16; k++) { /* SSE's, in every clone */
#ifdef YOTO_DOUBLE
        __builtin_ia32_movntpd(p + 2 * k,
                               (__attribute__((vector_size(16))) double){v[2 * k], v[2 * k + 1]});
#else
        __builtin_ia32_movntps(p + 4 * k, (__attribute__((vector_size(16))) float){
                                              v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]});
#endif
    }
}
#endif
YT_INLINE void vstream_fence(void) {
    __builtin_ia32_sfence();
}

/* one real in every lane. Not `(rvec){0} + x`, which is an addition without
 * -ffast-math, nor a loop over lanes, which GCC may assemble on the stack; in
 * kernels `v * x` with a scalar x broadcasts best (one vbroadcastss). */
#ifdef YOTO_DOUBLE
typedef long long rvec_idx __attribute__((vector_size(SIMD_BYTES)));
#else
typedef int rvec_idx __attribute__((vector_size(SIMD_BYTES)));
#endif
YT_INLINE rvec vbcast(real x) {
    rvec v = {x};
    return __builtin_shuffle(v, (rvec_idx){0});
}
/* Lane patterns of two-vector shuffles of n-lane vectors: the even / odd
 * lanes of (a, b), the low / high halves of a and b interleaved, and the
 * lanes one on (a[1..n), then b[0]).
 * LANE_PATTERN(EVEN, n) for a literal n (16, 8, 4, 2) or a macro of one. */
#define LANE_PATTERN(kind, n) LANE_PATTERN_(kind, n)
#define LANE_PATTERN_(kind, n) LANES_##kind##_##n
#define LANES_EVEN_16                                                                              \
    { 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30 }
#define LANES_ODD_16                                                                               \
    { 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31 }
#define LANES_ZIP_LO_16                                                                            \
    { 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23 }
#define LANES_ZIP_HI_16                                                                            \
    { 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31 }
#define LANES_EVEN_8                                                                               \
    { 0, 2, 4, 6, 8, 10, 12, 14 }
#define LANES_ODD_8                                                                                \
    { 1, 3, 5, 7, 9, 11, 13, 15 }
#define LANES_ZIP_LO_8                                                                             \
    { 0, 8, 1, 9, 2, 10, 3, 11 }
#define LANES_ZIP_HI_8                                                                             \
    { 4, 12, 5, 13, 6, 14, 7, 15 }
#define LANES_EVEN_4                                                                               \
    { 0, 2, 4, 6 }
#define LANES_ODD_4                                                                                \
    { 1, 3, 5, 7 }
#define LANES_ZIP_LO_4                                                                             \
    { 0, 4, 1, 5 }
#define LANES_ZIP_HI_4                                                                             \
    { 2, 6, 3, 7 }
#define LANES_NEXT_16                                                                              \
    { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 }
#define LANES_NEXT_8                                                                               \
    { 1, 2, 3, 4, 5, 6, 7, 8 }
#define LANES_NEXT_4                                                                               \
    { 1, 2, 3, 4 }
#define LANES_NEXT_2                                                                               \
    { 1, 2 }
#define LANES_EVEN_2                                                                               \
    { 0, 2 }
#define LANES_ODD_2                                                                                \
    { 1, 3 }
#define LANES_ZIP_LO_2                                                                             \
    { 0, 2 }
#define LANES_ZIP_HI_2                                                                             \
    { 1, 3 }
/* VL as a literal for the patterns, and half of it (hvec below) */
#if SIMD_BYTES == 64 && !defined(YOTO_DOUBLE)
#define VL_LANES 16
#define HL_LANES 8
#elif SIMD_BYTES == 64 || !defined(YOTO_DOUBLE)
#define VL_LANES 8
#define HL_LANES 4
#else
#define VL_LANES 4
#define HL_LANES 2
#endif
#define RVEC_EVEN ((rvec_idx)LANE_PATTERN(EVEN, VL_LANES))
#define RVEC_ODD ((rvec_idx)LANE_PATTERN(ODD, VL_LANES))
#define RVEC_ZIP_LO ((rvec_idx)LANE_PATTERN(ZIP_LO, VL_LANES))
#define RVEC_ZIP_HI ((rvec_idx)LANE_PATTERN(ZIP_HI, VL_LANES))
#define RVEC_NEXT ((rvec_idx)LANE_PATTERN(NEXT, VL_LANES))

/* Half vectors (HL = VL/2 reals): for rows of VL/2 values where a whole
 * vector does not fit (layers.c's stride-2 im2col and col2im) */
#define HL (VL / 2)
typedef real hvec __attribute__((vector_size(SIMD_BYTES / 2)));
typedef real hvec_u __attribute__((vector_size(SIMD_BYTES / 2), aligned(sizeof(real)), may_alias));
#ifdef YOTO_DOUBLE
typedef long long hvec_idx __attribute__((vector_size(SIMD_BYTES / 2)));
#else
typedef int hvec_idx __attribute__((vector_size(SIMD_BYTES / 2)));
#endif
#define HVEC_EVEN ((hvec_idx)LANE_PATTERN(EVEN, HL_LANES))
#define HVEC_ODD ((hvec_idx)LANE_PATTERN(ODD, HL_LANES))
#define HVEC_ZIP_LO ((hvec_idx)LANE_PATTERN(ZIP_LO, HL_LANES))
#define HVEC_ZIP_HI ((hvec_idx)LANE_PATTERN(ZIP_HI, HL_LANES))
#define HVEC_NEXT ((hvec_idx)LANE_PATTERN(NEXT, HL_LANES))
YT_INLINE hvec hload(const real *p) {
    return *(const hvec_u *)p;
}
YT_INLINE void hstore(real *p, hvec v) {
    *(hvec_u *)p = v;
}

/* Quarter vectors (QL = 4 reals) where a vector is 16 (AVX-512 floats): for
 * rows of 4 values (the 4 x 4 maps of layers.c's stride-2 im2col and
 * col2im), which would otherwise run in scalars */
#if VL_LANES == 16
#define QL 4
typedef real qvec __attribute__((vector_size(4 * sizeof(real))));
typedef real qvec_u
    __attribute__((vector_size(4 * sizeof(real)), aligned(sizeof(real)), may_alias));
typedef int qvec_idx __attribute__((vector_size(4 * sizeof(real))));
#define QVEC_EVEN ((qvec_idx)LANE_PATTERN(EVEN, 4))
#define QVEC_ODD ((qvec_idx)LANE_PATTERN(ODD, 4))
#define QVEC_ZIP_LO ((qvec_idx)LANE_PATTERN(ZIP_LO, 4))
#define QVEC_ZIP_HI ((qvec_idx)LANE_PATTERN(ZIP_HI, 4))
#define QVEC_NEXT ((qvec_idx)LANE_PATTERN(NEXT, 4))
YT_INLINE qvec qload(const real *p) {
    return *(const qvec_u *)p;
}
YT_INLINE void qstore(real *p, qvec v) {
    *(qvec_u *)p = v;
}
#endif

/* lanes of a where m is set (all ones), of b elsewhere; m from a comparison */
YT_INLINE rvec vselect(rvec_idx m, rvec a, rvec b) {
    return (rvec)(((rvec_idx)a & m) | ((rvec_idx)b & ~m));
}

YT_INLINE real vhsum(rvec v) {
    real s = 0;
#pragma GCC unroll 8
    for (int i = 0; i < VL; i++)
        s += v[i];
    return s;
}

/* sum of p[0..n) in double: 16 double accumulators (lane j takes every 16th
 * value: the vectoriser's four vectors of doubles converted from floats,
 * four add chains in flight), added in order at the end; the same bits for
 * the same n and values */
YT_INLINE double vsum_double(const real *p, size_t n) {
    double acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            acc[j] += p[i + j];
    for (int j = 0; i < n; i++, j++)
        acc[j] += p[i];
    double s = 0;
    for (int j = 0; j < 16; j++)
        s += acc[j];
    return s;
}

#ifndef YOTO_DOUBLE
/* ---- float math on vectors (the float build's hot loss loops; the double
 * build calls libm) ---- */

/* e^x for x <= 0, within 2 ulp; below -87.3 it returns e^-87.3 (~1e-38).
 * Cephes expf: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-7 polynomial,
 * 2^n put in the exponent bits. */
YT_INLINE rvec vexp_nonpos(rvec x) {
    const rvec lo = {0};
    x = vselect(x < lo - 87.3f, lo - 87.3f, x);
    rvec_idx ni = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, rvec_idx); /* round */
    rvec n = __builtin_convertvector(ni, rvec);
    rvec r = x - n * 0.693359375f - n * -2.12194440e-4f;
    rvec p = 1.9875691500e-4f * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    return p * (rvec)((ni + 127) << 23);
}

/* log(1 + e) for e in [0, 1], within 4 ulp: 2 atanh(s), s = e / (2 + e) in
 * [0, 1/3], by its series to s^15 (no cancellation for small e) */
YT_INLINE rvec vlog1p_unit(rvec e) {
    rvec s = e / (e + 2.0f), z = s * s;
    rvec p = z * (1.0f / 15) + 1.0f / 13;
    p = p * z + 1.0f / 11;
    p = p * z + 1.0f / 9;
    p = p * z + 1.0f / 7;
    p = p * z + 1.0f / 5;
    p = p * z + 1.0f / 3;
    p = p * z + 1.0f;
    return 2.0f * s * p;
}

/* log(x) for normal x > 0 (the float build's likelihoods: x >= 1e-6), within
 * 3 ulp (tests/unit/test_elementwise.c sweeps [1e-6, 1e6] and [0.5, 2]):
 * x = 2^e m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m - 1) /
 * (m + 1) in [-0.172, 0.172], by its series to s^11 (truncation below 1e-9
 * relative), e ln 2 with ln 2 split in two (Cephes) so that it adds exactly. */
YT_INLINE rvec vlog_pos(rvec x) {
    const rvec one = (rvec){0} + 1.0f;
    rvec_idx bits = (rvec_idx)x;
    rvec_idx e = ((bits >> 23) & 0xff) - 127;
    rvec m = (rvec)((bits & 0x007fffff) | 0x3f800000); /* [1, 2) */
    rvec_idx big = m > 1.41421356f;
    m = vselect(big, m * 0.5f, m);
    e -= big; /* big is -1 where set */
    rvec s = (m - one) / (m + one), z = s * s;
    rvec p = z * (1.0f / 11) + 1.0f / 9;
    p = p * z + 1.0f / 7;
    p = p * z + 1.0f / 5;
    p = p * z + 1.0f / 3;
    p = p * z * s + s; /* s + s^3/3 + ... */
    rvec ef = __builtin_convertvector(e, rvec);
    return (ef * -2.12194440e-4f + 2.0f * p) + ef * 0.693359375f;
}

/* softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|), within 5 ulp for
 * x >= -87 (the two pieces' errors, measured 4.1 ulp; the sum's terms have
 * the same sign);
 * below, about 1e-38 (vexp_nonpos's clamp) */
YT_INLINE rvec vsoftplus(rvec x) {
    const rvec zero = {0};
    rvec a = vselect(x < zero, -x, x);
    return vselect(x > zero, x, zero) + vlog1p_unit(vexp_nonpos(-a));
}

/* sigmoid(x) = 1 / (1 + e^-x) with e^-|x| (no overflow), within 3 ulp for
 * x >= -87; below, about 1e-38 */
YT_INLINE rvec vsigmoid(rvec x) {
    const rvec zero = {0}, one = zero + 1.0f;
    rvec e = vexp_nonpos(vselect(x < zero, x, -x)); /* e^-|x| */
    return vselect(x >= zero, one, e) / (one + e);
}
#endif

/* dst[0, n) = src[0, n) for short rows, without a call. GCC turns the plain
 * loop into a call to memmove (its loop-distribution pass), 3.6% of a
 * Shapes3D step for rows of 8-64 reals; the empty asm hides the index from
 * that pass. */
YT_INLINE void copy_row(real *restrict dst, const real *restrict src, int n) {
    int i = 0;
    for (; i + VL <= n; i += VL) {
        vstore(dst + i, vload(src + i));
        __asm__("" : "+r"(i));
    }
    for (; i < n; i++) {
        dst[i] = src[i];
        __asm__("" : "+r"(i));
    }
}

/* p[0, n) = 0 for the padding of short rows (convk.c's grids, layers.c's
 * columns): a memset call per row cost 72k calls in one pass of Shapes3D's
 * largest layer at batch 64, now 6k. Stores of whole vectors (overlapping,
 * never outside [p, p + n)) up to 2 VL, memset beyond. */
YT_INLINE void zero_row(real *p, size_t n) {
    const rvec z = {0};
    if (n >= VL && n <= 2 * (size_t)VL) {
        vstore(p, z);
        vstore(p + n - VL, z);
    } else if (n < VL) {
        for (size_t i = 0; i < n; i++)
            p[i] = 0;
    } else {
        memset(p, 0, n * sizeof *p);
    }
}

/* n rounded up to a multiple of m */
YT_INLINE size_t round_up(size_t n, size_t m) {
    return (n + m - 1) / m * m;
}

#endif
