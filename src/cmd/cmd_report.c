/*
 * cmd_report.c - `tokenmeter report`: read token_usage back and print, per
 * host / GPU / model, requests, prompt and completion tokens, tokens/s, USD
 * and USD per 1M tokens (or --json).
 *
 * GPU time is counted honestly: a GPU is paid from the start of its first
 * window to the end of its last one, idle windows (no document) included, at
 * the price of its windows.  A model's share of its GPU's USD is its share of
 * the GPU's tokens.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/log.h"
#include "common/mem.h"
#include "config/config.h"
#include "store/store.h"

struct model_row {
    char *model;
    int64_t requests, prompt, completion;
};

struct gpu_row {
    char *host;
    int gpu_index;
    int64_t first_start_ms, last_end_ms;
    double busy_s, price;
    int64_t requests, prompt, completion;
    struct model_row *models;
    size_t nmodels;
};

struct acc {
    struct gpu_row *gpus;
    size_t ngpus;
};

static int64_t iter_i64(const bson_t *d, const char *path)
{
    bson_iter_t it;
    if (bson_iter_init(&it, d) && bson_iter_find_descendant(&it, path, &it)) {
        if (BSON_ITER_HOLDS_DATE_TIME(&it))
            return bson_iter_date_time(&it);
        return bson_iter_as_int64(&it);
    }
    return 0;
}

static double iter_double(const bson_t *d, const char *path)
{
    bson_iter_t it;
    if (bson_iter_init(&it, d) && bson_iter_find_descendant(&it, path, &it) &&
        BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_double(&it);
    return 0;
}

static int on_doc(void *ctx, const bson_t *d)
{
    struct acc *a = ctx;
    bson_iter_t it;
    const char *host = "?";
    if (bson_iter_init_find(&it, d, "host") && BSON_ITER_HOLDS_UTF8(&it))
        host = bson_iter_utf8(&it, NULL);
    int gpu = (int)iter_i64(d, "gpu_index");
    struct gpu_row *g = NULL;
    for (size_t i = 0; i < a->ngpus && !g; i++)
        if (a->gpus[i].gpu_index == gpu && strcmp(a->gpus[i].host, host) == 0)
            g = &a->gpus[i];
    int64_t start = iter_i64(d, "window_start"), end = iter_i64(d, "window_end");
    if (!g) {
        a->gpus = tm_xrealloc(a->gpus, (a->ngpus + 1) * sizeof(*a->gpus));
        g = &a->gpus[a->ngpus++];
        memset(g, 0, sizeof(*g));
        g->host = tm_xstrdup(host);
        g->gpu_index = gpu;
        g->first_start_ms = start;
        g->last_end_ms = end;
    }
    if (start < g->first_start_ms)
        g->first_start_ms = start;
    if (end > g->last_end_ms)
        g->last_end_ms = end;
    g->busy_s += iter_double(d, "window_s");
    g->price = iter_double(d, "price_per_hour_usd");
    g->requests += iter_i64(d, "requests");
    g->prompt += iter_i64(d, "prompt_tokens");
    g->completion += iter_i64(d, "completion_tokens");

    bson_iter_t arr, m;
    if (bson_iter_init_find(&it, d, "models") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &arr))
        while (bson_iter_next(&arr)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &m))
                continue;
            const char *name = "?";
            int64_t req = 0, pt = 0, ct = 0;
            while (bson_iter_next(&m)) {
                const char *k = bson_iter_key(&m);
                if (strcmp(k, "model") == 0 && BSON_ITER_HOLDS_UTF8(&m))
                    name = bson_iter_utf8(&m, NULL);
                else if (strcmp(k, "requests") == 0)
                    req = bson_iter_as_int64(&m);
                else if (strcmp(k, "prompt_tokens") == 0)
                    pt = bson_iter_as_int64(&m);
                else if (strcmp(k, "completion_tokens") == 0)
                    ct = bson_iter_as_int64(&m);
            }
            struct model_row *r = NULL;
            for (size_t i = 0; i < g->nmodels && !r; i++)
                if (strcmp(g->models[i].model, name) == 0)
                    r = &g->models[i];
            if (!r) {
                g->models = tm_xrealloc(g->models, (g->nmodels + 1) * sizeof(*g->models));
                r = &g->models[g->nmodels++];
                memset(r, 0, sizeof(*r));
                r->model = tm_xstrdup(name);
            }
            r->requests += req;
            r->prompt += pt;
            r->completion += ct;
        }
    return 0;
}

static int cmp_gpu(const void *x, const void *y)
{
    const struct gpu_row *a = x, *b = y;
    int c = strcmp(a->host, b->host);
    return c ? c : a->gpu_index - b->gpu_index;
}

static json_t *num_or_null(bool has, double v)
{
    return has ? json_real(v) : json_null();
}

static void print_usd_per_1m(FILE *out, double usd, int64_t tokens)
{
    if (tokens > 0)
        fprintf(out, " %14.4f\n", usd / (double)tokens * 1e6);
    else
        fprintf(out, " %14s\n", "-");
}

int tm_cmd_report(int argc, char **argv)
{
    struct tm_config cfg;
    struct tm_error err;
    int json_out = 0;
    static const struct option extra[] = {{"json", no_argument, NULL, 'j'},
                                          {"help", no_argument, NULL, 'h'},
                                          {0, 0, 0, 0}};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json_out = 1;
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: tokenmeter report [--json] [--mongodb-uri URI]\n\n"
                   "Per host, GPU and model: requests, prompt and completion tokens, tokens/s,\n"
                   "USD and USD per 1M tokens, from token_usage.  A GPU's time runs from its\n"
                   "first window's start to its last window's end, idle windows included.\n");
            return TM_EXIT_OK;
        }
    }
    if (tm_config_init(&cfg, &err) < 0 ||
        tm_config_parse_args(&cfg, argc, argv, extra, NULL, NULL, &err) < 0) {
        fprintf(stderr, "tokenmeter report: %s\n", err.msg);
        tm_config_free(&cfg);
        return TM_EXIT_USAGE;
    }
    int rc = TM_EXIT_OK;
    struct acc a = {0};
    struct tm_store *st = tm_store_open(cfg.mongodb_uri, &err);
    if (!st) {
        fprintf(stderr, "tokenmeter report: %s\n", err.msg);
        tm_config_free(&cfg);
        return TM_EXIT_USAGE;
    }
    bson_t filter = BSON_INITIALIZER;
    if (tm_store_each(st, "token_usage", &filter, NULL, on_doc, &a, &err) < 0) {
        fprintf(stderr, "tokenmeter report: cannot read token_usage: %s\n", err.msg);
        rc = TM_EXIT_UNAVAILABLE;
        goto out;
    }
    qsort(a.gpus, a.ngpus, sizeof(*a.gpus), cmp_gpu);

    int64_t t_req = 0, t_p = 0, t_c = 0;
    double t_usd = 0, t_tps = 0, t_hours = 0;
    json_t *rows = json_array();
    if (!json_out)
        printf("%-16s %4s %-22s %9s %14s %14s %10s %8s %11s %14s\n", "host", "gpu", "model",
               "requests", "prompt_tok", "completion_tok", "tokens/s", "GPU-h", "USD",
               "USD/1M tok");
    for (size_t i = 0; i < a.ngpus; i++) {
        struct gpu_row *g = &a.gpus[i];
        double span_s = (double)(g->last_end_ms - g->first_start_ms) / 1000.0;
        double usd = g->price / 3600.0 * span_s;
        int64_t tokens = g->prompt + g->completion;
        t_req += g->requests;
        t_p += g->prompt;
        t_c += g->completion;
        t_usd += usd;
        t_hours += span_s / 3600.0;
        t_tps += span_s > 0 ? (double)tokens / span_s : 0;
        for (size_t k = 0; k < g->nmodels; k++) {
            struct model_row *m = &g->models[k];
            int64_t mt = m->prompt + m->completion;
            double share = tokens > 0 ? usd * (double)mt / (double)tokens
                                      : usd / (double)g->nmodels;
            double tps = span_s > 0 ? (double)mt / span_s : 0;
            if (json_out) {
                json_t *r = json_object();
                json_object_set_new(r, "host", json_string(g->host));
                json_object_set_new(r, "gpu_index", json_integer(g->gpu_index));
                json_object_set_new(r, "model", json_string(m->model));
                json_object_set_new(r, "requests", json_integer(m->requests));
                json_object_set_new(r, "prompt_tokens", json_integer(m->prompt));
                json_object_set_new(r, "completion_tokens", json_integer(m->completion));
                json_object_set_new(r, "tokens", json_integer(mt));
                json_object_set_new(r, "tps", json_real(tps));
                json_object_set_new(r, "gpu_hours", json_real(span_s / 3600.0));
                json_object_set_new(r, "busy_fraction", num_or_null(span_s > 0, g->busy_s / span_s));
                json_object_set_new(r, "usd", json_real(share));
                json_object_set_new(r, "usd_per_1m_tokens",
                                    num_or_null(mt > 0, mt > 0 ? share / (double)mt * 1e6 : 0));
                json_array_append_new(rows, r);
            } else {
                printf("%-16.16s %4d %-22.22s %9lld %14lld %14lld %10.2f %8.3f %11.4f", g->host,
                       g->gpu_index, m->model, (long long)m->requests, (long long)m->prompt,
                       (long long)m->completion, tps, span_s / 3600.0, share);
                print_usd_per_1m(stdout, share, mt);
            }
        }
    }
    if (json_out) {
        json_t *o = json_object(), *tot = json_object();
        json_object_set_new(tot, "requests", json_integer(t_req));
        json_object_set_new(tot, "prompt_tokens", json_integer(t_p));
        json_object_set_new(tot, "completion_tokens", json_integer(t_c));
        json_object_set_new(tot, "tokens", json_integer(t_p + t_c));
        json_object_set_new(tot, "tps", json_real(t_tps));
        json_object_set_new(tot, "gpu_hours", json_real(t_hours));
        json_object_set_new(tot, "usd", json_real(t_usd));
        json_object_set_new(tot, "usd_per_1m_tokens",
                            num_or_null(t_p + t_c > 0, t_usd / (double)(t_p + t_c) * 1e6));
        json_object_set_new(o, "rows", rows);
        json_object_set_new(o, "total", tot);
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
        puts(s);
        free(s);
        json_decref(o);
    } else {
        json_decref(rows);
        printf("%-16s %4s %-22s %9lld %14lld %14lld %10.2f %8.3f %11.4f", "TOTAL", "", "",
               (long long)t_req, (long long)t_p, (long long)t_c, t_tps, t_hours, t_usd);
        print_usd_per_1m(stdout, t_usd, t_p + t_c);
    }

out:
    bson_destroy(&filter);
    for (size_t i = 0; i < a.ngpus; i++) {
        for (size_t k = 0; k < a.gpus[i].nmodels; k++)
            free(a.gpus[i].models[k].model);
        free(a.gpus[i].models);
        free(a.gpus[i].host);
    }
    free(a.gpus);
    tm_store_close(st);
    tm_config_free(&cfg);
    return rc;
}
