/* data.c — sharded, shuffled, cached-or-streaming reading of HDF5 images
 * (see data.h for the semantics, docs/DATA.md for the long form). */
#include "data.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"
#include "h5io.h"
#include "preprocess.h"
#include "rng.h"

/* ---- sharding math ------------------------------------------------------------ */

void data_shard(long n, int rank, int world, long *begin, long *end) {
    YT_CHECK(world >= 1 && rank >= 0 && rank < world && n >= 0);
    long base = n / world, rem = n % world;
    *begin = rank * base + YT_MIN((long)rank, rem);
    *end = *begin + base + (rank < rem ? 1 : 0);
}

long data_steps_per_epoch(long n, int world, long batch) {
    YT_CHECK(world >= 1 && batch >= 1 && n >= 0);
    return (n / world) / batch;
}

data_tuning data_tuning_default(void) {
    return (data_tuning){
        .cache_bytes = -1, .block_bytes = 0, .window_rows = 0, .readahead = 1, .piece_bytes = 0};
}

/* ---- looking at a file ------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t size, used;
    int count;
} name_list;

static herr_t add_name(hid_t g, const char *name, const H5L_info_t *info, void *ctx) {
    (void)g;
    (void)info;
    name_list *l = ctx;
    if (l->count < 0) return 0; /* already cut short */
    if (l->used + strlen(name) + 12 < l->size) {
        l->used += (size_t)snprintf(l->buf + l->used, l->size - l->used, "%s'%s'",
                                    l->count ? ", " : "", name);
        l->count++;
    } else {
        l->used += (size_t)snprintf(l->buf + l->used, l->size - l->used, ", ...");
        l->count = -1;
    }
    return 0;
}

/* "'images', 'labels'" — what group `where` holds, for messages. */
static void list_members(hid_t f, const char *where, char *buf, size_t size) {
    name_list l = {buf, size, 0, 0};
    buf[0] = '\0';
    hid_t g = H5Gopen2(f, where, H5P_DEFAULT);
    if (g < 0) {
        snprintf(buf, size, "nothing (it is not a group)");
        return;
    }
    H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, add_name, &l);
    H5Gclose(g);
    if (!buf[0]) snprintf(buf, size, "nothing");
}

/* Opens dataset `path` of file f, with a message saying which part is missing. */
static int open_dataset(hid_t f, const char *file, const char *path, hid_t *out) {
    *out = -1;
    char p[CFG_PATH_MAX], members[512];
    if (!path[0]) return yt_fail(YT_ERR_USAGE, "%s: empty dataset path", file);
    snprintf(p, sizeof p, "%s", path);
    /* walk the components so that the message names the first missing one */
    for (char *s = p + (p[0] == '/');;) {
        char *slash = strchr(s, '/');
        if (slash) *slash = '\0';
        htri_t ok = H5Lexists(f, p, H5P_DEFAULT);
        if (ok <= 0) {
            char parent[CFG_PATH_MAX];
            snprintf(parent, sizeof parent, "%s", p);
            char *cut = strrchr(parent, '/');
            if (cut && cut != parent)
                *cut = '\0';
            else
                snprintf(parent, sizeof parent, "/");
            list_members(f, parent, members, sizeof members);
            return yt_fail(YT_ERR_USAGE, "%s: no dataset '%s' (there is no '%s'; '%s' holds %s)",
                           file, path, p, parent, members);
        }
        if (!slash) break;
        *slash = '/';
        s = slash + 1;
    }
    hid_t o = H5Oopen(f, path, H5P_DEFAULT);
    if (o < 0) return yt_fail(YT_ERR_USAGE, "%s: cannot open '%s'", file, path);
    if (H5Iget_type(o) != H5I_DATASET) {
        list_members(f, path, members, sizeof members);
        H5Oclose(o);
        return yt_fail(YT_ERR_USAGE, "%s: '%s' is a group, not a dataset of images (it holds %s)",
                       file, path, members);
    }
    *out = o;
    return YT_OK;
}

static int check_images(hid_t dset, const char *file, const char *path, data_image_info *info) {
    memset(info, 0, sizeof *info);
    hid_t t = H5Dget_type(dset), s = H5Dget_space(dset);
    int rc = YT_OK;
    if (t < 0 || s < 0) {
        rc = yt_fail(YT_ERR_USAGE, "%s: dataset '%s': cannot read its type and shape", file, path);
        goto done;
    }
    hsize_t dims[H5S_MAX_RANK] = {0};
    int nd = H5Sget_simple_extent_ndims(s);
    if (nd < 0 || H5Sget_simple_extent_dims(s, dims, NULL) < 0) {
        rc = yt_fail(YT_ERR_USAGE, "%s: dataset '%s': not a simple dataspace", file, path);
        goto done;
    }
    char ty[48], sh[160];
    h5io_type_text(t, ty, sizeof ty);
    h5io_dims_text(nd, dims, sh, sizeof sh);
    bool u8 =
        H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 1 && H5Tget_sign(t) == H5T_SGN_NONE;
    if (!u8 || (nd != 3 && nd != 4)) {
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: dataset '%s' is not image data: expected uint8 images [N, H, W, C] "
                     "(or [N, H, W]), found %s %s%s",
                     file, path, ty, sh, nd <= 2 ? " (labels or other per-row data?)" : "");
        goto done;
    }
    if (dims[0] == 0) {
        rc = yt_fail(YT_ERR_USAGE, "%s: dataset '%s' has zero rows (shape %s)", file, path, sh);
        goto done;
    }
    hsize_t c = nd == 4 ? dims[3] : 1, pix = dims[1] * dims[2] * c;
    if (dims[1] == 0 || dims[2] == 0 || c == 0 || pix > (1u << 28) || dims[0] > (1ull << 40)) {
        rc = yt_fail(YT_ERR_USAGE,
                     "%s: dataset '%s': image shape %s is empty or too large (expected "
                     "[N, H, W, C] with H, W, C >= 1)",
                     file, path, sh);
        goto done;
    }
    info->n = (long)dims[0];
    info->ndim = nd;
    info->h = (int)dims[1];
    info->w = (int)dims[2];
    info->c = (int)c;
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl >= 0) {
        H5D_layout_t lay = H5Pget_layout(dcpl);
        info->contiguous = lay == H5D_CONTIGUOUS && H5Pget_external_count(dcpl) == 0;
        info->chunked = lay == H5D_CHUNKED;
        info->nfilters = H5Pget_nfilters(dcpl);
        if (info->chunked) {
            hsize_t cd[H5S_MAX_RANK];
            if (H5Pget_chunk(dcpl, H5S_MAX_RANK, cd) > 0) info->chunk_rows = (long)cd[0];
        }
        H5Pclose(dcpl);
    }
