/* run.h — a trained run, opened from its run directory or from one of its
 * checkpoint files: which checkpoint, its header, its config (with --set
 * overrides applied), and the model loaded from it.
 *
 * The one way `train --resume`, eval, sample and reconstruct find what they
 * continue or serve:
 *
 *   run_handle r;
 *   int rc = run_open("runs/fashion_mnist_yoto", sets, nsets, &r);
 *   if (rc == YT_OK) rc = run_load_model(&r, max_batch, false);
 *   ... r.model, r.cfg, r.st.step, r.ckpt, r.run_dir ...
 *   run_close(&r);
 */
#ifndef YOTO_RUN_H
#define YOTO_RUN_H

#include <stdbool.h>

#include "ckpt.h"
#include "config.h"
#include "model.h"

typedef struct {
    char ckpt[CFG_PATH_MAX + 64]; /* the checkpoint file */
    char run_dir[CFG_PATH_MAX];   /* the run directory it belongs to */
    ckpt_state st;                /* its step, epoch, world size, seed */
    char *yaml;                   /* its /config as stored */
    yoto_config *cfg;             /* that config with the overrides applied */
    vae_model *model;             /* NULL until run_load_model */
} run_handle;

/* Collective. target is a run directory (its newest checkpoint, named by
 * ckpt/latest) or a checkpoint file (a file in RUN/ckpt/ belongs to RUN;
 * elsewhere, to its own directory). Reads the header and the config and
 * applies sets. YT_ERR_USAGE (message naming target) when there is no such
 * directory or file or no checkpoint in it; r is safe to run_close either
 * way. */
int run_open(const char *target, const char *const *sets, int nsets, run_handle *r);

/* Collective: builds r->model for batches of up to max_batch samples and
 * reads its parameters (and Adam's moments when optimizer) from r->ckpt. */
int run_load_model(run_handle *r, int max_batch, bool optimizer);

void run_close(run_handle *r);

#define RUN_MAX_BETAS CFG_LIST_MAX

/* The betas to serve the run at: the comma-separated list ("0.5,8,128",
 * every value > 0), or when list is NULL the config's eval.betas (for a
 * fixed-beta model without conditioning, its own beta). YT_ERR_USAGE naming
 * the text. Local. */
int run_betas(const yoto_config *cfg, const char *list, double *betas, int *nb);

/* YT_OK when cfg has a split called name, else YT_ERR_USAGE: "<what>
 * <name>: no such split; the config has <list> (data.splits)". Local. */
int run_check_split(const yoto_config *cfg, const char *what, const char *name);

#endif
