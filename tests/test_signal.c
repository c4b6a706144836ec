/* SPDX-License-Identifier: MIT
 *
 * test_signal.c -- ct_signal_hook() and ct_signal_unhook(): bad input, one
 * hook per signal, the previous disposition restored exactly, delivery in
 * this process with raise(), a hook racing with a stream of signals, and
 * real signals sent with kill() to a real child process (signal_child).
 */
#include "test_util.h"

#include "canceltoken_os.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SIGNAL_CHILD
#error "SIGNAL_CHILD must name the signal_child program"
#endif

/* ---- bad input and one hook per signal ---- */

static void test_bad_input(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  const int bad[] = {0, -1, NSIG, 1000, SIGKILL, SIGSTOP,
                     SIGSEGV, SIGBUS, SIGFPE, SIGILL};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ASSERT_ERR(ct_signal_hook(bad[i], t, 0), -EINVAL);
    ASSERT_ERR(ct_signal_unhook(bad[i]), -EINVAL);
  }
  /* glibc keeps SIGRTMIN-2 and SIGRTMIN-1 (32, 33) for itself. */
  ASSERT_ERR(ct_signal_hook(SIGRTMIN - 1, t, 0), -EINVAL);
  ASSERT_ERR(ct_signal_hook(SIGUSR1, NULL, 0), -EINVAL);
  ASSERT_ERR(ct_signal_hook(SIGUSR1, t, 2), -EINVAL);
  ASSERT_ERR(ct_signal_hook(SIGUSR1, t, ~0u), -EINVAL);
  ASSERT_ERR(ct_signal_unhook(SIGUSR1), -ENOENT); /* never hooked */
  /* A failed hook changed nothing. */
  struct sigaction now;
  sigaction(SIGUSR1, NULL, &now);
  assert_true(now.sa_handler == SIG_DFL);
  ct_token_unref(t);
}

static void test_second_hook_is_ebusy(void **state) {
  (void)state;
  ct_token *a, *b;
  ASSERT_OK(ct_token_new(&a, "a"));
  ASSERT_OK(ct_token_new(&b, "b"));
  ASSERT_OK(ct_signal_hook(SIGUSR1, a, 0));
  ASSERT_ERR(ct_signal_hook(SIGUSR1, b, 0), -EBUSY);
  ASSERT_ERR(ct_signal_hook(SIGUSR1, a, 0), -EBUSY); /* same token too */
  ASSERT_OK(ct_signal_hook(SIGUSR2, a, 0)); /* one token, two signals */
  ASSERT_OK(ct_signal_unhook(SIGUSR1));
  ASSERT_ERR(ct_signal_unhook(SIGUSR1), -ENOENT);
  ASSERT_OK(ct_signal_hook(SIGUSR1, b, 0)); /* free again */
  ASSERT_OK(ct_signal_unhook(SIGUSR1));
  ASSERT_OK(ct_signal_unhook(SIGUSR2));
  ct_token_unref(a);
  ct_token_unref(b);
}

/* ---- the previous disposition comes back exactly ---- */

static _Atomic int user_handler_calls;

static void user_handler(int signo, siginfo_t *info, void *ctx) {
  (void)info;
  (void)ctx;
  if (signo == SIGUSR1)
    atomic_fetch_add(&user_handler_calls, 1);
}

static void assert_same_action(const struct sigaction *a,
                               const struct sigaction *b) {
  assert_int_equal(a->sa_flags, b->sa_flags);
  if (a->sa_flags & SA_SIGINFO)
    assert_ptr_equal(a->sa_sigaction, b->sa_sigaction);
  else
    assert_ptr_equal(a->sa_handler, b->sa_handler);
  /* Member by member: glibc copies only the kernel's part of sigset_t. */
  for (int s = 1; s < NSIG; s++)
    assert_int_equal(sigismember(&a->sa_mask, s), sigismember(&b->sa_mask, s));
}

/* Install `prev` for SIGUSR1, hook, unhook, and check the disposition read
 * back afterwards is the one read back before. */
static void hook_round_trip(const struct sigaction *prev, unsigned flags) {
  struct sigaction before, during, after;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  assert_int_equal(sigaction(SIGUSR1, prev, NULL), 0);
  assert_int_equal(sigaction(SIGUSR1, NULL, &before), 0);
  ASSERT_OK(ct_signal_hook(SIGUSR1, t, flags));
  assert_int_equal(sigaction(SIGUSR1, NULL, &during), 0);
  assert_true(during.sa_handler != before.sa_handler);
  assert_true((during.sa_flags & SA_RESTART) != 0);
  ASSERT_OK(ct_signal_unhook(SIGUSR1));
  assert_int_equal(sigaction(SIGUSR1, NULL, &after), 0);
  assert_same_action(&before, &after);
  assert_false(ct_token_triggered(t));
  ct_token_unref(t);
}

