/*
 * trace.c - line-at-a-time readers of Azure CSV, Mooncake JSONL and token
 * event JSONL traces (see trace.h).
 *
 * What it is not: it does not pace, assign GPUs or talk to Kafka (that is
 * replay.c and cmd_produce.c).  It only turns lines into validated records
 * and explains, with a line number, every line it cannot use.
 */
#include "trace/trace.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/mem.h"
#include "common/timeutil.h"

/* The Azure trace columns, looked up by name (case-insensitive). */
enum { COL_TS, COL_PROMPT, COL_COMPLETION, COL__COUNT };
static const char *const azure_columns[COL__COUNT] = {"TIMESTAMP", "ContextTokens",
                                                      "GeneratedTokens"};

struct tm_trace {
    FILE *fp;
    enum tm_trace_format fmt;
    char *name;
    char *buf; /* getline() buffer */
    size_t cap;
    long line;

    /* azure */
    long col[COL__COUNT]; /* field index of each needed column */
    long ncols_needed;    /* 1 + the largest of col[] */
    char *work;           /* copy of the line that split_csv() cuts up */
    size_t work_cap;
    char **fields;        /* split_csv() output, pointers into work */
    size_t fields_cap;

    /* events: the last decoded event, handed out as rec->event */
    struct tm_event ev;
};

static const char *const format_names[] = {
    [TM_TRACE_AUTO] = "auto",
    [TM_TRACE_AZURE] = "azure",
    [TM_TRACE_MOONCAKE] = "mooncake",
    [TM_TRACE_EVENTS] = "events",
};

enum tm_trace_format tm_trace_format_parse(const char *s)
{
    for (int f = TM_TRACE_AZURE; f <= TM_TRACE_EVENTS; f++)
        if (strcmp(s, format_names[f]) == 0)
            return (enum tm_trace_format)f;
    return TM_TRACE_AUTO;
}

const char *tm_trace_format_name(enum tm_trace_format fmt)
{
    if ((int)fmt < TM_TRACE_AUTO || fmt > TM_TRACE_EVENTS)
        return "unknown";
    return format_names[fmt];
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

enum tm_trace_format tm_trace_format_from_path(const char *path)
{
    if (strcmp(path, "-") == 0)
        return TM_TRACE_EVENTS;
    if (has_suffix(path, ".csv"))
        return TM_TRACE_AZURE;
    if (has_suffix(path, ".jsonl") || has_suffix(path, ".ndjson"))
        return TM_TRACE_MOONCAKE;
    return TM_TRACE_AUTO;
}

/* ------------------------------------------------------------------------ */
/* Lines                                                                    */
/* ------------------------------------------------------------------------ */

/* Copy at most 40 bytes of @p s into @p out for an error message, with
 * control and non-ASCII bytes shown as '?' so that no terminal escape from
 * a hostile file reaches stderr. */
static const char *snip(const char *s, size_t n, char out[48])
{
    size_t k = 0;
    for (; k < n && k < 40; k++)
        out[k] = (s[k] >= 0x20 && s[k] < 0x7f) ? s[k] : '?';
    if (k < n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
    return out;
}

/* Fill @p err with "<name>:<line>: <message>". */
__attribute__((format(printf, 3, 4))) static void bad_line(const tm_trace_t *tr,
                                                           struct tm_error *err,
                                                           const char *fmt, ...)
{
    char why[224];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    tm_error_set(err, TM_ERR_PARSE, 0, "%s:%ld: %s", tr->name, tr->line, why);
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i]))
            return false;
    return true;
}

/*
 * Read the next non-blank line into tr->buf, without its LF or CRLF (and
 * without a leading UTF-8 BOM on line 1), NUL-terminated at *len.
 * Returns 1, 0 at end of input, -1 on a read error.
 */
