/* embedding_cuda.h — CUDA launchers for the token embedding: BF16 forward gather, deterministic FP32
 * backward scatter (no float atomics). Same functions as embedding.h's CPU reference.
 * The backward needs a plan that groups the positions by token id; it is built once per batch on the host
 * (where the loader's tokens are) by kl_embedding_backward_plan and uploaded with the tokens. */
#ifndef KL_EMBEDDING_CUDA_H
#define KL_EMBEDDING_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out(N,C) = wte(V,C)[tokens[n]] (device pointers). Token ids are validated on the host (the plan below
 * does it); a token outside [0, V) that reaches the device gets a NaN row rather than a wild read. */
kl_status kl_embedding_forward_cuda(kl_bf16 *out, const int32_t *tokens, const kl_bf16 *wte, int N, int V, int C,
                                    struct CUstream_st *stream);

/* Host. plan (kl_embedding_plan_elems(N) int32) receives, for tokens(N):
 *   plan[0 .. U)           the U distinct token ids, increasing (U returned in *n_unique),
 *   plan[N .. N+U]         offsets: token plan[u]'s positions are plan[2N+1+offsets[u] .. 2N+1+offsets[u+1]),
 *   plan[2N+1 .. 3N+1)     the positions grouped by token, increasing within a token.
 * KL_ERR_INVALID (naming the position and token) if a token lies outside [0, V); KL_ERR_OOM. */
size_t kl_embedding_plan_elems(int N);
kl_status kl_embedding_backward_plan(int32_t *plan, int *n_unique, const int32_t *tokens, int N, int V);

/* dwte(V,C) += dout(N,C) scattered to the token rows (FP32 += BF16), plan_dev being the plan above on the
 * device. Each touched row of dwte adds its contributions in increasing position, exactly as the CPU
 * reference does, so the result is deterministic (and bit-equal to kl_embedding_backward_cpu given the
 * same FP32 values of dout). */
kl_status kl_embedding_backward_cuda(float *dwte, const kl_bf16 *dout, const int32_t *plan_dev, int n_unique, int N,
                                     int C, struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif
