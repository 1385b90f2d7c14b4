/*
 * gpu_smi.c - the `nvidia-smi` GPU source (DESIGN 2.2, 6).
 *
 * Each poll runs `nvidia-smi --query-gpu=<TM_SMI_QUERY>
 * --format=csv,noheader,nounits` from PATH as a child process (posix_spawnp,
 * in its own process group), reads its stdout and stderr through pipes with
 * poll() under a deadline, and hands the text to the pure parser
 * (gpu_smi_parse.c).  popen() is not used because it cannot time out: a hung
 * nvidia-smi (a wedged GPU, a stuck driver) is killed with SIGKILL and
 * reaped, never waited on forever.  Not a parser and not a scheduler: what to
 * do with a failed poll is the caller's business (gpu.c, proc.c).
 *
 * Rows survive a non-zero exit status (nvidia-smi exits 15 when one GPU is
 * lost but still prints the others, CASE-03).  A field that stays null is
 * logged when it becomes null and when it comes back, not on every poll
 * (CASE-02); that state is per source, in struct smi.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/timeutil.h"
#include "gpu/gpu.h"
#include "gpu/gpu_smi_parse.h"

extern char **environ;

#define SMI_DEFAULT_TIMEOUT_MS 5000
#define SMI_MAX_OUTPUT (1u << 20) /* far above 128 GPUs x ~150 bytes */
#define SMI_KILL_WAIT_MS 1000     /* after SIGKILL, how long to wait for the exit */
#define SMI_MAX_STUCK 8           /* killed children not yet reaped (D state) */

struct smi {
    char host[256];
    int timeout_ms;
    struct tm_smi_why why[TM_GPU_MAX];
    struct {
        int gpu_index;
        unsigned nulls; /* 1 << enum tm_smi_field of the fields null last poll */
    } seen[TM_GPU_MAX];
    size_t nseen;
};

/* One run of nvidia-smi. */
struct smi_run {
    char *out; /* stdout, owned */
    size_t len;
    int status;        /* as waitpid() returns it */
    char errline[200]; /* first line of stderr, "" if none */
    bool errdone;      /* errline complete */
};

/* ------------------------------------------------------- child processes */

/* Children killed after a timeout that did not exit within SMI_KILL_WAIT_MS
 * (a process in uninterruptible sleep inside the driver dies only when the
 * driver lets go).  Reaped by later runs; shared by every source. */
static pthread_mutex_t stuck_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t stuck[SMI_MAX_STUCK];
static size_t nstuck;

/* Reap what can be reaped; returns how many are still stuck. */
static size_t reap_stuck(void)
{
    pthread_mutex_lock(&stuck_mu);
    for (size_t i = 0; i < nstuck;) {
        pid_t r = waitpid(stuck[i], NULL, WNOHANG);
        if (r == stuck[i] || (r < 0 && errno == ECHILD))
            stuck[i] = stuck[--nstuck];
        else
            i++;
    }
    size_t n = nstuck;
    pthread_mutex_unlock(&stuck_mu);
    return n;
}

static void remember_stuck(pid_t pid)
{
    pthread_mutex_lock(&stuck_mu);
    if (nstuck < SMI_MAX_STUCK)
        stuck[nstuck++] = pid;
    pthread_mutex_unlock(&stuck_mu);
}

/* Wait for @p pid until the monotonic time @p until.  1 = reaped (*status
 * set), 0 = still running.  ECHILD (SIGCHLD ignored: already reaped by the
 * kernel) counts as reaped with an unknown status, read as 0. */
static int wait_until(pid_t pid, int64_t until, int *status)
{
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 1;
        if (r < 0 && errno == ECHILD) {
            *status = 0;
            return 1;
        }
        if (tm_mono_ms() >= until)
            return 0;
        nanosleep(&(struct timespec){0, 2 * 1000 * 1000}, NULL);
    }
}

/* SIGKILL the child's process group (a wrapper script's children too). */
static void kill_child(pid_t pid, int *status)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    if (!wait_until(pid, tm_mono_ms() + SMI_KILL_WAIT_MS, status)) {
        tm_warn("gpu", "nvidia-smi (pid %ld) did not exit after SIGKILL; reaping it later",
                (long)pid);
        remember_stuck(pid);
    }
}

