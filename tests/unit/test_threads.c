/* test_threads.c — threads inside a rank (train.threads, src/par.h): with
 * 1, 2 and 3 threads every kernel gives the same results up to float
 * rounding, and a given thread count gives the same bits twice.
 *
 *  - every conv route (GEMM, direct, Winograd at stride 1), conv and
 *    transposed conv, forward and backward with the fused FiLM + leaky ReLU
 *    stage, batches that split unevenly (and into fewer samples than
 *    threads);
 *  - dense, FiLM, leaky ReLU, the Bernoulli and Gaussian losses: these split
 *    independent rows, channels or samples, so their results must not depend
 *    on the thread count at all (GEMM rows aside, checked to rounding);
 *  - the whole model (CIFAR-10's architecture at a small batch): forward
 *    losses and every parameter gradient; and both with the loss fused
 *    into the tail (model_fuse_loss), against unfused, 1 and 2 threads:
 *    the same gradient bits, the losses to rounding; inference
 *    (model_reconstruct, model_losses) against model_forward's outputs
 *    and losses: the same bits;
 *  - the shipped training step (trainer_step) under 2 threads, three steps,
 *    twice: the parameters bit for bit the same;
 *  - a step's draws (trainer_draw: loss weights, conditioning, the latent
 *    noise, drawn over threads) with 1, 2 and 3 threads: the same bits;
 *  - Adam (optim_adam_part) over a whole arena and over a part of it that
 *    cuts tensors, with 1, 2 and 3 threads, the parameters stored as usual
 *    or streamed (non-temporal stores): element-wise, the same bits.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archs.h"
#include "blas.h"
#include "layers.h"
#include "loss.h"
#include "model.h"
#include "optim.h"
#include "testutil.h"
#include "trainer.h"

/* relative to the largest value: sums taken in another order */
#define TOL (TEST_DOUBLE ? 1e-12 : 2e-5)

static double rel_err(const real *a, const real *b, size_t n) {
    double m = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        m = fmax(m, fabs((double)a[i] - (double)b[i]));
        r = fmax(r, fabs((double)b[i]));
        if (!(a[i] == a[i])) return INFINITY; /* NaN */
    }
    return r > 0 ? m / r : m;
}

/* got (threads T) against want (1 thread): bits when exact, else to TOL */
static void expect_same(const char *what, int T, const real *got, const real *want, size_t n,
                        bool exact) {
    if (exact) {
        if (memcmp(got, want, n * sizeof *got) != 0)
            fail_msg("%s: %d threads differ from 1 (error %.3g), expected the same bits", what, T,
                     rel_err(got, want, n));
        return;
    }
    double e = rel_err(got, want, n);
    if (!(e <= TOL)) fail_msg("%s: %d threads against 1: error %.3g > %.3g", what, T, e, TOL);
}

static void expect_bits(const char *what, int T, const real *a, const real *b, size_t n) {
    if (memcmp(a, b, n * sizeof *a) != 0)
        fail_msg("%s: two runs with %d threads differ (error %.3g)", what, T, rel_err(a, b, n));
}

/* ---- convolutions --------------------------------------------------------------------- */

enum { C_Z, C_O, C_DX, C_DK, C_DB, C_DS, C_DT, C_N };

typedef struct {
    real *v[C_N];
    size_t n[C_N];
} conv_out;

