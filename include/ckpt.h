/* ckpt.h — parallel-HDF5 checkpoints: write, publish atomically, find, read.
 *
 * Layout (docs/FORMATS.md): root attributes format = "yoto-checkpoint",
 * format_version, step, epoch, step_in_epoch, world_size, seed, created,
 * yoto_version, git_commit, param_checksum, state_crc32; /config (the
 * resolved YAML); /params/<name>; /optimizer/adam_m/<name>,
 * /optimizer/adam_v/<name> with attribute adam_step; /data and /rng (what
 * resume needs). A tensor "encoder/block0/conv0/kernel" is the float32
 * dataset <group>/encoder/block0/conv0/kernel of the arena's shape (PyTorch
 * conventions, DESIGN.md), so h5py users can load it.
 *
 * Verification (format_version 2): every tensor dataset and /config carry an
 * attribute crc32 (zlib's CRC-32 of the stored bytes: float32 little-endian,
 * C order; the UTF-8 text), and state_crc32 covers step, epoch,
 * step_in_epoch, world_size, the seed and Adam's step. Every load checks what
 * it reads; a mismatch is YT_ERR_USAGE naming the file and the part. Version
 * 1 files (no crc32) load with the parameters checked against
 * param_checksum and a warning that the rest cannot be checked.
 *
 * Publishing: written by all ranks through MPI-IO under a temporary name,
 * closed, renamed to ckpt/step-NNNNNNNNN.h5, then ckpt/latest (a one-line
 * text file naming it) is replaced by rename. A crash, a full file system or
 * an I/O error at any point leaves ckpt/latest naming a complete checkpoint.
 *
 * Fault injection (YOTO_FAULT, tests; "point" or "point@rank"):
 * ckpt_write (the write fails as with EIO), ckpt_rename (publishing the file
 * fails), ckpt_latest (updating ckpt/latest fails as with ENOSPC), slow_ckpt.
 */
#ifndef YOTO_CKPT_H
#define YOTO_CKPT_H

#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>

#include "arena.h"

#define CKPT_FORMAT "yoto-checkpoint"
#define CKPT_FORMAT_VERSION 2

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
 * compared by a parameter checksum first; a mismatch is YT_ERR_RUNTIME. A
 * failed write (disk full, I/O error, file size limit) is YT_ERR_RUNTIME on
 * every rank: the partial file is removed and ckpt/latest still names the
 * previous checkpoint. */
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

/* Collective. The checkpoint to resume run_dir from, for the training loop:
 * the one ckpt/latest names when it verifies (ckpt_verify), else the newest
 * step-*.h5 older than it that does (every step file when ckpt/latest itself
 * is garbage). Each file that fails verification is renamed to
 * <name>.corrupt (.corrupt.2, ... when taken; never deleted), a garbled
 * ckpt/latest to latest.corrupt, and ckpt/latest is rewritten to name the
 * file chosen.
 *   YT_OK, *found = false: no ckpt/latest (nothing to resume; start afresh).
 *   YT_OK, *found = true: path holds run_dir/ckpt/<name>; *warning is NULL
 *     when ckpt/latest verified, else a malloc'd text (caller frees) saying
 *     what was skipped and renamed, for the caller to log loudly.
 *   YT_ERR_USAGE: ckpt/latest is there but no checkpoint verifies (message
 *     lists each file and why), or ckpt/latest exists on some ranks only.
 *   YT_ERR_RUNTIME: ckpt/latest cannot be read (an I/O error, not
 *     corruption), or a rename fails.
 * The same result on every rank (rank 0 reads and renames). */
int ckpt_find_resume(const char *run_dir, char *path, size_t size, bool *found, char **warning);

/* Checks one checkpoint file through and through without a model: header,
 * state and config checksums, and the crc32 of every dataset under /params
 * and /optimizer (format_version 1: readable only). YT_OK, or YT_ERR_USAGE
 * naming the file and the part. Local (serial; any rank). */
int ckpt_verify(const char *path);

/* Collective: rank 0 reads, everyone gets it. Validates the format and the
 * state and config checksums, and returns the state and the stored config
 * (malloc'd; caller frees). */
int ckpt_read_header(const char *path, ckpt_state *st, char **config_yaml);
/* Collective: reads params (and Adam moments when optimizer) into a, whose
 * tensors must match by name and shape, checking each tensor's crc32. The
 * moments are checked also when !optimizer (read into scratch, a's untouched). */
int ckpt_read_arena(const char *path, arena *a, bool optimizer);

/* Tensor tables, on an open file (serial use; tests and tools). Reading
 * checks a dataset's crc32 attribute when it has one; writing adds it. */
int ckpt_read_tensors(hid_t file, const char *fname, const char *group, const arena *a, real *dst);
int ckpt_write_tensors(hid_t file, const char *fname, const char *group, const arena *a,
                       const real *src);

/* FNV-1a over the parameter bytes: equal on every rank when replicas agree. */
uint64_t ckpt_param_checksum(const arena *a);
/* CRC-32 (zlib's; Python's zlib.crc32) of n values as a checkpoint stores
 * them: float32, little-endian. */
uint32_t ckpt_crc32(const real *x, size_t n);

#endif
