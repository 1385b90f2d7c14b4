/*
 * test_window.c - the aggregator of src/window: window assignment at the
 * boundaries, watermark and lateness, idle close only when caught up, commit
 * offsets that never pass an unacknowledged window, and replays answered by a
 * (fake) store: CASE-09 (c), CASE-10, CASE-13, CASE-19 (c) at unit level.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "window/window.h"

#define W0 INT64_C(1741507200000) /* 2025-03-09T08:00:00Z */
#define SEC INT64_C(1000)

static struct tm_event ev_at(int64_t ts, int gpu, int64_t p, int64_t c)
{
    return (struct tm_event){.ts_ms = ts, .host = "node-1", .gpu_index = gpu, .model = "model-a",
                             .prompt_tokens = p, .completion_tokens = c};
}

static enum tm_add_result add(struct tm_agg *agg, int32_t part, int64_t off, int64_t ts, int gpu,
                              int64_t p, int64_t c, const struct tm_window_store_ops *ops)
{
    struct tm_event ev = ev_at(ts, gpu, p, c);
    enum tm_add_result res;
    struct tm_error err;
    assert_int_equal(tm_agg_add(agg, part, off, &ev, 0, ops, &res, &err), 0);
    return res;
}

/* Take the closed windows and mark them written; returns how many. */
static size_t flush(struct tm_agg *agg, int64_t now, bool idle, bool all, struct tm_window **keep,
                    size_t cap)
{
    struct tm_window **ws;
    size_t n = tm_agg_take_closed(agg, now, idle, all, &ws);
    for (size_t i = 0; i < n; i++) {
        if (i < cap)
            keep[i] = ws[i];
    }
    free(ws);
    return n;
}

static void boundaries(void **state)
{
    (void)state;
    struct tm_agg *agg = tm_agg_new(60 * SEC, 5 * SEC, 60 * SEC);
    assert_int_equal(tm_agg_window_start(agg, W0), W0);
    assert_int_equal(tm_agg_window_start(agg, W0 + 59999), W0);
    assert_int_equal(tm_agg_window_start(agg, W0 + 60000), W0 + 60000);
    assert_int_equal(tm_agg_window_start(agg, W0 - 1), W0 - 60000);
    assert_int_equal(tm_agg_window_start(agg, 0), 0);
    tm_agg_free(agg);
    agg = tm_agg_new(10 * SEC, 0, 60 * SEC);
    assert_int_equal(tm_agg_window_start(agg, W0 + 19999), W0 + 10000);
    tm_agg_free(agg);
}

/* A window closes when its GPU's watermark reaches end + lateness; an event
 * within the lateness still joins it; one behind it is late. */
static void watermark_and_lateness(void **state)
{
    (void)state;
    struct tm_agg *agg = tm_agg_new(60 * SEC, 5 * SEC, 3600 * SEC);
    struct tm_window *w[4] = {0};
    assert_int_equal(add(agg, 0, 0, W0 + 59 * SEC, 0, 400, 200, NULL), TM_ADD_COUNTED);
    assert_int_equal(add(agg, 0, 1, W0 + 62 * SEC, 0, 70, 30, NULL), TM_ADD_COUNTED);
    assert_int_equal(flush(agg, 0, false, false, w, 4), 0); /* 08:01:02 < 08:01:05 */
    assert_int_equal(add(agg, 0, 2, W0 + 58 * SEC, 0, 40, 20, NULL), TM_ADD_COUNTED);
    assert_int_equal(add(agg, 0, 3, W0 + 65 * SEC, 0, 1, 1, NULL), TM_ADD_COUNTED);
    assert_int_equal(flush(agg, 0, false, false, w, 4), 1); /* watermark 08:01:05 */
    assert_int_equal(w[0]->start_ms, W0);
    assert_int_equal(w[0]->requests, 2);
    assert_int_equal(w[0]->prompt_tokens + w[0]->completion_tokens, 660);
    assert_int_equal(w[0]->offset_min, 0);
    assert_int_equal(w[0]->offset_max, 2);
    /* not yet acknowledged: the commit stays at the window's first offset */
    assert_int_equal(tm_agg_commit_offset(agg, 0, 4), 0);
    assert_int_equal(tm_agg_pending(agg), 2); /* W flushing, W+1 open */
    tm_agg_persisted(agg, w[0]);
    assert_int_equal(tm_agg_pending(agg), 1);
    /* acknowledged: the commit moves to W+1's first offset */
    assert_int_equal(tm_agg_commit_offset(agg, 0, 4), 1);
    /* W is closed: a new event for it is late, a replayed one a duplicate */
    assert_int_equal(add(agg, 0, 4, W0 + 30 * SEC, 0, 1, 1, NULL), TM_ADD_LATE);
    assert_int_equal(add(agg, 0, 2, W0 + 58 * SEC, 0, 40, 20, NULL), TM_ADD_DUPLICATE);
    /* a window never opened but behind the watermark is late too */
    assert_int_equal(add(agg, 0, 5, W0 - 30 * SEC, 0, 1, 1, NULL), TM_ADD_LATE);
    tm_agg_free(agg);
}

/* CASE-19 (c): the rate uses the window, not the span of its events. */
static void case_19_rate_uses_window(void **state)
{
    (void)state;
    struct tm_agg *agg = tm_agg_new(60 * SEC, 5 * SEC, 3600 * SEC);
    struct tm_window *w[1] = {0};
    assert_int_equal(add(agg, 0, 0, W0 + 59 * SEC, 0, 400, 200, NULL), TM_ADD_COUNTED);
    assert_int_equal(flush(agg, 0, false, true, w, 1), 1);
    assert_int_equal(w[0]->end_ms - w[0]->start_ms, 60 * SEC);
    assert_int_equal(w[0]->first_ts_ms, w[0]->last_ts_ms);
    tm_agg_free(agg);
}

/* Watermarks are per GPU: a host far ahead does not make another late. */
static void watermark_per_gpu(void **state)
{
    (void)state;
    struct tm_agg *agg = tm_agg_new(10 * SEC, 5 * SEC, 3600 * SEC);
    assert_int_equal(add(agg, 0, 0, W0 + 3600 * SEC, 1, 1, 1, NULL), TM_ADD_COUNTED);
    assert_int_equal(add(agg, 0, 1, W0, 0, 1, 1, NULL), TM_ADD_COUNTED);
    assert_int_equal(add(agg, 0, 2, W0 + 1 * SEC, 0, 1, 1, NULL), TM_ADD_COUNTED);
    tm_agg_free(agg);
}

/* Idle close needs the partition caught up: a backlog or an outage is not
 * idleness (CASE-11). */
static void idle_close_only_when_caught_up(void **state)
{
    (void)state;
    struct tm_agg *agg = tm_agg_new(60 * SEC, 5 * SEC, 15 * SEC);
    struct tm_window *w[1] = {0};
    struct tm_event ev = ev_at(W0 + 10 * SEC, 0, 70, 30);
    enum tm_add_result res;
    struct tm_error err;
    assert_int_equal(tm_agg_add(agg, 3, 0, &ev, 1000, NULL, &res, &err), 0);
    assert_int_equal(flush(agg, 1000 + 20 * SEC, true, false, w, 1), 0); /* not caught up */
    tm_agg_partition_caught_up(agg, 3, true);
    assert_int_equal(flush(agg, 1000 + 10 * SEC, true, false, w, 1), 0); /* not idle long enough */
    assert_int_equal(flush(agg, 1000 + 20 * SEC, false, false, w, 1), 0); /* Kafka not healthy */
    assert_int_equal(flush(agg, 1000 + 20 * SEC, true, false, w, 1), 1);
    assert_int_equal(w[0]->requests, 1);
    tm_agg_free(agg);
}

/* ------------------------------------------------- replays against a store */

struct fake_store {
    int lookups, frontiers;
    bool has_doc;
    int32_t doc_partition;
    int64_t doc_start, doc_offset_max, frontier_end;
    bool fail;
};

