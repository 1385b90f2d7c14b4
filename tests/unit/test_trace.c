/*
 * test_trace.c - unit tests of src/trace: the trace readers (trace.c) on the
 * real traces in $TM_SHARED/data/traces and on small hand-written inputs,
 * and the record -> event mapping (replay.c).
 *
 * The expected totals were computed independently of this code (Python's
 * csv/json modules, awk, jq) and are written here as literals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/timeutil.h"
#include "msg/event.h"
#include "trace/replay.h"
#include "trace/trace.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

struct totals {
    long records, bad;
    int64_t prompt, completion;
    int64_t first_ts, last_ts;
    long first_line, last_line;
    bool all_relative, any_relative;
    char last_err[256]; /* message of the last bad line */
    long bad_lines[8];  /* line numbers of the first bad lines */
};

/* Read a whole trace from @p fp, summing what it holds. */
static void read_all(FILE *fp, enum tm_trace_format fmt, const char *name, struct totals *t)
{
    struct tm_error err = {0};
    memset(t, 0, sizeof(*t));
    t->all_relative = true;
    tm_trace_t *tr = tm_trace_new(fp, fmt, name, &err);
    assert_non_null(tr);
    struct tm_trace_rec rec;
    enum tm_trace_status st;
    while ((st = tm_trace_next(tr, &rec, &err)) != TM_TRACE_END) {
        assert_int_not_equal(st, TM_TRACE_FAILED);
        if (st == TM_TRACE_BAD_LINE) {
            assert_int_equal(err.domain, TM_ERR_PARSE);
            if (t->bad < 8)
                t->bad_lines[t->bad] = rec.line;
            t->bad++;
            snprintf(t->last_err, sizeof(t->last_err), "%s", err.msg);
            continue;
        }
        if (t->records == 0) {
            t->first_ts = rec.ts_ms;
            t->first_line = rec.line;
        }
        t->records++;
        t->prompt += rec.prompt_tokens;
        t->completion += rec.completion_tokens;
        t->last_ts = rec.ts_ms;
        t->last_line = rec.line;
        t->all_relative &= rec.relative;
        t->any_relative |= rec.relative;
        assert_true(rec.raw_len > 0);
        assert_null(memchr(rec.raw, '\r', rec.raw_len));
    }
    tm_trace_destroy(tr);
}

static void read_shared(const char *file, enum tm_trace_format fmt, struct totals *t)
{
    const char *shared = getenv("TM_SHARED");
    if (!shared)
        fail_msg("TM_SHARED is not set (the Makefile sets it to the shared/ folder)");
    char path[4096];
    snprintf(path, sizeof(path), "%s/data/traces/%s", shared, file);
    FILE *fp = fopen(path, "r");
    if (!fp)
        fail_msg("cannot open %s", path);
    assert_int_equal(tm_trace_format_from_path(path), fmt);
    read_all(fp, fmt, file, t);
    fclose(fp);
}

/* A temporary file holding @p n bytes of @p s, positioned at its start. */
static FILE *file_with(const char *s, size_t n)
{
    FILE *fp = tmpfile();
    assert_non_null(fp);
    assert_int_equal(fwrite(s, 1, n, fp), n);
    rewind(fp);
    return fp;
}

static FILE *mem(const char *s)
{
    return file_with(s, strlen(s));
}

static void read_str(const char *s, enum tm_trace_format fmt, struct totals *t)
{
    FILE *fp = mem(s);
    read_all(fp, fmt, "t", t);
    fclose(fp);
}

/* ------------------------------------------------------------------------ */
/* The real traces                                                          */
/* ------------------------------------------------------------------------ */

/* AzureLLMInferenceTrace_code.csv: 8,820 lines (CRLF, header, no final
 * newline, so `wc -l` says 8,819), 8,819 requests. */
