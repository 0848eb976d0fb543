// attention_test.cc — causal GQA attention on the GPU (kernels/attention_cuda.h) against the CPU reference
// (kernels/attention.h) on BF16-rounded inputs: forward (out, lse) and backward (dqkv) for the tensor-core path
// (HS 64 and 128, padded HS 40 and 96), the simple path (HS 36, 256, and forced), cuDNN's forward when it is
// available, odd T and GQA groups; every dqkv element written; bit-identical reruns.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "attention.h"
#include "attention_cuda.h"
#include "cuda_common.h"
#include "device.h"
#include "test_util.h"

namespace {

template <typename T>
struct DevBuf {
    T *p = nullptr;
    size_t n = 0;
    explicit DevBuf(size_t n_) : n(n_) {
        if (cudaMalloc(&p, (n_ ? n_ : 1) * sizeof(T)) != cudaSuccess) p = nullptr;
    }
    ~DevBuf() { cudaFree(p); }
    void upload(const std::vector<T> &v) {
        ASSERT_EQ(cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    }
    std::vector<T> download() const {
        std::vector<T> v(n);
        EXPECT_EQ(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
        return v;
    }
};

struct Shape {
    int B, T, NH, NKV, HS;
};

std::string name(const Shape &s) {
    char buf[96];
    snprintf(buf, sizeof buf, "B=%d T=%d NH=%d NKV=%d HS=%d", s.B, s.T, s.NH, s.NKV, s.HS);
    return buf;
}

std::vector<float> bf16_normal(size_t n, uint64_t seed) {
    std::vector<float> v = kltest::random_normal(n, 1.f, seed);
    for (float &x : v) x = kl_bf16_round(x);
    return v;
}
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
double max_abs(const float *v, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = std::max(m, (double)std::fabs(v[i]));
    return m;
}

// Everything one run produces, as host vectors.
struct Result {
    std::vector<kl_bf16> out, dqkv;
    std::vector<float> lse;
    std::string fwd_backend, bwd_backend, note;
};

// Forward, then (if with_backward) backward on fresh device buffers; dqkv is prefilled with garbage so an element
// the kernels forget to write shows up.
Result run_gpu(kl_attn_backend backend, const Shape &s, const std::vector<float> &qkv, const std::vector<float> &dout,
               bool with_backward) {
    Result r;
    const size_t nqkv = (size_t)s.B * s.T * (s.NH + 2 * s.NKV) * s.HS, nout = (size_t)s.B * s.T * s.NH * s.HS;
    kl_attention_ctx *ctx = nullptr;
    EXPECT_EQ(kl_attention_ctx_create(&ctx, backend), KL_OK) << kl_last_error();
    if (!ctx) return r;
    const size_t ws_bytes = kl_attention_workspace_bytes(ctx, s.B, s.T, s.NH, s.NKV, s.HS);
    DevBuf<char> ws(ws_bytes);
    DevBuf<kl_bf16> d_qkv(nqkv), d_out(nout), d_dout(nout), d_dqkv(nqkv);
    DevBuf<float> d_lse((size_t)s.B * s.NH * s.T);
    d_qkv.upload(to_bf16(qkv));
    EXPECT_EQ(kl_attention_forward_cuda(ctx, d_out.p, d_lse.p, d_qkv.p, s.B, s.T, s.NH, s.NKV, s.HS, ws.p, ws_bytes,
                                        nullptr), KL_OK) << kl_last_error();
    r.fwd_backend = kl_attention_ctx_last_backend(ctx);
    r.note = kl_attention_ctx_cudnn_note(ctx);
    if (with_backward) {
        d_dout.upload(to_bf16(dout));
        EXPECT_EQ(cudaMemset(d_dqkv.p, 0x7f, nqkv * sizeof(kl_bf16)), cudaSuccess);
        EXPECT_EQ(kl_attention_backward_cuda(ctx, d_dqkv.p, d_dout.p, d_out.p, d_lse.p, d_qkv.p, s.B, s.T, s.NH, s.NKV,
                                             s.HS, ws.p, ws_bytes, nullptr), KL_OK) << kl_last_error();
        r.bwd_backend = kl_attention_ctx_last_backend(ctx);
    }
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    r.out = d_out.download();
    r.lse = d_lse.download();
    if (with_backward) r.dqkv = d_dqkv.download();
    kl_attention_ctx_destroy(ctx);
    return r;
}

// Tolerances (inputs are BF16 already, so the CPU reference sees exactly what the GPU sees):
//  out: the output's own BF16 rounding (2^-9 relative) -> rtol 2^-8; the tensor-core paths also round P to BF16
//       before P V, an error of at most 2^-9 * sum_j p_j |v_j| <= 2^-9 max|v| -> atol 2^-8 max|v|.
//  lse: FP32 scores (exact BF16 products, FP32 sums) and an FP32 row sum over <= T terms: relative error of the sum
//       ~ T 2^-24 (< 2e-5 here), which is also lse's absolute error -> atol 1e-4.
//  dqkv: BF16 outputs (2^-9) built from BF16-rounded P and dS (2^-9 per term, random in sign): about 2^-9..2^-8 in
//       norm; we require, per part (q, k, v), a norm error <= 2^-6 of the part's norm and, element-wise, 2^-6
//       relative plus 2^-6 of the largest gradient element (terms of either sign make single elements less accurate
//       than the norm). A part can vanish by cancellation — at T = 1, P = 1 and dS = dP - D = 0, so dq = dk = 0
//       exactly while the GPU keeps FP32 round-off — so both scales are floored by the gradient as a whole (the largest
//       element of dqkv; 1/16 of its rms size for the norm): all parts are sums of terms of the same size (p dout
//       for dv, scale p (dp - D) q|k for dk|dq).
void check_forward(const Shape &s, const Result &r, const std::vector<float> &out_ref, const std::vector<float> &lse_ref,
                   const std::vector<float> &qkv) {
    const std::vector<float> out = to_f32(r.out);
    double max_v = 0;
    const size_t row = (size_t)(s.NH + 2 * s.NKV) * s.HS;
    for (size_t p = 0; p < (size_t)s.B * s.T; p++)
        max_v = std::max(max_v, max_abs(qkv.data() + p * row + (size_t)(s.NH + s.NKV) * s.HS, (size_t)s.NKV * s.HS));
    std::string rep;
    EXPECT_TRUE(kltest::all_close(out.data(), out_ref.data(), out.size(), std::ldexp(1.0, -8), std::ldexp(max_v, -8),
                                  &rep))
        << name(s) << " [" << r.fwd_backend << "] out: " << rep;
    EXPECT_LE(kltest::rel_l2(out.data(), out_ref.data(), out.size()), std::ldexp(1.0, -7)) << name(s);
    EXPECT_TRUE(kltest::all_close(r.lse.data(), lse_ref.data(), lse_ref.size(), 1e-5, 1e-4, &rep))
        << name(s) << " [" << r.fwd_backend << "] lse: " << rep;
}

void check_backward(const Shape &s, const Result &r, const std::vector<float> &dqkv_ref) {
    const std::vector<float> dqkv = to_f32(r.dqkv);
    const size_t row = (size_t)(s.NH + 2 * s.NKV) * s.HS, npos = (size_t)s.B * s.T;
    const size_t off[4] = {0, (size_t)s.NH * s.HS, (size_t)(s.NH + s.NKV) * s.HS, row};
    const char *part_name[3] = {"dq", "dk", "dv"};
    const double max_all = max_abs(dqkv_ref.data(), dqkv_ref.size());
    double ss_all = 0;
    for (float x : dqkv_ref) ss_all += (double)x * x;
    const double rms_all = std::sqrt(ss_all / (double)dqkv_ref.size());
    for (int part = 0; part < 3; part++) {
        const size_t w = off[part + 1] - off[part];
        std::vector<float> g, ref;
        g.reserve(npos * w);
        ref.reserve(npos * w);
        for (size_t p = 0; p < npos; p++)
            for (size_t i = 0; i < w; i++) {
                g.push_back(dqkv[p * row + off[part] + i]);
                ref.push_back(dqkv_ref[p * row + off[part] + i]);
            }
        std::string rep;
        EXPECT_TRUE(kltest::all_close(g.data(), ref.data(), g.size(), std::ldexp(1.0, -6), std::ldexp(max_all, -6), &rep))
            << name(s) << " [" << r.bwd_backend << "] " << part_name[part] << ": " << rep;
        double err = 0, nrm = 0;
        for (size_t i = 0; i < g.size(); i++) {
            err += ((double)g[i] - ref[i]) * ((double)g[i] - ref[i]);
            nrm += (double)ref[i] * ref[i];
        }
        const double scale = std::max(std::sqrt(nrm), rms_all * std::sqrt((double)g.size()) / 16);
        EXPECT_LE(std::sqrt(err), std::ldexp(scale, -6))
            << name(s) << " [" << r.bwd_backend << "] " << part_name[part] << " norm error vs norm " << std::sqrt(nrm);
    }
}

// Runs `backend` on fresh inputs, checks forward and (optionally) backward against the CPU reference and returns
// the GPU result for further checks.
Result check_against_cpu(kl_attn_backend backend, const Shape &s, bool with_backward, const char *expect_backend) {
    const uint64_t seed = kltest::fresh_seed(("attention " + name(s)).c_str());
    const size_t nqkv = (size_t)s.B * s.T * (s.NH + 2 * s.NKV) * s.HS, nout = (size_t)s.B * s.T * s.NH * s.HS;
    std::vector<float> qkv = bf16_normal(nqkv, seed), dout = bf16_normal(nout, seed + 1);
    Result r = run_gpu(backend, s, qkv, dout, with_backward);
    if (r.out.empty()) return r;
    if (expect_backend) {
        EXPECT_EQ(r.fwd_backend, expect_backend) << name(s) << " note: " << r.note;
    }
    std::vector<float> out_ref(nout), lse_ref((size_t)s.B * s.NH * s.T);
    EXPECT_EQ(kl_attention_forward_cpu(out_ref.data(), lse_ref.data(), qkv.data(), s.B, s.T, s.NH, s.NKV, s.HS), KL_OK);
    check_forward(s, r, out_ref, lse_ref, qkv);
    if (with_backward) {
        if (expect_backend) {
            EXPECT_EQ(r.bwd_backend, expect_backend) << name(s);
        }
        // the reference backward starts from the GPU's own forward results, as the GPU backward does
        std::vector<float> out_gpu = to_f32(r.out), dqkv_ref(nqkv);
        EXPECT_EQ(kl_attention_backward_cpu(dqkv_ref.data(), dout.data(), out_gpu.data(), r.lse.data(), qkv.data(),
                                            s.B, s.T, s.NH, s.NKV, s.HS), KL_OK);
        check_backward(s, r, dqkv_ref);
    }
    return r;
}

}  // namespace

TEST(AttentionCuda, TensorCorePathMatchesCpuHs64Gqa) {
    SKIP_WITHOUT_GPU();
    check_against_cpu(KL_ATTN_OWN, {2, 77, 4, 2, 64}, true, "own-mma");
    check_against_cpu(KL_ATTN_OWN, {1, 64, 2, 2, 64}, true, "own-mma");  // one exact tile, plain MHA
}

TEST(AttentionCuda, TensorCorePathMatchesCpuHs128OddT) {
    SKIP_WITHOUT_GPU();
    check_against_cpu(KL_ATTN_OWN, {1, 130, 6, 2, 128}, true, "own-mma");
    check_against_cpu(KL_ATTN_OWN, {2, 1, 2, 1, 128}, true, "own-mma");  // T = 1
}

TEST(AttentionCuda, TensorCorePathMatchesCpuPaddedHeadSizes) {
    SKIP_WITHOUT_GPU();
    check_against_cpu(KL_ATTN_OWN, {2, 45, 3, 1, 40}, true, "own-mma");  // padded to 64
    check_against_cpu(KL_ATTN_OWN, {1, 100, 4, 1, 96}, true, "own-mma");  // padded to 128
}

TEST(AttentionCuda, TensorCorePathMatchesCpuQwenHeads) {
    SKIP_WITHOUT_GPU();
    check_against_cpu(KL_ATTN_OWN, {2, 300, 14, 2, 64}, true, "own-mma");  // Qwen2.5-0.5B's heads, several tiles
}

TEST(AttentionCuda, SimplePathMatchesCpuAnyHeadSize) {
    SKIP_WITHOUT_GPU();
    check_against_cpu(KL_ATTN_OWN, {1, 50, 4, 2, 36}, true, "own-simple");    // HS % 8 != 0
    check_against_cpu(KL_ATTN_OWN, {1, 33, 2, 1, 256}, true, "own-simple");   // HS = 256
    check_against_cpu(KL_ATTN_OWN_SIMPLE, {2, 70, 4, 2, 64}, true, "own-simple");
}

TEST(AttentionCuda, AutoBackendMatchesCpu) {
    SKIP_WITHOUT_GPU();
    // whatever AUTO picks (cuDNN's forward when available) must match the reference
    Result r = check_against_cpu(KL_ATTN_AUTO, {2, 77, 4, 2, 64}, true, nullptr);
    std::printf("[ INFO ] AUTO ran forward on %s, backward on %s; cuDNN note: %s\n", r.fwd_backend.c_str(),
                r.bwd_backend.c_str(), r.note.empty() ? "(none)" : r.note.c_str());
    check_against_cpu(KL_ATTN_AUTO, {1, 130, 6, 2, 128}, true, nullptr);
}

TEST(AttentionCuda, CudnnForwardMatchesCpu) {
    SKIP_WITHOUT_GPU();
    const Shape s = {2, 77, 4, 2, 64};
    const uint64_t seed = kltest::fresh_seed("attention cudnn probe");
    std::vector<float> qkv = bf16_normal((size_t)s.B * s.T * (s.NH + 2 * s.NKV) * s.HS, seed);
    Result probe = run_gpu(KL_ATTN_AUTO, s, qkv, {}, false);
    if (probe.fwd_backend != "cudnn") GTEST_SKIP() << "cuDNN forward not available: " << probe.note;
    check_against_cpu(KL_ATTN_CUDNN, s, false, "cudnn");
    check_against_cpu(KL_ATTN_CUDNN, {1, 130, 6, 2, 128}, false, "cudnn");
    check_against_cpu(KL_ATTN_CUDNN, {2, 45, 3, 1, 40}, false, "cudnn");
}

TEST(AttentionCuda, CudnnBackwardMatchesCpu) {
    SKIP_WITHOUT_GPU();
    const Shape s = {2, 77, 4, 2, 64};
    const uint64_t seed = kltest::fresh_seed("attention cudnn backward probe");
    const size_t nqkv = (size_t)s.B * s.T * (s.NH + 2 * s.NKV) * s.HS, nout = (size_t)s.B * s.T * s.NH * s.HS;
    Result probe = run_gpu(KL_ATTN_AUTO, s, bf16_normal(nqkv, seed), bf16_normal(nout, seed + 1), true);
    if (probe.bwd_backend != "cudnn") GTEST_SKIP() << "cuDNN backward not available: " << probe.note;
    check_against_cpu(KL_ATTN_CUDNN, s, true, "cudnn");
    check_against_cpu(KL_ATTN_CUDNN, {1, 130, 6, 2, 128}, true, "cudnn");   // odd T, HS = 128
    check_against_cpu(KL_ATTN_CUDNN, {2, 64, 4, 4, 64}, true, "cudnn");     // plain MHA: no head-group reduction
    check_against_cpu(KL_ATTN_CUDNN, {1, 300, 14, 2, 64}, true, "cudnn");   // Qwen2.5-0.5B's heads
}

TEST(AttentionCuda, CudnnBackwardIsBitIdenticalAtTrainingSize) {
    SKIP_WITHOUT_GPU();
    // large enough (B*NH*T/64 = 3584 query tiles) that an engine accumulating dQ with atomics would differ
    const Shape s = {4, 1024, 14, 2, 64};
    const uint64_t seed = kltest::fresh_seed("attention cudnn backward determinism");
    const size_t nqkv = (size_t)s.B * s.T * (s.NH + 2 * s.NKV) * s.HS, nout = (size_t)s.B * s.T * s.NH * s.HS;
    std::vector<float> qkv = bf16_normal(nqkv, seed), dout = bf16_normal(nout, seed + 1);
    Result a = run_gpu(KL_ATTN_AUTO, s, qkv, dout, true);
    if (a.bwd_backend != "cudnn") GTEST_SKIP() << "cuDNN backward not available: " << a.note;
    for (int rep = 0; rep < 3; rep++) {
        Result b = run_gpu(KL_ATTN_AUTO, s, qkv, dout, true);
        ASSERT_EQ(b.bwd_backend, "cudnn");
        EXPECT_EQ(0, memcmp(a.dqkv.data(), b.dqkv.data(), a.dqkv.size() * sizeof(kl_bf16))) << "rerun " << rep;
    }
}

TEST(AttentionCuda, RerunsAreBitIdentical) {
    SKIP_WITHOUT_GPU();
    const Shape s = {2, 150, 6, 2, 64};
    const uint64_t seed = kltest::fresh_seed("attention determinism");
    const size_t nqkv = (size_t)s.B * s.T * (s.NH + 2 * s.NKV) * s.HS, nout = (size_t)s.B * s.T * s.NH * s.HS;
    std::vector<float> qkv = bf16_normal(nqkv, seed), dout = bf16_normal(nout, seed + 1);
    for (kl_attn_backend be : {KL_ATTN_AUTO, KL_ATTN_OWN, KL_ATTN_OWN_SIMPLE}) {
        Result a = run_gpu(be, s, qkv, dout, true), b = run_gpu(be, s, qkv, dout, true);
        ASSERT_FALSE(a.out.empty());
        EXPECT_EQ(0, memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(kl_bf16))) << a.fwd_backend;
        EXPECT_EQ(0, memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float))) << a.fwd_backend;
        EXPECT_EQ(0, memcmp(a.dqkv.data(), b.dqkv.data(), a.dqkv.size() * sizeof(kl_bf16))) << a.bwd_backend;
    }
}

TEST(AttentionCuda, RejectsBadShapesWithMessage) {
    SKIP_WITHOUT_GPU();
    kl_attention_ctx *ctx = nullptr;
    ASSERT_EQ(kl_attention_ctx_create(&ctx, KL_ATTN_OWN), KL_OK);
    EXPECT_EQ(kl_attention_forward_cuda(ctx, nullptr, nullptr, nullptr, 1, 8, 6, 4, 64, nullptr, 0, nullptr),
              KL_ERR_INVALID);
    EXPECT_NE(std::string(kl_last_error()).find("NH=6 NKV=4"), std::string::npos) << kl_last_error();
    EXPECT_EQ(kl_attention_forward_cuda(ctx, nullptr, nullptr, nullptr, 1, 8, 2, 1, 260, nullptr, 0, nullptr),
              KL_ERR_UNSUPPORTED);
    kl_attention_ctx_destroy(ctx);
}
