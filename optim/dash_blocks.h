/* dash_blocks.h — DASH's data layout and per-block arithmetic: cutting an R×C parameter into b×b blocks
 * with remainder strips, stacking equal-shape blocks (of many parameters) into 3-D buffers and back, and
 * one function per stage of the per-step block update (reference §A1), in the order an optimizer calls
 * them. Holds no state of its own: the optimizer owns L, R, L̄, R̄, A, G̃, M and calls these in sequence. */
#ifndef KL_DASH_BLOCKS_H
#define KL_DASH_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "inv_root.h"
#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- blocking ------------------------------------------------------------------------------------- */

/* The four kinds of block an R×C parameter is cut into, in stacking order. The reference only accepts
 * R % b == 0 or C % b == 0 (one strip); kiln also takes both, adding one corner block. */
typedef enum {
    KL_BLOCK_FULL = 0, /* (R/b)·(C/b) blocks b×b, row-block-major */
    KL_BLOCK_RIGHT,    /* R/b blocks b×(C%b), top to bottom */
    KL_BLOCK_BOTTOM,   /* C/b blocks (R%b)×b, left to right */
    KL_BLOCK_CORNER,   /* one (R%b)×(C%b) block */
    KL_BLOCK_KINDS
} kl_block_kind;

typedef struct {
    int64_t rows, cols;            /* parameter shape R×C */
    int block;                     /* b */
    int64_t n_row_full, n_col_full; /* R / b, C / b */
    int rest_rows, rest_cols;      /* R % b, C % b */
} kl_block_layout;

kl_status kl_block_layout_init(int64_t rows, int64_t cols, int block, kl_block_layout *out);
/* Shape of the blocks of one kind and how many there are (0 when the kind does not occur). */
void kl_block_kind_shape(const kl_block_layout *l, kl_block_kind kind, int *brows, int *bcols, int64_t *count);
/* Top-left element (r0, c0) of block `index` of `kind`. */
void kl_block_origin(const kl_block_layout *l, kl_block_kind kind, int64_t index, int64_t *r0, int64_t *c0);
/* Copy all blocks of one kind out of a row-major parameter into a stack (count, brows, bcols), and back. */
void kl_block_gather(const kl_block_layout *l, kl_block_kind kind, const void *param, size_t elem_bytes,
                     void *stack);
void kl_block_scatter(const kl_block_layout *l, kl_block_kind kind, const void *stack, size_t elem_bytes,
                      void *param);

/* A stacking plan over many parameters (the reference's DashGpu): one stack per distinct block shape, in
 * order of first appearance; blocks appended in parameter order, within a parameter by kind then index.
 * refs[k] says where stacked block k comes from, so gather/scatter are plain copies. */
typedef struct {
    int32_t param;      /* index into the plan's parameter list */
    int64_t r0, c0;     /* top-left element in that parameter */
} kl_block_ref;

typedef struct {
    int rows, cols;     /* block shape of this stack; its factors are rows×rows (L) and cols×cols (R) */
    int64_t count;
    kl_block_ref *refs; /* count entries */
} kl_block_stack;

typedef struct {
    int n_params;
    kl_block_layout *layouts; /* one per parameter */
    int n_stacks;
    kl_block_stack *stacks;
} kl_block_plan;

kl_status kl_block_plan_build(int n_params, const int64_t *rows, const int64_t *cols, int block,
                              kl_block_plan *plan);
void kl_block_plan_free(kl_block_plan *plan);
/* params[p] is parameter p's row-major data (plan->layouts[p] gives its shape); buf is the stack's
 * (count, rows, cols) buffer. */
kl_status kl_block_plan_gather(const kl_block_plan *plan, int stack, const void *const *params, size_t elem_bytes,
                               void *buf);
kl_status kl_block_plan_scatter(const kl_block_plan *plan, int stack, const void *buf, size_t elem_bytes,
                                void *const *params);

/* ---- per-block update stages (reference §A1), for a stack of `count` blocks rows×cols ----------------
 * A "one-sided" stack (1-D parameters viewed as (E, 1) columns) passes r = rbar = NULL: only L exists
 * and its root is 2. Two-sided stacks use root 4 for L and R. */

typedef struct {
    double beta_lr;      /* statistics EMA β_LR (0.95); >= 1 means plain sums L += G·Gᵀ */
    double beta_g;       /* gradient EMA β_G (0.9); 0 means G̃ = G */
    double beta_graft;   /* Adam-graft second moment β (0.95) */
    double eps_graft;    /* Adam-graft ε (1e−8) */
    int use_bias_correction; /* 1, as in every reference run */
    double mu;           /* momentum (0: off, as in the paper) */
    int nesterov;        /* with mu > 0: P ← P + mu·M (DashLayerwise and Distributed Shampoo) */
    int64_t start_prec_step; /* steps t < this use the plain graft (Adam) direction (−1: never) */
    int inv_root_freq;   /* recompute L̄, R̄ every this many steps (10) */
} kl_dash_hparams;

/* The reference defaults (DashConfig / paper runs). */
kl_dash_hparams kl_dash_hparams_defaults(void);

/* Stage 4's schedule: 1 when the inverse roots are due at step t (t counts from 1): t >= start_prec_step
 * and (t == 1, t == start_prec_step, or t % inv_root_freq == 0). The t == start_prec_step case is kiln's:
 * the reference would precondition with never-computed (zero) roots when start_prec_step > 1 is not a
 * multiple of inv_root_freq. Also 1 at t == 1 if start_prec_step <= 1, as in the reference. */
int kl_dash_roots_due(int64_t t, const kl_dash_hparams *h);
/* 1 when step t uses the Shampoo direction (t >= start_prec_step), else the graft direction itself. */
int kl_dash_preconditioned(int64_t t, const kl_dash_hparams *h);

/* Stage 2: L ← β·L + (1−β)·G·Gᵀ, R ← β·R + (1−β)·Gᵀ·G (β = beta_lr; β >= 1: plain sums). r may be NULL. */
kl_status kl_dash_stats_d(int64_t count, int rows, int cols, const double *g, double beta_lr, double *l, double *r);
kl_status kl_dash_stats_f(int64_t count, int rows, int cols, const float *g, double beta_lr, float *l, float *r);
/* Stage 3: A ← β·A + (1−β)·G⊙G over n elements (β = beta_graft), from the raw gradient. */
void kl_dash_graft_state_d(int64_t n, const double *g, double beta_graft, double *a);
void kl_dash_graft_state_f(int64_t n, const float *g, double beta_graft, float *a);
/* Stage 4: L̄ = L^(−1/4), R̄ = R^(−1/4) (one-sided: L̄ = L^(−1/2)) with the solver in opts (opts->root is
 * ignored; R's power iteration uses seed + 1). info (may be NULL) describes the L call. */
kl_status kl_dash_inverse_roots_d(int64_t count, int rows, int cols, const double *l, const double *r,
                                  const kl_inv_root_opts *opts, double *lbar, double *rbar, kl_inv_root_info *info);
kl_status kl_dash_inverse_roots_f(int64_t count, int rows, int cols, const float *l, const float *r,
                                  const kl_inv_root_opts *opts, float *lbar, float *rbar, kl_inv_root_info *info);
/* Stage 5: G̃ ← β·G̃ + (1−β)·G over n elements (β = beta_g). */
void kl_dash_grad_ema_d(int64_t n, const double *g, double beta_g, double *gt);
void kl_dash_grad_ema_f(int64_t n, const float *g, double beta_g, float *gt);
/* Stage 6: the Adam graft direction P_g = (G̃/(1−β_G^t)) / (ε + sqrt(A/(1−β_graft^t))) of each block;
 * norms[i] = ||P_g,i||_F (double). pg (may be NULL) receives P_g itself: the step's direction when
 * t < start_prec_step. Bias corrections only with use_bias_correction. */
void kl_dash_graft_norms_d(int64_t count, int rows, int cols, const double *gt, const double *a, int64_t t,
                           const kl_dash_hparams *h, double *norms, double *pg);
void kl_dash_graft_norms_f(int64_t count, int rows, int cols, const float *gt, const float *a, int64_t t,
                           const kl_dash_hparams *h, double *norms, float *pg);
/* Stage 7: U = L̄·G̃·R̄ (one-sided: L̄·G̃), P = U·norms[i]/(||U||_F + 1e−16) per block — the 1e−16 keeps
 * an all-zero block at P = 0. work holds count·rows·cols elements; p must not overlap the inputs. */
kl_status kl_dash_precondition_d(int64_t count, int rows, int cols, const double *lbar, const double *gt,
                                 const double *rbar, const double *norms, double *p, double *work);
kl_status kl_dash_precondition_f(int64_t count, int rows, int cols, const float *lbar, const float *gt,
                                 const float *rbar, const double *norms, float *p, float *work);
/* Stage 8 (mu > 0 only; a no-op for mu == 0): M ← mu·M + P; then P ← P + mu·M (nesterov) or P ← M. */
void kl_dash_momentum_d(int64_t n, const kl_dash_hparams *h, double *m, double *p);
void kl_dash_momentum_f(int64_t n, const kl_dash_hparams *h, float *m, float *p);
/* Stage 9: W ← W·(1 − lr·wd) − lr·P over n elements (decoupled decay first; pass wd = 0 for 1-D params). */
void kl_dash_apply_d(int64_t n, double lr, double wd, const double *p, double *w);
void kl_dash_apply_f(int64_t n, double lr, double wd, const float *p, float *w);

#ifdef __cplusplus
}
#endif
#endif
