// bench_cudak.cu — bandwidth benchmarks of the element-wise / row-wise CUDA kernels (kernels/bench_cudak.h)
// at Qwen2.5-1.5B / Qwen3 sizes with 16384 tokens per step. Each kernel's bytes are the minimum it must
// move (every input read once, every output written once); the bound is the measured copy bandwidth.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <initializer_list>
#include <vector>

#include "adamw_cuda.h"
#include "bench_cudak.h"
#include "cross_entropy_cuda.h"
#include "cuda_check.cuh"
#include "embedding_cuda.h"
#include "philox.h"
#include "rmsnorm_cuda.h"
#include "rope.h"
#include "rope_cuda.h"
#include "swiglu_cuda.h"

namespace {

constexpr double kBoundGBps = 4300.0;  // H200 device-to-device copy, measured
constexpr int kWarmup = 3, kIters = 20;

// Shapes: Qwen2.5-1.5B (C 1536, F 8960, 12 q heads, 2 kv heads of 128, V 151936); q/k norm at Qwen3-1.7B's
// 16 q / 8 kv heads; 16384 tokens (B 4 x T 4096); the LM head in chunks of 4096 rows.
constexpr int kB = 4, kT = 4096, kN = kB * kT, kC = 1536, kF = 8960, kNH = 12, kNKV = 2, kHS = 128;
constexpr int kQNH = 16, kQNKV = 8, kV = 151936, kCeRows = 4096;
constexpr size_t kParamsN = (size_t)1 << 28;  // 268M parameters for the optimizer and the norm
constexpr int kRanges = 256;

__global__ void fill_bf16(uint16_t *p, size_t n, uint64_t seed, float scale, float shift) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float u = kl_u32_to_unit_float(kl_philox_block(seed, 0, i).v[0]);
        p[i] = kl::f32_to_bf16((2.f * u - 1.f) * scale + shift);
    }
}

__global__ void fill_f32(float *p, size_t n, uint64_t seed, float scale, float shift) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float u = kl_u32_to_unit_float(kl_philox_block(seed, 1, i).v[0]);
        p[i] = (2.f * u - 1.f) * scale + shift;
    }
}

// Device buffers freed on every exit path (the check macros return early).
struct Arena {
    std::vector<void *> ptrs;
    ~Arena() {
        for (void *p : ptrs) cudaFree(p);
    }
    template <typename T>
    kl_status alloc(T **out, size_t n) {
        void *p = nullptr;
        KL_CUDA_CHECK(cudaMalloc(&p, (n ? n : 1) * sizeof(T)));
        ptrs.push_back(p);
        *out = static_cast<T *>(p);
        return KL_OK;
    }
};

struct Result {
    const char *kernel;
    char shape[96];
    double us, bytes;
};

struct Events {
    cudaEvent_t a = nullptr, b = nullptr;
    ~Events() {
        if (a) cudaEventDestroy(a);
        if (b) cudaEventDestroy(b);
    }
};

// Mean time of one call of f over kIters calls after kWarmup, in microseconds.
template <typename F>
kl_status time_us(F f, double *us) {
    Events e;
    KL_CUDA_CHECK(cudaEventCreate(&e.a));
    KL_CUDA_CHECK(cudaEventCreate(&e.b));
    for (int i = 0; i < kWarmup; i++) KL_TRY(f());
    KL_CUDA_CHECK(cudaEventRecord(e.a));
    for (int i = 0; i < kIters; i++) KL_TRY(f());
    KL_CUDA_CHECK(cudaEventRecord(e.b));
    KL_CUDA_CHECK(cudaEventSynchronize(e.b));
    float ms = 0;
    KL_CUDA_CHECK(cudaEventElapsedTime(&ms, e.a, e.b));
    *us = 1e3 * ms / kIters;
    return KL_OK;
}

template <typename F>
kl_status bench(std::vector<Result> &res, const char *kernel, double bytes, F f, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

template <typename F>
kl_status bench(std::vector<Result> &res, const char *kernel, double bytes, F f, const char *fmt, ...) {
    Result r;
    r.kernel = kernel;
    r.bytes = bytes;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r.shape, sizeof r.shape, fmt, ap);
    va_end(ap);
    KL_TRY(time_us(f, &r.us));
    res.push_back(r);
    return KL_OK;
}

kl_status fill(uint16_t *p, size_t n, uint64_t seed, float scale, float shift = 0.f) {
    fill_bf16<<<2048, 256>>>(p, n, seed, scale, shift);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}
