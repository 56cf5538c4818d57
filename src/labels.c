/* labels.c — the labels of a split (see labels.h): finding and checking
 * them beside the images, reading rows of them as factor indices, and the
 * metrics of one code set per beta spread over the ranks. */
#include "labels.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "dist.h"
#include "h5io.h"

/* "train/images" -> "train/labels", "images" -> "labels" */
static void sibling_labels(const char *images, char *out, size_t size) {
    const char *slash = strrchr(images, '/');
    if (slash)
        snprintf(out, size, "%.*s/labels", (int)(slash - images), images);
    else
        snprintf(out, size, "labels");
}

/* " (hint)" or "" */
static const char *hint_text(const char *hint, char *buf, size_t size) {
    if (!hint) return "";
    snprintf(buf, size, " (%s)", hint);
    return buf;
}

/* Checks the open dataset ds at path: numbers, [N] or [N, K], n_images rows. */
static int check_dataset(hid_t ds, const char *path, const char *images, long n_images,
                         const char *hint, split_labels *l) {
    char hb[256];
    hid_t t = H5Dget_type(ds), s = H5Dget_space(ds);
    hsize_t dims[H5S_MAX_RANK] = {0};
    int nd = s >= 0 ? H5Sget_simple_extent_dims(s, dims, NULL) : -1;
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    char ty[48] = "?", sh[160] = "?";
    if (t >= 0) h5io_type_text(t, ty, sizeof ty);
    if (nd >= 0) h5io_dims_text(nd, dims, sh, sizeof sh);
    int rc = YT_OK;
    if (t < 0 || nd < 0)
        rc = yt_fail(YT_ERR_USAGE, "%s: cannot read dataset '%s'", l->file, path);
    else if ((cls != H5T_INTEGER && cls != H5T_FLOAT) || nd < 1 || nd > 2)
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: labels dataset '%s' is %s %s: expected numbers (integer or float), "
                     "[N] or [N, K]%s",
                     l->file, path, ty, sh, hint_text(hint, hb, sizeof hb));
    else if ((long)dims[0] != n_images)
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: labels dataset '%s' has %llu rows but the images '%s' have %ld: labels "
                     "need one row per image%s",
                     l->file, path, (unsigned long long)dims[0], images, n_images,
                     hint_text(hint, hb, sizeof hb));
    if (rc == YT_OK) {
        snprintf(l->path, sizeof l->path, "%s", path);
        l->ndim = nd;
        l->cols = nd == 2 ? (long)dims[1] : 1;
        l->type = H5Tcopy(t);
    }
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    return rc;
}

int labels_find(const char *file, const char *images, long n_images, const char *named,
                const char *hint, split_labels *l) {
    memset(l, 0, sizeof *l);
    l->type = -1;
    snprintf(l->file, sizeof l->file, "%s", file);
    char path[CFG_PATH_MAX], hb[256];
    if (named)
        snprintf(path, sizeof path, "%s", named);
    else
        sibling_labels(images, path, sizeof path);
    h5io_errors q;
    h5io_errors_off(&q);
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = YT_OK;
    if (f < 0)
        rc = yt_fail(YT_ERR_USAGE, "%s: cannot open as HDF5", file);
    else if (!h5io_exists(f, path)) {
        if (named)
            rc = yt_fail(YT_ERR_USAGE, "%s: no dataset '%s'%s", file, path,
                         hint_text(hint, hb, sizeof hb));
    } else {
        hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
        rc = ds >= 0 ? check_dataset(ds, path, images, n_images, hint, l)
                     : yt_fail(YT_ERR_USAGE, "%s: cannot read dataset '%s'", file, path);
        if (ds >= 0) H5Dclose(ds);
    }
    if (f >= 0) H5Fclose(f);
    h5io_errors_restore(&q);
    return rc;
}

void labels_close(split_labels *l) {
    if (l->type >= 0) H5Tclose(l->type);
    l->type = -1;
}

