/* linalg.h — batched small dense linear algebra on stacks of equal-shape row-major matrices: the CPU
 * reference of what DASH runs as batched GEMMs on the GPU (GEMM, identity helpers, Frobenius norms,
 * symmetric eigendecomposition by LAPACK or a self-written cyclic Jacobi, power iteration).
 * Every typed function exists for double (_d) and float (_f); the float versions compute in float
 * (as an FP32 GPU path would) except for norms and power iteration, which accumulate in double. */
#ifndef KL_LINALG_H
#define KL_LINALG_H

#include <stdint.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KL_EIGH_AUTO = 0, /* LAPACK ?syevd when built with it, else Jacobi */
    KL_EIGH_LAPACK,   /* KL_ERR_UNSUPPORTED when kiln was built without LAPACK */
    KL_EIGH_JACOBI,   /* cyclic Jacobi, always available */
} kl_eigh_method;

/* 1 when kiln was built with LAPACK (KILN_HAVE_LAPACKE), else 0. */
int kl_have_lapack(void);

/* C_i = alpha·op(A_i)·op(B_i) + beta·C_i for i < batch, all row-major and dense. op(A_i) is m×k
 * (stored k×m when trans_a), op(B_i) is k×n (stored n×k when trans_b), C_i is m×n. stride_* counts
 * elements between consecutive matrices; stride 0 reuses one matrix for the whole batch (A and B only).
 * beta == 0 overwrites C without reading it. C must not overlap A or B. Uses cblas when built with it. */
kl_status kl_bgemm_d(int64_t batch, int trans_a, int trans_b, int m, int n, int k, double alpha,
                     const double *a, int64_t stride_a, const double *b, int64_t stride_b, double beta,
                     double *c, int64_t stride_c);
kl_status kl_bgemm_f(int64_t batch, int trans_a, int trans_b, int m, int n, int k, double alpha,
                     const float *a, int64_t stride_a, const float *b, int64_t stride_b, double beta,
                     float *c, int64_t stride_c);

/* A_i = value·I for each n×n matrix of the stack. */
void kl_bset_identity_d(int64_t batch, int n, double value, double *a);
void kl_bset_identity_f(int64_t batch, int n, double value, float *a);
/* A_i = alpha·A_i + shift·I (alpha = 1 just shifts the diagonal). */
void kl_bscale_shift_d(int64_t batch, int n, double alpha, double shift, double *a);
void kl_bscale_shift_f(int64_t batch, int n, double alpha, double shift, float *a);

/* norm_out[i] = ||A_i||_F of each rows×cols matrix, accumulated in double. */
void kl_bfrobenius_d(int64_t batch, int rows, int cols, const double *a, double *norm_out);
void kl_bfrobenius_f(int64_t batch, int rows, int cols, const float *a, double *norm_out);
/* max over the whole stack of |A_i − I| elementwise (coupled Newton's stopping test); NaN if any is. */
double kl_bmax_abs_minus_identity_d(int64_t batch, int n, const double *a);
double kl_bmax_abs_minus_identity_f(int64_t batch, int n, const float *a);

/* Symmetric eigendecomposition of each n×n A_i (assumed symmetric; both triangles are stored):
 * A_i = Q_i diag(w_i) Q_iᵀ with w_i ascending. On return `a` holds Q_i row-major, eigenvector j in
 * column j; `w` holds batch×n eigenvalues. KL_ERR_NUMERIC if the solver did not converge. */
kl_status kl_beigh_d(int64_t batch, int n, double *a, double *w, kl_eigh_method method);
kl_status kl_beigh_f(int64_t batch, int n, float *a, float *w, kl_eigh_method method);

/* Largest-eigenvalue estimate of each symmetric PSD A_i by `iters` power iterations on A_i + shift·I
 * from `nvec` independent start vectors (uniform in [−1,1), Philox stream = block·nvec + vector, so the
 * result depends only on seed and block index); lambda_out[i] = the largest Rayleigh quotient
 * vᵀ(A_i + shift·I)v over the vectors. A zero matrix with shift 0 gives 0, never NaN. */
kl_status kl_bpower_iter_d(int64_t batch, int n, const double *a, double shift, int iters, int nvec,
                           uint64_t seed, double *lambda_out);
kl_status kl_bpower_iter_f(int64_t batch, int n, const float *a, double shift, int iters, int nvec,
                           uint64_t seed, double *lambda_out);

#ifdef __cplusplus
}
#endif
#endif
