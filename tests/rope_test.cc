/* rope_test.cc — the CPU rotary embeddings (kernels/rope.h): inverse frequencies (plain and Llama-3
 * scaled) against the formula and against values printed by HF transformers, cos/sin tables, the
 * rotation against HF's rotate_half form, norm preservation, backward against finite differences and as
 * the inverse of forward, FP32 vs FP64. */
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "ops_gradcheck.h"

extern "C" {
#include "rope.h"
}

namespace {
const int B = 2, T = 5, NH = 6, NKV = 2, HS = 10;
const size_t ROW = (size_t)(NH + 2 * NKV) * HS;
const double kTheta = 10000.0;

/* Llama 3.1 8B's rope settings. */
kl_rope_scaling llama31() {
    kl_rope_scaling s;
    s.type = KL_ROPE_SCALING_LLAMA3;
    s.factor = 8.0;
    s.low_freq_factor = 1.0;
    s.high_freq_factor = 4.0;
    s.original_max_pos = 8192;
    return s;
}

/* Double-precision tables for T positions. */
void tables(std::vector<double> &c, std::vector<double> &s, double theta) {
    c.assign((size_t)T * HS / 2, 0.0);
    s.assign((size_t)T * HS / 2, 0.0);
    ASSERT_EQ(kl_rope_freqs_f64(c.data(), s.data(), T, HS, theta, nullptr), KL_OK) << kl_last_error();
}
}  // namespace

TEST(RopeInvFreq, PlainMatchesFormula) {
    std::vector<double> f(64);
    ASSERT_EQ(kl_rope_inv_freq(f.data(), 128, 1e6, nullptr), KL_OK);
    for (int i = 0; i < 64; i++) EXPECT_NEAR(f[i], std::pow(1e6, -2.0 * i / 128), 1e-15 * f[i]) << i;
    kl_rope_scaling none = llama31();
    none.type = KL_ROPE_SCALING_NONE;  // the other fields must be ignored
    std::vector<double> g(64);
    ASSERT_EQ(kl_rope_inv_freq(g.data(), 128, 1e6, &none), KL_OK);
    EXPECT_EQ(f, g);
}

TEST(RopeInvFreq, Llama3ScalingMatchesFormulaInEveryBand) {
    const kl_rope_scaling s = llama31();
    const int hs = 128;
    const double theta = 500000.0;
    std::vector<double> f(hs / 2);
    ASSERT_EQ(kl_rope_inv_freq(f.data(), hs, theta, &s), KL_OK) << kl_last_error();
    // Written here from HF's _compute_llama3_parameters, band by band.
    int bands[3] = {0, 0, 0};
    for (int i = 0; i < hs / 2; i++) {
        double base = 1.0 / std::pow(theta, 2.0 * i / hs);
        double wavelen = 2.0 * 3.14159265358979323846 / base;
        double want;
        if (wavelen < 8192.0 / 4.0) {          // high frequency: kept
            want = base, bands[0]++;
        } else if (wavelen > 8192.0 / 1.0) {   // low frequency: divided by factor
            want = base / 8.0, bands[2]++;
        } else {                               // in between: linear blend in 8192 / wavelen
            double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
            want = (1.0 - smooth) * base / 8.0 + smooth * base, bands[1]++;
        }
        EXPECT_NEAR(f[i], want, 1e-14 * want) << "i=" << i;  // same double formula: ulps
    }
    EXPECT_GT(bands[0], 0);
    EXPECT_GT(bands[1], 0);
    EXPECT_GT(bands[2], 0);
}

TEST(RopeInvFreq, Llama3ScalingMatchesTransformers) {
    // Printed by transformers 5.24 ROPE_INIT_FUNCTIONS["llama3"] for Llama 3.1 settings (theta 5e5, HS 128,
    // factor 8, low 1, high 4, original 8192). Indices 5: kept; 29, 31, 34: blended; 40, 63: divided.
    const struct { int i; double f; } hf[] = {
        {5, 3.587302268e-01},  {29, 2.166570630e-03}, {31, 8.567514597e-04},
        {34, 1.785077911e-04}, {40, 3.428102355e-05}, {63, 3.068925878e-07},
    };
    const kl_rope_scaling s = llama31();
    std::vector<double> f(64);
    ASSERT_EQ(kl_rope_inv_freq(f.data(), 128, 500000.0, &s), KL_OK);
    // HF computes in FP32: theta ** (2i/HS) with the exponent rounded to FP32 moves the result by up to
    // ln(theta) * 2^-24 ~ 8e-7 relative, plus a few more FP32 roundings; 2e-6 covers that, and the printed
    // values carry 10 significant digits.
    for (auto &h : hf) EXPECT_NEAR(f[h.i], h.f, 2e-6 * h.f) << "i=" << h.i;
}

