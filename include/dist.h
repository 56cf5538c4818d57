/* dist.h — everything MPI: start and stop, who prints, agreeing on errors,
 * collectives over the gradient arena.
 *
 * This is the only module that calls MPI or includes <mpi.h>: HDF5's MPI-IO
 * file access is set up here too (dist_h5_fapl_mpio, for h5io_fapl). Everything
 * else runs in one process; before dist_init(), every function here behaves
 * as a world of one.
 */
#ifndef YOTO_DIST_H
#define YOTO_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* Starts MPI (once). Also works without mpirun (a singleton world). */
void dist_init(int *argc, char ***argv);
/* Ends MPI if dist_init started it. */
void dist_finalize(void);
bool dist_active(void);
int dist_rank(void);
int dist_size(void);

/* Sets the HDF5 file-access property list fapl to MPI-IO over every rank
 * (parallel HDF5: collective opens, reads and writes). fapl is an hid_t,
 * which is int64_t: spelled so here to keep <hdf5.h>, and the <mpi.h> it
 * includes, out of this header. Call it only while dist_active(); h5io_fapl
 * is the one caller. false when HDF5 refuses. */
bool dist_h5_fapl_mpio(int64_t fapl);

/* Collective. Every rank passes its status (YT_OK or an exit code); all get
 * the largest. When it is not YT_OK, every rank's yt_errmsg() becomes the
 * message of the lowest failing rank (prefixed "rank r: " when r > 0), so
 * each rank can report the same thing and exit with the same code. */
int dist_agree(int status);
/* Rank 0 prints the agreed error message to stderr: "yoto: <message>". */
void dist_report_error(void);

/* printf on rank 0 only (stdout), flushed. */
void dist_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Warning on rank 0 only (stderr): "yoto: warning: ...". */
void dist_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Collective: true on every rank iff buf[0..n) is the same on every rank
 * (a 64-bit hash compared). */
bool dist_same_everywhere(const void *buf, size_t n);

/* Collective: the hosts of the job and their rank counts, for the run's log
 * ("node1 x 32, node2 x 32"; "..." when it does not fit). Rank 0's buf
 * holds it; other ranks get "". */
void dist_host_summary(char *buf, size_t size);

/* Fault injection for tests: true when the environment variable YOTO_FAULT
 * is "point" or "point@r" with r this rank. */
bool dist_fault(const char *point);

/* Collectives (world of one: copies / no-ops). */
void dist_barrier(void);
void dist_bcast(void *buf, size_t bytes, int root);
void dist_allreduce_sum_real(real *buf, size_t n);
void dist_allreduce_sum_double(double *buf, size_t n);
long dist_allreduce_min_long(long x);
long dist_allreduce_max_long(long x);
double dist_allreduce_min_double(double x);
double dist_allreduce_max_double(double x);

/* ---- the step's agreement, watched ------------------------------------------
 * The waits of a training step that need every rank, dist_agree_finish and
 * dist_sync_finish (either mode), poll their requests with MPI_Test (yielding
 * for 100 ms, then with 1 ms naps) and meanwhile answer other ranks' "where
 * are you?" (point-to-point messages with tags of their own). Under a limit
 * (dist_watch), a rank that waited there longer ends the job with
 * YT_EXIT_HUNG and does not return:
 *  - rank 0 asks every rank where it is, collects the answers for
 *    watchdog_census_s(limit) and calls MPI_Abort with the verdict (the
 *    step, the ranks that did not arrive, those not answering);
 *  - another rank asks rank 0 and waits watchdog_verdict_s(limit) for its
 *    verdict; still alive, it ends the job itself, naming rank 0 as not
 *    answering (rank 0 may be the stopped one).
 * The message goes to stderr ("yoto: ...") and to the hang hook (log.txt).
 * The one MPI_Allreduce of the blocking mode (and the sharded mode's rings
 * and its one-word verdict) is not polled, but it starts only once every
 * rank has arrived (a polled MPI_Ibarrier, 4 us at 2 ranks); a rank lost
 * after that is the watchdog thread's (watchdog.h). */

/* The step the next waits belong to, and their limit in seconds (0: none,
 * the default: they wait as long as it takes). */
void dist_watch(long step, double limit_s);
/* Called with the hang message before the job is ended (NULL: none). */
void dist_set_hang_hook(void (*hook)(const char *msg));
/* Collective, in two halves: dist_agree_start posts the sum of buf[0..n)
 * over the ranks (MPI_Iallreduce in place: buf must not be read or written
 * until it is done), dist_agree_finish waits for it, polled under the watch.
 * The step does its backward pass in between, so that the ranks meet once a
 * step (trainer.c). One agreement at a time; world of one: buf unchanged. */
void dist_agree_start(double *buf, size_t n);
void dist_agree_finish(void);

