/* eval.h — beta tables over eval splits: `yoto eval`, and the tables the
 * training loop writes every eval.every steps.
 *
 * For each beta of a list the model is conditioned on (w_kl = beta, w_rec)
 * and the mean reconstruction_loss, kl_loss and full_loss = w_rec recon +
 * beta kl are taken over a split (sharded over ranks, summed with MPI).
 * Rank 0 writes eval/step-N.h5 (one compound table per split: beta, w_rec,
 * reconstruction_loss, kl_loss, full_loss, n_images) and .csv / .md beside.
 */
#ifndef YOTO_EVAL_H
#define YOTO_EVAL_H

#include <stdbool.h>

#include "config.h"
#include "model.h"

#define EVAL_MAX_BETAS CFG_LIST_MAX /* = RUN_MAX_BETAS */

typedef struct {
    double beta, w_rec;
    double reconstruction_loss, kl_loss, full_loss;
    long n_images;
} eval_row;

typedef struct {
    char split[CFG_NAME_MAX];
    int n;
    eval_row row[EVAL_MAX_BETAS];
} eval_table;

/* Collective: the table of `split` for betas[0..nb) (w_rec = cfg eval.w_rec). */
int eval_split(vae_model *m, const yoto_config *cfg, const char *split, const double *betas,
               int nb, eval_table *out);
/* Rank 0 writes run_dir/eval/step-<step>.{h5,csv,md}; others return YT_OK.
 * The result is agreed (collective). */
int eval_write(const char *run_dir, long step, const eval_table *tables, int ntables);

typedef struct {
    const char *target; /* RUN_DIR or checkpoint file */
    const char *split;  /* one split, or NULL for eval.splits */
    const char *betas;  /* "0.5,8,128", or NULL for the config's list */
    const char *const *sets;
    int nsets;
} eval_args;
/* `yoto eval`: collective. */
int eval_run(const eval_args *a);

#endif
