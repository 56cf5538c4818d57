/* layers.h — the model's layers: forward and backward over raw arrays.
 *
 * Layout: a conv activation is channel-major across the batch, [C][N][H][W]
 * (C slowest), so a conv over the whole batch is im2col + one GEMM and its
 * output is the next layer's input without transposes. Dense activations are
 * [N][F] (one row per sample). FiLM scales and shifts are [N][C].
 *
 * Conventions of every backward: gradients of parameters (dk, db, dw) are
 * ACCUMULATED (+=), so one zeroed gradient arena collects a whole step;
 * gradients of inputs (dx) are OVERWRITTEN, and may be NULL when not needed.
 */
#ifndef YOTO_LAYERS_H
#define YOTO_LAYERS_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"
#include "convgeom.h"

/* ---- 3x3 convolution, TensorFlow 'SAME' padding ----------------------------
 * conv_geom (convgeom.h) describes one convolution, or the transposed conv
 * that is its adjoint. */

/* Picks the fastest route for the shape (g.route, a conv_route) and the
 * current thread count (blas_set_threads; g.threads); conv_geom_route
 * overrides the route (tests compare them), returning false (and taking the
 * GEMM route) when that route does not handle g. */
conv_geom conv_geom_make(int n, int cin, int h, int w, int cout, int stride);
bool conv_geom_route(conv_geom *g, int route);
/* Workspace (reals) conv_* / deconv_* need for g (and its route). */
size_t conv_work_size(const conv_geom *g);
/* Multiply-adds of one forward pass (all samples). */
double conv_macs(const conv_geom *g);

/* y [cout][n][ho][wo] = conv(x [cin][n][h][w], k [cout][cin][3][3]) + b [cout] */
void conv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                  real *work);
/* dx [cin][n][h][w] (may be NULL), dk += [cout][cin][3][3], db += [cout] */
void conv_backward(const conv_geom *g, const real *x, const real *k, const real *dy, real *dx,
                   real *dk, real *db, real *work);

/* Transposed conv (adjoint of g): x [g.cout][n][g.ho][g.wo] ->
 * y [g.cin][n][g.h][g.w]; k [g.cout][g.cin][3][3]; b [g.cin]. */
void deconv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                    real *work);
/* dx [g.cout][n][g.ho][g.wo] (may be NULL), dk += k's shape, db += [g.cin] */
void deconv_backward(const conv_geom *g, const real *x, const real *k, const real *dy, real *dx,
                     real *dk, real *db, real *work);

/* ---- a block's output stage, fused into its last conv ---------------------
 * film_stage (convgeom.h): FiLM and maybe a leaky ReLU, applied to the
 * layer's output while it is still in cache. */

/* z = conv(x) + b (conv_forward), o = lrelu(FiLM(z)) (with st->lrelu;
 * FiLM(z) without; o NULL: not written, for a consumer that applies the
 * stage itself, conv_geom.xstage). FiLM's own output is not kept: the
 * backward recomputes it from z for the leaky ReLU's slope (the same
 * expression, so the same bits). */
void conv_film_forward(const conv_geom *g, const real *x, const real *k, const real *b,
                       const film_stage *st, real *z, real *o, real *work);
void deconv_film_forward(const conv_geom *g, const real *x, const real *k, const real *b,
                         const film_stage *st, real *z, real *o, real *work);
/* Backward of *_film_forward from dout, the gradient w.r.t. o, which is
 * CLOBBERED (scratch); z from the forward. dscale and dshift [n][c]
 * OVERWRITTEN (as film_backward); dx, dk, db as conv_backward /
 * deconv_backward. */
void conv_film_backward(const conv_geom *g, const real *x, const real *k, const film_stage *st,
                        const real *z, real *dout, real *dx, real *dk, real *db, real *dscale,
                        real *dshift, real *work);
void deconv_film_backward(const conv_geom *g, const real *x, const real *k, const film_stage *st,
                          const real *z, real *dout, real *dx, real *dk, real *db, real *dscale,
                          real *dshift, real *work);

/* ---- dense: y [n][out] = x [n][in] W^T + b, W [out][in] --------------------- */
/* work: n * out reals of scratch, or NULL (slower at a few rows a thread) */
void dense_forward(int n, int in, int out, const real *x, const real *w, const real *b, real *y,
                   real *work);
/* dx [n][in] (may be NULL), dw += [out][in], db += [out] */
void dense_backward(int n, int in, int out, const real *x, const real *w, const real *dy,
                    real *dx, real *dw, real *db);

/* ---- FiLM: y[c][i][p] = scale[i][c] * x[c][i][p] + shift[i][c] ------------
 * c < C channels, i < n samples, p < hw pixels. */
void film_forward(int c, int n, int hw, const real *x, const real *scale, const real *shift,
                  real *y);
/* dx (may be NULL, may alias dy), dscale and dshift [n][c] OVERWRITTEN (they
 * are activations: the FiLM MLPs' output gradients), not accumulated. */
void film_backward(int c, int n, int hw, const real *x, const real *scale, const real *dy,
                   real *dx, real *dscale, real *dshift);

/* FiLM then leaky ReLU, in one pass (a block's output): y = lrelu(FiLM(x))
 * with slope alpha (FiLM as film_forward). */
void film_lrelu_forward(int c, int n, int hw, real alpha, const real *x, const real *scale,
                        const real *shift, real *y);
/* The backward of film_lrelu_forward, in one pass, from its x and FiLM
 * parameters (FiLM's output recomputed for the slope): dx (may be NULL, may
 * alias dy), dscale and dshift [n][c] OVERWRITTEN as in film_backward. */
void film_lrelu_backward(int c, int n, int hw, real alpha, const real *x, const real *scale,
                         const real *shift, const real *dy, real *dx, real *dscale, real *dshift);

/* ---- element-wise ---------------------------------------------------------- */
/* y = x > 0 ? x : alpha x (any alpha); y may alias x */
void lrelu_forward(size_t n, real alpha, const real *x, real *y);
/* dx = dy * (x > 0 ? 1 : alpha); dx may alias dy */
void lrelu_backward(size_t n, real alpha, const real *x, const real *dy, real *dx);
/* y = log(1 + e^x), stable for any x; y may alias x */
void softplus_forward(size_t n, const real *x, real *y);
/* dx = dy * sigmoid(x); dx may alias dy */
void softplus_backward(size_t n, const real *x, const real *dy, real *dx);
real softplus1(real x);
real sigmoid1(real x);
/* Sigmoid cross-entropy with logits, element-wise: softplus(l) - t l, computed
 * as max(l, 0) - l t + log1p(e^-|l|); its derivative in l is sigmoid(l) - t. */
real sigmoid_xent1(real logit, real target);

/* true when x[0, n) holds no NaN and no infinity */
bool all_finite(size_t n, const real *x);

/* ---- layout changes between conv and dense activations --------------------- */
/* rows [n][c*hw] (flatten order (c, h, w)) from chan [c][n][hw], and back */
void chan_to_rows(int c, int n, int hw, const real *chan, real *rows);
void rows_to_chan(int c, int n, int hw, const real *rows, real *chan);

#endif
