/*
 * config.h - the settings of tokenmeter (DESIGN 4).
 *
 * One table (config.c) lists every setting once: its environment variable,
 * its command-line flag, type, default, range and description.  Sources are
 * layered: defaults < environment < command-line flags.  Every value is
 * validated at start-up; a bad one is a one-line error naming the variable and
 * the caller exits with status 2.
 */
#ifndef TM_CONFIG_H
#define TM_CONFIG_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "common/error.h"

/** Default price of one GPU-hour in USD: one H100 on AWS p5.4xlarge
 *  (us-east-1, on-demand, 6.88 USD/h; the same per-GPU price as p5.48xlarge
 *  55.04/8), see shared/data/prices/gpu_prices_per_gpu.csv. */
#define TM_DEFAULT_PRICE_PER_HOUR_USD 6.88

struct tm_config {
    char *kafka_bootstrap;    /* host:port[,host:port] */
    char *kafka_topic;        /* "tokens" */
    char *kafka_dlq_topic;    /* "tokens.dlq" */
    char *kafka_group;        /* consumer group id */
    char *mongodb_uri;        /* database from the path, default tokenmeter */
    double price_per_hour_usd; /* USD per GPU-hour */
    char *gpu_source;         /* auto | nvml | nvidia-smi | seed */
    char *gpu_seed;           /* path of gpu_seed.json, may be "" */
    char *http_listen;        /* addr:port, port 0 = any */
    long window_seconds;      /* tumbling window length, s */
    long lateness_seconds;    /* allowed lateness, s */
    long idle_close_seconds;  /* wall-clock idleness that closes a GPU's windows, s */
    long gpu_sample_seconds;  /* GPU sampling period, s */
    char *host_name;          /* this host's name, default gethostname() */
    char *log_level;          /* error | warn | info | debug */
    long partitions;          /* partitions of a topic created by tokenmeter */
};

/**
 * @brief Fill @p cfg with the defaults, then apply the environment.
 * @returns 0, or -1 with a TM_ERR_CONFIG error naming the variable.
 *          On failure @p cfg still must be released with tm_config_free().
 */
int tm_config_init(struct tm_config *cfg, struct tm_error *err);

/**
 * @brief Apply one setting given by its flag name (without "--"), e.g.
 *        "window-seconds", and a textual value.
 * @returns 1 when the flag is a setting and was applied, 0 when the name is
 *          not a setting, -1 on a bad value (TM_ERR_CONFIG, names the flag
 *          and its environment variable).
 */
int tm_config_set_flag(struct tm_config *cfg, const char *flag, const char *value,
                       struct tm_error *err);

/**
 * @brief Check the values against each other after all sources were applied.
 * @returns 0 or -1 (TM_ERR_CONFIG).
 */
int tm_config_validate(const struct tm_config *cfg, struct tm_error *err);

/**
 * @brief Append one `struct option` (has_arg = required_argument, val =
 *        @p val_base + row) per setting to @p opts, which has room for
 *        @p cap entries.  Returns the number appended.
 */
int tm_config_options(struct option *opts, int cap, int val_base);

/** @brief Flag name of the setting whose option value is @p val_base + row. */
const char *tm_config_option_name(int row);

/** @brief Print "  --flag VALUE  ENV (default): description" for every setting. */
void tm_config_usage(FILE *out);

/** @brief Fill in the defaults that depend on other settings (DLQ topic,
 *         idle close, host name) and apply LOG_LEVEL. */
void tm_config_finish(struct tm_config *cfg);

/** Handler of a subcommand's own option: return 0, or -1 with @p err set. */
typedef int tm_config_extra_fn(void *ctx, int val, const char *arg, struct tm_error *err);

/**
 * @brief Parse argv[1..]: every setting as `--flag VALUE` / `--flag=VALUE`
 *        (over the environment), plus the subcommand's @p extra options
 *        (terminated by a zeroed entry; their `val` must be < 1000), handed to
 *        @p on_extra.  Then tm_config_finish() and tm_config_validate().
 * Options and operands may come in any order (GNU getopt permutes argv).
 * @returns the index of the first non-option argument, or -1 (TM_ERR_CONFIG).
 */
int tm_config_parse_args(struct tm_config *cfg, int argc, char **argv,
                         const struct option *extra, tm_config_extra_fn *on_extra, void *ctx,
                         struct tm_error *err);

/** @brief After tm_config_parse_args(): fail (TM_ERR_CONFIG) when argv
 *         still holds operands, for commands that take none. */
int tm_config_no_operands(int argc, char **argv, struct tm_error *err);

/** @brief Free the strings of @p cfg.  Accepts a zeroed struct. */
void tm_config_free(struct tm_config *cfg);

#endif
