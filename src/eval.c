/* eval.c — beta tables over eval splits (see eval.h). */
#include "eval.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "dist.h"
#include "fsutil.h"
#include "h5io.h"
#include "loss.h"
#include "rng.h"
#include "run.h"

/* ---- the tables ------------------------------------------------------------------------ */

int eval_split(vae_model *m, const yoto_config *cfg, const char *split, const double *betas,
               int nb, eval_table *out) {
    YT_CHECK(nb > 0 && nb <= EVAL_MAX_BETAS);
    memset(out, 0, sizeof *out);
    snprintf(out->split, sizeof out->split, "%s", split);
    data_source *d = NULL;
    int rc = data_open_eval(&d, cfg, split, dist_rank(), dist_size(), NULL);
    if (rc != YT_OK) return rc;
    const data_desc *dd = data_describe(d);
    const int B = (int)dd->batch, L = m->latent;
    YT_CHECK(B <= m->max_batch);
    real *x = yt_malloc(data_batch_floats(d) * sizeof *x);
    real *eps = yt_malloc((size_t)B * L * sizeof *eps);
    real *wk = yt_malloc((size_t)B * sizeof *wk), *wr = yt_malloc((size_t)B * sizeof *wr);
    real *cond = yt_malloc((size_t)B * 2 * sizeof *cond);
    /* sums per beta: recon, kl, images */
    double *sum = yt_calloc((size_t)nb * 3, sizeof *sum);
    const bool sample = cfg->eval.z == EVAL_Z_SAMPLE;
    for (long b = 0; b < dd->steps && rc == YT_OK; b++) {
        long count = 0;
        rc = data_batch(d, 0, b, x, NULL, &count);
        /* a read error on one rank: every rank learns it here (each batch) */
        rc = dist_agree(rc);
        if (rc != YT_OK || count == 0) continue;
        for (int k = 0; k < nb; k++) {
            loss_weights_fixed(&cfg->loss_weights, betas[k], cfg->eval.w_rec, (int)count, wk, wr, cond);
            if (sample)
                for (long i = 0; i < count; i++) {
                    /* keyed by the global row position: the same noise on any rank count */
                    rng_stream e = rng_stream_make(cfg->experiment.seed, RNG_EVAL, (uint32_t)k,
                                                   (uint32_t)(dd->shard_begin + b * B + i), 0);
                    for (int j = 0; j < L; j++) eps[i * L + j] = (real)rng_normal(&e);
                }
            model_forward(m, (int)count, x, cond, sample ? eps : NULL);
            for (long i = 0; i < count; i++) {
                sum[3 * k] += m->recon[i];
                sum[3 * k + 1] += m->kl[i];
            }
            sum[3 * k + 2] += (double)count;
        }
    }
    data_close(d);
    if (rc == YT_OK) {
        dist_allreduce_sum_double(sum, (size_t)nb * 3);
        out->n = nb;
        for (int k = 0; k < nb; k++) {
            eval_row *r = &out->row[k];
            double n = sum[3 * k + 2];
            r->beta = betas[k];
            r->w_rec = cfg->eval.w_rec;
            r->reconstruction_loss = n > 0 ? sum[3 * k] / n : NAN;
            r->kl_loss = n > 0 ? sum[3 * k + 1] / n : NAN;
            r->full_loss = r->w_rec * r->reconstruction_loss + r->beta * r->kl_loss;
            r->n_images = (long)n;
        }
    }
    free(sum);
    free(x);
    free(eps);
    free(wk);
    free(wr);
    free(cond);
    return rc;
}

/* ---- writing ---------------------------------------------------------------------------- */

static int write_h5(const char *path, long step, const eval_table *t, int nt) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return yt_fail(YT_ERR_RUNTIME, "cannot create %s", path);
    hid_t ct = H5Tcreate(H5T_COMPOUND, sizeof(eval_row));
    H5Tinsert(ct, "beta", HOFFSET(eval_row, beta), H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "w_rec", HOFFSET(eval_row, w_rec), H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "reconstruction_loss", HOFFSET(eval_row, reconstruction_loss), H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "kl_loss", HOFFSET(eval_row, kl_loss), H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "full_loss", HOFFSET(eval_row, full_loss), H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "n_images", HOFFSET(eval_row, n_images), H5T_NATIVE_LONG);
    int rc = YT_OK;
    rc |= h5io_attr_set_string(f, "format", "yoto-eval");
    rc |= h5io_attr_set_long(f, "step", step);
    for (int i = 0; i < nt && rc == YT_OK; i++) {
        hsize_t n = (hsize_t)t[i].n;
        hid_t sp = H5Screate_simple(1, &n, NULL);
        hid_t ds = H5Dcreate2(f, t[i].split, ct, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (ds < 0 || H5Dwrite(ds, ct, H5S_ALL, H5S_ALL, H5P_DEFAULT, t[i].row) < 0) rc = YT_ERR_RUNTIME;
        if (ds >= 0) H5Dclose(ds);
        H5Sclose(sp);
    }
    H5Tclose(ct);
    if (H5Fclose(f) < 0) rc = YT_ERR_RUNTIME;
    return rc == YT_OK ? YT_OK : yt_fail(YT_ERR_RUNTIME, "cannot write %s", path);
}

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

