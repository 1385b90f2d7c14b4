/*
 * gpu_seed.c - the `seed` GPU source: gpu_seed.json (DESIGN 2.3), for hosts
 * without a GPU.  Values are hand-written, never measured: every sample says
 * source "seed".  The file is read once at open.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "gpu/gpu.h"

struct seed {
    struct tm_gpu_sample s[TM_GPU_MAX];
    size_t n;
};

/* Read an optional number field; -1 on a wrong type or out-of-range value. */
static int num(json_t *o, const char *key, double lo, double hi, double *out, unsigned bit,
               unsigned *valid, size_t idx, struct tm_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < lo ||
        json_number_value(v) > hi) {
        tm_error_set(err, TM_ERR_PARSE, 0, "gpu_seed entry %zu: \"%s\" must be a number in %g..%g",
                     idx, key, lo, hi);
        return -1;
    }
    *out = json_number_value(v);
    *valid |= bit;
    return 0;
}

static void str(json_t *o, const char *key, char *dst, size_t size, unsigned bit, unsigned *valid)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v)) {
        snprintf(dst, size, "%s", json_string_value(v));
        *valid |= bit;
    }
}

int tm_gpu_seed_parse(const char *buf, size_t len, const char *host, struct tm_gpu_sample *out,
                      size_t max, struct tm_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        tm_error_set(err, TM_ERR_PARSE, 0, "gpu_seed: invalid JSON at line %d: %s", je.line,
                     je.text);
        return -1;
    }
    int n = -1;
    if (!json_is_array(root) || json_array_size(root) == 0) {
        tm_error_set(err, TM_ERR_PARSE, 0, "gpu_seed: expected a non-empty JSON array of GPUs");
        goto out;
    }
    size_t i;
    json_t *o;
    json_array_foreach(root, i, o)
    {
        if (i >= max)
            break;
        struct tm_gpu_sample *s = &out[i];
        memset(s, 0, sizeof(*s));
        if (!json_is_object(o)) {
            tm_error_set(err, TM_ERR_PARSE, 0, "gpu_seed entry %zu: expected an object", i);
            goto out;
        }
        json_t *gi = json_object_get(o, "gpu_index");
        if (!json_is_integer(gi) || json_integer_value(gi) < 0 ||
            json_integer_value(gi) > 65535) {
            tm_error_set(err, TM_ERR_PARSE, 0,
                         "gpu_seed entry %zu: \"gpu_index\" must be an integer >= 0", i);
            goto out;
        }
        s->gpu_index = (int)json_integer_value(gi);
        snprintf(s->host, sizeof(s->host), "%s", host);
        unsigned dummy = 0;
        str(o, "host", s->host, sizeof(s->host), 0, &dummy);
        str(o, "name", s->name, sizeof(s->name), TM_GPU_NAME, &s->valid);
        str(o, "uuid", s->uuid, sizeof(s->uuid), TM_GPU_UUID, &s->valid);
        if (num(o, "utilization", 0, 1, &s->utilization, TM_GPU_UTIL, &s->valid, i, err) ||
            num(o, "mem_used_mb", 0, 1e9, &s->mem_used_mb, TM_GPU_MEM_USED, &s->valid, i, err) ||
            num(o, "mem_total_mb", 0, 1e9, &s->mem_total_mb, TM_GPU_MEM_TOTAL, &s->valid, i,
                err) ||
            num(o, "power_w", 0, 1e5, &s->power_w, TM_GPU_POWER, &s->valid, i, err) ||
            num(o, "temperature_c", -100, 300, &s->temperature_c, TM_GPU_TEMP, &s->valid, i,
                err) ||
            num(o, "price_per_hour_usd", 0, 1e6, &s->price_per_hour_usd, TM_GPU_PRICE, &s->valid,
                i, err))
            goto out;
    }
    n = (int)(json_array_size(root) < max ? json_array_size(root) : max);
out:
    json_decref(root);
    return n;
}

static int seed_open(void **priv, const struct tm_gpu_open_args *args, struct tm_error *err)
{
    const char *seed_path = args->seed_path, *host = args->host;
    if (!seed_path || !*seed_path) {
        tm_error_set(err, TM_ERR_GPU, TM_GPU_ERR_ABSENT, "no GPU_SEED file configured");
        return -1;
    }
    FILE *f = fopen(seed_path, "rb");
    if (!f) {
        tm_error_errno(err, "GPU_SEED %s", seed_path);
        if (err && err->code == ENOENT)
            err->code = TM_GPU_ERR_ABSENT;
        if (err)
            err->domain = TM_ERR_GPU;
        return -1;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0, r;
    char chunk[4096];
    while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + r > cap) {
            cap = (len + r) * 2;
            buf = tm_xrealloc(buf, cap);
        }
        memcpy(buf + len, chunk, r);
        len += r;
    }
    fclose(f);
    struct seed *s = tm_xcalloc(1, sizeof(*s));
    struct tm_error e;
    int n = tm_gpu_seed_parse(buf ? buf : "", len, host, s->s, TM_GPU_MAX, &e);
    free(buf);
    if (n < 0) {
        tm_error_set(err, TM_ERR_GPU, 0, "GPU_SEED %s: %s", seed_path, e.msg);
        free(s);
        return -1;
    }
    s->n = (size_t)n;
    /* The shared example lists gpu_index 0 twice: allowed, but the price a
     * window is billed at must not be a silent guess. */
    for (size_t i = 0; i < s->n; i++)
        for (size_t j = i + 1; j < s->n; j++)
            if (s->s[i].gpu_index == s->s[j].gpu_index && strcmp(s->s[i].host, s->s[j].host) == 0)
                tm_warn("gpu", "GPU_SEED %s: entries %zu and %zu are both %s GPU %d: the later "
                               "one's values and price win",
                        seed_path, i, j, s->s[i].host, s->s[i].gpu_index);
    *priv = s;
    return 0;
}

static int seed_poll(void *priv, struct tm_gpu_poll *out, struct tm_error *err)
{
    (void)err;
    struct seed *s = priv;
    out->n = s->n;
    memcpy(out->samples, s->s, s->n * sizeof(*out->samples));
    return 0;
}

static void seed_close(void *priv)
{
    free(priv);
}

const struct tm_gpu_source_ops tm_gpu_seed_ops = {
    .abi = 1,
    .name = "seed",
    .open = seed_open,
    .poll = seed_poll,
    .close = seed_close,
};
