/*
 * gpu.c - the registry of GPU backends and the `auto` selection.
 */
#include "gpu/gpu.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/timeutil.h"

struct tm_gpu_source {
    const struct tm_gpu_source_ops *ops;
    void *priv;
};

/* In `auto` order.  nvml and nvidia-smi register here when they land. */
static const struct tm_gpu_source_ops *const backends[] = {
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
        tm_error_set(err, TM_ERR_GPU, 0, "GPU source \"%s\" is not built into this version",
                     name);
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

struct tm_gpu_source *tm_gpu_source_open(const char *name, const struct tm_gpu_open_args *args,
                                         struct tm_error *err)
{
    if (strcmp(name, "auto") != 0)
        return try_open(name, args, err);
    for (size_t i = 0; i < sizeof(auto_order) / sizeof(auto_order[0]); i++) {
        struct tm_error e;
        struct tm_gpu_source *src = try_open(auto_order[i], args, &e);
        if (src) {
            tm_info("gpu", "GPU source: %s", auto_order[i]);
            return src;
        }
        tm_warn("gpu", "GPU source %s skipped: %s", auto_order[i], e.msg);
        if (err)
            *err = e;
    }
    return NULL;
}

int tm_gpu_source_poll(struct tm_gpu_source *src, struct tm_gpu_poll *out, struct tm_error *err)
{
    memset(out, 0, sizeof(*out));
    if (src->ops->poll(src->priv, out, err) < 0)
        return -1;
    int64_t now = tm_now_ms();
    for (size_t i = 0; i < out->n; i++) {
        out->samples[i].ts_ms = now;
        out->samples[i].source = src->ops->name;
    }
    return 0;
}

const char *tm_gpu_source_name(const struct tm_gpu_source *src)
{
    return src->ops->name;
}

void tm_gpu_source_close(struct tm_gpu_source *src)
{
    if (!src)
        return;
    src->ops->close(src->priv);
    free(src);
}
