/*
 * window.c - per-GPU event-time tumbling windows (see window.h for the
 * semantics).  Sizes are small: a partition holds a few GPUs, a GPU one or two
 * open windows and a short tail of recently written ones, so plain arrays with
 * linear search beat any hash table here.
 */
#include "window/window.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/timeutil.h"

/* Written windows kept per GPU to answer replays without a store lookup. */
#define KEEP_PERSISTED 4

struct gpu_state {
    char *host;
    int gpu_index;
    bool has_wm;
    int64_t wm_ms;           /* largest ts seen: the GPU's watermark */
    int64_t last_event_wall; /* wall clock of its last event */
    bool frontier_known;     /* frontier_ms was asked from the store */
    int64_t frontier_ms;     /* end of the latest window written for it, or INT64_MIN */
    struct tm_window **wins; /* ordered by start_ms */
    size_t nwins, cap;
};

struct part_state {
    int32_t partition;
    bool caught_up; /* read up to the high watermark (see tm_agg_partition_caught_up) */
    struct gpu_state **gpus;
    size_t ngpus, cap;
};

struct tm_agg {
    int64_t window_ms, lateness_ms, idle_ms;
    size_t pending; /* windows not yet acknowledged (OPEN or FLUSHING) */
    struct part_state **parts;
    size_t nparts, cap;
};

/* ---------------------------------------------------------------- lifetime */

static void window_free(struct tm_window *w)
{
    for (size_t i = 0; i < w->nmodels; i++)
        free(w->models[i].model);
    free(w->models);
    free(w->host);
    free(w);
}

static void gpu_free(struct gpu_state *g)
{
    for (size_t i = 0; i < g->nwins; i++)
        window_free(g->wins[i]);
    free(g->wins);
    free(g->host);
    free(g);
}

static void part_free(struct part_state *p)
{
    for (size_t i = 0; i < p->ngpus; i++)
        gpu_free(p->gpus[i]);
    free(p->gpus);
    free(p);
}

struct tm_agg *tm_agg_new(int64_t window_ms, int64_t lateness_ms, int64_t idle_ms)
{
    struct tm_agg *agg = tm_xcalloc(1, sizeof(*agg));
    agg->window_ms = window_ms;
    agg->lateness_ms = lateness_ms;
    agg->idle_ms = idle_ms;
    return agg;
}

void tm_agg_free(struct tm_agg *agg)
{
    if (!agg)
        return;
    for (size_t i = 0; i < agg->nparts; i++)
        part_free(agg->parts[i]);
    free(agg->parts);
    free(agg);
}

int64_t tm_agg_window_start(const struct tm_agg *agg, int64_t ts_ms)
{
    return tm_floor_div(ts_ms, agg->window_ms) * agg->window_ms;
}

/* ----------------------------------------------------------------- lookups */

static struct part_state *find_part(const struct tm_agg *agg, int32_t partition)
{
    for (size_t i = 0; i < agg->nparts; i++)
        if (agg->parts[i]->partition == partition)
            return agg->parts[i];
    return NULL;
}

static struct part_state *get_part(struct tm_agg *agg, int32_t partition)
{
    struct part_state *p = find_part(agg, partition);
    if (p)
        return p;
    p = tm_xcalloc(1, sizeof(*p));
    p->partition = partition;
    if (agg->nparts == agg->cap) {
        agg->cap = agg->cap ? agg->cap * 2 : 8;
        agg->parts = tm_xrealloc(agg->parts, agg->cap * sizeof(*agg->parts));
    }
    agg->parts[agg->nparts++] = p;
    return p;
}

static struct gpu_state *get_gpu(struct part_state *p, const char *host, int gpu_index)
{
    for (size_t i = 0; i < p->ngpus; i++)
        if (p->gpus[i]->gpu_index == gpu_index && strcmp(p->gpus[i]->host, host) == 0)
            return p->gpus[i];
    struct gpu_state *g = tm_xcalloc(1, sizeof(*g));
    g->host = tm_xstrdup(host);
    g->gpu_index = gpu_index;
    if (p->ngpus == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 4;
        p->gpus = tm_xrealloc(p->gpus, p->cap * sizeof(*p->gpus));
    }
    p->gpus[p->ngpus++] = g;
    return g;
}

static struct tm_window *find_window(const struct gpu_state *g, int64_t start_ms)
{
    for (size_t i = 0; i < g->nwins; i++)
        if (g->wins[i]->start_ms == start_ms)
            return g->wins[i];
    return NULL;
}

static struct tm_window *open_window(struct tm_agg *agg, struct gpu_state *g, int32_t partition,
                                     int64_t start_ms, int64_t offset,
                                     enum tm_window_state state)
{
    struct tm_window *w = tm_xcalloc(1, sizeof(*w));
    w->host = tm_xstrdup(g->host);
    w->gpu_index = g->gpu_index;
    w->start_ms = start_ms;
    w->end_ms = start_ms + agg->window_ms;
    w->partition = partition;
    w->offset_min = w->offset_max = offset;
    w->state = state;
    if (state != TM_WIN_PERSISTED)
        agg->pending++;
    if (g->nwins == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 4;
        g->wins = tm_xrealloc(g->wins, g->cap * sizeof(*g->wins));
    }
    size_t i = g->nwins;
    while (i > 0 && g->wins[i - 1]->start_ms > start_ms) { /* keep ordered */
        g->wins[i] = g->wins[i - 1];
        i--;
    }
    g->wins[i] = w;
    g->nwins++;
    return w;
}

static void add_model(struct tm_window *w, const struct tm_event *ev)
{
    const char *name = ev->model;
    struct tm_model_agg *m = NULL;
    for (size_t i = 0; i < w->nmodels && !m; i++)
        if (strcmp(w->models[i].model, name) == 0)
            m = &w->models[i];
    if (!m && w->nmodels >= TM_WINDOW_MAX_MODELS) {
        name = "(other)"; /* bounded document size (CASE-14) */
        for (size_t i = 0; i < w->nmodels && !m; i++)
            if (strcmp(w->models[i].model, name) == 0)
                m = &w->models[i];
    }
    if (!m) {
        w->models = tm_xrealloc(w->models, (w->nmodels + 1) * sizeof(*w->models));
        m = &w->models[w->nmodels++];
        memset(m, 0, sizeof(*m));
        m->model = tm_xstrdup(name);
    }
    m->requests++;
    m->prompt_tokens += ev->prompt_tokens;
    m->completion_tokens += ev->completion_tokens;
}

static void count(struct tm_window *w, int64_t offset, const struct tm_event *ev)
{
    if (w->requests == 0 || ev->ts_ms < w->first_ts_ms)
        w->first_ts_ms = ev->ts_ms;
    if (w->requests == 0 || ev->ts_ms > w->last_ts_ms)
        w->last_ts_ms = ev->ts_ms;
    w->requests++;
    w->prompt_tokens += ev->prompt_tokens;
    w->completion_tokens += ev->completion_tokens;
    if (ev->has_latency) {
        w->latency_sum_ms += ev->latency_ms;
        w->latency_n++;
    }
    if (offset < w->offset_min)
        w->offset_min = offset;
    if (offset > w->offset_max)
        w->offset_max = offset;
    add_model(w, ev);
}

/* Keep only the newest KEEP_PERSISTED written windows of @p g (and @p keep);
 * older ones are answered by the store lookup if they ever come up again. */
static void evict_persisted(struct gpu_state *g, const struct tm_window *keep)
{
    size_t persisted = 0;
    for (size_t i = 0; i < g->nwins; i++)
        persisted += g->wins[i]->state == TM_WIN_PERSISTED;
    size_t k = 0;
    for (size_t i = 0; i < g->nwins; i++) {
        struct tm_window *x = g->wins[i];
        if (x->state == TM_WIN_PERSISTED && persisted > KEEP_PERSISTED && x != keep) {
            window_free(x);
            persisted--;
            continue;
        }
        g->wins[k++] = x;
    }
    g->nwins = k;
}

/* ------------------------------------------------------------------ adding */

int tm_agg_add(struct tm_agg *agg, int32_t partition, int64_t offset, const struct tm_event *ev,
               int64_t now_ms, const struct tm_window_store_ops *store,
               enum tm_add_result *res, struct tm_error *err)
{
    int64_t start = tm_agg_window_start(agg, ev->ts_ms);
    struct part_state *p = get_part(agg, partition);
    struct gpu_state *g = get_gpu(p, ev->host, ev->gpu_index);
    struct tm_window *w = find_window(g, start);

    if (!g->frontier_known) {
        bool found = false;
        int64_t end = INT64_MIN;
        if (store && store->frontier &&
            store->frontier(store->ctx, ev->host, ev->gpu_index, &found, &end, err) < 0)
            return -1;
        g->frontier_ms = found ? end : INT64_MIN;
        g->frontier_known = true;
    }

    if (w && w->state != TM_WIN_OPEN) {
        /* closed in this session: replayed (<= offset_max) or late */
        *res = offset <= w->offset_max ? TM_ADD_DUPLICATE : TM_ADD_LATE;
        return 0;
    }
    if (!w) {
        bool found = false;
        int32_t owner = partition;
        int64_t stored_max = -1;
        /* A window past the GPU's frontier cannot have been written. */
        if (store && store->lookup && start < g->frontier_ms &&
            store->lookup(store->ctx, ev->host, ev->gpu_index, start, &found, &owner,
                          &stored_max, err) < 0)
            return -1;
        if (found) {
            if (owner != partition) {
                *res = TM_ADD_FOREIGN;
                return 0;
            }
            *res = offset <= stored_max ? TM_ADD_DUPLICATE : TM_ADD_LATE;
            /* Remember the stored window, so the rest of a replay of it is
             * answered here, not by one store lookup per event. */
            w = open_window(agg, g, partition, start, stored_max, TM_WIN_PERSISTED);
            evict_persisted(g, w);
            return 0;
        }
        if (g->has_wm && start + agg->window_ms + agg->lateness_ms <= g->wm_ms) {
            *res = TM_ADD_LATE; /* behind the watermark, never opened */
            return 0;
        }
        w = open_window(agg, g, partition, start, offset, TM_WIN_OPEN);
    }
    count(w, offset, ev);
    if (!g->has_wm || ev->ts_ms > g->wm_ms)
        g->wm_ms = ev->ts_ms;
    g->has_wm = true;
    g->last_event_wall = now_ms;
    *res = TM_ADD_COUNTED;
    return 0;
}

void tm_agg_partition_caught_up(struct tm_agg *agg, int32_t partition, bool caught_up)
{
    struct part_state *p = find_part(agg, partition);
    if (p)
        p->caught_up = caught_up;
}

/* ---------------------------------------------------------------- closing */

static bool gpu_idle(const struct tm_agg *agg, const struct part_state *p,
                     const struct gpu_state *g, int64_t now_ms)
{
    return p->caught_up && now_ms - g->last_event_wall >= agg->idle_ms;
}

size_t tm_agg_take_closed(struct tm_agg *agg, int64_t now_ms, bool idle_allowed, bool all,
                          struct tm_window ***out)
{
    size_t n = 0, cap = 0;
    struct tm_window **list = NULL;
    for (size_t i = 0; i < agg->nparts; i++) {
        struct part_state *p = agg->parts[i];
        for (size_t j = 0; j < p->ngpus; j++) {
            struct gpu_state *g = p->gpus[j];
            bool idle = idle_allowed && gpu_idle(agg, p, g, now_ms);
            for (size_t k = 0; k < g->nwins; k++) {
                struct tm_window *w = g->wins[k];
                if (w->state == TM_WIN_PERSISTED)
                    continue;
                if (w->state == TM_WIN_OPEN && !all && !idle &&
                    g->wm_ms < w->end_ms + agg->lateness_ms)
                    continue;
                w->state = TM_WIN_FLUSHING;
                if (n == cap) {
                    cap = cap ? cap * 2 : 16;
                    list = tm_xrealloc(list, cap * sizeof(*list));
                }
                list[n++] = w;
            }
        }
    }
    *out = list;
    return n;
}

void tm_agg_persisted(struct tm_agg *agg, struct tm_window *w)
{
    if (w->state != TM_WIN_PERSISTED)
        agg->pending--;
    w->state = TM_WIN_PERSISTED;
    struct part_state *p = find_part(agg, w->partition);
    if (!p)
        return;
    struct gpu_state *g = NULL;
    for (size_t i = 0; i < p->ngpus && !g; i++)
        if (p->gpus[i]->gpu_index == w->gpu_index && strcmp(p->gpus[i]->host, w->host) == 0)
            g = p->gpus[i];
    if (!g)
        return;
    if (w->end_ms > g->frontier_ms)
        g->frontier_ms = w->end_ms;
    evict_persisted(g, w);
}

/* ---------------------------------------------------------------- commits */

int64_t tm_agg_commit_offset(const struct tm_agg *agg, int32_t partition, int64_t next_offset)
{
    const struct part_state *p = find_part(agg, partition);
    if (!p)
        return next_offset;
    int64_t c = next_offset;
    for (size_t i = 0; i < p->ngpus; i++)
        for (size_t k = 0; k < p->gpus[i]->nwins; k++) {
            const struct tm_window *w = p->gpus[i]->wins[k];
            if (w->state != TM_WIN_PERSISTED && w->offset_min < c)
                c = w->offset_min;
        }
    return c;
}

void tm_agg_drop_partition(struct tm_agg *agg, int32_t partition)
{
    for (size_t i = 0; i < agg->nparts; i++)
        if (agg->parts[i]->partition == partition) {
            const struct part_state *p = agg->parts[i];
            for (size_t j = 0; j < p->ngpus; j++)
                for (size_t k = 0; k < p->gpus[j]->nwins; k++)
                    agg->pending -= p->gpus[j]->wins[k]->state != TM_WIN_PERSISTED;
            part_free(agg->parts[i]);
            agg->parts[i] = agg->parts[--agg->nparts];
            return;
        }
}

size_t tm_agg_pending(const struct tm_agg *agg)
{
    return agg->pending; /* kept as windows open, are acknowledged or dropped: O(1) */
}
