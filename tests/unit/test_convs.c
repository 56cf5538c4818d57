/* test_convs.c — the sample-minor conv kernels (src/convs.h) against the
 * im2col + GEMM route of layers.h, for conv and transposed conv: the forward
 * (z, and o of a FiLM + leaky ReLU stage, FiLM alone, or none), the input
 * gradient, the kernel and bias gradients, the stage's gradients (from a
 * planar incoming gradient), and the input gradient taken through the
 * producer's stage in the stores (CONVS_DZ) against layers.h's input
 * gradient followed by film_lrelu_backward (stored apart from the
 * producer's z, and over it: the same bits); on every layer shape of the
 * three models and on odd, tiny and non-square ones, with batches that fill
 * part of a group. Also: the layout's conversions; the borders and the
 * lanes past the batch stay zero; groups run in two ranges give the same
 * bits as in one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/convs.h" /* internal header */
#include "layers.h"
#include "loss.h"
#include "testutil.h"

#define TOL (TEST_DOUBLE ? 1e-12 : 2e-6)

/* a zeroed tensor of the layout, 64-byte aligned */
static real *sm_alloc(const convs_shape *s) {
    const size_t bytes = (convs_len(s) * sizeof(real) + 63) / 64 * 64;
    real *p = aligned_alloc(64, bytes);
    memset(p, 0, bytes);
    return p;
}

static rvec *rvecs(size_t n) {
    const size_t bytes = ((n ? n : 1) * sizeof(rvec) + 63) / 64 * 64;
    rvec *p = aligned_alloc(64, bytes);
    memset(p, 0, bytes);
    return p;
}

/* the largest difference relative to the largest reference value, or to 1
 * where that is smaller (a single bias gradient near 0 after its
 * accumulation: its rounding is that of the sums' terms, of size 1) */
static void expect_close(const char *what, const conv_geom *g, bool deconv, int stage,
                         const real *got, const real *want, size_t n) {
    double e = tu_max_norm_err_real(got, want, n), ref = 0; /* NaN-safe */
    for (size_t i = 0; i < n; i++)
        ref = fmax(ref, fabs((double)want[i]));
    if (ref < 1) e *= ref;
    double terms = (double)g->n * g->h * g->w;
    double tol = TOL * sqrt(fmax(1.0, terms / 16384));
    if (!(e <= tol))
        fail_msg("%s %s (stage %d) n=%d cin=%d %dx%d cout=%d stride=%d: error %.3g > %.3g",
                 deconv ? "deconv" : "conv", what, stage, g->n, g->cin, g->h, g->w, g->cout,
                 g->stride, e, tol);
}

/* every real of the layout outside the positions of the first n samples is
 * zero: the border and the lanes past n */
static void expect_clean(const char *what, const convs_shape *s, const real *xs) {
    for (int c = 0; c < s->c; c++)
        for (int g = 0; g < s->groups; g++)
            for (int y = -1; y <= s->h; y++)
                for (int x = -1; x <= s->w; x++) {
                    const real *v = convs_at(s, (real *)xs, c, g, y, x);
                    const bool inside = y >= 0 && y < s->h && x >= 0 && x < s->w;
                    for (int l = 0; l < VL; l++)
                        if ((!inside || g * VL + l >= s->n) && v[l] != 0)
                            fail_msg("%s: channel %d group %d (%d, %d) lane %d is %g, not 0", what,
                                     c, g, y, x, l, (double)v[l]);
                }
}

/* What is compared: z, o, dx, dk, db, dscale, dshift, and the gradient
 * through the producer's stage and its two sums */
enum { Z, O, DX, DK, DB, DS, DT, PZ, PS, PT, NOUT };

typedef struct {
    conv_geom g;
    bool deconv;
    int stage; /* 0 none, 1 FiLM, 2 FiLM + leaky ReLU */
    size_t nin, nout, nk;
    int cin_side, cout_side; /* the layer's input and output channels */
    int hin, win, hout, wout;
    const real *x, *k, *b, *sc, *sh, *dout;
    const real *pz, *psc, *psh; /* the producer of x: its z and stage (FiLM + leaky ReLU) */
} problem;

static void reference(const problem *P, real *r[NOUT]) {
    conv_geom g = P->g;
    conv_geom_route(&g, CONV_GEMM);
    real *work = tu_nans(conv_work_size(&g));
    const film_stage st = {.scale = P->sc, .shift = P->sh, .lrelu = P->stage == 2, .alpha = 0.3f};
    real *d = malloc(P->nout * sizeof(real));
    memcpy(d, P->dout, P->nout * sizeof(real));
    if (P->stage) {
        if (P->deconv) {
            deconv_film_forward(&g, P->x, P->k, P->b, &st, r[Z], r[O], work);
            deconv_film_backward(&g, P->x, P->k, &st, r[Z], d, r[DX], r[DK], r[DB], r[DS], r[DT],
                                 work);
        } else {
            conv_film_forward(&g, P->x, P->k, P->b, &st, r[Z], r[O], work);
            conv_film_backward(&g, P->x, P->k, &st, r[Z], d, r[DX], r[DK], r[DB], r[DS], r[DT],
                               work);
        }
    } else if (P->deconv) {
        deconv_forward(&g, P->x, P->k, P->b, r[Z], work);
        deconv_backward(&g, P->x, P->k, d, r[DX], r[DK], r[DB], work);
    } else {
        conv_forward(&g, P->x, P->k, P->b, r[Z], work);
        conv_backward(&g, P->x, P->k, d, r[DX], r[DK], r[DB], work);
    }
    /* the producer's stage backward on dx */
    film_lrelu_backward(P->cin_side, g.n, P->hin * P->win, 0.3f, P->pz, P->psc, P->psh, r[DX],
                        r[PZ], r[PS], r[PT]);
    free(d);
    free(work);
}

/* the same through convs, groups [0, split) then [split, G) */
static void sample_minor(const problem *P, int split, real *r[NOUT]) {
    const conv_geom *g = &P->g;
    const int n = g->n, ci = P->cin_side, co = P->cout_side;
    const convs_shape is = convs_shape_make(ci, n, n, P->hin, P->win),
                      os = convs_shape_make(co, n, n, P->hout, P->wout);
    const int G = is.groups;
    real *xs = sm_alloc(&is), *zs = sm_alloc(&os), *ozs = sm_alloc(&os), *dzs = sm_alloc(&os);
    real *dxs = sm_alloc(&is), *pzs = sm_alloc(&is), *pdz = sm_alloc(&is), *inplace = sm_alloc(&is);
    real *wbuf = tu_nans(convs_wbuf_len(g));
    convs_from_chan(&is, P->x, xs, 0, G);
    convs_from_chan(&is, P->pz, pzs, 0, G);
    convs_from_chan(&is, P->pz, inplace, 0, G);
    const film_stage st = {.scale = P->sc, .shift = P->sh, .lrelu = P->stage == 2, .alpha = 0.3f};
    const film_stage pst = {.scale = P->psc, .shift = P->psh, .lrelu = true, .alpha = 0.3f};
    convs_stage s, ps;
    convs_stage_set(&s, &st, co, n, rvecs(convs_stage_len(co, n)));
    convs_stage_set(&ps, &pst, ci, n, rvecs(convs_stage_len(ci, n)));
    double *sv = calloc(convs_sums_len(co, n), sizeof(double));
    double *tv = calloc(convs_sums_len(co, n), sizeof(double));
    double *psv = calloc(convs_sums_len(ci, n), sizeof(double));
    double *ptv = calloc(convs_sums_len(ci, n), sizeof(double));
    double *isv = calloc(convs_sums_len(ci, n), sizeof(double));
    double *itv = calloc(convs_sums_len(ci, n), sizeof(double));
    rvec *acc = rvecs(P->nk);
    double *accb = calloc((size_t)co, sizeof(double));
    const convs_stores fwd = {P->stage ? CONVS_ZO : CONVS_Z, &s, P->stage ? ozs : NULL, NULL, NULL},
                       plain = {CONVS_Z, NULL, NULL, NULL, NULL},
                       through = {CONVS_DZ, &ps, pzs, psv, ptv},
                       over = {CONVS_DZ, &ps, inplace, isv, itv}; /* z's place */
    const int ranges[3] = {0, split, G};
    for (int q = 0; q < 2; q++) {
        const int ga = ranges[q], gb = ranges[q + 1];
        if (ga == gb) continue;
        /* forward */
        if (P->deconv)
            convs_b(g, &is, xs, P->k, P->b, &os, zs, &fwd, wbuf, ga, gb);
        else
            convs_a(g, &is, xs, P->k, P->b, &os, zs, &fwd, wbuf, ga, gb);
        /* the incoming gradient: through the stage, or as it is */
        if (P->stage) {
            convs_stage_bwd_from_chan(&os, &s, P->dout, zs, dzs, sv, tv, ga, gb);
        } else {
            convs_from_chan(&os, P->dout, dzs, ga, gb);
            convs_sum(&os, dzs, accb, ga, gb);
        }
        /* kernel gradient, input gradient, and the input gradient through
         * the producer's stage */
        if (P->deconv) {
            convs_c(g, &is, xs, &os, dzs, acc, ga, gb);
            convs_a(g, &os, dzs, P->k, NULL, &is, dxs, &plain, wbuf, ga, gb);
            convs_a(g, &os, dzs, P->k, NULL, &is, pdz, &through, wbuf, ga, gb);
            convs_a(g, &os, dzs, P->k, NULL, &is, inplace, &over, wbuf, ga, gb);
        } else {
            convs_c(g, &os, dzs, &is, xs, acc, ga, gb);
            convs_b(g, &os, dzs, P->k, NULL, &is, dxs, &plain, wbuf, ga, gb);
            convs_b(g, &os, dzs, P->k, NULL, &is, pdz, &through, wbuf, ga, gb);
            convs_b(g, &os, dzs, P->k, NULL, &is, inplace, &over, wbuf, ga, gb);
        }
    }
    convs_lanes_end(acc, P->nk, r[DK]);
    if (P->stage)
        convs_stage_end(&s, sv, tv, co, n, r[DS], r[DT], r[DB]);
    else
        for (int c = 0; c < co; c++)
            r[DB][c] += (real)accb[c];
    real *pdb = calloc((size_t)ci, sizeof(real)); /* no producer's bias here */
    convs_stage_end(&ps, psv, ptv, ci, n, r[PS], r[PT], pdb);
    free(pdb);
    expect_clean("z", &os, zs);
    convs_to_chan(&os, zs, r[Z], 0, G);
    if (P->stage) {
        expect_clean("o", &os, ozs);
        convs_to_chan(&os, ozs, r[O], 0, G);
    }
    expect_clean("dx", &is, dxs);
    convs_to_chan(&is, dxs, r[DX], 0, G);
    expect_clean("dz through the producer's stage", &is, pdz);
    if (memcmp(pdz, inplace, convs_len(&is) * sizeof(real)) != 0 ||
        memcmp(psv, isv, convs_sums_len(ci, n) * sizeof(double)) != 0)
        fail_msg("the gradient through the stage stored over z differs from the one stored apart");
    convs_to_chan(&is, pdz, r[PZ], 0, G);
    void *p[] = {xs,   zs, ozs, dzs, dxs, pzs, pdz, inplace, wbuf, s.a,
                 ps.a, sv, tv,  psv, ptv, isv, itv, acc,     accb};
    for (size_t i = 0; i < YT_ARRAY_LEN(p); i++)
        free(p[i]);
}

