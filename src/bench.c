/* bench.c — `yoto bench` (see bench.h). */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "data.h"
#include "dist.h"
#include "isa.h"
#include "loss.h"
#include "model.h"
#include "rng.h"
#include "trainer.h"

/* the phases of a step, in seconds */
enum { PH_FORWARD, PH_BACKWARD, PH_ALLREDUCE, PH_OPTIMIZER, PH_TOTAL, PH_N };
typedef struct {
    double t[PH_N];
} phase_times;

/* s as the inside of a JSON string: quotes, backslashes and control bytes escaped */
static void json_text(const char *s, char *out, size_t size) {
    size_t k = 0;
    for (; *s && k + 7 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[k++] = '\\';
            out[k++] = (char)c;
        } else if (c < 0x20) {
            k += (size_t)snprintf(out + k, size - k, "\\u%04x", c);
        } else {
            out[k++] = (char)c;
        }
    }
    out[k] = '\0';
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Everything one bench run measured. */
typedef struct {
    const yoto_config *cfg;
    const bench_opts *o;
    int world, batch, steps, warmup;
    double sgemm;              /* GFLOP/s, 1024^3, this rank (rank 0's is the yardstick) */
    double sgemm_lo, sgemm_hi; /* the slowest and the fastest rank's */
    double sgemm_after;        /* this rank's again after the timed work (the load's drift) */
    double copy_gbs; /* memory bandwidth: a 64 MiB copy, bytes read + written per second */
    vae_model *m;
    cfg_allreduce mode;
    bool sharded, shared; /* shared: the sharded step through node-shared memory */
    long buckets;     /* gradient allreduce calls per step (0 on one rank) */
    double med[PH_N]; /* median seconds per phase */
    double step_med, step_min, step_max;
    double exposed, imbalance; /* seconds per step */
    double comm_alone, hidden; /* the gradient's sum alone (sharded: and the gather) */
    data_bench_result db;
    long rss_max_kb;
    int threads;              /* per rank */
    double encode_s, recon_s; /* inference: median seconds per batch */
} bench_result;

/* the config's mode (JSON; "sharded" below tells what ran) */
static const char *mode_name(cfg_allreduce m) {
    return m == ALLREDUCE_SHARDED ? "sharded" : m == ALLREDUCE_BLOCKING ? "blocking" : "bucketed";
}

/* The timed steps: the shipped training step on synthetic data of the
 * config's shape; per-step phase times into ph[0..steps). */
static void time_steps(bench_result *r, trainer *t, const real *x, phase_times *ph) {
    for (int it = 0; it < r->warmup + r->steps; it++) {
        bool timed = it >= r->warmup;
        r->m->profile = timed;
        if (it == r->warmup) trainer_reset_comm_stats(t);
        dist_barrier();
        step_sums sums;
        int rc = trainer_step(t, it, x, YT_OK, false, &sums);
        YT_CHECK(rc == YT_OK); /* synthetic data: a non-finite step is a bug */
        if (!timed) continue;
        step_times tm = trainer_times(t);
        ph[it - r->warmup] = (phase_times){
            {tm.forward, tm.backward, tm.agree + tm.allreduce, tm.optimizer, tm.total}};
    }
}

/* Communication the step could not hide: the step time beyond the slowest
 * rank's computation (forward, backward without MPI calls, Adam). What the
 * others spend waiting for that rank is imbalance, not communication. */
static void exposed_comm(bench_result *r, const phase_times *ph) {
    double *exposed = yt_calloc((size_t)r->steps, sizeof *exposed);
    double *imbalance = yt_calloc((size_t)r->steps, sizeof *imbalance);
    for (int k = 0; k < r->steps; k++) {
        double mine = ph[k].t[PH_FORWARD] + ph[k].t[PH_BACKWARD] + ph[k].t[PH_OPTIMIZER];
        double slowest = dist_allreduce_max_double(mine);
        exposed[k] = YT_MAX(0.0, ph[k].t[PH_TOTAL] - slowest);
        imbalance[k] = slowest - mine;
    }
    r->exposed = median(exposed, r->steps);
    r->imbalance = dist_allreduce_max_double(median(imbalance, r->steps));
    free(exposed);
    free(imbalance);
}

