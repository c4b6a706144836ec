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
 *  - Descriptors and fork().  fork() copies a token (its state word is
 *    process memory) but shares its eventfd: both processes' descriptors
 *    are one kernel object.  A trigger in one process must not make the
 *    other's descriptor readable, so each descriptor records the "fork
 *    generation" it was made in (ext->fd_gen), and every forked child bumps
 *    the generation (atfork handler, registered before the first
 *    descriptor exists).  A process that finds a descriptor of an older
 *    generation -- inherited -- adopts it before using it (fd_adopt()):
 *    it puts a fresh eventfd at the same number with dup3(2), so the
 *    number the application holds stays valid and now names a descriptor
 *    of this process only.  The trigger (ct__fd_signal_locked, from
 *    token.c) and ct_token_fd() both adopt, under the token's lock.
 *  - Readiness is never taken as cancellation on its own: ct_poll() checks
 *    the state word.  Readable while not triggered can only mean that
 *    somebody outside this process's library wrote the shared descriptor
 *    (a process cloned without the atfork handlers, a raw write); that
 *    write is consumed (fd_consume_stray) and the poll goes on.  Only
 *    inherited descriptors are ever replaced, and only before this
 *    process's library has polled them.
 */
#include "internal.h"

#include <fcntl.h>
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

/* The fork generation: 0 in the process that loaded the library, bumped
 * in each forked child by atfork_child() while the child has one thread.
 * Relaxed everywhere: it changes only when no other thread of the process
 * exists, and threads created later are ordered after it by
 * pthread_create(). */
static _Atomic uint32_t fork_gen;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_child(void) {
  atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
}

static void atfork_register(void) {
  pthread_atfork(NULL, NULL, atfork_child);
}

static uint32_t gen_now(void) {
  return atomic_load_explicit(&fork_gen, memory_order_relaxed);
}

/* Give this process a descriptor of its own at e->fd's number (see the
 * design notes).  Caller holds the token's lock and has seen fd >= 0.
 * Returns 0 or a negative errno (the descriptor is then left as it was:
 * the caller must not write it). */
static int adopt_locked(struct ct_ext *e, int fd) {
  int n = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (n < 0)
    return -errno;
  int r;
  while ((r = dup3(n, fd, O_CLOEXEC)) < 0 && (errno == EINTR || errno == EBUSY))
    ;
  int err = r < 0 ? -errno : 0;
  close(n);
  /* release: pairs with ct_token_fd()'s acquire load of fd_gen, so a
   * thread that takes the fast path on the new generation is ordered after
   * the dup3 (and after our write, when t is triggered). */
  if (err == 0)
    atomic_store_explicit(&e->fd_gen, gen_now(), memory_order_release);
  return err;
}

void ct__fd_signal_locked(struct ct_ext *e) {
  /* relaxed, both: fd and fd_gen are stored under the token's lock, which
   * we hold. */
  int fd = atomic_load_explicit(&e->fd, memory_order_relaxed);
  if (fd < 0)
    return;
  if (atomic_load_explicit(&e->fd_gen, memory_order_relaxed) != gen_now() &&
      adopt_locked(e, fd) < 0)
    return; /* inherited, and no descriptor to replace it: never write the
               other process's; ct_token_fd() will try again and report */
  ct__eventfd_signal(fd);
}

/* Adopt t's descriptor fd if it was inherited, and make it readable if t
 * is triggered.  Returns fd or a negative errno. */
static int fd_adopt(ct_token *t, struct ct_ext *e, int fd) {
  ct__lock(&t->lock);
  int r = fd;
  /* relaxed: fd_gen is stored under this lock, which we hold. */
  if (atomic_load_explicit(&e->fd_gen, memory_order_relaxed) != gen_now()) {
    r = adopt_locked(e, fd);
    /* A trigger that ran before we took the lock wrote the old
     * descriptor, or did not write at all (inherited): write ours.  One
     * after us writes it itself, under this lock. */
    if (r == 0) {
      r = fd;
      if (ct_token_triggered(t))
        ct__eventfd_signal(fd);
    }
  }
  ct__unlock(&t->lock);
  return r;
}

