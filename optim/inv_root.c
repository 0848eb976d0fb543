/* inv_root.c — batched inverse p-th roots (see inv_root.h): scaling, Newton–Denman–Beavers, coupled
 * Newton, Chebyshev/Clenshaw, eigendecomposition. Every matrix product is a batched GEMM over the whole
 * stack, in the order the reference performs them, so the CUDA port can mirror it product by product.
 * The typed half is compiled twice (double, float) by including this file with KL_IR_PASS set. */
#ifndef KL_IR_PASS

#include "inv_root.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

kl_inv_root_opts kl_inv_root_defaults(kl_root_method method) {
    kl_inv_root_opts o;
    memset(&o, 0, sizeof o);
    o.method = method;
    o.root = 4;
    o.eps = (method == KL_ROOT_EIGH) ? 1e-10 : 0.0;
    o.scaling = KL_SCALE_POWER_ITER;
    o.scale_const = 2.0;
    o.power_iters = 10;
    o.power_vectors = 1;
    o.power_eps = 1e-6;
    o.seed = 0x5EED0DA5Bu;
    o.newton_steps = 10;
    o.cn_tol = 1e-6;
    o.cheb_degree = 60;
    o.cheb_shift = 1e-3;
    o.cheb_lo = 0.0;
    o.cheb_hi = 1.0;
    o.cheb_coeffs = NULL;
    o.eigh = KL_EIGH_AUTO;
    return o;
}

kl_status kl_chebyshev_coeffs(double p, double shift, double lo, double hi, int degree, int nodes, double *c) {
    if (!(p > 0) || !(hi > lo) || degree < 0 || nodes <= degree || !(lo + shift >= 0))
        return kl_error(KL_ERR_INVALID, "kl_chebyshev_coeffs: expected p > 0, hi > lo, lo + shift >= 0, "
                        "0 <= degree < nodes; got p %g, [%g, %g], shift %g, degree %d, nodes %d",
                        p, lo, hi, shift, degree, nodes);
    const double pi = 3.14159265358979323846;
    double *f = (double *)kl_malloc(sizeof(double) * (size_t)nodes, "Chebyshev nodes");
    if (!f) return KL_ERR_OOM;
    for (int j = 0; j < nodes; j++) {
        double u = cos(pi * (j + 0.5) / nodes);
        double x = lo + 0.5 * (u + 1.0) * (hi - lo);
        f[j] = pow(x + shift, -1.0 / p);
    }
    for (int k = 0; k <= degree; k++) {
        double s = 0;
        for (int j = 0; j < nodes; j++) s += f[j] * cos(k * (pi * (j + 0.5) / nodes));
        c[k] = 2.0 * s / nodes;
    }
    c[0] *= 0.5;
    free(f);
    return KL_OK;
}

double kl_chebyshev_eval(const double *c, int degree, double u) {
    double b1 = 0, b2 = 0; /* b_{k+1}, b_{k+2} */
    for (int k = degree; k >= 1; k--) {
        double b = 2.0 * u * b1 - b2 + c[k];
        b2 = b1;
        b1 = b;
    }
    return u * b1 - b2 + c[0];
}

static kl_status ir_check(int64_t batch, int n, const kl_inv_root_opts *o) {
    if (!o) return kl_error(KL_ERR_INVALID, "kl_inv_root: options are NULL");
    if (batch < 0 || n <= 0)
        return kl_error(KL_ERR_INVALID, "kl_inv_root: expected batch >= 0 and n > 0, got %lld, %d", (long long)batch,
                        n);
    if (o->root < 1) return kl_error(KL_ERR_INVALID, "kl_inv_root: root must be >= 1, got %d", o->root);
    if (!(o->eps >= 0)) return kl_error(KL_ERR_INVALID, "kl_inv_root: eps must be >= 0, got %g", o->eps);
    if (o->method != KL_ROOT_EIGH) {
        if (o->scaling == KL_SCALE_GIVEN && !o->given_scale)
            return kl_error(KL_ERR_INVALID, "kl_inv_root: KL_SCALE_GIVEN needs given_scale");
        if (o->scaling == KL_SCALE_POWER_ITER &&
            (o->power_iters < 0 || o->power_vectors < 1 || !(o->scale_const > 0)))
            return kl_error(KL_ERR_INVALID, "kl_inv_root: power iteration needs iters >= 0, vectors >= 1, "
                            "scale_const > 0; got %d, %d, %g", o->power_iters, o->power_vectors, o->scale_const);
    }
    switch (o->method) {
    case KL_ROOT_NEWTON_DB:
        if (o->root != 2 && o->root != 4)
            return kl_error(KL_ERR_UNSUPPORTED, "kl_inv_root: Newton-DB computes roots 2 and 4 only, got %d", o->root);
        if (o->newton_steps < 1)
            return kl_error(KL_ERR_INVALID, "kl_inv_root: Newton-DB needs newton_steps >= 1, got %d", o->newton_steps);
        break;
    case KL_ROOT_COUPLED_NEWTON:
        if (o->newton_steps < 0)
            return kl_error(KL_ERR_INVALID, "kl_inv_root: coupled Newton needs newton_steps >= 0, got %d",
                            o->newton_steps);
        break;
    case KL_ROOT_CHEBYSHEV:
        if (o->cheb_degree < 0 || !(o->cheb_hi > o->cheb_lo))
            return kl_error(KL_ERR_INVALID, "kl_inv_root: Chebyshev needs degree >= 0 and hi > lo, got %d, [%g, %g]",
                            o->cheb_degree, o->cheb_lo, o->cheb_hi);
        break;
    case KL_ROOT_EIGH: break;
    default: return kl_error(KL_ERR_INVALID, "kl_inv_root: unknown method %d", (int)o->method);
    }
    return KL_OK;
}