static void alloc_results(const problem *P, real *r[NOUT], size_t sizes[NOUT]) {
    const int c = P->cout_side, n = P->g.n;
    sizes[Z] = sizes[O] = P->nout;
    sizes[DX] = sizes[PZ] = P->nin;
    sizes[DK] = P->nk;
    sizes[DB] = (size_t)c;
    sizes[DS] = sizes[DT] = (size_t)n * c;
    sizes[PS] = sizes[PT] = (size_t)n * P->cin_side;
    for (int j = 0; j < NOUT; j++)
        r[j] = tu_nans(sizes[j]);
    /* parameter gradients accumulate: start from the same non-zero values */
    tu_fill(r[DK], P->nk, 7);
    tu_fill(r[DB], (size_t)c, 8);
}

static real *filled(size_t n, unsigned seed) {
    real *p = malloc((n ? n : 1) * sizeof(real));
    tu_fill(p, n, seed);
    return p;
}

/* FiLM scales near 1 from the fill */
static real *scales(size_t n, unsigned seed) {
    real *p = filled(n, seed);
    for (size_t i = 0; i < n; i++)
        p[i] = 1 + (real)0.25 * p[i];
    return p;
}

static void check(const conv_geom *g, bool deconv, int stage) {
    problem P = {.g = *g, .deconv = deconv, .stage = stage};
    P.g.threads = 1;
    const size_t nx = (size_t)g->cin * g->n * g->h * g->w;
    const size_t ny = (size_t)g->cout * g->n * g->ho * g->wo;
    P.nk = (size_t)g->cout * g->cin * 9;
    P.nin = deconv ? ny : nx;
    P.nout = deconv ? nx : ny;
    P.cin_side = deconv ? g->cout : g->cin;
    P.cout_side = deconv ? g->cin : g->cout;
    P.hin = deconv ? g->ho : g->h, P.win = deconv ? g->wo : g->w;
    P.hout = deconv ? g->h : g->ho, P.wout = deconv ? g->w : g->wo;
    const int c = P.cout_side, n = g->n, pc = P.cin_side;
    real *x = filled(P.nin, 11), *k = filled(P.nk, 12), *b = filled((size_t)c, 13);
    real *sh = filled((size_t)n * c, 14), *dout = filled(P.nout, 15),
         *sc = scales((size_t)n * c, 16);
    real *pz = filled(P.nin, 17), *psh = filled((size_t)n * pc, 18);
    real *psc = scales((size_t)n * pc, 19);
    P.x = x, P.k = k, P.b = b, P.sc = sc, P.sh = sh, P.dout = dout;
    P.pz = pz, P.psc = psc, P.psh = psh;

    real *want[NOUT], *got[NOUT], *again[NOUT];
    size_t sizes[NOUT];
    alloc_results(&P, want, sizes);
    reference(&P, want);
    static const char *names[NOUT] = {"z",
                                      "o",
                                      "dx",
                                      "dk",
                                      "db",
                                      "dscale",
                                      "dshift",
                                      "dz (producer)",
                                      "dscale (producer)",
                                      "dshift (producer)"};
    const int G = (n + VL - 1) / VL;
    alloc_results(&P, got, sizes);
    sample_minor(&P, G, got);
    for (int j = 0; j < NOUT; j++) {
        if ((j == O || j == DS || j == DT) && !stage) continue;
        expect_close(names[j], g, deconv, stage, got[j], want[j], sizes[j]);
    }
    if (G > 1) { /* two ranges of groups: the same bits as one */
        alloc_results(&P, again, sizes);
        sample_minor(&P, 1, again);
        for (int j = 0; j < NOUT; j++)
            if (!((j == O || j == DS || j == DT) && !stage) &&
                memcmp(got[j], again[j], sizes[j] * sizeof(real)) != 0)
                fail_msg("%s: groups in two ranges differ from one", names[j]);
        for (int j = 0; j < NOUT; j++)
            free(again[j]);
    }
    for (int j = 0; j < NOUT; j++)
        free(want[j]), free(got[j]);
    real *p[] = {x, k, b, dout, sc, sh, pz, psc, psh};
    for (size_t i = 0; i < YT_ARRAY_LEN(p); i++)
        free(p[i]);
}

