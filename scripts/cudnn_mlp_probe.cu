// cudnn_mlp_probe.cu — can cuDNN's runtime-fusion engines put SwiGLU into the MLP GEMMs, and how fast are they?
// At the Qwen2.5-1.5B shape (N 16384, C 1536, F 8960) it builds two cuDNN operation graphs (backend API) and times
// every engine configuration the heuristics offer against kiln's unfused path (cuBLASLt product + SwiGLU kernel):
//   forward:  G = X Wg^T -> G (stored, BF16) and sw = swish(G) * U     (U = X Wu^T by cuBLASLt beforehand)
//   backward: dS = dres Wdown -> dG = swish'(G) * dS * U, dU = swish(G) * dS   (dsw never reaches memory)
// The fused forward saves one N x F round trip a layer, the backward two (the 1.5B breakdown in
// docs/benchmarks.md: SwiGLU is 5.8% of a micro-batch). It also compares the fused outputs with the unfused ones.
// Measurement aid, not part of the build:
// The unfused reference runs kiln's own SwiGLU kernels (kernels/cuda/swiglu.cu, linked in):
//   nvcc -O2 -std=c++17 -arch=sm_90a -Ikernels -Isrc scripts/cudnn_mlp_probe.cu \
//        kernels/cuda/swiglu.cu src/kl_base.c -o cudnn_mlp_probe -lcudnn -lcublasLt
//   ./cudnn_mlp_probe [N]
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

extern "C" {
#include "swiglu_cuda.h"
}

#define CK(x) check_cuda((x), #x, __LINE__)
#define CB(x) check_cublas((x), #x, __LINE__)

static void check_cuda(cudaError_t e, const char *what, int line) {
    if (e == cudaSuccess) return;
    fprintf(stderr, "line %d: %s: %s\n", line, what, cudaGetErrorString(e));
    exit(1);
}
static void check_cublas(cublasStatus_t e, const char *what, int line) {
    if (e == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "line %d: %s: cuBLAS status %d\n", line, what, (int)e);
    exit(1);
}
// cuDNN calls report instead of exiting: a graph cuDNN declines is a result, not a failure of the probe.
static bool dnn(cudnnStatus_t s, const char *what) {
    if (s == CUDNN_STATUS_SUCCESS) return true;
    printf("  cuDNN declined at %s: %s\n", what, cudnnGetErrorString(s));
    return false;
}
#define DNN(x)                           \
    do {                                 \
        if (!dnn((x), #x)) return false; \
    } while (0)

typedef cudnnBackendDescriptor_t Desc;

static bool make(cudnnBackendDescriptorType_t t, Desc *d) { return dnn(cudnnBackendCreateDescriptor(t, d), "create"); }

static bool tensor(Desc *d, int64_t uid, cudnnDataType_t dt, const int64_t dims[3], const int64_t strides[3],
                   bool is_virtual) {
    const int64_t align = 16;
    if (!make(CUDNN_BACKEND_TENSOR_DESCRIPTOR, d)) return false;
    DNN(cudnnBackendSetAttribute(*d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt));
    DNN(cudnnBackendSetAttribute(*d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 3, dims));
    DNN(cudnnBackendSetAttribute(*d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 3, strides));
    DNN(cudnnBackendSetAttribute(*d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid));
    DNN(cudnnBackendSetAttribute(*d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align));
    DNN(cudnnBackendSetAttribute(*d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual));
    return dnn(cudnnBackendFinalize(*d), "tensor");
}

// y = mode(x[, b]) (forward modes) or dx = mode(x, dy) (backward modes, `bwd`), computed in FP32.
static bool pointwise(Desc *op, cudnnPointwiseMode_t mode, Desc x, Desc b, Desc y, bool bwd = false) {
    Desc pw;
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    if (!make(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, &pw)) return false;
    DNN(cudnnBackendSetAttribute(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode));
    DNN(cudnnBackendSetAttribute(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &f32));
    DNN(cudnnBackendFinalize(pw));
    if (!make(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, op)) return false;
    DNN(cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                 &pw));
    DNN(cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x));
    if (bwd) {
        DNN(cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_POINTWISE_DYDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b));
        DNN(cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_POINTWISE_DXDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y));
    } else {
        if (b)
            DNN(cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                         &b));
        DNN(cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y));
    }
    return dnn(cudnnBackendFinalize(*op), "pointwise op");
}

