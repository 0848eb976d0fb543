// rmsnorm.cu — RMSNorm with the residual add fused in, and the Qwen3 q/k norm, forward and backward on BF16
// (kernels/rmsnorm_cuda.h). Both are one "segmented" RMSNorm: each row holds S normalised segments of
// length L (RMSNorm: S = 1, L = C; q/k norm: S = NH+NKV heads of HS), each handled by TPS threads.
#include <initializer_list>

#include "cuda_check.cuh"
#include "rmsnorm_cuda.h"

namespace {

struct Seg {
    int N, S, NQ, L;     // rows, normalised segments per row, segments using w0 (the rest w1), length
    long long stride;    // elements from one row to the next
    int tps;             // threads per segment: a power of two <= 32, or a multiple of 32
};

constexpr int kRowsPerChunk = 32;  // rows per backward block: fixes the dw partial-sum tree (shape-only)

// Register layouts: 16-byte vectors, K = 2 to kVecK = 4 per thread (fwd_vec_k, bwd_vec_k), or single
// elements (sizes that are not a multiple of 8, unaligned pointers), K = 32 forward / 16 backward. Forward
// blocks take up to 1024 threads, so a segment of up to 32768 elements stays in registers; backward holds
// more per thread and takes up to 512 (segments up to 16384 elements, 8192 on the single-element path).
constexpr int kFwdThreads = 1024, kBwdThreads = 512;
constexpr int kVecK = 4, kFwdScalarK = 32, kBwdScalarK = 16;

// Sum over the tps threads of each segment, for R values at once (all threads of the block must call it). Fixed
// order.
template <typename T, int R>
__device__ void seg_sum(T (&v)[R], int tps, T *red) {
    if (tps <= 32) {  // the backward's blocks may end in a partial warp (holding whole segments)
        const unsigned live = blockDim.x - (threadIdx.x & ~31u);
#pragma unroll
        for (int r = 0; r < R; r++) v[r] = kl::group_sum(v[r], tps, live >= 32 ? 0xffffffffu : (1u << live) - 1u);
        return;
    }
    const int warp = threadIdx.x >> 5, wps = tps >> 5, first = warp / wps * wps;
#pragma unroll
    for (int r = 0; r < R; r++) v[r] = kl::warp_sum(v[r]);
    __syncthreads();  // red may still be read by the previous call
    if ((threadIdx.x & 31) == 0)
#pragma unroll
        for (int r = 0; r < R; r++) red[r * 32 + warp] = v[r];
    __syncthreads();
#pragma unroll
    for (int r = 0; r < R; r++) {
        T t = 0;
        for (int i = 0; i < wps; i++) t += red[r * 32 + first + i];
        v[r] = t;
    }
}

// Forward: one segment per group of tps threads, the segment held in registers between the two passes.
template <int VEC, int K>
__global__ void __launch_bounds__(kFwdThreads)
    rms_forward(uint16_t *out, uint16_t *res_out, float *rstd, const uint16_t *a, const uint16_t *b,
                const uint16_t *w0, const uint16_t *w1, Seg g, float eps) {
    __shared__ float red[32];
    const int lane = threadIdx.x % g.tps;
    const long long seg = (long long)blockIdx.x * (blockDim.x / g.tps) + threadIdx.x / g.tps;
    const bool active = seg < (long long)g.N * g.S;
    const int n = active ? (int)(seg / g.S) : 0, h = active ? (int)(seg % g.S) : 0;
    const long long base = (long long)n * g.stride + (long long)h * g.L;
    const uint16_t *w = h < g.NQ ? w0 : w1;
    const int nchunk = g.L / VEC;

    // On the vector path every load of the segment is issued before any is used: the residual's stores below
    // could alias them as far as the compiler knows, so loads left inside that loop would each wait for the
    // stores before them. (The single-element path, 32 values per thread, has no registers to spare for it.)
    constexpr bool kPreload = VEC > 1;
    kl::Bf16Pack<VEC> xs[K], bs[kPreload ? K : 1];
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int j = lane + k * g.tps;
        if (kPreload && active && j < nchunk) {
            const long long o = base + (long long)j * VEC;
            xs[k].load(a + o);
            if (b) bs[kPreload ? k : 0].load(b + o);
        }
    }
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int j = lane + k * g.tps;
        if (active && j < nchunk) {
            const long long o = base + (long long)j * VEC;
            if (!kPreload) xs[k].load(a + o);
            if (b) {  // residual add, rounded to BF16 as stored: the norm sees exactly what backward will
                kl::Bf16Pack<VEC> &bp = bs[kPreload ? k : 0];
                if (!kPreload) bp.load(b + o);
                float fa[VEC], fb[VEC];
                xs[k].unpack(fa);
                bp.unpack(fb);
#pragma unroll
                for (int i = 0; i < VEC; i++) fa[i] += fb[i];
                xs[k].pack(fa);
                if (res_out) xs[k].store(res_out + o);
            }
            float f[VEC];
            xs[k].unpack(f);
#pragma unroll
            for (int i = 0; i < VEC; i++) ss += f[i] * f[i];
        }
    }
    float sum[1] = {ss};
    seg_sum(sum, g.tps, red);
    const float r = 1.0f / sqrtf(sum[0] / (float)g.L + eps);
    if (active && lane == 0) rstd[seg] = r;  // rstd(N, S): segment index n*S + h
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int j = lane + k * g.tps;
        if (active && j < nchunk) {
            const long long o = base + (long long)j * VEC;
            kl::Bf16Pack<VEC> wp;
            wp.load(w + (long long)j * VEC);
            float f[VEC], fw[VEC];
            xs[k].unpack(f);
            wp.unpack(fw);
#pragma unroll
            for (int i = 0; i < VEC; i++) f[i] = fw[i] * (f[i] * r);  // normalise, then weight (HF order)
            kl::Bf16Pack<VEC> op;
            op.pack(f);
            op.store(out + o);
        }
    }
}

