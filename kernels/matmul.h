/* matmul.h — the linear layer out = inp w^T + bias, with w in PyTorch Linear layout (OC, IC).
 * CPU reference in kernels/cpu/matmul.c: cblas_sgemm/dgemm when KILN_HAVE_CBLAS, plain loops otherwise.
 * Gradient conventions: dinp OVERWRITES; dw and dbias ACCUMULATE (+=). */
#ifndef KL_MATMUL_H
#define KL_MATMUL_H

#ifdef __cplusplus
extern "C" {
#endif

/* out(N,OC) = inp(N,IC) w(OC,IC)^T + bias(OC); bias may be NULL. out must not alias inp or w. */
void kl_matmul_forward_cpu(float *out, const float *inp, const float *w, const float *bias, int N, int IC,
                           int OC);
void kl_matmul_forward_cpu_f64(double *out, const double *inp, const double *w, const double *bias, int N,
                               int IC, int OC);

/* dinp(N,IC) = dout w (OVERWRITE; NULL skips it), dw(OC,IC) += dout^T inp, dbias(OC) += column sums of
 * dout (NULL skips it). dout(N,OC). */
void kl_matmul_backward_cpu(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                            const float *w, int N, int IC, int OC);
void kl_matmul_backward_cpu_f64(double *dinp, double *dw, double *dbias, const double *dout, const double *inp,
                                const double *w, int N, int IC, int OC);

#ifdef __cplusplus
}
#endif
#endif
