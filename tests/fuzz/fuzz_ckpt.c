/* fuzz_ckpt.c — the checkpoint loader: ckpt_verify, ckpt_read_header,
 * ckpt_read_arena (with and without the Adam moments) and the resume
 * fallback (ckpt_find_resume) on a file from the input.
 *
 * Input: a checkpoint file of FUZZ_CKPT_ARENA's model (seeds: real
 * checkpoints, tests/fuzz/make_seeds.sh). Must hold: YT_OK, or YT_ERR_USAGE
 * with a message naming the file; what loads passed every checksum; a file
 * that fails verification is renamed to .corrupt, never deleted.
 */
#include <sys/stat.h>

#include "ckpt.h"
#include "fsutil.h"
#include "fuzz.h"

/* The model of the seeds: two small tensors (few HDF5 groups: small files). */
static void fuzz_ckpt_arena(arena *a) {
    arena_init(a);
    int k[2] = {4, 3}, b[1] = {4};
    arena_add(a, "dense/kernel", 2, k, false, 3, 4);
    arena_add(a, "dense/bias", 1, b, false, 0, 0);
    arena_alloc(a);
}

FUZZ_ENTRY(ckpt) {
    static arena a;
    static char dir[600], ckdir[700];
    if (!a.t) {
        fuzz_ckpt_arena(&a);
        snprintf(dir, sizeof dir, "%s/run", fuzz_dir());
        snprintf(ckdir, sizeof ckdir, "%s/ckpt", dir);
        if (fs_mkdir_p(ckdir) != YT_OK) abort();
    }
    char name[800];
    snprintf(name, sizeof name, "%s/step-000000001.h5", ckdir);
    FILE *f = fopen(name, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    const char *path = name;

    yt_clear_error();
    int v = ckpt_verify(path);
    FUZZ_CHECK(v == YT_OK || (v == YT_ERR_USAGE && strstr(yt_errmsg(), path)));
    ckpt_state st;
    char *yaml = NULL;
    int rc = ckpt_read_header(path, &st, &yaml);
    FUZZ_CHECK(rc == YT_OK || (rc == YT_ERR_USAGE && strstr(yt_errmsg(), path) && !yaml));
    if (rc == YT_OK)
        FUZZ_CHECK(yaml && st.step >= 0 && st.epoch >= 0 && st.step_in_epoch >= 0 &&
                   st.world_size >= 1);
    free(yaml);
    int full = ckpt_read_arena(path, &a, true);
    FUZZ_CHECK(full == YT_OK || (full == YT_ERR_USAGE && strstr(yt_errmsg(), path)));
    int params = ckpt_read_arena(path, &a, false);
    FUZZ_CHECK(full != YT_OK || params == YT_OK); /* format 1: only the parameters are read */
    /* a file that passes the whole check loads, also with the model's tables */
    if (v == YT_OK && rc == YT_OK)
        FUZZ_CHECK(full == YT_OK || strstr(yt_errmsg(), "model") ||
                   strstr(yt_errmsg(), "param_checksum"));

    /* the resume fallback over a run directory holding only this file */
    char latest[800], aside[900], found_path[1024], *warn = NULL;
    snprintf(latest, sizeof latest, "%s/latest", ckdir);
    snprintf(aside, sizeof aside, "%s.corrupt", path);
    FUZZ_CHECK(fs_write_atomic(latest, "step-000000001.h5\n") == YT_OK);
    bool found = false;
    int r = ckpt_find_resume(dir, found_path, sizeof found_path, &found, &warn);
    if (v == YT_OK)
        FUZZ_CHECK(r == YT_OK && found && !warn);
    else
        FUZZ_CHECK(r == YT_ERR_USAGE && !found && fs_exists(aside) && !fs_exists(path));
    free(warn);
    unlink(aside);
    return 0;
}
