/* swiglu_test.cc (gpu) — the CUDA SwiGLU (kernels/swiglu_cuda.h) against the CPU reference on the same
 * BF16 inputs, forward and backward, 16-byte and single-element paths, including gates far enough out
 * that exp(-g) overflows or underflows in FP32. */
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "gpu_test_util.h"
#include "test_util.h"

extern "C" {
#include "device.h"
#include "swiglu.h"
#include "swiglu_cuda.h"
}

namespace {

struct Shape {
    int N, F;
};
const Shape kShapes[] = {{16, 256}, {33, 100}, {5, 4864}};  // vectors; F % 8 != 0; Qwen2.5-0.5B's F

// FP32 math with the fast exponential (__expf: 2 + 1.17|g| ulp, at most ~4.4e-6 relative for the |g| <= 30
// where sigmoid has not saturated) and a correctly rounded reciprocal differs from the CPU's double math by up
// to ~5e-6 relative before the BF16 rounding, which is off by at most 2^-8 / (1 + 2^-8) relative: rtol 2^-8
// leaves ~1.5e-5 for that difference. atol covers g far negative, where FP32 exp(-g) overflows and the GPU
// returns -0 for a CPU value of ~1e-42.
const double kRtol = 1.0 / 256, kAtol = 1e-6;

std::vector<float> gates_and_ups(size_t n, uint64_t seed) {
    auto v = kltest::random_normal(n, 3.0f, seed);
    const float far[] = {-100.f, -30.f, 30.f, 100.f, -0.f};  // exp(-g) overflows / underflows / trivial
    for (size_t i = 0; i < 5 && i * 3 < n; i++) v[i * 3] = far[i];
    return to_f32(to_bf16(v));
}

}  // namespace

TEST(CudaSwiglu, ForwardMatchesCpu) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaSwiglu.ForwardMatchesCpu");
    for (const Shape &s : kShapes) {
        SCOPED_TRACE("F=" + std::to_string(s.F));
        auto gu = gates_and_ups((size_t)s.N * 2 * s.F, seed++);
        std::vector<float> want((size_t)s.N * s.F);
        kl_swiglu_forward_cpu(want.data(), gu.data(), s.N, s.F);
        Dev<kl_bf16> dgu(to_bf16(gu)), dout(want.size());
        ASSERT_EQ(kl_swiglu_forward_cuda(dout.p, dgu.p, s.N, s.F, nullptr), KL_OK) << kl_last_error();
        std::string rep;
        EXPECT_TRUE(kltest::all_close(to_f32(dout.get()).data(), want.data(), want.size(), kRtol, kAtol, &rep))
            << rep;
    }
}

TEST(CudaSwiglu, BackwardMatchesCpu) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaSwiglu.BackwardMatchesCpu");
    for (const Shape &s : kShapes) {
        SCOPED_TRACE("F=" + std::to_string(s.F));
        auto gu = gates_and_ups((size_t)s.N * 2 * s.F, seed++);
        auto dout = to_f32(to_bf16(kltest::random_normal((size_t)s.N * s.F, 1.0f, seed++)));
        std::vector<float> want(gu.size());
        kl_swiglu_backward_cpu(want.data(), dout.data(), gu.data(), s.N, s.F);
        Dev<kl_bf16> dgu(to_bf16(gu)), dd(to_bf16(dout)), dres(gu.size());
        ASSERT_EQ(kl_swiglu_backward_cuda(dres.p, dd.p, dgu.p, s.N, s.F, nullptr), KL_OK) << kl_last_error();
        std::string rep;
        EXPECT_TRUE(kltest::all_close(to_f32(dres.get()).data(), want.data(), want.size(), kRtol, kAtol, &rep))
            << rep;
    }
}
