/* gemm_sm90_cuda.h — kiln's own Hopper GEMM (TMA loads, wgmma, a persistent tile loop), the ground for fusing
 * element-wise work into the MLP products, which cuBLASLt's epilogues cannot express (docs/fused_swiglu_gemm.md).
 * The plain product is one more candidate of the GEMM tuning pass (matmul_cuda.h), for the forward products it can
 * compute; the fused variants run the model's gate+up product with the SwiGLU forward and the down projection's dinp
 * product with the SwiGLU backward (train.fused_swiglu, on by default; what each gained in training is in
 * docs/benchmarks.md, "Own Hopper GEMM").
 * BF16 in and out, FP32 accumulation, row-major, densely packed, 16-byte aligned pointers. Asynchronous on
 * `stream`. Needs an sm_90 device and a build with sm_90a code (KILN_CUDA_ARCHS containing 90a). */
#ifndef KL_GEMM_SM90_CUDA_H
#define KL_GEMM_SM90_CUDA_H
#include <stdbool.h>

#include "cuda_common.h"
#ifdef __cplusplus
extern "C" {
#endif

/* Whether the kernels can run on the current device (checked once per process, by running them). */
bool kl_gemm_sm90_available(void);

/* Whether kl_gemm_sm90_cuda takes this shape: N, K >= 1 and multiples of 8 (any M >= 1). */
bool kl_gemm_sm90_fits(int N, int K);

/* out(M,N) = inp(M,K) w(N,K)^T. M >= 1; N and K as kl_gemm_sm90_fits says. */
kl_status kl_gemm_sm90_cuda(kl_bf16 *out, const kl_bf16 *inp, const kl_bf16 *w, int M, int N, int K,
                            struct CUstream_st *stream);

/* Whether kl_gemm_sm90_swiglu_cuda takes this shape (F a multiple of 128, K of 8, both >= 1); the device is
 * kl_gemm_sm90_available()'s question. */
bool kl_gemm_sm90_swiglu_fits(int F, int K);

/* The MLP's gate+up product with the SwiGLU forward in its epilogue: gu(M,2F) = inp(M,K) w(2F,K)^T, w holding the
 * F gate rows then the F up rows, and h(M,F) = silu(gate) up computed from gu as stored (BF16): the same bits as
 * kl_swiglu_forward_cuda on this gu. M, K >= 1; F a multiple of 128; K a multiple of 8. */
kl_status kl_gemm_sm90_swiglu_cuda(kl_bf16 *gu, kl_bf16 *h, const kl_bf16 *inp, const kl_bf16 *w, int M, int F,
                                   int K, struct CUstream_st *stream);

/* The MLP's SwiGLU backward in the down projection's dinp product: dh(M,F) = dout(M,K) w_t(F,K)^T, where w_t is
 * the down weight transposed (kl_transpose_bf16_cuda), rounded to BF16 but never written, and dgu(M,2F) = the
 * gradient of gu(M,2F) (gate columns, then up) from dh: the same bits as kl_gemm_sm90_cuda's dh followed by
 * kl_swiglu_backward_cuda. Shapes as kl_gemm_sm90_swiglu_fits says; dgu must not alias gu. */
kl_status kl_gemm_sm90_swiglu_backward_cuda(kl_bf16 *dgu, const kl_bf16 *gu, const kl_bf16 *dout, const kl_bf16 *w_t,
                                            int M, int F, int K, struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif
