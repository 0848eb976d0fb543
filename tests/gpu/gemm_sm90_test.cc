/* gemm_sm90_test.cc (gpu) — kiln's own Hopper GEMM (kernels/gemm_sm90_cuda.h): the product against a CPU
 * reference in double on fresh random inputs, at sizes that leave partial tiles in every dimension (and K
 * shorter than one 64-wide stage); the fused SwiGLU epilogue's h against kl_swiglu_forward_cuda on the gu the
 * kernel wrote, bit for bit; repeats bit for bit; the shapes it refuses. Skipped without an sm_90 device. */
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "test_util.h"

extern "C" {
#include "device.h"
#include "gemm_sm90_cuda.h"
#include "matmul.h"
#include "swiglu_cuda.h"
}

namespace {

struct Shape {
    int M, N, K;
};

// out(M,N) = a(M,K) b(N,K)^T by the CPU reference in double, and the sum of |a b| per output (the scale of the
// accumulation error): the same product of |a| and |b|.
void reference(const std::vector<float> &a, const std::vector<float> &b, int M, int N, int K, std::vector<double> *out,
               std::vector<double> *mag) {
    std::vector<double> da(a.begin(), a.end()), db(b.begin(), b.end());
    out->assign((size_t)M * N, 0.0);
    mag->assign((size_t)M * N, 0.0);
    kl_matmul_forward_cpu_f64(out->data(), da.data(), db.data(), nullptr, M, K, N);
    for (double &v : da) v = std::fabs(v);
    for (double &v : db) v = std::fabs(v);
    kl_matmul_forward_cpu_f64(mag->data(), da.data(), db.data(), nullptr, M, K, N);
}

// The output is the FP32 sum rounded to BF16 (nearest even, at most 2^-9 relative), and the FP32 sum of K
// products is within K 2^-24 sum|a b| of the exact one; both bounds are doubled.
::testing::AssertionResult close_to_reference(const std::vector<kl_bf16> &got, const std::vector<double> &ref,
                                              const std::vector<double> &mag, int ld, int col0, int M, int N, int K) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            const double r = ref[(size_t)m * N + n], g = kl_bf16_to_f32(got[(size_t)m * ld + col0 + n]);
            const double tol = std::ldexp(std::fabs(r), -8) + K * std::ldexp(mag[(size_t)m * N + n], -23);
            if (!(std::fabs(g - r) <= tol))
                return ::testing::AssertionFailure() << "(" << m << ", " << n << "): got " << g << ", want " << r
                                                     << " +- " << tol;
        }
    return ::testing::AssertionSuccess();
}

std::vector<float> random_bf16(size_t n, float stddev, uint64_t seed) {
    return to_f32(to_bf16(kltest::random_normal(n, stddev, seed)));
}

#define SKIP_UNLESS_SM90()                                                                                    \
    do {                                                                                                      \
        if (kl_gpu_count() == 0 || !kl_gemm_sm90_available()) GTEST_SKIP() << "no sm_90 device or no sm_90a code"; \
    } while (0)

}  // namespace

TEST(GemmSm90, MatchesCpuReference) {
    SKIP_UNLESS_SM90();
    uint64_t seed = kltest::fresh_seed("GemmSm90.MatchesCpuReference");
    // partial row, column and K tiles; K < one stage; one 128 x 256 tile exactly; seven row blocks (the last
    // cluster's second block past M); more tiles than an H200's 66 clusters (9 row pairs x 8 column blocks), each
    // then written out during the next one's K-blocks: the two slots at K-blocks 0 and 2 (K = 136: 3 K-blocks), or
    // spread out, at K-blocks 2 and 5, the second consumer's at 1 and 4 (K = 328: 6 K-blocks, the last partial)
    const Shape shapes[] = {{200, 392, 136}, {1000, 264, 72}, {5, 8, 8}, {128, 256, 64}, {777, 1040, 200},
                            {2100, 2048, 136}, {2100, 2048, 328}};
    for (const Shape &s : shapes) {
        SCOPED_TRACE(std::to_string(s.M) + " x " + std::to_string(s.N) + " x " + std::to_string(s.K));
        const auto a = random_bf16((size_t)s.M * s.K, 1.0f, seed++), b = random_bf16((size_t)s.N * s.K, 0.1f, seed++);
        std::vector<double> ref, mag;
        reference(a, b, s.M, s.N, s.K, &ref, &mag);
        Dev<kl_bf16> da(to_bf16(a)), db(to_bf16(b)), dout((size_t)s.M * s.N);
        ASSERT_EQ(cudaMemset(dout.p, 0xff, dout.n * sizeof(kl_bf16)), cudaSuccess);  // NaN: unwritten shows
        ASSERT_EQ(kl_gemm_sm90_cuda(dout.p, da.p, db.p, s.M, s.N, s.K, nullptr), KL_OK) << kl_last_error();
        EXPECT_TRUE(close_to_reference(dout.get(), ref, mag, s.N, 0, s.M, s.N, s.K));
    }
}

TEST(GemmSm90, SwigluEpilogueMatchesTheSeparateKernel) {
    SKIP_UNLESS_SM90();
    uint64_t seed = kltest::fresh_seed("GemmSm90.SwigluEpilogueMatchesTheSeparateKernel");
    // {M, F, K}: one tile per cluster, its output written after the loop (K from 1 to 4 K-blocks of 64); then more
    // tiles than an H200's 66 clusters (9 row pairs x 8 column blocks), so that each tile's output goes out during
    // the next one's K-blocks, all six slots of it (K = 392: 7 K-blocks), five and the last after them (K = 264), or
    // the six spread out, in K-blocks 1, 3, 6, 8, 10 and 13, the second consumer's one earlier (K = 840: 14
    // K-blocks, the last partial)
    const Shape shapes[] = {{37, 128, 64},     {300, 256, 200},   {129, 384, 8},
                            {2100, 1024, 392}, {2100, 1024, 264}, {2100, 1024, 840}};
    for (const Shape &s : shapes) {
        const int M = s.M, F = s.N, K = s.K;
        SCOPED_TRACE(std::to_string(M) + " x F=" + std::to_string(F) + " x " + std::to_string(K));
        // gates spread over [-6, 6] so that silu's curved part is exercised
        const auto a = random_bf16((size_t)M * K, 1.0f, seed++);
        const auto w = random_bf16((size_t)2 * F * K, 3.0f / std::sqrt((float)K), seed++);
        std::vector<double> ref, mag;
        reference(a, w, M, 2 * F, K, &ref, &mag);
        Dev<kl_bf16> da(to_bf16(a)), dw(to_bf16(w)), dgu((size_t)M * 2 * F), dh((size_t)M * F), dh2((size_t)M * F);
        ASSERT_EQ(cudaMemset(dgu.p, 0xff, dgu.n * sizeof(kl_bf16)), cudaSuccess);
        ASSERT_EQ(cudaMemset(dh.p, 0xff, dh.n * sizeof(kl_bf16)), cudaSuccess);
        ASSERT_EQ(kl_gemm_sm90_swiglu_cuda(dgu.p, dh.p, da.p, dw.p, M, F, K, nullptr), KL_OK) << kl_last_error();
        const std::vector<kl_bf16> gu = dgu.get();
        EXPECT_TRUE(close_to_reference(gu, ref, mag, 2 * F, 0, M, 2 * F, K));
        ASSERT_EQ(kl_swiglu_forward_cuda(dh2.p, dgu.p, M, F, nullptr), KL_OK) << kl_last_error();
        const std::vector<kl_bf16> h = dh.get(), h2 = dh2.get();
        EXPECT_EQ(std::memcmp(h.data(), h2.data(), h.size() * sizeof(kl_bf16)), 0)
            << "h differs from kl_swiglu_forward_cuda on the same gu";
    }
}

TEST(GemmSm90, SwigluBackwardEpilogueMatchesTheSeparateKernel) {
    SKIP_UNLESS_SM90();
    uint64_t seed = kltest::fresh_seed("GemmSm90.SwigluBackwardEpilogueMatchesTheSeparateKernel");
    // {M, F, K}: one tile per cluster, its eight slots after the loop (K from 1 to 4 K-blocks), F = 384 leaving
    // half of the second column block past F; then more tiles than an H200's 66 clusters (9 row pairs x 8 column
    // blocks) with all eight slots in the next tile's loop (K = 520: 9 K-blocks), five and the rest after (K = 264),
    // or the eight spread out, in K-blocks 1, 3, 5, 8, 10, 12, 14 and 17, the second consumer's one earlier (K =
    // 1096: 18 K-blocks, the last partial)
    const Shape shapes[] = {{37, 128, 64},     {300, 384, 200},   {129, 256, 8},
                            {2100, 2048, 520}, {2100, 2048, 264}, {2100, 2048, 1096}};
    for (const Shape &s : shapes) {
        const int M = s.M, F = s.N, K = s.K;
        SCOPED_TRACE(std::to_string(M) + " x F=" + std::to_string(F) + " x " + std::to_string(K));
        const auto dout = random_bf16((size_t)M * K, 1.0f, seed++);
        const auto w_t = random_bf16((size_t)F * K, 1.0f / std::sqrt((float)K), seed++);
        auto gu = random_bf16((size_t)M * 2 * F, 1.0f, seed++);
        for (int m = 0; m < M; m++)  // gates spread over [-6, 6] so that silu's curved part is exercised
            for (int f = 0; f < F; f++) gu[(size_t)m * 2 * F + f] *= 3.0f;
        // on the device: d_ prefixed
        Dev<kl_bf16> d_dout(to_bf16(dout)), d_w_t(to_bf16(w_t)), d_gu(to_bf16(gu)), d_dh((size_t)M * F);
        Dev<kl_bf16> d_dgu((size_t)M * 2 * F), d_dgu_ref((size_t)M * 2 * F);
        // dh by the plain kernel, against the CPU; then the separate SwiGLU backward on it
        ASSERT_EQ(kl_gemm_sm90_cuda(d_dh.p, d_dout.p, d_w_t.p, M, F, K, nullptr), KL_OK) << kl_last_error();
        std::vector<double> ref, mag;
        reference(dout, w_t, M, F, K, &ref, &mag);
        EXPECT_TRUE(close_to_reference(d_dh.get(), ref, mag, F, 0, M, F, K));
        ASSERT_EQ(kl_swiglu_backward_cuda(d_dgu_ref.p, d_dh.p, d_gu.p, M, F, nullptr), KL_OK) << kl_last_error();
        ASSERT_EQ(cudaMemset(d_dgu.p, 0xff, d_dgu.n * sizeof(kl_bf16)), cudaSuccess);  // NaN: unwritten shows
        ASSERT_EQ(kl_gemm_sm90_swiglu_backward_cuda(d_dgu.p, d_gu.p, d_dout.p, d_w_t.p, M, F, K, nullptr), KL_OK)
            << kl_last_error();
        const std::vector<kl_bf16> got = d_dgu.get(), want = d_dgu_ref.get();
        size_t diff = 0;
        while (diff < got.size() && got[diff] == want[diff]) diff++;
        EXPECT_EQ(diff, got.size()) << "dgu differs from kl_swiglu_backward_cuda on the plain kernel's dh at row "
                                    << diff / (2 * F) << ", column " << diff % (2 * F);
    }
}

TEST(CudaTranspose, Bf16IsExact) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaTranspose.Bf16IsExact");
    // single elements (odd shapes), element pairs with partial tiles, the 1.5B down weight
    const int shapes[][2] = {{1, 1}, {33, 70}, {64, 33}, {300, 1000}, {1536, 8960}};
    for (const auto &sh : shapes) {
        const int rows = sh[0], cols = sh[1];
        SCOPED_TRACE(std::to_string(rows) + " x " + std::to_string(cols));
        const std::vector<kl_bf16> in = to_bf16(kltest::random_normal((size_t)rows * cols, 1.0f, seed++));
        Dev<kl_bf16> din(in), dout((size_t)rows * cols);
        ASSERT_EQ(kl_transpose_bf16_cuda(dout.p, din.p, rows, cols, nullptr), KL_OK) << kl_last_error();
        const std::vector<kl_bf16> got = dout.get();
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                ASSERT_EQ(got[(size_t)c * rows + r], in[(size_t)r * cols + c]) << "(" << r << ", " << c << ")";
    }
    EXPECT_EQ(kl_transpose_bf16_cuda(nullptr, nullptr, -1, 4, nullptr), KL_ERR_INVALID);
}

TEST(GemmSm90, RepeatsBitForBit) {
    SKIP_UNLESS_SM90();
    uint64_t seed = kltest::fresh_seed("GemmSm90.RepeatsBitForBit");
    const int M = 1500, N = 1792, K = 512;
    Dev<kl_bf16> da(to_bf16(random_bf16((size_t)M * K, 1.0f, seed)));
    Dev<kl_bf16> db(to_bf16(random_bf16((size_t)N * K, 0.1f, seed + 1)));
    Dev<kl_bf16> o1((size_t)M * N), o2((size_t)M * N);
    ASSERT_EQ(kl_gemm_sm90_cuda(o1.p, da.p, db.p, M, N, K, nullptr), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_gemm_sm90_cuda(o2.p, da.p, db.p, M, N, K, nullptr), KL_OK) << kl_last_error();
    const auto h1 = o1.get(), h2 = o2.get();
    EXPECT_EQ(std::memcmp(h1.data(), h2.data(), h1.size() * sizeof(kl_bf16)), 0);
}

TEST(GemmSm90, RefusesShapesItCannotRun) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    Dev<kl_bf16> x(4096), y(4096), z(4096);
    EXPECT_EQ(kl_gemm_sm90_cuda(z.p, x.p, y.p, 16, 12, 64, nullptr), KL_ERR_UNSUPPORTED);  // N % 8
    EXPECT_EQ(kl_gemm_sm90_cuda(z.p, x.p, y.p, 16, 64, 12, nullptr), KL_ERR_UNSUPPORTED);  // K % 8
    EXPECT_EQ(kl_gemm_sm90_cuda(z.p, x.p, y.p, 0, 64, 64, nullptr), KL_ERR_UNSUPPORTED);   // empty
    EXPECT_EQ(kl_gemm_sm90_cuda(z.p, x.p + 1, y.p, 16, 64, 64, nullptr), KL_ERR_UNSUPPORTED);  // alignment
    EXPECT_EQ(kl_gemm_sm90_swiglu_cuda(z.p, z.p, x.p, y.p, 8, 64, 8, nullptr), KL_ERR_UNSUPPORTED);  // F % 128
    EXPECT_NE(std::string(kl_last_error()).find("F a multiple of 128"), std::string::npos) << kl_last_error();
    EXPECT_EQ(kl_gemm_sm90_swiglu_backward_cuda(z.p, x.p, y.p, x.p, 8, 128, 12, nullptr), KL_ERR_UNSUPPORTED);  // K
    EXPECT_EQ(kl_gemm_sm90_swiglu_backward_cuda(z.p + 1, x.p, y.p, x.p, 8, 128, 8, nullptr), KL_ERR_UNSUPPORTED);
}