/* What the gradient's communication costs on its own, best of 5, the whole
 * arena, not sharded: one blocking allreduce (the sharded step's own:
 * trainer_comm_alone). */
static double allreduce_alone(const arena *a) {
    if (dist_size() == 1) return 0;
    real *copy = yt_calloc_huge(a->total * sizeof *copy); /* pages as the arena's */
    dist_sync *s = dist_sync_create(copy, a->total, 0, DIST_SYNC_BLOCKING);
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        memcpy(copy, a->grad, a->total * sizeof *copy);
        dist_barrier();
        double t0 = yt_now();
        dist_sync_begin(s);
        dist_sync_finish(s);
        best = YT_MIN(best, yt_now() - t0);
    }
    dist_sync_free(s);
    free(copy);
    return best;
}

/* Medians over the timed steps (rank 0's; steps end together on every rank). */
static void phase_medians(bench_result *r, const phase_times *ph) {
    double *buf = yt_calloc((size_t)r->steps, sizeof *buf);
    for (int p = 0; p < PH_N; p++) {
        for (int k = 0; k < r->steps; k++)
            buf[k] = ph[k].t[p];
        r->med[p] = median(buf, r->steps);
    }
    r->step_min = buf[0]; /* buf holds the sorted totals (PH_TOTAL is last) */
    r->step_max = buf[r->steps - 1];
    r->step_med = r->med[PH_TOTAL];
    free(buf);
}

/* synthetic images in [0, 1] (Bernoulli targets) or [-1, 1] */
static real *synthetic_batch(const yoto_config *cfg, const vae_model *m, int B) {
    size_t nx = (size_t)m->in_c * B * m->in_h * m->in_w;
    real *x = yt_malloc(nx * sizeof *x);
    rng_stream s =
        rng_stream_make(cfg->experiment.seed, RNG_SYNTHETIC, (uint32_t)dist_rank(), 0, 0);
    bool gauss = cfg->model.output_distribution == OUT_GAUSSIAN;
    for (size_t i = 0; i < nx; i++)
        x[i] = (real)(gauss ? 2 * rng_uniform(&s) - 1 : rng_uniform(&s));
    return x;
}

/* Inference on the same batch, no backward and no optimizer: model_encode
 * (the encoder and the posterior, as yoto encode) and model_reconstruct
 * (encoder and decoder, as reconstruct and eval without their losses);
 * medians over the timed repetitions, after one untimed. */
static void time_inference(bench_result *r, const real *x) {
    vae_model *m = r->m;
    const int B = r->batch, reps = YT_MAX(3, r->steps / 2);
    real *wk = yt_malloc((size_t)B * sizeof *wk), *wr = yt_malloc((size_t)B * sizeof *wr);
    real *cond = yt_malloc(2 * (size_t)B * sizeof *cond);
    loss_weights_fixed(&r->cfg->loss_weights, 1.0, r->cfg->eval.w_rec, B, wk, wr, cond);
    double *te = yt_calloc((size_t)reps, sizeof *te), *tr = yt_calloc((size_t)reps, sizeof *tr);
    m->profile = false;
    for (int it = -1; it < reps; it++) {
        dist_barrier();
        double t0 = yt_now();
        model_encode(m, B, x, cond, NULL);
        double t1 = yt_now();
        dist_barrier();
        double t2 = yt_now();
        model_reconstruct(m, B, x, cond);
        double t3 = yt_now();
        if (it >= 0) {
            te[it] = t1 - t0;
            tr[it] = t3 - t2;
        }
    }
    r->encode_s = median(te, reps);
    r->recon_s = median(tr, reps);
    free(te);
    free(tr);
    free(wk);
    free(wr);
    free(cond);
}

/* The memory roofline: memcpy of 64 MiB, best of 5 after one untimed,
 * bytes read plus bytes written per second (STREAM's copy counts the same) */
static double copy_gbs(void) {
    const size_t n = (size_t)64 << 20;
    char *a = yt_malloc(n), *b = yt_malloc(n);
    memset(a, 1, n);
    memset(b, 0, n);
    double best = 1e30;
    for (int r = 0; r < 6; r++) {
        double t = yt_now();
        memcpy(b, a, n);
        t = yt_now() - t;
        if (r > 0 && t < best) best = t;
    }
    free(a);
    free(b);
    return 2.0 * n / best / 1e9;
}

