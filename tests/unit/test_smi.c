/*
 * test_smi.c - the nvidia-smi source: the pure CSV parser on every real
 * capture in $TM_SHARED/data/nvidia-smi (values read from the files by hand),
 * its edge cases, and the real backend (tm_gpu_smi_ops through
 * tm_gpu_source_open) running tests/fake/nvidia-smi from PATH for CASE-01,
 * -02, -03, -04, -07, -08 of shared/cases and the deadline.
 *
 * Run from the repository root (the Makefile does): PATH gets
 * $PWD/tests/fake in front.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "gpu/gpu.h"
#include "gpu/gpu_smi_parse.h"

#define NUL_ NAN /* an expected null */

/* One expected GPU: NULL strings and NUL_ numbers must be null. */
struct want {
    int index;
    const char *name, *uuid;
    double util, used, total, power, temp; /* fraction, MiB, MiB, W, degrees C */
};

static void assert_close(double got, double want)
{
    double tol = 1e-9 * fmax(fabs(want), 1e-300);
    if (fabs(got - want) > tol)
        fail_msg("got %.17g, want %.17g", got, want);
}

static void check_num(const char *ctx, const char *what, const struct tm_gpu_sample *s,
                      unsigned bit, double got, double want)
{
    if (isnan(want)) {
        if (s->valid & bit)
            fail_msg("%s: %s should be null, got %g", ctx, what, got);
        return;
    }
    if (!(s->valid & bit))
        fail_msg("%s: %s is null, want %g", ctx, what, want);
    if (fabs(got - want) > 1e-9 * fmax(fabs(want), 1e-300))
        fail_msg("%s: %s = %.17g, want %.17g", ctx, what, got, want);
}

static void check_str(const char *ctx, const char *what, const struct tm_gpu_sample *s,
                      unsigned bit, const char *got, const char *want)
{
    if (!want) {
        if (s->valid & bit)
            fail_msg("%s: %s should be null, got \"%s\"", ctx, what, got);
    } else if (!(s->valid & bit) || strcmp(got, want) != 0) {
        fail_msg("%s: %s = \"%s\"%s, want \"%s\"", ctx, what, got,
                 s->valid & bit ? "" : " (null)", want);
    }
}

static void check_gpu(const char *ctx, const struct tm_gpu_sample *s, const struct want *w)
{
    if (s->gpu_index != w->index)
        fail_msg("%s: gpu_index %d, want %d", ctx, s->gpu_index, w->index);
    check_str(ctx, "name", s, TM_GPU_NAME, s->name, w->name);
    check_str(ctx, "uuid", s, TM_GPU_UUID, s->uuid, w->uuid);
    check_num(ctx, "utilization", s, TM_GPU_UTIL, s->utilization, w->util);
    check_num(ctx, "mem_used_mb", s, TM_GPU_MEM_USED, s->mem_used_mb, w->used);
    check_num(ctx, "mem_total_mb", s, TM_GPU_MEM_TOTAL, s->mem_total_mb, w->total);
    check_num(ctx, "power_w", s, TM_GPU_POWER, s->power_w, w->power);
    check_num(ctx, "temperature_c", s, TM_GPU_TEMP, s->temperature_c, w->temp);
    if (s->valid & ~(unsigned)(TM_GPU_NAME | TM_GPU_UUID | TM_GPU_UTIL | TM_GPU_MEM_USED |
                               TM_GPU_MEM_TOTAL | TM_GPU_POWER | TM_GPU_TEMP))
        fail_msg("%s: unexpected valid bits 0x%x", ctx, s->valid);
}

static struct tm_gpu_poll *new_poll(void)
{
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    return p;
}

/* Parse a C string (without its NUL, from an exactly-sized heap copy so
 * ASan sees any read past len). */
static int parse_str(const char *text, struct tm_gpu_poll *out, struct tm_smi_why *why,
                     struct tm_error *err)
{
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    int rc = tm_smi_parse_why(copy, len, "node-1", out, why, err);
    free(copy);
    return rc;
}

/* ================================================= every real CSV capture */

#define SUPER "NVIDIA GeForce RTX 2080 SUPER"
#define SUPER_UUID_2021 "GPU-df6e7a7c-7314-46f8-abc4-b88b36dcf3aa"
#define MASKED_UUID "GPU-00000000-0000-0000-0000-000000000000"

/* The RTX A5000 time series: utilization %, memory.used, memory.total (MiB),
 * temperature, row by row (77 rows of GPU 0, no power column). */
static const int a5000[][4] = {
    {4, 1747, 24564, 48},  {7, 1747, 24564, 48},  {4, 1747, 24564, 48},  {7, 1747, 24564, 48},
    {8, 2146, 24564, 49},  {29, 2324, 24564, 50}, {33, 2324, 24564, 51}, {31, 2324, 24564, 51},
    {33, 2324, 24564, 52}, {31, 2324, 24564, 52}, {30, 2324, 24564, 52}, {29, 2324, 24564, 52},
    {29, 2324, 24564, 53}, {31, 2324, 24564, 53}, {31, 2323, 24564, 53}, {32, 2323, 24564, 53},
    {28, 2323, 24564, 54}, {28, 2323, 24564, 54}, {31, 2323, 24564, 54}, {28, 2323, 24564, 54},
    {28, 2323, 24564, 54}, {29, 2323, 24564, 55}, {28, 2323, 24564, 54}, {33, 2323, 24564, 55},
    {31, 2323, 24564, 55}, {31, 2323, 24564, 55}, {31, 2323, 24564, 55}, {31, 2323, 24564, 55},
    {33, 2323, 24564, 56}, {32, 2323, 24564, 56}, {31, 2323, 24564, 56}, {32, 2323, 24564, 56},
    {29, 2323, 24564, 56}, {29, 2323, 24564, 57}, {31, 2323, 24564, 57}, {31, 2323, 24564, 57},
    {32, 2323, 24564, 57}, {29, 2323, 24564, 57}, {30, 2323, 24564, 57}, {31, 2323, 24564, 58},
    {32, 2323, 24564, 58}, {31, 2323, 24564, 58}, {28, 2323, 24564, 58}, {29, 2323, 24564, 58},
    {31, 2323, 24564, 58}, {9, 1743, 24564, 57},  {1, 1743, 24564, 57},  {1, 1743, 24564, 56},
    {2, 1743, 24564, 56},  {3, 1743, 24564, 56},  {3, 1743, 24564, 55},  {7, 1743, 24564, 55},
    {4, 1743, 24564, 55},  {4, 1743, 24564, 55},  {4, 1743, 24564, 55},  {7, 1743, 24564, 54},
    {4, 1743, 24564, 54},  {4, 1743, 24564, 54},  {4, 1743, 24564, 54},  {5, 1743, 24564, 54},
    {4, 1743, 24564, 54},  {4, 1743, 24564, 54},  {4, 1743, 24564, 53},  {4, 1743, 24564, 53},
    {4, 1744, 24564, 53},  {4, 1744, 24564, 53},  {4, 1743, 24564, 53},  {4, 1743, 24564, 53},
    {4, 1743, 24564, 53},  {4, 1743, 24564, 52},  {4, 1743, 24564, 52},  {4, 1743, 24564, 52},
    {5, 1743, 24564, 52},  {4, 1743, 24564, 52},  {4, 1743, 24564, 52},  {4, 1744, 24564, 52},
    {4, 1743, 24564, 52},
};

