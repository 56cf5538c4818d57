/* convw.c — Winograd F(2x2, 3x3) for the stride-1 3x3 convolutions (convk.h).
 *
 * Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016):
 * a 2x2 tile of outputs of a 3x3 conv is A^T [(G k G^T) . (B^T d B)] A for
 * the 4x4 input tile d around it. Over all tiles and channels the 16
 * element-wise products (one per tile element xi) are 16 independent GEMMs,
 * [cout x cin] by [cin x tiles]: 4 multiply-adds per output and channel pair
 * instead of 9, plus the transforms (additions only).
 *
 * Notation of convk.c: a conv g maps the X side [cin][n][h][w] to the Y side
 * [cout][n][h][w] (stride 1 keeps the size). Three computations:
 *   A  Y = conv(X) (+ bias)       weights G k G^T
 *   B  X = conv^T(Y) (+ bias)     the same with each kernel turned 180 degrees
 *   C  dK += corr(Y, X)           sum over tiles of G^T [(A y A^T) . (B^T x B)] G
 * C is the gradient of A's bilinear form in k, so it is exact in exact
 * arithmetic, as A and B are.
 *
 * Layout: VL samples (a group) sit side by side in the lanes of a vector, so
 * every image size vectorises without waste. A band of tile rows of a chunk
 * of groups is copied (transposed) into P [c][group][2 nr + 2 rows][pw][VL]
 * with its zero padding and one halo row on each side; the transforms read P
 * and write T [16][c][qs], position q = ((group * nr + r) * tw + j) * VL +
 * lane (one tile of one sample), Q of them, qs = Q + 8 VL (the GEMM kernels
 * write up to 8 VL - 1 past Q, and read as far); the GEMMs run over q; the output transform
 * writes S [c][group][2 nr][2 tw][VL], transposed back into [C][N][H][W].
 * Lanes of samples past n are zero. Threads split the groups (g->threads).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convk.h"
#include "par.h"

/* the transforms and products of one band: about an L2 cache (1 MB: 6% faster
 * than 512 KB on the CIFAR-10 layers, Zen 5) */
#define BAND_BYTES (1024 * 1024)

typedef struct {
    int n, h, w, cx, cy, cmax; /* batch, image, X and Y side channels */
    int th, tw, pw;            /* tiles; padded columns 2 tw + 2 */
    int groups;                /* ceil(n / VL) */
    int gpc, rpb;              /* groups per chunk, tile rows per band */
    size_t qmax;               /* row pitch of T: positions per band + 8 VL */
    int threads;
} wgeom;

static wgeom make_wgeom(const conv_geom *g) {
    wgeom G = {.n = g->n, .h = g->h, .w = g->w, .cx = g->cin, .cy = g->cout};
    G.cmax = YT_MAX(G.cx, G.cy);
    G.th = (G.h + 1) / 2;
    G.tw = (G.w + 1) / 2;
    G.pw = 2 * G.tw + 2;
    G.groups = (G.n + VL - 1) / VL;
    G.threads = YT_MAX(1, YT_MIN(g->threads, G.groups));
    const int per_thread = (G.groups + G.threads - 1) / G.threads;
    const size_t unit = (size_t)G.tw * VL; /* positions of one tile row of a group */
    const size_t units = YT_MAX((size_t)1, BAND_BYTES / (2 * 16 * G.cmax * unit * sizeof(real)));
    if (units >= (size_t)G.th) {
        G.rpb = G.th;
        G.gpc = (int)YT_MIN((size_t)per_thread, units / G.th);
    } else {
        G.rpb = (int)units;
        G.gpc = 1;
    }
    G.qmax = (size_t)G.gpc * G.rpb * unit + 8 * VL;
    return G;
}

bool convw_supports(const conv_geom *g) {
    return g->stride == 1 && g->ho == g->h && g->wo == g->w && g->pad_top == 1 && g->pad_left == 1;
}

/* reals of one thread's part: P of both sides, T1, T2, S, stage rows, then
 * the kernel gradient's accumulators (rvecs) */
static size_t p_size(const wgeom *G, int c) {
    return (size_t)c * G->gpc * (2 * G->rpb + 2) * G->pw * VL;
}
static size_t thread_size(const wgeom *G) {
    size_t s = p_size(G, G->cx) + p_size(G, G->cy) + 2 * 16 * (size_t)G->cmax * G->qmax;
    s += (size_t)G->cmax * G->gpc * (2 * G->rpb) * (2 * G->tw) * VL;
    s += (size_t)VL * (2 * G->rpb + 2) * G->w;
    s += (size_t)G->cx * G->cy * 16 * VL;
    return round_up(s, VL);
}