static bool matmul(Desc *op, Desc a, Desc b, Desc c) {
    Desc mm;
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    if (!make(CUDNN_BACKEND_MATMUL_DESCRIPTOR, &mm)) return false;
    DNN(cudnnBackendSetAttribute(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32));
    DNN(cudnnBackendFinalize(mm));
    if (!make(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, op)) return false;
    DNN(cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a));
    DNN(cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b));
    DNN(cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c));
    DNN(cudnnBackendSetAttribute(*op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm));
    return dnn(cudnnBackendFinalize(*op), "matmul op");
}

// Every execution plan the heuristics (mode A, then the fallback list) offer for the graph of `ops`.
static bool plans(cudnnHandle_t h, Desc *ops, int n, std::vector<Desc> *out, std::vector<int64_t> *ws) {
    Desc graph;
    if (!make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &graph)) return false;
    DNN(cudnnBackendSetAttribute(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, n, ops));
    DNN(cudnnBackendSetAttribute(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h));
    DNN(cudnnBackendFinalize(graph));
    const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    for (cudnnBackendHeurMode_t mode : modes) {
        Desc heur;
        if (!make(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur)) return false;
        DNN(cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                     &graph));
        DNN(cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode));
        if (cudnnBackendFinalize(heur) != CUDNN_STATUS_SUCCESS) continue;
        int64_t count = 0;
        if (cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                                     nullptr) != CUDNN_STATUS_SUCCESS)
            continue;
        if (count > 4) count = 4;  // runtime-fusion plans compile at finalize: a few are enough to see
        std::vector<Desc> cfgs(count);
        for (auto &c : cfgs)
            if (!make(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &c)) return false;
        int64_t got = 0;
        if (count == 0 || cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                                   count, &got, cfgs.data()) != CUDNN_STATUS_SUCCESS)
            got = 0;
        printf("  heuristics %s: %lld configurations\n", mode == CUDNN_HEUR_MODE_A ? "mode A" : "fallback",
               (long long)got);
        for (int64_t i = 0; i < got; i++) {
            Desc plan;
            if (!make(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan)) return false;
            DNN(cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h));
            DNN(cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                         1, &cfgs[i]));
            const cudnnStatus_t fs = cudnnBackendFinalize(plan);
            if (fs != CUDNN_STATUS_SUCCESS) {
                printf("    config %lld: %s\n", (long long)i, cudnnGetErrorString(fs));
                continue;
            }
            int64_t w = 0, k = 0;
            cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &k, &w);
            out->push_back(plan);
            ws->push_back(w);
        }
    }
    return true;
}

static bool execute(cudnnHandle_t h, Desc plan, void *const *ptrs, const int64_t *uids, int n, void *workspace) {
    Desc vp;
    if (!make(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp)) return false;
    DNN(cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs));
    DNN(cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids));
    DNN(cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace));
    DNN(cudnnBackendFinalize(vp));
    const bool ok = dnn(cudnnBackendExecute(h, plan, vp), "execute");
    cudnnBackendDestroyDescriptor(vp);
    return ok;
}

__global__ void fill(__nv_bfloat16 *p, size_t n, unsigned seed, float scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned x = (unsigned)i * 2654435761u ^ seed;
        x ^= x >> 13;
        x *= 0x5bd1e995u;
        x ^= x >> 15;
        p[i] = __float2bfloat16(scale * ((float)(x & 0xffff) / 32768.f - 1.f));
    }
}

// D(m, n) = op(A) op(B), column-major, BF16 out with leading dimension ldd, cuBLASLt's first heuristic choice.
struct Gemm {
    cublasLtHandle_t lt;
    void *ws;
    size_t ws_bytes = 32u << 20;
    void run(int ta, int tb, int m, int n, int k, const void *A, int lda, const void *B, int ldb, void *D, int ldd) {
        cublasLtMatmulDesc_t desc;
        CB(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
        CB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &oa, sizeof oa));
        CB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &ob, sizeof ob));
        cublasLtMatrixLayout_t la, lb, ld;
        CB(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, ta ? k : m, ta ? m : k, lda));
        CB(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, tb ? n : k, tb ? k : n, ldb));
        CB(cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, m, n, ldd));
        cublasLtMatmulPreference_t pref;
        CB(cublasLtMatmulPreferenceCreate(&pref));
        CB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                sizeof ws_bytes));
        cublasLtMatmulHeuristicResult_t res;
        int nres = 0;
        CB(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, ld, ld, pref, 1, &res, &nres));
        const float one = 1.f, zero = 0.f;
        CB(cublasLtMatmul(lt, desc, &one, A, la, B, lb, &zero, D, ld, D, ld, &res.algo, ws, ws_bytes, 0));
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(la);
        cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(ld);
        cublasLtMatmulDescDestroy(desc);
    }
};

