/* config.h — kiln's configuration: the kl_config struct (one nested struct per YAML section), the key
 * table that describes every key (config_keys.c), and loading / overriding / validating / printing it.
 * Adding a key = one field here + one row in config_keys.c; parsing, printing and the reference follow. */
#ifndef KL_CONFIG_H
#define KL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_CFG_PATH_MAX 1024 /* path keys, including the terminating NUL */
#define KL_CFG_NAME_MAX 64   /* name keys, including the terminating NUL */

/* Enum keys: the values follow the order of the key's choices in config_keys.c (a test checks it).
 * Where another module has the same enum (model.h kl_arch, schedule.h kl_schedule_kind, optim.h
 * kl_opt_kind / kl_state_dtype, loader.h kl_data_source, rope.h scaling) the order is the same too. */
typedef enum { KL_CFG_ARCH_LLAMA = 0, KL_CFG_ARCH_QWEN2, KL_CFG_ARCH_QWEN3, KL_CFG_ARCH_MISTRAL } kl_cfg_arch;
typedef enum { KL_CFG_ROPE_NONE = 0, KL_CFG_ROPE_LLAMA3 } kl_cfg_rope_scaling;
typedef enum { KL_CFG_DATA_FILES = 0, KL_CFG_DATA_SYNTHETIC } kl_cfg_data_source;
typedef enum { KL_CFG_DEVICE_AUTO = 0, KL_CFG_DEVICE_CPU, KL_CFG_DEVICE_CUDA } kl_cfg_device;
typedef enum { KL_CFG_SCHED_CONSTANT = 0, KL_CFG_SCHED_COSINE, KL_CFG_SCHED_LINEAR, KL_CFG_SCHED_WSD } kl_cfg_schedule;
typedef enum { KL_CFG_OPTIM_ADAMW = 0, KL_CFG_OPTIM_DASH, KL_CFG_OPTIM_DCT_ADAMW } kl_cfg_optim;
typedef enum { KL_CFG_STATE_FP32 = 0, KL_CFG_STATE_BF16 } kl_cfg_state_dtype;
typedef enum { KL_CFG_ROOT_NEWTON_DB = 0, KL_CFG_ROOT_COUPLED_NEWTON, KL_CFG_ROOT_CHEBYSHEV, KL_CFG_ROOT_EIGH } kl_cfg_dash_root;
typedef enum { KL_CFG_SCALING_POWER_ITER = 0, KL_CFG_SCALING_POWER_ITER_MULTI, KL_CFG_SCALING_FROBENIUS } kl_cfg_dash_scaling;
typedef enum { KL_CFG_ONE_DIM_ADAMW = 0, KL_CFG_ONE_DIM_SHAMPOO } kl_cfg_dash_one_dim;
typedef enum { KL_CFG_DCT_BASIS_DCT2 = 0, KL_CFG_DCT_BASIS_DCT3 } kl_cfg_dct_basis;
typedef enum { KL_CFG_MATMUL_BF16 = 0, KL_CFG_MATMUL_FP8, KL_CFG_MATMUL_NVFP4 } kl_cfg_matmul;
typedef enum { KL_CFG_MASTER_FP32 = 0, KL_CFG_MASTER_BF16 } kl_cfg_master;
typedef enum { KL_CFG_NVFP4_BWD_MS_EDEN = 0, KL_CFG_NVFP4_BWD_SR } kl_cfg_nvfp4_backward;
typedef enum {
    KL_CFG_RECOMPUTE_NONE = 0,
    KL_CFG_RECOMPUTE_SWIGLU,
    KL_CFG_RECOMPUTE_NORM,
    KL_CFG_RECOMPUTE_FFN,
    KL_CFG_RECOMPUTE_ATTENTION,
    KL_CFG_RECOMPUTE_BLOCK
} kl_cfg_recompute;
typedef enum { KL_CFG_PAR_THREADS = 0, KL_CFG_PAR_PROCESSES } kl_cfg_parallel_mode;
typedef enum { KL_CFG_BACKEND_NCCL = 0, KL_CFG_BACKEND_COPY_ENGINE } kl_cfg_backend;

