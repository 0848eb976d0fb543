/* dct_test.cc — optim/dct: the orthonormal DCT-II basis, top-r column selection, projection and back-
 * projection, and the moment index remap at a refresh (§C4 of optimizers-dash-dct.md). */
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <numeric>
#include <random>
#include <set>
#include <vector>

extern "C" {
#include "dct.h"
#include "linalg.h"
}
#include "test_util.h"

namespace {

using Mat = std::vector<double>;
const double kPi = 3.14159265358979323846;

Mat basis(int n, kl_dct_basis_kind kind) {
    Mat q((size_t)n * n);
    EXPECT_EQ(kl_dct_basis_d(n, kind, q.data()), KL_OK);
    return q;
}

double frob2(const double *a, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * a[i];
    return s;
}

double max_abs_diff(const Mat &a, const Mat &b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); i++) m = std::fmax(m, std::fabs(a[i] - b[i]));
    return m;
}

/* r distinct indices in [0, n), random order */
std::vector<int32_t> random_subset(int n, int r, uint64_t seed) {
    std::vector<int32_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    std::mt19937_64 g(seed);
    std::shuffle(all.begin(), all.end(), g);
    all.resize(r);
    return all;
}

/* orthonormal DCT-II of one row by its definition, with std::cos on the unreduced argument */
std::vector<double> dct2_direct(const double *x, int n) {
    std::vector<double> y(n);
    for (int k = 0; k < n; k++) {
        double s = 0;
        for (int j = 0; j < n; j++) s += x[j] * std::cos(kPi * k * (2 * j + 1) / (2.0 * n));
        y[k] = s * (k == 0 ? std::sqrt(1.0 / n) : std::sqrt(2.0 / n));
    }
    return y;
}

/* Makhoul's route (the FFT path a GPU would take), with a naive DFT: reorder as [even indices ascending,
 * odd indices descending], transform, multiply bin k by 2·e^(−iπk/(2N)), divide bin 0 by sqrt(4N) and the
 * others by sqrt(2N), keep the real part. */
std::vector<double> dct2_makhoul(const double *x, int n) {
    std::vector<double> v(n);
    int p = 0;
    for (int j = 0; j < n; j += 2) v[p++] = x[j];
    for (int j = (n % 2 == 0) ? n - 1 : n - 2; j >= 1; j -= 2) v[p++] = x[j];
    std::vector<double> y(n);
    for (int k = 0; k < n; k++) {
        std::complex<double> s = 0;
        for (int j = 0; j < n; j++) s += v[j] * std::polar(1.0, -2.0 * kPi * k * j / n);
        std::complex<double> t = 2.0 * std::polar(1.0, -kPi * k / (2.0 * n)) * s;
        y[k] = t.real() / std::sqrt(k == 0 ? 4.0 * n : 2.0 * n);
    }
    return y;
}

}  // namespace

TEST(DctBasis, KnownEntriesAtEight) {
    Mat d(64);
    ASSERT_EQ(kl_dct2_matrix_d(8, d.data()), KL_OK);
    /* the reference's values, printed to 8 decimals */
    EXPECT_NEAR(d[0 * 8 + 0], 0.35355339, 6e-9);
    EXPECT_NEAR(d[1 * 8 + 0], 0.49039264, 6e-9);
    EXPECT_NEAR(d[1 * 8 + 7], -0.49039264, 6e-9);
    EXPECT_NEAR(d[7 * 8 + 3], -0.49039264, 6e-9);
    /* Q = Dᵀ for DCT2, Q = D for DCT3 */
    Mat q2 = basis(8, KL_DCT_BASIS_DCT2), q3 = basis(8, KL_DCT_BASIS_DCT3);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++) {
            EXPECT_EQ(q2[(size_t)i * 8 + j], d[(size_t)j * 8 + i]);
            EXPECT_EQ(q3[(size_t)i * 8 + j], d[(size_t)i * 8 + j]);
        }
    EXPECT_EQ(kl_dct2_matrix_d(0, d.data()), KL_ERR_INVALID);
}

