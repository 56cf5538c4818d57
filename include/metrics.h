/* metrics.h — disentanglement metrics of latent codes against factor labels.
 *
 * MIG (Chen et al. 2018), SAP (Kumar et al. 2018), the FactorVAE score (Kim &
 * Mnih 2018) and DCI disentanglement / completeness (Eastwood & Williams
 * 2018), as google-research/disentanglement_lib defines them, computed from a
 * fixed set of labelled codes instead of a ground-truth simulator.
 * docs/METRICS.md states every choice; tests/tools/metrics_ref.py is an
 * independent NumPy implementation of the same definitions.
 *
 *     int32_t *f = yt_malloc(n * K * sizeof *f);
 *     int sizes[K];
 *     rc = metrics_labels_to_indices(labels, n, K, f, sizes);   // float labels -> indices
 *     metrics_data d = {.n = n, .latent = L, .nfactors = K, .codes = codes,
 *                       .factors = f, .sizes = sizes};
 *     metrics_result r;
 *     metrics_compute(&d, NULL, &r);   // NULL: disentanglement_lib's sizes, seed 0
 *
 * Everything here is serial and deterministic: the random choices (which rows
 * train and test each metric, the FactorVAE batches) come from Philox streams
 * keyed (seed, RNG_METRICS, ...), so the same inputs give the same numbers on
 * any machine. A metric that is undefined for the input (fewer than two
 * codes, fewer than two factors with more than one value, non-finite codes)
 * is NaN.
 */
#ifndef YOTO_METRICS_H
#define YOTO_METRICS_H

#include <stdint.h>

/* disentanglement_lib's sizes (its unsupervised_study_v1 metric configs) */
#define METRICS_MIG_BINS 20      /* histogram bins per code (discretizer.num_bins) */
#define METRICS_N_TRAIN 10000    /* mig/sap/dci num_train */
#define METRICS_N_TEST 5000      /* sap/dci num_test */
#define METRICS_FVAE_BATCH 64    /* factor_vae_score.batch_size */
#define METRICS_FVAE_TRAIN 10000 /* factor_vae_score.num_train (votes) */
#define METRICS_FVAE_EVAL 5000   /* factor_vae_score.num_eval (votes) */
#define METRICS_FVAE_VAR 10000   /* factor_vae_score.num_variance_estimate */
#define METRICS_FVAE_PRUNE 0.05  /* prune_dims.threshold: active when std >= this */
#define METRICS_LASSO_ALPHA 0.05 /* DCI's regressor (ours: disentanglement_lib uses GBTs) */
#define METRICS_MAX_VALUES 256   /* distinct values a factor label column may have */

/* Labelled codes. */
typedef struct {
    long n;                 /* rows */
    int latent;             /* codes per row, L */
    int nfactors;           /* factor label columns, K */
    const double *codes;    /* [n][L] */
    const int32_t *factors; /* [n][K] value indices, factor k in 0..sizes[k]-1 */
    const int *sizes;       /* [K] */
} metrics_data;

typedef struct {
    uint64_t seed;     /* Philox key of every random choice (default 0) */
    long n_train;      /* MIG, SAP and DCI train rows at most (METRICS_N_TRAIN) */
    long n_test;       /* SAP and DCI test rows at most (METRICS_N_TEST) */
    int fvae_batch;    /* rows per FactorVAE vote */
    long fvae_train;   /* FactorVAE votes that train the majority classifier */
    long fvae_eval;    /* ... and that score it */
    long fvae_var;     /* rows for the global variances */
    double fvae_prune; /* std below which a code is collapsed (not voting) */
    double lasso_alpha;
} metrics_options;
metrics_options metrics_options_default(void);

typedef struct {
    double mig;
    double sap;
    double factorvae;       /* eval accuracy (the score) */
    double factorvae_train; /* train accuracy */
    double dci_disentanglement, dci_completeness;
    int active_dims;  /* codes with std >= fvae_prune */
    int factors_used; /* factors with more than one value in the data */
} metrics_result;

/* The row subsets of metrics_compute: with N rows and perm a Philox
 * permutation of them (stream (seed, RNG_METRICS, 0, 0, 0)), MIG uses
 * perm[0, n_mig), SAP and DCI train on perm[0, n_tr) and test on
 * perm[n_tr, n_tr + n_te), FactorVAE's variances use perm[0, n_var). */
typedef struct {
    long n_mig, n_tr, n_te, n_var;
} metrics_split;
metrics_split metrics_split_sizes(long n, const metrics_options *o);

/* All metrics (o NULL: metrics_options_default()). Never fails on valid
 * shapes: undefined metrics are NaN. */
void metrics_compute(const metrics_data *d, const metrics_options *o, metrics_result *r);

/* The metrics one by one, on given rows of d (indices into 0..n). */
double metrics_mig(const metrics_data *d, const long *rows, long n);
double metrics_sap(const metrics_data *d, const long *train, long n_tr, const long *test,
                   long n_te);
/* sets r->factorvae, r->factorvae_train, r->active_dims */
void metrics_factorvae(const metrics_data *d, const long *var_rows, long n_var,
                       const metrics_options *o, metrics_result *r);
void metrics_dci(const metrics_data *d, const long *train, long n_tr, double alpha, double *dis,
                 double *comp);

/* Float label columns (e.g. 3dshapes' /labels [N, 6] float64) to value
 * indices: idx[i][k] = rank of labels[i][k] among the distinct values of
 * column k (ascending); sizes[k] = distinct values of column k. YT_ERR_USAGE
 * (message names the column) for a non-finite label or a column with more
 * than METRICS_MAX_VALUES values (not a discrete factor). */
int metrics_labels_to_indices(const double *labels, long n, int k, int32_t *idx, int *sizes);

#endif