/* forward and backward of one staged conv (or deconv) on route `route` with T threads */
static conv_out run_conv(int n, int cin, int h, int w, int cout, int stride, int route, bool deconv,
                         int T) {
    blas_set_threads(T);
    conv_geom g = conv_geom_make(n, cin, h, w, cout, stride);
    blas_set_threads(1);
    assert_int_equal(g.threads, T);
    assert_true(conv_geom_route(&g, route));
    const size_t nx = (size_t)cin * n * h * w, ny = (size_t)cout * n * g.ho * g.wo;
    const size_t nk = (size_t)cout * cin * 9;
    const int c = deconv ? cin : cout; /* the stage's side */
    const size_t nin = deconv ? ny : nx, nout = deconv ? nx : ny;
    real *x = malloc(nin * sizeof(real)), *k = malloc(nk * sizeof(real));
    real *b = malloc((size_t)c * sizeof(real)), *sc = malloc((size_t)n * c * sizeof(real));
    real *sh = malloc((size_t)n * c * sizeof(real)), *d = malloc(nout * sizeof(real));
    tu_fill(x, nin, 1);
    tu_fill(k, nk, 2);
    tu_fill(b, (size_t)c, 3);
    tu_fill(sh, (size_t)n * c, 4);
    tu_fill(d, nout, 5);
    for (int i = 0; i < n * c; i++)
        sc[i] = 1 + (real)0.25 * sh[(i * 7) % (n * c)];
    const film_stage st = {.scale = sc, .shift = sh, .lrelu = true, .alpha = (real)0.3};
    conv_out r;
    const size_t sizes[C_N] = {nout, nout, nin, nk, (size_t)c, (size_t)n * c, (size_t)n * c};
    for (int j = 0; j < C_N; j++) {
        r.n[j] = sizes[j];
        r.v[j] = calloc(sizes[j], sizeof(real));
    }
    real *work = calloc(conv_work_size(&g), sizeof(real));
    if (deconv) {
        deconv_film_forward(&g, x, k, b, &st, r.v[C_Z], r.v[C_O], work);
        deconv_film_backward(&g, x, k, &st, r.v[C_Z], d, r.v[C_DX], r.v[C_DK], r.v[C_DB], r.v[C_DS],
                             r.v[C_DT], work);
    } else {
        conv_film_forward(&g, x, k, b, &st, r.v[C_Z], r.v[C_O], work);
        conv_film_backward(&g, x, k, &st, r.v[C_Z], d, r.v[C_DX], r.v[C_DK], r.v[C_DB], r.v[C_DS],
                           r.v[C_DT], work);
    }
    free(work);
    free(x);
    free(k);
    free(b);
    free(sc);
    free(sh);
    free(d);
    return r;
}

static void free_out(conv_out *r) {
    for (int j = 0; j < C_N; j++)
        free(r->v[j]);
}

static void check_conv(int n, int cin, int h, int w, int cout, int stride, int route) {
    static const char *names[C_N] = {"z", "o", "dx", "dk", "db", "dscale", "dshift"};
    for (int deconv = 0; deconv < 2; deconv++) {
        conv_out one = run_conv(n, cin, h, w, cout, stride, route, deconv, 1);
        for (int T = 2; T <= 3; T++) {
            conv_out a = run_conv(n, cin, h, w, cout, stride, route, deconv, T);
            conv_out b = run_conv(n, cin, h, w, cout, stride, route, deconv, T);
            for (int j = 0; j < C_N; j++) {
                char what[160];
                snprintf(what, sizeof what, "%s route %d n=%d %d->%d %dx%d s%d: %s",
                         deconv ? "deconv" : "conv", route, n, cin, cout, h, w, stride, names[j]);
                expect_bits(what, T, a.v[j], b.v[j], a.n[j]);
                /* samples are independent: only the kernel and bias gradients
                 * sum over threads; OpenBLAS rounds GEMMs of other widths
                 * differently */
                bool exact = route != CONV_GEMM && j != C_DK && j != C_DB;
                expect_same(what, T, a.v[j], one.v[j], a.n[j], exact);
            }
            free_out(&a);
            free_out(&b);
        }
        free_out(&one);
    }
}

static void test_conv_threads(void **state) {
    (void)state;
    for (int route = CONV_GEMM; route <= CONV_WINOGRAD; route++) {
        check_conv(19, 16, 16, 16, 12, 1, route); /* Winograd: 3 groups of 8, 3 */
        check_conv(2, 8, 9, 7, 6, 1, route);      /* fewer samples than threads */
        if (route == CONV_WINOGRAD) continue;
        check_conv(13, 8, 16, 16, 16, 2, route);
        check_conv(5, 32, 8, 8, 64, 2, route);
    }
    check_conv(40, 16, 32, 32, 6, 1, CONV_WINOGRAD); /* CIFAR's output conv: bands of rows */
}

/* ---- dense, FiLM, element-wise, losses ------------------------------------------------- */

