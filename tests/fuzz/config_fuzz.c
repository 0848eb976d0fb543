/* config_fuzz.c — libFuzzer target for the YAML config loader (kl_config_load_string). Any text must be
 * either refused with a message that names the file, leaving the config as it was, or accepted; an accepted
 * config must survive kl_config_validate and come back key for key when its printed form (what a run saves
 * as config.yaml and reloads on resume) is loaded again from another folder. Values are compared as
 * kl_config_format_value writes them, so padding bytes and the NaN-free doubles compare exactly. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kl_base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The first key whose printed value differs between a and b, or NULL. */
static const kl_key *first_difference(const kl_config *a, const kl_config *b) {
    static char va[KL_CFG_PATH_MAX * 4 + 8], vb[KL_CFG_PATH_MAX * 4 + 8];
    size_t nk;
    const kl_key *k = kl_config_keys(&nk);
    for (size_t i = 0; i < nk; i++)
        if (strcmp(kl_config_format_value(a, &k[i], va, sizeof va), kl_config_format_value(b, &k[i], vb, sizeof vb)))
            return &k[i];
    return NULL;
}

static void fail(const char *what, const kl_key *k) {
    fprintf(stderr, "config_fuzz: %s%s%s%s%s\n", what, k ? " at " : "", k ? k->section : "", k ? "." : "",
            k ? k->name : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0; /* a NUL inside ends the text early, as reading a file with one does not: fine here */
    static kl_config c, before, again;
    kl_config_defaults(&c);
    before = c;
    if (kl_config_load_string(&c, text, "fuzz.yaml", "/fuzz/base") != KL_OK) {
        const kl_key *changed = first_difference(&c, &before);
        if (changed) fail("a refused config changed the config", changed);
        if (strncmp(kl_last_error(), "fuzz.yaml", 9) != 0) {
            fprintf(stderr, "message: %s\n", kl_last_error());
            fail("a refusal's message does not start with the file's name", NULL);
        }
        free(text);
        return 0;
    }
    (void)kl_config_validate(&c);
    char *printed = NULL;
    size_t plen = 0;
    FILE *f = open_memstream(&printed, &plen);
    if (!f) abort();
    kl_config_print(&c, f);
    fclose(f);
    kl_config_defaults(&again);
    if (kl_config_load_string(&again, printed, "printed.yaml", "/elsewhere") != KL_OK) {
        fprintf(stderr, "message: %s\nprinted:\n%s\n", kl_last_error(), printed);
        fail("the printed form of an accepted config does not load", NULL);
    }
    const kl_key *k = first_difference(&c, &again);
    if (k) {
        static char va[KL_CFG_PATH_MAX * 4 + 8], vb[KL_CFG_PATH_MAX * 4 + 8];
        fprintf(stderr, "loaded %s, reloaded %s\n", kl_config_format_value(&c, k, va, sizeof va),
                kl_config_format_value(&again, k, vb, sizeof vb));
        fail("the printed form reloads to another value", k);
    }
    free(printed);
    free(text);
    return 0;
}
