/*
 * cmd_produce.c - `tokenmeter produce`: replay a request trace (Azure CSV,
 * Mooncake JSONL) or token events (JSON lines) as DESIGN 2.1 events on Kafka.
 *
 * This file wires modules together: trace/ reads records, trace/replay turns
 * them into events, kafka/ configures the client and produces.  What is left
 * here is the command's own business: options, pacing (--speed), progress,
 * delivery accounting, signals, the summary and the exit status.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/timeutil.h"
#include "config/config.h"
#include "kafka/kafka.h"
#include "trace/replay.h"
#include "trace/trace.h"

#define COMPONENT "produce"
#define MAX_LINE_ERRORS 50     /* bad lines reported one by one; the rest are counted */
#define MAX_DELIVERY_ERRORS 5  /* failed deliveries logged one by one */
#define PROGRESS_EVERY_MS 250  /* at most 4 progress updates a second */
#define TOPIC_SETUP_MS 30000   /* bound of creating/checking the topics */

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

struct opts {
    const char *host;  /* NULL: HOST_NAME */
    const char *model;
    long gpus, gpu_offset;
    double speed;      /* 0: as fast as the broker takes it */
    bool has_start;
    int64_t start_ms;
    enum tm_trace_format fmt; /* TM_TRACE_AUTO: from the file name */
    long limit;        /* -1: no limit */
    bool no_progress;
    bool replay_opts;  /* an option that only trace formats use was given */
};

enum {
    OPT_HOST = 1,
    OPT_MODEL,
    OPT_GPUS,
    OPT_GPU_OFFSET,
    OPT_SPEED,
    OPT_START,
    OPT_FORMAT,
    OPT_LIMIT,
    OPT_NO_PROGRESS,
    OPT_HELP,
};

static const struct option extra_options[] = {
    {"host", required_argument, NULL, OPT_HOST},
    {"model", required_argument, NULL, OPT_MODEL},
    {"gpus", required_argument, NULL, OPT_GPUS},
    {"gpu-offset", required_argument, NULL, OPT_GPU_OFFSET},
    {"speed", required_argument, NULL, OPT_SPEED},
    {"start", required_argument, NULL, OPT_START},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tokenmeter produce [options] [TRACE_FILE | -]\n\n"
            "Replays a request trace as token events (DESIGN 2.1) on KAFKA_TOPIC, creating it\n"
            "and its dead-letter topic with TOPIC_PARTITIONS partitions when missing.\n"
            "TRACE_FILE is an Azure LLM inference trace (*.csv), a Mooncake trace (*.jsonl)\n"
            "or, with `-` or no file, token events as JSON lines on stdin (published as\n"
            "they are once valid).  Bad lines are reported with their line number, skipped\n"
            "and counted.  Exit status: 0 all delivered and no line skipped, 1 otherwise\n"
            "(or interrupted), 2 bad option or input file, 3 Kafka unreachable.\n\n"
            "Options:\n"
            "  --host NAME        inference host of the events (default: HOST_NAME)\n"
            "  --model NAME       model of the events (default: unknown)\n"
            "  --gpus N           spread the requests round-robin over N GPUs (default 1)\n"
            "  --gpu-offset K     index of the first of those GPUs (default 0)\n"
            "  --speed N|max      replay at N times the trace's pace, or as fast as the\n"
            "                     broker takes it (default max)\n"
            "  --start RFC3339    event time of the trace start: relative traces (Mooncake)\n"
            "                     default to now (whole seconds); absolute ones keep their\n"
            "                     times unless --start is given\n"
            "  --format F         azure | mooncake | events (default: from the file name)\n"
            "  --limit N          produce only the first N records\n"
            "  --no-progress      no progress line (there is none unless stderr is a TTY)\n"
            "  --help             this text\n"
            "Event ids are <host>/<trace file name>/<line>; message keys <host>/<gpu_index>.\n"
            "librdkafka properties: KAFKA_PROP_<NAME>=value (e.g. KAFKA_PROP_LINGER_MS=20).\n\n");
    tm_config_usage(out);
}

