// cuda_check.cuh — the one status-check macro per library for CUDA code (KL_CUDA_CHECK, KL_CUBLAS_CHECK,
// KL_CUDNN_CHECK): a failing call becomes kl_error(KL_ERR_INTERNAL, "<function>: <library message>
// (file:line)") returned from the enclosing launcher — never an abort. Plus the few device helpers every
// kiln kernel shares (BF16 pack/unpack with round-to-nearest-even, deterministic warp sums).
#pragma once

#include <cublas_api.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#if defined(KILN_HAVE_CUDNN)
#include <cudnn.h>
#endif

#include "kl_base.h"

// The file name without its directories, for messages.
static inline const char *kl_cuda_file_name(const char *path) {
    const char *base = path;
    for (const char *p = path; *p; p++)
        if (*p == '/' || *p == '\\') base = p + 1;
    return base;
}

// A failed device allocation is an out-of-memory condition (KL_ERR_OOM, as kl_base.h defines it); every
// other CUDA error is an internal error.
static inline kl_status kl_cuda_status(cudaError_t e) {
    return e == cudaErrorMemoryAllocation ? KL_ERR_OOM : KL_ERR_INTERNAL;
}

#define KL_CUDA_CHECK(call)                                                                                \
    do {                                                                                                   \
        cudaError_t kl_cuda_e_ = (call);                                                                   \
        if (kl_cuda_e_ != cudaSuccess)                                                                     \
            return kl_error(kl_cuda_status(kl_cuda_e_), "%s: %s (%s:%d)", __func__,                        \
                            cudaGetErrorString(kl_cuda_e_), kl_cuda_file_name(__FILE__), __LINE__);        \
    } while (0)

// After a kernel launch: reports a bad launch configuration (the kernel's own faults surface later, at
// the next synchronising call).
#define KL_CUDA_CHECK_LAUNCH() KL_CUDA_CHECK(cudaGetLastError())

#define KL_CUBLAS_CHECK(call)                                                                              \
    do {                                                                                                   \
        cublasStatus_t kl_cublas_s_ = (call);                                                              \
        if (kl_cublas_s_ != CUBLAS_STATUS_SUCCESS)                                                         \
            return kl_error(kl_cublas_s_ == CUBLAS_STATUS_ALLOC_FAILED ? KL_ERR_OOM : KL_ERR_INTERNAL,     \
                            "%s: %s (%s:%d)", __func__, cublasGetStatusString(kl_cublas_s_),               \
                            kl_cuda_file_name(__FILE__), __LINE__);                                        \
    } while (0)

#if defined(KILN_HAVE_CUDNN)
#define KL_CUDNN_CHECK(call)                                                                               \
    do {                                                                                                   \
        cudnnStatus_t kl_cudnn_s_ = (call);                                                                \
        if (kl_cudnn_s_ != CUDNN_STATUS_SUCCESS)                                                           \
            return kl_error(kl_cudnn_s_ == CUDNN_STATUS_ALLOC_FAILED ? KL_ERR_OOM : KL_ERR_INTERNAL,       \
                            "%s: %s (%s:%d)", __func__, cudnnGetErrorString(kl_cudnn_s_),                  \
                            kl_cuda_file_name(__FILE__), __LINE__);                                        \
    } while (0)
#endif

namespace kl {

// ---- BF16 storage <-> float --------------------------------------------------------------------------

__device__ __forceinline__ float bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

// Round to nearest even (the hardware conversion; identical to kl_f32_to_bf16 in cuda_common.h).
__device__ __forceinline__ uint16_t f32_to_bf16(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

__device__ __forceinline__ float bf16_round(float f) { return bf16_to_f32(f32_to_bf16(f)); }

// Two floats -> one 32-bit word holding two BF16 (the first in the low half, i.e. at the lower address).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    return (uint32_t)f32_to_bf16(lo) | ((uint32_t)f32_to_bf16(hi) << 16);
}

// VEC consecutive BF16 values as one register-friendly value: VEC = 8 is one 16-byte vector (uint4),
// VEC = 1 a single element (the path for sizes that are not a multiple of 8 or unaligned pointers).
template <int VEC> struct Bf16Pack;
template <> struct Bf16Pack<8> {
    uint4 u;
    __device__ __forceinline__ void load(const uint16_t *p) { u = *reinterpret_cast<const uint4 *>(p); }
    __device__ __forceinline__ void store(uint16_t *p) const { *reinterpret_cast<uint4 *>(p) = u; }
    __device__ __forceinline__ void unpack(float (&f)[8]) const {
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            f[2 * i] = __uint_as_float(w[i] << 16);
            f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
    __device__ __forceinline__ void pack(const float (&f)[8]) {
        u.x = pack_bf16x2(f[0], f[1]);
        u.y = pack_bf16x2(f[2], f[3]);
        u.z = pack_bf16x2(f[4], f[5]);
        u.w = pack_bf16x2(f[6], f[7]);
    }
};
template <> struct Bf16Pack<1> {
    uint16_t u;
    __device__ __forceinline__ void load(const uint16_t *p) { u = *p; }
    __device__ __forceinline__ void store(uint16_t *p) const { *p = u; }
    __device__ __forceinline__ void unpack(float (&f)[1]) const { f[0] = bf16_to_f32(u); }
    __device__ __forceinline__ void pack(const float (&f)[1]) { u = f32_to_bf16(f[0]); }
};

// sigmoid(g) with the approximate exponential and reciprocal instructions: relative error ~1e-6, far below the
// BF16 rounding of the result; g << 0 gives exp = inf and sigmoid = 0 (not NaN), and 1 + exp(-g) >= 1, so
// flushing subnormals changes nothing (__expf keeps them, with a compare and a predicated multiply per call). The
// IEEE division and accurate expf made the SwiGLU forward instruction-bound at the power-capped clock (261 us for
// 0.88 GB at the 1.5B shape, 79% of the copy bound), and __frcp_rn is a call with a slow path whose saved registers
// spilled in the fused GEMM epilogue.
__device__ __forceinline__ float sigmoid_fast(float g) {
    float e, r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(g * -1.4426950408889634f));  // exp(-g)
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(1.0f + e));
    return r;
}

// silu(g) u: the SwiGLU forward, one definition for swiglu.cu and the fused GEMM epilogue (gemm_sm90.cu), so the
// two give the same bits.
__device__ __forceinline__ float swiglu(float g, float u) { return g * sigmoid_fast(g) * u; }

// Its backward: dg = d u silu'(g), du = d silu(g), again one definition for swiglu.cu and the fused GEMM epilogue.
__device__ __forceinline__ void swiglu_backward(float d, float g, float u, float &dg, float &du) {
    const float sig = sigmoid_fast(g);
    const float dsilu = sig * (1.0f + g * (1.0f - sig));  // d/dg [g sigmoid(g)]
    dg = d * u * dsilu;
    du = d * g * sig;
}

// True when p is 16-byte aligned (the vector path's requirement).
static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

// ---- deterministic reductions ------------------------------------------------------------------------
// XOR butterflies: at every stage lane i adds lane i^o's value to its own, and a + b == b + a bit for bit,
// so every lane of the group ends with the same, run-to-run identical sum.

// Sum over aligned groups of WIDTH lanes (WIDTH a power of two <= 32). mask: the lanes present in this
// warp (all, unless the block size is not a multiple of 32; whole groups must be present).
template <typename T>
__device__ __forceinline__ T group_sum(T v, int width, unsigned mask = 0xffffffffu) {
    for (int o = width >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(mask, v, o);
    return v;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

}  // namespace kl
