/* convb.h — the channel-blocked activation layout and 3x3 convolutions on it
 * (internal to the layers module, like convk.h).
 *
 * The direct kernels of convk.h vectorise over positions, so every layer call
 * copies the [C][N][H][W] activations into grids and back: 21% of Shapes3D's
 * step (docs/DESIGN.md, "What limits each layer now"). Here the vectors run
 * over channels instead, and the activations are read and written where they
 * lie:
 *
 *   a tensor of C channels of n samples of h x w is [nb][n][h][w][VL],
 *   nb = ceil(C / VL) blocks of VL channels; channel c is lane c % VL of
 *   block c / VL; the lanes past C in the last block are zero.
 *
 * Every output pixel of a register tile (JB output blocks x TW pixels) finds
 * the source pixel of each tap through a pointer, one to a block of zeros
 * where the tap falls in the padding, so one kernel serves any stride (1 or
 * 2), TensorFlow SAME padding and size; a multiply-add takes one weight
 * vector and one broadcast channel value. The three computations of convk.c
 * (A: Y = conv(X), B: X = conv^T(Y), C: dK += corr(Y, X)) make the four layer
 * functions; their semantics are layers.h's, on blocked tensors: x, dx on the
 * X side (g->cin channels, h x w), y, z, o, dy on the Y side (g->cout, ho x
 * wo), a deconv's the other way round. Weights and bias are in the model's
 * layout (k [g->cout][g->cin][3][3]); dk, db are accumulated (+=), dx
 * overwritten and may be NULL, dscale and dshift [n][c] overwritten. With a
 * stage (st not NULL) the forward writes z and o = stage(z), and the
 * backward takes dy as the gradient w.r.t. o and CLOBBERS it (it becomes the
 * gradient w.r.t. z). g->threads threads split the samples; a thread count
 * gives the same bits every time.
 */
#ifndef YOTO_CONVB_H
#define YOTO_CONVB_H

#include <stddef.h>

#include "common.h"
#include "convgeom.h"

/* blocks of VL channels for c channels */
int convb_blocks(int c);
/* reals of a blocked tensor */
size_t convb_len(int c, int n, int h, int w);
/* [c][n][hw] <-> blocked (zero lanes past c) */
void convb_from_chan(int c, int n, int hw, const real *x, real *xb);
void convb_to_chan(int c, int n, int hw, const real *xb, real *x);

/* rows [n][c*hw] (flatten order (c, h, w), layers.h chan_to_rows) from a
 * blocked tensor, and back (lanes past c zero) */
void convb_to_rows(int c, int n, int hw, const real *xb, real *rows);
void convb_from_rows(int c, int n, int hw, const real *rows, real *xb);

/* true when these kernels handle g (3x3, stride 1 or 2) */
bool convb_supports(const conv_geom *g);
/* true when they handle g with no lanes to spare: channel counts multiples
 * of the lanes (a model can keep the blocked layout across such layers) */
bool convb_fits(const conv_geom *g);
/* true when they were measured faster than layers.h's route for g and for
 * the shapes around it: the AVX-512 build (16 lanes), every channel count a
 * multiple of the lanes, and maps of at most 16 x 16 (docs/DESIGN.md,
 * "What limits each layer now") */
bool convb_pays(const conv_geom *g);
/* workspace (reals) of the four functions */
size_t convb_work_size(const conv_geom *g);

void convb_conv_forward(const conv_geom *g, const real *x, const real *k, const real *b,
                        const film_stage *st, real *z, real *o, real *work);
void convb_conv_backward(const conv_geom *g, const real *x, const real *k, const film_stage *st,
                         const real *z, real *dy, real *dx, real *dk, real *db, real *dscale,
                         real *dshift, real *work);
void convb_deconv_forward(const conv_geom *g, const real *x, const real *k, const real *b,
                          const film_stage *st, real *z, real *o, real *work);
void convb_deconv_backward(const conv_geom *g, const real *x, const real *k, const film_stage *st,
                           const real *z, real *dy, real *dx, real *dk, real *db, real *dscale,
                           real *dshift, real *work);

#endif
