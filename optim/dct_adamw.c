/* dct_adamw.c — DCT-AdamW on the CPU (kind KL_OPT_DCT_ADAMW): Adam whose moments live in the span of r
 * orthonormal DCT basis columns per matrix, re-selected by ℓ1 score every refresh_every steps with the
 * moments remapped to the new columns; 1-D and oversized parameters get full AdamW. Owns the FP32 state,
 * the index sets, the bases (one per size, built once) and the checkpoint buffers; the numerics are
 * optim/dct (see docs/optimizers.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dct.h"
#include "optim.h"

/* One projected matrix. */
typedef struct {
    int param;          /* index in base.params */
    int rows, cols, r;  /* shape and effective rank */
    kl_dct_side side;   /* RIGHT: moments rows×r; LEFT: r×cols */
    int basis;          /* index into the basis cache (size = cols for RIGHT, rows for LEFT) */
    float *m, *v;       /* low-rank Adam moments */
    int32_t *idx;       /* the r selected basis columns, slot order */
} dct_proj;

typedef struct {
    int n;
    float *q; /* n×n, orthonormal columns */
} dct_basis;

enum { DCT_META_LAST_STEP = 0, DCT_META_LAST_REFRESH, DCT_META_N };

typedef struct {
    kl_optimizer base;
    kl_opt_state_table state;
    int64_t *meta; /* [last step applied, last refresh step] (0 = never) */
    int n_proj;
    dct_proj *proj;
    int n_bases;
    dct_basis *bases;
    /* full AdamW: compact moments in parameter order */
    int n_adam;
    int *adam_param;
    size_t *adam_off;
    float *adam_m, *adam_v;
    /* workspace */
    float *full;  /* rows×cols: S at a refresh, the back-projected update */
    float *a;     /* projected gradient (low-rank shape) */
    float *qr;    /* n×r selected columns */
    int32_t *idx_new, *src;
} dct_adamw;

kl_dct_settings kl_dct_settings_defaults(void) {
    kl_dct_settings s;
    memset(&s, 0, sizeof s);
    s.rank = 128;
    s.refresh_every = 200;
    s.ell = 1;
    s.max_dim = 32000;
    s.basis = KL_DCT_BASIS_DCT2;
    return s;
}

static void dct_destroy(kl_optimizer *o) {
    dct_adamw *d = (dct_adamw *)o;
    kl_opt_state_free(&d->state);
    for (int b = 0; b < d->n_bases; b++) free(d->bases[b].q);
    free(d->bases);
    free(d->proj);
    free(d->adam_param);
    free(d->adam_off);
    free(d->full);
    free(d->a);
    free(d->qr);
    free(d->idx_new);
    free(d->src);
    free(o->params);
    free(d);
}

static size_t dct_state_bytes(const kl_optimizer *o) { return kl_opt_state_total(&((const dct_adamw *)o)->state); }
static int dct_n_buffers(const kl_optimizer *o) { return ((const dct_adamw *)o)->state.n; }
static void *dct_buffer(kl_optimizer *o, int i, const char **name, size_t *bytes) {
    dct_adamw *d = (dct_adamw *)o;
    if (i < 0 || i >= d->state.n) {
        *name = NULL;
        *bytes = 0;
        return NULL;
    }
    *name = d->state.bufs[i].name;
    *bytes = d->state.bufs[i].bytes;
    return d->state.bufs[i].data;
}

/* Adam in the subspace of one matrix, then W ← W − lr·sqrt(1−β2^t)/(1−β1^t) · back(m / (ε·sqrt(1−β2^t) +
 * sqrt(v))), exactly the reference's arrangement of the bias corrections. */
