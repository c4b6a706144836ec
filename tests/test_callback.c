/* SPDX-License-Identifier: MIT
 *
 * test_callback.c -- callbacks run exactly once, inline when registered
 * late, never after unregister returns, and may call back into the library
 * (trigger, chain, unref, unregister, register) without deadlocking.
 */
#include "test_util.h"

#include <sched.h>

#include "../src/internal.h" /* white box: watch a callback's state */

static void count_cb(ct_token *t, void *arg) {
  (void)t;
  atomic_fetch_add((_Atomic int *)arg, 1);
}

static void test_runs_once_on_trigger(void **state) {
  (void)state;
  ct_token *t;
  ct_callback cb = {0};
  _Atomic int n = 0;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_ERR(ct_callback_register(&cb, t, count_cb, &n), 0);
  ASSERT_ERR(ct_callback_register(&cb, t, count_cb, &n), -EINVAL);
  assert_int_equal(n, 0);
  ct_token_trigger(t);
  assert_int_equal(n, 1);
  ct_token_trigger(t);
  assert_int_equal(n, 1);
  ASSERT_ERR(ct_callback_unregister(&cb), 1);
  ASSERT_ERR(ct_callback_unregister(&cb), -EINVAL);
  /* the storage is reusable after unregister */
  ASSERT_ERR(ct_callback_register(&cb, t, count_cb, &n), 1);
  assert_int_equal(n, 2);
  ct_token_unref(t);
}

static void test_registration_keeps_token_alive(void **state) {
  (void)state;
  ct_token *t;
  ct_callback cb = {0};
  _Atomic int n = 0;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_OK(ct_callback_register(&cb, t, count_cb, &n));
  ct_token *keep = ct_token_ref(t);
  ct_token_unref(t);
  ASSERT_ERR(ct_callback_unregister(&cb), 0); /* drops the last-but-one */
  assert_int_equal(n, 0);
  ct_token_unref(keep);
}

static void test_late_registration_runs_inline(void **state) {
  (void)state;
  ct_token *t;
  ct_callback cb = {0};
  _Atomic int n = 0;
  ASSERT_OK(ct_token_new(&t, "t"));
  ct_token_trigger(t);
  ASSERT_ERR(ct_callback_register(&cb, t, count_cb, &n), 1);
  assert_int_equal(n, 1); /* before register returned */
  ct_token_unref(t);      /* no reference is held by an inline run */
  ASSERT_ERR(ct_callback_unregister(&cb), 1);
}

static void test_unregister_before_trigger(void **state) {
  (void)state;
  ct_token *t;
  ct_callback a = {0}, b = {0}, c = {0};
  _Atomic int n = 0;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_OK(ct_callback_register(&a, t, count_cb, &n));
  ASSERT_OK(ct_callback_register(&b, t, count_cb, &n));
  ASSERT_OK(ct_callback_register(&c, t, count_cb, &n));
  ASSERT_ERR(ct_callback_unregister(&b), 0); /* from the middle */
  ASSERT_ERR(ct_callback_unregister(&c), 0); /* the head */
  ct_token_trigger(t);
  assert_int_equal(n, 1);
  ASSERT_ERR(ct_callback_unregister(&a), 1);
  ct_token_unref(t);
}

static void test_bad_input(void **state) {
  (void)state;
  ct_token *t;
  ct_callback cb = {0};
  _Atomic int n = 0;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_ERR(ct_callback_register(NULL, t, count_cb, &n), -EINVAL);
  ASSERT_ERR(ct_callback_register(&cb, NULL, count_cb, &n), -EINVAL);
  ASSERT_ERR(ct_callback_register(&cb, t, NULL, &n), -EINVAL);
  ASSERT_ERR(ct_callback_unregister(NULL), -EINVAL);
  ASSERT_ERR(ct_callback_unregister(&cb), -EINVAL);
  ct_token_trigger(t);
  assert_int_equal(n, 0); /* failed registrations never run */
  ct_token_unref(t);
}

