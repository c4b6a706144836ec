/* SPDX-License-Identifier: MIT
 *
 * test_order.c -- the documented order of a trigger's effects, at every
 * depth and through every way a token gets triggered: every token the
 * trigger reaches is triggered, its waiters are woken and its descriptor
 * is readable BEFORE the first callback runs (issue 13, item 2: only the
 * direct children were, so a root's callback waiting for a worker blocked
 * on a grandchild waited for ever).
 */
#include "test_util.h"

#include <poll.h>
#include <sched.h>
#include <signal.h>

enum { FAN = 3, DEPTH = 1000 };

/* A forest under one root: FAN children, FAN grandchildren each, under
 * each grandchild a deep chain of DEPTH named children, and a diamond
 * (chain(child0, child1)) with a child of its own. */
struct forest {
  ct_token *root;
  ct_token *all[1 + FAN + FAN * FAN + FAN * FAN * DEPTH + 2];
  size_t n;
  int fds[4 * FAN * FAN];
  size_t nfds;
  ct_token *grandchild, *leaf; /* one of each, for the waiters */
  _Atomic int violations;      /* a callback saw something not yet done */
  _Atomic int callbacks;
  _Atomic int first;           /* 1 once the first callback has run */
  _Atomic int root_first;      /* the first callback was the root's */
  _Atomic int woken;           /* waiter threads that have returned */
  int nwaiters;
};

static void add(struct forest *f, ct_token *t) {
  assert_true(f->n < sizeof f->all / sizeof *f->all);
  f->all[f->n++] = t;
}

static void add_fd(struct forest *f, ct_token *t) {
  int fd = ct_token_fd(t);
  assert_true(fd >= 0);
  f->fds[f->nfds++] = fd;
}

static void forest_build(struct forest *f, const char *root_name) {
  memset(f, 0, sizeof *f);
  ASSERT_OK(ct_token_new(&f->root, root_name));
  add(f, f->root);
  ct_token *kids[FAN];
  for (int i = 0; i < FAN; i++) {
    ASSERT_OK(ct_token_new_child(&kids[i], "child", f->root));
    add(f, kids[i]);
    for (int j = 0; j < FAN; j++) {
      ct_token *g, *t;
      ASSERT_OK(ct_token_new_child(&g, "grandchild", kids[i]));
      add(f, g);
      add_fd(f, g);
      if (!f->grandchild)
        f->grandchild = g;
      t = g;
      for (int d = 0; d < DEPTH; d++) {
        ct_token *c;
        ASSERT_OK(ct_token_new_child(&c, "deep", t));
        add(f, c);
        if (d == DEPTH / 2 || d == DEPTH - 1)
          add_fd(f, c);
        t = c;
      }
      if (!f->leaf)
        f->leaf = t;
    }
  }
  ct_token *d, *dd;
  ASSERT_OK(ct_token_chain(&d, kids[0], kids[1]));
  add(f, d);
  ASSERT_OK(ct_token_new_child(&dd, "under-diamond", d));
  add(f, dd);
  add_fd(f, dd);
}

static void forest_free(struct forest *f) {
  for (size_t i = 0; i < f->n; i++)
    ct_token_unref(f->all[i]);
}

