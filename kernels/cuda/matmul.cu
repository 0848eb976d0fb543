// matmul.cu — the linear layer in BF16 on the GPU (kernels/matmul_cuda.h): cuBLASLt products with a per-context
// cache of descriptors, layouts and algorithms (the heuristic's first choice, or the fastest of its candidates
// when timed, remembered in a tuning file); kiln's own Hopper GEMM (gemm_sm90_cuda.h) as one more candidate
// for the forward product when timed; a small own tiled kernel for shapes cuBLASLt declines (and for tests); the
// deterministic two-pass dbias column sum. Row-major kiln tensors are handed to the column-major BLAS as their
// transposes, so forward is the "TN" product out^T = w . inp^T.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_check.cuh"
#include "gemm_sm90_cuda.h"
#include "matmul_cuda.h"

#define KL_GEMM_CACHE_SIZE 128
#define KL_GEMM_CANDIDATES 8  // the heuristic's candidates a plan keeps for timing (cuBLAS 13 offers up to 8)
#define KL_GEMM_TUNED_MAX 256 // remembered choices
#define KL_GEMM_RANK_SM90 KL_GEMM_CANDIDATES  // the rank that names kiln's own Hopper GEMM in a tuning file

// Everything a cached plan depends on. All int32 so that memcmp compares no padding.
struct gemm_key {
    int32_t transa, transb, m, n, k, lda, ldb, ldd;
    int32_t d_f32, has_bias, beta_nonzero;
    int32_t align_a, align_b, align_d, align_bias;  // bytes, powers of two capped at 256
};

struct gemm_plan {
    gemm_key key;
    int used;
    int use_fallback;  // cuBLASLt offered no algorithm: the own kernel runs this shape
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
    cublasLtMatmulAlgo_t cand[KL_GEMM_CANDIDATES];  // the heuristic's valid candidates, best guess first
    int n_cand;
    int sm90_ok;         // kiln's own Hopper GEMM can run this key (sm90_fits), as candidate rank n_cand
    int use_sm90;        // ... and runs it (alpha == 1 calls; others take `algo`, the heuristic's first choice)
    int timing_pending;  // to be timed on its first run (the context was timing when the plan was built)
};

// A remembered choice: the rank, among the heuristic's valid candidates, of the algorithm to run for `key`, or
// KL_GEMM_RANK_SM90 for kiln's own Hopper GEMM.
struct tuned_choice {
    gemm_key key;
    int32_t rank;
};

struct kl_gemm_ctx {
    cublasLtHandle_t lt;
    void *ws;
    size_t ws_bytes;
    int force_fallback;
    int sm90;             // kl_gemm_sm90_available() unless KILN_GEMM_SM90=0, probed at creation (not while a
                          // stream is captured)
    int timing;           // kl_gemm_ctx_set_timing: plans built now time their candidates on their first run
    int next_evict;
    kl_gemm_stats stats;
    char device_sig[192]; // the GPU, cuBLASLt version and workspace the choices hold for (tuning files)
    int n_tuned;
    tuned_choice tuned[KL_GEMM_TUNED_MAX];
    gemm_plan cache[KL_GEMM_CACHE_SIZE];
};

// ---- the own fallback kernel ---------------------------------------------------------------------------------
// D(m,n) = alpha op(A) op(B) + beta D (+ bias(m)), column-major, 32x32 output tiles, 256 threads each computing a
// 2x2 patch, k in steps of 32 through shared memory. FP32 accumulation in k order: simple and deterministic.

