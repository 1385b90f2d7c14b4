/*
 * mem.h - allocation wrappers that abort on out-of-memory.
 *
 * tokenmeter's programs are daemons, not libraries: running out of memory is
 * not a condition they can report usefully, so (like Redis' zmalloc and jq's
 * jv_mem_alloc) these log and abort().  Callers never check for NULL.
 */
#ifndef TM_MEM_H
#define TM_MEM_H

#include <stddef.h>

void *tm_xmalloc(size_t n);
void *tm_xcalloc(size_t nmemb, size_t size);
void *tm_xrealloc(void *p, size_t n);
/** @brief strdup() that aborts on OOM; returns owned, free with free(). */
char *tm_xstrdup(const char *s);
/** @brief Copy exactly @p n bytes of @p s and NUL-terminate; returns owned. */
char *tm_xstrndup(const char *s, size_t n);

#endif
