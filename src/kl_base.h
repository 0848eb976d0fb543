/* kl_base.h — what every kiln file shares: the status type, the error message, checked allocation.
 * Library code never prints and never exits: it returns a kl_status and leaves a message that says
 * what was expected and where (kl_error / kl_last_error). Only the CLI prints and chooses exit codes. */
#ifndef KL_BASE_H
#define KL_BASE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KL_OK = 0,
    KL_ERR_INVALID,   /* bad argument, bad input data, bad file contents */
    KL_ERR_CONFIG,    /* configuration or command-line error (CLI exits with status 2) */
    KL_ERR_IO,        /* open/read/write/rename failed */
    KL_ERR_OOM,       /* host or device allocation failed, or the memory limit was hit */
    KL_ERR_UNSUPPORTED, /* feature not built in, or not supported for this model */
    KL_ERR_NUMERIC,   /* non-finite loss or gradient that the trainer could not recover from */
    KL_ERR_INTERNAL,  /* a library (CUDA, cuBLAS, HDF5, ...) reported an error */
} kl_status;

/* Records the message for the calling thread and returns `code`, so callers can write
 *   return kl_error(KL_ERR_INVALID, "%s: bad magic", path);                              */
kl_status kl_error(kl_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Prefixes the current message with context: "loading model: <old message>". Returns the status. */
kl_status kl_error_context(kl_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
const char *kl_last_error(void);
void kl_clear_error(void);
const char *kl_status_name(kl_status s);

/* Propagate a failing status unchanged. */
#define KL_TRY(expr)                                                                               \
    do {                                                                                           \
        kl_status kl_try_s_ = (expr);                                                              \
        if (kl_try_s_ != KL_OK) return kl_try_s_;                                                  \
    } while (0)

/* Host allocation that records an OOM message naming what was being allocated. NULL on failure. */
void *kl_malloc(size_t bytes, const char *what);
void *kl_calloc(size_t count, size_t size, const char *what);

/* "1.50 GiB", "12.0 MiB", ... into buf; returns buf. */
const char *kl_format_bytes(double bytes, char *buf, size_t buf_size);
/* v with the fewest digits (15 to 17) that read back as exactly v ("%.*g"); returns buf. */
const char *kl_format_double(double v, char *buf, size_t buf_size);
/* Parses "16GiB", "512MiB", "1.5GB", "1024" (bytes). Returns KL_ERR_INVALID on junk. */
kl_status kl_parse_bytes(const char *text, double *bytes_out);

/* Monotonic wall clock in seconds. */
double kl_now_seconds(void);

#ifdef __cplusplus
}
#endif
#endif
