/* train.c — `yoto train`: resolve the run, open its directory and log, run
 * the loop of trainer steps with progress, checkpoints and evaluations, stop
 * on signals (see train.h). */
#include "train.h"

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
#include "isa.h"
#include "labels.h"
#include "model.h"
#include "run.h"
#include "runlog.h"
#include "trainer.h"
#include "watchdog.h"

/* ---- signals ------------------------------------------------------------------------ */

static volatile sig_atomic_t g_stop_signal; /* the first signal seen, 0 = none */

static const char *signal_name(int sig) {
    switch (sig) {
    case SIGTERM:
        return "SIGTERM";
    case SIGUSR1:
        return "SIGUSR1";
    case SIGINT:
        return "SIGINT";
    }
    return "a signal";
}

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

/* ---- configuration and resume ---------------------------------------------------------- */

/* YT_OK when cfg differs from the checkpoint's stored config only in keys
 * that may change on resume (the schema says which); else one message
 * naming every other key that differs. */
static int check_resume_config(const yoto_config *cfg, const char *stored_yaml, const char *ckpt) {
    yoto_config *old = yt_calloc(1, sizeof *old);
    int rc = config_load_text(old, stored_yaml, ckpt, NULL, 0);
    if (rc == YT_OK) rc = config_resume_check(old, cfg, ckpt);
    free(old);
    return rc;
}

/* What the run continues from, and the config it trains. */
typedef struct {
    yoto_config *cfg;
    bool resume;
    char ckpt[CFG_PATH_MAX + 64];
    ckpt_state st;
    char *yaml;    /* resolved config text */
    char *warning; /* corrupt checkpoints skipped on resume (ckpt_find_resume) */
} run_setup;

/* --resume RUN_DIR: the run's newest checkpoint, its config with the --set
 * overrides (which may change only what may change on resume). */
/* The newest checkpoint of dir that verifies, falling back past corrupt
 * ones (renamed, never deleted: ckpt.h); what was skipped is said on stderr
 * at once and kept for log.txt. Collective. */
static int find_resume(const char *dir, run_setup *s, bool *found) {
    char *warning = NULL;
    int rc = dist_agree(ckpt_find_resume(dir, s->ckpt, sizeof s->ckpt, found, &warning));
    if (rc == YT_OK && warning) {
        dist_warn("%s", warning);
        s->warning = warning;
    } else {
        free(warning);
    }
    return rc;
}

static int resolve_resume(const train_args *a, run_setup *s, char **stored) {
    const char *dir = a->resume_dir;
    int rc = YT_OK;
    if (strlen(dir) >= sizeof s->cfg->experiment.out_dir)
        rc = yt_fail(YT_ERR_USAGE, "--resume %s: path too long (at most %zu characters)", dir,
                     sizeof s->cfg->experiment.out_dir - 1);
    else if (!fs_is_dir(dir))
        rc = yt_fail(YT_ERR_USAGE, "--resume %s: %s", dir,
                     fs_exists(dir) ? "expected a run directory, not a file"
                                    : "no such run directory");
    bool found = false;
    if (dist_agree(rc) == YT_OK) rc = find_resume(dir, s, &found);
    if (rc == YT_OK && !found)
        rc = yt_fail(YT_ERR_USAGE, "--resume %s: no checkpoint in this run directory (no %s/ckpt/latest)",
                     dir, dir);
    rc = dist_agree(rc);
    if (rc != YT_OK) return rc;
    run_handle r;
    rc = run_open(s->ckpt, a->sets, a->nsets, &r);
    if (rc == YT_OK) {
        snprintf(s->ckpt, sizeof s->ckpt, "%s", r.ckpt);
        s->st = r.st;
        *s->cfg = *r.cfg;
        *stored = r.yaml;
        r.yaml = NULL;
        /* the run continues where it is, wherever it was first started */
        snprintf(s->cfg->experiment.out_dir, sizeof s->cfg->experiment.out_dir, "%s", r.run_dir);
        s->resume = true;
    }
    run_close(&r);
    return rc;
}

/* CONFIG: its out_dir may already hold a checkpoint (a requeued job):
 * continue from it. */
