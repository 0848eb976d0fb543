/* rope.h — rotary position embeddings, HF "rotate_half" convention (element i pairs with i + HS/2, NOT
 * interleaved), with optional Llama-3 frequency scaling. Tables are built once per model; forward and
 * backward rotate the q and k heads of the packed qkv buffer in place (layout in attention.h). */
#ifndef KL_ROPE_H
#define KL_ROPE_H

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { KL_ROPE_SCALING_NONE = 0, KL_ROPE_SCALING_LLAMA3 = 1 };

/* HF rope_scaling {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
 * "original_max_position_embeddings"}; type 0 ignores the other fields. */
typedef struct {
    int type;
    double factor, low_freq_factor, high_freq_factor;
    int original_max_pos;
} kl_rope_scaling;

/* inv_freq(HS/2): 1 / theta^(2i/HS), then HF's _compute_llama3_parameters when s->type is llama3 (s may be
 * NULL for none). Computed in double. KL_ERR_INVALID for odd or non-positive HS, theta <= 0, an unknown
 * scaling type, or llama3 parameters with factor <= 0, original_max_pos <= 0 or high <= low factor. */
kl_status kl_rope_inv_freq(double *inv_freq, int HS, double theta, const kl_rope_scaling *s);

/* cos, sin (T, HS/2): angle t * inv_freq[i] for positions t = 0..T-1, computed in double, then stored. */
kl_status kl_rope_freqs(float *cos, float *sin, int T, int HS, double theta, const kl_rope_scaling *s);
kl_status kl_rope_freqs_f64(double *cos, double *sin, int T, int HS, double theta, const kl_rope_scaling *s);

/* In place on qkv(B,T,(NH+2NKV)*HS): every q and k head at position t is rotated,
 *   y[i] = x[i] cos - x[i+HS/2] sin,  y[i+HS/2] = x[i+HS/2] cos + x[i] sin   (i < HS/2),
 * with cos/sin read from row t of the tables (which need at least T rows). v heads are untouched. */
void kl_rope_forward_cpu(float *qkv, const float *cos, const float *sin, int B, int T, int NH, int NKV, int HS);
void kl_rope_forward_cpu_f64(double *qkv, const double *cos, const double *sin, int B, int T, int NH, int NKV,
                             int HS);

/* In place on dqkv(B,T,(NH+2NKV)*HS): the inverse (transposed) rotation of the q and k heads' gradients,
 * i.e. the gradient w.r.t. the forward's input (OVERWRITE semantics, as an in-place op). v untouched. */
void kl_rope_backward_cpu(float *dqkv, const float *cos, const float *sin, int B, int T, int NH, int NKV, int HS);
void kl_rope_backward_cpu_f64(double *dqkv, const double *cos, const double *sin, int B, int T, int NH, int NKV,
                              int HS);

#ifdef __cplusplus
}
#endif
#endif
