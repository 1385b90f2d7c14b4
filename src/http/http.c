/*
 * http.c - libmicrohttpd glue: GET routes to callbacks, 404 otherwise.
 * Runs MHD's internal polling thread; handlers must be thread-safe.
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

struct tm_http {
    struct MHD_Daemon *d;
    const struct tm_http_route *routes;
    size_t n;
    void *ctx;
    int port;
};

static enum MHD_Result reply(struct MHD_Connection *c, int status, char *body, const char *ctype)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    (void)upload_size;
    (void)con_cls;
    struct tm_http *h = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, 405, tm_xstrdup("{\"error\":\"method not allowed\"}\n"),
                     "application/json");
    for (size_t i = 0; i < h->n; i++) {
        if (strcmp(url, h->routes[i].path) != 0)
            continue;
        char *body = NULL;
        const char *ctype = "application/json";
        int status = h->routes[i].fn(h->ctx, &body, &ctype);
        return reply(c, status, body ? body : tm_xstrdup(""), ctype);
    }
    return reply(c, 404, tm_xstrdup("{\"error\":\"not found\"}\n"), "application/json");
}

struct tm_http *tm_http_start(const char *listen, const struct tm_http_route *routes, size_t n,
                              void *ctx, struct tm_error *err)
{
    const char *colon = strrchr(listen, ':');
    char addr[64];
    size_t alen = colon ? (size_t)(colon - listen) : 0;
    if (!colon || alen >= sizeof(addr)) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "HTTP_LISTEN=\"%s\": expected address:port", listen);
        return NULL;
    }
    memcpy(addr, listen, alen);
    addr[alen] = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        tm_error_set(err, TM_ERR_CONFIG, 0, "HTTP_LISTEN=\"%s\": not an IPv4 address", listen);
        return NULL;
    }
    struct tm_http *h = tm_xcalloc(1, sizeof(*h));
    h->routes = routes;
    h->n = n;
    h->ctx = ctx;
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                            on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!h->d) {
        tm_error_set(err, TM_ERR_HTTP, 0, "cannot listen on %s (address in use or not local?)",
                     listen);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : 0;
    return h;
}

int tm_http_port(const struct tm_http *h)
{
    return h->port;
}

void tm_http_stop(struct tm_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    free(h);
}
