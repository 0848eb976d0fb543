/* cmd_train.c — placeholder until this subcommand lands. */
#include <stdio.h>
#include "commands.h"

int kl_cmd_train(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "kiln train: not built yet\n");
    return 2;
}
