/* run_log.c — see run_log.h. Each JSONL record is built in memory by json_write.h (escaping, U+FFFD for
 * invalid UTF-8, NaN/Inf as null) and written with one fwrite and a flush, so a run killed at any moment
 * leaves a file whose complete lines all parse. */
#include "run_log.h"

#include "json_write.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct kl_runlog {
    FILE *f;
    FILE *console;
    int write_failed;
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
    kl_json j;
    kl_json_init(&j);
    kl_json_string(&j, s);
    fputs(kl_json_text(&j), f);
    kl_json_free(&j);
}

const char *kl_format_duration(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(fmod(s, 3600) / 60));
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%.0fs", s);
    return buf;
}

/* Writes one finished record; a failed write is reported once on the console, never silently lost. */
static void emit(kl_runlog *l, kl_json *j) {
    kl_json_field_nonfinite(j);
    kl_json_end_object(j);
    if (kl_json_write_line(j, l->f, "metrics file") != KL_OK && !l->write_failed) {
        l->write_failed = 1;
        if (l->console) fprintf(l->console, "warning: %s\n", kl_last_error());
    }
    kl_json_free(j);
}

void kl_runlog_step(kl_runlog *l, const kl_step_record *r) {
    kl_json j;
    kl_json_init(&j);
    kl_json_begin_object(&j);
    kl_json_field_string(&j, "type", "step");
    kl_json_field_int(&j, "step", r->step);
    kl_json_field_int(&j, "total_steps", r->total_steps);
    kl_json_field_number(&j, "loss", r->loss);
    kl_json_field_number(&j, "grad_norm", r->grad_norm);
    kl_json_field_number(&j, "lr", r->lr);
    kl_json_field_number(&j, "tokens_per_s", r->tokens_per_s);
    if (!isnan(r->mfu)) kl_json_field_number(&j, "mfu", r->mfu); /* unknown (CPU): left out, not null */
    if (!isnan(r->mem_bytes)) kl_json_field_number(&j, "mem_bytes", r->mem_bytes);
    kl_json_field_number(&j, "elapsed_s", r->elapsed_s);
    kl_json_field_number(&j, "eta_s", r->eta_s);
    kl_json_field_number(&j, "tokens_seen", r->tokens_seen);
    if (r->bad_step) kl_json_field_bool(&j, "bad_step", 1);
    emit(l, &j);
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
    kl_json j;
    kl_json_init(&j);
    kl_json_begin_object(&j);
    kl_json_field_string(&j, "type", "eval");
    kl_json_field_int(&j, "step", step);
    kl_json_field_number(&j, "loss", loss);
    kl_json_field_number(&j, "bits_per_token", loss / log(2.0));
    emit(l, &j);
    if (l->console) {
        fprintf(l->console, "eval @ step %lld | loss %.4f | %.3f bits/token | ppl %.2f\n", (long long)step, loss,
                loss / log(2.0), exp(loss));
        fflush(l->console);
    }
}

void kl_runlog_event(kl_runlog *l, const char *kind, const char *message) {
    kl_json j;
    kl_json_init(&j);
    kl_json_begin_object(&j);
    kl_json_field_string(&j, "type", "event");
    kl_json_field_string(&j, "kind", kind);
    kl_json_field_string(&j, "message", message);
    emit(l, &j);
    if (l->console) fprintf(l->console, "%s: %s\n", kind, message), fflush(l->console);
}
