/*
 * kafka.h - the Kafka helpers shared by the producer and the processor.
 *
 * Client configuration (tm_kafka_conf_new):
 *   - `bootstrap.servers` = KAFKA_BOOTSTRAP (--kafka-bootstrap);
 *   - `client.id` = "tokenmeter";
 *   - librdkafka's log and error callbacks write to tm_log, component "kafka";
 *   - pass-through properties from the environment (DESIGN 4: Kafka TLS/SASL
 *     "pass through the usual librdkafka properties"): every variable
 *     `KAFKA_PROP_<NAME>` sets the librdkafka property <NAME> lower-cased
 *     with `_` read as `.`, e.g.
 *         KAFKA_PROP_SECURITY_PROTOCOL=SASL_SSL   security.protocol
 *         KAFKA_PROP_SASL_MECHANISMS=SCRAM-SHA-512 sasl.mechanisms
 *         KAFKA_PROP_SSL_CA_LOCATION=/etc/ca.pem    ssl.ca.location
 *         KAFKA_PROP_LINGER_MS=20                   linger.ms
 *     They override tokenmeter's own defaults for a property (see
 *     tm_kafka_conf_set_default()), except `bootstrap.servers`, which only
 *     KAFKA_BOOTSTRAP sets.  Values are never logged (they may be secrets).
 *
 * Topics tokenmeter creates (tm_kafka_ensure_topics) get the broker's default
 * replication factor (`default.replication.factor`; Kafka >= 2.4), so one
 * setting on the brokers serves the one-broker lab and a replicated cluster.
 */
#ifndef TM_KAFKA_H
#define TM_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "common/error.h"
#include "config/config.h"

/** Prefix of the environment variables passed through to librdkafka. */
#define TM_KAFKA_ENV_PREFIX "KAFKA_PROP_"

/**
 * @brief Build a librdkafka configuration from @p cfg and the environment
 *        (see the top of this file).
 *
 * @param cfg  borrowed; only kafka_bootstrap is read.
 * @returns owned configuration: pass it to rd_kafka_new() (which takes it on
 *          success) or free it with rd_kafka_conf_destroy(); NULL with a
 *          TM_ERR_CONFIG error naming the variable and librdkafka's reason
 *          when a KAFKA_PROP_* value is refused.
 * @remark Reads the environment: call it before starting threads that
 *         setenv().
 */
rd_kafka_conf_t *tm_kafka_conf_new(const struct tm_config *cfg, struct tm_error *err);

/**
 * @brief Set the property @p name to @p value unless the environment sets it
 *        (KAFKA_PROP_<NAME>): for a program's own defaults, e.g. `linger.ms`.
 * @param conf   borrowed.
 * @returns 0 (set, or left to the environment), or -1 with a TM_ERR_CONFIG
 *          error carrying librdkafka's reason (unknown property, bad value,
 *          feature not built in).
 */
int tm_kafka_conf_set_default(rd_kafka_conf_t *conf, const char *name, const char *value,
                              struct tm_error *err);

/**
 * @brief Make sure the topics exist: create the missing ones with the Admin
 *        API (@p partitions partitions each, the broker's default replication
 *        factor), then wait until the metadata shows each with its partitions.
 *
 * A topic that already exists (or is created concurrently by someone else,
 * TOPIC_ALREADY_EXISTS) is success; when its partition count differs from
 * @p partitions a warning is logged and it is left as it is.  Each topic's
 * partition count is logged at info level.
 *
 * @param rk          borrowed client (producer or consumer).
 * @param topics      borrowed array of @p n topic names.
 * @param timeout_ms  bound of the whole operation, ms.
 * @returns 0, or -1 with a TM_ERR_KAFKA error (code = rd_kafka_resp_err_t;
 *          retriable when the cluster could not be reached in time).
 */
int tm_kafka_ensure_topics(rd_kafka_t *rk, const char *const *topics, size_t n, int partitions,
                           int timeout_ms, struct tm_error *err);

/**
 * @brief Number of partitions of @p topic, from the cluster's metadata.
 *        Never creates the topic (it asks for all topics' metadata, so a
 *        broker's auto.create.topics.enable does not trigger).
 * @returns the count (>= 1), or -1 with a TM_ERR_KAFKA error:
 *          RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC when it does not exist,
 *          a retriable error when the metadata could not be had in
 *          @p timeout_ms.
 */
int tm_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms,
                             struct tm_error *err);

/**
 * @brief Produce one message, copying key and value (RD_KAFKA_MSG_F_COPY).
 *
 * While librdkafka's queue is full, serves delivery reports (rd_kafka_poll)
 * and tries again, for at most @p block_ms (0: try once, -1: no bound).
 *
 * @param rk, topic  borrowed.
 * @param key, key_len      message key, borrowed (NULL: none).
 * @param value, value_len  message value, borrowed.
 * @param hdrs       headers or NULL; taken, even on failure.
 * @param msg_opaque handed to the delivery report callback.
 * @returns 0 once the message is queued (its delivery report follows), or -1
 *          with a TM_ERR_KAFKA error: code RD_KAFKA_RESP_ERR__QUEUE_FULL
 *          (retriable) when @p block_ms passed, RD_KAFKA_RESP_ERR__FATAL with
 *          librdkafka's fatal reason, or the code of any other refusal
 *          (e.g. MSG_SIZE_TOO_LARGE).
 */
int tm_kafka_produce(rd_kafka_t *rk, const char *topic, const void *key, size_t key_len,
                     const void *value, size_t value_len, rd_kafka_headers_t *hdrs,
                     void *msg_opaque, int block_ms, struct tm_error *err);

/**
 * @brief Fill @p err from a librdkafka error code, prefixed by a printf-style
 *        context: "<context>: <rd_kafka_err2str>".  Marks as retriable the
 *        transient errors (timeouts, transport, all brokers down, queue full).
 */
void tm_kafka_error(struct tm_error *err, rd_kafka_resp_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
