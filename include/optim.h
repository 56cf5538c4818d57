/* optim.h — TensorFlow 1's Adam with decoupled weight decay, and the
 * piecewise-constant learning rate of docs/REFERENCE.md.
 *
 * One update over the whole arena:
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)   (eps outside)
 *   p *= 1 - lr * weight_decay   for every tensor that is not conditioning
 * With lr 2e-4 and decay 1e-5 the factor rounds to exactly 1 in float32, as
 * in the original: the option is kept, it just changes nothing there.
 */
#ifndef YOTO_OPTIM_H
#define YOTO_OPTIM_H

#include "arena.h"
#include "config.h"

typedef struct {
    double beta1, beta2, epsilon, weight_decay;
} adam_params;

adam_params optim_adam_params(const cfg_optimizer *o);
/* The learning rate of the update made at global step `step` (0-based: the
 * number of updates already made), like tf.train.piecewise_constant:
 * lr * decay_factor^k, k = number of decay_steps boundaries b with step > b. */
double optim_lr(const cfg_optimizer *o, long step);
/* Update number t (1-based) with learning rate lr, from a->grad. */
void optim_adam_step(arena *a, const adam_params *p, long t, double lr);
/* The same update of elements [lo, hi) of the arena only (parameters and
 * moments), from grad (grad[0] is element lo's gradient): the part a rank
 * owns when the optimizer is sharded (dist.h). Element for element the same
 * arithmetic as optim_adam_step. Both split the elements over the rank's
 * threads (train.threads; element-wise: the same bits for any count).
 * stream: write the parameters with non-temporal stores, for parameters in
 * memory that other processes' cores read (dist_sync_share): an ordinary
 * store to a line another core holds waits for that copy to be dropped,
 * and on a VM whose two cores share no cache that made the update 3 times
 * as slow (docs/DESIGN.md, lever 63). The same bits either way. */
void optim_adam_part(arena *a, const real *grad, size_t lo, size_t hi, const adam_params *p, long t,
                     double lr, bool stream);

#endif
