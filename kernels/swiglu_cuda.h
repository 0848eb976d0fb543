/* swiglu_cuda.h — CUDA launchers for the SwiGLU gate on BF16, same function as swiglu.h's CPU reference:
 * gu(N, 2F) holds per row the F gate columns then the F up columns. Math in FP32, outputs rounded to BF16.
 * Device pointers; queued on `stream`. Gradient convention: dgu OVERWRITES. */
#ifndef KL_SWIGLU_CUDA_H
#define KL_SWIGLU_CUDA_H

#include "cuda_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out(N,F) = silu(gu[:, :F]) * gu[:, F:]. */
kl_status kl_swiglu_forward_cuda(kl_bf16 *out, const kl_bf16 *gu, int N, int F, struct CUstream_st *stream);

/* dgu(N,2F) = dL/dgu given dout(N,F). dgu must not alias gu or dout. */
kl_status kl_swiglu_backward_cuda(kl_bf16 *dgu, const kl_bf16 *dout, const kl_bf16 *gu, int N, int F,
                                  struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif
