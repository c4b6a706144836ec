/* SPDX-License-Identifier: MIT
 *
 * wait.c -- blocking on a token: the futex wait, the cancellable sleep, the
 * token's descriptor and the cancellable poll.
 *
 * Design notes:
 *  - Waiters sleep in a futex on the state word itself, after setting
 *    WAITERS with a CAS; the trigger's fetch_or returns the old word and
 *    wakes all sleepers only if WAITERS was set.  FUTEX_WAIT compares the
 *    whole word, so a trigger between our load and our sleep makes the
 *    sleep return at once: no lost wake-up.  WAITERS is never cleared, so a
 *    token that was once waited on pays one FUTEX_WAKE on trigger.
 *  - The descriptor is an eventfd created under the token's lock; see
 *    ct_token_fd() for why that cannot miss the trigger.
 */
#include "internal.h"

#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* Wait until TRIGGERED or the deadline: 0 or -ETIMEDOUT. */
static int wait_triggered(ct_token *t, int64_t deadline) {
  for (;;) {
    /* acquire: a waiter that returns sees what the trigger published
     * (cause, reason), as ct_token_triggered() does. */
    uint32_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    if (s & CT_ST_TRIGGERED)
      return 0;
    if (deadline == 0 || (deadline != CT_FOREVER && ct_now() >= deadline))
      return -ETIMEDOUT;
    if (!(s & CT_ST_WAITERS)) {
      /* acquire on success pairs with nothing in particular; the word's
       * RMW order is what matters: a later trigger's fetch_or sees WAITERS. */
      if (!atomic_compare_exchange_weak_explicit(&t->state, &s,
                                                 s | CT_ST_WAITERS,
                                                 memory_order_acquire,
                                                 memory_order_acquire))
        continue;
      s |= CT_ST_WAITERS;
    }
    if (ct__futex_wait(&t->state, s, deadline) == -ETIMEDOUT) {
      s = atomic_load_explicit(&t->state, memory_order_acquire);
      return (s & CT_ST_TRIGGERED) ? 0 : -ETIMEDOUT;
    }
  }
}

int ct_token_wait(ct_token *t, int64_t deadline) {
  if (!t || !ct__valid_deadline(deadline))
    return -EINVAL;
  return wait_triggered(t, deadline);
}

int ct_sleep(ct_token *t, int64_t deadline) {
  if (!t || !ct__valid_deadline(deadline))
    return -EINVAL;
  return wait_triggered(t, deadline) == 0 ? -ECANCELED : 0;
}

int ct_token_fd(ct_token *t) {
  if (!t)
    return -EINVAL;
  struct ct_ext *e = ct__ext(t);
  if (!e)
    return -ENOMEM;
  /* Fast path, no lock: acquire pairs with the release store below. */
  int fd = atomic_load_explicit(&e->fd, memory_order_acquire);
  if (fd >= 0)
    return fd;
  ct__lock(&t->lock);
  fd = atomic_load_explicit(&e->fd, memory_order_relaxed);
  if (fd >= 0) {
    ct__unlock(&t->lock);
    return fd;
  }
  fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    ct__unlock(&t->lock);
    return -err;
  }
  /* Same decision as for callbacks: either the trigger's fetch_or sees
   * INTEREST and writes the descriptor under this lock after us, or we see
   * TRIGGERED and write it ourselves. */
  uint32_t s = atomic_fetch_or_explicit(&t->state, CT_ST_INTEREST,
                                        memory_order_acq_rel);
  atomic_store_explicit(&e->fd, fd, memory_order_release);
  if (s & CT_ST_TRIGGERED)
    ct__eventfd_signal(fd);
  ct__unlock(&t->lock);
  return fd;
}

/* The timeout for ppoll: the time left until the deadline. */
static struct timespec *time_left(int64_t deadline, struct timespec *ts) {
  if (deadline == CT_FOREVER)
    return NULL;
  int64_t left = deadline == 0 ? 0 : deadline - ct_now();
  if (left < 0)
    left = 0;
  ts->tv_sec = left / 1000000000;
  ts->tv_nsec = left % 1000000000;
  return ts;
}

#define CT_POLL_STACK 16

int ct_poll(ct_token *t, struct pollfd *fds, size_t n, int64_t deadline) {
  if (!t || (!fds && n > 0) || !ct__valid_deadline(deadline) ||
      n >= (size_t)INT32_MAX || n >= SIZE_MAX / sizeof(struct pollfd) - 1)
    return -EINVAL;
  if (ct_token_triggered(t))
    return -ECANCELED;
  int tfd = ct_token_fd(t);
  if (tfd < 0)
    return tfd;

  struct pollfd local[CT_POLL_STACK + 1], *p = local;
  if (n + 1 > CT_POLL_STACK + 1) {
    p = ct__alloc((n + 1) * sizeof *p);
    if (!p)
      return -ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    p[i] = (struct pollfd){fds[i].fd, fds[i].events, 0};
  p[n] = (struct pollfd){tfd, POLLIN, 0};

  int r;
  for (;;) {
    /* poll(2) for the two exact cases (no wait, no limit): it skips
     * ppoll's timespec and signal-mask handling, about 10% of a call on a
     * ready descriptor; ppoll keeps nanosecond deadlines otherwise. */
    if (deadline == 0 || deadline == CT_FOREVER) {
      r = poll(p, (nfds_t)(n + 1), deadline == 0 ? 0 : -1);
    } else {
      struct timespec ts;
      r = ppoll(p, (nfds_t)(n + 1), time_left(deadline, &ts), NULL);
    }
    if (r >= 0)
      break;
    if (errno != EINTR) {
      r = -errno;
      goto out;
    }
    if (deadline != CT_FOREVER && deadline != 0 && ct_now() >= deadline) {
      r = 0; /* interrupted at the very end: report the timeout */
      break;
    }
  }
  if (p[n].revents || ct_token_triggered(t)) {
    for (size_t i = 0; i < n; i++)
      fds[i].revents = 0;
    r = -ECANCELED;
  } else if (r == 0) {
    for (size_t i = 0; i < n; i++)
      fds[i].revents = 0;
    r = -ETIMEDOUT;
  } else {
    for (size_t i = 0; i < n; i++)
      fds[i].revents = p[i].revents;
  }
out:
  if (p != local)
    ct__free(p, (n + 1) * sizeof *p);
  return r;
}

int ct_wait_fd(ct_token *t, int fd, short events, int64_t deadline) {
  if (fd < 0)
    return -EINVAL;
  struct pollfd p = {fd, events, 0};
  int r = ct_poll(t, &p, 1, deadline);
  return r > 0 ? p.revents : r;
}
