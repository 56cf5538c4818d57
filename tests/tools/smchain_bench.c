/* smchain_bench.c — levers 43 and 44's prototype: Shapes3D's decoder tail (dec/block1,
 * dec/block0 and the output conv, with their FiLM + leaky ReLU stages),
 * forward and backward, with the activations kept in a sample-minor layout
 * from layer to layer, timed against the same three layers through
 * convk.c's calls as model.c makes them (lazy stages, the stage's backward
 * folded into the packing of the incoming gradient); and the encoder's head
 * (enc/block0-2) the same way (`enc`).
 *
 * Layout: a tensor is [C][G][H + 2][W + 2][VL]: G groups of VL samples, a
 * vector holds one position of VL samples, and every channel plane of a
 * group carries a one-pixel zero border that no kernel writes. So every tap
 * of every output position is one whole vector at a fixed offset (no
 * padding copies, no bounds), and a layer's output is the next layer's
 * input as it stands (no packing, no unpacking). The only copies are at the
 * chain's ends: dec/block2's output in, the gradient w.r.t. it out.
 *
 * Three computations, for a conv g from its X side [cin][h][w] to its Y side
 * [cout][ho][wo] (convk.c's notation; a deconv is the adjoint of such a conv):
 *   A  Y = conv(X) (+ bias)          conv forward; deconv backward's dx
 *   B  X = conv^T(Y) (+ bias)        deconv forward; conv backward's dx
 *   C  dk += corr(Y, X)              both kernel gradients, lanes summed at the end
 * A and B run register tiles of CB output channels x V positions of a row;
 * their stores write z (and the stage's output o: the forward), or, in the
 * backward, take the incoming gradient w.r.t. the producer's o through the
 * producer's stage (its z read there) and store the gradient w.r.t. its z,
 * with the stage's sums per sample in vector lanes (the lanes are samples:
 * no reduction). C runs tiles of CB output channels x the 3 taps of one
 * kernel row along a row of Y.
 *
 * Prints each chain's median forward and backward time and the largest
 * relative difference of each result (out, the gradient w.r.t. dec/block2's
 * output, the kernel and bias gradients, the stages' sums) between the two.
 * Not part of the build (docs/DESIGN.md, lever 43, has its numbers):
 *
 *   make bin/yoto && mpicc -std=c11 -D_DEFAULT_SOURCE -O3 -march=x86-64-v3 \
 *       -ffp-contract=fast -fno-math-errno -Iinclude -Isrc $(pkg-config --cflags openblas) \
 *       tests/tools/smchain_bench.c $(ls build/rel/src/*.o | grep -v 'main.o') \
 *       $(make -s print-ldlibs) -o /tmp/smchain_bench
 *   taskset -c 0 /tmp/smchain_bench [REPS [COLD [BATCH [dec|enc|both [GROUPS [FUSED]]]]]]
 *
 * GROUPS: groups a pass takes at a time (1). FUSED 1: the decoder tail's
 * backward of each group right after its forward (what the trainer runs,
 * docs/DESIGN.md, lever 60; its "sample-minor forward" then holds both),
 * else every group's forward first.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "convk.h"
#include "convs.h"
#include "layers.h"
#include "simd.h"
#include "toolutil.h"

#define MAX_REPS 1000

/* a zeroed tensor of the layout (its border and spare lanes stay zero) */
typedef struct {
    convs_shape s;
    real *p;
} smt;

static smt sm_make(int c, int n, int h, int w) {
    smt t = {.s = convs_shape_make(c, n, n, h, w)};
    const size_t bytes = (convs_len(&t.s) * sizeof(real) + 63) / 64 * 64;
    t.p = aligned_alloc(64, bytes);
    if (!t.p) exit(1);
    memset(t.p, 0, bytes);
    return t;
}

static rvec *rvecs(size_t n) {
    rvec *p = aligned_alloc(64, (n ? n : 1) * sizeof(rvec));
    if (!p) exit(1);
    memset(p, 0, (n ? n : 1) * sizeof(rvec));
    return p;
}

static double *sums(size_t n) {
    double *p = calloc(n, sizeof *p);
    if (!p) exit(1);
    return p;
}

static convs_stage stage_of(const film_stage *st, int c, int n) {
    convs_stage s;
    convs_stage_set(&s, st, c, n, rvecs(convs_stage_len(c, n)));
    return s;
}

