/* cmd_bench.c — placeholder until this subcommand lands. */
#include <stdio.h>
#include "commands.h"

int kl_cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "kiln bench: not built yet\n");
    return 2;
}
