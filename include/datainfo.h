/* datainfo.h — `yoto data-info --bench`: the training data pipeline's
 * throughput on one HDF5 file, without a config.
 *
 * A config is made for the file (its image dataset, a row range, the given
 * preprocessing, the cache and block sizes) and the pipeline reads training
 * batches from it as `yoto train` would, sharded over the MPI ranks.
 */
#ifndef YOTO_DATAINFO_H
#define YOTO_DATAINFO_H

#include <stdbool.h>

typedef struct {
    const char *dataset;  /* image dataset; NULL: "images", else "train/images" */
    const char *range;    /* row range of the split; NULL: all rows */
    const char *pipeline; /* preprocessing ops; NULL: "value_range(0, 1)" */
    long batch;           /* images per rank per batch */
    long cache_mb;        /* data.cache_mb */
    long block_mb;        /* data.stream_block_mb */
    long seed;            /* data order */
    long steps;           /* at least this many batches... */
    double seconds;       /* ...and about this long */
    double step_ms;       /* a sleep per batch standing in for the training step */
    bool no_readahead;    /* synchronous HDF5 reads only */
} datainfo_bench_opts;

/* batch 64, cache 4096 MB, the default block, 3 seconds. */
datainfo_bench_opts datainfo_bench_defaults(void);

/* Collective: measures and prints the report on rank 0. YT_OK or an error
 * status (message set; YT_ERR_USAGE for a file or option that does not fit). */
int datainfo_bench(const char *file, const datainfo_bench_opts *o);

#endif