static int measure(bench_result *r) {
    const yoto_config *cfg = r->cfg;
    r->m = model_create(&cfg->model, r->batch);
    model_init_params(r->m, cfg->experiment.seed);
    r->mode = cfg->train.allreduce;
    real *x = synthetic_batch(cfg, r->m, r->batch);
    trainer *t = trainer_create(r->m, cfg, dist_rank(), r->world);
    phase_times *ph = yt_calloc((size_t)r->steps, sizeof *ph);
    time_steps(r, t, x, ph);
    long issued; /* since the warm-up */
    trainer_comm_stats(t, NULL, &issued);
    r->buckets = issued / r->steps;
    time_inference(r, x);
    exposed_comm(r, ph);
    r->sharded = trainer_sharded(t);
    r->shared = trainer_shared(t);
    r->comm_alone = r->sharded ? trainer_comm_alone(t, 5) : allreduce_alone(&r->m->params);
    r->hidden = r->comm_alone > 0 ? YT_MAX(0.0, 1.0 - r->exposed / r->comm_alone) : 0;
    phase_medians(r, ph);
    free(ph);
    trainer_free(t);
    free(x);
    int rc = YT_OK;
    if (r->o->data) { /* the data pipeline on the real train split, as training reads it */
        data_bench_opts dbo = {.batch = r->batch, .seconds = 2.0, .min_steps = 20, .step_s = 0};
        rc = data_bench(cfg, &dbo, NULL, &r->db);
    }
    r->rss_max_kb = dist_allreduce_max_long(yt_peak_rss_kb());
    return rc;
}

static void print_json(const bench_result *r) {
    const vae_model *m = r->m;
    const int B = r->batch, world = r->world, steps = r->steps;
    double flops = model_train_flops(m), macs = model_forward_macs(m);
    double imgs = (double)B * world / r->step_med, gflops_rank = flops * B / r->step_med / 1e9;
    const char *cfgname = r->o->config_path ? r->o->config_path : r->cfg->source;
    char cfgjson[2 * CFG_PATH_MAX];
    json_text(cfgname, cfgjson, sizeof cfgjson);
    printf("{\"config\": \"%s\", \"ranks\": %d, \"batch_per_rank\": %d, \"steps\": %d,\n"
           " \"params\": %zu, \"conditioning_params\": %zu,\n"
           " \"forward_macs_per_image\": %.0f, \"train_flops_per_image\": %.0f,\n"
           " \"step_s_median\": %.6g, \"step_s_min\": %.6g, \"step_s_max\": %.6g,\n"
           " \"images_per_s\": %.6g, \"gflops_per_rank\": %.6g,\n"
           " \"sgemm_gflops\": %.6g, \"sgemm_gflops_ranks\": [%.6g, %.6g], "
           "\"sgemm_gflops_after\": %.6g, \"ratio_to_sgemm\": %.6g, \"copy_gbs\": %.6g,\n"
           " \"phases_s\": {\"forward\": %.6g, \"backward\": %.6g, \"allreduce\": %.6g, "
           "\"optimizer\": %.6g},\n"
           " \"threads\": %d, \"openblas_core\": \"%s\", \"openblas_threads\": %d, "
           "\"cpu_isa\": \"%s\", \"kernels_isa\": \"%s\", \"l1d_bytes\": %zu,\n"
           " \"allreduce\": {\"mode\": \"%s\", \"sharded\": %s, \"shared_memory\": %s, "
           "\"buckets\": %ld, \"bytes\": %zu, \"alone_s\": %.6g, "
           "\"exposed_s\": %.6g, \"hidden_fraction\": %.4g, \"imbalance_s\": %.6g},\n"
           " \"peak_rss_mb\": %.1f,\n",
           cfgjson, world, B, steps, m->params.total, arena_conditioning_size(&m->params), macs,
           flops, r->step_med, r->step_min, r->step_max, imgs, gflops_rank, r->sgemm, r->sgemm_lo,
           r->sgemm_hi, r->sgemm_after, gflops_rank / r->sgemm, r->copy_gbs, r->med[PH_FORWARD],
           r->med[PH_BACKWARD], r->med[PH_ALLREDUCE], r->med[PH_OPTIMIZER], r->threads,
           blas_corename(), blas_openblas_threads(), blas_cpu_isa(), isa_kernels(), isa_l1d_bytes(),
           mode_name(r->mode), r->sharded ? "true" : "false", r->shared ? "true" : "false",
           r->buckets, m->params.total * sizeof(real), r->comm_alone, r->exposed, r->hidden,
           r->imbalance, r->rss_max_kb / 1024.0);
    double ef = 2 * model_encode_macs(m), rf = 2 * macs; /* FLOPs per image */
    printf(" \"inference\": {\"encode_images_per_s\": %.6g, \"encode_flops_per_image\": %.0f, "
           "\"encode_ratio_to_sgemm\": %.6g,\n  \"reconstruct_images_per_s\": %.6g, "
           "\"reconstruct_flops_per_image\": %.0f, \"reconstruct_ratio_to_sgemm\": %.6g},\n",
           B * world / r->encode_s, ef, ef * B / r->encode_s / 1e9 / r->sgemm,
           B * world / r->recon_s, rf, rf * B / r->recon_s / 1e9 / r->sgemm);
    if (r->o->data)
        printf(" \"data\": {\"images_per_s_per_rank\": %.6g, \"ratio_to_step\": %.6g, "
               "\"cached\": %s, \"open_s\": %.6g},\n",
               r->db.images_per_s, r->db.images_per_s / (imgs / world),
               r->db.desc.cached ? "true" : "false", r->db.open_s);
    printf(" \"layers\": [");
    for (int i = 0; i < m->nprof; i++)
        printf("%s\n  {\"name\": \"%s\", \"forward_s\": %.6g, \"backward_s\": %.6g, "
               "\"forward_macs_per_image\": %.0f, \"blocked\": %s}",
               i ? "," : "", m->prof[i].name, m->prof[i].fwd / steps, m->prof[i].bwd / steps,
               m->prof[i].macs, m->prof[i].blocked ? "true" : "false");
    printf("]}\n");
}