/* A matrix whose scale is exactly 0 is all-zero (and undamped): any s maps it to 0, so take 1. */
static double ir_guard_scale(double s) { return s == 0.0 ? 1.0 : s; }

#define KL_IR_PASS 1
#define real double
#define KL_T(name) name##_d
#include "inv_root.c"
#undef KL_IR_PASS
#undef real
#undef KL_T

#define KL_IR_PASS 2
#define real float
#define KL_T(name) name##_f
#include "inv_root.c"

#else /* ---- typed half: `real` is double or float, KL_T(name) appends _d or _f ------------------- */

kl_status KL_T(kl_root_scale)(int64_t batch, int n, const real *a, const kl_inv_root_opts *o, double *s_out) {
    const int64_t nn = (int64_t)n * n;
    switch (o->scaling) {
    case KL_SCALE_FROBENIUS:
        for (int64_t i = 0; i < batch; i++) {
            const real *A = a + i * nn;
            double s = 0;
            for (int64_t e = 0; e < nn; e++) s += (double)A[e] * (double)A[e];
            if (o->eps != 0) /* ||A + eps·I||² = ||A||² + Σ_j (2·eps·a_jj + eps²) */
                for (int j = 0; j < n; j++) s += o->eps * (2.0 * (double)A[(int64_t)j * n + j] + o->eps);
            s_out[i] = sqrt(s);
        }
        return KL_OK;
    case KL_SCALE_POWER_ITER:
        KL_TRY(KL_T(kl_bpower_iter)(batch, n, a, o->eps + o->power_eps, o->power_iters, o->power_vectors,
                                    o->seed, s_out));
        for (int64_t i = 0; i < batch; i++) s_out[i] *= o->scale_const;
        return KL_OK;
    case KL_SCALE_GIVEN:
        if (!o->given_scale) return kl_error(KL_ERR_INVALID, "kl_root_scale: KL_SCALE_GIVEN needs given_scale");
        for (int64_t i = 0; i < batch; i++) {
            if (!(o->given_scale[i] > 0))
                return kl_error(KL_ERR_INVALID, "kl_root_scale: given_scale[%lld] must be > 0, got %g",
                                (long long)i, o->given_scale[i]);
            s_out[i] = o->given_scale[i];
        }
        return KL_OK;
    }
    return kl_error(KL_ERR_INVALID, "kl_root_scale: unknown scaling %d", (int)o->scaling);
}

