/*
 * test_nvml.c - the `nvml` GPU source (src/gpu/gpu_nvml.c) driven by the fake
 * libnvidia-ml.so.1 of tests/fake/fake_nvml.c, through the production path:
 * tm_gpu_source_open("nvml" | "auto") with $TOKENMETER_NVML_LIB naming one
 * of the fake's builds, and for CASE-05 (a) with no override at all, the
 * library found by its soname on LD_LIBRARY_PATH.  The dynamic loader reads
 * LD_LIBRARY_PATH once, at process start, so that test re-executes this
 * binary (/proc/self/exe --case-05a-child) with it set; the child prints what
 * it read and the parent asserts it.
 *
 * The fake's builds ($TM_FAKE_NVML_DIR, set by `make test-unit`; else
 * ../fake beside this binary): libnvidia-ml.so.1 (every symbol),
 * v1/ (no _v2 names, no nvmlDeviceGetPowerUsage), noinit/ (no nvmlInit*),
 * minimal/ (only init, shutdown, count and handle).
 *
 * Cases: CASE-03 (c), -04, -05 (a, b, b2, c), -06, -07 of shared/cases, plus
 * MIG instances and a field error logged once.  Log lines are observed by
 * capturing stderr (the log sink) into a file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "gpu/gpu.h"

#define NUL_POWER NAN /* "power_w must be null" in check_sample() */

#define A100_80 "NVIDIA A100-SXM4-80GB"
#define A100_40 "NVIDIA A100-SXM4-40GB"
#define UUID(nn) "GPU-00000000-0000-0000-0000-0000000000" nn

/* CASE-01's GPU 0 in NVML units (CASE-05, -06), as device @p i. */
#define CASE05_DEVICE(i)                                                                           \
    "device " #i " name=\"" A100_80 "\" uuid=" UUID("00") " util=37 mem_used=10737418240 "         \
    "mem_total=85899345920 power_mw=215400 temp=54\n"
#define CASE05_DEVICE0 CASE05_DEVICE(0)

#define CASE01_SMI_ROW                                                                             \
    "0, " A100_80 ", " UUID("00") ", 37, 10240, 81920, 215.40, 54"

static char tmp[64];             /* this run's scratch directory */
static char fake_dir[PATH_MAX];  /* the fake's builds */
static char saved_path[8192];    /* $PATH at start */

/* ---------------------------------------------------------------- helpers */

static void assert_close(double got, double want)
{
    if (fabs(got - want) > 1e-9 * fmax(fabs(want), 1e-300))
        fail_msg("got %.17g, want %.17g", got, want);
}

static const char *tmp_path(const char *name)
{
    static char buf[4][PATH_MAX];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmp, name);
    return buf[k];
}

static const char *write_file(const char *name, const char *text, mode_t mode)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "w");
    if (!f)
        fail_msg("cannot write %s", path);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
    return path;
}

/* The fake's script (see tests/fake/fake_nvml.c), for the next nvmlInit. */
static void script(const char *text)
{
    setenv("FAKE_NVML_SCRIPT", write_file("script", text, 0644), 1);
}

/* $TOKENMETER_NVML_LIB = the fake build @p variant ("" for the full one). */
static void use_fake(const char *variant)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s%slibnvidia-ml.so.1", fake_dir, variant,
             *variant ? "/" : "");
    if (access(path, R_OK) != 0)
        fail_msg("fake NVML %s not built (make test-unit builds it)", path);
    setenv("TOKENMETER_NVML_LIB", path, 1);
}

/* A new, empty call trace of the fake; returns its path. */
static const char *trace_reset(void)
{
    const char *path = write_file("trace", "", 0644);
    setenv("FAKE_NVML_TRACE", path, 1);
    return path;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t r = fread(buf, 1, (size_t)n, f);
    buf[r] = '\0';
    fclose(f);
    return buf;
}

/* Lines of @p text containing every one of the NULL-terminated needles. */
static int count_lines(const char *text, ...)
{
    int n = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *copy = strndup(line, len);
        va_list ap;
        va_start(ap, text);
        bool all = true;
        for (const char *needle; (needle = va_arg(ap, const char *));)
            all = all && strstr(copy, needle);
        va_end(ap);
        n += all;
        free(copy);
        line = end ? end + 1 : NULL;
    }
    return n;
}

/* stderr (the log sink) into a file between capture_begin and capture_end. */
static int saved_stderr = -1;

static void capture_begin(void)
{
    fflush(stderr);
    saved_stderr = dup(2);
    int fd = open(tmp_path("stderr"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    dup2(fd, 2);
    close(fd);
}

/* Returns what was logged (owned, free()); echoes it to the real stderr. */
static char *capture_end(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    char *text = slurp(tmp_path("stderr"));
    fputs(text, stderr);
    return text;
}

static const struct tm_gpu_open_args no_seed = {NULL, "node-1", 2000};

static struct tm_gpu_source *open_nvml(struct tm_error *err)
{
    return tm_gpu_source_open("nvml", &no_seed, err);
}

/* Poll @p src; the poll must succeed. */
static void poll_ok(struct tm_gpu_source *src, struct tm_gpu_poll *p)
{
    struct tm_error err;
    if (tm_gpu_source_poll(src, p, &err) != 0)
        fail_msg("poll failed: %s", err.msg);
}

/* Every DESIGN 2.2 value of one sample; @p power NAN means "must be null". */
static void check_sample(const struct tm_gpu_sample *s, int index, const char *name,
                         const char *uuid, double util, double used_mib, double total_mib,
                         double power, double temp)
{
    assert_int_equal(s->gpu_index, index);
    assert_string_equal(s->host, "node-1");
    assert_true(s->valid & TM_GPU_NAME);
    assert_string_equal(s->name, name);
    assert_true(s->valid & TM_GPU_UUID);
    assert_string_equal(s->uuid, uuid);
    assert_true(s->valid & TM_GPU_UTIL);
    assert_close(s->utilization, util);
    assert_true(s->valid & TM_GPU_MEM_USED);
    assert_close(s->mem_used_mb, used_mib);
    assert_true(s->valid & TM_GPU_MEM_TOTAL);
    assert_close(s->mem_total_mb, total_mib);
    if (isnan(power)) {
        assert_false(s->valid & TM_GPU_POWER);
    } else {
        assert_true(s->valid & TM_GPU_POWER);
        assert_close(s->power_w, power);
    }
    assert_true(s->valid & TM_GPU_TEMP);
    assert_close(s->temperature_c, temp);
    assert_false(s->valid & TM_GPU_PRICE);
    assert_string_equal(s->source, "nvml");
}

/* A PATH with no nvidia-smi (an empty directory), or with a fake one that
 * prints @p smi_stdout. */
static void path_with_smi(const char *smi_stdout)
{
    const char *dir = tmp_path(smi_stdout ? "bin-smi" : "bin-empty");
    mkdir(dir, 0755);
    setenv("PATH", dir, 1);
    if (smi_stdout) {
        char body[1024];
        /* printf is a shell builtin: PATH holds nothing else */
        snprintf(body, sizeof(body), "#!/bin/sh\nprintf '%%s\\n' '%s'\n", smi_stdout);
        write_file("bin-smi/nvidia-smi", body, 0755);
    }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof(tmp), "/tmp/tm_test_nvml.XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    const char *dir = getenv("TM_FAKE_NVML_DIR");
    if (dir && *dir) {
        snprintf(fake_dir, sizeof(fake_dir), "%s", dir);
    } else {
        char exe[PATH_MAX - 16];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n <= 0)
            return -1;
        exe[n] = '\0';
        *strrchr(exe, '/') = '\0';
        snprintf(fake_dir, sizeof(fake_dir), "%s/../fake", exe);
    }
    snprintf(saved_path, sizeof(saved_path), "%s", getenv("PATH") ? getenv("PATH") : "");
    tm_log_level = TM_LOG_INFO;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* Each test starts from the same environment. */
static int reset_env(void **state)
{
    (void)state;
    unsetenv("TOKENMETER_NVML_LIB");
    unsetenv("FAKE_NVML_SCRIPT");
    unsetenv("FAKE_NVML_TRACE");
    setenv("PATH", saved_path, 1);
    return 0;
}

/* ------------------------------------------------------------------ cases */

/* CASE-03 (c): every query on device 1 returns 15 (GPU_IS_LOST). */
static void case_03_lost_gpu_is_an_error_entry(void **state)
{
    (void)state;
    use_fake("");
    script("init 0\n"
           "device 0 name=\"" A100_40 "\" uuid=" UUID("00") " util=88 mem_used=31457280000 "
           "mem_total=42949672960 power_mw=250120 temp=61\n"
           "device 1 name=\"" A100_40 "\" uuid=" UUID("01") " util=1 mem_used=1 mem_total=2 "
           "power_mw=1 temp=1 all=rc:15\n"
           "device 2 name=\"" A100_40 "\" uuid=" UUID("02") " util=90 mem_used=32505856000 "
           "mem_total=42949672960 power_mw=255800 temp=63\n");
    struct tm_error err;
    struct tm_gpu_source *src = open_nvml(&err);
    if (!src)
        fail_msg("open: %s", err.msg);
    assert_string_equal(tm_gpu_source_name(src), "nvml");
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    poll_ok(src, p);
    assert_int_equal(p->n, 2);
    check_sample(&p->samples[0], 0, A100_40, UUID("00"), 0.88, 30000, 40960, 250.12, 61);
    check_sample(&p->samples[1], 2, A100_40, UUID("02"), 0.90, 31000, 40960, 255.8, 63);
    assert_int_equal(p->nerr, 1);
    assert_int_equal(p->errors[0].gpu_index, 1);
    assert_non_null(strstr(p->errors[0].msg, "GPU is lost"));
    assert_non_null(strstr(p->errors[0].msg, "NVML error 15"));
    free(p);
    tm_gpu_source_close(src);
}

/* CASE-03 (c), a GPU lost after its first queries answered: no partial
 * sample of it, the error names the query that saw it. */
static void case_03_lost_mid_read_no_partial_sample(void **state)
{
    (void)state;
    use_fake("");
    script("device 0 name=\"" A100_40 "\" uuid=" UUID("00") " util=88 mem_used=31457280000 "
           "mem_total=42949672960 power_mw=250120 temp=61\n"
           "device 1 name=\"" A100_40 "\" uuid=" UUID("01") " util=1 mem_used=1 mem_total=2 "
           "power=rc:15 temp=1\n");
    struct tm_error err;
    struct tm_gpu_source *src = open_nvml(&err);
    assert_non_null(src);
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    poll_ok(src, p);
    assert_int_equal(p->n, 1);
    check_sample(&p->samples[0], 0, A100_40, UUID("00"), 0.88, 30000, 40960, 250.12, 61);
    assert_int_equal(p->nerr, 1);
    assert_int_equal(p->errors[0].gpu_index, 1);
    assert_non_null(strstr(p->errors[0].msg, "GPU is lost"));
    assert_non_null(strstr(p->errors[0].msg, "nvmlDeviceGetPowerUsage"));
    free(p);
    tm_gpu_source_close(src);
}

/* CASE-04: nvmlInit_v2 returns 18.  The open fails with NVML's words (from
 * nvmlErrorString, or ours where the library has none); once the driver
 * and the library agree again, the next open works. */
static void case_04_version_mismatch_open_fails(void **state)
{
    (void)state;
    const char *variants[] = {"", "minimal"}; /* with and without nvmlErrorString */
    for (size_t i = 0; i < 2; i++) {
        use_fake(variants[i]);
        script("init 18\n" CASE05_DEVICE0);
        struct tm_error err;
        assert_null(open_nvml(&err));
        assert_int_equal(err.domain, TM_ERR_GPU);
        assert_int_not_equal(err.code, TM_GPU_ERR_ABSENT); /* present but failing */
        if (!strstr(err.msg, "Driver/library version mismatch"))
            fail_msg("variant '%s': %s", variants[i], err.msg);
        assert_non_null(strstr(err.msg, "NVML error 18"));

        script("init 0\n" CASE05_DEVICE0);
        struct tm_gpu_source *src = open_nvml(&err);
        if (!src)
            fail_msg("variant '%s' after recovery: %s", variants[i], err.msg);
        tm_gpu_source_close(src);
    }
}

/* CASE-04: `auto` with NVML mismatched and no nvidia-smi falls to the seed,
 * with the reason logged and kept; without a seed, open says why. */
static void case_04_auto_falls_back_to_seed(void **state)
{
    (void)state;
    use_fake("");
    script("init 18\n" CASE05_DEVICE0);
    path_with_smi(NULL);
    const char *seed = write_file(
        "seed.json",
        "[{\"gpu_index\":0,\"host\":\"node-1\",\"name\":\"" A100_80 "\",\"uuid\":\"" UUID("00")
        "\",\"utilization\":0.25,\"mem_used_mb\":20480,\"mem_total_mb\":81920,"
        "\"power_w\":180.5,\"temperature_c\":50,\"price_per_hour_usd\":3.60}]",
        0644);
    const struct tm_gpu_open_args args = {seed, "node-1", 2000};
    struct tm_error err;
    capture_begin();
    struct tm_gpu_source *src = tm_gpu_source_open("auto", &args, &err);
    char *log = capture_end();
    assert_non_null(src);
    assert_string_equal(tm_gpu_source_name(src), "seed");
    assert_int_equal(count_lines(log, "nvml", "skipped", "Driver/library version mismatch", NULL),
                     1);
    assert_non_null(strstr(tm_gpu_source_degraded(src), "Driver/library version mismatch"));
    free(log);
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    poll_ok(src, p);
    assert_int_equal(p->n, 1);
    const struct tm_gpu_sample *s = &p->samples[0];
    assert_string_equal(s->source, "seed");
    assert_int_equal(s->gpu_index, 0);
    assert_close(s->utilization, 0.25);
    assert_close(s->mem_used_mb, 20480);
    assert_close(s->mem_total_mb, 81920);
    assert_close(s->power_w, 180.5);
    assert_close(s->temperature_c, 50);
    free(p);
    tm_gpu_source_close(src);

    /* Variant: no seed either: the source stays up (it keeps probing, logging
     * each skip reason once), and its polls fail with an explicit error
     * naming the mismatch, never an empty success. */
    capture_begin();
    src = tm_gpu_source_open("auto", &no_seed, &err);
    assert_non_null(src);
    assert_string_equal(tm_gpu_source_name(src), "none");
    p = calloc(1, sizeof(*p));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(tm_gpu_source_poll(src, p, &err), -1);
        assert_int_equal(p->n, 0);
        assert_non_null(strstr(err.msg, "Driver/library version mismatch"));
    }
    log = capture_end();
    assert_int_equal(count_lines(log, "nvml", "skipped", "Driver/library version mismatch", NULL),
                     1);
    free(log);
    free(p);
    tm_gpu_source_close(src);
}

/* CASE-05 (a), the child half: open `auto` with what the parent set up and
 * print the source and GPU 0's values. */
static int case_05a_child(void)
{
    struct tm_error err;
    struct tm_gpu_source *src = tm_gpu_source_open("auto", &no_seed, &err);
    if (!src) {
        printf("none %s\n", err.msg);
        return 1;
    }
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    if (tm_gpu_source_poll(src, p, &err) != 0 || p->n != 1) {
        printf("poll %s\n", err.msg);
        return 1;
    }
    const struct tm_gpu_sample *s = &p->samples[0];
    printf("%s %d %u %.17g %.17g %.17g %.17g %.17g\n", s->source, s->gpu_index, s->valid,
           s->utilization, s->mem_used_mb, s->mem_total_mb, s->power_w, s->temperature_c);
    free(p);
    tm_gpu_source_close(src);
    return 0;
}

/* CASE-05 (a): only libnvidia-ml.so.1, in a directory on LD_LIBRARY_PATH;
 * no override, no nvidia-smi, no seed. */
static void case_05a_loaded_by_soname(void **state)
{
    (void)state;
    script("init 0\n" CASE05_DEVICE0);
    path_with_smi(NULL);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        setenv("LD_LIBRARY_PATH", fake_dir, 1);
        char *argv[] = {"test_nvml", "--case-05a-child", NULL};
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(fds[1]);
    char out[1024] = "";
    size_t len = 0;
    ssize_t r;
    while (len < sizeof(out) - 1 && (r = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child failed (status %d): %s", status, out);
    char source[32];
    int index;
    unsigned valid;
    double util, used, total, power, temp;
    assert_int_equal(sscanf(out, "%31s %d %u %lf %lf %lf %lf %lf", source, &index, &valid, &util,
                            &used, &total, &power, &temp),
                     8);
    assert_string_equal(source, "nvml");
    assert_int_equal(index, 0);
    unsigned all = TM_GPU_NAME | TM_GPU_UUID | TM_GPU_UTIL | TM_GPU_MEM_USED | TM_GPU_MEM_TOTAL |
                   TM_GPU_POWER | TM_GPU_TEMP;
    assert_int_equal(valid, all);
    assert_close(util, 0.37);
    assert_close(used, 10240);
    assert_close(total, 81920);
    assert_close(power, 215.4);
    assert_close(temp, 54);
}

/* CASE-05 (b): a library with only unversioned names and no
 * nvmlDeviceGetPowerUsage: the plain names are bound, power is null. */
static void case_05b_unversioned_names_no_power(void **state)
{
    (void)state;
    use_fake("v1");
    script("init 0\n" CASE05_DEVICE0);
    const char *trace = trace_reset();
    struct tm_error err;
    struct tm_gpu_source *src = open_nvml(&err);
    if (!src)
        fail_msg("open: %s", err.msg);
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    poll_ok(src, p);
    assert_int_equal(p->n, 1);
    assert_int_equal(p->nerr, 0);
    check_sample(&p->samples[0], 0, A100_80, UUID("00"), 0.37, 10240, 81920, NUL_POWER, 54);
    free(p);
    tm_gpu_source_close(src);
    char *calls = slurp(trace);
    assert_non_null(strstr(calls, "nvmlInit\n"));
    assert_non_null(strstr(calls, "nvmlDeviceGetCount\n"));
    assert_non_null(strstr(calls, "nvmlDeviceGetHandleByIndex\n"));
    assert_non_null(strstr(calls, "nvmlShutdown\n"));
    assert_null(strstr(calls, "_v2"));
    assert_null(strstr(calls, "PowerUsage"));
    free(calls);
}

/* CASE-05 (b): where both exist, the newest (_v2) names are the ones bound,
 * and close shuts NVML down. */
static void case_05b_versioned_names_first(void **state)
{
    (void)state;
    use_fake("");
    script("init 0\n" CASE05_DEVICE0);
    const char *trace = trace_reset();
    struct tm_error err;
    struct tm_gpu_source *src = open_nvml(&err);
    assert_non_null(src);
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    poll_ok(src, p);
    check_sample(&p->samples[0], 0, A100_80, UUID("00"), 0.37, 10240, 81920, 215.4, 54);
    free(p);
    tm_gpu_source_close(src);
    char *calls = slurp(trace);
    assert_int_equal(count_lines(calls, "nvmlInit_v2", NULL), 1);
    assert_int_equal(count_lines(calls, "nvmlDeviceGetCount_v2", NULL), 1);
    assert_int_equal(count_lines(calls, "nvmlDeviceGetHandleByIndex_v2", NULL), 1);
    assert_null(strstr(calls, "nvmlInit\n"));
    assert_null(strstr(calls, "nvmlDeviceGetCount\n"));
    assert_null(strstr(calls, "nvmlDeviceGetHandleByIndex\n"));
    assert_int_equal(count_lines(calls, "nvmlShutdown", NULL), 1);
    free(calls);
}

/* CASE-05 (b): only the required symbols: every metric null, no crash (no
 * call through a NULL pointer), the GPU still listed. */
static void case_05b_only_required_symbols(void **state)
{
    (void)state;
    use_fake("minimal");
    script("init 0\n" CASE05_DEVICE0);
    struct tm_error err;
    struct tm_gpu_source *src = open_nvml(&err);
    if (!src)
        fail_msg("open: %s", err.msg);
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    poll_ok(src, p);
    assert_int_equal(p->n, 1);
    assert_int_equal(p->nerr, 0);
    assert_int_equal(p->samples[0].gpu_index, 0);
    assert_int_equal(p->samples[0].valid, 0);
    free(p);
    tm_gpu_source_close(src);
}

/* CASE-05 (b2): neither nvmlInit_v2 nor nvmlInit: NVML is unavailable. */
static void case_05b2_no_init_symbol(void **state)
{
    (void)state;
    use_fake("noinit");
    script("init 0\n" CASE05_DEVICE0);
    struct tm_error err;
    assert_null(open_nvml(&err));
    assert_int_equal(err.domain, TM_ERR_GPU);
    assert_non_null(strstr(err.msg, "lacks nvmlInit_v2 and nvmlInit"));
}

/* CASE-05 (b2) under `auto`: nvidia-smi serves CASE-01's first row. */
static void case_05b2_auto_uses_nvidia_smi(void **state)
{
    (void)state;
    use_fake("noinit");
    script("init 0\n" CASE05_DEVICE0);
    path_with_smi(CASE01_SMI_ROW);
    struct tm_error err;
    struct tm_gpu_source *src = tm_gpu_source_open("auto", &no_seed, &err);
    if (!src)
        fail_msg("open: %s", err.msg);
    assert_string_equal(tm_gpu_source_name(src), "nvidia-smi");
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    poll_ok(src, p);
    assert_int_equal(p->n, 1);
    assert_string_equal(p->samples[0].source, "nvidia-smi");
    assert_close(p->samples[0].utilization, 0.37);
    assert_close(p->samples[0].mem_used_mb, 10240);
    assert_close(p->samples[0].mem_total_mb, 81920);
    assert_close(p->samples[0].power_w, 215.4);
    assert_close(p->samples[0].temperature_c, 54);
    free(p);
    tm_gpu_source_close(src);
}

/* CASE-05 (c): no loadable library: unavailable with the loader's words
 * (a missing file; a file that is no library).  The override stands in for
 * "no driver": on a host with a real NVML, the default names would load. */
static void case_05c_unloadable_library(void **state)
{
    (void)state;
    const char *missing = tmp_path("nowhere/libnvidia-ml.so.1");
    setenv("TOKENMETER_NVML_LIB", missing, 1);
    struct tm_error err;
    assert_null(open_nvml(&err));
    assert_int_equal(err.code, TM_GPU_ERR_ABSENT);
    assert_non_null(strstr(err.msg, "NVML not loadable"));
    assert_non_null(strstr(err.msg, missing));
    assert_non_null(strstr(err.msg, "No such file or directory"));

    setenv("TOKENMETER_NVML_LIB", write_file("not-a-library.so.1", "text\n", 0644), 1);
    assert_null(open_nvml(&err));
    assert_int_equal(err.code, TM_GPU_ERR_ABSENT);
    assert_non_null(strstr(err.msg, "not-a-library.so.1"));
    assert_true(strstr(err.msg, "invalid ELF header") || strstr(err.msg, "too short"));
}

/* CASE-05 (c) under `auto`: nvidia-smi serves, the loader's error is logged
 * once over open and 5 polls (auto re-probes NVML before each). */
static void case_05c_auto_uses_nvidia_smi_logged_once(void **state)
{
    (void)state;
    setenv("TOKENMETER_NVML_LIB", tmp_path("nowhere/libnvidia-ml.so.1"), 1);
    path_with_smi(CASE01_SMI_ROW);
    struct tm_error err;
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    capture_begin();
    struct tm_gpu_source *src = tm_gpu_source_open("auto", &no_seed, &err);
    for (int i = 0; src && i < 5; i++)
        poll_ok(src, p);
    char *log = capture_end();
    if (!src)
        fail_msg("open: %s", err.msg);
    assert_string_equal(tm_gpu_source_name(src), "nvidia-smi");
    assert_int_equal(p->n, 1);
    assert_close(p->samples[0].power_w, 215.4);
    assert_int_equal(count_lines(log, "NVML not loadable", "No such file or directory", NULL), 1);
    free(log);
    free(p);
    tm_gpu_source_close(src);
}

/* CASE-06: power NOT_SUPPORTED on one card of two, 20 polls. */
static void case_06_power_not_supported_one_of_two(void **state)
{
    (void)state;
    use_fake("");
    script("init 0\n" CASE05_DEVICE0 "device 1 name=\"NVIDIA GeForce GTX 1650\" uuid=" UUID("01")
           " util=5 mem_used=536870912 mem_total=4294967296 power=rc:3 temp=38\n");
    struct tm_error err;
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    capture_begin();
    struct tm_gpu_source *src = open_nvml(&err);
    for (int i = 0; src && i < 20; i++) {
        poll_ok(src, p);
        assert_int_equal(p->n, 2);
        assert_int_equal(p->nerr, 0);
        check_sample(&p->samples[0], 0, A100_80, UUID("00"), 0.37, 10240, 81920, 215.4, 54);
        check_sample(&p->samples[1], 1, "NVIDIA GeForce GTX 1650", UUID("01"), 0.05, 512, 4096,
                     NUL_POWER, 38);
    }
    char *log = capture_end();
    assert_non_null(src);
    tm_gpu_source_close(src);
    assert_int_equal(count_lines(log, "NVML GPU 1:", "nvmlDeviceGetPowerUsage", "Not Supported",
                                 NULL),
                     1);
    assert_int_equal(count_lines(log, "NVML GPU 0:", NULL), 0);
    free(log);
    free(p);
}

/* CASE-07: bytes -> MiB and mW -> W, exactly. */
static void case_07_mib_not_mb(void **state)
{
    (void)state;
    use_fake("");
    script("device 0 name=\"Tesla V100-SXM2-16GB\" uuid=" UUID("00") " util=0 mem_used=5242880 "
           "mem_total=17179869184 power_mw=41000 temp=40\n");
    struct tm_error err;
    struct tm_gpu_source *src = open_nvml(&err);
    assert_non_null(src);
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    poll_ok(src, p);
    assert_int_equal(p->n, 1);
    check_sample(&p->samples[0], 0, "Tesla V100-SXM2-16GB", UUID("00"), 0, 5, 16384, 41.0, 40);
    assert_true(p->samples[0].mem_used_mb == 5.0);
    assert_true(p->samples[0].mem_total_mb == 16384.0);
    assert_true(p->samples[0].power_w == 41.0);
    free(p);
    tm_gpu_source_close(src);
}

/* MIG: GPU 0 in MIG mode with devices in slots 0 and 2 (slot 1 empty), GPU
 * 1 without MIG (NOT_SUPPORTED, not logged).  The MIG samples keep
 * gpu_index 0, are named "<GPU name> MIG <n>", carry the MIG UUID and their
 * own memory; utilization, power and temperature are null. */
static void mig_instances(void **state)
{
    (void)state;
    use_fake("");
    script("device 0 name=\"NVIDIA H200\" uuid=" UUID("00") " util=0 mem_used=17782800384 "
           "mem_total=150754820096 power_mw=295010 temp=36 mig=1\n"
           "mig 0 0 uuid=MIG-00000000-0000-0000-0000-000000000000 mem_used=1048576 "
           "mem_total=76235669504 util=50\n"
           "mig 0 2 uuid=MIG-00000002-0000-0000-0000-000000000002 mem_used=0 "
           "mem_total=37580963840\n" CASE05_DEVICE(1));
    struct tm_error err;
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    capture_begin();
    struct tm_gpu_source *src = open_nvml(&err);
    for (int i = 0; src && i < 3; i++)
        poll_ok(src, p);
    char *log = capture_end();
    assert_non_null(src);
    tm_gpu_source_close(src);
    assert_int_equal(p->n, 4);
    assert_int_equal(p->nerr, 0);
    check_sample(&p->samples[0], 0, "NVIDIA H200", UUID("00"), 0, 16959, 143771, 295.01, 36);
    const char *names[] = {"NVIDIA H200 MIG 0", "NVIDIA H200 MIG 2"};
    const char *uuids[] = {"MIG-00000000-0000-0000-0000-000000000000",
                           "MIG-00000002-0000-0000-0000-000000000002"};
    const double used[] = {1, 0}, total[] = {72704, 35840};
    for (int i = 0; i < 2; i++) {
        const struct tm_gpu_sample *s = &p->samples[1 + i];
        assert_int_equal(s->gpu_index, 0);
        assert_string_equal(s->name, names[i]);
        assert_string_equal(s->uuid, uuids[i]);
        assert_int_equal(s->valid,
                         TM_GPU_NAME | TM_GPU_UUID | TM_GPU_MEM_USED | TM_GPU_MEM_TOTAL);
        assert_close(s->mem_used_mb, used[i]);
        assert_close(s->mem_total_mb, total[i]);
        assert_string_equal(s->source, "nvml");
    }
    check_sample(&p->samples[3], 1, A100_80, UUID("00"), 0.37, 10240, 81920, 215.4, 54);
    assert_int_equal(count_lines(log, "NVML GPU", NULL), 0); /* nothing unusual */
    free(log);
    free(p);
}

/* A field failing with 999 (UNKNOWN) poll after poll: null each time,
 * logged once when it starts and once when it answers again (CASE-02's rule
 * applied to NVML). */
static void field_error_logged_once(void **state)
{
    (void)state;
    use_fake("");
    script(CASE05_DEVICE0 "device 0 util=rc:999\n");
    struct tm_error err;
    struct tm_gpu_poll *p = calloc(1, sizeof(*p));
    capture_begin();
    struct tm_gpu_source *src = open_nvml(&err);
    for (int i = 0; src && i < 5; i++) {
        poll_ok(src, p);
        assert_int_equal(p->n, 1);
        assert_false(p->samples[0].valid & TM_GPU_UTIL);
        assert_true(p->samples[0].valid & TM_GPU_POWER);
    }
    script(CASE05_DEVICE0); /* the fake re-reads it at the next poll */
    for (int i = 0; src && i < 3; i++) {
        poll_ok(src, p);
        check_sample(&p->samples[0], 0, A100_80, UUID("00"), 0.37, 10240, 81920, 215.4, 54);
    }
    char *log = capture_end();
    assert_non_null(src);
    tm_gpu_source_close(src);
    assert_int_equal(
        count_lines(log, "NVML GPU 0:", "nvmlDeviceGetUtilizationRates", "Unknown Error", NULL), 1);
    assert_int_equal(count_lines(log, "NVML GPU 0:", "nvmlDeviceGetUtilizationRates",
                                 "answers again", NULL),
                     1);
    assert_int_equal(count_lines(log, "NVML GPU", NULL), 2);
    free(log);
    free(p);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--case-05a-child") == 0)
        return case_05a_child();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(case_03_lost_gpu_is_an_error_entry, reset_env),
        cmocka_unit_test_setup(case_03_lost_mid_read_no_partial_sample, reset_env),
        cmocka_unit_test_setup(case_04_version_mismatch_open_fails, reset_env),
        cmocka_unit_test_setup(case_04_auto_falls_back_to_seed, reset_env),
        cmocka_unit_test_setup(case_05a_loaded_by_soname, reset_env),
        cmocka_unit_test_setup(case_05b_unversioned_names_no_power, reset_env),
        cmocka_unit_test_setup(case_05b_versioned_names_first, reset_env),
        cmocka_unit_test_setup(case_05b_only_required_symbols, reset_env),
        cmocka_unit_test_setup(case_05b2_no_init_symbol, reset_env),
        cmocka_unit_test_setup(case_05b2_auto_uses_nvidia_smi, reset_env),
        cmocka_unit_test_setup(case_05c_unloadable_library, reset_env),
        cmocka_unit_test_setup(case_05c_auto_uses_nvidia_smi_logged_once, reset_env),
        cmocka_unit_test_setup(case_06_power_not_supported_one_of_two, reset_env),
        cmocka_unit_test_setup(case_07_mib_not_mb, reset_env),
        cmocka_unit_test_setup(mig_instances, reset_env),
        cmocka_unit_test_setup(field_error_logged_once, reset_env),
    };
    return cmocka_run_group_tests_name("nvml", tests, setup, teardown);
}
