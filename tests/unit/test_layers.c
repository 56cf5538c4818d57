/* test_layers.c — every layer against values computed by hand on tiny inputs,
 * the conv/deconv adjoint identity, and the accumulate/overwrite conventions
 * of layers.h. Expected numbers are written out below (derivations in the
 * comments), never produced by the code under test. Inputs are small
 * integers, so the hand values are exact in float too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archs.h"
#include "layers.h"
#include "loss.h"
#include "testutil.h"

/* small integers: exact in both builds; transcendental functions: 1 ulp-ish */
#define TOL_EXACT (TEST_DOUBLE ? 1e-13 : 1e-6)
#define TOL_FN (TEST_DOUBLE ? 1e-14 : 2e-7)

/* |got - want| <= tol * max(1, |want|) element by element */
static void expect_vals(const char *name, const real *got, const double *want, size_t n,
                        double tol) {
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        if (!(fabs(g - w) <= tol * fmax(1.0, fabs(w))))
            fail_msg("%s[%zu]: got %.17g, want %.17g", name, i, g, w);
    }
}

/* relative accuracy, for values far below 1 (softplus(-50) = 1.9e-22) */
static void expect_rel(const char *name, double got, double want, double tol) {
    if (!(fabs(got - want) <= tol * fabs(want)))
        fail_msg("%s: got %.17g, want %.17g (relative error %.2e > %.1e)", name, got, want,
                 fabs(got - want) / fabs(want), tol);
}

static real *work_for(const conv_geom *g) {
    return calloc(conv_work_size(g) + 1, sizeof(real));
}

/* k = [[1, 0, 0], [0, 10, 0], [0, 0, 100]]: y = x(r-1, c-1) + 10 x(r, c) + 100 x(r+1, c+1)
 * relative to the window's centre; one entry per tap, so a flipped kernel
 * (true convolution instead of cross-correlation) or a shifted pad shows. */
static const real K_DIAG[9] = {1, 0, 0, 0, 10, 0, 0, 0, 100};

/* ---- geometry ------------------------------------------------------------------------ */

static void test_conv_geometry(void **state) {
    (void)state;
    /* {h, w, stride, ho, wo, pad_top, pad_left}; ho = ceil(h / s), pad total =
     * max((ho - 1) s + 3 - h, 0), the smaller half before */
    const int cases[][7] = {
        {4, 4, 1, 4, 4, 1, 1}, /* stride 1: (4-1)+3-4 = 2 -> 1/1 */
        {5, 3, 1, 5, 3, 1, 1},
        {4, 4, 2, 2, 2, 0, 0}, /* even: (2-1)2+3-4 = 1 -> 0 before, 1 after */
        {64, 64, 2, 32, 32, 0, 0},
        {5, 5, 2, 3, 3, 1, 1}, /* odd: (3-1)2+3-5 = 2 -> 1/1 */
        {7, 6, 2, 4, 3, 1, 0}, /* rows odd (pad 1/1), columns even (0/1) */
        {1, 1, 2, 1, 1, 1, 1}, /* (1-1)2+3-1 = 2 */
        {2, 2, 2, 1, 1, 0, 0}, /* 0+3-2 = 1 -> 0/1 */
        {3, 3, 2, 2, 2, 1, 1}, /* 2+3-3 = 2 */
    };
    for (size_t i = 0; i < YT_ARRAY_LEN(cases); i++) {
        const int *c = cases[i];
        conv_geom g = conv_geom_make(2, 3, c[0], c[1], 5, c[2]);
        if (g.ho != c[3] || g.wo != c[4] || g.pad_top != c[5] || g.pad_left != c[6])
            fail_msg("h=%d w=%d s=%d: got ho=%d wo=%d pads %d/%d, want %d %d %d/%d", c[0], c[1],
                     c[2], g.ho, g.wo, g.pad_top, g.pad_left, c[3], c[4], c[5], c[6]);
        assert_true(g.chunk >= 1 && g.chunk <= g.n);
        /* 2 samples x ho wo x cout 5 x cin 3 x 9 */
        assert_true(conv_macs(&g) == 2.0 * c[3] * c[4] * 5 * 3 * 9);
    }
}

/* ---- convolution by hand ------------------------------------------------------------- */

/* stride 1, 3x3 image x(r, c) = 3r + c + 1 (1..9), pads 1/1, bias 0.5:
 *   y(r,c) = x(r-1,c-1) + 10 x(r,c) + 100 x(r+1,c+1) + 0.5, zero outside. */
static void test_conv_stride1(void **state) {
    (void)state;
    real x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, b[1] = {0.5}, y[9];
    const double want[9] = {
        10 + 100 * 5 + 0.5,     /* (0,0): 0 + 10*1 + 100*x(1,1)=5 */
        20 + 100 * 6 + 0.5,     /* (0,1): 0 + 10*2 + 100*x(1,2)=6 */
        30 + 0.5,               /* (0,2): x(1,3) is padding */
        40 + 100 * 8 + 0.5,     /* (1,0): x(0,-1) pad, 10*4, 100*x(2,1)=8 */
        1 + 50 + 100 * 9 + 0.5, /* (1,1) */
        2 + 60 + 0.5,           /* (1,2) */
        70 + 0.5,               /* (2,0) */
        4 + 80 + 0.5,           /* (2,1): x(1,0)=4 */
        5 + 90 + 0.5,           /* (2,2): x(1,1)=5 */
    };
    conv_geom g = conv_geom_make(1, 1, 3, 3, 1, 1);
    real *work = work_for(&g);
    conv_forward(&g, x, K_DIAG, b, y, work);
    expect_vals("conv s1", y, want, 9, TOL_EXACT);

    /* all-ones kernel, no bias: the 3x3 neighbourhood sums */
    real ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, zero[1] = {0};
    const double sums[9] = {12, 21, 16, 27, 45, 33, 24, 39, 28};
    conv_forward(&g, x, ones, zero, y, work);
    expect_vals("conv s1 ones", y, sums, 9, TOL_EXACT);
    free(work);
}