/* conv and deconv of g's geometry, each with no stage, FiLM, FiLM + leaky ReLU */
static void check_shape(int n, int cin, int h, int w, int cout, int stride) {
    conv_geom g = conv_geom_make(n, cin, h, w, cout, stride);
    for (int deconv = 0; deconv < 2; deconv++)
        for (int stage = 0; stage < 3; stage++)
            check(&g, deconv, stage);
}

/* the copies in and out at width w and height h: whole blocks of VL
 * positions (the transposes) and what is left (2 VL + 3), or only the rest
 * (5), or rows that tile a block (VL / 2, VL / 4: 8 x 8 and 4 x 4 maps in
 * the AVX-512 build; 3 rows do not tile it) */
static void check_layout(int w, int h) {
    const int c = 3, n = VL + 2; /* two groups, the second part-filled */
    const size_t len = (size_t)c * n * h * w;
    real *x = filled(len, 1), *y = tu_nans(len);
    const convs_shape s = convs_shape_make(c, n, n, h, w);
    assert_int_equal(s.groups, 2);
    assert_true(s.rp == (size_t)(w + 2) * VL && s.gp == (size_t)(h + 2) * s.rp);
    assert_true(s.cp >= (size_t)s.groups * s.gp);
    assert_true((s.cp * sizeof(real)) % 64 == 0 && (s.cp * sizeof(real) / 64) % 2 == 1);
    real *xs = sm_alloc(&s);
    convs_from_chan(&s, x, xs, 0, s.groups);
    /* sample i = g VL + l, channel ch, pixel (yy, xx) is lane l at (ch, g, yy, xx) */
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int yy = 0; yy < h; yy++)
                for (int xx = 0; xx < w; xx++)
                    assert_true(convs_at(&s, xs, ch, i / VL, yy, xx)[i % VL] ==
                                x[(((size_t)ch * n + i) * h + yy) * w + xx]);
    expect_clean("layout", &s, xs);
    convs_to_chan(&s, xs, y, 0, s.groups);
    assert_memory_equal(x, y, len * sizeof(real));
    /* a smaller batch into the same buffer (positions kept: cap n): the
     * lanes of the samples it lacks are zero again */
    const convs_shape s3 = convs_shape_make(c, 3, n, h, w);
    assert_true(s3.cp == s.cp && s3.gp == s.gp);
    convs_from_chan(&s3, x, xs, 0, s3.groups);
    expect_clean("a smaller batch", &s3, xs);
    free(x), free(y), free(xs);
}

static void test_layout(void **state) {
    (void)state;
    check_layout(2 * VL + 3, 4);
    check_layout(5, 4);
    check_layout(VL / 2, 4);
    check_layout(VL / 4, 4);
    check_layout(VL / 2, 3);
}

#ifndef YOTO_DOUBLE
/* The fused losses (convs_bernoulli, convs_gaussian) against loss.c's, at
 * widths that are whole runs of positions (8, 16), a run and a rest (13, 28:
 * Fashion-MNIST's), and only a rest (5), in planes of a whole number of
 * vectors (16 rows): the gradient bit for bit, the
 * per-sample losses to float rounding (summed in another order); two groups,
 * the second part-filled, and its spare lanes left zero. */
static void check_fused_losses(int w) {
    /* 16 rows: a plane of whole vectors, where loss.c's Gaussian gradient
     * is all in float (the rest of a plane it computes in double) */
    const int c = 3, n = VL + 3, h = 16, hw = h * w;
    const size_t len = (size_t)c * n * hw;
    double coef[2 * VL], want_r[2 * VL], got_r[2 * VL];
    for (int i = 0; i < n; i++)
        coef[i] = 0.5 + 0.25 * i;
    /* Bernoulli: logits over [-8, 8], targets in [0, 1] */
    real *l = filled(len, 3), *x = filled(len, 4), *want = tu_nans(len), *got = tu_nans(len);
    for (size_t i = 0; i < len; i++)
        l[i] *= 8, x[i] = (real)0.5 * (x[i] + 1);
    const convs_shape s = convs_shape_make(c, n, n, h, w);
    real *ls = sm_alloc(&s), *xs = sm_alloc(&s);
    convs_from_chan(&s, l, ls, 0, s.groups);
    convs_from_chan(&s, x, xs, 0, s.groups);
    for (int g = 0; g < s.groups; g++)
        convs_bernoulli(&s, ls, &s, xs, coef, got_r, g);
    expect_clean("convs_bernoulli", &s, ls);
    convs_to_chan(&s, ls, got, 0, s.groups);
    loss_bernoulli(c, n, hw, l, x, want_r);
    loss_bernoulli_backward(c, n, hw, l, x, coef, want);
    for (size_t i = 0; i < len; i++)
        if (memcmp(&got[i], &want[i], sizeof(real)))
            fail_msg("convs_bernoulli w=%d: gradient %zu %.9g, loss.c %.9g", w, i, (double)got[i],
                     (double)want[i]);
    for (int i = 0; i < n; i++)
        if (!(fabs(got_r[i] - want_r[i]) <= 1e-6 * fabs(want_r[i])))
            fail_msg("convs_bernoulli w=%d: loss %d %.17g, loss.c %.17g", w, i, got_r[i],
                     want_r[i]);
    /* Gaussian: means and raw scales [2c][n][h][w] against targets [c] */
    real *o = filled(2 * len, 5), *wo = tu_nans(2 * len), *go = tu_nans(2 * len);
    for (size_t i = 0; i < 2 * len; i++)
        o[i] *= 4;
    const convs_shape so = convs_shape_make(2 * c, n, n, h, w);
    real *os = sm_alloc(&so);
    convs_from_chan(&so, o, os, 0, so.groups);
    for (int g = 0; g < so.groups; g++)
        convs_gaussian(&so, os, &s, xs, 1e-6, coef, got_r, g);
    expect_clean("convs_gaussian", &so, os);
    convs_to_chan(&so, os, go, 0, so.groups);
    loss_gaussian(c, n, hw, 1e-6, o, x, want_r);
    loss_gaussian_backward(c, n, hw, 1e-6, o, x, coef, wo);
    for (size_t i = 0; i < 2 * len; i++)
        if (memcmp(&go[i], &wo[i], sizeof(real)))
            fail_msg("convs_gaussian w=%d: gradient %zu %.9g, loss.c %.9g", w, i, (double)go[i],
                     (double)wo[i]);
    for (int i = 0; i < n; i++)
        if (!(fabs(got_r[i] - want_r[i]) <= 1e-6 * fabs(want_r[i])))
            fail_msg("convs_gaussian w=%d: loss %d %.17g, loss.c %.17g", w, i, got_r[i], want_r[i]);
    free(l), free(x), free(want), free(got), free(ls), free(xs);
    free(o), free(wo), free(go), free(os);
}
#endif

