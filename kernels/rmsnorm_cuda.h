/* rmsnorm_cuda.h — CUDA launchers for RMSNorm (with the residual add fused in) and the Qwen3 per-head q/k
 * norm, BF16 activations and weights, FP32 rstd and FP32 weight gradients. Same functions as the CPU
 * reference in rmsnorm.h; sums run in FP32 with fixed reduction trees, so results are bit-identical run to
 * run. Gradient conventions as on the CPU: dw ACCUMULATES; rmsnorm's dx ACCUMULATES; qknorm's dqkv_in
 * OVERWRITES. All pointers are device pointers; the work is queued on `stream`, nothing synchronises. */
#ifndef KL_RMSNORM_CUDA_H
#define KL_RMSNORM_CUDA_H

#include "cuda_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* res_out(N,C) = bf16(a + b) (the new residual stream), then out(N,C) = bf16(w * (res * rstd)) with
 * rstd(N) = 1/sqrt(mean_c(res^2) + eps) computed from the rounded res_out, exactly what backward will see.
 * b == NULL: no addition, out = rmsnorm(a) and res_out is ignored (may be NULL). res_out may alias a or b
 * (in-place residual add); out must not alias anything. C up to 32768. */
kl_status kl_fused_residual_rmsnorm_forward_cuda(kl_bf16 *res_out, kl_bf16 *out, float *rstd, const kl_bf16 *a,
                                                 const kl_bf16 *b, const kl_bf16 *w, int N, int C, float eps,
                                                 struct CUstream_st *stream);
kl_status kl_rmsnorm_forward_cuda(kl_bf16 *out, float *rstd, const kl_bf16 *x, const kl_bf16 *w, int N, int C,
                                  float eps, struct CUstream_st *stream);

/* dx(N,C) += dL/dx (BF16: dx = bf16(dx + d)), dw(C) += dL/dw (FP32) given dout(N,C), the forward's input x
 * (the rounded residual) and rstd. dx must not alias dout. scratch: device memory of at least
 * kl_rmsnorm_backward_scratch_bytes(N, C) bytes (per-block partial sums of dw, reduced in a fixed order). */
size_t kl_rmsnorm_backward_scratch_bytes(int N, int C);
kl_status kl_rmsnorm_backward_cuda(kl_bf16 *dx, float *dw, const kl_bf16 *dout, const kl_bf16 *x, const kl_bf16 *w,
                                   const float *rstd, int N, int C, void *scratch, struct CUstream_st *stream);

/* Qwen3 q/k norm on the packed qkv(N, (NH+2NKV)*HS) (layout in attention.h): query heads normalised with
 * q_weight(HS), key heads with k_weight(HS), value heads copied; rstd(N, NH+NKV), query heads first.
 * qkv_out may equal qkv_in (inference); training keeps both (backward needs qkv_in). HS up to 1024. */
kl_status kl_qknorm_forward_cuda(kl_bf16 *qkv_out, float *rstd, const kl_bf16 *qkv_in, const kl_bf16 *q_weight,
                                 const kl_bf16 *k_weight, int N, int NH, int NKV, int HS, float eps,
                                 struct CUstream_st *stream);

/* dqkv_in = dL/dqkv_in (OVERWRITE; v heads copied from dqkv_out; may alias dqkv_out), dq_weight(HS) +=,
 * dk_weight(HS) += (FP32). scratch: at least kl_qknorm_backward_scratch_bytes(N, NH, NKV, HS) bytes. */
size_t kl_qknorm_backward_scratch_bytes(int N, int NH, int NKV, int HS);
kl_status kl_qknorm_backward_cuda(kl_bf16 *dqkv_in, float *dq_weight, float *dk_weight, const kl_bf16 *dqkv_out,
                                  const kl_bf16 *qkv_in, const kl_bf16 *q_weight, const kl_bf16 *k_weight,
                                  const float *rstd, int N, int NH, int NKV, int HS, void *scratch,
                                  struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif
