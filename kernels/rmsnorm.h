/* rmsnorm.h — RMSNorm over the hidden size (HF Llama semantics) and the Qwen3 per-head q/k norm.
 * CPU reference in kernels/cpu/rmsnorm.c (FP32 `_cpu`, FP64 `_cpu_f64`); CUDA launchers join later.
 * Gradient conventions: dw ACCUMULATES; rmsnorm's dx ACCUMULATES too (it adds into the residual-stream
 * gradient); the q/k norm's dqkv_in OVERWRITES. */
#ifndef KL_RMSNORM_H
#define KL_RMSNORM_H

#ifdef __cplusplus
extern "C" {
#endif

/* out(N,C) = x * rstd * w with rstd(N) = 1 / sqrt(mean_c(x^2) + eps), also written for backward.
 * The weight multiplies after normalising, as in HF's LlamaRMSNorm. out may not alias x. */
void kl_rmsnorm_forward_cpu(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps);
void kl_rmsnorm_forward_cpu_f64(double *out, double *rstd, const double *x, const double *w, int N, int C,
                                double eps);

/* dx(N,C) += dL/dx, dw(C) += dL/dw, given dout(N,C), the forward's x and rstd. dx must not alias dout. */
void kl_rmsnorm_backward_cpu(float *dx, float *dw, const float *dout, const float *x, const float *w,
                             const float *rstd, int N, int C);
void kl_rmsnorm_backward_cpu_f64(double *dx, double *dw, const double *dout, const double *x, const double *w,
                                 const double *rstd, int N, int C);

/* Qwen3 q/k norm on the packed qkv(N, (NH+2*NKV)*HS) buffer (layout in attention.h): each of the NH query
 * heads is RMS-normalised over HS with q_weight(HS), each of the NKV key heads with k_weight(HS); the value
 * heads are copied through unchanged. rstd(N, NH+NKV): query heads first, then key heads.
 * Out of place: backward needs the un-normalised qkv_in, so training keeps both buffers. Forward alone
 * tolerates qkv_out == qkv_in (each head is read completely before it is written), e.g. for inference. */
void kl_qknorm_forward_cpu(float *qkv_out, float *rstd, const float *qkv_in, const float *q_weight,
                           const float *k_weight, int N, int NH, int NKV, int HS, float eps);
void kl_qknorm_forward_cpu_f64(double *qkv_out, double *rstd, const double *qkv_in, const double *q_weight,
                               const double *k_weight, int N, int NH, int NKV, int HS, double eps);

/* dqkv_in(N, (NH+2NKV)*HS) = dL/dqkv_in (OVERWRITE: q and k heads through the norm, v heads copied from
 * dqkv_out); dq_weight(HS) +=, dk_weight(HS) +=. dqkv_in may alias dqkv_out (in place). */
void kl_qknorm_backward_cpu(float *dqkv_in, float *dq_weight, float *dk_weight, const float *dqkv_out,
                            const float *qkv_in, const float *q_weight, const float *k_weight, const float *rstd,
                            int N, int NH, int NKV, int HS);
void kl_qknorm_backward_cpu_f64(double *dqkv_in, double *dq_weight, double *dk_weight, const double *dqkv_out,
                                const double *qkv_in, const double *q_weight, const double *k_weight,
                                const double *rstd, int N, int NH, int NKV, int HS);

#ifdef __cplusplus
}
#endif
#endif
