/* test_data.c — the data module in one process (no MPI: serial HDF5):
 * shard math, bad input, batch contents, shuffle determinism and resume,
 * cached == streaming, the union of simulated ranks' shards, eval counts. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "datautil.h"
#include "testutil.h"

static char g_dir[512];

#define path_in(name) tu_join(g_dir, name)

/* 8x8x1 images: 64-byte rows, so tiny windows/blocks exercise many groups */
#define H 8
#define W 8
#define N 203

static int setup(void **state) {
    (void)state;
    tu_scratch_dir("test_data", g_dir, sizeof g_dir);
    tu_write_images(path_in("contig.h5"), "images", N, H, W, 1, 0, 0);
    tu_write_images(path_in("chunked.h5"), "train/images", N, H, W, 1, 7, 4);
    tu_write_images(path_in("gray3d.h5"), "images", 20, H, W, 0, 0, 0);
    return 0;
}

static void test_shard_math(void **state) {
    (void)state;
    for (long n = 0; n < 60; n++)
        for (int world = 1; world <= 7; world++) {
            long next = 0, mn = n, mx = 0;
            for (int r = 0; r < world; r++) {
                long b, e;
                data_shard(n, r, world, &b, &e);
                assert_int_equal(b, next); /* contiguous, in rank order */
                next = e;
                mn = YT_MIN(mn, e - b);
                mx = YT_MAX(mx, e - b);
            }
            assert_int_equal(next, n); /* covers all rows */
            assert_true(mx - mn <= 1);
            assert_int_equal(mn, n / world);
            for (long b = 1; b <= 5; b++)
                assert_int_equal(data_steps_per_epoch(n, world, b), mn / b);
        }
}

/* one bad-input case: status 2 and a message containing every needle */
static void expect_probe_error(const char *file, const char *dset, const char *needle1,
                               const char *needle2) {
    data_image_info ii;
    yt_clear_error();
    int rc = data_probe(file, dset, &ii);
    if (rc != YT_ERR_USAGE) fail_msg("%s:%s: status %d, want 2 (%s)", file, dset, rc, yt_errmsg());
    const char *needles[3] = {file, needle1, needle2};
    for (int i = 0; i < 3; i++)
        if (needles[i] && !strstr(yt_errmsg(), needles[i]))
            fail_msg("message '%s' lacks '%s'", yt_errmsg(), needles[i]);
}

static void test_bad_files(void **state) {
    (void)state;
    expect_probe_error(path_in("missing.h5"), "images", "cannot open", NULL);
    FILE *f = fopen(path_in("text.h5"), "w");
    fputs("not hdf5\n", f);
    fclose(f);
    expect_probe_error(path_in("text.h5"), "images", "not an HDF5 file", NULL);
    expect_probe_error(path_in("contig.h5"), "imgs", "no dataset 'imgs'", "'images'");
    expect_probe_error(path_in("chunked.h5"), "test/images", "no dataset 'test/images'", "'train'");
    expect_probe_error(path_in("chunked.h5"), "train", "is a group", "'images'");
    const char *bad = path_in("bad.h5");
    hsize_t d4[4] = {5, 4, 4, 3}, d2[2] = {5, 6}, d0[4] = {0, 4, 4, 3}, d5[5] = {2, 2, 2, 2, 2};
    tu_write_raw(bad, "float", H5T_IEEE_F32LE, 4, d4);
    tu_write_raw(bad, "int8", H5T_STD_I8LE, 4, d4);
    tu_write_raw(bad, "labels", H5T_IEEE_F64LE, 2, d2);
    tu_write_raw(bad, "flat", H5T_STD_U8LE, 2, d2);
    tu_write_raw(bad, "empty", H5T_STD_U8LE, 4, d0);
    tu_write_raw(bad, "rank5", H5T_STD_U8LE, 5, d5);
    expect_probe_error(bad, "float", "expected uint8 images [N, H, W, C]", "float32 [5, 4, 4, 3]");
    expect_probe_error(bad, "int8", "expected uint8", "int8");
    expect_probe_error(bad, "labels", "not image data", "float64 [5, 6]");
    expect_probe_error(bad, "flat", "not image data", "uint8 [5, 6]");
    expect_probe_error(bad, "empty", "zero rows", NULL);
    expect_probe_error(bad, "rank5", "not image data", "[2, 2, 2, 2, 2]");
    /* 3-d [N, H, W] is read as one channel */
    data_image_info ii;
    assert_int_equal(data_probe(path_in("gray3d.h5"), "images", &ii), YT_OK);
    assert_int_equal(ii.c, 1);
    assert_int_equal(ii.ndim, 3);
    assert_int_equal(data_probe(path_in("chunked.h5"), "train/images", &ii), YT_OK);
    assert_true(ii.chunked && ii.nfilters == 1 && ii.chunk_rows == 7);
}

