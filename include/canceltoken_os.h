/* SPDX-License-Identifier: MIT
 *
 * canceltoken_os.h -- cancellation meets the operating system: a token
 * triggered by a signal (Ctrl-C cancels everything chained to it), a
 * cancellable wait for a child process, and "run this command under a
 * token", which stops the command with SIGTERM, then SIGKILL, when the token
 * fires.  Part of the core library (libc and pthreads only, Linux).
 *
 * The conventions of canceltoken.h hold here too: errors are negative errno
 * values, time is absolute CLOCK_MONOTONIC nanoseconds with CT_FOREVER and
 * 0 = do not block, and each declaration states ownership, thread-safety
 * and whether it may be called from a callback.
 */
#ifndef CANCELTOKEN_OS_H
#define CANCELTOKEN_OS_H

#include "canceltoken.h"

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Signals                                                                  */

/* Flag for ct_signal_hook(): after the first delivery the signal's action
 * is the default one again (SA_RESETHAND), so a second Ctrl-C kills a
 * program whose clean shutdown is stuck. */
#define CT_SIGNAL_ONCE 1u

/* Trigger t when the process receives signal signo.  The hook's handler
 * calls ct_token_trigger_async(t, CT_REASON_SIGNAL, signo) and nothing
 * else, so ct_token_reason(t, &detail) gives CT_REASON_SIGNAL with the
 * signal number as detail.  Every token chained to t is triggered and
 * every callback runs moments later in the library's async thread -- an
 * ordinary thread with the C library's default stack (see "Callbacks" in
 * canceltoken.h), never inside the handler -- so callbacks may lock,
 * allocate and print.  Later deliveries of the signal find t triggered
 * and do nothing (unless CT_SIGNAL_ONCE restored the default action).
 *
 * The hook replaces the signal's disposition with sigaction(2) and saves the
 * previous one exactly (handler or SIG_DFL/SIG_IGN, sa_mask, SA_ flags);
 * ct_signal_unhook() puts it back.  The handler is installed with
 * SA_RESTART, so most of the program's other system calls (read, write,
 * wait, ...) are restarted rather than failing with EINTR; those the kernel
 * never restarts (poll, epoll_wait, select, nanosleep, calls with a socket
 * timeout: see signal(7)) still fail with EINTR, as with any handler.  Code
 * that must stop when the signal arrives waits on t instead (ct_poll(),
 * which restarts itself, ct_token_fd(), ...).  Calls ct_async_init() first; if that
 * starts the library's async thread, it starts it with every signal
 * blocked, so that handlers run in the application's threads.
 *
 * One hook per signal: to cancel several pieces of work with one signal,
 * chain them to t (ct_token_new_child()).  A token may be hooked to several
 * signals (SIGINT and SIGTERM, say).
 *
 * flags: 0 or CT_SIGNAL_ONCE.  Returns 0, or
 *   -EINVAL  t NULL, unknown flags, signo out of range (1 .. SIGRTMAX), a
 *            signal that cannot be caught (SIGKILL, SIGSTOP), one that the
 *            C library keeps for itself (sigaction(2) refuses it), or a
 *            fault signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL: returning from
 *            a handler after a real fault runs the faulting instruction
 *            again, for ever);
 *   -EBUSY   signo is already hooked (by any token; nothing changes);
 *   the errors of ct_async_init() (-EAGAIN, -EMFILE, -ENFILE, -ENOMEM).
 * Ownership: t borrowed; the hook takes a reference of its own, dropped by
 * ct_signal_unhook(), so t stays valid for the handler even when the
 * caller's references are gone.
 * Thread-safety: any thread, serialised with ct_signal_unhook() by an
 * internal mutex; not async-signal-safe.  Other code that calls
 * sigaction() on signo while it is hooked replaces the hook (the token is
 * then no longer triggered by signo) and is undone by ct_signal_unhook().
 * Callbacks: yes; never blocks except on that mutex.
 * fork(): the child inherits the disposition; its handler's trigger fails
 * (-EAGAIN) until the child calls ct_async_init().  exec() resets it. */
