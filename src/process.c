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
 *    reason.  pidfd_open(2) is Linux 5.3, waitid(P_PIDFD) 5.4 and
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

/* pidfd_open(2): a descriptor (close-on-exec) or a negative errno. */
static int pidfd_open_(pid_t pid) {
  long fd = syscall(SYS_pidfd_open, pid, 0u);
  return fd < 0 ? -errno : (int)fd;
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
   * process tells, and costs one descriptor for a moment. */
  int pidfd = pidfd_open_(getpid());
  if (pidfd < 0)
    return pidfd;
  close(pidfd);

  pid_t pid;
  int r = spawn(&pid, argv);
  if (r < 0)
    return r;
  pidfd = pidfd_open_(pid);
  if (pidfd < 0) {
    /* No descriptor left (or the checks above raced with a limit): the
     * child must not outlive this call. */
    int status;
    kill(pid, SIGKILL); /* our unreaped child: its pid cannot be reused */
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
      ;
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
