/*
 * cmd_report.c - `tokenmeter report`: read token_usage back and print, per
 * host / GPU / model, requests, prompt and completion tokens, tokens/s, USD
 * and USD per 1M tokens (or --json).
 *
 * USD is the sum of the windows' cost_usd (DESIGN 3.3): GPU time that served
 * tokens.  Idle time is shown too, never hidden: a GPU's idle hours are the
 * gaps between its first window's start and its last window's end that have
 * no window (no request ended there), priced like its windows, and the last
 * column is USD per 1M tokens with that idle time paid as well.  A model's
 * share of its GPU's USD is its share of the GPU's tokens.
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
    double busy_s, cost_usd, price;
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
    g->cost_usd += iter_double(d, "cost_usd");
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

/* USD per 1M tokens as a table cell: "-" without tokens. */
static void per_1m(char *buf, size_t size, double usd, int64_t tokens)
{
    if (tokens > 0)
        snprintf(buf, size, "%.4f", usd / (double)tokens * 1e6);
    else
        snprintf(buf, size, "-");
}

struct row {
    const char *host, *model;
    int gpu_index;
    int64_t requests, prompt, completion;
    double tps, gpu_hours, usd, idle_hours, idle_usd;
};

static void print_row(const struct row *r, bool gpu_col)
{
    char gpu[16] = "", p1[32], p2[32];
    if (gpu_col)
        snprintf(gpu, sizeof(gpu), "%d", r->gpu_index);
    per_1m(p1, sizeof(p1), r->usd, r->prompt + r->completion);
    per_1m(p2, sizeof(p2), r->usd + r->idle_usd, r->prompt + r->completion);
    printf("%-16.16s %4s %-20.20s %9lld %12lld %12lld %9.2f %8.3f %10.4f %11s %8.3f %12s\n",
           r->host, gpu, r->model, (long long)r->requests, (long long)r->prompt,
           (long long)r->completion, r->tps, r->gpu_hours, r->usd, p1, r->idle_hours, p2);
}

static json_t *row_json(const struct row *r)
{
    int64_t t = r->prompt + r->completion;
    json_t *o = json_object();
    if (r->gpu_index >= 0) {
        json_object_set_new(o, "host", json_string(r->host));
        json_object_set_new(o, "gpu_index", json_integer(r->gpu_index));
        json_object_set_new(o, "model", json_string(r->model));
    }
    json_object_set_new(o, "requests", json_integer(r->requests));
    json_object_set_new(o, "prompt_tokens", json_integer(r->prompt));
    json_object_set_new(o, "completion_tokens", json_integer(r->completion));
    json_object_set_new(o, "tokens", json_integer(t));
    json_object_set_new(o, "tps", json_real(r->tps));
    json_object_set_new(o, "gpu_hours", json_real(r->gpu_hours));
    json_object_set_new(o, "usd", json_real(r->usd));
    json_object_set_new(o, "usd_per_1m_tokens",
                        num_or_null(t > 0, t > 0 ? r->usd / (double)t * 1e6 : 0));
    json_object_set_new(o, "idle_gpu_hours", json_real(r->idle_hours));
    json_object_set_new(o, "idle_usd", json_real(r->idle_usd));
    json_object_set_new(o, "usd_per_1m_tokens_with_idle",
                        num_or_null(t > 0, t > 0 ? (r->usd + r->idle_usd) / (double)t * 1e6 : 0));
    return o;
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
        tm_config_parse_args(&cfg, argc, argv, extra, NULL, NULL, &err) < 0 ||
        tm_config_no_operands(argc, argv, &err) < 0) {
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

    struct row tot = {.host = "TOTAL", .model = "", .gpu_index = -1};
    int64_t t_first = 0, t_last = 0;
    json_t *rows = json_array();
    if (!json_out)
        printf("%-16s %4s %-20s %9s %12s %12s %9s %8s %10s %11s %8s %12s\n", "host", "gpu",
               "model", "requests", "prompt_tok", "complet_tok", "tokens/s", "GPU-h", "USD",
               "USD/1M tok", "idle GPU-h", "USD/1M +idle");
    for (size_t i = 0; i < a.ngpus; i++) {
        struct gpu_row *g = &a.gpus[i];
        double span_s = (double)(g->last_end_ms - g->first_start_ms) / 1000.0;
        double idle_s = span_s > g->busy_s ? span_s - g->busy_s : 0;
        double idle_usd = g->price / 3600.0 * idle_s;
        int64_t tokens = g->prompt + g->completion;
        for (size_t k = 0; k < g->nmodels; k++) {
            struct model_row *m = &g->models[k];
            int64_t mt = m->prompt + m->completion;
            double share = tokens > 0 ? (double)mt / (double)tokens : 1.0 / (double)g->nmodels;
            struct row r = {
                .host = g->host, .model = m->model, .gpu_index = g->gpu_index,
                .requests = m->requests, .prompt = m->prompt, .completion = m->completion,
                .tps = g->busy_s > 0 ? (double)mt / g->busy_s : 0,
                .gpu_hours = g->busy_s / 3600.0 * share, .usd = g->cost_usd * share,
                .idle_hours = idle_s / 3600.0 * share, .idle_usd = idle_usd * share,
            };
            if (json_out)
                json_array_append_new(rows, row_json(&r));
            else
                print_row(&r, true);
        }
        tot.requests += g->requests;
        tot.prompt += g->prompt;
        tot.completion += g->completion;
        if (i == 0 || g->first_start_ms < t_first)
            t_first = g->first_start_ms;
        if (i == 0 || g->last_end_ms > t_last)
            t_last = g->last_end_ms;
        tot.gpu_hours += g->busy_s / 3600.0;
        tot.usd += g->cost_usd;
        tot.idle_hours += idle_s / 3600.0;
        tot.idle_usd += idle_usd;
    }
    /* The fleet's throughput: all tokens over the whole period. */
    tot.tps = t_last > t_first ? (double)(tot.prompt + tot.completion) /
                                     ((double)(t_last - t_first) / 1000.0)
                               : 0;
    if (json_out) {
        json_t *o = json_object();
        json_object_set_new(o, "rows", rows);
        json_object_set_new(o, "total", row_json(&tot));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
        puts(s);
        free(s);
        json_decref(o);
    } else {
        json_decref(rows);
        print_row(&tot, false);
        printf("tokens/s: per row over its GPU's metered windows; TOTAL over the whole period "
               "(first window start to last window end).\n"
               "USD: the windows' cost_usd (GPU time that served requests); idle GPU-h: gaps "
               "without requests between a GPU's first and last window.\n");
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
