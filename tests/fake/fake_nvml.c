/*
 * fake_nvml.c - a fake libnvidia-ml.so.1 for the tests (DESIGN 6, STYLE 2.3).
 *
 * Built as a shared library and loaded by src/gpu/gpu_nvml.c through its
 * production dlopen path ($TOKENMETER_NVML_LIB or the library search path).
 * It exports the NVML entry points tokenmeter uses, with NVML's C types and
 * units (memory bytes, power mW, utilization %), and answers from a script.
 *
 * Script: the file named by $FAKE_NVML_SCRIPT, read by nvmlInit_v2/nvmlInit
 * and read again by every nvmlDeviceGetHandleByIndex(0), that is at the
 * start of each poll (so a test can change values between polls; `init` and
 * `count` then no longer matter).  One directive per line; `#` starts a
 * comment line; blank lines are ignored.
 *
 *   init <rc>                 what nvmlInit_v2 / nvmlInit return (default 0)
 *   count <n>                 what nvmlDeviceGetCount returns
 *                             (default: highest `device` index + 1)
 *   device <i> key=value ...  GPU i (0-based, < 32)
 *   mig <i> <n> key=value ... MIG device n (0..6) of GPU i
 *
 * Keys: name, uuid (a value with spaces is written "in double quotes"),
 * util (%), mem_used, mem_total (bytes), power_mw (mW; `power` is the same
 * key), temp (degrees C), mig (0|1, the current MIG mode; absent: the GPU has
 * no MIG, nvmlDeviceGetMigMode returns NOT_SUPPORTED).  Instead of a value,
 * any key takes `rc:<code>`: that query returns the code.  Two keys are only
 * for codes: `handle=rc:N` (nvmlDeviceGetHandleByIndex, or for a `mig` line
 * nvmlDeviceGetMigDeviceHandleByIndex) and `all=rc:N` (every query of the
 * device, its handle included).  `mem`, `mem_used` and `mem_total` name the
 * same query.  A query whose value is not given returns 3 (NOT_SUPPORTED).
 *
 *   init 0
 *   device 0 name="NVIDIA A100-SXM4-80GB" uuid=GPU-0 util=37 mem_used=10737418240 ...
 *   device 1 power=rc:3
 *   device 2 all=rc:15
 *
 * $FAKE_NVML_TRACE, when set, names a file to which every exported call
 * appends its own name and a newline (which names were bound, that
 * nvmlShutdown ran).
 *
 * Symbol sets (CASE-05), chosen at build time:
 *   (none)          every symbol below, versioned and unversioned names;
 *   -DFAKE_NO_V2    no `_v2` names and no nvmlDeviceGetPowerUsage (an older
 *                   driver);
 *   -DFAKE_NO_INIT  neither nvmlInit_v2 nor nvmlInit;
 *   -DFAKE_MINIMAL  only nvmlInit, nvmlShutdown, nvmlDeviceGetCount and
 *                   nvmlDeviceGetHandleByIndex.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef FAKE_MINIMAL
#define FAKE_NO_V2 1
#endif

#define EXPORT __attribute__((visibility("default")))
#define MAYBE_UNUSED __attribute__((unused)) /* not every symbol set calls it */

typedef int nvmlReturn_t;
typedef struct fake_dev *nvmlDevice_t;
typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
    unsigned int gpu, memory;
} nvmlUtilization_t;

enum {
    OK = 0,
    E_UNINIT = 1,
    E_INVALID = 2,
    E_NOT_SUPPORTED = 3,
    E_NOT_FOUND = 6,
    E_INSUFFICIENT = 7,
    E_UNKNOWN = 999,
};

enum query { Q_HANDLE, Q_NAME, Q_UUID, Q_UTIL, Q_MEM, Q_POWER, Q_TEMP, Q_MIG, Q_N };

#define FAKE_GPUS 32
#define FAKE_MIGS 7

struct fake_dev {
    int present;
    int has[Q_N]; /* a value (or a code) was scripted */
    int rc[Q_N];  /* the scripted code, when not a value */
    char name[96], uuid[96];
    unsigned util, power_mw, temp, mig;
    unsigned long long mem_used, mem_total;
};

