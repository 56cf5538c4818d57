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

#define FONT_W 5 /* glyph cell: 5 x 8 font pixels, rows 0-6 the body, row 7 descenders */
#define FONT_H 8
#define FONT_BODY 7
#define FONT_ADVANCE 6 /* font pixels from one character to the next */

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

/* ---- a 5x8 font for row labels ---------------------------------------------------------- */

/* What labels need: numbers as %g prints them, "β = ", "input". β is
 * U+03B2 (UTF-8 "\xce\xb2"), stored under the code 'B'. */
static const struct {
    char c;
    unsigned char rows[FONT_H]; /* 5 bits each, MSB left */
} FONT[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, 0}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0}},
    {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C, 0}},
    {'-', {0, 0, 0, 0x0E, 0, 0, 0, 0}},
    {'+', {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0, 0}},
    {'=', {0, 0, 0x1F, 0, 0x1F, 0, 0, 0}},
    {'e', {0, 0, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0}},
    {'i', {0x04, 0, 0x0C, 0x04, 0x04, 0x04, 0x0E, 0}},
    {'n', {0, 0, 0x16, 0x19, 0x11, 0x11, 0x11, 0}},
    {'p', {0, 0, 0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10}},
    {'u', {0, 0, 0x11, 0x11, 0x11, 0x13, 0x0D, 0}},
    {'t', {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0}},
    {'B', {0x0C, 0x12, 0x14, 0x12, 0x11, 0x11, 0x1E, 0x10}}, /* β */
};

typedef struct {
    unsigned char *px;
    int w, h, ch;
} canvas;

static void fill(canvas *cv, int x, int y, int size, unsigned char v) {
    for (int dy = 0; dy < size; dy++)
        for (int dx = 0; dx < size; dx++) {
            int px = x + dx, py = y + dy;
            if (px < 0 || py < 0 || px >= cv->w || py >= cv->h) continue;
            for (int k = 0; k < cv->ch; k++)
                cv->px[((size_t)py * cv->w + px) * cv->ch + k] = v;
        }
}

/* the next character of s as a FONT code (β -> 'B'); *s advances */
static char next_char(const char **s) {
    const unsigned char *p = (const unsigned char *)*s;
    if (p[0] == 0xCE && p[1] == 0xB2) {
        *s += 2;
        return 'B';
    }
    *s += 1;
    return (char)p[0];
}

static int text_chars(const char *s) {
    int n = 0;
    while (*s) {
        next_char(&s);
        n++;
    }
    return n;
}

