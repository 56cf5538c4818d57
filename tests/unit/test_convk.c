/* test_convk.c — the direct convolution kernels and, at stride 1, Winograd
 * F(2x2, 3x3) (convk.h) against the im2col + GEMM route, all through the
 * public layers.h functions: forward, input gradient, kernel and bias
 * gradients of conv and transposed conv, the fused FiLM + leaky ReLU stage
 * against the unfused calls, the direct route's staged input (conv_geom.xstage)
 * against the stage's output, on every layer shape of both reference models
 * and on odd, tiny and non-square ones (both paddings of stride 2, chunks
 * and sample groups that do not divide the batch, channel counts that leave
 * partial register blocks). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/convk.h" /* internal header: convk_chunk, to test batches of several chunks */
#include "layers.h"
#include "testutil.h"

#define TOL (TEST_DOUBLE ? 1e-12 : 2e-6)
#ifdef __SANITIZE_ADDRESS__
#define SANITIZED 1
#else
#define SANITIZED 0
#endif
/* Winograd F(2x2, 3x3) rounds more: its transforms scale values by up to 4
 * (B^T d B sums four inputs, A^T m A nine products) before the products are
 * summed, so its float error is a few times the direct kernels' (largest
 * seen on these shapes: 2.4e-6 of the largest value, in a kernel gradient
 * summed over 12288 positions) */
#define TOL_WINO (TEST_DOUBLE ? 1e-12 : 1e-5)

static double worst_wino; /* the largest Winograd error seen */

static void expect_close(const char *what, const conv_geom *g, bool deconv, const real *got,
                         const real *want, size_t n) {
    double e = tu_max_norm_err_real(got, want, n); /* NaN-safe */
    /* kernel and bias gradients sum over every position of the batch: float
     * rounding grows like the square root of their count, so batches beyond
     * 16384 positions (the chunk tests) get that much more room */
    double terms = (double)g->n * g->h * g->w;
    double tol = (g->route == CONV_WINOGRAD ? TOL_WINO : TOL) * sqrt(fmax(1.0, terms / 16384));
    if (!(e <= tol))
        fail_msg("%s %s n=%d cin=%d %dx%d cout=%d stride=%d route %d: error %.3g > %.3g",
                 deconv ? "deconv" : "conv", what, g->n, g->cin, g->h, g->w, g->cout, g->stride,
                 g->route, e, tol);
    if (g->route == CONV_WINOGRAD && e > worst_wino) worst_wino = e;
}

/* What one route computes from the same inputs. */
typedef struct {
    real *y, *dx, *dk, *db;     /* conv: forward, input, kernel and bias gradients */
    real *dk_nodx, *db_nodx;    /* conv backward without dx (a first layer) */
    real *xd, *dyd, *dkd, *dbd; /* deconv: forward, input, kernel, bias gradients */
} results;

typedef struct {
    size_t nx, ny, nk;
    real *x, *k, *bo, *bi, *dy, *dxs;
} inputs;

static results run_route(const conv_geom *g, const inputs *in) {
    const size_t nx = in->nx, ny = in->ny, nk = in->nk;
    const int cin = g->cin, cout = g->cout;
    results r = {
        .y = calloc(ny, sizeof(real)),
        .dx = malloc(nx * sizeof(real)),
        .dk = malloc(nk * sizeof(real)),
        .db = malloc((size_t)cout * sizeof(real)),
        .dk_nodx = malloc(nk * sizeof(real)),
        .db_nodx = malloc((size_t)cout * sizeof(real)),
        .xd = malloc(nx * sizeof(real)),
        .dyd = malloc(ny * sizeof(real)),
        .dkd = malloc(nk * sizeof(real)),
        .dbd = malloc((size_t)cin * sizeof(real)),
    };
    size_t work_n = conv_work_size(g);
    real *work = malloc(work_n * sizeof *work);
    /* the workspace and the overwritten outputs may hold anything: NaN shows
     * any read of what a kernel did not write */
    for (size_t i = 0; i < work_n; i++)
        work[i] = (real)NAN;
    for (size_t i = 0; i < nx; i++)
        r.dx[i] = r.xd[i] = (real)NAN;
    for (size_t i = 0; i < ny; i++)
        r.y[i] = r.dyd[i] = (real)NAN;
    /* parameter gradients accumulate: start from non-zero values */
    tu_fill(r.dk, nk, 7);
    tu_fill(r.db, (size_t)cout, 8);
    tu_fill(r.dk_nodx, nk, 7);
    tu_fill(r.db_nodx, (size_t)cout, 8);
    tu_fill(r.dkd, nk, 9);
    tu_fill(r.dbd, (size_t)cin, 10);
    conv_forward(g, in->x, in->k, in->bo, r.y, work);
    conv_backward(g, in->x, in->k, in->dy, r.dx, r.dk, r.db, work);
    conv_backward(g, in->x, in->k, in->dy, NULL, r.dk_nodx, r.db_nodx, work);
    /* deconv: its input lives on g's Y side, its output on the X side */
    deconv_forward(g, in->dy, in->k, in->bi, r.xd, work);
    deconv_backward(g, in->dy, in->k, in->dxs, r.dyd, r.dkd, r.dbd, work);
    free(work);
    return r;
}

