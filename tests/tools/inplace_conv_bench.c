/* inplace_conv_bench.c — a prototype, not part of the build: the forward of a
 * stride-1 3x3 conv with few outputs (Shapes3D's output conv, 8 -> 3 at
 * 64x64) read straight from the [C][N][H][W] planes, with no padded copy:
 * rows outside the image are skipped, and the two columns that fall outside
 * a row come from a lane shift with a zero, in the first and last vector of
 * each row. A register tile is COUT x 4 vectors of one output row. Checked
 * here against layers.h's conv_forward (the route yoto picks) and timed
 * against it, interleaved, and the same for the kernel gradient (dk) and the
 * input gradient (dx) against conv_backward (docs/DESIGN.md, lever 19, has
 * the numbers).
 *
 *   make bin/yoto && mpicc -O3 -march=x86-64-v3 -std=c11 -D_DEFAULT_SOURCE -Iinclude -Isrc \
 *       $(pkg-config --cflags openblas) tests/tools/inplace_conv_bench.c \
 *       $(ls build/rel/src/*.o | grep -v main.o) $(make -s print-ldlibs) -o /tmp/inplace_bench
 *   OPENBLAS_CORETYPE=Haswell OPENBLAS_NUM_THREADS=1 /tmp/inplace_bench N CIN H COUT REPS
 * (for 16-float vectors: build/avx512's objects, -march=x86-64-v4 -DSIMD_BYTES=64).
 * The row width must be a multiple of 4 vectors (32 floats; 64 with 16-float vectors). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "layers.h"
#include "simd.h"
#include "toolutil.h"

/* x shifted one lane up (lane 0 = 0: the column left of the row) and one
 * lane down (last lane = 0: the column right of it) */
#if SIMD_BYTES == 32
#define UP_IDX                                                                                     \
    { 8, 0, 1, 2, 3, 4, 5, 6 }
#define DOWN_IDX                                                                                   \
    { 1, 2, 3, 4, 5, 6, 7, 8 }
#else
#define UP_IDX                                                                                     \
    { 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14 }
#define DOWN_IDX                                                                                   \
    { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 }
#endif
static inline rvec shift_up(rvec x) {
    return __builtin_shuffle(x, (rvec){0}, (rvec_idx)UP_IDX);
}
static inline rvec shift_down(rvec x) {
    return __builtin_shuffle(x, (rvec){0}, (rvec_idx)DOWN_IDX);
}

enum { V = 4, CMAX = 4 };

/* one output row r of sample n: y[c][n][r][0..w) for c < COUT */
static inline void row_tile(const int COUT, int cin, int n, int N, int h, int w, int r,
                            const real *x, const real *k, const real *b, real *y) {
    for (int q = 0; q < w; q += V * VL) {
        rvec acc[CMAX][V];
        for (int c = 0; c < COUT; c++)
            for (int v = 0; v < V; v++)
                acc[c][v] = (rvec){0} + b[c];
        const int first = q == 0, last = q + V * VL == w;
        for (int ci = 0; ci < cin; ci++)
            for (int kh = 0; kh < 3; kh++) {
                const int ir = r + kh - 1;
                if (ir < 0 || ir >= h) continue;
                const real *p = x + (((size_t)ci * N + n) * h + ir) * w + q;
                rvec xv[V]; /* the vectors at p: tap kw = 1, and the shifts at the row ends */
                for (int v = 0; v < V; v++)
                    xv[v] = vload(p + v * VL);
                for (int kw = 0; kw < 3; kw++) {
                    const real *kk = k + ((size_t)ci * 3 + kh) * 3 + kw; /* + c*cin*9 */
                    for (int v = 0; v < V; v++) {
                        rvec t;
                        if (kw == 1)
                            t = xv[v];
                        else if (kw == 0)
                            t = first && v == 0 ? shift_up(xv[0]) : vload(p + v * VL - 1);
                        else
                            t = last && v == V - 1 ? shift_down(xv[V - 1]) : vload(p + v * VL + 1);
                        for (int c = 0; c < COUT; c++)
                            acc[c][v] += t * kk[(size_t)c * cin * 9];
                    }
                }
            }
        for (int c = 0; c < COUT; c++)
            for (int v = 0; v < V; v++)
                vstore(y + (((size_t)c * N + n) * h + r) * w + q + v * VL, acc[c][v]);
    }
}

#define ROWS(CO)                                                                                   \
    static void rows_##CO(int cin, int N, int h, int w, const real *x, const real *k,              \
                          const real *b, real *y) {                                                \
        for (int n = 0; n < N; n++)                                                                \
            for (int r = 0; r < h; r++)                                                            \
                row_tile(CO, cin, n, N, h, w, r, x, k, b, y);                                      \
    }
ROWS(1)
ROWS(2)
ROWS(3)
ROWS(4)

