/* prepare.c — IDX / CIFAR-10 / procedural Shapes3D converters and data-info
 * (see prepare.h; the file layout is in docs/DATA.md). */
#include "prepare.h"

#include <errno.h>
#include <hdf5.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "fsutil.h"
#include "h5io.h"
#include "rng.h"

#define PATH_MAX_ 1024

prepare_options prepare_options_default(void) {
    return (prepare_options){.contiguous = false, .deflate = -1, .seed = 0};
}

/* ---- IDX ------------------------------------------------------------------------ */

int prepare_read_idx(const char *path, int want_ndim, prepare_idx_array *a) {
    memset(a, 0, sizeof *a);
    gzFile g = gzopen(path, "rb");
    if (!g)
        return yt_fail(YT_ERR_USAGE, "%s: cannot open: %s", path, strerror(errno ? errno : ENOENT));
    gzbuffer(g, 1 << 17);
    int rc = YT_OK;
    uint8_t hdr[4 + 4 * 4];
    int k = gzread(g, hdr, 4);
    if (k != 4) {
        rc = yt_fail(YT_ERR_USAGE, "%s: truncated IDX file: %d of 4 header bytes", path,
                     YT_MAX(k, 0));
        goto done;
    }
    if (hdr[0] != 0 || hdr[1] != 0 || hdr[3] < 1 || hdr[3] > 4) {
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: not an IDX file (magic %02x %02x %02x %02x; expected 00 00 08 0%d)", path,
                     hdr[0], hdr[1], hdr[2], hdr[3], want_ndim);
        goto done;
    }
    if (hdr[2] != 0x08) {
        rc = yt_fail(YT_ERR_USAGE, "%s: IDX element type 0x%02x, expected 0x08 (unsigned byte)",
                     path, hdr[2]);
        goto done;
    }
    if (hdr[3] != want_ndim) {
        rc = yt_fail(YT_ERR_USAGE, "%s: IDX file of %d dimensions, expected %d", path, hdr[3],
                     want_ndim);
        goto done;
    }
    a->ndim = want_ndim;
    k = gzread(g, hdr + 4, (unsigned)(4 * want_ndim));
    if (k != 4 * want_ndim) {
        rc = yt_fail(YT_ERR_USAGE, "%s: truncated IDX file: the header ends early", path);
        goto done;
    }
    size_t n = 1;
    char shape[96];
    size_t sl = (size_t)snprintf(shape, sizeof shape, "[");
    for (int i = 0; i < want_ndim; i++) {
        const uint8_t *b = hdr + 4 + 4 * i;
        a->dims[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        n *= a->dims[i];
        sl += (size_t)snprintf(shape + sl, sizeof shape - sl, "%s%u", i ? ", " : "", a->dims[i]);
        if (a->dims[i] == 0 || n > ((size_t)1 << 36)) {
            rc = yt_fail(YT_ERR_USAGE, "%s: IDX dimension %d is %u: empty or too large", path, i,
                         a->dims[i]);
            goto done;
        }
    }
    snprintf(shape + sl, sizeof shape - sl, "]");
    a->nbytes = n;
    /* the buffer grows with the data that is there: a header that claims
     * 60 GB over a few bytes of file is a truncation error, not a 60 GB malloc */
    size_t got = 0, cap = YT_MIN(n, (size_t)1 << 20);
    a->data = yt_malloc(cap);
    while (got < n) {
        if (got == cap) {
            cap = YT_MIN(n, 2 * cap);
            a->data = yt_realloc(a->data, cap);
        }
        unsigned want = (unsigned)YT_MIN(cap - got, (size_t)1 << 30);
        k = gzread(g, a->data + got, want);
        if (k <= 0) break;
        got += (size_t)k;
    }
    if (got < n) {
        int zerr = Z_OK;
        const char *zmsg = gzerror(g, &zerr);
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: truncated IDX file: %s needs %zu bytes of data, found %zu%s%s", path,
                     shape, n, got, zerr != Z_OK ? "; zlib: " : "", zerr != Z_OK ? zmsg : "");
    }
done:
    gzclose(g);
    if (rc != YT_OK) {
        free(a->data);
        a->data = NULL;
    }
    return rc;
}

/* ---- CIFAR-10 ------------------------------------------------------------------------ */

#define CIFAR_REC 3073

int prepare_read_cifar(const char *path, uint8_t **images, uint8_t **labels, long *n) {
    *images = *labels = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return yt_fail(YT_ERR_USAGE, "%s: cannot open: %s", path, strerror(errno));
    int rc = YT_OK;
    uint8_t *raw = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        rc = yt_fail(YT_ERR_USAGE, "%s: cannot determine the file size", path);
        goto done;
    }
    if (size == 0 || size % CIFAR_REC != 0) {
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: truncated or not a CIFAR-10 binary batch: %ld bytes is not a positive "
                     "whole number of %d-byte records (1 label byte + 3072 pixel bytes)",
                     path, size, CIFAR_REC);
        goto done;
    }
    long recs = size / CIFAR_REC;
    raw = yt_malloc((size_t)size);
    if (fread(raw, 1, (size_t)size, f) != (size_t)size) {
        rc = yt_fail(YT_ERR_USAGE, "%s: read error: %s", path, strerror(errno));
        goto done;
    }
    uint8_t *im = yt_malloc((size_t)recs * 3072), *lb = yt_malloc((size_t)recs);
    for (long r = 0; r < recs; r++) {
        const uint8_t *src = raw + (size_t)r * CIFAR_REC;
        if (src[0] > 9) {
            free(im);
            free(lb);
            rc =
                yt_fail(YT_ERR_USAGE,
                        "%s: record %ld has label %d, expected 0..9 (not a CIFAR-10 binary batch?)",
                        path, r, src[0]);
            goto done;
        }
        lb[r] = src[0];
        /* the record holds R, G, B planes of 32x32 (CHW); we store HWC */
        uint8_t *dst = im + (size_t)r * 3072;
        for (int ch = 0; ch < 3; ch++)
            for (int p = 0; p < 1024; p++)
                dst[p * 3 + ch] = src[1 + ch * 1024 + p];
    }
    *images = im;
    *labels = lb;
    *n = recs;
