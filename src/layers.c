/* layers.c — forward and backward of every layer (see layers.h).
 *
 * Convolutions take one of three routes (conv_geom.route, chosen per
 * shape): Winograd F(2x2, 3x3) at stride 1 (convw.c), the direct kernels of
 * convk.c, or im2col + GEMM over chunks of samples: the
 * column buffer of a chunk, [cin*9][chunk*ho*wo], is bounded by
 * CONV_WORK_TARGET reals, and the GEMM writes straight into the [C][N][H][W]
 * activation with ldc = n*ho*wo. Element-wise layers run on short vectors
 * (simd.h), compiled for AVX2 + FMA and for baseline x86-64.
 */
#include "layers.h"

#include "blas.h"
#include "convk.h"
#include "par.h"
#include "simd.h"

#include <string.h>
#include <tgmath.h>

/* column buffer of one chunk, in reals (8 MB in float) */
#define CONV_WORK_TARGET ((size_t)1 << 21)

/* ---- geometry ---------------------------------------------------------------- */

/* Which route is fastest. Stride 1: Winograd (convw.c). Stride 2, measured
 * per layer on the Shapes3D shapes (Zen 3, one thread): the direct kernels
 * win by 1.2-10x wherever the feature side is at least 8 wide; at 4x4 a
 * third of their grid is padding and the GEMMs (K = 9 cin >= 288) are
 * efficient, so im2col + GEMM wins there. With 2048 channel pairs or more
 * the GEMMs win at 8x8 too (Zen 5, CPU time of forward + backward: Shapes3D's
 * 32 -> 64 at 16x16, 5.3 ms against 6.1; CIFAR's 32 -> 32, 8.3 against 6.6). */
static conv_route conv_best_route(const conv_geom *g) {
    /* Winograd's transforms cost per channel of both sides, its savings per
     * channel pair: with few outputs of many inputs the direct kernels win
     * (CIFAR-10's output conv 16 -> 6: 9.5 ms against 10.5; Shapes3D's
     * 8 -> 3, once the direct kernels' chunks grew to 4 MiB: 5.7 ms against
     * 7.2, bench median of 10 on Zen 5; 5.4 against 8.4 in bin/yoto-avx512) */
    if (convw_supports(g) && !(g->cout < 8 && g->cin >= 8)) return CONV_WINOGRAD;
    if (g->stride == 1 && convk_supports(g)) return CONV_DIRECT;
    return g->wo >= 8 && (long)g->cin * g->cout < 2048 ? CONV_DIRECT : CONV_GEMM;
}

conv_geom conv_geom_make(int n, int cin, int h, int w, int cout, int stride) {
    YT_CHECK(n > 0 && cin > 0 && h > 0 && w > 0 && cout > 0 && stride >= 1);
    conv_geom g = {.n = n, .cin = cin, .h = h, .w = w, .cout = cout, .stride = stride};
    g.ho = (h + stride - 1) / stride;
    g.wo = (w + stride - 1) / stride;
    int pad_h = YT_MAX((g.ho - 1) * stride + 3 - h, 0);
    int pad_w = YT_MAX((g.wo - 1) * stride + 3 - w, 0);
    g.pad_top = pad_h / 2;
    g.pad_left = pad_w / 2;
    size_t per_sample = (size_t)cin * 9 * (size_t)g.ho * (size_t)g.wo;
    g.chunk = (int)YT_MAX((size_t)1, YT_MIN((size_t)n, CONV_WORK_TARGET / per_sample));
    g.threads = blas_threads();
    conv_geom_route(&g, conv_best_route(&g));
    return g;
}

bool conv_geom_route(conv_geom *g, int route) {
    bool ok = route == CONV_GEMM || (route == CONV_DIRECT && convk_supports(g)) ||
              (route == CONV_WINOGRAD && convw_supports(g));
    g->route = ok ? route : CONV_GEMM;
    return ok;
}

static int gemm_threads(const conv_geom *g);
static size_t gemm_part_size(const conv_geom *g);

size_t conv_work_size(const conv_geom *g) {
    if (g->route == CONV_DIRECT) return convk_work_size(g);
    if (g->route == CONV_WINOGRAD) return convw_work_size(g);
    return (size_t)gemm_threads(g) * gemm_part_size(g);
}

double conv_macs(const conv_geom *g) {
    return (double)g->n * g->ho * g->wo * g->cout * g->cin * 9.0;
}

/* im2col and col2im go through zero-padded copies of a channel's planes
 * (the thread's `pad`, one per sample of the chunk): a column row is then a
 * plain strided read of one, with no bounds per row, and the column buffer
 * is written (read) in order. Row-by-row bounds cost 10 ns per row of 4
 * (Shapes3D's 4x4 layers: 7% of a step in im2col and col2im). Row r,
 * column c of a plane is x[r - pad_top][c - pad_left], zero outside. */
static int pad_rows(const conv_geom *g) {
    return YT_MAX((g->ho - 1) * g->stride + 3, g->h + g->pad_top);
}

/* one column more than the taps read: the stride-2 vector path of the
 * kernel's right column (kw = 2) loads whole vectors up to one real past it */
static int pad_cols(const conv_geom *g) {
    return YT_MAX((g->wo - 1) * g->stride + 3, g->w + g->pad_left) + 1;
}

static size_t pad_size(const conv_geom *g) {
    return (size_t)pad_rows(g) * (size_t)pad_cols(g);
}

/* where sample n0 + i's row ih of channel ci starts: in x [cin][n][h][w],
 * and in the chunk's padded planes */
YT_INLINE size_t image_row(const conv_geom *g, int ci, int n0, int i, int ih) {
    return ((size_t)ci * g->n + n0 + i) * g->h * g->w + (size_t)ih * g->w;
}

YT_INLINE size_t plane_row(const conv_geom *g, int i, int ih) {
    return (size_t)i * pad_size(g) + (size_t)(ih + g->pad_top) * pad_cols(g) + g->pad_left;
}

/* the chunk's planes of channel ci into the padded planes (their padding
 * left as it is), and back (copy_row: no memcpy call per row) */
YT_INLINE void pad_in(const conv_geom *g, int ci, int n0, int nc, const real *x, real *pad) {
    for (int i = 0; i < nc; i++)
        for (int ih = 0; ih < g->h; ih++)
            copy_row(pad + plane_row(g, i, ih), x + image_row(g, ci, n0, i, ih), g->w);
}

YT_INLINE void pad_out(const conv_geom *g, int ci, int n0, int nc, const real *pad, real *x) {
    for (int i = 0; i < nc; i++)
        for (int ih = 0; ih < g->h; ih++)
            copy_row(x + image_row(g, ci, n0, i, ih), pad + plane_row(g, i, ih), g->w);
}

