/* SPDX-License-Identifier: MIT
 *
 * alloc.h -- the one allocator hook of src/remote (and of the backends
 * that share its proxy layer, src/zk included): every allocation they make
 * goes through these four, so that a test can fail each allocation site in
 * turn (tests/test_fault_oom.c), as ct_set_allocator() lets tests/test_oom.c
 * do for the core.
 *
 * The hook has lua_Alloc's shape without the old size: with nsize == 0 it
 * frees ptr and returns NULL; otherwise it behaves as realloc(ptr, nsize),
 * NULL meaning out of memory.  NULL restores malloc/realloc/free.  Testing
 * only, NOT thread-safe: install it while no server, client or proxy
 * exists.  Memory that libcrypto and getaddrinfo() allocate for themselves
 * is not covered, nor is the core's (tokens, callback lists: use
 * ct_set_allocator()).
 */
#ifndef CT_REMOTE_ALLOC_H
#define CT_REMOTE_ALLOC_H

#include <stddef.h>

#define CT_ALLOC_HIDDEN __attribute__((visibility("hidden")))

typedef void *(*net_alloc_fn)(void *ud, void *ptr, size_t nsize);
CT_ALLOC_HIDDEN void net_set_allocator(net_alloc_fn fn, void *ud);
/* A zero-size request is an allocation of one byte, never a free. */
CT_ALLOC_HIDDEN void *net_malloc(size_t n);
/* NULL (and nothing allocated) if n * size overflows. */
CT_ALLOC_HIDDEN void *net_calloc(size_t n, size_t size);
CT_ALLOC_HIDDEN void *net_realloc(void *p, size_t n);
/* NULL does nothing. */
CT_ALLOC_HIDDEN void net_free(void *p);
/* Make room for one more element in the array *(T **)pp, which has room
 * for *cap elements of `size` bytes and holds n: when n == *cap, the room
 * doubles (to `first` from 0).  Returns 0, or -ENOMEM with the array left
 * as it was. */
CT_ALLOC_HIDDEN int net_grow(void *pp, size_t *cap, size_t n, size_t size,
                             size_t first);

#endif /* CT_REMOTE_ALLOC_H */
