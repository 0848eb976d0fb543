/* cmd_eval.c — `kiln eval`: mean loss, perplexity and bits per token (and per byte, when each token's
 * bytes are known) of a model over the eval token files, printed as a table and one JSON line; optionally
 * the first batch's logits and inputs as .npy files for parity checks against other implementations.
 * It reads the model, data and tokenizer; it trains nothing and writes only the files it is asked for. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "config.h"
#include "json_write.h"
#include "loader.h"
#include "model_io.h"
#include "train_run.h"

static int usage(FILE *f, int code) {
    fprintf(f,
            "usage: kiln eval CONFIG.yaml [options] [section.key=value ...]\n"
            "       kiln eval --model DIR --data FILES [options] [section.key=value ...]\n\n"
            "Mean loss (nats per target token), perplexity, bits per token and bits per byte of a model over the\n"
            "eval token files (data.eval), in file order, one pass over every sample unless --batches is given.\n"
            "The model is --model DIR, else the run's trained model (<run dir>/model) when it exists, else\n"
            "model.hf_dir. Batches are train.batch_size sequences of data.seq_len tokens. The blocks' linear\n"
            "layers run in precision.matmul (fp8 / nvfp4 quantized as in training; bf16 is FP32 here). Options:\n"
            "  --model DIR         a Hugging Face folder (config.json + safetensors)\n"
            "  --data FILES        eval token files, comma-separated globs (overrides data.eval)\n"
            "  --batches N         only the first N batches (default: all)\n"
            "  --tokenizer FILE    a byte-level BPE tokenizer.json, for bits per byte (default: the model\n"
            "                      folder's tokenizer.json, else model.hf_dir's; byte-level vocabularies\n"
            "                      (256, 257) need none)\n"
            "  --dump-logits FILE  write the first batch's logits as a .npy file, float32 (B, T, V)\n"
            "  --dump-inputs FILE  write the first batch's input ids as a .npy file, int32 (B, T)\n"
            "  --quiet             no table and no progress: only the JSON line\n");
    return code;
}

/* ---- bytes per token ---------------------------------------------------------------------------- */

/* GPT-2's byte-level alphabet: bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF stand for themselves, the other
 * 68 bytes for U+0100 + k in byte order. So every code point of a vocabulary string in [0x21, 0x143] is
 * exactly one byte of text; anything else means the string is not byte-level. */
static int byte_level_char(unsigned cp) {
    return (cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0x143);
}

/* Code points of a UTF-8 string, or -1 when some is outside the byte-level alphabet (or not UTF-8). */
static int byte_level_length(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    int n = 0;
    while (left > 0) {
        size_t len = kl_utf8_sequence_length(p, left);
        if (len == 0) return -1;
        unsigned cp = len == 1 ? p[0] : len == 2 ? ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu) : 0x10FFFFu;
        if (!byte_level_char(cp)) return -1;
        p += len;
        left -= len;
        n++;
    }
    return n;
}

/* True if tokenizer.json's decoder is ByteLevel (alone or inside a Sequence). */
static int has_byte_level_decoder(const cJSON *root) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(d, "type");
    if (cJSON_IsString(ty) && strcmp(ty->valuestring, "ByteLevel") == 0) return 1;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "decoders");
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "type");
        if (cJSON_IsString(t) && strcmp(t->valuestring, "ByteLevel") == 0) return 1;
    }
    return 0;
}

/* bytes[id] = how many bytes of text token `id` decodes to, for id < V: from a byte-level BPE
 * tokenizer.json (vocabulary strings in GPT-2's alphabet; special added tokens 0 bytes, other added
 * tokens their UTF-8 length). Ids the tokenizer does not know get -1 (an error if the data holds one). */