/* Stride 2 on an even size: 4x4 image x(r, c) = 4r + c + 1, output 2x2, pads
 * 0 before and 1 after: output (i, j) reads rows/cols 2i..2i+2 (4 = padding).
 *   ones:   y(0,0) = rows 0-2 x cols 0-2 = 6+18+30 = 54
 *           y(0,1) = rows 0-2 x cols 2,3 = 7+15+23 = 45
 *           y(1,0) = rows 2,3 x cols 0-2 = 30+42 = 72
 *           y(1,1) = rows 2,3 x cols 2,3 = 11+12+15+16 = 54
 *   (symmetric padding would give y(0,0) = 1+2+5+6 = 14)
 *   K_DIAG: y(i,j) = x(2i,2j) + 10 x(2i+1,2j+1) + 100 x(2i+2,2j+2)
 *           (0,0) 1 + 60 + 1100; (0,1) 3 + 80; (1,0) 9 + 140; (1,1) 11 + 160 */
static void test_conv_stride2_even(void **state) {
    (void)state;
    real x[16], y[4], zero[1] = {0}, ones[9];
    for (int i = 0; i < 16; i++)
        x[i] = (real)(i + 1);
    for (int i = 0; i < 9; i++)
        ones[i] = 1;
    conv_geom g = conv_geom_make(1, 1, 4, 4, 1, 2);
    assert_int_equal(g.ho, 2);
    assert_int_equal(g.wo, 2);
    real *work = work_for(&g);
    conv_forward(&g, x, ones, zero, y, work);
    const double want_ones[4] = {54, 45, 72, 54};
    expect_vals("conv s2 even ones", y, want_ones, 4, TOL_EXACT);
    conv_forward(&g, x, K_DIAG, zero, y, work);
    const double want_diag[4] = {1161, 83, 149, 171};
    expect_vals("conv s2 even diag", y, want_diag, 4, TOL_EXACT);
    free(work);
}

/* Stride 2 on an odd size: 5x5 image x(r, c) = 5r + c + 1, output 3x3, pads
 * 1/1: output (i, j) reads rows/cols 2i-1..2i+1.
 *   K_DIAG: y(i,j) = x(2i-1,2j-1) + 10 x(2i,2j) + 100 x(2i+1,2j+1)
 *   (0,0) 0 + 10*1 + 100*7 = 710     (0,1) 0 + 10*3 + 100*9 = 930
 *   (0,2) 0 + 10*5 + 0 = 50          (1,0) 0 + 10*11 + 100*17 = 1810
 *   (1,1) 7 + 10*13 + 100*19 = 2037  (1,2) 9 + 10*15 + 0 = 159
 *   (2,0) 0 + 10*21 = 210            (2,1) 17 + 10*23 = 247
 *   (2,2) 19 + 10*25 = 269 */
static void test_conv_stride2_odd(void **state) {
    (void)state;
    real x[25], y[9], zero[1] = {0};
    for (int i = 0; i < 25; i++)
        x[i] = (real)(i + 1);
    conv_geom g = conv_geom_make(1, 1, 5, 5, 1, 2);
    assert_int_equal(g.ho, 3);
    real *work = work_for(&g);
    conv_forward(&g, x, K_DIAG, zero, y, work);
    const double want[9] = {710, 930, 50, 1810, 2037, 159, 210, 247, 269};
    expect_vals("conv s2 odd", y, want, 9, TOL_EXACT);
    free(work);
}

/* Channels and batch layout: cin 2, cout 3, 2 samples of 2x2, activations
 * [C][N][H][W], kernel [out][in][3][3] with only the centre tap w[o][i]:
 * y[o][n] = sum_i w[o][i] x[i][n] + b[o] (a 1x1 conv).
 *   x[0][0] = 1 2 3 4   x[0][1] = 5 6 7 8   x[1][0] = 10 20 30 40   x[1][1] = -1 -2 -3 -4
 *   w = [[1, 0], [0, 1], [2, -1]], b = [0, 100, 0.5]
 *   y[0] = x[0]                    : 1 2 3 4 | 5 6 7 8
 *   y[1] = x[1] + 100              : 110 120 130 140 | 99 98 97 96
 *   y[2] = 2 x[0] - x[1] + 0.5     : -7.5 -15.5 -23.5 -31.5 | 11.5 14.5 17.5 20.5 */
static void test_conv_channels(void **state) {
    (void)state;
    real x[16] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 20, 30, 40, -1, -2, -3, -4};
    real k[3 * 2 * 9] = {0}, b[3] = {0, 100, 0.5}, y[24];
    const real w[3][2] = {{1, 0}, {0, 1}, {2, -1}};
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < 2; i++)
            k[(o * 2 + i) * 9 + 4] = w[o][i];
    const double want[24] = {1,  2,  3,  4,  5,    6,     7,     8,     110,  120,  130,  140,
                             99, 98, 97, 96, -7.5, -15.5, -23.5, -31.5, 11.5, 14.5, 17.5, 20.5};
    conv_geom g = conv_geom_make(2, 2, 2, 2, 3, 1);
    real *work = work_for(&g);
    conv_forward(&g, x, k, b, y, work);
    expect_vals("conv channels", y, want, 24, TOL_EXACT);
    free(work);
}

/* ---- transposed convolution by hand --------------------------------------------------- */

/* Deconv 2x2 -> 4x4 (the adjoint of the stride-2 conv 4x4 -> 2x2, pads 0/1):
 * input (i, j) with tap (kh, kw) lands on output (2i+kh, 2j+kw), dropped at 4.
 * x = [[1, 2], [3, 4]].
 *   ones: y(r, c) = sum of x(i, j) with i in R(r), j in R(c); R(0) = R(1) = {0},
 *         R(2) = {0, 1}, R(3) = {1}:
 *         1 1 3 2 / 1 1 3 2 / 4 4 10 6 / 3 3 7 4
 *   K_DIAG: y(2i,2j) += x; y(2i+1,2j+1) += 10x; y(2i+2,2j+2) += 100x:
 *         y(0,0)=1 y(0,2)=2 y(2,0)=3 y(2,2)=4+100 y(1,1)=10 y(1,3)=20 y(3,1)=30 y(3,3)=40
 * plus bias 0.25 everywhere. */
