/* swiglu.c — CPU reference of the SwiGLU gate (kernels/swiglu.h): instantiates swiglu_impl.h once for
 * float and once for double. */
#include "swiglu.h"

#include "cpu_parallel.h"

#include <math.h>
#include <stddef.h>

#define KL_REAL float
#define KL_FN(name) name##_cpu
#include "swiglu_impl.h"
#undef KL_REAL
#undef KL_FN

#define KL_REAL double
#define KL_FN(name) name##_cpu_f64
#include "swiglu_impl.h"
#undef KL_REAL
#undef KL_FN
