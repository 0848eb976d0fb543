/* rmsnorm.c — CPU reference of RMSNorm and the Qwen3 q/k norm (kernels/rmsnorm.h): instantiates
 * rmsnorm_impl.h once for float and once for double. */
#include "rmsnorm.h"

#include "cpu_parallel.h"

#include <math.h>
#include <stddef.h>

#define KL_REAL float
#define KL_FN(name) name##_cpu
#include "rmsnorm_impl.h"
#undef KL_REAL
#undef KL_FN

#define KL_REAL double
#define KL_FN(name) name##_cpu_f64
#include "rmsnorm_impl.h"
#undef KL_REAL
#undef KL_FN
