// attention.cu — kiln's own causal GQA attention kernels (kernels/attention_cuda.h), the fallback when cuDNN is
// absent or declines a shape. Two paths:
//  * tensor-core (mma.sync m16n8k16 BF16, FP32 accumulate; sm_80+, so every kiln target): flash-attention style,
//    64-query x 64-key tiles, 4 warps x 16 query rows, online softmax in registers; HS <= 128 with HS % 8 == 0
//    (padded to 64 or 128 with zeros in shared memory) and 16-byte aligned tensors;
//  * simple: one warp per query (or key) row, any HS <= 256 and any alignment.
// Backward recomputes P from lse (D = rowsum(dout * out) first), computes dq per query tile and dk/dv per key tile
// (looping over the group's query heads in order), so nothing is accumulated with atomics: bit-identical reruns.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>

#include "attention_cuda.h"
#include "cuda_check.cuh"

namespace {

typedef __nv_bfloat16 bf16;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr int kThreads = 128;  // 4 warps
constexpr int kTile = 64;      // query rows per block (forward, dq) and key rows per block (dk/dv)

// ---- PTX helpers (sm_80 and newer) -------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16-byte asynchronous global -> shared copy; !valid zero-fills the destination and reads nothing.
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    const int bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 BF16 matrices; lane i gives the address of row i % 8 of matrix i / 8; register j receives matrix j's
// elements (row lane / 4, columns 2 (lane % 4) and +1) — the mma fragment layout. .trans delivers the transpose.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

// d(16x8, FP32) += a(16x16 BF16, row major) * b(16x8 BF16, column major).
// Fragments (g = lane / 4, t = lane % 4): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..],
// a3 = A[g+8][2t+8..]; b0 = B[2t..2t+1][g], b1 = B[2t+8..][g]; d0,d1 = D[g][2t..], d2,d3 = D[g+8][2t..].
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The accumulators of two adjacent 16x8 tiles (columns c..c+15) as the A fragment of the next product whose k runs
// over those 16 columns — the flash-attention register trick (P or dS never touches shared memory).
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
    a[0] = kl::pack_bf16x2(lo[0], lo[1]);
    a[1] = kl::pack_bf16x2(lo[2], lo[3]);
    a[2] = kl::pack_bf16x2(hi[0], hi[1]);
    a[3] = kl::pack_bf16x2(hi[2], hi[3]);
}

// A fragment (16 rows x 16 columns at (row0, col0)) of a row-major shared tile with LDS elements a row.
template <int LDS>
__device__ __forceinline__ void ld_a(uint32_t (&a)[4], const bf16 *tile, int row0, int col0, int lane) {
    ldsm_x4(a, tile + (row0 + (lane & 15)) * LDS + col0 + (lane >> 4) * 8);
}
// B fragments of two n-tiles (n0..n0+7, n0+8..n0+15) for k = k0..k0+15, where the tile holds B^T row-major:
// tile[n][k] (keys x head dim for S = Q K^T). b[0], b[1] -> n-tile n0; b[2], b[3] -> n-tile n0 + 8.
template <int LDS>
__device__ __forceinline__ void ld_b_nk(uint32_t (&b)[4], const bf16 *tile, int n0, int k0, int lane) {
    ldsm_x4(b, tile + (n0 + (lane & 7) + (lane >> 4) * 8) * LDS + k0 + ((lane >> 3) & 1) * 8);
}
// B fragments of two n-tiles where the tile holds B row-major: tile[k][n] (keys x head dim for O = P V).
template <int LDS>
__device__ __forceinline__ void ld_b_kn(uint32_t (&b)[4], const bf16 *tile, int k0, int n0, int lane) {
    ldsm_x4_t(b, tile + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + n0 + (lane >> 4) * 8);
}

// Copies rows [row0, row0 + ROWS) of a strided (nrows x HS) BF16 view into a shared tile (ROWS x LDS), columns
// < HS only; rows past nrows become zeros. HS % 8 == 0 and 16-byte aligned rows (checked by the launcher).
template <int ROWS, int LDS>
__device__ __forceinline__ void load_tile(bf16 *tile, const bf16 *g, size_t row_stride, int row0, int nrows, int HS,
                                          int tid) {
    const int chunks = HS >> 3;
    for (int c = tid; c < ROWS * chunks; c += kThreads) {
        const int r = c / chunks, col = (c - r * chunks) * 8, gr = row0 + r;
        const bool valid = gr < nrows;
        cp_async16(tile + r * LDS + col, valid ? g + (size_t)gr * row_stride + col : g, valid);
    }
}

// Zeroes `bytes` (a multiple of 16) of shared memory; the padding columns HS..HSP then stay zero for good.
__device__ __forceinline__ void zero_smem(void *p, int bytes, int tid) {
    uint4 *q = (uint4 *)p;
    for (int i = tid; i < bytes / 16; i += kThreads) q[i] = make_uint4(0u, 0u, 0u, 0u);
}

__device__ __forceinline__ void st_bf16x2(bf16 *p, float a, float b) { *(uint32_t *)p = kl::pack_bf16x2(a, b); }

// ---- tensor-core forward -----------------------------------------------------------------------------------------
// grid (ceil(T/64), NH, B), 128 threads. Warp w owns query rows q0 + 16w .. +15; the thread holds rows g and g+8.

template <int HSP>
__global__ void __launch_bounds__(kThreads) attn_fwd_mma(bf16 *out, float *lse, const bf16 *qkv, int T, int NH,
                                                         int NKV, int HS, float scale_log2) {
    constexpr int LDS = HSP + 8;  // +16 bytes a row: ldmatrix rows fall in distinct banks
    constexpr int ND = HSP / 8, NK = HSP / 16;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *Qs = (bf16 *)smem, *Ks = Qs + kTile * LDS, *Vs = Ks + kTile * LDS;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int qt = gridDim.x - 1 - blockIdx.x;  // the longest (last) query tiles start first
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / (NH / NKV);
    const size_t rs = (size_t)(NH + 2 * NKV) * HS;
    const bf16 *base = qkv + (size_t)b * T * rs;
    const bf16 *qg = base + (size_t)h * HS, *kg = base + (size_t)(NH + kvh) * HS, *vg = base + (size_t)(NH + NKV + kvh) * HS;
    const int q0 = qt * kTile, row_a = q0 + warp * 16 + g, row_b = row_a + 8;

    zero_smem(smem, 3 * kTile * LDS * 2, tid);
    __syncthreads();
    load_tile<kTile, LDS>(Qs, qg, rs, q0, T, HS, tid);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    uint32_t qf[NK][4];
#pragma unroll
    for (int ks = 0; ks < NK; ks++) ld_a<LDS>(qf[ks], Qs, warp * 16, ks * 16, lane);

    float o[ND][4];
#pragma unroll
    for (int i = 0; i < ND; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f;

    for (int kt = 0; kt <= qt; kt++) {
        const int k0 = kt * kTile;
        __syncthreads();  // everyone is done with the previous K and V
        load_tile<kTile, LDS>(Ks, kg, rs, k0, T, HS, tid);
        cp_async_commit();
        load_tile<kTile, LDS>(Vs, vg, rs, k0, T, HS, tid);
        cp_async_commit();
        cp_async_wait<1>();  // K has landed (V may still be in flight)
        __syncthreads();

        float s[8][4];
#pragma unroll
        for (int i = 0; i < 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
        for (int ks = 0; ks < NK; ks++)
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t kf[4];
                ld_b_nk<LDS>(kf, Ks, np * 16, ks * 16, lane);
                mma16816(s[2 * np], qf[ks], kf[0], kf[1]);
                mma16816(s[2 * np + 1], qf[ks], kf[2], kf[3]);
            }

        // scores in log2 units, causal mask (only tiles reaching past this warp's first row need it)
        const bool diag = k0 + kTile - 1 > q0 + warp * 16;
        float mx_a = m_a, mx_b = m_b;
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = k0 + nt * 8 + 2 * t4 + (e & 1), row = e < 2 ? row_a : row_b;
                float v = s[nt][e] * scale_log2;
                if (diag && key > row) v = -INFINITY;
                s[nt][e] = v;
                if (e < 2)
                    mx_a = fmaxf(mx_a, v);
                else
                    mx_b = fmaxf(mx_b, v);
            }
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
        // key 0 .. k0 is never masked for rows >= k0, so mx is finite from the first tile on
        const float al_a = exp2f(m_a - mx_a), al_b = exp2f(m_b - mx_b);
        m_a = mx_a;
        m_b = mx_b;
        l_a *= al_a;
        l_b *= al_b;
#pragma unroll
        for (int i = 0; i < ND; i++) {
            o[i][0] *= al_a;
            o[i][1] *= al_a;
            o[i][2] *= al_b;
            o[i][3] *= al_b;
        }
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            s[nt][0] = exp2f(s[nt][0] - mx_a);
            s[nt][1] = exp2f(s[nt][1] - mx_a);
            s[nt][2] = exp2f(s[nt][2] - mx_b);
            s[nt][3] = exp2f(s[nt][3] - mx_b);
            l_a += s[nt][0] + s[nt][1];  // per-thread partial row sums; reduced over the 4 lanes at the end
            l_b += s[nt][2] + s[nt][3];
        }

        cp_async_wait<0>();  // V
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t pa[4];
            acc_to_a(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
            for (int dp = 0; dp < ND / 2; dp++) {
                uint32_t vf[4];
                ld_b_kn<LDS>(vf, Vs, kk * 16, dp * 16, lane);
                mma16816(o[2 * dp], pa, vf[0], vf[1]);
                mma16816(o[2 * dp + 1], pa, vf[2], vf[3]);
            }
        }
    }

    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    const float inv_a = 1.f / l_a, inv_b = 1.f / l_b;
    const size_t orow = (size_t)NH * HS;
    bf16 *oa = out + ((size_t)b * T + row_a) * orow + (size_t)h * HS, *ob = oa + 8 * orow;
