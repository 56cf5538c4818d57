/* test_dataparallel.c — the allreduced gradient of P ranks x B/P samples
 * equals the one-rank gradient of the whole batch B (same samples, same
 * betas, same noise), with the bucketed overlapped allreduce and with the
 * blocking one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "loss.h"
#include "model.h"
#include "mpi_testutil.h"
#include "rng.h"
#include "archs.h"

#define BATCH 8

typedef struct {
    real *x, *cond, *eps, *wkl, *wrec; /* the whole batch, [C][B][HW] for x */
} batch_data;

static void make_batch(const vae_model *m, const yoto_config *cfg, batch_data *b) {
    const size_t hw = (size_t)m->in_h * m->in_w, L = (size_t)m->latent;
    b->x = malloc((size_t)m->in_c * BATCH * hw * sizeof(real));
    b->cond = malloc(2 * BATCH * sizeof(real));
    b->eps = malloc(BATCH * L * sizeof(real));
    b->wkl = malloc(BATCH * sizeof(real));
    b->wrec = malloc(BATCH * sizeof(real));
    rng_stream s = rng_stream_make(3, RNG_SYNTHETIC, 0, 0, 0);
    for (size_t i = 0; i < (size_t)m->in_c * BATCH * hw; i++) b->x[i] = (real)rng_uniform(&s);
    for (size_t i = 0; i < BATCH * L; i++) b->eps[i] = (real)rng_normal(&s);
    loss_weights_sample(&cfg->loss_weights, 3, 0, 0, BATCH, b->wkl, b->wrec, b->cond);
}

/* samples [lo, lo + n) of the whole batch, in the model's layout */
static void slice(const vae_model *m, const batch_data *b, int lo, int n, batch_data *out) {
    const size_t hw = (size_t)m->in_h * m->in_w, L = (size_t)m->latent;
    out->x = malloc((size_t)m->in_c * n * hw * sizeof(real));
    for (int c = 0; c < m->in_c; c++)
        memcpy(out->x + (size_t)c * n * hw, b->x + ((size_t)c * BATCH + lo) * hw,
               (size_t)n * hw * sizeof(real));
    out->cond = b->cond + 2 * lo;
    out->eps = b->eps + L * lo;
    out->wkl = b->wkl + lo;
    out->wrec = b->wrec + lo;
}

static void sync_ready(void *ctx, size_t lo) { dist_sync_ready(ctx, lo); }

static void check(bool overlap) {
    yoto_config cfg;
    arch_tiny(&cfg, 16, 3, 2, 2, 4, 3, 0.1, OUT_BERNOULLI);
    arch_train_defaults(&cfg, 1e-3, 0.5, 512);
    const int P = dist_size(), r = dist_rank(), n = BATCH / P;
    /* the reference: one process, the whole batch */
    vae_model *ref = model_create(&cfg.model, BATCH);
    model_init_params(ref, 11);
    batch_data all;
    make_batch(ref, &cfg, &all);
    model_forward(ref, BATCH, all.x, all.cond, all.eps);
    model_backward(ref, all.wkl, all.wrec, 1.0 / BATCH, false);
    /* this rank's part, allreduced */
    vae_model *m = model_create(&cfg.model, n);
    model_init_params(m, 11);
    batch_data part;
    slice(m, &all, r * n, n, &part);
    dist_sync *s = dist_sync_create(m->params.grad, m->params.total, 64, overlap);
    m->grad_ready = sync_ready;
    m->grad_ready_ctx = s;
    dist_sync_begin(s);
    model_forward(m, n, part.x, part.cond, part.eps);
    model_backward(m, part.wkl, part.wrec, 1.0 / BATCH, false);
    dist_sync_finish(s);
    if (overlap && P > 1) TU_ASSERT_ALL(dist_sync_get_stats(s).buckets > 10);
    /* every tensor, max-normalised */
    double worst = 0;
    for (int i = 0; i < m->params.n; i++) {
        const real *g = arena_grad(&m->params, i), *h = arena_grad(&ref->params, i);
        double mx = 0, d = 0;
        for (size_t j = 0; j < m->params.t[i].size; j++) {
            mx = fmax(mx, fabs((double)h[j]));
            d = fmax(d, fabs((double)g[j] - (double)h[j]));
        }
        worst = fmax(worst, mx > 0 ? d / mx : d);
    }
    print_message("# np=%d overlap=%d: worst max-normalised gradient difference %.2e\n", P,
                  overlap, worst);
    TU_ASSERT_ALL(worst <= 1e-5);
    dist_sync_free(s);
    free(part.x);
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

int main(int argc, char **argv) {
    tu_mpi_init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucketed_overlap),
        cmocka_unit_test(test_blocking),
    };
    return TU_MPI_RUN("dataparallel", tests);
}
