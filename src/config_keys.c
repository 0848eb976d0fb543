/* config_keys.c — the table of every configuration key: section, name, type, default, range or
 * choices, one-line meaning, and where it lives in kl_config. Parsing, validation of single values,
 * `kiln config` and the markdown reference are all driven by it; cross-key rules live in config.c. */
#include <stddef.h>

#include "config.h"

#define FIELD_SIZE(sec, field) sizeof(((kl_config *)0)->sec.field)
#define KEY(sec, field, type, def, lo, hi, flags, choices, help)                                         \
    {#sec, #field, type, def, lo, hi, flags, choices, help, offsetof(kl_config, sec.field), FIELD_SIZE(sec, field)}

#define INT(sec, field, def, lo, hi, help) KEY(sec, field, KL_KEY_INT, def, lo, hi, 0, NULL, help)
#define FLOAT(sec, field, def, lo, hi, flags, help) KEY(sec, field, KL_KEY_FLOAT, def, lo, hi, flags, NULL, help)
#define BOOL(sec, field, def, help) KEY(sec, field, KL_KEY_BOOL, def, 0, 0, 0, NULL, help)
#define ENUM(sec, field, def, choices, help) KEY(sec, field, KL_KEY_ENUM, def, 0, 0, 0, choices, help)
#define PATH(sec, field, help) KEY(sec, field, KL_KEY_PATH, "", 0, 0, 0, NULL, help)
#define PATHS(sec, field, help) KEY(sec, field, KL_KEY_PATHS, "", 0, 0, 0, NULL, help)

#define MIN_OPEN KL_KEY_MIN_OPEN
#define MAX_OPEN KL_KEY_MAX_OPEN
#define SEED_MAX 4294967295.0
#define STEPS_MAX 1e12

static const kl_section sections[] = {
    {"model", "shape and initialisation of the transformer"},
    {"data", "where training and evaluation tokens come from"},
    {"train", "the run: length, batches, learning-rate schedule, evaluation, outputs"},
    {"optim", "the optimizer and its hyper-parameters"},
    {"precision", "number formats of the linear layers and the master weights"},
    {"memory", "device memory limit and activation recompute"},
    {"parallel", "how many GPUs and how they communicate"},
    {"log", "console and metrics output"},
};

static const kl_key keys[] = {
    /* ---- model ---- */
    ENUM(model, arch, "llama", "llama|qwen2|qwen3|mistral", "architecture family"),
    PATH(model, hf_dir, "Hugging Face model folder to take the shape and weights from"),
    PATH(model, hf_config, "Hugging Face config.json to take the shape from (random initial weights)"),
    INT(model, vocab_size, "256", 1, 4194304, "vocabulary size"),
    INT(model, hidden_size, "64", 1, 1048576, "model width C"),
    INT(model, intermediate_size, "0", 0, 4194304, "MLP width (0 = computed by the model code)"),
    INT(model, num_layers, "2", 1, 1024, "transformer blocks"),
    INT(model, num_heads, "4", 1, 4096, "query heads"),
    INT(model, num_kv_heads, "0", 0, 4096, "key/value heads, fewer for grouped-query attention (0 = num_heads)"),
    INT(model, head_dim, "0", 0, 4096, "size of one head (0 = hidden_size / num_heads)"),
    INT(model, max_seq_len, "1024", 1, 16777216, "longest sequence the model supports (RoPE table size)"),
    FLOAT(model, rope_theta, "10000", 0, 1e12, MIN_OPEN, "RoPE base frequency"),
    ENUM(model, rope_scaling, "none", "none|llama3", "RoPE frequency scaling for long contexts"),
    FLOAT(model, rope_factor, "8", 0, 1e6, MIN_OPEN, "llama3 scaling: context extension factor"),
    FLOAT(model, rope_low_freq_factor, "1", 0, 1e6, MIN_OPEN, "llama3 scaling: low-frequency factor"),
    FLOAT(model, rope_high_freq_factor, "4", 0, 1e6, MIN_OPEN, "llama3 scaling: high-frequency factor"),
    INT(model, rope_original_max_pos, "8192", 1, 16777216, "llama3 scaling: original context length"),
    FLOAT(model, rms_norm_eps, "1e-06", 0, 1, MIN_OPEN, "epsilon inside RMSNorm"),
    BOOL(model, tie_embeddings, "true", "the LM head shares the token embedding matrix"),
    FLOAT(model, init_std, "0.02", 0, 10, MIN_OPEN, "standard deviation of the random initial weights"),
    INT(model, seed, "1234", 0, SEED_MAX, "seed of the random initial weights"),

    /* ---- data ---- */
    ENUM(data, source, "files", "files|synthetic", "token files, or a synthetic learnable stream (no files)"),
    PATHS(data, train, "training token files: comma-separated globs (required when source is files)"),
    PATHS(data, eval, "evaluation token files: comma-separated globs (empty = no evaluation for files)"),
    INT(data, seq_len, "256", 1, 16777216, "tokens per training sequence T"),
    BOOL(data, shuffle, "true", "shuffle files and sequences every epoch"),
    INT(data, seed, "42", 0, SEED_MAX, "seed of the shuffles and of the synthetic stream"),
    INT(data, synthetic_patterns, "16", 1, 1048576, "synthetic: number of distinct random sequences the stream repeats"),

    /* ---- train ---- */
    KEY(train, name, KL_KEY_NAME, "run", 0, 0, 0, NULL, "run name: outputs go to runs/<name>/ unless out_dir is set"),
    PATH(train, out_dir, "output folder of the run (empty = runs/<name> under the working directory)"),
    ENUM(train, device, "auto", "auto|cpu|cuda", "where to train (auto = cuda when a GPU is present)"),
    BOOL(train, cuda_graphs, "true", "GPU: launch each block's forward and backward as a captured CUDA graph"),
    BOOL(train, fused_swiglu, "true",
         "GPU: the SwiGLU forward in the gate+up GEMM's epilogue and its backward in the down projection's dinp GEMM "
         "(kiln's own Hopper GEMM; sm_90, F a multiple of 128)"),
    KEY(train, gemm_tune, KL_KEY_PATH, "auto", 0, 0, 0, "auto|off",
        "GPU: GEMM algorithms chosen by timing once and remembered in a tuning file: auto = "
        "$KILN_CACHE_DIR (else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln)/gemm_tune.txt, off = cuBLASLt's first "
        "choice, or a file"),
    INT(train, steps, "100", 1, STEPS_MAX, "optimizer steps"),
    INT(train, batch_size, "8", 1, 1048576, "sequences per micro-batch (per GPU)"),
    INT(train, grad_accum, "1", 1, 65536, "micro-batches accumulated per optimizer step"),
    ENUM(train, schedule, "cosine", "constant|cosine|linear|wsd", "learning-rate schedule after warm-up"),
    INT(train, warmup_steps, "0", 0, STEPS_MAX, "steps of linear warm-up from 0 to optim.lr"),
    FLOAT(train, min_lr_ratio, "0.1", 0, 1, 0, "final learning rate as a fraction of optim.lr"),
    FLOAT(train, decay_fraction, "0.2", 0, 1, 0, "wsd: share of the steps spent in the final decay"),
    FLOAT(train, grad_clip, "1", 0, 1e9, 0, "clip the global gradient norm to this (0 = off)"),
    INT(train, eval_every, "0", 0, STEPS_MAX, "evaluate every N steps and at the end (0 = only at the end)"),
    INT(train, eval_batches, "8", 1, 1048576, "batches per evaluation"),
    INT(train, max_bad_steps, "3", 1, 1000000, "consecutive steps with a NaN/Inf loss or gradient before the run halts"),
    FLOAT(train, z_loss, "0", 0, 1, 0, "weight of the z-loss (log-sum-exp squared) term"),
    INT(train, seed, "1234", 0, SEED_MAX, "seed of the training randomness (stochastic rounding, ...)"),
    INT(train, ckpt_every, "0", 0, STEPS_MAX, "write a checkpoint every N steps and at the end (0 = only on SIGINT/SIGTERM)"),
    INT(train, ckpt_keep, "3", 1, 1000000, "complete checkpoints kept (the newest ones)"),
    INT(train, ckpt_keep_every, "0", 0, STEPS_MAX, "also keep every checkpoint whose step is a multiple of this (0 = off)"),
    KEY(train, resume, KL_KEY_PATH, "auto", 0, 0, 0, "auto|none",
        "auto = newest complete checkpoint of this run, none = start fresh, or a checkpoint step folder"),

    /* ---- optim ---- */
    ENUM(optim, name, "adamw", "adamw|dash|dct_adamw", "optimizer"),
    FLOAT(optim, lr, "0.0003", 0, 10, MIN_OPEN, "peak learning rate"),
    FLOAT(optim, beta1, "0.9", 0, 1, MAX_OPEN, "first-moment decay"),
    FLOAT(optim, beta2, "0.95", 0, 1, MAX_OPEN, "second-moment decay"),
    FLOAT(optim, eps, "1e-08", 0, 1, MIN_OPEN, "denominator epsilon"),
    FLOAT(optim, weight_decay, "0.1", 0, 10, 0, "decoupled weight decay of the linear-layer matrices"),
    BOOL(optim, decay_embeddings, "false", "apply weight decay to the embeddings and LM head too"),
    BOOL(optim, decay_norms, "false", "apply weight decay to norm weights and biases too"),
    ENUM(optim, state_dtype, "fp32", "fp32|bf16", "number format of the optimizer state"),
    INT(optim, dash_block_size, "1024", 1, 65536, "DASH: matrices are cut into b x b blocks plus remainder strips"),
    FLOAT(optim, dash_beta_lr, "0.95", 0, 1, 0, "DASH: EMA of the factors L and R (1 = plain sums)"),
    FLOAT(optim, dash_beta_g, "0.9", 0, 1, MAX_OPEN, "DASH: gradient EMA (0 = raw gradient)"),
    FLOAT(optim, dash_beta_graft, "0.95", 0, 1, MAX_OPEN, "DASH: second moment of the Adam graft"),
    FLOAT(optim, dash_eps_graft, "1e-08", 0, 1, MIN_OPEN, "DASH: epsilon of the Adam graft"),
    BOOL(optim, dash_bias_correction, "true", "DASH: bias-correct the graft direction"),
    FLOAT(optim, dash_mu, "0", 0, 1, MAX_OPEN, "DASH: momentum on the update (0 = off)"),
    BOOL(optim, dash_nesterov, "true", "DASH: Nesterov form of the momentum"),
    INT(optim, dash_start_prec_step, "-1", -1, STEPS_MAX, "DASH: plain Adam steps before preconditioning starts (-1 = from the start)"),
    INT(optim, dash_inv_root_every, "10", 1, STEPS_MAX, "DASH: recompute the inverse roots every N steps"),
    ENUM(optim, dash_inv_root_method, "newton_db", "newton_db|coupled_newton|chebyshev|eigh", "DASH: inverse 4th-root solver"),
    ENUM(optim, dash_scaling, "power_iter", "power_iter|power_iter_multi|frobenius", "DASH: spectrum scale of the iterative solvers (power_iter_multi = 16 start vectors)"),
    FLOAT(optim, dash_scale_const, "2", 0, 1e6, MIN_OPEN, "DASH: multiplier on the largest-eigenvalue estimate"),
    INT(optim, dash_power_iters, "10", 1, 10000, "DASH: power iterations"),
    FLOAT(optim, dash_power_eps, "1e-06", 0, 1, 0, "DASH: shift for the largest-eigenvalue estimate only"),
    FLOAT(optim, dash_eps_root, "0", 0, 1, 0, "DASH: damping added before the inverse root"),
    INT(optim, dash_newton_steps, "10", 1, 1000, "DASH: Newton-DB steps / coupled-Newton maximum"),
    FLOAT(optim, dash_cn_tol, "1e-06", 0, 1, 0, "DASH: coupled-Newton stopping tolerance"),
    INT(optim, dash_cheb_degree, "60", 1, 1000, "DASH: Chebyshev degree"),
    FLOAT(optim, dash_cheb_shift, "0.001", 0, 1, MIN_OPEN, "DASH: Chebyshev interval shift"),
    ENUM(optim, dash_one_dim, "adamw", "adamw|shampoo", "DASH: how vectors (norms, biases) are updated"),
    INT(optim, dct_rank, "128", 1, 1048576, "DCT-AdamW: basis columns kept per matrix"),
    INT(optim, dct_refresh_every, "200", 1, STEPS_MAX, "DCT-AdamW: steps between column re-selections"),
    INT(optim, dct_ell, "1", 1, 2, "DCT-AdamW: norm used to score columns (1 or 2)"),
    INT(optim, dct_max_dim, "32000", 2, 1099511627776.0, "DCT-AdamW: matrices with a side >= this get full AdamW"),
    ENUM(optim, dct_basis, "dct2", "dct2|dct3", "DCT-AdamW: basis (dct3 matches the PyTorch package's default)"),

    /* ---- precision ---- */
    ENUM(precision, matmul, "bf16", "bf16|fp8|nvfp4", "format of the transformer blocks' linear layers"),
    ENUM(precision, master, "fp32", "fp32|bf16", "format of the master weights (bf16 uses stochastic rounding)"),
    ENUM(precision, nvfp4_backward, "ms_eden", "ms_eden|sr", "nvfp4: rounding of the backward GEMM operands"),

    /* ---- memory ---- */
    KEY(memory, device_limit, KL_KEY_BYTES, "0", 0, 1125899906842624.0, 0, NULL,
        "device memory the run may use, e.g. 16GiB (0 = the whole device)"),
    ENUM(memory, recompute, "none", "none|swiglu|norm|ffn|attention|block",
         "activations recomputed in the backward pass instead of stored"),
    INT(memory, lm_head_rows, "0", 0, 1e9,
        "GPU: positions whose logits exist at once in the LM head (0 = auto: equal chunks, 1/24 of memory, 1-6 GiB)"),

    /* ---- parallel ---- */
    INT(parallel, gpus, "1", 1, 1024, "GPUs used for data parallelism"),
    ENUM(parallel, mode, "threads", "threads|processes", "one thread per GPU, or one process per GPU"),
    ENUM(parallel, backend, "nccl", "nccl|copy_engine", "collectives through NCCL or through copy engines"),
    INT(parallel, zero, "0", 0, 3, "ZeRO stage: 1 shards optimizer state, 2 also gradients, 3 also weights"),

    /* ---- log ---- */
    INT(log, every, "10", 1, 1e9, "print and record a line every N steps"),
    PATH(log, metrics, "JSONL metrics file (empty = <run dir>/metrics.jsonl)"),
    BOOL(log, console, "true", "print progress lines to the console"),
};

const kl_key *kl_config_keys(size_t *count) {
    *count = sizeof keys / sizeof keys[0];
    return keys;
}

const kl_section *kl_config_sections(size_t *count) {
    *count = sizeof sections / sizeof sections[0];
    return sections;
}
