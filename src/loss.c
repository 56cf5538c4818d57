/* loss.c — reconstruction and KL losses per sample; loss-weight samplers. */
#include "loss.h"

#include <tgmath.h>

#include "layers.h"
#include "par.h"
#include "rng.h"
#include "simd.h"

/* sum-reduction stretch: float lanes add up at most STRETCH / VL terms */
#define STRETCH 256

#ifdef YOTO_DOUBLE
static void bernoulli_part(size_t i0, size_t i1, int c, int n, int hw, const real *logits,
                           const real *x, double *recon) {
    for (int i = (int)i0; i < (int)i1; i++) {
        double acc = 0;
        for (int ch = 0; ch < c; ch++) {
            size_t off = ((size_t)ch * n + i) * hw;
            for (int p = 0; p < hw; p++) acc += sigmoid_xent1(logits[off + p], x[off + p]);
        }
        recon[i] = acc;
    }
}

static void bernoulli_backward_part(size_t i0, size_t i1, int c, int n, int hw, const real *logits,
                                    const real *x, const double *coef, real *dlogits) {
    for (int ch = 0; ch < c; ch++)
        for (int i = (int)i0; i < (int)i1; i++) {
            size_t off = ((size_t)ch * n + i) * hw;
            real k = (real)coef[i];
            for (int p = 0; p < hw; p++)
                dlogits[off + p] = k * (sigmoid1(logits[off + p]) - x[off + p]);
        }
}
#else
/* The float build: the same formulas on vectors (layers.h's sigmoid_xent1
 * and sigmoid1), e^-|l| and log1p from simd.h; per-sample sums through float
 * lanes over short stretches, then double. */

YT_SIMD_CLONES
static void bernoulli_part(size_t i0, size_t i1, int c, int n, int hw, const real *logits,
                           const real *x, double *recon) {
    const rvec zero = {0};
    for (int i = (int)i0; i < (int)i1; i++) {
        double acc = 0;
        for (int ch = 0; ch < c; ch++) {
            size_t off = ((size_t)ch * n + i) * hw;
            const real *lp = logits + off, *tp = x + off;
            int p = 0;
            while (p + VL <= hw) {
                rvec sum = {0};
                for (int end = YT_MIN(hw, p + STRETCH); p + VL <= end; p += VL) {
                    rvec l = vload(lp + p), t = vload(tp + p);
                    rvec a = vselect(l < zero, -l, l);
                    sum += vselect(l > zero, l, zero) - l * t + vlog1p_unit(vexp_nonpos(-a));
                }
                acc += vhsum(sum);
            }
            for (; p < hw; p++) acc += sigmoid_xent1(lp[p], tp[p]);
        }
        recon[i] = acc;
    }
}

YT_SIMD_CLONES
static void bernoulli_backward_part(size_t i0, size_t i1, int c, int n, int hw, const real *logits,
                                    const real *x, const double *coef, real *dlogits) {
    const rvec zero = {0}, one = zero + 1.0f;
    for (int ch = 0; ch < c; ch++)
        for (int i = (int)i0; i < (int)i1; i++) {
            size_t off = ((size_t)ch * n + i) * hw;
            const real *lp = logits + off, *tp = x + off;
            real *dp = dlogits + off;
            const real k = (real)coef[i];
            int p = 0;
            for (; p + VL <= hw; p += VL) {
                rvec l = vload(lp + p);
                rvec e = vexp_nonpos(vselect(l < zero, l, -l)); /* e^-|l| */
                rvec sig = vselect(l >= zero, one, e) / (one + e);
                vstore(dp + p, (sig - vload(tp + p)) * k);
            }
            for (; p < hw; p++) dp[p] = k * (sigmoid1(lp[p]) - tp[p]);
        }
}
#endif