static void results_free(results *r) {
    real *p[] = {r->y, r->dx, r->dk, r->db, r->dk_nodx, r->db_nodx, r->xd, r->dyd, r->dkd, r->dbd};
    for (size_t i = 0; i < YT_ARRAY_LEN(p); i++)
        free(p[i]);
}

/* The fused block stage (*_film_*) on route g against the unfused calls on
 * the GEMM route: outputs z and o, and every gradient. */
static void check_stage(const conv_geom *g, bool deconv, bool lrelu) {
    conv_geom gg = *g;
    conv_geom_route(&gg, CONV_GEMM);
    const int cin = g->cin, cout = g->cout, n = g->n;
    const size_t nx = (size_t)cin * n * g->h * g->w, ny = (size_t)cout * n * g->ho * g->wo;
    const size_t nk = (size_t)cout * cin * 9;
    /* the stage lives on the layer's output side */
    const int c = deconv ? cin : cout;
    const size_t nin = deconv ? ny : nx, nout = deconv ? nx : ny;
    real *x = malloc(nin * sizeof(real)), *k = malloc(nk * sizeof(real)),
         *b = malloc((size_t)c * sizeof(real));
    real *sc = malloc((size_t)n * c * sizeof(real)), *sh = malloc((size_t)n * c * sizeof(real));
    real *dout = malloc(nout * sizeof(real));
    tu_fill(x, nin, 11);
    tu_fill(k, nk, 12);
    tu_fill(b, (size_t)c, 13);
    tu_fill(sh, (size_t)n * c, 14);
    tu_fill(dout, nout, 15);
    for (int i = 0; i < n * c; i++)
        sc[i] = 1 + (real)0.25 * sh[(i * 7) % (n * c)];
    const film_stage st = {.scale = sc, .shift = sh, .lrelu = lrelu, .alpha = (real)0.3};
    real *out[2][9];
    for (int r = 0; r < 2; r++) {
        const conv_geom *gr = r ? g : &gg;
        size_t work_n = conv_work_size(gr);
        real *work = malloc(work_n * sizeof *work);
        for (size_t i = 0; i < work_n; i++)
            work[i] = (real)NAN;
        real *z = malloc(nout * sizeof(real)), *o = malloc(nout * sizeof(real));
        real *dx = malloc(nin * sizeof(real)), *d = malloc(nout * sizeof(real));
        real *dk = calloc(nk, sizeof(real)), *db = calloc((size_t)c, sizeof(real));
        real *ds = malloc((size_t)n * c * sizeof(real)), *dt = malloc((size_t)n * c * sizeof(real));
        memcpy(d, dout, nout * sizeof *d);
        if (r == 0) { /* unfused */
            if (deconv)
                deconv_forward(gr, x, k, b, z, work);
            else
                conv_forward(gr, x, k, b, z, work);
            if (lrelu) {
                film_lrelu_forward(c, n, (int)(nout / ((size_t)c * n)), st.alpha, z, sc, sh, o);
                film_lrelu_backward(c, n, (int)(nout / ((size_t)c * n)), st.alpha, z, sc, sh, d, d,
                                    ds, dt);
            } else {
                film_forward(c, n, (int)(nout / ((size_t)c * n)), z, sc, sh, o);
                film_backward(c, n, (int)(nout / ((size_t)c * n)), z, sc, d, d, ds, dt);
            }
            if (deconv)
                deconv_backward(gr, x, k, d, dx, dk, db, work);
            else
                conv_backward(gr, x, k, d, dx, dk, db, work);
        } else {
            if (deconv)
                deconv_film_forward(gr, x, k, b, &st, z, o, work);
            else
                conv_film_forward(gr, x, k, b, &st, z, o, work);
            if (deconv)
                deconv_film_backward(gr, x, k, &st, z, d, dx, dk, db, ds, dt, work);
            else
                conv_film_backward(gr, x, k, &st, z, d, dx, dk, db, ds, dt, work);
        }
        real *res[] = {z, o, dx, dk, db, ds, dt, d, work};
        for (int j = 0; j < 9; j++)
            out[r][j] = res[j];
    }
    const char *names[] = {"stage z",  "stage o",      "stage dx",    "stage dk",
                           "stage db", "stage dscale", "stage dshift"};
    const size_t sizes[] = {nout, nout, nin, nk, (size_t)c, (size_t)n * c, (size_t)n * c};
    for (int j = 0; j < 7; j++)
        expect_close(names[j], g, deconv, out[1][j], out[0][j], sizes[j]);
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 9; j++)
            free(out[r][j]);
    free(x);
    free(k);
    free(b);
    free(sc);
    free(sh);
    free(dout);
}

