/* convb.c — 3x3 convolutions on channel-blocked activations (convb.h).
 *
 * Notation of convk.c: a conv g maps the X side (g->cin channels, h x w) to
 * the Y side (g->cout, ho x wo); A: Y = conv(X), B: X = conv^T(Y), C: dK +=
 * corr(Y, X). A and B are one gather kernel: a tile of TW output pixels, for
 * each tap the TW source pixels (or zeros), VL multiply-adds of a weight
 * vector by a broadcast channel value per source block and tap. A's tiles
 * run over the Y pixels in order; B's over one class of X pixels at a time
 * (stride 2: the 4 row and column parities, each reached by its own 1, 2 or
 * 4 taps), so that no tap of a tile is idle but at the image's edge.
 */
#include "convb.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "par.h"
#include "simd.h"

/* pixels per register tile: 6 with two output blocks (12 accumulators), 12
 * with one (a layer's only block: 8 accumulators would wait on the FMAs'
 * latency) */
#define TW 6
#define TWM 12
#define QC 96 /* Y pixels per chunk of the kernel gradient (its offsets stay in L1) */
/* input channels per pass of the kernel gradient: 2 x CH accumulators */
#define CH (VL >= 8 ? VL / 2 : VL)
#define WBLK ((size_t)VL * VL) /* reals of one tap's weights between two blocks */
typedef double dvec __attribute__((vector_size(VL * sizeof(double))));

/* what an out-of-image tap reads */
static const real zeros[VL] __attribute__((aligned(64)));

int convb_blocks(int c) {
    return (c + VL - 1) / VL;
}

size_t convb_len(int c, int n, int h, int w) {
    return (size_t)convb_blocks(c) * n * h * w * VL;
}

/* Both conversions walk the blocked tensor in order (one contiguous stream)
 * and the VL channel planes side by side (VL streams): a channel plane at a
 * time would go through every line of the blocked tensor VL times. */
void convb_from_chan(int c, int n, int hw, const real *x, real *xb) {
    const int nb = convb_blocks(c);
    const size_t m = (size_t)n * hw;
    for (int b = 0; b < nb; b++) {
        const int lanes = YT_MIN(VL, c - b * VL);
        const real *s = x + (size_t)b * VL * m;
        real *d = xb + (size_t)b * m * VL;
        for (size_t p = 0; p < m; p++, d += VL) {
            int l = 0;
            for (; l < lanes; l++)
                d[l] = s[(size_t)l * m + p];
            for (; l < VL; l++)
                d[l] = 0;
        }
    }
}

/* (here in tiles of 64 pixels, so that each channel plane gets whole cache
 * lines: 4-byte stores to VL places at once ran 7x slower) */
void convb_to_chan(int c, int n, int hw, const real *xb, real *x) {
    const int nb = convb_blocks(c);
    const size_t m = (size_t)n * hw;
    for (int b = 0; b < nb; b++) {
        const int lanes = YT_MIN(VL, c - b * VL);
        const real *s = xb + (size_t)b * m * VL;
        real *d = x + (size_t)b * VL * m;
        for (size_t p0 = 0; p0 < m; p0 += 64) {
            const size_t np = YT_MIN((size_t)64, m - p0);
            for (int l = 0; l < lanes; l++)
                for (size_t p = 0; p < np; p++)
                    d[(size_t)l * m + p0 + p] = s[(p0 + p) * VL + l];
        }
    }
}

void convb_to_rows(int c, int n, int hw, const real *xb, real *rows) {
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < n; i++) {
            const real *s = xb + (((size_t)(ch / VL) * n + i) * hw) * VL + ch % VL;
            real *d = rows + ((size_t)i * c + ch) * hw;
            for (int p = 0; p < hw; p++)
                d[p] = s[(size_t)p * VL];
        }
}

void convb_from_rows(int c, int n, int hw, const real *rows, real *xb) {
    const int nb = convb_blocks(c);
    for (int b = 0; b < nb; b++)
        for (int i = 0; i < n; i++)
            for (int l = 0; l < VL; l++) {
                const int ch = b * VL + l;
                const real *s = ch < c ? rows + ((size_t)i * c + ch) * hw : NULL;
                real *d = xb + (((size_t)b * n + i) * hw) * VL + l;
                for (int p = 0; p < hw; p++)
                    d[(size_t)p * VL] = s ? s[p] : 0;
            }
}

bool convb_fits(const conv_geom *g) {
    return convb_supports(g) && g->cin % VL == 0 && g->cout % VL == 0;
}

bool convb_pays(const conv_geom *g) {
    return VL >= 16 && convb_fits(g) && YT_MAX(g->h, g->w) <= 16;
}

