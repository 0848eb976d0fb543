/* run_log.h — what a run reports: one console line per logging step and a JSONL metrics file in which
 * every line is a valid JSON object (strings escaped; NaN/Inf written as null and named in "nonfinite"). */
#ifndef KL_RUN_LOG_H
#define KL_RUN_LOG_H

#include <stdint.h>
#include <stdio.h>

#include "kl_base.h"

typedef struct {
    int64_t step, total_steps;
    double loss, grad_norm, lr;
    double tokens_per_s;
    double mfu;       /* fraction of peak; NaN when unknown (CPU) */
    double mem_bytes; /* device memory in use; NaN when unknown */
    double elapsed_s, eta_s;
    double tokens_seen;
    int bad_step; /* 1: the update was skipped (non-finite loss or gradient); written as "bad_step": true */
} kl_step_record;

typedef struct kl_runlog kl_runlog;

/* Opens (append = 1 keeps an existing file, for resumed runs) the metrics file at `path`; `console` may
 * be NULL for no console lines. */
kl_status kl_runlog_open(kl_runlog **out, const char *path, int append, FILE *console);
void kl_runlog_step(kl_runlog *l, const kl_step_record *r);
void kl_runlog_eval(kl_runlog *l, int64_t step, double loss);
/* Anything else worth a line: kind is a short identifier ("skipped_step", "checkpoint"). */
void kl_runlog_event(kl_runlog *l, const char *kind, const char *message);
void kl_runlog_close(kl_runlog *l);

/* "1h02m", "3m05s", "12s" */
const char *kl_format_duration(double seconds, char *buf, size_t n);
/* Writes s as a JSON string literal (quotes included) with every control character escaped. */
void kl_json_write_string(FILE *f, const char *s);

#endif
