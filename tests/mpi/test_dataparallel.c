/* test_dataparallel.c — the shipped training step (trainer_step) on P ranks
 * x B/P samples each equals one process computing the whole batch of B with
 * the same samples, loss weights and noise: the allreduced gradient, and the
 * parameters after the Adam update, with the bucketed overlapped allreduce
 * and with the blocking one.
 *
 * The reference runs the model directly (model_forward / model_backward /
 * optim_adam_step on one process, no dist). Its loss weights and noise are
 * the ones each rank's trainer drew, rebuilt here from the documented keys
 * (seed, step, rank, sample), so the test also pins the key scheme. At np=1
 * the two sides would be the same computation: skipped.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "archs.h"
#include "dist.h"
#include "loss.h"
#include "model.h"
#include "mpi_testutil.h"
#include "optim.h"
#include "rng.h"
#include "trainer.h"

#define BATCH 8
#define SEED 11
#define STEP 5 /* any step: the draws are keyed by it */

/* The whole batch: images [C][BATCH][HW], and per sample the draws of the
 * rank that owns it (rank r owns samples [r n, (r + 1) n)). */
typedef struct {
    real *x, *cond, *eps, *wkl, *wrec;
} batch_data;

static void make_batch(const vae_model *m, const yoto_config *cfg, int P, batch_data *b) {
    const size_t hw = (size_t)m->in_h * m->in_w, L = (size_t)m->latent;
    const int n = BATCH / P;
    b->x = malloc((size_t)m->in_c * BATCH * hw * sizeof(real));
    b->cond = malloc(2 * BATCH * sizeof(real));
    b->eps = malloc(BATCH * L * sizeof(real));
    b->wkl = malloc(BATCH * sizeof(real));
    b->wrec = malloc(BATCH * sizeof(real));
    rng_stream s = rng_stream_make(3, RNG_SYNTHETIC, 0, 0, 0);
    for (size_t i = 0; i < (size_t)m->in_c * BATCH * hw; i++)
        b->x[i] = (real)rng_uniform(&s);
    for (int r = 0; r < P; r++) {
        loss_weights_sample(&cfg->loss_weights, SEED, STEP, r, n, b->wkl + r * n, b->wrec + r * n,
                            b->cond + 2 * r * n);
        for (int i = 0; i < n; i++) {
            rng_stream e = rng_stream_make(SEED, RNG_EPS, STEP, (uint32_t)r, (uint32_t)i);
            for (size_t j = 0; j < L; j++)
                b->eps[(size_t)(r * n + i) * L + j] = (real)rng_normal(&e);
        }
    }
}

/* samples [lo, lo + n) of the whole batch's images, in the model's layout */
static real *slice_x(const vae_model *m, const batch_data *b, int lo, int n) {
    const size_t hw = (size_t)m->in_h * m->in_w;
    real *x = malloc((size_t)m->in_c * n * hw * sizeof(real));
    for (int c = 0; c < m->in_c; c++)
        memcpy(x + (size_t)c * n * hw, b->x + ((size_t)c * BATCH + lo) * hw,
               (size_t)n * hw * sizeof(real));
    return x;
}

/* worst max-normalised difference over the arena's tensors (NaN-safe: a NaN
 * makes it NaN, which fails `<= tol`) */
static double worst_tensor_err(const arena *a, const real *got, const real *want) {
    double worst = 0;
    for (int i = 0; i < a->n; i++) {
        const arena_tensor *t = &a->t[i];
        double *ref = malloc(t->size * sizeof *ref);
        for (size_t j = 0; j < t->size; j++)
            ref[j] = want[t->offset + j];
        double e = tu_max_norm_err(got + t->offset, ref, t->size);
        worst = isnan(e) || e > worst ? e : worst;
        free(ref);
    }
    return worst;
}

static void check(bool overlap) {
    const int P = dist_size(), r = dist_rank(), n = BATCH / P;
    if (P == 1) skip(); /* one process: both sides are the same computation */
    yoto_config cfg;
    arch_tiny(&cfg, 16, 3, 2, 2, 4, 3, 0.1, OUT_BERNOULLI);
    arch_train_defaults(&cfg, 1e-3, 0.5, 512);
    cfg.experiment.seed = SEED;
    cfg.train.allreduce = overlap ? ALLREDUCE_BUCKETED : ALLREDUCE_BLOCKING;
    cfg.train.bucket_mb = 64.0 * sizeof(real) / 1048576.0; /* 64-element buckets: many */

    /* the reference: one process, the whole batch, the model called directly */
    vae_model *ref = model_create(&cfg.model, BATCH);
    model_init_params(ref, SEED);
    batch_data all;
    make_batch(ref, &cfg, P, &all);
    model_forward(ref, BATCH, all.x, all.cond, all.eps);
    model_backward(ref, all.wkl, all.wrec, 1.0 / BATCH, false);
    real *ref_grad = malloc(ref->params.total * sizeof(real));
    memcpy(ref_grad, ref->params.grad, ref->params.total * sizeof(real));
    adam_params ap = optim_adam_params(&cfg.optimizer);
    optim_adam_step(&ref->params, &ap, STEP + 1, optim_lr(&cfg.optimizer, STEP));

    /* this rank's part through the shipped step */
    vae_model *m = model_create(&cfg.model, n);
    model_init_params(m, SEED);
    trainer *t = trainer_create(m, &cfg, r, P);
    real *x = slice_x(m, &all, r * n, n);
    step_sums sums;
    TU_ASSERT_ALL_OK(trainer_step(t, STEP, x, YT_OK, false, &sums));
    TU_ASSERT_ALL(sums.images == BATCH && !sums.stop);
    /* the draws are the ones rebuilt from the keys */
    TU_ASSERT_ALL(memcmp(trainer_w_kl(t), all.wkl + r * n, (size_t)n * sizeof(real)) == 0);
    TU_ASSERT_ALL(memcmp(trainer_eps(t), all.eps + (size_t)r * n * m->latent,
                         (size_t)n * m->latent * sizeof(real)) == 0);
    long buckets = 0;
    trainer_comm_stats(t, NULL, &buckets);
    if (overlap) TU_ASSERT_ALL(buckets > 10);
    double loss_ref = 0;
    for (int i = 0; i < BATCH; i++)
        loss_ref += all.wrec[i] * ref->recon[i] + all.wkl[i] * ref->kl[i];
    double gerr = worst_tensor_err(&m->params, m->params.grad, ref_grad);
    double perr = worst_tensor_err(&m->params, m->params.param, ref->params.param);
    double lerr = fabs(sums.loss - loss_ref) / fabs(loss_ref);
    print_message("# np=%d overlap=%d: gradient %.2e, parameters after Adam %.2e, summed loss "
                  "%.2e (max-normalised differences)\n",
                  P, overlap, gerr, perr, lerr);
    TU_ASSERT_ALL(gerr <= 1e-5);
    TU_ASSERT_ALL(perr <= 1e-5);
    TU_ASSERT_ALL(lerr <= 1e-5);
    trainer_free(t);
    free(x);
    free(ref_grad);
    free(all.x);
    free(all.cond);
    free(all.eps);
    free(all.wkl);
    free(all.wrec);
    model_free(m);
    model_free(ref);
}

static void test_bucketed_overlap(void **state) {
    (void)state;
    check(true);
}

static void test_blocking(void **state) {
    (void)state;
    check(false);
}

/* The bucketed allreduce on buffers large enough for Open MPI's ring (4+
 * ranks, buckets of 64 KiB or more: dist.c sends from a copy), small ones
 * (binomial) and one bucket (the blocking path after a polled barrier,
 * dist.h), against the exact sum: small integers, so any order adds them
 * exactly. */
static void test_sync_exact(void **state) {
    (void)state;
    const int P = dist_size(), r = dist_rank();
    const size_t n = 300001; /* 1.2 MB, not a multiple of the bucket */
    const size_t buckets[3] = {100000, 1000, n};
    real *buf = malloc(n * sizeof *buf);
    for (int b = 0; b < 3; b++) {
        for (size_t i = 0; i < n; i++) buf[i] = (real)((i * 7 + (size_t)r * 3) % 101);
        dist_sync *s = dist_sync_create(buf, n, buckets[b], true);
        dist_sync_begin(s);
        dist_sync_ready(s, n / 2); /* the upper half first, as backward does */
        dist_sync_ready(s, 0);
        dist_sync_finish(s);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            double want = 0;
            for (int q = 0; q < P; q++) want += (double)((i * 7 + (size_t)q * 3) % 101);
            bad += !((double)buf[i] == want);
        }
        print_message("# np=%d bucket %zu: %zu of %zu sums wrong\n", P, buckets[b], bad, n);
        TU_ASSERT_ALL(bad == 0);
        dist_sync_free(s);
    }
    free(buf);
}

int main(int argc, char **argv) {
    tu_mpi_init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucketed_overlap),
        cmocka_unit_test(test_blocking),
        cmocka_unit_test(test_sync_exact),
    };
    return TU_MPI_RUN("dataparallel", tests);
}
