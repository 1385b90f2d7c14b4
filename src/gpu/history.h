/*
 * history.h - recent GPU samples per (host, gpu_index), to join them with
 * token windows: a window's avg_power_w and avg_utilization are the means of
 * the samples of the same GPU whose ts falls inside [window_start,
 * window_end) (DESIGN 2.4); energy_j = avg_power_w * window_s (cost.h).
 *
 * When a window holds measured samples (NVML, nvidia-smi), seed samples are
 * left out of it: hand-written values are never averaged with measured ones.
 *
 * Pure and single-threaded: the processor guards it with its own mutex.
 */
#ifndef TM_GPU_HISTORY_H
#define TM_GPU_HISTORY_H

#include <stdbool.h>
#include <stdint.h>

#include "gpu/gpu.h"

struct tm_gpu_history;

/** @brief New history keeping samples younger than @p keep_ms (by their ts). */
struct tm_gpu_history *tm_gpu_history_new(int64_t keep_ms);
void tm_gpu_history_free(struct tm_gpu_history *h);

/** @brief Record one sample (copied); drops that GPU's samples older than
 *         the newest minus keep_ms. */
void tm_gpu_history_add(struct tm_gpu_history *h, const struct tm_gpu_sample *s);

/** Means over the samples inside a window; a mean without samples is absent. */
struct tm_gpu_window_stats {
    int samples;  /* samples used (measured ones only, when there are any) */
    bool measured; /* from NVML or nvidia-smi; false: from the seed file */
    bool has_power, has_utilization, has_price;
    double avg_power_w;     /* W */
    double avg_utilization; /* 0..1 */
    double price_per_hour_usd; /* latest price the source gave for this GPU */
};

/** @brief Stats of GPU (@p host, @p gpu_index) for [start_ms, end_ms). The
 *         price is the latest known, inside the window or not. */
void tm_gpu_history_window(const struct tm_gpu_history *h, const char *host, int gpu_index,
                           int64_t start_ms, int64_t end_ms, struct tm_gpu_window_stats *out);

#endif
