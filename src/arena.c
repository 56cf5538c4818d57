/* arena.c — flat parameter / gradient / moment buffers with named views. */
#include "arena.h"

#include <stdlib.h>
#include <string.h>

void arena_init(arena *a) { memset(a, 0, sizeof *a); }

void arena_free(arena *a) {
    free(a->t);
    free(a->param); /* one allocation holds all four buffers */
    memset(a, 0, sizeof *a);
}

int arena_add(arena *a, const char *name, int ndim, const int *shape, bool conditioning,
              int fan_in, int fan_out) {
    YT_CHECK(a->param == NULL); /* no tensors after the buffers exist */
    YT_CHECK(ndim >= 1 && ndim <= ARENA_NDIM_MAX);
    YT_CHECK(strlen(name) < ARENA_NAME_MAX);
    YT_CHECK(arena_find(a, name) < 0);
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        a->t = yt_realloc(a->t, (size_t)a->cap * sizeof *a->t);
    }
    arena_tensor *t = &a->t[a->n];
    memset(t, 0, sizeof *t);
    strcpy(t->name, name);
    t->ndim = ndim;
    t->size = 1;
    for (int d = 0; d < ndim; d++) {
        YT_CHECK(shape[d] > 0);
        t->shape[d] = shape[d];
        t->size *= (size_t)shape[d];
    }
    t->offset = a->total;
    t->conditioning = conditioning;
    t->fan_in = fan_in;
    t->fan_out = fan_out;
    a->total += t->size;
    return a->n++;
}

void arena_alloc(arena *a) {
    YT_CHECK(a->param == NULL);
    /* round each buffer up to 64 bytes so that all four stay aligned */
    size_t stride = (a->total * sizeof(real) + 63) / 64 * 64;
    /* on 2 MiB pages from 4 MiB up (common.h): Adam streams all four, and
     * the sharded optimizer's rings send the gradient and parameters through
     * Open MPI's single-copy transfers, which pin page by page */
    char *block = yt_calloc_huge(4 * stride);
    a->param = (real *)block;
    a->grad = (real *)(block + stride);
    a->adam_m = (real *)(block + 2 * stride);
    a->adam_v = (real *)(block + 3 * stride);
}

int arena_find(const arena *a, const char *name) {
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->t[i].name, name) == 0) return i;
    return -1;
}

size_t arena_conditioning_size(const arena *a) {
    size_t n = 0;
    for (int i = 0; i < a->n; i++)
        if (a->t[i].conditioning) n += a->t[i].size;
    return n;
}
