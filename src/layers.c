/* layers.c — forward and backward of every layer (see layers.h).
 *
 * Convolutions are im2col + GEMM over chunks of samples: the column buffer of
 * a chunk, [cin*9][chunk*ho*wo], is bounded by CONV_WORK_TARGET reals, and the
 * GEMM writes straight into the [C][N][H][W] activation with ldc = n*ho*wo.
 */
#include "layers.h"

#include "blas.h"

#include <string.h>
#include <tgmath.h>

/* column buffer of one chunk, in reals (8 MB in float) */
#define CONV_WORK_TARGET ((size_t)1 << 21)

/* ---- geometry ---------------------------------------------------------------- */

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
    return g;
}

size_t conv_work_size(const conv_geom *g) {
    return (size_t)g->cin * 9 * (size_t)g->chunk * (size_t)g->ho * (size_t)g->wo;
}

double conv_macs(const conv_geom *g) {
    return (double)g->n * g->ho * g->wo * g->cout * g->cin * 9.0;
}

/* Output columns ow whose input column ow*s + kw - pad lies in [0, w). */
static void valid_range(int out, int in, int s, int k, int pad, int *lo, int *hi) {
    int a = pad - k; /* need ow*s >= a */
    *lo = a <= 0 ? 0 : (a + s - 1) / s;
    int b = in - 1 + pad - k; /* need ow*s <= b */
    *hi = b < 0 ? 0 : YT_MIN(out, b / s + 1);
    if (*hi < *lo) *hi = *lo;
}

/* col [cin*9][nc][ho][wo] from samples n0..n0+nc of x [cin][n][h][w] */
static void im2col(const conv_geom *g, const real *x, int n0, int nc, real *col) {
    const size_t hw = (size_t)g->h * g->w, ohw = (size_t)g->ho * g->wo;
    const int s = g->stride;
    for (int ci = 0; ci < g->cin; ci++)
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                real *dst = col + ((size_t)(ci * 3 + kh) * 3 + kw) * nc * ohw;
                int lo, hi;
                valid_range(g->wo, g->w, s, kw, g->pad_left, &lo, &hi);
                for (int i = 0; i < nc; i++) {
                    const real *src = x + ((size_t)ci * g->n + n0 + i) * hw;
                    for (int oh = 0; oh < g->ho; oh++, dst += g->wo) {
                        int ih = oh * s + kh - g->pad_top;
                        if (ih < 0 || ih >= g->h) {
                            memset(dst, 0, (size_t)g->wo * sizeof *dst);
                            continue;
                        }
                        const real *row = src + (size_t)ih * g->w + kw - g->pad_left;
                        for (int ow = 0; ow < lo; ow++) dst[ow] = 0;
                        if (s == 1)
                            memcpy(dst + lo, row + lo, (size_t)(hi - lo) * sizeof *dst);
                        else
                            for (int ow = lo; ow < hi; ow++) dst[ow] = row[ow * s];
                        for (int ow = hi; ow < g->wo; ow++) dst[ow] = 0;
                    }
                }
            }
}

/* x [cin][n][h][w] samples n0..n0+nc += col2im(col); the adjoint of im2col */
static void col2im_add(const conv_geom *g, const real *col, int n0, int nc, real *x) {
    const size_t hw = (size_t)g->h * g->w, ohw = (size_t)g->ho * g->wo;
    const int s = g->stride;
    for (int ci = 0; ci < g->cin; ci++)
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                const real *src = col + ((size_t)(ci * 3 + kh) * 3 + kw) * nc * ohw;
                int lo, hi;
                valid_range(g->wo, g->w, s, kw, g->pad_left, &lo, &hi);
                for (int i = 0; i < nc; i++) {
                    real *dst = x + ((size_t)ci * g->n + n0 + i) * hw;
                    for (int oh = 0; oh < g->ho; oh++, src += g->wo) {
                        int ih = oh * s + kh - g->pad_top;
                        if (ih < 0 || ih >= g->h) continue;
                        real *row = dst + (size_t)ih * g->w + kw - g->pad_left;
                        if (s == 1)
                            for (int ow = lo; ow < hi; ow++) row[ow] += src[ow];
                        else
                            for (int ow = lo; ow < hi; ow++) row[ow * s] += src[ow];
                    }
                }
            }
}

/* y[c][i][...] += b[c] over c channels, n samples of hw pixels */
static void add_bias(int c, size_t nhw, const real *b, real *y) {
    for (int ch = 0; ch < c; ch++) {
        real *p = y + (size_t)ch * nhw, v = b[ch];
        for (size_t j = 0; j < nhw; j++) p[j] += v;
    }
}

/* db[c] += sum over the n*hw entries of channel c of dy */
static void sum_bias(int c, size_t nhw, const real *dy, real *db) {
    for (int ch = 0; ch < c; ch++) {
        const real *p = dy + (size_t)ch * nhw;
        double acc = 0;
        for (size_t j = 0; j < nhw; j++) acc += p[j];
        db[ch] += (real)acc;
    }
}

/* zero samples n0..n0+nc of every channel of x [c][n][hw] */
static void zero_samples(int c, int n, size_t hw, int n0, int nc, real *x) {
    for (int ch = 0; ch < c; ch++)
        memset(x + ((size_t)ch * n + n0) * hw, 0, (size_t)nc * hw * sizeof *x);
}

/* ---- convolution ---------------------------------------------------------------- */

