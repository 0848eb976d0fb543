/* attention.c — CPU reference of causal grouped-query attention (kernels/attention.h): instantiates
 * attention_impl.h once for float and once for double. */
#include "attention.h"

#include "cpu_parallel.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdlib.h>

#define KL_REAL float
#define KL_FN(name) name##_cpu
#include "attention_impl.h"
#undef KL_REAL
#undef KL_FN

#define KL_REAL double
#define KL_FN(name) name##_cpu_f64
#include "attention_impl.h"
#undef KL_REAL
#undef KL_FN
