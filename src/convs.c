/* convs.c — 3x3 convolutions on the sample-minor layout (convs.h).
 *
 * A and B run register tiles of CB output channels x V positions along one
 * output row (4 x 3, 3 x 4, 2 x 6 or 1 x 12: 12 accumulators, and the
 * smaller operand set held in registers), one call per row and block of
 * output channels; the output blocks are the innermost loop over a row, so
 * the input rows a row reads stay in L1 across them. A's positions are
 * consecutive outputs (inputs at the stride); B computes the output's
 * positions class by class modulo the stride (row and column parity at
 * stride 2: 4, 2, 2 and 1 taps), each class a plain tile over consecutive
 * inputs. Every instance has its tap count, store mode and input step as
 * constants (addresses base + constant offset; a run-time step took a
 * register per tap and position, and the tile spilled). C runs tiles of CB
 * output channels x the 3 taps of one kernel row over a band of rows of Y,
 * its accumulators in registers across the band; the block of output
 * channels is the outer loop, so its rows of Y stay in L1 while every input
 * channel and kernel row passes over them.
 */
#include "convs.h"

#include <string.h>

#include "isa.h"  /* isa_l1d_bytes */
#include "loss.h" /* HALF_LOG_2PI */

/* ---- the layout -------------------------------------------------------------------- */

convs_shape convs_shape_make(int c, int n, int cap, int h, int w) {
    YT_CHECK(c > 0 && n > 0 && cap >= n && h > 0 && w > 0);
    convs_shape s = {.c = c, .n = n, .groups = (n + VL - 1) / VL, .h = h, .w = w};
    s.rp = (size_t)(w + 2) * VL;
    s.gp = (size_t)(h + 2) * s.rp;
    /* the channel pitch an odd number of cache lines modulo 4 KiB: the rows
     * of channels a multiple of 4 KiB apart share their L1 sets (the kernel
     * gradient 12% slower in smchain_bench) */
    const size_t line = 64 / sizeof(real);
    size_t cp = ((size_t)((cap + VL - 1) / VL) * s.gp + line - 1) / line * line;
    if ((cp / line) % 2 == 0) cp += line;
    s.cp = cp;
    return s;
}

convs_shape convs_view(const convs_shape *s, int g, int slot) {
    YT_CHECK(s->g0 == 0 && g >= 0 && g < s->groups && slot >= 0 && slot < s->groups);
    convs_shape v = *s;
    v.g0 = g - slot;
    return v;
}

size_t convs_len(const convs_shape *s) {
    /* a row's last tile computes up to 11 positions past the row's end, at
     * stride 2, from up to 2 rows down: room past the last plane */
    return (size_t)s->c * s->cp + 3 * s->rp + 32 * VL;
}

/* v[0..VL) as the rows of a VL x VL matrix, transposed: log2(VL) rounds
 * that interleave row k with row k + VL/2 into rows 2k and 2k + 1 */
YT_INLINE void transpose(rvec v[VL]) {
    for (int step = 1; step < VL; step *= 2) {
        rvec t[VL];
        for (int k = 0; k < VL / 2; k++) {
            t[2 * k] = __builtin_shuffle(v[k], v[k + VL / 2], RVEC_ZIP_LO);
            t[2 * k + 1] = __builtin_shuffle(v[k], v[k + VL / 2], RVEC_ZIP_HI);
        }
        memcpy(v, t, sizeof t);
    }
}

/* v[j] = positions i + j of the nl samples at r, r + hw, ... (lanes past nl
 * zero: a buffer may have held a larger batch) */
YT_INLINE void load_positions(rvec v[VL], const real *r, size_t hw, int i, int nl) {
    const rvec zero = {0};
    for (int l = 0; l < VL; l++)
        v[l] = l < nl ? vload(r + (size_t)l * hw + i) : zero;
    transpose(v);
}

/* position i of the nl samples at r, r + hw, ... as one vector (the rest of
 * a row after the whole blocks) */
YT_INLINE rvec load_position(const real *r, size_t hw, int i, int nl) {
    rvec d = {0};
    for (int l = 0; l < nl; l++)
        d[l] = r[(size_t)l * hw + i];
    return d;
}

/* rows shorter than a vector that tile it (8 x 8 maps, 4 x 4): R = VL / w
 * rows of a plane are VL consecutive reals, one block of the transpose */
static int short_rows(const convs_shape *s) {
    return s->w < VL && VL % s->w == 0 && s->h % (VL / s->w) == 0 ? VL / s->w : 0;
}

/* The copies run VL positions of VL samples at a time through a transpose
 * in registers (a strided store per real took 3.5% of the Shapes3D step);
 * what is left of a row, position by position; rows that tile a vector,
 * VL / w of them a block. */
YT_SIMD_CLONES
void convs_from_chan(const convs_shape *s, const real *x, real *xs, int ga, int gb) {
    const size_t hw = (size_t)s->h * s->w;
    const int R = short_rows(s);
    for (int c = 0; c < s->c; c++)
        for (int g = ga; g < gb; g++) {
            const int nl = YT_MIN(VL, s->n - g * VL);
            const real *r0 = x + ((size_t)c * s->n + (size_t)g * VL) * hw;
            for (int y = 0; R && y < s->h; y += R) {
                rvec v[VL];
                load_positions(v, r0 + (size_t)y * s->w, hw, 0, nl);
                for (int j = 0; j < VL; j++)
                    *(rvec *)convs_at(s, xs, c, g, y + j / s->w, j % s->w) = v[j];
            }
            if (R) continue;
            for (int y = 0; y < s->h; y++) {
                real *d = convs_at(s, xs, c, g, y, 0);
                const real *r = r0 + (size_t)y * s->w;
                int i = 0;
                for (; i + VL <= s->w; i += VL) {
                    rvec v[VL];
                    load_positions(v, r, hw, i, nl);
                    for (int j = 0; j < VL; j++)
                        *(rvec *)(d + (size_t)(i + j) * VL) = v[j];
                }
                for (; i < s->w; i++)
                    *(rvec *)(d + (size_t)i * VL) = load_position(r, hw, i, nl);
            }
        }
}

