/* test_metrics.c — the disentanglement metrics: synthetic codes with known
 * answers (codes equal to the factors, the same codes rotated, pure noise),
 * undefined cases, label conversion, agreement with an independent NumPy
 * implementation (tests/tools/metrics_ref.py, run on data this test writes),
 * and the labels of a split (labels.h: found beside the images in an HDF5
 * file, rows as factors, the metrics of several code sets at once). */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "labels.h"
#include "metrics.h"
#include "rng.h"
#include "testutil.h"

#define NF 4
static const int SIZES[NF] = {10, 10, 8, 4};

typedef struct {
    long n;
    int L, K;
    double *codes;
    int32_t *f;
    int sizes[8];
} dataset;

static void ds_free(dataset *s) {
    free(s->codes);
    free(s->f);
}

/* n rows of independent uniform factors (sizes), codes [n][L] to be filled */
static dataset ds_make(long n, int K, const int *sizes, int L, uint32_t seed) {
    dataset s = {.n = n, .L = L, .K = K};
    s.codes = calloc((size_t)n * L, sizeof *s.codes);
    s.f = calloc((size_t)n * K, sizeof *s.f);
    assert_non_null(s.codes);
    assert_non_null(s.f);
    for (int k = 0; k < K; k++)
        s.sizes[k] = sizes[k];
    for (long i = 0; i < n; i++) {
        rng_stream r = rng_stream_make(seed, RNG_SYNTHETIC, 77, (uint32_t)i, 0);
        for (int k = 0; k < K; k++)
            s.f[i * K + k] = (int32_t)rng_below(&r, (uint64_t)sizes[k]);
    }
    return s;
}

static metrics_data ds_view(const dataset *s) {
    return (metrics_data){.n = s->n,
                          .latent = s->L,
                          .nfactors = s->K,
                          .codes = s->codes,
                          .factors = s->f,
                          .sizes = s->sizes};
}

/* codes = the factors standardised (mean 0, std 1 for uniform values 0..S-1) */
static void codes_identity(dataset *s) {
    for (long i = 0; i < s->n; i++)
        for (int k = 0; k < s->K; k++) {
            double S = s->sizes[k];
            s->codes[i * s->L + k] = (s->f[i * s->K + k] - (S - 1) / 2) / sqrt((S * S - 1) / 12);
        }
}

/* codes = Q codes for a random orthogonal Q (Gram-Schmidt of a Gaussian matrix) */
static void rotate(dataset *s, uint32_t seed) {
    const int L = s->L;
    double Q[8][8];
    rng_stream r = rng_stream_make(seed, RNG_SYNTHETIC, 78, 0, 0);
    for (int a = 0; a < L; a++) {
        for (int b = 0; b < L; b++)
            Q[a][b] = rng_normal(&r);
        for (int c = 0; c < a; c++) {
            double dot = 0;
            for (int b = 0; b < L; b++)
                dot += Q[a][b] * Q[c][b];
            for (int b = 0; b < L; b++)
                Q[a][b] -= dot * Q[c][b];
        }
        double nrm = 0;
        for (int b = 0; b < L; b++)
            nrm += Q[a][b] * Q[a][b];
        for (int b = 0; b < L; b++)
            Q[a][b] /= sqrt(nrm);
    }
    double row[8];
    for (long i = 0; i < s->n; i++) {
        for (int a = 0; a < L; a++) {
            row[a] = 0;
            for (int b = 0; b < L; b++)
                row[a] += Q[a][b] * s->codes[i * L + b];
        }
        memcpy(s->codes + i * L, row, (size_t)L * sizeof *row);
    }
}

static void codes_noise(dataset *s, uint32_t seed) {
    for (long i = 0; i < s->n; i++) {
        rng_stream r = rng_stream_make(seed, RNG_SYNTHETIC, 79, (uint32_t)i, 0);
        for (int j = 0; j < s->L; j++)
            s->codes[i * s->L + j] = rng_normal(&r);
    }
}

static void print_result(const char *what, const metrics_result *r) {
    print_message("# %s: MIG %.4f SAP %.4f FactorVAE %.4f (train %.4f) DCI-D %.4f DCI-C %.4f "
                  "active %d factors %d\n",
                  what, r->mig, r->sap, r->factorvae, r->factorvae_train, r->dci_disentanglement,
                  r->dci_completeness, r->active_dims, r->factors_used);
}

#define ASSERT_IN(name, x, lo, hi)                                                                 \
    do {                                                                                           \
        double v_ = (x);                                                                           \
        if (!(v_ >= (lo) && v_ <= (hi)))                                                           \
            fail_msg("%s = %.6f, expected in [%g, %g]", name, v_, (double)(lo), (double)(hi));     \
    } while (0)

/* the best SAP of one code per factor with the nearest-mean classifier: the
 * factor's own code is always right, every other code is at chance 1/S */
static double sap_max(const int *sizes, int K) {
    double s = 0;
    for (int k = 0; k < K; k++)
        s += 1.0 - 1.0 / sizes[k];
    return s / K;
}

/* ---- known answers ------------------------------------------------------------------------ */

static void test_identity_codes(void **state) {
    (void)state;
    dataset s = ds_make(15000, NF, SIZES, NF, 1);
    codes_identity(&s);
    metrics_data d = ds_view(&s);
    metrics_result r;
    metrics_compute(&d, NULL, &r);
    print_result("codes = factors", &r);
    ASSERT_IN("MIG", r.mig, 0.95, 1.0);
    ASSERT_IN("DCI disentanglement", r.dci_disentanglement, 0.99, 1.0);
    ASSERT_IN("DCI completeness", r.dci_completeness, 0.99, 1.0);
    if (!(r.factorvae == 1.0)) fail_msg("FactorVAE = %.6f, expected exactly 1", r.factorvae);
    /* every other code predicts at chance, up to sampling noise of the 5000 test rows */
    ASSERT_IN("SAP", r.sap, sap_max(SIZES, NF) - 0.03, sap_max(SIZES, NF) + 0.005);
    assert_int_equal(r.active_dims, NF);
    assert_int_equal(r.factors_used, NF);
    /* a monotone rescaling of each code changes nothing that ranks or bins */
    for (long i = 0; i < s.n * NF; i++)
        s.codes[i] = 3 * s.codes[i] + 7;
    metrics_result r2;
    metrics_compute(&d, NULL, &r2);
    if (!(fabs(r2.mig - r.mig) <= 1e-12 && r2.factorvae == r.factorvae &&
          fabs(r2.sap - r.sap) <= 1e-12 &&
          fabs(r2.dci_disentanglement - r.dci_disentanglement) <= 1e-9))
        fail_msg("an affine change of the codes changed the metrics");
    ds_free(&s);
}

static void test_rotated_codes(void **state) {
    (void)state;
    dataset s = ds_make(15000, NF, SIZES, NF, 2);
    codes_identity(&s);
    rotate(&s, 3);
    metrics_data d = ds_view(&s);
    metrics_result r;
    metrics_compute(&d, NULL, &r);
    print_result("codes = rotated factors", &r);
    ASSERT_IN("MIG", r.mig, 0, 0.3);
    ASSERT_IN("DCI disentanglement", r.dci_disentanglement, 0, 0.6);
    ASSERT_IN("DCI completeness", r.dci_completeness, 0, 0.6);
    ASSERT_IN("FactorVAE", r.factorvae, 0, 0.9);
    ASSERT_IN("SAP", r.sap, 0, 0.4);
    ds_free(&s);
}

static void test_noise_codes(void **state) {
    (void)state;
    dataset s = ds_make(15000, NF, SIZES, 6, 4);
    codes_noise(&s, 5);
    metrics_data d = ds_view(&s);
    metrics_result r;
    metrics_compute(&d, NULL, &r);
    print_result("codes = noise", &r);
    ASSERT_IN("MIG", r.mig, 0, 0.02);
    ASSERT_IN("SAP", r.sap, 0, 0.03);
    ASSERT_IN("DCI disentanglement", r.dci_disentanglement, 0, 0.05);
    ASSERT_IN("DCI completeness", r.dci_completeness, 0, 0.05);
    ASSERT_IN("FactorVAE (chance 1/4)", r.factorvae, 0.25 - 0.04, 0.25 + 0.04);
    ds_free(&s);
}

static void test_undefined(void **state) {
    (void)state;
    /* one code: no gap between the best two codes, no completeness */
    dataset s = ds_make(600, NF, SIZES, 1, 6);
    codes_noise(&s, 7);
    metrics_data d = ds_view(&s);
    metrics_result r;
    metrics_compute(&d, NULL, &r);
    assert_true(isnan(r.mig) && isnan(r.sap) && isnan(r.dci_completeness));
    assert_false(isnan(r.dci_disentanglement) || isnan(r.factorvae));
    ds_free(&s);
    /* one factor that varies (the other constant): no disentanglement, no FactorVAE vote */
    const int sz[2] = {5, 1};
    s = ds_make(600, 2, sz, 3, 8);
    codes_noise(&s, 9);
    d = ds_view(&s);
    metrics_compute(&d, NULL, &r);
    assert_int_equal(r.factors_used, 1);
    assert_true(isnan(r.dci_disentanglement) && isnan(r.factorvae));
    assert_false(isnan(r.mig) || isnan(r.sap) || isnan(r.dci_completeness));
    /* a non-finite code: nothing is defined */
    s.codes[17] = NAN;
    metrics_compute(&d, NULL, &r);
    assert_true(isnan(r.mig) && isnan(r.sap) && isnan(r.factorvae) && isnan(r.dci_completeness));
    ds_free(&s);
}

static void test_collapsed_dims_are_pruned(void **state) {
    (void)state;
    /* codes = factors, plus two codes of std 0.01 (collapsed to the prior's mean) */
    dataset s = ds_make(3000, NF, SIZES, NF + 2, 10);
    dataset t = ds_make(3000, NF, SIZES, NF, 10);
    codes_identity(&t);
    rng_stream r = rng_stream_make(1, RNG_SYNTHETIC, 80, 0, 0);
    for (long i = 0; i < s.n; i++) {
        for (int k = 0; k < NF; k++)
            s.codes[i * (NF + 2) + k] = t.codes[i * NF + k];
        s.codes[i * (NF + 2) + NF] = 0.01 * rng_normal(&r);
        s.codes[i * (NF + 2) + NF + 1] = 0.01 * rng_normal(&r);
    }
    metrics_data d = ds_view(&s);
    metrics_result m;
    metrics_compute(&d, NULL, &m);
    assert_int_equal(m.active_dims, NF); /* without the prune they would win every vote */
    if (!(m.factorvae == 1.0)) fail_msg("FactorVAE = %.6f, expected 1", m.factorvae);
    ds_free(&s);
    ds_free(&t);
}

static void test_split_sizes(void **state) {
    (void)state;
    metrics_options o = metrics_options_default();
    metrics_split a = metrics_split_sizes(480000, &o), b = metrics_split_sizes(900, &o);
    assert_true(a.n_mig == 10000 && a.n_tr == 10000 && a.n_te == 5000 && a.n_var == 10000);
    assert_true(b.n_mig == 900 && b.n_tr == 600 && b.n_te == 300 && b.n_var == 900);
}

/* ---- labels ------------------------------------------------------------------------------- */

static void test_labels_to_indices(void **state) {
    (void)state;
    /* two columns as 3dshapes stores them: hues in [0, 1), a shape index as a float */
    const double lab[6][2] = {{0.9, 3}, {0.1, 0}, {0.5, 3}, {0.1, 1}, {0.9, 0}, {0.0, 0}};
    int32_t idx[6][2];
    int sizes[2];
    assert_int_equal(metrics_labels_to_indices(&lab[0][0], 6, 2, &idx[0][0], sizes), YT_OK);
    assert_int_equal(sizes[0], 4);
    assert_int_equal(sizes[1], 3);
    const int32_t want[6][2] = {{3, 2}, {1, 0}, {2, 2}, {1, 1}, {3, 0}, {0, 0}};
    assert_memory_equal(idx, want, sizeof want);
    double bad[3] = {1, NAN, 2};
    assert_int_equal(metrics_labels_to_indices(bad, 3, 1, &idx[0][0], sizes), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "not a finite value"));
    long n = METRICS_MAX_VALUES + 1;
    double *many = malloc((size_t)n * sizeof *many);
    int32_t *mi = malloc((size_t)n * sizeof *mi);
    for (long i = 0; i < n; i++)
        many[i] = 0.5 * i;
    assert_int_equal(metrics_labels_to_indices(many, n, 1, mi, sizes), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "not a discrete factor"));
    free(many);
    free(mi);
}

/* ---- against the NumPy reference ---------------------------------------------------------- */

static void write_raw(const char *path, const void *p, size_t bytes) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, bytes, f), bytes);
    assert_int_equal(fclose(f), 0);
}

