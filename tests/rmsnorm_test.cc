/* rmsnorm_test.cc — the CPU RMSNorm and Qwen3 q/k norm (kernels/rmsnorm.h): forward against the HF
 * definition, backward against finite differences (rmsnorm dx +=, dw +=; qknorm dqkv overwrite, dq/dk
 * weight +=), in-place q/k norm backward, FP32 vs FP64. */
#include <gtest/gtest.h>

#include <cmath>

#include "ops_gradcheck.h"

extern "C" {
#include "rmsnorm.h"
}

namespace {
const int N = 5, C = 7;
const double kEps = 1e-5;
/* q/k norm shapes: GQA with 3 query heads per kv head, odd-ish HS. */
const int QN = 3, NH = 6, NKV = 2, HS = 10;
const size_t QROW = (size_t)(NH + 2 * NKV) * HS;
}  // namespace

TEST(RmsnormForward, MatchesHfDefinition) {
    uint64_t seed = kltest::fresh_seed("RmsnormForward.MatchesHfDefinition");
    auto x = opstest::normal64((size_t)N * C, seed, 3.0), w = opstest::normal64(C, seed + 1);
    std::vector<double> out((size_t)N * C), rstd(N);
    kl_rmsnorm_forward_cpu_f64(out.data(), rstd.data(), x.data(), w.data(), N, C, kEps);
    std::vector<double> want((size_t)N * C), want_rstd(N);
    for (int n = 0; n < N; n++) {
        double ms = 0;
        for (int c = 0; c < C; c++) ms += x[(size_t)n * C + c] * x[(size_t)n * C + c] / C;
        want_rstd[n] = 1.0 / std::sqrt(ms + kEps);
        for (int c = 0; c < C; c++) want[(size_t)n * C + c] = w[c] * (x[(size_t)n * C + c] * want_rstd[n]);
    }
    std::string rep;
    // Same formula in another order: a few FP64 ulps.
    EXPECT_TRUE(kltest::all_close(out.data(), want.data(), out.size(), 1e-13, 1e-13, &rep)) << rep;
    EXPECT_TRUE(kltest::all_close(rstd.data(), want_rstd.data(), N, 1e-13, 0, &rep)) << rep;
}

TEST(RmsnormBackward, MatchesFiniteDifferences) {
    uint64_t seed = kltest::fresh_seed("RmsnormBackward.MatchesFiniteDifferences");
    auto x = opstest::normal64((size_t)N * C, seed), w = opstest::normal64(C, seed + 1);
    auto r = opstest::normal64((size_t)N * C, seed + 2);
    std::vector<double> out((size_t)N * C), rstd(N);
    auto loss = [&] {
        kl_rmsnorm_forward_cpu_f64(out.data(), rstd.data(), x.data(), w.data(), N, C, kEps);
        return opstest::dot(r, out);
    };
    loss();  // rstd for the unperturbed x
    // Both dx and dw accumulate: start from random values and take the difference.
    auto dx0 = opstest::normal64(x.size(), seed + 3), dw0 = opstest::normal64(w.size(), seed + 4);
    std::vector<double> dx = dx0, dw = dw0;
    kl_rmsnorm_backward_cpu_f64(dx.data(), dw.data(), r.data(), x.data(), w.data(), rstd.data(), N, C);
    for (size_t i = 0; i < dx.size(); i++) dx[i] -= dx0[i];
    for (size_t i = 0; i < dw.size(); i++) dw[i] -= dw0[i];
    EXPECT_TRUE(opstest::MatchesFiniteDifferences("dx", x, dx, loss));
    EXPECT_TRUE(opstest::MatchesFiniteDifferences("dw", w, dw, loss));
}

TEST(Rmsnorm, Fp32AgreesWithFp64) {
    uint64_t seed = kltest::fresh_seed("Rmsnorm.Fp32AgreesWithFp64");
    auto x = kltest::random_normal((size_t)N * C, 2.0f, seed), w = kltest::random_normal(C, 1.0f, seed + 1);
    auto g = kltest::random_normal((size_t)N * C, 1.0f, seed + 2);
    std::vector<float> out((size_t)N * C), rstd(N), dx((size_t)N * C, 0.0f), dw(C, 0.0f);
    kl_rmsnorm_forward_cpu(out.data(), rstd.data(), x.data(), w.data(), N, C, (float)kEps);
    kl_rmsnorm_backward_cpu(dx.data(), dw.data(), g.data(), x.data(), w.data(), rstd.data(), N, C);
    auto xd = kltest::to_double(x), wd = kltest::to_double(w), gd = kltest::to_double(g);
    std::vector<double> outd((size_t)N * C), rstdd(N), dxd((size_t)N * C, 0.0), dwd(C, 0.0);
    kl_rmsnorm_forward_cpu_f64(outd.data(), rstdd.data(), xd.data(), wd.data(), N, C, kEps);
    kl_rmsnorm_backward_cpu_f64(dxd.data(), dwd.data(), gd.data(), xd.data(), wd.data(), rstdd.data(), N, C);
    // A handful of FP32 roundings (mean, eps, rsqrt, x*r, *w) of O(1) values: ~5 * 2^-24 relative;
    // backward sums C terms with cancellation, so the absolute part is scaled to the data.
    EXPECT_TRUE(opstest::Fp32Close("rstd", rstd, rstdd, 1e-6, 0));
    EXPECT_TRUE(opstest::Fp32Close("out", out, outd, 1e-6, 1e-6 * opstest::max_abs(outd)));
    EXPECT_TRUE(opstest::Fp32Close("dx", dx, dxd, 1e-5, 1e-5 * opstest::max_abs(dxd)));
    EXPECT_TRUE(opstest::Fp32Close("dw", dw, dwd, 1e-5, 1e-5 * opstest::max_abs(dwd)));
}

TEST(QknormForward, NormalisesEachQAndKHeadAndCopiesV) {
    uint64_t seed = kltest::fresh_seed("QknormForward.NormalisesEachQAndKHeadAndCopiesV");
    auto qkv = opstest::normal64(QN * QROW, seed, 2.0);
    auto qw = opstest::normal64(HS, seed + 1), kw = opstest::normal64(HS, seed + 2);
    std::vector<double> out(qkv.size(), NAN), rstd((size_t)QN * (NH + NKV), NAN);
    kl_qknorm_forward_cpu_f64(out.data(), rstd.data(), qkv.data(), qw.data(), kw.data(), QN, NH, NKV, HS, kEps);
    // Each q/k head must equal rmsnorm over HS of that head alone (checked against the row op).
    for (int n = 0; n < QN; n++) {
        for (int h = 0; h < NH + NKV; h++) {
            const double *in = &qkv[n * QROW + (size_t)h * HS];
            std::vector<double> want(HS);
            double want_rstd;
            kl_rmsnorm_forward_cpu_f64(want.data(), &want_rstd, in, h < NH ? qw.data() : kw.data(), 1, HS, kEps);
            for (int i = 0; i < HS; i++) EXPECT_EQ(out[n * QROW + (size_t)h * HS + i], want[i]) << n << "," << h;
            EXPECT_EQ(rstd[(size_t)n * (NH + NKV) + h], want_rstd);
        }
        for (size_t i = (size_t)(NH + NKV) * HS; i < QROW; i++) EXPECT_EQ(out[n * QROW + i], qkv[n * QROW + i]);
    }
    // In place gives the same result (documented as allowed for forward-only use).
    std::vector<double> inplace = qkv, rstd2(rstd.size());
    kl_qknorm_forward_cpu_f64(inplace.data(), rstd2.data(), inplace.data(), qw.data(), kw.data(), QN, NH, NKV, HS, kEps);
    EXPECT_EQ(inplace, out);
}

TEST(QknormBackward, MatchesFiniteDifferences) {
    uint64_t seed = kltest::fresh_seed("QknormBackward.MatchesFiniteDifferences");
    auto qkv = opstest::normal64(QN * QROW, seed);
    auto qw = opstest::normal64(HS, seed + 1), kw = opstest::normal64(HS, seed + 2);
    auto r = opstest::normal64(qkv.size(), seed + 3);
    std::vector<double> out(qkv.size()), rstd((size_t)QN * (NH + NKV));
    auto loss = [&] {
        kl_qknorm_forward_cpu_f64(out.data(), rstd.data(), qkv.data(), qw.data(), kw.data(), QN, NH, NKV, HS, kEps);
        return opstest::dot(r, out);
    };
    loss();
    auto dqw0 = opstest::normal64(HS, seed + 4), dkw0 = opstest::normal64(HS, seed + 5);
    std::vector<double> dqkv(qkv.size(), NAN), dqw = dqw0, dkw = dkw0;  // dqkv overwrite, weights +=
    kl_qknorm_backward_cpu_f64(dqkv.data(), dqw.data(), dkw.data(), r.data(), qkv.data(), qw.data(), kw.data(),
                               rstd.data(), QN, NH, NKV, HS);
    for (int i = 0; i < HS; i++) dqw[i] -= dqw0[i], dkw[i] -= dkw0[i];
    EXPECT_TRUE(opstest::MatchesFiniteDifferences("dqkv", qkv, dqkv, loss));
    EXPECT_TRUE(opstest::MatchesFiniteDifferences("dq_weight", qw, dqw, loss));
    EXPECT_TRUE(opstest::MatchesFiniteDifferences("dk_weight", kw, dkw, loss));
}

TEST(QknormBackward, InPlaceEqualsOutOfPlace) {
    uint64_t seed = kltest::fresh_seed("QknormBackward.InPlaceEqualsOutOfPlace");
    auto qkv = kltest::random_normal(QN * QROW, 1.0f, seed), g = kltest::random_normal(QN * QROW, 1.0f, seed + 1);
    auto qw = kltest::random_normal(HS, 1.0f, seed + 2), kw = kltest::random_normal(HS, 1.0f, seed + 3);
    std::vector<float> out(qkv.size()), rstd((size_t)QN * (NH + NKV));
    kl_qknorm_forward_cpu(out.data(), rstd.data(), qkv.data(), qw.data(), kw.data(), QN, NH, NKV, HS, (float)kEps);
    std::vector<float> d1(qkv.size()), d2 = g, dqw1(HS, 0.f), dkw1(HS, 0.f), dqw2(HS, 0.f), dkw2(HS, 0.f);
    kl_qknorm_backward_cpu(d1.data(), dqw1.data(), dkw1.data(), g.data(), qkv.data(), qw.data(), kw.data(),
                           rstd.data(), QN, NH, NKV, HS);
    kl_qknorm_backward_cpu(d2.data(), dqw2.data(), dkw2.data(), d2.data(), qkv.data(), qw.data(), kw.data(),
                           rstd.data(), QN, NH, NKV, HS);
    EXPECT_EQ(d1, d2);  // identical arithmetic, so bitwise equal
    EXPECT_EQ(dqw1, dqw2);
    EXPECT_EQ(dkw1, dkw2);
}

TEST(Qknorm, Fp32AgreesWithFp64) {
    uint64_t seed = kltest::fresh_seed("Qknorm.Fp32AgreesWithFp64");
    auto qkv = kltest::random_normal(QN * QROW, 2.0f, seed), g = kltest::random_normal(QN * QROW, 1.0f, seed + 1);
    auto qw = kltest::random_normal(HS, 1.0f, seed + 2), kw = kltest::random_normal(HS, 1.0f, seed + 3);
    std::vector<float> out(qkv.size()), rstd((size_t)QN * (NH + NKV)), d(qkv.size()), dqw(HS, 0.f), dkw(HS, 0.f);
    kl_qknorm_forward_cpu(out.data(), rstd.data(), qkv.data(), qw.data(), kw.data(), QN, NH, NKV, HS, (float)kEps);
    kl_qknorm_backward_cpu(d.data(), dqw.data(), dkw.data(), g.data(), qkv.data(), qw.data(), kw.data(), rstd.data(),
                           QN, NH, NKV, HS);
    auto qkvd = kltest::to_double(qkv), gd = kltest::to_double(g), qwd = kltest::to_double(qw), kwd = kltest::to_double(kw);
    std::vector<double> outd(qkv.size()), rstdd(rstd.size()), dd(qkv.size()), dqwd(HS, 0.0), dkwd(HS, 0.0);
    kl_qknorm_forward_cpu_f64(outd.data(), rstdd.data(), qkvd.data(), qwd.data(), kwd.data(), QN, NH, NKV, HS, kEps);
    kl_qknorm_backward_cpu_f64(dd.data(), dqwd.data(), dkwd.data(), gd.data(), qkvd.data(), qwd.data(), kwd.data(),
                               rstdd.data(), QN, NH, NKV, HS);
    // Same bounds and reasons as Rmsnorm.Fp32AgreesWithFp64.
    EXPECT_TRUE(opstest::Fp32Close("out", out, outd, 1e-6, 1e-6 * opstest::max_abs(outd)));
    EXPECT_TRUE(opstest::Fp32Close("dqkv", d, dd, 1e-5, 1e-5 * opstest::max_abs(dd)));
    EXPECT_TRUE(opstest::Fp32Close("dq_weight", dqw, dqwd, 1e-5, 1e-5 * opstest::max_abs(dqwd)));
    EXPECT_TRUE(opstest::Fp32Close("dk_weight", dkw, dkwd, 1e-5, 1e-5 * opstest::max_abs(dkwd)));
}
