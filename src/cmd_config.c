/* cmd_config.c — placeholder until this subcommand lands. */
#include <stdio.h>
#include "commands.h"

int kl_cmd_config(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "kiln config: not built yet\n");
    return 2;
}
