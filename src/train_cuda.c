/* train_cuda.c — the GPU trainer (train_cuda.h): trainer.c's step with the model on the device, the norm,
 * clip factor and AdamW queued behind the backward, and a single read-back of loss sum and gradient norm
 * at the end of each step. Parameter groups as trainer.c builds them. Checkpoint state (master weights,
 * moments, counters) moves to and from the host in the CPU trainer's layout; train_ckpt.c writes it. */
#include "train_cuda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cross_entropy.h" /* KL_IGNORE_INDEX */
#include "device.h"

double kl_gpu_peak_bf16_flops(int device) {
    char name[128];
    kl_gpu_name(device, name, sizeof name);
    /* dense BF16 with FP32 accumulation, from the vendors' data sheets */
    if (strstr(name, "H100") && strstr(name, "PCIe")) return 756e12;
    if (strstr(name, "H100") || strstr(name, "H200") || strstr(name, "H800")) return 989e12;
    if (strstr(name, "B200")) return 2250e12;
    if (strstr(name, "A100")) return 312e12;
    return 0;
}

kl_status kl_train_cuda_check_config(const kl_config *c) {
    if (c->optim.name != KL_CFG_OPTIM_ADAMW)
        return kl_error(KL_ERR_UNSUPPORTED, "optim.name: only adamw is built for train.device=cuda so far");
    if (c->optim.state_dtype != KL_CFG_STATE_FP32)
        return kl_error(KL_ERR_UNSUPPORTED, "optim.state_dtype: only fp32 is built for train.device=cuda so far");
    if (c->precision.matmul != KL_CFG_MATMUL_BF16)
        return kl_error(KL_ERR_UNSUPPORTED, "precision.matmul: only bf16 is built for train.device=cuda so far");
    if (c->memory.recompute != KL_CFG_RECOMPUTE_NONE)
        return kl_error(KL_ERR_UNSUPPORTED, "memory.recompute: only none is built for train.device=cuda so far");
    if (c->parallel.gpus != 1)
        return kl_error(KL_ERR_UNSUPPORTED, "parallel.gpus: training on %lld GPUs is not built yet; use 1",
                        (long long)c->parallel.gpus);
    return KL_OK;
}

/* optim/adamw.c's buffer names: a GPU checkpoint's entries are those of a CPU AdamW checkpoint */
static const char *const adamw_state_names[2] = {"adamw.m", "adamw.v"};
int kl_trainer_cuda_n_state_buffers(void) { return 2; }
const char *kl_trainer_cuda_state_buffer_name(int i) { return i >= 0 && i < 2 ? adamw_state_names[i] : NULL; }

#ifdef KILN_HAVE_CUDA

#include "adamw_cuda.h" /* AdamW step, FP64 sum of squares, clip factor: all on the device */

struct kl_trainer_cuda {
    kl_model_cuda *m;
    kl_trainer_opts o;
    kl_opt_settings os;
    kl_schedule sched;
    int64_t step;
    int bad_streak;
    uint64_t backward_passes; /* micro-batch backward passes run, as the CPU model counts them */
    int n_ranges;
    uint32_t n_blocks;
    kl_adamw_range *ranges_dev;
    float *adam_m, *adam_v;
    size_t state_bytes;
    void *small;        /* device: sumsq (double), norm (double), clip (float) */
    double *sumsq, *norm;
    float *clip;
    double *host_res;   /* pinned: loss sum, norm */
    /* the step between kl_trainer_cuda_submit and kl_trainer_cuda_finish */
    int submitted;
    int64_t sub_valid; /* its valid targets; 0: nothing was queued, finish counts the step as skipped */
    double sub_lr;
    int prestaged;     /* kl_trainer_cuda_prestage staged a batch (the model says whether it still holds it) */
    char tune_msg[1024]; /* kl_model_cuda_tune's summary ("" when the GEMMs were not tuned) */
};

