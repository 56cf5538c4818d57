/* ckpt.c — checkpoints (see ckpt.h and docs/FORMATS.md). */
#include "ckpt.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "dist.h"
#include "fsutil.h"
#include "h5io.h"

/* ---- checksums ------------------------------------------------------------------------ */

/* Feeds eat() the bytes of x[0..n) as a checkpoint stores them (float32
 * little-endian), in pieces. */
static void stored_bytes(const real *x, size_t n,
                         void (*eat)(void *ctx, const unsigned char *p, size_t k), void *ctx) {
#if !defined(YOTO_DOUBLE) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    eat(ctx, (const unsigned char *)x, n * sizeof(float)); /* already those bytes */
#else
    unsigned char buf[4096];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        float f = (float)x[i];
        uint32_t u;
        memcpy(&u, &f, 4);
        for (int b = 0; b < 4; b++)
            buf[k++] = (unsigned char)(u >> (8 * b));
        if (k == sizeof buf || i + 1 == n) {
            eat(ctx, buf, k);
            k = 0;
        }
    }
#endif
}

static void eat_crc(void *ctx, const unsigned char *p, size_t k) {
    uLong *c = ctx;
    while (k > 0) {
        uInt m = k > (1u << 30) ? 1u << 30 : (uInt)k;
        *c = crc32(*c, p, m);
        p += m;
        k -= m;
    }
}

static void eat_fnv(void *ctx, const unsigned char *p, size_t k) {
    uint64_t *h = ctx;
    for (size_t i = 0; i < k; i++)
        *h = (*h ^ p[i]) * 1099511628211ull;
}

uint32_t ckpt_crc32(const real *x, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    stored_bytes(x, n, eat_crc, &c);
    return (uint32_t)c;
}

static uint32_t crc_text(const char *s) {
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const Bytef *)s, (uInt)strlen(s));
}

uint64_t ckpt_param_checksum(const arena *a) {
    const unsigned char *p = (const unsigned char *)a->param;
    uint64_t h = 1469598103934665603ull;
    eat_fnv(&h, p, a->total * sizeof(real));
    return h;
}

/* param_checksum as stored: FNV-1a of the parameters' stored bytes (float32
 * LE) in the arena's order; equal to ckpt_param_checksum in the float build */
static uint64_t stored_param_checksum(const arena *a) {
    uint64_t h = 1469598103934665603ull;
    stored_bytes(a->param, a->total, eat_fnv, &h);
    return h;
}

/* The text state_crc32 is the CRC-32 of (docs/FORMATS.md). */
static void state_text(char *buf, size_t size, const ckpt_state *st, long adam_step) {
    snprintf(buf, size,
             "step=%ld epoch=%ld step_in_epoch=%ld world_size=%ld seed=%ld adam_step=%ld", st->step,
             st->epoch, st->step_in_epoch, st->world_size, (long)st->seed, adam_step);
}

static int corrupt(const char *file, const char *part, unsigned long stored, unsigned long got) {
    return yt_fail(YT_ERR_USAGE,
                   "%s: checkpoint is corrupt: %s does not match its checksum (crc32 %08lx "
                   "stored, %08lx computed); the file was damaged after it was written (disk, "
                   "copy or transfer error)",
                   file, part, stored, got);
}

/* ---- tensor tables ----------------------------------------------------------------- */

/* Reads group/<t->name> into dst after checking its shape; checks its crc32
 * attribute (required: missing is corruption; else checked when present). */
static int read_tensor(hid_t file, const char *fname, const char *group, const arena_tensor *t,
                       real *dst, bool crc_required) {
    char path[2 * ARENA_NAME_MAX];
    snprintf(path, sizeof path, "%s/%s", group, t->name);
    if (!h5io_exists(file, path))
        return yt_fail(YT_ERR_USAGE, "%s: no dataset '%s' (the model has tensor %s): %s", fname,
                       path, t->name, "a checkpoint of another model?");
    hid_t ds = H5Dopen2(file, path, H5P_DEFAULT);
    if (ds < 0) return yt_fail(YT_ERR_USAGE, "%s: cannot open dataset '%s'", fname, path);
    hid_t sp = H5Dget_space(ds);
    int ndim = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[8] = {0};
    bool same = ndim == t->ndim;
    if (ndim > 0 && ndim <= 8) H5Sget_simple_extent_dims(sp, dims, NULL);
    for (int d = 0; same && d < ndim; d++)
        same = dims[d] == (hsize_t)t->shape[d];
    H5Sclose(sp);
    if (!same) {
        char got[128], want[128];
        hsize_t wd[ARENA_NDIM_MAX];
        for (int d = 0; d < t->ndim; d++)
            wd[d] = (hsize_t)t->shape[d];
        h5io_dims_text(ndim > 8 ? 8 : ndim < 0 ? 0 : ndim, dims, got, sizeof got);
        h5io_dims_text(t->ndim, wd, want, sizeof want);
        H5Dclose(ds);
        return yt_fail(YT_ERR_USAGE,
                       "%s: dataset '%s' has shape %s, the model needs %s (a checkpoint of "
                       "another model shape)",
                       fname, path, got, want);
    }
    long stored = -1;
    bool has_crc = h5io_attr_get_long(ds, "crc32", &stored) == YT_OK;
    herr_t rc = H5Dread(ds, REAL_H5T, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst + t->offset);
    H5Dclose(ds);
    if (rc < 0)
        return yt_fail(YT_ERR_USAGE, "%s: cannot read dataset '%s' (file truncated?)", fname, path);
    if (!has_crc && crc_required)
        return yt_fail(YT_ERR_USAGE,
                       "%s: checkpoint is corrupt: dataset '%s' lacks its crc32 "
                       "attribute",
                       fname, path);
    uint32_t got = has_crc ? ckpt_crc32(dst + t->offset, t->size) : 0;
    if (has_crc && (stored < 0 || (unsigned long)stored != got))
        return corrupt(fname, path, (unsigned long)stored, got);
    return YT_OK;
}

