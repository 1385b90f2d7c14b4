/*
 * error.h - the one error type of tokenmeter.
 *
 * Modelled on libbson's bson_error_t (fixed size, lives on the stack) plus
 * librdkafka's "retriable" flag.  Functions that can fail return 0 on success
 * and -1 on failure and take a final `struct tm_error *err` (may be NULL).
 * Foreign errors (rd_kafka_resp_err_t, bson_error_t, errno) are translated
 * once, at the boundary where they occur.
 */
#ifndef TM_ERROR_H
#define TM_ERROR_H

#include <stdbool.h>

enum tm_err_domain {
    TM_ERR_NONE = 0,
    TM_ERR_SYS,    /* code is an errno value */
    TM_ERR_CONFIG, /* bad setting or command-line argument */
    TM_ERR_PARSE,  /* malformed input (event, trace line, seed file) */
    TM_ERR_KAFKA,  /* code is an rd_kafka_resp_err_t */
    TM_ERR_STORE,  /* code is a bson_error_t code */
    TM_ERR_GPU,
    TM_ERR_HTTP,
};

struct tm_error {
    int domain;     /* enum tm_err_domain */
    int code;       /* domain specific */
    bool retriable; /* true when trying again later may succeed */
    char msg[256];  /* one line, no trailing newline */
};

/**
 * @brief Fill @p err (if not NULL) with a domain, a code and a printf-style
 *        message.  The message is truncated to fit, never overflows.
 */
void tm_error_set(struct tm_error *err, int domain, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** @brief Like tm_error_set() in TM_ERR_SYS, appending strerror(errno). */
void tm_error_errno(struct tm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** @brief Reset @p err to "no error" (domain TM_ERR_NONE, empty message). */
void tm_error_clear(struct tm_error *err);

#endif