done:
    free(raw);
    fclose(f);
    return rc;
}

/* ---- writing ----------------------------------------------------------------------------- */

typedef struct {
    hid_t f;
    char out[PATH_MAX_];
    char tmp[PATH_MAX_ + 32];
} writer;

static int w_open(writer *w, const char *out) {
    w->f = -1;
    snprintf(w->out, sizeof w->out, "%s", out);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%d", out, (int)getpid());
    char dir[PATH_MAX_];
    snprintf(dir, sizeof dir, "%s", out);
    const char *dn = dirname(dir);
    /* a missing directory is created (`prepare ... data/x.h5` in a fresh clone) */
    if (!fs_is_dir(dn) && fs_mkdir_p(dn) != YT_OK) {
        char m[YT_ERRMSG_MAX];
        snprintf(m, sizeof m, "%s", yt_errmsg());
        return yt_fail(YT_ERR_USAGE, "%s: cannot create its directory: %s", out, m);
    }
    if (access(dn, W_OK) != 0)
        return yt_fail(YT_ERR_USAGE, "%s: cannot write into directory '%s': %s", out, dn,
                       strerror(errno));
    w->f = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->f < 0) return yt_fail(YT_ERR_USAGE, "%s: cannot create '%s'", out, w->tmp);
    return YT_OK;
}

/* Closes; publishes under the real name only if everything went well. */
static int w_close(writer *w, int rc) {
    if (w->f >= 0 && H5Fclose(w->f) < 0 && rc == YT_OK)
        rc = yt_fail(YT_ERR_RUNTIME, "%s: closing failed (disk full?)", w->tmp);
    w->f = -1;
    if (rc == YT_OK && rename(w->tmp, w->out) != 0)
        rc = yt_fail(YT_ERR_RUNTIME, "%s: cannot rename %s: %s", w->out, w->tmp, strerror(errno));
    if (rc != YT_OK) unlink(w->tmp);
    return rc;
}

static int attr_str(hid_t obj, const char *name, const char *value, const char *file) {
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR), a = -1;
    int rc = YT_OK;
    if (t < 0 || s < 0 || H5Tset_size(t, strlen(value) + 1) < 0 ||
        H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        (a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(a, t, value) < 0)
        rc = yt_fail(YT_ERR_RUNTIME, "%s: writing attribute '%s' failed", file, name);
    if (a >= 0) H5Aclose(a);
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    return rc;
}

static int attr_int(hid_t obj, const char *name, int value, const char *file) {
    hid_t s = H5Screate(H5S_SCALAR), a = -1;
    int rc = YT_OK;
    if (s < 0 || (a = H5Acreate2(obj, name, H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(a, H5T_NATIVE_INT, &value) < 0)
        rc = yt_fail(YT_ERR_RUNTIME, "%s: writing attribute '%s' failed", file, name);
    if (a >= 0) H5Aclose(a);
    if (s >= 0) H5Sclose(s);
    return rc;
}

static int root_attrs(writer *w, const char *source) {
    char by[128];
    snprintf(by, sizeof by, "yoto %s (git %s)", yt_version(), yt_git_commit());
    int rc = attr_str(w->f, "format", "yoto-dataset", w->out);
    if (rc == YT_OK) rc = attr_int(w->f, "format_version", 1, w->out);
    if (rc == YT_OK) rc = attr_str(w->f, "source", source, w->out);
    if (rc == YT_OK) rc = attr_str(w->f, "created_by", by, w->out);
    return rc;
}

/* Creates dataset `path` (groups made on the way) of type t and shape dims;
 * images (ndim 4, uint8) are chunked+deflated or contiguous per o, other
 * data is chunked+deflated when large. */
static hid_t w_create(writer *w, const char *path, hid_t t, int ndim, const hsize_t *dims,
                      const prepare_options *o) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE), s = -1, d = -1;
    if (lcpl < 0 || dcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0) goto done;
    size_t row = H5Tget_size(t);
    for (int i = 1; i < ndim; i++)
        row *= dims[i];
    bool images = ndim == 4;
    if (!(images && o->contiguous) && dims[0] * row > (64u << 10)) {
        int level = o->deflate < 0 ? 4 : o->deflate;
        hsize_t chunk[4];
        for (int i = 0; i < ndim; i++)
            chunk[i] = dims[i];
        /* about 256 KiB of rows per chunk: the reader's shuffle window */
        chunk[0] = (hsize_t)YT_MAX(1L, YT_MIN((long)dims[0], DATA_WINDOW_BYTES / (long)row));
        if (H5Pset_chunk(dcpl, ndim, chunk) < 0) goto done;
        if (level > 0 && H5Pset_deflate(dcpl, (unsigned)level) < 0) goto done;
    }
    s = H5Screate_simple(ndim, dims, NULL);
    if (s < 0) goto done;
    d = H5Dcreate2(w->f, path, t, s, lcpl, dcpl, H5P_DEFAULT);
done:
    if (d < 0) yt_fail(YT_ERR_RUNTIME, "%s: creating dataset '%s' failed", w->out, path);
    if (s >= 0) H5Sclose(s);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (dcpl >= 0) H5Pclose(dcpl);
    return d;
}