static int read_tensors(hid_t file, const char *fname, const char *group, const arena *a, real *dst,
                        bool crc_required) {
    int rc = YT_OK;
    for (int i = 0; i < a->n && rc == YT_OK; i++)
        rc = read_tensor(file, fname, group, &a->t[i], dst, crc_required);
    return rc;
}

int ckpt_read_tensors(hid_t file, const char *fname, const char *group, const arena *a, real *dst) {
    return read_tensors(file, fname, group, a, dst, false);
}

/* Writes group/<name> for every tensor with its crc32 attribute (crc[i], the
 * same on every rank). Collective: every rank makes every call even after a
 * failure (HDF5's metadata operations must match), the first error kept. */
static int write_tensors(hid_t file, const char *fname, const char *group, const arena *a,
                         const real *src, const uint32_t *crc) {
    char path[2 * ARENA_NAME_MAX];
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t dxpl = h5io_dxpl();
    int rc = YT_OK;
    for (int i = 0; i < a->n; i++) {
        const arena_tensor *t = &a->t[i];
        snprintf(path, sizeof path, "%s/%s", group, t->name);
        hsize_t dims[ARENA_NDIM_MAX];
        for (int d = 0; d < t->ndim; d++)
            dims[d] = (hsize_t)t->shape[d];
        hid_t fs = H5Screate_simple(t->ndim, dims, NULL);
        hid_t ds = H5Dcreate2(file, path, H5T_IEEE_F32LE, fs, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        /* replicas are identical: rank 0 writes, the others take part with
         * an empty selection (a collective transfer) */
        if (dist_rank() != 0) H5Sselect_none(fs);
        hid_t ms = H5Scopy(fs);
        bool ok = ds >= 0 && H5Dwrite(ds, REAL_H5T, ms, fs, dxpl, src + t->offset) >= 0;
        if (ds >= 0 && h5io_attr_set_long(ds, "crc32", (long)crc[i]) != YT_OK) ok = false;
        if (!ok && rc == YT_OK)
            rc = yt_fail(YT_ERR_RUNTIME, "%s: cannot write dataset '%s'", fname, path);
        if (ds >= 0) H5Dclose(ds);
        H5Sclose(ms);
        H5Sclose(fs);
        if (dist_fault("slow_ckpt")) usleep(20000); /* tests: widen the crash window */
    }
    H5Pclose(dxpl);
    H5Pclose(lcpl);
    return rc;
}

int ckpt_write_tensors(hid_t file, const char *fname, const char *group, const arena *a,
                       const real *src) {
    uint32_t *crc = yt_malloc((size_t)(a->n > 0 ? a->n : 1) * sizeof *crc);
    for (int i = 0; i < a->n; i++)
        crc[i] = ckpt_crc32(src + a->t[i].offset, a->t[i].size);
    int rc = write_tensors(file, fname, group, a, src, crc);
    free(crc);
    return rc;
}

/* ---- writing ------------------------------------------------------------------------ */

/* The CRC-32 of every tensor of params, adam_m, adam_v ([3][n]), of rank 0's
 * data (what the file gets) on every rank. Collective. */
static uint32_t *tensor_crcs(const arena *a) {
    size_t n = (size_t)a->n;
    uint32_t *crc = yt_calloc(3 * n + 1, sizeof *crc);
    const real *buf[3] = {a->param, a->adam_m, a->adam_v};
    if (dist_rank() == 0)
        for (int g = 0; g < 3; g++)
            for (size_t i = 0; i < n; i++)
                crc[g * n + i] = ckpt_crc32(buf[g] + a->t[i].offset, a->t[i].size);
    dist_bcast(crc, 3 * n * sizeof *crc, 0);
    return crc;
}

/* Root attributes, /config, /data and /rng. Collective metadata: every rank
 * makes every call. */
static int write_meta(hid_t f, const arena *a, const ckpt_state *st, const char *config_yaml) {
    char created[64];
    time_t now = time(NULL);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
    /* rank 0's clock and parameters speak for all (attribute values must match) */
    dist_bcast(created, sizeof created, 0);
    uint64_t psum = dist_rank() == 0 ? stored_param_checksum(a) : 0;
    dist_bcast(&psum, sizeof psum, 0);
    char sum[32], state[256];
    snprintf(sum, sizeof sum, "%016llx", (unsigned long long)psum);
    state_text(state, sizeof state, st, st->step);
    int rc = YT_OK;
    rc |= h5io_attr_set_string(f, "format", CKPT_FORMAT);
    rc |= h5io_attr_set_long(f, "format_version", CKPT_FORMAT_VERSION);
    rc |= h5io_attr_set_long(f, "step", st->step);
    rc |= h5io_attr_set_long(f, "epoch", st->epoch);
    rc |= h5io_attr_set_long(f, "step_in_epoch", st->step_in_epoch);
    rc |= h5io_attr_set_long(f, "world_size", st->world_size);
    rc |= h5io_attr_set_string(f, "created", created);
    rc |= h5io_attr_set_string(f, "yoto_version", yt_version());
    rc |= h5io_attr_set_string(f, "git_commit", yt_git_commit());
    rc |= h5io_attr_set_string(f, "param_checksum", sum);
    rc |= h5io_attr_set_long(f, "state_crc32", (long)crc_text(state));
    rc |= h5io_write_string(f, "config", config_yaml);
    hid_t c = H5Dopen2(f, "config", H5P_DEFAULT);
    rc |= c >= 0 ? h5io_attr_set_long(c, "crc32", (long)crc_text(config_yaml)) : YT_ERR_RUNTIME;
    if (c >= 0) H5Dclose(c);
    hid_t d = H5Gcreate2(f, "data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    rc |= h5io_attr_set_long(d, "epoch", st->epoch);
    rc |= h5io_attr_set_long(d, "step_in_epoch", st->step_in_epoch);
    rc |= h5io_attr_set_long(d, "world_size", st->world_size);
    H5Gclose(d);
    hid_t r = H5Gcreate2(f, "rng", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    rc |= h5io_attr_set_long(r, "seed", (long)st->seed);
    rc |= h5io_attr_set_string(r, "generator", "Philox4x32-10 (Random123)");
    rc |= h5io_attr_set_string(r, "streams",
                               "counter-based, keyed (seed, purpose, step|epoch, rank, "
                               "sample): no state beyond seed, step and epoch");
    H5Gclose(r);
    return rc ? YT_ERR_RUNTIME : YT_OK;
}

/* Why a write into dir failed, for the message: free space, or errno. */
static void disk_hint(const char *dir, char *buf, size_t size) {
    struct statvfs v;
    if (statvfs(dir, &v) == 0)
        snprintf(buf, size,
                 "%.1f MB free on its file system; disk full, over quota, a file "
                 "size limit or an I/O error?",
                 (double)v.f_bavail * (double)v.f_frsize / 1e6);
    else
        snprintf(buf, size, "disk full, over quota, a file size limit or an I/O error?");
}

static int write_file(const char *tmp, const char *dir, const arena *a, const ckpt_state *st,
                      const char *config_yaml) {
    hid_t fapl = h5io_fapl(true);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) return yt_fail(YT_ERR_RUNTIME, "cannot create checkpoint %s", tmp);
    uint32_t *crc = tensor_crcs(a);
    size_t n = (size_t)a->n;
    /* every rank makes every collective call, whatever failed before */
    int rc = write_meta(f, a, st, config_yaml);
    if (rc != YT_OK) rc = yt_fail(YT_ERR_RUNTIME, "cannot write checkpoint metadata to %s", tmp);
    int w = write_tensors(f, tmp, "params", a, a->param, crc);
    if (rc == YT_OK) rc = w;
    w = write_tensors(f, tmp, "optimizer/adam_m", a, a->adam_m, crc + n);
    if (rc == YT_OK) rc = w;
    w = write_tensors(f, tmp, "optimizer/adam_v", a, a->adam_v, crc + 2 * n);
    if (rc == YT_OK) rc = w;
    free(crc);
    hid_t g = H5Gopen2(f, "optimizer", H5P_DEFAULT);
    w = g >= 0 ? h5io_attr_set_long(g, "adam_step", st->step) : YT_ERR_RUNTIME;
    if (g >= 0) H5Gclose(g);
    if (rc == YT_OK && w != YT_OK)
        rc = yt_fail(YT_ERR_RUNTIME, "cannot write checkpoint metadata to %s", tmp);
    if (H5Fclose(f) < 0 && rc == YT_OK)
        rc = yt_fail(YT_ERR_RUNTIME, "cannot close checkpoint %s (its data did not reach the disk)",
                     tmp);
    if (rc == YT_OK && dist_fault("ckpt_write"))
        rc = yt_fail(YT_ERR_RUNTIME, "cannot write checkpoint %s: %s (injected: YOTO_FAULT)", tmp,
                     strerror(EIO));
    if (rc != YT_OK) {
        char m[YT_ERRMSG_MAX], hint[200];
        snprintf(m, sizeof m, "%s", yt_errmsg());
        disk_hint(dir, hint, sizeof hint);
        rc = yt_fail(rc, "%s (%s)", m, hint);
    }
    return rc;
}

/* Keeps `keep` step-*.h5 files in dir: `current` (the one ckpt/latest names)
 * and the newest keep - 1 before it. Files after it (renamed by a run that
 * failed before updating ckpt/latest) are left alone: pruning by name alone
 * would delete `current` itself. Names sort by step (fixed width). */
static void prune(const char *dir, const char *current, long keep) {
    int n, older = 0;
    char **names = fs_list(dir, "step-", ".h5", &n);
    while (older < n && strcmp(names[older], current) < 0)
        older++;
    for (int i = 0; i < n; i++) {
        if (i < older - (keep - 1)) {
            char path[4200];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            unlink(path);
        }
        free(names[i]);
    }
    free(names);
}

/* Rank 0: renames tmp to final, then points ckpt/latest at it. */
static int publish(const char *dir, const char *name, const char *tmp, const char *final,
                   long keep) {
    char latest[4200], line[80];
    snprintf(latest, sizeof latest, "%s/latest", dir);
    snprintf(line, sizeof line, "%s\n", name);
    int rc = dist_fault("ckpt_rename")
                 ? yt_fail(YT_ERR_RUNTIME, "cannot rename %s to %s: %s (injected: YOTO_FAULT)", tmp,
                           final, strerror(EIO))
                 : fs_rename_durable(tmp, final);
    if (rc != YT_OK) {
        unlink(tmp);
        return rc;
    }
    if (dist_fault("ckpt_latest"))
        return yt_fail(YT_ERR_RUNTIME, "cannot write %s.tmp: %s (injected: YOTO_FAULT)", latest,
                       strerror(ENOSPC));
    rc = fs_write_atomic(latest, line);
    if (rc == YT_OK && keep > 0) prune(dir, name, keep);
    return rc;
}

/* Appends what ckpt/latest names now to the agreed error message (any rank). */
static int kept_note(int rc, const char *run_dir) {
    char path[4200], m[YT_ERRMSG_MAX];
    bool found = false;
    snprintf(m, sizeof m, "%s", yt_errmsg());
    int r = ckpt_find_latest(run_dir, path, sizeof path, &found);
    const char *base = strrchr(path, '/');
    if (r == YT_OK && found)
        return yt_fail(rc, "%s; the previous checkpoint is kept: ckpt/latest still names %s", m,
                       base ? base + 1 : path);
    return yt_fail(rc, "%s; no checkpoint was published", m);
}

int ckpt_save(const char *run_dir, const arena *a, const ckpt_state *st, const char *config_yaml,
              long keep) {
    /* replicas must be identical before one of them speaks for all */
    uint64_t sum = ckpt_param_checksum(a);
    long lo = dist_allreduce_min_long((long)sum), hi = dist_allreduce_max_long((long)sum);
    if (lo != hi)
        return yt_fail(YT_ERR_RUNTIME,
                       "replicas diverged at step %ld: parameter checksums differ across ranks "
                       "(a bug or hardware fault; the last checkpoint is kept)",
                       st->step);
    char dir[4096], tmp[4200], final[4200], name[64];
    snprintf(dir, sizeof dir, "%s/ckpt", run_dir);
    snprintf(name, sizeof name, "step-%09ld.h5", st->step);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    snprintf(final, sizeof final, "%s/%s", dir, name);
    int rc = h5io_check_mpiio_path(tmp, "checkpoint"); /* the same on every rank */
    if (rc != YT_OK) return rc;
    rc = dist_rank() == 0 ? fs_mkdir_p(dir) : YT_OK;
    rc = dist_agree(rc);
    if (rc != YT_OK) return rc;
    /* a file size limit (ulimit -f) fails the write (EFBIG) instead of
     * killing the rank halfway through it */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGXFSZ, &ign, &old);
    rc = dist_agree(write_file(tmp, dir, a, st, config_yaml));
    sigaction(SIGXFSZ, &old, NULL);
    if (rc != YT_OK) {
        if (dist_rank() == 0) unlink(tmp);
        return kept_note(rc, run_dir);
    }
    rc = dist_rank() == 0 ? publish(dir, name, tmp, final, keep) : YT_OK;
    rc = dist_agree(rc);
    return rc != YT_OK ? kept_note(rc, run_dir) : rc;
}

int ckpt_check_run_dir(const char *run_dir) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/ckpt/.step-000000000.h5.tmp", run_dir);
    int rc = h5io_check_mpiio_path(tmp, "checkpoints would be written as");
    if (rc == YT_OK) return rc;
    char m[YT_ERRMSG_MAX];
    snprintf(m, sizeof m, "%s", yt_errmsg());
    return yt_fail(rc, "experiment.out_dir %s: %s", run_dir, m);
}

