/* cross_entropy_cuda.h — CUDA launchers for the LM head's fused softmax cross-entropy over a chunk of BF16
 * logits, same function as cross_entropy.h's CPU reference (targets, KL_IGNORE_INDEX masks, z-loss). The
 * logit gradient is written in place, so the model runs the head chunk by chunk and full logits never
 * exist for all rows at once. Device pointers; queued on `stream`; nothing synchronises. */
#ifndef KL_CROSS_ENTROPY_CUDA_H
#define KL_CROSS_ENTROPY_CUDA_H

#include <stdint.h>

#include "cross_entropy.h"
#include "cuda_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* For each row n of logits(N,V), with lse_n = log(sum_v exp(logits[n,v])) (FP32, max-subtracted):
 *   losses[n]  = lse_n - logits[n, targets[n]] + z_loss * lse_n^2      (0 where targets[n] == -100)
 *   dlogits[n] = bf16(grad_scale * (softmax(logits[n]) * (1 + 2 z_loss lse_n) - onehot(targets[n])))
 *                (zeros where masked)
 * dlogits may be logits itself (in place) or NULL (loss only); a separate dlogits must not overlap logits.
 * A target outside [0, V) other than -100 gives loss NaN and a NaN row, as on the CPU. */
kl_status kl_cross_entropy_cuda(kl_bf16 *dlogits, float *losses, const kl_bf16 *logits, const int32_t *targets,
                                int N, int V, float z_loss, float grad_scale, struct CUstream_st *stream);

/* *loss_sum (device double) = sum of losses[n] over the rows with targets[n] != -100, added in FP64 in a
 * fixed tree (run-to-run identical), e.g. over all chunks' losses of a step at once. */
kl_status kl_cross_entropy_loss_sum_cuda(double *loss_sum, const float *losses, const int32_t *targets, int N,
                                         struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif
