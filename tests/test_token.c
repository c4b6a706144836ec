/* SPDX-License-Identifier: MIT
 *
 * test_token.c -- creating, naming, triggering and chaining tokens, with bad
 * input, deep and wide chains, and the long-lived parent that must not grow.
 * Every test ends with no library memory left allocated (counting allocator).
 */
#include "test_util.h"

static int teardown_no_leak(void **state) {
  (void)state;
  assert_int_equal(atomic_load(&t_live_bytes), 0);
  return 0;
}

static void test_new_name_ref(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "demo"));
  assert_string_equal(ct_token_name(t), "demo");
  assert_false(ct_token_triggered(t));
  assert_null(ct_token_triggered_token(t));
  assert_int_equal(ct_token_reason(t, NULL), CT_REASON_NONE);
  assert_ptr_equal(ct_token_ref(t), t);
  ct_token_unref(t);
  assert_string_equal(ct_token_name(t), "demo");
  ct_token_unref(t);

  ASSERT_OK(ct_token_new(&t, "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"));
  assert_string_equal(ct_token_name(t), "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80");
  ct_token_unref(t);
}

static void test_user_data(void **state) {
  (void)state;
  ct_token *t;
  int x;
  ASSERT_OK(ct_token_new(&t, "d"));
  assert_null(ct_token_data(t));
  assert_null(ct_token_data(NULL));
  ASSERT_ERR(ct_token_set_data(NULL, &x), -EINVAL);
  ASSERT_OK(ct_token_set_data(t, &x));
  assert_ptr_equal(ct_token_data(t), &x);
  ASSERT_OK(ct_token_set_data(t, NULL));
  assert_null(ct_token_data(t));
  ct_token_unref(t);
}

static void test_bad_input(void **state) {
  (void)state;
  ct_token *t = NULL, *ok;
  ASSERT_OK(ct_token_new(&ok, "ok"));
  ASSERT_ERR(ct_token_new(NULL, "x"), -EINVAL);
  ASSERT_ERR(ct_token_new(&t, NULL), -EINVAL);
  ASSERT_ERR(ct_token_new(&t, ""), -EINVAL);
  const char *bad_utf8[] = {"\xc0\x80", "\x80", "a\xff", "\xed\xa0\x80",
                            "\xe2\x82", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80"};
  for (size_t i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++)
    ASSERT_ERR(ct_token_new(&t, bad_utf8[i]), -EINVAL);
  assert_null(t); /* nothing stored on failure */
  ASSERT_ERR(ct_token_new_child(&t, "c", NULL), -EINVAL);
  ASSERT_ERR(ct_token_new_child(&t, "", ok), -EINVAL);
  ASSERT_ERR(ct_token_chain(&t, ok, NULL), -EINVAL);
  ASSERT_ERR(ct_token_chain(&t, NULL, ok), -EINVAL);
  ASSERT_ERR(ct_token_chain(NULL, ok, ok), -EINVAL);
  ct_token *ps[2] = {ok, NULL};
  ASSERT_ERR(ct_token_chain_n(&t, ps, 0), -EINVAL);
  ASSERT_ERR(ct_token_chain_n(&t, ps, 2), -EINVAL);
  ASSERT_ERR(ct_token_chain_n(&t, NULL, 1), -EINVAL);
  ASSERT_ERR(ct_token_chain_n(&t, ps, (size_t)CT_CHAIN_MAX + 1), -EINVAL);
  ASSERT_ERR(ct_token_trigger(NULL), -EINVAL);
  ASSERT_ERR(ct_token_trigger_reason(ok, CT_REASON_NONE, 0), -EINVAL);
  ASSERT_ERR(ct_token_trigger_reason(ok, (ct_reason)256, 0), -EINVAL);
  ASSERT_ERR(ct_token_trigger_reason(ok, CT_REASON_SIGNAL, -1), -EINVAL);
  ASSERT_ERR(ct_token_trigger_reason(ok, CT_REASON_SIGNAL, 256), -EINVAL);
  ASSERT_ERR(ct_token_check(NULL), -EINVAL);
  assert_false(ct_token_triggered(NULL));
  assert_null(ct_token_triggered_token(NULL));
  assert_null(ct_token_name(NULL));
  assert_int_equal(ct_token_reason(NULL, NULL), CT_REASON_NONE);
  ASSERT_ERR(ct_token_message(NULL, NULL, 0), -EINVAL);
  char buf[8];
  ASSERT_ERR(ct_token_message(ok, NULL, 4), -EINVAL);
  ASSERT_ERR(ct_token_message(ok, buf, sizeof buf), -EAGAIN);
  ASSERT_ERR(ct_token_mark_proxy(NULL), -EINVAL);
  ASSERT_ERR(ct_token_set_deadline(NULL, 0), -EINVAL);
  ASSERT_ERR(ct_token_set_deadline(ok, -5), -EINVAL);
  ASSERT_ERR(ct_token_new_deadline(&t, "d", -2), -EINVAL);
  ASSERT_ERR(ct_token_new_deadline(&t, "", 0), -EINVAL);
  ct_token_unref(NULL); /* harmless */
  assert_false(ct_token_triggered(ok)); /* no failed call had an effect */
  ct_token_unref(ok);
}

static int stop_early(ct_token *t, int *steps) {
  for (int i = 0; i < 10; i++) {
    CT_RETURN_IF_TRIGGERED(t);
    if (++*steps == 3)
      ct_token_trigger(t);
  }
  return 0;
}

static void test_trigger_first_wins(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "demo"));
  ASSERT_OK(ct_token_check(t));
  char buf[64];
  ASSERT_ERR(ct_token_message(t, buf, sizeof buf), -EAGAIN);
  assert_int_equal(ct_token_trigger(t), 1);
  assert_int_equal(ct_token_trigger(t), 0);
  assert_int_equal(ct_token_trigger_reason(t, CT_REASON_DEADLINE, 0), 0);
  assert_true(ct_token_triggered(t));
  assert_ptr_equal(ct_token_triggered_token(t), t);
  int detail = -1;
  assert_int_equal(ct_token_reason(t, &detail), CT_REASON_TRIGGER);
  assert_int_equal(detail, 0);
  ASSERT_ERR(ct_token_check(t), -ECANCELED);
  const char *msg = "Cancellation requested by demo token";
  assert_int_equal(ct_token_message(t, buf, sizeof buf), (int)strlen(msg));
  assert_string_equal(buf, msg);
  /* snprintf semantics: truncated output, full length returned */
  assert_int_equal(ct_token_message(t, buf, 5), (int)strlen(msg));
  assert_string_equal(buf, "Canc");
  assert_int_equal(ct_token_message(t, NULL, 0), (int)strlen(msg));
  ct_token_unref(t);

  assert_string_equal(ct_reason_name(CT_REASON_TRIGGER), "trigger");
  assert_string_equal(ct_reason_name(CT_REASON_DEADLINE), "deadline");
  assert_string_equal(ct_reason_name(CT_REASON_SIGNAL), "signal");
  assert_string_equal(ct_reason_name(CT_REASON_OWNER_LOST), "owner-lost");
  assert_string_equal(ct_reason_name(CT_REASON_NONE), "none");
  assert_string_equal(ct_reason_name((ct_reason)(CT_REASON_USER + 3)), "user");
  assert_string_equal(ct_reason_name((ct_reason)9), "other");

  ASSERT_OK(ct_token_new(&t, "early"));
  int steps = 0;
  ASSERT_ERR(stop_early(t, &steps), -ECANCELED);
  assert_int_equal(steps, 3);
  ct_token_unref(t);
}

/* The reference's chaining doctest. */
static void test_chain_reference_example(void **state) {
  (void)state;
  ct_token *a, *tb, *b;
  ASSERT_OK(ct_token_new(&a, "token-a"));
  ASSERT_OK(ct_token_new(&tb, "token-b"));
  ASSERT_OK(ct_token_chain(&b, tb, a));
  ct_token_unref(tb); /* the chain keeps it alive */
  assert_string_equal(ct_token_name(b), "token-b:token-a");
  assert_false(ct_token_triggered(a));
  assert_false(ct_token_triggered(b));
  assert_int_equal(ct_token_trigger(a), 1);
  assert_true(ct_token_triggered(a));
  assert_true(ct_token_triggered(b));
  assert_ptr_equal(ct_token_triggered_token(b), a);
  char buf[80];
  ct_token_message(b, buf, sizeof buf);
  assert_string_equal(buf, "Cancellation requested by token-a token");
  ct_token_unref(a);
  ct_token_unref(b);
}

static void test_chain_does_not_trigger_parents(void **state) {
  (void)state;
  ct_token *a, *b, *c;
  ASSERT_OK(ct_token_new(&a, "a"));
  ASSERT_OK(ct_token_new(&b, "b"));
  ASSERT_OK(ct_token_chain(&c, a, b));
  assert_int_equal(ct_token_trigger(c), 1);
  assert_true(ct_token_triggered(c));
  assert_false(ct_token_triggered(a));
  assert_false(ct_token_triggered(b));
  assert_ptr_equal(ct_token_triggered_token(c), c);
  ct_token_unref(a);
  ct_token_unref(b);
  ct_token_unref(c);
}

static void test_chain_onto_triggered(void **state) {
  (void)state;
  ct_token *a, *b, *c, *d;
  ASSERT_OK(ct_token_new(&a, "a"));
  ASSERT_OK(ct_token_new(&b, "b"));
  ct_token_trigger_reason(b, CT_REASON_SIGNAL, 15);
  ASSERT_OK(ct_token_chain(&c, a, b));
  assert_true(ct_token_triggered(c));
  assert_ptr_equal(ct_token_triggered_token(c), b);
  int detail;
  assert_int_equal(ct_token_reason(c, &detail), CT_REASON_SIGNAL);
  assert_int_equal(detail, 15);
  /* a grandchild of a triggered chain names the original cause */
  ASSERT_OK(ct_token_new_child(&d, "d", c));
  assert_ptr_equal(ct_token_triggered_token(d), b);
  assert_false(ct_token_triggered(a));
  ct_token_unref(d);
  ct_token_unref(c);
  ct_token_unref(a);
  ct_token_unref(b);
}

static void test_chain_n_any_parent(void **state) {
  (void)state;
  enum { N = 7 };
  for (int which = 0; which < N; which++) {
    ct_token *p[N], *c;
    char nm[4];
    for (int i = 0; i < N; i++) {
      snprintf(nm, sizeof nm, "p%d", i);
      ASSERT_OK(ct_token_new(&p[i], nm));
    }
    ASSERT_OK(ct_token_chain_n(&c, p, N));
    assert_string_equal(ct_token_name(c), "p0:p1:p2:p3:p4:p5:p6");
    assert_false(ct_token_triggered(c));
    ct_token_trigger_reason(p[which], CT_REASON_DEADLINE, 0);
    assert_true(ct_token_triggered(c));
    assert_ptr_equal(ct_token_triggered_token(c), p[which]);
    assert_int_equal(ct_token_reason(c, NULL), CT_REASON_DEADLINE);
    for (int i = 0; i < N; i++)
      ct_token_unref(p[i]);
    ct_token_unref(c);
  }
}

static void test_chain_names_nested_and_repeated(void **state) {
  (void)state;
  ct_token *a, *b, *c, *ab, *abc, *aa;
  ASSERT_OK(ct_token_new(&a, "a"));
  ASSERT_OK(ct_token_new(&b, "b"));
  ASSERT_OK(ct_token_new(&c, "c"));
  ASSERT_OK(ct_token_chain(&ab, a, b));
  ASSERT_OK(ct_token_chain(&abc, ab, c));
  ASSERT_OK(ct_token_chain(&aa, a, a));
  assert_string_equal(ct_token_name(abc), "a:b:c");
  assert_string_equal(ct_token_name(ab), "a:b");
  assert_string_equal(ct_token_name(aa), "a:a");
  ct_token_trigger(a);
  assert_ptr_equal(ct_token_triggered_token(abc), a);
  assert_ptr_equal(ct_token_triggered_token(aa), a);
  ct_token *all[] = {a, b, c, ab, abc, aa};
  for (size_t i = 0; i < 6; i++)
    ct_token_unref(all[i]);
}

/* x = chain(x, x) thirty times would name x with 2^30 copies of "x":
 * the name is cut at CT_NAME_MAX instead. */
static void test_name_exponential_dag_is_bounded(void **state) {
  (void)state;
  ct_token *x;
  ASSERT_OK(ct_token_new(&x, "x"));
  for (int i = 0; i < 30; i++) {
    ct_token *y;
    ASSERT_OK(ct_token_chain(&y, x, x));
    ct_token_unref(x);
    x = y;
  }
  const char *nm = ct_token_name(x);
  assert_non_null(nm);
  assert_int_equal(strlen(nm), CT_NAME_MAX);
  assert_memory_equal(nm, "x:x:x:", 6);
  assert_string_equal(nm + CT_NAME_MAX - 3, "...");
  assert_ptr_equal(ct_token_name(x), nm); /* cached */
  ct_token_unref(x);
}

/* A cut name stays valid UTF-8: the cut never splits a character. */
static void test_cut_name_is_valid_utf8(void **state) {
  (void)state;
  ct_token *x;
  ASSERT_OK(ct_token_new(&x, "\xc3\xa9")); /* "é", two bytes: "é:é:..." */
  for (int i = 0; i < 20; i++) {
    ct_token *y;
    ASSERT_OK(ct_token_chain(&y, x, x));
    ct_token_unref(x);
    x = y;
  }
  const char *nm = ct_token_name(x);
  assert_non_null(nm);
  size_t len = strlen(nm);
  assert_true(len <= CT_NAME_MAX);
  assert_string_equal(nm + len - 3, "...");
  /* every lead byte is followed by its continuation bytes */
  for (size_t i = 0; i < len - 3; i++) {
    unsigned char c = (unsigned char)nm[i];
    if (c == 0xc3) {
      assert_true(i + 1 < len - 3);
      assert_int_equal((unsigned char)nm[i + 1], 0xa9);
      i++;
    } else {
      assert_int_equal(c, ':');
    }
  }
  ct_token_unref(x);
}

static void test_proxy_chain_rules(void **state) {
  (void)state;
  ct_token *p, *l, *c;
  ASSERT_OK(ct_token_new(&p, "main"));
  ASSERT_OK(ct_token_new(&l, "local"));
  assert_false(ct_token_is_proxy(p));
  ASSERT_OK(ct_token_mark_proxy(p));
  assert_true(ct_token_is_proxy(p));
  ASSERT_ERR(ct_token_chain(&c, p, l), -ENOTSUP);
  ASSERT_OK(ct_token_chain(&c, l, p));
  assert_string_equal(ct_token_name(c), "local:main");
  ct_token_trigger(p);
  assert_ptr_equal(ct_token_triggered_token(c), p);
  ct_token_unref(c);
  ct_token *ps[] = {p, l};
  ASSERT_OK(ct_token_chain_n(&c, ps, 2));
  ct_token_unref(c);
  ct_token_unref(p);
  ct_token_unref(l);
}

enum { DEEP = 1000000 };

/* Depth one million: no recursion in trigger, name or destroy. */
static void test_chain_depth_million(void **state) {
  (void)state;
  ct_token *root, *t, *leaf;
  ASSERT_OK(ct_token_new(&root, "root"));
  t = ct_token_ref(root);
  for (int i = 0; i < DEEP; i++) {
    ct_token *c;
    ASSERT_OK(ct_token_chain_n(&c, &t, 1));
    ct_token_unref(t); /* the child keeps its parent alive */
    t = c;
  }
  leaf = t;
  assert_string_equal(ct_token_name(leaf), "root");
  assert_false(ct_token_triggered(leaf));
  assert_int_equal(ct_token_trigger(root), 1);
  assert_true(ct_token_triggered(leaf));
  assert_ptr_equal(ct_token_triggered_token(leaf), root);
  ct_token_unref(root);
  ct_token_unref(leaf); /* frees one million tokens, iteratively */
}

/* Depth one million built the reference's way, a = a.chain(new): the
 * leaf's name is cut, and composing it does not recurse. */
static void test_chain_depth_million_binary_names(void **state) {
  (void)state;
  ct_token *t;
  ASSERT_OK(ct_token_new(&t, "n"));
  for (int i = 0; i < DEEP; i++) {
    ct_token *x, *c;
    ASSERT_OK(ct_token_new(&x, "n"));
    ASSERT_OK(ct_token_chain(&c, t, x));
    ct_token_unref(x);
    ct_token_unref(t);
    t = c;
  }
  const char *nm = ct_token_name(t);
  assert_non_null(nm);
  assert_int_equal(strlen(nm), CT_NAME_MAX);
  ct_token_unref(t);
}

/* A parent keeps its children in an array that grows: when growing it
 * runs out of memory, the new token fails with -ENOMEM and leaves nothing
 * behind -- in particular no link from an earlier parent of an N-ary
 * chain to the freed token (a trigger of that parent would touch freed
 * memory; ASan reports it), and no INTEREST-only damage: every other child
 * is still there and still triggered. */
