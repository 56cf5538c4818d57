/* ckpt.c — checkpoint I/O (see ckpt.h). */
#include "ckpt.h"

#include <stdio.h>
#include <string.h>

static void shape_text(int ndim, const hsize_t *dims, char *buf, size_t size) {
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && k < size; d++)
        k += (size_t)snprintf(buf + k, size - k, "%s%llu", d ? ", " : "", (unsigned long long)dims[d]);
    if (k < size) snprintf(buf + k, size - k, "]");
}

/* H5Lexists fails on a missing intermediate group: walk the path. */
static bool path_exists(hid_t file, char *path) {
    for (char *p = strchr(path + 1, '/');; p = strchr(p + 1, '/')) {
        if (p) *p = '\0';
        htri_t e = H5Lexists(file, path, H5P_DEFAULT);
        if (p) *p = '/';
        if (e <= 0) return false;
        if (!p) return true;
    }
}

int ckpt_read_tensors(hid_t file, const char *fname, const char *group, const arena *a, real *dst) {
    char path[2 * ARENA_NAME_MAX];
    for (int i = 0; i < a->n; i++) {
        const arena_tensor *t = &a->t[i];
        snprintf(path, sizeof path, "%s/%s", group, t->name);
        if (!path_exists(file, path))
            return yt_fail(YT_ERR_USAGE, "%s: no dataset '%s' (expected tensor %s)", fname, path,
                           t->name);
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
            shape_text(ndim > 8 ? 8 : ndim, dims, got, sizeof got);
            shape_text(t->ndim, wd, want, sizeof want);
            H5Dclose(ds);
            return yt_fail(YT_ERR_USAGE, "%s: dataset '%s' has shape %s, the model needs %s", fname,
                           path, got, want);
        }
        herr_t rc = H5Dread(ds, REAL_H5T, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst + t->offset);
        H5Dclose(ds);
        if (rc < 0) return yt_fail(YT_ERR_USAGE, "%s: cannot read dataset '%s'", fname, path);
    }
    return YT_OK;
}

int ckpt_write_tensors(hid_t file, const char *fname, const char *group, const arena *a,
                       const real *src) {
    char path[2 * ARENA_NAME_MAX];
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    int rc = YT_OK;
    for (int i = 0; i < a->n && rc == YT_OK; i++) {
        const arena_tensor *t = &a->t[i];
        snprintf(path, sizeof path, "%s/%s", group, t->name);
        hsize_t dims[ARENA_NDIM_MAX];
        for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
        hid_t sp = H5Screate_simple(t->ndim, dims, NULL);
        hid_t ds = H5Dcreate2(file, path, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        if (ds < 0 || H5Dwrite(ds, REAL_H5T, H5S_ALL, H5S_ALL, H5P_DEFAULT, src + t->offset) < 0)
            rc = yt_fail(YT_ERR_RUNTIME, "%s: cannot write dataset '%s'", fname, path);
        if (ds >= 0) H5Dclose(ds);
        H5Sclose(sp);
    }
    H5Pclose(lcpl);
    return rc;
}
