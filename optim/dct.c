/* dct.c — DCT basis, top-r column selection, projections and the moment index remap (see dct.h).
 * Pure numerics on caller-owned buffers; deciding when to refresh and holding m, v is the optimizer's job.
 * The typed half is compiled twice (double, float) by including this file with KL_DCT_PASS set. */
#ifndef KL_DCT_PASS

#include "dct.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linalg.h"

kl_dct_side kl_dct_choose_side(int64_t rows, int64_t cols) { return rows >= cols ? KL_DCT_RIGHT : KL_DCT_LEFT; }

/* cos(π·m/(2n)) for an integer m, folded exactly to an argument in [0, π/4]. */
static double dct_cos(int64_t m, int n) {
    const double pi = 3.14159265358979323846;
    const int64_t full = 4 * (int64_t)n; /* 2π */
    m %= full;
    if (m > 2 * (int64_t)n) m = full - m; /* cos(2π − θ) = cos θ */
    double sign = 1.0;
    if (m > n) { /* cos(π − θ) = −cos θ */
        m = 2 * (int64_t)n - m;
        sign = -1.0;
    }
    if (2 * m > n) return sign * sin(pi * (double)(n - m) / (2.0 * n)); /* cos θ = sin(π/2 − θ) */
    return sign * cos(pi * (double)m / (2.0 * n));
}

kl_status kl_dct2_matrix_d(int n, double *d) {
    if (n <= 0) return kl_error(KL_ERR_INVALID, "kl_dct2_matrix: n must be > 0, got %d", n);
    const double scale = sqrt(2.0 / n), row0 = sqrt(1.0 / n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            d[(int64_t)i * n + j] = (i == 0) ? row0 : scale * dct_cos((int64_t)i * (2 * j + 1), n);
    return KL_OK;
}

kl_status kl_dct_basis_d(int n, kl_dct_basis_kind kind, double *q) {
    if (kind != KL_DCT_BASIS_DCT2 && kind != KL_DCT_BASIS_DCT3)
        return kl_error(KL_ERR_INVALID, "kl_dct_basis: unknown basis kind %d", (int)kind);
    KL_TRY(kl_dct2_matrix_d(n, q));
    if (kind == KL_DCT_BASIS_DCT2) /* Q = Dᵀ */
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) {
                double t = q[(int64_t)i * n + j];
                q[(int64_t)i * n + j] = q[(int64_t)j * n + i];
                q[(int64_t)j * n + i] = t;
            }
    return KL_OK;
}

kl_status kl_dct_basis_f(int n, kl_dct_basis_kind kind, float *q) {
    if (n <= 0) return kl_error(KL_ERR_INVALID, "kl_dct_basis: n must be > 0, got %d", n);
    double *t = (double *)kl_malloc(sizeof(double) * (size_t)n * n, "DCT basis scratch");
    if (!t) return KL_ERR_OOM;
    kl_status st = kl_dct_basis_d(n, kind, t);
    if (st == KL_OK)
        for (int64_t e = 0; e < (int64_t)n * n; e++) q[e] = (float)t[e];
    free(t);
    return st;
}

static kl_status dct_check(const char *fn, int rows, int cols, kl_dct_side side, int r) {
    if (rows <= 0 || cols <= 0 || (side != KL_DCT_RIGHT && side != KL_DCT_LEFT))
        return kl_error(KL_ERR_INVALID, "%s: expected rows, cols > 0 and a valid side, got %d×%d, side %d", fn,
                        rows, cols, (int)side);
    const int n = side == KL_DCT_RIGHT ? cols : rows;
    if (r < 0 || r > n)
        return kl_error(KL_ERR_INVALID, "%s: rank r must be in [0, %d] (the basis size), got %d", fn, n, r);
    return KL_OK;
}

static kl_status dct_check_idx(const char *fn, int n, int r, const int32_t *idx) {
    for (int j = 0; j < r; j++)
        if (idx[j] < 0 || idx[j] >= n)
            return kl_error(KL_ERR_INVALID, "%s: index %d at slot %d is outside [0, %d)", fn, (int)idx[j], j, n);
    return KL_OK;
}

typedef struct {
    double score;
    int32_t index;
} dct_scored;

/* descending score, ties to the lower index */
static int dct_cmp(const void *pa, const void *pb) {
    const dct_scored *a = (const dct_scored *)pa, *b = (const dct_scored *)pb;
    if (a->score > b->score) return -1;
    if (a->score < b->score) return 1;
    return (a->index > b->index) - (a->index < b->index);
}