static void test_azure_code(void **state)
{
    (void)state;
    struct totals t;
    read_shared("AzureLLMInferenceTrace_code.csv", TM_TRACE_AZURE, &t);
    assert_int_equal(t.bad, 0);
    assert_int_equal(t.records, 8819);
    assert_int_equal(t.prompt, 18059974);
    assert_int_equal(t.completion, 245896);
    assert_int_equal(t.first_ts, INT64_C(1700158623979)); /* 2023-11-16 18:17:03.9799600 */
    assert_int_equal(t.last_ts, INT64_C(1700162059928));  /* 2023-11-16 19:14:19.9280160 */
    assert_int_equal(t.first_line, 2);
    assert_int_equal(t.last_line, 8820); /* the unterminated last line is read */
    assert_false(t.any_relative);
}

static void test_azure_conv(void **state)
{
    (void)state;
    struct totals t;
    read_shared("AzureLLMInferenceTrace_conv.csv", TM_TRACE_AZURE, &t);
    assert_int_equal(t.bad, 0);
    assert_int_equal(t.records, 19366);
    assert_int_equal(t.prompt, 22361870);
    assert_int_equal(t.completion, 4088665);
    assert_int_equal(t.first_ts, INT64_C(1700158546680)); /* 2023-11-16 18:15:46.6805900 */
    assert_int_equal(t.last_ts, INT64_C(1700162048402));  /* 2023-11-16 19:14:08.4025270 */
    assert_int_equal(t.last_line, 19367);
}

/* The combined figures the project's documentation quotes. */
static void test_azure_combined(void **state)
{
    (void)state;
    struct totals a, b;
    read_shared("AzureLLMInferenceTrace_code.csv", TM_TRACE_AZURE, &a);
    read_shared("AzureLLMInferenceTrace_conv.csv", TM_TRACE_AZURE, &b);
    assert_int_equal(a.records + b.records, 28185);
    assert_int_equal(a.prompt + b.prompt, INT64_C(40421844));
    assert_int_equal(a.completion + b.completion, INT64_C(4334561));
}

static void test_mooncake(void **state)
{
    (void)state;
    struct totals t;
    read_shared("mooncake_conversation_trace_first30min.jsonl", TM_TRACE_MOONCAKE, &t);
    assert_int_equal(t.bad, 0);
    assert_int_equal(t.records, 5719);
    assert_int_equal(t.prompt, INT64_C(73604194));
    assert_int_equal(t.completion, INT64_C(1977204));
    assert_int_equal(t.first_ts, 0);
    assert_int_equal(t.last_ts, 1797000); /* ms after the start: 29 min 57 s */
    assert_true(t.all_relative);
}

/* The progress display's cheap count agrees with a full read. */
static void test_count_records(void **state)
{
    (void)state;
    const char *shared = getenv("TM_SHARED");
    assert_non_null(shared);
    char path[4096];
    snprintf(path, sizeof(path), "%s/data/traces/AzureLLMInferenceTrace_code.csv", shared);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    long n = -1;
    assert_int_equal(tm_trace_count_records(fp, TM_TRACE_AZURE, &n, NULL), 0);
    assert_int_equal(n, 8819);
    fclose(fp);

    fp = mem("{\"a\":1}\n\n{\"a\":2}\n   \n{\"a\":3}");
    assert_int_equal(tm_trace_count_records(fp, TM_TRACE_MOONCAKE, &n, NULL), 0);
    assert_int_equal(n, 3);
    fclose(fp);
}

/* ------------------------------------------------------------------------ */
/* Azure CSV edge cases                                                     */
/* ------------------------------------------------------------------------ */

/* A broken line in the middle is reported with its number; the rest is read. */
static void test_azure_bad_lines(void **state)
{
    (void)state;
    struct totals t;
    read_str("TIMESTAMP,ContextTokens,GeneratedTokens\n"    /* 1 */
             "2023-11-16 18:17:03.9799600,4808,10\n"        /* 2 */
             "2023-11-16 18:17:04.0319600,3180,8\n"         /* 3 */
             "2023-11-16 18:17:04.1,abc,5\n"                /* 4: bad count */
             "2023-11-16 18:17:04.2,100\n"                  /* 5: missing field */
             "2023-13-16 18:17:04.3,1,1\n"                  /* 6: bad month */
             "2023-11-16 18:17:04.4,-5,1\n"                 /* 7: negative */
             "2023-11-16 18:17:04.5,1,100000001\n"          /* 8: absurd */
             "2023-11-16 18:17:05.0000000,7,3\n",           /* 9 */
             TM_TRACE_AZURE, &t);
    assert_int_equal(t.records, 3);
    assert_int_equal(t.prompt, 4808 + 3180 + 7);
    assert_int_equal(t.completion, 10 + 8 + 3);
    assert_int_equal(t.bad, 5);
    long want[] = {4, 5, 6, 7, 8};
    for (int i = 0; i < 5; i++)
        assert_int_equal(t.bad_lines[i], want[i]);
    assert_string_equal(t.last_err,
                        "t:8: GeneratedTokens \"100000001\": expected an integer from 0 to "
                        "100000000");
    assert_int_equal(t.last_line, 9);
}

