/* cross_entropy.h — fused softmax cross-entropy over a chunk of logits, with target masks and an optional
 * z-loss, written so the LM head can run in row chunks. CPU reference in kernels/cpu/cross_entropy.c.
 * Gradient convention: dlogits OVERWRITES (and may be the logits buffer itself). */
#ifndef KL_CROSS_ENTROPY_H
#define KL_CROSS_ENTROPY_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Target value marking a position that contributes no loss (PyTorch's ignore_index). */
#define KL_IGNORE_INDEX (-100)

/* For each row n of logits(N,V) with lse_n = log(sum_v exp(logits[n,v])):
 *   losses[n]  = lse_n - logits[n, targets[n]] + z_loss * lse_n^2        (0 where targets[n] == -100)
 *   dlogits[n] = grad_scale * (softmax(logits[n]) * (1 + 2 z_loss lse_n) - onehot(targets[n]))
 *                (an all-zero row where masked)
 * Returns the sum of losses over the valid rows, added in row order in double; the caller divides by the
 * valid count and passes grad_scale = 1 / (valid targets of the whole step).
 * dlogits(N,V) may alias logits (each row is read completely before it is written) and may be NULL to
 * compute the loss only. losses(N) is required. A target outside [0, V) other than -100 is a caller bug:
 * it is never used as an index; its row gets loss NaN and NaN gradients, so the sum becomes NaN.
 * Both versions return double (the FP32 one sums float row losses in double). */
double kl_cross_entropy_cpu(float *dlogits, float *losses, const float *logits, const int32_t *targets, int N,
                            int V, float z_loss, float grad_scale);
double kl_cross_entropy_cpu_f64(double *dlogits, double *losses, const double *logits, const int32_t *targets,
                                int N, int V, double z_loss, double grad_scale);

#ifdef __cplusplus
}
#endif
#endif
