/* SPDX-License-Identifier: MIT
 *
 * util.c -- the pieces of the core that are not about tokens: the error
 * table, the monotonic clock, the allocator hook, UTF-8 validation and the
 * futex primitives the lock and the waits are built on.
 */
#include "internal.h"

#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- errors: one table, CT_ERRNO_MAP, gives names and messages ---- */

/* Both switch on err itself, with negated constants as labels: negating a
 * caller's int (-err) is undefined for INT_MIN. */
const char *ct_err_name(int err) {
  switch (err) {
#define CT_NAME_CASE(e, msg)                                                  \
  case -e:                                                                    \
    return #e;
    CT_ERRNO_MAP(CT_NAME_CASE)
#undef CT_NAME_CASE
  case 0:
    return "OK";
  default:
    return "EUNKNOWN";
  }
}

const char *ct_strerror(int err) {
  static _Thread_local char buf[96];
  switch (err) {
#define CT_MSG_CASE(e, msg)                                                   \
  case -e:                                                                    \
    return msg;
    CT_ERRNO_MAP(CT_MSG_CASE)
#undef CT_MSG_CASE
  case 0:
    return "success";
  default:
    /* The GNU strerror_r may return a static string instead of filling buf.
     * INT_MIN has no positive counterpart (and is no errno): it gets the
     * C library's message for an unknown error, without negating it. */
    return strerror_r(err == INT_MIN ? INT_MAX : err < 0 ? -err : err, buf,
                      sizeof buf);
  }
}

const char *ct_reason_name(ct_reason reason) {
  switch (reason) {
  case CT_REASON_NONE:
    return "none";
  case CT_REASON_TRIGGER:
    return "trigger";
  case CT_REASON_DEADLINE:
    return "deadline";
  case CT_REASON_SIGNAL:
    return "signal";
  case CT_REASON_OWNER_LOST:
    return "owner-lost";
  case CT_REASON_UNREACHABLE:
    return "unreachable";
  case CT_REASON_SHUTDOWN:
    return "shutdown";
  default:
    /* later versions may add reasons below CT_REASON_USER */
    return reason >= CT_REASON_USER ? "user" : "other";
  }
}

/* ---- time ---- */

int64_t ct_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail for this clock */
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t ct_deadline_after(int64_t ns) {
  int64_t now = ct_now();
  if (ns <= 0)
    return now;
  if (ns > INT64_MAX - now)
    return INT64_MAX;
  return now + ns;
}

bool ct__valid_deadline(int64_t deadline) {
  return deadline >= 0 || deadline == CT_FOREVER;
}

/* ---- allocation ---- */

static void *default_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

/* Plain globals: ct_set_allocator() is documented as not thread-safe and
 * for use before any token exists. */
static ct_alloc_fn alloc_fn = default_alloc;
static void *alloc_ud;

/* A hook is installed (token_cache.h, ct__alloc_is_default()). */
CT_HIDDEN bool ct__alloc_hooked = false;

void ct_set_allocator(ct_alloc_fn fn, void *ud) {
  alloc_fn = fn ? fn : default_alloc;
  alloc_ud = fn ? ud : NULL;
  ct__alloc_hooked = fn != NULL;
}

void *ct__alloc(size_t n) { return alloc_fn(alloc_ud, NULL, 0, n); }

void ct__free(void *p, size_t n) {
  if (p)
    alloc_fn(alloc_ud, p, n, 0);
}

/* ---- UTF-8: strict (no overlongs, no surrogates, nothing past U+10FFFF) */

bool ct__utf8_valid(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (n - i < len)
      return false;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

/* ---- library threads ---- */

/* Start a detached library thread with every signal blocked, so that
 * signals aimed at the process go to the application's threads and never
 * interrupt (or get stuck behind) ours.  Returns pthread_create's result.
 *
 * The stack is the C library's default for a new thread (glibc: the soft
 * RLIMIT_STACK, usually 8 MiB, or 2 MiB when that is unlimited), the same
 * as pthread_create() with no attributes: these threads run user callbacks
 * (the deadline thread, the async thread), which are entitled to the stack
 * any other thread of the application gets.  Untouched pages cost only
 * address space.  (They used to get 64 KiB, on which a callback with about
 * 60 KiB of locals crashed.) */
int ct__thread_start(void *(*fn)(void *)) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t th;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int r = pthread_create(&th, &attr, fn, NULL);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return r;
}

/* ---- futexes ---- */

/* Sleep while *addr == val, until woken or until the absolute monotonic
 * deadline (CT_FOREVER: no limit).  Returns 0 (woken, or the value had
 * changed, or a signal interrupted: callers recheck in a loop) or
 * -ETIMEDOUT.  FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time,
 * so a loop that rechecks never stretches the deadline. */
long ct__futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t deadline) {
  struct timespec ts, *tp = NULL;
  if (deadline != CT_FOREVER) {
    ts.tv_sec = deadline / 1000000000;
    ts.tv_nsec = deadline % 1000000000;
    tp = &ts;
  }
  long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_BITSET_PRIVATE,
                   val, tp, NULL, FUTEX_BITSET_MATCH_ANY);
  if (r < 0 && errno == ETIMEDOUT)
    return -ETIMEDOUT;
  return 0;
}

/* Wake up to n sleepers on addr.  The address may have been freed by the
 * time we get here (a waiter that saw the new value without sleeping may
 * free the object at once): the kernel only hashes the address, so the
 * worst outcome is a spurious wake-up of an unrelated futex, which every
 * futex waiter tolerates by rechecking. */
void ct__futex_wake(_Atomic uint32_t *addr, int n) {
  syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

uint32_t ct__lock_slow(ct_lock *l) {
  /* The flags in bits 2 and up (internal.h, "Locks") are kept as they
   * are: every CAS below changes the state bits only, and a failed one
   * (a flag changed by an orphaning CAS, or the state by another thread)
   * just reloads.  Spin briefly: critical sections are a few dozen
   * instructions, except a fan-out walk, for which we then sleep. */
  uint32_t c = atomic_load_explicit(l, memory_order_relaxed);
  for (int i = 0; i < 100; i++) {
    /* acquire on success: as in ct__lock(); relaxed on failure: we only
     * retry. */
    if ((c & CT_LOCK_STATE) == 0 &&
        atomic_compare_exchange_weak_explicit(l, &c, c | 1,
                                              memory_order_acquire,
                                              memory_order_relaxed))
      return c & ~CT_LOCK_STATE;
    ct__cpu_relax();
    c = atomic_load_explicit(l, memory_order_relaxed);
  }
  /* Mark contended (2) before sleeping so the holder's unlock wakes us.
   * Having set 2 ourselves we must keep 2 when we win, since another
   * sleeper may still be queued. */
  for (;;) {
    if ((c & CT_LOCK_STATE) == 0) {
      /* acquire: as in ct__lock(). */
      if (atomic_compare_exchange_weak_explicit(l, &c, c | 2,
                                                memory_order_acquire,
                                                memory_order_relaxed))
        return c & ~CT_LOCK_STATE;
      continue;
    }
    /* relaxed: the 2 only tells the holder to wake us; the FUTEX_WAIT
     * below rechecks the whole word, so an unlock in between is seen. */
    uint32_t w = (c & ~CT_LOCK_STATE) | 2;
    if (c != w && !atomic_compare_exchange_weak_explicit(
                      l, &c, w, memory_order_relaxed, memory_order_relaxed))
      continue;
    ct__futex_wait(l, w, CT_FOREVER);
    c = atomic_load_explicit(l, memory_order_relaxed);
  }
}