#pragma unroll
    for (int i = 0; i < ND; i++) {
        const int d = i * 8 + 2 * t4;
        if (d >= HS) continue;
        if (row_a < T) st_bf16x2(oa + d, o[i][0] * inv_a, o[i][1] * inv_a);
        if (row_b < T) st_bf16x2(ob + d, o[i][2] * inv_b, o[i][3] * inv_b);
    }
    if (t4 == 0) {
        float *lrow = lse + ((size_t)b * NH + h) * T;
        if (row_a < T) lrow[row_a] = (m_a + log2f(l_a)) * kLn2;
        if (row_b < T) lrow[row_b] = (m_b + log2f(l_b)) * kLn2;
    }
}

// ---- backward pre-pass: D = rowsum(dout * out), one warp per (b, t, h) row -----------------------------------------

__global__ void attn_bwd_dot(float *Dvec, const bf16 *dout, const bf16 *out, int B, int T, int NH, int HS) {
    const size_t r = (size_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (r >= (size_t)B * T * NH) return;
    const bf16 *a = dout + r * HS, *c = out + r * HS;
    float s = 0.f;
    for (int d = lane; d < HS; d += 32) s += __bfloat162float(a[d]) * __bfloat162float(c[d]);
    s = kl::warp_sum(s);
    const int h = (int)(r % NH);
    const size_t bt = r / NH;
    const int t = (int)(bt % T), b = (int)(bt / T);
    if (lane == 0) Dvec[((size_t)b * NH + h) * T + t] = s;
}

// ---- tensor-core backward, query side: dq ------------------------------------------------------------------------
// grid (ceil(T/64), NH, B). P = exp2(s - lse2), dP = dO V^T, dS = P (dP - D), dq = scale * dS K.

template <int HSP>
__global__ void __launch_bounds__(kThreads) attn_bwd_dq_mma(bf16 *dqkv, const bf16 *dout, const float *lse,
                                                            const float *Dvec, const bf16 *qkv, int T, int NH,
                                                            int NKV, int HS, float scale_log2, float scale) {
    constexpr int LDS = HSP + 8;
    constexpr int ND = HSP / 8, NK = HSP / 16;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *Qs = (bf16 *)smem, *dOs = Qs + kTile * LDS, *Ks = dOs + kTile * LDS, *Vs = Ks + kTile * LDS;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int qt = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / (NH / NKV);
    const size_t rs = (size_t)(NH + 2 * NKV) * HS, orow = (size_t)NH * HS;
    const bf16 *base = qkv + (size_t)b * T * rs;
    const bf16 *qg = base + (size_t)h * HS, *kg = base + (size_t)(NH + kvh) * HS, *vg = base + (size_t)(NH + NKV + kvh) * HS;
    const bf16 *dog = dout + (size_t)b * T * orow + (size_t)h * HS;
    const int q0 = qt * kTile, row_a = q0 + warp * 16 + g, row_b = row_a + 8;
    const float *lrow = lse + ((size_t)b * NH + h) * T, *Drow = Dvec + ((size_t)b * NH + h) * T;
    // rows past T: lse = +inf makes P = 0, so they stay finite (and are not stored)
    const float lse_a = row_a < T ? lrow[row_a] * kLog2e : INFINITY, lse_b = row_b < T ? lrow[row_b] * kLog2e : INFINITY;
    const float D_a = row_a < T ? Drow[row_a] : 0.f, D_b = row_b < T ? Drow[row_b] : 0.f;

    zero_smem(smem, 4 * kTile * LDS * 2, tid);
    __syncthreads();
    load_tile<kTile, LDS>(Qs, qg, rs, q0, T, HS, tid);
    load_tile<kTile, LDS>(dOs, dog, orow, q0, T, HS, tid);
    cp_async_commit();

    float dq[ND][4];
#pragma unroll
    for (int i = 0; i < ND; i++) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.f;

    for (int kt = 0; kt <= qt; kt++) {
        const int k0 = kt * kTile;
        __syncthreads();
        load_tile<kTile, LDS>(Ks, kg, rs, k0, T, HS, tid);
        load_tile<kTile, LDS>(Vs, vg, rs, k0, T, HS, tid);
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();

        float s[8][4], dp[8][4];
#pragma unroll
        for (int i = 0; i < 8; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[i][e] = dp[i][e] = 0.f;
#pragma unroll
        for (int ks = 0; ks < NK; ks++) {
            uint32_t qa[4], da[4];
            ld_a<LDS>(qa, Qs, warp * 16, ks * 16, lane);
            ld_a<LDS>(da, dOs, warp * 16, ks * 16, lane);
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t kf[4], vf[4];
                ld_b_nk<LDS>(kf, Ks, np * 16, ks * 16, lane);
                ld_b_nk<LDS>(vf, Vs, np * 16, ks * 16, lane);
                mma16816(s[2 * np], qa, kf[0], kf[1]);
                mma16816(s[2 * np + 1], qa, kf[2], kf[3]);
                mma16816(dp[2 * np], da, vf[0], vf[1]);
                mma16816(dp[2 * np + 1], da, vf[2], vf[3]);
            }
        }
        const bool diag = k0 + kTile - 1 > q0 + warp * 16;
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = k0 + nt * 8 + 2 * t4 + (e & 1), row = e < 2 ? row_a : row_b;
                float p = exp2f(s[nt][e] * scale_log2 - (e < 2 ? lse_a : lse_b));
                if (diag && key > row) p = 0.f;
                s[nt][e] = p * (dp[nt][e] - (e < 2 ? D_a : D_b));  // dS
            }
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t sa[4];
            acc_to_a(sa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
            for (int dd = 0; dd < ND / 2; dd++) {
                uint32_t kf[4];
                ld_b_kn<LDS>(kf, Ks, kk * 16, dd * 16, lane);
                mma16816(dq[2 * dd], sa, kf[0], kf[1]);
                mma16816(dq[2 * dd + 1], sa, kf[2], kf[3]);
            }
        }
    }

    bf16 *qa_out = dqkv + ((size_t)b * T + row_a) * rs + (size_t)h * HS, *qb_out = qa_out + 8 * rs;
#pragma unroll
    for (int i = 0; i < ND; i++) {
        const int d = i * 8 + 2 * t4;
        if (d >= HS) continue;
        if (row_a < T) st_bf16x2(qa_out + d, dq[i][0] * scale, dq[i][1] * scale);
        if (row_b < T) st_bf16x2(qb_out + d, dq[i][2] * scale, dq[i][3] * scale);
    }
}

