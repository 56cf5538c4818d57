/* loss.h — per-sample losses of the VAE and the loss-weight samplers.
 *
 * Reconstruction (Bernoulli or Gaussian negative log-likelihood summed over
 * pixels and channels) and KL(q(z|x) || N(0, I)) summed over latents, one
 * number per sample; their gradients scaled per sample, so that the model's
 * backward pass gets d(sum_i coef_i * loss_i). Sums are taken in double.
 *
 * Layout: images and decoder outputs are [C][n][hw] (see layers.h).
 */
#ifndef YOTO_LOSS_H
#define YOTO_LOSS_H

#include <stdint.h>

#include "common.h"
#include "config.h"

/* Bernoulli: recon[i] = sum_{c,p} softplus(l) - x l over logits [c][n][hw]. */
void loss_bernoulli(int c, int n, int hw, const real *logits, const real *x, double *recon);
/* dlogits = coef[i] * (sigmoid(l) - x) */
void loss_bernoulli_backward(int c, int n, int hw, const real *logits, const real *x,
                             const double *coef, real *dlogits);

/* 0.5 log(2 pi), the Gaussian NLL's constant per element */
#define HALF_LOG_2PI 0.91893853320467274178

/* Gaussian: out [2c][n][hw] = (means, raw sigmas); s = eps + softplus(raw);
 * recon[i] = sum 0.5 log(2 pi) + log s + 0.5 ((x - mu) / s)^2 */
void loss_gaussian(int c, int n, int hw, double eps, const real *out, const real *x,
                   double *recon);
void loss_gaussian_backward(int c, int n, int hw, double eps, const real *out, const real *x,
                            const double *coef, real *dout);

/* KL per sample: sum_j 0.5 (mu^2 + sigma^2 - 1) - log sigma; mu, sigma [n][latent] */
void loss_kl(int n, int latent, const real *mu, const real *sigma, double *kl);
/* dmu += coef[i] mu, dsigma += coef[i] (sigma - 1/sigma) (accumulated) */
void loss_kl_backward(int n, int latent, const real *mu, const real *sigma, const double *coef,
                      real *dmu, real *dsigma);

/* ---- loss weights --------------------------------------------------------------
 * One (w_kl, w_rec) per sample (loss_weights.per_sample) or one per batch,
 * drawn from the configured distributions with the stream
 * (seed, RNG_LOSS_WEIGHTS, step, rank, sample); optionally divided by their
 * geometric mean; cond [n][2] = (f(w_kl), f(w_rec)), f = log or identity. */
void loss_weights_sample(const cfg_loss_weights *lw, uint64_t seed, long step, int rank, int n,
                         real *w_kl, real *w_rec, real *cond);
/* The same weights for every sample: (w_kl, w_rec) given (eval, sampling). */
void loss_weights_fixed(const cfg_loss_weights *lw, double w_kl, double w_rec, int n, real *wkl_out,
                        real *wrec_out, real *cond);

#endif
