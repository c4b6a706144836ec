/* SPDX-License-Identifier: MIT
 *
 * async.c -- triggering a token from a signal handler.  The handler may only
 * do async-signal-safe work, so it claims the token (lock-free atomics),
 * wakes its futex waiters (futex(2)), pushes the token on a lock-free stack
 * and writes an eventfd; a library thread pops the stack and does the rest
 * (descendants, descriptor, callbacks) as an ordinary trigger would.
 *
 * Design notes:
 *  - The stack is a Treiber stack threaded through work_next.  Only the
 *    handler that won a token's claim pushes it, once, so work_next is
 *    free.  The thread pops everything at once with an exchange, so there
 *    is no ABA problem.
 *  - The pushed token carries a reference taken in the handler (an atomic
 *    increment is async-signal-safe); ct__drain() drops it.
 *  - `ready` is set only after the thread and the eventfd exist; a handler
 *    that sees it unset leaves the token untouched and returns -EAGAIN.
 *  - fork(): the child has no thread.  An atfork handler clears `ready` and
 *    drops the inherited eventfd, so ct_token_trigger_async() fails with
 *    -EAGAIN in the child until it calls ct_async_init() again.
 *  - The thread blocks every signal (ct__thread_start), so process-directed
 *    signals are never delivered to it.
 *  - LOCK ORDER: init_mu is taken only by ct_async_init(), alone.
 */
#include "internal.h"

#include <sys/eventfd.h>
#include <unistd.h>

static _Atomic(ct_token *) pending;
static _Atomic bool ready;
static int efd = -1;
static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static bool atfork_done;

static void *async_main(void *arg) {
  (void)arg;
  for (;;) {
    uint64_t n;
    /* Blocking read: returns once at least one handler wrote. */
    if (read(efd, &n, sizeof n) < 0 && errno != EINTR && errno != EAGAIN)
      return NULL;
    /* acquire: pairs with the handlers' release pushes, so the claimed
     * state and work_next links are visible. */
    ct_token *t = atomic_exchange_explicit(&pending, NULL, memory_order_acquire);
    while (t) {
      ct_token *next = t->work_next;
      ct__drain(t); /* drops the handler's reference */
      t = next;
    }
  }
}

static void atfork_child(void) {
  /* relaxed: the child has one thread at this point. */
  atomic_store_explicit(&ready, false, memory_order_relaxed);
  pthread_mutex_init(&init_mu, NULL);
  /* The eventfd is shared with the parent: a thread of ours reading it
   * would swallow the parent's wake-ups.  Take a fresh one on init. */
  if (efd >= 0)
    close(efd);
  efd = -1;
}

int ct_async_init(void) {
  /* acquire: pairs with the release store below. */
  if (atomic_load_explicit(&ready, memory_order_acquire))
    return 0;
  int r = 0;
  pthread_mutex_lock(&init_mu);
  if (atomic_load_explicit(&ready, memory_order_relaxed))
    goto out;
  if (efd < 0) {
    efd = eventfd(0, EFD_CLOEXEC);
    if (efd < 0) {
      r = -errno;
      goto out;
    }
  }
  if (!atfork_done) {
    pthread_atfork(NULL, NULL, atfork_child);
    atfork_done = true;
  }
  int e = ct__thread_start(async_main);
  if (e != 0) {
    r = -EAGAIN;
    goto out;
  }
  /* release: handlers that see ready also see efd. */
  atomic_store_explicit(&ready, true, memory_order_release);
out:
  pthread_mutex_unlock(&init_mu);
  return r;
}

int ct_token_trigger_async(ct_token *t, ct_reason reason, int detail) {
  if (!t || reason == CT_REASON_NONE || (unsigned)reason > 255 ||
      detail < 0 || detail > 255)
    return -EINVAL;
  if (!atomic_load_explicit(&ready, memory_order_acquire))
    return -EAGAIN;
  int saved_errno = errno;
  uint32_t bits = CT_ST_TRIGGERED | (uint32_t)reason << CT_ST_REASON_SHIFT |
                  (uint32_t)detail << CT_ST_DETAIL_SHIFT;
  bool interest;
  if (!ct__claim(t, t, bits, &interest))
    return 0;
  if (interest) {
    /* relaxed increment: the release push below orders it. */
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    /* relaxed load: the CAS below rechecks it.  release on the CAS: the
     * thread's acquire exchange then sees work_next, the claim and the
     * reference. */
    ct_token *head = atomic_load_explicit(&pending, memory_order_relaxed);
    do
      t->work_next = head;
    while (!atomic_compare_exchange_weak_explicit(
        &pending, &head, t, memory_order_release, memory_order_relaxed));
    uint64_t one = 1;
    ssize_t w = write(efd, &one, sizeof one);
    (void)w; /* cannot fail short of overflow after 2^64-1 signals */
  }
  errno = saved_errno;
  return 1;
}