// Backward. Block (blockIdx.x, blockIdx.y) covers rows [32 x, 32 x + 32) and segments [hpb y, hpb y + hpb)
// with tps x hpb x rpb threads, R of each thread's rows at a time; a thread keeps one segment index h (so one
// weight) for all its rows and accumulates its columns' dw terms in registers. At the end the block sums those
// per weight in a fixed order and writes one partial row per weight: partial[(x * gridDim.y + y)][type][L].
template <int VEC, int K, int R>
__global__ void __launch_bounds__(kBwdThreads)
    rms_backward(uint16_t *dx, float *partial, const uint16_t *dout, const uint16_t *x, const uint16_t *w0,
                 const uint16_t *w1, const float *rstd, Seg g, int accumulate, int hpb, int ntypes) {
    extern __shared__ float dw_sh[];  // (ntypes, L) when the block holds more than one segment
    __shared__ float red[R * 32];
    const int lane = threadIdx.x % g.tps, y = threadIdx.x / g.tps;
    const int Y = blockDim.x / g.tps, rpb = Y / hpb;
    const int hl = y % hpb, z = y / hpb;
    const int h = blockIdx.y * hpb + hl;
    const bool head_ok = h < g.S;
    const int type = h < g.NQ ? 0 : 1;
    const uint16_t *w = type == 0 ? w0 : w1;
    const int nchunk = g.L / VEC;

    kl::Bf16Pack<VEC> wp[K];
    float acc[K][VEC];
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int j = lane + k * g.tps;
        if (head_ok && j < nchunk) wp[k].load(w + (long long)j * VEC);
#pragma unroll
        for (int i = 0; i < VEC; i++) acc[k][i] = 0.f;
    }

    const int r0 = blockIdx.x * kRowsPerChunk;
    const int iters = (kRowsPerChunk + rpb - 1) / rpb;  // the same for every thread: seg_sum syncs
    for (int it = 0; it < iters; it += R) {
        // R rows at a time, all of their loads (dout, x and, when accumulating, the old dx) issued before any is
        // used, and their dot products reduced together: one memory round trip and one reduction per R rows.
        bool ok[R];
        long long base[R];
        float r[R], dot[R];
        kl::Bf16Pack<VEC> gp[R][K], xp[R][K], dp[R][K];
#pragma unroll
        for (int q = 0; q < R; q++) {
            const int rr = z + (it + q) * rpb, n = r0 + rr;
            ok[q] = head_ok && it + q < iters && rr < kRowsPerChunk && n < g.N;
            base[q] = ok[q] ? (long long)n * g.stride + (long long)h * g.L : 0;
            r[q] = ok[q] ? rstd[(long long)n * g.S + h] : 0.f;
#pragma unroll
            for (int k = 0; k < K; k++) {
                const int j = lane + k * g.tps;
                if (ok[q] && j < nchunk) {
                    const long long o = base[q] + (long long)j * VEC;
                    gp[q][k].load(dout + o);
                    xp[q][k].load(x + o);
                    if (accumulate) dp[q][k].load(dx + o);
                }
            }
        }
#pragma unroll
        for (int q = 0; q < R; q++) {
            dot[q] = 0.f;  // sum_j g_j w_j x_j
#pragma unroll
            for (int k = 0; k < K; k++) {
                const int j = lane + k * g.tps;
                if (ok[q] && j < nchunk) {
                    float fg[VEC], fx[VEC], fw[VEC];
                    gp[q][k].unpack(fg);
                    xp[q][k].unpack(fx);
                    wp[k].unpack(fw);
#pragma unroll
                    for (int i = 0; i < VEC; i++) dot[q] += fg[i] * fw[i] * fx[i];
                }
            }
        }
        seg_sum(dot, g.tps, red);
#pragma unroll
        for (int q = 0; q < R; q++) {
            const float coef = r[q] * r[q] * r[q] * dot[q] / (float)g.L;
#pragma unroll
            for (int k = 0; k < K; k++) {
                const int j = lane + k * g.tps;
                if (ok[q] && j < nchunk) {
                    const long long o = base[q] + (long long)j * VEC;
                    float fg[VEC], fx[VEC], fw[VEC], d[VEC];
                    gp[q][k].unpack(fg);
                    xp[q][k].unpack(fx);
                    wp[k].unpack(fw);
#pragma unroll
                    for (int i = 0; i < VEC; i++) {
                        d[i] = r[q] * fw[i] * fg[i] - fx[i] * coef;
                        acc[k][i] += fg[i] * fx[i] * r[q];
                    }
                    if (accumulate) {  // dx += d (the residual-stream gradient)
                        float fd[VEC];
                        dp[q][k].unpack(fd);
#pragma unroll
                        for (int i = 0; i < VEC; i++) d[i] += fd[i];
                    }
                    dp[q][k].pack(d);
                    dp[q][k].store(dx + o);
                }
            }
        }
    }

    float *dst = partial + (size_t)(blockIdx.x * gridDim.y + blockIdx.y) * ntypes * g.L;
    if (Y == 1) {  // one segment per block: its sums are the partial row (the other weight's row is zero)
#pragma unroll
        for (int k = 0; k < K; k++) {
            const int j = lane + k * g.tps;
            if (j < nchunk)
#pragma unroll
                for (int i = 0; i < VEC; i++) dst[type * g.L + j * VEC + i] = head_ok ? acc[k][i] : 0.f;
        }
        if (ntypes == 2)
            for (int c = threadIdx.x; c < g.L; c += blockDim.x) dst[(1 - type) * g.L + c] = 0.f;
        return;
    }
    for (int c = threadIdx.x; c < ntypes * g.L; c += blockDim.x) dw_sh[c] = 0.f;
    __syncthreads();
    for (int yy = 0; yy < Y; yy++) {  // segments added one after another: a fixed order
        if (y == yy && head_ok) {
#pragma unroll
            for (int k = 0; k < K; k++) {
                const int j = lane + k * g.tps;
                if (j < nchunk)
#pragma unroll
                    for (int i = 0; i < VEC; i++) dw_sh[type * g.L + j * VEC + i] += acc[k][i];
            }
        }
        __syncthreads();
    }
    for (int c = threadIdx.x; c < ntypes * g.L; c += blockDim.x) dst[c] = dw_sh[c];
}