YT_SIMD_CLONES
void convs_to_chan(const convs_shape *s, const real *xs, real *x, int ga, int gb) {
    const size_t hw = (size_t)s->h * s->w;
    const int R = short_rows(s);
    for (int c = 0; c < s->c; c++)
        for (int g = ga; g < gb; g++) {
            const int nl = YT_MIN(VL, s->n - g * VL);
            real *d0 = x + ((size_t)c * s->n + (size_t)g * VL) * hw;
            for (int y = 0; R && y < s->h; y += R) {
                rvec v[VL];
                for (int j = 0; j < VL; j++)
                    v[j] = *(const rvec *)convs_at(s, (real *)xs, c, g, y + j / s->w, j % s->w);
                transpose(v);
                for (int l = 0; l < nl; l++)
                    vstore(d0 + (size_t)l * hw + (size_t)y * s->w, v[l]);
            }
            if (R) continue;
            for (int y = 0; y < s->h; y++) {
                const real *r = convs_at(s, (real *)xs, c, g, y, 0);
                real *d = d0 + (size_t)y * s->w;
                int i = 0;
                for (; i + VL <= s->w; i += VL) {
                    rvec v[VL];
                    for (int j = 0; j < VL; j++)
                        v[j] = *(const rvec *)(r + (size_t)(i + j) * VL);
                    transpose(v);
                    for (int l = 0; l < nl; l++)
                        vstore(d + (size_t)l * hw + i, v[l]);
                }
                for (; i < s->w; i++)
                    for (int l = 0; l < nl; l++)
                        d[(size_t)l * hw + i] = r[(size_t)i * VL + l];
            }
        }
}

#ifndef YOTO_DOUBLE
/* The losses run LOSS_RUN positions of a row at once, each step of their
 * formulas over the run before the next: a position's formula is one long
 * chain of dependent operations (e^-|l|, a division, a polynomial), and the
 * out-of-order window holds few positions of it; side by side the run's
 * chains overlap. The per-position operations and the order of the row's
 * sum are the one-at-a-time loop's (the same bits). On Zen 5, the Bernoulli
 * loss of Shapes3D's batch: 0.49 -> 0.30 ms with AVX-512, 0.77 -> 0.55 with
 * AVX2 (runs of 2 and 4 between, 16 slower: docs/DESIGN.md, lever 55). */
enum { LOSS_RUN = 8 };

YT_INLINE void bernoulli_run(const int U, real *lp, const real *tp, rvec k, rvec *sum) {
    const rvec zero = {0}, one = zero + 1.0f;
    rvec l[LOSS_RUN], t[LOSS_RUN], e[LOSS_RUN];
    for (int u = 0; u < U; u++)
        l[u] = vload(lp + (size_t)u * VL), t[u] = vload(tp + (size_t)u * VL);
    for (int u = 0; u < U; u++)
        e[u] = vexp_nonpos(vselect(l[u] < zero, l[u], -l[u])); /* e^-|l| */
    for (int u = 0; u < U; u++)
        *sum += vselect(l[u] > zero, l[u], zero) - l[u] * t[u] + vlog1p_unit(e[u]);
    for (int u = 0; u < U; u++) {
        const rvec sig = vselect(l[u] >= zero, one, e[u]) / (one + e[u]);
        vstore(lp + (size_t)u * VL, (sig - t[u]) * k);
    }
}

YT_SIMD_CLONES
void convs_bernoulli_rows(const convs_shape *s, real *ls, const convs_shape *xsh, const real *xs,
                          const double *coef, double *acc, int g, int r0, int r1) {
    const rvec zero = {0};
    const int nl = YT_MIN(VL, s->n - g * VL);
    rvec k = zero;
    for (int l = 0; l < nl; l++)
        k[l] = (real)coef[g * VL + l];
    for (int c = 0; c < s->c; c++)
        for (int y = r0; y < r1; y++) {
            real *lp = convs_at(s, ls, c, g, y, 0);
            const real *tp = convs_at(xsh, (real *)xs, c, g, y, 0);
            rvec sum = zero;
            int x = 0;
            for (; x + LOSS_RUN <= s->w; x += LOSS_RUN)
                bernoulli_run(LOSS_RUN, lp + (size_t)x * VL, tp + (size_t)x * VL, k, &sum);
            for (; x < s->w; x++)
                bernoulli_run(1, lp + (size_t)x * VL, tp + (size_t)x * VL, k, &sum);
            for (int l = 0; l < VL; l++)
                acc[l] += sum[l];
        }
}

void convs_bernoulli(const convs_shape *s, real *ls, const convs_shape *xsh, const real *xs,
                     const double *coef, double *recon, int g) {
    double acc[VL] = {0};
    convs_bernoulli_rows(s, ls, xsh, xs, coef, acc, g, 0, s->h);
    for (int l = 0; l < YT_MIN(VL, s->n - g * VL); l++)
        recon[g * VL + l] = acc[l];
}