static bool fd_readable(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Every callback checks the whole forest: every token triggered, every
 * descriptor readable; the first one also checks it is the root's. */
static void check_cb(ct_token *t, void *arg) {
  struct forest *f = arg;
  if (atomic_exchange(&f->first, 1) == 0)
    atomic_store(&f->root_first, t == f->root);
  for (size_t i = 0; i < f->n; i++)
    if (!ct_token_triggered(f->all[i]))
      atomic_fetch_add(&f->violations, 1);
  for (size_t i = 0; i < f->nfds; i++)
    if (!fd_readable(f->fds[i]))
      atomic_fetch_add(&f->violations, 1);
  atomic_fetch_add(&f->callbacks, 1);
}

/* The root's own callback, as in the issue: it waits for the workers
 * blocked on a grandchild and on a leaf 1,000 deeper.  It only waits when
 * their tokens are triggered, so the old order fails an assertion instead
 * of hanging. */
static void wait_workers_cb(ct_token *t, void *arg) {
  struct forest *f = arg;
  (void)t;
  if (!ct_token_triggered(f->grandchild) || !ct_token_triggered(f->leaf)) {
    atomic_fetch_add(&f->violations, 1);
    return;
  }
  while (atomic_load(&f->woken) < f->nwaiters)
    sched_yield();
}

static void *futex_waiter(void *arg) {
  struct forest *f = arg;
  assert_int_equal(ct_token_wait(f->leaf, CT_FOREVER), 0);
  atomic_fetch_add(&f->woken, 1);
  return NULL;
}

static void *poll_waiter(void *arg) {
  struct forest *f = arg;
  assert_int_equal(ct_poll(f->grandchild, NULL, 0, CT_FOREVER), -ECANCELED);
  atomic_fetch_add(&f->woken, 1);
  return NULL;
}

enum mode { BY_TRIGGER, BY_CAUSE, BY_DEADLINE, BY_SIGNAL };

static ct_token *_Atomic signal_target;
static void on_usr2(int sig) {
  (void)sig;
  ct_token_trigger_async(atomic_load(&signal_target), CT_REASON_SIGNAL,
                         SIGUSR2);
}

static void run_mode(enum mode m) {
  static struct forest f;
  forest_build(&f, "root");
  ct_callback cbs[6] = {{{0}}};
  ct_token *on[5] = {f.all[1], f.grandchild, f.leaf, f.all[f.n - 1],
                     f.all[f.n - 2]};
  /* Registered before the descendants' ones, so a LIFO list would run it
   * last: the root's callbacks must run first anyway. */
  ASSERT_OK(ct_callback_register(&cbs[0], f.root, check_cb, &f));
  for (int i = 0; i < 5; i++)
    ASSERT_OK(ct_callback_register(&cbs[i + 1], on[i], check_cb, &f));
  ct_callback wcb = {0};
  ASSERT_OK(ct_callback_register(&wcb, f.root, wait_workers_cb, &f));
  pthread_t th[2];
  f.nwaiters = 2;
  assert_int_equal(pthread_create(&th[0], NULL, futex_waiter, &f), 0);
  assert_int_equal(pthread_create(&th[1], NULL, poll_waiter, &f), 0);

  ct_token *cause = NULL;
  switch (m) {
  case BY_TRIGGER:
    assert_int_equal(ct_token_trigger(f.root), 1);
    break;
  case BY_CAUSE:
    ASSERT_OK(ct_token_new(&cause, "remote"));
    assert_int_equal(
        ct_token_trigger_with_cause(f.root, cause, CT_REASON_OWNER_LOST, 0),
        1);
    break;
  case BY_DEADLINE:
    ASSERT_ARMED(ct_token_set_deadline(f.root, ct_deadline_after(MS)));
    break;
  case BY_SIGNAL:
    ASSERT_OK(ct_async_init());
    atomic_store(&signal_target, f.root);
    signal(SIGUSR2, on_usr2);
    raise(SIGUSR2);
    break;
  }
  /* The deadline and the async thread run the callbacks elsewhere: wait
   * until all of them have run. */
  while (atomic_load(&f.callbacks) < 6)
    sched_yield();
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&f.violations), 0);
  assert_int_equal(atomic_load(&f.root_first), 1);
  assert_int_equal(atomic_load(&f.woken), 2);
  for (int i = 0; i < 6; i++)
    ASSERT_ERR(ct_callback_unregister(&cbs[i]), 1);
  ASSERT_ERR(ct_callback_unregister(&wcb), 1);
  for (size_t i = 0; i < f.n; i++)
    assert_ptr_equal(ct_token_triggered_token(f.all[i]),
                     cause ? cause : f.root);
  forest_free(&f);
  ct_token_unref(cause);
}

static void test_descendants_triggered_before_first_callback(void **state) {
  (void)state;
  run_mode(BY_TRIGGER);
}

static void test_descendants_triggered_before_first_callback_with_cause(
    void **state) {
  (void)state;
  run_mode(BY_CAUSE);
}

static void test_descendants_triggered_before_first_callback_deadline(
    void **state) {
  (void)state;
  run_mode(BY_DEADLINE);
}

static void test_descendants_triggered_before_first_callback_signal(
    void **state) {
  (void)state;
  run_mode(BY_SIGNAL);
}

/* A child chained onto a token that is already triggered is born
 * triggered, descriptor included, before ct_token_new_child() returns. */
static void test_born_triggered_is_complete(void **state) {
  (void)state;
  ct_token *p, *c, *g;
  ASSERT_OK(ct_token_new(&p, "p"));
  ct_token_trigger(p);
  ASSERT_OK(ct_token_new_child(&c, "c", p));
  assert_true(ct_token_triggered(c));
  assert_true(fd_readable(ct_token_fd(c)));
  ASSERT_OK(ct_token_new_child(&g, "g", c));
  assert_true(ct_token_triggered(g));
  assert_ptr_equal(ct_token_triggered_token(g), p);
  ct_token_unref(g);
  ct_token_unref(c);
  ct_token_unref(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_descendants_triggered_before_first_callback),
      cmocka_unit_test(
          test_descendants_triggered_before_first_callback_with_cause),
      cmocka_unit_test(
          test_descendants_triggered_before_first_callback_deadline),
      cmocka_unit_test(
          test_descendants_triggered_before_first_callback_signal),
      cmocka_unit_test(test_born_triggered_is_complete),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
