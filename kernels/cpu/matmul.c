/* matmul.c — CPU reference of the linear layer (kernels/matmul.h): instantiates matmul_impl.h once for
 * float (cblas_sgemm) and once for double (cblas_dgemm), or with plain loops when BLAS is absent. */
#include "matmul.h"

#include "cpu_parallel.h"

#include <stddef.h>

#ifdef KILN_HAVE_CBLAS
#include <cblas.h>
#endif

#define KL_REAL float
#define KL_FN(name) name##_cpu
#define KL_GEMM cblas_sgemm
#include "matmul_impl.h"
#undef KL_REAL
#undef KL_FN
#undef KL_GEMM

#define KL_REAL double
#define KL_FN(name) name##_cpu_f64
#define KL_GEMM cblas_dgemm
#include "matmul_impl.h"
#undef KL_REAL
#undef KL_FN
#undef KL_GEMM