__device__ __forceinline__ float ld_bf16(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st_out(float *p, float v) { *p = v; }
__device__ __forceinline__ void st_out(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ float ld_out(const float *p) { return *p; }
__device__ __forceinline__ float ld_out(const __nv_bfloat16 *p) { return __bfloat162float(*p); }

template <typename TD>
__global__ void gemm_fallback_kernel(int transa, int transb, int m, int n, int k, float alpha,
                                     const __nv_bfloat16 *A, int lda, const __nv_bfloat16 *B, int ldb, float beta,
                                     TD *D, int ldd, const __nv_bfloat16 *bias) {
    __shared__ float As[32][33];  // As[i][kk] = op(A)(m0+i, k0+kk)
    __shared__ float Bs[32][33];  // Bs[kk][j] = op(B)(k0+kk, n0+j)
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    const long m0 = (long)blockIdx.x * 32, n0 = (long)blockIdx.y * 32;
    float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
    for (int k0 = 0; k0 < k; k0 += 32) {
        for (int r = 0; r < 4; r++) {
            const int idx = tid + 256 * r, i = idx & 31, kk = idx >> 5;
            const long gi = m0 + i, gk = k0 + kk;
            float a = 0.f;
            if (gi < m && gk < k) a = ld_bf16(transa ? A + gk + gi * (long)lda : A + gi + gk * (long)lda);
            As[i][kk] = a;
            const long gj = n0 + i;  // reuse i as the column index for B
            float b = 0.f;
            if (gj < n && gk < k) b = ld_bf16(transb ? B + gj + gk * (long)ldb : B + gk + gj * (long)ldb);
            Bs[kk][i] = b;
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < 32; kk++) {
            const float a0 = As[tx][kk], a1 = As[tx + 16][kk];
            const float b0 = Bs[kk][ty], b1 = Bs[kk][ty + 16];
            acc[0][0] = fmaf(a0, b0, acc[0][0]);
            acc[0][1] = fmaf(a0, b1, acc[0][1]);
            acc[1][0] = fmaf(a1, b0, acc[1][0]);
            acc[1][1] = fmaf(a1, b1, acc[1][1]);
        }
        __syncthreads();
    }
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            const long gi = m0 + tx + 16 * a, gj = n0 + ty + 16 * b;
            if (gi >= m || gj >= n) continue;
            TD *d = D + gi + gj * (long)ldd;
            float v = alpha * acc[a][b];
            if (beta != 0.f) v += beta * ld_out(d);  // beta == 0 never reads D (it may hold garbage)
            if (bias) v += ld_bf16(bias + gi);
            st_out(d, v);
        }
}

static kl_status gemm_fallback(const gemm_key *key, float alpha, const void *A, const void *B, float beta, void *D,
                               const void *bias, cudaStream_t stream) {
    dim3 block(16, 16), grid((unsigned)((key->m + 31) / 32), (unsigned)((key->n + 31) / 32));
    if (grid.y > 65535u)
        return kl_error(KL_ERR_UNSUPPORTED, "matmul fallback: n = %d exceeds the kernel's grid limit", key->n);
    const __nv_bfloat16 *a = (const __nv_bfloat16 *)A, *b = (const __nv_bfloat16 *)B;
    if (key->d_f32)
        gemm_fallback_kernel<float><<<grid, block, 0, stream>>>(key->transa, key->transb, key->m, key->n, key->k, alpha,
                                                                a, key->lda, b, key->ldb, beta, (float *)D,
                                                                key->ldd, (const __nv_bfloat16 *)bias);
    else
        gemm_fallback_kernel<__nv_bfloat16><<<grid, block, 0, stream>>>(
            key->transa, key->transb, key->m, key->n, key->k, alpha, a, key->lda, b, key->ldb, beta,
            (__nv_bfloat16 *)D, key->ldd, (const __nv_bfloat16 *)bias);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

// ---- plans: descriptors, layouts, algorithm --------------------------------------------------------------------

static int32_t ptr_alignment(const void *p) {
    uintptr_t u = (uintptr_t)p;
    int32_t a = 1;
    while (a < 256 && (u & (uintptr_t)(2 * a - 1)) == 0) a *= 2;
    return a;
}

static void plan_release(gemm_plan *p) {
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->ld) cublasLtMatrixLayoutDestroy(p->ld);
    memset(p, 0, sizeof *p);
}

// Creates the matmul descriptor and the three layouts into p (p owns whatever was created, even on failure).
static kl_status plan_descriptors(const gemm_key *key, const void *bias, gemm_plan *p) {
    const cublasOperation_t ta = key->transa ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = key->transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    KL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    KL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    KL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (key->has_bias) {
        const cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
        const int32_t bias_type = CUDA_R_16BF;
        KL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
        KL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                       sizeof bias_type));
        // the heuristic reads the pointer's value to learn its alignment
        KL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }
    const uint64_t a_rows = (uint64_t)(key->transa ? key->k : key->m), a_cols = (uint64_t)(key->transa ? key->m : key->k);
    const uint64_t b_rows = (uint64_t)(key->transb ? key->n : key->k), b_cols = (uint64_t)(key->transb ? key->k : key->n);
    KL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, a_rows, a_cols, key->lda));
    KL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, b_rows, b_cols, key->ldb));
    KL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->ld, key->d_f32 ? CUDA_R_32F : CUDA_R_16BF, (uint64_t)key->m,
                                               (uint64_t)key->n, key->ldd));
    return KL_OK;
}

static tuned_choice *tuned_find(kl_gemm_ctx *ctx, const gemm_key *key) {
    for (int i = 0; i < ctx->n_tuned; i++)
        if (memcmp(&ctx->tuned[i].key, key, sizeof *key) == 0) return &ctx->tuned[i];
    return NULL;
}

// Whether kiln's own Hopper GEMM computes this key: the linear layer's forward out(n,m) = inp(n,k) w(m,k)^T with
// both operands and the output densely packed and 16-byte aligned, no bias, beta = 0, BF16 out, and a shape
// kl_gemm_sm90_fits takes (the kernel's contract, kernels/gemm_sm90_cuda.h).
static bool sm90_fits(const kl_gemm_ctx *ctx, const gemm_key *k) {
    return ctx->sm90 && k->transa && !k->transb && !k->d_f32 && !k->has_bias && !k->beta_nonzero &&
           kl_gemm_sm90_fits(k->m, k->k) && k->lda == k->k && k->ldb == k->k && k->ldd == k->m &&
           k->align_a >= 16 && k->align_b >= 16 && k->align_d >= 16;
}

