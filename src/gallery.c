/* gallery.c — sample and reconstruction grids across beta (see gallery.h). */
#include "gallery.h"

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "data.h"
#include "dist.h"
#include "layers.h"
#include "loss.h"
#include "rng.h"
#include "run.h"

#define GAP 2          /* pixels between cells */
#define FONT_SCALE 2   /* label glyphs are 3x5 font pixels, scaled */
#define LABEL_CHARS 7  /* margin width in characters */

/* ---- PNG ---------------------------------------------------------------------------------- */

int gallery_write_png(const char *path, const unsigned char *pixels, int width, int height,
                      int channels, const char *const *keys, const char *const *values, int ntext) {
    FILE *f = fopen(path, "wb");
    if (!f) return yt_fail(YT_ERR_RUNTIME, "cannot write %s", path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return yt_fail(YT_ERR_RUNTIME, "cannot write PNG %s", path);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_text text[8];
    int nt = ntext < 8 ? ntext : 8;
    for (int i = 0; i < nt; i++) {
        memset(&text[i], 0, sizeof text[i]);
        text[i].compression = PNG_TEXT_COMPRESSION_NONE;
        text[i].key = (png_charp)keys[i];
        text[i].text = (png_charp)values[i];
    }
    if (nt) png_set_text(png, info, text, nt);
    png_write_info(png, info);
    for (int y = 0; y < height; y++)
        png_write_row(png, (png_const_bytep)(pixels + (size_t)y * width * channels));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0) return yt_fail(YT_ERR_RUNTIME, "cannot write %s", path);
    return YT_OK;
}

/* ---- a 3x5 font for row labels ---------------------------------------------------------- */

static const struct {
    char c;
    unsigned char rows[5]; /* 3 bits each, MSB left */
} FONT[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}},
    {'3', {7, 1, 7, 1, 7}}, {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}},
    {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 2, 2}}, {'8', {7, 5, 7, 5, 7}},
    {'9', {7, 5, 7, 1, 7}}, {'.', {0, 0, 0, 0, 2}}, {'-', {0, 0, 7, 0, 0}},
    {'+', {0, 2, 7, 2, 0}}, {'e', {0, 7, 7, 4, 7}}, {'x', {0, 5, 2, 5, 0}},
};

typedef struct {
    unsigned char *px;
    int w, h, ch;
} canvas;

static void put(canvas *cv, int x, int y, unsigned char v) {
    if (x < 0 || y < 0 || x >= cv->w || y >= cv->h) return;
    for (int k = 0; k < cv->ch; k++) cv->px[((size_t)y * cv->w + x) * cv->ch + k] = v;
}

static void draw_text(canvas *cv, int x, int y, const char *s) {
    for (; *s; s++, x += 4 * FONT_SCALE)
        for (size_t g = 0; g < YT_ARRAY_LEN(FONT); g++)
            if (FONT[g].c == *s)
                for (int r = 0; r < 5; r++)
                    for (int c = 0; c < 3; c++)
                        if (FONT[g].rows[r] & (4 >> c))
                            for (int dy = 0; dy < FONT_SCALE; dy++)
                                for (int dx = 0; dx < FONT_SCALE; dx++)
                                    put(cv, x + c * FONT_SCALE + dx, y + r * FONT_SCALE + dy, 0);
}

/* ---- grids ----------------------------------------------------------------------------- */

/* the value range the eval pipeline maps pixels to */
static void value_range(const yoto_config *cfg, double *a, double *b) {
    *a = 0;
    *b = 255;
    for (int i = 0; i < cfg->data.preprocess_eval.n; i++)
        if (cfg->data.preprocess_eval.op[i].kind == PRE_VALUE_RANGE) {
            *a = cfg->data.preprocess_eval.op[i].a;
            *b = cfg->data.preprocess_eval.op[i].b;
        }
}

typedef struct {
    int rows, cols, H, W, C;
    int margin; /* label margin width */
    canvas cv;
    double lo, hi;
} grid;

