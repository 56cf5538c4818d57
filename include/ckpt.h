/* ckpt.h — checkpoints: the arena's named tensors in HDF5 groups.
 *
 * A tensor "encoder/block0/conv0/kernel" is the dataset
 * <group>/encoder/block0/conv0/kernel, float32 on disk, of the arena shape
 * (PyTorch conventions, DESIGN.md), so h5py users can load it.
 */
#ifndef YOTO_CKPT_H
#define YOTO_CKPT_H

#include <hdf5.h>

#include "arena.h"

/* Reads every tensor of a from <group>/<name> of an open file into dst (one of
 * a's buffers), converting from the stored float type. A missing tensor or a
 * shape that differs is YT_ERR_USAGE naming fname, the dataset and both shapes. */
int ckpt_read_tensors(hid_t file, const char *fname, const char *group, const arena *a, real *dst);
/* Writes src (one of a's buffers) as float32 datasets <group>/<name>,
 * creating intermediate groups. YT_ERR_RUNTIME on failure. */
int ckpt_write_tensors(hid_t file, const char *fname, const char *group, const arena *a,
                       const real *src);

#endif