TEST(DctBasis, IsOrthonormalToRounding) {
    const uint64_t seed = kltest::fresh_seed("DctOrthonormal");
    for (int n : {1, 8, 96, 257, 512}) {
        Mat d((size_t)n * n), ddt((size_t)n * n);
        ASSERT_EQ(kl_dct2_matrix_d(n, d.data()), KL_OK);
        ASSERT_EQ(kl_bgemm_d(1, 0, 1, n, n, n, 1.0, d.data(), 0, d.data(), 0, 0.0, ddt.data(), 0), KL_OK);
        double worst = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) worst = std::fmax(worst, std::fabs(ddt[(size_t)i * n + j] - (i == j)));
        /* entries are cosines rounded once (argument folded exactly to [0, π/4]); an n-term dot product
         * then errs by ~sqrt(n)·1e−16: 1e−14 up to n = 512 (the reference's bound was 1e−12) */
        EXPECT_LT(worst, 1e-14) << "n " << n;
        std::vector<float> qf((size_t)n * n);
        ASSERT_EQ(kl_dct_basis_f(n, KL_DCT_BASIS_DCT2, qf.data()), KL_OK);
        double wf = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double s = 0; /* columns of Q = rows of D */
                for (int k = 0; k < n; k++) s += (double)qf[(size_t)k * n + i] * (double)qf[(size_t)k * n + j];
                wf = std::fmax(wf, std::fabs(s - (i == j)));
            }
        /* each float entry is off by <= 2^−24 of itself; in a dot product these add to < 1e−7 (reference) */
        EXPECT_LT(wf, 1e-7) << "float n " << n;
    }
    /* n = 2048 (the reference's largest): 64 random rows against all rows, to keep the test quick */
    const int n = 2048, rows = 64;
    Mat d((size_t)n * n), sub((size_t)rows * n), prod((size_t)rows * n);
    ASSERT_EQ(kl_dct2_matrix_d(n, d.data()), KL_OK);
    std::vector<int32_t> pick = random_subset(n, rows, seed);
    for (int i = 0; i < rows; i++) std::copy(&d[(size_t)pick[i] * n], &d[(size_t)pick[i] * n] + n, &sub[(size_t)i * n]);
    ASSERT_EQ(kl_bgemm_d(1, 0, 1, rows, n, n, 1.0, sub.data(), 0, d.data(), 0, 0.0, prod.data(), 0), KL_OK);
    double worst = 0;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < n; j++) worst = std::fmax(worst, std::fabs(prod[(size_t)i * n + j] - (pick[i] == j)));
    /* the reference measured 2.5e−13 with naive cosines; the folded argument gives ~1e−15 */
    EXPECT_LT(worst, 1e-14) << "n 2048";
}

TEST(DctBasis, RowTransformIsOrthonormalDct2AndMatchesMakhoul) {
    const uint64_t seed = kltest::fresh_seed("DctMakhoul");
    for (int n : {16, 15}) {
        const int rows = 3;
        Mat x = kltest::to_double(kltest::random_normal((size_t)rows * n, 1.0f, seed + n));
        Mat q = basis(n, KL_DCT_BASIS_DCT2), s((size_t)rows * n);
        ASSERT_EQ(kl_dct_transform_d(rows, n, x.data(), q.data(), KL_DCT_RIGHT, s.data()), KL_OK);
        for (int r = 0; r < rows; r++) {
            std::vector<double> direct = dct2_direct(&x[(size_t)r * n], n), mk = dct2_makhoul(&x[(size_t)r * n], n);
            for (int k = 0; k < n; k++) {
                /* three routes to the same O(1) numbers, each with ~n·1e−16 rounding (reference: 3e−14) */
                EXPECT_NEAR(s[(size_t)r * n + k], direct[k], 1e-13) << "n " << n << " k " << k;
                EXPECT_NEAR(s[(size_t)r * n + k], mk[k], 1e-13) << "Makhoul n " << n << " k " << k;
            }
        }
    }
}

