/* SPDX-License-Identifier: MIT
 *
 * signal_child.c -- the program test_signal starts and sends real signals
 * to.  It hooks a signal to a token, says "ready" on standard output, and
 * reports what the signal did.  The parent reads the lines and decides.
 *
 *   signal_child int   SIGINT cancels three workers chained to the token;
 *                      the callback runs outside the handler's thread;
 *                      after ct_signal_unhook() a second SIGINT kills the
 *                      process (the default action is back).
 *   signal_child once  SIGTERM hooked with CT_SIGNAL_ONCE: the first one
 *                      triggers the token, the second kills the process.
 *
 * Exit status 0 is never expected: the last signal kills it.  Status 1 and
 * a line starting with "error:" mean a check failed; status 2 means the
 * final signal did not kill it within 60 s.
 */
#include <canceltoken_os.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NWORKERS 3

static _Noreturn void die(const char *what, int err) {
  printf("error: %s: %s\n", what, ct_strerror(err));
  fflush(stdout);
  exit(1);
}

static void say(const char *line) {
  printf("%s\n", line);
  fflush(stdout);
}

/* Wait until t's descriptor is readable, with signo blocked except while
 * ppoll(2) sleeps: the classic way for a thread to wait for a signal, since
 * the signal can then only arrive while the thread waits.  (A handler that
 * interrupts the thread anywhere else is fine without sanitizers, but
 * ThreadSanitizer defers handlers and, very rarely, drops one that arrives
 * just before the thread starts to wait.) */
static void wait_unblocking(ct_token *t, int signo) {
  sigset_t during;
  pthread_sigmask(SIG_SETMASK, NULL, &during);
  sigdelset(&during, signo);
  int fd = ct_token_fd(t);
  if (fd < 0)
    die("ct_token_fd", fd);
  struct pollfd p = {fd, POLLIN, 0};
  while (ppoll(&p, 1, NULL, &during) <= 0) /* EINTR: the signal arrived */
    ;
}

/* Block for the final signal, which should kill us. */
static void await_death(void) {
  ct_token *never;
  int rc = ct_token_new(&never, "never");
  if (rc < 0)
    die("ct_token_new(never)", rc);
  ct_sleep(never, ct_deadline_after(INT64_C(60) * 1000000000));
  say("error: still alive");
  exit(2);
}

/* ---- mode "int" ---- */

static ct_token *sigtok;      /* triggered by SIGINT */
static ct_token *receiver_up; /* the receiver thread has unblocked SIGINT */
static ct_token *cb_done;     /* the callback has run */
static pthread_t receiver_thread;
static pthread_t receiver_id; /* written by the receiver itself */
static _Atomic int cb_reason, cb_detail, cb_in_receiver = -1;

/* The only thread that ever unblocks SIGINT, so the handler runs here. */
static void *receiver_main(void *arg) {
  (void)arg;
  receiver_id = pthread_self(); /* read by the callback, after the signal */
  ct_token_trigger(receiver_up);
  wait_unblocking(sigtok, SIGINT);
  return NULL;
}

static void *worker_main(void *arg) {
  ct_token *mine = arg;
  /* Work until cancelled. */
  return (void *)(intptr_t)ct_sleep(mine, CT_FOREVER);
}

static void on_cancel(ct_token *t, void *arg) {
  (void)arg;
  int detail;
  atomic_store(&cb_reason, (int)ct_token_reason(t, &detail));
  atomic_store(&cb_detail, detail);
  atomic_store(&cb_in_receiver,
               pthread_equal(pthread_self(), receiver_id) ? 1 : 0);
  ct_token_trigger(cb_done);
}