typedef struct {
    real *v[12];
    size_t n[12];
    double recon[2][64];
} misc_out;

/* IN x OUT: a W large enough for the transposed dense forward (layers.c) */
enum { N = 64, IN = 1024, OUT = 256, C = 12, HW = 100 };

static misc_out run_misc(int T) {
    blas_set_threads(T);
    misc_out r;
    const size_t sizes[12] = {N * OUT,
                              N * IN,
                              OUT * IN,
                              OUT,
                              (size_t)C * N * HW,
                              (size_t)C * N * HW,
                              (size_t)C * N * HW,
                              N * C,
                              N * C,
                              (size_t)C * N * HW,
                              (size_t)C * N * HW,
                              (size_t)2 * C * N * HW};
    for (int j = 0; j < 12; j++) {
        r.n[j] = sizes[j];
        r.v[j] = calloc(sizes[j], sizeof(real));
    }
    real *x = malloc((size_t)2 * C * N * HW * sizeof(real)), *w = malloc(OUT * IN * sizeof(real));
    real *b = malloc(OUT * sizeof(real)), *dy = malloc((size_t)2 * C * N * HW * sizeof(real));
    real *sc = malloc(N * C * sizeof(real)), *sh = malloc(N * C * sizeof(real));
    real *t = malloc((size_t)2 * C * N * HW * sizeof(real));
    tu_fill(x, (size_t)2 * C * N * HW, 6);
    tu_fill(w, OUT * IN, 7);
    tu_fill(b, OUT, 8);
    tu_fill(dy, (size_t)2 * C * N * HW, 9);
    tu_fill(sc, N * C, 10);
    tu_fill(sh, N * C, 12);
    tu_fill(t, (size_t)2 * C * N * HW, 11);
    real *work = malloc(N * OUT * sizeof(real));
    dense_forward(N, IN, OUT, x, w, b, r.v[0], work); /* transposed at 1 to 3 threads */
    free(work);
    dense_backward(N, IN, OUT, x, w, dy, r.v[1], r.v[2], r.v[3]);
    film_forward(C, N, HW, x, sc, sh, r.v[4]);
    film_lrelu_forward(C, N, HW, (real)0.3, x, sc, sh, r.v[5]);
    film_lrelu_backward(C, N, HW, (real)0.3, x, sc, sh, dy, r.v[6], r.v[7], r.v[8]);
    lrelu_backward((size_t)C * N * HW - 3, (real)0.2, x, dy, r.v[9]);
    loss_bernoulli_backward(C, N, HW, x, t, (const double[N]){0.5, 2}, r.v[10]);
    loss_gaussian_backward(C, N, HW, 1e-6, x, t, (const double[N]){0.25, 3}, r.v[11]);
    loss_bernoulli(C, N, HW, x, t, r.recon[0]);
    loss_gaussian(C, N, HW, 1e-6, x, t, r.recon[1]);
    blas_set_threads(1);
    free(x);
    free(w);
    free(b);
    free(dy);
    free(sc);
    free(sh);
    free(t);
    return r;
}

static void test_misc_threads(void **state) {
    (void)state;
    static const char *names[12] = {
        "dense y",     "dense dx",     "dense dw",          "dense db",
        "film y",      "film+lrelu o", "film dx",           "film dscale",
        "film dshift", "lrelu dx",     "bernoulli dlogits", "gaussian dout"};
    misc_out one = run_misc(1);
    for (int T = 2; T <= 3; T++) {
        misc_out a = run_misc(T), b = run_misc(T);
        for (int j = 0; j < 12; j++) {
            expect_bits(names[j], T, a.v[j], b.v[j], a.n[j]);
            /* the GEMMs of dense run on row blocks: to rounding */
            expect_same(names[j], T, a.v[j], one.v[j], a.n[j], j >= 4);
        }
        for (int l = 0; l < 2; l++)
            for (int i = 0; i < N; i++)
                if (a.recon[l][i] != one.recon[l][i] || b.recon[l][i] != a.recon[l][i])
                    fail_msg("%s loss of sample %d: %.17g with %d threads, %.17g with 1",
                             l ? "gaussian" : "bernoulli", i, a.recon[l][i], T, one.recon[l][i]);
        for (int j = 0; j < 12; j++) {
            free(a.v[j]);
            free(b.v[j]);
        }
    }
    for (int j = 0; j < 12; j++)
        free(one.v[j]);
}

