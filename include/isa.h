/* isa.h — the vector instruction set of this binary's own kernels.
 *
 * bin/yoto and bin/yoto-double carry two copies of every SIMD kernel (AVX2 +
 * FMA, and plain x86-64; the loader picks one, src/simd.h); bin/yoto-avx512
 * (`make avx512`) is built for AVX-512 alone, with 16-float vectors, and
 * refuses to start on a CPU without it (exit 2, before any of its code runs).
 */
#ifndef YOTO_ISA_H
#define YOTO_ISA_H

#include <stddef.h>

/* "avx512", "avx2" or "baseline": what yoto's kernels run here (not
 * OpenBLAS's; blas_cpu_isa() says what the CPU has) */
const char *isa_kernels(void);

/* the L1 data cache's size in bytes, which kernels size their blocks to
 * (convs.c's kernel gradient bands): what the C library reads off the CPU
 * (sysconf), 32 KiB where it cannot tell, never more than 64 KiB; read once
 * (thread-safe); bench prints it */
size_t isa_l1d_bytes(void);

#endif