static const struct {
    const char *file;
    struct want gpus[3];
    size_t n; /* 0: the A5000 series above */
} captures[] = {
    /* Full --format=csv (header and units), one GeForce RTX 2080 SUPER. */
    {"geforce-rtx-2080-super_465.27_linux_query-gpu-csv.csv",
     {{0, SUPER, SUPER_UUID_2021, 0.00, 344, 7979, 30.37, 32}}, 1},
    {"geforce-rtx-2080-super_466.63_windows_query-gpu-csv.csv",
     {{0, SUPER, SUPER_UUID_2021, 0.00, 856, 8192, 31.12, 35}}, 1},
    {"geforce-rtx-2080-super_471.11_windows_query-gpu-csv.csv",
     {{0, SUPER, SUPER_UUID_2021, 0.02, 876, 8192, 32.70, 36}}, 1},
    {"geforce-rtx-2080-super_591.86_windows_query-gpu-csv-idle.csv",
     {{0, SUPER, MASKED_UUID, 0.00, 702, 8192, 38.92, 40}}, 1},
    {"geforce-rtx-2080-super_591.86_windows_query-gpu-csv-load.csv",
     {{0, SUPER, MASKED_UUID, 0.07, 1296, 8192, 97.43, 45}}, 1},
    {"geforce-rtx-2080-super_595.71.05_linux_query-gpu-csv-idle.csv",
     {{0, SUPER, MASKED_UUID, 0.00, 214, 8192, 39.32, 40}}, 1},
    {"geforce-rtx-2080-super_595.71.05_linux_query-gpu-csv-load.csv",
     {{0, SUPER, MASKED_UUID, 0.08, 819, 8192, 111.50, 45}}, 1},
    {"geforce-rtx-2080-super_610.57.04_linux_query-gpu-csv-idle.csv",
     {{0, SUPER, MASKED_UUID, 0.00, 211, 8192, 39.17, 33}}, 1},
    {"geforce-rtx-2080-super_610.57.04_linux_query-gpu-csv-load.csv",
     {{0, SUPER, MASKED_UUID, 0.08, 815, 8192, 98.14, 38}}, 1},
    {"geforce-rtx-2080-super_610.62_windows_query-gpu-csv-idle.csv",
     {{0, SUPER, MASKED_UUID, 0.00, 797, 8192, 39.25, 40}}, 1},
    {"geforce-rtx-2080-super_610.62_windows_query-gpu-csv-load.csv",
     {{0, SUPER, MASKED_UUID, 0.07, 1366, 8192, 97.99, 44}}, 1},
    {"geforce-rtx-4080-super_595.71.05_linux_query-gpu-csv-idle.csv",
     {{0, "NVIDIA GeForce RTX 4080 SUPER", MASKED_UUID, 0.00, 596, 16376, 26.20, 43}}, 1},
    {"geforce-rtx-4080-super_595.71.05_linux_query-gpu-csv-load.csv",
     {{0, "NVIDIA GeForce RTX 4080 SUPER", MASKED_UUID, 0.07, 1474, 16376, 84.24, 46}}, 1},
    /* MIG enabled: utilization.gpu is [N/A] -> null, never 0. */
    {"h100-80gb-hbm3-mig_590.48.01_linux_query-gpu-csv-idle.csv",
     {{0, "NVIDIA H100 80GB HBM3", MASKED_UUID, NUL_, 59, 81559, 71.15, 42}}, 1},
    {"h100-80gb-hbm3-mig_590.48.01_linux_query-gpu-csv-load.csv",
     {{0, "NVIDIA H100 80GB HBM3", MASKED_UUID, NUL_, 11125, 81559, 433.78, 53}}, 1},
    {"h100-80gb-hbm3_590.48.01_linux_query-gpu-csv-idle.csv",
     {{0, "NVIDIA H100 80GB HBM3", MASKED_UUID, 0.00, 0, 81559, 69.85, 41}}, 1},
    {"h100-80gb-hbm3_590.48.01_linux_query-gpu-csv-load.csv",
     {{0, "NVIDIA H100 80GB HBM3", MASKED_UUID, 1.00, 19818, 81559, 631.95, 59}}, 1},
    {"h200-mig_590.48.01_linux_query-gpu-csv-idle.csv",
     {{0, "NVIDIA H200", MASKED_UUID, NUL_, 55, 143771, 78.28, 28}}, 1},
    {"h200-mig_590.48.01_linux_query-gpu-csv-load.csv",
     {{0, "NVIDIA H200", MASKED_UUID, NUL_, 16959, 143771, 295.01, 36}}, 1},
    {"h200_590.48.01_linux_query-gpu-csv-idle.csv",
     {{0, "NVIDIA H200", MASKED_UUID, 0.00, 0, 143771, 77.71, 28}}, 1},
    {"h200_590.48.01_linux_query-gpu-csv-load.csv",
     {{0, "NVIDIA H200", MASKED_UUID, 1.00, 32362, 143771, 627.40, 52}}, 1},
    /* No index, name or memory.total column: row number, nulls. */
    {"multi-gpu-2x-incl-gtx-1080_unknown-driver_query-gpu-csv.csv",
     {{0, NULL, "GPU-d86c351b-8f94-33ab-3b97-accb421fef6d", 1.00, 754, NUL_, 217.24, 71},
      {1, NULL, "GPU-683c6e09-3969-31a5-b7ca-cc88252b7fce", 1.00, 641, NUL_, 208.30, 71}},
     2},
    {"multi-gpu-3x-incl-gtx-1080_unknown-driver_query-gpu-csv.csv",
     {{0, NULL, "GPU-20fe89bc-c8ef-5a9f-078e-efa3324d790b", 1.00, 754, 8119, 213.07, 73},
      {1, NULL, "GPU-68988cf6-8de9-6585-a263-d2e3ea96b75a", 1.00, 586, 4043, 187.04, 67},
      {2, NULL, "GPU-90e3dab0-b59d-8bf6-d909-d4fab8d2f29b", 1.00, 641, 8119, 206.44, 68}},
     3},
    /* A hand-written header (gpu_utilization[%], temperature[°C]) over
     * noheader,nounits rows; no uuid or power column. */
    {"rtx-a5000_unknown-driver_query-gpu-csv-noheader-nounits-timeseries.csv", {{0}}, 0},
    /* csv,nounits: units in the header only; no index, no memory.total; no
     * final newline. */
    {"tesla-p100-pcie-16gb_unknown-driver_query-gpu-csv-nounits.csv",
     {{0, "Tesla P100-PCIE-16GB", "GPU-ef1b2c9b-38d8-2090-2bd1-f567a3eb42a6", 0.00, 0, NUL_,
       28.16, 37}},
     1},
};

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n : 1); /* exactly n bytes: no NUL */
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void every_real_csv_parses(void **state)
{
    (void)state;
    const char *shared = getenv("TM_SHARED");
    if (!shared)
        fail_msg("TM_SHARED is not set (the Makefile sets it)");
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/data/nvidia-smi", shared);
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s: %s", dir, strerror(errno));
    struct tm_gpu_poll *p = new_poll();
    size_t seen = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t nl = strlen(de->d_name);
        if (nl < 4 || strcmp(de->d_name + nl - 4, ".csv") != 0)
            continue;
        size_t k = 0, ncap = sizeof(captures) / sizeof(captures[0]);
        while (k < ncap && strcmp(captures[k].file, de->d_name) != 0)
            k++;
        if (k == ncap)
            fail_msg("%s: new capture without expectations; add it to captures[]", de->d_name);
        seen++;
        char path[2048];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        size_t len;
        char *buf = read_file(path, &len);
        struct tm_error err;
        int rc = tm_smi_parse(buf, len, "node-1", p, &err);
        free(buf);
        if (rc != 0)
            fail_msg("%s: %s", de->d_name, err.msg);
        if (err.domain != TM_ERR_NONE)
            fail_msg("%s: unexpected note: %s", de->d_name, err.msg);
        assert_int_equal(p->nerr, 0);
        if (captures[k].n == 0) { /* the A5000 series */
            size_t nrows = sizeof(a5000) / sizeof(a5000[0]);
            assert_int_equal(p->n, nrows);
            for (size_t i = 0; i < nrows; i++) {
                char ctx[400];
                snprintf(ctx, sizeof(ctx), "%s row %zu", de->d_name, i + 1);
                struct want w = {0,          "NVIDIA RTX A5000", NULL, a5000[i][0] / 100.0,
                                 a5000[i][1], a5000[i][2],       NUL_, a5000[i][3]};
                check_gpu(ctx, &p->samples[i], &w);
            }
            continue;
        }
        if (p->n != captures[k].n)
            fail_msg("%s: %zu GPUs, want %zu", de->d_name, p->n, captures[k].n);
        for (size_t i = 0; i < p->n; i++) {
            char ctx[400];
            snprintf(ctx, sizeof(ctx), "%s GPU %zu", de->d_name, i);
            check_gpu(ctx, &p->samples[i], &captures[k].gpus[i]);
            assert_string_equal(p->samples[i].host, "node-1");
            assert_string_equal(p->samples[i].source, "nvidia-smi");
        }
    }
    closedir(d);
    free(p);
    if (seen != sizeof(captures) / sizeof(captures[0]))
        fail_msg("%zu captures in %s, %zu expected: one was removed or renamed", seen, dir,
                 sizeof(captures) / sizeof(captures[0]));
}

