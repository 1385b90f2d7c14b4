/*
 * proc.c - the processor loop (see proc.h).
 *
 * One thread consumes, aggregates, writes and commits, so the order
 * "write, then commit" needs no locks.  A second thread samples the GPUs
 * (a slow GPU read never delays consumption), and libmicrohttpd's thread
 * serves HTTP from a snapshot guarded by `st->mu`.
 */
#include "proc/proc.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/cmd.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/timeutil.h"
#include "gpu/gpu.h"
#include "gpu/history.h"
#include "http/http.h"
#include "kafka/kafka.h"
#include "msg/event.h"
#include "store/store.h"
#include "window/window.h"

#define STORE_BACKOFF_MIN_MS 250
#define STORE_BACKOFF_MAX_MS 10000
#define COMMIT_INTERVAL_MS 1000
#define FLUSH_INTERVAL_MS 200
#define HEALTH_LEN 320
#define STORE_CHECK_MS 3000
#define MAX_PENDING_WINDOWS 100000

/* ------------------------------------------------------------ the state */

struct part_pos {
    int64_t next;      /* last offset read + 1, -1 = nothing read */
    int64_t committed; /* last offset committed by us, -1 = none */
    bool assigned;
    bool eof_seen; /* the consumer reached the end once since the assignment */
};

struct proc {
    const struct tm_config *cfg;
    rd_kafka_t *consumer;
    rd_kafka_t *dlq;
    struct tm_store *store;
    struct tm_agg *agg;
    struct tm_gpu_source *gpu;

    struct part_pos *pos; /* indexed by partition */
    int npos;

    /* health, guarded by mu (read by the HTTP thread) */
    pthread_mutex_t mu;
    char kafka_error[HEALTH_LEN];   /* "" = healthy */
    char store_error[HEALTH_LEN];   /* "" = healthy */
    char gpu_error[HEALTH_LEN];     /* "" = healthy */
    int64_t kafka_ok_since;  /* wall ms since Kafka is healthy */
    struct tm_gpu_sample gpus[TM_GPU_MAX];
    size_t ngpus;
    struct tm_gpu_error gpu_errors[TM_GPU_MAX];
    size_t ngpu_errors;
    char gpu_source[32];            /* live source name, "" = none */
    struct tm_gpu_history *history; /* samples for the energy join */

    /* counters for /metrics */
    atomic_llong consumed, counted, duplicates, windows_written, store_errors, commits,
        dlq_failed, windows_pending;
    atomic_llong dead[TM_REJECT__COUNT + 1]; /* last slot: store_rejected */

    int64_t store_retry_at; /* monotonic ms of the next write attempt */
    int64_t store_backoff;
    int64_t last_commit, last_flush, last_kafka_probe, last_store_check;
    atomic_llong lag;    /* messages behind the high watermarks, assigned partitions */
    atomic_int assigned; /* partitions assigned */
    bool paused_for_store;
    volatile int *stop;
    pthread_t sampler;
    bool sampler_started;
};

#define DEAD_STORE_REJECTED TM_REJECT__COUNT

static void kafka_healthy(struct proc *p)
{
    pthread_mutex_lock(&p->mu);
    if (p->kafka_error[0]) {
        p->kafka_error[0] = '\0';
        p->kafka_ok_since = tm_now_ms();
        pthread_mutex_unlock(&p->mu);
        tm_info("kafka", "Kafka reachable again");
        return;
    }
    pthread_mutex_unlock(&p->mu);
}

static void store_healthy(struct proc *p)
{
    p->store_backoff = 0;
    p->store_retry_at = 0;
    pthread_mutex_lock(&p->mu);
    bool was = p->store_error[0] != '\0';
    p->store_error[0] = '\0';
    pthread_mutex_unlock(&p->mu);
    if (was)
        tm_info("store", "MongoDB reachable again");
}

static bool store_down(struct proc *p)
{
    pthread_mutex_lock(&p->mu);
    bool down = p->store_error[0] != '\0';
    pthread_mutex_unlock(&p->mu);
    return down;
}

static void store_failed(struct proc *p, const struct tm_error *err)
{
    atomic_fetch_add(&p->store_errors, 1);
    p->store_backoff = p->store_backoff ? p->store_backoff * 2 : STORE_BACKOFF_MIN_MS;
    if (p->store_backoff > STORE_BACKOFF_MAX_MS)
        p->store_backoff = STORE_BACKOFF_MAX_MS;
    p->store_retry_at = tm_mono_ms() + p->store_backoff;
    pthread_mutex_lock(&p->mu);
    bool was = p->store_error[0] != '\0';
    snprintf(p->store_error, sizeof(p->store_error), "mongodb: %s", err->msg);
    pthread_mutex_unlock(&p->mu);
    if (!was)
        tm_warn("store", "%s (retrying with backoff, offsets not committed)", err->msg);
}

static struct part_pos *pos_of(struct proc *p, int32_t partition)
{
    if (partition >= p->npos) {
        int n = partition + 1;
        p->pos = tm_xrealloc(p->pos, (size_t)n * sizeof(*p->pos));
        for (int i = p->npos; i < n; i++)
            p->pos[i] = (struct part_pos){.next = -1, .committed = -1};
        p->npos = n;
    }
    return &p->pos[partition];
}

/* ----------------------------------------------------------- dead letters */

static void dlq_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct proc *p = opaque;
    if (m->err) {
        atomic_fetch_add(&p->dlq_failed, 1);
        tm_error_log("kafka", "dead letter NOT delivered: %s", rd_kafka_err2str(m->err));
    }
}

/**
 * Publish the original key and value of a rejected message to the DLQ with
 * headers `reason` (tm_reject_name), `error` (one line) and its origin.
 */
static void dead_letter(struct proc *p, const rd_kafka_message_t *m, int reason_idx,
                        const char *reason, const char *error)
{
    char off[32], part[16];
    snprintf(off, sizeof(off), "%lld", (long long)m->offset);
    snprintf(part, sizeof(part), "%d", (int)m->partition);
    const char *topic = rd_kafka_topic_name(m->rkt);
    atomic_fetch_add(&p->dead[reason_idx], 1);
    tm_warn("dlq", "partition %d offset %lld -> %s, reason %s: %s", (int)m->partition,
            (long long)m->offset, p->cfg->kafka_dlq_topic, reason, error);
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p->dlq, RD_KAFKA_V_TOPIC(p->cfg->kafka_dlq_topic),
            RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADER("reason", reason, -1),
            RD_KAFKA_V_HEADER("error", error, -1), RD_KAFKA_V_HEADER("source.topic", topic, -1),
            RD_KAFKA_V_HEADER("source.partition", part, -1),
            RD_KAFKA_V_HEADER("source.offset", off, -1), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            atomic_fetch_add(&p->dlq_failed, 1);
            tm_error_log("kafka", "cannot queue dead letter: %s", rd_kafka_err2str(e));
            return;
        }
        rd_kafka_poll(p->dlq, 100);
    }
}

/* ------------------------------------------------------- flush and commit */

/* The values of a window that come from the GPU samples: power, utilization
 * and the per-GPU price of the source (a seed file's price_per_hour_usd
 * overrides PRICE_PER_HOUR_USD for that GPU). */
static void window_meta(struct proc *p, const struct tm_window *w, struct tm_window_meta *meta)
{
    struct tm_gpu_window_stats st;
    pthread_mutex_lock(&p->mu);
    tm_gpu_history_window(p->history, w->host, w->gpu_index, w->start_ms, w->end_ms, &st);
    pthread_mutex_unlock(&p->mu);
    memset(meta, 0, sizeof(*meta));
    meta->topic = p->cfg->kafka_topic;
    meta->price_per_hour_usd = st.has_price ? st.price_per_hour_usd : p->cfg->price_per_hour_usd;
    meta->has_power = st.has_power;
    meta->avg_power_w = st.avg_power_w;
    meta->has_utilization = st.has_utilization;
    meta->gpu_values = st.samples == 0 ? NULL : st.measured ? "measured" : "seed";
    meta->avg_utilization = st.avg_utilization;
}

/* Dead-letter a window document the server refused, as extended JSON, so it
 * is not lost (reason store_rejected). */
static void dead_letter_window(struct proc *p, const struct tm_window *w,
                               const struct tm_window_meta *meta)
{
    bson_t doc = BSON_INITIALIZER;
    tm_store_window_doc(w, meta, &doc);
    size_t len;
    char *json = bson_as_relaxed_extended_json(&doc, &len);
    rd_kafka_message_t m = {.rkt = NULL, .partition = w->partition, .offset = w->offset_max,
                            .payload = json, .len = len};
    char key[TM_EVENT_MAX_STR + 32];
    snprintf(key, sizeof(key), "%s/%d", w->host, w->gpu_index);
    m.key = key;
    m.key_len = strlen(key);
    atomic_fetch_add(&p->dead[DEAD_STORE_REJECTED], 1);
    rd_kafka_producev(p->dlq, RD_KAFKA_V_TOPIC(p->cfg->kafka_dlq_topic),
                      RD_KAFKA_V_KEY(m.key, m.key_len), RD_KAFKA_V_VALUE(json, len),
                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                      RD_KAFKA_V_HEADER("reason", "store_rejected", -1), RD_KAFKA_V_END);
    bson_free(json);
    bson_destroy(&doc);
}

/* Tell the aggregator which partitions are caught up: handled up to the
 * high watermark of the last fetch (a cached value, no broker round trip). */
