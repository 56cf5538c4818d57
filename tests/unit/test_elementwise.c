/* test_elementwise.c — the vectorised element-wise layers and the Bernoulli
 * loss against double-precision formulas: leaky ReLU (any slope, in place,
 * bit-exact), FiLM and the fused FiLM + leaky ReLU forward and backward (also
 * against the unfused composition), the Bernoulli NLL and its gradient over
 * logits from -120 to 120. Plane sizes cover the vector tails and more than
 * one summation stretch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/simd.h" /* internal header: the vector exp/log1p are tested directly */
#include "layers.h"
#include "loss.h"
#include "testutil.h"

/* relative tolerance of a short chain of rounded operations and of sums of
 * up to a few thousand terms; below TINY, results may underflow to zero */
#define EPS (TEST_DOUBLE ? 1e-12 : 2e-6)
#define TINY (TEST_DOUBLE ? 1e-300 : 1e-37)

static unsigned lcg_state = 12345;
static double uniform(void) {
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return (double)(lcg_state >> 8) / (double)(1u << 24);
}

/* values in [-2, 2] with exact zeros and tiny values sprinkled in */
static void fill(real *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double u = uniform();
        p[i] = i % 11 == 3 ? 0 : i % 13 == 5 ? (real)1e-30 : (real)(4 * u - 2);
    }
}

static const int plane_sizes[] = {1, 3, 7, 8, 9, 16, 63, 64, 300, 1031};

static void test_lrelu(void **state) {
    (void)state;
    const real alphas[] = {(real)0.3, (real)0.2, (real)1.7, 0};
    for (size_t a = 0; a < YT_ARRAY_LEN(alphas); a++)
        for (size_t s = 0; s < YT_ARRAY_LEN(plane_sizes); s++) {
            size_t n = (size_t)plane_sizes[s];
            real al = alphas[a];
            real *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *d = malloc(n * sizeof *d);
            fill(x, n);
            fill(d, n);
            lrelu_forward(n, al, x, y);
            for (size_t i = 0; i < n; i++)
                assert_true(y[i] == (x[i] > 0 ? x[i] : al * x[i]));
            memcpy(y, x, n * sizeof *y); /* in place */
            lrelu_forward(n, al, y, y);
            for (size_t i = 0; i < n; i++)
                assert_true(y[i] == (x[i] > 0 ? x[i] : al * x[i]));
            memcpy(y, d, n * sizeof *y);
            lrelu_backward(n, al, x, y, y);
            for (size_t i = 0; i < n; i++)
                assert_true(y[i] == (x[i] > 0 ? d[i] : al * d[i]));
            free(x);
            free(y);
            free(d);
        }
}

static void check_close(const char *what, int hw, double got, double want, double scale) {
    if (!(fabs(got - want) <= EPS * scale + TINY))
        fail_msg("%s, plane size %d: %.17g vs %.17g (scale %.3g)", what, hw, got, want, scale);
}

static void test_film(void **state) {
    (void)state;
    const int c = 3, n = 2;
    const real alpha = (real)0.3;
    for (size_t s = 0; s < YT_ARRAY_LEN(plane_sizes); s++) {
        const int hw = plane_sizes[s];
        const size_t sz = (size_t)c * n * hw;
        real *x = malloc(sz * sizeof *x), *dy = malloc(sz * sizeof *dy);
        real *f = malloc(sz * sizeof *f), *o = malloc(sz * sizeof *o),
             *f2 = malloc(sz * sizeof *f2);
        real *dx = malloc(sz * sizeof *dx), *dx2 = malloc(sz * sizeof *dx2);
        real sc[6], sh[6], ds[6], dt[6], ds2[6], dt2[6];
        fill(x, sz);
        fill(dy, sz);
        fill(sc, 6);
        fill(sh, 6);
        film_lrelu_forward(c, n, hw, alpha, x, sc, sh, f, o);
        film_forward(c, n, hw, x, sc, sh, f2);
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < n; i++)
                for (int p = 0; p < hw; p++) {
                    size_t k = ((size_t)ch * n + i) * hw + p;
                    double a = sc[i * c + ch], t = sh[i * c + ch];
                    double want = a * x[k] + t, scale = fabs(a * x[k]) + fabs(t);
                    check_close("film_lrelu_forward f", hw, f[k], want, scale);
                    check_close("film_forward", hw, f2[k], want, scale);
                    assert_true(o[k] == (f[k] > 0 ? f[k] : alpha * f[k]));
                }
        /* backward: fused vs lrelu_backward then film_backward, and vs double */
        film_lrelu_backward(c, n, hw, alpha, x, f, sc, dy, dx, ds, dt);
        lrelu_backward(sz, alpha, f, dy, dx2);
        film_backward(c, n, hw, x, sc, dx2, dx2, ds2, dt2);
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < n; i++) {
                double s_ref = 0, t_ref = 0, s_abs = 0, t_abs = 0;
                for (int p = 0; p < hw; p++) {
                    size_t k = ((size_t)ch * n + i) * hw + p;
                    double g = f[k] > 0 ? dy[k] : (double)alpha * dy[k];
                    s_ref += g * x[k];
                    t_ref += g;
                    s_abs += fabs(g * x[k]);
                    t_abs += fabs(g);
                    double want = sc[i * c + ch] * g;
                    check_close("film_lrelu_backward dx", hw, dx[k], want, fabs(want));
                    check_close("film_backward dx", hw, dx2[k], want, fabs(want));
                }
                int j = i * c + ch;
                check_close("film_lrelu_backward dscale", hw, ds[j], s_ref, s_abs);
                check_close("film_lrelu_backward dshift", hw, dt[j], t_ref, t_abs);
                check_close("film_backward dscale", hw, ds2[j], s_ref, s_abs);
                check_close("film_backward dshift", hw, dt2[j], t_ref, t_abs);
            }
        /* without dx */
        film_lrelu_backward(c, n, hw, alpha, x, f, sc, dy, NULL, ds2, dt2);
        for (int j = 0; j < c * n; j++)
            assert_true(ds2[j] == ds[j] && dt2[j] == dt[j]);
        free(x);
        free(dy);
        free(f);
        free(o);
        free(f2);
        free(dx);
        free(dx2);
    }
}

