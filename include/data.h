/* data.h — HDF5 image data sets: splits, shards, shuffling, streaming, batches.
 *
 * A data file holds uint8 images [N, H, W, C] (a 3-d [N, H, W] dataset is
 * read as C = 1), e.g. /images, or /train/images and /test/images
 * (docs/DATA.md). A split is (file, dataset path, row range) from
 * data.splits; training reads data.train_split with data.preprocess_train,
 * evaluation reads any split with data.preprocess_eval.
 *
 *     data_source *d;
 *     int rc = data_open_train(&d, cfg, dist_rank(), dist_size(), batch, NULL); // collective
 *     if (rc != YT_OK) ... every rank got the same status and yt_errmsg()
 *     const data_desc *dd = data_describe(d);
 *     real *x = yt_malloc(data_batch_floats(d) * sizeof(real));  // [C][batch][H][W]
 *     int64_t *rows = yt_malloc(dd->batch * sizeof(int64_t));
 *     for (long step = 0; step < dd->steps; step++)
 *         rc = data_batch(d, epoch, step, x, rows, &count);  // local, may fail on one rank
 *     data_close(d);                                           // collective
 *
 * Semantics (docs/DATA.md has the long form):
 * - Shards: the split's n rows are cut into `world` contiguous shards, rank r
 *   gets shard r (data_shard: sizes differ by at most one row).
 * - Train: every rank runs steps = floor(floor(n / world) / batch) steps per
 *   epoch (the smallest shard decides), so collectives never mismatch; each
 *   epoch a rank uses steps*batch rows of its shard and skips the rest (which
 *   rows are skipped changes with the epoch's shuffle).
 * - Shuffle: a shard is cut into windows of W consecutive rows (W = 256 KiB
 *   of rows, at least 1); each epoch the windows are permuted (Philox
 *   (seed, RNG_DATA_ORDER, epoch, rank, 0)); consecutive runs of G permuted
 *   windows form a group (G windows = data.stream_block_mb); a group's rows,
 *   in file order, are permuted by (seed, RNG_DATA_ORDER, epoch, rank, 1 + g).
 *   The epoch's order is group 0, group 1, ... So a batch is a pure function
 *   of (seed, epoch, step, rank, world, batch, block size, file): the read
 *   mode (cached or streaming) and anything before (epoch, step) do not
 *   matter, and resume restores the exact order.
 * - Storage: a shard of at most data.cache_mb (decided on the largest shard,
 *   so all ranks agree) is read once with collective MPI-IO hyperslab reads
 *   (pieces of at most 64 MiB) and kept as uint8; a larger one streams
 *   group by group (about 2 x stream_block_mb resident: the current group
 *   and the next). For a
 *   contiguous, unfiltered dataset a reader thread pread()s the next group
 *   while the current one is used (it never calls HDF5 or MPI); otherwise
 *   groups are read synchronously with independent HDF5 reads.
 * - Eval: the first T = min(n, eval.max_batches * eval.batch_size) rows of
 *   the split (all rows when max_batches <= 0), sharded the same way, read in
 *   order, no shuffle, batches of eval.batch_size; every rank runs the same
 *   number of batches (steps) and a batch may be partial or empty (count),
 *   so sums over ranks equal a one-rank pass over the same T rows.
 * - Output: a batch is `real` [C][count][H][W] (channel slowest, then sample,
 *   row, column), exactly what the model consumes, and the dataset row index
 *   of each sample. Augmentation is keyed (seed, epoch, row in split).
 */
#ifndef YOTO_DATA_H
#define YOTO_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "config.h"

#define DATA_WINDOW_BYTES (256L << 10)     /* shuffle window: rows of this many bytes */
#define DATA_DEFAULT_BLOCK_MB 64           /* data.stream_block_mb when it is <= 0 */
#define DATA_READ_PIECE_BYTES (64L << 20) /* largest single collective read */

typedef struct data_source data_source;

/* Overrides for tests and measurements; data_tuning_default() takes
 * everything from the config. */
typedef struct {
    long cache_bytes; /* < 0: data.cache_mb MiB (0 = always stream)          */
    long block_bytes; /* <= 0: data.stream_block_mb MiB (<= 0: 64 MiB)      */
    long window_rows; /* <= 0: DATA_WINDOW_BYTES of rows                      */
    int readahead;    /* streaming: 1 = reader thread when possible, 0 = never */
    long piece_bytes; /* <= 0: DATA_READ_PIECE_BYTES per collective cache read */
} data_tuning;
data_tuning data_tuning_default(void);

