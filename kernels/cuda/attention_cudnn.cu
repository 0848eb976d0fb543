// attention_cudnn.cu — the attention context of kernels/attention_cuda.h: chooses between cuDNN's fused flash
// attention and kiln's own kernels (attention.cu), and builds the cuDNN forward through the backend (C) graph API:
// an operation graph of matmul, pointwise and reduction nodes (Q K^T, scale, causal mask by generated indices and
// a select, softmax with its log-sum-exp "stats", P V) that cuDNN's runtime fusion engine compiles into one flash
// attention kernel; the backward likewise (D = rowsum(dO * O), P recomputed from the stats, dV = P^T dO,
// dS = P (dO V^T - D) scale, dK = dS^T Q, dQ = dS K, GQA head groups summed by reductions). dQ is the direct
// output of its product — the graph cuDNN serves with a dP workspace instead of atomically accumulated FP32 dQ —
// and engines with a non-deterministic numerical note are skipped, so reruns stay bit-identical. Plans are cached
// per shape and direction.
#include <cuda_runtime.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention_cuda.h"
#include "cuda_check.cuh"

#define KL_ATTN_PLAN_CACHE 8

#if defined(KILN_HAVE_CUDNN)
// One built graph (forward or backward): every backend descriptor it owns (destroyed with the plan), the execution
// plan, the workspace it needs; or, when cuDNN declined the shape, the reason (so it is not asked again).
struct sdpa_plan {
    int used, failed;
    int B, T, NH, NKV, HS;
    cudnnBackendDescriptor_t descs[192];
    int ndescs;
    cudnnBackendDescriptor_t plan;
    int64_t workspace;
    char why[384];
};
#endif

struct kl_attention_ctx {
    kl_attn_backend backend;
    const char *last;
    char note[512];
#if defined(KILN_HAVE_CUDNN)
    cudnnHandle_t handle;  // NULL when cuDNN could not be initialised (note says why)
    sdpa_plan fwd[KL_ATTN_PLAN_CACHE], bwd[KL_ATTN_PLAN_CACHE];
    int next_evict[2];
#endif
};

#if defined(KILN_HAVE_CUDNN)
namespace {

// Tensor unique ids of the variant packs; virtual tensors take ids from 100 on.
enum {
    UID_Q = 1, UID_KT, UID_V, UID_O, UID_STATS, UID_SCALE, UID_NEG,  // forward (and backward)
    UID_DO, UID_DQ, UID_DK, UID_DV, UID_SUM, UID_ONE                 // backward only
};

// Records the failing step in the error message: "cuDNN SDPA <direction>: <step>: <cudnn message>"; `dir` names
// the direction in the enclosing function.
#define SDPA_TRY(expr, step)                                                                                     \
    do {                                                                                                         \
        kl_status sdpa_s_ = (expr);                                                                              \
        if (sdpa_s_ != KL_OK) return kl_error_context(sdpa_s_, "cuDNN SDPA %s: %s", dir, step);                  \
    } while (0)

kl_status cudnn_call(cudnnStatus_t st) {
    KL_CUDNN_CHECK(st);
    return KL_OK;
}

kl_status new_desc(sdpa_plan *p, cudnnBackendDescriptorType_t type, cudnnBackendDescriptor_t *out) {
    if (p->ndescs == (int)(sizeof p->descs / sizeof p->descs[0]))
        return kl_error(KL_ERR_INTERNAL, "too many cuDNN descriptors for one graph");
    KL_TRY(cudnn_call(cudnnBackendCreateDescriptor(type, out)));
    p->descs[p->ndescs++] = *out;
    return KL_OK;
}

kl_status set_attr(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                   int64_t count, const void *value) {
    return cudnn_call(cudnnBackendSetAttribute(d, name, type, count, value));
}

kl_status tensor(sdpa_plan *p, cudnnBackendDescriptor_t *out, int64_t uid, cudnnDataType_t dt, const int64_t dims[4],
                 const int64_t strides[4], bool is_virtual, bool by_value) {
    const int64_t align = 16;
    KL_TRY(new_desc(p, CUDNN_BACKEND_TENSOR_DESCRIPTOR, out));
    KL_TRY(set_attr(*out, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt));
    KL_TRY(set_attr(*out, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims));
    KL_TRY(set_attr(*out, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides));
    KL_TRY(set_attr(*out, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid));
    KL_TRY(set_attr(*out, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align));
    KL_TRY(set_attr(*out, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual));
    if (by_value) KL_TRY(set_attr(*out, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value));
    return cudnn_call(cudnnBackendFinalize(*out));
}

// y = mode(x[, b][, t]) computed in `prec`; axis >= 0 only for GEN_INDEX.
kl_status pointwise(sdpa_plan *p, cudnnBackendDescriptor_t *op, cudnnPointwiseMode_t mode, cudnnDataType_t prec,
                    cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t t,
                    cudnnBackendDescriptor_t y, int64_t axis) {
    cudnnBackendDescriptor_t pw;
    KL_TRY(new_desc(p, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, &pw));
    KL_TRY(set_attr(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode));
    KL_TRY(set_attr(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec));
    if (axis >= 0) KL_TRY(set_attr(pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis));
    KL_TRY(cudnn_call(cudnnBackendFinalize(pw)));
    KL_TRY(new_desc(p, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, op));
    KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw));
    KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x));
    if (b) KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b));
    if (t) KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t));
    KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y));
    return cudnn_call(cudnnBackendFinalize(*op));
}