static struct fake_dev gpus[FAKE_GPUS];
static struct fake_dev migs[FAKE_GPUS][FAKE_MIGS];
static unsigned count;
static int refs; /* nvmlInit calls not yet matched by nvmlShutdown */

static void trace(const char *fn)
{
    const char *path = getenv("FAKE_NVML_TRACE");
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "a");
    if (!f)
        return;
    fprintf(f, "%s\n", fn);
    fclose(f);
}

/* ---------------------------------------------------------------- script */

/* Next `key=value` of @p *p; value unquoted in place.  0 at the end. */
static int next_pair(char **p, char **key, char **val)
{
    char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!*s || *s == '\n' || *s == '\r')
        return 0;
    *key = s;
    while (*s && *s != '=' && *s != ' ' && *s != '\t' && *s != '\n')
        s++;
    if (*s != '=')
        return -1;
    *s++ = '\0';
    if (*s == '"') {
        *val = ++s;
        while (*s && *s != '"')
            s++;
        if (*s != '"')
            return -1;
        *s++ = '\0';
    } else {
        *val = s;
        while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            s++;
        if (*s)
            *s++ = '\0';
    }
    *p = s;
    return 1;
}

static int query_of(const char *key)
{
    static const struct {
        const char *key;
        int q;
    } keys[] = {{"handle", Q_HANDLE}, {"name", Q_NAME},       {"uuid", Q_UUID},
                {"util", Q_UTIL},     {"mem", Q_MEM},         {"mem_used", Q_MEM},
                {"mem_total", Q_MEM}, {"power", Q_POWER},     {"power_mw", Q_POWER},
                {"temp", Q_TEMP},     {"mig", Q_MIG}};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(keys[i].key, key) == 0)
            return keys[i].q;
    return -1;
}

static int set_key(struct fake_dev *d, const char *key, const char *val)
{
    if (strncmp(val, "rc:", 3) == 0) {
        int rc = atoi(val + 3);
        int q = strcmp(key, "all") == 0 ? Q_N : query_of(key);
        if (q < 0)
            return -1;
        for (int i = (q == Q_N ? 0 : q); i < (q == Q_N ? Q_N : q + 1); i++) {
            d->has[i] = 1;
            d->rc[i] = rc;
        }
        return 0;
    }
    int q = query_of(key);
    if (q < 0 || q == Q_HANDLE)
        return -1;
    d->has[q] = 1;
    d->rc[q] = OK;
    if (strcmp(key, "name") == 0)
        snprintf(d->name, sizeof(d->name), "%s", val);
    else if (strcmp(key, "uuid") == 0)
        snprintf(d->uuid, sizeof(d->uuid), "%s", val);
    else if (strcmp(key, "util") == 0)
        d->util = (unsigned)strtoul(val, NULL, 10);
    else if (strcmp(key, "mem_used") == 0)
        d->mem_used = strtoull(val, NULL, 10);
    else if (strcmp(key, "mem_total") == 0)
        d->mem_total = strtoull(val, NULL, 10);
    else if (q == Q_POWER)
        d->power_mw = (unsigned)strtoul(val, NULL, 10);
    else if (strcmp(key, "temp") == 0)
        d->temp = (unsigned)strtoul(val, NULL, 10);
    else if (strcmp(key, "mig") == 0)
        d->mig = (unsigned)strtoul(val, NULL, 10);
    else
        return -1; /* `mem=` takes only rc:N */
    return 0;
}

