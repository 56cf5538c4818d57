/* train.c — `yoto train`: resolve the run, open its directory and log, run
 * the loop of trainer steps with progress, checkpoints and evaluations, stop
 * on signals (see train.h). */
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
#include "model.h"
#include "run.h"
#include "trainer.h"

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

/* What the run continues from, and the config it trains. */
typedef struct {
    yoto_config *cfg;
    bool resume;
    char ckpt[CFG_PATH_MAX + 64];
    ckpt_state st;
    char *yaml; /* resolved config text */
} run_setup;

/* --resume RUN_DIR: the run's newest checkpoint, its config with the --set
 * overrides (which may change only what may change on resume). */
static int resolve_resume(const train_args *a, run_setup *s, char **stored) {
    if (fs_exists(a->resume_dir) && !fs_is_dir(a->resume_dir))
        return dist_agree(yt_fail(YT_ERR_USAGE, "--resume %s: expected a run directory, not a file",
                                  a->resume_dir));
    run_handle r;
    int rc = run_open(a->resume_dir, a->sets, a->nsets, &r);
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
    const char *dir = s->cfg->experiment.out_dir;
    bool found;
    rc = dist_agree(ckpt_find_latest(dir, s->ckpt, sizeof s->ckpt, &found));
    if (rc != YT_OK) return rc;
    /* every rank must take the same branch: resuming is collective */
    long any = dist_allreduce_max_long(found), all = dist_allreduce_min_long(found);
    if (any != all)
        rc = yt_fail(YT_ERR_USAGE,
                     "%s/ckpt/latest %s on this rank but not on every rank: experiment.out_dir "
                     "must be a directory that all ranks share",
                     dir, found ? "exists" : "is missing");
    rc = dist_agree(rc);
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
        rc = yt_fail(YT_ERR_USAGE, "the ranks resolved different configs (is %s different on "
                                   "some nodes?)",
                     a->config_path ? a->config_path : s->ckpt);
    return dist_agree(rc);
}

/* ---- the run ------------------------------------------------------------------------ */