static void print_layers(const bench_result *r) {
    const vae_model *m = r->m;
    printf("  layers      %-28s %9s %9s %8s %8s\n", "(ms per step; *: blocked)", "forward",
           "backward", "GFLOP/s", "share");
    double total = 0;
    for (int i = 0; i < m->nprof; i++)
        total += m->prof[i].fwd + m->prof[i].bwd;
    for (int i = 0; i < m->nprof; i++) {
        const model_prof *p = &m->prof[i];
        double t = (p->fwd + p->bwd) / r->steps;
        /* forward + backward FLOPs of this layer: about 3 x forward */
        double gf = t > 0 && p->macs > 0 ? 6.0 * p->macs * r->batch / t / 1e9 : 0;
        char name[sizeof p->name + 2];
        snprintf(name, sizeof name, "%s%s", p->name, p->blocked ? " *" : "");
        printf("              %-28s %9.3f %9.3f %8.2f %7.1f%%\n", name, 1e3 * p->fwd / r->steps,
               1e3 * p->bwd / r->steps, gf, total > 0 ? 100 * (p->fwd + p->bwd) / total : 0);
    }
}

static void print_text(const bench_result *r) {
    const vae_model *m = r->m;
    const int B = r->batch, world = r->world;
    double flops = model_train_flops(m), macs = model_forward_macs(m);
    double imgs = (double)B * world / r->step_med, gflops_rank = flops * B / r->step_med / 1e9;
    printf("yoto bench: %s\n", r->o->config_path ? r->o->config_path : r->cfg->source);
    printf("  model       %zu parameters (%zu conditioning), input %dx%dx%d, %s output\n",
           m->params.total, arena_conditioning_size(&m->params), m->in_h, m->in_w, m->in_c,
           m->mc.output_distribution == OUT_GAUSSIAN ? "gaussian" : "bernoulli");
    printf("  batch       %d per rank x %d rank%s, %d timed steps after %d warm-up\n", B, world,
           world > 1 ? "s" : "", r->steps, r->warmup);
    printf("  cost        %.2f M multiply-adds forward, %.2f M FLOPs per image per step\n",
           macs / 1e6, flops / 1e6);
    printf("  threads     %d per rank (yoto's %s kernels, L1d %zu KiB; OpenBLAS "
           "%s kernels, %d thread each; CPU: %s)\n",
           r->threads, isa_kernels(), isa_l1d_bytes() / 1024, blas_corename(),
           blas_openblas_threads(), blas_cpu_isa());
    char spread[64] = "";
    if (r->world > 1)
        snprintf(spread, sizeof spread, "; ranks %.1f-%.1f", r->sgemm_lo, r->sgemm_hi);
    printf("  sgemm       %.1f GFLOP/s (1024^3, 1 thread, this run, rank 0%s; %.1f after the "
           "steps); memory %.1f GB/s (64 MiB copy, read + write)\n",
           r->sgemm, spread, r->sgemm_after, r->copy_gbs);
    printf("  step        %.2f ms median (min %.2f, max %.2f)\n", 1e3 * r->step_med,
           1e3 * r->step_min, 1e3 * r->step_max);
    printf("  throughput  %.1f images/s, %.2f GFLOP/s per rank = %.1f%% of sgemm\n", imgs,
           gflops_rank, 100 * gflops_rank / r->sgemm);
    printf("  phases      forward %.2f ms, backward %.2f ms, allreduce %.2f ms, optimizer "
           "%.2f ms\n",
           1e3 * r->med[PH_FORWARD], 1e3 * r->med[PH_BACKWARD], 1e3 * r->med[PH_ALLREDUCE],
           1e3 * r->med[PH_OPTIMIZER]);
    if (world > 1) {
        const char *how = r->shared ? "through node-shared memory: each rank sums its part "
                                      "from the others' gradients, Adam on that part of the "
                                      "one copy of the parameters"
                                    : "ring reduce-scatter, Adam on this rank's part, ring "
                                      "allgather";
        printf("  allreduce   %s%s%s, %.2f MB: %.2f ms alone, %.2f ms exposed per step "
               "(%.0f%% hidden); %.2f ms waiting for the slowest rank\n",
               r->mode == ALLREDUCE_SHARDED    ? (r->sharded ? "sharded (" : "sharded")
               : r->mode == ALLREDUCE_BLOCKING ? "blocking"
               : r->sharded                    ? "bucketed, 1 bucket: sharded (nothing to "
                                                 "overlap; "
                                               : "bucketed, overlapped",
               r->sharded ? how : "", r->sharded ? ")" : "",
               m->params.total * sizeof(real) / 1048576.0, 1e3 * r->comm_alone, 1e3 * r->exposed,
               100 * r->hidden, 1e3 * r->imbalance);
    }
    double ef = 2 * model_encode_macs(m), rf = 2 * macs;
    printf("  inference   encode %.1f images/s (%.1f%% of sgemm), reconstruct %.1f images/s "
           "(%.1f%% of sgemm)\n",
           B * world / r->encode_s, 100 * ef * B / r->encode_s / 1e9 / r->sgemm,
           B * world / r->recon_s, 100 * rf * B / r->recon_s / 1e9 / r->sgemm);
    printf("  memory      peak RSS %.1f MB (largest rank)\n", r->rss_max_kb / 1024.0);
    if (r->o->data)
        printf("  data        %.0f images/s per rank from %s (%s) = %.1fx what the step "
               "consumes (%.0f per rank)\n",
               r->db.images_per_s, r->db.desc.file, r->db.desc.cached ? "cached" : "streaming",
               r->db.images_per_s / (imgs / world), imgs / world);
    print_layers(r);
}

