/* dash_blocks.c — DASH blocking, stacking plans and the per-block update stages (see dash_blocks.h).
 * Copies and arithmetic only: what to store, when to call which stage and how to shard is the optimizer's.
 * The typed half is compiled twice (double, float) by including this file with KL_DB_PASS set. */
#ifndef KL_DB_PASS

#include "dash_blocks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linalg.h"

/* ---- blocking ------------------------------------------------------------------------------------- */

kl_status kl_block_layout_init(int64_t rows, int64_t cols, int block, kl_block_layout *out) {
    if (rows <= 0 || cols <= 0 || block <= 0)
        return kl_error(KL_ERR_INVALID, "kl_block_layout_init: expected rows, cols, block > 0, got %lld×%lld, "
                        "block %d", (long long)rows, (long long)cols, block);
    out->rows = rows;
    out->cols = cols;
    out->block = block;
    out->n_row_full = rows / block;
    out->n_col_full = cols / block;
    out->rest_rows = (int)(rows % block);
    out->rest_cols = (int)(cols % block);
    return KL_OK;
}

void kl_block_kind_shape(const kl_block_layout *l, kl_block_kind kind, int *brows, int *bcols, int64_t *count) {
    int br = 0, bc = 0;
    int64_t n = 0;
    switch (kind) {
    case KL_BLOCK_FULL: br = bc = l->block; n = l->n_row_full * l->n_col_full; break;
    case KL_BLOCK_RIGHT: br = l->block; bc = l->rest_cols; n = bc ? l->n_row_full : 0; break;
    case KL_BLOCK_BOTTOM: br = l->rest_rows; bc = l->block; n = br ? l->n_col_full : 0; break;
    case KL_BLOCK_CORNER: br = l->rest_rows; bc = l->rest_cols; n = (br && bc) ? 1 : 0; break;
    default: break;
    }
    if (brows) *brows = br;
    if (bcols) *bcols = bc;
    if (count) *count = n;
}

void kl_block_origin(const kl_block_layout *l, kl_block_kind kind, int64_t index, int64_t *r0, int64_t *c0) {
    const int64_t b = l->block;
    switch (kind) {
    case KL_BLOCK_FULL:
        *r0 = (index / l->n_col_full) * b;
        *c0 = (index % l->n_col_full) * b;
        break;
    case KL_BLOCK_RIGHT: *r0 = index * b; *c0 = l->n_col_full * b; break;
    case KL_BLOCK_BOTTOM: *r0 = l->n_row_full * b; *c0 = index * b; break;
    default: *r0 = l->n_row_full * b; *c0 = l->n_col_full * b; break;
    }
}

/* Copies one br×bc block between a row-major matrix with `cols` columns (at r0, c0) and a dense buffer. */
static void db_copy_block(int64_t cols, int64_t r0, int64_t c0, int br, int bc, size_t elem, const char *from_param,
                          char *to_block, const char *from_block, char *to_param) {
    const size_t line = elem * (size_t)bc;
    for (int r = 0; r < br; r++) {
        const size_t poff = elem * (size_t)((r0 + r) * cols + c0), boff = line * (size_t)r;
        if (from_param) memcpy(to_block + boff, from_param + poff, line);
        else memcpy(to_param + poff, from_block + boff, line);
    }
}

void kl_block_gather(const kl_block_layout *l, kl_block_kind kind, const void *param, size_t elem_bytes,
                     void *stack) {
    int br, bc;
    int64_t n, r0, c0;
    kl_block_kind_shape(l, kind, &br, &bc, &n);
    for (int64_t i = 0; i < n; i++) {
        kl_block_origin(l, kind, i, &r0, &c0);
        db_copy_block(l->cols, r0, c0, br, bc, elem_bytes, (const char *)param,
                      (char *)stack + (size_t)i * br * bc * elem_bytes, NULL, NULL);
    }
}

void kl_block_scatter(const kl_block_layout *l, kl_block_kind kind, const void *stack, size_t elem_bytes,
                      void *param) {
    int br, bc;
    int64_t n, r0, c0;
    kl_block_kind_shape(l, kind, &br, &bc, &n);
    for (int64_t i = 0; i < n; i++) {
        kl_block_origin(l, kind, i, &r0, &c0);
        db_copy_block(l->cols, r0, c0, br, bc, elem_bytes, NULL, NULL,
                      (const char *)stack + (size_t)i * br * bc * elem_bytes, (char *)param);
    }
}

