/* train.c — the training loop (see train.h). */
#include "train.h"

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blas.h"
#include "ckpt.h"
#include "config.h"
#include "data.h"
#include "dist.h"
#include "eval.h"
#include "fsutil.h"
#include "loss.h"
#include "model.h"
#include "optim.h"
#include "rng.h"

/* ---- signals ------------------------------------------------------------------------ */

static volatile sig_atomic_t g_stop_signal; /* the first signal seen, 0 = none */

static void on_signal(int sig) {
    if (sig == SIGINT && g_stop_signal == SIGINT) _exit(130); /* second ^C: now */
    if (!g_stop_signal) g_stop_signal = sig;
}

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* After a stop signal mpirun may no longer drain our stdout (it is shutting
 * the job down): a full pipe would block rank 0 forever, so from then on
 * stdout writes never block (log.txt still gets every line). */
static int g_stdout_flags = -1; /* stdout's flags before, when changed */

static void stdout_nonblocking_when_stopping(void) {
    static bool done;
    if (!g_stop_signal || done) return;
    int fl = fcntl(STDOUT_FILENO, F_GETFL);
    if (fl >= 0 && fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK) == 0) g_stdout_flags = fl;
    done = true;
}

/* The flag belongs to the open file, which the shell or script that started
 * us shares (a terminal, a pipe): give it back as it was. */
static void stdout_restore(void) {
    if (g_stdout_flags < 0) return;
    fflush(stdout);
    fcntl(STDOUT_FILENO, F_SETFL, g_stdout_flags);
    g_stdout_flags = -1;
}

/* ---- the run's log (rank 0) ------------------------------------------------------------ */

typedef struct {
    FILE *log;     /* log.txt */
    FILE *metrics; /* metrics.csv */
    bool tty;      /* stdout is a terminal: progress on one live line */
    bool live;     /* a live line is on screen */
} run_log;