#ifdef YOTO_DOUBLE
/* The double build keeps libm (the vector approximations are float-only). */
static void gaussian_part(size_t i0, size_t i1, int c, int n, int hw, double eps, const real *out,
                          const real *x, double *recon) {
    const size_t plane = (size_t)n * hw; /* one channel of out */
    for (int i = (int)i0; i < (int)i1; i++) {
        double acc = 0;
        for (int ch = 0; ch < c; ch++) {
            size_t off = (size_t)ch * plane + (size_t)i * hw;
            const real *mu = out + off, *raw = out + (size_t)c * plane + off, *t = x + off;
            for (int p = 0; p < hw; p++) {
                double s = eps + (double)softplus1(raw[p]);
                double r = ((double)t[p] - (double)mu[p]) / s;
                acc += HALF_LOG_2PI + log(s) + 0.5 * r * r;
            }
        }
        recon[i] = acc;
    }
}

static void gaussian_backward_part(size_t i0, size_t i1, int c, int n, int hw, double eps,
                                   const real *out, const real *x, const double *coef, real *dout) {
    const size_t plane = (size_t)n * hw;
    for (int ch = 0; ch < c; ch++)
        for (int i = (int)i0; i < (int)i1; i++) {
            size_t off = (size_t)ch * plane + (size_t)i * hw;
            const real *mu = out + off, *raw = out + (size_t)c * plane + off, *t = x + off;
            real *dmu = dout + off, *draw = dout + (size_t)c * plane + off;
            double k = coef[i];
            for (int p = 0; p < hw; p++) {
                double s = eps + (double)softplus1(raw[p]);
                double d = (double)t[p] - (double)mu[p];
                dmu[p] = (real)(-k * d / (s * s));
                double ds = 1.0 / s - d * d / (s * s * s);
                draw[p] = (real)(k * ds * (double)sigmoid1(raw[p]));
            }
        }
}

void loss_kl(int n, int latent, const real *mu, const real *sigma, double *kl) {
    for (int i = 0; i < n; i++) {
        double acc = 0;
        for (int j = 0; j < latent; j++) {
            double m = mu[(size_t)i * latent + j], s = sigma[(size_t)i * latent + j];
            acc += 0.5 * (m * m + s * s - 1.0) - log(s);
        }
        kl[i] = acc;
    }
}
#else
/* The float build: softplus, log and sigmoid on vectors (simd.h: vsoftplus
 * within 5 ulp, vlog_pos 3 ulp, vsigmoid 3 ulp), in float; per-sample sums
 * through float lanes over short stretches, then double. The scalar tails
 * use libm in double, as the double build. */

/* one element of the Gaussian NLL without its constant 0.5 log(2 pi) */
static double gauss1(double eps, real mu, real raw, real t) {
    double s = eps + (double)softplus1(raw), r = ((double)t - (double)mu) / s;
    return log(s) + 0.5 * r * r;
}

YT_SIMD_CLONES
static void gaussian_part(size_t i0, size_t i1, int c, int n, int hw, double eps, const real *out,
                          const real *x, double *recon) {
    const size_t plane = (size_t)n * hw; /* one channel of out */
    const rvec ve = vbcast((real)eps);
    for (int i = (int)i0; i < (int)i1; i++) {
        double acc = HALF_LOG_2PI * c * hw;
        for (int ch = 0; ch < c; ch++) {
            size_t off = (size_t)ch * plane + (size_t)i * hw;
            const real *mu = out + off, *raw = out + (size_t)c * plane + off, *t = x + off;
            int p = 0;
            while (p + VL <= hw) {
                rvec sum = {0};
                for (int end = YT_MIN(hw, p + STRETCH); p + VL <= end; p += VL) {
                    rvec s = ve + vsoftplus(vload(raw + p));
                    rvec r = (vload(t + p) - vload(mu + p)) / s;
                    sum += vlog_pos(s) + 0.5f * r * r;
                }
                acc += vhsum(sum);
            }
            for (; p < hw; p++)
                acc += gauss1(eps, mu[p], raw[p], t[p]);
        }
        recon[i] = acc;
    }
}

