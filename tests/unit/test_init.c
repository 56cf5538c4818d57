/* test_init.c — the initialisation scale of every tensor of the Shapes3D and
 * CIFAR-10 models (model_init_params) by moment tests at fixed seeds.
 *
 * What DESIGN.md and REFERENCE.md prescribe, recomputed here from each
 * tensor's shape (not from the fans the model stores):
 *   conv kernel [out, in, 3, 3] and transposed-conv kernel [in, out, 3, 3]
 *     (TF's [3, 3, out, in]): fan_in = 9 shape[1], fan_out = 9 shape[0];
 *     scale 2 / (1 + alpha^2); fan = fan_in, or (fan_in + fan_out) / 2 for
 *     kernel_init fan_avg;
 *   dense kernel [out, in]: scale 2, fan = in;
 *   values sqrt(scale / fan) / 0.87962566 * t, t ~ N(0, 1) cut at +-2, so
 *     that their variance is scale / fan (TF's truncated-normal correction);
 *   biases zero.
 * With z = value / sqrt(scale / fan): |z| <= 2 / 0.8796, E z = 0, E z^2 = 1,
 * P(|z| < 1 / 0.8796) = P(|t| < 1 | |t| < 2); each checked per tensor and
 * pooled over all conv and all dense kernels, at 5 standard errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archs.h"
#include "model.h"
#include "testutil.h"

/* N(0, 1) truncated to [-2, 2]: normaliser, and the moments of t */
#define TRUNC_A 2.0
static double phi(double x) {
    return exp(-0.5 * x * x) / sqrt(2 * M_PI);
}
static double trunc_mass(double a) {
    return erf(a / sqrt(2));
} /* P(|x| < a) */
static double trunc_m2(void) {
    return 1 - 2 * TRUNC_A * phi(TRUNC_A) / trunc_mass(TRUNC_A);
}
static double trunc_m4(void) {
    double a = TRUNC_A;
    return 3 - 2 * (a * a * a + 3 * a) * phi(a) / trunc_mass(a);
}

typedef struct {
    double n, s1, s2, in1; /* count, sum z, sum z^2, count |z| < 1/c */
} moments;

static void add(moments *to, const moments *m) {
    to->n += m->n;
    to->s1 += m->s1;
    to->s2 += m->s2;
    to->in1 += m->in1;
}

/* fails when the moments of z are off by more than 5 standard errors */
static void check_moments(const char *what, const moments *m) {
    const double c = sqrt(trunc_m2()); /* 0.87962566 */
    const double var_z2 = trunc_m4() / (c * c * c * c) - 1;
    const double p1 = trunc_mass(1) / trunc_mass(TRUNC_A);
    const double mean = m->s1 / m->n, m2 = m->s2 / m->n, f1 = m->in1 / m->n;
    const double se_mean = 1 / sqrt(m->n), se_m2 = sqrt(var_z2 / m->n);
    const double se_f1 = sqrt(p1 * (1 - p1) / m->n);
    if (!(fabs(mean) <= 5 * se_mean) || !(fabs(m2 - 1) <= 5 * se_m2) ||
        !(fabs(f1 - p1) <= 5 * se_f1))
        fail_msg("%s (%.0f values): E z = %.4f (0 +- %.4f), E z^2 = %.4f (1 +- %.4f), "
                 "P(|z| < 1.137) = %.4f (%.4f +- %.4f)",
                 what, m->n, mean, 5 * se_mean, m2, 5 * se_m2, f1, p1, 5 * se_f1);
}

/* the prescribed variance of tensor t (0 for a bias) */
static double want_var(const cfg_model *mc, const arena_tensor *t) {
    if (t->ndim == 1) return 0;
    if (t->ndim == 2) return 2.0 / t->shape[1];
    assert_int_equal(t->ndim, 4);
    assert_true(t->shape[2] == 3 && t->shape[3] == 3);
    double fan_in = 9.0 * t->shape[1], fan_out = 9.0 * t->shape[0];
    double fan = mc->kernel_init == INIT_FAN_AVG ? 0.5 * (fan_in + fan_out) : fan_in;
    return 2.0 / (1 + mc->alpha * mc->alpha) / fan;
}