/* Rows [first, first + count) of dataset d from buf. */
static int w_rows(writer *w, hid_t d, const char *path, hid_t memtype, long first, long count,
                  const void *buf) {
    hid_t fs = H5Dget_space(d), ms = -1;
    int rc = YT_OK, nd = fs >= 0 ? H5Sget_simple_extent_ndims(fs) : -1;
    hsize_t dims[4], st[4] = {0}, ct[4];
    if (nd < 1 || nd > 4 || H5Sget_simple_extent_dims(fs, dims, NULL) < 0) goto fail;
    for (int i = 0; i < nd; i++)
        ct[i] = dims[i];
    st[0] = (hsize_t)first;
    ct[0] = (hsize_t)count;
    if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, ct, NULL) < 0) goto fail;
    if ((ms = H5Screate_simple(nd, ct, NULL)) < 0) goto fail;
    if (H5Dwrite(d, memtype, ms, fs, H5P_DEFAULT, buf) < 0) goto fail;
    goto done;
fail:
    rc = yt_fail(YT_ERR_RUNTIME, "%s: writing dataset '%s' failed (disk full?)", w->out, path);
done:
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

/* One whole dataset from memory. */
static int w_dataset(writer *w, const char *path, hid_t ftype, hid_t mtype, int ndim,
                     const hsize_t *dims, const void *buf, const prepare_options *o,
                     const char *attr, const char *attr_value) {
    hid_t d = w_create(w, path, ftype, ndim, dims, o);
    if (d < 0) return YT_ERR_RUNTIME;
    int rc = w_rows(w, d, path, mtype, 0, (long)dims[0], buf);
    if (rc == YT_OK && attr) rc = attr_str(d, attr, attr_value, w->out);
    H5Dclose(d);
    return rc;
}

/* ---- fashion-mnist / mnist ---------------------------------------------------------------- */

static const char *FASHION_CLASSES =
    "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot";
static const char *DIGIT_CLASSES = "0,1,2,3,4,5,6,7,8,9";
static const char *CIFAR_CLASSES = "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck";

/* DIR/NAME.gz, else DIR/NAME. */
static int find_idx(const char *dir, const char *name, char *path, size_t size, const char *kind) {
    static const char *suffix[] = {".gz", ""};
    for (int i = 0; i < 2; i++) {
        snprintf(path, size, "%s/%s%s", dir, name, suffix[i]);
        if (access(path, R_OK) == 0) return YT_OK;
    }
    return yt_fail(YT_ERR_USAGE,
                   "%s: no %s(.gz) (expected the %s IDX files train-images-idx3-ubyte, "
                   "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, "
                   "each gzipped or not)",
                   dir, name, kind);
}

int prepare_idx(const char *kind, const char *dir, const char *out, const prepare_options *o) {
    bool fashion = strcmp(kind, "fashion-mnist") == 0;
    if (!fashion && strcmp(kind, "mnist") != 0)
        return yt_fail(YT_ERR_USAGE, "unknown IDX data set '%s' (fashion-mnist or mnist)", kind);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return yt_fail(YT_ERR_USAGE, "%s: not a directory (expected the %s IDX files there)", dir,
                       kind);
    static const char *split[2] = {"train", "test"}, *stem[2] = {"train", "t10k"};
    prepare_idx_array img[2] = {{0}}, lab[2] = {{0}};
    int rc = YT_OK;
    for (int s = 0; s < 2 && rc == YT_OK; s++) {
        char name[64], path[PATH_MAX_];
        snprintf(name, sizeof name, "%s-images-idx3-ubyte", stem[s]);
        rc = find_idx(dir, name, path, sizeof path, kind);
        if (rc == YT_OK) rc = prepare_read_idx(path, 3, &img[s]);
        if (rc != YT_OK) break;
        snprintf(name, sizeof name, "%s-labels-idx1-ubyte", stem[s]);
        rc = find_idx(dir, name, path, sizeof path, kind);
        if (rc == YT_OK) rc = prepare_read_idx(path, 1, &lab[s]);
        if (rc != YT_OK) break;
        if (lab[s].dims[0] != img[s].dims[0])
            rc = yt_fail(YT_ERR_USAGE, "%s: %u labels for %u images in the %s files", dir,
                         lab[s].dims[0], img[s].dims[0], stem[s]);
        for (size_t i = 0; rc == YT_OK && i < lab[s].nbytes; i++)
            if (lab[s].data[i] > 9)
                rc = yt_fail(YT_ERR_USAGE, "%s: %s label %zu is %d, expected 0..9", path, stem[s],
                             i, lab[s].data[i]);
    }
    writer w = {.f = -1};
    if (rc == YT_OK) rc = w_open(&w, out);
    if (rc == YT_OK) rc = root_attrs(&w, kind);
    for (int s = 0; s < 2 && rc == YT_OK; s++) {
        char path[64];
        hsize_t di[4] = {img[s].dims[0], img[s].dims[1], img[s].dims[2], 1};
        snprintf(path, sizeof path, "%s/images", split[s]);
        rc = w_dataset(&w, path, H5T_STD_U8LE, H5T_NATIVE_UINT8, 4, di, img[s].data, o, NULL, NULL);
        snprintf(path, sizeof path, "%s/labels", split[s]);
        hsize_t dl[1] = {lab[s].dims[0]};
        if (rc == YT_OK)
            rc = w_dataset(&w, path, H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, dl, lab[s].data, o,
                           "class_names", fashion ? FASHION_CLASSES : DIGIT_CLASSES);
    }
    if (w.f >= 0) rc = w_close(&w, rc);
    for (int s = 0; s < 2; s++) {
        free(img[s].data);
        free(lab[s].data);
    }
    return rc;
}