static kl_status token_bytes_from_tokenizer(const char *path, int V, int *bytes) {
    for (int i = 0; i < V; i++) bytes[i] = -1;
    FILE *f = fopen(path, "rb");
    if (!f) return kl_error(KL_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    char *text = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n >= 0 && n <= (512L << 20) && fseek(f, 0, SEEK_SET) == 0) text = kl_malloc((size_t)n + 1, "tokenizer.json");
    size_t got = text ? fread(text, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!text) return n < 0 || n > (512L << 20) ? kl_error(KL_ERR_INVALID, "%s: not a plausible tokenizer.json", path)
                                                : KL_ERR_OOM;
    text[got] = 0;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return kl_error(KL_ERR_INVALID, "%s: not valid JSON", path);
    kl_status st = KL_OK;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0 || !cJSON_IsObject(vocab) ||
        !has_byte_level_decoder(root)) {
        st = kl_error(KL_ERR_UNSUPPORTED,
                      "%s: bits per byte needs a byte-level BPE tokenizer (model.type \"BPE\", a ByteLevel decoder)",
                      path);
        goto done;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble != floor(e->valuedouble)) {
            st = kl_error(KL_ERR_INVALID, "%s: model.vocab[\"%s\"] is not a token id", path, e->string);
            goto done;
        }
        if (e->valuedouble >= V) continue; /* the model cannot produce it */
        const int len = byte_level_length(e->string);
        if (len < 0) {
            st = kl_error(KL_ERR_UNSUPPORTED, "%s: vocabulary entry \"%s\" is not in the byte-level alphabet", path,
                          e->string);
            goto done;
        }
        bytes[(int)e->valuedouble] = len;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(content)) {
            st = kl_error(KL_ERR_INVALID, "%s: added_tokens entries need an id and a content", path);
            goto done;
        }
        if (id->valuedouble < 0 || id->valuedouble >= V) continue;
        /* special tokens (end of text, chat markers) are no text; others are inserted verbatim */
        bytes[(int)id->valuedouble] =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special")) ? 0 : (int)strlen(content->valuestring);
    }
done:
    cJSON_Delete(root);
    return st;
}

/* ---- .npy output -------------------------------------------------------------------------------- */

/* NumPy format 1.0: magic, header length, a dict padded with spaces to a multiple of 64, the data. */
static kl_status write_npy(const char *path, const char *descr, const int64_t *shape, int ndim, const void *data,
                           size_t elem_bytes) {
    char dict[256], dims[128] = "";
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        size_t len = strlen(dims);
        snprintf(dims + len, sizeof dims - len, "%lld, ", (long long)shape[i]);
        count *= (size_t)shape[i];
    }
    if (ndim > 1) dims[strlen(dims) - 2] = 0; /* (B, T, V) rather than (B, T, V, ) */
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, dims);
    const int total = (10 + n + 1 + 63) / 64 * 64; /* magic(6) version(2) length(2), dict, '\n' */
    const int hlen = total - 10;
    while (n < hlen - 1) dict[n++] = ' ';
    dict[n++] = '\n';
    FILE *f = fopen(path, "wb");
    if (!f) return kl_error(KL_ERR_IO, "%s: cannot create (%s)", path, strerror(errno));
    const unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xFF),
                                    (unsigned char)(hlen >> 8)};
    int ok = fwrite(head, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)n, f) == (size_t)n &&
             fwrite(data, elem_bytes, count, f) == count;
    if (fclose(f) != 0 || !ok) return kl_error(KL_ERR_IO, "%s: write failed", path);
    return KL_OK;
}