kl_status reduction(sdpa_plan *p, cudnnBackendDescriptor_t *op, cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x,
                    cudnnBackendDescriptor_t y) {
    cudnnBackendDescriptor_t red;
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    KL_TRY(new_desc(p, CUDNN_BACKEND_REDUCTION_DESCRIPTOR, &red));
    KL_TRY(set_attr(red, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode));
    KL_TRY(set_attr(red, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32));
    KL_TRY(cudnn_call(cudnnBackendFinalize(red)));
    KL_TRY(new_desc(p, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, op));
    KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x));
    KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y));
    KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &red));
    return cudnn_call(cudnnBackendFinalize(*op));
}

kl_status matmul(sdpa_plan *p, cudnnBackendDescriptor_t *op, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b,
                 cudnnBackendDescriptor_t c) {
    cudnnBackendDescriptor_t mm;
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    KL_TRY(new_desc(p, CUDNN_BACKEND_MATMUL_DESCRIPTOR, &mm));
    KL_TRY(set_attr(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32));
    KL_TRY(cudnn_call(cudnnBackendFinalize(mm)));
    KL_TRY(new_desc(p, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, op));
    KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a));
    KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b));
    KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c));
    KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm));
    return cudnn_call(cudnnBackendFinalize(*op));
}

// y = x viewed with y's dimensions and strides (how the graph transposes P, dS and K^T).
kl_status reshape(sdpa_plan *p, cudnnBackendDescriptor_t *op, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    KL_TRY(new_desc(p, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, op));
    KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x));
    KL_TRY(set_attr(*op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y));
    return cudnn_call(cudnnBackendFinalize(*op));
}

// Whether the engine of an engine configuration declares itself non-deterministic (atomics): such engines are
// skipped, kiln's losses must repeat bit for bit.
bool nondeterministic(sdpa_plan *p, cudnnBackendDescriptor_t cfg) {
    cudnnBackendDescriptor_t engine;
    if (new_desc(p, CUDNN_BACKEND_ENGINE_DESCRIPTOR, &engine) != KL_OK) {
        kl_clear_error();
        return true;
    }
    int64_t n = 0;
    if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &engine) !=
        CUDNN_STATUS_SUCCESS)
        return true;
    cudnnBackendNumericalNote_t notes[16];
    n = 0;
    if (cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE, 16, &n, notes) !=
        CUDNN_STATUS_SUCCESS)
        return true;
    for (int64_t i = 0; i < n; i++)
        if (notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC) return true;
    return false;
}

// Finalizes the first engine configuration the heuristics (mode A, then the fallback list) offer that builds
// into an execution plan for the graph.
kl_status choose_plan(cudnnHandle_t handle, sdpa_plan *p, cudnnBackendDescriptor_t graph) {
    const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    char tried[320] = "";
    for (int mi = 0; mi < 2; mi++) {
        cudnnBackendDescriptor_t heur;
        KL_TRY(new_desc(p, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur));
        KL_TRY(set_attr(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph));
        KL_TRY(set_attr(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &modes[mi]));
        if (cudnnBackendFinalize(heur) != CUDNN_STATUS_SUCCESS) continue;
        int64_t count = 0;
        if (cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                                     NULL) != CUDNN_STATUS_SUCCESS)
            continue;
        if (count > 8) count = 8;
        cudnnBackendDescriptor_t cfgs[8];
        for (int64_t i = 0; i < count; i++) KL_TRY(new_desc(p, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfgs[i]));
        int64_t got = 0;
        if (count == 0 || cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                                   count, &got, cfgs) != CUDNN_STATUS_SUCCESS)
            got = 0;
        size_t len = strlen(tried);
        snprintf(tried + len, sizeof tried - len, "%s%s: %lld configs", len ? ", " : "", mi ? "fallback" : "mode A",
                 (long long)got);
        for (int64_t i = 0; i < got; i++) {
            if (nondeterministic(p, cfgs[i])) {
                len = strlen(tried);
                snprintf(tried + len, sizeof tried - len, " [#%lld: non-deterministic]", (long long)i);
                continue;
            }
            cudnnBackendDescriptor_t plan;
            KL_TRY(new_desc(p, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan));
            KL_TRY(set_attr(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle));
            KL_TRY(set_attr(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[i]));
            const cudnnStatus_t fs = cudnnBackendFinalize(plan);
            if (fs != CUDNN_STATUS_SUCCESS) {
                len = strlen(tried);
                snprintf(tried + len, sizeof tried - len, " [#%lld: %s]", (long long)i, cudnnGetErrorString(fs));
                continue;
            }
            int64_t ws = 0, n = 0;
            KL_TRY(cudnn_call(cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                                       CUDNN_TYPE_INT64, 1, &n, &ws)));
            p->plan = plan;
            p->workspace = ws;
            return KL_OK;
        }
    }
    return kl_error(KL_ERR_UNSUPPORTED, "no engine accepted the graph (%s)", tried);
}

// The operation graph of `ops` and its execution plan, into p.
kl_status finish_graph(cudnnHandle_t handle, sdpa_plan *p, cudnnBackendDescriptor_t *ops, int n, const char *dir) {
    cudnnBackendDescriptor_t graph;
    SDPA_TRY(new_desc(p, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &graph), "operation graph");
    SDPA_TRY(set_attr(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, n, ops), "graph ops");
    SDPA_TRY(set_attr(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle), "graph handle");
    SDPA_TRY(cudnn_call(cudnnBackendFinalize(graph)), "finalizing the operation graph");
    SDPA_TRY(choose_plan(handle, p, graph), "execution plan");
    return KL_OK;
}

// The forward graph. Q(B,NH,T,HS), K^T(B,NKV,HS,T) and V(B,NKV,T,HS) are strided views of qkv; the kv-head
// dimension broadcasts over the query heads (GQA).
kl_status build_forward(cudnnHandle_t handle, sdpa_plan *p) {
    const char *dir = "forward";
    const int64_t B = p->B, T = p->T, NH = p->NH, NKV = p->NKV, HS = p->HS;
    const int64_t rs = (NH + 2 * NKV) * HS;  // qkv elements per position
    const int64_t q_dim[4] = {B, NH, T, HS}, q_str[4] = {T * rs, HS, rs, 1};
    const int64_t kt_dim[4] = {B, NKV, HS, T}, kt_str[4] = {T * rs, HS, 1, rs};
    const int64_t v_dim[4] = {B, NKV, T, HS}, v_str[4] = {T * rs, HS, rs, 1};
    const int64_t o_dim[4] = {B, NH, T, HS}, o_str[4] = {T * NH * HS, HS, NH * HS, 1};
    const int64_t st_dim[4] = {B, NH, T, 1}, st_str[4] = {NH * T, T, 1, 1};
    const int64_t s_dim[4] = {B, NH, T, T}, s_str[4] = {NH * T * T, T * T, T, 1};
    const int64_t one[4] = {1, 1, 1, 1};
    const cudnnDataType_t bf = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT, i32 = CUDNN_DATA_INT32,
                          bl = CUDNN_DATA_BOOLEAN;
    cudnnBackendDescriptor_t q, kt, v, o, stats, scale, neg;
    SDPA_TRY(tensor(p, &q, UID_Q, bf, q_dim, q_str, false, false), "tensor Q");
    SDPA_TRY(tensor(p, &kt, UID_KT, bf, kt_dim, kt_str, false, false), "tensor K^T");
    SDPA_TRY(tensor(p, &v, UID_V, bf, v_dim, v_str, false, false), "tensor V");
    SDPA_TRY(tensor(p, &o, UID_O, bf, o_dim, o_str, false, false), "tensor O");
    SDPA_TRY(tensor(p, &stats, UID_STATS, f32, st_dim, st_str, false, false), "tensor stats");
    SDPA_TRY(tensor(p, &scale, UID_SCALE, f32, one, one, false, true), "scalar scale");
    SDPA_TRY(tensor(p, &neg, UID_NEG, f32, one, one, false, true), "scalar -max");
    int64_t uid = 100;
    cudnnBackendDescriptor_t s, s1, row, col, mask, s2, mx, s3, e, z, logz, pr;
    SDPA_TRY(tensor(p, &s, uid++, f32, s_dim, s_str, true, false), "virtual S");
    SDPA_TRY(tensor(p, &s1, uid++, f32, s_dim, s_str, true, false), "virtual S*scale");
    SDPA_TRY(tensor(p, &row, uid++, i32, s_dim, s_str, true, false), "virtual row index");
    SDPA_TRY(tensor(p, &col, uid++, i32, s_dim, s_str, true, false), "virtual column index");
    SDPA_TRY(tensor(p, &mask, uid++, bl, s_dim, s_str, true, false), "virtual causal mask");
    SDPA_TRY(tensor(p, &s2, uid++, f32, s_dim, s_str, true, false), "virtual masked S");
    SDPA_TRY(tensor(p, &mx, uid++, f32, st_dim, st_str, true, false), "virtual row max");
    SDPA_TRY(tensor(p, &s3, uid++, f32, s_dim, s_str, true, false), "virtual S - max");
    SDPA_TRY(tensor(p, &e, uid++, f32, s_dim, s_str, true, false), "virtual exp");
    SDPA_TRY(tensor(p, &z, uid++, f32, st_dim, st_str, true, false), "virtual row sum");
    SDPA_TRY(tensor(p, &logz, uid++, f32, st_dim, st_str, true, false), "virtual log sum");
    SDPA_TRY(tensor(p, &pr, uid++, bf, s_dim, s_str, true, false), "virtual P");  // bmm2 takes P in the I/O type

    cudnnBackendDescriptor_t ops[14];
    int n = 0;
    SDPA_TRY(matmul(p, &ops[n++], q, kt, s), "matmul Q K^T");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_MUL, f32, s, scale, NULL, s1, -1), "scale");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_GEN_INDEX, f32, s1, NULL, NULL, row, 2), "row index");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_GEN_INDEX, f32, s1, NULL, NULL, col, 3), "column index");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_CMP_GE, bl, row, col, NULL, mask, -1), "row >= column");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_BINARY_SELECT, f32, s1, neg, mask, s2, -1), "causal select");
    SDPA_TRY(reduction(p, &ops[n++], CUDNN_REDUCE_TENSOR_MAX, s2, mx), "row max");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_SUB, f32, s2, mx, NULL, s3, -1), "subtract max");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_EXP, f32, s3, NULL, NULL, e, -1), "exp");
    SDPA_TRY(reduction(p, &ops[n++], CUDNN_REDUCE_TENSOR_ADD, e, z), "row sum");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_LOG, f32, z, NULL, NULL, logz, -1), "log");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_ADD, f32, mx, logz, NULL, stats, -1), "stats = max + log sum");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_DIV, f32, e, z, NULL, pr, -1), "normalise");
    SDPA_TRY(matmul(p, &ops[n++], pr, v, o), "matmul P V");

    return finish_graph(handle, p, ops, n, dir);
}

// The backward graph, with the forward's views of qkv (Q, K^T, V^T) and of dqkv (dQ, dK, dV); dO and O are
// (B, T, NH*HS). D = rowsum(dO * O) leaves the graph as the non-virtual FP32 tensor UID_SUM (workspace), as
// cuDNN's fused backward expects. For GQA, dK and dV are first computed per query head (BF16) and then summed over
// each kv head's group by a reduction.
kl_status build_backward(cudnnHandle_t handle, sdpa_plan *p) {
    const char *dir = "backward";
    const int64_t B = p->B, T = p->T, NH = p->NH, NKV = p->NKV, HS = p->HS;
    const int64_t rs = (NH + 2 * NKV) * HS, A = NH * HS;
    const int64_t q_dim[4] = {B, NH, T, HS}, q_str[4] = {T * rs, HS, rs, 1};
    const int64_t kt_dim[4] = {B, NKV, HS, T}, kt_str[4] = {T * rs, HS, 1, rs};
    const int64_t k_dim[4] = {B, NKV, T, HS}, k_str[4] = {T * rs, HS, rs, 1};
    const int64_t o_dim[4] = {B, NH, T, HS}, o_str[4] = {T * A, HS, A, 1};
    const int64_t full_str[4] = {NH * T * HS, T * HS, HS, 1};  // per-query-head dK / dV and dO*O, packed
    const int64_t st_dim[4] = {B, NH, T, 1}, st_str[4] = {NH * T, T, 1, 1};
    const int64_t s_dim[4] = {B, NH, T, T}, s_str[4] = {NH * T * T, T * T, T, 1}, st_t[4] = {NH * T * T, T * T, 1, T};
    const int64_t one[4] = {1, 1, 1, 1};
    const cudnnDataType_t bf = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT, i32 = CUDNN_DATA_INT32,
                          bl = CUDNN_DATA_BOOLEAN;
    const bool gqa = NH != NKV;
    cudnnBackendDescriptor_t q, kt, vt, o, dO, stats, sum, dq, dk, dv, scale, unit, neg;
    SDPA_TRY(tensor(p, &q, UID_Q, bf, q_dim, q_str, false, false), "tensor Q");
    SDPA_TRY(tensor(p, &kt, UID_KT, bf, kt_dim, kt_str, false, false), "tensor K^T");
    SDPA_TRY(tensor(p, &vt, UID_V, bf, kt_dim, kt_str, false, false), "tensor V^T");
    SDPA_TRY(tensor(p, &o, UID_O, bf, o_dim, o_str, false, false), "tensor O");
    SDPA_TRY(tensor(p, &dO, UID_DO, bf, o_dim, o_str, false, false), "tensor dO");
    SDPA_TRY(tensor(p, &stats, UID_STATS, f32, st_dim, st_str, false, false), "tensor stats");
    SDPA_TRY(tensor(p, &sum, UID_SUM, f32, st_dim, st_str, false, false), "tensor D");
    SDPA_TRY(tensor(p, &dq, UID_DQ, bf, q_dim, q_str, false, false), "tensor dQ");
    SDPA_TRY(tensor(p, &dk, UID_DK, bf, k_dim, k_str, false, false), "tensor dK");
    SDPA_TRY(tensor(p, &dv, UID_DV, bf, k_dim, k_str, false, false), "tensor dV");
    SDPA_TRY(tensor(p, &scale, UID_SCALE, f32, one, one, false, true), "scalar scale");
    SDPA_TRY(tensor(p, &unit, UID_ONE, f32, one, one, false, true), "scalar one");
    SDPA_TRY(tensor(p, &neg, UID_NEG, f32, one, one, false, true), "scalar -max");
    int64_t uid = 100;
    cudnnBackendDescriptor_t doo, rsum, s, s1, s2, row, col, mask, s3, e, pt, dvf, dp, ds1, ds2, ds, dst, dkf, k;
    SDPA_TRY(tensor(p, &doo, uid++, f32, o_dim, full_str, true, false), "virtual dO*O");
    SDPA_TRY(tensor(p, &rsum, uid++, f32, st_dim, st_str, true, false), "virtual row sum");
    SDPA_TRY(tensor(p, &s, uid++, f32, s_dim, s_str, true, false), "virtual S");
    SDPA_TRY(tensor(p, &s1, uid++, f32, s_dim, s_str, true, false), "virtual S*scale");
    SDPA_TRY(tensor(p, &s2, uid++, f32, s_dim, s_str, true, false), "virtual S*scale - stats");
    SDPA_TRY(tensor(p, &row, uid++, i32, s_dim, s_str, true, false), "virtual row index");
    SDPA_TRY(tensor(p, &col, uid++, i32, s_dim, s_str, true, false), "virtual column index");
    SDPA_TRY(tensor(p, &mask, uid++, bl, s_dim, s_str, true, false), "virtual causal mask");
    SDPA_TRY(tensor(p, &s3, uid++, f32, s_dim, s_str, true, false), "virtual masked");
    SDPA_TRY(tensor(p, &e, uid++, f32, s_dim, s_str, true, false), "virtual P");
    SDPA_TRY(tensor(p, &pt, uid++, bf, s_dim, st_t, true, false), "virtual P^T");
    SDPA_TRY(tensor(p, &dp, uid++, f32, s_dim, s_str, true, false), "virtual dP");
    SDPA_TRY(tensor(p, &ds1, uid++, f32, s_dim, s_str, true, false), "virtual dP - D");
    SDPA_TRY(tensor(p, &ds2, uid++, f32, s_dim, s_str, true, false), "virtual P (dP - D)");
    SDPA_TRY(tensor(p, &ds, uid++, f32, s_dim, s_str, true, false), "virtual dS");
    SDPA_TRY(tensor(p, &dst, uid++, bf, s_dim, st_t, true, false), "virtual dS^T");
    SDPA_TRY(tensor(p, &k, uid++, bf, k_dim, k_str, true, false), "virtual K");
    if (gqa) {
        SDPA_TRY(tensor(p, &dvf, uid++, bf, o_dim, full_str, true, false), "virtual dV per query head");
        SDPA_TRY(tensor(p, &dkf, uid++, bf, o_dim, full_str, true, false), "virtual dK per query head");
    } else {
        dvf = dv;
        dkf = dk;
    }

    cudnnBackendDescriptor_t ops[32];
    int n = 0;
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_MUL, f32, dO, o, NULL, doo, -1), "dO * O");
    SDPA_TRY(reduction(p, &ops[n++], CUDNN_REDUCE_TENSOR_ADD, doo, rsum), "rowsum(dO * O)");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_MUL, f32, rsum, unit, NULL, sum, -1), "D");
    SDPA_TRY(matmul(p, &ops[n++], q, kt, s), "matmul Q K^T");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_MUL, f32, s, scale, NULL, s1, -1), "scale");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_SUB, f32, s1, stats, NULL, s2, -1), "subtract stats");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_GEN_INDEX, f32, s2, NULL, NULL, row, 2), "row index");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_GEN_INDEX, f32, s2, NULL, NULL, col, 3), "column index");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_CMP_GE, bl, row, col, NULL, mask, -1), "row >= column");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_BINARY_SELECT, f32, s2, neg, mask, s3, -1), "causal select");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_EXP, f32, s3, NULL, NULL, e, -1), "exp");
    SDPA_TRY(reshape(p, &ops[n++], e, pt), "P^T");
    SDPA_TRY(matmul(p, &ops[n++], pt, dO, dvf), "matmul P^T dO");
    if (gqa) SDPA_TRY(reduction(p, &ops[n++], CUDNN_REDUCE_TENSOR_ADD, dvf, dv), "dV head groups");
    SDPA_TRY(matmul(p, &ops[n++], dO, vt, dp), "matmul dO V^T");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_SUB, f32, dp, sum, NULL, ds1, -1), "dP - D");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_MUL, f32, ds1, e, NULL, ds2, -1), "P (dP - D)");
    SDPA_TRY(pointwise(p, &ops[n++], CUDNN_POINTWISE_MUL, f32, ds2, scale, NULL, ds, -1), "dS scale");
    SDPA_TRY(reshape(p, &ops[n++], ds, dst), "dS^T");
    SDPA_TRY(matmul(p, &ops[n++], dst, q, dkf), "matmul dS^T Q");
    if (gqa) SDPA_TRY(reduction(p, &ops[n++], CUDNN_REDUCE_TENSOR_ADD, dkf, dk), "dK head groups");
    SDPA_TRY(reshape(p, &ops[n++], kt, k), "K");
    SDPA_TRY(matmul(p, &ops[n++], ds, k, dq), "matmul dS K");

    return finish_graph(handle, p, ops, n, dir);
}

void plan_release(sdpa_plan *p) {
    for (int i = p->ndescs - 1; i >= 0; i--) cudnnBackendDestroyDescriptor(p->descs[i]);
    memset(p, 0, sizeof *p);
}

// The cached plan of a direction (0 forward, 1 backward) for the shape, building it on first use. A shape cuDNN
// declined stays declined (p->failed).
sdpa_plan *get_plan(kl_attention_ctx *ctx, int bwd, int B, int T, int NH, int NKV, int HS) {
    sdpa_plan *cache = bwd ? ctx->bwd : ctx->fwd;
    for (int i = 0; i < KL_ATTN_PLAN_CACHE; i++) {
        sdpa_plan *p = &cache[i];
        if (p->used && p->B == B && p->T == T && p->NH == NH && p->NKV == NKV && p->HS == HS) return p;
    }
    int slot = -1;
    for (int i = 0; i < KL_ATTN_PLAN_CACHE && slot < 0; i++)
        if (!cache[i].used) slot = i;
    if (slot < 0) {
        slot = ctx->next_evict[bwd];
        ctx->next_evict[bwd] = (ctx->next_evict[bwd] + 1) % KL_ATTN_PLAN_CACHE;
        plan_release(&cache[slot]);
    }
    sdpa_plan *p = &cache[slot];
    memset(p, 0, sizeof *p);
    p->used = 1;
    p->B = B;
    p->T = T;
    p->NH = NH;
    p->NKV = NKV;
    p->HS = HS;
    if ((bwd ? build_backward(ctx->handle, p) : build_forward(ctx->handle, p)) != KL_OK) {
        char why[sizeof p->why];
        snprintf(why, sizeof why, "%s", kl_last_error());
        for (int i = p->ndescs - 1; i >= 0; i--) cudnnBackendDestroyDescriptor(p->descs[i]);
        p->ndescs = 0;
        p->plan = NULL;
        p->failed = 1;
        memcpy(p->why, why, sizeof why);
        kl_clear_error();
    }
    return p;
}