/* Newton–DB on X for `steps` steps; results in y and z. e, t1, t2 are scratch stacks of the same size. */
static kl_status KL_T(ir_ndb)(int64_t batch, int n, const real *x, int steps, real *y, real *z, real *e,
                              real *t1, real *t2) {
    const int64_t nn = (int64_t)n * n, bytes = (int64_t)sizeof(real) * batch * nn;
    /* step 1 with Z₀ = I: E₀ = 1.5·I − 0.5·X, Y₁ = X·E₀, Z₁ = E₀ */
    memcpy(e, x, (size_t)bytes);
    KL_T(kl_bscale_shift)(batch, n, -0.5, 1.5, e);
    KL_TRY(KL_T(kl_bgemm)(batch, 0, 0, n, n, n, 1.0, x, nn, e, nn, 0.0, y, nn));
    memcpy(z, e, (size_t)bytes);
    real *yc = y, *zc = z, *yn = t1, *zn = t2;
    for (int k = 1; k < steps; k++) {
        KL_T(kl_bset_identity)(batch, n, 1.5, e); /* E = 1.5·I − 0.5·Z·Y */
        KL_TRY(KL_T(kl_bgemm)(batch, 0, 0, n, n, n, -0.5, zc, nn, yc, nn, 1.0, e, nn));
        KL_TRY(KL_T(kl_bgemm)(batch, 0, 0, n, n, n, 1.0, yc, nn, e, nn, 0.0, yn, nn)); /* Y ← Y·E */
        KL_TRY(KL_T(kl_bgemm)(batch, 0, 0, n, n, n, 1.0, e, nn, zc, nn, 0.0, zn, nn)); /* Z ← E·Z */
        real *t = yc; yc = yn; yn = t;
        t = zc; zc = zn; zn = t;
    }
    if (yc != y) memcpy(y, yc, (size_t)bytes);
    if (zc != z) memcpy(z, zc, (size_t)bytes);
    return KL_OK;
}

kl_status KL_T(kl_newton_db)(int64_t batch, int n, const real *x, int steps, real *y, real *z) {
    if (batch < 0 || n <= 0 || steps < 1)
        return kl_error(KL_ERR_INVALID, "kl_newton_db: expected batch >= 0, n > 0, steps >= 1, got %lld, %d, %d",
                        (long long)batch, n, steps);
    if (batch == 0) return KL_OK;
    const size_t sz = (size_t)batch * n * n;
    real *w = (real *)kl_malloc(sizeof(real) * 3 * sz, "Newton-DB scratch");
    if (!w) return KL_ERR_OOM;
    kl_status st = KL_T(ir_ndb)(batch, n, x, steps, y, z, w, w + sz, w + 2 * sz);
    free(w);
    return st;
}

/* Per-matrix A ← alpha_i·A + shift_i·I. */
static void KL_T(ir_affine_each)(int64_t batch, int n, const double *alpha, const double *shift, real *a) {
    for (int64_t i = 0; i < batch; i++)
        KL_T(kl_bscale_shift)(1, n, alpha[i], shift ? shift[i] : 0.0, a + i * n * n);
}

static kl_status KL_T(ir_newton_db)(int64_t batch, int n, const kl_inv_root_opts *o, real *X, const double *s,
                                    double *tmp, real *out, real *w, kl_inv_root_info *info) {
    const int64_t nn = (int64_t)n * n;
    const size_t sz = (size_t)batch * nn;
    real *Y = w, *E = w + sz, *T1 = w + 2 * sz, *T2 = w + 3 * sz;
    for (int64_t i = 0; i < batch; i++) tmp[i] = 1.0 / s[i];
    KL_T(ir_affine_each)(batch, n, tmp, NULL, X); /* X = A_reg / s */
    if (o->root == 2) {
        KL_TRY(KL_T(ir_ndb)(batch, n, X, o->newton_steps, Y, out, E, T1, T2));
        for (int64_t i = 0; i < batch; i++) tmp[i] = 1.0 / sqrt(s[i]);
    } else {
        /* call 1: Y ≈ (A_reg/s)^(1/2). Call 2 on S = Y·√s with scale √s sees S/√s = Y again and returns
         * Z ≈ Y^(−1/2); A_reg^(−1/4) = Z·s^(−1/4). */
        KL_TRY(KL_T(ir_ndb)(batch, n, X, o->newton_steps, Y, out, E, T1, T2));
        KL_TRY(KL_T(ir_ndb)(batch, n, Y, o->newton_steps, X, out, E, T1, T2));
        for (int64_t i = 0; i < batch; i++) tmp[i] = pow(s[i], -0.25);
    }
    KL_T(ir_affine_each)(batch, n, tmp, NULL, out);
    if (info) info->iterations = o->newton_steps;
    return KL_OK;
}

static kl_status KL_T(ir_coupled_newton)(int64_t batch, int n, const kl_inv_root_opts *o, real *M,
                                         const double *s, double *tmp, real *out, real *w,
                                         kl_inv_root_info *info) {
    const int64_t nn = (int64_t)n * n;
    const size_t sz = (size_t)batch * nn;
    const int p = o->root;
    const double alpha = -1.0 / p;
    real *X = out, *N = w, *N2 = w + sz, *T = w + 2 * sz, *T2 = w + 3 * sz;
    /* z = (p+1)/(2s): X₀ = z^(1/p)·I, M₀ = z·A_reg */
    for (int64_t i = 0; i < batch; i++) {
        const double z = (p + 1.0) / (2.0 * s[i]);
        tmp[i] = z;
        KL_T(kl_bset_identity)(1, n, pow(z, 1.0 / p), X + i * nn);
    }
    KL_T(ir_affine_each)(batch, n, tmp, NULL, M);
    double err = KL_T(kl_bmax_abs_minus_identity)(batch, n, M);
    int it = 0;
    while (err > o->cn_tol && it < o->newton_steps) {
        it++;
        memcpy(N, M, sizeof(real) * sz); /* N = (1 − α)·I + α·M */
        KL_T(kl_bscale_shift)(batch, n, alpha, 1.0 - alpha, N);
        KL_TRY(KL_T(kl_bgemm)(batch, 0, 0, n, n, n, 1.0, X, nn, N, nn, 0.0, T, nn)); /* X ← X·N */
        memcpy(X, T, sizeof(real) * sz);
        /* M ← N^p·M, as (N²)^(p/2)·M for even p (p = 4: N², then N²·(N²·M)) */
        const real *F = N;
        int reps = p;
        if (p % 2 == 0) {
            KL_TRY(KL_T(kl_bgemm)(batch, 0, 0, n, n, n, 1.0, N, nn, N, nn, 0.0, N2, nn));
            F = N2;
            reps = p / 2;
        }
        for (int r = 0; r < reps; r++) {
            KL_TRY(KL_T(kl_bgemm)(batch, 0, 0, n, n, n, 1.0, F, nn, M, nn, 0.0, T2, nn));
            memcpy(M, T2, sizeof(real) * sz);
        }
        err = KL_T(kl_bmax_abs_minus_identity)(batch, n, M);
    }
    if (info) {
        info->iterations = it;
        info->residual = err;
    }
    return KL_OK;
}

static kl_status KL_T(ir_chebyshev)(int64_t batch, int n, const kl_inv_root_opts *o, real *S, const double *s,
                                    double *tmp, real *out, real *w) {
    const int64_t nn = (int64_t)n * n;
    const int d = o->cheb_degree;
    const double lo = o->cheb_lo, hi = o->cheb_hi;
    double *own = NULL;
    const double *c = o->cheb_coeffs;
    if (!c) {
        own = (double *)kl_malloc(sizeof(double) * (size_t)(d + 1), "Chebyshev coefficients");
        if (!own) return KL_ERR_OOM;
        kl_status st = kl_chebyshev_coeffs(o->root, o->cheb_shift, lo, hi, d, 10000, own);
        if (st != KL_OK) {
            free(own);
            return st;
        }
        c = own;
    }
    /* S = (2/(s(hi − lo)))·A_reg − ((lo + hi)/(hi − lo))·I maps x = A_reg/s ∈ [lo, hi] onto [−1, 1] */
    double *shift = tmp + batch;
    for (int64_t i = 0; i < batch; i++) {
        tmp[i] = 2.0 / (s[i] * (hi - lo));
        shift[i] = -(lo + hi) / (hi - lo);
    }
    KL_T(ir_affine_each)(batch, n, tmp, shift, S);
    /* Clenshaw: b_d = c_d·I, b_{d−1} = 2c_d·S + c_{d−1}·I, b_k = 2S·b_{k+1} − b_{k+2} + c_k·I,
     * result S·b₁ − b₂ + c₀·I; b1 holds b_{k+1}, b2 holds b_{k+2} and is overwritten by b_k. */
    real *b1 = w, *b2 = out;
    kl_status st = KL_OK;
    if (d == 0) {
        KL_T(kl_bset_identity)(batch, n, c[0], out);
    } else {
        KL_T(kl_bset_identity)(batch, n, c[d], b1);
        memset(b2, 0, sizeof(real) * (size_t)batch * nn);
        if (d >= 2) {
            memcpy(b2, S, sizeof(real) * (size_t)batch * nn);
            KL_T(kl_bscale_shift)(batch, n, 2.0 * c[d], c[d - 1], b2);
            real *t = b1; b1 = b2; b2 = t;
        }
        for (int k = d - 2; k >= 1 && st == KL_OK; k--) {
            KL_T(kl_bscale_shift)(batch, n, -1.0, c[k], b2);
            st = KL_T(kl_bgemm)(batch, 0, 0, n, n, n, 2.0, S, nn, b1, nn, 1.0, b2, nn);
            real *t = b1; b1 = b2; b2 = t;
        }
        if (st == KL_OK) {
            KL_T(kl_bscale_shift)(batch, n, -1.0, c[0], b2);
            st = KL_T(kl_bgemm)(batch, 0, 0, n, n, n, 1.0, S, nn, b1, nn, 1.0, b2, nn);
        }
        if (st == KL_OK && b2 != out) memcpy(out, b2, sizeof(real) * (size_t)batch * nn);
    }
    free(own);
    KL_TRY(st);
    /* The polynomial approximates (A_reg/s + shift)^(−1/p); s^(−1/p) turns it into (A_reg + s·shift)^(−1/p). */
    for (int64_t i = 0; i < batch; i++) tmp[i] = pow(s[i], -1.0 / o->root);
    KL_T(ir_affine_each)(batch, n, tmp, NULL, out);
    return KL_OK;
}