/* ---- the bench ------------------------------------------------------------------------ */

static double maxrel(const real *a, const real *b, size_t n) {
    double md = 0, mx = 0;
    for (size_t i = 0; i < n; i++)
        md = fmax(md, fabs((double)a[i] - b[i])), mx = fmax(mx, fabs((double)a[i]));
    return mx > 0 ? md / mx : md;
}

static film_stage stage_buf(int n, int c, unsigned seed) {
    real *sc = tool_buf((size_t)n * c, seed), *sh = tool_buf((size_t)n * c, seed + 1);
    for (size_t i = 0; i < (size_t)n * c; i++)
        sc[i] = 1 + (real)0.01 * sc[i], sh[i] *= (real)0.1;
    return (film_stage){.scale = sc, .shift = sh, .lrelu = true, .alpha = (real)0.3};
}

/* a square conv on convk's direct kernels, one thread */
static conv_geom direct(int n, int cin, int h, int cout, int stride) {
    conv_geom g = conv_geom_make(n, cin, h, h, cout, stride);
    g.threads = 1;
    if (!conv_geom_route(&g, CONV_DIRECT)) exit(1);
    return g;
}

/* each op's time per repetition, summed over the group blocks */
#define T_(i, call)                                                                                \
    do {                                                                                           \
        const double t_ = tool_now();                                                              \
        call;                                                                                      \
        top[i][r] += tool_now() - t_;                                                              \
    } while (0)

/* each op's median time and GFLOP/s (its conv's multiply-adds over the batch) */
static void print_ops(int nop, double top[][MAX_REPS], const char *const *opn,
                      const conv_geom *const *opg, int reps) {
    printf("sample-minor ops (ms, GFLOP/s):");
    for (int i = 0; i < nop; i++) {
        const conv_geom *g = opg[i];
        const double t = tool_median(top[i], reps),
                     flops = 2.0 * g->n * g->cin * g->cout * 9 * g->ho * g->wo;
        printf(" %s %.3f %.0f%s", opn[i], 1e3 * t, flops / t * 1e-9, i < nop - 1 ? "," : "\n");
    }
}

/* a chain's kernel calls on groups [ga, gb), wbuf: A's and B's scratch */
#define WBUF_LEN (64 * 64 * 9)

