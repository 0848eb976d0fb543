/* adamw.c — AdamW on the CPU with FP32 moments, matching torch.optim.AdamW (foreach=False) operation
 * for operation: p *= 1 - lr·wd; m = β1 m + (1-β1) g; v = β2 v + (1-β2) g²;
 * p -= (lr / (1-β1^t)) · m / (sqrt(v) / sqrt(1-β2^t) + ε). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"

typedef struct {
    kl_optimizer base;
    float *m, *v; /* (total_numel) each, same layout as the parameter buffer */
} adamw;

static kl_status adamw_step(kl_optimizer *o, float *params, const float *grads, double lr, int64_t t) {
    adamw *a = (adamw *)o;
    const kl_opt_settings *s = &o->settings;
    const double bc1 = 1.0 - pow(s->beta1, (double)t), bc2 = 1.0 - pow(s->beta2, (double)t);
    /* 1-β computed in double then rounded, as torch does: (1.0f - 0.999f) is off by 1.3e-5 relative */
    const float one_minus_b1 = (float)(1.0 - s->beta1), b2 = (float)s->beta2, one_minus_b2 = (float)(1.0 - s->beta2);
    const float eps = (float)s->eps;
    for (int i = 0; i < o->n_params; i++) {
        const kl_opt_param *p = &o->params[i];
        const double plr = lr * p->lr_mult;
        const float step_size = (float)(plr / bc1), bc2_sqrt = (float)sqrt(bc2);
        const float decay = p->decay ? (float)(1.0 - plr * s->weight_decay) : 1.0f;
        float *w = params + p->offset, *m = a->m + p->offset, *v = a->v + p->offset;
        const float *g = grads + p->offset;
#pragma omp parallel for
        for (size_t j = 0; j < p->numel; j++) {
            w[j] *= decay;
            m[j] += one_minus_b1 * (g[j] - m[j]); /* torch: exp_avg.lerp_(grad, 1 - beta1) */
            v[j] = b2 * v[j] + one_minus_b2 * (g[j] * g[j]);
            float denom = sqrtf(v[j]) / bc2_sqrt + eps;
            w[j] -= step_size * m[j] / denom;
        }
    }
    return KL_OK;
}

static size_t adamw_state_bytes(const kl_optimizer *o) { return 2 * o->total_numel * sizeof(float); }
static int adamw_n_buffers(const kl_optimizer *o) { (void)o; return 2; }
static void *adamw_buffer(kl_optimizer *o, int i, const char **name, size_t *bytes) {
    adamw *a = (adamw *)o;
    *name = i == 0 ? "adamw.m" : "adamw.v";
    *bytes = o->total_numel * sizeof(float);
    return i == 0 ? a->m : a->v;
}
static void adamw_destroy(kl_optimizer *o) {
    adamw *a = (adamw *)o;
    free(a->m);
    free(a->v);
    free(o->params);
    free(a);
}

static const kl_optimizer_vtable adamw_vt = {"adamw", adamw_step, adamw_state_bytes, adamw_n_buffers, adamw_buffer,
                                             adamw_destroy};

kl_status kl_adamw_create(kl_optimizer **out, const kl_opt_settings *s, const kl_opt_param *params, int n) {
    if (s->state_dtype != KL_STATE_FP32)
        return kl_error(KL_ERR_UNSUPPORTED, "optim.state_dtype: the CPU AdamW keeps FP32 moments (got bf16)");
    adamw *a = kl_calloc(1, sizeof *a, "AdamW");
    if (!a) return KL_ERR_OOM;
    a->base.vt = &adamw_vt;
    a->base.settings = *s;
    a->base.n_params = n;
    a->base.params = kl_malloc((size_t)n * sizeof *params, "AdamW parameter table");
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t end = params[i].offset + params[i].numel;
        if (end > total) total = end;
    }
    a->base.total_numel = total;
    a->m = kl_calloc(total, sizeof(float), "AdamW first moment");
    a->v = kl_calloc(total, sizeof(float), "AdamW second moment");
    if (!a->base.params || !a->m || !a->v) {
        adamw_destroy(&a->base);
        return KL_ERR_OOM;
    }
    memcpy(a->base.params, params, (size_t)n * sizeof *params);
    *out = &a->base;
    return KL_OK;
}
