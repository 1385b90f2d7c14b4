/*
 * store.h - MongoDB persistence of tokenmeter (DESIGN 2.4).
 *
 * Collections: `token_usage` (one document per GPU per window, _id
 * "<host>/<gpu_index>/<window_start_ms>") and `gpu_metrics` (one document per
 * GPU sample).  Windows are written whole with replaceOne(upsert), so a
 * replayed write yields the same document, never a sum (DESIGN 3.1).
 *
 * Thread-safety: one tm_store may be used from several threads (it holds a
 * mongoc client pool; every call pops and pushes its own client).
 */
#ifndef TM_STORE_H
#define TM_STORE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "window/window.h"

struct tm_store;

/** Values of a window document that do not come from the events. */
struct tm_window_meta {
    const char *topic;         /* Kafka topic the events came from */
    double price_per_hour_usd; /* USD per GPU-hour for this GPU */
    bool has_power;            /* GPU samples with power fell inside the window */
    double avg_power_w;        /* W */
    const char *gpu_values;    /* "measured" | "seed": where power/utilization came from, NULL: none */
    bool has_utilization;      /* GPU samples with utilization fell inside the window */
    double avg_utilization;    /* 0..1 */
};

/**
 * @brief Connect lazily to @p uri (nothing is sent before the first call).
 * @returns owned, free with tm_store_close(); NULL on a malformed URI
 *          (TM_ERR_CONFIG naming MONGODB_URI; the password is never printed).
 */
struct tm_store *tm_store_open(const char *uri, struct tm_error *err);
void tm_store_close(struct tm_store *st);

/** @brief Database name in use (from the URI path, default "tokenmeter"). */
const char *tm_store_db_name(const struct tm_store *st);

/** @brief Round trip to the server (`ping`).  0 or -1 (TM_ERR_STORE, retriable). */
int tm_store_ping(struct tm_store *st, struct tm_error *err);

/** @brief Create the DESIGN 2.4 indexes if missing.  0 or -1 (TM_ERR_STORE). */
int tm_store_ensure_indexes(struct tm_store *st, struct tm_error *err);

/**
 * @brief Build the token_usage document of @p w into @p doc (initialised
 *        by the caller).  Pure: no I/O.  Null for what cannot be computed.
 */
void tm_store_window_doc(const struct tm_window *w, const struct tm_window_meta *meta,
                         bson_t *doc);

/** @brief _id of a window document, e.g. "node-1/0/1741507200000". */
void tm_store_window_id(const char *host, int gpu_index, int64_t start_ms, char *buf,
                        size_t size);

/**
 * @brief Write @p n windows in one unordered bulk of replaceOne(upsert).
 *
 * @param metas   one per window, borrowed
 * @param status  out, one per window: 0 written, or -1 rejected by the server
 *                (a write error for that operation alone; logged once with
 *                its index and the server's message)
 * @returns 0 when the bulk was acknowledged (some operations may still be
 *          rejected, see @p status), -1 when nothing can be said (network,
 *          no primary, timeout): err->retriable, retry the whole bulk later.
 *          n == 0 is a no-op returning 0 (drivers refuse empty bulks, CASE-16).
 */
int tm_store_write_windows(struct tm_store *st, struct tm_window *const *w,
                           const struct tm_window_meta *metas, size_t n, int *status,
                           struct tm_error *err);

/** @brief tm_window_lookup_fn over token_usage (ctx = struct tm_store *). */
int tm_store_lookup_window(void *ctx, const char *host, int gpu_index, int64_t start_ms,
                           bool *found, int32_t *partition, int64_t *offset_max,
                           struct tm_error *err);

/** @brief tm_window_frontier_fn over token_usage (ctx = struct tm_store *): the
 *         latest window_end of the GPU, by the {host, gpu_index, window_start} index. */
int tm_store_window_frontier(void *ctx, const char *host, int gpu_index, bool *found,
                             int64_t *end_ms, struct tm_error *err);

/**
 * @brief Insert documents into @p collection (e.g. gpu_metrics).
 * @param docs  borrowed.  n == 0 is a no-op.  0 or -1 (TM_ERR_STORE).
 */
int tm_store_insert_many(struct tm_store *st, const char *collection, const bson_t *const *docs,
                         size_t n, struct tm_error *err);

/**
 * @brief Open a cursor over @p collection with @p filter and @p opts
 *        (borrowed); call @p fn per document until it returns non-zero.
 * @returns 0 or -1 (TM_ERR_STORE).
 */
int tm_store_each(struct tm_store *st, const char *collection, const bson_t *filter,
                  const bson_t *opts, int (*fn)(void *ctx, const bson_t *doc), void *ctx,
                  struct tm_error *err);

/** @brief Drop @p collection (tests and `make demo` use it).  0 or -1. */
int tm_store_drop(struct tm_store *st, const char *collection, struct tm_error *err);

#endif
