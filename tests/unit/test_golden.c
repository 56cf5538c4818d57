/* test_golden.c — the model against an independent PyTorch implementation,
 * tensor by tensor: every output, every activation, every gradient, one Adam
 * step (tests/data/golden_*.h5; tolerances from their README: max-normalised
 * error <= 1e-9 in the double build, 1e-4 in float; Adam 1e-12 / 1e-6). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/convb.h" /* internal header: a blocked block's activations */
#include "ckpt.h"
#include "golden.h"
#include "loss.h"
#include "model.h"
#include "optim.h"
#include "testutil.h"

#define TOL (TEST_DOUBLE ? 1e-9 : 1e-4)
#define TOL_ADAM (TEST_DOUBLE ? 1e-12 : 1e-6)

typedef struct {
    hid_t f;
    const char *file;
    yoto_config cfg;
    vae_model *m;
    int B, H, W, C, L;
    real *x, *cond, *eps, *w_kl, *w_rec;
} fixture;

static void fixture_open(fixture *t, const char *file) {
    memset(t, 0, sizeof *t);
    t->file = file;
    t->f = golden_open(tu_data_path(file));
    golden_config(t->f, &t->cfg);
    t->B = (int)golden_attr_long(t->f, "batch");
    t->H = t->cfg.model.input_shape[0];
    t->W = t->cfg.model.input_shape[1];
    t->C = t->cfg.model.input_shape[2];
    t->L = t->cfg.model.latent_dim;
    t->m = model_create(&t->cfg.model, t->B);
    long nparams = golden_attr_long(t->f, "n_params");
    if ((long)t->m->params.total != nparams)
        fail_msg("%s: model has %zu parameters, the file %ld", file, t->m->params.total, nparams);
    if (ckpt_read_tensors(t->f, file, "/params", &t->m->params, t->m->params.param) != YT_OK)
        fail_msg("%s", yt_errmsg());

    size_t n;
    double *img = golden_read(t->f, "/inputs/images", &n, NULL, NULL);
    t->x = malloc(n * sizeof *t->x);
    golden_nhwc_to_chan(img, t->B, t->H * t->W, t->C, t->x);
    free(img);
    double *lw = golden_read(t->f, "/inputs/loss_weights", &n, NULL, NULL);
    t->w_kl = malloc(t->B * sizeof(real));
    t->w_rec = malloc(t->B * sizeof(real));
    t->cond = malloc(2 * t->B * sizeof(real));
    for (int i = 0; i < t->B; i++) {
        /* the conditioning the loss module derives from the weights */
        real wk, wr;
        loss_weights_fixed(&t->cfg.loss_weights, lw[2 * i], lw[2 * i + 1], 1, &wk, &wr, t->cond + 2 * i);
        t->w_kl[i] = wk;
        t->w_rec[i] = wr;
    }
    free(lw);
    double *cond = golden_read(t->f, "/inputs/conditioning", &n, NULL, NULL);
    tu_assert_close("inputs/conditioning", t->cond, cond, n, TOL);
    free(cond);
    double *eps = golden_read(t->f, "/inputs/eps", &n, NULL, NULL);
    t->eps = golden_to_real(eps, n);
    free(eps);
}

static void fixture_close(fixture *t) {
    model_free(t->m);
    free(t->x);
    free(t->cond);
    free(t->eps);
    free(t->w_kl);
    free(t->w_rec);
    H5Fclose(t->f);
}

/* compares a [n][k] buffer (rows) */
static void cmp_rows(fixture *t, const char *path, const real *got) {
    size_t n;
    double *ref = golden_read(t->f, path, &n, NULL, NULL);
    char name[256];
    snprintf(name, sizeof name, "%s %s", t->file, path);
    tu_assert_close(name, got, ref, n, TOL);
    free(ref);
}

/* compares a channel-major [c][B][hw] buffer with an NHWC dataset */
static void cmp_chan(fixture *t, const char *path, const real *got) {
    size_t n;
    int nd;
    hsize_t d[4];
    double *ref = golden_read(t->f, path, &n, &nd, d);
    assert_int_equal(nd, 4);
    real *nhwc = malloc(n * sizeof *nhwc);
    golden_chan_to_nhwc(got, (int)d[0], (int)(d[1] * d[2]), (int)d[3], nhwc);
    char name[256];
    snprintf(name, sizeof name, "%s %s", t->file, path);
    tu_assert_close(name, nhwc, ref, n, TOL);
    free(nhwc);
    free(ref);
}

static void cmp_doubles(fixture *t, const char *path, const double *got, size_t count) {
    size_t n;
    double *ref = golden_read(t->f, path, &n, NULL, NULL);
    assert_int_equal(n, count);
    real *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) g[i] = (real)got[i];
    char name[256];
    snprintf(name, sizeof name, "%s %s", t->file, path);
    tu_assert_close(name, g, ref, n, TOL);
    free(g);
    free(ref);
}

/* ---- activations: map a golden name to the model's buffer ------------------------ */

/* x [c][B][hw] of a block: a copy in that layout when the block keeps its
 * activations channel-blocked (YOTO_CONV_LAYOUT, src/convb.h), else NULL */
static real *planar(const fixture *t, bool blocked, int c, int hw, const real *x) {
    if (!blocked) return NULL;
    real *p = malloc((size_t)c * t->B * hw * sizeof *p);
    convb_to_chan(c, t->B, hw, x, p);
    return p;
}

/* positions of layer l's output */
static int layer_hw(const conv_block *b, int l) {
    const int s = b->stride[l];
    return b->deconv ? b->h[l] * s * b->w[l] * s
                     : ((b->h[l] + s - 1) / s) * ((b->w[l] + s - 1) / s);
}

/* layer l of a block on a sample-minor chain (conv_block.sm): its z (or its
 * stage's output: a[l], or the block's o after the last layer) in
 * [C][B][hw], a copy (model_sm_activation); else NULL */
static real *sm_copy(const fixture *t, const conv_block *b, int l, bool o) {
    if (!b->sm) return NULL;
    real *p = malloc((size_t)b->cout[l] * t->B * layer_hw(b, l) * sizeof *p);
    model_sm_activation(t->m, b, l, o, p);
    return p;
}

/* layer l's output x of block b (z[l], or its stage's output: act),
 * compared in [c][B][hw] (a block on a chain: its copy) */
static void cmp_layer(fixture *t, const char *path, const conv_block *b, int l, bool act,
                      const real *x) {
    real *p = b->sm ? sm_copy(t, b, l, act)
                    : planar(t, b->blocked, b->cout[l], layer_hw(b, l), x);
    cmp_chan(t, path, p ? p : x);
    free(p);
}

/* The model keeps a block's output (o), not FiLM's output before the leaky
 * ReLU: that one is recomputed from the kept z and the FiLM parameters. */
static void cmp_film_out(fixture *t, const char *path, const conv_block *b) {
    const size_t sz = (size_t)t->B * b->C * b->H * b->W;
    real *f = malloc(sz * sizeof *f);
    const real *z = b->z[b->nlayers - 1];
    real *p = b->sm ? sm_copy(t, b, b->nlayers - 1, false)
                    : planar(t, b->blocked, b->C, b->H * b->W, z);
    film_forward(b->C, t->B, b->H * b->W, p ? p : z, b->scale, b->shift, f);
    cmp_chan(t, path, f);
    free(f);
    free(p);
}

/* The block's output o; a lazy block never writes it (its consumer applies
 * the stage to z as it packs its input: test_convk checks that this gives
 * o's bits), so it is recomputed here from z with the block's stage. */
static void cmp_block_out(fixture *t, const char *path, const conv_block *b) {
    if (b->sm) {
        real *o = sm_copy(t, b, b->nlayers - 1, true);
        cmp_chan(t, path, o);
        free(o);
        return;
    }
    if (!b->lazy) {
        cmp_layer(t, path, b, b->nlayers - 1, true, b->o);
        return;
    }
    const size_t sz = (size_t)t->B * b->C * b->H * b->W;
    real *o = malloc(sz * sizeof *o);
    const film_stage *st = &b->stage;
    if (st->lrelu)
        film_lrelu_forward(b->C, t->B, b->H * b->W, st->alpha, b->z[b->nlayers - 1], st->scale,
                           st->shift, o);
    else
        film_forward(b->C, t->B, b->H * b->W, b->z[b->nlayers - 1], st->scale, st->shift, o);
    cmp_chan(t, path, o);
    free(o);
}

typedef struct {
    fixture *t;
    int checked;
} visit_ctx;