/* ====================================================== parser edge cases */

#define ROW0 "0, NVIDIA A100-SXM4-80GB, " MASKED_UUID ", 37, 10240, 81920, 215.40, 54"
static const struct want row0 = {0,     "NVIDIA A100-SXM4-80GB", MASKED_UUID, 0.37, 10240,
                                 81920, 215.40,                  54};

/* ROW0 with field @p f (0 = index ... 7 = temperature) replaced by @p v. */
static void row_with(char *buf, size_t size, int f, const char *v)
{
    const char *vals[8] = {"0",     "NVIDIA A100-SXM4-80GB", MASKED_UUID, "37", "10240",
                           "81920", "215.40",                "54"};
    vals[f] = v;
    snprintf(buf, size, "%s, %s, %s, %s, %s, %s, %s, %s\n", vals[0], vals[1], vals[2], vals[3],
             vals[4], vals[5], vals[6], vals[7]);
}

/* ROW0's expectation with field @p f null. */
static struct want want_null(int f)
{
    struct want w = row0;
    switch (f) {
    case 1: w.name = NULL; break;
    case 2: w.uuid = NULL; break;
    case 3: w.util = NUL_; break;
    case 4: w.used = NUL_; break;
    case 5: w.total = NUL_; break;
    case 6: w.power = NUL_; break;
    case 7: w.temp = NUL_; break;
    }
    return w;
}

/* CASE-01's class of fault: any placeholder in any column is null for that
 * field only, never 0, never a note, never a dropped row. */
static void placeholders_in_every_column(void **state)
{
    (void)state;
    const char *ph[] = {"[N/A]",
                        "N/A",
                        "[Not Supported]",
                        "[Unknown Error]",
                        "[Requested functionality has been deprecated]",
                        "[Function Not Found]",
                        "[GPU requires reset]",
                        "[Insufficient Permissions]"};
    struct tm_gpu_poll *p = new_poll();
    struct tm_smi_why *why = calloc(TM_GPU_MAX, sizeof(*why));
    for (int f = 1; f < 8; f++)
        for (size_t i = 0; i < sizeof(ph) / sizeof(ph[0]); i++) {
            char line[512], ctx[128];
            row_with(line, sizeof(line), f, ph[i]);
            struct tm_error err;
            snprintf(ctx, sizeof(ctx), "column %d = %s", f, ph[i]);
            assert_int_equal(parse_str(line, p, why, &err), 0);
            assert_int_equal(err.domain, TM_ERR_NONE);
            assert_int_equal(p->n, 1);
            assert_int_equal(p->nerr, 0);
            struct want w = want_null(f);
            check_gpu(ctx, &p->samples[0], &w);
            assert_string_equal(why[0].text[f - 1], ph[i]);
        }
    free(why);
    free(p);
}