static void expect_open_error(const yoto_config *cfg, int world, long batch, const char *n1,
                              const char *n2) {
    data_source *d = (data_source *)1;
    yt_clear_error();
    int rc = data_open_train(&d, cfg, 0, world, batch, NULL);
    if (rc != YT_ERR_USAGE) fail_msg("status %d, want 2 (%s)", rc, yt_errmsg());
    assert_null(d);
    if (n1 && !strstr(yt_errmsg(), n1)) fail_msg("message '%s' lacks '%s'", yt_errmsg(), n1);
    if (n2 && !strstr(yt_errmsg(), n2)) fail_msg("message '%s' lacks '%s'", yt_errmsg(), n2);
}

static void test_bad_splits(void **state) {
    (void)state;
    yoto_config *cfg = calloc(1, sizeof *cfg);
    const char *file = path_in("contig.h5");
    tu_data_config(cfg, path_in("nope.h5"), "images", "", "value_range(0, 1)", H, W, 1);
    expect_open_error(cfg, 1, 4, "nope.h5", "cannot open");
    tu_data_config(cfg, file, "labels", "", "value_range(0, 1)", H, W, 1);
    expect_open_error(cfg, 1, 4, "no dataset 'labels'", file);
    tu_data_config(cfg, file, "images", "", "value_range(0, 1)", H, W, 1);
    snprintf(cfg->data.train_split, sizeof cfg->data.train_split, "valid");
    expect_open_error(cfg, 1, 4, "no split called 'valid'", "data.train_split");
    tu_data_config(cfg, file, "images", "300:", "value_range(0, 1)", H, W, 1);
    expect_open_error(cfg, 1, 4, "selects no rows", "'300:'");
    tu_data_config(cfg, file, "images", "1:x", "value_range(0, 1)", H, W, 1);
    expect_open_error(cfg, 1, 4, "bad row range '1:x'", "'train'");
    /* 203 rows over 8 ranks: shards of 25, too few for 32 per rank */
    tu_data_config(cfg, file, "images", "", "value_range(0, 1)", H, W, 1);
    expect_open_error(cfg, 8, 32, "too few for 8 ranks x 32", "smallest shard has 25 rows");
    expect_open_error(cfg, 1, 0, "must be >= 1", NULL);
    /* pipeline vs model */
    tu_data_config(cfg, file, "images", "", "pad(10), value_range(0, 1)", H, W, 1);
    expect_open_error(cfg, 1, 4, "model.input_shape is [8, 8, 1]", "data.preprocess_train");
    tu_data_config(cfg, file, "images", "", "random_crop(9)", 9, 9, 1);
    expect_open_error(cfg, 1, 4, "random_crop(9)", "data.preprocess_train");
    free(cfg);
}

/* Row r's pixels come back as value_range(0,1) of tu_pixel, channel-major. */
static void check_batch(const data_desc *dd, const real *x, const int64_t *rows, long n) {
    const size_t hw = (size_t)dd->oh * dd->ow;
    for (long i = 0; i < n; i++) {
        if (rows[i] < dd->shard_begin || rows[i] >= dd->shard_end)
            fail_msg("row %ld outside the shard [%ld, %ld)", (long)rows[i], dd->shard_begin,
                     dd->shard_end);
        for (size_t k = 0; k < hw; k++) {
            double want = tu_pixel(rows[i], (long)k) / 255.0, got = x[(size_t)i * hw + k];
            if (!tu_close(got, want, 1e-6, 0))
                fail_msg("row %ld pixel %zu: %g, want %g", (long)rows[i], k, got, want);
        }
    }
}

typedef struct {
    long steps, batch;
    int64_t *rows; /* [epochs][steps][batch] */
    real *x;
} run_log;

/* All batches of `epochs` epochs, steps in the given order. */
static run_log read_epochs(const yoto_config *cfg, int rank, int world, long batch,
                           const data_tuning *t, int epochs, bool reverse) {
    data_source *d;
    if (data_open_train(&d, cfg, rank, world, batch, t) != YT_OK) fail_msg("%s", yt_errmsg());
    const data_desc *dd = data_describe(d);
    run_log L = {dd->steps, batch, NULL, NULL};
    size_t per = data_batch_floats(d);
    L.rows = malloc((size_t)epochs * L.steps * batch * sizeof(int64_t));
    L.x = malloc((size_t)epochs * L.steps * per * sizeof(real));
    for (int e = 0; e < epochs; e++)
        for (long i = 0; i < L.steps; i++) {
            long s = reverse ? L.steps - 1 - i : i, count = -1;
            size_t at = (size_t)e * L.steps + s;
            if (data_batch(d, e, s, L.x + at * per, L.rows + at * batch, &count) != YT_OK)
                fail_msg("epoch %d step %ld: %s", e, s, yt_errmsg());
            assert_int_equal(count, batch);
        }
    data_close(d);
    return L;
}