done:
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    return rc;
}

/* Serial checks before a collective open: a file that is missing or not
 * HDF5 fails the same way on every rank, and nobody enters MPI-IO with it. */
static int check_file(const char *file) {
    struct stat st;
    if (!file[0])
        return yt_fail(YT_ERR_USAGE, "no data file named (set data.file or the split's file)");
    if (stat(file, &st) != 0)
        return yt_fail(YT_ERR_USAGE, "%s: cannot open data file: %s", file, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return yt_fail(YT_ERR_USAGE, "%s: is a directory, expected an HDF5 data file", file);
    if (H5Fis_hdf5(file) <= 0)
        return yt_fail(YT_ERR_USAGE,
                       "%s: not an HDF5 file (expected an HDF5 data file with uint8 images "
                       "[N, H, W, C], e.g. made by 'yoto prepare')",
                       file);
    return YT_OK;
}

int data_probe(const char *file, const char *dataset, data_image_info *info) {
    h5io_errors q;
    h5io_errors_off(&q);
    memset(info, 0, sizeof *info);
    int rc = check_file(file);
    hid_t f = -1, d = -1;
    if (rc == YT_OK) {
        f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f < 0) rc = yt_fail(YT_ERR_USAGE, "%s: cannot open as HDF5", file);
    }
    if (rc == YT_OK) rc = open_dataset(f, file, dataset, &d);
    if (rc == YT_OK) rc = check_images(d, file, dataset, info);
    if (d >= 0) H5Oclose(d);
    if (f >= 0) H5Fclose(f);
    h5io_errors_restore(&q);
    return rc;
}

/* ---- the source ------------------------------------------------------------------------ */

typedef struct {
    long epoch; /* -1: empty */
    long ngroups;
    uint32_t *wperm; /* [nwin] window order of the epoch (train) */
    long *gstart;    /* [ngroups + 1] first epoch position of each group */
    unsigned long stamp;
} epoch_plan;

typedef struct {
    off_t off;
    size_t len;
    uint8_t *dst;
} read_range;

typedef struct {
    long epoch, g; /* which group it holds; epoch -1: none */
    long nrows;
    int64_t *rowid;  /* [cap] dataset rows, in file order */
    uint64_t *order; /* [cap] position in group -> index into rowid/pix (train) */
    uint8_t *pix;    /* streaming: [cap][row_bytes], in file order */
    read_range *ranges;
    int nranges;
    int pending; /* a reader-thread job is queued or running (under mu) */
    int err;     /* errno of a failed read, 0 = fine */
} group_buf;

struct data_source {
    data_desc desc;
    preprocess_plan plan;
    size_t row_bytes;
    long shard_rows;
    long positions; /* per epoch: train steps * batch; eval: shard rows */
    long nwin;
    long cap_rows;  /* rows a group can hold */
    uint32_t *wtmp; /* [G] a group's windows, sorted */
    uint64_t *ptmp; /* [nwin] permutation scratch */
    hid_t fid, did;
    bool mpio;
    uint8_t *cache; /* cached: [shard_rows][row_bytes] */
    group_buf grp[2];
    int cur;
    epoch_plan plans[2];
    unsigned long stamp;
    /* reader thread (streaming of contiguous data) */
    int fd;
    haddr_t data_off;
    bool thread_up, quit;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    group_buf *job;
    double wait_s; /* time spent reading or waiting for reads */
};

static const cfg_split *find_split(const yoto_config *cfg, const char *name) {
    for (int i = 0; i < cfg->data.n_splits && i < CFG_SPLITS_MAX; i++)
        if (strcmp(cfg->data.splits[i].name, name) == 0) return &cfg->data.splits[i];
    return NULL;
}

/* ---- where an input came from, for messages ------------------------------------------- */

/* "KEY, set at FILE:LINE:COL" or "KEY, set by --set KEY=VALUE"; for a key left
 * at its default, the nearest enclosing key that was set ("data.splits[1]",
 * or "data.splits" replaced by --set), else "KEY (its default)". */