static int resolve_config(const train_args *a, run_setup *s, char **stored) {
    int rc = config_load(s->cfg, a->config_path, a->sets, a->nsets);
    if (rc == YT_OK && dist_fault("config")) /* tests: a failure on one rank only */
        rc = yt_fail(YT_ERR_USAGE, "%s: injected config error (YOTO_FAULT)", a->config_path);
    rc = dist_agree(rc);
    if (rc != YT_OK) return rc;
    /* the same answer on every rank (ckpt/latest on some ranks only is an error) */
    bool found;
    rc = find_resume(s->cfg->experiment.out_dir, s, &found);
    if (rc != YT_OK || !found) return rc;
    rc = ckpt_read_header(s->ckpt, &s->st, stored);
    s->resume = rc == YT_OK;
    return rc;
}

static int resolve(const train_args *a, run_setup *s) {
    char *stored = NULL;
    int rc = a->resume_dir ? resolve_resume(a, s, &stored) : resolve_config(a, s, &stored);
    if (rc == YT_OK && s->resume) rc = dist_agree(check_resume_config(s->cfg, stored, s->ckpt));
    free(stored);
    if (rc == YT_OK) s->yaml = config_to_yaml(s->cfg);
    /* every rank must train the same thing (a node-local config could differ) */
    if (rc == YT_OK && !dist_same_everywhere(s->yaml, strlen(s->yaml)))
        rc = yt_fail(YT_ERR_USAGE,
                     "the ranks resolved different configs (is %s different on "
                     "some nodes?)",
                     a->config_path ? a->config_path : s->ckpt);
    return dist_agree(rc);
}

/* ---- the run ------------------------------------------------------------------------ */

typedef struct {
    const train_args *args;
    run_setup s;
    runlog *rl;
    int rank, world, batch; /* batch: per rank */
    vae_model *m;           /* the replica trained */
    vae_model *em;          /* a copy sized for eval batches, made at the first eval */
    trainer *tr;
    data_source *data;
    real *x;                                /* [C][batch][H][W] this rank's batch */
    long step, epoch, sie, steps_per_epoch; /* sie: steps done in this epoch */
    /* progress: means since the last metrics row; rates since the last line */
    double acc[3];
    long acc_n;
    double t_start, t_row, t_line;
    long step_row, step_line;
    char warning[1024]; /* said once the log is open */
    /* hang detection: the limits, and whether the next step is special
     * (the first one, or one after a checkpoint or evaluation) */
    watchdog_clock clock;
    bool special_next;
    long ckpts; /* checkpoints written by this invocation */
} train_ctx;

/* The model, fresh or from the checkpoint; where the step counters stand. */
static int load_or_init(train_ctx *c) {
    const yoto_config *cfg = c->s.cfg;
    c->m = model_create(&cfg->model, c->batch);
    if (!c->s.resume) {
        model_init_params(c->m, cfg->experiment.seed);
        return YT_OK;
    }
    c->step = c->s.st.step;
    c->epoch = c->s.st.epoch;
    c->sie = c->s.st.step_in_epoch;
    return ckpt_read_arena(c->s.ckpt, &c->m->params, true);
}

/* eval.metrics: on needs factor labels beside the split's images. Rank 0. */
static int probe_labels(const yoto_config *cfg, const cfg_split *sp, const char *file, long n) {
    split_labels l;
    int rc = labels_find(file, sp->dataset, n, NULL, "eval.metrics: auto or off evaluates without them",
                         &l);
    if (rc == YT_OK && !l.path[0])
        rc = yt_fail(YT_ERR_USAGE,
                     "eval.metrics: on (set at %s): eval split '%s' (%s, images '%s') has no "
                     "labels (no dataset 'labels' beside the images); the metrics need factor "
                     "labels: set eval.metrics to auto or off",
                     config_where(cfg, "eval.metrics"), sp->name, file, sp->dataset);
    labels_close(&l);
    return rc;
}

/* The eval splits are checked now, not at the first evaluation hours later. */
static int probe_eval_splits(const yoto_config *cfg) {
    int rc = YT_OK;
    if (cfg->eval.every > 0)
        for (int i = 0; i < cfg->eval.n_splits && rc == YT_OK && dist_rank() == 0; i++) {
            const cfg_split *sp = config_split(cfg, cfg->eval.splits[i]);
            const char *file = sp->file[0] ? sp->file : cfg->data.file;
            data_image_info info;
            rc = data_probe(file, sp->dataset, &info);
            if (rc == YT_OK && cfg->eval.metrics == EVAL_METRICS_ON)
                rc = probe_labels(cfg, sp, file, info.n);
        }
    return dist_agree(rc);
}