/* ---- finding and reading --------------------------------------------------------------- */

int ckpt_find_latest(const char *run_dir, char *path, size_t size, bool *found) {
    char latest[4200];
    snprintf(latest, sizeof latest, "%s/ckpt/latest", run_dir);
    *found = false;
    char *text = fs_read_text(latest);
    if (!text) /* absent: no checkpoint; there but unreadable: not "start afresh" */
        return fs_exists(latest) ? yt_fail(YT_ERR_RUNTIME, "cannot read %s", latest) : YT_OK;
    text[strcspn(text, "\r\n")] = '\0';
    int rc = YT_OK;
    if (!*text || strchr(text, '/'))
        rc = yt_fail(YT_ERR_USAGE, "%s: expected the name of a checkpoint file, found '%s'", latest,
                     text);
    else if ((size_t)snprintf(path, size, "%s/ckpt/%s", run_dir, text) >= size)
        rc = yt_fail(YT_ERR_USAGE, "%s: path too long", latest);
    else if (!fs_exists(path))
        rc = yt_fail(YT_ERR_USAGE, "%s names %s, which does not exist", latest, path);
    else
        *found = true;
    free(text);
    return rc;
}

/* Opens path and checks that it is a yoto checkpoint of a version this yoto
 * reads: *f open (caller closes) and *version set on YT_OK. */
