/* prepare.h — converters to yoto's data layout, and `yoto data-info`.
 *
 * Every converter writes one HDF5 file (docs/DATA.md):
 *   fashion-mnist, mnist  /train/images uint8 [60000, 28, 28, 1], /train/labels uint8 [60000],
 *                         /test/images  uint8 [10000, 28, 28, 1], /test/labels  uint8 [10000]
 *   cifar10               /train/images uint8 [50000, 32, 32, 3] (HWC), /train/labels uint8,
 *                         /test/images  uint8 [10000, 32, 32, 3],       /test/labels  uint8
 *   shapes                /images uint8 [N, 64, 64, 3], /labels float64 [N, 6] — the layout
 *                         and factor order of DeepMind's 3dshapes.h5
 * Root attributes: format = "yoto-dataset", format_version = 1, source, created_by.
 * IDX and CIFAR images are chunked by about 256 KiB of rows and
 * deflate-compressed (level 4); shapes images are contiguous and
 * uncompressed like 3dshapes.h5 (what the streaming reader reads fastest:
 * pread at the dataset's offset). `contiguous` and `deflate` override. The file is written under a
 * temporary name in the target directory and renamed when complete: a crash never leaves a half
 * file under the real name.
 *
 * These functions are serial (the CLI runs them on rank 0).
 */
#ifndef YOTO_PREPARE_H
#define YOTO_PREPARE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"

typedef struct {
    bool contiguous; /* images contiguous and uncompressed */
    int deflate;     /* 0..9: chunked with this level; -1: per data set (see above) */
    uint64_t seed;   /* shapes: which factor combinations when N < 480000 */
} prepare_options;
prepare_options prepare_options_default(void);

/* kind "fashion-mnist" or "mnist": the four IDX files in dir, each gzipped
 * (NAME.gz) or not (NAME). */
int prepare_idx(const char *kind, const char *dir, const char *out, const prepare_options *o);
/* data_batch_1..5.bin and test_batch.bin in dir (or dir/cifar-10-batches-bin). */
int prepare_cifar10(const char *dir, const char *out, const prepare_options *o);
/* n procedurally rendered Shapes3D-like images (1 <= n <= 480000). */
int prepare_shapes(long n, const char *out, const prepare_options *o);

/* Prints what file holds (datasets, shapes, types, layout, splits) and
 * validates its image datasets for training: YT_OK when at least one is
 * usable, else YT_ERR_USAGE with a message naming the file. */
int prepare_info(const char *file, FILE *out);
/* The same as one JSON object (`yoto data-info --json`, docs/FORMATS.md):
 * file, bytes, attributes, datasets, image_datasets, error. Nothing is
 * printed when the file is missing or not HDF5; with no usable image dataset
 * the object is printed with "error" set and YT_ERR_USAGE returned. */
int prepare_info_json(const char *file, FILE *out);

/* ---- pieces, exposed for tests ------------------------------------------------ */
typedef struct {
    int ndim;
    uint32_t dims[4];
    size_t nbytes;
    uint8_t *data; /* malloc'd */
} prepare_idx_array;
/* Reads an IDX file of unsigned bytes (gzipped or not) with want_ndim
 * dimensions. YT_ERR_USAGE naming the file on a bad magic, wrong rank or
 * truncation. */
int prepare_read_idx(const char *path, int want_ndim, prepare_idx_array *a);
/* One CIFAR-10 binary batch: *n records, images HWC [n][32][32][3], labels [n]. */
int prepare_read_cifar(const char *path, uint8_t **images, uint8_t **labels, long *n);

#define SHAPES_N 480000L
#define SHAPES_SIZE 64
/* The six factors of grid row i in 3dshapes.h5's order (orientation fastest):
 * floor hue, wall hue, object hue in {0, 0.1, .., 0.9}; scale in
 * linspace(0.75, 1.25, 8); shape in {0 cube, 1 cylinder, 2 sphere, 3 capsule};
 * orientation in linspace(-30, 30, 15) degrees. */
void prepare_shapes_factors(long i, double f[6]);
/* Renders one 64x64x3 image (HWC) of the factors. */
void prepare_shapes_render(const double f[6], uint8_t *img);

#endif
