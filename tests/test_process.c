/* SPDX-License-Identifier: MIT
 *
 * test_process.c -- ct_process_wait() and ct_run() with real commands:
 * exit codes, signals, cancellation from another thread, deadlines, the
 * SIGTERM-then-SIGKILL sequence, commands that cannot start, a kernel
 * without pidfds (simulated with seccomp), and no zombies left behind:
 * every test ends by checking waitpid(-1, WNOHANG) fails with ECHILD.
 *
 * Commands that must be cancelled announce that they have started by
 * writing a line to a pipe inherited as descriptor 3..N; the canceller
 * waits for that line, so no test depends on how long anything takes.
 */
#include "test_util.h"

#include "canceltoken_os.h"

#include <fcntl.h>
#include <poll.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Teardown of every test: this process has no child left, reaped or not. */
static int no_zombies(void **state) {
  (void)state;
  errno = 0;
  assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
  assert_int_equal(errno, ECHILD);
  return 0;
}

/* Start /bin/sh -c script, without waiting. */
static pid_t start_sh(const char *script) {
  pid_t pid;
  char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
  assert_int_equal(posix_spawn(&pid, argv[0], NULL, NULL, argv, environ), 0);
  return pid;
}

/* A pipe whose write end the commands inherit (no FD_CLOEXEC) and write
 * "ready" to; the read end is close-on-exec. */
struct ready_pipe {
  int rd, wr;
};

static void ready_pipe_open(struct ready_pipe *p) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  assert_int_equal(fcntl(fds[0], F_SETFD, FD_CLOEXEC), 0);
  p->rd = fds[0];
  p->wr = fds[1];
}

static void ready_pipe_close(struct ready_pipe *p) {
  close(p->rd);
  close(p->wr);
}

/* Block until one command has written its line. */
static void ready_pipe_await(struct ready_pipe *p) {
  char ch;
  do {
    ssize_t r = read(p->rd, &ch, 1);
    if (r < 0 && errno == EINTR)
      continue;
    assert_int_equal(r, 1);
  } while (ch != '\n');
}

/* Build "/bin/sh -c '<before> echo ready >&<fd>; <after>'". */
static void ready_script(char *buf, size_t size, const struct ready_pipe *p,
                         const char *before, const char *after) {
  int n = snprintf(buf, size, "%s echo ready >&%d; %s", before, p->wr, after);
  assert_true(n > 0 && (size_t)n < size);
}

/* ---- ct_process_wait ---- */

static void test_wait_bad_input(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_ERR(ct_process_wait(NULL, 1, 0), -EINVAL);
  ASSERT_ERR(ct_process_wait(t, 0, 0), -EINVAL);
  ASSERT_ERR(ct_process_wait(t, -1, 0), -EINVAL);
  ASSERT_ERR(ct_process_wait(t, getpid(), -2), -EINVAL);
  /* A process that is not our child: init, or ourselves. */
  ASSERT_ERR(ct_process_wait(t, getpid(), 0), -ECHILD);
  ASSERT_ERR(ct_process_wait(t, 1, CT_FOREVER), -ECHILD);
  ct_token_unref(t);
}

static void test_wait_exit_status(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  pid_t pid = start_sh("exit 3");
  int status = ct_process_wait(t, pid, CT_FOREVER);
  assert_true(status >= 0);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 3);
  /* Reaped: the pid is gone (or, if reused at once, not our child). */
  int again = ct_process_wait(t, pid, 0);
  assert_true(again == -ESRCH || again == -ECHILD);

  pid = start_sh("kill -USR1 $$");
  status = ct_process_wait(t, pid, CT_FOREVER);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGUSR1);
  ct_token_unref(t);
}

struct trigger_arg {
  ct_token *t;
  struct ready_pipe *ready; /* NULL: trigger at once */
  int n;                    /* how many "ready" lines to wait for */
  int64_t when;             /* set just before the trigger */
};

static void *trigger_when_ready(void *arg) {
  struct trigger_arg *a = arg;
  for (int i = 0; a->ready && i < a->n; i++)
    ready_pipe_await(a->ready);
  a->when = ct_now();
  ct_token_trigger(a->t);
  return NULL;
}

static void test_wait_cancel_and_timeout(void **state) {
  (void)state;
  ct_token *t, *done;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_OK(ct_token_new(&done, "done"));
  pid_t pid = start_sh("exec /bin/sleep 1000");

  ASSERT_ERR(ct_process_wait(t, pid, 0), -ETIMEDOUT); /* do not block */
  int64_t start = ct_now();
  ASSERT_ERR(ct_process_wait(t, pid, ct_deadline_after(20 * MS)), -ETIMEDOUT);
  assert_true(ct_now() - start >= 20 * MS); /* never early */

  /* Another thread triggers t while we wait (or before: both give
   * -ECANCELED). */
  pthread_t th;
  struct trigger_arg arg = {t, NULL, 0, 0};
  assert_int_equal(pthread_create(&th, NULL, trigger_when_ready, &arg), 0);
  ASSERT_ERR(ct_process_wait(t, pid, CT_FOREVER), -ECANCELED);
  pthread_join(th, NULL);
  ASSERT_ERR(ct_process_wait(t, pid, CT_FOREVER), -ECANCELED); /* at once */

  /* The child was left alone: still running, still ours. */
  assert_int_equal(kill(pid, 0), 0);
  assert_int_equal(kill(pid, SIGKILL), 0);
  int status = ct_process_wait(done, pid, CT_FOREVER);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGKILL);
  ct_token_unref(done);
  ct_token_unref(t);
}

/* Cancellation wins a tie: a zombie is not reaped by a cancelled wait. */
static void test_wait_cancelled_leaves_zombie(void **state) {
  (void)state;
  ct_token *t, *fresh;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_OK(ct_token_new(&fresh, "fresh"));
  pid_t pid = start_sh("exit 5");
  siginfo_t si;
  /* Wait until it is a zombie, without reaping it. */
  assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
  ct_token_trigger(t);
  ASSERT_ERR(ct_process_wait(t, pid, CT_FOREVER), -ECANCELED);
  int status = ct_process_wait(fresh, pid, 0); /* 0: it has ended */
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 5);
  ct_token_unref(fresh);
  ct_token_unref(t);
}

/* ---- ct_run ---- */

static const ct_run_result sentinel = {(ct_run_outcome)99, -7, -7, -7, -7};

static void assert_untouched(const ct_run_result *r) {
  assert_int_equal(r->outcome, sentinel.outcome);
  assert_int_equal(r->pid, sentinel.pid);
  assert_int_equal(r->status, sentinel.status);
}

static void test_run_bad_input(void **state) {
  (void)state;
  ct_token *t;
  ct_run_result r = sentinel;
  char *argv[] = {"/bin/true", NULL};
  char *empty[] = {"", NULL};
  char *none[] = {NULL};
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_ERR(ct_run(NULL, argv, 0, &r, CT_FOREVER), -EINVAL);
  ASSERT_ERR(ct_run(t, NULL, 0, &r, CT_FOREVER), -EINVAL);
  ASSERT_ERR(ct_run(t, none, 0, &r, CT_FOREVER), -EINVAL);
  ASSERT_ERR(ct_run(t, empty, 0, &r, CT_FOREVER), -EINVAL);
  ASSERT_ERR(ct_run(t, argv, 0, NULL, CT_FOREVER), -EINVAL);
  ASSERT_ERR(ct_run(t, argv, -2, &r, CT_FOREVER), -EINVAL);
  ASSERT_ERR(ct_run(t, argv, 0, &r, -2), -EINVAL);
  assert_untouched(&r);
  ct_token_unref(t);
}