static void free_log(run_log *L) {
    free(L->rows);
    free(L->x);
}

static void test_batches_and_shuffle(void **state) {
    (void)state;
    yoto_config *cfg = calloc(1, sizeof *cfg);
    tu_data_config(cfg, path_in("contig.h5"), "images", "10:", "value_range(0, 1)", H, W, 1);
    const long B = 6;
    data_tuning t = data_tuning_default();
    t.window_rows = 5;
    t.block_bytes = 3 * 5 * 64; /* groups of 3 windows */
    run_log L = read_epochs(cfg, 1, 3, B, &t, 3, false);
    data_source *d;
    assert_int_equal(data_open_train(&d, cfg, 1, 3, B, &t), YT_OK);
    const data_desc dd = *data_describe(d);
    data_close(d);
    /* 193 rows over 3 ranks: shards 65, 64, 64; steps = 64 / 6 = 10 */
    assert_int_equal(dd.begin, 10);
    assert_int_equal(dd.shard_begin, 10 + 65);
    assert_int_equal(dd.shard_end, 10 + 129);
    assert_int_equal(dd.steps, 10);
    assert_true(dd.cached);
    const long per_epoch = dd.steps * B;
    for (int e = 0; e < 3; e++) {
        int64_t *r = L.rows + e * per_epoch;
        char *seen = calloc(300, 1);
        for (long i = 0; i < per_epoch; i++) {
            if (seen[r[i]]) fail_msg("epoch %d: row %ld twice", e, (long)r[i]);
            seen[r[i]] = 1;
        }
        free(seen);
        check_batch(&dd, L.x + (size_t)e * per_epoch * H * W, r, per_epoch);
    }
    /* the window order is drawn per epoch, not only the rows inside a group:
     * an epoch's first group is the first 3 permuted windows (15 rows), and
     * which windows those are changes with the epoch */
    unsigned first_windows[3] = {0};
    for (int e = 0; e < 3; e++) {
        for (long i = 0; i < 15; i++)
            first_windows[e] |= 1u << ((L.rows[e * per_epoch + i] - dd.shard_begin) / 5);
        if (__builtin_popcount(first_windows[e]) != 3)
            fail_msg("epoch %d: the first 15 rows come from %d windows, want 3", e,
                     __builtin_popcount(first_windows[e]));
    }
    if (first_windows[0] == first_windows[1] && first_windows[1] == first_windows[2])
        fail_msg("the first group holds the same windows in 3 epochs (mask %#x)", first_windows[0]);
    /* epochs differ; the order is not the file order */
    assert_true(memcmp(L.rows, L.rows + per_epoch, per_epoch * sizeof(int64_t)) != 0);
    long ascending = 0;
    for (long i = 1; i < per_epoch; i++)
        ascending += L.rows[i] == L.rows[i - 1] + 1;
    assert_true(ascending < per_epoch / 4);
    /* determinism and resume: a fresh source, steps read backwards, same batches */
    run_log R = read_epochs(cfg, 1, 3, B, &t, 3, true);
    assert_memory_equal(L.rows, R.rows, 3 * per_epoch * sizeof(int64_t));
    assert_memory_equal(L.x, R.x, 3 * per_epoch * H * W * sizeof(real));
    /* another seed, another order */
    cfg->experiment.seed++;
    run_log S = read_epochs(cfg, 1, 3, B, &t, 1, false);
    assert_true(memcmp(L.rows, S.rows, per_epoch * sizeof(int64_t)) != 0);
    free_log(&L);
    free_log(&R);
    free_log(&S);
    free(cfg);
}

/* cached (in one read or in pieces), streaming with the reader thread,
 * streaming with synchronous HDF5 reads, and a chunked+deflated copy: the
 * same batches */
static void test_cached_equals_streaming(void **state) {
    (void)state;
    yoto_config *cfg = calloc(1, sizeof *cfg);
    const char *files[2] = {path_in("contig.h5"), path_in("chunked.h5")};
    const char *dsets[2] = {"images", "train/images"};
    const long B = 7;
    run_log ref = {0};
    for (int f = 0; f < 2; f++)
        for (int mode = 0; mode < 4; mode++) {
            tu_data_config(cfg, files[f], dsets[f], "3:-2", "flip_lr(), value_range(0, 1)", H, W,
                           1);
            data_tuning t = data_tuning_default();
            t.window_rows = 4;
            t.block_bytes = 5 * 4 * 64;
            t.cache_bytes = mode == 0 || mode == 3 ? -1 : 0;
            t.readahead = mode == 1;
            t.piece_bytes = mode == 3 ? 11 * 64 : 0; /* the cache read in pieces */
            data_source *d;
            assert_int_equal(data_open_train(&d, cfg, 0, 2, B, &t), YT_OK);
            const data_desc *dd = data_describe(d);
            assert_int_equal(dd->cached, mode == 0 || mode == 3);
            assert_int_equal(dd->readahead, mode == 1 && f == 0); /* pread needs contiguous */
            data_close(d);
            run_log L = read_epochs(cfg, 0, 2, B, &t, 3, false);
            if (!ref.rows) {
                ref = L;
                continue;
            }
            size_t n = 3 * (size_t)L.steps * B;
            if (memcmp(ref.rows, L.rows, n * sizeof(int64_t)) != 0)
                fail_msg("file %d mode %d: other rows than cached mode", f, mode);
            if (memcmp(ref.x, L.x, n * H * W * sizeof(real)) != 0)
                fail_msg("file %d mode %d: other pixels than cached mode", f, mode);
            free_log(&L);
        }
    free_log(&ref);
    free(cfg);
}