static void update_caught_up(struct proc *p)
{
    long long lag = 0;
    int assigned = 0;
    for (int i = 0; i < p->npos; i++) {
        struct part_pos *pp = &p->pos[i];
        int64_t lo = -1, hi = -1;
        bool caught = false;
        assigned += pp->assigned;
        if (pp->assigned &&
            rd_kafka_get_watermark_offsets(p->consumer, p->cfg->kafka_topic, i, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0) {
            int64_t at = pp->next >= 0 ? pp->next : (pp->committed >= 0 ? pp->committed : lo);
            if (at >= 0 && hi > at)
                lag += hi - at;
            caught = pp->eof_seen && pp->next >= 0 && pp->next >= hi;
        }
        tm_agg_partition_caught_up(p->agg, i, caught);
    }
    atomic_store(&p->lag, lag);
    atomic_store(&p->assigned, assigned);
}

/* Write the windows that closed.  Returns 0 when nothing is left unwritten. */
static int flush_windows(struct proc *p, bool idle_allowed)
{
    update_caught_up(p);
    if (p->store_retry_at && tm_mono_ms() < p->store_retry_at)
        return -1;
    struct tm_window **ws;
    size_t n = tm_agg_take_closed(p->agg, tm_now_ms(), idle_allowed, false, &ws);
    int rc = 0;
    if (n > 0) {
        struct tm_window_meta *metas = tm_xcalloc(n, sizeof(*metas));
        int *status = tm_xcalloc(n, sizeof(*status));
        for (size_t i = 0; i < n; i++)
            window_meta(p, ws[i], &metas[i]);
        struct tm_error err;
        if (tm_store_write_windows(p->store, ws, metas, n, status, &err) < 0) {
            store_failed(p, &err);
            rc = -1;
        } else {
            store_healthy(p);
            for (size_t i = 0; i < n; i++) {
                if (status[i] != 0)
                    dead_letter_window(p, ws[i], &metas[i]);
                else
                    atomic_fetch_add(&p->windows_written, 1);
                tm_agg_persisted(p->agg, ws[i]);
            }
            tm_debug("store", "wrote %zu window(s)", n);
        }
        free(metas);
        free(status);
    }
    free(ws);
    atomic_store(&p->windows_pending, (long long)tm_agg_pending(p->agg));
    return rc;
}

/* Commit, per assigned partition, the offset window.h says is safe.  Dead
 * letters are flushed first: an offset is never committed past a rejected
 * message whose dead letter is not yet acknowledged. */
static void commit_offsets(struct proc *p)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    for (int i = 0; i < p->npos; i++) {
        struct part_pos *pp = &p->pos[i];
        if (!pp->assigned || pp->next < 0)
            continue;
        int64_t c = tm_agg_commit_offset(p->agg, i, pp->next);
        if (c > pp->committed)
            rd_kafka_topic_partition_list_add(list, p->cfg->kafka_topic, i)->offset = c;
    }
    if (list->cnt > 0) {
        if (rd_kafka_flush(p->dlq, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            tm_warn("kafka", "dead letters not yet acknowledged: commit postponed");
        } else {
            rd_kafka_resp_err_t e = rd_kafka_commit(p->consumer, list, 0);
            if (e) {
                tm_warn("kafka", "commit failed: %s", rd_kafka_err2str(e));
            } else {
                atomic_fetch_add(&p->commits, 1);
                for (int i = 0; i < list->cnt; i++) {
                    pos_of(p, list->elems[i].partition)->committed = list->elems[i].offset;
                    tm_debug("kafka", "committed partition %d offset %lld",
                             list->elems[i].partition, (long long)list->elems[i].offset);
                }
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static bool idle_allowed(struct proc *p)
{
    pthread_mutex_lock(&p->mu);
    bool ok = p->kafka_error[0] == '\0' &&
              tm_now_ms() - p->kafka_ok_since >= p->cfg->idle_close_seconds * 1000;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

/* ------------------------------------------------------------- rebalance */

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct proc *p = opaque;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            struct part_pos *pp = pos_of(p, parts->elems[i].partition);
            *pp = (struct part_pos){.next = -1, .committed = -1, .assigned = true};
            tm_agg_drop_partition(p->agg, parts->elems[i].partition);
            tm_info("kafka", "assigned partition %d", parts->elems[i].partition);
        }
        if (coop)
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
            rd_kafka_assign(rk, parts);
        return;
    }
    /* Revoked: write what closed, commit exactly what is persisted, and drop
     * the unwritten rest for the new owner to rebuild from the commit. */
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        if (!(*p->stop && store_down(p))) /* stopping: no 5 s wait on a dead store */
            flush_windows(p, false);
        commit_offsets(p);
    }
    for (int i = 0; i < parts->cnt; i++) {
        pos_of(p, parts->elems[i].partition)->assigned = false;
        tm_agg_drop_partition(p->agg, parts->elems[i].partition);
        tm_info("kafka", "revoked partition %d", parts->elems[i].partition);
    }
    if (coop)
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
        rd_kafka_assign(rk, NULL);
}

/* ------------------------------------------------------------ consumption */

/* Handle one message.  Returns -1 when the store could not answer a lookup:
 * the caller rewinds to this offset and retries later. */
static int handle_message(struct proc *p, rd_kafka_message_t *m)
{
    struct tm_event ev;
    struct tm_error err;
    struct part_pos *pp = pos_of(p, m->partition);
    atomic_fetch_add(&p->consumed, 1);
    enum tm_reject r = tm_event_decode(m->payload, m->len, &ev, &err);
    if (r != TM_REJECT_NONE) {
        dead_letter(p, m, r, tm_reject_name(r), err.msg);
        pp->next = m->offset + 1;
        return 0;
    }
    /* DESIGN 2.1: the key is "<host>/<gpu_index>", so that one partition, and
     * one consumer, owns all of a GPU's windows.  An event under another key
     * (or none) may sit on another partition than its GPU's other events;
     * counting it would let two partitions write the same window, the last
     * write winning.  Dead-lettered instead, never lost. */
    char key[TM_EVENT_MAX_STR + 16];
    int klen = snprintf(key, sizeof(key), "%s/%d", ev.host, ev.gpu_index);
    if (!m->key || m->key_len != (size_t)klen || memcmp(m->key, key, (size_t)klen) != 0) {
        char why[TM_EVENT_MAX_STR + 160];
        snprintf(why, sizeof(why),
                 "message key must be \"%s\" (<host>/<gpu_index>) so that one partition owns "
                 "the GPU's windows; got %s",
                 key, m->key ? "another key" : "no key");
        tm_event_clear(&ev);
        dead_letter(p, m, TM_REJECT_BAD_KEY, "bad_key", why);
        pp->next = m->offset + 1;
        return 0;
    }
    enum tm_add_result res;
    const struct tm_window_store_ops ops = {tm_store_lookup_window, tm_store_window_frontier,
                                            p->store};
    if (tm_agg_add(p->agg, m->partition, m->offset, &ev, tm_now_ms(), &ops, &res, &err) < 0) {
        tm_event_clear(&ev);
        store_failed(p, &err);
        return -1;
    }
    switch (res) {
    case TM_ADD_COUNTED:
        atomic_fetch_add(&p->counted, 1);
        break;
    case TM_ADD_DUPLICATE:
        atomic_fetch_add(&p->duplicates, 1);
        tm_debug("window", "partition %d offset %lld already counted (replay)", (int)m->partition,
                 (long long)m->offset);
        break;
    case TM_ADD_LATE:
        dead_letter(p, m, TM_REJECT_LATE, "late",
                    "its window is closed: the event time is more than the allowed lateness "
                    "behind its GPU's watermark, or the window was already written");
        break;
    case TM_ADD_FOREIGN:
        dead_letter(p, m, TM_REJECT_FOREIGN_PARTITION, "foreign_partition",
                    "its window was written from another partition (wrong message key?)");
        break;
    }
    tm_event_clear(&ev);
    pp->next = m->offset + 1;
    return 0;
}

/* Pause the whole assignment until the store answers again. */
static void pause_all(struct proc *p)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(p->consumer, &a) == 0 && a) {
        rd_kafka_pause_partitions(p->consumer, a);
        rd_kafka_topic_partition_list_destroy(a);
    }
    p->paused_for_store = true;
}

