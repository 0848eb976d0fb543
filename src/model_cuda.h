/* model_cuda.h — the transformer of model.h on one GPU in BF16: the same parameter table (names, kinds,
 * order) as the CPU kl_model, held on the device as FP32 master weights, a BF16 compute copy and FP32
 * gradients; BF16 activations with the same per-layer buffers as model.c; forward, the chunked LM head with
 * the fused softmax cross-entropy, and backward, all queued on one stream through the kernels/<op>_cuda.h
 * launchers. Host C only; in a build without CUDA every function returns KL_ERR_UNSUPPORTED. */
#ifndef KL_MODEL_CUDA_H
#define KL_MODEL_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_common.h"
#include "device_mem.h"
#include "kl_base.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_model_cuda kl_model_cuda;

typedef struct {
    int device;             /* CUDA device index */
    size_t device_limit;    /* memory.device_limit in bytes (0 = the whole device) */
    int head_chunk_rows;    /* rows of logits alive at once in the LM head; 0 = auto (equal chunks of 1-6 GiB of BF16) */
    int attention_backend;  /* a kl_attn_backend (attention_cuda.h); 0 = auto (cuDNN forward when it applies) */
    int bf16_master;        /* precision.master: bf16 — no FP32 master: the BF16 weights are the parameters */
    int no_graphs;          /* 1: launch every kernel eagerly instead of replaying per-layer CUDA graphs */
    int no_fused_swiglu;    /* 1: the MLP products by cuBLASLt and SwiGLU forward and backward as own kernels, always */
    int gemm_tune;          /* kl_trainer_cuda_create runs kl_model_cuda_tune for its batch shape */
    const char *gemm_tune_file; /* ... with this tuning file (NULL or "": choices last for this process only) */
} kl_model_cuda_opts;

/* Device-side buffers, for the optimizer step (train_cuda.c) and tests. The device layout puts every
 * parameter tensor at a 128-element boundary (kl_model_cuda_param_offset); the gaps are zero in every
 * buffer and stay zero. */
typedef struct {
    float *master;      /* (n_elems) FP32 master weights; NULL with bf16_master (weights are the master) */
    kl_bf16 *weights;   /* (n_elems) BF16 compute copy: what forward and backward read */
    float *grads;       /* (n_elems) FP32 gradients: backward accumulates into them */
    size_t n_elems;
    double *loss_sum;   /* device double: loss sum of the last kl_model_cuda_accumulate / kl_model_cuda_loss */
    void *scratch;      /* device scratch (at least kl_sum_squares_scratch_bytes(n_elems) bytes), free between ops */
    size_t scratch_bytes;
    struct CUstream_st *stream; /* everything of this model runs on it */
    kl_devmem *mem;     /* the allocator the model's buffers came from (use it for optimizer state) */
} kl_model_cuda_bufs;

/* Creates the device model for cpu's shape and parameter table on opts->device (NULL opts = defaults) and
 * uploads cpu's parameters. Gradients start at zero. cpu is not kept (its table is copied). */
kl_status kl_model_cuda_create(kl_model_cuda **out, kl_model *cpu, const kl_model_cuda_opts *opts);
void kl_model_cuda_free(kl_model_cuda *m);
const kl_model_shape *kl_model_cuda_shape(const kl_model_cuda *m);
const kl_model_cuda_bufs *kl_model_cuda_buffers(kl_model_cuda *m);
size_t kl_model_cuda_param_offset(const kl_model_cuda *m, int tensor); /* device elements from the buffer start */

/* Master weights <-> a CPU model of the same shape (its FP32 parameter buffer): upload sets the master
 * and its BF16 copy; download copies the master back (for checkpoints, export, evaluation on the CPU).
 * Both wait for the device. */
kl_status kl_model_cuda_upload(kl_model_cuda *m, kl_model *cpu);
kl_status kl_model_cuda_download(kl_model_cuda *m, kl_model *cpu);
/* The gradients in the CPU layout (kl_model_num_params floats). Waits for the device. */
kl_status kl_model_cuda_download_grads(kl_model_cuda *m, float *grads);
/* A per-parameter device buffer (n_elems floats, device layout) to or from the packed CPU parameter layout
 * (kl_model_cuda_num_params floats), tensor by tensor; the device layout's gaps are not touched. Both wait for
 * the copies. */
kl_status kl_model_cuda_to_host_layout(kl_model_cuda *m, float *host, const float *dev);
kl_status kl_model_cuda_from_host_layout(kl_model_cuda *m, float *dev, const float *host);
size_t kl_model_cuda_num_params(const kl_model_cuda *m);
kl_status kl_model_cuda_zero_grads(kl_model_cuda *m);

/* Allocates activations, scratch and batch buffers for n_micro micro-batches of (B, T) now (otherwise the
 * first call of that size does), so the memory table and the limit check happen before training. */