/* The messages name the line and the column. */
static void test_azure_bad_line_message(void **state)
{
    (void)state;
    FILE *fp = mem("TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
                   "2023-11-16 18:17:04.1,abc,5\r\n");
    struct tm_error err = {0};
    tm_trace_t *tr = tm_trace_new(fp, TM_TRACE_AZURE, "x.csv", &err);
    assert_non_null(tr);
    struct tm_trace_rec rec;
    assert_int_equal(tm_trace_next(tr, &rec, &err), TM_TRACE_BAD_LINE);
    assert_int_equal(rec.line, 2);
    assert_string_equal(err.msg,
                        "x.csv:2: ContextTokens \"abc\": expected an integer from 0 to 100000000");
    assert_int_equal(tm_trace_next(tr, &rec, &err), TM_TRACE_END);
    tm_trace_destroy(tr);
    fclose(fp);
}

/* CRLF, LF, no final newline, blank lines, a BOM, reordered and extra
 * columns, quoted fields. */
static void test_azure_line_endings_and_columns(void **state)
{
    (void)state;
    struct totals t;
    read_str("TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
             "2023-11-16 18:17:03.9799600,4808,10\r\n"
             "\r\n"
             "2023-11-16 18:17:04.0319600,3180,8",
             TM_TRACE_AZURE, &t);
    assert_int_equal(t.bad, 0);
    assert_int_equal(t.records, 2);
    assert_int_equal(t.completion, 18);
    assert_int_equal(t.last_ts, INT64_C(1700158624031));
    assert_int_equal(t.last_line, 4);

    read_str("\xEF\xBB\xBF" "GeneratedTokens , Extra,timestamp,contexttokens\n"
             "10,\"a, \"\"quoted\"\" field\",\"2023-11-16T18:17:03.9799600Z\", 4808 \n"
             "8,x,2023-11-16 18:17:04+01:00,3180\n",
             TM_TRACE_AZURE, &t);
    assert_int_equal(t.bad, 0);
    assert_int_equal(t.records, 2);
    assert_int_equal(t.prompt, 4808 + 3180);
    assert_int_equal(t.first_ts, INT64_C(1700158623979));
    assert_int_equal(t.last_ts, INT64_C(1700158624000) - 3600 * 1000);
}

static void test_azure_bad_header(void **state)
{
    (void)state;
    const char *inputs[] = {
        "",                                    /* empty */
        "\r\n\r\n",                            /* blank */
        "TIMESTAMP,ContextTokens\n1,2\n",      /* a column missing */
        "2023-11-16 18:17:03.9799600,4808,10\n", /* no header at all */
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        FILE *fp = mem(inputs[i]);
        struct tm_error err = {0};
        assert_null(tm_trace_new(fp, TM_TRACE_AZURE, "h.csv", &err));
        assert_int_equal(err.domain, TM_ERR_PARSE);
        assert_non_null(strstr(err.msg, "h.csv"));
        fclose(fp);
    }
    struct tm_error err = {0};
    FILE *fp = mem("x");
    assert_null(tm_trace_new(fp, TM_TRACE_AUTO, "h", &err));
    assert_int_equal(err.domain, TM_ERR_CONFIG);
    fclose(fp);
}

