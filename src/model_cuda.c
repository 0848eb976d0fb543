/* model_cuda.c — the transformer of model.c on one GPU (model_cuda.h): parameters, activations and the
 * forward / loss / backward orchestration, written against the kernels/<op>_cuda.h launchers in the same order
 * as the CPU model, so the two can be compared tensor by tensor. Host C only: no CUDA header, no kernel.
 * The residual add of each sub-block is fused into the RMSNorm that follows it. */
#include "model_cuda.h"

#include <stdlib.h>
#include <string.h>

#ifdef KILN_HAVE_CUDA

#include "adamw_cuda.h"         /* kl_sum_squares_scratch_bytes (the trainer's norm shares our scratch) */
#include "attention_cuda.h"     /* causal GQA attention: cuDNN forward, own deterministic backward */
#include "cross_entropy_cuda.h" /* fused softmax cross-entropy, logit gradient in place; loss sum */
#include "embedding_cuda.h"     /* token embedding gather / planned deterministic scatter */
#include "matmul_cuda.h"        /* cuBLASLt BF16 GEMMs: forward (+bias), dinp, dw += and dbias += in FP32 */
#include "rmsnorm_cuda.h"       /* fused residual + RMSNorm, Qwen3 q/k norm */
#include "rope_cuda.h"          /* rotary embedding in place on the packed qkv */
#include "swiglu_cuda.h"        /* SwiGLU gate */
#include "gemm_sm90_cuda.h"     /* kiln's own Hopper GEMM, with the SwiGLU forward and backward fused */

#define PARAM_ALIGN 128                         /* elements: every tensor starts 256-byte aligned in BF16 */
/* The auto LM-head chunk: logits of at most 1/24 of the run's memory, clamped to [1, 6] GiB of BF16 (one chunk
 * for 16 x 1024 positions of Qwen2.5's vocabulary on a 141 GB H200, two on an 80 GB card). Every chunk costs a
 * pass over the head's FP32 weight gradient (V*C*8 bytes), so fewer, larger chunks are faster: at the
 * Qwen2.5-0.5B shape on an H200, 10 chunks ran at 150k tok/s, 5 at 153k, 1 at 155k. */
static size_t head_chunk_budget_elems(const kl_devmem *mem) {
    size_t b = kl_devmem_capacity(mem) / 24;
    if (b < ((size_t)1 << 30)) b = (size_t)1 << 30;
    if (b > ((size_t)6 << 30)) b = (size_t)6 << 30;
    return b / sizeof(kl_bf16);
}

typedef struct {
    kl_bf16 *attn_norm, *wqkv, *bqkv, *q_norm, *k_norm, *wo, *mlp_norm, *wgu, *wdown;
} block_w;
typedef struct {
    float *attn_norm, *wqkv, *bqkv, *q_norm, *k_norm, *wo, *mlp_norm, *wgu, *wdown;
} block_g;

typedef struct {
    kl_bf16 *res;     /* (N,C) block input (residual stream) */
    kl_bf16 *ln1;     /* (N,C) */
    float *rstd1;     /* (N) */
    kl_bf16 *qkv_raw; /* (N,Q) projection before q/k norm (Qwen3 only) */
    float *qk_rstd;   /* (N,NH+NKV) (Qwen3 only) */
    kl_bf16 *qkv;     /* (N,Q) after q/k norm and RoPE: what attention reads */
    kl_bf16 *att;     /* (N,NH*HS) */
    float *lse;       /* (B,NH,T) */
    kl_bf16 *res2;    /* (N,C) residual after attention */
    kl_bf16 *ln2;     /* (N,C) */
    float *rstd2;     /* (N) */
    kl_bf16 *gu;      /* (N,2F) */
    kl_bf16 *sw;      /* (N,F) */
} layer_acts;

struct kl_model_cuda {
    kl_model_shape s;
    int n_tensors;
    kl_param_info *info; /* the CPU model's table (CPU offsets) */
    size_t *dev_off;     /* device offset of each tensor */
    size_t n_params;     /* CPU layout length */
    kl_model_cuda_opts o;
    kl_model_cuda_bufs bufs;
    kl_devmem *mem;
    struct CUstream_st *stream;
    struct CUevent_st *staged; /* the last copy out of the pinned staging buffer has finished */
    int staged_pending;
    kl_gemm_ctx *gemm;
    kl_attention_ctx *attn;
    void *gemm_ws;
    int fused_swiglu; /* SwiGLU forward and backward in the MLP GEMMs' epilogues (kiln's sm90 GEMM) */

    block_w *bw;
    block_g *bg;
    kl_bf16 *wte, *final_norm, *lm_head;
    float *g_wte, *g_final_norm, *g_lm_head;
    float *rope_cos, *rope_sin; /* (max_T, HS/2) */

    /* activations for the current (B, T) */
    int B, T, head_rows;
    void *act_mem;
    layer_acts *acts;
    kl_bf16 *res_final, *lnf;
    float *rstdf;
    kl_bf16 *proj; /* (N,C) output of wo / wdown before the residual add */
    kl_bf16 *dres, *dln, *dqkv, *datt, *dgu, *dsw;
    kl_bf16 *head_buf; /* (head_rows, V) logits, then their gradient in place */
    void *scratch;
    size_t scratch_bytes;
    size_t attn_ws_bytes;

    /* token batches: regions [tokens cap*N][targets cap*N][plans cap*P], mirrored in pinned host memory */
    int cap_micro, batch_N;
    size_t plan_elems; /* P */
    int32_t *batch_dev, *batch_host;
    int *n_unique;     /* per micro-batch slot */
    float *losses;     /* (cap*N) per-position losses */
    double *result_host; /* pinned: the loss sum read back */
    int have_forward;
    /* the batch kl_model_cuda_stage put into the batch buffers, as long as nothing has staged or reallocated
     * since (staged_micro is 0 otherwise): the only batch kl_model_cuda_accumulate_staged trains on. Its (B, T)
     * is the current m->B, m->T: reallocating for another shape clears staged_micro. */
    int staged_micro;
    int64_t staged_valid; /* its targets that are not KL_IGNORE_INDEX */

    /* per-layer CUDA graphs of the forward and backward block bodies, captured on first use for the current
     * buffers (ensure_acts drops them); graphs_off after a capture failed (graph_note says why) */
    kl_cuda_graph **fwd_graph, **bwd_graph;
    int graphs_off;
    char graph_note[256];
};

static int qkv_dim(const kl_model_shape *s) { return (s->NH + 2 * s->NKV) * s->HS; }

static void drop_graphs(kl_model_cuda *m) {
    for (int l = 0; l < m->s.L; l++) {
        if (m->fwd_graph) kl_cuda_graph_destroy(m->fwd_graph[l]), m->fwd_graph[l] = NULL;
        if (m->bwd_graph) kl_cuda_graph_destroy(m->bwd_graph[l]), m->bwd_graph[l] = NULL;
    }
}

const kl_model_shape *kl_model_cuda_shape(const kl_model_cuda *m) { return &m->s; }
const kl_model_cuda_bufs *kl_model_cuda_buffers(kl_model_cuda *m) { return &m->bufs; }
size_t kl_model_cuda_param_offset(const kl_model_cuda *m, int tensor) { return m->dev_off[tensor]; }