static void test_deconv(void **state) {
    (void)state;
    real x[4] = {1, 2, 3, 4}, b[1] = {0.25}, y[16], ones[9];
    for (int i = 0; i < 9; i++)
        ones[i] = 1;
    /* deconv 1 -> 1 channel, 2x2 -> 4x4: the conv 4x4 -> 2x2 */
    conv_geom g = conv_geom_make(1, 1, 2 * 2, 2 * 2, 1, 2);
    assert_int_equal(g.h, 4); /* deconv output: doubled */
    assert_int_equal(g.ho, 2);
    real *work = work_for(&g);
    deconv_forward(&g, x, ones, b, y, work);
    double want[16] = {1, 1, 3, 2, 1, 1, 3, 2, 4, 4, 10, 6, 3, 3, 7, 4};
    for (int i = 0; i < 16; i++)
        want[i] += 0.25;
    expect_vals("deconv ones", y, want, 16, TOL_EXACT);
    deconv_forward(&g, x, K_DIAG, b, y, work);
    double want_d[16] = {1, 0, 2, 0, 0, 10, 0, 20, 3, 0, 104, 0, 0, 30, 0, 40};
    for (int i = 0; i < 16; i++)
        want_d[i] += 0.25;
    expect_vals("deconv diag", y, want_d, 16, TOL_EXACT);
    free(work);

    /* odd deconv output (the adjoint of the 5x5 -> 3x3 conv, pads 1/1): input
     * (i, j), tap (kh, kw) -> output (2i+kh-1, 2j+kw-1). Centre tap only, weight
     * 3: y(2i, 2j) = 3 x(i, j) on a 5x5 grid, zero elsewhere. */
    real x9[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, y25[25], kc[9] = {0, 0, 0, 0, 3, 0, 0, 0, 0};
    real zero[1] = {0};
    conv_geom g5 = conv_geom_make(1, 1, 5, 5, 1, 2);
    work = work_for(&g5);
    deconv_forward(&g5, x9, kc, zero, y25, work);
    double want5[25] = {0};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            want5[(2 * i) * 5 + 2 * j] = 3 * x9[i * 3 + j];
    expect_vals("deconv odd centre", y25, want5, 25, TOL_EXACT);
    free(work);
}

/* Deconv channels: din 2 -> dout 3, kernel [in][out][3][3] (PyTorch
 * ConvTranspose2d), centre tap w[i][o] only, 1 sample 1x1 -> 2x2: the centre
 * tap of input (0,0) lands on output (1,1) (pads 0 before), the rest is bias.
 *   x = [2, -3], w = [[1, 2, 3], [4, 5, 7]], b = [1, 2, 3]
 *   y[o](1,1) = 2 w[0][o] - 3 w[1][o] + b[o] = -10+1, -11+2, -15+3 */
static void test_deconv_channels(void **state) {
    (void)state;
    real x[2] = {2, -3}, k[2 * 3 * 9] = {0}, b[3] = {1, 2, 3}, y[12];
    const real w[2][3] = {{1, 2, 3}, {4, 5, 7}};
    for (int i = 0; i < 2; i++)
        for (int o = 0; o < 3; o++)
            k[(i * 3 + o) * 9 + 4] = w[i][o];
    conv_geom g = conv_geom_make(1, 3, 2, 2, 2, 2); /* conv 3ch 2x2 -> 2ch 1x1 */
    real *work = work_for(&g);
    deconv_forward(&g, x, k, b, y, work);
    const double want[12] = {1, 1, 1, -9, 2, 2, 2, -9, 3, 3, 3, -12};
    expect_vals("deconv channels", y, want, 12, TOL_EXACT);
    free(work);
}

/* ---- the adjoint identity <conv(x), y> = <x, deconv(y)> --------------------------------- */

static double dot(const real *a, const real *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

static void check_adjoint(int n, int cin, int h, int w, int cout, int stride, uint32_t seed,
                          int want_chunks) {
    conv_geom g = conv_geom_make(n, cin, h, w, cout, stride);
    size_t nx = (size_t)cin * n * h * w, ny = (size_t)cout * n * g.ho * g.wo;
    real *x = malloc(nx * sizeof *x), *cx = malloc(ny * sizeof *cx);
    real *y = malloc(ny * sizeof *y), *dy = malloc(nx * sizeof *dy);
    real *k = malloc((size_t)cout * cin * 9 * sizeof *k),
         *b = calloc((size_t)YT_MAX(cin, cout), sizeof *b);
    real *work = work_for(&g);
    tu_fill_uniform(x, nx, -1, 1, seed, 0);
    tu_fill_uniform(y, ny, -1, 1, seed, 1);
    tu_fill_uniform(k, (size_t)cout * cin * 9, -1, 1, seed, 2);
    int chunks = (g.n + g.chunk - 1) / g.chunk;
    if (want_chunks > 1 && chunks < 2)
        fail_msg("adjoint %dx%dx%d n=%d: expected im2col chunking, got chunk %d", cin, h, w, n,
                 g.chunk);
    /* garbage in the outputs: both must overwrite */
    for (size_t i = 0; i < ny; i++)
        cx[i] = NAN;
    for (size_t i = 0; i < nx; i++)
        dy[i] = NAN;
    conv_forward(&g, x, k, b, cx, work);
    deconv_forward(&g, y, k, b, dy, work);
    double lhs = dot(cx, y, ny), rhs = dot(x, dy, nx);
    /* scale: sum of |terms|, the size of the rounding */
    double mag = 0;
    for (size_t i = 0; i < ny; i++)
        mag += fabs((double)cx[i] * y[i]);
    double err = fabs(lhs - rhs) / mag, tol = TEST_DOUBLE ? 1e-13 : 1e-5;
    printf("# adjoint n=%d cin=%d %dx%d cout=%d s=%d (%d chunk%s): <Kx,y> = %.10g, <x,K'y> = "
           "%.10g, rel %.1e\n",
           n, cin, h, w, cout, stride, chunks, chunks > 1 ? "s" : "", lhs, rhs, err);
    if (!(err <= tol)) fail_msg("adjoint identity off by %.2e (> %.0e)", err, tol);
    free(x);
    free(cx);
    free(y);
    free(dy);
    free(k);
    free(b);
    free(work);
}

static void test_adjoint(void **state) {
    (void)state;
    check_adjoint(1, 1, 4, 4, 1, 2, 1, 1);
    check_adjoint(3, 2, 6, 6, 5, 2, 2, 1); /* even, batch, channels */
    check_adjoint(2, 3, 7, 5, 4, 2, 3, 1); /* odd sizes */
    check_adjoint(2, 3, 7, 6, 4, 2, 4, 1); /* odd rows, even columns */
    check_adjoint(2, 4, 5, 5, 3, 1, 5, 1); /* stride 1 */
    check_adjoint(4, 2, 1, 1, 3, 2, 6, 1); /* 1x1 image */
    /* a batch large enough that im2col works in chunks of samples; the
     * chunk size comes from the geometry (layers.c bounds the work buffer),
     * so the batch is derived from it: two full chunks and a partial one */
    conv_geom probe = conv_geom_make(1 << 20, 16, 32, 32, 4, 1);
    int n1 = 2 * probe.chunk + probe.chunk / 2 + 1;
    if (probe.chunk > 64) fail_msg("chunk %d: the test would be too slow; adjust", probe.chunk);
    check_adjoint(n1, 16, 32, 32, 4, 1, 7, 3);
    conv_geom probe2 = conv_geom_make(1 << 20, 16, 64, 64, 4, 2);
    check_adjoint(probe2.chunk + 3, 16, 64, 64, 4, 2, 8, 2);
}

/* ---- backward conventions: dk/db accumulate, dx overwrites, dx may be NULL ---------------- */

static void check_accumulate(bool deconv) {
    /* chunked geometry, so that per-chunk overwriting of dx is exercised */
    conv_geom probe = conv_geom_make(1 << 20, 16, 32, 32, 3, 2);
    int n = probe.chunk + 2;
    conv_geom g = conv_geom_make(n, 16, 32, 32, 3, 2);
    assert_true(g.chunk < g.n);
    size_t nimg = (size_t)g.cin * n * g.h * g.w, nfeat = (size_t)g.cout * n * g.ho * g.wo;
    size_t nk = (size_t)g.cout * g.cin * 9, nb = deconv ? (size_t)g.cin : (size_t)g.cout;
    size_t nin = deconv ? nfeat : nimg, nout = deconv ? nimg : nfeat;
    real *x = malloc(nin * sizeof *x), *dy = malloc(nout * sizeof *dy), *k = malloc(nk * sizeof *k);
    real *dx1 = malloc(nin * sizeof *x), *dx2 = malloc(nin * sizeof *x);
    real *dk1 = calloc(nk, sizeof *k), *dk2 = malloc(nk * sizeof *k);
    real *db1 = calloc(nb, sizeof *k), *db2 = malloc(nb * sizeof *k);
    real *work = work_for(&g);
    tu_fill_uniform(x, nin, -1, 1, 11, 0);
    tu_fill_uniform(dy, nout, -1, 1, 11, 1);
    tu_fill_uniform(k, nk, -1, 1, 11, 2);
    void (*bwd)(const conv_geom *, const real *, const real *, const real *, real *, real *, real *,
                real *) = deconv ? deconv_backward : conv_backward;
    /* reference: zeroed dk, db; dx prefilled with garbage */
    for (size_t i = 0; i < nin; i++)
        dx1[i] = NAN;
    bwd(&g, x, k, dy, dx1, dk1, db1, work);
    for (size_t i = 0; i < nin; i++)
        assert_true(isfinite(dx1[i]));
    /* dk, db start at 1 and 2: they must come out 1 + dk, 2 + db; a second
     * call without dx adds the same again; dx is overwritten (not added) */
    for (size_t i = 0; i < nk; i++)
        dk2[i] = 1;
    for (size_t i = 0; i < nb; i++)
        db2[i] = 2;
    for (size_t i = 0; i < nin; i++)
        dx2[i] = 1e3;
    bwd(&g, x, k, dy, dx2, dk2, db2, work);
    for (size_t i = 0; i < nin; i++)
        if (dx2[i] != dx1[i])
            fail_msg("%s dx[%zu] not overwritten: %g vs %g", deconv ? "deconv" : "conv", i,
                     (double)dx2[i], (double)dx1[i]);
    double tol = TEST_DOUBLE ? 1e-12 : 1e-5;
    for (size_t i = 0; i < nk; i++)
        if (!(fabs(dk2[i] - 1 - dk1[i]) <= tol * (1 + fabs(dk1[i]))))
            fail_msg("dk[%zu] not accumulated", i);
    for (size_t i = 0; i < nb; i++)
        if (!(fabs(db2[i] - 2 - db1[i]) <= tol * (1 + fabs(db1[i]))))
            fail_msg("db[%zu] not accumulated", i);
    bwd(&g, x, k, dy, NULL, dk2, db2, work);
    for (size_t i = 0; i < nk; i++)
        if (!(fabs(dk2[i] - 1 - 2 * dk1[i]) <= tol * (1 + fabs(dk1[i]))))
            fail_msg("dk[%zu] (dx NULL)", i);
    for (size_t i = 0; i < nb; i++)
        if (!(fabs(db2[i] - 2 - 2 * db1[i]) <= tol * (1 + fabs(db1[i]))))
            fail_msg("db[%zu] (dx NULL)", i);
    free(x);
    free(dy);
    free(k);
    free(dx1);
    free(dx2);
    free(dk1);
    free(dk2);
    free(db1);
    free(db2);
    free(work);
}

static void test_conv_accumulate(void **state) {
    (void)state;
    check_accumulate(false);
    check_accumulate(true);
}

/* conv backward by hand: 1 channel 3x3, stride 1, K_DIAG, dy = 1 at (1,1) only:
 * y(1,1) = x(0,0) + 10 x(1,1) + 100 x(2,2) + b, so dx = K_DIAG laid on the
 * image, dk(kh,kw) = x(kh, kw) (the whole image, x = 1..9), db = 1. */
static void test_conv_backward_by_hand(void **state) {
    (void)state;
    real x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, dy[9] = {0, 0, 0, 0, 1, 0, 0, 0, 0};
    real dx[9], dk[9] = {0}, db[1] = {0};
    conv_geom g = conv_geom_make(1, 1, 3, 3, 1, 1);
    real *work = work_for(&g);
    conv_backward(&g, x, K_DIAG, dy, dx, dk, db, work);
    const double want_dx[9] = {1, 0, 0, 0, 10, 0, 0, 0, 100};
    const double want_dk[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const double want_db[1] = {1};
    expect_vals("conv dx", dx, want_dx, 9, TOL_EXACT);
    expect_vals("conv dk", dk, want_dk, 9, TOL_EXACT);
    expect_vals("conv db", db, want_db, 1, TOL_EXACT);
    /* stride 2, even 4x4 (pads 0/1), dy = 1 at (1,1): y(1,1) reads rows/cols
     * 2..4, so dx = K_DIAG at rows/cols 2,3 (its row/col 2 falls on padding):
     * dx(2,2) = 1, dx(3,3) = 10; dk(kh,kw) = x(2+kh, 2+kw), 0 on padding */
    real x16[16], dy4[4] = {0, 0, 0, 1}, dx16[16], dk2[9] = {0}, db2[1] = {0};
    for (int i = 0; i < 16; i++)
        x16[i] = (real)(i + 1);
    conv_geom g2 = conv_geom_make(1, 1, 4, 4, 1, 2);
    free(work);
    work = work_for(&g2);
    conv_backward(&g2, x16, K_DIAG, dy4, dx16, dk2, db2, work);
    double want_dx16[16] = {0};
    want_dx16[2 * 4 + 2] = 1;
    want_dx16[3 * 4 + 3] = 10;
    const double want_dk2[9] = {11, 12, 0, 15, 16, 0, 0, 0, 0};
    expect_vals("conv s2 dx", dx16, want_dx16, 16, TOL_EXACT);
    expect_vals("conv s2 dk", dk2, want_dk2, 9, TOL_EXACT);
    expect_vals("conv s2 db", db2, want_db, 1, TOL_EXACT);
    free(work);
}

/* ---- dense ------------------------------------------------------------------------------ */

/* W = [[1,2,3],[4,5,6]], b = [0.5,-1], x = [[1,0,-1],[2,1,0]]:
 *   y = x W^T + b = [[1-3+0.5, 4-6-1], [2+2+0.5, 8+5-1]] = [[-1.5,-3],[4.5,12]]
 * dy = [[1,0],[0,2]]: dx = dy W = [[1,2,3],[8,10,12]];
 *   dW = dy^T x = [[1,0,-1],[4,2,0]]; db = [1, 2] */
static void test_dense(void **state) {
    (void)state;
    real w[6] = {1, 2, 3, 4, 5, 6}, b[2] = {0.5, -1}, x[6] = {1, 0, -1, 2, 1, 0}, y[4], work[4];
    const double want_y[4] = {-1.5, -3, 4.5, 12};
    dense_forward(2, 3, 2, x, w, b, y, NULL);
    expect_vals("dense y", y, want_y, 4, TOL_EXACT);
    dense_forward(2, 3, 2, x, w, b, y, work); /* a small W: the same form */
    expect_vals("dense y (with scratch)", y, want_y, 4, TOL_EXACT);
    real dy[4] = {1, 0, 0, 2}, dx[6], dw[6], db[2];
    for (int i = 0; i < 6; i++)
        dx[i] = NAN, dw[i] = 1;
    db[0] = db[1] = 1;
    dense_backward(2, 3, 2, x, w, dy, dx, dw, db);
    const double want_dx[6] = {1, 2, 3, 8, 10, 12};
    const double want_dw[6] = {1 + 1, 1 + 0, 1 - 1, 1 + 4, 1 + 2, 1 + 0}; /* accumulated onto 1 */
    const double want_db[2] = {1 + 1, 1 + 2};
    expect_vals("dense dx", dx, want_dx, 6, TOL_EXACT);
    expect_vals("dense dw", dw, want_dw, 6, TOL_EXACT);
    expect_vals("dense db", db, want_db, 2, TOL_EXACT);
    dense_backward(2, 3, 2, x, w, dy, NULL, dw, db); /* dx NULL: parameters only */
    const double want_dw2[6] = {3, 1, -1, 9, 5, 1};
    const double want_db2[2] = {3, 5};
    expect_vals("dense dw (2nd)", dw, want_dw2, 6, TOL_EXACT);
    expect_vals("dense db (2nd)", db, want_db2, 2, TOL_EXACT);
}

/* With scratch, a few rows through a W of 2^18 reals or more (an encoder's
 * fc layer) run as y^T = W x^T, transposed into y in tiles of 8 x 8: against
 * the plain form, at row and output counts with and without a whole tile
 * (13 and 64 rows; 257 and 256 outputs), and past 64 rows (the plain form). */
static void test_dense_transposed(void **state) {
    (void)state;
    const int shapes[][3] = {{13, 1030, 257}, {64, 1024, 256}, {8, 1024, 256}, {65, 1024, 256}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        real *x = malloc((size_t)n * in * sizeof *x), *w = malloc((size_t)out * in * sizeof *w);
        real *b = malloc((size_t)out * sizeof *b), *work = malloc((size_t)n * out * sizeof *work);
        real *y = malloc((size_t)n * out * sizeof *y), *want = malloc((size_t)n * out * sizeof *y);
        tu_fill(x, (size_t)n * in, 21);
        tu_fill(w, (size_t)out * in, 22);
        tu_fill(b, (size_t)out, 23);
        dense_forward(n, in, out, x, w, b, want, NULL);
        for (size_t i = 0; i < (size_t)n * out; i++)
            y[i] = NAN;
        dense_forward(n, in, out, x, w, b, y, work);
        const double e = tu_max_norm_err_real(y, want, (size_t)n * out); /* NaN: unwritten */
        if (!(e <= 1e-5)) fail_msg("dense %d x %d -> %d with scratch: error %.3g", n, in, out, e);
        free(x), free(w), free(b), free(work), free(y), free(want);
    }
}

/* ---- FiLM --------------------------------------------------------------------------------- */

/* c = 2, n = 2, hw = 2; x [c][n][hw]: ch0 = (1 2 | 3 4), ch1 = (5 6 | 7 8);
 * scale [n][c] = [[2, -1], [0.5, 3]], shift = [[1, 0], [-1, 10]]:
 *   y ch0 s0 = 2 (1 2) + 1 = 3 5;      ch0 s1 = 0.5 (3 4) - 1 = 0.5 1
 *   y ch1 s0 = -(5 6) + 0 = -5 -6;     ch1 s1 = 3 (7 8) + 10 = 31 34
 * dy: ch0 = (1 -1 | 2 0), ch1 = (0 1 | 1 1):
 *   dscale[i][c] = sum_p dy x: [0][0] = 1-2 = -1, [0][1] = 6, [1][0] = 6, [1][1] = 15
 *   dshift[i][c] = sum_p dy:   [0][0] = 0, [0][1] = 1, [1][0] = 2, [1][1] = 2
 *   dx = scale dy: ch0 = (2 -2 | 1 0), ch1 = (0 -1 | 3 3) */
static void test_film(void **state) {
    (void)state;
    real x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, scale[4] = {2, -1, 0.5, 3}, shift[4] = {1, 0, -1, 10};
    real y[8];
    film_forward(2, 2, 2, x, scale, shift, y);
    const double want_y[8] = {3, 5, 0.5, 1, -5, -6, 31, 34};
    expect_vals("film y", y, want_y, 8, TOL_EXACT);
    real dy[8] = {1, -1, 2, 0, 0, 1, 1, 1}, dx[8], ds[4] = {7, 7, 7, 7}, dt[4] = {7, 7, 7, 7};
    for (int i = 0; i < 8; i++)
        dx[i] = NAN;
    film_backward(2, 2, 2, x, scale, dy, dx, ds, dt); /* ds, dt overwritten (prefilled 7) */
    const double want_ds[4] = {-1, 6, 6, 15}, want_dt[4] = {0, 1, 2, 2};
    const double want_dx[8] = {2, -2, 1, 0, 0, -1, 3, 3};
    expect_vals("film dscale", ds, want_ds, 4, TOL_EXACT);
    expect_vals("film dshift", dt, want_dt, 4, TOL_EXACT);
    expect_vals("film dx", dx, want_dx, 8, TOL_EXACT);
    /* dx may alias dy, and may be NULL */
    film_backward(2, 2, 2, x, scale, dy, dy, ds, dt);
    expect_vals("film dx (in place)", dy, want_dx, 8, TOL_EXACT);
    expect_vals("film dscale (in place)", ds, want_ds, 4, TOL_EXACT);
    real dy2[8] = {1, -1, 2, 0, 0, 1, 1, 1};
    film_backward(2, 2, 2, x, scale, dy2, NULL, ds, dt);
    expect_vals("film dshift (dx NULL)", dt, want_dt, 4, TOL_EXACT);
}

/* ---- element-wise -------------------------------------------------------------------------- */

static void test_lrelu(void **state) {
    (void)state;
    const real x[6] = {-2, -0.5, 0, 0.25, 3, -1e-30};
    const double alphas[5] = {0.3, 0.2, 0, -0.5, 1.5};
    for (int a = 0; a < 5; a++) {
        double al = alphas[a];
        real y[6], dy[6] = {1, 2, 3, 4, 5, 6}, dx[6];
        /* y = x for x > 0, alpha x otherwise (0 maps to 0 for every alpha) */
        const double want_y[6] = {-2 * al, -0.5 * al, 0, 0.25, 3, -1e-30 * al};
        /* dx = dy for x > 0, alpha dy otherwise (x = 0 takes the alpha side) */
        const double want_dx[6] = {1 * al, 2 * al, 3 * al, 4, 5, 6 * al};
        lrelu_forward(6, (real)al, x, y);
        lrelu_backward(6, (real)al, x, dy, dx);
        char name[64];
        snprintf(name, sizeof name, "lrelu y alpha=%g", al);
        expect_vals(name, y, want_y, 6, TOL_EXACT);
        snprintf(name, sizeof name, "lrelu dx alpha=%g", al);
        expect_vals(name, dx, want_dx, 6, TOL_EXACT);
        /* in place */
        real z[6];
        memcpy(z, x, sizeof z);
        lrelu_forward(6, (real)al, z, z);
        expect_vals("lrelu in place", z, want_y, 6, TOL_EXACT);
        lrelu_backward(6, (real)al, x, dy, dy);
        expect_vals("lrelu backward in place", dy, want_dx, 6, TOL_EXACT);
    }
}

/* softplus(x) = log(1 + e^x), values from 40-digit arithmetic (mpmath). */
static void test_softplus(void **state) {
    (void)state;
    const double xs[] = {0, 1, -1, 2, -3, 20, -20, 35, -35, 50, -50};
    const double want[] = {0.69314718055994530942,    1.313261687518222834,
                           0.31326168751822283405,    2.1269280110429724964,
                           0.048587351573742058759,   20.00000000206115362,
                           2.0611536203143807032e-9,  35.000000000000000631,
                           6.3051167601469873979e-16, 50.0,
                           1.9287498479639177829e-22};
    for (size_t i = 0; i < YT_ARRAY_LEN(xs); i++) {
        char name[64];
        snprintf(name, sizeof name, "softplus(%g)", xs[i]);
        /* relative accuracy everywhere, also where log(1 + e^x) would round to 0 */
        expect_rel(name, softplus1((real)xs[i]), want[i], 4 * TOL_FN);
        real y;
        softplus_forward(1, (const real[]){(real)xs[i]}, &y);
        expect_rel(name, y, want[i], 4 * TOL_FN);
    }
    /* extremes: finite, exact where the answer is x or ~0 */
    const real big[] = {88, 100, 700, 1e4, (real)1e30};
    for (size_t i = 0; i < YT_ARRAY_LEN(big); i++) {
        real p = softplus1(big[i]), m = softplus1(-big[i]);
        if (!(p == big[i]))
            fail_msg("softplus(%g) = %.17g, want %g", (double)big[i], (double)p, (double)big[i]);
        if (!(isfinite(m) && m >= 0 && m < 1e-37))
            fail_msg("softplus(-%g) = %g", (double)big[i], (double)m);
    }
    if (TEST_DOUBLE)
        expect_rel("softplus(-700)", softplus1((real)-700), 9.8596765437597708567e-305, 1e-12);
    /* backward: dx = dy sigmoid(x); sigmoid values from 40-digit arithmetic */
    const real sx[] = {0, 3, -3, 20, -20, -40};
    const double sig[] = {0.5,
                          0.95257412682243321912,
                          0.047425873177566780879,
                          0.99999999793884638181,
                          2.0611536181902035814e-9,
                          4.2483542552915889773e-18};
    real dy[6] = {2, 2, 2, 2, 2, 2}, dx[6];
    softplus_backward(6, sx, dy, dx);
    for (int i = 0; i < 6; i++) {
        expect_rel("softplus backward", dx[i], 2 * sig[i], 4 * TOL_FN);
        expect_rel("sigmoid", sigmoid1(sx[i]), sig[i], 4 * TOL_FN);
    }
    const real ext[] = {40, 1000, -1000, (real)1e30, (real)-1e30};
    for (size_t i = 0; i < YT_ARRAY_LEN(ext); i++) {
        real s = sigmoid1(ext[i]);
        assert_true(isfinite(s) && s >= 0 && s <= 1);
        assert_true(ext[i] > 0 ? s == 1 : s < 1e-17);
    }
    /* in place */
    real z[3] = {-50, 0, 50};
    softplus_forward(3, z, z);
    expect_rel("softplus in place", z[0], 1.9287498479639177829e-22, 4 * TOL_FN);
    expect_rel("softplus in place", z[2], 50, 4 * TOL_FN);
}

/* sigmoid cross-entropy with logits: softplus(l) - t l (40-digit values). */
static void test_sigmoid_xent(void **state) {
    (void)state;
    const struct {
        double l, t, want;
    } c[] = {
        {0, 0.5, 0.69314718055994530942},
        {2, 0.3, 1.5269280110429725186},
        {-3, 0.7, 2.1485873515737419255},
        {30, 0.6, 12.000000000000094242},
        {50, 1, 1.9287498479639177838e-22}, /* log1p(e^-50): cancels to 0 if naive */
        {-50, 0, 1.9287498479639177829e-22},
        {1000, 0, 1000},
        {-1000, 1, 1000},
        {-1000, 0.25, 250},
    };
    for (size_t i = 0; i < YT_ARRAY_LEN(c); i++) {
        char name[64];
        snprintf(name, sizeof name, "xent(%g, %g)", c[i].l, c[i].t);
        double tol = TEST_DOUBLE ? 1e-14 : 4e-7;
        if (c[i].l == 30) tol = TEST_DOUBLE ? 1e-14 : 2e-6; /* 30 - 18 in float: 2 ulp of 30 */
        expect_rel(name, sigmoid_xent1((real)c[i].l, (real)c[i].t), c[i].want, tol);
    }
    /* saturated logits with matching targets: exactly 0 (or a denormal), never NaN */
    real a = sigmoid_xent1(1000, 1), b = sigmoid_xent1(-1000, 0);
    real d = sigmoid_xent1((real)1e30, 1), e = sigmoid_xent1((real)-1e30, 0);
    assert_true(a >= 0 && a < 1e-37 && b >= 0 && b < 1e-37);
    assert_true(isfinite(d) && isfinite(e) && d >= 0 && e >= 0 && d < 1e-37 && e < 1e-37);
}

/* ---- layout changes -------------------------------------------------------------------------- */

/* c = 2, n = 2, hw = 3: chan [c][n][hw] = 0..11:
 *   rows [n][c*hw]: sample 0 = ch0 (0 1 2), ch1 (6 7 8); sample 1 = 3 4 5 9 10 11 */
static void test_layout(void **state) {
    (void)state;
    real chan[12], rows[12], back[12];
    for (int i = 0; i < 12; i++)
        chan[i] = (real)i;
    chan_to_rows(2, 2, 3, chan, rows);
    const double want[12] = {0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11};
    expect_vals("chan_to_rows", rows, want, 12, 0);
    rows_to_chan(2, 2, 3, rows, back);
    expect_vals("rows_to_chan", back, (const double[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 12,
                0);
    /* round trip on a larger random shape, both directions, bit for bit */
    const int C = 5, N = 3, HW = 7;
    size_t n = (size_t)C * N * HW;
    real *a = malloc(n * sizeof *a), *r = malloc(n * sizeof *a), *b2 = malloc(n * sizeof *a);
    tu_fill_uniform(a, n, -1, 1, 3, 0);
    chan_to_rows(C, N, HW, a, r);
    /* element (c, i, p) of chan is element i * C*HW + c*HW + p of rows */
    assert_true(r[(size_t)2 * C * HW + 4 * HW + 6] == a[((size_t)4 * N + 2) * HW + 6]);
    rows_to_chan(C, N, HW, r, b2);
    assert_memory_equal(a, b2, n * sizeof *a);
    rows_to_chan(C, N, HW, a, r);
    chan_to_rows(C, N, HW, r, b2);
    assert_memory_equal(a, b2, n * sizeof *a);
    free(a);
    free(r);
    free(b2);
}

/* ---- losses by hand (40-digit values from mpmath) ------------------------------------------ */

static void test_losses_by_hand(void **state) {
    (void)state;
    const double tol = TEST_DOUBLE ? 1e-14 : 1e-6;
    /* KL = sum_j 0.5 (mu^2 + sigma^2 - 1) - log sigma, latent 3, 2 samples:
     *   mu (0, 1, 0), sigma (1, 1, e):   0 + 0.5 + (0.5 (e^2 - 1) - 1) = 2.6945280494653251136
     *   mu (-2, 0, 0), sigma (1, .5, 2): 2 + (-0.375 + log 2) + (1.5 - log 2) = 3.125 */
    const real E = (real)2.71828182845904523536;
    real mu[6] = {0, 1, 0, -2, 0, 0}, sg[6] = {1, 1, E, 1, 0.5, 2};
    double kl[2];
    loss_kl(2, 3, mu, sg, kl);
    expect_rel("kl[0]", kl[0], 2.6945280494653251136, tol);
    expect_rel("kl[1]", kl[1], 3.125, tol);
    /* backward, accumulated onto 1: dmu += coef mu, dsigma += coef (sigma - 1/sigma),
     * coef = (1, 2); e - 1/e = 2.3504023872876029138 */
    real dmu[6] = {1, 1, 1, 1, 1, 1}, dsg[6] = {1, 1, 1, 1, 1, 1};
    const double coef[2] = {1, 2};
    loss_kl_backward(2, 3, mu, sg, coef, dmu, dsg);
    expect_vals("kl dmu", dmu, (const double[]){1, 2, 1, -3, 1, 1}, 6, tol);
    expect_vals("kl dsigma", dsg,
                (const double[]){1, 1, 1 + 2.3504023872876029138, 1, 1 - 3, 1 + 3}, 6, tol);

    /* Bernoulli: recon = sum softplus(l) - x l; c = 1, n = 2, hw = 2, logits
     * [c][n][hw] = (0, 2 | -3, 1000), x = (0.5, 0.3 | 0.7, 1):
     *   sample 0: log 2 + 1.5269280110429725186 = 2.2200751916029178280
     *   sample 1: 2.1485873515737419255 + 0 */
    real lg[4] = {0, 2, -3, 1000}, tx[4] = {0.5, 0.3, 0.7, 1}, dl[4];
    double rec[2];
    loss_bernoulli(1, 2, 2, lg, tx, rec);
    expect_rel("bernoulli[0]", rec[0], 2.2200751916029178280, TEST_DOUBLE ? 1e-14 : 2e-7);
    expect_rel("bernoulli[1]", rec[1], 2.1485873515737419255, TEST_DOUBLE ? 1e-14 : 2e-7);
    /* dl = coef (sigmoid(l) - x): 0, 0.58079707797788245516, -0.65257412682243317471 coef 2, 0 */
    loss_bernoulli_backward(1, 2, 2, lg, tx, coef, dl);
    expect_vals("bernoulli dlogits", dl,
                (const double[]){0, 0.58079707797788245516, -2 * 0.65257412682243317471, 0}, 4,
                TEST_DOUBLE ? 1e-15 : 2e-7);

    /* Gaussian (eps 0): out [2c][n][hw] = means (0, 1), raw sigmas
     * (log(e - 1), 0) -> s = (1, log 2); x = (0, 2):
     *   pixel 0: 0.5 log(2 pi) = 0.91893853320467274178
     *   pixel 1: 0.5 log(2 pi) + log(log 2) + 0.5 / log(2)^2 = 1.5931101031258123137
     * backward (coef 1): dmu = -(x - mu)/s^2 = (0, -2.0813689810056077979),
     *   draw = (1/s - d^2/s^3) sigmoid(raw) = (1 - 1/e, (1/log2 - 1/log2^3) / 2)
     *        = (0.63212055882855767840, -0.78004283313397101807) */
    real out[4] = {0, 1, (real)0.54132485461291810898, 0}, gx[2] = {0, 2}, dout[4];
    double gr[1];
    loss_gaussian(1, 1, 2, 0.0, out, gx, gr);
    expect_rel("gaussian", gr[0], 2.5120486363304850555, TEST_DOUBLE ? 1e-14 : 2e-7);
    loss_gaussian_backward(1, 1, 2, 0.0, out, gx, coef, dout);
    expect_vals("gaussian dout", dout,
                (const double[]){0, -2.0813689810056077979, 0.63212055882855767840,
                                 -0.78004283313397101807},
                4, TEST_DOUBLE ? 1e-14 : 2e-7);
    /* sigma = eps + softplus(raw): raw -1e4 leaves s = eps = 1e-6, x = mu:
     * 0.5 log(2 pi) + log(1e-6) = -12.896572024759601362 */
    real out2[2] = {0.5, -1e4}, gx2[1] = {0.5};
    loss_gaussian(1, 1, 1, 1e-6, out2, gx2, gr);
    expect_rel("gaussian at eps", gr[0], -12.896572024759601362, TEST_DOUBLE ? 1e-14 : 2e-7);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_geometry),
        cmocka_unit_test(test_conv_stride1),
        cmocka_unit_test(test_conv_stride2_even),
        cmocka_unit_test(test_conv_stride2_odd),
        cmocka_unit_test(test_conv_channels),
        cmocka_unit_test(test_conv_backward_by_hand),
        cmocka_unit_test(test_deconv),
        cmocka_unit_test(test_deconv_channels),
        cmocka_unit_test(test_adjoint),
        cmocka_unit_test(test_conv_accumulate),
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_dense_transposed),
        cmocka_unit_test(test_film),
        cmocka_unit_test(test_lrelu),
        cmocka_unit_test(test_softplus),
        cmocka_unit_test(test_sigmoid_xent),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_losses_by_hand),
    };
    return TU_RUN("layers", tests);
}
