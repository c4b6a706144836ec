/* SPDX-License-Identifier: MIT
 *
 * token_cache.h -- the per-thread cache of token blocks (token_cache.c)
 * and the allocator query it relies on (util.c).  Internal.
 */
#ifndef CT_TOKEN_CACHE_H
#define CT_TOKEN_CACHE_H

#include "internal.h"

/* Is the default allocator (malloc/free) installed?  util.c keeps
 * ct__alloc_hooked, a plain global (ct_set_allocator() is documented as
 * not thread-safe and for use before any token exists); inline, because
 * the cache asks on every token allocated and freed. */
CT_HIDDEN extern bool ct__alloc_hooked;
static inline bool ct__alloc_is_default(void) { return !ct__alloc_hooked; }

#if defined(__SANITIZE_ADDRESS__)
#define CT_CACHE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CT_CACHE_ASAN 1
#endif
#endif
#ifdef CT_CACHE_ASAN
#include <sanitizer/asan_interface.h>
#define CT_CACHE_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define CT_CACHE_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define CT_CACHE_POISON(p, n) ((void)(p), (void)(n))
#define CT_CACHE_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

enum {
  CT_CACHE_MIN_CHUNK = 64, /* smallest chunk cached (requests of 41..56) */
  CT_CACHE_CLASSES = 5,    /* chunks of 64, 80, 96, 112, 128 bytes */
  CT_CACHE_PER_CLASS = 32,
  CT_CACHE_CHUNK_HDR = sizeof(size_t) /* glibc's per-chunk overhead */
};

enum { TC_FRESH = 0, TC_LIVE = 1, TC_DEAD = 2 };

/* The blocks are kept in arrays here, not linked through themselves: a
 * cached block is wholly poisoned under ASan, and LeakSanitizer (which
 * does not read poisoned memory) still finds every one from this thread's
 * storage. */
struct ct__tcache {
  void *block[CT_CACHE_CLASSES][CT_CACHE_PER_CLASS];
  uint8_t n[CT_CACHE_CLASSES];
  uint8_t state; /* TC_*: FRESH until the first block is cached (then the
                    key destructor is registered), DEAD once flushed */
};

/* The calling thread's cache; touched only by its own thread (see
 * token_cache.c): no atomics. */
CT_HIDDEN extern _Thread_local struct ct__tcache ct__tc;
/* Set by the library's destructor (exit or dlclose): no thread caches any
 * more.  relaxed loads: a flag; a thread that misses it for a moment
 * caches one more block, which its own exit (or the process's end) still
 * accounts. */
CT_HIDDEN extern _Atomic bool ct__cache_closed;

/* The class of an n-byte request, or -1 if it is not cached. */
static inline int ct__class_of(size_t n) {
  size_t chunk = (n + CT_CACHE_CHUNK_HDR + 15) & ~(size_t)15;
  if (chunk < CT_CACHE_MIN_CHUNK)
    return -1;
  size_t c = (chunk - CT_CACHE_MIN_CHUNK) / 16;
  return c < CT_CACHE_CLASSES ? (int)c : -1;
}

/* The bytes a block of class c is allocated with: the chunk's usable size,
 * which every request of the class fits in. */
static inline size_t ct__class_bytes(int c) {
  return CT_CACHE_MIN_CHUNK + (size_t)c * 16 - CT_CACHE_CHUNK_HDR;
}

CT_HIDDEN void *ct__token_block_alloc_slow(size_t n, int c);
CT_HIDDEN void ct__token_block_free_slow(void *p, size_t n, int c);

/* Allocate / free a token block of n bytes: from the calling thread's cache
 * while the default allocator is installed, else through ct__alloc() /
 * ct__free().  A block from ct__token_block_alloc(n) is freed with
 * ct__token_block_free(p, n), the same n, on any thread.  The fast paths
 * are inline (the churn of children is their reason to exist). */
static inline void *ct__token_block_alloc(size_t n) {
  int c = ct__class_of(n);
  if (CT_LIKELY(c >= 0 && ct__tc.n[c] > 0 && ct__alloc_is_default() &&
                !atomic_load_explicit(&ct__cache_closed,
                                      memory_order_relaxed))) {
    void *b = ct__tc.block[c][--ct__tc.n[c]];
    CT_CACHE_UNPOISON(b, ct__class_bytes(c));
    return b;
  }
  return ct__token_block_alloc_slow(n, c);
}

static inline void ct__token_block_free(void *p, size_t n) {
  int c = ct__class_of(n);
  if (CT_LIKELY(p && c >= 0 && ct__tc.state == TC_LIVE &&
                ct__tc.n[c] < CT_CACHE_PER_CLASS && ct__alloc_is_default() &&
                !atomic_load_explicit(&ct__cache_closed,
                                      memory_order_relaxed))) {
    ct__tc.block[c][ct__tc.n[c]++] = p;
    CT_CACHE_POISON(p, ct__class_bytes(c));
    return;
  }
  if (p)
    ct__token_block_free_slow(p, n, c);
}

/* Blocks in the calling thread's cache (for tests). */
CT_HIDDEN size_t ct__token_cache_count(void);

#endif /* CT_TOKEN_CACHE_H */
