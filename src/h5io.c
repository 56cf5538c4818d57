/* h5io.c — HDF5 helpers (see h5io.h). */
#include "h5io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "dist.h"

void h5io_quiet(void) {
    /* No HDF5 clean-up at exit: it would run after MPI_Finalize, and it
     * crashes (SIGSEGV) on a file whose H5Fclose failed (a checkpoint write
     * on a full disk: HDF5 1.10 keeps a half-destroyed file ID). Every file
     * yoto opens is closed by yoto. Effective when called first, as main does. */
    H5dont_atexit();
    const char *dbg = getenv("YOTO_HDF5_DEBUG");
    if (!(dbg && *dbg && *dbg != '0')) H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5io_errors_off(h5io_errors *q) {
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5io_errors_restore(const h5io_errors *q) { H5Eset_auto2(H5E_DEFAULT, q->fn, q->data); }

hid_t h5io_fapl(bool parallel) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && parallel && dist_active() && !dist_h5_fapl_mpio(fapl)) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}

hid_t h5io_dxpl(void) {
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (dist_active()) H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    return dxpl;
}

int h5io_check_mpiio_path(const char *path, const char *what) {
    size_t n = strlen(path);
    if (!dist_active() || n <= H5IO_MPIIO_PATH_MAX) return YT_OK;
    return yt_fail(YT_ERR_USAGE,
                   "%s %s is %zu characters long; files opened through MPI-IO must have paths "
                   "of at most %d (Open MPI aborts on longer ones): use a shorter or relative "
                   "path, or a symbolic link",
                   what, path, n, H5IO_MPIIO_PATH_MAX);
}

static int attr_set(hid_t obj, const char *name, hid_t type, const void *v) {
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, type, v) >= 0 ? YT_OK : YT_ERR_RUNTIME;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

int h5io_attr_set_long(hid_t obj, const char *name, long v) {
    return attr_set(obj, name, H5T_NATIVE_LONG, &v);
}

static hid_t vlen_utf8(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

int h5io_attr_set_string(hid_t obj, const char *name, const char *v) {
    hid_t t = vlen_utf8();
    int rc = attr_set(obj, name, t, &v);
    H5Tclose(t);
    return rc;
}

static int attr_get(hid_t obj, const char *name, hid_t type, void *v) {
    if (H5Aexists(obj, name) <= 0) return YT_ERR_USAGE;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return YT_ERR_USAGE;
    hid_t sp = H5Aget_space(a);
    bool scalar = H5Sget_simple_extent_npoints(sp) == 1;
    H5Sclose(sp);
    int rc = scalar && H5Aread(a, type, v) >= 0 ? YT_OK : YT_ERR_USAGE;
    H5Aclose(a);
    return rc;
}

int h5io_attr_get_long(hid_t obj, const char *name, long *v) {
    return attr_get(obj, name, H5T_NATIVE_LONG, v);
}

/* reads a string from an attribute or dataset whose type is t */
static char *read_string(hid_t t, int (*rd)(hid_t obj, hid_t type, void *buf), hid_t obj) {
    if (H5Tget_class(t) != H5T_STRING) return NULL;
    char *out = NULL;
    if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (rd(obj, mt, &s) >= 0 && s) out = yt_strdup(s);
        if (s) H5free_memory(s);
        H5Tclose(mt);
    } else {
        /* the size comes from the file: a damaged one may claim gigabytes */
        size_t n = H5Tget_size(t);
        if (n == 0 || n > H5IO_STRING_MAX) return NULL;
        char *buf = yt_calloc(n + 1, 1);
        hid_t mt = H5Tcopy(t);
        if (rd(obj, mt, buf) >= 0) out = buf;
        else free(buf);
        H5Tclose(mt);
    }
    return out;
}

static int rd_attr(hid_t a, hid_t type, void *buf) { return H5Aread(a, type, buf); }
static int rd_dset(hid_t d, hid_t type, void *buf) {
    return H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
}

char *h5io_attr_get_string(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t t = H5Aget_type(a);
    char *s = read_string(t, rd_attr, a);
    H5Tclose(t);
    H5Aclose(a);
    return s;
}

int h5io_write_string(hid_t loc, const char *name, const char *text) {
    /* fixed length: parallel HDF5 cannot write variable-length data */
    size_t len = strlen(text);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len > 0 ? len : 1);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t d = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = YT_ERR_RUNTIME;
    if (d >= 0) {
        /* rank 0 writes, the others take part with an empty selection */
        hid_t fs = H5Dget_space(d);
        if (dist_rank() != 0) H5Sselect_none(fs);
        hid_t ms = H5Scopy(fs);
        hid_t dxpl = h5io_dxpl();
        rc = H5Dwrite(d, t, ms, fs, dxpl, len > 0 ? text : "") >= 0 ? YT_OK : YT_ERR_RUNTIME;
        H5Pclose(dxpl);
        H5Sclose(ms);
        H5Sclose(fs);
        H5Dclose(d);
    }
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

char *h5io_read_string(hid_t loc, const char *name) {
    if (!h5io_exists(loc, name)) return NULL;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t t = H5Dget_type(d);
    /* a fixed-length string must be stored whole (the type's size is not
     * checked against the file by HDF5 before it reads) */
    bool whole = H5Tis_variable_str(t) > 0 || H5Dget_storage_size(d) >= H5Tget_size(t);
    char *s = whole ? read_string(t, rd_dset, d) : NULL;
    H5Tclose(t);
    H5Dclose(d);
    return s;
}

bool h5io_exists(hid_t loc, const char *path) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return false;
    char *start = buf[0] == '/' ? buf + 1 : buf;
    for (char *p = strchr(start, '/');; p = strchr(p + 1, '/')) {
        if (p) *p = '\0';
        htri_t e = H5Lexists(loc, buf, H5P_DEFAULT);
        if (p) *p = '/';
        if (e <= 0) return false;
        if (!p) return true;
    }
}

void h5io_type_text(hid_t t, char *buf, size_t n) {
    size_t sz = H5Tget_size(t);
    switch (H5Tget_class(t)) {
    case H5T_INTEGER:
        snprintf(buf, n, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", sz * 8);
        break;
    case H5T_FLOAT: snprintf(buf, n, "float%zu", sz * 8); break;
    case H5T_STRING: snprintf(buf, n, "string"); break;
    case H5T_COMPOUND: snprintf(buf, n, "compound"); break;
    case H5T_ENUM: snprintf(buf, n, "enum"); break;
    case H5T_ARRAY: snprintf(buf, n, "array"); break;
    default: snprintf(buf, n, "HDF5 type class %d", (int)H5Tget_class(t)); break;
    }
}

void h5io_dims_text(int nd, const hsize_t *dims, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%llu", i ? ", " : "",
                                 (unsigned long long)dims[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}
