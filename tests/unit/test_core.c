/*
 * test_core.c - unit tests of the pure core: event decoding (every ts form of
 * DESIGN 2.1), window assignment, the DESIGN 3.3 formulas, the token_usage
 * document, configuration errors, and the failure cases CASE-12, -16, -17,
 * -18, -19 of shared/cases (named case_NN_...).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "config/config.h"
#include "cost/cost.h"
#include "msg/event.h"
#include "store/store.h"
#include "window/window.h"

#define W_START_MS INT64_C(1741507200000) /* 2025-03-09T08:00:00Z, window W of the cases */

static void assert_close(double got, double want)
{
    double tol = 1e-9 * fmax(fabs(want), 1e-300);
    if (fabs(got - want) > tol)
        fail_msg("got %.17g, want %.17g", got, want);
}

static int64_t ts_of(const char *json)
{
    struct tm_event ev;
    struct tm_error err;
    char buf[512];
    snprintf(buf, sizeof(buf),
             "{\"ts\":%s,\"host\":\"node-1\",\"gpu_index\":0,\"model\":\"model-a\","
             "\"prompt_tokens\":1,\"completion_tokens\":1}",
             json);
    enum tm_reject r = tm_event_decode(buf, strlen(buf), &ev, &err);
    if (r != TM_REJECT_NONE)
        fail_msg("ts %s rejected: %s", json, err.msg);
    int64_t ts = ev.ts_ms;
    tm_event_clear(&ev);
    return ts;
}

static enum tm_reject reject_of(const char *payload)
{
    struct tm_event ev;
    struct tm_error err;
    enum tm_reject r = tm_event_decode(payload, strlen(payload), &ev, &err);
    tm_event_clear(&ev);
    return r;
}

/* ------------------------------------------------------------ timestamps */

static void ts_forms(void **state)
{
    (void)state;
    assert_int_equal(ts_of("\"2025-03-09T08:00:10Z\""), W_START_MS + 10000);
    assert_int_equal(ts_of("\"2025-03-09T08:00:10.5Z\""), W_START_MS + 10500);
    /* 7 fractional digits, as the Azure traces write them; truncated to ms */
    assert_int_equal(ts_of("\"2025-03-09T08:00:10.9799600Z\""), W_START_MS + 10979);
    assert_int_equal(ts_of("\"2025-03-09 08:00:10.1234567\""), W_START_MS + 10123);
    assert_int_equal(ts_of("\"2025-03-09t08:00:10z\""), W_START_MS + 10000);
    assert_int_equal(ts_of("\"2025-03-09T10:00:10+0200\""), W_START_MS + 10000);
    assert_int_equal(ts_of("\"2025-03-09T13:30:10+05:30\""), W_START_MS + 10000);
    assert_int_equal(ts_of("\"2025-03-08T23:00:10-09:00\""), W_START_MS + 10000);
    /* leap day and year boundary */
    assert_int_equal(ts_of("\"2024-02-29T00:00:00Z\""), INT64_C(1709164800000));
    assert_int_equal(ts_of("\"2023-12-31T23:59:59.999Z\""), INT64_C(1704067199999));
}

static void ts_bad(void **state)
{
    (void)state;
    const char *bad[] = {
        "\"2025-03-09\"",           "\"2025-02-30T00:00:00Z\"", "\"2025-03-09T25:00:00Z\"",
        "\"2025-03-09T08:00:10+2\"", "\"2025-03-09T08:00:10Zjunk\"", "\"yesterday\"",
        "\"2025-03-09T08:00:10.Z\"", "-5", "1e300"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char buf[256];
        snprintf(buf, sizeof(buf),
                 "{\"ts\":%s,\"gpu_index\":0,\"model\":\"m\",\"prompt_tokens\":1,"
                 "\"completion_tokens\":1}",
                 bad[i]);
        if (reject_of(buf) != TM_REJECT_BAD_TS)
            fail_msg("ts %s not rejected as bad_ts", bad[i]);
    }
    assert_int_equal(reject_of("{\"ts\":true,\"gpu_index\":0,\"model\":\"m\","
                               "\"prompt_tokens\":1,\"completion_tokens\":1}"),
                     TM_REJECT_BAD_TYPE);
}

/* CASE-17: offsets of both signs, Z == +00:00, independent of TZ. */
static void case_17_time_zone_offsets(void **state)
{
    (void)state;
    const char *tzs[] = {"UTC", "America/New_York", "Asia/Kolkata"};
    for (size_t i = 0; i < 3; i++) {
        setenv("TZ", tzs[i], 1);
        tzset();
        int64_t a = ts_of("\"2025-03-09T10:00:15+02:00\"");
        int64_t b = ts_of("\"2025-03-09T03:00:30-05:00\"");
        int64_t c = ts_of("\"2025-03-09T08:00:45Z\"");
        int64_t d = ts_of("\"2025-03-09T08:00:55.250+00:00\"");
        assert_int_equal(a, W_START_MS + 15000);
        assert_int_equal(b, W_START_MS + 30000);
        assert_int_equal(c, W_START_MS + 45000);
        assert_int_equal(d, W_START_MS + 55250);
        struct tm_agg *agg = tm_agg_new(60000, 5000, 60000);
        assert_int_equal(tm_agg_window_start(agg, a), W_START_MS);
        assert_int_equal(tm_agg_window_start(agg, b), W_START_MS);
        assert_int_equal(tm_agg_window_start(agg, d), W_START_MS);
        tm_agg_free(agg);
    }
    unsetenv("TZ");
    tzset();
}

/* CASE-18: seconds below 1e11, milliseconds at or above. */
static void case_18_epoch_seconds_and_millis(void **state)
{
    (void)state;
    assert_int_equal(ts_of("1741507230"), W_START_MS + 30000);
    assert_int_equal(ts_of("1741507245000"), W_START_MS + 45000);
    assert_int_equal(ts_of("1741507230.123"), W_START_MS + 30123);
    assert_int_equal(ts_of("99999999999"), INT64_C(99999999999000)); /* just below: seconds */
    assert_int_equal(ts_of("100000000000"), INT64_C(100000000000));  /* at 1e11: ms */
}

/* ----------------------------------------------------------------- events */

static void event_fields(void **state)
{
    (void)state;
    const char *s = "{\"ts\":\"2025-03-09T08:00:10Z\",\"host\":\"node-1\",\"gpu_index\":3,"
                    "\"model\":\"model-a\",\"prompt_tokens\":70,\"completion_tokens\":30,"
                    "\"latency_ms\":850,\"event_id\":\"e-0001\",\"extra\":{\"kept\":1}}";
    struct tm_event ev;
    struct tm_error err;
    assert_int_equal(tm_event_decode(s, strlen(s), &ev, &err), TM_REJECT_NONE);
    assert_string_equal(ev.host, "node-1");
    assert_int_equal(ev.gpu_index, 3);
    assert_string_equal(ev.model, "model-a");
    assert_int_equal(ev.prompt_tokens, 70);
    assert_int_equal(ev.completion_tokens, 30);
    assert_true(ev.has_latency);
    assert_close(ev.latency_ms, 850);
    assert_string_equal(ev.event_id, "e-0001");
    /* encode -> decode round trip */
    char *enc = tm_event_encode(&ev);
    struct tm_event ev2;
    assert_int_equal(tm_event_decode(enc, strlen(enc), &ev2, &err), TM_REJECT_NONE);
    assert_int_equal(ev2.ts_ms, ev.ts_ms);
    assert_int_equal(ev2.prompt_tokens, 70);
    assert_string_equal(ev2.event_id, "e-0001");
    free(enc);
    tm_event_clear(&ev2);
    tm_event_clear(&ev);

    /* token.usage.v1 of the course reference: no host -> "unknown" */
    const char *v1 = "{\"ts\":1741507230,\"model\":\"m\",\"prompt_tokens\":1,"
                     "\"completion_tokens\":2,\"latency_ms\":10.5,\"gpu_index\":0}";
    assert_int_equal(tm_event_decode(v1, strlen(v1), &ev, &err), TM_REJECT_NONE);
    assert_string_equal(ev.host, "unknown");
    tm_event_clear(&ev);
}

static void event_rejects(void **state)
{
    (void)state;
    assert_int_equal(reject_of("{\"ts\":1741507230,\"gpu_index\":0,\"model\":\"m\","
                               "\"prompt_tokens\":-1,\"completion_tokens\":1}"),
                     TM_REJECT_OUT_OF_RANGE);
    assert_int_equal(reject_of("{\"ts\":1741507230,\"gpu_index\":0,\"model\":\"m\","
                               "\"prompt_tokens\":1000000000,\"completion_tokens\":1}"),
                     TM_REJECT_OUT_OF_RANGE);
    assert_int_equal(reject_of("{\"ts\":1741507230,\"gpu_index\":0,\"model\":\"m\","
                               "\"prompt_tokens\":\"70\",\"completion_tokens\":1}"),
                     TM_REJECT_BAD_TYPE);
    assert_int_equal(reject_of("{\"ts\":1741507230,\"gpu_index\":0,\"model\":\"m\","
                               "\"completion_tokens\":1}"),
                     TM_REJECT_MISSING_FIELD);
    assert_int_equal(reject_of("{\"ts\":1741507230,\"gpu_index\":-1,\"model\":\"m\","
                               "\"prompt_tokens\":1,\"completion_tokens\":1}"),
                     TM_REJECT_OUT_OF_RANGE);
    assert_int_equal(reject_of("{\"ts\":1741507230,\"gpu_index\":0,\"model\":\"m\","
                               "\"prompt_tokens\":1,\"completion_tokens\":1.5}"),
                     TM_REJECT_BAD_TYPE);
    /* invalid UTF-8 */
    assert_int_equal(reject_of("{\"ts\":1741507230,\"gpu_index\":0,\"model\":\"\xff\xfe\","
                               "\"prompt_tokens\":1,\"completion_tokens\":1}"),
                     TM_REJECT_INVALID_JSON);
    /* a duplicate key is ambiguous: refused, not last-wins */
    assert_int_equal(reject_of("{\"ts\":1741507230,\"ts\":1741510830,\"gpu_index\":0,"
                               "\"model\":\"m\",\"prompt_tokens\":1,\"completion_tokens\":1}"),
                     TM_REJECT_INVALID_JSON);
    /* a huge integral number is out of range, not of the wrong type */
    assert_int_equal(reject_of("{\"ts\":1741507230,\"gpu_index\":0,\"model\":\"m\","
                               "\"prompt_tokens\":1e300,\"completion_tokens\":1}"),
                     TM_REJECT_OUT_OF_RANGE);
    assert_int_equal(reject_of("{\"ts\":1741507230,\"gpu_index\":0,\"model\":\"m\","
                               "\"prompt_tokens\":70.0,\"completion_tokens\":1}"),
                     TM_REJECT_NONE);
    assert_string_equal(tm_reject_name(TM_REJECT_LATE), "late");
    assert_string_equal(tm_reject_name(TM_REJECT_BAD_KEY), "bad_key");
}

/* CASE-12: malformed, empty, tombstone payloads; a valid one without NUL. */
static void case_12_malformed_payloads(void **state)
{
    (void)state;
    struct tm_event ev;
    struct tm_error err;
    const char *trunc = "{\"ts\":\"2025-03-09T08:00:20Z\",\"host\":\"node-1\",\"gpu_index\":0,"
                        "\"model\":\"model-a\",\"prompt_tokens\":70,";
    assert_int_equal(tm_event_decode(trunc, strlen(trunc), &ev, &err), TM_REJECT_INVALID_JSON);
    assert_int_equal(tm_event_decode("not json at all", 15, &ev, &err), TM_REJECT_INVALID_JSON);
    assert_int_equal(tm_event_decode("", 0, &ev, &err), TM_REJECT_EMPTY);
    assert_int_equal(tm_event_decode(NULL, 0, &ev, &err), TM_REJECT_TOMBSTONE);
    assert_int_equal(tm_event_decode("[1,2,3]", 7, &ev, &err), TM_REJECT_NOT_OBJECT);

    /* Exactly the bytes of a valid event in a heap block of that size: no NUL
     * after them, so ASan flags any read past the end. */
    const char *valid = "{\"ts\":\"2025-03-09T08:00:50Z\",\"host\":\"node-1\",\"gpu_index\":0,"
                        "\"model\":\"model-a\",\"prompt_tokens\":70,\"completion_tokens\":30,"
                        "\"latency_ms\":850,\"event_id\":\"e-0007\"}";
    size_t n = strlen(valid);
    char *exact = malloc(n);
    memcpy(exact, valid, n);
    assert_int_equal(tm_event_decode(exact, n, &ev, &err), TM_REJECT_NONE);
    assert_int_equal(ev.ts_ms, W_START_MS + 50000);
    assert_int_equal(ev.prompt_tokens + ev.completion_tokens, 100);
    tm_event_clear(&ev);
    /* and a timestamp string cut short by the length */
    assert_int_equal(tm_event_decode(exact, 30, &ev, &err), TM_REJECT_INVALID_JSON);
    free(exact);
}

