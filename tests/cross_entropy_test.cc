/* cross_entropy_test.cc — the CPU fused softmax cross-entropy (kernels/cross_entropy.h): loss against its
 * definition, gradient and z-loss gradient against finite differences, masks (masked rows contribute
 * nothing; all masked gives 0 and zero gradients), in-place and loss-only modes, invalid targets, FP32 vs
 * FP64, stability for large logits. */
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "ops_gradcheck.h"

extern "C" {
#include "cross_entropy.h"
}

namespace {
const int N = 6, V = 11;

/* Random targets in [0, V) with rows in `masked` set to -100. */
std::vector<int32_t> targets_with_mask(uint64_t seed, std::initializer_list<int> masked) {
    std::mt19937_64 g(seed);
    std::vector<int32_t> t(N);
    for (auto &x : t) x = (int32_t)(g() % V);
    for (int m : masked) t[m] = KL_IGNORE_INDEX;
    return t;
}

double naive_row_loss(const double *x, int target, double z) {
    double s = 0;
    for (int v = 0; v < V; v++) s += std::exp(x[v]);  // small O(1) logits: no max needed here
    double lse = std::log(s);
    return lse - x[target] + z * lse * lse;
}
}  // namespace

TEST(CrossEntropy, LossMatchesDefinition) {
    uint64_t seed = kltest::fresh_seed("CrossEntropy.LossMatchesDefinition");
    auto logits = opstest::normal64((size_t)N * V, seed, 2.0);
    auto targets = targets_with_mask(seed + 1, {2});
    for (double z : {0.0, 1e-2}) {
        std::vector<double> losses(N, NAN);
        double sum = kl_cross_entropy_cpu_f64(nullptr, losses.data(), logits.data(), targets.data(), N, V, z, 1.0);
        double want_sum = 0;
        for (int n = 0; n < N; n++) {
            double want = targets[n] == KL_IGNORE_INDEX ? 0.0 : naive_row_loss(&logits[(size_t)n * V], targets[n], z);
            want_sum += want;
            EXPECT_NEAR(losses[n], want, 1e-13 * (1 + std::fabs(want))) << "row " << n << " z=" << z;  // ulps
        }
        EXPECT_NEAR(sum, want_sum, 1e-12 * (1 + std::fabs(want_sum)));
    }
}

TEST(CrossEntropy, GradientMatchesFiniteDifferences) {
    uint64_t seed = kltest::fresh_seed("CrossEntropy.GradientMatchesFiniteDifferences");
    auto logits = opstest::normal64((size_t)N * V, seed, 2.0);
    auto targets = targets_with_mask(seed + 1, {1, 4});
    const double grad_scale = 0.37;
    std::vector<double> losses(N);
    auto loss = [&] {  // dlogits is the gradient of grad_scale * (sum of losses)
        return grad_scale * kl_cross_entropy_cpu_f64(nullptr, losses.data(), logits.data(), targets.data(), N, V, 0.0, 1.0);
    };
    std::vector<double> d(logits.size(), NAN);
    kl_cross_entropy_cpu_f64(d.data(), losses.data(), logits.data(), targets.data(), N, V, 0.0, grad_scale);
    EXPECT_TRUE(opstest::MatchesFiniteDifferences("dlogits", logits, d, loss));
}

TEST(CrossEntropy, ZLossGradientMatchesFiniteDifferences) {
    uint64_t seed = kltest::fresh_seed("CrossEntropy.ZLossGradientMatchesFiniteDifferences");
    auto logits = opstest::normal64((size_t)N * V, seed, 2.0);
    auto targets = targets_with_mask(seed + 1, {3});
    const double z = 0.1, grad_scale = 1.0 / 5;  // large z so its term is a visible part of the gradient
    std::vector<double> losses(N);
    auto loss = [&] {
        return grad_scale * kl_cross_entropy_cpu_f64(nullptr, losses.data(), logits.data(), targets.data(), N, V, z, 1.0);
    };
    std::vector<double> d(logits.size(), NAN), d0(logits.size());
    kl_cross_entropy_cpu_f64(d.data(), losses.data(), logits.data(), targets.data(), N, V, z, grad_scale);
    EXPECT_TRUE(opstest::MatchesFiniteDifferences("dlogits with z-loss", logits, d, loss));
    // The z-loss must actually change the gradient (else this test would repeat the previous one).
    kl_cross_entropy_cpu_f64(d0.data(), losses.data(), logits.data(), targets.data(), N, V, 0.0, grad_scale);
    double diff = 0;
    for (size_t i = 0; i < d.size(); i++) diff = std::fmax(diff, std::fabs(d[i] - d0[i]));
    EXPECT_GT(diff, 1e-2);
}

