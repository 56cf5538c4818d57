/* test_convb.c — the channel-blocked conv kernels (src/convb.h) against the
 * im2col + GEMM route of layers.h: forward (z and the stage's output o),
 * input gradient, kernel and bias gradients and the stage's gradients, of
 * conv and transposed conv, with a FiLM + leaky ReLU stage, FiLM alone and
 * none; on every layer shape of the three models and on odd, tiny and
 * non-square ones (both stride-2 paddings, channel counts that fill part of
 * a block or of a register tile); the lanes past the channels stay zero;
 * the layout's conversions to and from [C][N][H][W] and rows;
 * 1, 2 and 3 threads agree, and a thread count gives the same bits twice. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/convb.h" /* internal header */
#include "../../src/simd.h"  /* VL */
#include "layers.h"
#include "testutil.h"

#define TOL (TEST_DOUBLE ? 1e-12 : 2e-6)

static void expect_close(const char *what, const conv_geom *g, bool deconv, int stage,
                         const real *got, const real *want, size_t n) {
    double e = tu_max_norm_err_real(got, want, n); /* NaN-safe */
    double terms = (double)g->n * g->h * g->w;
    double tol = TOL * sqrt(fmax(1.0, terms / 16384));
    if (!(e <= tol))
        fail_msg("%s %s (stage %d) n=%d cin=%d %dx%d cout=%d stride=%d threads=%d: error %.3g > "
                 "%.3g",
                 deconv ? "deconv" : "conv", what, stage, g->n, g->cin, g->h, g->w, g->cout,
                 g->stride, g->threads, e, tol);
}

/* the lanes of a blocked tensor past its c channels are zero */
static void expect_zero_lanes(const char *what, const real *xb, int c, int n, int hw) {
    const int nb = convb_blocks(c);
    for (size_t p = 0; p < (size_t)n * hw; p++)
        for (int l = c - (nb - 1) * VL; l < VL; l++)
            if (xb[((size_t)(nb - 1) * n * hw + p) * VL + l] != 0)
                fail_msg("%s: lane %d of pixel %zu of the last block is %g, not 0", what, l, p,
                         (double)xb[((size_t)(nb - 1) * n * hw + p) * VL + l]);
}

/* What one call sequence gives: z, o, dx, dk, db, dscale, dshift */
enum { Z, O, DX, DK, DB, DS, DT, NOUT };

typedef struct {
    const conv_geom *g;
    bool deconv;
    int stage; /* 0 none, 1 FiLM, 2 FiLM + leaky ReLU */
    bool with_dx;
    size_t nin, nout, nk;
    int cin_side, cout_side; /* the layer's input and output channels */
    int hw_in, hw_out;
    const real *x, *k, *b, *sc, *sh, *dout;
} problem;

static void reference(const problem *P, real *r[NOUT]) {
    conv_geom g = *P->g;
    conv_geom_route(&g, CONV_GEMM);
    real *work = tu_nans(conv_work_size(&g));
    const film_stage st = {.scale = P->sc, .shift = P->sh, .lrelu = P->stage == 2, .alpha = 0.3f};
    real *d = malloc(P->nout * sizeof(real));
    memcpy(d, P->dout, P->nout * sizeof(real));
    real *dx = P->with_dx ? r[DX] : NULL;
    if (P->stage) {
        if (P->deconv) {
            deconv_film_forward(&g, P->x, P->k, P->b, &st, r[Z], r[O], work);
            deconv_film_backward(&g, P->x, P->k, &st, r[Z], d, dx, r[DK], r[DB], r[DS], r[DT],
                                 work);
        } else {
            conv_film_forward(&g, P->x, P->k, P->b, &st, r[Z], r[O], work);
            conv_film_backward(&g, P->x, P->k, &st, r[Z], d, dx, r[DK], r[DB], r[DS], r[DT], work);
        }
    } else if (P->deconv) {
        deconv_forward(&g, P->x, P->k, P->b, r[Z], work);
        deconv_backward(&g, P->x, P->k, d, dx, r[DK], r[DB], work);
    } else {
        conv_forward(&g, P->x, P->k, P->b, r[Z], work);
        conv_backward(&g, P->x, P->k, d, dx, r[DK], r[DB], work);
    }
    free(d);
    free(work);
}

