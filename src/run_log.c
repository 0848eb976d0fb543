/* run_log.c — see run_log.h. Each JSONL line is written with one fprintf-sequence and flushed, so a run
 * killed at any moment leaves a file whose complete lines all parse. */
#include "run_log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct kl_runlog {
    FILE *f;
    FILE *console;
};

kl_status kl_runlog_open(kl_runlog **out, const char *path, int append, FILE *console) {
    *out = NULL;
    kl_runlog *l = kl_calloc(1, sizeof *l, "run log");
    if (!l) return KL_ERR_OOM;
    l->f = fopen(path, append ? "a" : "w");
    if (!l->f) {
        free(l);
        return kl_error(KL_ERR_IO, "cannot open the metrics file %s (%s)", path, strerror(errno));
    }
    l->console = console;
    *out = l;
    return KL_OK;
}

void kl_runlog_close(kl_runlog *l) {
    if (!l) return;
    fclose(l->f);
    free(l);
}

void kl_json_write_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

const char *kl_format_duration(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(fmod(s, 3600) / 60));
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%.0fs", s);
    return buf;
}

/* A JSON number field; non-finite values become null and are remembered in `bad`. */
typedef struct {
    const char *names[16];
    int n;
} nonfinite_list;

static void num(FILE *f, const char *key, double v, nonfinite_list *bad) {
    fprintf(f, ",\"%s\":", key);
    if (isfinite(v)) {
        fprintf(f, "%.9g", v);
    } else {
        fputs("null", f);
        if (bad->n < 16) bad->names[bad->n++] = key;
    }
}

static void end_record(FILE *f, const nonfinite_list *bad) {
    if (bad->n) {
        fputs(",\"nonfinite\":[", f);
        for (int i = 0; i < bad->n; i++) fprintf(f, "%s\"%s\"", i ? "," : "", bad->names[i]);
        fputc(']', f);
    }
    fputs("}\n", f);
    fflush(f);
}

void kl_runlog_step(kl_runlog *l, const kl_step_record *r) {
    nonfinite_list bad = {{0}, 0};
    fprintf(l->f, "{\"type\":\"step\",\"step\":%lld,\"total_steps\":%lld", (long long)r->step,
            (long long)r->total_steps);
    num(l->f, "loss", r->loss, &bad);
    num(l->f, "grad_norm", r->grad_norm, &bad);
    num(l->f, "lr", r->lr, &bad);
    num(l->f, "tokens_per_s", r->tokens_per_s, &bad);
    if (!isnan(r->mfu)) num(l->f, "mfu", r->mfu, &bad);
    if (!isnan(r->mem_bytes)) num(l->f, "mem_bytes", r->mem_bytes, &bad);
    num(l->f, "elapsed_s", r->elapsed_s, &bad);
    num(l->f, "tokens_seen", r->tokens_seen, &bad);
    end_record(l->f, &bad);
    if (!l->console) return;

    char eta[32], line[256];
    int n = snprintf(line, sizeof line, "step %*lld/%lld | loss %.4f | gnorm %.3g | lr %.2e | ", 
                     (int)snprintf(NULL, 0, "%lld", (long long)r->total_steps), (long long)r->step,
                     (long long)r->total_steps, r->loss, r->grad_norm, r->lr);
    if (r->tokens_per_s >= 1e4) n += snprintf(line + n, sizeof line - (size_t)n, "%.1fk tok/s", r->tokens_per_s / 1e3);
    else n += snprintf(line + n, sizeof line - (size_t)n, "%.0f tok/s", r->tokens_per_s);
    if (!isnan(r->mfu)) n += snprintf(line + n, sizeof line - (size_t)n, " | MFU %.1f%%", 100 * r->mfu);
    if (!isnan(r->mem_bytes)) {
        char mb[32];
        n += snprintf(line + n, sizeof line - (size_t)n, " | mem %s", kl_format_bytes(r->mem_bytes, mb, sizeof mb));
    }
    snprintf(line + n, sizeof line - (size_t)n, " | ETA %s", kl_format_duration(r->eta_s, eta, sizeof eta));
    fprintf(l->console, "%s\n", line);
    fflush(l->console);
}

void kl_runlog_eval(kl_runlog *l, int64_t step, double loss) {
    nonfinite_list bad = {{0}, 0};
    fprintf(l->f, "{\"type\":\"eval\",\"step\":%lld", (long long)step);
    num(l->f, "loss", loss, &bad);
    num(l->f, "bits_per_token", loss / log(2.0), &bad);
    end_record(l->f, &bad);
    if (l->console) {
        fprintf(l->console, "eval @ step %lld | loss %.4f | %.3f bits/token | ppl %.2f\n", (long long)step, loss,
                loss / log(2.0), exp(loss));
        fflush(l->console);
    }
}

void kl_runlog_event(kl_runlog *l, const char *kind, const char *message) {
    fputs("{\"type\":\"event\",\"kind\":", l->f);
    kl_json_write_string(l->f, kind);
    fputs(",\"message\":", l->f);
    kl_json_write_string(l->f, message);
    fputs("}\n", l->f);
    fflush(l->f);
    if (l->console) fprintf(l->console, "%s: %s\n", kind, message), fflush(l->console);
}
