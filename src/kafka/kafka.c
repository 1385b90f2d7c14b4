/*
 * kafka.c - librdkafka configuration, logging, topic set-up and a produce
 * call with back-pressure (see kafka.h).
 *
 * What it is not: no consumer loop, no delivery bookkeeping and no event
 * format here; those belong to the commands that use a client.  Every
 * librdkafka error is translated to struct tm_error at this boundary.
 */
#include "kafka/kafka.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/timeutil.h"

#define COMPONENT "kafka"

/* ------------------------------------------------------------------------ */
/* Errors and logs                                                          */
/* ------------------------------------------------------------------------ */

static bool is_retriable(rd_kafka_resp_err_t code)
{
    switch (code) {
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_NOT_CONTROLLER:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
        return true;
    default:
        return false;
    }
}

void tm_kafka_error(struct tm_error *err, rd_kafka_resp_err_t code, const char *fmt, ...)
{
    if (!err)
        return;
    char ctx[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof(ctx), fmt, ap);
    va_end(ap);
    tm_error_set(err, TM_ERR_KAFKA, (int)code, "%s: %s", ctx, rd_kafka_err2str(code));
    err->retriable = is_retriable(code);
}

/* librdkafka's syslog levels (0 emerg .. 7 debug) -> tm_log levels. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    int l = level <= 3 ? TM_LOG_ERROR : level == 4 ? TM_LOG_WARN : level <= 6 ? TM_LOG_INFO
                                                                              : TM_LOG_DEBUG;
    tm_log(l, COMPONENT, "%s %s: %s", rk ? rd_kafka_name(rk) : "rdkafka", fac, buf);
}

/* Client-level errors.  Connection failures are already in the log as
 * librdkafka "FAIL" lines, so they are only repeated at debug level. */
static void error_cb(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    (void)opaque;
    if (code == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));
        tm_error_log(COMPONENT, "%s: fatal error: %s: %s", rd_kafka_name(rk),
                     rd_kafka_err2name(orig), why);
        return;
    }
    int l = code == RD_KAFKA_RESP_ERR__TRANSPORT || code == RD_KAFKA_RESP_ERR__RESOLVE
                ? TM_LOG_DEBUG
                : TM_LOG_WARN;
    tm_log(l, COMPONENT, "%s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name(code), reason);
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, const char *via,
                    struct tm_error *err)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "%s (librdkafka property %s): %s", via, name,
                     errstr);
        return -1;
    }
    return 0;
}

/* "security.protocol" -> "KAFKA_PROP_SECURITY_PROTOCOL"; -1 when too long. */
static int env_name_of(const char *prop, char *buf, size_t size)
{
    size_t p = strlen(TM_KAFKA_ENV_PREFIX), n = strlen(prop);
    if (p + n + 1 > size)
        return -1;
    memcpy(buf, TM_KAFKA_ENV_PREFIX, p);
    for (size_t i = 0; i <= n; i++)
        buf[p + i] = prop[i] == '.' ? '_' : (char)toupper((unsigned char)prop[i]);
    return 0;
}

/* Apply every KAFKA_PROP_<NAME>=value of the environment. */
static int apply_env(rd_kafka_conf_t *conf, struct tm_error *err)
{
    const size_t plen = strlen(TM_KAFKA_ENV_PREFIX);
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, TM_KAFKA_ENV_PREFIX, plen) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        char var[160], prop[160];
        size_t vlen = (size_t)(eq - *e), n = vlen - plen;
        snprintf(var, sizeof(var), "%.*s", (int)vlen, *e);
        if (n == 0 || n >= sizeof(prop)) {
            tm_error_set(err, TM_ERR_CONFIG, 0, "%s: expected %s<PROPERTY>, e.g. "
                         "%sSECURITY_PROTOCOL", var, TM_KAFKA_ENV_PREFIX, TM_KAFKA_ENV_PREFIX);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            char c = (*e)[plen + i];
            prop[i] = c == '_' ? '.' : (char)tolower((unsigned char)c);
        }
        prop[n] = '\0';
        if (strcmp(prop, "bootstrap.servers") == 0) {
            tm_warn(COMPONENT, "%s ignored: the brokers are set by KAFKA_BOOTSTRAP "
                    "(--kafka-bootstrap)", var);
            continue;
        }
        if (conf_set(conf, prop, eq + 1, var, err) < 0)
            return -1;
        tm_debug(COMPONENT, "librdkafka property %s set from %s", prop, var);
    }
    return 0;
}