static void test_run_exit_codes(void **state) {
  (void)state;
  ct_token *t;
  ct_run_result r;
  ASSERT_OK(ct_token_new(&t, "t"));

  char *exit3[] = {"/bin/sh", "-c", "exit 3", NULL};
  ASSERT_OK(ct_run(t, exit3, 0, &r, CT_FOREVER)); /* not an error */
  assert_int_equal(r.outcome, CT_RUN_EXITED);
  assert_int_equal(r.exit_code, 3);
  assert_int_equal(r.signo, 0);
  assert_true(r.pid > 0);
  assert_true(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 3);

  char *true_in_path[] = {"true", NULL}; /* found in PATH */
  ASSERT_OK(ct_run(t, true_in_path, 0, &r, CT_FOREVER));
  assert_int_equal(r.outcome, CT_RUN_EXITED);
  assert_int_equal(r.exit_code, 0);

  char *sig[] = {"/bin/sh", "-c", "kill -USR1 $$", NULL};
  ASSERT_OK(ct_run(t, sig, 0, &r, CT_FOREVER));
  assert_int_equal(r.outcome, CT_RUN_SIGNALED);
  assert_int_equal(r.signo, SIGUSR1);
  assert_int_equal(r.exit_code, -1);

  /* Arguments reach the command as they are. */
  char *args[] = {"/bin/sh", "-c", "test \"$1\" = 'a b' && exit 42", "sh",
                  "a b", NULL};
  ASSERT_OK(ct_run(t, args, 0, &r, CT_FOREVER));
  assert_int_equal(r.exit_code, 42);
  ct_token_unref(t);
}

static void test_run_cannot_start(void **state) {
  (void)state;
  ct_token *t;
  ct_run_result r = sentinel;
  ASSERT_OK(ct_token_new(&t, "t"));
  char *missing[] = {"/nonexistent/ct-no-such-command", NULL};
  ASSERT_ERR(ct_run(t, missing, 0, &r, CT_FOREVER), -ENOENT);
  char *missing_in_path[] = {"ct-no-such-command-in-path", NULL};
  ASSERT_ERR(ct_run(t, missing_in_path, 0, &r, CT_FOREVER), -ENOENT);
  char *not_executable[] = {"/etc/passwd", NULL};
  ASSERT_ERR(ct_run(t, not_executable, 0, &r, CT_FOREVER), -EACCES);
  assert_untouched(&r);
  ct_token_unref(t);
}

static void test_run_already_triggered(void **state) {
  (void)state;
  ct_token *t;
  ct_run_result r = sentinel;
  ASSERT_OK(ct_token_new(&t, "t"));
  ct_token_trigger(t);
  char *argv[] = {"/bin/sleep", "1000", NULL};
  ASSERT_ERR(ct_run(t, argv, 0, &r, CT_FOREVER), -ECANCELED);
  assert_int_equal(r.outcome, CT_RUN_NOT_STARTED);
  assert_int_equal(r.pid, 0);
  ct_token_unref(t); /* the teardown checks that nothing was started */
}

/* Run "<before> echo ready >&N; <after>" under a token that another
 * thread triggers once the line has arrived.  *elapsed (if not NULL)
 * receives the time from the trigger to the return of ct_run(). */
static int run_cancelled(const char *before, const char *after,
                         int64_t grace, ct_run_result *r, int64_t *elapsed) {
  ct_token *t;
  struct ready_pipe ready;
  char script[256];
  pthread_t th;
  ASSERT_OK(ct_token_new(&t, "job"));
  ready_pipe_open(&ready);
  ready_script(script, sizeof script, &ready, before, after);
  char *argv[] = {"/bin/sh", "-c", script, NULL};
  struct trigger_arg arg = {t, &ready, 1, 0};
  assert_int_equal(pthread_create(&th, NULL, trigger_when_ready, &arg), 0);
  int rc = ct_run(t, argv, grace, r, CT_FOREVER);
  int64_t end = ct_now();
  pthread_join(th, NULL); /* makes arg.when visible */
  if (elapsed)
    *elapsed = end - arg.when;
  ready_pipe_close(&ready);
  ct_token_unref(t);
  return rc;
}

static void test_run_sigterm(void **state) {
  (void)state;
  ct_run_result r;
  ASSERT_ERR(run_cancelled("", "exec /bin/sleep 1000", 10 * 1000 * MS, &r,
                           NULL),
             -ECANCELED);
  assert_int_equal(r.outcome, CT_RUN_TERMINATED);
  assert_int_equal(r.signo, SIGTERM);
  assert_int_equal(r.exit_code, -1);
}

/* The command handles SIGTERM and exits on its own terms: still
 * CT_RUN_TERMINATED, with its exit code.  (A busy loop of builtins, so
 * the shell runs the trap at once and starts no process of its own: a
 * background "sleep & wait" could miss a "kill $!" sent between its fork
 * and its exec, and outlive the test.) */
static void test_run_sigterm_handled(void **state) {
  (void)state;
  ct_run_result r;
  ASSERT_ERR(run_cancelled("trap 'exit 7' TERM;", "while :; do :; done",
                           CT_FOREVER, &r, NULL),
             -ECANCELED);
  assert_int_equal(r.outcome, CT_RUN_TERMINATED);
  assert_int_equal(r.exit_code, 7);
  assert_int_equal(r.signo, 0);
}

/* The command ignores SIGTERM: SIGKILL after the grace period, not
 * before.  (exec: the sleep itself ignores TERM and gets the SIGKILL, so no
 * grandchild is left running.) */
static void test_run_sigkill_after_grace(void **state) {
  (void)state;
  ct_run_result r;
  int64_t elapsed;
  const int64_t grace = 50 * MS;
  ASSERT_ERR(run_cancelled("trap '' TERM;", "exec /bin/sleep 1000", grace, &r,
                           &elapsed),
             -ECANCELED);
  assert_int_equal(r.outcome, CT_RUN_KILLED);
  assert_int_equal(r.signo, SIGKILL);
  assert_true(elapsed >= grace); /* a window: never before the grace */
}

static void test_run_deadline(void **state) {
  (void)state;
  ct_token *t;
  ct_run_result r;
  ASSERT_OK(ct_token_new(&t, "t"));
  char *argv[] = {"/bin/sleep", "1000", NULL};
  int64_t start = ct_now();
  ASSERT_ERR(ct_run(t, argv, 10 * 1000 * MS, &r, ct_deadline_after(20 * MS)),
             -ETIMEDOUT);
  assert_true(ct_now() - start >= 20 * MS);
  assert_int_equal(r.outcome, CT_RUN_TERMINATED);
  assert_int_equal(r.signo, SIGTERM);
  /* Deadline 0: start it, then stop it at once. */
  ASSERT_ERR(ct_run(t, argv, 0, &r, 0), -ETIMEDOUT);
  assert_true(r.outcome == CT_RUN_TERMINATED || r.outcome == CT_RUN_KILLED);
  assert_false(ct_token_triggered(t));
  ct_token_unref(t);
}

/* One trigger stops every command run under tokens chained to it. */
struct runner {
  ct_token *t;
  char script[256];
  ct_run_result r;
  int rc;
};

static void *runner_main(void *arg) {
  struct runner *run = arg;
  char *argv[] = {"/bin/sh", "-c", run->script, NULL};
  run->rc = ct_run(run->t, argv, 10 * 1000 * MS, &run->r, CT_FOREVER);
  return NULL;
}

static void test_run_many_cancelled_by_one_trigger(void **state) {
  (void)state;
  enum { N = 4 };
  ct_token *root;
  struct runner runs[N];
  pthread_t th[N];
  struct ready_pipe ready;
  ASSERT_OK(ct_token_new(&root, "shutdown"));
  ready_pipe_open(&ready);
  for (int i = 0; i < N; i++) {
    ASSERT_OK(ct_token_new_child(&runs[i].t, "job", root));
    ready_script(runs[i].script, sizeof runs[i].script, &ready, "",
                 "exec /bin/sleep 1000");
    assert_int_equal(pthread_create(&th[i], NULL, runner_main, &runs[i]), 0);
  }
  struct trigger_arg arg = {root, &ready, N, 0};
  trigger_when_ready(&arg);
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    ASSERT_ERR(runs[i].rc, -ECANCELED);
    assert_int_equal(runs[i].r.outcome, CT_RUN_TERMINATED);
    assert_int_equal(runs[i].r.signo, SIGTERM);
    ct_token_unref(runs[i].t);
  }
  ready_pipe_close(&ready);
  ct_token_unref(root);
}

/* This process ignores SIGTERM and SIGPIPE; its commands do not: the
 * polite stop still works, and a broken pipe still ends a command. */
