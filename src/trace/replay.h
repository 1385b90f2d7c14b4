/*
 * replay.h - turn trace records into DESIGN 2.1 token events, deterministically.
 *
 * A replay gives the records of a trace what the trace does not say: the
 * inference host, the model, the GPU (round-robin over the records in trace
 * order), an event id that is the same on every replay of the same file
 * (`<host>/<source>/<line>`), and for relative traces an absolute time.
 * Pure: no I/O, no clock, no globals; not thread-safe (one per thread).
 */
#ifndef TM_REPLAY_H
#define TM_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "trace/trace.h"

/** Room for a message key "<host>/<gpu_index>" (DESIGN 2.1), NUL included. */
#define TM_REPLAY_KEY_MAX (TM_EVENT_MAX_STR + 8)

struct tm_replay_opts {
    const char *host;   /* inference host of every event */
    const char *model;  /* model of every event */
    const char *source; /* trace name in event ids, e.g. the file's basename */
    int gpus;           /* >= 1: GPUs the records are spread over */
    int gpu_offset;     /* >= 0: index of the first of them */
    /* Relative records (Mooncake) happen at anchor_ms + their offset.  With
     * shift_absolute, absolute records are moved by the same amount so that
     * the first record read happens at anchor_ms (deltas kept). Unix ms. */
    int64_t anchor_ms;
    bool shift_absolute;
};

struct tm_replay {
    char *host, *model, *source; /* owned copies of the options */
    int gpus, gpu_offset;
    int64_t anchor_ms;
    bool shift_absolute;
    long n;           /* events built so far: the round-robin position */
    bool have_first;  /* first_ts_ms is set */
    int64_t first_ts_ms;
};

/**
 * @brief Check @p o: non-empty host, model and source; event ids and keys
 *        within TM_EVENT_MAX_STR; gpus >= 1 and gpu_offset >= 0 with every
 *        GPU index <= TM_EVENT_MAX_GPU_INDEX.
 * @returns 0, or -1 with a TM_ERR_CONFIG error naming the option.
 */
int tm_replay_check(const struct tm_replay_opts *o, struct tm_error *err);

/**
 * @brief Initialise @p rp from @p o (which must pass tm_replay_check(); the
 *        strings are copied).  Release with tm_replay_free().
 */
void tm_replay_init(struct tm_replay *rp, const struct tm_replay_opts *o);

/** @brief Free what tm_replay_init() allocated.  Accepts a zeroed struct. */
void tm_replay_free(struct tm_replay *rp);

/**
 * @brief Build the token event of the trace record @p rec (a trace format
 *        record, not an `events` one) and encode it as JSON.
 *
 * The event gets the next GPU in round-robin order, the id
 * `<host>/<source>/<rec->line>` and the time described in tm_replay_opts.
 *
 * @param rec  borrowed.
 * @param key  receives the message key `<host>/<gpu_index>`;
 *             @p key_size >= TM_REPLAY_KEY_MAX.
 * @returns owned NUL-terminated JSON, free with free(); or NULL with a
 *          TM_ERR_PARSE error when the resulting time is outside the
 *          representable range (the GPU turn is then not used up).
 */
char *tm_replay_encode(struct tm_replay *rp, const struct tm_trace_rec *rec, char *key,
                       size_t key_size, struct tm_error *err);

/**
 * @brief Write the message key of an event, `<host>/<gpu_index>`, into @p buf.
 * @returns @p buf (truncated to @p size - 1 bytes if too small).
 */
char *tm_replay_key(const char *host, int gpu_index, char *buf, size_t size);

#endif