static int parse_long(const char *arg, long min, long max, const char *opt, long *out,
                      struct tm_error *err)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || end == arg || *end != '\0' || v < min || v > max) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "--%s \"%s\": expected an integer from %ld to %ld",
                     opt, arg, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int on_option(void *ctx, int val, const char *arg, struct tm_error *err)
{
    struct opts *o = ctx;
    switch (val) {
    case OPT_HOST:
        o->host = arg;
        o->replay_opts = true;
        return 0;
    case OPT_MODEL:
        o->model = arg;
        o->replay_opts = true;
        return 0;
    case OPT_GPUS:
        o->replay_opts = true;
        return parse_long(arg, 1, TM_EVENT_MAX_GPU_INDEX + 1, "gpus", &o->gpus, err);
    case OPT_GPU_OFFSET:
        o->replay_opts = true;
        return parse_long(arg, 0, TM_EVENT_MAX_GPU_INDEX, "gpu-offset", &o->gpu_offset, err);
    case OPT_SPEED: {
        if (strcmp(arg, "max") == 0) {
            o->speed = 0;
            return 0;
        }
        char *end;
        errno = 0;
        o->speed = strtod(arg, &end);
        if (errno || end == arg || *end != '\0' || !isfinite(o->speed) || o->speed <= 0) {
            tm_error_set(err, TM_ERR_CONFIG, 0,
                         "--speed \"%s\": expected a number > 0 (times real time) or max", arg);
            return -1;
        }
        return 0;
    }
    case OPT_START: {
        struct tm_error e;
        if (tm_parse_rfc3339(arg, strlen(arg), &o->start_ms, &e) < 0) {
            tm_error_set(err, TM_ERR_CONFIG, 0, "--start \"%s\": %s", arg, e.msg);
            return -1;
        }
        o->has_start = true;
        o->replay_opts = true;
        return 0;
    }
    case OPT_FORMAT:
        if ((o->fmt = tm_trace_format_parse(arg)) == TM_TRACE_AUTO) {
            tm_error_set(err, TM_ERR_CONFIG, 0,
                         "--format \"%s\": expected azure, mooncake or events", arg);
            return -1;
        }
        return 0;
    case OPT_LIMIT:
        return parse_long(arg, 0, LONG_MAX, "limit", &o->limit, err);
    case OPT_NO_PROGRESS:
        o->no_progress = true;
        return 0;
    default:
        tm_error_set(err, TM_ERR_CONFIG, 0, "unexpected option");
        return -1;
    }
}

/* ------------------------------------------------------------------------ */
/* The run: counters, progress, delivery reports, signals                   */
/* ------------------------------------------------------------------------ */

static volatile sig_atomic_t stop_signals; /* SIGINT/SIGTERM received so far */

static void on_signal(int sig)
{
    (void)sig;
    if (stop_signals < 100)
        stop_signals++;
}

struct run {
    rd_kafka_t *rk;
    const char *topic;
    long total;      /* records in the file, -1 when unknown */
    long records;    /* valid records read */
    long skipped;    /* bad lines (and records whose event could not be built) */
    long produced;   /* queued in librdkafka: each gets one delivery report */
    long delivered;  /* delivery reports: success */
    long dr_failed;  /* delivery reports: failure */
    long refused;    /* messages librdkafka would not queue, or never reported */
    long last_line;  /* input line of the last message queued */
    bool fatal;      /* the producer failed fatally: the rest was not read */
    bool tty;        /* a progress line is shown */
    bool line_shown; /* the progress line is on screen */
    int64_t t0_ms, last_progress_ms;
};

static void clear_progress(struct run *r)
{
    if (r->line_shown) {
        fputs("\r\033[K", stderr);
        r->line_shown = false;
    }
}

