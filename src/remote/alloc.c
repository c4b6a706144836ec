/* SPDX-License-Identifier: MIT
 *
 * alloc.c -- the allocator hook of src/remote (see alloc.h).  The hook is
 * two plain globals: tests set them while nothing of src/remote is alive,
 * so no other thread can read them then.
 */
#include "alloc.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static net_alloc_fn alloc_fn;
static void *alloc_ud;

void net_set_allocator(net_alloc_fn fn, void *ud) {
  alloc_fn = fn;
  alloc_ud = ud;
}

void *net_realloc(void *p, size_t n) {
  if (n == 0)
    n = 1; /* a zero-size request is an allocation, not a free */
  return alloc_fn ? alloc_fn(alloc_ud, p, n) : realloc(p, n);
}

void *net_malloc(size_t n) { return net_realloc(NULL, n); }

void *net_calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size)
    return NULL;
  void *p = net_malloc(n * size);
  if (p)
    memset(p, 0, n * size);
  return p;
}

void net_free(void *p) {
  if (!p)
    return;
  if (alloc_fn)
    alloc_fn(alloc_ud, p, 0);
  else
    free(p);
}

int net_grow(void *pp, size_t *cap, size_t n, size_t size, size_t first) {
  if (n < *cap)
    return 0;
  size_t want = *cap ? *cap * 2 : first;
  if (want < *cap || (size && want > SIZE_MAX / size))
    return -ENOMEM;
  /* Through memcpy: *pp is a T *, not a void * (object pointers share
   * one representation on the platforms we build for). */
  void *old;
  memcpy(&old, pp, sizeof old);
  void *a = net_realloc(old, want * size);
  if (!a)
    return -ENOMEM;
  memcpy(pp, &a, sizeof a);
  *cap = want;
  return 0;
}
