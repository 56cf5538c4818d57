/* direct_bench.c — times the direct kernels' layer calls of src/convk.c
 * (packing, kernels and unpacking together, no FiLM stage) for every direct
 * layer of a Shapes3D training step at batch 64, forward and backward, and
 * prints each call's median time, their sum, and a hash of what the first
 * repetition wrote (outputs, input gradients, kernel and bias gradients:
 * the same hash before and after a change that keeps the bits). Where
 * pack_bench times the copies alone, this times what a change of the
 * kernels or of their loops over positions moves. Not part of the build
 * (docs/DESIGN.md, lever 40, has its numbers):
 *
 *   make bin/yoto && mpicc -std=c11 -D_DEFAULT_SOURCE -O3 -march=x86-64-v3 \
 *       -ffp-contract=fast -fno-math-errno -Iinclude -Isrc $(pkg-config --cflags openblas) \
 *       tests/tools/direct_bench.c $(ls build/rel/src/*.o | grep -v 'main.o') \
 *       $(make -s print-ldlibs) -o /tmp/direct_bench
 *   taskset -c 0 /tmp/direct_bench [REPS [COLD]]
 *
 * COLD 1: each repetition of a call starts with the caches full of other
 * data. */
#include <stdio.h>
#include <string.h>

#include "convk.h"
#include "layers.h"
#include "toolutil.h"

#define N 64
#define MAX_REPS 1000

/* Shapes3D's direct layers (model.c): a deconv as its adjoint conv, whose
 * X side is the deconv's output; enc/block0 has no input gradient */
typedef struct {
    const char *name;
    int cin, h, cout, stride;
    bool deconv, dx;
} layer;

static const layer layers[] = {
    {"enc0", 3, 64, 8, 2, false, false},  {"enc1", 8, 32, 16, 2, false, true},
    {"enc2", 16, 16, 32, 2, false, true}, {"dec1", 16, 32, 32, 2, true, true},
    {"dec0", 8, 64, 16, 2, true, true},   {"out", 8, 64, 3, 1, false, true},
};
#define NL (sizeof layers / sizeof *layers)

int main(int argc, char **argv) {
    tool_run run = tool_run_start(argc, argv);
    if (run.reps < 1 || run.reps > MAX_REPS) {
        fprintf(stderr, "direct_bench: REPS from 1 to %d\n", MAX_REPS);
        return 2;
    }
    static double tf[MAX_REPS], tb[MAX_REPS];
    for (size_t l = 0; l < NL; l++) {
        const layer *L = &layers[l];
        conv_geom g = conv_geom_make(N, L->cin, L->h, L->h, L->cout, L->stride);
        g.threads = 1;
        if (!convk_supports(&g)) return 1;
        const size_t nx = (size_t)N * L->cin * L->h * L->h, ny = (size_t)N * L->cout * g.ho * g.wo;
        const size_t nin = L->deconv ? ny : nx, nout = L->deconv ? nx : ny;
        const size_t nk = (size_t)L->cin * L->cout * 9, nb = (size_t)(L->deconv ? L->cin : L->cout);
        real *x = tool_buf(nin, 1), *k = tool_buf(nk, 2), *b = tool_buf(nb, 3),
             *y = tool_buf(nout, 4);
        real *dy = tool_buf(nout, 5), *dx = tool_buf(nin, 6), *dk = tool_buf(nk, 7),
             *db = tool_buf(nb, 8);
        real *work = tool_buf(convk_work_size(&g), 9);
        for (int r = 0; r < run.reps; r++) {
            memset(dk, 0, nk * sizeof *dk); /* the backward adds to them */
            memset(db, 0, nb * sizeof *db);
            double t0 = tool_run_rep(&run);
            if (L->deconv)
                convk_deconv_forward(&g, x, k, b, y, NULL, NULL, work);
            else
                convk_conv_forward(&g, x, k, b, y, NULL, NULL, work);
            tf[r] = tool_now() - t0;
            real *gx = L->dx ? dx : NULL;
            t0 = tool_run_rep(&run);
            if (L->deconv)
                convk_deconv_backward(&g, x, k, dy, gx, dk, db, NULL, NULL, NULL, NULL, work);
            else
                convk_conv_backward(&g, x, k, dy, gx, dk, db, NULL, NULL, NULL, NULL, work);
            tb[r] = tool_now() - t0;
            if (r > 0) continue;
            run.h = tool_hash(y, nout * sizeof *y, run.h);
            if (gx) run.h = tool_hash(dx, nin * sizeof *dx, run.h);
            run.h = tool_hash(dk, nk * sizeof *dk, run.h);
            run.h = tool_hash(db, nb * sizeof *db, run.h);
        }
        const double f = tool_median(tf, run.reps), bw = tool_median(tb, run.reps);
        printf("%-6s forward %7.3f ms  backward %7.3f ms\n", L->name, 1e3 * f, 1e3 * bw);
        run.total += f + bw;
        free(x), free(k), free(b), free(y), free(dy), free(dx), free(dk), free(db), free(work);
    }
    tool_run_end(&run, "all layers");
    return 0;
}
