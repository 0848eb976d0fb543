// bench_gemm.cu — kl_bench_gemm (kernels/bench_gemm.h): times the cuBLASLt linear layers at Qwen2.5-0.5B's and
// -1.5B's shapes (16384 tokens; forward, dinp and dw GEMMs each) and causal GQA attention forward/backward (B=16,
// T=1024; 14/2 heads of 64 and 12/2 heads of 128) through cuDNN (when it takes the shape) and the own kernels;
// reports TFLOP/s against the H200's measured 790 TFLOP/s BF16 dense bound. The GEMMs run with cuBLASLt's first
// choice and again with the timed choice (matmul_cuda.h, kl_gemm_ctx_set_timing), and on an sm_90 device the MLP
// gate+up product also by kiln's own Hopper GEMM, alone and with the SwiGLU forward fused. Inputs are random
// (zeros would run faster than real data).
#include <cuda_runtime.h>

#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

#include "attention_cuda.h"
#include "bench_gemm.h"
#include "cuda_check.cuh"
#include "device.h"
#include "gemm_sm90_cuda.h"
#include "matmul_cuda.h"
#include "philox.h"
#include "swiglu_cuda.h"

namespace {

constexpr double kBoundTflops = 790.0;  // H200 BF16 dense matmul, measured on this workplace's machines
constexpr double kBoundTbs = 4.3;       // H200 copy bandwidth, about what `kiln bench kernels` measures

// Uniform(-1, 1) BF16 from Philox, so every run times the same data.
__global__ void fill_uniform_bf16(uint16_t *p, size_t n, uint32_t key) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        kl_philox_ctr c = {{(uint32_t)i, (uint32_t)(i >> 32), 0u, 0u}};
        const kl_philox_ctr r = kl_philox4x32_10(c, key, 0x6b696c6eu);
        const float u = (float)(r.v[0] >> 8) * (1.0f / 8388608.0f) - 1.0f;
        p[i] = kl::f32_to_bf16(u);
    }
}

