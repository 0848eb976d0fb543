// device_mem.cu — the categorised device / pinned-host allocator with memory.device_limit, and thin C wrappers
// of the CUDA runtime calls host code needs (src/device_mem.h). Only bookkeeping: no kernels here.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cuda_check.cuh"
#include "device_mem.h"

namespace {

struct Entry {
    void *p;
    size_t bytes;
    kl_mem_category cat;
    int pinned;
    char name[64];
};

const char *const kCategoryNames[KL_MEM_N_CATEGORIES] = {"weights",     "master",    "grads", "optimizer",
                                                         "activations", "workspace", "comm",  "other"};

}  // namespace

struct kl_devmem {
    int device;
    size_t limit;       // 0 = none
    size_t total;       // device size
    size_t bytes[KL_MEM_N_CATEGORIES];
    size_t pinned_bytes;
    Entry *e;
    int n, cap;
    char gpu[256];
};

extern "C" const char *kl_mem_category_name(kl_mem_category c) {
    return (int)c >= 0 && (int)c < (int)KL_MEM_N_CATEGORIES ? kCategoryNames[c] : "?";
}

extern "C" kl_status kl_devmem_create(kl_devmem **out, int device, size_t limit_bytes) {
    *out = nullptr;
    KL_CUDA_CHECK(cudaSetDevice(device));
    KL_CUDA_CHECK(cudaFree(nullptr));  // creates the context now, so its memory shows in every later reading
    size_t fr = 0, tot = 0;
    KL_CUDA_CHECK(cudaMemGetInfo(&fr, &tot));
    if (limit_bytes > 0 && tot - fr > limit_bytes) {
        char a[32], b[32];
        return kl_error(KL_ERR_OOM, "memory.device_limit (%s) is below what device %d already uses after creating the "
                        "CUDA context (%s)", kl_format_bytes((double)limit_bytes, a, sizeof a), device,
                        kl_format_bytes((double)(tot - fr), b, sizeof b));
    }
    kl_devmem *dm = static_cast<kl_devmem *>(kl_calloc(1, sizeof(kl_devmem), "device memory table"));
    if (!dm) return KL_ERR_OOM;
    dm->device = device;
    dm->limit = limit_bytes;
    dm->total = tot;
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) == cudaSuccess)
        snprintf(dm->gpu, sizeof dm->gpu, "%s", prop.name);
    else
        snprintf(dm->gpu, sizeof dm->gpu, "device %d", device);
    *out = dm;
    return KL_OK;
}

extern "C" void kl_devmem_destroy(kl_devmem *dm) {
    if (!dm) return;
    for (int i = 0; i < dm->n; i++) {
        if (dm->e[i].pinned)
            cudaFreeHost(dm->e[i].p);
        else
            cudaFree(dm->e[i].p);
    }
    free(dm->e);
    free(dm);
}

static kl_status add_entry(kl_devmem *dm, void *p, size_t bytes, kl_mem_category cat, int pinned, const char *name) {
    if (dm->n == dm->cap) {
        int cap = dm->cap ? 2 * dm->cap : 64;
        Entry *e = static_cast<Entry *>(realloc(dm->e, (size_t)cap * sizeof(Entry)));
        if (!e) return kl_error(KL_ERR_OOM, "device memory table: out of host memory");
        dm->e = e;
        dm->cap = cap;
    }
    Entry *x = &dm->e[dm->n++];
    x->p = p;
    x->bytes = bytes;
    x->cat = cat;
    x->pinned = pinned;
    snprintf(x->name, sizeof x->name, "%s", name ? name : "?");
    if (pinned)
        dm->pinned_bytes += bytes;
    else
        dm->bytes[cat] += bytes;
    return KL_OK;
}

static size_t device_used_now(void) {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return tot - fr;
}

extern "C" kl_status kl_alloc(kl_devmem *dm, void **out, size_t bytes, kl_mem_category cat, const char *name) {
    *out = nullptr;
    if ((int)cat < 0 || (int)cat >= (int)KL_MEM_N_CATEGORIES)
        return kl_error(KL_ERR_INVALID, "kl_alloc(%s): unknown memory category %d", name, (int)cat);
    if (bytes == 0) return KL_OK;
    char need[32], used_s[32], lim[32], ours[32];
    const size_t used = device_used_now();
    if (dm->limit > 0 && used + bytes > dm->limit)
        return kl_error(KL_ERR_OOM, "memory.device_limit %s: %s buffer '%s' (%s) does not fit; %s already in use "
                        "(%s of it kiln's buffers, the rest the CUDA context and libraries)",
                        kl_format_bytes((double)dm->limit, lim, sizeof lim), kl_mem_category_name(cat), name,
                        kl_format_bytes((double)bytes, need, sizeof need),
                        kl_format_bytes((double)used, used_s, sizeof used_s),
                        kl_format_bytes((double)kl_devmem_bytes(dm, KL_MEM_N_CATEGORIES), ours, sizeof ours));
    void *p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return kl_error(KL_ERR_OOM, "out of device memory on %s: %s buffer '%s' (%s) does not fit; %s in use (%s of it "
                        "kiln's buffers): %s", dm->gpu, kl_mem_category_name(cat), name,
                        kl_format_bytes((double)bytes, need, sizeof need),
                        kl_format_bytes((double)used, used_s, sizeof used_s),
                        kl_format_bytes((double)kl_devmem_bytes(dm, KL_MEM_N_CATEGORIES), ours, sizeof ours),
                        cudaGetErrorString(e));
    }
    kl_status st = add_entry(dm, p, bytes, cat, 0, name);
    if (st != KL_OK) {
        cudaFree(p);
        return st;
    }
    *out = p;
    return KL_OK;
}

extern "C" kl_status kl_alloc_pinned(kl_devmem *dm, void **out, size_t bytes, kl_mem_category cat, const char *name) {
    *out = nullptr;
    if ((int)cat < 0 || (int)cat >= (int)KL_MEM_N_CATEGORIES)
        return kl_error(KL_ERR_INVALID, "kl_alloc_pinned(%s): unknown memory category %d", name, (int)cat);
    if (bytes == 0) return KL_OK;
    void *p = nullptr;
    cudaError_t e = cudaMallocHost(&p, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        char need[32];
        return kl_error(KL_ERR_OOM, "cannot allocate %s of pinned host memory for %s buffer '%s': %s",
                        kl_format_bytes((double)bytes, need, sizeof need), kl_mem_category_name(cat), name,
                        cudaGetErrorString(e));
    }
    kl_status st = add_entry(dm, p, bytes, cat, 1, name);
    if (st != KL_OK) {
        cudaFreeHost(p);
        return st;
    }
    *out = p;
    return KL_OK;
}

extern "C" void kl_free(kl_devmem *dm, void *p) {
    if (!dm || !p) return;
    for (int i = 0; i < dm->n; i++) {
        if (dm->e[i].p != p) continue;
        if (dm->e[i].pinned) {
            cudaFreeHost(p);
            dm->pinned_bytes -= dm->e[i].bytes;
        } else {
            cudaFree(p);
            dm->bytes[dm->e[i].cat] -= dm->e[i].bytes;
        }
        dm->e[i] = dm->e[--dm->n];
        return;
    }
}

extern "C" size_t kl_devmem_bytes(const kl_devmem *dm, kl_mem_category cat) {
    if ((int)cat >= 0 && (int)cat < (int)KL_MEM_N_CATEGORIES) return dm->bytes[cat];
    size_t s = 0;
    for (int c = 0; c < KL_MEM_N_CATEGORIES; c++) s += dm->bytes[c];
    return s;
}

extern "C" size_t kl_devmem_pinned_bytes(const kl_devmem *dm) { return dm->pinned_bytes; }
extern "C" size_t kl_devmem_device_used(const kl_devmem *dm) {
    (void)dm;
    return device_used_now();
}
extern "C" size_t kl_devmem_limit(const kl_devmem *dm) { return dm->limit; }
extern "C" size_t kl_devmem_capacity(const kl_devmem *dm) { return dm->limit ? dm->limit : dm->total; }

extern "C" void kl_devmem_print(const kl_devmem *dm, FILE *f) {
    char a[32], b[32], c[32];
    const size_t used = device_used_now(), ours = kl_devmem_bytes(dm, KL_MEM_N_CATEGORIES);
    fprintf(f, "device memory on %s (%s", dm->gpu, kl_format_bytes((double)dm->total, a, sizeof a));
    if (dm->limit) fprintf(f, ", memory.device_limit %s", kl_format_bytes((double)dm->limit, b, sizeof b));
    fprintf(f, "):\n");
    for (int k = 0; k < KL_MEM_N_CATEGORIES; k++)
        if (dm->bytes[k])
            fprintf(f, "  %-12s %12s\n", kCategoryNames[k], kl_format_bytes((double)dm->bytes[k], a, sizeof a));
    fprintf(f, "  %-12s %12s  (CUDA context, cuBLAS/cuDNN handles: not allocated by kiln)\n", "untracked",
            kl_format_bytes(used > ours ? (double)(used - ours) : 0.0, a, sizeof a));
    fprintf(f, "  %-12s %12s  of %s\n", "total", kl_format_bytes((double)used, b, sizeof b),
            kl_format_bytes((double)(dm->limit ? dm->limit : dm->total), c, sizeof c));
    if (dm->pinned_bytes)
        fprintf(f, "  %-12s %12s\n", "pinned host", kl_format_bytes((double)dm->pinned_bytes, a, sizeof a));
}

