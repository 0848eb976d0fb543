/* embedding.c — CPU reference of the token embedding (kernels/embedding.h): instantiates
 * embedding_impl.h once for float and once for double. */
#include "embedding.h"

#include "cpu_parallel.h"

#define KL_REAL float
#define KL_FN(name) name##_cpu
#include "embedding_impl.h"
#undef KL_REAL
#undef KL_FN

#define KL_REAL double
#define KL_FN(name) name##_cpu_f64
#include "embedding_impl.h"
#undef KL_REAL
#undef KL_FN
