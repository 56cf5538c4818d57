/* test_dataparallel.c — the shipped training step (trainer_step) on P ranks
 * x B/P samples each equals one process computing the whole batch of B with
 * the same samples, loss weights and noise: the allreduced gradient, and the
 * parameters and Adam moments after the update, with the bucketed overlapped
 * allreduce, the blocking one, and the sharded optimizer (each rank sums and
 * updates its part; a bucketed arena of one bucket runs so too). At 2 ranks
 * the sharded step and the blocking one give the same bits.
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

static void free_batch(batch_data *b) {
    free(b->x);
    free(b->cond);
    free(b->eps);
    free(b->wkl);
    free(b->wrec);
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

/* worst max-normalised difference over the arena's tensors, within elements
 * [lo, hi) (got[0] is element lo; want is the whole arena). NaN-safe: a NaN
 * makes it NaN, which fails `<= tol`. */
static double worst_part_err(const arena *a, const real *got, size_t lo, size_t hi,
                             const real *want) {
    double worst = 0;
    for (int i = 0; i < a->n; i++) {
        const arena_tensor *t = &a->t[i];
        size_t from = t->offset > lo ? t->offset : lo;
        size_t to = t->offset + t->size < hi ? t->offset + t->size : hi;
        if (from >= to) continue;
        double *ref = malloc((to - from) * sizeof *ref);
        for (size_t j = from; j < to; j++)
            ref[j - from] = want[j];
        double e = tu_max_norm_err(got + (from - lo), ref, to - from);
        worst = isnan(e) || e > worst ? e : worst;
        free(ref);
    }
    return worst;
}

static double worst_tensor_err(const arena *a, const real *got, const real *want) {
    return worst_part_err(a, got, 0, a->total, want);
}

/* mode, and buckets of bucket_elems elements */
static void check(cfg_allreduce mode, double bucket_elems) {
    const int P = dist_size(), r = dist_rank(), n = BATCH / P;
    if (P == 1) skip(); /* one process: both sides are the same computation */
    const bool overlap = mode == ALLREDUCE_BUCKETED && bucket_elems < 1e6;
    yoto_config cfg;
    arch_tiny(&cfg, 16, 3, 2, 2, 4, 3, 0.1, OUT_BERNOULLI);
    arch_train_defaults(&cfg, 1e-3, 0.5, 512);
    cfg.experiment.seed = SEED;
    cfg.train.allreduce = mode;
    cfg.train.bucket_mb = bucket_elems * sizeof(real) / 1048576.0;

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
    size_t lo, hi;
    const real *g = trainer_gradient(t, &lo, &hi);
    const bool sharded = mode == ALLREDUCE_SHARDED || (mode == ALLREDUCE_BUCKETED && !overlap);
    /* sharded: each rank holds about 1/P of the summed gradient, together all of it */
    double held = (double)(hi - lo), held_all = held;
    dist_allreduce_sum_double(&held_all, 1);
    double gerr = worst_part_err(&m->params, g, lo, hi, ref_grad);
    trainer_gather_optimizer(t);
    double perr = worst_tensor_err(&m->params, m->params.param, ref->params.param);
    double merr = worst_tensor_err(&m->params, m->params.adam_m, ref->params.adam_m);
    double verr = worst_tensor_err(&m->params, m->params.adam_v, ref->params.adam_v);
    double lerr = fabs(sums.loss - loss_ref) / fabs(loss_ref);
    print_message("# np=%d mode=%d buckets=%ld: gradient %.2e (elements [%zu, %zu) of %zu), "
                  "parameters after Adam %.2e, moments %.2e %.2e, summed loss %.2e "
                  "(max-normalised differences)\n",
                  P, (int)mode, buckets, gerr, lo, hi, m->params.total, perr, merr, verr, lerr);
    TU_ASSERT_ALL(sharded ? held < (double)m->params.total && held_all == (double)m->params.total
                          : held == (double)m->params.total);
    TU_ASSERT_ALL(gerr <= 1e-5);
    TU_ASSERT_ALL(perr <= 1e-5);
    TU_ASSERT_ALL(merr <= 1e-5 && verr <= 1e-5);
    TU_ASSERT_ALL(lerr <= 1e-5);
    trainer_free(t);
    free(x);
    free(ref_grad);
    free_batch(&all);
    model_free(m);
    model_free(ref);
}

static void test_bucketed_overlap(void **state) {
    (void)state;
    check(ALLREDUCE_BUCKETED, 64); /* 64-element buckets: many */
}

static void test_blocking(void **state) {
    (void)state;
    check(ALLREDUCE_BLOCKING, 64);
}

static void test_sharded(void **state) {
    (void)state;
    check(ALLREDUCE_SHARDED, 64);
}

static void test_bucketed_one_bucket(void **state) {
    (void)state;
    check(ALLREDUCE_BUCKETED, 1e7); /* one bucket: sharded */
}

