/* ckpt.c — checkpoints (see ckpt.h and docs/FORMATS.md). */
#include "ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"
#include "fsutil.h"
#include "h5io.h"

/* ---- tensor tables ----------------------------------------------------------------- */

int ckpt_read_tensors(hid_t file, const char *fname, const char *group, const arena *a, real *dst) {
    char path[2 * ARENA_NAME_MAX];
    for (int i = 0; i < a->n; i++) {
        const arena_tensor *t = &a->t[i];
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
        for (int d = 0; same && d < ndim; d++) same = dims[d] == (hsize_t)t->shape[d];
        H5Sclose(sp);
        if (!same) {
            char got[128], want[128];
            hsize_t wd[ARENA_NDIM_MAX];
            for (int d = 0; d < t->ndim; d++) wd[d] = (hsize_t)t->shape[d];
            h5io_dims_text(ndim > 8 ? 8 : ndim, dims, got, sizeof got);
            h5io_dims_text(t->ndim, wd, want, sizeof want);
            H5Dclose(ds);
            return yt_fail(YT_ERR_USAGE,
                           "%s: dataset '%s' has shape %s, the model needs %s (a checkpoint of "
                           "another model shape)",
                           fname, path, got, want);
        }
        herr_t rc = H5Dread(ds, REAL_H5T, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst + t->offset);
        H5Dclose(ds);
        if (rc < 0)
            return yt_fail(YT_ERR_USAGE, "%s: cannot read dataset '%s' (file truncated?)", fname,
                           path);
    }
    return YT_OK;
}