static kl_status dct_proj_step(dct_adamw *d, dct_proj *pj, float *w, const float *g, double lr, int64_t t,
                               int refresh) {
    const kl_opt_settings *s = &d->base.settings;
    const dct_basis *B = &d->bases[pj->basis];
    const int n = B->n, r = pj->r;
    const int64_t low = (int64_t)(pj->side == KL_DCT_RIGHT ? pj->rows : pj->cols) * r;
    if (refresh) {
        /* S = G·Q (or Qᵀ·G), top-r columns by score, the projected gradient sliced from S */
        KL_TRY(kl_dct_transform_f(pj->rows, pj->cols, g, B->q, pj->side, d->full));
        KL_TRY(kl_dct_select_f(pj->rows, pj->cols, d->full, pj->side, s->dct.ell, r, d->idx_new, NULL));
        KL_TRY(kl_dct_slice_f(pj->rows, pj->cols, d->full, pj->side, r, d->idx_new, d->a));
        if (d->meta[DCT_META_LAST_REFRESH] > 0) { /* moments follow their basis columns; new columns start at 0 */
            const int64_t outer = pj->side == KL_DCT_RIGHT ? pj->rows : pj->cols;
            KL_TRY(kl_dct_remap_plan(n, r, pj->idx, d->idx_new, d->src));
            KL_TRY(kl_dct_remap_f(outer, r, pj->side, d->src, pj->m));
            KL_TRY(kl_dct_remap_f(outer, r, pj->side, d->src, pj->v));
        }
        memcpy(pj->idx, d->idx_new, sizeof(int32_t) * (size_t)r);
        KL_TRY(kl_dct_basis_columns_f(n, B->q, r, pj->idx, d->qr));
    } else {
        KL_TRY(kl_dct_basis_columns_f(n, B->q, r, pj->idx, d->qr));
        KL_TRY(kl_dct_project_f(pj->rows, pj->cols, g, d->qr, r, pj->side, d->a));
    }
    /* 1 − β in double, then rounded: (1.0f − (float)0.999) would be off by 1.3e-5 relative */
    const float b1 = (float)s->beta1, b2 = (float)s->beta2;
    const float ob1 = (float)(1.0 - s->beta1), ob2 = (float)(1.0 - s->beta2);
    const double sqrt_bc2 = sqrt(1.0 - pow(s->beta2, (double)t)), bc1 = 1.0 - pow(s->beta1, (double)t);
    const float eps_c = (float)(s->eps * sqrt_bc2);
    float *m = pj->m, *v = pj->v, *a = d->a;
    for (int64_t e = 0; e < low; e++) {
        m[e] = b1 * m[e] + ob1 * a[e];
        v[e] = b2 * v[e] + ob2 * a[e] * a[e];
        a[e] = m[e] / (eps_c + sqrtf(v[e])); /* a now holds the low-rank update u */
    }
    KL_TRY(kl_dct_back_project_f(pj->rows, pj->cols, a, d->qr, r, pj->side, d->full));
    const float step = (float)(lr * sqrt_bc2 / bc1);
    const int64_t numel = (int64_t)pj->rows * pj->cols;
    for (int64_t e = 0; e < numel; e++) w[e] -= step * d->full[e];
    return KL_OK;
}

static kl_status dct_step(kl_optimizer *o, float *params, const float *grads, double lr, int64_t t) {
    dct_adamw *d = (dct_adamw *)o;
    const kl_opt_settings *s = &o->settings;
    if (t < 1 || t <= d->meta[DCT_META_LAST_STEP])
        return kl_error(KL_ERR_INVALID, "DCT-AdamW step: steps count from 1 and increase; got step %lld after step "
                        "%lld", (long long)t, (long long)d->meta[DCT_META_LAST_STEP]);
    /* the reference's schedule (t == 1 or t % refresh_every == 0), and whenever no selection exists yet */
    const int refresh = t == 1 || t % s->dct.refresh_every == 0 || d->meta[DCT_META_LAST_REFRESH] == 0;
    /* decoupled weight decay first, on every decayed parameter */
    for (int i = 0; i < o->n_params; i++) {
        const kl_opt_param *p = &o->params[i];
        if (!p->decay || s->weight_decay == 0) continue;
        const float decay = (float)(1.0 - lr * p->lr_mult * s->weight_decay);
        float *w = params + p->offset;
        for (size_t j = 0; j < p->numel; j++) w[j] *= decay;
    }
    for (int k = 0; k < d->n_proj; k++) {
        dct_proj *pj = &d->proj[k];
        const kl_opt_param *p = &o->params[pj->param];
        kl_status st = dct_proj_step(d, pj, params + p->offset, grads + p->offset, lr * p->lr_mult, t, refresh);
        if (st != KL_OK) return kl_error_context(st, "DCT-AdamW parameter %d (%s)", pj->param, p->name ? p->name : "?");
    }
    /* full AdamW, the reference's arrangement: u = m / (ε·sqrt(bc2) + sqrt(v)), step lr·sqrt(bc2)/bc1 */
    const double sqrt_bc2 = sqrt(1.0 - pow(s->beta2, (double)t)), bc1 = 1.0 - pow(s->beta1, (double)t);
    const float b1 = (float)s->beta1, b2 = (float)s->beta2, eps_c = (float)(s->eps * sqrt_bc2);
    const float ob1 = (float)(1.0 - s->beta1), ob2 = (float)(1.0 - s->beta2);
    for (int k = 0; k < d->n_adam; k++) {
        const kl_opt_param *p = &o->params[d->adam_param[k]];
        const float step = (float)(lr * p->lr_mult * sqrt_bc2 / bc1);
        float *w = params + p->offset, *m = d->adam_m + d->adam_off[k], *v = d->adam_v + d->adam_off[k];
        const float *g = grads + p->offset;
        for (size_t j = 0; j < p->numel; j++) {
            m[j] = b1 * m[j] + ob1 * g[j];
            v[j] = b2 * v[j] + ob2 * g[j] * g[j];
            w[j] -= step * (m[j] / (eps_c + sqrtf(v[j])));
        }
    }
    d->meta[DCT_META_LAST_STEP] = t;
    if (refresh) d->meta[DCT_META_LAST_REFRESH] = t;
    return KL_OK;
}