YT_INLINE void gaussian_run(const int U, real *mp, real *rp, const real *tp, rvec ve, rvec k,
                            rvec *sum) {
    const rvec one = (rvec){0} + 1.0f;
    rvec a[LOSS_RUN], sg[LOSS_RUN], d[LOSS_RUN], inv[LOSS_RUN], ri[LOSS_RUN];
    for (int u = 0; u < U; u++)
        a[u] = vload(rp + (size_t)u * VL),
        d[u] = vload(tp + (size_t)u * VL) - vload(mp + (size_t)u * VL);
    for (int u = 0; u < U; u++)
        sg[u] = ve + vsoftplus(a[u]);
    for (int u = 0; u < U; u++) {
        const rvec r = d[u] / sg[u];
        inv[u] = one / sg[u], ri[u] = d[u] * inv[u];
        *sum += vlog_pos(sg[u]) + 0.5f * r * r;
    }
    for (int u = 0; u < U; u++) {
        vstore(mp + (size_t)u * VL, ri[u] * inv[u] * -k);
        vstore(rp + (size_t)u * VL, (one - ri[u] * ri[u]) * inv[u] * vsigmoid(a[u]) * k);
    }
}

YT_SIMD_CLONES
void convs_gaussian_rows(const convs_shape *s, real *os, const convs_shape *xsh, const real *xs,
                         double eps, const double *coef, double *acc, int g, int r0, int r1) {
    const rvec zero = {0}, ve = vbcast((real)eps);
    const int nl = YT_MIN(VL, s->n - g * VL), C = xsh->c;
    rvec k = zero;
    for (int l = 0; l < nl; l++)
        k[l] = (real)coef[g * VL + l];
    for (int c = 0; c < C; c++)
        for (int y = r0; y < r1; y++) {
            real *mp = convs_at(s, os, c, g, y, 0), *rp = convs_at(s, os, C + c, g, y, 0);
            const real *tp = convs_at(xsh, (real *)xs, c, g, y, 0);
            rvec sum = zero;
            int x = 0;
            for (; x + LOSS_RUN <= s->w; x += LOSS_RUN) {
                const size_t at = (size_t)x * VL;
                gaussian_run(LOSS_RUN, mp + at, rp + at, tp + at, ve, k, &sum);
            }
            for (; x < s->w; x++) {
                const size_t at = (size_t)x * VL;
                gaussian_run(1, mp + at, rp + at, tp + at, ve, k, &sum);
            }
            for (int l = 0; l < VL; l++)
                acc[l] += sum[l];
        }
}

void convs_gaussian(const convs_shape *s, real *os, const convs_shape *xsh, const real *xs,
                    double eps, const double *coef, double *recon, int g) {
    double acc[VL];
    for (int l = 0; l < VL; l++)
        acc[l] = HALF_LOG_2PI * xsh->c * s->h * s->w; /* loss.h */
    convs_gaussian_rows(s, os, xsh, xs, eps, coef, acc, g, 0, s->h);
    for (int l = 0; l < YT_MIN(VL, s->n - g * VL); l++)
        recon[g * VL + l] = acc[l];
}
#endif

/* ---- stages ------------------------------------------------------------------------ */

size_t convs_stage_len(int c, int n) {
    return 2 * (size_t)c * ((n + VL - 1) / VL);
}

void convs_stage_set(convs_stage *s, const film_stage *st, int c, int n, rvec *buf) {
    const int G = (n + VL - 1) / VL;
    s->a = buf;
    s->t = buf + (size_t)c * G;
    s->lrelu = st->lrelu;
    s->alpha = st->alpha;
    for (int ch = 0; ch < c; ch++)
        for (int g = 0; g < G; g++)
            for (int l = 0; l < VL; l++) {
                const int i = g * VL + l;
                s->a[ch * G + g][l] = i < n ? st->scale[(size_t)i * c + ch] : 0;
                s->t[ch * G + g][l] = i < n ? st->shift[(size_t)i * c + ch] : 0;
            }
}

void convs_stage_end(const convs_stage *st, const double *sv, const double *tv, int c, int n,
                     real *dscale, real *dshift, real *db) {
    const int G = (n + VL - 1) / VL;
    for (int ch = 0; ch < c; ch++) {
        double b = 0;
        for (int i = 0; i < n; i++) {
            const int g = i / VL, l = i % VL;
            const size_t at = ((size_t)ch * G + g) * VL + l;
            dscale[(size_t)i * c + ch] = (real)sv[at];
            dshift[(size_t)i * c + ch] = (real)tv[at];
            b += (double)st->a[ch * G + g][l] * (real)tv[at];
        }
        db[ch] += (real)b;
    }
}

size_t convs_sums_len(int c, int n) {
    return (size_t)c * ((n + VL - 1) / VL) * VL;
}

/* d[l] += v[l]: a row's float sums into the double sums */
YT_INLINE void add_lanes(double *d, rvec v) {
    for (int l = 0; l < VL; l++)
        d[l] += v[l];
}

/* the stage's backward on one vector: d (w.r.t. o) at z -> the gradient
 * w.r.t. z, the sums += (stage_bwd_vec of convk.h, on sample lanes) */
YT_INLINE rvec stage_bwd(bool lrelu, real alpha, rvec a, rvec t, rvec d, rvec z, rvec *sv,
                         rvec *tv) {
    const rvec zero = {0};
    if (lrelu) d = vselect(z * a + t > zero, d, d * alpha);
    *sv += d * z;
    *tv += d;
    return d * a;
}