static kl_status KL_T(ir_eigh)(int64_t batch, int n, const kl_inv_root_opts *o, real *Q, real *out, real *w) {
    const int64_t nn = (int64_t)n * n;
    real *lam = w, *T = w + (size_t)batch * n;
    KL_TRY(KL_T(kl_beigh)(batch, n, Q, lam, o->eigh));
    for (int64_t i = 0; i < batch; i++) {
        real *L = lam + i * n;
        /* Distributed Shampoo's heuristic: λ ← λ + eps − min(λ_min, 0) (eps counted a second time). */
        const double shift = o->eps - ((double)L[0] < 0 ? (double)L[0] : 0.0);
        for (int j = 0; j < n; j++) {
            const double l = (double)L[j] + shift;
            L[j] = (real)(l > 0 ? pow(l, -1.0 / o->root) : 0.0); /* pseudo-inverse on a null space */
        }
        const real *Qi = Q + i * nn;
        real *Ti = T + i * nn;
        for (int r = 0; r < n; r++)
            for (int col = 0; col < n; col++) Ti[(int64_t)r * n + col] = Qi[(int64_t)r * n + col] * L[col];
    }
    return KL_T(kl_bgemm)(batch, 0, 1, n, n, n, 1.0, T, nn, Q, nn, 0.0, out, nn); /* Q·diag(f)·Qᵀ */
}

kl_status KL_T(kl_inv_root)(int64_t batch, int n, const real *a, real *out, const kl_inv_root_opts *o,
                            kl_inv_root_info *info) {
    KL_TRY(ir_check(batch, n, o));
    if (info) {
        info->iterations = 0;
        info->residual = 0;
    }
    if (batch == 0) return KL_OK;
    const int64_t nn = (int64_t)n * n;
    const size_t sz = (size_t)batch * nn;
    /* scratch: A_reg (1 stack) + 4 stacks of work, and 3 doubles per matrix */
    real *areg = (real *)kl_malloc(sizeof(real) * 5 * sz, "inverse-root scratch");
    double *s = (double *)kl_malloc(sizeof(double) * 3 * (size_t)batch, "inverse-root scales");
    if (!areg || !s) {
        free(areg);
        free(s);
        return KL_ERR_OOM;
    }
    real *w = areg + sz;
    memcpy(areg, a, sizeof(real) * sz);
    KL_T(kl_bscale_shift)(batch, n, 1.0, o->eps, areg);
    kl_status st = KL_OK;
    if (o->method != KL_ROOT_EIGH) {
        kl_inv_root_opts so = *o;
        so.eps = 0; /* areg already carries eps */
        st = KL_T(kl_root_scale)(batch, n, areg, &so, s);
        for (int64_t i = 0; i < batch; i++) s[i] = ir_guard_scale(s[i]);
    }
    if (st == KL_OK) {
        switch (o->method) {
        case KL_ROOT_NEWTON_DB: st = KL_T(ir_newton_db)(batch, n, o, areg, s, s + batch, out, w, info); break;
        case KL_ROOT_COUPLED_NEWTON:
            st = KL_T(ir_coupled_newton)(batch, n, o, areg, s, s + batch, out, w, info);
            break;
        case KL_ROOT_CHEBYSHEV: st = KL_T(ir_chebyshev)(batch, n, o, areg, s, s + batch, out, w); break;
        case KL_ROOT_EIGH: st = KL_T(ir_eigh)(batch, n, o, areg, out, w); break;
        }
    }
    free(areg);
    free(s);
    return st;
}

#endif /* KL_IR_PASS */