TEST(DctSelect, RecoversPlantedColumnsExactly) {
    const uint64_t seed = kltest::fresh_seed("DctPlanted");
    const int r = 8;
    for (kl_dct_basis_kind kind : {KL_DCT_BASIS_DCT2, KL_DCT_BASIS_DCT3})
        for (kl_dct_side side : {KL_DCT_RIGHT, KL_DCT_LEFT}) {
            const int rows = side == KL_DCT_RIGHT ? 96 : 64, cols = side == KL_DCT_RIGHT ? 64 : 96;
            const int n = side == KL_DCT_RIGHT ? cols : rows, outer = side == KL_DCT_RIGHT ? rows : cols;
            ASSERT_EQ(kl_dct_choose_side(rows, cols), side);
            const Mat q = basis(n, kind);
            const std::vector<int32_t> planted = random_subset(n, r, seed + 3 * (int)side + (int)kind);
            Mat qs((size_t)n * r);
            ASSERT_EQ(kl_dct_basis_columns_d(n, q.data(), r, planted.data(), qs.data()), KL_OK);
            /* G = W·Q_Sᵀ (right, W outer×r) or Q_S·W (left, W r×outer): exactly rank r in the basis */
            Mat w = kltest::to_double(kltest::random_normal((size_t)outer * r, 1.0f, seed + 7));
            Mat g((size_t)rows * cols), s(g.size()), back(g.size());
            ASSERT_EQ(kl_dct_back_project_d(rows, cols, w.data(), qs.data(), r, side, g.data()), KL_OK);
            ASSERT_EQ(kl_dct_transform_d(rows, cols, g.data(), q.data(), side, s.data()), KL_OK);
            std::vector<int32_t> idx(r);
            std::vector<double> scores(n);
            ASSERT_EQ(kl_dct_select_d(rows, cols, s.data(), side, 1, r, idx.data(), scores.data()), KL_OK);
            EXPECT_EQ(std::set<int32_t>(idx.begin(), idx.end()), std::set<int32_t>(planted.begin(), planted.end()))
                << "kind " << (int)kind << " side " << (int)side;
            for (int j = 1; j < r; j++) EXPECT_GE(scores[idx[j - 1]], scores[idx[j]]) << "descending scores";
            /* the slice of S at a refresh equals the per-step product with the gathered columns */
            Mat qr((size_t)n * r), a_slice((size_t)outer * r), a_proj((size_t)outer * r);
            ASSERT_EQ(kl_dct_basis_columns_d(n, q.data(), r, idx.data(), qr.data()), KL_OK);
            ASSERT_EQ(kl_dct_slice_d(rows, cols, s.data(), side, r, idx.data(), a_slice.data()), KL_OK);
            ASSERT_EQ(kl_dct_project_d(rows, cols, g.data(), qr.data(), r, side, a_proj.data()), KL_OK);
            EXPECT_LT(max_abs_diff(a_slice, a_proj), 1e-13); /* same sums in another order; entries O(1) */
            ASSERT_EQ(kl_dct_back_project_d(rows, cols, a_proj.data(), qr.data(), r, side, back.data()), KL_OK);
            /* exact recovery up to rounding (reference: ~3e−15) */
            Mat diff(g);
            for (size_t e = 0; e < diff.size(); e++) diff[e] -= back[e];
            EXPECT_LT(std::sqrt(frob2(diff.data(), diff.size()) / frob2(g.data(), g.size())), 1e-13);
        }
}

TEST(DctProject, PythagorasHolds) {
    const uint64_t seed = kltest::fresh_seed("DctPythagoras");
    const int r = 12;
    for (kl_dct_side side : {KL_DCT_RIGHT, KL_DCT_LEFT}) {
        const int rows = side == KL_DCT_RIGHT ? 50 : 40, cols = side == KL_DCT_RIGHT ? 40 : 50;
        const int n = 40, outer = 50;
        const Mat q = basis(n, KL_DCT_BASIS_DCT2);
        const Mat g = kltest::to_double(kltest::random_normal((size_t)rows * cols, 1.0f, seed + (int)side));
        const std::vector<int32_t> idx = random_subset(n, r, seed + 11);
        Mat qr((size_t)n * r), a((size_t)outer * r), back(g.size());
        ASSERT_EQ(kl_dct_basis_columns_d(n, q.data(), r, idx.data(), qr.data()), KL_OK);
        ASSERT_EQ(kl_dct_project_d(rows, cols, g.data(), qr.data(), r, side, a.data()), KL_OK);
        ASSERT_EQ(kl_dct_back_project_d(rows, cols, a.data(), qr.data(), r, side, back.data()), KL_OK);
        Mat resid(g);
        for (size_t i = 0; i < g.size(); i++) resid[i] -= back[i];
        const double lhs = frob2(a.data(), a.size()) + frob2(resid.data(), resid.size()),
                     rhs = frob2(g.data(), g.size());
        /* sums of 2000 squares: relative rounding ~1e−15 */
        EXPECT_NEAR(lhs / rhs, 1.0, 1e-13) << "side " << (int)side;
    }
}

