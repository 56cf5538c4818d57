/* convk.c — direct 3x3 convolutions on grids of a chunk of samples (convk.h).
 *
 * Notation of layers.h: a conv g maps the X side [cin][n][h][w] to the Y side
 * [cout][n][ho][wo]. Three computations cover the four layer functions:
 *   A  Y = conv(X) (+ bias)         conv forward; deconv backward's dx
 *   B  X = conv^T(Y) (+ bias)       deconv forward; conv backward's dx
 *   C  dK += corr(Y, X)             both backwards' kernel gradients
 * A chunk of samples is copied into grids (convk.h): X as s*s parity planes
 * of its padded image, Y with zero rows and columns around it. Grids of both
 * sides share the row pitch wq and the sample pitch qs, so a flat position q
 * names the same (sample, row, column) everywhere, and a tap is an offset.
 */
#include "convk.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "par.h"
#include "simd.h"

/* bytes of grids per chunk of samples. 4 MiB (L3, not L2): fewer chunks,
 * fewer per-chunk passes (padding, sums, weight set-up); measured against
 * 384 KiB (an L2): step time -5 % on Shapes3D, -6 % on CIFAR-10, peak RSS
 * unchanged (the im2col route's 8 MB column buffer is the larger workspace) */
#define CHUNK_BYTES (4 * 1024 * 1024)
/* the kernels write up to V*VL (V <= 8) positions past the end of a grid */
#define MAX_OVERRUN (8 * VL)
/* positions per pass of the kernel-gradient kernel: its rows stay in L1
 * while it goes through the 9 taps */
#define GRAD_QBLOCK 512

typedef struct {
    int s, np;          /* stride; X planes per channel (s*s parities) */
    int wq, rows;       /* row pitch; rows per sample */
    size_t qs;          /* reals per sample: rows * wq */
    size_t head, pitch; /* one plane: head zeros, the samples, zero tail */
} layout;

/* stride 1: the image with one row/column of padding on each side (SAME);
 * stride 2: parity planes of ho+1 rows and wo+1 columns (the last row and
 * column are what taps kh = 2, kw = 2 read). Y grids use the same pitches,
 * their extra rows and columns zero. */
static layout make_layout(const conv_geom *g, int samples) {
    layout L;
    L.s = g->stride;
    L.np = L.s * L.s;
    L.wq = L.s == 1 ? g->w + 2 : g->wo + 1;
    L.rows = L.s == 1 ? g->h + 2 : g->ho + 1;
    L.qs = (size_t)L.rows * L.wq;
    /* B reads a row and a column before and after each Y position */
    L.head = round_up((size_t)L.wq + 1, VL);
    size_t tail = round_up(2 * (size_t)L.wq + 2 + MAX_OVERRUN + VL, VL);
    L.pitch = L.head + round_up((size_t)samples * L.qs, VL) + tail;
    return L;
}

bool convk_supports(const conv_geom *g) {
    if (g->stride == 1)
        return g->ho == g->h && g->wo == g->w && g->pad_top == 1 && g->pad_left == 1;
    return g->stride == 2 && g->pad_top <= 1 && g->pad_left <= 1;
}

/* grids per sample, in planes: X planes, Y grid, and the larger output */
static size_t planes_per_sample(const conv_geom *g) {
    size_t np = (size_t)g->stride * g->stride;
    size_t px = (size_t)g->cin * np, gy = (size_t)g->cout;
    return px + gy + YT_MAX(px, gy);
}

int convk_chunk(const conv_geom *g) {
    layout L = make_layout(g, 1);
    size_t per = planes_per_sample(g) * L.qs * sizeof(real);
    return (int)YT_MAX((size_t)1, YT_MIN((size_t)g->n, CHUNK_BYTES / per));
}

/* threads that split the samples (each has its part of the workspace) */
static int convk_threads(const conv_geom *g) {
    return YT_MAX(1, YT_MIN(g->threads, g->n));
}

/* one thread's part: the kernel gradient's vector accumulators, the grids,
 * a row of scratch (a multiple of VL reals) */
static size_t part_size(const conv_geom *g, const layout *L) {
    size_t nk = (size_t)g->cin * g->cout * 9;
    return nk * VL + planes_per_sample(g) * L->pitch + round_up((size_t)g->w, VL);
}

size_t convk_work_size(const conv_geom *g) {
    layout L = make_layout(g, convk_chunk(g));
    size_t nk = (size_t)g->cin * g->cout * 9;
    return VL /* alignment */ + round_up(nk, VL) /* packed weights */ +
           (size_t)convk_threads(g) * part_size(g, &L);
}

/* ---- packing ------------------------------------------------------------------- */

/* ev[c] = src[2c], od[c] = src[2c + 1] for c < n */
YT_INLINE void deinterleave(const real *restrict src, int n, real *restrict ev, real *restrict od) {
    int c = 0;
    for (; c + VL <= n; c += VL) {
        rvec a = vload(src + 2 * c), b = vload(src + 2 * c + VL);
        vstore(ev + c, __builtin_shuffle(a, b, RVEC_EVEN));
        vstore(od + c, __builtin_shuffle(a, b, RVEC_ODD));
    }
    for (; c < n; c++) {
        ev[c] = src[2 * c];
        od[c] = src[2 * c + 1];
    }
}

/* dst[2c] = ev[c], dst[2c + 1] = od[c] for c < n */
YT_INLINE void interleave(const real *restrict ev, const real *restrict od, int n,
                          real *restrict dst) {
    int c = 0;
    for (; c + VL <= n; c += VL) {
        rvec e = vload(ev + c), o = vload(od + c);
        vstore(dst + 2 * c, __builtin_shuffle(e, o, RVEC_ZIP_LO));
        vstore(dst + 2 * c + VL, __builtin_shuffle(e, o, RVEC_ZIP_HI));
    }
    for (; c < n; c++) {
        dst[2 * c] = ev[c];
        dst[2 * c + 1] = od[c];
    }
}