TEST(RopeInvFreq, RejectsBadArguments) {
    std::vector<double> f(64);
    EXPECT_EQ(kl_rope_inv_freq(f.data(), 9, 1e4, nullptr), KL_ERR_INVALID);
    EXPECT_EQ(kl_rope_inv_freq(f.data(), 0, 1e4, nullptr), KL_ERR_INVALID);
    EXPECT_EQ(kl_rope_inv_freq(f.data(), 8, 0.0, nullptr), KL_ERR_INVALID);
    kl_rope_scaling s = llama31();
    s.high_freq_factor = s.low_freq_factor;  // would divide by zero in the blend
    EXPECT_EQ(kl_rope_inv_freq(f.data(), 8, 1e4, &s), KL_ERR_INVALID);
    EXPECT_NE(strstr(kl_last_error(), "high_freq_factor"), nullptr) << kl_last_error();
    s = llama31();
    s.type = 7;
    EXPECT_EQ(kl_rope_inv_freq(f.data(), 8, 1e4, &s), KL_ERR_INVALID);
    std::vector<float> c(64), sn(64);
    EXPECT_EQ(kl_rope_freqs(c.data(), sn.data(), 4, 7, 1e4, nullptr), KL_ERR_INVALID);
}

TEST(RopeFreqs, TablesHoldCosAndSinOfPositionTimesFreq) {
    const kl_rope_scaling s = llama31();
    const int t_max = 300, hs = 16;
    std::vector<double> f(hs / 2), cd((size_t)t_max * hs / 2), sd(cd.size());
    std::vector<float> cf(cd.size()), sf(cd.size());
    ASSERT_EQ(kl_rope_inv_freq(f.data(), hs, 500000.0, &s), KL_OK);
    ASSERT_EQ(kl_rope_freqs_f64(cd.data(), sd.data(), t_max, hs, 500000.0, &s), KL_OK);
    ASSERT_EQ(kl_rope_freqs(cf.data(), sf.data(), t_max, hs, 500000.0, &s), KL_OK);
    for (int t = 0; t < t_max; t++)
        for (int i = 0; i < hs / 2; i++) {
            size_t k = (size_t)t * hs / 2 + i;
            EXPECT_EQ(cd[k], std::cos(t * f[i]));
            EXPECT_EQ(sd[k], std::sin(t * f[i]));
            EXPECT_EQ(cf[k], (float)std::cos(t * f[i]));  // angle in double, rounded once when stored
            EXPECT_EQ(sf[k], (float)std::sin(t * f[i]));
        }
}

TEST(RopeForward, MatchesHfRotateHalfAndLeavesVUntouched) {
    uint64_t seed = kltest::fresh_seed("RopeForward.MatchesHfRotateHalfAndLeavesVUntouched");
    std::vector<double> c, s;
    tables(c, s, kTheta);
    auto x = opstest::normal64((size_t)B * T * ROW, seed);
    std::vector<double> y = x;
    kl_rope_forward_cpu_f64(y.data(), c.data(), s.data(), B, T, NH, NKV, HS);
    const int half = HS / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH + 2 * NKV; h++) {
                const double *in = &x[((size_t)b * T + t) * ROW + (size_t)h * HS];
                const double *out = &y[((size_t)b * T + t) * ROW + (size_t)h * HS];
                for (int d = 0; d < HS; d++) {
                    if (h >= NH + NKV) {  // value head
                        EXPECT_EQ(out[d], in[d]);
                        continue;
                    }
                    // HF: x * cat(cos, cos) + rotate_half(x) * cat(sin, sin), rotate_half(x) = cat(-x2, x1)
                    double cosf = c[(size_t)t * half + d % half], sinf = s[(size_t)t * half + d % half];
                    double rot = d < half ? -in[d + half] : in[d - half];
                    EXPECT_NEAR(out[d], in[d] * cosf + rot * sinf, 1e-15 * 8) << b << "," << t << "," << h << "," << d;
                }
            }
}

TEST(RopeForward, PreservesTheNormOfEveryHead) {
    uint64_t seed = kltest::fresh_seed("RopeForward.PreservesTheNormOfEveryHead");
    std::vector<float> c((size_t)T * HS / 2), s(c.size());
    ASSERT_EQ(kl_rope_freqs(c.data(), s.data(), T, HS, kTheta, nullptr), KL_OK);
    auto x = kltest::random_normal((size_t)B * T * ROW, 1.0f, seed);
    std::vector<float> y = x;
    kl_rope_forward_cpu(y.data(), c.data(), s.data(), B, T, NH, NKV, HS);
    for (size_t head = 0; head < (size_t)B * T * (NH + 2 * NKV); head++) {
        double nx = 0, ny = 0;
        for (int d = 0; d < HS; d++) nx += (double)x[head * HS + d] * x[head * HS + d], ny += (double)y[head * HS + d] * y[head * HS + d];
        // FP32 rotation: each output carries ~2 roundings (2^-24 relative), and cos^2+sin^2 of the
        // stored FP32 values is 1 to ~1e-7, so the squared norm agrees to ~5e-7; 2e-6 is safe.
        EXPECT_NEAR(ny, nx, 2e-6 * nx) << "head " << head;
    }
}

TEST(RopeBackward, MatchesFiniteDifferences) {
    uint64_t seed = kltest::fresh_seed("RopeBackward.MatchesFiniteDifferences");
    std::vector<double> c, s;
    tables(c, s, kTheta);
    auto x = opstest::normal64((size_t)B * T * ROW, seed), r = opstest::normal64(x.size(), seed + 1);
    std::vector<double> y(x.size());
    auto loss = [&] {
        y = x;
        kl_rope_forward_cpu_f64(y.data(), c.data(), s.data(), B, T, NH, NKV, HS);
        return opstest::dot(r, y);
    };
    std::vector<double> dx = r;  // backward runs in place on the output gradient
    kl_rope_backward_cpu_f64(dx.data(), c.data(), s.data(), B, T, NH, NKV, HS);
    EXPECT_TRUE(opstest::MatchesFiniteDifferences("dqkv", x, dx, loss));
}

TEST(RopeBackward, InvertsForward) {
    uint64_t seed = kltest::fresh_seed("RopeBackward.InvertsForward");
    std::vector<double> c, s;
    tables(c, s, kTheta);
    auto x = opstest::normal64((size_t)B * T * ROW, seed);
    std::vector<double> y = x;
    kl_rope_forward_cpu_f64(y.data(), c.data(), s.data(), B, T, NH, NKV, HS);
    kl_rope_backward_cpu_f64(y.data(), c.data(), s.data(), B, T, NH, NKV, HS);
    std::string rep;
    // An orthogonal rotation and its transpose: round trip to a few FP64 ulps (cos^2+sin^2 = 1 +- 1e-16).
    EXPECT_TRUE(kltest::all_close(y.data(), x.data(), x.size(), 1e-14, 1e-14, &rep)) << rep;
}

TEST(Rope, Fp32AgreesWithFp64) {
    uint64_t seed = kltest::fresh_seed("Rope.Fp32AgreesWithFp64");
    const kl_rope_scaling sc = llama31();
    std::vector<float> c((size_t)T * HS / 2), s(c.size());
    std::vector<double> cd(c.size()), sd(c.size());
    ASSERT_EQ(kl_rope_freqs(c.data(), s.data(), T, HS, kTheta, &sc), KL_OK);
    ASSERT_EQ(kl_rope_freqs_f64(cd.data(), sd.data(), T, HS, kTheta, &sc), KL_OK);
    auto x = kltest::random_normal((size_t)B * T * ROW, 1.0f, seed);
    std::vector<float> y = x, g = x;
    std::vector<double> yd = kltest::to_double(x), gd = yd;
    kl_rope_forward_cpu(y.data(), c.data(), s.data(), B, T, NH, NKV, HS);
    kl_rope_forward_cpu_f64(yd.data(), cd.data(), sd.data(), B, T, NH, NKV, HS);
    kl_rope_backward_cpu(g.data(), c.data(), s.data(), B, T, NH, NKV, HS);
    kl_rope_backward_cpu_f64(gd.data(), cd.data(), sd.data(), B, T, NH, NKV, HS);
    // Two products and a sum of O(1) values in FP32 with FP32 tables: ~3 * 2^-24 * max|x| absolute.
    EXPECT_TRUE(opstest::Fp32Close("forward", y, yd, 1e-6, 1e-6 * opstest::max_abs(yd)));
    EXPECT_TRUE(opstest::Fp32Close("backward", g, gd, 1e-6, 1e-6 * opstest::max_abs(gd)));
}
