/*
 * replay.c - trace record -> token event (see replay.h).
 *
 * What it is not: it does not read files, pace the replay or produce to
 * Kafka.  Everything here is a function of the options and of the records
 * seen so far, so that replaying one file twice yields the same events.
 */
#include "trace/replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/timeutil.h"
#include "msg/event.h"

/* Longest decimal line number in an event id. */
#define LINE_DIGITS 20

int tm_replay_check(const struct tm_replay_opts *o, struct tm_error *err)
{
    const struct {
        const char *opt, *value;
    } strs[] = {{"--host", o->host}, {"--model", o->model}, {"trace name", o->source}};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (!strs[i].value || strs[i].value[0] == '\0') {
            tm_error_set(err, TM_ERR_CONFIG, 0, "%s: must not be empty", strs[i].opt);
            return -1;
        }
    if (strlen(o->model) > TM_EVENT_MAX_STR) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "--model: longer than %d bytes", TM_EVENT_MAX_STR);
        return -1;
    }
    if (strlen(o->host) + strlen(o->source) + 2 + LINE_DIGITS > TM_EVENT_MAX_STR) {
        tm_error_set(err, TM_ERR_CONFIG, 0,
                     "--host \"%.40s\" and trace name \"%.40s\" are too long for event ids "
                     "\"<host>/<trace>/<line>\" (limit %d bytes)",
                     o->host, o->source, TM_EVENT_MAX_STR);
        return -1;
    }
    if (o->gpus < 1 || o->gpu_offset < 0 ||
        (long)o->gpu_offset + o->gpus - 1 > TM_EVENT_MAX_GPU_INDEX) {
        tm_error_set(err, TM_ERR_CONFIG, 0,
                     "--gpus %d --gpu-offset %d: need gpus >= 1, offset >= 0 and GPU indexes "
                     "up to %d",
                     o->gpus, o->gpu_offset, TM_EVENT_MAX_GPU_INDEX);
        return -1;
    }
    return 0;
}

void tm_replay_init(struct tm_replay *rp, const struct tm_replay_opts *o)
{
    memset(rp, 0, sizeof(*rp));
    rp->host = tm_xstrdup(o->host);
    rp->model = tm_xstrdup(o->model);
    rp->source = tm_xstrdup(o->source);
    rp->gpus = o->gpus;
    rp->gpu_offset = o->gpu_offset;
    rp->anchor_ms = o->anchor_ms;
    rp->shift_absolute = o->shift_absolute;
}

void tm_replay_free(struct tm_replay *rp)
{
    free(rp->host);
    free(rp->model);
    free(rp->source);
    memset(rp, 0, sizeof(*rp));
}

char *tm_replay_key(const char *host, int gpu_index, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%d", host, gpu_index);
    return buf;
}

/* Event time of @p rec in Unix ms; -1 when outside [TM_TS_MIN_MS, TM_TS_MAX_MS]. */
static int64_t event_time(struct tm_replay *rp, const struct tm_trace_rec *rec)
{
    if (!rp->have_first) {
        rp->have_first = true;
        rp->first_ts_ms = rec->ts_ms;
    }
    /* Both terms are within [0, TM_TS_MAX_MS], so neither sum overflows. */
    int64_t ts;
    if (rec->relative)
        ts = rp->anchor_ms + rec->ts_ms;
    else if (rp->shift_absolute)
        ts = rp->anchor_ms + (rec->ts_ms - rp->first_ts_ms);
    else
        ts = rec->ts_ms;
    return ts < TM_TS_MIN_MS || ts > TM_TS_MAX_MS ? -1 : ts;
}

char *tm_replay_encode(struct tm_replay *rp, const struct tm_trace_rec *rec, char *key,
                       size_t key_size, struct tm_error *err)
{
    int64_t ts = event_time(rp, rec);
    if (ts < 0) {
        tm_error_set(err, TM_ERR_PARSE, 0, "%s:%ld: event time out of range (anchor %lld ms + "
                     "trace time %lld ms)", rp->source, rec->line, (long long)rp->anchor_ms,
                     (long long)rec->ts_ms);
        return NULL;
    }
    char id[TM_EVENT_MAX_STR + 1];
    snprintf(id, sizeof(id), "%s/%s/%ld", rp->host, rp->source, rec->line);
    /* The event borrows our strings; it is encoded, never cleared. */
    const struct tm_event ev = {
        .ts_ms = ts,
        .host = rp->host,
        .gpu_index = rp->gpu_offset + (int)(rp->n % rp->gpus),
        .model = rp->model,
        .prompt_tokens = rec->prompt_tokens,
        .completion_tokens = rec->completion_tokens,
        .event_id = id,
    };
    rp->n++;
    tm_replay_key(ev.host, ev.gpu_index, key, key_size);
    return tm_event_encode(&ev);
}
