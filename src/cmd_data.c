/* cmd_data.c — `kiln data`: look inside token files. `inspect` validates each file as the loader would
 * (header, size, ids below the vocab) and prints tokens, vocab, version, mask coverage and the id range,
 * per file and in total. Errors print "kiln data: <message>" and exit 2. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "kl_base.h"
#include "tokfile.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: kiln data inspect [--json] FILE...\n\n"
            "Validates token files (LLMQ's format: 1024-byte header 'BIN.TOK\\n', int32 tokens, optional\n"
            "loss-mask bitmap) and prints per file and in total: tokens, vocab size, format version, whether\n"
            "a mask is present, mask coverage (share of tokens marked as valid targets) and the smallest and\n"
            "largest token id. --json prints one JSON object per file and one for the total instead.\n"
            "Write such files with scripts/tokenize.py. Exit status 2 on the first invalid file.\n");
}

static void print_row(int json, const char *name, int64_t tokens, const char *vocab, int version,
                      const char *mask, double coverage, int32_t mn, int32_t mx) {
    if (json) {
        printf("{\"file\":\"");
        for (const char *p = name; *p; p++) {
            if (*p == '"' || *p == '\\') printf("\\%c", *p);
            else if ((unsigned char)*p < 32) printf("\\u%04x", (unsigned char)*p);
            else putchar(*p);
        }
        printf("\",\"tokens\":%lld,\"vocab\":%s,\"version\":%d,\"has_mask\":%s,\"mask_coverage\":%.6f,"
               "\"min_id\":%d,\"max_id\":%d}\n",
               (long long)tokens, vocab[0] == '-' ? "null" : vocab, version,
               strcmp(mask, "yes") == 0 ? "true" : (strcmp(mask, "no") == 0 ? "false" : "null"), coverage, mn, mx);
    } else {
        char ver[16] = "";
        if (version > 0) snprintf(ver, sizeof ver, "%d", version);
        printf("%-40s %14lld %9s %7s %5s %8.2f%% %9d %9d\n", name, (long long)tokens, vocab, ver, mask,
               100.0 * coverage, mn, mx);
    }
}

static int inspect(int argc, char **argv) {
    int json = 0, n_files = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "kiln data: unknown option '%s' for inspect (see kiln data --help)\n", argv[i]);
            return 2;
        } else n_files++;
    }
    if (n_files == 0) {
        fprintf(stderr, "kiln data: inspect needs at least one token file\n");
        return 2;
    }
    if (!json)
        printf("%-40s %14s %9s %7s %5s %9s %9s %9s\n", "file", "tokens", "vocab", "version", "mask", "coverage",
               "min id", "max id");
    int64_t total = 0, valid = 0;
    int32_t mn = 0, mx = -1;
    int vocab = -1, any_tokens = 0;
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1]) continue;
        kl_tokfile f;
        if (kl_tokfile_open(&f, argv[i], 0) != KL_OK) {
            fflush(stdout);
            fprintf(stderr, "kiln data: %s\n", kl_last_error());
            return 2;
        }
        char v[32] = "-";
        if (f.vocab_size > 0) snprintf(v, sizeof v, "%d", f.vocab_size);
        int64_t fv = kl_tokfile_mask_valid(&f);
        print_row(json, f.path, f.count, v, f.version, f.has_mask ? "yes" : "no",
                  f.count ? (double)fv / (double)f.count : 0.0, f.count ? f.min_id : 0, f.count ? f.max_id : 0);
        total += f.count;
        valid += fv;
        if (f.count) {
            if (!any_tokens || f.min_id < mn) mn = f.min_id;
            if (!any_tokens || f.max_id > mx) mx = f.max_id;
            any_tokens = 1;
        }
        if (vocab == -1) vocab = f.vocab_size;
        else if (vocab != f.vocab_size) vocab = -2; /* files disagree */
        kl_tokfile_close(&f);
    }
    char v[32] = "mixed";
    if (vocab == 0) snprintf(v, sizeof v, "-");
    else if (vocab > 0) snprintf(v, sizeof v, "%d", vocab);
    char name[48];
    snprintf(name, sizeof name, "total (%d file%s)", n_files, n_files == 1 ? "" : "s");
    if (json && vocab == -2) snprintf(v, sizeof v, "-");
    print_row(json, name, total, v, 0, "", total ? (double)valid / (double)total : 0.0, any_tokens ? mn : 0,
              any_tokens ? mx : 0);
    return 0;
}

int kl_cmd_data(int argc, char **argv) {
    if (argc == 0) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0 || kl_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[0], "inspect") == 0) return inspect(argc - 1, argv + 1);
    fprintf(stderr, "kiln data: unknown subcommand '%s' (expected: inspect)\n", argv[0]);
    return 2;
}
