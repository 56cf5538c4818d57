/* convgeom.h — the types a 3x3 conv layer is described by, shared by the
 * layers module (layers.h, its public face) and its direct kernels (convk.h,
 * internal to src/): the convolution's geometry, and the FiLM + leaky ReLU
 * stage fused into a block's last conv. Types only; the functions that make
 * and use them are in layers.h.
 */
#ifndef YOTO_CONVGEOM_H
#define YOTO_CONVGEOM_H

#include <stdbool.h>

#include "common.h"

/* ---- a block's output stage, fused into its last conv ---------------------
 * A conv block ends with FiLM and (but for the encoder's last block) a leaky
 * ReLU. The *_film_* functions of layers.h apply that stage to the layer's
 * output while it is still in cache, and in the backward fold the stage's
 * gradient into the first read of the incoming gradient: two passes less
 * over the activation than the layer plus film_lrelu_forward /
 * film_lrelu_backward, with the same results (up to float rounding). */
typedef struct {
    const real *scale, *shift; /* [n][c], c = the layer's output channels */
    bool lrelu;                /* leaky ReLU after FiLM */
    real alpha;                /* its slope */
} film_stage;

/* ---- 3x3 convolution, TensorFlow 'SAME' padding ----------------------------
 * A conv_geom describes one convolution from an image [cin][n][h][w] to
 * features [cout][n][ho][wo], ho = ceil(h / stride). SAME padding: total
 * max((ho-1)*stride + 3 - h, 0), the smaller half before: stride 1 pads 1/1,
 * stride 2 on an even size pads 0 before and 1 after.
 *
 * A transposed conv is the exact adjoint of such a convolution: for a deconv
 * layer from [din][n][h][w] to [dout][n][h*s][w*s], use
 *     g = conv_geom_make(n, dout, h*s, w*s, din, s)
 * (the conv that maps the deconv's output space back to its input space); its
 * kernel [din][dout][3][3] is PyTorch's ConvTranspose2d layout. */
/* How a conv is computed (layers.c picks the fastest for the shape). */
typedef enum {
    CONV_GEMM = 0,     /* im2col + GEMM over chunks of samples */
    CONV_DIRECT = 1,   /* direct 3x3 kernels (src/convk.h) */
    CONV_WINOGRAD = 2, /* Winograd F(2x2, 3x3), stride 1 only (src/convk.h) */
} conv_route;

typedef struct {
    int n;            /* batch */
    int cin, h, w;    /* image side */
    int cout, ho, wo; /* feature side */
    int stride;
    int pad_top, pad_left;
    int chunk;   /* samples per im2col chunk (bounds the workspace) */
    int route;   /* a conv_route */
    int threads; /* threads that split the samples (the workspace holds one part each) */
    /* NULL, or the stage of the block before (the direct route only): the x
     * a call is given (the image side of a conv, the feature side of a
     * deconv: the layer's input) is that block's z, and the layer reads the
     * stage's output, computed from it as the kernels pack their input (the
     * same bits as the stage writing o), so the block before need not write
     * o at all (model.c, "lazy") */
    const film_stage *xstage;
} conv_geom;

#endif
