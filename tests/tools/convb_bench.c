/* convb_bench.c — times one conv or deconv layer with its FiLM + leaky ReLU
 * stage, forward then backward, through layers.h (the route yoto picks) and
 * through the channel-blocked kernels of src/convb.h, interleaved, and prints
 * the medians (docs/DESIGN.md, "What limits each layer now", has its
 * numbers). Not part of the build; test_convb checks the kernels' results.
 *
 *   make bin/yoto && mpicc -O2 -std=c11 -D_DEFAULT_SOURCE -Iinclude -Isrc \
 *       $(pkg-config --cflags openblas) tests/tools/convb_bench.c \
 *       $(ls build/rel/src/*.o | grep -v main.o) $(make -s print-ldlibs) -o /tmp/convb_bench
 *   OPENBLAS_CORETYPE=Haswell OPENBLAS_NUM_THREADS=1 /tmp/convb_bench N CIN H COUT STRIDE DECONV
 * REPS [DX] (the conv geometry of layers.h: a deconv as its adjoint conv; DX 0: no input gradient,
 * as a first layer). For bin/yoto-avx512's kernels link build/avx512/src's objects, add
 * -march=x86-64-v4 -DSIMD_BYTES=64 and use OPENBLAS_CORETYPE=SkylakeX. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "convb.h"
#include "layers.h"
#include "toolutil.h"

static real *buf(size_t n) {
    real *p = calloc(n ? n : 1, sizeof(real));
    if (!p) exit(1);
    return p;
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: convb_bench N CIN H COUT STRIDE DECONV REPS [DX]\n");
        return 2;
    }
    const int n = atoi(argv[1]), cin = atoi(argv[2]), h = atoi(argv[3]), cout = atoi(argv[4]);
    const int s = atoi(argv[5]), dec = atoi(argv[6]), reps = atoi(argv[7]);
    const int with_dx = argc > 8 ? atoi(argv[8]) : 1;
    if (n < 1 || cin < 1 || h < 1 || cout < 1 || (s != 1 && s != 2) || reps < 1 || reps > 1000) {
        fprintf(stderr, "convb_bench: positive sizes, stride 1 or 2, 1-1000 reps\n");
        return 2;
    }
    conv_geom g = conv_geom_make(n, cin, h, h, cout, s);
    const size_t nx = (size_t)cin * n * h * h, ny = (size_t)cout * n * g.ho * g.wo;
    const size_t nk = (size_t)cin * cout * 9;
    const int c = dec ? cin : cout; /* the output side's channels */
    const size_t nin = dec ? ny : nx, nout = dec ? nx : ny;
    const size_t bin = dec ? convb_len(cout, n, g.ho, g.wo) : convb_len(cin, n, h, h);
    const size_t bout = dec ? convb_len(cin, n, h, h) : convb_len(cout, n, g.ho, g.wo);
    real *x = buf(nin), *k = buf(nk), *b = buf((size_t)c), *sc = buf((size_t)n * c),
         *sh = buf((size_t)n * c), *z = buf(nout), *o = buf(nout), *d = buf(nout), *dx = buf(nin),
         *dk = buf(nk), *db = buf((size_t)c), *ds = buf((size_t)n * c), *dt = buf((size_t)n * c);
    real *xb = buf(bin), *zb = buf(bout), *ob = buf(bout), *dbk = buf(bout), *dxb = buf(bin);
    real *w1 = buf(conv_work_size(&g)), *w2 = buf(convb_work_size(&g));
    tool_fill(x, nin, 1);
    tool_fill(k, nk, 2);
    tool_fill(b, (size_t)c, 3);
    tool_fill(sh, (size_t)n * c, 4);
    for (int i = 0; i < n * c; i++)
        sc[i] = 1 + (real)0.1 * sh[i];
    convb_from_chan(dec ? cout : cin, n, (int)(nin / ((size_t)(dec ? cout : cin) * n)), x, xb);
    const film_stage st = {sc, sh, true, (real)0.3};
    double *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = calloc((size_t)reps, sizeof(double));
    for (int r = 0; r < reps; r++) {
        tool_fill(d, nout, 5);
        double t0 = tool_now();
        if (dec)
            deconv_film_forward(&g, x, k, b, &st, z, o, w1);
        else
            conv_film_forward(&g, x, k, b, &st, z, o, w1);
        double t1 = tool_now();
        if (dec)
            deconv_film_backward(&g, x, k, &st, z, d, with_dx ? dx : NULL, dk, db, ds, dt, w1);
        else
            conv_film_backward(&g, x, k, &st, z, d, with_dx ? dx : NULL, dk, db, ds, dt, w1);
        double t2 = tool_now();
        t[0][r] = t1 - t0;
        t[1][r] = t2 - t0;
        tool_fill(dbk, bout, 5);
        t0 = tool_now();
        if (dec)
            convb_deconv_forward(&g, xb, k, b, &st, zb, ob, w2);
        else
            convb_conv_forward(&g, xb, k, b, &st, zb, ob, w2);
        t1 = tool_now();
        if (dec)
            convb_deconv_backward(&g, xb, k, &st, zb, dbk, with_dx ? dxb : NULL, dk, db, ds, dt,
                                  w2);
        else
            convb_conv_backward(&g, xb, k, &st, zb, dbk, with_dx ? dxb : NULL, dk, db, ds, dt, w2);
        t2 = tool_now();
        t[2][r] = t1 - t0;
        t[3][r] = t2 - t0;
    }
    const double yf = tool_median(t[0], reps), ya = tool_median(t[1], reps);
    const double bf = tool_median(t[2], reps), ba = tool_median(t[3], reps);
    printf("%s n=%d %d->%d %dx%d stride %d (route %d): layers.h forward %.3f, with backward %.3f "
           "ms; convb %.3f, %.3f ms; convb faster %.2fx (forward %.2fx)\n",
           dec ? "deconv" : "conv", n, cin, cout, h, h, s, g.route, yf * 1e3, ya * 1e3, bf * 1e3,
           ba * 1e3, ya / ba, yf / bf);
    return 0;
}
