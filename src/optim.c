/* optim.c — Adam (TF1 form), decoupled weight decay, learning-rate schedule. */
#include "optim.h"

#include <tgmath.h>

#include "par.h"
#include "simd.h"

adam_params optim_adam_params(const cfg_optimizer *o) {
    adam_params p = {
        .beta1 = o->beta1,
        .beta2 = o->beta2,
        .epsilon = o->epsilon,
        .weight_decay = o->weight_decay,
    };
    return p;
}

double optim_lr(const cfg_optimizer *o, long step) {
    double lr = o->lr;
    for (int k = 0; k < o->decay_steps.n; k++)
        if (step > o->decay_steps.v[k]) lr *= o->decay_factor;
    return lr;
}

/* one element's update (every path below runs this arithmetic) */
#define ADAM_ELEMENT(j, w_out)                                                                     \
    do {                                                                                           \
        m[j] = b1 * m[j] + c1 * g[j];                                                              \
        v[j] = b2 * v[j] + c2 * g[j] * g[j];                                                       \
        w_out = (w[j] - lr_t * m[j] / (sqrt(v[j]) + eps)) * keep;                                  \
    } while (0)

/* elements per block of the streaming path: whole vectors, a few lines */
enum { ADAM_BLOCK = 64 };

/* one pass over the tensors that meet [lo, hi); the AVX2 clone vectorises
 * it (sqrt included: -fno-math-errno). stream: the parameters go out with
 * non-temporal stores, a block at a time through an L1 buffer (the same
 * arithmetic, element for element) */
YT_SIMD_CLONES
static void adam_range(arena *a, const real *grad, size_t lo, size_t hi, const adam_params *p,
                       long t, double lr, bool stream) {
    /* 1 - b in double: in float, 1 - 0.999f is off by 1.3e-5 relative */
    const real b1 = (real)p->beta1, b2 = (real)p->beta2, eps = (real)p->epsilon;
    const real c1 = (real)(1.0 - p->beta1), c2 = (real)(1.0 - p->beta2);
    const real lr_t =
        (real)(lr * sqrt(1.0 - pow(p->beta2, (double)t)) / (1.0 - pow(p->beta1, (double)t)));
    /* computed in double, then rounded: 1 - 2e-9 is exactly 1 in float */
    const real decay = (real)(1.0 - lr * p->weight_decay);
    for (int i = 0; i < a->n; i++) {
        const arena_tensor *tn = &a->t[i];
        const size_t from = YT_MAX(lo, tn->offset), to = YT_MIN(hi, tn->offset + tn->size);
        if (from >= to) continue;
        real *w = a->param + from, *m = a->adam_m + from, *v = a->adam_v + from;
        const real *g = grad + (from - lo);
        const real keep = tn->conditioning ? 1 : decay;
        const size_t n = to - from;
        size_t j = 0;
        if (stream) {
            /* up to w's first vector boundary as below, then whole blocks */
            const size_t head =
                YT_MIN(n, ((SIMD_BYTES - (uintptr_t)w % SIMD_BYTES) % SIMD_BYTES) / sizeof(real));
            for (; j < head; j++)
                ADAM_ELEMENT(j, w[j]);
            for (; j + ADAM_BLOCK <= n; j += ADAM_BLOCK) {
                real out[ADAM_BLOCK] __attribute__((aligned(SIMD_BYTES)));
                for (size_t k = 0; k < ADAM_BLOCK; k++)
                    ADAM_ELEMENT(j + k, out[k]);
                for (size_t k = 0; k < ADAM_BLOCK; k += VL)
                    vstream(w + j + k, vload(out + k));
            }
        }
        for (; j < n; j++)
            ADAM_ELEMENT(j, w[j]);
    }
    if (stream) vstream_fence();
}

/* the threads' shares of [lo, hi), cut at 16-element (64-byte) boundaries */
typedef struct {
    arena *a;
    const real *grad;
    size_t lo, hi;
    const adam_params *p;
    long t;
    double lr;
    bool stream;
} adam_pass;

static void adam_share(void *ctx, int t, int T) {
    const adam_pass *c = ctx;
    const size_t n = c->hi - c->lo, blocks = (n + 15) / 16;
    const size_t b = YT_MIN(n, 16 * par_split(blocks, t, T));
    const size_t e = YT_MIN(n, 16 * par_split(blocks, t + 1, T));
    adam_range(c->a, c->grad + b, c->lo + b, c->lo + e, c->p, c->t, c->lr, c->stream);
}

void optim_adam_part(arena *a, const real *grad, size_t lo, size_t hi, const adam_params *p, long t,
                     double lr, bool stream) {
    YT_CHECK(t >= 1 && lo <= hi && hi <= a->total);
    adam_pass c = {a, grad, lo, hi, p, t, lr, stream};
    const size_t n = hi - lo;
    par_run(par_threads(n, (n + 15) / 16), adam_share, &c);
}

void optim_adam_step(arena *a, const adam_params *p, long t, double lr) {
    optim_adam_part(a, a->grad, 0, a->total, p, t, lr, false);
}