/* Seek @p partition back to @p offset and pause the whole assignment until
 * the store answers again. */
static void rewind_and_pause(struct proc *p, const rd_kafka_message_t *m)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt), m->partition)->offset =
        m->offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(p->consumer, l, 5000);
    if (e) {
        tm_error_log("kafka", "seek back failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
    pause_all(p);
}

static void resume_if_paused(struct proc *p)
{
    if (!p->paused_for_store)
        return;
    if (p->store_retry_at && tm_mono_ms() < p->store_retry_at)
        return;
    struct tm_error err;
    if (tm_store_ping(p->store, &err) < 0) {
        store_failed(p, &err);
        return;
    }
    store_healthy(p);
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(p->consumer, &a) == 0 && a) {
        rd_kafka_resume_partitions(p->consumer, a);
        rd_kafka_topic_partition_list_destroy(a);
    }
    p->paused_for_store = false;
}

static bool kafka_error_is_outage(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR__TRANSPORT || e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
           e == RD_KAFKA_RESP_ERR__RESOLVE || e == RD_KAFKA_RESP_ERR__TIMED_OUT ||
           e == RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE;
}

/* Kafka reported an outage: find out when it is over (an idle topic brings
 * no message to tell us). */
static void probe_kafka(struct proc *p)
{
    pthread_mutex_lock(&p->mu);
    bool down = p->kafka_error[0] != '\0';
    pthread_mutex_unlock(&p->mu);
    int64_t now = tm_mono_ms();
    if (!down || now - p->last_kafka_probe < 2000)
        return;
    p->last_kafka_probe = now;
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(p->consumer, 0, NULL, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(md);
        kafka_healthy(p);
    }
}

/* -------------------------------------------------------------- sampler */

static bson_t *sample_doc(const struct tm_gpu_sample *s)
{
    bson_t *d = bson_new();
    BSON_APPEND_UTF8(d, "host", s->host);
    BSON_APPEND_INT32(d, "gpu_index", s->gpu_index);
#define OPT_STR(bit, key, v)                                                                       \
    if (s->valid & (bit))                                                                          \
        BSON_APPEND_UTF8(d, key, v);                                                               \
    else                                                                                           \
        BSON_APPEND_NULL(d, key)
#define OPT_NUM(bit, key, v)                                                                       \
    if (s->valid & (bit))                                                                          \
        BSON_APPEND_DOUBLE(d, key, v);                                                             \
    else                                                                                           \
        BSON_APPEND_NULL(d, key)
    OPT_STR(TM_GPU_UUID, "uuid", s->uuid);
    OPT_STR(TM_GPU_NAME, "name", s->name);
    OPT_NUM(TM_GPU_UTIL, "utilization", s->utilization);
    OPT_NUM(TM_GPU_MEM_USED, "mem_used_mb", s->mem_used_mb);
    OPT_NUM(TM_GPU_MEM_TOTAL, "mem_total_mb", s->mem_total_mb);
    OPT_NUM(TM_GPU_POWER, "power_w", s->power_w);
    OPT_NUM(TM_GPU_TEMP, "temperature_c", s->temperature_c);
    OPT_NUM(TM_GPU_PRICE, "price_per_hour_usd", s->price_per_hour_usd);
#undef OPT_STR
#undef OPT_NUM
    BSON_APPEND_DATE_TIME(d, "ts", s->ts_ms);
    BSON_APPEND_UTF8(d, "source", s->source);
    return d;
}