size_t convw_work_size(const conv_geom *g) {
    wgeom G = make_wgeom(g);
    return VL /* alignment */ + round_up(16 * (size_t)G.cx * G.cy, VL) +
           (size_t)G.threads * thread_size(&G);
}

/* ---- weights -------------------------------------------------------------------- */

/* u [cy][cx][16] = G k G^T of every 3x3 kernel k [cy][cx][9] (turned 180
 * degrees with flip), G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], in double */
static void transform_weights(const real *k, int cy, int cx, bool flip, real *u) {
    for (size_t j = 0; j < (size_t)cy * cx; j++) {
        double g[3][3], t[4][3];
        for (int a = 0; a < 9; a++)
            g[a / 3][a % 3] = k[j * 9 + (flip ? 8 - a : a)];
        for (int c = 0; c < 3; c++) {
            t[0][c] = g[0][c];
            t[1][c] = 0.5 * (g[0][c] + g[1][c] + g[2][c]);
            t[2][c] = 0.5 * (g[0][c] - g[1][c] + g[2][c]);
            t[3][c] = g[2][c];
        }
        real *o = u + j * 16;
        for (int r = 0; r < 4; r++) {
            o[r * 4 + 0] = (real)t[r][0];
            o[r * 4 + 1] = (real)(0.5 * (t[r][0] + t[r][1] + t[r][2]));
            o[r * 4 + 2] = (real)(0.5 * (t[r][0] - t[r][1] + t[r][2]));
            o[r * 4 + 3] = (real)t[r][2];
        }
    }
}

/* The 16 GEMMs' weights, [xi][cx * cy] packed by convk_gemm_pack: computation
 * A (Y from X: nout = cy) or B (X from Y: nout = cx, kernels turned). */
static void pack_weights(const wgeom *G, const real *k, bool b, real *w) {
    real *u = yt_malloc((size_t)G->cx * G->cy * 16 * sizeof *u);
    transform_weights(k, G->cy, G->cx, b, u);
    for (int xi = 0; xi < 16; xi++) {
        real *dst = w + (size_t)xi * G->cx * G->cy;
        if (b)
            convk_gemm_pack(G->cx, G->cy, u + xi, 16, (size_t)G->cx * 16, dst);
        else
            convk_gemm_pack(G->cy, G->cx, u + xi, (size_t)G->cx * 16, 16, dst);
    }
    free(u);
}

/* dk [cy][cx][9] += G^T du G for du [cy][cx][16] (double) */
static void finish_weights(const wgeom *G, const double *du, real *dk) {
    for (size_t j = 0; j < (size_t)G->cy * G->cx; j++) {
        const double *d = du + j * 16;
        double t[3][4]; /* G^T d: rows 0, (0+1+2)/2 ... as the forward's G */
        for (int c = 0; c < 4; c++) {
            t[0][c] = d[c] + 0.5 * (d[4 + c] + d[8 + c]);
            t[1][c] = 0.5 * (d[4 + c] - d[8 + c]);
            t[2][c] = 0.5 * (d[4 + c] + d[8 + c]) + d[12 + c];
        }
        for (int r = 0; r < 3; r++) {
            dk[j * 9 + r * 3 + 0] += (real)(t[r][0] + 0.5 * (t[r][1] + t[r][2]));
            dk[j * 9 + r * 3 + 1] += (real)(0.5 * (t[r][1] - t[r][2]));
            dk[j * 9 + r * 3 + 2] += (real)(0.5 * (t[r][1] + t[r][2]) + t[r][3]);
        }
    }
}

/* ---- transposes between samples and lanes ------------------------------------------ */

#if SIMD_BYTES == 64 && !defined(YOTO_DOUBLE)
/* r[i][j] -> r[j][i] for 16 vectors of 16 floats (bin/yoto-avx512): four
 * stages; the stage of bit b swaps bit b between row and lane index, i.e.
 * the off-diagonal b x b blocks of every 2b x 2b block */