/* t's descriptor fd (of this process) was found readable while t is not
 * triggered: somebody outside this process's library wrote it.  Consume
 * that write, under t's lock and only while t is still not triggered: a
 * trigger sets TRIGGERED before it takes the lock to write, so its write
 * always comes after ours and is never consumed.  The number keeps naming
 * the same descriptor: a thread already asleep in poll(2) on it (which
 * the kernel keeps registered on that very descriptor) is woken by the
 * stray write, finds nothing, sleeps again, and is woken by the real
 * trigger.  (Replacing the descriptor instead would strand it.) */
static void fd_consume_stray(ct_token *t, int fd) {
  ct__lock(&t->lock);
  if (!ct_token_triggered(t)) {
    uint64_t v;
    ssize_t rd = read(fd, &v, sizeof v); /* non-blocking: EAGAIN if empty */
    (void)rd;
  }
  ct__unlock(&t->lock);
}

int ct_token_fd(ct_token *t) {
  if (!t)
    return -EINVAL;
  struct ct_ext *e = ct__ext(t);
  if (!e)
    return -ENOMEM;
  /* Fast path, no lock: acquire pairs with the release store below, and
   * makes fd_gen (stored before it) visible. */
  int fd = atomic_load_explicit(&e->fd, memory_order_acquire);
  if (fd >= 0) {
    /* acquire: pairs with adopt_locked()'s release store. */
    if (CT_LIKELY(atomic_load_explicit(&e->fd_gen, memory_order_acquire) ==
                  gen_now()))
      return fd;
    return fd_adopt(t, e, fd);
  }
  pthread_once(&atfork_once, atfork_register);
  ct__lock(&t->lock);
  fd = atomic_load_explicit(&e->fd, memory_order_relaxed);
  if (fd >= 0) {
    ct__unlock(&t->lock);
    return fd_adopt(t, e, fd);
  }
  fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    ct__unlock(&t->lock);
    return -err;
  }
  /* relaxed: published by the release store of fd below. */
  atomic_store_explicit(&e->fd_gen, gen_now(), memory_order_relaxed);
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
  if (ct_token_triggered(t)) {
    for (size_t i = 0; i < n; i++)
      fds[i].revents = 0;
    return -ECANCELED;
  }
  /* Readiness first: one poll(2) of the caller's own set with timeout 0.
   * If something is ready, or the call must not block, the token's
   * descriptor is not needed -- t's state word, read after the poll, says
   * whether t was triggered, and cancellation still wins a tie.  This
   * makes a call on a ready descriptor a one-descriptor poll (cheaper than
   * the two-descriptor poll it replaces, and than the stop_token/GLib
   * pattern), and a non-blocking call never creates the descriptor.  A
   * call that has to block pays one extra poll(2) of the set, which is
   * small next to blocking. */
  if (n > 0 || deadline == 0) {
    int q;
    while ((q = poll(fds, (nfds_t)n, 0)) < 0 && errno == EINTR)
      ;
    if (q < 0)
      return -errno;
    if (q > 0 || deadline == 0) {
      if (ct_token_triggered(t)) {
        for (size_t i = 0; i < n; i++)
          fds[i].revents = 0;
        return -ECANCELED;
      }
      return q > 0 ? q : -ETIMEDOUT;
    }
  }
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
again:
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
  if (ct_token_triggered(t)) {
    for (size_t i = 0; i < n; i++)
      fds[i].revents = 0;
    r = -ECANCELED;
    goto out;
  }
  if (p[n].revents) {
    /* The token's descriptor is readable and t is not triggered: it was
     * made readable from outside (see the design notes).  That is not
     * cancellation: consume the stray write, then report the other
     * descriptors or wait on.  (The trigger writes the descriptor only
     * after setting TRIGGERED, so a real trigger never lands here.) */
    fd_consume_stray(t, tfd);
    p[n].revents = 0;
    r--; /* poll counted the token's descriptor */
    if (r == 0 && deadline != 0 &&
        (deadline == CT_FOREVER || ct_now() < deadline))
      goto again;
  }
  for (size_t i = 0; i < n; i++)
    fds[i].revents = r == 0 ? 0 : p[i].revents;
  if (r == 0)
    r = -ETIMEDOUT;
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
