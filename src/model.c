/* model.c — the transformer's parameter table, initialisation, and forward/backward on the CPU ops.
 * Pre-norm blocks: x += Wo·attn(rope(norm(x)·Wqkv)); x += Wdown·swiglu(norm(x)·Wgu); logits = norm(x)·Wheadᵀ.
 * The blocks' four matmuls go through linear.h in the precision set by kl_model_set_precision; the LM head
 * and embedding stay FP32. The LM head is applied in row chunks so full (B·T, V) logits never exist.
 * Parameter gradients accumulate (+=) across micro-batches; activation gradients are overwritten. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "cross_entropy.h"
#include "embedding.h"
#include "linear.h"
#include "matmul.h"
#include "philox.h"
#include "rmsnorm.h"
#include "swiglu.h"

#define HEAD_CHUNK_ROWS 256 /* rows of logits alive at once in the LM head */

typedef struct {
    float *res;      /* (N,C) block input (residual stream) */
    float *ln1;      /* (N,C) */
    float *rstd1;    /* (N) */
    float *qkv_raw;  /* (N,QKV) projection output before q/k norm (Qwen3 only) */
    float *qk_rstd;  /* (N,NH+NKV) (Qwen3 only) */
    float *qkv;      /* (N,QKV) after q/k norm and RoPE: what attention reads */
    float *att;      /* (N,NH*HS) */
    float *lse;      /* (B,NH,T) */
    float *res2;     /* (N,C) residual after attention */
    float *ln2;      /* (N,C) */
    float *rstd2;    /* (N) */
    float *gu;       /* (N,2F) */
    float *sw;       /* (N,F) */
} layer_acts;

struct kl_model {
    kl_model_shape s;
    int n_tensors;
    kl_param_info *info;
    size_t n_params; /* unique elements in the buffer */
    float *params, *grads;
    kl_block_weights *blocks, *gblocks;
    kl_outer_weights outer, gouter;
    float *rope_cos, *rope_sin; /* (max_T, HS/2) */
    kl_linear_cfg prec;         /* the blocks' four linear layers (not the LM head or embedding) */
    uint64_t bwd_passes;        /* backward passes run so far: the `pass` of the random call ids */
    kl_linear_saved *lsaved;    /* (L, 4): each block linear's quantized operands, forward -> backward */

    /* activations for the current (B, T) */
    int B, T;
    int32_t *inputs; /* (B,T) copy of the last forward's tokens, for the embedding backward */
    float *act_mem;
    layer_acts *acts;
    float *res_final, *lnf, *rstdf;
    /* backward scratch */
    float *dres, *dln, *dqkv, *dqkv_raw, *datt, *dgu, *dsw, *head_buf;
};

static int qkv_dim(const kl_model_shape *s) { return (s->NH + 2 * s->NKV) * s->HS; }

/* ---- parameter table ------------------------------------------------------------------------ */

static void add_param(kl_model *m, const char *name, int layer, kl_param_kind kind, int rows, int cols) {
    kl_param_info *p = &m->info[m->n_tensors++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->layer = layer;
    p->kind = kind;
    p->rows = rows;
    p->cols = cols;
    p->offset = m->n_params;
    p->numel = (size_t)rows * (size_t)cols;
    m->n_params += p->numel;
}

static void build_param_table(kl_model *m) {
    const kl_model_shape *s = &m->s;
    char name[64];
    add_param(m, "wte", -1, KL_PARAM_EMBEDDING, s->V, s->C);
    for (int l = 0; l < s->L; l++) {
#define P(field, kind, r, c)                                                                                         \
    do {                                                                                                             \
        snprintf(name, sizeof name, "layers.%d.%s", l, field);                                                       \
        add_param(m, name, l, kind, r, c);                                                                           \
    } while (0)
        P("attn_norm", KL_PARAM_NORM, 1, s->C);
        P("wqkv", KL_PARAM_MATRIX, qkv_dim(s), s->C);
        if (s->qkv_bias) P("bqkv", KL_PARAM_BIAS, 1, qkv_dim(s));
        if (s->qk_norm) {
            P("q_norm", KL_PARAM_NORM, 1, s->HS);
            P("k_norm", KL_PARAM_NORM, 1, s->HS);
        }
        P("wo", KL_PARAM_MATRIX, s->C, s->NH * s->HS);
        P("mlp_norm", KL_PARAM_NORM, 1, s->C);
        P("wgu", KL_PARAM_MATRIX, 2 * s->F, s->C);
        P("wdown", KL_PARAM_MATRIX, s->C, s->F);
#undef P
    }
    add_param(m, "final_norm", -1, KL_PARAM_NORM, 1, s->C);
    if (!s->tie_embeddings) add_param(m, "lm_head", -1, KL_PARAM_HEAD, s->V, s->C);
}

static float *find(kl_model *m, float *base, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->info[i].name, name) == 0) return base + m->info[i].offset;
    return NULL;
}