/* ---- communication curve (--comm) ------------------------------------------------------ */

/* 4 KiB, 16 KiB, ..., up to --comm-max-mb (default 64 MiB: 8 sizes) */
enum { COMM_SIZES_MAX = 12 }; /* 4 KiB .. 16 GiB */

/* how many of 4 KiB, 16 KiB, ... are at most max_mb MiB */
static int comm_sizes(int max_mb) {
    int n = 0;
    while (n < COMM_SIZES_MAX && ((size_t)4096 << (2 * n)) <= (size_t)max_mb << 20)
        n++;
    return n;
}

typedef struct {
    size_t bytes;
    int reps;
    double blocking, blocking_min; /* seconds: median and best */
    double bucketed, bucketed_min;
    long buckets; /* per bucketed allreduce */
} comm_point;

/* Times one allreduce of buf[0..n) in the given mode, `reps` times after two
 * untimed ones; median and min over the slowest rank of each repetition. */
static void time_allreduce(real *buf, size_t n, bool bucketed, size_t bucket, int reps, double *med,
                           double *best, long *buckets) {
    double *t = yt_calloc((size_t)reps, sizeof *t);
    dist_sync *s =
        dist_sync_create(buf, n, bucket, bucketed ? DIST_SYNC_BUCKETED : DIST_SYNC_BLOCKING);
    for (int r = -2; r < reps; r++) {
        dist_barrier();
        double t0 = yt_now();
        if (bucketed) {
            dist_sync_begin(s);
            dist_sync_ready(s, 0);
            dist_sync_finish(s);
            dist_sync_gather(s, buf); /* one bucket: sharded, the sum goes back round */
        } else {
            dist_allreduce_sum_real(buf, n);
        }
        double dt = dist_allreduce_max_double(yt_now() - t0);
        if (r >= 0) t[r] = YT_MAX(dt, 1e-9); /* a world of one: a copy-free no-op */
        if (r == -1) dist_sync_reset_stats(s);
    }
    *buckets = dist_sync_get_stats(s).buckets / reps;
    *med = median(t, reps);
    *best = t[0]; /* median() sorted t */
    dist_sync_free(s);
    free(t);
}

static void comm_curve(const yoto_config *cfg, comm_point *pts, int sizes) {
    const size_t bucket = (size_t)(cfg->train.bucket_mb * 1048576.0 / sizeof(real));
    const size_t max_n = ((size_t)4096 << (2 * (sizes - 1))) / sizeof(real);
    real *buf = yt_malloc(max_n * sizeof *buf);
    for (size_t i = 0; i < max_n; i++) buf[i] = (real)1e-3;
    for (int k = 0; k < sizes; k++) {
        comm_point *p = &pts[k];
        p->bytes = (size_t)4096 << (2 * k);
        size_t n = p->bytes / sizeof(real);
        /* the same count on every rank (collectives): more for small messages */
        p->reps = (int)YT_MAX((size_t)5, YT_MIN((size_t)50, ((size_t)64 << 20) / p->bytes));
        long nb = 0;
        time_allreduce(buf, n, false, bucket, p->reps, &p->blocking, &p->blocking_min, &nb);
        time_allreduce(buf, n, true, bucket, p->reps, &p->bucketed, &p->bucketed_min, &p->buckets);
    }
    free(buf);
}

static void print_comm(const bench_opts *o, const yoto_config *cfg, const comm_point *pts,
                       int sizes, size_t grad_bytes, const char *hosts) {
    const char *cfgname = o->config_path ? o->config_path : cfg->source;
    if (o->json) {
        char cfgjson[2 * CFG_PATH_MAX], hostjson[2048];
        json_text(cfgname, cfgjson, sizeof cfgjson);
        json_text(hosts, hostjson, sizeof hostjson);
        printf("{\"config\": \"%s\", \"ranks\": %d, \"hosts\": \"%s\", \"bucket_mb\": %.6g, "
               "\"gradient_bytes\": %zu,\n \"comm\": [",
               cfgjson, dist_size(), hostjson, cfg->train.bucket_mb, grad_bytes);
        for (int k = 0; k < sizes; k++)
            printf("%s\n  {\"bytes\": %zu, \"reps\": %d, \"blocking_s\": %.6g, \"blocking_min_s\": "
                   "%.6g, \"bucketed_s\": %.6g, \"bucketed_min_s\": %.6g, \"buckets\": %ld}",
                   k ? "," : "", pts[k].bytes, pts[k].reps, pts[k].blocking, pts[k].blocking_min,
                   pts[k].bucketed, pts[k].bucketed_min, pts[k].buckets);
        printf("]}\n");
        return;
    }
    printf("yoto bench --comm: %s, %d rank%s on %s\n", cfgname, dist_size(),
           dist_size() > 1 ? "s" : "", hosts);
    printf("  gradient %.2f MB; bucketed mode: buckets of %.3g MB\n", grad_bytes / 1048576.0,
           cfg->train.bucket_mb);
    printf("  %10s %6s %14s %14s %14s %8s\n", "bytes", "reps", "blocking ms", "bucketed ms",
           "blocking GB/s", "buckets");
    for (int k = 0; k < sizes; k++)
        printf("  %10zu %6d %14.4f %14.4f %14.3f %8ld\n", pts[k].bytes, pts[k].reps,
               1e3 * pts[k].blocking, 1e3 * pts[k].bucketed, pts[k].bytes / pts[k].blocking / 1e9,
               pts[k].buckets);
}

/* `yoto bench --comm`. Collective. */
static int bench_comm(const yoto_config *cfg, const bench_opts *o) {
    comm_point pts[COMM_SIZES_MAX];
    const int sizes = comm_sizes(o->comm_max_mb > 0 ? o->comm_max_mb : 64);
    char hosts[1024];
    dist_host_summary(hosts, sizeof hosts);
    vae_model *m = model_create(&cfg->model, 1); /* only for the gradient's size */
    size_t grad_bytes = m->params.total * sizeof(real);
    model_free(m);
    comm_curve(cfg, pts, sizes);
    if (dist_rank() == 0) {
        print_comm(o, cfg, pts, sizes, grad_bytes, hosts);
        fflush(stdout);
    }
    return YT_OK;
}

int bench_run(const yoto_config *cfg, const bench_opts *o) {
    if (o->comm) return bench_comm(cfg, o);
    bench_result r = {.cfg = cfg, .o = o, .world = dist_size()};
    int rc = trainer_batch_per_rank(cfg, r.world, &r.batch);
    if (rc != YT_OK) return rc;
    if (r.batch < 1)
        return yt_fail(YT_ERR_USAGE, "per-rank batch is %d: too small for %d ranks", r.batch,
                       r.world);
    r.steps = o->steps > 0 ? o->steps : 20;
    r.warmup = o->warmup >= 0 ? o->warmup : 3;
    blas_set_threads(o->threads > 0 ? o->threads : cfg->train.threads);
    r.threads = blas_threads();
    const char *advice = blas_core_advice();
    if (advice) dist_warn("%s", advice);
    advice = blas_threads_advice();
    if (advice) dist_warn("%s", advice);
    /* the yardstick first, on an idle machine; every rank measures its own */
    r.sgemm = blas_sgemm_gflops(1024, 3);
    r.sgemm_lo = dist_allreduce_min_double(r.sgemm);
    r.sgemm_hi = dist_allreduce_max_double(r.sgemm);
    rc = measure(&r);
    /* the yardstick again, on every rank as before the steps (so rank 0's,
     * the one reported, runs beside the same load); a run whose machine got
     * busier or quieter while it timed says so */
    if (rc == YT_OK) {
        r.sgemm_after = blas_sgemm_gflops(1024, 3);
        const double drift = 100 * (r.sgemm_after / r.sgemm - 1);
        if (fabs(drift) >= o->drift_pct)
            dist_warn("bench: the sgemm yardstick moved from %.1f to %.1f GFLOP/s while this run "
                      "timed its steps (%+.1f%%, --drift %d): the machine's load changed, so "
                      "this run's ratios are unreliable; run it again",
                      r.sgemm, r.sgemm_after, drift, o->drift_pct);
        /* the ranks do the same work: one that waits long for another
         * each step ran beside a load the other did not (or on a slower
         * node), which the yardsticks taken before and after can miss */
        const double uneven = 100 * r.imbalance / r.step_med;
        if (r.world > 1 && uneven >= o->drift_pct)
            dist_warn("bench: the ranks waited %.2f ms a step for the slowest one (%.0f%% of the "
                      "step, --drift %d): a rank's core ran slower than the others', so this "
                      "run's per-rank ratios are unreliable; run it again",
                      1e3 * r.imbalance, uneven, o->drift_pct);
    }
    r.copy_gbs = copy_gbs(); /* after the peak RSS was taken: its 128 MiB are not the model's */
    if (rc == YT_OK && dist_rank() == 0) {
        if (o->json)
            print_json(&r);
        else
            print_text(&r);
        fflush(stdout);
    }
    model_free(r.m);
    return rc;
}