kl_status kl_trainer_cuda_create(kl_trainer_cuda **out, kl_model *cpu, const kl_trainer_opts *o,
                                 const kl_opt_settings *os, const kl_schedule *sched, const kl_model_cuda_opts *mo) {
    *out = NULL;
    if (o->B <= 0 || o->T <= 0 || o->grad_accum <= 0)
        return kl_error(KL_ERR_CONFIG, "trainer: batch_size, seq_len and grad_accum must be > 0");
    if (os->kind != KL_OPT_ADAMW || os->state_dtype != KL_STATE_FP32)
        return kl_error(KL_ERR_UNSUPPORTED, "GPU trainer: only AdamW with FP32 state is built so far");
    kl_trainer_cuda *t = kl_calloc(1, sizeof *t, "GPU trainer");
    if (!t) return KL_ERR_OOM;
    t->o = *o;
    t->os = *os;
    t->sched = *sched;
    kl_status st;
    kl_adamw_range *ranges = NULL;
    if ((st = kl_model_cuda_create(&t->m, cpu, mo)) != KL_OK) goto fail;
    if ((st = kl_model_cuda_reserve(t->m, o->B, o->T, o->grad_accum)) != KL_OK) goto fail;
    if (mo && mo->gemm_tune &&
        (st = kl_model_cuda_tune(t->m, o->B, o->T, mo->gemm_tune_file, t->tune_msg, sizeof t->tune_msg)) != KL_OK)
        goto fail;
    const kl_model_cuda_bufs *b = kl_model_cuda_buffers(t->m);

    /* parameter groups exactly as kl_trainer_init: decay on linear-layer matrices (and the untied head);
     * embeddings, norms and biases only when asked */
    t->n_ranges = kl_model_num_param_tensors(cpu);
    ranges = kl_calloc((size_t)t->n_ranges, sizeof *ranges, "AdamW ranges");
    if (!ranges) {
        st = KL_ERR_OOM;
        goto fail;
    }
    for (int i = 0; i < t->n_ranges; i++) {
        const kl_param_info *p = kl_model_param_info(cpu, i);
        const int is_matrix = p->kind == KL_PARAM_MATRIX || p->kind == KL_PARAM_HEAD;
        ranges[i].offset = kl_model_cuda_param_offset(t->m, i);
        ranges[i].numel = p->numel;
        ranges[i].lr_mult = 1.0f;
        ranges[i].decay = is_matrix || (p->kind == KL_PARAM_EMBEDDING && o->decay_embeddings) ||
                          ((p->kind == KL_PARAM_NORM || p->kind == KL_PARAM_BIAS) && o->decay_norms);
    }
    if ((st = kl_adamw_ranges_prepare(ranges, t->n_ranges, &t->n_blocks)) != KL_OK) goto fail;
    void *p;
    if ((st = kl_alloc(b->mem, &p, (size_t)t->n_ranges * sizeof *ranges, KL_MEM_OPTIMIZER, "AdamW ranges")) != KL_OK)
        goto fail;
    t->ranges_dev = p;
    if ((st = kl_cuda_h2d_async(t->ranges_dev, ranges, (size_t)t->n_ranges * sizeof *ranges, b->stream)) != KL_OK)
        goto fail;
    const size_t mom = b->n_elems * sizeof(float);
    if ((st = kl_alloc(b->mem, &p, mom, KL_MEM_OPTIMIZER, "AdamW first moment")) != KL_OK) goto fail;
    t->adam_m = p;
    if ((st = kl_alloc(b->mem, &p, mom, KL_MEM_OPTIMIZER, "AdamW second moment")) != KL_OK) goto fail;
    t->adam_v = p;
    t->state_bytes = 2 * mom;
    if ((st = kl_cuda_memset_async(t->adam_m, 0, mom, b->stream)) != KL_OK) goto fail;
    if ((st = kl_cuda_memset_async(t->adam_v, 0, mom, b->stream)) != KL_OK) goto fail;
    if ((st = kl_alloc(b->mem, &t->small, 64, KL_MEM_OTHER, "norm and clip factor")) != KL_OK) goto fail;
    t->sumsq = (double *)t->small;
    t->norm = t->sumsq + 1;
    t->clip = (float *)(t->sumsq + 2);
    if ((st = kl_alloc_pinned(b->mem, &p, 2 * sizeof(double), KL_MEM_OTHER, "step read-back")) != KL_OK) goto fail;
    t->host_res = p;
    if ((st = kl_cuda_stream_sync(b->stream)) != KL_OK) goto fail; /* `ranges` is pageable host memory */
    free(ranges);
    *out = t;
    return KL_OK;
fail:
    free(ranges);
    kl_trainer_cuda_free(t);
    return st;
}

void kl_trainer_cuda_free(kl_trainer_cuda *t) {
    if (!t) return;
    kl_model_cuda_free(t->m); /* its allocator also held the optimizer state */
    free(t);
}

kl_model_cuda *kl_trainer_cuda_model(kl_trainer_cuda *t) { return t->m; }
const char *kl_trainer_cuda_tune_msg(const kl_trainer_cuda *t) { return t->tune_msg; }
int64_t kl_trainer_cuda_steps(const kl_trainer_cuda *t) { return t->step; }
int kl_trainer_cuda_bad_streak(const kl_trainer_cuda *t) { return t->bad_streak; }
size_t kl_trainer_cuda_state_bytes(const kl_trainer_cuda *t) { return t->state_bytes; }

kl_status kl_trainer_cuda_download(kl_trainer_cuda *t, kl_model *cpu) { return kl_model_cuda_download(t->m, cpu); }
kl_status kl_trainer_cuda_upload(kl_trainer_cuda *t, kl_model *cpu) { return kl_model_cuda_upload(t->m, cpu); }

static kl_status state_buffer(kl_trainer_cuda *t, int i, float **dev) {
    if (i < 0 || i >= kl_trainer_cuda_n_state_buffers())
        return kl_error(KL_ERR_INVALID, "GPU trainer: no optimizer state buffer %d (there are %d)", i,
                        kl_trainer_cuda_n_state_buffers());
    *dev = i == 0 ? t->adam_m : t->adam_v;
    return KL_OK;
}

kl_status kl_trainer_cuda_download_state(kl_trainer_cuda *t, int i, float *host) {
    float *dev = NULL;
    KL_TRY(state_buffer(t, i, &dev));
    return kl_model_cuda_to_host_layout(t->m, host, dev);
}

kl_status kl_trainer_cuda_upload_state(kl_trainer_cuda *t, int i, const float *host) {
    float *dev = NULL;
    KL_TRY(state_buffer(t, i, &dev));
    return kl_model_cuda_from_host_layout(t->m, dev, host);
}

size_t kl_trainer_cuda_num_params(const kl_trainer_cuda *t) { return kl_model_cuda_num_params(t->m); }
uint64_t kl_trainer_cuda_backward_passes(const kl_trainer_cuda *t) { return t->backward_passes; }
void kl_trainer_cuda_set_progress(kl_trainer_cuda *t, int64_t step, int bad_streak, uint64_t backward_passes) {
    t->step = step;
    t->bad_streak = bad_streak;
    t->backward_passes = backward_passes;
}
void kl_trainer_cuda_print_memory(kl_trainer_cuda *t, FILE *f) { kl_devmem_print(kl_model_cuda_buffers(t->m)->mem, f); }
double kl_trainer_cuda_device_used(kl_trainer_cuda *t) {
    return (double)kl_devmem_device_used(kl_model_cuda_buffers(t->m)->mem);
}

static int64_t count_valid(const int32_t *targets, size_t n) {
    int64_t valid = 0;
    for (size_t i = 0; i < n; i++) valid += targets[i] != KL_IGNORE_INDEX;
    return valid;
}

kl_status kl_trainer_cuda_prestage(kl_trainer_cuda *t, const int32_t *inputs, const int32_t *targets) {
    const int B = t->o.B, T = t->o.T, GA = t->o.grad_accum;
    t->prestaged = 0;
    /* an all-masked step never touches the device (kl_trainer_cuda_submit skips it): nothing to stage */
    if (count_valid(targets, (size_t)GA * B * T) == 0) return KL_OK;
    KL_TRY(kl_model_cuda_stage(t->m, inputs, targets, GA, B, T));
    t->prestaged = 1;
    return KL_OK;
}

/* Queues the step's norm, clip factor (0 = skip: non-finite loss or norm), AdamW update and the read-back of
 * loss sum and norm, all behind the backward. */