static void key_origin(const yoto_config *cfg, const char *key, char *buf, size_t size) {
    char k[CFG_NAME_MAX];
    snprintf(k, sizeof k, "%s", key);
    for (;;) {
        const char *w = config_where(cfg, k);
        size_t n = strlen(w);
        if (n < 9 || strcmp(w + n - 9, "(default)") != 0) {
            const char *how = strncmp(w, "--set ", 6) == 0 ? "set by" : "set at";
            if (strcmp(k, key) == 0)
                snprintf(buf, size, "%s, %s %s", key, how, w);
            else
                snprintf(buf, size, "%s (its default; %s %s %s)", key, k, how, w);
            return;
        }
        char *dot = strrchr(k, '.'), *br = strrchr(k, '[');
        char *cut = dot > br ? dot : br;
        if (!cut || cut == k) break;
        *cut = '\0';
    }
    snprintf(buf, size, "%s (its default)", key);
}

/* Appends to the failure message in yt_errmsg() where the data file of split
 * sp was named (data.file or data.splits[i].file) and, for a relative path,
 * that it is read from the working directory; rc is returned. */
static int fail_file_origin(int rc, const yoto_config *cfg, const cfg_split *sp, const char *file) {
    char key[64], origin[CFG_PATH_MAX + 320], cwd[1024] = "?", m[YT_ERRMSG_MAX];
    if (sp->file[0])
        snprintf(key, sizeof key, "data.splits[%d].file", (int)(sp - cfg->data.splits));
    else
        snprintf(key, sizeof key, "data.file");
    key_origin(cfg, key, origin, sizeof origin);
    snprintf(m, sizeof m, "%s", yt_errmsg());
    if (file[0] == '/') return yt_fail(rc, "%s (%s)", m, origin);
    if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, "?");
    return yt_fail(rc, "%s (%s; a relative path is read from the working directory, %s)", m, origin,
                   cwd);
}

/* The same for a dataset path inside the file (data.splits[i].dataset). */
static int fail_dataset_origin(int rc, const yoto_config *cfg, const cfg_split *sp) {
    char key[64], origin[CFG_PATH_MAX + 320], m[YT_ERRMSG_MAX];
    snprintf(key, sizeof key, "data.splits[%d].dataset", (int)(sp - cfg->data.splits));
    key_origin(cfg, key, origin, sizeof origin);
    snprintf(m, sizeof m, "%s", yt_errmsg());
    return yt_fail(rc, "%s (%s)", m, origin);
}

static int pread_all(int fd, uint8_t *dst, size_t len, off_t off) {
    while (len > 0) {
        ssize_t k = pread(fd, dst, len, off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return errno ? errno : EIO;
        if (k == 0) return EIO; /* the file is shorter than HDF5 says */
        dst += k;
        off += k;
        len -= (size_t)k;
    }
    return 0;
}

static int run_ranges(int fd, const group_buf *g) {
    for (int i = 0; i < g->nranges; i++) {
        int e = pread_all(fd, g->ranges[i].dst, g->ranges[i].len, g->ranges[i].off);
        if (e) return e;
    }
    return 0;
}

/* The reader thread: pread()s jobs, nothing else (Debian's HDF5 is not
 * thread-safe, and only the main thread calls MPI: MPI_THREAD_FUNNELED). */
static void *reader_main(void *arg) {
    data_source *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->job && !d->quit)
            pthread_cond_wait(&d->cv, &d->mu);
        if (d->quit) break;
        group_buf *g = d->job;
        pthread_mutex_unlock(&d->mu);
        int err = run_ranges(d->fd, g);
        pthread_mutex_lock(&d->mu);
        g->err = err;
        g->pending = 0;
        d->job = NULL;
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static void wait_idle(data_source *d, group_buf *g) {
    if (!d->thread_up) return;
    pthread_mutex_lock(&d->mu);
    while (g->pending)
        pthread_cond_wait(&d->cv, &d->mu);
    pthread_mutex_unlock(&d->mu);
}

/* Rows [start, start + count) of the dataset into dst (file order), one
 * H5Dread per range: a memory space of the same shape as the file selection
 * keeps HDF5 on its fast path (a 1-d memory space made reads 10x slower).
 * collective: every rank calls it, with n <= 1 (n = 0 or a
 * zero count takes part with an empty selection). */
static int read_rows_h5(data_source *d, int n, const long *start, const long *count, uint8_t *dst,
                        bool collective) {
    const data_desc *dd = &d->desc;
    hid_t fs = H5Dget_space(d->did), xfer = H5Pcreate(H5P_DATASET_XFER);
    int rc = YT_OK, nd = fs >= 0 ? H5Sget_simple_extent_ndims(fs) : -1;
    long total = 0;
    if (fs < 0 || xfer < 0 || (nd != 3 && nd != 4)) goto fail;
    if (d->mpio &&
        H5Pset_dxpl_mpio(xfer, collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT) < 0)
        goto fail;
    for (int i = 0; i < (n ? n : 1); i++) {
        long cnt = n ? count[i] : 0;
        if (cnt == 0 && !collective) continue;
        hsize_t st[4] = {(hsize_t)(n ? start[i] : 0), 0, 0, 0};
        hsize_t ct[4] = {(hsize_t)YT_MAX(cnt, 1L), (hsize_t)dd->h, (hsize_t)dd->w, (hsize_t)dd->c};
        hid_t ms = H5Screate_simple(nd, ct, NULL);
        herr_t e = ms < 0 ? -1 : 0;
        if (e >= 0 && cnt > 0) e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, ct, NULL);
        if (e >= 0 && cnt == 0) e = H5Sselect_none(fs) < 0 || H5Sselect_none(ms) < 0 ? -1 : 0;
        if (e >= 0) e = H5Dread(d->did, H5T_NATIVE_UINT8, ms, fs, xfer, dst + total * d->row_bytes);
        if (ms >= 0) H5Sclose(ms);
        if (e < 0) goto fail;
        total += cnt;
    }
    goto done;
fail:
    rc = yt_fail(YT_ERR_RUNTIME, "%s: dataset '%s': reading rows failed", dd->file, dd->dataset);
done:
    if (fs >= 0) H5Sclose(fs);
    if (xfer >= 0) H5Pclose(xfer);
    return rc;
}

