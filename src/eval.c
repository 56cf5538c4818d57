/* eval.c — beta tables over eval splits (see eval.h): computing them (with
 * the disentanglement metrics when the split has labels), merging them into
 * eval/step-N.h5, writing .csv / .md / JSON. */
#include "eval.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "data.h"
#include "dist.h"
#include "fsutil.h"
#include "h5io.h"
#include "labels.h"
#include "loss.h"
#include "metrics.h"
#include "rng.h"
#include "run.h"

/* ---- the columns ------------------------------------------------------------------------
 * One line per eval_row member that is written: the HDF5 compound, the CSV,
 * the Markdown and the JSON all follow this table, in this order. */

typedef enum { COL_REAL, COL_LONG, COL_TEXT } col_kind;

typedef struct {
    const char *name;
    col_kind kind;
    size_t off;
    const char *md; /* Markdown format of a number */
} eval_col;

#define COL(member, kind, md)                                                                      \
    { #member, kind, offsetof(eval_row, member), md }
static const eval_col COLS[] = {
    COL(beta, COL_REAL, "%g"),
    COL(w_rec, COL_REAL, "%g"),
    COL(z, COL_TEXT, NULL),
    COL(n_images, COL_LONG, NULL),
    COL(reconstruction_loss, COL_REAL, "%.4f"),
    COL(kl_loss, COL_REAL, "%.4f"),
    COL(full_loss, COL_REAL, "%.4f"),
    COL(mig, COL_REAL, "%.4f"),
    COL(sap, COL_REAL, "%.4f"),
    COL(factorvae, COL_REAL, "%.4f"),
    COL(dci_disentanglement, COL_REAL, "%.4f"),
    COL(dci_completeness, COL_REAL, "%.4f"),
    COL(max_batches, COL_LONG, NULL),
    COL(batch_size, COL_LONG, NULL),
    COL(seed, COL_LONG, NULL),
};
#define NCOLS ((int)YT_ARRAY_LEN(COLS))

static double col_real(const eval_row *r, int c) {
    return *(const double *)((const char *)r + COLS[c].off);
}
static long col_long(const eval_row *r, int c) {
    return *(const long *)((const char *)r + COLS[c].off);
}
static const char *col_text(const eval_row *r, int c) {
    return (const char *)r + COLS[c].off;
}

/* a row of an older file that lacks some columns: NaN, -1, "" */
static eval_row row_unknown(void) {
    eval_row r;
    memset(&r, 0, sizeof r);
    for (int c = 0; c < NCOLS; c++) {
        char *p = (char *)&r + COLS[c].off;
        if (COLS[c].kind == COL_REAL) *(double *)p = NAN;
        if (COLS[c].kind == COL_LONG) *(long *)p = -1;
    }
    return r;
}

/* ---- tables in memory ------------------------------------------------------------------- */

static void table_add(eval_table *t, const eval_row *r) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->row = yt_realloc(t->row, (size_t)t->cap * sizeof *t->row);
    }
    t->row[t->n++] = *r;
}

void eval_table_free(eval_table *t) {
    free(t->row);
    t->row = NULL;
    t->n = t->cap = 0;
}

void eval_file_free(eval_file *f) {
    for (int i = 0; i < f->ntables; i++)
        eval_table_free(&f->table[i]);
    f->ntables = 0;
}

static int cmp_double(double a, double b) {
    return (a > b) - (a < b);
}

/* the key order: beta, w_rec, z, n_images */
static int row_cmp(const void *pa, const void *pb) {
    const eval_row *a = pa, *b = pb;
    int c = cmp_double(a->beta, b->beta);
    if (!c) c = cmp_double(a->w_rec, b->w_rec);
    if (!c) c = strcmp(a->z, b->z);
    if (!c) c = (a->n_images > b->n_images) - (a->n_images < b->n_images);
    return c;
}

static bool same_key(const eval_row *a, const eval_row *b) {
    return row_cmp(a, b) == 0;
}

static bool same_images(const eval_table *a, const eval_table *b) {
    return strcmp(a->data_file, b->data_file) == 0 && strcmp(a->dataset, b->dataset) == 0 &&
           strcmp(a->range, b->range) == 0 && a->first_row == b->first_row &&
           a->split_rows == b->split_rows;
}

/* a copy of t's identity (split and images), no rows */
static void table_head(eval_table *dst, const eval_table *src) {
    *dst = *src;
    dst->row = NULL;
    dst->n = dst->cap = 0;
}

void eval_file_init(eval_file *f, const vae_model *m, long step, const char *checkpoint,
                    const char *written_by) {
    memset(f, 0, sizeof *f);
    f->step = step;
    snprintf(f->param_checksum, sizeof f->param_checksum, "%016llx",
             (unsigned long long)ckpt_param_checksum(&m->params));
    snprintf(f->checkpoint, sizeof f->checkpoint, "%s", checkpoint ? checkpoint : "");
    snprintf(f->written_by, sizeof f->written_by, "%s", written_by);
}

/* ---- computing a table ------------------------------------------------------------------ */

/* the settings part of a row: what made it */
static eval_row row_settings(const yoto_config *cfg, double beta) {
    eval_row r = row_unknown();
    r.beta = beta;
    r.w_rec = cfg->eval.w_rec;
    snprintf(r.z, sizeof r.z, "%s", cfg->eval.z == EVAL_Z_MEAN ? "mean" : "sample");
    r.max_batches = cfg->eval.max_batches;
    r.batch_size = cfg->eval.batch_size;
    r.seed = (long)cfg->experiment.seed;
    return r;
}

/* eps for one image: keyed by (seed, beta, dataset row), so a
 * beta's row is the same whatever list it was evaluated in and on any rank
 * count */
static void eval_noise(uint64_t seed, double beta, long row, int L, real *eps) {
    uint64_t bits;
    memcpy(&bits, &beta, sizeof bits);
    rng_stream e =
        rng_stream_make(seed, RNG_EVAL, (uint32_t)(bits ^ (bits >> 32)), (uint32_t)row, 0);
    for (int j = 0; j < L; j++)
        eps[j] = (real)rng_normal(&e);
}

/* The factors of the rows a table evaluates, on every rank (k = 0: no metrics). */
typedef struct {
    char path[CFG_PATH_MAX]; /* the labels dataset */
    long n;                  /* rows: the table's n_images */
    long k;                  /* label columns */
    int32_t *factors;        /* [n][k] value indices */
    int *sizes;              /* [k] */
} eval_factors;

static void factors_free(eval_factors *ef) {
    free(ef->factors);
    free(ef->sizes);
    memset(ef, 0, sizeof *ef);
}

/* Collective: rank 0 finds the labels of the split's rows [begin, begin + rows) and turns them
 * into factors, every rank gets them. eval.metrics auto: no labels, or labels that are no
 * discrete factors (a warning), leave ef empty; on: they are errors. */
static int read_factors(const yoto_config *cfg, const data_desc *dd, eval_factors *ef) {
    memset(ef, 0, sizeof *ef);
    const cfg_eval_metrics mode = cfg->eval.metrics;
    if (mode == EVAL_METRICS_OFF) return YT_OK;
    const char *hint = "eval.metrics: off evaluates without the metrics";
    int rc = YT_OK;
    if (dist_rank() == 0) {
        split_labels l;
        rc = labels_find(dd->file, dd->dataset, dd->dataset_rows, NULL, hint, &l);
        if (rc == YT_OK && l.path[0]) {
            snprintf(ef->path, sizeof ef->path, "%s", l.path);
            ef->n = dd->rows;
            ef->k = l.cols;
            ef->factors = yt_malloc((size_t)YT_MAX(1L, ef->n * ef->k) * sizeof *ef->factors);
            ef->sizes = yt_calloc((size_t)ef->k, sizeof *ef->sizes);
            rc = labels_factors(&l, dd->begin, dd->rows, ef->factors, ef->sizes);
        }
        labels_close(&l);
    }
    rc = dist_agree(rc);
    if (rc != YT_OK) {
        factors_free(ef);
        if (rc != YT_ERR_USAGE || mode != EVAL_METRICS_AUTO) return rc;
        dist_warn("split %s: no disentanglement metrics: %s", dd->split, yt_errmsg());
        yt_clear_error();
        return YT_OK;
    }
    dist_bcast(ef, sizeof *ef, 0); /* the pointers are replaced on ranks > 0 below */
    if (dist_rank() > 0 && ef->k > 0) {
        ef->factors = yt_malloc((size_t)YT_MAX(1L, ef->n * ef->k) * sizeof *ef->factors);
        ef->sizes = yt_calloc((size_t)ef->k, sizeof *ef->sizes);
    }
    if (ef->k > 0) {
        dist_bcast(ef->factors, (size_t)(ef->n * ef->k) * sizeof *ef->factors, 0);
        dist_bcast(ef->sizes, (size_t)ef->k * sizeof *ef->sizes, 0);
    }
    if (ef->k == 0 && mode == EVAL_METRICS_ON) /* the same answer on every rank */
        return yt_fail(YT_ERR_USAGE,
                       "eval.metrics: on (set at %s): split '%s' (%s, images '%s') has no labels "
                       "(no dataset 'labels' beside the images); the metrics need factor labels: "
                       "set eval.metrics to auto or off",
                       config_where(cfg, "eval.metrics"), dd->split, dd->file, dd->dataset);
    return YT_OK;
}

/* Code set k of labels_metrics: beta k's means out of all [n][nb][L]. */
typedef struct {
    const float *all;
    long n;
    int nb, L;
} gathered_codes;

static int codes_of_beta(int k, double *codes, void *ctx) {
    const gathered_codes *g = ctx;
    for (long i = 0; i < g->n; i++)
        for (int j = 0; j < g->L; j++)
            codes[i * g->L + j] = g->all[((size_t)i * g->nb + (size_t)k) * g->L + j];
    return YT_OK;
}

/* Collective: every rank's means mine [its rows][nb][L] gathered, the metrics of each beta
 * into the rows of out (in beta order, as eval_split adds them). */
