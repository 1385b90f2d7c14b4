/*
 * gpu_nvml.c - the `nvml` GPU source: NVIDIA's management library, loaded at
 * run time (DESIGN 6, STYLE 2.3), so one binary runs with and without a GPU.
 *
 * No NVML header at build time and no link against libnvidia-ml: the few
 * types used are declared below with NVML's layout.  The library is
 * dlopen()ed from $TOKENMETER_NVML_LIB when set (an explicit override: when
 * it fails there is no second try), else as "libnvidia-ml.so.1" (what drivers
 * install), then "libnvidia-ml.so" (development packages only).  Symbols are
 * resolved one by one from a table, newest versioned name first; a missing
 * optional symbol makes its metric null, a missing required one makes the
 * whole backend unavailable (open fails, the library is dlclose()d).  No
 * function pointer is called before it is checked for NULL.
 *
 * Units are converted once, here: bytes -> MiB (/1048576), mW -> W (/1000),
 * percent -> fraction (/100).
 *
 * Return codes of per-device queries (CASE-03, -06):
 *  - NVML_ERROR_GPU_IS_LOST on any query of a device, or no handle for it:
 *    no sample for it (not even a partial one), a tm_gpu_error entry with
 *    its index and NVML's words; the other GPUs are kept;
 *  - any other failure of a metric query (NOT_SUPPORTED, UNKNOWN, ...): that
 *    field is null (its valid bit clear, never 0), logged once per device
 *    and field when it starts failing and once when it answers again, not
 *    per poll.
 *
 * MIG: when a GPU's current MIG mode is enabled, the GPU itself is reported
 * (power and temperature are whole-GPU figures), followed by one sample per
 * MIG device, which keeps the parent's gpu_index (tokens and energy are
 * attributed to the physical GPU), is named "<parent name> MIG <n>" with n
 * the MIG device index given to nvmlDeviceGetMigDeviceHandleByIndex (the
 * "Device n" of `nvidia-smi -L`), carries the MIG UUID and the instance's own
 * memory; its utilization, power and temperature are null (NVML does not
 * report them per instance).
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "gpu/gpu.h"

/* ------------------------------------------------------ NVML's own types */

typedef int nvmlReturn_t;
typedef struct nvml_device_st *nvmlDevice_t; /* opaque */

typedef struct {
    unsigned long long total; /* bytes */
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_t;

typedef struct {
    unsigned int gpu;    /* percent */
    unsigned int memory; /* percent */
} nvmlUtilization_t;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_LIBRARY_NOT_FOUND = 12,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
    NVML_ERROR_UNKNOWN = 999,
};

#define NVML_TEMPERATURE_GPU 0
#define NVML_DEVICE_MIG_ENABLE 1u
#define NVML_NAME_BUFFER 96 /* NVML_DEVICE_NAME_V2_BUFFER_SIZE, ..._UUID_V2_... */
#define MIG_MAX 8           /* MIG devices read per GPU (7 on A100/H100/H200) */

_Static_assert(sizeof(void *) == sizeof(void (*)(void)),
               "dlsym results are stored into function pointers");

struct nvml_fns {
    nvmlReturn_t (*init)(void);
    nvmlReturn_t (*shutdown)(void);
    const char *(*error_string)(nvmlReturn_t);
    nvmlReturn_t (*count)(unsigned int *);
    nvmlReturn_t (*handle)(unsigned int, nvmlDevice_t *);
    nvmlReturn_t (*name)(nvmlDevice_t, char *, unsigned int);
    nvmlReturn_t (*uuid)(nvmlDevice_t, char *, unsigned int);
    nvmlReturn_t (*util)(nvmlDevice_t, nvmlUtilization_t *);
    nvmlReturn_t (*mem)(nvmlDevice_t, nvmlMemory_t *);
    nvmlReturn_t (*power)(nvmlDevice_t, unsigned int *);
    nvmlReturn_t (*temp)(nvmlDevice_t, int, unsigned int *);
    nvmlReturn_t (*mig_mode)(nvmlDevice_t, unsigned int *, unsigned int *);
    nvmlReturn_t (*mig_max)(nvmlDevice_t, unsigned int *);
    nvmlReturn_t (*mig_handle)(nvmlDevice_t, unsigned int, nvmlDevice_t *);
};

/* One entry per function: names newest first, where the pointer goes. */
struct nvml_sym {
    const char *names[3];
    size_t offset; /* in struct nvml_fns */
    bool required;
};