bool convb_supports(const conv_geom *g) {
    return (g->stride == 1 || g->stride == 2) && g->pad_top >= 0 && g->pad_top <= 2 &&
           g->pad_left >= 0 && g->pad_left <= 2;
}

static int threads_of(const conv_geom *g) {
    return YT_MAX(1, YT_MIN(g->threads, g->n));
}

/* the packed weights: [ob][sb][9][VL][VL] (reals) */
static size_t weights_size(const conv_geom *g) {
    return (size_t)convb_blocks(g->cin) * convb_blocks(g->cout) * 9 * WBLK;
}

size_t convb_work_size(const conv_geom *g) {
    return VL /* alignment */ + weights_size(g) * (1 + (size_t)threads_of(g));
}

/* ---- one side of a call ---------------------------------------------------------- */

typedef struct {
    int nb, h, w; /* blocks, rows, columns */
    size_t plane; /* reals per block: n h w VL */
} side;

static side side_x(const conv_geom *g) {
    return (side){convb_blocks(g->cin), g->h, g->w, (size_t)g->n * g->h * g->w * VL};
}

static side side_y(const conv_geom *g) {
    return (side){convb_blocks(g->cout), g->ho, g->wo, (size_t)g->n * g->ho * g->wo * VL};
}

/* ---- tiles ----------------------------------------------------------------------- */

/* TW output pixels and, for each of nt taps, where they read: off[i][p] in a
 * source block (-1: zero); dst[p] in an output block (-1: no pixel); smp[p]
 * their sample (the stage's scale and shift) */
typedef struct {
    int nt, tap[9];
    ptrdiff_t off[9][TWM];
    ptrdiff_t dst[TWM];
    int smp[TWM];
} tile;

/* The register tile: acc[j][p] += sum over source blocks sb, taps i and
 * lanes ci of w[ob + j][sb][tap i][ci] * (source of pixel p for tap i)[ci],
 * for jb output blocks. Gathered (src NULL): the sources are T->off's.
 * Regular (an interior run of pixels: every tap in the image): pixel p's
 * source for tap i is src + toff[i] + p ss VL, ss (1 or 2) a constant. */
YT_INLINE void tile_fma(const int jb, const int ss, const int tw, const tile *T,
                        const ptrdiff_t *toff, const real *src, const real *gsrc, size_t splane,
                        int SB, const real *w, rvec acc[2][TWM]) {
    const size_t wob = (size_t)SB * 9 * WBLK; /* the next output block's weights */
    for (int sb = 0; sb < SB; sb++) {
        for (int i = 0; i < T->nt; i++) {
            const real *xp[TWM];
            if (src) {
                const real *b0 = src + (size_t)sb * splane + toff[i];
#pragma GCC unroll 12
                for (int p = 0; p < tw; p++)
                    xp[p] = b0 + (size_t)p * ss * VL;
            } else {
                const real *base = gsrc + (size_t)sb * splane;
#pragma GCC unroll 12
                for (int p = 0; p < tw; p++)
                    xp[p] = T->off[i][p] >= 0 ? base + T->off[i][p] : zeros;
            }
            const real *w0 = w + ((size_t)sb * 9 + T->tap[i]) * WBLK;
#pragma GCC unroll 16
            for (int ci = 0; ci < VL; ci++) {
                const rvec wa = vload(w0 + (size_t)ci * VL);
                const rvec wb = jb > 1 ? vload(w0 + wob + (size_t)ci * VL) : wa;
#pragma GCC unroll 12
                for (int p = 0; p < tw; p++) {
                    const real xv = xp[p][ci];
                    acc[0][p] += wa * xv;
                    if (jb > 1) acc[1][p] += wb * xv;
                }
            }
        }
    }
}

/* where a tile writes and the stage it applies on the way (st NULL: none) */
typedef struct {
    real *z, *o;      /* output blocks (o: the stage's output, or NULL) */
    size_t plane;     /* reals per output block */
    const real *bias; /* [nb][VL], or NULL */
    const film_stage *st;
    const real *sc, *sh; /* the stage's scale and shift, [nb][n][VL] */
    int n;
} sink;

/* the tile width of a call writing nb blocks */
static int tile_width(int nb) {
    return nb == 1 ? TWM : TW;
}

/* every output block of one tile of tw = tile_width(nb) pixels: regular
 * (src not NULL, see tile_fma; ss the source's pixel stride) or gathered
 * from gsrc */