static void test_restores_previous_disposition(void **state) {
  (void)state;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);

  sigemptyset(&sa.sa_mask);
  sa.sa_handler = SIG_DFL;
  hook_round_trip(&sa, 0);

  sa.sa_handler = SIG_IGN;
  hook_round_trip(&sa, 0);
  raise(SIGUSR1); /* still ignored: we survive it */

  /* A user handler with its own flags and mask. */
  sa.sa_sigaction = user_handler;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGUSR2);
  sigaddset(&sa.sa_mask, SIGHUP);
  sigaddset(&sa.sa_mask, SIGRTMIN + 3);
  hook_round_trip(&sa, 0);
  hook_round_trip(&sa, CT_SIGNAL_ONCE);
  atomic_store(&user_handler_calls, 0);
  raise(SIGUSR1);
  assert_int_equal(atomic_load(&user_handler_calls), 1);

  sa.sa_handler = SIG_DFL;
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
}

/* ---- delivery in this process ---- */

struct seen {
  ct_token *done; /* triggered by the callback */
  pthread_t thread;
  _Atomic int reason, detail;
};

static void record(ct_token *t, void *arg) {
  struct seen *s = arg;
  int detail;
  atomic_store(&s->reason, (int)ct_token_reason(t, &detail));
  atomic_store(&s->detail, detail);
  s->thread = pthread_self(); /* published by the trigger of s->done */
  ct_token_trigger(s->done);
}

static void test_raise_triggers_token_and_chain(void **state) {
  (void)state;
  ct_token *t, *child;
  struct seen seen = {0};
  ct_callback cb = {0};
  ASSERT_OK(ct_token_new(&t, "sig"));
  ASSERT_OK(ct_token_new(&seen.done, "done"));
  ASSERT_OK(ct_token_new_child(&child, "work", t));
  ASSERT_ERR(ct_callback_register(&cb, t, record, &seen), 0);
  ASSERT_OK(ct_signal_hook(SIGUSR1, t, 0));

  errno = 4242;
  /* raise() runs the handler in this thread before it returns. */
  assert_int_equal(raise(SIGUSR1), 0);
  assert_int_equal(errno, 4242); /* the handler preserved it */
  assert_true(ct_token_triggered(t));

  /* The chain and the callback are the async thread's work. */
  ASSERT_OK(ct_token_wait(child, CT_FOREVER));
  ASSERT_OK(ct_token_wait(seen.done, CT_FOREVER));
  int detail = -1;
  assert_int_equal(ct_token_reason(child, &detail), CT_REASON_SIGNAL);
  assert_int_equal(detail, SIGUSR1);
  assert_ptr_equal(ct_token_triggered_token(child), t);
  assert_int_equal(atomic_load(&seen.reason), CT_REASON_SIGNAL);
  assert_int_equal(atomic_load(&seen.detail), SIGUSR1);
  /* Not inside the handler, which ran in this thread. */
  assert_false(pthread_equal(seen.thread, pthread_self()));
  char msg[64];
  assert_true(ct_token_message(child, msg, sizeof msg) > 0);
  assert_string_equal(msg, "Cancellation requested by sig token");

  /* A second delivery finds the token triggered and changes nothing. */
  raise(SIGUSR1);
  assert_int_equal(ct_token_reason(t, &detail), CT_REASON_SIGNAL);
  assert_int_equal(detail, SIGUSR1);

  ASSERT_OK(ct_signal_unhook(SIGUSR1));
  assert_true(ct_token_triggered(t)); /* stays triggered */
  assert_int_equal(ct_callback_unregister(&cb), 1);
  ct_token_unref(child);
  ct_token_unref(seen.done);
  ct_token_unref(t);
}

static void test_one_token_two_signals(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "stop"));
  ASSERT_OK(ct_signal_hook(SIGUSR1, t, 0));
  ASSERT_OK(ct_signal_hook(SIGUSR2, t, 0));
  raise(SIGUSR2);
  int detail;
  assert_int_equal(ct_token_reason(t, &detail), CT_REASON_SIGNAL);
  assert_int_equal(detail, SIGUSR2); /* the signal that arrived */
  ASSERT_OK(ct_signal_unhook(SIGUSR1));
  ASSERT_OK(ct_signal_unhook(SIGUSR2));
  ct_token_unref(t);
}