static kl_status dct_top_r(int n, const double *scores, int r, int32_t *idx) {
    dct_scored *t = (dct_scored *)kl_malloc(sizeof(dct_scored) * (size_t)n, "DCT selection scratch");
    if (!t) return KL_ERR_OOM;
    for (int j = 0; j < n; j++) {
        /* a NaN score sorts last rather than poisoning the order */
        t[j].score = scores[j] == scores[j] ? scores[j] : -1.0;
        t[j].index = j;
    }
    qsort(t, (size_t)n, sizeof *t, dct_cmp);
    for (int j = 0; j < r; j++) idx[j] = t[j].index;
    free(t);
    return KL_OK;
}

kl_status kl_dct_remap_plan(int n, int r, const int32_t *idx_prev, const int32_t *idx_new, int32_t *src) {
    if (n <= 0 || r < 0 || r > n)
        return kl_error(KL_ERR_INVALID, "kl_dct_remap_plan: expected 0 <= r <= n, got r %d, n %d", r, n);
    KL_TRY(dct_check_idx("kl_dct_remap_plan (previous)", n, r, idx_prev));
    KL_TRY(dct_check_idx("kl_dct_remap_plan (new)", n, r, idx_new));
    int32_t *slot = (int32_t *)kl_malloc(sizeof(int32_t) * (size_t)n, "DCT remap scratch");
    if (!slot) return KL_ERR_OOM;
    for (int i = 0; i < n; i++) slot[i] = -1;
    kl_status st = KL_OK;
    for (int k = 0; k < r && st == KL_OK; k++) {
        if (slot[idx_prev[k]] >= 0)
            st = kl_error(KL_ERR_INVALID, "kl_dct_remap_plan: previous selection repeats index %d", (int)idx_prev[k]);
        slot[idx_prev[k]] = k;
    }
    for (int j = 0; j < r && st == KL_OK; j++) {
        for (int i = 0; i < j; i++)
            if (idx_new[i] == idx_new[j])
                st = kl_error(KL_ERR_INVALID, "kl_dct_remap_plan: new selection repeats index %d", (int)idx_new[j]);
        src[j] = slot[idx_new[j]];
    }
    free(slot);
    return st;
}

#define KL_DCT_PASS 1
#define real double
#define KL_T(name) name##_d
#include "dct.c"
#undef KL_DCT_PASS
#undef real
#undef KL_T

#define KL_DCT_PASS 2
#define real float
#define KL_T(name) name##_f
#include "dct.c"

kl_status kl_dct_rotation_d(int n, const double *q, int r, const int32_t *idx_prev, const int32_t *idx_new,
                            double *rot) {
    if (n <= 0 || r <= 0 || r > n)
        return kl_error(KL_ERR_INVALID, "kl_dct_rotation: expected 0 < r <= n, got r %d, n %d", r, n);
    KL_TRY(dct_check_idx("kl_dct_rotation", n, r, idx_prev));
    KL_TRY(dct_check_idx("kl_dct_rotation", n, r, idx_new));
    double *qp = (double *)kl_malloc(sizeof(double) * 2 * (size_t)n * r, "DCT rotation scratch");
    if (!qp) return KL_ERR_OOM;
    double *qn = qp + (size_t)n * r;
    kl_status st = kl_dct_basis_columns_d(n, q, r, idx_prev, qp);
    if (st == KL_OK) st = kl_dct_basis_columns_d(n, q, r, idx_new, qn);
    if (st == KL_OK) st = kl_bgemm_d(1, 1, 0, r, r, n, 1.0, qp, 0, qn, 0, 0.0, rot, 0);
    free(qp);
    return st;
}

#else /* ---- typed half: `real` is double or float, KL_T(name) appends _d or _f ------------------- */

kl_status KL_T(kl_dct_transform)(int rows, int cols, const real *g, const real *q, kl_dct_side side, real *s) {
    KL_TRY(dct_check("kl_dct_transform", rows, cols, side, 0));
    if (side == KL_DCT_RIGHT) return KL_T(kl_bgemm)(1, 0, 0, rows, cols, cols, 1.0, g, 0, q, 0, 0.0, s, 0);
    return KL_T(kl_bgemm)(1, 1, 0, rows, cols, rows, 1.0, q, 0, g, 0, 0.0, s, 0);
}

kl_status KL_T(kl_dct_select)(int rows, int cols, const real *s, kl_dct_side side, int ell, int r, int32_t *idx,
                              double *scores) {
    KL_TRY(dct_check("kl_dct_select", rows, cols, side, r));
    if (ell != 1 && ell != 2) return kl_error(KL_ERR_INVALID, "kl_dct_select: ell must be 1 or 2, got %d", ell);
    const int n = side == KL_DCT_RIGHT ? cols : rows;
    double *sc = scores ? scores : (double *)kl_malloc(sizeof(double) * (size_t)n, "DCT scores");
    if (!sc) return KL_ERR_OOM;
    for (int j = 0; j < n; j++) sc[j] = 0;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            const double v = (double)s[(int64_t)i * cols + j];
            sc[side == KL_DCT_RIGHT ? j : i] += (ell == 1) ? fabs(v) : v * v;
        }
    if (ell == 2)
        for (int j = 0; j < n; j++) sc[j] = sqrt(sc[j]);
    kl_status st = dct_top_r(n, sc, r, idx);
    if (!scores) free(sc);
    return st;
}

