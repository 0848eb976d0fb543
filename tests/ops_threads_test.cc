/* ops_threads_test.cc — the CPU reference ops give bitwise the same results with 1 and with 4 OpenMP
 * threads, on shapes large enough to take their parallel paths (the other op tests use small shapes that
 * run serially). This checks both the parallel decomposition and the fixed reduction orders. */
#include <gtest/gtest.h>
#include <omp.h>

#include <functional>
#include <random>

#include "test_util.h"

extern "C" {
#include "attention.h"
#include "cross_entropy.h"
#include "embedding.h"
#include "matmul.h"
#include "rmsnorm.h"
#include "rope.h"
#include "swiglu.h"
}

namespace {

/* Runs `op` (which fills its outputs into the vectors it returns) with 1 thread and with 4. */
void expect_same_with_1_and_4_threads(const char *what, const std::function<std::vector<std::vector<float>>()> &op) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    auto serial = op();
    omp_set_num_threads(4);
    auto parallel = op();
    omp_set_num_threads(saved);
    ASSERT_EQ(serial.size(), parallel.size());
    for (size_t i = 0; i < serial.size(); i++) EXPECT_EQ(serial[i], parallel[i]) << what << " output " << i;
}

std::vector<int32_t> tokens(int n, int v, uint64_t seed, bool with_mask) {
    std::mt19937_64 g(seed);
    std::vector<int32_t> t(n);
    for (int i = 0; i < n; i++) t[i] = (with_mask && i % 7 == 3) ? KL_IGNORE_INDEX : (int32_t)(g() % (uint64_t)v);
    return t;
}

}  // namespace