// Runs candidate `rank` of the plan from now on: a cuBLASLt candidate, or the own Hopper GEMM.
static void plan_take(gemm_plan *p, int rank) {
    p->use_sm90 = rank == p->n_cand;
    p->algo = p->cand[p->use_sm90 ? 0 : rank];
}

// Asks the heuristic for its candidates that fit the workspace and the operands' alignments and takes the
// remembered choice for this key, else the first. No algorithm is not an error: the plan then routes the shape
// to the own kernel.
static kl_status plan_choose(kl_gemm_ctx *ctx, cublasLtMatmulPreference_t pref, gemm_plan *p) {
    const gemm_key *key = &p->key;
    const uint64_t ws = ctx->ws_bytes;
    const uint32_t al_a = (uint32_t)key->align_a, al_b = (uint32_t)key->align_b, al_d = (uint32_t)key->align_d;
    KL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    if (!key->d_f32) {
        // split-K partial sums must stay FP32: the in-place and output-type schemes would sum them in BF16
        const uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
        KL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes,
                                                             sizeof schemes));
    }
    KL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                                         sizeof al_a));
    KL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                                         sizeof al_b));
    KL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d,
                                                         sizeof al_d));
    KL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d,
                                                         sizeof al_d));
    cublasLtMatmulHeuristicResult_t res[KL_GEMM_CANDIDATES];
    int nres = 0;
    const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(ctx->lt, p->desc, p->la, p->lb, p->ld, p->ld, pref,
                                                              KL_GEMM_CANDIDATES, res, &nres);
    p->use_fallback = 1;
    if (hs != CUBLAS_STATUS_SUCCESS) return KL_OK;  // typically NOT_SUPPORTED for this shape/alignment
    for (int i = 0; i < nres; i++)
        if (res[i].state == CUBLAS_STATUS_SUCCESS && res[i].workspaceSize <= ctx->ws_bytes)
            p->cand[p->n_cand++] = res[i].algo;
    if (p->n_cand == 0) return KL_OK;
    p->use_fallback = 0;
    p->sm90_ok = sm90_fits(ctx, key);
    const tuned_choice *t = tuned_find(ctx, key);
    if (t && t->rank == KL_GEMM_RANK_SM90 && !p->sm90_ok) t = NULL;  // a build or switch without it: choose again
    plan_take(p, !t ? 0 : t->rank == KL_GEMM_RANK_SM90 ? p->n_cand : t->rank < p->n_cand ? t->rank : 0);
    if (t) ctx->stats.remembered_shapes++;
    if (p->use_sm90) ctx->stats.sm90_shapes++;
    p->timing_pending = ctx->timing && !t && p->n_cand + p->sm90_ok > 1;
    return KL_OK;
}

static kl_status plan_create_pref(cublasLtMatmulPreference_t *pref) {
    KL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(pref));
    return KL_OK;
}

static kl_status plan_build(kl_gemm_ctx *ctx, const gemm_key *key, const void *bias, gemm_plan *p) {
    memset(p, 0, sizeof *p);
    p->key = *key;
    kl_status s = plan_descriptors(key, bias, p);
    if (s == KL_OK) {
        cublasLtMatmulPreference_t pref = NULL;
        s = plan_create_pref(&pref);
        if (s == KL_OK) s = plan_choose(ctx, pref, p);
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
    }
    if (s != KL_OK) {
        plan_release(p);
        return kl_error_context(s, "matmul: building the cuBLASLt plan for m=%d n=%d k=%d", key->m, key->n, key->k);
    }
    p->used = 1;
    return KL_OK;
}

static void cache_clear(kl_gemm_ctx *ctx) {
    for (int i = 0; i < KL_GEMM_CACHE_SIZE; i++)
        if (ctx->cache[i].used) plan_release(&ctx->cache[i]);
    ctx->next_evict = 0;
}

// Finds or builds the plan for `key`. A full cache evicts round robin (a model has a few dozen shapes).
static kl_status cache_get(kl_gemm_ctx *ctx, const gemm_key *key, const void *bias, gemm_plan **out) {
    int free_slot = -1;
    for (int i = 0; i < KL_GEMM_CACHE_SIZE; i++) {
        if (!ctx->cache[i].used) {
            if (free_slot < 0) free_slot = i;
            continue;
        }
        if (memcmp(&ctx->cache[i].key, key, sizeof *key) == 0) {
            ctx->stats.cache_hits++;
            *out = &ctx->cache[i];
            return KL_OK;
        }
    }
    ctx->stats.cache_misses++;
    if (free_slot < 0) {
        free_slot = ctx->next_evict;
        ctx->next_evict = (ctx->next_evict + 1) % KL_GEMM_CACHE_SIZE;
        plan_release(&ctx->cache[free_slot]);
    }
    KL_TRY(plan_build(ctx, key, bias, &ctx->cache[free_slot]));
    *out = &ctx->cache[free_slot];
    return KL_OK;
}

// ---- context ---------------------------------------------------------------------------------------------------