/* dk[c][ci][kh][kw] += sum over samples, rows and columns of
 * dy[c][n][r][col] x[ci][n][r+kh-1][col+kw-1]: samples in chunks of CHUNK
 * (their rows of x and dy stay in L2), and per chunk and (ci, kh) one pass
 * with COUT x 3 vector sums in registers */
enum { CHUNK = 4 };
static inline void dk_pass(const int COUT, int cin, int ci, int kh, int n0, int n1, int N, int h,
                           int w, const real *x, const real *dy, real *dk) {
    rvec acc[CMAX][3];
    for (int c = 0; c < COUT; c++)
        for (int kw = 0; kw < 3; kw++)
            acc[c][kw] = (rvec){0};
    for (int n = n0; n < n1; n++)
        for (int r = 0; r < h; r++) {
            const int ir = r + kh - 1;
            if (ir < 0 || ir >= h) continue;
            const real *p = x + (((size_t)ci * N + n) * h + ir) * w;
            for (int q = 0; q < w; q += VL) {
                const rvec mid = vload(p + q);
                const rvec left = q == 0 ? shift_up(mid) : vload(p + q - 1);
                const rvec right = q + VL == w ? shift_down(mid) : vload(p + q + 1);
                for (int c = 0; c < COUT; c++) {
                    const rvec g = vload(dy + (((size_t)c * N + n) * h + r) * w + q);
                    acc[c][0] += g * left;
                    acc[c][1] += g * mid;
                    acc[c][2] += g * right;
                }
            }
        }
    for (int c = 0; c < COUT; c++)
        for (int kw = 0; kw < 3; kw++) {
            double t = 0;
            for (int l = 0; l < VL; l++)
                t += (double)acc[c][kw][l];
            dk[(((size_t)c * cin + ci) * 3 + kh) * 3 + kw] += (real)t;
        }
}

#define DK(CO)                                                                                     \
    static void dk_##CO(int cin, int N, int h, int w, const real *x, const real *dy, real *dk) {   \
        for (int n0 = 0; n0 < N; n0 += CHUNK)                                                      \
            for (int ci = 0; ci < cin; ci++)                                                       \
                for (int kh = 0; kh < 3; kh++)                                                     \
                    dk_pass(CO, cin, ci, kh, n0, n0 + CHUNK < N ? n0 + CHUNK : N, N, h, w, x, dy,  \
                            dk);                                                                   \
    }
DK(1)
DK(2)
DK(3)
DK(4)

static void inplace_dk(int cout, int cin, int N, int h, int w, const real *x, const real *dy,
                       real *dk) {
    void (*f[5])(int, int, int, int, const real *, const real *, real *) = {NULL, dk_1, dk_2, dk_3,
                                                                            dk_4};
    f[cout](cin, N, h, w, x, dy, dk);
}

static void inplace_forward(int cout, int cin, int N, int h, int w, const real *x, const real *k,
                            const real *b, real *y) {
    void (*f[5])(int, int, int, int, const real *, const real *, const real *,
                 real *) = {NULL, rows_1, rows_2, rows_3, rows_4};
    f[cout](cin, N, h, w, x, k, b, y);
}

/* dx [cin][n][h][w] = the conv of dy [cout][n][h][w] with k flipped and
 * transposed (kt [cin][cout][3][3]), as the forward, 4 outputs at a time */
