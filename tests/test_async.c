/* SPDX-License-Identifier: MIT
 *
 * test_async.c -- ct_token_trigger_async() from a real signal handler:
 * the token is triggered when the handler returns, its waiters wake, and
 * its descendants, descriptor and callbacks are handled by the library
 * thread, never inside the handler.
 */
#include "test_util.h"

#include <signal.h>
#include <unistd.h>

static ct_token *handler_token;
static _Atomic int handler_result = -99;

static void on_usr1(int sig) {
  atomic_store(&handler_result,
               ct_token_trigger_async(handler_token, CT_REASON_SIGNAL, sig));
}

struct seen {
  _Atomic int ran;
  pthread_t thread;
  ct_token *done; /* triggered by the callback, so the test can wait */
};
static void note_cb(ct_token *t, void *arg) {
  (void)t;
  struct seen *s = arg;
  s->thread = pthread_self();
  atomic_store(&s->ran, 1);
  ct_token_trigger(s->done);
}

/* Must run first: before ct_async_init() the call refuses and touches
 * nothing. */
static void test_refuses_before_init(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_ERR(ct_token_trigger_async(t, CT_REASON_SIGNAL, SIGINT), -EAGAIN);
  assert_false(ct_token_triggered(t));
  ASSERT_ERR(ct_token_trigger_async(NULL, CT_REASON_SIGNAL, 1), -EINVAL);
  ct_token_unref(t);
}

static void test_trigger_from_signal_handler(void **state) {
  (void)state;
  ASSERT_OK(ct_async_init());
  ASSERT_OK(ct_async_init()); /* idempotent */
  ct_token *t, *child;
  ct_callback cb = {0}, ccb = {0};
  struct seen s = {0}, cs = {0};
  ASSERT_OK(ct_token_new(&t, "sigtoken"));
  ASSERT_OK(ct_token_new_child(&child, "child", t));
  ASSERT_OK(ct_token_new(&s.done, "done"));
  ASSERT_OK(ct_token_new(&cs.done, "cdone"));
  ASSERT_OK(ct_callback_register(&cb, t, note_cb, &s));
  ASSERT_OK(ct_callback_register(&ccb, child, note_cb, &cs));
  int fd = ct_token_fd(child);
  assert_true(fd >= 0);
  handler_token = t;
  struct sigaction sa = {0}, old;
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);

  errno = 1234;
  assert_int_equal(raise(SIGUSR1), 0); /* runs the handler before returning */
  assert_int_equal(handler_result, 1);
  assert_true(ct_token_triggered(t)); /* at once */
  int detail;
  assert_int_equal(ct_token_reason(t, &detail), CT_REASON_SIGNAL);
  assert_int_equal(detail, SIGUSR1);
  /* the rest arrives from the library thread */
  struct pollfd p = {fd, POLLIN, 0};
  assert_int_equal(poll(&p, 1, -1), 1);
  ASSERT_OK(ct_token_wait(child, CT_FOREVER));
  assert_ptr_equal(ct_token_triggered_token(child), t);
  /* The child is marked triggered before its callbacks run: wait for them
   * to say they ran, rather than racing them with unregister. */
  ASSERT_OK(ct_token_wait(s.done, CT_FOREVER));
  ASSERT_OK(ct_token_wait(cs.done, CT_FOREVER));
  ASSERT_ERR(ct_callback_unregister(&cb), 1);
  ASSERT_ERR(ct_callback_unregister(&ccb), 1);
  assert_int_equal(s.ran, 1);
  assert_int_equal(cs.ran, 1);
  /* run by the library thread, not in the handler (this thread) */
  assert_false(pthread_equal(s.thread, pthread_self()));
  assert_false(pthread_equal(cs.thread, pthread_self()));
  /* a second signal finds it triggered */
  assert_int_equal(raise(SIGUSR1), 0);
  assert_int_equal(handler_result, 0);
  sigaction(SIGUSR1, &old, NULL);
  ct_token_unref(s.done);
  ct_token_unref(cs.done);
  ct_token_unref(child);
  ct_token_unref(t);
}