static const mlp *film_mlp(const conv_block *b, int scale) {
    return scale ? &b->scale_mlp : &b->shift_mlp;
}

/* Compares one dataset below /outputs/activations; fails on an unknown name. */
static void cmp_activation(fixture *t, const char *name) {
    vae_model *m = t->m;
    char path[256];
    snprintf(path, sizeof path, "/outputs/activations/%s", name);
    int blk, l, i;
    char part[16], rest[64];
    if (sscanf(name, "%15[a-z]/block%d/%63s", part, &blk, rest) == 3) {
        bool enc = strcmp(part, "encoder") == 0;
        const conv_block *b = enc ? &m->enc[blk] : &m->dec[blk];
        const char *layer = enc ? "conv%d%n" : "deconv%d%n";
        int used = 0;
        if (sscanf(rest, layer, &l, &used) == 1 && rest[used] == '\0') { cmp_layer(t, path, b, l, false, b->z[l]); return; }
        if (sscanf(rest, layer, &l, &used) == 1 && strcmp(rest + used, "_lrelu") == 0)
            { cmp_layer(t, path, b, l, true, b->a[l]); return; }
        if (strcmp(rest, "film_out") == 0) { cmp_film_out(t, path, b); return; }
        if (strcmp(rest, "lrelu") == 0) {
            cmp_block_out(t, path, b);
            return;
        }
        if (strcmp(rest, "film_scales") == 0) { cmp_rows(t, path, b->scale); return; }
        if (strcmp(rest, "film_shifts") == 0) { cmp_rows(t, path, b->shift); return; }
        if (strcmp(rest, "film_scales_mlp") == 0 || strcmp(rest, "film_shifts_mlp") == 0) {
            const mlp *p = film_mlp(b, rest[6] == 'c');
            { cmp_rows(t, path, p->pre[p->nlayers - 1]); return; }
        }
    }
    if (sscanf(name, "encoder/fc/dense%d", &i) == 1) { cmp_rows(t, path, m->enc_fc.pre[i]); return; }
    if (sscanf(name, "decoder/fc/dense%d", &i) == 1) { cmp_rows(t, path, m->dec_fc.pre[i]); return; }
    if (strcmp(name, "encoder/flatten") == 0) { cmp_rows(t, path, m->flat); return; }
    if (strcmp(name, "decoder/reshape") == 0) {
        const int *r = m->mc.decoder.reshape;
        real *p = planar(t, m->dec[m->nblocks_dec - 1].blocked, r[2], r[0] * r[1], m->reshaped);
        cmp_chan(t, path, p ? p : m->reshaped);
        free(p);
        return;
    }
    fail_msg("%s: activation %s has no counterpart in the model", t->file, name);
}

static herr_t visit(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
    (void)obj;
    visit_ctx *v = data;
    if (info->type != H5O_TYPE_DATASET) return 0;
    cmp_activation(v->t, name);
    v->checked++;
    return 0;
}

static int compare_all_activations(fixture *t) {
    if (!golden_has(t->f, "/outputs/activations")) return 0;
    hid_t g = H5Gopen2(t->f, "/outputs/activations", H5P_DEFAULT);
    visit_ctx v = {t, 0};
    H5Ovisit2(g, H5_INDEX_NAME, H5_ITER_INC, visit, &v, H5O_INFO_BASIC);
    H5Gclose(g);
    return v.checked;
}

/* ---- the checks --------------------------------------------------------------------- */

static void check_forward(fixture *t) {
    vae_model *m = t->m;
    model_forward(m, t->B, t->x, t->cond, t->eps);
    cmp_rows(t, "/outputs/encoder_code", m->enc_fc.pre[m->enc_fc.nlayers - 1]);
    cmp_rows(t, "/outputs/mean", m->mean);
    cmp_rows(t, "/outputs/sigma", m->sigma);
    cmp_rows(t, "/outputs/z", m->z);
    cmp_chan(t, "/outputs/decoder_output", m->out);
    if (golden_has(t->f, "/outputs/gaussian_mean")) {
        size_t plane = (size_t)t->B * t->H * t->W;
        cmp_chan(t, "/outputs/gaussian_mean", m->out);
        real *s = malloc(plane * t->C * sizeof *s);
        for (size_t k = 0; k < plane * t->C; k++)
            s[k] = (real)t->cfg.model.eps + softplus1(m->out[plane * t->C + k]);
        cmp_chan(t, "/outputs/gaussian_sigma", s);
        free(s);
    }
    cmp_doubles(t, "/outputs/kl", m->kl, t->B);
    cmp_doubles(t, "/outputs/reconstruction", m->recon, t->B);
    double per[64], mean = 0;
    for (int i = 0; i < t->B; i++) {
        per[i] = t->w_kl[i] * m->kl[i] + t->w_rec[i] * m->recon[i];
        mean += per[i] / t->B;
    }
    cmp_doubles(t, "/outputs/loss_per_sample", per, t->B);
    cmp_doubles(t, "/outputs/batch_loss", &mean, 1);
    int n = compare_all_activations(t);
    printf("# %s: outputs and %d activations match\n", t->file, n);
}

