/*
 * trace.h - streaming readers of LLM request traces (the producer's input).
 *
 * Three line-oriented formats are read, one record per call, from a FILE*,
 * without ever loading a whole file (lines of any length, via getline()):
 *
 *   azure     Azure LLM inference trace CSV: a header naming the columns
 *             `TIMESTAMP,ContextTokens,GeneratedTokens` (in any order, more
 *             columns allowed, looked up by name), then one request per line,
 *             e.g. `2023-11-16 18:17:03.9799600,4808,10`.  A timestamp
 *             without an offset is UTC.  ContextTokens = prompt tokens,
 *             GeneratedTokens = completion tokens.
 *   mooncake  Mooncake JSON lines: `{"timestamp": <ms since the trace start>,
 *             "input_length": N, "output_length": N, ...}`; relative times.
 *   events    JSON lines, each a DESIGN 2.1 token event, validated with
 *             tm_event_decode().
 *
 * CRLF and LF line endings, a UTF-8 byte order mark at the start and a
 * missing final newline are all accepted; blank lines are ignored.  A bad
 * line is reported (TM_TRACE_BAD_LINE, with its line number) and skipped:
 * the caller counts it and reads on.  Nothing here does network I/O or
 * touches global state; a reader is not thread-safe, use one per thread.
 */
#ifndef TM_TRACE_H
#define TM_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/error.h"
#include "msg/event.h"

enum tm_trace_format {
    TM_TRACE_AUTO = 0, /* not a format: "decide from the file name" */
    TM_TRACE_AZURE,
    TM_TRACE_MOONCAKE,
    TM_TRACE_EVENTS,
};

/** One request read from a trace. */
struct tm_trace_rec {
    int64_t ts_ms;     /* Unix ms UTC, or ms since the trace start when relative */
    bool relative;     /* true for Mooncake traces */
    int64_t prompt_tokens;     /* >= 0, <= TM_EVENT_MAX_TOKENS */
    int64_t completion_tokens; /* >= 0, <= TM_EVENT_MAX_TOKENS */
    long line;         /* 1-based line number in the input (the CSV header is line 1) */
    /* TM_TRACE_EVENTS only (NULL otherwise): the decoded event.  Borrowed,
     * valid until the next tm_trace_next() or tm_trace_destroy(). */
    const struct tm_event *event;
    /* The line as read, without its line ending (not NUL-terminated in
     * general: use raw_len).  Borrowed, same lifetime as @c event. */
    const char *raw;
    size_t raw_len;
};

/** What tm_trace_next() read. */
enum tm_trace_status {
    TM_TRACE_RECORD = 1,    /* *rec holds the next record */
    TM_TRACE_END = 0,       /* end of input */
    TM_TRACE_BAD_LINE = -1, /* one line was skipped; err says which and why; call again */
    TM_TRACE_FAILED = -2,   /* read error (TM_ERR_SYS); stop reading */
};

/** Opaque reader; fields live in trace.c. */
typedef struct tm_trace tm_trace_t;

/**
 * @brief Parse a format name: "azure", "mooncake" or "events".
 * @returns the format, or TM_TRACE_AUTO when @p s is none of them.
 */
enum tm_trace_format tm_trace_format_parse(const char *s);

/** @brief The name of @p fmt ("azure", ...; "auto" for TM_TRACE_AUTO). Static string. */
const char *tm_trace_format_name(enum tm_trace_format fmt);

/**
 * @brief Guess the format from a path: `-` (stdin) is events, `*.csv` azure,
 *        `*.jsonl` / `*.ndjson` mooncake (case-insensitive).
 * @returns the format, or TM_TRACE_AUTO when the name tells nothing.
 */
enum tm_trace_format tm_trace_format_from_path(const char *path);

/**
 * @brief Start reading @p fp in format @p fmt (not TM_TRACE_AUTO).
 *
 * For azure the header line is read and checked here, so a file of the wrong
 * format fails before anything is produced.
 *
 * @param fp    borrowed; read sequentially from its current position; the
 *              caller closes it after tm_trace_destroy().
 * @param name  how messages name the input (e.g. the path, or "stdin");
 *              copied.
 * @returns owned reader, free with tm_trace_destroy(); or NULL with
 *          TM_ERR_PARSE (missing or incomplete CSV header), TM_ERR_SYS (read
 *          error) or TM_ERR_CONFIG (@p fmt is TM_TRACE_AUTO).
 */
tm_trace_t *tm_trace_new(FILE *fp, enum tm_trace_format fmt, const char *name,
                         struct tm_error *err);

/**
 * @brief Read the next record.
 *
 * @param rec  filled on TM_TRACE_RECORD; on TM_TRACE_BAD_LINE only
 *             rec->line is set (the skipped line).
 * @param err  on TM_TRACE_BAD_LINE a TM_ERR_PARSE message of the form
 *             "<name>:<line>: <why>"; on TM_TRACE_FAILED a TM_ERR_SYS error.
 * @returns an enum tm_trace_status.
 */
enum tm_trace_status tm_trace_next(tm_trace_t *tr, struct tm_trace_rec *rec,
                                   struct tm_error *err);

/** @brief Number of the last line read (0 before the first). */
long tm_trace_line(const tm_trace_t *tr);

/** @brief Free @p tr and what its records borrowed (not its FILE). Accepts NULL. */
void tm_trace_destroy(tm_trace_t *tr);

/**
 * @brief Count the records a trace holds, cheaply, for progress displays:
 *        non-blank lines from the current position of @p fp to its end,
 *        less the header line for azure.  Bad lines are counted too.
 *
 * @param fp  borrowed; left at end of file (rewind it to read the records).
 * @returns 0 and *out, or -1 with a TM_ERR_SYS error.
 */
int tm_trace_count_records(FILE *fp, enum tm_trace_format fmt, long *out, struct tm_error *err);

#endif