static void inplace_dx(int cout, int cin, int N, int h, int w, const real *dy, const real *kt,
                       real *dx, const real *zero) {
    for (int c0 = 0; c0 < cin; c0 += CMAX) {
        const int nc = cin - c0 < CMAX ? cin - c0 : CMAX;
        inplace_forward(nc, cout, N, h, w, dy, kt + (size_t)c0 * cout * 9, zero,
                        dx + (size_t)c0 * N * h * w);
    }
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: inplace_bench N CIN H COUT REPS\n");
        return 2;
    }
    const int n = atoi(argv[1]), cin = atoi(argv[2]), h = atoi(argv[3]), cout = atoi(argv[4]);
    const int reps = atoi(argv[5]);
    if (n < 1 || cin < 1 || cout < 1 || cout > CMAX || h < V * VL || h % (V * VL) || reps < 1 ||
        reps > 1000) {
        fprintf(stderr, "inplace_bench: COUT 1-%d, H a multiple of %d, 1-1000 reps\n", CMAX,
                V * VL);
        return 2;
    }
    conv_geom g = conv_geom_make(n, cin, h, h, cout, 1);
    const size_t nx = (size_t)cin * n * h * h, ny = (size_t)cout * n * h * h;
    real *x = calloc(nx, sizeof *x), *k = calloc((size_t)cin * cout * 9, sizeof *k),
         *b = calloc((size_t)cout, sizeof *b), *y1 = calloc(ny, sizeof *y1),
         *y2 = calloc(ny, sizeof *y2), *work = calloc(conv_work_size(&g) + 1, sizeof *work);
    double *t1 = calloc((size_t)reps, sizeof *t1), *t2 = calloc((size_t)reps, sizeof *t2);
    if (!x || !k || !b || !y1 || !y2 || !work || !t1 || !t2) return 1;
    tool_fill(x, nx, 1);
    tool_fill(k, (size_t)cin * cout * 9, 2);
    tool_fill(b, (size_t)cout, 3);
    const size_t nk = (size_t)cin * cout * 9;
    real *dy = calloc(ny, sizeof *dy), *dk1 = calloc(nk, sizeof *dk1),
         *dk2 = calloc(nk, sizeof *dk2), *db = calloc((size_t)cout, sizeof *db);
    double *t3 = calloc((size_t)reps, sizeof *t3), *t4 = calloc((size_t)reps, sizeof *t4);
    if (!dy || !dk1 || !dk2 || !db || !t3 || !t4) return 1;
    tool_fill(dy, ny, 4);
    real *dx1 = calloc(nx, sizeof *dx1), *dx2 = calloc(nx, sizeof *dx2),
         *kt = calloc(nk, sizeof *kt), *zero = calloc((size_t)cin, sizeof *zero),
         *dk3 = calloc(nk, sizeof *dk3); /* dk of the call with dx (not compared) */
    double *t5 = calloc((size_t)reps, sizeof *t5), *t6 = calloc((size_t)reps, sizeof *t6);
    if (!dx1 || !dx2 || !kt || !zero || !dk3 || !t5 || !t6) return 1;
    for (int c = 0; c < cout; c++) /* kt[ci][c][2 - kh][2 - kw] = k[c][ci][kh][kw] */
        for (int ci = 0; ci < cin; ci++)
            for (int t = 0; t < 9; t++)
                kt[((size_t)ci * cout + c) * 9 + 8 - t] = k[((size_t)c * cin + ci) * 9 + t];
    for (int r = 0; r < reps; r++) {
        double a = tool_now();
        conv_forward(&g, x, k, b, y1, work);
        double m = tool_now();
        inplace_forward(cout, cin, n, h, h, x, k, b, y2);
        t1[r] = m - a;
        t2[r] = tool_now() - m;
        for (size_t i = 0; i < nk; i++)
            dk1[i] = dk2[i] = 0;
        a = tool_now();
        conv_backward(&g, x, k, dy, NULL, dk1, db, work); /* dk and db, no dx */
        m = tool_now();
        inplace_dk(cout, cin, n, h, h, x, dy, dk2);
        t3[r] = m - a;
        t4[r] = tool_now() - m;
        a = tool_now();
        conv_backward(&g, x, k, dy, dx1, dk3, db, work); /* dx as well */
        m = tool_now();
        inplace_dx(cout, cin, n, h, h, dy, kt, dx2, zero);
        t5[r] = m - a;
        t6[r] = tool_now() - m;
    }
    double xerr = 0, xbig = 0;
    for (size_t i = 0; i < nx; i++) {
        xerr = fmax(xerr, fabs((double)dx1[i] - (double)dx2[i]));
        xbig = fmax(xbig, fabs((double)dx1[i]));
    }
    double kerr = 0, kbig = 0;
    for (size_t i = 0; i < nk; i++) {
        kerr = fmax(kerr, fabs((double)dk1[i] - (double)dk2[i]));
        kbig = fmax(kbig, fabs((double)dk1[i]));
    }
    double err = 0, big = 0;
    for (size_t i = 0; i < ny; i++) {
        err = fmax(err, fabs((double)y1[i] - (double)y2[i]));
        big = fmax(big, fabs((double)y1[i]));
    }
    const double f1 = tool_median(t1, reps), f2 = tool_median(t2, reps);
    const double g1 = tool_median(t3, reps), g2 = tool_median(t4, reps);
    const double d1 = tool_median(t5, reps), d2 = tool_median(t6, reps);
    const double flop = 2.0 * conv_macs(&g);
    printf("conv n=%d %d->%d %dx%d stride 1 (route %d): layers.h forward %.3f ms (%.1f GFLOP/s), "
           "in place %.3f ms (%.1f GFLOP/s), %.2fx; max |diff| %.2g of max |y| %.2g\n",
           n, cin, cout, h, h, g.route, 1e3 * f1, flop / f1 / 1e9, 1e3 * f2, flop / f2 / 1e9,
           f1 / f2, err, big);
    printf(
        "  kernel gradient: layers.h (dk + db) %.3f ms, in place (dk) %.3f ms, %.2fx; max |diff| "
        "%.2g of max |dk| %.2g\n",
        1e3 * g1, 1e3 * g2, g1 / g2, kerr, kbig);
    printf("  input gradient: layers.h (dx + dk + db) %.3f ms, so dx about %.3f; in place (dx) "
           "%.3f ms; max |diff| %.2g of max |dx| %.2g\n",
           1e3 * d1, 1e3 * (d1 - g1), 1e3 * d2, xerr, xbig);
    return err <= 1e-4 * big && kerr <= 1e-4 * kbig && xerr <= 1e-4 * xbig ? 0 : 1;
}