/* the zeros around an image row in its stride-1 plane row (pack_row) */
YT_INLINE void pad_row1(const conv_geom *g, const layout *L, real *d0) {
    d0[0] = 0; /* pad_left is 1 */
    zero_row(d0 + g->w + 1, (size_t)(L->wq - g->w - 1));
}

/* the zeros around an image row in its two stride-2 plane rows (pack_row) */
YT_INLINE void pad_row2(const conv_geom *g, const layout *L, real *d0, real *d1) {
    const int w = g->w, wq = L->wq, half = w / 2, nev = (w + 1) / 2;
    if (g->pad_left) {
        d0[0] = 0;
        zero_row(d0 + 1 + half, (size_t)(wq - 1 - half));
        zero_row(d1 + nev, (size_t)(wq - nev));
    } else {
        zero_row(d0 + nev, (size_t)(wq - nev));
        zero_row(d1 + half, (size_t)(wq - half));
    }
}

/* One image row into its plane rows (stride 1: one, stride 2: the two column
 * parities): plane column c holds row[c*s + b - pad_left], zero outside. */
YT_INLINE void pack_row(const conv_geom *g, const layout *L, const real *row, real *d0, real *d1) {
    const int w = g->w;
    if (L->s == 1) {
        copy_row(d0 + 1, row, w);
        pad_row1(g, L, d0);
        return;
    }
    /* columns 2c (even) and 2c + 1 (odd) of the image */
    const int half = w / 2;
    real *ev = g->pad_left ? d1 : d0, *od = g->pad_left ? d0 + 1 : d1;
    deinterleave(row, half, ev, od);
    if (w & 1) ev[half] = row[w - 1];
    pad_row2(g, L, d0, d1);
}

/* ---- the block output stage (layers.h film_stage) ----------------------------- */

/* What a staged layer writes besides its output z (forward), or reads
 * besides the incoming gradient (backward); st NULL: no stage. */
typedef struct {
    const film_stage *st;
    real *o;               /* forward: the stage's output, laid out as z */
    const real *z;         /* backward: the forward's z */
    real *dscale, *dshift; /* backward: [n][c] */
} stage_io;

/* ---- packing and unpacking ---------------------------------------------------------- */

/* pack_row at stride 2 through a stage, for rows of a multiple of 2 VL
 * values: its forward (z NULL), or its backward on the incoming gradient's
 * row with z's (sums into *ds, *dt), a pair of vectors at a time, split into
 * the column parities straight from registers. The same bits as
 * stage_fwd_row or stage_bwd_row into a scratch row, then pack_row (the
 * vectors in the same order, no scalar tail). */
YT_INLINE void pack_row2_staged(const conv_geom *g, const layout *L, const film_stage *st, real a,
                                real t, const real *row, const real *z, real *d0, real *d1,
                                double *ds, double *dt) {
    const int half = g->w / 2;
    real *ev = g->pad_left ? d1 : d0, *od = g->pad_left ? d0 + 1 : d1;
    rvec sv = {0}, tv = {0};
    for (int c = 0; c < half; c += VL) {
        rvec v0 = vload(row + 2 * c), v1 = vload(row + 2 * c + VL);
        if (z) {
            v0 = stage_bwd_vec(st, a, t, v0, vload(z + 2 * c), &sv, &tv);
            v1 = stage_bwd_vec(st, a, t, v1, vload(z + 2 * c + VL), &sv, &tv);
        } else {
            v0 = stage_fwd_vec(st, a, t, v0);
            v1 = stage_fwd_vec(st, a, t, v1);
        }
        vstore(ev + c, __builtin_shuffle(v0, v1, RVEC_EVEN));
        vstore(od + c, __builtin_shuffle(v0, v1, RVEC_ODD));
    }
    if (z) {
        *ds += vhsum(sv);
        *dt += vhsum(tv);
    }
    pad_row2(g, L, d0, d1);
}

/* One image row into its plane rows through the rows' stage (pack_x): at
 * stride 1 the stage writes the plane row itself; at stride 2
 * pack_row2_staged where the width allows, else the stage into tmp and
 * pack_row. Without a stage, pack_row. */
YT_INLINE void pack_row_staged(const int s, const conv_geom *g, const layout *L,
                               const film_stage *st, const film_stage *xst, real a, real t,
                               const real *row, const real *z, real *d0, real *d1, real *tmp,
                               double *ds, double *dt) {
    const int w = g->w;
    if (!st && !xst) {
        pack_row(g, L, row, d0, d1);
    } else if (s == 1) {
        if (st)
            stage_bwd_row(st, a, t, row, z, d0 + 1, w, ds, dt);
        else
            stage_fwd_row(xst, a, t, row, d0 + 1, w);
        pad_row1(g, L, d0);
    } else if (w % (2 * VL) == 0) {
        pack_row2_staged(g, L, st ? st : xst, a, t, row, st ? z : NULL, d0, d1, ds, dt);
    } else {
        if (st)
            stage_bwd_row(st, a, t, row, z, tmp, w, ds, dt);
        else
            stage_fwd_row(xst, a, t, row, tmp, w);
        pack_row(g, L, tmp, d0, d1);
    }
}

/* X planes of samples n0..n0+ns of x [cin][n][h][w]: plane (a, b) of channel
 * ci, row r, column c holds x[ci][r*s + a - pad_top][c*s + b - pad_left], zero
 * outside the image. sums[ci] += the sum of channel ci (NULL: not wanted).
 * With a stage, x is the gradient w.r.t. its output and the planes get the
 * gradient w.r.t. its input (tmp: a row of scratch); a sample's planes then
 * hold a g for the stage's scale a, and their sum is a times the shift's
 * gradient sum g, no pass of its own. With xst (conv_geom's
 * xstage), x is z of the block before and the planes get xst's output. */
