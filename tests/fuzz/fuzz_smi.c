/*
 * fuzz_smi.c - libFuzzer harness for tm_smi_parse_why() (gpu_smi_parse.c).
 *
 * The input is handed over as exactly its bytes (no NUL).  Besides ASan and
 * UBSan, it checks the parser's promises: bounded counts, NUL-terminated
 * strings, valid values in range, and the same result with and without the
 * per-field reasons.  Build and run: `make fuzz-smoke` / `make fuzz`.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu_smi_parse.h"

static struct tm_gpu_poll a, b;
static struct tm_smi_why why[TM_GPU_MAX];

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static void check_text(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    CHECK(n < size);
    for (size_t i = 0; i < n; i++)
        CHECK((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tm_error e1, e2;
    int r1 = tm_smi_parse_why((const char *)data, size, "fuzz", &a, why, &e1);
    int r2 = tm_smi_parse((const char *)data, size, "fuzz", &b, &e2);
    CHECK(r1 == r2 && (r1 == 0 || r1 == -1));
    CHECK(a.n == b.n && a.nerr == b.nerr);
    CHECK(a.n <= TM_GPU_MAX && a.nerr <= TM_GPU_MAX);
    CHECK(r1 == -1 ? (a.n == 0 && a.nerr == 0) : (a.n + a.nerr > 0));
    CHECK(e1.domain == e2.domain && strcmp(e1.msg, e2.msg) == 0);
    for (size_t i = 0; i < a.n; i++) {
        const struct tm_gpu_sample *s = &a.samples[i];
        CHECK(memcmp(s, &b.samples[i], sizeof(*s)) == 0);
        CHECK(s->gpu_index >= 0);
        check_text(s->name, sizeof(s->name));
        check_text(s->uuid, sizeof(s->uuid));
        if (s->valid & TM_GPU_UTIL)
            CHECK(s->utilization >= 0 && s->utilization <= 1);
        if (s->valid & TM_GPU_MEM_USED)
            CHECK(s->mem_used_mb >= 0 && isfinite(s->mem_used_mb));
        if (s->valid & TM_GPU_MEM_TOTAL)
            CHECK(s->mem_total_mb >= 0 && isfinite(s->mem_total_mb));
        if (s->valid & TM_GPU_POWER)
            CHECK(s->power_w >= 0 && isfinite(s->power_w));
        if (s->valid & TM_GPU_TEMP)
            CHECK(isfinite(s->temperature_c));
        for (int f = 0; f < TM_SMI_NFIELDS; f++) {
            CHECK(strnlen(why[i].text[f], sizeof(why[i].text[f])) < sizeof(why[i].text[f]));
            CHECK(!(s->valid & tm_smi_field_bit[f]) || why[i].text[f][0] == '\0');
        }
    }
    for (size_t i = 0; i < a.nerr; i++) {
        check_text(a.errors[i].msg, sizeof(a.errors[i].msg));
        check_text(a.errors[i].bus_id, sizeof(a.errors[i].bus_id));
        CHECK(a.errors[i].gpu_index >= -1);
    }
    return 0;
}