/* A syntactically broken value: null plus a note naming it; the row stays. */
static void malformed_value_is_null_with_note(void **state)
{
    (void)state;
    const char *bad[] = {"12x", "", "1.2.3", "0x10", "1e3", "inf", "nan", "-", "5 GiB", "7."};
    struct tm_gpu_poll *p = new_poll();
    for (int f = 3; f < 8; f++)
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            char line[512], ctx[128];
            row_with(line, sizeof(line), f, bad[i]);
            struct tm_error err;
            snprintf(ctx, sizeof(ctx), "column %d = \"%s\"", f, bad[i]);
            assert_int_equal(parse_str(line, p, NULL, &err), 0);
            assert_int_equal(p->n, 1);
            struct want w = want_null(f);
            check_gpu(ctx, &p->samples[0], &w);
            assert_int_equal(err.domain, TM_ERR_PARSE);
            assert_int_equal(err.code, 1);
            if (!strstr(err.msg, tm_smi_field_column[f - 1]) || !strstr(err.msg, "line 1"))
                fail_msg("%s: note \"%s\" names neither column nor line", ctx, err.msg);
        }
    /* Out of range is a note too. */
    const struct {
        int f;
        const char *v;
    } range[] = {{3, "101"}, {3, "-1"}, {4, "-5"}, {5, "2000000000"}, {6, "-3.5"}, {7, "400"}};
    for (size_t i = 0; i < sizeof(range) / sizeof(range[0]); i++) {
        char line[512];
        row_with(line, sizeof(line), range[i].f, range[i].v);
        struct tm_error err;
        assert_int_equal(parse_str(line, p, NULL, &err), 0);
        struct want w = want_null(range[i].f);
        check_gpu(range[i].v, &p->samples[0], &w);
        assert_non_null(strstr(err.msg, "out of range"));
    }
    /* A broken or out-of-range index: the row is an error entry (never a GPU
     * under a guessed index), with a note; the other rows stand. */
    char line[1024];
    row_with(line, sizeof(line), 0, "1x");
    strcat(line, "1, B, GPU-1, 1, 2, 3, 4, 5\n");
    strcat(line, "[N/A], C, GPU-2, 1, 2, 3, 4, 5\n70000, D, GPU-3, 1, 2, 3, 4, 5\n");
    struct tm_error err;
    assert_int_equal(parse_str(line, p, NULL, &err), 0);
    assert_int_equal(p->n, 1);
    assert_int_equal(p->samples[0].gpu_index, 1);
    assert_string_equal(p->samples[0].name, "B");
    assert_int_equal(p->nerr, 3);
    assert_non_null(strstr(p->errors[0].msg, "1x"));
    assert_non_null(strstr(p->errors[2].msg, "70000"));
    assert_non_null(strstr(err.msg, "index"));
    /* "-0" is 0, not -0. */
    row_with(line, sizeof(line), 6, "-0");
    assert_int_equal(parse_str(line, p, NULL, &err), 0);
    assert_false(signbit(p->samples[0].power_w));
    free(p);
}

/* --format=csv (units in values), by header name, any column order. */
static void header_units_and_column_order(void **state)
{
    (void)state;
    struct tm_gpu_poll *p = new_poll();
    struct tm_error err;
    const char *full =
        "temperature.gpu, power.draw [W], memory.total [MiB], memory.used [MiB], "
        "utilization.gpu [%], uuid, name, index, pci.bus_id\n"
        "54, 215.40 W, 81920 MiB, 10240 MiB, 37 %, " MASKED_UUID
        ", NVIDIA A100-SXM4-80GB, 0, 00000000:07:00.0\n";
    assert_int_equal(parse_str(full, p, NULL, &err), 0);
    assert_int_equal(err.domain, TM_ERR_NONE);
    assert_int_equal(p->n, 1);
    check_gpu("csv", &p->samples[0], &row0);

    /* csv,nounits; gpu_name/gpu_uuid aliases; a unit the column can't have. */
    const char *nounits = "index, gpu_name, gpu_uuid, utilization.gpu [%], memory.used [MiB], "
                          "memory.total [MiB], power.draw [W], temperature.gpu\n"
                          "3, NVIDIA A100-SXM4-80GB, " MASKED_UUID ", 37, 10240 MiB, 81920 GB, "
                          "215.40, 54 C\n";
    assert_int_equal(parse_str(nounits, p, NULL, &err), 0);
    struct want w = row0;
    w.index = 3;
    w.total = NUL_;
    w.temp = NUL_;
    check_gpu("nounits", &p->samples[0], &w);
    assert_int_equal(err.code, 2);

    /* Concatenated captures: each header starts a section; rows count from
     * its header.  Header only: nothing. */
    const char *two = "uuid, power.draw [W]\nGPU-a, 1.00 W\nGPU-b, 2.00 W\n"
                      "uuid, power.draw [W]\nGPU-c, 3.00 W\n";
    assert_int_equal(parse_str(two, p, NULL, &err), 0);
    assert_int_equal(p->n, 3);
    assert_int_equal(p->samples[1].gpu_index, 1);
    assert_int_equal(p->samples[2].gpu_index, 0);
    assert_close(p->samples[2].power_w, 3.0);
    assert_int_equal(parse_str("uuid, power.draw [W]\n", p, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "header"));
    free(p);
}

