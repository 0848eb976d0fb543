/* inv_root.h — batched inverse p-th roots of symmetric positive (semi-)definite matrices, the heart of
 * DASH/Shampoo preconditioning: Newton–Denman–Beavers (fixed step count), coupled Newton (tolerance),
 * Chebyshev polynomial (Clenshaw) and eigendecomposition, with the reference's spectrum scalings.
 * Every solver returns an approximation of (A + eps·I)^(−1/p) for each matrix of a stack. */
#ifndef KL_INV_ROOT_H
#define KL_INV_ROOT_H

#include <stdint.h>

#include "kl_base.h"
#include "linalg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KL_ROOT_NEWTON_DB = 0,   /* Newton–Denman–Beavers, `newton_steps` steps per square root; p = 2 or 4 */
    KL_ROOT_COUPLED_NEWTON,  /* coupled Newton (Guo–Higham / Distributed Shampoo), stops at cn_tol */
    KL_ROOT_CHEBYSHEV,       /* degree-d Chebyshev interpolant of (x + cheb_shift)^(−1/p), x = A/s */
    KL_ROOT_EIGH,            /* Q·diag(λ^(−1/p))·Qᵀ with Distributed Shampoo's eigenvalue shift */
} kl_root_method;

typedef enum {
    KL_SCALE_POWER_ITER = 0, /* s = scale_const · (largest Rayleigh quotient of power iteration) */
    KL_SCALE_FROBENIUS,      /* s = ||A + eps·I||_F */
    KL_SCALE_GIVEN,          /* s = given_scale[i] (e.g. an exact λ_max) */
} kl_root_scaling;

typedef struct {
    kl_root_method method;
    int root;            /* p >= 1: the output approximates (A + eps·I)^(−1/p) */
    double eps;          /* damping added to the diagonal first (EIGH adds it once more, as DS does) */
    /* spectrum scale s (Newton-DB, coupled Newton, Chebyshev): the iterations see A/s */
    kl_root_scaling scaling;
    double scale_const;  /* POWER_ITER: s = scale_const·λ_est (reference: 2, putting the spectrum in (0, ~0.5]) */
    int power_iters;     /* power iterations (reference 10) */
    int power_vectors;   /* 1: POWER_ITER; 16: the reference's POWER_ITER_MULTI */
    double power_eps;    /* shift added for the estimate only, so zero blocks give s > 0 (reference 1e−6) */
    uint64_t seed;       /* power-iteration start vectors */
    const double *given_scale; /* KL_SCALE_GIVEN: one s per matrix of the batch */
    int newton_steps;    /* Newton-DB: exact count per square root; coupled Newton: maximum */
    double cn_tol;       /* coupled Newton: stop when max|M − I| over the whole batch < cn_tol */
    int cheb_degree;     /* Chebyshev degree d (d − 1 matrix products) */
    double cheb_shift;   /* Chebyshev interpolates (x + cheb_shift)^(−1/p): its own damping, see §E3 */
    double cheb_lo, cheb_hi;       /* interval of x = A/s the polynomial is fitted on (default [0, 1]) */
    const double *cheb_coeffs;     /* optional: coefficients from kl_chebyshev_coeffs for these
                                      (root, shift, lo, hi, degree); NULL computes them per call */
    kl_eigh_method eigh; /* KL_ROOT_EIGH: which eigensolver */
} kl_inv_root_opts;

typedef struct {
    int iterations;  /* Newton-DB: steps per square root; coupled Newton: iterations run; EIGH/Chebyshev: 0 */
    double residual; /* coupled Newton: final max|M − I| over the batch; others 0 */
} kl_inv_root_info;

/* The reference's settings (DashConfig, paper runs) for one method: root 4, power-iteration scaling with
 * const 2, 10 iterations of 1 vector, power_eps 1e−6, newton_steps 10, cn_tol 1e−6, Chebyshev degree 60 on
 * [0, 1]; eps 0 for Newton-DB, coupled Newton and Chebyshev (the paper runs), 1e−10 for EIGH.
 * cheb_shift is 1e−3, not the reference's 1e−10 (see docs/optimizers.md). */
kl_inv_root_opts kl_inv_root_defaults(kl_root_method method);

/* out_i ≈ (A_i + eps·I)^(−1/p) for each n×n matrix of the stack (out must not overlap a). A matrix whose
 * scale comes out exactly 0 (an all-zero block, eps 0, no power_eps) is treated with s = 1, so zero
 * blocks give finite output. EIGH uses a pseudo-inverse for eigenvalues that stay <= 0. info may be NULL. */
kl_status kl_inv_root_d(int64_t batch, int n, const double *a, double *out, const kl_inv_root_opts *opts,
                        kl_inv_root_info *info);
kl_status kl_inv_root_f(int64_t batch, int n, const float *a, float *out, const kl_inv_root_opts *opts,
                        kl_inv_root_info *info);

/* ---- building blocks, public for tests and for checking the CUDA path ---------------------------- */

/* The per-matrix scale s of (A_i + eps·I) under opts->scaling (before the zero-block guard). */
kl_status kl_root_scale_d(int64_t batch, int n, const double *a, const kl_inv_root_opts *opts, double *s_out);
kl_status kl_root_scale_f(int64_t batch, int n, const float *a, const kl_inv_root_opts *opts, double *s_out);

/* Coupled Denman–Beavers in Newton–Schulz form on X (spectrum in (0, 2)) for exactly `steps` >= 1 steps:
 * Y₀ = X, Z₀ = I, E = ½(3I − Z Y), Y ← Y E, Z ← E Z; Y → X^(1/2), Z → X^(−1/2). */
kl_status kl_newton_db_d(int64_t batch, int n, const double *x, int steps, double *y, double *z);
kl_status kl_newton_db_f(int64_t batch, int n, const float *x, int steps, float *y, float *z);

/* Chebyshev coefficients c[0..degree] of f(x) = (x + shift)^(−1/p) on x ∈ [lo, hi] by Chebyshev–Gauss
 * quadrature with `nodes` points (reference: 10 000): θ_j = π(j + ½)/N, u_j = cos θ_j,
 * x_j = lo + (u_j + 1)(hi − lo)/2, c_k = (2/N) Σ_j f(x_j) cos(k θ_j), c_0 halved. */
kl_status kl_chebyshev_coeffs(double p, double shift, double lo, double hi, int degree, int nodes, double *c);
/* Σ_k c_k T_k(u) by Clenshaw's recurrence, u ∈ [−1, 1]. */
double kl_chebyshev_eval(const double *c, int degree, double u);

#ifdef __cplusplus
}
#endif
#endif
