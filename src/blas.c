/* blas.c — OpenBLAS: GEMM wrapper, kernel/core checks, threads, the sgemm yardstick. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "blas.h"

#include <cblas.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void gemm(int trans_a, int trans_b, int m, int n, int k, real alpha, const real *a, int lda,
          const real *b, int ldb, real beta, real *c, int ldc) {
    if (m == 0 || n == 0) return;
#ifdef YOTO_DOUBLE
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

const char *blas_corename(void) {
    const char *s = openblas_get_corename();
    return s ? s : "unknown";
}

/* threads per rank of yoto's own kernels (src/par.h); 1 until set */
static int yt_threads = 1;

int blas_threads(void) {
    return yt_threads;
}
/* OpenBLAS itself stays at one thread: yoto's threads split the GEMMs and
 * call it side by side (one pool of threads, static partitions) */
void blas_set_threads(int n) {
    yt_threads = n > 0 ? n : 1;
    openblas_set_num_threads(1);
}
const char *blas_threads_advice(void) {
    static char msg[320];
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return NULL;
    const int cpus = CPU_COUNT(&set);
    if (yt_threads <= cpus) return NULL;
    snprintf(msg, sizeof msg,
             "train.threads is %d but this rank may run on %d CPU%s only (mpirun binds each rank "
             "to a core): start it with mpirun --map-by slot:PE=%d (or --bind-to none)",
             yt_threads, cpus, cpus > 1 ? "s" : "", yt_threads);
    return msg;
}

int blas_openblas_threads(void) {
    return openblas_get_num_threads();
}

const char *blas_cpu_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
    if (__builtin_cpu_supports("avx")) return "avx";
#endif
    return "sse";
}

/* OpenBLAS x86-64 cores with AVX2 (or better) kernels */
static bool core_has_avx2_kernels(const char *core) {
    static const char *fast[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids",
                                 "Excavator"};
    for (size_t i = 0; i < YT_ARRAY_LEN(fast); i++)
        if (strcasecmp(core, fast[i]) == 0) return true;
    return false;
}

bool blas_core_is_fallback(void) {
    const char *isa = blas_cpu_isa();
    bool cpu_avx2 = strcmp(isa, "avx2") == 0 || strcmp(isa, "avx512") == 0;
    return cpu_avx2 && !core_has_avx2_kernels(blas_corename());
}

const char *blas_core_advice(void) {
    static char msg[320];
    if (!blas_core_is_fallback()) return NULL;
    bool avx512 = strcmp(blas_cpu_isa(), "avx512") == 0;
    snprintf(msg, sizeof msg,
             "OpenBLAS runs its generic '%s' kernels on a CPU with %s, several times slower; "
             "set OPENBLAS_CORETYPE=%s in the environment of every rank",
             blas_corename(), avx512 ? "AVX-512" : "AVX2",
             avx512 ? "SkylakeX (or Haswell under valgrind)" : "Haswell");
    return msg;
}

double blas_sgemm_gflops(int n, int reps) {
    size_t nn = (size_t)n * n;
    float *a = yt_malloc(nn * sizeof *a), *b = yt_malloc(nn * sizeof *b), *c = yt_malloc(nn * sizeof *c);
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)((i * 7) % 13) * 0.01f;
        b[i] = (float)((i * 5) % 11) * 0.01f;
    }
    int threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) { /* the first run warms up */
        double t = yt_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t = yt_now() - t;
        if (r > 0 && t < best) best = t;
    }
    openblas_set_num_threads(threads);
    free(a);
    free(b);
    free(c);
    return 2.0 * n * (double)nn / best / 1e9;
}
