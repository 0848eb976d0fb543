/* embedding_test.cc (gpu) — the CUDA embedding (kernels/embedding_cuda.h) against the CPU reference: the
 * forward gather is exact, the planned backward adds in the CPU's order so it is bit-exact too; the plan's
 * grouping and validation; and the FP32 <-> BF16 conversion kernels (kernels/cuda_common.h) against the
 * host conversion, on both the vector and the single-element paths. */
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "test_util.h"

extern "C" {
#include "device.h"
#include "embedding.h"
#include "embedding_cuda.h"
}

namespace {

// Tokens drawn from a small vocabulary, so most ids repeat many times (the case the plan exists for).
std::vector<int32_t> random_tokens(int N, int V, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int32_t> d(0, V - 1);
    std::vector<int32_t> t(N);
    for (int32_t &x : t) x = d(rng);
    return t;
}

}  // namespace

TEST(CudaEmbedding, ForwardGathersTheCpuRowsExactly) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaEmbedding.ForwardGathersTheCpuRowsExactly");
    for (int C : {896, 100}) {  // 16-byte vectors; single elements
        SCOPED_TRACE("C=" + std::to_string(C));
        const int N = 61, V = 23;
        auto wte = to_f32(to_bf16(kltest::random_normal((size_t)V * C, 1.0f, seed++)));
        auto tokens = random_tokens(N, V, seed++);
        std::vector<float> out((size_t)N * C);
        ASSERT_EQ(kl_embedding_forward_cpu(out.data(), tokens.data(), wte.data(), N, V, C), KL_OK);
        Dev<kl_bf16> dw(to_bf16(wte)), dout((size_t)N * C);
        Dev<int32_t> dt(tokens);
        ASSERT_EQ(kl_embedding_forward_cuda(dout.p, dt.p, dw.p, N, V, C, nullptr), KL_OK) << kl_last_error();
        auto got = to_f32(dout.get());
        EXPECT_EQ(0, memcmp(got.data(), out.data(), out.size() * sizeof(float)));  // a copy: exact
    }
}

TEST(CudaEmbedding, ForwardWritesNanRowsForOutOfRangeTokens) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    const int N = 3, V = 5, C = 16;
    std::vector<int32_t> tokens = {1, 7, -2};
    Dev<kl_bf16> dw(to_bf16(std::vector<float>((size_t)V * C, 0.5f))), dout((size_t)N * C);
    Dev<int32_t> dt(tokens);
    ASSERT_EQ(kl_embedding_forward_cuda(dout.p, dt.p, dw.p, N, V, C, nullptr), KL_OK);
    auto got = to_f32(dout.get());
    for (int c = 0; c < C; c++) {
        EXPECT_EQ(got[c], 0.5f);
        EXPECT_TRUE(std::isnan(got[C + c]));
        EXPECT_TRUE(std::isnan(got[2 * C + c]));
    }
}

TEST(CudaEmbedding, PlanGroupsPositionsByTokenInIncreasingOrder) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaEmbedding.PlanGroupsPositionsByTokenInIncreasingOrder");
    const int N = 200, V = 37;
    auto tokens = random_tokens(N, V, seed);
    std::vector<int32_t> plan(kl_embedding_plan_elems(N));
    int U = -1;
    ASSERT_EQ(kl_embedding_backward_plan(plan.data(), &U, tokens.data(), N, V), KL_OK);
    std::vector<int> seen(V, 0);
    for (int32_t t : tokens) seen[t] = 1;
    int distinct = 0;
    for (int v = 0; v < V; v++) distinct += seen[v];
    ASSERT_EQ(U, distinct);
    const int32_t *offsets = plan.data() + N, *positions = plan.data() + 2 * N + 1;
    EXPECT_EQ(offsets[0], 0);
    EXPECT_EQ(offsets[U], N);
    for (int u = 0; u < U; u++) {
        if (u > 0) {
            EXPECT_LT(plan[u - 1], plan[u]);  // distinct ids, increasing
        }
        for (int p = offsets[u]; p < offsets[u + 1]; p++) {
            EXPECT_EQ(tokens[positions[p]], plan[u]);
            if (p > offsets[u]) {
                EXPECT_LT(positions[p - 1], positions[p]);
            }
        }
    }
}

TEST(CudaEmbedding, PlanRejectsOutOfRangeTokens) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    std::vector<int32_t> tokens = {3, 9, 10}, plan(kl_embedding_plan_elems(3));
    int U = 0;
    EXPECT_EQ(kl_embedding_backward_plan(plan.data(), &U, tokens.data(), 3, 10), KL_ERR_INVALID);
    EXPECT_NE(std::string(kl_last_error()).find("position 2"), std::string::npos) << kl_last_error();
}

TEST(CudaEmbedding, BackwardEqualsCpuBitForBitAndRunToRun) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaEmbedding.BackwardEqualsCpuBitForBitAndRunToRun");
    for (int C : {896, 100}) {
        SCOPED_TRACE("C=" + std::to_string(C));
        const int N = 301, V = 29;
        auto tokens = random_tokens(N, V, seed++);
        auto dout = to_f32(to_bf16(kltest::random_normal((size_t)N * C, 1.0f, seed++)));
        auto dwte0 = kltest::random_normal((size_t)V * C, 1.0f, seed++);
        std::vector<float> dwte = dwte0;
        kl_embedding_backward_cpu(dwte.data(), dout.data(), tokens.data(), N, C);

        std::vector<int32_t> plan(kl_embedding_plan_elems(N));
        int U = 0;
        ASSERT_EQ(kl_embedding_backward_plan(plan.data(), &U, tokens.data(), N, V), KL_OK);
        Dev<int32_t> dplan(plan);
        Dev<kl_bf16> dd(to_bf16(dout));
        Dev<float> dw(dwte0);
        ASSERT_EQ(kl_embedding_backward_cuda(dw.p, dd.p, dplan.p, U, N, C, nullptr), KL_OK) << kl_last_error();
        auto got = dw.get();
        // Same FP32 additions in the same order (increasing position per row): identical bits.
        EXPECT_EQ(0, memcmp(got.data(), dwte.data(), dwte.size() * sizeof(float)));
        dw.put(dwte0);
        ASSERT_EQ(kl_embedding_backward_cuda(dw.p, dd.p, dplan.p, U, N, C, nullptr), KL_OK);
        EXPECT_EQ(0, memcmp(got.data(), dw.get().data(), got.size() * sizeof(float)));
    }
}

TEST(CudaConvert, F32ToBf16RoundsToNearestEvenLikeTheHost) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaConvert.F32ToBf16RoundsToNearestEvenLikeTheHost");
    auto v = kltest::random_normal(10007, 100.0f, seed);  // odd length: a scalar tail after the vectors
    // Exact ties (both parities), values that round up into the next binade or to inf, zeros, denormals.
    const float specials[] = {1.00390625f, 1.01171875f, -1.00390625f, 3.3895314e38f, 3.4028235e38f, 0.0f, -0.0f,
                              1e-40f, -3e-39f, std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(), 1.9999999f};
    for (size_t i = 0; i < sizeof specials / sizeof *specials; i++) v[i * 7] = specials[i];
    v[500] = std::numeric_limits<float>::quiet_NaN();
    Dev<float> din(v);
    Dev<kl_bf16> dout(v.size() + 1);
    // Aligned (vector path), then shifted by one element (single elements throughout).
    for (int shift = 0; shift < 2; shift++) {
        ASSERT_EQ(kl_f32_to_bf16_cuda(dout.p + shift, din.p, v.size(), nullptr), KL_OK) << kl_last_error();
        auto got = dout.get();
        for (size_t i = 0; i < v.size(); i++) {
            if (std::isnan(v[i])) {
                EXPECT_TRUE(std::isnan(kl_bf16_to_f32(got[i + shift]))) << i;
                continue;
            }
            ASSERT_EQ(got[i + shift], kl_f32_to_bf16(v[i])) << "i=" << i << " x=" << v[i];
        }
    }
}

TEST(CudaConvert, Bf16ToF32IsExact) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    std::vector<kl_bf16> all(65536 + 3);
    for (size_t i = 0; i < all.size(); i++) all[i] = (kl_bf16)(i * 40503u);  // every pattern, odd length
    Dev<kl_bf16> din(all);
    Dev<float> dout(all.size() + 1);
    for (int shift = 0; shift < 2; shift++) {
        ASSERT_EQ(kl_bf16_to_f32_cuda(dout.p + shift, din.p, all.size(), nullptr), KL_OK) << kl_last_error();
        auto got = dout.get();
        for (size_t i = 0; i < all.size(); i++) {
            const float want = kl_bf16_to_f32(all[i]);
            ASSERT_EQ(0, memcmp(&got[i + shift], &want, sizeof want)) << i;  // bit patterns, NaNs included
        }
    }
}
