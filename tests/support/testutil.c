/* testutil.c — shared helpers of the C tests (see testutil.h). */
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

double tu_max_norm_err(const real *a, const double *ref, size_t n) {
    double maxref = 0, maxdiff = 0;
    for (size_t i = 0; i < n; i++) {
        maxref = fmax(maxref, fabs(ref[i]));
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= maxdiff)) maxdiff = d; /* NaN wins */
    }
    if (maxref == 0) return maxdiff;
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
        fail_msg("%s: max-normalised error %.3e > %.1e (worst [%zu]: got %.17g, want %.17g)",
                 name, err, tol, worst, (double)a[worst], ref[worst]);
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

bool tu_quick(void) {
    const char *q = getenv("YOTO_QUICK");
    return q && *q && *q != '0';
}

int tu_run(const char *group, const struct CMUnitTest *tests, size_t n) {
    if (getenv("YOTO_TAP")) cmocka_set_message_output(CM_OUTPUT_TAP);
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}
