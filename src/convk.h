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

/* true when the direct kernels handle g (3x3, stride 1 or 2) */
bool convk_supports(const conv_geom *g);
/* samples per chunk, and the workspace (reals) for g with that chunk */
int convk_chunk(const conv_geom *g);
size_t convk_work_size(const conv_geom *g);

/* The layer functions of layers.h; with a stage (not NULL) the *_film_*
 * ones: the stage applied while unpacking the output (f, o), or its gradient
 * folded into the packing of dy (z, f, dscale, dshift; dy is the gradient
 * w.r.t. the stage's output, left unchanged). */
void convk_conv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                        const film_stage *st, real *f, real *o, real *work);
void convk_conv_backward(const conv_geom *g, const real *x, const real *k, const real *dy, real *dx,
                         real *dk, real *db, const film_stage *st, const real *z, const real *f,
                         real *dscale, real *dshift, real *work);
void convk_deconv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                          const film_stage *st, real *f, real *o, real *work);
void convk_deconv_backward(const conv_geom *g, const real *x, const real *k, const real *dy,
                           real *dx, real *dk, real *db, const film_stage *st, const real *z,
                           const real *f, real *dscale, real *dshift, real *work);

#endif
