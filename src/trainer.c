/* trainer.c — one data-parallel training step (see trainer.h). */
#include "trainer.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "layers.h"
#include "loss.h"
#include "optim.h"
#include "par.h"
#include "rng.h"
#include "watchdog.h"

/* threads that check the gradient for non-finite values */
#define PAR_MAX_FLAGS 64

struct trainer {
    vae_model *m;
    cfg_loss_weights lw;
    cfg_optimizer opt;
    adam_params adam;
    uint64_t seed;
    int rank, world, batch, latent;
    double scale; /* 1 / global batch */
    dist_sync *sync;
    bool bucketed;                   /* train.allreduce: bucketed */
    real *w_kl, *w_rec, *cond, *eps; /* [B], [B], [B][2], [B][L] */
    double lr;
    step_times times;
};

int trainer_batch_per_rank(const yoto_config *cfg, int world, int *batch) {
    long b = cfg->train.batch_per_rank;
    if (b <= 0) {
        if (cfg->train.batch_size % world != 0)
            return yt_fail(YT_ERR_USAGE,
                           "train.batch_size %ld does not divide over %d ranks (%s); use a "
                           "multiple of %d or set train.batch_per_rank",
                           cfg->train.batch_size, world, config_where(cfg, "train.batch_size"),
                           world);
        b = cfg->train.batch_size / world;
    }
    *batch = (int)b;
    return YT_OK;
}

static void grad_ready(void *ctx, size_t lo) {
    dist_sync_ready(ctx, lo);
}

trainer *trainer_create(vae_model *m, const yoto_config *cfg, int rank, int world) {
    trainer *t = yt_calloc(1, sizeof *t);
    t->m = m;
    t->lw = cfg->loss_weights;
    t->opt = cfg->optimizer;
    t->adam = optim_adam_params(&cfg->optimizer);
    t->seed = cfg->experiment.seed;
    t->rank = rank;
    t->world = world;
    t->batch = m->max_batch;
    t->latent = m->latent;
    t->scale = 1.0 / ((double)t->batch * world);
    size_t bucket = (size_t)(cfg->train.bucket_mb * 1048576.0 / sizeof(real));
    const dist_sync_mode mode = cfg->train.allreduce == ALLREDUCE_SHARDED    ? DIST_SYNC_SHARDED
                                : cfg->train.allreduce == ALLREDUCE_BUCKETED ? DIST_SYNC_BUCKETED
                                                                             : DIST_SYNC_BLOCKING;
    t->sync = dist_sync_create(m->params.grad, m->params.total, bucket, mode);
    t->bucketed = mode == DIST_SYNC_BUCKETED;
    dist_sync_share(t->sync, &m->params.grad, &m->params.param);
    m->grad_ready = grad_ready;
    m->grad_ready_ctx = t->sync;
    const size_t B = (size_t)t->batch;
    t->w_kl = yt_malloc(B * sizeof *t->w_kl);
    t->w_rec = yt_malloc(B * sizeof *t->w_rec);
    t->cond = yt_malloc(2 * B * sizeof *t->cond);
    t->eps = yt_malloc(B * (size_t)t->latent * sizeof *t->eps);
    return t;
}

void trainer_free(trainer *t) {
    if (!t) return;
    t->m->grad_ready = NULL;
    t->m->grad_ready_ctx = NULL;
    dist_sync_unshare(t->sync, &t->m->params.grad, &t->m->params.param);
    dist_sync_free(t->sync);
    free(t->w_kl);
    free(t->w_rec);
    free(t->cond);
    free(t->eps);
    free(t);
}

/* the latent noise of samples [i0, i1): a stream per sample, so any split
 * over threads gives the same numbers */
typedef struct {
    trainer *t;
    long step;
} eps_call;

static void eps_part(void *ctx, int th, int T) {
    const eps_call *c = ctx;
    trainer *t = c->t;
    const int L = t->latent;
    const int i0 = (int)par_split((size_t)t->batch, th, T);
    const int i1 = (int)par_split((size_t)t->batch, th + 1, T);
    for (int i = i0; i < i1; i++) {
        rng_stream e =
            rng_stream_make(t->seed, RNG_EPS, (uint32_t)c->step, (uint32_t)t->rank, (uint32_t)i);
        rng_normal_fill(&e, t->eps + (size_t)i * L, (size_t)L);
    }
}

/* a normal deviate (Philox, a log, a cosine and a square root in double)
 * costs about as much as this many of par.h's element operations */
enum { NORMAL_WORK = 100 };

void trainer_draw(trainer *t, long step) {
    const int B = t->batch, L = t->latent;
    loss_weights_sample(&t->lw, t->seed, step, t->rank, B, t->w_kl, t->w_rec, t->cond);
    /* CIFAR-10's 128 x 256 deviates took 1.4 ms of a step on one thread */
    eps_call c = {t, step};
    par_run(par_threads((size_t)B * L * NORMAL_WORK, (size_t)B), eps_part, &c);
}