kl_status fill(kl_bf16 *p, size_t n, uint32_t key) {
    fill_uniform_bf16<<<1024, 256>>>(p, n, key);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

struct Timer {
    cudaEvent_t a = nullptr, b = nullptr;
    ~Timer() {
        if (a) cudaEventDestroy(a);
        if (b) cudaEventDestroy(b);
    }
};

// Mean milliseconds of `iters` calls after `warmup` untimed ones.
template <typename F>
kl_status time_ms(Timer &t, F &&f, int warmup, int iters, double *ms) {
    for (int i = 0; i < warmup; i++) KL_TRY(f());
    KL_CUDA_CHECK(cudaEventRecord(t.a));
    for (int i = 0; i < iters; i++) KL_TRY(f());
    KL_CUDA_CHECK(cudaEventRecord(t.b));
    KL_CUDA_CHECK(cudaEventSynchronize(t.b));
    float e = 0.f;
    KL_CUDA_CHECK(cudaEventElapsedTime(&e, t.a, t.b));
    *ms = e / iters;
    return KL_OK;
}

struct Report {
    FILE *out;
    std::vector<std::string> json;
    // A compute-bound row: `flop` against the BF16 matmul bound.
    void row(const char *kernel, const char *shape, double flop, double ms) {
        emit(kernel, shape, ms, flop / (ms * 1e-3) / 1e12, kBoundTflops, "TFLOP/s", "tflops", 1);
    }
    // A memory-bound row: `bytes` read and written, against the copy bound.
    void row_bytes(const char *kernel, const char *shape, double bytes, double ms) {
        emit(kernel, shape, ms, bytes / (ms * 1e-3) / 1e12, kBoundTbs, "TB/s", "tb_per_s", 2);
    }

  private:
    void emit(const char *kernel, const char *shape, double ms, double rate, double bound, const char *unit,
              const char *key, int decimals) {
        fprintf(out, "  %-34s %-40s %9.3f ms %8.*f %-7s  %5.1f%% of %g\n", kernel, shape, ms, decimals, rate, unit,
                100.0 * rate / bound, bound);
        char buf[512];
        snprintf(buf, sizeof buf,
                 "{\"bench\":\"gemm\",\"kernel\":\"%s\",\"shape\":\"%s\",\"ms\":%.5f,\"%s\":%.3f,"
                 "\"bound_%s\":%g,\"fraction\":%.4f}",
                 kernel, shape, ms, key, rate, key, bound, rate / bound);
        json.push_back(buf);
    }
};

template <typename T>
struct Dev {
    T *p = nullptr;
    ~Dev() { cudaFree(p); }
    kl_status alloc(size_t n) {
        KL_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
        return KL_OK;
    }
};

struct Linear {
    const char *name;
    int N, IC, OC;
    bool bias;
};

// `tag` follows each row's name: the contexts differ in how they choose algorithms.
kl_status bench_linear(Report &rep, kl_gemm_ctx *ctx, Timer &t, const Linear &L, const char *tag) {
    Dev<kl_bf16> inp, w, b, out, dout, dinp;
    Dev<float> dw;
    const size_t nin = (size_t)L.N * L.IC, nw = (size_t)L.OC * L.IC, nout = (size_t)L.N * L.OC;
    KL_TRY(inp.alloc(nin));
    KL_TRY(w.alloc(nw));
    KL_TRY(b.alloc((size_t)L.OC));
    KL_TRY(out.alloc(nout));
    KL_TRY(dout.alloc(nout));
    KL_TRY(dinp.alloc(nin));
    KL_TRY(dw.alloc(nw));
    KL_TRY(fill(inp.p, nin, 1));
    KL_TRY(fill(w.p, nw, 2));
    KL_TRY(fill(b.p, (size_t)L.OC, 3));
    KL_TRY(fill(dout.p, nout, 4));
    KL_CUDA_CHECK(cudaMemset(dw.p, 0, nw * sizeof(float)));
    const double flop = 2.0 * L.N * L.IC * L.OC;
    char shape[96];
    snprintf(shape, sizeof shape, "N=%d IC=%d OC=%d%s", L.N, L.IC, L.OC, L.bias ? " +bias" : "");
    double ms = 0;
    const kl_bf16 *bias = L.bias ? b.p : nullptr;
    const long long sm90_before = kl_gemm_ctx_stats(ctx).sm90_shapes;
    KL_TRY(time_ms(t, [&] { return kl_matmul_forward_cuda(ctx, out.p, inp.p, w.p, bias, L.N, L.IC, L.OC, nullptr); }, 3,
                   20, &ms));
    const bool sm90 = kl_gemm_ctx_stats(ctx).sm90_shapes > sm90_before;  // timing chose kiln's own kernel
    rep.row((std::string(L.name) + " fwd" + tag + (sm90 ? " sm90" : "")).c_str(), shape, flop, ms);
    KL_TRY(time_ms(t, [&] { return kl_matmul_backward_cuda(ctx, dinp.p, nullptr, nullptr, dout.p, inp.p, w.p, L.N, L.IC,
                                                          L.OC, nullptr); }, 3, 20, &ms));
    rep.row((std::string(L.name) + " dinp" + tag).c_str(), shape, flop, ms);
    KL_TRY(time_ms(t, [&] { return kl_matmul_backward_cuda(ctx, nullptr, dw.p, nullptr, dout.p, inp.p, w.p, L.N, L.IC,
                                                          L.OC, nullptr); }, 3, 20, &ms));
    rep.row((std::string(L.name) + " dw +=" + tag).c_str(), shape, flop, ms);
    return KL_OK;
}

// The MLP's gate+up product three ways: kiln's own Hopper GEMM (gemm_sm90_cuda.h) alone and with the SwiGLU
// forward in its epilogue (what training runs by default), against the unfused path (train.fused_swiglu=false:
// cuBLASLt's timed choice, then the SwiGLU kernel). The fused rows count the product's FLOP only.
kl_status bench_sm90_mlp(Report &rep, kl_gemm_ctx *timed, Timer &t, int N, int C, int F) {
    Dev<kl_bf16> inp, w, gu, h;
    KL_TRY(inp.alloc((size_t)N * C));
    KL_TRY(w.alloc((size_t)2 * F * C));
    KL_TRY(gu.alloc((size_t)N * 2 * F));
    KL_TRY(h.alloc((size_t)N * F));
    KL_TRY(fill(inp.p, (size_t)N * C, 5));
    KL_TRY(fill(w.p, (size_t)2 * F * C, 6));
    const double flop = 2.0 * N * C * 2.0 * F;
    char shape[96];
    snprintf(shape, sizeof shape, "N=%d IC=%d OC=%d", N, C, 2 * F);
    double ms = 0;
    KL_TRY(time_ms(t, [&] { return kl_gemm_sm90_cuda(gu.p, inp.p, w.p, N, 2 * F, C, nullptr); }, 3, 20, &ms));
    rep.row("mlp gate+up fwd [own sm90]", shape, flop, ms);
    KL_TRY(time_ms(t, [&] { return kl_gemm_sm90_swiglu_cuda(gu.p, h.p, inp.p, w.p, N, F, C, nullptr); }, 3, 20, &ms));
    rep.row("gate+up + swiglu [own fused]", shape, flop, ms);
    KL_TRY(time_ms(t, [&] {
        KL_TRY(kl_matmul_forward_cuda(timed, gu.p, inp.p, w.p, nullptr, N, C, 2 * F, nullptr));
        return kl_swiglu_forward_cuda(h.p, gu.p, N, F, nullptr);
    }, 3, 20, &ms));
    rep.row("gate+up + swiglu [timed]", shape, flop, ms);

    // The backward: the down projection's dinp product dh(N,F) = dres(N,C) wdown(C,F), then dgu from dh and gu.
    // The fused row includes transposing wdown, as training does before each call.
    Dev<kl_bf16> wd, wt, dres, dh, dgu;
    KL_TRY(wd.alloc((size_t)C * F));
    KL_TRY(wt.alloc((size_t)F * C));
    KL_TRY(dres.alloc((size_t)N * C));
    KL_TRY(dh.alloc((size_t)N * F));
    KL_TRY(dgu.alloc((size_t)N * 2 * F));
    KL_TRY(fill(wd.p, (size_t)C * F, 7));
    KL_TRY(fill(dres.p, (size_t)N * C, 8));
    KL_TRY(fill(gu.p, (size_t)N * 2 * F, 9));
    const double bflop = 2.0 * N * C * F;
    snprintf(shape, sizeof shape, "N=%d IC=%d OC=%d", N, F, C);
    KL_TRY(time_ms(t, [&] { return kl_transpose_bf16_cuda(wt.p, wd.p, C, F, nullptr); }, 3, 20, &ms));
    rep.row_bytes("mlp down transpose w", shape, 4.0 * C * F, ms);
    KL_TRY(time_ms(t, [&] { return kl_gemm_sm90_cuda(dh.p, dres.p, wt.p, N, F, C, nullptr); }, 3, 20, &ms));
    rep.row("mlp down dinp [own sm90]", shape, bflop, ms);
    KL_TRY(time_ms(t, [&] {
        KL_TRY(kl_transpose_bf16_cuda(wt.p, wd.p, C, F, nullptr));
        return kl_gemm_sm90_swiglu_backward_cuda(dgu.p, gu.p, dres.p, wt.p, N, F, C, nullptr);
    }, 3, 20, &ms));
    rep.row("down dinp + swiglu bwd [own fused]", shape, bflop, ms);
    KL_TRY(time_ms(t, [&] {
        KL_TRY(kl_matmul_backward_cuda(timed, dh.p, nullptr, nullptr, dres.p, nullptr, wd.p, N, F, C, nullptr));
        return kl_swiglu_backward_cuda(dgu.p, dh.p, gu.p, N, F, nullptr);
    }, 3, 20, &ms));
    rep.row("down dinp + swiglu bwd [timed]", shape, bflop, ms);
    return KL_OK;
}

kl_status bench_attention(Report &rep, Timer &t, kl_attn_backend backend, const char *label, int NH, int NKV, int HS) {
    const int B = 16, T = 1024;
    kl_attention_ctx *ctx = nullptr;
    KL_TRY(kl_attention_ctx_create(&ctx, backend));
    struct Guard {
        kl_attention_ctx *c;
        ~Guard() { kl_attention_ctx_destroy(c); }
    } guard{ctx};
    const size_t nqkv = (size_t)B * T * (NH + 2 * NKV) * HS, nout = (size_t)B * T * NH * HS;
    const size_t ws_bytes = kl_attention_workspace_bytes(ctx, B, T, NH, NKV, HS);
    Dev<kl_bf16> qkv, out, dout, dqkv;
    Dev<float> lse;
    Dev<char> ws;
    KL_TRY(qkv.alloc(nqkv));
    KL_TRY(out.alloc(nout));
    KL_TRY(dout.alloc(nout));
    KL_TRY(dqkv.alloc(nqkv));
    KL_TRY(lse.alloc((size_t)B * NH * T));
    KL_TRY(ws.alloc(ws_bytes ? ws_bytes : 1));
    KL_TRY(fill(qkv.p, nqkv, 5));
    KL_TRY(fill(dout.p, nout, 6));
    // causal: half of the T x T score matrix; forward 2 products, backward 5 (dq, dk, dv, dP and the recomputed S)
    const double fwd_flop = 4.0 * B * NH * HS * (double)T * (T + 1) / 2.0, bwd_flop = 2.5 * fwd_flop;
    char shape[96];
    snprintf(shape, sizeof shape, "B=%d T=%d NH=%d NKV=%d HS=%d", B, T, NH, NKV, HS);
    double ms_f = 0, ms_b = 0;
    KL_TRY(time_ms(t, [&] { return kl_attention_forward_cuda(ctx, out.p, lse.p, qkv.p, B, T, NH, NKV, HS, ws.p, ws_bytes,
                                                             nullptr); }, 3, 10, &ms_f));
    const std::string fwd_name = std::string("attention fwd [") + kl_attention_ctx_last_backend(ctx) + "]";
    KL_TRY(time_ms(t, [&] { return kl_attention_backward_cuda(ctx, dqkv.p, dout.p, out.p, lse.p, qkv.p, B, T, NH, NKV, HS,
                                                              ws.p, ws_bytes, nullptr); }, 3, 10, &ms_b));
    const std::string bwd_name = std::string("attention bwd [") + kl_attention_ctx_last_backend(ctx) + "]";
    rep.row(fwd_name.c_str(), shape, fwd_flop, ms_f);
    rep.row(bwd_name.c_str(), shape, bwd_flop, ms_b);
    rep.row((std::string("attention fwd+bwd ") + label).c_str(), shape, fwd_flop + bwd_flop, ms_f + ms_b);
    if (kl_attention_ctx_cudnn_note(ctx)[0])
        fprintf(rep.out, "  (cuDNN not used for %s: %s)\n", label, kl_attention_ctx_cudnn_note(ctx));
    return KL_OK;
}

}  // namespace