YT_SIMD_CLONES
static void run_tile(const tile *T, int ss, const ptrdiff_t *toff, const real *src,
                     const real *gsrc, size_t splane, int SB, const real *w, int nb,
                     const sink *k) {
    const rvec zero = {0};
    const int tw = tile_width(nb);
    for (int ob = 0; ob < nb; ob += 2) {
        const int jb = YT_MIN(2, nb - ob);
        rvec acc[2][TWM];
        for (int j = 0; j < 2; j++) {
            const rvec b = k->bias && j < jb ? vload(k->bias + (size_t)(ob + j) * VL) : zero;
            for (int p = 0; p < TWM; p++)
                acc[j][p] = b;
        }
        const real *wo = w + (size_t)ob * SB * 9 * WBLK;
        if (tw == TWM) { /* nb 1 */
            if (!src)
                tile_fma(1, 1, TWM, T, toff, NULL, gsrc, splane, SB, wo, acc);
            else if (ss == 1)
                tile_fma(1, 1, TWM, T, toff, src, NULL, splane, SB, wo, acc);
            else
                tile_fma(1, 2, TWM, T, toff, src, NULL, splane, SB, wo, acc);
        } else if (!src && jb == 2)
            tile_fma(2, 1, TW, T, toff, NULL, gsrc, splane, SB, wo, acc);
        else if (!src)
            tile_fma(1, 1, TW, T, toff, NULL, gsrc, splane, SB, wo, acc);
        else if (ss == 1 && jb == 2)
            tile_fma(2, 1, TW, T, toff, src, NULL, splane, SB, wo, acc);
        else if (ss == 1)
            tile_fma(1, 1, TW, T, toff, src, NULL, splane, SB, wo, acc);
        else if (jb == 2)
            tile_fma(2, 2, TW, T, toff, src, NULL, splane, SB, wo, acc);
        else
            tile_fma(1, 2, TW, T, toff, src, NULL, splane, SB, wo, acc);
        for (int j = 0; j < jb; j++) {
            real *z = k->z + (size_t)(ob + j) * k->plane;
            for (int p = 0; p < tw; p++) {
                if (T->dst[p] < 0) continue;
                vstore(z + T->dst[p], acc[j][p]);
                if (!k->st) continue;
                const size_t si = ((size_t)(ob + j) * k->n + T->smp[p]) * VL;
                const rvec v = acc[j][p] * vload(k->sc + si) + vload(k->sh + si);
                vstore(k->o + (size_t)(ob + j) * k->plane + T->dst[p],
                       k->st->lrelu ? vselect(v > zero, v, v * k->st->alpha) : v);
            }
        }
    }
}

/* A or B as a pass over thread t's samples */
typedef struct {
    const conv_geom *g;
    const real *src;
    const real *w;
    sink k;
} pass;

/* pixels [lo, hi) of which every tap is in the image */
typedef struct {
    int lo, hi;
} span;

/* the c in [0, cmax) with 0 <= c*s + d < n for every d in [dmin, dmax] */
static span interior(int s, int dmin, int dmax, int n, int cmax) {
    span r = {0, 0};
    r.lo = dmin >= 0 ? 0 : (-dmin + s - 1) / s;
    const int top = n - 1 - dmax; /* c*s <= top */
    r.hi = top < 0 ? 0 : YT_MIN(cmax, top / s + 1);
    if (r.hi < r.lo) r.hi = r.lo;
    return r;
}

/* fills a tile from pixels q[0, nq) (flat indices of a pass; a, b: the
 * class of B's pixels) */
typedef void (*where_fn)(const conv_geom *g, int a, int b, const size_t *q, int nq, tile *T);

/* ---- A: Y = conv(X) ------------------------------------------------------------------ */

/* where A's Y pixel (n, oh, ow) reads: off[t * ostride] for its 9 taps, in
 * an X block (-1: padding) */
static void taps_a(const conv_geom *g, int n, int oh, int ow, ptrdiff_t *off, size_t ostride) {
    for (int kh = 0; kh < 3; kh++) {
        const int ih = oh * g->stride + kh - g->pad_top;
        for (int kw = 0; kw < 3; kw++) {
            const int iw = ow * g->stride + kw - g->pad_left;
            const bool in = ih >= 0 && ih < g->h && iw >= 0 && iw < g->w;
            off[(kh * 3 + kw) * ostride] =
                in ? (ptrdiff_t)((((size_t)n * g->h + ih) * g->w + iw) * VL) : -1;
        }
    }
}