YT_INLINE void transpose_stage(rvec *r, int b, rvec_idx lo, rvec_idx hi) {
    for (int i = 0; i < 16; i++)
        if (!(i & b)) {
            const rvec a = r[i], c = r[i + b];
            r[i] = __builtin_shuffle(a, c, lo);
            r[i + b] = __builtin_shuffle(a, c, hi);
        }
}
YT_INLINE void transpose(rvec *r) {
    transpose_stage(r, 8, (rvec_idx){0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
                    (rvec_idx){8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31});
    transpose_stage(r, 4, (rvec_idx){0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
                    (rvec_idx){4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31});
    transpose_stage(r, 2, (rvec_idx){0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
                    (rvec_idx){2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31});
    transpose_stage(r, 1, (rvec_idx){0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
                    (rvec_idx){1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31});
}
#else
/* r[i][j] -> r[j][i] for VL vectors of VL reals (unpack, shuffle, swap halves) */
YT_INLINE void transpose(rvec *r) {
#if defined(YOTO_DOUBLE) && SIMD_BYTES == 32
    const rvec_idx lo = {0, 4, 2, 6}, hi = {1, 5, 3, 7}, h0 = {0, 1, 4, 5}, h1 = {2, 3, 6, 7};
    rvec t0 = __builtin_shuffle(r[0], r[1], lo), t1 = __builtin_shuffle(r[0], r[1], hi);
    rvec t2 = __builtin_shuffle(r[2], r[3], lo), t3 = __builtin_shuffle(r[2], r[3], hi);
    r[0] = __builtin_shuffle(t0, t2, h0);
    r[1] = __builtin_shuffle(t1, t3, h0);
    r[2] = __builtin_shuffle(t0, t2, h1);
    r[3] = __builtin_shuffle(t1, t3, h1);
#else
    const rvec_idx lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
    const rvec_idx s0 = {0, 1, 8, 9, 4, 5, 12, 13}, s1 = {2, 3, 10, 11, 6, 7, 14, 15};
    const rvec_idx h0 = {0, 1, 2, 3, 8, 9, 10, 11}, h1 = {4, 5, 6, 7, 12, 13, 14, 15};
    rvec t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = __builtin_shuffle(r[2 * i], r[2 * i + 1], lo);
        t[2 * i + 1] = __builtin_shuffle(r[2 * i], r[2 * i + 1], hi);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i + 0] = __builtin_shuffle(t[4 * i], t[4 * i + 2], s0);
        u[4 * i + 1] = __builtin_shuffle(t[4 * i], t[4 * i + 2], s1);
        u[4 * i + 2] = __builtin_shuffle(t[4 * i + 1], t[4 * i + 3], s0);
        u[4 * i + 3] = __builtin_shuffle(t[4 * i + 1], t[4 * i + 3], s1);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = __builtin_shuffle(u[i], u[i + 4], h0);
        r[i + 4] = __builtin_shuffle(u[i], u[i + 4], h1);
    }
#endif
}
#endif

/* ---- packing: a band of a side into P ------------------------------------------------ */

/* One side of the conv as the kernels read or write it. */
typedef struct {
    int c;         /* channels */
    const real *t; /* [c][n][h][w] (packing) */
    /* packing a gradient: the block stage's backward folded in (st NULL:
     * none), as convk's pack_y; dscale, dshift [n][c] */
    const film_stage *st;
    const real *z; /* the forward's z */
    real *dscale, *dshift;
    double *sums; /* per channel, += the sums of the packed values; or NULL */
} side;

/* The band's image rows [lo, hi) of one sample (stage applied into tmp);
 * the stage sums are taken over the rows the band owns, [own_lo, own_hi). */
YT_INLINE const real *band_rows(const wgeom *G, const side *sd, int c, int s, int lo, int hi,
                                int own_lo, int own_hi, real *tmp, double *sum) {
    const size_t at = ((size_t)c * G->n + s) * G->h * G->w;
    const real *src = sd->t + at;
    const int w = G->w;
    if (!sd->st) {
        if (sum) { /* float lanes over the owned rows, then double */
            const real *p = src + (size_t)own_lo * w;
            const int len = (own_hi - own_lo) * w;
            rvec acc = {0};
            int i = 0;
            for (; i + VL <= len; i += VL)
                acc += vload(p + i);
            double t = vhsum(acc);
            for (; i < len; i++)
                t += p[i];
            *sum += t;
        }
        return src + (size_t)lo * w;
    }
    const film_stage *st = sd->st;
    const size_t si = (size_t)s * sd->c + c;
    const real a = st->scale[si], t = st->shift[si];
    double ds = 0, dt = 0, junk = 0;
    for (int y = lo; y < hi; y++) {
        const size_t ro = at + (size_t)y * w;
        bool own = y >= own_lo && y < own_hi;
        stage_bwd_row(st, a, t, src + (size_t)y * w, sd->z + ro, tmp + (size_t)(y - lo) * w, w,
                      own ? &ds : &junk, own ? &dt : &junk);
    }
    /* several bands add up a sample's sums: the first one sets them */
    sd->dscale[si] = (own_lo == 0 ? 0 : sd->dscale[si]) + (real)ds;
    sd->dshift[si] = (own_lo == 0 ? 0 : sd->dshift[si]) + (real)dt;
    if (sum) *sum += a * dt;
    return tmp;
}

/* P [c][gn][2 nr + 2][pw][VL] of groups grp0.. and tile rows r0..r0+nr: P row
 * k is image row 2 r0 - 1 + k, P column k image column k - 1, zero outside
 * the image and in the lanes of samples past n. tmp: VL (2 nr + 2) w reals. */
YT_SIMD_CLONES
static void pack_band(const wgeom *G, const side *sd, int grp0, int gn, int r0, int nr, real *P,
                      real *tmp) {
    const int h = G->h, w = G->w, pw = G->pw, prows = 2 * nr + 2, top = 2 * r0 - 1;
    const int lo = YT_MAX(0, top), hi = YT_MIN(h, top + prows);
    const int own_lo = 2 * r0, own_hi = YT_MIN(h, 2 * (r0 + nr));
    const size_t npx = (size_t)(hi - lo) * w, rowv = (size_t)pw * VL;
    for (int c = 0; c < sd->c; c++)
        for (int g = 0; g < gn; g++) {
            real *pg = P + ((size_t)c * gn + g) * prows * rowv;
            const int s0 = (grp0 + g) * VL, ns = YT_MIN(VL, G->n - s0);
            for (int k = 0; k < prows; k++) {
                real *row = pg + (size_t)k * rowv;
                if (top + k < lo || top + k >= hi) {
                    memset(row, 0, rowv * sizeof *row);
                } else {
                    memset(row, 0, VL * sizeof *row);
                    memset(row + (size_t)(w + 1) * VL, 0, (size_t)(pw - w - 1) * VL * sizeof *row);
                }
            }
            const real *src[VL];
            double sum = 0;
            for (int s = 0; s < ns; s++)
                src[s] = band_rows(G, sd, c, s0 + s, lo, hi, own_lo, own_hi,
                                   tmp + (size_t)s * prows * w, sd->sums ? &sum : NULL);
            if (sd->sums) sd->sums[c] += sum;
            real *base = pg + (size_t)(lo - top) * rowv + VL; /* image row lo, column 0 */
            int y = 0, x = 0;                                 /* of pixel p, relative to row lo */
            size_t p = 0;
            for (; p + VL <= npx; p += VL) {
                rvec v[VL];
                for (int s = 0; s < VL; s++)
                    v[s] = s < ns ? vload(src[s] + p) : (rvec){0};
                transpose(v);
                for (int k = 0; k < VL; k++) {
                    vstore(base + ((size_t)y * pw + x) * VL, v[k]);
                    if (++x == w) x = 0, y++;
                }
            }
            for (; p < npx; p++) {
                real *d = base + ((size_t)y * pw + x) * VL;
                for (int s = 0; s < VL; s++)
                    d[s] = s < ns ? src[s][p] : 0;
                if (++x == w) x = 0, y++;
            }
        }
}

/* ---- transforms -------------------------------------------------------------------- */

/* t[.][v] = B^T of the 4 values p[0], p[rowv], p[2 rowv], p[3 rowv] */
YT_INLINE void col_step(const real *p, size_t rowv, rvec t[4][4], int v) {
    const rvec d0 = vload(p), d1 = vload(p + rowv), d2 = vload(p + 2 * rowv),
               d3 = vload(p + 3 * rowv);
    t[0][v] = d0 - d2;
    t[1][v] = d1 + d2;
    t[2][v] = d2 - d1;
    t[3][v] = d1 - d3;
}

/* T [16][c][qs] = B^T d B of every 4x4 tile d of P (a band of nr tile rows,
 * gn groups); positions from Q to qs zeroed (the GEMMs read them).
 * B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. */
YT_SIMD_CLONES
static void xform_in(const wgeom *G, int C, int gn, int nr, const real *P, real *T, size_t qs) {
    const int tw = G->tw, pw = G->pw;
    const size_t rowv = (size_t)pw * VL, Q = (size_t)gn * nr * tw * VL;
    for (int c = 0; c < C; c++)
        for (int g = 0; g < gn; g++) {
            const real *pg = P + ((size_t)c * gn + g) * (2 * nr + 2) * rowv;
            for (int r = 0; r < nr; r++) {
                /* the row step (B^T d) of a column of P; neighbouring tiles
                 * share two columns, so each tile computes two new ones */
                rvec t[4][4];
                const real *p = pg + (size_t)(2 * r) * rowv;
                for (int v = 0; v < 2; v++)
                    col_step(p + (size_t)v * VL, rowv, t, v);
                for (int j = 0; j < tw; j++) {
                    for (int v = 2; v < 4; v++)
                        col_step(p + (size_t)(2 * j + v) * VL, rowv, t, v);
                    const size_t q = (((size_t)g * nr + r) * tw + j) * VL;
                    real *o = T + (size_t)c * qs + q;
                    const size_t xs = (size_t)C * qs; /* between tile elements */
                    for (int i = 0; i < 4; i++) {
                        vstore(o + (size_t)(4 * i + 0) * xs, t[i][0] - t[i][2]);
                        vstore(o + (size_t)(4 * i + 1) * xs, t[i][1] + t[i][2]);
                        vstore(o + (size_t)(4 * i + 2) * xs, t[i][2] - t[i][1]);
                        vstore(o + (size_t)(4 * i + 3) * xs, t[i][1] - t[i][3]);
                        t[i][0] = t[i][2];
                        t[i][1] = t[i][3];
                    }
                }
            }
        }
    for (size_t k = 0; k < 16 * (size_t)C; k++)
        memset(T + k * qs + Q, 0, (qs - Q) * sizeof *T);
}

/* T [16][c][qs] = A e A^T of every 2x2 tile e of the image in P (C's
 * gradient side); A = [1 0; 1 1; 1 -1; 0 -1] */
YT_SIMD_CLONES
static void xform_grad(const wgeom *G, int C, int gn, int nr, const real *P, real *T, size_t qs) {
    const int tw = G->tw, pw = G->pw;
    const size_t rowv = (size_t)pw * VL;
    for (int c = 0; c < C; c++)
        for (int g = 0; g < gn; g++) {
            const real *pg = P + ((size_t)c * gn + g) * (2 * nr + 2) * rowv;
            for (int r = 0; r < nr; r++)
                for (int j = 0; j < tw; j++) {
                    const real *p = pg + (size_t)(2 * r + 1) * rowv + (size_t)(2 * j + 1) * VL;
                    rvec e[2][2], a[4][2];
                    for (int u = 0; u < 2; u++)
                        for (int v = 0; v < 2; v++)
                            e[u][v] = vload(p + u * rowv + (size_t)v * VL);
                    for (int v = 0; v < 2; v++) {
                        a[0][v] = e[0][v];
                        a[1][v] = e[0][v] + e[1][v];
                        a[2][v] = e[0][v] - e[1][v];
                        a[3][v] = -e[1][v];
                    }
                    const size_t q = (((size_t)g * nr + r) * tw + j) * VL;
                    real *o = T + (size_t)c * qs + q;
                    const size_t xs = (size_t)C * qs;
                    for (int i = 0; i < 4; i++) {
                        vstore(o + (size_t)(4 * i + 0) * xs, a[i][0]);
                        vstore(o + (size_t)(4 * i + 1) * xs, a[i][0] + a[i][1]);
                        vstore(o + (size_t)(4 * i + 2) * xs, a[i][0] - a[i][1]);
                        vstore(o + (size_t)(4 * i + 3) * xs, -a[i][1]);
                    }
                }
        }
}

/* S [c][gn][2 nr][2 tw][VL] = A^T m A of every tile's 16 products m in M
 * [16][c][qs]; A^T = [1 1 1 0; 0 1 -1 -1] */
YT_SIMD_CLONES
static void xform_out(const wgeom *G, int C, int gn, int nr, const real *M, size_t qs, real *S) {
    const int tw = G->tw;
    const size_t rowv = (size_t)(2 * tw) * VL;
    for (int c = 0; c < C; c++)
        for (int g = 0; g < gn; g++) {
            real *sg = S + ((size_t)c * gn + g) * (2 * nr) * rowv;
            for (int r = 0; r < nr; r++)
                for (int j = 0; j < tw; j++) {
                    const size_t q = (((size_t)g * nr + r) * tw + j) * VL;
                    const real *m = M + (size_t)c * qs + q;
                    const size_t xs = (size_t)C * qs;
                    rvec s0[4], s1[4];
                    for (int v = 0; v < 4; v++) {
                        rvec m0 = vload(m + (size_t)v * xs), m1 = vload(m + (size_t)(4 + v) * xs);
                        rvec m2 = vload(m + (size_t)(8 + v) * xs),
                             m3 = vload(m + (size_t)(12 + v) * xs);
                        s0[v] = m0 + m1 + m2;
                        s1[v] = m1 - m2 - m3;
                    }
                    real *o = sg + (size_t)(2 * r) * rowv + (size_t)(2 * j) * VL;
                    vstore(o, s0[0] + s0[1] + s0[2]);
                    vstore(o + VL, s0[1] - s0[2] - s0[3]);
                    vstore(o + rowv, s1[0] + s1[1] + s1[2]);
                    vstore(o + rowv + VL, s1[1] - s1[2] - s1[3]);
                }
        }
}

/* out [c][n][h][w], the band's rows 2 r0 .. 2 (r0 + nr), from S (+ bias; the
 * block stage's forward into o when st is set) */
YT_SIMD_CLONES
static void unpack_band(const wgeom *G, int C, const real *S, int grp0, int gn, int r0, int nr,
                        const real *bias, real *out, const film_stage *st, real *o) {
    const int h = G->h, w = G->w, y0 = 2 * r0, y1 = YT_MIN(h, 2 * (r0 + nr));
    const size_t npx = (size_t)(y1 - y0) * w, rowv = (size_t)(2 * G->tw) * VL;
    for (int c = 0; c < C; c++)
        for (int g = 0; g < gn; g++) {
            const real *sg = S + ((size_t)c * gn + g) * (2 * nr) * rowv;
            const int s0 = (grp0 + g) * VL, ns = YT_MIN(VL, G->n - s0);
            const real b = bias ? bias[c] : 0;
            real *dst[VL];
            for (int s = 0; s < ns; s++)
                dst[s] = out + (((size_t)c * G->n + s0 + s) * h + y0) * w;
            int y = 0, x = 0;
            size_t p = 0;
            for (; p + VL <= npx; p += VL) {
                rvec v[VL];
                for (int k = 0; k < VL; k++) {
                    v[k] = vload(sg + (size_t)y * rowv + (size_t)x * VL);
                    if (++x == w) x = 0, y++;
                }
                transpose(v);
                for (int s = 0; s < ns; s++)
                    vstore(dst[s] + p, v[s] + b);
            }
            for (; p < npx; p++) {
                const real *sv = sg + (size_t)y * rowv + (size_t)x * VL;
                for (int s = 0; s < ns; s++)
                    dst[s][p] = sv[s] + b;
                if (++x == w) x = 0, y++;
            }
            if (st && o) /* o NULL: not wanted (layers.h) */
                for (int s = 0; s < ns; s++) {
                    const size_t si = (size_t)(s0 + s) * C + c, off = (size_t)(dst[s] - out);
                    stage_fwd_row(st, st->scale[si], st->shift[si], dst[s], o + off, (int)npx);
                }
        }
}

/* ---- the computations --------------------------------------------------------------- */

enum { OP_A, OP_B, OP_BWD_CONV, OP_BWD_DECONV };

/* One call: what every thread reads, and where its part of the workspace is. */
typedef struct {
    wgeom G;
    int op;
    const real *w; /* the packed GEMM weights (A or B) */
    side xs, ys;   /* the X and Y sides */
    /* forward: the output side's tensor, bias and stage */
    real *out;
    const real *bias;
    const film_stage *st;
    real *o;
    real *dx; /* backward: the input gradient, or NULL */
    real *work;
    double *sums; /* [threads][channels of the bias gradient] */
} job;

typedef struct {
    real *px, *py, *t1, *t2, *s, *tmp;
    rvec *acc;
} part;

static part carve(const job *J, int t) {
    const wgeom *G = &J->G;
    real *p = J->work + round_up(16 * (size_t)G->cx * G->cy, VL) + (size_t)t * thread_size(G);
    part q;
    q.acc = (rvec *)p;
    q.px = p + (size_t)G->cx * G->cy * 16 * VL;
    q.py = q.px + p_size(G, G->cx);
    q.t1 = q.py + p_size(G, G->cy);
    q.t2 = q.t1 + 16 * (size_t)G->cmax * G->qmax;
    q.s = q.t2 + 16 * (size_t)G->cmax * G->qmax;
    q.tmp = q.s + (size_t)G->cmax * G->gpc * (2 * G->rpb) * (2 * G->tw) * VL;
    return q;
}

/* the 16 GEMMs: to [xi][nout][qs] from [xi][nin][qs], Q positions */
static void products(const job *J, int nout, int nin, const real *in, real *to, size_t Q,
                     size_t qs) {
    const size_t nw = (size_t)J->G.cx * J->G.cy;
    for (int xi = 0; xi < 16; xi++)
        convk_gemm(nout, nin, J->w + xi * nw, in + (size_t)xi * nin * qs, qs,
                   to + (size_t)xi * nout * qs, qs, Q);
}

/* A or B for one band: pack the input side, transform, multiply, transform
 * back, unpack into the output side */
static void band_forward(const job *J, const part *q, int grp0, int gn, int r0, int nr, size_t qs) {
    const wgeom *G = &J->G;
    const side *in = J->op == OP_A ? &J->xs : &J->ys;
    const int nin = in->c, nout = J->op == OP_A ? G->cy : G->cx;
    pack_band(G, in, grp0, gn, r0, nr, q->px, q->tmp);
    xform_in(G, nin, gn, nr, q->px, q->t1, qs);
    products(J, nout, nin, q->t1, q->t2, (size_t)gn * nr * G->tw * VL, qs);
    xform_out(G, nout, gn, nr, q->t2, qs, q->s);
    unpack_band(G, nout, q->s, grp0, gn, r0, nr, J->bias, J->out, J->st, J->o);
}

/* backward for one band: C into the thread's accumulators, and the input
 * gradient (B for a conv, A for a deconv) */
static void band_backward(const job *J, const part *q, int grp0, int gn, int r0, int nr, size_t qs,
                          double *sums) {
    const wgeom *G = &J->G;
    side xs = J->xs, ys = J->ys;
    if (J->op == OP_BWD_DECONV) /* the bias gradient: sums of the gradient side */
        xs.sums = sums;
    else
        ys.sums = sums;
    pack_band(G, &xs, grp0, gn, r0, nr, q->px, q->tmp);
    pack_band(G, &ys, grp0, gn, r0, nr, q->py, q->tmp);
    xform_in(G, G->cx, gn, nr, q->px, q->t1, qs);
    xform_grad(G, G->cy, gn, nr, q->py, q->t2, qs);
    const size_t Q = (size_t)gn * nr * G->tw * VL;
    for (int xi = 0; xi < 16; xi++)
        convk_gemm_grad(G->cy, G->cx, q->t2 + (size_t)xi * G->cy * qs, qs,
                        q->t1 + (size_t)xi * G->cx * qs, qs, Q, q->acc + xi, 16);
    if (!J->dx) return;
    if (J->op == OP_BWD_CONV) { /* dx on the X side = B(dy) */
        xform_in(G, G->cy, gn, nr, q->py, q->t2, qs);
        products(J, G->cx, G->cy, q->t2, q->t1, Q, qs);
        xform_out(G, G->cx, gn, nr, q->t1, qs, q->s);
        unpack_band(G, G->cx, q->s, grp0, gn, r0, nr, NULL, J->dx, NULL, NULL);
    } else { /* dx on the Y side = A(dy), from the transform made for C */
        products(J, G->cy, G->cx, q->t1, q->t2, Q, qs);
        xform_out(G, G->cy, gn, nr, q->t2, qs, q->s);
        unpack_band(G, G->cy, q->s, grp0, gn, r0, nr, NULL, J->dx, NULL, NULL);
    }
}

/* thread t: its share of the groups, in chunks of gpc groups, band by band */
static void run_part(const job *J, int t) {
    const wgeom *G = &J->G;
    part q = carve(J, t);
    const int g0 = (int)par_split((size_t)G->groups, t, G->threads);
    const int g1 = (int)par_split((size_t)G->groups, t + 1, G->threads);
    const bool bwd = J->op == OP_BWD_CONV || J->op == OP_BWD_DECONV;
    if (bwd) memset(q.acc, 0, (size_t)G->cx * G->cy * 16 * sizeof *q.acc);
    for (int c0 = g0; c0 < g1; c0 += G->gpc) {
        const int gn = YT_MIN(G->gpc, g1 - c0);
        for (int r0 = 0; r0 < G->th; r0 += G->rpb) {
            const int nr = YT_MIN(G->rpb, G->th - r0);
            const size_t qs = (size_t)gn * nr * G->tw * VL + 8 * VL;
            if (bwd)
                band_backward(J, &q, c0, gn, r0, nr, qs, J->sums + (size_t)t * G->cmax);
            else
                band_forward(J, &q, c0, gn, r0, nr, qs);
        }
    }
}

static void run_part_fn(void *ctx, int t, int T) {
    (void)T; /* the job's own split (G.threads) */
    run_part(ctx, t);
}

static void run_job(const job *J) {
    par_run(J->G.threads, run_part_fn, (void *)J);
}

/* the sum of the job's threads' C accumulators, in thread order, for the
 * reducing thread's share of them: every element gets the same additions
 * in the same order whatever the share, so any split gives the same bits.
 * Split because it is large (cx cy 16 vectors a thread: 4 MB at CIFAR-10's
 * 64 x 64 channels in bin/yoto-avx512) and was serial: CIFAR-10's block2 convs scaled 1.3-1.4x on
 * 2 threads with it. */
typedef struct {
    const job *J;
    double *du;
    size_t np;
} reduce_pass;

static void reduce_part(void *ctx, int t, int T) {
    const reduce_pass *r = ctx;
    const size_t k0 = par_split(r->np, t, T), k1 = par_split(r->np, t + 1, T);
    for (int s = 0; s < r->J->G.threads; s++) {
        const part q = carve(r->J, s);
        for (size_t k = k0; k < k1; k++)
            r->du[k] += vhsum(q.acc[k]);
    }
}

/* the threads' C accumulators summed in thread order, then G^T . G into dk;
 * their bias sums into db (nb channels) */
static void finish_backward(const job *J, real *dk, real *db, int nb) {
    const wgeom *G = &J->G;
    const size_t np = (size_t)G->cx * G->cy * 16;
    double *du = yt_calloc(np, sizeof *du);
    reduce_pass r = {J, du, np};
    par_run(par_threads(np * (size_t)G->threads * VL, np), reduce_part, &r);
    finish_weights(G, du, dk);
    free(du);
    for (int c = 0; c < nb; c++) {
        double s = 0;
        for (int t = 0; t < G->threads; t++)
            s += J->sums[(size_t)t * G->cmax + c];
        db[c] += (real)s;
    }
}

static job make_job(const conv_geom *g, int op, real *work) {
    job J = {.G = make_wgeom(g), .op = op};
    uintptr_t a = ((uintptr_t)work + SIMD_BYTES - 1) / SIMD_BYTES * SIMD_BYTES;
    J.work = (real *)a;
    J.w = J.work + 0;
    J.xs.c = J.G.cx;
    J.ys.c = J.G.cy;
    return J;
}

/* the packed weights live at the start of the workspace, the parts after */
static void set_weights(job *J, const real *k, bool b) {
    pack_weights(&J->G, k, b, J->work);
}

/* a conv reads x on the X side with the kernels as they are (A); a deconv
 * reads it on the Y side with them turned (B) */
static void forward(const conv_geom *g, bool deconv, const real *x, const real *k, const real *b,
                    real *y, const film_stage *st, real *o, real *work) {
    job J = make_job(g, deconv ? OP_B : OP_A, work);
    set_weights(&J, k, deconv);
    if (deconv)
        J.ys.t = x;
    else
        J.xs.t = x;
    J.out = y;
    J.bias = b;
    J.st = st;
    J.o = o;
    run_job(&J);
}

void convw_conv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                        const film_stage *st, real *o, real *work) {
    forward(g, false, x, k, b, y, st, o, work);
}

void convw_deconv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                          const film_stage *st, real *o, real *work) {
    forward(g, true, x, k, b, y, st, o, work);
}

