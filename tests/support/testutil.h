/* testutil.h — what the C tests share: cmocka, tolerances per build, the
 * max-normalised comparison of DESIGN/testdata, and scratch directories. */
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

/* max|a - b| / max|b| over n elements (0 when both are all zero). */
double tu_max_norm_err(const real *a, const double *ref, size_t n);
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
/* Runs the tests with TAP output when YOTO_TAP is set (tests/run.sh). */
int tu_run(const char *group, const struct CMUnitTest *tests, size_t n);
#define TU_RUN(group, tests) tu_run(group, tests, sizeof(tests) / sizeof((tests)[0]))

#endif
