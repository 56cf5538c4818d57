/* test_evalwrite.c — eval tables written by eval_write: the CSV and Markdown
 * beside the HDF5 table hold every row whatever the values' magnitude; rows
 * merge into the step's file (a row replaces the row of the same key, the
 * others stay, sorted); a file of other parameters, or a table of other
 * images, is replaced and the note says so; columns an older file lacks
 * read as unknown. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "fsutil.h"
#include "testutil.h"

static long count_lines(const char *text, const char *prefix) {
    long n = 0;
    for (const char *p = text; p && *p;) {
        if (strncmp(p, prefix, strlen(prefix)) == 0) n++;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return n;
}

static eval_row row(double beta, const char *z, long n_images, double recon) {
    eval_row r = {.beta = beta,
                  .w_rec = 1.0,
                  .n_images = n_images,
                  .reconstruction_loss = recon,
                  .kl_loss = 2.0,
                  .full_loss = recon + 2.0 * beta,
                  .max_batches = 2,
                  .batch_size = 16,
                  .seed = 5};
    snprintf(r.z, sizeof r.z, "%s", z);
    return r;
}

/* a file of step 7 with one table `split` holding rows[0..n) */
static void one_table(eval_file *f, const char *checksum, const char *split, const char *range,
                      const eval_row *rows, int n) {
    memset(f, 0, sizeof *f);
    f->step = 7;
    snprintf(f->param_checksum, sizeof f->param_checksum, "%s", checksum);
    snprintf(f->written_by, sizeof f->written_by, "test");
    f->ntables = 1;
    eval_table *t = &f->table[0];
    snprintf(t->split, sizeof t->split, "%s", split);
    snprintf(t->data_file, sizeof t->data_file, "data.h5");
    snprintf(t->dataset, sizeof t->dataset, "images");
    snprintf(t->range, sizeof t->range, "%s", range);
    t->split_rows = 100;
    t->n = t->cap = n;
    t->row = malloc((size_t)n * sizeof *t->row);
    assert_non_null(t->row);
    memcpy(t->row, rows, (size_t)n * sizeof *rows);
}

static char *read_step_file(const char *dir, const char *ext) {
    char path[1200];
    snprintf(path, sizeof path, "%s/eval/step-000000007.%s", dir, ext);
    char *s = fs_read_text(path);
    if (!s) fail_msg("cannot read %s", path);
    return s;
}

/* a full table (8 splits x 64 betas) of finite but huge losses: "%.4f" of
 * 1e300 is 305 characters, far past any fixed per-row budget */
static void test_huge_values(void **state) {
    (void)state;
    char dir[1024];
    tu_scratch_dir("evalwrite_huge", dir, sizeof dir);
    eval_file *f = calloc(1, sizeof *f), *all = calloc(1, sizeof *all);
    assert_true(f && all);
    f->step = 7;
    f->ntables = CFG_SPLITS_MAX;
    for (int i = 0; i < f->ntables; i++) {
        eval_table *t = &f->table[i];
        snprintf(t->split, sizeof t->split, "split%d", i);
        t->n = t->cap = EVAL_MAX_BETAS;
        t->row = calloc((size_t)t->n, sizeof *t->row);
        assert_non_null(t->row);
        for (int k = 0; k < t->n; k++) {
            t->row[k] = row(k + 1.0, "mean", 5, 1e300);
            t->row[k].kl_loss = -1e300;
        }
    }
    if (eval_write(dir, f, all) != YT_OK) fail_msg("eval_write: %s", yt_errmsg());
    char *csv = read_step_file(dir, "csv"), *md = read_step_file(dir, "md");
    assert_int_equal(count_lines(csv, "split"), 1 + (long)CFG_SPLITS_MAX * EVAL_MAX_BETAS);
    assert_int_equal(count_lines(md, "| "), (long)CFG_SPLITS_MAX * (1 + EVAL_MAX_BETAS));
    assert_non_null(strstr(md, "## split7"));
    free(csv);
    free(md);
    eval_file_free(f);
    eval_file_free(all);
    free(f);
    free(all);
}

/* HDF5 table `split` of the step-7 file: the column `name` as doubles */
static int read_column(const char *dir, const char *split, const char *name, double *v, int max) {
    char path[1200];
    snprintf(path, sizeof path, "%s/eval/step-000000007.h5", dir);
    hid_t h = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(h >= 0);
    hid_t ds = H5Dopen2(h, split, H5P_DEFAULT);
    assert_true(ds >= 0);
    hid_t sp = H5Dget_space(ds);
    hsize_t n;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    assert_true(n <= (hsize_t)max);
    hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(double));
    H5Tinsert(mt, name, 0, H5T_NATIVE_DOUBLE);
    assert_true(H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Tclose(mt);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(h);
    return (int)n;
}

static void write_ok(const char *dir, eval_file *f, eval_file *all) {
    eval_file_free(all);
    if (eval_write(dir, f, all) != YT_OK) fail_msg("eval_write: %s", yt_errmsg());
    eval_file_free(f);
}

