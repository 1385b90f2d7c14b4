/*
 * history.c - per-GPU sample history (see history.h).  A host has a few
 * GPUs and a window a few samples, so arrays and linear scans suffice.
 */
#include "gpu/history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

struct point {
    int64_t ts_ms;
    unsigned valid;
    bool measured; /* from NVML or nvidia-smi, not the seed file */
    double power_w, utilization;
};

struct series {
    char host[256];
    int gpu_index;
    struct point *pts;
    size_t n, cap;
    bool has_price;
    double price;
};

struct tm_gpu_history {
    int64_t keep_ms;
    struct series *s;
    size_t n, cap;
};

struct tm_gpu_history *tm_gpu_history_new(int64_t keep_ms)
{
    struct tm_gpu_history *h = tm_xcalloc(1, sizeof(*h));
    h->keep_ms = keep_ms;
    return h;
}

void tm_gpu_history_free(struct tm_gpu_history *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++)
        free(h->s[i].pts);
    free(h->s);
    free(h);
}

static struct series *find(const struct tm_gpu_history *h, const char *host, int gpu_index)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->s[i].gpu_index == gpu_index && strcmp(h->s[i].host, host) == 0)
            return &h->s[i];
    return NULL;
}

void tm_gpu_history_add(struct tm_gpu_history *h, const struct tm_gpu_sample *smp)
{
    struct series *s = find(h, smp->host, smp->gpu_index);
    if (!s) {
        if (h->n == h->cap) {
            h->cap = h->cap ? h->cap * 2 : 8;
            h->s = tm_xrealloc(h->s, h->cap * sizeof(*h->s));
        }
        s = &h->s[h->n++];
        memset(s, 0, sizeof(*s));
        snprintf(s->host, sizeof(s->host), "%s", smp->host);
        s->gpu_index = smp->gpu_index;
    }
    /* drop what is older than keep_ms before the new sample */
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->pts[i].ts_ms > smp->ts_ms - h->keep_ms)
            s->pts[k++] = s->pts[i];
    s->n = k;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->pts = tm_xrealloc(s->pts, s->cap * sizeof(*s->pts));
    }
    s->pts[s->n++] = (struct point){smp->ts_ms, smp->valid,
                                    !smp->source || strcmp(smp->source, "seed") != 0,
                                    smp->power_w, smp->utilization};
    if (smp->valid & TM_GPU_PRICE) {
        s->has_price = true;
        s->price = smp->price_per_hour_usd;
    }
}

void tm_gpu_history_window(const struct tm_gpu_history *h, const char *host, int gpu_index,
                           int64_t start_ms, int64_t end_ms, struct tm_gpu_window_stats *out)
{
    memset(out, 0, sizeof(*out));
    const struct series *s = find(h, host, gpu_index);
    if (!s)
        return;
    out->has_price = s->has_price;
    out->price_per_hour_usd = s->price;
    /* Measured values win: seed values (hand-written) count only in a
     * window without any measured sample, never averaged with them. */
    bool any_measured = false;
    for (size_t i = 0; i < s->n; i++)
        any_measured |= s->pts[i].measured && s->pts[i].ts_ms >= start_ms && s->pts[i].ts_ms < end_ms;
    out->measured = any_measured;
    double pw = 0, ut = 0;
    int npw = 0, nut = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct point *p = &s->pts[i];
        if (p->ts_ms < start_ms || p->ts_ms >= end_ms || (any_measured && !p->measured))
            continue;
        out->samples++;
        if (p->valid & TM_GPU_POWER) {
            pw += p->power_w;
            npw++;
        }
        if (p->valid & TM_GPU_UTIL) {
            ut += p->utilization;
            nut++;
        }
    }
    if (npw) {
        out->has_power = true;
        out->avg_power_w = pw / npw;
    }
    if (nut) {
        out->has_utilization = true;
        out->avg_utilization = ut / nut;
    }
}
