// rope.cu — rotary position embeddings on the packed BF16 qkv buffer, in place (kernels/rope_cuda.h).
// One thread rotates VEC pairs (x[i], x[i + HS/2]) of one head at one position; memory-bound.
#include "cuda_check.cuh"
#include "rope_cuda.h"

namespace {

constexpr int kThreads = 256;

// Loads VEC consecutive floats (two float4 when VEC = 8).
template <int VEC>
__device__ __forceinline__ void load_f32(float (&f)[VEC], const float *p) {
    if constexpr (VEC == 8) {
        const float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
        f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    } else {
#pragma unroll
        for (int i = 0; i < VEC; i++) f[i] = p[i];
    }
}

// sign = +1: forward rotation; -1: its transpose (backward).
template <int VEC>
__global__ void rope_rotate(uint16_t *qkv, const float *cos_t, const float *sin_t, long long BT, int T, int H,
                            int HS, long long row, float sign) {
    const int half = HS / 2, nch = half / VEC;
    const long long total = BT * H * nch;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int ch = (int)(idx % nch);
        const long long hb = idx / nch;
        const int h = (int)(hb % H);  // q heads then k heads; the v heads that follow are never visited
        const long long bt = hb / H;
        const int t = (int)(bt % T);
        uint16_t *x = qkv + bt * row + (long long)h * HS + ch * VEC;
        float c[VEC], s[VEC], x1[VEC], x2[VEC];
        load_f32<VEC>(c, cos_t + (long long)t * half + ch * VEC);
        load_f32<VEC>(s, sin_t + (long long)t * half + ch * VEC);
        kl::Bf16Pack<VEC> p1, p2;
        p1.load(x);
        p2.load(x + half);
        p1.unpack(x1);
        p2.unpack(x2);
        float y1[VEC], y2[VEC];
#pragma unroll
        for (int i = 0; i < VEC; i++) {
            const float si = sign * s[i];
            y1[i] = x1[i] * c[i] - x2[i] * si;
            y2[i] = x2[i] * c[i] + x1[i] * si;
        }
        p1.pack(y1);
        p2.pack(y2);
        p1.store(x);
        p2.store(x + half);
    }
}

kl_status launch(const char *op, kl_bf16 *qkv, const float *cos_t, const float *sin_t, int B, int T, int NH,
                 int NKV, int HS, float sign, cudaStream_t stream) {
    if (B < 0 || T < 0 || NH <= 0 || NKV < 0 || HS <= 0 || HS % 2 != 0)
        return kl_error(KL_ERR_INVALID, "%s: expected B, T >= 0, NH > 0, NKV >= 0 and an even HS > 0 (got B=%d T=%d "
                        "NH=%d NKV=%d HS=%d)", op, B, T, NH, NKV, HS);
    const long long BT = (long long)B * T;
    if (BT == 0) return KL_OK;
    const int half = HS / 2, H = NH + NKV;
    const long long row = (long long)(NH + 2 * NKV) * HS;
    // 16-byte vectors need 8 | HS/2 (then every head half, row and table row starts 16-byte aligned).
    const bool vec = half % 8 == 0 && kl::aligned16(qkv) && kl::aligned16(cos_t) && kl::aligned16(sin_t);
    const long long items = BT * H * (half / (vec ? 8 : 1));
    long long blocks = (items + kThreads - 1) / kThreads;
    if (blocks > (1 << 20)) blocks = 1 << 20;
    uint16_t *p = reinterpret_cast<uint16_t *>(qkv);
    if (vec)
        rope_rotate<8><<<(unsigned)blocks, kThreads, 0, stream>>>(p, cos_t, sin_t, BT, T, H, HS, row, sign);
    else
        rope_rotate<1><<<(unsigned)blocks, kThreads, 0, stream>>>(p, cos_t, sin_t, BT, T, H, HS, row, sign);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

}  // namespace

extern "C" kl_status kl_rope_forward_cuda(kl_bf16 *qkv, const float *cos, const float *sin, int B, int T, int NH,
                                          int NKV, int HS, cudaStream_t stream) {
    return launch("rope forward", qkv, cos, sin, B, T, NH, NKV, HS, 1.0f, stream);
}

extern "C" kl_status kl_rope_backward_cuda(kl_bf16 *dqkv, const float *cos, const float *sin, int B, int T, int NH,
                                           int NKV, int HS, cudaStream_t stream) {
    return launch("rope backward", dqkv, cos, sin, B, T, NH, NKV, HS, -1.0f, stream);
}
