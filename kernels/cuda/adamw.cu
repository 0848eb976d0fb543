// adamw.cu — AdamW step over ranges of a flat parameter buffer (FP32 master + BF16 copy, or BF16 master
// with stochastic rounding), the FP64 sum of squares of the gradients and the clip factor, all on the
// device (kernels/adamw_cuda.h). Every arithmetic step uses an explicitly rounded intrinsic (no FMA
// contraction) in optim/adamw.c's order, so FP32 results equal the CPU reference's bit for bit.
#include <math.h>

#include "adamw_cuda.h"
#include "cuda_check.cuh"
#include "philox.h"

namespace {

constexpr int kThreads = 256;
constexpr int kTile = 4096;  // elements of one range per block
constexpr int kSumBlocks = 1024, kSumThreads = 256;

// Per-step constants, computed on the host exactly as optim/adamw.c computes them.
struct Step {
    double lr, bc1, wd;  // learning rate, 1 - beta1^t, weight decay
    float b2, omb1, omb2, eps, bc2_sqrt;  // 1 - beta rounded from double, as torch and adamw.c do
    uint64_t key;  // Philox key for stochastic rounding
};

// Per-range constants: adamw.c's step_size and decay, in the same double arithmetic.
struct Coef {
    float step_size, decay;
};

__device__ __forceinline__ Coef coef_for(const kl_adamw_range &r, const Step &s) {
    const double plr = __dmul_rn(s.lr, (double)r.lr_mult);
    Coef c;
    c.step_size = (float)__ddiv_rn(plr, s.bc1);
    c.decay = r.decay ? (float)__dadd_rn(1.0, -__dmul_rn(plr, s.wd)) : 1.0f;
    return c;
}

// adamw.c's update of one element, operation for operation. Returns the new weight.
__device__ __forceinline__ float update(float w, float &m, float &v, float g, const Coef &c, const Step &s) {
    w = __fmul_rn(w, c.decay);
    m = __fadd_rn(m, __fmul_rn(s.omb1, __fsub_rn(g, m)));  // torch's exp_avg.lerp_(grad, 1 - beta1)
    v = __fadd_rn(__fmul_rn(s.b2, v), __fmul_rn(s.omb2, __fmul_rn(g, g)));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), s.bc2_sqrt), s.eps);
    return __fsub_rn(w, __fdiv_rn(__fmul_rn(c.step_size, m), denom));
}

// The range that owns block b: the last one whose first_block <= b.
__device__ __forceinline__ int find_range(const kl_adamw_range *ranges, int n, unsigned b) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (ranges[mid].first_block <= b) lo = mid; else hi = mid - 1;
    }
    return lo;
}

// Stores one updated weight: FP32 master (+ BF16 copy), or BF16 master by stochastic rounding.
template <bool BF16_MASTER>
struct Weights {
    float *master;
    uint16_t *copy;  // FP32 master: the compute copy (may be NULL); BF16 master: the parameters
    __device__ __forceinline__ float load(size_t i) const {
        if constexpr (BF16_MASTER) return kl::bf16_to_f32(copy[i]); else return master[i];
    }
    __device__ __forceinline__ void store(size_t i, float w, uint32_t bits) const {
        if constexpr (BF16_MASTER) {
            copy[i] = kl_f32_to_bf16_stochastic(w, bits);
        } else {
            (void)bits;
            master[i] = w;
            if (copy) copy[i] = kl::f32_to_bf16(w);
        }
    }
};

