/* train_cuda.h — trainer.h's optimizer step on one GPU: gradient accumulation over the micro-batches, the
 * global norm, clipping and the non-finite guard on the device, AdamW on FP32 master weights (which also
 * refreshes the BF16 compute copy), and one host synchronisation per step to read back loss and norm.
 * Same semantics as kl_trainer_step (loss normalised over the step's valid targets, torch's clip factor,
 * skipped steps, max_bad_steps). In a build without CUDA the functions return KL_ERR_UNSUPPORTED. */
#ifndef KL_TRAIN_CUDA_H
#define KL_TRAIN_CUDA_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "model_cuda.h"
#include "trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kl_trainer_cuda kl_trainer_cuda;

/* KL_OK when the config can train on the CUDA path; else KL_ERR_UNSUPPORTED naming the key (other
 * optimizers, BF16 optimizer state or master weights, FP8/NVFP4, recompute, several GPUs are not built yet). */
kl_status kl_train_cuda_check_config(const kl_config *c);

/* Uploads cpu's weights into a new GPU model (mo: device, memory limit; NULL = defaults), allocates the
 * activations for o->B x o->T x o->grad_accum and the AdamW state, and with mo->gemm_tune chooses the GEMM
 * algorithms for that shape (kl_model_cuda_tune). os must be AdamW with FP32 state. */
kl_status kl_trainer_cuda_create(kl_trainer_cuda **out, kl_model *cpu, const kl_trainer_opts *o,
                                 const kl_opt_settings *os, const kl_schedule *sched, const kl_model_cuda_opts *mo);
void kl_trainer_cuda_free(kl_trainer_cuda *t);

/* As kl_trainer_step / kl_trainer_eval_batch (host token arrays of grad_accum*B*T / B*T). */
kl_status kl_trainer_cuda_step(kl_trainer_cuda *t, const int32_t *inputs, const int32_t *targets, kl_step_result *r);
kl_status kl_trainer_cuda_eval_batch(kl_trainer_cuda *t, const int32_t *inputs, const int32_t *targets,
                                     double *loss_sum, int64_t *n_valid);

/* kl_trainer_cuda_step in two halves, so the host can load and stage the next batch while the device computes
 * the current step. submit queues the whole step (forward and backward of the micro-batches, norm, clip, AdamW,
 * the read-back of loss and norm) and returns without waiting; finish waits for it and fills r as
 * kl_trainer_cuda_step does (loss, norm, skipped and bad-step streak; the step counts from here). Between the
 * two, only kl_trainer_cuda_prestage may be called. An all-masked step (no valid target) queues nothing.
 *
 * prestage stages the next step's batch (validation, embedding plans, the copy to the pinned buffer on the
 * host; the upload queued behind the step in flight; nothing for an all-masked batch). submit uses a prestaged
 * batch when the model still holds it and it equals submit's inputs and targets (kl_model_cuda_staged_holds);
 * otherwise, as after an evaluation, which stages its own batch into the same buffers, submit stages again: a
 * prestaged batch is never trained on in place of the one given. */
kl_status kl_trainer_cuda_submit(kl_trainer_cuda *t, const int32_t *inputs, const int32_t *targets);
kl_status kl_trainer_cuda_finish(kl_trainer_cuda *t, kl_step_result *r);
kl_status kl_trainer_cuda_prestage(kl_trainer_cuda *t, const int32_t *inputs, const int32_t *targets);

/* Master weights into the CPU model (before saving, exporting or checkpointing). */
kl_status kl_trainer_cuda_download(kl_trainer_cuda *t, kl_model *cpu);
/* The CPU model's parameters into the master weights, refreshing the BF16 compute copy from them (after
 * restoring a checkpoint). Waits for the device. */
kl_status kl_trainer_cuda_upload(kl_trainer_cuda *t, kl_model *cpu);

/* ---- checkpoint state ----
 * The optimizer state is held as the CPU AdamW holds it (optim/adamw.c): buffers "adamw.m" and "adamw.v",
 * each kl_trainer_cuda_num_params FP32 values in the CPU parameter layout (tensor i at the CPU model's
 * kl_model_param_info(i)->offset, no alignment gaps), so a checkpoint either trainer writes resumes on the
 * other. Downloads and uploads wait for the device; host memory may be pageable. */
int kl_trainer_cuda_n_state_buffers(void);
const char *kl_trainer_cuda_state_buffer_name(int i); /* NULL outside [0, n) */
kl_status kl_trainer_cuda_download_state(kl_trainer_cuda *t, int i, float *host);
kl_status kl_trainer_cuda_upload_state(kl_trainer_cuda *t, int i, const float *host);
size_t kl_trainer_cuda_num_params(const kl_trainer_cuda *t);
/* Micro-batch backward passes run (grad_accum per step with a valid target), the counter the CPU model
 * keeps as kl_model_backward_passes; and setting step, bad-step streak and that counter on resume. */
uint64_t kl_trainer_cuda_backward_passes(const kl_trainer_cuda *t);
void kl_trainer_cuda_set_progress(kl_trainer_cuda *t, int64_t step, int bad_streak, uint64_t backward_passes);

kl_model_cuda *kl_trainer_cuda_model(kl_trainer_cuda *t);
/* The GEMM tuning summary of kl_trainer_cuda_create (mo->gemm_tune; kl_model_cuda_tune), "" without. */
const char *kl_trainer_cuda_tune_msg(const kl_trainer_cuda *t);
int64_t kl_trainer_cuda_steps(const kl_trainer_cuda *t);     /* optimizer steps completed */
int kl_trainer_cuda_bad_streak(const kl_trainer_cuda *t);
size_t kl_trainer_cuda_state_bytes(const kl_trainer_cuda *t); /* AdamW moments on the device */
/* The device memory table (device_mem.h) and the bytes the device reports in use (NaN without CUDA). */
void kl_trainer_cuda_print_memory(kl_trainer_cuda *t, FILE *f);
double kl_trainer_cuda_device_used(kl_trainer_cuda *t);

/* Dense BF16 tensor-core peak of GPU `device` in FLOP/s for MFU (H100/H200 SXM: 989e12), from its name;
 * 0 when the GPU is not in kiln's table. */
double kl_gpu_peak_bf16_flops(int device);

#ifdef __cplusplus
}
#endif
#endif
