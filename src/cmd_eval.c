/* cmd_eval.c — placeholder until this subcommand lands. */
#include <stdio.h>
#include "commands.h"

int kl_cmd_eval(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "kiln eval: not built yet\n");
    return 2;
}