#define SYM(field, req, ...) {{__VA_ARGS__}, offsetof(struct nvml_fns, field), req}
static const struct nvml_sym nvml_syms[] = {
    SYM(init, true, "nvmlInit_v2", "nvmlInit"),
    SYM(shutdown, true, "nvmlShutdown"),
    SYM(count, true, "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"),
    SYM(handle, true, "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"),
    SYM(error_string, false, "nvmlErrorString"),
    SYM(name, false, "nvmlDeviceGetName"),
    SYM(uuid, false, "nvmlDeviceGetUUID"),
    SYM(util, false, "nvmlDeviceGetUtilizationRates"),
    SYM(mem, false, "nvmlDeviceGetMemoryInfo"),
    SYM(power, false, "nvmlDeviceGetPowerUsage"),
    SYM(temp, false, "nvmlDeviceGetTemperature"),
    SYM(mig_mode, false, "nvmlDeviceGetMigMode"),
    SYM(mig_max, false, "nvmlDeviceGetMaxMigDeviceCount"),
    SYM(mig_handle, false, "nvmlDeviceGetMigDeviceHandleByIndex"),
};
#undef SYM

/* Field bits of the once-only log, beyond the TM_GPU_* sample bits. */
#define LOST_LOGGED (1u << 30)
#define MIG_LOGGED (1u << 29)

struct nvml {
    void *dl;
    char lib[256]; /* the name or path it was loaded by */
    struct nvml_fns fn;
    unsigned count; /* GPUs, capped at TM_GPU_MAX */
    char host[256];
    /* Fields already logged as unavailable: [GPU][0 = the GPU, 1 + n = MIG n]. */
    unsigned logged[TM_GPU_MAX][1 + MIG_MAX];
    bool full_logged;
};

/* NVML's own message for @p rc; ours (NVML's wording) when the library has
 * no nvmlErrorString or it returns NULL.  Static storage either way. */
static const char *nvml_strerror(const struct nvml *st, nvmlReturn_t rc)
{
    if (st->fn.error_string) {
        const char *s = st->fn.error_string(rc);
        if (s && *s)
            return s;
    }
    switch (rc) {
    case NVML_SUCCESS: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_LIBRARY_NOT_FOUND: return "NVML Shared Library Not Found";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH: return "Driver/library version mismatch";
    default: return "Unknown Error";
    }
}

/* Init codes meaning "no NVIDIA driver here" rather than a broken one. */
static bool nvml_absent(nvmlReturn_t rc)
{
    return rc == NVML_ERROR_DRIVER_NOT_LOADED || rc == NVML_ERROR_LIBRARY_NOT_FOUND;
}

/* dlopen the library, its name into @p lib; on failure the loader's words
 * go to @p err. */
static void *nvml_dlopen(char *lib, size_t size, struct tm_error *err)
{
    const char *over = getenv("TOKENMETER_NVML_LIB");
    if (over && *over) {
        snprintf(lib, size, "%s", over);
        void *dl = dlopen(over, RTLD_NOW | RTLD_LOCAL);
        if (!dl) {
            const char *why = dlerror();
            tm_error_set(err, TM_ERR_GPU, TM_GPU_ERR_ABSENT,
                         "NVML not loadable (TOKENMETER_NVML_LIB): %s", why ? why : over);
        }
        return dl;
    }
    static const char *const names[] = {"libnvidia-ml.so.1", "libnvidia-ml.so"};
    char first[192] = "";
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(lib, size, "%s", names[i]);
        void *dl = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (dl)
            return dl;
        const char *why = dlerror();
        if (i == 0)
            snprintf(first, sizeof(first), "%s", why ? why : names[i]);
    }
    /* The .so.1 error is the one that matters: drivers install only that. */
    tm_error_set(err, TM_ERR_GPU, TM_GPU_ERR_ABSENT, "NVML not loadable: %s", first);
    return NULL;
}

/* Resolve every table entry; -1 when a required one is missing.  The names
 * of missing optional ones go to @p missing. */
