/* train.h — `yoto train`: the data-parallel training loop, its run directory,
 * resume, and what happens on signals.
 *
 * Every rank trains a replica on its shard with its own beta and noise
 * streams; each step the gradient is allreduced (overlapped with backward),
 * divided by the global batch, and every rank makes the identical Adam step.
 * Each step the ranks agree on one status (error, non-finite loss or
 * gradient, stop requested), so a failure on one rank stops all of them
 * together with one message.
 *
 * Run directory (experiment.out_dir): config.yaml, metrics.csv, log.txt,
 * ckpt/ (see ckpt.h), eval/ (see runlog.h). It is made only once the config,
 * the data and the checkpoint to resume have been checked, and a directory
 * holding another config without a checkpoint is refused unless --force.
 *
 * Signals: SIGTERM, SIGUSR1, SIGINT finish the current step, write a
 * checkpoint and return YT_EXIT_REQUEUE on every rank; a second SIGINT exits
 * at once (130).
 */
#ifndef YOTO_TRAIN_H
#define YOTO_TRAIN_H

#include <stdbool.h>

#include "runlog.h"

typedef struct {
    const char *config_path; /* the config to train; NULL with resume_dir */
    const char *resume_dir;  /* --resume RUN_DIR, or NULL */
    const char *const *sets; /* --set overrides */
    int nsets;
    progress_mode progress; /* --progress */
    bool force;             /* --force: reuse an out_dir that holds another config */
    const char *cmdline;    /* the command line, for log.txt (NULL: none) */
} train_args;

/* Collective. YT_OK when training reached train.steps, YT_EXIT_REQUEUE when a
 * signal stopped it after a checkpoint, or an error status (message set). */
int train_run(const train_args *args);

#endif