static void grid_init(grid *g, const vae_model *m, const yoto_config *cfg, int rows, int cols) {
    g->rows = rows;
    g->cols = cols;
    g->H = m->in_h;
    g->W = m->in_w;
    g->C = m->in_c >= 3 ? 3 : 1; /* RGB from the first 3 channels, else gray from channel 0 */
    g->margin = LABEL_CHARS * 4 * FONT_SCALE + GAP;
    g->cv.w = g->margin + cols * (g->W + GAP);
    g->cv.h = GAP + rows * (g->H + GAP);
    g->cv.ch = g->C;
    g->cv.px = yt_malloc((size_t)g->cv.w * g->cv.h * g->C);
    memset(g->cv.px, 255, (size_t)g->cv.w * g->cv.h * g->C);
    value_range(cfg, &g->lo, &g->hi);
}

/* cell (row, col) from a channel-major [c][n][h][w] batch, sample i */
static void grid_cell(grid *g, int row, int col, const real *chan, int n, int i, bool sigmoid) {
    const int hw = g->H * g->W;
    int x0 = g->margin + col * (g->W + GAP), y0 = GAP + row * (g->H + GAP);
    for (int y = 0; y < g->H; y++)
        for (int x = 0; x < g->W; x++)
            for (int c = 0; c < g->C; c++) {
                double v = chan[((size_t)c * n + i) * hw + (size_t)y * g->W + x];
                if (sigmoid) v = 1.0 / (1.0 + exp(-v));
                double u = (v - g->lo) / (g->hi - g->lo);
                u = u < 0 ? 0 : u > 1 ? 1 : u;
                g->cv.px[((size_t)(y0 + y) * g->cv.w + x0 + x) * g->C + c] =
                    (unsigned char)(255 * u + 0.5);
            }
}

static void grid_label(grid *g, int row, const char *text) {
    draw_text(&g->cv, GAP, GAP + row * (g->H + GAP) + (g->H - 5 * FONT_SCALE) / 2, text);
}

/* Decodes (or reconstructs) at each beta into rows first_row.. of g. */
static void beta_rows(grid *g, vae_model *m, const yoto_config *cfg, const double *betas, int nb,
                      int first_row, int n, const real *z, const real *x, char *rows_text,
                      size_t rows_size) {
    real *wk = yt_malloc((size_t)n * sizeof *wk), *wr = yt_malloc((size_t)n * sizeof *wr);
    real *cond = yt_malloc((size_t)n * 2 * sizeof *cond);
    bool bern = m->mc.output_distribution == OUT_BERNOULLI;
    for (int k = 0; k < nb; k++) {
        loss_weights_fixed(&cfg->loss_weights, betas[k], cfg->eval.w_rec, n, wk, wr, cond);
        if (x)
            model_forward(m, n, x, cond, NULL); /* reconstruction from the posterior mean */
        else
            model_decode(m, n, z, cond);
        for (int i = 0; i < n; i++) grid_cell(g, first_row + k, i, m->out, n, i, bern);
        char label[32];
        snprintf(label, sizeof label, "%g", betas[k]);
        grid_label(g, first_row + k, label);
        size_t len = strlen(rows_text);
        snprintf(rows_text + len, rows_size - len, "%srow %d: beta=%g", len ? "; " : "",
                 first_row + k, betas[k]);
        dist_log("  row %d: beta = %g\n", first_row + k, betas[k]);
    }
    free(wk);
    free(wr);
    free(cond);
}

typedef struct {
    run_handle r;
    double betas[RUN_MAX_BETAS];
    int nb;
} gallery_ctx;

static int gallery_open(const gallery_args *a, gallery_ctx *g) {
    memset(g, 0, sizeof *g);
    int rc = YT_OK;
    if (a->n < 1 || a->n > 256) rc = yt_fail(YT_ERR_USAGE, "--n %d: expected 1..256 images per row", a->n);
    rc = dist_agree(rc);
    if (rc == YT_OK) rc = run_open(a->target, a->sets, a->nsets, &g->r);
    if (rc == YT_OK) rc = dist_agree(run_betas(g->r.cfg, a->betas, g->betas, &g->nb));
    if (rc == YT_OK) rc = run_load_model(&g->r, (int)YT_MAX((long)a->n, g->r.cfg->eval.batch_size), false);
    if (rc != YT_OK) run_close(&g->r);
    return rc;
}

