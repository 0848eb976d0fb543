/* adamw_cuda.h — the optimizer step on the GPU: AdamW over a flat parameter buffer split in ranges (one per
 * tensor: its learning-rate multiplier and whether it decays), with FP32 master weights (also writing the
 * BF16 compute copy) or BF16 master weights updated with stochastic rounding; and the global gradient norm
 * and clip factor, which stay on the device (no host synchronisation inside a step).
 * The FP32 update is optim/adamw.c's (torch.optim.AdamW) operation for operation, in IEEE round-to-nearest
 * without fused multiply-adds, so given the same gradients it gives the CPU's bits. Device pointers unless
 * said otherwise; queued on `stream`. */
#ifndef KL_ADAMW_CUDA_H
#define KL_ADAMW_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One parameter tensor's place in the flat buffers (params, grads, m, v all share the layout). */
typedef struct {
    size_t offset, numel;  /* elements */
    float lr_mult;         /* per-group learning-rate multiplier */
    int decay;             /* 1: apply weight decay */
    uint32_t first_block;  /* set by kl_adamw_ranges_prepare */
} kl_adamw_range;

/* Host, once per parameter table: fills first_block (ranges sorted by offset, non-overlapping) and the
 * number of blocks a step launches. Copy the table to the device afterwards. KL_ERR_INVALID if unsorted,
 * overlapping or too large. */
kl_status kl_adamw_ranges_prepare(kl_adamw_range *ranges, int n_ranges, uint32_t *n_blocks);

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
    int64_t step;  /* t, counting from 1 (bias correction) */
    uint64_t seed; /* BF16 master only: stochastic rounding draws Philox key seed ^ step */
} kl_adamw_hparams;

/* One AdamW step: p *= 1 - lr·wd (decaying ranges); m += (1-β1)(g - m); v = β2 v + (1-β2) g²;
 * p -= (lr / (1-β1^t)) · m / (sqrt(v) / sqrt(1-β2^t) + ε), lr = hp->lr · range lr_mult, g = grads · clip.
 * clip (device float, may be NULL = 1) is kl_grad_clip_cuda's factor: 0 means "skip this step" and leaves
 * parameters and moments untouched. ranges_dev: the prepared table on the device.
 * FP32 master: master(n) FP32 updated; copy (may be NULL) receives bf16_rne(master). */
kl_status kl_adamw_step_cuda(float *master, kl_bf16 *copy, float *m, float *v, const float *grads,
                             const kl_adamw_range *ranges_dev, int n_ranges, uint32_t n_blocks,
                             const kl_adamw_hparams *hp, const float *clip, struct CUstream_st *stream);
/* BF16 master: the update runs in FP32 on float(params) and is stored with kl_f32_to_bf16_stochastic, the
 * draw for element i (its index in the flat buffer) being word i % 4 of
 * kl_philox_block(hp->seed ^ hp->step, 0, i / 4) (src/philox.h). */
kl_status kl_adamw_step_bf16_cuda(kl_bf16 *params, float *m, float *v, const float *grads,
                                  const kl_adamw_range *ranges_dev, int n_ranges, uint32_t n_blocks,
                                  const kl_adamw_hparams *hp, const float *clip, struct CUstream_st *stream);

/* *sumsq (device double) = sum of x[i]^2 in FP64 (each square exact) by a two-pass fixed tree: run-to-run
 * identical. accumulate != 0 adds to *sumsq instead (several gradient buffers). scratch: at least
 * kl_sum_squares_scratch_bytes(n) bytes of device memory. */
size_t kl_sum_squares_scratch_bytes(size_t n);
kl_status kl_sum_squares_cuda(double *sumsq, int accumulate, const float *x, size_t n, void *scratch,
                              struct CUstream_st *stream);

/* From the device sum of squares: *norm = sqrt(sumsq) (device double, for the log), and *clip (device
 * float) = torch's clip_grad_norm_ factor (float)(max_norm / (norm + 1e-6)) when max_norm > 0 and
 * norm > max_norm, else 1; but 0 (skip the step, as the CPU trainer does) when the norm, or *loss_sum if
 * loss_sum is not NULL, is not finite. */
kl_status kl_grad_clip_cuda(float *clip, double *norm, const double *sumsq, const double *loss_sum, double max_norm,
                            struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif
