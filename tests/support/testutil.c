/* testutil.c — shared helpers of the C tests (see testutil.h). */
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

double tu_nanmax(double m, double x) {
    return x <= m || isnan(m) ? m : x; /* x NaN: the comparison is false, x wins */
}

bool tu_close(double got, double want, double atol, double rtol) {
    if (isinf(want)) return got == want;
    return fabs(got - want) <= atol + rtol * fabs(want); /* false for NaN and inf */
}

double tu_max_norm_err(const real *a, const double *ref, size_t n) {
    double maxref = 0, maxdiff = 0;
    for (size_t i = 0; i < n; i++) {
        maxref = tu_nanmax(maxref, fabs(ref[i]));
        maxdiff = tu_nanmax(maxdiff, fabs((double)a[i] - ref[i]));
    }
    if (maxref == 0 || isnan(maxdiff)) return maxdiff;
    return maxdiff / maxref;
}

double tu_max_norm_err_real(const real *a, const real *b, size_t n) {
    double maxref = 0, maxdiff = 0;
    for (size_t i = 0; i < n; i++) {
        maxref = tu_nanmax(maxref, fabs((double)b[i]));
        maxdiff = tu_nanmax(maxdiff, fabs((double)a[i] - (double)b[i]));
    }
    if (maxref == 0 || isnan(maxdiff)) return maxdiff;
    return maxdiff / maxref;
}

void tu_assert_close(const char *name, const real *a, const double *ref, size_t n, double tol) {
    double err = tu_max_norm_err(a, ref, n);
    if (!(err <= tol)) {
        size_t worst = 0;
        double wd = -1;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)a[i] - ref[i]);
            if (!(d <= wd)) {
                wd = d;
                worst = i;
            }
        }
        fail_msg("%s: max-normalised error %.3e > %.1e (worst [%zu]: got %.17g, want %.17g)", name,
                 err, tol, worst, (double)a[worst], ref[worst]);
    }
}

static void mkdir_p(const char *path) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) fail_msg("mkdir %s: %s", tmp, strerror(errno));
}

void tu_scratch_dir(const char *name, char *buf, size_t size) {
    const char *root = getenv("YOTO_TEST_OUT");
    snprintf(buf, size, "%s/%s-%d", root && *root ? root : "tests/out", name, (int)getpid());
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", buf);
    if (system(cmd) != 0) fail_msg("cannot clear %s", buf);
    mkdir_p(buf);
}

const char *tu_join(const char *dir, const char *name) {
    static char p[4][1100];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

const char *tu_data_path(const char *file) {
    static char path[1024];
    const char *dir = getenv("YOTO_TEST_DATA");
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "tests/data", file);
    return path;
}

void tu_fill(real *p, size_t n, unsigned seed) {
    unsigned s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (real)((double)(s >> 8) / (double)(1u << 24) * 2 - 1);
    }
}

void tu_odd_conv_shapes(void (*check)(int n, int cin, int h, int w, int cout, int stride)) {
    static const int dims[][2] = {{1, 1}, {1, 2}, {2, 1}, {3, 3}, {5, 4},
                                  {4, 5}, {7, 7}, {9, 6}, {2, 13}};
    for (size_t d = 0; d < YT_ARRAY_LEN(dims); d++)
        for (int stride = 1; stride <= 2; stride++) {
            check(2, 3, dims[d][0], dims[d][1], 5, stride);
            check(3, 1, dims[d][0], dims[d][1], 1, stride);
            check(1, 6, dims[d][0], dims[d][1], 7, stride);
        }
}

real *tu_nans(size_t n) {
    real *p = malloc((n ? n : 1) * sizeof(real));
    if (!p) abort();
    for (size_t i = 0; i < n; i++)
        p[i] = (real)NAN;
    return p;
}

void tu_shapes3d_conv_shapes(int n, void (*check)(int n, int cin, int h, int w, int cout, int stride)) {
    check(n, 3, 64, 64, 8, 2);
    check(n, 8, 32, 32, 16, 2);
    check(n, 16, 16, 16, 32, 2);
    check(n, 32, 8, 8, 64, 2);
    check(n, 64, 8, 8, 64, 2);
    check(n, 32, 16, 16, 64, 2);
    check(n, 16, 32, 32, 32, 2);
    check(n, 8, 64, 64, 16, 2);
    check(n, 8, 64, 64, 3, 1);
}

void tu_cifar10_fmnist_conv_shapes(void (*check)(int n, int cin, int h, int w, int cout,
                                                 int stride)) {
    check(2, 3, 32, 32, 16, 2);
    check(2, 16, 16, 16, 16, 1);
    check(2, 32, 8, 8, 32, 1);
    check(2, 64, 4, 4, 64, 1);
    check(2, 16, 32, 32, 6, 1);
    check(3, 1, 28, 28, 8, 2);
    check(3, 16, 14, 14, 32, 2);
    check(3, 32, 7, 7, 64, 2);
}

bool tu_quick(void) {
    const char *q = getenv("YOTO_QUICK");
    return q && *q && *q != '0';
}

/* YOTO_ISA=baseline (tests/run.sh isa, under qemu emulating a CPU without
 * AVX2): the loader must have picked the baseline copies of the
 * YT_SIMD_CLONES functions (simd.h), i.e. the CPU lacks x86-64-v3. On a CPU
 * that has it the switch cannot be honoured: exit 1 rather than test the
 * AVX2 copies under the baseline's name. */
static void check_isa(void) {
    const char *isa = getenv("YOTO_ISA");
    if (!isa || !*isa) return;
    if (strcmp(isa, "baseline") != 0) {
        fprintf(stderr, "YOTO_ISA=%s: the only value is 'baseline'\n", isa);
        exit(1);
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v3")) {
        fprintf(stderr,
                "YOTO_ISA=baseline, but this CPU has x86-64-v3 (AVX2): the loader picked "
                "the AVX2 copies. Run under qemu-x86_64 -cpu Nehalem (tests/run.sh isa).\n");
        exit(1);
    }
#endif
    printf("# YOTO_ISA=baseline: the CPU lacks x86-64-v3, the baseline SIMD copies run\n");
}

int tu_run(const char *group, const struct CMUnitTest *tests, size_t n) {
    check_isa();
    if (getenv("YOTO_TAP")) cmocka_set_message_output(CM_OUTPUT_TAP);
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}
