/* dash.c — the DASH optimizer on the CPU (kind KL_OPT_DASH): blocked Shampoo with Adam grafting behind
 * the kl_optimizer vtable. It owns the FP32 state (per block-shape stacks of L, R, their inverse roots,
 * the graft second moment, G̃, momentum), the step schedule and the checkpoint buffers; the arithmetic is
 * optim/dash_blocks + optim/inv_root (see docs/optimizers.md), called here in the reference's order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dash_blocks.h"
#include "optim.h"

/* State of one stack of equal-shape blocks (rows×cols each, `count` of them). One-sided stacks hold the
 * blocks of non-matrix parameters viewed as (E, 1) columns: only L exists and its root is 2. */
typedef struct {
    int rows, cols, one_sided;
    int64_t count;
    float *l, *r, *lbar, *rbar; /* count·rows², count·cols² (r, rbar NULL when one-sided) */
    float *a;                   /* graft second moment, count·rows·cols */
    float *gt;                  /* G̃ (NULL when beta_g == 0: G̃ is G) */
    float *m;                   /* momentum (NULL when mu == 0) */
} dash_stack;

enum { DASH_META_LAST_STEP = 0, DASH_META_LAST_ROOTS, DASH_META_N };

typedef struct {
    kl_optimizer base;
    kl_dash_hparams h;
    kl_opt_state_table state;
    int64_t *meta; /* [last step applied, last step that computed the inverse roots] (0 = never) */

    /* Preconditioned parameters: matrices (two-sided) and, with one_dim = SHAMPOO, vectors (one-sided). */
    kl_block_plan plan[2]; /* [0] matrices, [1] vectors */
    int n_plan[2];
    int *plan_param[2];    /* plan parameter k -> index in base.params */
    size_t *plan_upd[2];   /* plan parameter k -> offset of its update in `upd` */
    int n_stacks;
    dash_stack *stacks;    /* matrix stacks, then vector stacks */
    int first_vec_stack;

    /* Non-matrix parameters under AdamW (one_dim = ADAMW): compact moments in parameter order. */
    int n_adam;
    int *adam_param;
    size_t *adam_off;
    float *adam_m, *adam_v;

    kl_inv_root_opts opts_two, opts_one; /* root 4 / root 2 */
    double *cheb_two, *cheb_one;          /* Chebyshev coefficients for those roots (NULL otherwise) */

    /* workspace */
    float *g, *p, *work; /* one stack: gathered gradient, direction, product scratch */
    double *norms;       /* one stack: graft norms */
    float *upd;          /* update of every preconditioned parameter */
    const void **src;
    void **dst;
} dash;

kl_dash_settings kl_dash_settings_defaults(void) {
    const kl_dash_hparams h = kl_dash_hparams_defaults();
    const kl_inv_root_opts r = kl_inv_root_defaults(KL_ROOT_NEWTON_DB);
    kl_dash_settings s;
    memset(&s, 0, sizeof s);
    s.block = 1024;
    s.beta_lr = h.beta_lr;
    s.beta_g = h.beta_g;
    s.beta_graft = h.beta_graft;
    s.eps_graft = h.eps_graft;
    s.bias_correction = h.use_bias_correction;
    s.mu = h.mu;
    s.nesterov = h.nesterov;
    s.start_prec_step = h.start_prec_step;
    s.inv_root_every = h.inv_root_freq;
    s.root_method = KL_ROOT_NEWTON_DB;
    s.scaling = r.scaling;
    s.scale_const = r.scale_const;
    s.power_iters = r.power_iters;
    s.power_vectors = r.power_vectors;
    s.power_eps = r.power_eps;
    s.eps_root = r.eps;
    s.newton_steps = r.newton_steps;
    s.cn_tol = r.cn_tol;
    s.cheb_degree = r.cheb_degree;
    s.cheb_shift = r.cheb_shift;
    s.eigh = r.eigh;
    s.one_dim = KL_DASH_ONE_DIM_ADAMW;
    return s;
}

static kl_status dash_check_settings(const kl_opt_settings *os) {
    const kl_dash_settings *s = &os->dash;
    if (os->state_dtype != KL_STATE_FP32)
        return kl_error(KL_ERR_UNSUPPORTED, "optim.state_dtype: DASH keeps FP32 state (got bf16)");
    if (s->block < 1) return kl_error(KL_ERR_CONFIG, "optim.dash_block_size: expected >= 1, got %d", s->block);
    if (!(s->beta_lr >= 0))
        return kl_error(KL_ERR_CONFIG, "optim.dash_beta_lr: expected >= 0 (>= 1 sums), got %g", s->beta_lr);
    if (!(s->beta_g >= 0 && s->beta_g < 1))
        return kl_error(KL_ERR_CONFIG, "optim.dash_beta_g: expected in [0, 1), got %g", s->beta_g);
    if (!(s->beta_graft >= 0 && s->beta_graft < 1))
        return kl_error(KL_ERR_CONFIG, "optim.dash_beta_graft: expected in [0, 1), got %g", s->beta_graft);
    if (!(s->eps_graft > 0)) return kl_error(KL_ERR_CONFIG, "optim.dash_eps_graft: expected > 0, got %g", s->eps_graft);
    if (!(s->mu >= 0 && s->mu < 1)) return kl_error(KL_ERR_CONFIG, "optim.dash_mu: expected in [0, 1), got %g", s->mu);
    if (s->inv_root_every < 1)
        return kl_error(KL_ERR_CONFIG, "optim.dash_inv_root_every: expected >= 1, got %d", s->inv_root_every);
    if (!(s->eps_root >= 0)) return kl_error(KL_ERR_CONFIG, "optim.dash_eps_root: expected >= 0, got %g", s->eps_root);
    switch (s->root_method) {
    case KL_ROOT_NEWTON_DB:
    case KL_ROOT_COUPLED_NEWTON:
        if (s->newton_steps < 1)
            return kl_error(KL_ERR_CONFIG, "optim.dash_newton_steps: expected >= 1, got %d", s->newton_steps);
        if (!(s->cn_tol >= 0)) return kl_error(KL_ERR_CONFIG, "optim.dash_cn_tol: expected >= 0, got %g", s->cn_tol);
        break;
    case KL_ROOT_CHEBYSHEV:
        if (s->cheb_degree < 1 || s->cheb_degree > 1000)
            return kl_error(KL_ERR_CONFIG, "optim.dash_cheb_degree: expected in [1, 1000], got %d", s->cheb_degree);
        if (!(s->cheb_shift > 0))
            return kl_error(KL_ERR_CONFIG, "optim.dash_cheb_shift: expected > 0, got %g", s->cheb_shift);
        break;
    case KL_ROOT_EIGH:
        if (s->eigh == KL_EIGH_LAPACK && !kl_have_lapack())
            return kl_error(KL_ERR_UNSUPPORTED, "optim.dash_inv_root_method: eigh with LAPACK requested but kiln was "
                            "built without LAPACK");
        break;
    default: return kl_error(KL_ERR_CONFIG, "optim.dash_inv_root_method: unknown method %d", (int)s->root_method);
    }
    if (s->root_method != KL_ROOT_EIGH) {
        if (s->scaling != KL_SCALE_POWER_ITER && s->scaling != KL_SCALE_FROBENIUS)
            return kl_error(KL_ERR_CONFIG, "optim.dash_scaling: expected power_iter or frobenius, got %d",
                            (int)s->scaling);
        if (s->scaling == KL_SCALE_POWER_ITER &&
            (s->power_iters < 1 || s->power_vectors < 1 || !(s->scale_const > 0) || !(s->power_eps >= 0)))
            return kl_error(KL_ERR_CONFIG, "optim.dash_power_iters / dash_scale_const / dash_power_eps: "
                            "power-iteration scaling needs iters >= 1, vectors >= 1, const > 0, eps >= 0; "
                            "got %d, %d, %g, %g",
                            s->power_iters, s->power_vectors, s->scale_const, s->power_eps);
    }
    if (s->one_dim != KL_DASH_ONE_DIM_ADAMW && s->one_dim != KL_DASH_ONE_DIM_SHAMPOO)
        return kl_error(KL_ERR_CONFIG, "optim.dash_one_dim: expected adamw or shampoo, got %d", (int)s->one_dim);
    if (!(os->beta1 >= 0 && os->beta1 < 1 && os->beta2 >= 0 && os->beta2 < 1 && os->eps > 0))
        return kl_error(KL_ERR_CONFIG, "optim.beta1/beta2/eps (DASH's AdamW for 1-D parameters): expected betas in "
                        "[0, 1) and eps > 0, got %g, %g, %g", os->beta1, os->beta2, os->eps);
    return KL_OK;
}