YT_SIMD_CLONES
void convs_stage_bwd_from_chan(const convs_shape *s, const convs_stage *st, const real *dy,
                               const real *zs, real *dzs, double *sv, double *tv, int ga, int gb) {
    const size_t hw = (size_t)s->h * s->w;
    const int G = s->groups;
    for (int c = 0; c < s->c; c++)
        for (int g = ga; g < gb; g++) {
            const int nl = YT_MIN(VL, s->n - g * VL);
            const rvec a = st->a[c * G + g], t = st->t[c * G + g];
            double *sd = sv + ((size_t)c * G + g) * VL, *td = tv + ((size_t)c * G + g) * VL;
            const real *d0 = dy + ((size_t)c * s->n + (size_t)g * VL) * hw;
            for (int y = 0; y < s->h; y++) { /* a row in float lanes, rows in double */
                const real *zr = convs_at(s, (real *)zs, c, g, y, 0), *r = d0 + (size_t)y * s->w;
                real *dr = convs_at(s, dzs, c, g, y, 0);
                rvec sa = {0}, ta = {0};
                int i = 0;
                for (; i + VL <= s->w; i += VL) { /* as convs_from_chan */
                    rvec v[VL];
                    load_positions(v, r, hw, i, nl);
                    for (int j = 0; j < VL; j++) {
                        const size_t at = (size_t)(i + j) * VL;
                        vstore(dr + at, stage_bwd(st->lrelu, st->alpha, a, t, v[j], vload(zr + at),
                                                  &sa, &ta));
                    }
                }
                for (; i < s->w; i++)
                    vstore(dr + (size_t)i * VL,
                           stage_bwd(st->lrelu, st->alpha, a, t, load_position(r, hw, i, nl),
                                     vload(zr + (size_t)i * VL), &sa, &ta));
                add_lanes(sd, sa);
                add_lanes(td, ta);
            }
        }
}

YT_SIMD_CLONES
void convs_sum_rows(const convs_shape *s, const real *xs, double *acc, int g, int r0, int r1) {
    for (int c = 0; c < s->c; c++)
        for (int y = r0; y < r1; y++) { /* a row in float lanes, rows in double */
            const real *r = convs_at(s, (real *)xs, c, g, y, 0);
            rvec v = {0};
            for (int i = 0; i < s->w; i++)
                v += vload(r + (size_t)i * VL);
            for (int l = 0; l < VL; l++)
                acc[c] += v[l];
        }
}

void convs_sum(const convs_shape *s, const real *xs, double *acc, int ga, int gb) {
    for (int g = ga; g < gb; g++)
        convs_sum_rows(s, xs, acc, g, 0, s->h);
}

void convs_lanes_end(const rvec *acc, size_t n, real *out) {
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int l = 0; l < VL; l++)
            s += acc[i][l];
        out[i] += (real)s;
    }
}

/* ---- A and B: rows of register tiles ------------------------------------------------- */

/* v stays in a register: with AVX-512's 32 registers GCC would otherwise
 * still fold its load (or broadcast) into each of the multiply-adds that
 * use it, one load each (AVX2's 16 hold the accumulators and little more) */
YT_INLINE void in_register(rvec *v) {
#ifdef __AVX512F__
    __asm__("" : "+v"(*v));
#else
    (void)v;
#endif
}

/* a row's stores: where, and the stage of its block's channels at its group */
typedef struct {
    real *out;         /* the row's first output (channel 0 of the block, position 0) */
    real *aux;         /* CONVS_ZO: o there; CONVS_DZ: z there (read) */
    size_t cs;         /* channel pitch of out and aux */
    const rvec *a, *t; /* the stage's vectors of channel 0 (channel c: + c * ss) */
    double *sv, *tv;   /* CONVS_DZ: its sums (VL doubles per channel and group), alike */
    size_t ss;
    bool lrelu;
    real alpha;
    rvec mask; /* 1 in the lanes of the group's samples, 0 past n: the bias there */
} row_out;

/* For each run of V positions from j (j = 0, V, 2V, ... below npos):
 * acc[c][v] = bias[c] + sum over nin input channels i and NT taps t of
 * w[(i NT + t) CB + c] in[i in_cs + toff[t] + (j + v) S VL], stored by mode
 * at out + c cs + (j + v) OS VL (the last run's positions past npos computed
 * and dropped). */
