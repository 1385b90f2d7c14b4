/*
 * http.h - the processor's small HTTP server (libmicrohttpd).
 *
 * It knows nothing of the pipeline: each path is served by a callback that
 * returns a status code and an owned body.  /health, /gpu/info and /metrics
 * are wired by the processor (cmd_process.c).
 */
#ifndef TM_HTTP_H
#define TM_HTTP_H

#include <stddef.h>

#include "common/error.h"

/**
 * A route handler.  Set *body to a malloc'ed NUL-terminated string (taken by
 * the server) and *content_type to a static string; return the HTTP status.
 * Called from the server's thread: it must be thread-safe.
 */
typedef int tm_http_handler_fn(void *ctx, char **body, const char **content_type);

struct tm_http_route {
    const char *path;
    tm_http_handler_fn *fn;
};

struct tm_http;

/**
 * @brief Start serving @p routes (array of @p n, borrowed for the server's
 *        life) on @p listen ("addr:port"; port 0 picks a free port).
 * @returns owned, stop with tm_http_stop(); NULL on error (TM_ERR_HTTP, e.g.
 *          address in use).
 */
struct tm_http *tm_http_start(const char *listen, const struct tm_http_route *routes, size_t n,
                              void *ctx, struct tm_error *err);

/** @brief The port actually bound. */
int tm_http_port(const struct tm_http *h);

void tm_http_stop(struct tm_http *h);

#endif