// ---- runtime wrappers ------------------------------------------------------------------------------

extern "C" kl_status kl_cuda_stream_create(cudaStream_t *out) {
    *out = nullptr;
    KL_CUDA_CHECK(cudaStreamCreateWithFlags(out, cudaStreamNonBlocking));
    return KL_OK;
}
extern "C" void kl_cuda_stream_destroy(cudaStream_t s) {
    if (s) cudaStreamDestroy(s);
}
extern "C" kl_status kl_cuda_stream_sync(cudaStream_t s) {
    KL_CUDA_CHECK(cudaStreamSynchronize(s));
    return KL_OK;
}
extern "C" kl_status kl_cuda_event_create(cudaEvent_t *out) {
    *out = nullptr;
    KL_CUDA_CHECK(cudaEventCreateWithFlags(out, cudaEventDisableTiming));
    return KL_OK;
}
extern "C" void kl_cuda_event_destroy(cudaEvent_t e) {
    if (e) cudaEventDestroy(e);
}
extern "C" kl_status kl_cuda_event_record(cudaEvent_t e, cudaStream_t s) {
    KL_CUDA_CHECK(cudaEventRecord(e, s));
    return KL_OK;
}
extern "C" kl_status kl_cuda_event_sync(cudaEvent_t e) {
    KL_CUDA_CHECK(cudaEventSynchronize(e));
    return KL_OK;
}
struct kl_cuda_graph {
    cudaGraphExec_t exec;
};
extern "C" kl_status kl_cuda_capture_begin(cudaStream_t s) {
    // thread-local: another thread's unsafe call (cudaMalloc, a sync) does not invalidate this capture
    KL_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    return KL_OK;
}
extern "C" kl_status kl_cuda_capture_end(cudaStream_t s, kl_cuda_graph **out) {
    if (out) *out = nullptr;
    cudaGraph_t graph = nullptr;
    const cudaError_t e = cudaStreamEndCapture(s, &graph);
    if (e != cudaSuccess || !out) {
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();  // clear the (non-sticky) error a failed capture leaves behind
        if (!out) return KL_OK;
        return kl_error(kl_cuda_status(e), "CUDA graph capture: %s", cudaGetErrorString(e));
    }
    kl_cuda_graph *g = static_cast<kl_cuda_graph *>(kl_calloc(1, sizeof(kl_cuda_graph), "CUDA graph"));
    if (!g) {
        cudaGraphDestroy(graph);
        return KL_ERR_OOM;
    }
    const cudaError_t ie = cudaGraphInstantiate(&g->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (ie != cudaSuccess) {
        free(g);
        cudaGetLastError();
        return kl_error(kl_cuda_status(ie), "CUDA graph instantiation: %s", cudaGetErrorString(ie));
    }
    *out = g;
    return KL_OK;
}
extern "C" kl_status kl_cuda_graph_launch(kl_cuda_graph *g, cudaStream_t s) {
    KL_CUDA_CHECK(cudaGraphLaunch(g->exec, s));
    return KL_OK;
}
extern "C" void kl_cuda_graph_destroy(kl_cuda_graph *g) {
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    free(g);
}
extern "C" kl_status kl_cuda_h2d_async(void *dst, const void *src, size_t bytes, cudaStream_t s) {
    if (bytes) KL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
    return KL_OK;
}
extern "C" kl_status kl_cuda_d2h_async(void *dst, const void *src, size_t bytes, cudaStream_t s) {
    if (bytes) KL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
    return KL_OK;
}
extern "C" kl_status kl_cuda_d2d_async(void *dst, const void *src, size_t bytes, cudaStream_t s) {
    if (bytes) KL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
    return KL_OK;
}
extern "C" kl_status kl_cuda_memset_async(void *dst, int value, size_t bytes, cudaStream_t s) {
    if (bytes) KL_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, s));
    return KL_OK;
}
extern "C" kl_status kl_cuda_check_last(const char *where) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return kl_error(kl_cuda_status(e), "%s: %s", where ? where : "CUDA", cudaGetErrorString(e));
    return KL_OK;
}
