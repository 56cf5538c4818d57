/* datautil.h — small HDF5 image files and configs for the data tests.
 *
 * Pixel k of row r is tu_pixel(r, k): the first four bytes hold r (little
 * endian), so every sample read back names the row it came from. */
#ifndef YOTO_DATAUTIL_H
#define YOTO_DATAUTIL_H

#include <hdf5.h>
#include <stdint.h>

#include "config.h"

uint8_t tu_pixel(long row, long k);
/* Writes dataset `dset` = uint8 [n, h, w, c] (c = 0: 3-d [n, h, w]) of
 * tu_pixel rows into path (created if missing, else opened read-write).
 * chunk_rows 0: contiguous; else chunked, deflate level `deflate`. */
void tu_write_images(const char *path, const char *dset, long n, int h, int w, int c,
                     long chunk_rows, int deflate);
/* Writes a zero-filled dataset of any type and shape (for bad-input tests). */
void tu_write_raw(const char *path, const char *dset, hid_t type, int ndim, const hsize_t *dims);
/* A config with one split "train" (and "eval" = the same rows) of file/dset
 * with range, train pipeline `pipe` (preprocess_parse syntax), eval pipeline
 * value_range(0, 1), model.input_shape (h, w, c), cache 1024 MB, block 64 MB. */
void tu_data_config(yoto_config *cfg, const char *file, const char *dset, const char *range,
                    const char *pipe, int h, int w, int c);

#endif