YT_INLINE void pack_x_s(const int s, const conv_geom *g, const layout *L, const real *x, int n0,
                        int ns, real *px, double *sums, const stage_io *sio, const film_stage *xst,
                        real *tmp) {
    const int wq = L->wq, C = g->cin;
    const size_t hw = (size_t)g->h * g->w, used = (size_t)ns * L->qs;
    const film_stage *st = sio ? sio->st : NULL;
    YT_CHECK(!(st && xst));
    for (int ci = 0; ci < C; ci++) {
        real *ch = px + (size_t)ci * L->np * L->pitch;
        for (int p = 0; p < L->np; p++) {
            zero_row(ch + (size_t)p * L->pitch, L->head);
            zero_row(ch + (size_t)p * L->pitch + L->head + used, L->pitch - L->head - used);
        }
        double bsum = 0; /* with a stage: the channel's sum, from the shift's */
        for (int i = 0; i < ns; i++) {
            const size_t at = ((size_t)ci * g->n + n0 + i) * hw;
            const size_t si = (size_t)(n0 + i) * C + ci; /* [n][c] */
            const film_stage *rs = st ? st : xst;        /* the rows' stage */
            const real a = rs ? rs->scale[si] : 0, t = rs ? rs->shift[si] : 0;
            double ds = 0, dt = 0;
            real *base = ch + L->head + (size_t)i * L->qs;
            /* plane rows that hold padding rather than image rows */
            for (int pa = 0; pa < s; pa++)
                for (int r = 0; r < L->rows; r++) {
                    const int ir = r * s + pa - g->pad_top;
                    if (ir >= 0 && ir < g->h) continue;
                    for (int b = 0; b < s; b++)
                        zero_row(base + (size_t)(pa * s + b) * L->pitch + (size_t)r * wq,
                                 (size_t)wq);
                }
            /* image rows in order (sequential reads): row ir is row r of
             * parity pa, plane (pa, b) at (pa*s + b) * pitch */
            for (int ir = 0; ir < g->h; ir++) {
                const int pa = (ir + g->pad_top) % s, r = (ir + g->pad_top) / s;
                real *d0 = base + (size_t)(pa * s) * L->pitch + (size_t)r * wq;
                real *d1 = s == 2 ? d0 + L->pitch : NULL;
                const size_t ro = at + (size_t)ir * g->w;
                pack_row_staged(s, g, L, st, xst, a, t, x + ro, st ? sio->z + ro : NULL, d0, d1,
                                tmp, &ds, &dt);
            }
            if (st) {
                sio->dscale[si] = (real)ds;
                sio->dshift[si] = (real)dt;
                bsum += (double)a * dt; /* the planes hold a * g: their sum is a * sum(g) */
            }
        }
        if (sums && st)
            sums[ci] += bsum;
        else if (sums)
            for (int p = 0; p < L->np; p++)
                sums[ci] += vsum_double(ch + (size_t)p * L->pitch + L->head, used);
    }
}

/* pack_x_s with the stride a constant (no division per row) */
YT_SIMD_CLONES
static void pack_x(const conv_geom *g, const layout *L, const real *x, int n0, int ns, real *px,
                   double *sums, const stage_io *sio, const film_stage *xst, real *tmp) {
    if (L->s == 1)
        pack_x_s(1, g, L, x, n0, ns, px, sums, sio, xst, tmp);
    else
        pack_x_s(2, g, L, x, n0, ns, px, sums, sio, xst, tmp);
}

/* Y grid of samples n0..n0+ns of y [c][n][ho][wo]: row r < ho, column c < wo
 * of sample i at i*qs + r*wq + c, everything else zero. sums, the stage and
 * xst as pack_x. */
YT_SIMD_CLONES
static void pack_y(const layout *L, int nch, int n, int ho, int wo, const real *y, int n0, int ns,
                   real *gy, double *sums, const stage_io *sio, const film_stage *xst) {
    const size_t ohw = (size_t)ho * wo, used = (size_t)ns * L->qs;
    const film_stage *st = sio ? sio->st : NULL;
    YT_CHECK(!(st && xst));
    for (int c = 0; c < nch; c++) {
        real *plane = gy + (size_t)c * L->pitch;
        zero_row(plane, L->head);
        real *d0 = plane + L->head;
        double bsum = 0; /* with a stage: the channel's sum, from the shift's (pack_x) */
        for (int i = 0; i < ns; i++) {
            const size_t at = ((size_t)c * n + n0 + i) * ohw;
            const size_t si = (size_t)(n0 + i) * nch + c;
            const film_stage *rs = st ? st : xst; /* the rows' stage */
            const real a = rs ? rs->scale[si] : 0, t = rs ? rs->shift[si] : 0;
            double ds = 0, dt = 0;
            real *d = d0 + (size_t)i * L->qs;
            for (int r = 0; r < ho; r++, d += L->wq) {
                const size_t ro = at + (size_t)r * wo;
                if (st)
                    stage_bwd_row(st, a, t, y + ro, sio->z + ro, d, wo, &ds, &dt);
                else if (xst)
                    stage_fwd_row(xst, a, t, y + ro, d, wo);
                else
                    copy_row(d, y + ro, wo);
                zero_row(d + wo, (size_t)(L->wq - wo));
            }
            zero_row(d, L->qs - (size_t)ho * L->wq);
            if (st) {
                sio->dscale[si] = (real)ds;
                sio->dshift[si] = (real)dt;
                bsum += (double)a * dt;
            }
        }
        zero_row(d0 + used, L->pitch - L->head - used);
        if (sums) sums[c] += st ? bsum : vsum_double(d0, used);
    }
}