/* A callback that unregisters itself and frees its own storage. */
struct selfish {
  ct_callback cb;
  _Atomic int *ran;
  int unreg_result;
};

static void self_unregister_cb(ct_token *t, void *arg) {
  (void)t;
  struct selfish *s = arg;
  atomic_fetch_add(s->ran, 1);
  int r = ct_callback_unregister(&s->cb);
  atomic_store(s->ran + 1, r);
  free(s); /* ASan would flag any later use by the runner */
}

static void test_self_unregister_no_deadlock(void **state) {
  (void)state;
  ct_token *t;
  _Atomic int ran[2] = {0, -99};
  ASSERT_OK(ct_token_new(&t, "t"));
  struct selfish *s = calloc(1, sizeof *s);
  s->ran = ran;
  ASSERT_OK(ct_callback_register(&s->cb, t, self_unregister_cb, s));
  ct_token_unref(t); /* the registration holds the token */
  /* trigger through a child-free path: re-take a ref from nowhere is not
   * possible, so trigger via a chained parent */
  (void)0;
  ct_token *p, *c;
  ASSERT_OK(ct_token_new(&p, "p"));
  ASSERT_OK(ct_token_new(&t, "t2"));
  ASSERT_OK(ct_token_chain(&c, p, t));
  struct selfish *s2 = calloc(1, sizeof *s2);
  s2->ran = ran;
  ASSERT_OK(ct_callback_register(&s2->cb, c, self_unregister_cb, s2));
  ct_token_unref(c); /* only the registration holds c now */
  ct_token_trigger(p);
  assert_int_equal(ran[0], 1);
  assert_int_equal(ran[1], 1); /* "ran (in this thread)" */
  ct_token_unref(p);
  ct_token_unref(t);
  /* the first registration was never triggered: end it through its token */
  /* (its storage is s, still registered) */
  s->ran = ran;
  ASSERT_ERR(ct_callback_unregister(&s->cb), 0);
  free(s);
}

/* Unregister from another thread while the callback runs: it must wait. */
struct slow {
  ct_callback cb;
  _Atomic int finished;
};

static void slow_cb(ct_token *t, void *arg) {
  (void)t;
  struct slow *s = arg;
  struct ct_cb *in = (struct ct_cb *)&s->cb;
  /* Wait until the other thread is asleep in unregister (CB_WAITING). */
  while (!(atomic_load(&in->state) & CB_WAITING))
    sched_yield();
  atomic_store(&s->finished, 1);
}

static void *unregister_thread(void *arg) {
  struct slow *s = arg;
  struct ct_cb *in = (struct ct_cb *)&s->cb;
  while ((atomic_load(&in->state) & ~(uint32_t)CB_WAITING) != CB_RUNNING)
    sched_yield();
  int r = ct_callback_unregister(&s->cb);
  /* When unregister returns, the callback has finished. */
  return (void *)(intptr_t)(r == 1 && atomic_load(&s->finished) == 1);
}

static void test_unregister_waits_for_running_callback(void **state) {
  (void)state;
  for (int round = 0; round < 50; round++) {
    ct_token *t;
    struct slow s = {0};
    ASSERT_OK(ct_token_new(&t, "t"));
    ASSERT_OK(ct_callback_register(&s.cb, t, slow_cb, &s));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, unregister_thread, &s), 0);
    ct_token_trigger(t);
    void *ok;
    pthread_join(th, &ok);
    assert_true(ok != NULL);
    ct_token_unref(t);
  }
}

/* A callback that calls back into the library in every way. */
struct reentrant {
  ct_token *other, *self_child, *chained;
  ct_callback victim, late;
  _Atomic int victim_ran, late_ran;
  int unreg_victim;
};

static void reentrant_cb(ct_token *t, void *arg) {
  struct reentrant *r = arg;
  ct_token_trigger(r->other);               /* trigger another token */
  ct_token_chain(&r->chained, t, r->other); /* chain on the token firing */
  r->unreg_victim = ct_callback_unregister(&r->victim);
  ct_callback_register(&r->late, t, count_cb, &r->late_ran); /* inline */
  ct_token_unref(t); /* drop the caller's last reference from inside */
}

static void test_callback_reenters_library(void **state) {
  (void)state;
  struct reentrant r = {0};
  ct_token *t;
  ct_callback cb = {0};
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_OK(ct_token_new(&r.other, "other"));
  /* Registered first, so it is popped last (LIFO): reentrant_cb runs
   * first and unregisters it before it can run. */
  ASSERT_OK(ct_callback_register(&r.victim, t, count_cb, &r.victim_ran));
  ASSERT_OK(ct_callback_register(&cb, t, reentrant_cb, &r));
  ct_token_ref(t); /* reentrant_cb drops this one */
  assert_int_equal(ct_token_trigger(t), 1);
  assert_true(ct_token_triggered(r.other));
  assert_non_null(r.chained);
  assert_true(ct_token_triggered(r.chained));
  assert_int_equal(r.unreg_victim, 0 + (r.victim_ran != 0));
  assert_int_equal(r.late_ran, 1);
  ASSERT_ERR(ct_callback_unregister(&cb), 1);
  ASSERT_ERR(ct_callback_unregister(&r.late), 1);
  if (r.unreg_victim == 1)
    fail_msg("the victim ran although its unregister came first");
  ct_token_unref(r.chained);
  ct_token_unref(r.other);
  ct_token_unref(t);
}

static void test_descendant_callbacks_once_in_diamond(void **state) {
  (void)state;
  ct_token *a, *b, *c, *d;
  ct_callback cb[4] = {{{0}}};
  _Atomic int n[4] = {0};
  ASSERT_OK(ct_token_new(&a, "a"));
  ASSERT_OK(ct_token_new_child(&b, "b", a));
  ASSERT_OK(ct_token_new_child(&c, "c", a));
  ASSERT_OK(ct_token_chain(&d, b, c));
  ct_token *all[4] = {a, b, c, d};
  for (int i = 0; i < 4; i++)
    ASSERT_OK(ct_callback_register(&cb[i], all[i], count_cb, &n[i]));
  ct_token_trigger(a);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(n[i], 1);
    ASSERT_ERR(ct_callback_unregister(&cb[i]), 1);
  }
  assert_ptr_equal(ct_token_triggered_token(d), a);
  for (int i = 3; i >= 0; i--)
    ct_token_unref(all[i]);
}

static void test_many_callbacks(void **state) {
  (void)state;
  enum { N = 10000 };
  ct_token *t;
  ct_callback *cbs = calloc(N, sizeof *cbs);
  _Atomic int n = 0;
  ASSERT_OK(ct_token_new(&t, "t"));
  for (int i = 0; i < N; i++)
    ASSERT_OK(ct_callback_register(&cbs[i], t, count_cb, &n));
  for (int i = 0; i < N; i += 3)
    ASSERT_ERR(ct_callback_unregister(&cbs[i]), 0);
  ct_token_trigger(t);
  assert_int_equal(n, N - (N + 2) / 3);
  for (int i = 0; i < N; i++)
    if (i % 3)
      ASSERT_ERR(ct_callback_unregister(&cbs[i]), 1);
  free(cbs);
  ct_token_unref(t);
}

/* An inner callback (on another token, triggered from the outer one)
 * unregisters the outer callback, which runs further up this same stack. */
struct nest {
  ct_token *inner;
  ct_callback outer_cb, inner_cb;
  int r;
};
static void inner_cb(ct_token *t, void *arg) {
  (void)t;
  struct nest *s = arg;
  s->r = ct_callback_unregister(&s->outer_cb);
}
static void outer_cb(ct_token *t, void *arg) {
  (void)t;
  ct_token_trigger(((struct nest *)arg)->inner);
}

static void test_nested_unregister_of_outer(void **state) {
  (void)state;
  struct nest s = {0};
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "outer"));
  ASSERT_OK(ct_token_new(&s.inner, "inner"));
  ASSERT_OK(ct_callback_register(&s.outer_cb, t, outer_cb, &s));
  ASSERT_OK(ct_callback_register(&s.inner_cb, s.inner, inner_cb, &s));
  ct_token_trigger(t);
  assert_int_equal(s.r, 1);
  ASSERT_ERR(ct_callback_unregister(&s.outer_cb), -EINVAL); /* ended */
  ASSERT_ERR(ct_callback_unregister(&s.inner_cb), 1);
  ct_token_unref(s.inner);
  ct_token_unref(t);
}

/* A callback unregisters itself while another thread is already waiting
 * in ct_callback_unregister() for it to finish (a second unregister, a
 * caller's bug): the waiter must get -EINVAL, not sleep for ever. */
struct selfwait {
  ct_callback cb;
  _Atomic int self_result;
};

static void self_after_waiter_cb(ct_token *t, void *arg) {
  (void)t;
  struct selfwait *s = arg;
  struct ct_cb *in = (struct ct_cb *)&s->cb;
  while (!(atomic_load(&in->state) & CB_WAITING))
    sched_yield();
  atomic_store(&s->self_result, ct_callback_unregister(&s->cb));
}

static void *second_unregister(void *arg) {
  struct selfwait *s = arg;
  struct ct_cb *in = (struct ct_cb *)&s->cb;
  while ((atomic_load(&in->state) & ~(uint32_t)CB_WAITING) != CB_RUNNING)
    sched_yield();
  return (void *)(intptr_t)ct_callback_unregister(&s->cb);
}

static void test_self_unregister_wakes_a_waiting_unregister(void **state) {
  (void)state;
  for (int round = 0; round < 20; round++) {
    ct_token *t;
    struct selfwait s = {0};
    ASSERT_OK(ct_token_new(&t, "t"));
    ASSERT_OK(ct_callback_register(&s.cb, t, self_after_waiter_cb, &s));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, second_unregister, &s), 0);
    ct_token_trigger(t);
    void *r;
    pthread_join(th, &r);
    assert_int_equal((int)(intptr_t)r, -EINVAL);
    assert_int_equal(s.self_result, 1);
    ct_token_unref(t);
  }
}

/* Is every byte of a registration zero (the state the header promises
 * after ct_callback_unregister())? */
static bool cb_is_zero(const ct_callback *cb) {
  static const ct_callback zero;
  return memcmp(cb, &zero, sizeof zero) == 0;
}

static void *trigger_thread(void *t) {
  ct_token_trigger(t);
  return NULL;
}

/* Issue 13, item 10: after the callback ran in a trigger, the unregister
 * left the runner's thread id in the storage; the header says it leaves
 * the storage zeroed.  Every way a registration ends is checked. */
static void test_unregister_leaves_storage_zeroed(void **state) {
  (void)state;
  ct_token *t, *u;
  ct_callback cb = {0};
  _Atomic int n = 0;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_OK(ct_callback_register(&cb, t, count_cb, &n));
  assert_false(cb_is_zero(&cb));
  ASSERT_ERR(ct_callback_unregister(&cb), 0); /* never ran */
  assert_true(cb_is_zero(&cb));
  ASSERT_OK(ct_callback_register(&cb, t, count_cb, &n));
  ct_token_trigger(t); /* runs it */
  assert_int_equal(n, 1);
  ASSERT_ERR(ct_callback_unregister(&cb), 1);
  assert_true(cb_is_zero(&cb));
  ASSERT_ERR(ct_callback_register(&cb, t, count_cb, &n), 1); /* inline */
  ASSERT_ERR(ct_callback_unregister(&cb), 1);
  assert_true(cb_is_zero(&cb));
  /* run on another thread's trigger.  (A 1 ms deadline was used here; on
   * a slow run, valgrind's, it had passed before ct_token_set_deadline()
   * and the callback ran in this thread: a plain thread is certain.) */
  ASSERT_OK(ct_token_new(&u, "u"));
  ASSERT_OK(ct_callback_register(&cb, u, count_cb, &n));
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, trigger_thread, u), 0);
  ASSERT_OK(ct_token_wait(u, CT_FOREVER));
  pthread_join(th, NULL);
  while (atomic_load(&n) != 3)
    sched_yield(); /* the callback runs after the wake-up */
  ASSERT_ERR(ct_callback_unregister(&cb), 1);
  assert_true(cb_is_zero(&cb));
  ct_token_unref(t);
  ct_token_unref(u);
}

