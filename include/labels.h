/* labels.h — the labels of a split, for the disentanglement metrics.
 *
 * A data file may hold per-image labels beside its images: 3dshapes.h5 and
 * `yoto prepare shapes` have /labels float64 [N, 6] (the six factors),
 * `yoto prepare fashion-mnist` has /train/labels uint8 [N] (the class).
 * This module finds and checks them for a split's image dataset, reads rows
 * of them as factor indices, and computes the metrics of several code sets
 * (one per beta) against them, the sets spread over the ranks. `yoto encode`
 * and `yoto eval` (its beta tables' metric columns) both go through it.
 *
 *     split_labels l;
 *     rc = labels_find(file, "train/images", n_images, NULL, hint, &l);  // serial
 *     if (rc == YT_OK && l.path[0])
 *         rc = labels_factors(&l, first_row, n, factors, sizes);        // [n][l.cols], [l.cols]
 *     labels_close(&l);
 *     metrics_data shape = {.n = n, .latent = L, .nfactors = l.cols, .factors = factors,
 *                           .sizes = sizes};
 *     rc = labels_metrics(&shape, nb, codes_of_beta, ctx, results, &seconds);  // collective
 */
#ifndef YOTO_LABELS_H
#define YOTO_LABELS_H

#include <stdint.h>

#include "config.h"
#include "metrics.h"

/* A labels dataset that fits a split's images. */
typedef struct {
    char file[CFG_PATH_MAX]; /* the data file */
    char path[CFG_PATH_MAX]; /* the labels dataset in it; "" when there is none */
    int ndim;                /* 1: [N], 2: [N, K] */
    long cols;               /* K (1 for [N]) */
    int64_t type;            /* its file type (an HDF5 hid_t, a copy), or -1 */
} split_labels;

/* Serial and local. The labels of the image dataset `images` (n_images rows)
 * of file: the dataset `named` when it is not NULL (it must exist), else
 * "labels" beside the images ("train/images" -> "train/labels",
 * "images" -> "labels") when there is one. They must be numbers (integer or
 * float), [N] or [N, K], one row per image. YT_OK with l->path "" when there
 * are none; YT_ERR_USAGE when they do not fit, the message naming the file,
 * the dataset, what is wrong, and ending with "(hint)" when hint is not
 * NULL. l is safe to labels_close either way. */
int labels_find(const char *file, const char *images, long n_images, const char *named,
                const char *hint, split_labels *l);
void labels_close(split_labels *l);

/* Serial. Rows [begin, begin + n) of the labels as factor value indices
 * factors [n][l->cols] and sizes [l->cols] (metrics_labels_to_indices: the
 * distinct values of each column, ascending). YT_ERR_RUNTIME when they
 * cannot be read, YT_ERR_USAGE "FILE: labels 'PATH': <why>" when a column
 * is not a discrete factor (a non-finite value, more than
 * METRICS_MAX_VALUES values). */
int labels_factors(const split_labels *l, long begin, long n, int32_t *factors, int *sizes);

/* Fills codes [shape->n][shape->latent] with code set k; YT_OK or a status
 * with its message (yt_fail). */
typedef int (*labels_codes_fn)(int k, double *codes, void *ctx);

/* Collective. The metrics (metrics_compute, default options) of nb code
 * sets against the factors of shape (its codes are ignored; every rank
 * holds the same factors): set k is computed on rank k % world and every
 * rank gets out[0..nb). *seconds (may be NULL): the slowest rank's time.
 * A failure of get on any rank is agreed (dist_agree). */
int labels_metrics(const metrics_data *shape, int nb, labels_codes_fn get, void *ctx,
                   metrics_result *out, double *seconds);

#endif
