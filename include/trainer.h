/* trainer.h — one data-parallel training step: the step `yoto train` runs,
 * `yoto bench` times and the tests check.
 *
 * A trainer holds one model replica, the gradient allreduce and this rank's
 * per-step draws. trainer_step() is the whole step:
 *   draw the loss weights (w_kl, w_rec), the conditioning and the noise eps
 *     from the streams (seed, purpose, step, rank, sample)
 *   -> forward on this rank's images
 *   -> one small allreduce posted that agrees on the step's status (an
 *      input error, a non-finite loss, a stop request, on any rank) and
 *      sums the logged losses over the global batch
 *   -> backward (skipped by a rank whose own forward failed), the gradient
 *      allreduced as it becomes final (dist_sync) and divided by the
 *      global batch
 *   -> the agreement waited for: the step fails on every rank if it failed
 *      on one, its gradient thrown away; so the ranks meet once a step
 *   -> a finite-gradient check -> the identical Adam step on every rank.
 * With one process (tests) the collectives are copies: the same code runs.
 * The agreement and the gradient allreduce wait under dist_watch's limit
 * (set by the caller; none by default), and each phase beats the watchdog
 * (watchdog.h; a no-op unless the caller started it).
 *
 *   trainer *t = trainer_create(model, cfg, rank, world);
 *   for (step = ...) {
 *       ... read this rank's batch x [C][B][H][W] ...
 *       rc = trainer_step(t, step, x, read_status, stop_requested, &sums);
 *   }
 *   trainer_free(t);   (the model stays the caller's)
 */
#ifndef YOTO_TRAINER_H
#define YOTO_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "model.h"

/* The per-rank batch cfg implies for `world` ranks: train.batch_per_rank, or
 * train.batch_size / world (YT_ERR_USAGE naming where it was set when it
 * does not divide). */
int trainer_batch_per_rank(const yoto_config *cfg, int world, int *batch);

/* Sums over the global batch of one step. */
typedef struct {
    double loss;  /* sum of w_rec recon + w_kl kl */
    double recon; /* sum of recon */
    double kl;    /* sum of kl */
    long images;  /* global batch */
    bool stop;    /* some rank asked to stop after this step */
} step_sums;

/* Seconds spent in the last step, by phase. backward excludes the MPI calls
 * made inside it (they count as allreduce). */
typedef struct {
    double forward;   /* draws and forward pass */
    double agree;     /* the wait for the status allreduce, after backward */
    double backward;  /* backward pass, without MPI */
    double allreduce; /* gradient allreduce time not hidden behind backward */
    double optimizer; /* finite check and Adam */
    double total;
} step_times;

typedef struct trainer trainer;

/* A trainer for model m (max_batch = this rank's batch B) under cfg's
 * loss_weights, optimizer, train.allreduce / bucket_mb and experiment.seed.
 * Sets m's grad_ready hook; the model stays the caller's. */
trainer *trainer_create(vae_model *m, const yoto_config *cfg, int rank, int world);
void trainer_free(trainer *t);

/* The draws of `step` on this rank into the trainer's buffers (what
 * trainer_step does first; tests call it to rebuild a step independently). */
void trainer_draw(trainer *t, long step);

/* One step (0-based: the update made is Adam's t = step + 1) on this rank's
 * batch x [C][B][H][W]. input_status is this rank's status of reading x
 * (YT_OK or an error with its message set); stop is a stop request seen
 * here. Collective. Returns YT_OK with *out filled (out->stop: some rank
 * asked to stop; the update was made), or the agreed error: an input error
 * on any rank, a non-finite loss (no update made) or gradient. */
int trainer_step(trainer *t, long step, const real *x, int input_status, bool stop, step_sums *out);

/* The draws of the last step, [B], [B], [B][2], [B][L]. */
const real *trainer_w_kl(const trainer *t);
const real *trainer_w_rec(const trainer *t);
const real *trainer_cond(const trainer *t);
const real *trainer_eps(const trainer *t);
/* The learning rate of the last step, its phase times, and the gradient
 * allreduce's counters (exposed seconds and buckets since the last reset). */
double trainer_lr(const trainer *t);
step_times trainer_times(const trainer *t);
void trainer_comm_stats(const trainer *t, double *exposed_s, long *buckets);
void trainer_reset_comm_stats(trainer *t);
/* Makes the Adam moments whole on every rank again: with the optimizer
 * sharded (train.allreduce: sharded) each rank updates only its part of
 * them, so a checkpoint gathers them first. Collective; otherwise nothing. */
void trainer_gather_optimizer(trainer *t);
/* The summed gradient of the last step this rank holds: elements [*lo, *hi)
 * of the arena (all of it, or this rank's part when sharded). */
const real *trainer_gradient(const trainer *t, size_t *lo, size_t *hi);
/* Whether the optimizer is sharded (dist.h): train.allreduce sharded, or
 * bucketed with one bucket, on more than one rank. */
bool trainer_sharded(const trainer *t);
/* Whether the sharded step runs through node-shared memory (every rank on
 * one node: dist_sync_share): the gradient and parameters live there while
 * the trainer does, and trainer_free puts them back into the model's arena. */
bool trainer_shared(const trainer *t);
/* How the ranks sum the gradient, for the run's log: "none (one rank)",
 * "blocking", "bucketed, overlapped", "sharded, ring messages" or
 * "sharded, node-shared memory". */
const char *trainer_sync_how(const trainer *t);
/* The sharded step's communication on its own, best of reps (collective):
 * the gradient's exchange and sum (dist_sync_finish) and the parameters'
 * (dist_sync_gather). It sums the gradient in place: call it after the
 * steps. */
double trainer_comm_alone(trainer *t, int reps);

#endif