/* ---- cifar10 ------------------------------------------------------------------------------- */

int prepare_cifar10(const char *dir, const char *out, const prepare_options *o) {
    char base[PATH_MAX_], path[PATH_MAX_ + 64];
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return yt_fail(YT_ERR_USAGE, "%s: not a directory (expected CIFAR-10 binary batches)", dir);
    /* the tarball unpacks into cifar-10-batches-bin/ */
    snprintf(base, sizeof base, "%s/cifar-10-batches-bin", dir);
    snprintf(path, sizeof path, "%s/data_batch_1.bin", base);
    if (access(path, R_OK) != 0) snprintf(base, sizeof base, "%s", dir);
    static const char *names[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                   "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    uint8_t *im[6] = {0}, *lb[6] = {0};
    long n[6] = {0}, ntrain = 0;
    int rc = YT_OK;
    for (int i = 0; i < 6 && rc == YT_OK; i++) {
        snprintf(path, sizeof path, "%s/%s", base, names[i]);
        if (access(path, R_OK) != 0) {
            rc = yt_fail(YT_ERR_USAGE,
                         "%s: no %s (expected the CIFAR-10 binary batches data_batch_1..5.bin and "
                         "test_batch.bin)",
                         base, names[i]);
            break;
        }
        rc = prepare_read_cifar(path, &im[i], &lb[i], &n[i]);
        if (i < 5) ntrain += n[i];
    }
    writer w = {.f = -1};
    if (rc == YT_OK) rc = w_open(&w, out);
    if (rc == YT_OK) rc = root_attrs(&w, "cifar10");
    if (rc == YT_OK) { /* train: the five batches in order */
        hsize_t di[4] = {(hsize_t)ntrain, 32, 32, 3}, dl[1] = {(hsize_t)ntrain};
        hid_t di_ = w_create(&w, "train/images", H5T_STD_U8LE, 4, di, o);
        hid_t dl_ = di_ >= 0 ? w_create(&w, "train/labels", H5T_STD_U8LE, 1, dl, o) : -1;
        if (di_ < 0 || dl_ < 0) rc = YT_ERR_RUNTIME;
        long first = 0;
        for (int i = 0; i < 5 && rc == YT_OK; i++) {
            rc = w_rows(&w, di_, "train/images", H5T_NATIVE_UINT8, first, n[i], im[i]);
            if (rc == YT_OK)
                rc = w_rows(&w, dl_, "train/labels", H5T_NATIVE_UINT8, first, n[i], lb[i]);
            first += n[i];
        }
        if (rc == YT_OK) rc = attr_str(dl_, "class_names", CIFAR_CLASSES, w.out);
        if (di_ >= 0) H5Dclose(di_);
        if (dl_ >= 0) H5Dclose(dl_);
    }
    if (rc == YT_OK) {
        hsize_t di[4] = {(hsize_t)n[5], 32, 32, 3}, dl[1] = {(hsize_t)n[5]};
        rc = w_dataset(&w, "test/images", H5T_STD_U8LE, H5T_NATIVE_UINT8, 4, di, im[5], o, NULL,
                       NULL);
        if (rc == YT_OK)
            rc = w_dataset(&w, "test/labels", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, dl, lb[5], o,
                           "class_names", CIFAR_CLASSES);
    }
    if (w.f >= 0) rc = w_close(&w, rc);
    for (int i = 0; i < 6; i++) {
        free(im[i]);
        free(lb[i]);
    }
    return rc;
}

/* ---- shapes ---------------------------------------------------------------------------------- */

static double linspace(double a, double b, int num, int i) {
    return a + (double)i * ((b - a) / (double)(num - 1));
}

void prepare_shapes_factors(long i, double f[6]) {
    static const int size[6] = {10, 10, 10, 8, 4, 15};
    int idx[6];
    for (int k = 5; k >= 0; k--) { /* the last factor varies fastest */
        idx[k] = (int)(i % size[k]);
        i /= size[k];
    }
    f[0] = linspace(0, 0.9, 10, idx[0]);
    f[1] = linspace(0, 0.9, 10, idx[1]);
    f[2] = linspace(0, 0.9, 10, idx[2]);
    f[3] = linspace(0.75, 1.25, 8, idx[3]);
    f[4] = idx[4];
    f[5] = linspace(-30, 30, 15, idx[5]);
}

static void hsv_rgb(double h, double s, double v, double rgb[3]) {
    h = (h - floor(h)) * 6.0;
    int i = (int)h % 6;
    double fr = h - floor(h), p = v * (1 - s), q = v * (1 - s * fr), t = v * (1 - s * (1 - fr));
    double r[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
    for (int k = 0; k < 3; k++)
        rgb[k] = r[i][k];
}

/* Shade of the object at pixel centre (px, py), or -1 outside it. */
static double object_shade(int shape, double s, double th, double px, double py) {
    const double cx = 32.0, base = 53.0;
    double dx = px - cx;
    switch (shape) {
    case 0: { /* cube of half-size s turned by th about the vertical: two faces */
        if (py < base - 2 * s || py > base) return -1;
        double c = cos(th), sn = sin(th), xmin = 1e9, xmax = -1e9, xf = 0, zf = -1e9;
        for (int a = -1; a <= 1; a += 2)
            for (int b = -1; b <= 1; b += 2) {
                double x = s * (a * c - b * sn), z = s * (a * sn + b * c);
                xmin = fmin(xmin, x);
                xmax = fmax(xmax, x);
                if (z > zf + 1e-9) zf = z, xf = x;
            }
        if (dx < xmin || dx > xmax) return -1;
        return dx < xf ? 0.62 : 0.92;
    }
    case 1: { /* cylinder: horizontal cosine shading */
        double r = 0.95 * s;
        if (py < base - 2 * s || py > base || fabs(dx) > r) return -1;
        return 0.45 + 0.5 * sqrt(1 - (dx / r) * (dx / r)) - 0.1 * dx / r;
    }
    case 2: { /* sphere resting on the floor, lit from the front left */
        double r = s, dy = py - (base - r), d2 = (dx * dx + dy * dy) / (r * r);
        if (d2 > 1) return -1;
        double nz = sqrt(1 - d2), l = (-0.45 * dx / r - 0.5 * dy / r + 0.74 * nz);
        return 0.35 + 0.62 * fmax(0.0, l);
    }
    default: { /* capsule: an upright pill */
        double r = 0.62 * s, top = base - 2.4 * s + r, bot = base - r;
        double cy = fmin(fmax(py, top), bot), dy = py - cy;
        if (dx * dx + dy * dy > r * r) return -1;
        return 0.45 + 0.5 * sqrt(fmax(0.0, 1 - (dx / r) * (dx / r))) - 0.1 * dx / r;
    }
    }
}

void prepare_shapes_render(const double f[6], uint8_t *img) {
    const int S = SHAPES_SIZE, hz = 36; /* horizon: wall above, floor below */
    double floor_c[3], wall_c[3], obj_c[3];
    hsv_rgb(f[0], 0.8, 1.0, floor_c);
    hsv_rgb(f[1], 0.8, 1.0, wall_c);
    hsv_rgb(f[2], 0.9, 1.0, obj_c);
    const double s = 9.0 * f[3], th = f[5] * M_PI / 180.0;
    const int shape = (int)lround(f[4]);
    /* the camera turns with the orientation: the room's corner moves */
    const double corner = 32.0 + f[5] / 30.0 * 22.0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            double px = x + 0.5, py = y + 0.5, v;
            const double *col;
            if (y < hz) {
                col = wall_c;
                v = (px < corner ? 0.78 : 0.95) - 0.12 * (hz - py) / hz;
            } else {
                col = floor_c;
                v = 0.68 + 0.3 * (py - hz) / (S - hz);
                double ex = (px - 32.0) / (1.35 * s), ey = (py - 53.0) / (0.35 * s);
                if (ex * ex + ey * ey < 1) v *= 0.72; /* shadow */
            }
            double o = object_shade(shape, s, th, px, py);
            if (o >= 0) {
                col = obj_c;
                v = o;
            }
            uint8_t *p = img + ((size_t)y * S + x) * 3;
            for (int k = 0; k < 3; k++) {
                double q = 255.0 * col[k] * v;
                p[k] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : lround(q));
            }
        }
}

int prepare_shapes(long n, const char *out, const prepare_options *o) {
    if (n < 1 || n > SHAPES_N)
        return yt_fail(YT_ERR_USAGE, "shapes: SIZE must be 1..%ld (the factor grid), got %ld",
                       SHAPES_N, n);
    /* n < 480000: n distinct grid rows drawn with the seed, kept in grid
     * order like the real file (which is sorted by its factors) */
    uint64_t *pick = yt_malloc((size_t)SHAPES_N * sizeof(uint64_t));
    if (n < SHAPES_N) {
        rng_stream rs = rng_stream_make(o->seed, RNG_SYNTHETIC, 3, 0, 0);
        rng_permutation(&rs, pick, (uint64_t)SHAPES_N);
        /* mark the first n of the permutation, then read them in order */
        uint8_t *take = yt_calloc((size_t)SHAPES_N, 1);
        for (long i = 0; i < n; i++)
            take[pick[i]] = 1;
        long k = 0;
        for (long i = 0; i < SHAPES_N; i++)
            if (take[i]) pick[k++] = (uint64_t)i;
        free(take);
    } else {
        for (long i = 0; i < SHAPES_N; i++)
            pick[i] = (uint64_t)i;
    }
    /* like 3dshapes.h5: images contiguous and uncompressed unless a deflate
     * level is asked for (the streaming reader pread()s contiguous data) */
    prepare_options so = *o;
    if (so.deflate < 0) so.contiguous = true;
    o = &so;
    writer w = {.f = -1};
    int rc = w_open(&w, out);
    if (rc == YT_OK) rc = root_attrs(&w, "shapes (procedural Shapes3D stand-in)");
    hsize_t di[4] = {(hsize_t)n, SHAPES_SIZE, SHAPES_SIZE, 3}, dl[2] = {(hsize_t)n, 6};
    hid_t dimg = rc == YT_OK ? w_create(&w, "images", H5T_STD_U8LE, 4, di, o) : -1;
    hid_t dlab = dimg >= 0 ? w_create(&w, "labels", H5T_IEEE_F64LE, 2, dl, o) : -1;
    if (rc == YT_OK && (dimg < 0 || dlab < 0)) rc = YT_ERR_RUNTIME;
    if (rc == YT_OK)
        rc = attr_str(dlab, "factor_names", "floor_hue,wall_hue,object_hue,scale,shape,orientation",
                      w.out);
    const long block = 512;
    uint8_t *img = yt_malloc((size_t)block * SHAPES_SIZE * SHAPES_SIZE * 3);
    double *lab = yt_malloc((size_t)block * 6 * sizeof(double));
    for (long first = 0; first < n && rc == YT_OK; first += block) {
        long cnt = YT_MIN(block, n - first);
        for (long i = 0; i < cnt; i++) {
            prepare_shapes_factors((long)pick[first + i], lab + i * 6);
            prepare_shapes_render(lab + i * 6, img + (size_t)i * SHAPES_SIZE * SHAPES_SIZE * 3);
        }
        rc = w_rows(&w, dimg, "images", H5T_NATIVE_UINT8, first, cnt, img);
        if (rc == YT_OK) rc = w_rows(&w, dlab, "labels", H5T_NATIVE_DOUBLE, first, cnt, lab);
    }
    free(img);
    free(lab);
    free(pick);
    if (dimg >= 0) H5Dclose(dimg);
    if (dlab >= 0) H5Dclose(dlab);
    if (w.f >= 0) rc = w_close(&w, rc);
    return rc;
}

/* ---- data-info ------------------------------------------------------------------------------- */

typedef struct {
    FILE *out;
    const char *file;
    bool json; /* one JSON object instead of the text */
    hid_t f;
    int n_images, n_bad, n_attrs, n_items;
    char good[1024];         /* "train/images (60000 rows of 28x28x1), test/images (10000 ...)" */
    char bad[YT_ERRMSG_MAX]; /* first unusable uint8 dataset's reason */
    FILE *images;            /* json: the usable image datasets' objects (memory stream) */
    char *images_text;
    size_t images_len;
    int depth;
} info_ctx;

/* s as a JSON string */
static void json_str(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void json_dims(FILE *out, int n, const hsize_t *d) {
    fputc('[', out);
    for (int i = 0; i < n; i++)
        fprintf(out, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
    fputc(']', out);
}

/* What data-info says about one dataset's storage. */
typedef struct {
    char type[32]; /* "uint8", "float64", ... */
    int ndim;      /* -1: unknown */
    hsize_t dims[H5S_MAX_RANK];
    const char *layout; /* "contiguous", "chunked", "compact", "virtual" */
    int chunk_ndim;     /* chunked: > 0 */
    hsize_t chunk[H5S_MAX_RANK];
    int nfilters;
    char filters[8][32]; /* "deflate", ... */
} ds_desc;

static void ds_describe(hid_t d, ds_desc *o) {
    memset(o, 0, sizeof *o);
    snprintf(o->type, sizeof o->type, "?");
    o->layout = "?";
    hid_t t = H5Dget_type(d), s = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    if (t >= 0) h5io_type_text(t, o->type, sizeof o->type);
    o->ndim = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    if (o->ndim > H5S_MAX_RANK || (o->ndim > 0 && H5Sget_simple_extent_dims(s, o->dims, NULL) < 0))
        o->ndim = -1;
    if (dcpl >= 0) {
        H5D_layout_t l = H5Pget_layout(dcpl);
        o->layout = l == H5D_CHUNKED      ? "chunked"
                    : l == H5D_CONTIGUOUS ? "contiguous"
                    : l == H5D_VIRTUAL    ? "virtual"
                                          : "compact";
        if (l == H5D_CHUNKED) o->chunk_ndim = H5Pget_chunk(dcpl, H5S_MAX_RANK, o->chunk);
        int nf = H5Pget_nfilters(dcpl);
        for (int i = 0; i < nf && o->nfilters < 8; i++) {
            unsigned flags, cdv[8];
            size_t ncd = 8;
            char *name = o->filters[o->nfilters++];
            H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cdv, sizeof o->filters[0], name, NULL);
            if (!name[0]) snprintf(name, sizeof o->filters[0], "filter");
        }
        H5Pclose(dcpl);
    }
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
}

static void info_dataset_text(info_ctx *c, const char *path, const ds_desc *o, const char *note,
                              const char *why) {
    char sh[128] = "[]", lay[400], chunk[128];
    if (o->ndim >= 0) h5io_dims_text(o->ndim, o->dims, sh, sizeof sh);
    size_t u;
    if (o->chunk_ndim > 0) {
        h5io_dims_text(o->chunk_ndim, o->chunk, chunk, sizeof chunk);
        u = (size_t)snprintf(lay, sizeof lay, "chunked %s", chunk);
    } else {
        u = (size_t)snprintf(lay, sizeof lay, "%s", o->layout);
    }
    for (int i = 0; i < o->nfilters && u < sizeof lay; i++)
        u += (size_t)snprintf(lay + u, sizeof lay - u, ", %s", o->filters[i]);
    fprintf(c->out, "  /%-22s %-8s %-22s %-34s %s\n", path, o->type, sh, lay, note);
    if (why[0]) fprintf(c->out, "      %s\n", why);
}

/* {"path", "type", "shape", "layout", "chunks", "filters", "kind", "usable", "error"} */
static void info_dataset_json(info_ctx *c, const char *path, const ds_desc *o, const char *kind,
                              bool usable, const char *why) {
    FILE *out = c->out;
    fprintf(out, "%s\n    {\"path\": ", c->n_items++ ? "," : "");
    json_str(out, path);
    fprintf(out, ", \"type\": ");
    json_str(out, o->type);
    fprintf(out, ", \"shape\": ");
    if (o->ndim >= 0)
        json_dims(out, o->ndim, o->dims);
    else
        fprintf(out, "null");
    fprintf(out, ", \"layout\": \"%s\", \"chunks\": ", o->layout);
    if (o->chunk_ndim > 0)
        json_dims(out, o->chunk_ndim, o->chunk);
    else
        fprintf(out, "null");
    fprintf(out, ", \"filters\": [");
    for (int i = 0; i < o->nfilters; i++) {
        if (i) fprintf(out, ", ");
        json_str(out, o->filters[i]);
    }
    fprintf(out, "], \"kind\": \"%s\"", kind);
    if (strcmp(kind, "images") == 0) {
        fprintf(out, ", \"usable\": %s", usable ? "true" : "false");
        if (!usable) {
            fprintf(out, ", \"error\": ");
            json_str(out, why);
        }
    }
    fprintf(out, "}");
}

/* A usable image dataset: for the text's summary line and the JSON's list. */
static void info_add_image(info_ctx *c, const char *path, const data_image_info *ii) {
    size_t u = strlen(c->good);
    snprintf(c->good + u, sizeof c->good - u, "%s%s (%ld rows of %dx%dx%d)", u ? ", " : "", path,
             ii->n, ii->h, ii->w, ii->c);
    if (c->images) {
        fprintf(c->images, "%s\n    {\"path\": ", c->n_images ? "," : "");
        json_str(c->images, path);
        fprintf(c->images, ", \"rows\": %ld, \"height\": %d, \"width\": %d, \"channels\": %d}",
                ii->n, ii->h, ii->w, ii->c);
    }
    c->n_images++;
}

static void info_dataset(info_ctx *c, const char *path, hid_t d) {
    ds_desc o;
    ds_describe(d, &o);
    const char *kind = "other", *note = "";
    char why[YT_ERRMSG_MAX] = "";
    bool usable = false;
    if (o.ndim == 3 || o.ndim == 4) {
        data_image_info ii;
        kind = "images";
        usable = data_probe(c->file, path, &ii) == YT_OK;
        if (usable) {
            note = "images: ok";
            info_add_image(c, path, &ii);
        } else {
            note = "images: UNUSABLE";
            snprintf(why, sizeof why, "%s", yt_errmsg());
            if (!c->n_bad++) snprintf(c->bad, sizeof c->bad, "%s", why);
        }
    } else if (o.ndim >= 1 && o.ndim <= 2) {
        kind = "per-row";
        note = "per-row data (labels?)";
    }
    if (c->json)
        info_dataset_json(c, path, &o, kind, usable, why);
    else
        info_dataset_text(c, path, &o, note, why);
}

static herr_t info_visit(hid_t g, const char *name, const H5L_info_t *li, void *arg);

static void info_group(info_ctx *c, const char *path) {
    hid_t g = H5Gopen2(c->f, path[0] ? path : "/", H5P_DEFAULT);
    if (g < 0) return;
    char prefix[PATH_MAX_];
    snprintf(prefix, sizeof prefix, "%s", path);
    struct {
        info_ctx *c;
        const char *prefix;
    } a = {c, prefix};
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, info_visit, &a);
    H5Gclose(g);
}

