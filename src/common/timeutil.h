/*
 * timeutil.h - event-time arithmetic without the C library's time zones.
 *
 * All conversions are pure integer arithmetic on the proleptic Gregorian
 * calendar (Howard Hinnant's days_from_civil algorithm), so the result never
 * depends on TZ or on mktime()'s DST guesses (CASE-17).
 */
#ifndef TM_TIMEUTIL_H
#define TM_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/** Numbers below this are Unix seconds, at or above it Unix milliseconds
 *  (1e11 s is the year 5138; 1e11 ms is 1973-03-03).  DESIGN 2.1, CASE-18. */
#define TM_EPOCH_MS_THRESHOLD 1e11

/** Smallest and largest event time accepted: 1970-01-01 and 9999-12-31. */
#define TM_TS_MIN_MS INT64_C(0)
#define TM_TS_MAX_MS INT64_C(253402300799999)

/** @brief Days since 1970-01-01 of a proleptic Gregorian date (m 1..12). */
int64_t tm_days_from_civil(int64_t y, unsigned m, unsigned d);

/**
 * @brief Parse an RFC 3339 / ISO 8601 timestamp into Unix milliseconds (UTC).
 *
 * Accepts `YYYY-MM-DD`, then `T`, `t` or one space, `hh:mm:ss`, an optional
 * fraction of any length (truncated to ms), and an optional offset `Z`, `z`,
 * `+hh:mm`, `-hh:mm`, `+hhmm` or `+hh`.  A timestamp without an offset is
 * read as UTC (as the Azure traces and Python's utcnow().isoformat() write
 * it).  @p s need not be NUL-terminated: exactly @p len bytes are read.
 * @returns 0 and *out_ms, or -1 with a TM_ERR_PARSE error naming the problem.
 */
int tm_parse_rfc3339(const char *s, size_t len, int64_t *out_ms, struct tm_error *err);

/**
 * @brief Convert a numeric event time to Unix ms: below TM_EPOCH_MS_THRESHOLD
 *        it is seconds (fractions kept to the ms), otherwise milliseconds.
 * @returns 0, or -1 (TM_ERR_PARSE) for NaN, infinities and values outside
 *          [TM_TS_MIN_MS, TM_TS_MAX_MS].
 */
int tm_epoch_number_to_ms(double v, int64_t *out_ms, struct tm_error *err);

/**
 * @brief Format Unix ms as `YYYY-MM-DDThh:mm:ss.mmmZ` into @p buf
 *        (at least 25 bytes).  Returns @p buf.
 */
char *tm_format_rfc3339_ms(int64_t ms, char *buf, size_t size);

/** @brief Current wall-clock time in Unix ms. */
int64_t tm_now_ms(void);

/** @brief Monotonic clock in ms (for timeouts, never for event time). */
int64_t tm_mono_ms(void);

/** @brief Floor division that rounds toward -infinity (for window starts). */
static inline int64_t tm_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

#endif
