/* test_schedule.c — what each training step is given besides its batch:
 * the learning-rate schedule (optim_lr, tf.train.piecewise_constant's
 * boundaries) and the loss-weight sampler (loss_weights_sample): range and
 * log-uniformity by a Kolmogorov-Smirnov test at fixed seeds, the uniform
 * and fixed distributions, one draw per batch (per_sample: false), the log
 * and identity transforms, geometric-mean normalisation, the stream keys,
 * and loss_weights_fixed. Expected values come from the documented formulas
 * (optim.h, loss.h, docs/CONFIG.md), not from the code under test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loss.h"
#include "optim.h"
#include "testutil.h"

/* ---- learning rate --------------------------------------------------------------- */

static void test_lr_schedule(void **state) {
    (void)state;
    cfg_optimizer o = {.lr = 1e-3, .decay_factor = 0.5};
    /* no boundaries: constant */
    for (long s = 0; s < 100000; s += 997)
        assert_true(optim_lr(&o, s) == 1e-3);
    /* boundaries 10, 20, 35: the update made at step s (0-based) uses
     * lr * 0.5^k, k = number of boundaries b with s > b (at s == b the old rate) */
    o.decay_steps.n = 3;
    o.decay_steps.v[0] = 10;
    o.decay_steps.v[1] = 20;
    o.decay_steps.v[2] = 35;
    const struct {
        long step;
        double lr;
    } want[] = {{0, 1e-3},  {9, 1e-3},    {10, 1e-3},   {11, 5e-4},    {19, 5e-4},
                {20, 5e-4}, {21, 2.5e-4}, {35, 2.5e-4}, {36, 1.25e-4}, {1000000, 1.25e-4}};
    for (size_t i = 0; i < YT_ARRAY_LEN(want); i++) {
        double lr = optim_lr(&o, want[i].step);
        if (!tu_close(lr, want[i].lr, 0, 1e-15))
            fail_msg("lr at step %ld: %.17g, want %.17g", want[i].step, lr, want[i].lr);
    }
    /* another factor; a boundary at 0 applies from the second update on */
    o.decay_factor = 0.1;
    o.decay_steps.n = 2;
    o.decay_steps.v[0] = 0;
    o.decay_steps.v[1] = 5;
    assert_true(tu_close(optim_lr(&o, 0), 1e-3, 0, 1e-15));
    assert_true(tu_close(optim_lr(&o, 1), 1e-4, 0, 1e-15));
    assert_true(tu_close(optim_lr(&o, 5), 1e-4, 0, 1e-15));
    assert_true(tu_close(optim_lr(&o, 6), 1e-5, 0, 1e-15));
}

/* ---- loss weights ---------------------------------------------------------------- */

/* N draws: steps x ranks x BATCH */
#define BATCH 50
#define STEPS 40
#define RANKS 3
#define NDRAW (BATCH * STEPS * RANKS)

typedef struct {
    double wkl[NDRAW], wrec[NDRAW], ckl[NDRAW], crec[NDRAW];
} draws;

static void draw_all(const cfg_loss_weights *lw, uint64_t seed, draws *d) {
    real wk[BATCH], wr[BATCH], c[2 * BATCH];
    int k = 0;
    for (long s = 0; s < STEPS; s++)
        for (int r = 0; r < RANKS; r++) {
            loss_weights_sample(lw, seed, s, r, BATCH, wk, wr, c);
            for (int i = 0; i < BATCH; i++, k++) {
                d->wkl[k] = wk[i];
                d->wrec[k] = wr[i];
                d->ckl[k] = c[2 * i];
                d->crec[k] = c[2 * i + 1];
            }
        }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Kolmogorov-Smirnov distance of u[0, n) from Uniform(0, 1); NaN if any u is NaN */
static double ks_uniform(const double *u, int n) {
    double *s = malloc((size_t)n * sizeof *s), d = 0;
    memcpy(s, u, (size_t)n * sizeof *s);
    for (int i = 0; i < n; i++)
        if (isnan(s[i])) d = NAN;
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    for (int i = 0; i < n; i++) {
        d = tu_nanmax(d, fabs((i + 1.0) / n - s[i]));
        d = tu_nanmax(d, fabs(s[i] - (double)i / n));
    }
    free(s);
    return d;
}

/* 1.95 / sqrt(n): the KS critical value at p = 0.001 */
#define KS_CRIT(n) (1.95 / sqrt((double)(n)))

static cfg_loss_weights yoto_weights(void) {
    cfg_loss_weights lw = {
        .mode = LW_YOTO,
        .per_sample = true,
        .kl = {.distribution = DIST_LOG_UNIFORM, .low = 0.125, .high = 1024},
        .reconstruction = {.distribution = DIST_LOG_UNIFORM, .low = 0.5, .high = 2},
        .transform = TRANSFORM_LOG,
        .normalize = false,
    };
    return lw;
}

/* u = (log w - log lo) / (log hi - log lo) must be Uniform(0, 1) */
static void expect_log_uniform(const char *what, const double *w, int n, double lo, double hi) {
    static double u[NDRAW];
    for (int i = 0; i < n; i++) {
        if (!(w[i] >= lo * (1 - 1e-6) && w[i] <= hi * (1 + 1e-6)))
            fail_msg("%s[%d] = %g outside [%g, %g]", what, i, w[i], lo, hi);
        u[i] = (log(w[i]) - log(lo)) / (log(hi) - log(lo));
    }
    double d = ks_uniform(u, n);
    print_message("# %s: KS distance of log w from uniform %.4f (critical %.4f)\n", what, d,
                  KS_CRIT(n));
    if (!(d <= KS_CRIT(n))) fail_msg("%s: log w not uniform (KS %.4f)", what, d);
}

static void test_log_uniform(void **state) {
    (void)state;
    cfg_loss_weights lw = yoto_weights();
    static draws d;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        draw_all(&lw, seed, &d);
        expect_log_uniform("w_kl", d.wkl, NDRAW, 0.125, 1024);
        expect_log_uniform("w_rec", d.wrec, NDRAW, 0.5, 2);
        /* the transform: cond = log w (of the weight as rounded to real) */
        for (int i = 0; i < NDRAW; i++)
            if (!tu_close(d.ckl[i], log(d.wkl[i]), 1e-6, 0) ||
                !tu_close(d.crec[i], log(d.wrec[i]), 1e-6, 0))
                fail_msg("cond[%d] = (%g, %g), want log of (%g, %g)", i, d.ckl[i], d.crec[i],
                         d.wkl[i], d.wrec[i]);
        /* w_kl and w_rec independent: correlation of the log weights near 0 */
        double mk = 0, mr = 0, skk = 0, srr = 0, skr = 0;
        for (int i = 0; i < NDRAW; i++)
            mk += d.ckl[i] / NDRAW, mr += d.crec[i] / NDRAW;
        for (int i = 0; i < NDRAW; i++) {
            skk += (d.ckl[i] - mk) * (d.ckl[i] - mk);
            srr += (d.crec[i] - mr) * (d.crec[i] - mr);
            skr += (d.ckl[i] - mk) * (d.crec[i] - mr);
        }
        double corr = skr / sqrt(skk * srr);
        if (!(fabs(corr) <= 4 / sqrt((double)NDRAW)))
            fail_msg("seed %llu: log w_kl and log w_rec correlate (%.4f)", (unsigned long long)seed,
                     corr);
    }
    /* another seed, other draws */
    static draws e;
    draw_all(&lw, 1, &d);
    draw_all(&lw, 2, &e);
    int same = 0;
    for (int i = 0; i < NDRAW; i++)
        same += d.wkl[i] == e.wkl[i];
    assert_true(same < NDRAW / 100);
}

static void test_uniform_and_fixed(void **state) {
    (void)state;
    cfg_loss_weights lw = yoto_weights();
    lw.kl = (cfg_weight_dist){.distribution = DIST_UNIFORM, .low = 2, .high = 10};
    lw.reconstruction = (cfg_weight_dist){.distribution = DIST_FIXED, .value = 3.5};
    lw.transform = TRANSFORM_IDENTITY;
    static draws d;
    static double u[NDRAW];
    draw_all(&lw, 9, &d);
    for (int i = 0; i < NDRAW; i++) {
        if (!(d.wkl[i] >= 2 && d.wkl[i] <= 10)) fail_msg("uniform w_kl[%d] = %g", i, d.wkl[i]);
        u[i] = (d.wkl[i] - 2) / 8;
        if (d.wrec[i] != 3.5) fail_msg("fixed w_rec[%d] = %g, want 3.5", i, d.wrec[i]);
        /* identity: the weights themselves */
        if (d.ckl[i] != d.wkl[i] || d.crec[i] != 3.5)
            fail_msg("identity cond[%d] = (%g, %g), want (%g, 3.5)", i, d.ckl[i], d.crec[i],
                     d.wkl[i]);
    }
    double ks = ks_uniform(u, NDRAW);
    if (!(ks <= KS_CRIT(NDRAW))) fail_msg("uniform w_kl: KS %.4f", ks);
    /* log-uniform is not uniform: the test above would see it */
    lw.kl = (cfg_weight_dist){.distribution = DIST_LOG_UNIFORM, .low = 2, .high = 10};
    draw_all(&lw, 9, &d);
    for (int i = 0; i < NDRAW; i++)
        u[i] = (d.wkl[i] - 2) / 8;
    assert_true(ks_uniform(u, NDRAW) > 5 * KS_CRIT(NDRAW));
}

