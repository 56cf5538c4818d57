/* encode.h — `yoto encode`: the latent codes of a split for a list of betas.
 *
 * For every beta the model is conditioned on (w_kl = beta, w_rec = eval.w_rec)
 * and every image of the split (all of it: eval.max_batches = 0 unless --set
 * says otherwise) is encoded, sharded over the ranks as `yoto eval` does. The
 * posterior means and sigmas, the images' row indices in the data file and the
 * data file's labels (when it has them) go into one HDF5 file, written
 * collectively through MPI-IO under a temporary name and renamed when complete
 * (docs/FORMATS.md). When the labels are factor labels the disentanglement
 * metrics of the means are computed for every beta (docs/METRICS.md), the betas
 * spread over the ranks, stored in the file and printed.
 */
#ifndef YOTO_ENCODE_H
#define YOTO_ENCODE_H

#include <stdbool.h>

typedef enum {
    ENCODE_METRICS_AUTO, /* when the split has labels that are discrete factors */
    ENCODE_METRICS_ON,   /* required: no usable labels is an error (exit 2) */
    ENCODE_METRICS_OFF
} encode_metrics_mode;

typedef struct {
    const char *target; /* RUN_DIR or checkpoint file */
    const char *split;  /* a split of data.splits; NULL: eval.splits[0] */
    const char *betas;  /* "0.5,8,128"; NULL: the config's list (eval_default_betas) */
    const char *out;    /* the HDF5 file to write */
    const char *labels; /* labels dataset in the split's file; NULL: "labels" beside the
                           images dataset when it exists; "none": no labels */
    bool force;         /* replace an existing out */
    encode_metrics_mode metrics;
    const char *const *sets; /* config overrides */
    int nsets;
} encode_args;

/* `yoto encode`: collective. YT_ERR_USAGE for bad input (an existing out
 * without force, a split without labels under ENCODE_METRICS_ON, labels of
 * another length than the images or not numeric, ...), with nothing written. */
int encode_run(const encode_args *a);

#endif
