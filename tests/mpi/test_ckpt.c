/* test_ckpt.c — checkpoints under mpirun: collective write, atomic publish,
 * read back on every rank, pruning, replica checks, bad files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "dist.h"
#include "fsutil.h"
#include "h5io.h"
#include "mpi_testutil.h"

static char g_dir[1024];

static void make_arena(arena *a) {
    arena_init(a);
    int s1[2] = {3, 4}, s2[1] = {5}, s3[4] = {2, 3, 3, 3};
    arena_add(a, "encoder/block0/conv0/kernel", 4, s3, false, 27, 18);
    arena_add(a, "encoder/block0/conv0/bias", 1, s2 + 0, false, 0, 0);
    arena_add(a, "encoder/block0/film/scale/dense0/kernel", 2, s1, true, 4, 3);
    arena_alloc(a);
    for (size_t i = 0; i < a->total; i++) {
        a->param[i] = (real)(0.25 * i - 3);
        a->adam_m[i] = (real)(0.5 * i);
        a->adam_v[i] = (real)(1.0 / (1 + i));
    }
}

static void setup_dir(const char *name) {
    if (dist_rank() == 0) tu_scratch_dir(name, g_dir, sizeof g_dir);
    dist_bcast(g_dir, sizeof g_dir, 0);
}

static void test_save_and_read_back(void **state) {
    (void)state;
    setup_dir("ckpt");
    arena a, b;
    make_arena(&a);
    make_arena(&b);
    memset(b.param, 0, b.total * sizeof(real));
    memset(b.adam_m, 0, b.total * sizeof(real));
    memset(b.adam_v, 0, b.total * sizeof(real));
    ckpt_state st = {.step = 40, .epoch = 2, .step_in_epoch = 7, .world_size = dist_size(), .seed = 99};
    TU_ASSERT_ALL_OK(ckpt_save(g_dir, &a, &st, "experiment:\n  name: t\n", 2));
    char path[2048];
    bool found = false;
    TU_ASSERT_ALL(ckpt_find_latest(g_dir, path, sizeof path, &found) == YT_OK && found);
    TU_ASSERT_ALL(strstr(path, "step-000000040.h5") != NULL);
    ckpt_state got;
    char *yaml = NULL;
    TU_ASSERT_ALL_OK(ckpt_read_header(path, &got, &yaml));
    TU_ASSERT_ALL(got.step == 40 && got.epoch == 2 && got.step_in_epoch == 7 && got.seed == 99 &&
               got.world_size == dist_size());
    TU_ASSERT_ALL(strcmp(yaml, "experiment:\n  name: t\n") == 0);
    free(yaml);
    TU_ASSERT_ALL_OK(ckpt_read_arena(path, &b, true));
    TU_ASSERT_ALL(memcmp(a.param, b.param, a.total * sizeof(real)) == 0);
    TU_ASSERT_ALL(memcmp(a.adam_m, b.adam_m, a.total * sizeof(real)) == 0);
    TU_ASSERT_ALL(memcmp(a.adam_v, b.adam_v, a.total * sizeof(real)) == 0);
    /* three more: only the newest two stay; latest names the newest */
    for (long s = 50; s <= 70; s += 10) {
        st.step = s;
        TU_ASSERT_ALL_OK(ckpt_save(g_dir, &a, &st, "x: 1\n", 2));
    }
    dist_barrier();
    char d[1100];
    snprintf(d, sizeof d, "%s/ckpt", g_dir);
    int n;
    char **names = fs_list(d, "step-", ".h5", &n);
    TU_ASSERT_ALL(n == 2 && strcmp(names[0], "step-000000060.h5") == 0 &&
               strcmp(names[1], "step-000000070.h5") == 0);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    TU_ASSERT_ALL(ckpt_find_latest(g_dir, path, sizeof path, &found) == YT_OK && found &&
               strstr(path, "step-000000070.h5"));
    arena_free(&a);
    arena_free(&b);
}

static void test_diverged_replicas_refused(void **state) {
    (void)state;
    if (dist_size() < 2) skip();
    setup_dir("ckpt-diverged");
    arena a;
    make_arena(&a);
    if (dist_rank() == 1) a.param[3] += 1;
    ckpt_state st = {.step = 5, .world_size = dist_size()};
    yt_clear_error();
    int rc = ckpt_save(g_dir, &a, &st, "x: 1\n", 3);
    TU_ASSERT_ALL(rc == YT_ERR_RUNTIME && strstr(yt_errmsg(), "diverged"));
    bool found = true;
    char path[2048];
    TU_ASSERT_ALL(ckpt_find_latest(g_dir, path, sizeof path, &found) == YT_OK && !found);
    arena_free(&a);
}

static void test_bad_files(void **state) {
    (void)state;
    setup_dir("ckpt-bad");
    char plain[1100], other[1100], trunc[1100], good[1100];
    snprintf(plain, sizeof plain, "%s/plain.h5", g_dir);
    snprintf(other, sizeof other, "%s/other.h5", g_dir);
    snprintf(trunc, sizeof trunc, "%s/trunc.h5", g_dir);
    arena a;
    make_arena(&a);
    ckpt_state st = {.step = 1, .world_size = dist_size()};
    TU_ASSERT_ALL_OK(ckpt_save(g_dir, &a, &st, "x: 1\n", 3));
    bool found;
    ckpt_find_latest(g_dir, good, sizeof good, &found);
    if (dist_rank() == 0) {
        FILE *f = fopen(plain, "w");
        fputs("hello\n", f);
        fclose(f);
        hid_t h = H5Fcreate(other, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        h5io_attr_set_string(h, "format", "something-else");
        H5Fclose(h);
        /* the first half of a real checkpoint */
        char *cmd = malloc(4400);
        snprintf(cmd, 4400, "head -c $(( $(stat -c %%s '%s') / 2 )) '%s' > '%s'", good, good, trunc);
        if (system(cmd) != 0) fail_msg("cannot truncate");
        free(cmd);
    }
    dist_barrier();
    ckpt_state got;
    char *yaml = NULL;
    yt_clear_error();
    TU_ASSERT_ALL(ckpt_read_header(plain, &got, &yaml) == YT_ERR_USAGE &&
               strstr(yt_errmsg(), "not an HDF5 file"));
    TU_ASSERT_ALL(ckpt_read_header(other, &got, &yaml) == YT_ERR_USAGE &&
               strstr(yt_errmsg(), "not a yoto checkpoint"));
    TU_ASSERT_ALL(ckpt_read_header(trunc, &got, &yaml) == YT_ERR_USAGE);
    /* another model shape */
    arena c;
    arena_init(&c);
    int s[4] = {4, 3, 3, 3};
    arena_add(&c, "encoder/block0/conv0/kernel", 4, s, false, 27, 36);
    arena_alloc(&c);
    TU_ASSERT_ALL(ckpt_read_arena(good, &c, true) == YT_ERR_USAGE &&
               strstr(yt_errmsg(), "another model shape"));
    arena_free(&c);
    arena_free(&a);
}

int main(int argc, char **argv) {
    tu_mpi_init(&argc, &argv);
    h5io_quiet();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_and_read_back),
        cmocka_unit_test(test_diverged_replicas_refused),
        cmocka_unit_test(test_bad_files),
    };
    return TU_MPI_RUN("ckpt", tests);
}