/* Hooking a token that is already triggered is allowed; the signal then
 * changes nothing, its reason stays the first one. */
static void test_hook_triggered_token(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "early"));
  ASSERT_ERR(ct_token_trigger(t), 1);
  ASSERT_OK(ct_signal_hook(SIGUSR1, t, 0));
  raise(SIGUSR1);
  assert_int_equal(ct_token_reason(t, NULL), CT_REASON_TRIGGER);
  ASSERT_OK(ct_signal_unhook(SIGUSR1));
  ct_token_unref(t);
}

/* The hook holds its own reference: the caller may drop its own at once
 * (the owner is gone), and the handler still has a valid token; unhook
 * frees it.  AddressSanitizer turns a missing reference into a failure. */
static void test_hook_keeps_token_alive(void **state) {
  (void)state;
  ct_token *t, *child;
  ASSERT_OK(ct_token_new(&t, "orphan"));
  ASSERT_OK(ct_signal_hook(SIGUSR1, t, 0));
  ASSERT_OK(ct_token_new_child(&child, "late", t)); /* work for the thread */
  ct_token_unref(t);
  raise(SIGUSR1);
  ASSERT_OK(ct_token_wait(child, CT_FOREVER));
  ct_token_unref(child);
  ASSERT_OK(ct_signal_unhook(SIGUSR1));
}

static void test_once_restores_default_on_delivery(void **state) {
  (void)state;
  ct_token *t;
  struct sigaction sa, now;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = user_handler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);

  ASSERT_OK(ct_token_new(&t, "once"));
  ASSERT_OK(ct_signal_hook(SIGUSR1, t, CT_SIGNAL_ONCE));
  raise(SIGUSR1);
  assert_true(ct_token_triggered(t));
  sigaction(SIGUSR1, NULL, &now);
  assert_true(now.sa_handler == SIG_DFL); /* the next one would kill */
  ASSERT_OK(ct_signal_unhook(SIGUSR1));   /* back to the user handler */
  sigaction(SIGUSR1, NULL, &now);
  assert_ptr_equal(now.sa_sigaction, user_handler);
  ct_token_unref(t);

  sa.sa_handler = SIG_DFL;
  sa.sa_flags = 0;
  sigaction(SIGUSR1, &sa, NULL);
}

/* ---- hook and unhook while signals keep arriving ---- */

static _Atomic int stop_sending;

static void *sender(void *arg) {
  (void)arg;
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  pthread_sigmask(SIG_UNBLOCK, &usr2, NULL); /* the creator blocks it */
  while (!atomic_load(&stop_sending))
    kill(getpid(), SIGUSR2);
  return NULL;
}

/* Every round creates a fresh token (with a child, so the async thread has
 * work and a reference), hooks it, waits until a signal has triggered it,
 * drops the caller's reference and unhooks, while another thread sends
 * SIGUSR2 non-stop.  This thread blocks SIGUSR2, so the handlers run in
 * the sender, concurrently with the unhook.  A handler that used a token
 * after unhook freed it shows up under the sanitizers. */
static void test_unhook_races_with_delivery(void **state) {
  (void)state;
  enum { ROUNDS = 2000 };
  struct sigaction ign = {0}, dfl = {0};
  sigset_t usr2, old;
  ign.sa_handler = SIG_IGN;
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGUSR2, &ign, NULL); /* between hooks, signals are dropped */
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &usr2, &old);

  pthread_t th;
  atomic_store(&stop_sending, 0);
  assert_int_equal(pthread_create(&th, NULL, sender, NULL), 0);
  for (int round = 0; round < ROUNDS; round++) {
    ct_token *t, *child;
    ASSERT_OK(ct_token_new(&t, "round"));
    ASSERT_OK(ct_token_new_child(&child, "child", t));
    ASSERT_OK(ct_signal_hook(SIGUSR2, t, 0));
    ct_token_unref(t);
    ASSERT_OK(ct_token_wait(child, CT_FOREVER)); /* the sender never stops */
    int detail;
    assert_int_equal(ct_token_reason(child, &detail), CT_REASON_SIGNAL);
    assert_int_equal(detail, SIGUSR2);
    ASSERT_OK(ct_signal_unhook(SIGUSR2)); /* handlers still running */
    ct_token_unref(child);
  }
  atomic_store(&stop_sending, 1);
  pthread_join(th, NULL);
  sigaction(SIGUSR2, &dfl, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- real signals to a real child process ---- */

struct child {
  pid_t pid;
  int out; /* read end of its standard output */
};

static void start_child(struct child *c, const char *mode) {
  int p[2];
  posix_spawn_file_actions_t fa;
  assert_int_equal(pipe(p), 0);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, p[0]);
  posix_spawn_file_actions_addclose(&fa, p[1]);
  char *argv[] = {(char *)SIGNAL_CHILD, (char *)mode, NULL};
  assert_int_equal(posix_spawn(&c->pid, SIGNAL_CHILD, &fa, NULL, argv, environ),
                   0);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  c->out = p[0];
}