/* The same with no callback, child or descriptor: nothing is queued. */
static void test_plain_token_from_handler(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "plain"));
  handler_token = t;
  struct sigaction sa = {0}, old;
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, &old);
  raise(SIGUSR1);
  assert_true(ct_token_triggered(t));
  sigaction(SIGUSR1, &old, NULL);
  ct_token_unref(t);
}

/* Trigger with an explicit cause: the proxy case. */
static void test_trigger_with_cause(void **state) {
  (void)state;
  /* Earlier tests' tokens may still be freed by the library thread (it
   * holds a reference while it drains), so count from here. */
  long base = atomic_load(&t_live_bytes);
  ct_token *proxy, *child, *remote;
  ASSERT_OK(ct_token_new(&proxy, "main"));
  ASSERT_OK(ct_token_new_child(&child, "local", proxy));
  ASSERT_OK(ct_token_new(&remote, "shutdown"));
  ASSERT_ERR(ct_token_trigger_with_cause(NULL, remote, CT_REASON_TRIGGER, 0), -EINVAL);
  ASSERT_ERR(ct_token_trigger_with_cause(proxy, NULL, CT_REASON_TRIGGER, 0), -EINVAL);
  assert_int_equal(ct_token_trigger_with_cause(proxy, remote, CT_REASON_OWNER_LOST, 0), 1);
  ct_token_unref(remote); /* proxy keeps it */
  assert_int_equal(ct_token_trigger_with_cause(proxy, proxy, CT_REASON_TRIGGER, 0), 0);
  assert_string_equal(ct_token_name(ct_token_triggered_token(proxy)), "shutdown");
  assert_string_equal(ct_token_name(ct_token_triggered_token(child)), "shutdown");
  assert_int_equal(ct_token_reason(child, NULL), CT_REASON_OWNER_LOST);
  char buf[64];
  ct_token_message(child, buf, sizeof buf);
  assert_string_equal(buf, "Cancellation requested by shutdown token");
  ct_token_unref(proxy);
  ct_token_unref(child); /* frees child, proxy, then remote */
  /* losing the claim drops the extra reference */
  ct_token *a, *b;
  ASSERT_OK(ct_token_new(&a, "a"));
  ASSERT_OK(ct_token_new(&b, "b"));
  ct_token_trigger(a);
  assert_int_equal(ct_token_trigger_with_cause(a, b, CT_REASON_TRIGGER, 0), 0);
  ct_token_unref(a);
  ct_token_unref(b);
  assert_true(atomic_load(&t_live_bytes) <= base); /* may drop meanwhile */
}

/* Issue 13, item 4: library threads run callbacks on an ordinary thread
 * stack.  This callback puts 1 MiB of locals on it and touches every page
 * (on the old 64 KiB stack about 60 KiB was enough to crash): the callback
 * is t_deep_stack_cb() in test_util.h. */
static void test_callback_on_async_thread_gets_ordinary_stack(void **state) {
  (void)state;
  ASSERT_OK(ct_async_init());
  ct_token *t;
  ct_callback cb = {0};
  struct t_deep_stack d = {0};
  ASSERT_OK(ct_token_new(&d.done, "done"));
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_OK(ct_callback_register(&cb, t, t_deep_stack_cb, &d));
  handler_token = t;
  struct sigaction sa = {0}, old;
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
  assert_int_equal(raise(SIGUSR1), 0);
  assert_int_equal(handler_result, 1);
  ASSERT_OK(ct_token_wait(d.done, CT_FOREVER));
  assert_int_equal(atomic_load(&d.sum), T_DEEP_STACK_SUM);
  ASSERT_ERR(ct_callback_unregister(&cb), 1);
  sigaction(SIGUSR1, &old, NULL);
  ct_token_unref(t);
  ct_token_unref(d.done);
}

int main(void) {
  t_use_counting_allocator();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refuses_before_init),
      cmocka_unit_test(test_trigger_from_signal_handler),
      cmocka_unit_test(test_plain_token_from_handler),
      cmocka_unit_test(test_trigger_with_cause),
      cmocka_unit_test(test_callback_on_async_thread_gets_ordinary_stack),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