/* conv_geom.xstage on the direct route: a layer given z and the stage of the
 * block before computes, bit for bit, what it computes given that stage's
 * output o (film_lrelu_forward / film_forward): z and o of its own fused
 * stage, and every gradient, conv and deconv (each packing pass then applies
 * one stage to the values and the other's gradient to the incoming one). */
static void check_xstage(const conv_geom *g, const inputs *in) {
    const int n = g->n;
    const size_t nk = in->nk;
    for (int deconv = 0; deconv < 2; deconv++)
        for (int lrelu = 0; lrelu < 2; lrelu++) {
            const int ci = deconv ? g->cout : g->cin, co = deconv ? g->cin : g->cout;
            const size_t nin = deconv ? in->ny : in->nx, nout = deconv ? in->nx : in->ny;
            const int hw = (int)(nin / ((size_t)ci * n));
            const real *z = deconv ? in->dy : in->x;
            real *sc = malloc((size_t)n * ci * sizeof(real)),
                 *sh = malloc((size_t)n * ci * sizeof(real));
            real *osc = malloc((size_t)n * co * sizeof(real)),
                 *osh = malloc((size_t)n * co * sizeof(real));
            tu_fill(sh, (size_t)n * ci, 21);
            tu_fill(osh, (size_t)n * co, 22);
            for (int i = 0; i < n * ci; i++)
                sc[i] = 1 + (real)0.5 * sh[(i * 5) % (n * ci)];
            for (int i = 0; i < n * co; i++)
                osc[i] = 1 + (real)0.25 * osh[(i * 3) % (n * co)];
            const film_stage xs = {.scale = sc, .shift = sh, .lrelu = lrelu, .alpha = (real)0.3};
            const film_stage os = {.scale = osc, .shift = osh, .lrelu = true, .alpha = (real)0.3};
            real *o = malloc(nin * sizeof(real));
            if (lrelu)
                film_lrelu_forward(ci, n, hw, xs.alpha, z, sc, sh, o);
            else
                film_forward(ci, n, hw, z, sc, sh, o);
            real *out[2][7];
            size_t sizes[7] = {nout, nout, nin, nk, (size_t)co, (size_t)n * co, (size_t)n * co};
            for (int r = 0; r < 2; r++) {
                conv_geom gr = *g;
                gr.xstage = r ? &xs : NULL;
                const real *x = r ? z : o;
                size_t work_n = conv_work_size(&gr);
                real *work = malloc(work_n * sizeof *work);
                for (size_t i = 0; i < work_n; i++)
                    work[i] = (real)NAN;
                for (int j = 0; j < 7; j++)
                    out[r][j] = calloc(sizes[j], sizeof(real));
                real *zz = out[r][0], *oo = out[r][1], *dx = out[r][2], *dk = out[r][3],
                     *db = out[r][4], *ds = out[r][5], *dt = out[r][6];
                real *d = malloc(nout * sizeof(real));
                tu_fill(d, nout, 23);
                if (deconv) {
                    deconv_film_forward(&gr, x, in->k, in->bi, &os, zz, oo, work);
                    deconv_film_backward(&gr, x, in->k, &os, zz, d, dx, dk, db, ds, dt, work);
                } else {
                    conv_film_forward(&gr, x, in->k, in->bo, &os, zz, oo, work);
                    conv_film_backward(&gr, x, in->k, &os, zz, d, dx, dk, db, ds, dt, work);
                }
                free(d);
                free(work);
            }
            const char *names[] = {"z", "o", "dx", "dk", "db", "dscale", "dshift"};
            for (int j = 0; j < 7; j++) {
                if (memcmp(out[0][j], out[1][j], sizes[j] * sizeof(real)) != 0)
                    fail_msg("xstage %s %s (lrelu %d) n=%d cin=%d %dx%d cout=%d stride=%d: "
                             "not the same bits as on o (error %.3g)",
                             deconv ? "deconv" : "conv", names[j], lrelu, n, g->cin, g->h, g->w,
                             g->cout, g->stride,
                             tu_max_norm_err_real(out[1][j], out[0][j], sizes[j]));
                free(out[0][j]);
                free(out[1][j]);
            }
            free(o);
            free(sc);
            free(sh);
            free(osc);
            free(osh);
        }
}