static void bind_pointers(kl_model *m, float *base, kl_block_weights *blocks, kl_outer_weights *outer) {
    char name[64];
    for (int l = 0; l < m->s.L; l++) {
        kl_block_weights *b = &blocks[l];
#define F(field)                                                                                                     \
    (snprintf(name, sizeof name, "layers.%d.%s", l, field), find(m, base, name))
        b->attn_norm = F("attn_norm");
        b->wqkv = F("wqkv");
        b->bqkv = F("bqkv");
        b->q_norm = F("q_norm");
        b->k_norm = F("k_norm");
        b->wo = F("wo");
        b->mlp_norm = F("mlp_norm");
        b->wgu = F("wgu");
        b->wdown = F("wdown");
#undef F
    }
    outer->wte = find(m, base, "wte");
    outer->final_norm = find(m, base, "final_norm");
    outer->lm_head = m->s.tie_embeddings ? outer->wte : find(m, base, "lm_head");
}

kl_status kl_model_create(kl_model **out, const kl_model_shape *shape) {
    *out = NULL;
    kl_model_shape s = *shape;
    KL_TRY(kl_model_shape_check(&s));
    kl_model *m = kl_calloc(1, sizeof *m, "model");
    if (!m) return KL_ERR_OOM;
    m->s = s;
    m->info = kl_calloc((size_t)(4 + 9 * s.L), sizeof *m->info, "parameter table");
    m->blocks = kl_calloc((size_t)s.L, sizeof *m->blocks, "block weights");
    m->gblocks = kl_calloc((size_t)s.L, sizeof *m->gblocks, "block grads");
    m->lsaved = kl_calloc((size_t)s.L * 4, sizeof *m->lsaved, "linear-layer saved operands");
    if (!m->info || !m->blocks || !m->gblocks || !m->lsaved) goto oom;
    build_param_table(m);
    m->params = kl_calloc(m->n_params, sizeof(float), "parameters");
    m->grads = kl_calloc(m->n_params, sizeof(float), "gradients");
    m->rope_cos = kl_malloc((size_t)s.max_T * (size_t)(s.HS / 2) * sizeof(float), "RoPE table");
    m->rope_sin = kl_malloc((size_t)s.max_T * (size_t)(s.HS / 2) * sizeof(float), "RoPE table");
    if (!m->params || !m->grads || !m->rope_cos || !m->rope_sin) goto oom;
    bind_pointers(m, m->params, m->blocks, &m->outer);
    bind_pointers(m, m->grads, m->gblocks, &m->gouter);
    kl_rope_freqs(m->rope_cos, m->rope_sin, s.max_T, s.HS, s.rope_theta, &s.rope_scaling);
    *out = m;
    return KL_OK;
oom:
    kl_model_free(m);
    return KL_ERR_OOM;
}

static void free_acts(kl_model *m) {
    free(m->act_mem);
    free(m->acts);
    free(m->inputs);
    m->act_mem = NULL;
    m->acts = NULL;
    m->inputs = NULL;
    m->B = m->T = 0;
}

void kl_model_free(kl_model *m) {
    if (!m) return;
    free_acts(m);
    free(m->info);
    free(m->blocks);
    free(m->gblocks);
    if (m->lsaved)
        for (int i = 0; i < m->s.L * 4; i++) kl_linear_saved_free(&m->lsaved[i]);
    free(m->lsaved);
    free(m->params);
    free(m->grads);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m);
}

const kl_model_shape *kl_model_get_shape(const kl_model *m) { return &m->s; }