/* Issue 13, item 12: a register that failed with -ENOMEM had already
 * written the token, function and argument into the storage ("a call that
 * fails has no effect"). */
static void test_failed_register_leaves_storage_untouched(void **state) {
  (void)state;
  ct_token *t;
  ct_callback cb = {0};
  _Atomic int n = 0;
  ASSERT_OK(ct_token_new(&t, "t")); /* no list block yet */
  atomic_store(&t_fail_at, atomic_load(&t_nallocs)); /* the next one fails */
  int r = ct_callback_register(&cb, t, count_cb, &n);
  atomic_store(&t_fail_at, -1);
  ASSERT_ERR(r, -ENOMEM);
  assert_true(cb_is_zero(&cb));
  ASSERT_ERR(ct_callback_unregister(&cb), -EINVAL); /* nothing registered */
  ASSERT_OK(ct_callback_register(&cb, t, count_cb, &n)); /* and it works */
  ct_token_trigger(t);
  assert_int_equal(n, 1);
  ASSERT_ERR(ct_callback_unregister(&cb), 1);
  ct_token_unref(t);
}

/* Issue 13, item 12: after a register that ran the callback at once
 * (returned 1), unregistering is documented as optional, yet registering
 * the same storage again failed with -EINVAL. */
static void test_register_again_after_inline_run(void **state) {
  (void)state;
  ct_token *t, *u;
  ct_callback cb = {0};
  _Atomic int n = 0;
  ASSERT_OK(ct_token_new(&t, "t"));
  ASSERT_OK(ct_token_new(&u, "u"));
  ct_token_trigger(t);
  ASSERT_ERR(ct_callback_register(&cb, t, count_cb, &n), 1);
  ASSERT_ERR(ct_callback_register(&cb, t, count_cb, &n), 1); /* again */
  assert_int_equal(n, 2);
  /* and onto a token not triggered yet: a real registration */
  ASSERT_OK(ct_callback_register(&cb, u, count_cb, &n));
  ASSERT_ERR(ct_callback_register(&cb, u, count_cb, &n), -EINVAL);
  ct_token_trigger(u);
  assert_int_equal(n, 3);
  ASSERT_ERR(ct_callback_unregister(&cb), 1);
  assert_true(cb_is_zero(&cb));
  ct_token_unref(t);
  ct_token_unref(u);
}

int main(void) {
  t_use_counting_allocator(); /* fails nothing until a test asks */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unregister_leaves_storage_zeroed),
      cmocka_unit_test(test_failed_register_leaves_storage_untouched),
      cmocka_unit_test(test_register_again_after_inline_run),
      cmocka_unit_test(test_runs_once_on_trigger),
      cmocka_unit_test(test_registration_keeps_token_alive),
      cmocka_unit_test(test_late_registration_runs_inline),
      cmocka_unit_test(test_unregister_before_trigger),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_self_unregister_no_deadlock),
      cmocka_unit_test(test_unregister_waits_for_running_callback),
      cmocka_unit_test(test_callback_reenters_library),
      cmocka_unit_test(test_descendant_callbacks_once_in_diamond),
      cmocka_unit_test(test_many_callbacks),
      cmocka_unit_test(test_nested_unregister_of_outer),
      cmocka_unit_test(test_self_unregister_wakes_a_waiting_unregister),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