/* rows [begin, begin + n) as doubles [n][cols] */
static int read_rows(const split_labels *l, long begin, long n, double *out) {
    h5io_errors q;
    h5io_errors_off(&q);
    hid_t f = H5Fopen(l->file, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = f >= 0 ? H5Dopen2(f, l->path, H5P_DEFAULT) : -1;
    hid_t fs = ds >= 0 ? H5Dget_space(ds) : -1;
    hsize_t start[2] = {(hsize_t)begin, 0}, cnt[2] = {(hsize_t)n, (hsize_t)l->cols};
    hid_t ms = H5Screate_simple(l->ndim, cnt, NULL);
    int rc = YT_OK;
    if (n > 0 && (fs < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0 ||
                  H5Dread(ds, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, out) < 0))
        rc = yt_fail(YT_ERR_RUNTIME, "%s: cannot read rows %ld..%ld of labels '%s'", l->file, begin,
                     begin + n, l->path);
    H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (ds >= 0) H5Dclose(ds);
    if (f >= 0) H5Fclose(f);
    h5io_errors_restore(&q);
    return rc;
}

int labels_factors(const split_labels *l, long begin, long n, int32_t *factors, int *sizes) {
    YT_CHECK(l->path[0] && n >= 0);
    double *lab = yt_malloc((size_t)YT_MAX(1L, n * l->cols) * sizeof *lab);
    int rc = read_rows(l, begin, n, lab);
    if (rc == YT_OK && metrics_labels_to_indices(lab, n, (int)l->cols, factors, sizes) != YT_OK) {
        char m[YT_ERRMSG_MAX];
        snprintf(m, sizeof m, "%s", yt_errmsg());
        rc = yt_fail(YT_ERR_USAGE, "%s: labels '%s': %s", l->file, l->path, m);
    }
    free(lab);
    return rc;
}

/* ---- metrics of several code sets, spread over the ranks ---------------------------------- */

enum { MV_MIG, MV_SAP, MV_FVAE, MV_FVAE_TRAIN, MV_DCI_D, MV_DCI_C, MV_ACTIVE, MV_USED, MV_N };

static void pack(const metrics_result *r, double *v) {
    v[MV_MIG] = r->mig;
    v[MV_SAP] = r->sap;
    v[MV_FVAE] = r->factorvae;
    v[MV_FVAE_TRAIN] = r->factorvae_train;
    v[MV_DCI_D] = r->dci_disentanglement;
    v[MV_DCI_C] = r->dci_completeness;
    v[MV_ACTIVE] = r->active_dims;
    v[MV_USED] = r->factors_used;
}

static metrics_result unpack(const double *v) {
    return (metrics_result){.mig = v[MV_MIG],
                            .sap = v[MV_SAP],
                            .factorvae = v[MV_FVAE],
                            .factorvae_train = v[MV_FVAE_TRAIN],
                            .dci_disentanglement = v[MV_DCI_D],
                            .dci_completeness = v[MV_DCI_C],
                            .active_dims = (int)v[MV_ACTIVE],
                            .factors_used = (int)v[MV_USED]};
}

int labels_metrics(const metrics_data *shape, int nb, labels_codes_fn get, void *ctx,
                   metrics_result *out, double *seconds) {
    double *vals = yt_calloc((size_t)YT_MAX(1, nb) * MV_N, sizeof *vals);
    double *codes = yt_malloc((size_t)YT_MAX(1L, shape->n * shape->latent) * sizeof *codes);
    metrics_data d = *shape;
    d.codes = codes;
    int rc = YT_OK;
    double t0 = yt_now();
    for (int k = dist_rank(); k < nb && rc == YT_OK; k += dist_size()) {
        rc = get(k, codes, ctx);
        if (rc != YT_OK) break;
        metrics_result r;
        metrics_compute(&d, NULL, &r);
        pack(&r, vals + (size_t)k * MV_N);
    }
    double t = dist_allreduce_max_double(yt_now() - t0);
    if (seconds) *seconds = t;
    rc = dist_agree(rc);
    if (rc == YT_OK) { /* each set's numbers come from one rank, zeros from the others */
        dist_allreduce_sum_double(vals, (size_t)nb * MV_N);
        for (int k = 0; k < nb; k++)
            out[k] = unpack(vals + (size_t)k * MV_N);
    }
    free(codes);
    free(vals);
    return rc;
}
