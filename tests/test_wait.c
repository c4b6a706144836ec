/* SPDX-License-Identifier: MIT
 *
 * test_wait.c -- the blocking wait, the cancellable sleep, the token's
 * descriptor and the cancellable poll.  Timing-dependent checks use
 * windows ("not before the deadline"), never a single instant, and no
 * upper bound on how late a wake-up may be.
 */
#include "test_util.h"

#include <sys/epoll.h>
#include <unistd.h>

struct waiter {
  ct_token *t;
  int64_t deadline;
  _Atomic int result;
  _Atomic int started;
};

static void *wait_thread(void *arg) {
  struct waiter *w = arg;
  atomic_store(&w->started, 1);
  atomic_store(&w->result, ct_token_wait(w->t, w->deadline));
  return NULL;
}

static void test_wait_results(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_ERR(ct_token_wait(NULL, CT_FOREVER), -EINVAL);
  ASSERT_ERR(ct_token_wait(t, -2), -EINVAL);
  ASSERT_ERR(ct_token_wait(t, 0), -ETIMEDOUT); /* 0: do not block */
  int64_t start = ct_now();
  ASSERT_ERR(ct_token_wait(t, ct_deadline_after(20 * MS)), -ETIMEDOUT);
  assert_true(ct_now() - start >= 20 * MS); /* never early */
  ASSERT_ERR(ct_token_wait(t, start), -ETIMEDOUT); /* deadline in the past */
  ct_token_trigger(t);
  ASSERT_OK(ct_token_wait(t, 0));
  ASSERT_OK(ct_token_wait(t, CT_FOREVER));
  ct_token_unref(t);
}

/* Many threads block on one token (and on its descendants); one trigger
 * from another thread wakes them all. */
static void test_many_waiters_woken(void **state) {
  (void)state;
  enum { N = 32 };
  ct_token *root, *child;
  ASSERT_OK(ct_token_new(&root, "root"));
  ASSERT_OK(ct_token_new_child(&child, "child", root));
  struct waiter w[N];
  pthread_t th[N];
  for (int i = 0; i < N; i++) {
    w[i] = (struct waiter){.t = i % 2 ? child : root, .deadline = CT_FOREVER,
                           .result = 99};
    assert_int_equal(pthread_create(&th[i], NULL, wait_thread, &w[i]), 0);
  }
  for (int i = 0; i < N; i++)
    while (!atomic_load(&w[i].started))
      ;
  ct_token_trigger(root);
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(w[i].result, 0);
  }
  ct_token_unref(child);
  ct_token_unref(root);
}

static void test_sleep(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_ERR(ct_sleep(NULL, 0), -EINVAL);
  ASSERT_ERR(ct_sleep(t, -7), -EINVAL);
  int64_t start = ct_now();
  ASSERT_OK(ct_sleep(t, ct_deadline_after(10 * MS)));
  assert_true(ct_now() - start >= 10 * MS);
  ct_token_set_deadline(t, ct_deadline_after(5 * MS));
  ASSERT_ERR(ct_sleep(t, CT_FOREVER), -ECANCELED);
  ASSERT_ERR(ct_sleep(t, 0), -ECANCELED);
  ct_token_unref(t);
}

static void test_fd_lazy_stable_and_readable(void **state) {
  (void)state;
  ct_token *t, *c;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_OK(ct_token_new_child(&c, "c", t));
  ASSERT_ERR(ct_token_fd(NULL), -EINVAL);
  int fd = ct_token_fd(t);
  assert_true(fd >= 0);
  assert_int_equal(ct_token_fd(t), fd);
  int cfd = ct_token_fd(c);
  assert_true(cfd >= 0 && cfd != fd);
  struct pollfd p[2] = {{fd, POLLIN, 0}, {cfd, POLLIN, 0}};
  assert_int_equal(poll(p, 2, 0), 0);
  ct_token_trigger(t);
  for (int round = 0; round < 3; round++) { /* and stays readable */
    assert_int_equal(poll(p, 2, 0), 2);
    assert_true(p[0].revents & POLLIN);
    assert_true(p[1].revents & POLLIN);
  }
  /* created after the trigger: readable at once */
  ct_token *late;
  ASSERT_OK(ct_token_new(&late, "late"));
  ct_token_trigger(late);
  struct pollfd q = {ct_token_fd(late), POLLIN, 0};
  assert_int_equal(poll(&q, 1, 0), 1);
  ct_token_unref(late);
  ct_token_unref(c);
  ct_token_unref(t);
}