static int read_line(tm_trace_t *tr, size_t *len, struct tm_error *err)
{
    for (;;) {
        errno = 0;
        ssize_t n = getline(&tr->buf, &tr->cap, tr->fp);
        if (n < 0) {
            if (ferror(tr->fp)) {
                tm_error_errno(err, "%s: read error after line %ld", tr->name, tr->line);
                return -1;
            }
            return 0;
        }
        tr->line++;
        char *s = tr->buf;
        if (n > 0 && s[n - 1] == '\n')
            n--;
        if (n > 0 && s[n - 1] == '\r')
            n--;
        if (tr->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
            memmove(s, s + 3, (size_t)n - 3);
            n -= 3;
        }
        s[n] = '\0';
        if (is_blank(s, (size_t)n))
            continue;
        *len = (size_t)n;
        return 1;
    }
}

/* ------------------------------------------------------------------------ */
/* Azure CSV                                                                */
/* ------------------------------------------------------------------------ */

static void push_field(tm_trace_t *tr, size_t i, char *f)
{
    if (i >= tr->fields_cap) {
        tr->fields_cap = tr->fields_cap ? tr->fields_cap * 2 : 8;
        tr->fields = tm_xrealloc(tr->fields, tr->fields_cap * sizeof(*tr->fields));
    }
    tr->fields[i] = f;
}

/*
 * Split a copy of the line @p line (@p len bytes, NUL-terminated) into
 * tr->fields: RFC 4180 quoting ("a,b" and "" inside quotes), no line breaks
 * inside quotes; blanks around unquoted fields are trimmed.  The line itself
 * is left intact (it is handed out as rec->raw, and quoted in messages).
 * Returns the number of fields, or -1 when a quoted field is malformed.
 */
static long split_csv(tm_trace_t *tr, const char *line, size_t len)
{
    if (len + 1 > tr->work_cap) {
        tr->work_cap = len + 1;
        tr->work = tm_xrealloc(tr->work, tr->work_cap);
    }
    memcpy(tr->work, line, len + 1);
    char *s = tr->work, *end = s + len;
    size_t n = 0;
    for (;;) {
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        char *field = s, *w = s;
        if (s < end && *s == '"') {
            field = w = ++s;
            for (;;) {
                if (s >= end)
                    return -1; /* unterminated quote */
                if (*s == '"') {
                    if (s + 1 < end && s[1] == '"') {
                        *w++ = '"';
                        s += 2;
                        continue;
                    }
                    s++;
                    break;
                }
                *w++ = *s++;
            }
            while (s < end && (*s == ' ' || *s == '\t'))
                s++;
            if (s < end && *s != ',')
                return -1; /* text after the closing quote */
        } else {
            while (s < end && *s != ',')
                s++;
            w = s;
            while (w > field && (w[-1] == ' ' || w[-1] == '\t'))
                w--;
        }
        bool more = s < end; /* s is at a ',' */
        *w = '\0';
        push_field(tr, n++, field);
        if (!more)
            return (long)n;
        s++;
    }
}

static int read_azure_header(tm_trace_t *tr, struct tm_error *err)
{
    size_t len;
    int r = read_line(tr, &len, err);
    if (r < 0)
        return -1;
    if (r == 0) {
        tm_error_set(err, TM_ERR_PARSE, 0, "%s: empty file, expected a CSV header naming %s, %s "
                     "and %s", tr->name, azure_columns[0], azure_columns[1], azure_columns[2]);
        return -1;
    }
    long n = split_csv(tr, tr->buf, len);
    if (n < 0) {
        bad_line(tr, err, "malformed CSV header (unbalanced quotes)");
        return -1;
    }
    for (int c = 0; c < COL__COUNT; c++) {
        tr->col[c] = -1;
        for (long i = 0; i < n && tr->col[c] < 0; i++)
            if (strcasecmp(tr->fields[i], azure_columns[c]) == 0)
                tr->col[c] = i;
        if (tr->col[c] < 0) {
            char s[48];
            bad_line(tr, err, "CSV header has no column \"%s\" (expected %s,%s,%s; got \"%s\")",
                     azure_columns[c], azure_columns[0], azure_columns[1], azure_columns[2],
                     snip(tr->buf, len, s));
            return -1;
        }
        if (tr->col[c] + 1 > tr->ncols_needed)
            tr->ncols_needed = tr->col[c] + 1;
    }
    return 0;
}

/* A token count: decimal digits only, at most TM_EVENT_MAX_TOKENS. */
static int parse_count(const char *s, int64_t *out)
{
    int64_t v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > TM_EVENT_MAX_TOKENS)
            return -1;
    }
    *out = v;
    return 0;
}

static enum tm_trace_status next_azure(tm_trace_t *tr, const char *s, size_t len,
                                       struct tm_trace_rec *rec, struct tm_error *err)
{
    char snipped[48];
    long n = split_csv(tr, s, len);
    if (n < 0) {
        bad_line(tr, err, "malformed CSV (unbalanced quotes): \"%s\"", snip(s, len, snipped));
        return TM_TRACE_BAD_LINE;
    }
    if (n < tr->ncols_needed) {
        bad_line(tr, err, "expected at least %ld fields, got %ld: \"%s\"", tr->ncols_needed, n,
                 snip(s, len, snipped));
        return TM_TRACE_BAD_LINE;
    }
    const char *ts = tr->fields[tr->col[COL_TS]];
    struct tm_error e;
    if (tm_parse_rfc3339(ts, strlen(ts), &rec->ts_ms, &e) < 0) {
        bad_line(tr, err, "%s \"%s\": %s", azure_columns[COL_TS], snip(ts, strlen(ts), snipped),
                 e.msg);
        return TM_TRACE_BAD_LINE;
    }
    static const int counts[] = {COL_PROMPT, COL_COMPLETION};
    int64_t *dst[] = {&rec->prompt_tokens, &rec->completion_tokens};
    for (int k = 0; k < 2; k++) {
        const char *f = tr->fields[tr->col[counts[k]]];
        if (parse_count(f, dst[k]) < 0) {
            bad_line(tr, err, "%s \"%s\": expected an integer from 0 to %lld",
                     azure_columns[counts[k]], snip(f, strlen(f), snipped),
                     (long long)TM_EVENT_MAX_TOKENS);
            return TM_TRACE_BAD_LINE;
        }
    }
    rec->relative = false;
    return TM_TRACE_RECORD;
}

/* ------------------------------------------------------------------------ */
/* Mooncake JSONL                                                           */
/* ------------------------------------------------------------------------ */

/* A non-negative integer field (an integral real such as 70.0 is accepted). */
static int json_count(const tm_trace_t *tr, json_t *o, const char *name, int64_t max,
                      int64_t *out, struct tm_error *err)
{
    json_t *v = json_object_get(o, name);
    double d;
    if (!v || json_is_null(v)) {
        bad_line(tr, err, "missing field \"%s\"%s", name,
                 json_object_get(o, "prompt_tokens") ? " (this looks like a token event: use "
                                                       "--format events)"
                                                     : "");
        return -1;
    }
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v))
        d = json_real_value(v);
    else {
        bad_line(tr, err, "field \"%s\" must be a non-negative integer", name);
        return -1;
    }
    if (d < 0 || d > (double)max) {
        bad_line(tr, err, "field \"%s\" = %.0f is outside 0..%lld", name, d, (long long)max);
        return -1;
    }
    *out = (int64_t)d;
    return 0;
}