CT_EXTERN int ct_signal_hook(int signo, ct_token *t, unsigned flags);

/* Remove the hook on signo: restore the disposition saved by
 * ct_signal_hook() exactly, wait until no handler of this hook is still
 * running in another thread, and drop the hook's reference on its token
 * (which may free it).  The token keeps its state: if the signal
 * triggered it, it stays triggered.  After it returns, signo is handled
 * as it was before the hook, and may be hooked again.
 * Returns 0, -EINVAL (a signo that ct_signal_hook() always refuses:
 * out of range, uncatchable, a fault signal, or one the C library keeps
 * for itself, such as glibc's 32 and 33), -ENOENT (signo is not hooked).
 * Thread-safety: any thread; not async-signal-safe.  Callbacks: yes (it
 * waits only for handlers, which never block). */
CT_EXTERN int ct_signal_unhook(int signo);

/* Writing your own handler.  When a program keeps its own sigaction()
 * handler, or does more in it, it triggers tokens with the one function of
 * this library that may be called there:
 *
 *     ct_token_trigger_async(tok, CT_REASON_SIGNAL, signo)
 *
 * declared in canceltoken.h.  Call ct_async_init() once before installing
 * the handler, and keep a reference on tok for as long as the handler may
 * run.  Inside a handler, ct_token_triggered(), ct_now(),
 * ct_deadline_after() and ct_err_name() are also safe; nothing else is. */

/* ------------------------------------------------------------------------ */
/* Child processes                                                          */

/* Wait, cancellably, for the child process pid to end, and reap it.
 * Waits on a pidfd (pidfd_open(2)) with ct_wait_fd(), so nothing polls and
 * no SIGCHLD handler is involved.
 * Returns the wait status (>= 0; read it with WIFEXITED(), WEXITSTATUS(),
 * WIFSIGNALED(), WTERMSIG()) once the child has ended -- it is then
 * reaped -- or
 *   -ECANCELED  t was triggered first (at once if it already was);
 *   -ETIMEDOUT  the deadline passed first (at once for 0 if the child is
 *               still running);
 *               after these two the child is untouched: still running,
 *               or a zombie for the next call to reap;
 *   -EINVAL     t NULL, pid <= 0, or a bad deadline;
 *   -ECHILD     pid is not an unreaped child of this process (for example
 *               SIGCHLD is set to SIG_IGN, so children reap themselves);
 *   -ESRCH      no process pid exists (a thread id that is not a
 *               process's, that of its main thread, names none);
 *   -ENOSYS     the kernel has no pidfd_open(2) (Linux before 5.3);
 *   -EMFILE, -ENFILE, -ENOMEM: no descriptor for the pidfd, or one of
 *               the errors of ct_wait_fd() on it (t's own descriptor
 *               could not be created, poll(2) failed).
 * A stopped child is still running: the wait goes on.
 * Ownership: t borrowed.  Thread-safety: any thread; another thread must
 * not reap the same child meanwhile.  Callbacks: allowed; blocks. */
CT_EXTERN int ct_process_wait(ct_token *t, pid_t pid, int64_t deadline);

/* How a command run by ct_run() ended. */
typedef enum ct_run_outcome {
  CT_RUN_NOT_STARTED = 0, /* t was triggered before the command started */
  CT_RUN_EXITED = 1,      /* it exited by itself: exit_code */
  CT_RUN_SIGNALED = 2,    /* a signal that we did not send ended it: signo */
  CT_RUN_TERMINATED = 3,  /* t fired or the deadline passed; we sent SIGTERM
                             and it ended within the grace period (by the
                             signal, or by exiting: see status) */
  CT_RUN_KILLED = 4       /* ... and it was still running when the grace
                             period ended: we sent SIGKILL */
} ct_run_outcome;

