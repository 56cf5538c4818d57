/* datautil.c — see datautil.h. */
#include "datautil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "preprocess.h"
#include "testutil.h"

uint8_t tu_pixel(long row, long k) {
    if (k < 4) return (uint8_t)(row >> (8 * k));
    return (uint8_t)(row * 31 + k * 17 + (row >> 5));
}

static hid_t open_or_create(const char *path) {
    hid_t f = -1;
    if (access(path, F_OK) == 0)
        f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    else
        f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) fail_msg("cannot create %s", path);
    return f;
}

void tu_write_images(const char *path, const char *dset, long n, int h, int w, int c,
                     long chunk_rows, int deflate) {
    hid_t f = open_or_create(path);
    int nd = c ? 4 : 3;
    hsize_t dims[4] = {(hsize_t)n, (hsize_t)h, (hsize_t)w, (hsize_t)(c ? c : 1)};
    size_t rb = (size_t)h * w * (c ? c : 1);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    if (chunk_rows > 0) {
        hsize_t ch[4] = {(hsize_t)chunk_rows, dims[1], dims[2], dims[3]};
        H5Pset_chunk(dcpl, nd, ch);
        if (deflate > 0) H5Pset_deflate(dcpl, (unsigned)deflate);
    }
    hid_t s = H5Screate_simple(nd, dims, NULL);
    hid_t d = H5Dcreate2(f, dset, H5T_STD_U8LE, s, lcpl, dcpl, H5P_DEFAULT);
    if (d < 0) fail_msg("cannot create %s:%s", path, dset);
    uint8_t *buf = malloc((size_t)n * rb + 1);
    for (long r = 0; r < n; r++)
        for (size_t k = 0; k < rb; k++)
            buf[(size_t)r * rb + k] = tu_pixel(r, (long)k);
    if (H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        fail_msg("cannot write %s:%s", path, dset);
    free(buf);
    H5Dclose(d);
    H5Sclose(s);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Fclose(f);
}

void tu_write_raw(const char *path, const char *dset, hid_t type, int ndim, const hsize_t *dims) {
    hid_t f = open_or_create(path);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t s = H5Screate_simple(ndim, dims, NULL);
    hid_t d = H5Dcreate2(f, dset, type, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (d < 0) fail_msg("cannot create %s:%s", path, dset);
    size_t n = H5Tget_size(type);
    for (int i = 0; i < ndim; i++)
        n *= dims[i];
    void *buf = calloc(n + 1, 1);
    if (n && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        fail_msg("cannot write %s:%s", path, dset);
    free(buf);
    H5Dclose(d);
    H5Sclose(s);
    H5Pclose(lcpl);
    H5Fclose(f);
}

void tu_data_config(yoto_config *cfg, const char *file, const char *dset, const char *range,
                    const char *pipe, int h, int w, int c) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->experiment.name, sizeof cfg->experiment.name, "test");
    cfg->experiment.seed = 1234;
    snprintf(cfg->data.file, sizeof cfg->data.file, "%s", file);
    cfg->data.n_splits = 2;
    for (int i = 0; i < 2; i++) {
        cfg_split *s = &cfg->data.splits[i];
        snprintf(s->name, sizeof s->name, "%s", i ? "eval" : "train");
        snprintf(s->dataset, sizeof s->dataset, "%s", dset);
        snprintf(s->range, sizeof s->range, "%s", range);
    }
    snprintf(cfg->data.train_split, sizeof cfg->data.train_split, "train");
    if (preprocess_parse(pipe, &cfg->data.preprocess_train) != YT_OK)
        fail_msg("bad test pipeline '%s': %s", pipe, yt_errmsg());
    preprocess_parse("value_range(0, 1)", &cfg->data.preprocess_eval);
    cfg->data.cache_mb = 1024;
    cfg->data.stream_block_mb = 64;
    cfg->model.input_shape[0] = h;
    cfg->model.input_shape[1] = w;
    cfg->model.input_shape[2] = c;
    cfg->eval.batch_size = 8;
    cfg->eval.max_batches = 0;
}
