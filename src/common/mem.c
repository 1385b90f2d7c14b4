/*
 * mem.c - abort-on-OOM allocation wrappers (see mem.h for the policy).
 */
#include "common/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
    fprintf(stderr, "tokenmeter: out of memory allocating %zu bytes\n", n);
    abort();
}

void *tm_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *tm_xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p)
        oom(nmemb * size);
    return p;
}

void *tm_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *tm_xstrdup(const char *s)
{
    return tm_xstrndup(s, strlen(s));
}

char *tm_xstrndup(const char *s, size_t n)
{
    char *p = tm_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
