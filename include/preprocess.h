/* preprocess.h — the image ops of data.preprocess_train / data.preprocess_eval.
 *
 * A pipeline is a list of ops applied in config order to one stored image
 * (uint8, H x W x C, row-major HWC as in the HDF5 file). Internally every op
 * works on `real` HWC values; the stored uint8 pixel v enters as the real
 * number v (0..255), exactly as TF1's pipelines cast to float before their ops.
 *
 *   value_range(a, b)  x -> a + x/255 * (b - a)   (TF's value_range, in_min 0, in_max 255)
 *   resize(n)          bilinear to n x n, TF1 tf.image.resize_images default:
 *                      align_corners=False, half_pixel_centers=False, i.e.
 *                      src = dst * in/out, neighbours floor(src) and
 *                      min(floor(src)+1, in-1), lerp weight src - floor(src)
 *   random_crop(n)     an n x n window at offsets uniform in [0, h-n] x [0, w-n]
 *   flip_lr()          mirror left-right with probability 1/2
 *   pad(n)             centred zero padding to n x n (top/left get (n-h)/2,
 *                      rounded down). The zeros are written in the value domain
 *                      of that point of the pipeline: before value_range(a, b)
 *                      they are black pixels (0, later a); after it, literal 0.
 *                      Fashion-MNIST 28 -> 32 uses pad(32) before value_range.
 *
 * Randomness: op k of the pipeline draws from the Philox stream
 * (seed, RNG_AUGMENT, epoch, row, k) where row is the image's row index in
 * its split, so an augmentation depends on nothing but (seed, epoch, row):
 * not on the rank, the batch or the read mode.
 *
 * Output: the preprocessed image goes channel-major into a batch:
 * out[ch * cstride + y * ow + x], cstride = N * oh * ow for [C][N][H][W].
 */
#ifndef YOTO_PREPROCESS_H
#define YOTO_PREPROCESS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "config.h"

/* A pipeline bound to one input shape, with its scratch buffers. One plan
 * serves one thread. */
typedef struct {
    cfg_pipeline pipe;
    int h, w, c; /* input (stored) shape */
    int oh, ow;  /* output shape; channels stay c */
    /* The pipeline's tail of random_crop / flip_lr / value_range ops is
     * applied in one gather into the output (crops and flips compose into
     * one window and direction, value_ranges into one affine map A x + B);
     * only the ops before it (resize, pad, ...) run on scratch images. */
    int tail;      /* index of the first op of the tail */
    double A, B;   /* the tail's value_ranges composed */
    real lut[256]; /* A v + B for uint8 v (no ops before the tail) */
    size_t cap;    /* elements of each scratch buffer */
    real *buf[2];  /* HWC scratch, ping-pong */
} preprocess_plan;

/* Output height/width of pipe on h x w input. On an op that cannot apply
 * (crop larger than the image, pad smaller, size < 1) returns YT_ERR_USAGE
 * with a message that starts with `what` (e.g. "data.preprocess_train"). */
int preprocess_out_shape(const cfg_pipeline *pipe, int h, int w, const char *what, int *oh,
                         int *ow);
/* Binds pipe to an h x w x c input (checks as preprocess_out_shape). */
int preprocess_plan_init(preprocess_plan *p, const cfg_pipeline *pipe, int h, int w, int c,
                         const char *what);
void preprocess_plan_free(preprocess_plan *p);
/* One image: in = uint8 [h][w][c]; writes out[ch * cstride + y * ow + x]. */
void preprocess_image(preprocess_plan *p, const uint8_t *in, uint64_t seed, uint32_t epoch,
                      uint32_t row, real *out, size_t cstride);

/* Parses "value_range(0,1), resize(40), random_crop(32), flip_lr(), pad(32)"
 * (ops separated by commas or semicolons, spaces ignored). YT_ERR_USAGE with
 * a message naming the bad op. */
int preprocess_parse(const char *text, cfg_pipeline *out);
/* The pipeline as text in the same syntax ("" for none). */
void preprocess_text(const cfg_pipeline *pipe, char *buf, size_t size);

/* ---- the kernels, on real HWC images (exposed for tests) ----------------- */
void preprocess_value_range(real *x, size_t n, double a, double b);
void preprocess_resize(const real *in, int h, int w, int c, real *out, int oh, int ow);
void preprocess_crop(const real *in, int h, int w, int c, int y0, int x0, real *out, int oh,
                     int ow);
void preprocess_flip_lr(real *x, int h, int w, int c);
void preprocess_pad(const real *in, int h, int w, int c, real *out, int oh, int ow);

#endif