static pid_t spawn_smi(int *out_fd, int *err_fd, struct tm_error *err)
{
    char a0[] = "nvidia-smi", a1[] = "--query-gpu=" TM_SMI_QUERY,
         a2[] = "--format=csv,noheader,nounits";
    char *argv[] = {a0, a1, a2, NULL};
    int op[2], ep[2];
    if (pipe2(op, O_CLOEXEC) < 0) {
        tm_error_errno(err, "nvidia-smi: pipe");
        return -1;
    }
    if (pipe2(ep, O_CLOEXEC) < 0) {
        tm_error_errno(err, "nvidia-smi: pipe");
        close(op[0]);
        close(op[1]);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dfl;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, op[1], 1);
    posix_spawn_file_actions_adddup2(&fa, ep[1], 2);
    posix_spawnattr_init(&at);
    /* Own process group (so a timeout kills all of it), no inherited signal
     * mask, and default dispositions even if this daemon ignores SIGPIPE. */
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&at, 0);
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGHUP);
    posix_spawnattr_setsigdefault(&at, &dfl);
    pid_t pid;
    int rc = posix_spawnp(&pid, "nvidia-smi", &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(op[1]);
    close(ep[1]);
    if (rc != 0) {
        close(op[0]);
        close(ep[0]);
        errno = rc;
        if (rc == ENOENT)
            tm_error_set(err, TM_ERR_GPU, TM_GPU_ERR_ABSENT, "nvidia-smi not found on PATH");
        else
            tm_error_errno(err, "cannot run nvidia-smi");
        return -1;
    }
    *out_fd = op[0];
    *err_fd = ep[0];
    return pid;
}

/* Keep the first non-blank line of stderr in r->errline; drop the rest. */
static void keep_errline(struct smi_run *r, const char *p, size_t n)
{
    size_t have = strlen(r->errline);
    for (size_t i = 0; i < n && !r->errdone; i++) {
        if (p[i] == '\n' || p[i] == '\r')
            r->errdone = have > 0;
        else if (have < sizeof(r->errline) - 1)
            r->errline[have++] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
    }
    r->errline[have] = '\0';
}

/**
 * Run nvidia-smi once: its stdout in r->out (owned by the caller on success,
 * free() it), its exit status and first stderr line.  -1 (TM_ERR_GPU or
 * TM_ERR_SYS) when it cannot be started, times out, or floods stdout.
 */
