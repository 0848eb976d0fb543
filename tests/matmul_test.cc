/* matmul_test.cc — the CPU linear layer (kernels/matmul.h): forward against a naive loop with and without
 * bias, backward (dinp overwrite, dw and dbias +=) against finite differences, NULL skips, FP32 vs FP64. */
#include <gtest/gtest.h>

#include "ops_gradcheck.h"

extern "C" {
#include "matmul.h"
}

namespace {
const int N = 5, IC = 7, OC = 11;

std::vector<double> naive_linear(const std::vector<double> &x, const std::vector<double> &w, const double *bias) {
    std::vector<double> out((size_t)N * OC);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int i = 0; i < IC; i++) s += x[(size_t)n * IC + i] * w[(size_t)o * IC + i];
            out[(size_t)n * OC + o] = s;
        }
    return out;
}
}  // namespace

TEST(MatmulForward, MatchesNaiveLoopWithAndWithoutBias) {
    uint64_t seed = kltest::fresh_seed("MatmulForward.MatchesNaiveLoopWithAndWithoutBias");
    auto x = opstest::normal64((size_t)N * IC, seed), w = opstest::normal64((size_t)OC * IC, seed + 1);
    auto b = opstest::normal64(OC, seed + 2);
    for (const double *bias : {(const double *)nullptr, (const double *)b.data()}) {
        std::vector<double> out((size_t)N * OC, NAN);
        kl_matmul_forward_cpu_f64(out.data(), x.data(), w.data(), bias, N, IC, OC);
        auto want = naive_linear(x, w, bias);
        std::string rep;
        // IC+1 O(1) products summed in another order: ~1e-15 absolute.
        EXPECT_TRUE(kltest::all_close(out.data(), want.data(), out.size(), 1e-13, 1e-13, &rep))
            << (bias ? "with" : "without") << " bias: " << rep;
    }
}

TEST(MatmulBackward, MatchesFiniteDifferences) {
    uint64_t seed = kltest::fresh_seed("MatmulBackward.MatchesFiniteDifferences");
    auto x = opstest::normal64((size_t)N * IC, seed), w = opstest::normal64((size_t)OC * IC, seed + 1);
    auto b = opstest::normal64(OC, seed + 2), r = opstest::normal64((size_t)N * OC, seed + 3);
    std::vector<double> out((size_t)N * OC);
    auto loss = [&] {
        kl_matmul_forward_cpu_f64(out.data(), x.data(), w.data(), b.data(), N, IC, OC);
        return opstest::dot(r, out);
    };
    auto dw0 = opstest::normal64(w.size(), seed + 4), db0 = opstest::normal64(b.size(), seed + 5);
    std::vector<double> dx(x.size(), NAN), dw = dw0, db = db0;  // dx overwrite; dw, db accumulate
    kl_matmul_backward_cpu_f64(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), N, IC, OC);
    for (size_t i = 0; i < dw.size(); i++) dw[i] -= dw0[i];
    for (size_t i = 0; i < db.size(); i++) db[i] -= db0[i];
    EXPECT_TRUE(opstest::MatchesFiniteDifferences("dinp", x, dx, loss));
    EXPECT_TRUE(opstest::MatchesFiniteDifferences("dw", w, dw, loss));
    EXPECT_TRUE(opstest::MatchesFiniteDifferences("dbias", b, db, loss));
}

TEST(MatmulBackward, NullDinpAndDbiasAreSkipped) {
    uint64_t seed = kltest::fresh_seed("MatmulBackward.NullDinpAndDbiasAreSkipped");
    auto x = kltest::random_normal((size_t)N * IC, 1.0f, seed), w = kltest::random_normal((size_t)OC * IC, 1.0f, seed + 1);
    auto g = kltest::random_normal((size_t)N * OC, 1.0f, seed + 2);
    std::vector<float> dw_all((size_t)OC * IC, 0.0f), dw_only((size_t)OC * IC, 0.0f), dx((size_t)N * IC), db(OC, 0.0f);
    kl_matmul_backward_cpu(dx.data(), dw_all.data(), db.data(), g.data(), x.data(), w.data(), N, IC, OC);
    kl_matmul_backward_cpu(nullptr, dw_only.data(), nullptr, g.data(), x.data(), w.data(), N, IC, OC);
    EXPECT_EQ(dw_all, dw_only);  // the same GEMM, so bitwise equal
}

TEST(Matmul, Fp32AgreesWithFp64) {
    uint64_t seed = kltest::fresh_seed("Matmul.Fp32AgreesWithFp64");
    auto x = kltest::random_normal((size_t)N * IC, 1.0f, seed), w = kltest::random_normal((size_t)OC * IC, 1.0f, seed + 1);
    auto b = kltest::random_normal(OC, 1.0f, seed + 2), g = kltest::random_normal((size_t)N * OC, 1.0f, seed + 3);
    std::vector<float> out((size_t)N * OC), dx((size_t)N * IC), dw((size_t)OC * IC, 0.0f), db(OC, 0.0f);
    kl_matmul_forward_cpu(out.data(), x.data(), w.data(), b.data(), N, IC, OC);
    kl_matmul_backward_cpu(dx.data(), dw.data(), db.data(), g.data(), x.data(), w.data(), N, IC, OC);
    auto xd = kltest::to_double(x), wd = kltest::to_double(w), bd = kltest::to_double(b), gd = kltest::to_double(g);
    std::vector<double> outd((size_t)N * OC), dxd((size_t)N * IC), dwd((size_t)OC * IC, 0.0), dbd(OC, 0.0);
    kl_matmul_forward_cpu_f64(outd.data(), xd.data(), wd.data(), bd.data(), N, IC, OC);
    kl_matmul_backward_cpu_f64(dxd.data(), dwd.data(), dbd.data(), gd.data(), xd.data(), wd.data(), N, IC, OC);
    // sgemm sums <= 11 products of N(0,1) values in FP32: error <~ 11 * 2^-24 * sum|terms| ~ 1e-5 absolute
    // for outputs of size ~3; atol 2e-5 scaled to the data, rtol 1e-5.
    EXPECT_TRUE(opstest::Fp32Close("out", out, outd, 1e-5, 2e-5 * opstest::max_abs(outd)));
    EXPECT_TRUE(opstest::Fp32Close("dinp", dx, dxd, 1e-5, 2e-5 * opstest::max_abs(dxd)));
    EXPECT_TRUE(opstest::Fp32Close("dw", dw, dwd, 1e-5, 2e-5 * opstest::max_abs(dwd)));
    EXPECT_TRUE(opstest::Fp32Close("dbias", db, dbd, 1e-5, 2e-5 * opstest::max_abs(dbd)));
}
