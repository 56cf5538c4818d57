/* ckpt.h — parallel-HDF5 checkpoints: write, publish atomically, find, read.
 *
 * Layout (docs/FORMATS.md): root attributes format = "yoto-checkpoint",
 * format_version, step, epoch, step_in_epoch, world_size, seed, created,
 * yoto_version, git_commit, param_checksum; /config (the resolved YAML);
 * /params/<name>; /optimizer/adam_m/<name>, /optimizer/adam_v/<name> with
 * attribute adam_step; /data and /rng (what resume needs). A tensor
 * "encoder/block0/conv0/kernel" is the float32 dataset
 * <group>/encoder/block0/conv0/kernel of the arena's shape (PyTorch
 * conventions, DESIGN.md), so h5py users can load it.
 *
 * Publishing: written by all ranks through MPI-IO under a temporary name,
 * closed, renamed to ckpt/step-NNNNNNNNN.h5, then ckpt/latest (a one-line
 * text file naming it) is replaced by rename. A crash at any point leaves
 * ckpt/latest naming a complete checkpoint.
 */
#ifndef YOTO_CKPT_H
#define YOTO_CKPT_H

#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>

#include "arena.h"

#define CKPT_FORMAT "yoto-checkpoint"
#define CKPT_FORMAT_VERSION 1

/* Everything besides tensors and config that resume needs. */
typedef struct {
    long step;          /* optimizer updates done (= Adam's t) */
    long epoch;         /* epoch the next step belongs to */
    long step_in_epoch; /* steps of that epoch already done */
    long world_size;    /* ranks that wrote it */
    uint64_t seed;      /* experiment seed: every random stream derives from it */
} ckpt_state;

/* Collective. Writes run_dir/ckpt/step-<step>.h5 from the arena (params and
 * Adam moments), publishes it and keeps the newest `keep`. Replicas are
 * compared by a parameter checksum first; a mismatch is YT_ERR_RUNTIME. */
int ckpt_save(const char *run_dir, const arena *a, const ckpt_state *st, const char *config_yaml,
              long keep);

/* YT_OK when run_dir's checkpoints can be written through MPI-IO (their
 * paths are short enough, H5IO_MPIIO_PATH_MAX); else YT_ERR_USAGE. Local. */
int ckpt_check_run_dir(const char *run_dir);

/* Path of the newest complete checkpoint of run_dir (from ckpt/latest) into
 * path; *found = false when there is none. YT_ERR_USAGE when ckpt/latest
 * names a file that does not exist, YT_ERR_RUNTIME when ckpt/latest is there
 * but cannot be read. Any rank may call it. */
int ckpt_find_latest(const char *run_dir, char *path, size_t size, bool *found);

/* Collective: rank 0 reads, everyone gets it. Validates the format and
 * returns the state and the stored config (malloc'd; caller frees). */
int ckpt_read_header(const char *path, ckpt_state *st, char **config_yaml);
/* Collective: reads params (and Adam moments when optimizer) into a, whose
 * tensors must match by name and shape. */
int ckpt_read_arena(const char *path, arena *a, bool optimizer);

/* Tensor tables, on an open file (serial use; tests and tools). */
int ckpt_read_tensors(hid_t file, const char *fname, const char *group, const arena *a, real *dst);
int ckpt_write_tensors(hid_t file, const char *fname, const char *group, const arena *a,
                       const real *src);

/* FNV-1a over the parameter bytes: equal on every rank when replicas agree. */
uint64_t ckpt_param_checksum(const arena *a);

#endif
