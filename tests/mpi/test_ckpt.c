/* test_ckpt.c — checkpoints under mpirun: collective write, atomic publish,
 * read back on every rank, pruning, replica checks, bad files, checksums
 * (single-bit flips in the tensor data, edited headers, format 1 files),
 * the resume fallback past corrupt files, and failed writes (YOTO_FAULT). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* a check that only rank 0 makes (serial functions on rank 0's files) */
static bool rank0_ok(bool ok) {
    return dist_rank() != 0 || ok;
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
    ckpt_state st = {
        .step = 40, .epoch = 2, .step_in_epoch = 7, .world_size = dist_size(), .seed = 99};
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
    for (int i = 0; i < n; i++)
        free(names[i]);
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
        snprintf(cmd, 4400, "head -c $(( $(stat -c %%s '%s') / 2 )) '%s' > '%s'", good, good,
                 trunc);
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

/* ---- checksums ------------------------------------------------------------------------ */

static const char *const k_groups[3] = {"params", "optimizer/adam_m", "optimizer/adam_v"};

/* A larger arena than make_arena's (a few tensors of some KB each), filled
 * with distinct values. */
static void make_big_arena(arena *a) {
    arena_init(a);
    int k0[4] = {16, 8, 3, 3}, b0[1] = {16}, k1[2] = {64, 40}, b1[1] = {64}, f0[2] = {8, 2};
    arena_add(a, "encoder/block0/conv0/kernel", 4, k0, false, 72, 144);
    arena_add(a, "encoder/block0/conv0/bias", 1, b0, false, 0, 0);
    arena_add(a, "encoder/block0/film/scale/dense0/kernel", 2, f0, true, 2, 8);
    arena_add(a, "encoder/fc/dense0/kernel", 2, k1, false, 40, 64);
    arena_add(a, "encoder/fc/dense0/bias", 1, b1, false, 0, 0);
    arena_alloc(a);
    for (size_t i = 0; i < a->total; i++) {
        a->param[i] = (real)sin(0.1 * (double)i);
        a->adam_m[i] = (real)(1e-3 * cos(0.37 * (double)i));
        a->adam_v[i] = (real)(1e-6 * (1 + (double)(i % 17)));
    }
}

static void copy_file(const char *from, const char *to) {
    FILE *f = fopen(from, "rb"), *g = fopen(to, "wb");
    if (!f || !g) fail_msg("cannot copy %s to %s", from, to);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        if (fwrite(buf, 1, n, g) != n) fail_msg("cannot write %s", to);
    fclose(f);
    if (fclose(g) != 0) fail_msg("cannot write %s", to);
}

static void flip_bit(const char *path, long off, int bit) {
    FILE *f = fopen(path, "r+b");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ (1 << bit), f);
    fclose(f);
}

typedef struct {
    char name[2 * ARENA_NAME_MAX]; /* "params/encoder/..." */
    long off, len;                 /* the dataset's bytes in the file */
} region;

/* Where each tensor's data lies in the file: [3 * a->n] regions. */
static region *data_regions(const char *path, const arena *a) {
    region *r = calloc((size_t)(3 * a->n), sizeof *r);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    for (int g = 0; g < 3; g++)
        for (int i = 0; i < a->n; i++) {
            region *x = &r[g * a->n + i];
            snprintf(x->name, sizeof x->name, "%s/%s", k_groups[g], a->t[i].name);
            hid_t d = H5Dopen2(f, x->name, H5P_DEFAULT);
            x->off = (long)H5Dget_offset(d);
            x->len = (long)H5Dget_storage_size(d);
            if (d < 0 || x->off <= 0 || x->len != (long)(4 * a->t[i].size))
                fail_msg("%s: no contiguous data for %s", path, x->name);
            H5Dclose(d);
        }
    H5Fclose(f);
    return r;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void) { /* xorshift64*, a fixed seed: the same flips every run */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ull;
}

/* Single-bit flips at random places inside the tensor data of a real
 * checkpoint: every one is refused by every load (resume and eval) and by
 * ckpt_verify, naming the file and the tensor. */
static void test_bit_flips_detected(void **state) {
    (void)state;
    setup_dir("ckpt-flip");
    arena a, b;
    make_big_arena(&a);
    make_big_arena(&b);
    ckpt_state st = {
        .step = 12, .epoch = 1, .step_in_epoch = 3, .world_size = dist_size(), .seed = 7};
    TU_ASSERT_ALL_OK(ckpt_save(g_dir, &a, &st, "x: 1\n", 0));
    char good[1100], bad[1100];
    snprintf(good, sizeof good, "%s/ckpt/step-000000012.h5", g_dir);
    snprintf(bad, sizeof bad, "%s/flipped.h5", g_dir);
    TU_ASSERT_ALL_OK(ckpt_read_arena(good, &b, true));
    TU_ASSERT_ALL(rank0_ok(ckpt_verify(good) == YT_OK));
    region *r = dist_rank() == 0 ? data_regions(good, &a) : NULL;
    const int trials = 120; /* 60 in /params, 60 in /optimizer */
    int caught = 0;
    for (int k = 0; k < trials; k++) {
        char which[2 * ARENA_NAME_MAX] = "";
        if (dist_rank() == 0) {
            int g = k % 2 == 0 ? 0 : 1 + (int)(next_rand() % 2);
            const region *x = &r[g * a.n + (int)(next_rand() % (uint64_t)a.n)];
            long off = x->off + (long)(next_rand() % (uint64_t)x->len);
            copy_file(good, bad);
            flip_bit(bad, off, (int)(next_rand() % 8));
            snprintf(which, sizeof which, "%s", x->name);
        }
        dist_bcast(which, sizeof which, 0);
        yt_clear_error();
        int rc_resume = ckpt_read_arena(bad, &b, true);
        bool named = strstr(yt_errmsg(), which) && strstr(yt_errmsg(), bad) &&
                     strstr(yt_errmsg(), "corrupt");
        int rc_eval = ckpt_read_arena(bad, &b, false);
        bool verified = dist_rank() != 0 || ckpt_verify(bad) == YT_ERR_USAGE;
        bool ok = rc_resume == YT_ERR_USAGE && named && rc_eval == YT_ERR_USAGE && verified;
        if (!ok) print_message("flip %d in %s not caught: %s\n", k, which, yt_errmsg());
        caught += tu_all(ok);
    }
    print_message("# %d of %d single-bit flips in tensor data caught\n", caught, trials);
    TU_ASSERT_ALL(caught == trials);
    free(r);
    arena_free(&a);
    arena_free(&b);
}

/* Rank 0 edits an attribute of a copy of the file (a hand edit or a flipped
 * bit in the header). */
static void set_long_attr(const char *path, const char *obj, const char *name, long v) {
    if (dist_rank() != 0) return;
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    if (h5io_attr_set_long(o, name, v) != YT_OK) fail_msg("cannot set %s %s", obj, name);
    H5Oclose(o);
    H5Fclose(f);
}

/* Header parts: the state (step, epoch, ..., Adam's step) and the config. */
static void test_header_checksums(void **state) {
    (void)state;
    setup_dir("ckpt-head");
    arena a;
    make_arena(&a);
    ckpt_state st = {
        .step = 30, .epoch = 2, .step_in_epoch = 1, .world_size = dist_size(), .seed = 5};
    TU_ASSERT_ALL_OK(ckpt_save(g_dir, &a, &st, "experiment: {seed: 5}\n", 0));
    char good[1100], bad[1100];
    snprintf(good, sizeof good, "%s/ckpt/step-000000030.h5", g_dir);
    snprintf(bad, sizeof bad, "%s/edited.h5", g_dir);
    const struct {
        const char *obj, *attr, *part;
        long value;
    } edits[] = {
        {"/", "step", "the state", 31},       {"/", "epoch", "the state", 3},
        {"/", "world_size", "the state", 64}, {"/optimizer", "adam_step", "adam_step", 29},
        {"/rng", "seed", "/rng seed", 6},     {"/", "state_crc32", "the state", 12345},
        {"/config", "crc32", "/config", 777},
    };
    for (size_t i = 0; i < YT_ARRAY_LEN(edits); i++) {
        if (dist_rank() == 0) copy_file(good, bad);
        set_long_attr(bad, edits[i].obj, edits[i].attr, edits[i].value);
        ckpt_state got;
        char *yaml = NULL;
        yt_clear_error();
        int rc = ckpt_read_header(bad, &got, &yaml);
        if (rc != YT_ERR_USAGE || !strstr(yt_errmsg(), edits[i].part))
            print_message("editing %s %s: rc %d, %s\n", edits[i].obj, edits[i].attr, rc,
                          yt_errmsg());
        TU_ASSERT_ALL(rc == YT_ERR_USAGE && strstr(yt_errmsg(), "corrupt") &&
                      strstr(yt_errmsg(), edits[i].part) && yaml == NULL);
    }
    /* one byte of the config text: a config that still parses must not slip through */
    if (dist_rank() == 0) {
        copy_file(good, bad);
        hid_t f = H5Fopen(bad, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, "config", H5P_DEFAULT);
        long off = (long)H5Dget_offset(d);
        H5Dclose(d);
        H5Fclose(f);
        flip_bit(bad, off + 19, 0); /* "seed: 5" -> "seed: 4" */
    }
    ckpt_state got;
    char *yaml = NULL;
    TU_ASSERT_ALL(ckpt_read_header(bad, &got, &yaml) == YT_ERR_USAGE &&
                  strstr(yt_errmsg(), "/config does not match"));
    arena_free(&a);
}

/* Makes a format_version 1 file of a version 2 one: no crc32 anywhere. */
static void make_v1(const char *path, const arena *a) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    h5io_attr_set_long(f, "format_version", 1);
    H5Adelete(f, "state_crc32");
    H5Adelete_by_name(f, "config", "crc32", H5P_DEFAULT);
    char p[2 * ARENA_NAME_MAX];
    for (int g = 0; g < 3; g++)
        for (int i = 0; i < a->n; i++) {
            snprintf(p, sizeof p, "%s/%s", k_groups[g], a->t[i].name);
            if (H5Adelete_by_name(f, p, "crc32", H5P_DEFAULT) < 0) fail_msg("no crc32 on %s", p);
        }
    H5Fclose(f);
}

/* Files of format_version 1 still load; their parameters are checked
 * against param_checksum, the moments cannot be (a warning says so). */
static void test_format1_still_reads(void **state) {
    (void)state;
    setup_dir("ckpt-v1");
    arena a, b;
    make_big_arena(&a);
    make_big_arena(&b);
    ckpt_state st = {.step = 8, .world_size = dist_size(), .seed = 3};
    TU_ASSERT_ALL_OK(ckpt_save(g_dir, &a, &st, "x: 1\n", 0));
    char v1[1100], bad[1100];
    snprintf(v1, sizeof v1, "%s/ckpt/step-000000008.h5", g_dir);
    snprintf(bad, sizeof bad, "%s/v1-flipped.h5", g_dir);
    region *r = NULL;
    if (dist_rank() == 0) {
        r = data_regions(v1, &a);
        make_v1(v1, &a);
    }
    dist_barrier();
    memset(b.param, 0, b.total * sizeof(real));
    ckpt_state got;
    char *yaml = NULL;
    TU_ASSERT_ALL_OK(ckpt_read_header(v1, &got, &yaml));
    free(yaml);
    TU_ASSERT_ALL_OK(ckpt_read_arena(v1, &b, true));
    TU_ASSERT_ALL(memcmp(a.param, b.param, a.total * sizeof(real)) == 0 &&
                  memcmp(a.adam_v, b.adam_v, a.total * sizeof(real)) == 0);
    TU_ASSERT_ALL(rank0_ok(ckpt_verify(v1) == YT_OK));
    /* a flipped parameter bit: caught by param_checksum */
    if (dist_rank() == 0) {
        copy_file(v1, bad);
        flip_bit(bad, r[3].off + 5, 6);
    }
    TU_ASSERT_ALL(ckpt_read_arena(bad, &b, false) == YT_ERR_USAGE &&
                  strstr(yt_errmsg(), "param_checksum"));
    free(r);
    arena_free(&a);
    arena_free(&b);
}

/* ---- resuming past corrupt files ------------------------------------------------------------ */

/* Saves steps 10, 20, 30 (all kept) into a fresh g_dir. */
static void three_checkpoints(const char *name, arena *a) {
    setup_dir(name);
    make_arena(a);
    for (long s = 10; s <= 30; s += 10) {
        ckpt_state st = {.step = s, .world_size = dist_size(), .seed = 1};
        TU_ASSERT_ALL_OK(ckpt_save(g_dir, a, &st, "x: 1\n", 0));
    }
}

/* Rank 0 flips a bit in the first parameter of dir/ckpt/name. */
static void damage(const char *name, const arena *a) {
    if (dist_rank() == 0) {
        char p[1200];
        snprintf(p, sizeof p, "%s/ckpt/%s", g_dir, name);
        region *r = data_regions(p, a);
        flip_bit(p, r[0].off + 1, 3);
        free(r);
    }
    dist_barrier();
}

static bool exists_in_ckpt(const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/ckpt/%s", g_dir, name);
    return fs_exists(p);
}

static bool latest_is(const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/ckpt/latest", g_dir);
    char *t = fs_read_text(p);
    bool same = t && strncmp(t, name, strlen(name)) == 0 && t[strlen(name)] == '\n';
    free(t);
    return same;
}

static void test_resume_fallback(void **state) {
    (void)state;
    arena a;
    three_checkpoints("ckpt-resume", &a);
    char path[2048];
    bool found = false;
    char *warn = (char *)1;
    /* all good: ckpt/latest's file, nothing to say */
    TU_ASSERT_ALL_OK(ckpt_find_resume(g_dir, path, sizeof path, &found, &warn));
    TU_ASSERT_ALL(found && strstr(path, "/ckpt/step-000000030.h5") && warn == NULL);
    /* the newest corrupt: the one before, loudly; the bad one renamed, latest moved */
    damage("step-000000030.h5", &a);
    TU_ASSERT_ALL_OK(ckpt_find_resume(g_dir, path, sizeof path, &found, &warn));
    TU_ASSERT_ALL(found && strstr(path, "/ckpt/step-000000020.h5") && warn &&
                  strstr(warn, "step-000000030.h5 failed verification") &&
                  strstr(warn, "params/encoder/block0/conv0/kernel") &&
                  strstr(warn, "renamed to step-000000030.h5.corrupt") &&
                  strstr(warn, "resuming from step-000000020.h5"));
    free(warn);
    TU_ASSERT_ALL(exists_in_ckpt("step-000000030.h5.corrupt") &&
                  !exists_in_ckpt("step-000000030.h5") && latest_is("step-000000020.h5"));
    /* the file it resumes from reads (collective, every rank) */
    arena b;
    make_arena(&b);
    TU_ASSERT_ALL_OK(ckpt_read_arena(path, &b, true));
    TU_ASSERT_ALL(memcmp(a.param, b.param, a.total * sizeof(real)) == 0);
    arena_free(&b);
    /* a later step 30 corrupted again: .corrupt.2, never overwritten */
    ckpt_state st = {.step = 30, .world_size = dist_size(), .seed = 1};
    TU_ASSERT_ALL_OK(ckpt_save(g_dir, &a, &st, "x: 1\n", 0));
    damage("step-000000030.h5", &a);
    TU_ASSERT_ALL_OK(ckpt_find_resume(g_dir, path, sizeof path, &found, &warn));
    TU_ASSERT_ALL(found && strstr(path, "step-000000020.h5") && warn &&
                  exists_in_ckpt("step-000000030.h5.corrupt.2") &&
                  exists_in_ckpt("step-000000030.h5.corrupt"));
    free(warn);
    /* all corrupt: exit 2, naming each; every file is still there (renamed) */
    damage("step-000000020.h5", &a);
    damage("step-000000010.h5", &a);
    yt_clear_error();
    int rc = ckpt_find_resume(g_dir, path, sizeof path, &found, &warn);
    TU_ASSERT_ALL(rc == YT_ERR_USAGE && !found && warn == NULL &&
                  strstr(yt_errmsg(), "no checkpoint to resume from verifies") &&
                  strstr(yt_errmsg(), "step-000000020.h5 failed") &&
                  strstr(yt_errmsg(), "step-000000010.h5 failed"));
    TU_ASSERT_ALL(exists_in_ckpt("step-000000020.h5.corrupt") &&
                  exists_in_ckpt("step-000000010.h5.corrupt") && latest_is("step-000000020.h5"));
    /* ... and stays an error (not a fresh start) when run again */
    rc = ckpt_find_resume(g_dir, path, sizeof path, &found, &warn);
    TU_ASSERT_ALL(rc == YT_ERR_USAGE && !found && strstr(yt_errmsg(), "does not exist") &&
                  strstr(yt_errmsg(), "no older step-*.h5"));
    arena_free(&a);
}

static void write_latest(const char *text) {
    if (dist_rank() == 0) {
        char p[1200];
        snprintf(p, sizeof p, "%s/ckpt/latest", g_dir);
        if (fs_write_atomic(p, text) != YT_OK) fail_msg("%s", yt_errmsg());
    }
    dist_barrier();
}

static void test_resume_latest_damaged(void **state) {
    (void)state;
    arena a;
    three_checkpoints("ckpt-latest", &a);
    char path[2048];
    bool found = true;
    char *warn = NULL;
    /* garbage in ckpt/latest: the newest step file that verifies; latest kept aside */
    write_latest("\x01\x7f garbage/\n");
    damage("step-000000030.h5", &a);
    TU_ASSERT_ALL_OK(ckpt_find_resume(g_dir, path, sizeof path, &found, &warn));
    TU_ASSERT_ALL(found && strstr(path, "step-000000020.h5") && warn &&
                  strstr(warn, "does not name a checkpoint file") &&
                  exists_in_ckpt("latest.corrupt") && latest_is("step-000000020.h5"));
    free(warn);
    /* latest names a file that is gone: the newest older one */
    write_latest("step-000000025.h5\n");
    TU_ASSERT_ALL_OK(ckpt_find_resume(g_dir, path, sizeof path, &found, &warn));
    TU_ASSERT_ALL(found && strstr(path, "step-000000020.h5") && warn &&
                  strstr(warn, "names step-000000025.h5, which does not exist") &&
                  latest_is("step-000000020.h5"));
    free(warn);
    /* a newer file beside a valid latest (published, latest not updated) is not taken */
    ckpt_state st = {.step = 40, .world_size = dist_size(), .seed = 1};
    TU_ASSERT_ALL_OK(ckpt_save(g_dir, &a, &st, "x: 1\n", 0));
    write_latest("step-000000010.h5\n");
    TU_ASSERT_ALL_OK(ckpt_find_resume(g_dir, path, sizeof path, &found, &warn));
    TU_ASSERT_ALL(found && strstr(path, "step-000000010.h5") && warn == NULL);
    /* no ckpt/latest: nothing to resume, no error */
    if (dist_rank() == 0) unlink(tu_join(g_dir, "ckpt/latest"));
    dist_barrier();
    TU_ASSERT_ALL_OK(ckpt_find_resume(g_dir, path, sizeof path, &found, &warn));
    TU_ASSERT_ALL(!found && warn == NULL);
    arena_free(&a);
}

/* ---- failed writes --------------------------------------------------------------------------- */

/* A write, a rename or the ckpt/latest update that fails (YOTO_FAULT, on one
 * rank or all): an error on every rank, the previous checkpoint published. */
static void test_failed_writes_keep_previous(void **state) {
    (void)state;
    setup_dir("ckpt-fault");
    arena a;
    make_arena(&a);
    ckpt_state st = {.step = 10, .world_size = dist_size(), .seed = 1};
    TU_ASSERT_ALL_OK(ckpt_save(g_dir, &a, &st, "x: 1\n", 2));
    char fault[64];
    const char *const points[] = {"ckpt_write", "ckpt_rename", "ckpt_latest"};
    for (size_t i = 0; i < YT_ARRAY_LEN(points); i++) {
        /* the write fails on the last rank; rename and latest are rank 0's */
        snprintf(fault, sizeof fault, "%s@%d", points[i], i == 0 ? dist_size() - 1 : 0);
        setenv("YOTO_FAULT", fault, 1);
        st.step = 20 + (long)i;
        yt_clear_error();
        int rc = ckpt_save(g_dir, &a, &st, "x: 1\n", 2);
        unsetenv("YOTO_FAULT");
        if (rc != YT_ERR_RUNTIME) print_message("%s: rc %d: %s\n", fault, rc, yt_errmsg());
        TU_ASSERT_ALL(rc == YT_ERR_RUNTIME && strstr(yt_errmsg(), "injected") &&
                      strstr(yt_errmsg(), "ckpt/latest still names step-000000010.h5"));
        TU_ASSERT_ALL(latest_is("step-000000010.h5"));
        char tmp[64];
        snprintf(tmp, sizeof tmp, ".step-%09ld.h5.tmp", st.step);
        TU_ASSERT_ALL(!exists_in_ckpt(tmp));
    }
    /* the rename and the write leave no new file; a failed latest update leaves a complete one */
    TU_ASSERT_ALL(!exists_in_ckpt("step-000000020.h5") && !exists_in_ckpt("step-000000021.h5"));
    TU_ASSERT_ALL(rank0_ok(ckpt_verify(tu_join(g_dir, "ckpt/step-000000022.h5")) == YT_OK));
    char path[2048];
    bool found;
    char *warn;
    TU_ASSERT_ALL_OK(ckpt_find_resume(g_dir, path, sizeof path, &found, &warn));
    TU_ASSERT_ALL(found && strstr(path, "step-000000010.h5") && !warn);
    /* once the fault is gone: writes again */
    st.step = 30;
    TU_ASSERT_ALL_OK(ckpt_save(g_dir, &a, &st, "x: 1\n", 2));
    TU_ASSERT_ALL(latest_is("step-000000030.h5"));
    arena_free(&a);
}

int main(int argc, char **argv) {
    tu_mpi_init(&argc, &argv);
    h5io_quiet();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_and_read_back),
        cmocka_unit_test(test_diverged_replicas_refused),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_bit_flips_detected),
        cmocka_unit_test(test_header_checksums),
        cmocka_unit_test(test_format1_still_reads),
        cmocka_unit_test(test_resume_fallback),
        cmocka_unit_test(test_resume_latest_damaged),
        cmocka_unit_test(test_failed_writes_keep_previous),
    };
    return TU_MPI_RUN("ckpt", tests);
}
