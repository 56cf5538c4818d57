/* model.h — the loss-conditional convolutional VAE of docs/REFERENCE.md.
 *
 *   x [C][n][H][W] --encoder blocks (conv, FiLM)--> flatten (c,h,w) --fc MLP-->
 *   code [n][2L]: mean = code[:, :L], sigma = eps + softplus(code[:, L:])
 *   z = mean + sigma * eps_noise
 *   z --fc MLP--> reshape (c,h,w) --decoder blocks (deconv, FiLM)--> out conv
 *   --> Bernoulli logits [C][n][H][W] or Gaussian (means, raw sigmas) [2C][n][H][W]
 *
 * The conditioning vector cond [n][2] = (f(w_kl), f(w_rec)) reaches the
 * network by FiLM (model.conditioning.type film: every conv block's output
 * scaled and shifted per channel by two MLPs of cond), or by gates (gated:
 * every conv layer's and hidden dense layer's pre-activation multiplied per
 * channel by 2 sigmoid(a cond + b), MR-VAE's conditioning), or not at all
 * (none). model.width scales every channel count and hidden width.
 * Parameters live in one arena (names as in docs/DESIGN.md); the model owns its
 * activations, sized for up to max_batch samples.
 */
#ifndef YOTO_MODEL_H
#define YOTO_MODEL_H

#include <stdbool.h>

#include "arena.h"
#include "common.h"
#include "config.h"
#include "layers.h"

#define MODEL_MAX_BLOCKS 8
#define MODEL_MAX_LAYERS 8 /* per block */
#define MODEL_MAX_FC 8     /* dense layers per MLP */

/* Time spent per layer when vae_model.profile is set (yoto bench). */
#define MODEL_MAX_PROF 128
typedef struct {
    char name[64]; /* "encoder/block0/conv0", "decoder/block2/film", "loss" */
    double fwd, bwd; /* seconds, accumulated */
    double macs;     /* forward multiply-adds per image */
    bool blocked;    /* a conv layer on channel-blocked activations (conv_block.blocked) */
} model_prof;

/* A gate of gated conditioning over c channels: g [n][c] = 2 sigmoid(cond
 * W^T + b), W [c][2]; kernel < 0: no gate. */
typedef struct {
    int c;
    int kernel, bias; /* arena indices */
    real *g;          /* [n][c] */
} gate;

/* A stack of dense layers; leaky ReLU between them, none after the last.
 * Gated conditioning gates the hidden layers: post = lrelu(g * pre). */
typedef struct {
    int nlayers;
    int in[MODEL_MAX_FC], out[MODEL_MAX_FC];
    int kernel[MODEL_MAX_FC], bias[MODEL_MAX_FC]; /* arena indices */
    int prof;                                     /* entry in vae_model.prof */
    real *pre[MODEL_MAX_FC];   /* [n][out] layer outputs (with bias) */
    real *post[MODEL_MAX_FC];  /* [n][out] leaky ReLU of pre (all but the last) */
    gate gate[MODEL_MAX_FC];   /* hidden layers' gates (gated conditioning) */
    real *gated[MODEL_MAX_FC]; /* [n][out] g * pre, when gated */
} mlp;

/* One VGG-style block: convs (encoder, the first stride 2) or transposed convs
 * (decoder, the last stride 2), leaky ReLU between them, FiLM, leaky ReLU. */
