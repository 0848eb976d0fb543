/* cuda_common.h — what every CUDA op header shares, in plain C (no CUDA header, so C files include it):
 * the BF16 storage type, host-side BF16 <-> FP32 conversions that round exactly as the device kernels do
 * (nearest-even), and the launchers of the FP32 <-> BF16 conversion kernels (kernels/cuda/convert.cu).
 * Streams are `struct CUstream_st *` (what cudaStream_t is); NULL is the legacy default stream. */
#ifndef KL_CUDA_COMMON_H
#define KL_CUDA_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The CUDA stream type (cudaStream_t is `struct CUstream_st *`), declared at file scope so that C files can
 * pass streams to the launchers without including CUDA headers (a first mention inside a prototype would
 * declare a different, prototype-local struct in C). */
struct CUstream_st;

/* A bfloat16 value as stored in memory: the top 16 bits of an IEEE float32. */
typedef uint16_t kl_bf16;

/* The helpers below compile for the host and, in .cu files, for the device too. */
#if defined(__CUDACC__)
#define KL_BF16_FN static inline __host__ __device__
#else
#define KL_BF16_FN static inline
#endif

/* float -> bf16, round to nearest, ties to even (bit-identical to the device's __float2bfloat16_rn for every
 * non-NaN input); a NaN stays a quiet NaN (its payload may differ from the device's canonical NaN). */
KL_BF16_FN kl_bf16 kl_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (kl_bf16)((u >> 16) | 0x0040u);  /* NaN: keep it quiet */
    u += 0x7fffu + ((u >> 16) & 1u);  /* carries into the exponent as it should (to inf at the top) */
    return (kl_bf16)(u >> 16);
}

/* bf16 -> float is exact. */
KL_BF16_FN float kl_bf16_to_f32(kl_bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The float nearest to f that a bf16 can hold (what a BF16 store then load gives). */
KL_BF16_FN float kl_bf16_round(float f) { return kl_bf16_to_f32(kl_f32_to_bf16(f)); }

/* float -> bf16, stochastic rounding: the 16 dropped bits are compared against the low 16 bits of `bits`
 * (a uniform draw), so |f| rounds up with probability dropped / 2^16 and the result is unbiased. Inf and
 * NaN convert as kl_f32_to_bf16 does; a finite value within one bf16 step of the largest can become inf,
 * as it can under round-to-nearest. */
KL_BF16_FN kl_bf16 kl_f32_to_bf16_stochastic(float f, uint32_t bits) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u) return kl_f32_to_bf16(f);
    u += bits & 0xffffu;
    return (kl_bf16)(u >> 16);
}

/* out(n) = bf16_rne(in(n)) and out(n) = float(in(n)) on the device, asynchronously on `stream`.
 * Any n >= 0 and any element alignment. KL_ERR_INTERNAL (with CUDA's message) if the launch fails. */
kl_status kl_f32_to_bf16_cuda(kl_bf16 *out, const float *in, size_t n, struct CUstream_st *stream);
kl_status kl_bf16_to_f32_cuda(float *out, const kl_bf16 *in, size_t n, struct CUstream_st *stream);

/* out(cols, rows) = in(rows, cols)^T, BF16, exact; rows, cols >= 0 (rows < 2^21). out must not alias in. */
kl_status kl_transpose_bf16_cuda(kl_bf16 *out, const kl_bf16 *in, int rows, int cols, struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif
