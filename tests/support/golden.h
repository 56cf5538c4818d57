/* golden.h — reading the golden tensors of tests/data/golden_*.h5 (made by an
 * independent PyTorch implementation; tests/data/README.md). */
#ifndef YOTO_GOLDEN_H
#define YOTO_GOLDEN_H

#include <hdf5.h>

#include "config.h"
#include "model.h"

/* Opens a golden file (read-only, serial); fails the test if it cannot. */
hid_t golden_open(const char *file);
/* The dataset at path as doubles (malloc'd); *n elements; dims optional (4). */
double *golden_read(hid_t f, const char *path, size_t *n, int *ndim, hsize_t *dims);
/* true when the file holds path */
int golden_has(hid_t f, const char *path);
double golden_attr_double(hid_t obj, const char *name);
long golden_attr_long(hid_t obj, const char *name);
/* The model config the root attributes describe (C schema). */
void golden_config(hid_t f, yoto_config *cfg);
/* NHWC [b][h][w][c] doubles -> channel-major [c][b][h][w] reals, and the
 * reverse direction for comparing (doubles [c][b][hw] -> NHWC). */
void golden_nhwc_to_chan(const double *src, int b, int hw, int c, real *dst);
void golden_chan_to_nhwc(const real *src, int b, int hw, int c, real *dst);
/* doubles -> reals */
real *golden_to_real(const double *src, size_t n);

#endif
