// matmul_test.cc — the BF16 linear layer on the GPU (kernels/matmul_cuda.h) against the CPU reference
// (kernels/matmul.h) run on the same BF16-rounded inputs: forward with and without bias, dinp (overwrite),
// dw and dbias (accumulate), odd and tiny shapes, unaligned pointers, the own fallback kernel, the plan cache
// and bit-identical reruns; tuning files, and kiln's own Hopper GEMM as a remembered choice.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_common.h"
#include "device.h"
#include "gemm_sm90_cuda.h"
#include "matmul.h"
#include "matmul_cuda.h"
#include "test_util.h"

namespace {

// A device buffer of n elements of T, `offset` elements past a cudaMalloc'd (256-byte aligned) base, so tests
// can hand out deliberately misaligned pointers.
template <typename T>
struct DevBuf {
    char *base = nullptr;
    T *p = nullptr;
    size_t n = 0;
    DevBuf(size_t n_, size_t offset = 0) : n(n_) {
        if (cudaMalloc(&base, (n_ + offset + 1) * sizeof(T)) == cudaSuccess) p = (T *)base + offset;
    }
    ~DevBuf() { cudaFree(base); }
    void upload(const std::vector<T> &v) { ASSERT_EQ(cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess); }
    std::vector<T> download() const {
        std::vector<T> v(n);
        EXPECT_EQ(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
        return v;
    }
};

std::vector<kl_bf16> to_bf16(const std::vector<float> &v) {
    std::vector<kl_bf16> r(v.size());
    for (size_t i = 0; i < v.size(); i++) r[i] = kl_f32_to_bf16(v[i]);
    return r;
}
std::vector<float> to_f32(const std::vector<kl_bf16> &v) {
    std::vector<float> r(v.size());
    for (size_t i = 0; i < v.size(); i++) r[i] = kl_bf16_to_f32(v[i]);
    return r;
}
// Uniform in [-1, 1) and already representable in BF16, so the CPU reference sees exactly the GPU's inputs.
std::vector<float> bf16_uniform(size_t n, uint64_t seed) {
    std::vector<float> v = kltest::random_uniform(n, -1.f, 1.f, seed);
    for (float &x : v) x = kl_bf16_round(x);
    return v;
}
float max_abs(const std::vector<float> &v) {
    float m = 0.f;
    for (float x : v) m = std::max(m, std::fabs(x));
    return m;
}

// Error bound of an FP32 sum of k products each at most `mag` in size, accumulated in a different order on the
// two sides: every addition may round by 2^-24 relative (2^-23 with Hopper tensor cores' truncating adds), so
// |gpu - cpu| <= 2 * k * 2^-23 * mag; we allow 8x that (k * 2^-20 * mag) and a floor of 1e-6.
double accum_atol(int k, double mag) { return std::max(1e-6, (double)k * std::ldexp(1.0, -20) * mag); }

// BF16 outputs: the rounding of the output itself is at most half an ulp, 2^-9 relative; rtol = 2^-8 doubles it.
const double kBf16Rtol = std::ldexp(1.0, -8);

struct Shape {
    int N, IC, OC;
};

class GemmCtx {
   public:
    GemmCtx() {
        cudaMalloc(&ws_, KL_GEMM_WORKSPACE_BYTES);
        EXPECT_EQ(kl_gemm_ctx_create(&ctx_, ws_, KL_GEMM_WORKSPACE_BYTES), KL_OK) << kl_last_error();
    }
    ~GemmCtx() {
        kl_gemm_ctx_destroy(ctx_);
        cudaFree(ws_);
    }
    kl_gemm_ctx *get() { return ctx_; }

   private:
    void *ws_ = nullptr;
    kl_gemm_ctx *ctx_ = nullptr;
};

// One forward + backward on the GPU against the CPU reference; offset misaligns every device pointer by that
// many elements; fallback forces the own kernel.
void check_linear(const Shape &s, bool with_bias, size_t offset, bool fallback, const char *what) {
    const int N = s.N, IC = s.IC, OC = s.OC;
    const uint64_t seed = kltest::fresh_seed(what);
    std::vector<float> inp = bf16_uniform((size_t)N * IC, seed), w = bf16_uniform((size_t)OC * IC, seed + 1);
    std::vector<float> bias = bf16_uniform(OC, seed + 2), dout = bf16_uniform((size_t)N * OC, seed + 3);
    std::vector<float> dw0 = kltest::random_uniform((size_t)OC * IC, -1.f, 1.f, seed + 4);
    std::vector<float> db0 = kltest::random_uniform(OC, -1.f, 1.f, seed + 5);

    GemmCtx ctx;
    kl_gemm_ctx_force_fallback(ctx.get(), fallback);
    DevBuf<kl_bf16> d_inp(inp.size(), offset), d_w(w.size(), offset), d_bias(OC, offset), d_out((size_t)N * OC, offset);
    DevBuf<kl_bf16> d_dout(dout.size(), offset), d_dinp(inp.size(), offset);
    DevBuf<float> d_dw(dw0.size(), offset), d_db(OC, offset);
    d_inp.upload(to_bf16(inp));
    d_w.upload(to_bf16(w));
    d_bias.upload(to_bf16(bias));
    d_dout.upload(to_bf16(dout));
    d_dw.upload(dw0);
    d_db.upload(db0);
    // dinp is overwritten: fill it with garbage first so a missing write shows
    ASSERT_EQ(cudaMemset(d_dinp.p, 0x7f, inp.size() * sizeof(kl_bf16)), cudaSuccess);

    ASSERT_EQ(kl_matmul_forward_cuda(ctx.get(), d_out.p, d_inp.p, d_w.p, with_bias ? d_bias.p : nullptr, N, IC, OC,
                                     nullptr), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_matmul_backward_cuda(ctx.get(), d_dinp.p, d_dw.p, with_bias ? d_db.p : nullptr, d_dout.p, d_inp.p,
                                      d_w.p, N, IC, OC, nullptr), KL_OK) << kl_last_error();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

    std::vector<float> out_ref((size_t)N * OC), dinp_ref(inp.size()), dw_ref = dw0, db_ref = db0;
    kl_matmul_forward_cpu(out_ref.data(), inp.data(), w.data(), with_bias ? bias.data() : nullptr, N, IC, OC);
    kl_matmul_backward_cpu(dinp_ref.data(), dw_ref.data(), with_bias ? db_ref.data() : nullptr, dout.data(), inp.data(),
                           w.data(), N, IC, OC);

    const double mi = max_abs(inp), mw = max_abs(w), md = max_abs(dout);
    std::string rep;
    std::vector<float> out = to_f32(d_out.download());
    EXPECT_TRUE(kltest::all_close(out.data(), out_ref.data(), out.size(), kBf16Rtol, accum_atol(IC, mi * mw), &rep))
        << what << " forward: " << rep;
    std::vector<float> dinp = to_f32(d_dinp.download());
    EXPECT_TRUE(kltest::all_close(dinp.data(), dinp_ref.data(), dinp.size(), kBf16Rtol, accum_atol(OC, md * mw), &rep))
        << what << " dinp: " << rep;
    // dw and dbias stay FP32: only the summation order differs (plus one rounding of the += itself)
    std::vector<float> dw = d_dw.download();
    EXPECT_TRUE(kltest::all_close(dw.data(), dw_ref.data(), dw.size(), 1e-6, accum_atol(N, md * mi), &rep))
        << what << " dw: " << rep;
    std::vector<float> db = d_db.download();
    if (with_bias) {
        EXPECT_TRUE(kltest::all_close(db.data(), db_ref.data(), db.size(), 1e-6, accum_atol(N, md), &rep))
            << what << " dbias: " << rep;
    } else {
        EXPECT_EQ(0, memcmp(db.data(), db0.data(), db.size() * sizeof(float))) << "dbias touched although NULL";
    }
}

}  // namespace

TEST(MatmulCuda, ForwardBackwardMatchCpuWithBias) {
    SKIP_WITHOUT_GPU();
    check_linear({256, 320, 192}, true, 0, false, "matmul 256x320x192 bias");
}

TEST(MatmulCuda, ForwardBackwardMatchCpuWithoutBias) {
    SKIP_WITHOUT_GPU();
    check_linear({128, 896, 160}, false, 0, false, "matmul 128x896x160");
}

TEST(MatmulCuda, OddShapesMatchCpu) {
    SKIP_WITHOUT_GPU();
    check_linear({37, 45, 29}, true, 0, false, "matmul odd 37x45x29 bias");
    check_linear({1, 7, 3}, false, 0, false, "matmul tiny 1x7x3");
    check_linear({129, 1, 67}, true, 0, false, "matmul IC=1");
}

TEST(MatmulCuda, DbiasVectorPathEdgesMatchCpu) {
    SKIP_WITHOUT_GPU();
    // OC a multiple of 8 with aligned pointers takes the 8-column path of the bias gradient: one split that adds
    // straight into dbias (N <= 64) with a last column block holding one vector, and many splits (N = 1000)
    check_linear({40, 24, 264}, true, 0, false, "matmul dbias one split 40x24x264");
    check_linear({1000, 16, 2056}, true, 0, false, "matmul dbias splits 1000x16x2056");
}

TEST(MatmulCuda, MisalignedPointersMatchCpu) {
    SKIP_WITHOUT_GPU();
    // one element past a 256-byte boundary: 2-byte aligned BF16, 4-byte aligned FP32
    check_linear({64, 72, 40}, true, 1, false, "matmul misaligned 64x72x40");
}

TEST(MatmulCuda, OwnFallbackKernelMatchesCpu) {
    SKIP_WITHOUT_GPU();
    check_linear({70, 100, 50}, true, 0, true, "matmul fallback 70x100x50 bias");
    check_linear({33, 64, 65}, false, 1, true, "matmul fallback misaligned 33x64x65");
}

TEST(MatmulCuda, DwAccumulatesAcrossCalls) {
    SKIP_WITHOUT_GPU();
    const int N = 96, IC = 80, OC = 48;
    const uint64_t seed = kltest::fresh_seed("matmul dw accumulation");
    std::vector<float> inp = bf16_uniform((size_t)N * IC, seed), w = bf16_uniform((size_t)OC * IC, seed + 1);
    std::vector<float> dout = bf16_uniform((size_t)N * OC, seed + 2);
    std::vector<float> dw0 = kltest::random_uniform((size_t)OC * IC, -1.f, 1.f, seed + 3);
    GemmCtx ctx;
    DevBuf<kl_bf16> d_inp(inp.size()), d_w(w.size()), d_dout(dout.size());
    DevBuf<float> d_dw(dw0.size());
    d_inp.upload(to_bf16(inp));
    d_w.upload(to_bf16(w));
    d_dout.upload(to_bf16(dout));
    d_dw.upload(dw0);
    for (int rep = 0; rep < 3; rep++)
        ASSERT_EQ(kl_matmul_backward_cuda(ctx.get(), nullptr, d_dw.p, nullptr, d_dout.p, d_inp.p, d_w.p, N, IC, OC,
                                          nullptr), KL_OK) << kl_last_error();
    std::vector<float> ref = dw0;
    for (int rep = 0; rep < 3; rep++)
        kl_matmul_backward_cpu(nullptr, ref.data(), nullptr, dout.data(), inp.data(), w.data(), N, IC, OC);
    std::vector<float> dw = d_dw.download();
    std::string rep;
    // three accumulations: three times the single-call bound
    EXPECT_TRUE(kltest::all_close(dw.data(), ref.data(), dw.size(), 3e-6, 3 * accum_atol(N, 1.0), &rep)) << rep;
    // and the result really moved by 3x one gradient (not 1x: beta = 0 would overwrite)
    double moved = 0, expect = 0;
    for (size_t i = 0; i < dw.size(); i++) {
        moved += std::fabs(dw[i] - dw0[i]);
        expect += std::fabs(ref[i] - dw0[i]);
    }
    EXPECT_NEAR(moved / expect, 1.0, 1e-3);
}

TEST(MatmulCuda, RerunsAreBitIdenticalAndPlansAreCached) {
    SKIP_WITHOUT_GPU();
    const int N = 300, IC = 256, OC = 384;
    const uint64_t seed = kltest::fresh_seed("matmul determinism");
    std::vector<float> inp = bf16_uniform((size_t)N * IC, seed), w = bf16_uniform((size_t)OC * IC, seed + 1);
    std::vector<float> bias = bf16_uniform(OC, seed + 2), dout = bf16_uniform((size_t)N * OC, seed + 3);
    GemmCtx ctx;
    DevBuf<kl_bf16> d_inp(inp.size()), d_w(w.size()), d_bias(OC), d_out((size_t)N * OC), d_dout(dout.size()),
        d_dinp(inp.size());
    DevBuf<float> d_dw((size_t)OC * IC), d_db(OC);
    d_inp.upload(to_bf16(inp));
    d_w.upload(to_bf16(w));
    d_bias.upload(to_bf16(bias));
    d_dout.upload(to_bf16(dout));
    std::vector<kl_bf16> out[2], dinp[2];
    std::vector<float> dw[2], db[2];
    for (int r = 0; r < 2; r++) {
        ASSERT_EQ(cudaMemset(d_dw.p, 0, d_dw.n * sizeof(float)), cudaSuccess);
        ASSERT_EQ(cudaMemset(d_db.p, 0, d_db.n * sizeof(float)), cudaSuccess);
        ASSERT_EQ(kl_matmul_forward_cuda(ctx.get(), d_out.p, d_inp.p, d_w.p, d_bias.p, N, IC, OC, nullptr), KL_OK);
        ASSERT_EQ(kl_matmul_backward_cuda(ctx.get(), d_dinp.p, d_dw.p, d_db.p, d_dout.p, d_inp.p, d_w.p, N, IC, OC,
                                          nullptr), KL_OK);
        out[r] = d_out.download();
        dinp[r] = d_dinp.download();
        dw[r] = d_dw.download();
        db[r] = d_db.download();
    }
    EXPECT_EQ(0, memcmp(out[0].data(), out[1].data(), out[0].size() * sizeof(kl_bf16)));
    EXPECT_EQ(0, memcmp(dinp[0].data(), dinp[1].data(), dinp[0].size() * sizeof(kl_bf16)));
    EXPECT_EQ(0, memcmp(dw[0].data(), dw[1].data(), dw[0].size() * sizeof(float)));
    EXPECT_EQ(0, memcmp(db[0].data(), db[1].data(), db[0].size() * sizeof(float)));
    // three distinct products (forward, dinp, dw), each planned once and then found in the cache
    kl_gemm_stats st = kl_gemm_ctx_stats(ctx.get());
    EXPECT_EQ(st.cache_misses, 3);
    EXPECT_EQ(st.cache_hits, 3);
    EXPECT_EQ(st.cublaslt_calls + st.fallback_calls, 6);
}

TEST(MatmulCuda, RejectsNegativeSizesWithMessage) {
    SKIP_WITHOUT_GPU();
    GemmCtx ctx;
    EXPECT_EQ(kl_matmul_forward_cuda(ctx.get(), nullptr, nullptr, nullptr, nullptr, -1, 4, 4, nullptr), KL_ERR_INVALID);
    EXPECT_NE(std::string(kl_last_error()).find("N=-1"), std::string::npos) << kl_last_error();
}

// Timing: a product timed in a context that is timing still computes the right output (the chosen candidate's
// last run is the real call), the choice is saved to a tuning file, and a fresh context that loads it plans the
// same algorithm without timing: its output equals the first context's bit for bit. Saving keeps other devices'
// lines; malformed files are refused with the line number.
TEST(MatmulCuda, TimedChoiceIsCorrectRememberedAndReloaded) {
    SKIP_WITHOUT_GPU();
    const int N = 1024, IC = 768, OC = 1536;  // large enough that cuBLASLt offers several candidates
    const uint64_t seed = kltest::fresh_seed("matmul tuning");
    std::vector<float> inp = bf16_uniform((size_t)N * IC, seed), w = bf16_uniform((size_t)OC * IC, seed + 1);
    DevBuf<kl_bf16> d_inp(inp.size()), d_w(w.size()), d_out((size_t)N * OC);
    d_inp.upload(to_bf16(inp));
    d_w.upload(to_bf16(w));
    const std::string dir = kltest::make_temp_dir("gemm_tune"), file = dir + "/tune.txt";
    // another device's line, which a save must keep
    const std::string foreign = "Some Other GPU, sm_80, 108 SMs, cuBLASLt 1, workspace 0\t"
                                "1 0 8 8 8 8 8 8 0 0 0 16 16 16 0\t3\n";
    {
        FILE *f = fopen(file.c_str(), "w");
        ASSERT_NE(f, nullptr);
        fprintf(f, "kiln gemm tuning v1\n%s", foreign.c_str());
        fclose(f);
    }
    std::vector<kl_bf16> out[2];
    for (int c = 0; c < 2; c++) {
        GemmCtx ctx;
        int loaded = -1;
        ASSERT_EQ(kl_gemm_ctx_load_tuning(ctx.get(), file.c_str(), &loaded), KL_OK) << kl_last_error();
        EXPECT_EQ(loaded, c) << "the first context finds only the foreign line, the second its own choice";
        kl_gemm_ctx_set_timing(ctx.get(), 1);
        ASSERT_EQ(kl_matmul_forward_cuda(ctx.get(), d_out.p, d_inp.p, d_w.p, nullptr, N, IC, OC, nullptr), KL_OK)
            << kl_last_error();
        out[c] = d_out.download();
        EXPECT_EQ(kl_gemm_ctx_stats(ctx.get()).timed_shapes, c == 0 ? 1 : 0) << "context " << c;
        if (c == 0) {
            ASSERT_EQ(kl_gemm_ctx_save_tuning(ctx.get(), file.c_str()), KL_OK) << kl_last_error();
        }
    }
    std::vector<float> ref((size_t)N * OC);
    kl_matmul_forward_cpu(ref.data(), inp.data(), w.data(), nullptr, N, IC, OC);
    std::string rep;
    std::vector<float> got = to_f32(out[0]);
    EXPECT_TRUE(kltest::all_close(got.data(), ref.data(), got.size(), kBf16Rtol, accum_atol(IC, 1.0), &rep)) << rep;
    EXPECT_EQ(0, memcmp(out[0].data(), out[1].data(), out[0].size() * sizeof(kl_bf16)));
    const std::string text = kltest::read_file(file);
    EXPECT_EQ(text.rfind("kiln gemm tuning v1\n", 0), 0u) << text;
    EXPECT_NE(text.find(foreign), std::string::npos) << "the other device's line was lost:\n" << text;

    // malformed: a bad line names the file and line; a file of something else is refused at line 1
    const std::string bad = dir + "/bad.txt", other = dir + "/other.txt";
    {
        FILE *f = fopen(bad.c_str(), "w");
        fprintf(f, "kiln gemm tuning v1\n%sgarbage without tabs\n", foreign.c_str());
        fclose(f);
        f = fopen(other.c_str(), "w");
        fprintf(f, "model:\n  arch: qwen2\n");
        fclose(f);
    }
    GemmCtx ctx;
    EXPECT_EQ(kl_gemm_ctx_load_tuning(ctx.get(), bad.c_str(), nullptr), KL_ERR_INVALID);
    EXPECT_NE(std::string(kl_last_error()).find("bad.txt:3:"), std::string::npos) << kl_last_error();
    EXPECT_EQ(kl_gemm_ctx_load_tuning(ctx.get(), other.c_str(), nullptr), KL_ERR_INVALID);
    EXPECT_NE(std::string(kl_last_error()).find("other.txt:1: not a kiln GEMM tuning file"), std::string::npos)
        << kl_last_error();
    int loaded = -1;
    EXPECT_EQ(kl_gemm_ctx_load_tuning(ctx.get(), (dir + "/missing.txt").c_str(), &loaded), KL_OK);
    EXPECT_EQ(loaded, 0);
}

// kiln's own Hopper GEMM as a tuning choice: two forward products (with and without bias) are timed and saved,
// then every choice in the file is rewritten to the own kernel's rank (8). A fresh context that loads the file
// runs the product without bias on the own kernel (where the device has it): the output matches the CPU and, bit
// for bit, the kernel called directly. The product with bias, which the own kernel cannot compute, keeps to
// cuBLASLt's first choice and stays correct.
TEST(MatmulCuda, OwnHopperGemmRunsAsRememberedChoice) {
    SKIP_WITHOUT_GPU();
    const int N = 640, IC = 768, OC = 1536;  // N not a multiple of the 128-row tile
    const uint64_t seed = kltest::fresh_seed("matmul sm90 choice");
    std::vector<float> inp = bf16_uniform((size_t)N * IC, seed), w = bf16_uniform((size_t)OC * IC, seed + 1);
    std::vector<float> bias = bf16_uniform(OC, seed + 2);
    DevBuf<kl_bf16> d_inp(inp.size()), d_w(w.size()), d_bias(OC), d_out((size_t)N * OC), d_ref((size_t)N * OC);
    d_inp.upload(to_bf16(inp));
    d_w.upload(to_bf16(w));
    d_bias.upload(to_bf16(bias));
    const std::string dir = kltest::make_temp_dir("gemm_sm90_choice"), file = dir + "/tune.txt";
    {
        GemmCtx ctx;
        kl_gemm_ctx_set_timing(ctx.get(), 1);
        ASSERT_EQ(kl_matmul_forward_cuda(ctx.get(), d_out.p, d_inp.p, d_w.p, nullptr, N, IC, OC, nullptr), KL_OK)
            << kl_last_error();
        ASSERT_EQ(kl_matmul_forward_cuda(ctx.get(), d_out.p, d_inp.p, d_w.p, d_bias.p, N, IC, OC, nullptr), KL_OK)
            << kl_last_error();
        ASSERT_EQ(kl_gemm_ctx_save_tuning(ctx.get(), file.c_str()), KL_OK) << kl_last_error();
    }
    std::string text = kltest::read_file(file), rewritten;
    int lines = 0;
    for (size_t at = text.find('\n') + 1, end; at < text.size(); at = end + 1, lines++) {
        end = text.find('\n', at);
        const size_t tab = text.rfind('\t', end);
        rewritten += text.substr(at, tab + 1 - at) + "8\n";
    }
    ASSERT_EQ(lines, 2) << text;
    kltest::write_file(file, "kiln gemm tuning v1\n" + rewritten);

    GemmCtx ctx;
    int loaded = -1;
    ASSERT_EQ(kl_gemm_ctx_load_tuning(ctx.get(), file.c_str(), &loaded), KL_OK) << kl_last_error();
    EXPECT_EQ(loaded, 2);
    const bool sm90 = kl_gemm_sm90_available();
    ASSERT_EQ(kl_matmul_forward_cuda(ctx.get(), d_out.p, d_inp.p, d_w.p, nullptr, N, IC, OC, nullptr), KL_OK)
        << kl_last_error();
    std::vector<kl_bf16> got = d_out.download();
    kl_gemm_stats st = kl_gemm_ctx_stats(ctx.get());
    EXPECT_EQ(st.sm90_shapes, sm90 ? 1 : 0);
    EXPECT_EQ(st.sm90_calls, sm90 ? 1 : 0);
    EXPECT_EQ(st.cublaslt_calls, sm90 ? 0 : 1);
    std::vector<float> ref((size_t)N * OC);
    kl_matmul_forward_cpu(ref.data(), inp.data(), w.data(), nullptr, N, IC, OC);
    std::string rep;
    std::vector<float> gotf = to_f32(got);
    EXPECT_TRUE(kltest::all_close(gotf.data(), ref.data(), gotf.size(), kBf16Rtol, accum_atol(IC, 1.0), &rep)) << rep;
    if (sm90) {
        ASSERT_EQ(kl_gemm_sm90_cuda(d_ref.p, d_inp.p, d_w.p, N, OC, IC, nullptr), KL_OK) << kl_last_error();
        std::vector<kl_bf16> direct = d_ref.download();
        EXPECT_EQ(0, memcmp(got.data(), direct.data(), got.size() * sizeof(kl_bf16)));
    }

    ASSERT_EQ(kl_matmul_forward_cuda(ctx.get(), d_out.p, d_inp.p, d_w.p, d_bias.p, N, IC, OC, nullptr), KL_OK)
        << kl_last_error();
    st = kl_gemm_ctx_stats(ctx.get());
    EXPECT_EQ(st.sm90_shapes, sm90 ? 1 : 0) << "the product with bias cannot run on the own kernel";
    EXPECT_EQ(st.remembered_shapes, sm90 ? 1 : 0) << "a choice of the own kernel where it cannot run does not hold";
    gotf = to_f32(d_out.download());
    kl_matmul_forward_cpu(ref.data(), inp.data(), w.data(), bias.data(), N, IC, OC);
    EXPECT_TRUE(kltest::all_close(gotf.data(), ref.data(), gotf.size(), kBf16Rtol, accum_atol(IC, 1.0), &rep))
        << rep;

    // KILN_GEMM_SM90=0 sets the own kernel aside: its remembered choice does not hold, so a timing context times
    // the product again and its saved choice replaces the old one (one line per shape still)
    setenv("KILN_GEMM_SM90", "0", 1);
    GemmCtx off;
    unsetenv("KILN_GEMM_SM90");
    ASSERT_EQ(kl_gemm_ctx_load_tuning(off.get(), file.c_str(), &loaded), KL_OK) << kl_last_error();
    kl_gemm_ctx_set_timing(off.get(), 1);
    ASSERT_EQ(kl_matmul_forward_cuda(off.get(), d_out.p, d_inp.p, d_w.p, nullptr, N, IC, OC, nullptr), KL_OK)
        << kl_last_error();
    st = kl_gemm_ctx_stats(off.get());
    EXPECT_EQ(st.sm90_shapes, 0);
    EXPECT_EQ(st.timed_shapes, 1);
    gotf = to_f32(d_out.download());
    kl_matmul_forward_cpu(ref.data(), inp.data(), w.data(), nullptr, N, IC, OC);
    EXPECT_TRUE(kltest::all_close(gotf.data(), ref.data(), gotf.size(), kBf16Rtol, accum_atol(IC, 1.0), &rep)) << rep;
    ASSERT_EQ(kl_gemm_ctx_save_tuning(off.get(), file.c_str()), KL_OK) << kl_last_error();
    text = kltest::read_file(file);
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;
    size_t own_lines = 0;
    for (size_t at = text.find("\t8\n"); at != std::string::npos; at = text.find("\t8\n", at + 1)) own_lines++;
    // the product without bias got a cuBLASLt choice; the bias line, not run here, was kept as it was
    EXPECT_EQ(own_lines, 1u) << text;
}