// Bytes of workspace a direction's plan needs, 0 when cuDNN declines the shape. The backward's D vector
// (B*NH*T floats) comes first, 256-byte aligned, then the plan's own workspace.
size_t sum_bytes(int B, int T, int NH) { return ((size_t)B * NH * T * sizeof(float) + 255) / 256 * 256; }
size_t plan_workspace(kl_attention_ctx *ctx, int bwd, int B, int T, int NH, int NKV, int HS) {
    const sdpa_plan *p = get_plan(ctx, bwd, B, T, NH, NKV, HS);
    if (p->failed) return 0;
    return (bwd ? sum_bytes(B, T, NH) : 0) + ((size_t)p->workspace + 255) / 256 * 256;
}

kl_status cudnn_execute(cudnnHandle_t handle, cudnnBackendDescriptor_t plan, void *const *ptrs, const int64_t *uids,
                        int64_t n, void *workspace) {
    cudnnBackendDescriptor_t vp;
    KL_TRY(cudnn_call(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp)));
    kl_status s = set_attr(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs);
    if (s == KL_OK) s = set_attr(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids);
    if (s == KL_OK) s = set_attr(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
    if (s == KL_OK) s = cudnn_call(cudnnBackendFinalize(vp));
    if (s == KL_OK) s = cudnn_call(cudnnBackendExecute(handle, plan, vp));
    cudnnBackendDestroyDescriptor(vp);
    return s;
}

// KL_OK: ran on cuDNN. KL_ERR_UNSUPPORTED: cuDNN declined (ctx->note says why), nothing was launched.
kl_status cudnn_forward(kl_attention_ctx *ctx, kl_bf16 *out, float *lse, const kl_bf16 *qkv, int B, int T, int NH,
                        int NKV, int HS, void *workspace, size_t workspace_bytes, cudaStream_t stream) {
    if (!ctx->handle) return kl_error(KL_ERR_UNSUPPORTED, "%s", ctx->note);
    if (!kl::aligned16(out) || !kl::aligned16(qkv) || !kl::aligned16(lse) || HS % 8 != 0)
        return kl_error(KL_ERR_UNSUPPORTED, "cuDNN SDPA forward: needs 16-byte aligned tensors and HS %% 8 == 0");
    sdpa_plan *p = get_plan(ctx, 0, B, T, NH, NKV, HS);
    if (p->failed) return kl_error(KL_ERR_UNSUPPORTED, "%s", p->why);
    if ((size_t)p->workspace > workspace_bytes || (p->workspace > 0 && !workspace))
        return kl_error(KL_ERR_UNSUPPORTED, "cuDNN SDPA forward: needs %lld bytes of workspace, got %zu",
                        (long long)p->workspace, workspace ? workspace_bytes : (size_t)0);
    float scale = 1.0f / sqrtf((float)HS), neg = -FLT_MAX;
    const kl_bf16 *x = qkv;
    void *ptrs[7] = {(void *)x, (void *)(x + (size_t)NH * HS), (void *)(x + (size_t)(NH + NKV) * HS), out, lse,
                     &scale, &neg};
    const int64_t uids[7] = {UID_Q, UID_KT, UID_V, UID_O, UID_STATS, UID_SCALE, UID_NEG};
    KL_TRY(cudnn_call(cudnnSetStream(ctx->handle, stream)));
    kl_status s = cudnn_execute(ctx->handle, p->plan, ptrs, uids, 7, workspace);
    return s == KL_OK ? s : kl_error_context(s, "cuDNN SDPA forward (B=%d T=%d NH=%d NKV=%d HS=%d)", B, T, NH, NKV, HS);
}

