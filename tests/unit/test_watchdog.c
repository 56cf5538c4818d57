/* test_watchdog.c — hang detection without MPI: the limits (auto, fixed,
 * warm-up, the long allowance), the order of census, verdict and backstop,
 * the hang messages, and the backstop thread ending a stuck process with
 * YT_EXIT_HUNG (in a child process). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "testutil.h"
#include "watchdog.h"

/* |a - b| <= tol, false for NaN */
static bool near(double a, double b, double tol) {
    return fabs(a - b) <= tol;
}

static void test_median(void **state) {
    (void)state;
    double odd[] = {5, 1, 4, 2, 3}, even[] = {10, 1, 7, 2}, one[] = {42};
    assert_true(near(watchdog_median(odd, 5), 3, 0));
    assert_true(near(watchdog_median(even, 4), 4.5, 0)); /* (2 + 7) / 2 */
    assert_true(near(watchdog_median(one, 1), 42, 0));
    /* the input is not reordered */
    assert_true(odd[0] == 5 && odd[1] == 1 && odd[4] == 3);
    /* against an independent count: the median has as many below as above */
    double v[WATCHDOG_WINDOW];
    for (int i = 0; i < WATCHDOG_WINDOW; i++)
        v[i] = (double)((i * 37) % WATCHDOG_WINDOW);
    double m = watchdog_median(v, WATCHDOG_WINDOW);
    int below = 0, above = 0;
    for (int i = 0; i < WATCHDOG_WINDOW; i++) {
        below += v[i] < m;
        above += v[i] > m;
    }
    assert_int_equal(below, above);
}

static void test_auto_limit(void **state) {
    (void)state;
    watchdog_clock c;
    watchdog_clock_init(&c, 0);
    /* warm-up: the long allowance of the floor, also for the first plain steps */
    assert_true(near(watchdog_limit(&c, false), 10 * 300.0, 0));
    for (int i = 0; i < WATCHDOG_WARMUP - 1; i++)
        watchdog_clock_add(&c, 0.05);
    assert_true(near(watchdog_limit(&c, false), 10 * 300.0, 0));
    watchdog_clock_add(&c, 0.05);
    /* fast steps: the floor, five minutes */
    assert_true(near(watchdog_limit(&c, false), 300.0, 0));
    assert_true(near(watchdog_limit(&c, true), 3000.0, 0));
    /* slow steps: 10 x the median; the median ignores an outlier */
    watchdog_clock_init(&c, 0);
    double times[] = {40, 41, 39, 40, 1000, 40, 42};
    for (size_t i = 0; i < YT_ARRAY_LEN(times); i++)
        watchdog_clock_add(&c, times[i]);
    assert_true(near(watchdog_limit(&c, false), 400.0, 1e-9));
    assert_true(near(watchdog_limit(&c, true), 4000.0, 1e-9));
    /* not finite or negative: not a sample */
    long plain = c.plain;
    watchdog_clock_add(&c, NAN);
    watchdog_clock_add(&c, INFINITY);
    watchdog_clock_add(&c, -1);
    assert_int_equal(c.plain, plain);
    assert_true(near(watchdog_limit(&c, false), 400.0, 1e-9));
    /* the window rolls: after WATCHDOG_WINDOW steps of 100 s only those count */
    for (int i = 0; i < WATCHDOG_WINDOW; i++)
        watchdog_clock_add(&c, 100);
    assert_true(near(watchdog_limit(&c, false), 1000.0, 1e-9));
    assert_int_equal(c.n, WATCHDOG_WINDOW);
}

static void test_fixed_limit(void **state) {
    (void)state;
    watchdog_clock c;
    watchdog_clock_init(&c, 3);
    assert_true(near(watchdog_limit(&c, false), 30, 0)); /* warm-up */
    for (int i = 0; i < WATCHDOG_WARMUP; i++)
        watchdog_clock_add(&c, 50); /* slow or not */
    assert_true(near(watchdog_limit(&c, false), 3, 0));
    assert_true(near(watchdog_limit(&c, true), 30, 0));
    /* a negative setting is auto */
    watchdog_clock_init(&c, -5);
    assert_true(near(c.timeout_s, 0, 0));
}

/* After the limit: rank 0's census ends before the other ranks give up on its
 * verdict, and both before the backstop thread fires. */
static void test_grace_order(void **state) {
    (void)state;
    const double limits[] = {0.1, 1, 3, 10, 30, 100, 300, 3000, 1e6};
    for (size_t i = 0; i < YT_ARRAY_LEN(limits); i++) {
        double l = limits[i], c = watchdog_census_s(l), v = watchdog_verdict_s(l),
               m = watchdog_margin_s(l);
        assert_true(c >= 1 && c <= 10);
        assert_true(c + 0.5 <= v);
        assert_true(v + 0.5 <= m);
    }
}

static void test_rank_list(void **state) {
    (void)state;
    char buf[256];
    int one[] = {3}, some[] = {1, 4, 5, 6, 9}, many[40];
    watchdog_rank_list(buf, sizeof buf, one, 1);
    assert_string_equal(buf, "rank 3");
    watchdog_rank_list(buf, sizeof buf, some, 5);
    assert_string_equal(buf, "ranks 1, 4-6, 9");
    for (int i = 0; i < 40; i++)
        many[i] = 3 * i; /* 40 runs of one */
    watchdog_rank_list(buf, sizeof buf, many, 40);
    assert_string_equal(buf, "ranks 0, 3, 6, 9, 12, 15, 18, 21, ... (40 in all)");
    char tiny[12];
    watchdog_rank_list(tiny, sizeof tiny, some, 5); /* truncated, terminated */
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
}

static void test_verdict(void **state) {
    (void)state;
    char buf[1024];
    /* rank 1 silent, rank 2 elsewhere, rank 3 here (rank 0: its own wait) */
    watchdog_answer a[4] = {
        {true, 6, WD_GRADIENT}, {false, 0, 0}, {true, 6, WD_AGREE}, {true, 6, WD_GRADIENT}};
    watchdog_verdict(buf, sizeof buf, 6, WD_GRADIENT, 3, a, 4);
    assert_non_null(strstr(buf, "hang at step 6: ranks 1-2 did not arrive at the gradient "
                                "allreduce within 3 s"));
    assert_non_null(strstr(buf, "rank 1 is not answering (stopped"));
    assert_non_null(strstr(buf, "rank 2 answers from the status agreement of step 6"));
    assert_non_null(strstr(buf, "(exit 124)"));
    assert_null(strstr(buf, "rank 3"));
    /* the missing ones all silent */
    a[2] = a[3];
    watchdog_verdict(buf, sizeof buf, 6, WD_GRADIENT, 3, a, 4);
    assert_non_null(strstr(buf, "rank 1 did not arrive at the gradient allreduce within 3 s "
                                "(train.step_timeout_s) and is not answering"));
    /* every rank there: the collective itself is stuck */
    a[1] = a[0];
    watchdog_verdict(buf, sizeof buf, 6, WD_GRADIENT, 3, a, 4);
    assert_non_null(strstr(buf, "every rank waits in the gradient allreduce"));
    /* a step behind is not "there" */
    a[3].step = 5;
    watchdog_verdict(buf, sizeof buf, 6, WD_GRADIENT, 3, a, 4);
    assert_non_null(strstr(buf, "rank 3 did not arrive"));
    assert_non_null(strstr(buf, "rank 3 answers from the gradient allreduce of step 5"));
    for (int p = 0; p < WD_PHASES; p++)
        assert_string_not_equal(watchdog_phase_name(p), "an unknown phase");
}

/* A child that runs the backstop: stuck in a checkpoint write (status
 * YT_EXIT_HUNG expected), or beating past limit + margin, then stopping
 * (status 0 expected). Its stderr goes to err. */
static pid_t child(bool stuck, const char *err, const char *log) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0) return pid;
    if (!freopen(err, "w", stderr)) _exit(99);
    if (watchdog_start(0, log) != YT_OK) _exit(98);
    const double limit = 0.2, end = yt_now() + limit + watchdog_margin_s(limit) + 1;
    watchdog_arm(7, limit);
    watchdog_beat(WD_CHECKPOINT);
    while (yt_now() < end) {
        usleep(50000);
        if (!stuck) watchdog_beat(WD_FORWARD);
    }
    watchdog_stop();
    _exit(0);
}

static void test_backstop(void **state) {
    (void)state;
    char dir[512], err1[600], err2[600], log[600];
    tu_scratch_dir("watchdog", dir, sizeof dir);
    snprintf(err1, sizeof err1, "%s/stuck.err", dir);
    snprintf(err2, sizeof err2, "%s/alive.err", dir);
    snprintf(log, sizeof log, "%s/log.txt", dir);
    const double t0 = yt_now(), due = 0.2 + watchdog_margin_s(0.2);
    pid_t stuck = child(true, err1, log), alive = child(false, err2, NULL);
    int s1, s2;
    assert_int_equal(waitpid(stuck, &s1, 0), stuck);
    const double took = yt_now() - t0;
    assert_int_equal(waitpid(alive, &s2, 0), alive);
    assert_true(WIFEXITED(s1) && WEXITSTATUS(s1) == YT_EXIT_HUNG);
    assert_true(WIFEXITED(s2) && WEXITSTATUS(s2) == 0);
    /* fired once the limit and the margin had passed, not much later */
    printf("# backstop fired after %.2f s (limit + margin %.2f s)\n", took, due);
    assert_true(took >= due && took <= due + 3);
    char *e = fs_read_text(err1), *l = fs_read_text(log), *e2 = fs_read_text(err2);
    assert_non_null(e);
    assert_non_null(l);
    assert_non_null(strstr(e, "yoto: hang at step 7: no progress for"));
    assert_non_null(strstr(e, "in the checkpoint write (limit 0.2 s"));
    assert_non_null(strstr(l, "error: hang at step 7: no progress for"));
    assert_true(e2 && e2[0] == '\0');
    free(e);
    free(l);
    free(e2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_median),      cmocka_unit_test(test_auto_limit),
        cmocka_unit_test(test_fixed_limit), cmocka_unit_test(test_grace_order),
        cmocka_unit_test(test_rank_list),   cmocka_unit_test(test_verdict),
        cmocka_unit_test(test_backstop),
    };
    return TU_RUN("watchdog", tests);
}
