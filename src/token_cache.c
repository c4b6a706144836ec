/* SPDX-License-Identifier: MIT
 *
 * token_cache.c -- a small per-thread cache of freed token blocks, so that
 * the churn of short-lived children (create, chain, destroy, as a server
 * does once per request) does not pay malloc and free each time.
 *
 * Design notes:
 *
 *  Scope.  Only token blocks (ct_token plus its links and name or alias)
 *  go through here, and only while the default allocator is installed
 *  (ct__alloc_is_default()).  With a hook installed by ct_set_allocator()
 *  every allocation and free goes to the hook as before, so a counting or
 *  failing allocator (tests/test_oom.c) sees each one.  The blocks in the
 *  cache always come from malloc() and go back to free(): none ever reaches
 *  a hook, whatever is installed when it leaves the cache.
 *
 *  Size classes.  A request of n bytes is served from the class of glibc's
 *  chunk for n (16-byte steps; 8 bytes of header on 64-bit) and allocated
 *  at that chunk's full usable size, so any block of a class serves any
 *  request of it and no token takes more memory than malloc(n) gave it
 *  before.  Classes cover 41..120 bytes (chunks of 64..128 bytes): a child
 *  with one parent and a name of up to 55 bytes, or a chain of one or two
 *  unnamed links.  Anything else goes to ct__alloc() as before.
 *
 *  Bounds.  At most CACHE_PER_CLASS blocks per class and thread: about 15
 *  KiB of blocks and 1.3 KiB of thread-local arrays per thread at worst.
 *  A free that finds its class full calls free().  A token freed on
 *  another thread than the one that made it goes to the freeing thread's
 *  cache: each thread's cache is a plain LIFO stack that only its own
 *  thread touches, so no block is ever on two stacks and no atomics are
 *  needed.  A block reaches a cache only after the token's last reference
 *  was dropped (ct_token_unref: an acq_rel decrement, or an acquire load
 *  of the count under the parent's lock), which ordered every other
 *  thread's use of the token before the free.
 *
 *  Returning the blocks.  At thread exit, a pthread key's destructor frees
 *  the thread's blocks and marks its cache dead (later frees in that
 *  thread, from other destructors, go straight to free()).  The main
 *  thread never runs key destructors, so a destructor of this library
 *  (run by exit() and by dlclose()) closes the cache for every thread,
 *  frees the calling thread's blocks and deletes the key (so no thread's
 *  exit calls into an unloaded library).  Blocks still cached by other
 *  threads at that moment stay reachable through their thread-local
 *  storage until those threads end (at exit: never reported as leaks).
 *
 *  fork().  The child gets a copy of the forking thread's cache, which is
 *  the child's only thread: its blocks are the child's heap, and valid.
 *
 *  Sanitizers.  Under AddressSanitizer a cached block is poisoned, so that
 *  a use after free of a token is still reported while the block waits in
 *  the cache.
 */
#include "internal.h"
#include "token_cache.h"

#include <stdlib.h>

/* Declared in token_cache.h; touched only by its own thread (see the design
 * notes): no atomics. */
_Thread_local struct ct__tcache ct__tc;
#define tc ct__tc

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static bool cache_key_ok; /* written once inside pthread_once, which orders
                             it before every caller's return from it */
/* See token_cache.h. */
_Atomic bool ct__cache_closed;
#define cache_closed ct__cache_closed

static void flush(struct ct__tcache *t) {
  for (int c = 0; c < CT_CACHE_CLASSES; c++) {
    while (t->n[c] > 0) {
      void *b = t->block[c][--t->n[c]];
      CT_CACHE_UNPOISON(b, ct__class_bytes(c));
      free(b);
    }
  }
}

static void thread_exit(void *arg) {
  (void)arg; /* our own thread's cache: tc */
  flush(&tc);
  tc.state = TC_DEAD;
}

static void key_create(void) {
  cache_key_ok = pthread_key_create(&cache_key, thread_exit) == 0;
}

__attribute__((destructor)) static void cache_fini(void) {
  atomic_store_explicit(&cache_closed, true, memory_order_relaxed);
  flush(&tc);
  tc.state = TC_DEAD;
  /* Only if pthread_once ran key_create to its end in some thread; a
   * thread still inside it now would be a thread using the library while
   * it is unloaded. */
  if (cache_key_ok)
    pthread_key_delete(cache_key);
}

void *ct__token_block_alloc_slow(size_t n, int c) {
  if (c < 0 || !ct__alloc_is_default())
    return ct__alloc(n);
  /* The default allocator is malloc: the same call, at the class's size. */
  return malloc(ct__class_bytes(c));
}

void ct__token_block_free_slow(void *p, size_t n, int c) {
  if (c < 0 || !ct__alloc_is_default() ||
      atomic_load_explicit(&cache_closed, memory_order_relaxed)) {
    ct__free(p, n);
    return;
  }
  if (tc.state == TC_DEAD || tc.n[c] >= CT_CACHE_PER_CLASS) {
    free(p);
    return;
  }
  /* First block this thread caches: arrange for its exit to free them. */
  pthread_once(&cache_once, key_create);
  if (!cache_key_ok || pthread_setspecific(cache_key, &tc) != 0) {
    free(p); /* no destructor: do not cache in this thread (for now) */
    return;
  }
  tc.state = TC_LIVE;
  tc.block[c][tc.n[c]++] = p;
  CT_CACHE_POISON(p, ct__class_bytes(c));
}

size_t ct__token_cache_count(void) {
  size_t k = 0;
  for (int c = 0; c < CT_CACHE_CLASSES; c++)
    k += tc.n[c];
  return k;
}
