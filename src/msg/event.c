/*
 * event.c - decode/validate/encode DESIGN 2.1 token events with jansson.
 *
 * What it is not: it does not know about windows, Kafka or MongoDB.  Every
 * rejection carries a reason code (the dead letter's header) and one line of
 * explanation naming the field.
 */
#include "msg/event.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "common/mem.h"
#include "common/timeutil.h"

static const char *const reject_names[TM_REJECT__COUNT] = {
    [TM_REJECT_NONE] = "none",
    [TM_REJECT_EMPTY] = "empty",
    [TM_REJECT_TOMBSTONE] = "tombstone",
    [TM_REJECT_TOO_LARGE] = "too_large",
    [TM_REJECT_INVALID_JSON] = "invalid_json",
    [TM_REJECT_NOT_OBJECT] = "not_object",
    [TM_REJECT_MISSING_FIELD] = "missing_field",
    [TM_REJECT_BAD_TYPE] = "bad_type",
    [TM_REJECT_OUT_OF_RANGE] = "out_of_range",
    [TM_REJECT_BAD_TS] = "bad_ts",
    [TM_REJECT_FIELD_TOO_LONG] = "field_too_long",
    [TM_REJECT_LATE] = "late",
    [TM_REJECT_FOREIGN_PARTITION] = "foreign_partition",
    [TM_REJECT_BAD_KEY] = "bad_key",
};

const char *tm_reject_name(enum tm_reject r)
{
    if ((int)r < 0 || r >= TM_REJECT__COUNT)
        return "unknown";
    return reject_names[r];
}

void tm_event_clear(struct tm_event *ev)
{
    free(ev->host);
    free(ev->model);
    free(ev->event_id);
    free(ev->gpu_uuid);
    memset(ev, 0, sizeof(*ev));
}

/* Read an integer field that may also arrive as an integral real (70.0). */
static enum tm_reject get_count(json_t *o, const char *name, bool required, int64_t max,
                                int64_t *out, struct tm_error *err)
{
    json_t *v = json_object_get(o, name);
    if (!v || json_is_null(v)) {
        if (!required)
            return TM_REJECT_NONE;
        tm_error_set(err, TM_ERR_PARSE, 0, "missing required field \"%s\"", name);
        return TM_REJECT_MISSING_FIELD;
    }
    double d;
    if (json_is_integer(v)) {
        d = (double)json_integer_value(v);
        *out = json_integer_value(v);
    } else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v)) {
        d = json_real_value(v);
        *out = fabs(d) < 9e15 ? (int64_t)d : (d < 0 ? -1 : INT64_MAX); /* range-checked below */
    } else {
        tm_error_set(err, TM_ERR_PARSE, 0, "field \"%s\" must be a non-negative integer", name);
        return TM_REJECT_BAD_TYPE;
    }
    if (d < 0 || *out < 0 || *out > max) {
        tm_error_set(err, TM_ERR_PARSE, 0, "field \"%s\" = %.15g is outside 0..%lld", name, d,
                     (long long)max);
        return TM_REJECT_OUT_OF_RANGE;
    }
    return TM_REJECT_NONE;
}

static enum tm_reject get_string(json_t *o, const char *name, bool required, char **out,
                                 struct tm_error *err)
{
    json_t *v = json_object_get(o, name);
    if (!v || json_is_null(v)) {
        if (!required)
            return TM_REJECT_NONE;
        tm_error_set(err, TM_ERR_PARSE, 0, "missing required field \"%s\"", name);
        return TM_REJECT_MISSING_FIELD;
    }
    if (!json_is_string(v)) {
        tm_error_set(err, TM_ERR_PARSE, 0, "field \"%s\" must be a string", name);
        return TM_REJECT_BAD_TYPE;
    }
    size_t n = json_string_length(v);
    if (n == 0) {
        tm_error_set(err, TM_ERR_PARSE, 0, "field \"%s\" is empty", name);
        return TM_REJECT_OUT_OF_RANGE;
    }
    if (n > TM_EVENT_MAX_STR) {
        tm_error_set(err, TM_ERR_PARSE, 0, "field \"%s\" is %zu bytes, the limit is %d", name, n,
                     TM_EVENT_MAX_STR);
        return TM_REJECT_FIELD_TOO_LONG;
    }
    if (memchr(json_string_value(v), '\0', n)) {
        tm_error_set(err, TM_ERR_PARSE, 0, "field \"%s\" contains a NUL character", name);
        return TM_REJECT_BAD_TYPE;
    }
    *out = tm_xstrndup(json_string_value(v), n);
    return TM_REJECT_NONE;
}