/* the decoder's tail: dec/block1, dec/block0 and the output conv */
static void dec_chain(tool_run *rp, int N, int GB, bool fused) {
    tool_run run = *rp;
    const int G = (N + VL - 1) / VL;
    /* dec/block1 (32 -> 16 at 16 -> 32), dec/block0 (16 -> 8 at 32 -> 64) as
     * the convs they are the adjoints of, and the output conv (8 -> 3) */
    const conv_geom g1 = direct(N, 16, 32, 32, 2), g0 = direct(N, 8, 64, 16, 2),
                    go = direct(N, 8, 64, 3, 1);
    const size_t n2 = (size_t)32 * N * 16 * 16, n1 = (size_t)16 * N * 32 * 32,
                 n0 = (size_t)8 * N * 64 * 64, no = (size_t)3 * N * 64 * 64;
    const size_t nk1 = 32 * 16 * 9, nk0 = 16 * 8 * 9, nko = 3 * 8 * 9;
    real *o2 = tool_buf(n2, 1), *k1 = tool_buf(nk1, 2), *k0 = tool_buf(nk0, 3),
         *ko = tool_buf(nko, 4), *b1 = tool_buf(16, 5), *b0 = tool_buf(8, 6), *bo = tool_buf(3, 7);
    real *dout = tool_buf(no, 8);
    film_stage st1 = stage_buf(N, 16, 20), st0 = stage_buf(N, 8, 30);
    size_t ws = YT_MAX(convk_work_size(&g1), YT_MAX(convk_work_size(&g0), convk_work_size(&go)));
    real *work = tool_buf(ws, 9), *wbuf = tool_buf(WBUF_LEN, 0);
    /* convk's chain: its results */
    real *z1 = tool_buf(n1, 10), *z0 = tool_buf(n0, 11), *out = tool_buf(no, 12);
    real *d0 = tool_buf(n0, 13), *d1 = tool_buf(n1, 14), *d2 = tool_buf(n2, 15);
    real *dk1 = tool_buf(nk1, 0), *dk0 = tool_buf(nk0, 0), *dko = tool_buf(nko, 0);
    real *db1 = tool_buf(16, 0), *db0 = tool_buf(8, 0), *dbo = tool_buf(3, 0);
    real *gs1 = tool_buf((size_t)N * 16, 0), *gt1 = tool_buf((size_t)N * 16, 0);
    real *gs0 = tool_buf((size_t)N * 8, 0), *gt0 = tool_buf((size_t)N * 8, 0);
    /* the sample-minor chain: its tensors, and its results in convk's layouts */
    smt S2 = sm_make(32, N, 16, 16), Z1 = sm_make(16, N, 32, 32), O1 = sm_make(16, N, 32, 32),
        Z0 = sm_make(8, N, 64, 64), O0 = sm_make(8, N, 64, 64), SO = sm_make(3, N, 64, 64);
    smt DO = sm_make(3, N, 64, 64), DZ0 = sm_make(8, N, 64, 64), DZ1 = sm_make(16, N, 32, 32),
        D2 = sm_make(32, N, 16, 16);
    convs_stage s1 = stage_of(&st1, 16, N), s0 = stage_of(&st0, 8, N);
    rvec *acc = rvecs(nko + nk0 + nk1);
    double accb[3];
    const size_t ns1 = convs_sums_len(16, N), ns0 = convs_sums_len(8, N);
    double *sv1 = sums(ns1), *tv1 = sums(ns1), *sv0 = sums(ns0), *tv0 = sums(ns0);
    real *sout = tool_buf(no, 0), *sd2 = tool_buf(n2, 0);
    real *sdk1 = tool_buf(nk1, 0), *sdk0 = tool_buf(nk0, 0), *sdko = tool_buf(nko, 0);
    real *sdb1 = tool_buf(16, 0), *sdb0 = tool_buf(8, 0), *sdbo = tool_buf(3, 0);
    real *ss1 = tool_buf((size_t)N * 16, 0), *st1s = tool_buf((size_t)N * 16, 0);
    real *ss0 = tool_buf((size_t)N * 8, 0), *st0s = tool_buf((size_t)N * 8, 0);
    static double tkf[MAX_REPS], tkb[MAX_REPS], tsf[MAX_REPS], tsb[MAX_REPS], tsi[MAX_REPS],
        tso[MAX_REPS];
    static double top[9][MAX_REPS];
    memset(top, 0, sizeof top);
    for (int r = 0; r < run.reps; r++) {
        /* convk, as model.c calls it: lazy stages (the consumer applies them
         * while packing), the stage's backward in the packing of dy */
        memset(dk1, 0, nk1 * sizeof *dk1), memset(dk0, 0, nk0 * sizeof *dk0);
        memset(dko, 0, nko * sizeof *dko), memset(db1, 0, 16 * sizeof *db1);
        memset(db0, 0, 8 * sizeof *db0), memset(dbo, 0, 3 * sizeof *dbo);
        conv_geom G1 = g1, G0 = g0, GO = go;
        G0.xstage = &st1, GO.xstage = &st0;
        double t = tool_run_rep(&run);
        convk_deconv_forward(&G1, o2, k1, b1, z1, &st1, NULL, work);
        convk_deconv_forward(&G0, z1, k0, b0, z0, &st0, NULL, work);
        convk_conv_forward(&GO, z0, ko, bo, out, NULL, NULL, work);
        tkf[r] = tool_now() - t;
        t = tool_run_rep(&run);
        convk_conv_backward(&GO, z0, ko, dout, d0, dko, dbo, NULL, NULL, NULL, NULL, work);
        convk_deconv_backward(&G0, z1, k0, d0, d1, dk0, db0, &st0, z0, gs0, gt0, work);
        convk_deconv_backward(&G1, o2, k1, d1, d2, dk1, db1, &st1, z1, gs1, gt1, work);
        tkb[r] = tool_now() - t;

        /* sample-minor, GB groups at a time through the three layers */
        memset(sdk1, 0, nk1 * sizeof *sdk1), memset(sdk0, 0, nk0 * sizeof *sdk0);
        memset(sdko, 0, nko * sizeof *sdko), memset(sdb1, 0, 16 * sizeof *sdb1);
        memset(sdb0, 0, 8 * sizeof *sdb0), memset(sdbo, 0, 3 * sizeof *sdbo);
        t = tool_run_rep(&run);
        convs_from_chan(&S2.s, o2, S2.p, 0, G);
        tsi[r] = tool_now() - t;
        const convs_stores zo1 = {CONVS_ZO, &s1, O1.p, NULL, NULL},
                           zo0 = {CONVS_ZO, &s0, O0.p, NULL, NULL},
                           z = {CONVS_Z, NULL, NULL, NULL, NULL},
                           dz0 = {CONVS_DZ, &s0, Z0.p, sv0, tv0},
                           dz1 = {CONVS_DZ, &s1, Z1.p, sv1, tv1};
        convs_from_chan(&DO.s, dout, DO.p, 0, G); /* the loss would write it so */
        memset(acc, 0, (nko + nk0 + nk1) * sizeof *acc), memset(accb, 0, sizeof accb);
        memset(sv0, 0, ns0 * sizeof *sv0), memset(tv0, 0, ns0 * sizeof *tv0);
        memset(sv1, 0, ns1 * sizeof *sv1), memset(tv1, 0, ns1 * sizeof *tv1);
        /* pass 0 the forward (fused: each group block's backward right
         * after its forward), pass 1 the backward */
        for (int pass = 0; pass < (fused ? 1 : 2); pass++) {
            t = tool_now();
            for (int ga = 0; ga < G; ga += GB) {
                const int gb = YT_MIN(G, ga + GB);
                if (pass == 0) {
                    T_(0, convs_b(&g1, &S2.s, S2.p, k1, b1, &Z1.s, Z1.p, &zo1, wbuf, ga, gb));
                    T_(1, convs_b(&g0, &O1.s, O1.p, k0, b0, &Z0.s, Z0.p, &zo0, wbuf, ga, gb));
                    T_(2, convs_a(&go, &O0.s, O0.p, ko, bo, &SO.s, SO.p, &z, wbuf, ga, gb));
                    if (!fused) continue;
                }
                T_(3, convs_c(&go, &DO.s, DO.p, &O0.s, O0.p, acc, ga, gb);
                   convs_sum(&DO.s, DO.p, accb, ga, gb));
                T_(4, convs_b(&go, &DO.s, DO.p, ko, NULL, &DZ0.s, DZ0.p, &dz0, wbuf, ga, gb));
                T_(5, convs_c(&g0, &O1.s, O1.p, &DZ0.s, DZ0.p, acc + nko, ga, gb));
                T_(6, convs_a(&g0, &DZ0.s, DZ0.p, k0, NULL, &DZ1.s, DZ1.p, &dz1, wbuf, ga, gb));
                T_(7, convs_c(&g1, &S2.s, S2.p, &DZ1.s, DZ1.p, acc + nko + nk0, ga, gb));
                T_(8, convs_a(&g1, &DZ1.s, DZ1.p, k1, NULL, &D2.s, D2.p, &z, wbuf, ga, gb));
            }
            if (pass == 0) { /* then the backward's clock: pass 1, the sums at the end */
                tsf[r] = tool_now() - t;
                t = tool_now();
            }
        }
        convs_lanes_end(acc, nko, sdko);
        for (int i = 0; i < 3; i++)
            sdbo[i] += (real)accb[i];
        convs_stage_end(&s0, sv0, tv0, 8, N, ss0, st0s, sdb0);
        convs_lanes_end(acc + nko, nk0, sdk0);
        convs_stage_end(&s1, sv1, tv1, 16, N, ss1, st1s, sdb1);
        convs_lanes_end(acc + nko + nk0, nk1, sdk1);
        tsb[r] = tool_now() - t;
        t = tool_now();
        convs_to_chan(&D2.s, D2.p, sd2, 0, G);
        tso[r] = tool_now() - t;
    }
    convs_to_chan(&SO.s, SO.p, sout, 0, G);
    static const char *opn[9] = {"dec1 fwd", "dec0 fwd", "out fwd", "out dk+db", "out dx",
                                 "dec0 dk",  "dec0 dx",  "dec1 dk", "dec1 dx"};
    const conv_geom *opg[9] = {&g1, &g0, &go, &go, &go, &g0, &g0, &g1, &g1};
    print_ops(9, top, opn, opg, run.reps);
    {
        double tt[MAX_REPS];
        for (int r = 0; r < run.reps; r++)
            tt[r] = tsf[r] + tsb[r];
        printf("decoder tail, batch %d, %s: forward and backward %.3f ms\n", N,
               fused ? "each group's backward right after its forward" : "every forward first",
               1e3 * tool_median(tt, run.reps));
    }
    printf("decoder tail, batch %d: convk forward %.3f ms, backward %.3f ms | sample-minor forward "
           "%.3f ms, backward %.3f ms, copies in %.3f and out %.3f ms\n",
           N, 1e3 * tool_median(tkf, run.reps), 1e3 * tool_median(tkb, run.reps),
           1e3 * tool_median(tsf, run.reps), 1e3 * tool_median(tsb, run.reps),
           1e3 * tool_median(tsi, run.reps), 1e3 * tool_median(tso, run.reps));
    printf("largest relative differences: out %.2g, d(dec2 out) %.2g, dk1 %.2g, dk0 %.2g, dko "
           "%.2g, db1 %.2g, db0 %.2g, dbo %.2g, dscale1 %.2g, dshift1 %.2g, dscale0 %.2g, "
           "dshift0 %.2g\n",
           maxrel(out, sout, no), maxrel(d2, sd2, n2), maxrel(dk1, sdk1, nk1),
           maxrel(dk0, sdk0, nk0), maxrel(dko, sdko, nko), maxrel(db1, sdb1, 16),
           maxrel(db0, sdb0, 8), maxrel(dbo, sdbo, 3), maxrel(gs1, ss1, (size_t)N * 16),
           maxrel(gt1, st1s, (size_t)N * 16), maxrel(gs0, ss0, (size_t)N * 8),
           maxrel(gt0, st0s, (size_t)N * 8));
}

/* the encoder's head: enc/block0 (3 -> 8 at 64 -> 32), enc/block1 (8 -> 16
 * at 32 -> 16), enc/block2 (16 -> 32 at 16 -> 8); the image in, block 2's
 * stage output out to enc/block3 (the GEMM route), its gradient back */
static void enc_chain(tool_run *rp, int N, int GB) {
    tool_run run = *rp;
    const int G = (N + VL - 1) / VL;
    const conv_geom g0 = direct(N, 3, 64, 8, 2), g1 = direct(N, 8, 32, 16, 2),
                    g2 = direct(N, 16, 16, 32, 2);
    const size_t ni = (size_t)3 * N * 64 * 64, n0 = (size_t)8 * N * 32 * 32,
                 n1 = (size_t)16 * N * 16 * 16, n2 = (size_t)32 * N * 8 * 8;
    const size_t nk0 = 8 * 3 * 9, nk1 = 16 * 8 * 9, nk2 = 32 * 16 * 9;
    real *img = tool_buf(ni, 1), *k0 = tool_buf(nk0, 2), *k1 = tool_buf(nk1, 3),
         *k2 = tool_buf(nk2, 4), *b0 = tool_buf(8, 5), *b1 = tool_buf(16, 6), *b2 = tool_buf(32, 7);
    real *dy2 = tool_buf(n2, 8);
    film_stage st0 = stage_buf(N, 8, 20), st1 = stage_buf(N, 16, 30), st2 = stage_buf(N, 32, 40);
    size_t ws = YT_MAX(convk_work_size(&g0), YT_MAX(convk_work_size(&g1), convk_work_size(&g2)));
    real *work = tool_buf(ws, 9), *wbuf = tool_buf(WBUF_LEN, 0);
    real *z0 = tool_buf(n0, 0), *z1 = tool_buf(n1, 0), *z2 = tool_buf(n2, 0), *o2 = tool_buf(n2, 0);
    real *d1 = tool_buf(n1, 0), *d0 = tool_buf(n0, 0);
    const int sc[3] = {8, 16, 32};
    const size_t nk[3] = {nk0, nk1, nk2};
    real *dk[3], *db[3], *gs[3], *gt[3], *sdk[3], *sdb[3], *sgs[3], *sgt[3];
    double *sv[3], *tv[3];
    for (int i = 0; i < 3; i++) {
        dk[i] = tool_buf(nk[i], 0), sdk[i] = tool_buf(nk[i], 0);
        db[i] = tool_buf((size_t)sc[i], 0), sdb[i] = tool_buf((size_t)sc[i], 0);
        gs[i] = tool_buf((size_t)N * sc[i], 0), gt[i] = tool_buf((size_t)N * sc[i], 0);
        sgs[i] = tool_buf((size_t)N * sc[i], 0), sgt[i] = tool_buf((size_t)N * sc[i], 0);
        sv[i] = sums(convs_sums_len(sc[i], N)), tv[i] = sums(convs_sums_len(sc[i], N));
    }
    smt SX = sm_make(3, N, 64, 64), Z0 = sm_make(8, N, 32, 32), O0 = sm_make(8, N, 32, 32),
        Z1 = sm_make(16, N, 16, 16), O1 = sm_make(16, N, 16, 16), Z2 = sm_make(32, N, 8, 8),
        O2 = sm_make(32, N, 8, 8);
    smt DZ2 = sm_make(32, N, 8, 8), DZ1 = sm_make(16, N, 16, 16), DZ0 = sm_make(8, N, 32, 32);
    convs_stage s[3] = {stage_of(&st0, 8, N), stage_of(&st1, 16, N), stage_of(&st2, 32, N)};
    rvec *acc = rvecs(nk0 + nk1 + nk2);
    real *so2 = tool_buf(n2, 0);
    static double tkf[MAX_REPS], tkb[MAX_REPS], tsf[MAX_REPS], tsb[MAX_REPS], tsi[MAX_REPS],
        tso[MAX_REPS], tbi[MAX_REPS];
    static double top[8][MAX_REPS];
    memset(top, 0, sizeof top);
    for (int r = 0; r < run.reps; r++) {
        for (int i = 0; i < 3; i++) {
            memset(dk[i], 0, nk[i] * sizeof(real)), memset(db[i], 0, sc[i] * sizeof(real));
            memset(sdk[i], 0, nk[i] * sizeof(real)), memset(sdb[i], 0, sc[i] * sizeof(real));
            memset(sv[i], 0, convs_sums_len(sc[i], N) * sizeof(double));
            memset(tv[i], 0, convs_sums_len(sc[i], N) * sizeof(double));
        }
        conv_geom G0 = g0, G1 = g1, G2 = g2;
        G1.xstage = &st0, G2.xstage = &st1;
        double t = tool_run_rep(&run);
        convk_conv_forward(&G0, img, k0, b0, z0, &st0, NULL, work);
        convk_conv_forward(&G1, z0, k1, b1, z1, &st1, NULL, work);
        convk_conv_forward(&G2, z1, k2, b2, z2, &st2, o2, work);
        tkf[r] = tool_now() - t;
        t = tool_run_rep(&run);
        convk_conv_backward(&G2, z1, k2, dy2, d1, dk[2], db[2], &st2, z2, gs[2], gt[2], work);
        convk_conv_backward(&G1, z0, k1, d1, d0, dk[1], db[1], &st1, z1, gs[1], gt[1], work);
        convk_conv_backward(&G0, img, k0, d0, NULL, dk[0], db[0], &st0, z0, gs[0], gt[0], work);
        tkb[r] = tool_now() - t;

        t = tool_run_rep(&run);
        convs_from_chan(&SX.s, img, SX.p, 0, G); /* the data loader would write it so */
        tsi[r] = tool_now() - t;
        const convs_stores zo0 = {CONVS_ZO, &s[0], O0.p, NULL, NULL},
                           zo1 = {CONVS_ZO, &s[1], O1.p, NULL, NULL},
                           zo2 = {CONVS_ZO, &s[2], O2.p, NULL, NULL},
                           dz1 = {CONVS_DZ, &s[1], Z1.p, sv[1], tv[1]},
                           dz0 = {CONVS_DZ, &s[0], Z0.p, sv[0], tv[0]};
        t = tool_now();
        for (int ga = 0; ga < G; ga += GB) {
            const int gb = YT_MIN(G, ga + GB);
            T_(0, convs_a(&g0, &SX.s, SX.p, k0, b0, &Z0.s, Z0.p, &zo0, wbuf, ga, gb));
            T_(1, convs_a(&g1, &O0.s, O0.p, k1, b1, &Z1.s, Z1.p, &zo1, wbuf, ga, gb));
            T_(2, convs_a(&g2, &O1.s, O1.p, k2, b2, &Z2.s, Z2.p, &zo2, wbuf, ga, gb));
        }
        tsf[r] = tool_now() - t;
        t = tool_now();
        convs_to_chan(&O2.s, O2.p, so2, 0, G);
        tso[r] = tool_now() - t;
        t = tool_run_rep(&run);
        convs_stage_bwd_from_chan(&DZ2.s, &s[2], dy2, Z2.p, DZ2.p, sv[2], tv[2], 0, G);
        tbi[r] = tool_now() - t;
        t = tool_now();
        memset(acc, 0, (nk0 + nk1 + nk2) * sizeof *acc);
        for (int ga = 0; ga < G; ga += GB) {
            const int gb = YT_MIN(G, ga + GB);
            T_(3, convs_c(&g2, &DZ2.s, DZ2.p, &O1.s, O1.p, acc + nk0 + nk1, ga, gb));
            T_(4, convs_b(&g2, &DZ2.s, DZ2.p, k2, NULL, &DZ1.s, DZ1.p, &dz1, wbuf, ga, gb));
            T_(5, convs_c(&g1, &DZ1.s, DZ1.p, &O0.s, O0.p, acc + nk0, ga, gb));
            T_(6, convs_b(&g1, &DZ1.s, DZ1.p, k1, NULL, &DZ0.s, DZ0.p, &dz0, wbuf, ga, gb));
            T_(7, convs_c(&g0, &DZ0.s, DZ0.p, &SX.s, SX.p, acc, ga, gb));
        }
        for (size_t i = 0, off = 0; i < 3; off += nk[i], i++) {
            convs_lanes_end(acc + off, nk[i], sdk[i]);
            convs_stage_end(&s[i], sv[i], tv[i], sc[i], N, sgs[i], sgt[i], sdb[i]);
        }
        tsb[r] = tool_now() - t;
    }
    static const char *opn[8] = {"enc0 fwd", "enc1 fwd", "enc2 fwd", "enc2 dk",
                                 "enc2 dx",  "enc1 dk",  "enc1 dx",  "enc0 dk"};
    const conv_geom *opg[8] = {&g0, &g1, &g2, &g2, &g2, &g1, &g1, &g0};
    print_ops(8, top, opn, opg, run.reps);
    printf("encoder head, batch %d: convk forward %.3f ms, backward %.3f ms | sample-minor forward "
           "%.3f ms, backward %.3f ms, copies: image in %.3f, block 2 out %.3f, its gradient in "
           "(with the stage) %.3f ms\n",
           N, 1e3 * tool_median(tkf, run.reps), 1e3 * tool_median(tkb, run.reps),
           1e3 * tool_median(tsf, run.reps), 1e3 * tool_median(tsb, run.reps),
           1e3 * tool_median(tsi, run.reps), 1e3 * tool_median(tso, run.reps),
           1e3 * tool_median(tbi, run.reps));
    printf("largest relative differences: o2 %.2g, dk0 %.2g, dk1 %.2g, dk2 %.2g, db0 %.2g, db1 "
           "%.2g, db2 %.2g, dscale0 %.2g, dshift0 %.2g, dscale2 %.2g, dshift2 %.2g\n",
           maxrel(o2, so2, n2), maxrel(dk[0], sdk[0], nk0), maxrel(dk[1], sdk[1], nk1),
           maxrel(dk[2], sdk[2], nk2), maxrel(db[0], sdb[0], 8), maxrel(db[1], sdb[1], 16),
           maxrel(db[2], sdb[2], 32), maxrel(gs[0], sgs[0], (size_t)N * 8),
           maxrel(gt[0], sgt[0], (size_t)N * 8), maxrel(gs[2], sgs[2], (size_t)N * 32),
           maxrel(gt[2], sgt[2], (size_t)N * 32));
}

int main(int argc, char **argv) {
    tool_run run = tool_run_start(argc, argv);
    const int N = argc > 3 ? atoi(argv[3]) : 64;
    const char *which = argc > 4 ? argv[4] : "both";
    const int GB = argc > 5 ? atoi(argv[5]) : 1;
    const bool fused = argc > 6 && atoi(argv[6]);
    if (run.reps < 1 || run.reps > MAX_REPS || N < 1 || GB < 1) {
        fprintf(stderr, "smchain_bench: REPS from 1 to %d, BATCH and GROUPS from 1\n", MAX_REPS);
        return 2;
    }
    if (strcmp(which, "enc")) dec_chain(&run, N, GB, fused);
    if (strcmp(which, "dec")) enc_chain(&run, N, GB);
    free(run.flush);
    return 0;
}