static int open_checkpoint(const char *path, hid_t *f, long *version) {
    *f = -1;
    if (!fs_exists(path)) return yt_fail(YT_ERR_USAGE, "%s: no such checkpoint file", path);
    if (H5Fis_hdf5(path) <= 0)
        return yt_fail(YT_ERR_USAGE, "%s: not an HDF5 file (truncated, or not a checkpoint)", path);
    *f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*f < 0) return yt_fail(YT_ERR_USAGE, "%s: cannot open as HDF5 (truncated?)", path);
    int rc = YT_OK;
    char *format = h5io_attr_get_string(*f, "format");
    *version = 0;
    if (!format || strcmp(format, CKPT_FORMAT) != 0)
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: not a yoto checkpoint (root attribute format is %s%s%s, expected '%s')",
                     path, format ? "'" : "", format ? format : "missing", format ? "'" : "",
                     CKPT_FORMAT);
    else if (h5io_attr_get_long(*f, "format_version", version) != YT_OK || *version < 1)
        rc = yt_fail(YT_ERR_USAGE, "%s: checkpoint lacks a valid root attribute format_version",
                     path);
    else if (*version > CKPT_FORMAT_VERSION)
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: checkpoint format version %ld is newer than this yoto understands (%d); "
                     "use a newer yoto",
                     path, *version, CKPT_FORMAT_VERSION);
    free(format);
    if (rc != YT_OK) {
        H5Fclose(*f);
        *f = -1;
    }
    return rc;
}

