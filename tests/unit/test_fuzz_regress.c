/* test_fuzz_regress.c — replays what the fuzzers keep: every seed of
 * tests/fuzz/corpus/<harness>/ and every input that once crashed, hung or
 * blew up memory, tests/fuzz/regress/<harness>/ (fixed since), through the
 * same harness code `make fuzz` runs (tests/fuzz/fuzz_*.c, built here with
 * FUZZ_REPLAY). A harness's checks fail the test; under `make check-asan` the
 * sanitizers watch too. Outside ASan and valgrind the address space is
 * limited (1 GB), so that an input that makes yoto allocate what the file
 * only claims (not what it holds) fails here as it did under libFuzzer. */
#define FUZZ_REPLAY 1

#include <dirent.h>
#include <sys/resource.h>

#include "testutil.h"

#include "../fuzz/fuzz_cifar.c"
#include "../fuzz/fuzz_ckpt.c"
#include "../fuzz/fuzz_config.c"
#include "../fuzz/fuzz_datafile.c"
#include "../fuzz/fuzz_idx.c"

void fuzz_check_failed(const char *what, const char *file, int line) {
    fail_msg("%s:%d: fuzz check failed: %s (last error: %s)", file, line, what, yt_errmsg());
}

typedef int (*fuzz_fn)(const uint8_t *data, size_t size);

/* Runs fn on every file in dir; returns how many (0 when dir is missing). */
static int replay_dir(fuzz_fn fn, const char *dir) {
    int n = 0;
    char **names = fs_list(dir, "", "", &n);
    int done = 0;
    for (int i = 0; i < n; i++) {
        const char *path = tu_join(dir, names[i]);
        if (names[i][0] == '.') { /* ".", "..", editor files */
            free(names[i]);
            continue;
        }
        FILE *f = fopen(path, "rb");
        if (!f) fail_msg("cannot open %s", path);
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = yt_malloc(size > 0 ? (size_t)size : 1);
        if (size < 0 || fread(buf, 1, (size_t)size, f) != (size_t)size)
            fail_msg("cannot read %s", path);
        fclose(f);
        fn(buf, (size_t)size);
        done++;
        free(buf);
        free(names[i]);
    }
    free(names);
    return done;
}

static void replay(const char *harness, fuzz_fn fn) {
    char seeds[256], regress[256];
    snprintf(seeds, sizeof seeds, "tests/fuzz/corpus/%s", harness);
    snprintf(regress, sizeof regress, "tests/fuzz/regress/%s", harness);
    int ns = replay_dir(fn, seeds);
    int nr = replay_dir(fn, regress);
    print_message("# %s: %d seeds, %d regression inputs\n", harness, ns, nr);
    if (ns == 0) fail_msg("%s: no seeds (run from the project root)", seeds);
}

static void test_config(void **state) {
    (void)state;
    replay("config", fuzz_config);
}
static void test_idx(void **state) {
    (void)state;
    replay("idx", fuzz_idx);
}
static void test_cifar(void **state) {
    (void)state;
    replay("cifar", fuzz_cifar);
}
static void test_datafile(void **state) {
    (void)state;
    replay("datafile", fuzz_datafile);
}
static void test_ckpt(void **state) {
    (void)state;
    replay("ckpt", fuzz_ckpt);
}

int main(void) {
#ifndef __SANITIZE_ADDRESS__
    if (!tu_quick()) { /* valgrind (YOTO_QUICK) needs its own address space */
        struct rlimit lim = {(rlim_t)1 << 30, (rlim_t)1 << 30};
        setrlimit(RLIMIT_AS, &lim);
    }
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),   cmocka_unit_test(test_idx),  cmocka_unit_test(test_cifar),
        cmocka_unit_test(test_datafile), cmocka_unit_test(test_ckpt),
    };
    return TU_RUN("fuzz_regress", tests);
}