/* CRLF, no final newline, no NUL after the bytes, blank lines, padding. */
static void line_ends_and_lengths(void **state)
{
    (void)state;
    struct tm_gpu_poll *p = new_poll();
    struct tm_error err;
    assert_int_equal(parse_str("\r\n" ROW0 "\r\n\r\n  \t\r\n1, X, U, 1, 2, 3, 4, 5\r\n", p, NULL,
                               &err),
                     0);
    assert_int_equal(p->n, 2);
    check_gpu("crlf", &p->samples[0], &row0);
    assert_string_equal(p->samples[1].name, "X");

    assert_int_equal(parse_str(ROW0, p, NULL, &err), 0); /* no final newline */
    check_gpu("no newline", &p->samples[0], &row0);
    assert_int_equal(parse_str("\xEF\xBB\xBF" ROW0 "\n", p, NULL, &err), 0); /* UTF-8 BOM */
    check_gpu("BOM", &p->samples[0], &row0);
    assert_int_equal(err.domain, TM_ERR_NONE);

    /* Exactly len bytes: what follows (no NUL) is not read. */
    const char text[] = ROW0 "\n9, JUNK";
    char *buf = malloc(sizeof(text) - 1);
    memcpy(buf, text, sizeof(text) - 1);
    assert_int_equal(tm_smi_parse(buf, strlen(ROW0) + 1, "node-1", p, &err), 0);
    assert_int_equal(p->n, 1);
    assert_int_equal(tm_smi_parse(buf, strlen(ROW0) - 1, "node-1", p, &err), 0);
    assert_close(p->samples[0].temperature_c, 5); /* "54" cut to "5" */
    free(buf);

    /* Nothing to parse. */
    assert_int_equal(tm_smi_parse("", 0, "node-1", p, &err), -1);
    assert_int_equal(err.domain, TM_ERR_PARSE);
    assert_int_equal(parse_str(" \r\n\n\t\n", p, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "empty"));

    /* Non-ASCII bytes never reach JSON/BSON raw. */
    assert_int_equal(parse_str("0, GPU \xc3\xa9\xff, U, 1, 2, 3, 4, 5\n", p, NULL, &err), 0);
    assert_string_equal(p->samples[0].name, "GPU ???");
    free(p);
}

/* Error sentences: entries with the bus ID; indices derived only when the
 * rows around them leave no doubt. */
static void error_lines(void **state)
{
    (void)state;
    struct tm_gpu_poll *p = new_poll();
    struct tm_error err;
    const char *text =
        "Unable to determine the device handle for GPU 00000000:04:00.0: Unknown Error\n"
        "1, B, U1, 1, 2, 3, 4, 5\n"
        "Unable to determine the device handle for GPU 0000:05:00.0: GPU is lost\n"
        "Unable to determine the device handle for GPU 00000000:06:00.0: GPU is lost\n"
        "4, E, U4, 1, 2, 3, 4, 5\n"
        "No devices were found, or something\n"
        "Unable to determine the device handle for GPU 00000000:0A:00.0: GPU is lost\n";
    assert_int_equal(parse_str(text, p, NULL, &err), 0);
    assert_int_equal(p->n, 2);
    assert_int_equal(p->nerr, 5);
    assert_int_equal(p->errors[0].gpu_index, 0);
    assert_string_equal(p->errors[0].bus_id, "00000000:04:00.0");
    assert_int_equal(p->errors[1].gpu_index, 2);
    assert_string_equal(p->errors[1].bus_id, "0000:05:00.0");
    assert_int_equal(p->errors[2].gpu_index, 3);
    assert_int_equal(p->errors[3].gpu_index, -1); /* no bus ID: not a GPU's line */
    assert_string_equal(p->errors[3].bus_id, "");
    assert_string_equal(p->errors[3].msg, "No devices were found, or something");
    assert_int_equal(p->errors[4].gpu_index, -1); /* after the last row: unknown */
    assert_string_equal(p->errors[4].bus_id, "00000000:0A:00.0");

    /* A gap that does not match the count of sentences: not derived. */
    assert_int_equal(parse_str("0, A, U0, 1, 2, 3, 4, 5\n"
                               "Unable to determine the device handle for GPU 00000000:0B:00.0\n"
                               "5, F, U5, 1, 2, 3, 4, 5\n",
                               p, NULL, &err),
                     0);
    assert_int_equal(p->errors[0].gpu_index, -1);

    /* Only error lines: still a result (the backend turns it into -1). */
    assert_int_equal(parse_str("Failed to initialize NVML: Driver/library version mismatch\n"
                               "NVML library version: 999.99\n",
                               p, NULL, &err),
                     0);
    assert_int_equal(p->n, 0);
    assert_int_equal(p->nerr, 2);
    assert_string_equal(p->errors[0].msg,
                        "Failed to initialize NVML: Driver/library version mismatch");
    free(p);
}

/* More rows than TM_GPU_MAX: the first TM_GPU_MAX, and a note. */
static void more_than_max_gpus(void **state)
{
    (void)state;
    size_t cap = (TM_GPU_MAX + 5) * 96;
    char *text = malloc(cap), *w = text;
    for (int i = 0; i < TM_GPU_MAX + 5; i++)
        w += sprintf(w, "%d, GPU %d, GPU-%d, 50, 1, 2, 3.00, 40\n", i, i, i);
    struct tm_gpu_poll *p = new_poll();
    struct tm_error err;
    assert_int_equal(tm_smi_parse(text, (size_t)(w - text), "node-1", p, &err), 0);
    assert_int_equal(p->n, TM_GPU_MAX);
    assert_int_equal(p->samples[TM_GPU_MAX - 1].gpu_index, TM_GPU_MAX - 1);
    assert_int_equal(err.code, 5);
    assert_non_null(strstr(err.msg, "dropped"));
    free(text);
    free(p);
}

/* ============================================ the backend, with fake smi */

static char tmpdir[256];
static struct tm_gpu_poll *poll_;

static const char *tmp_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    return path;
}