// What a remembered choice holds for: the candidates' ranks depend on the GPU, the library and the workspace.
static void set_device_sig(kl_gemm_ctx *ctx) {
    int dev = 0, major = 0, minor = 0, sms = 0;
    cudaDeviceProp prop;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        cudaGetLastError();
        snprintf(prop.name, sizeof prop.name, "unknown GPU");
    }
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cudaGetLastError();
    /* GPU names are short ("NVIDIA H200"); the precision only bounds the field */
    snprintf(ctx->device_sig, sizeof ctx->device_sig, "%.96s, sm_%d%d, %d SMs, cuBLASLt %zu, workspace %zu", prop.name,
             major, minor, sms, cublasLtGetVersion(), ctx->ws_bytes);
    for (char *c = ctx->device_sig; *c; c++)
        if (*c == '\t' || *c == '\n') *c = ' ';
}

extern "C" kl_status kl_gemm_ctx_create(kl_gemm_ctx **out, void *workspace, size_t workspace_bytes) {
    *out = NULL;
    kl_gemm_ctx *ctx = (kl_gemm_ctx *)kl_calloc(1, sizeof *ctx, "GEMM context");
    if (!ctx) return KL_ERR_OOM;
    const cublasStatus_t cs = cublasLtCreate(&ctx->lt);
    if (cs != CUBLAS_STATUS_SUCCESS) {
        free(ctx);
        return kl_error(KL_ERR_INTERNAL, "creating the GEMM context: cublasLtCreate: %s", cublasGetStatusString(cs));
    }
    ctx->ws = workspace;
    ctx->ws_bytes = workspace ? workspace_bytes : 0;
    const char *sm90 = getenv("KILN_GEMM_SM90");  // "0": never consider the own Hopper GEMM (A/B, debugging)
    ctx->sm90 = !(sm90 && strcmp(sm90, "0") == 0) && kl_gemm_sm90_available();
    set_device_sig(ctx);
    *out = ctx;
    return KL_OK;
}

extern "C" void kl_gemm_ctx_destroy(kl_gemm_ctx *ctx) {
    if (!ctx) return;
    cache_clear(ctx);
    cublasLtDestroy(ctx->lt);
    free(ctx);
}

extern "C" kl_status kl_gemm_ctx_set_workspace(kl_gemm_ctx *ctx, void *workspace, size_t workspace_bytes) {
    cache_clear(ctx);
    ctx->ws = workspace;
    ctx->ws_bytes = workspace ? workspace_bytes : 0;
    set_device_sig(ctx);
    ctx->n_tuned = 0;  // the candidates depend on the workspace size
    return KL_OK;
}

extern "C" void kl_gemm_ctx_force_fallback(kl_gemm_ctx *ctx, int on) { ctx->force_fallback = on != 0; }

extern "C" kl_gemm_stats kl_gemm_ctx_stats(const kl_gemm_ctx *ctx) { return ctx->stats; }

// ---- tuning: the fastest of the heuristic's candidates, remembered -------------------------------------------

extern "C" void kl_gemm_ctx_set_timing(kl_gemm_ctx *ctx, int on) { ctx->timing = on != 0; }

static kl_status gemm_run(kl_gemm_ctx *ctx, gemm_plan *p, float alpha, const void *A, const void *B, float beta,
                          void *D, const void *bias, cudaStream_t st);

// Candidates are timed the way training runs them: back to back, long enough for the GPU to settle at its power
// limit. An H200 trains at its 700 W cap, where a product's speed follows its energy per product rather than its
// speed on a cool chip: on the 1.5B MLP products, the fastest candidate of a 10-call burst ran up to 5% slower
// than another when each ran for 0.6 s (docs/benchmarks.md, "Sustained GEMM tuning").
constexpr float kSettleMs = 20.f;  // untimed runs before each candidate's timed ones
constexpr float kTimedMs = 50.f;
constexpr int kMaxCalls = 1000;    // per phase: tiny products are timed on fewer calls (launch-bound anyway)

// Queues `calls` runs of the candidate in p->algo; with `ev`, times them (ms per call into *ms).
static kl_status run_timed(kl_gemm_ctx *ctx, gemm_plan *p, int calls, cudaEvent_t *ev, float *ms, float alpha,
                           const void *A, const void *B, float beta, void *D, const void *bias, cudaStream_t st) {
    if (ev && cudaEventRecord(ev[0], st) != cudaSuccess)
        return kl_error(KL_ERR_INTERNAL, "gemm tuning: %s", cudaGetErrorString(cudaGetLastError()));
    for (int r = 0; r < calls; r++) KL_TRY(gemm_run(ctx, p, alpha, A, B, beta, D, bias, st));
    if (!ev) return KL_OK;
    if (cudaEventRecord(ev[1], st) != cudaSuccess || cudaEventSynchronize(ev[1]) != cudaSuccess ||
        cudaEventElapsedTime(ms, ev[0], ev[1]) != cudaSuccess)
        return kl_error(KL_ERR_INTERNAL, "gemm tuning: timing m=%d n=%d k=%d: %s", p->key.m, p->key.n, p->key.k,
                        cudaGetErrorString(cudaGetLastError()));
    *ms /= (float)calls;
    return KL_OK;
}