static const kl_optimizer_vtable dct_vt = {"dct_adamw", dct_step, dct_state_bytes, dct_n_buffers, dct_buffer,
                                           dct_destroy};

static int dct_basis_for(dct_adamw *d, int n) {
    for (int b = 0; b < d->n_bases; b++)
        if (d->bases[b].n == n) return b;
    d->bases[d->n_bases].n = n;
    return d->n_bases++;
}

static kl_status dct_init(dct_adamw *d) {
    kl_optimizer *o = &d->base;
    const kl_dct_settings *s = &o->settings.dct;
    const int n = o->n_params;
    KL_TRY(kl_opt_state_add(&d->state, (void **)&d->meta, sizeof(int64_t) * DCT_META_N, "dct.meta"));
    d->proj = kl_calloc((size_t)n + 1, sizeof(dct_proj), "DCT-AdamW projections");
    d->bases = kl_calloc((size_t)n + 1, sizeof(dct_basis), "DCT-AdamW bases");
    d->adam_param = kl_malloc(sizeof(int) * ((size_t)n + 1), "DCT-AdamW parameter lists");
    d->adam_off = kl_malloc(sizeof(size_t) * ((size_t)n + 1), "DCT-AdamW parameter lists");
    if (!d->proj || !d->bases || !d->adam_param || !d->adam_off) return KL_ERR_OOM;
    size_t adam_total = 0, max_full = 1, max_low = 1, max_qr = 1;
    int max_r = 1;
    for (int i = 0; i < n; i++) {
        const kl_opt_param *p = &o->params[i];
        if (!p->is_matrix || p->rows >= s->max_dim || p->cols >= s->max_dim) {
            d->adam_off[d->n_adam] = adam_total;
            d->adam_param[d->n_adam++] = i;
            adam_total += p->numel;
            continue;
        }
        dct_proj *pj = &d->proj[d->n_proj];
        pj->param = i;
        pj->rows = p->rows;
        pj->cols = p->cols;
        pj->side = kl_dct_choose_side(p->rows, p->cols);
        const int size = pj->side == KL_DCT_RIGHT ? p->cols : p->rows;
        pj->r = s->rank < size ? s->rank : size;
        pj->basis = dct_basis_for(d, size);
        const size_t low = (size_t)(pj->side == KL_DCT_RIGHT ? p->rows : p->cols) * (size_t)pj->r;
        const int k = d->n_proj;
        KL_TRY(kl_opt_state_add(&d->state, (void **)&pj->m, low * sizeof(float), "dct.p%d.m", k));
        KL_TRY(kl_opt_state_add(&d->state, (void **)&pj->v, low * sizeof(float), "dct.p%d.v", k));
        KL_TRY(kl_opt_state_add(&d->state, (void **)&pj->idx, (size_t)pj->r * sizeof(int32_t), "dct.p%d.idx", k));
        d->n_proj++;
        if (p->numel > max_full) max_full = p->numel;
        if (low > max_low) max_low = low;
        if ((size_t)size * pj->r > max_qr) max_qr = (size_t)size * pj->r;
        if (size > max_r) max_r = size;
    }
    if (d->n_adam) {
        KL_TRY(kl_opt_state_add(&d->state, (void **)&d->adam_m, adam_total * sizeof(float), "dct.adamw.m"));
        KL_TRY(kl_opt_state_add(&d->state, (void **)&d->adam_v, adam_total * sizeof(float), "dct.adamw.v"));
    }
    for (int b = 0; b < d->n_bases; b++) { /* one basis per size, built once */
        const int bn = d->bases[b].n;
        d->bases[b].q = kl_malloc(sizeof(float) * (size_t)bn * bn, "DCT basis");
        if (!d->bases[b].q) return KL_ERR_OOM;
        KL_TRY(kl_dct_basis_f(bn, s->basis, d->bases[b].q));
    }
    d->full = kl_malloc(sizeof(float) * max_full, "DCT-AdamW full-size scratch");
    d->a = kl_malloc(sizeof(float) * max_low, "DCT-AdamW low-rank scratch");
    d->qr = kl_malloc(sizeof(float) * max_qr, "DCT-AdamW basis columns");
    d->idx_new = kl_malloc(sizeof(int32_t) * (size_t)max_r, "DCT-AdamW selection");
    d->src = kl_malloc(sizeof(int32_t) * (size_t)max_r, "DCT-AdamW remap plan");
    if (!d->full || !d->a || !d->qr || !d->idx_new || !d->src) return KL_ERR_OOM;
    return KL_OK;
}

kl_status kl_dct_adamw_create(kl_optimizer **out, const kl_opt_settings *s, const kl_opt_param *params, int n) {
    *out = NULL;
    if (s->state_dtype != KL_STATE_FP32)
        return kl_error(KL_ERR_UNSUPPORTED, "optim.state_dtype: DCT-AdamW keeps FP32 state (got bf16)");
    if (s->dct.rank < 1) return kl_error(KL_ERR_CONFIG, "optim.dct_rank: expected >= 1, got %d", s->dct.rank);
    if (s->dct.refresh_every < 1)
        return kl_error(KL_ERR_CONFIG, "optim.dct_refresh_every: expected >= 1, got %d", s->dct.refresh_every);
    if (s->dct.ell != 1 && s->dct.ell != 2)
        return kl_error(KL_ERR_CONFIG, "optim.dct_ell: expected 1 or 2, got %d", s->dct.ell);
    if (s->dct.max_dim < 2) return kl_error(KL_ERR_CONFIG, "optim.dct_max_dim: expected >= 2, got %lld",
                                            (long long)s->dct.max_dim);
    if (s->dct.basis != KL_DCT_BASIS_DCT2 && s->dct.basis != KL_DCT_BASIS_DCT3)
        return kl_error(KL_ERR_CONFIG, "optim.dct_basis: expected dct2 or dct3, got %d", (int)s->dct.basis);
    if (!(s->beta1 >= 0 && s->beta1 < 1 && s->beta2 >= 0 && s->beta2 < 1 && s->eps > 0))
        return kl_error(KL_ERR_CONFIG, "optim.beta1/beta2/eps: expected betas in [0, 1) and eps > 0, got %g, %g, %g",
                        s->beta1, s->beta2, s->eps);
    if (n < 0 || (n > 0 && !params))
        return kl_error(KL_ERR_INVALID, "DCT-AdamW: expected a parameter table, got %d", n);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const kl_opt_param *p = &params[i];
        if (p->is_matrix && (p->rows < 1 || p->cols < 1 || (size_t)p->rows * (size_t)p->cols != p->numel))
            return kl_error(KL_ERR_INVALID, "DCT-AdamW: matrix parameter %d (%s) has shape %d×%d but %zu elements", i,
                            p->name ? p->name : "?", p->rows, p->cols, p->numel);
        if (p->offset + p->numel > total) total = p->offset + p->numel;
    }
    dct_adamw *d = kl_calloc(1, sizeof *d, "DCT-AdamW");
    if (!d) return KL_ERR_OOM;
    d->base.vt = &dct_vt;
    d->base.settings = *s;
    d->base.n_params = n;
    d->base.total_numel = total;
    d->base.params = kl_malloc(sizeof *params * ((size_t)n + 1), "DCT-AdamW parameter table");
    if (!d->base.params) {
        dct_destroy(&d->base);
        return KL_ERR_OOM;
    }
    if (n) memcpy(d->base.params, params, sizeof *params * (size_t)n);
    kl_status st = dct_init(d);
    if (st != KL_OK) {
        dct_destroy(&d->base);
        return kl_error_context(st, "creating DCT-AdamW");
    }
    *out = &d->base;
    return KL_OK;
}
