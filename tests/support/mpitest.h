/* mpitest.h — cmocka under mpirun: every rank runs every test; only rank 0
 * prints; a check that can differ between ranks is agreed first, so all ranks
 * pass or fail the same test together (no rank left waiting in a collective). */
#ifndef YOTO_MPITEST_H
#define YOTO_MPITEST_H

#include <stdbool.h>

#include "testutil.h"

/* dist_init + silence stdout on ranks > 0; call first in main(). */
void mpitest_init(int *argc, char ***argv);
/* Runs the group and finalizes MPI; returns the exit code for main(). */
int mpitest_run(const char *group, const struct CMUnitTest *tests, size_t n);
/* true on every rank iff ok on every rank */
bool mpitest_all(bool ok);
#define MPITEST_RUN(group, tests) mpitest_run(group, tests, sizeof(tests) / sizeof((tests)[0]))
/* assert that holds on every rank (evaluated everywhere, agreed, then checked) */
#define assert_all(cond) assert_true(mpitest_all((cond) != 0))

/* assert that a status is YT_OK on every rank; prints yt_errmsg() otherwise */
#define assert_all_ok(expr)                                                               \
    do {                                                                                  \
        int rc_ = (expr);                                                                 \
        if (!mpitest_all(rc_ == YT_OK)) fail_msg("%s: %s", #expr, yt_errmsg());           \
    } while (0)

#endif