// Times each candidate (the heuristic's, then the own Hopper GEMM where it fits) on the call's own operands and
// keeps the fastest, unless it beats the heuristic's first choice by less than 2%: within the noise the
// heuristic's choice stays. A first burst of two calls (one timed) sizes the sustained runs: kSettleMs untimed,
// then kTimedMs timed, in two rounds, the second in reverse order so that a drifting clock favours no position;
// each candidate's faster round counts. Writes D many times (and accumulates into it when beta != 0): the caller
// times only when the outputs are scratch. Skipped while the stream is being captured.
static kl_status time_candidates(kl_gemm_ctx *ctx, gemm_plan *p, float alpha, const void *A, const void *B,
                                 float beta, void *D, const void *bias, cudaStream_t st) {
    p->timing_pending = 0;
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    KL_CUDA_CHECK(cudaStreamIsCapturing(st, &cs));
    if (cs != cudaStreamCaptureStatusNone) return KL_OK;
    cudaEvent_t ev[2];
    KL_CUDA_CHECK(cudaEventCreate(&ev[0]));
    if (cudaEventCreate(&ev[1]) != cudaSuccess) {
        cudaEventDestroy(ev[0]);
        KL_CUDA_CHECK(cudaGetLastError());
    }
    float burst_ms[KL_GEMM_CANDIDATES + 1] = {}, best_ms[KL_GEMM_CANDIDATES + 1] = {};
    const int n = p->n_cand + p->sm90_ok;
    kl_status s = KL_OK;
    for (int c = 0; c < n && s == KL_OK; c++) {
        plan_take(p, c);
        s = run_timed(ctx, p, 1, nullptr, nullptr, alpha, A, B, beta, D, bias, st);
        if (s == KL_OK) s = run_timed(ctx, p, 1, ev, &burst_ms[c], alpha, A, B, beta, D, bias, st);
        burst_ms[c] = fmaxf(burst_ms[c], kTimedMs / kMaxCalls);
    }
    for (int round = 0; round < 2 && s == KL_OK; round++)
        for (int i = 0; i < n && s == KL_OK; i++) {
            const int c = round == 1 ? n - 1 - i : i;
            plan_take(p, c);
            const int settle = (int)(kSettleMs / burst_ms[c]) + 1, timed = (int)(kTimedMs / burst_ms[c]) + 2;
            float ms = 0.f;
            s = run_timed(ctx, p, settle, nullptr, nullptr, alpha, A, B, beta, D, bias, st);
            if (s == KL_OK) s = run_timed(ctx, p, timed, ev, &ms, alpha, A, B, beta, D, bias, st);
            if (s == KL_OK && (round == 0 || ms < best_ms[c])) best_ms[c] = ms;
        }
    cudaEventDestroy(ev[0]);
    cudaEventDestroy(ev[1]);
    KL_TRY(s);
    int best = 0;
    for (int c = 1; c < n; c++)
        if (best_ms[c] < best_ms[best]) best = c;
    if (best_ms[best] > 0.98f * best_ms[0]) best = 0;
    plan_take(p, best);
    ctx->stats.timed_shapes++;
    if (p->use_sm90) ctx->stats.sm90_shapes++;
    const tuned_choice c{p->key, p->use_sm90 ? KL_GEMM_RANK_SM90 : best};
    tuned_choice *old = tuned_find(ctx, &p->key);  // a choice plan_choose set aside
    if (old) *old = c;
    else if (ctx->n_tuned < KL_GEMM_TUNED_MAX) ctx->tuned[ctx->n_tuned++] = c;
    return KL_OK;
}

// Tuning files: a header line, then one line per choice: the device signature, a tab, the key's 15 fields, a tab,
// the rank (KL_GEMM_RANK_SM90 for the own Hopper GEMM). Lines of other devices, libraries or workspace sizes are
// kept as they are when the file is rewritten.
static const char kTuneHeader[] = "kiln gemm tuning v1";
enum { KEY_FIELDS = sizeof(gemm_key) / sizeof(int32_t) };

static bool parse_choice(char *line, char **sig, tuned_choice *c) {
    char *tab1 = strchr(line, '\t');
    if (!tab1) return false;
    char *tab2 = strchr(tab1 + 1, '\t');
    if (!tab2) return false;
    *tab1 = *tab2 = '\0';
    *sig = line;
    int32_t *f = (int32_t *)&c->key;
    char *q = tab1 + 1, *end;
    for (int i = 0; i < KEY_FIELDS; i++) {
        const long v = strtol(q, &end, 10);
        if (end == q || v < 0 || v > INT32_MAX) return false;
        f[i] = (int32_t)v;
        q = end;
    }
    while (*q == ' ') q++;
    if (*q) return false;
    const long r = strtol(tab2 + 1, &end, 10);
    while (*end == ' ' || *end == '\r' || *end == '\n') end++;
    if (end == tab2 + 1 || *end || r < 0 || r > KL_GEMM_RANK_SM90) return false;
    c->rank = (int32_t)r;
    return true;
}

