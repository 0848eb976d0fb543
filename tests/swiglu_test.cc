/* swiglu_test.cc — the CPU SwiGLU gate (kernels/swiglu.h): forward against its definition, backward
 * (dgu overwrite) against finite differences, FP32 vs FP64, finite results for extreme gates. */
#include <gtest/gtest.h>

#include <cmath>

#include "ops_gradcheck.h"

extern "C" {
#include "swiglu.h"
}

namespace {
const int N = 5, F = 13;
}

TEST(SwigluForward, MatchesDefinition) {
    uint64_t seed = kltest::fresh_seed("SwigluForward.MatchesDefinition");
    auto gu = opstest::normal64((size_t)N * 2 * F, seed, 2.0);
    std::vector<double> out((size_t)N * F);
    kl_swiglu_forward_cpu_f64(out.data(), gu.data(), N, F);
    std::vector<double> want((size_t)N * F);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < F; i++) {
            double g = gu[(size_t)n * 2 * F + i], u = gu[(size_t)n * 2 * F + F + i];
            want[(size_t)n * F + i] = g * (1.0 / (1.0 + std::exp(-g))) * u;  // silu(g) * up
        }
    std::string rep;
    // Same formula, different operation order: a few ulps of FP64.
    EXPECT_TRUE(kltest::all_close(out.data(), want.data(), out.size(), 1e-14, 1e-14, &rep)) << rep;
}

TEST(SwigluBackward, MatchesFiniteDifferences) {
    uint64_t seed = kltest::fresh_seed("SwigluBackward.MatchesFiniteDifferences");
    auto gu = opstest::normal64((size_t)N * 2 * F, seed, 2.0);
    auto r = opstest::normal64((size_t)N * F, seed + 1);
    std::vector<double> out((size_t)N * F);
    auto loss = [&] {
        kl_swiglu_forward_cpu_f64(out.data(), gu.data(), N, F);
        return opstest::dot(r, out);
    };
    std::vector<double> dgu((size_t)N * 2 * F, NAN);  // overwrite: every element must be written
    kl_swiglu_backward_cpu_f64(dgu.data(), r.data(), gu.data(), N, F);
    EXPECT_TRUE(opstest::MatchesFiniteDifferences("dgu", gu, dgu, loss));
}

TEST(Swiglu, Fp32AgreesWithFp64) {
    uint64_t seed = kltest::fresh_seed("Swiglu.Fp32AgreesWithFp64");
    auto gu = kltest::random_normal((size_t)N * 2 * F, 3.0f, seed);
    auto dout = kltest::random_normal((size_t)N * F, 1.0f, seed + 1);
    std::vector<float> out((size_t)N * F), dgu((size_t)N * 2 * F);
    kl_swiglu_forward_cpu(out.data(), gu.data(), N, F);
    kl_swiglu_backward_cpu(dgu.data(), dout.data(), gu.data(), N, F);
    auto gud = kltest::to_double(gu), doutd = kltest::to_double(dout);
    std::vector<double> outd((size_t)N * F), dgud((size_t)N * 2 * F);
    kl_swiglu_forward_cpu_f64(outd.data(), gud.data(), N, F);
    kl_swiglu_backward_cpu_f64(dgud.data(), doutd.data(), gud.data(), N, F);
    // The FP32 version computes in double and rounds once: error <= 2^-24 relative (+ tiny atol for ~0).
    EXPECT_TRUE(opstest::Fp32Close("out", out, outd, 1e-7, 1e-12));
    EXPECT_TRUE(opstest::Fp32Close("dgu", dgu, dgud, 1e-7, 1e-12));
}

TEST(Swiglu, FiniteForExtremeGates) {
    std::vector<float> gu = {-1000.f, -100.f, 0.f, 100.f, 1000.f, 2.f, 2.f, 2.f, 2.f, 2.f};  // N=1, F=5
    std::vector<float> out(5), dgu(10), dout(5, 1.0f);
    kl_swiglu_forward_cpu(out.data(), gu.data(), 1, 5);
    kl_swiglu_backward_cpu(dgu.data(), dout.data(), gu.data(), 1, 5);
    for (float v : out) EXPECT_TRUE(std::isfinite(v));
    for (float v : dgu) EXPECT_TRUE(std::isfinite(v));
    EXPECT_EQ(out[0], 0.0f);              // silu(-1000) underflows to (-)0
    EXPECT_FLOAT_EQ(out[4], 2000.0f);     // silu(1000) = 1000
    EXPECT_FLOAT_EQ(dgu[4], 2.0f);        // d silu / dg -> 1 for large g, times up = 2
    EXPECT_FLOAT_EQ(dgu[2], 1.0f);        // d silu / dg at 0 = 1/2, times up = 2
}