// KL_OK: ran on cuDNN. KL_ERR_UNSUPPORTED: cuDNN declined (ctx->note says why), nothing was launched.
kl_status cudnn_backward(kl_attention_ctx *ctx, kl_bf16 *dqkv, const kl_bf16 *dout, const kl_bf16 *out,
                         const float *lse, const kl_bf16 *qkv, int B, int T, int NH, int NKV, int HS, void *workspace,
                         size_t workspace_bytes, cudaStream_t stream) {
    if (!ctx->handle) return kl_error(KL_ERR_UNSUPPORTED, "%s", ctx->note);
    if (!kl::aligned16(dqkv) || !kl::aligned16(dout) || !kl::aligned16(out) || !kl::aligned16(qkv) ||
        !kl::aligned16(lse) || !kl::aligned16(workspace) || HS % 8 != 0)
        return kl_error(KL_ERR_UNSUPPORTED, "cuDNN SDPA backward: needs 16-byte aligned tensors and HS %% 8 == 0");
    sdpa_plan *p = get_plan(ctx, 1, B, T, NH, NKV, HS);
    if (p->failed) return kl_error(KL_ERR_UNSUPPORTED, "%s", p->why);
    const size_t need = plan_workspace(ctx, 1, B, T, NH, NKV, HS);
    if (need > workspace_bytes || !workspace)
        return kl_error(KL_ERR_UNSUPPORTED, "cuDNN SDPA backward: needs %zu bytes of workspace, got %zu", need,
                        workspace ? workspace_bytes : (size_t)0);
    float scale = 1.0f / sqrtf((float)HS), unit = 1.0f, neg = -FLT_MAX;
    char *ws = (char *)workspace;
    const size_t kv = (size_t)NH * HS, vv = (size_t)(NH + NKV) * HS;
    void *ptrs[13] = {(void *)qkv, (void *)(qkv + kv), (void *)(qkv + vv), (void *)out, (void *)dout, (void *)lse,
                      ws, dqkv, dqkv + kv, dqkv + vv, &scale, &unit, &neg};
    const int64_t uids[13] = {UID_Q, UID_KT, UID_V, UID_O, UID_DO, UID_STATS, UID_SUM,
                              UID_DQ, UID_DK, UID_DV, UID_SCALE, UID_ONE, UID_NEG};
    KL_TRY(cudnn_call(cudnnSetStream(ctx->handle, stream)));
    kl_status s = cudnn_execute(ctx->handle, p->plan, ptrs, uids, 13, ws + sum_bytes(B, T, NH));
    return s == KL_OK ? s
                      : kl_error_context(s, "cuDNN SDPA backward (B=%d T=%d NH=%d NKV=%d HS=%d)", B, T, NH, NKV, HS);
}

}  // namespace
#endif  // KILN_HAVE_CUDNN

// ---- the context -------------------------------------------------------------------------------------------------

extern "C" kl_status kl_attention_ctx_create(kl_attention_ctx **out, kl_attn_backend backend) {
    *out = NULL;
    if (backend < KL_ATTN_AUTO || backend > KL_ATTN_OWN_SIMPLE)
        return kl_error(KL_ERR_INVALID, "attention context: unknown backend %d", (int)backend);
    kl_attention_ctx *ctx = (kl_attention_ctx *)kl_calloc(1, sizeof *ctx, "attention context");
    if (!ctx) return KL_ERR_OOM;
    ctx->backend = backend;
    ctx->last = "";
#if defined(KILN_HAVE_CUDNN)
    if (backend == KL_ATTN_AUTO || backend == KL_ATTN_CUDNN) {
        const cudnnStatus_t st = cudnnCreate(&ctx->handle);
        if (st != CUDNN_STATUS_SUCCESS) {
            ctx->handle = NULL;
            snprintf(ctx->note, sizeof ctx->note, "cudnnCreate: %s", cudnnGetErrorString(st));
        }
    }
#else
    snprintf(ctx->note, sizeof ctx->note, "kiln was built without cuDNN");
#endif
    *out = ctx;
    return KL_OK;
}

extern "C" void kl_attention_ctx_destroy(kl_attention_ctx *ctx) {
    if (!ctx) return;
#if defined(KILN_HAVE_CUDNN)
    for (int i = 0; i < KL_ATTN_PLAN_CACHE; i++) {
        if (ctx->fwd[i].used) plan_release(&ctx->fwd[i]);
        if (ctx->bwd[i].used) plan_release(&ctx->bwd[i]);
    }
    if (ctx->handle) cudnnDestroy(ctx->handle);
#endif
    free(ctx);
}

extern "C" const char *kl_attention_ctx_last_backend(const kl_attention_ctx *ctx) { return ctx->last; }

extern "C" const char *kl_attention_ctx_cudnn_note(const kl_attention_ctx *ctx) { return ctx->note; }

extern "C" size_t kl_attention_workspace_bytes(kl_attention_ctx *ctx, int B, int T, int NH, int NKV, int HS) {
    size_t need = kl_attention_own_workspace_bytes(B, T, NH);
#if defined(KILN_HAVE_CUDNN)
    if (ctx && ctx->handle && B > 0 && T > 0 && NH > 0 && NKV > 0 && HS > 0 && NH % NKV == 0 && HS % 8 == 0)
        for (int bwd = 0; bwd < 2; bwd++) {
            const size_t ws = plan_workspace(ctx, bwd, B, T, NH, NKV, HS);
            if (ws > need) need = ws;
        }
#else
    (void)ctx;
    (void)NKV;
    (void)HS;
#endif
    return need;
}

