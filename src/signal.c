/* SPDX-License-Identifier: MIT
 *
 * signal.c -- a token triggered by a signal: ct_signal_hook() installs a
 * handler that calls ct_token_trigger_async(), and ct_signal_unhook() puts
 * the previous disposition back.  Written against the public API only.
 *
 * Design notes:
 *  - One slot per signal number: the hooked token (`slot_token`), the
 *    disposition it replaced (`slot_saved`) and a count of handlers that
 *    are running right now (`slot_busy`).  slot_token and slot_saved change
 *    only under hook_mu, so "is signo hooked?" is "slot_token != NULL" read
 *    under hook_mu; the handler reads slot_token without the mutex.
 *  - The handler does three atomic operations and the async trigger, which
 *    is async-signal-safe; everything else (descendants, descriptor,
 *    callbacks) happens in the library's async thread.  It saves errno.
 *  - Hook order: publish the token, then sigaction().  A signal arriving
 *    in between still runs the old disposition; one arriving after finds
 *    the token.  Unhook order: sigaction() back, unpublish, wait until
 *    slot_busy is 0, unref.  A handler that started before the restore may
 *    still hold the token; the busy count makes unhook wait for it:
 *      handler:  busy++ ; t = slot_token ; use t ; busy--
 *      unhook:   slot_token = NULL ; wait for busy == 0 ; unref t
 *    All four accesses are seq_cst, so they fall in one total order.  If
 *    the handler's load saw t, it came before the store of NULL, so its
 *    busy++ came before unhook's load of busy: unhook sees busy > 0 (or
 *    the busy-- that follows the last use of t) and cannot free t early.
 *    A handler whose load comes after the store sees NULL and does
 *    nothing.  (With weaker orderings this is the store-buffering pattern,
 *    which acquire/release does not forbid.)
 *  - Waiting for busy == 0 sleeps in a futex on slot_busy; a handler that
 *    brings it to 0 wakes it.  That costs one futex(2) per delivered
 *    signal, which is nothing next to the delivery itself, and keeps the
 *    handler free of any "is somebody waiting" state.
 *  - LOCK ORDER: hook_mu, then whatever ct_async_init() takes.  The handler
 *    takes no lock, so a signal arriving while hook_mu is held in the same
 *    thread cannot deadlock.
 */
#include "canceltoken_os.h"

#include <assert.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(ct_token *) slot_token[NSIG]; /* written under hook_mu */
static _Atomic uint32_t slot_busy[NSIG];     /* handlers running now */
static struct sigaction slot_saved[NSIG];    /* guarded by hook_mu */

/* Can signo be hooked at all?  (sigaction() makes the final decision on
 * the signals glibc reserves for itself.) */
static bool hookable(int signo) {
  if (signo < 1 || signo >= NSIG)
    return false;
  switch (signo) {
  case SIGKILL:
  case SIGSTOP: /* cannot be caught */
  case SIGSEGV:
  case SIGBUS:
  case SIGFPE:
  case SIGILL: /* a real fault would re-run the faulting instruction */
    return false;
  default:
    return true;
  }
}

static void on_signal(int signo) {
  int saved_errno = errno; /* futex(2) below may set it */
  if (signo < 1 || signo >= NSIG)
    return;
  /* seq_cst, all three: see the design notes -- the increment must come
   * before the load of the token in the order unhook observes. */
  atomic_fetch_add(&slot_busy[signo], 1);
  ct_token *t = atomic_load(&slot_token[signo]);
  if (t)
    (void)ct_token_trigger_async(t, CT_REASON_SIGNAL, signo);
  if (atomic_fetch_sub(&slot_busy[signo], 1) == 1)
    syscall(SYS_futex, (uint32_t *)&slot_busy[signo], FUTEX_WAKE_PRIVATE,
            INT32_MAX, NULL, NULL, 0);
  errno = saved_errno;
}

/* Unpublish signo's token and return it once no handler can still use
 * it.  Caller holds hook_mu. */
static ct_token *slot_take(int signo) {
  /* seq_cst: see the design notes. */
  ct_token *t = atomic_exchange(&slot_token[signo], NULL);
  for (;;) {
    uint32_t busy = atomic_load(&slot_busy[signo]);
    if (busy == 0)
      break;
    /* Sleeps only while the count is still `busy`; a handler that
     * decrements it after our load makes the wait return at once. */
    syscall(SYS_futex, (uint32_t *)&slot_busy[signo], FUTEX_WAIT_PRIVATE,
            busy, NULL, NULL, 0);
  }
  return t;
}

int ct_signal_hook(int signo, ct_token *t, unsigned flags) {
  if (!t || !hookable(signo) || (flags & ~CT_SIGNAL_ONCE) != 0)
    return -EINVAL;

  struct sigaction sa;
  sa.sa_handler = on_signal;
  /* Block every signal while the handler runs: it is short, and this keeps
   * the busy window short too. */
  sigfillset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART | ((flags & CT_SIGNAL_ONCE) ? SA_RESETHAND : 0);

  int r = 0;
  pthread_mutex_lock(&hook_mu);
  /* relaxed: slot_token is only written under hook_mu, which we hold. */
  if (atomic_load_explicit(&slot_token[signo], memory_order_relaxed)) {
    r = -EBUSY;
    goto out;
  }
  /* Start the async thread (if nobody has yet) with every signal blocked:
   * it inherits our mask, and a library thread should never be the one
   * that runs the application's handlers.  (Were it, the handler would
   * interrupt its read(2), which SA_RESTART resumes; ThreadSanitizer,
   * which defers handlers to the end of an intercepted call, then never
   * runs them at all.) */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  r = ct_async_init();
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r < 0)
    goto out;
  /* seq_cst (at least release): a handler that loads t sees the token's
   * initialisation, and the reference taken just before. */
  atomic_store(&slot_token[signo], ct_token_ref(t));
  if (sigaction(signo, &sa, &slot_saved[signo]) != 0) {
    r = -errno; /* -EINVAL: a signal the C library reserves */
    ct_token_unref(slot_take(signo));
  }
out:
  pthread_mutex_unlock(&hook_mu);
  return r;
}

int ct_signal_unhook(int signo) {
  /* -EINVAL for every signo that ct_signal_hook() always refuses: those
   * hookable() rules out, and those the C library keeps for itself (glibc:
   * 32 and 33), which sigaction(2) refuses even as a query. */
  struct sigaction probe;
  if (!hookable(signo) || sigaction(signo, NULL, &probe) != 0)
    return -EINVAL;
  pthread_mutex_lock(&hook_mu);
  /* relaxed: written only under hook_mu, which we hold. */
  if (!atomic_load_explicit(&slot_token[signo], memory_order_relaxed)) {
    pthread_mutex_unlock(&hook_mu);
    return -ENOENT;
  }
  /* Restoring a disposition that sigaction() itself returned cannot fail. */
  int rc = sigaction(signo, &slot_saved[signo], NULL);
  assert(rc == 0);
  (void)rc;
  ct_token *t = slot_take(signo);
  pthread_mutex_unlock(&hook_mu);
  ct_token_unref(t); /* outside the mutex: it may free a whole chain */
  return 0;
}
