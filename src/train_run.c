/* train_run.c — a whole training run from a resolved config: builds the model, loaders, optimizer and run
 * log, then loops optimizer steps with periodic evaluation and logging, and saves the final model to
 * <run dir>/model/ (config.json + model.safetensors). The per-step math is trainer.c's (train_cuda.c's on the
 * GPU, where the next step's batch is loaded and staged while the current step runs). */
#include "train_run.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "device.h"
#include "hf_config.h"
#include "loader.h"
#include "model_config.h"
#include "model_io.h"
#include "run_log.h"
#include "train_cuda.h"
#include "train_ckpt.h"
#include "trainer.h"

static kl_status make_dirs(const char *path) {
    char buf[KL_CFG_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return kl_error(KL_ERR_IO, "cannot create folder %s (%s)", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return kl_error(KL_ERR_IO, "cannot create folder %s (%s)", buf, strerror(errno));
    return KL_OK;
}

/* train.gemm_tune as a tuning file for the GPU trainer: "" for off, the path given, or for auto gemm_tune.txt in
 * $KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else $HOME/.cache/kiln (created). Without any of them, or when the
 * folder cannot be made, "" with tune still on: the choices then last for this run only, and *note says why. */
static void gemm_tune_file(const kl_config *c, int *tune, char *file, size_t n, char *note, size_t note_n) {
    file[0] = note[0] = '\0';
    *tune = strcmp(c->train.gemm_tune, "off") != 0;
    if (!*tune) return;
    if (strcmp(c->train.gemm_tune, "auto") != 0) {
        snprintf(file, n, "%s", c->train.gemm_tune);
        return;
    }
    const char *kc = getenv("KILN_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[KL_CFG_PATH_MAX];
    if (kc && *kc)
        snprintf(dir, sizeof dir, "%s", kc);
    else if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/kiln", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/kiln", home);
    else {
        snprintf(note, note_n, "no cache folder (KILN_CACHE_DIR, XDG_CACHE_HOME and HOME are unset)");
        return;
    }
    if (make_dirs(dir) != KL_OK) {
        snprintf(note, note_n, "%s", kl_last_error());
        kl_clear_error();
        return;
    }
    if ((size_t)snprintf(file, n, "%s/gemm_tune.txt", dir) >= n) {
        snprintf(note, note_n, "cache folder path too long: %s", dir);
        file[0] = '\0';
    }
}

static kl_status open_loader(kl_loader **l, const kl_config *c, const char *files, int eval, int vocab) {
    kl_loader_opts o = {0};
    o.source = c->data.source == KL_CFG_DATA_SYNTHETIC ? KL_DATA_SYNTHETIC : KL_DATA_FILES;
    o.files = files;
    o.T = (int)c->data.seq_len;
    o.B = (int)c->train.batch_size;
    o.seed = (uint64_t)c->data.seed;
    o.shuffle = c->data.shuffle;
    o.rank = 0;
    o.world = 1;
    o.vocab_size = vocab;
    o.eval = eval;
    o.synthetic_patterns = (int)c->data.synthetic_patterns;
    kl_status st = kl_loader_open(l, &o);
    if (st != KL_OK) return kl_error_context(st, "%s data", eval ? "eval" : "train");
    return KL_OK;
}

/* Mean loss over up to n_batches of the eval loader, from its start. */
static kl_status evaluate(kl_trainer *t, kl_trainer_cuda *gpu, kl_loader *eval, int n_batches, int32_t *in, int32_t *tg,
                          double *loss) {
    kl_loader_reset(eval);
    double sum = 0;
    int64_t valid = 0;
    for (int i = 0; i < n_batches; i++) {
        double s;
        int64_t v;
        KL_TRY(kl_loader_next_batch(eval, in, tg));
        KL_TRY(gpu ? kl_trainer_cuda_eval_batch(gpu, in, tg, &s, &v) : kl_trainer_eval_batch(t, in, tg, &s, &v));
        sum += s;
        valid += v;
    }
    *loss = valid ? sum / (double)valid : NAN;
    return KL_OK;
}

static void opt_settings_from_config(const kl_config *c, kl_opt_settings *os) {
    memset(os, 0, sizeof *os);
    os->kind = (kl_opt_kind)c->optim.name; /* same order in config.h and optim.h */
    os->beta1 = c->optim.beta1;
    os->beta2 = c->optim.beta2;
    os->eps = c->optim.eps;
    os->weight_decay = c->optim.weight_decay;
    os->state_dtype = c->optim.state_dtype == KL_CFG_STATE_BF16 ? KL_STATE_BF16 : KL_STATE_FP32;
    os->seed = (uint64_t)c->train.seed;
    kl_dash_settings *d = &os->dash;
    *d = kl_dash_settings_defaults();
    d->block = (int)c->optim.dash_block_size;
    d->beta_lr = c->optim.dash_beta_lr;
    d->beta_g = c->optim.dash_beta_g;
    d->beta_graft = c->optim.dash_beta_graft;
    d->eps_graft = c->optim.dash_eps_graft;
    d->bias_correction = c->optim.dash_bias_correction;
    d->mu = c->optim.dash_mu;
    d->nesterov = c->optim.dash_nesterov;
    d->start_prec_step = c->optim.dash_start_prec_step;
    d->inv_root_every = (int)c->optim.dash_inv_root_every;
    d->root_method = (kl_root_method)c->optim.dash_inv_root_method; /* same order */
    d->scaling = c->optim.dash_scaling == KL_CFG_SCALING_FROBENIUS ? KL_SCALE_FROBENIUS : KL_SCALE_POWER_ITER;
    d->power_vectors = c->optim.dash_scaling == KL_CFG_SCALING_POWER_ITER_MULTI ? 16 : 1;
    d->scale_const = c->optim.dash_scale_const;
    d->power_iters = (int)c->optim.dash_power_iters;
    d->power_eps = c->optim.dash_power_eps;
    d->eps_root = c->optim.dash_eps_root;
    d->newton_steps = (int)c->optim.dash_newton_steps;
    d->cn_tol = c->optim.dash_cn_tol;
    d->cheb_degree = (int)c->optim.dash_cheb_degree;
    d->cheb_shift = c->optim.dash_cheb_shift;
    d->one_dim = c->optim.dash_one_dim == KL_CFG_ONE_DIM_SHAMPOO ? KL_DASH_ONE_DIM_SHAMPOO : KL_DASH_ONE_DIM_ADAMW;
    kl_dct_settings *t = &os->dct;
    *t = kl_dct_settings_defaults();
    t->rank = (int)c->optim.dct_rank;
    t->refresh_every = (int)c->optim.dct_refresh_every;
    t->ell = (int)c->optim.dct_ell;
    t->max_dim = c->optim.dct_max_dim;
    t->basis = c->optim.dct_basis == KL_CFG_DCT_BASIS_DCT3 ? KL_DCT_BASIS_DCT3 : KL_DCT_BASIS_DCT2;
}

/* ---- the CUDA path's hooks (train_cuda.c does the work) ---- */

/* train.device: cuda needs a GPU and a config the CUDA path supports; auto takes the GPU when both hold
 * and otherwise says why it trains on the CPU. */
/* Keys for parts the CPU trainer does not have: refused rather than ignored. */
static kl_status check_cpu_config(const kl_config *c) {
    if (c->memory.recompute != KL_CFG_RECOMPUTE_NONE)
        return kl_error(KL_ERR_UNSUPPORTED, "memory.recompute: activation recompute is not built yet (use none)");
    if (c->parallel.gpus != 1 || c->parallel.zero != 0)
        return kl_error(KL_ERR_UNSUPPORTED, "parallel.gpus / parallel.zero: multi-GPU training is not built yet");
    if (c->optim.state_dtype != KL_CFG_STATE_FP32 || c->precision.master != KL_CFG_MASTER_FP32)
        return kl_error(KL_ERR_UNSUPPORTED,
                        "optim.state_dtype / precision.master: the CPU trainer keeps FP32 weights and state");
    return KL_OK;
}

static kl_status choose_gpu(const kl_config *c, int *on_gpu) {
    *on_gpu = 0;
    if (c->train.device == KL_CFG_DEVICE_CPU) return check_cpu_config(c);
    const int gpus = kl_gpu_count();
#ifdef KILN_HAVE_CUDA
    const char *why = "";
#else
    const char *why = " (this kiln was built without CUDA)";
#endif
    if (c->train.device == KL_CFG_DEVICE_CUDA) {
        if (gpus == 0) return kl_error(KL_ERR_UNSUPPORTED, "train.device: cuda, but no GPU is visible%s", why);
        KL_TRY(kl_train_cuda_check_config(c));
        *on_gpu = 1;
        return KL_OK;
    }
    if (gpus == 0) return check_cpu_config(c);
    if (kl_train_cuda_check_config(c) == KL_OK) {
        *on_gpu = 1;
        return KL_OK;
    }
    fprintf(stderr, "kiln: a GPU is visible, but %s; training on the CPU\n", kl_last_error());
    kl_clear_error();
    return check_cpu_config(c);
}

/* The GPU, its memory table and the step size, before the first step. */
static void print_gpu_setup(kl_trainer_cuda *gpu, const kl_config *c, double tokens_per_step, int B, int T, int GA) {
    char name[128];
    kl_gpu_name(0, name, sizeof name);
    printf("kiln train: %lld steps of %.0f tokens (batch %d x seq %d x accum %d) on %s, BF16\n",
           (long long)c->train.steps, tokens_per_step, B, T, GA, name);
    kl_trainer_cuda_print_memory(gpu, stdout);
}

/* The next GA micro-batches of (B, T) = mb tokens from the training stream into in/tg. */
static kl_status load_step(kl_loader *train, int32_t *in, int32_t *tg, int GA, size_t mb) {
    for (int a = 0; a < GA; a++) KL_TRY(kl_loader_next_batch(train, in + (size_t)a * mb, tg + (size_t)a * mb));
    return KL_OK;
}

/* GPU, while a step is in flight: loads the next step's batch into in/tg and prestages it (host work and a
 * queued upload, overlapping the device's work); *loaded = 1 when both succeeded. A failure belongs to the next
 * step, not this one: the loader goes back to `before`, and the next step loads and stages again in the
 * ordinary way, so the same error surfaces there, after this step is logged and checkpointed, as without
 * the overlap. */
static kl_status prestage_next(kl_trainer_cuda *gpu, kl_loader *train, const kl_loader_state *before, int32_t *in,
                               int32_t *tg, int GA, size_t mb, int *loaded) {
    kl_status st = load_step(train, in, tg, GA, mb);
    if (st == KL_OK) st = kl_trainer_cuda_prestage(gpu, in, tg);
    *loaded = st == KL_OK;
    if (st == KL_OK) return KL_OK;
    kl_clear_error();
    return kl_loader_set_state(train, before);
}

/* SIGINT / SIGTERM: finish the current step, write a checkpoint, exit 0 saying where it is. */
static volatile sig_atomic_t stop_requested = 0;
static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

kl_linear_cfg kl_train_linear_cfg(const kl_config *c) {
    kl_linear_cfg prec = {0};
    prec.mode = c->precision.matmul == KL_CFG_MATMUL_FP8     ? KL_LINEAR_FP8
                : c->precision.matmul == KL_CFG_MATMUL_NVFP4 ? KL_LINEAR_NVFP4
                                                             : KL_LINEAR_FP32;
    prec.nvfp4_backward = c->precision.nvfp4_backward == KL_CFG_NVFP4_BWD_SR ? KL_LINEAR_BWD_SR : KL_LINEAR_BWD_MS_EDEN;
    prec.seed = (uint64_t)c->train.seed;
    return prec;
}

kl_status kl_train_run(const kl_config *c) {
    kl_status st = KL_OK;
    kl_model *model = NULL;
    kl_loader *train = NULL, *eval = NULL;
    kl_runlog *log = NULL;
    kl_trainer tr;
    memset(&tr, 0, sizeof tr);
    kl_trainer_cuda *gpu = NULL; /* set when training on the GPU; tr stays unused then */
    int32_t *in = NULL, *tg = NULL;
    int32_t *in_next = NULL, *tg_next = NULL; /* GPU: the next step's batch, loaded while this one runs */
    void (*old_int)(int) = SIG_DFL, (*old_term)(int) = SIG_DFL;
    int handlers_set = 0;
    stop_requested = 0;

    int on_gpu = 0;
    KL_TRY(choose_gpu(c, &on_gpu));

    kl_model_shape shape;
    KL_TRY(kl_model_shape_from_config(c, &shape));
    const int B = (int)c->train.batch_size, T = (int)c->data.seq_len, GA = (int)c->train.grad_accum;
    if (T > shape.max_T)
        return kl_error(KL_ERR_CONFIG, "data.seq_len (%d) exceeds the model's max_seq_len (%d)", T, shape.max_T);

    char run_dir[KL_CFG_PATH_MAX], metrics[KL_CFG_PATH_MAX];
    KL_TRY(kl_config_run_dir(c, run_dir, sizeof run_dir));
    KL_TRY(kl_config_metrics_path(c, metrics, sizeof metrics));

    /* data first: a bad file should fail before any memory is committed */
    if ((st = open_loader(&train, c, c->data.train, 0, shape.V)) != KL_OK) goto done;
    if (c->data.source == KL_CFG_DATA_SYNTHETIC || c->data.eval[0])
        if ((st = open_loader(&eval, c, c->data.source == KL_CFG_DATA_SYNTHETIC ? NULL : c->data.eval, 1, shape.V)) !=
            KL_OK)
            goto done;

    if (c->model.hf_dir[0]) { /* fine-tuning: shape and weights from a Hugging Face folder */
        if ((st = kl_model_load(&model, c->model.hf_dir)) != KL_OK) goto done;
        printf("kiln train: loaded weights from %s\n", c->model.hf_dir);
    } else {
        if ((st = kl_model_create(&model, &shape)) != KL_OK) goto done;
        kl_model_init_weights(model, (uint64_t)c->model.seed, (float)c->model.init_std);
    }
    const kl_linear_cfg prec = kl_train_linear_cfg(c);
    if ((st = kl_model_set_precision(model, &prec)) != KL_OK) goto done;

    kl_trainer_opts to = {0};
    to.B = B;
    to.T = T;
    to.grad_accum = GA;
    to.grad_clip = c->train.grad_clip;
    to.z_loss = (float)c->train.z_loss;
    to.max_bad_steps = (int)c->train.max_bad_steps;
    to.decay_embeddings = c->optim.decay_embeddings;
    to.decay_norms = c->optim.decay_norms;
    kl_opt_settings os;
    opt_settings_from_config(c, &os);
    kl_schedule sched = {(kl_schedule_kind)c->train.schedule, c->optim.lr, c->train.min_lr_ratio,
                         c->train.warmup_steps, c->train.steps, c->train.decay_fraction};
    if (on_gpu) {
        kl_model_cuda_opts mo = {0};
        mo.device_limit = (size_t)c->memory.device_limit;
        mo.head_chunk_rows = (int)c->memory.lm_head_rows;
        mo.bf16_master = c->precision.master == KL_CFG_MASTER_BF16;
        mo.no_graphs = !c->train.cuda_graphs;
        mo.no_fused_swiglu = !c->train.fused_swiglu;
        char tune_file[KL_CFG_PATH_MAX + 32], tune_note[KL_CFG_PATH_MAX + 64];
        gemm_tune_file(c, &mo.gemm_tune, tune_file, sizeof tune_file, tune_note, sizeof tune_note);
        mo.gemm_tune_file = tune_file;
        if ((st = kl_trainer_cuda_create(&gpu, model, &to, &os, &sched, &mo)) != KL_OK) goto done;
        if (kl_trainer_cuda_tune_msg(gpu)[0])
            printf("kiln train: %s%s%s\n", kl_trainer_cuda_tune_msg(gpu), tune_note[0] ? "; not remembered: " : "",
                   tune_note);
    } else if ((st = kl_trainer_init(&tr, model, &to, &os, &sched)) != KL_OK) {
        goto done;
    }

    /* resume: the same checkpoint format on both trainers (train_ckpt.h), so either resumes the other's */
    char ckpt_root[KL_CFG_PATH_MAX], msg[4096];
    int resumed = 0;
    if ((st = kl_config_ckpt_dir(c, ckpt_root, sizeof ckpt_root)) != KL_OK) goto done;
    st = gpu ? kl_train_restore_checkpoint_cuda(c, gpu, model, train, ckpt_root, &resumed, msg, sizeof msg)
             : kl_train_restore_checkpoint(c, &tr, train, ckpt_root, &resumed, msg, sizeof msg);
    if (st != KL_OK) goto done;
    if (msg[0]) printf("kiln train: %s\n", msg);

    const size_t mb = (size_t)B * T; /* tokens per micro-batch */
    in = kl_malloc(GA * mb * sizeof *in, "input batch");
    tg = kl_malloc(GA * mb * sizeof *tg, "target batch");
    if (gpu) {
        in_next = kl_malloc(GA * mb * sizeof *in_next, "next input batch");
        tg_next = kl_malloc(GA * mb * sizeof *tg_next, "next target batch");
    }
    if (!in || !tg || (gpu && (!in_next || !tg_next))) {
        st = KL_ERR_OOM;
        goto done;
    }
    if ((st = make_dirs(run_dir)) != KL_OK) goto done;
    if ((st = kl_runlog_open(&log, metrics, resumed, c->log.console ? stdout : NULL)) != KL_OK) goto done;

    const double tokens_per_step = (double)GA * B * T;
    char pb[32], sb[32];
    printf("kiln train: %s, %s, %d layers, hidden %d, heads %d/%d, vocab %d: %.2fM parameters\n", c->train.name,
           kl_arch_name(shape.arch), shape.L, shape.C, shape.NH, shape.NKV, shape.V,
           (double)kl_model_num_params(model) / 1e6);
    if (gpu)
        print_gpu_setup(gpu, c, tokens_per_step, B, T, GA);
    else
        printf("kiln train: %lld steps of %.0f tokens (batch %d x seq %d x accum %d) on the CPU; memory: "
               "parameters+grads %s, optimizer %s\n",
               (long long)c->train.steps, tokens_per_step, B, T, GA,
               kl_format_bytes(2.0 * kl_model_num_params(model) * sizeof(float), pb, sizeof pb),
               kl_format_bytes((double)tr.opt->vt->state_bytes(tr.opt), sb, sizeof sb));
    const double peak_flops = gpu ? kl_gpu_peak_bf16_flops(0) : 0, flops_per_token = kl_model_flops_per_token(model, T);
    printf("kiln train: run folder %s\n", run_dir);

    const double t_start = kl_now_seconds();
    double t_last = t_start, eval_loss = NAN, last_loss = NAN;
    int64_t tokens_since = 0;
    const int64_t first_step = gpu ? kl_trainer_cuda_steps(gpu) : tr.step;
    old_int = signal(SIGINT, on_stop_signal);
    old_term = signal(SIGTERM, on_stop_signal);
    handlers_set = 1;
    int next_loaded = 0;         /* GPU: in/tg already hold this step's batch, loaded during the previous step */
    kl_loader_state before_next = {0}; /* the loader as the previous step left it, before its successor was loaded */
    for (int64_t step = first_step; step < c->train.steps; step++) {
        const int last = step + 1 == c->train.steps;
        const int eval_due = eval && ((c->train.eval_every > 0 && (step + 1) % c->train.eval_every == 0) || last);
        const int periodic = c->train.ckpt_every > 0 && ((step + 1) % c->train.ckpt_every == 0 || last);
        if (!next_loaded && (st = load_step(train, in, tg, GA, mb)) != KL_OK) goto done;
        next_loaded = 0;
        kl_step_result r;
        if (gpu) {
            if ((st = kl_trainer_cuda_submit(gpu, in, tg)) != KL_OK) goto done;
            /* While the device runs this step, load and prestage the next one, unless an evaluation follows: it
             * stages its batches into the same device buffers (the trainer would notice and stage again, see
             * kl_trainer_cuda_submit, but the overlap would be lost) and uses in/tg as scratch. Nor before a
             * periodic checkpoint, which records the loader as this step leaves it. */
            if (!last && !eval_due && !periodic) {
                kl_loader_get_state(train, &before_next);
                if ((st = prestage_next(gpu, train, &before_next, in_next, tg_next, GA, mb, &next_loaded)) != KL_OK)
                    goto done;
            }
            if ((st = kl_trainer_cuda_finish(gpu, &r)) != KL_OK) goto done;
            if (next_loaded) { /* the next step's batch becomes in/tg */
                int32_t *p = in;
                in = in_next, in_next = p;
                p = tg, tg = tg_next, tg_next = p;
            }
        } else if ((st = kl_trainer_step(&tr, in, tg, &r)) != KL_OK) {
            goto done;
        }
        tokens_since += (int64_t)tokens_per_step;
        const char *no_graphs = "";
        if (gpu && step == first_step && c->train.cuda_graphs &&
            kl_model_cuda_graphs(kl_trainer_cuda_model(gpu), &no_graphs) == 0 && no_graphs[0])
            fprintf(stderr, "kiln train: CUDA graphs are off (%s); kernels are launched one by one\n", no_graphs);
        if (r.skipped) {
            char msg[160];
            snprintf(msg, sizeof msg, "step %lld skipped: loss %g, grad norm %g (%d in a row)", (long long)step + 1,
                     r.loss, r.grad_norm, gpu ? kl_trainer_cuda_bad_streak(gpu) : tr.bad_streak);
            kl_runlog_event(log, "skipped_step", msg);
        } else {
            last_loss = r.loss;
        }
        if ((step + 1) % c->log.every == 0 || step == 0 || last) {
            double now = kl_now_seconds();
            kl_step_record rec = {0};
            rec.step = step + 1;
            rec.total_steps = c->train.steps;
            rec.loss = r.loss;
            rec.grad_norm = r.grad_norm;
            rec.lr = r.lr;
            rec.tokens_per_s = tokens_since / (now - t_last);
            rec.mfu = peak_flops > 0 ? flops_per_token * rec.tokens_per_s / peak_flops : NAN; /* NaN on the CPU */
            rec.mem_bytes = gpu ? kl_trainer_cuda_device_used(gpu) : NAN;
            rec.elapsed_s = now - t_start;
            rec.eta_s = (now - t_start) / (double)(step + 1 - first_step) * (double)(c->train.steps - step - 1);
            rec.tokens_seen = (double)(step + 1) * tokens_per_step;
            kl_runlog_step(log, &rec);
            t_last = now;
            tokens_since = 0;
        }
        if (eval_due) {
            if ((st = evaluate(&tr, gpu, eval, (int)c->train.eval_batches, in, tg, &eval_loss)) != KL_OK) goto done;
            kl_runlog_eval(log, step + 1, eval_loss);
        }
        if (periodic || stop_requested) {
            /* a stop after a step whose successor is already loaded: the checkpoint records the loader as this
             * step left it, exactly as a loop without the overlap would, so the resumed run reads that batch */
            if (next_loaded && (st = kl_loader_set_state(train, &before_next)) != KL_OK) goto done;
            next_loaded = 0;
            char dir[KL_CFG_PATH_MAX + 32];
            char warn[1024];
            st = gpu ? kl_train_save_checkpoint_cuda(c, gpu, model, train, ckpt_root, dir, sizeof dir, warn,
                                                     sizeof warn)
                     : kl_train_save_checkpoint(c, &tr, train, ckpt_root, dir, sizeof dir, warn, sizeof warn);
            if (st != KL_OK) goto done;
            snprintf(msg, sizeof msg, "step %lld saved to %s", (long long)step + 1, dir);
            kl_runlog_event(log, "checkpoint", msg);
            if (warn[0]) kl_runlog_event(log, "warning", warn);
        }
        if (stop_requested) {
            printf("kiln train: stopped by a signal after step %lld; resume with the same command (train.resume: "
                   "auto)\n",
                   (long long)step + 1);
            goto done;
        }
    }

    char model_dir[KL_CFG_PATH_MAX + 16];
    snprintf(model_dir, sizeof model_dir, "%s/model", run_dir);
    if ((st = make_dirs(model_dir)) != KL_OK) goto done;
    if (gpu && (st = kl_trainer_cuda_download(gpu, model)) != KL_OK) goto done; /* master weights to the CPU */
    if ((st = kl_model_save(model, model_dir)) != KL_OK) goto done;
    if (c->model.hf_dir[0] && (st = kl_model_copy_tokenizer(c->model.hf_dir, model_dir)) != KL_OK) goto done;
    printf("kiln train: done in %.1f s; final train loss %.4f", kl_now_seconds() - t_start, last_loss);
    if (!isnan(eval_loss))
        printf(", eval loss %.4f (%.3f bits per token)", eval_loss, eval_loss / M_LN2);
    printf("\nkiln train: model saved to %s\n", model_dir);
    if (!gpu && tr.opt_steps > 0) { /* optimizer cost per applied step (CPU trainer), for comparing optimizers */
        const size_t state = tr.opt->vt->state_bytes(tr.opt);
        snprintf(msg, sizeof msg, "%.3f ms/step over %lld steps, state %.3f MiB (%zu bytes)",
                 1e3 * tr.opt_seconds / (double)tr.opt_steps, (long long)tr.opt_steps, (double)state / 1048576.0,
                 state);
        kl_runlog_event(log, "optimizer", msg); /* console line "optimizer: ..." and a JSONL event */
        if (!c->log.console) printf("kiln train: optimizer: %s\n", msg);
    }

done:
    if (handlers_set) {
        signal(SIGINT, old_int);
        signal(SIGTERM, old_term);
    }
    kl_runlog_close(log);
    free(in);
    free(tg);
    free(in_next);
    free(tg_next);
    kl_trainer_free(&tr);
    kl_trainer_cuda_free(gpu);
    kl_model_free(model);
    kl_loader_close(train);
    kl_loader_close(eval);
    return st;
}