/* This rank's shard of the train split; where the epoch stands. */
static int open_data(train_ctx *c) {
    const yoto_config *cfg = c->s.cfg;
    int rc = data_open_train(&c->data, cfg, c->rank, c->world, c->batch, NULL);
    if (rc == YT_OK) rc = probe_eval_splits(cfg);
    if (rc != YT_OK) return rc;
    c->steps_per_epoch = data_describe(c->data)->steps;
    c->x = yt_malloc(data_batch_floats(c->data) * sizeof *c->x);
    const ckpt_state *st = &c->s.st;
    if (c->s.resume && st->world_size != c->world) {
        /* another world size cuts other shards: start the next epoch cleanly */
        snprintf(c->warning, sizeof c->warning,
                 "%s was written by %ld rank%s, this run has %d: the shards are re-split and "
                 "training continues at the start of epoch %ld (the data order differs from an "
                 "uninterrupted run)",
                 c->s.ckpt, st->world_size, st->world_size == 1 ? "" : "s", c->world,
                 c->epoch + (c->sie > 0));
        if (c->sie > 0) c->epoch++;
        c->sie = 0;
    }
    if (c->sie >= c->steps_per_epoch) {
        c->epoch++;
        c->sie = 0;
    }
    return YT_OK;
}

/* A run directory that holds a config.yaml but no checkpoint: another
 * config there is refused unless --force (its config.yaml would be
 * overwritten silently). Rank 0. */
