/* smajor_bench.c — a prototype of the direct kernels in a sample-minor
 * layout, timed against convk.c on two calls of Shapes3D's dec/block0
 * shapes at batch 64, no FiLM stage: the deconv forward (16 -> 8 channels,
 * 32 x 32 -> 64 x 64, stride 2) and the conv it is the adjoint of (8 -> 16,
 * 64 x 64 -> 32 x 32: the deconv's input gradient, and the encoder's kind
 * of layer). Activations are [C][N/8][H][W][8]: a vector holds one
 * position of 8 samples, so every tap of every valid output position is
 * one whole vector and only valid positions are computed (convk.c's flat
 * grids compute through their padding rows and columns, lever 31); the
 * deconv's output parities are stored straight into their positions.
 * Prints, per call, the medians of convk's call (its packing, kernels and
 * unpacking) and of the prototype's transpose in, kernel and transpose
 * out, and the largest difference of their outputs (0: the same sums in
 * the same order). Not part of the build (docs/DESIGN.md, lever 42, has
 * its numbers):
 *
 *   make bin/yoto && mpicc -std=c11 -D_DEFAULT_SOURCE -O3 -march=x86-64-v3 \
 *       -ffp-contract=fast -fno-math-errno -Iinclude -Isrc $(pkg-config --cflags openblas) \
 *       tests/tools/smajor_bench.c $(ls build/rel/src/*.o | grep -v 'main.o') \
 *       $(make -s print-ldlibs) -o /tmp/smajor_bench
 *   taskset -c 0 /tmp/smajor_bench [REPS [COLD]]
 *
 * COLD 1: the caches full of other data before convk's calls and before the
 * prototype's kernels (the transposes are then timed with their input in
 * cache).
 *
 * AVX2 intrinsics: a tool for an x86-64-v3 machine. */
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "convk.h"
#include "layers.h"
#include "toolutil.h"

#define N 64
#define CO 16 /* the deconv's input channels (adjoint conv's cout) */
#define CI 8  /* its output channels */
#define H 32  /* input side */
#define HP (H + 1)
#define HO 64

/* 8x8 transpose of rows r[0..7] (each 8 floats) */
static inline void tr8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* src [C][N][S][S] -> dst [C][N/8][S + 1][S + 1][8]: the image at row and
 * column `at` (1: the zero row and column first, 0: last) */
static void to_smaj(const real *src, int C, int S, int at, real *dst) {
    const int SP = S + 1, zr = at ? 0 : S; /* the zero row and column */
    for (int c = 0; c < C; c++)
        for (int nb = 0; nb < N / 8; nb++) {
            real *d = dst + ((size_t)(c * (N / 8) + nb) * SP * SP) * 8;
            memset(d + (size_t)zr * SP * 8, 0, (size_t)SP * 8 * sizeof(real));
            const real *s = src + ((size_t)c * N + nb * 8) * S * S;
            for (int r = 0; r < S; r++) {
                real *dr = d + ((size_t)(r + at) * SP) * 8;
                memset(dr + (size_t)zr * 8, 0, 8 * sizeof(real));
                for (int w0 = 0; w0 < S; w0 += 8) {
                    __m256 v[8];
                    for (int i = 0; i < 8; i++)
                        v[i] = _mm256_loadu_ps(s + (size_t)i * S * S + r * S + w0);
                    tr8(v);
                    for (int j = 0; j < 8; j++)
                        _mm256_storeu_ps(dr + (size_t)(w0 + j + at) * 8, v[j]);
                }
            }
        }
}

/* src [C][N/8][S][S][8] -> dst [C][N][S][S] */
static void from_smaj(const real *src, int C, int S, real *dst) {
    for (int c = 0; c < C; c++)
        for (int nb = 0; nb < N / 8; nb++) {
            const real *s = src + ((size_t)(c * (N / 8) + nb) * S * S) * 8;
            real *d = dst + ((size_t)c * N + nb * 8) * S * S;
            for (int p0 = 0; p0 < S * S; p0 += 8) {
                __m256 v[8];
                for (int j = 0; j < 8; j++)
                    v[j] = _mm256_loadu_ps(s + (size_t)(p0 + j) * 8);
                tr8(v);
                for (int i = 0; i < 8; i++)
                    _mm256_storeu_ps(d + (size_t)i * S * S + p0, v[i]);
            }
        }
}