kl_status kl_model_set_precision(kl_model *m, const kl_linear_cfg *cfg) {
    kl_status st = kl_linear_cfg_check(cfg);
    if (st != KL_OK) return kl_error_context(st, "kl_model_set_precision");
    m->prec = *cfg;
    return KL_OK;
}
const kl_linear_cfg *kl_model_get_precision(const kl_model *m) { return &m->prec; }
uint64_t kl_model_backward_passes(const kl_model *m) { return m->bwd_passes; }
void kl_model_set_backward_passes(kl_model *m, uint64_t passes) { m->bwd_passes = passes; }
size_t kl_model_num_params(const kl_model *m) { return m->n_params; }
int kl_model_num_param_tensors(const kl_model *m) { return m->n_tensors; }
const kl_param_info *kl_model_param_info(const kl_model *m, int i) { return &m->info[i]; }
float *kl_model_params(kl_model *m) { return m->params; }
float *kl_model_grads(kl_model *m) { return m->grads; }
void kl_model_zero_grads(kl_model *m) { memset(m->grads, 0, m->n_params * sizeof(float)); }

double kl_model_flops_per_token(const kl_model *m, int T) {
    const kl_model_shape *s = &m->s;
    double matrix = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->info[i].kind == KL_PARAM_MATRIX || m->info[i].kind == KL_PARAM_HEAD) matrix += (double)m->info[i].numel;
    if (s->tie_embeddings) matrix += (double)s->V * s->C; /* the tied head is still a matmul */
    /* causal attention: QK^T and PV, forward 2 matmuls, backward 4, half the T x T square */
    double attn = 6.0 * s->L * (double)s->NH * s->HS * T;
    return 6.0 * matrix + attn;
}

void kl_model_init_weights(kl_model *m, uint64_t seed, float std) {
    const kl_model_shape *s = &m->s;
    float resid_std = std / sqrtf(2.0f * (float)s->L);
    for (int i = 0; i < m->n_tensors; i++) {
        const kl_param_info *p = &m->info[i];
        float *w = m->params + p->offset;
        if (p->kind == KL_PARAM_NORM) {
            for (size_t j = 0; j < p->numel; j++) w[j] = 1.0f;
            continue;
        }
        if (p->kind == KL_PARAM_BIAS) {
            memset(w, 0, p->numel * sizeof(float));
            continue;
        }
        const char *leaf = strrchr(p->name, '.');
        leaf = leaf ? leaf + 1 : p->name;
        float sd = (strcmp(leaf, "wo") == 0 || strcmp(leaf, "wdown") == 0) ? resid_std : std;
        /* Box-Muller on Philox words: stream = tensor index, one block of 4 words -> 4 normals */
        for (size_t j = 0; j < p->numel; j += 4) {
            kl_philox_ctr r = kl_philox_block(seed, (uint64_t)i, j / 4);
            for (int k = 0; k < 4 && j + (size_t)k < p->numel; k += 2) {
                double u1 = ((double)r.v[k] + 1.0) / 4294967297.0; /* (0, 1) */
                double u2 = (double)r.v[k + 1] / 4294967296.0;
                double rad = sqrt(-2.0 * log(u1));
                w[j + (size_t)k] = (float)(sd * rad * cos(2.0 * M_PI * u2));
                if (j + (size_t)k + 1 < p->numel) w[j + (size_t)k + 1] = (float)(sd * rad * sin(2.0 * M_PI * u2));
            }
        }
    }
}

/* ---- weight access ------------------------------------------------------------------------- */

void kl_weights_gather(kl_model *m, int layer) { (void)m, (void)layer; }
const kl_block_weights *kl_weights_get(kl_model *m, int layer) { return &m->blocks[layer]; }
void kl_weights_release(kl_model *m, int layer) { (void)m, (void)layer; }
const kl_outer_weights *kl_weights_get_outer(kl_model *m) { return &m->outer; }
kl_block_weights kl_grads_block(kl_model *m, int layer) { return m->gblocks[layer]; }
kl_outer_weights kl_grads_outer(kl_model *m) { return m->gouter; }

/* ---- activations --------------------------------------------------------------------------- */