static int add_metrics(eval_table *out, const eval_factors *ef, const float *mine, long mine_rows,
                       int nb, int L) {
    const size_t total = (size_t)ef->n * (size_t)nb * (size_t)L;
    float *all = yt_malloc(YT_MAX((size_t)1, total) * sizeof *all);
    size_t got = dist_allgatherv_float(mine, (size_t)mine_rows * nb * L, all, total);
    YT_CHECK(got == total);
    gathered_codes g = {all, ef->n, nb, L};
    metrics_data shape = {.n = ef->n,
                          .latent = L,
                          .nfactors = (int)ef->k,
                          .factors = ef->factors,
                          .sizes = ef->sizes};
    metrics_result *res = yt_calloc((size_t)nb, sizeof *res);
    int rc = labels_metrics(&shape, nb, codes_of_beta, &g, res, NULL);
    for (int k = 0; k < nb && rc == YT_OK; k++) {
        eval_row *r = &out->row[out->n - nb + k];
        r->mig = res[k].mig;
        r->sap = res[k].sap;
        r->factorvae = res[k].factorvae;
        r->dci_disentanglement = res[k].dci_disentanglement;
        r->dci_completeness = res[k].dci_completeness;
    }
    if (rc == YT_OK) snprintf(out->labels, sizeof out->labels, "%s", ef->path);
    free(res);
    free(all);
    return rc;
}

/* What one pass over a split's batches needs and sums. */
typedef struct {
    vae_model *m;
    const yoto_config *cfg;
    const double *betas;
    int nb;
    double *sum;  /* [nb][3]: recon, kl, images */
    float *codes; /* [shard rows][nb][L] posterior means, or NULL */
} eval_pass;

/* Every batch of this rank's shard at every beta. Local but for the agreed read status. */
static int forward_batches(eval_pass *p, data_source *d) {
    const data_desc *dd = data_describe(d);
    const int B = (int)dd->batch, L = p->m->latent, nb = p->nb;
    const yoto_config *cfg = p->cfg;
    YT_CHECK(B <= p->m->max_batch);
    real *x = yt_malloc(data_batch_floats(d) * sizeof *x);
    real *eps = yt_malloc((size_t)B * L * sizeof *eps);
    real *wk = yt_malloc((size_t)B * sizeof *wk), *wr = yt_malloc((size_t)B * sizeof *wr);
    real *cond = yt_malloc((size_t)B * 2 * sizeof *cond);
    int64_t *rows = yt_malloc((size_t)B * sizeof *rows);
    const bool sample = cfg->eval.z == EVAL_Z_SAMPLE;
    int rc = YT_OK;
    for (long b = 0; b < dd->steps && rc == YT_OK; b++) {
        long count = 0;
        rc = data_batch(d, 0, b, x, rows, &count);
        /* a read error on one rank: every rank learns it here (each batch) */
        rc = dist_agree(rc);
        if (rc != YT_OK || count == 0) continue;
        for (long i = 0; p->codes && i < count; i++) /* the shard's rows in order */
            YT_CHECK(rows[i] == dd->shard_begin + b * B + i);
        for (int k = 0; k < nb; k++) {
            loss_weights_fixed(&cfg->loss_weights, p->betas[k], cfg->eval.w_rec, (int)count, wk, wr,
                               cond);
            for (long i = 0; sample && i < count; i++)
                eval_noise(cfg->experiment.seed, p->betas[k], dd->shard_begin + b * B + i, L,
                           eps + i * L);
            model_losses(p->m, (int)count, x, cond, sample ? eps : NULL);
            for (long i = 0; i < count; i++) {
                p->sum[3 * k] += p->m->recon[i];
                p->sum[3 * k + 1] += p->m->kl[i];
            }
            p->sum[3 * k + 2] += (double)count;
            for (long i = 0; p->codes && i < count; i++)
                for (int j = 0; j < L; j++)
                    p->codes[(((size_t)b * B + i) * nb + k) * L + j] = (float)p->m->mean[i * L + j];
        }
    }
    free(x);
    free(eps);
    free(wk);
    free(wr);
    free(cond);
    free(rows);
    return rc;
}

int eval_split(vae_model *m, const yoto_config *cfg, const char *split, const double *betas, int nb,
               eval_table *out) {
    YT_CHECK(nb > 0 && nb <= EVAL_MAX_BETAS);
    const double t0 = yt_now();
    memset(out, 0, sizeof *out);
    snprintf(out->split, sizeof out->split, "%s", split);
    data_source *d = NULL;
    int rc = data_open_eval(&d, cfg, split, dist_rank(), dist_size(), NULL);
    if (rc != YT_OK) return rc;
    const data_desc *dd = data_describe(d);
    snprintf(out->data_file, sizeof out->data_file, "%s", dd->file);
    snprintf(out->dataset, sizeof out->dataset, "%s", dd->dataset);
    snprintf(out->range, sizeof out->range, "%s", dd->range);
    out->first_row = dd->begin;
    out->split_rows = dd->end - dd->begin;
    const int L = m->latent;
    const long mine = dd->shard_end - dd->shard_begin;
    eval_factors ef;
    double tm = yt_now();
    rc = read_factors(cfg, dd, &ef); /* before the work: eval.metrics: on fails here */
    tm = yt_now() - tm;
    eval_pass p = {m, cfg, betas, nb, yt_calloc((size_t)nb * 3, sizeof(double)), NULL};
    if (ef.k > 0) p.codes = yt_malloc((size_t)YT_MAX(1L, mine * nb * L) * sizeof *p.codes);
    if (rc == YT_OK) rc = forward_batches(&p, d);
    data_close(d);
    if (rc == YT_OK) {
        dist_allreduce_sum_double(p.sum, (size_t)nb * 3);
        for (int k = 0; k < nb; k++) {
            eval_row r = row_settings(cfg, betas[k]);
            double n = p.sum[3 * k + 2];
            r.reconstruction_loss = n > 0 ? p.sum[3 * k] / n : NAN;
            r.kl_loss = n > 0 ? p.sum[3 * k + 1] / n : NAN;
            r.full_loss = r.w_rec * r.reconstruction_loss + r.beta * r.kl_loss;
            r.n_images = (long)n;
            table_add(out, &r);
        }
    }
    if (rc == YT_OK && ef.k > 0) {
        double t1 = yt_now();
        rc = add_metrics(out, &ef, p.codes, mine, nb, L);
        tm += yt_now() - t1;
    }
    out->metrics_seconds = dist_allreduce_max_double(tm);
    out->seconds = dist_allreduce_max_double(yt_now() - t0);
    factors_free(&ef);
    free(p.sum);
    free(p.codes);
    return rc;
}

/* ---- HDF5 -------------------------------------------------------------------------------- */

/* The in-memory compound of eval_row: every column, or (only >= 0) those
 * that the file type `only` has, matched by name. */
static hid_t row_type(hid_t only) {
    hid_t ct = H5Tcreate(H5T_COMPOUND, sizeof(eval_row));
    hid_t zt = H5Tcopy(H5T_C_S1);
    H5Tset_size(zt, EVAL_Z_TEXT_MAX);
    H5Tset_strpad(zt, H5T_STR_NULLPAD);
    h5io_errors q;
    h5io_errors_off(&q);
    for (int c = 0; c < NCOLS; c++) {
        if (only >= 0 && H5Tget_member_index(only, COLS[c].name) < 0) continue;
        hid_t t = COLS[c].kind == COL_REAL   ? H5T_NATIVE_DOUBLE
                  : COLS[c].kind == COL_LONG ? H5T_NATIVE_LONG
                                             : zt;
        H5Tinsert(ct, COLS[c].name, COLS[c].off, t);
    }
    h5io_errors_restore(&q);
    H5Tclose(zt);
    return ct;
}

static int write_table(hid_t h, hid_t ft, hid_t mt, const eval_table *t) {
    hsize_t n = (hsize_t)t->n;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(h, t->split, ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = ds >= 0 && (n == 0 || H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->row) >= 0)
                 ? YT_OK
                 : YT_ERR_RUNTIME;
    if (ds >= 0) {
        rc |= h5io_attr_set_string(ds, "data_file", t->data_file);
        rc |= h5io_attr_set_string(ds, "dataset", t->dataset);
        rc |= h5io_attr_set_string(ds, "range", t->range);
        rc |= h5io_attr_set_long(ds, "first_row", t->first_row);
        rc |= h5io_attr_set_long(ds, "split_rows", t->split_rows);
        rc |= h5io_attr_set_string(ds, "labels", t->labels);
        H5Dclose(ds);
    }
    H5Sclose(sp);
    return rc;
}

static int write_h5(const char *path, const eval_file *f) {
    hid_t h = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (h < 0) return yt_fail(YT_ERR_RUNTIME, "cannot create %s", path);
    hid_t mt = row_type(-1), ft = H5Tcopy(mt);
    H5Tpack(ft); /* the file's columns without the struct's padding */
    int rc = YT_OK;
    rc |= h5io_attr_set_string(h, "format", EVAL_FORMAT);
    rc |= h5io_attr_set_long(h, "format_version", EVAL_FORMAT_VERSION);
    rc |= h5io_attr_set_long(h, "step", f->step);
    rc |= h5io_attr_set_string(h, "param_checksum", f->param_checksum);
    rc |= h5io_attr_set_string(h, "checkpoint", f->checkpoint);
    rc |= h5io_attr_set_string(h, "written_by", f->written_by);
    rc |= h5io_attr_set_string(h, "yoto_version", f->yoto_version);
    rc |= h5io_attr_set_string(h, "git_commit", f->git_commit);
    rc |= h5io_attr_set_string(h, "written", f->written);
    for (int i = 0; i < f->ntables && rc == YT_OK; i++)
        rc = write_table(h, ft, mt, &f->table[i]);
    H5Tclose(ft);
    H5Tclose(mt);
    if (H5Fclose(h) < 0) rc = YT_ERR_RUNTIME;
    return rc == YT_OK ? YT_OK : yt_fail(YT_ERR_RUNTIME, "cannot write %s", path);
}

static void attr_text(hid_t obj, const char *name, char *dst, size_t size) {
    char *s = h5io_attr_get_string(obj, name);
    snprintf(dst, size, "%s", s ? s : "");
    free(s);
}

/* Names of the file type's columns that eval_row does not have, into
 * extra (", "-separated, appended). */
static void unknown_columns(hid_t ft, char *extra, size_t size) {
    int nm = H5Tget_nmembers(ft);
    for (int m = 0; m < nm; m++) {
        char *name = H5Tget_member_name(ft, (unsigned)m);
        bool known = false;
        for (int c = 0; name && c < NCOLS; c++)
            known |= strcmp(name, COLS[c].name) == 0;
        size_t len = strlen(extra);
        if (name && !known && !strstr(extra, name))
            snprintf(extra + len, size - len, "%s%s", len ? ", " : "", name);
        H5free_memory(name);
    }
}

/* One table of an open file; false if it is not a 1-D compound we can read. */
static bool read_table(hid_t h, const char *name, eval_table *t, char *extra, size_t esize) {
    memset(t, 0, sizeof *t);
    hid_t ds = H5Dopen2(h, name, H5P_DEFAULT);
    if (ds < 0) return false;
    hid_t ft = H5Dget_type(ds), sp = H5Dget_space(ds);
    hsize_t n = 0;
    bool ok = H5Tget_class(ft) == H5T_COMPOUND && H5Sget_simple_extent_ndims(sp) == 1 &&
              H5Sget_simple_extent_dims(sp, &n, NULL) == 1;
    if (ok) {
        snprintf(t->split, sizeof t->split, "%s", name);
        attr_text(ds, "data_file", t->data_file, sizeof t->data_file);
        attr_text(ds, "dataset", t->dataset, sizeof t->dataset);
        attr_text(ds, "range", t->range, sizeof t->range);
        attr_text(ds, "labels", t->labels, sizeof t->labels);
        if (h5io_attr_get_long(ds, "first_row", &t->first_row) != YT_OK) t->first_row = -1;
        if (h5io_attr_get_long(ds, "split_rows", &t->split_rows) != YT_OK) t->split_rows = -1;
        t->n = t->cap = (int)n;
        t->row = yt_malloc((n ? n : 1) * sizeof *t->row);
        for (hsize_t i = 0; i < n; i++)
            t->row[i] = row_unknown();
        hid_t mt = row_type(ft); /* the columns both know; the others stay unknown */
        ok = n == 0 || H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->row) >= 0;
        H5Tclose(mt);
        for (hsize_t i = 0; i < n; i++)
            t->row[i].z[EVAL_Z_TEXT_MAX - 1] = '\0';
        unknown_columns(ft, extra, esize);
    }
    H5Tclose(ft);
    H5Sclose(sp);
    H5Dclose(ds);
    if (!ok) eval_table_free(t);
    return ok;
}

/* The eval file at path into old (rank 0, serial). false with the reason in
 * why when it cannot be read as one (old is then empty). */
static bool read_h5(const char *path, eval_file *old, char *extra, size_t esize, char *why,
                    size_t wsize) {
    memset(old, 0, sizeof *old);
    h5io_errors q;
    h5io_errors_off(&q);
    hid_t h = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    char format[32] = "";
    if (h >= 0) attr_text(h, "format", format, sizeof format);
    bool ok = h >= 0 && strcmp(format, EVAL_FORMAT) == 0;
    if (!ok) snprintf(why, wsize, "it is not a yoto eval file");
    if (ok) {
        h5io_attr_get_long(h, "step", &old->step);
        attr_text(h, "param_checksum", old->param_checksum, sizeof old->param_checksum);
        attr_text(h, "checkpoint", old->checkpoint, sizeof old->checkpoint);
        attr_text(h, "written_by", old->written_by, sizeof old->written_by);
        H5G_info_t gi;
        ok = H5Gget_info(h, &gi) >= 0;
        for (hsize_t i = 0; ok && i < gi.nlinks && old->ntables < EVAL_MAX_TABLES; i++) {
            char name[CFG_NAME_MAX];
            if (H5Lget_name_by_idx(h, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                                   H5P_DEFAULT) < 0)
                continue;
            if (read_table(h, name, &old->table[old->ntables], extra, esize)) old->ntables++;
        }
        if (!ok) snprintf(why, wsize, "its tables cannot be read");
    }
    if (h >= 0) H5Fclose(h);
    h5io_errors_restore(&q);
    if (!ok) eval_file_free(old);
    return ok;
}

/* ---- merging ---------------------------------------------------------------------------- */

/* rows of `add` into t: a row replaces the row of the same key; counts
 * the rows it adds to *added */
static void merge_rows(eval_table *t, const eval_table *add, bool replace, long *added) {
    for (int k = 0; k < add->n; k++) {
        int j = 0;
        while (j < t->n && !same_key(&t->row[j], &add->row[k]))
            j++;
        if (j < t->n) {
            if (replace) t->row[j] = add->row[k];
            continue;
        }
        table_add(t, &add->row[k]);
        if (added) (*added)++;
    }
}

static int find_table(const eval_file *f, const char *split) {
    for (int i = 0; i < f->ntables; i++)
        if (strcmp(f->table[i].split, split) == 0) return i;
    return -1;
}

static void note_add(eval_file *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_add(eval_file *f, const char *fmt, ...) {
    size_t len = strlen(f->note);
    if (len && len + 2 < sizeof f->note) {
        snprintf(f->note + len, sizeof f->note - len, "; ");
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->note + len, sizeof f->note - len, fmt, ap);
    va_end(ap);
}

static int cmp_table(const void *a, const void *b) {
    return strcmp(((const eval_table *)a)->split, ((const eval_table *)b)->split);
}

/* out = the new tables of f merged with old (which may be empty): the rows
 * of f win; old tables of the same parameters and images are kept. */
static void merge(const eval_file *f, const eval_file *old, eval_file *out) {
    *out = *f;
    memset(out->table, 0, sizeof out->table);
    out->ntables = 0;
    out->kept = 0;
    for (int i = 0; i < f->ntables; i++) {
        eval_table *t = &out->table[out->ntables++];
        table_head(t, &f->table[i]);
        merge_rows(t, &f->table[i], true, NULL);
    }
    bool same_model = strcmp(old->param_checksum, f->param_checksum) == 0;
    if (old->ntables && !same_model)
        note_add(out,
                 "the earlier tables of step %ld were of other parameters (param_checksum %s, "
                 "now %s): replaced",
                 f->step, old->param_checksum[0] ? old->param_checksum : "none", f->param_checksum);
    for (int i = 0; same_model && i < old->ntables; i++) {
        const eval_table *o = &old->table[i];
        int j = find_table(out, o->split);
        if (j >= 0 && !same_images(&out->table[j], o)) {
            note_add(out, "table %s replaced: its images were rows %ld.. of %s '%s' (range '%s')",
                     o->split, o->first_row, o->data_file, o->dataset, o->range);
            continue;
        }
        if (j < 0) {
            if (out->ntables == EVAL_MAX_TABLES) continue;
            j = out->ntables++;
            table_head(&out->table[j], o);
        }
        merge_rows(&out->table[j], o, false, &out->kept);
        if (!out->table[j].labels[0]) /* kept rows may carry metrics of these labels */
            snprintf(out->table[j].labels, sizeof out->table[j].labels, "%s", o->labels);
    }
    qsort(out->table, (size_t)out->ntables, sizeof *out->table, cmp_table);
    for (int i = 0; i < out->ntables; i++)
        qsort(out->table[i].row, (size_t)out->table[i].n, sizeof(eval_row), row_cmp);
}

/* ---- text: CSV, Markdown, JSON ---------------------------------------------------------- */

/* a growing text buffer: rows are as long as their numbers ("%.4f" of 1e300
 * is 305 characters), so no fixed per-row budget holds */
typedef struct {
    char *s;
    size_t len, cap;
} text_buf;

static void text_add(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(text_buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        YT_CHECK(n >= 0);
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = 2 * (b->cap + (size_t)n);
        b->s = yt_realloc(b->s, b->cap);
    }
}

static text_buf text_new(void) {
    return (text_buf){yt_malloc(4096), 0, 4096};
}

/* a JSON string: quotes, backslashes and control characters escaped */
static void json_string(text_buf *b, const char *s) {
    text_add(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            text_add(b, "\\%c", ch);
        else if (ch < 0x20)
            text_add(b, "\\u%04x", ch);
        else
            text_add(b, "%c", ch);
    }
    text_add(b, "\"");
}

/* one cell of row r, column c: csv (full precision), md or json */
typedef enum { CELL_CSV, CELL_MD, CELL_JSON } cell_style;

static void cell(text_buf *b, const eval_row *r, int c, cell_style style) {
    switch (COLS[c].kind) {
    case COL_REAL: {
        double v = col_real(r, c);
        if (style == CELL_JSON && !isfinite(v))
            text_add(b, "null");
        else if (style == CELL_MD)
            text_add(b, COLS[c].md, v);
        else
            text_add(b, style == CELL_JSON ? "%.17g" : "%.10g", v);
        return;
    }
    case COL_LONG:
        text_add(b, "%ld", col_long(r, c));
        return;
    case COL_TEXT:
        if (style == CELL_JSON)
            json_string(b, col_text(r, c));
        else
            text_add(b, "%s", col_text(r, c));
        return;
    }
}

static void what_evaluated(text_buf *b, const eval_file *f, const char *lead) {
    if (f->checkpoint[0])
        text_add(b, "%s%s (step %ld, param_checksum %s)\n", lead, f->checkpoint, f->step,
                 f->param_checksum);
    else
        text_add(b, "%sthe training loop's parameters at step %ld (param_checksum %s)\n", lead,
                 f->step, f->param_checksum);
}

static char *csv_text(const eval_file *f) {
    text_buf b = text_new();
    text_add(&b, "# format: %s %d\n# step: %ld\n# param_checksum: %s\n# checkpoint: %s\n",
             EVAL_FORMAT, EVAL_FORMAT_VERSION, f->step, f->param_checksum, f->checkpoint);
    text_add(&b, "# written_by: %s\n# yoto_version: %s\n# git_commit: %s\n# written: %s\n",
             f->written_by, f->yoto_version, f->git_commit, f->written);
    for (int i = 0; i < f->ntables; i++) {
        const eval_table *t = &f->table[i];
        text_add(&b,
                 "# table %s: data_file=%s dataset=%s range=%s first_row=%ld split_rows=%ld "
                 "labels=%s\n",
                 t->split, t->data_file, t->dataset, t->range, t->first_row, t->split_rows,
                 t->labels);
    }
    text_add(&b, "split");
    for (int c = 0; c < NCOLS; c++)
        text_add(&b, ",%s", COLS[c].name);
    text_add(&b, "\n");
    for (int i = 0; i < f->ntables; i++)
        for (int k = 0; k < f->table[i].n; k++) {
            text_add(&b, "%s", f->table[i].split);
            for (int c = 0; c < NCOLS; c++) {
                text_add(&b, ",");
                cell(&b, &f->table[i].row[k], c, CELL_CSV);
            }
            text_add(&b, "\n");
        }
    return b.s;
}

static char *md_text(const eval_file *f) {
    text_buf b = text_new();
    text_add(&b, "# Evaluation at step %ld\n\n", f->step);
    what_evaluated(&b, f, "- evaluated: ");
    text_add(&b, "- written by: %s, yoto %s (git %s), %s\n", f->written_by, f->yoto_version,
             f->git_commit, f->written);
    text_add(&b, "- each row: means per image over the first n_images images of the split, the "
                 "model conditioned on (w_kl = beta, w_rec); z = sample: one draw of the "
                 "posterior, mean: its mean\n");
    for (int i = 0; i < f->ntables; i++) {
        const eval_table *t = &f->table[i];
        text_add(&b, "\n## %s\n\nImages: `%s` in `%s`, range `%s` (%ld rows from row %ld).",
                 t->split, t->dataset, t->data_file, t->range[0] ? t->range : ":", t->split_rows,
                 t->first_row);
        if (t->labels[0])
            text_add(&b, " Metrics: the posterior means against the labels `%s` (docs/METRICS.md).",
                     t->labels);
        text_add(&b, "\n\n|");
        for (int c = 0; c < NCOLS; c++)
            text_add(&b, " %s |", COLS[c].name);
        text_add(&b, "\n|");
        for (int c = 0; c < NCOLS; c++)
            text_add(&b, "%s|", COLS[c].kind == COL_TEXT ? "---" : "---:");
        text_add(&b, "\n");
        for (int k = 0; k < t->n; k++) {
            text_add(&b, "|");
            for (int c = 0; c < NCOLS; c++) {
                text_add(&b, " ");
                cell(&b, &t->row[k], c, CELL_MD);
                text_add(&b, " |");
            }
            text_add(&b, "\n");
        }
    }
    return b.s;
}

static void json_field(text_buf *b, const char *key, const char *value, bool comma) {
    text_add(b, "%s", comma ? ", " : "");
    json_string(b, key);
    text_add(b, ": ");
    json_string(b, value);
}

static void json_table(text_buf *b, const eval_table *t) {
    json_string(b, t->split);
    text_add(b, ": {");
    json_field(b, "data_file", t->data_file, false);
    json_field(b, "dataset", t->dataset, true);
    json_field(b, "range", t->range, true);
    json_field(b, "labels", t->labels, true);
    text_add(b, ", \"first_row\": %ld, \"split_rows\": %ld, \"rows\": [", t->first_row,
             t->split_rows);
    for (int k = 0; k < t->n; k++) {
        text_add(b, "%s\n      {", k ? "," : "");
        for (int c = 0; c < NCOLS; c++) {
            text_add(b, "%s\"%s\": ", c ? ", " : "", COLS[c].name);
            cell(b, &t->row[k], c, CELL_JSON);
        }
        text_add(b, "}");
    }
    text_add(b, "]}");
}

void eval_print_json(const eval_file *f, const char *run_dir, FILE *out) {
    text_buf b = text_new();
    text_add(&b, "{");
    json_field(&b, "format", EVAL_FORMAT, false);
    text_add(&b, ", \"format_version\": %d, \"step\": %ld", EVAL_FORMAT_VERSION, f->step);
    json_field(&b, "param_checksum", f->param_checksum, true);
    json_field(&b, "checkpoint", f->checkpoint, true);
    json_field(&b, "written_by", f->written_by, true);
    json_field(&b, "yoto_version", f->yoto_version, true);
    json_field(&b, "git_commit", f->git_commit, true);
    json_field(&b, "written", f->written, true);
    text_add(&b, ",\n  \"files\": {");
    const char *ext[] = {"h5", "csv", "md"};
    for (int e = 0; e < 3; e++) {
        char path[CFG_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/eval/step-%09ld.%s", run_dir, f->step, ext[e]);
        json_field(&b, ext[e], path, e > 0);
    }
    text_add(&b, "},\n  \"tables\": {");
    for (int i = 0; i < f->ntables; i++) {
        text_add(&b, "%s\n    ", i ? "," : "");
        json_table(&b, &f->table[i]);
    }
    text_add(&b, "}}\n");
    fputs(b.s, out);
    fflush(out);
    free(b.s);
}

/* ---- writing ---------------------------------------------------------------------------- */

/* rank 0: merge with what is there, write .h5 (by rename), .csv, .md */
static int write_files(const char *run_dir, const eval_file *f, eval_file *out) {
    char dir[CFG_PATH_MAX + 16], h5[CFG_PATH_MAX + 64], tmp[CFG_PATH_MAX + 80];
    snprintf(dir, sizeof dir, "%s/eval", run_dir);
    snprintf(h5, sizeof h5, "%s/step-%09ld.h5", dir, f->step);
    snprintf(tmp, sizeof tmp, "%s/.step-%09ld.h5.tmp", dir, f->step);
    int rc = fs_mkdir_p(dir);
    if (rc != YT_OK) return rc;
    eval_file *old = yt_calloc(1, sizeof *old);
    char extra[256] = "", why[128] = "";
    bool have = fs_exists(h5) && read_h5(h5, old, extra, sizeof extra, why, sizeof why);
    merge(f, old, out);
    if (fs_exists(h5) && !have) note_add(out, "%s replaced: %s", h5, why);
    if (extra[0]) note_add(out, "columns of a newer yoto dropped: %s", extra);
    eval_file_free(old);
    free(old);
    snprintf(out->yoto_version, sizeof out->yoto_version, "%s", yt_version());
    snprintf(out->git_commit, sizeof out->git_commit, "%s", yt_git_commit());
    time_t now = time(NULL);
    strftime(out->written, sizeof out->written, "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
    rc = write_h5(tmp, out);
    if (rc == YT_OK) rc = fs_rename_durable(tmp, h5);
    if (rc != YT_OK) unlink(tmp); /* no half file left behind */
    for (int e = 0; e < 2 && rc == YT_OK; e++) {
        char path[CFG_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/step-%09ld.%s", dir, f->step, e ? "md" : "csv");
        char *text = e ? md_text(out) : csv_text(out);
        rc = fs_write_atomic(path, text);
        free(text);
    }
    return rc;
}

int eval_write(const char *run_dir, const eval_file *f, eval_file *merged) {
    int rc = YT_OK;
    if (dist_rank() == 0) {
        eval_file *out = merged ? merged : yt_calloc(1, sizeof *out);
        rc = write_files(run_dir, f, out);
        if (!merged) {
            eval_file_free(out);
            free(out);
        }
    }
    return dist_agree(rc);
}

/* ---- `yoto eval` -------------------------------------------------------------------------- */

/* The tables of --split, or of every eval split, into f. Collective. */
static int eval_tables(const run_handle *r, const char *split, const double *betas, int nb,
                       eval_file *f) {
    const yoto_config *cfg = r->cfg;
    if (split) {
        int rc = run_check_split(cfg, "--split", split);
        if (rc == YT_OK) rc = eval_split(r->model, cfg, split, betas, nb, &f->table[0]);
        f->ntables = rc == YT_OK;
        return rc;
    }
    int rc = YT_OK;
    for (int i = 0; i < cfg->eval.n_splits && rc == YT_OK; i++) {
        rc = eval_split(r->model, cfg, cfg->eval.splits[i], betas, nb, &f->table[i]);
        if (rc == YT_OK) f->ntables++;
    }
    return rc;
}

/* the rows just computed, and where the merged tables are */
static void print_tables(const run_handle *r, const eval_file *now, const eval_file *all) {
    printf("yoto eval: %s (step %ld), z = %s\n", r->ckpt, r->st.step,
           r->cfg->eval.z == EVAL_Z_MEAN ? "posterior mean" : "one sample of the posterior");
    for (int i = 0; i < now->ntables; i++) {
        const eval_table *t = &now->table[i];
        const bool dis = t->labels[0] != '\0'; /* metrics computed */
        printf("\n%s (the first %ld of %ld images; %.2f s", t->split, t->n ? t->row[0].n_images : 0,
               t->split_rows, t->seconds);
        if (dis) printf(", of which metrics against '%s' %.2f s", t->labels, t->metrics_seconds);
        printf(")\n%10s %12s %12s %12s", "beta", "recon", "kl", "full");
        if (dis) printf(" %8s %8s %10s %8s %8s", "MIG", "SAP", "FactorVAE", "DCI-D", "DCI-C");
        printf("\n");
        for (int k = 0; k < t->n; k++) {
            const eval_row *w = &t->row[k];
            printf("%10g %12.4f %12.4f %12.4f", w->beta, w->reconstruction_loss, w->kl_loss,
                   w->full_loss);
            if (dis)
                printf(" %8.4f %8.4f %10.4f %8.4f %8.4f", w->mig, w->sap, w->factorvae,
                       w->dci_disentanglement, w->dci_completeness);
            printf("\n");
        }
    }
    long rows = 0;
    for (int i = 0; i < all->ntables; i++)
        rows += all->table[i].n;
    printf("\ntables: %s/eval/step-%09ld.{h5,csv,md} (%ld row%s, %ld kept from earlier "
           "evaluations)\n",
           r->run_dir, r->st.step, rows, rows == 1 ? "" : "s", all->kept);
}

int eval_run(const eval_args *a) {
    double betas[EVAL_MAX_BETAS];
    int nb = 0;
    run_handle r;
    int rc = run_open(a->target, a->sets, a->nsets, &r);
    if (rc == YT_OK) rc = dist_agree(run_betas(r.cfg, a->betas, betas, &nb));
    if (rc == YT_OK) rc = run_load_model(&r, (int)r.cfg->eval.batch_size, false);
    eval_file *now = yt_calloc(1, sizeof *now), *all = yt_calloc(1, sizeof *all);
    if (rc == YT_OK) {
        eval_file_init(now, r.model, r.st.step, r.ckpt, "yoto eval");
        rc = eval_tables(&r, a->split, betas, nb, now);
    }
    if (rc == YT_OK) rc = eval_write(r.run_dir, now, all);
    if (rc == YT_OK && dist_rank() == 0) {
        if (all->note[0]) dist_warn("%s", all->note);
        if (a->json)
            eval_print_json(all, r.run_dir, stdout);
        else
            print_tables(&r, now, all);
    }
    eval_file_free(now);
    eval_file_free(all);
    free(now);
    free(all);
    run_close(&r);
    return rc;
}
