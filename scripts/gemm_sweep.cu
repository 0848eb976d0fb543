// gemm_sweep.cu — cuBLASLt candidates for the Qwen2.5-1.5B products (attention qkv and out, MLP gate+up and down,
// LM head; forward, dinp, dw +=) timed two ways: a short burst (what a cool chip does) and a sustained run of
// SECONDS (default 1) after a quarter of that of warm-up, with the board energy from NVML (mJ per call) and the SM
// clock halfway through. At the H200's 700 W cap the sustained column is what training sees; docs/benchmarks.md
// ("Sustained GEMM tuning") has a run. The candidates are the heuristic's (h0..h7, what kiln's tuning pass
// chooses among) and, with SEARCH_TOP > 0, up to 8 more per cuBLASLt algorithm id (the heuristic limited to that
// id, s0..): all are burst-timed, and the SEARCH_TOP fastest of those beside the heuristic's also sustained.
// Split-K sums of BF16 outputs stay FP32, as kiln asks. Measurement aid, not part of the build:
//   nvcc -O2 -std=c++17 -arch=sm_90a scripts/gemm_sweep.cu -o gemm_sweep -lcublasLt -ldl
//   ./gemm_sweep [SECONDS] [OP_SUBSTRING] [TOKENS] [SEARCH_TOP]   # tokens per micro-batch: 16384 (B=16) default
// Two sustained rounds, the second in reverse order. The search's first run (H200, cuBLAS 13.0, 32768 tokens;
// docs/benchmarks.md, "Searched this session") found only id 21 kernels beyond the heuristic's id 66 ones, all
// 60-75% slower.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#define CK(x) check_cuda((x), #x)
#define CB(x) check_cublas((x), #x)

static void check_cuda(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return;
    fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    exit(1);
}
static void check_cublas(cublasStatus_t e, const char *what) {
    if (e == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "%s: cuBLAS status %d\n", what, (int)e);
    exit(1);
}

// The three NVML calls used, loaded at run time (the driver's library; nothing to link against).
struct Nvml {
    void *dev = nullptr;
    int (*energy)(void *, unsigned long long *) = nullptr;  // mJ since the driver loaded
    int (*clock)(void *, int, unsigned *) = nullptr;        // type 1 = SM clock, MHz
    bool open() {
        void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW);
        if (!h) return false;
        auto init = (int (*)(void))dlsym(h, "nvmlInit_v2");
        auto handle = (int (*)(unsigned, void **))dlsym(h, "nvmlDeviceGetHandleByIndex_v2");
        energy = (int (*)(void *, unsigned long long *))dlsym(h, "nvmlDeviceGetTotalEnergyConsumption");
        clock = (int (*)(void *, int, unsigned *))dlsym(h, "nvmlDeviceGetClockInfo");
        return init && handle && energy && clock && init() == 0 && handle(0, &dev) == 0;
    }
};

// Uniform(-1, 1) BF16 from a hash of the index (zeros would run faster than real data).
__global__ void fill(__nv_bfloat16 *p, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned x = (unsigned)i * 2654435761u ^ seed;
        x ^= x >> 13;
        x *= 0x5bd1e995u;
        x ^= x >> 15;
        p[i] = __float2bfloat16((float)(x & 0xffff) / 32768.f - 1.f);
    }
}

// A product in kiln's column-major view (kernels/cuda/matmul.cu): D(m, n) = op(A) op(B), FP32 D accumulates.
struct Op {
    const char *name;
    int ta, tb, m, n, k, f32;
};

// A candidate algorithm, its label (h: the heuristic's rank, s: found by the per-id search) and its burst time.
struct Cand {
    cublasLtMatmulAlgo_t algo;
    char label[8];
    double burst_us;
};

// The configuration of an algorithm, for the table: id, tile, stages, cluster and inner shape, split-K and its
// reduction scheme, CTA swizzling (each attribute read with its own width: the shapes are 16-bit).
static void describe(const cublasLtMatmulAlgo_t &a, char *out, size_t n) {
    int32_t id = 0, splitk = 0;
    uint32_t tile = 0, stages = 0, scheme = 0, swz = 0;
    uint16_t cluster = 0, inner = 0;
    size_t sz;
    cublasLtMatmulAlgoConfigGetAttribute(&a, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &sz);
    cublasLtMatmulAlgoConfigGetAttribute(&a, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &sz);
    cublasLtMatmulAlgoConfigGetAttribute(&a, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &sz);
    cublasLtMatmulAlgoConfigGetAttribute(&a, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cluster, sizeof cluster, &sz);
    cublasLtMatmulAlgoConfigGetAttribute(&a, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, &inner, sizeof inner, &sz);
    cublasLtMatmulAlgoConfigGetAttribute(&a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk, sizeof splitk, &sz);
    cublasLtMatmulAlgoConfigGetAttribute(&a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme, sizeof scheme, &sz);
    cublasLtMatmulAlgoConfigGetAttribute(&a, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swz, sizeof swz, &sz);
    snprintf(out, n, "id%d tile%u st%u cl%u in%u sk%d/%u sw%u", (int)id, tile, stages, (unsigned)cluster,
             (unsigned)inner, (int)splitk, scheme, swz);
}