/* Bernoulli NLL and gradient: one logit value per sample, repeated over its
 * planes, so each per-sample sum checks one element's accuracy. */
static void test_bernoulli(void **state) {
    (void)state;
    const double logits[] = {0,      1e-8, -1e-8, 0.5,  -0.5,  1,    -1,      3,
                             -3,     10,   -10,   17.3, -17.3, 30,   -30,     60,
                             -60,    87.5, -87.5, 88.7, -88.7, 95,   -95,     103.9,
                             -103.9, 120,  -120,  2.25, -7.75, 40.5, -0.03125};
    const int n = (int)YT_ARRAY_LEN(logits), c = 3;
    for (size_t s = 0; s < YT_ARRAY_LEN(plane_sizes); s++) {
        const int hw = plane_sizes[s];
        const size_t sz = (size_t)c * n * hw;
        real *l = malloc(sz * sizeof *l), *t = malloc(sz * sizeof *t),
             *dl = malloc(sz * sizeof *dl);
        double *recon = malloc((size_t)n * sizeof *recon), *coef = malloc((size_t)n * sizeof *coef);
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < n; i++)
                for (int p = 0; p < hw; p++) {
                    size_t k = ((size_t)ch * n + i) * hw + p;
                    l[k] = (real)logits[i];
                    t[k] = (real)(ch == 0 ? 0 : ch == 1 ? 1 : 0.375); /* targets in [0, 1] */
                }
        for (int i = 0; i < n; i++)
            coef[i] = 0.5 + i;
        loss_bernoulli(c, n, hw, l, t, recon);
        loss_bernoulli_backward(c, n, hw, l, t, coef, dl);
        for (int i = 0; i < n; i++) {
            double want = 0, scale = 0;
            for (int ch = 0; ch < c; ch++) {
                double x = (real)logits[i], tg = ch == 0 ? 0 : ch == 1 ? 1 : 0.375;
                /* softplus(x) - t x, in double */
                double sp = x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
                want += hw * (sp - tg * x);
                scale += hw * (sp + fabs(tg * x));
                double sig = 1 / (1 + exp(-x));
                for (int p = 0; p < hw; p++) {
                    size_t k = ((size_t)ch * n + i) * hw + p;
                    check_close("loss_bernoulli_backward", hw, dl[k], coef[i] * (sig - tg),
                                coef[i]);
                }
            }
            char what[64];
            snprintf(what, sizeof what, "loss_bernoulli at logit %g", logits[i]);
            check_close(what, hw, recon[i], want, scale);
        }
        free(l);
        free(t);
        free(dl);
        free(recon);
        free(coef);
    }
}

#ifndef YOTO_DOUBLE
/* The float build's vector e^x (x <= 0) and log(1 + e) (e in [0, 1]) against
 * libm in double, within 4 ulp, on a dense sweep and the edges. */
static void test_vector_math(void **state) {
    (void)state;
    double worst_exp = 0, worst_log = 0;
    for (int k = 0; k <= 200000; k += VL) {
        rvec x, e;
        for (int j = 0; j < VL; j++) {
            x[j] = (real)(-87.0 * (k + j) / 200000.0); /* [-87, 0] */
            e[j] = (real)((k + j) / 200000.0);         /* [0, 1] */
        }
        rvec ex = vexp_nonpos(x), lg = vlog1p_unit(e);
        for (int j = 0; j < VL; j++) {
            double we = exp((double)x[j]), wl = log1p((double)e[j]);
            worst_exp = tu_nanmax(worst_exp, fabs(ex[j] - we) / we);
            if (wl > 0)
                worst_log = tu_nanmax(worst_log, fabs(lg[j] - wl) / wl);
            else
                assert_true(lg[j] == 0);
        }
    }
    printf("# vexp_nonpos max rel error %.3g, vlog1p_unit %.3g\n", worst_exp, worst_log);
    assert_true(worst_exp <= 4 * 0x1p-24);
    assert_true(worst_log <= 4 * 0x1p-24);
    /* below -87.3: clamped to e^-87.3, never 0, inf or NaN */
    rvec big = {0};
    big = big - 1000;
    rvec r = vexp_nonpos(big);
    for (int j = 0; j < VL; j++)
        assert_true(r[j] > 0 && r[j] < 2e-38);
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lrelu),
        cmocka_unit_test(test_film),
        cmocka_unit_test(test_bernoulli),
#ifndef YOTO_DOUBLE
        cmocka_unit_test(test_vector_math),
#endif
    };
    return TU_RUN("elementwise", tests);
}