static enum tm_reject get_ts(json_t *o, int64_t *out, struct tm_error *err)
{
    json_t *v = json_object_get(o, "ts");
    struct tm_error e;
    if (!v || json_is_null(v)) {
        tm_error_set(err, TM_ERR_PARSE, 0, "missing required field \"ts\"");
        return TM_REJECT_MISSING_FIELD;
    }
    if (json_is_string(v)) {
        if (tm_parse_rfc3339(json_string_value(v), json_string_length(v), out, &e) == 0)
            return TM_REJECT_NONE;
    } else if (json_is_number(v)) {
        if (tm_epoch_number_to_ms(json_number_value(v), out, &e) == 0)
            return TM_REJECT_NONE;
    } else {
        tm_error_set(err, TM_ERR_PARSE, 0, "field \"ts\" must be an RFC 3339 string or a number");
        return TM_REJECT_BAD_TYPE;
    }
    tm_error_set(err, TM_ERR_PARSE, 0, "field \"ts\": %s", e.msg);
    return TM_REJECT_BAD_TS;
}

enum tm_reject tm_event_decode(const void *buf, size_t len, struct tm_event *ev,
                               struct tm_error *err)
{
    memset(ev, 0, sizeof(*ev));
    if (!buf) {
        tm_error_set(err, TM_ERR_PARSE, 0, "null value (tombstone)");
        return TM_REJECT_TOMBSTONE;
    }
    if (len == 0) {
        tm_error_set(err, TM_ERR_PARSE, 0, "empty value");
        return TM_REJECT_EMPTY;
    }
    if (len > TM_EVENT_MAX_BYTES) {
        tm_error_set(err, TM_ERR_PARSE, 0, "value is %zu bytes, the limit is %d", len,
                     TM_EVENT_MAX_BYTES);
        return TM_REJECT_TOO_LARGE;
    }

    json_error_t jerr;
    /* A duplicate key is ambiguous (which ts?): refused, not last-wins. */
    json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) {
        tm_error_set(err, TM_ERR_PARSE, 0, "invalid JSON at byte %d: %s", jerr.position,
                     jerr.text);
        return TM_REJECT_INVALID_JSON;
    }
    enum tm_reject r = TM_REJECT_NONE;
    if (!json_is_object(o)) {
        tm_error_set(err, TM_ERR_PARSE, 0, "JSON value is not an object");
        r = TM_REJECT_NOT_OBJECT;
        goto out;
    }

    int64_t gpu = 0;
    if ((r = get_ts(o, &ev->ts_ms, err)) ||
        (r = get_string(o, "host", false, &ev->host, err)) ||
        (r = get_count(o, "gpu_index", true, TM_EVENT_MAX_GPU_INDEX, &gpu, err)) ||
        (r = get_string(o, "model", true, &ev->model, err)) ||
        (r = get_count(o, "prompt_tokens", true, TM_EVENT_MAX_TOKENS, &ev->prompt_tokens, err)) ||
        (r = get_count(o, "completion_tokens", true, TM_EVENT_MAX_TOKENS, &ev->completion_tokens,
                       err)) ||
        (r = get_string(o, "event_id", false, &ev->event_id, err)) ||
        (r = get_string(o, "gpu_uuid", false, &ev->gpu_uuid, err)))
        goto out;
    ev->gpu_index = (int)gpu;
    if (!ev->host)
        ev->host = tm_xstrdup("unknown"); /* token.usage.v1 events have no host */

    json_t *lat = json_object_get(o, "latency_ms");
    if (lat && !json_is_null(lat)) {
        if (!json_is_number(lat)) {
            tm_error_set(err, TM_ERR_PARSE, 0, "field \"latency_ms\" must be a number");
            r = TM_REJECT_BAD_TYPE;
            goto out;
        }
        double l = json_number_value(lat);
        if (!isfinite(l) || l < 0 || l > 86400000.0 * 7) {
            tm_error_set(err, TM_ERR_PARSE, 0, "field \"latency_ms\" = %g is outside 0..1 week",
                         l);
            r = TM_REJECT_OUT_OF_RANGE;
            goto out;
        }
        ev->latency_ms = l;
        ev->has_latency = true;
    }

out:
    json_decref(o);
    if (r != TM_REJECT_NONE)
        tm_event_clear(ev);
    return r;
}

char *tm_event_encode(const struct tm_event *ev)
{
    char ts[32];
    tm_format_rfc3339_ms(ev->ts_ms, ts, sizeof(ts));
    json_t *o = json_object();
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "host", json_string(ev->host));
    json_object_set_new(o, "gpu_index", json_integer(ev->gpu_index));
    json_object_set_new(o, "model", json_string(ev->model));
    json_object_set_new(o, "prompt_tokens", json_integer(ev->prompt_tokens));
    json_object_set_new(o, "completion_tokens", json_integer(ev->completion_tokens));
    if (ev->has_latency)
        json_object_set_new(o, "latency_ms", json_real(ev->latency_ms));
    if (ev->event_id)
        json_object_set_new(o, "event_id", json_string(ev->event_id));
    if (ev->gpu_uuid)
        json_object_set_new(o, "gpu_uuid", json_string(ev->gpu_uuid));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s)
        abort(); /* only on OOM: strings are valid UTF-8 by construction */
    return s;
}