/* threads split the arena (train.threads; the verdict is the same for any split) */
typedef struct {
    const real *v;
    size_t n;
    int bad[PAR_MAX_FLAGS];
} arena_pass;

static void check_part(void *ctx, int t, int T) {
    arena_pass *a = ctx;
    size_t lo = par_split(a->n, t, T), hi = par_split(a->n, t + 1, T);
    a->bad[t] = !all_finite(hi - lo, a->v + lo);
}

static bool arena_finite(const real *v, size_t n) {
    arena_pass a = {.v = v, .n = n};
    const int T = YT_MIN(par_threads(n, n), PAR_MAX_FLAGS);
    par_run(T, check_part, &a);
    for (int t = 0; t < T; t++)
        if (a.bad[t]) return false;
    return true;
}

typedef struct {
    real *v;
    size_t n;
} arena_zero;

static void zero_part(void *ctx, int t, int T) {
    arena_zero *a = ctx;
    size_t lo = par_split(a->n, t, T), hi = par_split(a->n, t + 1, T);
    memset(a->v + lo, 0, (hi - lo) * sizeof *a->v);
}

static void zero_grad(real *g, size_t n) {
    arena_zero a = {.v = g, .n = n};
    par_run(par_threads(n, n), zero_part, &a);
}

/* What the ranks agree on after the forward pass: summed over ranks. */
enum { ST_LOSS, ST_RECON, ST_KL, ST_ERROR, ST_NONFINITE, ST_STOP, ST_N };

/* Forward on this rank's batch; fills st's losses and this rank's flags. */
static void forward(trainer *t, long step, const real *x, double *st) {
    vae_model *m = t->m;
    trainer_draw(t, step);
    zero_grad(m->params.grad, m->params.total);
    model_fuse_loss(m, t->w_rec, t->scale);
    model_forward(m, t->batch, x, t->cond, t->eps);
    for (int i = 0; i < t->batch; i++) {
        st[ST_LOSS] += t->w_rec[i] * m->recon[i] + t->w_kl[i] * m->kl[i];
        st[ST_RECON] += m->recon[i];
        st[ST_KL] += m->kl[i];
    }
    if (dist_fault("nan_loss") && step >= 2) st[ST_LOSS] = NAN; /* tests */
    if (!isfinite(st[ST_LOSS])) st[ST_NONFINITE] = 1;
}

/* an input error or a non-finite loss: this rank's before the agreement,
 * any rank's after it */
static bool step_failed(const double *st) {
    return st[ST_ERROR] > 0 || st[ST_NONFINITE] > 0;
}

/* The agreed error of a step whose forward failed somewhere. */
static int forward_failure(const double *st, int input_status, double local_loss, long step) {
    if (st[ST_ERROR] > 0) return dist_agree(input_status);
    return dist_agree(isfinite(local_loss)
                          ? YT_OK
                          : yt_fail(YT_ERR_RUNTIME,
                                    "non-finite loss at step %ld; the last checkpoint is kept "
                                    "(lower optimizer.lr?)",
                                    step));
}