static kl_status queue_update(kl_trainer_cuda *t, double lr) {
    const kl_model_cuda_bufs *b = kl_model_cuda_buffers(t->m);
    KL_TRY(kl_sum_squares_cuda(t->sumsq, 0, b->grads, b->n_elems, b->scratch, b->stream));
    KL_TRY(kl_grad_clip_cuda(t->clip, t->norm, t->sumsq, b->loss_sum, t->o.grad_clip, b->stream));
    kl_adamw_hparams hp;
    hp.lr = lr;
    hp.beta1 = t->os.beta1;
    hp.beta2 = t->os.beta2;
    hp.eps = t->os.eps;
    hp.weight_decay = t->os.weight_decay;
    hp.step = t->step + 1;
    hp.seed = t->os.seed;
    if (b->master)
        KL_TRY(kl_adamw_step_cuda(b->master, b->weights, t->adam_m, t->adam_v, b->grads, t->ranges_dev, t->n_ranges,
                                  t->n_blocks, &hp, t->clip, b->stream));
    else /* precision.master: bf16 — the BF16 weights updated by stochastic rounding */
        KL_TRY(kl_adamw_step_bf16_cuda(b->weights, t->adam_m, t->adam_v, b->grads, t->ranges_dev, t->n_ranges,
                                       t->n_blocks, &hp, t->clip, b->stream));
    KL_TRY(kl_cuda_d2h_async(&t->host_res[0], b->loss_sum, sizeof(double), b->stream));
    return kl_cuda_d2h_async(&t->host_res[1], t->norm, sizeof(double), b->stream);
}

kl_status kl_trainer_cuda_submit(kl_trainer_cuda *t, const int32_t *inputs, const int32_t *targets) {
    const int B = t->o.B, T = t->o.T, GA = t->o.grad_accum;
    if (t->submitted)
        return kl_error(KL_ERR_INVALID, "GPU trainer: step %lld was submitted and not finished (call "
                        "kl_trainer_cuda_finish first)", (long long)t->step + 1);
    /* the prestaged batch only if the model still holds it and it is this one; else stage now */
    int64_t valid = 0;
    const int staged = t->prestaged && kl_model_cuda_staged_holds(t->m, inputs, targets, GA, B, T, &valid);
    t->prestaged = 0;
    if (!staged) valid = count_valid(targets, (size_t)GA * B * T);
    const double lr = kl_schedule_lr(&t->sched, t->step);
    if (valid > 0) { /* valid == 0: nothing to learn from; finish counts the step without the device */
        if (!staged) KL_TRY(kl_model_cuda_stage(t->m, inputs, targets, GA, B, T));
        KL_TRY(kl_model_cuda_accumulate_staged(t->m, GA, B, T, t->o.z_loss, (float)(1.0 / (double)valid)));
        t->backward_passes += (uint64_t)GA;
        KL_TRY(queue_update(t, lr));
    }
    t->submitted = 1;
    t->sub_valid = valid;
    t->sub_lr = lr;
    return KL_OK;
}

kl_status kl_trainer_cuda_finish(kl_trainer_cuda *t, kl_step_result *r) {
    memset(r, 0, sizeof *r);
    if (!t->submitted)
        return kl_error(KL_ERR_INVALID, "GPU trainer: finish of step %lld, which was not submitted",
                        (long long)t->step + 1);
    t->submitted = 0;
    r->lr = t->sub_lr;
    r->valid_targets = t->sub_valid;
    if (t->sub_valid == 0) { /* count the step, change nothing (as kl_trainer_step) */
        r->skipped = 1;
        r->loss = NAN;
        t->step++;
        return KL_OK;
    }
    KL_TRY(kl_cuda_stream_sync(kl_model_cuda_buffers(t->m)->stream)); /* the step's one synchronisation */
    r->loss = t->host_res[0] / (double)t->sub_valid;
    r->grad_norm = t->host_res[1];
    t->step++;
    if (!isfinite(r->loss) || !isfinite(r->grad_norm)) { /* the device already skipped the update */
        r->skipped = 1;
        return kl_trainer_count_bad_step(&t->bad_streak, t->o.max_bad_steps, (long long)t->step, r->loss);
    }
    t->bad_streak = 0;
    return KL_OK;
}

kl_status kl_trainer_cuda_step(kl_trainer_cuda *t, const int32_t *inputs, const int32_t *targets, kl_step_result *r) {
    memset(r, 0, sizeof *r); /* also when submit fails */
    KL_TRY(kl_trainer_cuda_submit(t, inputs, targets));
    return kl_trainer_cuda_finish(t, r);
}