template <typename F>
static double time_us(F &&f, int iters = 10) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 3; i++) f();
    CK(cudaEventRecord(a));
    for (int i = 0; i < iters; i++) f();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return ms * 1e3 / iters;
}

// max |x - y| over max |y| on the first rows (at most 512) of two N x F matrices with row strides sx and sy.
static double rel_diff(const __nv_bfloat16 *x, int sx, const __nv_bfloat16 *y, int sy, int N, int F) {
    if (N > 512) N = 512;
    std::vector<__nv_bfloat16> hx((size_t)N * F), hy((size_t)N * F);
    CK(cudaMemcpy2D(hx.data(), F * 2, x, (size_t)sx * 2, (size_t)F * 2, N, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy2D(hy.data(), F * 2, y, (size_t)sy * 2, (size_t)F * 2, N, cudaMemcpyDeviceToHost));
    double md = 0, my = 0;
    for (size_t i = 0; i < hx.size(); i++) {
        const double a = __bfloat162float(hx[i]), b = __bfloat162float(hy[i]);
        md = fmax(md, fabs(a - b));
        my = fmax(my, fabs(b));
    }
    return my > 0 ? md / my : md;
}

int main(int argc, char **argv) {
    const int N = argc > 1 ? atoi(argv[1]) : 16384, C = 1536, F = 8960;
    cudnnHandle_t h;
    if (cudnnCreate(&h) != CUDNN_STATUS_SUCCESS) {
        fprintf(stderr, "cudnnCreate failed\n");
        return 1;
    }
    printf("cuDNN %zu, N %d C %d F %d\n", cudnnGetVersion(), N, C, F);
    Gemm gemm;
    CB(cublasLtCreate(&gemm.lt));
    CK(cudaMalloc(&gemm.ws, gemm.ws_bytes));
    __nv_bfloat16 *x, *wgu, *wdown, *dres, *gu, *gu2, *sw, *sw2, *dsw, *dgu, *dgu2;
    const size_t NF = (size_t)N * F;
    CK(cudaMalloc(&x, (size_t)N * C * 2));
    CK(cudaMalloc(&wgu, (size_t)2 * F * C * 2));
    CK(cudaMalloc(&wdown, (size_t)C * F * 2));
    CK(cudaMalloc(&dres, (size_t)N * C * 2));
    CK(cudaMalloc(&gu, 2 * NF * 2));
    CK(cudaMalloc(&gu2, 2 * NF * 2));
    CK(cudaMalloc(&sw, NF * 2));
    CK(cudaMalloc(&sw2, NF * 2));
    CK(cudaMalloc(&dsw, NF * 2));
    CK(cudaMalloc(&dgu, 2 * NF * 2));
    CK(cudaMalloc(&dgu2, 2 * NF * 2));
    fill<<<2048, 256>>>(x, (size_t)N * C, 1, 1.0f);
    fill<<<2048, 256>>>(wgu, (size_t)2 * F * C, 2, 0.05f);
    fill<<<2048, 256>>>(wdown, (size_t)C * F, 3, 0.02f);
    fill<<<2048, 256>>>(dres, (size_t)N * C, 4, 1.0f);
    const double gemm_flop = 2.0 * N * (double)C * F;
    kl_bf16 *gu_k = reinterpret_cast<kl_bf16 *>(gu), *sw_k = reinterpret_cast<kl_bf16 *>(sw);
    kl_bf16 *dsw_k = reinterpret_cast<kl_bf16 *>(dsw), *dgu_k = reinterpret_cast<kl_bf16 *>(dgu);

    // unfused reference, as kiln runs it: gate+up in one product, SwiGLU; dsw = dres wdown, SwiGLU backward
    auto fwd_ref = [&] {
        gemm.run(1, 0, 2 * F, N, C, wgu, C, x, C, gu, 2 * F);
        kl_swiglu_forward_cuda(sw_k, gu_k, N, F, nullptr);
    };
    auto bwd_ref = [&] {
        gemm.run(0, 0, F, N, C, wdown, F, dres, C, dsw, F);
        kl_swiglu_backward_cuda(dgu_k, dsw_k, gu_k, N, F, nullptr);
    };
    const double t_gu = time_us([&] { gemm.run(1, 0, 2 * F, N, C, wgu, C, x, C, gu, 2 * F); });
    const double t_up = time_us([&] { gemm.run(1, 0, F, N, C, wgu + (size_t)F * C, C, x, C, gu2 + F, 2 * F); });
    const double t_fwd_ref = time_us(fwd_ref), t_dsw = time_us([&] {
        gemm.run(0, 0, F, N, C, wdown, F, dres, C, dsw, F);
    });
    const double t_bwd_ref = time_us(bwd_ref);
    printf("unfused: gate+up product %.1f us (%.0f TFLOP/s), + SwiGLU %.1f us; up product alone %.1f us\n", t_gu,
           2 * gemm_flop / t_gu / 1e6, t_fwd_ref, t_up);
    printf("unfused: dsw product %.1f us (%.0f TFLOP/s), + SwiGLU backward %.1f us\n", t_dsw, gemm_flop / t_dsw / 1e6,
           t_bwd_ref);
    fwd_ref();
    bwd_ref();
    CK(cudaDeviceSynchronize());

    void *cws = nullptr;
    size_t cws_bytes = 0;
    auto ensure_ws = [&](int64_t need) {
        if ((size_t)need <= cws_bytes) return;
        if (cws) CK(cudaFree(cws));
        CK(cudaMalloc(&cws, (size_t)need));
        cws_bytes = (size_t)need;
    };

    // ---- forward graph: G = X Wg^T (stored), sw = swish(G) * U; G either the product's own output or written
    // through an identity node from the FP32 product ----
    for (int via_identity = 0; via_identity < 2; via_identity++) {
        printf("forward graph: matmul -> %sG (BF16, stored) -> swish -> * U -> sw\n",
               via_identity ? "FP32 -> identity -> " : "");
        const int64_t xd[3] = {1, N, C}, xs[3] = {(int64_t)N * C, C, 1};
        const int64_t wd[3] = {1, C, F}, wsd[3] = {(int64_t)F * C, 1, C};  // Wg^T: element (k, f) at f*C + k
        const int64_t od[3] = {1, N, F}, gs[3] = {(int64_t)N * 2 * F, 2 * F, 1}, ss[3] = {(int64_t)N * F, F, 1};
        Desc tx, tw, tg, tu, tsw, ts, tacc, ops[4];
        const cudnnDataType_t b16 = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
        bool ok = tensor(&tx, 1, b16, xd, xs, false) && tensor(&tw, 2, b16, wd, wsd, false) &&
                  tensor(&tg, 3, b16, od, gs, false) && tensor(&tu, 4, b16, od, gs, false) &&
                  tensor(&tsw, 5, b16, od, ss, false) && tensor(&ts, 100, f32, od, ss, true) &&
                  tensor(&tacc, 101, f32, od, ss, true);
        int n = 0;
        if (ok && via_identity)
            ok = matmul(&ops[n++], tx, tw, tacc) && pointwise(&ops[n++], CUDNN_POINTWISE_IDENTITY, tacc, nullptr, tg) &&
                 pointwise(&ops[n++], CUDNN_POINTWISE_SWISH_FWD, tacc, nullptr, ts);
        else if (ok)
            ok = matmul(&ops[n++], tx, tw, tg) && pointwise(&ops[n++], CUDNN_POINTWISE_SWISH_FWD, tg, nullptr, ts);
        if (ok) ok = pointwise(&ops[n++], CUDNN_POINTWISE_MUL, ts, tu, tsw);
        std::vector<Desc> pl;
        std::vector<int64_t> wsz;
        if (ok) ok = plans(h, ops, n, &pl, &wsz);
        // U by cuBLASLt into the up half of gu2, then the graph writes G into the gate half and sw into sw2
        gemm.run(1, 0, F, N, C, wgu + (size_t)F * C, C, x, C, gu2 + F, 2 * F);
        for (size_t i = 0; ok && i < pl.size(); i++) {
            ensure_ws(wsz[i]);
            void *ptrs[5] = {x, wgu, gu2, gu2 + F, sw2};
            const int64_t uids[5] = {1, 2, 3, 4, 5};
            if (!execute(h, pl[i], ptrs, uids, 5, cws)) continue;
            const double t = time_us([&] { execute(h, pl[i], ptrs, uids, 5, cws); });
            CK(cudaDeviceSynchronize());
            printf("  plan %zu: %.1f us (%.0f TFLOP/s of its product), + up product = %.1f us vs unfused %.1f us; "
                   "sw rel diff %.2e, G rel diff %.2e, workspace %lld\n",
                   i, t, gemm_flop / t / 1e6, t + t_up, t_fwd_ref, rel_diff(sw2, F, sw, F, N, F),
                   rel_diff(gu2, 2 * F, gu, 2 * F, N, F), (long long)wsz[i]);
        }
        if (ok && pl.empty()) printf("  no engine accepted the forward graph\n");
    }

    // ---- backward graph: dS = dres Wdown; dG = swish'(G) * dS * U; dU = swish(G) * dS ----
    {
        printf("backward graph: matmul -> dS (virtual) -> dG = swish_bwd(G, dS * U), dU = swish(G) * dS\n");
        const int64_t ad[3] = {1, N, C}, as[3] = {(int64_t)N * C, C, 1};
        const int64_t bd[3] = {1, C, F}, bs[3] = {(int64_t)C * F, F, 1};  // Wdown: element (c, f) at c*F + f
        const int64_t od[3] = {1, N, F}, gs[3] = {(int64_t)N * 2 * F, 2 * F, 1}, vs[3] = {(int64_t)N * F, F, 1};
        Desc ta, tb, tg, tu, tdg, tdu, tds, tt, tsg, ops[5];
        const cudnnDataType_t b16 = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
        bool ok = tensor(&ta, 1, b16, ad, as, false) && tensor(&tb, 2, b16, bd, bs, false) &&
                  tensor(&tg, 3, b16, od, gs, false) && tensor(&tu, 4, b16, od, gs, false) &&
                  tensor(&tdg, 5, b16, od, gs, false) && tensor(&tdu, 6, b16, od, gs, false) &&
                  tensor(&tds, 100, f32, od, vs, true) && tensor(&tt, 101, f32, od, vs, true) &&
                  tensor(&tsg, 102, f32, od, vs, true) && matmul(&ops[0], ta, tb, tds) &&
                  pointwise(&ops[1], CUDNN_POINTWISE_MUL, tds, tu, tt) &&
                  pointwise(&ops[2], CUDNN_POINTWISE_SWISH_BWD, tg, tt, tdg, true) &&
                  pointwise(&ops[3], CUDNN_POINTWISE_SWISH_FWD, tg, nullptr, tsg) &&
                  pointwise(&ops[4], CUDNN_POINTWISE_MUL, tds, tsg, tdu);
        std::vector<Desc> pl;
        std::vector<int64_t> wsz;
        if (ok) ok = plans(h, ops, 5, &pl, &wsz);
        for (size_t i = 0; ok && i < pl.size(); i++) {
            ensure_ws(wsz[i]);
            void *ptrs[6] = {dres, wdown, gu, gu + F, dgu2, dgu2 + F};
            const int64_t uids[6] = {1, 2, 3, 4, 5, 6};
            if (!execute(h, pl[i], ptrs, uids, 6, cws)) continue;
            const double t = time_us([&] { execute(h, pl[i], ptrs, uids, 6, cws); });
            CK(cudaDeviceSynchronize());
            printf("  plan %zu: %.1f us (%.0f TFLOP/s) vs unfused %.1f us; dG rel diff %.2e, dU rel diff %.2e, "
                   "workspace %lld\n",
                   i, t, gemm_flop / t / 1e6, t_bwd_ref, rel_diff(dgu2, 2 * F, dgu, 2 * F, N, F),
                   rel_diff(dgu2 + F, 2 * F, dgu + F, 2 * F, N, F), (long long)wsz[i]);
        }
        if (ok && pl.empty()) printf("  no engine accepted the backward graph\n");
    }
    return 0;
}
