/* cmd_generate.c — placeholder until this subcommand lands. */
#include <stdio.h>
#include "commands.h"

int kl_cmd_generate(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "kiln generate: not built yet\n");
    return 2;
}
