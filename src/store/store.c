/*
 * store.c - libmongoc implementation of store.h.  bson_error_t is translated
 * to struct tm_error here and nowhere else; a network-level failure is
 * retriable, a per-operation write error is not.
 */
#include "store/store.h"

#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "cost/cost.h"

struct tm_store {
    mongoc_client_pool_t *pool;
    char *db;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void mongoc_log_to_tm(mongoc_log_level_t level, const char *domain, const char *message,
                             void *ud)
{
    (void)ud;
    /* FerretDB has no sessions; the driver's goodbye is noise there. */
    if (strstr(message, "endSessions"))
        return;
    int l = level <= MONGOC_LOG_LEVEL_CRITICAL ? TM_LOG_ERROR
            : level == MONGOC_LOG_LEVEL_WARNING ? TM_LOG_WARN
            : level <= MONGOC_LOG_LEVEL_INFO    ? TM_LOG_INFO
                                                : TM_LOG_DEBUG + 1; /* trace: never shown */
    tm_log(l, "store", "mongoc %s: %s", domain, message);
}

static void global_init(void)
{
    mongoc_init();
    mongoc_log_set_handler(mongoc_log_to_tm, NULL);
}

static void set_err(struct tm_error *err, const bson_error_t *e, const char *what)
{
    tm_error_set(err, TM_ERR_STORE, (int)e->code, "%s: %s", what, e->message);
    if (err)
        err->retriable = true;
}

struct tm_store *tm_store_open(const char *uri_str, struct tm_error *err)
{
    pthread_once(&init_once, global_init);
    bson_error_t e;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_str, &e);
    if (!uri) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "MONGODB_URI: %s", e.message);
        return NULL;
    }
    if (!mongoc_uri_get_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 0))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
    if (!mongoc_uri_get_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, 0))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, 3000);
    struct tm_store *st = tm_xcalloc(1, sizeof(*st));
    const char *db = mongoc_uri_get_database(uri);
    st->db = tm_xstrdup(db && *db ? db : "tokenmeter");
    st->pool = mongoc_client_pool_new(uri);
    mongoc_uri_destroy(uri);
    if (!st->pool) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "MONGODB_URI: cannot create a client pool");
        tm_store_close(st);
        return NULL;
    }
    mongoc_client_pool_set_error_api(st->pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_set_appname(st->pool, "tokenmeter");
    return st;
}

void tm_store_close(struct tm_store *st)
{
    if (!st)
        return;
    if (st->pool)
        mongoc_client_pool_destroy(st->pool);
    free(st->db);
    free(st);
}

const char *tm_store_db_name(const struct tm_store *st)
{
    return st->db;
}

int tm_store_ping(struct tm_store *st, struct tm_error *err)
{
    mongoc_client_t *c = mongoc_client_pool_pop(st->pool);
    bson_t cmd = BSON_INITIALIZER;
    bson_error_t e;
    BSON_APPEND_INT32(&cmd, "ping", 1);
    bool ok = mongoc_client_command_simple(c, st->db, &cmd, NULL, NULL, &e);
    bson_destroy(&cmd);
    mongoc_client_pool_push(st->pool, c);
    if (!ok) {
        set_err(err, &e, "MongoDB ping");
        return -1;
    }
    return 0;
}

static bool create_index(mongoc_database_t *db, const char *coll, const char *name,
                         const bson_t *keys, bson_error_t *e)
{
    bson_t cmd = BSON_INITIALIZER, indexes, index;
    BSON_APPEND_UTF8(&cmd, "createIndexes", coll);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
    BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &index);
    BSON_APPEND_DOCUMENT(&index, "key", keys);
    BSON_APPEND_UTF8(&index, "name", name);
    bson_append_document_end(&indexes, &index);
    bson_append_array_end(&cmd, &indexes);
    bool ok = mongoc_database_write_command_with_opts(db, &cmd, NULL, NULL, e);
    bson_destroy(&cmd);
    return ok;
}

