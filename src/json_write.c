/* json_write.c — see json_write.h. The writer tracks, per open level, whether a comma is due and whether a
 * key is waiting for its value, so misuse is reported by kl_json_check instead of producing bad JSON. */
#include "json_write.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t kl_utf8_sequence_length(const unsigned char *p, size_t avail) {
    if (avail == 0) return 0;
    const unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c == 0xe0) n = 3, lo = 0xa0;           /* no overlong 3-byte forms */
    else if (c == 0xed) n = 3, hi = 0x9f;           /* no UTF-16 surrogates */
    else if (c >= 0xe1 && c <= 0xef) n = 3;
    else if (c == 0xf0) n = 4, lo = 0x90;           /* no overlong 4-byte forms */
    else if (c >= 0xf1 && c <= 0xf3) n = 4;
    else if (c == 0xf4) n = 4, hi = 0x8f;           /* nothing above U+10FFFF */
    else return 0;                                  /* 0x80-0xc1 (continuation, overlong), 0xf5-0xff */
    if (avail < n || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf) return 0;
    return n;
}

void kl_json_init(kl_json *j) { memset(j, 0, sizeof *j); }

void kl_json_free(kl_json *j) {
    free(j->buf);
    free(j->nonfinite);
    memset(j, 0, sizeof *j);
}

void kl_json_reset(kl_json *j) {
    char *b = j->buf, *nf = j->nonfinite;
    size_t cap = j->cap, nf_cap = j->nf_cap;
    memset(j, 0, sizeof *j);
    j->buf = b, j->cap = cap, j->nonfinite = nf, j->nf_cap = nf_cap;
    if (b) b[0] = 0;
}

static void misuse(kl_json *j, const char *what) {
    if (!j->error) j->error = 2, j->problem = what;
}

/* Appends n bytes to one of the two buffers, keeping it NUL-terminated. */
static void put_to(kl_json *j, char **b, size_t *len, size_t *cap, const char *s, size_t n) {
    if (j->error == 1) return;
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n + 1) c *= 2;
        char *nb = realloc(*b, c);
        if (!nb) {
            j->error = 1;
            return;
        }
        *b = nb, *cap = c;
    }
    memcpy(*b + *len, s, n);
    *len += n;
    (*b)[*len] = 0;
}

static void put(kl_json *j, const char *s, size_t n) { put_to(j, &j->buf, &j->len, &j->cap, s, n); }

/* s as a quoted JSON string. Bytes that are not well-formed UTF-8 become U+FFFD, one per byte. */
static void escape_to(kl_json *j, char **b, size_t *len, size_t *cap, const char *s) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), i = 0, run = 0; /* run: plain bytes not yet copied, ending at i */
    put_to(j, b, len, cap, "\"", 1);
    while (i < n) {
        const unsigned c = p[i];
        const char *esc = NULL;
        char u[7];
        size_t k = 1;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c == '\b') esc = "\\b";
        else if (c == '\f') esc = "\\f";
        else if (c < 0x20 || c == 0x7f) {
            memcpy(u, "\\u00", 4), u[4] = hex[c >> 4], u[5] = hex[c & 15], u[6] = 0;
            esc = u;
        } else if (c >= 0x80) {
            k = kl_utf8_sequence_length(p + i, n - i);
            if (k == 0) esc = "\\ufffd", k = 1;
        }
        if (esc) {
            put_to(j, b, len, cap, s + i - run, run);
            put_to(j, b, len, cap, esc, strlen(esc));
            run = 0;
        } else {
            run += k;
        }
        i += k;
    }
    put_to(j, b, len, cap, s + n - run, run);
    put_to(j, b, len, cap, "\"", 1);
}

/* Called before every value: the comma, or the check that a key precedes a value inside an object. */
static void before_value(kl_json *j) {
    if (j->depth == 0) {
        if (j->len > 0) misuse(j, "a second value at the top level");
        return;
    }
    if (j->container[j->depth - 1] == '{') {
        if (!j->after_key) misuse(j, "a value inside an object without a key");
        j->after_key = 0;
        return;
    }
    if (j->count[j->depth - 1]) put(j, ",", 1);
    j->count[j->depth - 1] = 1;
}

static void begin(kl_json *j, char c) {
    before_value(j);
    if (j->depth == KL_JSON_MAX_DEPTH) {
        misuse(j, "nesting deeper than KL_JSON_MAX_DEPTH");
        return;
    }
    j->container[j->depth] = c;
    j->count[j->depth] = 0;
    j->depth++;
    put(j, &c, 1);
}