static void check_eval_zmean(fixture *t) {
    vae_model *m = t->m;
    model_forward(m, t->B, t->x, t->cond, NULL);
    if (golden_has(t->f, "/outputs/eval_zmean/decoder_output"))
        cmp_chan(t, "/outputs/eval_zmean/decoder_output", m->out);
    cmp_doubles(t, "/outputs/eval_zmean/kl", m->kl, t->B);
    cmp_doubles(t, "/outputs/eval_zmean/reconstruction", m->recon, t->B);
}

/* The loss fused into the decoder's output conv (model_fuse_loss: a head
 * and a tail, float builds): every gradient bit for bit the unfused pass's,
 * the reconstruction losses to float rounding (their sums run in another
 * order), and fused only where it should be. */
static void check_fused(fixture *t) {
    vae_model *m = t->m;
    const double scale = 1.0 / t->B;
    const size_t np = m->params.total, nd = (size_t)t->B * t->C * t->H * t->W;
    real *grad = malloc(np * sizeof *grad), *din = malloc(nd * sizeof *din);
    double recon[64];
    model_forward(m, t->B, t->x, t->cond, t->eps);
    memset(m->params.grad, 0, np * sizeof(real));
    model_backward(m, t->w_kl, t->w_rec, scale, true);
    memcpy(grad, m->params.grad, np * sizeof *grad);
    memcpy(din, m->dinput, nd * sizeof *din);
    memcpy(recon, m->recon, (size_t)t->B * sizeof *recon);
    /* a forward of other inputs first, so that no buffer holds what the
     * fused forward is to write (a pass that read a row before it was
     * written would read another image's) */
    real *other = malloc(nd * sizeof *other);
    for (size_t i = 0; i < nd; i++)
        other[i] = t->x[nd - 1 - i];
    model_forward(m, t->B, other, t->cond, t->eps);
    free(other);
    model_fuse_loss(m, t->w_rec, scale);
    model_forward(m, t->B, t->x, t->cond, t->eps);
#ifdef YOTO_DOUBLE
    const bool fusable = false;
#else
    const bool fusable = m->head && m->tail;
#endif
    assert_int_equal(m->loss_fused, fusable);
    memset(m->params.grad, 0, np * sizeof(real));
    model_backward(m, t->w_kl, t->w_rec, scale, true);
    for (size_t k = 0; k < np; k++)
        if (memcmp(&grad[k], &m->params.grad[k], sizeof(real)))
            fail_msg("%s: fused loss: gradient %zu %.9g, unfused %.9g", t->file, k,
                     (double)m->params.grad[k], (double)grad[k]);
    assert_memory_equal(din, m->dinput, nd * sizeof *din);
    for (int i = 0; i < t->B; i++)
        if (!(fabs(m->recon[i] - recon[i]) <= 1e-6 * fabs(recon[i])))
            fail_msg("%s: fused loss: recon %d %.17g, unfused %.17g", t->file, i, m->recon[i],
                     recon[i]);
    /* the next forward, not asked, does not fuse */
    model_forward(m, t->B, t->x, t->cond, t->eps);
    assert_false(m->loss_fused);
    printf("# %s: the loss %sfused, the same gradients\n", t->file, fusable ? "" : "not ");
    free(grad);
    free(din);
}