TEST(CrossEntropy, MaskedRowsContributeNothing) {
    uint64_t seed = kltest::fresh_seed("CrossEntropy.MaskedRowsContributeNothing");
    auto logits = kltest::random_normal((size_t)N * V, 2.0f, seed);
    auto targets = targets_with_mask(seed + 1, {0, 3});
    std::vector<float> losses(N), d(logits.size(), NAN);
    double sum = kl_cross_entropy_cpu(d.data(), losses.data(), logits.data(), targets.data(), N, V, 1e-3f, 0.25f);
    for (int n : {0, 3}) {
        EXPECT_EQ(losses[n], 0.0f);
        for (int v = 0; v < V; v++) EXPECT_EQ(d[(size_t)n * V + v], 0.0f) << "row " << n;
    }
    // Garbage (even inf) in the masked rows changes nothing anywhere.
    auto logits2 = logits;
    for (int v = 0; v < V; v++) logits2[v] = 1e30f * (v + 1), logits2[3 * V + v] = INFINITY;
    std::vector<float> losses2(N), d2(logits.size());
    double sum2 = kl_cross_entropy_cpu(d2.data(), losses2.data(), logits2.data(), targets.data(), N, V, 1e-3f, 0.25f);
    EXPECT_EQ(sum2, sum);
    EXPECT_EQ(losses2, losses);
    EXPECT_EQ(d2, d);
    // The sum equals the sum over the valid rows alone (same row order, so exactly).
    double valid = 0;
    for (int n = 0; n < N; n++) valid += targets[n] == KL_IGNORE_INDEX ? 0.0 : (double)losses[n];
    EXPECT_EQ(sum, valid);
    EXPECT_GT(sum, 0.0);
}

TEST(CrossEntropy, AllMaskedReturnsZeroAndZeroGradients) {
    uint64_t seed = kltest::fresh_seed("CrossEntropy.AllMaskedReturnsZeroAndZeroGradients");
    auto logits = kltest::random_normal((size_t)N * V, 2.0f, seed);
    std::vector<int32_t> targets(N, KL_IGNORE_INDEX);
    std::vector<float> losses(N, NAN), d(logits.size(), NAN);
    EXPECT_EQ(kl_cross_entropy_cpu(d.data(), losses.data(), logits.data(), targets.data(), N, V, 1e-4f, 1.0f), 0.0);
    for (float x : losses) EXPECT_EQ(x, 0.0f);
    for (float x : d) EXPECT_EQ(x, 0.0f);
}

TEST(CrossEntropy, InPlaceAndLossOnlyAgreeWithOutOfPlace) {
    uint64_t seed = kltest::fresh_seed("CrossEntropy.InPlaceAndLossOnlyAgreeWithOutOfPlace");
    auto logits = kltest::random_normal((size_t)N * V, 2.0f, seed);
    auto targets = targets_with_mask(seed + 1, {5});
    std::vector<float> l1(N), l2(N), l3(N), d(logits.size()), inplace = logits;
    double s1 = kl_cross_entropy_cpu(d.data(), l1.data(), logits.data(), targets.data(), N, V, 1e-4f, 0.5f);
    double s2 = kl_cross_entropy_cpu(inplace.data(), l2.data(), inplace.data(), targets.data(), N, V, 1e-4f, 0.5f);
    double s3 = kl_cross_entropy_cpu(nullptr, l3.data(), logits.data(), targets.data(), N, V, 1e-4f, 0.5f);
    EXPECT_EQ(d, inplace);  // identical arithmetic, so bitwise equal
    EXPECT_EQ(s1, s2);
    EXPECT_EQ(s1, s3);
    EXPECT_EQ(l1, l2);
    EXPECT_EQ(l1, l3);
}