static int mode_int(void) {
  ct_token *work[NWORKERS];
  pthread_t workers[NWORKERS];
  ct_callback cb = {0}; /* zeroed before first use */
  sigset_t set;
  int rc;

  /* Block SIGINT before any thread exists, so that every thread inherits
   * the mask; the receiver unblocks it only inside ppoll(2). */
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  if ((rc = ct_token_new(&sigtok, "ctrl-c")) < 0 ||
      (rc = ct_token_new(&receiver_up, "receiver-up")) < 0 ||
      (rc = ct_token_new(&cb_done, "callback-done")) < 0)
    die("ct_token_new", rc);
  if ((rc = ct_signal_hook(SIGINT, sigtok, 0)) < 0)
    die("ct_signal_hook", rc);
  if ((rc = ct_callback_register(&cb, sigtok, on_cancel, NULL)) != 0)
    die("ct_callback_register", rc);
  for (int i = 0; i < NWORKERS; i++) {
    if ((rc = ct_token_new_child(&work[i], "worker", sigtok)) < 0)
      die("ct_token_new_child", rc);
    if ((rc = pthread_create(&workers[i], NULL, worker_main, work[i])) != 0)
      die("pthread_create", -rc);
  }
  if ((rc = pthread_create(&receiver_thread, NULL, receiver_main, NULL)) != 0)
    die("pthread_create", -rc);
  ct_token_wait(receiver_up, CT_FOREVER);
  say("ready");

  int cancelled = 0;
  for (int i = 0; i < NWORKERS; i++) {
    void *ret;
    pthread_join(workers[i], &ret);
    cancelled += (int)(intptr_t)ret == -ECANCELED;
  }
  printf("%d of %d workers cancelled\n", cancelled, NWORKERS);

  int detail;
  ct_reason reason = ct_token_reason(work[0], &detail);
  printf("worker token: reason %d, detail %d, triggered by %s\n", (int)reason,
         detail, ct_token_name(ct_token_triggered_token(work[0])));

  ct_token_wait(cb_done, CT_FOREVER);
  printf("callback: reason %d, detail %d, in the handler's thread: %s\n",
         atomic_load(&cb_reason), atomic_load(&cb_detail),
         atomic_load(&cb_in_receiver) ? "yes" : "no");

  pthread_join(receiver_thread, NULL);
  ct_callback_unregister(&cb);
  for (int i = 0; i < NWORKERS; i++)
    ct_token_unref(work[i]);
  ct_token_unref(sigtok); /* the hook still holds its own reference */
  if ((rc = ct_signal_unhook(SIGINT)) < 0)
    die("ct_signal_unhook", rc);
  struct sigaction now;
  sigaction(SIGINT, NULL, &now);
  printf("SIGINT disposition after unhook: %s\n",
         now.sa_handler == SIG_DFL ? "default" : "other");
  ct_token_unref(receiver_up);
  ct_token_unref(cb_done);
  say("unhooked");

  /* The parent sends SIGINT again: with the default action back, it kills
   * us as soon as it is unblocked. */
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  await_death();
  return 1;
}

/* ---- mode "once" ---- */

static int mode_once(void) {
  ct_token *t;
  int rc;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  if ((rc = ct_token_new(&t, "term")) < 0)
    die("ct_token_new", rc);
  if ((rc = ct_signal_hook(SIGTERM, t, CT_SIGNAL_ONCE)) < 0)
    die("ct_signal_hook", rc);
  say("ready");
  wait_unblocking(t, SIGTERM);
  int detail;
  ct_reason reason = ct_token_reason(t, &detail);
  printf("term token: reason %d, detail %d\n", (int)reason, detail);
  struct sigaction now;
  sigaction(SIGTERM, NULL, &now);
  printf("SIGTERM disposition after the first one: %s\n",
         now.sa_handler == SIG_DFL ? "default" : "other");
  say("armed");
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  await_death();
  return 1;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "int") == 0)
    return mode_int();
  if (argc == 2 && strcmp(argv[1], "once") == 0)
    return mode_once();
  fprintf(stderr, "usage: signal_child int|once\n");
  return 1;
}