/* One GPU poll: publish the samples and errors to /gpu/info and /health,
 * remember them for the energy join, and write them to gpu_metrics. */
static void sample_once(struct proc *p, struct tm_gpu_poll *poll, bool *metrics_failing)
{
    struct tm_error err;
    const struct tm_gpu_open_args gargs = {p->cfg->gpu_seed, p->cfg->host_name, 5000};
    if (!p->gpu) {
        /* No source worked: keep trying, a driver or seed file may appear. */
        p->gpu = tm_gpu_source_open(p->cfg->gpu_source, &gargs, &err);
        if (!p->gpu) {
            pthread_mutex_lock(&p->mu);
            snprintf(p->gpu_error, sizeof(p->gpu_error), "gpu: no GPU source works (%s)", err.msg);
            p->ngpus = p->ngpu_errors = 0;
            p->gpu_source[0] = '\0';
            pthread_mutex_unlock(&p->mu);
            return;
        }
    }
    int rc = tm_gpu_source_poll(p->gpu, poll, &err);
    pthread_mutex_lock(&p->mu);
    const char *name = tm_gpu_source_name(p->gpu);
    snprintf(p->gpu_source, sizeof(p->gpu_source), "%s", strcmp(name, "none") ? name : "");
    if (rc < 0) {
        if (p->gpu_source[0])
            snprintf(p->gpu_error, sizeof(p->gpu_error), "gpu: %s: %s", p->gpu_source, err.msg);
        else
            snprintf(p->gpu_error, sizeof(p->gpu_error), "gpu: %s", err.msg);
        memcpy(p->gpu_errors, poll->errors, poll->nerr * sizeof(*poll->errors));
        p->ngpu_errors = poll->nerr;
        pthread_mutex_unlock(&p->mu);
        return; /* last samples stay, with their age */
    }
    memcpy(p->gpus, poll->samples, poll->n * sizeof(*poll->samples));
    p->ngpus = poll->n;
    memcpy(p->gpu_errors, poll->errors, poll->nerr * sizeof(*poll->errors));
    p->ngpu_errors = poll->nerr;
    for (size_t i = 0; i < poll->n; i++)
        tm_gpu_history_add(p->history, &poll->samples[i]);
    /* A lost GPU or a better source that is there but failing degrades
     * health; a field that is merely unsupported does not. */
    const char *degraded = tm_gpu_source_degraded(p->gpu);
    if (poll->nerr > 0)
        snprintf(p->gpu_error, sizeof(p->gpu_error), "gpu: %zu GPU(s) not readable: %s%s%s",
                 poll->nerr, poll->errors[0].bus_id[0] ? poll->errors[0].bus_id : "",
                 poll->errors[0].bus_id[0] ? ": " : "", poll->errors[0].msg);
    else if (degraded[0])
        snprintf(p->gpu_error, sizeof(p->gpu_error), "gpu: using %s; %s", p->gpu_source, degraded);
    else
        p->gpu_error[0] = '\0';
    pthread_mutex_unlock(&p->mu);

    bson_t *docs[TM_GPU_MAX];
    for (size_t i = 0; i < poll->n; i++)
        docs[i] = sample_doc(&poll->samples[i]);
    /* Logged once per outage: the window writer reports MongoDB's health. */
    if (tm_store_insert_many(p->store, "gpu_metrics", (const bson_t *const *)docs, poll->n,
                             &err) < 0) {
        if (!*metrics_failing)
            tm_warn("gpu", "gpu_metrics not written (samples dropped until MongoDB is back): %s",
                    err.msg);
        *metrics_failing = true;
    } else if (*metrics_failing) {
        tm_info("gpu", "gpu_metrics written again");
        *metrics_failing = false;
    }
    for (size_t i = 0; i < poll->n; i++)
        bson_destroy(docs[i]);
}