/* Read one line (without its '\n') into buf; "" at end of file. */
static void read_line(struct child *c, char *buf, size_t size) {
  size_t n = 0;
  for (;;) {
    char ch;
    ssize_t r = read(c->out, &ch, 1);
    if (r < 0 && errno == EINTR)
      continue;
    assert_true(r >= 0);
    if (r == 0 || ch == '\n')
      break;
    assert_true(n + 1 < size);
    buf[n++] = ch;
  }
  buf[n] = '\0';
}

static void expect_line(struct child *c, const char *want) {
  char line[256];
  read_line(c, line, sizeof line);
  assert_string_equal(line, want);
}

/* Wait for the child; the pipe must be at its end. */
static int finish_child(struct child *c) {
  char line[256];
  read_line(c, line, sizeof line);
  assert_string_equal(line, ""); /* nothing more, not an error line */
  close(c->out);
  int status;
  assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
  return status;
}

static void test_sigint_to_child(void **state) {
  (void)state;
  struct child c;
  char want[128];
  start_child(&c, "int");
  expect_line(&c, "ready");
  assert_int_equal(kill(c.pid, SIGINT), 0);
  expect_line(&c, "3 of 3 workers cancelled");
  snprintf(want, sizeof want,
           "worker token: reason %d, detail %d, triggered by ctrl-c",
           CT_REASON_SIGNAL, SIGINT);
  expect_line(&c, want);
  snprintf(want, sizeof want,
           "callback: reason %d, detail %d, in the handler's thread: no",
           CT_REASON_SIGNAL, SIGINT);
  expect_line(&c, want);
  expect_line(&c, "SIGINT disposition after unhook: default");
  expect_line(&c, "unhooked");
  /* The previous (default) action is back: this one kills it. */
  assert_int_equal(kill(c.pid, SIGINT), 0);
  int status = finish_child(&c);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGINT);
}

static void test_sigterm_once_to_child(void **state) {
  (void)state;
  struct child c;
  char want[128];
  start_child(&c, "once");
  expect_line(&c, "ready");
  assert_int_equal(kill(c.pid, SIGTERM), 0);
  snprintf(want, sizeof want, "term token: reason %d, detail %d",
           CT_REASON_SIGNAL, SIGTERM);
  expect_line(&c, want);
  expect_line(&c, "SIGTERM disposition after the first one: default");
  expect_line(&c, "armed");
  assert_int_equal(kill(c.pid, SIGTERM), 0);
  int status = finish_child(&c);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGTERM);
}

/* Issue 13, item 12: the signals the C library keeps for itself (glibc:
 * 32 and 33) are refused by ct_signal_hook(), so ct_signal_unhook() says
 * -EINVAL for them, as for every signal the hook always refuses (it said
 * -ENOENT). */
static void test_unhook_reserved_signal_is_einval(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  for (int signo = 1; signo < NSIG; signo++) {
    struct sigaction probe;
    if (sigaction(signo, NULL, &probe) == 0)
      continue; /* one sigaction() accepts: not reserved */
    ASSERT_ERR(ct_signal_hook(signo, t, 0), -EINVAL);
    ASSERT_ERR(ct_signal_unhook(signo), -EINVAL);
  }
  ASSERT_ERR(ct_signal_unhook(32), -EINVAL);
  ASSERT_ERR(ct_signal_unhook(33), -EINVAL);
  ct_token_unref(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_unhook_reserved_signal_is_einval),
      cmocka_unit_test(test_second_hook_is_ebusy),
      cmocka_unit_test(test_restores_previous_disposition),
      cmocka_unit_test(test_raise_triggers_token_and_chain),
      cmocka_unit_test(test_one_token_two_signals),
      cmocka_unit_test(test_hook_triggered_token),
      cmocka_unit_test(test_hook_keeps_token_alive),
      cmocka_unit_test(test_once_restores_default_on_delivery),
      cmocka_unit_test(test_unhook_races_with_delivery),
      cmocka_unit_test(test_sigint_to_child),
      cmocka_unit_test(test_sigterm_once_to_child),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
