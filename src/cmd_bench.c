/* cmd_bench.c — `kiln bench [NAME] [options]`: benchmarks, each a {name, function} row of one table, each
 * printing what it measured, the bound it is held to and the fraction reached, and last one JSON line
 * {"bench":NAME,...}. Without a name every benchmark runs. The `data` benchmark times the loader. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "kl_base.h"
#include "loader.h"
#include "philox.h"
#include "tokfile.h"
#include "device.h"
#ifdef KILN_HAVE_CUDA
#include "bench_cudak.h"
#include "bench_gemm.h"
#endif

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} kl_bench;

/* ---- data: loader throughput from the page cache ------------------------------------------------- */

#define DATA_BOUND_TOKENS_PER_S 50e6 /* the requirement: one core keeps a fast GPU fed */

static void data_usage(FILE *f) {
    fprintf(f, "usage: kiln bench data [--files GLOB] [--seconds S] [--tokens N] [--mask]\n\n"
               "Times kl_loader_next_batch (B=32, T=1024, shuffled) on one core after a warm pass, so the data\n"
               "is in the page cache. Without --files it writes a temporary file of N random tokens (default\n"
               "64M = 256 MB; --mask adds a loss mask) under $TMPDIR or /tmp and removes it afterwards.\n"
               "Bound: %.0f M tokens/s.\n",
            DATA_BOUND_TOKENS_PER_S / 1e6);
}

/* Random ids below `vocab` from Philox, and with --mask a bitmap with about 3/4 of the bits set. */
static kl_status write_bench_file(const char *path, int64_t n, int vocab, int with_mask) {
    int32_t *tok = kl_malloc((size_t)n * sizeof *tok, "benchmark tokens");
    uint8_t *mask = with_mask ? kl_malloc((size_t)(n + 7) / 8, "benchmark mask") : NULL;
    if (!tok || (with_mask && !mask)) {
        free(tok);
        free(mask);
        return KL_ERR_OOM;
    }
    for (int64_t i = 0; i < n; i += 4) {
        kl_philox_ctr r = kl_philox_block(0x6b696c6eu, 1, (uint64_t)i / 4);
        for (int k = 0; k < 4 && i + k < n; k++) tok[i + k] = (int32_t)(r.v[k] % (uint32_t)vocab);
    }
    if (mask)
        for (int64_t i = 0; i < (n + 7) / 8; i++) {
            kl_philox_ctr r = kl_philox_block(0x6b696c6eu, 2, (uint64_t)i);
            mask[i] = (uint8_t)(r.v[0] | r.v[1]);
        }
    kl_status s = kl_tokfile_write(path, tok, n, vocab, mask);
    free(tok);
    free(mask);
    return s;
}

static int bench_data(int argc, char **argv) {
    const char *files = NULL;
    double seconds = 3.0;
    int64_t n_tokens = 64ll << 20;
    int with_mask = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--files") == 0 && i + 1 < argc) files = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) n_tokens = atoll(argv[++i]);
        else if (strcmp(argv[i], "--mask") == 0) with_mask = 1;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            data_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "kiln bench data: unexpected argument '%s'\n", argv[i]);
            data_usage(stderr);
            return 2;
        }
    }
    if (!(seconds > 0) || n_tokens < 2 * 1025 || n_tokens > KL_TOKFILE_MAX_TOKENS) {
        fprintf(stderr, "kiln bench data: --seconds must be > 0 and --tokens in [2050, %d]\n", KL_TOKFILE_MAX_TOKENS);
        return 2;
    }

    char dir[4096] = "", path[4200] = "";
    if (!files) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/kiln-bench-data-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            fprintf(stderr, "kiln bench data: cannot create a temporary folder from %s\n", dir);
            return 1;
        }
        snprintf(path, sizeof path, "%s/bench.bin", dir);
        char b[32];
        fprintf(stderr, "bench data: writing %lld random tokens (%s) to %s\n", (long long)n_tokens,
                kl_format_bytes(4.0 * (double)n_tokens, b, sizeof b), path);
        if (write_bench_file(path, n_tokens, 50257, with_mask) != KL_OK) {
            fprintf(stderr, "kiln bench data: %s\n", kl_last_error());
            unlink(path);
            rmdir(dir);
            return 1;
        }
        files = path;
    }

    int rc = 0;
    kl_loader_opts o = {.source = KL_DATA_FILES, .files = files, .T = 1024, .B = 32, .seed = 1234, .shuffle = 1,
                        .rank = 0, .world = 1};
    kl_loader *l = NULL;
    int32_t *in = NULL, *tg = NULL;
    const int64_t per_batch = (int64_t)o.B * o.T;
    if (kl_loader_open(&l, &o) != KL_OK) {
        fprintf(stderr, "kiln bench data: %s\n", kl_last_error());
        rc = 1;
        goto done;
    }
    in = kl_malloc((size_t)per_batch * sizeof *in, "benchmark inputs");
    tg = kl_malloc((size_t)per_batch * sizeof *tg, "benchmark targets");
    if (!in || !tg) {
        fprintf(stderr, "kiln bench data: %s\n", kl_last_error());
        rc = 1;
        goto done;
    }
    /* warm pass: one epoch (capped in time) maps every page and brings the files into the page cache */
    double t0 = kl_now_seconds();
    for (int64_t b = 0; b < kl_loader_batches_per_epoch(l) && kl_now_seconds() - t0 < 4 * seconds; b++)
        if (kl_loader_next_batch(l, in, tg) != KL_OK) {
            fprintf(stderr, "kiln bench data: %s\n", kl_last_error());
            rc = 1;
            goto done;
        }
    double warm_s = kl_now_seconds() - t0;

    int64_t batches = 0;
    uint64_t checksum = 0;
    t0 = kl_now_seconds();
    double elapsed = 0;
    do {
        if (kl_loader_next_batch(l, in, tg) != KL_OK) {
            fprintf(stderr, "kiln bench data: %s\n", kl_last_error());
            rc = 1;
            goto done;
        }
        checksum += (uint32_t)in[batches % per_batch] + (uint32_t)tg[(batches * 7) % per_batch];
        batches++;
        elapsed = kl_now_seconds() - t0;
    } while (elapsed < seconds);
    double tps = (double)(batches * per_batch) / elapsed;
    int64_t total_tokens = kl_loader_samples_per_epoch(l) * o.T;
    printf("data: %lld batches of %dx%d from %d file(s) (%lld samples, shuffled%s), warm pass %.2f s\n",
           (long long)batches, o.B, o.T, kl_loader_num_files(l), (long long)kl_loader_samples_per_epoch(l),
           with_mask ? ", masked" : "", warm_s);
    printf("data: %.1f M tokens/s on one core over %.2f s (bound %.0f M tokens/s: %.2fx) [checksum %llu]\n",
           tps / 1e6, elapsed, DATA_BOUND_TOKENS_PER_S / 1e6, tps / DATA_BOUND_TOKENS_PER_S,
           (unsigned long long)checksum);
    printf("{\"bench\":\"data\",\"tokens_per_s\":%.0f,\"bound_tokens_per_s\":%.0f,\"fraction_of_bound\":%.3f,"
           "\"B\":%d,\"T\":%d,\"files\":%d,\"tokens\":%lld,\"masked\":%s,\"seconds\":%.3f}\n",
           tps, DATA_BOUND_TOKENS_PER_S, tps / DATA_BOUND_TOKENS_PER_S, o.B, o.T, kl_loader_num_files(l),
           (long long)total_tokens, with_mask ? "true" : "false", elapsed);

