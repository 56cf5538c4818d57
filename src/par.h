/* par.h — threads inside a rank, for the numerics (internal to src/).
 *
 * yoto's kernels split their work over train.threads OpenMP threads
 * (blas_set_threads) with static partitions: thread t of T always gets the
 * same share, and every reduction over threads runs in thread order, so a
 * given thread count gives the same bits every time. Regions are written
 * `#pragma omp parallel num_threads(T) if (T > 1)`; built without OpenMP
 * the pragmas vanish and thread 0 does everything.
 */
#ifndef YOTO_PAR_H
#define YOTO_PAR_H

#include <stddef.h>

#ifdef _OPENMP
#include <omp.h>
static inline int par_thread(void) {
    return omp_get_thread_num();
}
#else
static inline int par_thread(void) {
    return 0;
}
#endif

/* the start of thread t's share of n items split T ways (the end: t + 1) */
static inline size_t par_split(size_t n, int t, int T) {
    return n * (size_t)t / (size_t)T;
}

#endif
