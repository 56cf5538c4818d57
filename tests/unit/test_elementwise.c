/* test_elementwise.c — the vectorised element-wise layers and the losses
 * against double-precision formulas: leaky ReLU (any slope, in place,
 * bit-exact), FiLM and the fused FiLM + leaky ReLU forward and backward (also
 * against the unfused composition), the Bernoulli NLL and its gradient over
 * logits from -120 to 120, the Gaussian NLL (softplus sigma) and its
 * gradient, the KL, and the float build's vector exp, log1p, log, softplus
 * and sigmoid against libm. Plane sizes cover the vector tails and more than
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

static double sp_of(double x) {
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

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
        real *o = malloc(sz * sizeof *o), *f = malloc(sz * sizeof *f);
        real *dx = malloc(sz * sizeof *dx), *dx2 = malloc(sz * sizeof *dx2);
        real sc[6], sh[6], ds[6], dt[6], ds2[6], dt2[6];
        fill(x, sz);
        fill(dy, sz);
        fill(sc, 6);
        fill(sh, 6);
        film_lrelu_forward(c, n, hw, alpha, x, sc, sh, o);
        film_forward(c, n, hw, x, sc, sh, f);
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < n; i++)
                for (int p = 0; p < hw; p++) {
                    size_t k = ((size_t)ch * n + i) * hw + p;
                    double a = sc[i * c + ch], t = sh[i * c + ch];
                    double want = a * x[k] + t, scale = fabs(a * x[k]) + fabs(t);
                    check_close("film_forward", hw, f[k], want, scale);
                    check_close("film_lrelu_forward", hw, o[k], want > 0 ? want : alpha * want,
                                scale);
                    /* with alpha >= 0 the leaky ReLU keeps FiLM's sign */
                    assert_true((o[k] > 0) == (f[k] > 0));
                }
        /* backward: fused vs lrelu_backward then film_backward, and vs double */
        film_lrelu_backward(c, n, hw, alpha, x, sc, sh, dy, dx, ds, dt);
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
        film_lrelu_backward(c, n, hw, alpha, x, sc, sh, dy, NULL, ds2, dt2);
        for (int j = 0; j < c * n; j++)
            assert_true(ds2[j] == ds[j] && dt2[j] == dt[j]);
        free(x);
        free(dy);
        free(f);
        free(o);
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

/* Gaussian NLL with s = eps + softplus(raw), its gradient, and the KL, per
 * sample against double formulas: one (mu, raw, x) triple per sample,
 * repeated over its planes; raw from -30 (s = eps + 1e-13) to 30, the
 * residual x - mu from 0 to 2 (values in [-1, 1]). */
static void test_gaussian(void **state) {
    (void)state;
    const double raws[] = {-30, -17, -9.5, -4, -1, -0.25, 0, 1e-3, 0.5, 1, 2.5, 6, 13, 30};
    const double res[] = {0, 1e-4, 0.03, 0.5, 1.25, 2};
    const int nr = (int)YT_ARRAY_LEN(raws), n = nr * (int)YT_ARRAY_LEN(res), c = 3;
    const double eps = 1e-6;
    for (size_t sz = 0; sz < YT_ARRAY_LEN(plane_sizes); sz++) {
        const int hw = plane_sizes[sz];
        const size_t plane = (size_t)n * hw;
        real *out = malloc(2 * c * plane * sizeof *out), *x = malloc(c * plane * sizeof *x);
        real *d = malloc(2 * c * plane * sizeof *d);
        double *recon = malloc((size_t)n * sizeof *recon), *coef = malloc((size_t)n * sizeof *coef);
        for (int i = 0; i < n; i++) {
            coef[i] = 0.25 + i;
            double raw = raws[i % nr], r = res[i / nr];
            for (int ch = 0; ch < c; ch++)
                for (int p = 0; p < hw; p++) {
                    size_t k = ((size_t)ch * n + i) * hw + p;
                    x[k] = (real)(ch == 1 ? -0.75 : 0.5);
                    out[k] = (real)(x[k] - (ch == 2 ? -r : r)); /* mu */
                    out[c * plane + k] = (real)raw;
                }
        }
        loss_gaussian(c, n, hw, eps, out, x, recon);
        loss_gaussian_backward(c, n, hw, eps, out, x, coef, d);
        for (int i = 0; i < n; i++) {
            double want = 0, scale = 0;
            for (int ch = 0; ch < c; ch++) {
                size_t k0 = ((size_t)ch * n + i) * hw;
                double raw = out[c * plane + k0], dd = (double)x[k0] - out[k0];
                double sp = raw > 0 ? raw + log1p(exp(-raw)) : log1p(exp(raw)), s = eps + sp;
                double sig = 1 / (1 + exp(-raw)), r = dd / s;
                double l = 0.5 * log(2 * M_PI) + log(s) + 0.5 * r * r;
                want += hw * l;
                scale += hw * (fabs(l) + fabs(log(s)) + 0.5 * r * r + 1);
                double dmu = -coef[i] * dd / (s * s);
                double draw = coef[i] * (1 / s - dd * dd / (s * s * s)) * sig;
                for (int p = 0; p < hw; p++) {
                    check_close("loss_gaussian_backward mu", hw, d[k0 + p], dmu, fabs(dmu));
                    /* (1 - r^2) / s: relative to its two terms */
                    check_close("loss_gaussian_backward raw", hw, d[c * plane + k0 + p], draw,
                                coef[i] * (1 / s + r * r / s) * sig);
                }
            }
            char what[80];
            snprintf(what, sizeof what, "loss_gaussian raw %g residual %g", raws[i % nr],
                     res[i / nr]);
            check_close(what, hw, recon[i], want, scale);
        }
        /* KL: sum 0.5 (mu^2 + sigma^2 - 1) - log sigma, sigma from eps to 30 */
        real *mu = malloc(plane * sizeof *mu), *sg = malloc(plane * sizeof *sg);
        for (size_t k = 0; k < plane; k++) {
            mu[k] = (real)(2 * uniform() - 1);
            sg[k] = (real)(eps + sp_of(out[c * plane + k % (size_t)(c * plane)]));
        }
        loss_kl(n, hw, mu, sg, recon);
        for (int i = 0; i < n; i++) {
            double want = 0, scale = 0;
            for (int j = 0; j < hw; j++) {
                double m = mu[(size_t)i * hw + j], sv = sg[(size_t)i * hw + j];
                want += 0.5 * (m * m + sv * sv - 1) - log(sv);
                scale += 0.5 * (m * m + sv * sv + 1) + fabs(log(sv));
            }
            check_close("loss_kl", hw, recon[i], want, scale);
        }
        free(mu);
        free(sg);
        free(out);
        free(x);
        free(d);
        free(recon);
        free(coef);
    }
}

/* all_finite: every position of a vector body and tail, NaN and both
 * infinities; the largest finite values and denormals count as finite */
static void test_all_finite(void **state) {
    (void)state;
    enum { N = 37 };
    real x[N];
    const real big = TEST_DOUBLE ? (real)1.7e308 : (real)3.4e38;
    for (int i = 0; i < N; i++)
        x[i] = i % 3 == 0 ? big : i % 3 == 1 ? -big : (real)(TEST_DOUBLE ? 4e-320 : 1e-44);
    assert_true(all_finite(N, x));
    assert_true(all_finite(0, x));
    const real bad[3] = {(real)NAN, (real)INFINITY, -(real)INFINITY};
    for (int b = 0; b < 3; b++)
        for (int i = 0; i < N; i++) {
            real keep = x[i];
            x[i] = bad[b];
            if (all_finite(N, x))
                fail_msg("value %d (%g) at %d of %d not seen", b, (double)bad[b], i, N);
            assert_true(all_finite((size_t)i, x)); /* before it: still finite */
            x[i] = keep;
        }
}

#ifndef YOTO_DOUBLE
/* largest error of f against g over lo..hi (k points, log-spaced when
 * logspace), in units of the float epsilon relative to |g| */
static double sweep(rvec (*f)(rvec), double (*g)(double), double lo, double hi, int k,
                    bool logspace) {
    double worst = 0;
    for (int i = 0; i < k; i += VL) {
        rvec x;
        for (int j = 0; j < VL; j++) {
            double t = (double)YT_MIN(i + j, k - 1) / (k - 1);
            x[j] = (real)(logspace ? lo * pow(hi / lo, t) : lo + (hi - lo) * t);
        }
        rvec y = f(x);
        for (int j = 0; j < VL; j++) {
            double want = g((double)x[j]), err = fabs((double)y[j] - want);
            double rel = want != 0 ? err / fabs(want) : err;
            if (!(rel <= worst)) worst = rel; /* NaN sticks */
        }
    }
    return worst / 0x1p-24;
}

static rvec f_log(rvec x) {
    return vlog_pos(x);
}
static rvec f_softplus(rvec x) {
    return vsoftplus(x);
}
static rvec f_sigmoid(rvec x) {
    return vsigmoid(x);
}
static double g_softplus(double x) {
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}
static double g_sigmoid(double x) {
    return 1 / (1 + exp(-x));
}

/* The float likelihoods' vector log, softplus and sigmoid against libm in
 * double, over the ranges that occur: log of s = eps + softplus(raw) >= 1e-6
 * and of the KL's sigma (1e-6 .. 1e6; also near 1, where log is small),
 * softplus and sigmoid of raw outputs and logits (-87 .. 100; below, e^x
 * is clamped). Bounds as documented in simd.h: 3, 5 and 3 ulp. */
static void test_likelihood_math(void **state) {
    (void)state;
    double e_log =
        fmax(sweep(f_log, log, 1e-6, 1e6, 400000, true), sweep(f_log, log, 0.5, 2, 200000, false));
    double e_sp = fmax(sweep(f_softplus, g_softplus, -87, 100, 400000, false),
                       sweep(f_softplus, g_softplus, -1e-3, 1e-3, 20000, false));
    double e_sig = sweep(f_sigmoid, g_sigmoid, -87, 100, 400000, false);
    printf("# max error in ulp: vlog_pos %.3g, vsoftplus %.3g, vsigmoid %.3g\n", e_log, e_sp,
           e_sig);
    assert_true(e_log <= 3);
    assert_true(e_sp <= 5);
    assert_true(e_sig <= 3);
    /* below -87.3, e^x is clamped to ~1e-38: tiny and positive, never 0 or NaN */
    rvec lo = (rvec){0} - 1000, sp = vsoftplus(lo), sg = vsigmoid(lo);
    for (int j = 0; j < VL; j++)
        assert_true(sp[j] > 0 && sp[j] < 2e-38 && sg[j] > 0 && sg[j] < 2e-38);
}

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
        cmocka_unit_test(test_lrelu),       cmocka_unit_test(test_film),
        cmocka_unit_test(test_bernoulli),   cmocka_unit_test(test_gaussian),
        cmocka_unit_test(test_all_finite),
#ifndef YOTO_DOUBLE
        cmocka_unit_test(test_vector_math), cmocka_unit_test(test_likelihood_math),
#endif
    };
    return TU_RUN("elementwise", tests);
}
