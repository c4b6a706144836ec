/* SPDX-License-Identifier: MIT
 *
 * test_wait.c -- the blocking wait, the cancellable sleep, the token's
 * descriptor and the cancellable poll.  Timing-dependent checks use
 * windows ("not before the deadline"), never a single instant, and no
 * upper bound on how late a wake-up may be.
 */
#include "test_util.h"

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/wait.h>
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

/* ---- issue 13: readiness, revents and fork() ---- */

static bool fd_readable(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1;
}

/* Forked children report their result (0: every check held) on a pipe
 * and end with SIGKILL rather than exit: a leak checker running the test
 * (valgrind, which follows fork) would otherwise count the parent's
 * memory, which the child copied and never frees, as the child's leaks. */
static _Noreturn void child_end(int fd, int rc) {
  unsigned char c = (unsigned char)rc;
  if (write(fd, &c, 1) != 1)
    _exit(100);
  raise(SIGKILL);
  _exit(rc);
}

/* Reap a child ended by child_end() and return its result. */
static int child_result(pid_t pid, int fd) {
  int status;
  unsigned char c;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  assert_int_equal(read(fd, &c, 1), 1);
  return c;
}

/* Issue 13, item 6: ct_poll() on a token triggered before the call returns
 * -ECANCELED with every revents 0, as after a wait. */
static void test_poll_already_triggered_zeroes_revents(void **state) {
  (void)state;
  ct_token *t;
  int p[2];
  ASSERT_OK(ct_token_new(&t, "t"));
  assert_int_equal(pipe(p), 0);
  assert_int_equal(write(p[1], "x", 1), 1); /* p[0] is ready as well */
  ct_token_trigger(t);
  struct pollfd fds[3] = {{p[0], POLLIN, 0x7777}, {p[1], POLLOUT, 0x5555},
                          {p[0], POLLIN, -1}};
  ASSERT_ERR(ct_poll(t, fds, 3, CT_FOREVER), -ECANCELED);
  for (int i = 0; i < 3; i++)
    assert_int_equal(fds[i].revents, 0);
  fds[0].revents = 0x7777;
  ASSERT_ERR(ct_poll(t, fds, 1, 0), -ECANCELED);
  assert_int_equal(fds[0].revents, 0);
  close(p[0]);
  close(p[1]);
  ct_token_unref(t);
}

/* Issue 13, item 3: after fork(), a trigger of the child's copy of a token
 * makes the child's descriptor readable (same number) and leaves the
 * parent's alone: the parent's ct_poll(), ct_wait_fd() and
 * ct_process_wait() on its own, untriggered token time out instead of
 * returning -ECANCELED.  A real trigger in the parent still works.
 * (ct_process_wait(), which waits with ct_wait_fd(), has the same case in
 * test_process: valgrind, which runs this test, has no pidfd_open(2).) */
static void test_fork_child_trigger_does_not_cancel_parent(void **state) {
  (void)state;
  ct_token *t, *child;
  int go[2], done[2], spare[2], res[2];
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_OK(ct_token_new_child(&child, "child", t));
  int fd = ct_token_fd(t), cfd = ct_token_fd(child);
  assert_true(fd >= 0 && cfd >= 0);
  assert_int_equal(pipe(go), 0);
  assert_int_equal(pipe(done), 0);
  assert_int_equal(pipe(spare), 0);
  assert_int_equal(pipe(res), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int rc = 0;
    if (ct_token_trigger(t) != 1)
      rc = 10;
    else if (ct_token_fd(t) != fd || ct_token_fd(child) != cfd)
      rc = 11; /* the numbers the application holds stay valid */
    else if (!fd_readable(fd) || !fd_readable(cfd))
      rc = 12;
    else if (ct_poll(t, NULL, 0, 0) != -ECANCELED ||
             ct_wait_fd(child, spare[0], POLLIN, 0) != -ECANCELED)
      rc = 13;
    char c = 'x';
    if (write(done[1], &c, 1) != 1)
      rc = 14;
    /* Stay alive until the parent has looked; the limit only keeps a
     * parent that failed an assertion from leaving us behind for ever. */
    struct pollfd pg = {go[0], POLLIN, 0};
    if (poll(&pg, 1, 60000) != 1 || read(go[0], &c, 1) != 1)
      rc = 15;
    child_end(res[1], rc);
  }
  char c;
  assert_int_equal(read(done[0], &c, 1), 1); /* the child has triggered */
  assert_false(ct_token_triggered(t));
  assert_false(fd_readable(fd));
  assert_false(fd_readable(cfd));
  ASSERT_ERR(ct_poll(t, NULL, 0, ct_deadline_after(20 * MS)), -ETIMEDOUT);
  ASSERT_ERR(ct_wait_fd(child, spare[0], POLLIN, 0), -ETIMEDOUT);
  assert_int_equal(write(go[1], "x", 1), 1);
  assert_int_equal(child_result(pid, res[0]), 0);
  /* The child is gone; the parent's token is still its own. */
  assert_false(fd_readable(fd));
  ct_token_trigger(t);
  assert_true(fd_readable(fd));
  assert_true(fd_readable(cfd));
  ASSERT_ERR(ct_poll(child, NULL, 0, CT_FOREVER), -ECANCELED);
  for (int i = 0; i < 2; i++) {
    close(go[i]);
    close(done[i]);
    close(spare[i]);
    close(res[i]);
  }
  ct_token_unref(child);
  ct_token_unref(t);
}

/* The other way round: the parent triggers after the fork; the child's
 * copy is not triggered, and its waits on it time out. */
static void test_fork_parent_trigger_does_not_cancel_child(void **state) {
  (void)state;
  ct_token *t;
  int go[2], res[2];
  ASSERT_OK(ct_token_new(&t, "t"));
  int fd = ct_token_fd(t);
  assert_true(fd >= 0);
  assert_int_equal(pipe(go), 0);
  assert_int_equal(pipe(res), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char c;
    struct pollfd pg = {go[0], POLLIN, 0}; /* limit: as above */
    int rc = 0;
    if (poll(&pg, 1, 60000) != 1 || read(go[0], &c, 1) != 1)
      rc = 10; /* the parent has triggered */
    else if (ct_token_triggered(t))
      rc = 11;
    else if (ct_poll(t, NULL, 0, 0) != -ETIMEDOUT)
      rc = 12;
    else if (ct_token_fd(t) != fd || fd_readable(fd))
      rc = 13;
    else if (ct_token_trigger(t) != 1 || !fd_readable(fd) ||
             ct_poll(t, NULL, 0, 0) != -ECANCELED)
      rc = 14; /* its own trigger does work */
    child_end(res[1], rc);
  }
  ct_token_trigger(t);
  assert_int_equal(write(go[1], "x", 1), 1);
  assert_int_equal(child_result(pid, res[0]), 0);
  for (int i = 0; i < 2; i++) {
    close(go[i]);
    close(res[i]);
  }
  ct_token_unref(t);
}

struct poller {
  ct_token *t;
  _Atomic int result;
};

static void *poll_forever(void *arg) {
  struct poller *p = arg;
  atomic_store(&p->result, ct_poll(p->t, NULL, 0, CT_FOREVER));
  return NULL;
}

/* Issue 13, item 3, the class: readiness alone is never cancellation.
 * A process that shares the descriptor and writes it directly (a forked
 * child bypassing the library: the nearest thing to a process cloned
 * without the atfork handlers) makes it readable while the token is not
 * triggered.  ct_poll() must not return -ECANCELED: a poll with only the
 * token times out, one with a ready descriptor reports just that one, a
 * blocked poller goes on waiting -- on the same descriptor, which a real
 * trigger then wakes (a version that replaced the descriptor left it
 * asleep on the old one for ever) -- and the trigger ends it. */
static void test_readable_without_trigger_is_not_cancellation(void **state) {
  (void)state;
  ct_token *t;
  int p[2], res[2];
  ASSERT_OK(ct_token_new(&t, "t"));
  int fd = ct_token_fd(t);
  assert_true(fd >= 0);
  assert_int_equal(pipe(p), 0);
  assert_int_equal(pipe(res), 0);
  struct poller w = {t, 99};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, poll_forever, &w), 0);

  for (int round = 0; round < 2; round++) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      uint64_t one = 1;
      child_end(res[1], write(fd, &one, sizeof one) == sizeof one ? 0 : 1);
    }
    assert_int_equal(child_result(pid, res[0]), 0);
    if (round == 0) {
      ASSERT_ERR(ct_poll(t, NULL, 0, ct_deadline_after(20 * MS)), -ETIMEDOUT);
    } else {
      assert_int_equal(write(p[1], "x", 1), 1);
      struct pollfd fds[1] = {{p[0], POLLIN, 0}};
      assert_int_equal(ct_poll(t, fds, 1, CT_FOREVER), 1);
      assert_int_equal(fds[0].revents, POLLIN);
      /* A ready descriptor is reported without a look at the token's
       * (ct_poll checks the state word): the wait that follows sees it. */
      ASSERT_ERR(ct_poll(t, NULL, 0, ct_deadline_after(20 * MS)), -ETIMEDOUT);
    }
    assert_false(fd_readable(fd)); /* the stray write was consumed */
    assert_int_equal(ct_token_fd(t), fd);
  }
  assert_int_equal(atomic_load(&w.result), 99); /* still waiting */
  ct_token_trigger(t);
  pthread_join(th, NULL);
  ASSERT_ERR(atomic_load(&w.result), -ECANCELED);
  assert_true(fd_readable(fd));
  for (int i = 0; i < 2; i++) {
    close(p[i]);
    close(res[i]);
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
      cmocka_unit_test(test_poll_already_triggered_zeroes_revents),
      cmocka_unit_test(test_fork_child_trigger_does_not_cancel_parent),
      cmocka_unit_test(test_fork_parent_trigger_does_not_cancel_child),
      cmocka_unit_test(test_readable_without_trigger_is_not_cancellation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
