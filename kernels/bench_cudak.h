/* bench_cudak.h — benchmarks of the CUDA kernels other than matrix products and attention (embedding,
 * RMSNorm, q/k norm, RoPE, SwiGLU, cross-entropy, AdamW, gradient norm, conversions) at realistic sizes:
 * achieved bandwidth against the H200's measured 4.3 TB/s copy bandwidth. Needs a GPU. */
#ifndef KL_BENCH_CUDAK_H
#define KL_BENCH_CUDAK_H

#include <stdio.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs every benchmark on the current device, prints a table then one JSON line per kernel to out. */
kl_status kl_bench_cudak(FILE *out);

#ifdef __cplusplus
}
#endif
#endif