// Settles a cuDNN attempt of `what` ("forward" / "backward"): s is its status, KL_ERR_UNSUPPORTED when cuDNN
// declined or could not be asked. *done is set when the call is over (it ran on cuDNN, it failed, or cuDNN alone
// was asked for and declined); otherwise the own kernels run, and ctx->note keeps why cuDNN did not.
static kl_status settle_cudnn(kl_attention_ctx *ctx, kl_status s, const char *what, bool *done) {
    *done = true;
    if (s == KL_OK) {
        ctx->last = "cudnn";
        ctx->note[0] = 0;
        return KL_OK;
    }
    if (s != KL_ERR_UNSUPPORTED) return s;
    snprintf(ctx->note, sizeof ctx->note, "%s", kl_last_error());
    kl_clear_error();
    if (ctx->backend == KL_ATTN_CUDNN)
        return kl_error(KL_ERR_UNSUPPORTED, "attention %s: cuDNN requested but unavailable: %s", what, ctx->note);
    *done = false;
    return KL_OK;
}

// Whether cuDNN is to be tried for this shape; when not, why (an error the caller settles).
static kl_status cudnn_applies(const kl_attention_ctx *ctx, int B, int T, int NH, int NKV, int HS) {
#if defined(KILN_HAVE_CUDNN)
    (void)ctx;
    if (B > 0 && T > 0 && NH > 0 && NKV > 0 && HS > 0 && NH % NKV == 0) return KL_OK;
    return kl_error(KL_ERR_UNSUPPORTED, "cuDNN SDPA: shape B=%d T=%d NH=%d NKV=%d HS=%d not accepted", B, T, NH, NKV,
                    HS);
#else
    (void)B, (void)T, (void)NH, (void)NKV, (void)HS;
    return kl_error(KL_ERR_UNSUPPORTED, "%s", ctx->note);
#endif
}

extern "C" kl_status kl_attention_forward_cuda(kl_attention_ctx *ctx, kl_bf16 *out, float *lse, const kl_bf16 *qkv,
                                               int B, int T, int NH, int NKV, int HS, void *workspace,
                                               size_t workspace_bytes, struct CUstream_st *stream) {
    if (!ctx) return kl_error(KL_ERR_INVALID, "attention forward: expected a context, got NULL");
    if (ctx->backend == KL_ATTN_AUTO || ctx->backend == KL_ATTN_CUDNN) {
        kl_status s = cudnn_applies(ctx, B, T, NH, NKV, HS);
#if defined(KILN_HAVE_CUDNN)
        if (s == KL_OK)
            s = cudnn_forward(ctx, out, lse, qkv, B, T, NH, NKV, HS, workspace, workspace_bytes, (cudaStream_t)stream);
#else
        (void)workspace, (void)workspace_bytes;
#endif
        bool done;
        const kl_status r = settle_cudnn(ctx, s, "forward", &done);
        if (done) return r;
    }
    const int simple = ctx->backend == KL_ATTN_OWN_SIMPLE;
    KL_TRY(kl_attention_forward_own_cuda(out, lse, qkv, B, T, NH, NKV, HS, simple, stream));
    ctx->last = !simple && kl_attention_own_mma_applies(HS, out, qkv, NULL, NULL) ? "own-mma" : "own-simple";
    return KL_OK;
}

// The backward takes cuDNN's fused backward when the context allows it and cuDNN accepts the shape (with a
// deterministic engine), else the own kernels (deterministic by construction: no atomics).
extern "C" kl_status kl_attention_backward_cuda(kl_attention_ctx *ctx, kl_bf16 *dqkv, const kl_bf16 *dout,
                                                const kl_bf16 *out, const float *lse, const kl_bf16 *qkv, int B, int T,
                                                int NH, int NKV, int HS, void *workspace, size_t workspace_bytes,
                                                struct CUstream_st *stream) {
    if (!ctx) return kl_error(KL_ERR_INVALID, "attention backward: expected a context, got NULL");
    if (ctx->backend == KL_ATTN_AUTO || ctx->backend == KL_ATTN_CUDNN) {
        kl_status s = cudnn_applies(ctx, B, T, NH, NKV, HS);
#if defined(KILN_HAVE_CUDNN)
        if (s == KL_OK)
            s = cudnn_backward(ctx, dqkv, dout, out, lse, qkv, B, T, NH, NKV, HS, workspace, workspace_bytes,
                               (cudaStream_t)stream);
#endif
        bool done;
        const kl_status r = settle_cudnn(ctx, s, "backward", &done);
        if (done) return r;
    }
    const int simple = ctx->backend == KL_ATTN_OWN_SIMPLE;
    KL_TRY(kl_attention_backward_own_cuda(dqkv, dout, out, lse, qkv, B, T, NH, NKV, HS, workspace, workspace_bytes,
                                          simple, stream));
    ctx->last = !simple && kl_attention_own_mma_applies(HS, dqkv, dout, qkv, NULL) ? "own-mma" : "own-simple";
    return KL_OK;
}
