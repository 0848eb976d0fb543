/* matmul_cuda.h — the linear layer of kernels/matmul.h on the GPU in BF16 through cuBLASLt, C callable.
 * A kl_gemm_ctx owns the cuBLASLt handle and a small cache (per shape, layout, dtypes, epilogue, beta != 0
 * and pointer alignment) of matmul descriptors, matrix layouts and the heuristic's chosen algorithm; the
 * workspace is caller memory (kiln's allocator). Kernels in kernels/cuda/matmul.cu. */
#ifndef KL_MATMUL_CUDA_H
#define KL_MATMUL_CUDA_H

#include <stddef.h>

#include "cuda_common.h"
#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_gemm_ctx kl_gemm_ctx;

/* Workspace that lets cuBLASLt pick its fastest kernels on every supported GPU (32 MiB; Hopper wants it). */
#define KL_GEMM_WORKSPACE_BYTES ((size_t)32 << 20)

/* Creates a context on the current device. `workspace` (device memory, `workspace_bytes` long, 256-byte
 * aligned is best; NULL/0 allowed: cuBLASLt then uses kernels that need none) stays owned by the caller and
 * must outlive the context. Not thread safe: one context per thread and device. */
kl_status kl_gemm_ctx_create(kl_gemm_ctx **out, void *workspace, size_t workspace_bytes);
void kl_gemm_ctx_destroy(kl_gemm_ctx *ctx);
/* Replaces the workspace; empties the cache (the chosen algorithms depended on its size). */
kl_status kl_gemm_ctx_set_workspace(kl_gemm_ctx *ctx, void *workspace, size_t workspace_bytes);
/* Debug/test switch: when on, every product runs on kiln's own simple tiled kernel instead of cuBLASLt
 * (the path also taken when cuBLASLt has no algorithm for a shape). */
void kl_gemm_ctx_force_fallback(kl_gemm_ctx *ctx, int on);
/* How many products ran through cuBLASLt / the own fallback kernel / kiln's own Hopper GEMM, cache hits/misses,
 * plans whose algorithm was chosen by timing / taken from a remembered choice, and plans that run the own Hopper
 * GEMM, since creation. */
typedef struct {
    long long cublaslt_calls, fallback_calls, sm90_calls, cache_hits, cache_misses, timed_shapes, remembered_shapes;
    long long sm90_shapes;
} kl_gemm_stats;
kl_gemm_stats kl_gemm_ctx_stats(const kl_gemm_ctx *ctx);

/* Algorithm choice by timing. cuBLASLt's heuristic ranks its candidate kernels by a model; the first is 5-15%
 * slower than the best on some shapes (H200: the MLP down projection's dinp, the LM head). While timing is on,
 * every product whose plan is new (a shape, layout or alignment not seen before and not remembered) runs each
 * candidate — cuBLASLt's, and on sm_90 kiln's own Hopper GEMM (kernels/gemm_sm90_cuda.h) for the forward product
 * without bias, densely packed, 16-byte aligned, IC and OC multiples of 8 — back to back on the call's own
 * operands, long enough for the GPU to settle at its power limit (about 0.15 s per candidate), and keeps the
 * fastest (the first unless another is 2% faster) — so the call WRITES ITS OUTPUT MANY TIMES, ACCUMULATING INTO IT
 * when beta != 0: turn timing on only for a pass whose outputs are thrown away (kl_model_cuda_tune). Nothing is
 * timed on a stream being captured. Choices are remembered by the context and can be saved to and loaded from a
 * tuning file, so later runs (and reruns, which must repeat bit for bit: the algorithm fixes the summation order)
 * use the same algorithms without timing. A file's choices hold for one GPU model, cuBLASLt version and workspace
 * size; lines of others are ignored and kept. A missing file loads nothing; a malformed one is an error naming the
 * line (KL_ERR_INVALID). KILN_GEMM_SM90=0 in the environment leaves the own Hopper GEMM out (a remembered choice of
 * it is then timed again). Saving rewrites the file through a temporary and a rename. */
void kl_gemm_ctx_set_timing(kl_gemm_ctx *ctx, int on);
kl_status kl_gemm_ctx_load_tuning(kl_gemm_ctx *ctx, const char *path, int *n_loaded);
kl_status kl_gemm_ctx_save_tuning(kl_gemm_ctx *ctx, const char *path);

/* out(N,OC) = inp(N,IC) w(OC,IC)^T + bias(OC), BF16 in and out, FP32 accumulation; bias (BF16, the
 * parameter's compute copy) may be NULL and is added in FP32 before the output is rounded (cuBLASLt bias
 * epilogue). Row-major, densely packed. Pointers should be 16-byte aligned (cudaMalloc gives 256) and IC, OC
 * multiples of 8 for the fast kernels; any alignment and any N, IC, OC >= 0 still work (slower cuBLASLt kernels,
 * or the own kernel — always the own kernel for a bias on such layouts, see matmul.cu).
 * Asynchronous on `stream`; out must not alias inp or w. */
kl_status kl_matmul_forward_cuda(kl_gemm_ctx *ctx, kl_bf16 *out, const kl_bf16 *inp, const kl_bf16 *w,
                                 const kl_bf16 *bias, int N, int IC, int OC, struct CUstream_st *stream);

/* Backward of the above, given dout(N,OC) BF16:
 *   dinp(N,IC)  = dout w            BF16, OVERWRITES; NULL skips it;
 *   dw(OC,IC)  += dout^T inp        FP32 parameter gradient, ACCUMULATES (cuBLASLt with C = D in FP32,
 *                                   beta = 1); NULL skips it (frozen weight);
 *   dbias(OC)  += column sums of dout, FP32, ACCUMULATES; NULL skips it. Fixed summation order
 *                 (deterministic); uses the context's workspace for partial sums when it is large enough.
 * Everything runs on `stream`, in the order dinp, dw, dbias. */
kl_status kl_matmul_backward_cuda(kl_gemm_ctx *ctx, kl_bf16 *dinp, float *dw, float *dbias, const kl_bf16 *dout,
                                  const kl_bf16 *inp, const kl_bf16 *w, int N, int IC, int OC,
                                  struct CUstream_st *stream);

/* The general product underneath, column-major like BLAS: D(m,n) = alpha op(A) op(B) + beta C (+ bias(m)),
 * op(X) = X or X^T (trans != 0), A and B BF16, C = D (in place) BF16 (d_is_f32 = 0) or FP32 (d_is_f32 = 1),
 * bias BF16 length m or NULL (BF16 output only). Exposed for callers with other layouts (e.g. the LM head
 * on a slice of the vocabulary). */
kl_status kl_gemm_bf16_cuda(kl_gemm_ctx *ctx, int transa, int transb, int m, int n, int k, float alpha,
                            const kl_bf16 *A, int lda, const kl_bf16 *B, int ldb, float beta, void *D, int ldd,
                            int d_is_f32, const kl_bf16 *bias, struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif
