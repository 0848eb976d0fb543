/* rmsnorm_test.cc (gpu) — the CUDA RMSNorm with fused residual add and the Qwen3 q/k norm
 * (kernels/rmsnorm_cuda.h) against the CPU reference on the same BF16-rounded inputs, over sizes that take
 * every code path (16-byte vectors and single elements, one warp and many per segment, partial row chunks);
 * in-place q/k norm backward; bit-identical results run to run. */
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "gpu_test_util.h"
#include "test_util.h"

extern "C" {
#include "device.h"
#include "rmsnorm.h"
#include "rmsnorm_cuda.h"
}

namespace {

// Random values already on the BF16 grid, so the CPU reference sees exactly the GPU's inputs.
std::vector<float> bf16_normal(size_t n, float stddev, uint64_t seed, float mean = 0.f) {
    auto v = kltest::random_normal(n, stddev, seed);
    for (float &x : v) x = kl_bf16_round(x + mean);
    return v;
}

// BF16 keeps 8 significant bits: rounding to it is off by at most 2^-8 / (1 + 2^-8) relative, so rtol 2^-8
// leaves ~1.5e-5 relative for the GPU's FP32 value to differ from the CPU's before that rounding (sums in
// another order: ~1e-6 here).
const double kBf16Rtol = 1.0 / 256;
const float kEps = 1e-6f;

struct Shape {
    int N, C;
};
// C: multiple of 8 (vector path) from one warp to many per row, with each of the backward's layouts (two
// chunks per thread at 896; three at 1536, 3584 and 12000; four at 4096); not a multiple of 8 (single
// elements, one and two warps per row in backward); N not a multiple of the 32-row backward chunk.
const Shape kShapes[] = {{37, 896}, {70, 64}, {19, 1536}, {7, 3584}, {9, 4096}, {5, 12000}, {33, 100}, {11, 1001}};

}  // namespace

TEST(CudaRmsnorm, FusedForwardMatchesCpu) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaRmsnorm.FusedForwardMatchesCpu");
    for (const Shape &s : kShapes) {
        SCOPED_TRACE("N=" + std::to_string(s.N) + " C=" + std::to_string(s.C));
        const size_t NC = (size_t)s.N * s.C;
        auto a = bf16_normal(NC, 1.0f, seed++), b = bf16_normal(NC, 0.5f, seed++);
        auto w = bf16_normal(s.C, 0.2f, seed++, 1.0f);
        Dev<kl_bf16> da(to_bf16(a)), db(to_bf16(b)), dw(to_bf16(w)), dres(NC), dout(NC);
        Dev<float> drstd(s.N);
        ASSERT_EQ(kl_fused_residual_rmsnorm_forward_cuda(dres.p, dout.p, drstd.p, da.p, db.p, dw.p, s.N, s.C, kEps,
                                                         nullptr), KL_OK) << kl_last_error();
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        // The residual is one FP32 addition rounded to BF16, on both sides: bit-exact.
        std::vector<float> res(NC);
        for (size_t i = 0; i < NC; i++) res[i] = kl_bf16_round(a[i] + b[i]);
        auto gres = to_f32(dres.get());
        ASSERT_EQ(0, memcmp(gres.data(), res.data(), NC * sizeof(float))) << "residual differs";
        std::vector<float> out(NC), rstd(s.N);
        kl_rmsnorm_forward_cpu(out.data(), rstd.data(), res.data(), w.data(), s.N, s.C, kEps);
        std::string rep;
        // rstd: an FP32 sum of C squares (at most ~40 sequential additions per thread plus a tree of depth
        // <= 10) against the CPU's double sum: relative error well under 50 * 2^-24 = 3e-6.
        EXPECT_TRUE(kltest::all_close(drstd.get().data(), rstd.data(), s.N, 1e-5, 0, &rep)) << rep;
        // out: BF16 rounding of x * rstd * w; atol covers results that underflow the relative bound.
        EXPECT_TRUE(kltest::all_close(to_f32(dout.get()).data(), out.data(), NC, kBf16Rtol, 1e-6, &rep)) << rep;
    }
}

TEST(CudaRmsnorm, PlainForwardMatchesCpu) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaRmsnorm.PlainForwardMatchesCpu");
    for (const int C : {1536, 20000}) {  // 20000: past 16384, the forward's four-chunk layout
        SCOPED_TRACE("C=" + std::to_string(C));
        const int N = 19;
        auto x = bf16_normal((size_t)N * C, 3.0f, seed), w = bf16_normal(C, 0.2f, seed + 1, 1.0f);
        seed += 2;
        Dev<kl_bf16> dx(to_bf16(x)), dw(to_bf16(w)), dout((size_t)N * C);
        Dev<float> drstd(N);
        ASSERT_EQ(kl_rmsnorm_forward_cuda(dout.p, drstd.p, dx.p, dw.p, N, C, kEps, nullptr), KL_OK) << kl_last_error();
        std::vector<float> out((size_t)N * C), rstd(N);
        kl_rmsnorm_forward_cpu(out.data(), rstd.data(), x.data(), w.data(), N, C, kEps);
        std::string rep;
        EXPECT_TRUE(kltest::all_close(drstd.get().data(), rstd.data(), N, 1e-5, 0, &rep)) << rep;  // as above
        EXPECT_TRUE(kltest::all_close(to_f32(dout.get()).data(), out.data(), out.size(), kBf16Rtol, 1e-6, &rep))
            << rep;
    }
}

TEST(CudaRmsnorm, BackwardMatchesCpu) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaRmsnorm.BackwardMatchesCpu");
    for (const Shape &s : kShapes) {
        SCOPED_TRACE("N=" + std::to_string(s.N) + " C=" + std::to_string(s.C));
        const size_t NC = (size_t)s.N * s.C;
        auto x = bf16_normal(NC, 1.0f, seed++), g = bf16_normal(NC, 1.0f, seed++);
        auto w = bf16_normal(s.C, 0.2f, seed++, 1.0f), dx0 = bf16_normal(NC, 1.0f, seed++);
        auto dw0 = kltest::random_normal(s.C, 1.0f, seed++);
        std::vector<float> out(NC), rstd(s.N);
        kl_rmsnorm_forward_cpu(out.data(), rstd.data(), x.data(), w.data(), s.N, s.C, kEps);
        std::vector<float> dx = dx0, dw = dw0;
        kl_rmsnorm_backward_cpu(dx.data(), dw.data(), g.data(), x.data(), w.data(), rstd.data(), s.N, s.C);

        Dev<kl_bf16> ddx(to_bf16(dx0)), dg(to_bf16(g)), dxin(to_bf16(x)), dwt(to_bf16(w));
        Dev<float> ddw(dw0), drstd(rstd);
        Dev<char> scratch(kl_rmsnorm_backward_scratch_bytes(s.N, s.C));
        ASSERT_EQ(kl_rmsnorm_backward_cuda(ddx.p, ddw.p, dg.p, dxin.p, dwt.p, drstd.p, s.N, s.C, scratch.p, nullptr),
                  KL_OK) << kl_last_error();
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        std::string rep;
        // dx = bf16(dx0 + d): the BF16 rounding, plus FP32 error in d = r w g - x r^3/C sum(g w x), whose
        // C-term sum of O(1) values is off by ~1e-6 relative: 1e-4 absolute is ten times that.
        EXPECT_TRUE(kltest::all_close(to_f32(ddx.get()).data(), dx.data(), NC, kBf16Rtol, 1e-4, &rep)) << rep;
        // dw: FP32 sum over N rows (in-thread over 32 rows, then a tree over chunks) of products with two
        // roundings each: |error| <= (N + 3) 2^-24 (|dw0| + sum_n |g x r|), the recursive-summation bound.
        auto gdw = ddw.get();
        for (int c = 0; c < s.C; c++) {
            double mag = std::fabs(dw0[c]);
            for (int n = 0; n < s.N; n++)
                mag += std::fabs((double)g[(size_t)n * s.C + c] * x[(size_t)n * s.C + c] * rstd[n]);
            const double bound = (s.N + 3) * std::ldexp(1.0, -24) * mag + 1e-30;
            ASSERT_LE(std::fabs((double)gdw[c] - dw[c]), bound) << "dw[" << c << "] gpu " << gdw[c] << " cpu " << dw[c];
        }
    }
}

TEST(CudaRmsnorm, BackwardIsBitIdenticalRunToRun) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaRmsnorm.BackwardIsBitIdenticalRunToRun");
    const int N = 1000, C = 896;
    const size_t NC = (size_t)N * C;
    auto x = bf16_normal(NC, 1.0f, seed), g = bf16_normal(NC, 1.0f, seed + 1), w = bf16_normal(C, 0.2f, seed + 2, 1.f);
    Dev<kl_bf16> dxin(to_bf16(x)), dg(to_bf16(g)), dwt(to_bf16(w)), ddx(NC);
    Dev<float> drstd(N), ddw(C);
    Dev<kl_bf16> dnorm(NC);
    ASSERT_EQ(kl_rmsnorm_forward_cuda(dnorm.p, drstd.p, dxin.p, dwt.p, N, C, kEps, nullptr), KL_OK);
    Dev<char> scratch(kl_rmsnorm_backward_scratch_bytes(N, C));
    std::vector<kl_bf16> dx_first;
    std::vector<float> dw_first;
    for (int run = 0; run < 2; run++) {
        ASSERT_EQ(cudaMemset(ddx.p, 0, NC * sizeof(kl_bf16)), cudaSuccess);
        ASSERT_EQ(cudaMemset(ddw.p, 0, C * sizeof(float)), cudaSuccess);
        ASSERT_EQ(kl_rmsnorm_backward_cuda(ddx.p, ddw.p, dg.p, dxin.p, dwt.p, drstd.p, N, C, scratch.p, nullptr),
                  KL_OK);
        if (run == 0) {
            dx_first = ddx.get();
            dw_first = ddw.get();
        } else {
            EXPECT_EQ(0, memcmp(dx_first.data(), ddx.get().data(), NC * sizeof(kl_bf16)));
            EXPECT_EQ(0, memcmp(dw_first.data(), ddw.get().data(), C * sizeof(float)));
        }
    }
}

namespace {
struct QkShape {
    int N, NH, NKV, HS;
};
// HS = 128 (Qwen3; vectors), 64, and 36 (not a multiple of 8: single elements); 5 and 3 heads give blocks
// of several heads; N crosses the 32-row chunk.
const QkShape kQkShapes[] = {{7, 4, 2, 128}, {40, 6, 2, 64}, {5, 3, 1, 36}};
}  // namespace

TEST(CudaQknorm, ForwardMatchesCpu) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaQknorm.ForwardMatchesCpu");
    for (const QkShape &s : kQkShapes) {
        SCOPED_TRACE("N=" + std::to_string(s.N) + " HS=" + std::to_string(s.HS));
        const size_t total = (size_t)s.N * (s.NH + 2 * s.NKV) * s.HS, nr = (size_t)s.N * (s.NH + s.NKV);
        auto qkv = bf16_normal(total, 2.0f, seed++);
        auto qw = bf16_normal(s.HS, 0.2f, seed++, 1.f), kw = bf16_normal(s.HS, 0.2f, seed++, 1.f);
        std::vector<float> out(total), rstd(nr);
        kl_qknorm_forward_cpu(out.data(), rstd.data(), qkv.data(), qw.data(), kw.data(), s.N, s.NH, s.NKV, s.HS, kEps);
        Dev<kl_bf16> din(to_bf16(qkv)), dout(total), dq(to_bf16(qw)), dk(to_bf16(kw));
        Dev<float> drstd(nr);
        ASSERT_EQ(kl_qknorm_forward_cuda(dout.p, drstd.p, din.p, dq.p, dk.p, s.N, s.NH, s.NKV, s.HS, kEps, nullptr),
                  KL_OK) << kl_last_error();
        std::string rep;
        // As for RMSNorm: FP32 sums of HS squares; BF16 output rounding (v heads are copied: exact).
        EXPECT_TRUE(kltest::all_close(drstd.get().data(), rstd.data(), nr, 1e-5, 0, &rep)) << rep;
        EXPECT_TRUE(kltest::all_close(to_f32(dout.get()).data(), out.data(), total, kBf16Rtol, 1e-6, &rep)) << rep;
        // In place (inference) gives the same bits as out of place.
        auto oop = dout.get();
        Dev<float> drstd2(nr);
        ASSERT_EQ(kl_qknorm_forward_cuda(din.p, drstd2.p, din.p, dq.p, dk.p, s.N, s.NH, s.NKV, s.HS, kEps, nullptr),
                  KL_OK);
        EXPECT_EQ(0, memcmp(oop.data(), din.get().data(), total * sizeof(kl_bf16)));
    }
}

TEST(CudaQknorm, BackwardMatchesCpuInAndOutOfPlace) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    uint64_t seed = kltest::fresh_seed("CudaQknorm.BackwardMatchesCpuInAndOutOfPlace");
    for (const QkShape &s : kQkShapes) {
        SCOPED_TRACE("N=" + std::to_string(s.N) + " HS=" + std::to_string(s.HS));
        const int row = (s.NH + 2 * s.NKV) * s.HS, nqk = s.NH + s.NKV;
        const size_t total = (size_t)s.N * row, nr = (size_t)s.N * nqk;
        auto qkv = bf16_normal(total, 2.0f, seed++), g = bf16_normal(total, 1.0f, seed++);
        auto qw = bf16_normal(s.HS, 0.2f, seed++, 1.f), kw = bf16_normal(s.HS, 0.2f, seed++, 1.f);
        auto dq0 = kltest::random_normal(s.HS, 1.0f, seed++), dk0 = kltest::random_normal(s.HS, 1.0f, seed++);
        std::vector<float> out(total), rstd(nr), dqkv(total), dq = dq0, dk = dk0;
        kl_qknorm_forward_cpu(out.data(), rstd.data(), qkv.data(), qw.data(), kw.data(), s.N, s.NH, s.NKV, s.HS, kEps);
        kl_qknorm_backward_cpu(dqkv.data(), dq.data(), dk.data(), g.data(), qkv.data(), qw.data(), kw.data(),
                               rstd.data(), s.N, s.NH, s.NKV, s.HS);
        // |error| bound of the FP32 weight-gradient sums over N x heads terms (see CudaRmsnorm.BackwardMatchesCpu).
        std::vector<double> mag_q(s.HS), mag_k(s.HS);
        for (int i = 0; i < s.HS; i++) {
            mag_q[i] = std::fabs(dq0[i]);
            mag_k[i] = std::fabs(dk0[i]);
            for (int n = 0; n < s.N; n++)
                for (int h = 0; h < nqk; h++) {
                    size_t o = (size_t)n * row + (size_t)h * s.HS + i;
                    double t = std::fabs((double)g[o] * qkv[o] * rstd[(size_t)n * nqk + h]);
                    (h < s.NH ? mag_q : mag_k)[i] += t;
                }
        }
        for (int in_place = 0; in_place < 2; in_place++) {
            SCOPED_TRACE(in_place ? "in place" : "out of place");
            Dev<kl_bf16> dg(to_bf16(g)), din(to_bf16(qkv)), dqw(to_bf16(qw)), dkw(to_bf16(kw)), dres(total);
            Dev<float> ddq(dq0), ddk(dk0), drstd(rstd);
            Dev<char> scratch(kl_qknorm_backward_scratch_bytes(s.N, s.NH, s.NKV, s.HS));
            kl_bf16 *dst = in_place ? dg.p : dres.p;
            ASSERT_EQ(kl_qknorm_backward_cuda(dst, ddq.p, ddk.p, dg.p, din.p, dqw.p, dkw.p, drstd.p, s.N, s.NH, s.NKV,
                                              s.HS, scratch.p, nullptr), KL_OK) << kl_last_error();
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            auto got = to_f32(in_place ? dg.get() : dres.get());
            std::string rep;
            // BF16 rounding of the overwritten gradient; FP32 error of the HS-term dot, as for RMSNorm.
            EXPECT_TRUE(kltest::all_close(got.data(), dqkv.data(), total, kBf16Rtol, 1e-4, &rep)) << rep;
            auto gq = ddq.get(), gk = ddk.get();
            const double terms = (double)s.N * s.NH + 3;
            for (int i = 0; i < s.HS; i++) {
                ASSERT_LE(std::fabs((double)gq[i] - dq[i]), terms * std::ldexp(1.0, -24) * mag_q[i] + 1e-30) << i;
                ASSERT_LE(std::fabs((double)gk[i] - dk[i]), terms * std::ldexp(1.0, -24) * mag_k[i] + 1e-30) << i;
            }
        }
    }
}

extern "C" {
#include "bench_cudak.h"
}

// The cudak benchmark (kernels/cuda/bench_cudak.cu) runs and reports a plausible bandwidth for every kernel.
// It takes seconds and ~10 GB of device memory, so it runs only when KILN_BENCH=1.
TEST(CudakBench, ReportsEveryKernelBelowTheBandwidthBound) {
    if (kl_gpu_count() == 0) GTEST_SKIP() << "no GPU";
    const char *env = getenv("KILN_BENCH");
    if (!env || strcmp(env, "1") != 0) GTEST_SKIP() << "set KILN_BENCH=1 to run the benchmark";
    FILE *f = tmpfile();
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(kl_bench_cudak(f), KL_OK) << kl_last_error();
    rewind(f);
    char line[1024];
    int json = 0;
    while (fgets(line, sizeof line, f)) {
        fputs(line, stdout);
        const char *p = strstr(line, "\"fraction\":");
        if (!p) continue;
        json++;
        const double frac = atof(p + strlen("\"fraction\":"));
        // Bytes are each kernel's minimum traffic: above 1.5x the copy bound the accounting would be wrong.
        EXPECT_GT(frac, 0.0) << line;
        EXPECT_LT(frac, 1.5) << line;
    }
    fclose(f);
    EXPECT_EQ(json, 22);  // one JSON line per benchmarked kernel and shape
}