/* tile of Y pixels q[0, nq) (flat over samples, rows, columns) */
static void where_a(const conv_geom *g, int a, int b, const size_t *qs, int nq, tile *T) {
    (void)a, (void)b;
    const size_t per = (size_t)g->ho * g->wo;
    T->nt = 9;
    for (int t = 0; t < 9; t++)
        T->tap[t] = t;
    for (int p = 0; p < TWM; p++) {
        if (p >= nq) {
            T->dst[p] = -1;
            T->smp[p] = 0;
            for (int t = 0; t < 9; t++)
                T->off[t][p] = -1;
            continue;
        }
        const size_t q = qs[p];
        const int n = (int)(q / per), r = (int)(q % per), oh = r / g->wo, ow = r % g->wo;
        T->dst[p] = (ptrdiff_t)(q * VL);
        T->smp[p] = n;
        taps_a(g, n, oh, ow, &T->off[0][p], TWM);
    }
}

/* the gathered tiles of pixels q[0, nq), tile_width(nb) at a time */
static void flush(const pass *P, where_fn where, int a, int b, const size_t *q, int nq,
                  size_t splane, int SB, int nb) {
    tile T;
    const int tw = tile_width(nb);
    for (int i = 0; i < nq; i += tw) {
        where(P->g, a, b, q + i, YT_MIN(tw, nq - i), &T);
        run_tile(&T, 1, NULL, NULL, P->src, splane, SB, P->w, nb, &P->k);
    }
}

/* A over thread t's samples: per output row, the interior runs of tw pixels
 * regular, the rest (edges, short rows) gathered */
static void part_a(void *ctx, int t, int T) {
    const pass *P = ctx;
    const conv_geom *g = P->g;
    const side X = side_x(g), Y = side_y(g);
    const int s = g->stride;
    const span rows = interior(s, -g->pad_top, 2 - g->pad_top, g->h, g->ho);
    const span cols = interior(s, -g->pad_left, 2 - g->pad_left, g->w, g->wo);
    ptrdiff_t toff[9];
    for (int kh = 0; kh < 3; kh++)
        for (int kw = 0; kw < 3; kw++)
            toff[kh * 3 + kw] = (ptrdiff_t)((kh * g->w + kw) * VL);
    tile R = {.nt = 9};
    for (int i = 0; i < 9; i++)
        R.tap[i] = i;
    const int tw = tile_width(Y.nb);
    size_t *rest = yt_malloc(((size_t)g->ho * g->wo + TWM) * sizeof *rest);
    const int n0 = (int)par_split((size_t)g->n, t, T), n1 = (int)par_split((size_t)g->n, t + 1, T);
    for (int n = n0; n < n1; n++) {
        int nr = 0;
        for (int oh = 0; oh < g->ho; oh++) {
            const size_t q0 = ((size_t)n * g->ho + oh) * g->wo;
            int ow = 0;
            if (oh >= rows.lo && oh < rows.hi) {
                for (; ow < cols.lo; ow++)
                    rest[nr++] = q0 + (size_t)ow;
                for (; ow + tw <= cols.hi; ow += tw) {
                    const real *src = P->src + (((size_t)n * g->h + oh * s - g->pad_top) * g->w +
                                                ow * s - g->pad_left) *
                                                   VL;
                    for (int p = 0; p < tw; p++) {
                        R.dst[p] = (ptrdiff_t)((q0 + (size_t)(ow + p)) * VL);
                        R.smp[p] = n;
                    }
                    run_tile(&R, s, toff, src, NULL, X.plane, X.nb, P->w, Y.nb, &P->k);
                }
            }
            for (; ow < g->wo; ow++)
                rest[nr++] = q0 + (size_t)ow;
        }
        flush(P, where_a, 0, 0, rest, nr, X.plane, X.nb, Y.nb);
    }
    free(rest);
}

/* ---- B: X = conv^T(Y) ------------------------------------------------------------------ */

/* the taps that reach X pixels of row parity a (stride 2; stride 1: all): kh
 * with (a + pad - kh) divisible by the stride */
static int class_taps(int s, int a, int pad, int kt[3]) {
    int n = 0;
    for (int k = 0; k < 3; k++)
        if (((a + pad - k) % s + s) % s == 0) kt[n++] = k;
    return n;
}

/* tile of X pixels of class (a, b) q[0, nq), flat over the class's pixels
 * (sample, row r, column c: X pixel (r s + a, c s + b)) */
static void where_b(const conv_geom *g, int a, int b, const size_t *qs, int nq, tile *T) {
    const int s = g->stride;
    const int rows = (g->h - a + s - 1) / s, cols = (g->w - b + s - 1) / s;
    const size_t per = (size_t)rows * cols;
    int kh[3], kw[3];
    const int nh = class_taps(s, a, g->pad_top, kh), nw = class_taps(s, b, g->pad_left, kw);
    T->nt = nh * nw;
    for (int i = 0; i < nh; i++)
        for (int j = 0; j < nw; j++)
            T->tap[i * nw + j] = kh[i] * 3 + kw[j];
    for (int p = 0; p < TWM; p++) {
        if (p >= nq) {
            T->dst[p] = -1;
            T->smp[p] = 0;
            for (int t = 0; t < T->nt; t++)
                T->off[t][p] = -1;
            continue;
        }
        const size_t q = qs[p];
        const int n = (int)(q / per), r = (int)(q % per);
        const int ih = r / cols * s + a, iw = r % cols * s + b;
        T->dst[p] = (ptrdiff_t)((((size_t)n * g->h + ih) * g->w + iw) * VL);
        T->smp[p] = n;
        for (int i = 0; i < nh; i++) {
            const int oh = (ih + g->pad_top - kh[i]) / s; /* divisible: a class tap */
            const bool rin = ih + g->pad_top - kh[i] >= 0 && oh < g->ho;
            for (int j = 0; j < nw; j++) {
                const int ow = (iw + g->pad_left - kw[j]) / s;
                const bool in = rin && iw + g->pad_left - kw[j] >= 0 && ow < g->wo;
                T->off[i * nw + j][p] =
                    in ? (ptrdiff_t)((((size_t)n * g->ho + oh) * g->wo + ow) * VL) : -1;
            }
        }
    }
}

/* B over thread t's samples, each sample class by class (while its output
 * is in cache: a class writes every other pixel of every other row): a class
 * pixel (r, c) reads Y pixel (r + dh, c + dw) for each of its taps (dh =
 * (a + pad_top - kh) / s, dw likewise); interior runs regular (source pixel
 * stride 1), the rest gathered */
typedef struct {
    int rows, cols, nt;
    span rin, cin;
    tile R; /* the regular tiles' taps */
    ptrdiff_t toff[9];
} klass;

static klass make_class(const conv_geom *g, int a, int b) {
    const int s = g->stride;
    klass K = {.rows = (g->h - a + s - 1) / s, .cols = (g->w - b + s - 1) / s};
    int kh[3], kw[3], dh[3], dw[3];
    const int nh = class_taps(s, a, g->pad_top, kh), nw = class_taps(s, b, g->pad_left, kw);
    for (int i = 0; i < nh; i++)
        dh[i] = (a + g->pad_top - kh[i]) / s;
    for (int j = 0; j < nw; j++)
        dw[j] = (b + g->pad_left - kw[j]) / s;
    /* kh ascending: dh descending */
    K.rin = interior(1, dh[nh - 1], dh[0], g->ho, K.rows);
    K.cin = interior(1, dw[nw - 1], dw[0], g->wo, K.cols);
    K.R.nt = nh * nw;
    for (int i = 0; i < nh; i++)
        for (int j = 0; j < nw; j++) {
            K.R.tap[i * nw + j] = kh[i] * 3 + kw[j];
            K.toff[i * nw + j] = (ptrdiff_t)(((ptrdiff_t)dh[i] * g->wo + dw[j]) * VL);
        }
    return K;
}

static void part_b(void *ctx, int t, int T) {
    const pass *P = ctx;
    const conv_geom *g = P->g;
    const side X = side_x(g), Y = side_y(g);
    const int s = g->stride, tw = tile_width(X.nb);
    const int n0 = (int)par_split((size_t)g->n, t, T), n1 = (int)par_split((size_t)g->n, t + 1, T);
    size_t *rest = yt_malloc(((size_t)g->h * g->w + TWM) * sizeof *rest);
    klass K[4];
    for (int a = 0; a < s; a++)
        for (int b = 0; b < s; b++)
            K[a * s + b] = make_class(g, a, b);
    for (int n = n0; n < n1; n++)
        for (int a = 0; a < s; a++)
            for (int b = 0; b < s; b++) {
                klass *k = &K[a * s + b];
                int nr = 0;
                for (int r = 0; r < k->rows; r++) {
                    const size_t q0 = ((size_t)n * k->rows + r) * k->cols;
                    int c = 0;
                    if (r >= k->rin.lo && r < k->rin.hi) {
                        for (; c < k->cin.lo; c++)
                            rest[nr++] = q0 + (size_t)c;
                        for (; c + tw <= k->cin.hi; c += tw) {
                            const real *src = P->src + (((size_t)n * g->ho + r) * g->wo + c) * VL;
                            const size_t d0 =
                                (((size_t)n * g->h + r * s + a) * g->w + c * s + b) * VL;
                            for (int p = 0; p < tw; p++) {
                                k->R.dst[p] = (ptrdiff_t)(d0 + (size_t)p * s * VL);
                                k->R.smp[p] = n;
                            }
                            run_tile(&k->R, 1, k->toff, src, NULL, Y.plane, Y.nb, P->w, X.nb,
                                     &P->k);
                        }
                    }
                    for (; c < k->cols; c++)
                        rest[nr++] = q0 + (size_t)c;
                }
                if (k->rows && k->cols) flush(P, where_b, a, b, rest, nr, Y.plane, Y.nb, X.nb);
            }
    free(rest);
}

/* ---- C: dK += corr(Y, X) --------------------------------------------------------------- */

/* acc [cbo][cbi][9][VL ci] (rvecs over co) += sum over Y pixels q of thread t
 * of y[cbo][q] x[cbi][src_tap(q)][ci] */
typedef struct {
    const conv_geom *g;
    const real *x, *y;
    real *acc; /* per thread: weights_size(g) reals */
} corr;

YT_INLINE void corr_block(const int jb, const real *x, const real *y, size_t yplane,
                          const ptrdiff_t *off, size_t nq, int c0, rvec *a0, rvec *a1) {
    rvec s[2][CH];
    for (int j = 0; j < 2; j++)
        for (int c = 0; c < CH; c++)
            s[j][c] = (rvec){0};
    for (size_t q = 0; q < nq; q++) {
        const real *xp = (off[q] >= 0 ? x + off[q] : zeros) + c0;
        const rvec ya = vload(y + q * VL);
        const rvec yb = jb > 1 ? vload(y + yplane + q * VL) : ya;
#pragma GCC unroll 8
        for (int c = 0; c < CH; c++) {
            s[0][c] += ya * xp[c];
            if (jb > 1) s[1][c] += yb * xp[c];
        }
    }
    for (int c = 0; c < CH; c++) {
        a0[c] += s[0][c];
        if (jb > 1) a1[c] += s[1][c];
    }
}

YT_SIMD_CLONES
static void corr_chunk(const conv_geom *g, const real *x, const real *y, size_t q0, size_t nq,
                       const ptrdiff_t off[9][QC], rvec *acc) {
    const side X = side_x(g), Y = side_y(g);
    for (int ob = 0; ob < Y.nb; ob += 2) {
        const int jb = YT_MIN(2, Y.nb - ob);
        const real *yq = y + (size_t)ob * Y.plane + q0 * VL;
        for (int sb = 0; sb < X.nb; sb++) {
            const real *xs = x + (size_t)sb * X.plane;
            for (int t = 0; t < 9; t++) {
                rvec *a0 = acc + (((size_t)ob * X.nb + sb) * 9 + t) * VL;
                rvec *a1 = a0 + (size_t)X.nb * 9 * VL;
                for (int c0 = 0; c0 < VL; c0 += CH) {
                    if (jb == 2)
                        corr_block(2, xs, yq, Y.plane, off[t], nq, c0, a0 + c0, a1 + c0);
                    else
                        corr_block(1, xs, yq, Y.plane, off[t], nq, c0, a0 + c0, a1 + c0);
                }
            }
        }
    }
}

static void part_c(void *ctx, int t, int T) {
    const corr *C = ctx;
    const conv_geom *g = C->g;
    const size_t per = (size_t)g->ho * g->wo;
    const size_t q0 = par_split((size_t)g->n, t, T) * per,
                 q1 = par_split((size_t)g->n, t + 1, T) * per;
    rvec *acc = (rvec *)(C->acc + (size_t)t * weights_size(g));
    memset(acc, 0, weights_size(g) * sizeof(real));
    ptrdiff_t off[9][QC];
    /* (n, oh, ow) of pixel q, stepped along */
    int n = (int)(q0 / per), oh = 0, ow = 0;
    for (size_t q = q0; q < q1; q += QC) {
        const size_t nq = YT_MIN((size_t)QC, q1 - q);
        for (size_t i = 0; i < nq; i++) {
            taps_a(g, n, oh, ow, &off[0][i], QC);
            if (++ow == g->wo) {
                ow = 0;
                if (++oh == g->ho) oh = 0, n++;
            }
        }
        corr_chunk(g, C->x, C->y, q, nq, off, acc);
    }
}

/* ---- weights, bias, stage --------------------------------------------------------------- */

static real *aligned(real *work) {
    return (real *)(((uintptr_t)work + SIMD_BYTES - 1) / SIMD_BYTES * SIMD_BYTES);
}

/* w [ob][sb][9][VL i][VL o] from k [cout][cin][3][3]: for A (ob over cout, sb
 * over cin) or B (ob over cin, sb over cout) */
static void pack_weights(const conv_geom *g, const real *k, bool b, real *w) {
    const int nbo = convb_blocks(g->cout), nbi = convb_blocks(g->cin);
    memset(w, 0, weights_size(g) * sizeof *w);
    for (int co = 0; co < g->cout; co++)
        for (int ci = 0; ci < g->cin; ci++)
            for (int t = 0; t < 9; t++) {
                const real v = k[((size_t)co * g->cin + ci) * 9 + t];
                size_t at;
                if (!b)
                    at = ((((size_t)(co / VL) * nbi + ci / VL) * 9 + t) * VL + ci % VL) * VL +
                         co % VL;
                else
                    at = ((((size_t)(ci / VL) * nbo + co / VL) * 9 + t) * VL + co % VL) * VL +
                         ci % VL;
                w[at] = v;
            }
}

/* the stage's scale and shift [n][c] as [nb][n][VL] (zero lanes past c),
 * bias [c] as [nb][VL]: one allocation, freed by the caller */
typedef struct {
    real *mem, *sc, *sh, *bias;
} params;

static params block_params(int c, int n, const film_stage *st, const real *bias) {
    const int nb = convb_blocks(c);
    const size_t ns = (size_t)nb * n * VL;
    params P = {.mem = yt_calloc(2 * ns + (size_t)nb * VL + VL, sizeof(real))};
    real *m = aligned(P.mem);
    P.sc = m;
    P.sh = m + ns;
    P.bias = bias ? m + 2 * ns : NULL;
    for (int i = 0; st && i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            const size_t at = ((size_t)(ch / VL) * n + i) * VL + ch % VL;
            P.sc[at] = st->scale[(size_t)i * c + ch];
            P.sh[at] = st->shift[(size_t)i * c + ch];
        }
    for (int ch = 0; bias && ch < c; ch++)
        P.bias[ch] = bias[ch];
    return P;
}

/* The gradient side's pass before C (and before A or B for dx), over samples
 * split among the threads: with a stage, d <- a g (g = d lrelu'(a z + t)),
 * dscale = sum g z, dshift = sum g per sample and channel; the sums of the
 * (new) d per sample and channel into sums [n][nb VL] (the bias gradient). */
typedef struct {
    int c, n, hw;
    real *d;
    const real *z;
    const film_stage *st;
    const params *P;
    real *dscale, *dshift;
    double *sums;
} gpass;

YT_SIMD_CLONES
static void grad_plane(const gpass *G, int b, int i) {
    const int c = G->c, n = G->n, hw = G->hw;
    const size_t at = ((size_t)b * n + i) * hw * VL;
    real *d = G->d + at;
    double sd[VL], sz[VL], sg[VL];
    const rvec zero = {0};
    rvec a = zero, t = zero;
    if (G->st) {
        a = vload(G->P->sc + ((size_t)b * n + i) * VL);
        t = vload(G->P->sh + ((size_t)b * n + i) * VL);
    }
    /* sums in double lanes: the bias gradient of a few pixels may cancel to
     * far below its terms (the GEMM route sums in double too) */
    dvec vd = {0}, vz = {0}, vg = {0};
    for (int p = 0; p < hw; p++) {
        rvec g = vload(d + (size_t)p * VL);
        if (G->st) {
            const rvec zv = vload(G->z + at + (size_t)p * VL);
            if (G->st->lrelu) g = vselect(zv * a + t > zero, g, g * G->st->alpha);
            vz += __builtin_convertvector(g * zv, dvec);
            vg += __builtin_convertvector(g, dvec);
            g = g * a;
            vstore(d + (size_t)p * VL, g);
        }
        vd += __builtin_convertvector(g, dvec);
    }
    for (int l = 0; l < VL; l++) {
        sd[l] = vd[l];
        sz[l] = vz[l];
        sg[l] = vg[l];
    }
    for (int l = 0; l < VL && b * VL + l < c; l++) {
        const int ch = b * VL + l;
        G->sums[(size_t)i * convb_blocks(c) * VL + ch] = sd[l];
        if (G->st) {
            G->dscale[(size_t)i * c + ch] = (real)sz[l];
            G->dshift[(size_t)i * c + ch] = (real)sg[l];
        }
    }
}

static void part_grad(void *ctx, int t, int T) {
    const gpass *G = ctx;
    const int i0 = (int)par_split((size_t)G->n, t, T), i1 = (int)par_split((size_t)G->n, t + 1, T);
    for (int i = i0; i < i1; i++)
        for (int b = 0; b < convb_blocks(G->c); b++)
            grad_plane(G, b, i);
}

/* ---- the layer functions ------------------------------------------------------------------ */

static void forward(const conv_geom *g, bool deconv, const real *x, const real *k, const real *b,
                    const film_stage *st, real *z, real *o, real *work) {
    YT_CHECK(!g->xstage);                    /* the direct route's (convgeom.h) */
    const int c = deconv ? g->cin : g->cout; /* the output side's channels */
    const side out = deconv ? side_x(g) : side_y(g);
    real *w = aligned(work);
    pack_weights(g, k, deconv, w);
    params P = block_params(c, g->n, st, b);
    pass ps = {.g = g,
               .src = x,
               .w = w,
               .k = {.z = z,
                     .o = o,
                     .plane = out.plane,
                     .bias = P.bias,
                     .st = st,
                     .sc = P.sc,
                     .sh = P.sh,
                     .n = g->n}};
    par_run(threads_of(g), deconv ? part_b : part_a, &ps);
    free(P.mem);
}

/* conv (deconv false): x on the X side, dy on the Y side; deconv: x on the
 * Y side, dy on the X side */
static void backward(const conv_geom *g, bool deconv, const real *x, const real *k,
                     const film_stage *st, const real *z, real *dy, real *dx, real *dk, real *db,
                     real *dscale, real *dshift, real *work) {
    YT_CHECK(!g->xstage);
    const int T = threads_of(g);
    const int c = deconv ? g->cin : g->cout; /* dy's channels */
    const side gs = deconv ? side_x(g) : side_y(g);
    params P = block_params(c, g->n, st, NULL);
    double *sums = yt_calloc((size_t)g->n * convb_blocks(c) * VL, sizeof *sums);
    gpass G = {.c = c,
               .n = g->n,
               .hw = gs.h * gs.w,
               .d = dy,
               .z = z,
               .st = st,
               .P = &P,
               .dscale = dscale,
               .dshift = dshift,
               .sums = sums};
    par_run(T, part_grad, &G);
    for (int ch = 0; ch < c; ch++) {
        double s = 0;
        for (int i = 0; i < g->n; i++)
            s += sums[(size_t)i * convb_blocks(c) * VL + ch];
        db[ch] += (real)s;
    }
    free(sums);
    free(P.mem);

    real *w = aligned(work), *acc = w + weights_size(g);
    corr C = {.g = g, .x = deconv ? dy : x, .y = deconv ? x : dy, .acc = acc};
    par_run(T, part_c, &C);
    const int nbi = convb_blocks(g->cin);
    for (int co = 0; co < g->cout; co++)
        for (int ci = 0; ci < g->cin; ci++)
            for (int t = 0; t < 9; t++) {
                const size_t at =
                    ((((size_t)(co / VL) * nbi + ci / VL) * 9 + t) * VL + ci % VL) * VL + co % VL;
                real s = 0;
                for (int th = 0; th < T; th++)
                    s += acc[(size_t)th * weights_size(g) + at];
                dk[((size_t)co * g->cin + ci) * 9 + t] += s;
            }

    if (!dx) return;
    /* conv: dx = B(dy) on the X side; deconv: dx = A(dy) on the Y side */
    pack_weights(g, k, !deconv, w);
    const side out = deconv ? side_y(g) : side_x(g);
    pass ps = {.g = g, .src = dy, .w = w, .k = {.z = dx, .plane = out.plane, .n = g->n}};
    par_run(T, deconv ? part_a : part_b, &ps);
}

void convb_conv_forward(const conv_geom *g, const real *x, const real *k, const real *b,
                        const film_stage *st, real *z, real *o, real *work) {
    forward(g, false, x, k, b, st, z, o, work);
}

void convb_deconv_forward(const conv_geom *g, const real *x, const real *k, const real *b,
                          const film_stage *st, real *z, real *o, real *work) {
    forward(g, true, x, k, b, st, z, o, work);
}

void convb_conv_backward(const conv_geom *g, const real *x, const real *k, const film_stage *st,
                         const real *z, real *dy, real *dx, real *dk, real *db, real *dscale,
                         real *dshift, real *work) {
    backward(g, false, x, k, st, z, dy, dx, dk, db, dscale, dshift, work);
}

void convb_deconv_backward(const conv_geom *g, const real *x, const real *k, const film_stage *st,
                           const real *z, real *dy, real *dx, real *dk, real *db, real *dscale,
                           real *dshift, real *work) {
    backward(g, true, x, k, st, z, dy, dx, dk, db, dscale, dshift, work);
}
