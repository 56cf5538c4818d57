/* fuzz.h — what the libFuzzer harnesses (tests/fuzz/fuzz_*.c) share.
 *
 * Each harness is one file with one entry point, FUZZ_ENTRY(name). Built by
 * `make fuzz` (clang, -fsanitize=fuzzer,address,undefined) it is
 * LLVMFuzzerTestOneInput; built into tests/unit/test_fuzz_regress.c
 * (FUZZ_REPLAY defined, every harness in one file) it is fuzz_<name>(), which
 * that test calls on every saved input (tests/fuzz/corpus/<name>/ and
 * tests/fuzz/regress/<name>/), so `make test` replays them.
 *
 * A harness checks what must hold for every input (an error code, never a
 * crash; invariants of what was read) with FUZZ_CHECK: an abort under
 * libFuzzer, a failed test in the replay.
 */
#ifndef YOTO_FUZZ_H
#define YOTO_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "h5io.h"

#ifdef FUZZ_REPLAY
#define FUZZ_ENTRY(name) int fuzz_##name(const uint8_t *data, size_t size)
/* the replay driver: fails the current test */
void fuzz_check_failed(const char *what, const char *file, int line);
#else
#define FUZZ_ENTRY(name)                                                                           \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);                                  \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
static inline void fuzz_check_failed(const char *what, const char *file, int line) {
    fprintf(stderr, "%s:%d: fuzz check failed: %s (last error: %s)\n", file, line, what,
            yt_errmsg());
    abort();
}
#endif

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) fuzz_check_failed(#cond, __FILE__, __LINE__);                                 \
    } while (0)

/* A scratch directory of this process ($TMPDIR or /tmp), made once, removed
 * at exit with whatever the harnesses left in it. */
static char fuzz_dir_path[256];
static void fuzz_dir_remove(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_path);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", fuzz_dir_path);
}
static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_path[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/yoto-fuzz-%d", t && *t ? t : "/tmp",
                 (int)getpid());
        char cmd[300];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", fuzz_dir_path);
        if (system(cmd) != 0) abort();
        atexit(fuzz_dir_remove);
        h5io_quiet(); /* yoto reports HDF5 failures itself */
    }
    return fuzz_dir_path;
}

/* Writes the input to fuzz_dir()/name and returns that path (static). */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    return path;
}

#endif
