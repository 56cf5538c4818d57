/* tinycfg.c — see tinycfg.h. */
#include "tinycfg.h"

#include <string.h>

void tinycfg_make(yoto_config *cfg, bool gaussian, int layers_per_block, int batch) {
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->experiment.name, "tiny");
    cfg->experiment.seed = 7;
    cfg->model.input_shape[0] = cfg->model.input_shape[1] = 16;
    cfg->model.input_shape[2] = 3;
    cfg->model.latent_dim = 3;
    cfg->model.output_distribution = gaussian ? OUT_GAUSSIAN : OUT_BERNOULLI;
    cfg->model.eps = 1e-6;
    cfg->model.alpha = 0.3;
    cfg->model.dense_alpha = 0.2;
    cfg->model.kernel_init = gaussian ? INIT_FAN_AVG : INIT_FAN_IN;
    for (int k = 0; k < 2; k++) {
        cfg_net *n = k ? &cfg->model.decoder : &cfg->model.encoder;
        n->num_blocks = 2;
        n->layers_per_block = layers_per_block;
        n->base_channels = 4;
        n->fc_sizes.n = 2;
        n->fc_sizes.v[0] = 16;
        n->fc_sizes.v[1] = k ? 4 * 4 * 8 : 2 * 3;
    }
    cfg->model.decoder.reshape[0] = cfg->model.decoder.reshape[1] = 4;
    cfg->model.decoder.reshape[2] = 8;
    cfg->model.decoder.channels_out = gaussian ? 6 : 3;
    cfg->model.conditioning.type = COND_FILM;
    cfg->model.conditioning.hidden_sizes.n = 1;
    cfg->model.conditioning.hidden_sizes.v[0] = 8;
    cfg->model.conditioning.scales_mult = 0.1;
    cfg->model.conditioning.scales_add = 1;
    cfg->model.conditioning.shifts_mult = 0.1;
    cfg->loss_weights.mode = LW_YOTO;
    cfg->loss_weights.per_sample = true;
    cfg->loss_weights.kl = (cfg_weight_dist){DIST_LOG_UNIFORM, 0.5, 512, 1};
    cfg->loss_weights.reconstruction = (cfg_weight_dist){DIST_LOG_UNIFORM, 0.999, 1.001, 1};
    cfg->loss_weights.transform = TRANSFORM_LOG;
    cfg->optimizer.lr = 1e-3;
    cfg->optimizer.beta1 = 0.9;
    cfg->optimizer.beta2 = 0.999;
    cfg->optimizer.epsilon = 1e-8;
    cfg->optimizer.decay_factor = 0.5;
    cfg->train.batch_size = batch;
    cfg->train.threads = 1;
    cfg->train.bucket_mb = 0.01; /* many small buckets: exercises the overlap */
}
