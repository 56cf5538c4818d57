/* mpi_testutil.h — cmocka under mpirun: every rank runs the tests, only
 * rank 0 prints, and checks whose outcome may differ per rank are agreed
 * first so that all ranks fail (or pass) together and nobody hangs in a
 * collective the others left. */
#ifndef YOTO_MPI_TESTUTIL_H
#define YOTO_MPI_TESTUTIL_H

#include <stdbool.h>

#include "testutil.h"

/* dist_init; ranks > 0 send stdout to /dev/null. */
void tu_mpi_init(int *argc, char ***argv);
/* Runs the group, finalizes MPI, returns the worst result over ranks. */
int tu_mpi_run(const char *group, const struct CMUnitTest *tests, size_t n);
#define TU_MPI_RUN(group, tests) tu_mpi_run(group, tests, sizeof(tests) / sizeof((tests)[0]))
/* True on every rank iff ok on every rank (collective). */
bool tu_all(bool ok);
/* Collective assertion: fails on every rank when cond is false on any;
 * the message names the ranks' count of failures. */
#define TU_ASSERT_ALL(cond)                                                                        \
    do {                                                                                           \
        bool ok_ = (cond);                                                                         \
        if (!tu_all(ok_)) fail_msg("%s: false on %s", #cond, ok_ ? "another rank" : "this rank");  \
    } while (0)

/* Collective: a status (YT_OK or an error code) must be YT_OK on every rank;
 * otherwise every rank fails, printing its yt_errmsg(). */
#define TU_ASSERT_ALL_OK(expr)                                                                     \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (!tu_all(rc_ == YT_OK)) fail_msg("%s: %s", #expr, rc_ ? yt_errmsg() : "(another rank)");  \
    } while (0)

#endif