/* black text, each font pixel fp x fp; (x, y) is the top left of the body */
static void draw_text(canvas *cv, int x, int y, const char *s, int fp) {
    for (; *s; x += FONT_ADVANCE * fp) {
        char c = next_char(&s);
        for (size_t g = 0; g < YT_ARRAY_LEN(FONT); g++)
            if (FONT[g].c == c)
                for (int r = 0; r < FONT_H; r++)
                    for (int col = 0; col < FONT_W; col++)
                        if (FONT[g].rows[r] & (0x10 >> col))
                            fill(cv, x + col * fp, y + r * fp, fp, 0);
    }
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

#define LABEL_MAX 48

typedef struct {
    int rows, cols, H, W, C;
    int scale;          /* canvas pixels per image pixel */
    int tile_w, tile_h; /* W * scale, H * scale */
    int gap;            /* between cells and around the grid */
    int fp;             /* canvas pixels per font pixel */
    int margin;         /* left of the first cell: gap, the labels, gap */
    canvas cv;
    double lo, hi;
    char (*label)[LABEL_MAX]; /* [rows] */
} grid;

/* Lays out rows x cols cells (each row labelled label[row]) and allocates
 * the white canvas. YT_ERR_USAGE when --scale or the canvas is too large. */
static int grid_init(grid *g, const vae_model *m, const yoto_config *cfg, int rows, int cols,
                     int scale, char (*label)[LABEL_MAX]) {
    memset(g, 0, sizeof *g);
    g->rows = rows;
    g->cols = cols;
    g->H = m->in_h;
    g->W = m->in_w;
    g->C = m->in_c >= 3 ? 3 : 1; /* RGB from the first 3 channels, else gray from channel 0 */
    g->scale = scale ? scale : YT_MAX(1, (GALLERY_MIN_TILE_PX + g->H - 1) / g->H);
    if (g->scale > GALLERY_MAX_SCALE)
        return yt_fail(YT_ERR_USAGE, "--scale %d: at most %d", g->scale, GALLERY_MAX_SCALE);
    g->tile_w = g->W * g->scale;
    g->tile_h = g->H * g->scale;
    g->gap = YT_MAX(2, g->tile_h / 32);
    /* about a sixth of the cell, never taller than it */
    g->fp = YT_MAX(1, YT_MIN((g->tile_h + 24) / 48, g->tile_h / FONT_H));
    int chars = 0;
    for (int r = 0; r < rows; r++)
        chars = YT_MAX(chars, text_chars(label[r]));
    g->margin =
        2 * g->gap + (chars * FONT_ADVANCE - 1) * g->fp + 5 * g->fp; /* fp before, 4 after */
    g->label = label;
    long w = g->margin + (long)cols * (g->tile_w + g->gap);
    long h = g->gap + (long)rows * (g->tile_h + g->gap);
    if (w * h > (1L << 28))
        return yt_fail(YT_ERR_USAGE,
                       "a grid of %ld x %ld pixels is too large: fewer images "
                       "(--n) or a smaller --scale",
                       w, h);
    g->cv.w = (int)w;
    g->cv.h = (int)h;
    g->cv.ch = g->C;
    g->cv.px = yt_malloc((size_t)w * h * g->C);
    memset(g->cv.px, 255, (size_t)w * h * g->C);
    value_range(cfg, &g->lo, &g->hi);
    for (int r = 0; r < rows; r++)
        draw_text(&g->cv, g->gap + g->fp,
                  g->gap + r * (g->tile_h + g->gap) + (g->tile_h - FONT_BODY * g->fp) / 2, label[r],
                  g->fp);
    return YT_OK;
}

/* cell (row, col) from a channel-major [c][n][h][w] batch, sample i */
static void grid_cell(grid *g, int row, int col, const real *chan, int n, int i, bool sigmoid) {
    const int hw = g->H * g->W, s = g->scale;
    int x0 = g->margin + col * (g->tile_w + g->gap), y0 = g->gap + row * (g->tile_h + g->gap);
    for (int y = 0; y < g->H; y++)
        for (int x = 0; x < g->W; x++)
            for (int c = 0; c < g->C; c++) {
                double v = chan[((size_t)c * n + i) * hw + (size_t)y * g->W + x];
                if (sigmoid) v = 1.0 / (1.0 + exp(-v));
                double u = (v - g->lo) / (g->hi - g->lo);
                u = u < 0 ? 0 : u > 1 ? 1 : u;
                unsigned char b = (unsigned char)(255 * u + 0.5);
                for (int dy = 0; dy < s; dy++)
                    for (int dx = 0; dx < s; dx++)
                        g->cv.px[((size_t)(y0 + y * s + dy) * g->cv.w + x0 + x * s + dx) * g->C +
                                 c] = b;
            }
}

/* "β = 8" (the margin) for each beta, from row first on */
static void beta_labels(char (*label)[LABEL_MAX], int first, const double *betas, int nb) {
    for (int k = 0; k < nb; k++)
        snprintf(label[first + k], LABEL_MAX, "\xce\xb2 = %g", betas[k]);
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
            model_reconstruct(m, n, x, cond); /* from the posterior mean, no losses */
        else
            model_decode(m, n, z, cond);
        for (int i = 0; i < n; i++)
            grid_cell(g, first_row + k, i, m->out, n, i, bern);
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
    char label[1 + RUN_MAX_BETAS][LABEL_MAX];
} gallery_ctx;

static int gallery_open(const gallery_args *a, gallery_ctx *g) {
    memset(g, 0, sizeof *g);
    int rc = YT_OK;
    if (a->n < 1 || a->n > 256)
        rc = yt_fail(YT_ERR_USAGE, "--n %d: expected 1..256 images per row", a->n);
    if (a->scale < 0 || a->scale > GALLERY_MAX_SCALE)
        rc = yt_fail(YT_ERR_USAGE, "--scale %d: expected 1..%d", a->scale, GALLERY_MAX_SCALE);
    rc = dist_agree(rc);
    if (rc == YT_OK) rc = run_open(a->target, a->sets, a->nsets, &g->r);
    if (rc == YT_OK) rc = dist_agree(run_betas(g->r.cfg, a->betas, g->betas, &g->nb));
    if (rc == YT_OK)
        rc = run_load_model(&g->r, (int)YT_MAX((long)a->n, g->r.cfg->eval.batch_size), false);
    if (rc != YT_OK) run_close(&g->r);
    return rc;
}

static int finish(const gallery_args *a, gallery_ctx *c, grid *g, const char *title,
                  const char *rows_text) {
    int rc = YT_OK;
    if (dist_rank() == 0) {
        char source[CFG_PATH_MAX + 96], layout[160];
        snprintf(source, sizeof source, "%s (step %ld)", c->r.ckpt, c->r.st.step);
        snprintf(
            layout, sizeof layout,
            "scale %d; images %dx%d px, the first at (%d, %d), %d px apart; label margin %d px",
            g->scale, g->tile_w, g->tile_h, g->margin, g->gap, g->gap, g->margin);
        const char *keys[] = {"Title", "Source", "Rows", "Layout", "Software"};
        const char *vals[] = {title, source, rows_text, layout, "yoto"};
        rc = gallery_write_png(a->out, g->cv.px, g->cv.w, g->cv.h, g->C, keys, vals, 5);
        if (rc == YT_OK)
            printf("wrote %s (%d x %d, images drawn %dx larger)\n", a->out, g->cv.w, g->cv.h,
                   g->scale);
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
    grid g;
    beta_labels(c.label, 0, c.betas, c.nb);
    rc = dist_agree(grid_init(&g, m, c.r.cfg, c.nb, n, a->scale, c.label));
    if (rc != YT_OK) {
        free(g.cv.px);
        run_close(&c.r);
        return rc;
    }
    const uint64_t seed = a->seed_set ? (uint64_t)a->seed : c.r.cfg->experiment.seed;
    real *z = yt_malloc((size_t)n * L * sizeof *z);
    for (int i = 0; i < n; i++) {
        rng_stream s = rng_stream_make(seed, RNG_EVAL, 0xffffffffu, (uint32_t)i, 0);
        for (int j = 0; j < L; j++) z[(size_t)i * L + j] = (real)rng_normal(&s);
    }
    char rows_text[4096] = "";
    dist_log("yoto sample: %d prior samples (seed %llu, the same z in every row) from %s\n", n,
             (unsigned long long)seed, c.r.ckpt);
    beta_rows(&g, m, c.r.cfg, c.betas, c.nb, 0, n, z, NULL, rows_text, sizeof rows_text);
    free(z);
    return finish(a, &c, &g, "yoto samples: one row per beta, the same z in every row", rows_text);
}

/* The first n images of split into *x (every rank reads them); *count. */
static int read_inputs(const yoto_config *cfg, const char *split, int n, real **x, long *count) {
    yoto_config *one = yt_calloc(1, sizeof *one);
    *one = *cfg;
    one->eval.batch_size = n;
    one->eval.max_batches = 1;
    data_source *d = NULL;
    *x = NULL;
    *count = 0;
    int rc = data_open_eval(&d, one, split, 0, 1, NULL);
    if (rc == YT_OK) {
        *x = yt_malloc(data_batch_floats(d) * sizeof **x);
        rc = data_batch(d, 0, 0, *x, NULL, count);
        data_close(d);
    }
    free(one);
    rc = dist_agree(rc);
    if (rc == YT_OK && *count < 1)
        rc = yt_fail(YT_ERR_USAGE, "split %s has no images to reconstruct", split);
    return rc;
}

int gallery_reconstruct(const gallery_args *a) {
    gallery_ctx c;
    int rc = gallery_open(a, &c);
    if (rc != YT_OK) return rc;
    vae_model *m = c.r.model;
    const yoto_config *cfg = c.r.cfg;
    const char *split = a->split                    ? a->split
                        : config_split(cfg, "test") ? "test"
                                                    : cfg->eval.splits[0];
    /* the same answer on every rank */
    rc = run_check_split(cfg, a->split ? "--split" : "eval.splits[0]", split);
    real *x = NULL;
    long count = 0;
    if (rc == YT_OK) rc = read_inputs(cfg, split, a->n, &x, &count);
    grid g = {0};
    snprintf(c.label[0], LABEL_MAX, "input");
    beta_labels(c.label, 1, c.betas, c.nb);
    if (rc == YT_OK)
        rc = dist_agree(grid_init(&g, m, cfg, 1 + c.nb, (int)count, a->scale, c.label));
    if (rc != YT_OK) {
        free(x);
        free(g.cv.px);
        run_close(&c.r);
        return rc;
    }
    const int n = (int)count;
    for (int i = 0; i < n; i++) grid_cell(&g, 0, i, x, n, i, false);
    char rows_text[4096] = "row 0: input";
    dist_log("yoto reconstruct: %d images of split %s from %s\n  row 0: input\n", n, split,
             c.r.ckpt);
    beta_rows(&g, m, cfg, c.betas, c.nb, 1, n, NULL, x, rows_text, sizeof rows_text);
    free(x);
    return finish(a, &c, &g, "yoto reconstructions: inputs, then one row per beta", rows_text);
}
