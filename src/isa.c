/* isa.c — the vector instruction set of this binary's kernels, the L1 size
 * they block for (isa.h), and bin/yoto-avx512's start-up guard. */
#include "isa.h"

#include <pthread.h>
#include <unistd.h>

/* SIMD_BYTES as src/simd.h reads it: 64 only where the build defines it so
 * (make avx512). simd.h itself is GCC-only, and this file is also built by
 * clang for the fuzzers. */
#if defined(SIMD_BYTES) && SIMD_BYTES == 64
#define ISA_WIDE 1
#endif

const char *isa_kernels(void) {
#if defined(ISA_WIDE)
    return "avx512";
#elif defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__clang__)
    /* the loader's choice between the YT_SIMD_CLONES copies (src/simd.h) */
    __builtin_cpu_init();
    return __builtin_cpu_supports("x86-64-v3") ? "avx2" : "baseline";
#else
    return "baseline"; /* no clones: the sanitizer build, and clang's (the fuzzers) */
#endif
}

static size_t l1d_bytes;

static void read_l1d(void) {
    const long b = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    l1d_bytes = b < 4096 ? 32768 : b > 65536 ? 65536 : (size_t)b;
}

size_t isa_l1d_bytes(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_l1d);
    return l1d_bytes;
}

#ifdef __AVX512F__
/* Built for AVX-512 (make avx512): on a CPU without it the first vector
 * instruction would be SIGILL. This constructor runs before main, and is
 * itself compiled for plain x86-64. */
__attribute__((constructor, target("arch=x86-64"))) static void isa_guard(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return;
    static const char msg[] =
        "yoto: this binary is built for AVX-512 (make avx512) and this CPU lacks it "
        "(AVX-512 F, BW, DQ and VL are needed); run bin/yoto instead\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) _exit(2);
    _exit(2);
}
#endif