TEST(CpuOps, SameResultsWithOneAndFourThreads) {
    uint64_t seed = kltest::fresh_seed("CpuOps.SameResultsWithOneAndFourThreads");
    auto rn = [&](size_t n) { return kltest::random_normal(n, 1.0f, seed++); };

    {  // embedding: N*C = 40960
        const int N = 64, V = 50, C = 640;
        auto wte = rn((size_t)V * C), dout = rn((size_t)N * C), dw0 = rn((size_t)V * C);
        auto tok = tokens(N, V, seed++, false);
        expect_same_with_1_and_4_threads("embedding", [&] {
            std::vector<float> out((size_t)N * C), dw = dw0;
            EXPECT_EQ(kl_embedding_forward_cpu(out.data(), tok.data(), wte.data(), N, V, C), KL_OK);
            kl_embedding_backward_cpu(dw.data(), dout.data(), tok.data(), N, C);
            return std::vector<std::vector<float>>{out, dw};
        });
    }
    {  // rmsnorm: N*C = 40960
        const int N = 64, C = 640;
        auto x = rn((size_t)N * C), w = rn(C), g = rn((size_t)N * C), dx0 = rn((size_t)N * C), dw0 = rn(C);
        expect_same_with_1_and_4_threads("rmsnorm", [&] {
            std::vector<float> out((size_t)N * C), rstd(N), dx = dx0, dw = dw0;
            kl_rmsnorm_forward_cpu(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f);
            kl_rmsnorm_backward_cpu(dx.data(), dw.data(), g.data(), x.data(), w.data(), rstd.data(), N, C);
            return std::vector<std::vector<float>>{out, rstd, dx, dw};
        });
    }
    {  // q/k norm: N*(NH+2NKV)*HS = 49152
        const int N = 64, NH = 8, NKV = 2, HS = 64;
        const size_t R = (size_t)(NH + 2 * NKV) * HS;
        auto qkv = rn(N * R), g = rn(N * R), qw = rn(HS), kw = rn(HS);
        expect_same_with_1_and_4_threads("qknorm", [&] {
            std::vector<float> out(N * R), rstd((size_t)N * (NH + NKV)), d(N * R), dq(HS, 0.f), dk(HS, 0.f);
            kl_qknorm_forward_cpu(out.data(), rstd.data(), qkv.data(), qw.data(), kw.data(), N, NH, NKV, HS, 1e-6f);
            kl_qknorm_backward_cpu(d.data(), dq.data(), dk.data(), g.data(), qkv.data(), qw.data(), kw.data(),
                                   rstd.data(), N, NH, NKV, HS);
            return std::vector<std::vector<float>>{out, rstd, d, dq, dk};
        });
    }
    {  // rope: B*T*(NH+NKV)*HS = 81920; tables T*HS*8 = 32768
        const int B = 2, T = 64, NH = 8, NKV = 2, HS = 64;
        auto qkv = rn((size_t)B * T * (NH + 2 * NKV) * HS);
        kl_rope_scaling s = {KL_ROPE_SCALING_LLAMA3, 8.0, 1.0, 4.0, 32};
        expect_same_with_1_and_4_threads("rope", [&] {
            std::vector<float> c((size_t)T * HS / 2), sn(c.size()), y = qkv, d = qkv;
            EXPECT_EQ(kl_rope_freqs(c.data(), sn.data(), T, HS, 1e4, &s), KL_OK);
            kl_rope_forward_cpu(y.data(), c.data(), sn.data(), B, T, NH, NKV, HS);
            kl_rope_backward_cpu(d.data(), c.data(), sn.data(), B, T, NH, NKV, HS);
            return std::vector<std::vector<float>>{c, sn, y, d};
        });
    }
    {  // attention: B*NH*T*T*HS = 524288
        const int B = 2, T = 64, NH = 4, NKV = 2, HS = 16;
        auto qkv = rn((size_t)B * T * (NH + 2 * NKV) * HS), g = rn((size_t)B * T * NH * HS);
        expect_same_with_1_and_4_threads("attention", [&] {
            std::vector<float> out(g.size()), lse((size_t)B * NH * T), d(qkv.size());
            EXPECT_EQ(kl_attention_forward_cpu(out.data(), lse.data(), qkv.data(), B, T, NH, NKV, HS), KL_OK);
            EXPECT_EQ(kl_attention_backward_cpu(d.data(), g.data(), out.data(), lse.data(), qkv.data(), B, T, NH, NKV, HS),
                      KL_OK);
            return std::vector<std::vector<float>>{out, lse, d};
        });
    }
    {  // swiglu: N*F*8 = 40960
        const int N = 64, F = 80;
        auto gu = rn((size_t)N * 2 * F), g = rn((size_t)N * F);
        expect_same_with_1_and_4_threads("swiglu", [&] {
            std::vector<float> out((size_t)N * F), d((size_t)N * 2 * F);
            kl_swiglu_forward_cpu(out.data(), gu.data(), N, F);
            kl_swiglu_backward_cpu(d.data(), g.data(), gu.data(), N, F);
            return std::vector<std::vector<float>>{out, d};
        });
    }
    {  // matmul: N*IC*OC = 61440 (the BLAS path threads itself, deterministically for a fixed build)
        const int N = 32, IC = 40, OC = 48;
        auto x = rn((size_t)N * IC), w = rn((size_t)OC * IC), b = rn(OC), g = rn((size_t)N * OC);
        expect_same_with_1_and_4_threads("matmul", [&] {
            std::vector<float> out((size_t)N * OC), dx((size_t)N * IC), dw((size_t)OC * IC, 0.f), db(OC, 0.f);
            kl_matmul_forward_cpu(out.data(), x.data(), w.data(), b.data(), N, IC, OC);
            kl_matmul_backward_cpu(dx.data(), dw.data(), db.data(), g.data(), x.data(), w.data(), N, IC, OC);
            return std::vector<std::vector<float>>{out, dx, dw, db};
        });
    }
    {  // cross-entropy: N*V = 38400, with masked rows
        const int N = 64, V = 600;
        auto logits = rn((size_t)N * V);
        auto tgt = tokens(N, V, seed++, true);
        expect_same_with_1_and_4_threads("cross_entropy", [&] {
            std::vector<float> d(logits.size()), losses(N);
            double sum = kl_cross_entropy_cpu(d.data(), losses.data(), logits.data(), tgt.data(), N, V, 1e-4f, 1.0f / 55);
            return std::vector<std::vector<float>>{d, losses, {(float)sum, (float)(sum - (float)sum)}};
        });
    }
}
