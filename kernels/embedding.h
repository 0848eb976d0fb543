/* embedding.h — token embedding lookup: forward gathers rows of wte, backward scatters into dwte.
 * CPU reference in kernels/cpu/embedding.c (FP32 `_cpu`, FP64 `_cpu_f64`); CUDA launchers join later.
 * Gradient convention: dwte ACCUMULATES (+=); the loop order is fixed, so the result is deterministic. */
#ifndef KL_EMBEDDING_H
#define KL_EMBEDDING_H

#include <stdint.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out(N,C) = wte(V,C)[tokens[n]]. Returns KL_ERR_INVALID (naming the position and token) if a token
 * lies outside [0, V); out is then unspecified. */
kl_status kl_embedding_forward_cpu(float *out, const int32_t *tokens, const float *wte, int N, int V, int C);
kl_status kl_embedding_forward_cpu_f64(double *out, const int32_t *tokens, const double *wte, int N, int V,
                                       int C);

/* dwte(V,C) += dout(N,C) scattered to the rows tokens[n]. Tokens must already be valid (the forward
 * checked them); for each row of dwte the contributions are added in increasing n. */
void kl_embedding_backward_cpu(float *dwte, const float *dout, const int32_t *tokens, int N, int C);
void kl_embedding_backward_cpu_f64(double *dwte, const double *dout, const int32_t *tokens, int N, int C);

#ifdef __cplusplus
}
#endif
#endif