/* y [c][n][ho][wo] samples n0..n0+ns from a grid laid out as pack_y's; with
 * a stage, also its outputs from y (where sio->o is not NULL) */
YT_SIMD_CLONES
static void unpack_y(const layout *L, int nch, int n, int ho, int wo, const real *gy, int n0,
                     int ns, real *y, const stage_io *sio) {
    const size_t ohw = (size_t)ho * wo;
    const film_stage *st = sio ? sio->st : NULL;
    for (int c = 0; c < nch; c++) {
        const real *s0 = gy + (size_t)c * L->pitch + L->head;
        for (int i = 0; i < ns; i++) {
            const size_t at = ((size_t)c * n + n0 + i) * ohw;
            const size_t si = (size_t)(n0 + i) * nch + c;
            const real *src = s0 + (size_t)i * L->qs;
            for (int r = 0; r < ho; r++, src += L->wq) {
                const size_t ro = at + (size_t)r * wo;
                copy_row(y + ro, src, wo);
                if (st && sio->o)
                    stage_fwd_row(st, st->scale[si], st->shift[si], y + ro, sio->o + ro, wo);
            }
        }
    }
}

/* x [cin][n][h][w] samples n0..n0+ns from the outputs of B: stride 1, one
 * grid per channel (row ih at ih*wq); stride 2, the 4 output parities of a
 * channel as its planes ((a, b) holds x[2r + a][2c + b] at r*wq + c). With a
 * stage, also its outputs (where sio->o is not NULL). */
YT_SIMD_CLONES
static void unpack_x(const conv_geom *g, const layout *L, const real *out, int n0, int ns, real *x,
                     const stage_io *sio) {
    const size_t hw = (size_t)g->h * g->w;
    const int w = g->w, half = w / 2, C = g->cin;
    const film_stage *st = sio ? sio->st : NULL;
    for (int ci = 0; ci < C; ci++) {
        const real *ch = out + (size_t)ci * L->np * L->pitch + L->head;
        for (int i = 0; i < ns; i++) {
            const size_t at = ((size_t)ci * g->n + n0 + i) * hw;
            const size_t si = (size_t)(n0 + i) * C + ci;
            for (int ih = 0; ih < g->h; ih++) {
                const size_t ro = at + (size_t)ih * w;
                real *dst = x + ro;
                if (L->s == 1) {
                    copy_row(dst, ch + (size_t)i * L->qs + (size_t)ih * L->wq, w);
                } else {
                    const int a = ih & 1;
                    const size_t q = (size_t)i * L->qs + (size_t)(ih >> 1) * L->wq;
                    const real *e = ch + (size_t)(2 * a) * L->pitch + q;
                    const real *o = ch + (size_t)(2 * a + 1) * L->pitch + q;
                    interleave(e, o, half, dst);
                    if (w & 1) dst[w - 1] = e[half];
                }
                if (st && sio->o)
                    stage_fwd_row(st, st->scale[si], st->shift[si], dst, sio->o + ro, w);
            }
        }
    }
}

/* ---- taps ------------------------------------------------------------------------ */

typedef struct {
    int n;
    int tap[9];       /* kh * 3 + kw */
    ptrdiff_t off[9]; /* offset of the tap's input from the output position */
} tapset;

/* A: output (oh, ow) reads X plane (kh%s, kw%s) at (oh + kh/s, ow + kw/s) */
static tapset taps_a(const layout *L) {
    tapset t = {.n = 9};
    for (int kh = 0; kh < 3; kh++)
        for (int kw = 0; kw < 3; kw++) {
            int p = (kh % L->s) * L->s + kw % L->s;
            t.tap[kh * 3 + kw] = kh * 3 + kw;
            t.off[kh * 3 + kw] =
                (ptrdiff_t)p * (ptrdiff_t)L->pitch + (kh / L->s) * L->wq + kw / L->s;
        }
    return t;
}

/* B: X[ih][iw] collects K[kh][kw] Y[oh][ow] over ih = oh*s + kh - pad_top
 * (columns alike). Stride 1: one output grid, Y[ih + 1 - kh][iw + 1 - kw].
 * Stride 2: output parity (a, b), ih = 2r + a, takes the kh of the parity of
 * a + pad_top, oh = r + (a + pad_top - kh) / 2. Returns the parity count. */
static int taps_b(const conv_geom *g, const layout *L, tapset ts[4]) {
    if (L->s == 1) {
        ts[0].n = 0;
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                ts[0].tap[ts[0].n] = kh * 3 + kw;
                ts[0].off[ts[0].n++] = (ptrdiff_t)(1 - kh) * L->wq + (1 - kw);
            }
        return 1;
    }
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            tapset *t = &ts[a * 2 + b];
            t->n = 0;
            for (int kh = 0; kh < 3; kh++) {
                if ((a + g->pad_top - kh) % 2) continue;
                for (int kw = 0; kw < 3; kw++) {
                    if ((b + g->pad_left - kw) % 2) continue;
                    int dr = (a + g->pad_top - kh) / 2, dc = (b + g->pad_left - kw) / 2;
                    t->tap[t->n] = kh * 3 + kw;
                    t->off[t->n++] = (ptrdiff_t)dr * L->wq + dc;
                }
            }
        }
    return 4;
}

/* Output channels are done in blocks of up to 4 (register tiles); a count
 * divisible by 3 but not by 4 goes in threes. Size of the block at o0: */
static int block_at(int n, int o0) {
    if (n % 4 != 0 && n % 3 == 0) return 3;
    return YT_MIN(4, n - o0);
}