void kl_block_plan_free(kl_block_plan *plan) {
    if (!plan) return;
    for (int s = 0; s < plan->n_stacks; s++) free(plan->stacks[s].refs);
    free(plan->stacks);
    free(plan->layouts);
    memset(plan, 0, sizeof *plan);
}

kl_status kl_block_plan_build(int n_params, const int64_t *rows, const int64_t *cols, int block,
                              kl_block_plan *plan) {
    memset(plan, 0, sizeof *plan);
    if (n_params < 0) return kl_error(KL_ERR_INVALID, "kl_block_plan_build: n_params must be >= 0, got %d", n_params);
    plan->n_params = n_params;
    plan->layouts = (kl_block_layout *)kl_calloc((size_t)(n_params ? n_params : 1), sizeof(kl_block_layout),
                                                 "DASH block layouts");
    /* at most 4 shapes per parameter */
    plan->stacks = (kl_block_stack *)kl_calloc((size_t)4 * (n_params ? n_params : 1), sizeof(kl_block_stack),
                                               "DASH block stacks");
    if (!plan->layouts || !plan->stacks) {
        kl_block_plan_free(plan);
        return KL_ERR_OOM;
    }
    for (int p = 0; p < n_params; p++) {
        kl_status st = kl_block_layout_init(rows[p], cols[p], block, &plan->layouts[p]);
        if (st != KL_OK) {
            kl_block_plan_free(plan);
            return kl_error_context(st, "parameter %d", p);
        }
    }
    /* pass 1: shapes and counts; pass 2: fill the references in stacking order */
    for (int pass = 0; pass < 2; pass++) {
        for (int s = 0; s < plan->n_stacks; s++) plan->stacks[s].count = 0;
        for (int p = 0; p < n_params; p++)
            for (int kind = 0; kind < KL_BLOCK_KINDS; kind++) {
                int br, bc;
                int64_t n;
                kl_block_kind_shape(&plan->layouts[p], (kl_block_kind)kind, &br, &bc, &n);
                if (n == 0) continue;
                int s = 0;
                while (s < plan->n_stacks && !(plan->stacks[s].rows == br && plan->stacks[s].cols == bc)) s++;
                kl_block_stack *st = &plan->stacks[s];
                if (s == plan->n_stacks) {
                    plan->n_stacks++;
                    st->rows = br;
                    st->cols = bc;
                }
                for (int64_t i = 0; i < n; i++, st->count++) {
                    if (pass == 0) continue;
                    kl_block_ref *ref = &st->refs[st->count];
                    ref->param = p;
                    kl_block_origin(&plan->layouts[p], (kl_block_kind)kind, i, &ref->r0, &ref->c0);
                }
            }
        if (pass == 0)
            for (int s = 0; s < plan->n_stacks; s++) {
                plan->stacks[s].refs = (kl_block_ref *)kl_malloc(sizeof(kl_block_ref) * (size_t)plan->stacks[s].count,
                                                                 "DASH block references");
                if (!plan->stacks[s].refs) {
                    kl_block_plan_free(plan);
                    return KL_ERR_OOM;
                }
            }
    }
    return KL_OK;
}

static kl_status db_plan_copy(const kl_block_plan *plan, int stack, size_t elem, const void *const *src_params,
                              void *dst_buf, const void *src_buf, void *const *dst_params) {
    if (!plan || stack < 0 || stack >= plan->n_stacks)
        return kl_error(KL_ERR_INVALID, "DASH block plan: stack %d does not exist (plan has %d)", stack,
                        plan ? plan->n_stacks : 0);
    const kl_block_stack *s = &plan->stacks[stack];
    const size_t bytes = elem * (size_t)s->rows * (size_t)s->cols;
    for (int64_t k = 0; k < s->count; k++) {
        const kl_block_ref *ref = &s->refs[k];
        const int64_t pcols = plan->layouts[ref->param].cols;
        if (src_params)
            db_copy_block(pcols, ref->r0, ref->c0, s->rows, s->cols, elem, (const char *)src_params[ref->param],
                          (char *)dst_buf + (size_t)k * bytes, NULL, NULL);
        else
            db_copy_block(pcols, ref->r0, ref->c0, s->rows, s->cols, elem, NULL, NULL,
                          (const char *)src_buf + (size_t)k * bytes, (char *)dst_params[ref->param]);
    }
    return KL_OK;
}

kl_status kl_block_plan_gather(const kl_block_plan *plan, int stack, const void *const *params, size_t elem_bytes,
                               void *buf) {
    return db_plan_copy(plan, stack, elem_bytes, params, buf, NULL, NULL);
}

kl_status kl_block_plan_scatter(const kl_block_plan *plan, int stack, const void *buf, size_t elem_bytes,
                                void *const *params) {
    return db_plan_copy(plan, stack, elem_bytes, NULL, NULL, buf, params);
}

/* ---- update stages -------------------------------------------------------------------------------- */

kl_dash_hparams kl_dash_hparams_defaults(void) {
    kl_dash_hparams h;
    h.beta_lr = 0.95;
    h.beta_g = 0.9;
    h.beta_graft = 0.95;
    h.eps_graft = 1e-8;
    h.use_bias_correction = 1;
    h.mu = 0.0;
    h.nesterov = 1;
    h.start_prec_step = -1;
    h.inv_root_freq = 10;
    return h;
}

int kl_dash_preconditioned(int64_t t, const kl_dash_hparams *h) { return t >= h->start_prec_step; }

int kl_dash_roots_due(int64_t t, const kl_dash_hparams *h) {
    if (t < h->start_prec_step) return 0;
    const int freq = h->inv_root_freq > 0 ? h->inv_root_freq : 1;
    return t == 1 || t == h->start_prec_step || t % freq == 0;
}

/* The denominator guard of stage 7 (reference v1.1.15): an all-zero block gives U = 0 and P = 0. */
#define KL_DASH_NORM_GUARD 1e-16

#define KL_DB_PASS 1
#define real double
#define KL_T(name) name##_d
#include "dash_blocks.c"
#undef KL_DB_PASS
#undef real
#undef KL_T

#define KL_DB_PASS 2
#define real float
#define KL_T(name) name##_f
#include "dash_blocks.c"

#else /* ---- typed half: `real` is double or float, KL_T(name) appends _d or _f ------------------- */

kl_status KL_T(kl_dash_stats)(int64_t count, int rows, int cols, const real *g, double beta_lr, real *l, real *r) {
    if (count < 0 || rows <= 0 || cols <= 0)
        return kl_error(KL_ERR_INVALID, "kl_dash_stats: expected count >= 0 and a positive block shape, got %lld, "
                        "%d×%d", (long long)count, rows, cols);
    if (count == 0) return KL_OK;
    const double alpha = beta_lr < 1.0 ? 1.0 - beta_lr : 1.0, beta = beta_lr < 1.0 ? beta_lr : 1.0;
    const int64_t bs = (int64_t)rows * cols;
    KL_TRY(KL_T(kl_bgemm)(count, 0, 1, rows, rows, cols, alpha, g, bs, g, bs, beta, l, (int64_t)rows * rows));
    if (r) KL_TRY(KL_T(kl_bgemm)(count, 1, 0, cols, cols, rows, alpha, g, bs, g, bs, beta, r, (int64_t)cols * cols));
    return KL_OK;
}

void KL_T(kl_dash_graft_state)(int64_t n, const real *g, double beta_graft, real *a) {
    const real b = (real)beta_graft, ob = (real)(1.0 - beta_graft);
    for (int64_t i = 0; i < n; i++) a[i] = b * a[i] + ob * g[i] * g[i];
}

void KL_T(kl_dash_grad_ema)(int64_t n, const real *g, double beta_g, real *gt) {
    const real b = (real)beta_g, ob = (real)(1.0 - beta_g);
    for (int64_t i = 0; i < n; i++) gt[i] = b * gt[i] + ob * g[i];
}

