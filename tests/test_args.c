/* SPDX-License-Identifier: MIT
 *
 * test_args.c -- every function of canceltoken.h against the argument
 * errors its declaration promises (NULL pointers, bad reasons, details,
 * counts and deadlines), in one table: issue 13 found a function that
 * crashed on a NULL its header says gives -EINVAL, and this is the search
 * for that class across the core.  Also: nothing is stored on failure.
 */
#include "test_util.h"

#define CHECK(call, want)                                                     \
  do {                                                                        \
    long r_ = (long)(call);                                                   \
    if (r_ != (long)(want))                                                   \
      fail_msg("%s gave %ld, the header says %ld", #call, r_, (long)(want));  \
  } while (0)

static void fn(ct_token *t, void *a) {
  (void)t;
  (void)a;
}

static void test_every_argument_error_is_the_documented_one(void **state) {
  (void)state;
  ct_token *t, *o = NULL;
  ASSERT_OK(ct_token_new(&t, "t"));
  ct_callback cb = {0};
  struct pollfd p = {0};
  CHECK(ct_token_new(NULL, "x"), -EINVAL);
  CHECK(ct_token_new_deadline(NULL, "x", 1), -EINVAL);
  CHECK(ct_token_new_deadline(&o, NULL, 1), -EINVAL);
  CHECK(ct_token_new_deadline(&o, "x", -5), -EINVAL);
  CHECK(ct_token_new_child(NULL, "x", t), -EINVAL);
  CHECK(ct_token_new_child(&o, "x", NULL), -EINVAL);
  CHECK(ct_token_new_child(&o, NULL, t), -EINVAL);
  CHECK(ct_token_chain(&o, NULL, t), -EINVAL);
  CHECK(ct_token_chain(NULL, t, t), -EINVAL);
  CHECK(ct_token_chain_n(&o, NULL, 1), -EINVAL);
  CHECK(ct_token_chain_n(&o, &t, 0), -EINVAL);
  CHECK(ct_token_chain_n(&o, &t, CT_CHAIN_MAX + 1), -EINVAL);
  CHECK(ct_token_trigger(NULL), -EINVAL);
  CHECK(ct_token_trigger_reason(t, CT_REASON_NONE, 0), -EINVAL);
  CHECK(ct_token_trigger_reason(t, 256, 0), -EINVAL);
  CHECK(ct_token_trigger_reason(t, 1, 256), -EINVAL);
  CHECK(ct_token_trigger_reason(t, 1, -1), -EINVAL);
  CHECK(ct_token_trigger_with_cause(t, NULL, 1, 0), -EINVAL);
  CHECK(ct_token_trigger_with_cause(NULL, t, 1, 0), -EINVAL);
  CHECK(ct_token_trigger_async(NULL, 1, 0), -EINVAL);
  CHECK(ct_token_check(NULL), -EINVAL);
  CHECK(ct_token_triggered_token(NULL), 0);
  CHECK(ct_token_reason(NULL, NULL), 0);
  CHECK(ct_token_name(NULL), 0);
  CHECK(ct_token_message(NULL, NULL, 0), -EINVAL);
  CHECK(ct_token_message(t, NULL, 5), -EINVAL);
  CHECK(ct_token_message(t, NULL, 0), -EAGAIN);
  CHECK(ct_token_set_data(NULL, NULL), -EINVAL);
  CHECK(ct_token_data(NULL), 0);
  CHECK(ct_token_mark_proxy(NULL), -EINVAL);
  CHECK(ct_token_is_proxy(NULL), 0);
  CHECK(ct_token_set_deadline(NULL, 1), -EINVAL);
  CHECK(ct_token_set_deadline(t, -2), -EINVAL);
  CHECK(ct_token_wait(NULL, 0), -EINVAL);
  CHECK(ct_token_wait(t, -2), -EINVAL);
  CHECK(ct_sleep(NULL, 0), -EINVAL);
  CHECK(ct_sleep(t, -2), -EINVAL);
  CHECK(ct_token_fd(NULL), -EINVAL);
  CHECK(ct_poll(NULL, &p, 1, 0), -EINVAL);
  CHECK(ct_poll(t, NULL, 1, 0), -EINVAL);
  CHECK(ct_poll(t, &p, 1, -2), -EINVAL);
  CHECK(ct_wait_fd(NULL, 0, POLLIN, 0), -EINVAL);
  CHECK(ct_wait_fd(t, -1, POLLIN, 0), -EINVAL);
  CHECK(ct_callback_register(NULL, t, fn, NULL), -EINVAL);
  CHECK(ct_callback_register(&cb, NULL, fn, NULL), -EINVAL);
  CHECK(ct_callback_register(&cb, t, NULL, NULL), -EINVAL);
  CHECK(ct_callback_unregister(NULL), -EINVAL);
  CHECK(ct_callback_unregister(&cb), -EINVAL);
  CHECK(ct_token_ref(NULL), 0);
  ct_token_unref(NULL);
  assert_null(o); /* nothing stored by any failed creation */
  ct_token_unref(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_argument_error_is_the_documented_one),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