extern "C" kl_status kl_bench_gemm(FILE *out) {
    if (kl_gpu_count() == 0) return kl_error(KL_ERR_UNSUPPORTED, "bench gemm: no GPU");
    char gpu[128];
    kl_gpu_name(0, gpu, sizeof gpu);
    fprintf(out, "gemm benchmarks on %s (bound: %.0f TFLOP/s BF16 dense)\n", gpu, kBoundTflops);
    Report rep{out, {}};
    Timer t;
    KL_CUDA_CHECK(cudaEventCreate(&t.a));
    KL_CUDA_CHECK(cudaEventCreate(&t.b));
    Dev<char> ws;
    KL_TRY(ws.alloc(KL_GEMM_WORKSPACE_BYTES));
    // each product twice: with cuBLASLt's first choice, and with the fastest candidate (the context times them
    // on the untimed warm-up calls)
    kl_gemm_ctx *ctx = nullptr, *timed = nullptr;
    KL_TRY(kl_gemm_ctx_create(&ctx, ws.p, KL_GEMM_WORKSPACE_BYTES));
    const kl_status sc = kl_gemm_ctx_create(&timed, ws.p, KL_GEMM_WORKSPACE_BYTES);
    if (sc != KL_OK) {
        kl_gemm_ctx_destroy(ctx);
        return sc;
    }
    kl_gemm_ctx_set_timing(timed, 1);
    // Qwen2.5-0.5B and -1.5B at 16 x 1024 tokens: qkv with bias (query heads + 2 kv heads), attention output,
    // MLP gate+up fused, MLP down, the LM head over the vocabulary 151936 as training runs it (one chunk)
    struct Model {
        const char *name;
        int C, F, NH, NKV, HS;
    };
    const Model models[] = {{"0.5B", 896, 4864, 14, 2, 64}, {"1.5B", 1536, 8960, 12, 2, 128}};
    const int N = 16384;
    kl_status s = KL_OK;
    for (const Model &M : models) {
        fprintf(out, " Qwen2.5-%s shapes\n", M.name);
        const Linear layers[] = {
            {"qkv", N, M.C, (M.NH + 2 * M.NKV) * M.HS, true}, {"attn out", N, M.NH * M.HS, M.C, false},
            {"mlp gate+up", N, M.C, 2 * M.F, false},          {"mlp down", N, M.F, M.C, false},
            {"lm head", N, M.C, 151936, false},
        };
        for (const Linear &L : layers) {
            if (s == KL_OK) s = bench_linear(rep, ctx, t, L, "");
            if (s == KL_OK) s = bench_linear(rep, timed, t, L, " [timed]");
        }
        if (s == KL_OK && kl_gemm_sm90_available()) s = bench_sm90_mlp(rep, timed, t, N, M.C, M.F);
        if (s == KL_OK) s = bench_attention(rep, t, KL_ATTN_AUTO, "auto", M.NH, M.NKV, M.HS);
        if (s == KL_OK) s = bench_attention(rep, t, KL_ATTN_OWN, "own", M.NH, M.NKV, M.HS);
    }
    kl_gemm_ctx_destroy(ctx);
    kl_gemm_ctx_destroy(timed);
    KL_TRY(s);
    for (const std::string &j : rep.json) fprintf(out, "%s\n", j.c_str());
    return KL_OK;
}