/* The fake prints @p text, then exits with @p status. */
static void fake_output(const char *text, int status)
{
    FILE *f = fopen(tmp_path("stdout.txt"), "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    setenv("FAKE_SMI_OUTPUT", tmp_path("stdout.txt"), 1);
    char st[16];
    snprintf(st, sizeof(st), "%d", status);
    setenv("FAKE_SMI_EXIT", st, 1);
}

static int reset_fake(void **state)
{
    (void)state;
    unsetenv("FAKE_SMI_OUTPUT");
    unsetenv("FAKE_SMI_EXIT");
    unsetenv("FAKE_SMI_SLEEP");
    unsetenv("FAKE_SMI_CHUNK");
    unsetenv("FAKE_SMI_STDERR");
    unsetenv("FAKE_SMI_ARGS_LOG");
    memset(poll_, 0, sizeof(*poll_));
    return 0;
}

static struct tm_gpu_source *open_smi(int timeout_ms, struct tm_error *err)
{
    const struct tm_gpu_open_args args = {NULL, "node-1", timeout_ms};
    return tm_gpu_source_open("nvidia-smi", &args, err);
}

static struct tm_gpu_source *open_ok(void)
{
    struct tm_error err;
    struct tm_gpu_source *src = open_smi(0, &err);
    if (!src)
        fail_msg("open nvidia-smi: %s", err.msg);
    assert_string_equal(tm_gpu_source_name(src), "nvidia-smi");
    return src;
}

static void poll_ok(struct tm_gpu_source *src)
{
    struct tm_error err;
    if (tm_gpu_source_poll(src, poll_, &err) != 0)
        fail_msg("poll: %s", err.msg);
    for (size_t i = 0; i < poll_->n; i++) {
        assert_string_equal(poll_->samples[i].source, "nvidia-smi");
        assert_string_equal(poll_->samples[i].host, "node-1");
        assert_true(poll_->samples[i].ts_ms > 0);
    }
}

#define CASE01                                                                                     \
    "0, NVIDIA A100-SXM4-80GB, GPU-00000000-0000-0000-0000-000000000000, 37, 10240, 81920, "      \
    "215.40, 54\n"                                                                                 \
    "1, Tesla K80, GPU-00000000-0000-0000-0000-000000000001, 12, 300, 11441, [N/A], 41\n"          \
    "2, NVIDIA GeForce GTX 1650, GPU-00000000-0000-0000-0000-000000000002, 5, 512, 4096, "         \
    "[Not Supported], 38\n"

static void case_01_placeholder_power(void **state)
{
    (void)state;
    fake_output(CASE01, 0);
    struct tm_gpu_source *src = open_ok();
    for (int k = 0; k < 3; k++) {
        poll_ok(src);
        assert_int_equal(poll_->n, 3);
        assert_int_equal(poll_->nerr, 0); /* unsupported is not a fault */
        const struct want w[3] = {
            {0, "NVIDIA A100-SXM4-80GB", "GPU-00000000-0000-0000-0000-000000000000", 0.37, 10240,
             81920, 215.4, 54},
            {1, "Tesla K80", "GPU-00000000-0000-0000-0000-000000000001", 0.12, 300, 11441, NUL_,
             41},
            {2, "NVIDIA GeForce GTX 1650", "GPU-00000000-0000-0000-0000-000000000002", 0.05, 512,
             4096, NUL_, 38},
        };
        for (int i = 0; i < 3; i++)
            check_gpu("CASE-01", &poll_->samples[i], &w[i]);
    }
    tm_gpu_source_close(src);
}

/* Run @p fn with stderr going to a file; return that file's contents. */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    fflush(stderr);
    int saved = dup(2);
    int fd = open(tmp_path("stderr.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t len;
    char *buf = read_file(tmp_path("stderr.txt"), &len);
    buf = realloc(buf, len + 1);
    buf[len] = '\0';
    return buf;
}

static size_t count_lines_with(const char *text, const char *a, const char *b)
{
    size_t n = 0;
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char buf[1024];
        snprintf(buf, sizeof(buf), "%.*s", (int)len, line);
        if (strstr(buf, a) && (!b || strstr(buf, b)))
            n++;
        line += len + (nl ? 1 : 0);
    }
    return n;
}

#define CASE02_GPU1                                                                                \
    "1, NVIDIA GeForce RTX 2080 Ti, GPU-00000000-0000-0000-0000-000000000001, 98, 8800, 11264, "   \
    "231.07, 60\n"

static void case02_polls(void *arg)
{
    struct tm_gpu_source *src = arg;
    const struct want gpu1 = {1,    "NVIDIA GeForce RTX 2080 Ti",
                              "GPU-00000000-0000-0000-0000-000000000001",
                              0.98, 8800, 11264, 231.07, 60};
    for (int k = 1; k <= 101; k++) {
        if (k == 101)
            fake_output("0, NVIDIA GeForce RTX 2080 Ti, GPU-00000000-0000-0000-0000-000000000000, "
                        "100, 9000, 11264, 250.00, 56\n" CASE02_GPU1,
                        0);
        poll_ok(src);
        assert_int_equal(poll_->n, 2);
        assert_int_equal(poll_->nerr, 0);
        struct want gpu0 = {0,   "NVIDIA GeForce RTX 2080 Ti",
                            "GPU-00000000-0000-0000-0000-000000000000",
                            1.0, 9000, 11264, k == 101 ? 250.0 : NUL_, 56};
        check_gpu("CASE-02 GPU 0", &poll_->samples[0], &gpu0);
        check_gpu("CASE-02 GPU 1", &poll_->samples[1], &gpu1);
    }
}

/* 100 polls with [Unknown Error] power on GPU 0, then one with 250 W: every
 * poll has both GPUs; two log lines in all (start, clear). */
static void case_02_unknown_error_logged_once(void **state)
{
    (void)state;
    fake_output("0, NVIDIA GeForce RTX 2080 Ti, GPU-00000000-0000-0000-0000-000000000000, 100, "
                "9000, 11264, [Unknown Error], 56\n" CASE02_GPU1,
                0);
    int level = tm_log_level;
    tm_log_level = TM_LOG_INFO;
    struct tm_gpu_source *src = open_ok();
    char *log = capture_stderr(case02_polls, src);
    tm_log_level = level;
    tm_gpu_source_close(src);
    size_t start = count_lines_with(log, "GPU 0 power.draw not reported", "[Unknown Error]");
    size_t clear = count_lines_with(log, "GPU 0 power.draw reported again", NULL);
    size_t all = count_lines_with(log, "nvidia-smi: GPU", NULL);
    if (start != 1 || clear != 1 || all != 2)
        fail_msg("want one start and one clear line, got %zu/%zu of %zu:\n%s", start, clear, all,
                 log);
    free(log);
}

#define CASE03A_ROWS                                                                               \
    "0, NVIDIA A100-SXM4-40GB, GPU-00000000-0000-0000-0000-000000000000, 88, 30000, 40960, "      \
    "250.12, 61\n"
#define CASE03A_ROW2                                                                               \
    "2, NVIDIA A100-SXM4-40GB, GPU-00000000-0000-0000-0000-000000000002, 90, 31000, 40960, "      \
    "255.80, 63\n"
#define CASE03_LOST                                                                                \
    "Unable to determine the device handle for GPU 00000000:0B:00.0: GPU is lost.  Reboot the "   \
    "system to recover this GPU\n"

static void check_case03a(void)
{
    assert_int_equal(poll_->n, 2);
    const struct want w0 = {0,    "NVIDIA A100-SXM4-40GB", "GPU-00000000-0000-0000-0000-000000000000",
                            0.88, 30000,                   40960,
                            250.12, 61};
    const struct want w2 = {2,    "NVIDIA A100-SXM4-40GB", "GPU-00000000-0000-0000-0000-000000000002",
                            0.90, 31000,                   40960,
                            255.8, 63};
    check_gpu("CASE-03a GPU 0", &poll_->samples[0], &w0);
    check_gpu("CASE-03a GPU 2", &poll_->samples[1], &w2);
}

/* (a) exit 15, a sentence in place of GPU 1's row: rows kept with their
 * indices, the lost GPU an error entry with its bus ID (index 1: it fills
 * the gap between 0 and 2). */
static void case_03a_lost_gpu_sentence(void **state)
{
    (void)state;
    fake_output(CASE01, 0);
    struct tm_gpu_source *src = open_ok();
    fake_output(CASE03A_ROWS CASE03_LOST CASE03A_ROW2, 15);
    poll_ok(src);
    check_case03a();
    assert_int_equal(poll_->nerr, 1);
    assert_string_equal(poll_->errors[0].bus_id, "00000000:0B:00.0");
    assert_int_equal(poll_->errors[0].gpu_index, 1);
    assert_non_null(strstr(poll_->errors[0].msg, "GPU is lost"));

    /* The same exit status with the sentence on stderr only: still an entry. */
    fake_output(CASE03A_ROWS CASE03A_ROW2, 15);
    setenv("FAKE_SMI_STDERR", "Unable to determine the device handle for GPU 00000000:0B:00.0: "
                              "GPU is lost.",
           1);
    poll_ok(src);
    check_case03a();
    assert_int_equal(poll_->nerr, 1);
    assert_non_null(strstr(poll_->errors[0].msg, "exited with status 15"));
    assert_non_null(strstr(poll_->errors[0].msg, "00000000:0B:00.0"));
    tm_gpu_source_close(src);
}

/* (b) exit 15, every GPU fails: an explicit error naming the status and the
 * bus ID, never an empty success; the entry stays in the poll's errors. */
static void case_03b_every_gpu_lost(void **state)
{
    (void)state;
    fake_output(CASE01, 0);
    struct tm_gpu_source *src = open_ok();
    fake_output("Unable to determine the device handle for GPU 00000000:04:00.0: Unknown Error\n",
                15);
    struct tm_error err;
    assert_int_equal(tm_gpu_source_poll(src, poll_, &err), -1);
    assert_int_equal(err.domain, TM_ERR_GPU);
    assert_non_null(strstr(err.msg, "exited with status 15"));
    assert_non_null(strstr(err.msg, "00000000:04:00.0: Unknown Error"));
    assert_int_equal(poll_->n, 0);
    assert_int_equal(poll_->nerr, 1);
    assert_string_equal(poll_->errors[0].bus_id, "00000000:04:00.0");
    tm_gpu_source_close(src);

    /* The same output at open: the source is unavailable, with that reason. */
    assert_null(open_smi(0, &err));
    assert_non_null(strstr(err.msg, "00000000:04:00.0"));
    assert_int_not_equal(err.code, TM_GPU_ERR_ABSENT);
}

/* CASE-04, nvidia-smi side: the mismatch text on stdout, exit 18: open fails
 * with that text, no GPU made of it; works again once nvidia-smi does. */
static void case_04_version_mismatch_open_fails(void **state)
{
    (void)state;
    fake_output("Failed to initialize NVML: Driver/library version mismatch\n"
                "NVML library version: 999.99\n",
                18);
    struct tm_error err;
    assert_null(open_smi(0, &err));
    assert_int_equal(err.domain, TM_ERR_GPU);
    assert_int_not_equal(err.code, TM_GPU_ERR_ABSENT); /* present, failing: degraded */
    assert_non_null(strstr(err.msg, "Driver/library version mismatch"));
    assert_non_null(strstr(err.msg, "status 18"));

    fake_output("0, NVIDIA A100-SXM4-80GB, GPU-00000000-0000-0000-0000-000000000000, 37, 10240, "
                "81920, 215.40, 54\n",
                0);
    struct tm_gpu_source *src = open_ok();
    poll_ok(src);
    assert_int_equal(poll_->n, 1);
    check_gpu("CASE-04 after", &poll_->samples[0], &row0);
    tm_gpu_source_close(src);
}

/* CASE-07: memory is MiB as printed (5 / 16384), utilization 0 is a real 0. */
static void case_07_memory_is_mib(void **state)
{
    (void)state;
    fake_output("0, Tesla V100-SXM2-16GB, GPU-00000000-0000-0000-0000-000000000000, 0, 5, 16384, "
                "41.00, 40\n",
                0);
    struct tm_gpu_source *src = open_ok();
    poll_ok(src);
    assert_int_equal(poll_->n, 1);
    const struct want w = {0, "Tesla V100-SXM2-16GB", MASKED_UUID, 0.0, 5, 16384, 41.0, 40};
    check_gpu("CASE-07", &poll_->samples[0], &w);
    tm_gpu_source_close(src);
}

static void write_case08(int rows)
{
    char text[4096], *w = text;
    for (int i = 0; i < rows; i++)
        w += sprintf(w,
                     "%d, NVIDIA H100 80GB HBM3, GPU-00000000-0000-0000-0000-0000000000%02d, %d, "
                     "%d, 81559, %d.00, %d\n",
                     i, i, 50 + i, 40000 + i, 300 + i, 60 + i % 5);
    fake_output(text, 0);
}

static void check_case08(int rows)
{
    assert_int_equal(poll_->n, (size_t)rows);
    assert_int_equal(poll_->nerr, 0);
    for (int i = 0; i < rows; i++) {
        char uuid[64], ctx[32];
        snprintf(uuid, sizeof(uuid), "GPU-00000000-0000-0000-0000-0000000000%02d", i);
        snprintf(ctx, sizeof(ctx), "CASE-08 GPU %d", i);
        const struct want w = {i,     "NVIDIA H100 80GB HBM3", uuid,    (50 + i) / 100.0,
                               40000 + i, 81559,               300 + i, 60 + i % 5};
        check_gpu(ctx, &poll_->samples[i], &w);
    }
}

/* CASE-08: 16 GPUs in index order, one GPU, and 16 rows in 7-byte chunks
 * with pauses (lines split mid-field): the same result. */
static void case_08_sixteen_gpus(void **state)
{
    (void)state;
    setenv("FAKE_SMI_ARGS_LOG", tmp_path("args.log"), 1);
    unlink(tmp_path("args.log"));
    write_case08(16);
    struct tm_gpu_source *src = open_ok();
    poll_ok(src);
    check_case08(16);
    const struct want w15 = {15,    "NVIDIA H100 80GB HBM3", "GPU-00000000-0000-0000-0000-000000000015",
                             0.65,  40015,                   81559,
                             315.0, 60};
    check_gpu("CASE-08 GPU 15", &poll_->samples[15], &w15);

    write_case08(1);
    poll_ok(src);
    check_case08(1);

    write_case08(16);
    setenv("FAKE_SMI_CHUNK", "7", 1);
    poll_ok(src);
    check_case08(16);
    tm_gpu_source_close(src);

    /* The query asked for, on every run (open + 3 polls). */
    size_t len;
    char *log = read_file(tmp_path("args.log"), &len);
    log = realloc(log, len + 1);
    log[len] = '\0';
    const char *q = "--query-gpu=index,name,uuid,utilization.gpu,memory.used,memory.total,"
                    "power.draw,temperature.gpu --format=csv,noheader,nounits\n";
    char want[1024];
    snprintf(want, sizeof(want), "%s%s%s%s", q, q, q, q);
    assert_string_equal(log, want);
    free(log);
}

/* Auto on the seed while nvidia-smi hangs: the hung probe is not repeated
 * at every poll (each would cost its deadline); it waits its back-off. */
static void auto_backs_off_a_hung_probe(void **state)
{
    (void)state;
    fake_output(CASE01, 0);
    setenv("FAKE_SMI_SLEEP", "10", 1);
    setenv("FAKE_SMI_ARGS_LOG", tmp_path("args.log"), 1);
    unlink(tmp_path("args.log"));
    setenv("TOKENMETER_NVML_LIB", tmp_path("no-such-libnvidia-ml.so.1"), 1);
    FILE *f = fopen(tmp_path("seed.json"), "wb");
    assert_non_null(f);
    fputs("[{\"gpu_index\":0,\"name\":\"seeded\",\"power_w\":100}]", f);
    fclose(f);
    char seed[512];
    snprintf(seed, sizeof(seed), "%s", tmp_path("seed.json"));
    const struct tm_gpu_open_args args = {seed, "node-1", 300};
    struct tm_error err;
    struct tm_gpu_source *src = tm_gpu_source_open("auto", &args, &err);
    assert_non_null(src);
    assert_string_equal(tm_gpu_source_name(src), "seed");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tm_gpu_source_poll(src, poll_, &err), 0);
        assert_int_equal(poll_->n, 1);
    }
    size_t len = 0;
    char *log = read_file(tmp_path("args.log"), &len);
    size_t runs = 0;
    for (size_t i = 0; i < len; i++)
        runs += log[i] == '\n';
    free(log);
    assert_int_equal(runs, 1); /* the probe at open, none of the three polls */
    assert_non_null(strstr(tm_gpu_source_degraded(src), "timed out"));
    tm_gpu_source_close(src);
    unsetenv("TOKENMETER_NVML_LIB");
}