/* Read $FAKE_NVML_SCRIPT; returns the init code it asks for. */
static int load_script(void)
{
    memset(gpus, 0, sizeof(gpus));
    memset(migs, 0, sizeof(migs));
    count = 0;
    const char *path = getenv("FAKE_NVML_SCRIPT");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) {
        fprintf(stderr, "fake_nvml: cannot read FAKE_NVML_SCRIPT (%s)\n", path ? path : "unset");
        return E_UNKNOWN;
    }
    int init_rc = OK, explicit_count = -1;
    char line[2048];
    unsigned lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *p = line, word[16];
        int n = 0, used = 0;
        unsigned gi = 0, mi = 0;
        if (sscanf(p, " %15s%n", word, &used) != 1 || word[0] == '#')
            continue;
        p += used;
        struct fake_dev *d = NULL;
        if (strcmp(word, "init") == 0 && sscanf(p, "%d", &init_rc) == 1) {
            continue;
        } else if (strcmp(word, "count") == 0 && sscanf(p, "%d", &explicit_count) == 1) {
            continue;
        } else if (strcmp(word, "device") == 0 && sscanf(p, "%u%n", &gi, &n) == 1 &&
                   gi < FAKE_GPUS) {
            d = &gpus[gi];
            if (gi + 1 > count)
                count = gi + 1;
        } else if (strcmp(word, "mig") == 0 && sscanf(p, "%u %u%n", &gi, &mi, &n) == 2 &&
                   gi < FAKE_GPUS && mi < FAKE_MIGS) {
            d = &migs[gi][mi];
        } else {
            fprintf(stderr, "fake_nvml: %s:%u: bad line\n", path, lineno);
            fclose(f);
            return E_UNKNOWN;
        }
        d->present = 1;
        p += n;
        char *key, *val;
        int r;
        while ((r = next_pair(&p, &key, &val)) > 0)
            if (set_key(d, key, val) < 0)
                break;
        if (r != 0) {
            fprintf(stderr, "fake_nvml: %s:%u: bad key=value\n", path, lineno);
            fclose(f);
            return E_UNKNOWN;
        }
    }
    fclose(f);
    if (explicit_count >= 0)
        count = (unsigned)explicit_count;
    return init_rc;
}

/* --------------------------------------------------------------- helpers */

static int is_handle(nvmlDevice_t h)
{
    const char *p = (const char *)h;
    return (p >= (const char *)gpus && p < (const char *)(gpus + FAKE_GPUS)) ||
           (p >= (const char *)migs && p < (const char *)(migs + FAKE_GPUS));
}

/* Code of query @p q on @p h: not initialized, a bad handle, scripted code,
 * or NOT_SUPPORTED when nothing was scripted. */
MAYBE_UNUSED static int answer(nvmlDevice_t h, enum query q)
{
    if (refs <= 0)
        return E_UNINIT;
    if (!h || !is_handle(h))
        return E_INVALID;
    if (h->has[Q_HANDLE] && h->rc[Q_HANDLE] != OK)
        return h->rc[Q_HANDLE]; /* `all=rc:N` on the device */
    return h->has[q] ? h->rc[q] : E_NOT_SUPPORTED;
}

MAYBE_UNUSED static nvmlReturn_t do_init(void)
{
    if (refs > 0) {
        refs++;
        return OK;
    }
    int rc = load_script();
    if (rc == OK)
        refs = 1;
    return rc;
}

static nvmlReturn_t do_count(unsigned int *n)
{
    if (refs <= 0)
        return E_UNINIT;
    if (!n)
        return E_INVALID;
    *n = count;
    return OK;
}

static nvmlReturn_t do_handle(unsigned int i, nvmlDevice_t *h)
{
    if (refs <= 0)
        return E_UNINIT;
    if (i == 0)
        (void)load_script();
    if (!h || i >= count || i >= FAKE_GPUS)
        return E_INVALID;
    if (gpus[i].has[Q_HANDLE] && gpus[i].rc[Q_HANDLE] != OK)
        return gpus[i].rc[Q_HANDLE];
    *h = &gpus[i];
    return OK;
}

MAYBE_UNUSED static nvmlReturn_t copy_str(const char *s, char *buf, unsigned int len)
{
    if (!buf)
        return E_INVALID;
    if (strlen(s) + 1 > len)
        return E_INSUFFICIENT;
    memcpy(buf, s, strlen(s) + 1);
    return OK;
}

/* ------------------------------------------------------------- the API */

#ifndef FAKE_NO_INIT
#ifndef FAKE_NO_V2
EXPORT nvmlReturn_t nvmlInit_v2(void)
{
    trace("nvmlInit_v2");
    return do_init();
}
#endif

EXPORT nvmlReturn_t nvmlInit(void)
{
    trace("nvmlInit");
    return do_init();
}
#endif

EXPORT nvmlReturn_t nvmlShutdown(void)
{
    trace("nvmlShutdown");
    if (refs <= 0)
        return E_UNINIT;
    refs--;
    return OK;
}

#ifndef FAKE_MINIMAL
EXPORT const char *nvmlErrorString(nvmlReturn_t rc)
{
    trace("nvmlErrorString");
    switch (rc) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 15: return "GPU is lost";
    case 18: return "Driver/library version mismatch";
    default: return "Unknown Error";
    }
}
#endif

#ifndef FAKE_NO_V2
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n)
{
    trace("nvmlDeviceGetCount_v2");
    return do_count(n);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *h)
{
    trace("nvmlDeviceGetHandleByIndex_v2");
    return do_handle(i, h);
}
#endif

EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *n)
{
    trace("nvmlDeviceGetCount");
    return do_count(n);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int i, nvmlDevice_t *h)
{
    trace("nvmlDeviceGetHandleByIndex");
    return do_handle(i, h);
}

#ifndef FAKE_MINIMAL
EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t h, char *buf, unsigned int len)
{
    trace("nvmlDeviceGetName");
    int rc = answer(h, Q_NAME);
    return rc != OK ? rc : copy_str(h->name, buf, len);
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t h, char *buf, unsigned int len)
{
    trace("nvmlDeviceGetUUID");
    int rc = answer(h, Q_UUID);
    return rc != OK ? rc : copy_str(h->uuid, buf, len);
}

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t h, nvmlUtilization_t *u)
{
    trace("nvmlDeviceGetUtilizationRates");
    int rc = answer(h, Q_UTIL);
    if (rc != OK)
        return rc;
    if (!u)
        return E_INVALID;
    u->gpu = h->util;
    u->memory = 0;
    return OK;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t h, nvmlMemory_t *m)
{
    trace("nvmlDeviceGetMemoryInfo");
    int rc = answer(h, Q_MEM);
    if (rc != OK)
        return rc;
    if (!m)
        return E_INVALID;
    m->total = h->mem_total;
    m->used = h->mem_used;
    m->free = h->mem_total > h->mem_used ? h->mem_total - h->mem_used : 0;
    return OK;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t h, int sensor, unsigned int *c)
{
    trace("nvmlDeviceGetTemperature");
    int rc = answer(h, Q_TEMP);
    if (rc != OK)
        return rc;
    if (!c || sensor != 0)
        return E_INVALID;
    *c = h->temp;
    return OK;
}

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t h, unsigned int *cur, unsigned int *pending)
{
    trace("nvmlDeviceGetMigMode");
    int rc = answer(h, Q_MIG);
    if (rc != OK)
        return rc;
    if (!cur || !pending)
        return E_INVALID;
    *cur = *pending = h->mig;
    return OK;
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t h, unsigned int *n)
{
    trace("nvmlDeviceGetMaxMigDeviceCount");
    int rc = answer(h, Q_MIG);
    if (rc != OK)
        return rc;
    if (!n)
        return E_INVALID;
    *n = FAKE_MIGS;
    return OK;
}

EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t h, unsigned int i,
                                                        nvmlDevice_t *mh)
{
    trace("nvmlDeviceGetMigDeviceHandleByIndex");
    int rc = answer(h, Q_MIG);
    if (rc != OK)
        return rc;
    if (!mh || i >= FAKE_MIGS || h < gpus || h >= gpus + FAKE_GPUS || !h->mig)
        return E_INVALID;
    struct fake_dev *m = &migs[h - gpus][i];
    if (!m->present)
        return E_NOT_FOUND;
    if (m->has[Q_HANDLE] && m->rc[Q_HANDLE] != OK)
        return m->rc[Q_HANDLE];
    *mh = m;
    return OK;
}
#endif

#if !defined(FAKE_NO_V2) && !defined(FAKE_MINIMAL)
EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t h, unsigned int *mw)
{
    trace("nvmlDeviceGetPowerUsage");
    int rc = answer(h, Q_POWER);
    if (rc != OK)
        return rc;
    if (!mw)
        return E_INVALID;
    *mw = h->power_mw;
    return OK;
}
#endif
