/* optim.h — the optimizer interface (DESIGN.md §8): a small vtable over a table of parameter tensors.
 * The optimizer sees each tensor's place in the flat parameter/gradient buffers, its 2-D shape and its
 * group (decay or not, learning-rate multiplier); it owns its state and reports the state's size. */
#ifndef KL_OPTIM_H
#define KL_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "dct.h"
#include "inv_root.h"
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

/* How 1-D (non-matrix) parameters are updated by DASH. */
typedef enum { KL_DASH_ONE_DIM_ADAMW = 0, KL_DASH_ONE_DIM_SHAMPOO } kl_dash_one_dim;

/* DASH (dash.c; reference: ISTA-DASLab-Optimizers DashConfig). Start from kl_dash_settings_defaults(). */
typedef struct {
    int block;                 /* block size b: matrices are cut into b×b blocks plus remainder strips (1024) */
    double beta_lr;            /* EMA of the statistics L, R (0.95); >= 1: plain sums (AdaGrad-style) */
    double beta_g;             /* EMA of the gradient G̃ (0.9); 0: G̃ = G, no buffer */
    double beta_graft;         /* Adam-graft second moment (0.95) */
    double eps_graft;          /* Adam-graft ε (1e-8) */
    int bias_correction;       /* bias-correct the graft direction (1) */
    double mu;                 /* momentum on the update (0: off, no buffer) */
    int nesterov;              /* with mu > 0: P ← P + mu·M, else P ← M (1) */
    int64_t start_prec_step;   /* steps t < this take the plain graft (Adam) direction (-1: never) */
    int inv_root_every;        /* recompute L^(-1/4), R^(-1/4) at t = 1 and every this many steps (10) */
    kl_root_method root_method; /* Newton-DB, coupled Newton, Chebyshev or eigendecomposition (EIGH) */
    kl_root_scaling scaling;   /* spectrum scale for the iterative solvers: POWER_ITER or FROBENIUS */
    double scale_const;        /* POWER_ITER: s = scale_const · λ_max estimate (2) */
    int power_iters;           /* power iterations (10) */
    int power_vectors;         /* start vectors per block: 1 (reference PI) or 16 (reference PIM) */
    double power_eps;          /* shift for the λ_max estimate only, keeps zero blocks finite (1e-6) */
    double eps_root;           /* damping added to L, R before the root (0; the reference uses 1e-10 for EIGH) */
    int newton_steps;          /* Newton-DB steps per square root / coupled Newton maximum (10) */
    double cn_tol;             /* coupled Newton stops when max|M − I| over a stack < this (1e-6) */
    int cheb_degree;           /* Chebyshev degree (60) */
    double cheb_shift;         /* Chebyshev fits (x + shift)^(-1/p) on x = A/s ∈ [0, 1] (1e-3) */
    kl_eigh_method eigh;       /* EIGH: LAPACK when built with it, else Jacobi (AUTO) */
    kl_dash_one_dim one_dim;   /* non-matrix parameters: AdamW (beta1, beta2, eps of kl_opt_settings) or
                                  one-sided Shampoo on the flattened vector (root 2) */
} kl_dash_settings;

/* DCT-AdamW (dct_adamw.c; reference: ISTA-DASLab-Optimizers DCTAdamW with rotate_subspace=True).
 * Start from kl_dct_settings_defaults(). Adam's β1, β2, ε are kl_opt_settings' beta1, beta2, eps. */
typedef struct {
    int rank;                  /* r: basis columns kept per matrix (128; clamped to the projected size) */
    int refresh_every;         /* re-select the columns at t = 1 and every this many steps (200) */
    int ell;                   /* column score: 1 (ℓ1, reference) or 2 */
    int64_t max_dim;           /* matrices with a side >= this get full AdamW, like 1-D parameters (32000) */
    kl_dct_basis_kind basis;   /* DCT2: Q = Dᵀ (kiln default); DCT3: Q = D (the package's sim_type='matmul') */
} kl_dct_settings;

typedef struct {
    kl_opt_kind kind;
    double beta1, beta2, eps, weight_decay;
    kl_state_dtype state_dtype;
    uint64_t seed;             /* stochastic rounding of BF16 state; DASH's power-iteration start vectors */
    kl_dash_settings dash;     /* kind KL_OPT_DASH only */
    kl_dct_settings dct;       /* kind KL_OPT_DCT_ADAMW only */
} kl_opt_settings;

kl_dash_settings kl_dash_settings_defaults(void);
kl_dct_settings kl_dct_settings_defaults(void);

/* How an optimizer's state may be split across ranks (ZeRO-1): what the smallest indivisible unit is. */
typedef enum {
    KL_SHARD_ELEMENT = 0, /* AdamW: any split of the flat parameter range; state follows element by element */
    KL_SHARD_BLOCK,       /* DASH: whole b×b blocks, strips, corners (L, R, roots, graft, G̃ go together) */
    KL_SHARD_PARAM,       /* DCT-AdamW: whole parameters (the selection and low-rank moments are per matrix) */
} kl_shard_granularity;

typedef struct {
    kl_shard_granularity granularity;
    int block; /* KL_SHARD_BLOCK: the block size b; else 0 */
} kl_opt_sharding;

typedef struct kl_optimizer kl_optimizer;

typedef struct {
    const char *name;
    /* One update of every parameter. step counts from 1 (bias correction). */
    kl_status (*step)(kl_optimizer *o, float *params, const float *grads, double lr, int64_t step);
    size_t (*state_bytes)(const kl_optimizer *o);
    /* Raw state for checkpoints: n_buffers named buffers of bytes each, together every byte of state
     * (state_bytes is their sum). Saving copies them out after a step; loading copies them into an
     * optimizer freshly created with the same settings and parameter table, which then continues
     * exactly as the original would. Names are stable for a given settings + parameter table. */
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

/* A table of named, zero-initialised FP32/int state buffers: how DASH and DCT-AdamW hold their state so
 * that n_state_buffers/state_buffer/state_bytes come from one place. */
typedef struct {
    char name[64];
    void *data;
    size_t bytes;
} kl_opt_state_buf;

typedef struct {
    int n, cap;
    kl_opt_state_buf *bufs;
} kl_opt_state_table;

/* Appends a zeroed buffer of `bytes` (>= 1 byte is allocated) named by the printf-style format; *data
 * receives it. KL_ERR_OOM (message names the buffer) on failure; the table stays valid. */
kl_status kl_opt_state_add(kl_opt_state_table *t, void **data, size_t bytes, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
size_t kl_opt_state_total(const kl_opt_state_table *t);
void kl_opt_state_free(kl_opt_state_table *t);

/* The sharding unit of an optimizer's state (see kl_shard_granularity). */
kl_opt_sharding kl_optimizer_sharding(const kl_optimizer *o);

/* AdamW (adamw.c); exact PyTorch torch.optim.AdamW semantics (decoupled decay p *= 1 - lr·wd first). */
kl_status kl_adamw_create(kl_optimizer **out, const kl_opt_settings *s, const kl_opt_param *params, int n);

/* DASH (dash.c): blocked Shampoo with Adam grafting; FP32 state. */
kl_status kl_dash_create(kl_optimizer **out, const kl_opt_settings *s, const kl_opt_param *params, int n);
/* DCT-AdamW (dct_adamw.c): Adam in the span of r DCT basis columns per matrix; FP32 state. */
kl_status kl_dct_adamw_create(kl_optimizer **out, const kl_opt_settings *s, const kl_opt_param *params, int n);

#ifdef __cplusplus
}
#endif
#endif
