/* test_preprocess.c — each preprocessing op on tiny hand-computed inputs,
 * the [C][N][H][W] output layout, pad's value domain, randomness keys,
 * shape checks and op parsing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "preprocess.h"
#include "rng.h"
#include "testutil.h"

#define TOL (TEST_DOUBLE ? 1e-12 : 1e-6)

static void check(const char *name, const real *got, const double *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!tu_close(got[i], want[i], TOL, TOL))
            fail_msg("%s[%zu] = %.9g, want %.9g", name, i, (double)got[i], want[i]);
}

static void test_value_range(void **state) {
    (void)state;
    real x[4] = {0, 255, 51, 127.5};
    preprocess_value_range(x, 4, -1, 1);
    check("value_range(-1,1)", x, (double[]){-1, 1, -0.6, 0}, 4);
    real y[2] = {0, 255};
    preprocess_value_range(y, 2, 0, 1);
    check("value_range(0,1)", y, (double[]){0, 1}, 2);
}

static void test_resize_tf1_legacy(void **state) {
    (void)state;
    /* 2x2 -> 4x4, align_corners=False, half_pixel_centers=False: src = dst/2,
     * upper neighbour clamped to the last row/column */
    real in[4] = {0, 10, 20, 30}, out[16];
    preprocess_resize(in, 2, 2, 1, out, 4, 4);
    check("resize 2->4", out,
          (double[]){0, 5, 10, 10, 10, 15, 20, 20, 20, 25, 30, 30, 20, 25, 30, 30}, 16);
    /* 4x4 -> 2x2: src = 2*dst, lerp 0: every other pixel, no averaging */
    real in4[16], out2[4];
    for (int i = 0; i < 16; i++)
        in4[i] = (real)i;
    preprocess_resize(in4, 4, 4, 1, out2, 2, 2);
    check("resize 4->2", out2, (double[]){0, 2, 8, 10}, 4);
    /* 1x3 -> 1x2: src x = 0, 1.5 -> lerp(10, 20, .5) */
    real in3[3] = {0, 10, 20}, o3[2];
    preprocess_resize(in3, 1, 3, 1, o3, 1, 2);
    check("resize 3->2", o3, (double[]){0, 15}, 2);
    /* channels interleaved (HWC) and interpolated independently */
    real inc[4 * 2] = {0, 100, 10, 110, 20, 120, 30, 130}, oc[16 * 2];
    preprocess_resize(inc, 2, 2, 2, oc, 4, 4);
    for (int i = 0; i < 16; i++)
        if (!tu_close((double)oc[2 * i + 1] - (double)oc[2 * i], 100, 1e-4, 0))
            fail_msg("channel 1 - channel 0 at %d: %g", i, (double)(oc[2 * i + 1] - oc[2 * i]));
}

static void test_crop_flip_pad(void **state) {
    (void)state;
    real in[9], out[4];
    for (int i = 0; i < 9; i++)
        in[i] = (real)i; /* 3x3, c = 1 */
    preprocess_crop(in, 3, 3, 1, 1, 1, out, 2, 2);
    check("crop at (1,1)", out, (double[]){4, 5, 7, 8}, 4);
    real f[6] = {1, 10, 2, 20, 3, 30}; /* 1x3, c = 2 */
    preprocess_flip_lr(f, 1, 3, 2);
    check("flip_lr", f, (double[]){3, 30, 2, 20, 1, 10}, 6);
    real p[4] = {1, 2, 3, 4}, o4[16], o5[25];
    preprocess_pad(p, 2, 2, 1, o4, 4, 4);
    check("pad 2->4", o4, (double[]){0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0}, 16);
    preprocess_pad(p, 2, 2, 1, o5, 5, 5); /* odd margin: the extra row/column after */
    double w5[25] = {0};
    w5[6] = 1, w5[7] = 2, w5[11] = 3, w5[12] = 4;
    check("pad 2->5", o5, w5, 25);
}

/* pad before value_range pads with black (-> a); after it, with literal 0 */
static void test_pad_value_domain_and_layout(void **state) {
    (void)state;
    cfg_pipeline pa, pb;
    assert_int_equal(preprocess_parse("pad(4), value_range(-1, 1)", &pa), YT_OK);
    assert_int_equal(preprocess_parse("value_range(-1, 1), pad(4)", &pb), YT_OK);
    preprocess_plan A, B;
    assert_int_equal(preprocess_plan_init(&A, &pa, 2, 2, 1, "t"), YT_OK);
    assert_int_equal(preprocess_plan_init(&B, &pb, 2, 2, 1, "t"), YT_OK);
    uint8_t img[4] = {255, 255, 255, 255};
    real a[16], b[16];
    preprocess_image(&A, img, 1, 0, 0, a, 16);
    preprocess_image(&B, img, 1, 0, 0, b, 16);
    assert_true(fabs((double)a[0] + 1) < TOL && fabs((double)a[5] - 1) < TOL);
    assert_true(fabs((double)b[0]) < TOL && fabs((double)b[5] - 1) < TOL);
    preprocess_plan_free(&A);
    preprocess_plan_free(&B);

    /* [C][N][H][W]: image n of a batch of N lands at out + n*H*W, channel
     * stride N*H*W; from HWC uint8 input, both on the table path and the
     * general path */
    const char *pipes[2] = {"value_range(0, 255)", "flip_lr(), value_range(0, 255)"};
    for (int t = 0; t < 2; t++) {
        cfg_pipeline p;
        assert_int_equal(preprocess_parse(pipes[t], &p), YT_OK);
        preprocess_plan pl;
        assert_int_equal(preprocess_plan_init(&pl, &p, 1, 2, 3, "t"), YT_OK);
        uint8_t im[2][6] = {{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 11, 12}}; /* 1x2 pixels, RGB */
        real out[3 * 2 * 2];
        memset(out, 0, sizeof out);
        for (int n = 0; n < 2; n++)
            preprocess_image(&pl, im[n], 99, 0, 0, out + n * 2, 4);
        /* which way flip_lr went for row 0 does not matter: compare as sets */
        for (int ch = 0; ch < 3; ch++)
            for (int n = 0; n < 2; n++) {
                double x0 = out[ch * 4 + n * 2], x1 = out[ch * 4 + n * 2 + 1];
                double w0 = im[n][ch], w1 = im[n][3 + ch];
                if (!((x0 == w0 && x1 == w1) || (t == 1 && x0 == w1 && x1 == w0)))
                    fail_msg("%s: channel %d image %d: got (%g, %g), want (%g, %g)", pipes[t], ch,
                             n, x0, x1, w0, w1);
            }
        preprocess_plan_free(&pl);
    }
}

/* random ops depend on (seed, epoch, row) only, and are spread out */
static void test_random_ops_keys(void **state) {
    (void)state;
    cfg_pipeline p;
    assert_int_equal(preprocess_parse("random_crop(2), flip_lr()", &p), YT_OK);
    preprocess_plan pl;
    assert_int_equal(preprocess_plan_init(&pl, &p, 4, 4, 1, "t"), YT_OK);
    uint8_t img[16];
    for (int i = 0; i < 16; i++)
        img[i] = (uint8_t)i;
    int seen[9] = {0}, flips = 0;
    const int rows = 2000;
    for (int r = 0; r < rows; r++) {
        real a[4], b[4];
        preprocess_image(&pl, img, 7, 3, (uint32_t)r, a, 4);
        preprocess_image(&pl, img, 7, 3, (uint32_t)r, b, 4);
        assert_memory_equal(a, b, sizeof a);
        /* recover the window: min value = y0*4 + x0; flipped iff a[0] > a[1] */
        int mn = (int)fmin(fmin(a[0], a[1]), fmin(a[2], a[3]));
        seen[(mn / 4) * 3 + mn % 4]++;
        flips += a[0] > a[1];
    }
    for (int i = 0; i < 9; i++)
        if (seen[i] < rows / 9 / 2)
            fail_msg("crop offset %d drawn %d times of %d", i, seen[i], rows);
    if (abs(flips - rows / 2) > rows / 10) fail_msg("flipped %d of %d", flips, rows);
    /* another epoch or seed gives other draws */
    int same = 0;
    for (int r = 0; r < 100; r++) {
        real a[4], b[4];
        preprocess_image(&pl, img, 7, 3, (uint32_t)r, a, 4);
        preprocess_image(&pl, img, 7, 4, (uint32_t)r, b, 4);
        same += memcmp(a, b, sizeof a) == 0;
    }
    assert_true(same < 40);
    preprocess_plan_free(&pl);
}

/* Reference: the pipeline op by op with the kernels (the plan fuses the
 * trailing crops, flips and value_ranges into one gather). */
static void reference(const cfg_pipeline *p, const uint8_t *in, int h, int w, int c, uint64_t seed,
                      uint32_t epoch, uint32_t row, double *out) {
    real a[4096], b[4096], *x = a, *y = b;
    for (int i = 0; i < h * w * c; i++)
        x[i] = in[i];
    for (int i = 0; i < p->n; i++) {
        const cfg_preop *op = &p->op[i];
        rng_stream s = rng_stream_make(seed, RNG_AUGMENT, epoch, row, (uint32_t)i);
        if (op->kind == PRE_VALUE_RANGE) {
            preprocess_value_range(x, (size_t)h * w * c, op->a, op->b);
            continue;
        }
        if (op->kind == PRE_FLIP_LR) {
            if (rng_uniform(&s) < 0.5) preprocess_flip_lr(x, h, w, c);
            continue;
        }
        if (op->kind == PRE_RESIZE) preprocess_resize(x, h, w, c, y, op->n, op->n);
        if (op->kind == PRE_PAD) preprocess_pad(x, h, w, c, y, op->n, op->n);
        if (op->kind == PRE_RANDOM_CROP) {
            int y0 = (int)rng_below(&s, (uint64_t)(h - op->n + 1));
            int x0 = (int)rng_below(&s, (uint64_t)(w - op->n + 1));
            preprocess_crop(x, h, w, c, y0, x0, y, op->n, op->n);
        }
        h = w = op->n;
        real *t = x;
        x = y;
        y = t;
    }
    for (int k = 0; k < c; k++) /* HWC -> CHW */
        for (int i = 0; i < h * w; i++)
            out[k * h * w + i] = x[i * c + k];
}

static void test_fused_tail_equals_op_by_op(void **state) {
    (void)state;
    const char *pipes[] = {
        "flip_lr(), random_crop(3), value_range(-1, 1)",
        "random_crop(5), flip_lr(), random_crop(3), flip_lr()",
        "resize(9), flip_lr(), random_crop(4), value_range(0, 1), value_range(-1, 1)",
        "value_range(0, 255), pad(8), random_crop(6), flip_lr()",
        "flip_lr(), resize(5), random_crop(5)",
        "value_range(-1, 1)",
        "",
    };
    uint8_t img[6 * 6 * 2];
    for (int i = 0; i < 72; i++)
        img[i] = (uint8_t)(i * 37 + 11);
    for (size_t t = 0; t < sizeof pipes / sizeof pipes[0]; t++) {
        cfg_pipeline p;
        assert_int_equal(preprocess_parse(pipes[t], &p), YT_OK);
        preprocess_plan pl;
        assert_int_equal(preprocess_plan_init(&pl, &p, 6, 6, 2, "t"), YT_OK);
        size_t n = (size_t)2 * pl.oh * pl.ow;
        for (uint32_t row = 0; row < 64; row++) {
            real got[4096];
            double want[4096];
            preprocess_image(&pl, img, 42, 1, row, got, (size_t)pl.oh * pl.ow);
            reference(&p, img, 6, 6, 2, 42, 1, row, want);
            for (size_t i = 0; i < n; i++)
                if (!tu_close(got[i], want[i], 1e-4, 1e-4))
                    fail_msg("'%s' row %u [%zu]: %g, want %g", pipes[t], row, i, (double)got[i],
                             want[i]);
        }
        preprocess_plan_free(&pl);
    }
}

