/*
 * error.c - helpers to fill struct tm_error.  Nothing here allocates.
 */
#include "common/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void tm_error_set(struct tm_error *err, int domain, int code, const char *fmt, ...)
{
    if (!err)
        return;
    err->domain = domain;
    err->code = code;
    err->retriable = false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

void tm_error_errno(struct tm_error *err, const char *fmt, ...)
{
    int saved = errno;
    if (!err)
        return;
    char head[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof(head), fmt, ap);
    va_end(ap);
    err->domain = TM_ERR_SYS;
    err->code = saved;
    err->retriable = (saved == EAGAIN || saved == EINTR);
    snprintf(err->msg, sizeof(err->msg), "%s: %s", head, strerror(saved));
}

void tm_error_clear(struct tm_error *err)
{
    if (!err)
        return;
    memset(err, 0, sizeof(*err));
}