/* Version 2: Adam's step, the state and the config against their checksums. */
static int verify_header(hid_t f, const char *path, const ckpt_state *st, const char *yaml) {
    long adam_step = -1, stored = -1, cstored = -1;
    hid_t o = h5io_exists(f, "optimizer") ? H5Gopen2(f, "optimizer", H5P_DEFAULT) : -1;
    bool have = o >= 0 && h5io_attr_get_long(o, "adam_step", &adam_step) == YT_OK;
    if (o >= 0) H5Gclose(o);
    if (!have) return yt_fail(YT_ERR_USAGE, "%s: checkpoint lacks /optimizer adam_step", path);
    if (h5io_attr_get_long(f, "state_crc32", &stored) != YT_OK)
        return yt_fail(YT_ERR_USAGE,
                       "%s: checkpoint is corrupt: it lacks the root attribute "
                       "state_crc32",
                       path);
    char text[256];
    state_text(text, sizeof text, st, adam_step);
    uint32_t got = crc_text(text);
    if (stored < 0 || (unsigned long)stored != got)
        return corrupt(path,
                       "the state (step, epoch, step_in_epoch, world_size, /rng seed, "
                       "/optimizer adam_step)",
                       (unsigned long)stored, got);
    hid_t c = H5Dopen2(f, "config", H5P_DEFAULT);
    have = c >= 0 && h5io_attr_get_long(c, "crc32", &cstored) == YT_OK;
    if (c >= 0) H5Dclose(c);
    if (!have)
        return yt_fail(YT_ERR_USAGE, "%s: checkpoint is corrupt: /config lacks its crc32 attribute",
                       path);
    got = crc_text(yaml);
    if (cstored < 0 || (unsigned long)cstored != got)
        return corrupt(path, "/config", (unsigned long)cstored, got);
    return YT_OK;
}

/* The state and config of an open checkpoint, checked (rank 0's part of
 * ckpt_read_header; ckpt_verify). */
static int read_state(hid_t f, const char *path, long version, ckpt_state *st, char **config_yaml) {
    long step, epoch, sie, world, seed = 0;
    if (h5io_attr_get_long(f, "step", &step) || h5io_attr_get_long(f, "epoch", &epoch) ||
        h5io_attr_get_long(f, "step_in_epoch", &sie) || h5io_attr_get_long(f, "world_size", &world))
        return yt_fail(YT_ERR_USAGE, "%s: checkpoint lacks step/epoch/world_size attributes", path);
    if (step < 0 || epoch < 0 || sie < 0 || world < 1) /* resume indexes the data order with them */
        return yt_fail(YT_ERR_USAGE,
                       "%s: checkpoint attributes out of range: step %ld, epoch %ld, "
                       "step_in_epoch %ld, world_size %ld",
                       path, step, epoch, sie, world);
    hid_t r = h5io_exists(f, "rng") ? H5Gopen2(f, "rng", H5P_DEFAULT) : -1;
    bool have = r >= 0 && h5io_attr_get_long(r, "seed", &seed) == YT_OK;
    if (r >= 0) H5Gclose(r);
    if (!have) return yt_fail(YT_ERR_USAGE, "%s: checkpoint lacks /rng seed", path);
    *config_yaml = h5io_read_string(f, "config");
    if (!*config_yaml) return yt_fail(YT_ERR_USAGE, "%s: checkpoint lacks /config", path);
    st->step = step;
    st->epoch = epoch;
    st->step_in_epoch = sie;
    st->world_size = world;
    st->seed = (uint64_t)seed;
    return version >= 2 ? verify_header(f, path, st, *config_yaml) : YT_OK;
}