TEST(DctSelect, OrderIsByScoreWithTiesToLowerIndexForBothNorms) {
    /* 2×5 S, RIGHT: column ℓ1 scores 3, 5, 3, 0, 5; ℓ2 scores sqrt(5), sqrt(13), sqrt(9), 0, sqrt(25) */
    const double s[10] = {1, 2, 3, 0, -5, -2, -3, 0, 0, 0};
    int32_t idx[4];
    ASSERT_EQ(kl_dct_select_d(2, 5, s, KL_DCT_RIGHT, 1, 4, idx, nullptr), KL_OK);
    EXPECT_EQ(std::vector<int32_t>(idx, idx + 4), (std::vector<int32_t>{1, 4, 0, 2}));
    ASSERT_EQ(kl_dct_select_d(2, 5, s, KL_DCT_RIGHT, 2, 4, idx, nullptr), KL_OK);
    EXPECT_EQ(std::vector<int32_t>(idx, idx + 4), (std::vector<int32_t>{4, 1, 2, 0}));
    /* LEFT scores rows: row 0 ℓ1 = 11, row 1 = 5 */
    ASSERT_EQ(kl_dct_select_d(2, 5, s, KL_DCT_LEFT, 1, 2, idx, nullptr), KL_OK);
    EXPECT_EQ(idx[0], 0);
    EXPECT_EQ(idx[1], 1);
    const float sf[10] = {1, 2, 3, 0, -5, -2, -3, 0, 0, 0};
    ASSERT_EQ(kl_dct_select_f(2, 5, sf, KL_DCT_RIGHT, 1, 4, idx, nullptr), KL_OK);
    EXPECT_EQ(std::vector<int32_t>(idx, idx + 4), (std::vector<int32_t>{1, 4, 0, 2}));
    EXPECT_EQ(kl_dct_select_d(2, 5, s, KL_DCT_RIGHT, 3, 2, idx, nullptr), KL_ERR_INVALID);
    EXPECT_EQ(kl_dct_select_d(2, 5, s, KL_DCT_RIGHT, 1, 6, idx, nullptr), KL_ERR_INVALID);
}

TEST(DctRemap, RotationIsPartialPermutationAndRemapEqualsIt) {
    const uint64_t seed = kltest::fresh_seed("DctRemap");
    const int n = 64, r = 16, outer = 24;
    std::mt19937_64 gen(seed);
    for (kl_dct_basis_kind kind : {KL_DCT_BASIS_DCT2, KL_DCT_BASIS_DCT3}) {
        const Mat q = basis(n, kind);
        /* new selection: 9 of the previous indices (moved to random slots) and 7 fresh ones */
        std::vector<int32_t> perm = random_subset(n, n, seed + (int)kind);
        std::vector<int32_t> prev(perm.begin(), perm.begin() + r), fresh(perm.begin() + r, perm.begin() + r + 7);
        std::vector<int32_t> next(prev.begin(), prev.begin() + 9);
        next.insert(next.end(), fresh.begin(), fresh.end());
        std::shuffle(next.begin(), next.end(), gen);
        Mat rot((size_t)r * r);
        ASSERT_EQ(kl_dct_rotation_d(n, q.data(), r, prev.data(), next.data(), rot.data()), KL_OK);
        std::vector<int32_t> src(r);
        ASSERT_EQ(kl_dct_remap_plan(n, r, prev.data(), next.data(), src.data()), KL_OK);
        int kept = 0;
        for (int k = 0; k < r; k++)
            for (int j = 0; j < r; j++) {
                /* orthonormal basis columns: Q_iᵀQ_j = δ_ij to rounding (1e−15) */
                EXPECT_NEAR(rot[(size_t)k * r + j], prev[k] == next[j] ? 1.0 : 0.0, 1e-14);
                EXPECT_EQ(src[j] == k, prev[k] == next[j]);
                kept += prev[k] == next[j];
            }
        EXPECT_EQ(kept, 9);
        for (kl_dct_side side : {KL_DCT_RIGHT, KL_DCT_LEFT}) {
            /* moments: RIGHT outer×r, updated as m·R; LEFT r×outer, updated as R'·m with the reference's
             * R' = Q[:, new]ᵀ·Q[:, prev] = Rᵀ */
            Mat m = kltest::to_double(kltest::random_normal((size_t)outer * r, 1.0f, seed + 5));
            Mat v(m.size());
            for (size_t i = 0; i < m.size(); i++) v[i] = m[i] * m[i];
            Mat mr(m.size()), vr(m.size());
            if (side == KL_DCT_RIGHT) {
                ASSERT_EQ(kl_bgemm_d(1, 0, 0, outer, r, r, 1.0, m.data(), 0, rot.data(), 0, 0.0, mr.data(), 0), KL_OK);
                ASSERT_EQ(kl_bgemm_d(1, 0, 0, outer, r, r, 1.0, v.data(), 0, rot.data(), 0, 0.0, vr.data(), 0), KL_OK);
            } else {
                ASSERT_EQ(kl_bgemm_d(1, 1, 0, r, outer, r, 1.0, rot.data(), 0, m.data(), 0, 0.0, mr.data(), 0), KL_OK);
                ASSERT_EQ(kl_bgemm_d(1, 1, 0, r, outer, r, 1.0, rot.data(), 0, v.data(), 0, 0.0, vr.data(), 0), KL_OK);
            }
            for (double &x : vr) x = std::fabs(x); /* the reference's |v·R| */
            Mat m2(m), v2(v);
            ASSERT_EQ(kl_dct_remap_d(outer, r, side, src.data(), m2.data()), KL_OK);
            ASSERT_EQ(kl_dct_remap_d(outer, r, side, src.data(), v2.data()), KL_OK);
            /* the products add 15 terms of ~1e−16 to each kept entry; the remap copies exactly */
            EXPECT_LT(max_abs_diff(m2, mr), 1e-13) << "kind " << (int)kind << " side " << (int)side;
            EXPECT_LT(max_abs_diff(v2, vr), 1e-13);
            for (double x : v2) EXPECT_GE(x, 0.0);
            std::vector<float> mf(m.begin(), m.end());
            ASSERT_EQ(kl_dct_remap_f(outer, r, side, src.data(), mf.data()), KL_OK);
            for (size_t i = 0; i < mf.size(); i++) EXPECT_EQ(mf[i], (float)m2[i]) << "float remap is a copy";
        }
    }
    std::vector<int32_t> bad = {0, 1, 1}, ok = {0, 1, 2}, src(3);
    EXPECT_EQ(kl_dct_remap_plan(8, 3, ok.data(), bad.data(), src.data()), KL_ERR_INVALID);
    std::vector<int32_t> out_of_range = {0, 1, 8};
    EXPECT_EQ(kl_dct_remap_plan(8, 3, out_of_range.data(), ok.data(), src.data()), KL_ERR_INVALID);
}

