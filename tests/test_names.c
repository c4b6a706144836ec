/* SPDX-License-Identifier: MIT
 *
 * test_names.c -- chain names at their limits (issue 13, items 9 and 11):
 * the cut name fits in CT_NAME_MAX bytes, and naming a wide chain over a
 * deep unnamed chain is bounded.  Its own executable (and ctest TIMEOUT):
 * the deep case builds a million tokens, slow under TSan.  Every test ends
 * with no library memory left allocated (counting allocator).
 */
#include "test_util.h"

enum { DEEP = 1000000 };

static int teardown_no_leak(void **state) {
  (void)state;
  assert_int_equal(atomic_load(&t_live_bytes), 0);
  return 0;
}

/* Issue 13, item 9: a cut chain name is at most CT_NAME_MAX bytes, "..."
 * included (it was CT_NAME_MAX + 3); a token's own name may have up to
 * CT_NAME_MAX bytes, as the header says, and no more. */
static void test_cut_name_fits_in_name_max(void **state) {
  (void)state;
  char *big = malloc(CT_NAME_MAX + 2);
  assert_non_null(big);
  memset(big, 'a', CT_NAME_MAX + 1);
  big[CT_NAME_MAX + 1] = '\0';
  ct_token *t = NULL, *a, *b, *ab;
  ASSERT_ERR(ct_token_new(&t, big), -EINVAL); /* CT_NAME_MAX + 1 bytes */
  assert_null(t);
  big[CT_NAME_MAX] = '\0';
  ASSERT_OK(ct_token_new(&a, big)); /* exactly CT_NAME_MAX: accepted */
  assert_int_equal(strlen(ct_token_name(a)), CT_NAME_MAX);
  ASSERT_OK(ct_token_new(&b, "b"));
  ASSERT_OK(ct_token_chain(&ab, a, b));
  const char *nm = ct_token_name(ab);
  assert_non_null(nm);
  assert_int_equal(strlen(nm), CT_NAME_MAX);
  assert_string_equal(nm + CT_NAME_MAX - 3, "...");
  assert_memory_equal(nm, big, CT_NAME_MAX - 3);
  /* A name of exactly CT_NAME_MAX composed bytes is not cut. */
  ct_token *c, *bc;
  big[CT_NAME_MAX - 2] = '\0';
  ASSERT_OK(ct_token_new(&c, big));
  ASSERT_OK(ct_token_chain(&bc, b, c)); /* "b:" + CT_NAME_MAX - 2 bytes */
  nm = ct_token_name(bc);
  assert_int_equal(strlen(nm), CT_NAME_MAX);
  assert_memory_equal(nm, "b:aaa", 5);
  assert_int_equal(nm[CT_NAME_MAX - 1], 'a');
  ct_token *all[] = {a, b, ab, c, bc};
  for (size_t i = 0; i < 5; i++)
    ct_token_unref(all[i]);
  free(big);
}

/* Issue 13, item 11: naming a wide chain_n over one deep unnamed chain
 * walked the deep part once per occurrence (5,000 x 1,000,000 steps, about
 * a minute).  Each unnamed single-parent token now names itself after its
 * alias in one step.  The parents are the leaf and tokens all along the
 * chain; the ctest TIMEOUT catches the old behaviour, the assertions the
 * name. */
static void test_name_wide_chain_over_deep_chain_is_bounded(void **state) {
  (void)state;
  enum { WIDE = 5000, STEP = DEEP / WIDE };
  ct_token *root, *t, **parents = calloc(WIDE, sizeof *parents);
  assert_non_null(parents);
  ASSERT_OK(ct_token_new(&root, "root"));
  t = ct_token_ref(root);
  size_t np = 0;
  for (int i = 0; i < DEEP; i++) {
    ct_token *c;
    ASSERT_OK(ct_token_chain_n(&c, &t, 1));
    ct_token_unref(t);
    t = c;
    if (i % STEP == STEP - 1 && np < WIDE - 1)
      parents[np++] = ct_token_ref(t); /* every depth, deepest last */
  }
  parents[np++] = ct_token_ref(t); /* the leaf, 1,000,000 deep */
  assert_int_equal(np, WIDE);
  ct_token *wide, *wide2;
  ASSERT_OK(ct_token_chain_n(&wide, parents, WIDE));
  ct_token *leaves[WIDE];
  for (size_t i = 0; i < WIDE; i++)
    leaves[i] = t;
  ASSERT_OK(ct_token_chain_n(&wide2, leaves, WIDE));
  char *want = malloc(WIDE * 5);
  assert_non_null(want);
  for (size_t i = 0; i < WIDE; i++)
    memcpy(want + 5 * i, i + 1 < WIDE ? "root:" : "root", 5);
  assert_string_equal(ct_token_name(wide), want);
  assert_string_equal(ct_token_name(wide2), want);
  /* A deep single-parent token has its ancestor's name, not a copy. */
  assert_ptr_equal(ct_token_name(t), ct_token_name(root));
  assert_int_equal(ct_token_trigger(root), 1);
  assert_ptr_equal(ct_token_triggered_token(wide), root);
  ct_token_unref(wide);
  ct_token_unref(wide2);
  for (size_t i = 0; i < WIDE; i++)
    ct_token_unref(parents[i]);
  ct_token_unref(t);
  ct_token_unref(root);
  free(want);
  free(parents);
}

int main(void) {
  t_use_counting_allocator();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_cut_name_fits_in_name_max,
                                teardown_no_leak),
      cmocka_unit_test_teardown(
          test_name_wide_chain_over_deep_chain_is_bounded, teardown_no_leak),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