rd_kafka_conf_t *tm_kafka_conf_new(const struct tm_config *cfg, struct tm_error *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    if (conf_set(conf, "client.id", "tokenmeter", "client.id", err) < 0 ||
        apply_env(conf, err) < 0 ||
        conf_set(conf, "bootstrap.servers", cfg->kafka_bootstrap, "KAFKA_BOOTSTRAP", err) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

int tm_kafka_conf_set_default(rd_kafka_conf_t *conf, const char *name, const char *value,
                              struct tm_error *err)
{
    char var[160];
    if (env_name_of(name, var, sizeof(var)) == 0 && getenv(var))
        return 0; /* the environment's value is already in conf */
    return conf_set(conf, name, value, name, err);
}

/* ------------------------------------------------------------------------ */
/* Topics                                                                   */
/* ------------------------------------------------------------------------ */

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - tm_mono_ms();
    return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/*
 * Look @p topic up in one all-topics metadata request.  Returns its
 * partition count (>= 1), 0 when it is absent or not ready yet (*why says
 * why), or -1 when the metadata request itself failed (err set).
 */
static int lookup_topic(rd_kafka_t *rk, const char *topic, int timeout_ms,
                        rd_kafka_resp_err_t *why, struct tm_error *err)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms > 0 ? timeout_ms : 1);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        tm_kafka_error(err, e, "metadata from %s", rd_kafka_name(rk));
        return -1;
    }
    int cnt = 0;
    *why = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    for (int i = 0; i < md->topic_cnt; i++) {
        if (strcmp(md->topics[i].topic, topic) != 0)
            continue;
        *why = md->topics[i].err;
        if (md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
            cnt = md->topics[i].partition_cnt;
        break;
    }
    rd_kafka_metadata_destroy(md);
    return cnt;
}

int tm_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms,
                             struct tm_error *err)
{
    rd_kafka_resp_err_t why;
    int cnt = lookup_topic(rk, topic, timeout_ms, &why, err);
    if (cnt == 0) {
        tm_kafka_error(err, why, "topic %s", topic);
        return -1;
    }
    return cnt;
}

/* Create @p cnt topics with one CreateTopics request; TOPIC_ALREADY_EXISTS is fine. */
static int create_topics(rd_kafka_t *rk, const char *const *names, size_t cnt, int partitions,
                         int64_t deadline, struct tm_error *err)
{
    char errstr[512];
    int rc = -1;
    rd_kafka_NewTopic_t **nt = tm_xcalloc(cnt, sizeof(*nt));
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_event_t *ev = NULL;

    for (size_t i = 0; i < cnt; i++) {
        /* replication factor -1: the broker's default.replication.factor */
        nt[i] = rd_kafka_NewTopic_new(names[i], partitions, -1, errstr, sizeof(errstr));
        if (!nt[i]) {
            tm_error_set(err, TM_ERR_KAFKA, RD_KAFKA_RESP_ERR__INVALID_ARG, "topic %s: %s",
                         names[i], errstr);
            goto out;
        }
    }
    int left = remaining_ms(deadline);
    if (rd_kafka_AdminOptions_set_operation_timeout(opts, left, errstr, sizeof(errstr)) ||
        rd_kafka_AdminOptions_set_request_timeout(opts, left > 0 ? left : 1, errstr,
                                                  sizeof(errstr))) {
        tm_error_set(err, TM_ERR_KAFKA, RD_KAFKA_RESP_ERR__INVALID_ARG, "CreateTopics: %s",
                     errstr);
        goto out;
    }
    rd_kafka_CreateTopics(rk, nt, cnt, opts, q);
    /* the request times out by itself; the extra second lets its result arrive */
    ev = rd_kafka_queue_poll(q, left + 1000);
    if (!ev) {
        tm_kafka_error(err, RD_KAFKA_RESP_ERR__TIMED_OUT, "CreateTopics");
        goto out;
    }
    if (rd_kafka_event_error(ev)) {
        tm_kafka_error(err, rd_kafka_event_error(ev), "CreateTopics (%s)",
                       rd_kafka_event_error_string(ev));
        goto out;
    }
    size_t rcnt;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &rcnt);
    for (size_t i = 0; i < rcnt; i++) {
        const char *name = rd_kafka_topic_result_name(res[i]);
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            tm_info(COMPONENT, "created topic %s with %d partitions", name, partitions);
        } else if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            tm_debug(COMPONENT, "topic %s was created concurrently", name);
        } else {
            const char *msg = rd_kafka_topic_result_error_string(res[i]);
            tm_kafka_error(err, e, "create topic %s (%s)", name, msg ? msg : "");
            goto out;
        }
    }
    rc = 0;
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opts);
    for (size_t i = 0; i < cnt; i++)
        if (nt[i])
            rd_kafka_NewTopic_destroy(nt[i]);
    free(nt);
    return rc;
}

