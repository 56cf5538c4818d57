/* toolutil.h — what the micro-benchmarks in tests/tools/ share: a monotonic
 * clock, a seeded fill in [-1, 1) (and an aligned array so filled) and the median of a set of times
 * (sorted in place). Header-only: each tool is one file compiled by hand (the compile line is in
 * its header comment). Also a hash of what a tool wrote, and a flush of the caches. */
#ifndef YOTO_TOOLUTIL_H
#define YOTO_TOOLUTIL_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common.h"

static inline double tool_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline void tool_fill(real *p, size_t n, unsigned s) {
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (real)((double)(s >> 8) / (1u << 24) * 2 - 1);
    }
}

/* an aligned array of n reals filled from seed (64-byte aligned, rounded up
 * to 16 reals; exits when out of memory) */
static inline real *tool_buf(size_t n, unsigned seed) {
    real *p = aligned_alloc(64, (n + 15) / 16 * 16 * sizeof(real));
    if (!p) exit(1);
    tool_fill(p, n, seed);
    return p;
}

static inline int tool_cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline double tool_median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, tool_cmp);
    return t[n / 2];
}

/* FNV-1a over `bytes` bytes, continuing from h (start: TOOL_HASH0): what a
 * tool's passes wrote, the same before and after a change that keeps the
 * bits */
#define TOOL_HASH0 1469598103934665603ull
static inline unsigned long long tool_hash(const void *p, size_t bytes, unsigned long long h) {
    const unsigned char *c = p;
    for (size_t i = 0; i < bytes; i++)
        h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

/* caches full of other data, as a training step leaves them for the next
 * layer: one write per line of 128 MiB, four times L3 (calloc'd once) */
#define TOOL_FLUSH_REALS ((size_t)32 << 20)
static inline void tool_flush(real *flush) {
    for (size_t i = 0; i < TOOL_FLUSH_REALS; i += 16)
        flush[i] += 1;
}

/* What the pass-by-pass tools (pack_bench, col_bench) share: REPS and COLD
 * from the command line ([REPS [COLD]]), the flush buffer, the sum of the
 * passes' best times and the hash of what they wrote. */
typedef struct {
    int reps;
    bool cold;
    real *flush;
    double total;
    unsigned long long h;
} tool_run;

static inline tool_run tool_run_start(int argc, char **argv) {
    tool_run r = {
        .reps = argc > 1 ? atoi(argv[1]) : 15, .cold = argc > 2 && atoi(argv[2]), .h = TOOL_HASH0};
    r.flush = calloc(TOOL_FLUSH_REALS, sizeof *r.flush);
    return r;
}

/* the start of a repetition: the caches flushed where COLD, then the clock */
static inline double tool_run_rep(const tool_run *r) {
    if (r->cold) tool_flush(r->flush);
    return tool_now();
}

static inline void tool_run_end(tool_run *r, const char *what) {
    printf("%-22s %7.3f ms   hash %016llx\n", what, 1e3 * r->total, r->h);
    free(r->flush);
}

#endif