/* per_sample: false — one (w_kl, w_rec) for the whole batch of a step and
 * rank; steps and ranks still differ */
static void test_per_batch(void **state) {
    (void)state;
    cfg_loss_weights lw = yoto_weights();
    lw.per_sample = false;
    static draws d;
    static double firsts[STEPS * RANKS];
    draw_all(&lw, 4, &d);
    for (int b = 0; b < STEPS * RANKS; b++) {
        for (int i = 1; i < BATCH; i++) {
            int k = b * BATCH + i;
            if (d.wkl[k] != d.wkl[b * BATCH] || d.wrec[k] != d.wrec[b * BATCH] ||
                d.ckl[k] != d.ckl[b * BATCH] || d.crec[k] != d.crec[b * BATCH])
                fail_msg("batch %d: sample %d has other weights than sample 0", b, i);
        }
        firsts[b] = d.wkl[b * BATCH];
    }
    expect_log_uniform("w_kl per batch", firsts, STEPS * RANKS, 0.125, 1024);
    /* per sample: the samples of a batch differ */
    lw.per_sample = true;
    draw_all(&lw, 4, &d);
    int same = 0;
    for (int i = 1; i < BATCH; i++)
        same += d.wkl[i] == d.wkl[0];
    assert_int_equal(same, 0);
}

/* The stream of (step, rank, sample): the same arguments draw the same
 * weights, whatever else was drawn before; the batch size does not change
 * sample i's weights */
static void test_stream_keys(void **state) {
    (void)state;
    cfg_loss_weights lw = yoto_weights();
    real a[2][8], b[2][8], c[2][16], x[2][3], y[2][3], z[2][6];
    loss_weights_sample(&lw, 7, 12, 1, 8, a[0], a[1], c[0]);
    loss_weights_sample(&lw, 7, 13, 1, 8, b[0], b[1], c[1]);
    loss_weights_sample(&lw, 7, 12, 1, 3, x[0], x[1], z[0]);
    assert_memory_equal(a[0], x[0], 3 * sizeof(real));
    assert_memory_equal(a[1], x[1], 3 * sizeof(real));
    assert_memory_equal(c[0], z[0], 6 * sizeof(real));
    assert_true(memcmp(a[0], b[0], sizeof a[0]) != 0);
    loss_weights_sample(&lw, 7, 12, 2, 3, y[0], y[1], z[1]);
    assert_true(memcmp(x[0], y[0], sizeof x[0]) != 0);
}

/* normalize: divided by the geometric mean sqrt(w_kl w_rec), the ratio kept */
static void test_normalize(void **state) {
    (void)state;
    cfg_loss_weights lw = yoto_weights();
    static draws raw, nrm;
    draw_all(&lw, 5, &raw);
    lw.normalize = true;
    draw_all(&lw, 5, &nrm);
    for (int i = 0; i < NDRAW; i++) {
        double g = sqrt(raw.wkl[i] * raw.wrec[i]);
        if (!tu_close(nrm.wkl[i], raw.wkl[i] / g, 0, 1e-6) ||
            !tu_close(nrm.wrec[i], raw.wrec[i] / g, 0, 1e-6))
            fail_msg("normalised [%d]: (%g, %g), want (%g, %g)", i, nrm.wkl[i], nrm.wrec[i],
                     raw.wkl[i] / g, raw.wrec[i] / g);
        if (!tu_close(nrm.ckl[i] + nrm.crec[i], 0, 1e-5, 0))
            fail_msg("normalised [%d]: log weights sum to %g, want 0", i, nrm.ckl[i] + nrm.crec[i]);
    }
}

static void test_fixed_weights(void **state) {
    (void)state;
    cfg_loss_weights lw = yoto_weights();
    real wk[4], wr[4], c[8];
    loss_weights_fixed(&lw, 8, 1, 4, wk, wr, c);
    for (int i = 0; i < 4; i++) {
        assert_true(wk[i] == 8 && wr[i] == 1);
        assert_true(tu_close(c[2 * i], log(8.0), 1e-6, 0) && c[2 * i + 1] == 0);
    }
    lw.transform = TRANSFORM_IDENTITY;
    lw.normalize = true;
    loss_weights_fixed(&lw, 8, 2, 4, wk, wr, c);
    for (int i = 0; i < 4; i++) { /* / sqrt(16) */
        assert_true(tu_close(wk[i], 2, 0, 1e-6) && tu_close(wr[i], 0.5, 0, 1e-6));
        assert_true(c[2 * i] == wk[i] && c[2 * i + 1] == wr[i]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lr_schedule),       cmocka_unit_test(test_log_uniform),
        cmocka_unit_test(test_uniform_and_fixed), cmocka_unit_test(test_per_batch),
        cmocka_unit_test(test_stream_keys),       cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_fixed_weights),
    };
    return TU_RUN("schedule", tests);
}