static void progress(struct run *r, bool force)
{
    if (!r->tty)
        return;
    int64_t now = tm_mono_ms();
    if (!force && now - r->last_progress_ms < PROGRESS_EVERY_MS)
        return;
    r->last_progress_ms = now;
    double s = (double)(now - r->t0_ms) / 1000.0;
    double rate = s > 0 ? (double)r->produced / s : 0;
    long done = r->records + r->skipped;
    if (r->total >= 0) {
        char eta[32] = "-";
        double lines_rate = s > 0 ? (double)done / s : 0;
        if (lines_rate > 0) {
            long left = (long)ceil((double)(r->total - done) / lines_rate);
            left = left < 0 ? 0 : left;
            snprintf(eta, sizeof(eta), "%ldm%02lds", left / 60, left % 60);
        }
        fprintf(stderr, "\r\033[Ksent %ld/%ld (%.0f%%)  %.0f msg/s  delivered %ld  ETA %s",
                r->produced, r->total, r->total ? 100.0 * (double)done / (double)r->total : 100.0,
                rate, r->delivered, eta);
    } else {
        fprintf(stderr, "\r\033[Ksent %ld  %.0f msg/s  delivered %ld", r->produced, rate,
                r->delivered);
    }
    r->line_shown = true;
}

/* Report a skipped line: the first MAX_LINE_ERRORS one by one. */
static void report_skipped(struct run *r, const struct tm_error *err)
{
    r->skipped++;
    clear_progress(r);
    if (r->skipped <= MAX_LINE_ERRORS)
        tm_error_log(COMPONENT, "skipped %s", err->msg);
    if (r->skipped == MAX_LINE_ERRORS)
        tm_error_log(COMPONENT, "further bad lines are counted, not shown");
}

static long failed(const struct run *r)
{
    return r->dr_failed + r->refused;
}

/* Count one failed message in @p *counter; log the first few. */
static void report_failed(struct run *r, long *counter, const char *what, const char *why)
{
    (*counter)++;
    clear_progress(r);
    if (failed(r) <= MAX_DELIVERY_ERRORS)
        tm_error_log(COMPONENT, "%s: %s", what, why);
    if (failed(r) == MAX_DELIVERY_ERRORS)
        tm_error_log(COMPONENT, "further failed messages are counted, not shown");
}

/* Delivery report callback: runs in this thread, inside rd_kafka_poll/flush. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    (void)rk;
    struct run *r = opaque;
    if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        r->delivered++;
        return;
    }
    char what[TM_REPLAY_KEY_MAX + 48];
    snprintf(what, sizeof(what), "delivery of a message with key %.*s failed",
             (int)(rkm->key_len < TM_REPLAY_KEY_MAX ? rkm->key_len : TM_REPLAY_KEY_MAX),
             rkm->key ? (const char *)rkm->key : "");
    report_failed(r, &r->dr_failed, what, rd_kafka_err2str(rkm->err));
}

/* ------------------------------------------------------------------------ */
/* Kafka set-up                                                             */
/* ------------------------------------------------------------------------ */

/* The producer: idempotent, acks=all, small batches, lz4 when built in. */
static rd_kafka_t *producer_new(const struct tm_config *cfg, struct run *r, int *msg_timeout_ms,
                                struct tm_error *err)
{
    static const char *const defaults[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "5"},
    };
    rd_kafka_conf_t *conf = tm_kafka_conf_new(cfg, err);
    if (!conf)
        return NULL;
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        if (tm_kafka_conf_set_default(conf, defaults[i][0], defaults[i][1], err) < 0)
            goto fail;
    if (tm_kafka_conf_set_default(conf, "compression.type", "lz4", err) < 0) {
        tm_debug("kafka", "no lz4 (%s): messages are not compressed", err->msg);
        if (tm_kafka_conf_set_default(conf, "compression.type", "none", err) < 0)
            goto fail;
    }
    char buf[32];
    size_t n = sizeof(buf);
    *msg_timeout_ms = 300000; /* librdkafka's default */
    if (rd_kafka_conf_get(conf, "message.timeout.ms", buf, &n) == RD_KAFKA_CONF_OK)
        *msg_timeout_ms = (int)strtol(buf, NULL, 10);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, r);

    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk)
        return rk; /* conf is now rk's */
    tm_error_set(err, TM_ERR_CONFIG, 0, "Kafka producer: %s", errstr);
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The replay loop                                                          */
/* ------------------------------------------------------------------------ */

