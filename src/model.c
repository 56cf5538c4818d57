/* model.c — the conditional conv VAE: build from a config, forward, backward.
 *
 * Reads top to bottom as the architecture (model.h): model_forward is the
 * encoder, the reparameterisation, the decoder and the losses; model_backward
 * walks the same list in reverse. What backward needs is kept in named
 * activation buffers during forward.
 */
#include "model.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "blas.h"
#include "convb.h"
#include "convs.h"
#include "loss.h"
#include "par.h"
#include "rng.h"

/* std of a unit normal truncated at +-2 (TF's VarianceScaling divides by it) */
#define TRUNC_NORMAL_STD 0.87962566103423978

static void cost(const vae_model *m, double *fwd, double *skipped, model_prof *prof);

/* ---- building --------------------------------------------------------------------- */

/* n zeroed reals, from 4 MiB up on 2 MiB pages (common.h): the conv kernels
 * stream through [C][N][H][W] tensors a channel plane at a time, and with
 * 4 KiB pages every plane of a high-resolution layer is a TLB miss. */
static real *huge_calloc(size_t n) {
    return yt_calloc_huge(n * sizeof(real));
}

/* p, freed by model_free */
static void *own(vae_model *m, void *p) {
    if (m->nowned == m->cap_owned) {
        m->cap_owned = m->cap_owned ? 2 * m->cap_owned : 64;
        m->owned = yt_realloc(m->owned, (size_t)m->cap_owned * sizeof *m->owned);
    }
    m->owned[m->nowned++] = p;
    return p;
}

/* An activation buffer of the model (zeroed), freed by model_free. */
static real *alloc_buf(vae_model *m, size_t elems) {
    return own(m, huge_calloc(elems ? elems : 1));
}