/* Runs all four functions on the GEMM route and on `route` and compares them. */
static void check_route(int n, int cin, int h, int w, int cout, int stride, int route) {
    conv_geom gg = conv_geom_make(n, cin, h, w, cout, stride), gd = gg;
    conv_geom_route(&gg, CONV_GEMM);
    assert_true(conv_geom_route(&gd, route));
    inputs in = {
        .nx = (size_t)cin * n * h * w,
        .ny = (size_t)cout * n * gg.ho * gg.wo,
        .nk = (size_t)cout * cin * 9,
    };
    in.x = malloc(in.nx * sizeof(real));
    in.dxs = malloc(in.nx * sizeof(real));
    in.dy = malloc(in.ny * sizeof(real));
    in.k = malloc(in.nk * sizeof(real));
    in.bo = malloc((size_t)cout * sizeof(real));
    in.bi = malloc((size_t)cin * sizeof(real));
    tu_fill(in.x, in.nx, 1);
    tu_fill(in.k, in.nk, 2);
    tu_fill(in.bo, (size_t)cout, 3);
    tu_fill(in.bi, (size_t)cin, 4);
    tu_fill(in.dy, in.ny, 5);
    tu_fill(in.dxs, in.nx, 6);
    /* Shapes past a few thousand values, emulated (YOTO_ISA=baseline:
     * tests/run.sh isa): the fused stages once each (the route's, with the
     * leaky ReLU), and, emulated or under ASan, no staged input; the small
     * shapes take every path of that code, the rest cost 20 s of qemu */
    const bool big = in.nx + in.ny > 8000, emulated = getenv("YOTO_ISA") != NULL;
    for (int deconv = 0; deconv < 2; deconv++)
        for (int lrelu = 0; lrelu < 2; lrelu++) {
            if (big && emulated && !lrelu) continue;
            check_stage(&gd, deconv, lrelu);
            if (!(big && emulated)) check_stage(&gg, deconv, lrelu);
        }
    if (route == CONV_DIRECT && !(big && (emulated || SANITIZED))) check_xstage(&gd, &in);
    results a = run_route(&gg, &in), b = run_route(&gd, &in);
    expect_close("forward", &gd, false, b.y, a.y, in.ny);
    expect_close("dx", &gd, false, b.dx, a.dx, in.nx);
    expect_close("dk", &gd, false, b.dk, a.dk, in.nk);
    expect_close("db", &gd, false, b.db, a.db, (size_t)cout);
    expect_close("dk without dx", &gd, false, b.dk_nodx, a.dk_nodx, in.nk);
    expect_close("db without dx", &gd, false, b.db_nodx, a.db_nodx, (size_t)cout);
    expect_close("forward", &gd, true, b.xd, a.xd, in.nx);
    expect_close("dx", &gd, true, b.dyd, a.dyd, in.ny);
    expect_close("dk", &gd, true, b.dkd, a.dkd, in.nk);
    expect_close("db", &gd, true, b.dbd, a.dbd, (size_t)cin);
    results_free(&a);
    results_free(&b);
    free(in.x);
    free(in.dxs);
    free(in.dy);
    free(in.k);
    free(in.bo);
    free(in.bi);
}

/* the direct kernels, and at stride 1 Winograd, against the GEMM route */
static void check_shape(int n, int cin, int h, int w, int cout, int stride) {
    check_route(n, cin, h, w, cout, stride, CONV_DIRECT);
    if (stride == 1) check_route(n, cin, h, w, cout, stride, CONV_WINOGRAD);
}