extern "C" kl_status kl_gemm_ctx_load_tuning(kl_gemm_ctx *ctx, const char *path, int *n_loaded) {
    if (n_loaded) *n_loaded = 0;
    FILE *f = fopen(path, "r");
    if (!f) return KL_OK;  // nothing remembered yet
    char line[1024];
    int lineno = 0, n = 0;
    kl_status s = KL_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (lineno == 1) {
            if (strncmp(line, kTuneHeader, sizeof kTuneHeader - 1) != 0)
                s = kl_error(KL_ERR_INVALID, "%s:1: not a kiln GEMM tuning file (expected \"%s\")", path, kTuneHeader);
            if (s != KL_OK) break;
            continue;
        }
        char *sig;
        tuned_choice c;
        if (!parse_choice(line, &sig, &c)) {
            s = kl_error(KL_ERR_INVALID, "%s:%d: expected <device>\\t<%d key fields>\\t<rank 0-%d>", path, lineno,
                         (int)KEY_FIELDS, KL_GEMM_RANK_SM90);
            break;
        }
        if (strcmp(sig, ctx->device_sig) != 0 || tuned_find(ctx, &c.key) || ctx->n_tuned >= KL_GEMM_TUNED_MAX) continue;
        ctx->tuned[ctx->n_tuned++] = c;
        n++;
    }
    fclose(f);
    if (s != KL_OK) return s;
    cache_clear(ctx);  // cached plans pick the loaded choices up when rebuilt
    if (n_loaded) *n_loaded = n;
    return KL_OK;
}

extern "C" kl_status kl_gemm_ctx_save_tuning(kl_gemm_ctx *ctx, const char *path) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d.%p", path, (int)getpid(), (void *)ctx) >= (int)sizeof tmp)
        return kl_error(KL_ERR_INVALID, "gemm tuning: path too long: %s", path);
    FILE *out = fopen(tmp, "w");
    if (!out) return kl_error(KL_ERR_IO, "gemm tuning: cannot write %s: %s", tmp, strerror(errno));
    fprintf(out, "%s\n", kTuneHeader);
    FILE *old = fopen(path, "r");  // keep other devices' lines (and this device's lines for keys not held here)
    if (old) {
        char line[1024], copy[1024];
        int lineno = 0;
        while (fgets(line, sizeof line, old)) {
            if (lineno++ == 0) continue;
            memcpy(copy, line, sizeof line);
            char *sig;
            tuned_choice c;
            if (!parse_choice(copy, &sig, &c)) continue;  // an unreadable line is dropped
            if (strcmp(sig, ctx->device_sig) == 0 && tuned_find(ctx, &c.key)) continue;
            fputs(line, out);
        }
        fclose(old);
    }
    for (int i = 0; i < ctx->n_tuned; i++) {
        fprintf(out, "%s\t", ctx->device_sig);
        const int32_t *f = (const int32_t *)&ctx->tuned[i].key;
        for (int j = 0; j < KEY_FIELDS; j++) fprintf(out, j ? " %d" : "%d", (int)f[j]);
        fprintf(out, "\t%d\n", (int)ctx->tuned[i].rank);
    }
    const bool ok = fflush(out) == 0 && fsync(fileno(out)) == 0;
    if (fclose(out) != 0 || !ok || rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        return kl_error(KL_ERR_IO, "gemm tuning: cannot write %s: %s", path, strerror(e));
    }
    return KL_OK;
}

// ---- the general product ---------------------------------------------------------------------------------------

static kl_status gemm_run(kl_gemm_ctx *ctx, gemm_plan *p, float alpha, const void *A, const void *B, float beta,
                          void *D, const void *bias, cudaStream_t st) {
    if (p->use_sm90 && alpha == 1.f)  // row-major out(n,m) = inp(n,k) w(m,k)^T: A is w, B is inp
        return kl_gemm_sm90_cuda((kl_bf16 *)D, (const kl_bf16 *)B, (const kl_bf16 *)A, p->key.n, p->key.m, p->key.k,
                                 st);
    if (bias)
        KL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    KL_CUBLAS_CHECK(cublasLtMatmul(ctx->lt, p->desc, &alpha, A, p->la, B, p->lb, &beta, D, p->ld, D, p->ld, &p->algo,
                                   ctx->ws, ctx->ws_bytes, st));
    return KL_OK;
}

