/* convs.h — 3x3 convolutions on a sample-minor activation layout, run a
 * group of samples at a time (internal to the layers module, like convk.h
 * and convb.h).
 *
 * convk.c copies every layer's [C][N][H][W] input into zero-padded grids and
 * its output back out; convb.c's channel vectors waste their lanes on the
 * 3 to 16 channels of the large maps. Here the vectors run over samples:
 *
 *   a tensor of c channels of n samples of h x w is [c][G][h + 2][w + 2][VL]:
 *   G = ceil(n / VL) groups of VL samples, lane l of group g is sample
 *   g VL + l; every channel plane of a group has a one-pixel border of
 *   zeros that nothing writes (the SAME padding, in place), and the lanes
 *   of samples past n are zero.
 *
 * So every tap of every output position is one whole vector at a fixed
 * offset, only valid positions are computed, and one layer's output is the
 * next layer's input as it lies: no copies between layers. The groups are
 * independent, so a model can run a chain of layers group by group
 * (docs/DESIGN.md, lever 43: what a group writes is still in cache when
 * the next layer reads it), and threads can split the groups.
 *
 * For a conv g from its X side (g->cin channels, h x w) to its Y side
 * (g->cout, ho x wo), a deconv being its adjoint (layers.h), three
 * computations over the groups [ga, gb):
 *   A  Y = conv(X) (+ bias)        conv forward; deconv backward's dx
 *   B  X = conv^T(Y) (+ bias)      deconv forward; conv backward's dx
 *   C  acc += corr(Y, X)           both kernel gradients, in vector lanes
 * A and B store the output as z, as z and a stage's output o (the
 * forward), or take the gradient they compute, w.r.t. the producer's o,
 * through the producer's stage (its z read where it lies) and store the
 * gradient w.r.t. that z, adding the stage's sums per sample (lanes: no
 * reduction). Kernels k [g->cout][g->cin][3][3] and biases are in the
 * model's layout; `wbuf` is scratch of convs_wbuf_len(g) reals (one per
 * thread). The functions are pure over their groups: threads may run
 * disjoint group ranges at once, each with its own wbuf and acc.
 */
#ifndef YOTO_CONVS_H
#define YOTO_CONVS_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"
#include "convgeom.h"
#include "simd.h"

/* ---- the layout -------------------------------------------------------------------- */

typedef struct {
    int c, n, groups, h, w;
    size_t rp, gp, cp; /* row, group and channel pitches (reals) */
    int g0;            /* the group stored first: 0, but in a view (convs_view) */
} convs_shape;

/* c channels of n samples of h x w, laid out for up to cap >= n samples: a
 * buffer that holds batches of different sizes keeps every position (and
 * its zero border) where it is */
convs_shape convs_shape_make(int c, int n, int cap, int h, int w);
/* A view of group g of a tensor of shape s that stores it where the
 * tensor's group `slot` lies (slot < s->groups): a pass over group g
 * through it touches only slot's positions (with their zero border), and
 * its stage vectors, sums and lanes past n stay g's. Only group g may be
 * addressed through it. A chain whose groups nothing reads after their pass
 * (the decoder's tail with its backward fused, and inference) runs each
 * group through a view at its thread's slot: one group a thread in cache
 * instead of the batch's (docs/DESIGN.md, lever 62). */
convs_shape convs_view(const convs_shape *s, int g, int slot);
/* reals a tensor takes (aligned to 64 bytes by its allocator: the pitches
 * keep whole vectors), with room past its end that a row's last tile reads */
size_t convs_len(const convs_shape *s);
/* position (y, x) of channel c, group g; y, x from -1 (the border) to h, w */
YT_INLINE real *convs_at(const convs_shape *s, real *p, int c, int g, int y, int x) {
    return p + (size_t)c * s->cp + (size_t)(g - s->g0) * s->gp + (size_t)(y + 1) * s->rp +
           (size_t)(x + 1) * VL;
}
/* groups [ga, gb) of [c][n][h][w] <-> the layout (from: the lanes past n
 * written zero; the border is left as it is, zero from allocation) */
void convs_from_chan(const convs_shape *s, const real *x, real *xs, int ga, int gb);
void convs_to_chan(const convs_shape *s, const real *xs, real *x, int ga, int gb);

/* ---- stages ------------------------------------------------------------------------ */

/* a FiLM (+ leaky ReLU) stage's scale and shift as vectors over the samples
 * of each group: channel c, group g at [c * groups + g]; zero lanes past n,
 * so those samples' outputs and gradients stay zero */
typedef struct {
    rvec *a, *t;
    bool lrelu;
    real alpha;
} convs_stage;
/* rvecs convs_stage_set takes from buf: 2 c groups */
size_t convs_stage_len(int c, int n);
void convs_stage_set(convs_stage *s, const film_stage *st, int c, int n, rvec *buf);

/* A stage's gradient sums per sample: sum g z and sum g over the positions
 * (g: the gradient w.r.t. FiLM's output), channel c, group g, lane l at
 * [(c * groups + g) * VL + l]; a row's sums in float lanes, added here in
 * double. convs_sums_len(c, n) doubles each. */
size_t convs_sums_len(int c, int n);

/* What A and B store, besides their output:
 *   CONVS_Z   nothing (the output is z, or a gradient passed on as it is);
 *   CONVS_ZO  the stage's output o = stage(z) into aux (st: the layer's own stage);
 *   CONVS_DZ  the output is the gradient w.r.t. the o of the stage st
 *             (the producer's); stored is the gradient w.r.t. its z, aux
 *             (read) holds that z, and sv, tv += the stage's sums. aux may
 *             be the output itself: each position's z is read before its
 *             gradient is stored there. */