/* Weights of `nout` outputs from `nin` inputs for the taps of ts, as the
 * forward kernel reads them: per output block of cb, [nin][ts->n][cb].
 * k_out_major: weight (o, i, tap) is k[o][i][tap] (A), else k[i][o][tap] (B). */
static real *pack_weights(int nout, int nin, const tapset *ts, const real *k, bool k_out_major,
                          real *dst) {
    for (int o0 = 0; o0 < nout;) {
        int cb = block_at(nout, o0);
        for (int i = 0; i < nin; i++)
            for (int t = 0; t < ts->n; t++)
                for (int c = 0; c < cb; c++) {
                    int o = o0 + c;
                    size_t at =
                        k_out_major ? ((size_t)o * nin + i) * 9 : ((size_t)i * nout + o) * 9;
                    *dst++ = k[at + ts->tap[t]];
                }
        o0 += cb;
    }
    return dst;
}

/* ---- kernels ------------------------------------------------------------------------ */

/* out[c][q] = bias[c] + sum_i sum_t w[i][t][c] in[i][q + off[t]], c < CB, for
 * q in [0, Q) rounded up to V*VL: CB x V vector accumulators in registers. */
YT_INLINE void fwd_tile(const int CB, const int V, int nin, int ntaps, const ptrdiff_t *off,
                        const real *w, const real *bias, const real *in, size_t in_cs, real *out,
                        size_t out_cs, size_t Q) {
    for (size_t q = 0; q < Q; q += (size_t)V * VL) {
        rvec acc[4][8];
#pragma GCC unroll 8
        for (int c = 0; c < CB; c++)
#pragma GCC unroll 8
            for (int v = 0; v < V; v++)
                acc[c][v] = (rvec){0} + (bias ? bias[c] : 0);
        const real *wp = w;
        for (int i = 0; i < nin; i++) {
            const real *ip = in + (size_t)i * in_cs + q;
#pragma GCC unroll 9
            for (int t = 0; t < ntaps; t++, wp += CB) {
                /* 16 vector registers: keep the smaller of the CB weights
                 * and the V inputs live, loop over the other */
                if (CB < V) { /* x * scalar: one vbroadcastss per weight, hoisted */
#pragma GCC unroll 8
                    for (int v = 0; v < V; v++) {
                        const rvec xv = vload(ip + off[t] + v * VL);
#pragma GCC unroll 8
                        for (int c = 0; c < CB; c++)
                            acc[c][v] += xv * wp[c];
                    }
                } else {
                    rvec xv[8];
#pragma GCC unroll 8
                    for (int v = 0; v < V; v++)
                        xv[v] = vload(ip + off[t] + v * VL);
#pragma GCC unroll 8
                    for (int c = 0; c < CB; c++) {
                        const real wc = wp[c];
#pragma GCC unroll 8
                        for (int v = 0; v < V; v++)
                            acc[c][v] += xv[v] * wc;
                    }
                }
            }
        }
#pragma GCC unroll 8
        for (int c = 0; c < CB; c++)
#pragma GCC unroll 8
            for (int v = 0; v < V; v++)
                vstore(out + (size_t)c * out_cs + q + v * VL, acc[c][v]);
    }
}

typedef void (*fwd_fn)(int nin, int ntaps, const ptrdiff_t *off, const real *w, const real *bias,
                       const real *in, size_t in_cs, real *out, size_t out_cs, size_t Q);
/* Per tile shape, a kernel for each tap count that occurs: 9 (3x3 forward,
 * stride-1 transposed), 4, 2, 1 (the parities of the stride-2 transposed
 * conv), and any. A constant count unrolls the tap loop with its offsets in
 * registers: 26 instructions per 12 FMAs become 19, 61 -> 90 GFLOP/s. */
#define FWD_KERNEL(CB, V, NT)                                                                      \
    YT_SIMD_CLONES static void fwd_##CB##_##NT(int nin, int ntaps, const ptrdiff_t *off,           \
                                               const real *w, const real *bias, const real *in,    \
                                               size_t in_cs, real *out, size_t out_cs, size_t Q) { \
        fwd_tile(CB, V, nin, NT ? NT : ntaps, off, w, bias, in, in_cs, out, out_cs, Q);            \
    }
#define FWD_KERNELS(CB, V)                                                                         \
    FWD_KERNEL(CB, V, 0)                                                                           \
    FWD_KERNEL(CB, V, 1) FWD_KERNEL(CB, V, 2) FWD_KERNEL(CB, V, 4) FWD_KERNEL(CB, V, 9)
