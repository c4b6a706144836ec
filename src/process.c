/* SPDX-License-Identifier: MIT
 *
 * process.c -- child processes under a token: ct_process_wait() waits for
 * a child's exit on a pidfd with ct_wait_fd(), and ct_run() starts a
 * command, waits for it and stops it (SIGTERM, a grace period, SIGKILL)
 * when the token fires.  Written against the public API only.
 *
 * Design notes:
 *  - A pidfd becomes readable when its process ends, so the wait is an
 *    ordinary cancellable poll: no SIGCHLD handler, no polling, no helper
 *    thread.  The child is reaped with waitid(P_PIDFD, ..., WNOHANG), which
 *    names the process by its pidfd, not by a pid that could be reused.
 *  - Cancellation wins a tie, as in ct_poll(): if t is triggered and the
 *    child has ended, ct_process_wait() returns -ECANCELED and leaves the
 *    zombie for the caller.  ct_run() instead looks once more (WNOHANG)
 *    before it signals: a command that finished on its own is reported as
 *    such, and is not sent a SIGTERM it does not need.
 *  - ct_run() reaps on every path once the child exists: success, the
 *    SIGTERM/SIGKILL sequence, and any error after the spawn (then it
 *    sends SIGKILL and waits without a limit: SIGKILL cannot be refused).
 *  - Signals go through pidfd_send_signal(2) for the same pid-reuse
 *    reason.  RULE: no signal ever goes to a bare pid unless we hold an
 *    unreaped child for it (and then only with SIGCHLD not ignored, since
 *    an ignored SIGCHLD makes the kernel reap children as they end, freeing
 *    their pids at once).  ct_run() keeps one descriptor reserved across
 *    the spawn (the pidfd of this process it opens as a check) and frees it
 *    for the child's pidfd, so "no descriptor" cannot strike between the
 *    spawn and the pidfd in a single-threaded program.  A child already
 *    gone by then (ESRCH: reaped by the kernel or by another thread) is
 *    reported as -ECHILD, its status lost, and nothing is signalled.
 *  - pidfd_open(2) is Linux 5.3, waitid(P_PIDFD) 5.4 and
 *    pidfd_send_signal(2) 5.1; a kernel without them gives -ENOSYS, and
 *    ct_run() checks that before it starts anything.
 */
#include "canceltoken_os.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* the same number on every architecture */
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* A deadline as canceltoken.h defines it: CT_FOREVER or >= 0. */
static bool valid_deadline(int64_t deadline) {
  return deadline >= 0 || deadline == CT_FOREVER;
}

/* pidfd_open(2): a descriptor (close-on-exec) or a negative errno.  A pid
 * > 0 that is no process's id but a thread's (not a thread group leader)
 * gives EINVAL, or ENOENT on newer kernels: it names no process, -ESRCH. */
static int pidfd_open_(pid_t pid) {
  long fd = syscall(SYS_pidfd_open, pid, 0u);
  if (fd >= 0)
    return (int)fd;
  return errno == EINVAL || errno == ENOENT ? -ESRCH : -errno;
}

/* Does the kernel reap our children by itself (SIGCHLD ignored, or
 * SA_NOCLDWAIT)?  Then a child's pid is free the moment it ends. */
static bool children_autoreaped(void) {
  struct sigaction sa;
  if (sigaction(SIGCHLD, NULL, &sa) != 0)
    return true; /* cannot tell: assume the unsafe case */
  return sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_NOCLDWAIT);
}

static void pidfd_signal(int pidfd, int signo) {
  /* ESRCH (it has just ended) is fine: the reap that follows sees that. */
  (void)syscall(SYS_pidfd_send_signal, pidfd, signo, NULL, 0u);
}

/* The wait status waitpid(2) would have given, from waitid(2)'s siginfo. */
static int wait_status(const siginfo_t *si) {
  switch (si->si_code) {
  case CLD_EXITED:
    return (si->si_status & 0xff) << 8;
  case CLD_DUMPED:
    return (si->si_status & 0x7f) | 0x80; /* WCOREDUMP */
  default:                                /* CLD_KILLED */
    return si->si_status & 0x7f;
  }
}

/* Reap the child behind pidfd if it has ended.  Returns its wait status
 * (>= 0), -EAGAIN if it is still running (with WNOHANG only), -ECHILD if
 * it is not our child (or was reaped already), -ENOSYS if the kernel has
 * no waitid(P_PIDFD). */
static int reap(int pidfd, int options) {
  siginfo_t si;
  memset(&si, 0, sizeof si); /* si_pid stays 0 when WNOHANG finds nothing */
  while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | options) != 0) {
    if (errno == EINTR)
      continue;
    /* Our arguments are valid, so EINVAL means Linux 5.3: no P_PIDFD. */
    return errno == EINVAL ? -ENOSYS : -errno;
  }
  return si.si_pid == 0 ? -EAGAIN : wait_status(&si);
}

/* Wait for the child behind pidfd until it ends (its wait status), t is
 * triggered (-ECANCELED; t may be NULL: never), or the deadline passes
 * (-ETIMEDOUT). */
static int wait_pidfd(ct_token *t, int pidfd, int64_t deadline) {
  int r = reap(pidfd, WNOHANG);
  while (r == -EAGAIN) {
    if (t) {
      r = ct_wait_fd(t, pidfd, POLLIN, deadline);
    } else {
      /* No token: a plain poll with the time left (EINTR restarts it). */
      struct pollfd p = {pidfd, POLLIN, 0};
      struct timespec ts, *tp = NULL;
      if (deadline != CT_FOREVER) {
        int64_t left = deadline == 0 ? 0 : deadline - ct_now();
        if (left < 0)
          left = 0;
        ts.tv_sec = (time_t)(left / 1000000000);
        ts.tv_nsec = (long)(left % 1000000000);
        tp = &ts;
      }
      r = ppoll(&p, 1, tp, NULL);
      if (r < 0)
        r = errno == EINTR ? 1 : -errno;
      else if (r == 0)
        r = -ETIMEDOUT;
    }
    if (r < 0)
      return r;
    r = reap(pidfd, WNOHANG); /* readable: it has ended */
  }
  return r;
}