static int fake_lookup(void *ctx, const char *host, int gpu, int64_t start, bool *found,
                       int32_t *partition, int64_t *offset_max, struct tm_error *err)
{
    (void)host;
    (void)gpu;
    struct fake_store *f = ctx;
    f->lookups++;
    if (f->fail) {
        tm_error_set(err, TM_ERR_STORE, 0, "down");
        return -1;
    }
    *found = f->has_doc && start == f->doc_start;
    *partition = f->doc_partition;
    *offset_max = f->doc_offset_max;
    return 0;
}

static int fake_frontier(void *ctx, const char *host, int gpu, bool *found, int64_t *end,
                         struct tm_error *err)
{
    (void)host;
    (void)gpu;
    struct fake_store *f = ctx;
    f->frontiers++;
    if (f->fail) {
        tm_error_set(err, TM_ERR_STORE, 0, "down");
        return -1;
    }
    *found = f->has_doc;
    *end = f->frontier_end;
    return 0;
}

/* CASE-09 (c) after the restart: W (08:00) was written with offsets 0..11;
 * replay from offset 10: offset 11 (W) is a duplicate, 10 and 12 build W+1. */
static void case_09c_replay_after_crash(void **state)
{
    (void)state;
    struct fake_store f = {.has_doc = true, .doc_partition = 0, .doc_start = W0,
                           .doc_offset_max = 11, .frontier_end = W0 + 60 * SEC};
    struct tm_window_store_ops ops = {fake_lookup, fake_frontier, &f};
    struct tm_agg *agg = tm_agg_new(60 * SEC, 5 * SEC, 3600 * SEC);
    assert_int_equal(add(agg, 0, 10, W0 + 62 * SEC, 0, 70, 30, &ops), TM_ADD_COUNTED);
    assert_int_equal(f.lookups, 0); /* W+1 is past the frontier: no lookup */
    assert_int_equal(add(agg, 0, 11, W0 + 58 * SEC, 0, 40, 20, &ops), TM_ADD_DUPLICATE);
    assert_int_equal(f.lookups, 1);
    assert_int_equal(add(agg, 0, 12, W0 + 70 * SEC, 0, 70, 30, &ops), TM_ADD_COUNTED);
    /* a new event for W after the replay is late, not an overwrite of W */
    assert_int_equal(add(agg, 0, 13, W0 + 59 * SEC, 0, 1, 0, &ops), TM_ADD_LATE);
    /* the stored window is remembered: replaying more of it needs no lookup */
    assert_int_equal(add(agg, 0, 9, W0 + 50 * SEC, 0, 40, 20, &ops), TM_ADD_DUPLICATE);
    assert_int_equal(f.lookups, 1);
    struct tm_window *w[2] = {0};
    assert_int_equal(flush(agg, 0, false, true, w, 2), 1);
    assert_int_equal(w[0]->start_ms, W0 + 60 * SEC);
    assert_int_equal(w[0]->requests, 2);
    assert_int_equal(w[0]->prompt_tokens + w[0]->completion_tokens, 200);
    assert_int_equal(f.frontiers, 1); /* once per GPU */
    tm_agg_free(agg);
}

/* A window written from another partition is not rebuilt here. */
static void foreign_partition(void **state)
{
    (void)state;
    struct fake_store f = {.has_doc = true, .doc_partition = 7, .doc_start = W0,
                           .doc_offset_max = 3, .frontier_end = W0 + 60 * SEC};
    struct tm_window_store_ops ops = {fake_lookup, fake_frontier, &f};
    struct tm_agg *agg = tm_agg_new(60 * SEC, 5 * SEC, 3600 * SEC);
    assert_int_equal(add(agg, 0, 0, W0 + 1 * SEC, 0, 1, 1, &ops), TM_ADD_FOREIGN);
    tm_agg_free(agg);
}