kl_status KL_T(kl_dash_inverse_roots)(int64_t count, int rows, int cols, const real *l, const real *r,
                                      const kl_inv_root_opts *opts, real *lbar, real *rbar, kl_inv_root_info *info) {
    if (!opts) return kl_error(KL_ERR_INVALID, "kl_dash_inverse_roots: options are NULL");
    const int two_sided = r != NULL && rbar != NULL;
    kl_inv_root_opts o = *opts;
    o.root = two_sided ? 4 : 2;
    kl_status st = KL_T(kl_inv_root)(count, rows, l, lbar, &o, info);
    if (st != KL_OK) return kl_error_context(st, "DASH left factors (%d×%d)", rows, rows);
    if (!two_sided) return KL_OK;
    o.seed = opts->seed + 1;
    st = KL_T(kl_inv_root)(count, cols, r, rbar, &o, NULL);
    if (st != KL_OK) return kl_error_context(st, "DASH right factors (%d×%d)", cols, cols);
    return KL_OK;
}

void KL_T(kl_dash_graft_norms)(int64_t count, int rows, int cols, const real *gt, const real *a, int64_t t,
                               const kl_dash_hparams *h, double *norms, real *pg) {
    const int bc = h->use_bias_correction;
    const real inv_bc_g = (real)(bc ? 1.0 / (1.0 - pow(h->beta_g, (double)t)) : 1.0);
    const real inv_bc_a = (real)(bc ? 1.0 / (1.0 - pow(h->beta_graft, (double)t)) : 1.0);
    const real eps = (real)h->eps_graft;
    const int64_t bs = (int64_t)rows * cols;
    for (int64_t i = 0; i < count; i++) {
        double s = 0;
        for (int64_t e = i * bs; e < (i + 1) * bs; e++) {
            const real v = (gt[e] * inv_bc_g) / (eps + (real)sqrt((double)(a[e] * inv_bc_a)));
            if (pg) pg[e] = v;
            s += (double)v * (double)v;
        }
        norms[i] = sqrt(s);
    }
}

kl_status KL_T(kl_dash_precondition)(int64_t count, int rows, int cols, const real *lbar, const real *gt,
                                     const real *rbar, const double *norms, real *p, real *work) {
    if (count < 0 || rows <= 0 || cols <= 0)
        return kl_error(KL_ERR_INVALID, "kl_dash_precondition: expected count >= 0 and a positive block shape");
    if (count == 0) return KL_OK;
    const int64_t bs = (int64_t)rows * cols;
    if (rbar) {
        KL_TRY(KL_T(kl_bgemm)(count, 0, 0, rows, cols, rows, 1.0, lbar, (int64_t)rows * rows, gt, bs, 0.0, work, bs));
        KL_TRY(KL_T(kl_bgemm)(count, 0, 0, rows, cols, cols, 1.0, work, bs, rbar, (int64_t)cols * cols, 0.0, p, bs));
    } else {
        KL_TRY(KL_T(kl_bgemm)(count, 0, 0, rows, cols, rows, 1.0, lbar, (int64_t)rows * rows, gt, bs, 0.0, p, bs));
    }
    for (int64_t i = 0; i < count; i++) {
        double u = 0;
        KL_T(kl_bfrobenius)(1, rows, cols, p + i * bs, &u);
        const real f = (real)(norms[i] / (u + KL_DASH_NORM_GUARD));
        for (int64_t e = i * bs; e < (i + 1) * bs; e++) p[e] *= f;
    }
    return KL_OK;
}

void KL_T(kl_dash_momentum)(int64_t n, const kl_dash_hparams *h, real *m, real *p) {
    if (h->mu == 0.0) return;
    const real mu = (real)h->mu;
    for (int64_t i = 0; i < n; i++) {
        m[i] = mu * m[i] + p[i];
        p[i] = h->nesterov ? p[i] + mu * m[i] : m[i];
    }
}

void KL_T(kl_dash_apply)(int64_t n, double lr, double wd, const real *p, real *w) {
    const real decay = (real)(1.0 - lr * wd), step = (real)lr;
    for (int64_t i = 0; i < n; i++) w[i] = w[i] * decay - step * p[i];
}

#endif /* KL_DB_PASS */