static int nvml_resolve(struct nvml *st, char *missing, size_t size, struct tm_error *err)
{
    size_t used = 0;
    missing[0] = '\0';
    for (size_t i = 0; i < sizeof(nvml_syms) / sizeof(nvml_syms[0]); i++) {
        const struct nvml_sym *e = &nvml_syms[i];
        void *sym = NULL;
        for (size_t k = 0; k < 3 && e->names[k] && !sym; k++) {
            dlerror();
            sym = dlsym(st->dl, e->names[k]);
        }
        if (sym) {
            memcpy((char *)&st->fn + e->offset, &sym, sizeof(sym));
        } else if (e->required) {
            tm_error_set(err, TM_ERR_GPU, 0, "NVML library %s lacks %s%s%s", st->lib,
                         e->names[0], e->names[1] ? " and " : "", e->names[1] ? e->names[1] : "");
            return -1;
        } else if (used < size) {
            int w = snprintf(missing + used, size - used, "%s%s", used ? ", " : "", e->names[0]);
            used += w > 0 ? (size_t)w : 0;
        }
    }
    return 0;
}

/** Open: dlopen, resolve, init, count.  -1 (TM_ERR_GPU) when any of these
 *  fails, nothing left loaded; code TM_GPU_ERR_ABSENT when no library loads,
 *  no driver is loaded or NVML sees no GPU (nothing to read here), 0 when NVML is there but fails
 *  (a missing required symbol, init or count failing: CASE-04, -05 b2). */
static int nvml_open(void **priv, const struct tm_gpu_open_args *args, struct tm_error *err)
{
    struct nvml *st = tm_xcalloc(1, sizeof(*st));
    snprintf(st->host, sizeof(st->host), "%s", args && args->host ? args->host : "");
    st->dl = nvml_dlopen(st->lib, sizeof(st->lib), err);
    if (!st->dl)
        goto fail;
    char missing[512];
    if (nvml_resolve(st, missing, sizeof(missing), err) < 0)
        goto fail;
    nvmlReturn_t rc = st->fn.init();
    if (rc != NVML_SUCCESS) {
        /* CASE-04: 18 reads "Driver/library version mismatch". */
        tm_error_set(err, TM_ERR_GPU, nvml_absent(rc) ? TM_GPU_ERR_ABSENT : 0,
                     "NVML init failed: %s (NVML error %d)", nvml_strerror(st, rc), rc);
        goto fail;
    }
    unsigned n = 0;
    rc = st->fn.count(&n);
    if (rc != NVML_SUCCESS || n == 0) {
        if (rc != NVML_SUCCESS)
            tm_error_set(err, TM_ERR_GPU, 0, "NVML device count failed: %s (NVML error %d)",
                         nvml_strerror(st, rc), rc);
        else
            tm_error_set(err, TM_ERR_GPU, TM_GPU_ERR_ABSENT, "NVML found no GPU");
        st->fn.shutdown();
        goto fail;
    }
    if (n > TM_GPU_MAX) {
        tm_warn("gpu", "NVML reports %u GPUs; reading the first %d", n, TM_GPU_MAX);
        n = TM_GPU_MAX;
    }
    st->count = n;
    tm_info("gpu", "NVML loaded (%s): %u GPU(s)", st->lib, n);
    if (missing[0])
        tm_info("gpu", "NVML library lacks %s: those metrics are null", missing);
    *priv = st;
    return 0;
fail:
    if (st->dl)
        dlclose(st->dl);
    free(st);
    return -1;
}

/*
 * Sort one query's return code.  0: the value is valid; 1: the field is null;
 * -1: the GPU is lost.  A field that stops answering is logged once (per GPU,
 * MIG slot and field), and once more when it answers again: not per poll.
 */
static int check(struct nvml *st, unsigned gpu, unsigned slot, unsigned field, const char *what,
                 nvmlReturn_t rc)
{
    unsigned *logged = &st->logged[gpu][slot];
    if (rc == NVML_ERROR_GPU_IS_LOST)
        return -1;
    bool ok = rc == NVML_SUCCESS;
    if (ok == !(*logged & field))
        return ok ? 0 : 1; /* no change: nothing to log */
    *logged ^= field;
    char who[48];
    if (slot == 0)
        snprintf(who, sizeof(who), "NVML GPU %u", gpu);
    else
        snprintf(who, sizeof(who), "NVML GPU %u MIG %u", gpu, slot - 1);
    if (ok)
        tm_info("gpu", "%s: %s answers again", who, what);
    else
        tm_log(rc == NVML_ERROR_NOT_SUPPORTED ? TM_LOG_INFO : TM_LOG_WARN, "gpu",
               "%s: %s: %s (NVML error %d); reported as null", who, what, nvml_strerror(st, rc),
               rc);
    return ok ? 0 : 1;
}

