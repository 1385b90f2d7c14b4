/*
 * config.c - the settings table and its loaders (see config.h).
 *
 * Kafka and MongoDB security settings are not modelled here: they pass
 * through librdkafka properties (KAFKA_* is not parsed; use the MongoDB URI
 * for user, password and TLS) as DESIGN 4 asks.
 */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mem.h"

enum type { T_STR, T_LONG, T_DOUBLE };

struct row {
    const char *env;  /* environment variable */
    const char *flag; /* command-line flag without "--" */
    enum type type;
    size_t offset;
    const char *def; /* default as text; NULL = computed */
    double min, max; /* for numbers */
    const char *desc;
};

#define OFF(f) offsetof(struct tm_config, f)

static const struct row rows[] = {
    {"KAFKA_BOOTSTRAP", "kafka-bootstrap", T_STR, OFF(kafka_bootstrap), "127.0.0.1:9092", 0, 0,
     "Kafka bootstrap servers, host:port[,host:port]"},
    {"KAFKA_TOPIC", "kafka-topic", T_STR, OFF(kafka_topic), "tokens", 0, 0,
     "topic of the token events"},
    {"KAFKA_DLQ_TOPIC", "kafka-dlq-topic", T_STR, OFF(kafka_dlq_topic), NULL, 0, 0,
     "dead-letter topic (default: <KAFKA_TOPIC>.dlq)"},
    {"KAFKA_GROUP", "kafka-group", T_STR, OFF(kafka_group), "tokenmeter", 0, 0,
     "consumer group of the processors"},
    {"MONGODB_URI", "mongodb-uri", T_STR, OFF(mongodb_uri),
     "mongodb://127.0.0.1:27017/tokenmeter", 0, 0,
     "MongoDB URI; the database is its path (default tokenmeter)"},
    {"PRICE_PER_HOUR_USD", "price-per-hour-usd", T_DOUBLE, OFF(price_per_hour_usd), "6.88", 0,
     1e6, "price of one GPU-hour in USD (default: one H100, AWS p5 on-demand)"},
    {"GPU_METRICS_SOURCE", "gpu-metrics-source", T_STR, OFF(gpu_source), "auto", 0, 0,
     "auto | nvml | nvidia-smi | seed"},
    {"GPU_SEED", "gpu-seed", T_STR, OFF(gpu_seed), "gpu_seed.json", 0, 0,
     "path of the gpu_seed.json fallback"},
    {"HTTP_LISTEN", "http-listen", T_STR, OFF(http_listen), "0.0.0.0:8080", 0, 0,
     "address:port of /health, /gpu/info, /metrics (port 0: any free port)"},
    {"WINDOW_SECONDS", "window-seconds", T_LONG, OFF(window_seconds), "10", 1, 86400,
     "length of the event-time tumbling windows, s"},
    {"ALLOWED_LATENESS_SECONDS", "allowed-lateness-seconds", T_LONG, OFF(lateness_seconds), "5",
     0, 86400, "how far behind the watermark an event may still join its window, s"},
    {"IDLE_CLOSE_SECONDS", "idle-close-seconds", T_LONG, OFF(idle_close_seconds), NULL, 1, 86400,
     "wall-clock time without events after which a caught-up GPU's windows close, s "
     "(default: WINDOW_SECONDS + ALLOWED_LATENESS_SECONDS)"},
    {"GPU_SAMPLE_SECONDS", "gpu-sample-seconds", T_LONG, OFF(gpu_sample_seconds), "5", 1, 86400,
     "period of the GPU samples written to gpu_metrics, s"},
    {"HOST_NAME", "host-name", T_STR, OFF(host_name), NULL, 0, 0,
     "name of this host (default: the system host name)"},
    {"LOG_LEVEL", "log-level", T_STR, OFF(log_level), "info", 0, 0, "error | warn | info | debug"},
    {"TOPIC_PARTITIONS", "topic-partitions", T_LONG, OFF(partitions), "12", 1, 10000,
     "partitions of the topics tokenmeter creates when missing"},
};
#define NROWS (sizeof(rows) / sizeof(rows[0]))

static int apply(struct tm_config *cfg, const struct row *r, const char *value, const char *via,
                 struct tm_error *err)
{
    char *base = (char *)cfg + r->offset;
    const char *name = via[0] == '-' ? r->flag : r->env;
    switch (r->type) {
    case T_STR: {
        if (value[0] == '\0' && strcmp(r->env, "GPU_SEED") != 0) {
            tm_error_set(err, TM_ERR_CONFIG, 0, "%s%s: must not be empty", via, name);
            return -1;
        }
        char **slot = (char **)base;
        free(*slot);
        *slot = tm_xstrdup(value);
        return 0;
    }
    case T_LONG: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end != '\0' || isspace((unsigned char)value[0]) ||
            v < (long)r->min || v > (long)r->max) {
            tm_error_set(err, TM_ERR_CONFIG, 0,
                         "%s%s=\"%s\": expected an integer from %.0f to %.0f: %s", via, name,
                         value, r->min, r->max, r->desc);
            return -1;
        }
        *(long *)base = v;
        return 0;
    }
    case T_DOUBLE: {
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        if (errno || end == value || *end != '\0' || isspace((unsigned char)value[0]) ||
            !isfinite(v) || v < r->min || v > r->max) {
            tm_error_set(err, TM_ERR_CONFIG, 0,
                         "%s%s=\"%s\": expected a number from %g to %g: %s", via, name, value,
                         r->min, r->max, r->desc);
            return -1;
        }
        *(double *)base = v;
        return 0;
    }
    }
    return -1;
}