extern "C" kl_status kl_gemm_bf16_cuda(kl_gemm_ctx *ctx, int transa, int transb, int m, int n, int k, float alpha,
                                       const kl_bf16 *A, int lda, const kl_bf16 *B, int ldb, float beta, void *D,
                                       int ldd, int d_is_f32, const kl_bf16 *bias, struct CUstream_st *stream) {
    if (!ctx) return kl_error(KL_ERR_INVALID, "gemm: expected a GEMM context, got NULL");
    if (m < 0 || n < 0 || k < 0)
        return kl_error(KL_ERR_INVALID, "gemm: expected m, n, k >= 0, got m=%d n=%d k=%d", m, n, k);
    if (m == 0 || n == 0) return KL_OK;
    const int a_rows = transa ? k : m, b_rows = transb ? n : k;
    if (lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) || ldd < m)
        return kl_error(KL_ERR_INVALID,
                        "gemm: leading dimensions too small: lda=%d (need >= %d), ldb=%d (need >= %d), ldd=%d "
                        "(need >= %d)", lda, a_rows, ldb, b_rows, ldd, m);
    if (!D || (k > 0 && (!A || !B)))
        return kl_error(KL_ERR_INVALID, "gemm: NULL matrix pointer (A=%p B=%p D=%p)", (const void *)A,
                        (const void *)B, D);
    if (bias && d_is_f32)
        return kl_error(KL_ERR_UNSUPPORTED, "gemm: the bias epilogue is implemented for BF16 outputs only");
    gemm_key key;
    memset(&key, 0, sizeof key);
    key.transa = transa != 0;
    key.transb = transb != 0;
    key.m = m;
    key.n = n;
    key.k = k;
    key.lda = lda;
    key.ldb = ldb;
    key.ldd = ldd;
    key.d_f32 = d_is_f32 != 0;
    key.has_bias = bias != NULL;
    key.beta_nonzero = beta != 0.f;
    key.align_a = ptr_alignment(A);
    key.align_b = ptr_alignment(B);
    key.align_d = ptr_alignment(D);
    key.align_bias = bias ? ptr_alignment(bias) : 0;
    cudaStream_t st = (cudaStream_t)stream;

    // cuBLASLt's kernels for layouts that are not 16-byte aligned were seen (H200, cuBLAS 13.0, 37x45x29) to add
    // the bias after rounding the product to BF16 — bf16(bf16(acc) + bias), up to one BF16 ulp of the product off
    // when bias and product cancel. A bias on such a layout therefore runs on the own kernel (FP32 epilogue).
    const bool aligned_layout = m % 8 == 0 && lda % 8 == 0 && ldb % 8 == 0 && ldd % 8 == 0 && key.align_a >= 16 &&
                                key.align_b >= 16 && key.align_d >= 16 && (!bias || key.align_bias >= 16);
    if (ctx->force_fallback || k == 0 || (bias && !aligned_layout)) {
        ctx->stats.fallback_calls++;
        return gemm_fallback(&key, alpha, A, B, beta, D, bias, st);
    }
    gemm_plan *p = NULL;
    KL_TRY(cache_get(ctx, &key, bias, &p));
    if (p->use_fallback) {
        ctx->stats.fallback_calls++;
        return gemm_fallback(&key, alpha, A, B, beta, D, bias, st);
    }
    if (p->timing_pending) KL_TRY(time_candidates(ctx, p, alpha, A, B, beta, D, bias, st));
    const kl_status s = gemm_run(ctx, p, alpha, A, B, beta, D, bias, st);
    if (s) return kl_error_context(s, "gemm m=%d n=%d k=%d", m, n, k);
    if (p->use_sm90 && alpha == 1.f) ctx->stats.sm90_calls++;
    else ctx->stats.cublaslt_calls++;
    return KL_OK;
}

// ---- dbias: deterministic column sums --------------------------------------------------------------------------
// Pass 1: block (32 x VEC columns x 8 row groups) sums rows [r0, r1) of its split in order, each thread VEC
// adjacent columns (16-byte loads when VEC = 8), then the 8 row groups in order; pass 2 sums the splits in order.
// With one split pass 1 adds straight into dbias. The order depends only on N, OC and VEC: reruns are bitwise equal.

template <int VEC>
__global__ void dbias_partial_kernel(float *dst, int add_into, const uint16_t *dout, int N, int OC,
                                     int rows_per_split) {
    __shared__ float red[8][32 * VEC + 1];
    const int c = (blockIdx.x * 32 + threadIdx.x) * VEC, s = blockIdx.y;
    const int r0 = s * rows_per_split, r1 = min(N, r0 + rows_per_split);
    float acc[VEC] = {};
    if (c < OC)
        for (int r = r0 + (int)threadIdx.y; r < r1; r += 8) {
            kl::Bf16Pack<VEC> v;
            v.load(dout + (size_t)r * OC + c);
            float f[VEC];
            v.unpack(f);
#pragma unroll
            for (int i = 0; i < VEC; i++) acc[i] += f[i];
        }
#pragma unroll
    for (int i = 0; i < VEC; i++) red[threadIdx.y][threadIdx.x * VEC + i] = acc[i];
    __syncthreads();
    if (threadIdx.y == 0 && c < OC)
#pragma unroll
        for (int i = 0; i < VEC; i++) {
            float t = 0.f;
            for (int y = 0; y < 8; y++) t += red[y][threadIdx.x * VEC + i];
            if (add_into)
                dst[c + i] += t;
            else
                dst[(size_t)s * OC + c + i] = t;
        }
}

__global__ void dbias_finish_kernel(float *dbias, const float *partial, int splits, int OC) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= OC) return;
    float t = 0.f;
    for (int s = 0; s < splits; s++) t += partial[(size_t)s * OC + c];
    dbias[c] += t;
}

