/* commands.h — the subcommands of the `kiln` executable, one file each (src/cmd_*.c).
 * Each takes the arguments after its own name and returns the process exit status:
 * 0 success, 1 runtime failure, 2 bad usage / bad configuration / bad input. */
#ifndef KL_COMMANDS_H
#define KL_COMMANDS_H

int kl_cmd_train(int argc, char **argv);    /* cmd_train.c:    train a model from a config */
int kl_cmd_config(int argc, char **argv);   /* cmd_config.c:   print the resolved config, the key reference */
int kl_cmd_data(int argc, char **argv);     /* cmd_data.c:     inspect token files */
int kl_cmd_bench(int argc, char **argv);    /* cmd_bench.c:    benchmarks, JSON out */
int kl_cmd_generate(int argc, char **argv); /* cmd_generate.c: sample text from a model */
int kl_cmd_init(int argc, char **argv);     /* cmd_export.c:   a randomly initialised HF folder */
int kl_cmd_export(int argc, char **argv);   /* cmd_export.c:   a checkpoint as an HF folder */
int kl_cmd_eval(int argc, char **argv);     /* cmd_eval.c:     loss / perplexity of a model on the eval set */

/* True if argv holds -h or --help. */
int kl_wants_help(int argc, char **argv);

#endif
