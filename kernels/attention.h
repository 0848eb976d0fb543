/* attention.h — causal multi-head self-attention with grouped-query heads over the packed qkv buffer.
 * Layout qkv(B,T,(NH+2*NKV)*HS): per position NH query heads, then NKV key heads, then NKV value heads,
 * each HS contiguous (HF q_proj, k_proj, v_proj outputs concatenated). Query head h reads kv head
 * h / (NH/NKV); scores are scaled by 1/sqrt(HS). CPU reference in kernels/cpu/attention.c. */
#ifndef KL_ATTENTION_H
#define KL_ATTENTION_H

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out(B,T,NH*HS) = softmax(q k^T / sqrt(HS), causal) v; lse(B,NH,T) = log-sum-exp of each query's scaled
 * scores (max-subtracted), kept for backward. Sums and the softmax run in double in both versions.
 * NH must be a multiple of NKV. Returns KL_ERR_OOM if its small scratch cannot be allocated. */
kl_status kl_attention_forward_cpu(float *out, float *lse, const float *qkv, int B, int T, int NH, int NKV,
                                   int HS);
kl_status kl_attention_forward_cpu_f64(double *out, double *lse, const double *qkv, int B, int T, int NH,
                                       int NKV, int HS);

/* dqkv(B,T,(NH+2NKV)*HS) = dL/dqkv (OVERWRITE, every element written) given dout(B,T,NH*HS) and the
 * forward's out and lse. Flash-attention style: probabilities are recomputed from q, k and lse, and
 * D_i = sum(dout_i * out_i). dq is computed per query, dk/dv per key (summing over the query heads of the
 * group in a fixed order), so the result is deterministic. Returns KL_ERR_OOM if scratch fails. */
kl_status kl_attention_backward_cpu(float *dqkv, const float *dout, const float *out, const float *lse,
                                    const float *qkv, int B, int T, int NH, int NKV, int HS);
kl_status kl_attention_backward_cpu_f64(double *dqkv, const double *dout, const double *out, const double *lse,
                                        const double *qkv, int B, int T, int NH, int NKV, int HS);

#ifdef __cplusplus
}
#endif
#endif
