/* par.h — threads inside a rank, for the numerics (internal to src/).
 *
 * yoto's kernels split their work over train.threads threads (blas_threads)
 * with static partitions: thread t of T always gets the same share, and
 * every reduction over threads runs in thread order, so a given thread
 * count gives the same bits every time (and different counts the same
 * results up to float rounding).
 *
 *   static void part(void *ctx, int t, int T) { ... items par_split(n, t, T)
 *                                                 .. par_split(n, t + 1, T) ... }
 *   par_run(par_threads(work, n), part, &ctx);
 *
 * par_run returns when every thread's part is done. Called from inside a
 * part, it runs the parts one after the other on the calling thread. One
 * team per process: only one thread (the rank's main thread) calls it.
 */
#ifndef YOTO_PAR_H
#define YOTO_PAR_H

#include <stddef.h>

#include "blas.h"
#include "common.h"

typedef void (*par_fn)(void *ctx, int t, int T);

/* fn(ctx, t, T) for t = 0 .. T-1 on T threads (t = 0 on the caller) */
void par_run(int T, par_fn fn, void *ctx);

/* the start of thread t's share of n items split T ways (the end: t + 1) */
static inline size_t par_split(size_t n, int t, int T) {
    return n * (size_t)t / (size_t)T;
}

/* below this many elements (or multiply-adds) a loop runs on one thread:
 * waking the team costs microseconds */
#define PAR_MIN_WORK ((size_t)1 << 15)

/* threads for a loop of `work` elements in `parts` independent pieces */
static inline int par_threads(size_t work, size_t parts) {
    size_t T = (size_t)blas_threads();
    if (work < PAR_MIN_WORK) return 1;
    return (int)YT_MAX((size_t)1, YT_MIN(T, parts));
}

#endif