typedef struct {
    run_setup s;
    run_log rl;
    int rank, world, batch; /* batch: per rank */
    vae_model *m;           /* the replica trained */
    vae_model *em;          /* a copy sized for eval batches, made at the first eval */
    trainer *tr;
    data_source *data;
    real *x; /* [C][batch][H][W] this rank's batch */
    long step, epoch, sie, steps_per_epoch; /* sie: steps done in this epoch */
    /* progress since the last line */
    double t_log, acc[3];
    long acc_n, log_step0;
    char warning[1024]; /* said once the log is open */
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

/* The eval splits are checked now, not at the first evaluation hours later. */
static int probe_eval_splits(const yoto_config *cfg) {
    int rc = YT_OK;
    if (cfg->eval.every > 0)
        for (int i = 0; i < cfg->eval.n_splits && rc == YT_OK && dist_rank() == 0; i++) {
            const cfg_split *sp = config_split(cfg, cfg->eval.splits[i]);
            data_image_info info;
            rc = data_probe(sp->file[0] ? sp->file : cfg->data.file, sp->dataset, &info);
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

/* The run directory: config.yaml, log.txt, metrics.csv. Made once the inputs
 * have been checked, so that a failed start leaves nothing behind. */
static int open_run_dir(train_ctx *c) {
    const char *dir = c->s.cfg->experiment.out_dir;
    int rc = YT_OK;
    if (c->rank == 0) {
        char path[CFG_PATH_MAX + 32];
        rc = fs_mkdir_p(dir);
        snprintf(path, sizeof path, "%s/config.yaml", dir);
        if (rc == YT_OK) rc = fs_write_atomic(path, c->s.yaml);
        snprintf(path, sizeof path, "%s/log.txt", dir);
        if (rc == YT_OK && !(c->rl.log = fopen(path, "a")))
            rc = yt_fail(YT_ERR_RUNTIME, "cannot write %s", path);
        if (rc == YT_OK) rc = open_metrics(&c->rl, dir, c->s.resume ? c->s.st.step : 0);
    }
    return dist_agree(rc);
}

static void log_start(train_ctx *c) {
    const yoto_config *cfg = c->s.cfg;
    log_line(&c->rl,
             "yoto %s: %s %s, %ld of %ld steps done; %d rank%s x %d images, %ld steps per "
             "epoch; %zu parameters; OpenBLAS %s x %d",
             yt_version(), c->s.resume ? "resuming" : "training",
             c->s.resume ? c->s.ckpt : cfg->experiment.out_dir, c->step, cfg->train.steps,
             c->world, c->world > 1 ? "s" : "", c->batch, c->steps_per_epoch,
             c->m->params.total, blas_corename(), blas_threads());
    if (c->warning[0]) {
        if (c->rank == 0) dist_warn("%s", c->warning);
        if (c->rl.log) fprintf(c->rl.log, "warning: %s\n", c->warning);
    }
    const char *advice = blas_core_advice();
    if (advice) log_line(&c->rl, "warning: %s", advice);
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
    c->t_log = yt_now();
    c->log_step0 = c->step;
    return YT_OK;
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
    int rc = run_betas(cfg, NULL, betas, &nb), nt = 0;
    eval_table *t = yt_calloc(CFG_SPLITS_MAX, sizeof *t);
    double t0 = yt_now();
    for (int i = 0; i < cfg->eval.n_splits && rc == YT_OK; i++)
        rc = eval_split(c->em, cfg, cfg->eval.splits[i], betas, nb, &t[nt++]);
    if (rc == YT_OK) rc = eval_write(dir, c->step, t, nt);
    if (rc == YT_OK) {
        char line[1024];
        int len = snprintf(line, sizeof line, "eval step %ld (%.1f s): full loss", c->step,
                           yt_now() - t0);
        for (int i = 0; i < nt && len < (int)sizeof line - 80; i++)
            len += snprintf(line + len, sizeof line - (size_t)len,
                            "  %s beta %g: %.4g, beta %g: %.4g", t[i].split, t[i].row[0].beta,
                            t[i].row[0].full_loss, t[i].row[t[i].n - 1].beta,
                            t[i].row[t[i].n - 1].full_loss);
        log_line(&c->rl, "%s; tables in %s/eval/", line, dir);
    }
    free(t);
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

/* Accumulates the step's losses; every log_every steps (and at the end) one
 * progress line and one metrics.csv row of their means. */
static void progress_step(train_ctx *c, const step_sums *sums, bool force) {
    const yoto_config *cfg = c->s.cfg;
    const double nimg = (double)sums->images;
    c->acc[0] += sums->loss / nimg;
    c->acc[1] += sums->recon / nimg;
    c->acc[2] += sums->kl / nimg;
    c->acc_n++;
    if (!(c->step % cfg->train.log_every == 0 || force)) return;
    const double now = yt_now(), ips = nimg * (c->step - c->log_step0) / (now - c->t_log);
    const double lr = trainer_lr(c->tr), n = (double)c->acc_n;
    char eta[32], line[512];
    fmt_duration((cfg->train.steps - c->step) * nimg / ips, eta, sizeof eta);
    snprintf(line, sizeof line,
             "step %ld/%ld  epoch %ld  loss %.4g  recon %.4g  kl %.4g  lr %.3g  %.1f img/s  "
             "ETA %s",
             c->step, cfg->train.steps, c->epoch, c->acc[0] / n, c->acc[1] / n, c->acc[2] / n,
             lr, ips, eta);
    progress(&c->rl, line);
    if (c->rl.metrics) {
        fprintf(c->rl.metrics, "%ld,%ld,%.9g,%.9g,%.9g,%.9g,%.6g,%.3f\n", c->step, c->epoch,
                c->acc[0] / n, c->acc[1] / n, c->acc[2] / n, lr, ips, (double)time(NULL));
        fflush(c->rl.metrics);
    }
    c->acc[0] = c->acc[1] = c->acc[2] = 0;
    c->acc_n = 0;
    c->t_log = now;
    c->log_step0 = c->step;
}

/* Checkpoint and eval when due (always at the end; only the checkpoint when
 * stopping). Collective. */
static int periodic(train_ctx *c, bool last, bool stopped) {
    const yoto_config *cfg = c->s.cfg;
    const long every = cfg->train.checkpoint_every, step = c->step;
    int rc = YT_OK;
    if ((every > 0 && step % every == 0) || last || stopped) {
        ckpt_state cs = {step, c->epoch, c->sie, c->world, cfg->experiment.seed};
        rc = ckpt_save(cfg->experiment.out_dir, &c->m->params, &cs, c->s.yaml,
                       cfg->train.keep_checkpoints);
    }
    if (rc == YT_OK && !stopped && cfg->eval.every > 0 && (step % cfg->eval.every == 0 || last))
        rc = evaluate(c);
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
        bool last = c->step == steps;
        progress_step(c, &sums, last || *stopped);
        rc = periodic(c, last, *stopped);
        if (rc != YT_OK || *stopped) return rc;
    }
    return YT_OK;
}

static void teardown(train_ctx *c, int rc) {
    if (rc != YT_OK && rc != YT_EXIT_REQUEUE) {
        if (c->rl.live) fputs("\n", stdout);
        if (c->rank == 0 && c->rl.log) fprintf(c->rl.log, "error: %s\n", yt_errmsg());
    }
    trainer_free(c->tr);
    data_close(c->data);
    model_free(c->em);
    model_free(c->m);
    free(c->x);
    if (c->rl.log) fclose(c->rl.log);
    if (c->rl.metrics) fclose(c->rl.metrics);
    stdout_restore();
    free(c->s.yaml);
    free(c->s.cfg);
}

int train_run(const train_args *args) {
    train_ctx c = {.rank = dist_rank(), .world = dist_size()};
    c.s.cfg = yt_calloc(1, sizeof *c.s.cfg);
    c.rl.tty = isatty(STDOUT_FILENO) == 1;
    bool stopped = false;
    int rc = setup(&c, args);
    if (rc == YT_OK) rc = loop(&c, &stopped);
    const char *dir = c.s.cfg->experiment.out_dir;
    if (rc == YT_OK && stopped) {
        log_line(&c.rl,
                 "stopped by signal %d at step %ld: checkpoint written to %s/ckpt; resume "
                 "with the same command (exit %d = requeue me)",
                 (int)g_stop_signal, c.step, dir, YT_EXIT_REQUEUE);
        rc = YT_EXIT_REQUEUE;
    } else if (rc == YT_OK) {
        log_line(&c.rl, "done: %ld steps; checkpoint %s/ckpt/step-%09ld.h5", c.step, dir, c.step);
    }
    teardown(&c, rc);
    return rc;
}
