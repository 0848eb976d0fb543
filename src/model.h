/* model.h — the decoder-only transformer (Llama / Mistral / Qwen2 / Qwen3): its shape, its parameter
 * table, and forward / backward written once against the op headers in kernels/.
 * Parameters are reached only through kl_weights_get(), so sharding and offload can change where they
 * live without touching this file's math. */
#ifndef KL_MODEL_H
#define KL_MODEL_H

#include <stdint.h>

#include "kl_base.h"
#include "linear.h"
#include "rope.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { KL_ARCH_LLAMA = 0, KL_ARCH_QWEN2, KL_ARCH_QWEN3, KL_ARCH_MISTRAL } kl_arch;
const char *kl_arch_name(kl_arch a);

typedef struct {
    kl_arch arch;
    int V;       /* vocab size */
    int C;       /* hidden size */
    int F;       /* MLP intermediate size */
    int L;       /* layers */
    int NH;      /* query heads */
    int NKV;     /* key/value heads (GQA when < NH) */
    int HS;      /* head dim (Qwen3 may have NH*HS != C) */
    int max_T;   /* longest sequence (RoPE table size) */
    int qkv_bias;     /* Qwen2: biases on q, k, v projections */
    int qk_norm;      /* Qwen3: RMSNorm over head_dim on q and k */
    int tie_embeddings;
    double rope_theta;
    kl_rope_scaling rope_scaling;
    float norm_eps;
} kl_model_shape;

/* What a parameter is, for the optimizer's groups and the HF name mapping. */
typedef enum { KL_PARAM_EMBEDDING = 0, KL_PARAM_MATRIX, KL_PARAM_NORM, KL_PARAM_BIAS, KL_PARAM_HEAD } kl_param_kind;

/* One parameter tensor inside the single parameter allocation. layer = -1 for non-block tensors. */
typedef struct {
    char name[64];   /* kiln name, e.g. "layers.3.wqkv" */
    int layer;
    kl_param_kind kind;
    int rows, cols;  /* 2-D view (rows = 1 for vectors) */
    size_t offset;   /* elements from the start of the parameter buffer */
    size_t numel;
} kl_param_info;

/* Pointers to one block's weights (any may be NULL when the architecture has no such tensor). */
typedef struct {
    float *attn_norm;  /* (C) */
    float *wqkv;       /* ((NH+2NKV)*HS, C) */
    float *bqkv;       /* ((NH+2NKV)*HS) Qwen2 */
    float *q_norm;     /* (HS) Qwen3 */
    float *k_norm;     /* (HS) Qwen3 */
    float *wo;         /* (C, NH*HS) */
    float *mlp_norm;   /* (C) */
    float *wgu;        /* (2F, C): gate rows then up rows */
    float *wdown;      /* (C, F) */
} kl_block_weights;

typedef struct {
    float *wte;        /* (V, C) */
    float *final_norm; /* (C) */
    float *lm_head;    /* (V, C); == wte when tied */
} kl_outer_weights;

typedef struct kl_model kl_model;

/* Fills in derived sizes (NKV, HS, F defaults) and checks the shape; message names the bad field. */
kl_status kl_model_shape_check(kl_model_shape *s);
/* Allocates parameters and gradients (zeroed). Activations are allocated on first use per (B, T). */
kl_status kl_model_create(kl_model **out, const kl_model_shape *s);
void kl_model_free(kl_model *m);
const kl_model_shape *kl_model_get_shape(const kl_model *m);

/* Precision of the blocks' four linear layers (wqkv, wo, wgu, wdown) — precision.matmul; the embedding,
 * LM head, norms and attention stay FP32. A new model is KL_LINEAR_FP32. Checked; copied. */
kl_status kl_model_set_precision(kl_model *m, const kl_linear_cfg *cfg);
const kl_linear_cfg *kl_model_get_precision(const kl_model *m);
/* Backward passes run so far (one per kl_model_loss with backward != 0): the `pass` of the NVFP4
 * backward's random call ids (kl_linear_call_id). A checkpoint saves it; resuming sets it back. */
uint64_t kl_model_backward_passes(const kl_model *m);
void kl_model_set_backward_passes(kl_model *m, uint64_t passes);

/* Random initialisation from Philox(seed): normal(0, std) for matrices and embeddings, output projections
 * (wo, wdown) scaled by 1/sqrt(2L), norms = 1, biases = 0. Same bits on every machine. */
void kl_model_init_weights(kl_model *m, uint64_t seed, float std);

size_t kl_model_num_params(const kl_model *m);            /* unique parameters (tied head counted once) */
int kl_model_num_param_tensors(const kl_model *m);
const kl_param_info *kl_model_param_info(const kl_model *m, int i);
float *kl_model_params(kl_model *m);                      /* all parameters, one buffer */
float *kl_model_grads(kl_model *m);                       /* same layout */
void kl_model_zero_grads(kl_model *m);
/* Matmul FLOPs per token for forward+backward (6 x matrix params + attention), for MFU. */
double kl_model_flops_per_token(const kl_model *m, int T);

/* Weight access (DESIGN.md §6). layer in [0, L) for blocks; the outer weights have their own pair.
 * On the CPU these only hand out pointers; the calls mark where a sharded or offloaded container
 * would start a transfer (gather), wait for it (get) and allow reuse (release). */
void kl_weights_gather(kl_model *m, int layer);
const kl_block_weights *kl_weights_get(kl_model *m, int layer);
void kl_weights_release(kl_model *m, int layer);
const kl_outer_weights *kl_weights_get_outer(kl_model *m);
kl_block_weights kl_grads_block(kl_model *m, int layer);
kl_outer_weights kl_grads_outer(kl_model *m);

/* Forward through the final norm for inputs (B,T). Keeps what backward needs. */
kl_status kl_model_forward(kl_model *m, const int32_t *inputs, int B, int T);
/* Loss over the targets of the last forward (targets -100 = masked): returns the sum of per-position
 * losses in *loss_sum and the valid count in *n_valid. With backward != 0 it also accumulates every
 * parameter gradient, scaled by grad_scale (normally 1 / valid targets of the whole optimizer step). */
kl_status kl_model_loss(kl_model *m, const int32_t *targets, float z_loss, int backward, float grad_scale,
                        double *loss_sum, int64_t *n_valid);
/* Logits (V) of position t of sequence b after the last forward. */
kl_status kl_model_logits_at(kl_model *m, int b, int t, float *logits);

#ifdef __cplusplus
}
#endif
#endif