kl_status KL_T(kl_dct_slice)(int rows, int cols, const real *s, kl_dct_side side, int r, const int32_t *idx,
                             real *a) {
    KL_TRY(dct_check("kl_dct_slice", rows, cols, side, r));
    KL_TRY(dct_check_idx("kl_dct_slice", side == KL_DCT_RIGHT ? cols : rows, r, idx));
    if (side == KL_DCT_RIGHT)
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < r; j++) a[(int64_t)i * r + j] = s[(int64_t)i * cols + idx[j]];
    else
        for (int j = 0; j < r; j++)
            memcpy(a + (int64_t)j * cols, s + (int64_t)idx[j] * cols, sizeof(real) * (size_t)cols);
    return KL_OK;
}

kl_status KL_T(kl_dct_basis_columns)(int n, const real *q, int r, const int32_t *idx, real *qr) {
    if (n <= 0 || r < 0 || r > n)
        return kl_error(KL_ERR_INVALID, "kl_dct_basis_columns: expected 0 <= r <= n, got r %d, n %d", r, n);
    KL_TRY(dct_check_idx("kl_dct_basis_columns", n, r, idx));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < r; j++) qr[(int64_t)i * r + j] = q[(int64_t)i * n + idx[j]];
    return KL_OK;
}

kl_status KL_T(kl_dct_project)(int rows, int cols, const real *g, const real *qr, int r, kl_dct_side side,
                               real *a) {
    KL_TRY(dct_check("kl_dct_project", rows, cols, side, r));
    if (r == 0) return KL_OK;
    if (side == KL_DCT_RIGHT) return KL_T(kl_bgemm)(1, 0, 0, rows, r, cols, 1.0, g, 0, qr, 0, 0.0, a, 0);
    return KL_T(kl_bgemm)(1, 1, 0, r, cols, rows, 1.0, qr, 0, g, 0, 0.0, a, 0);
}

kl_status KL_T(kl_dct_back_project)(int rows, int cols, const real *a, const real *qr, int r, kl_dct_side side,
                                    real *out) {
    KL_TRY(dct_check("kl_dct_back_project", rows, cols, side, r));
    if (r == 0) {
        memset(out, 0, sizeof(real) * (size_t)rows * cols);
        return KL_OK;
    }
    if (side == KL_DCT_RIGHT) return KL_T(kl_bgemm)(1, 0, 1, rows, cols, r, 1.0, a, 0, qr, 0, 0.0, out, 0);
    return KL_T(kl_bgemm)(1, 0, 0, rows, cols, r, 1.0, qr, 0, a, 0, 0.0, out, 0);
}

kl_status KL_T(kl_dct_remap)(int64_t outer, int r, kl_dct_side side, const int32_t *src, real *m) {
    if (outer < 0 || r < 0 || (side != KL_DCT_RIGHT && side != KL_DCT_LEFT))
        return kl_error(KL_ERR_INVALID, "kl_dct_remap: expected outer, r >= 0 and a valid side");
    for (int j = 0; j < r; j++)
        if (src[j] < -1 || src[j] >= r)
            return kl_error(KL_ERR_INVALID, "kl_dct_remap: plan entry %d at slot %d is outside [-1, %d)", (int)src[j],
                            j, r);
    if (r == 0 || outer == 0) return KL_OK;
    const size_t line = side == KL_DCT_RIGHT ? (size_t)r : (size_t)r * (size_t)outer;
    real *old = (real *)kl_malloc(sizeof(real) * line, "DCT remap scratch");
    if (!old) return KL_ERR_OOM;
    if (side == KL_DCT_RIGHT) {
        for (int64_t i = 0; i < outer; i++) {
            real *row = m + i * r;
            memcpy(old, row, sizeof(real) * (size_t)r);
            for (int j = 0; j < r; j++) row[j] = src[j] >= 0 ? old[src[j]] : (real)0;
        }
    } else {
        memcpy(old, m, sizeof(real) * line);
        for (int j = 0; j < r; j++) {
            real *row = m + (int64_t)j * outer;
            if (src[j] >= 0)
                memcpy(row, old + (int64_t)src[j] * outer, sizeof(real) * (size_t)outer);
            else
                memset(row, 0, sizeof(real) * (size_t)outer);
        }
    }
    free(old);
    return KL_OK;
}

#endif /* KL_DCT_PASS */