/* ---- the model and the training step ------------------------------------------------------- */

/* batches: MB against 1 thread (the chains' groups of 8 and 2 in AVX2), MV
 * for the chains' views (groups of 16 and 2 in AVX-512, 8, 8 and 2 in AVX2:
 * more groups than threads) */
enum { MB = 10, MV = 18 };

/* Inference (model_reconstruct: model_encode and model_decode; and
 * model_losses), whose chains run each group through its thread's slot
 * (convs_view), gives the bits of model_forward's outputs and losses at
 * z = mean, whose chains keep every group for the backward */
static void check_inference(vae_model *m, int nb, const real *x, const real *cond, int T) {
    const size_t no = (size_t)m->out_c * nb * m->in_h * m->in_w, nl = (size_t)nb * m->latent;
    real *out = malloc(no * sizeof *out), *mean = malloc(nl * sizeof *mean);
    double loss[2][MV];
    model_forward(m, nb, x, cond, NULL);
    memcpy(out, m->out, no * sizeof *out);
    memcpy(mean, m->mean, nl * sizeof *mean);
    for (int i = 0; i < nb; i++)
        loss[0][i] = m->recon[i] + m->kl[i];
    memset(m->out, 0, no * sizeof *out);
    model_reconstruct(m, nb, x, cond);
    if (memcmp(m->out, out, no * sizeof *out) || memcmp(m->mean, mean, nl * sizeof *mean))
        fail_msg("%d threads: model_reconstruct's output (error %.3g) or mean (%.3g) is not "
                 "model_forward's",
                 T, rel_err(m->out, out, no), rel_err(m->mean, mean, nl));
    memset(m->out, 0, no * sizeof *out);
    model_losses(m, nb, x, cond, NULL);
    for (int i = 0; i < nb; i++)
        loss[1][i] = m->recon[i] + m->kl[i];
    if (memcmp(m->out, out, no * sizeof *out) || memcmp(loss[0], loss[1], nb * sizeof(double)))
        fail_msg("%d threads: model_losses' output or losses are not model_forward's", T);
    free(out);
    free(mean);
}

/* forward + backward of nb samples through a model (arch: CIFAR-10's or
 * Shapes3D's, whose encoders start and decoders end on sample-minor
 * chains, model.c) with T threads, the loss fused into the tail where
 * asked and possible (model_fuse_loss): losses, gradients; unfused, then
 * check_inference */
static real *model_grads(void (*arch)(yoto_config *), int T, bool fuse, int nb, double *losses,
                         size_t *total) {
    yoto_config cfg;
    arch(&cfg);
    arch_train_defaults(&cfg, 1e-3, 0.5, 64);
    blas_set_threads(T);
    vae_model *m = model_create(&cfg.model, nb);
    if (!m->dec[0].sm || !m->enc[0].sm) fail_msg("the model has no tail or no head");
    model_init_params(m, 5);
    const size_t nx = (size_t)m->in_c * nb * m->in_h * m->in_w;
    real *x = malloc(nx * sizeof *x), *cond = malloc(2 * nb * sizeof *cond);
    real *eps = malloc((size_t)nb * m->latent * sizeof *eps);
    real wk[MV], wr[MV];
    tu_fill_uniform(x, nx, -1, 1, 3, 0);
    tu_fill_normal(eps, (size_t)nb * m->latent, 1, 3, 1);
    loss_weights_sample(&cfg.loss_weights, 3, 0, 0, nb, wk, wr, cond);
    memset(m->params.grad, 0, m->params.total * sizeof(real));
    if (fuse) model_fuse_loss(m, wr, 1.0 / nb);
    model_forward(m, nb, x, cond, eps);
#ifndef YOTO_DOUBLE
    if (fuse && !m->loss_fused) fail_msg("the loss was not fused");
#endif
    model_backward(m, wk, wr, 1.0 / nb, true);
    for (int i = 0; i < nb; i++)
        losses[i] = m->recon[i] + m->kl[i];
    *total = m->params.total;
    real *g = malloc(*total * sizeof *g);
    memcpy(g, m->params.grad, *total * sizeof *g);
    if (!fuse) check_inference(m, nb, x, cond, T);
    blas_set_threads(1);
    model_free(m);
    free(x);
    free(cond);
    free(eps);
    return g;
}