static int finish(const gallery_args *a, gallery_ctx *c, grid *g, const char *title,
                  const char *rows_text) {
    int rc = YT_OK;
    if (dist_rank() == 0) {
        char source[CFG_PATH_MAX + 96];
        snprintf(source, sizeof source, "%s (step %ld)", c->r.ckpt, c->r.st.step);
        const char *keys[] = {"Title", "Source", "Rows", "Software"};
        const char *vals[] = {title, source, rows_text, "yoto"};
        rc = gallery_write_png(a->out, g->cv.px, g->cv.w, g->cv.h, g->C, keys, vals, 4);
        if (rc == YT_OK) printf("wrote %s (%d x %d)\n", a->out, g->cv.w, g->cv.h);
    }
    free(g->cv.px);
    run_close(&c->r);
    return dist_agree(rc);
}

int gallery_sample(const gallery_args *a) {
    gallery_ctx c;
    int rc = gallery_open(a, &c);
    if (rc != YT_OK) return rc;
    vae_model *m = c.r.model;
    const int n = a->n, L = m->latent;
    real *z = yt_malloc((size_t)n * L * sizeof *z);
    for (int i = 0; i < n; i++) {
        rng_stream s = rng_stream_make(c.r.cfg->experiment.seed, RNG_EVAL, 0xffffffffu, (uint32_t)i, 0);
        for (int j = 0; j < L; j++) z[(size_t)i * L + j] = (real)rng_normal(&s);
    }
    grid g;
    grid_init(&g, m, c.r.cfg, c.nb, n);
    char rows_text[4096] = "";
    dist_log("yoto sample: %d prior samples (the same z in every row) from %s\n", n, c.r.ckpt);
    beta_rows(&g, m, c.r.cfg, c.betas, c.nb, 0, n, z, NULL, rows_text, sizeof rows_text);
    free(z);
    return finish(a, &c, &g, "yoto samples: one row per beta, the same z in every row", rows_text);
}

int gallery_reconstruct(const gallery_args *a) {
    gallery_ctx c;
    int rc = gallery_open(a, &c);
    if (rc != YT_OK) return rc;
    vae_model *m = c.r.model;
    const yoto_config *cfg = c.r.cfg;
    const char *split = a->split ? a->split : cfg->eval.splits[0];
    /* the first n images of the split, read on one rank */
    yoto_config *one = yt_calloc(1, sizeof *one);
    *one = *cfg;
    one->eval.batch_size = a->n;
    one->eval.max_batches = 1;
    data_source *d = NULL;
    real *x = NULL;
    long count = 0;
    if (!config_split(cfg, split)) /* the same answer on every rank */
        rc = yt_fail(YT_ERR_USAGE, "%s %s: the config has no such split (data.splits)",
                     a->split ? "--split" : "eval.splits[0]", split);
    else
        rc = data_open_eval(&d, one, split, 0, 1, NULL);
    if (rc == YT_OK) {
        x = yt_malloc(data_batch_floats(d) * sizeof *x);
        rc = data_batch(d, 0, 0, x, NULL, &count);
        data_close(d);
    }
    rc = dist_agree(rc);
    if (rc == YT_OK && count < 1)
        rc = yt_fail(YT_ERR_USAGE, "split %s has no images to reconstruct", split);
    if (rc != YT_OK) {
        free(x);
        free(one);
        run_close(&c.r);
        return rc;
    }
    const int n = (int)count;
    grid g;
    grid_init(&g, m, cfg, 1 + c.nb, n);
    for (int i = 0; i < n; i++) grid_cell(&g, 0, i, x, n, i, false);
    grid_label(&g, 0, "x");
    char rows_text[4096] = "row 0: inputs";
    dist_log("yoto reconstruct: %d images of split %s from %s\n  row 0: inputs\n", n, split,
             c.r.ckpt);
    beta_rows(&g, m, cfg, c.betas, c.nb, 1, n, NULL, x, rows_text, sizeof rows_text);
    free(x);
    free(one);
    return finish(a, &c, &g, "yoto reconstructions: inputs, then one row per beta", rows_text);
}