int tm_store_ensure_indexes(struct tm_store *st, struct tm_error *err)
{
    mongoc_client_t *c = mongoc_client_pool_pop(st->pool);
    mongoc_database_t *db = mongoc_client_get_database(c, st->db);
    bson_error_t e;
    bson_t k1 = BSON_INITIALIZER, k2 = BSON_INITIALIZER, k3 = BSON_INITIALIZER;
    BSON_APPEND_INT32(&k1, "host", 1);
    BSON_APPEND_INT32(&k1, "gpu_index", 1);
    BSON_APPEND_INT32(&k1, "ts", 1);
    BSON_APPEND_INT32(&k2, "window_start", 1);
    BSON_APPEND_INT32(&k3, "host", 1);
    BSON_APPEND_INT32(&k3, "gpu_index", 1);
    BSON_APPEND_INT32(&k3, "window_start", 1);
    bool ok = create_index(db, "gpu_metrics", "host_1_gpu_index_1_ts_1", &k1, &e) &&
              create_index(db, "token_usage", "window_start_1", &k2, &e) &&
              create_index(db, "token_usage", "host_1_gpu_index_1_window_start_1", &k3, &e);
    bson_destroy(&k1);
    bson_destroy(&k2);
    bson_destroy(&k3);
    mongoc_database_destroy(db);
    mongoc_client_pool_push(st->pool, c);
    if (!ok) {
        set_err(err, &e, "create indexes");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ documents */

void tm_store_window_id(const char *host, int gpu_index, int64_t start_ms, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%d/%lld", host, gpu_index, (long long)start_ms);
}

static void append_double_or_null(bson_t *doc, const char *key, bool has, double v)
{
    if (has)
        BSON_APPEND_DOUBLE(doc, key, v);
    else
        BSON_APPEND_NULL(doc, key);
}

void tm_store_window_doc(const struct tm_window *w, const struct tm_window_meta *meta, bson_t *doc)
{
    char id[TM_EVENT_MAX_STR + 64];
    double window_s = (double)(w->end_ms - w->start_ms) / 1000.0;
    struct tm_cost c;
    tm_cost_compute(w->prompt_tokens, w->completion_tokens, window_s, meta->price_per_hour_usd,
                    meta->has_power, meta->avg_power_w, &c);

    tm_store_window_id(w->host, w->gpu_index, w->start_ms, id, sizeof(id));
    BSON_APPEND_UTF8(doc, "_id", id);
    BSON_APPEND_UTF8(doc, "host", w->host);
    BSON_APPEND_INT32(doc, "gpu_index", w->gpu_index);
    BSON_APPEND_DATE_TIME(doc, "window_start", w->start_ms);
    BSON_APPEND_DATE_TIME(doc, "window_end", w->end_ms);
    BSON_APPEND_DOUBLE(doc, "window_s", window_s);
    BSON_APPEND_INT64(doc, "requests", w->requests);
    BSON_APPEND_INT64(doc, "prompt_tokens", w->prompt_tokens);
    BSON_APPEND_INT64(doc, "completion_tokens", w->completion_tokens);
    BSON_APPEND_INT64(doc, "tokens", c.tokens);
    BSON_APPEND_DOUBLE(doc, "tps", c.tps);
    BSON_APPEND_DOUBLE(doc, "price_per_hour_usd", meta->price_per_hour_usd);
    BSON_APPEND_DOUBLE(doc, "cost_usd", c.cost_usd);
    append_double_or_null(doc, "cost_per_token", c.has_cost_per_token, c.cost_per_token);
    append_double_or_null(doc, "cost_per_1m_tokens", c.has_cost_per_token, c.cost_per_1m_tokens);
    append_double_or_null(doc, "avg_latency_ms", w->latency_n > 0,
                          w->latency_n ? w->latency_sum_ms / (double)w->latency_n : 0);
    append_double_or_null(doc, "avg_power_w", meta->has_power, meta->avg_power_w);
    append_double_or_null(doc, "energy_j", c.has_energy, c.energy_j);
    append_double_or_null(doc, "joules_per_token", c.has_joules_per_token, c.joules_per_token);
    append_double_or_null(doc, "avg_utilization", meta->has_utilization, meta->avg_utilization);
    if (meta->gpu_values)
        BSON_APPEND_UTF8(doc, "gpu_values", meta->gpu_values);
    else
        BSON_APPEND_NULL(doc, "gpu_values");
    BSON_APPEND_DATE_TIME(doc, "first_event_ts", w->first_ts_ms);
    BSON_APPEND_DATE_TIME(doc, "last_event_ts", w->last_ts_ms);

    /* Per-model breakdown as an array: a model name is data, never a field
     * name ("$model-b.v1" is a legal model, an illegal key; CASE-13). */
    bson_t models, m;
    char key[16];
    const char *k;
    BSON_APPEND_ARRAY_BEGIN(doc, "models", &models);
    for (size_t i = 0; i < w->nmodels; i++) {
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
        BSON_APPEND_DOCUMENT_BEGIN(&models, k, &m);
        BSON_APPEND_UTF8(&m, "model", w->models[i].model);
        BSON_APPEND_INT64(&m, "requests", w->models[i].requests);
        BSON_APPEND_INT64(&m, "prompt_tokens", w->models[i].prompt_tokens);
        BSON_APPEND_INT64(&m, "completion_tokens", w->models[i].completion_tokens);
        BSON_APPEND_INT64(&m, "tokens",
                          w->models[i].prompt_tokens + w->models[i].completion_tokens);
        bson_append_document_end(&models, &m);
    }
    bson_append_array_end(doc, &models);

    bson_t src;
    BSON_APPEND_DOCUMENT_BEGIN(doc, "source", &src);
    BSON_APPEND_UTF8(&src, "topic", meta->topic);
    BSON_APPEND_INT32(&src, "partition", w->partition);
    BSON_APPEND_INT64(&src, "offset_min", w->offset_min);
    BSON_APPEND_INT64(&src, "offset_max", w->offset_max);
    bson_append_document_end(doc, &src);
}

/* ---------------------------------------------------------------- writes */

int tm_store_write_windows(struct tm_store *st, struct tm_window *const *w,
                           const struct tm_window_meta *metas, size_t n, int *status,
                           struct tm_error *err)
{
    if (n == 0)
        return 0;
    mongoc_client_t *c = mongoc_client_pool_pop(st->pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(c, st->db, "token_usage");
    bson_t opts = BSON_INITIALIZER, upsert = BSON_INITIALIZER, reply;
    BSON_APPEND_BOOL(&opts, "ordered", false);
    BSON_APPEND_BOOL(&upsert, "upsert", true);
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(coll, &opts);
    bson_error_t e;
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        bson_t doc = BSON_INITIALIZER, sel = BSON_INITIALIZER;
        tm_store_window_doc(w[i], &metas[i], &doc);
        bson_iter_t it;
        bson_iter_init_find(&it, &doc, "_id");
        BSON_APPEND_UTF8(&sel, "_id", bson_iter_utf8(&it, NULL));
        status[i] = 0;
        if (!mongoc_bulk_operation_replace_one_with_opts(bulk, &sel, &doc, &upsert, &e)) {
            status[i] = -1; /* refused by the driver before sending (e.g. too large) */
            tm_error_log("store", "window %s not written: %s", bson_iter_utf8(&it, NULL),
                         e.message);
        }
        bson_destroy(&doc);
        bson_destroy(&sel);
    }

    uint32_t server = mongoc_bulk_operation_execute(bulk, &reply, &e);
    if (!server) {
        bson_iter_t it, arr;
        if (bson_iter_init_find(&it, &reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY(&it) &&
            bson_iter_recurse(&it, &arr) && bson_iter_next(&arr)) {
            /* Some operations failed on their own: the rest stand.  Read each
             * write error once; the caller dead-letters those windows. */
            bson_iter_recurse(&it, &arr);
            while (bson_iter_next(&arr)) {
                bson_iter_t we, f;
                int32_t idx = -1;
                const char *msg = "?";
                if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &we))
                    continue;
                if (bson_iter_find(&we, "index"))
                    idx = bson_iter_int32(&we);
                bson_iter_recurse(&arr, &f);
                if (bson_iter_find(&f, "errmsg"))
                    msg = bson_iter_utf8(&f, NULL);
                /* The index counts only operations that were added to the bulk. */
                size_t seen = 0;
                for (size_t i = 0; i < n; i++) {
                    if (status[i] != 0)
                        continue;
                    if ((int32_t)seen++ == idx) {
                        status[i] = -1;
                        tm_error_log("store", "write error at bulk index %d (%s/%d/%lld): %s",
                                     idx, w[i]->host, w[i]->gpu_index,
                                     (long long)w[i]->start_ms, msg);
                        break;
                    }
                }
            }
        } else {
            set_err(err, &e, "write token_usage");
            rc = -1;
        }
    }
    bson_destroy(&reply);
    mongoc_bulk_operation_destroy(bulk);
    bson_destroy(&opts);
    bson_destroy(&upsert);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(st->pool, c);
    return rc;
}

int tm_store_lookup_window(void *ctx, const char *host, int gpu_index, int64_t start_ms,
                           bool *found, int32_t *partition, int64_t *offset_max,
                           struct tm_error *err)
{
    struct tm_store *st = ctx;
    char id[TM_EVENT_MAX_STR + 64];
    tm_store_window_id(host, gpu_index, start_ms, id, sizeof(id));
    mongoc_client_t *c = mongoc_client_pool_pop(st->pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(c, st->db, "token_usage");
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, proj;
    BSON_APPEND_UTF8(&filter, "_id", id);
    BSON_APPEND_INT64(&opts, "limit", 1);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    BSON_APPEND_INT32(&proj, "source", 1);
    bson_append_document_end(&opts, &proj);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    *found = false;
    if (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        *found = true;
        *partition = -1;
        *offset_max = INT64_MAX; /* unknown provenance: treat every replay as counted */
        if (bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, "source.partition", &it))
            *partition = bson_iter_as_int64(&it) >= 0 ? (int32_t)bson_iter_as_int64(&it) : -1;
        if (bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, "source.offset_max", &it))
            *offset_max = bson_iter_as_int64(&it);
    }
    int rc = 0;
    if (mongoc_cursor_error(cur, &e)) {
        set_err(err, &e, "look up token_usage");
        rc = -1;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(&filter);
    bson_destroy(&opts);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(st->pool, c);
    return rc;
}

struct frontier_ctx {
    bool found;
    int64_t end_ms;
};

static int frontier_doc(void *ctx, const bson_t *doc)
{
    struct frontier_ctx *f = ctx;
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "window_end") && BSON_ITER_HOLDS_DATE_TIME(&it)) {
        f->found = true;
        f->end_ms = bson_iter_date_time(&it);
    }
    return 1;
}

