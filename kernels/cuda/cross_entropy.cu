// cross_entropy.cu — fused softmax cross-entropy with masks and z-loss over a chunk of BF16 logits, the
// gradient written in place (kernels/cross_entropy_cuda.h). One 1024-thread block per row: pass 1 an
// online max/sum-exp, pass 2 the gradient. Between the passes each thread keeps its first chunks of the row
// in registers (96 KiB of the row per block) and the next ones in shared memory (up to the device's
// per-block opt-in, 227 KiB on Hopper), so a 151936-wide BF16 row (297 KiB) is read from memory once and
// written once; only wider rows re-read the remainder.
#include "cross_entropy_cuda.h"
#include "cuda_check.cuh"

namespace {

constexpr int kThreads = 1024;
constexpr float kLog2e = 1.4426950408889634f;

// 2^x on the special-function unit, subnormal results flushed to zero. exp2f without --use_fast_math wraps
// the same instruction in a rescaling that keeps subnormal results; a probability that small (< 2^-126) is
// far below what a BF16 gradient or an FP32 sum that holds a term of at least 1 can tell from zero. H200,
// 4096 x 151936: 791.9 -> 744.1 us with the gradient, 367.1 -> 327.0 us for the loss alone (then 734.6 and
// 322.1 us with the FFMA arguments and the gradient's per-chunk target test below).
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// A running (max, sum of exp(x - max)) pair and its combination. Combining is commutative bit for bit,
// so butterfly exchanges leave every lane with the same value.
struct MaxSum {
    float m, s;
};

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
    const float M = fmaxf(a.m, b.m);
    if (M == -INFINITY) return {M, 0.f};
    return {M, a.s * ex2((a.m - M) * kLog2e) + b.s * ex2((b.m - M) * kLog2e)};
}

// The butterfly over a warp: every lane ends with the combination of all 32 lanes' pairs.
__device__ __forceinline__ MaxSum warp_combine(MaxSum r) {
    for (int o = 16; o > 0; o >>= 1)
        r = combine(r, {__shfl_xor_sync(0xffffffffu, r.m, o), __shfl_xor_sync(0xffffffffu, r.s, o)});
    return r;
}

template <int VEC>
__device__ __forceinline__ void accumulate(MaxSum &r, const float (&f)[VEC]) {
    float mx = f[0];
#pragma unroll
    for (int i = 1; i < VEC; i++) mx = fmaxf(mx, f[i]);
    if (mx > r.m) {  // rescale the running sum to the new max (exp2(-inf) = 0 covers the first chunk)
        r.s *= ex2((r.m - mx) * kLog2e);
        r.m = mx;
    }
    const float off = r.m * kLog2e;  // exp(x - m) = 2^(x log2e - m log2e): one FFMA before the ex2
#pragma unroll
    for (int i = 0; i < VEC; i++) r.s += ex2(fmaf(f[i], kLog2e, -off));
}

// d/dx_v [lse - x_t + z lse^2] = softmax_v (1 + 2 z lse) - [v == t], times grad_scale: with off = lse log2e
// and scale = grad_scale (1 + 2 z lse), 2^(x log2e - off) scale, less grad_scale at the target (tested once per
// chunk, so the other chunks pay nothing for it).
template <int VEC>
__device__ __forceinline__ void gradient(kl::Bf16Pack<VEC> &p, int v0, int target, float off, float scale,
                                         float grad_scale) {
    float f[VEC];
    p.unpack(f);
#pragma unroll
    for (int i = 0; i < VEC; i++) f[i] = ex2(fmaf(f[i], kLog2e, -off)) * scale;
    if ((unsigned)(target - v0) < (unsigned)VEC)
#pragma unroll
        for (int i = 0; i < VEC; i++)
            if (v0 + i == target) f[i] -= grad_scale;
    p.pack(f);
}

// Loads the chunks j, j + kThreads, ..., j + (U-1) kThreads that exist (< nch), all issued before any is used.
template <int VEC, int U>
__device__ __forceinline__ void load_strided(kl::Bf16Pack<VEC> (&p)[U], const uint16_t *x, int j, int nch) {
#pragma unroll
    for (int u = 0; u < U; u++)
        if (j + u * kThreads < nch) p[u].load(x + (long long)(j + u * kThreads) * VEC);
}