int ct_process_wait(ct_token *t, pid_t pid, int64_t deadline) {
  if (!t || pid <= 0 || !valid_deadline(deadline))
    return -EINVAL;
  if (ct_token_triggered(t))
    return -ECANCELED;
  int pidfd = pidfd_open_(pid);
  if (pidfd < 0)
    return pidfd;
  int r = wait_pidfd(t, pidfd, deadline);
  close(pidfd);
  return r;
}

static void set_result(ct_run_result *res, ct_run_outcome outcome, pid_t pid,
                       int status) {
  res->outcome = outcome;
  res->pid = pid;
  res->status = status;
  res->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  res->signo = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

/* Start argv with an empty signal mask (the caller's thread may block
 * signals that the command must receive) and with SIGTERM and SIGPIPE at
 * their default action: exec(2) keeps an ignored signal ignored, so a
 * parent that ignores SIGTERM would make every command deaf to the
 * polite stop, and one that ignores SIGPIPE for its sockets would hand
 * that to commands written for the default (as Python's subprocess
 * resets it too).  Other ignored signals (SIGINT and SIGHUP under nohup or
 * in a background job) stay ignored, as the user asked. */
static int spawn(pid_t *pid, char *const argv[]) {
  posix_spawnattr_t attr;
  sigset_t none, dfl;
  int e = posix_spawnattr_init(&attr);
  if (e != 0)
    return -e;
  sigemptyset(&none);
  sigemptyset(&dfl);
  sigaddset(&dfl, SIGTERM);
  sigaddset(&dfl, SIGPIPE);
  e = posix_spawnattr_setsigmask(&attr, &none);
  if (e == 0)
    e = posix_spawnattr_setsigdefault(&attr, &dfl);
  if (e == 0)
    e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                            POSIX_SPAWN_SETSIGDEF);
  if (e == 0)
    e = posix_spawnp(pid, argv[0], NULL, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  return -e;
}

int ct_run(ct_token *t, char *const argv[], int64_t grace_ns,
           ct_run_result *res, int64_t deadline) {
  if (!t || !argv || !argv[0] || !argv[0][0] || !res ||
      (grace_ns < 0 && grace_ns != CT_FOREVER) || !valid_deadline(deadline))
    return -EINVAL;
  if (ct_token_triggered(t)) {
    *res = (ct_run_result){CT_RUN_NOT_STARTED, 0, 0, -1, 0};
    return -ECANCELED;
  }
  /* Check for pidfds before starting anything: the pidfd of this very
   * process tells.  Keep it open across the spawn: it reserves the
   * descriptor the child's pidfd needs (see the design notes). */
  int reserve = pidfd_open_(getpid());
  if (reserve < 0)
    return reserve;

  pid_t pid;
  int r = spawn(&pid, argv);
  if (r < 0) {
    close(reserve);
    return r;
  }
  close(reserve);
  int pidfd = pidfd_open_(pid);
  if (pidfd == -ESRCH)
    return -ECHILD; /* it ended and was reaped already: nothing to signal */
  if (pidfd < 0) {
    /* No pidfd (out of memory, or another thread took the descriptor we
     * freed).  The child must not outlive this call, but a bare pid may be
     * signalled only while it is our unreaped child: true unless the
     * kernel reaps children by itself.  In that case leave it alone (it
     * runs on, documented), rather than risk killing a stranger. */
    if (!children_autoreaped()) {
      int status;
      kill(pid, SIGKILL); /* our unreaped child: its pid cannot be reused */
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    }
    return pidfd;
  }

  r = wait_pidfd(t, pidfd, deadline);
  if (r >= 0) {
    set_result(res, WIFEXITED(r) ? CT_RUN_EXITED : CT_RUN_SIGNALED, pid, r);
    r = 0;
  } else if (r == -ECANCELED || r == -ETIMEDOUT) {
    int why = r;
    r = reap(pidfd, WNOHANG);
    if (r >= 0) { /* it ended by itself just as t fired */
      set_result(res, WIFEXITED(r) ? CT_RUN_EXITED : CT_RUN_SIGNALED, pid, r);
      r = 0;
    } else if (r == -EAGAIN) {
      pidfd_signal(pidfd, SIGTERM);
      r = wait_pidfd(NULL, pidfd,
                     grace_ns == CT_FOREVER ? CT_FOREVER
                                            : ct_deadline_after(grace_ns));
      if (r >= 0) {
        set_result(res, CT_RUN_TERMINATED, pid, r);
        r = why;
      } else if (r == -ETIMEDOUT) {
        pidfd_signal(pidfd, SIGKILL);
        r = reap(pidfd, 0);
        if (r >= 0) {
          set_result(res, CT_RUN_KILLED, pid, r);
          r = why;
        }
      }
    }
  }
  if (r < 0 && r != -ECANCELED && r != -ETIMEDOUT) {
    /* An unexpected error (-ENOMEM from the poll, say): stop and reap the
     * child anyway.  -ECHILD means somebody else reaped it already. */
    pidfd_signal(pidfd, SIGKILL);
    (void)reap(pidfd, 0);
  }
  close(pidfd);
  return r;
}
