/* gpu_test_util.h — what the GPU tests share: a device buffer that frees itself and copies to and from
 * host vectors (failures are test failures), and BF16 <-> float vector conversion (round to nearest even). */
#ifndef KL_GPU_TEST_UTIL_H
#define KL_GPU_TEST_UTIL_H

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

extern "C" {
#include "cuda_common.h"
}

template <typename T>
struct Dev {
    T *p = nullptr;
    size_t n = 0;
    explicit Dev(size_t count) : n(count) { EXPECT_EQ(cudaMalloc(&p, (count ? count : 1) * sizeof(T)), cudaSuccess); }
    explicit Dev(const std::vector<T> &h) : Dev(h.size()) { put(h); }
    ~Dev() { cudaFree(p); }
    Dev(const Dev &) = delete;
    Dev &operator=(const Dev &) = delete;
    void put(const std::vector<T> &h) { EXPECT_EQ(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess); }
    std::vector<T> get() const {
        std::vector<T> h(n);
        EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
        return h;
    }
};

inline std::vector<kl_bf16> to_bf16(const std::vector<float> &v) {
    std::vector<kl_bf16> r(v.size());
    for (size_t i = 0; i < v.size(); i++) r[i] = kl_f32_to_bf16(v[i]);
    return r;
}
inline std::vector<float> to_f32(const std::vector<kl_bf16> &v) {
    std::vector<float> r(v.size());
    for (size_t i = 0; i < v.size(); i++) r[i] = kl_bf16_to_f32(v[i]);
    return r;
}

#endif
