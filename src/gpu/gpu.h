/*
 * gpu.h - the GPU source interface (DESIGN 2.2, 2.3, 6).
 *
 * A source returns one tm_gpu_sample per GPU at one instant.  Backends are
 * a small versioned table of function pointers (SQLite's VFS, nvtop's
 * gpu_vendor); the registry is an explicit array in gpu.c.  This issue ships
 * the `seed` backend; `nvml` (dlopen of libnvidia-ml.so.1) and `nvidia-smi`
 * plug into the same table.  A value the driver does not report is invalid
 * (its bit clear in `valid`), stored as null: never 0.
 */
#ifndef TM_GPU_H
#define TM_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

enum {
    TM_GPU_UTIL = 1u << 0,     /* utilization, fraction 0..1 */
    TM_GPU_MEM_USED = 1u << 1, /* MiB */
    TM_GPU_MEM_TOTAL = 1u << 2,
    TM_GPU_POWER = 1u << 3, /* W */
    TM_GPU_TEMP = 1u << 4,  /* degrees C */
    TM_GPU_PRICE = 1u << 5, /* USD per GPU-hour from the source (seed file) */
    TM_GPU_UUID = 1u << 6,
    TM_GPU_NAME = 1u << 7,
};

struct tm_gpu_sample {
    char host[256];
    int gpu_index;
    char uuid[96];
    char name[128];
    double utilization;   /* 0..1 */
    double mem_used_mb;   /* MiB */
    double mem_total_mb;  /* MiB */
    double power_w;       /* W */
    double temperature_c; /* degrees C */
    double price_per_hour_usd;
    unsigned valid;     /* TM_GPU_* bits of the fields above that are known */
    int64_t ts_ms;      /* when sampled, Unix ms */
    const char *source; /* "nvml" | "nvidia-smi" | "seed", static */
};

/** Most GPUs (or MIG instances) one poll returns: 16 GPUs x 7 MIG slices fit. */
#define TM_GPU_MAX 128

/** A GPU that could not be read (lost, inaccessible): never a sample of zeros. */
struct tm_gpu_error {
    int gpu_index;   /* -1 when unknown */
    char bus_id[32]; /* e.g. "00000000:0B:00.0", "" when unknown */
    char msg[224];   /* the driver's or tool's words */
};

/** One poll of a source: the GPUs read, and those that failed. */
struct tm_gpu_poll {
    struct tm_gpu_sample samples[TM_GPU_MAX];
    size_t n;
    struct tm_gpu_error errors[TM_GPU_MAX];
    size_t nerr;
};

/** What a backend needs to open. Strings are borrowed. */
struct tm_gpu_open_args {
    const char *seed_path;  /* gpu_seed.json, may be NULL or "" */
    const char *host;       /* host stamped on samples */
    int smi_timeout_ms;     /* deadline of one nvidia-smi run */
};

/** tm_error.code of an open() failure meaning "not installed here" (no
 *  library, no binary, no seed file), as opposed to present but failing. */
#define TM_GPU_ERR_ABSENT 1

struct tm_gpu_source_ops {
    int abi; /* 1 */
    const char *name;
    /** Open the backend; *priv receives its state.  0 or -1 (TM_ERR_GPU, the
     *  reason it is unavailable, e.g. the dlopen error). */
    int (*open)(void **priv, const struct tm_gpu_open_args *args, struct tm_error *err);
    /** Read every GPU into @p out (zeroed by the caller).  Returns 0 when the
     *  poll produced at least one sample (failed GPUs listed in out->errors),
     *  -1 (TM_ERR_GPU) when no GPU could be read; out->errors may still say
     *  why, per GPU. */
    int (*poll)(void *priv, struct tm_gpu_poll *out, struct tm_error *err);
    void (*close)(void *priv);
};

extern const struct tm_gpu_source_ops tm_gpu_nvml_ops; /* gpu_nvml.c: dlopen of NVML */
extern const struct tm_gpu_source_ops tm_gpu_smi_ops;  /* gpu_smi.c: runs nvidia-smi */
extern const struct tm_gpu_source_ops tm_gpu_seed_ops; /* gpu_seed.c: gpu_seed.json */

struct tm_gpu_source;

/**
 * @brief Open the source named @p name ("auto", "nvml", "nvidia-smi",
 *        "seed"); "auto" tries them in that order, logs once why each was
 *        skipped, and before every poll on a fallback tries the better ones
 *        again (switching when one works).
 * @param args  borrowed for the call
 * @returns owned, free with tm_gpu_source_close().  A named source that
 *          cannot open gives NULL (@p err says why); `auto` always gives a
 *          source, whose polls fail ("no GPU source works") until one does.
 */
struct tm_gpu_source *tm_gpu_source_open(const char *name, const struct tm_gpu_open_args *args,
                                         struct tm_error *err);

/** @brief Poll every GPU (see ops->poll).  Zeroes @p out first; stamps
 *         ts_ms and source on the samples. */
int tm_gpu_source_poll(struct tm_gpu_source *src, struct tm_gpu_poll *out, struct tm_error *err);

/**
 * @brief In `auto` mode, why a better source than the live one is present but
 *        failing (e.g. "nvml: Driver/library version mismatch"), or "".
 *        Borrowed, valid until the next poll.  Not thread-safe.
 */
const char *tm_gpu_source_degraded(const struct tm_gpu_source *src);

/** @brief Name of the live backend ("none" for `auto` with none working). */
const char *tm_gpu_source_name(const struct tm_gpu_source *src);

void tm_gpu_source_close(struct tm_gpu_source *src);

/**
 * @brief Parse a gpu_seed.json document (DESIGN 2.3) held in @p buf
 *        (@p len bytes, need not be NUL-terminated).  Pure.
 * @param host  host stamped on entries without their own `host`
 * @returns the number of samples written (<= max), or -1 (TM_ERR_PARSE with
 *          the entry index and the field).
 */
int tm_gpu_seed_parse(const char *buf, size_t len, const char *host, struct tm_gpu_sample *out,
                      size_t max, struct tm_error *err);

/**
 * @brief A sample as a JSON object (DESIGN 2.2 fields; unknown values null,
 *        `age_s` = (@p now_ms - ts) / 1000).  Returns owned (json_decref).
 */
struct json_t;
struct json_t *tm_gpu_sample_json(const struct tm_gpu_sample *s, int64_t now_ms);

/** @brief An error entry as {gpu_index, bus_id, error}; owned. */
struct json_t *tm_gpu_error_json(const struct tm_gpu_error *e);

#endif