void conv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                  real *work) {
    const int K = g->cin * 9, ohw = g->ho * g->wo, ld = g->n * ohw;
    for (int n0 = 0; n0 < g->n; n0 += g->chunk) {
        int nc = YT_MIN(g->chunk, g->n - n0);
        im2col(g, x, n0, nc, work);
        gemm(0, 0, g->cout, nc * ohw, K, 1, k, K, work, nc * ohw, 0, y + (size_t)n0 * ohw, ld);
    }
    add_bias(g->cout, (size_t)ld, b, y);
}

void conv_backward(const conv_geom *g, const real *x, const real *k, const real *dy, real *dx,
                   real *dk, real *db, real *work) {
    const int K = g->cin * 9, ohw = g->ho * g->wo, ld = g->n * ohw;
    const size_t hw = (size_t)g->h * g->w;
    for (int n0 = 0; n0 < g->n; n0 += g->chunk) {
        int nc = YT_MIN(g->chunk, g->n - n0);
        const real *dyc = dy + (size_t)n0 * ohw;
        im2col(g, x, n0, nc, work);
        gemm(0, 1, g->cout, K, nc * ohw, 1, dyc, ld, work, nc * ohw, 1, dk, K);
        if (dx) {
            gemm(1, 0, K, nc * ohw, g->cout, 1, k, K, dyc, ld, 0, work, nc * ohw);
            zero_samples(g->cin, g->n, hw, n0, nc, dx);
            col2im_add(g, work, n0, nc, dx);
        }
    }
    sum_bias(g->cout, (size_t)ld, dy, db);
}

/* ---- transposed convolution (adjoint of g) ---------------------------------------- */

void deconv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                    real *work) {
    const int K = g->cin * 9, ohw = g->ho * g->wo, ld = g->n * ohw;
    const size_t hw = (size_t)g->h * g->w;
    for (int n0 = 0; n0 < g->n; n0 += g->chunk) {
        int nc = YT_MIN(g->chunk, g->n - n0);
        gemm(1, 0, K, nc * ohw, g->cout, 1, k, K, x + (size_t)n0 * ohw, ld, 0, work, nc * ohw);
        zero_samples(g->cin, g->n, hw, n0, nc, y);
        col2im_add(g, work, n0, nc, y);
    }
    add_bias(g->cin, (size_t)g->n * hw, b, y);
}

void deconv_backward(const conv_geom *g, const real *x, const real *k, const real *dy, real *dx,
                     real *dk, real *db, real *work) {
    const int K = g->cin * 9, ohw = g->ho * g->wo, ld = g->n * ohw;
    for (int n0 = 0; n0 < g->n; n0 += g->chunk) {
        int nc = YT_MIN(g->chunk, g->n - n0);
        im2col(g, dy, n0, nc, work);
        gemm(0, 1, g->cout, K, nc * ohw, 1, x + (size_t)n0 * ohw, ld, work, nc * ohw, 1, dk, K);
        if (dx) gemm(0, 0, g->cout, nc * ohw, K, 1, k, K, work, nc * ohw, 0, dx + (size_t)n0 * ohw, ld);
    }
    sum_bias(g->cin, (size_t)g->n * g->h * g->w, dy, db);
}

/* ---- dense ------------------------------------------------------------------------ */

void dense_forward(int n, int in, int out, const real *x, const real *w, const real *b, real *y) {
    gemm(0, 1, n, out, in, 1, x, in, w, in, 0, y, out);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) y[(size_t)i * out + o] += b[o];
}

void dense_backward(int n, int in, int out, const real *x, const real *w, const real *dy,
                    real *dx, real *dw, real *db) {
    if (dx) gemm(0, 0, n, in, out, 1, dy, out, w, in, 0, dx, in);
    gemm(1, 0, out, in, n, 1, dy, out, x, in, 1, dw, in);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) db[o] += dy[(size_t)i * out + o];
}

/* ---- FiLM ------------------------------------------------------------------------- */

void film_forward(int c, int n, int hw, const real *x, const real *scale, const real *shift,
                  real *y) {
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < n; i++) {
            size_t off = ((size_t)ch * n + i) * hw;
            real a = scale[(size_t)i * c + ch], t = shift[(size_t)i * c + ch];
            for (int p = 0; p < hw; p++) y[off + p] = a * x[off + p] + t;
        }
}

void film_backward(int c, int n, int hw, const real *x, const real *scale, const real *dy,
                   real *dx, real *dscale, real *dshift) {
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < n; i++) {
            size_t off = ((size_t)ch * n + i) * hw;
            real a = scale[(size_t)i * c + ch];
            double ds = 0, dt = 0;
            for (int p = 0; p < hw; p++) {
                ds += dy[off + p] * x[off + p];
                dt += dy[off + p];
            }
            dscale[(size_t)i * c + ch] = (real)ds;
            dshift[(size_t)i * c + ch] = (real)dt;
            if (dx)
                for (int p = 0; p < hw; p++) dx[off + p] = a * dy[off + p];
        }
}

/* ---- element-wise ------------------------------------------------------------------ */

void lrelu_forward(size_t n, real alpha, const real *x, real *y) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : alpha * x[i];
}

void lrelu_backward(size_t n, real alpha, const real *x, const real *dy, real *dx) {
    for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : alpha * dy[i];
}

real softplus1(real x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

real sigmoid1(real x) {
    if (x >= 0) return 1 / (1 + exp(-x));
    real e = exp(x);
    return e / (1 + e);
}

real sigmoid_xent1(real l, real t) { return (l > 0 ? l : 0) - l * t + log1p(exp(-fabs(l))); }

void softplus_forward(size_t n, const real *x, real *y) {
    for (size_t i = 0; i < n; i++) y[i] = softplus1(x[i]);
}

void softplus_backward(size_t n, const real *x, const real *dy, real *dx) {
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * sigmoid1(x[i]);
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