int tm_kafka_ensure_topics(rd_kafka_t *rk, const char *const *topics, size_t n, int partitions,
                           int timeout_ms, struct tm_error *err)
{
    int64_t deadline = tm_mono_ms() + timeout_ms;
    const char **missing = tm_xcalloc(n ? n : 1, sizeof(*missing));
    size_t nmissing = 0;
    int rc = -1;
    rd_kafka_resp_err_t why;

    for (size_t i = 0; i < n; i++) {
        int cnt = lookup_topic(rk, topics[i], remaining_ms(deadline), &why, err);
        if (cnt < 0)
            goto out;
        if (cnt == 0 && why == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
            missing[nmissing++] = topics[i];
    }
    if (nmissing && create_topics(rk, missing, nmissing, partitions, deadline, err) < 0)
        goto out;

    /* A new topic shows up in the metadata (with leaders) a moment later. */
    for (size_t i = 0; i < n; i++) {
        int cnt;
        while ((cnt = lookup_topic(rk, topics[i], remaining_ms(deadline), &why, err)) == 0) {
            bool waiting = why == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                           why == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || is_retriable(why);
            if (!waiting) { /* e.g. TOPIC_AUTHORIZATION_FAILED: waiting will not help */
                tm_kafka_error(err, why, "topic %s", topics[i]);
                goto out;
            }
            if (remaining_ms(deadline) == 0) {
                tm_kafka_error(err, why, "topic %s not ready after %d ms", topics[i],
                               timeout_ms);
                if (err)
                    err->retriable = true;
                goto out;
            }
            nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
        }
        if (cnt < 0)
            goto out;
        if (cnt != partitions)
            tm_warn(COMPONENT, "topic %s has %d partitions, not %d (TOPIC_PARTITIONS): left as "
                    "it is", topics[i], cnt, partitions);
        else
            tm_info(COMPONENT, "topic %s: %d partitions", topics[i], cnt);
    }
    rc = 0;
out:
    free(missing);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Produce                                                                  */
/* ------------------------------------------------------------------------ */

int tm_kafka_produce(rd_kafka_t *rk, const char *topic, const void *key, size_t key_len,
                     const void *value, size_t value_len, rd_kafka_headers_t *hdrs,
                     void *msg_opaque, int block_ms, struct tm_error *err)
{
    int64_t deadline = block_ms < 0 ? INT64_MAX : tm_mono_ms() + block_ms;
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0; /* hdrs now belong to the message */
        int64_t left = deadline - tm_mono_ms();
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && left > 0) {
            /* back-pressure: let delivery reports drain the queue */
            rd_kafka_poll(rk, left < 100 ? (int)left : 100);
            continue;
        }
        if (e == RD_KAFKA_RESP_ERR__FATAL) {
            char why[256];
            rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));
            tm_error_set(err, TM_ERR_KAFKA, e, "produce to %s: fatal error %s: %s", topic,
                         rd_kafka_err2name(orig), why);
        } else {
            tm_kafka_error(err, e, "produce to %s", topic);
        }
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        return -1;
    }
}
