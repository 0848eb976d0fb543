// convert.cu — FP32 <-> BF16 conversion kernels (round-to-nearest-even) and the BF16 transpose, declared in
// kernels/cuda_common.h. Memory-bound: the conversions use 16-byte vectors when both pointers allow it, single
// elements otherwise; the transpose goes through shared memory in 64 x 64 tiles of element pairs (32 x 32 of
// single elements for odd shapes).
#include "cuda_check.cuh"
#include "cuda_common.h"

namespace {

constexpr int kThreads = 256;

// Enough blocks to cover n_items at one item per thread, capped: the grid-stride loops take the rest.
unsigned grid_for(size_t n_items) {
    size_t blocks = (n_items + kThreads - 1) / kThreads;
    if (blocks > 65536) blocks = 65536;
    return blocks ? (unsigned)blocks : 1u;
}

// Eight elements per item: two float4 loads, one 16-byte BF16 store.
__global__ void f32_to_bf16_vec(uint16_t *__restrict__ out, const float *__restrict__ in, size_t n8) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8; i += (size_t)gridDim.x * blockDim.x) {
        const float4 a = reinterpret_cast<const float4 *>(in)[2 * i];
        const float4 b = reinterpret_cast<const float4 *>(in)[2 * i + 1];
        const float f[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
        kl::Bf16Pack<8> p;
        p.pack(f);
        p.store(out + 8 * i);
    }
}

__global__ void f32_to_bf16_scalar(uint16_t *__restrict__ out, const float *__restrict__ in, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = kl::f32_to_bf16(in[i]);
}

__global__ void bf16_to_f32_vec(float *__restrict__ out, const uint16_t *__restrict__ in, size_t n8) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8; i += (size_t)gridDim.x * blockDim.x) {
        kl::Bf16Pack<8> p;
        p.load(in + 8 * i);
        float f[8];
        p.unpack(f);
        reinterpret_cast<float4 *>(out)[2 * i] = make_float4(f[0], f[1], f[2], f[3]);
        reinterpret_cast<float4 *>(out)[2 * i + 1] = make_float4(f[4], f[5], f[6], f[7]);
    }
}

__global__ void bf16_to_f32_scalar(float *__restrict__ out, const uint16_t *__restrict__ in, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = kl::bf16_to_f32(in[i]);
}

// One 64 x 64 tile per block of 32 x 8 threads, for even rows and cols: each warp reads rows of `in` and writes
// rows of `out` as 32 words of two elements (128 bytes). Word (i, w) of the tile holds in(r0 + i, c0 + 2w, +1); the
// row stride of 33 words leaves the column reads of the write phase 2-way bank conflicts.
__global__ void transpose_bf16_pairs(uint32_t *__restrict__ out, const uint32_t *__restrict__ in, int rows, int cols) {
    __shared__ uint32_t tile[64][33];
    const int c0 = blockIdx.x * 64, r0 = blockIdx.y * 64, x = threadIdx.x;
    for (int i = threadIdx.y; i < 64; i += 8)
        if (r0 + i < rows && c0 + 2 * x < cols) tile[i][x] = in[((size_t)(r0 + i) * cols + c0) / 2 + x];
    __syncthreads();
    for (int i = threadIdx.y; i < 64; i += 8) {  // out row c0 + i, its columns r0 + 2x, +1
        if (c0 + i >= cols || r0 + 2 * x >= rows) continue;
        const uint32_t lo = tile[2 * x][i / 2], hi = tile[2 * x + 1][i / 2];
        const uint32_t v = i % 2 ? (lo >> 16) | (hi & 0xffff0000u) : (lo & 0xffffu) | (hi << 16);
        out[((size_t)(c0 + i) * rows + r0) / 2 + x] = v;
    }
}

// One 32 x 32 tile per block of 32 x 8 threads, any shape. A tile row is 17 words, so the column reads touch 32
// different banks.
__global__ void transpose_bf16(uint16_t *__restrict__ out, const uint16_t *__restrict__ in, int rows, int cols) {
    __shared__ uint16_t tile[32][34];
    const int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32, x = threadIdx.x;
    for (int i = threadIdx.y; i < 32; i += 8)
        if (r0 + i < rows && c0 + x < cols) tile[i][x] = in[(size_t)(r0 + i) * cols + c0 + x];
    __syncthreads();
    for (int i = threadIdx.y; i < 32; i += 8)
        if (c0 + i < cols && r0 + x < rows) out[(size_t)(c0 + i) * rows + r0 + x] = tile[x][i];
}

}  // namespace

extern "C" kl_status kl_f32_to_bf16_cuda(kl_bf16 *out, const float *in, size_t n, cudaStream_t stream) {
    if (n == 0) return KL_OK;
    size_t done = 0;
    if (kl::aligned16(out) && kl::aligned16(in) && n >= 8) {
        const size_t n8 = n / 8;
        f32_to_bf16_vec<<<grid_for(n8), kThreads, 0, stream>>>(out, in, n8);
        KL_CUDA_CHECK_LAUNCH();
        done = n8 * 8;
    }
    if (done < n) {
        f32_to_bf16_scalar<<<grid_for(n - done), kThreads, 0, stream>>>(out + done, in + done, n - done);
        KL_CUDA_CHECK_LAUNCH();
    }
    return KL_OK;
}

extern "C" kl_status kl_bf16_to_f32_cuda(float *out, const kl_bf16 *in, size_t n, cudaStream_t stream) {
    if (n == 0) return KL_OK;
    size_t done = 0;
    if (kl::aligned16(out) && kl::aligned16(in) && n >= 8) {
        const size_t n8 = n / 8;
        bf16_to_f32_vec<<<grid_for(n8), kThreads, 0, stream>>>(out, in, n8);
        KL_CUDA_CHECK_LAUNCH();
        done = n8 * 8;
    }
    if (done < n) {
        bf16_to_f32_scalar<<<grid_for(n - done), kThreads, 0, stream>>>(out + done, in + done, n - done);
        KL_CUDA_CHECK_LAUNCH();
    }
    return KL_OK;
}

extern "C" kl_status kl_transpose_bf16_cuda(kl_bf16 *out, const kl_bf16 *in, int rows, int cols, cudaStream_t stream) {
    if (rows < 0 || cols < 0 || (rows + 31) / 32 > 65535)
        return kl_error(KL_ERR_INVALID, "transpose: expected 0 <= rows < 2^21 and cols >= 0 (got %d, %d)", rows, cols);
    if (rows == 0 || cols == 0) return KL_OK;
    if (rows % 2 == 0 && cols % 2 == 0 && ((uintptr_t)out | (uintptr_t)in) % 4 == 0)
        transpose_bf16_pairs<<<dim3((cols + 63) / 64, (rows + 63) / 64), dim3(32, 8), 0, stream>>>(
            reinterpret_cast<uint32_t *>(out), reinterpret_cast<const uint32_t *>(in), rows, cols);
    else
        transpose_bf16<<<dim3((cols + 31) / 32, (rows + 31) / 32), dim3(32, 8), 0, stream>>>(
            reinterpret_cast<uint16_t *>(out), reinterpret_cast<const uint16_t *>(in), rows, cols);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}