/* Read a string query into @p dst; NUL-terminates whatever NVML wrote. */
static nvmlReturn_t read_str(nvmlReturn_t (*q)(nvmlDevice_t, char *, unsigned int),
                             nvmlDevice_t h, char *dst, size_t size)
{
    char buf[NVML_NAME_BUFFER] = "";
    nvmlReturn_t rc = q(h, buf, sizeof(buf));
    buf[sizeof(buf) - 1] = '\0';
    if (rc == NVML_SUCCESS)
        snprintf(dst, size, "%s", buf);
    return rc;
}

/*
 * Fill @p s from @p h.  @p slot 0 reads a GPU (every metric), 1 + n MIG
 * device n (name suffix, UUID, memory).  Returns NULL, or the failing
 * query's name when the GPU is lost (*rc_out its return code).
 */
static const char *read_device(struct nvml *st, unsigned gpu, unsigned slot, nvmlDevice_t h,
                               const char *parent_name, struct tm_gpu_sample *s,
                               nvmlReturn_t *rc_out)
{
    const struct nvml_fns *f = &st->fn;
    nvmlReturn_t rc;
#define CHECK(field, what)                                                                         \
    do {                                                                                           \
        int c_ = check(st, gpu, slot, (field), (what), rc);                                        \
        if (c_ < 0) {                                                                              \
            *rc_out = rc;                                                                          \
            return (what);                                                                         \
        }                                                                                          \
        if (c_ == 0)                                                                               \
            s->valid |= (field);                                                                   \
    } while (0)

    if (slot == 0 && f->name) {
        rc = read_str(f->name, h, s->name, sizeof(s->name));
        CHECK(TM_GPU_NAME, "nvmlDeviceGetName");
    } else if (slot > 0 && parent_name) {
        snprintf(s->name, sizeof(s->name), "%s MIG %u", parent_name, slot - 1);
        s->valid |= TM_GPU_NAME;
    }
    if (f->uuid) {
        rc = read_str(f->uuid, h, s->uuid, sizeof(s->uuid));
        CHECK(TM_GPU_UUID, "nvmlDeviceGetUUID");
    }
    if (f->mem) {
        nvmlMemory_t m = {0};
        rc = f->mem(h, &m);
        CHECK(TM_GPU_MEM_USED | TM_GPU_MEM_TOTAL, "nvmlDeviceGetMemoryInfo");
        s->mem_used_mb = (double)m.used / 1048576.0;
        s->mem_total_mb = (double)m.total / 1048576.0;
    }
    if (slot > 0)
        return NULL;
    if (f->util) {
        nvmlUtilization_t u = {0};
        rc = f->util(h, &u);
        CHECK(TM_GPU_UTIL, "nvmlDeviceGetUtilizationRates");
        s->utilization = u.gpu / 100.0;
    }
    if (f->power) {
        unsigned mw = 0;
        rc = f->power(h, &mw);
        CHECK(TM_GPU_POWER, "nvmlDeviceGetPowerUsage");
        s->power_w = mw / 1000.0;
    }
    if (f->temp) {
        unsigned c = 0;
        rc = f->temp(h, NVML_TEMPERATURE_GPU, &c);
        CHECK(TM_GPU_TEMP, "nvmlDeviceGetTemperature");
        s->temperature_c = c;
    }
#undef CHECK
    return NULL;
}

/* Zeroed next sample of @p out for GPU @p gpu, or NULL when out is full. */
static struct tm_gpu_sample *next_sample(struct nvml *st, struct tm_gpu_poll *out, unsigned gpu)
{
    if (out->n >= TM_GPU_MAX) {
        if (!st->full_logged)
            tm_warn("gpu", "NVML: more than %d GPUs and MIG devices; the rest are not read",
                    TM_GPU_MAX);
        st->full_logged = true;
        return NULL;
    }
    struct tm_gpu_sample *s = &out->samples[out->n];
    memset(s, 0, sizeof(*s));
    snprintf(s->host, sizeof(s->host), "%s", st->host);
    s->gpu_index = (int)gpu;
    return s;
}

/* Add one sample per MIG device of GPU @p gpu when its MIG mode is on.
 * Returns NULL, or the failing query's name when the GPU is lost. */