static void test_run_resets_ignored_term_and_pipe(void **state) {
  (void)state;
  struct sigaction ign = {0}, old_term, old_pipe;
  ct_run_result r;
  ign.sa_handler = SIG_IGN;
  sigaction(SIGTERM, &ign, &old_term);
  sigaction(SIGPIPE, &ign, &old_pipe);

  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  char *pipe_cmd[] = {"/bin/sh", "-c", "kill -PIPE $$; exit 9", NULL};
  ASSERT_OK(ct_run(t, pipe_cmd, 0, &r, CT_FOREVER));
  assert_int_equal(r.outcome, CT_RUN_SIGNALED);
  assert_int_equal(r.signo, SIGPIPE);
  ct_token_unref(t);

  ASSERT_ERR(run_cancelled("", "exec /bin/sleep 1000", 10 * 1000 * MS, &r,
                           NULL),
             -ECANCELED);
  assert_int_equal(r.outcome, CT_RUN_TERMINATED); /* not KILLED */
  assert_int_equal(r.signo, SIGTERM);

  sigaction(SIGTERM, &old_term, NULL);
  sigaction(SIGPIPE, &old_pipe, NULL);
}

/* No descriptor for the pidfd: -EMFILE, and nothing is started. */
static void test_run_no_descriptor(void **state) {
  (void)state;
  ct_token *t;
  ct_run_result r = sentinel;
  struct rlimit old, low;
  ASSERT_OK(ct_token_new(&t, "t"));
  int lowest = dup(0); /* the lowest free descriptor */
  assert_true(lowest >= 0);
  close(lowest);
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
  low = old;
  low.rlim_cur = (rlim_t)lowest; /* no new descriptor fits */
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  char *argv[] = {"/bin/true", NULL};
  int rc = ct_run(t, argv, 0, &r, CT_FOREVER);
  int wrc = ct_process_wait(t, getpid(), 0);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
  ASSERT_ERR(rc, -EMFILE);
  ASSERT_ERR(wrc, -EMFILE);
  assert_untouched(&r);
  ct_token_unref(t);
}

/* A kernel without pidfd_open(2): a child process of the test installs a
 * seccomp filter that makes it fail with ENOSYS, and checks that both
 * calls say so (ct_run() before starting anything). */
static int child_without_pidfd(void) {
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 1),
      BPF_STMT(BPF_RET | BPF_K,
               SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof code / sizeof code[0], code};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
    return 77; /* no seccomp here: skip */
  ct_token *t;
  ct_run_result r;
  if (ct_token_new(&t, "t") < 0)
    return 10;
  char *argv[] = {"/bin/true", NULL};
  if (ct_run(t, argv, 0, &r, CT_FOREVER) != -ENOSYS)
    return 11;
  if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
    return 12; /* it started something */
  if (ct_process_wait(t, getppid(), 0) != -ENOSYS)
    return 13;
  ct_token_unref(t);
  return 0;
}

static void test_no_pidfd_gives_enosys(void **state) {
  (void)state;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(child_without_pidfd());
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77)
    skip();
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- issue 13, items 7 and 8 ---- */

struct tid_thread {
  _Atomic pid_t tid;
  int hold[2]; /* the thread stays alive until this pipe is closed */
};

static void *thread_gettid(void *arg) {
  struct tid_thread *x = arg;
  atomic_store(&x->tid, gettid());
  char c;
  while (read(x->hold[0], &c, 1) < 0 && errno == EINTR)
    ;
  return NULL;
}

/* Item 8: the id of a live thread that is not a process's main thread
 * names no process: -ESRCH, documented (it was -ENOENT, undocumented). */
static void test_process_wait_on_thread_id_is_esrch(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  struct tid_thread x = {0};
  assert_int_equal(pipe(x.hold), 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, thread_gettid, &x), 0);
  while (atomic_load(&x.tid) == 0)
    sched_yield();
  ASSERT_ERR(ct_process_wait(t, atomic_load(&x.tid), 0), -ESRCH);
  ASSERT_ERR(ct_process_wait(t, atomic_load(&x.tid), CT_FOREVER), -ESRCH);
  close(x.hold[1]);
  pthread_join(th, NULL);
  close(x.hold[0]);
  ct_token_unref(t);
}

/* In a child process of the test: make pidfd_open(2) fail with `err` for
 * every pid but this process's own (which ct_run() opens as its check),
 * so that the child's pidfd cannot be had after the spawn. */
static int deny_child_pidfd(int err) {
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
               offsetof(struct seccomp_data, args[0])), /* low half */
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)getpid(), 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((uint32_t)err & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof code / sizeof code[0], code};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
    return -1;
  return 0;
}

/* Read p until EOF; 1 if "done" came. */
static int saw_done(int fd) {
  char buf[64];
  size_t got = 0;
  ssize_t n;
  while (got < sizeof buf - 1 &&
         ((n = read(fd, buf + got, sizeof buf - 1 - got)) > 0 ||
          (n < 0 && errno == EINTR)))
    if (n > 0)
      got += (size_t)n;
  buf[got] = 0;
  return strstr(buf, "done") != NULL;
}

/* The command: writes "done" to the inherited pipe once this process
 * lets it go (a line on another pipe, sent after ct_run() has returned),
 * unless a signal ends it first.  (It slept 0.2 s instead: a test thread
 * descheduled that long between the spawn and the kill let it finish,
 * and the kill case failed.) */
static int run_denied(int err, bool ignore_chld, int *rc_out) {
  int p[2], go[2];
  if (pipe2(p, 0) != 0 || pipe2(go, 0) != 0 ||
      fcntl(go[1], F_SETFD, FD_CLOEXEC) != 0)
    return 1;
  char script[128];
  snprintf(script, sizeof script, "read x <&%d; echo done >&%d", go[0], p[1]);
  char *argv[] = {"/bin/sh", "-c", script, NULL};
  if (ignore_chld) {
    struct sigaction ign = {0};
    ign.sa_handler = SIG_IGN;
    sigaction(SIGCHLD, &ign, NULL);
  }
  if (deny_child_pidfd(err) != 0)
    return 77;
  ct_token *t;
  ct_run_result r = sentinel;
  if (ct_token_new(&t, "t") < 0)
    return 2;
  *rc_out = ct_run(t, argv, 0, &r, CT_FOREVER);
  if (r.outcome != sentinel.outcome)
    return 3; /* *res must stay untouched on these errors */
  /* Let it go (if it was killed, nobody reads this: it stays in the pipe,
   * whose read end this process holds too). */
  if (write(go[1], "go\n", 3) != 3)
    return 8;
  close(go[1]);
  close(p[1]);
  int done = saw_done(p[0]); /* EOF once the command has ended */
  close(go[0]);
  ct_token_unref(t);
  return done ? 0 : 4; /* 4: it was killed */
}

/* Item 7: the child is gone before its pidfd could be opened (ESRCH:
 * reaped, by the kernel when SIGCHLD is ignored).  ct_run() reports
 * -ECHILD (status lost, documented) and signals nothing: the old code
 * returned -ESRCH and sent SIGKILL to the bare pid, which may by then
 * belong to another process.  Simulated with a seccomp filter: the
 * command, alive and our child, must then finish unharmed. */
static int child_gone_before_pidfd(void) {
  int rc = 0;
  int r = run_denied(ESRCH, false, &rc);
  if (r != 0)
    return r;
  if (rc != -ECHILD)
    return 5;
  int status;
  if (waitpid(-1, &status, 0) < 0 || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0)
    return 6; /* it was signalled */
  return 0;
}

/* Item 7, the class: no pidfd after the spawn for another reason (no
 * descriptor) while SIGCHLD is ignored: the kernel reaps the child the
 * moment it ends, so its pid is never safe to signal.  ct_run() returns
 * the error and leaves the command alone (documented). */
static int no_pidfd_with_sigchld_ignored(void) {
  int rc = 0;
  int r = run_denied(EMFILE, true, &rc);
  if (r != 0)
    return r;
  return rc == -EMFILE ? 0 : 5;
}

/* ... and with SIGCHLD at its default, the child is ours and unreaped, so
 * its pid is safe: ct_run() kills and reaps it, leaving no child. */
static int no_pidfd_kills_unreaped_child(void) {
  int rc = 0;
  int r = run_denied(EMFILE, false, &rc);
  if (r != 4)
    return r == 0 ? 5 : r; /* it must have been killed */
  if (rc != -EMFILE)
    return 6;
  if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
    return 7; /* a zombie was left */
  return 0;
}