typedef struct {
    int nlayers;
    bool deconv;
    bool out_lrelu; /* false for the encoder's last block */
    /* per layer: the conv geometry at max_batch (see layers.h for deconvs) */
    int cin[MODEL_MAX_LAYERS], cout[MODEL_MAX_LAYERS];
    int h[MODEL_MAX_LAYERS], w[MODEL_MAX_LAYERS]; /* layer input size */
    int stride[MODEL_MAX_LAYERS];
    int kernel[MODEL_MAX_LAYERS], bias[MODEL_MAX_LAYERS];
    int prof[MODEL_MAX_LAYERS]; /* entries in vae_model.prof */
    int prof_film;
    int C, H, W; /* block output */
    real *z[MODEL_MAX_LAYERS]; /* [C][n][hw] layer outputs (with bias) */
    real *a[MODEL_MAX_LAYERS]; /* leaky ReLU of z (all but the last layer) */
    bool film;
    mlp scale_mlp, shift_mlp;
    bool gated;                   /* gated conditioning: a gate per layer */
    gate gate[MODEL_MAX_LAYERS];
    real *scale, *shift; /* [n][C] post-processed FiLM scales and shifts */
    real *o;             /* [C][n][hw] block output: its FiLM or gate stage's, else
                          * z[last] or its leaky ReLU (a stage's own output before
                          * the leaky ReLU is not kept); NULL when lazy */
    /* lazy: the FiLM stage's output o is never written; the one layer that
     * reads it, on the direct kernels, applies `stage` to z[last] as it
     * packs its input (conv_geom.xstage): one activation-sized write less
     * per forward, and o's memory (docs/DESIGN.md, lever 20) */
    bool lazy;
    film_stage stage; /* FiLM's: scale, shift, the block's leaky ReLU */
    /* Layout of the block's activations (z, a, o and their gradients):
     * [C][n][hw], or channel-blocked (src/convb.h) where its kernels are
     * faster (YOTO_CONV_LAYOUT, docs/DESIGN.md). in_blocked: the layout of
     * the tensor the block reads; where the two differ, xin holds the block
     * input converted to the block's layout (kept for the backward). */
    bool blocked, in_blocked;
    real *xin;
    /* on a sample-minor chain (vae_model.tail or .head): its activations
     * live there (z and a are NULL, and o but for the head's last block's,
     * which the chain copies out; model_sm_activation reads them) */
    bool sm;
} conv_block;

typedef struct {
    cfg_model mc; /* the model section it was built from, model.width applied */
    int max_batch;
    int threads;          /* threads of its convolutions: blas_threads() at model_create */
    int in_c, in_h, in_w; /* input image */
    int latent;
    int out_c;    /* decoder output channels (C or 2C) */
    int cond_dim; /* 2, or 0 without conditioning */
    arena params;

    conv_block enc[MODEL_MAX_BLOCKS], dec[MODEL_MAX_BLOCKS]; /* dec[k] = decoder/block{k} */
    int nblocks_enc, nblocks_dec;
    mlp enc_fc, dec_fc;
    int out_kernel, out_bias;
    int prof_out, prof_loss;

    /* Called during model_backward each time the gradient of the arena suffix
     * [lo, total) is final (the training loop starts allreduces there). */
    void (*grad_ready)(void *ctx, size_t lo);
    void *grad_ready_ctx;

    bool profile; /* accumulate per-layer times in prof */
    int nprof;
    model_prof prof[MODEL_MAX_PROF];

    /* activations, [n][...] unless noted */
    int n; /* samples of the last forward pass */
    const real *x;         /* [C][n][H][W] the input of the last forward (not owned) */
    const real *cond;      /* [n][2] (not owned) */
    real *flat;            /* [n][c*h*w] encoder flatten */
    real *mean, *sigma, *z; /* [n][L] */
    const real *eps;       /* [n][L] noise of the last forward, NULL = z = mean (not owned) */
    real *reshaped;        /* [c][n][h*w] decoder input of the blocks (in dec[last]'s layout) */
    real *out;             /* [out_c][n][H][W] decoder output */
    real *out_in;          /* [C][n][H][W] the output conv's input when dec[0] is blocked */
    double *recon, *kl;    /* [n] per-sample losses */

    /* backward scratch */
    real *g0, *g1;       /* two activation-sized gradient buffers */
    real *gs, *gt;       /* [n][Cmax] FiLM scale/shift (or gate) gradients */
    real *zeros;         /* [n][Cmax] zeros: a gate is a FiLM stage with no shift */
    real *gg;            /* [n][max MLP width] a dense gate's gradient */
    real *gm0, *gm1;     /* [n][max MLP width]: mlp_backward's, dense_forward's scratch */
    real *gm2, *gm3;     /* [n][max FiLM MLP width]: for a FiLM block's second MLP */
    real *dcode, *dmean, *dsigma, *dz; /* [n][2L], [n][L] x3 */
    real *dinput;        /* [C][n][H][W] gradient w.r.t. the encoder input, if asked */
    double *coef_rec, *coef_kl; /* [n] per-sample loss coefficients */
    /* model_fuse_loss's weights (not owned) and scale for the next
     * model_forward, and whether the last model_forward fused the loss's
     * gradient (then coef_rec holds the coefficients it used) */
    const real *fuse_w_rec;
    double fuse_scale;
    bool loss_fused;
    bool kept;           /* the last forward was model_forward: model_backward may follow */
    real *work;          /* im2col workspace */
    /* The decoder's last blocks and its output conv (tail), the encoder's
     * first blocks (head), on the sample-minor layout (src/convs.h), each
     * run a group of samples at a time through all of its layers
     * (docs/DESIGN.md, levers 43, 44 and 47); NULL: none. Internal to
     * model.c. */
    struct model_chain *tail, *head;
    size_t work_size;
    void **owned; /* every buffer above, freed by model_free */
    int nowned, cap_owned;
} vae_model;

