/* cross_entropy.c — CPU reference of the fused softmax cross-entropy (kernels/cross_entropy.h):
 * instantiates cross_entropy_impl.h once for float and once for double. */
#include "cross_entropy.h"

#include "cpu_parallel.h"

#include <math.h>
#include <stddef.h>

#define KL_REAL float
#define KL_FN(name) name##_cpu
#include "cross_entropy_impl.h"
#undef KL_REAL
#undef KL_FN

#define KL_REAL double
#define KL_FN(name) name##_cpu_f64
#include "cross_entropy_impl.h"
#undef KL_REAL
#undef KL_FN