kl_status kl_model_cuda_reserve(kl_model_cuda *m, int B, int T, int n_micro);

/* As kl_model_forward / kl_model_loss / kl_model_logits_at (same argument meanings, host arrays): forward
 * of one (B, T) batch; the loss of its targets, with backward != 0 accumulating every parameter gradient
 * scaled by grad_scale. kl_model_cuda_loss waits for the device (it returns the loss). */
kl_status kl_model_cuda_forward(kl_model_cuda *m, const int32_t *inputs, int B, int T);
kl_status kl_model_cuda_loss(kl_model_cuda *m, const int32_t *targets, float z_loss, int backward, float grad_scale,
                             double *loss_sum, int64_t *n_valid);
/* Logits of rows [row0, row0 + rows) (row = b*T + t) of the last forward, FP32 on the host (rows, V). */
kl_status kl_model_cuda_logits(kl_model_cuda *m, int row0, int rows, float *logits);

/* The training step's model part, without waiting for the device: zeroes the gradients, then forward,
 * loss and backward of n_micro micro-batches (inputs/targets hold n_micro*B*T tokens each), accumulating
 * gradients scaled by grad_scale; leaves the summed loss in buffers->loss_sum. One upload of the tokens.
 * The same as kl_model_cuda_stage followed by kl_model_cuda_accumulate_staged. */
kl_status kl_model_cuda_accumulate(kl_model_cuda *m, const int32_t *inputs, const int32_t *targets, int n_micro,
                                   int B, int T, float z_loss, float grad_scale);

/* kl_model_cuda_accumulate in two halves, so the host can prepare the next step's batch while the device still
 * computes the current step. kl_model_cuda_stage allocates for (B, T) x n_micro if needed (which waits for the
 * device), validates the targets, builds the embedding-backward plans, copies everything into the pinned staging
 * buffer and queues the upload on the model's stream. The upload runs after all work queued before it, so a step in
 * flight keeps reading the batch it was given; before it rewrites the staging buffer the host waits for the
 * previous upload out of it (normally long done). kl_model_cuda_accumulate_staged queues the step on the staged
 * batch; it refuses (KL_ERR_INVALID) unless the batch buffers still hold a kl_model_cuda_stage batch of exactly
 * n_micro x (B, T): any forward, loss or staging in between (an evaluation) replaces it, and it is never trained on
 * silently. */
kl_status kl_model_cuda_stage(kl_model_cuda *m, const int32_t *inputs, const int32_t *targets, int n_micro, int B,
                              int T);
kl_status kl_model_cuda_accumulate_staged(kl_model_cuda *m, int n_micro, int B, int T, float z_loss,
                                          float grad_scale);
/* 1 when the batch buffers hold the batch of the last kl_model_cuda_stage, nothing has staged since, and it
 * equals these n_micro x (B, T) inputs and targets (compared with the staging buffer's copy); then *n_valid
 * (may be NULL) is its count of targets that are not KL_IGNORE_INDEX. Else 0. Does not touch the device. */
int kl_model_cuda_staged_holds(const kl_model_cuda *m, const int32_t *inputs, const int32_t *targets, int n_micro,
                               int B, int T, int64_t *n_valid);

/* Chooses the GEMM algorithms of a (B, T) training step by timing (matmul_cuda.h, kl_gemm_ctx_set_timing):
 * loads the choices remembered in `file` (may be NULL), runs one forward and backward eagerly on a synthetic batch
 * with timing on, so every product not remembered times the candidates, zeroes the gradients it left, and saves
 * the file when anything new was timed. The weights are not touched. Later steps of that shape use the chosen
 * algorithms, also inside CUDA graphs. A tuning file that cannot be read or written is not an error: msg (a one-line
 * summary for the log, e.g. "GEMM algorithms: 0 remembered, 27 timed (1.8 s), saved to F") says so, and a file that
 * does not parse is left as it is. Waits for the device. */
kl_status kl_model_cuda_tune(kl_model_cuda *m, int B, int T, const char *file, char *msg, size_t msg_size);

/* How many per-layer CUDA graphs are captured (0 with no_graphs, or when capture failed: then *why says
 * so, else ""). */
int kl_model_cuda_graphs(const kl_model_cuda *m, const char **why);
/* 1 when the MLP's gate+up product runs kiln's own Hopper GEMM with the SwiGLU forward in its epilogue, and the down
 * projection's dinp product with the SwiGLU backward (gemm_sm90_cuda.h): an sm_90 device, F a multiple of 128, C of
 * 8, and not opts.no_fused_swiglu. */
int kl_model_cuda_fused_swiglu(const kl_model_cuda *m);

#ifdef __cplusplus
}
#endif
#endif