/* Three steps of the blocking step, the sharded one through the rings
 * (YOTO_SHM_DISABLE) and the sharded one through node-shared memory, from
 * the same start: the two sharded ones add the same terms in the same order,
 * so they agree bit for bit at any number of ranks; at 2 ranks every sum is
 * a + b either way, so the blocking one does too; at more ranks its order
 * differs (within float rounding). */
static void test_sharded_bits(void **state) {
    (void)state;
    const int P = dist_size(), r = dist_rank(), n = BATCH / P;
    if (P == 1) skip();
    vae_model *m[3];
    for (int k = 0; k < 3; k++) {
        yoto_config cfg;
        arch_tiny(&cfg, 16, 3, 2, 2, 4, 3, 0.1, OUT_GAUSSIAN);
        arch_train_defaults(&cfg, 1e-3, 0.5, 512);
        cfg.experiment.seed = SEED;
        cfg.train.allreduce = k ? ALLREDUCE_SHARDED : ALLREDUCE_BLOCKING;
        m[k] = model_create(&cfg.model, n);
        model_init_params(m[k], SEED);
        batch_data all;
        make_batch(m[k], &cfg, P, &all);
        real *x = slice_x(m[k], &all, r * n, n);
        if (k == 1) setenv("YOTO_SHM_DISABLE", "1", 1);
        trainer *t = trainer_create(m[k], &cfg, r, P);
        unsetenv("YOTO_SHM_DISABLE");
        TU_ASSERT_ALL(trainer_shared(t) == (k == 2)); /* the tests' ranks share a node */
        step_sums sums;
        for (long step = 0; step < 3; step++)
            TU_ASSERT_ALL_OK(trainer_step(t, step, x, YT_OK, false, &sums));
        trainer_gather_optimizer(t);
        trainer_free(t);
        free(x);
        free_batch(&all);
    }
    const arena *a = &m[0]->params, *b = &m[1]->params, *c = &m[2]->params;
    const size_t bytes = a->total * sizeof(real);
    TU_ASSERT_ALL(memcmp(b->param, c->param, bytes) == 0);
    TU_ASSERT_ALL(memcmp(b->adam_m, c->adam_m, bytes) == 0);
    TU_ASSERT_ALL(memcmp(b->adam_v, c->adam_v, bytes) == 0);
    if (P == 2) {
        TU_ASSERT_ALL(memcmp(a->param, b->param, bytes) == 0);
        TU_ASSERT_ALL(memcmp(a->adam_m, b->adam_m, bytes) == 0);
        TU_ASSERT_ALL(memcmp(a->adam_v, b->adam_v, bytes) == 0);
    }
    double perr = worst_tensor_err(a, b->param, a->param);
    double verr = worst_tensor_err(a, b->adam_v, a->adam_v);
    print_message("# np=%d: blocking vs sharded after 3 steps: parameters %.2e, second moments "
                  "%.2e; sharded through the rings and through shared memory: the same bits\n",
                  P, perr, verr);
    TU_ASSERT_ALL(perr <= 1e-5 && verr <= 1e-5);
    /* every rank holds the same parameters */
    TU_ASSERT_ALL(dist_same_everywhere(b->param, bytes));
    TU_ASSERT_ALL(dist_same_everywhere(c->param, bytes));
    for (int k = 0; k < 3; k++)
        model_free(m[k]);
}

/* dist_sync_share's exchange on its own: integer-valued gradients (exact in
 * any order) summed from every rank's shared gradient, twice in a row with
 * no update between (a failed step: dist_sync_begin waits until no rank
 * reads this one's gradient before it is written again), then the
 * parameters each rank updated in its part of the one shared copy, and
 * after dist_sync_unshare both back in the buffers they came from. */
