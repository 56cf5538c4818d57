/* convk.h — direct 3x3 convolution kernels (internal to the layers module).
 *
 * The im2col + GEMM route (layers.c) spends most of its time moving a column
 * buffer 9x the size of the image through memory, and its GEMMs are thin
 * when a layer has few channels (the Shapes3D decoder's output conv is a GEMM
 * with M = 3). These kernels compute the same convolutions directly, with
 * the FMAs blocked in registers, on a "grid" copy of a chunk of samples that
 * stays in L2:
 *
 *   - every channel of the chunk is one flat array; sample s, row r, column c
 *     is at s*qs + r*wq + c, with wq (row pitch) and qs (sample pitch) a
 *     little larger than the image, the extra rows and columns zero;
 *   - stride 1: the image plus its SAME padding, so each of the 9 taps of a
 *     3x3 conv is one fixed offset in that array, and an output position is
 *     the same flat index: conv = sum over taps of shifted vectors;
 *   - stride 2: the padded image split into its 4 (row, column) parities, so
 *     again every tap is one plane and one fixed offset; the transposed conv
 *     computes its 4 output parities separately (4, 2, 2 and 1 taps) and
 *     interleaves them.
 * Outputs in the padding rows and columns are computed and thrown away.
 *
 * Geometry (conv_geom, film_stage: convgeom.h) and semantics are those of
 * layers.h's four conv/deconv functions; layers.c decides which route runs.
 * Internal: only layers.c includes this header (it lives in src/, not include/).
 */
#ifndef YOTO_CONVK_H
#define YOTO_CONVK_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"
#include "convgeom.h"
#include "simd.h"

/* true when the direct kernels handle g (3x3, stride 1 or 2) */
bool convk_supports(const conv_geom *g);
/* samples per chunk, and the workspace (reals) for g with that chunk */
int convk_chunk(const conv_geom *g);
size_t convk_work_size(const conv_geom *g);

/* The layer functions of layers.h; with a stage (not NULL) the *_film_*
 * ones: the stage applied while unpacking the output (into o), or its
 * gradient folded into the packing of dy (z from the forward, dscale,
 * dshift; dy is the gradient w.r.t. the stage's output, left unchanged). */
void convk_conv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                        const film_stage *st, real *o, real *work);
void convk_conv_backward(const conv_geom *g, const real *x, const real *k, const real *dy, real *dx,
                         real *dk, real *db, const film_stage *st, const real *z, real *dscale,
                         real *dshift, real *work);
void convk_deconv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                          const film_stage *st, real *o, real *work);
void convk_deconv_backward(const conv_geom *g, const real *x, const real *k, const real *dy,
                           real *dx, real *dk, real *db, const film_stage *st, const real *z,
                           real *dscale, real *dshift, real *work);

/* ---- Winograd F(2x2, 3x3) for stride 1 (convw.c) ---------------------------------
 * Same four operations and semantics as above, for stride-1 geometries:
 * tiles of 2x2 outputs from 4x4 inputs, 16 products per tile and channel
 * pair instead of 36 multiply-adds; vectorised over VL samples at a time
 * (sample-minor copies of a band of rows), so that any image size, down to
 * 1x1, wastes no lanes. g->threads threads split the samples. */
bool convw_supports(const conv_geom *g);
size_t convw_work_size(const conv_geom *g);
void convw_conv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                        const film_stage *st, real *o, real *work);
void convw_conv_backward(const conv_geom *g, const real *x, const real *k, const real *dy, real *dx,
                         real *dk, real *db, const film_stage *st, const real *z, real *dscale,
                         real *dshift, real *work);
void convw_deconv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                          const film_stage *st, real *o, real *work);
void convw_deconv_backward(const conv_geom *g, const real *x, const real *k, const real *dy,
                           real *dx, real *dk, real *db, const film_stage *st, const real *z,
                           real *dscale, real *dshift, real *work);

/* ---- convk.c's register-blocked kernels as small GEMMs (for convw.c) --------------
 * out[o][q] = sum_i w[i][o] in[i][q], o < nout, i < nin, for q in [0, Q)
 * rounded up to 8 VL (rows of out must have room for that); w packed by
 * convk_gemm_pack from u[o*uo + i*ui]; returns the end of the packed block. */
real *convk_gemm_pack(int nout, int nin, const real *u, size_t uo, size_t ui, real *dst);
void convk_gemm(int nout, int nin, const real *w, const real *in, size_t in_cs, real *out,
                size_t out_cs, size_t Q);
/* acc[(c*nx + i)*astr] (vectors) += lanes of sum_q gy[c][q] px[i][q], c < ny,
 * i < nx, q < Q (a multiple of VL) */
void convk_gemm_grad(int ny, int nx, const real *gy, size_t gy_cs, const real *px, size_t px_cs,
                     size_t Q, rvec *acc, size_t astr);

/* ---- a block's output stage on one row (shared by the direct routes) -------------- */

/* forward, one vector: lrelu(a z + t) (without lrelu, a z + t) */
YT_INLINE rvec stage_fwd_vec(const film_stage *st, real a, real t, rvec z) {
    const rvec zero = {0}, v = z * a + t;
    return st->lrelu ? vselect(v > zero, v, v * st->alpha) : v;
}

/* backward, one vector of the incoming gradient d at z: g = d * lrelu'(a z + t)
 * (d without lrelu); *sv += g z, *tv += g (float lanes); returns a g. FiLM's
 * output a z + t is recomputed from z with stage_fwd_vec's own expression
 * (the same bits), so the backward reads neither it nor o. */
YT_INLINE rvec stage_bwd_vec(const film_stage *st, real a, real t, rvec d, rvec z, rvec *sv,
                             rvec *tv) {
    const rvec zero = {0};
    if (st->lrelu) d = vselect(z * a + t > zero, d, d * st->alpha);
    *sv += d * z;
    *tv += d;
    return d * a;
}

/* forward, one row: o = stage_fwd_vec(z), the tail alike in scalars */
YT_INLINE void stage_fwd_row(const film_stage *st, real a, real t, const real *z, real *o, int n) {
    int p = 0;
    for (; p + VL <= n; p += VL)
        vstore(o + p, stage_fwd_vec(st, a, t, vload(z + p)));
    for (; p < n; p++) {
        real v = a * z[p] + t;
        o[p] = !st->lrelu || v > 0 ? v : st->alpha * v;
    }
}

/* backward, one row: out = stage_bwd_vec(d, z); *ds += sum g z, *dt += sum g
 * (float lanes over the row's vectors, then double, the tail in double) */
YT_INLINE void stage_bwd_row(const film_stage *st, real a, real t, const real *d, const real *z,
                             real *out, int n, double *ds, double *dt) {
    rvec sv = {0}, tv = {0};
    int p = 0;
    for (; p + VL <= n; p += VL)
        vstore(out + p, stage_bwd_vec(st, a, t, vload(d + p), vload(z + p), &sv, &tv));
    double s = vhsum(sv), sg = vhsum(tv);
    for (; p < n; p++) {
        real g = d[p];
        if (st->lrelu && !(a * z[p] + t > 0)) g = st->alpha * g;
        s += (double)g * z[p];
        sg += g;
        out[p] = a * g;
    }
    *ds += s;
    *dt += sg;
}

#endif
