/* watchdog.c — the limits of a step, the hang messages, and the backstop
 * thread that ends a rank stuck outside the polled waits (see watchdog.h). */
#include "watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* ---- the limits ---------------------------------------------------------------------- */

void watchdog_clock_init(watchdog_clock *c, double timeout_s) {
    memset(c, 0, sizeof *c);
    c->timeout_s = timeout_s > 0 ? timeout_s : 0;
}

void watchdog_clock_add(watchdog_clock *c, double seconds) {
    if (!(seconds >= 0) || !isfinite(seconds)) return;
    c->recent[c->next] = seconds;
    c->next = (c->next + 1) % WATCHDOG_WINDOW;
    if (c->n < WATCHDOG_WINDOW) c->n++;
    c->plain++;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double watchdog_median(const double *v, int n) {
    double s[WATCHDOG_WINDOW];
    YT_CHECK(n >= 1 && n <= WATCHDOG_WINDOW);
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

double watchdog_limit(const watchdog_clock *c, bool special) {
    double plain = c->timeout_s;
    if (plain <= 0) {
        plain = WATCHDOG_AUTO_MIN_S;
        if (c->n > 0)
            plain = YT_MAX(plain, WATCHDOG_AUTO_FACTOR * watchdog_median(c->recent, c->n));
    }
    if (special || c->plain < WATCHDOG_WARMUP) return WATCHDOG_LONG_FACTOR * plain;
    return plain;
}

/* Rank 0's census: a tenth of the limit, 1 to 10 s (answers take
 * microseconds; the time is for ranks busy in a long phase to reach a poll). */
double watchdog_census_s(double limit) {
    return YT_MIN(10.0, YT_MAX(1.0, 0.1 * limit));
}
double watchdog_verdict_s(double limit) {
    return 2 * watchdog_census_s(limit) + 1;
}
double watchdog_margin_s(double limit) {
    return 3 * watchdog_census_s(limit) + 2;
}

/* ---- messages -------------------------------------------------------------------------- */

static const char *const PHASE_NAMES[WD_PHASES] = {
    "the time between steps", "reading its batch", "the forward pass",
    "the status agreement",   "the backward pass", "the gradient allreduce",
    "the optimizer step",     "logging progress",  "the checkpoint write",
    "the evaluation",
};

const char *watchdog_phase_name(int phase) {
    return phase >= 0 && phase < WD_PHASES ? PHASE_NAMES[phase] : "an unknown phase";
}

/* snprintf at buf + *len, never past size */
static void append(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t size, size_t *len, const char *fmt, ...) {
    if (*len >= size) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (w > 0) *len = YT_MIN(size, *len + (size_t)w);
}

enum { RANK_RUNS_SHOWN = 8 };

void watchdog_rank_list(char *buf, size_t size, const int *ranks, int n) {
    size_t len = 0;
    buf[0] = '\0';
    append(buf, size, &len, "%s", n == 1 ? "rank " : "ranks ");
    int runs = 0;
    for (int i = 0; i < n; runs++) {
        int j = i;
        while (j + 1 < n && ranks[j + 1] == ranks[j] + 1)
            j++;
        if (runs == RANK_RUNS_SHOWN) {
            append(buf, size, &len, ", ... (%d in all)", n);
            return;
        }
        append(buf, size, &len, "%s%d", runs ? ", " : "", ranks[i]);
        if (j > i) append(buf, size, &len, "-%d", ranks[j]);
        i = j + 1;
    }
}

static const char *NOT_ANSWERING =
    "not answering (stopped, lost, or stuck outside MPI, e.g. in file I/O)";

/* The ranks not "here" (missing) and, among them, those not answering (silent). */
static void sort_out(const watchdog_answer *a, int world, long step, int phase, int *missing,
                     int *nm, int *silent, int *ns) {
    *nm = *ns = 0;
    for (int r = 0; r < world; r++) {
        bool here = a[r].answered && a[r].step == step && a[r].phase == phase;
        if (!here) missing[(*nm)++] = r;
        if (!a[r].answered) silent[(*ns)++] = r;
    }
}

void watchdog_verdict(char *buf, size_t size, long step, int phase, double limit,
                      const watchdog_answer *a, int world) {
    int *missing = yt_malloc((size_t)world * sizeof *missing), nm;
    int *silent = yt_malloc((size_t)world * sizeof *silent), ns;
    sort_out(a, world, step, phase, missing, &nm, silent, &ns);
    char list[256];
    size_t len = 0;
    buf[0] = '\0';
    if (nm == 0) {
        append(buf, size, &len,
               "hang at step %ld: every rank waits in %s after %g s (train.step_timeout_s), "
               "but it does not complete (the network?)",
               step, watchdog_phase_name(phase), limit);
    } else {
        watchdog_rank_list(list, sizeof list, missing, nm);
        append(buf, size, &len,
               "hang at step %ld: %s did not arrive at %s within %g s "
               "(train.step_timeout_s)",
               step, list, watchdog_phase_name(phase), limit);
        if (ns == nm) {
            append(buf, size, &len, " and %s %s", nm == 1 ? "is" : "are", NOT_ANSWERING);
        } else if (ns > 0) {
            watchdog_rank_list(list, sizeof list, silent, ns);
            append(buf, size, &len, ": %s %s %s", list, ns == 1 ? "is" : "are", NOT_ANSWERING);
        }
        int shown = 0;
        for (int i = 0; i < nm && shown < RANK_RUNS_SHOWN; i++) {
            const watchdog_answer *x = &a[missing[i]];
            if (!x->answered) continue;
            append(buf, size, &len, "%srank %d answers from %s of step %ld",
                   shown || ns ? "; " : ": ", missing[i], watchdog_phase_name(x->phase), x->step);
            shown++;
        }
        if (nm - ns > shown) append(buf, size, &len, "; ...");
    }
    append(buf, size, &len, "; ending the job (exit %d)", YT_EXIT_HUNG);
    free(missing);
    free(silent);
}

/* ---- appending to log.txt, bounded ---------------------------------------------------------- */

/* A write to a stuck file system may never return: it runs in a thread of
 * its own, and the caller waits for it at most NOTE_WAIT_S. */
#define NOTE_WAIT_S 2.0

typedef struct {
    char path[1024];
    char text[YT_ERRMSG_MAX + 16];
    volatile int done; /* set by the writer; read after its end or the wait */
} note_job;

static void *note_writer(void *arg) {
    note_job *j = arg;
    int fd = open(j->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, j->text, strlen(j->text)); /* one write: one line */
        (void)w;
        close(fd);
    }
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Appends "error: msg\n" to path, waiting at most NOTE_WAIT_S. The job is
 * static: a writer still blocked when the process ends keeps it valid. */
static void append_bounded(const char *path, const char *msg) {
    static note_job job;
    static int used;
    if (__atomic_exchange_n(&used, 1, __ATOMIC_ACQ_REL)) return; /* one note per process */
    snprintf(job.path, sizeof job.path, "%s", path);
    snprintf(job.text, sizeof job.text, "error: %s\n", msg);
    pthread_t t;
    if (pthread_create(&t, NULL, note_writer, &job) != 0) return;
    pthread_detach(t);
    for (double t0 = yt_now(); yt_now() - t0 < NOTE_WAIT_S;) {
        if (__atomic_load_n(&job.done, __ATOMIC_ACQUIRE)) return;
        usleep(10000);
    }
}

/* ---- the backstop thread ------------------------------------------------------------------- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running, stopping;
    int rank;
    char log_path[1024]; /* "" = none */
    long step;
    int phase;
    double since, limit; /* when the phase began (yt_now), its limit (0: none) */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .step = -1};

void watchdog_note(const char *msg) {
    if (g.log_path[0] && g.rank <= 1) append_bounded(g.log_path, msg);
}

/* Past the limit and the margin: say where this rank is, and end it. */
_Noreturn static void fire(long step, int phase, double waited, double limit) {
    char who[32] = "", msg[YT_ERRMSG_MAX], line[YT_ERRMSG_MAX + 32];
    if (g.rank > 0) snprintf(who, sizeof who, "rank %d: ", g.rank);
    snprintf(msg, sizeof msg,
             "%shang at step %ld: no progress for %.1f s in %s (limit %g s, "
             "train.step_timeout_s); ending the job (exit %d)",
             who, step, waited, watchdog_phase_name(phase), limit, YT_EXIT_HUNG);
    int n = snprintf(line, sizeof line, "yoto: %s\n", msg);
    ssize_t w = write(STDERR_FILENO, line, (size_t)YT_MIN(n, (int)sizeof line - 1));
    (void)w;
    /* rank 1 too: where every rank hangs, it may fire first, and mpirun
     * then ends rank 0 before rank 0's note is written */
    watchdog_note(msg);
    _exit(YT_EXIT_HUNG);
}

static void *watch(void *arg) {
    (void)arg;
    pthread_mutex_lock(&g.mu);
    while (!g.stopping) {
        double now = yt_now(), waited = now - g.since;
        if (g.limit > 0 && waited > g.limit + watchdog_margin_s(g.limit))
            fire(g.step, g.phase, waited, g.limit);
        /* check a few times per second (more often under a short limit) */
        double period = g.limit > 0 ? YT_MIN(0.5, YT_MAX(0.05, g.limit / 20)) : 0.5;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long ns = ts.tv_nsec + (long)(period * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&g.cv, &g.mu, &ts);
    }
    pthread_mutex_unlock(&g.mu);
    return NULL;
}

int watchdog_start(int rank, const char *log_path) {
    if (g.running) return YT_OK;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g.cv, &ca);
    pthread_condattr_destroy(&ca);
    g.rank = rank;
    snprintf(g.log_path, sizeof g.log_path, "%s", log_path ? log_path : "");
    g.stopping = false;
    g.step = -1;
    g.phase = WD_IDLE;
    g.since = yt_now();
    g.limit = 0;
    /* stop signals belong to the main thread (train.c's handlers) */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&g.thread, NULL, watch, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&g.cv);
        return yt_fail(YT_ERR_RUNTIME, "cannot start the watchdog thread: %s", strerror(rc));
    }
    g.running = true;
    return YT_OK;
}

void watchdog_arm(long step, double limit_s) {
    if (!g.running) return;
    pthread_mutex_lock(&g.mu);
    g.step = step;
    g.limit = limit_s > 0 ? limit_s : 0;
    g.phase = WD_IDLE;
    g.since = yt_now();
    pthread_mutex_unlock(&g.mu);
}

void watchdog_beat(watchdog_phase phase) {
    if (!g.running) return;
    pthread_mutex_lock(&g.mu);
    g.phase = phase;
    g.since = yt_now();
    pthread_mutex_unlock(&g.mu);
}

void watchdog_stop(void) {
    if (!g.running) return;
    pthread_mutex_lock(&g.mu);
    g.stopping = true;
    pthread_cond_signal(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(g.thread, NULL);
    pthread_cond_destroy(&g.cv);
    g.running = false;
    g.log_path[0] = '\0';
}