YT_INLINE void tile_row(const int CB, const int V, const int NT, const int mode, const int S,
                        const int OS, const real *in0, size_t in_cs, int nin, const int *toff,
                        const real *w0, const real *bias, const row_out *o, int npos) {
    const rvec zero = {0};
    /* o's fields in locals: a float store may alias them, and GCC would
     * reload each after every store */
    real *const out = o->out, *const aux = o->aux;
    const size_t cs = o->cs, ss = o->ss;
    const bool lrelu = o->lrelu;
    const real alpha = o->alpha;
    int to[9];
    for (int t = 0; t < NT; t++)
        to[t] = toff[t];
    rvec rs[4], rt[4]; /* CONVS_DZ: the row's sums, in float lanes */
    for (int c = 0; c < CB; c++)
        rs[c] = rt[c] = zero;
    for (int j = 0; j < npos; j += V) {
        const int nv = npos - j;
        rvec acc[4][12];
        for (int c = 0; c < CB; c++)
            for (int v = 0; v < V; v++)
                acc[c][v] = bias ? bias[c] * o->mask : zero;
        const real *in = in0 + (size_t)j * S * VL, *w = w0;
        for (int i = 0; i < nin; i++, in += in_cs) {
#pragma GCC unroll 9
            for (int t = 0; t < NT; t++, w += CB) {
                const real *ip = in + to[t];
                if (CB <= V) { /* the CB weights held, the inputs streamed */
                    for (int v = 0; v < V; v++) {
                        rvec xv = vload(ip + v * S * VL);
                        in_register(&xv);
                        for (int c = 0; c < CB; c++)
                            acc[c][v] += xv * w[c];
                    }
                } else { /* the V inputs held, the weights streamed */
                    rvec xv[12];
                    for (int v = 0; v < V; v++)
                        xv[v] = vload(ip + v * S * VL);
                    for (int c = 0; c < CB; c++) {
                        rvec wc = vbcast(w[c]);
                        in_register(&wc);
                        for (int v = 0; v < V; v++)
                            acc[c][v] += xv[v] * wc;
                    }
                }
            }
        }
        /* constant indices, the loops unrolled: acc stays in registers */
#pragma GCC unroll 4
        for (int c = 0; c < CB; c++) {
            real *op = out + c * cs + (size_t)j * OS * VL;
            real *xp = aux ? aux + c * cs + (size_t)j * OS * VL : NULL;
            rvec a = zero, t = zero;
            if (mode != CONVS_Z) a = o->a[c * ss], t = o->t[c * ss];
#pragma GCC unroll 12
            for (int v = 0; v < V; v++) {
                if (v < nv) {
                    const int off = v * OS * VL;
                    if (mode == CONVS_Z) {
                        vstore(op + off, acc[c][v]);
                    } else if (mode == CONVS_ZO) {
                        vstore(op + off, acc[c][v]);
                        const rvec f = acc[c][v] * a + t;
                        vstore(xp + off, lrelu ? vselect(f > zero, f, f * alpha) : f);
                    } else {
                        vstore(op + off, stage_bwd(lrelu, alpha, a, t, acc[c][v], vload(xp + off),
                                                   &rs[c], &rt[c]));
                    }
                }
            }
        }
    }
    if (mode == CONVS_DZ)
        for (int c = 0; c < CB; c++)
            add_lanes(o->sv + c * ss * VL, rs[c]), add_lanes(o->tv + c * ss * VL, rt[c]);
}

typedef void (*row_fn)(const real *in, size_t in_cs, int nin, const int *toff, const real *w,
                       const real *bias, const row_out *o, int npos);
/* one instance per tile shape, tap count, mode and step: A reads at stride
 * S = 1 or 2 and stores consecutively, B reads consecutively and stores at
 * OS = 1 or 2 */
#define ROW_KERNEL(CB, V, NT, MODE, S, OS)                                                         \
    YT_SIMD_CLONES static void row_##CB##_##NT##_##MODE##_##S##OS(                                 \
        const real *in, size_t in_cs, int nin, const int *toff, const real *w, const real *bias,   \
        const row_out *o, int npos) {                                                              \
        tile_row(CB, V, NT, MODE, S, OS, in, in_cs, nin, toff, w, bias, o, npos);                  \
    }
#define ROW_STEPS(CB, V, NT, MODE)                                                                 \
    ROW_KERNEL(CB, V, NT, MODE, 1, 1)                                                              \
    ROW_KERNEL(CB, V, NT, MODE, 2, 1) ROW_KERNEL(CB, V, NT, MODE, 1, 2)
#define ROW_MODES(CB, V, NT)                                                                       \
    ROW_STEPS(CB, V, NT, CONVS_Z) ROW_STEPS(CB, V, NT, CONVS_ZO) ROW_STEPS(CB, V, NT, CONVS_DZ)
#define ROW_TAPS(CB, V)                                                                            \
    ROW_MODES(CB, V, 1) ROW_MODES(CB, V, 2) ROW_MODES(CB, V, 4) ROW_MODES(CB, V, 9)
