/* rope_test.cc (gpu) — the CUDA RoPE on the packed BF16 qkv (kernels/rope_cuda.h) against the CPU
 * reference on the same BF16 inputs and the same FP32 tables from kl_rope_freqs: forward and backward,
 * 16-byte and single-element paths, v heads untouched, positions taken modulo T across the batch. */
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "gpu_test_util.h"
#include "test_util.h"

extern "C" {
#include "device.h"
#include "rope.h"
#include "rope_cuda.h"
}

namespace {

struct Shape {
    int B, T, NH, NKV, HS;
};
// HS/2 a multiple of 8 (vectors: HS 64, 128), and not (HS 12: single elements); GQA and MHA.
const Shape kShapes[] = {{2, 13, 4, 2, 64}, {1, 9, 2, 2, 128}, {3, 7, 3, 1, 12}};

// BF16 keeps 8 significant bits: rounding to it is off by at most 2^-8 / (1 + 2^-8) relative, so rtol 2^-8
// leaves ~1.5e-5 relative for the FP32 result to differ from the CPU's (contracted multiply-adds: a few
// 2^-24). The rotation mixes two O(1) terms: an absolute 1e-6 covers results that cancel to near zero.
const double kRtol = 1.0 / 256, kAtol = 1e-6;

void check(bool backward) {
    uint64_t seed = kltest::fresh_seed(backward ? "CudaRope.BackwardMatchesCpu" : "CudaRope.ForwardMatchesCpu");
    for (const Shape &s : kShapes) {
        SCOPED_TRACE("HS=" + std::to_string(s.HS));
        const size_t total = (size_t)s.B * s.T * (s.NH + 2 * s.NKV) * s.HS;
        auto x = to_f32(to_bf16(kltest::random_normal(total, 1.0f, seed++)));
        const int Tmax = s.T + 5;  // tables longer than T, as the model's are
        std::vector<float> cos((size_t)Tmax * s.HS / 2), sin(cos.size());
        ASSERT_EQ(kl_rope_freqs(cos.data(), sin.data(), Tmax, s.HS, 10000.0, nullptr), KL_OK);
        std::vector<float> want = x;
        if (backward)
            kl_rope_backward_cpu(want.data(), cos.data(), sin.data(), s.B, s.T, s.NH, s.NKV, s.HS);
        else
            kl_rope_forward_cpu(want.data(), cos.data(), sin.data(), s.B, s.T, s.NH, s.NKV, s.HS);
        Dev<kl_bf16> dx(to_bf16(x));
        Dev<float> dc(cos), ds(sin);
        kl_status st = backward ? kl_rope_backward_cuda(dx.p, dc.p, ds.p, s.B, s.T, s.NH, s.NKV, s.HS, nullptr)
                                : kl_rope_forward_cuda(dx.p, dc.p, ds.p, s.B, s.T, s.NH, s.NKV, s.HS, nullptr);
        ASSERT_EQ(st, KL_OK) << kl_last_error();
        auto got = to_f32(dx.get());
        std::string rep;
        EXPECT_TRUE(kltest::all_close(got.data(), want.data(), total, kRtol, kAtol, &rep)) << rep;
        // The v heads are not touched at all: their bits are the input's.
        const size_t row = (size_t)(s.NH + 2 * s.NKV) * s.HS, qk = (size_t)(s.NH + s.NKV) * s.HS;
        for (size_t r = 0; r < (size_t)s.B * s.T; r++)
            ASSERT_EQ(0, memcmp(&got[r * row + qk], &x[r * row + qk], (row - qk) * sizeof(float))) << "row " << r;
    }
}

}  // namespace

TEST(CudaRope, ForwardMatchesCpu) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    check(false);
}

TEST(CudaRope, BackwardMatchesCpu) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    check(true);
}