static void test_fused_losses(void **state) {
    (void)state;
#ifdef YOTO_DOUBLE
    skip(); /* float builds only: the double build's losses call libm */
#else
    const int widths[] = {5, 8, 13, 16, 28};
    for (size_t i = 0; i < sizeof widths / sizeof *widths; i++)
        check_fused_losses(widths[i]);
#endif
}

/* every conv and deconv of the Shapes3D model, at a batch of one group and
 * a half */
static void test_shapes3d_layers(void **state) {
    (void)state;
    /* emulated (tests/run.sh isa, YOTO_ISA=baseline) its 64 x 64 maps take a
     * minute, under ASan 12 s of CI's time: the other shapes reach every
     * kernel instance, and test_golden runs Shapes3D's model through the
     * tail in both */
#ifdef __SANITIZE_ADDRESS__
    skip();
#endif
    if (getenv("YOTO_ISA")) skip();
    const int n = VL + VL / 2;
    tu_shapes3d_conv_shapes(n, check_shape);
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
    /* channel counts past a tile of 4, rows past a tile of 12, 3 groups */
    check_shape(2 * VL + 1, 5, 5, 19, 7, 2);
    check_shape(1, 9, 3, 13, 6, 1);
    /* the kernel gradient's bands (rows of Y within 7/8 of an L1 of 32 to
     * 64 KiB, isa_l1d_bytes; a row of 3 positions here is 17 or 20 vectors
     * of 32 or 64 bytes: 22 to 105 rows a band): three or more at stride 1
     * (250 rows), three or more at stride 2 (200 rows), the last of each
     * part-filled at L1 sizes of 32, 48 and 64 KiB */
    check_shape(3, 2, 250, 3, 5, 1);
    check_shape(3, 2, 400, 5, 3, 2);
    /* stride 1 with 1 to 3 output channels: AVX-512's nine-tap kernel
     * gradient (kgrad9), whose bands hold 4 L1s of Y's rows: 3 channels of
     * 64 positions (12 KiB a row) give bands of 10, 16 and 21 rows at L1
     * sizes of 32, 48 and 64 KiB, so 25 rows end in a part-filled band */
    check_shape(3, 2, 25, 64, 3, 1);
    check_shape(VL + 3, 4, 6, 7, 2, 1);
    check_shape(2, 3, 5, 9, 1, 1);
}

/* a tensor of the layout filled in its positions (borders and spare lanes zero) */
static real *sm_filled(const convs_shape *s, unsigned seed) {
    const size_t len = (size_t)s->c * s->n * s->h * s->w;
    real *x = filled(len, seed), *xs = sm_alloc(s);
    convs_from_chan(s, x, xs, 0, s->groups);
    free(x);
    return xs;
}

static void expect_same(const char *what, const void *a, const void *b, size_t bytes, int stride) {
    if (memcmp(a, b, bytes))
        fail_msg("rows of %s at stride %d: not the bits of the whole", what, stride);
}

/* FiLM + leaky ReLU stages of cin (x) and cout (y) channels for n samples,
 * as the checks of rows and views use them */
typedef struct {
    convs_stage x, y;
    real *buf[4];
} stages2;

static stages2 stages2_make(int n, int cin, int cout) {
    stages2 s = {.buf = {scales((size_t)n * cin, 4), filled((size_t)n * cin, 5),
                         scales((size_t)n * cout, 6), filled((size_t)n * cout, 7)}};
    const film_stage fx = {.scale = s.buf[0], .shift = s.buf[1], .lrelu = true, .alpha = 0.3f},
                     fy = {.scale = s.buf[2], .shift = s.buf[3], .lrelu = true, .alpha = 0.3f};
    convs_stage_set(&s.x, &fx, cin, n, rvecs(convs_stage_len(cin, n)));
    convs_stage_set(&s.y, &fy, cout, n, rvecs(convs_stage_len(cout, n)));
    return s;
}

static void stages2_free(stages2 *s) {
    for (int i = 0; i < 4; i++)
        free(s->buf[i]);
    free(s->x.a), free(s->y.a);
}

/* The row-range entries (convs_a_rows, convs_b_rows, convs_c_rows,
 * convs_sum_rows, the losses' rows) in three uneven parts a group against
 * the whole-group calls: the same bits (the reconstruction losses, summed in
 * another order, to double rounding); A and B storing z and o, and through
 * the producer's stage (CONVS_DZ, over its z) */
static void check_rows(int n, int cin, int h, int cout, int stride) {
    conv_geom g = conv_geom_make(n, cin, h, h, cout, stride);
    g.threads = 1;
    const convs_shape xsh = convs_shape_make(cin, n, n, h, h),
                      ysh = convs_shape_make(cout, n, n, g.ho, g.wo);
    const int G = xsh.groups;
    real *k = filled((size_t)cin * cout * 9, 1), *bx = filled((size_t)cin, 2),
         *by = filled((size_t)cout, 3);
    stages2 sg = stages2_make(n, cin, cout);
    const convs_stage stx = sg.x, sty = sg.y;
    real *wb = tu_nans(convs_wbuf_len(&g));
    for (int pass = 0; pass < 4; pass++) { /* A: ZO, DZ; B: ZO, DZ */
        const bool isb = pass >= 2, dz = pass % 2;
        const convs_shape *ish = isb ? &ysh : &xsh, *osh = isb ? &xsh : &ysh;
        const convs_stage *st = isb ? &stx : &sty;
        const int c = osh->c, rows = osh->h;
        real *in = sm_filled(ish, 10), *z = sm_filled(osh, 11);
        real *out[2] = {sm_alloc(osh), sm_alloc(osh)}, *aux[2] = {sm_alloc(osh), sm_alloc(osh)};
        double *sv[2] = {calloc(convs_sums_len(c, n), sizeof(double)),
                         calloc(convs_sums_len(c, n), sizeof(double))};
        double *tv[2] = {calloc(convs_sums_len(c, n), sizeof(double)),
                         calloc(convs_sums_len(c, n), sizeof(double))};
        for (int way = 0; way < 2; way++) {
            if (dz) memcpy(aux[way], z, convs_len(osh) * sizeof(real));
            const convs_stores S = dz ? (convs_stores){CONVS_DZ, st, aux[way], sv[way], tv[way]}
                                      : (convs_stores){CONVS_ZO, st, aux[way], NULL, NULL};
            real *dst = dz ? aux[way] : out[way]; /* DZ: over z, as the chains store it */
            const real *b = isb ? bx : by;
            if (way == 0) {
                if (isb)
                    convs_b(&g, ish, in, k, b, osh, dst, &S, wb, 0, G);
                else
                    convs_a(&g, ish, in, k, b, osh, dst, &S, wb, 0, G);
                continue;
            }
            if (isb)
                convs_b_pack(&g, k, wb);
            else
                convs_a_pack(&g, k, wb);
            const int cut[4] = {0, YT_MIN(1, rows), rows / 2 + 1, rows};
            for (int gr = 0; gr < G; gr++)
                for (int q = 0; q < 3; q++) {
                    if (cut[q] >= cut[q + 1]) continue;
                    if (isb)
                        convs_b_rows(&g, ish, in, wb, b, osh, dst, &S, gr, cut[q], cut[q + 1]);
                    else
                        convs_a_rows(&g, ish, in, wb, b, osh, dst, &S, gr, cut[q], cut[q + 1]);
                }
        }
        const char *what[4] = {"A storing z and o", "A through a stage", "B storing z and o",
                               "B through a stage"};
        expect_same(what[pass], out[0], out[1], convs_len(osh) * sizeof(real), stride);
        expect_same(what[pass], aux[0], aux[1], convs_len(osh) * sizeof(real), stride);
        expect_same(what[pass], sv[0], sv[1], convs_sums_len(c, n) * sizeof(double), stride);
        expect_same(what[pass], tv[0], tv[1], convs_sums_len(c, n) * sizeof(double), stride);
        void *p[] = {in, z, out[0], out[1], aux[0], aux[1], sv[0], sv[1], tv[0], tv[1]};
        for (size_t i = 0; i < YT_ARRAY_LEN(p); i++)
            free(p[i]);
    }
    /* C and the bias sums over Y's rows */
    real *xs = sm_filled(&xsh, 20), *ys = sm_filled(&ysh, 21);
    const size_t nk = (size_t)cin * cout * 9;
    rvec *acc[2] = {rvecs(nk), rvecs(nk)};
    double sums[2][64] = {{0}};
    YT_CHECK(cout <= 64);
    convs_c(&g, &ysh, ys, &xsh, xs, acc[0], 0, G);
    convs_sum(&ysh, ys, sums[0], 0, G);
    const int cut[4] = {0, YT_MIN(1, g.ho), g.ho / 2 + 1, g.ho};
    for (int gr = 0; gr < G; gr++)
        for (int q = 0; q < 3; q++) {
            if (cut[q] >= cut[q + 1]) continue;
            convs_c_rows(&g, &ysh, ys, &xsh, xs, acc[1], gr, cut[q], cut[q + 1]);
            convs_sum_rows(&ysh, ys, sums[1], gr, cut[q], cut[q + 1]);
        }
    expect_same("C", acc[0], acc[1], nk * sizeof(rvec), stride);
    expect_same("the bias sums", sums[0], sums[1], sizeof sums[0], stride);
#ifndef YOTO_DOUBLE
    /* the Bernoulli loss over Y's rows (logits ys, targets xs' first channels
     * where the shapes agree: ys against itself here) */
    double coef[64], rec[2][64], racc[64];
    YT_CHECK(n <= 64);
    for (int i = 0; i < n; i++)
        coef[i] = 0.5 + 0.01 * i;
    real *ls[2] = {sm_filled(&ysh, 22), sm_filled(&ysh, 22)}, *ts = sm_filled(&ysh, 23);
    for (int gr = 0; gr < G; gr++) {
        convs_bernoulli(&ysh, ls[0], &ysh, ts, coef, rec[0], gr);
        for (int l = 0; l < VL; l++)
            racc[l] = 0;
        for (int q = 0; q < 3; q++)
            if (cut[q] < cut[q + 1])
                convs_bernoulli_rows(&ysh, ls[1], &ysh, ts, coef, racc, gr, cut[q], cut[q + 1]);
        for (int l = 0; l < YT_MIN(VL, n - gr * VL); l++)
            rec[1][gr * VL + l] = racc[l];
    }
    expect_same("the Bernoulli loss's gradient", ls[0], ls[1], convs_len(&ysh) * sizeof(real),
                stride);
    for (int i = 0; i < n; i++)
        if (!(fabs(rec[0][i] - rec[1][i]) <= 1e-12 * fabs(rec[0][i])))
            fail_msg("rows of the Bernoulli loss: sample %d %.17g against %.17g", i, rec[1][i],
                     rec[0][i]);
    free(ls[0]), free(ls[1]), free(ts);
#endif
    void *p[] = {xs, ys, acc[0], acc[1], k, bx, by, wb};
    for (size_t i = 0; i < YT_ARRAY_LEN(p); i++)
        free(p[i]);
    stages2_free(&sg);
}

/* every real of the other groups' planes (slot's excepted) is zero: a pass
 * through a view touched only its slot */
static void expect_slot_only(const char *what, const convs_shape *s, const real *xs, int slot) {
    for (int c = 0; c < s->c; c++)
        for (int g = 0; g < s->groups; g++) {
            if (g == slot) continue;
            const real *p = xs + (size_t)c * s->cp + (size_t)g * s->gp;
            for (size_t i = 0; i < s->gp; i++)
                if (p[i] != 0)
                    fail_msg("%s through a view of slot %d wrote group %d", what, slot, g);
        }
}

/* Each group through a view at one slot (convs_view: what the chains do
 * where nothing reads a group after its pass), copied in and out by
 * convs_from_chan and convs_to_chan, against the whole tensors: A storing z
 * and o, C, the bias sums, B through the producer's stage and its sums, the
 * Bernoulli loss (its targets in a whole tensor) give the same bits, and
 * only the slot's planes are written. */
static void check_view(int n, int cin, int h, int cout, int stride, int slot) {
    conv_geom g = conv_geom_make(n, cin, h, h, cout, stride);
    g.threads = 1;
    const convs_shape xsh = convs_shape_make(cin, n, n, h, h),
                      ysh = convs_shape_make(cout, n, n, g.ho, g.wo);
    const int G = xsh.groups;
    const size_t nx = (size_t)cin * n * h * h, ny = (size_t)cout * n * g.ho * g.wo,
                 nk = (size_t)cin * cout * 9;
    YT_CHECK(G >= 2 && slot < G && cout <= 64 && n <= 64);
    real *x = filled(nx, 1), *k = filled(nk, 2), *b = filled((size_t)cout, 3);
    stages2 sg = stages2_make(n, cin, cout);
    const convs_stage stx = sg.x, sty = sg.y;
    real *wb = tu_nans(convs_wbuf_len(&g)), *ts = sm_filled(&ysh, 8);
#ifndef YOTO_DOUBLE
    double coef[64];
    for (int i = 0; i < n; i++)
        coef[i] = 0.5 + 0.01 * i;
#endif
    /* way 0 whole, way 1 through views: z, o, dx through x's stage (over a
     * copy of x as its z), C, sums, the loss */
    real *pz[2], *po[2], *pd[2], *pl[2];
    rvec *acc[2];
    double *sv[2], *tv[2], bs[2][64] = {{0}}, rec[2][64] = {{0}};
    for (int way = 0; way < 2; way++) {
        real *X = sm_alloc(&xsh), *Z = sm_alloc(&ysh), *O = sm_alloc(&ysh), *D = sm_alloc(&xsh),
             *L = sm_alloc(&ysh);
        pz[way] = malloc(ny * sizeof(real)), po[way] = malloc(ny * sizeof(real));
        pd[way] = malloc(nx * sizeof(real)), pl[way] = malloc(ny * sizeof(real));
        acc[way] = rvecs(nk);
        sv[way] = calloc(convs_sums_len(cin, n), sizeof(double));
        tv[way] = calloc(convs_sums_len(cin, n), sizeof(double));
        const convs_stores zo = {CONVS_ZO, &sty, O, NULL, NULL},
                           dz = {CONVS_DZ, &stx, D, sv[way], tv[way]};
        for (int gr = 0; gr < G; gr++) {
            const int ga = way ? gr : 0, gb = way ? gr + 1 : G;
            if (!way && gr) break;
            const convs_shape xv = way ? convs_view(&xsh, gr, slot) : xsh,
                              yv = way ? convs_view(&ysh, gr, slot) : ysh;
            convs_from_chan(&xv, x, X, ga, gb);
            convs_from_chan(&xv, x, D, ga, gb); /* x's z, overwritten by dx */
            convs_a(&g, &xv, X, k, b, &yv, Z, &zo, wb, ga, gb);
            convs_to_chan(&yv, Z, pz[way], ga, gb);
            convs_to_chan(&yv, O, po[way], ga, gb);
            convs_c(&g, &yv, O, &xv, X, acc[way], ga, gb);
            convs_sum(&yv, O, bs[way], ga, gb);
            convs_b(&g, &yv, O, k, NULL, &xv, D, &dz, wb, ga, gb);
            convs_to_chan(&xv, D, pd[way], ga, gb);
#ifndef YOTO_DOUBLE
            for (int q = ga; q < gb; q++) {
                double a[VL] = {0};
                convs_from_chan(&yv, po[way], L, q, q + 1);
                convs_bernoulli_rows(&yv, L, &ysh, ts, coef, a, q, 0, ysh.h);
                for (int l = 0; l < YT_MIN(VL, n - q * VL); l++)
                    rec[way][q * VL + l] = a[l];
            }
            convs_to_chan(&yv, L, pl[way], ga, gb);
#else
            memset(pl[way], 0, ny * sizeof(real));
#endif
        }
        if (way) {
            expect_slot_only("A's z", &ysh, Z, slot);
            expect_slot_only("A's o", &ysh, O, slot);
            expect_slot_only("B's dz", &xsh, D, slot);
        }
        void *p[] = {X, Z, O, D, L};
        for (size_t i = 0; i < YT_ARRAY_LEN(p); i++)
            free(p[i]);
    }
    const struct {
        const char *what;
        const void *a, *b;
        size_t bytes;
    } cmp[] = {{"A's z", pz[0], pz[1], ny * sizeof(real)},
               {"A's o", po[0], po[1], ny * sizeof(real)},
               {"C", acc[0], acc[1], nk * sizeof(rvec)},
               {"the bias sums", bs[0], bs[1], sizeof bs[0]},
               {"B through a stage", pd[0], pd[1], nx * sizeof(real)},
               {"its sums", sv[0], sv[1], convs_sums_len(cin, n) * sizeof(double)},
               {"its shift sums", tv[0], tv[1], convs_sums_len(cin, n) * sizeof(double)},
               {"the Bernoulli loss's gradient", pl[0], pl[1], ny * sizeof(real)},
               {"the Bernoulli loss", rec[0], rec[1], sizeof rec[0]}};
    for (size_t i = 0; i < YT_ARRAY_LEN(cmp); i++)
        if (memcmp(cmp[i].a, cmp[i].b, cmp[i].bytes))
            fail_msg("%s through views at slot %d (n=%d cin=%d h=%d cout=%d stride=%d): not the "
                     "whole tensor's bits",
                     cmp[i].what, slot, n, cin, h, cout, stride);
    void *p[] = {x,     k,     b,     wb,     ts,     pz[0], pz[1], po[0], po[1], pd[0],
                 pd[1], pl[0], pl[1], acc[0], acc[1], sv[0], sv[1], tv[0], tv[1]};
    for (size_t i = 0; i < YT_ARRAY_LEN(p); i++)
        free(p[i]);
    stages2_free(&sg);
}

static void test_view(void **state) {
    (void)state;
    check_view(2 * VL + 3, 3, 9, 5, 2, 0); /* three groups, the last part-filled */
    check_view(2 * VL + 3, 3, 9, 5, 2, 2); /* a slot past the groups before it */
    check_view(VL + 1, 6, 10, 4, 1, 1);
}

static void test_rows(void **state) {
    (void)state;
    check_rows(VL + 3, 3, 9, 5, 2); /* two groups, odd rows, a channel block and a rest */
    check_rows(VL, 6, 10, 3, 1);    /* stride 1: kgrad9 where it runs */
    check_rows(2, 8, 16, 16, 2);    /* Shapes3D's dec/block1 shape, one part-filled group */
    check_rows(VL + 1, 2, 4, 9, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_fused_losses),
        cmocka_unit_test(test_shapes3d_layers),
        cmocka_unit_test(test_cifar10_fmnist_layers),
        cmocka_unit_test(test_odd_shapes),
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_view),
    };
    return TU_RUN("convs", tests);
}