static void check_backward(fixture *t) {
    vae_model *m = t->m;
    model_forward(m, t->B, t->x, t->cond, t->eps);
    memset(m->params.grad, 0, m->params.total * sizeof(real));
    model_backward(m, t->w_kl, t->w_rec, 1.0 / t->B, true);
    for (int i = 0; i < m->params.n; i++) {
        char path[256];
        snprintf(path, sizeof path, "/grads/%s", m->params.t[i].name);
        cmp_rows(t, path, arena_grad(&m->params, i));
    }
    cmp_chan(t, "/grads_input/images_encoder_path", m->dinput);
    cmp_rows(t, "/grads_activations/encoder_code", m->dcode);
    cmp_rows(t, "/grads_activations/mean", m->dmean);
    cmp_rows(t, "/grads_activations/sigma", m->dsigma);
    cmp_rows(t, "/grads_activations/z", m->dz);
    /* the loss's gradient w.r.t. the decoder output, on its own */
    size_t n = (size_t)t->B * m->out_c * t->H * t->W;
    real *dout = malloc(n * sizeof *dout);
    double coef[64];
    for (int i = 0; i < t->B; i++) coef[i] = (double)t->w_rec[i] / t->B;
    if (t->cfg.model.output_distribution == OUT_BERNOULLI)
        loss_bernoulli_backward(t->C, t->B, t->H * t->W, m->out, t->x, coef, dout);
    else
        loss_gaussian_backward(t->C, t->B, t->H * t->W, t->cfg.model.eps, m->out, t->x, coef, dout);
    cmp_chan(t, "/grads_activations/decoder_output", dout);
    free(dout);
}

/* TF1's Adam (optim.h) in double, one update of n values from g */
typedef struct {
    double *p, *m, *v;
} adam_ref;

static void adam_ref_step(adam_ref *r, const real *g, size_t n, const adam_params *a, long t,
                          double lr, bool decay) {
    const double lr_t = lr * sqrt(1 - pow(a->beta2, t)) / (1 - pow(a->beta1, t));
    for (size_t j = 0; j < n; j++) {
        r->m[j] = a->beta1 * r->m[j] + (1 - a->beta1) * g[j];
        r->v[j] = a->beta2 * r->v[j] + (1 - a->beta2) * (double)g[j] * g[j];
        r->p[j] -= lr_t * r->m[j] / (sqrt(r->v[j]) + a->epsilon);
        if (decay) r->p[j] *= 1 - lr * a->weight_decay;
    }
}

/* arena (params, moments) against the reference, tensor by tensor */
static void cmp_adam(const fixture *t, const arena *a, adam_ref *ref, long step) {
    for (int i = 0; i < a->n; i++) {
        const arena_tensor *tn = &a->t[i];
        const real *bufs[3] = {a->param, a->adam_m, a->adam_v};
        double *want[3] = {ref[i].p, ref[i].m, ref[i].v};
        const char *what[3] = {"params", "adam_m", "adam_v"};
        for (int k = 0; k < 3; k++) {
            char name[256];
            snprintf(name, sizeof name, "%s: Adam step %ld, %s of %s", t->file, step, what[k],
                     tn->name);
            tu_assert_close(name, bufs[k] + tn->offset, want[k], tn->size, TOL_ADAM);
        }
    }
}

/* One Adam step from zero moments against the golden file, then a second
 * one with non-zero moments (another gradient, another learning rate)
 * against the double reimplementation above. */
