/* gallery.h — `yoto sample` and `yoto reconstruct`: image grids across beta,
 * written as PNG (libpng).
 *
 * sample: N prior draws z ~ N(0, I), the SAME z in every row, decoded with
 * the model conditioned on (w_kl = beta, w_rec = eval.w_rec), one row per
 * beta. reconstruct: N images of a split in the first row, their
 * reconstructions (z = posterior mean) at each beta below. Each row is
 * labelled with its beta, drawn in a left margin and listed in the PNG's
 * text chunks; pixels show the decoder's mean (sigmoid of the Bernoulli
 * logits, or the Gaussian mean), mapped back through the value_range of the
 * eval preprocessing.
 */
#ifndef YOTO_GALLERY_H
#define YOTO_GALLERY_H

#include <stdbool.h>

typedef struct {
    const char *target; /* RUN_DIR or checkpoint */
    const char *betas;  /* "0.5,8,128"; NULL = the config's eval.betas */
    int n;              /* images per row */
    const char *out;    /* FILE.png */
    const char *split;  /* reconstruct: the split to take images from (NULL = "test" when
                         * the config has one, else the first eval split) */
    int scale;          /* pixels per image pixel; 0 = the smallest making images >= 96 px */
    long seed;          /* sample: which z are drawn, when seed_set (else experiment.seed) */
    bool seed_set;
    const char *const *sets;
    int nsets;
} gallery_args;

/* Collective (every rank loads the model; rank 0 renders and writes). */
int gallery_sample(const gallery_args *a);
int gallery_reconstruct(const gallery_args *a);

#define GALLERY_MIN_TILE_PX 96 /* the default scale makes images at least this tall */
#define GALLERY_MAX_SCALE 32

/* Writes an 8-bit grey (channels 1) or RGB (3) image with text chunks
 * (keys[i], values[i]); YT_ERR_RUNTIME naming the file on failure. */
int gallery_write_png(const char *path, const unsigned char *pixels, int width, int height,
                      int channels, const char *const *keys, const char *const *values, int ntext);

#endif