struct pace {
    double speed; /* 0: no pacing */
    bool started;
    int64_t trace0_ms, wall0_ms;
};

/* Wait until @p trace_ms is due at the chosen speed, serving delivery
 * reports meanwhile.  Returns false when a signal cut the wait short. */
static bool pace_wait(struct pace *p, struct run *r, int64_t trace_ms)
{
    if (p->speed <= 0)
        return true;
    if (!p->started) {
        p->started = true;
        p->trace0_ms = trace_ms;
        p->wall0_ms = tm_mono_ms();
    }
    /* a record earlier than the first one (unsorted trace) is due at once */
    int64_t due = p->wall0_ms + (int64_t)((double)(trace_ms - p->trace0_ms) / p->speed);
    for (int64_t now; !stop_signals && (now = tm_mono_ms()) < due;) {
        rd_kafka_poll(r->rk, due - now < 100 ? (int)(due - now) : 100);
        progress(r, false);
    }
    return !stop_signals;
}

/* Queue one message, waiting (and serving reports) while librdkafka's
 * queue is full.  Returns false when the run must stop (signal, fatal). */
static bool produce_one(struct run *r, const char *key, const void *val, size_t len, long line)
{
    struct tm_error err;
    int rc;
    while ((rc = tm_kafka_produce(r->rk, r->topic, key, strlen(key), val, len, NULL, NULL, 200,
                                  &err)) < 0 &&
           err.code == RD_KAFKA_RESP_ERR__QUEUE_FULL && !stop_signals)
        progress(r, false);
    if (rc == 0) {
        r->produced++;
        r->last_line = line;
        return true;
    }
    if (err.code == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return false; /* interrupted while waiting: this line was not produced */
    char what[64];
    snprintf(what, sizeof(what), "line %ld not produced", line);
    report_failed(r, &r->refused, what, err.msg);
    r->fatal = err.code == RD_KAFKA_RESP_ERR__FATAL;
    return !r->fatal;
}

/* Read, build, pace and produce until the input ends, --limit is reached,
 * a signal arrives or the producer fails fatally.  Returns false on a read
 * error of the input. */
static bool replay(struct run *r, tm_trace_t *tr, struct tm_replay *rp, struct pace *p,
                   long limit)
{
    struct tm_trace_rec rec;
    struct tm_error err;
    char key[TM_REPLAY_KEY_MAX];

    while (!stop_signals && (limit < 0 || r->records < limit)) {
        if (rd_kafka_fatal_error(r->rk, NULL, 0)) {
            r->fatal = true; /* logged by the error callback; reports follow in the flush */
            return true;
        }
        enum tm_trace_status st = tm_trace_next(tr, &rec, &err);
        if (st == TM_TRACE_END)
            return true;
        if (st == TM_TRACE_FAILED) {
            if (stop_signals) /* EINTR from a signal while reading stdin */
                return true;
            clear_progress(r);
            tm_error_log(COMPONENT, "%s", err.msg);
            return false;
        }
        if (st == TM_TRACE_BAD_LINE) {
            report_skipped(r, &err);
            continue;
        }
        r->records++;

        char *json = NULL;
        const void *val;
        size_t len;
        if (rec.event) { /* token events are published as they are */
            tm_replay_key(rec.event->host, rec.event->gpu_index, key, sizeof(key));
            val = rec.raw;
            len = rec.raw_len;
        } else {
            if (!(json = tm_replay_encode(rp, &rec, key, sizeof(key), &err))) {
                report_skipped(r, &err);
                continue;
            }
            val = json;
            len = strlen(json);
        }
        bool go_on = pace_wait(p, r, rec.ts_ms) && produce_one(r, key, val, len, rec.line);
        free(json);
        if (!go_on)
            return true;
        rd_kafka_poll(r->rk, 0);
        progress(r, false);
    }
    return true;
}

/* Wait for the delivery report of every queued message.  librdkafka
 * reports each within message.timeout.ms; a second signal, or that bound
 * passing, purges what is left (reported as failed). */
static void drain(struct run *r, int msg_timeout_ms)
{
    int64_t bound = tm_mono_ms() + msg_timeout_ms + 10000;
    bool purged = false;
    while (r->delivered + r->dr_failed < r->produced) {
        if (!purged && (stop_signals >= 2 || tm_mono_ms() > bound)) {
            clear_progress(r);
            tm_warn(COMPONENT, "giving up on %ld unconfirmed messages",
                    r->produced - r->delivered - r->dr_failed);
            rd_kafka_purge(r->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            purged = true;
            bound = tm_mono_ms() + 10000;
        } else if (purged && tm_mono_ms() > bound) {
            r->refused += r->produced - r->delivered - r->dr_failed; /* never reported */
            r->produced = r->delivered + r->dr_failed;
            break;
        }
        rd_kafka_flush(r->rk, 100);
        progress(r, false);
    }
}

/* ------------------------------------------------------------------------ */
/* The command                                                              */
/* ------------------------------------------------------------------------ */

static int fail_usage(const char *msg)
{
    fprintf(stderr, "tokenmeter produce: %s (see tokenmeter produce --help)\n", msg);
    return TM_EXIT_USAGE;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int tm_cmd_produce(int argc, char **argv)
{
    struct tm_config cfg;
    struct tm_error err = {0};
    struct opts o = {.model = "unknown", .gpus = 1, .limit = -1};
    struct tm_replay rp = {0};
    struct run r = {.total = -1};
    tm_trace_t *tr = NULL;
    FILE *fp = NULL;
    int rc = TM_EXIT_USAGE, nargs;
    char **args = argv;
    nargs = argc;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return TM_EXIT_OK;
        }
    int first = -1;
    if (tm_config_init(&cfg, &err) == 0)
        first = tm_config_parse_args(&cfg, nargs, args, extra_options, on_option, &o, &err);
    if (first < 0) {
        rc = fail_usage(err.msg);
        goto out;
    }
    if (nargs - first > 1) {
        rc = fail_usage("expected one trace file (or -)");
        goto out;
    }
    const char *path = first < nargs ? args[first] : "-";
    bool from_stdin = strcmp(path, "-") == 0;
    enum tm_trace_format fmt = o.fmt ? o.fmt : tm_trace_format_from_path(path);
    if (fmt == TM_TRACE_AUTO) {
        tm_error_set(&err, TM_ERR_CONFIG, 0,
                     "%s: cannot tell the format from the name: use --format azure, mooncake "
                     "or events", path);
        rc = fail_usage(err.msg);
        goto out;
    }
    if (fmt == TM_TRACE_EVENTS && o.replay_opts) {
        rc = fail_usage("--host, --model, --gpus, --gpu-offset and --start do not apply to "
                        "token events, which are published as they are");
        goto out;
    }
    struct tm_replay_opts ro = {
        .host = o.host ? o.host : cfg.host_name,
        .model = o.model,
        .source = from_stdin ? "stdin" : base_name(path),
        .gpus = (int)o.gpus,
        .gpu_offset = (int)o.gpu_offset,
        /* relative traces start now (whole seconds) unless --start says when */
        .anchor_ms = o.has_start ? o.start_ms : tm_now_ms() / 1000 * 1000,
        .shift_absolute = o.has_start,
    };
    if (tm_replay_check(&ro, &err) < 0) {
        rc = fail_usage(err.msg);
        goto out;
    }
    tm_replay_init(&rp, &ro);

    if (!(fp = from_stdin ? stdin : fopen(path, "r"))) {
        tm_error_errno(&err, "%s", path);
        rc = fail_usage(err.msg);
        goto out;
    }
    r.tty = !o.no_progress && isatty(STDERR_FILENO);
    struct stat sb;
    if (r.tty && !from_stdin && fstat(fileno(fp), &sb) == 0 && S_ISREG(sb.st_mode)) {
        if (tm_trace_count_records(fp, fmt, &r.total, &err) < 0 || fseeko(fp, 0, SEEK_SET) < 0)
            r.total = -1;
        else if (o.limit >= 0 && o.limit < r.total)
            r.total = o.limit;
    }
    if (!(tr = tm_trace_new(fp, fmt, from_stdin ? "stdin" : path, &err))) {
        fprintf(stderr, "tokenmeter produce: %s\n", err.msg);
        rc = err.domain == TM_ERR_SYS ? TM_EXIT_FAILURE : TM_EXIT_USAGE;
        goto out;
    }

    int msg_timeout_ms;
    r.topic = cfg.kafka_topic;
    if (!(r.rk = producer_new(&cfg, &r, &msg_timeout_ms, &err))) {
        fprintf(stderr, "tokenmeter produce: %s\n", err.msg);
        goto out;
    }
    const char *topics[] = {cfg.kafka_topic, cfg.kafka_dlq_topic};
    if (tm_kafka_ensure_topics(r.rk, topics, 2, (int)cfg.partitions, TOPIC_SETUP_MS, &err) < 0) {
        fprintf(stderr, "tokenmeter produce: Kafka at %s: %s\n", cfg.kafka_bootstrap, err.msg);
        rc = err.retriable ? TM_EXIT_UNAVAILABLE : TM_EXIT_FAILURE;
        goto out;
    }
    if (fmt == TM_TRACE_EVENTS)
        tm_info(COMPONENT, "producing token events from %s to %s", path, cfg.kafka_topic);
    else
        tm_info(COMPONENT, "producing %s trace %s to %s as host %s, model %s, GPUs %ld..%ld, "
                "speed %s", tm_trace_format_name(fmt), path, cfg.kafka_topic, ro.host, ro.model,
                o.gpu_offset, o.gpu_offset + o.gpus - 1, o.speed > 0 ? "paced" : "max");

    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: a read of stdin stops */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct pace pace = {.speed = o.speed};
    r.t0_ms = tm_mono_ms();
    bool read_ok = replay(&r, tr, &rp, &pace, o.limit);
    bool interrupted = stop_signals > 0;
    drain(&r, msg_timeout_ms);
    progress(&r, true);
    clear_progress(&r);

    double secs = (double)(tm_mono_ms() - r.t0_ms) / 1000.0;
    if (interrupted)
        tm_warn(COMPONENT, "interrupted: nothing produced after line %ld", r.last_line);
    fprintf(stderr, "produced: %ld delivered, %ld failed, %ld skipped lines, in %.1f s (%.0f "
            "msg/s)\n", r.delivered, failed(&r), r.skipped, secs,
            secs > 0 ? (double)r.delivered / secs : 0.0);
    rc = !interrupted && read_ok && !r.fatal && failed(&r) == 0 && r.skipped == 0
             ? TM_EXIT_OK
             : TM_EXIT_FAILURE;
out:
    if (r.rk)
        rd_kafka_destroy(r.rk);
    tm_trace_destroy(tr);
    if (fp && fp != stdin)
        fclose(fp);
    tm_replay_free(&rp);
    tm_config_free(&cfg);
    return rc;
}