static int read_header_local(const char *path, ckpt_state *st, char **config_yaml) {
    *config_yaml = NULL;
    hid_t f;
    long version;
    int rc = open_checkpoint(path, &f, &version);
    if (rc != YT_OK) return rc;
    rc = read_state(f, path, version, st, config_yaml);
    H5Fclose(f);
    return rc;
}

int ckpt_read_header(const char *path, ckpt_state *st, char **config_yaml) {
    memset(st, 0, sizeof *st);
    *config_yaml = NULL;
    int rc = dist_rank() == 0 ? read_header_local(path, st, config_yaml) : YT_OK;
    rc = dist_agree(rc);
    if (rc != YT_OK) {
        free(*config_yaml);
        *config_yaml = NULL;
        return rc;
    }
    dist_bcast(st, sizeof *st, 0);
    long len = dist_rank() == 0 ? (long)strlen(*config_yaml) + 1 : 0;
    len = dist_allreduce_max_long(len);
    if (dist_rank() != 0) *config_yaml = yt_malloc((size_t)len);
    dist_bcast(*config_yaml, (size_t)len, 0);
    return YT_OK;
}

/* Version 1 (no crc32 attributes): the parameters against param_checksum. */
static int verify_v1(hid_t f, const char *path, const arena *a) {
    char *sum = h5io_attr_get_string(f, "param_checksum");
    char got[32];
    snprintf(got, sizeof got, "%016llx", (unsigned long long)stored_param_checksum(a));
    int rc = YT_OK;
    if (!sum)
        dist_warn("%s: format_version 1 checkpoint without param_checksum: its parameters "
                  "cannot be verified",
                  path);
    else if (strcmp(sum, got) != 0)
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: checkpoint is corrupt: the parameters do not match param_checksum "
                     "(%s stored, %s computed); the file was damaged after it was written",
                     path, sum, got);
    else
        dist_warn("%s: format_version 1 checkpoint (before per-tensor checksums): the "
                  "parameters are verified, the Adam moments cannot be",
                  path);
    free(sum);
    return rc;
}

static int read_arena_local(const char *path, arena *a, bool optimizer) {
    hid_t f;
    long version;
    int rc = open_checkpoint(path, &f, &version);
    if (rc != YT_OK) return rc;
    bool v2 = version >= 2;
    rc = read_tensors(f, path, "params", a, a->param, v2);
    /* the moments are checked on every load, also when only the parameters
     * are wanted (eval, sample): then they go to a scratch buffer */
    real *m = optimizer ? a->adam_m : NULL, *v = optimizer ? a->adam_v : NULL;
    if (!optimizer && v2) m = v = yt_malloc((a->total ? a->total : 1) * sizeof(real));
    if (rc == YT_OK && m) rc = read_tensors(f, path, "optimizer/adam_m", a, m, v2);
    if (rc == YT_OK && v) rc = read_tensors(f, path, "optimizer/adam_v", a, v, v2);
    if (!optimizer) free(m);
    if (rc == YT_OK && !v2) rc = verify_v1(f, path, a);
    H5Fclose(f);
    return rc;
}

int ckpt_read_arena(const char *path, arena *a, bool optimizer) {
    int rc = dist_rank() == 0 ? read_arena_local(path, a, optimizer) : YT_OK;
    rc = dist_agree(rc);
    if (rc != YT_OK) return rc;
    dist_bcast(a->param, a->total * sizeof(real), 0);
    if (optimizer) {
        dist_bcast(a->adam_m, a->total * sizeof(real), 0);
        dist_bcast(a->adam_v, a->total * sizeof(real), 0);
    }
    return YT_OK;
}

/* ---- verifying a whole file and choosing the one to resume from ------------------------- */

typedef struct {
    const char *path;
    const char *group;
    long version;
    double file_bytes; /* a dataset cannot hold more than the file */
    long count;        /* datasets seen */
    int rc;
} verify_ctx;

