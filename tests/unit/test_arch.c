/* test_arch.c — sizes of the two reference architectures (REFERENCE.md,
 * "Sizes"): parameters, conditioning parameters, forward multiply-adds and
 * training FLOPs per image, each checked twice: against the numbers of
 * REFERENCE.md, and against an independent count made here from the
 * architecture description alone (not from the model's arena or cost code).
 * Also: the parameter table follows DESIGN.md's names and shapes. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "archs.h"
#include "model.h"
#include "testutil.h"

/* ---- the independent count -------------------------------------------------------
 * For an architecture given by the config's numbers:
 *   conv / deconv 3x3, cin -> cout:     9 cin cout + cout parameters;
 *     multiply-adds: 9 cin cout per pixel of the low-resolution side (for a
 *     conv its output, for a deconv its input; stride-1 layers: same size)
 *   dense in -> out:                    in out + out;  in out MACs
 *   FiLM per block of C channels: two MLPs 2 -> hidden... -> C.
 * Training FLOPs = 2 x (forward + weight gradients + input gradients), where
 * the weight gradients cost one forward and the input gradients one forward
 * minus what is never propagated: the image (first conv) and the
 * conditioning vector (each FiLM MLP's first layer). */
typedef struct {
    long params, cond;
    double macs, no_input_grad;
} count;

static void dense_count(count *c, long in, long out, bool cond) {
    c->params += in * out + out;
    if (cond) c->cond += in * out + out;
    c->macs += (double)in * out;
}

static void conv_count(count *c, long cin, long cout, long pixels) {
    c->params += 9 * cin * cout + cout;
    c->macs += 9.0 * cin * cout * pixels;
}

static void film_count(count *c, const yoto_config *cfg, long C) {
    const cfg_ints *hid = &cfg->model.conditioning.hidden_sizes;
    for (int k = 0; k < 2; k++) { /* scale and shift MLPs */
        long in = 2;
        for (int i = 0; i <= hid->n; i++) {
            long out = i < hid->n ? hid->v[i] : C;
            dense_count(c, in, out, true);
            if (i == 0) c->no_input_grad += (double)in * out;
            in = out;
        }
    }
}

static count independent_count(const yoto_config *cfg) {
    count c = {0, 0, 0, 0};
    const cfg_net *en = &cfg->model.encoder, *de = &cfg->model.decoder;
    long h = cfg->model.input_shape[0], w = cfg->model.input_shape[1];
    long cin = cfg->model.input_shape[2];
    for (int b = 0; b < en->num_blocks; b++) {
        long C = (long)en->base_channels << b;
        h = (h + 1) / 2; /* the first conv has stride 2, SAME: ceil */
        w = (w + 1) / 2;
        for (int l = 0; l < en->layers_per_block; l++) {
            double before = c.macs;
            conv_count(&c, l == 0 ? cin : C, C, h * w);
            if (b == 0 && l == 0) c.no_input_grad += c.macs - before;
        }
        film_count(&c, cfg, C);
        cin = C;
    }
    long in = cin * h * w; /* flatten */
    for (int i = 0; i < en->fc_sizes.n; i++) {
        dense_count(&c, in, en->fc_sizes.v[i], false);
        in = en->fc_sizes.v[i];
    }
    in = cfg->model.latent_dim;
    for (int i = 0; i < de->fc_sizes.n; i++) {
        dense_count(&c, in, de->fc_sizes.v[i], false);
        in = de->fc_sizes.v[i];
    }
    h = de->reshape[0];
    w = de->reshape[1];
    cin = de->reshape[2];
    for (int b = de->num_blocks - 1; b >= 0; b--) {
        long C = (long)de->base_channels << b;
        /* stride-1 deconvs at h x w, then the last one (stride 2) at h x w
         * going to 2h x 2w: every layer's low-resolution side is h x w */
        for (int l = 0; l < de->layers_per_block; l++)
            conv_count(&c, l == 0 ? cin : C, C, h * w);
        h *= 2;
        w *= 2;
        film_count(&c, cfg, C);
        cin = C;
    }
    conv_count(&c, cin, de->channels_out, h * w); /* out conv, stride 1 */
    return c;
}

static double train_flops(const count *c) {
    return 2.0 * (3.0 * c->macs - c->no_input_grad);
}

/* ---- the checks --------------------------------------------------------------------- */