/* One output row 2r + a, column parity b, of output channels ci0..ci0+CB of
 * sample block nb: X[ci][2r + a][2c + b] = bias + sum over co and the NT taps
 * (kh, kw) of that parity of k[co][ci][kh][kw] Y[co][r - (kh - a)/2][c - (kw
 * - b)/2] (pad 0: ih = 2 oh + kh), Y from ys with its zero row and column
 * at index 0 (toff: each tap's offset there). CB x V vector accumulators, as
 * convk.c's fwd_tile; a tile past the row's end reads the next row's
 * padding and stores only its nv columns. */
#define V 3
#define CB 4
static inline __attribute__((always_inline)) void out_row(const int NT, const int *toff,
                                                          const real *w, const real *ys,
                                                          const real *bias, real *xs, int nb,
                                                          int ci0, int a, int b, int r) {
    for (int c0 = 0; c0 < H; c0 += V) {
        const int nv = c0 + V <= H ? V : H - c0;
        __m256 acc[CB][V];
        for (int c = 0; c < CB; c++)
            for (int v = 0; v < V; v++)
                acc[c][v] = _mm256_set1_ps(bias[ci0 + c]);
        for (int co = 0; co < CO; co++) {
            const real *yp = ys + ((size_t)(co * (N / 8) + nb) * HP * HP + (size_t)r * HP + c0) * 8;
            const real *wp = w + co * NT * CB;
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++, wp += CB) {
                __m256 xv[V];
                for (int v = 0; v < V; v++)
                    xv[v] = _mm256_loadu_ps(yp + toff[t] + v * 8);
                for (int c = 0; c < CB; c++) {
                    const __m256 wc = _mm256_broadcast_ss(wp + c);
                    for (int v = 0; v < V; v++)
                        acc[c][v] = _mm256_fmadd_ps(xv[v], wc, acc[c][v]);
                }
            }
        }
        for (int c = 0; c < CB; c++) {
            real *xp =
                xs + ((size_t)((ci0 + c) * (N / 8) + nb) * HO * HO + (size_t)(2 * r + a) * HO) * 8;
#pragma GCC unroll 3
            for (int v = 0; v < V; v++) /* constant indices: acc stays in registers */
                if (v < nv) _mm256_storeu_ps(xp + (size_t)(2 * (c0 + v) + b) * 8, acc[c][v]);
        }
    }
}

/* the deconv forward, ys -> xs. Both column parities of an output row one
 * after the other, so that each output line is written whole while in L1
 * (parity by parity over the whole map: 10% slower). */
static void deconv_smaj(const real *ys, const real *k, const real *bias, real *xs) {
    for (int nb = 0; nb < N / 8; nb++)
        for (int ci0 = 0; ci0 < CI; ci0 += CB)
            for (int a = 0; a < 2; a++) {
                int nt[2] = {0, 0}, toff[2][4], tk[2][4];
                real w[2][CO * 4 * CB]; /* [co][tap][CB] per parity b */
                for (int b = 0; b < 2; b++) {
                    for (int kh = a; kh < 3; kh += 2)
                        for (int kw = b; kw < 3; kw += 2) {
                            toff[b][nt[b]] = ((1 - (kh - a) / 2) * HP + (1 - (kw - b) / 2)) * 8;
                            tk[b][nt[b]++] = kh * 3 + kw;
                        }
                    for (int co = 0; co < CO; co++)
                        for (int t = 0; t < nt[b]; t++)
                            for (int c = 0; c < CB; c++)
                                w[b][(co * nt[b] + t) * CB + c] =
                                    k[((size_t)co * CI + ci0 + c) * 9 + tk[b][t]];
                }
                for (int r = 0; r < H; r++)
                    for (int b = 0; b < 2; b++) {
                        if (nt[b] == 4)
                            out_row(4, toff[b], w[b], ys, bias, xs, nb, ci0, a, b, r);
                        else if (nt[b] == 2)
                            out_row(2, toff[b], w[b], ys, bias, xs, nb, ci0, a, b, r);
                        else
                            out_row(1, toff[b], w[b], ys, bias, xs, nb, ci0, a, b, r);
                    }
            }
}