/* the same through convb with g->threads = T, results converted back */
static void blocked(const problem *P, int T, real *r[NOUT]) {
    conv_geom g = *P->g;
    g.threads = T;
    const int ci = P->cin_side, co = P->cout_side, n = g.n;
    const size_t lin = convb_len(ci, n, P->hw_in, 1), lout = convb_len(co, n, P->hw_out, 1);
    real *xb = tu_nans(lin), *zb = tu_nans(lout), *ob = tu_nans(lout), *db = tu_nans(lout), *dxb = tu_nans(lin);
    real *work = tu_nans(convb_work_size(&g));
    convb_from_chan(ci, n, P->hw_in, P->x, xb);
    convb_from_chan(co, n, P->hw_out, P->dout, db);
    const film_stage st = {.scale = P->sc, .shift = P->sh, .lrelu = P->stage == 2, .alpha = 0.3f};
    const film_stage *s = P->stage ? &st : NULL;
    if (P->deconv) {
        convb_deconv_forward(&g, xb, P->k, P->b, s, zb, P->stage ? ob : NULL, work);
        convb_deconv_backward(&g, xb, P->k, s, zb, db, P->with_dx ? dxb : NULL, r[DK], r[DB], r[DS],
                              r[DT], work);
    } else {
        convb_conv_forward(&g, xb, P->k, P->b, s, zb, P->stage ? ob : NULL, work);
        convb_conv_backward(&g, xb, P->k, s, zb, db, P->with_dx ? dxb : NULL, r[DK], r[DB], r[DS],
                            r[DT], work);
    }
    expect_zero_lanes("z", zb, co, n, P->hw_out);
    convb_to_chan(co, n, P->hw_out, zb, r[Z]);
    if (P->stage) {
        expect_zero_lanes("o", ob, co, n, P->hw_out);
        convb_to_chan(co, n, P->hw_out, ob, r[O]);
    }
    if (P->with_dx) {
        expect_zero_lanes("dx", dxb, ci, n, P->hw_in);
        convb_to_chan(ci, n, P->hw_in, dxb, r[DX]);
    }
    real *p[] = {xb, zb, ob, db, dxb, work};
    for (size_t i = 0; i < YT_ARRAY_LEN(p); i++)
        free(p[i]);
}

static void alloc_results(const problem *P, real *r[NOUT], size_t sizes[NOUT]) {
    const int c = P->cout_side, n = P->g->n;
    sizes[Z] = sizes[O] = P->nout;
    sizes[DX] = P->nin;
    sizes[DK] = P->nk;
    sizes[DB] = (size_t)c;
    sizes[DS] = sizes[DT] = (size_t)n * c;
    for (int j = 0; j < NOUT; j++)
        r[j] = tu_nans(sizes[j]);
    /* parameter gradients accumulate: start from the same non-zero values */
    tu_fill(r[DK], P->nk, 7);
    tu_fill(r[DB], (size_t)c, 8);
}

static void check(const conv_geom *g, bool deconv, int stage, bool with_dx) {
    problem P = {.g = g, .deconv = deconv, .stage = stage, .with_dx = with_dx};
    const size_t nx = (size_t)g->cin * g->n * g->h * g->w;
    const size_t ny = (size_t)g->cout * g->n * g->ho * g->wo;
    P.nk = (size_t)g->cout * g->cin * 9;
    P.nin = deconv ? ny : nx;
    P.nout = deconv ? nx : ny;
    P.cin_side = deconv ? g->cout : g->cin;
    P.cout_side = deconv ? g->cin : g->cout;
    P.hw_in = deconv ? g->ho * g->wo : g->h * g->w;
    P.hw_out = deconv ? g->h * g->w : g->ho * g->wo;
    const int c = P.cout_side, n = g->n;
    real *x = malloc(P.nin * sizeof(real)), *k = malloc(P.nk * sizeof(real));
    real *b = malloc((size_t)c * sizeof(real)), *dout = malloc(P.nout * sizeof(real));
    real *sc = malloc((size_t)n * c * sizeof(real)), *sh = malloc((size_t)n * c * sizeof(real));
    tu_fill(x, P.nin, 11);
    tu_fill(k, P.nk, 12);
    tu_fill(b, (size_t)c, 13);
    tu_fill(sh, (size_t)n * c, 14);
    tu_fill(dout, P.nout, 15);
    for (int i = 0; i < n * c; i++)
        sc[i] = 1 + (real)0.25 * sh[(i * 7) % (n * c)];
    P.x = x, P.k = k, P.b = b, P.sc = sc, P.sh = sh, P.dout = dout;

    real *want[NOUT], *got[NOUT], *again[NOUT];
    size_t sizes[NOUT];
    alloc_results(&P, want, sizes);
    reference(&P, want);
    static const char *names[NOUT] = {"z", "o", "dx", "dk", "db", "dscale", "dshift"};
    for (int T = 1; T <= 3; T++) {
        alloc_results(&P, got, sizes);
        blocked(&P, T, got);
        for (int j = 0; j < NOUT; j++) {
            if ((j == O || j == DS || j == DT) && !stage) continue;
            if (j == DX && !with_dx) continue;
            conv_geom gt = *g;
            gt.threads = T;
            expect_close(names[j], &gt, deconv, stage, got[j], want[j], sizes[j]);
        }
        if (T == 2) { /* the same thread count, the same bits */
            alloc_results(&P, again, sizes);
            blocked(&P, T, again);
            for (int j = 0; j < NOUT; j++)
                if (memcmp(got[j], again[j], sizes[j] * sizeof(real)) != 0)
                    fail_msg("%s: two runs with 2 threads differ", names[j]);
            for (int j = 0; j < NOUT; j++)
                free(again[j]);
        }
        for (int j = 0; j < NOUT; j++)
            free(got[j]);
    }
    for (int j = 0; j < NOUT; j++)
        free(want[j]);
    real *p[] = {x, k, b, dout, sc, sh};
    for (size_t i = 0; i < YT_ARRAY_LEN(p); i++)
        free(p[i]);
}

