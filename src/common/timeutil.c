/*
 * timeutil.c - RFC 3339 parsing and formatting on integer calendar maths.
 * See timeutil.h; no function here reads TZ or calls mktime()/localtime().
 */
#include "common/timeutil.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

int64_t tm_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Read exactly n decimal digits at s[*i]; -1 if any is not a digit. */
static int digits(const char *s, size_t len, size_t *i, int n)
{
    int v = 0;
    for (int k = 0; k < n; k++) {
        if (*i >= len || s[*i] < '0' || s[*i] > '9')
            return -1;
        v = v * 10 + (s[*i] - '0');
        (*i)++;
    }
    return v;
}

int tm_parse_rfc3339(const char *s, size_t len, int64_t *out_ms, struct tm_error *err)
{
    size_t i = 0;
    int year, mon, day, hh, mm, ss, ms = 0;

    if ((year = digits(s, len, &i, 4)) < 0 || i >= len || s[i++] != '-' ||
        (mon = digits(s, len, &i, 2)) < 0 || i >= len || s[i++] != '-' ||
        (day = digits(s, len, &i, 2)) < 0)
        goto bad_date;
    if (i >= len || (s[i] != 'T' && s[i] != 't' && s[i] != ' '))
        goto bad_time;
    i++;
    if ((hh = digits(s, len, &i, 2)) < 0 || i >= len || s[i++] != ':' ||
        (mm = digits(s, len, &i, 2)) < 0 || i >= len || s[i++] != ':' ||
        (ss = digits(s, len, &i, 2)) < 0)
        goto bad_time;
    if (i < len && (s[i] == '.' || s[i] == ',')) {
        i++;
        int n = 0, scale = 100;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (n < 3) {
                ms += (s[i] - '0') * scale;
                scale /= 10;
            }
            n++;
            i++;
        }
        if (n == 0)
            goto bad_time;
    }
    if (mon < 1 || mon > 12 || day < 1 || (unsigned)day > days_in_month(year, (unsigned)mon))
        goto bad_date;
    if (hh > 23 || mm > 59 || ss > 60) /* 60: a leap second, folded into :59.999 below */
        goto bad_time;

    int64_t offset_min = 0;
    if (i < len) {
        char c = s[i++];
        if (c == 'Z' || c == 'z') {
            offset_min = 0;
        } else if (c == '+' || c == '-') {
            int oh, om = 0;
            if ((oh = digits(s, len, &i, 2)) < 0)
                goto bad_offset;
            if (i < len && s[i] == ':')
                i++;
            if (i < len && (om = digits(s, len, &i, 2)) < 0)
                goto bad_offset;
            if (oh > 23 || om > 59)
                goto bad_offset;
            offset_min = (int64_t)oh * 60 + om;
            if (c == '-')
                offset_min = -offset_min;
        } else {
            goto bad_offset;
        }
        if (i != len)
            goto bad_offset;
    }

    int64_t secs = tm_days_from_civil(year, (unsigned)mon, (unsigned)day) * 86400 +
                   (int64_t)hh * 3600 + (int64_t)mm * 60 + (ss == 60 ? 59 : ss);
    /* local time = UTC + offset, so UTC = local - offset */
    secs -= offset_min * 60;
    int64_t v = secs * 1000 + (ss == 60 ? 999 : ms);
    if (v < TM_TS_MIN_MS || v > TM_TS_MAX_MS) {
        tm_error_set(err, TM_ERR_PARSE, 0, "timestamp out of range (before 1970 or after 9999)");
        return -1;
    }
    *out_ms = v;
    return 0;

bad_date:
    tm_error_set(err, TM_ERR_PARSE, 0, "timestamp: expected date YYYY-MM-DD");
    return -1;
bad_time:
    tm_error_set(err, TM_ERR_PARSE, 0, "timestamp: expected time hh:mm:ss[.frac] after the date");
    return -1;
bad_offset:
    tm_error_set(err, TM_ERR_PARSE, 0, "timestamp: expected offset Z or +hh:mm / -hh:mm");
    return -1;
}

int tm_epoch_number_to_ms(double v, int64_t *out_ms, struct tm_error *err)
{
    if (!isfinite(v)) {
        tm_error_set(err, TM_ERR_PARSE, 0, "timestamp is not a finite number");
        return -1;
    }
    double ms = fabs(v) < TM_EPOCH_MS_THRESHOLD ? v * 1000.0 : v;
    if (ms < (double)TM_TS_MIN_MS || ms > (double)TM_TS_MAX_MS) {
        tm_error_set(err, TM_ERR_PARSE, 0, "timestamp %.17g out of range", v);
        return -1;
    }
    /* +1 us absorbs binary rounding: 1741507230.123 s must give ...230123 ms */
    *out_ms = (int64_t)floor(ms + 1e-3);
    return 0;
}

char *tm_format_rfc3339_ms(int64_t ms, char *buf, size_t size)
{
    int64_t secs = tm_floor_div(ms, 1000);
    int64_t frac = ms - secs * 1000;
    int64_t days = tm_floor_div(secs, 86400);
    int64_t rem = secs - days * 86400;
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, size, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", (long long)y, m, d,
             (int)(rem / 3600), (int)(rem % 3600 / 60), (int)(rem % 60), (int)frac);
    return buf;
}

int64_t tm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tm_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