static int write_text(const char *csv, const char *md, long step, const eval_table *t, int nt) {
    text_buf a = {yt_malloc(4096), 0, 4096}, b = {yt_malloc(4096), 0, 4096};
    text_add(&a, "split,beta,w_rec,reconstruction_loss,kl_loss,full_loss,n_images\n");
    text_add(&b, "# Evaluation at step %ld\n", step);
    for (int i = 0; i < nt; i++) {
        text_add(&b,
                 "\n## %s\n\n| beta | w_rec | reconstruction_loss | kl_loss | "
                 "full_loss | n_images |\n|---:|---:|---:|---:|---:|---:|\n",
                 t[i].split);
        for (int k = 0; k < t[i].n; k++) {
            const eval_row *r = &t[i].row[k];
            text_add(&a, "%s,%.10g,%.10g,%.10g,%.10g,%.10g,%ld\n", t[i].split, r->beta, r->w_rec,
                     r->reconstruction_loss, r->kl_loss, r->full_loss, r->n_images);
            text_add(&b, "| %g | %g | %.4f | %.4f | %.4f | %ld |\n", r->beta, r->w_rec,
                     r->reconstruction_loss, r->kl_loss, r->full_loss, r->n_images);
        }
    }
    int rc = fs_write_atomic(csv, a.s);
    if (rc == YT_OK) rc = fs_write_atomic(md, b.s);
    free(a.s);
    free(b.s);
    return rc;
}

int eval_write(const char *run_dir, long step, const eval_table *tables, int ntables) {
    int rc = YT_OK;
    if (dist_rank() == 0) {
        char dir[CFG_PATH_MAX + 16], h5[CFG_PATH_MAX + 64], tmp[CFG_PATH_MAX + 80],
            csv[CFG_PATH_MAX + 64], md[CFG_PATH_MAX + 64];
        snprintf(dir, sizeof dir, "%s/eval", run_dir);
        snprintf(h5, sizeof h5, "%s/step-%09ld.h5", dir, step);
        snprintf(tmp, sizeof tmp, "%s/.step-%09ld.h5.tmp", dir, step);
        snprintf(csv, sizeof csv, "%s/step-%09ld.csv", dir, step);
        snprintf(md, sizeof md, "%s/step-%09ld.md", dir, step);
        rc = fs_mkdir_p(dir);
        if (rc == YT_OK) rc = write_h5(tmp, step, tables, ntables);
        if (rc == YT_OK) rc = fs_rename_durable(tmp, h5);
        if (rc != YT_OK) unlink(tmp); /* no half file left behind */
        if (rc == YT_OK) rc = write_text(csv, md, step, tables, ntables);
    }
    return dist_agree(rc);
}

/* ---- `yoto eval` -------------------------------------------------------------------------- */

/* The tables of --split, or of every eval split. Collective. */
static int eval_tables(const run_handle *r, const char *split, const double *betas, int nb,
                       eval_table *tables, int *nt) {
    const yoto_config *cfg = r->cfg;
    int rc = YT_OK;
    *nt = 0;
    if (split) {
        if (!config_split(cfg, split))
            return yt_fail(YT_ERR_USAGE, "--split %s: the config has no such split (data.splits)",
                           split);
        return eval_split(r->model, cfg, split, betas, nb, &tables[(*nt)++]);
    }
    for (int i = 0; i < cfg->eval.n_splits && rc == YT_OK; i++)
        rc = eval_split(r->model, cfg, cfg->eval.splits[i], betas, nb, &tables[(*nt)++]);
    return rc;
}

static void print_tables(const run_handle *r, const eval_table *tables, int nt, int nb) {
    printf("yoto eval: %s (step %ld), z = %s, %d beta%s\n", r->ckpt, r->st.step,
           r->cfg->eval.z == EVAL_Z_MEAN ? "posterior mean" : "one sample", nb, nb > 1 ? "s" : "");
    for (int i = 0; i < nt; i++) {
        printf("\n%s (%ld images)\n%10s %12s %12s %12s\n", tables[i].split,
               tables[i].row[0].n_images, "beta", "recon", "kl", "full");
        for (int k = 0; k < tables[i].n; k++) {
            const eval_row *row = &tables[i].row[k];
            printf("%10g %12.4f %12.4f %12.4f\n", row->beta, row->reconstruction_loss,
                   row->kl_loss, row->full_loss);
        }
    }
    printf("\ntables: %s/eval/step-%09ld.{h5,csv,md}\n", r->run_dir, r->st.step);
}

int eval_run(const eval_args *a) {
    double betas[EVAL_MAX_BETAS];
    int nb = 0;
    run_handle r;
    int rc = run_open(a->target, a->sets, a->nsets, &r);
    if (rc == YT_OK) rc = dist_agree(run_betas(r.cfg, a->betas, betas, &nb));
    if (rc == YT_OK) rc = run_load_model(&r, (int)r.cfg->eval.batch_size, false);
    eval_table *tables = yt_calloc(CFG_SPLITS_MAX, sizeof *tables);
    int nt = 0;
    if (rc == YT_OK) rc = eval_tables(&r, a->split, betas, nb, tables, &nt);
    if (rc == YT_OK) rc = eval_write(r.run_dir, r.st.step, tables, nt);
    if (rc == YT_OK && dist_rank() == 0) print_tables(&r, tables, nt, nb);
    free(tables);
    run_close(&r);
    return rc;
}