static void test_child_link_out_of_memory_leaves_no_trace(void **state) {
  (void)state;
  ct_token *a, *b, *a1, *b1, *c = NULL;
  ASSERT_OK(ct_token_new(&a, "a"));
  ASSERT_OK(ct_token_new(&b, "b"));
  ASSERT_OK(ct_token_new_child(&a1, "a1", a)); /* a: one child, inline */
  ASSERT_OK(ct_token_new_child(&b1, "b1", b)); /* b: one child, inline */
  long before = atomic_load(&t_live_bytes);
  /* chain_n(a, b): a's array needs one allocation, b's the next one. */
  ct_token *ab[2] = {a, b};
  int failed = 0;
  for (long k = 0; k < 8; k++) {
    atomic_store(&t_fail_at, atomic_load(&t_nallocs) + k);
    int r = ct_token_chain_n(&c, ab, 2);
    atomic_store(&t_fail_at, -1);
    if (r == 0)
      break;
    ASSERT_ERR(r, -ENOMEM);
    assert_null(c);
    failed++;
  }
  assert_true(failed >= 3); /* the token, a's array, b's array */
  assert_non_null(c);
  ct_token_unref(c); /* a and b have one child each again */
  ct_token *more[40];
  for (int i = 0; i < 40; i++) /* a grows, then shrinks as they go */
    ASSERT_OK(ct_token_new_child(&more[i], "m", a));
  for (int i = 0; i < 40; i++)
    ct_token_unref(more[i]);
  /* An array outlives a drop back to one child (so that a parent with one
   * lasting child and others coming and going does not allocate every
   * time); it goes with the last child.  The teardown checks that. */
  assert_true(atomic_load(&t_live_bytes) >= before);
  assert_int_equal(ct_token_trigger(a), 1);
  assert_int_equal(ct_token_trigger(b), 1);
  assert_true(ct_token_triggered(a1));
  assert_true(ct_token_triggered(b1));
  ct_token *all[] = {a1, b1, a, b};
  for (size_t i = 0; i < 4; i++)
    ct_token_unref(all[i]);
}

static void test_million_children(void **state) {
  (void)state;
  ct_token *root;
  ASSERT_OK(ct_token_new(&root, "root"));
  ct_token **kids = malloc(sizeof *kids * DEEP);
  assert_non_null(kids);
  for (int i = 0; i < DEEP; i++)
    ASSERT_OK(ct_token_new_child(&kids[i], "kid", root));
  /* destroy half before the trigger, in an order that is not the list's */
  for (int i = 0; i < DEEP; i += 2)
    ct_token_unref(kids[i]);
  assert_int_equal(ct_token_trigger(root), 1);
  for (int i = 1; i < DEEP; i += 2) {
    assert_true(ct_token_triggered(kids[i]));
    assert_ptr_equal(ct_token_triggered_token(kids[i]), root);
    ct_token_unref(kids[i]);
  }
  free(kids);
  ct_token_unref(root);
}

/* A server's shutdown token with a million requests coming and going:
 * the parent and the library hold exactly the same memory afterwards. */
static void test_long_lived_parent_does_not_grow(void **state) {
  (void)state;
  ct_token *parent;
  ASSERT_OK(ct_token_new(&parent, "shutdown"));
  ct_token *warm;
  ASSERT_OK(ct_token_new_child(&warm, "req", parent));
  ct_token_unref(warm);
  long before = atomic_load(&t_live_bytes);
  for (int i = 0; i < DEEP; i++) {
    ct_token *req, *both, *other;
    ASSERT_OK(ct_token_new_child(&req, "req", parent));
    if (i % 16 == 0) { /* now and then an N-ary chain too */
      ASSERT_OK(ct_token_new(&other, "o"));
      ASSERT_OK(ct_token_chain(&both, parent, other));
      ct_token_unref(other);
      ct_token_unref(both);
    }
    ct_token_unref(req);
  }
  assert_int_equal(atomic_load(&t_live_bytes), before);
  ct_token_trigger(parent);
  ct_token_unref(parent);
}

int main(void) {
  t_use_counting_allocator();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_new_name_ref, teardown_no_leak),
      cmocka_unit_test_teardown(test_user_data, teardown_no_leak),
      cmocka_unit_test_teardown(test_bad_input, teardown_no_leak),
      cmocka_unit_test_teardown(test_trigger_first_wins, teardown_no_leak),
      cmocka_unit_test_teardown(test_chain_reference_example, teardown_no_leak),
      cmocka_unit_test_teardown(test_chain_does_not_trigger_parents, teardown_no_leak),
      cmocka_unit_test_teardown(test_chain_onto_triggered, teardown_no_leak),
      cmocka_unit_test_teardown(test_chain_n_any_parent, teardown_no_leak),
      cmocka_unit_test_teardown(test_chain_names_nested_and_repeated, teardown_no_leak),
      cmocka_unit_test_teardown(test_name_exponential_dag_is_bounded, teardown_no_leak),
      cmocka_unit_test_teardown(test_cut_name_is_valid_utf8, teardown_no_leak),
      cmocka_unit_test_teardown(test_proxy_chain_rules, teardown_no_leak),
      cmocka_unit_test_teardown(test_chain_depth_million, teardown_no_leak),
      cmocka_unit_test_teardown(test_chain_depth_million_binary_names, teardown_no_leak),
      cmocka_unit_test_teardown(test_child_link_out_of_memory_leaves_no_trace, teardown_no_leak),
      cmocka_unit_test_teardown(test_million_children, teardown_no_leak),
      cmocka_unit_test_teardown(test_long_lived_parent_does_not_grow, teardown_no_leak),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
