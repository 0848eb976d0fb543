/* rope_cuda.h — CUDA launchers for rotary position embeddings on the packed BF16 qkv buffer, HF
 * "rotate_half" convention, same function as rope.h's CPU reference. The cos/sin tables are FP32 (T, HS/2),
 * made once on the host by kl_rope_freqs and uploaded. Device pointers; queued on `stream`. */
#ifndef KL_ROPE_CUDA_H
#define KL_ROPE_CUDA_H

#include "cuda_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* In place on qkv(B,T,(NH+2NKV)*HS): every q and k head at position t (= row index mod T) is rotated,
 *   y[i] = x[i] cos - x[i+HS/2] sin,  y[i+HS/2] = x[i+HS/2] cos + x[i] sin   (i < HS/2),
 * in FP32, rounded to BF16; v heads are untouched. cos/sin need at least T rows. */
kl_status kl_rope_forward_cuda(kl_bf16 *qkv, const float *cos, const float *sin, int B, int T, int NH, int NKV,
                               int HS, struct CUstream_st *stream);

/* In place on dqkv: the transposed (inverse) rotation of the q and k heads' gradients (OVERWRITE). */
kl_status kl_rope_backward_cuda(kl_bf16 *dqkv, const float *cos, const float *sin, int B, int T, int NH, int NKV,
                                int HS, struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif
