/* encode.c — `yoto encode` (see encode.h; the file is in docs/FORMATS.md).
 *
 * Order of work: check the output name and the labels (nothing is created on
 * bad input), encode the split batch by batch into row buffers that are
 * written collectively every ENCODE_FLUSH_BYTES, copy the labels, close the
 * file; then every rank reopens it read-only and computes the metrics of its
 * share of the betas (labels.c), rank 0 adds the metrics table and renames
 * the file. */
#include "encode.h"

#include <hdf5.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "dist.h"
#include "fsutil.h"
#include "h5io.h"
#include "labels.h"
#include "loss.h"
#include "metrics.h"
#include "run.h"

#define ENCODE_FORMAT "yoto-encode"
#define ENCODE_FORMAT_VERSION 1
#define ENCODE_FLUSH_BYTES (16L << 20) /* codes buffered per rank between collective writes */

/* What one `yoto encode` works with. */
typedef struct {
    run_handle l;
    double betas[RUN_MAX_BETAS];
    int nb;
    char split[CFG_NAME_MAX];
    char out[CFG_PATH_MAX], tmp[CFG_PATH_MAX + 16];
    char file[CFG_PATH_MAX]; /* the split's data file */
    split_labels lab;        /* its labels (lab.path "" when none) */
    data_desc dd;            /* the split as read (a copy: the source is closed early) */
    double encode_s;         /* the encoding loop, slowest rank */
    double metrics_s;        /* the metrics, slowest rank */
    int32_t *factors;        /* [T][lab.cols] factor indices of the rows, NULL: no metrics */
    int *sizes;              /* [lab.cols] values per factor */
    metrics_result *res;     /* [nb] the metrics, once computed */
    bool metrics;            /* metrics computed */
} encode_job;

/* Datasets of the output being written. */
typedef struct {
    hid_t f, mean, sigma, index, labels;
} out_file;

/* ---- checks before anything is written ---------------------------------------------------- */

static int check_out(encode_job *j, const encode_args *a) {
    if (!a->out || !a->out[0]) return yt_fail(YT_ERR_USAGE, "needs --out FILE.h5");
    if (strlen(a->out) >= sizeof j->out)
        return yt_fail(YT_ERR_USAGE, "--out %s: path too long", a->out);
    snprintf(j->out, sizeof j->out, "%s", a->out);
    char d[CFG_PATH_MAX], b[CFG_PATH_MAX];
    snprintf(d, sizeof d, "%s", a->out);
    snprintf(b, sizeof b, "%s", a->out);
    const char *dir = dirname(d), *base = basename(b);
    snprintf(j->tmp, sizeof j->tmp, "%s/.%s.tmp", dir, base);
    if (fs_is_dir(a->out))
        return yt_fail(YT_ERR_USAGE, "--out %s: is a directory, expected a file name", a->out);
    if (fs_exists(a->out) && !a->force)
        return yt_fail(YT_ERR_USAGE, "--out %s: the file exists; use --force to replace it",
                       a->out);
    if (!fs_is_dir(dir))
        return yt_fail(YT_ERR_USAGE, "--out %s: directory %s does not exist", a->out, dir);
    return h5io_check_mpiio_path(j->tmp, "--out");
}

/* Warns about betas the model was not trained for. */
static void warn_betas(const yoto_config *cfg, const double *betas, int nb) {
    const cfg_weight_dist *kl = &cfg->loss_weights.kl;
    bool fixed = kl->distribution == DIST_FIXED;
    double lo = fixed ? kl->value : kl->low, hi = fixed ? kl->value : kl->high;
    for (int k = 0; k < nb; k++) {
        if (betas[k] >= lo * (1 - 1e-12) && betas[k] <= hi * (1 + 1e-12)) continue;
        if (cfg->model.conditioning.type == COND_NONE)
            dist_warn("beta %g: this model has no conditioning and was trained at beta %g only; "
                      "its codes are the same for every beta",
                      betas[k], lo);
        else if (fixed)
            dist_warn("beta %g: the model was trained at beta %g only (loss_weights.kl)", betas[k],
                      lo);
        else
            dist_warn("beta %g is outside the trained range [%g, %g] (loss_weights.kl): the "
                      "model never saw it, its codes extrapolate",
                      betas[k], lo, hi);
    }
}

/* The split, its file, its labels; agreed over the ranks. */
static int check_input(encode_job *j, const encode_args *a) {
    const yoto_config *cfg = j->l.cfg;
    const char *split = a->split ? a->split : cfg->eval.splits[0];
    snprintf(j->split, sizeof j->split, "%s", split);
    const cfg_split *sp = config_split(cfg, split);
    if (!sp)
        return yt_fail(YT_ERR_USAGE, "%s %s: the config has no such split (data.splits)",
                       a->split ? "--split" : "eval.splits[0]", split);
    snprintf(j->file, sizeof j->file, "%s", sp->file[0] ? sp->file : cfg->data.file);
    data_image_info info;
    int rc = data_probe(j->file, sp->dataset, &info);
    bool none = a->labels && strcmp(a->labels, "none") == 0;
    if (rc == YT_OK && !none)
        rc = labels_find(j->file, sp->dataset, info.n, a->labels,
                         "use --labels DATASET, or --labels none", &j->lab);
    if (rc == YT_OK && !j->lab.path[0] && a->metrics == ENCODE_METRICS_ON)
        rc = yt_fail(YT_ERR_USAGE,
                     "--metrics: split '%s' (%s, images '%s') has no labels (%s): the metrics "
                     "need factor labels; name them with --labels DATASET, or drop --metrics",
                     split, j->file, sp->dataset,
                     a->labels ? "--labels none" : "no dataset 'labels' beside the images");
    return rc;
}

/* ---- the output file ------------------------------------------------------------------------ */

static hid_t make_dataset(hid_t f, const char *name, hid_t type, int nd, const hsize_t *dims) {
    hid_t sp = nd > 0 ? H5Screate_simple(nd, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t ds = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
    return ds;
}

/* rank 0 writes a small dataset whole, the others take part with nothing */
static int write_small(hid_t ds, hid_t mtype, const void *buf) {
    hid_t fs = H5Dget_space(ds);
    if (dist_rank() != 0) H5Sselect_none(fs);
    hid_t ms = H5Scopy(fs), dxpl = h5io_dxpl();
    int rc = H5Dwrite(ds, mtype, ms, fs, dxpl, buf) >= 0 ? YT_OK : YT_ERR_RUNTIME;
    H5Pclose(dxpl);
    H5Sclose(ms);
    H5Sclose(fs);
    return rc;
}

static int create_output(encode_job *j, out_file *o) {
    memset(o, -1, sizeof *o);
    hid_t fapl = h5io_fapl(true);
    o->f = H5Fcreate(j->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (o->f < 0) return yt_fail(YT_ERR_RUNTIME, "cannot create %s", j->tmp);
    const yoto_config *cfg = j->l.cfg;
    const long T = j->dd.rows;
    int rc = YT_OK;
    rc |= h5io_attr_set_string(o->f, "format", ENCODE_FORMAT);
    rc |= h5io_attr_set_long(o->f, "format_version", ENCODE_FORMAT_VERSION);
    rc |= h5io_attr_set_string(o->f, "checkpoint", j->l.ckpt);
    rc |= h5io_attr_set_long(o->f, "step", j->l.st.step);
    rc |= h5io_attr_set_string(o->f, "split", j->split);
    rc |= h5io_attr_set_string(o->f, "data_file", j->file);
    rc |= h5io_attr_set_string(o->f, "images", j->dd.dataset);
    rc |= h5io_attr_set_string(o->f, "labels", j->lab.path);
    rc |= h5io_attr_set_long(o->f, "n_images", T);
    rc |= h5io_attr_set_long(o->f, "latent_dim", j->l.model->latent);
    rc |= h5io_attr_set_string(o->f, "yoto_version", yt_version());
    rc |= h5io_attr_set_string(o->f, "git_commit", yt_git_commit());
    hsize_t nb = (hsize_t)j->nb, cd[3] = {nb, (hsize_t)T, (hsize_t)j->l.model->latent};
    hid_t beta = make_dataset(o->f, "beta", H5T_IEEE_F64LE, 1, &nb);
    if (beta >= 0) rc |= write_small(beta, H5T_NATIVE_DOUBLE, j->betas);
    if (beta >= 0) H5Dclose(beta);
    hid_t wr = make_dataset(o->f, "w_rec", H5T_IEEE_F64LE, 0, NULL); /* scalar */
    if (wr >= 0) rc |= write_small(wr, H5T_NATIVE_DOUBLE, &cfg->eval.w_rec);
    if (wr >= 0) H5Dclose(wr);
    o->mean = make_dataset(o->f, "mean", H5T_IEEE_F32LE, 3, cd);
    o->sigma = make_dataset(o->f, "sigma", H5T_IEEE_F32LE, 3, cd);
    o->index = make_dataset(o->f, "index", H5T_STD_I64LE, 1, cd + 1);
    if (j->lab.path[0]) {
        hsize_t ld[2] = {(hsize_t)T, (hsize_t)j->lab.cols};
        o->labels = make_dataset(o->f, "labels", j->lab.type, j->lab.ndim, ld);
        if (o->labels < 0) rc = 1;
    }
    if (rc != YT_OK || beta < 0 || wr < 0 || o->mean < 0 || o->sigma < 0 || o->index < 0)
        return yt_fail(YT_ERR_RUNTIME, "cannot write the datasets of %s", j->tmp);
    return YT_OK;
}

static int close_output(out_file *o) {
    hid_t *h[] = {&o->mean, &o->sigma, &o->index, &o->labels};
    for (size_t i = 0; i < YT_ARRAY_LEN(h); i++)
        if (*h[i] >= 0) H5Dclose(*h[i]);
    int rc = o->f >= 0 && H5Fclose(o->f) < 0 ? YT_ERR_RUNTIME : YT_OK;
    memset(o, -1, sizeof *o);
    return rc;
}

/* Collective: rows [pos, pos + n) of this rank from buffers mean, sigma [nb][cap][L] and
 * index [cap] (n may be 0 on some ranks). */
static int flush_rows(const out_file *o, const encode_job *j, const float *mean, const float *sigma,
                      const int64_t *index, long pos, long n, long cap) {
    const hsize_t L = (hsize_t)j->l.model->latent;
    hsize_t mdims[3] = {(hsize_t)j->nb, (hsize_t)cap, L};
    hsize_t fstart[3] = {0, (hsize_t)pos, 0}, zero[3] = {0, 0, 0},
            cnt[3] = {(hsize_t)j->nb, (hsize_t)n, L};
    hid_t ms = H5Screate_simple(3, mdims, NULL), fs = H5Dget_space(o->mean);
    hid_t ms1 = H5Screate_simple(1, mdims + 1, NULL), fs1 = H5Dget_space(o->index);
    if (n > 0) {
        H5Sselect_hyperslab(ms, H5S_SELECT_SET, zero, NULL, cnt, NULL);
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, fstart, NULL, cnt, NULL);
        H5Sselect_hyperslab(ms1, H5S_SELECT_SET, zero, NULL, cnt + 1, NULL);
        H5Sselect_hyperslab(fs1, H5S_SELECT_SET, fstart + 1, NULL, cnt + 1, NULL);
    } else {
        H5Sselect_none(ms);
        H5Sselect_none(fs);
        H5Sselect_none(ms1);
        H5Sselect_none(fs1);
    }
    hid_t dxpl = h5io_dxpl();
    int rc = YT_OK;
    if (H5Dwrite(o->mean, H5T_NATIVE_FLOAT, ms, fs, dxpl, mean) < 0 ||
        H5Dwrite(o->sigma, H5T_NATIVE_FLOAT, ms, fs, dxpl, sigma) < 0 ||
        H5Dwrite(o->index, H5T_NATIVE_INT64, ms1, fs1, dxpl, index) < 0)
        rc = yt_fail(YT_ERR_RUNTIME, "%s: cannot write rows %ld..%ld", j->tmp, pos, pos + n);
    H5Pclose(dxpl);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Sclose(ms1);
    H5Sclose(fs1);
    return rc;
}

/* ---- encoding -------------------------------------------------------------------------------- */

/* Every batch of the rank's shard at every beta; rows are buffered and written collectively
 * every `per` batches (the same batches on every rank: all run dd.steps batches). */
static int encode_loop(encode_job *j, data_source *d, const out_file *o) {
    vae_model *m = j->l.model;
    const data_desc *dd = &j->dd;
    const yoto_config *cfg = j->l.cfg;
    const long B = dd->batch, L = m->latent, nb = j->nb;
    const long per = YT_MAX(1L, ENCODE_FLUSH_BYTES / (B * L * nb * 2 * (long)sizeof(float)));
    const long cap = per * B;
    float *bm = yt_malloc((size_t)(nb * cap * L) * sizeof *bm);
    float *bs = yt_malloc((size_t)(nb * cap * L) * sizeof *bs);
    int64_t *bi = yt_malloc((size_t)cap * sizeof *bi);
    real *x = yt_malloc(data_batch_floats(d) * sizeof *x);
    real *wk = yt_malloc((size_t)B * sizeof *wk), *wr = yt_malloc((size_t)B * sizeof *wr);
    real *cond = yt_malloc((size_t)B * 2 * sizeof *cond);
    long fill = 0, pos = dd->shard_begin - dd->begin; /* output row of the buffer's first row */
    int rc = YT_OK;
    double t0 = yt_now();
    for (long b = 0; b < dd->steps && rc == YT_OK; b++) {
        long count = 0;
        rc = dist_agree(data_batch(d, 0, b, x, bi + fill, &count));
        if (rc != YT_OK) break;
        for (long i = 0; i < count; i++) /* eval batches are the shard's rows in order */
            YT_CHECK(bi[fill + i] == dd->shard_begin + b * B + i);
        for (long k = 0; k < nb && count > 0; k++) {
            loss_weights_fixed(&cfg->loss_weights, j->betas[k], cfg->eval.w_rec, (int)count, wk, wr,
                               cond);
            model_encode(m, (int)count, x, cond, NULL); /* the decoder is not needed */
            for (long t = 0; t < count * L; t++) {
                bm[(k * cap + fill) * L + t] = (float)m->mean[t];
                bs[(k * cap + fill) * L + t] = (float)m->sigma[t];
            }
        }
        fill += count;
        if ((b + 1) % per == 0 || b + 1 == dd->steps) {
            rc = dist_agree(flush_rows(o, j, bm, bs, bi, pos, fill, cap));
            pos += fill;
            fill = 0;
        }
    }
    j->encode_s = dist_allreduce_max_double(yt_now() - t0);
    free(bm);
    free(bs);
    free(bi);
    free(x);
    free(wk);
    free(wr);
    free(cond);
    return rc;
}

/* Collective: the labels of this rank's rows, read from the data file (serially: the data
 * source is closed) and written to /labels. */
static int copy_labels(const encode_job *j, const out_file *o) {
    const data_desc *dd = &j->dd;
    const long n = dd->shard_end - dd->shard_begin, K = j->lab.cols;
    hid_t mt = H5Tget_native_type(j->lab.type, H5T_DIR_ASCEND);
    size_t esz = H5Tget_size(mt);
    unsigned char *buf = yt_malloc((size_t)YT_MAX(1L, n * K) * esz);
    int rc = YT_OK;
    hsize_t start[2] = {(hsize_t)dd->shard_begin, 0}, cnt[2] = {(hsize_t)n, (hsize_t)K};
    if (n > 0) {
        hid_t f = H5Fopen(j->file, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t ds = f >= 0 ? H5Dopen2(f, j->lab.path, H5P_DEFAULT) : -1;
        hid_t fs = ds >= 0 ? H5Dget_space(ds) : -1, ms = H5Screate_simple(j->lab.ndim, cnt, NULL);
        if (fs < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0 ||
            H5Dread(ds, mt, ms, fs, H5P_DEFAULT, buf) < 0)
            rc = yt_fail(YT_ERR_RUNTIME, "%s: cannot read labels '%s'", j->file, j->lab.path);
        if (fs >= 0) H5Sclose(fs);
        H5Sclose(ms);
        if (ds >= 0) H5Dclose(ds);
        if (f >= 0) H5Fclose(f);
    }
    rc = dist_agree(rc);
    if (rc == YT_OK) {
        start[0] = (hsize_t)(dd->shard_begin - dd->begin);
        hid_t fs = H5Dget_space(o->labels), ms = H5Screate_simple(j->lab.ndim, cnt, NULL);
        if (n > 0)
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
        else {
            H5Sselect_none(fs);
            H5Sselect_none(ms);
        }
        hid_t dxpl = h5io_dxpl();
        if (H5Dwrite(o->labels, mt, ms, fs, dxpl, buf) < 0)
            rc = yt_fail(YT_ERR_RUNTIME, "%s: cannot write /labels", j->tmp);
        H5Pclose(dxpl);
        H5Sclose(ms);
        H5Sclose(fs);
        rc = dist_agree(rc);
    }
    H5Tclose(mt);
    free(buf);
    return rc;
}

/* ---- metrics --------------------------------------------------------------------------------- */

/* Code set k of labels_metrics: the means of beta k, read back from the closed output. */
typedef struct {
    const encode_job *j;
    hid_t f;
} means_reader;

static int read_means(int k, double *codes, void *ctx) {
    const means_reader *r = ctx;
    const long T = r->j->dd.rows, L = r->j->l.model->latent;
    hid_t ds = H5Dopen2(r->f, "mean", H5P_DEFAULT);
    hid_t fs = ds >= 0 ? H5Dget_space(ds) : -1;
    hsize_t start[3] = {(hsize_t)k, 0, 0}, cnt[3] = {1, (hsize_t)T, (hsize_t)L};
    hsize_t all = (hsize_t)(T * L);
    hid_t ms = H5Screate_simple(1, &all, NULL);
    int rc = fs >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0 &&
                     H5Dread(ds, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, codes) >= 0
                 ? YT_OK
                 : yt_fail(YT_ERR_RUNTIME, "%s: cannot read back /mean", r->j->tmp);
    H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (ds >= 0) H5Dclose(ds);
    return rc;
}

/* Collective, before encoding: the factor indices of the rows to encode (dataset rows
 * [begin, begin + T)) when there are labels and metrics are wanted. ENCODE_METRICS_AUTO
 * and labels that are no discrete factors: a warning, no metrics. */
static int read_factors(encode_job *j, const encode_args *a) {
    if (!j->lab.path[0] || a->metrics == ENCODE_METRICS_OFF) return YT_OK;
    const long T = j->dd.rows, K = j->lab.cols;
    j->factors = yt_malloc((size_t)YT_MAX(1L, T * K) * sizeof *j->factors);
    j->sizes = yt_calloc((size_t)K, sizeof *j->sizes);
    int rc = dist_agree(labels_factors(&j->lab, j->dd.begin, T, j->factors, j->sizes));
    if (rc == YT_OK) return YT_OK;
    free(j->factors);
    j->factors = NULL;
    if (rc != YT_ERR_USAGE || a->metrics != ENCODE_METRICS_AUTO) return rc;
    dist_warn("no disentanglement metrics: %s", yt_errmsg()); /* agreed: the same labels */
    yt_clear_error();
    return YT_OK;
}

/* Collective: the metrics of every beta into j->res (betas spread over the ranks). */
static int compute_metrics(encode_job *j) {
    h5io_errors q;
    h5io_errors_off(&q);
    means_reader r = {j, H5Fopen(j->tmp, H5F_ACC_RDONLY, H5P_DEFAULT)};
    int rc = dist_agree(r.f >= 0 ? YT_OK : yt_fail(YT_ERR_RUNTIME, "cannot reopen %s", j->tmp));
    metrics_data shape = {.n = j->dd.rows,
                          .latent = j->l.model->latent,
                          .nfactors = (int)j->lab.cols,
                          .factors = j->factors,
                          .sizes = j->sizes};
    j->res = yt_calloc((size_t)j->nb, sizeof *j->res);
    if (rc == YT_OK) rc = labels_metrics(&shape, j->nb, read_means, &r, j->res, &j->metrics_s);
    if (r.f >= 0) H5Fclose(r.f);
    h5io_errors_restore(&q);
    /* every rank has closed the file before rank 0 reopens it to write (HDF5's file lock) */
    rc = dist_agree(rc);
    j->metrics = rc == YT_OK;
    return rc;
}

typedef struct {
    double beta, mig, sap, factorvae, factorvae_train, dci_disentanglement, dci_completeness;
    int64_t active_dims, factors_used, n_images;
} metrics_row;

/* Rank 0 adds /metrics and /factor_sizes to the closed file. */
static int write_metrics(const encode_job *j) {
    hid_t f = H5Fopen(j->tmp, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return yt_fail(YT_ERR_RUNTIME, "cannot reopen %s", j->tmp);
    metrics_row *rows = yt_calloc((size_t)j->nb, sizeof *rows);
    for (int k = 0; k < j->nb; k++) {
        const metrics_result *v = &j->res[k];
        rows[k] = (metrics_row){j->betas[k],
                                v->mig,
                                v->sap,
                                v->factorvae,
                                v->factorvae_train,
                                v->dci_disentanglement,
                                v->dci_completeness,
                                v->active_dims,
                                v->factors_used,
                                j->dd.rows};
    }
    hid_t ct = H5Tcreate(H5T_COMPOUND, sizeof(metrics_row));
    H5Tinsert(ct, "beta", HOFFSET(metrics_row, beta), H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "mig", HOFFSET(metrics_row, mig), H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "sap", HOFFSET(metrics_row, sap), H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "factorvae", HOFFSET(metrics_row, factorvae), H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "factorvae_train", HOFFSET(metrics_row, factorvae_train), H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "dci_disentanglement", HOFFSET(metrics_row, dci_disentanglement),
              H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "dci_completeness", HOFFSET(metrics_row, dci_completeness), H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "active_dims", HOFFSET(metrics_row, active_dims), H5T_NATIVE_INT64);
    H5Tinsert(ct, "factors_used", HOFFSET(metrics_row, factors_used), H5T_NATIVE_INT64);
    H5Tinsert(ct, "n_images", HOFFSET(metrics_row, n_images), H5T_NATIVE_INT64);
    hsize_t n = (hsize_t)j->nb, K = (hsize_t)j->lab.cols;
    hid_t sp = H5Screate_simple(1, &n, NULL), ksp = H5Screate_simple(1, &K, NULL);
    hid_t ds = H5Dcreate2(f, "metrics", ct, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t fz =
        H5Dcreate2(f, "factor_sizes", H5T_STD_I32LE, ksp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = ds >= 0 && fz >= 0 && H5Dwrite(ds, ct, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0 &&
                     H5Dwrite(fz, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, j->sizes) >= 0
                 ? YT_OK
                 : YT_ERR_RUNTIME;
    if (rc == YT_OK)
        rc = h5io_attr_set_string(ds, "definitions", "docs/METRICS.md (seed 0, posterior means)");
    if (ds >= 0) H5Dclose(ds);
    if (fz >= 0) H5Dclose(fz);
    H5Sclose(sp);
    H5Sclose(ksp);
    H5Tclose(ct);
    free(rows);
    if (H5Fclose(f) < 0) rc = YT_ERR_RUNTIME;
    return rc == YT_OK ? YT_OK : yt_fail(YT_ERR_RUNTIME, "cannot write /metrics to %s", j->tmp);
}

/* ---- `yoto encode` ----------------------------------------------------------------------------
 */

static void report(const encode_job *j) {
    const long T = j->dd.rows;
    double ips = j->encode_s > 0 ? (double)T * j->nb / j->encode_s : 0;
    printf("yoto encode: %s (step %ld), split %s: %ld images x %d beta%s on %d rank%s\n", j->l.ckpt,
           j->l.st.step, j->split, T, j->nb, j->nb > 1 ? "s" : "", dist_size(),
           dist_size() > 1 ? "s" : "");
    printf("  encoded in %.3f s: %.1f images/s (image x beta encodings, all ranks)\n", j->encode_s,
           ips);
    printf("  wrote %s: mean, sigma [%d, %ld, %d] float32, index%s%s\n", j->out, j->nb, T,
           j->l.model->latent, j->lab.path[0] ? ", labels" : "", j->metrics ? ", metrics" : "");
    if (!j->metrics) return;
    printf("\n%10s %8s %8s %10s %8s %8s %7s\n", "beta", "MIG", "SAP", "FactorVAE", "DCI-D", "DCI-C",
           "active");
    for (int k = 0; k < j->nb; k++) {
        const metrics_result *v = &j->res[k];
        printf("%10g %8.4f %8.4f %10.4f %8.4f %8.4f %7d\n", j->betas[k], v->mig, v->sap,
               v->factorvae, v->dci_disentanglement, v->dci_completeness, v->active_dims);
    }
    printf("(%ld images, %d of %ld label columns vary; docs/METRICS.md; %.2f s)\n", T,
           j->res[0].factors_used, j->lab.cols, j->metrics_s);
}

/* Everything after the checks: the temporary file, encoding, labels, metrics. */
static int encode_to_tmp(encode_job *j, const encode_args *a) {
    data_source *d = NULL;
    int rc = data_open_eval(&d, j->l.cfg, j->split, dist_rank(), dist_size(), NULL);
    if (rc != YT_OK) return rc;
    j->dd = *data_describe(d);
    rc = read_factors(j, a); /* labels that are no factors: found before the work */
    if (rc != YT_OK) {
        data_close(d);
        return rc;
    }
    out_file o;
    rc = dist_agree(create_output(j, &o));
    if (rc == YT_OK) rc = encode_loop(j, d, &o);
    data_close(d);
    if (rc == YT_OK && j->lab.path[0]) rc = copy_labels(j, &o);
    int crc = close_output(&o);
    rc = dist_agree(rc != YT_OK ? rc : crc != YT_OK ? yt_fail(crc, "cannot close %s", j->tmp) : rc);
    if (rc == YT_OK && j->factors) rc = compute_metrics(j);
    if (rc == YT_OK && j->metrics) rc = dist_agree(dist_rank() == 0 ? write_metrics(j) : YT_OK);
    return rc;
}

int encode_run(const encode_args *a) {
    encode_job *j = yt_calloc(1, sizeof *j);
    j->lab.type = -1;
    int rc = dist_agree(check_out(j, a));
    /* the whole split unless --set eval.max_batches says otherwise */
    const char **sets = yt_calloc((size_t)a->nsets + 1, sizeof *sets);
    sets[0] = "eval.max_batches=0";
    for (int i = 0; i < a->nsets; i++)
        sets[i + 1] = a->sets[i];
    if (rc == YT_OK) rc = run_open(a->target, sets, a->nsets + 1, &j->l);
    if (rc == YT_OK) rc = dist_agree(run_betas(j->l.cfg, a->betas, j->betas, &j->nb));
    if (rc == YT_OK) rc = run_load_model(&j->l, (int)j->l.cfg->eval.batch_size, false);
    if (rc == YT_OK) rc = dist_agree(check_input(j, a));
    if (rc == YT_OK) {
        warn_betas(j->l.cfg, j->betas, j->nb);
        rc = encode_to_tmp(j, a);
        if (rc == YT_OK && dist_rank() == 0) rc = fs_rename_durable(j->tmp, j->out);
        rc = dist_agree(rc);
        if (rc != YT_OK && dist_rank() == 0) unlink(j->tmp); /* nothing half-written stays */
    }
    if (rc == YT_OK && dist_rank() == 0) report(j);
    free(j->factors);
    free(j->sizes);
    free(j->res);
    free(sets);
    labels_close(&j->lab);
    run_close(&j->l);
    free(j);
    return rc;
}