ROW_TAPS(1, 12)
ROW_TAPS(2, 6)
ROW_TAPS(3, 4)
ROW_TAPS(4, 3)
#define ROW_S(CB, NT, MODE)                                                                        \
    { row_##CB##_##NT##_##MODE##_11, row_##CB##_##NT##_##MODE##_21, row_##CB##_##NT##_##MODE##_12 }
#define ROW_M(CB, NT)                                                                              \
    { ROW_S(CB, NT, CONVS_Z), ROW_S(CB, NT, CONVS_ZO), ROW_S(CB, NT, CONVS_DZ) }
#define ROW_T(CB)                                                                                  \
    { ROW_M(CB, 1), ROW_M(CB, 2), ROW_M(CB, 4), ROW_M(CB, 9) }
/* [channels - 1][taps 1, 2, 4, 9][mode][steps 1/1, 2/1, 1/2] */
static const row_fn row_kernels[4][4][3][3] = {ROW_T(1), ROW_T(2), ROW_T(3), ROW_T(4)};

static void run_row(int nc, int nt, int steps, const convs_stores *S, const real *in, size_t in_cs,
                    int nin, const int *toff, const real *w, const real *bias, const row_out *o,
                    int npos) {
    const int ti = nt == 1 ? 0 : nt == 2 ? 1 : nt == 4 ? 2 : 3;
    row_kernels[nc - 1][ti][S->mode][steps](in, in_cs, nin, toff, w, bias, o, npos);
}

/* o = the stores of the block of channels from c0 of group g from (y, x).
 * Filled field by field in the caller's struct, the mask by one vector
 * compare: a row_out returned by value was copied in 64-byte moves that read
 * what narrower stores had just written, and the mask written lane by lane
 * was read as a vector; each such load waits for the stores to retire (in
 * perf, half of convs_b's own samples on the instruction after one) */
static void row_out_at(row_out *o, const convs_stores *S, const convs_shape *sh, real *out, int c0,
                       int g, int y, int x) {
    static const real lane_no[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    _Static_assert(VL <= 16, "lane_no covers a vector");
    const rvec zero = {0};
    o->out = convs_at(sh, out, c0, g, y, x);
    o->cs = sh->cp;
    o->ss = (size_t)sh->groups;
    o->mask = vselect(vload(lane_no) < vbcast((real)(sh->n - g * VL)), zero + 1, zero);
    o->aux = S->aux ? convs_at(sh, S->aux, c0, g, y, x) : NULL;
    o->a = o->t = NULL;
    o->sv = o->tv = NULL;
    o->lrelu = false;
    o->alpha = 0;
    if (S->st) {
        const size_t at = (size_t)c0 * sh->groups + g;
        o->a = S->st->a + at, o->t = S->st->t + at;
        o->lrelu = S->st->lrelu, o->alpha = S->st->alpha;
        if (S->sv) o->sv = S->sv + at * VL, o->tv = S->tv + at * VL;
    }
}

size_t convs_wbuf_len(const conv_geom *g) {
    return (size_t)g->cin * g->cout * 9;
}

void convs_a_pack(const conv_geom *g, const real *k, real *wbuf) {
    YT_CHECK(g->stride == 1 || g->stride == 2);
    for (int c0 = 0; c0 < g->cout; c0 += 4) { /* block c0: [ci][tap][nc] at c0 cin 9 */
        const int nc = YT_MIN(4, g->cout - c0);
        real *w = wbuf + (size_t)c0 * g->cin * 9;
        for (int i = 0; i < g->cin; i++)
            for (int t = 0; t < 9; t++)
                for (int c = 0; c < nc; c++)
                    w[(i * 9 + t) * nc + c] = k[((size_t)(c0 + c) * g->cin + i) * 9 + t];
    }
}

void convs_a_rows(const conv_geom *g, const convs_shape *xsh, const real *xs, const real *wbuf,
                  const real *b, const convs_shape *ysh, real *ys, const convs_stores *S, int gr,
                  int r0, int r1) {
    int toff[9];
    for (int t = 0; t < 9; t++)
        toff[t] = (int)((t / 3) * xsh->rp + (t % 3) * VL);
    for (int oh = r0; oh < r1; oh++) {
        const real *in =
            convs_at(xsh, (real *)xs, 0, gr, g->stride * oh - g->pad_top, -g->pad_left);
        for (int c0 = 0; c0 < g->cout; c0 += 4) {
            row_out o;
            row_out_at(&o, S, ysh, ys, c0, gr, oh, 0);
            run_row(YT_MIN(4, g->cout - c0), 9, g->stride == 2 ? 1 : 0, S, in, xsh->cp, g->cin,
                    toff, wbuf + (size_t)c0 * g->cin * 9, b ? b + c0 : NULL, &o, g->wo);
        }
    }
}

void convs_a(const conv_geom *g, const convs_shape *xsh, const real *xs, const real *k,
             const real *b, const convs_shape *ysh, real *ys, const convs_stores *S, real *wbuf,
             int ga, int gb) {
    convs_a_pack(g, k, wbuf);
    for (int gr = ga; gr < gb; gr++)
        convs_a_rows(g, xsh, xs, wbuf, b, ysh, ys, S, gr, 0, g->ho);
}

/* B's output classes (a, b): rows ih with ih + pad_top = a and columns iw
 * with iw + pad_left = b modulo s; their taps (nt), Y's column offset for the
 * class's first position iw = b (toff), each tap's kernel row (khs) and
 * index kh 3 + kw (kt), and where each class's weights start in wbuf (wat:
 * its blocks, block c0 at + c0 cout nt, [co][tap][nc]) */
typedef struct {
    int nt[2][2], toff[2][2][9], khs[2][2][9], kt[2][2][9];
    size_t wat[2][2];
} b_classes;

static void b_classes_of(const conv_geom *g, b_classes *c) {
    const int s = g->stride;
    YT_CHECK(s == 1 || s == 2);
    size_t at = 0;
    for (int a = 0; a < s; a++)
        for (int bc = 0; bc < s; bc++) {
            c->nt[a][bc] = 0;
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++) {
                    if ((a - kh) % s || (bc + g->pad_left - kw) % s) continue;
                    const int i = c->nt[a][bc]++;
                    c->khs[a][bc][i] = kh;
                    c->toff[a][bc][i] = ((bc + g->pad_left - kw) / s) * VL;
                    c->kt[a][bc][i] = kh * 3 + kw;
                }
            c->wat[a][bc] = at;
            at += (size_t)g->cin * g->cout * c->nt[a][bc];
        }
}

void convs_b_pack(const conv_geom *g, const real *k, real *wbuf) {
    b_classes c;
    b_classes_of(g, &c);
    for (int a = 0; a < g->stride; a++)
        for (int bc = 0; bc < g->stride; bc++) {
            real *wp = wbuf + c.wat[a][bc];
            for (int c0 = 0; c0 < g->cin; c0 += 4) {
                const int nc = YT_MIN(4, g->cin - c0);
                for (int co = 0; co < g->cout; co++)
                    for (int t = 0; t < c.nt[a][bc]; t++)
                        for (int i = 0; i < nc; i++)
                            *wp++ = k[((size_t)co * g->cin + c0 + i) * 9 + c.kt[a][bc][t]];
            }
        }
}

void convs_b_rows(const conv_geom *g, const convs_shape *ysh, const real *ys, const real *wbuf,
                  const real *b, const convs_shape *xsh, real *xs, const convs_stores *S, int gr,
                  int r0, int r1) {
    const int s = g->stride;
    b_classes c;
    b_classes_of(g, &c);
    const real *y0 = convs_at(ysh, (real *)ys, 0, gr, -1, 0);
    for (int ih = r0; ih < r1; ih++) {
        const int a = (ih + g->pad_top) % s;
        for (int bc = 0; bc < s; bc++) {
            const int n = c.nt[a][bc];
            int to[9];
            for (int t = 0; t < n; t++) /* ih + pad_top - kh is a multiple of s */
                to[t] = c.toff[a][bc][t] +
                        (int)(((ih + g->pad_top - c.khs[a][bc][t]) / s + 1) * ysh->rp);
            const int npos = (g->w - bc + s - 1) / s;
            for (int c0 = 0; c0 < g->cin; c0 += 4) {
                row_out o;
                row_out_at(&o, S, xsh, xs, c0, gr, ih, bc);
                run_row(YT_MIN(4, g->cin - c0), n, s == 2 ? 2 : 0, S, y0, ysh->cp, g->cout, to,
                        wbuf + c.wat[a][bc] + (size_t)c0 * g->cout * n, b ? b + c0 : NULL, &o,
                        npos);
            }
        }
    }
}

void convs_b(const conv_geom *g, const convs_shape *ysh, const real *ys, const real *k,
             const real *b, const convs_shape *xsh, real *xs, const convs_stores *S, real *wbuf,
             int ga, int gb) {
    convs_b_pack(g, k, wbuf);
    for (int gr = ga; gr < gb; gr++)
        convs_b_rows(g, ysh, ys, wbuf, b, xsh, xs, S, gr, 0, g->h);
}

/* ---- C: the kernel gradient ------------------------------------------------------------ */

/* C's bands: as many rows of Y per call as keep what a call reads, the
 * block's rows of Y and one input row per output row, within 7/8 of the L1
 * data cache (isa_l1d_bytes); at least one row. On this project's Zen 5 (48
 * KiB), smchain_bench on bin/yoto-avx512: the stride-2 kernel gradients 9-18%
 * faster than with bands of a fixed 128 positions, the output conv's the
 * same (docs/DESIGN.md, lever 54). The band changes no bits: the
 * accumulators carry over from band to band in the same order. */
static int kgrad_band_rows(const conv_geom *g) {
    const size_t row = sizeof(rvec) * ((size_t)4 * g->wo + (size_t)g->stride * g->wo + 2);
    return (int)YT_MAX(1, isa_l1d_bytes() / 8 * 7 / row);
}

/* CB output channels x the 3 taps of one kernel row over nr rows of wo
 * positions (x's rows xrs apart, Y's drs), the stride S a constant: the
 * accumulators stay in registers over the rows */
YT_INLINE void kgrad_rows(const int CB, const int S, const real *xr, size_t xrs, const real *dr,
                          size_t drs, size_t dcs, int nr, int wo, rvec *ap, size_t as) {
    rvec a[4][3];
    for (int c = 0; c < CB; c++)
        for (int t = 0; t < 3; t++)
            a[c][t] = ap[c * as + t];
    for (int r = 0; r < nr; r++, xr += xrs, dr += drs) {
        const real *xp = xr, *dp = dr;
        for (int ow = 0; ow < wo; ow++, xp += S * VL, dp += VL) {
            rvec xv[3], dv[4];
            for (int t = 0; t < 3; t++)
                xv[t] = vload(xp + t * VL);
            for (int c = 0; c < CB; c++) {
                dv[c] = vload(dp + c * dcs);
                in_register(&dv[c]);
            }
            for (int c = 0; c < CB; c++)
                for (int t = 0; t < 3; t++)
                    a[c][t] += dv[c] * xv[t];
        }
    }
    for (int c = 0; c < CB; c++)
        for (int t = 0; t < 3; t++)
            ap[c * as + t] = a[c][t];
}

typedef void (*kgrad_fn)(const real *xr, size_t xrs, const real *dr, size_t drs, size_t dcs, int nr,
                         int wo, rvec *ap, size_t as);
#define KGRAD_KERNEL(CB, S)                                                                        \
    YT_SIMD_CLONES static void kgrad_##CB##_##S(const real *xr, size_t xrs, const real *dr,        \
                                                size_t drs, size_t dcs, int nr, int wo, rvec *ap,  \
                                                size_t as) {                                       \
        kgrad_rows(CB, S, xr, xrs, dr, drs, dcs, nr, wo, ap, as);                                  \
    }
