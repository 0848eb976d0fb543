/* kiln.c — the command-line entry point: finds the subcommand and hands it the rest of the arguments.
 * Everything a subcommand does lives in its own cmd_*.c file. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} kl_command;

static const kl_command commands[] = {
    {"train", kl_cmd_train, "train a model: kiln train CONFIG.yaml [section.key=value ...]"},
    {"config", kl_cmd_config, "print the resolved config: kiln config CONFIG.yaml [section.key=value ...]"},
    {"data", kl_cmd_data, "token files: kiln data inspect FILE..."},
    {"bench", kl_cmd_bench, "benchmarks with JSON output: kiln bench [data|kernels|gemm]"},
    {"init", kl_cmd_init, "random initial weights as a Hugging Face folder: kiln init CONFIG.yaml OUT_DIR"},
    {"export", kl_cmd_export, "a checkpoint as a Hugging Face folder: kiln export CKPT OUT_DIR"},
    {"eval", kl_cmd_eval, "loss and perplexity on the eval set: kiln eval CONFIG.yaml [section.key=value ...]"},
    {"generate", kl_cmd_generate, "sample text: kiln generate CONFIG.yaml [--prompt TEXT] [key=value ...]"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

int kl_wants_help(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "kiln — train Llama/Qwen-family language models in C and CUDA\n\n"
               "usage: kiln COMMAND [arguments]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'kiln COMMAND --help' describes one command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "kiln: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
