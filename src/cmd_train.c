/* cmd_train.c — `kiln train CONFIG.yaml [section.key=value ...]`: resolve the config, run training. */
#include <stdio.h>

#include "commands.h"
#include "config.h"
#include "train_run.h"

int kl_cmd_train(int argc, char **argv) {
    if (kl_wants_help(argc, argv) || argc < 1) {
        fprintf(argc < 1 ? stderr : stdout,
                "usage: kiln train CONFIG.yaml [section.key=value ...]\n\n"
                "Trains the model the config describes. Overrides use the config's validation, e.g.\n"
                "  kiln train configs/tiny.yaml train.steps=50 optim.lr=1e-3\n"
                "Outputs go to runs/<train.name>/ under the working directory: metrics.jsonl (one JSON object per\n"
                "logged step) and model/ (config.json + model.safetensors). 'kiln config --reference' lists every key.\n");
        return argc < 1 ? 2 : 0;
    }
    static kl_config cfg; /* large (path buffers): keep it off the stack */
    kl_status st = kl_config_parse_args(&cfg, argv[0], argc - 1, argv + 1);
    if (st != KL_OK) return kl_config_cli_error("train", st);
    st = kl_train_run(&cfg);
    return kl_config_cli_error("train", st);
}