kl_status kl_trainer_cuda_eval_batch(kl_trainer_cuda *t, const int32_t *inputs, const int32_t *targets,
                                     double *loss_sum, int64_t *n_valid) {
    KL_TRY(kl_model_cuda_forward(t->m, inputs, t->o.B, t->o.T));
    return kl_model_cuda_loss(t->m, targets, 0.0f, 0, 0.0f, loss_sum, n_valid);
}

#else /* !KILN_HAVE_CUDA */

static kl_status no_cuda(void) {
    return kl_error(KL_ERR_UNSUPPORTED, "train.device=cuda needs a build with CUDA (this kiln was built without it)");
}
kl_status kl_trainer_cuda_create(kl_trainer_cuda **out, kl_model *cpu, const kl_trainer_opts *o,
                                 const kl_opt_settings *os, const kl_schedule *sched, const kl_model_cuda_opts *mo) {
    (void)cpu, (void)o, (void)os, (void)sched, (void)mo;
    *out = NULL;
    return no_cuda();
}
void kl_trainer_cuda_free(kl_trainer_cuda *t) { (void)t; }
kl_status kl_trainer_cuda_step(kl_trainer_cuda *t, const int32_t *inputs, const int32_t *targets, kl_step_result *r) {
    (void)t, (void)inputs, (void)targets, (void)r;
    return no_cuda();
}
kl_status kl_trainer_cuda_submit(kl_trainer_cuda *t, const int32_t *inputs, const int32_t *targets) {
    (void)t, (void)inputs, (void)targets;
    return no_cuda();
}
kl_status kl_trainer_cuda_prestage(kl_trainer_cuda *t, const int32_t *inputs, const int32_t *targets) {
    (void)t, (void)inputs, (void)targets;
    return no_cuda();
}
kl_status kl_trainer_cuda_finish(kl_trainer_cuda *t, kl_step_result *r) {
    (void)t, (void)r;
    return no_cuda();
}
kl_status kl_trainer_cuda_eval_batch(kl_trainer_cuda *t, const int32_t *inputs, const int32_t *targets,
                                     double *loss_sum, int64_t *n_valid) {
    (void)t, (void)inputs, (void)targets, (void)loss_sum, (void)n_valid;
    return no_cuda();
}
kl_status kl_trainer_cuda_download(kl_trainer_cuda *t, kl_model *cpu) {
    (void)t, (void)cpu;
    return no_cuda();
}
kl_status kl_trainer_cuda_upload(kl_trainer_cuda *t, kl_model *cpu) {
    (void)t, (void)cpu;
    return no_cuda();
}
kl_status kl_trainer_cuda_download_state(kl_trainer_cuda *t, int i, float *host) {
    (void)t, (void)i, (void)host;
    return no_cuda();
}
kl_status kl_trainer_cuda_upload_state(kl_trainer_cuda *t, int i, const float *host) {
    (void)t, (void)i, (void)host;
    return no_cuda();
}
size_t kl_trainer_cuda_num_params(const kl_trainer_cuda *t) {
    (void)t;
    return 0;
}
uint64_t kl_trainer_cuda_backward_passes(const kl_trainer_cuda *t) {
    (void)t;
    return 0;
}
void kl_trainer_cuda_set_progress(kl_trainer_cuda *t, int64_t step, int bad_streak, uint64_t backward_passes) {
    (void)t, (void)step, (void)bad_streak, (void)backward_passes;
}
kl_model_cuda *kl_trainer_cuda_model(kl_trainer_cuda *t) {
    (void)t;
    return NULL;
}
const char *kl_trainer_cuda_tune_msg(const kl_trainer_cuda *t) {
    (void)t;
    return "";
}
int64_t kl_trainer_cuda_steps(const kl_trainer_cuda *t) {
    (void)t;
    return 0;
}
int kl_trainer_cuda_bad_streak(const kl_trainer_cuda *t) {
    (void)t;
    return 0;
}
size_t kl_trainer_cuda_state_bytes(const kl_trainer_cuda *t) {
    (void)t;
    return 0;
}
void kl_trainer_cuda_print_memory(kl_trainer_cuda *t, FILE *f) { (void)t, (void)f; }
double kl_trainer_cuda_device_used(kl_trainer_cuda *t) {
    (void)t;
    return NAN;
}

#endif