static void check_model_threads(void (*arch)(yoto_config *)) {
    double l1[MV], la[MV], lb[MV];
    size_t n;
    real *one = model_grads(arch, 1, false, MB, l1, &n);
    for (int T = 1; T <= 2; T++) { /* the loss fused: the same gradients, losses to rounding */
        real *a = model_grads(arch, T, false, MV, la, &n),
             *b = model_grads(arch, T, true, MV, lb, &n);
        expect_bits("model gradient, the loss fused", T, b, a, n);
        for (int i = 0; i < MV; i++)
            if (!(fabs(la[i] - lb[i]) <= 1e-6 * fabs(la[i])))
                fail_msg("loss %d: %.17g fused, %.17g not (%d threads)", i, lb[i], la[i], T);
        free(a);
        free(b);
    }
    for (int T = 2; T <= 3; T++) {
        real *a = model_grads(arch, T, false, MB, la, &n),
             *b = model_grads(arch, T, false, MB, lb, &n);
        expect_bits("model gradient", T, a, b, n);
        /* Adam-free: the raw gradient, whose smallest entries carry the
         * most relative rounding; against the largest entry */
        expect_same("model gradient", T, a, one, n, false);
        for (int i = 0; i < MB; i++) {
            if (la[i] != lb[i]) fail_msg("loss %d: two runs with %d threads differ", i, T);
            if (!(fabs(la[i] - l1[i]) <= TOL * fabs(l1[i])))
                fail_msg("loss %d: %.17g with %d threads, %.17g with 1", i, la[i], T, l1[i]);
        }
        free(a);
        free(b);
    }
    free(one);
}

static void test_model_threads(void **state) {
    (void)state;
    if (tu_quick()) skip(); /* minutes under valgrind; the kernels' checks cover the code */
    check_model_threads(arch_cifar10);
    check_model_threads(arch_shapes3d); /* the chains: threads split their groups */
}

/* three trainer_step calls with T threads; the final parameters */
static real *train_steps(int T, size_t *total) {
    yoto_config cfg;
    arch_tiny(&cfg, 16, 3, 2, 2, 8, 4, 0.1, OUT_GAUSSIAN);
    arch_train_defaults(&cfg, 1e-3, 0.5, 64);
    cfg.train.batch_size = MB;
    blas_set_threads(T);
    vae_model *m = model_create(&cfg.model, MB);
    model_init_params(m, 7);
    trainer *t = trainer_create(m, &cfg, 0, 1);
    const size_t nx = (size_t)m->in_c * MB * m->in_h * m->in_w;
    real *x = malloc(nx * sizeof *x);
    for (long step = 0; step < 3; step++) {
        tu_fill_uniform(x, nx, -1, 1, 11, (uint32_t)step);
        step_sums sums;
        int rc = trainer_step(t, step, x, YT_OK, false, &sums);
        if (rc != YT_OK) fail_msg("step %ld: %s", step, yt_errmsg());
    }
    *total = m->params.total;
    real *p = malloc(*total * sizeof *p);
    memcpy(p, m->params.param, *total * sizeof *p);
    blas_set_threads(1);
    trainer_free(t);
    model_free(m);
    free(x);
    return p;
}

static void test_trainer_threads(void **state) {
    (void)state;
    size_t n;
    real *a = train_steps(2, &n), *b = train_steps(2, &n);
    expect_bits("parameters after 3 steps", 2, a, b, n);
    free(a);
    free(b);
}

/* trainer_draw with T threads: loss weights, conditioning and noise, copied */
enum { DRAW_B = 11, DRAW_L = 64 }; /* 704 deviates: enough to split over threads */