template <int VEC>
static kl_status dbias_launch(kl_gemm_ctx *ctx, float *dbias, const uint16_t *dout, int N, int OC, cudaStream_t st) {
    const int col_blocks = (OC + 32 * VEC - 1) / (32 * VEC);
    // Aim at ~512 blocks (a fixed number, not the SM count, so the summation order is the same on every GPU),
    // at least 64 rows a split, and partial sums that fit the workspace.
    int splits = (512 + col_blocks - 1) / col_blocks;
    const int max_by_rows = (N + 63) / 64;
    if (splits > max_by_rows) splits = max_by_rows;
    const size_t fit = ctx->ws_bytes / ((size_t)OC * sizeof(float));
    if ((size_t)splits > fit) splits = (int)fit;
    if (splits < 1) splits = 1;
    const int rows = (N + splits - 1) / splits;
    splits = (N + rows - 1) / rows;
    dim3 block(32, 8), grid((unsigned)col_blocks, (unsigned)splits);
    if (splits == 1) {
        dbias_partial_kernel<VEC><<<grid, block, 0, st>>>(dbias, 1, dout, N, OC, rows);
    } else {
        float *partial = (float *)ctx->ws;
        dbias_partial_kernel<VEC><<<grid, block, 0, st>>>(partial, 0, dout, N, OC, rows);
        dbias_finish_kernel<<<(OC + 255) / 256, 256, 0, st>>>(dbias, partial, splits, OC);
    }
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

static kl_status dbias_sum(kl_gemm_ctx *ctx, float *dbias, const __nv_bfloat16 *dout, int N, int OC,
                           cudaStream_t st) {
    if (N == 0 || OC == 0) return KL_OK;
    const uint16_t *d = reinterpret_cast<const uint16_t *>(dout);
    if (OC % 8 == 0 && kl::aligned16(dout)) return dbias_launch<8>(ctx, dbias, d, N, OC, st);
    return dbias_launch<1>(ctx, dbias, d, N, OC, st);
}

// ---- the linear layer ------------------------------------------------------------------------------------------

static kl_status check_dims(const char *where, int N, int IC, int OC) {
    if (N < 0 || IC < 0 || OC < 0)
        return kl_error(KL_ERR_INVALID, "%s: expected N, IC, OC >= 0, got N=%d IC=%d OC=%d", where, N, IC, OC);
    return KL_OK;
}

extern "C" kl_status kl_matmul_forward_cuda(kl_gemm_ctx *ctx, kl_bf16 *out, const kl_bf16 *inp, const kl_bf16 *w,
                                            const kl_bf16 *bias, int N, int IC, int OC, struct CUstream_st *stream) {
    KL_TRY(check_dims("matmul forward", N, IC, OC));
    // column-major view: out^T(OC,N) = w(IC,OC)^T . inp^T(IC,N)
    kl_status s = kl_gemm_bf16_cuda(ctx, 1, 0, OC, N, IC, 1.f, w, IC > 0 ? IC : 1, inp, IC > 0 ? IC : 1, 0.f, out,
                                    OC, 0, bias, stream);
    return s == KL_OK ? s : kl_error_context(s, "matmul forward (N=%d IC=%d OC=%d)", N, IC, OC);
}

extern "C" kl_status kl_matmul_backward_cuda(kl_gemm_ctx *ctx, kl_bf16 *dinp, float *dw, float *dbias,
                                             const kl_bf16 *dout, const kl_bf16 *inp, const kl_bf16 *w, int N, int IC,
                                             int OC, struct CUstream_st *stream) {
    KL_TRY(check_dims("matmul backward", N, IC, OC));
    kl_status s = KL_OK;
    if (dinp) {
        // dinp^T(IC,N) = w^T(IC,OC) . dout^T(OC,N); with OC = 0 this writes zeros (k = 0, beta = 0)
        s = kl_gemm_bf16_cuda(ctx, 0, 0, IC, N, OC, 1.f, w, IC > 0 ? IC : 1, dout, OC > 0 ? OC : 1, 0.f, dinp,
                              IC > 0 ? IC : 1, 0, NULL, stream);
        if (s) return kl_error_context(s, "matmul backward dinp (N=%d IC=%d OC=%d)", N, IC, OC);
    }
    if (dw) {
        // dw^T(IC,OC) += inp^T(IC,N) . dout(N,OC)
        s = kl_gemm_bf16_cuda(ctx, 0, 1, IC, OC, N, 1.f, inp, IC > 0 ? IC : 1, dout, OC > 0 ? OC : 1, 1.f, dw,
                              IC > 0 ? IC : 1, 1, NULL, stream);
        if (s) return kl_error_context(s, "matmul backward dw (N=%d IC=%d OC=%d)", N, IC, OC);
    }
    if (dbias) {
        s = dbias_sum(ctx, dbias, (const __nv_bfloat16 *)dout, N, OC, (cudaStream_t)stream);
        if (s) return kl_error_context(s, "matmul backward dbias (N=%d OC=%d)", N, OC);
    }
    return KL_OK;
}
