/* runlog.c — log.txt, metrics.csv and progress lines (see runlog.h). */
#include "runlog.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "dist.h"
#include "fsutil.h"

struct runlog {
    bool active;      /* rank 0 */
    FILE *log;        /* log.txt */
    FILE *metrics;    /* metrics.csv */
    bool live_mode;   /* progress on one live line */
    bool live;        /* a live line is on screen */
    int stdout_flags; /* stdout's flags before runlog_stopping, or -1 */
};

static const char *METRICS_HEADER =
    "step,epoch,loss,recon,kl,lr,images_per_s,time,elapsed_s,ms_per_step\n";
enum { METRICS_COLUMNS = 10 };

bool runlog_parse_mode(const char *text, progress_mode *mode) {
    static const char *const names[] = {"auto", "lines", "live"};
    for (int i = 0; i < 3; i++)
        if (strcmp(text, names[i]) == 0) {
            *mode = (progress_mode)i;
            return true;
        }
    return false;
}

/* Started by an MPI launcher or srun: stdout is theirs, not a terminal's. */
static bool under_launcher(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK",
                                       "SLURM_STEP_ID", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < YT_ARRAY_LEN(vars); i++)
        if (getenv(vars[i])) return true;
    return false;
}

static bool want_live(progress_mode mode) {
    const char *env = getenv("YOTO_PROGRESS");
    progress_mode m = mode;
    if (env && !runlog_parse_mode(env, &m))
        dist_warn("YOTO_PROGRESS=%s is not auto, lines or live: ignored", env);
    if (m == PROGRESS_AUTO) return isatty(STDOUT_FILENO) == 1 && !under_launcher();
    return m == PROGRESS_LIVE;
}

/* Rows of an earlier metrics.csv up to keep_upto, padded to today's columns
 * (files written before elapsed_s and ms_per_step existed). */
static void keep_rows(FILE *out, char *old, long keep_upto) {
    for (char *line = old ? strtok(old, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        char *end;
        long step = strtol(line, &end, 10);
        if (end == line || *end != ',' || step > keep_upto) continue;
        int commas = 0;
        for (const char *p = line; *p; p++)
            commas += *p == ',';
        fputs(line, out);
        for (int k = commas; k < METRICS_COLUMNS - 1; k++)
            fputc(',', out);
        fputc('\n', out);
    }
}

static int open_metrics(runlog *rl, const char *dir, long keep_upto) {
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
    keep_rows(rl->metrics, old, keep_upto);
    free(old);
    fflush(rl->metrics);
    return YT_OK;
}

runlog *runlog_open(const char *dir, long keep_upto, progress_mode mode) {
    runlog *rl = yt_calloc(1, sizeof *rl);
    rl->stdout_flags = -1;
    if (dist_rank() != 0) return rl;
    rl->active = true;
    rl->live_mode = want_live(mode);
    char path[CFG_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/log.txt", dir);
    int rc =
        (rl->log = fopen(path, "a")) ? YT_OK : yt_fail(YT_ERR_RUNTIME, "cannot write %s", path);
    if (rc == YT_OK) rc = open_metrics(rl, dir, keep_upto);
    if (rc == YT_OK) return rl;
    runlog_close(rl);
    return NULL;
}

void runlog_close(runlog *rl) {
    if (!rl) return;
    if (rl->live) fputs("\n", stdout);
    if (rl->log) fclose(rl->log);
    if (rl->metrics) fclose(rl->metrics);
    /* the flag belongs to the open file, which the shell or script that
     * started us shares (a terminal, a pipe): give it back as it was */
    if (rl->stdout_flags >= 0) {
        fflush(stdout);
        fcntl(STDOUT_FILENO, F_SETFL, rl->stdout_flags);
    }
    free(rl);
}

static void to_log(runlog *rl, const char *prefix, const char *line) {
    if (!rl->log) return;
    fprintf(rl->log, "%s%s\n", prefix, line);
    fflush(rl->log);
}

static void end_live(runlog *rl) {
    if (rl->live) fputs("\n", stdout);
    rl->live = false;
}

#define FORMAT_LINE(line, fmt)                                                                     \
    char line[1024];                                                                               \
    va_list ap_;                                                                                   \
    va_start(ap_, fmt);                                                                            \
    vsnprintf(line, sizeof line, fmt, ap_);                                                        \
    va_end(ap_)

void runlog_line(runlog *rl, const char *fmt, ...) {
    if (!rl || !rl->active) return;
    FORMAT_LINE(line, fmt);
    end_live(rl);
    puts(line);
    fflush(stdout);
    to_log(rl, "", line);
}

void runlog_note(runlog *rl, const char *fmt, ...) {
    if (!rl || !rl->active) return;
    FORMAT_LINE(line, fmt);
    to_log(rl, "", line);
}

void runlog_warn(runlog *rl, const char *fmt, ...) {
    if (!rl || !rl->active) return;
    FORMAT_LINE(line, fmt);
    end_live(rl);
    fflush(stdout);
    fprintf(stderr, "yoto: warning: %s\n", line);
    to_log(rl, "warning: ", line);
}

void runlog_progress(runlog *rl, const char *line) {
    if (!rl || !rl->active) return;
    if (rl->live_mode) {
        printf("\r%s\033[K", line);
        rl->live = true;
    } else {
        puts(line);
    }
    fflush(stdout);
    to_log(rl, "", line);
}

bool runlog_live(const runlog *rl) {
    return rl && rl->live_mode;
}

void runlog_metrics(runlog *rl, const runlog_row *r) {
    if (!rl || !rl->metrics) return;
    fprintf(rl->metrics, "%ld,%ld,%.9g,%.9g,%.9g,%.9g,%.6g,%.3f,%.3f,%.4g\n", r->step, r->epoch,
            r->loss, r->recon, r->kl, r->lr, r->images_per_s, r->time, r->elapsed_s,
            r->ms_per_step);
    fflush(rl->metrics);
}

void runlog_error(runlog *rl, const char *msg) {
    if (!rl || !rl->active) return;
    end_live(rl);
    to_log(rl, "error: ", msg);
}

void runlog_stopping(runlog *rl) {
    if (!rl || !rl->active || rl->stdout_flags >= 0) return;
    int fl = fcntl(STDOUT_FILENO, F_GETFL);
    if (fl >= 0 && fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK) == 0) rl->stdout_flags = fl;
}
