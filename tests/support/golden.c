/* golden.c — golden-file helpers for the numerics tests (see golden.h). */
#include "golden.h"

#include <stdlib.h>
#include <string.h>

#include "testutil.h"

hid_t golden_open(const char *file) {
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) fail_msg("cannot open golden file %s", file);
    return f;
}

int golden_has(hid_t f, const char *path) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = strchr(buf + 1, '/');; p = strchr(p + 1, '/')) {
        if (p) *p = '\0';
        int e = H5Lexists(f, buf, H5P_DEFAULT) > 0;
        if (p) *p = '/';
        if (!e) return 0;
        if (!p) return 1;
    }
}

double *golden_read(hid_t f, const char *path, size_t *n, int *ndim, hsize_t *dims) {
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0) fail_msg("golden: no dataset %s", path);
    hid_t sp = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t d[8] = {1};
    if (nd > 0) H5Sget_simple_extent_dims(sp, d, NULL);
    size_t total = 1;
    for (int i = 0; i < nd; i++) total *= d[i];
    double *buf = malloc(total * sizeof *buf);
    if (H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        fail_msg("golden: cannot read %s", path);
    H5Sclose(sp);
    H5Dclose(ds);
    if (n) *n = total;
    if (ndim) *ndim = nd;
    if (dims)
        for (int i = 0; i < nd && i < 4; i++) dims[i] = d[i];
    return buf;
}

static void read_attr(hid_t obj, const char *name, hid_t type, void *buf) {
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) fail_msg("golden: no attribute %s", name);
    if (H5Aread(a, type, buf) < 0) fail_msg("golden: cannot read attribute %s", name);
    H5Aclose(a);
}

double golden_attr_double(hid_t obj, const char *name) {
    double v;
    read_attr(obj, name, H5T_NATIVE_DOUBLE, &v);
    return v;
}

long golden_attr_long(hid_t obj, const char *name) {
    long v;
    read_attr(obj, name, H5T_NATIVE_LONG, &v);
    return v;
}

static void attr_longs(hid_t f, const char *name, cfg_ints *out) {
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) fail_msg("golden: no attribute %s", name);
    hid_t sp = H5Aget_space(a);
    out->n = (int)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    H5Aread(a, H5T_NATIVE_LONG, out->v);
    H5Aclose(a);
}

static void attr_string(hid_t f, const char *name, char *buf, size_t size) {
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) fail_msg("golden: no attribute %s", name);
    hid_t t = H5Aget_type(a);
    if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        H5Aread(a, mt, &s);
        snprintf(buf, size, "%s", s ? s : "");
        H5free_memory(s);
        H5Tclose(mt);
    } else {
        size_t len = H5Tget_size(t);
        char *tmp = calloc(len + 1, 1);
        H5Aread(a, t, tmp);
        snprintf(buf, size, "%s", tmp);
        free(tmp);
    }
    H5Tclose(t);
    H5Aclose(a);
}

void golden_config(hid_t f, yoto_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    char s[64];
    int size = (int)golden_attr_long(f, "image_size");
    cfg->model.input_shape[0] = cfg->model.input_shape[1] = size;
    cfg->model.input_shape[2] = (int)golden_attr_long(f, "in_channels");
    cfg->model.latent_dim = (int)golden_attr_long(f, "latent");
    attr_string(f, "output_distribution", s, sizeof s);
    cfg->model.output_distribution = strcmp(s, "gaussian") == 0 ? OUT_GAUSSIAN : OUT_BERNOULLI;
    cfg->model.eps = golden_attr_double(f, "eps");
    cfg->model.alpha = golden_attr_double(f, "alpha");
    cfg->model.dense_alpha = golden_attr_double(f, "dense_alpha");
    attr_string(f, "kernel_init_mode", s, sizeof s);
    cfg->model.kernel_init = strcmp(s, "fan_avg") == 0 ? INIT_FAN_AVG : INIT_FAN_IN;
    cfg_ints reshape;
    attr_longs(f, "reshape_hwc", &reshape);
    for (int k = 0; k < 2; k++) {
        cfg_net *net = k == 0 ? &cfg->model.encoder : &cfg->model.decoder;
        net->num_blocks = (int)golden_attr_long(f, "num_blocks");
        net->layers_per_block = (int)golden_attr_long(f, "layers_per_block");
        net->base_channels = (int)golden_attr_long(f, "base_channels");
        attr_longs(f, k == 0 ? "enc_fc" : "dec_fc", &net->fc_sizes);
    }
    for (int d = 0; d < 3; d++) cfg->model.decoder.reshape[d] = (int)reshape.v[d];
    cfg->model.decoder.channels_out = (int)golden_attr_long(f, "channels_out");
    cfg->model.conditioning.type = COND_FILM;
    attr_longs(f, "cond_hidden", &cfg->model.conditioning.hidden_sizes);
    cfg->model.conditioning.scales_mult = golden_attr_double(f, "film_scales_mult");
    cfg->model.conditioning.scales_add = golden_attr_double(f, "film_scales_add");
    cfg->model.conditioning.shifts_mult = golden_attr_double(f, "film_shifts_mult");
    cfg->model.conditioning.shifts_add = golden_attr_double(f, "film_shifts_add");
    cfg->loss_weights.transform = TRANSFORM_LOG;
}

void golden_nhwc_to_chan(const double *src, int b, int hw, int c, real *dst) {
    for (int i = 0; i < b; i++)
        for (int p = 0; p < hw; p++)
            for (int ch = 0; ch < c; ch++)
                dst[((size_t)ch * b + i) * hw + p] = (real)src[((size_t)i * hw + p) * c + ch];
}

void golden_chan_to_nhwc(const real *src, int b, int hw, int c, real *dst) {
    for (int i = 0; i < b; i++)
        for (int p = 0; p < hw; p++)
            for (int ch = 0; ch < c; ch++)
                dst[((size_t)i * hw + p) * c + ch] = src[((size_t)ch * b + i) * hw + p];
}

real *golden_to_real(const double *src, size_t n) {
    real *r = malloc((n ? n : 1) * sizeof *r);
    for (size_t i = 0; i < n; i++) r[i] = (real)src[i];
    return r;
}