/* What an open source reads. */
typedef struct {
    char split[CFG_NAME_MAX];
    char file[CFG_PATH_MAX];
    char dataset[CFG_PATH_MAX];
    char range[CFG_NAME_MAX];
    bool train;                  /* shuffled, drop-remainder steps */
    long dataset_rows;           /* N of the dataset */
    long begin, end;             /* the split: dataset rows [begin, end) */
    long rows;                   /* train: end - begin; eval: T (rows evaluated) */
    long shard_begin, shard_end; /* this rank's dataset rows */
    int rank, world;
    int h, w, c;        /* stored image */
    int oh, ow;         /* after the pipeline; channels stay c */
    long batch;         /* per rank */
    long steps;         /* train: steps per epoch; eval: batches on every rank */
    bool cached;        /* shard held in memory */
    bool readahead;     /* streaming through the pread reader thread */
    long window_rows;   /* W */
    long group_windows; /* G */
    uint64_t seed;
} data_desc;

/* Opens cfg->data.train_split for rank `rank` of `world` with `batch` images
 * per rank and data.preprocess_train. Collective over all ranks (every
 * rank calls it; rank/world normally dist_rank()/dist_size()). Checks the
 * file, dataset, range, pipeline output == model.input_shape and that the
 * split holds at least world x batch rows; on failure every rank returns
 * the same status (YT_ERR_USAGE for bad input) and message, *out = NULL.
 * tune may be NULL. */
int data_open_train(data_source **out, const yoto_config *cfg, int rank, int world, long batch,
                    const data_tuning *tune);
/* Opens the split called `split` for evaluation (eval.batch_size,
 * eval.max_batches, data.preprocess_eval). Collective, as data_open_train. */
int data_open_eval(data_source **out, const yoto_config *cfg, const char *split, int rank,
                   int world, const data_tuning *tune);
/* Collective (closes the MPI-IO file). NULL is fine. */
void data_close(data_source *d);

const data_desc *data_describe(const data_source *d);
/* Elements of a full batch: c * batch * oh * ow. */
size_t data_batch_floats(const data_source *d);

/* Fills batch `step` of `epoch` (eval: epoch is ignored, step = batch index
 * in 0..steps-1): images = [C][*count][H][W], rows[i] = dataset row of
 * sample i (rows may be NULL). Train: *count = batch. Not collective: a read
 * error (YT_ERR_RUNTIME, message names file and dataset) can happen on one
 * rank only, so callers agree on the status (dist_agree) at a point every
 * rank reaches. Fastest when called with consecutive steps (the next group
 * is read ahead); any (epoch, step) works. */
int data_batch(data_source *d, long epoch, long step, real *images, int64_t *rows, long *count);

/* ---- the pipeline's throughput (for `yoto bench --data`) ---------------------- */
typedef struct {
    double images_per_s;       /* per rank, the slowest rank */
    double images_per_s_total; /* all ranks together */
    double open_s;             /* opening, incl. the cache read (slowest rank) */
    double wait_frac;          /* share of batch time spent waiting for reads */
    long images;               /* per rank */
    long peak_rss_kb;          /* largest over ranks */
    data_desc desc;            /* of rank 0's source */
} data_bench_result;
typedef struct {
    long batch;     /* images per rank per batch */
    double seconds; /* measure at least this long... */
    long min_steps; /* ...and at least this many batches */
    double step_s;  /* sleep this long per batch, standing in for the training
                       step, to see how much reading the read-ahead hides */
} data_bench_opts;
/* Collective. Reads training batches of cfg's train split as the training
 * loop would (consecutive steps, epochs wrapping) and reports. */
int data_bench(const yoto_config *cfg, const data_bench_opts *o, const data_tuning *tune,
               data_bench_result *res);

/* ---- pieces, exposed for tests and data-info ------------------------------------ */
/* Shard r of n rows over world ranks: [*begin, *end) in 0..n. */
void data_shard(long n, int rank, int world, long *begin, long *end);
/* floor(floor(n / world) / batch): train steps per epoch. */
long data_steps_per_epoch(long n, int world, long batch);

typedef struct {
    long n;          /* rows */
    int ndim;        /* 3 or 4 */
    int h, w, c;     /* c = 1 for 3-d datasets */
    bool contiguous; /* layout contiguous (pread-able when unfiltered) */
    bool chunked;
    int nfilters;
    long chunk_rows; /* chunked: rows per chunk */
} data_image_info;
/* Opens file serially and checks that `dataset` is a uint8 image dataset
 * ([N, H, W, C] or [N, H, W], N >= 1). YT_ERR_USAGE with a message naming
 * the file, the dataset and what was expected. */
int data_probe(const char *file, const char *dataset, data_image_info *info);

#endif