static int check_reuse(const train_ctx *c) {
    const char *dir = c->s.cfg->experiment.out_dir;
    if (c->s.resume || c->args->force) return YT_OK;
    char path[CFG_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    char *old = fs_read_text(path);
    int rc = YT_OK;
    if (old && strcmp(old, c->s.yaml) != 0)
        rc = yt_fail(YT_ERR_USAGE,
                     "%s holds a run of another config (%s) and no checkpoint: set another "
                     "experiment.out_dir, remove the directory, or pass --force to start over "
                     "in it",
                     dir, path);
    free(old);
    return rc;
}

/* The run directory: config.yaml, log.txt, metrics.csv. Made once the inputs
 * have been checked, so that a failed start leaves nothing behind. */
static int open_run_dir(train_ctx *c) {
    const char *dir = c->s.cfg->experiment.out_dir;
    int rc = YT_OK;
    if (c->rank == 0) {
        char path[CFG_PATH_MAX + 32];
        rc = check_reuse(c);
        if (rc == YT_OK) rc = fs_mkdir_p(dir);
        snprintf(path, sizeof path, "%s/config.yaml", dir);
        if (rc == YT_OK) rc = fs_write_atomic(path, c->s.yaml);
    }
    rc = dist_agree(rc);
    if (rc != YT_OK) return rc;
    c->rl = runlog_open(dir, c->s.resume ? c->s.st.step : 0, c->args->progress);
    return dist_agree(c->rl ? YT_OK : YT_ERR_RUNTIME);
}

/* log.txt's record of the run: command, build, hosts, kernels. */
static void log_start(train_ctx *c) {
    const yoto_config *cfg = c->s.cfg;
    char hosts[1024];
    dist_host_summary(hosts, sizeof hosts);
    runlog_note(c->rl, "---- %s", c->args->cmdline ? c->args->cmdline : "yoto train");
    runlog_note(c->rl,
                "yoto %s (git %s, %s build, %s kernels); %d rank%s on %s; OpenBLAS %s kernels; "
                "%d thread%s per rank; CPU %s",
                yt_version(), yt_git_commit(), REAL_NAME, isa_kernels(), c->world,
                c->world > 1 ? "s" : "", hosts, blas_corename(), blas_threads(),
                blas_threads() > 1 ? "s" : "", blas_cpu_isa());
    runlog_note(c->rl, "gradient sums: %s", trainer_sync_how(c->tr));
    runlog_line(c->rl,
                "yoto %s: %s %s, %ld of %ld steps done; %d rank%s x %d images, %ld steps per "
                "epoch; %zu parameters; OpenBLAS %s; %d thread%s per rank",
                yt_version(), c->s.resume ? "resuming" : "training",
                c->s.resume ? c->s.ckpt : cfg->experiment.out_dir, c->step, cfg->train.steps,
                c->world, c->world > 1 ? "s" : "", c->batch, c->steps_per_epoch, c->m->params.total,
                blas_corename(), blas_threads(), blas_threads() > 1 ? "s" : "");
    if (c->s.warning) runlog_note(c->rl, "warning: %s", c->s.warning); /* on stderr already */
    if (c->warning[0]) runlog_warn(c->rl, "%s", c->warning);
    const char *advice = blas_core_advice();
    if (advice) runlog_warn(c->rl, "%s", advice);
    const char *bind = blas_threads_advice(); /* said for rank 0's binding */
    if (bind) runlog_warn(c->rl, "%s", bind);
}

/* The hang watchdog (watchdog.h): its limits, its thread, the hang
 * message's way into log.txt. The first step is a warm-up step. */
static int start_watchdog(train_ctx *c) {
    const double t = c->s.cfg->train.step_timeout_s;
    watchdog_clock_init(&c->clock, t);
    c->special_next = true;
    char path[CFG_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/log.txt", c->s.cfg->experiment.out_dir);
    int rc = dist_agree(watchdog_start(c->rank, path));
    if (rc != YT_OK) return rc;
    dist_set_hang_hook(watchdog_note);
    if (t > 0)
        runlog_note(c->rl,
                    "watchdog: a phase of a step may take %g s, a checkpoint, evaluation or "
                    "warm-up step %g s (train.step_timeout_s); then the job ends (exit %d)",
                    t, WATCHDOG_LONG_FACTOR * t, YT_EXIT_HUNG);
    else
        runlog_note(c->rl,
                    "watchdog: a phase of a step may take max(%g s, %g x the median step), "
                    "a checkpoint, evaluation or warm-up step %g x that (train.step_timeout_s: "
                    "auto); then the job ends (exit %d)",
                    WATCHDOG_AUTO_MIN_S, WATCHDOG_AUTO_FACTOR, WATCHDOG_LONG_FACTOR, YT_EXIT_HUNG);
    return YT_OK;
}

/* Everything before the first step. */
static int setup(train_ctx *c, const train_args *args) {
    int rc = resolve(args, &c->s);
    if (rc != YT_OK) return rc;
    const yoto_config *cfg = c->s.cfg;
    rc = dist_agree(trainer_batch_per_rank(cfg, c->world, &c->batch));
    if (rc != YT_OK) return rc;
    blas_set_threads(cfg->train.threads);
    /* a path MPI-IO cannot open would only fail at the first checkpoint */
    rc = dist_agree(ckpt_check_run_dir(cfg->experiment.out_dir));
    if (rc == YT_OK) rc = dist_agree(load_or_init(c));
    if (rc == YT_OK) rc = open_data(c);
    if (rc == YT_OK) rc = open_run_dir(c);
    if (rc != YT_OK) return rc;
    install_signals();
    c->tr = trainer_create(c->m, cfg, c->rank, c->world);
    log_start(c);
    rc = start_watchdog(c);
    c->t_start = c->t_row = c->t_line = yt_now();
    c->step_row = c->step_line = c->step;
    return rc;
}

/* ---- periodic work ------------------------------------------------------------------- */

/* The beta tables of every eval split at this step, with a copy of the
 * parameters in a model sized for eval batches. Collective. */
static int evaluate(train_ctx *c) {
    const yoto_config *cfg = c->s.cfg;
    const char *dir = cfg->experiment.out_dir;
    if (!c->em) c->em = model_create(&cfg->model, (int)cfg->eval.batch_size);
    memcpy(c->em->params.param, c->m->params.param, c->m->params.total * sizeof(real));
    double betas[EVAL_MAX_BETAS];
    int nb = 0;
    int rc = run_betas(cfg, NULL, betas, &nb);
    /* the parameters in memory; the same param_checksum as this step's checkpoint */
    eval_file *f = yt_calloc(1, sizeof *f), *all = yt_calloc(1, sizeof *all);
    eval_file_init(f, c->em, c->step, NULL, "yoto train");
    double t0 = yt_now();
    for (int i = 0; i < cfg->eval.n_splits && rc == YT_OK; i++) {
        rc = eval_split(c->em, cfg, cfg->eval.splits[i], betas, nb, &f->table[i]);
        if (rc == YT_OK) f->ntables++;
    }
    if (rc == YT_OK) rc = eval_write(dir, f, all);
    if (rc == YT_OK) {
        char line[1024];
        int len = snprintf(line, sizeof line, "eval step %ld (%.1f s): full loss", c->step,
                           yt_now() - t0);
        for (int i = 0; i < f->ntables && len < (int)sizeof line - 200; i++) { /* ~150 each */
            const eval_table *t = &f->table[i];
            const eval_row *lo = &t->row[0], *hi = &t->row[t->n - 1];
            len += snprintf(line + len, sizeof line - (size_t)len,
                            "  %s beta %g: %.4g, beta %g: %.4g", t->split, lo->beta, lo->full_loss,
                            hi->beta, hi->full_loss);
            if (t->labels[0]) /* the disentanglement metrics were computed */
                len += snprintf(line + len, sizeof line - (size_t)len, " (MIG %.3f, %.3f)",
                                lo->mig, hi->mig);
        }
        runlog_line(c->rl, "%s; tables in %s/eval/", line, dir);
        if (all->note[0]) runlog_warn(c->rl, "%s", all->note);
    }
    eval_file_free(f);
    eval_file_free(all);
    free(f);
    free(all);
    return rc;
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

/* Unix time in seconds, with milliseconds. */
static double unix_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A progress line: the means since the last metrics row, rates since the
 * last line. */
static void progress_line(train_ctx *c, double now, double nimg, double lr) {
    const yoto_config *cfg = c->s.cfg;
    const double n = (double)c->acc_n, dt = now - c->t_line;
    const long ds = c->step - c->step_line;
    const double ips = ds > 0 && dt > 0 ? nimg * ds / dt : 0, ms = ds > 0 ? 1e3 * dt / ds : 0;
    char eta[32], elapsed[32], line[512];
    fmt_duration(ips > 0 ? (cfg->train.steps - c->step) * nimg / ips : -1, eta, sizeof eta);
    fmt_duration(now - c->t_start, elapsed, sizeof elapsed);
    snprintf(line, sizeof line,
             "step %ld/%ld  epoch %ld  loss %.4g  recon %.4g  kl %.4g  lr %.3g  %.1f ms/step  "
             "%.1f img/s  elapsed %s  ETA %s",
             c->step, cfg->train.steps, c->epoch, c->acc[0] / n, c->acc[1] / n, c->acc[2] / n, lr,
             ms, ips, elapsed, eta);
    runlog_progress(c->rl, line);
    c->t_line = now;
    c->step_line = c->step;
}

/* Accumulates the step's losses. Every log_every steps (and at the end) a
 * metrics.csv row and a progress line of their means; in between, a
 * progress line whenever PROGRESS_EVERY_S passed (a live line: often). */
enum { PROGRESS_EVERY_S = 30 };
static void progress_step(train_ctx *c, const step_sums *sums, bool force) {
    const double nimg = (double)sums->images;
    c->acc[0] += sums->loss / nimg;
    c->acc[1] += sums->recon / nimg;
    c->acc[2] += sums->kl / nimg;
    c->acc_n++;
    const double now = yt_now(), lr = trainer_lr(c->tr);
    const bool row = c->step % c->s.cfg->train.log_every == 0 || force;
    const double every = runlog_live(c->rl) ? 0.5 : PROGRESS_EVERY_S;
    if (!row) {
        if (c->rank == 0 && now - c->t_line >= every) progress_line(c, now, nimg, lr);
        return;
    }
    const double n = (double)c->acc_n, dt = now - c->t_row;
    const long ds = c->step - c->step_row;
    runlog_row r = {c->step,
                    c->epoch,
                    c->acc[0] / n,
                    c->acc[1] / n,
                    c->acc[2] / n,
                    lr,
                    ds > 0 && dt > 0 ? nimg * ds / dt : 0,
                    unix_time(),
                    now - c->t_start,
                    ds > 0 ? 1e3 * dt / ds : 0};
    progress_line(c, now, nimg, lr);
    runlog_metrics(c->rl, &r);
    c->acc[0] = c->acc[1] = c->acc[2] = 0;
    c->acc_n = 0;
    c->t_row = now;
    c->step_row = c->step;
}

/* Arms the watchdog thread and the polled waits (dist_watch) for what
 * follows: a step, or the checkpoint and evaluation after one. */
static void watch(long step, double limit) {
    watchdog_arm(step, limit);
    dist_watch(step, limit);
}

/* Checkpoint and eval when due (always at the end; only the checkpoint when
 * stopping), under the watchdog's long limit; *busy: one of them ran.
 * Collective. */
static int periodic(train_ctx *c, bool last, bool stopped, bool *busy) {
    const yoto_config *cfg = c->s.cfg;
    const long every = cfg->train.checkpoint_every, step = c->step;
    const bool ckpt = (every > 0 && step % every == 0) || last || stopped;
    const bool eval = !stopped && cfg->eval.every > 0 && (step % cfg->eval.every == 0 || last);
    int rc = YT_OK;
    *busy = ckpt || eval;
    if (*busy) watch(step, watchdog_limit(&c->clock, true));
    if (ckpt) {
        watchdog_beat(WD_CHECKPOINT);
        /* tests: a checkpoint write that never ends (a stuck file system),
         * from the second one of this invocation on */
        while (c->ckpts > 0 && dist_fault("hang_ckpt"))
            pause();
        ckpt_state cs = {step, c->epoch, c->sie, c->world, cfg->experiment.seed};
        trainer_gather_optimizer(c->tr);
        rc = ckpt_save(cfg->experiment.out_dir, &c->m->params, &cs, c->s.yaml,
                       cfg->train.keep_checkpoints);
        c->ckpts++;
    }
    if (rc == YT_OK && eval) {
        watchdog_beat(WD_EVAL);
        rc = evaluate(c);
    }
    return rc;
}

/* ---- the loop ------------------------------------------------------------------------ */

/* This rank's batch of the step (and the test's injected faults). */
static int read_batch(train_ctx *c) {
    long count = 0;
    int rc = data_batch(c->data, c->epoch, c->sie, c->x, NULL, &count);
    if (rc == YT_OK && dist_fault("io_error") && c->step >= 2)
        rc = yt_fail(YT_ERR_RUNTIME, "injected I/O error at step %ld (YOTO_FAULT)", c->step);
    if (dist_fault("slow_step")) usleep(100000); /* tests: a 100 ms step (jobs/ preemption) */
    return rc;
}

/* Steps until train.steps or a stop request; *stopped tells which. */
static int loop(train_ctx *c, bool *stopped) {
    const long steps = c->s.cfg->train.steps;
    *stopped = false;
    while (c->step < steps) {
        const double t0 = yt_now();
        const bool special = c->special_next;
        if (g_stop_signal) runlog_stopping(c->rl);
        watch(c->step, watchdog_limit(&c->clock, special));
        watchdog_beat(WD_READ);
        int input = read_batch(c);
        step_sums sums;
        int rc = trainer_step(c->tr, c->step, c->x, input, g_stop_signal != 0, &sums);
        if (rc != YT_OK) return rc;
        c->step++;
        if (++c->sie >= c->steps_per_epoch) {
            c->epoch++;
            c->sie = 0;
        }
        *stopped = sums.stop;
        if (*stopped) runlog_stopping(c->rl);
        bool last = c->step == steps, busy;
        watchdog_beat(WD_LOG);
        progress_step(c, &sums, last || *stopped);
        const double tp = yt_now();
        rc = periodic(c, last, *stopped, &busy);
        /* rates count training steps only: a checkpoint or evaluation's
         * time leaves the intervals (elapsed keeps it) */
        const double away = yt_now() - tp;
        c->t_line += away;
        c->t_row += away;
        if (rc != YT_OK || *stopped) return rc;
        /* the auto limit learns from plain steps only */
        if (!special && !busy) watchdog_clock_add(&c->clock, yt_now() - t0);
        c->special_next = busy;
    }
    return YT_OK;
}

static void teardown(train_ctx *c, int rc) {
    watchdog_stop();
    dist_set_hang_hook(NULL);
    dist_watch(-1, 0);
    if (rc != YT_OK && rc != YT_EXIT_REQUEUE) runlog_error(c->rl, yt_errmsg());
    trainer_free(c->tr);
    data_close(c->data);
    model_free(c->em);
    model_free(c->m);
    free(c->x);
    runlog_close(c->rl);
    free(c->s.yaml);
    free(c->s.warning);
    free(c->s.cfg);
}

int train_run(const train_args *args) {
    train_ctx c = {.args = args, .rank = dist_rank(), .world = dist_size()};
    c.s.cfg = yt_calloc(1, sizeof *c.s.cfg);
    bool stopped = false;
    int rc = setup(&c, args);
    if (rc == YT_OK) rc = loop(&c, &stopped);
    const char *dir = c.s.cfg->experiment.out_dir;
    if (rc == YT_OK && stopped) {
        runlog_line(c.rl,
                    "stopped by %s at step %ld: checkpoint written to %s/ckpt; resume with the "
                    "same command (exit %d = requeue me)",
                    signal_name(g_stop_signal), c.step, dir, YT_EXIT_REQUEUE);
        rc = YT_EXIT_REQUEUE;
    } else if (rc == YT_OK) {
        runlog_line(c.rl, "done: %ld steps; checkpoint %s/ckpt/step-%09ld.h5", c.step, dir, c.step);
    }
    teardown(&c, rc);
    return rc;
}