/* Integers are int64_t, numbers double, paths absolute (resolved when set; "" = unset). */
typedef struct {
    struct {
        kl_cfg_arch arch;
        char hf_dir[KL_CFG_PATH_MAX];
        char hf_config[KL_CFG_PATH_MAX];
        int64_t vocab_size, hidden_size;
        int64_t intermediate_size; /* 0 = computed by the model code */
        int64_t num_layers, num_heads;
        int64_t num_kv_heads;      /* 0 = num_heads */
        int64_t head_dim;          /* 0 = hidden_size / num_heads */
        int64_t max_seq_len;
        double rope_theta;
        kl_cfg_rope_scaling rope_scaling;
        double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
        int64_t rope_original_max_pos;
        double rms_norm_eps;
        bool tie_embeddings;
        double init_std;
        int64_t seed;
    } model;
    struct {
        kl_cfg_data_source source;
        char train[KL_CFG_PATH_MAX]; /* comma-separated globs, each absolute */
        char eval[KL_CFG_PATH_MAX];
        int64_t seq_len;
        bool shuffle;
        int64_t seed;
        int64_t synthetic_patterns;
    } data;
    struct {
        char name[KL_CFG_NAME_MAX];
        char out_dir[KL_CFG_PATH_MAX]; /* "" = runs/<name> under the working directory */
        kl_cfg_device device;
        bool cuda_graphs; /* GPU: replay each block's forward/backward as a captured CUDA graph */
        bool fused_swiglu; /* GPU: SwiGLU forward and backward in the MLP GEMMs where kiln's sm90 GEMM runs */
        char gemm_tune[KL_CFG_PATH_MAX]; /* GPU GEMM tuning file: "auto", "off" or an absolute path */
        int64_t steps, batch_size, grad_accum;
        kl_cfg_schedule schedule;
        int64_t warmup_steps;
        double min_lr_ratio, decay_fraction, grad_clip;
        int64_t eval_every, eval_batches, max_bad_steps;
        double z_loss;
        int64_t seed;
        int64_t ckpt_every, ckpt_keep, ckpt_keep_every;
        char resume[KL_CFG_PATH_MAX]; /* "auto", "none" or an absolute step folder */
    } train;
    struct {
        kl_cfg_optim name;
        double lr, beta1, beta2, eps, weight_decay;
        bool decay_embeddings, decay_norms;
        kl_cfg_state_dtype state_dtype;
        /* DASH (optim/dash.c; optim.h kl_dash_settings says what each does) */
        int64_t dash_block_size;
        double dash_beta_lr, dash_beta_g, dash_beta_graft, dash_eps_graft;
        bool dash_bias_correction;
        double dash_mu;
        bool dash_nesterov;
        int64_t dash_start_prec_step, dash_inv_root_every;
        kl_cfg_dash_root dash_inv_root_method;
        kl_cfg_dash_scaling dash_scaling;
        double dash_scale_const;
        int64_t dash_power_iters;
        double dash_power_eps, dash_eps_root;
        int64_t dash_newton_steps;
        double dash_cn_tol;
        int64_t dash_cheb_degree;
        double dash_cheb_shift;
        kl_cfg_dash_one_dim dash_one_dim;
        /* DCT-AdamW (optim/dct_adamw.c) */
        int64_t dct_rank, dct_refresh_every, dct_ell, dct_max_dim;
        kl_cfg_dct_basis dct_basis;
    } optim;
    struct {
        kl_cfg_matmul matmul;
        kl_cfg_master master;
        kl_cfg_nvfp4_backward nvfp4_backward;
    } precision;
    struct {
        int64_t device_limit; /* bytes; 0 = the whole device */
        kl_cfg_recompute recompute;
        int64_t lm_head_rows; /* rows of logits alive at once in the GPU's LM head; 0 = auto */
    } memory;
    struct {
        int64_t gpus;
        kl_cfg_parallel_mode mode;
        kl_cfg_backend backend;
        int64_t zero;
    } parallel;
    struct {
        int64_t every;
        char metrics[KL_CFG_PATH_MAX]; /* "" = <run dir>/metrics.jsonl */
        bool console;
    } log;
} kl_config;

/* ---- the key table ------------------------------------------------------------------------------ */

typedef enum {
    KL_KEY_INT,    /* int64_t; decimal integer */
    KL_KEY_FLOAT,  /* double; finite number */
    KL_KEY_BOOL,   /* bool; true/false (also yes/no, on/off) */
    KL_KEY_NAME,   /* char[size]; letters, digits, '.', '_', '-' */
    KL_KEY_ENUM,   /* C enum (int); one of choices "a|b|c", stored as the index */
    KL_KEY_PATH,   /* char[size]; relative = against the config file's folder (the working directory for
                      command-line overrides); stored absolute; "" = unset */
    KL_KEY_PATHS,  /* like PATH, a comma-separated list of paths or globs, each resolved */
    KL_KEY_BYTES,  /* int64_t; a size such as 16GiB (kl_parse_bytes) */
} kl_key_type;