static void dash_destroy(kl_optimizer *o) {
    dash *d = (dash *)o;
    kl_opt_state_free(&d->state);
    for (int k = 0; k < 2; k++) {
        kl_block_plan_free(&d->plan[k]);
        free(d->plan_param[k]);
        free(d->plan_upd[k]);
    }
    free(d->stacks);
    free(d->adam_param);
    free(d->adam_off);
    free(d->cheb_two);
    free(d->cheb_one);
    free(d->g);
    free(d->p);
    free(d->work);
    free(d->norms);
    free(d->upd);
    free(d->src);
    free(d->dst);
    free(o->params);
    free(d);
}

static size_t dash_state_bytes(const kl_optimizer *o) { return kl_opt_state_total(&((const dash *)o)->state); }
static int dash_n_buffers(const kl_optimizer *o) { return ((const dash *)o)->state.n; }
static void *dash_buffer(kl_optimizer *o, int i, const char **name, size_t *bytes) {
    dash *d = (dash *)o;
    if (i < 0 || i >= d->state.n) {
        *name = NULL;
        *bytes = 0;
        return NULL;
    }
    *name = d->state.bufs[i].name;
    *bytes = d->state.bufs[i].bytes;
    return d->state.bufs[i].data;
}

/* One stack: stages 1-8 of the reference's per-step update; the direction lands in d->upd. */
static kl_status dash_stack_step(dash *d, int plan, int stack, dash_stack *st, const float *grads, int64_t t,
                                 int roots_due) {
    const kl_block_plan *pl = &d->plan[plan];
    const int64_t n = st->count * st->rows * st->cols;
    for (int k = 0; k < d->n_plan[plan]; k++) d->src[k] = grads + d->base.params[d->plan_param[plan][k]].offset;
    KL_TRY(kl_block_plan_gather(pl, stack, d->src, sizeof(float), d->g));
    KL_TRY(kl_dash_stats_f(st->count, st->rows, st->cols, d->g, d->h.beta_lr, st->l, st->r));
    kl_dash_graft_state_f(n, d->g, d->h.beta_graft, st->a);
    if (roots_due) {
        kl_inv_root_opts o = st->one_sided ? d->opts_one : d->opts_two;
        o.seed = d->base.settings.seed + 2 * (uint64_t)stack; /* R's call adds 1 */
        kl_status s = kl_dash_inverse_roots_f(st->count, st->rows, st->cols, st->l, st->r, &o, st->lbar, st->rbar,
                                              NULL);
        if (s != KL_OK) return kl_error_context(s, "DASH stack %d (%lld blocks %d×%d)", stack, (long long)st->count,
                                                st->rows, st->cols);
    }
    const float *gt = d->g;
    if (st->gt) {
        kl_dash_grad_ema_f(n, d->g, d->h.beta_g, st->gt);
        gt = st->gt;
    }
    const int prec = kl_dash_preconditioned(t, &d->h);
    kl_dash_graft_norms_f(st->count, st->rows, st->cols, gt, st->a, t, &d->h, d->norms, prec ? NULL : d->p);
    if (prec)
        KL_TRY(kl_dash_precondition_f(st->count, st->rows, st->cols, st->lbar, gt, st->rbar, d->norms, d->p,
                                      d->work));
    if (st->m) kl_dash_momentum_f(n, &d->h, st->m, d->p);
    for (int k = 0; k < d->n_plan[plan]; k++) d->dst[k] = d->upd + d->plan_upd[plan][k];
    return kl_block_plan_scatter(pl, stack, d->p, sizeof(float), d->dst);
}

static kl_status dash_step(kl_optimizer *o, float *params, const float *grads, double lr, int64_t t) {
    dash *d = (dash *)o;
    const kl_opt_settings *s = &o->settings;
    if (t < 1 || t <= d->meta[DASH_META_LAST_STEP])
        return kl_error(KL_ERR_INVALID, "DASH step: steps count from 1 and increase; got step %lld after step %lld",
                        (long long)t, (long long)d->meta[DASH_META_LAST_STEP]);
    /* Roots on the reference's schedule, and also whenever they were never computed (an optimizer first
     * stepped at t > 1 would otherwise precondition with zero matrices). */
    const int roots_due = kl_dash_preconditioned(t, &d->h) &&
                          (kl_dash_roots_due(t, &d->h) || d->meta[DASH_META_LAST_ROOTS] == 0);
    for (int si = 0; si < d->n_stacks; si++) {
        const int plan = si < d->first_vec_stack ? 0 : 1;
        const int stack = plan ? si - d->first_vec_stack : si;
        KL_TRY(dash_stack_step(d, plan, stack, &d->stacks[si], grads, t, roots_due));
    }
    /* stage 9: W ← W·(1 − lr·wd) − lr·P, with each parameter's group lr and decay */
    for (int plan = 0; plan < 2; plan++)
        for (int k = 0; k < d->n_plan[plan]; k++) {
            const kl_opt_param *p = &o->params[d->plan_param[plan][k]];
            const double plr = lr * p->lr_mult;
            kl_dash_apply_f((int64_t)p->numel, plr, p->decay ? s->weight_decay : 0.0, d->upd + d->plan_upd[plan][k],
                            params + p->offset);
        }
    /* non-matrix parameters under AdamW, as the reference's DashLayerwise does it */
    const double bc1 = 1.0 - pow(s->beta1, (double)t), bc2 = 1.0 - pow(s->beta2, (double)t);
    /* 1 − β in double, then rounded: (1.0f − (float)0.999) would be off by 1.3e-5 relative */
    const float b1 = (float)s->beta1, b2 = (float)s->beta2, eps = (float)s->eps;
    const float ob1 = (float)(1.0 - s->beta1), ob2 = (float)(1.0 - s->beta2);
    const float inv_bc1 = (float)(1.0 / bc1), inv_bc2 = (float)(1.0 / bc2);
    for (int k = 0; k < d->n_adam; k++) {
        const kl_opt_param *p = &o->params[d->adam_param[k]];
        const double plr = lr * p->lr_mult;
        const float decay = p->decay ? (float)(1.0 - plr * s->weight_decay) : 1.0f, step = (float)plr;
        float *w = params + p->offset, *m = d->adam_m + d->adam_off[k], *v = d->adam_v + d->adam_off[k];
        const float *g = grads + p->offset;
        for (size_t j = 0; j < p->numel; j++) {
            m[j] = b1 * m[j] + ob1 * g[j];
            v[j] = b2 * v[j] + ob2 * g[j] * g[j];
            w[j] = w[j] * decay - step * ((m[j] * inv_bc1) / (eps + sqrtf(v[j] * inv_bc2)));
        }
    }
    d->meta[DASH_META_LAST_STEP] = t;
    if (roots_due) d->meta[DASH_META_LAST_ROOTS] = t;
    return KL_OK;
}

static const kl_optimizer_vtable dash_vt = {"dash", dash_step, dash_state_bytes, dash_n_buffers, dash_buffer,
                                            dash_destroy};

/* Builds plan k (0: matrices as rows×cols, 1: other tensors flattened to (numel, 1)) over the parameters
 * sel[0..n_sel) and gives each its range in the update buffer. */
static kl_status dash_build_plan(dash *d, int k, const int *sel, int n_sel, size_t *upd_total) {
    const kl_optimizer *o = &d->base;
    int64_t *rows = kl_malloc(sizeof(int64_t) * (size_t)(n_sel + 1), "DASH plan shapes");
    int64_t *cols = kl_malloc(sizeof(int64_t) * (size_t)(n_sel + 1), "DASH plan shapes");
    d->plan_param[k] = kl_malloc(sizeof(int) * (size_t)(n_sel + 1), "DASH plan parameters");
    d->plan_upd[k] = kl_malloc(sizeof(size_t) * (size_t)(n_sel + 1), "DASH plan parameters");
    if (!rows || !cols || !d->plan_param[k] || !d->plan_upd[k]) {
        free(rows);
        free(cols);
        return KL_ERR_OOM;
    }
    for (int j = 0; j < n_sel; j++) {
        const kl_opt_param *p = &o->params[sel[j]];
        d->plan_param[k][j] = sel[j];
        d->plan_upd[k][j] = *upd_total;
        *upd_total += p->numel;
        /* matrices as rows×cols; vectors (and any other non-matrix tensor) flattened to (numel, 1) */
        rows[j] = k == 0 ? p->rows : (int64_t)p->numel;
        cols[j] = k == 0 ? p->cols : 1;
    }
    d->n_plan[k] = n_sel;
    kl_status st = kl_block_plan_build(n_sel, rows, cols, d->base.settings.dash.block, &d->plan[k]);
    free(rows);
    free(cols);
    return st;
}

static kl_status dash_alloc_stacks(dash *d, size_t *max_elems, int64_t *max_count) {
    const int n_two = d->plan[0].n_stacks, n_one = d->plan[1].n_stacks;
    d->n_stacks = n_two + n_one;
    d->first_vec_stack = n_two;
    d->stacks = kl_calloc((size_t)(d->n_stacks + 1), sizeof(dash_stack), "DASH stacks");
    if (!d->stacks) return KL_ERR_OOM;
    kl_opt_state_table *t = &d->state;
    for (int si = 0; si < d->n_stacks; si++) {
        const int one = si >= n_two;
        const kl_block_stack *bs = one ? &d->plan[1].stacks[si - n_two] : &d->plan[0].stacks[si];
        dash_stack *st = &d->stacks[si];
        st->rows = bs->rows;
        st->cols = bs->cols;
        st->count = bs->count;
        st->one_sided = one;
        const size_t c = (size_t)bs->count, rr = (size_t)bs->rows * bs->rows, cc = (size_t)bs->cols * bs->cols;
        const size_t blk = (size_t)bs->rows * bs->cols, f = sizeof(float);
        const char *kind = one ? "vec" : "mat";
        const int idx = one ? si - n_two : si;
        KL_TRY(kl_opt_state_add(t, (void **)&st->l, c * rr * f, "dash.%s%d.%dx%d.L", kind, idx, st->rows, st->cols));
        KL_TRY(kl_opt_state_add(t, (void **)&st->lbar, c * rr * f, "dash.%s%d.%dx%d.Lroot", kind, idx, st->rows,
                                st->cols));
        if (!one) {
            KL_TRY(kl_opt_state_add(t, (void **)&st->r, c * cc * f, "dash.%s%d.%dx%d.R", kind, idx, st->rows,
                                    st->cols));
            KL_TRY(kl_opt_state_add(t, (void **)&st->rbar, c * cc * f, "dash.%s%d.%dx%d.Rroot", kind, idx, st->rows,
                                    st->cols));
        }
        KL_TRY(kl_opt_state_add(t, (void **)&st->a, c * blk * f, "dash.%s%d.%dx%d.graft_v", kind, idx, st->rows,
                                st->cols));
        if (d->h.beta_g > 0)
            KL_TRY(kl_opt_state_add(t, (void **)&st->gt, c * blk * f, "dash.%s%d.%dx%d.grad_ema", kind, idx, st->rows,
                                    st->cols));
        if (d->h.mu > 0)
            KL_TRY(kl_opt_state_add(t, (void **)&st->m, c * blk * f, "dash.%s%d.%dx%d.momentum", kind, idx, st->rows,
                                    st->cols));
        if (c * blk > *max_elems) *max_elems = c * blk;
        if (bs->count > *max_count) *max_count = bs->count;
    }
    return KL_OK;
}