FWD_KERNELS(1, 8)
FWD_KERNELS(2, 6)
FWD_KERNELS(3, 4)
FWD_KERNELS(4, 3)
#define FWD_ROW(CB)                                                                                \
    { fwd_##CB##_0, fwd_##CB##_1, fwd_##CB##_2, fwd_##CB##_4, fwd_##CB##_9 }
static const fwd_fn fwd_kernels[5][5] = {{NULL}, FWD_ROW(1), FWD_ROW(2), FWD_ROW(3), FWD_ROW(4)};

/* the kernel for cb outputs and ntaps taps */
static fwd_fn fwd_kernel(int cb, int ntaps) {
    int k = ntaps == 1 ? 1 : ntaps == 2 ? 2 : ntaps == 4 ? 3 : ntaps == 9 ? 4 : 0;
    return fwd_kernels[cb][k];
}

/* all output blocks of one tap set; w as pack_weights wrote it */
static void run_fwd(int nout, int nin, const tapset *ts, const real *w, const real *bias,
                    const real *in, size_t in_cs, real *out, size_t out_cs, size_t Q) {
    for (int o0 = 0; o0 < nout;) {
        int cb = block_at(nout, o0);
        fwd_kernel(cb, ts->n)(nin, ts->n, ts->off, w, bias ? bias + o0 : NULL, in, in_cs,
                              out + (size_t)o0 * out_cs, out_cs, Q);
        w += (size_t)nin * ts->n * cb;
        o0 += cb;
    }
}

/* acc[c][i][t] += lanes of sum_q gy[c][q] px[i][q + off[t]] over q in [0, Q)
 * (a multiple of VL), c < CB, i < IB: CB x IB register accumulators per tap,
 * kept as vectors between calls (acc: rvecs, [c][i] at c*acc_cs + i*astr + t). */
YT_INLINE void grad_tile(const int CB, const int IB, const tapset *ts, const real *gy, size_t gy_cs,
                         const real *px, size_t px_cs, size_t Q, rvec *accv, size_t acc_cs,
                         size_t astr) {
    for (int t = 0; t < ts->n; t++) {
        rvec acc[4][4];
#pragma GCC unroll 8
        for (int c = 0; c < CB; c++)
#pragma GCC unroll 8
            for (int i = 0; i < IB; i++)
                acc[c][i] = accv[(size_t)c * acc_cs + (size_t)i * astr + t];
        const real *xp = px + ts->off[t];
        for (size_t q = 0; q < Q; q += VL) {
            /* 16 vector registers: CB*IB accumulators, the smaller operand
             * set held, the other streamed one vector at a time */
            if (IB <= CB) {
                rvec xv[4];
#pragma GCC unroll 8
                for (int i = 0; i < IB; i++)
                    xv[i] = vload(xp + (size_t)i * px_cs + q);
#pragma GCC unroll 8
                for (int c = 0; c < CB; c++) {
                    const rvec yc = vload(gy + (size_t)c * gy_cs + q);
#pragma GCC unroll 8
                    for (int i = 0; i < IB; i++)
                        acc[c][i] += yc * xv[i];
                }
            } else {
                rvec yv[4];
#pragma GCC unroll 8
                for (int c = 0; c < CB; c++)
                    yv[c] = vload(gy + (size_t)c * gy_cs + q);
#pragma GCC unroll 8
                for (int i = 0; i < IB; i++) {
                    const rvec xi = vload(xp + (size_t)i * px_cs + q);
#pragma GCC unroll 8
                    for (int c = 0; c < CB; c++)
                        acc[c][i] += yv[c] * xi;
                }
            }
        }
#pragma GCC unroll 8
        for (int c = 0; c < CB; c++)
#pragma GCC unroll 8
            for (int i = 0; i < IB; i++)
                accv[(size_t)c * acc_cs + (size_t)i * astr + t] = acc[c][i];
    }
}

typedef void (*grad_fn)(const tapset *ts, const real *gy, size_t gy_cs, const real *px,
                        size_t px_cs, size_t Q, rvec *accv, size_t acc_cs, size_t astr);
#define GRAD_INSTANCE(CB, IB)                                                                      \
    YT_SIMD_CLONES static void grad_##CB##_##IB(const tapset *ts, const real *gy, size_t gy_cs,    \
                                                const real *px, size_t px_cs, size_t Q,            \
                                                rvec *accv, size_t acc_cs, size_t astr) {          \
        grad_tile(CB, IB, ts, gy, gy_cs, px, px_cs, Q, accv, acc_cs, astr);                        \
    }
// clang-format off
GRAD_INSTANCE(1, 1) GRAD_INSTANCE(1, 2) GRAD_INSTANCE(1, 3) GRAD_INSTANCE(1, 4)
GRAD_INSTANCE(2, 1) GRAD_INSTANCE(2, 2) GRAD_INSTANCE(2, 3) GRAD_INSTANCE(2, 4)
GRAD_INSTANCE(3, 1) GRAD_INSTANCE(3, 2) GRAD_INSTANCE(3, 3) GRAD_INSTANCE(3, 4)
GRAD_INSTANCE(4, 1) GRAD_INSTANCE(4, 2) GRAD_INSTANCE(4, 3) GRAD_INSTANCE(4, 4)
static const grad_fn grad_kernels[4][4] = {
    {grad_1_1, grad_1_2, grad_1_3, grad_1_4},
    {grad_2_1, grad_2_2, grad_2_3, grad_2_4},
    {grad_3_1, grad_3_2, grad_3_3, grad_3_4},
    {grad_4_1, grad_4_2, grad_4_3, grad_4_4},
};
// clang-format on

/* C for one chunk: accv [ny][nx][astr] (rvecs) += the correlation of the Y
 * grid (ny channels) with the X planes (nx channels) over Q positions, in
 * L1-sized blocks of positions. */
static void run_grad(int ny, int nx, const tapset *ts, const real *gy, size_t gy_cs, const real *px,
                     size_t px_cs, size_t Q, rvec *accv, size_t astr) {
    for (size_t q0 = 0; q0 < Q; q0 += GRAD_QBLOCK) {
        size_t qn = YT_MIN((size_t)GRAD_QBLOCK, Q - q0);
        for (int c0 = 0; c0 < ny;) {
            int cb = block_at(ny, c0);
            int ib_max = cb == 4 ? 3 : 4; /* at most 12 accumulators */
            for (int i0 = 0; i0 < nx;) {
                int ib = YT_MIN(ib_max, nx - i0);
                grad_kernels[cb - 1][ib - 1](
                    ts, gy + (size_t)c0 * gy_cs + q0, gy_cs, px + (size_t)i0 * px_cs + q0, px_cs,
                    qn, accv + ((size_t)c0 * nx + i0) * astr, (size_t)nx * astr, astr);
                i0 += ib;
            }
            c0 += cb;
        }
    }
}

/* ---- the register-blocked kernels as small GEMMs (convk.h) ------------------------- */