/* ---- gradient allreduce, overlapped with the backward pass ------------------
 * The gradient arena is cut into buckets from its end (the backward pass
 * finishes the last tensors first). As model_backward reports that the suffix
 * [lo, n) is final, every bucket inside it starts an MPI_Iallreduce, and the
 * ones in flight are progressed with MPI_Test (Open MPI makes no progress
 * otherwise). dist_sync_finish waits for the rest. Blocking mode: one
 * MPI_Allreduce over the whole arena in dist_sync_finish, once every rank
 * has arrived. Both wait under the watch (above).
 * A bucketed arena of one bucket runs sharded (below): it has nothing to
 * overlap (its bucket is final only when the backward ends), and one
 * MPI_Iallreduce of it costs more than MPI_Allreduce (below 4 ranks libnbc
 * runs a binomial reduce + broadcast, progressed only when polled: Shapes3D
 * at 2 ranks, 2.2-2.7 ms exposed per step against 1.3-1.6). */
typedef struct dist_sync dist_sync;

/* Sharded mode: dist_sync_finish reduce-scatters the arena instead, once
 * every rank has arrived (a ring: P - 1 MPI_Sendrecv exchanges of a part
 * with the neighbours, each summed in place with MPI_Reduce_local): rank r
 * ends with the sum of its own part [lo_r, hi_r) of buf, n split evenly at
 * 16-element boundaries; buf's other parts hold partial sums. The caller
 * updates that part (Adam on 1/P of the parameters and moments) and
 * dist_sync_gather sends every rank's part of a buffer to every rank (a
 * ring allgather in place): the bytes on the wire of a ring allreduce, and
 * each rank's optimizer reads and writes 1/P of the arena. Its own ring,
 * not MPI_Reduce_scatter: at 2 ranks Open MPI 4.1's moves and sums all of
 * the arena (7.5 MB: 1.1-1.4 ms, the ring 0.4). In a world of one, or an
 * arena over INT_MAX elements, it is the blocking mode (one part, [0, n)). */
typedef enum { DIST_SYNC_BLOCKING, DIST_SYNC_BUCKETED, DIST_SYNC_SHARDED } dist_sync_mode;

typedef struct {
    double exposed_s; /* time the caller spent inside this module's MPI calls */
    long buckets;     /* allreduces issued */
} dist_sync_stats;

dist_sync *dist_sync_create(real *buf, size_t n, size_t bucket_elems, dist_sync_mode mode);
void dist_sync_free(dist_sync *s);
/* a new step, before the gradient is written: nothing in flight */
void dist_sync_begin(dist_sync *s);
void dist_sync_ready(dist_sync *s, size_t lo); /* buf[lo, n) is final */
void dist_sync_finish(dist_sync *s); /* summed on every rank (sharded: each rank's part) */
/* The summed values this rank holds after dist_sync_finish, elements
 * [*lo, *hi) of the arena (the returned pointer is element *lo): sharded,
 * its own part, in place in buf; other modes, buf and [0, n). */
const real *dist_sync_part(const dist_sync *s, size_t *lo, size_t *hi);
bool dist_sync_sharded(const dist_sync *s);
/* Sharded: every rank's part of v (n elements, any buffer laid out as the
 * arena: parameters, moments) to every rank, in place. Collective. Other
 * modes: nothing (every rank already has all of it). */
void dist_sync_gather(dist_sync *s, real *v);
/* Sharded, every rank on one node: moves the step's exchange into
 * node-shared memory (an MPI-3 shared window) and returns true. *grad (the
 * sync's buf) becomes this rank's gradient in the window and *param the
 * one copy of the parameters there, for every rank of the node; both keep
 * their contents. dist_sync_finish then waits for every rank (watched) and
 * sums this rank's part straight from the others' gradients (the same sums
 * in the same order as the ring, so the same bits), and dist_sync_gather of
 * *param only waits for every rank to have updated its part in place: no
 * bytes move but those the kernels read. Other buffers (the moments) still
 * go round the ring. Otherwise (not sharded, ranks on several nodes, the
 * environment variable YOTO_SHM_DISABLE set and not "0", or too little room
 * in /dev/shm: rank 0 warns) nothing changes and it returns false. Collective. dist_sync_unshare
 * copies both back into the buffers they were and points *grad and *param at them again; call it
 * (collective) before dist_sync_free and before the parameters are used without the sync. */
bool dist_sync_share(dist_sync *s, real **grad, real **param);
void dist_sync_unshare(dist_sync *s, real **grad, real **param);
bool dist_sync_shared(const dist_sync *s);
/* accumulated since the last reset */
dist_sync_stats dist_sync_get_stats(const dist_sync *s);
void dist_sync_reset_stats(dist_sync *s);

/* ---- gathering --------------------------------------------------------------
 * Collective: every rank's n floats, concatenated in rank order, into all on
 * every rank; returns the total. cap is all's length (a larger total is a
 * broken invariant). Sizes above MPI's int counts work too (world of one: a
 * copy). */
size_t dist_allgatherv_float(const float *mine, size_t n, float *all, size_t cap);

#endif
