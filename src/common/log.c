/*
 * log.c - the stderr log sink.  Thread-safe: one fprintf per line under
 * stdio's own stream lock (flockfile).
 */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int tm_log_level = TM_LOG_INFO;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

int tm_log_level_parse(const char *s)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void tm_log_write(int level, const char *component, const char *fmt, ...)
{
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    if (level < 0)
        level = 0;
    if (level > TM_LOG_DEBUG)
        level = TM_LOG_DEBUG;

    flockfile(stderr);
    fprintf(stderr, "%s.%03ldZ %-5s %-8s ", when, ts.tv_nsec / 1000000L, level_names[level],
            component);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    funlockfile(stderr);
}