int tm_store_window_frontier(void *ctx, const char *host, int gpu_index, bool *found,
                             int64_t *end_ms, struct tm_error *err)
{
    struct tm_store *st = ctx;
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort, proj;
    BSON_APPEND_UTF8(&filter, "host", host);
    BSON_APPEND_INT32(&filter, "gpu_index", gpu_index);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "window_start", -1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "limit", 1);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    BSON_APPEND_INT32(&proj, "window_end", 1);
    bson_append_document_end(&opts, &proj);
    struct frontier_ctx f = {false, 0};
    int rc = tm_store_each(st, "token_usage", &filter, &opts, frontier_doc, &f, err);
    bson_destroy(&filter);
    bson_destroy(&opts);
    *found = f.found;
    *end_ms = f.end_ms;
    return rc;
}

int tm_store_insert_many(struct tm_store *st, const char *collection, const bson_t *const *docs,
                         size_t n, struct tm_error *err)
{
    if (n == 0)
        return 0;
    mongoc_client_t *c = mongoc_client_pool_pop(st->pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(c, st->db, collection);
    bson_error_t e;
    bool ok = mongoc_collection_insert_many(coll, (const bson_t **)docs, n, NULL, NULL, &e);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(st->pool, c);
    if (!ok) {
        set_err(err, &e, collection);
        return -1;
    }
    return 0;
}

int tm_store_each(struct tm_store *st, const char *collection, const bson_t *filter,
                  const bson_t *opts, int (*fn)(void *ctx, const bson_t *doc), void *ctx,
                  struct tm_error *err)
{
    mongoc_client_t *c = mongoc_client_pool_pop(st->pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(c, st->db, collection);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    int rc = 0;
    while (mongoc_cursor_next(cur, &doc))
        if (fn(ctx, doc) != 0)
            break;
    if (mongoc_cursor_error(cur, &e)) {
        set_err(err, &e, collection);
        rc = -1;
    }
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(st->pool, c);
    return rc;
}

int tm_store_drop(struct tm_store *st, const char *collection, struct tm_error *err)
{
    mongoc_client_t *c = mongoc_client_pool_pop(st->pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(c, st->db, collection);
    bson_error_t e;
    bool ok = mongoc_collection_drop(coll, &e);
    if (!ok && strstr(e.message, "ns not found"))
        ok = true;
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(st->pool, c);
    if (!ok) {
        set_err(err, &e, "drop");
        return -1;
    }
    return 0;
}