/* a gradient side with the block stage's backward folded into its packing */
static void stage_side(side *sd, const film_stage *st, const real *z, real *dscale, real *dshift) {
    sd->st = st;
    sd->z = z;
    sd->dscale = dscale;
    sd->dshift = dshift;
}

/* the input gradient of a conv is B of dy with the turned kernels; a
 * deconv's, A; the kernel gradient is C either way, with the sides swapped */
static void backward(const conv_geom *g, bool deconv, const real *x, const real *k, const real *dy,
                     real *dx, real *dk, real *db, const film_stage *st, const real *z,
                     real *dscale, real *dshift, real *work) {
    job J = make_job(g, deconv ? OP_BWD_DECONV : OP_BWD_CONV, work);
    if (dx) set_weights(&J, k, !deconv);
    side *in = deconv ? &J.ys : &J.xs, *grad = deconv ? &J.xs : &J.ys;
    in->t = x;
    grad->t = dy;
    stage_side(grad, st, z, dscale, dshift);
    J.dx = dx;
    J.sums = yt_calloc((size_t)J.G.threads * J.G.cmax, sizeof *J.sums);
    run_job(&J);
    finish_backward(&J, dk, db, deconv ? g->cin : g->cout);
    free(J.sums);
}

void convw_conv_backward(const conv_geom *g, const real *x, const real *k, const real *dy, real *dx,
                         real *dk, real *db, const film_stage *st, const real *z, real *dscale,
                         real *dshift, real *work) {
    backward(g, false, x, k, dy, dx, dk, db, st, z, dscale, dshift, work);
}

void convw_deconv_backward(const conv_geom *g, const real *x, const real *k, const real *dy,
                           real *dx, real *dk, real *db, const film_stage *st, const real *z,
                           real *dscale, real *dshift, real *work) {
    backward(g, true, x, k, dy, dx, dk, db, st, z, dscale, dshift, work);
}
