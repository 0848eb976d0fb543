/* bench_gemm.h — the "gemm" engineer's kernel benchmarks (kernels/cuda/bench_gemm.cu): cuBLASLt linear layers at the
 * Qwen2.5-0.5B shapes (forward, dinp, dw) and causal GQA attention forward + backward, each as TFLOP/s against the
 * H200's measured 790 TFLOP/s BF16 dense bound, as a table and one JSON line per kernel. */
#ifndef KL_BENCH_GEMM_H
#define KL_BENCH_GEMM_H

#include <stdio.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs on the current device; prints to `out`. KL_ERR_UNSUPPORTED without a GPU. */
kl_status kl_bench_gemm(FILE *out);

#ifdef __cplusplus
}
#endif
#endif