static void in_child(int (*fn)(void)) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(fn());
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77)
    skip();
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_run_child_gone_before_pidfd_signals_nothing(void **state) {
  (void)state;
  in_child(child_gone_before_pidfd);
}

static void test_run_no_pidfd_sigchld_ignored_signals_nothing(void **state) {
  (void)state;
  in_child(no_pidfd_with_sigchld_ignored);
}

static void test_run_no_pidfd_kills_unreaped_child(void **state) {
  (void)state;
  in_child(no_pidfd_kills_unreaped_child);
}

/* Item 7 as reported: with SIGCHLD ignored, every ct_run() of a command
 * that exits at once gives the documented -ECHILD (its status is lost:
 * the kernel reaped it), never -ESRCH, and leaves no child. */
static void test_run_sigchld_ignored_is_echild(void **state) {
  (void)state;
  struct sigaction ign = {0}, old;
  ign.sa_handler = SIG_IGN;
  sigaction(SIGCHLD, &ign, &old);
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  char *argv[] = {"/bin/true", NULL};
  for (int i = 0; i < 50; i++) {
    ct_run_result r = sentinel;
    ASSERT_ERR(ct_run(t, argv, 0, &r, CT_FOREVER), -ECHILD);
    assert_untouched(&r);
  }
  sigaction(SIGCHLD, &old, NULL);
  ct_token_unref(t);
}

/* Issue 13, item 3: a forked child that triggers its copy of t must not
 * cancel the parent's ct_process_wait() on that child: the parent's t is
 * not triggered, so the wait times out (it returned -ECANCELED: the
 * shared eventfd was readable), then reaps the child normally. */
static void test_fork_child_trigger_does_not_cancel_process_wait(void **state) {
  (void)state;
  ct_token *t;
  int go[2], done[2];
  ASSERT_OK(ct_token_new(&t, "t"));
  assert_true(ct_token_fd(t) >= 0);
  assert_int_equal(pipe(go), 0);
  assert_int_equal(pipe(done), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char c = 'x';
    int rc = ct_token_trigger(t) == 1 ? 0 : 10;
    if (write(done[1], &c, 1) != 1)
      rc = 11;
    struct pollfd pg = {go[0], POLLIN, 0}; /* limit: against a lost parent */
    if (poll(&pg, 1, 60000) != 1 || read(go[0], &c, 1) != 1)
      rc = 12;
    _exit(rc);
  }
  char c;
  assert_int_equal(read(done[0], &c, 1), 1);
  assert_false(ct_token_triggered(t));
  ASSERT_ERR(ct_process_wait(t, pid, ct_deadline_after(20 * MS)), -ETIMEDOUT);
  ASSERT_ERR(ct_process_wait(t, pid, 0), -ETIMEDOUT);
  assert_int_equal(write(go[1], "x", 1), 1);
  int status = ct_process_wait(t, pid, CT_FOREVER);
  assert_true(status >= 0);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  for (int i = 0; i < 2; i++) {
    close(go[i]);
    close(done[i]);
  }
  ct_token_unref(t);
}

#define T(f) cmocka_unit_test_teardown(f, no_zombies)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_wait_bad_input),
      T(test_wait_exit_status),
      T(test_wait_cancel_and_timeout),
      T(test_wait_cancelled_leaves_zombie),
      T(test_run_bad_input),
      T(test_run_exit_codes),
      T(test_run_cannot_start),
      T(test_run_already_triggered),
      T(test_run_sigterm),
      T(test_run_sigterm_handled),
      T(test_run_sigkill_after_grace),
      T(test_run_deadline),
      T(test_run_many_cancelled_by_one_trigger),
      T(test_run_resets_ignored_term_and_pipe),
      T(test_run_no_descriptor),
      T(test_no_pidfd_gives_enosys),
      T(test_process_wait_on_thread_id_is_esrch),
      T(test_run_child_gone_before_pidfd_signals_nothing),
      T(test_run_no_pidfd_sigchld_ignored_signals_nothing),
      T(test_run_no_pidfd_kills_unreaped_child),
      T(test_run_sigchld_ignored_is_echild),
      T(test_fork_child_trigger_does_not_cancel_process_wait),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