// KC chunks of VEC logits per thread stay in registers between the passes, the next sm_chunks (block-wide)
// in dynamic shared memory; the rest are read again. Every thread visits its chunks j in ascending order in
// both passes whatever the split, so the result does not depend on it. The loops over the shared-memory and
// re-read parts issue U loads before using them, to keep enough bytes in flight with one block per SM.
template <int VEC, int KC>
__global__ void __launch_bounds__(kThreads, 1)
    cross_entropy_rows(uint16_t *dlogits, float *losses, const uint16_t *logits, const int32_t *targets, int V,
                       float z_loss, float grad_scale, int sm_chunks) {
    using Pack = kl::Bf16Pack<VEC>;
    constexpr int U = 4;
    extern __shared__ uint4 sm_raw[];
    Pack *sm = reinterpret_cast<Pack *>(sm_raw);
    __shared__ MaxSum warp_ms[32];
    __shared__ float sh_lse, sh_xt;
    const long long n = blockIdx.x;
    const uint16_t *x = logits + n * V;
    uint16_t *dx = dlogits ? dlogits + n * V : nullptr;  // may be x itself
    const int target = targets[n];
    if (target == KL_IGNORE_INDEX || target < 0 || target >= V) {  // the whole block leaves together
        const bool masked = target == KL_IGNORE_INDEX;
        if (threadIdx.x == 0) losses[n] = masked ? 0.f : __int_as_float(0x7fc00000);
        if (dx)
            for (int v = threadIdx.x; v < V; v += blockDim.x) dx[v] = masked ? 0 : 0x7fc0;
        return;
    }
    if (threadIdx.x == 0) sh_xt = kl::bf16_to_f32(x[target]);  // read before any thread writes the row

    const int nch = V / VEC, j_sm = KC * kThreads;
    const int j_rest = nch < j_sm ? nch : (nch - j_sm < sm_chunks ? nch : j_sm + sm_chunks);
    Pack cache[KC];
    MaxSum r = {-INFINITY, 0.f};
    load_strided<VEC, KC>(cache, x, threadIdx.x, nch);
#pragma unroll
    for (int k = 0; k < KC; k++) {
        const int j = threadIdx.x + k * kThreads;
        if (j < nch) {
            float f[VEC];
            cache[k].unpack(f);
            accumulate<VEC>(r, f);
        }
    }
    for (int j = threadIdx.x + j_sm; j < nch; j += U * kThreads) {  // shared-memory part, then re-read part
        Pack p[U];
        load_strided<VEC, U>(p, x, j, nch);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int jj = j + u * kThreads;
            if (jj < nch) {
                float f[VEC];
                p[u].unpack(f);
                accumulate<VEC>(r, f);
                if (jj < j_rest) sm[jj - j_sm] = p[u];
            }
        }
    }
    // Fixed reduction tree: butterfly within each warp, then warp 0 combines the 32 warp results.
    r = warp_combine(r);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) warp_ms[warp] = r;
    __syncthreads();
    if (warp == 0) {
        const MaxSum w = warp_combine(lane < (kThreads >> 5) ? warp_ms[lane] : MaxSum{-INFINITY, 0.f});
        if (lane == 0) {
            const float lse = w.m + logf(w.s);
            sh_lse = lse;
            losses[n] = lse - sh_xt + z_loss * lse * lse;
        }
    }
    __syncthreads();
    if (!dx) return;
    const float lse = sh_lse, off = lse * kLog2e, scale = grad_scale * (1.f + 2.f * z_loss * lse);
#pragma unroll
    for (int k = 0; k < KC; k++) {
        const int j = threadIdx.x + k * kThreads;
        if (j < nch) {
            gradient<VEC>(cache[k], j * VEC, target, off, scale, grad_scale);
            cache[k].store(dx + (long long)j * VEC);
        }
    }
    for (int j = threadIdx.x + j_sm; j < j_rest; j += kThreads) {
        Pack p = sm[j - j_sm];
        gradient<VEC>(p, j * VEC, target, off, scale, grad_scale);
        p.store(dx + (long long)j * VEC);
    }
    for (int j = threadIdx.x + j_rest; j < nch; j += U * kThreads) {
        Pack p[U];
        load_strided<VEC, U>(p, x, j, nch);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int jj = j + u * kThreads;
            if (jj < nch) {
                gradient<VEC>(p[u], jj * VEC, target, off, scale, grad_scale);
                p[u].store(dx + (long long)jj * VEC);
            }
        }
    }
}