/* d/dmu = -k (t - mu) / s^2, d/draw = k (1 / s - (t - mu)^2 / s^3) sigmoid(raw),
 * with r = (t - mu) / s: -k r / s and k (1 - r^2) / s sigmoid(raw) */
YT_SIMD_CLONES
static void gaussian_backward_part(size_t i0, size_t i1, int c, int n, int hw, double eps,
                                   const real *out, const real *x, const double *coef, real *dout) {
    const size_t plane = (size_t)n * hw;
    const rvec ve = vbcast((real)eps), one = (rvec){0} + 1.0f;
    for (int ch = 0; ch < c; ch++)
        for (int i = (int)i0; i < (int)i1; i++) {
            size_t off = (size_t)ch * plane + (size_t)i * hw;
            const real *mu = out + off, *raw = out + (size_t)c * plane + off, *t = x + off;
            real *dmu = dout + off, *draw = dout + (size_t)c * plane + off;
            const real k = (real)coef[i];
            int p = 0;
            for (; p + VL <= hw; p += VL) {
                rvec a = vload(raw + p);
                rvec inv = one / (ve + vsoftplus(a));
                rvec r = (vload(t + p) - vload(mu + p)) * inv;
                vstore(dmu + p, r * inv * -k);
                vstore(draw + p, (one - r * r) * inv * vsigmoid(a) * k);
            }
            for (; p < hw; p++) {
                double s = eps + (double)softplus1(raw[p]);
                double d = (double)t[p] - (double)mu[p];
                dmu[p] = (real)(-coef[i] * d / (s * s));
                draw[p] =
                    (real)(coef[i] * (1.0 / s - d * d / (s * s * s)) * (double)sigmoid1(raw[p]));
            }
        }
}

YT_SIMD_CLONES
void loss_kl(int n, int latent, const real *mu, const real *sigma, double *kl) {
    for (int i = 0; i < n; i++) {
        const real *m = mu + (size_t)i * latent, *s = sigma + (size_t)i * latent;
        double acc = -0.5 * latent;
        int j = 0;
        while (j + VL <= latent) {
            rvec sum = {0};
            for (int end = YT_MIN(latent, j + STRETCH); j + VL <= end; j += VL) {
                rvec mv = vload(m + j), sv = vload(s + j);
                sum += 0.5f * (mv * mv + sv * sv) - vlog_pos(sv);
            }
            acc += vhsum(sum);
        }
        for (; j < latent; j++)
            acc += 0.5 * ((double)m[j] * m[j] + (double)s[j] * s[j]) - log((double)s[j]);
        kl[i] = acc;
    }
}
#endif

/* threads split the samples */
enum { L_BERNOULLI, L_BERNOULLI_BWD, L_GAUSSIAN, L_GAUSSIAN_BWD };
typedef struct {
    int op, c, n, hw;
    double eps;
    const real *out, *x; /* the decoder's output, the targets */
    const double *coef;
    double *recon;
    real *dout;
} loss_call;

static void loss_part(void *ctx, int t, int T) {
    const loss_call *a = ctx;
    const size_t i0 = par_split((size_t)a->n, t, T), i1 = par_split((size_t)a->n, t + 1, T);
    switch (a->op) {
    case L_BERNOULLI:
        bernoulli_part(i0, i1, a->c, a->n, a->hw, a->out, a->x, a->recon);
        break;
    case L_BERNOULLI_BWD:
        bernoulli_backward_part(i0, i1, a->c, a->n, a->hw, a->out, a->x, a->coef, a->dout);
        break;
    case L_GAUSSIAN:
        gaussian_part(i0, i1, a->c, a->n, a->hw, a->eps, a->out, a->x, a->recon);
        break;
    case L_GAUSSIAN_BWD:
        gaussian_backward_part(i0, i1, a->c, a->n, a->hw, a->eps, a->out, a->x, a->coef, a->dout);
        break;
    }
}

static void loss_run(const loss_call *a) {
    par_run(par_threads((size_t)a->c * a->n * a->hw, (size_t)a->n), loss_part, (void *)a);
}

