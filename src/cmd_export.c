/* cmd_export.c — `kiln init CONFIG OUT_DIR` (a randomly initialised Hugging Face folder) and
 * `kiln export CKPT OUT_DIR` (a training checkpoint's master weights as a Hugging Face folder that
 * `transformers` loads as is; tokenizer files are copied from the run's model.hf_dir when it has them).
 * Neither overwrites an existing model in OUT_DIR unless --force is given. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "commands.h"
#include "config.h"
#include "model_config.h"
#include "model_io.h"

static kl_status prepare_out_dir(const char *dir, int force) {
    char path[KL_CFG_PATH_MAX + 32];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return kl_error(KL_ERR_IO, "cannot create %s (%s)", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!force && access(path, F_OK) == 0)
        return kl_error(KL_ERR_CONFIG, "%s already holds a model; pass --force to replace it", dir);
    return KL_OK;
}

/* Splits argv into positional arguments and --force; returns the number of positionals. */
static int positionals(int argc, char **argv, char **pos, int max, int *force) {
    int n = 0;
    *force = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0) *force = 1;
        else if (n < max) pos[n++] = argv[i];
        else return -1;
    }
    return n;
}

int kl_cmd_init(int argc, char **argv) {
    if (kl_wants_help(argc, argv) || argc < 2) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: kiln init CONFIG.yaml OUT_DIR [--force] [section.key=value ...]\n\n"
                "Writes a randomly initialised model of the config's shape (model.*, model.seed, model.init_std) as\n"
                "a Hugging Face folder: config.json + model.safetensors.\n");
        return argc < 2 ? 2 : 0;
    }
    char *pos[64];
    int force, n = positionals(argc, argv, pos, 64, &force);
    if (n < 2 || strchr(pos[1], '=')) {
        fprintf(stderr, "kiln init: need CONFIG.yaml and OUT_DIR before any overrides\n");
        return 2;
    }
    const int out_i = 1;
    static kl_config cfg;
    kl_status st = kl_config_parse_args(&cfg, pos[0], n - 2, pos + 2);
    if (st != KL_OK) return kl_config_cli_error("init", st);
    kl_model_shape s;
    kl_model *m = NULL;
    if ((st = kl_model_shape_from_config(&cfg, &s)) == KL_OK && (st = prepare_out_dir(pos[out_i], force)) == KL_OK &&
        (st = kl_model_create(&m, &s)) == KL_OK) {
        kl_model_init_weights(m, (uint64_t)cfg.model.seed, (float)cfg.model.init_std);
        st = kl_model_save(m, pos[out_i]);
    }
    if (st == KL_OK)
        printf("kiln init: %s model, %.2fM parameters, written to %s\n", kl_arch_name(s.arch),
               (double)kl_model_num_params(m) / 1e6, pos[out_i]);
    kl_model_free(m);
    return kl_config_cli_error("init", st);
}

int kl_cmd_export(int argc, char **argv) {
    if (kl_wants_help(argc, argv) || argc < 2) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: kiln export CKPT OUT_DIR [--force]\n\n"
                "Writes a checkpoint's master weights as a Hugging Face folder (config.json, model.safetensors, and\n"
                "the tokenizer files of the run's model.hf_dir when it has them). CKPT is a step folder\n"
                "(runs/NAME/ckpt/step_00001000) or a checkpoint root, whose newest complete checkpoint is used.\n");
        return argc < 2 ? 2 : 0;
    }
    char *pos[2];
    int force, n = positionals(argc, argv, pos, 2, &force);
    if (n != 2) {
        fprintf(stderr, "kiln export: need CKPT and OUT_DIR\n");
        return 2;
    }
    if (access(pos[0], F_OK) != 0) {
        fprintf(stderr, "kiln export: %s does not exist (expected a checkpoint step folder or root)\n", pos[0]);
        return 2;
    }
    kl_ckpt_choice choice;
    kl_status st = kl_ckpt_resolve_resume(pos[0], pos[0], &choice);
    if (st == KL_ERR_INVALID) st = kl_ckpt_find_latest(pos[0], &choice); /* a root rather than a step folder */
    if (st != KL_OK) return kl_config_cli_error("export", st);
    if (!choice.found) {
        fprintf(stderr, "kiln export: no complete checkpoint at %s\n", pos[0]);
        return 2;
    }
    kl_ckpt_reader *r = NULL;
    char *yaml = NULL;
    kl_model *m = NULL;
    static kl_config cfg;
    kl_model_shape s;
    if ((st = kl_ckpt_open(&r, choice.dir, 0)) == KL_OK && (st = kl_ckpt_get_string(r, "config", &yaml)) == KL_OK &&
        (st = kl_config_load_string(&cfg, yaml, choice.dir, NULL)) == KL_OK &&
        (st = kl_model_shape_from_config(&cfg, &s)) == KL_OK && (st = kl_model_create(&m, &s)) == KL_OK &&
        (st = kl_ckpt_get_f32(r, "params", kl_model_params(m), kl_model_num_params(m))) == KL_OK &&
        (st = prepare_out_dir(pos[1], force)) == KL_OK && (st = kl_model_save(m, pos[1])) == KL_OK &&
        cfg.model.hf_dir[0])
        st = kl_model_copy_tokenizer(cfg.model.hf_dir, pos[1]);
    if (st == KL_OK) printf("kiln export: step %lld of %s -> %s\n", (long long)kl_ckpt_step(r), choice.dir, pos[1]);
    free(yaml);
    kl_ckpt_close(r);
    kl_model_free(m);
    return kl_config_cli_error("export", st);
}
