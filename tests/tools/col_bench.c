/* col_bench.c — times im2col and col2im of src/layers.c (the GEMM route's
 * copies between the [C][N][H][W] activations and the column buffer) for
 * every call a Shapes3D training step makes at batch 64, one at a time, and
 * prints each call's best time, their sum, and a hash of what they wrote
 * (the same hash before and after a change: the same bits). It includes
 * src/layers.c itself to reach its static functions. Not part of the build
 * (docs/DESIGN.md, lever 33, has its numbers):
 *
 *   make bin/yoto && mpicc -std=c11 -D_DEFAULT_SOURCE -O3 -march=x86-64-v3 \
 *       -ffp-contract=fast -fno-math-errno -Iinclude -Isrc $(pkg-config --cflags openblas) \
 *       tests/tools/col_bench.c $(ls build/rel/src/*.o | grep -v 'main.o\|layers.o') \
 *       $(make -s print-ldlibs) -o /tmp/col_bench
 *   taskset -c 0 /tmp/col_bench [REPS [COLD]]
 *
 * COLD 1: each repetition starts with the caches full of other data. */
#include "../../src/layers.c"

#include <stdio.h>

#include "toolutil.h"

#define N 64

enum { IM2COL, COL2IM };
typedef struct {
    const char *name;
    int fn, cin, h, cout; /* the (adjoint) conv's geometry, stride 2 */
} call;

/* Shapes3D's GEMM-route layers at batch 64: enc/block3 (conv 32 -> 64 at
 * 8 x 8), dec/block3 and dec/block2 (deconvs 64 -> 64 at 4 x 4 and 64 -> 32
 * at 8 x 8, as their adjoint convs) */
static const call calls[] = {
    {"enc3 fwd im2col", IM2COL, 32, 8, 64},  {"enc3 bwd im2col", IM2COL, 32, 8, 64},
    {"enc3 bwd col2im", COL2IM, 32, 8, 64},  {"dec3 fwd col2im", COL2IM, 64, 8, 64},
    {"dec3 bwd im2col", IM2COL, 64, 8, 64},  {"dec2 fwd col2im", COL2IM, 32, 16, 64},
    {"dec2 bwd im2col", IM2COL, 32, 16, 64},
};

int main(int argc, char **argv) {
    tool_run run = tool_run_start(argc, argv);
    for (size_t k = 0; k < sizeof calls / sizeof *calls; k++) {
        const call *p = &calls[k];
        conv_geom g = conv_geom_make(N, p->cin, p->h, p->h, p->cout, 2);
        const size_t xlen = (size_t)g.cin * N * g.h * g.w, clen = gemm_col_size(&g);
        real *x = malloc(xlen * sizeof *x), *col = malloc(clen * sizeof *col);
        real *pad = malloc((size_t)g.chunk * pad_size(&g) * sizeof *pad);
        tool_fill(x, xlen, 1);
        tool_fill(col, clen, 2);
        double best = 1e30;
        for (int r = 0; r < run.reps; r++) {
            const double t0 = tool_run_rep(&run);
            for (int n0 = 0; n0 < N; n0 += g.chunk) {
                const int nc = YT_MIN(g.chunk, N - n0);
                if (p->fn == IM2COL)
                    im2col(&g, x, n0, nc, col, pad);
                else
                    col2im(&g, col, n0, nc, x, pad);
            }
            best = YT_MIN(best, tool_now() - t0);
        }
        run.h = tool_hash(p->fn == IM2COL ? col : x, (p->fn == IM2COL ? clen : xlen) * sizeof(real),
                          run.h);
        printf("%-18s %7.3f ms  (col %4.1f MB, chunk %d)\n", p->name, 1e3 * best,
               clen * sizeof(real) / 1e6, g.chunk);
        run.total += best;
        free(x), free(col), free(pad);
    }
    tool_run_end(&run, "all calls");
    return 0;
}