/* What ct_run() reports. */
typedef struct ct_run_result {
  ct_run_outcome outcome;
  pid_t pid;     /* the child's process id (reaped: for logs only), or 0 */
  int status;    /* its wait status (WIFEXITED() ...), 0 if not started */
  int exit_code; /* WEXITSTATUS(status) if it exited, else -1 */
  int signo;     /* WTERMSIG(status) if a signal ended it, else 0 */
} ct_run_result;

/* Run a command under a token: start argv[0] with arguments argv (ending
 * in NULL), searched in PATH when it has no '/' (as execvp(3)), and wait
 * for it to end.  The command gets this process's environment and its
 * descriptors without FD_CLOEXEC, an empty signal mask, and SIGTERM and
 * SIGPIPE at their default action even if this process ignores them
 * (other ignored signals stay ignored, as exec(2) does).  When t is
 * triggered or the deadline passes first, send it SIGTERM; if it is still
 * running grace_ns nanoseconds later, send it SIGKILL.  In every case the
 * child is reaped before this returns: ct_run() leaves no zombie.
 * grace_ns is a duration >= 0 (0: SIGKILL at once unless SIGTERM ended it
 * already), or CT_FOREVER: never SIGKILL, wait as long as it takes.  A
 * command that ends by itself just as t fires counts as ending by
 * itself.
 *
 * The signals go through the pidfd (pidfd_send_signal(2)), so they can
 * never reach another process that reused the pid.  The child stays in
 * this process's process group, so a Ctrl-C typed in a terminal reaches it
 * too, as with system(3).
 *
 * Returns, with *res filled in:
 *   0           the command ended by itself (CT_RUN_EXITED or
 *               CT_RUN_SIGNALED; a non-zero exit code is not an error);
 *   -ECANCELED  t was triggered: CT_RUN_TERMINATED or CT_RUN_KILLED, or
 *               CT_RUN_NOT_STARTED if t was triggered before the call;
 *   -ETIMEDOUT  the deadline passed: CT_RUN_TERMINATED or CT_RUN_KILLED.
 * and, leaving *res untouched and no child behind:
 *   -EINVAL     t, argv, argv[0] or res NULL, argv[0] empty, grace_ns < 0
 *               other than CT_FOREVER, or a bad deadline;
 *   -ENOENT, -EACCES, -ENOEXEC, ...: the command could not be started (the
 *               error of execve(2), from posix_spawnp(3));
 *   -ENOSYS     the kernel has no pidfd_open(2) (checked before starting);
 *   -ENOMEM, -EAGAIN, -EMFILE, -ENFILE: no memory, process or descriptor;
 *   -ECHILD     the child was reaped by somebody else, so its status is
 *               lost: by the kernel when SIGCHLD is set to SIG_IGN (or
 *               SA_NOCLDWAIT), which reaps children as they end -- then
 *               every command ends this way, even one that is cancelled
 *               (it is still stopped) -- or by another thread's wait.
 * ct_run() never signals a bare pid: only through the pidfd, or, when no
 * pidfd can be had right after the start (out of memory), with kill(2)
 * while the child is its unreaped child (SIGCHLD not ignored, so the pid
 * cannot have been reused); it then kills and reaps it and returns the
 * error.  With SIGCHLD ignored in that case it cannot know the pid is
 * still the child's, so it returns the error and leaves the command
 * running.  Another thread must not wait for ct_run()'s child (a
 * waitpid(-1) elsewhere can take its status and free its pid).
 * Ownership: t, argv and res borrowed.  Thread-safety: any thread (as
 * posix_spawn(3)).  Callbacks: allowed; blocks for as long as the command
 * runs, plus up to grace_ns after t fires. */
CT_EXTERN int ct_run(ct_token *t, char *const argv[], int64_t grace_ns,
                     ct_run_result *res, int64_t deadline);

#ifdef __cplusplus
}
#endif
#endif /* CANCELTOKEN_OS_H */