static int run_smi(int timeout_ms, struct smi_run *r, struct tm_error *err)
{
    memset(r, 0, sizeof(*r));
    size_t n = reap_stuck();
    if (n >= SMI_MAX_STUCK) {
        tm_error_set(err, TM_ERR_GPU, 0,
                     "%zu earlier nvidia-smi runs are stuck after SIGKILL; not starting another",
                     n);
        return -1;
    }
    int out_fd, err_fd;
    pid_t pid = spawn_smi(&out_fd, &err_fd, err);
    if (pid < 0)
        return -1;

    int64_t deadline = tm_mono_ms() + timeout_ms;
    struct pollfd pfd[2] = {{.fd = out_fd, .events = POLLIN}, {.fd = err_fd, .events = POLLIN}};
    size_t cap = 0;
    enum { OK, TIMED_OUT, FLOODED, POLL_FAILED } fail = OK;
    int poll_errno = 0;
    while (fail == OK && (pfd[0].fd >= 0 || pfd[1].fd >= 0)) {
        int64_t left = deadline - tm_mono_ms();
        if (left <= 0) {
            fail = TIMED_OUT;
            break;
        }
        if (poll(pfd, 2, (int)left) < 0) {
            if (errno != EINTR) {
                fail = POLL_FAILED;
                poll_errno = errno;
            }
            continue;
        }
        for (int i = 0; i < 2; i++) {
            if (pfd[i].fd < 0 || !pfd[i].revents)
                continue;
            char chunk[4096];
            ssize_t k = read(pfd[i].fd, chunk, sizeof(chunk));
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                close(pfd[i].fd);
                pfd[i].fd = -1;
            } else if (i == 1) {
                keep_errline(r, chunk, (size_t)k);
            } else if (r->len + (size_t)k > SMI_MAX_OUTPUT) {
                fail = FLOODED;
            } else {
                if (r->len + (size_t)k > cap) {
                    cap = cap ? cap * 2 : 8192;
                    r->out = tm_xrealloc(r->out, cap);
                }
                memcpy(r->out + r->len, chunk, (size_t)k);
                r->len += (size_t)k;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (pfd[i].fd >= 0)
            close(pfd[i].fd);
    /* Output complete: the exit follows at once, unless it hangs after
     * closing stdout, which the same deadline covers. */
    if (fail == OK && !wait_until(pid, deadline, &r->status))
        fail = TIMED_OUT;
    if (fail == OK)
        return 0;
    kill_child(pid, &r->status);
    free(r->out);
    r->out = NULL;
    if (fail == TIMED_OUT) {
        tm_error_set(err, TM_ERR_GPU, 0, "nvidia-smi timed out after %d ms", timeout_ms);
    } else if (fail == FLOODED) {
        tm_error_set(err, TM_ERR_GPU, 0, "nvidia-smi printed more than %u bytes; killed",
                     SMI_MAX_OUTPUT);
    } else {
        errno = poll_errno;
        tm_error_errno(err, "nvidia-smi: poll");
    }
    if (err)
        err->retriable = true;
    return -1;
}

/* "exited with status 15", "killed by signal 9". */
static void describe_status(int status, char *buf, size_t size)
{
    if (WIFEXITED(status))
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, size, "ended with wait status %d", status);
}

/**
 * Parse a run into @p out.  -1 (TM_ERR_GPU) when it holds no GPU row: the
 * message gives the exit status and the first error sentence (stdout) or
 * stderr line; out->errors keeps the per-line entries for the caller.  With
 * rows but a non-zero status and no sentence explaining it, adds an error
 * entry so the failure is not silent.
 */
static int collect(const char *host, const struct smi_run *r, struct tm_gpu_poll *out,
                   struct tm_smi_why *why, struct tm_error *err)
{
    struct tm_error perr;
    int prc = tm_smi_parse_why(r->out ? r->out : "", r->len, host, out, why, &perr);
    char st[48];
    describe_status(r->status, st, sizeof(st));
    bool failed = !(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
    if (out->n == 0) {
        const char *why_text = out->nerr ? out->errors[0].msg
                               : r->errline[0] ? r->errline
                               : prc < 0       ? perr.msg
                                               : "no GPU rows";
        char more[32] = "";
        if (out->nerr > 1)
            snprintf(more, sizeof(more), " (+%zu more)", out->nerr - 1);
        tm_error_set(err, TM_ERR_GPU, 0, "nvidia-smi %s: %s%s",
                     failed ? st : "printed no GPU rows", why_text, more);
        if (err)
            err->retriable = true;
        return -1;
    }
    if (failed && out->nerr == 0) {
        struct tm_gpu_error *e = &out->errors[out->nerr++];
        memset(e, 0, sizeof(*e));
        e->gpu_index = -1;
        snprintf(e->msg, sizeof(e->msg), "nvidia-smi %s: %.150s", st,
                 r->errline[0] ? r->errline : "(no message)");
    }
    return 0;
}

/* ---------------------------------------------------------------- backend */

static bool on_path(const char *file)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin"; /* what posix_spawnp searches then */
    for (const char *p = path;; p++) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char full[4096];
        struct stat sb;
        if (snprintf(full, sizeof(full), "%.*s/%s", n ? (int)n : 1, n ? p : ".", file) <
                (int)sizeof(full) &&
            stat(full, &sb) == 0 && S_ISREG(sb.st_mode) && access(full, X_OK) == 0)
            return true;
        if (!end)
            return false;
        p = end;
    }
}

/* Log a field of a GPU when it turns null and when it comes back (CASE-02):
 * two lines per episode, whatever the number of polls. */