static const tapset tap1 = {.n = 1, .tap = {0}, .off = {0}};

real *convk_gemm_pack(int nout, int nin, const real *u, size_t uo, size_t ui, real *dst) {
    for (int o0 = 0; o0 < nout;) {
        int cb = block_at(nout, o0);
        for (int i = 0; i < nin; i++)
            for (int c = 0; c < cb; c++)
                *dst++ = u[(size_t)(o0 + c) * uo + (size_t)i * ui];
        o0 += cb;
    }
    return dst;
}

void convk_gemm(int nout, int nin, const real *w, const real *in, size_t in_cs, real *out,
                size_t out_cs, size_t Q) {
    run_fwd(nout, nin, &tap1, w, NULL, in, in_cs, out, out_cs, Q);
}

void convk_gemm_grad(int ny, int nx, const real *gy, size_t gy_cs, const real *px, size_t px_cs,
                     size_t Q, rvec *acc, size_t astr) {
    run_grad(ny, nx, &tap1, gy, gy_cs, px, px_cs, Q, acc, astr);
}

/* ---- the layer operations ------------------------------------------------------------- */

/* The workspace: packed weights (shared), then one part per thread: the
 * kernel gradient's accumulators, X planes, Y grid, outputs, a row of
 * scratch. */
typedef struct {
    layout L;
    int chunk;
    rvec *acc;
    real *w, *px, *gy, *out, *row;
} workspace;

static workspace carve(const conv_geom *g, real *work, int t) {
    workspace ws;
    ws.chunk = convk_chunk(g);
    ws.L = make_layout(g, ws.chunk);
    const size_t np = (size_t)ws.L.np, P = ws.L.pitch, nk = (size_t)g->cin * g->cout * 9;
    /* rvecs are aligned to their size */
    uintptr_t a = ((uintptr_t)work + SIMD_BYTES - 1) / SIMD_BYTES * SIMD_BYTES;
    ws.w = (real *)a;
    real *part = ws.w + round_up(nk, VL) + (size_t)t * part_size(g, &ws.L);
    ws.acc = (rvec *)part;
    ws.px = part + nk * VL;
    ws.gy = ws.px + (size_t)g->cin * np * P;
    ws.out = ws.gy + (size_t)g->cout * P;
    ws.row = ws.out + YT_MAX((size_t)g->cin * np, (size_t)g->cout) * P;
    return ws;
}

/* B for one chunk: the X side (all parities) from the Y grid into ws->out */
static void adjoint_chunk(const conv_geom *g, const workspace *ws, int nph, const tapset *tb,
                          const real *b, int ns) {
    const layout *L = &ws->L;
    const real *w = ws->w;
    for (int p = 0; p < nph; p++) {
        run_fwd(g->cin, g->cout, &tb[p], w, b, ws->gy + L->head, L->pitch,
                ws->out + (size_t)p * L->pitch + L->head, (size_t)L->np * L->pitch,
                (size_t)ns * L->qs);
        w += (size_t)g->cin * g->cout * tb[p].n;
    }
}

static void pack_weights_b(const conv_geom *g, int nph, const tapset *tb, const real *k, real *w) {
    for (int p = 0; p < nph; p++)
        w = pack_weights(g->cin, g->cout, &tb[p], k, false, w);
}

enum { OP_CONV_FWD, OP_CONV_BWD, OP_DECONV_FWD, OP_DECONV_BWD };

/* One layer call, as every thread sees it. `in` is the layer's input (x),
 * `grad` the gradient w.r.t. its output (backward), `out` its output
 * (forward) or input gradient (backward, may be NULL). */
typedef struct {
    const conv_geom *g;
    int op, threads;
    const real *in, *grad, *bias;
    real *out;
    const stage_io *sio; /* NULL: no stage */
    tapset ta, tb[4];
    int nph;
    real *work;
    double *sums; /* backward: [threads][channels] bias gradient sums */
    int nsum;
} kcall;

/* one chunk of samples n0..n0+ns of a call */
static void run_chunk(const kcall *c, const workspace *ws, int n0, int ns, double *sums) {
    const conv_geom *g = c->g;
    const layout *L = &ws->L;
    const size_t xcs = (size_t)L->np * L->pitch, Q = (size_t)ns * L->qs;
    switch (c->op) {
    case OP_CONV_FWD:
        pack_x(g, L, c->in, n0, ns, ws->px, NULL, NULL, g->xstage, ws->row);
        run_fwd(g->cout, g->cin, &c->ta, ws->w, c->bias, ws->px + L->head, xcs, ws->out + L->head,
                L->pitch, Q);
        unpack_y(L, g->cout, g->n, g->ho, g->wo, ws->out, n0, ns, c->out, c->sio);
        break;
    case OP_DECONV_FWD:
        pack_y(L, g->cout, g->n, g->ho, g->wo, c->in, n0, ns, ws->gy, NULL, NULL, g->xstage);
        adjoint_chunk(g, ws, c->nph, c->tb, c->bias, ns);
        unpack_x(g, L, ws->out, n0, ns, c->out, c->sio);
        break;
    case OP_CONV_BWD:
        pack_x(g, L, c->in, n0, ns, ws->px, NULL, NULL, g->xstage, ws->row);
        pack_y(L, g->cout, g->n, g->ho, g->wo, c->grad, n0, ns, ws->gy, sums, c->sio, NULL);
        run_grad(g->cout, g->cin, &c->ta, ws->gy + L->head, L->pitch, ws->px + L->head, xcs,
                 round_up(Q, VL), ws->acc, 9);
        if (c->out) {
            adjoint_chunk(g, ws, c->nph, c->tb, NULL, ns);
            unpack_x(g, L, ws->out, n0, ns, c->out, NULL);
        }
        break;
    case OP_DECONV_BWD:
        pack_x(g, L, c->grad, n0, ns, ws->px, sums, c->sio, NULL, ws->row);
        pack_y(L, g->cout, g->n, g->ho, g->wo, c->in, n0, ns, ws->gy, NULL, NULL, g->xstage);
        run_grad(g->cout, g->cin, &c->ta, ws->gy + L->head, L->pitch, ws->px + L->head, xcs,
                 round_up(Q, VL), ws->acc, 9);
        if (c->out) {
            run_fwd(g->cout, g->cin, &c->ta, ws->w, NULL, ws->px + L->head, xcs, ws->out + L->head,
                    L->pitch, Q);
            unpack_y(L, g->cout, g->n, g->ho, g->wo, ws->out, n0, ns, c->out, NULL);
        }
        break;
    }
}