static void check_model(const char *name, const yoto_config *cfg, uint64_t seed) {
    vae_model *m = model_create(&cfg->model, 1);
    model_init_params(m, seed);
    const double zmax = TRUNC_A / sqrt(trunc_m2());
    moments conv = {0}, dense = {0};
    int nconv = 0, ndense = 0, ndeconv = 0;
    for (int i = 0; i < m->params.n; i++) {
        const arena_tensor *t = &m->params.t[i];
        const real *p = arena_param(&m->params, i);
        double v = want_var(&m->mc, t);
        char what[160];
        snprintf(what, sizeof what, "%s %s", name, t->name);
        if (v == 0) {
            for (size_t j = 0; j < t->size; j++)
                if (p[j] != 0) fail_msg("%s[%zu] = %g, want 0", what, j, (double)p[j]);
            continue;
        }
        moments mo = {(double)t->size, 0, 0, 0};
        for (size_t j = 0; j < t->size; j++) {
            double z = p[j] / sqrt(v);
            if (!(fabs(z) <= zmax * (1 + 1e-6)))
                fail_msg("%s[%zu] = %g: %.3f std, beyond the cut at %.3f", what, j, (double)p[j], z,
                         zmax);
            mo.s1 += z;
            mo.s2 += z * z;
            mo.in1 += fabs(z) < 1 / sqrt(trunc_m2());
        }
        check_moments(what, &mo);
        add(t->ndim == 4 ? &conv : &dense, &mo);
        nconv += t->ndim == 4;
        ndeconv += t->ndim == 4 && strstr(t->name, "deconv") != NULL;
        ndense += t->ndim == 2;
    }
    print_message("# %s: %d conv kernels (%d transposed, %.0f values), %d dense kernels (%.0f)\n",
                  name, nconv, ndeconv, conv.n, ndense, dense.n);
    assert_true(nconv > 0 && ndeconv > 0 && ndense > 0);
    char what[96];
    snprintf(what, sizeof what, "%s: all conv kernels", name);
    check_moments(what, &conv);
    snprintf(what, sizeof what, "%s: all dense kernels", name);
    check_moments(what, &dense);
    model_free(m);
}

static void test_shapes3d(void **state) {
    (void)state;
    yoto_config *cfg = calloc(1, sizeof *cfg);
    arch_shapes3d(cfg);
    assert_int_equal(cfg->model.kernel_init, INIT_FAN_IN);
    check_model("shapes3d", cfg, 1);
    check_model("shapes3d", cfg, 2);
    free(cfg);
}

static void test_cifar10(void **state) {
    (void)state;
    yoto_config *cfg = calloc(1, sizeof *cfg);
    arch_cifar10(cfg);
    assert_int_equal(cfg->model.kernel_init, INIT_FAN_AVG);
    check_model("cifar10", cfg, 1);
    free(cfg);
}

/* keyed (seed, tensor): the same seed gives the same values, another seed
 * others; tensors of one shape get different values */
static void test_keys(void **state) {
    (void)state;
    yoto_config *cfg = calloc(1, sizeof *cfg);
    arch_shapes3d(cfg);
    vae_model *a = model_create(&cfg->model, 1), *b = model_create(&cfg->model, 1);
    model_init_params(a, 3);
    model_init_params(b, 3);
    const size_t bytes = a->params.total * sizeof(real);
    assert_memory_equal(a->params.param, b->params.param, bytes);
    model_init_params(b, 4);
    size_t same = 0;
    for (size_t j = 0; j < a->params.total; j++)
        same += a->params.param[j] != 0 && a->params.param[j] == b->params.param[j];
    assert_true(same < a->params.total / 1000);
    int i1 = arena_find(&a->params, "encoder/block1/film/scale/dense0/kernel");
    int i2 = arena_find(&a->params, "encoder/block1/film/shift/dense0/kernel");
    assert_true(i1 >= 0 && i2 >= 0);
    assert_int_equal(a->params.t[i1].size, a->params.t[i2].size);
    assert_true(memcmp(arena_param(&a->params, i1), arena_param(&a->params, i2),
                       a->params.t[i1].size * sizeof(real)) != 0);
    model_free(a);
    model_free(b);
    free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes3d),
        cmocka_unit_test(test_cifar10),
        cmocka_unit_test(test_keys),
    };
    return TU_RUN("init", tests);
}