/* CASE-14 (b): an oversize model name is refused before any BSON encoding. */
static void case_14_field_length_limit(void **state)
{
    (void)state;
    size_t n = 900000;
    char *buf = malloc(n + 256);
    int k = snprintf(buf, 256, "{\"ts\":1741507230,\"gpu_index\":0,\"model\":\"");
    memset(buf + k, 'x', n);
    strcpy(buf + k + n, "\",\"prompt_tokens\":1,\"completion_tokens\":1}");
    struct tm_event ev;
    struct tm_error err;
    /* over the payload limit as a whole ... */
    assert_int_equal(tm_event_decode(buf, strlen(buf), &ev, &err), TM_REJECT_TOO_LARGE);
    /* ... and a model of 257 bytes in a small payload is over the field limit */
    k = snprintf(buf, 256, "{\"ts\":1741507230,\"gpu_index\":0,\"model\":\"");
    memset(buf + k, 'x', TM_EVENT_MAX_STR + 1);
    strcpy(buf + k + TM_EVENT_MAX_STR + 1, "\",\"prompt_tokens\":1,\"completion_tokens\":1}");
    assert_int_equal(tm_event_decode(buf, strlen(buf), &ev, &err), TM_REJECT_FIELD_TOO_LONG);
    free(buf);
}

/* --------------------------------------------------------------- formulas */

static void formulas(void **state)
{
    (void)state;
    struct tm_cost c;
    /* the conventions table of shared/cases: 3.60 USD/h, 60 s windows */
    const int64_t tokens[] = {200, 300, 400, 500, 600, 660, 500000};
    const double cpt[] = {0.0003, 0.0002, 0.00015, 0.00012, 0.0001, 0.06 / 660, 1.2e-7};
    for (size_t i = 0; i < 7; i++) {
        tm_cost_compute(tokens[i], 0, 60, 3.60, false, 0, &c);
        assert_close(c.cost_usd, 0.06);
        assert_close(c.tps, (double)tokens[i] / 60.0);
        assert_true(c.has_cost_per_token);
        assert_close(c.cost_per_token, cpt[i]);
        assert_close(c.cost_per_1m_tokens, cpt[i] * 1e6);
        assert_false(c.has_energy);
    }
    tm_cost_compute(400, 200, 60, 3.60, true, 250, &c);
    assert_close(c.energy_j, 15000);
    assert_close(c.joules_per_token, 25);
}

/* CASE-19 (a): zero tokens -> cost paid, per-token values null. */
static void case_19_zero_tokens(void **state)
{
    (void)state;
    struct tm_cost c;
    tm_cost_compute(0, 0, 60, 3.60, true, 100, &c);
    assert_int_equal(c.tokens, 0);
    assert_close(c.tps, 0);
    assert_close(c.cost_usd, 0.06);
    assert_false(c.has_cost_per_token);
    assert_false(c.has_joules_per_token);
    assert_true(c.has_energy);

    /* in the document: null, not inf, NaN or 0 */
    struct tm_agg *agg = tm_agg_new(60000, 5000, 60000);
    enum tm_add_result res;
    struct tm_error err;
    for (int i = 0; i < 3; i++) {
        struct tm_event ev = {.ts_ms = W_START_MS + 10000 * (i + 1), .host = "node-1",
                              .model = "model-a"};
        assert_int_equal(tm_agg_add(agg, 0, i, &ev, 0, NULL, &res, &err), 0);
        assert_int_equal(res, TM_ADD_COUNTED);
    }
    struct tm_window **ws;
    assert_int_equal(tm_agg_take_closed(agg, 0, false, true, &ws), 1);
    struct tm_window_meta meta = {.topic = "tokens", .price_per_hour_usd = 3.60};
    bson_t doc = BSON_INITIALIZER;
    tm_store_window_doc(ws[0], &meta, &doc);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, &doc, "requests"));
    assert_int_equal(bson_iter_as_int64(&it), 3);
    assert_true(bson_iter_init_find(&it, &doc, "cost_usd"));
    assert_close(bson_iter_double(&it), 0.06);
    const char *nulls[] = {"cost_per_token", "cost_per_1m_tokens", "joules_per_token",
                           "energy_j", "avg_power_w"};
    for (size_t i = 0; i < 5; i++) {
        assert_true(bson_iter_init_find(&it, &doc, nulls[i]));
        assert_true(BSON_ITER_HOLDS_NULL(&it));
    }
    char *json = bson_as_relaxed_extended_json(&doc, NULL);
    assert_null(strstr(json, "inf"));
    assert_null(strstr(json, "nan"));
    bson_free(json);
    bson_destroy(&doc);
    free(ws);
    tm_agg_free(agg);
}