/* Builds the model of a (validated) config's model section for batches of up
 * to max_batch samples;
 * parameters are zero until model_init_params() or a checkpoint load. */
vae_model *model_create(const cfg_model *mc, int max_batch);
void model_free(vae_model *m);
/* The output z (o: false) or its stage's output (o: true: a[l] between
 * layers, the block's o after the last) of layer l of block b, a block on a
 * sample-minor chain (conv_block.sm), from the last model_forward without
 * the loss fused (a backward overwrites the tail's z; a forward with the
 * loss fused, model_encode and model_decode keep only a group a thread), in
 * [C][n][H][W] (dst: n times the layer's outputs): for the tests, which
 * compare every activation. */
void model_sm_activation(const vae_model *m, const conv_block *b, int l, bool o, real *dst);

/* YOTO_CONV_LAYOUT (docs/CLI.md): false, with a message on stderr, when it
 * is set to something other than auto, planar or blocked (model_create
 * would end the process on it; main checks it before anything starts). */
bool model_check_layout_env(void);

/* Reference initialisation (docs/REFERENCE.md): truncated-normal VarianceScaling
 * kernels keyed (seed, RNG_INIT, tensor index), zero biases. */
void model_init_params(vae_model *m, uint64_t seed);

/* Forward pass of n <= max_batch samples. x [C][n][H][W] is input and
 * reconstruction target; cond [n][2] (ignored without conditioning); eps
 * [n][L] or NULL for z = mean. Fills m->recon[i], m->kl[i]; the caller keeps
 * x, cond, eps alive until model_backward. */
void model_forward(vae_model *m, int n, const real *x, const real *cond, const real *eps);
/* model_forward for the losses and outputs only (evaluation): what a
 * backward reads is not kept (as model_encode), and the loss not fused. */
void model_losses(vae_model *m, int n, const real *x, const real *cond, const real *eps);
/* The next model_forward (only) also computes the reconstruction loss's
 * gradient for model_backward, which must then be given the same w_rec
 * (kept alive until then, like x) and scale (it stops the process on
 * others), where it can fuse it into the decoder's output conv: a model with
 * a sample-minor tail and head, in the float builds (docs/DESIGN.md, lever
 * 53). m->out is then not written (training needs only the losses), and that
 * forward also runs the tail's backward, group by group after each group's
 * forward (lever 60: the tail's z are then gradients; model_backward adds
 * the tail's parameter gradients and goes on from there). The same gradient
 * bits as without; m->recon to float rounding. */
void model_fuse_loss(vae_model *m, const real *w_rec, double scale);
/* Encoder only (no decoder, no losses): m->mean, m->sigma, m->z [n][L].
 * Inference: what a backward would read is not kept. */
void model_encode(vae_model *m, int n, const real *x, const real *cond, const real *eps);
/* Decoder only: z [n][L] -> m->out. Inference, as model_encode. */
void model_decode(vae_model *m, int n, const real *z, const real *cond);
/* Reconstruction from the posterior mean, without the losses: model_encode
 * (z = mean) then model_decode; m->out [out_c][n][H][W]. */
void model_reconstruct(vae_model *m, int n, const real *x, const real *cond);

/* Backward of sum_i scale * (w_rec[i] * recon[i] + w_kl[i] * kl[i]) for the
 * last forward: ACCUMULATES into m->params.grad. With input_grad, also
 * writes m->dinput (the encoder-path gradient; the target held fixed). */
void model_backward(vae_model *m, const real *w_kl, const real *w_rec, double scale,
                    bool input_grad);

/* The model's analytic cost per image: forward multiply-adds, and training
 * FLOPs (forward + backward, 2 per multiply-add; the first layer computes no
 * input gradient). */
double model_forward_macs(const vae_model *m);
/* Forward multiply-adds of the encoder alone (model_encode) per image. */
double model_encode_macs(const vae_model *m);
double model_train_flops(const vae_model *m);

#endif
