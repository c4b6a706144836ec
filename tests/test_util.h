/* SPDX-License-Identifier: MIT
 *
 * test_util.h -- what the tests share: cmocka, an error-code assert, a
 * counting allocator with failure injection, and thread helpers.
 */
#ifndef CT_TEST_UTIL_H
#define CT_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canceltoken.h"

/* ASSERT_ERR(call, -ECANCELED): prints both codes and their names. */
#define ASSERT_ERR(call, expected)                                            \
  do {                                                                        \
    int ct_r_ = (call), ct_e_ = (expected);                                   \
    if (ct_r_ != ct_e_)                                                       \
      fail_msg("%s returned %d (%s), expected %d (%s)", #call, ct_r_,         \
               ct_err_name(ct_r_), ct_e_, ct_err_name(ct_e_));                \
  } while (0)
#define ASSERT_OK(call) ASSERT_ERR(call, 0)

/* ASSERT_ARMED(ct_token_set_deadline(t, ct_deadline_after(10 * MS))):
 * between reading the clock and the call this thread may be descheduled
 * past the deadline (valgrind, a loaded machine), and then the call
 * triggers t itself and returns 1, which is as correct as 0.  Tests that
 * need the deadline thread to fire use a loop that retries with a longer
 * delay when the call returned 1 (see test_deadline.c); tests that do not
 * care use this. */
#define ASSERT_ARMED(call)                                                    \
  do {                                                                        \
    int ct_r_ = (call);                                                       \
    if (ct_r_ != 0 && ct_r_ != 1)                                             \
      fail_msg("%s returned %d (%s), expected 0 or 1", #call, ct_r_,          \
               ct_err_name(ct_r_));                                           \
  } while (0)

/* Counting allocator: live bytes and a "fail allocation number N" switch. */
static _Atomic long t_live_bytes, t_nallocs, t_fail_at = -1;

static void *t_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    if (ptr)
      atomic_fetch_sub(&t_live_bytes, (long)osize);
    free(ptr);
    return NULL;
  }
  long n = atomic_fetch_add(&t_nallocs, 1);
  if (n == atomic_load(&t_fail_at))
    return NULL;
  void *p = realloc(ptr, nsize);
  if (p)
    atomic_fetch_add(&t_live_bytes, (long)nsize - (ptr ? (long)osize : 0));
  return p;
}

static inline void t_use_counting_allocator(void) {
  atomic_store(&t_fail_at, -1);
  ct_set_allocator(t_alloc, NULL);
}

/* Start n threads running fn(arg_i) where arg_i = base + i * stride. */
static inline void t_run_threads(int n, void *(*fn)(void *), void *base,
                                 size_t stride) {
  pthread_t th[64];
  assert_true(n <= 64);
  for (int i = 0; i < n; i++)
    assert_int_equal(
        pthread_create(&th[i], NULL, fn, (char *)base + (size_t)i * stride), 0);
  for (int i = 0; i < n; i++)
    pthread_join(th[i], NULL);
}

/* A callback that needs an ordinary thread stack (issue 13, item 4: the
 * library's own threads run user callbacks).  t_deep_stack_cb puts 1 MiB
 * of locals on the stack, touches every page, stores what it read back in
 * `sum` and triggers `done`; on a 64 KiB or 256 KiB stack it crashes. */
struct t_deep_stack {
  _Atomic unsigned sum;
  ct_token *done;
};

static __attribute__((noinline, unused)) unsigned t_use_big_stack(void) {
  volatile unsigned char buf[1 << 20];
  for (size_t i = 0; i < sizeof buf; i += 1024)
    buf[i] = (unsigned char)(i >> 10);
  unsigned sum = 0;
  for (size_t i = 0; i < sizeof buf; i += 1024)
    sum += buf[i];
  return sum;
}

static inline void t_deep_stack_cb(ct_token *t, void *arg) {
  (void)t;
  struct t_deep_stack *d = arg;
  atomic_store(&d->sum, t_use_big_stack());
  ct_token_trigger(d->done);
}

/* 0 + 1 + ... + 255, four times over: what t_use_big_stack() returns. */
#define T_DEEP_STACK_SUM (4u * 255u * 256u / 2u)

#define MS (INT64_C(1000000))

#endif