void loss_bernoulli(int c, int n, int hw, const real *logits, const real *x, double *recon) {
    loss_call a = {
        .op = L_BERNOULLI, .c = c, .n = n, .hw = hw, .out = logits, .x = x, .recon = recon};
    loss_run(&a);
}

void loss_bernoulli_backward(int c, int n, int hw, const real *logits, const real *x,
                             const double *coef, real *dlogits) {
    loss_call a = {.op = L_BERNOULLI_BWD,
                   .c = c,
                   .n = n,
                   .hw = hw,
                   .out = logits,
                   .x = x,
                   .coef = coef,
                   .dout = dlogits};
    loss_run(&a);
}

void loss_gaussian(int c, int n, int hw, double eps, const real *out, const real *x,
                   double *recon) {
    loss_call a = {
        .op = L_GAUSSIAN, .c = c, .n = n, .hw = hw, .eps = eps, .out = out, .x = x, .recon = recon};
    loss_run(&a);
}

void loss_gaussian_backward(int c, int n, int hw, double eps, const real *out, const real *x,
                            const double *coef, real *dout) {
    loss_call a = {.op = L_GAUSSIAN_BWD,
                   .c = c,
                   .n = n,
                   .hw = hw,
                   .eps = eps,
                   .out = out,
                   .x = x,
                   .coef = coef,
                   .dout = dout};
    loss_run(&a);
}

void loss_kl_backward(int n, int latent, const real *mu, const real *sigma, const double *coef,
                      real *dmu, real *dsigma) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < latent; j++) {
            size_t k = (size_t)i * latent + j;
            double s = sigma[k];
            dmu[k] += (real)(coef[i] * (double)mu[k]);
            dsigma[k] += (real)(coef[i] * (s - 1.0 / s));
        }
}

/* ---- loss weights ----------------------------------------------------------------- */

static double draw(const cfg_weight_dist *d, rng_stream *s) {
    double u = rng_uniform(s); /* always consumed: streams stay aligned across modes */
    switch (d->distribution) {
    case DIST_LOG_UNIFORM: return exp(log(d->low) + u * (log(d->high) - log(d->low)));
    case DIST_UNIFORM: return d->low + u * (d->high - d->low);
    case DIST_FIXED: return d->value;
    }
    return d->value;
}

/* normalisation and conditioning transform of one weight pair */
static void finish(const cfg_loss_weights *lw, double *wkl, double *wrec, real *cond) {
    if (lw->normalize) {
        double g = sqrt(*wkl * *wrec);
        *wkl /= g;
        *wrec /= g;
    }
    bool lg = lw->transform == TRANSFORM_LOG;
    cond[0] = (real)(lg ? log(*wkl) : *wkl);
    cond[1] = (real)(lg ? log(*wrec) : *wrec);
}

void loss_weights_sample(const cfg_loss_weights *lw, uint64_t seed, long step, int rank, int n,
                         real *w_kl, real *w_rec, real *cond) {
    bool per_sample = lw->per_sample;
    for (int i = 0; i < n; i++) {
        double wkl, wrec;
        /* per batch: every sample reuses sample 0's stream */
        rng_stream s = rng_stream_make(seed, RNG_LOSS_WEIGHTS, (uint32_t)step, (uint32_t)rank,
                                       per_sample ? (uint32_t)i : 0);
        wkl = draw(&lw->kl, &s);
        wrec = draw(&lw->reconstruction, &s);
        finish(lw, &wkl, &wrec, cond + 2 * i);
        w_kl[i] = (real)wkl;
        w_rec[i] = (real)wrec;
    }
}

void loss_weights_fixed(const cfg_loss_weights *lw, double w_kl, double w_rec, int n, real *wkl_out,
                        real *wrec_out, real *cond) {
    for (int i = 0; i < n; i++) {
        double a = w_kl, b = w_rec;
        finish(lw, &a, &b, cond + 2 * i);
        wkl_out[i] = (real)a;
        wrec_out[i] = (real)b;
    }
}
