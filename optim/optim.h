/* optim.h — the optimizer interface (DESIGN.md §8): a small vtable over a table of parameter tensors.
 * The optimizer sees each tensor's place in the flat parameter/gradient buffers, its 2-D shape and its
 * group (decay or not, learning-rate multiplier); it owns its state and reports the state's size. */
#ifndef KL_OPTIM_H
#define KL_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name;
    size_t offset, numel; /* elements in the flat buffers */
    int rows, cols;       /* 2-D view; rows = 1 for vectors */
    int decay;            /* apply weight decay */
    float lr_mult;        /* per-group learning-rate multiplier */
    int is_matrix;        /* a 2-D weight of a linear layer (what DASH / DCT precondition) */
} kl_opt_param;

typedef enum { KL_OPT_ADAMW = 0, KL_OPT_DASH, KL_OPT_DCT_ADAMW } kl_opt_kind;
typedef enum { KL_STATE_FP32 = 0, KL_STATE_BF16 } kl_state_dtype;

typedef struct {
    kl_opt_kind kind;
    double beta1, beta2, eps, weight_decay;
    kl_state_dtype state_dtype;
    uint64_t seed; /* stochastic rounding of BF16 state */
} kl_opt_settings;

typedef struct kl_optimizer kl_optimizer;

typedef struct {
    const char *name;
    /* One update of every parameter. step counts from 1 (bias correction). */
    kl_status (*step)(kl_optimizer *o, float *params, const float *grads, double lr, int64_t step);
    size_t (*state_bytes)(const kl_optimizer *o);
    /* Raw state for checkpoints: n_buffers named buffers of bytes each. */
    int (*n_state_buffers)(const kl_optimizer *o);
    void *(*state_buffer)(kl_optimizer *o, int i, const char **name, size_t *bytes);
    void (*destroy)(kl_optimizer *o);
} kl_optimizer_vtable;

struct kl_optimizer {
    const kl_optimizer_vtable *vt;
    kl_opt_settings settings;
    int n_params;
    kl_opt_param *params;
    size_t total_numel;
};

kl_status kl_optimizer_create(kl_optimizer **out, const kl_opt_settings *s, const kl_opt_param *params, int n);
void kl_optimizer_free(kl_optimizer *o);

/* AdamW (adamw.c); exact PyTorch torch.optim.AdamW semantics (decoupled decay p *= 1 - lr·wd first). */
kl_status kl_adamw_create(kl_optimizer **out, const kl_opt_settings *s, const kl_opt_param *params, int n);

#ifdef __cplusplus
}
#endif
#endif
