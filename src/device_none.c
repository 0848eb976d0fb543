/* device_none.c — device queries for a build without CUDA: there are never any GPUs. */
#include "device.h"

#ifndef KILN_HAVE_CUDA
int kl_gpu_count(void) { return 0; }
void kl_gpu_name(int index, char *buf, int buf_size) {
    (void)index;
    if (buf_size > 0) buf[0] = 0;
}
#else
typedef int kl_device_none_unused; /* ISO C forbids an empty translation unit */
#endif