typedef enum { CONVS_Z, CONVS_ZO, CONVS_DZ } convs_mode;
typedef struct {
    convs_mode mode;
    const convs_stage *st;
    real *aux;
    double *sv, *tv;
} convs_stores;

/* dscale, dshift [n][c] from a stage's sums (overwritten), and the bias
 * gradient of the conv before the stage, db[c] += sum over samples of a dshift */
void convs_stage_end(const convs_stage *st, const double *sv, const double *tv, int c, int n,
                     real *dscale, real *dshift, real *db);
/* groups [ga, gb) of a planar gradient dy [c][n][h][w] w.r.t. a stage's
 * output -> the gradient w.r.t. its z in the layout (z: zs), with the sums
 * (sv, tv +=): where the layout's chain meets a consumer on [C][N][H][W] */
void convs_stage_bwd_from_chan(const convs_shape *s, const convs_stage *st, const real *dy,
                               const real *zs, real *dzs, double *sv, double *tv, int ga, int gb);
/* acc[c] += the sum over the positions of groups [ga, gb) of channel c (a
 * bias gradient), row by row (the same bits however the groups are split) */
void convs_sum(const convs_shape *s, const real *xs, double *acc, int ga, int gb);
/* rows [r0, r1) of group g of it (each channel's rows in order: the same bits) */
void convs_sum_rows(const convs_shape *s, const real *xs, double *acc, int g, int r0, int r1);
#ifndef YOTO_DOUBLE
/* The Bernoulli reconstruction loss of group g in the layout, fused with its
 * gradient (loss.c's formulas, float build): ls the logits (shape s), xs
 * the targets (shape xsh: the same but for g0, convs_view); per sample
 * (lane) recon[i] = the sum of the sigmoid cross-entropies (each row in
 * float lanes, then double), and ls overwritten by coef[i] (sigmoid(l) -
 * x), loss_bernoulli_backward's bits element for element (spare lanes stay
 * zero). */
void convs_bernoulli(const convs_shape *s, real *ls, const convs_shape *xsh, const real *xs,
                     const double *coef, double *recon, int g);
/* rows [r0, r1) of it, acc[l] += lane l's sums (rows in order, channel by
 * channel; convs_bernoulli: every row from acc zero, then recon = acc) */
void convs_bernoulli_rows(const convs_shape *s, real *ls, const convs_shape *xsh, const real *xs,
                          const double *coef, double *acc, int g, int r0, int r1);
/* The Gaussian one likewise: os the output (channels [0, C) the means,
 * [C, 2C) the raw scales, sigma = eps + softplus(raw); shape s), xs the
 * targets (xsh: C channels); os overwritten by loss_gaussian_backward's
 * gradient, the same bits where h w is a multiple of VL (every model here;
 * the rest of a plane loss.c computes in double) */
void convs_gaussian(const convs_shape *s, real *os, const convs_shape *xsh, const real *xs,
                    double eps, const double *coef, double *recon, int g);
/* rows [r0, r1) of it, acc[l] += (convs_gaussian starts acc at the
 * constant term, HALF_LOG_2PI C h w) */
void convs_gaussian_rows(const convs_shape *s, real *os, const convs_shape *xsh, const real *xs,
                         double eps, const double *coef, double *acc, int g, int r0, int r1);
#endif
/* out[i] += the sum of acc[i]'s lanes (in double), i < n */
void convs_lanes_end(const rvec *acc, size_t n, real *out);

/* ---- the three computations -------------------------------------------------------- */

/* scratch reals of A and B (their packed weights) */
size_t convs_wbuf_len(const conv_geom *g);
/* A: ys = conv(xs) + b (b may be NULL) */
void convs_a(const conv_geom *g, const convs_shape *xsh, const real *xs, const real *k,
             const real *b, const convs_shape *ysh, real *ys, const convs_stores *S, real *wbuf,
             int ga, int gb);
/* B: xs = conv^T(ys) + b (b may be NULL) */
void convs_b(const conv_geom *g, const convs_shape *ysh, const real *ys, const real *k,
             const real *b, const convs_shape *xsh, real *xs, const convs_stores *S, real *wbuf,
             int ga, int gb);
/* The same in parts: the kernel packed into wbuf once, then output rows
 * [r0, r1) of group gr at a time (A: Y's rows, B: X's), which read X's rows
 * from stride r0 - pad_top to stride (r1 - 1) + 2 - pad_top (A), and Y's
 * rows up to (r1 - 1 + pad_top) / stride (B). Any split of the rows: the
 * same bits as convs_a, convs_b. */
void convs_a_pack(const conv_geom *g, const real *k, real *wbuf);
void convs_a_rows(const conv_geom *g, const convs_shape *xsh, const real *xs, const real *wbuf,
                  const real *b, const convs_shape *ysh, real *ys, const convs_stores *S, int gr,
                  int r0, int r1);
void convs_b_pack(const conv_geom *g, const real *k, real *wbuf);
void convs_b_rows(const conv_geom *g, const convs_shape *ysh, const real *ys, const real *wbuf,
                  const real *b, const convs_shape *xsh, real *xs, const convs_stores *S, int gr,
                  int r0, int r1);
/* C: acc [g->cout][g->cin][9] (rvecs) += the products of ys and xs at each
 * tap, summed over positions and groups (convs_lanes_end adds them to dk) */
void convs_c(const conv_geom *g, const convs_shape *ysh, const real *ys, const convs_shape *xsh,
             const real *xs, rvec *acc, int ga, int gb);
/* Y's rows [r0, r1) of group gr of it (reading X's rows as A does): rows
 * in order, any split, the same bits */
void convs_c_rows(const conv_geom *g, const convs_shape *ysh, const real *ys,
                  const convs_shape *xsh, const real *xs, rvec *acc, int gr, int r0, int r1);

#endif
