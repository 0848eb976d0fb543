/* linalg.c — batched small dense linear algebra (see linalg.h). Owns the numerics only: no
 * allocation policy beyond short-lived host scratch, no knowledge of optimizers.
 * The typed half of this file is written once and compiled twice (double, then float) by including
 * itself with KL_LA_PASS set: C11 has no templates and the two copies must stay identical. */
#ifndef KL_LA_PASS

#include "linalg.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"

#ifdef KILN_HAVE_CBLAS
#include <cblas.h>
#endif
#ifdef KILN_HAVE_LAPACKE
/* The Fortran LAPACK interface: OpenBLAS exports ?syevd_ itself, while the LAPACKE_* C wrappers live in
 * a separate liblapacke that kiln does not link. */
#include <lapack.h>
#endif

int kl_have_lapack(void) {
#ifdef KILN_HAVE_LAPACKE
    return 1;
#else
    return 0;
#endif
}

/* Uniform in [−1, 1) for element j of start vector `stream` (4 elements per Philox block). */
static double la_start_value(uint64_t seed, uint64_t stream, int64_t j) {
    kl_philox_ctr r = kl_philox_block(seed, stream, (uint64_t)j / 4);
    return 2.0 * (double)kl_u32_to_unit_float(r.v[j % 4]) - 1.0;
}

static kl_status la_check_gemm(int64_t batch, int m, int n, int k, int64_t sa, int64_t sb, int64_t sc) {
    if (batch < 0 || m <= 0 || n <= 0 || k <= 0)
        return kl_error(KL_ERR_INVALID, "kl_bgemm: expected batch >= 0 and m, n, k > 0, got batch %lld, "
                        "m %d, n %d, k %d", (long long)batch, m, n, k);
    if (sa < 0 || sb < 0 || (batch > 1 && sc < (int64_t)m * n))
        return kl_error(KL_ERR_INVALID, "kl_bgemm: strides must be >= 0 and C's >= m·n = %lld so the outputs "
                        "do not overlap, got %lld, %lld, %lld", (long long)m * n, (long long)sa,
                        (long long)sb, (long long)sc);
    return KL_OK;
}

#define KL_LA_PASS 1
#define real double
#define KL_T(name) name##_d
#define KL_REAL_EPS DBL_EPSILON
#define KL_CBLAS_GEMM cblas_dgemm
#define KL_LAPACK_SYEVD LAPACK_dsyevd
#include "linalg.c"
#undef KL_LA_PASS
#undef real
#undef KL_T
#undef KL_REAL_EPS
#undef KL_CBLAS_GEMM
#undef KL_LAPACK_SYEVD

#define KL_LA_PASS 2
#define real float
#define KL_T(name) name##_f
#define KL_REAL_EPS FLT_EPSILON
#define KL_CBLAS_GEMM cblas_sgemm
#define KL_LAPACK_SYEVD LAPACK_ssyevd
#include "linalg.c"

#else /* ---- typed half: `real` is double or float, KL_T(name) appends _d or _f ------------------- */

