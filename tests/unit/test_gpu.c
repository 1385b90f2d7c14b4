/*
 * test_gpu.c - the seed source (DESIGN 2.3, the shared example file, CASE-07's
 * seed part) and the join of GPU samples into token windows (CASE-01's energy
 * check, the per-GPU price override), without any GPU.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cost/cost.h"
#include "gpu/gpu.h"
#include "gpu/history.h"

#define W0 INT64_C(1741507200000)

static void assert_close(double got, double want)
{
    if (fabs(got - want) > 1e-9 * fmax(fabs(want), 1e-300))
        fail_msg("got %.17g, want %.17g", got, want);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void seed_example_file(void **state)
{
    (void)state;
    const char *shared = getenv("TM_SHARED");
    if (!shared)
        fail_msg("TM_SHARED is not set (the Makefile sets it)");
    char path[4096];
    snprintf(path, sizeof(path), "%s/data/gpu_seed.example.json", shared);
    size_t len;
    char *buf = slurp(path, &len);
    struct tm_gpu_sample s[8];
    struct tm_error err;
    /* exactly len bytes: the buffer has no NUL terminator */
    assert_int_equal(tm_gpu_seed_parse(buf, len, "node-1", s, 8, &err), 2);
    free(buf);
    assert_string_equal(s[0].name, "RTX 3090");
    assert_string_equal(s[0].host, "node-1");
    assert_int_equal(s[0].gpu_index, 0);
    assert_close(s[0].utilization, 0.7);
    assert_close(s[0].mem_used_mb, 9000);
    assert_close(s[0].mem_total_mb, 24576);
    assert_close(s[0].power_w, 280);
    assert_close(s[0].price_per_hour_usd, 0.85);
    assert_false(s[0].valid & TM_GPU_TEMP); /* not in the file: null, not 0 */
    assert_false(s[0].valid & TM_GPU_UUID);
    assert_string_equal(s[1].name, "A100 40GB");
    assert_close(s[1].utilization, 0.5);
    assert_close(s[1].power_w, 210);
    assert_close(s[1].price_per_hour_usd, 3.2);
}

/* CASE-07 (seed): MiB stay MiB, W stay W; utilization 0 is a real 0. */
static void case_07_seed_units(void **state)
{
    (void)state;
    const char *j = "[{\"gpu_index\":0,\"name\":\"Tesla V100-SXM2-16GB\",\"utilization\":0,"
                    "\"mem_used_mb\":5,\"mem_total_mb\":16384,\"power_w\":41.0,"
                    "\"temperature_c\":40,\"price_per_hour_usd\":3.60}]";
    struct tm_gpu_sample s[1];
    struct tm_error err;
    assert_int_equal(tm_gpu_seed_parse(j, strlen(j), "node-1", s, 1, &err), 1);
    assert_true(s[0].valid & TM_GPU_UTIL);
    assert_close(s[0].utilization, 0);
    assert_close(s[0].mem_used_mb, 5);
    assert_close(s[0].mem_total_mb, 16384);
    assert_close(s[0].power_w, 41.0);
    assert_close(s[0].temperature_c, 40);
}