static const char *read_migs(struct nvml *st, unsigned gpu, nvmlDevice_t h,
                             const char *parent_name, struct tm_gpu_poll *out,
                             nvmlReturn_t *rc_out)
{
    const struct nvml_fns *f = &st->fn;
    unsigned cur = 0, pending = 0, max = 0;
    if (!f->mig_mode || !f->mig_max || !f->mig_handle)
        return NULL;
    nvmlReturn_t rc = f->mig_mode(h, &cur, &pending);
    if (rc == NVML_ERROR_GPU_IS_LOST) {
        *rc_out = rc;
        return "nvmlDeviceGetMigMode";
    }
    if (rc != NVML_SUCCESS || cur != NVML_DEVICE_MIG_ENABLE)
        return NULL; /* NOT_SUPPORTED on GPUs without MIG: normal, not logged */
    rc = f->mig_max(h, &max);
    if (check(st, gpu, 0, MIG_LOGGED, "nvmlDeviceGetMaxMigDeviceCount", rc) < 0) {
        *rc_out = rc;
        return "nvmlDeviceGetMaxMigDeviceCount";
    }
    if (rc != NVML_SUCCESS)
        return NULL;
    if (max > MIG_MAX)
        max = MIG_MAX;
    for (unsigned i = 0; i < max; i++) {
        nvmlDevice_t mh = NULL;
        rc = f->mig_handle(h, i, &mh);
        if (rc == NVML_ERROR_NOT_FOUND)
            continue; /* an empty slot */
        if (check(st, gpu, 1 + i, MIG_LOGGED, "nvmlDeviceGetMigDeviceHandleByIndex", rc) < 0) {
            *rc_out = rc;
            return "nvmlDeviceGetMigDeviceHandleByIndex";
        }
        if (rc != NVML_SUCCESS)
            continue;
        struct tm_gpu_sample *s = next_sample(st, out, gpu);
        if (!s)
            return NULL;
        const char *lost = read_device(st, gpu, 1 + i, mh, parent_name, s, rc_out);
        if (lost)
            return lost;
        out->n++;
    }
    return NULL;
}

/* Record GPU @p gpu as lost (CASE-03 c): an error entry, logged once. */
static void add_lost(struct nvml *st, struct tm_gpu_poll *out, unsigned gpu, const char *what,
                     nvmlReturn_t rc)
{
    const char *why = nvml_strerror(st, rc);
    if (!(st->logged[gpu][0] & LOST_LOGGED)) {
        st->logged[gpu][0] |= LOST_LOGGED;
        tm_warn("gpu", "NVML GPU %u: %s: %s (NVML error %d)", gpu, what, why, rc);
    }
    if (out->nerr >= TM_GPU_MAX)
        return;
    struct tm_gpu_error *e = &out->errors[out->nerr++];
    e->gpu_index = (int)gpu;
    snprintf(e->msg, sizeof(e->msg), "%s (NVML error %d in %s)", why, rc, what);
}

/** Poll: read every GPU (and MIG device).  Always 0: a GPU that cannot be
 *  read is an error entry, a metric that cannot be read is null. */
static int nvml_poll(void *priv, struct tm_gpu_poll *out, struct tm_error *err)
{
    (void)err;
    struct nvml *st = priv;
    for (unsigned gpu = 0; gpu < st->count; gpu++) {
        nvmlDevice_t h = NULL;
        nvmlReturn_t rc = st->fn.handle(gpu, &h);
        if (rc != NVML_SUCCESS) {
            add_lost(st, out, gpu, "nvmlDeviceGetHandleByIndex", rc);
            continue;
        }
        size_t first = out->n;
        struct tm_gpu_sample *s = next_sample(st, out, gpu);
        if (!s)
            break;
        const char *lost = read_device(st, gpu, 0, h, NULL, s, &rc);
        if (!lost) {
            out->n++;
            lost = read_migs(st, gpu, h, (s->valid & TM_GPU_NAME) ? s->name : NULL, out, &rc);
        }
        if (lost) {
            out->n = first; /* no partial samples of a lost GPU */
            add_lost(st, out, gpu, lost, rc);
            continue;
        }
        st->logged[gpu][0] &= ~LOST_LOGGED; /* readable again: a new loss is logged */
    }
    return 0;
}

/** Close: nvmlShutdown, dlclose, free. */
static void nvml_close(void *priv)
{
    struct nvml *st = priv;
    if (!st)
        return;
    nvmlReturn_t rc = st->fn.shutdown();
    if (rc != NVML_SUCCESS)
        tm_warn("gpu", "nvmlShutdown: %s (NVML error %d)", nvml_strerror(st, rc), rc);
    dlclose(st->dl);
    free(st);
}

/** The `nvml` backend (see the comment at the top of this file). */
const struct tm_gpu_source_ops tm_gpu_nvml_ops = {
    .abi = 1,
    .name = "nvml",
    .open = nvml_open,
    .poll = nvml_poll,
    .close = nvml_close,
};