template <bool BF16_MASTER>
__global__ void adamw_step(Weights<BF16_MASTER> W, float *m, float *v, const float *grads,
                           const kl_adamw_range *ranges, int n_ranges, Step s, const float *clip, int vec_ok) {
    const float scale = clip ? *clip : 1.0f;
    if (scale == 0.0f) return;  // non-finite gradient norm or loss: the step is skipped
    const kl_adamw_range r = ranges[find_range(ranges, n_ranges, blockIdx.x)];
    const Coef c = coef_for(r, s);
    const size_t start = (size_t)(blockIdx.x - r.first_block) * kTile;
    const size_t end = start + kTile < r.numel ? start + kTile : r.numel;
    const size_t base = r.offset;
    size_t scalar_from = start;
    if (vec_ok && base % 4 == 0) {  // quads: 16-byte loads, one Philox block per quad
        const size_t q0 = start / 4, q1 = end / 4;
        for (size_t q = q0 + threadIdx.x; q < q1; q += blockDim.x) {
            const size_t i = base + 4 * q;
            float4 mm = *reinterpret_cast<const float4 *>(m + i), vv = *reinterpret_cast<const float4 *>(v + i);
            float4 gg = *reinterpret_cast<const float4 *>(grads + i);
            float mq[4] = {mm.x, mm.y, mm.z, mm.w}, vq[4] = {vv.x, vv.y, vv.z, vv.w};
            const float gq[4] = {gg.x, gg.y, gg.z, gg.w};
            uint32_t bits[4] = {0, 0, 0, 0};
            if constexpr (BF16_MASTER) {
                const kl_philox_ctr rnd = kl_philox_block(s.key, 0, i / 4);
                for (int k = 0; k < 4; k++) bits[k] = rnd.v[k];
            }
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const float g = clip ? __fmul_rn(gq[k], scale) : gq[k];
                W.store(i + k, update(W.load(i + k), mq[k], vq[k], g, c, s), bits[k]);
            }
            *reinterpret_cast<float4 *>(m + i) = make_float4(mq[0], mq[1], mq[2], mq[3]);
            *reinterpret_cast<float4 *>(v + i) = make_float4(vq[0], vq[1], vq[2], vq[3]);
        }
        scalar_from = q1 * 4;
    }
    for (size_t e = scalar_from + threadIdx.x; e < end; e += blockDim.x) {
        const size_t i = base + e;
        uint32_t bits = 0;
        if constexpr (BF16_MASTER) bits = kl_philox_block(s.key, 0, i / 4).v[i % 4];
        const float g = clip ? __fmul_rn(grads[i], scale) : grads[i];
        float mi = m[i], vi = v[i];
        W.store(i, update(W.load(i), mi, vi, g, c, s), bits);
        m[i] = mi;
        v[i] = vi;
    }
}

Step make_step(const kl_adamw_hparams *hp) {
    Step s;
    s.lr = hp->lr;
    s.bc1 = 1.0 - pow(hp->beta1, (double)hp->step);
    s.wd = hp->weight_decay;
    s.b2 = (float)hp->beta2;
    s.omb1 = (float)(1.0 - hp->beta1);
    s.omb2 = (float)(1.0 - hp->beta2);
    s.eps = (float)hp->eps;
    s.bc2_sqrt = (float)sqrt(1.0 - pow(hp->beta2, (double)hp->step));
    s.key = hp->seed ^ (uint64_t)hp->step;
    return s;
}

