/* cpu_parallel.h — when the CPU reference ops use OpenMP threads: only for loops with enough work, since
 * a parallel region costs microseconds (far more on a loaded machine), which would dominate tiny calls
 * such as the ones the finite-difference tests make by the thousand. */
#ifndef KL_CPU_PARALLEL_H
#define KL_CPU_PARALLEL_H

#include <stddef.h>

/* Multiply-adds (roughly) below which a loop runs on the calling thread alone. */
#define KL_CPU_PARALLEL_MIN_WORK ((size_t)1 << 15)

/* For `#pragma omp parallel ... if (KL_PAR(work))`. */
#define KL_PAR(work) ((size_t)(work) >= KL_CPU_PARALLEL_MIN_WORK)

#endif