TEST(CrossEntropy, InvalidTargetPoisonsItsRowOnly) {
    // A target outside [0, V) other than -100 is a caller bug: the row must become NaN (so the trainer's
    // non-finite check stops the run) without indexing outside the logits (ASan would catch that).
    uint64_t seed = kltest::fresh_seed("CrossEntropy.InvalidTargetPoisonsItsRowOnly");
    auto logits = kltest::random_normal((size_t)N * V, 1.0f, seed);
    auto targets = targets_with_mask(seed + 1, {});
    auto ok = targets;
    targets[1] = V;
    targets[4] = -1;
    std::vector<float> losses(N), d(logits.size()), losses_ok(N), d_ok(logits.size());
    double sum = kl_cross_entropy_cpu(d.data(), losses.data(), logits.data(), targets.data(), N, V, 0.0f, 1.0f);
    kl_cross_entropy_cpu(d_ok.data(), losses_ok.data(), logits.data(), ok.data(), N, V, 0.0f, 1.0f);
    EXPECT_TRUE(std::isnan(sum));
    for (int n = 0; n < N; n++) {
        bool bad = n == 1 || n == 4;
        EXPECT_EQ(std::isnan(losses[n]), bad) << "row " << n;
        for (int v = 0; v < V; v++) {
            float x = d[(size_t)n * V + v];
            if (bad) EXPECT_TRUE(std::isnan(x));
            else EXPECT_EQ(x, d_ok[(size_t)n * V + v]);
        }
    }
}

TEST(CrossEntropy, Fp32AgreesWithFp64AndLargeLogitsAreStable) {
    uint64_t seed = kltest::fresh_seed("CrossEntropy.Fp32AgreesWithFp64AndLargeLogitsAreStable");
    auto logits = kltest::random_normal((size_t)N * V, 3.0f, seed);
    for (auto &x : logits) x += 1000.0f;  // exp(1000) overflows without max subtraction
    auto targets = targets_with_mask(seed + 1, {2});
    std::vector<float> losses(N), d(logits.size());
    double sum = kl_cross_entropy_cpu(d.data(), losses.data(), logits.data(), targets.data(), N, V, 0.0f, 0.2f);
    auto ld = kltest::to_double(logits);
    std::vector<double> lossesd(N), dd(logits.size());
    double sumd = kl_cross_entropy_cpu_f64(dd.data(), lossesd.data(), ld.data(), targets.data(), N, V, 0.0, 0.2);
    ASSERT_TRUE(std::isfinite(sum));
    // The FP32 version works in double and rounds each value once (2^-24 relative): per-row losses and
    // gradients within 1e-7 relative + a tiny absolute for ~0 probabilities; the sum adds N such losses.
    EXPECT_TRUE(opstest::Fp32Close("losses", losses, lossesd, 1e-7, 1e-12));
    EXPECT_TRUE(opstest::Fp32Close("dlogits", d, dd, 1e-7, 1e-12));
    EXPECT_NEAR(sum, sumd, 1e-7 * N * std::fabs(sumd));
    // Shift invariance (z = 0): subtracting the offset again in FP64 gives the same loss. The offset
    // costs ~1000 * 2^-53 of absolute precision in the logits: 1e-10 is generous.
    for (auto &x : ld) x -= 1000.0;
    std::vector<double> lossesu(N);
    double sumu = kl_cross_entropy_cpu_f64(nullptr, lossesu.data(), ld.data(), targets.data(), N, V, 0.0, 0.2);
    EXPECT_NEAR(sumu, sumd, 1e-10 * N);
}