#define KL_KEY_MIN_OPEN 1u /* the range excludes min */
#define KL_KEY_MAX_OPEN 2u /* the range excludes max */

typedef struct {
    const char *section;
    const char *name;
    kl_key_type type;
    const char *def;     /* default, as it would be written in YAML */
    double min, max;     /* INT, FLOAT, BYTES */
    unsigned flags;      /* KL_KEY_MIN_OPEN | KL_KEY_MAX_OPEN */
    const char *choices; /* ENUM: "a|b|c"; PATH: words kept verbatim instead of a path ("auto|none") */
    const char *help;    /* one line */
    size_t offset;       /* offsetof(kl_config, section.name) */
    size_t size;         /* sizeof the field */
} kl_key;

typedef struct {
    const char *name;
    const char *help;
} kl_section;

/* The table, in print order (config_keys.c). */
const kl_key *kl_config_keys(size_t *count);
const kl_section *kl_config_sections(size_t *count);
/* NULL when there is no such key. */
const kl_key *kl_config_find_key(const char *section, const char *name);
/* Whether v lies in key k's range (INT, FLOAT, BYTES), and the range as a message shows it: "[1, 1048576]". */
int kl_key_in_range(const kl_key *k, double v);
void kl_key_format_range(const kl_key *k, char *buf, size_t n);
/* Checks the table itself: unique names, known sections, defaults that parse and lie in range. */
kl_status kl_config_check_table(void);

/* ---- loading ------------------------------------------------------------------------------------ */

/* Every key at its default. */
void kl_config_defaults(kl_config *c);
/* Defaults, then the YAML file. Unknown keys, bad values, YAML errors -> KL_ERR_CONFIG with
 * "FILE:LINE:COL: ..." (1-based). Cross-key checks are kl_config_validate's. *c changes only on success. */
kl_status kl_config_load(kl_config *c, const char *yaml_path);
/* Like kl_config_load, from text in memory; `name` stands for the file in messages and `base_dir` is
 * where relative paths resolve (NULL = the working directory). */
kl_status kl_config_load_string(kl_config *c, const char *yaml, const char *name, const char *base_dir);
/* One command-line override "section.key=value" (relative paths against the working directory).
 * Errors start with "command line: ". *c changes only on success. */
kl_status kl_config_set(kl_config *c, const char *assignment);
/* Cross-key checks (head counts divide, data.train given when data.source is files, ...). */
kl_status kl_config_validate(const kl_config *c);
/* The one call subcommands use: load + every override (argv[i] = "section.key=value") + validate.
 * *c changes only on success: no partial configuration escapes. */
kl_status kl_config_parse_args(kl_config *c, const char *yaml_path, int argc, char **argv);

/* ---- output ------------------------------------------------------------------------------------- */

/* The value of key k in c as it is printed (YAML scalar text, strings double-quoted); returns buf. */
const char *kl_config_format_value(const kl_config *c, const kl_key *k, char *buf, size_t n);
/* The resolved config as YAML that kl_config_load reads back to the same values, with each key's
 * meaning as a comment. */
void kl_config_print(const kl_config *c, FILE *f);
/* Markdown reference: one table per section (key | type | default | range / choices | meaning). */
void kl_config_print_reference(FILE *f);

/* Output locations of a run: train.out_dir, or "runs/<train.name>" under the working directory;
 * log.metrics or "<run dir>/metrics.jsonl"; "<run dir>/ckpt". KL_ERR_CONFIG if buf is too small. */
kl_status kl_config_run_dir(const kl_config *c, char *buf, size_t n);
kl_status kl_config_metrics_path(const kl_config *c, char *buf, size_t n);
kl_status kl_config_ckpt_dir(const kl_config *c, char *buf, size_t n);

/* For the CLI only (it prints): reports kl_last_error() as "kiln CMD: message" on stderr and returns the
 * exit status for `s`: 2 for configuration, input and unsupported-feature errors, 1 for runtime failures,
 * 0 for KL_OK. */
int kl_config_cli_error(const char *cmd, kl_status s);

#ifdef __cplusplus
}
#endif
#endif