/* One dataset of the walk: read as float32, compared with its crc32. */
static int verify_dataset(verify_ctx *c, const char *name, hid_t d) {
    char part[2 * ARENA_NAME_MAX + 64];
    snprintf(part, sizeof part, "%s/%s", c->group, name);
    hid_t sp = H5Dget_space(d);
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0) H5Sclose(sp);
    if (n < 0 || (double)n * 4 > c->file_bytes)
        return yt_fail(YT_ERR_USAGE,
                       "%s: checkpoint is corrupt: dataset '%s' claims %lld values, "
                       "more than the file can hold",
                       c->path, part, (long long)n);
    long stored = -1;
    bool has_crc = h5io_attr_get_long(d, "crc32", &stored) == YT_OK;
    if (!has_crc && c->version >= 2)
        return yt_fail(YT_ERR_USAGE,
                       "%s: checkpoint is corrupt: dataset '%s' lacks its crc32 "
                       "attribute",
                       c->path, part);
    real *buf = yt_malloc((size_t)(n > 0 ? n : 1) * sizeof(real));
    herr_t r = n > 0 ? H5Dread(d, REAL_H5T, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : 0;
    uint32_t got = r >= 0 ? ckpt_crc32(buf, (size_t)n) : 0;
    free(buf);
    if (r < 0)
        return yt_fail(YT_ERR_USAGE, "%s: cannot read dataset '%s' (file truncated?)", c->path,
                       part);
    if (has_crc && (stored < 0 || (unsigned long)stored != got))
        return corrupt(c->path, part, (unsigned long)stored, got);
    c->count++;
    return YT_OK;
}

static herr_t verify_visit(hid_t g, const char *name, const H5L_info_t *li, void *arg) {
    verify_ctx *c = arg;
    if (li->type != H5L_TYPE_HARD) return 0; /* we write none; a soft link reads nothing */
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) {
        c->rc = yt_fail(YT_ERR_USAGE, "%s: cannot open '%s/%s'", c->path, c->group, name);
        return -1;
    }
    if (H5Iget_type(o) == H5I_DATASET) c->rc = verify_dataset(c, name, o);
    H5Oclose(o);
    return c->rc == YT_OK ? 0 : -1;
}

/* Every dataset below group; YT_ERR_USAGE when there is none. */
static int verify_group(hid_t f, verify_ctx *c, const char *group) {
    c->group = group;
    c->count = 0;
    c->rc = YT_OK;
    hid_t g = h5io_exists(f, group) ? H5Gopen2(f, group, H5P_DEFAULT) : -1;
    if (g < 0) return yt_fail(YT_ERR_USAGE, "%s: checkpoint lacks the group /%s", c->path, group);
    herr_t r = H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, verify_visit, c);
    H5Gclose(g);
    if (c->rc != YT_OK) return c->rc;
    if (r < 0) return yt_fail(YT_ERR_USAGE, "%s: cannot list /%s (corrupt?)", c->path, group);
    if (c->count == 0) return yt_fail(YT_ERR_USAGE, "%s: /%s holds no tensor", c->path, group);
    return YT_OK;
}

int ckpt_verify(const char *path) {
    h5io_errors q;
    h5io_errors_off(&q);
    struct stat sb;
    verify_ctx c = {.path = path, .file_bytes = stat(path, &sb) == 0 ? (double)sb.st_size : 0};
    hid_t f;
    ckpt_state st;
    char *yaml = NULL;
    int rc = open_checkpoint(path, &f, &c.version);
    if (rc == YT_OK) {
        rc = read_state(f, path, c.version, &st, &yaml);
        const char *groups[3] = {"params", "optimizer/adam_m", "optimizer/adam_v"};
        for (int i = 0; i < 3 && rc == YT_OK; i++)
            rc = verify_group(f, &c, groups[i]);
        H5Fclose(f);
    }
    free(yaml);
    h5io_errors_restore(&q);
    return rc;
}

/* A growing text (the warning). */
typedef struct {
    char *s;
    size_t len, cap;
} text_buf;