/* runs metrics_ref.py on s and compares every metric with metrics_compute's */
static void compare_with_numpy(const dataset *s, const char *name) {
    char dir[1024];
    tu_scratch_dir(name, dir, sizeof dir);
    write_raw(tu_join(dir, "codes.f64"), s->codes, (size_t)s->n * s->L * sizeof(double));
    write_raw(tu_join(dir, "factors.i32"), s->f, (size_t)s->n * s->K * sizeof(int32_t));
    char sizes[64] = "", cmd[4096];
    for (int k = 0; k < s->K; k++)
        snprintf(sizes + strlen(sizes), sizeof sizes - strlen(sizes), "%s%d", k ? "," : "",
                 s->sizes[k]);
    const char *py = getenv("PYTHON");
    snprintf(cmd, sizeof cmd, "%s tests/tools/metrics_ref.py raw %s %s %ld %d %s 0 > %s",
             py && *py ? py : "/usr/bin/python3", tu_join(dir, "codes.f64"),
             tu_join(dir, "factors.i32"), s->n, s->L, sizes, tu_join(dir, "ref.txt"));
    if (system(cmd) != 0) fail_msg("the NumPy reference failed: %s", cmd);
    metrics_data d = ds_view(s);
    metrics_result r;
    metrics_compute(&d, NULL, &r);
    print_result(name, &r);
    const struct {
        const char *key;
        double c;
        double tol; /* 0: exactly equal */
    } want[] = {{"mig", r.mig, 1e-6},
                {"sap", r.sap, 1e-6},
                {"factorvae", r.factorvae, 0},
                {"factorvae_train", r.factorvae_train, 0},
                {"dci_disentanglement", r.dci_disentanglement, 1e-6},
                {"dci_completeness", r.dci_completeness, 1e-6},
                {"active_dims", r.active_dims, 0},
                {"factors_used", r.factors_used, 0}};
    FILE *f = fopen(tu_join(dir, "ref.txt"), "r");
    assert_non_null(f);
    char key[64];
    double v;
    int found = 0;
    while (fscanf(f, "%63s", key) == 1) {
        if (strcmp(key, "perm_head") == 0) { /* a line of 8 numbers: skip it */
            char rest[512];
            if (!fgets(rest, sizeof rest, f)) break;
            continue;
        }
        if (fscanf(f, "%lf", &v) != 1) fail_msg("%s: no value for %s", name, key);
        for (size_t i = 0; i < YT_ARRAY_LEN(want); i++) {
            if (strcmp(want[i].key, key) != 0) continue;
            found++;
            double err = fabs(want[i].c - v);
            if (!(err <= want[i].tol)) /* NaN fails */
                fail_msg("%s: %s C %.12g, NumPy %.12g (|diff| %.3g > %g)", name, key, want[i].c, v,
                         err, want[i].tol);
        }
    }
    fclose(f);
    assert_int_equal(found, (int)YT_ARRAY_LEN(want));
}

/* codes: two factors mixed, one factor alone, noise, a collapsed code; SIZES,
 * in both split regimes (n < 15000: 2:1; n >= 15000: 10000 / 5000) */
static void mixed_codes(dataset *s, uint32_t seed) {
    for (long i = 0; i < s->n; i++) {
        rng_stream r = rng_stream_make(seed, RNG_SYNTHETIC, 81, (uint32_t)i, 0);
        const int32_t *f = s->f + i * s->K;
        double *c = s->codes + i * s->L;
        c[0] = f[0] + 0.5 * f[1] + 0.3 * rng_normal(&r);
        c[1] = f[2] * f[2] * 0.1 + 0.2 * rng_normal(&r);
        c[2] = rng_normal(&r);
        c[3] = -0.7 * f[1] + 0.2 * f[3] + 0.5 * rng_normal(&r);
        c[4] = 0.01 * rng_normal(&r);
    }
}

static void test_numpy_small(void **state) {
    (void)state;
    dataset s = ds_make(900, NF, SIZES, 5, 11);
    mixed_codes(&s, 12);
    compare_with_numpy(&s, "metrics_numpy_small");
    ds_free(&s);
}

static void test_numpy_large(void **state) {
    (void)state;
    if (tu_quick()) skip();
    dataset s = ds_make(16000, NF, SIZES, 5, 13);
    mixed_codes(&s, 14);
    compare_with_numpy(&s, "metrics_numpy_large");
    /* and codes equal to the factors (integers: exact ties everywhere) */
    for (long i = 0; i < s.n; i++)
        for (int j = 0; j < 5; j++)
            s.codes[i * 5 + j] = j < NF ? s.f[i * NF + j] : 0;
    compare_with_numpy(&s, "metrics_numpy_identity");
    ds_free(&s);
}

/* ---- the labels of a split (labels.h) ------------------------------------------------------- */

static void h5_write(hid_t f, const char *name, hid_t type, int nd, const hsize_t *dims,
                     const void *buf) {
    hid_t sp = H5Screate_simple(nd, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(f, name, type, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(ds >= 0);
    hid_t mt = H5Tget_native_type(type, H5T_DIR_ASCEND);
    assert_true(H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Tclose(mt);
    H5Dclose(ds);
    H5Pclose(lcpl);
    H5Sclose(sp);
}

static int identity_set(int k, double *codes, void *ctx) {
    const dataset *s = ctx; /* set k: the codes scaled by k + 1 (MIG, SAP, DCI do not change) */
    for (long i = 0; i < s->n * s->L; i++)
        codes[i] = (k + 1) * s->codes[i];
    return YT_OK;
}

static void test_split_labels(void **state) {
    (void)state;
    enum { N = 600, K = 3 };
    static const int sizes[K] = {5, 4, 3};
    dataset s = ds_make(N, K, sizes, 4, 21);
    codes_identity(&s);
    /* a file in Fashion-MNIST's layout with 3dshapes-style float labels [N, K] (value v of
     * factor k stored as 0.1 v - k) and a labels dataset one row short */
    char dir[1024];
    tu_scratch_dir("split_labels", dir, sizeof dir);
    const char *path = tu_join(dir, "data.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    uint8_t *im = calloc(N * 4, 1);
    double *lab = malloc(N * K * sizeof *lab);
    for (long i = 0; i < N * K; i++)
        lab[i] = 0.1 * s.f[i] - (double)(i % K);
    hsize_t di[4] = {N, 2, 2, 1}, dl[2] = {N, K}, ds1[1] = {N - 1};
    h5_write(f, "train/images", H5T_STD_U8LE, 4, di, im);
    h5_write(f, "train/labels", H5T_IEEE_F64LE, 2, dl, lab);
    h5_write(f, "short/images", H5T_STD_U8LE, 4, di, im);
    h5_write(f, "short/labels", H5T_IEEE_F64LE, 1, ds1, lab);
    h5_write(f, "images", H5T_STD_U8LE, 4, di, im);
    assert_true(H5Fclose(f) >= 0);
    free(im);
    free(lab);

    split_labels l;
    assert_int_equal(labels_find(path, "train/images", N, NULL, NULL, &l), YT_OK);
    assert_string_equal(l.path, "train/labels");
    assert_int_equal(l.ndim, 2);
    assert_int_equal(l.cols, K);
    /* rows 100..599 as factors: the value indices of those rows (every value occurs) */
    const long b = 100, n = N - b;
    int32_t *fac = malloc((size_t)n * K * sizeof *fac);
    int got[K];
    assert_int_equal(labels_factors(&l, b, n, fac, got), YT_OK);
    assert_memory_equal(got, sizes, sizeof got);
    assert_memory_equal(fac, s.f + b * K, (size_t)n * K * sizeof *fac);
    labels_close(&l);
    assert_int_equal(labels_find(path, "images", N, NULL, NULL, &l), YT_OK);
    assert_string_equal(l.path, ""); /* no "labels" beside "images": none, no error */
    labels_close(&l);
    assert_int_equal(labels_find(path, "short/images", N, NULL, "the hint", &l), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "'short/labels' has 599 rows but the images"));
    assert_non_null(strstr(yt_errmsg(), "(the hint)"));
    labels_close(&l);
    assert_int_equal(labels_find(path, "images", N, "nope", NULL, &l), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "no dataset 'nope'"));
    labels_close(&l);

    /* three code sets at once (a world of one: all on this rank) = metrics_compute of each */
    metrics_data shape = ds_view(&s);
    metrics_result r[3];
    double secs = -1;
    assert_int_equal(labels_metrics(&shape, 3, identity_set, &s, r, &secs), YT_OK);
    assert_true(secs >= 0);
    double *codes = malloc((size_t)N * s.L * sizeof *codes);
    for (int k = 0; k < 3; k++) {
        identity_set(k, codes, &s);
        metrics_data d = shape;
        d.codes = codes;
        metrics_result want;
        metrics_compute(&d, NULL, &want);
        assert_memory_equal(&r[k], &want, sizeof want);
        ASSERT_IN("mig", r[k].mig, 0.9, 1.0);
    }
    free(codes);
    /* the gather of a world of one is a copy */
    float a[5] = {1, 2, 3, 4, 5}, all[5] = {0};
    assert_int_equal(dist_allgatherv_float(a, 5, all, 5), 5);
    assert_memory_equal(a, all, sizeof a);
    free(fac);
    ds_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_codes),
        cmocka_unit_test(test_rotated_codes),
        cmocka_unit_test(test_noise_codes),
        cmocka_unit_test(test_undefined),
        cmocka_unit_test(test_collapsed_dims_are_pruned),
        cmocka_unit_test(test_split_sizes),
        cmocka_unit_test(test_labels_to_indices),
        cmocka_unit_test(test_numpy_small),
        cmocka_unit_test(test_numpy_large),
        cmocka_unit_test(test_split_labels),
    };
    return TU_RUN("metrics", tests);
}