/* The conv the deconv is the adjoint of (8 -> 16 channels, 64 x 64 -> 32 x
 * 32, stride 2, pad 0; what the deconv's input gradient and the encoder's
 * convs compute): Y[co][oh][ow] = bias + sum over ci and the 9 taps of
 * k[co][ci][kh][kw] X[ci][2 oh + kh][2 ow + kw], X from xs with its zero
 * row and column last. Every tap is one whole vector at a stride of two
 * positions; convk.c runs this on four parity planes. One tile: CB output
 * channels at V positions from xp (channel ci at xp + ci * cs). GCC 12
 * still spills a few registers in the 9-tap loop: not tuned further. */
static inline __attribute__((always_inline)) void conv_tile(const real *xp, size_t cs,
                                                            const int *toff, const real *wp,
                                                            const real *bias, real *yp, size_t ycs,
                                                            int nv) {
    __m256 acc[CB][V];
    for (int c = 0; c < CB; c++)
        for (int v = 0; v < V; v++)
            acc[c][v] = _mm256_set1_ps(bias[c]);
    for (int ci = 0; ci < CI; ci++, xp += cs) {
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++, wp += CB) {
            __m256 xv[V];
            for (int v = 0; v < V; v++)
                xv[v] = _mm256_loadu_ps(xp + toff[t] + 2 * v * 8);
            for (int c = 0; c < CB; c++) {
                const __m256 wc = _mm256_broadcast_ss(wp + c);
                for (int v = 0; v < V; v++)
                    acc[c][v] = _mm256_fmadd_ps(xv[v], wc, acc[c][v]);
            }
        }
    }
    for (int c = 0; c < CB; c++)
#pragma GCC unroll 3
        for (int v = 0; v < V; v++) /* constant indices: acc stays in registers */
            if (v < nv) _mm256_storeu_ps(yp + c * ycs + (size_t)v * 8, acc[c][v]);
}

static void conv_smaj(const real *xs, const real *k, const real *bias, real *ys) {
    const int SP = HO + 1;
    const size_t cs = (size_t)(N / 8) * SP * SP * 8, ycs = (size_t)(N / 8) * H * H * 8;
    int toff[9]; /* tap (kh, kw) at row kh, column kw of xs */
    for (int t = 0; t < 9; t++)
        toff[t] = ((t / 3) * SP + t % 3) * 8;
    real w[CO / CB][CI * 9 * CB]; /* per output block, [ci][tap][CB] */
    for (int co0 = 0; co0 < CO; co0 += CB)
        for (int ci = 0; ci < CI; ci++)
            for (int t = 0; t < 9; t++)
                for (int c = 0; c < CB; c++)
                    w[co0 / CB][(ci * 9 + t) * CB + c] = k[((size_t)(co0 + c) * CI + ci) * 9 + t];
    /* the output blocks inside the row loop: a row's three input rows of
     * every channel (50 KB) stay in cache across them */
    for (int nb = 0; nb < N / 8; nb++)
        for (int oh = 0; oh < H; oh++)
            for (int co0 = 0; co0 < CO; co0 += CB)
                for (int c0 = 0; c0 < H; c0 += V)
                    conv_tile(xs + ((size_t)nb * SP * SP + (size_t)2 * oh * SP + 2 * c0) * 8, cs,
                              toff, w[co0 / CB], bias + co0,
                              ys + ((size_t)(co0 * (N / 8) + nb) * H * H + (size_t)oh * H + c0) * 8,
                              ycs, c0 + V <= H ? V : H - c0);
}

#define MAX_REPS 1000
/* a row's last tile reads up to V positions past it: past the last plane,
 * into this */
#define SLACK (V * 8 * 2)
/* The two calls compared: convk's function and the prototype's (the same
 * signatures each), their input's channels and side and where the
 * prototype's zero row and column go (to_smaj's at), their output's */
typedef struct {
    const char *name;
    void (*convk)(const conv_geom *, const real *, const real *, const real *, real *,
                  const film_stage *, real *, real *);
    void (*smaj)(const real *, const real *, const real *, real *);
    int cin, sin, at, cout, sout;
} call;