int tm_config_init(struct tm_config *cfg, struct tm_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->idle_close_seconds = -1;
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].def && apply(cfg, &rows[i], rows[i].def, "", err) < 0)
            return -1;
    for (size_t i = 0; i < NROWS; i++) {
        const char *v = getenv(rows[i].env);
        if (v && apply(cfg, &rows[i], v, "", err) < 0)
            return -1;
    }
    return 0;
}

int tm_config_set_flag(struct tm_config *cfg, const char *flag, const char *value,
                       struct tm_error *err)
{
    for (size_t i = 0; i < NROWS; i++) {
        if (strcmp(rows[i].flag, flag) != 0)
            continue;
        if (apply(cfg, &rows[i], value, "--", err) < 0)
            return -1;
        return 1;
    }
    return 0;
}

int tm_config_validate(const struct tm_config *cfg, struct tm_error *err)
{
    static const char *const sources[] = {"auto", "nvml", "nvidia-smi", "seed"};
    bool ok = false;
    for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++)
        ok |= strcmp(cfg->gpu_source, sources[i]) == 0;
    if (!ok) {
        tm_error_set(err, TM_ERR_CONFIG, 0,
                     "GPU_METRICS_SOURCE=\"%s\": expected auto, nvml, nvidia-smi or seed",
                     cfg->gpu_source);
        return -1;
    }
    if (tm_log_level_parse(cfg->log_level) < 0) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "LOG_LEVEL=\"%s\": expected error, warn, info or debug",
                     cfg->log_level);
        return -1;
    }
    if (strncmp(cfg->mongodb_uri, "mongodb://", 10) != 0 &&
        strncmp(cfg->mongodb_uri, "mongodb+srv://", 14) != 0) {
        tm_error_set(err, TM_ERR_CONFIG, 0,
                     "MONGODB_URI: expected mongodb://host[:port]/database (got a value without "
                     "the mongodb:// scheme)");
        return -1;
    }
    const char *colon = strrchr(cfg->http_listen, ':');
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || colon == cfg->http_listen || colon[1] == '\0' || *end != '\0' || port < 0 ||
        port > 65535) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "HTTP_LISTEN=\"%s\": expected address:port",
                     cfg->http_listen);
        return -1;
    }
    return 0;
}

int tm_config_options(struct option *opts, int cap, int val_base)
{
    int n = 0;
    for (size_t i = 0; i < NROWS && n < cap; i++, n++)
        opts[n] = (struct option){rows[i].flag, required_argument, NULL, val_base + (int)i};
    return n;
}

const char *tm_config_option_name(int row)
{
    return row >= 0 && (size_t)row < NROWS ? rows[row].flag : NULL;
}

void tm_config_usage(FILE *out)
{
    fprintf(out, "Settings (flag, environment variable, default):\n");
    for (size_t i = 0; i < NROWS; i++)
        fprintf(out, "  --%-26s %-26s %s\n  %30s %s\n", rows[i].flag, rows[i].env,
                rows[i].def ? rows[i].def : "(see text)", "", rows[i].desc);
}

void tm_config_free(struct tm_config *cfg)
{
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].type == T_STR) {
            char **slot = (char **)((char *)cfg + rows[i].offset);
            free(*slot);
            *slot = NULL;
        }
}

void tm_config_finish(struct tm_config *cfg)
{
    if (!cfg->kafka_dlq_topic) {
        size_t n = strlen(cfg->kafka_topic) + 5;
        cfg->kafka_dlq_topic = tm_xmalloc(n);
        snprintf(cfg->kafka_dlq_topic, n, "%s.dlq", cfg->kafka_topic);
    }
    if (cfg->idle_close_seconds < 0)
        cfg->idle_close_seconds = cfg->window_seconds + cfg->lateness_seconds;
    if (!cfg->host_name) {
        char h[256] = "";
        if (gethostname(h, sizeof(h) - 1) != 0 || h[0] == '\0')
            snprintf(h, sizeof(h), "localhost");
        cfg->host_name = tm_xstrdup(h);
    }
    tm_log_level = tm_log_level_parse(cfg->log_level);
}

int tm_config_parse_args(struct tm_config *cfg, int argc, char **argv,
                         const struct option *extra, tm_config_extra_fn *on_extra, void *ctx,
                         struct tm_error *err)
{
    struct option opts[NROWS + 64];
    int n = tm_config_options(opts, (int)NROWS, 1000);
    for (const struct option *o = extra; o && o->name && n < (int)(NROWS + 63); o++)
        opts[n++] = *o;
    opts[n] = (struct option){0, 0, 0, 0};

    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c >= 1000 && c < 1000 + (int)NROWS) {
            if (tm_config_set_flag(cfg, rows[c - 1000].flag, optarg, err) < 0)
                return -1;
        } else if (c == '?' || c == ':') {
            tm_error_set(err, TM_ERR_CONFIG, 0, "unknown option or missing value: %s",
                         argv[optind - 1]);
            return -1;
        } else if (on_extra && on_extra(ctx, c, optarg, err) < 0) {
            return -1;
        }
    }
    tm_config_finish(cfg);
    if (tm_config_validate(cfg, err) < 0)
        return -1;
    return optind;
}

int tm_config_no_operands(int argc, char **argv, struct tm_error *err)
{
    if (optind < argc) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "unexpected argument \"%s\"", argv[optind]);
        return -1;
    }
    return 0;
}