// dw_t[c] += sum over m of partial[m][t][c]: 32 columns x 32 strided slices per block, then the 32 slice
// sums added in order. The tree depends only on M and L, so the result is run-to-run identical.
__global__ void dw_reduce(float *dw0, float *dw1, const float *partial, int M, int ntypes, int L) {
    __shared__ float sh[32][33];
    const int c = blockIdx.x * 32 + threadIdx.x, t = blockIdx.y;
    float s = 0.f;
    if (c < L)
        for (int m = threadIdx.y; m < M; m += 32) s += partial[((size_t)m * ntypes + t) * L + c];
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < L) {
        float tot = 0.f;
        for (int i = 0; i < 32; i++) tot += sh[i][threadIdx.x];
        float *dw = t == 0 ? dw0 : dw1;
        dw[c] += tot;
    }
}

// Threads per segment for a segment of L elements in VEC-element chunks, k chunks per thread; 0 if L is
// too long for one block of max_threads.
int threads_per_segment(int L, int vec, int k, int max_threads) {
    const int need = (L / vec + k - 1) / k;
    int t = 1;
    if (need <= 32)
        while (t < need) t <<= 1;
    else
        t = (need + 31) / 32 * 32;
    return t <= max_threads ? t : 0;
}
// Vector chunks per thread. Forward: 2, or 4 for segments over 16384 elements (up to 32768); on an H200 at
// N=16384 the residual + RMSNorm forward takes 52.3 / 52.7 / 53.0 us with K = 2 / 3 / 4 at C=1536 and the Qwen3
// q/k norm of 128-wide heads 99.4 / 104.6 / 109.2 us. Backward: 2 up to 1024 elements (half the registers per
// thread, twice the warps in flight: C=896 47.5 us against 52.2 us with 4), above that 3 or 4, whichever leaves
// fewer of the threads' chunk slots idle (3 on a tie). At C=1536 K = 3 fills 64 threads exactly (66.0 us), where
// 4 leaves a quarter of the slots idle and spills (71.9 us) and 2 takes 96 threads (76.2 us).
// With K = 2 the backward has the registers to take two rows at a time (R = 2: twice the loads in flight, half
// the reductions): H200, N=32768, C=896 88.0 -> 76.3 us, bit for bit the same. With K = 3 two rows spill (C=1536
// 122 -> 137 us), and so does every way tried of making room (dw terms in shared memory, 3 blocks per SM).
int fwd_vec_k(int L) { return L <= kFwdThreads * 2 * 8 ? 2 : 4; }
int fwd_tps(int L, int vec) {
    return threads_per_segment(L, vec, vec == 8 ? fwd_vec_k(L) : kFwdScalarK, kFwdThreads);
}
int bwd_vec_k(int L) {
    if (L <= 1024) return 2;
    const int t3 = threads_per_segment(L, 8, 3, kBwdThreads), t4 = threads_per_segment(L, 8, 4, kBwdThreads);
    return t3 != 0 && t3 * 3 <= t4 * 4 ? 3 : 4;  // slots t K against the same chunks: fewer idle
}
int bwd_tps(int L, int vec) { return threads_per_segment(L, vec, vec == 8 ? bwd_vec_k(L) : kBwdScalarK, kBwdThreads); }

// Backward block shape: hpb segments (a divisor of S, so no block is half empty) and rpb rows at once.
void backward_shape(int S, int tps, int *hpb, int *rpb) {
    int best = 1;
    if (tps <= 128)
        for (int d = 1; d <= S && d * tps <= 512; d++)
            if (S % d == 0) best = d;
    *hpb = best;
    *rpb = best * tps < 256 ? 256 / (best * tps) : 1;
}

size_t backward_scratch_floats(int N, int S, int ntypes, int L, int vec) {
    const int tps = bwd_tps(L, vec);
    if (tps == 0) return 0;
    int hpb, rpb;
    backward_shape(S, tps, &hpb, &rpb);
    const size_t G = (size_t)(N + kRowsPerChunk - 1) / kRowsPerChunk;
    return G * (size_t)(S / hpb) * (size_t)ntypes * (size_t)L;
}

size_t scratch_bytes(int N, int S, int ntypes, int L) {
    if (N <= 0 || S <= 0 || L <= 0) return 0;
    size_t a = backward_scratch_floats(N, S, ntypes, L, 8), b = backward_scratch_floats(N, S, ntypes, L, 1);
    return (a > b ? a : b) * sizeof(float);
}

// Whether the 16-byte path applies: every segment and every pointer 16-byte aligned.
bool vec_ok(const Seg &g, std::initializer_list<const void *> ptrs) {
    if (g.L % 8 != 0 || g.stride % 8 != 0) return false;
    for (const void *p : ptrs)
        if (p && !kl::aligned16(p)) return false;
    return true;
}

kl_status launch_forward(const char *op, uint16_t *out, uint16_t *res_out, float *rstd, const uint16_t *a,
                         const uint16_t *b, const uint16_t *w0, const uint16_t *w1, Seg g, float eps,
                         cudaStream_t stream) {
    const int vec = vec_ok(g, {out, res_out, a, b, w0, w1}) ? 8 : 1;
    g.tps = fwd_tps(g.L, vec);
    if (g.tps == 0)
        return kl_error(KL_ERR_UNSUPPORTED, "%s: a normalised size of %d is too large (at most %d)", op, g.L,
                        kFwdThreads * kFwdScalarK);
    const int spb = g.tps < 256 ? 256 / g.tps : 1;
    const long long segs = (long long)g.N * g.S;
    const unsigned blocks = (unsigned)((segs + spb - 1) / spb);
    if (vec == 8 && fwd_vec_k(g.L) == 2)
        rms_forward<8, 2><<<blocks, spb * g.tps, 0, stream>>>(out, res_out, rstd, a, b, w0, w1, g, eps);
    else if (vec == 8)
        rms_forward<8, kVecK><<<blocks, spb * g.tps, 0, stream>>>(out, res_out, rstd, a, b, w0, w1, g, eps);
    else
        rms_forward<1, kFwdScalarK><<<blocks, spb * g.tps, 0, stream>>>(out, res_out, rstd, a, b, w0, w1, g, eps);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

kl_status launch_backward(const char *op, uint16_t *dx, float *dw0, float *dw1, const uint16_t *dout,
                          const uint16_t *x, const uint16_t *w0, const uint16_t *w1, const float *rstd, Seg g,
                          int accumulate, void *scratch, cudaStream_t stream) {
    const int vec = vec_ok(g, {dx, dout, x, w0, w1}) ? 8 : 1;
    g.tps = bwd_tps(g.L, vec);
    if (g.tps == 0)
        return kl_error(KL_ERR_UNSUPPORTED, "%s: a normalised size of %d is too large (at most %d, or %d when not a "
                        "multiple of 8)", op, g.L, kBwdThreads * kVecK * 8, kBwdThreads * kBwdScalarK);
    if (!scratch) return kl_error(KL_ERR_INVALID, "%s: expected a scratch buffer for the weight-gradient sums", op);
    const int ntypes = g.NQ < g.S ? 2 : 1;
    int hpb, rpb;
    backward_shape(g.S, g.tps, &hpb, &rpb);
    const int threads = g.tps * hpb * rpb;
    const dim3 grid((unsigned)((g.N + kRowsPerChunk - 1) / kRowsPerChunk), (unsigned)(g.S / hpb));
    const size_t smem = hpb * rpb > 1 ? (size_t)ntypes * g.L * sizeof(float) : 0;
    float *partial = static_cast<float *>(scratch);
    if (vec == 8 && bwd_vec_k(g.L) == 2)
        rms_backward<8, 2, 2><<<grid, threads, smem, stream>>>(dx, partial, dout, x, w0, w1, rstd, g, accumulate, hpb,
                                                            ntypes);
    else if (vec == 8 && bwd_vec_k(g.L) == 3)
        rms_backward<8, 3, 1><<<grid, threads, smem, stream>>>(dx, partial, dout, x, w0, w1, rstd, g, accumulate, hpb,
                                                            ntypes);
    else if (vec == 8)
        rms_backward<8, kVecK, 1><<<grid, threads, smem, stream>>>(dx, partial, dout, x, w0, w1, rstd, g, accumulate,
                                                                hpb, ntypes);
    else
        rms_backward<1, kBwdScalarK, 1><<<grid, threads, smem, stream>>>(dx, partial, dout, x, w0, w1, rstd, g,
                                                                   accumulate, hpb, ntypes);
    KL_CUDA_CHECK_LAUNCH();
    const int M = (int)(grid.x * grid.y);
    dw_reduce<<<dim3((unsigned)((g.L + 31) / 32), (unsigned)ntypes), dim3(32, 32), 0, stream>>>(dw0, dw1, partial, M,
                                                                                                 ntypes, g.L);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

const uint16_t *u16(const kl_bf16 *p) { return reinterpret_cast<const uint16_t *>(p); }
uint16_t *u16(kl_bf16 *p) { return reinterpret_cast<uint16_t *>(p); }

// Copies the value heads of every row (columns [qk, row) of qkv) when source and destination differ.
kl_status copy_v_heads(kl_bf16 *dst, const kl_bf16 *src, int N, int NH, int NKV, int HS, cudaStream_t stream) {
    if (dst == src || NKV == 0 || N == 0) return KL_OK;
    const size_t row = (size_t)(NH + 2 * NKV) * HS * sizeof(kl_bf16), off = (size_t)(NH + NKV) * HS;
    KL_CUDA_CHECK(cudaMemcpy2DAsync(dst + off, row, src + off, row, (size_t)NKV * HS * sizeof(kl_bf16), (size_t)N,
                                    cudaMemcpyDeviceToDevice, stream));
    return KL_OK;
}

}  // namespace

extern "C" kl_status kl_fused_residual_rmsnorm_forward_cuda(kl_bf16 *res_out, kl_bf16 *out, float *rstd,
                                                            const kl_bf16 *a, const kl_bf16 *b, const kl_bf16 *w,
                                                            int N, int C, float eps, cudaStream_t stream) {
    if (N < 0 || C <= 0) return kl_error(KL_ERR_INVALID, "rmsnorm forward: expected N >= 0, C > 0 (got %d, %d)", N, C);
    if (N == 0) return KL_OK;
    const Seg g = {N, 1, 1, C, C, 0};
    return launch_forward("rmsnorm forward", u16(out), b ? u16(res_out) : nullptr, rstd, u16(a), u16(b), u16(w),
                          u16(w), g, eps, stream);
}

extern "C" kl_status kl_rmsnorm_forward_cuda(kl_bf16 *out, float *rstd, const kl_bf16 *x, const kl_bf16 *w, int N,
                                             int C, float eps, cudaStream_t stream) {
    return kl_fused_residual_rmsnorm_forward_cuda(nullptr, out, rstd, x, nullptr, w, N, C, eps, stream);
}

extern "C" size_t kl_rmsnorm_backward_scratch_bytes(int N, int C) { return scratch_bytes(N, 1, 1, C); }

extern "C" kl_status kl_rmsnorm_backward_cuda(kl_bf16 *dx, float *dw, const kl_bf16 *dout, const kl_bf16 *x,
                                              const kl_bf16 *w, const float *rstd, int N, int C, void *scratch,
                                              cudaStream_t stream) {
    if (N < 0 || C <= 0)
        return kl_error(KL_ERR_INVALID, "rmsnorm backward: expected N >= 0, C > 0 (got %d, %d)", N, C);
    if (N == 0) return KL_OK;
    const Seg g = {N, 1, 1, C, C, 0};
    return launch_backward("rmsnorm backward", u16(dx), dw, dw, u16(dout), u16(x), u16(w), u16(w), rstd, g, 1,
                           scratch, stream);
}

extern "C" kl_status kl_qknorm_forward_cuda(kl_bf16 *qkv_out, float *rstd, const kl_bf16 *qkv_in,
                                            const kl_bf16 *q_weight, const kl_bf16 *k_weight, int N, int NH, int NKV,
                                            int HS, float eps, cudaStream_t stream) {
    if (N < 0 || NH <= 0 || NKV <= 0 || HS <= 0)
        return kl_error(KL_ERR_INVALID, "qknorm forward: expected N >= 0 and NH, NKV, HS > 0 (got %d, %d, %d, %d)",
                        N, NH, NKV, HS);
    if (N == 0) return KL_OK;
    const Seg g = {N, NH + NKV, NH, HS, (long long)(NH + 2 * NKV) * HS, 0};
    KL_TRY(launch_forward("qknorm forward", u16(qkv_out), nullptr, rstd, u16(qkv_in), nullptr, u16(q_weight),
                          u16(k_weight), g, eps, stream));
    return copy_v_heads(qkv_out, qkv_in, N, NH, NKV, HS, stream);
}

extern "C" size_t kl_qknorm_backward_scratch_bytes(int N, int NH, int NKV, int HS) {
    return scratch_bytes(N, NH + NKV, 2, HS);
}

extern "C" kl_status kl_qknorm_backward_cuda(kl_bf16 *dqkv_in, float *dq_weight, float *dk_weight,
                                             const kl_bf16 *dqkv_out, const kl_bf16 *qkv_in, const kl_bf16 *q_weight,
                                             const kl_bf16 *k_weight, const float *rstd, int N, int NH, int NKV,
                                             int HS, void *scratch, cudaStream_t stream) {
    if (N < 0 || NH <= 0 || NKV <= 0 || HS <= 0)
        return kl_error(KL_ERR_INVALID, "qknorm backward: expected N >= 0 and NH, NKV, HS > 0 (got %d, %d, %d, %d)",
                        N, NH, NKV, HS);
    if (N == 0) return KL_OK;
    const Seg g = {N, NH + NKV, NH, HS, (long long)(NH + 2 * NKV) * HS, 0};
    KL_TRY(launch_backward("qknorm backward", u16(dqkv_in), dq_weight, dk_weight, u16(dqkv_out), u16(qkv_in),
                           u16(q_weight), u16(k_weight), rstd, g, 0, scratch, stream));
    return copy_v_heads(dqkv_in, dqkv_out, N, NH, NKV, HS, stream);
}