/* TF1's legacy bilinear resize (preprocess.h) of a uint8 HWC image, in double */
static void resize_ref(const uint8_t *in, int h, int w, int c, double *out, int oh, int ow) {
    for (int y = 0; y < oh; y++) {
        double sy = y * (double)h / oh, fy = sy - floor(sy);
        int y0 = (int)floor(sy), y1 = YT_MIN(y0 + 1, h - 1);
        for (int x = 0; x < ow; x++) {
            double sx = x * (double)w / ow, fx = sx - floor(sx);
            int x0 = (int)floor(sx), x1 = YT_MIN(x0 + 1, w - 1);
            for (int k = 0; k < c; k++) {
                double a = in[(y0 * w + x0) * c + k], b = in[(y0 * w + x1) * c + k];
                double d = in[(y1 * w + x0) * c + k], e = in[(y1 * w + x1) * c + k];
                double top = a + (b - a) * fx, bottom = d + (e - d) * fx;
                out[(y * ow + x) * c + k] = top + (bottom - top) * fy;
            }
        }
    }
}

/* CIFAR's train pipeline end to end on a non-constant image: each output is
 * one window of an independently resized image, mirrored or not, scaled to
 * [-1, 1]; the window and direction found by search must be the ones the
 * documented streams draw, and they vary over rows. */
static void test_cifar_pipeline_shape(void **state) {
    (void)state;
    cfg_pipeline p;
    assert_int_equal(
        preprocess_parse("resize(40), random_crop(32), flip_lr(), value_range(-1, 1)", &p), YT_OK);
    preprocess_plan pl;
    assert_int_equal(preprocess_plan_init(&pl, &p, 32, 32, 3, "t"), YT_OK);
    assert_int_equal(pl.oh, 32);
    assert_int_equal(pl.ow, 32);
    static uint8_t img[32 * 32 * 3];
    for (int i = 0; i < 32 * 32 * 3; i++)
        img[i] = (uint8_t)((i * 2654435761u) >> 24);
    static double big[40 * 40 * 3];
    resize_ref(img, 32, 32, 3, big, 40, 40);
    int flips = 0, ys = 0, xs = 0; /* bit masks of the offsets seen */
    for (uint32_t row = 0; row < 48; row++) {
        static real out[3 * 32 * 32];
        preprocess_image(&pl, img, 5, 0, row, out, 32 * 32);
        int found = 0, fy = -1, fx = -1, ff = -1;
        for (int y0 = 0; y0 <= 8; y0++)
            for (int x0 = 0; x0 <= 8; x0++)
                for (int f = 0; f < 2; f++) {
                    bool match = true;
                    for (int k = 0; k < 3 && match; k++)
                        for (int y = 0; y < 32 && match; y++)
                            for (int x = 0; x < 32 && match; x++) {
                                int sx = x0 + (f ? 31 - x : x);
                                double want = big[((y0 + y) * 40 + sx) * 3 + k] / 255 * 2 - 1;
                                match = tu_close(out[(k * 32 + y) * 32 + x], want, 1e-5, 0);
                            }
                    if (match) found++, fy = y0, fx = x0, ff = f;
                }
        if (found != 1)
            fail_msg("row %u: %d windows of the resized image match the output", row, found);
        rng_stream sc = rng_stream_make(5, RNG_AUGMENT, 0, row, 1);
        rng_stream sf = rng_stream_make(5, RNG_AUGMENT, 0, row, 2);
        int y0 = (int)rng_below(&sc, 9), x0 = (int)rng_below(&sc, 9);
        int f = rng_uniform(&sf) < 0.5;
        if (fy != y0 || fx != x0 || ff != f)
            fail_msg("row %u: window (%d, %d) flip %d, the streams draw (%d, %d) flip %d", row, fy,
                     fx, ff, y0, x0, f);
        flips += f;
        ys |= 1 << y0;
        xs |= 1 << x0;
    }
    assert_true(flips > 5 && flips < 43);
    assert_true(__builtin_popcount((unsigned)ys) >= 4 && __builtin_popcount((unsigned)xs) >= 4);
    preprocess_plan_free(&pl);
}

