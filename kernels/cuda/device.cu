// device.cu — device queries for the CUDA build (see src/device.h).
#include <cuda_runtime.h>

#include <cstdio>

#include "device.h"

extern "C" int kl_gpu_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver"/"no device" error
        return 0;
    }
    return n;
}

extern "C" void kl_gpu_name(int index, char *buf, int buf_size) {
    cudaDeviceProp p;
    if (buf_size <= 0) return;
    if (cudaGetDeviceProperties(&p, index) != cudaSuccess) {
        cudaGetLastError();
        buf[0] = 0;
        return;
    }
    snprintf(buf, (size_t)buf_size, "%s", p.name);
}
