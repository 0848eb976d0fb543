/* attention_cuda.h — causal GQA attention of kernels/attention.h on the GPU in BF16, C callable: cuDNN's fused
 * flash attention (kernels/cuda/attention_cudnn.cu, cuDNN backend graph API) when cuDNN is built in and
 * accepts the shape, otherwise kiln's own kernels (kernels/cuda/attention.cu): a tensor-core flash-attention
 * path for HS <= 128 (HS % 8 == 0, 16-byte aligned tensors) and a simple path for any HS <= 256.
 * Layouts as the CPU reference: qkv (B,T,(NH+2NKV)*HS) BF16, out (B,T,NH*HS) BF16, lse (B,NH,T) FP32;
 * q/k/v and dq/dk/dv are strided views into the packed buffers (no copies). Deterministic: the same
 * inputs give bit-identical outputs on every run (no order-dependent atomics; cuDNN engines that declare
 * themselves non-deterministic are skipped). */
#ifndef KL_ATTENTION_CUDA_H
#define KL_ATTENTION_CUDA_H

#include <stddef.h>

#include "cuda_common.h"
#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KL_ATTN_AUTO = 0,     /* cuDNN when it accepts the shape, else the own kernels */
    KL_ATTN_CUDNN = 1,    /* cuDNN only: KL_ERR_UNSUPPORTED when it is not built in or declines the shape */
    KL_ATTN_OWN = 2,      /* the own kernels (tensor-core path where it applies, else the simple one) */
    KL_ATTN_OWN_SIMPLE = 3, /* the own simple kernels only (any HS <= 256; tests and debugging) */
} kl_attn_backend;

typedef struct kl_attention_ctx kl_attention_ctx;

/* Creates a context on the current device (a cuDNN handle and a per-shape cache of cuDNN execution plans
 * when cuDNN is built in and requested). Not thread safe: one context per thread and device. */
kl_status kl_attention_ctx_create(kl_attention_ctx **out, kl_attn_backend backend);
void kl_attention_ctx_destroy(kl_attention_ctx *ctx);
/* "cudnn", "own-mma" or "own-simple": the implementation the last forward/backward call ran. */
const char *kl_attention_ctx_last_backend(const kl_attention_ctx *ctx);
/* Why cuDNN was not used on the last call ("" when it was, or when it was not asked for). */
const char *kl_attention_ctx_cudnn_note(const kl_attention_ctx *ctx);

/* Device scratch the calls need for this shape (bytes; the same bound for forward and backward). The
 * caller allocates it through kiln's allocator and passes it in; it may be shared with other ops between
 * calls. At least 256-byte aligned. cuDNN's backward needs the most: its dP workspace, about
 * 2*B*NH*T^2 bytes (470 MB at B=16, T=1024, 14 heads); a smaller workspace makes the call fall back to
 * the own kernels (KL_ATTN_AUTO). */
size_t kl_attention_workspace_bytes(kl_attention_ctx *ctx, int B, int T, int NH, int NKV, int HS);

/* out(B,T,NH*HS), lse(B,NH,T) (natural-log log-sum-exp of the scaled scores, as the CPU reference) from
 * qkv; causal, scale 1/sqrt(HS). Asynchronous on `stream`. */
kl_status kl_attention_forward_cuda(kl_attention_ctx *ctx, kl_bf16 *out, float *lse, const kl_bf16 *qkv, int B,
                                    int T, int NH, int NKV, int HS, void *workspace, size_t workspace_bytes,
                                    struct CUstream_st *stream);

/* dqkv(B,T,(NH+2NKV)*HS) = dL/dqkv, OVERWRITTEN (every element), from dout(B,T,NH*HS) and the forward's
 * out and lse. Asynchronous on `stream`. */
kl_status kl_attention_backward_cuda(kl_attention_ctx *ctx, kl_bf16 *dqkv, const kl_bf16 *dout,
                                     const kl_bf16 *out, const float *lse, const kl_bf16 *qkv, int B, int T, int NH,
                                     int NKV, int HS, void *workspace, size_t workspace_bytes,
                                     struct CUstream_st *stream);

/* The own kernels directly (what the context falls back to). `simple_only` selects the simple path.
 * Backward needs workspace of kl_attention_own_workspace_bytes(B, T, NH) bytes (the D = rowsum(dout*out)
 * vector); forward needs none. */
size_t kl_attention_own_workspace_bytes(int B, int T, int NH);
kl_status kl_attention_forward_own_cuda(kl_bf16 *out, float *lse, const kl_bf16 *qkv, int B, int T, int NH, int NKV,
                                        int HS, int simple_only, struct CUstream_st *stream);
kl_status kl_attention_backward_own_cuda(kl_bf16 *dqkv, const kl_bf16 *dout, const kl_bf16 *out, const float *lse,
                                         const kl_bf16 *qkv, int B, int T, int NH, int NKV, int HS, void *workspace,
                                         size_t workspace_bytes, int simple_only, struct CUstream_st *stream);
/* Whether the tensor-core path takes this shape and these pointers (else the simple path runs). */
int kl_attention_own_mma_applies(int HS, const void *p0, const void *p1, const void *p2, const void *p3);

#ifdef __cplusplus
}
#endif
#endif