static void log_line(run_log *rl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(run_log *rl, const char *fmt, ...) {
    if (dist_rank() != 0) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    stdout_nonblocking_when_stopping();
    if (rl->live) fputs("\n", stdout);
    rl->live = false;
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (rl->log) {
        fputs(line, rl->log);
        fputc('\n', rl->log);
        fflush(rl->log);
    }
}

/* A progress update: one line per update in logs, a live line on a terminal. */
static void progress(run_log *rl, const char *line) {
    if (dist_rank() != 0) return;
    stdout_nonblocking_when_stopping();
    if (rl->tty) {
        printf("\r%s\033[K", line);
        rl->live = true;
    } else {
        puts(line);
    }
    fflush(stdout);
    if (rl->log) {
        fputs(line, rl->log);
        fputc('\n', rl->log);
        fflush(rl->log);
    }
}

static const char *METRICS_HEADER = "step,epoch,loss,recon,kl,lr,images_per_s,time\n";

/* metrics.csv keeps the rows of steps <= keep_upto (a resumed run rewrites
 * the ones the checkpoint does not cover) */
static int open_metrics(run_log *rl, const char *dir, long keep_upto) {
    char path[CFG_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    char *old = keep_upto > 0 ? fs_read_text(path) : NULL;
    if (keep_upto > 0 && !old && fs_exists(path)) /* keep its rows, do not truncate it */
        return yt_fail(YT_ERR_RUNTIME, "cannot read %s", path);
    rl->metrics = fopen(path, "w");
    if (!rl->metrics) {
        free(old);
        return yt_fail(YT_ERR_RUNTIME, "cannot write %s", path);
    }
    fputs(METRICS_HEADER, rl->metrics);
    for (char *line = old ? strtok(old, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        char *end;
        long step = strtol(line, &end, 10);
        if (end != line && *end == ',' && step <= keep_upto) fprintf(rl->metrics, "%s\n", line);
    }
    free(old);
    fflush(rl->metrics);
    return YT_OK;
}

/* ---- configuration and resume ---------------------------------------------------------- */

/* Keys a resumed run may change: how long, how often, where, how fast.
 * Not data.stream_block_mb: it shapes the data order (docs/DATA.md), so a
 * resumed run would no longer continue bit for bit. */
/* Not the allreduce mode or bucket size: another reduction algorithm may
 * round differently, and the continuation would no longer be bit for bit. */
static void take_changeable(yoto_config *dst, const yoto_config *src) {
    dst->train.steps = src->train.steps;
    dst->train.log_every = src->train.log_every;
    dst->train.checkpoint_every = src->train.checkpoint_every;
    dst->train.keep_checkpoints = src->train.keep_checkpoints;
    dst->train.threads = src->train.threads;
    dst->eval = src->eval;
    dst->data.cache_mb = src->data.cache_mb;
    memcpy(dst->data.file, src->data.file, sizeof dst->data.file);
    for (int i = 0; i < CFG_SPLITS_MAX; i++)
        memcpy(dst->data.splits[i].file, src->data.splits[i].file, sizeof dst->data.splits[i].file);
    memcpy(dst->experiment.out_dir, src->experiment.out_dir, sizeof dst->experiment.out_dir);
}

/* YT_OK when cfg differs from the checkpoint's config only in changeable
 * keys; else a message quoting the first differing line of the two. */
static int check_resume_config(const yoto_config *cfg, const char *stored_yaml, const char *ckpt) {
    yoto_config *old = yt_calloc(1, sizeof *old);
    int rc = config_load_text(old, stored_yaml, ckpt, NULL, 0);
    if (rc != YT_OK) {
        free(old);
        return rc;
    }
    take_changeable(old, cfg);
    char *a = config_to_yaml(old), *b = config_to_yaml(cfg);
    if (strcmp(a, b) != 0) {
        /* name the first line that differs, with its section */
        char *pa = a, *pb = b, section[96] = "";
        while (*pa && *pb) {
            size_t la = strcspn(pa, "\n"), lb = strcspn(pb, "\n");
            if (*pa != ' ' && *pa != '#') snprintf(section, sizeof section, "%.*s", (int)la, pa);
            if (la != lb || strncmp(pa, pb, la) != 0) {
                rc = yt_fail(YT_ERR_USAGE,
                             "cannot resume from %s: the model, data or training setup differs "
                             "from the checkpoint's (in section '%s': checkpoint has '%.*s', this "
                             "run '%.*s'); only train.steps, log/checkpoint intervals, eval.*, "
                             "data file paths and data.cache_mb may change on resume",
                             ckpt, section, (int)la, pa, (int)lb, pb);
                break;
            }
            pa += la + (pa[la] != 0);
            pb += lb + (pb[lb] != 0);
        }
        if (rc == YT_OK) rc = yt_fail(YT_ERR_USAGE, "cannot resume from %s: config differs", ckpt);
    }
    free(a);
    free(b);
    free(old);
    return rc;
}

typedef struct {
    yoto_config *cfg;
    bool resume;
    char ckpt[CFG_PATH_MAX + 64];
    ckpt_state st;
    char *yaml; /* resolved config text */
} run_setup;

static int resolve(const train_args *a, run_setup *s) {
    int rc;
    char *stored = NULL;
    if (a->resume_dir) {
        bool found = false;
        if (strlen(a->resume_dir) >= sizeof s->cfg->experiment.out_dir)
            rc = yt_fail(YT_ERR_USAGE, "--resume %s: path too long (at most %zu characters)",
                         a->resume_dir, sizeof s->cfg->experiment.out_dir - 1);
        else
            rc = ckpt_find_latest(a->resume_dir, s->ckpt, sizeof s->ckpt, &found);
        if (rc == YT_OK && !found)
            rc = yt_fail(YT_ERR_USAGE, "--resume %s: no checkpoint there (no %s/ckpt/latest)",
                         a->resume_dir, a->resume_dir);
        rc = dist_agree(rc);
        if (rc != YT_OK) return rc;
        rc = ckpt_read_header(s->ckpt, &s->st, &stored);
        if (rc != YT_OK) return rc;
        char src[CFG_PATH_MAX + 80];
        snprintf(src, sizeof src, "%s:/config", s->ckpt);
        rc = dist_agree(config_load_text(s->cfg, stored, src, a->sets, a->nsets));
        if (rc == YT_OK) {
            /* the run continues where it is, wherever it was first started */
            snprintf(s->cfg->experiment.out_dir, sizeof s->cfg->experiment.out_dir, "%s",
                     a->resume_dir);
        }
        s->resume = true;
    } else {
        rc = config_load(s->cfg, a->config_path, a->sets, a->nsets);
        if (rc == YT_OK && dist_fault("config")) /* tests: a failure on one rank only */
            rc = yt_fail(YT_ERR_USAGE, "%s: injected config error (YOTO_FAULT)", a->config_path);
        rc = dist_agree(rc);
        if (rc != YT_OK) return rc;
        bool found;
        rc = dist_agree(ckpt_find_latest(s->cfg->experiment.out_dir, s->ckpt, sizeof s->ckpt, &found));
        /* every rank must take the same branch: resuming is collective */
        if (rc == YT_OK) {
            long any = dist_allreduce_max_long(found), all = dist_allreduce_min_long(found);
            if (any != all)
                rc = yt_fail(YT_ERR_USAGE,
                             "%s/ckpt/latest %s on this rank but not on every rank: "
                             "experiment.out_dir must be a directory that all ranks share",
                             s->cfg->experiment.out_dir, found ? "exists" : "is missing");
            rc = dist_agree(rc);
        }
        if (rc == YT_OK && found) { /* a requeued job: continue */
            rc = ckpt_read_header(s->ckpt, &s->st, &stored);
            s->resume = rc == YT_OK;
        }
    }
    if (rc == YT_OK && s->resume) rc = dist_agree(check_resume_config(s->cfg, stored, s->ckpt));
    free(stored);
    if (rc == YT_OK) s->yaml = config_to_yaml(s->cfg);
    /* every rank must train the same thing (a node-local config could differ) */
    if (rc == YT_OK && !dist_same_everywhere(s->yaml, strlen(s->yaml)))
        rc = yt_fail(YT_ERR_USAGE, "the ranks resolved different configs (is %s different on "
                                   "some nodes?)",
                     a->config_path ? a->config_path : s->ckpt);
    return dist_agree(rc);
}

/* ---- periodic evaluation ------------------------------------------------------------ */

/* The beta tables of every eval split at this step, with a copy of the
 * parameters in a model sized for eval batches. Collective. */
static int evaluate(run_log *rl, const vae_model *m, vae_model **em, const yoto_config *cfg,
                    const char *dir, long step) {
    if (!*em) *em = model_create(&cfg->model, (int)cfg->eval.batch_size);
    memcpy((*em)->params.param, m->params.param, m->params.total * sizeof(real));
    double betas[EVAL_MAX_BETAS];
    int nb = eval_default_betas(cfg, betas);
    eval_table *t = yt_calloc(CFG_SPLITS_MAX, sizeof *t);
    int rc = YT_OK, nt = 0;
    double t0 = yt_now();
    for (int i = 0; i < cfg->eval.n_splits && rc == YT_OK; i++)
        rc = eval_split(*em, cfg, cfg->eval.splits[i], betas, nb, &t[nt++]);
    if (rc == YT_OK) rc = eval_write(dir, step, t, nt);
    if (rc == YT_OK) {
        char line[1024];
        int len = snprintf(line, sizeof line, "eval step %ld (%.1f s): full loss", step, yt_now() - t0);
        for (int i = 0; i < nt && len < (int)sizeof line - 80; i++)
            len += snprintf(line + len, sizeof line - (size_t)len, "  %s beta %g: %.4g, beta %g: %.4g",
                            t[i].split, t[i].row[0].beta, t[i].row[0].full_loss,
                            t[i].row[t[i].n - 1].beta, t[i].row[t[i].n - 1].full_loss);
        log_line(rl, "%s; tables in %s/eval/", line, dir);
    }
    free(t);
    return rc;
}

/* ---- the loop ------------------------------------------------------------------------ */

enum { ST_LOSS, ST_RECON, ST_KL, ST_ERROR, ST_NONFINITE, ST_STOP, ST_N };

static void sync_ready(void *ctx, size_t lo) { dist_sync_ready(ctx, lo); }

static bool all_finite(const real *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return false;
    return true;
}

static void fmt_duration(double s, char *buf, size_t size) {
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, size, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, size, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(buf, size, "%ldm%02lds", t / 60, t % 60);
}

int train_run(const train_args *args) {
    const int rank = dist_rank(), world = dist_size();
    run_setup s = {.cfg = yt_calloc(1, sizeof(yoto_config))};
    run_log rl = {.tty = isatty(STDOUT_FILENO) == 1};
    vae_model *m = NULL, *em = NULL;
    data_source *data = NULL;
    dist_sync *sync = NULL;
    real *x = NULL, *eps = NULL, *w_kl = NULL, *w_rec = NULL, *cond = NULL;
    int rc = resolve(args, &s);
    if (rc != YT_OK) goto out;
    const yoto_config *cfg = s.cfg;
    const char *dir = cfg->experiment.out_dir;

    /* per-rank batch */
    long B = cfg->train.batch_per_rank;
    if (B <= 0) {
        if (cfg->train.batch_size % world != 0) {
            rc = yt_fail(YT_ERR_USAGE,
                         "train.batch_size %ld does not divide over %d ranks (%s); use a "
                         "multiple of %d or set train.batch_per_rank",
                         cfg->train.batch_size, world, config_where(cfg, "train.batch_size"), world);
            goto out;
        }
        B = cfg->train.batch_size / world;
    }
    blas_set_threads(cfg->train.threads);
    /* before any work: a path MPI-IO cannot open would only fail at the first checkpoint */
    rc = ckpt_check_run_dir(dir);
    if (rc != YT_OK) goto out;

    /* run directory: config.yaml, log.txt, metrics.csv */
    if (rank == 0) {
        char path[CFG_PATH_MAX + 32];
        rc = fs_mkdir_p(dir);
        snprintf(path, sizeof path, "%s/config.yaml", dir);
        if (rc == YT_OK) rc = fs_write_atomic(path, s.yaml);
        snprintf(path, sizeof path, "%s/log.txt", dir);
        if (rc == YT_OK && !(rl.log = fopen(path, "a")))
            rc = yt_fail(YT_ERR_RUNTIME, "cannot write %s", path);
        if (rc == YT_OK) rc = open_metrics(&rl, dir, s.resume ? s.st.step : 0);
    }
    rc = dist_agree(rc);
    if (rc != YT_OK) goto out;
    install_signals();

    /* model: fresh or from the checkpoint */
    m = model_create(&cfg->model, (int)B);
    long step = 0, epoch = 0, sie = 0;
    if (s.resume) {
        rc = ckpt_read_arena(s.ckpt, &m->params, true);
        if (rc != YT_OK) goto out;
        step = s.st.step;
        epoch = s.st.epoch;
        sie = s.st.step_in_epoch;
    } else {
        model_init_params(m, cfg->experiment.seed);
    }

    rc = data_open_train(&data, cfg, rank, world, B, NULL);
    if (rc != YT_OK) goto out;
    /* the eval splits are checked now, not at the first evaluation hours later */
    if (cfg->eval.every > 0) {
        for (int i = 0; i < cfg->eval.n_splits && rc == YT_OK && rank == 0; i++) {
            const cfg_split *sp = config_split(cfg, cfg->eval.splits[i]);
            data_image_info info;
            rc = data_probe(sp->file[0] ? sp->file : cfg->data.file, sp->dataset, &info);
        }
        rc = dist_agree(rc);
        if (rc != YT_OK) goto out;
    }
    const data_desc *dd = data_describe(data);
    const long steps_per_epoch = dd->steps;
    if (s.resume && s.st.world_size != world) {
        /* another world size cuts other shards: start the next epoch cleanly */
        if (rank == 0)
            dist_warn("%s was written by %ld ranks, this run has %d: the shards are re-split and "
                      "training continues at the start of epoch %ld (the data order differs "
                      "from an uninterrupted run)",
                      s.ckpt, s.st.world_size, world, epoch + (sie > 0));
        if (sie > 0) epoch++;
        sie = 0;
    }
    if (sie >= steps_per_epoch) {
        epoch++;
        sie = 0;
    }

    const uint64_t seed = cfg->experiment.seed;
    const int L = m->latent;
    x = yt_malloc(data_batch_floats(data) * sizeof *x);
    eps = yt_malloc((size_t)B * L * sizeof *eps);
    w_kl = yt_malloc((size_t)B * sizeof *w_kl);
    w_rec = yt_malloc((size_t)B * sizeof *w_rec);
    cond = yt_malloc((size_t)B * 2 * sizeof *cond);
    size_t bucket = (size_t)(cfg->train.bucket_mb * 1048576.0 / sizeof(real));
    sync = dist_sync_create(m->params.grad, m->params.total, bucket,
                            cfg->train.allreduce == ALLREDUCE_BUCKETED);
    m->grad_ready = sync_ready;
    m->grad_ready_ctx = sync;
    adam_params ap = optim_adam_params(&cfg->optimizer);
    const double scale = 1.0 / ((double)B * world);

    log_line(&rl, "yoto %s: %s %s, %ld of %ld steps done; %d rank%s x %ld images, %ld steps per "
               "epoch; %zu parameters; OpenBLAS %s x %d",
          yt_version(), s.resume ? "resuming" : "training", s.resume ? s.ckpt : dir, step,
          cfg->train.steps, world, world > 1 ? "s" : "", B, steps_per_epoch, m->params.total,
          blas_corename(), blas_threads());
    const char *advice = blas_core_advice();
    if (advice) log_line(&rl, "warning: %s", advice);

    double t_log = yt_now(), acc[3] = {0, 0, 0};
    long acc_n = 0, log_step0 = step;
    bool stopped = false;

    while (step < cfg->train.steps) {
        /* the step's inputs */
        long count = 0;
        int local = data_batch(data, epoch, sie, x, NULL, &count);
        if (local == YT_OK && dist_fault("io_error") && step >= 2)
            local = yt_fail(YT_ERR_RUNTIME, "injected I/O error at step %ld (YOTO_FAULT)", step);
        loss_weights_sample(&cfg->loss_weights, seed, step, rank, (int)B, w_kl, w_rec, cond);
        for (long i = 0; i < B; i++) {
            rng_stream e = rng_stream_make(seed, RNG_EPS, (uint32_t)step, (uint32_t)rank, (uint32_t)i);
            for (int j = 0; j < L; j++) eps[i * L + j] = (real)rng_normal(&e);
        }
        /* forward, then one agreement: error, non-finite loss, stop requested */
        double st[ST_N] = {0};
        if (local == YT_OK) {
            memset(m->params.grad, 0, m->params.total * sizeof(real));
            model_forward(m, (int)B, x, cond, eps);
            for (long i = 0; i < B; i++) {
                st[ST_LOSS] += w_rec[i] * m->recon[i] + w_kl[i] * m->kl[i];
                st[ST_RECON] += m->recon[i];
                st[ST_KL] += m->kl[i];
            }
            if (dist_fault("nan_loss") && step >= 2) st[ST_LOSS] = NAN;
            if (!isfinite(st[ST_LOSS])) st[ST_NONFINITE] = 1;
        } else {
            st[ST_ERROR] = 1;
        }
        if (dist_fault("slow_step")) usleep(100000); /* tests: a 100 ms step (jobs/ preemption) */
        st[ST_STOP] = g_stop_signal != 0;
        double local_loss = st[ST_LOSS];
        dist_allreduce_sum_double(st, ST_N);
        if (st[ST_ERROR] > 0) {
            rc = dist_agree(local);
            goto out;
        }
        if (st[ST_NONFINITE] > 0) {
            rc = dist_agree(isfinite(local_loss) ? YT_OK
                                                 : yt_fail(YT_ERR_RUNTIME,
                                                           "non-finite loss at step %ld; the last "
                                                           "checkpoint is kept (lower "
                                                           "optimizer.lr?)",
                                                           step));
            goto out;
        }
        /* backward with the allreduce overlapped, then the identical update */
        dist_sync_begin(sync);
        model_backward(m, w_kl, w_rec, scale, false);
        dist_sync_finish(sync);
        if (!all_finite(m->params.grad, m->params.total)) {
            /* the gradient is the same on every rank: all stop here together */
            rc = yt_fail(YT_ERR_RUNTIME, "non-finite gradient at step %ld; the last checkpoint is kept",
                         step);
            goto out;
        }
        double lr = optim_lr(&cfg->optimizer, step);
        optim_adam_step(&m->params, &ap, step + 1, lr);
        step++;
        if (++sie >= steps_per_epoch) {
            epoch++;
            sie = 0;
        }
        const double nimg = (double)B * world;
        acc[0] += st[ST_LOSS] / nimg;
        acc[1] += st[ST_RECON] / nimg;
        acc[2] += st[ST_KL] / nimg;
        acc_n++;
        stopped = st[ST_STOP] > 0;

        bool last = step == cfg->train.steps;
        if (step % cfg->train.log_every == 0 || last || stopped) {
            double now = yt_now(), ips = nimg * (step - log_step0) / (now - t_log);
            char eta[32], line[512];
            fmt_duration((cfg->train.steps - step) * nimg / ips, eta, sizeof eta);
            snprintf(line, sizeof line,
                     "step %ld/%ld  epoch %ld  loss %.4g  recon %.4g  kl %.4g  lr %.3g  %.1f img/s  "
                     "ETA %s",
                     step, cfg->train.steps, epoch, acc[0] / acc_n, acc[1] / acc_n,
                     acc[2] / acc_n, lr, ips, eta);
            progress(&rl, line);
            if (rl.metrics) {
                fprintf(rl.metrics, "%ld,%ld,%.9g,%.9g,%.9g,%.9g,%.6g,%.3f\n", step, epoch,
                        acc[0] / acc_n, acc[1] / acc_n, acc[2] / acc_n, lr, ips,
                        (double)time(NULL));
                fflush(rl.metrics);
            }
            acc[0] = acc[1] = acc[2] = 0;
            acc_n = 0;
            t_log = now;
            log_step0 = step;
        }
        if ((cfg->train.checkpoint_every > 0 && step % cfg->train.checkpoint_every == 0) || last || stopped) {
            ckpt_state cs = {step, epoch, sie, world, seed};
            rc = ckpt_save(dir, &m->params, &cs, s.yaml, cfg->train.keep_checkpoints);
            if (rc != YT_OK) goto out;
        }
        if (!stopped && cfg->eval.every > 0 && (step % cfg->eval.every == 0 || last)) {
            rc = evaluate(&rl, m, &em, cfg, dir, step);
            if (rc != YT_OK) goto out;
        }
        if (stopped) break;
    }
    if (stopped) {
        log_line(&rl, "stopped by signal %d at step %ld: checkpoint written to %s/ckpt; resume "
                   "with the same command (exit %d = requeue me)",
              (int)g_stop_signal, step, dir, YT_EXIT_REQUEUE);
        rc = YT_EXIT_REQUEUE;
    } else {
        log_line(&rl, "done: %ld steps; checkpoint %s/ckpt/step-%09ld.h5", step, dir, step);
    }

out:
    if (rc != YT_OK && rc != YT_EXIT_REQUEUE) {
        if (rl.live) fputs("\n", stdout);
        if (rank == 0 && rl.log) fprintf(rl.log, "error: %s\n", yt_errmsg());
    }
    data_close(data);
    dist_sync_free(sync);
    model_free(em);
    model_free(m);
    free(x);
    free(eps);
    free(w_kl);
    free(w_rec);
    free(cond);
    if (rl.log) fclose(rl.log);
    if (rl.metrics) fclose(rl.metrics);
    stdout_restore();
    free(s.yaml);
    free(s.cfg);
    return rc;
}
