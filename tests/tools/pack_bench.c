/* pack_bench.c — times the packing and unpacking passes of src/convk.c (the
 * copies between the [C][N][H][W] activations and the kernels' grids, with
 * the FiLM stage's forward or backward where the model runs them) one at a
 * time, for every pass a Shapes3D training step runs at batch 64, and prints
 * each pass's best time, their sum, and a hash of what the passes wrote (the
 * same hash before and after a change of the passes, at the same REPS: the
 * same bits; the bias sums add up over the repetitions). It
 * includes src/convk.c itself to reach its static functions. Not part of the
 * build (docs/DESIGN.md, lever 25, has its numbers):
 *
 *   make bin/yoto && mpicc -std=c11 -D_DEFAULT_SOURCE -O3 -march=x86-64-v3 \
 *       -ffp-contract=fast -fno-math-errno -Iinclude -Isrc $(pkg-config --cflags openblas) \
 *       tests/tools/pack_bench.c $(ls build/rel/src/*.o | grep -v 'main.o\|convk.o') \
 *       $(make -s print-ldlibs) -o /tmp/pack_bench
 *   taskset -c 0 /tmp/pack_bench [REPS [COLD [NAME]]]
 *
 * COLD 1: each repetition starts with the caches full of other data, as
 * the activations of a training step are (all passes about 1.5 times their
 * time from cache). NAME: only the passes whose name contains it (the sum
 * and the hash then cover those). */
#include "../../src/convk.c"

#include <stdio.h>
#include <string.h>

#include "layers.h"
#include "toolutil.h"

#define N 64

/* one pass of a layer: which function, the layer (as layers.h's conv
 * geometry), and the stage it applies */
enum { PACK_X, PACK_Y, UNPACK_X, UNPACK_Y };
enum { NONE, XSTAGE, STAGE_BWD, STAGE_FWD_O };
typedef struct {
    const char *name;
    int fn, cin, h, cout, s, stage;
} pass;

/* Shapes3D's direct layers at batch 64 (model.c: enc0, enc1, dec2, dec1, dec0
 * are lazy, enc2 writes o for the GEMM route's enc3); a deconv as its adjoint
 * conv (X side: its output) */
static const pass passes[] = {
    {"enc0 fwd pack_x", PACK_X, 3, 64, 8, 2, NONE},
    {"enc0 fwd unpack_y", UNPACK_Y, 3, 64, 8, 2, NONE},
    {"enc1 fwd pack_x xst", PACK_X, 8, 32, 16, 2, XSTAGE},
    {"enc1 fwd unpack_y", UNPACK_Y, 8, 32, 16, 2, NONE},
    {"enc2 fwd pack_x xst", PACK_X, 16, 16, 32, 2, XSTAGE},
    {"enc2 fwd unpack_y o", UNPACK_Y, 16, 16, 32, 2, STAGE_FWD_O},
    {"dec1 fwd pack_y xst", PACK_Y, 16, 32, 32, 2, XSTAGE},
    {"dec1 fwd unpack_x", UNPACK_X, 16, 32, 32, 2, NONE},
    {"dec0 fwd pack_y xst", PACK_Y, 8, 64, 16, 2, XSTAGE},
    {"dec0 fwd unpack_x", UNPACK_X, 8, 64, 16, 2, NONE},
    {"out fwd pack_x xst", PACK_X, 8, 64, 3, 1, XSTAGE},
    {"out fwd unpack_y", UNPACK_Y, 8, 64, 3, 1, NONE},
    {"out bwd pack_x xst", PACK_X, 8, 64, 3, 1, XSTAGE},
    {"out bwd pack_y", PACK_Y, 8, 64, 3, 1, NONE},
    {"out bwd unpack_x", UNPACK_X, 8, 64, 3, 1, NONE},
    {"dec0 bwd pack_x sb", PACK_X, 8, 64, 16, 2, STAGE_BWD},
    {"dec0 bwd pack_y xst", PACK_Y, 8, 64, 16, 2, XSTAGE},
    {"dec0 bwd unpack_y", UNPACK_Y, 8, 64, 16, 2, NONE},
    {"dec1 bwd pack_x sb", PACK_X, 16, 32, 32, 2, STAGE_BWD},
    {"dec1 bwd pack_y xst", PACK_Y, 16, 32, 32, 2, XSTAGE},
    {"dec1 bwd unpack_y", UNPACK_Y, 16, 32, 32, 2, NONE},
    {"enc2 bwd pack_x xst", PACK_X, 16, 16, 32, 2, XSTAGE},
    {"enc2 bwd pack_y sb", PACK_Y, 16, 16, 32, 2, STAGE_BWD},
    {"enc2 bwd unpack_x", UNPACK_X, 16, 16, 32, 2, NONE},
    {"enc1 bwd pack_x xst", PACK_X, 8, 32, 16, 2, XSTAGE},
    {"enc1 bwd pack_y sb", PACK_Y, 8, 32, 16, 2, STAGE_BWD},
    {"enc1 bwd unpack_x", UNPACK_X, 8, 32, 16, 2, NONE},
    {"enc0 bwd pack_x", PACK_X, 3, 64, 8, 2, NONE},
    {"enc0 bwd pack_y sb", PACK_Y, 3, 64, 8, 2, STAGE_BWD},
};

int main(int argc, char **argv) {
    tool_run run = tool_run_start(argc, argv);
    const char *only = argc > 3 ? argv[3] : NULL;
    for (size_t k = 0; k < sizeof passes / sizeof *passes; k++) {
        const pass *p = &passes[k];
        if (only && !strstr(p->name, only)) continue;
        conv_geom g = conv_geom_make(N, p->cin, p->h, p->h, p->cout, p->s);
        g.threads = 1;
        const bool xside = p->fn == PACK_X || p->fn == UNPACK_X;
        const int c = xside ? p->cin : p->cout;
        const size_t len = (size_t)c * N * (xside ? (size_t)p->h * p->h : (size_t)g.ho * g.wo);
        real *x = tool_buf(len, 1), *z = tool_buf(len, 2), *o = tool_buf(len, 3);
        real *sc = tool_buf((size_t)N * c, 4), *sh = tool_buf((size_t)N * c, 5);
        real *ds = tool_buf((size_t)N * c, 6), *dt = tool_buf((size_t)N * c, 7);
        double *sums = calloc((size_t)c, sizeof *sums);
        for (size_t i = 0; i < (size_t)N * c; i++)
            sc[i] = 1 + sc[i] * 0.1f;
        film_stage st = {sc, sh, true, (real)0.3};
        stage_io sio = {.st = &st, .z = z, .o = o, .dscale = ds, .dshift = dt};
        if (p->stage == XSTAGE) g.xstage = &st;
        const stage_io *io = p->stage == STAGE_BWD || p->stage == STAGE_FWD_O ? &sio : NULL;
        real *work = aligned_alloc(64, round_up(convk_work_size(&g), 16) * sizeof(real));
        workspace ws = carve(&g, work, 0);
        real *grid = p->fn == PACK_Y || p->fn == UNPACK_Y ? ws.gy : ws.px;
        if (p->fn == UNPACK_X || p->fn == UNPACK_Y) { /* something to unpack */
            grid = ws.out;
            tool_fill(grid, YT_MAX((size_t)g.cin * ws.L.np, (size_t)g.cout) * ws.L.pitch, 9);
        }
        double best = 1e30;
        for (int r = 0; r < run.reps; r++) {
            const double t0 = tool_run_rep(&run); /* COLD: the tensors out of the caches */
            for (int n0 = 0; n0 < N; n0 += ws.chunk) {
                const int ns = YT_MIN(ws.chunk, N - n0);
                switch (p->fn) {
                case PACK_X:
                    pack_x(&g, &ws.L, x, n0, ns, grid, p->stage == STAGE_BWD ? sums : NULL, io,
                           g.xstage, ws.row);
                    break;
                case PACK_Y:
                    pack_y(&ws.L, g.cout, N, g.ho, g.wo, x, n0, ns, grid,
                           p->stage == STAGE_BWD ? sums : NULL, io, g.xstage);
                    break;
                case UNPACK_X:
                    unpack_x(&g, &ws.L, grid, n0, ns, x, io);
                    break;
                case UNPACK_Y:
                    unpack_y(&ws.L, g.cout, N, g.ho, g.wo, grid, n0, ns, x, io);
                    break;
                }
                if (r == 0 && (p->fn == PACK_X || p->fn == PACK_Y)) /* the last chunk's grid */
                    run.h = tool_hash(grid,
                                      (p->fn == PACK_X ? (size_t)g.cin * ws.L.np : (size_t)g.cout) *
                                          ws.L.pitch * sizeof(real),
                                      run.h);
            }
            best = YT_MIN(best, tool_now() - t0);
        }
        run.h = tool_hash(x, len * sizeof(real), run.h);
        run.h = tool_hash(o, len * sizeof(real), run.h);
        run.h = tool_hash(ds, (size_t)N * c * sizeof(real), run.h);
        run.h = tool_hash(dt, (size_t)N * c * sizeof(real), run.h);
        run.h = tool_hash(sums, (size_t)c * sizeof *sums, run.h);
        printf("%-22s %7.3f ms  (%5.1f MB)\n", p->name, 1e3 * best, len * sizeof(real) / 1e6);
        run.total += best;
        free(x), free(z), free(o), free(sc), free(sh), free(ds), free(dt), free(sums), free(work);
    }
    tool_run_end(&run, "all passes");
    return 0;
}