kl_status fill(float *p, size_t n, uint64_t seed, float scale, float shift = 0.f) {
    fill_f32<<<2048, 256>>>(p, n, seed, scale, shift);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

kl_status run(std::vector<Result> &res) {
    Arena A;
    const size_t NC = (size_t)kN * kC;
    const double b2 = 2.0, b4 = 4.0;  // bytes per BF16 / FP32 element

    // ---- conversions -------------------------------------------------------------------------------
    {
        float *f;
        uint16_t *h;
        KL_TRY(A.alloc(&f, NC));
        KL_TRY(A.alloc(&h, NC));
        KL_TRY(fill(f, NC, 1, 3.f));
        KL_TRY(bench(res, "f32_to_bf16", NC * (b4 + b2), [&] { return kl_f32_to_bf16_cuda(h, f, NC, nullptr); },
                     "n=%zu", NC));
        KL_TRY(bench(res, "bf16_to_f32", NC * (b4 + b2), [&] { return kl_bf16_to_f32_cuda(f, h, NC, nullptr); },
                     "n=%zu", NC));
    }

    // ---- embedding -----------------------------------------------------------------------------------
    {
        uint16_t *wte, *out;
        float *dwte;
        int32_t *tok, *plan_dev;
        KL_TRY(A.alloc(&wte, (size_t)kV * kC));
        KL_TRY(A.alloc(&dwte, (size_t)kV * kC));
        KL_TRY(A.alloc(&out, NC));
        KL_TRY(A.alloc(&tok, kN));
        KL_TRY(A.alloc(&plan_dev, kl_embedding_plan_elems(kN)));
        KL_TRY(fill(wte, (size_t)kV * kC, 2, 0.05f));
        KL_CUDA_CHECK(cudaMemset(dwte, 0, (size_t)kV * kC * sizeof(float)));
        std::vector<int32_t> tokens(kN), plan(kl_embedding_plan_elems(kN));
        for (int n = 0; n < kN; n++) tokens[n] = (int32_t)(kl_philox_block(3, 0, n).v[0] % kV);
        int U = 0;
        const double t0 = kl_now_seconds();
        KL_TRY(kl_embedding_backward_plan(plan.data(), &U, tokens.data(), kN, kV));
        const double plan_us = 1e6 * (kl_now_seconds() - t0);
        KL_CUDA_CHECK(cudaMemcpy(tok, tokens.data(), kN * sizeof(int32_t), cudaMemcpyHostToDevice));
        KL_CUDA_CHECK(cudaMemcpy(plan_dev, plan.data(), plan.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
        KL_TRY(bench(res, "embedding_fwd", NC * 2 * b2 + kN * 4.0,
                     [&] { return kl_embedding_forward_cuda(out, tok, wte, kN, kV, kC, nullptr); }, "N=%d C=%d V=%d",
                     kN, kC, kV));
        KL_TRY(bench(res, "embedding_bwd", NC * b2 + (double)U * kC * 2 * b4 + plan.size() * 4.0,
                     [&] { return kl_embedding_backward_cuda(dwte, out, plan_dev, U, kN, kC, nullptr); },
                     "N=%d C=%d U=%d (host plan %.0f us)", kN, kC, U, plan_us));
    }

    // ---- RMSNorm ---------------------------------------------------------------------------------------
    {
        uint16_t *a, *b, *r, *o, *w, *dx;
        float *rstd, *dw;
        void *scratch;
        for (uint16_t **p : {&a, &b, &r, &o, &dx}) KL_TRY(A.alloc(p, NC));
        KL_TRY(A.alloc(&w, kC));
        KL_TRY(A.alloc(&rstd, kN));
        KL_TRY(A.alloc(&dw, kC));
        KL_TRY(A.alloc(reinterpret_cast<char **>(&scratch), kl_rmsnorm_backward_scratch_bytes(kN, kC)));
        KL_TRY(fill(a, NC, 4, 1.f));
        KL_TRY(fill(b, NC, 5, 1.f));
        KL_TRY(fill(dx, NC, 6, 1.f));
        KL_TRY(fill(w, kC, 7, 0.1f, 1.f));
        KL_CUDA_CHECK(cudaMemset(dw, 0, kC * sizeof(float)));
        KL_TRY(bench(res, "residual_rmsnorm_fwd", NC * 4 * b2,
                     [&] { return kl_fused_residual_rmsnorm_forward_cuda(r, o, rstd, a, b, w, kN, kC, 1e-6f, nullptr); },
                     "N=%d C=%d", kN, kC));
        KL_TRY(bench(res, "rmsnorm_fwd", NC * 2 * b2,
                     [&] { return kl_rmsnorm_forward_cuda(o, rstd, r, w, kN, kC, 1e-6f, nullptr); }, "N=%d C=%d", kN,
                     kC));
        KL_TRY(bench(res, "rmsnorm_bwd", NC * 4 * b2,
                     [&] { return kl_rmsnorm_backward_cuda(dx, dw, o, r, w, rstd, kN, kC, scratch, nullptr); },
                     "N=%d C=%d (dx +=)", kN, kC));
        const int C2 = 896;  // Qwen2.5-0.5B
        const size_t NC2 = (size_t)kN * C2;
        KL_TRY(bench(res, "residual_rmsnorm_fwd", NC2 * 4 * b2,
                     [&] { return kl_fused_residual_rmsnorm_forward_cuda(r, o, rstd, a, b, w, kN, C2, 1e-6f, nullptr); },
                     "N=%d C=%d", kN, C2));
        KL_TRY(bench(res, "rmsnorm_bwd", NC2 * 4 * b2,
                     [&] { return kl_rmsnorm_backward_cuda(dx, dw, o, r, w, rstd, kN, C2, scratch, nullptr); },
                     "N=%d C=%d (dx +=)", kN, C2));
    }

    // ---- q/k norm and RoPE on qkv -------------------------------------------------------------------------
    {
        const size_t qrow = (size_t)(kQNH + 2 * kQNKV) * kHS, qtotal = (size_t)kN * qrow;
        const size_t qk = (size_t)kN * (kQNH + kQNKV) * kHS;
        uint16_t *qin, *qout, *dq, *qw, *kw;
        float *rstd, *dqw, *dkw, *cos_d, *sin_d;
        void *scratch;
        KL_TRY(A.alloc(&qin, qtotal));
        KL_TRY(A.alloc(&qout, qtotal));
        KL_TRY(A.alloc(&dq, qtotal));
        KL_TRY(A.alloc(&qw, kHS));
        KL_TRY(A.alloc(&kw, kHS));
        KL_TRY(A.alloc(&rstd, (size_t)kN * (kQNH + kQNKV)));
        KL_TRY(A.alloc(&dqw, kHS));
        KL_TRY(A.alloc(&dkw, kHS));
        KL_TRY(A.alloc(reinterpret_cast<char **>(&scratch), kl_qknorm_backward_scratch_bytes(kN, kQNH, kQNKV, kHS)));
        KL_TRY(fill(qin, qtotal, 8, 2.f));
        KL_TRY(fill(dq, qtotal, 9, 1.f));
        KL_TRY(fill(qw, kHS, 10, 0.1f, 1.f));
        KL_TRY(fill(kw, kHS, 11, 0.1f, 1.f));
        KL_CUDA_CHECK(cudaMemset(dqw, 0, kHS * sizeof(float)));
        KL_CUDA_CHECK(cudaMemset(dkw, 0, kHS * sizeof(float)));
        KL_TRY(bench(res, "qknorm_fwd", qtotal * 2 * b2,
                     [&] { return kl_qknorm_forward_cuda(qout, rstd, qin, qw, kw, kN, kQNH, kQNKV, kHS, 1e-6f, nullptr); },
                     "N=%d NH=%d NKV=%d HS=%d", kN, kQNH, kQNKV, kHS));
        KL_TRY(bench(res, "qknorm_bwd", qk * 3 * b2,  // in place: the v heads are not touched
                     [&] {
                         return kl_qknorm_backward_cuda(dq, dqw, dkw, dq, qin, qw, kw, rstd, kN, kQNH, kQNKV, kHS,
                                                        scratch, nullptr);
                     },
                     "N=%d NH=%d NKV=%d HS=%d (in place)", kN, kQNH, kQNKV, kHS));
        // RoPE at Qwen2.5-1.5B's heads, in place on the q and k heads.
        std::vector<float> cs((size_t)kT * kHS / 2), sn(cs.size());
        KL_TRY(kl_rope_freqs(cs.data(), sn.data(), kT, kHS, 1e6, nullptr));
        KL_TRY(A.alloc(&cos_d, cs.size()));
        KL_TRY(A.alloc(&sin_d, sn.size()));
        KL_CUDA_CHECK(cudaMemcpy(cos_d, cs.data(), cs.size() * sizeof(float), cudaMemcpyHostToDevice));
        KL_CUDA_CHECK(cudaMemcpy(sin_d, sn.data(), sn.size() * sizeof(float), cudaMemcpyHostToDevice));
        const size_t rqk = (size_t)kN * (kNH + kNKV) * kHS;
        KL_TRY(bench(res, "rope_fwd", rqk * 2 * b2,
                     [&] { return kl_rope_forward_cuda(qin, cos_d, sin_d, kB, kT, kNH, kNKV, kHS, nullptr); },
                     "B=%d T=%d NH=%d NKV=%d HS=%d", kB, kT, kNH, kNKV, kHS));
        KL_TRY(bench(res, "rope_bwd", rqk * 2 * b2,
                     [&] { return kl_rope_backward_cuda(qin, cos_d, sin_d, kB, kT, kNH, kNKV, kHS, nullptr); },
                     "B=%d T=%d NH=%d NKV=%d HS=%d", kB, kT, kNH, kNKV, kHS));
    }

    // ---- SwiGLU ----------------------------------------------------------------------------------------------
    {
        const size_t NF = (size_t)kN * kF;
        uint16_t *gu, *o, *dgu;
        KL_TRY(A.alloc(&gu, 2 * NF));
        KL_TRY(A.alloc(&dgu, 2 * NF));
        KL_TRY(A.alloc(&o, NF));
        KL_TRY(fill(gu, 2 * NF, 12, 4.f));
        KL_TRY(bench(res, "swiglu_fwd", NF * 3 * b2, [&] { return kl_swiglu_forward_cuda(o, gu, kN, kF, nullptr); },
                     "N=%d F=%d", kN, kF));
        KL_TRY(bench(res, "swiglu_bwd", NF * 5 * b2,
                     [&] { return kl_swiglu_backward_cuda(dgu, o, gu, kN, kF, nullptr); }, "N=%d F=%d", kN, kF));
    }

    // ---- cross-entropy over one LM-head chunk -----------------------------------------------------------------
    {
        const size_t RV = (size_t)kCeRows * kV;
        uint16_t *logits;
        float *losses;
        int32_t *targets;
        double *sum;
        KL_TRY(A.alloc(&logits, RV));
        KL_TRY(A.alloc(&losses, kCeRows));
        KL_TRY(A.alloc(&targets, kCeRows));
        KL_TRY(A.alloc(&sum, 1));
        KL_TRY(fill(logits, RV, 13, 8.f));
        std::vector<int32_t> t(kCeRows);
        for (int n = 0; n < kCeRows; n++) t[n] = (int32_t)(kl_philox_block(14, 0, n).v[0] % kV);
        KL_CUDA_CHECK(cudaMemcpy(targets, t.data(), kCeRows * sizeof(int32_t), cudaMemcpyHostToDevice));
        KL_TRY(bench(res, "cross_entropy", RV * 2 * b2,
                     [&] {
                         return kl_cross_entropy_cuda(logits, losses, logits, targets, kCeRows, kV, 1e-4f,
                                                      1.0f / kN, nullptr);
                     },
                     "rows=%d V=%d (grad in place)", kCeRows, kV));
        KL_TRY(bench(res, "cross_entropy_loss_only", RV * b2,
                     [&] {
                         return kl_cross_entropy_cuda(nullptr, losses, logits, targets, kCeRows, kV, 1e-4f, 1.0f,
                                                      nullptr);
                     },
                     "rows=%d V=%d", kCeRows, kV));
        KL_TRY(bench(res, "loss_sum", kCeRows * 8.0,
                     [&] { return kl_cross_entropy_loss_sum_cuda(sum, losses, targets, kCeRows, nullptr); }, "N=%d",
                     kCeRows));
    }

    // ---- optimizer: gradient norm, clip factor, AdamW ------------------------------------------------------------
    {
        const size_t n = kParamsN;
        float *w, *m, *v, *g, *clip;
        uint16_t *copy;
        double *sumsq, *norm;
        void *scratch;
        kl_adamw_range *ranges_d;
        KL_TRY(A.alloc(&w, n));
        KL_TRY(A.alloc(&m, n));
        KL_TRY(A.alloc(&v, n));
        KL_TRY(A.alloc(&g, n));
        KL_TRY(A.alloc(&copy, n));
        KL_TRY(A.alloc(&clip, 1));
        KL_TRY(A.alloc(&sumsq, 1));
        KL_TRY(A.alloc(&norm, 1));
        KL_TRY(A.alloc(reinterpret_cast<char **>(&scratch), kl_sum_squares_scratch_bytes(n)));
        KL_TRY(A.alloc(&ranges_d, kRanges));
        KL_TRY(fill(w, n, 15, 0.02f));
        KL_TRY(fill(g, n, 16, 0.01f));
        KL_CUDA_CHECK(cudaMemset(m, 0, n * sizeof(float)));
        KL_CUDA_CHECK(cudaMemset(v, 0, n * sizeof(float)));
        std::vector<kl_adamw_range> ranges(kRanges);
        for (int i = 0; i < kRanges; i++) {
            ranges[i].offset = n / kRanges * i;
            ranges[i].numel = n / kRanges;
            ranges[i].lr_mult = 1.0f;
            ranges[i].decay = i % 4 != 0;
        }
        uint32_t blocks = 0;
        KL_TRY(kl_adamw_ranges_prepare(ranges.data(), kRanges, &blocks));
        KL_CUDA_CHECK(cudaMemcpy(ranges_d, ranges.data(), kRanges * sizeof(kl_adamw_range), cudaMemcpyHostToDevice));
        KL_TRY(bench(res, "grad_sum_squares", n * b4,
                     [&] { return kl_sum_squares_cuda(sumsq, 0, g, n, scratch, nullptr); }, "n=%zu", n));
        KL_TRY(bench(res, "grad_norm_and_clip", n * b4,
                     [&] {
                         KL_TRY(kl_sum_squares_cuda(sumsq, 0, g, n, scratch, nullptr));
                         return kl_grad_clip_cuda(clip, norm, sumsq, nullptr, 1.0, nullptr);
                     },
                     "n=%zu", n));
        kl_adamw_hparams hp = {3e-4, 0.9, 0.95, 1e-8, 0.1, 10, 1234};
        // FP32 master: read w m v g, write w m v (4 B each) and the BF16 copy (2 B).
        KL_TRY(bench(res, "adamw_fp32_master", n * (7 * b4 + b2),
                     [&] {
                         return kl_adamw_step_cuda(w, copy, m, v, g, ranges_d, kRanges, blocks, &hp, clip, nullptr);
                     },
                     "n=%zu ranges=%d +bf16 copy", n, kRanges));
        // BF16 master: read p m v g, write p m v.
        KL_TRY(bench(res, "adamw_bf16_master_sr", n * (5 * b4 + 2 * b2),
                     [&] {
                         return kl_adamw_step_bf16_cuda(copy, m, v, g, ranges_d, kRanges, blocks, &hp, clip, nullptr);
                     },
                     "n=%zu ranges=%d", n, kRanges));
    }
    KL_CUDA_CHECK(cudaDeviceSynchronize());
    return KL_OK;
}

}  // namespace

extern "C" kl_status kl_bench_cudak(FILE *out) {
    std::vector<Result> res;
    const kl_status st = run(res);
    char dev[256] = "";
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) snprintf(dev, sizeof dev, "%s", prop.name);
    fprintf(out, "cudak kernels on %s (bound: %.0f GB/s copy bandwidth; mean of %d calls)\n", dev, kBoundGBps, kIters);
    fprintf(out, "%-24s %-44s %10s %9s %7s\n", "kernel", "shape", "time_us", "GB/s", "of_bound");
    for (const Result &r : res) {
        const double gbps = r.bytes / (r.us * 1e-6) / 1e9;
        fprintf(out, "%-24s %-44s %10.1f %9.0f %6.1f%%\n", r.kernel, r.shape, r.us, gbps, 100.0 * gbps / kBoundGBps);
    }
    for (const Result &r : res) {
        const double gbps = r.bytes / (r.us * 1e-6) / 1e9;
        fprintf(out,
                "{\"bench\":\"kernels\",\"owner\":\"cudak\",\"kernel\":\"%s\",\"shape\":\"%s\",\"device\":\"%s\","
                "\"time_us\":%.2f,\"bytes\":%.0f,\"GBps\":%.1f,\"bound_GBps\":%.0f,\"fraction\":%.4f}\n",
                r.kernel, r.shape, dev, r.us, r.bytes, gbps, kBoundGBps, gbps / kBoundGBps);
    }
    return st;
}
