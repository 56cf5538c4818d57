/* testutil.h — what the C tests share: cmocka, tolerances per build, the
 * NaN-safe comparisons every numeric check goes through, and scratch
 * directories.
 *
 * NaN-safe: a NaN (or an infinity where a finite value is wanted) anywhere in
 * what is compared makes the comparison fail. `fmax(m, NaN)` is m and
 * `NaN > tol` is false, so a hand-written `err > tol` or a running fmax lets
 * NaN through; use these instead. */
#ifndef YOTO_TESTUTIL_H
#define YOTO_TESTUTIL_H

/* cmocka needs these before its header */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common.h"

#ifdef YOTO_DOUBLE
#define TEST_DOUBLE 1
#else
#define TEST_DOUBLE 0
#endif

/* max(m, x) where a NaN x wins (fmax would drop it); a NaN m stays NaN. */
double tu_nanmax(double m, double x);
/* true iff |got - want| <= atol + rtol * |want|: false when either is NaN, or
 * when got is infinite (an infinite want must be matched exactly). */
bool tu_close(double got, double want, double atol, double rtol);
/* max|a - b| / max|b| over n elements (0 when both are all zero); NaN when
 * any element of a or ref is NaN. */
double tu_max_norm_err(const real *a, const double *ref, size_t n);
/* The same for two real arrays (b the reference). */
double tu_max_norm_err_real(const real *a, const real *b, size_t n);
/* Asserts tu_max_norm_err <= tol, printing the name, the error and the worst index. */
void tu_assert_close(const char *name, const real *a, const double *ref, size_t n, double tol);
/* A fresh directory under tests/out/ (or $TMPDIR) for this test; path in buf. */
void tu_scratch_dir(const char *name, char *buf, size_t size);
/* "dir/name" in one of 4 rotating static buffers (a call's result lives
 * through the next three calls). */
const char *tu_join(const char *dir, const char *name);
/* Path of a file shipped in tests/data/, found relative to the working
 * directory (make test runs from the project root). */
const char *tu_data_path(const char *file);
/* true under `make check-valgrind` (YOTO_QUICK): the heaviest numerical
 * checks, which find no memory errors the small ones miss, are skipped. */
bool tu_quick(void);

/* p[0, n) = pseudo-random values in [-1, 1) from seed (the same every run) */
void tu_fill(real *p, size_t n, unsigned seed);

/* check(n, cin, h, w, cout, stride) on the conv kernels' edge cases: image
 * sizes 1x1, one row or column, odd and even, non-square, wider than a
 * register tile; strides 1 and 2; three batch and channel mixes */
/* n reals (at least one), all NaN: outputs a test expects to be written */
real *tu_nans(size_t n);
void tu_odd_conv_shapes(void (*check)(int n, int cin, int h, int w, int cout, int stride));
/* every conv and deconv geometry of the Shapes3D model, at batch n; of
 * CIFAR-10's and Fashion-MNIST's (28 -> 14 -> 7 -> 4: odd sizes, padding 1
 * before at 7 -> 4), at batches 2 and 3 */
void tu_shapes3d_conv_shapes(int n, void (*check)(int n, int cin, int h, int w, int cout, int stride));
void tu_cifar10_fmnist_conv_shapes(void (*check)(int n, int cin, int h, int w, int cout,
                                                 int stride));
/* Runs the tests with TAP output when YOTO_TAP is set (tests/run.sh). */
int tu_run(const char *group, const struct CMUnitTest *tests, size_t n);
#define TU_RUN(group, tests) tu_run(group, tests, sizeof(tests) / sizeof((tests)[0]))

#endif
