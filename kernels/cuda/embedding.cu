// embedding.cu — token embedding on BF16 (kernels/embedding_cuda.h): forward row gather; backward scatter
// without float atomics, driven by a host-built plan that groups positions by token, so every touched
// row of dwte sums its contributions in increasing position (deterministic, and the CPU reference's order).
#include <stdlib.h>

#include "cuda_check.cuh"
#include "embedding_cuda.h"

namespace {

constexpr int kThreads = 256;

// One thread copies VEC elements of one output row; a token outside [0, V) yields a NaN row.
template <int VEC>
__global__ void embedding_fwd(uint16_t *__restrict__ out, const int32_t *__restrict__ tokens,
                              const uint16_t *__restrict__ wte, int N, int V, int C) {
    const int nch = C / VEC;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < (long long)N * nch;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long n = idx / nch;
        const int c = (int)(idx % nch) * VEC;
        const int32_t tok = tokens[n];
        kl::Bf16Pack<VEC> p;
        if (tok >= 0 && tok < V) {
            p.load(wte + (long long)tok * C + c);
        } else {
            float nan[VEC];
#pragma unroll
            for (int i = 0; i < VEC; i++) nan[i] = __int_as_float(0x7fc00000);
            p.pack(nan);
        }
        p.store(out + n * C + c);
    }
}

// Block (u, y): distinct token u = plan[u], columns [VEC (y blockDim + tid), +VEC). Adds the token's
// positions' dout rows in the plan's (increasing) order, starting from the current dwte value.
template <int VEC>
__global__ void embedding_bwd(float *__restrict__ dwte, const uint16_t *__restrict__ dout,
                              const int32_t *__restrict__ plan, int N, int C) {
    const int u = blockIdx.x;
    const int c = (blockIdx.y * blockDim.x + threadIdx.x) * VEC;
    if (c >= C) return;
    const int32_t tok = plan[u];
    const int32_t *offsets = plan + N, *positions = plan + 2 * N + 1;
    float *row = dwte + (long long)tok * C + c;
    float acc[VEC];
    if constexpr (VEC == 8) {
        const float4 lo = reinterpret_cast<const float4 *>(row)[0], hi = reinterpret_cast<const float4 *>(row)[1];
        acc[0] = lo.x, acc[1] = lo.y, acc[2] = lo.z, acc[3] = lo.w, acc[4] = hi.x, acc[5] = hi.y, acc[6] = hi.z,
        acc[7] = hi.w;
    } else {
        acc[0] = row[0];
    }
    for (int p = offsets[u]; p < offsets[u + 1]; p++) {
        kl::Bf16Pack<VEC> d;
        d.load(dout + (long long)positions[p] * C + c);
        float f[VEC];
        d.unpack(f);
#pragma unroll
        for (int i = 0; i < VEC; i++) acc[i] += f[i];
    }
    if constexpr (VEC == 8) {
        reinterpret_cast<float4 *>(row)[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
        reinterpret_cast<float4 *>(row)[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
    } else {
        row[0] = acc[0];
    }
}

}  // namespace

extern "C" kl_status kl_embedding_forward_cuda(kl_bf16 *out, const int32_t *tokens, const kl_bf16 *wte, int N, int V,
                                               int C, cudaStream_t stream) {
    if (N < 0 || V <= 0 || C <= 0)
        return kl_error(KL_ERR_INVALID, "embedding forward: expected N >= 0, V > 0, C > 0 (got %d, %d, %d)", N, V, C);
    if (N == 0) return KL_OK;
    const bool vec = C % 8 == 0 && kl::aligned16(out) && kl::aligned16(wte);
    const long long items = (long long)N * (C / (vec ? 8 : 1));
    long long blocks = (items + kThreads - 1) / kThreads;
    if (blocks > (1 << 20)) blocks = 1 << 20;
    uint16_t *o = reinterpret_cast<uint16_t *>(out);
    const uint16_t *w = reinterpret_cast<const uint16_t *>(wte);
    if (vec)
        embedding_fwd<8><<<(unsigned)blocks, kThreads, 0, stream>>>(o, tokens, w, N, V, C);
    else
        embedding_fwd<1><<<(unsigned)blocks, kThreads, 0, stream>>>(o, tokens, w, N, V, C);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

extern "C" size_t kl_embedding_plan_elems(int N) { return N > 0 ? 3 * (size_t)N + 1 : 1; }

extern "C" kl_status kl_embedding_backward_plan(int32_t *plan, int *n_unique, const int32_t *tokens, int N, int V) {
    if (N < 0 || V <= 0) return kl_error(KL_ERR_INVALID, "embedding plan: expected N >= 0, V > 0 (got %d, %d)", N, V);
    *n_unique = 0;
    if (N == 0) {
        plan[0] = 0;
        return KL_OK;
    }
    for (int n = 0; n < N; n++)
        if (tokens[n] < 0 || tokens[n] >= V)
            return kl_error(KL_ERR_INVALID, "embedding: token %d at position %d is outside the vocabulary [0, %d)",
                            (int)tokens[n], n, V);
    // Counting sort by token id: stable, so positions stay increasing within a token.
    int32_t *count = static_cast<int32_t *>(kl_calloc((size_t)V + 1, sizeof(int32_t), "embedding plan counts"));
    if (!count) return KL_ERR_OOM;
    for (int n = 0; n < N; n++) count[tokens[n] + 1]++;
    int32_t *offsets = plan + N, *positions = plan + 2 * N + 1;
    int U = 0;
    for (int v = 0; v < V; v++) {
        if (count[v + 1] > 0) {
            plan[U] = v;
            offsets[U] = count[v];  // running start, before this token's count is added
            U++;
        }
        count[v + 1] += count[v];  // count[v] becomes the start of token v
    }
    offsets[U] = N;
    for (int n = 0; n < N; n++) positions[count[tokens[n]]++] = n;
    free(count);
    *n_unique = U;
    return KL_OK;
}

extern "C" kl_status kl_embedding_backward_cuda(float *dwte, const kl_bf16 *dout, const int32_t *plan_dev,
                                                int n_unique, int N, int C, cudaStream_t stream) {
    if (N < 0 || C <= 0 || n_unique < 0 || n_unique > N)
        return kl_error(KL_ERR_INVALID, "embedding backward: expected N >= 0, C > 0, 0 <= n_unique <= N (got %d, %d, "
                        "%d)", N, C, n_unique);
    if (n_unique == 0) return KL_OK;
    const bool vec = C % 8 == 0 && kl::aligned16(dwte) && kl::aligned16(dout);
    const int nch = C / (vec ? 8 : 1);
    const int threads = nch < kThreads ? (nch + 31) / 32 * 32 : kThreads;
    const dim3 grid((unsigned)n_unique, (unsigned)((nch + threads - 1) / threads));
    const uint16_t *d = reinterpret_cast<const uint16_t *>(dout);
    if (vec)
        embedding_bwd<8><<<grid, threads, 0, stream>>>(dwte, d, plan_dev, N, C);
    else
        embedding_bwd<1><<<grid, threads, 0, stream>>>(dwte, d, plan_dev, N, C);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}
