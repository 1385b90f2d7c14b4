/*
 * window.h - event-time tumbling windows per GPU, with exactly-once effect.
 *
 * The aggregator is pure: no Kafka, no MongoDB, no clock of its own.  The
 * processor feeds it decoded events with their (partition, offset), asks it
 * for the windows that closed, writes them, and tells it which were
 * acknowledged; the aggregator then says which offset is safe to commit.
 *
 * Windows.  A window of GPU (host, gpu_index) is [start, start + W) on the
 * event's `ts`, start = floor(ts / W) * W (DESIGN 3.2).
 *
 * Watermark.  One per GPU key inside a partition: the largest `ts` seen for
 * that GPU.  DESIGN 3.2 speaks of the partition's watermark; with one GPU per
 * key, all of a GPU's events are in one partition and come in producer order,
 * but two hosts sharing a partition are independent clocks (two producers
 * replaying different traces), so a per-GPU watermark keeps one host's
 * progress from making another host's events late.  A window closes when its
 * GPU's watermark reaches end + allowed lateness, or when the GPU was idle
 * for `idle_ms` of wall-clock time while its partition is caught up (nothing
 * left to read up to the broker's high watermark): an outage or a backlog is
 * not idleness.
 *
 * Exactly-once.  A closed window is written whole with a deterministic _id
 * and the largest offset it includes (`offset_max`), and the commit offset of
 * a partition never passes the first offset of a window that is not yet
 * acknowledged.  After a crash or a rebalance, events are replayed from the
 * committed offset; for a window not in memory the aggregator asks the store
 * (the lookup callback) whether it was written: an event at an offset <= the
 * stored offset_max is already counted (duplicate), a later one is late.
 */
#ifndef TM_WINDOW_H
#define TM_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "msg/event.h"

/** Distinct models kept per window; further models are summed in "(other)". */
#define TM_WINDOW_MAX_MODELS 64

struct tm_model_agg {
    char *model; /* owned */
    int64_t requests, prompt_tokens, completion_tokens;
};

enum tm_window_state { TM_WIN_OPEN, TM_WIN_FLUSHING, TM_WIN_PERSISTED };

/** One GPU's aggregate over one window. */
struct tm_window {
    char *host; /* owned */
    int gpu_index;
    int64_t start_ms, end_ms;
    int64_t requests, prompt_tokens, completion_tokens;
    double latency_sum_ms; /* over latency_n requests that carried latency_ms */
    int64_t latency_n;
    int64_t first_ts_ms, last_ts_ms; /* event-time span actually seen */
    struct tm_model_agg *models;
    size_t nmodels;
    int32_t partition;
    int64_t offset_min, offset_max; /* offsets of the events it includes */
    enum tm_window_state state;
};

/** What tm_agg_add() did with an event. */
enum tm_add_result {
    TM_ADD_COUNTED,   /* added to an open window */
    TM_ADD_DUPLICATE, /* already in a written window (a replay): ignored */
    TM_ADD_LATE,      /* its window was closed: dead-letter it with reason `late` */
    TM_ADD_FOREIGN,   /* its window was written from another partition: dead-letter */
};

/**
 * Ask the store whether window (host, gpu_index, start_ms) was written.
 * Set *found; when found, *partition and *offset_max of the stored document.
 * Return 0, or -1 with @p err when the store cannot answer now (retriable).
 */
typedef int tm_window_lookup_fn(void *ctx, const char *host, int gpu_index, int64_t start_ms,
                                bool *found, int32_t *partition, int64_t *offset_max,
                                struct tm_error *err);

/**
 * Ask the store for the end (ms) of the latest window written for GPU
 * (host, gpu_index), whoever wrote it.  Set *found.  Return 0, or -1 with
 * @p err when the store cannot answer now.
 */
typedef int tm_window_frontier_fn(void *ctx, const char *host, int gpu_index, bool *found,
                                  int64_t *end_ms, struct tm_error *err);

/**
 * How the aggregator asks the store about windows it does not hold.  It asks
 * for a GPU's frontier once (the first time it sees the GPU) and looks up a
 * single window only when that window starts before the frontier: in steady
 * state every new window is past it, so no lookup is made.
 */
struct tm_window_store_ops {
    tm_window_lookup_fn *lookup;
    tm_window_frontier_fn *frontier;
    void *ctx;
};

struct tm_agg;

/**
 * @brief Create an aggregator.
 * @param window_ms    window length, ms (> 0)
 * @param lateness_ms  allowed lateness, ms (>= 0)
 * @param idle_ms      wall-clock idleness that closes a caught-up GPU's windows, ms
 * @returns owned, free with tm_agg_free().
 */
struct tm_agg *tm_agg_new(int64_t window_ms, int64_t lateness_ms, int64_t idle_ms);
void tm_agg_free(struct tm_agg *agg);

/** @brief Window start (ms) of an event time, floor(ts / W) * W. */
int64_t tm_agg_window_start(const struct tm_agg *agg, int64_t ts_ms);

/**
 * @brief Count one valid event read at (@p partition, @p offset).
 * @param ev      borrowed
 * @param now_ms  wall clock, ms (for idleness)
 * @param store   consulted only for windows the aggregator does not hold;
 *                NULL: nothing was ever written (tests)
 * @returns 0 with *res set, or -1 when the store could not answer: nothing
 *          changed, the caller must retry the same event later.
 */
int tm_agg_add(struct tm_agg *agg, int32_t partition, int64_t offset, const struct tm_event *ev,
               int64_t now_ms, const struct tm_window_store_ops *store,
               enum tm_add_result *res, struct tm_error *err);

/**
 * @brief Tell whether @p partition is caught up right now: every message up
 *        to its high watermark was handled (the consumer's position equals
 *        the broker's end).  Only then can a GPU's silence be idleness rather
 *        than a backlog still to read.
 */
void tm_agg_partition_caught_up(struct tm_agg *agg, int32_t partition, bool caught_up);

/**
 * @brief Move every window that closed (watermark; idleness too when
 *        @p idle_allowed, i.e. the caller saw Kafka healthy for at least the
 *        idle time; every open window when @p all) to the FLUSHING state and
 *        list them.
 * @param out  receives a malloc'ed array of borrowed pointers (free() the
 *             array only); the windows stay owned by the aggregator.
 * @returns the number of windows listed; also lists windows still FLUSHING
 *          from an earlier failed write, so a retry writes them again.
 */
size_t tm_agg_take_closed(struct tm_agg *agg, int64_t now_ms, bool idle_allowed, bool all,
                          struct tm_window ***out);

/**
 * @brief The store acknowledged @p w: it no longer holds back commits.
 * @remark May free older written windows of the same GPU: a pointer from an
 *         earlier tm_agg_take_closed() list is valid only until the window
 *         it points to was passed here.
 */
void tm_agg_persisted(struct tm_agg *agg, struct tm_window *w);

/**
 * @brief Offset safe to commit for @p partition: the smallest offset_min of
 *        its windows not yet acknowledged, or @p next_offset (last read + 1)
 *        when there is none.  Returns @p next_offset when the partition is unknown.
 */
int64_t tm_agg_commit_offset(const struct tm_agg *agg, int32_t partition, int64_t next_offset);

/** @brief Forget a partition (revoked): drop its windows, written or not. */
void tm_agg_drop_partition(struct tm_agg *agg, int32_t partition);

/** @brief Number of windows not yet acknowledged (open or flushing), all partitions. */
size_t tm_agg_pending(const struct tm_agg *agg);

#endif
