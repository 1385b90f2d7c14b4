/*
 * proc.h - the processor: consumer group member that meters token events
 * into token_usage windows, samples the GPUs into gpu_metrics and serves
 * /health, /gpu/info and /metrics.
 *
 * Invariants it keeps (DESIGN 3): offsets are committed manually and only up
 * to what MongoDB acknowledged (window.h explains the commit offset); bad
 * events go to the dead-letter topic with a reason header before their offset
 * is committed; an unreachable peer degrades /health and is retried with
 * backoff, never fatal; SIGTERM flushes closed windows, commits and exits 0.
 */
#ifndef TM_PROC_H
#define TM_PROC_H

#include "config/config.h"

/**
 * @brief Run the processor until @p stop becomes non-zero (set it from a
 *        signal handler).
 * @param cfg  borrowed, validated
 * @returns a tm_exit code: 0 after a clean stop, 1 on a fatal Kafka error,
 *          2 on a setting rejected by a library (e.g. a KAFKA_PROP_*).
 */
int tm_proc_run(const struct tm_config *cfg, volatile int *stop);

#endif