kl_status KL_T(kl_bgemm)(int64_t batch, int trans_a, int trans_b, int m, int n, int k, double alpha,
                         const real *a, int64_t stride_a, const real *b, int64_t stride_b, double beta,
                         real *c, int64_t stride_c) {
    KL_TRY(la_check_gemm(batch, m, n, k, stride_a, stride_b, stride_c));
#ifdef KILN_HAVE_CBLAS
    for (int64_t i = 0; i < batch; i++)
        KL_CBLAS_GEMM(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                      m, n, k, (real)alpha, a + i * stride_a, trans_a ? m : k, b + i * stride_b,
                      trans_b ? k : n, (real)beta, c + i * stride_c, n);
#else
    const real al = (real)alpha, be = (real)beta;
#pragma omp parallel for if (batch > 1)
    for (int64_t i = 0; i < batch; i++) {
        const real *A = a + i * stride_a, *B = b + i * stride_b;
        real *C = c + i * stride_c;
        for (int64_t e = 0; e < (int64_t)m * n; e++) C[e] = (beta == 0.0) ? (real)0 : be * C[e];
        if (!trans_b) {
            /* row of C += a_rp · row p of B: unit stride through B and C */
            for (int r = 0; r < m; r++)
                for (int p = 0; p < k; p++) {
                    const real av = al * (trans_a ? A[(int64_t)p * m + r] : A[(int64_t)r * k + p]);
                    const real *Bp = B + (int64_t)p * n;
                    real *Cr = C + (int64_t)r * n;
                    for (int col = 0; col < n; col++) Cr[col] += av * Bp[col];
                }
        } else {
            /* B stored n×k: each C element is a dot product of a row of B with a row/column of A */
            for (int r = 0; r < m; r++)
                for (int col = 0; col < n; col++) {
                    const real *Bc = B + (int64_t)col * k;
                    real acc = 0;
                    for (int p = 0; p < k; p++)
                        acc += (trans_a ? A[(int64_t)p * m + r] : A[(int64_t)r * k + p]) * Bc[p];
                    C[(int64_t)r * n + col] += al * acc;
                }
        }
    }
#endif
    return KL_OK;
}

void KL_T(kl_bset_identity)(int64_t batch, int n, double value, real *a) {
    for (int64_t i = 0; i < batch; i++) {
        real *A = a + i * n * n;
        memset(A, 0, sizeof(real) * (size_t)n * n);
        for (int j = 0; j < n; j++) A[(int64_t)j * n + j] = (real)value;
    }
}

void KL_T(kl_bscale_shift)(int64_t batch, int n, double alpha, double shift, real *a) {
    const real al = (real)alpha, sh = (real)shift;
    for (int64_t i = 0; i < batch; i++) {
        real *A = a + i * n * n;
        if (alpha != 1.0)
            for (int64_t e = 0; e < (int64_t)n * n; e++) A[e] *= al;
        for (int j = 0; j < n; j++) A[(int64_t)j * n + j] += sh;
    }
}

void KL_T(kl_bfrobenius)(int64_t batch, int rows, int cols, const real *a, double *norm_out) {
    const int64_t sz = (int64_t)rows * cols;
    for (int64_t i = 0; i < batch; i++) {
        double s = 0;
        for (int64_t e = 0; e < sz; e++) s += (double)a[i * sz + e] * (double)a[i * sz + e];
        norm_out[i] = sqrt(s);
    }
}

double KL_T(kl_bmax_abs_minus_identity)(int64_t batch, int n, const real *a) {
    double mx = 0;
    for (int64_t i = 0; i < batch; i++)
        for (int r = 0; r < n; r++)
            for (int col = 0; col < n; col++) {
                const double d = fabs((double)a[(i * n + r) * n + col] - (r == col ? 1.0 : 0.0));
                if (isnan(d)) return d; /* a diverged iterate must not look converged */
                if (d > mx) mx = d;
            }
    return mx;
}

/* Cyclic Jacobi on one symmetric n×n matrix A (destroyed), eigenvectors into V (columns), values in w.
 * A rotation in the (p,q) plane zeroes a_pq; an a_pq below eps·sqrt(|a_pp·a_qq|) is dropped instead,
 * which perturbs every eigenvalue only relatively (this is what makes Jacobi accurate for the small
 * eigenvalues of SPD matrices). Stops after a sweep without rotations. */
static kl_status KL_T(la_jacobi)(int n, real *A, real *V, real *w) {
    const int max_sweeps = 100;
    for (int r = 0; r < n; r++)
        for (int col = 0; col < n; col++) V[(int64_t)r * n + col] = (r == col) ? (real)1 : (real)0;
    int sweep = 0, rotated = 1;
    for (; sweep < max_sweeps && rotated; sweep++) {
        rotated = 0;
        for (int p = 0; p < n - 1; p++)
            for (int q = p + 1; q < n; q++) {
                const real apq = A[(int64_t)p * n + q];
                if (apq == 0) continue;
                const real app = A[(int64_t)p * n + p], aqq = A[(int64_t)q * n + q];
                if (fabs((double)apq) <= KL_REAL_EPS * sqrt(fabs((double)app) * fabs((double)aqq))) {
                    A[(int64_t)p * n + q] = A[(int64_t)q * n + p] = 0;
                    continue;
                }
                rotated = 1;
                /* t = tan φ, the smaller root of t² + 2θt − 1 = 0 with θ = cot 2φ = (a_qq − a_pp)/(2a_pq) */
                const double theta = ((double)aqq - (double)app) / (2.0 * (double)apq);
                const double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                const double cd = 1.0 / sqrt(t * t + 1.0);
                const real cs = (real)cd, sn = (real)(t * cd);
                for (int r = 0; r < n; r++) { /* A ← A·J (columns p, q) */
                    real *row = A + (int64_t)r * n;
                    const real x = row[p], y = row[q];
                    row[p] = cs * x - sn * y;
                    row[q] = sn * x + cs * y;
                }
                real *rp = A + (int64_t)p * n, *rq = A + (int64_t)q * n;
                for (int col = 0; col < n; col++) { /* A ← Jᵀ·A (rows p, q) */
                    const real x = rp[col], y = rq[col];
                    rp[col] = cs * x - sn * y;
                    rq[col] = sn * x + cs * y;
                }
                A[(int64_t)p * n + q] = A[(int64_t)q * n + p] = 0;
                for (int r = 0; r < n; r++) { /* V ← V·J */
                    real *row = V + (int64_t)r * n;
                    const real x = row[p], y = row[q];
                    row[p] = cs * x - sn * y;
                    row[q] = sn * x + cs * y;
                }
            }
    }
    if (rotated)
        return kl_error(KL_ERR_NUMERIC, "Jacobi eigensolver (n = %d): no convergence after %d sweeps "
                        "(non-finite or non-symmetric input?)", n, max_sweeps);
    for (int j = 0; j < n; j++) w[j] = A[(int64_t)j * n + j];
    /* selection sort, ascending, carrying the eigenvector columns along */
    for (int j = 0; j < n - 1; j++) {
        int best = j;
        for (int i = j + 1; i < n; i++)
            if (w[i] < w[best]) best = i;
        if (best == j) continue;
        real tw = w[j];
        w[j] = w[best];
        w[best] = tw;
        for (int r = 0; r < n; r++) {
            real tv = V[(int64_t)r * n + j];
            V[(int64_t)r * n + j] = V[(int64_t)r * n + best];
            V[(int64_t)r * n + best] = tv;
        }
    }
    return KL_OK;
}

#ifdef KILN_HAVE_LAPACKE
/* ?syevd on one matrix. The matrix is symmetric, so row- and column-major storage agree on input; on
 * output LAPACK's eigenvector columns are rows in row-major storage, hence the transpose at the end. */
static kl_status KL_T(la_syevd)(int n, real *A, real *w) {
    lapack_int nn = n, info = 0, lwork = -1, liwork = -1, iwq = 0;
    real wq = 0;
    KL_LAPACK_SYEVD("V", "L", &nn, A, &nn, w, &wq, &lwork, &iwq, &liwork, &info);
    if (info != 0) return kl_error(KL_ERR_INTERNAL, "LAPACK ?syevd workspace query failed (info %d)", (int)info);
    lwork = (lapack_int)wq + 1;
    liwork = iwq;
    real *work = (real *)kl_malloc(sizeof(real) * (size_t)lwork, "syevd workspace");
    lapack_int *iwork = (lapack_int *)kl_malloc(sizeof(lapack_int) * (size_t)liwork, "syevd workspace");
    if (!work || !iwork) {
        free(work);
        free(iwork);
        return KL_ERR_OOM;
    }
    KL_LAPACK_SYEVD("V", "L", &nn, A, &nn, w, work, &lwork, iwork, &liwork, &info);
    free(work);
    free(iwork);
    if (info != 0)
        return kl_error(info > 0 ? KL_ERR_NUMERIC : KL_ERR_INTERNAL,
                        "LAPACK ?syevd (n = %d) failed with info %d", n, (int)info);
    for (int r = 0; r < n; r++)
        for (int col = r + 1; col < n; col++) {
            real t = A[(int64_t)r * n + col];
            A[(int64_t)r * n + col] = A[(int64_t)col * n + r];
            A[(int64_t)col * n + r] = t;
        }
    return KL_OK;
}
#endif