/* Simulated ranks (rank/world are arguments): the union of the eval shards
 * is the split, each row once; train rows stay inside their shards. */
static void test_union_of_shards(void **state) {
    (void)state;
    yoto_config *cfg = calloc(1, sizeof *cfg);
    tu_data_config(cfg, path_in("chunked.h5"), "train/images", "20%:", "value_range(0, 1)", H, W,
                   1);
    cfg->eval.batch_size = 8;
    for (int world = 1; world <= 4; world++) {
        int *hits = calloc(N, sizeof(int));
        long begin = -1, end = -1, batches = -1;
        for (int r = 0; r < world; r++) {
            data_source *d;
            assert_int_equal(data_open_eval(&d, cfg, "eval", r, world, NULL), YT_OK);
            const data_desc *dd = data_describe(d);
            begin = dd->begin;
            end = dd->end;
            if (batches >= 0) assert_int_equal(dd->steps, batches); /* same on every rank */
            batches = dd->steps;
            real *x = malloc(data_batch_floats(d) * sizeof(real));
            int64_t rows[8];
            for (long s = 0; s < dd->steps; s++) {
                long count;
                assert_int_equal(data_batch(d, 0, s, x, rows, &count), YT_OK);
                check_batch(dd, x, rows, count);
                for (long i = 0; i < count; i++) {
                    if (i && rows[i] != rows[i - 1] + 1) fail_msg("eval rows not in order");
                    hits[rows[i]]++;
                }
            }
            free(x);
            data_close(d);
        }
        assert_int_equal(begin, 41); /* 20% of 203 = 40.6 -> 41 */
        for (long r = 0; r < N; r++)
            if (hits[r] != (r >= begin && r < end))
                fail_msg("world %d: row %ld read %d times", world, r, hits[r]);
        free(hits);
    }
    free(cfg);
}

/* max_batches over ranks: the rows a one-rank pass reads, shared out */
static void test_eval_counts(void **state) {
    (void)state;
    yoto_config *cfg = calloc(1, sizeof *cfg);
    tu_data_config(cfg, path_in("contig.h5"), "images", ":103", "value_range(0, 1)", H, W, 1);
    cfg->eval.batch_size = 10;
    cfg->eval.max_batches = 5;
    long want_steps[4] = {5, 3, 2, 2}; /* ceil(ceil(50 / world) / 10) */
    for (int world = 1; world <= 4; world++) {
        long total = 0;
        double sum = 0;
        for (int r = 0; r < world; r++) {
            data_source *d;
            assert_int_equal(data_open_eval(&d, cfg, "eval", r, world, NULL), YT_OK);
            const data_desc *dd = data_describe(d);
            assert_int_equal(dd->rows, 50);
            assert_int_equal(dd->steps, want_steps[world - 1]);
            real *x = malloc(data_batch_floats(d) * sizeof(real));
            for (long s = 0; s < dd->steps; s++) {
                long count;
                assert_int_equal(data_batch(d, 0, s, x, NULL, &count), YT_OK);
                assert_true(count >= 0 && count <= 10);
                total += count;
                for (long i = 0; i < count * H * W; i++)
                    sum += x[i];
            }
            free(x);
            data_close(d);
        }
        assert_int_equal(total, 50);
        double want = 0;
        for (long r = 0; r < 50; r++)
            for (long k = 0; k < H * W; k++)
                want += tu_pixel(r, k) / 255.0;
        if (!tu_close(sum, want, 1e-3, 0)) fail_msg("world %d: sum %g, want %g", world, sum, want);
    }
    free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_math),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_bad_splits),
        cmocka_unit_test(test_batches_and_shuffle),
        cmocka_unit_test(test_cached_equals_streaming),
        cmocka_unit_test(test_union_of_shards),
        cmocka_unit_test(test_eval_counts),
    };
    if (setup(NULL) != 0) return 1;
    return TU_RUN("data", tests);
}
