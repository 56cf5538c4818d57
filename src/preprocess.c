/* preprocess.c — image ops of the data pipelines (see preprocess.h). */
#include "preprocess.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

void preprocess_text(const cfg_pipeline *pipe, char *buf, size_t size) {
    size_t used = 0;
    if (size == 0) return;
    buf[0] = '\0';
    for (int i = 0; i < pipe->n && used + 1 < size; i++) {
        char one[96];
        config_preop_text(&pipe->op[i], one, sizeof one);
        int k = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", one);
        if (k < 0) break;
        used += (size_t)k;
    }
}

int preprocess_out_shape(const cfg_pipeline *pipe, int h, int w, const char *what, int *oh,
                         int *ow) {
    for (int i = 0; i < pipe->n; i++) {
        const cfg_preop *op = &pipe->op[i];
        char t[96];
        config_preop_text(op, t, sizeof t);
        switch (op->kind) {
        case PRE_VALUE_RANGE:
            if (!isfinite(op->a) || !isfinite(op->b))
                return yt_fail(YT_ERR_USAGE, "%s: op %d '%s' needs finite bounds", what, i + 1, t);
            break;
        case PRE_FLIP_LR:
            break;
        case PRE_RESIZE:
            if (op->n < 1 || op->n > 65536)
                return yt_fail(YT_ERR_USAGE, "%s: op %d '%s': size must be in 1..65536", what,
                               i + 1, t);
            h = w = op->n;
            break;
        case PRE_RANDOM_CROP:
            if (op->n < 1 || op->n > h || op->n > w)
                return yt_fail(YT_ERR_USAGE,
                               "%s: op %d '%s' needs images of at least %dx%d pixels, gets %dx%d",
                               what, i + 1, t, op->n, op->n, h, w);
            h = w = op->n;
            break;
        case PRE_PAD:
            if (op->n < h || op->n < w || op->n > 65536)
                return yt_fail(YT_ERR_USAGE,
                               "%s: op %d '%s' pads to %dx%d but gets larger images (%dx%d)", what,
                               i + 1, t, op->n, op->n, h, w);
            h = w = op->n;
            break;
        default:
            return yt_fail(YT_ERR_USAGE, "%s: op %d: unknown kind %d", what, i + 1, op->kind);
        }
    }
    *oh = h;
    *ow = w;
    return YT_OK;
}

int preprocess_plan_init(preprocess_plan *p, const cfg_pipeline *pipe, int h, int w, int c,
                         const char *what) {
    memset(p, 0, sizeof *p);
    int rc = preprocess_out_shape(pipe, h, w, what, &p->oh, &p->ow);
    if (rc != YT_OK) return rc;
    p->pipe = *pipe;
    p->h = h;
    p->w = w;
    p->c = c;
    /* the tail: crop/flip/value_range ops after the last other op */
    p->tail = pipe->n;
    while (p->tail > 0 && (pipe->op[p->tail - 1].kind == PRE_RANDOM_CROP ||
                           pipe->op[p->tail - 1].kind == PRE_FLIP_LR ||
                           pipe->op[p->tail - 1].kind == PRE_VALUE_RANGE))
        p->tail--;
    p->A = 1;
    p->B = 0;
    for (int i = p->tail; i < pipe->n; i++)
        if (pipe->op[i].kind == PRE_VALUE_RANGE) { /* v -> a + (A v + B) / 255 * (b - a) */
            double k = (pipe->op[i].b - pipe->op[i].a) / 255.0;
            p->A *= k;
            p->B = pipe->op[i].a + p->B * k;
        }
    for (int v = 0; v < 256; v++)
        p->lut[v] = (real)(p->A * v + p->B);
    /* the largest intermediate image decides the scratch size */
    size_t cap = (size_t)h * (size_t)w;
    int ch = h, cw = w;
    for (int i = 0; i < pipe->n; i++) {
        if (pipe->op[i].kind == PRE_RESIZE || pipe->op[i].kind == PRE_RANDOM_CROP ||
            pipe->op[i].kind == PRE_PAD)
            ch = cw = pipe->op[i].n;
        cap = YT_MAX(cap, (size_t)ch * (size_t)cw);
    }
    p->cap = cap * (size_t)c;
    if (p->tail > 0) {
        p->buf[0] = yt_malloc(p->cap * sizeof(real));
        p->buf[1] = yt_malloc(p->cap * sizeof(real));
    }
    return YT_OK;
}

