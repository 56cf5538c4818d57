/* bench.h — `yoto bench`: the training step timed on synthetic data of a
 * config's shape, with the machine's own sgemm as the yardstick.
 *
 * Reports median images/s, the analytic training FLOPs per image, achieved
 * GFLOP/s per rank and its ratio to a single-thread 1024^3 sgemm measured in
 * the same run, the per-phase and per-layer breakdown, inference (encode and
 * reconstruct images/s, no backward and no optimizer, and their ratios to
 * sgemm), the threads per rank and OpenBLAS kernels, and peak RSS. Under mpirun every rank trains
 * its replica and the gradient is allreduced, as in training.
 *
 * With comm: no training; the gradient allreduce's time against message size
 * (4 KiB .. 64 MiB, x4 apart) at this run's rank count, blocking (one
 * MPI_Allreduce) and bucketed (train.bucket_mb buckets of MPI_Iallreduce, as
 * training issues them, here all at once; a message of one bucket goes
 * sharded, a ring reduce-scatter and allgather), medians over repetitions: the
 * measurement analysis/scaling.py fits its communication model to. Numbers are ratios from one run,
 * never asserted against wall-clock limits in tests.
 */
#ifndef YOTO_BENCH_H
#define YOTO_BENCH_H

#include <stdbool.h>

#include "config.h"

typedef struct {
    int steps;   /* timed steps (median over them) */
    int warmup;  /* untimed steps first */
    int threads; /* threads per rank; 0 = the config's train.threads */
    bool json;   /* one JSON object on stdout instead of the table */
    bool data;   /* also time the data pipeline on the config's real train split */
    bool comm;   /* instead: allreduce time vs message size, both modes */
    int comm_max_mb;         /* --comm: the largest message, MiB (0: 64) */
    int drift_pct;           /* warn when the sgemm after the steps is this percent or more
                                away from the one before, or the ranks waited this percent
                                of a step for the slowest (the machine's load changed) */
    const char *config_path; /* for the report */
} bench_opts;

/* Collective under MPI. Returns YT_OK or an error status (message set). */
int bench_run(const yoto_config *cfg, const bench_opts *o);

#endif