template <bool BF16_MASTER>
kl_status launch(const char *op, Weights<BF16_MASTER> W, float *m, float *v, const float *grads,
                 const kl_adamw_range *ranges_dev, int n_ranges, uint32_t n_blocks, const kl_adamw_hparams *hp,
                 const float *clip, cudaStream_t stream) {
    if (n_ranges < 0 || !hp || hp->step < 1)
        return kl_error(KL_ERR_INVALID, "%s: expected n_ranges >= 0 and hyper-parameters with step >= 1", op);
    if (n_ranges == 0 || n_blocks == 0) return KL_OK;
    const bool vec_ok = kl::aligned16(m) && kl::aligned16(v) && kl::aligned16(grads) &&
                        (BF16_MASTER || kl::aligned16(W.master));
    adamw_step<BF16_MASTER><<<n_blocks, kThreads, 0, stream>>>(W, m, v, grads, ranges_dev, n_ranges, make_step(hp),
                                                               clip, vec_ok ? 1 : 0);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

// ---- sum of squares and clip factor --------------------------------------------------------------------

unsigned sum_blocks(size_t n) {
    size_t b = (n + (size_t)kSumThreads * 16 - 1) / ((size_t)kSumThreads * 16);
    if (b > kSumBlocks) b = kSumBlocks;
    return b ? (unsigned)b : 1u;
}

// Block-wide FP64 sum in a fixed tree; the result is valid in thread 0.
__device__ double block_sum(double s) {
    __shared__ double warp_sums[32];
    s = kl::warp_sum(s);
    if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = s;
    __syncthreads();
    double t = 0.0;
    if (threadIdx.x < 32) {
        t = threadIdx.x < (blockDim.x >> 5) ? warp_sums[threadIdx.x] : 0.0;
        t = kl::warp_sum(t);
    }
    return t;
}

// Pass 1: block b sums its grid-stride share of x into partial[b]. The split depends only on n.
__global__ void sum_squares_partial(double *partial, const float *x, size_t n, int vec) {
    double s = 0.0;
    const size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
    size_t tail = 0;
    if (vec) {
        const size_t n4 = n / 4;
        for (size_t q = tid; q < n4; q += stride) {
            const float4 f = reinterpret_cast<const float4 *>(x)[q];
            s += (double)f.x * f.x + (double)f.y * f.y + (double)f.z * f.z + (double)f.w * f.w;
        }
        tail = n4 * 4;
    }
    for (size_t i = tail + tid; i < n; i += stride) s += (double)x[i] * x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Pass 2: one block adds the partials in a fixed tree.
__global__ void sum_squares_final(double *out, int accumulate, const double *partial, int n_partial) {
    double s = 0.0;
    for (int i = threadIdx.x; i < n_partial; i += blockDim.x) s += partial[i];
    s = block_sum(s);
    if (threadIdx.x == 0) *out = accumulate ? *out + s : s;
}

__global__ void clip_factor(float *clip, double *norm, const double *sumsq, const double *loss_sum,
                            double max_norm) {
    const double nrm = sqrt(*sumsq);
    *norm = nrm;
    float f = 1.0f;
    if (!isfinite(nrm) || (loss_sum && !isfinite(*loss_sum)))
        f = 0.0f;
    else if (max_norm > 0 && nrm > max_norm)
        f = (float)(max_norm / (nrm + 1e-6));  // torch.nn.utils.clip_grad_norm_'s factor, as the CPU trainer
    *clip = f;
}

}  // namespace

extern "C" kl_status kl_adamw_ranges_prepare(kl_adamw_range *ranges, int n_ranges, uint32_t *n_blocks) {
    uint64_t blocks = 0;
    size_t end = 0;
    for (int i = 0; i < n_ranges; i++) {
        if (ranges[i].offset < end)
            return kl_error(KL_ERR_INVALID, "adamw ranges: range %d (offset %zu) overlaps or precedes the previous "
                            "one (ending at %zu); expected ranges sorted by offset", i, ranges[i].offset, end);
        end = ranges[i].offset + ranges[i].numel;
        ranges[i].first_block = (uint32_t)blocks;
        blocks += (ranges[i].numel + kTile - 1) / kTile;
        if (blocks > 0x7fffffffu)
            return kl_error(KL_ERR_INVALID, "adamw ranges: %llu blocks of %d elements exceed one launch",
                            (unsigned long long)blocks, kTile);
    }
    *n_blocks = (uint32_t)blocks;
    return KL_OK;
}

extern "C" kl_status kl_adamw_step_cuda(float *master, kl_bf16 *copy, float *m, float *v, const float *grads,
                                        const kl_adamw_range *ranges_dev, int n_ranges, uint32_t n_blocks,
                                        const kl_adamw_hparams *hp, const float *clip, cudaStream_t stream) {
    const Weights<false> W = {master, reinterpret_cast<uint16_t *>(copy)};
    return launch<false>("adamw step", W, m, v, grads, ranges_dev, n_ranges, n_blocks, hp, clip, stream);
}

extern "C" kl_status kl_adamw_step_bf16_cuda(kl_bf16 *params, float *m, float *v, const float *grads,
                                             const kl_adamw_range *ranges_dev, int n_ranges, uint32_t n_blocks,
                                             const kl_adamw_hparams *hp, const float *clip, cudaStream_t stream) {
    const Weights<true> W = {nullptr, reinterpret_cast<uint16_t *>(params)};
    return launch<true>("adamw step (bf16 master)", W, m, v, grads, ranges_dev, n_ranges, n_blocks, hp, clip,
                        stream);
}

extern "C" size_t kl_sum_squares_scratch_bytes(size_t n) { return sum_blocks(n) * sizeof(double); }

extern "C" kl_status kl_sum_squares_cuda(double *sumsq, int accumulate, const float *x, size_t n, void *scratch,
                                         cudaStream_t stream) {
    if (!scratch) return kl_error(KL_ERR_INVALID, "sum of squares: expected a scratch buffer");
    const unsigned blocks = sum_blocks(n);
    double *partial = static_cast<double *>(scratch);
    sum_squares_partial<<<blocks, kSumThreads, 0, stream>>>(partial, x, n, kl::aligned16(x) ? 1 : 0);
    KL_CUDA_CHECK_LAUNCH();
    sum_squares_final<<<1, 1024, 0, stream>>>(sumsq, accumulate, partial, (int)blocks);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

extern "C" kl_status kl_grad_clip_cuda(float *clip, double *norm, const double *sumsq, const double *loss_sum,
                                       double max_norm, cudaStream_t stream) {
    clip_factor<<<1, 1, 0, stream>>>(clip, norm, sumsq, loss_sum, max_norm);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}
