/* kl_base.c — the per-thread error message, checked host allocation, byte-size parsing and printing. */
#define _POSIX_C_SOURCE 200809L
#include "kl_base.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static _Thread_local char kl_msg[2048];

kl_status kl_error(kl_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kl_msg, sizeof kl_msg, fmt, ap);
    va_end(ap);
    return code;
}

kl_status kl_error_context(kl_status code, const char *fmt, ...) {
    char prefix[512], old[sizeof kl_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, kl_msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof kl_msg - 3) n = sizeof kl_msg - 3;
    memcpy(kl_msg, prefix, n);
    memcpy(kl_msg + n, ": ", 2);
    size_t room = sizeof kl_msg - n - 3, m = strlen(old);
    if (m > room) m = room;
    memcpy(kl_msg + n + 2, old, m);
    kl_msg[n + 2 + m] = 0;
    return code;
}

const char *kl_last_error(void) { return kl_msg[0] ? kl_msg : "(no error message)"; }
void kl_clear_error(void) { kl_msg[0] = 0; }

const char *kl_status_name(kl_status s) {
    switch (s) {
    case KL_OK: return "ok";
    case KL_ERR_INVALID: return "invalid input";
    case KL_ERR_CONFIG: return "configuration error";
    case KL_ERR_IO: return "I/O error";
    case KL_ERR_OOM: return "out of memory";
    case KL_ERR_UNSUPPORTED: return "unsupported";
    case KL_ERR_NUMERIC: return "numerical failure";
    case KL_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

void *kl_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        char b[32];
        kl_error(KL_ERR_OOM, "out of host memory allocating %s (%s)", what,
                 kl_format_bytes((double)bytes, b, sizeof b));
    }
    return p;
}

void *kl_calloc(size_t count, size_t size, const char *what) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) {
        char b[32];
        kl_error(KL_ERR_OOM, "out of host memory allocating %s (%s)", what,
                 kl_format_bytes((double)count * (double)size, b, sizeof b));
    }
    return p;
}

const char *kl_format_bytes(double bytes, char *buf, size_t buf_size) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    double v = bytes < 0 ? -bytes : bytes;
    while (v >= 1024.0 && u < 4) { v /= 1024.0; u++; }
    if (bytes < 0) v = -v;
    if (u == 0) snprintf(buf, buf_size, "%.0f B", v);
    else snprintf(buf, buf_size, "%.2f %s", v, units[u]);
    return buf;
}

const char *kl_format_double(double v, char *buf, size_t buf_size) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, buf_size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    return buf;
}

kl_status kl_parse_bytes(const char *text, double *bytes_out) {
    static const struct { const char *suffix; double mult; } units[] = {
        {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
        {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
        {"K", 1024.0}, {"M", 1048576.0}, {"G", 1073741824.0}, {"T", 1099511627776.0},
        {"B", 1.0}, {"", 1.0},
    };
    char *end = NULL;
    if (!text || !*text) return kl_error(KL_ERR_INVALID, "empty size");
    double v = strtod(text, &end);
    if (end == text || !(v >= 0)) return kl_error(KL_ERR_INVALID, "'%s' is not a size (e.g. 16GiB)", text);
    while (*end && isspace((unsigned char)*end)) end++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].suffix) == 0) {
            *bytes_out = v * units[i].mult;
            return KL_OK;
        }
    }
    return kl_error(KL_ERR_INVALID, "'%s' has an unknown unit '%s' (use B, KiB, MiB, GiB, TiB, KB, MB, GB)", text,
                    end);
}

double kl_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
