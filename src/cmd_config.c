/* cmd_config.c — `kiln config`: prints the resolved config (file + overrides, validated) as YAML, or the
 * markdown reference of every key. Exit 0 on success, 2 on a bad config or bad usage (nothing printed
 * to stdout then). The parsing itself lives in config.c. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "config.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: kiln config CONFIG.yaml [section.key=value ...]\n"
            "       kiln config --reference\n\n"
            "Prints the configuration a run would use: the defaults, then CONFIG.yaml, then each override\n"
            "(e.g. optim.lr=1e-3 train.steps=500), checked like 'kiln train' checks them. Relative paths\n"
            "in the file resolve against the file's folder and are printed absolute. The output is itself\n"
            "a valid config. On an error the message names the file, line, column and key; exit status 2.\n\n"
            "  --reference   print the markdown reference of every key (section, type, default, range)\n"
            "  -h, --help    this text\n");
}

int kl_cmd_config(int argc, char **argv) {
    if (kl_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (argc == 1 && strcmp(argv[0], "--reference") == 0) {
        kl_config_print_reference(stdout);
        return 0;
    }
    if (argc < 1 || argv[0][0] == '-' || strchr(argv[0], '=')) {
        if (argc >= 1) fprintf(stderr, "kiln config: expected CONFIG.yaml first, got '%s'\n\n", argv[0]);
        usage(stderr);
        return 2;
    }
    kl_config cfg;
    kl_status s = kl_config_parse_args(&cfg, argv[0], argc - 1, argv + 1);
    if (s != KL_OK) return kl_config_cli_error("config", s);
    printf("# resolved from %s", argv[0]);
    for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
    printf("\n");
    kl_config_print(&cfg, stdout);
    return 0;
}
