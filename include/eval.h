/* eval.h — beta tables over eval splits: `yoto eval`, and the tables the
 * training loop writes every eval.every steps.
 *
 * For each beta of a list the model is conditioned on (w_kl = beta, w_rec)
 * and the mean reconstruction_loss, kl_loss and full_loss = w_rec recon +
 * beta kl are taken over the first images of a split (sharded over ranks,
 * summed with MPI). When the split's data file has labels beside its images
 * (labels.h) and eval.metrics allows, the disentanglement metrics of the
 * posterior means of those images against the labels (metrics.h) are taken
 * too: the codes are gathered on every rank and the betas spread over the
 * ranks.
 *
 * Rank 0 keeps one file per step, eval/step-N.h5 (one compound table per
 * split) with .csv, .md beside it, and MERGES into it: a new row replaces
 * the row of the same key (beta, w_rec, z, n_images) and every other row
 * stays, sorted by the key. Each row also says how it was made (max_batches,
 * batch_size, seed); the file says what was evaluated (step, param_checksum,
 * checkpoint, the writer's version) and each table which images (data file,
 * dataset, range, first row). Rows merge only within one model and one
 * split definition: a file of other parameters (a run restarted, or resumed
 * on another rank count) or a table of a split since defined differently is
 * replaced, and eval_write says so in eval_file.note. docs/FORMATS.md.
 *
 * A column is found by name, never by position. Adding a measure (say a
 * disentanglement score per beta) is one member of eval_row and one line of
 * the column table in eval.c; rows of older files get NaN (or -1) for it.
 */
#ifndef YOTO_EVAL_H
#define YOTO_EVAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "model.h"

#define EVAL_MAX_BETAS CFG_LIST_MAX          /* = RUN_MAX_BETAS: one evaluation */
#define EVAL_MAX_TABLES (2 * CFG_SPLITS_MAX) /* splits in one file (kept ones included) */
#define EVAL_FORMAT "yoto-eval"
#define EVAL_FORMAT_VERSION 2
#define EVAL_Z_TEXT_MAX 8 /* "sample", "mean" */

/* One row: the key, the measures, how it was made. */
typedef struct {
    /* key: a new row replaces the old row with the same four */
    double beta, w_rec;
    char z[EVAL_Z_TEXT_MAX]; /* eval.z: "sample" or "mean" ("" from an older file) */
    long n_images;           /* the first n_images rows of the split (all ranks together) */
    /* measures: means over those images */
    double reconstruction_loss, kl_loss, full_loss;
    /* disentanglement metrics of the posterior means of those images against the split's
     * labels (docs/METRICS.md); NaN when not computed (no labels, eval.metrics: off) or
     * undefined (e.g. one factor: factorvae, dci_disentanglement) */
    double mig, sap, factorvae, dci_disentanglement, dci_completeness;
    /* how: eval.max_batches, eval.batch_size, experiment.seed (-1 = unknown) */
    long max_batches, batch_size, seed;
} eval_row;

/* One split's table: which images, and its rows. */
typedef struct {
    char split[CFG_NAME_MAX];
    char data_file[CFG_PATH_MAX]; /* as the config names it (relative to where yoto ran) */
    char dataset[CFG_PATH_MAX];
    char range[CFG_NAME_MAX];        /* data.splits[].range, "" = whole dataset */
    long first_row;                  /* dataset row of the split's first image */
    long split_rows;                 /* rows in the split */
    char labels[CFG_PATH_MAX];       /* the labels dataset the metric columns used, "" = none */
    double seconds, metrics_seconds; /* eval_split's time and the metrics' part of it (the
                                        slowest rank; 0 for tables read from a file) */
    int n, cap;
    eval_row *row; /* [n], malloc'd (eval_table_free) */
} eval_table;

/* A whole eval/step-N file: what made it and its tables. */
typedef struct {
    long step;
    char param_checksum[24]; /* FNV-1a of the parameters evaluated (hex, as checkpoints) */
    char checkpoint[CFG_PATH_MAX + 64]; /* "" = the training loop's parameters in memory */
    char written_by[32];                /* "yoto eval", "yoto train" */
    char yoto_version[32], git_commit[64], written[40]; /* set by eval_write */
    int ntables;
    eval_table table[EVAL_MAX_TABLES];
    /* eval_write's report (rank 0) */
    long kept;      /* rows kept from the file that was there */
    char note[640]; /* why earlier tables were replaced, or "" */
} eval_file;

/* Collective: the table of `split` for betas[0..nb) (w_rec = cfg eval.w_rec,
 * eval.z, the first eval.max_batches * eval.batch_size images; the metric
 * columns as eval.metrics says: auto when the split has labels that are
 * discrete factors (other labels: a warning), on: required (YT_ERR_USAGE
 * before any image is evaluated), off: NaN). out is overwritten; free it
 * with eval_table_free. */
int eval_split(vae_model *m, const yoto_config *cfg, const char *split, const double *betas, int nb,
               eval_table *out);
void eval_table_free(eval_table *t);
void eval_file_free(eval_file *f); /* its tables' rows */

/* The file's identity for the parameters of m: step, param_checksum,
 * checkpoint ("" for in-memory parameters), written_by; no tables. */
void eval_file_init(eval_file *f, const vae_model *m, long step, const char *checkpoint,
                    const char *written_by);

/* Collective; rank 0 does the work. Merges f's tables into
 * run_dir/eval/step-<f->step>.h5 (if there is one) and writes .h5 (by
 * rename), .csv and .md. On rank 0, merged (may be NULL) then holds the
 * whole file: every table, rows sorted, kept and note. Agreed status; an
 * earlier file that cannot be read is replaced (noted), never an error. */
int eval_write(const char *run_dir, const eval_file *f, eval_file *merged);

/* The merged file as one JSON object (docs/FORMATS.md), non-finite numbers
 * as null. */
void eval_print_json(const eval_file *f, const char *run_dir, FILE *out);

typedef struct {
    const char *target; /* RUN_DIR or checkpoint file */
    const char *split;  /* one split, or NULL for eval.splits */
    const char *betas;  /* "0.5,8,128", or NULL for the config's list */
    bool json;          /* the tables as JSON on stdout instead of the text */
    const char *const *sets;
    int nsets;
} eval_args;
/* `yoto eval`: collective. */
int eval_run(const eval_args *a);

#endif