void preprocess_plan_free(preprocess_plan *p) {
    free(p->buf[0]);
    free(p->buf[1]);
    p->buf[0] = p->buf[1] = NULL;
}

/* ---- kernels -------------------------------------------------------------- */

void preprocess_value_range(real *x, size_t n, double a, double b) {
    /* TF: vmin + (x - in_min) / (in_max - in_min) * (vmax - vmin), in float */
    const real lo = (real)a, span = (real)(b - a);
    for (size_t i = 0; i < n; i++)
        x[i] = lo + x[i] / (real)255 * span;
}

void preprocess_resize(const real *in, int h, int w, int c, real *out, int oh, int ow) {
    /* TF1 legacy bilinear (align_corners=False, half_pixel_centers=False):
     * src = dst * scale, scale = in / out; lower = floor(src),
     * upper = min(lower + 1, in - 1); result = top + (bottom - top) * ylerp,
     * top = tl + (tr - tl) * xlerp — the same order of operations as TF. */
    const double sy = (double)h / oh, sx = (double)w / ow;
    enum { TAB = 512 }; /* column weights, computed once per call */
    int tx0[TAB], tx1[TAB];
    real tlx[TAB];
    for (int x = 0; x < ow && x < TAB; x++) {
        double fx = x * sx;
        tx0[x] = (int)fx;
        tx1[x] = YT_MIN(tx0[x] + 1, w - 1);
        tlx[x] = (real)(fx - tx0[x]);
    }
    for (int y = 0; y < oh; y++) {
        double fy = y * sy;
        int y0 = (int)fy, y1 = YT_MIN(y0 + 1, h - 1);
        real ly = (real)(fy - y0);
        for (int x = 0; x < ow; x++) {
            int x0, x1;
            real lx;
            if (x < TAB) {
                x0 = tx0[x], x1 = tx1[x], lx = tlx[x];
            } else {
                double fx = x * sx;
                x0 = (int)fx, x1 = YT_MIN(x0 + 1, w - 1), lx = (real)(fx - x0);
            }
            const real *tl = in + ((size_t)y0 * w + x0) * c, *tr = in + ((size_t)y0 * w + x1) * c;
            const real *bl = in + ((size_t)y1 * w + x0) * c, *br = in + ((size_t)y1 * w + x1) * c;
            real *o = out + ((size_t)y * ow + x) * c;
            for (int k = 0; k < c; k++) {
                real top = tl[k] + (tr[k] - tl[k]) * lx;
                real bot = bl[k] + (br[k] - bl[k]) * lx;
                o[k] = top + (bot - top) * ly;
            }
        }
    }
}

void preprocess_crop(const real *in, int h, int w, int c, int y0, int x0, real *out, int oh,
                     int ow) {
    (void)h;
    for (int y = 0; y < oh; y++)
        memcpy(out + (size_t)y * ow * c, in + ((size_t)(y0 + y) * w + x0) * c,
               (size_t)ow * c * sizeof(real));
}

void preprocess_flip_lr(real *x, int h, int w, int c) {
    for (int y = 0; y < h; y++) {
        real *r = x + (size_t)y * w * c;
        for (int a = 0, b = w - 1; a < b; a++, b--)
            for (int k = 0; k < c; k++) {
                real t = r[(size_t)a * c + k];
                r[(size_t)a * c + k] = r[(size_t)b * c + k];
                r[(size_t)b * c + k] = t;
            }
    }
}

void preprocess_pad(const real *in, int h, int w, int c, real *out, int oh, int ow) {
    int top = (oh - h) / 2, left = (ow - w) / 2;
    memset(out, 0, (size_t)oh * ow * c * sizeof(real));
    for (int y = 0; y < h; y++)
        memcpy(out + ((size_t)(top + y) * ow + left) * c, in + (size_t)y * w * c,
               (size_t)w * c * sizeof(real));
}

/* ---- one image -------------------------------------------------------------- */