int main(int argc, char **argv) {
    Nvml nvml;
    if (!nvml.open()) {
        fprintf(stderr, "gemm_sweep: NVML (libnvidia-ml.so.1) not available\n");
        return 1;
    }
    const double secs = argc > 1 ? atof(argv[1]) : 1.0;
    const int N = argc > 3 ? atoi(argv[3]) : 16384, search_top = argc > 4 ? atoi(argv[4]) : 0;
    if (secs <= 0 || N <= 0 || N % 8 || search_top < 0) {
        fprintf(stderr, "usage: gemm_sweep [SECONDS > 0] [OP_SUBSTRING] [TOKENS, a multiple of 8] [SEARCH_TOP >= 0]\n");
        return 2;
    }
    const int C = 1536, Q = 2048, F2 = 17920, F = 8960, V = 151936;
    std::vector<Op> ops = {
        {"qkv fwd", 1, 0, Q, N, C, 0},  {"qkv dinp", 0, 0, C, N, Q, 0},  {"qkv dw", 0, 1, C, Q, N, 1},
        {"out fwd", 1, 0, C, N, C, 0},  {"out dinp", 0, 0, C, N, C, 0},  {"out dw", 0, 1, C, C, N, 1},
        {"gu fwd", 1, 0, F2, N, C, 0},  {"gu dinp", 0, 0, C, N, F2, 0},  {"gu dw", 0, 1, C, F2, N, 1},
        {"down fwd", 1, 0, C, N, F, 0}, {"down dinp", 0, 0, F, N, C, 0}, {"down dw", 0, 1, F, C, N, 1},
        {"head fwd", 1, 0, V, N, C, 0}, {"head dinp", 0, 0, C, N, V, 0}, {"head dw", 0, 1, C, V, N, 1},
    };
    if (argc > 2 && argv[2][0]) {
        std::vector<Op> sel;
        for (const Op &o : ops)
            if (strstr(o.name, argv[2])) sel.push_back(o);
        ops = sel;
    }
    cublasLtHandle_t lt;
    CB(cublasLtCreate(&lt));
    size_t ws_bytes = 32u << 20;
    void *ws;
    CK(cudaMalloc(&ws, ws_bytes));
    // Buffers as large as the largest operand of each role among the selected products (A: the LM head's
    // weight, or the MLP down dW's activations at more than 16384 tokens).
    size_t na = 1, nb = 1, ndb = 1, ndf = 1;
    for (const Op &o : ops) {
        na = std::max(na, (size_t)o.m * o.k);
        nb = std::max(nb, (size_t)o.n * o.k);
        size_t &nd = o.f32 ? ndf : ndb;
        nd = std::max(nd, (size_t)o.m * o.n);
    }
    __nv_bfloat16 *A, *B, *Db;
    float *Df;
    CK(cudaMalloc(&A, na * 2));
    CK(cudaMalloc(&B, nb * 2));
    CK(cudaMalloc(&Db, ndb * 2));
    CK(cudaMalloc(&Df, ndf * 4));
    fill<<<4096, 256>>>(A, na, 1);
    fill<<<4096, 256>>>(B, nb, 2);
    CK(cudaMemset(Df, 0, ndf * 4));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    printf("tokens %d, workspace %zu MiB\n", N, ws_bytes >> 20);
    printf("%-10s %5s %9s %9s %9s %8s %6s %6s %s\n", "op", "cand", "burst_us", "sust_us", "mJ/call", "TFLOP/s", "W",
           "MHz", "algo");
    for (const Op &o : ops) {
        cublasLtMatmulDesc_t desc;
        CB(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        cublasOperation_t ta = o.ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = o.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
        CB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
        CB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
        const int ar = o.ta ? o.k : o.m, ac = o.ta ? o.m : o.k, br = o.tb ? o.n : o.k, bc = o.tb ? o.k : o.n;
        const cudaDataType_t dt = o.f32 ? CUDA_R_32F : CUDA_R_16BF;
        cublasLtMatrixLayout_t la, lb, ld;
        CB(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, ar, ac, ar));
        CB(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, br, bc, br));
        CB(cublasLtMatrixLayoutCreate(&ld, dt, o.m, o.n, o.m));
        cublasLtMatmulPreference_t pref;
        CB(cublasLtMatmulPreferenceCreate(&pref));
        CB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                sizeof ws_bytes));
        if (!o.f32) {  // as kiln's plans: split-K partial sums of a BF16 output stay FP32
            const uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
            CB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes,
                                                    sizeof schemes));
        }
        // h<rank> as kiln's tuning file counts ranks (the heuristic's valid results in order), s<n> the search's.
        std::vector<Cand> cands;
        int n_found = 0;
        auto add = [&](const cublasLtMatmulHeuristicResult_t &r, bool heuristic) {
            if (r.state != CUBLAS_STATUS_SUCCESS || r.workspaceSize > ws_bytes) return;
            for (const Cand &c : cands)
                if (memcmp(&c.algo, &r.algo, sizeof r.algo) == 0) return;
            Cand c = {r.algo, "", 0.0};
            snprintf(c.label, sizeof c.label, "%c%d", heuristic ? 'h' : 's', heuristic ? (int)cands.size() : n_found++);
            cands.push_back(c);
        };
        cublasLtMatmulHeuristicResult_t res[8];
        int nres = 0;
        CB(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, ld, ld, pref, 8, res, &nres));
        for (int i = 0; i < nres; i++) add(res[i], true);
        const size_t n_heur = cands.size();
        if (search_top > 0) {
            int ids[512], nids = 0;
            CB(cublasLtMatmulAlgoGetIds(lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF, dt, dt, 512, ids,
                                        &nids));
            const uint32_t mode = CUBLASLT_SEARCH_LIMITED_BY_ALGO_ID;
            CB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_SEARCH_MODE, &mode, sizeof mode));
            for (int d = 0; d < nids; d++) {
                cublasLtMatmulHeuristicResult_t r[8] = {};
                bool ok = true;
                for (int i = 0; i < 8 && ok; i++)
                    ok = cublasLtMatmulAlgoInit(lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF, dt, dt,
                                                ids[d], &r[i].algo) == CUBLAS_STATUS_SUCCESS;
                int nr = 0;
                if (ok && cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, ld, ld, pref, 8, r, &nr) ==
                              CUBLAS_STATUS_SUCCESS)
                    for (int i = 0; i < nr; i++) add(r[i], false);
            }
            printf("%-10s %zu heuristic and %d further candidates (%d algorithm ids)\n", o.name, n_heur, n_found,
                   nids);
        }
        const float alpha = 1.f, beta = o.f32 ? 1.f : 0.f;
        void *D = o.f32 ? (void *)Df : (void *)Db;
        const double flop = 2.0 * o.m * o.n * (double)o.k;
        auto run = [&](const Cand &c) {
            CB(cublasLtMatmul(lt, desc, &alpha, A, la, B, lb, &beta, D, ld, D, ld, &c.algo, ws, ws_bytes, 0));
        };
        // Burst: 3 calls of warm-up, then 10 timed (5 for the searched ones, which are many).
        for (size_t i = 0; i < cands.size(); i++) {
            const int timed = i < n_heur ? 10 : 5;
            for (int w = 0; w < 3; w++) run(cands[i]);
            float ms = 0;
            CK(cudaEventRecord(e0));
            for (int w = 0; w < timed; w++) run(cands[i]);
            CK(cudaEventRecord(e1));
            CK(cudaEventSynchronize(e1));
            CK(cudaEventElapsedTime(&ms, e0, e1));
            cands[i].burst_us = ms / timed * 1e3;
        }
        // Sustained: the heuristic's candidates and the search_top fastest of the others.
        std::vector<size_t> sel;
        for (size_t i = 0; i < n_heur; i++) sel.push_back(i);
        std::vector<size_t> found;
        for (size_t i = n_heur; i < cands.size(); i++) found.push_back(i);
        std::sort(found.begin(), found.end(),
                  [&](size_t x, size_t y) { return cands[x].burst_us < cands[y].burst_us; });
        for (size_t i = 0; i < found.size() && (int)i < search_top; i++) sel.push_back(found[i]);
        for (int round = 0; round < 2; round++)
            for (size_t ii = 0; ii < sel.size(); ii++) {
                const Cand &c = cands[sel[round ? sel.size() - 1 - ii : ii]];
                const int calls = (int)(secs * 1e6 / c.burst_us) + 1;
                for (int w = 0; w < calls / 4; w++) run(c);  // warm-up: reach the power limit
                CK(cudaDeviceSynchronize());
                unsigned long long ea = 0, eb = 0;
                unsigned mhz = 0;
                float ms = 0;
                nvml.energy(nvml.dev, &ea);
                CK(cudaEventRecord(e0));
                for (int w = 0; w < calls; w++) run(c);
                CK(cudaEventRecord(e1));
                usleep((useconds_t)(secs * 5e5));
                nvml.clock(nvml.dev, 1, &mhz);
                CK(cudaEventSynchronize(e1));
                nvml.energy(nvml.dev, &eb);
                CK(cudaEventElapsedTime(&ms, e0, e1));
                const double sustained = ms / calls * 1e3, mj = (double)(eb - ea) / calls;
                char cfg[96];
                describe(c.algo, cfg, sizeof cfg);
                printf("%-10s %5s %9.1f %9.1f %9.1f %8.0f %6.0f %6u %s%s\n", o.name, c.label, c.burst_us, sustained,
                       mj, flop / (sustained * 1e-6) / 1e12, (double)(eb - ea) / ms, mhz, cfg, round ? " (2nd)" : "");
                fflush(stdout);
            }
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(la);
        cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(ld);
        cublasLtMatmulDescDestroy(desc);
    }
    return 0;
}
