/* test_data_shards.c — the data module under mpirun (np = 1, 2, 4 from
 * tests/run.sh; np = 3 from tests/e2e/test_prepare.sh): parallel HDF5
 * reads of the shards, the union of all ranks' rows, cached == streaming,
 * and bad input failing on every rank together. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "datautil.h"
#include "dist.h"
#include "mpi_testutil.h"

#define H 8
#define W 8
#define N 211

static char g_dir[512];

#define path_in(name) tu_join(g_dir, name)

/* rank 0 makes the files; everybody uses its directory */
static void setup_files(void) {
    if (dist_rank() == 0) {
        tu_scratch_dir("test_data_shards", g_dir, sizeof g_dir);
        tu_write_images(path_in("contig.h5"), "images", N, H, W, 1, 0, 0);
        tu_write_images(path_in("chunked.h5"), "train/images", N, H, W, 1, 9, 1);
    }
    dist_bcast(g_dir, sizeof g_dir, 0);
    dist_barrier();
}

static bool rows_match_pixels(const data_desc *dd, const real *x, const int64_t *rows, long n) {
    const size_t hw = (size_t)dd->oh * dd->ow;
    for (long i = 0; i < n; i++) {
        if (rows[i] < dd->shard_begin || rows[i] >= dd->shard_end) return false;
        for (size_t k = 0; k < hw; k++) {
            if (!tu_close(x[(size_t)i * hw + k], tu_pixel(rows[i], (long)k) / 255.0, 1e-6, 0))
                return false;
        }
    }
    return true;
}

/* Eval: every row of the split exactly once over all ranks. Train: no row
 * twice in an epoch, steps*batch*world rows, each inside its rank's shard. */
static void test_union_is_the_split(void **state) {
    (void)state;
    const char *files[2] = {path_in("contig.h5"), path_in("chunked.h5")};
    const char *dsets[2] = {"images", "train/images"};
    const int P = dist_size(), r = dist_rank();
    yoto_config *cfg = calloc(1, sizeof *cfg);
    for (int f = 0; f < 2; f++) {
        tu_data_config(cfg, files[f], dsets[f], "5:-10%", "value_range(0, 1)", H, W, 1);
        cfg->eval.batch_size = 6;
        double *hits = calloc(N, sizeof(double));
        data_source *d;
        TU_ASSERT_ALL(data_open_eval(&d, cfg, "eval", r, P, NULL) == YT_OK);
        const data_desc *dd = data_describe(d);
        const long begin = dd->begin, end = dd->end;
        real *x = malloc(data_batch_floats(d) * sizeof(real));
        int64_t rows[6];
        bool ok = true;
        for (long s = 0; s < dd->steps; s++) { /* the same count on every rank */
            long count;
            ok &= data_batch(d, 0, s, x, rows, &count) == YT_OK;
            ok &= rows_match_pixels(dd, x, rows, count);
            for (long i = 0; i < count; i++)
                if (rows[i] >= 0 && rows[i] < N) hits[rows[i]] += 1;
        }
        TU_ASSERT_ALL(ok);
        free(x);
        data_close(d);
        dist_allreduce_sum_double(hits, N);
        for (long i = 0; i < N; i++)
            if (hits[i] != (i >= begin && i < end))
                fail_msg("eval, file %d: row %ld read %g times over %d ranks", f, i, hits[i], P);

        /* train, two epochs */
        const long B = 4;
        TU_ASSERT_ALL(data_open_train(&d, cfg, r, P, B, NULL) == YT_OK);
        dd = data_describe(d);
        x = malloc(data_batch_floats(d) * sizeof(real));
        for (long e = 0; e < 2; e++) {
            memset(hits, 0, N * sizeof(double));
            for (long s = 0; s < dd->steps; s++) {
                long count;
                int64_t tr[4];
                ok &= data_batch(d, e, s, x, tr, &count) == YT_OK && count == B;
                ok &= rows_match_pixels(dd, x, tr, count);
                for (long i = 0; i < count; i++)
                    if (tr[i] >= 0 && tr[i] < N) hits[tr[i]] += 1;
            }
            TU_ASSERT_ALL(ok);
            dist_allreduce_sum_double(hits, N);
            double total = 0;
            for (long i = 0; i < N; i++) {
                total += hits[i];
                if (hits[i] > 1 || (hits[i] && (i < begin || i >= end)))
                    fail_msg("train epoch %ld: row %ld read %g times", e, i, hits[i]);
            }
            assert_true(total == (double)(dd->steps * B * P));
            assert_int_equal(dd->steps, data_steps_per_epoch(end - begin, P, B));
        }
        free(x);
        data_close(d);
        free(hits);
    }
    free(cfg);
}

/* the same batches whatever the read mode: cached (in one collective read,
 * or in pieces of 5 rows, where ranks with smaller shards join the last
 * piece with an empty selection), streaming through the reader thread and
 * streaming with independent HDF5 reads */
static void test_streaming_equals_cached(void **state) {
    (void)state;
    const int P = dist_size(), r = dist_rank();
    yoto_config *cfg = calloc(1, sizeof *cfg);
    const char *files[2] = {path_in("contig.h5"), path_in("chunked.h5")};
    const char *dsets[2] = {"images", "train/images"};
    const long B = 3;
    bool ok = true;
    for (int f = 0; f < 2; f++) {
        tu_data_config(cfg, files[f], dsets[f], "", "random_crop(6), flip_lr(), value_range(-1, 1)",
                       6, 6, 1);
        data_source *d[4];
        for (int m = 0; m < 4; m++) {
            data_tuning t = data_tuning_default();
            t.window_rows = 3;
            t.block_bytes = 4 * 3 * 64;
            t.cache_bytes = m == 0 || m == 3 ? -1 : 0;
            t.readahead = m == 1;
            t.piece_bytes = m == 3 ? 5 * 64 : 0;
            TU_ASSERT_ALL(data_open_train(&d[m], cfg, r, P, B, &t) == YT_OK);
        }
        assert_true(data_describe(d[0])->cached && !data_describe(d[1])->cached);
        size_t n = data_batch_floats(d[0]);
        real *x[4];
        for (int m = 0; m < 4; m++)
            x[m] = malloc(n * sizeof(real));
        int64_t rows[4][3];
        long steps = data_describe(d[0])->steps, count;
        for (long e = 0; e < 2; e++)
            for (long s = 0; s < steps; s++) {
                for (int m = 0; m < 4; m++)
                    ok &= data_batch(d[m], e, s, x[m], rows[m], &count) == 0;
                for (int m = 1; m < 4; m++) {
                    ok &= memcmp(rows[0], rows[m], sizeof rows[0]) == 0;
                    ok &= memcmp(x[0], x[m], n * sizeof(real)) == 0;
                }
                for (size_t i = 0; i < n; i++) /* value_range(-1, 1): no NaN slips through */
                    ok &= tu_close(x[0][i], 0, 1, 0);
            }
        for (int m = 0; m < 4; m++) {
            free(x[m]);
            data_close(d[m]);
        }
    }
    TU_ASSERT_ALL(ok);
    free(cfg);
}

static void expect_all_fail(const yoto_config *cfg, int status, long batch, const char *needle) {
    data_source *d = NULL;
    yt_clear_error();
    int rc = data_open_train(&d, cfg, dist_rank(), dist_size(), batch, NULL);
    bool ok = rc == status && d == NULL && strstr(yt_errmsg(), needle) != NULL;
    if (!ok && rc == YT_OK) data_close(d);
    if (!tu_all(ok))
        fail_msg("want status %d with '%s' on every rank; here: %d '%s'", status, needle, rc,
                 yt_errmsg());
}

/* bad input fails on every rank with the same status, nobody hangs */
static void test_bad_input_everywhere(void **state) {
    (void)state;
    yoto_config *cfg = calloc(1, sizeof *cfg);
    tu_data_config(cfg, path_in("missing.h5"), "images", "", "value_range(0, 1)", H, W, 1);
    expect_all_fail(cfg, YT_ERR_USAGE, 4, "cannot open data file");
    tu_data_config(cfg, path_in("contig.h5"), "labels", "", "value_range(0, 1)", H, W, 1);
    expect_all_fail(cfg, YT_ERR_USAGE, 4, "no dataset 'labels'");
    tu_data_config(cfg, path_in("contig.h5"), "images", ":7", "value_range(0, 1)", H, W, 1);
    expect_all_fail(cfg, YT_ERR_USAGE, 8, "too few");
    tu_data_config(cfg, path_in("contig.h5"), "images", "", "value_range(0, 1)", 4, 4, 1);
    expect_all_fail(cfg, YT_ERR_USAGE, 4, "model.input_shape");
    /* a failure on one rank only (injected on the last) reaches every rank */
    char fault[64];
    snprintf(fault, sizeof fault, "data-open@%d", dist_size() - 1);
    setenv("YOTO_FAULT", fault, 1);
    tu_data_config(cfg, path_in("contig.h5"), "images", "", "value_range(0, 1)", H, W, 1);
    expect_all_fail(cfg, YT_ERR_USAGE, 4, "injected fault");
    if (dist_size() > 1) expect_all_fail(cfg, YT_ERR_USAGE, 4, "rank ");
    /* a read error while streaming is local: the caller agrees on it */
    snprintf(fault, sizeof fault, "data-read@%d", dist_size() - 1);
    setenv("YOTO_FAULT", fault, 1);
    data_tuning t = data_tuning_default();
    t.cache_bytes = 0;
    data_source *d;
    TU_ASSERT_ALL(data_open_train(&d, cfg, dist_rank(), dist_size(), 4, &t) == YT_OK);
    real *x = malloc(data_batch_floats(d) * sizeof(real));
    long count;
    int rc = data_batch(d, 0, 0, x, NULL, &count);
    TU_ASSERT_ALL((rc == YT_ERR_RUNTIME) == (dist_rank() == dist_size() - 1));
    assert_int_equal(dist_agree(rc), YT_ERR_RUNTIME);
    assert_non_null(strstr(yt_errmsg(), "injected read fault"));
    unsetenv("YOTO_FAULT");
    free(x);
    data_close(d);
    free(cfg);
}

int main(int argc, char **argv) {
    tu_mpi_init(&argc, &argv);
    setup_files();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_union_is_the_split),
        cmocka_unit_test(test_streaming_equals_cached),
        cmocka_unit_test(test_bad_input_everywhere),
    };
    return TU_MPI_RUN("data_shards", tests);
}