static void *sampler_main(void *arg)
{
    struct proc *p = arg;
    struct tm_gpu_poll *poll = tm_xcalloc(1, sizeof(*poll));
    bool metrics_failing = false;
    char logged[HEALTH_LEN] = "";
    while (!*p->stop) {
        sample_once(p, poll, &metrics_failing);
        /* The GPU side of /health, logged when it changes, not every poll. */
        char now_err[HEALTH_LEN];
        pthread_mutex_lock(&p->mu);
        memcpy(now_err, p->gpu_error, sizeof(now_err));
        pthread_mutex_unlock(&p->mu);
        if (strcmp(now_err, logged) != 0) {
            if (now_err[0])
                tm_warn("gpu", "%s", now_err);
            else
                tm_info("gpu", "GPUs read normally again");
            memcpy(logged, now_err, sizeof(logged));
        }
        for (long i = 0; i < p->cfg->gpu_sample_seconds * 10 && !*p->stop; i++) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    free(poll);
    return NULL;
}

/* ------------------------------------------------------------------ HTTP */

static int http_health(void *ctx, char **body, const char **ctype)
{
    struct proc *p = ctx;
    json_t *o = json_object(), *reasons = json_array();
    pthread_mutex_lock(&p->mu);
    const char *slots[] = {p->kafka_error, p->store_error, p->gpu_error};
    for (size_t i = 0; i < 3; i++)
        if (slots[i][0])
            json_array_append_new(reasons, json_string(slots[i]));
    json_object_set_new(o, "gpu_source",
                        p->gpu_source[0] ? json_string(p->gpu_source) : json_null());
    pthread_mutex_unlock(&p->mu);
    bool ok = json_array_size(reasons) == 0;
    json_object_set_new(o, "status", json_string(ok ? "ok" : "degraded"));
    json_object_set_new(o, "reasons", reasons);
    json_object_set_new(o, "windows_pending", json_integer(atomic_load(&p->windows_pending)));
    *body = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(o);
    *ctype = "application/json";
    return ok ? 200 : 503;
}

/* /gpu/info: the live source, the latest samples with their age, the GPUs
 * that could not be read.  503 with the error when no source works. */
static int http_gpu_info(void *ctx, char **body, const char **ctype)
{
    struct proc *p = ctx;
    json_t *o = json_object(), *arr = json_array(), *errs = json_array();
    int64_t now = tm_now_ms();
    pthread_mutex_lock(&p->mu);
    json_object_set_new(o, "source", p->gpu_source[0] ? json_string(p->gpu_source) : json_null());
    json_object_set_new(o, "error", p->gpu_error[0] ? json_string(p->gpu_error) : json_null());
    for (size_t i = 0; i < p->ngpus; i++)
        json_array_append_new(arr, tm_gpu_sample_json(&p->gpus[i], now));
    for (size_t i = 0; i < p->ngpu_errors; i++) {
        json_array_append_new(errs, tm_gpu_error_json(&p->gpu_errors[i]));
    }
    bool none = p->gpu_source[0] == '\0' && p->ngpus == 0;
    pthread_mutex_unlock(&p->mu);
    json_object_set_new(o, "gpus", arr);
    json_object_set_new(o, "errors", errs);
    *body = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(o);
    *ctype = "application/json";
    return none ? 503 : 200;
}

static int http_metrics(void *ctx, char **body, const char **ctype)
{
    struct proc *p = ctx;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
#define COUNTER(name, help, v)                                                                     \
    fprintf(f, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %lld\n",               \
            (long long)atomic_load(&(v)))
    COUNTER("tokenmeter_events_consumed_total", "Kafka messages read.", p->consumed);
    COUNTER("tokenmeter_events_counted_total", "Valid events counted in a window.", p->counted);
    COUNTER("tokenmeter_events_duplicate_total", "Replayed events already counted.",
            p->duplicates);
    COUNTER("tokenmeter_windows_written_total", "token_usage documents acknowledged.",
            p->windows_written);
    COUNTER("tokenmeter_store_errors_total", "Failed MongoDB operations (retried).",
            p->store_errors);
    COUNTER("tokenmeter_commits_total", "Offset commits.", p->commits);
    COUNTER("tokenmeter_dead_letters_failed_total", "Dead letters Kafka did not acknowledge.",
            p->dlq_failed);
#undef COUNTER
    fprintf(f, "# HELP tokenmeter_dead_letters_total Messages sent to the dead-letter topic, "
               "by reason.\n# TYPE tokenmeter_dead_letters_total counter\n");
    long long total = 0;
    for (int r = TM_REJECT_EMPTY; r <= TM_REJECT__COUNT; r++) {
        long long v = atomic_load(&p->dead[r]);
        total += v;
        fprintf(f, "tokenmeter_dead_letters_total{reason=\"%s\"} %lld\n",
                r == DEAD_STORE_REJECTED ? "store_rejected" : tm_reject_name(r), v);
    }
    fprintf(f, "# HELP tokenmeter_dead_letters_all_total All dead letters.\n"
               "# TYPE tokenmeter_dead_letters_all_total counter\n"
               "tokenmeter_dead_letters_all_total %lld\n", total);
    fprintf(f, "# HELP tokenmeter_consumer_lag Messages between the consumer's position and the "
               "high watermarks of its partitions.\n# TYPE tokenmeter_consumer_lag gauge\n"
               "tokenmeter_consumer_lag %lld\n",
            (long long)atomic_load(&p->lag));
    fprintf(f, "# HELP tokenmeter_partitions_assigned Partitions this member owns.\n"
               "# TYPE tokenmeter_partitions_assigned gauge\ntokenmeter_partitions_assigned %d\n",
            atomic_load(&p->assigned));
    fprintf(f, "# HELP tokenmeter_windows_pending Windows not yet acknowledged by MongoDB.\n"
               "# TYPE tokenmeter_windows_pending gauge\ntokenmeter_windows_pending %lld\n",
            (long long)atomic_load(&p->windows_pending));
    pthread_mutex_lock(&p->mu);
    fprintf(f, "# HELP tokenmeter_up Health per dependency (1 ok, 0 degraded).\n"
               "# TYPE tokenmeter_up gauge\n"
               "tokenmeter_up{dependency=\"kafka\"} %d\ntokenmeter_up{dependency=\"mongodb\"} %d\n"
               "tokenmeter_up{dependency=\"gpu\"} %d\n",
            !p->kafka_error[0], !p->store_error[0], !p->gpu_error[0]);
    pthread_mutex_unlock(&p->mu);
    fclose(f);
    *body = buf;
    *ctype = "text/plain; version=0.0.4";
    return 200;
}

static const struct tm_http_route routes[] = {
    {"/health", http_health},
    {"/gpu/info", http_gpu_info},
    {"/metrics", http_metrics},
};

/* ---------------------------------------------------------------- setup */

static void consumer_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    struct proc *p = opaque;
    if (kafka_error_is_outage((rd_kafka_resp_err_t)err)) {
        pthread_mutex_lock(&p->mu);
        bool was = p->kafka_error[0] != '\0';
        snprintf(p->kafka_error, sizeof(p->kafka_error), "kafka: %s", reason);
        pthread_mutex_unlock(&p->mu);
        if (!was)
            tm_warn("kafka", "%s (retrying)", reason);
    } else {
        tm_warn("kafka", "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    }
}

static int setup_kafka(struct proc *p, struct tm_error *err)
{
    const struct tm_config *cfg = p->cfg;
    char errstr[512];
    rd_kafka_conf_t *c = tm_kafka_conf_new(cfg, err);
    if (!c)
        return -1;
    struct {
        const char *k, *v;
    } props[] = {
        {"group.id", cfg->kafka_group},       {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"}, {"auto.offset.reset", "earliest"},
        {"enable.partition.eof", "true"},
    };
    for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++)
        if (rd_kafka_conf_set(c, props[i].k, props[i].v, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
            tm_error_set(err, TM_ERR_CONFIG, 0, "%s: %s", props[i].k, errstr);
            rd_kafka_conf_destroy(c);
            return -1;
        }
    /* A processor killed with SIGKILL holds its partitions until its session
     * times out: 10 s instead of librdkafka's 45 s (KAFKA_PROP_SESSION_TIMEOUT_MS
     * overrides). */
    if (tm_kafka_conf_set_default(c, "session.timeout.ms", "10000", err) < 0 ||
        tm_kafka_conf_set_default(c, "heartbeat.interval.ms", "2000", err) < 0) {
        rd_kafka_conf_destroy(c);
        return -1;
    }
    rd_kafka_conf_set_opaque(c, p);
    rd_kafka_conf_set_rebalance_cb(c, rebalance_cb);
    rd_kafka_conf_set_error_cb(c, consumer_error_cb);
    p->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    if (!p->consumer) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "Kafka consumer: %s", errstr);
        return -1;
    }
    rd_kafka_poll_set_consumer(p->consumer);

    rd_kafka_conf_t *pc = tm_kafka_conf_new(cfg, err);
    if (!pc)
        return -1;
    if (rd_kafka_conf_set(pc, "enable.idempotence", "true", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(pc, "acks", "all", errstr, sizeof(errstr))) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "DLQ producer: %s", errstr);
        rd_kafka_conf_destroy(pc);
        return -1;
    }
    rd_kafka_conf_set_opaque(pc, p);
    rd_kafka_conf_set_dr_msg_cb(pc, dlq_dr_cb);
    p->dlq = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof(errstr));
    if (!p->dlq) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "DLQ producer: %s", errstr);
        return -1;
    }
    const char *topics[] = {cfg->kafka_topic, cfg->kafka_dlq_topic};
    struct tm_error te;
    if (tm_kafka_ensure_topics(p->dlq, topics, 2, (int)cfg->partitions, 10000, &te) < 0)
        tm_warn("kafka", "cannot make sure the topics exist yet: %s", te.msg);

    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, cfg->kafka_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(p->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) {
        tm_error_set(err, TM_ERR_KAFKA, e, "subscribe %s: %s", cfg->kafka_topic,
                     rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

int tm_proc_run(const struct tm_config *cfg, volatile int *stop)
{
    struct proc p;
    memset(&p, 0, sizeof(p));
    p.cfg = cfg;
    p.stop = stop;
    pthread_mutex_init(&p.mu, NULL);
    p.kafka_ok_since = tm_now_ms();
    struct tm_error err;
    int rc = TM_EXIT_OK;
    struct tm_http *http = NULL;

    p.agg = tm_agg_new(cfg->window_seconds * 1000, cfg->lateness_seconds * 1000,
                       cfg->idle_close_seconds * 1000);
    p.store = tm_store_open(cfg->mongodb_uri, &err);
    if (!p.store) {
        tm_error_log("store", "%s", err.msg);
        rc = TM_EXIT_USAGE;
        goto out;
    }
    if (tm_store_ensure_indexes(p.store, &err) < 0)
        store_failed(&p, &err); /* degrade; writes will retry */

    /* Samples are kept long enough for the latest windows to be joined. */
    p.history = tm_gpu_history_new(
        (2 * (cfg->window_seconds + cfg->lateness_seconds + cfg->idle_close_seconds) + 600) * 1000);

    http = tm_http_start(cfg->http_listen, routes, sizeof(routes) / sizeof(routes[0]), &p, &err);
    if (!http) {
        tm_error_log("http", "%s", err.msg);
        rc = TM_EXIT_USAGE;
        goto out;
    }
    tm_info("http", "serving /health, /gpu/info, /metrics on %s (port %d)", cfg->http_listen,
            tm_http_port(http));

    if (setup_kafka(&p, &err) < 0) {
        tm_error_log("kafka", "%s", err.msg);
        rc = TM_EXIT_USAGE;
        goto out;
    }
    if (pthread_create(&p.sampler, NULL, sampler_main, &p) == 0)
        p.sampler_started = true;
    tm_info("proc", "consuming %s as group %s; windows of %ld s, lateness %ld s, idle close %ld s",
            cfg->kafka_topic, cfg->kafka_group, cfg->window_seconds, cfg->lateness_seconds,
            cfg->idle_close_seconds);

    int64_t waiting_since = 0;
    bool waiting_logged = false;
    while (!*stop) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(p.consumer, 100);
        if (m) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                kafka_healthy(&p);
                pos_of(&p, m->partition)->next = m->offset;
                pos_of(&p, m->partition)->eof_seen = true;
            } else if (m->err) {
                if (kafka_error_is_outage(m->err)) {
                    consumer_error_cb(p.consumer, m->err, rd_kafka_message_errstr(m), &p);
                } else if (rd_kafka_fatal_error(p.consumer, NULL, 0)) {
                    tm_error_log("kafka", "fatal: %s", rd_kafka_message_errstr(m));
                    rd_kafka_message_destroy(m);
                    rc = TM_EXIT_FAILURE;
                    break;
                } else {
                    tm_warn("kafka", "consumer: %s", rd_kafka_message_errstr(m));
                }
            } else {
                kafka_healthy(&p);
                if (handle_message(&p, m) < 0)
                    rewind_and_pause(&p, m);
                atomic_store(&p.windows_pending, (long long)tm_agg_pending(p.agg));
            }
            rd_kafka_message_destroy(m);
        }
        /* Backpressure: with MongoDB down, closed windows wait in memory; past
         * MAX_PENDING_WINDOWS stop fetching until it answers again (nothing is
         * committed past them, so nothing is lost). */
        if (!p.paused_for_store && store_down(&p) &&
            tm_agg_pending(p.agg) > MAX_PENDING_WINDOWS) {
            tm_warn("proc", "%zu windows wait for MongoDB: consumption paused",
                    tm_agg_pending(p.agg));
            pause_all(&p);
        }
        resume_if_paused(&p);
        probe_kafka(&p);
        rd_kafka_poll(p.dlq, 0);
        int64_t now = tm_mono_ms();
        if (now - p.last_flush >= FLUSH_INTERVAL_MS) {
            p.last_flush = now;
            flush_windows(&p, idle_allowed(&p));
        }
        /* An idle processor writes nothing: ping so /health notices a MongoDB
         * outage within seconds, not at the next window. */
        if (now - p.last_store_check >= STORE_CHECK_MS && !p.paused_for_store &&
            (!p.store_retry_at || now >= p.store_retry_at)) {
            p.last_store_check = now;
            if (tm_store_ping(p.store, &err) < 0)
                store_failed(&p, &err);
            else
                store_healthy(&p);
        }
        if (atomic_load(&p.assigned) == 0 && p.last_flush > 0) {
            if (!waiting_since)
                waiting_since = now;
            if (now - waiting_since >= 5000 && !waiting_logged) {
                tm_info("kafka", "no partition assigned yet: waiting for the group to rebalance "
                                 "(a killed member holds its partitions until its session "
                                 "times out)");
                waiting_logged = true;
            }
        } else {
            waiting_since = 0;
            waiting_logged = false;
        }
        if (now - p.last_commit >= COMMIT_INTERVAL_MS) {
            p.last_commit = now;
            commit_offsets(&p);
        }
    }

    if (rc == TM_EXIT_OK) {
        /* With MongoDB down nothing more can be written: commit what is safe
         * and go, rather than wait on server selection (DESIGN 3.5). */
        tm_info("proc", "stopping: writing closed windows and committing");
        if (!store_down(&p)) {
            p.store_retry_at = 0;
            flush_windows(&p, false);
        }
        commit_offsets(&p);
    }

out:
    *stop = 1;
    if (p.sampler_started)
        pthread_join(p.sampler, NULL);
    if (p.consumer) {
        rd_kafka_consumer_close(p.consumer);
        rd_kafka_destroy(p.consumer);
    }
    if (p.dlq) {
        rd_kafka_flush(p.dlq, 10000);
        rd_kafka_destroy(p.dlq);
    }
    tm_http_stop(http);
    tm_gpu_source_close(p.gpu);
    tm_gpu_history_free(p.history);
    tm_store_close(p.store);
    tm_agg_free(p.agg);
    free(p.pos);
    pthread_mutex_destroy(&p.mu);
    tm_info("proc", "stopped");
    return rc;
}