/* ---- parameters ------------------------------------------------------------------------------ */

static void bind_params(kl_model_cuda *m) {
    for (int i = 0; i < m->n_tensors; i++) {
        const kl_param_info *p = &m->info[i];
        kl_bf16 *w = m->bufs.weights + m->dev_off[i];
        float *g = m->bufs.grads + m->dev_off[i];
        const char *leaf = strrchr(p->name, '.');
        leaf = leaf ? leaf + 1 : p->name;
        if (p->layer < 0) {
            if (strcmp(leaf, "wte") == 0) m->wte = w, m->g_wte = g;
            else if (strcmp(leaf, "final_norm") == 0) m->final_norm = w, m->g_final_norm = g;
            else if (strcmp(leaf, "lm_head") == 0) m->lm_head = w, m->g_lm_head = g;
            continue;
        }
        block_w *bw = &m->bw[p->layer];
        block_g *bg = &m->bg[p->layer];
#define BIND(field)                                                                                                  \
    if (strcmp(leaf, #field) == 0) {                                                                                 \
        bw->field = w;                                                                                               \
        bg->field = g;                                                                                               \
        continue;                                                                                                    \
    }
        BIND(attn_norm)
        BIND(wqkv)
        BIND(bqkv)
        BIND(q_norm)
        BIND(k_norm)
        BIND(wo)
        BIND(mlp_norm)
        BIND(wgu)
        BIND(wdown)
#undef BIND
    }
    if (m->s.tie_embeddings) m->lm_head = m->wte, m->g_lm_head = m->g_wte;
}

/* With bf16_master the parameters exist only as BF16: rounded to nearest even on the host on the way in (the
 * alignment gaps zero), read back exactly. */
static kl_status upload_bf16_params(kl_model_cuda *m, const float *src) {
    kl_bf16 *tmp = kl_calloc(m->bufs.n_elems, sizeof *tmp, "BF16 parameter staging");
    if (!tmp) return KL_ERR_OOM;
    for (int i = 0; i < m->n_tensors; i++)
        for (size_t k = 0; k < m->info[i].numel; k++)
            tmp[m->dev_off[i] + k] = kl_f32_to_bf16(src[m->info[i].offset + k]);
    kl_status st = kl_cuda_h2d_async(m->bufs.weights, tmp, m->bufs.n_elems * sizeof *tmp, m->stream);
    if (st == KL_OK) st = kl_cuda_stream_sync(m->stream); /* pageable source: finish before freeing it */
    free(tmp);
    return st;
}

kl_status kl_model_cuda_to_host_layout(kl_model_cuda *m, float *host, const float *dev) {
    for (int i = 0; i < m->n_tensors; i++)
        KL_TRY(kl_cuda_d2h_async(host + m->info[i].offset, dev + m->dev_off[i], m->info[i].numel * sizeof(float),
                                 m->stream));
    return kl_cuda_stream_sync(m->stream);
}

kl_status kl_model_cuda_from_host_layout(kl_model_cuda *m, float *dev, const float *host) {
    for (int i = 0; i < m->n_tensors; i++)
        KL_TRY(kl_cuda_h2d_async(dev + m->dev_off[i], host + m->info[i].offset, m->info[i].numel * sizeof(float),
                                 m->stream));
    return kl_cuda_stream_sync(m->stream); /* pageable source: the caller may reuse it on return */
}

size_t kl_model_cuda_num_params(const kl_model_cuda *m) { return m->n_params; }

kl_status kl_model_cuda_upload(kl_model_cuda *m, kl_model *cpu) {
    if (kl_model_num_params(cpu) != m->n_params)
        return kl_error(KL_ERR_INVALID, "model upload: the CPU model has %zu parameters, the GPU model %zu",
                        kl_model_num_params(cpu), m->n_params);
    const float *src = kl_model_params(cpu);
    if (!m->bufs.master) return upload_bf16_params(m, src);
    KL_TRY(kl_model_cuda_from_host_layout(m, m->bufs.master, src));
    KL_TRY(kl_f32_to_bf16_cuda(m->bufs.weights, m->bufs.master, m->bufs.n_elems, m->stream));
    return kl_cuda_stream_sync(m->stream);
}

kl_status kl_model_cuda_download(kl_model_cuda *m, kl_model *cpu) {
    if (kl_model_num_params(cpu) != m->n_params)
        return kl_error(KL_ERR_INVALID, "model download: the CPU model has %zu parameters, the GPU model %zu",
                        kl_model_num_params(cpu), m->n_params);
    if (m->bufs.master) return kl_model_cuda_to_host_layout(m, kl_model_params(cpu), m->bufs.master);
    kl_bf16 *tmp = kl_malloc(m->bufs.n_elems * sizeof *tmp, "BF16 parameter read-back");
    if (!tmp) return KL_ERR_OOM;
    kl_status st = kl_cuda_d2h_async(tmp, m->bufs.weights, m->bufs.n_elems * sizeof *tmp, m->stream);
    if (st == KL_OK) st = kl_cuda_stream_sync(m->stream);
    float *dst = kl_model_params(cpu);
    for (int i = 0; st == KL_OK && i < m->n_tensors; i++)
        for (size_t k = 0; k < m->info[i].numel; k++)
            dst[m->info[i].offset + k] = kl_bf16_to_f32(tmp[m->dev_off[i] + k]);
    free(tmp);
    return st;
}

kl_status kl_model_cuda_download_grads(kl_model_cuda *m, float *grads) {
    return kl_model_cuda_to_host_layout(m, grads, m->bufs.grads);
}

kl_status kl_model_cuda_zero_grads(kl_model_cuda *m) {
    return kl_cuda_memset_async(m->bufs.grads, 0, m->bufs.n_elems * sizeof(float), m->stream);
}

/* ---- creation -------------------------------------------------------------------------------- */

kl_status kl_model_cuda_create(kl_model_cuda **out, kl_model *cpu, const kl_model_cuda_opts *opts) {
    *out = NULL;
    kl_model_cuda *m = kl_calloc(1, sizeof *m, "GPU model");
    if (!m) return KL_ERR_OOM;
    if (opts) m->o = *opts;
    m->s = *kl_model_get_shape(cpu);
    const kl_model_shape *s = &m->s;
    m->n_tensors = kl_model_num_param_tensors(cpu);
    m->n_params = kl_model_num_params(cpu);
    m->info = kl_calloc((size_t)m->n_tensors, sizeof *m->info, "GPU parameter table");
    m->dev_off = kl_calloc((size_t)m->n_tensors, sizeof *m->dev_off, "GPU parameter offsets");
    m->bw = kl_calloc((size_t)s->L, sizeof *m->bw, "GPU block weights");
    m->bg = kl_calloc((size_t)s->L, sizeof *m->bg, "GPU block grads");
    m->fwd_graph = kl_calloc((size_t)s->L, sizeof *m->fwd_graph, "GPU forward graphs");
    m->bwd_graph = kl_calloc((size_t)s->L, sizeof *m->bwd_graph, "GPU backward graphs");
    kl_status st = KL_ERR_OOM;
    if (!m->info || !m->dev_off || !m->bw || !m->bg || !m->fwd_graph || !m->bwd_graph) goto fail;
    size_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        m->info[i] = *kl_model_param_info(cpu, i);
        m->dev_off[i] = n;
        n += (m->info[i].numel + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
    }
    m->bufs.n_elems = n;

    if ((st = kl_devmem_create(&m->mem, m->o.device, m->o.device_limit)) != KL_OK) goto fail;
    m->bufs.mem = m->mem;
    if ((st = kl_cuda_stream_create(&m->stream)) != KL_OK) goto fail;
    m->bufs.stream = m->stream;
    if ((st = kl_cuda_event_create(&m->staged)) != KL_OK) goto fail;
    if ((st = kl_alloc(m->mem, &m->gemm_ws, KL_GEMM_WORKSPACE_BYTES, KL_MEM_WORKSPACE, "GEMM workspace")) != KL_OK)
        goto fail;
    if ((st = kl_gemm_ctx_create(&m->gemm, m->gemm_ws, KL_GEMM_WORKSPACE_BYTES)) != KL_OK) goto fail;
    if ((st = kl_attention_ctx_create(&m->attn, (kl_attn_backend)m->o.attention_backend)) != KL_OK) goto fail;
    m->fused_swiglu = !m->o.no_fused_swiglu && kl_gemm_sm90_swiglu_fits(s->F, s->C) && kl_gemm_sm90_available();

    void *p;
    if (!m->o.bf16_master) {
        if ((st = kl_alloc(m->mem, &p, n * sizeof(float), KL_MEM_MASTER, "master weights")) != KL_OK) goto fail;
        m->bufs.master = p;
    }
    if ((st = kl_alloc(m->mem, &p, n * sizeof(kl_bf16), KL_MEM_WEIGHTS, "BF16 weights")) != KL_OK) goto fail;
    m->bufs.weights = p;
    if ((st = kl_alloc(m->mem, &p, n * sizeof(float), KL_MEM_GRADS, "gradients")) != KL_OK) goto fail;
    m->bufs.grads = p;
    if ((st = kl_alloc(m->mem, &p, sizeof(double), KL_MEM_OTHER, "loss sum")) != KL_OK) goto fail;
    m->bufs.loss_sum = p;
    if ((st = kl_alloc_pinned(m->mem, &p, 4 * sizeof(double), KL_MEM_OTHER, "loss read-back")) != KL_OK) goto fail;
    m->result_host = p;
    const size_t rope_elems = (size_t)s->max_T * (size_t)(s->HS / 2);
    if ((st = kl_alloc(m->mem, &p, 2 * rope_elems * sizeof(float), KL_MEM_OTHER, "RoPE tables")) != KL_OK) goto fail;
    m->rope_cos = p;
    m->rope_sin = m->rope_cos + rope_elems;
    /* the trainer's gradient norm runs in this scratch before any activation exists */
    m->scratch_bytes = kl_sum_squares_scratch_bytes(n);
    if ((st = kl_alloc(m->mem, &m->scratch, m->scratch_bytes, KL_MEM_WORKSPACE, "scratch")) != KL_OK) goto fail;
    m->bufs.scratch = m->scratch;
    m->bufs.scratch_bytes = m->scratch_bytes;

    /* zero everything once, so the alignment gaps stay zero in every buffer forever */
    if (m->bufs.master && (st = kl_cuda_memset_async(m->bufs.master, 0, n * sizeof(float), m->stream)) != KL_OK)
        goto fail;
    if ((st = kl_cuda_memset_async(m->bufs.grads, 0, n * sizeof(float), m->stream)) != KL_OK) goto fail;
    {
        float *cs = kl_malloc(2 * rope_elems * sizeof(float), "RoPE tables");
        if (!cs) {
            st = KL_ERR_OOM;
            goto fail;
        }
        st = kl_rope_freqs(cs, cs + rope_elems, s->max_T, s->HS, s->rope_theta, &s->rope_scaling);
        if (st == KL_OK) st = kl_cuda_h2d_async(m->rope_cos, cs, 2 * rope_elems * sizeof(float), m->stream);
        if (st == KL_OK) st = kl_cuda_stream_sync(m->stream); /* pageable source: finish before freeing it */
        free(cs);
        if (st != KL_OK) goto fail;
    }
    bind_params(m);
    if ((st = kl_model_cuda_upload(m, cpu)) != KL_OK) goto fail;
    *out = m;
    return KL_OK;
fail:
    kl_model_cuda_free(m);
    return st;
}

void kl_model_cuda_free(kl_model_cuda *m) {
    if (!m) return;
    if (m->stream) kl_cuda_stream_sync(m->stream);
    drop_graphs(m);
    free(m->fwd_graph);
    free(m->bwd_graph);
    kl_attention_ctx_destroy(m->attn);
    kl_gemm_ctx_destroy(m->gemm);
    kl_cuda_event_destroy(m->staged);
    kl_cuda_stream_destroy(m->stream);
    kl_devmem_destroy(m->mem); /* frees every device and pinned buffer */
    free(m->acts);
    free(m->n_unique);
    free(m->info);
    free(m->dev_off);
    free(m->bw);
    free(m->bg);
    free(m);
}

/* ---- activations and batches ----------------------------------------------------------------- */

typedef struct {
    char *base; /* NULL: only measure */
    size_t off;
} bump;

static void *take(bump *b, size_t bytes) {
    size_t o = (b->off + 255) / 256 * 256;
    b->off = o + bytes;
    return b->base ? b->base + o : NULL;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* Lays the activations of (B, T) out in one allocation (or measures them when base is NULL). */
static size_t layout_acts(kl_model_cuda *m, char *base, int B, int T) {
    const kl_model_shape *s = &m->s;
    const size_t N = (size_t)B * T, C = s->C, Q = qkv_dim(s), A = (size_t)s->NH * s->HS, F = s->F;
    const size_t h = sizeof(kl_bf16), f = sizeof(float);
    bump b = {base, 0};
    for (int l = 0; l < s->L; l++) {
        layer_acts a = {0};
        a.res = take(&b, N * C * h);
        a.ln1 = take(&b, N * C * h);
        a.rstd1 = take(&b, N * f);
        if (s->qk_norm) {
            a.qkv_raw = take(&b, N * Q * h);
            a.qk_rstd = take(&b, N * (size_t)(s->NH + s->NKV) * f);
        }
        a.qkv = take(&b, N * Q * h);
        a.att = take(&b, N * A * h);
        a.lse = take(&b, (size_t)B * s->NH * T * f);
        a.res2 = take(&b, N * C * h);
        a.ln2 = take(&b, N * C * h);
        a.rstd2 = take(&b, N * f);
        a.gu = take(&b, N * 2 * F * h);
        a.sw = take(&b, N * F * h);
        if (base) m->acts[l] = a;
    }
    kl_bf16 *res_final = take(&b, N * C * h), *lnf = take(&b, N * C * h);
    float *rstdf = take(&b, N * f);
    kl_bf16 *proj = take(&b, N * C * h), *dres = take(&b, N * C * h), *dln = take(&b, N * C * h);
    kl_bf16 *dqkv = take(&b, N * Q * h), *datt = take(&b, N * A * h);
    /* dsw also holds wdown transposed for the fused SwiGLU backward, which needs no dsw */
    kl_bf16 *dgu = take(&b, N * 2 * F * h), *dsw = take(&b, max_sz(N, C) * F * h);
    if (base) {
        m->res_final = res_final, m->lnf = lnf, m->rstdf = rstdf, m->proj = proj;
        m->dres = dres, m->dln = dln, m->dqkv = dqkv, m->datt = datt, m->dgu = dgu, m->dsw = dsw;
    }
    return b.off;
}

static kl_status ensure_acts(kl_model_cuda *m, int B, int T) {
    if (m->B == B && m->T == T && m->act_mem) return KL_OK;
    const kl_model_shape *s = &m->s;
    if (B <= 0 || T <= 0) return kl_error(KL_ERR_INVALID, "GPU model: batch (%d, %d) must be positive", B, T);
    if (T > s->max_T) return kl_error(KL_ERR_INVALID, "sequence length %d exceeds model.max_seq_len %d", T, s->max_T);
    const int64_t widest = 2 * (int64_t)s->F > qkv_dim(s) ? 2 * (int64_t)s->F : qkv_dim(s);
    if ((int64_t)B * T * (widest > s->C ? widest : s->C) > INT32_MAX) /* the LM head's chunk is bounded apart */
        return kl_error(KL_ERR_INVALID, "GPU model: batch (%d, %d) is too large for 32-bit element indices", B, T);
    KL_TRY(kl_cuda_stream_sync(m->stream)); /* nothing in flight may still use the old buffers */
    drop_graphs(m);                          /* they name the old buffers */
    kl_free(m->mem, m->act_mem);
    kl_free(m->mem, m->head_buf);
    kl_free(m->mem, m->scratch);
    m->act_mem = m->head_buf = NULL;
    m->scratch = m->bufs.scratch = NULL;
    m->scratch_bytes = m->bufs.scratch_bytes = 0;
    m->B = m->T = 0;
    m->have_forward = 0;
    m->staged_micro = 0;
    free(m->acts);
    m->acts = kl_calloc((size_t)s->L, sizeof *m->acts, "GPU activation table");
    if (!m->acts) return KL_ERR_OOM;

    const int N = B * T;
    void *p;
    const size_t act_bytes = layout_acts(m, NULL, B, T);
    KL_TRY(kl_alloc(m->mem, &p, act_bytes, KL_MEM_ACTIVATIONS, "activations"));
    m->act_mem = p;
    layout_acts(m, p, B, T);

    int rows = m->o.head_chunk_rows;
    if (rows <= 0) { /* equal chunks of a multiple of 128 rows (full GEMM tiles), none above the budget */
        const size_t budget = head_chunk_budget_elems(m->mem);
        const size_t cap = budget / (size_t)s->V >= 128 ? budget / (size_t)s->V : 128;
        const size_t chunks = ((size_t)N + cap - 1) / cap, even = ((size_t)N + chunks - 1) / chunks;
        const size_t r = (even + 127) / 128 * 128;
        rows = r > cap ? (int)(cap / 8 * 8) : (int)r;
    }
    if (rows > N) rows = N;
    m->head_rows = rows;
    KL_TRY(kl_alloc(m->mem, &p, (size_t)rows * s->V * sizeof(kl_bf16), KL_MEM_WORKSPACE, "LM head logits chunk"));
    m->head_buf = p;

    /* cuDNN's attention backward wants a dP workspace of ~2*B*NH*T^2 bytes; past 1/16 of the run's memory (a
     * long sequence on a small card) it is not worth it: the scratch is sized for the own kernels then, and the
     * backward falls back to them (it checks the workspace it is given) */
    m->attn_ws_bytes = kl_attention_workspace_bytes(m->attn, B, T, s->NH, s->NKV, s->HS);
    if (m->attn_ws_bytes > kl_devmem_capacity(m->mem) / 16)
        m->attn_ws_bytes = kl_attention_own_workspace_bytes(B, T, s->NH);
    size_t sc = max_sz(m->attn_ws_bytes, kl_rmsnorm_backward_scratch_bytes(N, s->C));
    if (s->qk_norm) sc = max_sz(sc, kl_qknorm_backward_scratch_bytes(N, s->NH, s->NKV, s->HS));
    sc = max_sz(sc, kl_sum_squares_scratch_bytes(m->bufs.n_elems));
    KL_TRY(kl_alloc(m->mem, &m->scratch, sc, KL_MEM_WORKSPACE, "scratch"));
    m->scratch_bytes = sc;
    m->bufs.scratch = m->scratch;
    m->bufs.scratch_bytes = sc;
    m->B = B;
    m->T = T;
    return KL_OK;
}

static kl_status ensure_batch(kl_model_cuda *m, int N, int n_micro) {
    if (m->batch_N == N && m->cap_micro >= n_micro) return KL_OK;
    KL_TRY(kl_cuda_stream_sync(m->stream));
    kl_free(m->mem, m->batch_dev);
    kl_free(m->mem, m->batch_host);
    kl_free(m->mem, m->losses);
    m->batch_dev = m->batch_host = NULL;
    m->losses = NULL;
    m->cap_micro = m->batch_N = 0;
    m->staged_pending = 0;
    m->have_forward = 0;
    m->staged_micro = 0;
    free(m->n_unique);
    m->n_unique = kl_calloc((size_t)n_micro, sizeof(int), "embedding plan sizes");
    if (!m->n_unique) return KL_ERR_OOM;
    m->plan_elems = kl_embedding_plan_elems(N);
    const size_t ints = (size_t)n_micro * (2 * (size_t)N + m->plan_elems);
    void *p;
    KL_TRY(kl_alloc(m->mem, &p, ints * sizeof(int32_t), KL_MEM_OTHER, "token batches"));
    m->batch_dev = p;
    KL_TRY(kl_alloc_pinned(m->mem, &p, ints * sizeof(int32_t), KL_MEM_OTHER, "token batches (staging)"));
    m->batch_host = p;
    KL_TRY(kl_alloc(m->mem, &p, (size_t)n_micro * N * sizeof(float), KL_MEM_OTHER, "per-position losses"));
    m->losses = p;
    m->cap_micro = n_micro;
    m->batch_N = N;
    return KL_OK;
}

kl_status kl_model_cuda_reserve(kl_model_cuda *m, int B, int T, int n_micro) {
    if (n_micro <= 0) return kl_error(KL_ERR_INVALID, "GPU model: expected at least one micro-batch, got %d", n_micro);
    KL_TRY(ensure_acts(m, B, T));
    return ensure_batch(m, B * T, n_micro);
}

/* Regions of the batch buffers (host or device base). */
static int32_t *tokens_at(const kl_model_cuda *m, int32_t *base, int a) { return base + (size_t)a * m->batch_N; }
static int32_t *targets_at(const kl_model_cuda *m, int32_t *base, int a) {
    return base + (size_t)m->cap_micro * m->batch_N + (size_t)a * m->batch_N;
}
static int32_t *plan_at(const kl_model_cuda *m, int32_t *base, int a) {
    return base + 2 * (size_t)m->cap_micro * m->batch_N + (size_t)a * m->plan_elems;
}

/* Copies n_micro micro-batches of tokens (with their embedding plans) and/or targets into the staging
 * buffer and queues their upload; host-side validation first (the device never sees a bad index). The
 * upload runs after everything already queued on the stream, so work in flight still reads the previous
 * batch. *n_valid (may be NULL): the targets that are not KL_IGNORE_INDEX. */
static kl_status stage_batch(kl_model_cuda *m, const int32_t *inputs, const int32_t *targets, int n_micro,
                             int64_t *n_valid) {
    const int N = m->batch_N, V = m->s.V;
    m->staged_micro = 0; /* whatever happens below, the buffers no longer hold what kl_model_cuda_stage put there */
    int64_t valid = 0;
    for (size_t i = 0; targets && i < (size_t)n_micro * N; i++) {
        if (targets[i] == KL_IGNORE_INDEX) continue;
        if (targets[i] < 0 || targets[i] >= V)
            return kl_error(KL_ERR_INVALID, "target token %d at position %zu is outside the vocabulary [0, %d)",
                            targets[i], i, V);
        valid++;
    }
    if (n_valid) *n_valid = valid;
    if (m->staged_pending) { /* the previous upload must have left the staging buffer (normally long done) */
        KL_TRY(kl_cuda_event_sync(m->staged));
        m->staged_pending = 0;
    }
    if (inputs) {
        for (int a = 0; a < n_micro; a++) {
            const int32_t *in = inputs + (size_t)a * N;
            kl_status st = kl_embedding_backward_plan(plan_at(m, m->batch_host, a), &m->n_unique[a], in, N, V);
            if (st != KL_OK) return st;
            memcpy(tokens_at(m, m->batch_host, a), in, (size_t)N * sizeof(int32_t));
        }
        KL_TRY(kl_cuda_h2d_async(tokens_at(m, m->batch_dev, 0), tokens_at(m, m->batch_host, 0),
                                 (size_t)n_micro * N * sizeof(int32_t), m->stream));
        KL_TRY(kl_cuda_h2d_async(plan_at(m, m->batch_dev, 0), plan_at(m, m->batch_host, 0),
                                 (size_t)n_micro * m->plan_elems * sizeof(int32_t), m->stream));
    }
    if (targets) {
        memcpy(targets_at(m, m->batch_host, 0), targets, (size_t)n_micro * N * sizeof(int32_t));
        KL_TRY(kl_cuda_h2d_async(targets_at(m, m->batch_dev, 0), targets_at(m, m->batch_host, 0),
                                 (size_t)n_micro * N * sizeof(int32_t), m->stream));
    }
    KL_TRY(kl_cuda_event_record(m->staged, m->stream));
    m->staged_pending = 1;
    return KL_OK;
}

/* ---- forward --------------------------------------------------------------------------------- */

/* One block's forward: res2 = res + attn(rope(norm(res)·Wqkv))·Wo (ln1 = norm(res) is already there), then
 * out = res2 + swiglu(ln2·Wgu)·Wdown fused with the next norm (the next block's or the final one). */
static kl_status forward_block(kl_model_cuda *m, int l) {
    const kl_model_shape *s = &m->s;
    const int B = m->B, T = m->T, N = B * T, C = s->C, Q = qkv_dim(s), A = s->NH * s->HS, F = s->F;
    const float eps = s->norm_eps;
    struct CUstream_st *st = m->stream;
    const block_w *w = &m->bw[l];
    layer_acts *a = &m->acts[l];
    if (s->qk_norm) {
        KL_TRY(kl_matmul_forward_cuda(m->gemm, a->qkv_raw, a->ln1, w->wqkv, w->bqkv, N, C, Q, st));
        KL_TRY(kl_qknorm_forward_cuda(a->qkv, a->qk_rstd, a->qkv_raw, w->q_norm, w->k_norm, N, s->NH, s->NKV, s->HS,
                                      eps, st));
    } else {
        KL_TRY(kl_matmul_forward_cuda(m->gemm, a->qkv, a->ln1, w->wqkv, w->bqkv, N, C, Q, st));
    }
    KL_TRY(kl_rope_forward_cuda(a->qkv, m->rope_cos, m->rope_sin, B, T, s->NH, s->NKV, s->HS, st));
    KL_TRY(kl_attention_forward_cuda(m->attn, a->att, a->lse, a->qkv, B, T, s->NH, s->NKV, s->HS, m->scratch,
                                     m->scratch_bytes, st));
    KL_TRY(kl_matmul_forward_cuda(m->gemm, m->proj, a->att, w->wo, NULL, N, A, C, st));
    KL_TRY(kl_fused_residual_rmsnorm_forward_cuda(a->res2, a->ln2, a->rstd2, m->proj, a->res, w->mlp_norm, N, C, eps,
                                                  st));
    if (m->fused_swiglu) {
        KL_TRY(kl_gemm_sm90_swiglu_cuda(a->gu, a->sw, a->ln2, w->wgu, N, F, C, st));
    } else {
        KL_TRY(kl_matmul_forward_cuda(m->gemm, a->gu, a->ln2, w->wgu, NULL, N, C, 2 * F, st));
        KL_TRY(kl_swiglu_forward_cuda(a->sw, a->gu, N, F, st));
    }
    KL_TRY(kl_matmul_forward_cuda(m->gemm, m->proj, a->sw, w->wdown, NULL, N, F, C, st));
    const int last = l + 1 == s->L;
    kl_bf16 *next_res = last ? m->res_final : m->acts[l + 1].res;
    kl_bf16 *next_ln = last ? m->lnf : m->acts[l + 1].ln1;
    float *next_rstd = last ? m->rstdf : m->acts[l + 1].rstd1;
    const kl_bf16 *next_w = last ? m->final_norm : m->bw[l + 1].attn_norm;
    return kl_fused_residual_rmsnorm_forward_cuda(next_res, next_ln, next_rstd, m->proj, a->res2, next_w, N, C, eps,
                                                  st);
}

static kl_status block_backward(kl_model_cuda *m, int l);

/* Runs block l's forward or backward body: replays its CUDA graph, capturing it on first use. The bodies
 * touch only buffers fixed for the current (B, T) (weights, layer activations, shared gradient and scratch
 * buffers), so a graph stays valid until ensure_acts reallocates them. A capture that fails (a library call
 * that cannot be captured) turns graphs off for this model, with the reason in graph_note, and the body runs
 * eagerly. */
static kl_status run_block(kl_model_cuda *m, int l, int backward) {
    kl_status (*body)(kl_model_cuda *, int) = backward ? block_backward : forward_block;
    kl_cuda_graph **g = backward ? &m->bwd_graph[l] : &m->fwd_graph[l];
    if (m->o.no_graphs || m->graphs_off) return body(m, l);
    if (!*g) {
        KL_TRY(kl_cuda_capture_begin(m->stream));
        kl_status st = body(m, l);
        if (st != KL_OK) {
            snprintf(m->graph_note, sizeof m->graph_note, "%s", kl_last_error());
            kl_cuda_capture_end(m->stream, NULL); /* drop the partial capture */
        } else if ((st = kl_cuda_capture_end(m->stream, g)) != KL_OK) {
            snprintf(m->graph_note, sizeof m->graph_note, "%s", kl_last_error());
        }
        if (st != KL_OK) { /* run eagerly from now on; a real error shows again there */
            kl_clear_error();
            drop_graphs(m);
            m->graphs_off = 1;
            return body(m, l);
        }
    }
    return kl_cuda_graph_launch(*g, m->stream);
}

int kl_model_cuda_graphs(const kl_model_cuda *m, const char **why) {
    int n = 0;
    for (int l = 0; l < m->s.L && m->fwd_graph; l++) n += (m->fwd_graph[l] != NULL) + (m->bwd_graph[l] != NULL);
    if (why) *why = m->graph_note;
    return n;
}
int kl_model_cuda_fused_swiglu(const kl_model_cuda *m) { return m->fused_swiglu; }

static kl_status forward_dev(kl_model_cuda *m, int slot) {
    const kl_model_shape *s = &m->s;
    const int N = m->B * m->T;
    KL_TRY(kl_embedding_forward_cuda(m->acts[0].res, tokens_at(m, m->batch_dev, slot), m->wte, N, s->V, s->C,
                                     m->stream));
    KL_TRY(kl_rmsnorm_forward_cuda(m->acts[0].ln1, m->acts[0].rstd1, m->acts[0].res, m->bw[0].attn_norm, N, s->C,
                                   s->norm_eps, m->stream));
    for (int l = 0; l < s->L; l++) KL_TRY(run_block(m, l, 0));
    m->have_forward = 1;
    return KL_OK;
}

/* ---- loss and backward ----------------------------------------------------------------------- */

/* The LM head chunk by chunk: logits, loss per position (and the logit gradient in place), and with
 * backward the head's weight gradient and d(lnf) into dln. */
static kl_status head_dev(kl_model_cuda *m, int slot, float z_loss, int backward, float grad_scale) {
    const kl_model_shape *s = &m->s;
    const int N = m->B * m->T, C = s->C, V = s->V;
    float *dhead = m->g_lm_head;
    const int32_t *tg = targets_at(m, m->batch_dev, slot);
    float *losses = m->losses + (size_t)slot * N;
    for (int r0 = 0; r0 < N; r0 += m->head_rows) {
        const int rows = N - r0 < m->head_rows ? N - r0 : m->head_rows;
        const kl_bf16 *x = m->lnf + (size_t)r0 * C;
        KL_TRY(kl_matmul_forward_cuda(m->gemm, m->head_buf, x, m->lm_head, NULL, rows, C, V, m->stream));
        KL_TRY(kl_cross_entropy_cuda(backward ? m->head_buf : NULL, losses + r0, m->head_buf, tg + r0, rows, V, z_loss,
                                     grad_scale, m->stream));
        if (backward)
            KL_TRY(kl_matmul_backward_cuda(m->gemm, m->dln + (size_t)r0 * C, dhead, NULL, m->head_buf, x, m->lm_head,
                                           rows, C, V, m->stream));
    }
    return KL_OK;
}

static kl_status block_backward(kl_model_cuda *m, int l) {
    const kl_model_shape *s = &m->s;
    const int B = m->B, T = m->T, N = B * T, C = s->C, Q = qkv_dim(s), A = s->NH * s->HS, F = s->F;
    const block_w *w = &m->bw[l];
    const block_g *g = &m->bg[l];
    layer_acts *a = &m->acts[l];
    struct CUstream_st *st = m->stream;
    /* MLP: in dres = d(block output); dres accumulates d(res2) through the norm's backward (dx +=) */
    if (m->fused_swiglu) { /* d(sw) stays in the GEMM: its dinp product writes dgu */
        KL_TRY(kl_transpose_bf16_cuda(m->dsw, w->wdown, C, F, st));
        KL_TRY(kl_gemm_sm90_swiglu_backward_cuda(m->dgu, a->gu, m->dres, m->dsw, N, F, C, st));
        KL_TRY(kl_matmul_backward_cuda(m->gemm, NULL, g->wdown, NULL, m->dres, a->sw, w->wdown, N, F, C, st));
    } else {
        KL_TRY(kl_matmul_backward_cuda(m->gemm, m->dsw, g->wdown, NULL, m->dres, a->sw, w->wdown, N, F, C, st));
        KL_TRY(kl_swiglu_backward_cuda(m->dgu, m->dsw, a->gu, N, F, st));
    }
    KL_TRY(kl_matmul_backward_cuda(m->gemm, m->dln, g->wgu, NULL, m->dgu, a->ln2, w->wgu, N, C, 2 * F, st));
    KL_TRY(kl_rmsnorm_backward_cuda(m->dres, g->mlp_norm, m->dln, a->res2, w->mlp_norm, a->rstd2, N, C, m->scratch,
                                    st));
    /* attention: dres now d(res2); out d(res) */
    KL_TRY(kl_matmul_backward_cuda(m->gemm, m->datt, g->wo, NULL, m->dres, a->att, w->wo, N, A, C, st));
    KL_TRY(kl_attention_backward_cuda(m->attn, m->dqkv, m->datt, a->att, a->lse, a->qkv, B, T, s->NH, s->NKV, s->HS,
                                      m->scratch, m->scratch_bytes, st));
    KL_TRY(kl_rope_backward_cuda(m->dqkv, m->rope_cos, m->rope_sin, B, T, s->NH, s->NKV, s->HS, st));
    if (s->qk_norm) /* in place: d(qkv after norm) -> d(qkv_raw) */
        KL_TRY(kl_qknorm_backward_cuda(m->dqkv, g->q_norm, g->k_norm, m->dqkv, a->qkv_raw, w->q_norm, w->k_norm,
                                       a->qk_rstd, N, s->NH, s->NKV, s->HS, m->scratch, st));
    KL_TRY(kl_matmul_backward_cuda(m->gemm, m->dln, g->wqkv, g->bqkv, m->dqkv, a->ln1, w->wqkv, N, C, Q, st));
    KL_TRY(kl_rmsnorm_backward_cuda(m->dres, g->attn_norm, m->dln, a->res, w->attn_norm, a->rstd1, N, C, m->scratch,
                                    st));
    return KL_OK;
}

/* After head_dev with backward: the final norm, the blocks from last to first, the embedding. */
static kl_status backward_dev(kl_model_cuda *m, int slot) {
    const kl_model_shape *s = &m->s;
    const int N = m->B * m->T, C = s->C;
    KL_TRY(kl_cuda_memset_async(m->dres, 0, (size_t)N * C * sizeof(kl_bf16), m->stream));
    KL_TRY(kl_rmsnorm_backward_cuda(m->dres, m->g_final_norm, m->dln, m->res_final, m->final_norm, m->rstdf, N, C,
                                    m->scratch, m->stream));
    for (int l = s->L - 1; l >= 0; l--) KL_TRY(run_block(m, l, 1));
    return kl_embedding_backward_cuda(m->g_wte, m->dres, plan_at(m, m->batch_dev, slot), m->n_unique[slot], N, C,
                                      m->stream);
}

/* ---- public entry points --------------------------------------------------------------------- */

kl_status kl_model_cuda_forward(kl_model_cuda *m, const int32_t *inputs, int B, int T) {
    KL_TRY(ensure_acts(m, B, T));
    if (m->batch_N != B * T) KL_TRY(ensure_batch(m, B * T, 1));
    m->have_forward = 0;
    KL_TRY(stage_batch(m, inputs, NULL, 1, NULL));
    return forward_dev(m, 0);
}

kl_status kl_model_cuda_loss(kl_model_cuda *m, const int32_t *targets, float z_loss, int backward, float grad_scale,
                             double *loss_sum, int64_t *n_valid) {
    if (!m->have_forward) return kl_error(KL_ERR_INVALID, "kl_model_cuda_loss called before kl_model_cuda_forward");
    const int N = m->B * m->T;
    KL_TRY(stage_batch(m, NULL, targets, 1, NULL));
    KL_TRY(head_dev(m, 0, z_loss, backward, grad_scale));
    if (backward) KL_TRY(backward_dev(m, 0));
    KL_TRY(kl_cross_entropy_loss_sum_cuda(m->bufs.loss_sum, m->losses, targets_at(m, m->batch_dev, 0), N, m->stream));
    KL_TRY(kl_cuda_d2h_async(m->result_host, m->bufs.loss_sum, sizeof(double), m->stream));
    KL_TRY(kl_cuda_stream_sync(m->stream));
    int64_t valid = 0;
    for (int i = 0; i < N; i++) valid += targets[i] != KL_IGNORE_INDEX;
    *loss_sum = m->result_host[0];
    *n_valid = valid;
    return KL_OK;
}

/* ---- GEMM algorithm tuning ------------------------------------------------------------------- */

kl_status kl_model_cuda_tune(kl_model_cuda *m, int B, int T, const char *file, char *msg, size_t msg_size) {
    msg[0] = '\0';
    char load_err[512] = "";
    if (file && file[0] && kl_gemm_ctx_load_tuning(m->gemm, file, NULL) != KL_OK) {
        snprintf(load_err, sizeof load_err, "%s", kl_last_error());
        kl_clear_error();
    }
    const size_t N = (size_t)B * T;
    int32_t *tok = kl_malloc(2 * N * sizeof *tok, "GEMM tuning batch");
    if (!tok) return KL_ERR_OOM;
    for (size_t i = 0; i < 2 * N; i++) tok[i] = (int32_t)((i * 2654435761u) % (uint32_t)m->s.V);
    const kl_gemm_stats before = kl_gemm_ctx_stats(m->gemm);
    const double t0 = kl_now_seconds();
    /* one forward and backward, eagerly (nothing is timed while a graph is captured); its gradients are noise
     * from the repeated timing runs and are zeroed after */
    const int no_graphs = m->o.no_graphs;
    m->o.no_graphs = 1;
    kl_gemm_ctx_set_timing(m->gemm, 1);
    double loss = 0;
    int64_t valid = 0;
    kl_status st = kl_model_cuda_forward(m, tok, B, T);
    if (st == KL_OK) st = kl_model_cuda_loss(m, tok + N, 0.f, 1, 1.0f / (float)N, &loss, &valid);
    kl_gemm_ctx_set_timing(m->gemm, 0);
    m->o.no_graphs = no_graphs;
    free(tok);
    if (st == KL_OK) st = kl_model_cuda_zero_grads(m);
    if (st == KL_OK) st = kl_cuda_stream_sync(m->stream);
    KL_TRY(st);
    const kl_gemm_stats after = kl_gemm_ctx_stats(m->gemm);
    const int timed = (int)(after.timed_shapes - before.timed_shapes);
    const int remembered = (int)(after.remembered_shapes - before.remembered_shapes);
    size_t len = (size_t)snprintf(msg, msg_size, "GEMM algorithms: %d remembered", remembered);
    if (remembered > 0 && len < msg_size) len += (size_t)snprintf(msg + len, msg_size - len, " from %s", file);
    if (timed > 0 && len < msg_size)
        len += (size_t)snprintf(msg + len, msg_size - len, ", %d timed (%.1f s)", timed, kl_now_seconds() - t0);
    const int sm90 = (int)(after.sm90_shapes - before.sm90_shapes);
    if (sm90 > 0 && len < msg_size)
        len += (size_t)snprintf(msg + len, msg_size - len, ", %d on kiln's sm90 GEMM", sm90);
    if (m->fused_swiglu && len < msg_size)
        len += (size_t)snprintf(msg + len, msg_size - len,
                                ", the SwiGLU forward and backward fused into the MLP products on kiln's sm90 GEMM");
    if (len >= msg_size) return KL_OK;
    if (load_err[0]) /* a file that does not parse is not overwritten: it may not be a tuning file at all */
        snprintf(msg + len, msg_size - len, "; not saved, %s", load_err);
    else if (timed > 0 && file && file[0] && kl_gemm_ctx_save_tuning(m->gemm, file) == KL_OK)
        snprintf(msg + len, msg_size - len, ", saved to %s", file);
    else if (timed > 0 && file && file[0]) {
        snprintf(msg + len, msg_size - len, "; not saved: %s", kl_last_error());
        kl_clear_error();
    }
    return KL_OK;
}

kl_status kl_model_cuda_logits(kl_model_cuda *m, int row0, int rows, float *logits) {
    const int N = m->B * m->T, C = m->s.C, V = m->s.V;
    if (!m->have_forward || row0 < 0 || rows < 0 || row0 + rows > N)
        return kl_error(KL_ERR_INVALID, "GPU logits: rows [%d, %d) outside the last forward's %d rows", row0,
                        row0 + rows, m->have_forward ? N : 0);
    kl_bf16 *tmp = kl_malloc((size_t)m->head_rows * V * sizeof(kl_bf16), "logits read-back");
    if (!tmp) return KL_ERR_OOM;
    kl_status st = KL_OK;
    for (int r = 0; r < rows && st == KL_OK; r += m->head_rows) {
        const int k = rows - r < m->head_rows ? rows - r : m->head_rows;
        st = kl_matmul_forward_cuda(m->gemm, m->head_buf, m->lnf + (size_t)(row0 + r) * C, m->lm_head, NULL, k, C, V,
                                    m->stream);
        if (st == KL_OK) st = kl_cuda_d2h_async(tmp, m->head_buf, (size_t)k * V * sizeof(kl_bf16), m->stream);
        if (st == KL_OK) st = kl_cuda_stream_sync(m->stream);
        for (size_t i = 0; st == KL_OK && i < (size_t)k * V; i++)
            logits[(size_t)r * V + i] = kl_bf16_to_f32(tmp[i]);
    }
    free(tmp);
    return st;
}

kl_status kl_model_cuda_stage(kl_model_cuda *m, const int32_t *inputs, const int32_t *targets, int n_micro, int B,
                              int T) {
    KL_TRY(kl_model_cuda_reserve(m, B, T, n_micro)); /* any reallocation happens here, before the batch is in */
    m->have_forward = 0;
    int64_t valid = 0;
    KL_TRY(stage_batch(m, inputs, targets, n_micro, &valid));
    m->staged_micro = n_micro;
    m->staged_valid = valid;
    return KL_OK;
}

int kl_model_cuda_staged_holds(const kl_model_cuda *m, const int32_t *inputs, const int32_t *targets, int n_micro,
                               int B, int T, int64_t *n_valid) {
    if (m->staged_micro == 0 || m->staged_micro != n_micro || m->B != B || m->T != T) return 0;
    /* the pinned staging buffer holds exactly what was uploaded (it is rewritten only by the next staging) */
    const size_t bytes = (size_t)n_micro * B * T * sizeof(int32_t);
    if (memcmp(tokens_at(m, m->batch_host, 0), inputs, bytes) != 0) return 0;
    if (memcmp(targets_at(m, m->batch_host, 0), targets, bytes) != 0) return 0;
    if (n_valid) *n_valid = m->staged_valid;
    return 1;
}

kl_status kl_model_cuda_accumulate_staged(kl_model_cuda *m, int n_micro, int B, int T, float z_loss,
                                          float grad_scale) {
    if (m->staged_micro == 0)
        return kl_error(KL_ERR_INVALID, "GPU model: accumulate_staged of %d micro-batches of (%d, %d), but no batch is "
                        "staged (none was, or a forward, loss or reallocation has replaced it since)", n_micro, B, T);
    if (m->staged_micro != n_micro || m->B != B || m->T != T)
        return kl_error(KL_ERR_INVALID, "GPU model: accumulate_staged of %d micro-batches of (%d, %d), but the staged "
                        "batch is %d micro-batches of (%d, %d)", n_micro, B, T, m->staged_micro, m->B, m->T);
    const int N = B * T;
    m->have_forward = 0;
    KL_TRY(kl_model_cuda_zero_grads(m));
    for (int a = 0; a < n_micro; a++) {
        KL_TRY(forward_dev(m, a));
        KL_TRY(head_dev(m, a, z_loss, 1, grad_scale));
        KL_TRY(backward_dev(m, a));
    }
    /* one fixed-order FP64 sum over every micro-batch's positions (targets are contiguous across slots) */
    return kl_cross_entropy_loss_sum_cuda(m->bufs.loss_sum, m->losses, targets_at(m, m->batch_dev, 0), n_micro * N,
                                          m->stream);
}

kl_status kl_model_cuda_accumulate(kl_model_cuda *m, const int32_t *inputs, const int32_t *targets, int n_micro,
                                   int B, int T, float z_loss, float grad_scale) {
    KL_TRY(kl_model_cuda_stage(m, inputs, targets, n_micro, B, T));
    return kl_model_cuda_accumulate_staged(m, n_micro, B, T, z_loss, grad_scale);
}

#else /* !KILN_HAVE_CUDA */

static kl_status no_cuda(void) {
    return kl_error(KL_ERR_UNSUPPORTED, "the GPU model needs a build with CUDA (this kiln was built without it)");
}
kl_status kl_model_cuda_create(kl_model_cuda **out, kl_model *cpu, const kl_model_cuda_opts *opts) {
    (void)cpu, (void)opts;
    *out = NULL;
    return no_cuda();
}
void kl_model_cuda_free(kl_model_cuda *m) { (void)m; }
const kl_model_shape *kl_model_cuda_shape(const kl_model_cuda *m) {
    (void)m;
    return NULL;
}
const kl_model_cuda_bufs *kl_model_cuda_buffers(kl_model_cuda *m) {
    (void)m;
    return NULL;
}
size_t kl_model_cuda_param_offset(const kl_model_cuda *m, int tensor) {
    (void)m, (void)tensor;
    return 0;
}
kl_status kl_model_cuda_upload(kl_model_cuda *m, kl_model *cpu) {
    (void)m, (void)cpu;
    return no_cuda();
}
kl_status kl_model_cuda_download(kl_model_cuda *m, kl_model *cpu) {
    (void)m, (void)cpu;
    return no_cuda();
}
kl_status kl_model_cuda_download_grads(kl_model_cuda *m, float *grads) {
    (void)m, (void)grads;
    return no_cuda();
}
kl_status kl_model_cuda_zero_grads(kl_model_cuda *m) {
    (void)m;
    return no_cuda();
}
kl_status kl_model_cuda_reserve(kl_model_cuda *m, int B, int T, int n_micro) {
    (void)m, (void)B, (void)T, (void)n_micro;
    return no_cuda();
}
kl_status kl_model_cuda_forward(kl_model_cuda *m, const int32_t *inputs, int B, int T) {
    (void)m, (void)inputs, (void)B, (void)T;
    return no_cuda();
}
kl_status kl_model_cuda_loss(kl_model_cuda *m, const int32_t *targets, float z_loss, int backward, float grad_scale,
                             double *loss_sum, int64_t *n_valid) {
    (void)m, (void)targets, (void)z_loss, (void)backward, (void)grad_scale, (void)loss_sum, (void)n_valid;
    return no_cuda();
}
kl_status kl_model_cuda_logits(kl_model_cuda *m, int row0, int rows, float *logits) {
    (void)m, (void)row0, (void)rows, (void)logits;
    return no_cuda();
}
kl_status kl_model_cuda_tune(kl_model_cuda *m, int B, int T, const char *file, char *msg, size_t msg_size) {
    (void)m, (void)B, (void)T, (void)file;
    if (msg_size) msg[0] = '\0';
    return no_cuda();
}
kl_status kl_model_cuda_stage(kl_model_cuda *m, const int32_t *inputs, const int32_t *targets, int n_micro, int B,
                              int T) {
    (void)m, (void)inputs, (void)targets, (void)n_micro, (void)B, (void)T;
    return no_cuda();
}
int kl_model_cuda_staged_holds(const kl_model_cuda *m, const int32_t *inputs, const int32_t *targets, int n_micro,
                               int B, int T, int64_t *n_valid) {
    (void)m, (void)inputs, (void)targets, (void)n_micro, (void)B, (void)T, (void)n_valid;
    return 0;
}
kl_status kl_model_cuda_accumulate_staged(kl_model_cuda *m, int n_micro, int B, int T, float z_loss,
                                          float grad_scale) {
    (void)m, (void)n_micro, (void)B, (void)T, (void)z_loss, (void)grad_scale;
    return no_cuda();
}
kl_status kl_model_cuda_accumulate(kl_model_cuda *m, const int32_t *inputs, const int32_t *targets, int n_micro,
                                   int B, int T, float z_loss, float grad_scale) {
    (void)m, (void)inputs, (void)targets, (void)n_micro, (void)B, (void)T, (void)z_loss, (void)grad_scale;
    return no_cuda();
}

kl_status kl_model_cuda_to_host_layout(kl_model_cuda *m, float *host, const float *dev) {
    (void)m, (void)host, (void)dev;
    return no_cuda();
}
kl_status kl_model_cuda_from_host_layout(kl_model_cuda *m, float *dev, const float *host) {
    (void)m, (void)dev, (void)host;
    return no_cuda();
}
size_t kl_model_cuda_num_params(const kl_model_cuda *m) {
    (void)m;
    return 0;
}
int kl_model_cuda_graphs(const kl_model_cuda *m, const char **why) {
    (void)m;
    if (why) *why = "built without CUDA";
    return 0;
}
int kl_model_cuda_fused_swiglu(const kl_model_cuda *m) {
    (void)m;
    return 0;
}

#endif