static kl_status ensure_acts(kl_model *m, int B, int T) {
    if (m->B == B && m->T == T) return KL_OK;
    const kl_model_shape *s = &m->s;
    if (T > s->max_T) return kl_error(KL_ERR_INVALID, "sequence length %d exceeds model.max_seq_len %d", T, s->max_T);
    free_acts(m);
    size_t N = (size_t)B * T, C = s->C, Q = qkv_dim(s), A = (size_t)s->NH * s->HS, F = s->F;
    size_t per_layer = N * C * 4 + N * 2 + N * Q + N * A + (size_t)B * s->NH * T + N * 2 * F + N * F;
    if (s->qk_norm) per_layer += N * Q + N * (size_t)(s->NH + s->NKV);
    size_t scratch = N * C * 2 + N * Q * 2 + N * A + N * 2 * F + N * F + (size_t)HEAD_CHUNK_ROWS * s->V;
    size_t total = per_layer * s->L + N * C * 2 + N + scratch;
    m->act_mem = kl_malloc(total * sizeof(float), "activations");
    m->acts = kl_calloc((size_t)s->L, sizeof *m->acts, "activation table");
    m->inputs = kl_malloc(N * sizeof(int32_t), "input tokens");
    if (!m->act_mem || !m->acts || !m->inputs) {
        free_acts(m);
        return KL_ERR_OOM;
    }
    float *p = m->act_mem;
#define TAKE(n) (p += (n), p - (n))
    for (int l = 0; l < s->L; l++) {
        layer_acts *a = &m->acts[l];
        a->res = TAKE(N * C);
        a->ln1 = TAKE(N * C);
        a->rstd1 = TAKE(N);
        if (s->qk_norm) {
            a->qkv_raw = TAKE(N * Q);
            a->qk_rstd = TAKE(N * (size_t)(s->NH + s->NKV));
        }
        a->qkv = TAKE(N * Q);
        a->att = TAKE(N * A);
        a->lse = TAKE((size_t)B * s->NH * T);
        a->res2 = TAKE(N * C);
        a->ln2 = TAKE(N * C);
        a->rstd2 = TAKE(N);
        a->gu = TAKE(N * 2 * F);
        a->sw = TAKE(N * F);
    }
    m->res_final = TAKE(N * C);
    m->lnf = TAKE(N * C);
    m->rstdf = TAKE(N);
    m->dres = TAKE(N * C);
    m->dln = TAKE(N * C);
    m->dqkv = TAKE(N * Q);
    m->dqkv_raw = TAKE(N * Q);
    m->datt = TAKE(N * A);
    m->dgu = TAKE(N * 2 * F);
    m->dsw = TAKE(N * F);
    m->head_buf = TAKE((size_t)HEAD_CHUNK_ROWS * s->V);
#undef TAKE
    m->B = B;
    m->T = T;
    return KL_OK;
}