int trainer_step(trainer *t, long step, const real *x, int input_status, bool stop,
                 step_sums *out) {
    vae_model *m = t->m;
    step_times *tm = &t->times;
    memset(out, 0, sizeof *out);
    double t0 = yt_now();
    double st[ST_N] = {0};
    watchdog_beat(WD_FORWARD);
    dist_sync_begin(t->sync);
    if (input_status == YT_OK)
        forward(t, step, x, st);
    else
        st[ST_ERROR] = 1;
    st[ST_STOP] = stop;
    const double local_loss = st[ST_LOSS];
    const bool local_ok = !step_failed(st);
    /* The status agreement is posted now and waited for after the backward,
     * so that the ranks meet once a step (there and at the gradient), not
     * also between forward and backward: a rank that was slower in its
     * forward and one slower in its backward no longer both cost. Every
     * rank runs its backward before it learns whether another failed; a
     * rank that failed itself skips it, and a failed step is thrown away. */
    dist_agree_start(st, ST_N);
    double t1 = yt_now();
    tm->forward = t1 - t0;

    /* backward with the allreduce overlapped, then the identical update */
    double exposed0 = dist_sync_get_stats(t->sync).exposed_s;
    watchdog_beat(WD_BACKWARD);
    /* tests: a rank stopped between the agreement and its gradient, with
     * none of its buckets started in the backward (so that the other ranks
     * wait in this step's gradient allreduce, not in the next agreement) */
    const bool stop_before_grad = dist_fault("sigstop_grad") && step >= 5;
    if (stop_before_grad) m->grad_ready = NULL;
    if (local_ok) model_backward(m, t->w_kl, t->w_rec, t->scale, false);
    m->grad_ready = grad_ready;
    double in_backward = dist_sync_get_stats(t->sync).exposed_s - exposed0;
    double t2 = yt_now();
    watchdog_beat(WD_AGREE);
    dist_agree_finish();
    double t3 = yt_now();
    tm->backward = t2 - t1 - in_backward;
    tm->agree = t3 - t2;
    if (step_failed(st)) {
        /* the buckets some ranks started in their backward, finished on
         * every rank before the next collective */
        dist_sync_finish(t->sync);
        return forward_failure(st, input_status, local_loss, step);
    }

    if (stop_before_grad) raise(SIGSTOP);

    watchdog_beat(WD_GRADIENT);
    dist_sync_finish(t->sync);
    double t4 = yt_now();
    watchdog_beat(WD_UPDATE);
    /* the summed gradient this rank updates from: all of it, or its part
     * when the optimizer is sharded (dist.h) */
    size_t lo, hi;
    const real *g = dist_sync_part(t->sync, &lo, &hi);
    /* tests: a NaN in the summed gradient this rank holds (sharded, in its
     * part alone: the other ranks' parts are finite) */
    if (dist_fault("nan_grad") && step >= 2 && hi > lo) ((real *)g)[0] = NAN;
    /* every rank sees the same verdict: the gradient is the same on every
     * rank, or the ranks agree on their parts' */
    bool finite = arena_finite(g, hi - lo);
    double t4a = yt_now();
    if (dist_sync_sharded(t->sync)) finite = dist_allreduce_min_long(finite) != 0;
    double t4b = yt_now();
    tm->allreduce = t4 - t3 + in_backward + (t4b - t4a);
    if (!finite)
        return yt_fail(YT_ERR_RUNTIME,
                       "non-finite gradient at step %ld; the last checkpoint is kept", step);
    t->lr = optim_lr(&t->opt, step);
    optim_adam_part(&m->params, g, lo, hi, &t->adam, step + 1, t->lr, dist_sync_shared(t->sync));
    double t5 = yt_now();
    dist_sync_gather(t->sync, m->params.param);
    double t6 = yt_now();
    tm->allreduce += t6 - t5;
    tm->optimizer = (t4a - t4) + (t5 - t4b);
    tm->total = t6 - t0;
    *out = (step_sums){st[ST_LOSS], st[ST_RECON], st[ST_KL], (long)t->batch * t->world,
                       st[ST_STOP] > 0};
    return YT_OK;
}

const real *trainer_w_kl(const trainer *t) {
    return t->w_kl;
}
const real *trainer_w_rec(const trainer *t) {
    return t->w_rec;
}
const real *trainer_cond(const trainer *t) {
    return t->cond;
}
const real *trainer_eps(const trainer *t) {
    return t->eps;
}
double trainer_lr(const trainer *t) {
    return t->lr;
}
step_times trainer_times(const trainer *t) {
    return t->times;
}

void trainer_comm_stats(const trainer *t, double *exposed_s, long *buckets) {
    dist_sync_stats s = dist_sync_get_stats(t->sync);
    if (exposed_s) *exposed_s = s.exposed_s;
    if (buckets) *buckets = s.buckets;
}

void trainer_gather_optimizer(trainer *t) {
    dist_sync_gather(t->sync, t->m->params.adam_m);
    dist_sync_gather(t->sync, t->m->params.adam_v);
}

const real *trainer_gradient(const trainer *t, size_t *lo, size_t *hi) {
    return dist_sync_part(t->sync, lo, hi);
}

bool trainer_sharded(const trainer *t) {
    return dist_sync_sharded(t->sync);
}

bool trainer_shared(const trainer *t) {
    return dist_sync_shared(t->sync);
}

const char *trainer_sync_how(const trainer *t) {
    if (t->world == 1) return "none (one rank)";
    if (dist_sync_shared(t->sync)) return "sharded, node-shared memory";
    if (dist_sync_sharded(t->sync)) return "sharded, ring messages";
    return t->bucketed ? "bucketed, overlapped" : "blocking";
}

double trainer_comm_alone(trainer *t, int reps) {
    double best = 1e30;
    for (int k = 0; k < reps; k++) {
        dist_barrier();
        double t0 = yt_now();
        dist_sync_begin(t->sync);
        dist_sync_finish(t->sync);
        dist_sync_gather(t->sync, t->m->params.param); /* every rank's part is the same */
        best = YT_MIN(best, yt_now() - t0);
    }
    return best;
}

void trainer_reset_comm_stats(trainer *t) {
    dist_sync_reset_stats(t->sync);
}