void preprocess_image(preprocess_plan *p, const uint8_t *in, uint64_t seed, uint32_t epoch,
                      uint32_t row, real *out, size_t cstride) {
    const int c = p->c;
    int h = p->h, w = p->w;
    const real *x = NULL; /* the ops before the tail, on real images */
    if (p->tail > 0) {
        int cur = 0;
        real *b = p->buf[0];
        size_t n = (size_t)h * w * c;
        for (size_t i = 0; i < n; i++)
            b[i] = (real)in[i];
        for (int i = 0; i < p->tail; i++) {
            const cfg_preop *op = &p->pipe.op[i];
            real *y = p->buf[cur ^ 1];
            rng_stream s = rng_stream_make(seed, RNG_AUGMENT, epoch, row, (uint32_t)i);
            switch (op->kind) {
            case PRE_VALUE_RANGE:
                preprocess_value_range(b, (size_t)h * w * c, op->a, op->b);
                continue;
            case PRE_FLIP_LR:
                if (rng_uniform(&s) < 0.5) preprocess_flip_lr(b, h, w, c);
                continue;
            case PRE_RESIZE:
                preprocess_resize(b, h, w, c, y, op->n, op->n);
                break;
            case PRE_RANDOM_CROP: {
                int y0 = (int)rng_below(&s, (uint64_t)(h - op->n + 1));
                int x0 = (int)rng_below(&s, (uint64_t)(w - op->n + 1));
                preprocess_crop(b, h, w, c, y0, x0, y, op->n, op->n);
                break;
            }
            case PRE_PAD:
                preprocess_pad(b, h, w, c, y, op->n, op->n);
                break;
            }
            h = w = op->n;
            cur ^= 1;
            b = y;
        }
        x = b;
    }
    /* the tail: one window (y0, x0, th x tw) of the h x w image, maybe
     * mirrored; the same draws, in the same order, as op-by-op */
    int y0 = 0, x0 = 0, th = h, tw = w, flip = 0;
    for (int i = p->tail; i < p->pipe.n; i++) {
        const cfg_preop *op = &p->pipe.op[i];
        if (op->kind == PRE_VALUE_RANGE) continue;
        rng_stream s = rng_stream_make(seed, RNG_AUGMENT, epoch, row, (uint32_t)i);
        if (op->kind == PRE_FLIP_LR) {
            flip ^= rng_uniform(&s) < 0.5;
        } else { /* random_crop: offsets in the (maybe mirrored) current image */
            int oy = (int)rng_below(&s, (uint64_t)(th - op->n + 1));
            int ox = (int)rng_below(&s, (uint64_t)(tw - op->n + 1));
            y0 += oy;
            x0 += flip ? tw - ox - op->n : ox;
            th = tw = op->n;
        }
    }
    const real A = (real)p->A, B = (real)p->B;
    if (!x && !flip && th == h && tw == w) { /* value_range only: a table, no window */
        const size_t hw = (size_t)h * w;
        for (int k = 0; k < c; k++) {
            real *o = out + (size_t)k * cstride;
            const uint8_t *s = in + k;
            const real *lut = p->lut; /* (via p->lut this loop ran 2x slower) */
            for (size_t i = 0; i < hw; i++)
                o[i] = lut[s[i * c]];
        }
        return;
    }
    const ptrdiff_t step = flip ? -(ptrdiff_t)c : (ptrdiff_t)c;
    for (int k = 0; k < c; k++) {
        real *o = out + (size_t)k * cstride;
        for (int y = 0; y < th; y++, o += tw) {
            size_t first = ((size_t)(y0 + y) * w + (size_t)(flip ? x0 + tw - 1 : x0)) * c + k;
            if (x) {
                const real *s = x + first;
                for (int i = 0; i < tw; i++)
                    o[i] = A * s[i * step] + B;
            } else {
                const uint8_t *s = in + first;
                const real *lut = p->lut;
                for (int i = 0; i < tw; i++)
                    o[i] = lut[s[i * step]];
            }
        }
    }
}

/* ---- parsing ------------------------------------------------------------------ */

int preprocess_parse(const char *text, cfg_pipeline *out) {
    memset(out, 0, sizeof *out);
    const char *p = text;
    while (*p) {
        while (*p && (isspace((unsigned char)*p) || *p == ',' || *p == ';'))
            p++;
        if (!*p) break;
        /* an op runs to the next top-level ',' or ';' */
        const char *q = p;
        int depth = 0;
        while (*q && !(depth == 0 && (*q == ',' || *q == ';'))) {
            if (*q == '(') depth++;
            if (*q == ')') depth--;
            q++;
        }
        char tok[160];
        size_t n = (size_t)(q - p);
        if (n >= sizeof tok) n = sizeof tok - 1;
        memcpy(tok, p, n);
        tok[n] = '\0';
        if (out->n == CFG_PREOPS_MAX)
            return yt_fail(YT_ERR_USAGE, "too many preprocessing ops in '%s' (at most %d)", text,
                           CFG_PREOPS_MAX);
        int rc = config_preop_parse(tok, &out->op[out->n]);
        if (rc != YT_OK) return rc;
        out->n++;
        p = q;
    }
    return YT_OK;
}
