/* dct.h — the numerical pieces of DCT-AdamW's low-rank projection: an orthonormal DCT basis of size n
 * (built once per size), the full transform and the ℓ1/ℓ2 score top-r column selection at a refresh,
 * projection onto / back from the r selected basis columns, and the index remap of the Adam moments
 * that replaces the reference's rotation matmul. Row-major throughout; no optimizer state lives here. */
#ifndef KL_DCT_H
#define KL_DCT_H

#include <stdint.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* D is the orthonormal DCT-II matrix: D[i][j] = sqrt(2/n)·cos(π·i·(2j+1)/(2n)), row 0 times sqrt(½);
 * its rows are frequencies, so x·Dᵀ is the orthonormal DCT-II of a row vector x. A basis Q (n×n,
 * orthonormal columns) is either of two choices: */
typedef enum {
    KL_DCT_BASIS_DCT2 = 0, /* Q = Dᵀ: column k is the k-th DCT-II frequency vector; G·Q is the DCT-II of
                              G's rows (FFT-computable; ISTA-DASLab-Optimizers sim_type='makhoul') */
    KL_DCT_BASIS_DCT3,     /* Q = D: the columns of D (ISTA-DASLab-Optimizers' default sim_type='matmul') */
} kl_dct_basis_kind;

/* Projection side of an R×C matrix G. RIGHT: basis of size C, low-rank tensors R×r, S = G·Q.
 * LEFT: basis of size R, low-rank tensors r×C, S = Qᵀ·G. */
typedef enum { KL_DCT_RIGHT = 0, KL_DCT_LEFT } kl_dct_side;

/* The reference's rule: R >= C projects on the right, else on the left (always the smaller side). */
kl_dct_side kl_dct_choose_side(int64_t rows, int64_t cols);

/* D (n×n). The cosine argument i·(2j+1) is reduced mod 4n and folded into [0, π/4] exactly in integers,
 * so every entry is a correctly-rounded-or-nearly cosine and max|D·Dᵀ − I| stays ~1e−15 for any n. */
kl_status kl_dct2_matrix_d(int n, double *d);
/* Q (n×n) of the given kind; the float version is the double matrix rounded once. */
kl_status kl_dct_basis_d(int n, kl_dct_basis_kind kind, double *q);
kl_status kl_dct_basis_f(int n, kl_dct_basis_kind kind, float *q);

/* S = G·Q (RIGHT, Q is cols×cols) or S = Qᵀ·G (LEFT, Q is rows×rows); S has G's shape. */
kl_status kl_dct_transform_d(int rows, int cols, const double *g, const double *q, kl_dct_side side, double *s);
kl_status kl_dct_transform_f(int rows, int cols, const float *g, const float *q, kl_dct_side side, float *s);

/* Top-r selection: scores = ℓ_ell norm (ell = 1 or 2, accumulated in double) of each column of S (RIGHT)
 * or row (LEFT); idx[0..r) = the r best, by descending score, ties to the lower index (deterministic;
 * the reference's torch.topk(sorted=False) leaves the order unspecified). scores may be NULL; else it
 * receives all cols (RIGHT) / rows (LEFT) scores. */
kl_status kl_dct_select_d(int rows, int cols, const double *s, kl_dct_side side, int ell, int r, int32_t *idx,
                          double *scores);
kl_status kl_dct_select_f(int rows, int cols, const float *s, kl_dct_side side, int ell, int r, int32_t *idx,
                          double *scores);

/* The projected tensor at a refresh, sliced from the full S (no second product): a = S[:, idx] (RIGHT,
 * rows×r) or S[idx, :] (LEFT, r×cols). */
kl_status kl_dct_slice_d(int rows, int cols, const double *s, kl_dct_side side, int r, const int32_t *idx,
                         double *a);
kl_status kl_dct_slice_f(int rows, int cols, const float *s, kl_dct_side side, int r, const int32_t *idx,
                         float *a);

/* Q_r = Q[:, idx], the r selected basis columns as a contiguous n×r matrix (what per-step GEMMs use). */
kl_status kl_dct_basis_columns_d(int n, const double *q, int r, const int32_t *idx, double *qr);
kl_status kl_dct_basis_columns_f(int n, const float *q, int r, const int32_t *idx, float *qr);

/* a = G·Q_r (RIGHT: Q_r is cols×r, a rows×r) or a = Q_rᵀ·G (LEFT: Q_r is rows×r, a r×cols). */
kl_status kl_dct_project_d(int rows, int cols, const double *g, const double *qr, int r, kl_dct_side side,
                           double *a);
kl_status kl_dct_project_f(int rows, int cols, const float *g, const float *qr, int r, kl_dct_side side,
                           float *a);
/* out = a·Q_rᵀ (RIGHT) or Q_r·a (LEFT): back to rows×cols. */
kl_status kl_dct_back_project_d(int rows, int cols, const double *a, const double *qr, int r, kl_dct_side side,
                                double *out);
kl_status kl_dct_back_project_f(int rows, int cols, const float *a, const float *qr, int r, kl_dct_side side,
                                float *out);

/* The refresh rotation R = Q[:, idx_prev]ᵀ·Q[:, idx_new] of two selections from one orthonormal basis is a
 * 0/1 partial permutation: src[j] = k where idx_prev[k] == idx_new[j], or −1 when basis column idx_new[j]
 * was not selected before. Indices must lie in [0, n) and be distinct within each selection. */
kl_status kl_dct_remap_plan(int n, int r, const int32_t *idx_prev, const int32_t *idx_new, int32_t *src);
/* Applies the plan to a moment tensor in place: RIGHT (outer×r): column j ← old column src[j] or 0;
 * LEFT (r×outer): row j ← old row src[j] or 0. Equals m·R (RIGHT) or Rᵀ·m (LEFT) exactly, and keeps
 * v >= 0, so the reference's |v·R| is v·R. */
kl_status kl_dct_remap_d(int64_t outer, int r, kl_dct_side side, const int32_t *src, double *m);
kl_status kl_dct_remap_f(int64_t outer, int r, kl_dct_side side, const int32_t *src, float *m);

/* R = Q[:, idx_prev]ᵀ·Q[:, idx_new] (r×r) by products, for checking the remap. */
kl_status kl_dct_rotation_d(int n, const double *q, int r, const int32_t *idx_prev, const int32_t *idx_new,
                            double *rot);

#ifdef __cplusplus
}
#endif
#endif