/* CASE-19 (d): WINDOW_SECONDS 0, -5, abc -> one-line error naming it. */
static void case_19_bad_window_seconds(void **state)
{
    (void)state;
    const char *bad[] = {"0", "-5", "abc", "", "10s", " 10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tm_config cfg;
        struct tm_error err;
        setenv("WINDOW_SECONDS", bad[i], 1);
        assert_int_equal(tm_config_init(&cfg, &err), -1);
        assert_non_null(strstr(err.msg, "WINDOW_SECONDS"));
        assert_null(strchr(err.msg, '\n'));
        tm_config_free(&cfg);
    }
    unsetenv("WINDOW_SECONDS");
    struct tm_config cfg;
    struct tm_error err;
    assert_int_equal(tm_config_init(&cfg, &err), 0);
    assert_int_equal(tm_config_set_flag(&cfg, "window-seconds", "0", &err), -1);
    assert_non_null(strstr(err.msg, "window-seconds"));
    assert_int_equal(tm_config_set_flag(&cfg, "window-seconds", "60", &err), 1);
    assert_int_equal(cfg.window_seconds, 60);
    tm_config_free(&cfg);
}

static void config_errors(void **state)
{
    (void)state;
    struct {
        const char *env, *value;
    } bad[] = {{"PRICE_PER_HOUR_USD", "-1"},   {"PRICE_PER_HOUR_USD", "nan"},
               {"PRICE_PER_HOUR_USD", "inf"},  {"GPU_SAMPLE_SECONDS", "0"},
               {"GPU_METRICS_SOURCE", "cuda"}, {"HTTP_LISTEN", "8080"},
               {"MONGODB_URI", "127.0.0.1"},   {"LOG_LEVEL", "loud"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tm_config cfg;
        struct tm_error err;
        setenv(bad[i].env, bad[i].value, 1);
        int rc = tm_config_init(&cfg, &err);
        if (rc == 0) {
            tm_config_finish(&cfg);
            rc = tm_config_validate(&cfg, &err);
        }
        if (rc != -1 || !strstr(err.msg, bad[i].env))
            fail_msg("%s=%s accepted or error does not name it: %s", bad[i].env, bad[i].value,
                     err.msg);
        unsetenv(bad[i].env);
        tm_config_free(&cfg);
    }
    struct tm_config cfg;
    struct tm_error err;
    assert_int_equal(tm_config_init(&cfg, &err), 0);
    tm_config_finish(&cfg);
    assert_int_equal(tm_config_validate(&cfg, &err), 0);
    assert_string_equal(cfg.kafka_dlq_topic, "tokens.dlq");
    assert_close(cfg.price_per_hour_usd, TM_DEFAULT_PRICE_PER_HOUR_USD);
    assert_int_equal(cfg.idle_close_seconds, cfg.window_seconds + cfg.lateness_seconds);
    tm_config_free(&cfg);
}

/* CASE-16: a flush with nothing to write executes no bulk and succeeds (no
 * server is needed to prove it: the store is never contacted). */
static void case_16_nothing_to_write(void **state)
{
    (void)state;
    struct tm_error err;
    struct tm_store *st = tm_store_open("mongodb://127.0.0.1:1/tokenmeter", &err);
    assert_non_null(st);
    assert_int_equal(tm_store_write_windows(st, NULL, NULL, 0, NULL, &err), 0);
    assert_int_equal(tm_store_insert_many(st, "gpu_metrics", NULL, 0, &err), 0);
    tm_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ts_forms),
        cmocka_unit_test(ts_bad),
        cmocka_unit_test(case_17_time_zone_offsets),
        cmocka_unit_test(case_18_epoch_seconds_and_millis),
        cmocka_unit_test(event_fields),
        cmocka_unit_test(event_rejects),
        cmocka_unit_test(case_12_malformed_payloads),
        cmocka_unit_test(case_14_field_length_limit),
        cmocka_unit_test(formulas),
        cmocka_unit_test(case_19_zero_tokens),
        cmocka_unit_test(case_19_bad_window_seconds),
        cmocka_unit_test(config_errors),
        cmocka_unit_test(case_16_nothing_to_write),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