static void test_shape_errors(void **state) {
    (void)state;
    cfg_pipeline p;
    int oh, ow;
    assert_int_equal(preprocess_parse("random_crop(40)", &p), YT_OK);
    yt_clear_error();
    assert_int_equal(preprocess_out_shape(&p, 32, 32, "data.preprocess_train", &oh, &ow),
                     YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "data.preprocess_train"));
    assert_non_null(strstr(yt_errmsg(), "random_crop(40)"));
    assert_non_null(strstr(yt_errmsg(), "32x32"));
    assert_int_equal(preprocess_parse("pad(28)", &p), YT_OK);
    assert_int_equal(preprocess_out_shape(&p, 32, 32, "k", &oh, &ow), YT_ERR_USAGE);
    assert_int_equal(preprocess_parse("pad(32), resize(64), random_crop(60)", &p), YT_OK);
    assert_int_equal(preprocess_out_shape(&p, 28, 28, "k", &oh, &ow), YT_OK);
    assert_int_equal(oh, 60);
    assert_int_equal(ow, 60);
}

static void test_parse(void **state) {
    (void)state;
    cfg_pipeline p;
    assert_int_equal(preprocess_parse(" resize(40) ,random_crop( 32 ); flip_lr ( ), "
                                      "value_range(-1,1), pad(36)",
                                      &p),
                     YT_OK);
    assert_int_equal(p.n, 5);
    assert_int_equal(p.op[0].kind, PRE_RESIZE);
    assert_int_equal(p.op[0].n, 40);
    assert_int_equal(p.op[1].kind, PRE_RANDOM_CROP);
    assert_int_equal(p.op[2].kind, PRE_FLIP_LR);
    assert_int_equal(p.op[3].kind, PRE_VALUE_RANGE);
    assert_true(p.op[3].a == -1 && p.op[3].b == 1);
    assert_int_equal(p.op[4].kind, PRE_PAD);
    char text[256];
    preprocess_text(&p, text, sizeof text);
    assert_string_equal(text,
                        "resize(40), random_crop(32), flip_lr(), value_range(-1, 1), pad(36)");
    cfg_pipeline q;
    assert_int_equal(preprocess_parse(text, &q), YT_OK);
    assert_memory_equal(&p, &q, sizeof p);
    assert_int_equal(preprocess_parse("", &q), YT_OK);
    assert_int_equal(q.n, 0);
    const char *bad[] = {"resize(40",      "resize(0)",  "resize(4.5)", "crop(3)",
                         "value_range(1)", "flip_lr(1)", "pad(x)",      "resize(40) junk"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        yt_clear_error();
        if (preprocess_parse(bad[i], &q) != YT_ERR_USAGE) fail_msg("'%s' accepted", bad[i]);
        assert_non_null(strstr(yt_errmsg(), "preprocessing op"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_range),
        cmocka_unit_test(test_resize_tf1_legacy),
        cmocka_unit_test(test_crop_flip_pad),
        cmocka_unit_test(test_pad_value_domain_and_layout),
        cmocka_unit_test(test_random_ops_keys),
        cmocka_unit_test(test_fused_tail_equals_op_by_op),
        cmocka_unit_test(test_cifar_pipeline_shape),
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_parse),
    };
    return TU_RUN("preprocess", tests);
}
