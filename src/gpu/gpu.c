/*
 * gpu.c - the registry of GPU backends and the `auto` selection.
 */
#include "gpu/gpu.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/timeutil.h"

#define AUTO_N 3
#define PROBE_BACKOFF_MS 30000

struct tm_gpu_source {
    const struct tm_gpu_source_ops *ops;
    void *priv;
    bool auto_mode;
    size_t rank;                /* auto: index in auto_order of the live backend */
    char *seed_path, *host;     /* copies of the open arguments, for re-probes */
    int smi_timeout_ms;
    char skipped[AUTO_N][256];  /* auto: last reason each better source was skipped */
    int64_t next_probe[AUTO_N]; /* auto: monotonic ms before which a slow failure is not retried */
    char degraded[320];         /* a better source is there but failing, "" if none */
};


/* Every backend built in; `auto` tries them in auto_order. */
static const struct tm_gpu_source_ops *const backends[] = {
    &tm_gpu_nvml_ops,
    &tm_gpu_smi_ops,
    &tm_gpu_seed_ops,
};
static const char *const auto_order[] = {"nvml", "nvidia-smi", "seed"};

static const struct tm_gpu_source_ops *find_backend(const char *name)
{
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

static struct tm_gpu_source *try_open(const char *name, const struct tm_gpu_open_args *args,
                                      struct tm_error *err)
{
    const struct tm_gpu_source_ops *ops = find_backend(name);
    if (!ops) {
        tm_error_set(err, TM_ERR_GPU, TM_GPU_ERR_ABSENT,
                     "GPU source \"%s\" is not built into this version", name);
        return NULL;
    }
    void *priv = NULL;
    if (ops->open(&priv, args, err) < 0)
        return NULL;
    struct tm_gpu_source *src = tm_xcalloc(1, sizeof(*src));
    src->ops = ops;
    src->priv = priv;
    return src;
}

/* Auto: try the sources ranked before @p below (all when below = AUTO_N),
 * best first; log a skip reason only when it changed.  Returns the opened
 * backend (its rank in *rank) or NULL. */
static struct tm_gpu_source *auto_probe(struct tm_gpu_source *self, size_t below,
                                        const struct tm_gpu_open_args *args, size_t *rank,
                                        struct tm_error *err)
{
    self->degraded[0] = '\0';
    for (size_t i = 0; i < below; i++) {
        struct tm_error e;
        int64_t t0 = tm_mono_ms();
        if (t0 < self->next_probe[i]) {
            /* recently failed slowly (a hung nvidia-smi): keep its last reason */
            if (self->skipped[i][0] && !self->degraded[0])
                snprintf(self->degraded, sizeof(self->degraded), "%s: %s", auto_order[i],
                         self->skipped[i]);
            continue;
        }
        struct tm_gpu_source *src = try_open(auto_order[i], args, &e);
        /* A probe that failed slowly (half its deadline or more: a hung
         * nvidia-smi) would stretch every sample by that deadline: wait
         * PROBE_BACKOFF_MS before trying that source again. */
        int64_t slow = args->smi_timeout_ms > 400 ? args->smi_timeout_ms / 2 : 200;
        self->next_probe[i] =
            !src && tm_mono_ms() - t0 >= slow ? tm_mono_ms() + PROBE_BACKOFF_MS : 0;
        if (src) {
            self->skipped[i][0] = '\0';
            *rank = i;
            return src;
        }
        if (strcmp(self->skipped[i], e.msg) != 0) {
            tm_warn("gpu", "GPU source %s skipped: %s", auto_order[i], e.msg);
            snprintf(self->skipped[i], sizeof(self->skipped[i]), "%s", e.msg);
        }
        /* Present but failing (not merely absent): the host has a GPU we
         * cannot read, which /health must say (CASE-04). */
        if (e.code != TM_GPU_ERR_ABSENT && !self->degraded[0])
            snprintf(self->degraded, sizeof(self->degraded), "%s: %s", auto_order[i], e.msg);
        if (err)
            *err = e;
    }
    return NULL;
}

struct tm_gpu_source *tm_gpu_source_open(const char *name, const struct tm_gpu_open_args *args,
                                         struct tm_error *err)
{
    struct tm_gpu_source *src;
    if (strcmp(name, "auto") != 0) {
        src = try_open(name, args, err);
    } else {
        /* Auto always yields a source, even with no backend live yet: its
         * polls keep probing, and its memory of skip reasons keeps each
         * reason logged once, not once per poll. */
        struct tm_gpu_source probe = {0};
        size_t rank = AUTO_N;
        src = auto_probe(&probe, AUTO_N, args, &rank, err);
        if (!src)
            src = tm_xcalloc(1, sizeof(*src));
        memcpy(src->skipped, probe.skipped, sizeof(src->skipped));
        memcpy(src->degraded, probe.degraded, sizeof(src->degraded));
        memcpy(src->next_probe, probe.next_probe, sizeof(src->next_probe));
        src->auto_mode = true;
        src->rank = rank;
        if (src->ops)
            tm_info("gpu", "GPU source: %s", auto_order[rank]);
        else
            tm_warn("gpu", "no GPU source works yet; trying again at every sample");
    }
    if (src) {
        src->seed_path = tm_xstrdup(args->seed_path ? args->seed_path : "");
        src->host = tm_xstrdup(args->host);
        src->smi_timeout_ms = args->smi_timeout_ms;
    }
    return src;
}

/* Auto on a fallback (or on nothing): a better source may have come back
 * (driver reloaded, nvidia-smi fixed).  Try them before each poll and switch
 * to the best that works. */
static void auto_reprobe(struct tm_gpu_source *src)
{
    if (!src->auto_mode || src->rank == 0)
        return;
    const struct tm_gpu_open_args args = {src->seed_path, src->host, src->smi_timeout_ms};
    size_t rank;
    struct tm_gpu_source *better = auto_probe(src, src->rank, &args, &rank, NULL);
    if (!better)
        return;
    tm_info("gpu", "GPU source: %s (was %s)", auto_order[rank],
            src->ops ? src->ops->name : "none");
    if (src->ops)
        src->ops->close(src->priv);
    src->ops = better->ops;
    src->priv = better->priv;
    src->rank = rank;
    free(better);
}

int tm_gpu_source_poll(struct tm_gpu_source *src, struct tm_gpu_poll *out, struct tm_error *err)
{
    auto_reprobe(src);
    memset(out, 0, sizeof(*out));
    if (!src->ops) {
        tm_error_set(err, TM_ERR_GPU, 0, "no GPU source works (%s)",
                     src->degraded[0] ? src->degraded : "no NVML, no nvidia-smi, no GPU_SEED");
        return -1;
    }
    if (src->ops->poll(src->priv, out, err) < 0)
        return -1;
    int64_t now = tm_now_ms();
    for (size_t i = 0; i < out->n; i++) {
        out->samples[i].ts_ms = now;
        out->samples[i].source = src->ops->name;
    }
    return 0;
}

const char *tm_gpu_source_degraded(const struct tm_gpu_source *src)
{
    return src->degraded;
}

const char *tm_gpu_source_name(const struct tm_gpu_source *src)
{
    return src->ops ? src->ops->name : "none";
}

void tm_gpu_source_close(struct tm_gpu_source *src)
{
    if (!src)
        return;
    if (src->ops)
        src->ops->close(src->priv);
    free(src->seed_path);
    free(src->host);
    free(src);
}

/* ------------------------------------------------------------------ JSON */

static void set_opt_num(json_t *o, const char *key, bool has, double v)
{
    json_object_set_new(o, key, has ? json_real(v) : json_null());
}

json_t *tm_gpu_sample_json(const struct tm_gpu_sample *s, int64_t now)
{
    json_t *g = json_object();
    char ts[32];
    json_object_set_new(g, "host", json_string(s->host));
    json_object_set_new(g, "gpu_index", json_integer(s->gpu_index));
    json_object_set_new(g, "uuid", s->valid & TM_GPU_UUID ? json_string(s->uuid) : json_null());
    json_object_set_new(g, "name", s->valid & TM_GPU_NAME ? json_string(s->name) : json_null());
    set_opt_num(g, "utilization", s->valid & TM_GPU_UTIL, s->utilization);
    set_opt_num(g, "mem_used_mb", s->valid & TM_GPU_MEM_USED, s->mem_used_mb);
    set_opt_num(g, "mem_total_mb", s->valid & TM_GPU_MEM_TOTAL, s->mem_total_mb);
    set_opt_num(g, "power_w", s->valid & TM_GPU_POWER, s->power_w);
    set_opt_num(g, "temperature_c", s->valid & TM_GPU_TEMP, s->temperature_c);
    set_opt_num(g, "price_per_hour_usd", s->valid & TM_GPU_PRICE, s->price_per_hour_usd);
    json_object_set_new(g, "ts", json_string(tm_format_rfc3339_ms(s->ts_ms, ts, sizeof(ts))));
    json_object_set_new(g, "age_s", json_real((double)(now - s->ts_ms) / 1000.0));
    json_object_set_new(g, "source", json_string(s->source));
    return g;
}

json_t *tm_gpu_error_json(const struct tm_gpu_error *e)
{
    json_t *je = json_object();
    json_object_set_new(je, "gpu_index", e->gpu_index >= 0 ? json_integer(e->gpu_index) : json_null());
    json_object_set_new(je, "bus_id", e->bus_id[0] ? json_string(e->bus_id) : json_null());
    json_object_set_new(je, "error", json_string(e->msg));
    return je;
}
