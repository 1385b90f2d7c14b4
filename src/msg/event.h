/*
 * event.h - the token event of DESIGN 2.1: decode, validate, encode.
 *
 * This is the only place that knows the JSON shape of a Kafka `tokens`
 * message.  Decoding is pure (no I/O, no globals) and reads exactly the bytes
 * it is given: Kafka payloads are not NUL-terminated (CASE-12).
 */
#ifndef TM_EVENT_H
#define TM_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* Documented input limits (CASE-14): anything larger is a dead letter with
 * reason `too_large` / `field_too_long`, refused before any BSON encoding. */
#define TM_EVENT_MAX_BYTES 65536            /* whole JSON payload */
#define TM_EVENT_MAX_STR 256                /* host, model, event_id, gpu_uuid, in bytes */
#define TM_EVENT_MAX_TOKENS INT64_C(100000000) /* per request and per field: 1e8 */
#define TM_EVENT_MAX_GPU_INDEX 65535

/** Why an event was rejected: the value of the dead letter's `reason` header. */
enum tm_reject {
    TM_REJECT_NONE = 0,
    TM_REJECT_EMPTY,          /* zero-length value */
    TM_REJECT_TOMBSTONE,      /* null value */
    TM_REJECT_TOO_LARGE,      /* payload over TM_EVENT_MAX_BYTES */
    TM_REJECT_INVALID_JSON,   /* not JSON, truncated, or invalid UTF-8 */
    TM_REJECT_NOT_OBJECT,     /* JSON, but not an object */
    TM_REJECT_MISSING_FIELD,  /* a required field is absent (or null) */
    TM_REJECT_BAD_TYPE,       /* a field has the wrong JSON type */
    TM_REJECT_OUT_OF_RANGE,   /* negative or absurd count, index, latency */
    TM_REJECT_BAD_TS,         /* ts is not a valid time */
    TM_REJECT_FIELD_TOO_LONG, /* a string field over TM_EVENT_MAX_STR */
    TM_REJECT_LATE,           /* its window was already closed and written (DESIGN 3.2) */
    TM_REJECT_FOREIGN_PARTITION, /* its window is owned by another partition */
    TM_REJECT_BAD_KEY,        /* message key is not "<host>/<gpu_index>" of the event */
    TM_REJECT__COUNT
};

/** @brief Stable lower-case name of a reject reason ("invalid_json", "late", …). */
const char *tm_reject_name(enum tm_reject r);

/** A decoded, validated token event.  Strings are owned by the event. */
struct tm_event {
    int64_t ts_ms;             /* event time, Unix ms UTC */
    char *host;                /* "unknown" when absent (token.usage.v1) */
    int gpu_index;             /* >= 0 */
    char *model;
    int64_t prompt_tokens;     /* >= 0 */
    int64_t completion_tokens; /* >= 0 */
    double latency_ms;         /* valid only when has_latency */
    bool has_latency;
    char *event_id;            /* NULL when absent */
    char *gpu_uuid;            /* NULL when absent */
};

/**
 * @brief Decode and validate one message value.
 *
 * @param buf  the message value, @p len bytes, borrowed, need not be
 *             NUL-terminated; NULL means a tombstone.
 * @param ev   filled on success; release with tm_event_clear().
 * @param err  on failure, a one-line human explanation (TM_ERR_PARSE).
 * @returns TM_REJECT_NONE on success, otherwise the reason (and *ev is left
 *          empty, nothing to free).
 */
enum tm_reject tm_event_decode(const void *buf, size_t len, struct tm_event *ev,
                               struct tm_error *err);

/** @brief Free the strings of @p ev and zero it.  Accepts a zeroed event. */
void tm_event_clear(struct tm_event *ev);

/**
 * @brief Encode @p ev as one JSON object (DESIGN 2.1), `ts` in RFC 3339 UTC
 *        with milliseconds.
 * @returns owned NUL-terminated string, free with free().
 */
char *tm_event_encode(const struct tm_event *ev);

#endif
