/* watchdog.h — hang detection: a rank that stops making progress (stopped,
 * lost, stuck in I/O) must not hold the job's allocation in silence.
 *
 * Two layers, both ending the job with YT_EXIT_HUNG (docs/DESIGN.md, "Hangs"):
 *  - The waits of a step that need every rank (the status agreement, the
 *    bucketed gradient allreduce) are polled against the step's limit in
 *    dist (dist_watch). Past it, rank 0 asks every rank where it is and
 *    names the ranks that did not arrive; the other ranks wait for rank 0's
 *    verdict, and end the job themselves if rank 0 does not answer.
 *  - A backstop for everything else (a blocking collective, a checkpoint or
 *    a data read on a stuck file system): a thread per rank watches the
 *    heartbeat the main thread beats at every phase of a step. Past the
 *    phase's limit plus a margin (the time the first layer needs to speak)
 *    it prints the step and the phase to stderr, appends them to log.txt
 *    (rank 0) and ends the process with _exit(YT_EXIT_HUNG): MPI_Abort may
 *    only be called from the main thread under MPI_THREAD_FUNNELED, and
 *    mpirun and srun end a job one of whose ranks exits without
 *    MPI_Finalize (tests/e2e/test_hang.sh).
 *
 * The limits (train.step_timeout_s = T):
 *   T > 0: each phase and each wait of a plain step gets T seconds;
 *   T = 0 (auto): max(300 s, 10 x the median of the last plain steps' times).
 *   Checkpoints, evaluations, the step after one, and the warm-up steps (the
 *   first of each invocation, then until WATCHDOG_WARMUP plain steps have
 *   been timed) get WATCHDOG_LONG_FACTOR times that.
 *
 *   watchdog_clock clk;                      // the limits (pure; tests)
 *   watchdog_clock_init(&clk, cfg->train.step_timeout_s);
 *   watchdog_start(rank, "run/log.txt");     // the backstop thread
 *   for each step:
 *       watchdog_arm(step, watchdog_limit(&clk, special));
 *       watchdog_beat(WD_READ); ... watchdog_beat(WD_FORWARD); ...
 *       if plain: watchdog_clock_add(&clk, seconds the step took);
 *   watchdog_stop();
 */
#ifndef YOTO_WATCHDOG_H
#define YOTO_WATCHDOG_H

#include <stdbool.h>
#include <stddef.h>

/* ---- the limits (pure functions) ------------------------------------------ */
enum {
    WATCHDOG_WINDOW = 63, /* plain steps the auto median is taken over */
    WATCHDOG_WARMUP = 3   /* plain steps timed before the plain limit applies */
};
#define WATCHDOG_AUTO_MIN_S 300.0 /* auto: at least five minutes */
#define WATCHDOG_AUTO_FACTOR 10.0 /* auto: 10 x the median plain step */
#define WATCHDOG_LONG_FACTOR 10.0 /* checkpoints, evaluations, warm-up */

typedef struct {
    double timeout_s;               /* train.step_timeout_s: > 0 fixed, 0 auto */
    double recent[WATCHDOG_WINDOW]; /* the last plain steps' seconds (a ring) */
    int n, next;                    /* samples in recent, the next slot */
    long plain;                     /* plain steps timed */
} watchdog_clock;

void watchdog_clock_init(watchdog_clock *c, double timeout_s);
/* A plain step (no checkpoint or evaluation in or before it, not the first)
 * took seconds (not finite or negative: ignored). */
void watchdog_clock_add(watchdog_clock *c, double seconds);
/* The limit (seconds) of the next step's phases and waits; special: a
 * checkpoint, an evaluation, the step after one, or the first step. */
double watchdog_limit(const watchdog_clock *c, bool special);
/* The median of v[0..n) (n >= 1; v is not changed). */
double watchdog_median(const double *v, int n);

/* What happens after a limit passed (seconds, each from the limit on):
 * rank 0 collects the answers for census_s, then ends the job; the other
 * ranks wait verdict_s for it before they end the job themselves; the
 * backstop fires at margin_s. census_s < verdict_s < margin_s. */
double watchdog_census_s(double limit);
double watchdog_verdict_s(double limit);
double watchdog_margin_s(double limit);

/* ---- phases and messages ----------------------------------------------------- */
typedef enum {
    WD_IDLE,       /* between steps, unwatched */
    WD_READ,       /* reading this rank's batch */
    WD_FORWARD,    /* draws and forward pass */
    WD_AGREE,      /* the status agreement (polled) */
    WD_BACKWARD,   /* backward pass, gradient buckets started */
    WD_GRADIENT,   /* the rest of the gradient allreduce */
    WD_UPDATE,     /* finite check and Adam */
    WD_LOG,        /* progress and metrics */
    WD_CHECKPOINT, /* writing a checkpoint */
    WD_EVAL,       /* an evaluation */
    WD_PHASES
} watchdog_phase;

/* "the status agreement", "the checkpoint write", ... */
const char *watchdog_phase_name(int phase);

/* One rank's answer to "where are you?". */
typedef struct {
    bool answered;
    long step;
    int phase; /* watchdog_phase of the wait it answered from */
} watchdog_answer;

/* "rank 3", "ranks 1, 4-6, 9" (ranks ascending; after a few runs
 * "... (N in all)"). */
void watchdog_rank_list(char *buf, size_t size, const int *ranks, int n);

/* Rank 0's verdict after its census: the ranks whose answer is not "waiting
 * in `phase` of `step`" did not arrive; a[r] is rank r's answer (a[0]: rank
 * 0's own wait). Names them, those not answering and those answering from
 * elsewhere. */
void watchdog_verdict(char *buf, size_t size, long step, int phase, double limit,
                      const watchdog_answer *a, int world);

/* ---- the backstop thread ---------------------------------------------------------- */

/* Starts this rank's watchdog thread (signals blocked in it). log_path: the
 * run's log.txt (rank 0 appends the hang message to it), or NULL. YT_OK, or
 * YT_ERR_RUNTIME with the message set when the thread cannot start. */
int watchdog_start(int rank, const char *log_path);
/* Main thread: a new step (or a checkpoint / evaluation after step) whose
 * phases may each take limit_s seconds (0: unwatched); the phase is WD_IDLE
 * until the next beat. A no-op without watchdog_start (bench, tests). */
void watchdog_arm(long step, double limit_s);
/* Main thread: this rank now is in phase (the heartbeat). */
void watchdog_beat(watchdog_phase phase);
/* Ends the thread (waits for it). */
void watchdog_stop(void);

/* Appends "error: msg" to log.txt on rank 0 and rank 1 (rank 1 speaks when
 * rank 0 is silent), giving up after 2 s (a stuck file system); callable
 * from any thread. dist_set_hang_hook's hook in `yoto train`. */
void watchdog_note(const char *msg);

#endif
