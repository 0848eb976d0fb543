// swiglu.cu — SwiGLU forward and backward on BF16 (kernels/swiglu_cuda.h): element-wise, FP32 math,
// one thread per VEC outputs (16-byte vectors when F is a multiple of 8 and the pointers allow).
#include "cuda_check.cuh"
#include "swiglu_cuda.h"

namespace {

constexpr int kThreads = 256;

// Blocks: x covers a row's F/VEC vectors, y strides over the rows (no 64-bit division per element).
dim3 grid_for(int N, int per_row) {
    const unsigned x = (unsigned)((per_row + kThreads - 1) / kThreads);
    return dim3(x, (unsigned)(N < 65535 ? N : 65535));  // N >= 1: the launchers return early for N = 0
}

template <int VEC>
__global__ void swiglu_fwd(uint16_t *__restrict__ out, const uint16_t *__restrict__ gu, int N, int F) {
    const int c = (blockIdx.x * blockDim.x + threadIdx.x) * VEC;
    if (c >= F) return;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const uint16_t *gate = gu + (size_t)n * 2 * F + c;
        kl::Bf16Pack<VEC> pg, pu, po;
        pg.load(gate);
        pu.load(gate + F);
        float g[VEC], u[VEC], o[VEC];
        pg.unpack(g);
        pu.unpack(u);
#pragma unroll
        for (int i = 0; i < VEC; i++) o[i] = kl::swiglu(g[i], u[i]);
        po.pack(o);
        po.store(out + (size_t)n * F + c);
    }
}

template <int VEC>
__global__ void swiglu_bwd(uint16_t *__restrict__ dgu, const uint16_t *__restrict__ dout,
                           const uint16_t *__restrict__ gu, int N, int F) {
    const int c = (blockIdx.x * blockDim.x + threadIdx.x) * VEC;
    if (c >= F) return;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const uint16_t *gate = gu + (size_t)n * 2 * F + c;
        kl::Bf16Pack<VEC> pg, pu, pd;
        pg.load(gate);
        pu.load(gate + F);
        pd.load(dout + (size_t)n * F + c);
        float g[VEC], u[VEC], d[VEC], dg[VEC], du[VEC];
        pg.unpack(g);
        pu.unpack(u);
        pd.unpack(d);
#pragma unroll
        for (int i = 0; i < VEC; i++) kl::swiglu_backward(d[i], g[i], u[i], dg[i], du[i]);
        kl::Bf16Pack<VEC> og, ou;
        og.pack(dg);
        ou.pack(du);
        og.store(dgu + (size_t)n * 2 * F + c);
        ou.store(dgu + (size_t)n * 2 * F + F + c);
    }
}

kl_status check(const char *op, int N, int F) {
    if (N < 0 || F <= 0) return kl_error(KL_ERR_INVALID, "%s: expected N >= 0 and F > 0 (got %d, %d)", op, N, F);
    return KL_OK;
}

}  // namespace

extern "C" kl_status kl_swiglu_forward_cuda(kl_bf16 *out, const kl_bf16 *gu, int N, int F, cudaStream_t stream) {
    KL_TRY(check("swiglu forward", N, F));
    if (N == 0) return KL_OK;
    uint16_t *o = reinterpret_cast<uint16_t *>(out);
    const uint16_t *x = reinterpret_cast<const uint16_t *>(gu);
    if (F % 8 == 0 && kl::aligned16(out) && kl::aligned16(gu))
        swiglu_fwd<8><<<grid_for(N, F / 8), kThreads, 0, stream>>>(o, x, N, F);
    else
        swiglu_fwd<1><<<grid_for(N, F), kThreads, 0, stream>>>(o, x, N, F);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

extern "C" kl_status kl_swiglu_backward_cuda(kl_bf16 *dgu, const kl_bf16 *dout, const kl_bf16 *gu, int N, int F,
                                             cudaStream_t stream) {
    KL_TRY(check("swiglu backward", N, F));
    if (N == 0) return KL_OK;
    uint16_t *o = reinterpret_cast<uint16_t *>(dgu);
    const uint16_t *d = reinterpret_cast<const uint16_t *>(dout), *x = reinterpret_cast<const uint16_t *>(gu);
    if (F % 8 == 0 && kl::aligned16(dgu) && kl::aligned16(dout) && kl::aligned16(gu))
        swiglu_bwd<8><<<grid_for(N, F / 8), kThreads, 0, stream>>>(o, d, x, N, F);
    else
        swiglu_bwd<1><<<grid_for(N, F), kThreads, 0, stream>>>(o, d, x, N, F);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}