// ---- tensor-core backward, key side: dk, dv ----------------------------------------------------------------------
// grid (ceil(T/64), NKV, B). Warp w owns keys k0 + 16w .. +15 (rows g, g+8 of its fragments); the block walks the
// group's query heads in order and, for each, the query tiles of BQ rows from k0 on. Works on transposed scores:
// S^T = K Q^T, P^T, dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - D), dK += dS^T Q.

template <int HSP, int BQ>
__global__ void __launch_bounds__(kThreads) attn_bwd_dkdv_mma(bf16 *dqkv, const bf16 *dout, const float *lse,
                                                              const float *Dvec, const bf16 *qkv, int T, int NH,
                                                              int NKV, int HS, float scale_log2, float scale) {
    constexpr int LDS = HSP + 8;
    constexpr int ND = HSP / 8, NK = HSP / 16, NQ = BQ / 8;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *Ks = (bf16 *)smem, *Vs = Ks + kTile * LDS, *Qs = Vs + kTile * LDS, *dOs = Qs + BQ * LDS;
    float *lse_s = (float *)(dOs + BQ * LDS), *D_s = lse_s + BQ;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int kt = blockIdx.x;  // tile 0 sees every query: the longest blocks start first
    const int kvh = blockIdx.y, b = blockIdx.z, group = NH / NKV;
    const size_t rs = (size_t)(NH + 2 * NKV) * HS, orow = (size_t)NH * HS;
    const bf16 *base = qkv + (size_t)b * T * rs;
    const bf16 *kg = base + (size_t)(NH + kvh) * HS, *vg = base + (size_t)(NH + NKV + kvh) * HS;
    const int k0 = kt * kTile, key_a = k0 + warp * 16 + g, key_b = key_a + 8;

    zero_smem(smem, (2 * kTile + 2 * BQ) * LDS * 2, tid);
    __syncthreads();
    load_tile<kTile, LDS>(Ks, kg, rs, k0, T, HS, tid);
    load_tile<kTile, LDS>(Vs, vg, rs, k0, T, HS, tid);
    cp_async_commit();

    float dk[ND][4], dv[ND][4];
#pragma unroll
    for (int i = 0; i < ND; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[i][e] = dv[i][e] = 0.f;

    for (int hh = 0; hh < group; hh++) {
        const int h = kvh * group + hh;
        const bf16 *qg = base + (size_t)h * HS, *dog = dout + (size_t)b * T * orow + (size_t)h * HS;
        const float *lrow = lse + ((size_t)b * NH + h) * T, *Drow = Dvec + ((size_t)b * NH + h) * T;
        for (int q0 = k0; q0 < T; q0 += BQ) {
            __syncthreads();
            load_tile<BQ, LDS>(Qs, qg, rs, q0, T, HS, tid);
            load_tile<BQ, LDS>(dOs, dog, orow, q0, T, HS, tid);
            cp_async_commit();
            if (tid < BQ) {
                const int q = q0 + tid;
                lse_s[tid] = q < T ? lrow[q] * kLog2e : INFINITY;  // P = 0 for queries past T
                D_s[tid] = q < T ? Drow[q] : 0.f;
            }
            cp_async_wait<0>();
            __syncthreads();

            float st[NQ][4], dpt[NQ][4];
#pragma unroll
            for (int i = 0; i < NQ; i++)
#pragma unroll
                for (int e = 0; e < 4; e++) st[i][e] = dpt[i][e] = 0.f;
#pragma unroll
            for (int ks = 0; ks < NK; ks++) {
                uint32_t ka[4], va[4];
                ld_a<LDS>(ka, Ks, warp * 16, ks * 16, lane);
                ld_a<LDS>(va, Vs, warp * 16, ks * 16, lane);
#pragma unroll
                for (int np = 0; np < NQ / 2; np++) {
                    uint32_t qf[4], df[4];
                    ld_b_nk<LDS>(qf, Qs, np * 16, ks * 16, lane);
                    ld_b_nk<LDS>(df, dOs, np * 16, ks * 16, lane);
                    mma16816(st[2 * np], ka, qf[0], qf[1]);
                    mma16816(st[2 * np + 1], ka, qf[2], qf[3]);
                    mma16816(dpt[2 * np], va, df[0], df[1]);
                    mma16816(dpt[2 * np + 1], va, df[2], df[3]);
                }
            }
            const bool diag = q0 < k0 + kTile;  // some query of this tile precedes some key of the block
#pragma unroll
            for (int nt = 0; nt < NQ; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int qi = nt * 8 + 2 * t4 + (e & 1), key = e < 2 ? key_a : key_b;
                    float p = exp2f(st[nt][e] * scale_log2 - lse_s[qi]);
                    if (diag && q0 + qi < key) p = 0.f;
                    st[nt][e] = p;
                    dpt[nt][e] = p * (dpt[nt][e] - D_s[qi]);  // dS^T
                }
#pragma unroll
            for (int kk = 0; kk < NQ / 2; kk++) {
                uint32_t pa[4], sa[4];
                acc_to_a(pa, st[2 * kk], st[2 * kk + 1]);
                acc_to_a(sa, dpt[2 * kk], dpt[2 * kk + 1]);
#pragma unroll
                for (int dd = 0; dd < ND / 2; dd++) {
                    uint32_t df[4], qf[4];
                    ld_b_kn<LDS>(df, dOs, kk * 16, dd * 16, lane);
                    ld_b_kn<LDS>(qf, Qs, kk * 16, dd * 16, lane);
                    mma16816(dv[2 * dd], pa, df[0], df[1]);
                    mma16816(dv[2 * dd + 1], pa, df[2], df[3]);
                    mma16816(dk[2 * dd], sa, qf[0], qf[1]);
                    mma16816(dk[2 * dd + 1], sa, qf[2], qf[3]);
                }
            }
        }
    }

    bf16 *ka_out = dqkv + ((size_t)b * T + key_a) * rs + (size_t)(NH + kvh) * HS, *kb_out = ka_out + 8 * rs;
    bf16 *va_out = ka_out + (size_t)NKV * HS, *vb_out = kb_out + (size_t)NKV * HS;
#pragma unroll
    for (int i = 0; i < ND; i++) {
        const int d = i * 8 + 2 * t4;
        if (d >= HS) continue;
        if (key_a < T) {
            st_bf16x2(ka_out + d, dk[i][0] * scale, dk[i][1] * scale);
            st_bf16x2(va_out + d, dv[i][0], dv[i][1]);
        }
        if (key_b < T) {
            st_bf16x2(kb_out + d, dk[i][2] * scale, dk[i][3] * scale);
            st_bf16x2(vb_out + d, dv[i][2], dv[i][3]);
        }
    }
}

// ---- simple path: one warp per row, lane l holds elements l, l+32, ... (HS <= 256) ---------------------------------

constexpr int kSimpleMax = 8;  // elements per lane

__device__ __forceinline__ void load_row(float (&x)[kSimpleMax], const bf16 *p, int HS, int lane) {
#pragma unroll
    for (int e = 0; e < kSimpleMax; e++) {
        const int d = lane + 32 * e;
        x[e] = d < HS ? __bfloat162float(p[d]) : 0.f;
    }
}
__device__ __forceinline__ float dot_row(const float (&x)[kSimpleMax], const bf16 *p, int HS, int lane) {
    float s = 0.f;
#pragma unroll
    for (int e = 0; e < kSimpleMax; e++) {
        const int d = lane + 32 * e;
        if (d < HS) s += x[e] * __bfloat162float(p[d]);
    }
    return kl::warp_sum(s);  // xor tree: every lane holds the same, run-to-run identical value
}
__device__ __forceinline__ void store_row(bf16 *p, const float (&x)[kSimpleMax], float mul, int HS, int lane) {
#pragma unroll
    for (int e = 0; e < kSimpleMax; e++) {
        const int d = lane + 32 * e;
        if (d < HS) p[d] = __float2bfloat16_rn(x[e] * mul);
    }
}

// One warp per (b, h, t) query, online softmax over keys 0..t.
__global__ void attn_fwd_simple(bf16 *out, float *lse, const bf16 *qkv, int B, int T, int NH, int NKV, int HS,
                                float scale_log2) {
    const size_t idx = (size_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (idx >= (size_t)B * NH * T) return;
    const int t = (int)(idx % T), h = (int)((idx / T) % NH), b = (int)(idx / ((size_t)T * NH));
    const int kvh = h / (NH / NKV);
    const size_t rs = (size_t)(NH + 2 * NKV) * HS;
    const bf16 *base = qkv + (size_t)b * T * rs;
    const size_t koff = (size_t)(NH + kvh) * HS, voff = (size_t)(NH + NKV + kvh) * HS;
    float q[kSimpleMax], o[kSimpleMax];
    load_row(q, base + (size_t)t * rs + (size_t)h * HS, HS, lane);
#pragma unroll
    for (int e = 0; e < kSimpleMax; e++) o[e] = 0.f;
    float m = -INFINITY, l = 0.f;
    for (int j = 0; j <= t; j++) {
        const bf16 *kj = base + (size_t)j * rs + koff, *vj = base + (size_t)j * rs + voff;
        const float s = dot_row(q, kj, HS, lane) * scale_log2;
        const float mn = fmaxf(m, s), al = exp2f(m - mn), p = exp2f(s - mn);
        l = l * al + p;
#pragma unroll
        for (int e = 0; e < kSimpleMax; e++) {
            const int d = lane + 32 * e;
            o[e] = o[e] * al + (d < HS ? p * __bfloat162float(vj[d]) : 0.f);
        }
        m = mn;
    }
    store_row(out + ((size_t)b * T + t) * NH * HS + (size_t)h * HS, o, 1.f / l, HS, lane);
    if (lane == 0) lse[((size_t)b * NH + h) * T + t] = (m + log2f(l)) * kLn2;
}

// One warp per (b, h, i) query: dq_i = scale * sum_{j<=i} p_ij (dp_ij - D_i) k_j.
__global__ void attn_bwd_dq_simple(bf16 *dqkv, const bf16 *dout, const float *lse, const float *Dvec,
                                   const bf16 *qkv, int B, int T, int NH, int NKV, int HS, float scale_log2,
                                   float scale) {
    const size_t idx = (size_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (idx >= (size_t)B * NH * T) return;
    const int i = (int)(idx % T), h = (int)((idx / T) % NH), b = (int)(idx / ((size_t)T * NH));
    const int kvh = h / (NH / NKV);
    const size_t rs = (size_t)(NH + 2 * NKV) * HS;
    const bf16 *base = qkv + (size_t)b * T * rs;
    const size_t koff = (size_t)(NH + kvh) * HS, voff = (size_t)(NH + NKV + kvh) * HS;
    float q[kSimpleMax], go[kSimpleMax], acc[kSimpleMax];
    load_row(q, base + (size_t)i * rs + (size_t)h * HS, HS, lane);
    load_row(go, dout + ((size_t)b * T + i) * NH * HS + (size_t)h * HS, HS, lane);
#pragma unroll
    for (int e = 0; e < kSimpleMax; e++) acc[e] = 0.f;
    const size_t li = ((size_t)b * NH + h) * T + i;
    const float lse2 = lse[li] * kLog2e, Di = Dvec[li];
    for (int j = 0; j <= i; j++) {
        const bf16 *kj = base + (size_t)j * rs + koff;
        const float p = exp2f(dot_row(q, kj, HS, lane) * scale_log2 - lse2);
        const float ds = p * (dot_row(go, base + (size_t)j * rs + voff, HS, lane) - Di);
#pragma unroll
        for (int e = 0; e < kSimpleMax; e++) {
            const int d = lane + 32 * e;
            if (d < HS) acc[e] += ds * __bfloat162float(kj[d]);
        }
    }
    store_row(dqkv + ((size_t)b * T + i) * rs + (size_t)h * HS, acc, scale, HS, lane);
}

// One warp per (b, kv head, j) key: over the group's query heads in order and queries i >= j,
// dk_j = scale * sum ds_ij q_i, dv_j = sum p_ij dout_i.
__global__ void attn_bwd_dkdv_simple(bf16 *dqkv, const bf16 *dout, const float *lse, const float *Dvec,
                                     const bf16 *qkv, int B, int T, int NH, int NKV, int HS, float scale_log2,
                                     float scale) {
    const size_t idx = (size_t)blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (idx >= (size_t)B * NKV * T) return;
    const int j = (int)(idx % T), kvh = (int)((idx / T) % NKV), b = (int)(idx / ((size_t)T * NKV));
    const int group = NH / NKV;
    const size_t rs = (size_t)(NH + 2 * NKV) * HS;
    const bf16 *base = qkv + (size_t)b * T * rs;
    float k[kSimpleMax], v[kSimpleMax], dk[kSimpleMax], dv[kSimpleMax];
    load_row(k, base + (size_t)j * rs + (size_t)(NH + kvh) * HS, HS, lane);
    load_row(v, base + (size_t)j * rs + (size_t)(NH + NKV + kvh) * HS, HS, lane);
#pragma unroll
    for (int e = 0; e < kSimpleMax; e++) dk[e] = dv[e] = 0.f;
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        for (int i = j; i < T; i++) {
            const bf16 *qi = base + (size_t)i * rs + (size_t)h * HS;
            const bf16 *gi = dout + ((size_t)b * T + i) * NH * HS + (size_t)h * HS;
            const size_t li = ((size_t)b * NH + h) * T + i;
            const float p = exp2f(dot_row(k, qi, HS, lane) * scale_log2 - lse[li] * kLog2e);
            const float ds = p * (dot_row(v, gi, HS, lane) - Dvec[li]);
#pragma unroll
            for (int e = 0; e < kSimpleMax; e++) {
                const int d = lane + 32 * e;
                if (d < HS) {
                    dk[e] += ds * __bfloat162float(qi[d]);
                    dv[e] += p * __bfloat162float(gi[d]);
                }
            }
        }
    }
    bf16 *row = dqkv + ((size_t)b * T + j) * rs;
    store_row(row + (size_t)(NH + kvh) * HS, dk, scale, HS, lane);
    store_row(row + (size_t)(NH + NKV + kvh) * HS, dv, 1.f, HS, lane);
}

// ---- launchers ---------------------------------------------------------------------------------------------------

kl_status check_shape(const char *where, int B, int T, int NH, int NKV, int HS) {
    if (B < 0 || T < 0 || HS <= 0 || NH <= 0 || NKV <= 0 || NH % NKV != 0)
        return kl_error(KL_ERR_INVALID,
                        "%s: expected B, T >= 0, HS > 0 and NH a positive multiple of NKV, got B=%d T=%d NH=%d NKV=%d "
                        "HS=%d", where, B, T, NH, NKV, HS);
    if (B > 65535 || NH > 65535)
        return kl_error(KL_ERR_UNSUPPORTED, "%s: B=%d or NH=%d exceeds the grid limit 65535", where, B, NH);
    return KL_OK;
}

unsigned rows_grid(size_t rows) { return (unsigned)((rows + kThreads / 32 - 1) / (kThreads / 32)); }

template <typename Kernel>
kl_status set_smem(Kernel k, size_t bytes) {
    KL_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    return KL_OK;
}

template <int HSP>
kl_status fwd_mma(bf16 *out, float *lse, const bf16 *qkv, int B, int T, int NH, int NKV, int HS, float scale_log2,
                  cudaStream_t st) {
    const size_t smem = 3 * kTile * (HSP + 8) * sizeof(bf16);
    KL_TRY(set_smem(attn_fwd_mma<HSP>, smem));
    dim3 grid((unsigned)((T + kTile - 1) / kTile), (unsigned)NH, (unsigned)B);
    attn_fwd_mma<HSP><<<grid, kThreads, smem, st>>>(out, lse, qkv, T, NH, NKV, HS, scale_log2);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

template <int HSP, int BQ>
kl_status bwd_mma(bf16 *dqkv, const bf16 *dout, const float *lse, const float *Dvec, const bf16 *qkv, int B, int T,
                  int NH, int NKV, int HS, float scale_log2, float scale, cudaStream_t st) {
    const size_t smem_dq = 4 * kTile * (HSP + 8) * sizeof(bf16);
    const size_t smem_kv = (2 * kTile + 2 * BQ) * (HSP + 8) * sizeof(bf16) + 2 * BQ * sizeof(float);
    KL_TRY(set_smem(attn_bwd_dq_mma<HSP>, smem_dq));
    KL_TRY(set_smem(attn_bwd_dkdv_mma<HSP, BQ>, smem_kv));
    const unsigned tiles = (unsigned)((T + kTile - 1) / kTile);
    attn_bwd_dq_mma<HSP><<<dim3(tiles, (unsigned)NH, (unsigned)B), kThreads, smem_dq, st>>>(
        dqkv, dout, lse, Dvec, qkv, T, NH, NKV, HS, scale_log2, scale);
    KL_CUDA_CHECK_LAUNCH();
    attn_bwd_dkdv_mma<HSP, BQ><<<dim3(tiles, (unsigned)NKV, (unsigned)B), kThreads, smem_kv, st>>>(
        dqkv, dout, lse, Dvec, qkv, T, NH, NKV, HS, scale_log2, scale);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

}  // namespace

extern "C" int kl_attention_own_mma_applies(int HS, const void *p0, const void *p1, const void *p2, const void *p3) {
    if (HS <= 0 || HS > 128 || HS % 8 != 0) return 0;
    const void *ps[4] = {p0, p1, p2, p3};
    for (const void *p : ps)
        if (p && !kl::aligned16(p)) return 0;
    return 1;
}

extern "C" size_t kl_attention_own_workspace_bytes(int B, int T, int NH) {
    const size_t n = (size_t)(B > 0 ? B : 0) * (size_t)(T > 0 ? T : 0) * (size_t)(NH > 0 ? NH : 0) * sizeof(float);
    return (n + 255) / 256 * 256;
}

extern "C" kl_status kl_attention_forward_own_cuda(kl_bf16 *out, float *lse, const kl_bf16 *qkv, int B, int T, int NH,
                                                   int NKV, int HS, int simple_only, struct CUstream_st *stream) {
    KL_TRY(check_shape("attention forward", B, T, NH, NKV, HS));
    if (B == 0 || T == 0) return KL_OK;
    cudaStream_t st = (cudaStream_t)stream;
    const float scale_log2 = (float)(kLog2e / sqrt((double)HS));
    bf16 *o = (bf16 *)out;
    const bf16 *x = (const bf16 *)qkv;
    if (!simple_only && kl_attention_own_mma_applies(HS, out, qkv, NULL, NULL)) {
        kl_status s = HS <= 64 ? fwd_mma<64>(o, lse, x, B, T, NH, NKV, HS, scale_log2, st)
                               : fwd_mma<128>(o, lse, x, B, T, NH, NKV, HS, scale_log2, st);
        return s == KL_OK ? s : kl_error_context(s, "attention forward (B=%d T=%d NH=%d NKV=%d HS=%d)", B, T, NH, NKV, HS);
    }
    if (HS > 32 * kSimpleMax)
        return kl_error(KL_ERR_UNSUPPORTED, "attention forward: HS=%d exceeds the own kernels' limit of %d", HS,
                        32 * kSimpleMax);
    attn_fwd_simple<<<rows_grid((size_t)B * NH * T), kThreads, 0, st>>>(o, lse, x, B, T, NH, NKV, HS, scale_log2);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

extern "C" kl_status kl_attention_backward_own_cuda(kl_bf16 *dqkv, const kl_bf16 *dout, const kl_bf16 *out,
                                                    const float *lse, const kl_bf16 *qkv, int B, int T, int NH,
                                                    int NKV, int HS, void *workspace, size_t workspace_bytes,
                                                    int simple_only, struct CUstream_st *stream) {
    KL_TRY(check_shape("attention backward", B, T, NH, NKV, HS));
    if (B == 0 || T == 0) return KL_OK;
    const size_t need = kl_attention_own_workspace_bytes(B, T, NH);
    if (!workspace || workspace_bytes < need)
        return kl_error(KL_ERR_INVALID, "attention backward: expected %zu bytes of workspace, got %zu", need,
                        workspace ? workspace_bytes : (size_t)0);
    if (HS > 32 * kSimpleMax)
        return kl_error(KL_ERR_UNSUPPORTED, "attention backward: HS=%d exceeds the own kernels' limit of %d", HS,
                        32 * kSimpleMax);
    cudaStream_t st = (cudaStream_t)stream;
    const float scale = (float)(1.0 / sqrt((double)HS)), scale_log2 = (float)(kLog2e / sqrt((double)HS));
    float *Dvec = (float *)workspace;
    bf16 *dx = (bf16 *)dqkv;
    const bf16 *go = (const bf16 *)dout, *o = (const bf16 *)out, *x = (const bf16 *)qkv;
    attn_bwd_dot<<<rows_grid((size_t)B * T * NH), kThreads, 0, st>>>(Dvec, go, o, B, T, NH, HS);
    KL_CUDA_CHECK_LAUNCH();
    if (!simple_only && kl_attention_own_mma_applies(HS, dqkv, dout, qkv, NULL)) {
        kl_status s = HS <= 64 ? bwd_mma<64, 64>(dx, go, lse, Dvec, x, B, T, NH, NKV, HS, scale_log2, scale, st)
                               : bwd_mma<128, 32>(dx, go, lse, Dvec, x, B, T, NH, NKV, HS, scale_log2, scale, st);
        return s == KL_OK ? s
                          : kl_error_context(s, "attention backward (B=%d T=%d NH=%d NKV=%d HS=%d)", B, T, NH, NKV, HS);
    }
    attn_bwd_dq_simple<<<rows_grid((size_t)B * NH * T), kThreads, 0, st>>>(dx, go, lse, Dvec, x, B, T, NH, NKV, HS,
                                                                          scale_log2, scale);
    KL_CUDA_CHECK_LAUNCH();
    attn_bwd_dkdv_simple<<<rows_grid((size_t)B * NKV * T), kThreads, 0, st>>>(dx, go, lse, Dvec, x, B, T, NH, NKV,
                                                                              HS, scale_log2, scale);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}