static const call calls[] = {
    {"deconv", convk_deconv_forward, deconv_smaj, CO, H, 1, CI, HO},
    {"conv", convk_conv_forward, conv_smaj, CI, HO, 0, CO, H},
};
#define NC (sizeof calls / sizeof *calls)

/* a call's tensors: input, bias, convk's output, the prototype's input
 * and output in its layout, and the latter back in [C][N][H][W] */
typedef struct {
    real *in, *bias, *ref, *sin, *sout, *got;
    size_t nout;
} tensors;

static tensors make_tensors(const call *c, unsigned seed) {
    const size_t nin = (size_t)c->cin * N * c->sin * c->sin;
    tensors T = {.nout = (size_t)c->cout * N * c->sout * c->sout};
    T.in = tool_buf(nin, seed);
    T.bias = tool_buf((size_t)c->cout, seed + 1);
    T.ref = tool_buf(T.nout, seed + 2);
    T.sin = tool_buf((size_t)c->cin * N * (c->sin + 1) * (c->sin + 1) + SLACK, seed + 3);
    T.sout = tool_buf(T.nout, seed + 4);
    T.got = tool_buf(T.nout, seed + 5);
    return T;
}

/* one call's medians (ms) and the largest difference of the two outputs */
static void report(const char *what, double *tc, double *ti, double *tk, double *to, int reps,
                   const real *ref, const real *got, size_t n) {
    double md = 0, tot[MAX_REPS];
    for (size_t i = 0; i < n; i++)
        md = fmax(md, fabs((double)ref[i] - got[i]));
    for (int r = 0; r < reps; r++)
        tot[r] = ti[r] + tk[r] + to[r];
    printf("%-7s convk %.3f ms | sample-minor %.3f ms (in %.3f, kernel %.3f, out %.3f) | max "
           "diff %.3g\n",
           what, 1e3 * tool_median(tc, reps), 1e3 * tool_median(tot, reps),
           1e3 * tool_median(ti, reps), 1e3 * tool_median(tk, reps), 1e3 * tool_median(to, reps),
           md);
}

int main(int argc, char **argv) {
    tool_run run = tool_run_start(argc, argv);
    const int reps = run.reps;
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "smajor_bench: REPS from 1 to %d\n", MAX_REPS);
        return 2;
    }
    conv_geom g = conv_geom_make(N, CI, HO, HO, CO, 2);
    g.threads = 1;
    real *k = tool_buf((size_t)CO * CI * 9, 1), *work = tool_buf(convk_work_size(&g), 2);
    tensors T[NC];
    for (size_t c = 0; c < NC; c++)
        T[c] = make_tensors(&calls[c], 10 * (unsigned)(c + 1));
    static double tc[NC][MAX_REPS], ti[NC][MAX_REPS], tk[NC][MAX_REPS], to[NC][MAX_REPS];
    for (int r = 0; r < reps; r++)
        for (size_t c = 0; c < NC; c++) { /* in -> ref (convk); in -> sin -> sout -> got */
            const call *C = &calls[c];
            double t = tool_run_rep(&run);
            C->convk(&g, T[c].in, k, T[c].bias, T[c].ref, NULL, NULL, work);
            tc[c][r] = tool_now() - t;
            t = tool_now();
            to_smaj(T[c].in, C->cin, C->sin, C->at, T[c].sin);
            ti[c][r] = tool_now() - t;
            t = tool_run_rep(&run);
            C->smaj(T[c].sin, k, T[c].bias, T[c].sout);
            tk[c][r] = tool_now() - t;
            t = tool_now();
            from_smaj(T[c].sout, C->cout, C->sout, T[c].got);
            to[c][r] = tool_now() - t;
        }
    for (size_t c = 0; c < NC; c++) {
        report(calls[c].name, tc[c], ti[c], tk[c], to[c], reps, T[c].ref, T[c].got, T[c].nout);
        free(T[c].in), free(T[c].bias), free(T[c].ref), free(T[c].sin), free(T[c].sout);
        free(T[c].got);
    }
    free(k), free(work), free(run.flush);
    return 0;
}