static void test_sync_shared(void **state) {
    (void)state;
    const int P = dist_size(), r = dist_rank();
    const size_t n = 300001;
    real *g0 = malloc(n * sizeof *g0), *p0 = malloc(n * sizeof *p0);
    real *g = g0, *p = p0;
    for (size_t i = 0; i < n; i++)
        p[i] = (real)(i % 997);
    dist_sync *s = dist_sync_create(g, n, 0, DIST_SYNC_SHARDED);
    const bool shared = dist_sync_share(s, &g, &p);
    TU_ASSERT_ALL(shared == (P > 1)); /* the tests' ranks share a node */
    TU_ASSERT_ALL(shared ? g != g0 && p != p0 : g == g0 && p == p0);
    size_t moved = 0; /* the parameters came along */
    for (size_t i = 0; i < n; i++)
        moved += p[i] != (real)(i % 997);
    TU_ASSERT_ALL(moved == 0);
    size_t bad = 0, lo = 0, hi = 0;
    for (int round = 0; round < 2; round++) {
        dist_sync_begin(s);
        for (size_t i = 0; i < n; i++)
            g[i] = (real)((i * 7 + (size_t)r * 3 + (size_t)round) % 101);
        dist_sync_finish(s);
        const real *sum = dist_sync_part(s, &lo, &hi);
        for (size_t i = lo; i < hi; i++) {
            double want = 0;
            for (int q = 0; q < P; q++)
                want += (double)((i * 7 + (size_t)q * 3 + (size_t)round) % 101);
            bad += !((double)sum[i - lo] == want);
        }
    }
    for (size_t i = lo; i < hi; i++) /* this rank's part of the update */
        p[i] = (real)(i % 1000 + 1);
    dist_sync_gather(s, p);
    size_t gap = 0;
    for (size_t i = 0; i < n; i++)
        gap += p[i] != (real)(i % 1000 + 1);
    const real last = g[lo];
    dist_sync_unshare(s, &g, &p);
    TU_ASSERT_ALL(g == g0 && p == p0);
    size_t back = g0[lo] != last;
    for (size_t i = 0; i < n; i++)
        back += p0[i] != (real)(i % 1000 + 1);
    print_message("# np=%d shared: %zu of [%zu, %zu) sums wrong over 2 rounds, %zu parameters "
                  "wrong, %zu wrong after unsharing\n",
                  P, bad, lo, hi, gap, back);
    TU_ASSERT_ALL(bad == 0 && gap == 0 && back == 0);
    dist_sync_free(s);
    free(g0);
    free(p0);
}

/* The bucketed allreduce on buffers large enough for Open MPI's ring (4+
 * ranks, buckets of 64 KiB or more: dist.c sends from a copy), small ones
 * (binomial), one bucket (sharded, dist.h) and the blocking path after a
 * polled barrier, against the exact sum: small integers, so any order adds
 * them exactly. Sharded, each rank checks its part, then gathers a buffer
 * whose part r rank r alone filled. */
static void test_sync_exact(void **state) {
    (void)state;
    const int P = dist_size(), r = dist_rank();
    const size_t n = 300001; /* 1.2 MB, not a multiple of the bucket */
    const size_t buckets[5] = {100000, 1000, n, n, 1000};
    const dist_sync_mode modes[5] = {DIST_SYNC_BUCKETED, DIST_SYNC_BUCKETED, DIST_SYNC_BUCKETED,
                                     DIST_SYNC_BLOCKING, DIST_SYNC_SHARDED};
    real *buf = malloc(n * sizeof *buf), *v = malloc(n * sizeof *v);
    for (int b = 0; b < 5; b++) {
        for (size_t i = 0; i < n; i++) buf[i] = (real)((i * 7 + (size_t)r * 3) % 101);
        dist_sync *s = dist_sync_create(buf, n, buckets[b], modes[b]);
        TU_ASSERT_ALL(dist_sync_sharded(s) == (P > 1 && (b == 2 || b == 4)));
        dist_sync_begin(s);
        dist_sync_ready(s, n / 2); /* the upper half first, as backward does */
        dist_sync_ready(s, 0);
        dist_sync_finish(s);
        size_t lo, hi, bad = 0;
        const real *sum = dist_sync_part(s, &lo, &hi);
        for (size_t i = lo; i < hi; i++) {
            double want = 0;
            for (int q = 0; q < P; q++) want += (double)((i * 7 + (size_t)q * 3) % 101);
            bad += !((double)sum[i - lo] == want);
        }
        /* the parts tile [0, n) in rank order */
        long first = (long)lo, last = (long)hi;
        TU_ASSERT_ALL(dist_allreduce_min_long(first) == 0 &&
                      dist_allreduce_max_long(last) == (long)n);
        double part = (double)(hi - lo);
        dist_allreduce_sum_double(&part, 1);
        TU_ASSERT_ALL(part == (double)(dist_sync_sharded(s) ? n : (size_t)P * n));
        for (size_t i = 0; i < n; i++)
            v[i] = i >= lo && i < hi ? (real)(i % 1000 + 1) : 0;
        dist_sync_gather(s, v);
        size_t gap = 0;
        if (dist_sync_sharded(s))
            for (size_t i = 0; i < n; i++)
                gap += v[i] != (real)(i % 1000 + 1);
        print_message("# np=%d bucket %zu mode %d: %zu of [%zu, %zu) sums wrong, %zu gathered "
                      "wrong\n",
                      P, buckets[b], (int)modes[b], bad, lo, hi, gap);
        TU_ASSERT_ALL(bad == 0 && gap == 0);
        dist_sync_free(s);
    }
    free(buf);
    free(v);
}

int main(int argc, char **argv) {
    tu_mpi_init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucketed_overlap), cmocka_unit_test(test_blocking),
        cmocka_unit_test(test_sharded),          cmocka_unit_test(test_bucketed_one_bucket),
        cmocka_unit_test(test_sharded_bits),     cmocka_unit_test(test_sync_exact),
        cmocka_unit_test(test_sync_shared),
    };
    return TU_MPI_RUN("dataparallel", tests);
}