/* ---- order: windows, groups, epochs ------------------------------------------------- */

static long window_len(const data_source *d, long w) {
    long W = d->desc.window_rows;
    return w < d->nwin - 1 ? W : d->shard_rows - (d->nwin - 1) * W;
}

static epoch_plan *get_plan(data_source *d, long epoch) {
    if (!d->desc.train) epoch = 0;
    epoch_plan *p = NULL;
    for (int i = 0; i < 2; i++)
        if (d->plans[i].epoch == epoch) p = &d->plans[i];
    if (!p) {
        p = d->plans[0].stamp <= d->plans[1].stamp ? &d->plans[0] : &d->plans[1];
        p->epoch = epoch;
        const long G = d->desc.group_windows;
        if (d->desc.train && d->nwin > 0) {
            rng_stream s = rng_stream_make(d->desc.seed, RNG_DATA_ORDER, (uint32_t)epoch,
                                           (uint32_t)d->desc.rank, 0);
            rng_permutation(&s, d->ptmp, (uint64_t)d->nwin);
            for (long i = 0; i < d->nwin; i++)
                p->wperm[i] = (uint32_t)d->ptmp[i];
        } else {
            for (long i = 0; i < d->nwin; i++)
                p->wperm[i] = (uint32_t)i;
        }
        p->ngroups = (d->nwin + G - 1) / G;
        p->gstart[0] = 0;
        for (long g = 0; g < p->ngroups; g++) {
            long rows = 0;
            for (long i = g * G; i < YT_MIN((g + 1) * G, d->nwin); i++)
                rows += window_len(d, p->wperm[i]);
            p->gstart[g + 1] = p->gstart[g] + rows;
        }
    }
    p->stamp = ++d->stamp;
    return p;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Fills g's row ids, order and read ranges for group `gi` of plan p. */
static void group_prepare(data_source *d, group_buf *g, const epoch_plan *p, long gi) {
    const long G = d->desc.group_windows, W = d->desc.window_rows;
    long w0 = gi * G, nw = YT_MIN(G, d->nwin - w0);
    memcpy(d->wtmp, p->wperm + w0, (size_t)nw * sizeof(uint32_t));
    /* a group's rows are taken in file order: the same in every read mode */
    qsort(d->wtmp, (size_t)nw, sizeof(uint32_t), cmp_u32);
    long k = 0;
    g->nranges = 0;
    for (long i = 0; i < nw; i++) {
        long first = d->desc.shard_begin + (long)d->wtmp[i] * W, len = window_len(d, d->wtmp[i]);
        if (g->pix) { /* streaming: adjacent windows make one read */
            read_range *r = g->nranges ? &g->ranges[g->nranges - 1] : NULL;
            off_t off = (off_t)d->data_off + (off_t)first * (off_t)d->row_bytes;
            if (r && r->off + (off_t)r->len == off) {
                r->len += (size_t)len * d->row_bytes;
            } else {
                g->ranges[g->nranges++] = (read_range){off, (size_t)len * d->row_bytes,
                                                       g->pix + (size_t)k * d->row_bytes};
            }
        }
        for (long j = 0; j < len; j++)
            g->rowid[k++] = first + j;
    }
    YT_CHECK(k == p->gstart[gi + 1] - p->gstart[gi] && k <= d->cap_rows);
    g->nrows = k;
    g->epoch = p->epoch;
    g->g = gi;
    g->err = 0;
    if (d->desc.train) {
        YT_CHECK(gi + 1 < (1L << 24));
        rng_stream s = rng_stream_make(d->desc.seed, RNG_DATA_ORDER, (uint32_t)p->epoch,
                                       (uint32_t)d->desc.rank, (uint32_t)(gi + 1));
        rng_permutation(&s, g->order, (uint64_t)k);
    }
}

/* Reads g's pixels now, in this thread. */
static int group_read_now(data_source *d, group_buf *g) {
    if (!g->pix) return YT_OK; /* cached */
    if (dist_fault("data-read"))
        return yt_fail(YT_ERR_RUNTIME, "%s: dataset '%s': injected read fault", d->desc.file,
                       d->desc.dataset);
    if (d->fd >= 0) {
        int e = run_ranges(d->fd, g);
        if (e)
            return yt_fail(YT_ERR_RUNTIME, "%s: dataset '%s': read failed: %s", d->desc.file,
                           d->desc.dataset, strerror(e));
        return YT_OK;
    }
    /* the group's windows in file order as row ranges */
    long *st = yt_malloc((size_t)(g->nrows + 1) * sizeof(long) * 2), *ct = st + g->nrows + 1;
    int n = 0;
    for (long i = 0; i < g->nrows; i++) {
        if (n && st[n - 1] + ct[n - 1] == g->rowid[i]) {
            ct[n - 1]++;
        } else {
            st[n] = g->rowid[i];
            ct[n++] = 1;
        }
    }
    int rc = read_rows_h5(d, n, st, ct, g->pix, false);
    free(st);
    return rc;
}

/* The group that follows (epoch, gi) in reading order; false if none. */
static bool successor(data_source *d, long epoch, long gi, long *ne, long *ng) {
    epoch_plan *p = get_plan(d, epoch);
    if (gi + 1 < p->ngroups && p->gstart[gi + 1] < d->positions) {
        *ne = epoch;
        *ng = gi + 1;
        return true;
    }
    if (d->desc.train) {
        *ne = epoch + 1;
        *ng = 0;
        return true;
    }
    /* eval: the next pass starts over; worth it only if it is another group */
    *ne = epoch;
    *ng = 0;
    return gi != 0;
}

/* Makes group (epoch, gi) current; starts reading the next one. */
static int ensure_group(data_source *d, long epoch, long gi) {
    group_buf *cur = &d->grp[d->cur], *nxt = &d->grp[d->cur ^ 1];
    if (cur->epoch == epoch && cur->g == gi) return YT_OK;
    double t0 = yt_now();
    int rc = YT_OK;
    if (nxt->epoch == epoch && nxt->g == gi) {
        wait_idle(d, nxt);
        if (nxt->err)
            rc = yt_fail(YT_ERR_RUNTIME, "%s: dataset '%s': read failed: %s", d->desc.file,
                         d->desc.dataset, strerror(nxt->err));
        d->cur ^= 1;
        cur = nxt;
        nxt = &d->grp[d->cur ^ 1];
    } else {
        /* random access (first batch, resume): load it here */
        group_prepare(d, cur, get_plan(d, epoch), gi);
        rc = group_read_now(d, cur);
    }
    if (rc != YT_OK) {
        cur->epoch = -1; /* do not trust it next time */
    } else if (d->thread_up) {
        long ne, ng;
        if (successor(d, epoch, gi, &ne, &ng) && !(nxt->epoch == ne && nxt->g == ng)) {
            wait_idle(d, nxt); /* its buffer is about to be reused */
            group_prepare(d, nxt, get_plan(d, ne), ng);
            pthread_mutex_lock(&d->mu);
            nxt->pending = 1;
            d->job = nxt;
            pthread_cond_broadcast(&d->cv);
            pthread_mutex_unlock(&d->mu);
        }
    }
    d->wait_s += yt_now() - t0;
    return rc;
}

int data_batch(data_source *d, long epoch, long step, real *images, int64_t *rows, long *count) {
    const data_desc *dd = &d->desc;
    YT_CHECK(step >= 0 && step < dd->steps && epoch >= 0);
    long first = step * dd->batch;
    long n = dd->train ? dd->batch : YT_MAX(0L, YT_MIN(dd->batch, d->shard_rows - first));
    *count = n;
    const size_t hw = (size_t)dd->oh * dd->ow, cstride = (size_t)n * hw;
    const uint32_t ekey = dd->train ? (uint32_t)epoch : 0;
    const long pe = dd->train ? epoch : 0;
    long lo = 0, hi = 0; /* positions held by the current group */
    group_buf *g = NULL;
    for (long k = 0; k < n; k++) {
        long pos = first + k;
        if (!g || pos < lo || pos >= hi) {
            epoch_plan *p = get_plan(d, pe);
            long a = 0, b = p->ngroups - 1; /* the group with gstart <= pos */
            while (a < b) {
                long m = (a + b + 1) / 2;
                if (p->gstart[m] <= pos)
                    a = m;
                else
                    b = m - 1;
            }
            lo = p->gstart[a];
            hi = p->gstart[a + 1];
            int rc = ensure_group(d, pe, a);
            if (rc != YT_OK) return rc;
            g = &d->grp[d->cur];
        }
        long idx = pos - lo;
        if (g->order) idx = (long)g->order[idx];
        int64_t row = g->rowid[idx];
        const uint8_t *px = g->pix ? g->pix + (size_t)idx * d->row_bytes
                                   : d->cache + (size_t)(row - dd->shard_begin) * d->row_bytes;
        preprocess_image(&d->plan, px, dd->seed, ekey, (uint32_t)(row - dd->begin),
                         images + (size_t)k * hw, cstride);
        if (rows) rows[k] = row;
    }
    return YT_OK;
}

/* ---- opening ------------------------------------------------------------------------------ */

static int open_file(data_source *d) {
    d->mpio = dist_active(); /* as h5io_fapl(true) decides */
    hid_t fapl = h5io_fapl(true);
    if (fapl < 0)
        return yt_fail(YT_ERR_RUNTIME, "%s: cannot set up %s access", d->desc.file,
                       d->mpio ? "MPI-IO" : "HDF5 file");
    d->fid = H5Fopen(d->desc.file, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (d->fid < 0) return yt_fail(YT_ERR_USAGE, "%s: cannot open as HDF5", d->desc.file);
    return YT_OK;
}

/* Shapes, range, shards, steps, pipeline; all local, same on every rank. */
static int plan_source(data_source *d, const yoto_config *cfg, const cfg_split *sp,
                       const data_image_info *info, long batch, const data_tuning *t) {
    data_desc *dd = &d->desc;
    dd->dataset_rows = info->n;
    dd->h = info->h;
    dd->w = info->w;
    dd->c = info->c;
    d->row_bytes = (size_t)info->h * info->w * info->c;
    int rc = config_range_resolve(sp->range, info->n, &dd->begin, &dd->end);
    if (rc != YT_OK) {
        char m[YT_ERRMSG_MAX];
        snprintf(m, sizeof m, "%s", yt_errmsg());
        return yt_fail(rc, "data.splits '%s': %s", sp->name, m);
    }
    long n = dd->end - dd->begin;
    if (n <= 0)
        return yt_fail(YT_ERR_USAGE,
                       "data.splits '%s': range '%s' of %s dataset '%s' (%ld rows) selects no rows",
                       sp->name, sp->range, dd->file, dd->dataset, info->n);
    dd->batch = batch;
    if (dd->train) {
        dd->rows = n;
        dd->steps = data_steps_per_epoch(n, dd->world, batch);
        if (dd->steps < 1)
            return yt_fail(YT_ERR_USAGE,
                           "data.splits '%s' (%s dataset '%s' range '%s') has %ld rows, too few "
                           "for %d ranks x %ld images per rank: the smallest shard has %ld rows; "
                           "use fewer ranks or a smaller train batch",
                           sp->name, dd->file, dd->dataset, sp->range, n, dd->world, batch,
                           n / dd->world);
    } else {
        long mb = cfg->eval.max_batches;
        dd->rows = mb > 0 && mb <= n / batch ? mb * batch : n;
        long b0, e0;
        data_shard(dd->rows, 0, dd->world, &b0, &e0); /* the largest shard */
        dd->steps = (e0 - b0 + batch - 1) / batch;
    }
    long sb, se;
    data_shard(dd->rows, dd->rank, dd->world, &sb, &se);
    dd->shard_begin = dd->begin + sb;
    dd->shard_end = dd->begin + se;
    d->shard_rows = se - sb;
    d->positions = dd->train ? dd->steps * batch : d->shard_rows;

    /* the pipeline must produce what the model takes */
    const cfg_pipeline *pipe = dd->train ? &cfg->data.preprocess_train : &cfg->data.preprocess_eval;
    const char *key = dd->train ? "data.preprocess_train" : "data.preprocess_eval";
    rc = preprocess_plan_init(&d->plan, pipe, dd->h, dd->w, dd->c, key);
    if (rc != YT_OK) {
        char m[YT_ERRMSG_MAX];
        snprintf(m, sizeof m, "%s", yt_errmsg());
        return yt_fail(rc, "%s (on %s dataset '%s', images %dx%dx%d)", m, dd->file, dd->dataset,
                       dd->h, dd->w, dd->c);
    }
    dd->oh = d->plan.oh;
    dd->ow = d->plan.ow;
    const int *is = cfg->model.input_shape;
    if (is[0] != dd->oh || is[1] != dd->ow || is[2] != dd->c) {
        char ptxt[512], pwhere[CFG_PATH_MAX + 320], swhere[CFG_PATH_MAX + 320];
        preprocess_text(pipe, ptxt, sizeof ptxt);
        key_origin(cfg, key, pwhere, sizeof pwhere);
        key_origin(cfg, "model.input_shape", swhere, sizeof swhere);
        return yt_fail(YT_ERR_USAGE,
                       "%s [%s] turns the %dx%dx%d images of %s dataset '%s' into %dx%dx%d, but "
                       "model.input_shape is [%d, %d, %d]; change %s (resize/pad/random_crop) "
                       "or model.input_shape (%s; %s)",
                       key, ptxt, dd->h, dd->w, dd->c, dd->file, dd->dataset, dd->oh, dd->ow, dd->c,
                       is[0], is[1], is[2], key, pwhere, swhere);
    }

    /* windows and groups: functions of the file, split and block size only */
    long cache = t->cache_bytes >= 0 ? t->cache_bytes : YT_MAX(0L, cfg->data.cache_mb) << 20;
    long block = t->block_bytes > 0              ? t->block_bytes
                 : cfg->data.stream_block_mb > 0 ? cfg->data.stream_block_mb << 20
                                                 : (long)DATA_DEFAULT_BLOCK_MB << 20;
    dd->window_rows =
        t->window_rows > 0 ? t->window_rows : YT_MAX(1L, DATA_WINDOW_BYTES / (long)d->row_bytes);
    dd->group_windows = YT_MAX(1L, block / (dd->window_rows * (long)d->row_bytes));
    d->nwin = (d->shard_rows + dd->window_rows - 1) / dd->window_rows;
    d->cap_rows = YT_MIN(dd->group_windows * dd->window_rows, YT_MAX(1L, d->shard_rows));
    long b0, e0;
    data_shard(dd->rows, 0, dd->world, &b0, &e0);
    dd->cached = (double)(e0 - b0) * (double)d->row_bytes <= (double)cache;
    dd->readahead = !dd->cached && t->readahead && info->contiguous && info->nfilters == 0;
    return YT_OK;
}

static void alloc_orders(data_source *d) {
    const long G = d->desc.group_windows;
    d->wtmp = yt_malloc((size_t)G * sizeof(uint32_t));
    d->ptmp = yt_malloc((size_t)YT_MAX(1L, d->nwin) * sizeof(uint64_t));
    for (int i = 0; i < 2; i++) {
        d->plans[i].epoch = -1;
        d->plans[i].wperm = yt_malloc((size_t)YT_MAX(1L, d->nwin) * sizeof(uint32_t));
        d->plans[i].gstart = yt_malloc((size_t)(d->nwin / G + 2) * sizeof(long));
        group_buf *g = &d->grp[i];
        g->epoch = -1;
        g->rowid = yt_malloc((size_t)d->cap_rows * sizeof(int64_t));
        if (d->desc.train) g->order = yt_malloc((size_t)d->cap_rows * sizeof(uint64_t));
        if (!d->desc.cached) {
            g->pix = yt_malloc((size_t)d->cap_rows * d->row_bytes);
            g->ranges = yt_malloc((size_t)G * sizeof(read_range));
        }
    }
}

/* Collective: the whole shard, in pieces every rank reads together (the
 * number of pieces is the largest shard's, so ranks with less take part
 * with empty selections). */
static int read_cache(data_source *d, long piece_bytes) {
    const data_desc *dd = &d->desc;
    long b0, e0;
    data_shard(dd->rows, 0, dd->world, &b0, &e0);
    long piece =
        YT_MAX(1L, (piece_bytes > 0 ? piece_bytes : DATA_READ_PIECE_BYTES) / (long)d->row_bytes);
    long npieces = (e0 - b0 + piece - 1) / piece;
    d->cache = yt_malloc((size_t)YT_MAX(1L, d->shard_rows) * d->row_bytes);
    double t0 = yt_now();
    int rc = YT_OK;
    for (long i = 0; i < npieces && rc == YT_OK; i++) {
        long st = dd->shard_begin + i * piece;
        long ct = YT_MAX(0L, YT_MIN(piece, d->shard_rows - i * piece));
        rc = read_rows_h5(d, 1, &st, &ct, d->cache + (size_t)(i * piece) * d->row_bytes, true);
        rc = dist_agree(rc);
    }
    d->wait_s += yt_now() - t0;
    return rc;
}

/* The reader thread reads the file with pread at H5Dget_offset; check that
 * it sees what HDF5 sees (one row) before trusting it. */
static void start_reader(data_source *d) {
    const data_desc *dd = &d->desc;
    d->fd = -1;
    haddr_t off = H5Dget_offset(d->did);
    if (off == HADDR_UNDEF || d->shard_rows == 0) goto off;
    d->fd = open(dd->file, O_RDONLY | O_CLOEXEC);
    if (d->fd < 0) goto off;
    uint8_t *a = yt_malloc(d->row_bytes), *b = yt_malloc(d->row_bytes);
    long st = dd->shard_begin, ct = 1;
    int same =
        read_rows_h5(d, 1, &st, &ct, a, false) == YT_OK &&
        pread_all(d->fd, b, d->row_bytes, (off_t)off + (off_t)st * (off_t)d->row_bytes) == 0 &&
        memcmp(a, b, d->row_bytes) == 0;
    free(a);
    free(b);
    yt_clear_error();
    if (!same) goto off;
    d->data_off = off;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    if (pthread_create(&d->thread, NULL, reader_main, d) != 0) {
        pthread_mutex_destroy(&d->mu);
        pthread_cond_destroy(&d->cv);
        goto off;
    }
    d->thread_up = true;
    return;
off:
    /* synchronous HDF5 reads instead */
    if (d->fd >= 0) close(d->fd);
    d->fd = -1;
    d->desc.readahead = false;
}

static int source_open(data_source **out, const yoto_config *cfg, const char *split, bool train,
                       int rank, int world, long batch, const data_tuning *tune) {
    *out = NULL;
    YT_CHECK(world >= 1 && rank >= 0 && rank < world);
    h5io_errors q;
    h5io_errors_off(&q);
    data_tuning t = tune ? *tune : data_tuning_default();
    data_source *d = yt_calloc(1, sizeof *d);
    data_desc *dd = &d->desc;
    d->fid = d->did = -1;
    d->fd = -1;
    dd->train = train;
    dd->rank = rank;
    dd->world = world;
    dd->seed = cfg->experiment.seed;

    /* stage 1, local: the split and the file */
    int rc = YT_OK;
    const cfg_split *sp = find_split(cfg, split);
    if (!sp) {
        rc = yt_fail(YT_ERR_USAGE, "%s: no split called '%s' in data.splits",
                     train ? "data.train_split" : "eval.splits", split);
    } else if (batch < 1) {
        rc = yt_fail(YT_ERR_USAGE, "split '%s': %s must be >= 1, got %ld", split,
                     train ? "the per-rank train batch" : "eval.batch_size", batch);
    } else {
        snprintf(dd->split, sizeof dd->split, "%s", sp->name);
        snprintf(dd->file, sizeof dd->file, "%s", sp->file[0] ? sp->file : cfg->data.file);
        snprintf(dd->dataset, sizeof dd->dataset, "%s", sp->dataset);
        snprintf(dd->range, sizeof dd->range, "%s", sp->range);
        rc = check_file(dd->file);
        if (rc == YT_OK) rc = h5io_check_mpiio_path(dd->file, "data file");
        if (rc != YT_OK) rc = fail_file_origin(rc, cfg, sp, dd->file);
        if (rc == YT_OK && dist_fault("data-open"))
            rc = yt_fail(YT_ERR_USAGE, "%s: injected fault (YOTO_FAULT=data-open)", dd->file);
    }
    /* every rank must see the same file: a node-local copy that differs
     * (truncated) would be read as zeros past its end on that rank */
    struct stat fst;
    long size = rc == YT_OK && stat(dd->file, &fst) == 0 ? (long)fst.st_size : -1;
    long lo = dist_allreduce_min_long(size), hi = dist_allreduce_max_long(size);
    if (rc == YT_OK && lo >= 0 && lo != hi)
        rc = fail_file_origin(
            yt_fail(YT_ERR_USAGE,
                    "%s: the ranks see different files (from %ld to %ld bytes over the ranks): "
                    "every rank must read the same data file",
                    dd->file, lo, hi),
            cfg, sp, dd->file);
    rc = dist_agree(rc);
    /* stage 2, collective open, then the dataset (every rank sees the same file) */
    data_image_info info;
    if (rc == YT_OK) {
        rc = open_file(d);
        if (rc != YT_OK) rc = fail_file_origin(rc, cfg, sp, dd->file);
        if (rc == YT_OK) rc = open_dataset(d->fid, dd->file, dd->dataset, &d->did);
        if (rc == YT_OK) rc = check_images(d->did, dd->file, dd->dataset, &info);
        if (rc != YT_OK && d->fid >= 0) /* the file opened: the dataset is at fault */
            rc = fail_dataset_origin(rc, cfg, sp);
        if (rc == YT_OK) rc = plan_source(d, cfg, sp, &info, batch, &t);
        rc = dist_agree(rc);
    }
    /* stage 3: storage */
    if (rc == YT_OK) {
        alloc_orders(d);
        if (dd->cached)
            rc = read_cache(d, t.piece_bytes); /* agreed inside */
        else if (dd->readahead)
            start_reader(d);
    }
    if (rc != YT_OK) {
        data_close(d);
        d = NULL;
    }
    h5io_errors_restore(&q);
    *out = d;
    return rc;
}

int data_open_train(data_source **out, const yoto_config *cfg, int rank, int world, long batch,
                    const data_tuning *tune) {
    return source_open(out, cfg, cfg->data.train_split, true, rank, world, batch, tune);
}

int data_open_eval(data_source **out, const yoto_config *cfg, const char *split, int rank,
                   int world, const data_tuning *tune) {
    return source_open(out, cfg, split, false, rank, world, cfg->eval.batch_size, tune);
}

void data_close(data_source *d) {
    if (!d) return;
    if (d->thread_up) {
        pthread_mutex_lock(&d->mu);
        d->quit = true;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thread, NULL);
        pthread_mutex_destroy(&d->mu);
        pthread_cond_destroy(&d->cv);
    }
    if (d->fd >= 0) close(d->fd);
    h5io_errors q;
    h5io_errors_off(&q);
    if (d->did >= 0) H5Oclose(d->did);
    if (d->fid >= 0) H5Fclose(d->fid);
    h5io_errors_restore(&q);
    preprocess_plan_free(&d->plan);
    for (int i = 0; i < 2; i++) {
        free(d->plans[i].wperm);
        free(d->plans[i].gstart);
        free(d->grp[i].rowid);
        free(d->grp[i].order);
        free(d->grp[i].pix);
        free(d->grp[i].ranges);
    }
    free(d->wtmp);
    free(d->ptmp);
    free(d->cache);
    free(d);
}

const data_desc *data_describe(const data_source *d) {
    return &d->desc;
}

size_t data_batch_floats(const data_source *d) {
    return (size_t)d->desc.c * (size_t)d->desc.batch * (size_t)d->desc.oh * (size_t)d->desc.ow;
}

/* ---- throughput ------------------------------------------------------------------------------ */

int data_bench(const yoto_config *cfg, const data_bench_opts *o, const data_tuning *tune,
               data_bench_result *res) {
    memset(res, 0, sizeof *res);
    const long batch = o->batch;
    double t0 = yt_now();
    data_source *d;
    int rc = data_open_train(&d, cfg, dist_rank(), dist_size(), batch, tune);
    if (rc != YT_OK) return rc;
    double open_s = yt_now() - t0;
    real *x = yt_malloc(data_batch_floats(d) * sizeof(real));
    int64_t *rows = yt_malloc((size_t)batch * sizeof(int64_t));
    long epoch = 0, step = 0, nsteps = 0, count;
    double wait0 = d->wait_s, t1 = yt_now(), el = 0;
    /* local loop (no collectives inside): each rank stops on its own clock */
    for (;;) {
        rc = data_batch(d, epoch, step, x, rows, &count);
        if (rc != YT_OK) break;
        nsteps++;
        if (o->step_s > 0) {
            struct timespec ts = {(time_t)o->step_s, (long)((o->step_s - floor(o->step_s)) * 1e9)};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
            }
        }
        if (++step == d->desc.steps) {
            step = 0;
            epoch++;
        }
        el = yt_now() - t1;
        if (el >= o->seconds && nsteps >= o->min_steps) break;
    }
    rc = dist_agree(rc);
    if (rc == YT_OK) {
        double ips = (double)(nsteps * batch) / (el > 0 ? el : 1e-9);
        double tot = ips;
        dist_allreduce_sum_double(&tot, 1);
        res->images_per_s = dist_allreduce_min_double(ips);
        res->images_per_s_total = tot;
        res->open_s = dist_allreduce_max_double(open_s);
        res->wait_frac = dist_allreduce_max_double((d->wait_s - wait0) / (el > 0 ? el : 1e-9));
        res->images = nsteps * batch;
        res->peak_rss_kb = dist_allreduce_max_long(yt_peak_rss_kb());
        res->desc = d->desc;
    }
    free(x);
    free(rows);
    data_close(d);
    return rc;
}
