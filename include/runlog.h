/* runlog.h — what a training run tells its user: log.txt, metrics.csv and
 * the progress on stdout (rank 0; on other ranks every call does nothing).
 *
 * Progress is one plain line per update, so that `grep step` works on a
 * batch log, unless a live line is asked for (one line redrawn in place
 * with "\r"). Auto picks live only on a real terminal: under mpirun or srun
 * every rank's stdout is a pseudo-terminal even when the job's output goes
 * to a file, so auto means plain lines there. YOTO_PROGRESS=lines|live|auto
 * overrides the command line's choice.
 *
 * After a stop signal, stdout writes never block (mpirun may stop draining
 * it while it shuts the job down); log.txt still gets every line.
 */
#ifndef YOTO_RUNLOG_H
#define YOTO_RUNLOG_H

#include <stdbool.h>

typedef enum { PROGRESS_AUTO, PROGRESS_LINES, PROGRESS_LIVE } progress_mode;

/* "auto", "lines", "live" -> mode; false for anything else. */
bool runlog_parse_mode(const char *text, progress_mode *mode);

/* One metrics.csv row: means over the steps since the last row. */
typedef struct {
    long step, epoch;
    double loss, recon, kl, lr;
    double images_per_s;
    double time;        /* Unix time, seconds (fractional) */
    double elapsed_s;   /* since this invocation started training */
    double ms_per_step; /* wall time per step since the last row */
} runlog_row;

typedef struct runlog runlog;

/* Opens dir/log.txt (appending) and dir/metrics.csv, keeping the rows of
 * steps <= keep_upto (a resumed run rewrites the ones its checkpoint does
 * not cover). Rank 0 only; others get a runlog that prints nothing. NULL
 * with the error set (YT_ERR_RUNTIME naming the file) on failure. */
runlog *runlog_open(const char *dir, long keep_upto, progress_mode mode);
void runlog_close(runlog *rl);

/* A line on stdout and in log.txt. */
void runlog_line(runlog *rl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A line in log.txt only (the run record: command line, hosts, build). */
void runlog_note(runlog *rl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A warning: stderr ("yoto: warning: ...") and log.txt. */
void runlog_warn(runlog *rl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A progress update (plain line or live line; always a line in log.txt). */
void runlog_progress(runlog *rl, const char *line);
/* Is a live line in use (updates may come more often)? */
bool runlog_live(const runlog *rl);
void runlog_metrics(runlog *rl, const runlog_row *row);
/* The run failed: ends a live line, writes "error: msg" to log.txt. */
void runlog_error(runlog *rl, const char *msg);
/* A stop signal came: stdout writes no longer block. */
void runlog_stopping(runlog *rl);

#endif