KGRAD_KERNEL(1, 1)
KGRAD_KERNEL(2, 1)
KGRAD_KERNEL(3, 1)
KGRAD_KERNEL(4, 1)
KGRAD_KERNEL(1, 2)
KGRAD_KERNEL(2, 2)
KGRAD_KERNEL(3, 2)
KGRAD_KERNEL(4, 2)
static const kgrad_fn kgrad_kernels[2][4] = {{kgrad_1_1, kgrad_2_1, kgrad_3_1, kgrad_4_1},
                                             {kgrad_1_2, kgrad_2_2, kgrad_3_2, kgrad_4_2}};

/* Stride 1 with at most 3 output channels (the output conv's kernel
 * gradient) and 32 vector registers (AVX-512): all 9 taps of CB channels in
 * one call, 27 accumulators, so each input row is read once per input
 * channel instead of once per kernel row, and a band's rows of Y once per
 * input channel instead of three times. Its bands are taller than the L1
 * rule's (K9_BAND_L1 L1s of Y: they are read from L2, the input rows pass
 * through L1 three rows at a time). Per accumulator the same sums in the same
 * order as kgrad_rows: the same bits. smchain_bench, the output conv's
 * kernel gradient at batch 64: 1.06-1.14 -> 0.92-1.01 ms; in the step, bench
 * at batch 32: its backward 0.89-0.94 -> 0.82 ms (docs/DESIGN.md, lever 57). */