static void seed_errors(void **state)
{
    (void)state;
    struct tm_gpu_sample s[4];
    struct tm_error err;
    const char *bad[] = {"{}", "[1]", "[{\"name\":\"x\"}]", "[{\"gpu_index\":-1}]",
                         "[{\"gpu_index\":0,\"utilization\":37}]",
                         "[{\"gpu_index\":0,\"power_w\":\"215\"}]", "[", "", "[]",
                         "[{\"gpu_index\":0,\"gpu_index\":1}]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (tm_gpu_seed_parse(bad[i], strlen(bad[i]), "h", s, 4, &err) != -1)
            fail_msg("seed %s accepted", bad[i]);
    assert_non_null(strstr(err.msg, "gpu_seed"));
}

static struct tm_gpu_sample sample(int gpu, int64_t ts, bool power, double w)
{
    struct tm_gpu_sample s;
    memset(&s, 0, sizeof(s));
    snprintf(s.host, sizeof(s.host), "node-1");
    s.gpu_index = gpu;
    s.ts_ms = ts;
    s.valid = TM_GPU_UTIL | (power ? TM_GPU_POWER : 0);
    s.power_w = w;
    s.utilization = gpu == 0 ? 0.37 : 0.12;
    return s;
}

/* CASE-01 energy check: GPU 0 at 215.4 W, GPU 1 without power; 600 tokens
 * each in a 60 s window. */
static void case_01_energy_join(void **state)
{
    (void)state;
    struct tm_gpu_history *h = tm_gpu_history_new(600000);
    for (int i = 0; i < 12; i++) {
        struct tm_gpu_sample a = sample(0, W0 + i * 5000, true, 215.4);
        struct tm_gpu_sample b = sample(1, W0 + i * 5000, false, 0);
        tm_gpu_history_add(h, &a);
        tm_gpu_history_add(h, &b);
    }
    struct tm_gpu_sample outside = sample(0, W0 + 60000, true, 999); /* next window */
    tm_gpu_history_add(h, &outside);

    struct tm_gpu_window_stats st;
    struct tm_cost c;
    tm_gpu_history_window(h, "node-1", 0, W0, W0 + 60000, &st);
    assert_int_equal(st.samples, 12);
    assert_true(st.has_power);
    assert_close(st.avg_power_w, 215.4);
    assert_close(st.avg_utilization, 0.37);
    tm_cost_compute(400, 200, 60, 3.60, st.has_power, st.avg_power_w, &c);
    assert_close(c.energy_j, 12924);
    assert_close(c.joules_per_token, 21.54);
    assert_close(c.cost_per_token, 0.0001); /* cost does not depend on power */

    tm_gpu_history_window(h, "node-1", 1, W0, W0 + 60000, &st);
    assert_false(st.has_power);
    tm_cost_compute(400, 200, 60, 3.60, st.has_power, st.avg_power_w, &c);
    assert_false(c.has_energy);
    assert_false(c.has_joules_per_token);

    /* a GPU never sampled, or a window without samples: nothing known */
    tm_gpu_history_window(h, "node-1", 7, W0, W0 + 60000, &st);
    assert_int_equal(st.samples, 0);
    assert_false(st.has_price);
    tm_gpu_history_window(h, "node-1", 0, W0 - 60000, W0, &st);
    assert_false(st.has_power);
    tm_gpu_history_free(h);
}

/* CASE-04's switch from the seed to nvidia-smi inside one window: the
 * measured samples alone make the averages. */
static void measured_beats_seed(void **state)
{
    (void)state;
    struct tm_gpu_history *h = tm_gpu_history_new(600000);
    struct tm_gpu_sample a = sample(0, W0 + 5000, true, 180.5);
    a.source = "seed";
    struct tm_gpu_sample b = sample(0, W0 + 10000, true, 215.4);
    b.source = "nvidia-smi";
    tm_gpu_history_add(h, &a);
    tm_gpu_history_add(h, &b);
    struct tm_gpu_window_stats st;
    tm_gpu_history_window(h, "node-1", 0, W0, W0 + 60000, &st);
    assert_true(st.measured);
    assert_int_equal(st.samples, 1);
    assert_close(st.avg_power_w, 215.4);
    tm_gpu_history_window(h, "node-1", 0, W0, W0 + 8000, &st); /* seed only */
    assert_false(st.measured);
    assert_close(st.avg_power_w, 180.5);
    tm_gpu_history_free(h);
}

/* The seed's price_per_hour_usd is kept per GPU for the override; samples
 * older than keep_ms are dropped. */
static void price_and_retention(void **state)
{
    (void)state;
    struct tm_gpu_history *h = tm_gpu_history_new(60000);
    struct tm_gpu_sample s = sample(0, W0, true, 100);
    s.valid |= TM_GPU_PRICE;
    s.price_per_hour_usd = 3.2;
    tm_gpu_history_add(h, &s);
    struct tm_gpu_sample later = sample(0, W0 + 120000, true, 300);
    tm_gpu_history_add(h, &later);
    struct tm_gpu_window_stats st;
    tm_gpu_history_window(h, "node-1", 0, W0, W0 + 60000, &st);
    assert_int_equal(st.samples, 0); /* dropped: older than 60 s before the newest */
    assert_true(st.has_price);
    assert_close(st.price_per_hour_usd, 3.2);
    tm_gpu_history_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seed_example_file),
        cmocka_unit_test(case_07_seed_units),
        cmocka_unit_test(seed_errors),
        cmocka_unit_test(case_01_energy_join),
        cmocka_unit_test(price_and_retention),
        cmocka_unit_test(measured_beats_seed),
    };
    return cmocka_run_group_tests_name("gpu", tests, NULL, NULL);
}