/* A line far longer than any buffer a reader might have guessed. */
static void test_long_line(void **state)
{
    (void)state;
    size_t pad = 1 << 20;
    const char *head = "TIMESTAMP,ContextTokens,GeneratedTokens,Note\n"
                       "2023-11-16 18:17:03.9799600,4808,10,";
    char *s = malloc(strlen(head) + pad + 64);
    assert_non_null(s);
    strcpy(s, head);
    memset(s + strlen(head), 'x', pad);
    strcpy(s + strlen(head) + pad, "\n2023-11-16 18:17:04,1,2\n");
    struct totals t;
    read_str(s, TM_TRACE_AZURE, &t);
    assert_int_equal(t.records, 2);
    assert_int_equal(t.bad, 0);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Mooncake and events                                                      */
/* ------------------------------------------------------------------------ */

static void test_mooncake_bad_lines(void **state)
{
    (void)state;
    struct totals t;
    read_str("{\"timestamp\": 0, \"input_length\": 6758, \"output_length\": 500}\r\n"
             "{\"timestamp\": 3000, \"input_length\": 7\n"                        /* 2: truncated */
             "{\"timestamp\": 3000, \"input_length\": -1, \"output_length\": 1}\n" /* 3 */
             "[1,2]\n"                                                            /* 4 */
             "{\"input_length\": 1, \"output_length\": 1}\n"                      /* 5 */
             "{\"timestamp\": 4000.0, \"input_length\": 2.0, \"output_length\": 3, "
             "\"hash_ids\": [1]}",
             TM_TRACE_MOONCAKE, &t);
    assert_int_equal(t.records, 2);
    assert_int_equal(t.bad, 4);
    assert_int_equal(t.prompt, 6760);
    assert_int_equal(t.completion, 503);
    assert_int_equal(t.last_ts, 4000);
    assert_true(t.all_relative);
    long want[] = {2, 3, 4, 5};
    for (int i = 0; i < 4; i++)
        assert_int_equal(t.bad_lines[i], want[i]);
    assert_string_equal(t.last_err, "t:5: field \"timestamp\" (ms since the trace start) is "
                                    "missing");
}

static void test_events(void **state)
{
    (void)state;
    const char *in =
        "{\"ts\":\"2025-03-09T08:00:30.123Z\",\"host\":\"h1\",\"gpu_index\":3,\"model\":\"m\","
        "\"prompt_tokens\":5,\"completion_tokens\":7,\"event_id\":\"e1\",\"extra\":1}\n"
        "{\"ts\":1741507230,\"model\":\"m\",\"prompt_tokens\":1,\"completion_tokens\":2}\n"
        "not json\n"
        "{\"ts\":1741507230,\"gpu_index\":0,\"model\":\"m\",\"prompt_tokens\":1,"
        "\"completion_tokens\":2,\"latency_ms\":12.5}\n";
    FILE *fp = mem(in);
    struct tm_error err = {0};
    tm_trace_t *tr = tm_trace_new(fp, TM_TRACE_EVENTS, "stdin", &err);
    assert_non_null(tr);
    struct tm_trace_rec rec;

    assert_int_equal(tm_trace_next(tr, &rec, &err), TM_TRACE_RECORD);
    assert_non_null(rec.event);
    assert_string_equal(rec.event->host, "h1");
    assert_int_equal(rec.event->gpu_index, 3);
    assert_string_equal(rec.event->event_id, "e1");
    assert_int_equal(rec.ts_ms, INT64_C(1741507230123));
    assert_int_equal(rec.prompt_tokens, 5);
    assert_int_equal(rec.completion_tokens, 7);
    /* published as they are: the raw line, unknown fields included */
    assert_int_equal(rec.raw_len, strchr(in, '\n') - in);
    assert_memory_equal(rec.raw, in, rec.raw_len);

    assert_int_equal(tm_trace_next(tr, &rec, &err), TM_TRACE_BAD_LINE); /* no gpu_index */
    assert_int_equal(rec.line, 2);
    assert_null(rec.event);
    assert_non_null(strstr(err.msg, "stdin:2: missing_field"));
    assert_int_equal(tm_trace_next(tr, &rec, &err), TM_TRACE_BAD_LINE);
    assert_non_null(strstr(err.msg, "stdin:3: invalid_json"));

    assert_int_equal(tm_trace_next(tr, &rec, &err), TM_TRACE_RECORD);
    assert_string_equal(rec.event->host, "unknown"); /* token.usage.v1: no host */
    assert_int_equal(rec.line, 4);
    assert_int_equal(tm_trace_next(tr, &rec, &err), TM_TRACE_END);
    tm_trace_destroy(tr);
    fclose(fp);
}

static void test_nul_byte(void **state)
{
    (void)state;
    static const char in[] = "{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 1}\n"
                             "{\"timestamp\": 0,\0 \"input_length\": 1, \"output_length\": 1}\n";
    FILE *fp = file_with(in, sizeof(in) - 1);
    struct totals t;
    read_all(fp, TM_TRACE_MOONCAKE, "n", &t);
    fclose(fp);
    assert_int_equal(t.records, 1);
    assert_int_equal(t.bad, 1);
    assert_string_equal(t.last_err, "n:2: line contains a NUL byte");
}

static void test_formats(void **state)
{
    (void)state;
    assert_int_equal(tm_trace_format_from_path("-"), TM_TRACE_EVENTS);
    assert_int_equal(tm_trace_format_from_path("a/b/AzureLLMInferenceTrace_code.csv"),
                     TM_TRACE_AZURE);
    assert_int_equal(tm_trace_format_from_path("X.CSV"), TM_TRACE_AZURE);
    assert_int_equal(tm_trace_format_from_path("m.jsonl"), TM_TRACE_MOONCAKE);
    assert_int_equal(tm_trace_format_from_path("m.json"), TM_TRACE_AUTO);
    assert_int_equal(tm_trace_format_from_path("csv"), TM_TRACE_AUTO);
    assert_int_equal(tm_trace_format_parse("azure"), TM_TRACE_AZURE);
    assert_int_equal(tm_trace_format_parse("mooncake"), TM_TRACE_MOONCAKE);
    assert_int_equal(tm_trace_format_parse("events"), TM_TRACE_EVENTS);
    assert_int_equal(tm_trace_format_parse("Azure"), TM_TRACE_AUTO);
    assert_string_equal(tm_trace_format_name(TM_TRACE_MOONCAKE), "mooncake");
}

/* ------------------------------------------------------------------------ */
/* Replay: record -> event                                                  */
/* ------------------------------------------------------------------------ */

static void decode(const char *json, struct tm_event *ev)
{
    struct tm_error err = {0};
    assert_int_equal(tm_event_decode(json, strlen(json), ev, &err), TM_REJECT_NONE);
}

static void test_replay_round_robin_and_ids(void **state)
{
    (void)state;
    struct tm_replay_opts o = {.host = "inf-a", .model = "llama-2-70b", .source = "code.csv",
                               .gpus = 3, .gpu_offset = 4};
    struct tm_error err = {0};
    assert_int_equal(tm_replay_check(&o, &err), 0);
    struct tm_replay rp;
    tm_replay_init(&rp, &o);
    char key[TM_REPLAY_KEY_MAX];
    int want_gpu[] = {4, 5, 6, 4, 5};
    for (int i = 0; i < 5; i++) {
        struct tm_trace_rec rec = {.ts_ms = INT64_C(1700158623979) + i, .prompt_tokens = 10 + i,
                                   .completion_tokens = i, .line = 2 + i};
        char *json = tm_replay_encode(&rp, &rec, key, sizeof(key), &err);
        assert_non_null(json);
        struct tm_event ev;
        decode(json, &ev);
        assert_int_equal(ev.gpu_index, want_gpu[i]);
        assert_int_equal(ev.ts_ms, rec.ts_ms); /* absolute times are kept */
        assert_string_equal(ev.host, "inf-a");
        assert_string_equal(ev.model, "llama-2-70b");
        assert_int_equal(ev.prompt_tokens, 10 + i);
        assert_int_equal(ev.completion_tokens, i);
        char id[64], k[32];
        snprintf(id, sizeof(id), "inf-a/code.csv/%d", 2 + i);
        snprintf(k, sizeof(k), "inf-a/%d", want_gpu[i]);
        assert_string_equal(ev.event_id, id);
        assert_string_equal(key, k);
        tm_event_clear(&ev);
        free(json);
    }
    tm_replay_free(&rp);
}

static void test_replay_times(void **state)
{
    (void)state;
    const int64_t anchor = INT64_C(1741507200000); /* 2025-03-09T08:00:00Z */
    struct tm_replay_opts o = {.host = "h", .model = "m", .source = "s", .gpus = 1,
                               .anchor_ms = anchor};
    struct tm_replay rp;
    char key[TM_REPLAY_KEY_MAX];
    struct tm_event ev;
    struct tm_error err = {0};

    /* relative: anchor + offset */
    tm_replay_init(&rp, &o);
    struct tm_trace_rec rel = {.ts_ms = 1797000, .relative = true, .line = 1};
    char *json = tm_replay_encode(&rp, &rel, key, sizeof(key), &err);
    decode(json, &ev);
    assert_int_equal(ev.ts_ms, anchor + 1797000);
    tm_event_clear(&ev);
    free(json);
    tm_replay_free(&rp);

    /* absolute with --start: the first record lands on the anchor, deltas kept */
    o.shift_absolute = true;
    tm_replay_init(&rp, &o);
    int64_t ts[] = {INT64_C(1700158623979), INT64_C(1700158624031), INT64_C(1700158623000)};
    int64_t want[] = {anchor, anchor + 52, anchor - 979};
    for (int i = 0; i < 3; i++) {
        struct tm_trace_rec abs = {.ts_ms = ts[i], .line = 2 + i};
        json = tm_replay_encode(&rp, &abs, key, sizeof(key), &err);
        decode(json, &ev);
        assert_int_equal(ev.ts_ms, want[i]);
        tm_event_clear(&ev);
        free(json);
    }
    tm_replay_free(&rp);

    /* out of range after the shift: an error naming the line, no event */
    o.anchor_ms = 10;
    tm_replay_init(&rp, &o);
    struct tm_trace_rec a = {.ts_ms = 5000, .line = 2}, b = {.ts_ms = 4000, .line = 3};
    json = tm_replay_encode(&rp, &a, key, sizeof(key), &err);
    free(json);
    assert_null(tm_replay_encode(&rp, &b, key, sizeof(key), &err));
    assert_int_equal(err.domain, TM_ERR_PARSE);
    assert_non_null(strstr(err.msg, "s:3:"));
    tm_replay_free(&rp);
}

static void test_replay_check(void **state)
{
    (void)state;
    struct tm_error err = {0};
    char longname[300];
    memset(longname, 'h', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    struct tm_replay_opts bad[] = {
        {.host = "", .model = "m", .source = "s", .gpus = 1},
        {.host = "h", .model = NULL, .source = "s", .gpus = 1},
        {.host = "h", .model = "m", .source = "s", .gpus = 0},
        {.host = "h", .model = "m", .source = "s", .gpus = 2, .gpu_offset = 65535},
        {.host = longname, .model = "m", .source = "s", .gpus = 1},
        {.host = "h", .model = longname, .source = "s", .gpus = 1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tm_replay_check(&bad[i], &err), -1);
        assert_int_equal(err.domain, TM_ERR_CONFIG);
    }
    struct tm_replay_opts ok = {.host = "h", .model = "m", .source = "s", .gpus = 1,
                                .gpu_offset = 65535};
    assert_int_equal(tm_replay_check(&ok, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_azure_code),
        cmocka_unit_test(test_azure_conv),
        cmocka_unit_test(test_azure_combined),
        cmocka_unit_test(test_mooncake),
        cmocka_unit_test(test_count_records),
        cmocka_unit_test(test_azure_bad_lines),
        cmocka_unit_test(test_azure_bad_line_message),
        cmocka_unit_test(test_azure_line_endings_and_columns),
        cmocka_unit_test(test_azure_bad_header),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_mooncake_bad_lines),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_replay_round_robin_and_ids),
        cmocka_unit_test(test_replay_times),
        cmocka_unit_test(test_replay_check),
    };
    return cmocka_run_group_tests_name("trace", tests, NULL, NULL);
}