static kl_status dash_init(dash *d) {
    kl_optimizer *o = &d->base;
    const kl_dash_settings *s = &o->settings.dash;
    d->h = kl_dash_hparams_defaults();
    d->h.beta_lr = s->beta_lr;
    d->h.beta_g = s->beta_g;
    d->h.beta_graft = s->beta_graft;
    d->h.eps_graft = s->eps_graft;
    d->h.use_bias_correction = s->bias_correction;
    d->h.mu = s->mu;
    d->h.nesterov = s->nesterov;
    d->h.start_prec_step = s->start_prec_step;
    d->h.inv_root_freq = s->inv_root_every;

    kl_inv_root_opts r = kl_inv_root_defaults(s->root_method);
    r.eps = s->eps_root;
    r.scaling = s->scaling;
    r.scale_const = s->scale_const;
    r.power_iters = s->power_iters;
    r.power_vectors = s->power_vectors;
    r.power_eps = s->power_eps;
    r.newton_steps = s->newton_steps;
    r.cn_tol = s->cn_tol;
    r.cheb_degree = s->cheb_degree;
    r.cheb_shift = s->cheb_shift;
    r.eigh = s->eigh;
    d->opts_two = d->opts_one = r;
    d->opts_two.root = 4;
    d->opts_one.root = 2;
    if (s->root_method == KL_ROOT_CHEBYSHEV) { /* fitted once per root, not per call */
        const size_t nc = (size_t)s->cheb_degree + 1;
        d->cheb_two = kl_malloc(sizeof(double) * nc, "DASH Chebyshev coefficients");
        d->cheb_one = kl_malloc(sizeof(double) * nc, "DASH Chebyshev coefficients");
        if (!d->cheb_two || !d->cheb_one) return KL_ERR_OOM;
        KL_TRY(kl_chebyshev_coeffs(4, r.cheb_shift, r.cheb_lo, r.cheb_hi, s->cheb_degree, 10000, d->cheb_two));
        KL_TRY(kl_chebyshev_coeffs(2, r.cheb_shift, r.cheb_lo, r.cheb_hi, s->cheb_degree, 10000, d->cheb_one));
        d->opts_two.cheb_coeffs = d->cheb_two;
        d->opts_one.cheb_coeffs = d->cheb_one;
    }

    KL_TRY(kl_opt_state_add(&d->state, (void **)&d->meta, sizeof(int64_t) * DASH_META_N, "dash.meta"));

    /* sort the parameters: matrices, preconditioned vectors, AdamW vectors */
    const int n = o->n_params;
    int *mat = kl_malloc(sizeof(int) * (size_t)(n + 1), "DASH parameter lists");
    int *vec = kl_malloc(sizeof(int) * (size_t)(n + 1), "DASH parameter lists");
    d->adam_param = kl_malloc(sizeof(int) * (size_t)(n + 1), "DASH parameter lists");
    d->adam_off = kl_malloc(sizeof(size_t) * (size_t)(n + 1), "DASH parameter lists");
    if (!mat || !vec || !d->adam_param || !d->adam_off) {
        free(mat);
        free(vec);
        return KL_ERR_OOM;
    }
    int n_mat = 0, n_vec = 0;
    size_t adam_total = 0;
    for (int i = 0; i < n; i++) {
        if (o->params[i].is_matrix) mat[n_mat++] = i;
        else if (s->one_dim == KL_DASH_ONE_DIM_SHAMPOO) vec[n_vec++] = i;
        else {
            d->adam_off[d->n_adam] = adam_total;
            d->adam_param[d->n_adam++] = i;
            adam_total += o->params[i].numel;
        }
    }
    size_t upd_total = 0;
    kl_status st = dash_build_plan(d, 0, mat, n_mat, &upd_total);
    if (st == KL_OK) st = dash_build_plan(d, 1, vec, n_vec, &upd_total);
    free(mat);
    free(vec);
    KL_TRY(st);

    size_t max_elems = 0;
    int64_t max_count = 0;
    KL_TRY(dash_alloc_stacks(d, &max_elems, &max_count));
    const size_t fb = sizeof(float);
    if (d->n_adam) {
        KL_TRY(kl_opt_state_add(&d->state, (void **)&d->adam_m, adam_total * fb, "dash.adamw.m"));
        KL_TRY(kl_opt_state_add(&d->state, (void **)&d->adam_v, adam_total * fb, "dash.adamw.v"));
    }
    const int n_ptr = (d->n_plan[0] > d->n_plan[1] ? d->n_plan[0] : d->n_plan[1]) + 1;
    d->g = kl_malloc(fb * (max_elems + 1), "DASH gradient stack");
    d->p = kl_malloc(fb * (max_elems + 1), "DASH direction stack");
    d->work = kl_malloc(fb * (max_elems + 1), "DASH product scratch");
    d->norms = kl_malloc(sizeof(double) * (size_t)(max_count + 1), "DASH graft norms");
    d->upd = kl_malloc(fb * (upd_total + 1), "DASH update buffer");
    d->src = kl_malloc(sizeof(void *) * (size_t)n_ptr, "DASH parameter pointers");
    d->dst = kl_malloc(sizeof(void *) * (size_t)n_ptr, "DASH parameter pointers");
    if (!d->g || !d->p || !d->work || !d->norms || !d->upd || !d->src || !d->dst) return KL_ERR_OOM;
    return KL_OK;
}