/* The store cannot answer: nothing changes, the caller retries the event. */
static void store_down_changes_nothing(void **state)
{
    (void)state;
    struct fake_store f = {.fail = true};
    struct tm_window_store_ops ops = {fake_lookup, fake_frontier, &f};
    struct tm_agg *agg = tm_agg_new(60 * SEC, 5 * SEC, 3600 * SEC);
    struct tm_event ev = ev_at(W0, 0, 1, 1);
    enum tm_add_result res;
    struct tm_error err;
    assert_int_equal(tm_agg_add(agg, 0, 0, &ev, 0, &ops, &res, &err), -1);
    assert_int_equal(tm_agg_pending(agg), 0);
    f.fail = false;
    assert_int_equal(tm_agg_add(agg, 0, 0, &ev, 0, &ops, &res, &err), 0);
    assert_int_equal(res, TM_ADD_COUNTED);
    assert_int_equal(tm_agg_pending(agg), 1);
    tm_agg_free(agg);
}

/* CASE-10: a revoked partition drops its unwritten windows; the new owner
 * rebuilds them from the committed offset and never counts an event twice. */
static void case_10_rebalance_drops_partial_window(void **state)
{
    (void)state;
    struct tm_agg *c1 = tm_agg_new(60 * SEC, 5 * SEC, 3600 * SEC);
    for (int i = 0; i < 6; i++)
        add(c1, 1, i, W0 + (5 + 5 * i) * SEC, 0, 30, 20, NULL);
    assert_int_equal(tm_agg_commit_offset(c1, 1, 6), 0); /* nothing persisted */
    tm_agg_drop_partition(c1, 1);
    assert_int_equal(tm_agg_pending(c1), 0);
    tm_agg_free(c1);

    struct tm_agg *c2 = tm_agg_new(60 * SEC, 5 * SEC, 3600 * SEC);
    for (int i = 0; i < 10; i++)
        assert_int_equal(add(c2, 1, i, W0 + (5 + 5 * i) * SEC, 0, 30, 20, NULL), TM_ADD_COUNTED);
    struct tm_window *w[1] = {0};
    assert_int_equal(flush(c2, 0, false, true, w, 1), 1);
    assert_int_equal(w[0]->requests, 10);
    assert_int_equal(w[0]->prompt_tokens + w[0]->completion_tokens, 500);
    tm_agg_free(c2);
}

/* Model names are data: per-model rows, bounded in number (CASE-13 b, -14). */
static void models_breakdown(void **state)
{
    (void)state;
    struct tm_agg *agg = tm_agg_new(60 * SEC, 5 * SEC, 3600 * SEC);
    struct tm_event ev = ev_at(W0, 1, 200, 100);
    ev.model = "$model-b.v1";
    enum tm_add_result res;
    struct tm_error err;
    tm_agg_add(agg, 0, 0, &ev, 0, NULL, &res, &err);
    char name[32];
    for (int i = 0; i < TM_WINDOW_MAX_MODELS + 10; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        struct tm_event e2 = ev_at(W0 + 1, 1, 1, 0);
        e2.model = name;
        tm_agg_add(agg, 0, 1 + i, &e2, 0, NULL, &res, &err);
    }
    struct tm_window *w[1] = {0};
    assert_int_equal(flush(agg, 0, false, true, w, 1), 1);
    assert_int_equal(w[0]->nmodels, TM_WINDOW_MAX_MODELS + 1);
    assert_string_equal(w[0]->models[0].model, "$model-b.v1");
    assert_int_equal(w[0]->models[0].prompt_tokens + w[0]->models[0].completion_tokens, 300);
    assert_string_equal(w[0]->models[TM_WINDOW_MAX_MODELS].model, "(other)");
    assert_int_equal(w[0]->models[TM_WINDOW_MAX_MODELS].requests, 11);
    assert_int_equal(w[0]->requests, TM_WINDOW_MAX_MODELS + 11);
    tm_agg_free(agg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(boundaries),
        cmocka_unit_test(watermark_and_lateness),
        cmocka_unit_test(case_19_rate_uses_window),
        cmocka_unit_test(watermark_per_gpu),
        cmocka_unit_test(idle_close_only_when_caught_up),
        cmocka_unit_test(case_09c_replay_after_crash),
        cmocka_unit_test(foreign_partition),
        cmocka_unit_test(store_down_changes_nothing),
        cmocka_unit_test(case_10_rebalance_drops_partial_window),
        cmocka_unit_test(models_breakdown),
    };
    return cmocka_run_group_tests_name("window", tests, NULL, NULL);
}
