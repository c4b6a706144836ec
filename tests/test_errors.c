/* SPDX-License-Identifier: MIT
 *
 * test_errors.c -- the error table: ct_err_name() and ct_strerror() for
 * every value an int can hold at the edges, including INT_MIN, which has
 * no negation (issue 13, item 5: both negated it, undefined behaviour that
 * UBSan reports; this test fails there before the fix).
 */
#include "test_util.h"

#include <limits.h>

static void test_err_name_and_strerror_of_int_min(void **state) {
  (void)state;
  assert_string_equal(ct_err_name(INT_MIN), "EUNKNOWN");
  assert_string_equal(ct_err_name(INT_MIN + 1), "EUNKNOWN");
  assert_string_equal(ct_err_name(INT_MAX), "EUNKNOWN");
  const char *m = ct_strerror(INT_MIN);
  assert_non_null(m);
  assert_true(strlen(m) > 0);
  assert_non_null(ct_strerror(INT_MAX));
  assert_non_null(ct_strerror(INT_MIN + 1));
}

/* The table both ways: a known error's name and message, the positive
 * value (not an error) gets no name, 0 is "OK"/"success". */
static void test_table(void **state) {
  (void)state;
  assert_string_equal(ct_err_name(-ECANCELED), "ECANCELED");
  assert_string_equal(ct_err_name(-ESRCH), "ESRCH");
  assert_string_equal(ct_err_name(ECANCELED), "EUNKNOWN");
  assert_string_equal(ct_err_name(0), "OK");
  assert_string_equal(ct_strerror(0), "success");
  assert_string_equal(ct_strerror(-ETIMEDOUT),
                      "deadline passed before the token was triggered");
  /* outside the table: the C library's message, for -e and e alike */
  assert_string_equal(ct_strerror(-EXDEV), strerror(EXDEV));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_err_name_and_strerror_of_int_min),
      cmocka_unit_test(test_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