#define K9_CHANNELS 3
#define K9_BAND_L1 4
#if SIMD_BYTES == 64 && !defined(YOTO_DOUBLE)
#define K9_ON 1
#else
#define K9_ON 0
#endif
YT_INLINE void kgrad9_rows(const int CB, const real *xr, size_t xrs, const real *dr, size_t drs,
                           size_t dcs, int nr, int wo, rvec *ap, size_t as) {
    rvec a[K9_CHANNELS][9];
    for (int c = 0; c < CB; c++)
        for (int t = 0; t < 9; t++)
            a[c][t] = ap[c * as + t];
    for (int r = 0; r < nr; r++, xr += xrs, dr += drs) {
        const real *x0 = xr, *x1 = xr + xrs, *x2 = xr + 2 * xrs, *dp = dr;
        for (int ow = 0; ow < wo; ow++, x0 += VL, x1 += VL, x2 += VL, dp += VL) {
            rvec dv[K9_CHANNELS];
            for (int c = 0; c < CB; c++) {
                dv[c] = vload(dp + c * dcs);
                in_register(&dv[c]);
            }
            for (int t = 0; t < 3; t++) {
                const rvec u0 = vload(x0 + t * VL), u1 = vload(x1 + t * VL),
                           u2 = vload(x2 + t * VL);
                for (int c = 0; c < CB; c++) {
                    a[c][t] += dv[c] * u0;
                    a[c][3 + t] += dv[c] * u1;
                    a[c][6 + t] += dv[c] * u2;
                }
            }
        }
    }
    for (int c = 0; c < CB; c++)
        for (int t = 0; t < 9; t++)
            ap[c * as + t] = a[c][t];
}
#define KGRAD9_KERNEL(CB)                                                                          \
    static void kgrad9_##CB(const real *xr, size_t xrs, const real *dr, size_t drs, size_t dcs,    \
                            int nr, int wo, rvec *ap, size_t as) {                                 \
        kgrad9_rows(CB, xr, xrs, dr, drs, dcs, nr, wo, ap, as);                                    \
    }
KGRAD9_KERNEL(1)
KGRAD9_KERNEL(2)
KGRAD9_KERNEL(3)
static const kgrad_fn kgrad9_kernels[K9_CHANNELS] = {kgrad9_1, kgrad9_2, kgrad9_3};

/* C with kgrad9: Y rows [r0, r1) of group gr */
static void convs_c9_rows(const conv_geom *g, const convs_shape *ysh, const real *ys,
                          const convs_shape *xsh, const real *xs, rvec *acc, int gr, int r0,
                          int r1) {
    const size_t as = (size_t)g->cin * 9;
    const size_t row = sizeof(rvec) * (size_t)g->cout * g->wo;
    const int band = (int)YT_MAX(1, isa_l1d_bytes() * K9_BAND_L1 / row);
    const kgrad_fn f = kgrad9_kernels[g->cout - 1];
    for (int oh = r0; oh < r1; oh += band) {
        const int nr = YT_MIN(band, r1 - oh);
        const real *dr = convs_at(ysh, (real *)ys, 0, gr, oh, 0);
        for (int ci = 0; ci < g->cin; ci++)
            f(convs_at(xsh, (real *)xs, ci, gr, oh - g->pad_top, -g->pad_left), xsh->rp, dr,
              ysh->rp, ysh->cp, nr, g->wo, acc + (size_t)ci * 9, as);
    }
}

void convs_c_rows(const conv_geom *g, const convs_shape *ysh, const real *ys,
                  const convs_shape *xsh, const real *xs, rvec *acc, int gr, int r0, int r1) {
    const int s = g->stride;
    YT_CHECK(s == 1 || s == 2);
    if (K9_ON && s == 1 && g->cout <= K9_CHANNELS) {
        convs_c9_rows(g, ysh, ys, xsh, xs, acc, gr, r0, r1);
        return;
    }
    const size_t as = (size_t)g->cin * 9;
    const int band = kgrad_band_rows(g);
    for (int oh = r0; oh < r1; oh += band) {
        const int nr = YT_MIN(band, r1 - oh);
        for (int c0 = 0; c0 < g->cout; c0 += 4) {
            const real *dr = convs_at(ysh, (real *)ys, c0, gr, oh, 0);
            const kgrad_fn f = kgrad_kernels[s - 1][YT_MIN(4, g->cout - c0) - 1];
            for (int ci = 0; ci < g->cin; ci++)
                for (int kh = 0; kh < 3; kh++)
                    f(convs_at(xsh, (real *)xs, ci, gr, s * oh + kh - g->pad_top, -g->pad_left),
                      s * xsh->rp, dr, ysh->rp, ysh->cp, nr, g->wo,
                      acc + ((size_t)c0 * g->cin + ci) * 9 + kh * 3, as);
        }
    }
}

void convs_c(const conv_geom *g, const convs_shape *ysh, const real *ys, const convs_shape *xsh,
             const real *xs, rvec *acc, int ga, int gb) {
    for (int gr = ga; gr < gb; gr++)
        convs_c_rows(g, ysh, ys, xsh, xs, acc, gr, 0, g->ho);
}