static void check_adam(fixture *t) {
    vae_model *m = t->m;
    arena *a = &m->params;
    if (ckpt_read_tensors(t->f, t->file, "/grads", a, a->grad) != YT_OK)
        fail_msg("%s", yt_errmsg());
    hid_t g = H5Gopen2(t->f, "/adam", H5P_DEFAULT);
    adam_params p = {
        .beta1 = golden_attr_double(g, "beta1"),
        .beta2 = golden_attr_double(g, "beta2"),
        .epsilon = golden_attr_double(g, "epsilon"),
        .weight_decay = golden_attr_double(g, "weight_decay"),
    };
    long step = golden_attr_long(g, "t");
    double lr = golden_attr_double(g, "lr");
    H5Gclose(g);
    /* the reference starts where the arena does */
    adam_ref *ref = calloc((size_t)a->n, sizeof *ref);
    for (int i = 0; i < a->n; i++) {
        const arena_tensor *tn = &a->t[i];
        ref[i].p = malloc(3 * tn->size * sizeof(double));
        ref[i].m = ref[i].p + tn->size;
        ref[i].v = ref[i].m + tn->size;
        for (size_t j = 0; j < tn->size; j++) {
            ref[i].p[j] = a->param[tn->offset + j];
            ref[i].m[j] = a->adam_m[tn->offset + j];
            ref[i].v[j] = a->adam_v[tn->offset + j];
        }
    }
    optim_adam_step(a, &p, step, lr);
    bool decay[256];
    assert_true(a->n <= 256);
    for (int i = 0; i < a->n; i++) {
        char path[256];
        snprintf(path, sizeof path, "/params_after_step/%s", a->t[i].name);
        hid_t ds = H5Dopen2(t->f, path, H5P_DEFAULT);
        long applied = golden_attr_long(ds, "weight_decay_applied");
        H5Dclose(ds);
        if (applied != !a->t[i].conditioning)
            fail_msg("%s: weight decay %s on %s", t->file, applied ? "expected" : "not expected",
                     a->t[i].name);
        decay[i] = applied;
        size_t n;
        double *want = golden_read(t->f, path, &n, NULL, NULL);
        tu_assert_close(path, arena_param(a, i), want, n, TOL_ADAM);
        free(want);
        adam_ref_step(&ref[i], arena_grad(a, i), a->t[i].size, &p, step, lr, decay[i]);
    }
    cmp_adam(t, a, ref, step);
    /* step 2: g2 = -0.7 g + 0.5 g(shifted), so moments and gradient disagree */
    real *g1 = malloc(a->total * sizeof *g1);
    memcpy(g1, a->grad, a->total * sizeof *g1);
    for (size_t j = 0; j < a->total; j++)
        a->grad[j] = (real)(-0.7 * g1[j] + 0.5 * g1[(j * 7 + 3) % a->total]);
    optim_adam_step(a, &p, step + 1, 0.5 * lr);
    for (int i = 0; i < a->n; i++)
        adam_ref_step(&ref[i], arena_grad(a, i), a->t[i].size, &p, step + 1, 0.5 * lr, decay[i]);
    cmp_adam(t, a, ref, step + 1);
    for (int i = 0; i < a->n; i++)
        free(ref[i].p);
    free(ref);
    free(g1);
}

static void test_tiny_bernoulli(void **state) {
    (void)state;
    fixture t;
    fixture_open(&t, "golden_tiny_bernoulli.h5");
    check_forward(&t);
    check_eval_zmean(&t);
    check_backward(&t);
    check_fused(&t);
    check_adam(&t);
    fixture_close(&t);
}

static void test_tiny_gaussian(void **state) {
    (void)state;
    fixture t;
    fixture_open(&t, "golden_tiny_gaussian.h5");
    check_forward(&t);
    check_eval_zmean(&t);
    check_backward(&t);
    check_fused(&t);
    check_adam(&t);
    fixture_close(&t);
}

/* The real Shapes3D architecture: forward only, and its size. */
static void test_shapes3d_forward(void **state) {
    (void)state;
    fixture t;
    fixture_open(&t, "golden_shapes3d_forward.h5");
    assert_int_equal(t.m->params.total, 755095);
    assert_int_equal(arena_conditioning_size(&t.m->params), 135648);
    /* REFERENCE.md: 6.78 M forward multiply-adds, about 40.2 M training FLOPs */
    double macs = model_forward_macs(t.m), flops = model_train_flops(t.m);
    assert_true(fabs(macs - 6782464) < 1);
    assert_true(fabs(flops / 40.2e6 - 1) < 0.002);
    check_forward(&t);
    check_eval_zmean(&t);
    fixture_close(&t);
}

/* The same checks with every block the channel-blocked kernels fit
 * (src/convb.h) kept in their layout (YOTO_CONV_LAYOUT=blocked; the default
 * blocks only in the AVX-512 build): every activation and gradient against
 * the same golden tensors. Last: a failure leaves the variable set. */
static void test_blocked_layout(void **state) {
    setenv("YOTO_CONV_LAYOUT", "blocked", 1);
    test_tiny_bernoulli(state);
    test_tiny_gaussian(state);
    test_shapes3d_forward(state);
    unsetenv("YOTO_CONV_LAYOUT");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_bernoulli),
        cmocka_unit_test(test_tiny_gaussian),
        cmocka_unit_test(test_shapes3d_forward),
        cmocka_unit_test(test_blocked_layout),
    };
    return TU_RUN("golden", tests);
}