/* conv and deconv of g's geometry, each with no stage, FiLM, FiLM + leaky
 * ReLU, and the backward without dx */
static void check_shape(int n, int cin, int h, int w, int cout, int stride) {
    conv_geom g = conv_geom_make(n, cin, h, w, cout, stride);
    assert_true(convb_supports(&g));
    for (int deconv = 0; deconv < 2; deconv++) {
        for (int stage = 0; stage < 3; stage++)
            check(&g, deconv, stage, true);
        check(&g, deconv, 2, false);
    }
}

static void test_layout(void **state) {
    (void)state;
    const int c = VL + 3, n = 2, hw = 5;
    real x[(VL + 3) * 2 * 5], y[(VL + 3) * 2 * 5];
    tu_fill(x, YT_ARRAY_LEN(x), 1);
    assert_int_equal(convb_blocks(c), 2);
    assert_int_equal(convb_len(c, n, hw, 1), (size_t)2 * n * hw * VL);
    real *xb = tu_nans(convb_len(c, n, hw, 1));
    convb_from_chan(c, n, hw, x, xb);
    /* channel ch of sample i, pixel p is lane ch % VL of block ch / VL */
    assert_true(xb[((size_t)(1 * n + 1) * hw + 4) * VL + 2] ==
                x[((size_t)(VL + 2) * n + 1) * hw + 4]);
    expect_zero_lanes("layout", xb, c, n, hw);
    convb_to_chan(c, n, hw, xb, y);
    assert_memory_equal(x, y, sizeof x);
    /* the flatten and the reshape of the model: rows as layers.h's */
    real rows[(VL + 3) * 2 * 5], want[(VL + 3) * 2 * 5];
    chan_to_rows(c, n, hw, x, want);
    convb_to_rows(c, n, hw, xb, rows);
    assert_memory_equal(rows, want, sizeof rows);
    real *xb2 = tu_nans(convb_len(c, n, hw, 1));
    convb_from_rows(c, n, hw, rows, xb2);
    assert_memory_equal(xb, xb2, convb_len(c, n, hw, 1) * sizeof(real));
    free(xb);
    free(xb2);
}

/* every conv and deconv of the Shapes3D model, at a small batch */
static void test_shapes3d_layers(void **state) {
    (void)state;
    tu_shapes3d_conv_shapes(3, check_shape);
}

/* CIFAR-10's and Fashion-MNIST's (28 -> 14 -> 7 -> 4: odd sizes, padding 1
 * before at 7 -> 4) */
static void test_cifar10_fmnist_layers(void **state) {
    (void)state;
    tu_cifar10_fmnist_conv_shapes(check_shape);
}

static void test_odd_shapes(void **state) {
    (void)state;
    tu_odd_conv_shapes(check_shape);
    /* three blocks (a pair and a single) on each side, 19 wide (tiles of 6
     * and a rest); more threads than samples */
    check_shape(2, 2 * VL + 1, 5, 19, 2 * VL + 3, 2);
    check_shape(1, VL + 1, 3, 7, 3 * VL, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_shapes3d_layers),
        cmocka_unit_test(test_cifar10_fmnist_layers),
        cmocka_unit_test(test_odd_shapes),
    };
    return TU_RUN("convb", tests);
}
