/* SPDX-License-Identifier: MIT
 *
 * token_cache.h -- the per-thread cache of token blocks (token_cache.c)
 * and the allocator query it relies on (util.c).  Internal.
 */
#ifndef CT_TOKEN_CACHE_H
#define CT_TOKEN_CACHE_H

#include "internal.h"

/* Is the default allocator (malloc/free) installed?  Plain read of the
 * hook (ct_set_allocator() is documented as not thread-safe). */
CT_HIDDEN bool ct__alloc_is_default(void);

/* Allocate / free a token block of n bytes: from the calling thread's cache
 * while the default allocator is installed, else through ct__alloc() /
 * ct__free().  A block from ct__token_block_alloc(n) is freed with
 * ct__token_block_free(p, n), the same n, on any thread. */
CT_HIDDEN void *ct__token_block_alloc(size_t n);
CT_HIDDEN void ct__token_block_free(void *p, size_t n);

/* Blocks in the calling thread's cache (for tests). */
CT_HIDDEN size_t ct__token_cache_count(void);

#endif /* CT_TOKEN_CACHE_H */
