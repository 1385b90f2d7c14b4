/*
 * fuzz_seed.c - libFuzzer harness for tm_gpu_seed_parse() (gpu_seed.c):
 * gpu_seed.json documents, handed over as exactly their bytes (no NUL).
 * Checks the result count and that every valid value is in its range.
 * Build and run: `make fuzz-smoke` / `make fuzz`.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu.h"

#define MAX 8 /* small, so that "more entries than room" is reached too */

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tm_gpu_sample out[MAX];
    struct tm_error err;
    int n = tm_gpu_seed_parse((const char *)data, size, "fuzz", out, MAX, &err);
    CHECK(n >= -1 && n <= MAX);
    if (n < 0)
        CHECK(strnlen(err.msg, sizeof(err.msg)) < sizeof(err.msg));
    for (int i = 0; i < n; i++) {
        const struct tm_gpu_sample *s = &out[i];
        CHECK(s->gpu_index >= 0);
        CHECK(strnlen(s->host, sizeof(s->host)) < sizeof(s->host));
        CHECK(strnlen(s->name, sizeof(s->name)) < sizeof(s->name));
        CHECK(strnlen(s->uuid, sizeof(s->uuid)) < sizeof(s->uuid));
        if (s->valid & TM_GPU_UTIL)
            CHECK(s->utilization >= 0 && s->utilization <= 1);
        if (s->valid & TM_GPU_MEM_USED)
            CHECK(s->mem_used_mb >= 0 && isfinite(s->mem_used_mb));
        if (s->valid & TM_GPU_MEM_TOTAL)
            CHECK(s->mem_total_mb >= 0 && isfinite(s->mem_total_mb));
        if (s->valid & TM_GPU_POWER)
            CHECK(s->power_w >= 0 && isfinite(s->power_w));
        if (s->valid & TM_GPU_PRICE)
            CHECK(s->price_per_hour_usd >= 0 && isfinite(s->price_per_hour_usd));
    }
    return 0;
}