// One block: each thread adds its strided rows in FP64, then a fixed tree over the block.
__global__ void sum_valid_losses(double *out, const float *losses, const int32_t *targets, int N) {
    __shared__ double warp_sums[32];
    double s = 0.0;
    for (int n = threadIdx.x; n < N; n += blockDim.x)
        if (targets[n] != KL_IGNORE_INDEX) s += (double)losses[n];
    s = kl::warp_sum(s);
    if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        double w = threadIdx.x < (blockDim.x >> 5) ? warp_sums[threadIdx.x] : 0.0;
        w = kl::warp_sum(w);
        if (threadIdx.x == 0) *out = w;
    }
}

// Launches one block per row with as much of each row's remainder (past the register chunks) in shared
// memory as the device allows per block; the opt-in limit is set on the kernel once per process (kiln drives
// one device model per process: every device kiln uses is of one kind).
template <int VEC, int KC>
kl_status launch_rows(uint16_t *d, float *losses, const uint16_t *x, const int32_t *targets, int N, int V,
                      float z_loss, float grad_scale, cudaStream_t stream) {
    static int smem_max = -1;  // usable dynamic shared memory per block, bytes
    if (smem_max < 0) {
        int dev = 0, optin = 0;
        KL_CUDA_CHECK(cudaGetDevice(&dev));
        KL_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        cudaFuncAttributes fa;
        KL_CUDA_CHECK(cudaFuncGetAttributes(&fa, cross_entropy_rows<VEC, KC>));
        const int avail = optin - (int)fa.sharedSizeBytes - 1024;  // static part and a margin for the runtime
        smem_max = avail > 0 ? avail / 16 * 16 : 0;
        KL_CUDA_CHECK(
            cudaFuncSetAttribute(cross_entropy_rows<VEC, KC>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_max));
    }
    const int nch = V / VEC, rest = nch - KC * kThreads;
    const int pack = VEC == 8 ? 16 : 2, cap = smem_max / pack;
    const int sm_chunks = rest <= 0 || !d ? 0 : (rest < cap ? rest : cap);  // loss only: one pass, nothing kept
    cross_entropy_rows<VEC, KC><<<(unsigned)N, kThreads, (size_t)sm_chunks * pack, stream>>>(
        d, losses, x, targets, V, z_loss, grad_scale, sm_chunks);
    return KL_OK;
}

}  // namespace

extern "C" kl_status kl_cross_entropy_cuda(kl_bf16 *dlogits, float *losses, const kl_bf16 *logits,
                                           const int32_t *targets, int N, int V, float z_loss, float grad_scale,
                                           cudaStream_t stream) {
    if (N < 0 || V <= 0)
        return kl_error(KL_ERR_INVALID, "cross-entropy: expected N >= 0 and V > 0 (got %d, %d)", N, V);
    if (N == 0) return KL_OK;
    uint16_t *d = reinterpret_cast<uint16_t *>(dlogits);
    const uint16_t *x = reinterpret_cast<const uint16_t *>(logits);
    const bool vec = V % 8 == 0 && kl::aligned16(logits) && (!dlogits || kl::aligned16(dlogits));
    const kl_status st = vec ? launch_rows<8, 6>(d, losses, x, targets, N, V, z_loss, grad_scale, stream)
                             : launch_rows<1, 16>(d, losses, x, targets, N, V, z_loss, grad_scale, stream);
    if (st != KL_OK) return st;
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

extern "C" kl_status kl_cross_entropy_loss_sum_cuda(double *loss_sum, const float *losses, const int32_t *targets,
                                                    int N, cudaStream_t stream) {
    if (N < 0) return kl_error(KL_ERR_INVALID, "cross-entropy loss sum: expected N >= 0 (got %d)", N);
    sum_valid_losses<<<1, 1024, 0, stream>>>(loss_sum, losses, targets, N);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}