static herr_t info_visit(hid_t g, const char *name, const H5L_info_t *li, void *arg) {
    (void)g;
    struct {
        info_ctx *c;
        const char *prefix;
    } *a = arg;
    info_ctx *c = a->c;
    char path[PATH_MAX_];
    snprintf(path, sizeof path, "%s%s%s", a->prefix, a->prefix[0] ? "/" : "", name);
    if (li->type != H5L_TYPE_HARD) {
        if (c->json) {
            fprintf(c->out, "%s\n    {\"path\": ", c->n_items++ ? "," : "");
            json_str(c->out, path);
            fprintf(c->out, ", \"kind\": \"link\"}");
        } else {
            fprintf(c->out, "  /%-22s (link)\n", path);
        }
        return 0;
    }
    hid_t o = H5Oopen(c->f, path, H5P_DEFAULT);
    if (o < 0) return 0;
    H5I_type_t t = H5Iget_type(o);
    if (t == H5I_DATASET) {
        info_dataset(c, path, o);
    } else if (t == H5I_GROUP && c->depth < 8) {
        c->depth++;
        info_group(c, path);
        c->depth--;
    }
    H5Oclose(o);
    return 0;
}

/* Root attributes: strings and integers (what yoto's files hold). */
static herr_t info_attr(hid_t loc, const char *name, const H5A_info_t *ai, void *arg) {
    (void)ai;
    info_ctx *c = arg;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = a >= 0 ? H5Aget_type(a) : -1;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t)) {
        size_t n = H5Tget_size(t);
        char *v = yt_calloc(n + 1, 1);
        if (H5Aread(a, t, v) >= 0) {
            if (c->json) {
                fprintf(c->out, "%s\n    ", c->n_attrs++ ? "," : "");
                json_str(c->out, name);
                fprintf(c->out, ": ");
                json_str(c->out, v);
            } else {
                fprintf(c->out, "  @%s = \"%s\"\n", name, v);
            }
        }
        free(v);
    } else if (t >= 0 && H5Tget_class(t) == H5T_INTEGER) {
        long long v = 0;
        if (H5Aread(a, H5T_NATIVE_LLONG, &v) >= 0) {
            if (c->json) {
                fprintf(c->out, "%s\n    ", c->n_attrs++ ? "," : "");
                json_str(c->out, name);
                fprintf(c->out, ": %lld", v);
            } else {
                fprintf(c->out, "  @%s = %lld\n", name, v);
            }
        }
    }
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return 0;
}