static real *draws(int T, size_t *n) {
    yoto_config cfg;
    arch_tiny(&cfg, 8, 1, 1, 1, 4, DRAW_L, 0.1, OUT_BERNOULLI);
    arch_train_defaults(&cfg, 1e-3, 0.5, 64);
    cfg.train.batch_size = DRAW_B;
    blas_set_threads(T);
    vae_model *m = model_create(&cfg.model, DRAW_B);
    trainer *t = trainer_create(m, &cfg, 0, 1);
    trainer_draw(t, 17);
    const size_t ne = (size_t)DRAW_B * DRAW_L, nc = (size_t)DRAW_B * 2;
    *n = ne + 2 * DRAW_B + nc;
    real *r = malloc(*n * sizeof *r);
    memcpy(r, trainer_eps(t), ne * sizeof *r);
    memcpy(r + ne, trainer_w_kl(t), DRAW_B * sizeof *r);
    memcpy(r + ne + DRAW_B, trainer_w_rec(t), DRAW_B * sizeof *r);
    memcpy(r + ne + 2 * DRAW_B, trainer_cond(t), nc * sizeof *r);
    blas_set_threads(1);
    trainer_free(t);
    model_free(m);
    return r;
}

static void test_draw_threads(void **state) {
    (void)state;
    size_t n;
    real *one = draws(1, &n);
    for (int T = 2; T <= 3; T++) {
        real *a = draws(T, &n);
        expect_bits("a step's draws", T, a, one, n);
        free(a);
    }
    free(one);
}

/* an arena of tensors of odd sizes (some conditioning), 100k elements */
static void adam_arena(arena *a) {
    arena_init(a);
    const int sizes[5] = {40001, 17, 30011, 29970, 1};
    char name[32];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "t%d", i);
        arena_add(a, name, 1, &sizes[i], i % 2 == 1, sizes[i], 1);
    }
    arena_alloc(a);
    real *bufs[4] = {a->param, a->grad, a->adam_m, a->adam_v};
    for (int b = 0; b < 4; b++)
        tu_fill_uniform(bufs[b], a->total, b == 3 ? 0 : -1, 1, 5, (uint32_t)b);
}

static void test_adam_threads(void **state) {
    (void)state;
    adam_params p = {0.9, 0.999, 1e-8, 0.1}; /* a decay that shows */
    arena ref, a;
    const size_t lo = 12345, hi = 87654; /* a part: cuts t0 and t2 */
    for (int part = 0; part < 2; part++) {
        adam_arena(&ref);
        const size_t n = ref.total, from = part ? lo : 0, to = part ? hi : n;
        optim_adam_part(&ref, ref.grad + from, from, to, &p, 3, 1e-2, false);
        /* and with the parameters streamed out (non-temporal stores): the
         * same bits too */
        for (int T = 1; T <= 3; T++)
            for (int stream = T == 1; stream < 2; stream++) {
                adam_arena(&a);
                blas_set_threads(T);
                optim_adam_part(&a, a.grad + from, from, to, &p, 3, 1e-2, stream);
                blas_set_threads(1);
                expect_same(stream ? "Adam, streamed: parameters" : "Adam: parameters", T, a.param,
                            ref.param, n, true);
                expect_same("Adam: first moments", T, a.adam_m, ref.adam_m, n, true);
                expect_same("Adam: second moments", T, a.adam_v, ref.adam_v, n, true);
                arena_free(&a);
            }
        /* outside the part nothing moved */
        arena fresh;
        adam_arena(&fresh);
        if (part) {
            assert_memory_equal(ref.param, fresh.param, lo * sizeof(real));
            assert_memory_equal(ref.adam_v + hi, fresh.adam_v + hi, (n - hi) * sizeof(real));
            assert_memory_not_equal(ref.param + lo, fresh.param + lo, (hi - lo) * sizeof(real));
        }
        arena_free(&fresh);
        arena_free(&ref);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_threads),  cmocka_unit_test(test_misc_threads),
        cmocka_unit_test(test_model_threads), cmocka_unit_test(test_trainer_threads),
        cmocka_unit_test(test_adam_threads),  cmocka_unit_test(test_draw_threads),
    };
    return TU_RUN("threads", tests);
}
