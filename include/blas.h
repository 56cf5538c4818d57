/* blas.h — the BLAS backend (OpenBLAS): GEMM of the real type, threads, and
 * which kernels run.
 *
 * OpenBLAS 0.3.21 picks its kernels from cpuid and falls back to old SSE3
 * ones ("Prescott") on CPUs it does not know, several times slower. yoto
 * checks once at startup and says how to fix it (OPENBLAS_CORETYPE).
 */
#ifndef YOTO_BLAS_H
#define YOTO_BLAS_H

#include <stdbool.h>

#include "common.h"

/* C = alpha op(A) op(B) + beta C, row-major; trans_* nonzero = transposed */
void gemm(int trans_a, int trans_b, int m, int n, int k, real alpha, const real *a, int lda,
          const real *b, int ldb, real beta, real *c, int ldc);

const char *blas_corename(void); /* e.g. "Haswell", "Zen", "SkylakeX", "Prescott" */
/* Threads per rank (train.threads): yoto's kernels split their work over
 * this many threads (src/par.h), GEMMs included: they call OpenBLAS side by
 * side on their parts. 1 until set; setting it also sets OpenBLAS itself to
 * one thread. */
int blas_threads(void);
void blas_set_threads(int n);
int blas_openblas_threads(void); /* what OpenBLAS itself runs */
/* Advice when this process may use fewer CPUs than it has threads (its CPU
 * affinity: mpirun binds a rank to one core by default), or NULL. */
const char *blas_threads_advice(void);
/* The best vector ISA this CPU offers: "avx512", "avx2", "avx", "sse". */
const char *blas_cpu_isa(void);
/* true when OpenBLAS runs kernels far below what the CPU supports */
bool blas_core_is_fallback(void);
/* Advice for a fallback core ("set OPENBLAS_CORETYPE=Haswell ..."), or NULL. */
const char *blas_core_advice(void);
/* Single-threaded sgemm GFLOP/s on n x n x n (best of reps), measured now. */
double blas_sgemm_gflops(int n, int reps);

#endif