/* The file's attributes and datasets, as text or as one JSON object; rc is
 * YT_ERR_USAGE (message set) when no image dataset is usable. */
static int info_body(info_ctx *c, long bytes) {
    if (c->json) {
        fprintf(c->out, "{\n  \"file\": ");
        json_str(c->out, c->file);
        fprintf(c->out, ",\n  \"bytes\": %ld,\n  \"attributes\": {", bytes);
    } else {
        fprintf(c->out, "%s: %.1f MB\n", c->file, (double)bytes / 1e6);
    }
    H5Aiterate2(c->f, H5_INDEX_NAME, H5_ITER_INC, NULL, info_attr, c);
    if (c->json) fprintf(c->out, "%s},\n  \"datasets\": [", c->n_attrs ? "\n  " : "");
    info_group(c, "");
    int rc = YT_OK;
    if (c->n_images == 0)
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: no usable image dataset (expected uint8 images [N, H, W, C] such as "
                     "'images' or 'train/images')%s%s",
                     c->file, c->n_bad ? "; " : "", c->bad);
    if (!c->json) {
        if (rc == YT_OK)
            fprintf(c->out, "image datasets (usable as data.splits[].dataset): %s\n", c->good);
        return rc;
    }
    fclose(c->images);
    c->images = NULL;
    fprintf(c->out, "%s],\n  \"image_datasets\": [%s%s],\n  \"error\": ", c->n_items ? "\n  " : "",
            c->images_text, c->n_images ? "\n  " : "");
    if (rc == YT_OK)
        fprintf(c->out, "null");
    else
        json_str(c->out, yt_errmsg());
    fprintf(c->out, "\n}\n");
    return rc;
}

static int info_run(const char *file, bool json, FILE *out) {
    h5io_errors q;
    h5io_errors_off(&q);
    int rc = YT_OK;
    struct stat st;
    info_ctx c = {.out = out, .file = file, .json = json, .f = -1};
    if (stat(file, &st) != 0) {
        rc = yt_fail(YT_ERR_USAGE, "%s: cannot open data file: %s", file, strerror(errno));
        goto done;
    }
    if (S_ISDIR(st.st_mode) || H5Fis_hdf5(file) <= 0) {
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: not an HDF5 file (expected an HDF5 data file with uint8 images "
                     "[N, H, W, C], e.g. made by 'yoto prepare')",
                     file);
        goto done;
    }
    c.f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (c.f < 0) {
        rc = yt_fail(YT_ERR_USAGE, "%s: cannot open as HDF5", file);
        goto done;
    }
    if (json) {
        c.images = open_memstream(&c.images_text, &c.images_len);
        if (!c.images) yt_die("open_memstream failed");
    }
    rc = info_body(&c, (long)st.st_size);
done:
    if (c.images) fclose(c.images);
    free(c.images_text);
    if (c.f >= 0) H5Fclose(c.f);
    h5io_errors_restore(&q);
    return rc;
}

int prepare_info(const char *file, FILE *out) {
    return info_run(file, false, out);
}

int prepare_info_json(const char *file, FILE *out) {
    return info_run(file, true, out);
}