static void test_fd_in_epoll(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "t"));
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7};
  assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, ct_token_fd(t), &ev), 0);
  struct epoll_event out;
  assert_int_equal(epoll_wait(ep, &out, 1, 0), 0);
  ct_token_trigger(t);
  assert_int_equal(epoll_wait(ep, &out, 1, -1), 1);
  assert_int_equal(out.data.u32, 7);
  close(ep);
  ct_token_unref(t);
}

/* Not a correctness sleep: whether the trigger lands before or during the
 * poll, the poll must report -ECANCELED; the pause makes "during" likely. */
static void *trigger_later(void *arg) {
  ct_token *t = arg;
  struct timespec ts = {0, 5 * 1000 * 1000};
  nanosleep(&ts, NULL);
  ct_token_trigger(t);
  return NULL;
}

static void test_poll_outcomes(void **state) {
  (void)state;
  ct_token *t;
  int pfd[2];
  ASSERT_OK(ct_token_new(&t, "t"));
  assert_int_equal(pipe(pfd), 0);
  struct pollfd p = {pfd[0], POLLIN, 0};
  ASSERT_ERR(ct_poll(NULL, &p, 1, 0), -EINVAL);
  ASSERT_ERR(ct_poll(t, NULL, 1, 0), -EINVAL);
  ASSERT_ERR(ct_poll(t, &p, 1, -3), -EINVAL);
  ASSERT_ERR(ct_wait_fd(t, -1, POLLIN, 0), -EINVAL);
  /* timeout */
  int64_t start = ct_now();
  ASSERT_ERR(ct_poll(t, &p, 1, ct_deadline_after(10 * MS)), -ETIMEDOUT);
  assert_true(ct_now() - start >= 10 * MS);
  ASSERT_ERR(ct_poll(t, NULL, 0, 0), -ETIMEDOUT);
  /* ready */
  assert_int_equal(write(pfd[1], "x", 1), 1);
  assert_int_equal(ct_poll(t, &p, 1, CT_FOREVER), 1);
  assert_true(p.revents & POLLIN);
  assert_int_equal(ct_wait_fd(t, pfd[0], POLLIN, 0) & POLLIN, POLLIN);
  char c;
  assert_int_equal(read(pfd[0], &c, 1), 1);
  /* cancelled from another thread while blocked */
  pthread_t th;
  pthread_create(&th, NULL, trigger_later, t);
  ASSERT_ERR(ct_poll(t, &p, 1, CT_FOREVER), -ECANCELED);
  assert_int_equal(p.revents, 0);
  pthread_join(th, NULL);
  /* the token wins when both are ready */
  assert_int_equal(write(pfd[1], "x", 1), 1);
  ASSERT_ERR(ct_poll(t, &p, 1, CT_FOREVER), -ECANCELED);
  ASSERT_ERR(ct_wait_fd(t, pfd[0], POLLIN, 0), -ECANCELED);
  close(pfd[0]);
  close(pfd[1]);
  ct_token_unref(t);
}

/* More descriptors than the on-stack array holds. */
static void test_poll_many_fds(void **state) {
  (void)state;
  enum { N = 100 };
  ct_token *t;
  int pipes[N][2];
  struct pollfd p[N];
  ASSERT_OK(ct_token_new(&t, "t"));
  for (int i = 0; i < N; i++) {
    assert_int_equal(pipe(pipes[i]), 0);
    p[i] = (struct pollfd){pipes[i][0], POLLIN, 0};
  }
  assert_int_equal(write(pipes[77][1], "x", 1), 1);
  assert_int_equal(ct_poll(t, p, N, CT_FOREVER), 1);
  for (int i = 0; i < N; i++)
    assert_int_equal(p[i].revents, i == 77 ? POLLIN : 0);
  for (int i = 0; i < N; i++) {
    close(pipes[i][0]);
    close(pipes[i][1]);
  }
  ct_token_unref(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wait_results),
      cmocka_unit_test(test_many_waiters_woken),
      cmocka_unit_test(test_sleep),
      cmocka_unit_test(test_fd_lazy_stable_and_readable),
      cmocka_unit_test(test_fd_in_epoll),
      cmocka_unit_test(test_poll_outcomes),
      cmocka_unit_test(test_poll_many_fds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
