/* swiglu.h — the SwiGLU gate of the MLP: out = silu(gate) * up on the packed gate/up buffer.
 * gu(N, 2F): per row the F gate columns, then the F up columns (HF gate_proj, up_proj concatenated).
 * CPU reference in kernels/cpu/swiglu.c. Gradient convention: dgu OVERWRITES. */
#ifndef KL_SWIGLU_H
#define KL_SWIGLU_H

#ifdef __cplusplus
extern "C" {
#endif

/* out(N,F) = silu(gu[:, :F]) * gu[:, F:], silu(g) = g / (1 + exp(-g)). */
void kl_swiglu_forward_cpu(float *out, const float *gu, int N, int F);
void kl_swiglu_forward_cpu_f64(double *out, const double *gu, int N, int F);

/* dgu(N,2F) = dL/dgu given dout(N,F) (OVERWRITE). dgu must not alias gu or dout. */
void kl_swiglu_backward_cpu(float *dgu, const float *dout, const float *gu, int N, int F);
void kl_swiglu_backward_cpu_f64(double *dgu, const double *dout, const double *gu, int N, int F);

#ifdef __cplusplus
}
#endif
#endif