/* every conv and deconv of the Shapes3D model, at a small batch */
static void test_shapes3d_layers(void **state) {
    (void)state;
    check_shape(3, 3, 64, 64, 8, 2); /* encoder block0 */
    check_shape(3, 8, 32, 32, 16, 2);
    check_shape(3, 16, 16, 16, 32, 2);
    check_shape(3, 32, 8, 8, 64, 2);
    check_shape(3, 64, 8, 8, 64, 2); /* decoder block3 (as the adjoint conv) */
    check_shape(3, 32, 16, 16, 64, 2);
    check_shape(3, 16, 32, 32, 32, 2);
    check_shape(3, 8, 64, 64, 16, 2);
    check_shape(3, 8, 64, 64, 3, 1); /* decoder out conv */
}

/* every conv and deconv of the CIFAR-10 model (conv geometries: a deconv as
 * the adjoint conv), at a small batch */
static void test_cifar10_layers(void **state) {
    (void)state;
    check_shape(3, 3, 32, 32, 16, 2); /* encoder block0 conv0 */
    check_shape(3, 16, 16, 16, 16, 1);
    check_shape(3, 16, 16, 16, 32, 2);
    check_shape(3, 32, 8, 8, 32, 1);
    check_shape(3, 32, 8, 8, 64, 2);
    check_shape(3, 64, 4, 4, 64, 1); /* encoder block2 conv1, decoder block2 deconv0 */
    check_shape(3, 64, 8, 8, 64, 2); /* decoder block2 deconv1 */
    check_shape(3, 32, 8, 8, 64, 1);
    check_shape(3, 32, 16, 16, 32, 2);
    check_shape(3, 16, 16, 16, 32, 1);
    check_shape(3, 16, 32, 32, 16, 2);
    check_shape(3, 16, 32, 32, 6, 1); /* decoder out conv */
}

static void test_odd_shapes(void **state) {
    (void)state;
    tu_odd_conv_shapes(check_shape);
    /* the GEMM route's stride-2 im2col and col2im on whole vectors of 8 and
     * 16 outputs and a rest (10 and 19 wide); the kernels' rows as above */
    check_shape(2, 3, 5, 19, 5, 2);
    check_shape(1, 2, 3, 37, 3, 2);
    /* even sizes at stride 2 (SAME pads nothing before), where im2col and
     * col2im skip the padded planes: 1, 5, 12 and 17 outputs a row (scalars
     * only; whole and half vectors with and without a rest, in every build) */
    check_shape(2, 3, 2, 2, 5, 2);
    check_shape(2, 3, 6, 10, 5, 2);
    check_shape(2, 2, 8, 24, 3, 2);
    check_shape(1, 2, 4, 34, 3, 2);
}

/* batches larger than one chunk, with a partial last chunk: two full chunks
 * and part of a third, the chunk as convk.c sizes it for the geometry */
static void check_chunked(int cin, int h, int w, int cout, int stride) {
    conv_geom probe = conv_geom_make(1 << 16, cin, h, w, cout, stride);
    int c = convk_chunk(&probe);
    if (c > 512) fail_msg("chunk %d for %d x %dx%d: the test would be slow; adjust", c, cin, h, w);
    int n = 2 * c + c / 2 + 1;
    printf("# chunked: %d x %dx%d -> %d, stride %d: batch %d in chunks of %d\n", cin, h, w, cout,
           stride, n, c);
    check_shape(n, cin, h, w, cout, stride);
}

static void test_chunks(void **state) {
    (void)state;
    /* emulated (tests/run.sh isa, YOTO_ISA=baseline): the chunk loop is the
     * same C in both copies and runs natively in every build; the baseline
     * kernels are checked by the tests above. ~15 s of qemu saved in CI */
    if (getenv("YOTO_ISA")) skip();
    check_chunked(4, 16, 16, 2, 2);
    check_chunked(3, 16, 16, 2, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes3d_layers),
        cmocka_unit_test(test_cifar10_layers),
        cmocka_unit_test(test_odd_shapes),
        cmocka_unit_test(test_chunks),
    };
    int rc = TU_RUN("convk", tests);
    printf("# largest Winograd error (relative to the largest value): %.3g\n", worst_wino);
    return rc;
}