TEST(DctAdamW, FirstStepIsSignOfProjectedGradient) {
    /* DCT-AdamW at t = 1 with zero moments: m = (1−β1)a, v = (1−β2)a², u = m/(ε·sqrt(1−β2) + sqrt(v)),
     * W −= lr·sqrt(1−β2)/(1−β1)·u·Q_rᵀ = lr·a/(ε + |a|)·Q_rᵀ ≈ lr·sign(a)·Q_rᵀ (§C4) */
    const uint64_t seed = kltest::fresh_seed("DctAdamWStep1");
    const int rows = 30, cols = 20, r = 6;
    const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const Mat q = basis(cols, KL_DCT_BASIS_DCT2);
    const Mat g = kltest::to_double(kltest::random_normal((size_t)rows * cols, 1.0f, seed));
    Mat s(g.size()), a((size_t)rows * r), qr((size_t)cols * r), upd(g.size()), sign_upd(g.size());
    std::vector<int32_t> idx(r);
    ASSERT_EQ(kl_dct_transform_d(rows, cols, g.data(), q.data(), KL_DCT_RIGHT, s.data()), KL_OK);
    ASSERT_EQ(kl_dct_select_d(rows, cols, s.data(), KL_DCT_RIGHT, 1, r, idx.data(), nullptr), KL_OK);
    ASSERT_EQ(kl_dct_slice_d(rows, cols, s.data(), KL_DCT_RIGHT, r, idx.data(), a.data()), KL_OK);
    ASSERT_EQ(kl_dct_basis_columns_d(cols, q.data(), r, idx.data(), qr.data()), KL_OK);
    Mat u(a.size()), sg(a.size());
    for (size_t i = 0; i < a.size(); i++) {
        const double m = (1 - b1) * a[i], v = (1 - b2) * a[i] * a[i];
        u[i] = lr * std::sqrt(1 - b2) / (1 - b1) * m / (eps * std::sqrt(1 - b2) + std::sqrt(v));
        sg[i] = lr * (a[i] > 0 ? 1.0 : -1.0);
    }
    ASSERT_EQ(kl_dct_back_project_d(rows, cols, u.data(), qr.data(), r, KL_DCT_RIGHT, upd.data()), KL_OK);
    ASSERT_EQ(kl_dct_back_project_d(rows, cols, sg.data(), qr.data(), r, KL_DCT_RIGHT, sign_upd.data()), KL_OK);
    /* u_i = lr·sign(a_i)·|a_i|/(ε + |a_i|) (the sqrt(1−β2) cancel), off by lr·ε/(ε + |a_i|); back-projected,
     * entry (i, j) is off by at most Σ_k lr·ε/(ε + |a_ik|)·|Q_r[j, k]| (triangle inequality), plus rounding.
     * A fixed bound would flake: among 180 Gaussian a_i one below 3e−5 (which a fixed lr·1e−4 cannot
     * cover) turns up about once in 200 seeds (seed 7365549603861171205 gave |a| ~ 4e−6). */
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double bound = 1e-15;
            for (int k = 0; k < r; k++)
                bound += lr * eps / (eps + std::fabs(a[(size_t)i * r + k])) * std::fabs(qr[(size_t)j * r + k]);
            const size_t e = (size_t)i * cols + j;
            ASSERT_LE(std::fabs(upd[e] - sign_upd[e]), bound) << "entry " << i << ", " << j;
        }
    /* and it is not trivially zero: Q_r has orthonormal columns, so ||lr·sign(a)·Q_rᵀ||² = lr²·rows·r */
    EXPECT_NEAR(frob2(upd.data(), upd.size()), lr * lr * rows * r, lr * lr * rows * r * 1e-4);
}

