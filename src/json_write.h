/* json_write.h — a tiny JSON writer into a growing buffer: objects, arrays, strings escaped so the output is
 * always valid JSON (control characters as \uXXXX, invalid UTF-8 replaced by U+FFFD), numbers written so
 * they read back exactly, NaN/Inf written as null (and, for fields, named in a "nonfinite" list).
 * It only formats: what a record contains is the caller's business (run log, benchmark reports). */
#ifndef KL_JSON_WRITE_H
#define KL_JSON_WRITE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_JSON_MAX_DEPTH 32

typedef struct {
    char *buf; /* NUL-terminated text so far */
    size_t len, cap;
    char *nonfinite; /* keys of non-finite number fields, already quoted and comma-separated */
    size_t nf_len, nf_cap;
    int depth;
    char container[KL_JSON_MAX_DEPTH]; /* '{' or '[' per open level */
    unsigned char count[KL_JSON_MAX_DEPTH]; /* values so far at that level (saturating: only "any" matters) */
    int after_key;  /* a key was written and its value is due */
    int error;           /* 1: out of memory, 2: misuse */
    const char *problem; /* what the misuse was: "value without a key", "nesting deeper than 32", ... */
} kl_json;

void kl_json_init(kl_json *j);
void kl_json_free(kl_json *j);
void kl_json_reset(kl_json *j); /* empty again, keeping the buffers */

void kl_json_begin_object(kl_json *j);
void kl_json_end_object(kl_json *j);
void kl_json_begin_array(kl_json *j);
void kl_json_end_array(kl_json *j);
void kl_json_key(kl_json *j, const char *key);

void kl_json_string(kl_json *j, const char *s); /* NULL writes null */
/* Shortest of %.15g / %.17g that reads back as v; NaN and +-Inf become null. Returns 1 when v was finite. */
int kl_json_number(kl_json *j, double v);
void kl_json_int(kl_json *j, int64_t v);
void kl_json_bool(kl_json *j, int v);
void kl_json_null(kl_json *j);

/* key + value in one call. kl_json_field_number remembers the key of a non-finite value, and
 * kl_json_field_nonfinite writes those keys as "nonfinite":[...] (nothing if there were none). */
void kl_json_field_string(kl_json *j, const char *key, const char *s);
void kl_json_field_number(kl_json *j, const char *key, double v);
void kl_json_field_int(kl_json *j, const char *key, int64_t v);
void kl_json_field_bool(kl_json *j, const char *key, int v);
void kl_json_field_nonfinite(kl_json *j);

/* KL_OK when the text is one complete value; else an error saying what went wrong (OOM, misuse). */
kl_status kl_json_check(const kl_json *j);
const char *kl_json_text(const kl_json *j);
/* Checks, then writes the text and a newline with one fwrite and flushes (one JSONL record). */
kl_status kl_json_write_line(kl_json *j, FILE *f, const char *path);

/* Length (1-4) of the well-formed UTF-8 sequence at p (at most `avail` bytes readable), or 0 when the
 * bytes there are not one (stray continuation, overlong form, surrogate, above U+10FFFF, truncated). */
size_t kl_utf8_sequence_length(const unsigned char *p, size_t avail);

#ifdef __cplusplus
}
#endif
#endif
