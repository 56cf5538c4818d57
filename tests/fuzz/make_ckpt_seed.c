/* make_ckpt_seed.c — writes the checkpoint seeds of fuzz_ckpt (run by
 * tests/fuzz/make_seeds.sh): real checkpoints of the harness's model made by
 * ckpt_save, format_version 2 and the same made version 1.
 * Usage: make_ckpt_seed OUT_DIR */
#define FUZZ_REPLAY 1
#include "fuzz_ckpt.c"

void fuzz_check_failed(const char *what, const char *file, int line) {
    fprintf(stderr, "%s:%d: %s\n", file, line, what);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    h5io_quiet();
    arena a;
    fuzz_ckpt_arena(&a);
    for (size_t i = 0; i < a.total; i++) {
        a.param[i] = (real)(0.5 * (double)i - 1);
        a.adam_m[i] = (real)(1e-3 * (double)i);
        a.adam_v[i] = (real)(1e-6 * (double)(i + 1));
    }
    ckpt_state st = {.step = 1, .epoch = 0, .step_in_epoch = 1, .world_size = 1, .seed = 5};
    if (ckpt_save(argv[1], &a, &st, "experiment: {name: fuzz, seed: 5}\n", 0) != YT_OK) {
        fprintf(stderr, "%s\n", yt_errmsg());
        return 1;
    }
    arena_free(&a);
    return 0;
}