TEST(DctFloat, FloatPathMatchesDouble) {
    const uint64_t seed = kltest::fresh_seed("DctFloat");
    const int rows = 33, cols = 48, r = 10; /* LEFT: basis of size 33 */
    const kl_dct_side side = kl_dct_choose_side(rows, cols);
    ASSERT_EQ(side, KL_DCT_LEFT);
    const int n = rows;
    std::vector<float> gf = kltest::random_normal((size_t)rows * cols, 1.0f, seed), qf((size_t)n * n),
                       sf(gf.size()), qrf((size_t)n * r), af((size_t)r * cols), bf(gf.size());
    Mat g(gf.begin(), gf.end()), q = basis(n, KL_DCT_BASIS_DCT2), s(g.size()), qr((size_t)n * r), a((size_t)r * cols),
        b(g.size());
    ASSERT_EQ(kl_dct_basis_f(n, KL_DCT_BASIS_DCT2, qf.data()), KL_OK);
    ASSERT_EQ(kl_dct_transform_f(rows, cols, gf.data(), qf.data(), side, sf.data()), KL_OK);
    ASSERT_EQ(kl_dct_transform_d(rows, cols, g.data(), q.data(), side, s.data()), KL_OK);
    std::vector<int32_t> idx(r);
    ASSERT_EQ(kl_dct_select_d(rows, cols, s.data(), side, 1, r, idx.data(), nullptr), KL_OK);
    ASSERT_EQ(kl_dct_basis_columns_f(n, qf.data(), r, idx.data(), qrf.data()), KL_OK);
    ASSERT_EQ(kl_dct_basis_columns_d(n, q.data(), r, idx.data(), qr.data()), KL_OK);
    ASSERT_EQ(kl_dct_project_f(rows, cols, gf.data(), qrf.data(), r, side, af.data()), KL_OK);
    ASSERT_EQ(kl_dct_project_d(rows, cols, g.data(), qr.data(), r, side, a.data()), KL_OK);
    ASSERT_EQ(kl_dct_back_project_f(rows, cols, af.data(), qrf.data(), r, side, bf.data()), KL_OK);
    ASSERT_EQ(kl_dct_back_project_d(rows, cols, a.data(), qr.data(), r, side, b.data()), KL_OK);
    std::string rep;
    Mat sfd(sf.begin(), sf.end()), afd(af.begin(), af.end()), bfd(bf.begin(), bf.end());
    /* float: 33-term sums of O(1) terms, each rounding 6e−8 → ~1e−6 absolute; 1e−5 allows the worst case */
    EXPECT_TRUE(kltest::all_close(sfd.data(), s.data(), s.size(), 1e-5, 1e-5, &rep)) << rep;
    EXPECT_TRUE(kltest::all_close(afd.data(), a.data(), a.size(), 1e-5, 1e-5, &rep)) << rep;
    EXPECT_TRUE(kltest::all_close(bfd.data(), b.data(), b.size(), 1e-5, 1e-5, &rep)) << rep;
}