/* A hung nvidia-smi: killed at the deadline, reaped, reported. */
static void smi_deadline_kills_and_reaps(void **state)
{
    (void)state;
    fake_output(CASE01, 0);
    struct tm_error err;
    struct tm_gpu_source *src = open_smi(500, &err);
    assert_non_null(src);
    setenv("FAKE_SMI_SLEEP", "10", 1);
    int64_t t0 = tm_mono_ms();
    assert_int_equal(tm_gpu_source_poll(src, poll_, &err), -1);
    int64_t took = tm_mono_ms() - t0;
    assert_string_equal(err.msg, "nvidia-smi timed out after 500 ms");
    assert_true(err.retriable);
    if (took < 450 || took > 1500)
        fail_msg("poll took %lld ms, want about 500", (long long)took);
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1); /* no child left, not even a zombie */
    assert_int_equal(errno, ECHILD);
    tm_gpu_source_close(src);

    /* The same at open. */
    t0 = tm_mono_ms();
    assert_null(open_smi(500, &err));
    assert_string_equal(err.msg, "nvidia-smi timed out after 500 ms");
    assert_true(tm_mono_ms() - t0 < 1500);
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

/* Not on PATH: unavailable, and marked absent (auto skips it quietly). */
static void smi_not_on_path(void **state)
{
    (void)state;
    char *path = strdup(getenv("PATH"));
    setenv("PATH", tmp_path("nowhere"), 1);
    struct tm_error err;
    assert_null(open_smi(0, &err));
    setenv("PATH", path, 1);
    free(path);
    assert_int_equal(err.code, TM_GPU_ERR_ABSENT);
    assert_string_equal(err.msg, "nvidia-smi not found on PATH");
}

/* ----------------------------------------------------------------- setup */

static int setup(void **state)
{
    (void)state;
    char cwd[1024], path[4096];
    if (!getcwd(cwd, sizeof(cwd)))
        return -1;
    snprintf(path, sizeof(path), "%s/tests/fake:%s", cwd, getenv("PATH") ? getenv("PATH") : "");
    setenv("PATH", path, 1);
    snprintf(tmpdir, sizeof(tmpdir), "%s/tm-smi-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    poll_ = calloc(1, sizeof(*poll_));
    return poll_ ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    const char *files[] = {"stdout.txt", "stderr.txt", "args.log"};
    for (size_t i = 0; i < 3; i++)
        unlink(tmp_path(files[i]));
    rmdir(tmpdir);
    free(poll_);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_real_csv_parses),
        cmocka_unit_test(placeholders_in_every_column),
        cmocka_unit_test(malformed_value_is_null_with_note),
        cmocka_unit_test(header_units_and_column_order),
        cmocka_unit_test(line_ends_and_lengths),
        cmocka_unit_test(error_lines),
        cmocka_unit_test(more_than_max_gpus),
        cmocka_unit_test_setup(case_01_placeholder_power, reset_fake),
        cmocka_unit_test_setup(case_02_unknown_error_logged_once, reset_fake),
        cmocka_unit_test_setup(case_03a_lost_gpu_sentence, reset_fake),
        cmocka_unit_test_setup(case_03b_every_gpu_lost, reset_fake),
        cmocka_unit_test_setup(case_04_version_mismatch_open_fails, reset_fake),
        cmocka_unit_test_setup(case_07_memory_is_mib, reset_fake),
        cmocka_unit_test_setup(case_08_sixteen_gpus, reset_fake),
        cmocka_unit_test_setup(smi_deadline_kills_and_reaps, reset_fake),
        cmocka_unit_test_setup(auto_backs_off_a_hung_probe, reset_fake),
        cmocka_unit_test_setup(smi_not_on_path, reset_fake),
    };
    return cmocka_run_group_tests_name("smi", tests, setup, teardown);
}