static void log_null_changes(struct smi *smi, const struct tm_gpu_poll *out)
{
    for (size_t i = 0; i < out->n; i++) {
        const struct tm_gpu_sample *s = &out->samples[i];
        unsigned nulls = 0;
        for (int f = 0; f < TM_SMI_NFIELDS; f++)
            if (!(s->valid & tm_smi_field_bit[f]))
                nulls |= 1u << f;
        size_t k = 0;
        while (k < smi->nseen && smi->seen[k].gpu_index != s->gpu_index)
            k++;
        if (k == smi->nseen) {
            if (k == TM_GPU_MAX)
                continue;
            smi->seen[k].gpu_index = s->gpu_index;
            smi->seen[k].nulls = 0;
            smi->nseen++;
        }
        unsigned was = smi->seen[k].nulls;
        for (int f = 0; f < TM_SMI_NFIELDS; f++) {
            unsigned bit = 1u << f;
            if ((nulls & bit) && !(was & bit)) {
                const char *why = smi->why[i].text[f];
                /* A placeholder of an unsupported field is normal; anything
                 * else (an error token, a malformed value) deserves a warning. */
                bool normal = !strcmp(why, "[N/A]") || !strcmp(why, "N/A") ||
                              !strcmp(why, "[Not Supported]");
                tm_log(normal ? TM_LOG_INFO : TM_LOG_WARN, "gpu",
                       "nvidia-smi: GPU %d %s not reported (%s); null until it is",
                       s->gpu_index, tm_smi_field_column[f], why[0] ? why : "no value");
            } else if (!(nulls & bit) && (was & bit)) {
                tm_info("gpu", "nvidia-smi: GPU %d %s reported again", s->gpu_index,
                        tm_smi_field_column[f]);
            }
        }
        smi->seen[k].nulls = nulls;
    }
}

/* Unavailable (-1) when nvidia-smi is not on PATH (code TM_GPU_ERR_ABSENT)
 * or its first run gives no GPU row (CASE-04: the version-mismatch text). */
static int smi_open(void **priv, const struct tm_gpu_open_args *args, struct tm_error *err)
{
    if (!on_path("nvidia-smi")) {
        tm_error_set(err, TM_ERR_GPU, TM_GPU_ERR_ABSENT, "nvidia-smi not found on PATH");
        return -1;
    }
    struct smi *smi = tm_xcalloc(1, sizeof(*smi));
    snprintf(smi->host, sizeof(smi->host), "%s", args->host ? args->host : "");
    smi->timeout_ms = args->smi_timeout_ms > 0 ? args->smi_timeout_ms : SMI_DEFAULT_TIMEOUT_MS;
    struct tm_gpu_poll *probe = tm_xmalloc(sizeof(*probe));
    struct smi_run r;
    int rc = run_smi(smi->timeout_ms, &r, err);
    if (rc == 0) {
        rc = collect(smi->host, &r, probe, NULL, err);
        free(r.out);
    }
    free(probe);
    if (rc < 0) {
        free(smi);
        return -1;
    }
    *priv = smi;
    return 0;
}

static int smi_poll(void *priv, struct tm_gpu_poll *out, struct tm_error *err)
{
    struct smi *smi = priv;
    struct smi_run r;
    if (run_smi(smi->timeout_ms, &r, err) < 0)
        return -1;
    int rc = collect(smi->host, &r, out, smi->why, err);
    free(r.out);
    if (rc == 0)
        log_null_changes(smi, out);
    return rc;
}

static void smi_close(void *priv)
{
    free(priv);
}

/**
 * The `nvidia-smi` backend (name "nvidia-smi"), registered in gpu.c.
 * open: -1 when nvidia-smi is not on PATH (code TM_GPU_ERR_ABSENT) or its
 * first run gives no GPU row (the reason: exit status and its message).
 * poll: runs it once under args->smi_timeout_ms (5000 when <= 0); 0 with the
 * rows and the error sentences, or -1 (TM_ERR_GPU, retriable) when no row was
 * parsed, out->errors still holding the sentences.  Samples: utilization
 * 0..1, memory MiB, power W, temperature degrees C.  One source is not
 * thread-safe (poll it from one thread); sources are independent.
 */
const struct tm_gpu_source_ops tm_gpu_smi_ops = {
    .abi = 1,
    .name = "nvidia-smi",
    .open = smi_open,
    .poll = smi_poll,
    .close = smi_close,
};
