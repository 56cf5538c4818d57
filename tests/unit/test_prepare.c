/* test_prepare.c — converters on small files the tests write: IDX (plain,
 * gzipped, truncated, malformed), CIFAR-10 binary batches (values and HWC
 * order), the Shapes3D stand-in's factors and rendering, atomic output,
 * data-info's verdicts. */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "datautil.h"
#include "prepare.h"
#include "testutil.h"

static char g_dir[512];

#define path_in(name) tu_join(g_dir, name)

static void write_bytes(const char *path, const uint8_t *b, size_t n, bool gz) {
    if (gz) {
        gzFile g = gzopen(path, "wb");
        if (!g || gzwrite(g, b, (unsigned)n) != (int)n || gzclose(g) != Z_OK)
            fail_msg("cannot write %s", path);
    } else {
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0) fail_msg("cannot write %s", path);
    }
}

/* An IDX ubyte file: n items of shape dims[1..], values v(i) = (i*7 + salt). */
static size_t make_idx(uint8_t *buf, int ndim, const uint32_t *dims, int salt) {
    buf[0] = buf[1] = 0;
    buf[2] = 0x08;
    buf[3] = (uint8_t)ndim;
    size_t n = 1, o = 4;
    for (int i = 0; i < ndim; i++) {
        buf[o++] = (uint8_t)(dims[i] >> 24);
        buf[o++] = (uint8_t)(dims[i] >> 16);
        buf[o++] = (uint8_t)(dims[i] >> 8);
        buf[o++] = (uint8_t)dims[i];
        n *= dims[i];
    }
    for (size_t i = 0; i < n; i++)
        buf[o + i] = (uint8_t)(i * 7 + (size_t)salt);
    return o + n;
}

static int setup(void) {
    tu_scratch_dir("test_prepare", g_dir, sizeof g_dir);
    return 0;
}

static void test_idx_plain_gzip_truncated(void **state) {
    (void)state;
    uint8_t buf[4096];
    uint32_t dims[3] = {5, 4, 3};
    size_t n = make_idx(buf, 3, dims, 1);
    write_bytes(path_in("a.idx"), buf, n, false);
    write_bytes(path_in("a.idx.gz"), buf, n, true);
    for (int gz = 0; gz < 2; gz++) {
        prepare_idx_array a;
        assert_int_equal(prepare_read_idx(path_in(gz ? "a.idx.gz" : "a.idx"), 3, &a), YT_OK);
        assert_int_equal(a.ndim, 3);
        assert_int_equal(a.dims[0], 5);
        assert_int_equal(a.dims[1], 4);
        assert_int_equal(a.dims[2], 3);
        assert_int_equal(a.nbytes, 60);
        assert_memory_equal(a.data, buf + 16, 60);
        free(a.data);
    }
    /* truncated: plain, gzip of a short file, and a cut gzip stream */
    write_bytes(path_in("short.idx"), buf, n - 5, false);
    write_bytes(path_in("short.idx.gz"), buf, n - 5, true);
    write_bytes(path_in("hdr.idx"), buf, 10, false);
    uint8_t gzb[4096];
    FILE *f = fopen(path_in("a.idx.gz"), "rb");
    size_t gzn = fread(gzb, 1, sizeof gzb, f);
    fclose(f);
    write_bytes(path_in("cut.idx.gz"), gzb, gzn / 2, false);
    const char *trunc[] = {"short.idx", "short.idx.gz", "hdr.idx", "cut.idx.gz"};
    for (int i = 0; i < 4; i++) {
        prepare_idx_array a;
        yt_clear_error();
        assert_int_equal(prepare_read_idx(path_in(trunc[i]), 3, &a), YT_ERR_USAGE);
        assert_null(a.data);
        if (!strstr(yt_errmsg(), "truncated") || !strstr(yt_errmsg(), trunc[i]))
            fail_msg("%s: %s", trunc[i], yt_errmsg());
    }
    /* malformed */
    uint8_t bad[64];
    memcpy(bad, buf, 64);
    bad[0] = 0x1f;
    write_bytes(path_in("magic.idx"), bad, 64, false);
    memcpy(bad, buf, 64);
    bad[2] = 0x0d; /* float */
    write_bytes(path_in("float.idx"), bad, 64, false);
    prepare_idx_array a;
    assert_int_equal(prepare_read_idx(path_in("magic.idx"), 3, &a), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "not an IDX file"));
    assert_int_equal(prepare_read_idx(path_in("float.idx"), 3, &a), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "unsigned byte"));
    assert_int_equal(prepare_read_idx(path_in("a.idx"), 1, &a), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "3 dimensions, expected 1"));
    assert_int_equal(prepare_read_idx(path_in("nope.idx"), 3, &a), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "nope.idx"));
}

/* reads a uint8 dataset whole */
static uint8_t *read_u8(const char *file, const char *dset, hsize_t *dims, int *nd) {
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) fail_msg("cannot open %s", file);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    if (d < 0) fail_msg("%s: no %s", file, dset);
    hid_t s = H5Dget_space(d);
    *nd = H5Sget_simple_extent_dims(s, dims, NULL);
    size_t n = 1;
    for (int i = 0; i < *nd; i++)
        n *= dims[i];
    uint8_t *b = malloc(n + 1);
    if (H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, b) < 0) fail_msg("read");
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
    return b;
}

static void test_prepare_idx_dir(void **state) {
    (void)state;
    char dir[700];
    snprintf(dir, sizeof dir, "%s/idx", g_dir);
    mkdir(dir, 0755);
    uint8_t buf[4096];
    struct {
        const char *name;
        int ndim;
        uint32_t dims[3];
        bool gz;
    } files[4] = {{"train-images-idx3-ubyte", 3, {6, 4, 5}, true},
                  {"train-labels-idx1-ubyte", 1, {6}, false},
                  {"t10k-images-idx3-ubyte", 3, {2, 4, 5}, false},
                  {"t10k-labels-idx1-ubyte", 1, {2}, true}};
    char p[800];
    for (int i = 0; i < 4; i++) {
        size_t n = make_idx(buf, files[i].ndim, files[i].dims, i);
        if (files[i].ndim == 1)
            for (size_t k = 8; k < n; k++)
                buf[k] %= 10; /* labels 0..9 */
        snprintf(p, sizeof p, "%s/%s%s", dir, files[i].name, files[i].gz ? ".gz" : "");
        write_bytes(p, buf, n, files[i].gz);
    }
    prepare_options o = prepare_options_default();
    const char *out = path_in("mnist.h5");
    assert_int_equal(prepare_idx("mnist", dir, out, &o), YT_OK);
    hsize_t dims[4];
    int nd;
    uint8_t *im = read_u8(out, "train/images", dims, &nd);
    assert_int_equal(nd, 4);
    assert_true(dims[0] == 6 && dims[1] == 4 && dims[2] == 5 && dims[3] == 1);
    for (int i = 0; i < 120; i++)
        assert_int_equal(im[i], (uint8_t)(i * 7 + 0));
    free(im);
    uint8_t *lb = read_u8(out, "test/labels", dims, &nd);
    assert_true(nd == 1 && dims[0] == 2);
    assert_int_equal(lb[1], (uint8_t)(7 + 3) % 10);
    free(lb);
    data_image_info ii;
    assert_int_equal(data_probe(out, "test/images", &ii), YT_OK);
    assert_int_equal(ii.n, 2);
    /* a count mismatch and a missing file name the problem; nothing is left behind */
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte.gz", dir);
    uint32_t three = 3;
    size_t n = make_idx(buf, 1, &three, 0);
    write_bytes(p, buf, n, true);
    const char *out2 = path_in("bad.h5");
    yt_clear_error();
    assert_int_equal(prepare_idx("fashion-mnist", dir, out2, &o), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "3 labels for 2 images"));
    unlink(p);
    assert_int_equal(prepare_idx("fashion-mnist", dir, out2, &o), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "no t10k-labels-idx1-ubyte(.gz)"));
    assert_int_equal(access(out2, F_OK), -1);
    assert_int_equal(prepare_idx("fashion-mnist", path_in("nodir"), out2, &o), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "not a directory"));
}

/* CIFAR record r of batch b: label (r + b) % 10, channel ch pixel p = f(...) */
static uint8_t cifar_px(int b, int r, int ch, int p) {
    return (uint8_t)(b * 50 + r * 13 + ch * 85 + p);
}

static void write_cifar(const char *dir, const char *name, int b, int recs, long cut) {
    size_t n = (size_t)recs * 3073;
    uint8_t *buf = malloc(n);
    for (int r = 0; r < recs; r++) {
        uint8_t *q = buf + (size_t)r * 3073;
        q[0] = (uint8_t)((r + b) % 10);
        for (int ch = 0; ch < 3; ch++)
            for (int p = 0; p < 1024; p++)
                q[1 + ch * 1024 + p] = cifar_px(b, r, ch, p);
    }
    char path[800];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_bytes(path, buf, n - (size_t)cut, false);
    free(buf);
}

static void test_cifar(void **state) {
    (void)state;
    char dir[700];
    snprintf(dir, sizeof dir, "%s/cifar/cifar-10-batches-bin", g_dir);
    char parent[700];
    snprintf(parent, sizeof parent, "%s/cifar", g_dir);
    mkdir(parent, 0755);
    mkdir(dir, 0755);
    const char *names[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                            "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    const int recs[6] = {3, 2, 3, 1, 2, 4};
    for (int b = 0; b < 6; b++)
        write_cifar(dir, names[b], b, recs[b], 0);
    prepare_options o = prepare_options_default();
    const char *out = path_in("cifar.h5");
    assert_int_equal(prepare_cifar10(parent, out, &o), YT_OK); /* finds the subdirectory */
    hsize_t di[4], dl[4];
    int nd, ndl;
    uint8_t *im = read_u8(out, "train/images", di, &nd);
    uint8_t *lb = read_u8(out, "train/labels", dl, &ndl);
    assert_true(nd == 4 && di[0] == 11 && di[1] == 32 && di[2] == 32 && di[3] == 3);
    assert_true(ndl == 1 && dl[0] == 11);
    /* train = batches 1..5 in order; HWC: pixel (y, x) channel ch at (y*32+x)*3+ch */
    long row = 0;
    for (int b = 0; b < 5; b++)
        for (int r = 0; r < recs[b]; r++, row++) {
            assert_int_equal(lb[row], (r + b) % 10);
            for (int p = 0; p < 1024; p += 37)
                for (int ch = 0; ch < 3; ch++)
                    if (im[row * 3072 + p * 3 + ch] != cifar_px(b, r, ch, p))
                        fail_msg("train row %ld pixel %d channel %d", row, p, ch);
        }
    free(im);
    free(lb);
    uint8_t *t = read_u8(out, "test/images", di, &nd);
    assert_true(di[0] == 4);
    assert_int_equal(t[3 * 3072 + 5 * 3 + 2], cifar_px(5, 3, 2, 5));
    free(t);
    /* a truncated batch and a bad label */
    write_cifar(dir, "data_batch_3.bin", 2, 3, 100);
    yt_clear_error();
    assert_int_equal(prepare_cifar10(dir, path_in("c2.h5"), &o), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "data_batch_3.bin: truncated"));
    write_cifar(dir, "data_batch_3.bin", 2, 3, 0);
    uint8_t *im1, *lb1;
    long n1;
    char p[800];
    snprintf(p, sizeof p, "%s/test_batch.bin", dir);
    FILE *f = fopen(p, "r+b");
    fputc(10, f);
    fclose(f);
    assert_int_equal(prepare_read_cifar(p, &im1, &lb1, &n1), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "label 10"));
    unlink(p);
    assert_int_equal(prepare_cifar10(dir, path_in("c3.h5"), &o), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "no test_batch.bin"));
    assert_int_equal(access(path_in("c2.h5"), F_OK), -1);
}

static void test_shapes_factors_and_render(void **state) {
    (void)state;
    double f[6];
    prepare_shapes_factors(0, f);
    double want0[6] = {0, 0, 0, 0.75, 0, -30};
    for (int k = 0; k < 6; k++)
        assert_true(f[k] == want0[k]);
    prepare_shapes_factors(SHAPES_N - 1, f);
    double want1[6] = {0.9, 0.9, 0.9, 1.25, 3, 30};
    for (int k = 0; k < 6; k++)
        assert_true(fabs(f[k] - want1[k]) < 1e-12);
    /* orientation fastest, then shape, scale, object, wall, floor hue */
    prepare_shapes_factors(15 + 4 * 15 * 2, f);
    assert_true(f[5] == -30 && f[4] == 1 && fabs(f[3] - (0.75 + 2 * 0.5 / 7)) < 1e-12);
    prepare_shapes_factors(8L * 4 * 15 * 10 * 10 * 3, f);
    assert_true(fabs(f[0] - 0.3) < 1e-12 && f[1] == 0 && f[2] == 0);

    /* red floor (hue 0), green-ish wall (0.3), blue object (0.6): the
     * dominant channel of each region names its hue */
    double g[6] = {0.0, 0.3, 0.6, 1.0, 0, 0};
    uint8_t img[64 * 64 * 3];
    for (int shape = 0; shape < 4; shape++) {
        g[4] = shape;
        prepare_shapes_render(g, img);
        const uint8_t *floor_px = img + (62 * 64 + 2) * 3, *wall_px = img + (2 * 64 + 60) * 3;
        const uint8_t *obj_px = img + (46 * 64 + 32) * 3;
        assert_true(floor_px[0] > floor_px[1] && floor_px[0] > floor_px[2]);
        assert_true(wall_px[1] > wall_px[0] && wall_px[1] > wall_px[2]);
        assert_true(obj_px[2] > obj_px[0] && obj_px[2] > obj_px[1]);
    }
    /* scale changes the object's size; orientation moves the room's corner */
    uint8_t a[64 * 64 * 3], b[64 * 64 * 3];
    double s0[6] = {0, 0.3, 0.6, 0.75, 2, 0}, s1[6] = {0, 0.3, 0.6, 1.25, 2, 0};
    prepare_shapes_render(s0, a);
    prepare_shapes_render(s1, b);
    int na = 0, nb = 0;
    for (int i = 0; i < 64 * 64; i++) {
        na += a[i * 3 + 2] > a[i * 3] + 40 && a[i * 3 + 2] > a[i * 3 + 1] + 40;
        nb += b[i * 3 + 2] > b[i * 3] + 40 && b[i * 3 + 2] > b[i * 3 + 1] + 40;
    }
    assert_true(nb > na * 2);
    s1[3] = 0.75;
    s1[5] = 30;
    prepare_shapes_render(s1, b);
    assert_true(memcmp(a, b, 64 * 36 * 3) != 0);
}