/* thread t: its share of the samples, chunk by chunk */
static void run_part(const kcall *c, int t) {
    const conv_geom *g = c->g;
    workspace ws = carve(g, c->work, t);
    const int s0 = (int)par_split((size_t)g->n, t, c->threads);
    const int s1 = (int)par_split((size_t)g->n, t + 1, c->threads);
    double *sums = c->sums ? c->sums + (size_t)t * c->nsum : NULL;
    if (sums) memset(ws.acc, 0, (size_t)g->cin * g->cout * 9 * sizeof *ws.acc);
    for (int n0 = s0; n0 < s1; n0 += ws.chunk)
        run_chunk(c, &ws, n0, YT_MIN(ws.chunk, s1 - n0), sums);
}

static void run_part_fn(void *ctx, int t, int T) {
    (void)T; /* the call's own split (threads) */
    run_part(ctx, t);
}

/* a call with the weights packed (at the workspace's start) and its taps */
static kcall make_call(const conv_geom *g, int op, const real *k, real *work) {
    kcall c = {.g = g, .op = op, .threads = convk_threads(g), .work = work};
    workspace ws = carve(g, work, 0);
    c.ta = taps_a(&ws.L);
    c.nph = taps_b(g, &ws.L, c.tb);
    if (k && (op == OP_CONV_FWD || op == OP_DECONV_BWD))
        pack_weights(g->cout, g->cin, &c.ta, k, true, ws.w);
    else if (k)
        pack_weights_b(g, c.nph, c.tb, k, ws.w);
    return c;
}

static void run_call(kcall *c) {
    const bool bwd = c->op == OP_CONV_BWD || c->op == OP_DECONV_BWD;
    if (bwd) {
        c->nsum = c->op == OP_CONV_BWD ? c->g->cout : c->g->cin;
        c->sums = yt_calloc((size_t)c->threads * c->nsum, sizeof *c->sums);
    }
    par_run(c->threads, run_part_fn, c);
}

/* the backward's sums over threads, in thread order: dk [cout][cin][3][3] +=
 * the lanes of the accumulators (tap t is ta.tap[t]); db += the bias sums */
static void finish_backward(kcall *c, real *dk, real *db) {
    const conv_geom *g = c->g;
    for (size_t j = 0; j < (size_t)g->cout * g->cin; j++)
        for (int t = 0; t < c->ta.n; t++) {
            real s = 0;
            for (int th = 0; th < c->threads; th++)
                s += vhsum(carve(g, c->work, th).acc[j * 9 + t]);
            dk[j * 9 + c->ta.tap[t]] += s;
        }
    for (int ch = 0; ch < c->nsum; ch++) {
        double s = 0;
        for (int th = 0; th < c->threads; th++)
            s += c->sums[(size_t)th * c->nsum + ch];
        db[ch] += (real)s;
    }
    free(c->sums);
}

/* the two forward computations (A for a conv, B for a deconv) and the two
 * backward ones differ only in their op */
static void forward(const conv_geom *g, int op, const real *x, const real *k, const real *b,
                    real *y, const film_stage *st, real *o, real *work) {
    const stage_io sio = {.st = st, .o = o};
    kcall c = make_call(g, op, k, work);
    c.in = x;
    c.bias = b;
    c.out = y;
    c.sio = st ? &sio : NULL;
    run_call(&c);
}

static void backward(const conv_geom *g, int op, const real *x, const real *k, const real *dy,
                     real *dx, real *dk, real *db, const film_stage *st, const real *z,
                     real *dscale, real *dshift, real *work) {
    const stage_io sio = {.st = st, .z = z, .dscale = dscale, .dshift = dshift};
    kcall c = make_call(g, op, dx ? k : NULL, work);
    c.in = x;
    c.grad = dy;
    c.out = dx;
    c.sio = st ? &sio : NULL;
    run_call(&c);
    finish_backward(&c, dk, db);
}

void convk_conv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                        const film_stage *st, real *o, real *work) {
    forward(g, OP_CONV_FWD, x, k, b, y, st, o, work);
}

void convk_conv_backward(const conv_geom *g, const real *x, const real *k, const real *dy, real *dx,
                         real *dk, real *db, const film_stage *st, const real *z, real *dscale,
                         real *dshift, real *work) {
    backward(g, OP_CONV_BWD, x, k, dy, dx, dk, db, st, z, dscale, dshift, work);
}

void convk_deconv_forward(const conv_geom *g, const real *x, const real *k, const real *b, real *y,
                          const film_stage *st, real *o, real *work) {
    forward(g, OP_DECONV_FWD, x, k, b, y, st, o, work);
}

void convk_deconv_backward(const conv_geom *g, const real *x, const real *k, const real *dy,
                           real *dx, real *dk, real *db, const film_stage *st, const real *z,
                           real *dscale, real *dshift, real *work) {
    backward(g, OP_DECONV_BWD, x, k, dy, dx, dk, db, st, z, dscale, dshift, work);
}