static enum tm_trace_status next_mooncake(tm_trace_t *tr, const char *s, size_t len,
                                          struct tm_trace_rec *rec, struct tm_error *err)
{
    json_error_t jerr;
    json_t *o = json_loadb(s, len, 0, &jerr);
    if (!o) {
        bad_line(tr, err, "invalid JSON at column %d: %s", jerr.column, jerr.text);
        return TM_TRACE_BAD_LINE;
    }
    enum tm_trace_status st = TM_TRACE_BAD_LINE;
    if (!json_is_object(o)) {
        bad_line(tr, err, "expected a JSON object");
        goto out;
    }
    json_t *t = json_object_get(o, "timestamp");
    if (!t || !json_is_number(t)) {
        bad_line(tr, err, "field \"timestamp\" (ms since the trace start) is %s",
                 t ? "not a number" : "missing");
        goto out;
    }
    double ms = json_number_value(t);
    if (!isfinite(ms) || ms < 0 || ms > (double)TM_TS_MAX_MS) {
        bad_line(tr, err, "field \"timestamp\" = %g is not a time offset in ms", ms);
        goto out;
    }
    if (json_count(tr, o, "input_length", TM_EVENT_MAX_TOKENS, &rec->prompt_tokens, err) < 0 ||
        json_count(tr, o, "output_length", TM_EVENT_MAX_TOKENS, &rec->completion_tokens, err) <
            0)
        goto out;
    rec->ts_ms = (int64_t)floor(ms);
    rec->relative = true;
    st = TM_TRACE_RECORD;
out:
    json_decref(o);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Token events JSONL                                                       */
/* ------------------------------------------------------------------------ */

static enum tm_trace_status next_event(tm_trace_t *tr, const char *s, size_t len,
                                       struct tm_trace_rec *rec, struct tm_error *err)
{
    struct tm_error e;
    enum tm_reject r = tm_event_decode(s, len, &tr->ev, &e);
    if (r != TM_REJECT_NONE) {
        bad_line(tr, err, "%s: %s", tm_reject_name(r), e.msg);
        return TM_TRACE_BAD_LINE;
    }
    rec->ts_ms = tr->ev.ts_ms;
    rec->relative = false;
    rec->prompt_tokens = tr->ev.prompt_tokens;
    rec->completion_tokens = tr->ev.completion_tokens;
    rec->event = &tr->ev;
    return TM_TRACE_RECORD;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                               */
/* ------------------------------------------------------------------------ */

tm_trace_t *tm_trace_new(FILE *fp, enum tm_trace_format fmt, const char *name,
                         struct tm_error *err)
{
    if (fmt <= TM_TRACE_AUTO || fmt > TM_TRACE_EVENTS) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "%s: no trace format given", name);
        return NULL;
    }
    tm_trace_t *tr = tm_xcalloc(1, sizeof(*tr));
    tr->fp = fp;
    tr->fmt = fmt;
    tr->name = tm_xstrdup(name);
    if (fmt == TM_TRACE_AZURE && read_azure_header(tr, err) < 0) {
        tm_trace_destroy(tr);
        return NULL;
    }
    return tr;
}

enum tm_trace_status tm_trace_next(tm_trace_t *tr, struct tm_trace_rec *rec,
                                   struct tm_error *err)
{
    memset(rec, 0, sizeof(*rec));
    tm_event_clear(&tr->ev);
    size_t len;
    int r = read_line(tr, &len, err);
    if (r <= 0)
        return r < 0 ? TM_TRACE_FAILED : TM_TRACE_END;

    enum tm_trace_status st;
    if (memchr(tr->buf, '\0', len)) {
        bad_line(tr, err, "line contains a NUL byte");
        st = TM_TRACE_BAD_LINE;
    } else if (tr->fmt == TM_TRACE_AZURE) {
        st = next_azure(tr, tr->buf, len, rec, err);
    } else if (tr->fmt == TM_TRACE_MOONCAKE) {
        st = next_mooncake(tr, tr->buf, len, rec, err);
    } else {
        st = next_event(tr, tr->buf, len, rec, err);
    }
    if (st != TM_TRACE_RECORD)
        memset(rec, 0, sizeof(*rec)); /* no half-filled record */
    else {
        rec->raw = tr->buf;
        rec->raw_len = len;
    }
    rec->line = tr->line;
    return st;
}

long tm_trace_line(const tm_trace_t *tr)
{
    return tr->line;
}

void tm_trace_destroy(tm_trace_t *tr)
{
    if (!tr)
        return;
    tm_event_clear(&tr->ev);
    free(tr->fields);
    free(tr->work);
    free(tr->buf);
    free(tr->name);
    free(tr);
}

int tm_trace_count_records(FILE *fp, enum tm_trace_format fmt, long *out, struct tm_error *err)
{
    char *buf = NULL;
    size_t cap = 0;
    long n = 0;
    ssize_t len;
    while ((len = getline(&buf, &cap, fp)) >= 0)
        if (!is_blank(buf, (size_t)len))
            n++;
    free(buf);
    if (ferror(fp)) {
        tm_error_errno(err, "read error while counting lines");
        return -1;
    }
    if (fmt == TM_TRACE_AZURE && n > 0)
        n--; /* the header */
    *out = n;
    return 0;
}