static void add_inplace(float *y, const float *x, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* ---- the blocks' linear layers ------------------------------------------------------------- */

/* out(N,OC) = inp(N,IC) w^T + bias in the model's precision; site's saved operands feed its backward. */
static kl_status block_linear(kl_model *m, int l, kl_linear_site site, float *out, const float *inp, const float *w,
                              const float *bias, int IC, int OC) {
    return kl_linear_forward(&m->prec, &m->lsaved[l * 4 + site], out, inp, w, bias, m->B * m->T, IC, OC);
}

/* Its backward; the random call ids are keyed by (backward pass, layer, site). */
static kl_status block_linear_backward(kl_model *m, int l, kl_linear_site site, float *dinp, float *dw, float *dbias,
                                       const float *dout, const float *inp, const float *w, int IC, int OC) {
    uint64_t call = kl_linear_call_id(m->bwd_passes, l, site, KL_LINEAR_RNG_SIGNS);
    return kl_linear_backward(&m->prec, &m->lsaved[l * 4 + site], call, dinp, dw, dbias, dout, inp, w, m->B * m->T,
                              IC, OC);
}

/* ---- forward ------------------------------------------------------------------------------- */

kl_status kl_model_forward(kl_model *m, const int32_t *inputs, int B, int T) {
    KL_TRY(ensure_acts(m, B, T));
    const kl_model_shape *s = &m->s;
    const int N = B * T, C = s->C, Q = qkv_dim(s), A = s->NH * s->HS, F = s->F;
    for (int i = 0; i < N; i++)
        if (inputs[i] < 0 || inputs[i] >= s->V)
            return kl_error(KL_ERR_INVALID, "input token %d at position %d is outside the vocabulary [0, %d)", inputs[i],
                            i, s->V);
    memcpy(m->inputs, inputs, (size_t)N * sizeof(int32_t));
    const kl_outer_weights *ow = kl_weights_get_outer(m);
    KL_TRY(kl_embedding_forward_cpu(m->acts[0].res, inputs, ow->wte, N, s->V, C));

    kl_weights_gather(m, 0);
    for (int l = 0; l < s->L; l++) {
        if (l + 1 < s->L) kl_weights_gather(m, l + 1); /* prefetch the next block */
        const kl_block_weights *w = kl_weights_get(m, l);
        layer_acts *a = &m->acts[l];
        float *out = (l + 1 < s->L) ? m->acts[l + 1].res : m->res_final;

        kl_rmsnorm_forward_cpu(a->ln1, a->rstd1, a->res, w->attn_norm, N, C, s->norm_eps);
        if (s->qk_norm) {
            KL_TRY(block_linear(m, l, KL_LINEAR_QKV, a->qkv_raw, a->ln1, w->wqkv, w->bqkv, C, Q));
            kl_qknorm_forward_cpu(a->qkv, a->qk_rstd, a->qkv_raw, w->q_norm, w->k_norm, N, s->NH, s->NKV, s->HS,
                                  s->norm_eps);
        } else {
            KL_TRY(block_linear(m, l, KL_LINEAR_QKV, a->qkv, a->ln1, w->wqkv, w->bqkv, C, Q));
        }
        kl_rope_forward_cpu(a->qkv, m->rope_cos, m->rope_sin, B, T, s->NH, s->NKV, s->HS);
        KL_TRY(kl_attention_forward_cpu(a->att, a->lse, a->qkv, B, T, s->NH, s->NKV, s->HS));
        KL_TRY(block_linear(m, l, KL_LINEAR_O, a->res2, a->att, w->wo, NULL, A, C));
        add_inplace(a->res2, a->res, (size_t)N * C);

        kl_rmsnorm_forward_cpu(a->ln2, a->rstd2, a->res2, w->mlp_norm, N, C, s->norm_eps);
        KL_TRY(block_linear(m, l, KL_LINEAR_GATE_UP, a->gu, a->ln2, w->wgu, NULL, C, 2 * F));
        kl_swiglu_forward_cpu(a->sw, a->gu, N, F);
        KL_TRY(block_linear(m, l, KL_LINEAR_DOWN, out, a->sw, w->wdown, NULL, F, C));
        add_inplace(out, a->res2, (size_t)N * C);
        kl_weights_release(m, l);
    }
    kl_rmsnorm_forward_cpu(m->lnf, m->rstdf, m->res_final, ow->final_norm, N, C, s->norm_eps);
    return KL_OK;
}

kl_status kl_model_logits_at(kl_model *m, int b, int t, float *logits) {
    if (!m->acts || b < 0 || b >= m->B || t < 0 || t >= m->T)
        return kl_error(KL_ERR_INVALID, "logits_at(%d, %d) outside the last forward's (%d, %d)", b, t, m->B, m->T);
    const kl_outer_weights *ow = kl_weights_get_outer(m);
    kl_matmul_forward_cpu(logits, m->lnf + ((size_t)b * m->T + t) * m->s.C, ow->lm_head, NULL, 1, m->s.C, m->s.V);
    return KL_OK;
}

/* ---- loss and backward --------------------------------------------------------------------- */

static kl_status block_backward(kl_model *m, int l) {
    const kl_model_shape *s = &m->s;
    const int B = m->B, T = m->T, N = B * T, C = s->C, Q = qkv_dim(s), A = s->NH * s->HS, F = s->F;
    const kl_block_weights *w = kl_weights_get(m, l);
    kl_block_weights g = kl_grads_block(m, l);
    layer_acts *a = &m->acts[l];
    float *dres = m->dres; /* in: d(block output); out: d(block input) */

    /* MLP: out = res2 + swiglu(norm(res2)·Wgu)·Wdown */
    KL_TRY(block_linear_backward(m, l, KL_LINEAR_DOWN, m->dsw, g.wdown, NULL, dres, a->sw, w->wdown, F, C));
    kl_swiglu_backward_cpu(m->dgu, m->dsw, a->gu, N, F);
    KL_TRY(block_linear_backward(m, l, KL_LINEAR_GATE_UP, m->dln, g.wgu, NULL, m->dgu, a->ln2, w->wgu, C, 2 * F));
    kl_rmsnorm_backward_cpu(dres, g.mlp_norm, m->dln, a->res2, w->mlp_norm, a->rstd2, N, C); /* dres += */

    /* attention: res2 = res + attn(norm(res))·Wo */
    KL_TRY(block_linear_backward(m, l, KL_LINEAR_O, m->datt, g.wo, NULL, dres, a->att, w->wo, A, C));
    KL_TRY(kl_attention_backward_cpu(m->dqkv, m->datt, a->att, a->lse, a->qkv, B, T, s->NH, s->NKV, s->HS));
    kl_rope_backward_cpu(m->dqkv, m->rope_cos, m->rope_sin, B, T, s->NH, s->NKV, s->HS);
    float *dproj = m->dqkv;
    if (s->qk_norm) {
        kl_qknorm_backward_cpu(m->dqkv_raw, g.q_norm, g.k_norm, m->dqkv, a->qkv_raw, w->q_norm, w->k_norm, a->qk_rstd,
                               N, s->NH, s->NKV, s->HS);
        dproj = m->dqkv_raw;
    }
    KL_TRY(block_linear_backward(m, l, KL_LINEAR_QKV, m->dln, g.wqkv, g.bqkv, dproj, a->ln1, w->wqkv, C, Q));
    kl_rmsnorm_backward_cpu(dres, g.attn_norm, m->dln, a->res, w->attn_norm, a->rstd1, N, C); /* dres += */
    return KL_OK;
}

kl_status kl_model_loss(kl_model *m, const int32_t *targets, float z_loss, int backward, float grad_scale,
                        double *loss_sum, int64_t *n_valid) {
    if (!m->acts) return kl_error(KL_ERR_INVALID, "kl_model_loss called before kl_model_forward");
    const kl_model_shape *s = &m->s;
    const int N = m->B * m->T, C = s->C, V = s->V;
    for (int i = 0; i < N; i++)
        if (targets[i] != -100 && (targets[i] < 0 || targets[i] >= V))
            return kl_error(KL_ERR_INVALID, "target token %d at position %d is outside the vocabulary [0, %d)",
                            targets[i], i, V);
    const kl_outer_weights *ow = kl_weights_get_outer(m);
    kl_outer_weights go = kl_grads_outer(m);
    double total = 0;
    int64_t valid = 0;
    float *losses = m->dsw; /* (N) scratch: dsw is free until the blocks' backward */
    if (backward) memset(m->dln, 0, (size_t)N * C * sizeof(float));
    for (int r0 = 0; r0 < N; r0 += HEAD_CHUNK_ROWS) {
        int rows = N - r0 < HEAD_CHUNK_ROWS ? N - r0 : HEAD_CHUNK_ROWS;
        const float *x = m->lnf + (size_t)r0 * C;
        kl_matmul_forward_cpu(m->head_buf, x, ow->lm_head, NULL, rows, C, V);
        total += kl_cross_entropy_cpu(m->head_buf, losses, m->head_buf, targets + r0, rows, V, z_loss, grad_scale);
        for (int i = 0; i < rows; i++) valid += targets[r0 + i] != -100;
        if (backward) {
            float *dhead = s->tie_embeddings ? go.wte : go.lm_head;
            kl_matmul_backward_cpu(m->dln + (size_t)r0 * C, dhead, NULL, m->head_buf, x, ow->lm_head, rows, C, V);
        }
    }
    *loss_sum = total;
    *n_valid = valid;
    if (!backward) return KL_OK;

    memset(m->dres, 0, (size_t)N * C * sizeof(float));
    kl_rmsnorm_backward_cpu(m->dres, go.final_norm, m->dln, m->res_final, ow->final_norm, m->rstdf, N, C);
    kl_weights_gather(m, s->L - 1);
    for (int l = s->L - 1; l >= 0; l--) {
        if (l > 0) kl_weights_gather(m, l - 1);
        KL_TRY(block_backward(m, l));
        kl_weights_release(m, l);
    }
    kl_embedding_backward_cpu(go.wte, m->dres, m->inputs, N, C);
    m->bwd_passes++;
    return KL_OK;
}