static int add_tensor(vae_model *m, bool cond, int ndim, const int *shape, int fan_in, int fan_out,
                      const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static int add_tensor(vae_model *m, bool cond, int ndim, const int *shape, int fan_in, int fan_out,
                      const char *fmt, ...) {
    char name[ARENA_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    YT_CHECK(len > 0 && len < (int)sizeof name);
    return arena_add(&m->params, name, ndim, shape, cond, fan_in, fan_out);
}

/* A profiling entry (yoto bench's per-layer times). */
static int prof_add(vae_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int prof_add(vae_model *m, const char *fmt, ...) {
    YT_CHECK(m->nprof < MODEL_MAX_PROF);
    model_prof *p = &m->prof[m->nprof];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    return m->nprof++;
}

static double tic(const vae_model *m) { return m->profile ? yt_now() : 0; }
static void toc(vae_model *m, int entry, double t0, bool backward) {
    if (!m->profile || entry < 0) return;
    double dt = yt_now() - t0;
    if (backward)
        m->prof[entry].bwd += dt;
    else
        m->prof[entry].fwd += dt;
}

/* Registers the dense layers of an MLP in -> sizes[0] -> ... -> sizes[k-1]. */
/* A gate over c channels: kernel [c][2] and bias [c], conditioning
 * variables, zero at initialisation (fan_in 0): every gate starts at 1. */
static void gate_build(vae_model *m, gate *g, int c, const char *layer) {
    int ks[2] = {c, 2}, bs[1] = {c};
    g->c = c;
    g->kernel = add_tensor(m, true, 2, ks, 0, 0, "%s/gate/kernel", layer);
    g->bias = add_tensor(m, true, 1, bs, 0, 0, "%s/gate/bias", layer);
}

/* Dense layers in -> sizes[0] -> ... -> sizes[k-1]; cond: conditioning
 * variables (FiLM MLPs); gated: the hidden layers get gates. */
static void mlp_build(vae_model *m, mlp *p, int in, const long *sizes, int k, bool cond,
                      bool gated, const char *prefix) {
    YT_CHECK(k >= 1 && k <= MODEL_MAX_FC);
    p->nlayers = k;
    p->prof = -1;
    for (int i = 0; i < k; i++) {
        p->in[i] = i == 0 ? in : p->out[i - 1];
        p->out[i] = (int)sizes[i];
        int ks[2] = {p->out[i], p->in[i]}, bs[1] = {p->out[i]};
        p->kernel[i] = add_tensor(m, cond, 2, ks, p->in[i], p->out[i], "%s/dense%d/kernel", prefix, i);
        p->bias[i] = add_tensor(m, cond, 1, bs, 0, 0, "%s/dense%d/bias", prefix, i);
        p->gate[i].kernel = -1;
        if (gated && i + 1 < k) {
            char layer[2 * ARENA_NAME_MAX];
            snprintf(layer, sizeof layer, "%s/dense%d", prefix, i);
            gate_build(m, &p->gate[i], p->out[i], layer);
        }
    }
}

static void mlp_alloc(vae_model *m, mlp *p) {
    for (int i = 0; i < p->nlayers; i++) {
        p->pre[i] = alloc_buf(m, (size_t)m->max_batch * p->out[i]);
        if (i + 1 < p->nlayers) p->post[i] = alloc_buf(m, (size_t)m->max_batch * p->out[i]);
        if (p->gate[i].kernel >= 0) {
            p->gated[i] = alloc_buf(m, (size_t)m->max_batch * p->out[i]);
            p->gate[i].g = alloc_buf(m, (size_t)m->max_batch * p->out[i]);
        }
    }
}

/* The FiLM MLPs of a block with C channels: 2 -> hidden... -> C, twice. */
static void film_build(vae_model *m, conv_block *b, const char *prefix) {
    const cfg_model *c = &m->mc;
    b->film = c->conditioning.type == COND_FILM;
    if (!b->film) return;
    long sizes[MODEL_MAX_FC];
    int k = c->conditioning.hidden_sizes.n;
    YT_CHECK(k + 1 <= MODEL_MAX_FC);
    for (int i = 0; i < k; i++) sizes[i] = c->conditioning.hidden_sizes.v[i];
    sizes[k] = b->C;
    char pfx[2 * ARENA_NAME_MAX]; /* add_tensor checks the final length */
    int len = snprintf(pfx, sizeof pfx, "%s/film/scale", prefix);
    YT_CHECK(len < (int)sizeof pfx);
    mlp_build(m, &b->scale_mlp, m->cond_dim, sizes, k + 1, true, false, pfx);
    len = snprintf(pfx, sizeof pfx, "%s/film/shift", prefix);
    YT_CHECK(len < (int)sizeof pfx);
    mlp_build(m, &b->shift_mlp, m->cond_dim, sizes, k + 1, true, false, pfx);
}

/* conv kernels: VarianceScaling(2 / (1 + alpha^2), fan_in | fan_avg) */
static void block_build(vae_model *m, conv_block *b, bool deconv, int index, int cin, int h, int w,
                        int C, int nlayers) {
    const char *part = deconv ? "decoder" : "encoder";
    YT_CHECK(nlayers >= 1 && nlayers <= MODEL_MAX_LAYERS);
    b->nlayers = nlayers;
    b->deconv = deconv;
    b->C = C;
    b->gated = m->mc.conditioning.type == COND_GATED;
    for (int l = 0; l < nlayers; l++) {
        /* encoder: the first conv has stride 2; decoder: the last deconv */
        int s = deconv ? (l == nlayers - 1 ? 2 : 1) : (l == 0 ? 2 : 1);
        b->cin[l] = cin;
        b->cout[l] = C;
        b->h[l] = h;
        b->w[l] = w;
        b->stride[l] = s;
        if (deconv) {
            /* PyTorch ConvTranspose2d [in, out, 3, 3]; TF's [3, 3, out, in] gives
             * fan_in = 9 out, fan_out = 9 in */
            int ks[4] = {cin, C, 3, 3}, bs[1] = {C};
            b->kernel[l] = add_tensor(m, false, 4, ks, 9 * C, 9 * cin, "decoder/block%d/deconv%d/kernel", index, l);
            b->prof[l] = prof_add(m, "decoder/block%d/deconv%d", index, l);
            b->bias[l] = add_tensor(m, false, 1, bs, 0, 0, "decoder/block%d/deconv%d/bias", index, l);
            h *= s;
            w *= s;
        } else {
            int ks[4] = {C, cin, 3, 3}, bs[1] = {C};
            b->kernel[l] = add_tensor(m, false, 4, ks, 9 * cin, 9 * C, "encoder/block%d/conv%d/kernel", index, l);
            b->prof[l] = prof_add(m, "encoder/block%d/conv%d", index, l);
            b->bias[l] = add_tensor(m, false, 1, bs, 0, 0, "encoder/block%d/conv%d/bias", index, l);
            h = (h + s - 1) / s;
            w = (w + s - 1) / s;
        }
        if (b->gated) {
            char layer[ARENA_NAME_MAX];
            snprintf(layer, sizeof layer, "%s/block%d/%s%d", part, index, deconv ? "deconv" : "conv", l);
            gate_build(m, &b->gate[l], C, layer);
        }
        cin = C;
    }
    b->H = h;
    b->W = w;
    char prefix[2 * ARENA_NAME_MAX];
    snprintf(prefix, sizeof prefix, "%s/block%d", part, index);
    film_build(m, b, prefix);
    b->prof_film = prof_add(m, "%s/block%d/%s", part, index,
                            b->film ? "film" : b->gated ? "gates" : "lrelu");
}

static void block_alloc(vae_model *m, conv_block *b) {
    if (b->film) {
        mlp_alloc(m, &b->scale_mlp);
        mlp_alloc(m, &b->shift_mlp);
        b->scale = alloc_buf(m, (size_t)m->max_batch * b->C);
        b->shift = alloc_buf(m, (size_t)m->max_batch * b->C);
        b->stage = (film_stage){.scale = b->scale,
                                .shift = b->shift,
                                .lrelu = b->out_lrelu,
                                .alpha = (real)m->mc.alpha};
    }
    if (b->sm) return; /* its activations live on the tail */
    size_t act = (size_t)m->max_batch * b->C * b->H * b->W;
    for (int l = 0; l < b->nlayers; l++) {
        int h = b->deconv ? b->h[l] * b->stride[l] : (b->h[l] + b->stride[l] - 1) / b->stride[l];
        int w = b->deconv ? b->w[l] * b->stride[l] : (b->w[l] + b->stride[l] - 1) / b->stride[l];
        size_t sz = (size_t)m->max_batch * b->cout[l] * h * w;
        b->z[l] = alloc_buf(m, sz);
        if (l + 1 < b->nlayers) b->a[l] = alloc_buf(m, sz);
        if (b->gated) b->gate[l].g = alloc_buf(m, (size_t)m->max_batch * b->cout[l]);
    }
    if (b->lazy)
        b->o = NULL;
    else
        b->o = b->film || b->gated || b->out_lrelu ? alloc_buf(m, act) : b->z[b->nlayers - 1];
    if (b->blocked != b->in_blocked)
        b->xin = alloc_buf(m, (size_t)m->max_batch * b->cin[0] * b->h[0] * b->w[0]);
}

/* The convolution geometry of layer l for n samples (layers.h: a deconv is
 * the adjoint of the conv from its output space to its input space). */
static conv_geom layer_geom(const vae_model *m, const conv_block *b, int l, int n) {
    conv_geom g = b->deconv
                      ? conv_geom_make(n, b->cout[l], b->h[l] * b->stride[l],
                                       b->w[l] * b->stride[l], b->cin[l], b->stride[l])
                      : conv_geom_make(n, b->cin[l], b->h[l], b->w[l], b->cout[l], b->stride[l]);
    g.threads = m->threads; /* what the workspace was sized for */
    return g;
}

/* the decoder's output conv for n samples */
static conv_geom out_geom(const vae_model *m, int n) {
    conv_geom g = conv_geom_make(n, m->dec[0].C, m->in_h, m->in_w, m->out_c, 1);
    g.threads = m->threads;
    return g;
}

/* ---- chains of layers on the sample-minor layout ---------------------------------- */

/* A chain: FiLM blocks on the sample-minor layout (src/convs.h), run a
 * group of samples at a time through all their layers, forward and then
 * backward, while what a group wrote is in cache (docs/DESIGN.md, levers
 * 43, 44 and 47); threads split the groups. A model has two at most: the
 * decoder's tail (dec[nb-1] .. dec[0] and the output conv, from dec[nb]'s
 * output or the reshape) and the encoder's head (enc[0] .. enc[nb-1], from
 * the image; enc[nb-1]'s o is copied out for enc[nb]). Every layer has a
 * stage: a block's last layer its FiLM (+ leaky ReLU), the layers before it
 * the leaky ReLU between layers (a stage of scale 1 and shift 0). A stage
 * runs in its layer's forward stores, its backward in the stores of the
 * input gradient of the layer after it. */
#define CHAIN_MAX_THREADS 64
#define CHAIN_MAX_LAYERS (MODEL_MAX_BLOCKS * MODEL_MAX_LAYERS)
typedef struct model_chain {
    conv_block *blk; /* its blocks: blk[0 .. nb) (m->dec or m->enc) */
    int nb;          /* blocks on the chain */
    int nl;          /* their layers, in order of application: */
    conv_block *lb[CHAIN_MAX_LAYERS]; /* layer j's block */
    int ll[CHAIN_MAX_LAYERS];         /* and its index there */
    int nacc;  /* kernel gradients: the layers', and the tail's output conv's at [nl] */
    int parts; /* threads it was sized for */
    size_t klen[CHAIN_MAX_LAYERS + 1]; /* reals of each of those kernels */
    /* the input, the tail's output conv's output, layer j's z and o (its
     * stage's output); the backward stores each gradient in the place of
     * what it has done with: the input's in `in` (once the first layer's
     * kernel gradient has read a group of it), the output's in `out`
     * (copied out by the forward), the gradient w.r.t. z in z (read where
     * the stage's gradient is stored) */
    real *in, *out;
    real *z[CHAIN_MAX_LAYERS], *o[CHAIN_MAX_LAYERS];
    rvec *stbuf[CHAIN_MAX_LAYERS];
    convs_stage st[CHAIN_MAX_LAYERS];
    double *sv[CHAIN_MAX_LAYERS], *tv[CHAIN_MAX_LAYERS]; /* the stages' sums */
    real *ones; /* the scale of the stages between layers (max_batch x channels) */
    /* per thread: the packed weights, the kernel gradients, and the tail's
     * output conv's bias gradient (the head: NULL) */
    real *wbuf[CHAIN_MAX_THREADS];
    rvec *acc[CHAIN_MAX_THREADS][CHAIN_MAX_LAYERS + 1];
    double *dbo[CHAIN_MAX_THREADS];
    /* the tail: its groups' backward already run by the forward (the loss
     * fused), on this many threads; 0: not */
    int parts_done;
    size_t wlen; /* reals of a packed kernel in wbuf (the largest); the tail's wbuf holds 4 */
} model_chain;

/* a block a chain can take: FiLM'd, every layer a conv the direct kernels
 * take (whichever route the planar layout would run it on: Shapes3D's
 * dec/block2 goes from the GEMM route at 115 GFLOP/s to 135 here), with
 * rows of 8 positions and up (the tiles are 3 positions wide: enc/block3's
 * 4 lost) */
static bool chain_block_ok(const vae_model *m, const conv_block *b) {
    if (!b->film || b->gated) return false;
    for (int l = 0; l < b->nlayers; l++) {
        conv_geom g = layer_geom(m, b, l, m->max_batch);
        if (!conv_geom_route(&g, CONV_DIRECT) || g.wo < 8) return false;
    }
    return true;
}

/* How many of the first blocks of blk[0 .. nblocks) a chain takes (the
 * tail: dec[0] up; the head: enc[0] up): those chain_block_ok; only with
 * YOTO_CONV_LAYOUT auto. */
static int chain_blocks(const vae_model *m, const conv_block *blk, int nblocks, int policy) {
    if (policy != 0) return 0;
    int nb = 0;
    while (nb < nblocks && chain_block_ok(m, &blk[nb])) nb++;
    return nb;
}

/* the chain of blk[0 .. nb): the tail's blocks applied from the last
 * (reverse: true), the head's from the first */
static model_chain *chain_new(conv_block *blk, int nb, bool reverse) {
    model_chain *C = yt_calloc(1, sizeof *C);
    C->blk = blk;
    C->nb = nb;
    for (int i = 0; i < nb; i++) {
        conv_block *b = &blk[reverse ? nb - 1 - i : i];
        b->sm = true;
        for (int l = 0; l < b->nlayers; l++, C->nl++) {
            C->lb[C->nl] = b;
            C->ll[C->nl] = l;
        }
    }
    return C;
}

/* YOTO_CONV_LAYOUT as 0 (auto, or unset), 1 (planar), 2 (blocked); -1: not
 * one of them */
static int layout_policy(void) {
    static const char *const names[] = {"auto", "planar", "blocked"};
    const char *env = getenv("YOTO_CONV_LAYOUT");
    if (!env || !*env) return 0;
    for (int i = 0; i < 3; i++)
        if (strcmp(env, names[i]) == 0) return i;
    return -1;
}

bool model_check_layout_env(void) {
    if (layout_policy() >= 0) return true;
    fprintf(stderr, "yoto: YOTO_CONV_LAYOUT=%s: expected auto, planar or blocked\n",
            getenv("YOTO_CONV_LAYOUT"));
    return false;
}

/* Each block's layout (conv_block.blocked, conv_block.sm). YOTO_CONV_LAYOUT:
 * auto (the default) puts the chains first (the tail and the head, on the
 * sample-minor layout), then blocks where convb_pays for every layer but on
 * the chains and next to them (the block after a chain reads or writes its
 * end on [C][N][H][W]); blocked blocks wherever the kernels fit (convb_fits:
 * every channel count a multiple of their lanes; for tests and
 * measurements); planar: neither. */
static void choose_layouts(vae_model *m) {
    const int policy = layout_policy();
    if (policy < 0)
        yt_die("YOTO_CONV_LAYOUT=%s: expected auto, planar or blocked", getenv("YOTO_CONV_LAYOUT"));
    const int nt = chain_blocks(m, m->dec, m->nblocks_dec, policy);
    if (nt > 0) m->tail = chain_new(m->dec, nt, true);
    const int nh = chain_blocks(m, m->enc, m->nblocks_enc, policy);
    if (nh > 0) m->head = chain_new(m->enc, nh, false);
    for (int i = 0; i < m->nblocks_enc + m->nblocks_dec; i++) {
        conv_block *b = i < m->nblocks_enc ? &m->enc[i] : &m->dec[i - m->nblocks_enc];
        const bool next_to_chain =
            i < m->nblocks_enc ? nh > 0 && i == nh : nt > 0 && i - m->nblocks_enc == nt;
        bool ok = policy != 1 && !b->sm && !next_to_chain;
        for (int l = 0; l < b->nlayers && ok; l++) {
            conv_geom g = layer_geom(m, b, l, m->max_batch);
            ok = policy == 2 ? convb_fits(&g) : convb_pays(&g);
        }
        b->blocked = ok;
        for (int l = 0; l < b->nlayers; l++)
            m->prof[b->prof[l]].blocked = ok;
    }
    /* the image is [C][n][H][W]; the reshape writes dec[last]'s layout */
    for (int i = 0; i < m->nblocks_enc; i++)
        m->enc[i].in_blocked = i > 0 && m->enc[i - 1].blocked;
    for (int k = 0; k < m->nblocks_dec; k++)
        m->dec[k].in_blocked = k == m->nblocks_dec - 1 ? m->dec[k].blocked : m->dec[k + 1].blocked;
}

/* Which blocks leave o unwritten (conv_block.lazy): a FiLM block on the
 * planar layout whose one consumer, the next block's first conv (or the
 * decoder's output conv, g), is planar and on the direct kernels, which apply
 * the stage while packing (conv_geom.xstage). */
static void set_lazy(conv_block *b, const conv_geom *g, bool next_blocked) {
    b->lazy = b->film && !b->gated && !b->blocked && !next_blocked && g->route == CONV_DIRECT;
}

static void choose_lazy(vae_model *m) {
    for (int i = 0; i + 1 < m->nblocks_enc; i++) {
        conv_geom g = layer_geom(m, &m->enc[i + 1], 0, m->max_batch);
        set_lazy(&m->enc[i], &g, m->enc[i + 1].blocked);
    }
    for (int k = 1; k < m->nblocks_dec; k++) {
        conv_geom g = layer_geom(m, &m->dec[k - 1], 0, m->max_batch);
        set_lazy(&m->dec[k], &g, m->dec[k - 1].blocked);
    }
    conv_geom go = out_geom(m, m->max_batch);
    set_lazy(&m->dec[0], &go, false);
    /* the tail writes its blocks' o itself, and copies its input from o;
     * the head writes its blocks' o itself, the last one's on [C][N][H][W] */
    for (int k = 0; m->tail && k <= m->tail->nb && k < m->nblocks_dec; k++)
        m->dec[k].lazy = false;
    for (int k = 0; m->head && k < m->head->nb; k++)
        m->enc[k].lazy = false;
}

/* What the layer after block b reads: o, or z[last] with the stage to apply
 * (*st; NULL: none) */
static const real *block_out(const conv_block *b, const film_stage **st) {
    *st = b->lazy ? &b->stage : NULL;
    return b->lazy ? b->z[b->nlayers - 1] : b->o;
}

/* Encoder blocks (block b has base * 2^b channels), then the fc MLP to the
 * 2L code. Registers the parameters in order of application. */
static void build_encoder(vae_model *m) {
    const cfg_net *en = &m->mc.encoder;
    YT_CHECK(en->num_blocks >= 1 && en->num_blocks <= MODEL_MAX_BLOCKS);
    m->nblocks_enc = en->num_blocks;
    int c = m->in_c, h = m->in_h, w = m->in_w;
    for (int b = 0; b < en->num_blocks; b++) {
        conv_block *blk = &m->enc[b];
        blk->out_lrelu = b + 1 < en->num_blocks;
        block_build(m, blk, false, b, c, h, w, en->base_channels << b, en->layers_per_block);
        c = blk->C;
        h = blk->H;
        w = blk->W;
    }
    const bool gated = m->mc.conditioning.type == COND_GATED;
    mlp_build(m, &m->enc_fc, c * h * w, en->fc_sizes.v, en->fc_sizes.n, false, gated, "encoder/fc");
    m->enc_fc.prof = prof_add(m, "encoder/fc");
    YT_CHECK(m->enc_fc.out[m->enc_fc.nlayers - 1] == 2 * m->latent);
}

/* Decoder: fc MLP, reshape, blocks B-1 .. 0, the output conv. */
static void build_decoder(vae_model *m) {
    const cfg_net *de = &m->mc.decoder;
    YT_CHECK(de->num_blocks >= 1 && de->num_blocks <= MODEL_MAX_BLOCKS);
    const bool gated = m->mc.conditioning.type == COND_GATED;
    mlp_build(m, &m->dec_fc, m->latent, de->fc_sizes.v, de->fc_sizes.n, false, gated, "decoder/fc");
    m->dec_fc.prof = prof_add(m, "decoder/fc");
    m->nblocks_dec = de->num_blocks;
    int h = de->reshape[0], w = de->reshape[1], c = de->reshape[2];
    YT_CHECK(m->dec_fc.out[m->dec_fc.nlayers - 1] == h * w * c);
    for (int k = de->num_blocks - 1; k >= 0; k--) {
        conv_block *blk = &m->dec[k];
        blk->out_lrelu = true;
        block_build(m, blk, true, k, c, h, w, de->base_channels << k, de->layers_per_block);
        c = blk->C;
        h = blk->H;
        w = blk->W;
    }
    YT_CHECK(h == m->in_h && w == m->in_w);
    int ks[4] = {m->out_c, c, 3, 3}, bs[1] = {m->out_c};
    m->out_kernel = add_tensor(m, false, 4, ks, 9 * c, 9 * m->out_c, "decoder/out/conv/kernel");
    m->out_bias = add_tensor(m, false, 1, bs, 0, 0, "decoder/out/conv/bias");
    m->prof_out = prof_add(m, "decoder/out/conv");
}

/* zeroed memory of the model for `bytes`, on whole cache lines (a
 * chain's vectors), freed by model_free */
static void *chain_mem(vae_model *m, size_t bytes) {
    return own(m, yt_calloc_huge(bytes ? bytes : 1)); /* 2 MiB pages from 4 MiB up */
}

/* a chain's tensors for n samples (its input, layer j's outputs, the
 * tail's output conv's output) and its convs */
typedef struct {
    convs_shape in, out, ly[CHAIN_MAX_LAYERS];
    conv_geom geo[CHAIN_MAX_LAYERS], out_geo;
} chain_shapes;

/* a chain's input shape (its first layer's input) and its layers', for n
 * samples; the positions stay put whatever n (pitched for max_batch) */
static chain_shapes chain_shapes_for(const vae_model *m, const model_chain *C, int n) {
    const int cap = m->max_batch;
    const conv_block *first = C->lb[0];
    chain_shapes s = {.in = convs_shape_make(first->cin[0], n, cap, first->h[0], first->w[0])};
    for (int j = 0; j < C->nl; j++) {
        const conv_block *b = C->lb[j];
        const int l = C->ll[j];
        s.geo[j] = layer_geom(m, b, l, n);
        const conv_geom *g = &s.geo[j]; /* a deconv's output is its conv's X side */
        s.ly[j] = b->deconv ? convs_shape_make(g->cin, n, cap, g->h, g->w)
                            : convs_shape_make(g->cout, n, cap, g->ho, g->wo);
    }
    return s;
}

static chain_shapes tail_shapes_for(const vae_model *m, int n) {
    chain_shapes s = chain_shapes_for(m, m->tail, n);
    s.out = convs_shape_make(m->out_c, n, m->max_batch, m->in_h, m->in_w);
    s.out_geo = out_geom(m, n);
    return s;
}

static chain_shapes head_shapes_for(const vae_model *m, int n) {
    return chain_shapes_for(m, m->head, n);
}

/* a chain's buffers (s: for max_batch samples), but the tail's own; its
 * layers' kernel sizes (C->nacc and any kernel past the layers set); wparts:
 * the packed kernels a thread's wbuf holds at once */
static void chain_alloc(vae_model *m, model_chain *C, const chain_shapes *s, int wparts) {
    const int n = m->max_batch;
    int cmax = 1;
    for (int j = 0; j < C->nl; j++) {
        C->klen[j] = (size_t)C->lb[j]->cin[C->ll[j]] * C->lb[j]->cout[C->ll[j]] * 9;
        cmax = YT_MAX(cmax, s->ly[j].c);
    }
    C->parts = YT_MIN(m->threads, CHAIN_MAX_THREADS);
    C->in = chain_mem(m, convs_len(&s->in) * sizeof(real));
    size_t wlen = 0; /* A's and B's packed weights: a kernel */
    for (int k = 0; k < C->nacc; k++)
        wlen = YT_MAX(wlen, C->klen[k]);
    for (int j = 0; j < C->nl; j++) {
        const int c = s->ly[j].c;
        C->z[j] = chain_mem(m, convs_len(&s->ly[j]) * sizeof(real));
        C->o[j] = chain_mem(m, convs_len(&s->ly[j]) * sizeof(real));
        C->stbuf[j] = chain_mem(m, convs_stage_len(c, n) * sizeof(rvec));
        C->sv[j] = chain_mem(m, convs_sums_len(c, n) * sizeof(double));
        C->tv[j] = chain_mem(m, convs_sums_len(c, n) * sizeof(double));
    }
    C->ones = chain_mem(m, (size_t)n * cmax * sizeof(real));
    for (size_t i = 0; i < (size_t)n * cmax; i++)
        C->ones[i] = 1;
    C->wlen = wlen;
    for (int t = 0; t < C->parts; t++) {
        C->wbuf[t] = chain_mem(m, (size_t)wparts * wlen * sizeof(real));
        for (int k = 0; k < C->nacc; k++)
            C->acc[t][k] = chain_mem(m, C->klen[k] * sizeof(rvec));
    }
}

static void tail_alloc(vae_model *m) {
    model_chain *T = m->tail;
    if (!T) return;
    const chain_shapes s = tail_shapes_for(m, m->max_batch);
    T->nacc = T->nl + 1; /* the output conv's kernel at [nl] */
    T->klen[T->nl] = (size_t)m->out_c * m->dec[0].C * 9;
    chain_alloc(m, T, &s, 4); /* tail_segment's 4 packed kernels at once */
    T->out = chain_mem(m, convs_len(&s.out) * sizeof(real));
    for (int t = 0; t < T->parts; t++)
        T->dbo[t] = chain_mem(m, (size_t)m->out_c * sizeof(double));
}

/* the head, and its last block's o on [C][N][H][W] (enc[nb] reads it) */
static void head_alloc(vae_model *m) {
    model_chain *H = m->head;
    if (!H) return;
    const chain_shapes s = head_shapes_for(m, m->max_batch);
    H->nacc = H->nl;
    chain_alloc(m, H, &s, 1);
    conv_block *last = &m->enc[H->nb - 1];
    last->o = alloc_buf(m, (size_t)m->max_batch * last->C * last->H * last->W);
}

/* Every block's activations; the sizes of the shared scratch: the largest
 * activation, FiLM width, MLP width and im2col workspace. */
static void alloc_blocks(vae_model *m, size_t *act_max, int *film_c, int *film_w, int *mlp_w,
                         size_t *work) {
    const size_t n = (size_t)m->max_batch;
    for (int b = 0; b < m->nblocks_enc + m->nblocks_dec; b++) {
        conv_block *blk = b < m->nblocks_enc ? &m->enc[b] : &m->dec[b - m->nblocks_enc];
        block_alloc(m, blk);
        for (int l = 0; l < blk->nlayers; l++) {
            conv_geom g = layer_geom(m, blk, l, m->max_batch);
            *work = YT_MAX(*work, blk->blocked ? convb_work_size(&g) : conv_work_size(&g));
            *act_max = YT_MAX(*act_max, n * g.cin * g.h * g.w);
            *act_max = YT_MAX(*act_max, n * g.cout * g.ho * g.wo);
        }
        *film_c = YT_MAX(*film_c, blk->C);
        if (blk->film)
            for (int i = 0; i < blk->scale_mlp.nlayers; i++)
                *film_w = YT_MAX(*film_w, blk->scale_mlp.out[i]);
    }
    *mlp_w = YT_MAX(*mlp_w, *film_w);
    for (int i = 0; i < m->enc_fc.nlayers; i++) *mlp_w = YT_MAX(*mlp_w, m->enc_fc.out[i]);
    for (int i = 0; i < m->dec_fc.nlayers; i++) *mlp_w = YT_MAX(*mlp_w, m->dec_fc.out[i]);
    conv_geom go = out_geom(m, m->max_batch);
    *work = YT_MAX(*work, conv_work_size(&go));
}

/* Activations for max_batch samples, and the backward scratch. */
static void alloc_activations(vae_model *m) {
    const size_t n = (size_t)m->max_batch;
    size_t act_max = n * YT_MAX(m->in_c, m->out_c) * m->in_h * m->in_w, work = 0;
    int film_c = 1, film_w = 1, mlp_w = 1;
    alloc_blocks(m, &act_max, &film_c, &film_w, &mlp_w, &work);
    tail_alloc(m);
    head_alloc(m);
    mlp_alloc(m, &m->enc_fc);
    mlp_alloc(m, &m->dec_fc);
    const int L = m->latent;
    m->flat = alloc_buf(m, n * m->enc_fc.in[0]);
    m->mean = alloc_buf(m, n * L);
    m->sigma = alloc_buf(m, n * L);
    m->z = alloc_buf(m, n * L);
    m->reshaped = alloc_buf(m, n * m->dec_fc.out[m->dec_fc.nlayers - 1]);
    m->out = alloc_buf(m, n * m->out_c * m->in_h * m->in_w);
    if (m->dec[0].blocked) m->out_in = alloc_buf(m, n * m->dec[0].C * m->in_h * m->in_w);
    m->recon = yt_calloc(n, sizeof *m->recon);
    m->kl = yt_calloc(n, sizeof *m->kl);
    m->coef_rec = yt_calloc(n, sizeof *m->coef_rec);
    m->coef_kl = yt_calloc(n, sizeof *m->coef_kl);
    act_max = YT_MAX(act_max, n * m->enc_fc.in[0]);
    act_max = YT_MAX(act_max, n * m->dec_fc.out[m->dec_fc.nlayers - 1]);
    m->g0 = alloc_buf(m, act_max);
    m->g1 = alloc_buf(m, act_max);
    m->gs = alloc_buf(m, n * film_c);
    m->gt = alloc_buf(m, n * film_c);
    m->zeros = alloc_buf(m, n * film_c);
    m->gg = alloc_buf(m, n * mlp_w);
    m->gm0 = alloc_buf(m, n * mlp_w);
    m->gm1 = alloc_buf(m, n * mlp_w);
    m->gm2 = alloc_buf(m, n * film_w);
    m->gm3 = alloc_buf(m, n * film_w);
    m->dcode = alloc_buf(m, n * 2 * L);
    m->dmean = alloc_buf(m, n * L);
    m->dsigma = alloc_buf(m, n * L);
    m->dz = alloc_buf(m, n * L);
    m->dinput = alloc_buf(m, n * m->in_c * m->in_h * m->in_w);
    m->work_size = work;
    m->work = alloc_buf(m, work);
}

static int scaled(long v, double width) {
    long r = lround((double)v * width);
    return (int)(r < 1 ? 1 : r);
}

/* model.width: every channel count and hidden width times width; the last
 * encoder fc stays 2L, the last decoder fc follows the scaled reshape. A
 * width of 0 (a config built in code, not loaded) is 1. */
static void apply_width(cfg_model *mc) {
    const double w = mc->width;
    if (!(w > 0) || w == 1.0) return;
    cfg_net *nets[2] = {&mc->encoder, &mc->decoder};
    for (int k = 0; k < 2; k++) {
        nets[k]->base_channels = scaled(nets[k]->base_channels, w);
        for (int i = 0; i + 1 < nets[k]->fc_sizes.n; i++)
            nets[k]->fc_sizes.v[i] = scaled(nets[k]->fc_sizes.v[i], w);
    }
    cfg_net *de = &mc->decoder;
    de->reshape[2] = scaled(de->reshape[2], w);
    de->fc_sizes.v[de->fc_sizes.n - 1] = (long)de->reshape[0] * de->reshape[1] * de->reshape[2];
    for (int i = 0; i < mc->conditioning.hidden_sizes.n; i++)
        mc->conditioning.hidden_sizes.v[i] = scaled(mc->conditioning.hidden_sizes.v[i], w);
}

vae_model *model_create(const cfg_model *mc, int max_batch) {
    YT_CHECK(max_batch > 0);
    vae_model *m = yt_calloc(1, sizeof *m);
    m->mc = *mc;
    apply_width(&m->mc);
    m->max_batch = max_batch;
    m->threads = blas_threads();
    m->in_h = m->mc.input_shape[0];
    m->in_w = m->mc.input_shape[1];
    m->in_c = m->mc.input_shape[2];
    m->latent = m->mc.latent_dim;
    m->out_c = m->mc.decoder.channels_out;
    m->cond_dim = mc->conditioning.type == COND_NONE ? 0 : 2;
    arena_init(&m->params);
    build_encoder(m);
    build_decoder(m);
    choose_layouts(m);
    choose_lazy(m);
    m->prof_loss = prof_add(m, "latent+loss");
    arena_alloc(&m->params);
    alloc_activations(m);
    double f, skipped;
    cost(m, &f, &skipped, m->prof);
    return m;
}

void model_free(vae_model *m) {
    if (!m) return;
    for (int i = 0; i < m->nowned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->recon);
    free(m->kl);
    free(m->coef_rec);
    free(m->coef_kl);
    free(m->tail);
    free(m->head);
    arena_free(&m->params);
    free(m);
}

/* ---- initialisation ---------------------------------------------------------------- */

void model_init_params(vae_model *m, uint64_t seed) {
    const cfg_model *c = &m->mc;
    double conv_scale = 2.0 / (1.0 + c->alpha * c->alpha);
    for (int i = 0; i < m->params.n; i++) {
        const arena_tensor *t = &m->params.t[i];
        real *p = arena_param(&m->params, i);
        if (t->ndim == 1 || t->fan_in == 0) { /* biases, gates */
            memset(p, 0, t->size * sizeof *p);
            continue;
        }
        double scale, fan;
        if (t->ndim == 4) {
            scale = conv_scale;
            fan = c->kernel_init == INIT_FAN_AVG ? 0.5 * (t->fan_in + t->fan_out) : t->fan_in;
        } else {
            scale = 2.0;
            fan = t->fan_in;
        }
        double std = sqrt(scale / fan) / TRUNC_NORMAL_STD;
        rng_stream s = rng_stream_make(seed, RNG_INIT, (uint32_t)i, 0, 0);
        for (size_t j = 0; j < t->size; j++) p[j] = (real)(std * rng_truncated_normal(&s));
    }
}

/* ---- forward ------------------------------------------------------------------------ */

static real *P(const vae_model *m, int idx) { return arena_param(&m->params, idx); }
static real *G(const vae_model *m, int idx) { return arena_grad(&m->params, idx); }

/* g = 2 sigmoid(cond W^T + b) */
static void gate_forward(vae_model *m, gate *g, int n, const real *cond) {
    dense_forward(n, 2, g->c, cond, P(m, g->kernel), P(m, g->bias), g->g, NULL);
    for (size_t i = 0; i < (size_t)n * g->c; i++) g->g[i] = 2 * sigmoid1(g->g[i]);
}

/* dg [n][c] (clobbered): the gradient w.r.t. the gate's output; accumulates
 * into its kernel's and bias's gradients. dg/du = g (1 - g / 2). */
static void gate_backward(vae_model *m, const gate *g, int n, const real *cond, real *dg) {
    for (size_t i = 0; i < (size_t)n * g->c; i++) dg[i] *= g->g[i] * (1 - g->g[i] / 2);
    dense_backward(n, 2, g->c, cond, P(m, g->kernel), dg, NULL, G(m, g->kernel), G(m, g->bias));
}

/* cond: the conditioning input of the hidden layers' gates (unused without);
 * work: [n][max MLP width] of scratch */
static const real *mlp_forward(vae_model *m, mlp *p, int n, const real *x, const real *cond,
                               real *work) {
    double t0 = tic(m);
    const real *in = x;
    const real alpha = (real)m->mc.dense_alpha;
    for (int i = 0; i < p->nlayers; i++) {
        dense_forward(n, p->in[i], p->out[i], in, P(m, p->kernel[i]), P(m, p->bias[i]), p->pre[i],
                      work);
        if (i + 1 < p->nlayers) {
            const size_t sz = (size_t)n * p->out[i];
            const real *act = p->pre[i];
            if (p->gate[i].kernel >= 0) {
                gate_forward(m, &p->gate[i], n, cond);
                for (size_t j = 0; j < sz; j++) p->gated[i][j] = p->gate[i].g[j] * p->pre[i][j];
                act = p->gated[i];
            }
            lrelu_forward(sz, alpha, act, p->post[i]);
            in = p->post[i];
        }
    }
    toc(m, p->prof, t0, false);
    return p->pre[p->nlayers - 1];
}

/* out[i] = mult * v[i] + add */
static void affine(size_t n, double mult, double add, const real *v, real *out) {
    for (size_t i = 0; i < n; i++) out[i] = (real)(mult * v[i] + add);
}

/* A FiLM block's two conditioning MLPs run side by side, one a thread where
 * the rank has two (each MLP's own calls then run on its thread): a few
 * dozen small GEMMs and passes a block, each too small to split well
 * (docs/DESIGN.md, lever 59). */
typedef struct {
    vae_model *m;
    conv_block *b;
    int n;
    const real *cond;
    bool backward;
} film_call;

/* its MLPs' multiply-adds, for par_threads */
static size_t film_work(const conv_block *b, int n) {
    size_t w = 0;
    for (int i = 0; i < b->scale_mlp.nlayers; i++)
        w += (size_t)n * b->scale_mlp.in[i] * b->scale_mlp.out[i];
    return 2 * w;
}

static void mlp_backward(vae_model *m, mlp *p, int n, const real *x, const real *cond,
                         const real *dout, real *dx, real *b0, real *b1);

/* film_prepare's and film_mlps_backward's part: the block's MLPs k in t's
 * share of 2 (0 scale, 1 shift), forward or backward, each with its own
 * scratch */
static void film_part(void *ctx, int t, int T) {
    const film_call *f = ctx;
    vae_model *m = f->m;
    conv_block *b = f->b;
    const cfg_conditioning *c = &m->mc.conditioning;
    for (int k = (int)par_split(2, t, T); k < (int)par_split(2, t + 1, T); k++) {
        mlp *p = k ? &b->shift_mlp : &b->scale_mlp;
        const double mult = k ? c->shifts_mult : c->scales_mult;
        if (f->backward) {
            real *g = k ? m->gt : m->gs;
            affine((size_t)f->n * b->C, mult, 0, g, g);
            mlp_backward(m, p, f->n, f->cond, NULL, g, NULL, k ? m->gm2 : m->gm0,
                         k ? m->gm3 : m->gm1);
        } else {
            const real *v = mlp_forward(m, p, f->n, f->cond, NULL, k ? m->gm1 : m->gm0);
            affine((size_t)f->n * b->C, mult, k ? c->shifts_add : c->scales_add, v,
                   k ? b->shift : b->scale);
        }
    }
}

/* The block's FiLM stage: scales and shifts from the conditioning MLPs. */
static film_stage film_prepare(vae_model *m, conv_block *b, int n, const real *cond) {
    double t0 = tic(m);
    film_call f = {m, b, n, cond, false};
    par_run(par_threads(film_work(b, n), 2), film_part, &f);
    toc(m, b->prof_film, t0, false);
    return b->stage;
}

/* Layer l's gate as a FiLM stage without shift, with the leaky ReLU that
 * follows the layer (between layers, or the block's after the last). */
static film_stage gate_stage(const vae_model *m, const conv_block *b, int l) {
    return (film_stage){.scale = b->gate[l].g, .shift = m->zeros,
                        .lrelu = l < b->nlayers - 1 || b->out_lrelu, .alpha = (real)m->mc.alpha};
}

/* Layer l of block b: its conv, then what follows it (fused where the
 * kernels can): the gate and leaky ReLU (gated), FiLM and the block's leaky
 * ReLU (a FiLM block's last layer), or the leaky ReLU between layers.
 * Returns the layer's output (the last layer's before an unfused leaky ReLU;
 * z when the block is lazy). xst: the stage to apply to `in` (block_out). */
static const real *layer_forward(vae_model *m, conv_block *b, int l, int n, const real *in,
                                 const film_stage *xst, const real *cond, const film_stage *film) {
    const int last = b->nlayers - 1;
    conv_geom g = layer_geom(m, b, l, n);
    g.xstage = xst;
    const real *k = P(m, b->kernel[l]), *bias = P(m, b->bias[l]);
    film_stage st;
    const film_stage *fused = l == last && b->film ? film : NULL;
    real *o = b->o;
    if (b->gated) {
        gate_forward(m, &b->gate[l], n, cond);
        st = gate_stage(m, b, l);
        fused = &st;
        if (l < last) o = b->a[l];
    }
    if (b->blocked) {
        if (b->deconv)
            convb_deconv_forward(&g, in, k, bias, fused, b->z[l], fused ? o : NULL, m->work);
        else
            convb_conv_forward(&g, in, k, bias, fused, b->z[l], fused ? o : NULL, m->work);
        if (fused) return o;
    } else if (fused) {
        if (b->lazy) o = NULL; /* the next layer applies the stage */
        if (b->deconv)
            deconv_film_forward(&g, in, k, bias, fused, b->z[l], o, m->work);
        else
            conv_film_forward(&g, in, k, bias, fused, b->z[l], o, m->work);
        return o ? o : b->z[l];
    } else if (b->deconv) {
        deconv_forward(&g, in, k, bias, b->z[l], m->work);
    } else {
        conv_forward(&g, in, k, bias, b->z[l], m->work);
    }
    if (l == last) return b->z[l];
    lrelu_forward((size_t)n * b->cout[l] * (b->deconv ? g.h * g.w : g.ho * g.wo),
                  (real)m->mc.alpha, b->z[l], b->a[l]);
    return b->a[l];
}

/* A tensor of the block's input shape from in_blocked's layout into the
 * block's (into_block), or back */
static void convert_input(const conv_block *b, int n, bool into_block, const real *src, real *dst) {
    const int c = b->cin[0], hw = b->h[0] * b->w[0];
    if (into_block == b->blocked)
        convb_from_chan(c, n, hw, src, dst);
    else
        convb_to_chan(c, n, hw, src, dst);
}

/* The block's input x (in_blocked's layout) in the block's layout: x, or
 * its copy in b->xin */
static const real *block_input(conv_block *b, int n, const real *x) {
    if (b->blocked == b->in_blocked) return x;
    convert_input(b, n, true, x, b->xin);
    return b->xin;
}

/* xst: the stage of the block before, to apply to x (block_out) */
static void block_forward(vae_model *m, conv_block *b, int n, const real *x, const film_stage *xst,
                          const real *cond) {
    /* FiLM first: the block's last layer applies it, and the leaky ReLU after
     * it, while its output is still in cache (layers.h, film_stage) */
    film_stage st = {0};
    if (b->film) st = film_prepare(m, b, n, cond);
    const real *in = x;
    for (int l = 0; l < b->nlayers; l++) {
        double t0 = tic(m);
        if (l == 0) in = block_input(b, n, x);
        in = layer_forward(m, b, l, n, in, l == 0 ? xst : NULL, cond, &st);
        toc(m, b->prof[l], t0, false);
    }
    if (!b->film && !b->gated && b->out_lrelu) {
        double t0 = tic(m);
        lrelu_forward((size_t)n * b->C * b->H * b->W, (real)m->mc.alpha, b->z[b->nlayers - 1],
                      b->o);
        toc(m, b->prof_film, t0, false);
    }
}

/* ---- the chains: forward ------------------------------------------------------------ */

typedef struct chain_call chain_call;
struct chain_call {
    vae_model *m;
    model_chain *ch;
    int n;
    chain_shapes s;
    const real *x;  /* the chain's input [C][n][h][w] (forward) */
    bool backward;  /* groups run backward (the tail's fused forward too): sums zeroed first */
    const real *dy; /* the gradient w.r.t. the chain's output (backward; the fused tail: none) */
    real *dx;       /* the gradient w.r.t. the chain's input (backward; the head: NULL, none) */
    const double *fuse; /* the tail, forward: the loss's coefficients when fused, else NULL */
    /* each group through its thread's slot (convs_view): nothing reads the
     * chain's tensors after its pass (a forward that keeps nothing for a
     * backward, the tail's with its backward fused) */
    bool view;
    void (*group)(const chain_call *c, int t, int g); /* group g, on thread t */
};

/* time of one layer on thread 0 of a chain (bench's per-layer table: the
 * other threads run their groups meanwhile) */
static void chain_toc(vae_model *m, int t, int entry, double t0, bool backward) {
    if (t == 0) toc(m, entry, t0, backward);
}

/* layer j's input in a chain, and its shape: the chain's input (j 0) or
 * layer j - 1's o */
static const convs_shape *chain_input(const chain_call *c, int j, real **in) {
    *in = j ? c->ch->o[j - 1] : c->ch->in;
    return j ? &c->s.ly[j - 1] : &c->s.in;
}

/* thread t's share of the groups (backward: its kernel and bias gradient
 * accumulators zeroed first) */
static void chain_part(void *ctx, int t, int parts) {
    const chain_call *c = ctx;
    model_chain *C = c->ch;
    if (c->backward) {
        for (int k = 0; k < C->nacc; k++)
            memset(C->acc[t][k], 0, C->klen[k] * sizeof(rvec));
        if (C->dbo[t]) memset(C->dbo[t], 0, (size_t)c->m->out_c * sizeof(double));
    }
    const size_t G = (size_t)c->s.in.groups;
    for (int g = (int)par_split(G, t, parts); g < (int)par_split(G, t + 1, parts); g++) {
        if (!c->view) {
            c->group(c, t, g);
            continue;
        }
        chain_call v = *c; /* t < parts <= G: slot t exists */
        v.s.in = convs_view(&c->s.in, g, t);
        for (int j = 0; j < C->nl; j++)
            v.s.ly[j] = convs_view(&c->s.ly[j], g, t);
        if (C == c->m->tail) v.s.out = convs_view(&c->s.out, g, t);
        c->group(&v, t, g);
    }
}

/* every group through the chain (backward: the stages' sums zeroed first);
 * returns the threads it took */
static int chain_run(chain_call *c) {
    model_chain *C = c->ch;
    for (int j = 0; c->backward && j < C->nl; j++) {
        memset(C->sv[j], 0, convs_sums_len(c->s.ly[j].c, c->n) * sizeof(double));
        memset(C->tv[j], 0, convs_sums_len(c->s.ly[j].c, c->n) * sizeof(double));
    }
    const int parts = YT_MIN(C->parts, c->s.in.groups);
    par_run(parts, chain_part, c);
    return parts;
}

/* the stages of a chain's layers: its blocks' FiLM, the leaky ReLU
 * between layers */
static void chain_stages(vae_model *m, model_chain *C, int n, const real *cond) {
    for (int j = 0; j < C->nl; j++) {
        conv_block *b = C->lb[j];
        const int l = C->ll[j];
        film_stage st = {.scale = C->ones, .shift = m->zeros, .lrelu = true,
                         .alpha = (real)m->mc.alpha};
        if (l == b->nlayers - 1) st = film_prepare(m, b, n, cond);
        convs_stage_set(&C->st[j], &st, b->cout[l], n, C->stbuf[j]);
    }
}

/* A or B (src/convs.h), the same arguments */
typedef void (*convs_pass)(const conv_geom *, const convs_shape *, const real *, const real *,
                           const real *, const convs_shape *, real *, const convs_stores *, real *,
                           int, int);

/* group g on thread t, forward, through a chain's layers [0, upto): its
 * input copied in, then each layer (conv: A for convs, B for deconvs)
 * storing z and its stage's o. Returns the last one's o (upto 0: the input). */
static const real *chain_forward_layers(const chain_call *c, int t, int g, convs_pass conv,
                                        int upto) {
    vae_model *m = c->m;
    model_chain *C = c->ch;
    const chain_shapes *s = &c->s;
    double t0 = tic(m);
    convs_from_chan(&s->in, c->x, C->in, g, g + 1);
    const convs_shape *ish = &s->in;
    const real *in = C->in;
    for (int j = 0; j < upto; j++) {
        const conv_block *b = C->lb[j];
        const int l = C->ll[j];
        const convs_stores st = {CONVS_ZO, &C->st[j], C->o[j], NULL, NULL};
        conv(&s->geo[j], ish, in, P(m, b->kernel[l]), P(m, b->bias[l]), &s->ly[j], C->z[j], &st,
             C->wbuf[t], g, g + 1);
        chain_toc(m, t, b->prof[l], t0, false);
        t0 = tic(m);
        ish = &s->ly[j];
        in = C->o[j];
    }
    return in;
}

/* group g through the tail, forward, on thread t (the loss not fused: the
 * outputs out to m->out; fused, tail_step_group runs instead) */
static void tail_forward_group(const chain_call *c, int t, int g) {
    vae_model *m = c->m;
    model_chain *T = c->ch;
    const chain_shapes *s = &c->s;
    const real *in = chain_forward_layers(c, t, g, convs_b, T->nl);
    double t0 = tic(m);
    const convs_stores plain = {CONVS_Z, NULL, NULL, NULL, NULL};
    convs_a(&s->out_geo, &s->ly[T->nl - 1], in, P(m, m->out_kernel), P(m, m->out_bias), &s->out,
            T->out, &plain, T->wbuf[t], g, g + 1);
    convs_to_chan(&s->out, T->out, m->out, g, g + 1);
    chain_toc(m, t, m->prof_out, t0, false);
}

static void tail_backward_layers(const chain_call *c, int t, int g, int from);

#ifndef YOTO_DOUBLE
/* rows a pass can compute from what is done before it: A (and C) of g, its
 * output rows [0, r) from X's rows [0, xd); B of g, X's rows [0, r) from
 * Y's rows [0, yd) (convs.h) */
static int rows_from_x(const conv_geom *g, int xd) {
    if (xd >= g->h) return g->ho;
    /* output row r - 1 reads X's rows up to stride (r - 1) + 2 - pad_top */
    const int v = xd - 3 + g->pad_top;
    return v < 0 ? 0 : YT_MIN(g->ho, v / g->stride + 1);
}
static int rows_from_y(const conv_geom *g, int yd) {
    if (yd >= g->ho) return g->h;
    return YT_MAX(0, YT_MIN(g->h, g->stride * yd - g->pad_top));
}

/* TAIL_ROWS: rows of the last layer's output a step of tail_segment
 * computes before the passes behind it catch up */
#define TAIL_ROWS 16

/* The tail's last layer L and its output conv, forward, the fused loss and
 * backward, for group g on thread t, row by row: each pass runs as far as
 * the passes before it allow, so that the rows it reads (the last layer's z
 * and o, the outputs and their gradient, the gradient w.r.t. L's z) were
 * written a few rows before and are still in L1 or L2 (the 64 x 64 maps of
 * Shapes3D: 2.2 MB a tensor and group; docs/DESIGN.md, lever 61). Every
 * pass's rows run in order, and each sum's order is its rows': the same
 * bits as layer by layer (the reconstruction losses, summed row by row over
 * the channels instead of channel by channel, to float rounding). */
static void tail_segment(const chain_call *c, int t, int g) {
    vae_model *m = c->m;
    model_chain *T = c->ch;
    const chain_shapes *s = &c->s;
    const int L = T->nl - 1;
    const conv_block *b = T->lb[L];
    const int l = T->ll[L];
    const conv_geom *gl = &s->geo[L], *go = &s->out_geo;
    real *in;
    const convs_shape *ish = chain_input(c, L, &in), *xsh = &s->ly[L];
    real *w[4];
    for (int k = 0; k < 4; k++)
        w[k] = T->wbuf[t] + k * T->wlen;
    double t0 = tic(m);
    convs_b_pack(gl, P(m, b->kernel[l]), w[0]);
    convs_a_pack(go, P(m, m->out_kernel), w[1]);
    convs_b_pack(go, P(m, m->out_kernel), w[2]);
    convs_a_pack(gl, P(m, b->kernel[l]), w[3]);
    chain_toc(m, t, b->prof[l], t0, false);
    const convs_stores zo = {CONVS_ZO, &T->st[L], T->o[L], NULL, NULL},
                       plain = {CONVS_Z, NULL, NULL, NULL, NULL},
                       dzl = {CONVS_DZ, &T->st[L], T->z[L], T->sv[L], T->tv[L]},
                       dzp = L ? (convs_stores){CONVS_DZ, &T->st[L - 1], T->z[L - 1], T->sv[L - 1],
                                                T->tv[L - 1]}
                               : plain;
    real *dst = L ? T->z[L - 1] : T->in;
    const bool bern = m->mc.output_distribution == OUT_BERNOULLI;
    const convs_shape tsh = convs_shape_make(m->in_c, c->n, m->max_batch, m->in_h, m->in_w);
    double acc[VL];
    for (int k = 0; k < VL; k++)
        acc[k] = bern ? 0 : HALF_LOG_2PI * m->in_c * m->in_h * m->in_w;
    int fl = 0, fo = 0, bo = 0, bl = 0; /* rows done: L's output, the output, dz of L, L's input */
    while (bl < gl->ho) {
        if (fl < gl->h) {
            const int to = YT_MIN(gl->h, fl + TAIL_ROWS);
            t0 = tic(m);
            convs_b_rows(gl, ish, in, w[0], P(m, b->bias[l]), xsh, T->z[L], &zo, g, fl, to);
            chain_toc(m, t, b->prof[l], t0, false);
            fl = to;
        }
        int to = rows_from_x(go, fl);
        if (to > fo) {
            t0 = tic(m);
            convs_a_rows(go, xsh, T->o[L], w[1], P(m, m->out_bias), &s->out, T->out, &plain, g, fo,
                         to);
            if (bern)
                convs_bernoulli_rows(&s->out, T->out, &tsh, m->head->in, c->fuse, acc, g, fo, to);
            else
                convs_gaussian_rows(&s->out, T->out, &tsh, m->head->in, m->mc.eps, c->fuse, acc, g,
                                    fo, to);
            chain_toc(m, t, m->prof_out, t0, false);
            t0 = tic(m);
            convs_c_rows(go, &s->out, T->out, xsh, T->o[L], T->acc[t][T->nl], g, fo, to);
            convs_sum_rows(&s->out, T->out, T->dbo[t], g, fo, to);
            chain_toc(m, t, m->prof_out, t0, true);
            fo = to;
        }
        to = YT_MIN(fl, rows_from_y(go, fo));
        if (to > bo) {
            t0 = tic(m);
            convs_b_rows(go, &s->out, T->out, w[2], NULL, xsh, T->z[L], &dzl, g, bo, to);
            chain_toc(m, t, m->prof_out, t0, true);
            bo = to;
        }
        to = rows_from_x(gl, bo);
        if (to > bl) {
            t0 = tic(m);
            convs_c_rows(gl, ish, in, xsh, T->z[L], T->acc[t][L], g, bl, to);
            convs_a_rows(gl, xsh, T->z[L], w[3], NULL, ish, dst, &dzp, g, bl, to);
            chain_toc(m, t, b->prof[l], t0, true);
            bl = to;
        }
    }
    if (!L) convs_to_chan(ish, T->in, c->dx, g, g + 1);
    for (int k = 0; k < YT_MIN(VL, c->n - g * VL); k++)
        m->recon[g * VL + k] = acc[k];
}
#endif

/* group g through the tail, forward and at once backward (the loss fused):
 * its layers but the last, then the last and the output conv row by row
 * (tail_segment), then the rest of the backward */
static void tail_step_group(const chain_call *c, int t, int g) {
#ifdef YOTO_DOUBLE
    (void)c, (void)t, (void)g;
    yt_die("tail_step_group: the loss is fused only in the float builds");
#else
    const int L = c->ch->nl - 1;
    chain_forward_layers(c, t, g, convs_b, L);
    tail_segment(c, t, g);
    if (L) tail_backward_layers(c, t, g, L - 1);
#endif
}

/* The tail: from x (dec[nb]'s output or the reshape, [C][n][h][w]) to m->out.
 * With the loss fused (fuse: its coefficients) each group runs backward too,
 * right after its forward, while what the forward wrote is still in cache
 * (docs/DESIGN.md, lever 60): the gradient w.r.t. x into m->g1, the kernel
 * and stage sums into the chain's accumulators; model_backward adds them to
 * the gradients. The same bits as a backward after every group's forward:
 * each group's work and each thread's order of groups are the same. With
 * the loss fused, and where no backward follows (keep false), the groups
 * run through views (convs_view): the tail's tensors hold one group a
 * thread (lever 62). */
static void tail_forward(vae_model *m, int n, const real *x, const real *cond, const double *fuse,
                         bool keep) {
    chain_stages(m, m->tail, n, cond);
    chain_call c = {.m = m,
                    .ch = m->tail,
                    .n = n,
                    .s = tail_shapes_for(m, n),
                    .x = x,
                    .fuse = fuse,
                    .view = fuse || !keep,
                    .group = tail_forward_group};
    if (fuse) {
        c.backward = true;
        c.dx = m->g1;
        c.group = tail_step_group;
    }
    const int parts = chain_run(&c);
    m->tail->parts_done = fuse ? parts : 0;
}

/* group g through the head, forward, on thread t; the last block's o out
 * to [C][N][H][W] */
static void head_forward_group(const chain_call *c, int t, int g) {
    vae_model *m = c->m;
    const model_chain *H = c->ch;
    const real *o = chain_forward_layers(c, t, g, convs_a, c->ch->nl);
    double t0 = tic(m);
    const conv_block *last = &m->enc[H->nb - 1];
    convs_to_chan(&c->s.ly[H->nl - 1], o, last->o, g, g + 1);
    chain_toc(m, t, last->prof[last->nlayers - 1], t0, false);
}

/* the head: from the image x to enc[nb-1]'s o (keep: its tensors kept for
 * a backward and the fused loss's targets, else the groups through views) */
static void head_forward(vae_model *m, int n, const real *x, const real *cond, bool keep) {
    chain_stages(m, m->head, n, cond);
    chain_call c = {.m = m,
                    .ch = m->head,
                    .n = n,
                    .s = head_shapes_for(m, n),
                    .x = x,
                    .view = !keep,
                    .group = head_forward_group};
    chain_run(&c);
}

void model_sm_activation(const vae_model *m, const conv_block *b, int l, bool o, real *dst) {
    const model_chain *C = b->deconv ? m->tail : m->head;
    YT_CHECK(b->sm && C && l >= 0 && l < b->nlayers);
    int j = 0;
    while (j < C->nl && !(C->lb[j] == b && C->ll[j] == l)) j++;
    YT_CHECK(j < C->nl);
    const chain_shapes s = b->deconv ? tail_shapes_for(m, m->n) : head_shapes_for(m, m->n);
    convs_to_chan(&s.ly[j], o ? C->o[j] : C->z[j], dst, 0, s.ly[j].groups);
}

/* model_decode, the loss fused into the tail with these coefficients
 * (model_forward: not NULL only where loss_fusable); keep: what the
 * backward reads kept (model_forward) */
static void decode(vae_model *m, int n, const real *z, const real *cond, const double *fuse,
                   bool keep) {
    YT_CHECK(n > 0 && n <= m->max_batch);
    m->kept = m->kept && keep;
    const cfg_net *de = &m->mc.decoder;
    const real *r = mlp_forward(m, &m->dec_fc, n, z, cond, m->gm0);
    if (m->dec[m->nblocks_dec - 1].blocked)
        convb_from_rows(de->reshape[2], n, de->reshape[0] * de->reshape[1], r, m->reshaped);
    else
        rows_to_chan(de->reshape[2], n, de->reshape[0] * de->reshape[1], r, m->reshaped);
    const real *h = m->reshaped;
    const film_stage *xst = NULL;
    const int nb = m->tail ? m->tail->nb : 0;
    for (int k = m->nblocks_dec - 1; k >= nb; k--) {
        block_forward(m, &m->dec[k], n, h, xst, cond);
        h = block_out(&m->dec[k], &xst);
    }
    if (nb) {
        YT_CHECK(!xst); /* the tail copies its input from o (choose_lazy) */
        tail_forward(m, n, h, cond, fuse, keep);
        return;
    }
    double t0 = tic(m);
    conv_geom g = out_geom(m, n);
    g.xstage = xst;
    if (m->dec[0].blocked) {
        convb_to_chan(m->dec[0].C, n, m->in_h * m->in_w, h, m->out_in);
        h = m->out_in;
    }
    conv_forward(&g, h, P(m, m->out_kernel), P(m, m->out_bias), m->out, m->work);
    toc(m, m->prof_out, t0, false);
}

void model_decode(vae_model *m, int n, const real *z, const real *cond) {
    decode(m, n, z, cond, NULL, false);
}

/* model_encode; keep: what the backward (and the fused loss) reads kept */
static void encode(vae_model *m, int n, const real *x, const real *cond, const real *eps,
                   bool keep) {
    YT_CHECK(n > 0 && n <= m->max_batch);
    m->kept = keep;
    m->n = n;
    m->x = x;
    m->cond = cond;
    m->eps = eps;
    /* encoder */
    const real *h = x;
    const film_stage *xst = NULL;
    const int nh = m->head ? m->head->nb : 0;
    if (nh) {
        head_forward(m, n, x, cond, keep);
        h = m->enc[nh - 1].o;
    }
    for (int b = nh; b < m->nblocks_enc; b++) {
        block_forward(m, &m->enc[b], n, h, xst, cond);
        h = block_out(&m->enc[b], &xst);
    }
    YT_CHECK(!xst); /* the flatten reads o */
    const conv_block *last = &m->enc[m->nblocks_enc - 1];
    if (last->blocked)
        convb_to_rows(last->C, n, last->H * last->W, h, m->flat);
    else
        chan_to_rows(last->C, n, last->H * last->W, h, m->flat);
    const real *code = mlp_forward(m, &m->enc_fc, n, m->flat, cond, m->gm0); /* [n][2L] */
    /* posterior and reparameterised sample */
    double t0 = tic(m);
    const int L = m->latent;
    const real eps_s = (real)m->mc.eps;
    for (int i = 0; i < n; i++) {
        const size_t k = (size_t)i * L;
        real *mean = m->mean + k, *sigma = m->sigma + k, *z = m->z + k;
        memcpy(mean, code + 2 * k, (size_t)L * sizeof *mean);
        softplus_forward((size_t)L, code + 2 * k + L, sigma);
        for (int j = 0; j < L; j++) {
            sigma[j] += eps_s;
            z[j] = eps ? mean[j] + sigma[j] * eps[k + j] : mean[j];
        }
    }
    toc(m, m->prof_loss, t0, false);
}

void model_encode(vae_model *m, int n, const real *x, const real *cond, const real *eps) {
    encode(m, n, x, cond, eps, false);
}

/* the loss's gradient can be fused into the tail's output conv: its
 * target, the image, is the head's input in the same layout */
static bool loss_fusable(const vae_model *m) {
#ifdef YOTO_DOUBLE
    (void)m;
    return false;
#else
    const int per = m->mc.output_distribution == OUT_BERNOULLI ? 1 : 2; /* outputs a target */
    return m->head && m->tail && m->out_c == per * m->in_c;
#endif
}

void model_fuse_loss(vae_model *m, const real *w_rec, double scale) {
    m->fuse_w_rec = w_rec;
    m->fuse_scale = scale;
}

/* model_forward; keep: what the backward reads kept (model_losses: not) */
static void forward(vae_model *m, int n, const real *x, const real *cond, const real *eps,
                    bool keep) {
    const real *w_rec = keep && loss_fusable(m) ? m->fuse_w_rec : NULL;
    m->fuse_w_rec = NULL;
    m->loss_fused = w_rec != NULL;
    encode(m, n, x, cond, eps, keep);
    if (w_rec)
        for (int i = 0; i < n; i++) /* model_backward's coefficients */
            m->coef_rec[i] = m->fuse_scale * w_rec[i];
    decode(m, n, m->z, cond, w_rec ? m->coef_rec : NULL, keep);
    /* losses per sample (fused: the reconstruction's in the tail) */
    double t0 = tic(m);
    const int hw = m->in_h * m->in_w;
    if (!m->loss_fused) {
        if (m->mc.output_distribution == OUT_BERNOULLI)
            loss_bernoulli(m->in_c, n, hw, m->out, x, m->recon);
        else
            loss_gaussian(m->in_c, n, hw, m->mc.eps, m->out, x, m->recon);
    }
    loss_kl(n, m->latent, m->mean, m->sigma, m->kl);
    toc(m, m->prof_loss, t0, false);
}

void model_forward(vae_model *m, int n, const real *x, const real *cond, const real *eps) {
    forward(m, n, x, cond, eps, true);
}

void model_losses(vae_model *m, int n, const real *x, const real *cond, const real *eps) {
    forward(m, n, x, cond, eps, false);
}

void model_reconstruct(vae_model *m, int n, const real *x, const real *cond) {
    model_encode(m, n, x, cond, NULL);
    model_decode(m, n, m->z, cond);
}

/* ---- backward ------------------------------------------------------------------------ */

/* dout: gradient w.r.t. the MLP's output (pre of its last layer); dx may be NULL. */
/* From d, the gradient w.r.t. post[i] = lrelu(g pre[i]), to the gradient
 * w.r.t. pre[i] (in place); the gate's gradients accumulated. */
static void mlp_gate_backward(vae_model *m, mlp *p, int i, int n, const real *cond, real *d) {
    const size_t sz = (size_t)n * p->out[i];
    gate *g = &p->gate[i];
    lrelu_backward(sz, (real)m->mc.dense_alpha, p->gated[i], d, d);
    for (size_t j = 0; j < sz; j++) {
        m->gg[j] = d[j] * p->pre[i][j];
        d[j] *= g->g[j];
    }
    gate_backward(m, g, n, cond, m->gg);
}

/* dout: gradient w.r.t. the MLP's output (pre of its last layer); dx may be
 * NULL; cond: the gates' input (unused without gates); b0, b1: [n][max MLP
 * width] of scratch each */
static void mlp_backward(vae_model *m, mlp *p, int n, const real *x, const real *cond,
                         const real *dout, real *dx, real *b0, real *b1) {
    double t0 = tic(m);
    const real alpha = (real)m->mc.dense_alpha;
    const real *d = dout;
    real *buf[2] = {b0, b1};
    int which = 0;
    for (int i = p->nlayers - 1; i >= 0; i--) {
        const real *in = i == 0 ? x : p->post[i - 1];
        real *dnext = i == 0 ? dx : buf[which];
        which ^= 1;
        dense_backward(n, p->in[i], p->out[i], in, P(m, p->kernel[i]), d, dnext,
                       G(m, p->kernel[i]), G(m, p->bias[i]));
        if (i > 0 && p->gate[i - 1].kernel >= 0)
            mlp_gate_backward(m, p, i - 1, n, cond, dnext);
        else if (i > 0)
            lrelu_backward((size_t)n * p->out[i - 1], alpha, p->pre[i - 1], dnext, dnext);
        d = dnext;
    }
    toc(m, p->prof, t0, true);
}

/* The backward of layer_forward for layer l: from d, the gradient w.r.t. the
 * layer's output (clobbered), to dx (NULL: not wanted), the gradient w.r.t.
 * its input before the previous layer's leaky ReLU is undone (gated: with
 * it, as that layer's fused stage undoes it). Kernel, bias and gate
 * gradients accumulated; a FiLM block's last layer leaves its FiLM
 * gradients in m->gs, m->gt. */
static void layer_backward(vae_model *m, conv_block *b, int l, int n, const real *in,
                           const film_stage *xst, const real *cond, const film_stage *film, real *d,
                           real *dx) {
    const int last = b->nlayers - 1;
    conv_geom g = layer_geom(m, b, l, n);
    g.xstage = xst;
    const real *k = P(m, b->kernel[l]);
    real *dk = G(m, b->kernel[l]), *db = G(m, b->bias[l]);
    film_stage st;
    const film_stage *fused = l == last && b->film ? film : NULL;
    if (b->gated) {
        st = gate_stage(m, b, l);
        fused = &st;
    }
    if (b->blocked && b->deconv)
        convb_deconv_backward(&g, in, k, fused, b->z[l], d, dx, dk, db, m->gs, m->gt, m->work);
    else if (b->blocked)
        convb_conv_backward(&g, in, k, fused, b->z[l], d, dx, dk, db, m->gs, m->gt, m->work);
    else if (fused && b->deconv)
        deconv_film_backward(&g, in, k, fused, b->z[l], d, dx, dk, db, m->gs, m->gt, m->work);
    else if (fused)
        conv_film_backward(&g, in, k, fused, b->z[l], d, dx, dk, db, m->gs, m->gt, m->work);
    else if (b->deconv)
        deconv_backward(&g, in, k, d, dx, dk, db, m->work);
    else
        conv_backward(&g, in, k, d, dx, dk, db, m->work);
    if (b->gated) gate_backward(m, &b->gate[l], n, cond, m->gs);
}

/* A FiLM block's conditioning MLPs, from its FiLM gradients in m->gs, m->gt
 * (clobbered), side by side as film_prepare's */
static void film_mlps_backward(vae_model *m, conv_block *b, int n, const real *cond) {
    double t0 = tic(m);
    film_call f = {m, b, n, cond, true};
    par_run(par_threads(film_work(b, n), 2), film_part, &f);
    toc(m, b->prof_film, t0, true);
}

/* d: gradient w.r.t. the block output (scratch, overwritten); spare: a second
 * buffer. Returns the buffer holding the gradient w.r.t. the block input x
 * (in x's layout, in_blocked), or NULL when want_dx is false. */
static real *block_backward(vae_model *m, conv_block *b, int n, const real *x,
                            const film_stage *xst, const real *cond, real *d, real *spare,
                            bool want_dx) {
    const cfg_model *c = &m->mc;
    const real alpha = (real)c->alpha;
    const int last = b->nlayers - 1;
    if (!b->film && !b->gated && b->out_lrelu) {
        double t0 = tic(m);
        lrelu_backward((size_t)n * b->C * b->H * b->W, alpha, b->z[last], d, d);
        toc(m, b->prof_film, t0, true);
    }
    for (int l = last; l >= 0; l--) {
        double t0 = tic(m);
        const real *in = l > 0 ? b->a[l - 1] : b->blocked != b->in_blocked ? b->xin : x;
        real *dx = (l > 0 || want_dx) ? spare : NULL;
        layer_backward(m, b, l, n, in, l == 0 ? xst : NULL, cond, &b->stage, d, dx);
        if (l > 0 && !b->gated)
            lrelu_backward((size_t)n * b->cin[l] * b->h[l] * b->w[l], alpha, b->z[l - 1], dx, dx);
        if (dx) {
            spare = d;
            d = dx;
        }
        toc(m, b->prof[l], t0, true);
        if (l == last && b->film) film_mlps_backward(m, b, n, cond);
    }
    if (!want_dx) return NULL;
    if (b->blocked != b->in_blocked) { /* back to the producer's layout */
        convert_input(b, n, false, d, spare);
        d = spare;
    }
    return d;
}

/* tell the caller that the gradient of [offset of tensor idx, total) is final */
static void grad_ready(vae_model *m, int idx) {
    if (m->grad_ready) m->grad_ready(m->grad_ready_ctx, idx < 0 ? 0 : m->params.t[idx].offset);
}

/* ---- the chains: backward ----------------------------------------------------------- */

/* a chain's block k once every group's backward is done: each layer's
 * kernel gradient summed over the threads in thread order and its bias
 * gradient from its stage's sums, the FiLM gradients from the last one's,
 * its conditioning MLPs; grad_ready */
static void chain_block_end(vae_model *m, model_chain *C, int k, int n, int parts) {
    conv_block *b = &C->blk[k];
    /* its layers in order, so that the last one's stage (the FiLM) leaves
     * its gradients in m->gs, m->gt for film_mlps_backward */
    for (int j = 0; j < C->nl; j++) {
        if (C->lb[j] != b) continue;
        const int l = C->ll[j];
        double t0 = tic(m);
        for (int t = 0; t < parts; t++)
            convs_lanes_end(C->acc[t][j], C->klen[j], G(m, b->kernel[l]));
        convs_stage_end(&C->st[j], C->sv[j], C->tv[j], b->cout[l], n, m->gs, m->gt,
                        G(m, b->bias[l]));
        toc(m, b->prof[l], t0, true);
    }
    film_mlps_backward(m, b, n, m->cond);
    grad_ready(m, b->kernel[0]);
}

/* layers [0, from] of the tail, backward, group g on thread t: each from
 * the gradient w.r.t. its z, its kernel gradient, and the gradient w.r.t.
 * its input (through layer j - 1's stage; the tail's input's in T->in,
 * copied out to c->dx) */
static void tail_backward_layers(const chain_call *c, int t, int g, int from) {
    vae_model *m = c->m;
    model_chain *T = c->ch;
    const chain_shapes *s = &c->s;
    const convs_stores plain = {CONVS_Z, NULL, NULL, NULL, NULL};
    for (int j = from; j >= 0; j--) {
        double t0 = tic(m);
        const conv_block *b = T->lb[j];
        const int l = T->ll[j];
        real *in;
        const convs_shape *ish = chain_input(c, j, &in);
        convs_c(&s->geo[j], ish, in, &s->ly[j], T->z[j], T->acc[t][j], g, g + 1);
        if (j == 0) { /* the tail's input: its gradient in T->in, copied out */
            convs_a(&s->geo[j], &s->ly[j], T->z[j], P(m, b->kernel[l]), NULL, ish, T->in, &plain,
                    T->wbuf[t], g, g + 1);
            convs_to_chan(ish, T->in, c->dx, g, g + 1);
        } else {
            const convs_stores st = {CONVS_DZ, &T->st[j - 1], T->z[j - 1], T->sv[j - 1],
                                     T->tv[j - 1]};
            convs_a(&s->geo[j], &s->ly[j], T->z[j], P(m, b->kernel[l]), NULL, ish, T->z[j - 1],
                    &st, T->wbuf[t], g, g + 1);
        }
        chain_toc(m, t, b->prof[l], t0, true);
    }
}

/* group g through the tail, backward, on thread t */
static void tail_backward_group(const chain_call *c, int t, int g) {
    vae_model *m = c->m;
    model_chain *T = c->ch;
    const chain_shapes *s = &c->s;
    /* the output conv: its kernel and bias gradients, and the gradient
     * w.r.t. dec[0]'s z through dec[0]'s stage (each gradient in the place
     * of what the backward has done with: model_chain) */
    double t0 = tic(m);
    const int last = T->nl - 1;
    convs_from_chan(&s->out, c->dy, T->out, g, g + 1);
    convs_c(&s->out_geo, &s->out, T->out, &s->ly[last], T->o[last], T->acc[t][T->nl], g, g + 1);
    convs_sum(&s->out, T->out, T->dbo[t], g, g + 1);
    const convs_stores stl = {CONVS_DZ, &T->st[last], T->z[last], T->sv[last], T->tv[last]};
    convs_b(&s->out_geo, &s->out, T->out, P(m, m->out_kernel), NULL, &s->ly[last], T->z[last], &stl,
            T->wbuf[t], g, g + 1);
    chain_toc(m, t, m->prof_out, t0, true);
    tail_backward_layers(c, t, g, last);
}

/* The tail's backward from dy (the gradient w.r.t. the output conv's
 * output, [C][n][H][W]) to dx (w.r.t. the tail's input): every group
 * through the tail, then the output conv's kernel and bias gradients and
 * each block's (chain_block_end), in the order of the planar path. */
static void tail_backward(vae_model *m, int n, const real *dy, real *dx) {
    model_chain *T = m->tail;
    int parts = T->parts_done; /* the forward ran the groups (tail_forward) */
    T->parts_done = 0;
    YT_CHECK(!parts || dx == m->g1); /* where that forward left the gradient w.r.t. x */
    if (!parts) {
        YT_CHECK(!m->loss_fused); /* a forward that did not fuse the loss: its gradient is dy */
        chain_call c = {.m = m,
                        .ch = T,
                        .n = n,
                        .s = tail_shapes_for(m, n),
                        .backward = true,
                        .dy = dy,
                        .dx = dx,
                        .group = tail_backward_group};
        parts = chain_run(&c);
    }
    double t0 = tic(m);
    real *dbo = G(m, m->out_bias);
    for (int t = 0; t < parts; t++) {
        convs_lanes_end(T->acc[t][T->nl], T->klen[T->nl], G(m, m->out_kernel));
        for (int i = 0; i < m->out_c; i++)
            dbo[i] += (real)T->dbo[t][i];
    }
    toc(m, m->prof_out, t0, true);
    grad_ready(m, m->out_kernel);
    for (int k = 0; k < T->nb; k++)
        chain_block_end(m, T, k, n, parts);
}

/* group g through the head, backward, on thread t */
static void head_backward_group(const chain_call *c, int t, int g) {
    vae_model *m = c->m;
    model_chain *H = c->ch;
    const chain_shapes *s = &c->s;
    const int last = H->nl - 1;
    double t0 = tic(m);
    /* the gradient w.r.t. the last layer's o, through its stage, in the
     * place of its z */
    convs_stage_bwd_from_chan(&s->ly[last], &H->st[last], c->dy, H->z[last], H->z[last],
                              H->sv[last], H->tv[last], g, g + 1);
    /* layer j, from the gradient w.r.t. its z: its kernel gradient, and the
     * gradient w.r.t. its input (through layer j - 1's stage; the image's,
     * where asked, in the place of its copy) */
    const convs_stores plain = {CONVS_Z, NULL, NULL, NULL, NULL};
    for (int j = last; j >= 0; j--) {
        const conv_block *b = H->lb[j];
        const int l = H->ll[j];
        real *in;
        const convs_shape *ish = chain_input(c, j, &in);
        convs_c(&s->geo[j], &s->ly[j], H->z[j], ish, in, H->acc[t][j], g, g + 1);
        if (j > 0) {
            const convs_stores st = {CONVS_DZ, &H->st[j - 1], H->z[j - 1], H->sv[j - 1],
                                     H->tv[j - 1]};
            convs_b(&s->geo[j], &s->ly[j], H->z[j], P(m, b->kernel[l]), NULL, ish, H->z[j - 1],
                    &st, H->wbuf[t], g, g + 1);
        } else if (c->dx) {
            convs_b(&s->geo[0], &s->ly[0], H->z[0], P(m, b->kernel[l]), NULL, ish, H->in, &plain,
                    H->wbuf[t], g, g + 1);
            convs_to_chan(ish, H->in, c->dx, g, g + 1);
        }
        chain_toc(m, t, b->prof[l], t0, true);
        t0 = tic(m);
    }
}

/* The head's backward from dy (the gradient w.r.t. enc[nb-1]'s o,
 * [C][n][H][W]) to dx (w.r.t. the image; NULL: not asked): every group
 * through the head, then each block's gradients (chain_block_end), last
 * block first as in the planar path. */
static void head_backward(vae_model *m, int n, const real *dy, real *dx) {
    model_chain *H = m->head;
    chain_call c = {.m = m,
                    .ch = H,
                    .n = n,
                    .s = head_shapes_for(m, n),
                    .backward = true,
                    .dy = dy,
                    .dx = dx,
                    .group = head_backward_group};
    const int parts = chain_run(&c);
    for (int k = H->nb - 1; k >= 0; k--)
        chain_block_end(m, H, k, n, parts);
}

void model_backward(vae_model *m, const real *w_kl, const real *w_rec, double scale,
                    bool input_grad) {
    const int n = m->n, L = m->latent, hw = m->in_h * m->in_w;
    YT_CHECK(m->kept); /* after model_forward: inference keeps too little */
    double t0 = tic(m);
    for (int i = 0; i < n; i++) {
        const double c = scale * w_rec[i];
        if (m->loss_fused && c != m->coef_rec[i]) /* what the forward fused */
            yt_die("model_backward: w_rec and scale are not what model_fuse_loss was given");
        m->coef_rec[i] = c;
        m->coef_kl[i] = scale * w_kl[i];
    }
    /* decoder output (fused: the gradient is in the tail already) */
    if (!m->loss_fused) {
        if (m->mc.output_distribution == OUT_BERNOULLI)
            loss_bernoulli_backward(m->in_c, n, hw, m->out, m->x, m->coef_rec, m->g0);
        else
            loss_gaussian_backward(m->in_c, n, hw, m->mc.eps, m->out, m->x, m->coef_rec, m->g0);
    }
    toc(m, m->prof_loss, t0, true);
    real *d = m->g1, *spare = m->g0;
    const int nb = m->tail ? m->tail->nb : 0;
    if (nb) {
        tail_backward(m, n, m->g0, m->g1);
    } else {
        t0 = tic(m);
        conv_geom go = out_geom(m, n);
        const bool ob = m->dec[0].blocked;
        const real *out_x = block_out(&m->dec[0], &go.xstage);
        conv_backward(&go, ob ? m->out_in : out_x, P(m, m->out_kernel), m->g0, m->g1,
                      G(m, m->out_kernel), G(m, m->out_bias), m->work);
        if (ob) { /* to dec[0]'s layout */
            convb_from_chan(m->dec[0].C, n, hw, m->g1, m->g0);
            d = m->g0;
            spare = m->g1;
        }
        toc(m, m->prof_out, t0, true);
        /* the arena holds tensors in order of application, so what backward
         * has finished is always a suffix of it */
        grad_ready(m, m->out_kernel);
    }
    /* decoder blocks, in reverse order of application: 0 .. B-1 (the
     * tail's are done) */
    for (int k = nb; k < m->nblocks_dec; k++) {
        const film_stage *xst = NULL;
        const real *in = k == m->nblocks_dec - 1 ? m->reshaped : block_out(&m->dec[k + 1], &xst);
        d = block_backward(m, &m->dec[k], n, in, xst, m->cond, d, spare, true);
        spare = d == m->g0 ? m->g1 : m->g0;
        grad_ready(m, m->dec[k].kernel[0]);
    }
    /* reshape and decoder fc */
    const cfg_net *de = &m->mc.decoder;
    if (m->dec[m->nblocks_dec - 1].blocked)
        convb_to_rows(de->reshape[2], n, de->reshape[0] * de->reshape[1], d, spare);
    else
        chan_to_rows(de->reshape[2], n, de->reshape[0] * de->reshape[1], d, spare);
    mlp_backward(m, &m->dec_fc, n, m->z, m->cond, spare, m->dz, m->gm0, m->gm1);
    grad_ready(m, m->dec_fc.kernel[0]);
    /* z = mean + sigma eps, KL, sigma = eps + softplus(code2) */
    t0 = tic(m);
    for (size_t k = 0; k < (size_t)n * L; k++) {
        m->dmean[k] = m->dz[k];
        m->dsigma[k] = m->eps ? m->dz[k] * m->eps[k] : 0;
    }
    loss_kl_backward(n, L, m->mean, m->sigma, m->coef_kl, m->dmean, m->dsigma);
    const real *code = m->enc_fc.pre[m->enc_fc.nlayers - 1];
    for (int i = 0; i < n; i++) {
        const size_t k = (size_t)i * L;
        memcpy(m->dcode + 2 * k, m->dmean + k, (size_t)L * sizeof *m->dcode);
        softplus_backward((size_t)L, code + 2 * k + L, m->dsigma + k, m->dcode + 2 * k + L);
    }
    toc(m, m->prof_loss, t0, true);
    /* encoder fc, flatten, blocks B-1 .. 0 */
    mlp_backward(m, &m->enc_fc, n, m->flat, m->cond, m->dcode, m->g0, m->gm0, m->gm1);
    grad_ready(m, m->enc_fc.kernel[0]);
    const conv_block *last = &m->enc[m->nblocks_enc - 1];
    if (last->blocked)
        convb_from_rows(last->C, n, last->H * last->W, m->g0, m->g1);
    else
        rows_to_chan(last->C, n, last->H * last->W, m->g0, m->g1);
    d = m->g1;
    spare = m->g0;
    const int nh = m->head ? m->head->nb : 0;
    for (int b = m->nblocks_enc - 1; b >= nh; b--) {
        const film_stage *xst = NULL;
        const real *in = b == 0 ? m->x : block_out(&m->enc[b - 1], &xst);
        bool want = b > 0 || input_grad;
        d = block_backward(m, &m->enc[b], n, in, xst, m->cond, d, spare, want);
        if (d) spare = d == m->g0 ? m->g1 : m->g0;
        grad_ready(m, m->enc[b].kernel[0]);
    }
    if (nh)
        head_backward(m, n, d, input_grad ? m->dinput : NULL);
    else if (input_grad)
        memcpy(m->dinput, d, (size_t)n * m->in_c * hw * sizeof *d);
}

/* ---- cost ---------------------------------------------------------------------------- */

static double mlp_macs(const mlp *p) {
    double s = 0;
    for (int i = 0; i < p->nlayers; i++) s += (double)p->in[i] * p->out[i];
    return s;
}

/* forward MACs and the MACs of the input gradients backward does NOT compute */
static void cost(const vae_model *m, double *fwd, double *skipped, model_prof *prof) {
    double f = 0, skip = 0;
    for (int b = 0; b < m->nblocks_enc + m->nblocks_dec; b++) {
        const conv_block *blk = b < m->nblocks_enc ? &m->enc[b] : &m->dec[b - m->nblocks_enc];
        for (int l = 0; l < blk->nlayers; l++) {
            conv_geom g = layer_geom(m, blk, l, 1);
            f += conv_macs(&g);
            if (prof) prof[blk->prof[l]].macs = conv_macs(&g);
            if (b == 0 && l == 0) skip += conv_macs(&g); /* no gradient w.r.t. the image */
        }
        if (blk->film) {
            f += mlp_macs(&blk->scale_mlp) + mlp_macs(&blk->shift_mlp);
            if (prof) prof[blk->prof_film].macs = mlp_macs(&blk->scale_mlp) + mlp_macs(&blk->shift_mlp);
            /* nor w.r.t. the conditioning input */
            skip += (double)blk->scale_mlp.in[0] * blk->scale_mlp.out[0] * 2;
        }
    }
    f += mlp_macs(&m->enc_fc) + mlp_macs(&m->dec_fc);
    double out = (double)m->in_h * m->in_w * m->out_c * m->dec[0].C * 9;
    f += out;
    if (prof) {
        prof[m->enc_fc.prof].macs = mlp_macs(&m->enc_fc);
        prof[m->dec_fc.prof].macs = mlp_macs(&m->dec_fc);
        prof[m->prof_out].macs = out;
    }
    *fwd = f;
    *skipped = skip;
}

double model_encode_macs(const vae_model *m) {
    double f = mlp_macs(&m->enc_fc);
    for (int b = 0; b < m->nblocks_enc; b++) {
        const conv_block *blk = &m->enc[b];
        for (int l = 0; l < blk->nlayers; l++) {
            conv_geom g = layer_geom(m, blk, l, 1);
            f += conv_macs(&g);
        }
        if (blk->film) f += mlp_macs(&blk->scale_mlp) + mlp_macs(&blk->shift_mlp);
    }
    return f;
}

double model_forward_macs(const vae_model *m) {
    double f, s;
    cost(m, &f, &s, NULL);
    return f;
}

double model_train_flops(const vae_model *m) {
    double f, s;
    cost(m, &f, &s, NULL);
    return 2.0 * (3.0 * f - s);
}