static int little_endian(void) {
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* The first batch's logits (B, T, V), one row at a time from the model's last forward. */
static kl_status dump_logits(kl_model *m, int B, int T, int V, const char *path) {
    float *all = kl_malloc((size_t)B * T * V * sizeof *all, "logits to dump");
    if (!all) return KL_ERR_OOM;
    kl_status st = KL_OK;
    for (int b = 0; b < B && st == KL_OK; b++)
        for (int t = 0; t < T && st == KL_OK; t++) st = kl_model_logits_at(m, b, t, all + ((size_t)b * T + t) * V);
    const int64_t shape[3] = {B, T, V};
    if (st == KL_OK) st = write_npy(path, little_endian() ? "<f4" : ">f4", shape, 3, all, sizeof *all);
    free(all);
    return st;
}

/* ---- the command -------------------------------------------------------------------------------- */

typedef struct {
    const char *config_path, *model_dir, *data, *tokenizer, *logits_path, *inputs_path;
    long batches; /* 0 = one whole pass */
    int quiet;
} eval_args;

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static kl_status run(const eval_args *a, const kl_config *c) {
    /* which model */
    char dir[KL_CFG_PATH_MAX + 16];
    const char *why = "--model";
    if (a->model_dir) {
        snprintf(dir, sizeof dir, "%s", a->model_dir);
    } else {
        char run_dir[KL_CFG_PATH_MAX];
        KL_TRY(kl_config_run_dir(c, run_dir, sizeof run_dir));
        snprintf(dir, sizeof dir, "%s/model", run_dir);
        why = "the run's trained model";
        if (!is_dir(dir)) {
            if (!c->model.hf_dir[0])
                return kl_error(KL_ERR_CONFIG, "no model to evaluate: %s does not exist (train first), model.hf_dir "
                                               "is not set and no --model DIR was given", dir);
            snprintf(dir, sizeof dir, "%s", c->model.hf_dir);
            why = "model.hf_dir; the run has no trained model yet";
        }
    }
    if (c->data.source != KL_CFG_DATA_FILES)
        return kl_error(KL_ERR_CONFIG, "kiln eval reads token files: data.source must be files");
    if (!c->data.eval[0]) return kl_error(KL_ERR_CONFIG, "data.eval is empty: set it or pass --data FILES");

    kl_model *m = NULL;
    kl_loader *l = NULL;
    int32_t *in = NULL, *tg = NULL;
    int *bytes = NULL;
    kl_status st = kl_model_load(&m, dir);
    if (st != KL_OK) return kl_error_context(st, "loading the model from %s (%s)", dir, why);
    const kl_model_shape *s = kl_model_get_shape(m);
    const int B = (int)c->train.batch_size, T = (int)c->data.seq_len, V = s->V;
    if (T > s->max_T) {
        st = kl_error(KL_ERR_CONFIG, "data.seq_len (%d) exceeds the model's max_position_embeddings (%d)", T, s->max_T);
        goto done;
    }
    const kl_linear_cfg prec = kl_train_linear_cfg(c); /* as training applies it */
    const char *matmul = c->precision.matmul == KL_CFG_MATMUL_FP8     ? "fp8"
                         : c->precision.matmul == KL_CFG_MATMUL_NVFP4 ? "nvfp4"
                                                                      : "bf16";
    if ((st = kl_model_set_precision(m, &prec)) != KL_OK) goto done;

    kl_loader_opts o = {0};
    o.source = KL_DATA_FILES;
    o.files = c->data.eval;
    o.T = T;
    o.B = B;
    o.world = 1;
    o.vocab_size = V;
    o.eval = 1;
    if ((st = kl_loader_open(&l, &o)) != KL_OK) {
        st = kl_error_context(st, "eval data");
        goto done;
    }

    /* bytes per token: byte-level vocabularies directly, else from a byte-level BPE tokenizer.json */
    char tok_path[KL_CFG_PATH_MAX + 32] = "";
    const int byte_vocab = V == 256 || V == 257;
    if (a->tokenizer) {
        snprintf(tok_path, sizeof tok_path, "%s", a->tokenizer);
    } else if (!byte_vocab) { /* optional: without one there is no bits per byte */
        snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", dir);
        /* a run's saved model has no tokenizer: the one of the folder it was fine-tuned from applies */
        if (!file_exists(tok_path) && c->model.hf_dir[0])
            snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", c->model.hf_dir);
        if (!file_exists(tok_path)) tok_path[0] = 0;
    }
    if (byte_vocab || tok_path[0]) {
        if (!(bytes = kl_malloc((size_t)V * sizeof *bytes, "bytes per token"))) {
            st = KL_ERR_OOM;
            goto done;
        }
        if (tok_path[0]) {
            if ((st = token_bytes_from_tokenizer(tok_path, V, bytes)) != KL_OK) goto done;
        } else {
            for (int i = 0; i < V; i++) bytes[i] = i < 256; /* 257: the end-of-document id is no text */
        }
    }

    const long per_pass = (long)kl_loader_batches_per_epoch(l);
    const long nb = a->batches > 0 && a->batches < per_pass ? a->batches : per_pass;
    in = kl_malloc((size_t)B * T * sizeof *in, "eval inputs");
    tg = kl_malloc((size_t)B * T * sizeof *tg, "eval targets");
    if (!in || !tg) {
        st = KL_ERR_OOM;
        goto done;
    }
    if (!a->quiet) {
        printf("kiln eval: model %s (%s): %s, %d layers, hidden %d, heads %d/%d, vocab %d, %.1fM parameters\n", dir,
               why, kl_arch_name(s->arch), s->L, s->C, s->NH, s->NKV, V, (double)kl_model_num_params(m) / 1e6);
        printf("kiln eval: %ld of %ld batches of %d x %d tokens from %d file%s (%s)\n", nb, per_pass, B, T,
               kl_loader_num_files(l), kl_loader_num_files(l) == 1 ? "" : "s", c->data.eval);
        fflush(stdout);
    }
    double loss_sum = 0, t0 = kl_now_seconds();
    int64_t valid = 0, n_bytes = 0;
    for (long i = 0; i < nb; i++) {
        double ls;
        int64_t nv;
        if ((st = kl_loader_next_batch(l, in, tg)) != KL_OK) goto done;
        if ((st = kl_model_forward(m, in, B, T)) != KL_OK) goto done;
        if ((st = kl_model_loss(m, tg, 0.0f, 0, 0.0f, &ls, &nv)) != KL_OK) goto done;
        loss_sum += ls;
        valid += nv;
        for (size_t k = 0; bytes && k < (size_t)B * T; k++) {
            if (tg[k] == KL_IGNORE_TARGET) continue;
            if (bytes[tg[k]] < 0) {
                st = kl_error(KL_ERR_INVALID, "%s has no token with id %d, which the eval data holds", tok_path,
                              tg[k]);
                goto done;
            }
            n_bytes += bytes[tg[k]];
        }
        if (i == 0 && a->logits_path && (st = dump_logits(m, B, T, V, a->logits_path)) != KL_OK) goto done;
        if (i == 0 && a->inputs_path) {
            const int64_t shape[2] = {B, T};
            if ((st = write_npy(a->inputs_path, little_endian() ? "<i4" : ">i4", shape, 2, in, sizeof *in)) != KL_OK)
                goto done;
        }
        if (!a->quiet) {
            fprintf(stderr, "\rkiln eval: batch %ld/%ld, mean loss so far %.4f", i + 1, nb,
                    valid ? loss_sum / (double)valid : NAN);
            if (i + 1 == nb) fputc('\n', stderr);
            fflush(stderr);
        }
    }
    const double secs = kl_now_seconds() - t0;
    if (valid == 0) {
        st = kl_error(KL_ERR_INVALID, "the eval batches hold no valid target (all masked)");
        goto done;
    }
    const double loss = loss_sum / (double)valid, ppl = exp(loss), bpt = loss / M_LN2;
    const double bpb = bytes && n_bytes > 0 ? loss_sum / M_LN2 / (double)n_bytes : NAN;
    if (!a->quiet) {
        printf("\n  %-16s %s\n", "model", dir);
        printf("  %-16s %s\n", "eval data", c->data.eval);
        printf("  %-16s %ld of %ld (batch %d x seq %d)\n", "batches", nb, per_pass, B, T);
        printf("  %-16s %s (precision.matmul; bf16 runs as FP32 on the CPU)\n", "linear layers", matmul);
        printf("  %-16s %lld\n", "target tokens", (long long)valid);
        if (bytes) printf("  %-16s %lld (%.3f per token)\n", "target bytes", (long long)n_bytes, (double)n_bytes / valid);
        printf("  %-16s %.4f nats\n", "mean loss", loss);
        printf("  %-16s %.4f\n", "perplexity", ppl);
        printf("  %-16s %.4f\n", "bits per token", bpt);
        if (bytes) printf("  %-16s %.4f\n", "bits per byte", bpb);
        else printf("  %-16s n/a (no tokenizer.json found: pass --tokenizer)\n", "bits per byte");
        printf("  %-16s %.1f s (%.0f tokens/s)\n\n", "time", secs, (double)nb * B * T / secs);
    }
    kl_json j;
    kl_json_init(&j);
    kl_json_begin_object(&j);
    kl_json_field_string(&j, "model", dir);
    kl_json_field_string(&j, "data", c->data.eval);
    kl_json_field_int(&j, "batches", nb);
    kl_json_field_int(&j, "batch_size", B);
    kl_json_field_int(&j, "seq_len", T);
    kl_json_field_string(&j, "matmul", matmul);
    kl_json_field_int(&j, "tokens", valid);
    if (bytes) kl_json_field_int(&j, "bytes", n_bytes);
    else {
        kl_json_key(&j, "bytes");
        kl_json_null(&j);
    }
    kl_json_field_number(&j, "loss", loss);
    kl_json_field_number(&j, "perplexity", ppl);
    kl_json_field_number(&j, "bits_per_token", bpt);
    kl_json_field_number(&j, "bits_per_byte", bpb); /* null without byte counts */
    kl_json_field_number(&j, "seconds", secs);
    kl_json_end_object(&j);
    st = kl_json_write_line(&j, stdout, "stdout");
    kl_json_free(&j);
done:
    free(in);
    free(tg);
    free(bytes);
    kl_loader_close(l);
    kl_model_free(m);
    return st;
}

int kl_cmd_eval(int argc, char **argv) {
    if (kl_wants_help(argc, argv)) return usage(stdout, 0);
    eval_args a = {0};
    char **overrides = calloc((size_t)argc + 1, sizeof *overrides);
    if (!overrides) return 1;
    int n_over = 0, rc = 0;
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **dst = strcmp(opt, "--model") == 0         ? &a.model_dir
                           : strcmp(opt, "--data") == 0        ? &a.data
                           : strcmp(opt, "--tokenizer") == 0   ? &a.tokenizer
                           : strcmp(opt, "--dump-logits") == 0 ? &a.logits_path
                           : strcmp(opt, "--dump-inputs") == 0 ? &a.inputs_path
                                                               : NULL;
        const int is_batches = strcmp(opt, "--batches") == 0;
        if ((dst || is_batches) && !v) {
            fprintf(stderr, "kiln eval: %s needs a value\n", opt);
            rc = 2;
            break;
        }
        if (dst) {
            *dst = argv[++i];
        } else if (is_batches) {
            char *end;
            errno = 0;
            a.batches = strtol(argv[++i], &end, 10);
            if (end == v || *end || errno || a.batches < 1) {
                fprintf(stderr, "kiln eval: --batches needs a positive integer, not '%s'\n", v);
                rc = 2;
                break;
            }
        } else if (strcmp(opt, "--quiet") == 0) {
            a.quiet = 1;
        } else if (opt[0] == '-') {
            fprintf(stderr, "kiln eval: unknown option '%s'\n", opt);
            rc = usage(stderr, 2);
            break;
        } else if (!a.config_path && !strchr(opt, '=')) {
            a.config_path = opt;
        } else {
            overrides[n_over++] = argv[i];
        }
    }
    if (rc != 0) {
        free(overrides);
        return rc;
    }
    if (!a.config_path && !(a.model_dir && a.data)) {
        free(overrides);
        fprintf(stderr, "kiln eval: give a CONFIG.yaml, or --model DIR and --data FILES\n");
        return usage(stderr, 2);
    }

    static kl_config cfg; /* large: not on the stack */
    kl_status st = KL_OK;
    if (a.config_path) {
        st = kl_config_parse_args(&cfg, a.config_path, n_over, overrides);
    } else { /* no config file: the defaults and the command line's overrides */
        kl_config_defaults(&cfg);
        for (int i = 0; i < n_over && st == KL_OK; i++) st = kl_config_set(&cfg, overrides[i]);
    }
    free(overrides);
    if (st == KL_OK && a.data) {
        char *assign = malloc(strlen(a.data) + 16);
        if (!assign) return 1;
        snprintf(assign, strlen(a.data) + 16, "data.eval=%s", a.data);
        st = kl_config_set(&cfg, assign);
        free(assign);
    }
    if (st == KL_OK) st = run(&a, &cfg);
    if (st != KL_OK) rc = kl_config_cli_error("eval", st);
    return rc;
}
