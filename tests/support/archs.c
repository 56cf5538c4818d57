/* archs.c — configs and random fills for the numerics tests (see archs.h). */
#include "archs.h"

#include <string.h>

static void ints(cfg_ints *dst, int n, const long *v) {
    dst->n = n;
    for (int i = 0; i < n; i++)
        dst->v[i] = v[i];
}

/* what every architecture shares: REFERENCE.md's constants */
static void common_model(yoto_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->model.eps = 1e-6;
    cfg->model.alpha = 0.3;
    cfg->model.dense_alpha = 0.2;
    cfg->model.final_sigmoid = false;
    cfg->model.conditioning.type = COND_FILM;
    cfg->model.conditioning.scales_add = 1.0;
    cfg->model.conditioning.shifts_add = 0.0;
    cfg->loss_weights.transform = TRANSFORM_LOG;
}

static void net(cfg_net *n, int blocks, int layers, int base, long fc0, long fc1) {
    n->num_blocks = blocks;
    n->layers_per_block = layers;
    n->base_channels = base;
    long fc[2] = {fc0, fc1};
    ints(&n->fc_sizes, 2, fc);
}

void arch_shapes3d(yoto_config *cfg) {
    common_model(cfg);
    cfg->model.input_shape[0] = cfg->model.input_shape[1] = 64;
    cfg->model.input_shape[2] = 3;
    cfg->model.latent_dim = 10;
    cfg->model.output_distribution = OUT_BERNOULLI;
    cfg->model.kernel_init = INIT_FAN_IN;
    net(&cfg->model.encoder, 4, 1, 8, 256, 20);
    net(&cfg->model.decoder, 4, 1, 8, 256, 1024);
    cfg->model.decoder.reshape[0] = cfg->model.decoder.reshape[1] = 4;
    cfg->model.decoder.reshape[2] = 64;
    cfg->model.decoder.channels_out = 3;
    long hidden[1] = {256};
    ints(&cfg->model.conditioning.hidden_sizes, 1, hidden);
    cfg->model.conditioning.scales_mult = 0.01;
    cfg->model.conditioning.shifts_mult = 0.01;
}

void arch_cifar10(yoto_config *cfg) {
    common_model(cfg);
    cfg->model.input_shape[0] = cfg->model.input_shape[1] = 32;
    cfg->model.input_shape[2] = 3;
    cfg->model.latent_dim = 256;
    cfg->model.output_distribution = OUT_GAUSSIAN;
    cfg->model.kernel_init = INIT_FAN_AVG;
    net(&cfg->model.encoder, 3, 2, 16, 512, 512);
    net(&cfg->model.decoder, 3, 2, 16, 512, 1024);
    cfg->model.decoder.reshape[0] = cfg->model.decoder.reshape[1] = 4;
    cfg->model.decoder.reshape[2] = 64;
    cfg->model.decoder.channels_out = 6;
    long hidden[1] = {512};
    ints(&cfg->model.conditioning.hidden_sizes, 1, hidden);
    cfg->model.conditioning.scales_mult = 0.1;
    cfg->model.conditioning.shifts_mult = 0.1;
}

void arch_tiny(yoto_config *cfg, int size, int channels, int blocks, int layers, int base,
               int latent, double film, cfg_output out) {
    common_model(cfg);
    cfg->model.input_shape[0] = cfg->model.input_shape[1] = size;
    cfg->model.input_shape[2] = channels;
    cfg->model.latent_dim = latent;
    cfg->model.output_distribution = out;
    cfg->model.kernel_init = out == OUT_GAUSSIAN ? INIT_FAN_AVG : INIT_FAN_IN;
    int last_c = base << (blocks - 1), last_hw = size >> blocks;
    net(&cfg->model.encoder, blocks, layers, base, 16, 2 * latent);
    net(&cfg->model.decoder, blocks, layers, base, 16, (long)last_c * last_hw * last_hw);
    cfg->model.decoder.reshape[0] = cfg->model.decoder.reshape[1] = last_hw;
    cfg->model.decoder.reshape[2] = last_c;
    cfg->model.decoder.channels_out = out == OUT_GAUSSIAN ? 2 * channels : channels;
    long hidden[1] = {8};
    ints(&cfg->model.conditioning.hidden_sizes, 1, hidden);
    cfg->model.conditioning.scales_mult = film;
    cfg->model.conditioning.shifts_mult = film;
}

void arch_train_defaults(yoto_config *cfg, double lr, double beta_lo, double beta_hi) {
    cfg->optimizer.lr = lr;
    cfg->optimizer.beta1 = 0.9;
    cfg->optimizer.beta2 = 0.999;
    cfg->optimizer.epsilon = 1e-8;
    cfg->optimizer.decay_factor = 0.5;
    cfg->optimizer.decay_steps.n = 0;
    cfg->optimizer.weight_decay = 0;
    cfg->loss_weights.mode = LW_YOTO;
    cfg->loss_weights.per_sample = true;
    cfg->loss_weights.kl.distribution = DIST_LOG_UNIFORM;
    cfg->loss_weights.kl.low = beta_lo;
    cfg->loss_weights.kl.high = beta_hi;
    cfg->loss_weights.reconstruction.distribution = DIST_LOG_UNIFORM;
    cfg->loss_weights.reconstruction.low = 0.999;
    cfg->loss_weights.reconstruction.high = 1.001;
    cfg->loss_weights.transform = TRANSFORM_LOG;
    cfg->loss_weights.normalize = false;
    cfg->train.allreduce = ALLREDUCE_BUCKETED;
    cfg->train.bucket_mb = 25.0;
}

void tu_fill_uniform(real *x, size_t n, double lo, double hi, uint64_t seed, uint32_t a) {
    rng_stream s = rng_stream_make(seed, RNG_SYNTHETIC, a, 0, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = (real)(lo + (hi - lo) * rng_uniform(&s));
}

void tu_fill_normal(real *x, size_t n, double std, uint64_t seed, uint32_t a) {
    rng_stream s = rng_stream_make(seed, RNG_SYNTHETIC, a, 0, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = (real)(std * rng_normal(&s));
}
