/* bench.c — `yoto bench` (see bench.h). */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "data.h"
#include "dist.h"
#include "loss.h"
#include "model.h"
#include "optim.h"
#include "rng.h"

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

static void sync_ready(void *ctx, size_t lo) { dist_sync_ready(ctx, lo); }

/* Per-rank batch the config implies for this world size. */
static int rank_batch(const yoto_config *cfg, int world) {
    if (cfg->train.batch_per_rank > 0) return (int)cfg->train.batch_per_rank;
    return (int)(cfg->train.batch_size / world);
}

int bench_run(const yoto_config *cfg, const bench_opts *o) {
    const int world = dist_size(), rank = dist_rank();
    if (cfg->train.batch_per_rank <= 0 && cfg->train.batch_size % world != 0)
        return yt_fail(YT_ERR_USAGE,
                       "train.batch_size %ld does not divide over %d ranks; use "
                       "train.batch_per_rank for a fixed per-rank batch",
                       cfg->train.batch_size, world);
    const int B = rank_batch(cfg, world);
    if (B < 1) return yt_fail(YT_ERR_USAGE, "per-rank batch is %d: too small for %d ranks", B, world);
    const int steps = o->steps > 0 ? o->steps : 20, warmup = o->warmup >= 0 ? o->warmup : 3;
    blas_set_threads(o->threads > 0 ? o->threads : cfg->train.threads);
    const char *advice = blas_core_advice();
    if (advice) dist_warn("%s", advice);

    /* the yardstick first, on an idle machine; every rank measures its own */
    double sgemm = blas_sgemm_gflops(1024, 3);

    vae_model *m = model_create(&cfg->model, B);
    model_init_params(m, cfg->experiment.seed);
    const int C = m->in_c, HW = m->in_h * m->in_w, L = m->latent;
    size_t nx = (size_t)C * B * HW;
    real *x = yt_malloc(nx * sizeof *x), *eps = yt_malloc((size_t)B * L * sizeof *eps);
    real *w_kl = yt_malloc((size_t)B * sizeof(real)), *w_rec = yt_malloc((size_t)B * sizeof(real));
    real *cond = yt_malloc((size_t)B * 2 * sizeof(real));
    /* synthetic images in [0, 1] (Bernoulli targets) or [-1, 1] */
    rng_stream s = rng_stream_make(cfg->experiment.seed, RNG_SYNTHETIC, (uint32_t)rank, 0, 0);
    bool gauss = cfg->model.output_distribution == OUT_GAUSSIAN;
    for (size_t i = 0; i < nx; i++) x[i] = (real)(gauss ? 2 * rng_uniform(&s) - 1 : rng_uniform(&s));
    for (size_t i = 0; i < (size_t)B * L; i++) eps[i] = (real)rng_normal(&s);
    adam_params ap = optim_adam_params(&cfg->optimizer);
    const double scale = 1.0 / ((double)B * world);

    size_t bucket = (size_t)(cfg->train.bucket_mb * 1048576.0 / sizeof(real));
    bool overlap = cfg->train.allreduce == ALLREDUCE_BUCKETED;
    dist_sync *sync = dist_sync_create(m->params.grad, m->params.total, bucket, overlap);
    m->grad_ready = sync_ready;
    m->grad_ready_ctx = sync;
    double *t_step = yt_calloc((size_t)steps, sizeof *t_step);
    phase_times *ph = yt_calloc((size_t)steps, sizeof *ph);
    for (int it = 0; it < warmup + steps; it++) {
        bool timed = it >= warmup;
        m->profile = timed;
        loss_weights_sample(&cfg->loss_weights, cfg->experiment.seed, it, rank, B, w_kl, w_rec, cond);
        dist_barrier();
        double t0 = yt_now();
        memset(m->params.grad, 0, m->params.total * sizeof(real));
        if (it == warmup) dist_sync_reset_stats(sync);
        dist_sync_begin(sync);
        model_forward(m, B, x, cond, eps);
        double t1 = yt_now();
        double exposed0 = dist_sync_get_stats(sync).exposed_s;
        model_backward(m, w_kl, w_rec, scale, false);
        /* backward's time without the MPI calls made inside it */
        double t2 = yt_now() - (dist_sync_get_stats(sync).exposed_s - exposed0);
        dist_sync_finish(sync);
        double t3 = t2 + (dist_sync_get_stats(sync).exposed_s - exposed0);
        optim_adam_step(&m->params, &ap, it + 1, optim_lr(&cfg->optimizer, it));
        double t4 = yt_now();
        if (timed) {
            int k = it - warmup;
            ph[k] = (phase_times){{t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0}};
            t_step[k] = t4 - t0;
        }
    }
    /* Communication the step could not hide: the step time beyond the slowest
     * rank's computation (forward, backward without MPI calls, Adam). What the
     * others spend waiting for that rank is imbalance, not communication. */
    double *exposed = yt_calloc((size_t)steps, sizeof *exposed);
    double *imbalance = yt_calloc((size_t)steps, sizeof *imbalance);
    for (int k = 0; k < steps; k++) {
        double mine = ph[k].t[PH_FORWARD] + ph[k].t[PH_BACKWARD] + ph[k].t[PH_OPTIMIZER];
        double slowest = dist_allreduce_max_double(mine);
        exposed[k] = YT_MAX(0.0, t_step[k] - slowest);
        imbalance[k] = slowest - mine;
    }
    double exposed_per_step = median(exposed, steps);
    double imbalance_per_step = dist_allreduce_max_double(median(imbalance, steps));
    free(exposed);
    free(imbalance);
    /* what the allreduce costs on its own: blocking, the whole arena */
    double comm_alone = 0;
    if (world > 1) {
        real *copy = yt_malloc(m->params.total * sizeof *copy);
        double best = 1e30;
        for (int r = 0; r < 5; r++) {
            memcpy(copy, m->params.grad, m->params.total * sizeof *copy);
            dist_barrier();
            double t0 = yt_now();
            dist_allreduce_sum_real(copy, m->params.total);
            best = YT_MIN(best, yt_now() - t0);
        }
        comm_alone = best;
        free(copy);
    }
    double hidden = comm_alone > 0 ? YT_MAX(0.0, 1.0 - exposed_per_step / comm_alone) : 0;
    /* the data pipeline on the real train split, as training reads it */
    data_bench_result db = {0};
    if (o->data) {
        data_bench_opts dbo = {.batch = B, .seconds = 2.0, .min_steps = 20, .step_s = 0};
        int rc = data_bench(cfg, &dbo, NULL, &db);
        if (rc != YT_OK) {
            model_free(m);
            dist_sync_free(sync);
            free(x), free(eps), free(w_kl), free(w_rec), free(cond), free(t_step), free(ph);
            return rc;
        }
    }
    /* medians over the timed steps (rank 0's; steps end together on every rank) */
    double med[PH_N], *buf = yt_calloc((size_t)steps, sizeof *buf);
    for (int p = 0; p < PH_N; p++) {
        for (int k = 0; k < steps; k++) buf[k] = ph[k].t[p];
        med[p] = median(buf, steps);
    }
    double step_med = median(t_step, steps);
    double step_min = t_step[0], step_max = t_step[steps - 1];
    double flops = model_train_flops(m), macs = model_forward_macs(m);
    double imgs = (double)B * world / step_med;
    double gflops_rank = flops * B / step_med / 1e9;
    long rss = yt_peak_rss_kb();
    long rss_max = dist_allreduce_max_long(rss);

    if (rank == 0) {
        const char *cfgname = o->config_path ? o->config_path : cfg->source;
        char cfgjson[2 * CFG_PATH_MAX];
        json_text(cfgname, cfgjson, sizeof cfgjson);
        if (o->json) {
            printf("{\"config\": \"%s\", \"ranks\": %d, \"batch_per_rank\": %d, \"steps\": %d,\n"
                   " \"params\": %zu, \"conditioning_params\": %zu,\n"
                   " \"forward_macs_per_image\": %.0f, \"train_flops_per_image\": %.0f,\n"
                   " \"step_s_median\": %.6g, \"step_s_min\": %.6g, \"step_s_max\": %.6g,\n"
                   " \"images_per_s\": %.6g, \"gflops_per_rank\": %.6g,\n"
                   " \"sgemm_gflops\": %.6g, \"ratio_to_sgemm\": %.6g,\n"
                   " \"phases_s\": {\"forward\": %.6g, \"backward\": %.6g, \"allreduce\": %.6g, "
                   "\"optimizer\": %.6g},\n"
                   " \"openblas_core\": \"%s\", \"openblas_threads\": %d, \"cpu_isa\": \"%s\",\n"
                   " \"allreduce\": {\"mode\": \"%s\", \"bytes\": %zu, \"alone_s\": %.6g, "
                   "\"exposed_s\": %.6g, \"hidden_fraction\": %.4g, \"imbalance_s\": %.6g},\n"
                   " \"peak_rss_mb\": %.1f,\n",
                   cfgjson, world, B, steps, m->params.total, arena_conditioning_size(&m->params),
                   macs, flops, step_med, step_min, step_max, imgs, gflops_rank, sgemm,
                   gflops_rank / sgemm, med[PH_FORWARD], med[PH_BACKWARD], med[PH_ALLREDUCE], med[PH_OPTIMIZER], blas_corename(),
                   blas_threads(), blas_cpu_isa(), overlap ? "bucketed" : "blocking",
                   m->params.total * sizeof(real), comm_alone, exposed_per_step, hidden,
                   imbalance_per_step,
                   rss_max / 1024.0);
            if (o->data)
                printf(" \"data\": {\"images_per_s_per_rank\": %.6g, \"ratio_to_step\": %.6g, "
                       "\"cached\": %s, \"open_s\": %.6g},\n",
                       db.images_per_s, db.images_per_s / (imgs / world),
                       db.desc.cached ? "true" : "false", db.open_s);
            printf(" \"layers\": [");
            for (int i = 0; i < m->nprof; i++)
                printf("%s\n  {\"name\": \"%s\", \"forward_s\": %.6g, \"backward_s\": %.6g, "
                       "\"forward_macs_per_image\": %.0f}",
                       i ? "," : "", m->prof[i].name, m->prof[i].fwd / steps,
                       m->prof[i].bwd / steps, m->prof[i].macs);
            printf("]}\n");
        } else {
            printf("yoto bench: %s\n", cfgname);
            printf("  model       %zu parameters (%zu conditioning), input %dx%dx%d, %s output\n",
                   m->params.total, arena_conditioning_size(&m->params), m->in_h, m->in_w, C,
                   gauss ? "gaussian" : "bernoulli");
            printf("  batch       %d per rank x %d rank%s, %d timed steps after %d warm-up\n", B,
                   world, world > 1 ? "s" : "", steps, warmup);
            printf("  cost        %.2f M multiply-adds forward, %.2f M FLOPs per image per step\n",
                   macs / 1e6, flops / 1e6);
            printf("  OpenBLAS    %s kernels, %d thread%s per rank (CPU: %s)\n", blas_corename(),
                   blas_threads(), blas_threads() > 1 ? "s" : "", blas_cpu_isa());
            printf("  sgemm       %.1f GFLOP/s (1024^3, 1 thread, this run)\n", sgemm);
            printf("  step        %.2f ms median (min %.2f, max %.2f)\n", 1e3 * step_med,
                   1e3 * step_min, 1e3 * step_max);
            printf("  throughput  %.1f images/s, %.2f GFLOP/s per rank = %.1f%% of sgemm\n", imgs,
                   gflops_rank, 100 * gflops_rank / sgemm);
            printf("  phases      forward %.2f ms, backward %.2f ms, allreduce %.2f ms, optimizer "
                   "%.2f ms\n",
                   1e3 * med[PH_FORWARD], 1e3 * med[PH_BACKWARD], 1e3 * med[PH_ALLREDUCE],
                   1e3 * med[PH_OPTIMIZER]);
            if (world > 1)
                printf("  allreduce   %s, %.2f MB: %.2f ms alone, %.2f ms exposed per step "
                       "(%.0f%% hidden); %.2f ms waiting for the slowest rank\n",
                       overlap ? "bucketed, overlapped" : "blocking",
                       m->params.total * sizeof(real) / 1048576.0, 1e3 * comm_alone,
                       1e3 * exposed_per_step, 100 * hidden, 1e3 * imbalance_per_step);
            printf("  memory      peak RSS %.1f MB (largest rank)\n", rss_max / 1024.0);
            if (o->data)
                printf("  data        %.0f images/s per rank from %s (%s) = %.1fx what the step "
                       "consumes (%.0f per rank)\n",
                       db.images_per_s, db.desc.file, db.desc.cached ? "cached" : "streaming",
                       db.images_per_s / (imgs / world), imgs / world);
            printf("  layers      %-28s %9s %9s %8s %8s\n", "(ms per step)", "forward", "backward",
                   "GFLOP/s", "share");
            double total = 0;
            for (int i = 0; i < m->nprof; i++) total += m->prof[i].fwd + m->prof[i].bwd;
            for (int i = 0; i < m->nprof; i++) {
                const model_prof *p = &m->prof[i];
                double t = (p->fwd + p->bwd) / steps;
                /* forward + backward FLOPs of this layer: about 3 x forward */
                double gf = t > 0 && p->macs > 0 ? 6.0 * p->macs * B / t / 1e9 : 0;
                printf("              %-28s %9.3f %9.3f %8.2f %7.1f%%\n", p->name,
                       1e3 * p->fwd / steps, 1e3 * p->bwd / steps, gf,
                       total > 0 ? 100 * (p->fwd + p->bwd) / total : 0);
            }
        }
        fflush(stdout);
    }
    dist_sync_free(sync);
    free(buf);
    free(t_step);
    free(ph);
    free(x);
    free(eps);
    free(w_kl);
    free(w_rec);
    free(cond);
    model_free(m);
    return YT_OK;
}