kl_status KL_T(kl_beigh)(int64_t batch, int n, real *a, real *w, kl_eigh_method method) {
    if (batch < 0 || n <= 0)
        return kl_error(KL_ERR_INVALID, "kl_beigh: expected batch >= 0 and n > 0, got %lld, %d", (long long)batch, n);
    int use_lapack = 0;
    if (method == KL_EIGH_LAPACK || method == KL_EIGH_AUTO) use_lapack = kl_have_lapack();
    if (method == KL_EIGH_LAPACK && !use_lapack)
        return kl_error(KL_ERR_UNSUPPORTED, "kl_beigh: LAPACK eigensolver requested but kiln was built without "
                        "LAPACK (use the Jacobi method)");
    if (use_lapack) {
#ifdef KILN_HAVE_LAPACKE
        for (int64_t i = 0; i < batch; i++)
            KL_TRY(KL_T(la_syevd)(n, a + i * n * n, w + i * n));
#endif
        return KL_OK;
    }
    real *tmp = (real *)kl_malloc(sizeof(real) * (size_t)n * n, "Jacobi eigensolver scratch");
    if (!tmp) return KL_ERR_OOM;
    kl_status st = KL_OK;
    for (int64_t i = 0; i < batch && st == KL_OK; i++) {
        real *A = a + i * n * n;
        memcpy(tmp, A, sizeof(real) * (size_t)n * n);
        st = KL_T(la_jacobi)(n, tmp, A, w + i * n);
    }
    free(tmp);
    return st;
}

kl_status KL_T(kl_bpower_iter)(int64_t batch, int n, const real *a, double shift, int iters, int nvec,
                               uint64_t seed, double *lambda_out) {
    if (batch < 0 || n <= 0 || iters < 0 || nvec <= 0)
        return kl_error(KL_ERR_INVALID, "kl_bpower_iter: expected batch >= 0, n > 0, iters >= 0, nvec > 0, got "
                        "%lld, %d, %d, %d", (long long)batch, n, iters, nvec);
    double *v = (double *)kl_malloc(sizeof(double) * 2 * (size_t)n, "power iteration vectors");
    if (!v) return KL_ERR_OOM;
    double *y = v + n;
    for (int64_t i = 0; i < batch; i++) {
        const real *A = a + i * n * n;
        double best = 0;
        for (int vec = 0; vec < nvec; vec++) {
            for (int j = 0; j < n; j++) v[j] = la_start_value(seed, (uint64_t)(i * nvec + vec), j);
            double lambda = 0;
            for (int it = 0; it <= iters; it++) {
                double nv = 0;
                for (int j = 0; j < n; j++) nv += v[j] * v[j];
                nv = sqrt(nv);
                if (nv == 0) { /* (A + shift·I) annihilated the vector: the estimate is 0 */
                    lambda = 0;
                    break;
                }
                for (int j = 0; j < n; j++) v[j] /= nv;
                lambda = 0;
                for (int r = 0; r < n; r++) {
                    double s = shift * v[r];
                    for (int col = 0; col < n; col++) s += (double)A[(int64_t)r * n + col] * v[col];
                    y[r] = s;
                    lambda += v[r] * s; /* Rayleigh quotient of the normalised v */
                }
                if (it < iters) memcpy(v, y, sizeof(double) * (size_t)n);
            }
            if (vec == 0 || lambda > best) best = lambda;
        }
        lambda_out[i] = best;
    }
    free(v);
    return KL_OK;
}

#endif /* KL_LA_PASS */