static void tb_add(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_add(text_buf *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = 2 * (t->len + (size_t)n + 1);
        t->s = yt_realloc(t->s, t->cap);
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* Renames dir/name out of the way (name.corrupt, .corrupt.2, ...); the new name in out. */
static int set_aside(const char *dir, const char *name, char *out, size_t size) {
    char from[4200], to[4300];
    snprintf(from, sizeof from, "%s/%s", dir, name);
    for (int k = 1; k < 1000; k++) {
        if (k == 1)
            snprintf(to, sizeof to, "%s.corrupt", from);
        else
            snprintf(to, sizeof to, "%s.corrupt.%d", from, k);
        if (fs_exists(to)) continue;
        snprintf(out, size, "%s", strrchr(to, '/') + 1);
        return fs_rename_durable(from, to);
    }
    return yt_fail(YT_ERR_RUNTIME, "cannot rename %s: too many %s.corrupt* files", from, from);
}

/* Tries dir/name: YT_OK when it verifies; else it is renamed and the reason
 * noted (rc YT_ERR_USAGE), or a rename failed (YT_ERR_RUNTIME). */
static int try_candidate(const char *dir, const char *name, text_buf *why) {
    char path[4200], aside[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (ckpt_verify(path) == YT_OK) return YT_OK;
    char m[YT_ERRMSG_MAX];
    snprintf(m, sizeof m, "%s", yt_errmsg());
    int rc = set_aside(dir, name, aside, sizeof aside);
    if (rc != YT_OK) return rc;
    tb_add(why, "%s%s failed verification (%s) and was renamed to %s", why->len ? "; " : "", name,
           m, aside);
    return YT_ERR_USAGE;
}

/* The newest step-*.h5 before `before` ("" = any) that verifies, into
 * chosen; the others tried are renamed. YT_OK with *found, or a failed rename. */
static int fall_back(const char *dir, const char *before, char *chosen, size_t size, bool *found,
                     text_buf *why, int *tried) {
    int n, rc = YT_OK;
    char **names = fs_list(dir, "step-", ".h5", &n);
    for (int i = n - 1; i >= 0 && !*found && rc != YT_ERR_RUNTIME; i--) {
        if (before[0] && strcmp(names[i], before) >= 0) continue;
        rc = try_candidate(dir, names[i], why);
        ++*tried;
        if (rc == YT_OK) {
            snprintf(chosen, size, "%s", names[i]);
            *found = true;
        }
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc == YT_ERR_RUNTIME ? rc : YT_OK;
}

/* rank 0's part of ckpt_find_resume: the file name into chosen */
static int find_resume_local(const char *run_dir, char *chosen, size_t size, bool *found,
                             text_buf *why) {
    char dir[4096], latest[4200], path[4400], aside[4400];
    snprintf(dir, sizeof dir, "%s/ckpt", run_dir);
    snprintf(latest, sizeof latest, "%s/latest", dir);
    *found = false;
    char *text = fs_read_text(latest);
    if (!text) /* absent: no checkpoint; there but unreadable: an I/O error, not "start afresh" */
        return fs_exists(latest) ? yt_fail(YT_ERR_RUNTIME, "cannot read %s", latest) : YT_OK;
    text[strcspn(text, "\r\n")] = '\0';
    bool named = *text && !strchr(text, '/') && strlen(text) < 200;
    char before[256] = ""; /* fall back to step files older than this ("" = to all) */
    int rc = YT_OK;
    if (!named) {
        tb_add(why, "ckpt/latest does not name a checkpoint file (it holds '%.60s')", text);
    } else {
        snprintf(path, sizeof path, "%s/%s", dir, text);
        if (strncmp(text, "step-", 5) == 0) snprintf(before, sizeof before, "%s", text);
        if (!fs_exists(path)) {
            tb_add(why, "ckpt/latest names %s, which does not exist", text);
        } else if ((rc = try_candidate(dir, text, why)) == YT_OK) {
            snprintf(chosen, size, "%s", text);
            *found = true;
            free(text);
            return YT_OK; /* the usual case: nothing to say */
        }
    }
    free(text);
    int tried = 0;
    if (rc != YT_ERR_RUNTIME) rc = fall_back(dir, before, chosen, size, found, why, &tried);
    if (rc != YT_OK) return rc;
    if (!*found)
        return yt_fail(YT_ERR_USAGE,
                       "%s: no checkpoint to resume from verifies: %s%s. Nothing was deleted: "
                       "restore a good copy, or train afresh in another out_dir",
                       dir, why->s ? why->s : "",
                       tried ? "" : "; there is no older step-*.h5 file");
    if (!named && (rc = set_aside(dir, "latest", aside, sizeof aside)) != YT_OK) return rc;
    char line[300];
    snprintf(line, sizeof line, "%s\n", chosen);
    rc = fs_write_atomic(latest, line);
    if (rc == YT_OK)
        tb_add(why,
               "; resuming from %s, the newest checkpoint that verifies (ckpt/latest now names "
               "it%s%s)",
               chosen, named ? "" : "; the old one was renamed to ", named ? "" : aside);
    return rc;
}

int ckpt_find_resume(const char *run_dir, char *path, size_t size, bool *found, char **warning) {
    *found = false;
    *warning = NULL;
    if (size) path[0] = '\0';
    char latest[4200];
    snprintf(latest, sizeof latest, "%s/ckpt/latest", run_dir);
    /* every rank must take the same branch: resuming is collective */
    long here = fs_exists(latest);
    if (dist_allreduce_min_long(here) != dist_allreduce_max_long(here))
        return dist_agree(yt_fail(YT_ERR_USAGE,
                                  "%s %s on this rank but not on every rank: experiment.out_dir "
                                  "must be a directory that all ranks share",
                                  latest, here ? "exists" : "is missing"));
    char chosen[256] = "";
    text_buf why = {0};
    int rc = YT_OK;
    if (dist_rank() == 0) {
        h5io_errors q;
        h5io_errors_off(&q);
        rc = find_resume_local(run_dir, chosen, sizeof chosen, found, &why);
        h5io_errors_restore(&q);
        if (rc == YT_OK && *found &&
            (size_t)snprintf(path, size, "%s/ckpt/%s", run_dir, chosen) >= size)
            rc = yt_fail(YT_ERR_USAGE, "%s/ckpt/%s: path too long", run_dir, chosen);
    }
    rc = dist_agree(rc);
    if (rc != YT_OK || !dist_allreduce_max_long(*found)) { /* rank 0's answer */
        free(why.s);
        *found = false;
        return rc;
    }
    *found = true;
    dist_bcast(path, size, 0);
    long len = dist_allreduce_max_long(why.len ? (long)why.len + 1 : 0);
    if (len > 0) {
        if (dist_rank() != 0) why.s = yt_malloc((size_t)len);
        dist_bcast(why.s, (size_t)len, 0);
        *warning = why.s;
    }
    return YT_OK;
}
