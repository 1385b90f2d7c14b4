/*
 * cmd_gpu.c - `tokenmeter gpu`: poll the configured GPU source once and print
 * the samples as a table (a small nvidia-smi over whichever source is live),
 * or as JSON with --json.  Unknown values print as "-" (null in JSON).
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/mem.h"
#include "common/timeutil.h"
#include "config/config.h"
#include "gpu/gpu.h"

static void cell(char *buf, size_t size, bool has, const char *fmt, double v)
{
    if (has)
        snprintf(buf, size, fmt, v);
    else
        snprintf(buf, size, "-");
}

int tm_cmd_gpu(int argc, char **argv)
{
    struct tm_config cfg;
    struct tm_error err;
    bool json_out = false;
    static const struct option extra[] = {{"json", no_argument, NULL, 'j'},
                                          {"help", no_argument, NULL, 'h'},
                                          {0, 0, 0, 0}};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json_out = true;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: tokenmeter gpu [--json] [--gpu-metrics-source S] [--gpu-seed F]\n\n"
                   "Read the GPUs once through GPU_METRICS_SOURCE (auto: NVML, then\n"
                   "nvidia-smi, then the seed file) and print them.  Memory in MiB,\n"
                   "power in W, utilization in %% (a fraction in --json).\n");
            return TM_EXIT_OK;
        }
    }
    if (tm_config_init(&cfg, &err) < 0 ||
        tm_config_parse_args(&cfg, argc, argv, extra, NULL, NULL, &err) < 0 ||
        tm_config_no_operands(argc, argv, &err) < 0) {
        fprintf(stderr, "tokenmeter gpu: %s\n", err.msg);
        tm_config_free(&cfg);
        return TM_EXIT_USAGE;
    }
    const struct tm_gpu_open_args args = {cfg.gpu_seed, cfg.host_name, 5000};
    struct tm_gpu_source *src = tm_gpu_source_open(cfg.gpu_source, &args, &err);
    if (!src) {
        fprintf(stderr, "tokenmeter gpu: no GPU source works: %s\n", err.msg);
        tm_config_free(&cfg);
        return TM_EXIT_UNAVAILABLE;
    }
    struct tm_gpu_poll *poll = tm_xcalloc(1, sizeof(*poll));
    int rc = TM_EXIT_OK;
    if (tm_gpu_source_poll(src, poll, &err) < 0) {
        fprintf(stderr, "tokenmeter gpu: %s: %s\n", tm_gpu_source_name(src), err.msg);
        rc = TM_EXIT_UNAVAILABLE;
        goto out;
    }
    int64_t now = tm_now_ms();
    if (json_out) {
        json_t *o = json_object(), *arr = json_array(), *errs = json_array();
        json_object_set_new(o, "source", json_string(tm_gpu_source_name(src)));
        for (size_t i = 0; i < poll->n; i++)
            json_array_append_new(arr, tm_gpu_sample_json(&poll->samples[i], now));
        for (size_t i = 0; i < poll->nerr; i++)
            json_array_append_new(errs, tm_gpu_error_json(&poll->errors[i]));
        json_object_set_new(o, "gpus", arr);
        json_object_set_new(o, "errors", errs);
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
        puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("source: %s\n", tm_gpu_source_name(src));
        printf("%-16s %4s %-28s %6s %19s %9s %6s %9s\n", "host", "gpu", "name", "util%",
               "memory MiB", "power W", "temp C", "USD/h");
        for (size_t i = 0; i < poll->n; i++) {
            const struct tm_gpu_sample *s = &poll->samples[i];
            char util[16], used[16], total[16], mem[40], pw[16], temp[16], price[16];
            cell(util, sizeof(util), s->valid & TM_GPU_UTIL, "%.0f", s->utilization * 100);
            cell(used, sizeof(used), s->valid & TM_GPU_MEM_USED, "%.0f", s->mem_used_mb);
            cell(total, sizeof(total), s->valid & TM_GPU_MEM_TOTAL, "%.0f", s->mem_total_mb);
            snprintf(mem, sizeof(mem), "%s / %s", used, total);
            cell(pw, sizeof(pw), s->valid & TM_GPU_POWER, "%.2f", s->power_w);
            cell(temp, sizeof(temp), s->valid & TM_GPU_TEMP, "%.0f", s->temperature_c);
            cell(price, sizeof(price), s->valid & TM_GPU_PRICE, "%.4f", s->price_per_hour_usd);
            printf("%-16.16s %4d %-28.28s %6s %19s %9s %6s %9s\n", s->host, s->gpu_index,
                   s->valid & TM_GPU_NAME ? s->name : "-", util, mem, pw, temp, price);
        }
        for (size_t i = 0; i < poll->nerr; i++) {
            const struct tm_gpu_error *e = &poll->errors[i];
            printf("error: GPU %d %s %s\n", e->gpu_index, e->bus_id, e->msg);
        }
    }
    if (poll->nerr > 0)
        rc = TM_EXIT_FAILURE;
out:
    free(poll);
    tm_gpu_source_close(src);
    tm_config_free(&cfg);
    return rc;
}
