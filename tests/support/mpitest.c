/* mpitest.c — see mpitest.h. */
#include "mpitest.h"

#include <stdio.h>

#include "dist.h"

void mpitest_init(int *argc, char ***argv) {
    dist_init(argc, argv);
    if (dist_rank() != 0 && !freopen("/dev/null", "w", stdout)) perror("freopen");
}

int mpitest_run(const char *group, const struct CMUnitTest *tests, size_t n) {
    int rc = tu_run(group, tests, n);
    /* a failure anywhere fails the run everywhere */
    rc = (int)dist_allreduce_max_long(rc);
    dist_finalize();
    return rc;
}

bool mpitest_all(bool ok) { return dist_allreduce_min_long(ok ? 1 : 0) == 1; }
