/* cross_entropy_test.cc (gpu) — the CUDA fused softmax cross-entropy (kernels/cross_entropy_cuda.h) against
 * the CPU reference on the same BF16 logits: losses and in-place / separate / absent gradients, masks and
 * z-loss, odd V (single elements) and V wider than the register cache (vectors, re-read tail), invalid
 * targets, the FP64 loss sum, and bit-identical results run to run. */
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "test_util.h"

extern "C" {
#include "cross_entropy.h"
#include "cross_entropy_cuda.h"
#include "device.h"
}

namespace {

struct Case {
    int N, V;
    float z_loss;
};
// V odd (single elements); V = 65832 > 6 chunks x 1024 threads x 8 (registers plus shared memory);
// 151936 (Qwen's vocabulary: all of the row in registers and shared memory on Hopper); 200000 and the odd
// 140001 also re-read a remainder past the shared memory (opt-in at most 227 KiB per block).
const Case kCases[] = {{9, 1001, 1e-4f}, {4, 65832, 0.0f}, {6, 151936, 1e-4f}, {3, 200000, 1e-4f},
                       {3, 140001, 0.0f}};

struct Inputs {
    std::vector<float> logits;
    std::vector<int32_t> targets;
};

Inputs make_inputs(const Case &c, uint64_t seed) {
    Inputs in;
    in.logits = to_f32(to_bf16(kltest::random_normal((size_t)c.N * c.V, 3.0f, seed)));
    std::mt19937_64 rng(seed + 1);
    std::uniform_int_distribution<int32_t> d(0, c.V - 1);
    in.targets.resize(c.N);
    for (int32_t &t : in.targets) t = d(rng);
    in.targets[1] = KL_IGNORE_INDEX;  // one masked row
    in.targets[2] = c.V - 1;          // the last column, where a vector path would end
    return in;
}

// Loss: FP32 log-sum-exp of a row (values ~ 3 sigma, lse ~ 10) against the CPU's double: the FP32 sum of
// V terms is good to ~1e-6 relative and exp2 with a rounded argument adds ~1e-6: 2e-5 relative is ample.
const double kLossRtol = 2e-5;
// Gradient: grad_scale (p (1 + 2 z lse) - onehot) rounded to BF16 (at most 2^-8 relative), p = ex2.approx of an
// FP32 argument whose lse may be off by up to ~1e-5 (see above), i.e. p off by up to ~1e-5 relative: more
// than the 1.5e-5 slack rtol 2^-8 would leave, so one BF16 ulp, 2^-7; plus 1e-5 * grad_scale absolute
// for the one-hot entry's cancellation.
const double kGradRtol = 1.0 / 128;

}  // namespace

TEST(CudaCrossEntropy, MatchesCpuInPlaceSeparateAndLossOnly) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaCrossEntropy.MatchesCpuInPlaceSeparateAndLossOnly");
    for (const Case &c : kCases) {
        SCOPED_TRACE("V=" + std::to_string(c.V));
        Inputs in = make_inputs(c, seed);
        seed += 2;
        const float grad_scale = 1.0f / 7;
        const size_t NV = (size_t)c.N * c.V;
        std::vector<float> dl(NV), losses(c.N);
        const double total = kl_cross_entropy_cpu(dl.data(), losses.data(), in.logits.data(), in.targets.data(), c.N,
                                                  c.V, c.z_loss, grad_scale);
        Dev<int32_t> dt(in.targets);
        for (int mode = 0; mode < 3; mode++) {  // 0 in place, 1 separate buffer, 2 loss only
            SCOPED_TRACE(mode == 0 ? "in place" : mode == 1 ? "separate" : "loss only");
            Dev<kl_bf16> dx(to_bf16(in.logits)), dg(NV);
            Dev<float> dloss(c.N);
            kl_bf16 *grad = mode == 0 ? dx.p : mode == 1 ? dg.p : nullptr;
            ASSERT_EQ(kl_cross_entropy_cuda(grad, dloss.p, dx.p, dt.p, c.N, c.V, c.z_loss, grad_scale, nullptr), KL_OK)
                << kl_last_error();
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            std::string rep;
            auto gl = dloss.get();
            EXPECT_TRUE(kltest::all_close(gl.data(), losses.data(), c.N, kLossRtol, 1e-6, &rep)) << rep;  // atol: masked 0
            EXPECT_EQ(gl[1], 0.0f);  // masked
            if (mode < 2) {
                auto got = to_f32(mode == 0 ? dx.get() : dg.get());
                EXPECT_TRUE(kltest::all_close(got.data(), dl.data(), NV, kGradRtol, 1e-5 * grad_scale, &rep)) << rep;
                for (int v = 0; v < c.V; v++) ASSERT_EQ(got[(size_t)c.V + v], 0.0f);  // masked row: zeros
            } else {
                // No gradient asked for: the logits are left as they were.
                EXPECT_EQ(0, memcmp(dx.get().data(), to_bf16(in.logits).data(), NV * sizeof(kl_bf16)));
            }
            Dev<double> dsum(1);
            ASSERT_EQ(kl_cross_entropy_loss_sum_cuda(dsum.p, dloss.p, dt.p, c.N, nullptr), KL_OK);
            // The sum of the GPU's own losses in FP64 (any order: N * 2^-53 relative at most) vs the CPU's sum.
            EXPECT_NEAR(dsum.get()[0], total, kLossRtol * std::fabs(total));
        }
    }
}

TEST(CudaCrossEntropy, InvalidTargetPoisonsItsRowOnly) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaCrossEntropy.InvalidTargetPoisonsItsRowOnly");
    const int N = 3, V = 64;
    auto logits = to_f32(to_bf16(kltest::random_normal((size_t)N * V, 1.0f, seed)));
    std::vector<int32_t> targets = {5, V, -7};
    Dev<kl_bf16> dx(to_bf16(logits));
    Dev<float> dloss(N);
    Dev<int32_t> dt(targets);
    ASSERT_EQ(kl_cross_entropy_cuda(dx.p, dloss.p, dx.p, dt.p, N, V, 0.0f, 1.0f, nullptr), KL_OK);
    auto l = dloss.get();
    auto g = to_f32(dx.get());
    EXPECT_TRUE(std::isfinite(l[0]));
    EXPECT_TRUE(std::isnan(l[1]));
    EXPECT_TRUE(std::isnan(l[2]));
    for (int v = 0; v < V; v++) {
        EXPECT_TRUE(std::isfinite(g[v]));
        EXPECT_TRUE(std::isnan(g[V + v]));
        EXPECT_TRUE(std::isnan(g[2 * V + v]));
    }
}

TEST(CudaCrossEntropy, IsBitIdenticalRunToRun) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaCrossEntropy.IsBitIdenticalRunToRun");
    const Case c = {8, 151936, 1e-4f};
    Inputs in = make_inputs(c, seed);
    const size_t NV = (size_t)c.N * c.V;
    Dev<int32_t> dt(in.targets);
    std::vector<kl_bf16> first_grad;
    std::vector<float> first_loss;
    for (int run = 0; run < 2; run++) {
        Dev<kl_bf16> dx(to_bf16(in.logits));
        Dev<float> dloss(c.N);
        ASSERT_EQ(kl_cross_entropy_cuda(dx.p, dloss.p, dx.p, dt.p, c.N, c.V, c.z_loss, 0.01f, nullptr), KL_OK);
        if (run == 0) {
            first_grad = dx.get();
            first_loss = dloss.get();
        } else {
            EXPECT_EQ(0, memcmp(first_grad.data(), dx.get().data(), NV * sizeof(kl_bf16)));
            EXPECT_EQ(0, memcmp(first_loss.data(), dloss.get().data(), c.N * sizeof(float)));
        }
    }
}
