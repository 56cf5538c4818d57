/* blocked_conv_bench.c — a prototype, not part of yoto: a stride-2 3x3 conv
 * (TensorFlow SAME padding on even sizes) with FiLM + leaky ReLU fused, forward
 * and backward (the stage's gradient, dk, dx), on a channel-blocked layout
 * [C/8][N][H][W][8] that needs no packing: vectors over 8 channels, register
 * tiles of 2 channel blocks x 6 pixels. It checks itself against plain sums
 * in double and prints its times, to compare with the same layer in yoto
 * (docs/DESIGN.md, "What limits each layer now", where its numbers are).
 *
 *   gcc -O3 -march=x86-64-v3 -ffp-contract=fast -o /tmp/bcb tests/tools/blocked_conv_bench.c -lm
 *   /tmp/bcb N CIN H COUT REPS      e.g. 64 8 32 16 20 (Shapes3D's encoder block 1)
 * CIN and COUT multiples of 8, COUT of 16; H even. Exit 1 when a check fails. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));
typedef int v8i __attribute__((vector_size(32)));
/* lanes of a where m is set, else of b */
static inline v8 vsel(v8i m, v8 a, v8 b) {
    return (v8)((m & (v8i)a) | (~m & (v8i)b));
}
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
static void fill(float *p, size_t n, unsigned s) {
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        p[i] = ((s >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}
#define TW 6
/* x [CBI][N][H][W][8], w [CBO][CBI][3][3][8ci][8co], y,o [CBO][N][HO][WO][8]; CBO even */
static void conv_fwd(int N, int CBI, int H, int W, int CBO, const float *x, const float *w,
                     const float *b, const float *sc, const float *sh, float alpha, float *z,
                     float *o) {
    const int HO = H / 2, WO = W / 2, C = CBO * 8;
    const size_t xs_cb = (size_t)N * H * W * 8, ys_cb = (size_t)N * HO * WO * 8;
    for (int n = 0; n < N; n++)
        for (int cb = 0; cb < CBO; cb += 2)
            for (int oh = 0; oh < HO; oh++)
                for (int ow0 = 0; ow0 < WO; ow0 += TW) {
                    const int tw = WO - ow0 < TW ? WO - ow0 : TW;
                    v8 acc[2][TW];
                    for (int j = 0; j < 2; j++) {
                        v8 bv = *(const v8u *)(b + (cb + j) * 8);
                        for (int p = 0; p < TW; p++)
                            acc[j][p] = bv;
                    }
                    for (int cbi = 0; cbi < CBI; cbi++)
                        for (int kh = 0; kh < 3; kh++) {
                            const int ih = 2 * oh + kh;
                            if (ih >= H) continue;
                            const float *xr = x + cbi * xs_cb + ((size_t)n * H + ih) * W * 8;
                            for (int kw = 0; kw < 3; kw++) {
                                const float *w0 =
                                    w + ((((size_t)cb * CBI + cbi) * 9) + kh * 3 + kw) * 64;
                                const float *w1 = w0 + (size_t)CBI * 9 * 64;
                                const int full = tw == TW && 2 * (ow0 + TW - 1) + kw < W;
                                if (full) {
                                    const float *xp = xr + (size_t)(2 * ow0 + kw) * 8;
#pragma GCC unroll 8
                                    for (int ci = 0; ci < 8; ci++) {
                                        v8 wa = *(const v8u *)(w0 + ci * 8),
                                           wb = *(const v8u *)(w1 + ci * 8);
#pragma GCC unroll 6
                                        for (int p = 0; p < TW; p++) {
                                            float xv = xp[p * 16 + ci];
                                            acc[0][p] += wa * xv;
                                            acc[1][p] += wb * xv;
                                        }
                                    }
                                } else {
                                    for (int ci = 0; ci < 8; ci++) {
                                        v8 wa = *(const v8u *)(w0 + ci * 8),
                                           wb = *(const v8u *)(w1 + ci * 8);
                                        for (int p = 0; p < tw; p++) {
                                            int iw = 2 * (ow0 + p) + kw;
                                            if (iw >= W) continue;
                                            float xv = xr[(size_t)iw * 8 + ci];
                                            acc[0][p] += wa * xv;
                                            acc[1][p] += wb * xv;
                                        }
                                    }
                                }
                            }
                        }
                    for (int j = 0; j < 2; j++) {
                        v8 a = *(const v8u *)(sc + (size_t)n * C + (cb + j) * 8),
                           t = *(const v8u *)(sh + (size_t)n * C + (cb + j) * 8);
                        float *zp = z + (cb + j) * ys_cb + (((size_t)n * HO + oh) * WO + ow0) * 8;
                        float *op = o + (cb + j) * ys_cb + (((size_t)n * HO + oh) * WO + ow0) * 8;
                        for (int p = 0; p < tw; p++) {
                            v8 v = acc[j][p] * a + t;
                            v8 zero = {0};
                            *(v8u *)(zp + p * 8) = acc[j][p];
                            *(v8u *)(op + p * 8) = vsel(v > zero, v, v * alpha);
                        }
                    }
                }
}

static inline __attribute__((always_inline)) void dx_blocks(const int JB, int N, int H, int W,
                                                            int CBO, int cbi, const float *dz,
                                                            const float *wt, float *dx) {
    const int HO = H / 2, WO = W / 2;
    const size_t xs_cb = (size_t)N * H * W * 8, ys_cb = (size_t)N * HO * WO * 8;
    for (int n = 0; n < N; n++)
        for (int ih = 0; ih < H; ih++)
            for (int pb = 0; pb < 2; pb++) {
                const int nq = (W - pb + 1) / 2;
                for (int q0 = 0; q0 < nq; q0 += TW) {
                    const int tw = nq - q0 < TW ? nq - q0 : TW;
                    v8 acc[2][TW];
                    for (int j = 0; j < JB; j++)
                        for (int p = 0; p < TW; p++)
                            acc[j][p] = (v8){0};
                    for (int kh = ih & 1; kh < 3; kh += 2) {
                        const int oh = (ih - kh) / 2;
                        if (ih < kh || oh >= HO) continue;
                        for (int kw = pb; kw < 3; kw += 2) {
                            const int dq = (pb - kw) / 2; /* 0 or -1: ow = q + dq */
                            for (int cb = 0; cb < CBO; cb++) {
                                const float *dr = dz + cb * ys_cb + ((size_t)n * HO + oh) * WO * 8;
                                const float *w0 =
                                    wt + ((((size_t)cbi * CBO + cb) * 9) + kh * 3 + kw) * 64;
                                const float *w1 = w0 + (size_t)CBO * 9 * 64;
                                const int full = tw == TW && q0 + dq >= 0 && q0 + TW - 1 + dq < WO;
                                if (full) {
                                    const float *dp = dr + (ptrdiff_t)(q0 + dq) * 8;
#pragma GCC unroll 8
                                    for (int co = 0; co < 8; co++) {
                                        v8 wa = *(const v8u *)(w0 + co * 8),
                                           wb = JB > 1 ? *(const v8u *)(w1 + co * 8) : wa;
#pragma GCC unroll 6
                                        for (int p = 0; p < TW; p++) {
                                            float dv = dp[p * 8 + co];
                                            acc[0][p] += wa * dv;
                                            if (JB > 1) acc[1][p] += wb * dv;
                                        }
                                    }
                                } else {
                                    for (int co = 0; co < 8; co++) {
                                        v8 wa = *(const v8u *)(w0 + co * 8),
                                           wb = JB > 1 ? *(const v8u *)(w1 + co * 8) : wa;
                                        for (int p = 0; p < tw; p++) {
                                            int ow = q0 + p + dq;
                                            if (ow < 0 || ow >= WO) continue;
                                            float dv = dr[(size_t)ow * 8 + co];
                                            acc[0][p] += wa * dv;
                                            if (JB > 1) acc[1][p] += wb * dv;
                                        }
                                    }
                                }
                            }
                        }
                    }
                    for (int j = 0; j < JB; j++) {
                        float *xp = dx + (cbi + j) * xs_cb + ((size_t)n * H + ih) * W * 8;
                        for (int p = 0; p < tw; p++)
                            *(v8u *)(xp + (size_t)(2 * (q0 + p) + pb) * 8) = acc[j][p];
                    }
                }
            }
}
/* Backward of conv_fwd: from dO (gradient w.r.t. o), the stage's gradient
 * dz = a g (g = dO lrelu'(a z + t)), ds/dt [n][c] (sums of g z and g), then
 * dk += corr(x, dz) and dx = conv^T(dz) (dx may be NULL). dz is scratch. */
static void conv_bwd(int N, int CBI, int H, int W, int CBO, const float *x, const float *sc,
                     const float *sh, float alpha, const float *z, const float *dO, float *dz,
                     float *dk, float *ds, float *dt, float *dx, const float *wt) {
    const int HO = H / 2, WO = W / 2, C = CBO * 8;
    const size_t xs_cb = (size_t)N * H * W * 8, ys_cb = (size_t)N * HO * WO * 8;
    /* stage */
    for (int cb = 0; cb < CBO; cb++)
        for (int n = 0; n < N; n++) {
            v8 a = *(const v8u *)(sc + (size_t)n * C + cb * 8),
               t = *(const v8u *)(sh + (size_t)n * C + cb * 8);
            v8 sg = {0}, sz = {0}, zero = {0};
            const size_t at = cb * ys_cb + (size_t)n * HO * WO * 8;
            for (int p = 0; p < HO * WO; p++) {
                v8 zv = *(const v8u *)(z + at + p * 8), g = *(const v8u *)(dO + at + p * 8);
                g = vsel(zv * a + t > zero, g, g * alpha);
                sg += g;
                sz += g * zv;
                *(v8u *)(dz + at + p * 8) = g * a;
            }
            for (int l = 0; l < 8; l++) {
                ds[(size_t)n * C + cb * 8 + l] = sz[l];
                dt[(size_t)n * C + cb * 8 + l] = sg[l];
            }
        }
    /* dk [CBO][CBI][3][3][8ci][8co] += sum over positions x[ci] dz[co]: per
     * (cbo pair, cbi, kh, kw) 2 x 6 accumulators over co, ci in two halves */
    for (int cb = 0; cb < CBO; cb += 2)
        for (int cbi = 0; cbi < CBI; cbi++)
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++)
                    for (int c0 = 0; c0 < 8; c0 += 4) {
                        v8 acc[2][4] = {{{0}}};
                        for (int n = 0; n < N; n++)
                            for (int oh = 0; oh < HO; oh++) {
                                const int ih = 2 * oh + kh;
                                if (ih >= H) continue;
                                const float *xr = x + cbi * xs_cb + ((size_t)n * H + ih) * W * 8;
                                const float *d0 = dz + cb * ys_cb + ((size_t)n * HO + oh) * WO * 8,
                                            *d1 = d0 + ys_cb;
                                const int owmax =
                                    (W - 1 - kw) / 2 + 1 < WO ? (W - 1 - kw) / 2 + 1 : WO;
                                for (int ow = 0; ow < owmax; ow++) {
                                    v8 ya = *(const v8u *)(d0 + ow * 8),
                                       yb = *(const v8u *)(d1 + ow * 8);
                                    const float *xp = xr + (size_t)(2 * ow + kw) * 8 + c0;
#pragma GCC unroll 4
                                    for (int ci = 0; ci < 4; ci++) {
                                        acc[0][ci] += ya * xp[ci];
                                        acc[1][ci] += yb * xp[ci];
                                    }
                                }
                            }
                        for (int j = 0; j < 2; j++)
                            for (int ci = 0; ci < 4; ci++) {
                                float *d =
                                    dk + ((((size_t)(cb + j) * CBI + cbi) * 9) + kh * 3 + kw) * 64 +
                                    (c0 + ci) * 8;
                                *(v8u *)d += acc[j][ci];
                            }
                    }
    if (!dx) return;
    /* dx [CBI][N][H][W][8] = conv^T(dz): output pixel (ih, iw) gets taps kh of
     * its row parity (even: kh 0 at oh = ih/2, kh 2 at oh = ih/2 - 1; odd: kh
     * 1 at oh = (ih-1)/2), the same for columns. wt: the weights transposed,
     * [CBI][CBO][3][3][8co][8ci].
     * Tiles of 6 pixels of one column parity (iw0 + 2p), 1 or 2 ci blocks. */
    for (int cbi = 0; cbi < CBI; cbi += 2) {
        if (CBI - cbi >= 2)
            dx_blocks(2, N, H, W, CBO, cbi, dz, wt, dx);
        else
            dx_blocks(1, N, H, W, CBO, cbi, dz, wt, dx);
    }
}
int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: blocked_conv_bench N CIN H COUT REPS\n");
        return 2;
    }
    int N = atoi(argv[1]), cin = atoi(argv[2]), H = atoi(argv[3]), cout = atoi(argv[4]),
        reps = atoi(argv[5]);
    if (N < 1 || cin < 8 || cin % 8 || cout < 16 || cout % 16 || H < 2 || H % 2 || reps < 1) {
        fprintf(stderr, "blocked_conv_bench: N >= 1, CIN a multiple of 8, COUT of 16, H even\n");
        return 2;
    }
    int CBI = cin / 8, CBO = cout / 8, HO = H / 2, W = H, WO = W / 2;
    size_t nx = (size_t)cin * N * H * W, ny = (size_t)cout * N * HO * WO;
    float *x = malloc(nx * 4), *w = malloc((size_t)cin * cout * 9 * 4), *b = malloc(cout * 4);
    float *sc = malloc((size_t)N * cout * 4), *sh = malloc((size_t)N * cout * 4),
          *z = malloc(ny * 4), *o = malloc(ny * 4);
    fill(x, nx, 1);
    fill(w, (size_t)cin * cout * 9, 2);
    fill(b, cout, 3);
    fill(sh, (size_t)N * cout, 4);
    for (int i = 0; i < N * cout; i++)
        sc[i] = 1 + 0.1f * sh[i];
    /* check on sample 0 against a naive conv (blocked indices) */
    conv_fwd(N, CBI, H, W, CBO, x, w, b, sc, sh, 0.3f, z, o);
    double maxe = 0;
    for (int n = 0; n < (N < 2 ? N : 2); n++)
        for (int co = 0; co < cout; co++)
            for (int oh = 0; oh < HO; oh++)
                for (int ow = 0; ow < WO; ow++) {
                    double s = b[co];
                    for (int ci = 0; ci < cin; ci++)
                        for (int kh = 0; kh < 3; kh++)
                            for (int kw = 0; kw < 3; kw++) {
                                int ih = 2 * oh + kh, iw = 2 * ow + kw;
                                if (ih >= H || iw >= W) continue;
                                double xv = x[(ci / 8) * (size_t)N * H * W * 8 +
                                              (((size_t)n * H + ih) * W + iw) * 8 + ci % 8];
                                double wv =
                                    w[((((size_t)(co / 8) * CBI + ci / 8) * 9) + kh * 3 + kw) * 64 +
                                      (ci % 8) * 8 + co % 8];
                                s += xv * wv;
                            }
                    const size_t at = (co / 8) * (size_t)N * HO * WO * 8 +
                                      (((size_t)n * HO + oh) * WO + ow) * 8 + co % 8;
                    /* z, and the stage's output lrelu(a z + t) */
                    double v = sc[(size_t)n * cout + co] * s + sh[(size_t)n * cout + co];
                    double e = fmax(fabs(z[at] - s), fabs(o[at] - (v > 0 ? v : 0.3 * v)));
                    if (e > maxe) maxe = e;
                }
    double best = 1e9, tot = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        conv_fwd(N, CBI, H, W, CBO, x, w, b, sc, sh, 0.3f, z, o);
        double t = now() - t0;
        tot += t;
        if (t < best) best = t;
    }
    /* backward: check dk and dx on a small batch against naive sums, then time */
    float *dO = malloc(ny * 4), *dz = malloc(ny * 4), *dx = malloc(nx * 4);
    float *dk = calloc((size_t)cin * cout * 9, 4), *ds = malloc((size_t)N * cout * 4),
          *dt = malloc((size_t)N * cout * 4);
    float *wt = malloc((size_t)cin * cout * 9 * 4);
    for (int co = 0; co < cout; co++)
        for (int ci = 0; ci < cin; ci++)
            for (int t = 0; t < 9; t++)
                wt[((((size_t)(ci / 8) * CBO + co / 8) * 9) + t) * 64 + (co % 8) * 8 + ci % 8] =
                    w[((((size_t)(co / 8) * CBI + ci / 8) * 9) + t) * 64 + (ci % 8) * 8 + co % 8];
    fill(dO, ny, 9);
    conv_bwd(N, CBI, H, W, CBO, x, sc, sh, 0.3f, z, dO, dz, dk, ds, dt, dx, wt);
    /* the stage's gradient: dz = a g, g = dO lrelu'(a z + t); ds = sum g z,
     * dt = sum g per sample and channel */
    double es = 0;
    for (int n = 0; n < N; n++)
        for (int co = 0; co < cout; co++) {
            const double a = sc[(size_t)n * cout + co], t = sh[(size_t)n * cout + co];
            double sgz = 0, sg = 0;
            for (int p = 0; p < HO * WO; p++) {
                const size_t at =
                    (co / 8) * (size_t)N * HO * WO * 8 + ((size_t)n * HO * WO + p) * 8 + co % 8;
                double g = a * z[at] + t > 0 ? dO[at] : 0.3 * dO[at];
                sgz += g * z[at];
                sg += g;
                es = fmax(es, fabs(dz[at] - a * g));
            }
            es = fmax(es, fmax(fabs(ds[(size_t)n * cout + co] - sgz),
                               fabs(dt[(size_t)n * cout + co] - sg)));
        }
    double ek = 0, ex = 0;
    for (int co = 0; co < cout; co += 5)
        for (int ci = 0; ci < cin; ci += 3)
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++) {
                    double s = 0;
                    for (int n = 0; n < N; n++)
                        for (int oh = 0; oh < HO; oh++)
                            for (int ow = 0; ow < WO; ow++) {
                                int ih = 2 * oh + kh, iw = 2 * ow + kw;
                                if (ih >= H || iw >= W) continue;
                                s += (double)x[(ci / 8) * (size_t)N * H * W * 8 +
                                               (((size_t)n * H + ih) * W + iw) * 8 + ci % 8] *
                                     dz[(co / 8) * (size_t)N * HO * WO * 8 +
                                        (((size_t)n * HO + oh) * WO + ow) * 8 + co % 8];
                            }
                    double got = dk[((((size_t)(co / 8) * CBI + ci / 8) * 9) + kh * 3 + kw) * 64 +
                                    (ci % 8) * 8 + co % 8];
                    if (fabs(got - s) > ek) ek = fabs(got - s);
                }
    for (int n = 0; n < (N < 2 ? N : 2); n++)
        for (int ci = 0; ci < cin; ci++)
            for (int ih = 0; ih < H; ih++)
                for (int iw = 0; iw < W; iw++) {
                    double s = 0;
                    for (int co = 0; co < cout; co++)
                        for (int kh = 0; kh < 3; kh++)
                            for (int kw = 0; kw < 3; kw++) {
                                if ((ih - kh) % 2 || (iw - kw) % 2) continue;
                                int oh = (ih - kh) / 2, ow = (iw - kw) / 2;
                                if (ih < kh || iw < kw || oh >= HO || ow >= WO) continue;
                                s += (double)
                                         w[((((size_t)(co / 8) * CBI + ci / 8) * 9) + kh * 3 + kw) *
                                               64 +
                                           (ci % 8) * 8 + co % 8] *
                                     dz[(co / 8) * (size_t)N * HO * WO * 8 +
                                        (((size_t)n * HO + oh) * WO + ow) * 8 + co % 8];
                            }
                    double got = dx[(ci / 8) * (size_t)N * H * W * 8 +
                                    (((size_t)n * H + ih) * W + iw) * 8 + ci % 8];
                    if (fabs(got - s) > ex) ex = fabs(got - s);
                }
    double bbest = 1e9, btot = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        conv_bwd(N, CBI, H, W, CBO, x, sc, sh, 0.3f, z, dO, dz, dk, ds, dt, dx, wt);
        double t = now() - t0;
        btot += t;
        if (t < bbest) bbest = t;
    }
    double macs = (double)N * HO * WO * cin * cout * 9;
    printf("n=%d %d->%d %dx%d stride 2: forward %.3f ms (best %.3f), backward %.3f ms (best %.3f), "
           "%.1f GFLOP/s; max error forward %.1e, stage gradient %.1e, dk %.1e, dx %.1e\n",
           N, cin, cout, H, W, tot / reps * 1e3, best * 1e3, btot / reps * 1e3, bbest * 1e3,
           6 * macs / ((tot + btot) / reps) / 1e9, maxe, es, ek, ex);
    /* float sums of up to N*HO*WO terms against double: room for their rounding */
    const double tol = 1e-5 * sqrt((double)N * HO * WO * cin * 9);
    if (!(maxe <= tol && es <= tol && ek <= tol && ex <= tol)) {
        fprintf(stderr, "blocked_conv_bench: an error above %.1e: the kernels are wrong\n", tol);
        return 1;
    }
    return 0;
}