static void end(kl_json *j, char open, char close) {
    if (j->depth == 0 || j->container[j->depth - 1] != open) {
        misuse(j, open == '{' ? "end_object without a matching begin_object" : "end_array without a matching begin_array");
        return;
    }
    if (j->after_key) misuse(j, "a key without a value");
    j->after_key = 0;
    j->depth--;
    put(j, &close, 1);
}

void kl_json_begin_object(kl_json *j) { begin(j, '{'); }
void kl_json_end_object(kl_json *j) { end(j, '{', '}'); }
void kl_json_begin_array(kl_json *j) { begin(j, '['); }
void kl_json_end_array(kl_json *j) { end(j, '[', ']'); }

void kl_json_key(kl_json *j, const char *key) {
    if (j->depth == 0 || j->container[j->depth - 1] != '{' || j->after_key) {
        misuse(j, "a key outside an object or after another key");
        return;
    }
    if (j->count[j->depth - 1]) put(j, ",", 1);
    j->count[j->depth - 1] = 1;
    escape_to(j, &j->buf, &j->len, &j->cap, key ? key : "");
    put(j, ":", 1);
    j->after_key = 1;
}

void kl_json_string(kl_json *j, const char *s) {
    before_value(j);
    if (s) escape_to(j, &j->buf, &j->len, &j->cap, s);
    else put(j, "null", 4);
}

int kl_json_number(kl_json *j, double v) {
    before_value(j);
    if (!isfinite(v)) {
        put(j, "null", 4);
        return 0;
    }
    char t[40];
    int n = snprintf(t, sizeof t, "%.15g", v);
    if (strtod(t, NULL) != v) n = snprintf(t, sizeof t, "%.17g", v);
    /* a locale with a decimal comma would make this invalid JSON; JSON's separator is always '.' */
    for (int i = 0; i < n; i++)
        if (t[i] == ',') t[i] = '.';
    put(j, t, (size_t)n);
    return 1;
}

void kl_json_int(kl_json *j, int64_t v) {
    before_value(j);
    char t[32];
    int n = snprintf(t, sizeof t, "%" PRId64, v);
    put(j, t, (size_t)n);
}

void kl_json_bool(kl_json *j, int v) {
    before_value(j);
    if (v) put(j, "true", 4);
    else put(j, "false", 5);
}

void kl_json_null(kl_json *j) {
    before_value(j);
    put(j, "null", 4);
}

void kl_json_field_string(kl_json *j, const char *key, const char *s) {
    kl_json_key(j, key);
    kl_json_string(j, s);
}

void kl_json_field_number(kl_json *j, const char *key, double v) {
    kl_json_key(j, key);
    if (kl_json_number(j, v)) return;
    if (j->nf_len) put_to(j, &j->nonfinite, &j->nf_len, &j->nf_cap, ",", 1);
    escape_to(j, &j->nonfinite, &j->nf_len, &j->nf_cap, key ? key : "");
}

void kl_json_field_int(kl_json *j, const char *key, int64_t v) {
    kl_json_key(j, key);
    kl_json_int(j, v);
}

void kl_json_field_bool(kl_json *j, const char *key, int v) {
    kl_json_key(j, key);
    kl_json_bool(j, v);
}

void kl_json_field_nonfinite(kl_json *j) {
    if (j->nf_len == 0) return;
    kl_json_key(j, "nonfinite");
    before_value(j);
    put(j, "[", 1);
    put(j, j->nonfinite, j->nf_len);
    put(j, "]", 1);
    j->nf_len = 0;
    j->nonfinite[0] = 0;
}

kl_status kl_json_check(const kl_json *j) {
    if (j->error == 1) return kl_error(KL_ERR_OOM, "JSON writer: out of memory after %zu bytes", j->len);
    if (j->error == 2) return kl_error(KL_ERR_INTERNAL, "JSON writer misused: %s", j->problem);
    if (j->len == 0) return kl_error(KL_ERR_INTERNAL, "JSON writer misused: nothing was written");
    if (j->depth != 0 || j->after_key)
        return kl_error(KL_ERR_INTERNAL, "JSON writer misused: %d level(s) still open", j->depth);
    return KL_OK;
}

const char *kl_json_text(const kl_json *j) { return j->buf ? j->buf : ""; }

kl_status kl_json_write_line(kl_json *j, FILE *f, const char *path) {
    KL_TRY(kl_json_check(j));
    put(j, "\n", 1);
    if (j->error) return kl_json_check(j);
    const size_t n = fwrite(j->buf, 1, j->len, f);
    j->buf[--j->len] = 0; /* drop the newline again: the text stays one value */
    if (n != j->len + 1 || fflush(f) != 0)
        return kl_error(KL_ERR_IO, "%s: cannot write a JSON line (%s)", path ? path : "(stream)", strerror(errno));
    return KL_OK;
}
