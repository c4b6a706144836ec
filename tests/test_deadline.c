/* SPDX-License-Identifier: MIT
 *
 * test_deadline.c -- tokens that trigger themselves at a monotonic time:
 * reason, callbacks in the timer thread, no keep-alive, earliest deadline
 * wins, many deadlines, and deadlines after fork().
 */
#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

static void test_deadline_fires(void **state) {
  (void)state;
  ct_token *t;
  int64_t when = ct_deadline_after(20 * MS);
  ASSERT_OK(ct_token_new_deadline(&t, "timeout", when));
  /* Not "not triggered yet": this thread may be descheduled past `when`.
   * What must hold is that it is never triggered early. */
  if (ct_token_triggered(t))
    assert_true(ct_now() >= when);
  ASSERT_OK(ct_token_wait(t, CT_FOREVER));
  assert_true(ct_now() >= when); /* never early */
  assert_int_equal(ct_token_reason(t, NULL), CT_REASON_DEADLINE);
  assert_ptr_equal(ct_token_triggered_token(t), t);
  char buf[64];
  ct_token_message(t, buf, sizeof buf);
  assert_string_equal(buf, "Cancellation requested by timeout token");
  ct_token_unref(t);
}

struct seen {
  pthread_t thread;
  _Atomic int ran;
  ct_token *done; /* triggered by the callback, so the test can wait */
};
static void note_cb(ct_token *t, void *arg) {
  (void)t;
  struct seen *s = arg;
  s->thread = pthread_self();
  atomic_store(&s->ran, 1);
  ct_token_trigger(s->done);
}

/* The deadline thread, not this one, must run the callbacks, so the
 * deadline must still be ahead when ct_token_set_deadline() takes it.  A
 * thread descheduled past it gets 1 (triggered in the call, callbacks run
 * here, which is correct too): that is checked, and the test starts again
 * with a delay four times longer. */
static void test_deadline_runs_callbacks_fd_and_children(void **state) {
  (void)state;
  ct_token *t, *child;
  ct_callback cb = {0};
  struct seen s = {0};
  int fd;
  for (int64_t delay = 10 * MS;; delay *= 4) {
    memset(&s, 0, sizeof s);
    memset(&cb, 0, sizeof cb);
    ASSERT_OK(ct_token_new(&t, "t"));
    ASSERT_OK(ct_token_new_child(&child, "child", t));
    ASSERT_OK(ct_token_new(&s.done, "done"));
    ASSERT_OK(ct_callback_register(&cb, child, note_cb, &s));
    fd = ct_token_fd(child);
    assert_true(fd >= 0);
    int r = ct_token_set_deadline(t, ct_deadline_after(delay));
    if (r == 0)
      break;
    ASSERT_ERR(r, 1);
    assert_true(ct_token_triggered(child));
    assert_int_equal(s.ran, 1);
    assert_true(pthread_equal(s.thread, pthread_self()));
    ASSERT_ERR(ct_callback_unregister(&cb), 1);
    ct_token_unref(s.done);
    ct_token_unref(child);
    ct_token_unref(t);
  }
  struct pollfd p = {fd, POLLIN, 0};
  assert_int_equal(poll(&p, 1, -1), 1);
  ASSERT_OK(ct_token_wait(child, CT_FOREVER));
  assert_int_equal(ct_token_reason(child, NULL), CT_REASON_DEADLINE);
  assert_ptr_equal(ct_token_triggered_token(child), t);
  /* The child is marked triggered before its callbacks run: wait for the
   * callback to say it ran rather than race it with unregister. */
  ASSERT_OK(ct_token_wait(s.done, CT_FOREVER));
  ASSERT_ERR(ct_callback_unregister(&cb), 1);
  ct_token_unref(s.done);
  assert_int_equal(s.ran, 1);
  assert_false(pthread_equal(s.thread, pthread_self()));
  ct_token_unref(child);
  ct_token_unref(t);
}

static void test_earliest_deadline_stays(void **state) {
  (void)state;
  ct_token *a, *b;
  ASSERT_OK(ct_token_new(&a, "a"));
  ASSERT_OK(ct_token_new(&b, "b"));
  ASSERT_OK(ct_token_set_deadline(a, ct_deadline_after(3600 * 1000 * MS)));
  ASSERT_ARMED(ct_token_set_deadline(a, ct_deadline_after(10 * MS)));
  ASSERT_ARMED(ct_token_set_deadline(b, ct_deadline_after(10 * MS)));
  ASSERT_OK(ct_token_set_deadline(b, ct_deadline_after(3600 * 1000 * MS)));
  ASSERT_OK(ct_token_wait(a, CT_FOREVER));
  ASSERT_OK(ct_token_wait(b, CT_FOREVER));
  ct_token_unref(a);
  ct_token_unref(b);
}

static void test_past_deadline_triggers_in_call(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  assert_int_equal(ct_token_set_deadline(t, ct_now()), 1);
  assert_true(ct_token_triggered(t));
  assert_int_equal(ct_token_set_deadline(t, ct_deadline_after(MS)), 0);
  ct_token_unref(t);
  ASSERT_OK(ct_token_new_deadline(&t, "t", 0));
  assert_true(ct_token_triggered(t));
  assert_int_equal(ct_token_reason(t, NULL), CT_REASON_DEADLINE);
  ct_token_unref(t);
}

/* A deadline does not keep its token alive, and the token's memory,
 * heap entry included, is released by the last unref. */