done:
    free(in);
    free(tg);
    kl_loader_close(l);
    if (dir[0]) {
        unlink(path);
        rmdir(dir);
    }
    return rc;
}

/* ---- kernels (CUDA builds) ------------------------------------------------------------------------- */

/* `which`: 1 the elementwise kernels, 2 the matrix products and attention, 3 both. */
static int bench_cuda(const char *name, int which, int argc, char **argv) {
    (void)argv;
    if (argc > 0) {
        printf("usage: kiln bench %s\n\nTimes %s on GPU 0 against the H200's measured bounds: elementwise kernels\n"
               "at Qwen2.5-0.5B/1.5B sizes against 4.3 TB/s, the linear layers' GEMMs and attention at both models'\n"
               "shapes against 790 TFLOP/s.\n",
               name, which == 3 ? "every CUDA kernel" : which == 1 ? "the elementwise kernels" : "the GEMMs and attention");
        return 0;
    }
#ifdef KILN_HAVE_CUDA
    if (kl_gpu_count() == 0) {
        fprintf(stderr, "kiln bench %s: no GPU visible\n", name);
        return 1;
    }
    kl_status st = KL_OK;
    if (which & 1) st = kl_bench_cudak(stdout);
    if (st == KL_OK && (which & 2)) st = kl_bench_gemm(stdout);
    if (st != KL_OK) {
        fprintf(stderr, "kiln bench %s: %s\n", name, kl_last_error());
        return 1;
    }
    return 0;
#else
    fprintf(stderr, "kiln bench %s: this build has no CUDA backend\n", name);
    return 1;
#endif
}

static int bench_kernels(int argc, char **argv) { return bench_cuda("kernels", 3, argc, argv); }
static int bench_gemm(int argc, char **argv) { return bench_cuda("gemm", 2, argc, argv); }

/* ---- the table ----------------------------------------------------------------------------------- */

static const kl_bench benches[] = {
    {"data", bench_data, "data loader tokens/s from the page cache (bound 50 M tokens/s on one core)"},
    {"kernels", bench_kernels, "every CUDA kernel: bandwidth or FLOP/s against the GPU's bound (needs a GPU)"},
    {"gemm", bench_gemm, "the linear layers' GEMMs and attention only (a part of kernels; needs a GPU)"},
};
#define N_BENCHES (sizeof benches / sizeof benches[0])

static void usage(FILE *f) {
    fprintf(f, "usage: kiln bench [NAME [options]]\n\nBenchmarks (each ends with one JSON line):\n");
    for (size_t i = 0; i < N_BENCHES; i++) fprintf(f, "  %-8s %s\n", benches[i].name, benches[i].summary);
    fprintf(f, "\nWithout NAME every benchmark runs with its defaults. 'kiln bench NAME --help' lists its options.\n");
}

int kl_cmd_bench(int argc, char **argv) {
    if (argc == 0) {
        int rc = 0;
        for (size_t i = 0; i < N_BENCHES; i++) {
            if (benches[i].run == bench_gemm) continue; /* part of kernels */
            int r = benches[i].run(0, NULL);
            if (r > rc) rc = r;
        }
        return rc;
    }
    if (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_BENCHES; i++)
        if (strcmp(argv[0], benches[i].name) == 0) return benches[i].run(argc - 1, argv + 1);
    fprintf(stderr, "kiln bench: unknown benchmark '%s'\n\n", argv[0]);
    usage(stderr);
    return 2;
}