/* beta 8 again replaces only its row; beta 3 is added; z = mean is another row */
static void test_merge_rows(void **state) {
    (void)state;
    char dir[1024];
    tu_scratch_dir("evalwrite_merge", dir, sizeof dir);
    eval_file *f = calloc(1, sizeof *f), *all = calloc(1, sizeof *all);
    assert_true(f && all);
    const eval_row first[] = {row(8, "sample", 32, 10), row(1, "sample", 32, 11)};
    one_table(f, "00aa", "valid", "", first, 2);
    write_ok(dir, f, all);
    assert_int_equal(all->kept, 0);
    const eval_row second[] = {row(3, "sample", 32, 12), row(8, "sample", 32, 13),
                               row(8, "mean", 32, 14), row(8, "sample", 64, 15)};
    one_table(f, "00aa", "valid", "", second, 4);
    write_ok(dir, f, all);
    assert_int_equal(all->kept, 1); /* beta 1 */
    assert_string_equal(all->note, "");
    double beta[16], recon[16];
    int n = read_column(dir, "valid", "beta", beta, 16);
    read_column(dir, "valid", "reconstruction_loss", recon, 16);
    /* sorted by (beta, w_rec, z, n_images): "mean" < "sample" */
    const double want_beta[] = {1, 3, 8, 8, 8}, want_recon[] = {11, 12, 14, 13, 15};
    assert_int_equal(n, 5);
    for (int i = 0; i < n; i++) {
        assert_true(beta[i] == want_beta[i]);
        assert_true(recon[i] == want_recon[i]);
    }
    char *csv = read_step_file(dir, "csv");
    assert_int_equal(count_lines(csv, "valid,"), 5);
    assert_non_null(strstr(csv, "# param_checksum: 00aa\n"));
    assert_non_null(strstr(csv, "valid,8,1,sample,32,13,"));
    free(csv);
    /* another split is added beside, valid stays */
    const eval_row other[] = {row(2, "sample", 32, 16)};
    one_table(f, "00aa", "train", "", other, 1);
    write_ok(dir, f, all);
    assert_int_equal(all->ntables, 2);
    assert_int_equal(all->kept, 5);
    assert_string_equal(all->table[0].split, "train");
    assert_int_equal(all->table[1].n, 5);
    eval_file_free(all);
    free(f);
    free(all);
}

/* other parameters: everything replaced; other images: that table replaced */
static void test_replace(void **state) {
    (void)state;
    char dir[1024];
    tu_scratch_dir("evalwrite_replace", dir, sizeof dir);
    eval_file *f = calloc(1, sizeof *f), *all = calloc(1, sizeof *all);
    assert_true(f && all);
    const eval_row a[] = {row(1, "sample", 32, 10), row(2, "sample", 32, 11)};
    one_table(f, "00aa", "valid", "", a, 2);
    write_ok(dir, f, all);
    const eval_row b[] = {row(4, "sample", 32, 12)};
    one_table(f, "00bb", "valid", "", b, 1);
    write_ok(dir, f, all);
    assert_int_equal(all->kept, 0);
    assert_int_equal(all->table[0].n, 1);
    assert_non_null(strstr(all->note, "other parameters (param_checksum 00aa, now 00bb)"));
    one_table(f, "00bb", "valid", ":50%", a, 2);
    write_ok(dir, f, all);
    assert_int_equal(all->kept, 0);
    assert_int_equal(all->table[0].n, 2);
    assert_non_null(strstr(all->note, "table valid replaced"));
    /* a file that is not HDF5: replaced, noted */
    char path[1200];
    snprintf(path, sizeof path, "%s/eval/step-000000007.h5", dir);
    assert_int_equal(fs_write_atomic(path, "not hdf5\n"), YT_OK);
    one_table(f, "00bb", "valid", ":50%", b, 1);
    write_ok(dir, f, all);
    assert_int_equal(all->table[0].n, 1);
    assert_non_null(strstr(all->note, "not a yoto eval file"));
    eval_file_free(all);
    free(f);
    free(all);
}

/* an older file without the settings columns: they read as unknown */
static void test_older_columns(void **state) {
    (void)state;
    char dir[1024], path[1200];
    tu_scratch_dir("evalwrite_older", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/eval", dir);
    assert_int_equal(fs_mkdir_p(path), YT_OK);
    snprintf(path, sizeof path, "%s/eval/step-000000007.h5", dir);
    hid_t h = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    struct {
        double beta, full_loss;
    } old[1] = {{16, 99}};
    hid_t ct = H5Tcreate(H5T_COMPOUND, sizeof old[0]);
    H5Tinsert(ct, "beta", 0, H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "full_loss", sizeof(double), H5T_NATIVE_DOUBLE);
    hsize_t n = 1;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(h, "valid", ct, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Dwrite(ds, ct, H5S_ALL, H5S_ALL, H5P_DEFAULT, old) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Tclose(ct);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    const char *attr[][2] = {{"format", "yoto-eval"}, {"param_checksum", "00aa"}};
    for (int i = 0; i < 2; i++) {
        hid_t as = H5Screate(H5S_SCALAR);
        hid_t at = H5Acreate2(h, attr[i][0], st, as, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(at, st, &attr[i][1]);
        H5Aclose(at);
        H5Sclose(as);
    }
    H5Tclose(st);
    H5Fclose(h);
    eval_file *f = calloc(1, sizeof *f), *all = calloc(1, sizeof *all);
    assert_true(f && all);
    const eval_row a[] = {row(1, "sample", 32, 10)};
    one_table(f, "00aa", "train", "", a, 1);
    write_ok(dir, f, all);
    assert_int_equal(all->kept, 1);
    assert_int_equal(all->ntables, 2);
    const eval_row *r = &all->table[1].row[0]; /* "valid" sorts after "train" */
    assert_true(r->beta == 16 && r->full_loss == 99);
    assert_true(isnan(r->kl_loss));
    assert_int_equal(r->seed, -1);
    assert_string_equal(r->z, "");
    eval_file_free(all);
    free(f);
    free(all);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_huge_values),
        cmocka_unit_test(test_merge_rows),
        cmocka_unit_test(test_replace),
        cmocka_unit_test(test_older_columns),
    };
    return TU_RUN("evalwrite", tests);
}
