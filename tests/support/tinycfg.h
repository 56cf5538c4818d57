/* tinycfg.h — small model configs built in C for tests that need a model
 * but not a YAML file. */
#ifndef YOTO_TINYCFG_H
#define YOTO_TINYCFG_H

#include "config.h"

/* 16x16xC Bernoulli (C = 3) or Gaussian (channels_out 6) model like the
 * golden tiny ones: 2 blocks x layers, base 4, latent 3, FiLM hidden [8],
 * log-uniform beta in [0.5, 512], Adam lr 1e-3, batch_size = batch. */
void tinycfg_make(yoto_config *cfg, bool gaussian, int layers_per_block, int batch);

#endif