static void test_unref_cancels_deadline(void **state) {
  (void)state;
  ct_token *warm;
  ASSERT_OK(ct_token_new(&warm, "warm")); /* starts the thread, sizes the heap */
  ASSERT_OK(ct_token_set_deadline(warm, ct_deadline_after(3600 * 1000 * MS)));
  long before = atomic_load(&t_live_bytes);
  for (int i = 0; i < 1000; i++) {
    ct_token *t;
    /* An hour ahead, so that the deadline thread never holds one of these
     * (it takes a reference while it triggers a token): only the unref
     * can release them.  (1-10 ms deadlines made the check depend on this
     * thread not being descheduled between the new and the unref.) */
    ASSERT_OK(ct_token_new_deadline(&t, "t", ct_deadline_after(3600 * 1000 * MS + (i % 10) * MS)));
    ct_token_unref(t);
  }
  /* <=, not ==: the deadline thread may still be freeing the previous
   * test's tokens; a leak of these 1000 tokens would show as growth. */
  assert_true(atomic_load(&t_live_bytes) <= before);
  ct_token_unref(warm);
}

static void test_many_deadlines(void **state) {
  (void)state;
  enum { N = 10000 };
  ct_token **t = malloc(N * sizeof *t);
  int64_t base = ct_now();
  for (int i = 0; i < N; i++) {
    char nm[16];
    snprintf(nm, sizeof nm, "d%d", i);
    /* scattered over 0..50 ms, in no particular order */
    ASSERT_OK(ct_token_new_deadline(&t[i], nm, base + ((i * 7919) % 50) * MS + MS));
  }
  for (int i = 0; i < N; i++) {
    ASSERT_OK(ct_token_wait(t[i], CT_FOREVER));
    assert_int_equal(ct_token_reason(t[i], NULL), CT_REASON_DEADLINE);
  }
  for (int i = 0; i < N; i++)
    ct_token_unref(t[i]);
  free(t);
}

static void test_deadline_after_fork(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new_deadline(&t, "parent", ct_deadline_after(3600 * 1000 * MS)));
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    ct_token *c;
    if (ct_token_new_deadline(&c, "child", ct_deadline_after(5 * MS)) != 0)
      _exit(2);
    /* a generous bound, only so that a broken build fails, not hangs */
    _exit(ct_token_wait(c, ct_deadline_after(30000 * MS)) == 0 ? 0 : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  ct_token_unref(t);
}

/* Issue 13, item 4: library threads run callbacks on an ordinary thread
 * stack.  This callback puts 1 MiB of locals on it and touches every page
 * (on the old 64 KiB stack about 60 KiB was enough to crash): the callback
 * is t_deep_stack_cb() in test_util.h. */
static void test_callback_on_deadline_thread_gets_ordinary_stack(void **state) {
  (void)state;
  ct_token *t;
  ct_callback cb = {0};
  struct t_deep_stack d = {0};
  /* As in test_deadline_runs_callbacks_fd_and_children: a deadline passed
   * before the call runs the callback here, on the main stack, which does
   * not test the deadline thread's: start again with a longer delay. */
  for (int64_t delay = 1 * MS;; delay *= 4) {
    memset(&d, 0, sizeof d);
    memset(&cb, 0, sizeof cb);
    ASSERT_OK(ct_token_new(&d.done, "done"));
    ASSERT_OK(ct_token_new(&t, "t"));
    ASSERT_OK(ct_callback_register(&cb, t, t_deep_stack_cb, &d));
    int r = ct_token_set_deadline(t, ct_deadline_after(delay));
    if (r == 0)
      break;
    ASSERT_ERR(r, 1);
    ASSERT_ERR(ct_callback_unregister(&cb), 1);
    ct_token_unref(t);
    ct_token_unref(d.done);
  }
  ASSERT_OK(ct_token_wait(d.done, CT_FOREVER));
  assert_int_equal(atomic_load(&d.sum), T_DEEP_STACK_SUM);
  ASSERT_ERR(ct_callback_unregister(&cb), 1);
  ct_token_unref(t);
  ct_token_unref(d.done);
}

/* Issue 13, item 1: a NULL out-pointer is -EINVAL (it crashed), with any
 * deadline, and nothing is left behind. */
static void test_new_deadline_null_out_is_einval(void **state) {
  (void)state;
  long base = atomic_load(&t_live_bytes);
  ASSERT_ERR(ct_token_new_deadline(NULL, "x", ct_deadline_after(3600 * 1000 * MS)), -EINVAL);
  ASSERT_ERR(ct_token_new_deadline(NULL, "x", 0), -EINVAL);
  ASSERT_ERR(ct_token_new_deadline(NULL, NULL, 0), -EINVAL);
  ct_token *t = (ct_token *)&base;
  ASSERT_ERR(ct_token_new_deadline(&t, NULL, 0), -EINVAL);
  assert_ptr_equal(t, (ct_token *)&base); /* untouched on failure */
  ASSERT_ERR(ct_token_new_deadline(&t, "x", -2), -EINVAL);
  assert_int_equal(atomic_load(&t_live_bytes), base);
}

int main(void) {
  t_use_counting_allocator();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deadline_fires),
      cmocka_unit_test(test_deadline_runs_callbacks_fd_and_children),
      cmocka_unit_test(test_earliest_deadline_stays),
      cmocka_unit_test(test_past_deadline_triggers_in_call),
      cmocka_unit_test(test_unref_cancels_deadline),
      cmocka_unit_test(test_many_deadlines),
      cmocka_unit_test(test_deadline_after_fork),
      cmocka_unit_test(test_callback_on_deadline_thread_gets_ordinary_stack),
      cmocka_unit_test(test_new_deadline_null_out_is_einval),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