static void check_arch(const char *label, const yoto_config *cfg, long want_params, long want_cond,
                       double want_macs, double want_flops) {
    vae_model *m = model_create(&cfg->model, 1);
    count c = independent_count(cfg);
    const long params = (long)m->params.total, cond = (long)arena_conditioning_size(&m->params);
    const double macs = model_forward_macs(m), flops = model_train_flops(m);
    printf("# %s: %ld parameters (%ld conditioning); %.4g M forward MACs, %.4g M training FLOPs "
           "per image\n",
           label, params, cond, macs / 1e6, flops / 1e6);
    printf("# %s, independent count: %ld (%ld); %.4g M, %.4g M\n", label, c.params, c.cond,
           c.macs / 1e6, train_flops(&c) / 1e6);
    /* the independent count reproduces REFERENCE.md ... */
    assert_int_equal(c.params, want_params);
    assert_int_equal(c.cond, want_cond);
    if (!(fabs(c.macs / want_macs - 1) < 5e-4))
        fail_msg("count: %.6g MACs, want %.3g", c.macs, want_macs);
    if (!(fabs(train_flops(&c) / want_flops - 1) < 2e-3))
        fail_msg("count: %.6g FLOPs, want about %.3g", train_flops(&c), want_flops);
    /* ... and the model agrees with it exactly */
    assert_int_equal(params, c.params);
    assert_int_equal(cond, c.cond);
    if (!(fabs(macs - c.macs) < 0.5)) fail_msg("model %.17g MACs, count %.17g", macs, c.macs);
    if (!(fabs(flops - train_flops(&c)) < 0.5))
        fail_msg("model %.17g FLOPs, count %.17g", flops, train_flops(&c));
    /* the conditioning tensors are exactly the FiLM MLPs */
    long film = 0;
    for (int i = 0; i < m->params.n; i++) {
        const arena_tensor *t = &m->params.t[i];
        bool is_film = strstr(t->name, "/film/") != NULL;
        if (is_film != t->conditioning)
            fail_msg("%s: conditioning flag %d", t->name, t->conditioning);
        if (is_film) film += (long)t->size;
    }
    assert_int_equal(film, c.cond);
    model_free(m);
}

static void test_shapes3d_sizes(void **state) {
    (void)state;
    yoto_config cfg;
    arch_shapes3d(&cfg);
    check_arch("shapes3d", &cfg, 755095, 135648, 6.78e6, 40.2e6);
}

static void test_cifar10_sizes(void **state) {
    (void)state;
    yoto_config cfg;
    arch_cifar10(&cfg);
    check_arch("cifar10", &cfg, 1874070, 248256, 9.76e6, 58.3e6);
}

/* DESIGN.md's names and PyTorch shapes, spot-checked on Shapes3D and CIFAR-10 */
static void expect_tensor(const vae_model *m, const char *name, int ndim, const int *shape) {
    int i = arena_find(&m->params, name);
    if (i < 0) fail_msg("no parameter %s", name);
    const arena_tensor *t = &m->params.t[i];
    assert_int_equal(t->ndim, ndim);
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != shape[d])
            fail_msg("%s: dim %d is %d, want %d", name, d, t->shape[d], shape[d]);
}

static void test_parameter_table(void **state) {
    (void)state;
    yoto_config cfg;
    arch_shapes3d(&cfg);
    vae_model *m = model_create(&cfg.model, 1);
    expect_tensor(m, "encoder/block0/conv0/kernel", 4, (const int[]){8, 3, 3, 3});
    expect_tensor(m, "encoder/block3/conv0/bias", 1, (const int[]){64});
    expect_tensor(m, "encoder/block0/film/scale/dense0/kernel", 2, (const int[]){256, 2});
    expect_tensor(m, "encoder/block2/film/shift/dense1/kernel", 2, (const int[]){32, 256});
    expect_tensor(m, "encoder/block2/film/shift/dense1/bias", 1, (const int[]){32});
    expect_tensor(m, "encoder/fc/dense0/kernel", 2, (const int[]){256, 1024});
    expect_tensor(m, "encoder/fc/dense1/kernel", 2, (const int[]){20, 256});
    expect_tensor(m, "decoder/fc/dense0/kernel", 2, (const int[]){256, 10});
    expect_tensor(m, "decoder/fc/dense1/kernel", 2, (const int[]){1024, 256});
    /* transposed conv [in, out, 3, 3]; decoder block3 is applied first: 64 -> 64 */
    expect_tensor(m, "decoder/block3/deconv0/kernel", 4, (const int[]){64, 64, 3, 3});
    expect_tensor(m, "decoder/block0/deconv0/kernel", 4, (const int[]){16, 8, 3, 3});
    expect_tensor(m, "decoder/block0/film/scale/dense1/kernel", 2, (const int[]){8, 256});
    expect_tensor(m, "decoder/out/conv/kernel", 4, (const int[]){3, 8, 3, 3});
    expect_tensor(m, "decoder/out/conv/bias", 1, (const int[]){3});
    assert_int_equal(m->params.n, 90);
    model_free(m);

    arch_cifar10(&cfg);
    m = model_create(&cfg.model, 1);
    expect_tensor(m, "encoder/block0/conv1/kernel", 4, (const int[]){16, 16, 3, 3});
    expect_tensor(m, "encoder/block2/conv0/kernel", 4, (const int[]){64, 32, 3, 3});
    expect_tensor(m, "encoder/fc/dense1/kernel", 2, (const int[]){512, 512});
    expect_tensor(m, "decoder/fc/dense0/kernel", 2, (const int[]){512, 256});
    expect_tensor(m, "decoder/block2/deconv0/kernel", 4, (const int[]){64, 64, 3, 3});
    expect_tensor(m, "decoder/block1/deconv0/kernel", 4, (const int[]){64, 32, 3, 3});
    expect_tensor(m, "decoder/block1/deconv1/kernel", 4, (const int[]){32, 32, 3, 3});
    expect_tensor(m, "decoder/block0/film/shift/dense0/kernel", 2, (const int[]){512, 2});
    expect_tensor(m, "decoder/out/conv/kernel", 4, (const int[]){6, 16, 3, 3});
    assert_int_equal(m->params.n, 82);
    model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes3d_sizes),
        cmocka_unit_test(test_cifar10_sizes),
        cmocka_unit_test(test_parameter_table),
    };
    return TU_RUN("arch", tests);
}