int ckpt_write_tensors(hid_t file, const char *fname, const char *group, const arena *a,
                       const real *src) {
    char path[2 * ARENA_NAME_MAX];
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t dxpl = h5io_dxpl();
    int rc = YT_OK;
    for (int i = 0; i < a->n && rc == YT_OK; i++) {
        const arena_tensor *t = &a->t[i];
        snprintf(path, sizeof path, "%s/%s", group, t->name);
        hsize_t dims[ARENA_NDIM_MAX];
        for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
        hid_t fs = H5Screate_simple(t->ndim, dims, NULL);
        hid_t ds = H5Dcreate2(file, path, H5T_IEEE_F32LE, fs, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        /* replicas are identical: rank 0 writes, the others take part with
         * an empty selection (a collective transfer) */
        if (dist_rank() != 0) H5Sselect_none(fs);
        hid_t ms = H5Scopy(fs);
        if (ds < 0 || H5Dwrite(ds, REAL_H5T, ms, fs, dxpl, src + t->offset) < 0)
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

uint64_t ckpt_param_checksum(const arena *a) {
    const unsigned char *p = (const unsigned char *)a->param;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < a->total * sizeof(real); i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- writing ------------------------------------------------------------------------ */

static int write_file(const char *tmp, const arena *a, const ckpt_state *st,
                      const char *config_yaml, uint64_t checksum) {
    hid_t fapl = h5io_fapl(true);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) return yt_fail(YT_ERR_RUNTIME, "cannot create checkpoint %s", tmp);
    char created[64];
    time_t now = time(NULL);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
    char sum[32];
    snprintf(sum, sizeof sum, "%016llx", (unsigned long long)checksum);
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
    rc |= h5io_write_string(f, "config", config_yaml);
    if (rc == YT_OK) rc = ckpt_write_tensors(f, tmp, "params", a, a->param);
    if (rc == YT_OK) rc = ckpt_write_tensors(f, tmp, "optimizer/adam_m", a, a->adam_m);
    if (rc == YT_OK) rc = ckpt_write_tensors(f, tmp, "optimizer/adam_v", a, a->adam_v);
    if (rc == YT_OK) {
        hid_t g = H5Gopen2(f, "optimizer", H5P_DEFAULT);
        rc |= h5io_attr_set_long(g, "adam_step", st->step);
        H5Gclose(g);
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
        if (rc != YT_OK) rc = yt_fail(YT_ERR_RUNTIME, "cannot write checkpoint metadata to %s", tmp);
    }
    if (H5Fclose(f) < 0 && rc == YT_OK)
        rc = yt_fail(YT_ERR_RUNTIME, "cannot close checkpoint %s", tmp);
    return rc;
}

/* Keeps `keep` step-*.h5 files in dir: `current` (the one ckpt/latest names)
 * and the newest keep - 1 before it. Files after it (renamed by a run that
 * failed before updating ckpt/latest) are left alone: pruning by name alone
 * would delete `current` itself. Names sort by step (fixed width). */
static void prune(const char *dir, const char *current, long keep) {
    int n, older = 0;
    char **names = fs_list(dir, "step-", ".h5", &n);
    while (older < n && strcmp(names[older], current) < 0) older++;
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
    char dir[4096], tmp[4200], final[4200], latest[4200], name[64];
    snprintf(dir, sizeof dir, "%s/ckpt", run_dir);
    snprintf(name, sizeof name, "step-%09ld.h5", st->step);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    snprintf(final, sizeof final, "%s/%s", dir, name);
    snprintf(latest, sizeof latest, "%s/latest", dir);
    int rc = h5io_check_mpiio_path(tmp, "checkpoint"); /* the same on every rank */
    if (rc != YT_OK) return rc;
    rc = dist_rank() == 0 ? fs_mkdir_p(dir) : YT_OK;
    rc = dist_agree(rc);
    if (rc != YT_OK) return rc;
    rc = dist_agree(write_file(tmp, a, st, config_yaml, sum));
    if (rc != YT_OK) {
        if (dist_rank() == 0) unlink(tmp);
        return rc;
    }
    if (dist_rank() == 0) {
        char line[80];
        snprintf(line, sizeof line, "%s\n", name);
        rc = fs_rename_durable(tmp, final);
        if (rc == YT_OK) rc = fs_write_atomic(latest, line);
        if (rc == YT_OK && keep > 0) prune(dir, name, keep);
    }
    return dist_agree(rc);
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

/* rank 0's part of ckpt_read_header */
static int read_header_local(const char *path, ckpt_state *st, char **config_yaml) {
    *config_yaml = NULL;
    if (!fs_exists(path)) return yt_fail(YT_ERR_USAGE, "%s: no such checkpoint file", path);
    if (H5Fis_hdf5(path) <= 0)
        return yt_fail(YT_ERR_USAGE, "%s: not an HDF5 file (truncated, or not a checkpoint)", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return yt_fail(YT_ERR_USAGE, "%s: cannot open as HDF5 (truncated?)", path);
    int rc = YT_OK;
    char *format = h5io_attr_get_string(f, "format");
    long version = 0, step, epoch, sie, world, seed = 0;
    if (!format || strcmp(format, CKPT_FORMAT) != 0) {
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: not a yoto checkpoint (root attribute format is %s%s%s, expected '%s')",
                     path, format ? "'" : "", format ? format : "missing", format ? "'" : "",
                     CKPT_FORMAT);
    } else if (h5io_attr_get_long(f, "format_version", &version) != YT_OK || version < 1) {
        rc = yt_fail(YT_ERR_USAGE, "%s: checkpoint lacks a valid root attribute format_version",
                     path);
    } else if (version > CKPT_FORMAT_VERSION) {
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: checkpoint format version %ld is newer than this yoto understands (%d); "
                     "use a newer yoto",
                     path, version, CKPT_FORMAT_VERSION);
    } else if (h5io_attr_get_long(f, "step", &step) || h5io_attr_get_long(f, "epoch", &epoch) ||
               h5io_attr_get_long(f, "step_in_epoch", &sie) ||
               h5io_attr_get_long(f, "world_size", &world)) {
        rc = yt_fail(YT_ERR_USAGE, "%s: checkpoint lacks step/epoch/world_size attributes", path);
    } else if (step < 0 || epoch < 0 || sie < 0 || world < 1) {
        /* resume indexes the data order with them (a broken check, exit 1, otherwise) */
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: checkpoint attributes out of range: step %ld, epoch %ld, "
                     "step_in_epoch %ld, world_size %ld",
                     path, step, epoch, sie, world);
    } else {
        hid_t r = h5io_exists(f, "rng") ? H5Gopen2(f, "rng", H5P_DEFAULT) : -1;
        if (r < 0 || h5io_attr_get_long(r, "seed", &seed) != YT_OK)
            rc = yt_fail(YT_ERR_USAGE, "%s: checkpoint lacks /rng seed", path);
        if (r >= 0) H5Gclose(r);
        *config_yaml = h5io_read_string(f, "config");
        if (rc == YT_OK && !*config_yaml)
            rc = yt_fail(YT_ERR_USAGE, "%s: checkpoint lacks /config", path);
        st->step = step;
        st->epoch = epoch;
        st->step_in_epoch = sie;
        st->world_size = world;
        st->seed = (uint64_t)seed;
    }
    free(format);
    H5Fclose(f);
    return rc;
}

int ckpt_read_header(const char *path, ckpt_state *st, char **config_yaml) {
    memset(st, 0, sizeof *st);
    int rc = dist_rank() == 0 ? read_header_local(path, st, config_yaml) : YT_OK;
    rc = dist_agree(rc);
    if (rc != YT_OK) {
        if (dist_rank() == 0) free(*config_yaml);
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

int ckpt_read_arena(const char *path, arena *a, bool optimizer) {
    int rc = YT_OK;
    if (dist_rank() == 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f < 0) {
            rc = yt_fail(YT_ERR_USAGE, "%s: cannot open as HDF5 (truncated?)", path);
        } else {
            rc = ckpt_read_tensors(f, path, "params", a, a->param);
            if (rc == YT_OK && optimizer) rc = ckpt_read_tensors(f, path, "optimizer/adam_m", a, a->adam_m);
            if (rc == YT_OK && optimizer) rc = ckpt_read_tensors(f, path, "optimizer/adam_v", a, a->adam_v);
            H5Fclose(f);
        }
    }
    rc = dist_agree(rc);
    if (rc != YT_OK) return rc;
    dist_bcast(a->param, a->total * sizeof(real), 0);
    if (optimizer) {
        dist_bcast(a->adam_m, a->total * sizeof(real), 0);
        dist_bcast(a->adam_v, a->total * sizeof(real), 0);
    }
    return YT_OK;
}
