/* archs.h — model configs built in C for the numerics tests: the two
 * reference architectures of REFERENCE.md and a tiny one, with only the
 * fields model_create / loss / optim read filled in (the YAML loader is not
 * needed), plus small helpers the gradient-check and training tests share. */
#ifndef YOTO_TEST_ARCHS_H
#define YOTO_TEST_ARCHS_H

#include <stddef.h>

#include "common.h"
#include "config.h"
#include "rng.h"

/* Shapes3D: 64x64x3, latent 10, 4 blocks x 1 layer, base 8, encoder fc
 * [256, 20], decoder fc [256, 1024] reshape [4,4,64] out 3, FiLM hidden [256],
 * 0.01 s + 1 / 0.01 t, fan_in, Bernoulli. */
void arch_shapes3d(yoto_config *cfg);
/* CIFAR-10: 32x32x3, latent 256, 3 blocks x 2 layers, base 16, encoder fc
 * [512, 512], decoder fc [512, 1024] reshape [4,4,64] out 6, FiLM hidden
 * [512], 0.1 s + 1 / 0.1 t, fan_avg, Gaussian. */
void arch_cifar10(yoto_config *cfg);
/* A tiny model of the same family: size x size x channels input, `blocks`
 * blocks of `layers` layers, base `base`, latent `latent`, encoder fc [16, 2L],
 * decoder fc [16, c*h*w of the last block], FiLM hidden [8], multiplier `film`,
 * Bernoulli (channels_out = channels) or Gaussian (2 channels). */
void arch_tiny(yoto_config *cfg, int size, int channels, int blocks, int layers, int base,
               int latent, double film, cfg_output out);

/* Training defaults: Adam (0.9, 0.999, 1e-8), no decay, YOTO loss weights
 * log-uniform w_kl in [lo, hi], w_rec in [0.999, 1.001], per sample, log. */
void arch_train_defaults(yoto_config *cfg, double lr, double beta_lo, double beta_hi);

/* n uniform numbers in [lo, hi) from the stream (seed, RNG_SYNTHETIC, a, 0, 0) */
void tu_fill_uniform(real *x, size_t n, double lo, double hi, uint64_t seed, uint32_t a);
/* n standard normal numbers from (seed, RNG_SYNTHETIC, a, 0, 0) */
void tu_fill_normal(real *x, size_t n, double std, uint64_t seed, uint32_t a);

#endif
