/* adamw_test.cc (gpu) — the CUDA optimizer step (kernels/adamw_cuda.h) against the CPU AdamW of
 * optim/adamw.c: FP32 master bit for bit (ranges with and without decay, lr multipliers, unaligned range
 * starts, a clip factor), the BF16 compute copy, a skipped step, the BF16 master with Philox stochastic
 * rounding; the FP64 gradient sum of squares and the clip factor rule of the CPU trainer. */
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gpu_test_util.h"
#include "test_util.h"

extern "C" {
#include "adamw_cuda.h"
#include "device.h"
#include "optim.h"
#include "philox.h"
}

namespace {

// Three tensors: decayed, not decayed with a half learning rate (and a length that is not a multiple of
// 4), and decayed with a doubled rate starting at an offset that is not a multiple of 4 (single elements).
const kl_opt_param kParams[] = {
    {"w0", 0, 1000, 10, 100, 1, 1.0f, 1},
    {"norm", 1000, 37, 1, 37, 0, 0.5f, 0},
    {"w1", 1037, 4099, 1, 4099, 1, 2.0f, 0},
};
const int kNParams = 3;
const size_t kTotal = 1037 + 4099;

kl_opt_settings settings() {
    kl_opt_settings s;
    memset(&s, 0, sizeof s);
    s.kind = KL_OPT_ADAMW;
    s.beta1 = 0.9;
    s.beta2 = 0.95;
    s.eps = 1e-8;
    s.weight_decay = 0.1;
    s.state_dtype = KL_STATE_FP32;
    return s;
}

kl_adamw_hparams hparams(double lr, int64_t step, uint64_t seed) {
    const kl_opt_settings s = settings();
    kl_adamw_hparams h;
    h.lr = lr;
    h.beta1 = s.beta1;
    h.beta2 = s.beta2;
    h.eps = s.eps;
    h.weight_decay = s.weight_decay;
    h.step = step;
    h.seed = seed;
    return h;
}

// The device range table for kParams.
struct Ranges {
    Dev<kl_adamw_range> dev{(size_t)kNParams};
    uint32_t blocks = 0;
    Ranges() {
        std::vector<kl_adamw_range> r(kNParams);
        for (int i = 0; i < kNParams; i++) {
            r[i].offset = kParams[i].offset;
            r[i].numel = kParams[i].numel;
            r[i].lr_mult = kParams[i].lr_mult;
            r[i].decay = kParams[i].decay;
        }
        EXPECT_EQ(kl_adamw_ranges_prepare(r.data(), kNParams, &blocks), KL_OK);
        dev.put(r);
    }
};

std::vector<float> state(kl_optimizer *o, int i) {
    const char *name;
    size_t bytes;
    const float *p = static_cast<const float *>(o->vt->state_buffer(o, i, &name, &bytes));
    return std::vector<float>(p, p + bytes / sizeof(float));
}

}  // namespace

TEST(CudaAdamw, Fp32MasterMatchesCpuAdamwBitForBit) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaAdamw.Fp32MasterMatchesCpuAdamwBitForBit");
    const kl_opt_settings s = settings();
    kl_optimizer *cpu = nullptr;
    ASSERT_EQ(kl_adamw_create(&cpu, &s, kParams, kNParams), KL_OK);
    std::vector<float> w = kltest::random_normal(kTotal, 0.02f, seed++);
    Ranges ranges;
    Dev<float> dw(w), dm(std::vector<float>(kTotal, 0.f)), dv(std::vector<float>(kTotal, 0.f)), dg(kTotal);
    Dev<kl_bf16> dcopy(kTotal);
    Dev<float> dclip(1);
    for (int64_t t = 1; t <= 4; t++) {
        SCOPED_TRACE("step " + std::to_string(t));
        auto g = kltest::random_normal(kTotal, t == 2 ? 30.f : 0.5f, seed++);
        const double lr = 1e-3 * (double)t;
        dg.put(g);
        // Step 3 runs with a clip factor on the device; the CPU trainer scales its gradients in place.
        const float clip = t == 3 ? 0.37f : 1.0f;
        dclip.put(std::vector<float>{clip});
        if (t == 3)
            for (float &x : g) x *= clip;
        ASSERT_EQ(cpu->vt->step(cpu, w.data(), g.data(), lr, t), KL_OK);
        const kl_adamw_hparams hp = hparams(lr, t, 0);
        ASSERT_EQ(kl_adamw_step_cuda(dw.p, dcopy.p, dm.p, dv.p, dg.p, ranges.dev.p, kNParams, ranges.blocks, &hp,
                                     t >= 3 ? dclip.p : nullptr, nullptr), KL_OK) << kl_last_error();
        auto gw = dw.get();
        // Same IEEE operations in the same order, no fused multiply-adds on either side: identical bits.
        for (size_t i = 0; i < kTotal; i++)
            ASSERT_EQ(0, memcmp(&gw[i], &w[i], sizeof(float))) << "w[" << i << "] gpu " << gw[i] << " cpu " << w[i];
        auto copy = dcopy.get();
        for (size_t i = 0; i < kTotal; i++) ASSERT_EQ(copy[i], kl_f32_to_bf16(w[i])) << "copy[" << i << "]";
    }
    EXPECT_EQ(0, memcmp(dm.get().data(), state(cpu, 0).data(), kTotal * sizeof(float)));
    EXPECT_EQ(0, memcmp(dv.get().data(), state(cpu, 1).data(), kTotal * sizeof(float)));
    kl_optimizer_free(cpu);
}

TEST(CudaAdamw, ZeroClipFactorSkipsTheStep) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaAdamw.ZeroClipFactorSkipsTheStep");
    auto w = kltest::random_normal(kTotal, 0.02f, seed), m = kltest::random_normal(kTotal, 0.1f, seed + 1);
    auto v = kltest::random_uniform(kTotal, 0.01f, 1.0f, seed + 2), g = kltest::random_normal(kTotal, 1.f, seed + 3);
    Ranges ranges;
    Dev<float> dw(w), dm(m), dv(v), dg(g), dclip(std::vector<float>{0.0f});
    auto p16 = to_bf16(w);
    Dev<kl_bf16> dp16(p16);
    const kl_adamw_hparams hp = hparams(1e-2, 5, 7);
    ASSERT_EQ(kl_adamw_step_cuda(dw.p, nullptr, dm.p, dv.p, dg.p, ranges.dev.p, kNParams, ranges.blocks, &hp, dclip.p,
                                 nullptr), KL_OK);
    ASSERT_EQ(kl_adamw_step_bf16_cuda(dp16.p, dm.p, dv.p, dg.p, ranges.dev.p, kNParams, ranges.blocks, &hp, dclip.p,
                                      nullptr), KL_OK);
    EXPECT_EQ(0, memcmp(dw.get().data(), w.data(), kTotal * sizeof(float)));
    EXPECT_EQ(0, memcmp(dm.get().data(), m.data(), kTotal * sizeof(float)));
    EXPECT_EQ(0, memcmp(dv.get().data(), v.data(), kTotal * sizeof(float)));
    EXPECT_EQ(0, memcmp(dp16.get().data(), p16.data(), kTotal * sizeof(kl_bf16)));
}

TEST(CudaAdamw, Bf16MasterIsTheCpuUpdateStochasticallyRounded) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaAdamw.Bf16MasterIsTheCpuUpdateStochasticallyRounded");
    const kl_opt_settings s = settings();
    kl_optimizer *cpu = nullptr;
    ASSERT_EQ(kl_adamw_create(&cpu, &s, kParams, kNParams), KL_OK);
    std::vector<kl_bf16> p16 = to_bf16(kltest::random_normal(kTotal, 0.02f, seed++));
    Ranges ranges;
    Dev<kl_bf16> dp(p16);
    Dev<float> dm(std::vector<float>(kTotal, 0.f)), dv(std::vector<float>(kTotal, 0.f)), dg(kTotal);
    const uint64_t sr_seed = seed++;
    for (int64_t t = 1; t <= 3; t++) {
        SCOPED_TRACE("step " + std::to_string(t));
        auto g = kltest::random_normal(kTotal, 0.5f, seed++);
        dg.put(g);
        std::vector<float> w = to_f32(p16);
        ASSERT_EQ(cpu->vt->step(cpu, w.data(), g.data(), 1e-3, t), KL_OK);
        for (size_t i = 0; i < kTotal; i++) {
            const kl_philox_ctr r = kl_philox_block(sr_seed ^ (uint64_t)t, 0, i / 4);
            p16[i] = kl_f32_to_bf16_stochastic(w[i], r.v[i % 4]);
        }
        const kl_adamw_hparams hp = hparams(1e-3, t, sr_seed);
        ASSERT_EQ(kl_adamw_step_bf16_cuda(dp.p, dm.p, dv.p, dg.p, ranges.dev.p, kNParams, ranges.blocks, &hp, nullptr,
                                          nullptr), KL_OK) << kl_last_error();
        auto got = dp.get();
        for (size_t i = 0; i < kTotal; i++) ASSERT_EQ(got[i], p16[i]) << "p[" << i << "]";
    }
    kl_optimizer_free(cpu);
}

TEST(CudaAdamw, StochasticRoundingIsExactlyUnbiasedOverAllDraws) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaAdamw.StochasticRoundingIsExactlyUnbiasedOverAllDraws");
    auto xs = kltest::random_normal(8, 10.0f, seed);
    for (float x : xs) {
        // Over the 2^16 equally likely draws, |x| rounds up exactly (dropped bits) times: the mean is x.
        double sum = 0;
        for (uint32_t k = 0; k < 65536; k++) sum += kl_bf16_to_f32(kl_f32_to_bf16_stochastic(x, k));
        EXPECT_EQ(sum / 65536.0, (double)x) << x;
    }
}

TEST(CudaGradNorm, SumOfSquaresMatchesHostFp64AndRepeats) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaGradNorm.SumOfSquaresMatchesHostFp64AndRepeats");
    const size_t n = 1000003;  // odd: vectors then a scalar tail
    auto x = kltest::random_normal(n + 1, 1.0f, seed);
    Dev<float> dx(x);
    Dev<double> dsum(1);
    Dev<char> scratch(kl_sum_squares_scratch_bytes(n));
    for (int shift = 0; shift < 2; shift++) {  // aligned, and one element off (no vectors)
        double want = 0;
        for (size_t i = 0; i < n; i++) want += (double)x[i + shift] * x[i + shift];
        ASSERT_EQ(kl_sum_squares_cuda(dsum.p, 0, dx.p + shift, n, scratch.p, nullptr), KL_OK) << kl_last_error();
        const double got = dsum.get()[0];
        // Exact squares, FP64 sums of positive terms in two different orders: each within n 2^-53 relative.
        EXPECT_NEAR(got, want, 2.0 * n * std::ldexp(1.0, -53) * want);
        ASSERT_EQ(kl_sum_squares_cuda(dsum.p, 0, dx.p + shift, n, scratch.p, nullptr), KL_OK);
        EXPECT_EQ(dsum.get()[0], got);  // run to run: the same bits
        ASSERT_EQ(kl_sum_squares_cuda(dsum.p, 1, dx.p + shift, n, scratch.p, nullptr), KL_OK);
        EXPECT_EQ(dsum.get()[0], 2.0 * got);  // accumulate adds (s + s is exact)
    }
}

TEST(CudaGradNorm, ClipFactorFollowsTheCpuTrainer) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
    struct Case {
        double sumsq, loss, max_norm;
        bool with_loss;
        float want;
    };
    const Case cases[] = {
        {4.0, 1.0, 1.0, true, (float)(1.0 / (2.0 + 1e-6))},  // clipped: torch's max / (norm + 1e-6)
        {4.0, 1.0, 5.0, true, 1.0f},                         // under the limit
        {4.0, 1.0, 0.0, false, 1.0f},                        // clipping off
        {inf, 1.0, 1.0, true, 0.0f},                         // non-finite norm: skip
        {nan, 1.0, 0.0, false, 0.0f},
        {4.0, nan, 1.0, true, 0.0f},                         // non-finite loss: skip
        {4.0, inf, 0.0, true, 0.0f},
    };
    Dev<double> dsum(1), dloss(1), dnorm(1);
    Dev<float> dclip(1);
    for (const Case &c : cases) {
        SCOPED_TRACE("sumsq " + std::to_string(c.sumsq) + " loss " + std::to_string(c.loss));
        dsum.put(std::vector<double>{c.sumsq});
        dloss.put(std::vector<double>{c.loss});
        ASSERT_EQ(kl_grad_clip_cuda(dclip.p, dnorm.p, dsum.p, c.with_loss ? dloss.p : nullptr, c.max_norm, nullptr),
                  KL_OK);
        EXPECT_EQ(dclip.get()[0], c.want);
        const double norm = dnorm.get()[0];
        if (std::isnan(c.sumsq)) {
            EXPECT_TRUE(std::isnan(norm));
        } else {
            EXPECT_EQ(norm, std::sqrt(c.sumsq));
        }
    }
}