static void test_shapes_file(void **state) {
    (void)state;
    prepare_options o = prepare_options_default();
    o.seed = 3;
    const char *out = path_in("shapes.h5");
    assert_int_equal(prepare_shapes(50, out, &o), YT_OK);
    data_image_info ii;
    assert_int_equal(data_probe(out, "images", &ii), YT_OK);
    assert_true(ii.n == 50 && ii.h == 64 && ii.w == 64 && ii.c == 3);
    assert_true(ii.contiguous && ii.nfilters == 0); /* like 3dshapes.h5 */
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "labels", H5P_DEFAULT);
    double lab[50][6];
    assert_true(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab) >= 0);
    H5Dclose(d);
    H5Fclose(f);
    /* distinct grid rows in grid order: the factor tuples increase */
    for (int i = 1; i < 50; i++) {
        int k = 0;
        while (k < 6 && lab[i][k] == lab[i - 1][k])
            k++;
        if (k == 6 || lab[i][k] < lab[i - 1][k])
            fail_msg("labels rows %d, %d out of order", i - 1, i);
    }
    /* rows render their labels */
    hsize_t dims[4];
    int nd;
    uint8_t *im = read_u8(out, "images", dims, &nd);
    uint8_t ref[64 * 64 * 3];
    prepare_shapes_render(lab[17], ref);
    assert_memory_equal(im + 17 * sizeof ref, ref, sizeof ref);
    free(im);
    yt_clear_error();
    assert_int_equal(prepare_shapes(0, out, &o), YT_ERR_USAGE);
    assert_int_equal(prepare_shapes(SHAPES_N + 1, out, &o), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "1..480000"));
}

static void test_info(void **state) {
    (void)state;
    FILE *devnull = fopen("/dev/null", "w");
    const char *labels_only = path_in("labels_only.h5");
    hsize_t d2[2] = {10, 6}, d0[4] = {0, 8, 8, 1};
    tu_write_raw(labels_only, "labels", H5T_IEEE_F64LE, 2, d2);
    yt_clear_error();
    assert_int_equal(prepare_info(labels_only, devnull), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "no usable image dataset"));
    assert_non_null(strstr(yt_errmsg(), labels_only));
    tu_write_raw(path_in("zero.h5"), "images", H5T_STD_U8LE, 4, d0);
    assert_int_equal(prepare_info(path_in("zero.h5"), devnull), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "zero rows"));
    assert_int_equal(prepare_info(path_in("none.h5"), devnull), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "cannot open"));
    tu_write_images(path_in("ok.h5"), "train/images", 10, 8, 8, 1, 0, 0);
    assert_int_equal(prepare_info(path_in("ok.h5"), devnull), YT_OK);
    fclose(devnull);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_plain_gzip_truncated),
        cmocka_unit_test(test_prepare_idx_dir),
        cmocka_unit_test(test_cifar),
        cmocka_unit_test(test_shapes_factors_and_render),
        cmocka_unit_test(test_shapes_file),
        cmocka_unit_test(test_info),
    };
    if (setup() != 0) return 1;
    return TU_RUN("prepare", tests);
}
