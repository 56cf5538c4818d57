/* test_training.c — single-process YOTO training on a synthetic data set made
 * here: the loss goes down, and the one trained model is conditioned on beta:
 * evaluated at beta = 0.5, 8, 128, 512 (w_rec = 1, z = posterior mean) over
 * the data, the mean KL strictly decreases and the mean reconstruction loss
 * strictly increases (issue 3's acceptance).
 *
 * Setup: 384 images 16x16x3, a tiny model of the reference family (three
 * blocks of one conv, base 8, latent 6, FiLM hidden [8]), w_kl log-uniform in
 * [0.5, 512] and w_rec log-uniform in [0.999, 1.001] per sample, Adam lr 2e-3,
 * 360 steps of batch 32 (30 epochs, a few seconds). Two choices differ from
 * the reference configs, because the reference trains for 700k steps:
 *  - FiLM post-processing 0.1 s + 1 / 0.1 t (CIFAR's) rather than Shapes3D's
 *    0.01: with 0.01 the FiLM MLPs' outputs must grow 100x before the
 *    conditioning shows, far beyond a few hundred steps;
 *  - loss_weights.normalize (the original's normalize_loss_weights): (w_kl,
 *    w_rec) divided by their geometric mean. The optimum for a ratio beta is
 *    unchanged (the objective is only rescaled per sample), and the
 *    conditioning input stays a function of beta. Without it the beta = 512
 *    samples' KL gradients dominate Adam's per-parameter scale early on and the
 *    low-beta end is not learned in a few hundred steps: recon at beta 0.5 and
 *    8 came out within noise of each other in about half of the seeds tried.
 * With both, 8 seeds x 2 builds x {360, 480} steps all pass, the worst
 * margins being a KL ratio of 1.9 between neighbouring betas and a
 * reconstruction difference of 1.6 nats (typical: 2.2 and 4).
 *
 * Deterministic: data, order, loss weights, noise and the initialisation come
 * from fixed-seed Philox streams (rng.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archs.h"
#include "loss.h"
#include "model.h"
#include "rng.h"
#include "testutil.h"
#include "trainer.h"

enum {
    SIZE = 16, /* images SIZE x SIZE x CH */
    CH = 3,
    NIMG = 384,
    BATCH = 32,
    LATENT = 6,
    STEPS = 360, /* 30 epochs */
    WINDOW = 20  /* steps averaged at the start and the end */
};
static const uint64_t SEED = 2024;

/* NIMG images [CH][NIMG][SIZE][SIZE] in [0, 1]. Each channel's background is
 * dark (0.05) or bright (0.95) at random: bits that each explain most of
 * SIZE^2 near-binary pixels (~150 nats of reconstruction per bit: kept at
 * beta = 128, dropped at 512). On top, one or two rectangles of random size,
 * position and colour (what the lower betas encode), and a little texture. */
static real *make_data(void) {
    const size_t plane = (size_t)NIMG * SIZE * SIZE;
    real *x = calloc((size_t)CH * plane, sizeof *x);
    for (int i = 0; i < NIMG; i++) {
        rng_stream s = rng_stream_make(SEED, RNG_SYNTHETIC, (uint32_t)i, 0, 0);
        real *img[CH];
        for (int c = 0; c < CH; c++) {
            img[c] = x + c * plane + (size_t)i * SIZE * SIZE;
            real bg = rng_below(&s, 2) ? (real)0.95 : (real)0.05;
            for (int p = 0; p < SIZE * SIZE; p++)
                img[c][p] = bg;
        }
        int nrect = 1 + (int)rng_below(&s, 2);
        for (int r = 0; r < nrect; r++) {
            int h = 3 + (int)rng_below(&s, 6), w = 3 + (int)rng_below(&s, 6);
            int top = (int)rng_below(&s, (uint64_t)(SIZE - h + 1));
            int left = (int)rng_below(&s, (uint64_t)(SIZE - w + 1));
            for (int c = 0; c < CH; c++) {
                real v = (real)rng_uniform(&s);
                for (int a = top; a < top + h; a++)
                    for (int b = left; b < left + w; b++)
                        img[c][a * SIZE + b] = v;
            }
        }
        for (int c = 0; c < CH; c++)
            for (int p = 0; p < SIZE * SIZE; p++) {
                double t = img[c][p] + 0.04 * (rng_uniform(&s) - 0.5);
                img[c][p] = (real)(t < 0 ? 0 : t > 1 ? 1 : t);
            }
    }
    return x;
}

/* copies images idx[0..n) into a batch [CH][n][SIZE*SIZE] */
static void gather(const real *data, const uint64_t *idx, int n, real *batch) {
    const size_t hw = SIZE * SIZE;
    for (int c = 0; c < CH; c++)
        for (int i = 0; i < n; i++)
            memcpy(batch + ((size_t)c * n + i) * hw, data + ((size_t)c * NIMG + idx[i]) * hw,
                   hw * sizeof *batch);
}

static void config(yoto_config *cfg) {
    /* 16x16x3 -> 8x8x8 -> 4x4x16 -> 2x2x32 -> fc [64, 12]; decoder fc [64,
     * 128] -> 2x2x32 -> 4x4x32 -> 8x8x16 -> 16x16x8 -> conv to 3 channels */
    arch_tiny(cfg, SIZE, CH, 3, 1, 8, LATENT, 0.1, OUT_BERNOULLI);
    cfg->model.encoder.fc_sizes.v[0] = 64;
    cfg->model.decoder.fc_sizes.v[0] = 64;
    arch_train_defaults(cfg, 2e-3, 0.5, 512);
    cfg->loss_weights.normalize = true;
    cfg->experiment.seed = SEED; /* loss weights and noise: (SEED, step, rank 0, sample) */
}

typedef struct {
    double kl, recon;
} eval_point;

/* mean KL and reconstruction over the data set at fixed (beta, 1), z = mean */
static eval_point evaluate(vae_model *m, const yoto_config *cfg, const real *data, double beta) {
    real batch[CH * BATCH * SIZE * SIZE], wk[BATCH], wr[BATCH], cond[2 * BATCH];
    uint64_t idx[BATCH];
    double kl = 0, rec = 0;
    for (int start = 0; start < NIMG; start += BATCH) {
        int n = YT_MIN(BATCH, NIMG - start);
        for (int i = 0; i < n; i++)
            idx[i] = (uint64_t)(start + i);
        gather(data, idx, n, batch);
        loss_weights_fixed(&cfg->loss_weights, beta, 1.0, n, wk, wr, cond);
        model_forward(m, n, batch, cond, NULL);
        for (int i = 0; i < n; i++) {
            kl += m->kl[i];
            rec += m->recon[i];
        }
    }
    eval_point e = {kl / NIMG, rec / NIMG};
    return e;
}

static void test_yoto_training(void **state) {
    (void)state;
    if (tu_quick()) skip(); /* minutes under valgrind; the tiny models cover the code */
    yoto_config cfg;
    config(&cfg);
    real *data = make_data();
    vae_model *m = model_create(&cfg.model, BATCH);
    model_init_params(m, SEED);
    assert_int_equal(m->latent, LATENT);
    /* the shipped step: draws, forward, agreement, backward, Adam (one process) */
    trainer *t = trainer_create(m, &cfg, 0, 1);
    real batch[CH * BATCH * SIZE * SIZE];
    uint64_t perm[NIMG];
    double losses[STEPS];
    const int per_epoch = NIMG / BATCH;
    double t0 = yt_now();
    for (long step = 0; step < STEPS; step++) {
        int epoch = (int)(step / per_epoch), k = (int)(step % per_epoch);
        if (k == 0) {
            rng_stream s = rng_stream_make(SEED, RNG_DATA_ORDER, (uint32_t)epoch, 0, 0);
            rng_permutation(&s, perm, NIMG);
        }
        gather(data, perm + (size_t)k * BATCH, BATCH, batch);
        step_sums sums;
        int rc = trainer_step(t, step, batch, YT_OK, false, &sums);
        if (rc != YT_OK) fail_msg("step %ld: %s", step, yt_errmsg());
        assert_int_equal(sums.images, BATCH);
        losses[step] = sums.loss / BATCH;
        if (!isfinite(losses[step])) fail_msg("step %ld: loss %g", step, losses[step]);
    }
    trainer_free(t);
    double first = 0, last = 0;
    for (int i = 0; i < WINDOW; i++) {
        first += losses[i] / WINDOW;
        last += losses[STEPS - WINDOW + i] / WINDOW;
    }
    printf("# %d steps of batch %d on %d images (%zu parameters) in %.1f s: mean loss of the "
           "first %d steps %.2f, of the last %d %.2f\n",
           STEPS, BATCH, NIMG, m->params.total, yt_now() - t0, WINDOW, first, WINDOW, last);

    /* conditioning: one model, four betas */
    const double betas[4] = {0.5, 8, 128, 512};
    eval_point e[4];
    for (int b = 0; b < 4; b++) {
        e[b] = evaluate(m, &cfg, data, betas[b]);
        printf("# beta %5.1f: KL %8.4f  reconstruction %8.3f\n", betas[b], e[b].kl, e[b].recon);
    }
    /* the loss must drop clearly, not just wobble (typically to 0.55-0.7) */
    if (!(last < 0.85 * first)) fail_msg("loss did not decrease: first %g, last %g", first, last);
    for (int b = 1; b < 4; b++) {
        if (!(e[b].kl < e[b - 1].kl))
            fail_msg("KL not strictly decreasing: beta %g -> %g, KL %g -> %g", betas[b - 1],
                     betas[b], e[b - 1].kl, e[b].kl);
        if (!(e[b].recon > e[b - 1].recon))
            fail_msg("reconstruction not strictly increasing: beta %g -> %g, recon %g -> %g",
                     betas[b - 1], betas[b], e[b - 1].recon, e[b].recon);
    }
    free(data);
    model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yoto_training),
    };
    return TU_RUN("training", tests);
}
