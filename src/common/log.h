/*
 * log.h - one leveled log stream on stderr.
 *
 * Every line: ISO-8601 UTC time, level, component, message.  tm_log() tests
 * the level before it evaluates its arguments.  librdkafka's and mongoc's own
 * log callbacks are routed here too (see kafka/kafka.c, store/store.c).
 */
#ifndef TM_LOG_H
#define TM_LOG_H

enum tm_log_level { TM_LOG_ERROR = 0, TM_LOG_WARN, TM_LOG_INFO, TM_LOG_DEBUG };

extern int tm_log_level;

/** @brief Parse "error|warn|info|debug"; returns -1 when unknown. */
int tm_log_level_parse(const char *s);

void tm_log_write(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define tm_log(level, component, ...)                                                              \
    do {                                                                                           \
        if ((level) <= tm_log_level)                                                               \
            tm_log_write((level), (component), __VA_ARGS__);                                       \
    } while (0)

#define tm_error_log(component, ...) tm_log(TM_LOG_ERROR, component, __VA_ARGS__)
#define tm_warn(component, ...) tm_log(TM_LOG_WARN, component, __VA_ARGS__)
#define tm_info(component, ...) tm_log(TM_LOG_INFO, component, __VA_ARGS__)
#define tm_debug(component, ...) tm_log(TM_LOG_DEBUG, component, __VA_ARGS__)

#endif