/* Stride 2 on vectors T of L reals with their loads, stores and lane
 * patterns (P##_EVEN ...): EVEN_OF(p), the even reals of p[0, 2 L), and
 * ADD_EVEN(p, v), p[2k] += v[k] for k < L (the same one add per element as
 * the scalar loop). Whole vectors, and half vectors (simd.h) for rows of
 * VL/2 outputs, which the loops below otherwise ran in scalars. (Even sizes
 * at stride 2, Shapes3D's layers among them, skip the planes: s2_even.) */
#define STRIDE2_OPS(T, L, LOAD, STORE, P, EVEN_OF, ADD_EVEN)                                       \
    YT_INLINE T EVEN_OF(const real *p) {                                                           \
        return __builtin_shuffle(LOAD(p), LOAD(p + (L)), P##_EVEN);                                \
    }                                                                                              \
    YT_INLINE void ADD_EVEN(real *p, T v) {                                                        \
        const T a = LOAD(p), b = LOAD(p + (L));                                                    \
        const T ev = __builtin_shuffle(a, b, P##_EVEN) + v, od = __builtin_shuffle(a, b, P##_ODD); \
        STORE(p, __builtin_shuffle(ev, od, P##_ZIP_LO));                                           \
        STORE(p + (L), __builtin_shuffle(ev, od, P##_ZIP_HI));                                     \
    }
STRIDE2_OPS(rvec, VL, vload, vstore, RVEC, even_of, add_even)
STRIDE2_OPS(hvec, HL, hload, hstore, HVEC, heven_of, hadd_even)
#ifdef QL
STRIDE2_OPS(qvec, QL, qload, qstore, QVEC, qeven_of, qadd_even)
#endif

/* Stride 2 on even sizes (SAME pads nothing before: Shapes3D's GEMM-route
 * layers), h = 2 ho and w = 2 wo: im2col and col2im go straight between x's
 * rows and the column rows, no padded planes. Tap (kh, kw) of output
 * (oh, ow) is x[2 oh + kh][2 ow + kw]: kw = 0 and 1 the even and odd reals
 * of a row, kw = 2 the even ones a column on (zero past the row's end); kh
 * = 0 and 2 the even rows, kh = 1 the odd ones (kh = 2 of the last output
 * row is past the image: zero). */
static bool s2_even(const conv_geom *g) {
    return g->stride == 2 && g->pad_top == 0 && g->pad_left == 0 && g->h == 2 * g->ho &&
           g->w == 2 * g->wo;
}

/* im2col for s2_even: x's row (row) into the column rows of its three taps
 * kw = 0, 1, 2 (c, c + ts, c + 2 ts; also c2 where not NULL), columns [c0,
 * c0 + L) on vectors T of L reals (P: their lane patterns): the even and
 * odd reals of the row, and the even ones a column on (the last chunk of
 * the row shifts a zero in, reading nothing past the row). */
#define S2_TAPS(T, L, LOAD, STORE, P, NAME)                                                        \
    YT_INLINE void NAME(const real *row, int c0, bool last, real *c, real *c2, size_t ts) {        \
        const T a = LOAD(row + 2 * c0), b = LOAD(row + 2 * c0 + L);                                \
        const T ev = __builtin_shuffle(a, b, P##_EVEN), od = __builtin_shuffle(a, b, P##_ODD);     \
        const T e2 = last ? __builtin_shuffle(ev, (T){0}, P##_NEXT)                                \
                          : __builtin_shuffle(LOAD(row + 2 * c0 + 2), LOAD(row + 2 * c0 + 2 + L),  \
                                              P##_EVEN);                                           \
        STORE(c + c0, ev), STORE(c + ts + c0, od), STORE(c + 2 * ts + c0, e2);                     \
        if (c2) STORE(c2 + c0, ev), STORE(c2 + ts + c0, od), STORE(c2 + 2 * ts + c0, e2);          \
    }
S2_TAPS(rvec, VL, vload, vstore, RVEC, s2_taps)
S2_TAPS(hvec, HL, hload, hstore, HVEC, s2_htaps)
#ifdef QL
S2_TAPS(qvec, QL, qload, qstore, QVEC, s2_qtaps)
#endif

YT_INLINE void im2col_s2(const conv_geom *g, const real *x, int n0, int nc, real *col) {
    const int wo = g->wo;
    const size_t plane = (size_t)g->ho * wo, ts = (size_t)nc * plane;
    for (int ci = 0; ci < g->cin; ci++)
        for (int i = 0; i < nc; i++) {
            real *c0 = col + (size_t)ci * 9 * ts + (size_t)i * plane; /* tap 0, row 0 */
            for (int ih = 0; ih < g->h; ih++) {
                const real *row = x + image_row(g, ci, n0, i, ih);
                const int oh = ih >> 1;
                /* odd rows are tap row kh = 1; even rows kh = 0, and kh = 2 of the row before */
                real *c = c0 + (size_t)(ih & 1 ? 3 : 0) * ts + (size_t)oh * wo;
                real *c2 = !(ih & 1) && oh > 0 ? c0 + 6 * ts + (size_t)(oh - 1) * wo : NULL;
                int k = 0;
                for (; k + VL <= wo; k += VL)
                    s2_taps(row, k, k + VL == wo, c, c2, ts);
                if (k + HL <= wo) {
                    s2_htaps(row, k, k + HL == wo, c, c2, ts);
                    k += HL;
                }
#ifdef QL
                if (k + QL <= wo) {
                    s2_qtaps(row, k, k + QL == wo, c, c2, ts);
                    k += QL;
                }
#endif
                for (; k < wo; k++) {
                    const real ev = row[2 * k], od = row[2 * k + 1];
                    const real e2 = k + 1 < wo ? row[2 * k + 2] : 0;
                    c[k] = ev, c[ts + k] = od, c[2 * ts + k] = e2;
                    if (c2) c2[k] = ev, c2[ts + k] = od, c2[2 * ts + k] = e2;
                }
            }
            for (int kw = 0; kw < 3; kw++) /* kh = 2 of the last output row: zeros */
                zero_row(c0 + (size_t)(6 + kw) * ts + plane - wo, (size_t)wo);
        }
}

/* col2im for s2_even: output rows 2r and 2r + 1 from the taps' rows r
 * (t, tap k at t + k ts) and r - 1 (u, where up), columns [c0, c0 + L) on
 * vectors T of L reals (I: their lane masks): the even and odd columns of
 * each row summed in registers, in tap order from zero as col2im's planes
 * are (the same bits: a missing term adds nothing, and such a sum is never
 * -0), then interleaved into x's rows x0 and x1. The kw = 2 taps read a
 * column earlier (lane 0 of the first chunk zero: P##_EVEN is 0 only
 * there; the real before a tap's row is the tap before's, in the buffer). */
#define S2_COLS(T, I, L, LOAD, STORE, P, NAME)                                                     \
    YT_INLINE void NAME(const real *t, const real *u, size_t ts, int c0, bool up, real *x0,        \
                        real *x1) {                                                                \
        const T z = {0};                                                                           \
        const I keep = (P##_EVEN != 0) | (c0 > 0 ? -1 : 0);                                        \
        t += c0, u += c0;                                                                          \
        T e0 = z + LOAD(t), o0 = z + LOAD(t + ts);                                                 \
        e0 += (T)((I)LOAD(t + 2 * ts - 1) & keep);                                                 \
        if (up) {                                                                                  \
            e0 += LOAD(u + 6 * ts);                                                                \
            o0 += LOAD(u + 7 * ts);                                                                \
            e0 += (T)((I)LOAD(u + 8 * ts - 1) & keep);                                             \
        }                                                                                          \
        T e1 = z + LOAD(t + 3 * ts), o1 = z + LOAD(t + 4 * ts);                                    \
        e1 += (T)((I)LOAD(t + 5 * ts - 1) & keep);                                                 \
        STORE(x0 + 2 * c0, __builtin_shuffle(e0, o0, P##_ZIP_LO));                                 \
        STORE(x0 + 2 * c0 + L, __builtin_shuffle(e0, o0, P##_ZIP_HI));                             \
        STORE(x1 + 2 * c0, __builtin_shuffle(e1, o1, P##_ZIP_LO));                                 \
        STORE(x1 + 2 * c0 + L, __builtin_shuffle(e1, o1, P##_ZIP_HI));                             \
    }
S2_COLS(rvec, rvec_idx, VL, vload, vstore, RVEC, s2_cols)
S2_COLS(hvec, hvec_idx, HL, hload, hstore, HVEC, s2_hcols)
#ifdef QL
S2_COLS(qvec, qvec_idx, QL, qload, qstore, QVEC, s2_qcols)
#endif

YT_INLINE void col2im_s2(const conv_geom *g, const real *col, int n0, int nc, real *x) {
    const int wo = g->wo;
    const size_t plane = (size_t)g->ho * wo, ts = (size_t)nc * plane;
    for (int ci = 0; ci < g->cin; ci++)
        for (int i = 0; i < nc; i++) {
            const real *c0 = col + (size_t)ci * 9 * ts + (size_t)i * plane;
            for (int r = 0; r < g->ho; r++) {
                const bool up = r > 0;
                const real *t = c0 + (size_t)r * wo, *u = up ? t - wo : t; /* rows r, r - 1 */
                real *x0 = x + image_row(g, ci, n0, i, 2 * r), *x1 = x0 + g->w;
                int c = 0;
                for (; c + VL <= wo; c += VL)
                    s2_cols(t, u, ts, c, up, x0, x1);
                if (c + HL <= wo) {
                    s2_hcols(t, u, ts, c, up, x0, x1);
                    c += HL;
                }
#ifdef QL
                if (c + QL <= wo) {
                    s2_qcols(t, u, ts, c, up, x0, x1);
                    c += QL;
                }
#endif
                for (; c < wo; c++) {
                    real e0 = (real)0 + t[c], o0 = (real)0 + t[ts + c];
                    if (c > 0) e0 += t[2 * ts + c - 1];
                    if (up) {
                        e0 += u[6 * ts + c];
                        o0 += u[7 * ts + c];
                        if (c > 0) e0 += u[8 * ts + c - 1];
                    }
                    real e1 = (real)0 + t[3 * ts + c], o1 = (real)0 + t[4 * ts + c];
                    if (c > 0) e1 += t[5 * ts + c - 1];
                    x0[2 * c] = e0, x0[2 * c + 1] = o0, x1[2 * c] = e1, x1[2 * c + 1] = o1;
                }
            }
        }
}

/* col [cin*9][nc][ho][wo] from samples n0..n0+nc of x [cin][n][h][w] */
YT_SIMD_CLONES
static void im2col(const conv_geom *g, const real *x, int n0, int nc, real *col, real *pad) {
    if (s2_even(g)) {
        im2col_s2(g, x, n0, nc, col);
        return;
    }
    const size_t ps = pad_size(g);
    const int s = g->stride, W = pad_cols(g);
    memset(pad, 0, (size_t)nc * ps * sizeof *pad);
    for (int ci = 0; ci < g->cin; ci++) {
        pad_in(g, ci, n0, nc, x, pad);
        for (int t = 0; t < 9; t++)
            for (int i = 0; i < nc; i++) {
                const real *p = pad + (size_t)i * ps + (t / 3) * W + t % 3;
                for (int oh = 0; oh < g->ho; oh++, col += g->wo, p += (size_t)s * W) {
                    int ow = 0;
                    if (s == 2) { /* reads up to p[2 wo - 1]: inside the padded row */
                        for (; ow + VL <= g->wo; ow += VL)
                            vstore(col + ow, even_of(p + 2 * ow));
                        if (ow + HL <= g->wo) {
                            hstore(col + ow, heven_of(p + 2 * ow));
                            ow += HL;
                        }
#ifdef QL
                        if (ow + QL <= g->wo) {
                            qstore(col + ow, qeven_of(p + 2 * ow));
                            ow += QL;
                        }
#endif
                    } else if (s == 1) {
                        for (; ow + VL <= g->wo; ow += VL)
                            vstore(col + ow, vload(p + ow));
                        if (ow + HL <= g->wo) {
                            hstore(col + ow, hload(p + ow));
                            ow += HL;
                        }
                    }
                    for (; ow < g->wo; ow++)
                        col[ow] = p[ow * s];
                }
            }
    }
}

/* samples n0..n0+nc of x [cin][n][h][w] = col2im(col), the adjoint of
 * im2col: the 9 taps added in order into padded planes that start at zero,
 * then their insides copied out */
YT_SIMD_CLONES
static void col2im(const conv_geom *g, const real *col, int n0, int nc, real *x, real *pad) {
    if (s2_even(g)) {
        col2im_s2(g, col, n0, nc, x);
        return;
    }
    const size_t ps = pad_size(g);
    const int s = g->stride, W = pad_cols(g);
    for (int ci = 0; ci < g->cin; ci++) {
        memset(pad, 0, (size_t)nc * ps * sizeof *pad);
        for (int t = 0; t < 9; t++)
            for (int i = 0; i < nc; i++) {
                real *p = pad + (size_t)i * ps + (t / 3) * W + t % 3;
                for (int oh = 0; oh < g->ho; oh++, col += g->wo, p += (size_t)s * W) {
                    int ow = 0;
                    if (s == 2) {
                        for (; ow + VL <= g->wo; ow += VL)
                            add_even(p + 2 * ow, vload(col + ow));
                        if (ow + HL <= g->wo) {
                            hadd_even(p + 2 * ow, hload(col + ow));
                            ow += HL;
                        }
#ifdef QL
                        if (ow + QL <= g->wo) {
                            qadd_even(p + 2 * ow, qload(col + ow));
                            ow += QL;
                        }
#endif
                    } else if (s == 1) { /* the same one add per element */
                        for (; ow + VL <= g->wo; ow += VL)
                            vstore(p + ow, vload(p + ow) + vload(col + ow));
                        if (ow + HL <= g->wo) {
                            hstore(p + ow, hload(p + ow) + hload(col + ow));
                            ow += HL;
                        }
                    }
                    for (; ow < g->wo; ow++)
                        p[ow * s] += col[ow];
                }
            }
        pad_out(g, ci, n0, nc, pad, x);
    }
}

/* y[c][i][...] += b[c] over c channels, samples n0..n0+nc of n, hw pixels */
static void add_bias(int c, int n, size_t hw, int n0, int nc, const real *b, real *y) {
    for (int ch = 0; ch < c; ch++) {
        real *p = y + ((size_t)ch * n + n0) * hw, v = b[ch];
        for (size_t j = 0; j < (size_t)nc * hw; j++)
            p[j] += v;
    }
}

/* db[c] += sum over the n*hw entries of channel c of dy, channels c0..c1 */
YT_SIMD_CLONES
static void sum_bias(int c0, int c1, size_t nhw, const real *dy, real *db) {
    for (int ch = c0; ch < c1; ch++)
        db[ch] += (real)vsum_double(dy + (size_t)ch * nhw, nhw);
}

typedef struct {
    int c;
    size_t nhw;
    const real *dy;
    real *db;
} bias_sum;

static void sum_bias_part(void *ctx, int t, int T) {
    const bias_sum *b = ctx;
    sum_bias((int)par_split((size_t)b->c, t, T), (int)par_split((size_t)b->c, t + 1, T), b->nhw,
             b->dy, b->db);
}

/* sum_bias over all c channels, split over threads */
static void sum_bias_all(int c, size_t nhw, const real *dy, real *db) {
    bias_sum b = {c, nhw, dy, db};
    par_run(par_threads((size_t)c * nhw, (size_t)c), sum_bias_part, &b);
}

/* ---- the direct routes (convk.h): Winograd or direct kernels ------------------------ */

static void fast_conv_forward(const conv_geom *g, const real *x, const real *k, const real *b,
                              real *y, const film_stage *st, real *o, real *work) {
    if (g->route == CONV_WINOGRAD)
        convw_conv_forward(g, x, k, b, y, st, o, work);
    else
        convk_conv_forward(g, x, k, b, y, st, o, work);
}

static void fast_deconv_forward(const conv_geom *g, const real *x, const real *k, const real *b,
                                real *y, const film_stage *st, real *o, real *work) {
    if (g->route == CONV_WINOGRAD)
        convw_deconv_forward(g, x, k, b, y, st, o, work);
    else
        convk_deconv_forward(g, x, k, b, y, st, o, work);
}

static void fast_conv_backward(const conv_geom *g, const real *x, const real *k, const real *dy,
                               real *dx, real *dk, real *db, const film_stage *st, const real *z,
                               real *dscale, real *dshift, real *work) {
    if (g->route == CONV_WINOGRAD)
        convw_conv_backward(g, x, k, dy, dx, dk, db, st, z, dscale, dshift, work);
    else
        convk_conv_backward(g, x, k, dy, dx, dk, db, st, z, dscale, dshift, work);
}

static void fast_deconv_backward(const conv_geom *g, const real *x, const real *k, const real *dy,
                                 real *dx, real *dk, real *db, const film_stage *st, const real *z,
                                 real *dscale, real *dshift, real *work) {
    if (g->route == CONV_WINOGRAD)
        convw_deconv_backward(g, x, k, dy, dx, dk, db, st, z, dscale, dshift, work);
    else
        convk_deconv_backward(g, x, k, dy, dx, dk, db, st, z, dscale, dshift, work);
}

/* ---- convolution ---------------------------------------------------------------- */

/* ---- the GEMM route, over threads ------------------------------------------------ */
/* Thread t of T takes samples [s0, s1) in chunks of g->chunk, with its own
 * column buffer and, with more than one thread, its own kernel gradient
 * (added to dk in thread order afterwards). */

static int gemm_threads(const conv_geom *g) {
    return YT_MAX(1, YT_MIN(g->threads, g->n));
}

/* a thread's part: the column buffer, the padded planes, and with more than
 * one thread its own kernel gradient, last */
static size_t gemm_col_size(const conv_geom *g) {
    return (size_t)g->cin * 9 * (size_t)g->chunk * (size_t)g->ho * (size_t)g->wo;
}

static size_t gemm_part_size(const conv_geom *g) {
    const size_t dk = gemm_threads(g) > 1 ? (size_t)g->cout * g->cin * 9 : 0;
    return gemm_col_size(g) + (size_t)g->chunk * pad_size(g) + dk;
}

enum { G_CONV_FWD, G_CONV_BWD, G_DECONV_FWD, G_DECONV_BWD };

/* What a GEMM-route call hands its threads: the layer's input `in`, the
 * gradient w.r.t. its output `grad` (backward), and its output or input
 * gradient `out` (may be NULL in the backward). */
typedef struct {
    const conv_geom *g;
    int op;
    const real *in, *k, *bias, *grad;
    real *out, *dk, *work;
} gcall;

static void gemm_chunk(const gcall *c, real *col, real *pad, real *dk, int n0, int nc) {
    const conv_geom *g = c->g;
    const int K = g->cin * 9, ohw = g->ho * g->wo, ld = g->n * ohw, m = nc * ohw;
    const size_t hw = (size_t)g->h * g->w, y0 = (size_t)n0 * ohw;
    switch (c->op) {
    case G_CONV_FWD:
        im2col(g, c->in, n0, nc, col, pad);
        gemm(0, 0, g->cout, m, K, 1, c->k, K, col, m, 0, c->out + y0, ld);
        add_bias(g->cout, g->n, (size_t)ohw, n0, nc, c->bias, c->out);
        break;
    case G_CONV_BWD:
        im2col(g, c->in, n0, nc, col, pad);
        gemm(0, 1, g->cout, K, m, 1, c->grad + y0, ld, col, m, 1, dk, K);
        if (c->out) {
            gemm(1, 0, K, m, g->cout, 1, c->k, K, c->grad + y0, ld, 0, col, m);
            col2im(g, col, n0, nc, c->out, pad);
        }
        break;
    case G_DECONV_FWD:
        gemm(1, 0, K, m, g->cout, 1, c->k, K, c->in + y0, ld, 0, col, m);
        col2im(g, col, n0, nc, c->out, pad);
        add_bias(g->cin, g->n, hw, n0, nc, c->bias, c->out);
        break;
    case G_DECONV_BWD:
        im2col(g, c->grad, n0, nc, col, pad);
        gemm(0, 1, g->cout, K, m, 1, c->in + y0, ld, col, m, 1, dk, K);
        if (c->out) gemm(0, 0, g->cout, m, K, 1, c->k, K, col, m, 0, c->out + y0, ld);
        break;
    }
}

static void gemm_part(void *ctx, int t, int T) {
    const gcall *c = ctx;
    const conv_geom *g = c->g;
    real *col = c->work + (size_t)t * gemm_part_size(g), *pad = col + gemm_col_size(g);
    real *dk = c->dk;
    if (T > 1 && dk) { /* this thread's own kernel gradient, after its planes */
        dk = pad + (size_t)g->chunk * pad_size(g);
        memset(dk, 0, (size_t)g->cout * g->cin * 9 * sizeof *dk);
    }
    const int s0 = (int)par_split((size_t)g->n, t, T), s1 = (int)par_split((size_t)g->n, t + 1, T);
    for (int n0 = s0; n0 < s1; n0 += g->chunk)
        gemm_chunk(c, col, pad, dk, n0, YT_MIN(g->chunk, s1 - n0));
}

static void gemm_run(const gcall *c) {
    const conv_geom *g = c->g;
    const int T = gemm_threads(g);
    par_run(T, gemm_part, (void *)c);
    if (T > 1 && c->dk) { /* the threads' kernel gradients, in thread order */
        const size_t nk = (size_t)g->cout * g->cin * 9, col = gemm_part_size(g) - nk;
        for (size_t j = 0; j < nk; j++) {
            real s = 0;
            for (int t = 0; t < T; t++)
                s += c->work[(size_t)t * gemm_part_size(g) + col + j];
            c->dk[j] += s;
        }
    }
}

/* ---- convolution ---------------------------------------------------------------- */

/* conv_geom.xstage: only the direct kernels apply a stage to their input */
static void check_xstage(const conv_geom *g) {
    YT_CHECK(!g->xstage || g->route == CONV_DIRECT);
}

void conv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                  real *work) {
    check_xstage(g);
    if (g->route != CONV_GEMM) {
        fast_conv_forward(g, x, k, b, y, NULL, NULL, work);
        return;
    }
    gcall c = {.g = g, .op = G_CONV_FWD, .in = x, .k = k, .bias = b, .out = y, .work = work};
    gemm_run(&c);
}

void conv_backward(const conv_geom *g, const real *x, const real *k, const real *dy, real *dx,
                   real *dk, real *db, real *work) {
    check_xstage(g);
    if (g->route != CONV_GEMM) {
        fast_conv_backward(g, x, k, dy, dx, dk, db, NULL, NULL, NULL, NULL, work);
        return;
    }
    gcall c = {
        .g = g, .op = G_CONV_BWD, .in = x, .k = k, .grad = dy, .out = dx, .dk = dk, .work = work};
    gemm_run(&c);
    sum_bias_all(g->cout, (size_t)g->n * g->ho * g->wo, dy, db);
}

/* ---- transposed convolution (adjoint of g) ---------------------------------------- */

void deconv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                    real *work) {
    check_xstage(g);
    if (g->route != CONV_GEMM) {
        fast_deconv_forward(g, x, k, b, y, NULL, NULL, work);
        return;
    }
    gcall c = {.g = g, .op = G_DECONV_FWD, .in = x, .k = k, .bias = b, .out = y, .work = work};
    gemm_run(&c);
}

void deconv_backward(const conv_geom *g, const real *x, const real *k, const real *dy, real *dx,
                     real *dk, real *db, real *work) {
    check_xstage(g);
    if (g->route != CONV_GEMM) {
        fast_deconv_backward(g, x, k, dy, dx, dk, db, NULL, NULL, NULL, NULL, work);
        return;
    }
    gcall c = {
        .g = g, .op = G_DECONV_BWD, .in = x, .k = k, .grad = dy, .out = dx, .dk = dk, .work = work};
    gemm_run(&c);
    sum_bias_all(g->cin, (size_t)g->n * g->h * g->w, dy, db);
}

/* ---- a block's output stage, fused ------------------------------------------------ */
/* The direct route applies the stage in its unpacking / packing passes; the
 * GEMM route runs the unfused functions one after the other. */

static void stage_forward(int c, int n, int hw, const film_stage *st, const real *z, real *o) {
    if (st->lrelu)
        film_lrelu_forward(c, n, hw, st->alpha, z, st->scale, st->shift, o);
    else
        film_forward(c, n, hw, z, st->scale, st->shift, o);
}

/* dout (w.r.t. the stage output) -> in place, w.r.t. the stage input z */
static void stage_backward(int c, int n, int hw, const film_stage *st, const real *z, real *dout,
                           real *dscale, real *dshift) {
    if (st->lrelu)
        film_lrelu_backward(c, n, hw, st->alpha, z, st->scale, st->shift, dout, dout, dscale,
                            dshift);
    else
        film_backward(c, n, hw, z, st->scale, dout, dout, dscale, dshift);
}

void conv_film_forward(const conv_geom *g, const real *x, const real *k, const real *b,
                       const film_stage *st, real *z, real *o, real *work) {
    check_xstage(g);
    if (g->route != CONV_GEMM) {
        fast_conv_forward(g, x, k, b, z, st, o, work);
        return;
    }
    conv_forward(g, x, k, b, z, work);
    if (o) stage_forward(g->cout, g->n, g->ho * g->wo, st, z, o);
}

void deconv_film_forward(const conv_geom *g, const real *x, const real *k, const real *b,
                         const film_stage *st, real *z, real *o, real *work) {
    check_xstage(g);
    if (g->route != CONV_GEMM) {
        fast_deconv_forward(g, x, k, b, z, st, o, work);
        return;
    }
    deconv_forward(g, x, k, b, z, work);
    if (o) stage_forward(g->cin, g->n, g->h * g->w, st, z, o);
}

void conv_film_backward(const conv_geom *g, const real *x, const real *k, const film_stage *st,
                        const real *z, real *dout, real *dx, real *dk, real *db, real *dscale,
                        real *dshift, real *work) {
    check_xstage(g);
    if (g->route != CONV_GEMM) {
        fast_conv_backward(g, x, k, dout, dx, dk, db, st, z, dscale, dshift, work);
        return;
    }
    stage_backward(g->cout, g->n, g->ho * g->wo, st, z, dout, dscale, dshift);
    conv_backward(g, x, k, dout, dx, dk, db, work);
}

void deconv_film_backward(const conv_geom *g, const real *x, const real *k, const film_stage *st,
                          const real *z, real *dout, real *dx, real *dk, real *db, real *dscale,
                          real *dshift, real *work) {
    check_xstage(g);
    if (g->route != CONV_GEMM) {
        fast_deconv_backward(g, x, k, dout, dx, dk, db, st, z, dscale, dshift, work);
        return;
    }
    stage_backward(g->cin, g->n, g->h * g->w, st, z, dout, dscale, dshift);
    deconv_backward(g, x, k, dout, dx, dk, db, work);
}

/* ---- dense ------------------------------------------------------------------------ */

/* Threads split the rows of y and dx, and the rows of dw (the outputs). */
typedef struct {
    int n, in, out;
    const real *x, *w, *b, *dy;
    real *y, *dx, *dw, *db, *work;
} dense_call;

/* The forward of a few rows a thread (at most DENSE_T_ROWS) through a
 * large W of at least as many inputs as outputs (an encoder's fc layer) runs
 * as y^T = W x^T, the rows as GEMM's columns, into work, then transposed
 * into y with the bias. OpenBLAS 0.3.21 is slow with few rows as GEMM's M.
 * One thread, SkylakeX kernels, the transpose included: Shapes3D's
 * 1024 -> 256 at 32 rows 173 -> 112 us, CIFAR-10's 4096 -> 256 at 64 rows
 * 995 -> 802 us; Haswell kernels 0.89 and 0.96 of the time. Elsewhere it
 * gains too little in the step or loses (256 -> 1024, the FiLM MLPs' 256 ->
 * C; at 128 rows up to 1.24 times): docs/DESIGN.md, lever 58. */
#define DENSE_T_ROWS 64
#define DENSE_T_WEIGHTS ((size_t)1 << 18) /* reals of W */

/* 8 x 8 tiles, transposed in registers by three rounds of two-vector
 * shuffles (one instruction each with AVX-512, a few with AVX2) */
typedef real r8v __attribute__((vector_size(8 * sizeof(real))));
#ifdef YOTO_DOUBLE
typedef long long i8v __attribute__((vector_size(8 * sizeof(long long))));
#else
typedef int i8v __attribute__((vector_size(8 * sizeof(int))));
#endif
typedef real r8v_u __attribute__((vector_size(8 * sizeof(real)), aligned(sizeof(real)), may_alias));

/* y [m][out] = yt [out][m] transposed, plus b [out] on each row */
YT_SIMD_CLONES
static void transpose_add(int m, int out, const real *yt, const real *b, real *y) {
    int o0 = 0;
    for (; o0 + 8 <= out; o0 += 8) {
        const r8v bv = *(const r8v_u *)(b + o0);
        int i0 = 0;
        for (; i0 + 8 <= m; i0 += 8) {
            r8v r[8], a[8], c[8];
            for (int k = 0; k < 8; k++)
                r[k] = *(const r8v_u *)(yt + (size_t)(o0 + k) * m + i0);
            for (int k = 0; k < 8; k += 2) { /* pairs of rows, element by element */
                a[k] = __builtin_shuffle(r[k], r[k + 1], (i8v){0, 8, 2, 10, 4, 12, 6, 14});
                a[k + 1] = __builtin_shuffle(r[k], r[k + 1], (i8v){1, 9, 3, 11, 5, 13, 7, 15});
            }
            for (int k = 0; k < 8; k += 4) /* then by twos */
                for (int j = 0; j < 2; j++) {
                    r[k + j] =
                        __builtin_shuffle(a[k + j], a[k + j + 2], (i8v){0, 1, 8, 9, 4, 5, 12, 13});
                    r[k + j + 2] = __builtin_shuffle(a[k + j], a[k + j + 2],
                                                     (i8v){2, 3, 10, 11, 6, 7, 14, 15});
                }
            for (int j = 0; j < 4; j++) { /* then by fours: c[j] is column i0 + j */
                c[j] = __builtin_shuffle(r[j], r[j + 4], (i8v){0, 1, 2, 3, 8, 9, 10, 11});
                c[j + 4] = __builtin_shuffle(r[j], r[j + 4], (i8v){4, 5, 6, 7, 12, 13, 14, 15});
            }
            for (int j = 0; j < 8; j++)
                *(r8v_u *)(y + (size_t)(i0 + j) * out + o0) = c[j] + bv;
        }
        for (int i = i0; i < m; i++)
            for (int o = o0; o < o0 + 8; o++)
                y[(size_t)i * out + o] = yt[(size_t)o * m + i] + b[o];
    }
    for (int i = 0; i < m; i++)
        for (int o = o0; o < out; o++)
            y[(size_t)i * out + o] = yt[(size_t)o * m + i] + b[o];
}

static void dense_forward_part(void *ctx, int t, int T) {
    const dense_call *d = ctx;
    const size_t i0 = par_split((size_t)d->n, t, T), i1 = par_split((size_t)d->n, t + 1, T);
    const int m = (int)(i1 - i0), out = d->out;
    real *y = d->y + i0 * out;
    if (d->work && m <= DENSE_T_ROWS && out <= d->in && (size_t)out * d->in >= DENSE_T_WEIGHTS) {
        real *yt = d->work + i0 * out; /* [out][m] */
        gemm(0, 1, out, m, d->in, 1, d->w, d->in, d->x + i0 * d->in, d->in, 0, yt, m);
        transpose_add(m, out, yt, d->b, y);
        return;
    }
    gemm(0, 1, m, out, d->in, 1, d->x + i0 * d->in, d->in, d->w, d->in, 0, y, out);
    for (int i = 0; i < m; i++)
        for (int o = 0; o < out; o++)
            y[(size_t)i * out + o] += d->b[o];
}

void dense_forward(int n, int in, int out, const real *x, const real *w, const real *b, real *y,
                   real *work) {
    dense_call d = {.n = n, .in = in, .out = out, .x = x, .w = w, .b = b, .y = y, .work = work};
    par_run(par_threads((size_t)n * in * out, (size_t)n), dense_forward_part, &d);
}

/* rows i0..i1 of dx (when wanted), and outputs o0..o1: dw rows and db */
static void dense_backward_part(void *ctx, int t, int T) {
    const dense_call *d = ctx;
    const int n = d->n, in = d->in, out = d->out;
    if (d->dx) {
        const size_t i0 = par_split((size_t)n, t, T), i1 = par_split((size_t)n, t + 1, T);
        gemm(0, 0, (int)(i1 - i0), in, out, 1, d->dy + i0 * out, out, d->w, in, 0, d->dx + i0 * in,
             in);
    }
    const size_t o0 = par_split((size_t)out, t, T), o1 = par_split((size_t)out, t + 1, T);
    gemm(1, 0, (int)(o1 - o0), in, n, 1, d->dy + o0, out, d->x, in, 1, d->dw + o0 * in, in);
    for (int i = 0; i < n; i++)
        for (size_t o = o0; o < o1; o++)
            d->db[o] += d->dy[(size_t)i * out + o];
}

void dense_backward(int n, int in, int out, const real *x, const real *w, const real *dy,
                    real *dx, real *dw, real *db) {
    dense_call d = {
        .n = n, .in = in, .out = out, .x = x, .w = w, .dy = dy, .dx = dx, .dw = dw, .db = db};
    par_run(par_threads((size_t)n * in * out, (size_t)YT_MIN(n, out)), dense_backward_part, &d);
}

/* ---- FiLM ------------------------------------------------------------------------- */
/* Vectorised over the pixels of one (channel, sample) plane; the gradient
 * sums go through float lanes over short stretches, then double. */

/* sum-reduction stretch: float lanes add up at most STRETCH / VL terms */
#define STRETCH 256

YT_SIMD_CLONES
static void film_forward_part(size_t c0, size_t c1, int c, int n, int hw, const real *x,
                              const real *scale, const real *shift, real *y) {
    for (int ch = (int)c0; ch < (int)c1; ch++)
        for (int i = 0; i < n; i++) {
            size_t off = ((size_t)ch * n + i) * hw;
            const real a = scale[(size_t)i * c + ch], t = shift[(size_t)i * c + ch];
            const real *xp = x + off;
            real *yp = y + off;
            int p = 0;
            for (; p + VL <= hw; p += VL) vstore(yp + p, vload(xp + p) * a + t);
            for (; p < hw; p++) yp[p] = a * xp[p] + t;
        }
}

YT_SIMD_CLONES
static void film_lrelu_forward_part(size_t c0, size_t c1, int c, int n, int hw, real alpha,
                                    const real *x, const real *scale, const real *shift, real *y) {
    const rvec zero = {0};
    for (int ch = (int)c0; ch < (int)c1; ch++)
        for (int i = 0; i < n; i++) {
            size_t off = ((size_t)ch * n + i) * hw;
            const real a = scale[(size_t)i * c + ch], t = shift[(size_t)i * c + ch];
            const real *xp = x + off;
            real *yp = y + off;
            int p = 0;
            for (; p + VL <= hw; p += VL) {
                rvec v = vload(xp + p) * a + t;
                vstore(yp + p, vselect(v > zero, v, v * alpha));
            }
            for (; p < hw; p++) {
                real v = a * xp[p] + t;
                yp[p] = v > 0 ? v : alpha * v;
            }
        }
}

/* The FiLM backward of one plane, given the gradient g w.r.t. its output
 * (with_lrelu: g = dy * lrelu'(a x + t), FiLM's output recomputed with
 * film_lrelu_forward_part's expressions, so the same bits): ds = sum g x,
 * dt = sum g, dx = a g. */
YT_INLINE void film_plane_backward(int hw, bool with_lrelu, real alpha, const real *xp, real a,
                                   real t, const real *dyp, real *dxp, double *ds, double *dt) {
    const rvec zero = {0};
    double s = 0, sg = 0;
    int p = 0;
    while (p + VL <= hw) {
        rvec sv = {0}, tv = {0};
        for (int end = YT_MIN(hw, p + STRETCH); p + VL <= end; p += VL) {
            const rvec xv = vload(xp + p);
            rvec g = vload(dyp + p);
            if (with_lrelu) g = vselect(xv * a + t > zero, g, g * alpha);
            sv += g * xv;
            tv += g;
            if (dxp) vstore(dxp + p, g * a);
        }
        s += vhsum(sv);
        sg += vhsum(tv);
    }
    for (; p < hw; p++) {
        real g = dyp[p];
        if (with_lrelu && !(a * xp[p] + t > 0)) g = alpha * g;
        s += (double)g * xp[p];
        sg += g;
        if (dxp) dxp[p] = a * g;
    }
    *ds = s;
    *dt = sg;
}

YT_SIMD_CLONES
static void film_backward_part(size_t c0, size_t c1, int c, int n, int hw, const real *x,
                               const real *scale, const real *dy, real *dx, real *dscale,
                               real *dshift) {
    for (int ch = (int)c0; ch < (int)c1; ch++)
        for (int i = 0; i < n; i++) {
            size_t off = ((size_t)ch * n + i) * hw;
            double ds, dt;
            film_plane_backward(hw, false, 0, x + off, scale[(size_t)i * c + ch], 0, dy + off,
                                dx ? dx + off : NULL, &ds, &dt);
            dscale[(size_t)i * c + ch] = (real)ds;
            dshift[(size_t)i * c + ch] = (real)dt;
        }
}

YT_SIMD_CLONES
static void film_lrelu_backward_part(size_t c0, size_t c1, int c, int n, int hw, real alpha,
                                     const real *x, const real *scale, const real *shift,
                                     const real *dy, real *dx, real *dscale, real *dshift) {
    for (int ch = (int)c0; ch < (int)c1; ch++)
        for (int i = 0; i < n; i++) {
            size_t off = ((size_t)ch * n + i) * hw;
            double ds, dt;
            film_plane_backward(hw, true, alpha, x + off, scale[(size_t)i * c + ch],
                                shift[(size_t)i * c + ch], dy + off, dx ? dx + off : NULL, &ds,
                                &dt);
            dscale[(size_t)i * c + ch] = (real)ds;
            dshift[(size_t)i * c + ch] = (real)dt;
        }
}

/* the public FiLM functions: threads split the channels */
enum { FILM_FWD, FILM_LRELU_FWD, FILM_BWD, FILM_LRELU_BWD };
typedef struct {
    int op, c, n, hw;
    real alpha;
    const real *x, *scale, *shift, *dy;
    real *y, *dx, *dscale, *dshift;
} film_call;

static void film_part(void *ctx, int t, int T) {
    const film_call *a = ctx;
    const size_t c0 = par_split((size_t)a->c, t, T), c1 = par_split((size_t)a->c, t + 1, T);
    switch (a->op) {
    case FILM_FWD:
        film_forward_part(c0, c1, a->c, a->n, a->hw, a->x, a->scale, a->shift, a->y);
        break;
    case FILM_LRELU_FWD:
        film_lrelu_forward_part(c0, c1, a->c, a->n, a->hw, a->alpha, a->x, a->scale, a->shift,
                                a->y);
        break;
    case FILM_BWD:
        film_backward_part(c0, c1, a->c, a->n, a->hw, a->x, a->scale, a->dy, a->dx, a->dscale,
                           a->dshift);
        break;
    case FILM_LRELU_BWD:
        film_lrelu_backward_part(c0, c1, a->c, a->n, a->hw, a->alpha, a->x, a->scale, a->shift,
                                 a->dy, a->dx, a->dscale, a->dshift);
        break;
    }
}

static void film_run(const film_call *a) {
    par_run(par_threads((size_t)a->c * a->n * a->hw, (size_t)a->c), film_part, (void *)a);
}

void film_forward(int c, int n, int hw, const real *x, const real *scale, const real *shift,
                  real *y) {
    film_call a = {
        .op = FILM_FWD, .c = c, .n = n, .hw = hw, .x = x, .scale = scale, .shift = shift, .y = y};
    film_run(&a);
}

void film_lrelu_forward(int c, int n, int hw, real alpha, const real *x, const real *scale,
                        const real *shift, real *y) {
    film_call a = {.op = FILM_LRELU_FWD,
                   .c = c,
                   .n = n,
                   .hw = hw,
                   .alpha = alpha,
                   .x = x,
                   .scale = scale,
                   .shift = shift,
                   .y = y};
    film_run(&a);
}

void film_backward(int c, int n, int hw, const real *x, const real *scale, const real *dy, real *dx,
                   real *dscale, real *dshift) {
    film_call a = {.op = FILM_BWD,
                   .c = c,
                   .n = n,
                   .hw = hw,
                   .x = x,
                   .scale = scale,
                   .dy = dy,
                   .dx = dx,
                   .dscale = dscale,
                   .dshift = dshift};
    film_run(&a);
}

void film_lrelu_backward(int c, int n, int hw, real alpha, const real *x, const real *scale,
                         const real *shift, const real *dy, real *dx, real *dscale, real *dshift) {
    film_call a = {.op = FILM_LRELU_BWD,
                   .c = c,
                   .n = n,
                   .hw = hw,
                   .alpha = alpha,
                   .x = x,
                   .scale = scale,
                   .shift = shift,
                   .dy = dy,
                   .dx = dx,
                   .dscale = dscale,
                   .dshift = dshift};
    film_run(&a);
}

/* ---- element-wise ------------------------------------------------------------------ */

YT_SIMD_CLONES
static void lrelu_forward_part(size_t i, size_t n, real alpha, const real *x, real *y) {
    const rvec zero = {0};
    for (; i + VL <= n; i += VL) {
        rvec v = vload(x + i);
        vstore(y + i, vselect(v > zero, v, v * alpha));
    }
    for (; i < n; i++) y[i] = x[i] > 0 ? x[i] : alpha * x[i];
}

YT_SIMD_CLONES
static void lrelu_backward_part(size_t i, size_t n, real alpha, const real *x, const real *dy,
                                real *dx) {
    const rvec zero = {0};
    for (; i + VL <= n; i += VL) {
        rvec g = vload(dy + i);
        vstore(dx + i, vselect(vload(x + i) > zero, g, g * alpha));
    }
    for (; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : alpha * dy[i];
}

/* threads split [0, n) into runs of whole vectors */
typedef struct {
    size_t n;
    real alpha;
    const real *x, *dy;
    real *y; /* forward: y, backward: dx */
} lrelu_call;

static void lrelu_range(const lrelu_call *a, int t, int T, size_t *i0, size_t *i1) {
    const size_t nv = a->n / VL;
    *i0 = par_split(nv, t, T) * VL;
    *i1 = t == T - 1 ? a->n : par_split(nv, t + 1, T) * VL;
}

static void lrelu_fwd_part(void *ctx, int t, int T) {
    const lrelu_call *a = ctx;
    size_t i0, i1;
    lrelu_range(a, t, T, &i0, &i1);
    lrelu_forward_part(i0, i1, a->alpha, a->x, a->y);
}

static void lrelu_bwd_part(void *ctx, int t, int T) {
    const lrelu_call *a = ctx;
    size_t i0, i1;
    lrelu_range(a, t, T, &i0, &i1);
    lrelu_backward_part(i0, i1, a->alpha, a->x, a->dy, a->y);
}

void lrelu_forward(size_t n, real alpha, const real *x, real *y) {
    lrelu_call a = {n, alpha, x, NULL, y};
    par_run(par_threads(n, YT_MAX(n / VL, (size_t)1)), lrelu_fwd_part, &a);
}

void lrelu_backward(size_t n, real alpha, const real *x, const real *dy, real *dx) {
    lrelu_call a = {n, alpha, x, dy, dx};
    par_run(par_threads(n, YT_MAX(n / VL, (size_t)1)), lrelu_bwd_part, &a);
}

real softplus1(real x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

real sigmoid1(real x) {
    if (x >= 0) return 1 / (1 + exp(-x));
    real e = exp(x);
    return e / (1 + e);
}

real sigmoid_xent1(real l, real t) { return (l > 0 ? l : 0) - l * t + log1p(exp(-fabs(l))); }

#ifdef YOTO_DOUBLE
void softplus_forward(size_t n, const real *x, real *y) {
    for (size_t i = 0; i < n; i++) y[i] = softplus1(x[i]);
}

void softplus_backward(size_t n, const real *x, const real *dy, real *dx) {
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * sigmoid1(x[i]);
}
#else
/* the float build: simd.h's vsoftplus and vsigmoid (within 5 and 3 ulp) */
YT_SIMD_CLONES
void softplus_forward(size_t n, const real *x, real *y) {
    size_t i = 0;
    for (; i + VL <= n; i += VL)
        vstore(y + i, vsoftplus(vload(x + i)));
    for (; i < n; i++)
        y[i] = softplus1(x[i]);
}

YT_SIMD_CLONES
void softplus_backward(size_t n, const real *x, const real *dy, real *dx) {
    size_t i = 0;
    for (; i + VL <= n; i += VL)
        vstore(dx + i, vload(dy + i) * vsigmoid(vload(x + i)));
    for (; i < n; i++)
        dx[i] = dy[i] * sigmoid1(x[i]);
}
#endif

/* x * 0 is +-0 for finite x and NaN for an infinity or a NaN: a sum of
 * them is 0 exactly when every x is finite (vectorised, no branches) */
YT_SIMD_CLONES
bool all_finite(size_t n, const real *x) {
    rvec acc = {0};
    size_t i = 0;
    for (; i + VL <= n; i += VL)
        acc += vload(x + i) * 0;
    real s = vhsum(acc);
    for (; i < n; i++)
        s += x[i] * 0;
    return s == 0;
}

/* ---- layout ------------------------------------------------------------------------- */

void chan_to_rows(int c, int n, int hw, const real *chan, real *rows) {
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < n; i++)
            memcpy(rows + ((size_t)i * c + ch) * hw, chan + ((size_t)ch * n + i) * hw,
                   (size_t)hw * sizeof *rows);
}

void rows_to_chan(int c, int n, int hw, const real *rows, real *chan) {
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < n; i++)
            memcpy(chan + ((size_t)ch * n + i) * hw, rows + ((size_t)i * c + ch) * hw,
                   (size_t)hw * sizeof *chan);
}
