/* arena.h — parameters, gradients and Adam moments, each ONE contiguous
 * buffer, with a table of named views (name, offset, shape) on top.
 *
 * The model registers its tensors in order while it is built; then
 * arena_alloc() carves the four buffers. Zeroing the gradient is one memset,
 * the allreduce is one buffer (or buckets of it), a checkpoint is the table.
 */
#ifndef YOTO_ARENA_H
#define YOTO_ARENA_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

#define ARENA_NAME_MAX 96
#define ARENA_NDIM_MAX 4

typedef struct {
    char name[ARENA_NAME_MAX]; /* "encoder/block0/conv0/kernel" */
    int ndim;
    int shape[ARENA_NDIM_MAX]; /* PyTorch conventions, see DESIGN.md */
    size_t offset;             /* in elements, into every buffer */
    size_t size;               /* elements */
    bool conditioning;         /* part of a FiLM MLP: no weight decay */
    int fan_in, fan_out;       /* for initialisers; 0 for biases */
} arena_tensor;

typedef struct {
    int n, cap;
    arena_tensor *t;
    size_t total; /* elements in each buffer */
    real *param, *grad, *adam_m, *adam_v; /* NULL until arena_alloc */
} arena;

void arena_init(arena *a);
void arena_free(arena *a);
/* Registers a tensor; returns its index. shape has ndim entries. */
int arena_add(arena *a, const char *name, int ndim, const int *shape, bool conditioning,
              int fan_in, int fan_out);
/* Allocates the four buffers (64-byte aligned, zeroed). */
void arena_alloc(arena *a);
/* Index of the tensor called name, or -1. */
int arena_find(const arena *a, const char *name);
/* Views: the tensor's slice of each buffer. */
static inline real *arena_param(const arena *a, int i) { return a->param + a->t[i].offset; }
static inline real *arena_grad(const arena *a, int i) { return a->grad + a->t[i].offset; }
/* Number of elements that are conditioning (FiLM MLP) parameters. */
size_t arena_conditioning_size(const arena *a);

#endif