kl_status kl_dash_create(kl_optimizer **out, const kl_opt_settings *s, const kl_opt_param *params, int n) {
    *out = NULL;
    KL_TRY(dash_check_settings(s));
    if (n < 0 || (n > 0 && !params)) return kl_error(KL_ERR_INVALID, "DASH: expected a parameter table, got %d", n);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const kl_opt_param *p = &params[i];
        if (p->is_matrix && (p->rows < 1 || p->cols < 1 || (size_t)p->rows * (size_t)p->cols != p->numel))
            return kl_error(KL_ERR_INVALID, "DASH: matrix parameter %d (%s) has shape %d×%d but %zu elements", i,
                            p->name ? p->name : "?", p->rows, p->cols, p->numel);
        if (p->numel == 0)
            return kl_error(KL_ERR_INVALID, "DASH: parameter %d (%s) is empty", i, p->name ? p->name : "?");
        if (p->offset + p->numel > total) total = p->offset + p->numel;
    }
    dash *d = kl_calloc(1, sizeof *d, "DASH");
    if (!d) return KL_ERR_OOM;
    d->base.vt = &dash_vt;
    d->base.settings = *s;
    d->base.n_params = n;
    d->base.total_numel = total;
    d->base.params = kl_malloc(sizeof *params * (size_t)(n + 1), "DASH parameter table");
    if (!d->base.params) {
        dash_destroy(&d->base);
        return KL_ERR_OOM;
    }
    if (n) memcpy(d->base.params, params, sizeof *params * (size_t)n);
    kl_status st = dash_init(d);
    if (st != KL_OK) {
        dash_destroy(&d->base);
        return kl_error_context(st, "creating DASH");
    }
    *out = &d->base;
    return KL_OK;
}
