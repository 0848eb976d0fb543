/* device_mem.h — kiln's device memory accounting (DESIGN.md §5): every device and pinned-host allocation
 * goes through kl_alloc / kl_alloc_pinned with a category and a name, so a run can print where its memory
 * went and enforce memory.device_limit; plus the few CUDA runtime calls host C code needs (streams, events,
 * copies), so C files stay free of CUDA headers. Implemented in kernels/cuda/device_mem.cu (CUDA builds only). */
#ifndef KL_DEVICE_MEM_H
#define KL_DEVICE_MEM_H

#include <stddef.h>
#include <stdio.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st; /* cudaStream_t is `struct CUstream_st *` */
struct CUevent_st;  /* cudaEvent_t is `struct CUevent_st *` */

typedef enum {
    KL_MEM_WEIGHTS = 0, /* compute copies of the parameters (BF16) */
    KL_MEM_MASTER,      /* master weights (FP32) */
    KL_MEM_GRADS,       /* parameter gradients */
    KL_MEM_OPTIMIZER,   /* optimizer state */
    KL_MEM_ACTIVATIONS, /* what the forward keeps for the backward, and activation gradients */
    KL_MEM_WORKSPACE,   /* scratch of the ops (GEMM, attention, norms, LM head chunk) */
    KL_MEM_COMM,        /* communication buffers */
    KL_MEM_OTHER,       /* tables, token batches, small results */
    KL_MEM_N_CATEGORIES
} kl_mem_category;

const char *kl_mem_category_name(kl_mem_category c);

typedef struct kl_devmem kl_devmem;

/* Makes `device` current, creates its CUDA context (so the context's own memory is visible from the start)
 * and starts an empty table. limit_bytes = 0: no limit beyond the device's size. The limit counts everything
 * the device reports as used (CUDA context, cuBLAS/cuDNN handles and workspaces, kiln's buffers). */
kl_status kl_devmem_create(kl_devmem **out, int device, size_t limit_bytes);
/* Frees every allocation still in the table, then the table. NULL is fine. */
void kl_devmem_destroy(kl_devmem *dm);

/* Device memory (cudaMalloc: 256-byte aligned, uninitialised). KL_ERR_OOM when the limit or the device is
 * exhausted, with a message naming `name`, its category and size, and what is already in use. bytes = 0
 * gives *out = NULL and KL_OK. */
kl_status kl_alloc(kl_devmem *dm, void **out, size_t bytes, kl_mem_category cat, const char *name);
/* Page-locked host memory (for asynchronous copies); counted separately, not against the device limit. */
kl_status kl_alloc_pinned(kl_devmem *dm, void **out, size_t bytes, kl_mem_category cat, const char *name);
/* Releases a pointer from either function above; NULL is fine; unknown pointers are ignored. */
void kl_free(kl_devmem *dm, void *p);

/* Device bytes kiln holds in category `cat` (KL_MEM_N_CATEGORIES: all categories). */
size_t kl_devmem_bytes(const kl_devmem *dm, kl_mem_category cat);
size_t kl_devmem_pinned_bytes(const kl_devmem *dm);
/* What the device reports as used right now (total - free): kiln's buffers, the CUDA context, library
 * handles; this is the number the limit applies to. */
size_t kl_devmem_device_used(const kl_devmem *dm);
size_t kl_devmem_limit(const kl_devmem *dm);
/* The memory this run may use: memory.device_limit when set, else the device's size. */
size_t kl_devmem_capacity(const kl_devmem *dm);
/* The memory table: one line per category, the untracked rest (context and libraries), the total against
 * the limit and the device size, and pinned host memory. */
void kl_devmem_print(const kl_devmem *dm, FILE *f);

/* ---- runtime calls for host C code (errors carry CUDA's message and the call) --------------------- */

kl_status kl_cuda_stream_create(struct CUstream_st **out);
void kl_cuda_stream_destroy(struct CUstream_st *s);
kl_status kl_cuda_stream_sync(struct CUstream_st *s);
kl_status kl_cuda_event_create(struct CUevent_st **out);
void kl_cuda_event_destroy(struct CUevent_st *e);
kl_status kl_cuda_event_record(struct CUevent_st *e, struct CUstream_st *s);
kl_status kl_cuda_event_sync(struct CUevent_st *e);
/* CUDA graphs: what `s` is given between capture_begin and capture_end is recorded, not run, and becomes an
 * executable graph (NULL *out: the capture is dropped, e.g. after an error in it). capture_end always leaves
 * the stream out of capture mode. Launching replays the recorded work on `s`. */
typedef struct kl_cuda_graph kl_cuda_graph;
kl_status kl_cuda_capture_begin(struct CUstream_st *s);
kl_status kl_cuda_capture_end(struct CUstream_st *s, kl_cuda_graph **out);
kl_status kl_cuda_graph_launch(kl_cuda_graph *g, struct CUstream_st *s);
void kl_cuda_graph_destroy(kl_cuda_graph *g); /* NULL is fine */
/* Asynchronous on `s` (pinned host memory for real overlap; pageable works but stages through the driver). */
kl_status kl_cuda_h2d_async(void *dst, const void *src, size_t bytes, struct CUstream_st *s);
kl_status kl_cuda_d2h_async(void *dst, const void *src, size_t bytes, struct CUstream_st *s);
kl_status kl_cuda_d2d_async(void *dst, const void *src, size_t bytes, struct CUstream_st *s);
kl_status kl_cuda_memset_async(void *dst, int value, size_t bytes, struct CUstream_st *s);
/* Any error a kernel raised since the last check (a fault inside a kernel surfaces here or at a sync). */
kl_status kl_cuda_check_last(const char *where);

#ifdef __cplusplus
}
#endif
#endif
