/* SPDX-License-Identifier: MIT
 *
 * test_trigger_claim.c -- the two ways src/trigger.c claims the children of
 * a parent's children array: one pass for children linked by their first
 * link, batches of 8 in three stages for the others (a two-parent chain
 * is linked under its second parent by its second link, as a.chain(b) in
 * Python is under b).  The first child decides which; either must claim
 * any mix correctly.  For array sizes around the batch and prefetch
 * boundaries, with holes (removed children) anywhere including first, and
 * children with callbacks (queued, run in phase 2) among those without,
 * every case checks through the public API that each live child was
 * triggered exactly once, with the root as its cause, that its callback
 * ran once, and that a removed child was never reached.
 */
#include "test_util.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void count_cb(ct_token *t, void *arg) {
  (void)t;
  atomic_fetch_add((_Atomic int *)arg, 1);
}

/* How a child is made: under the root by its first link, by its second
 * link (ct_token_chain(other, root)), or by its third (chain_n of three). */
enum kind { FIRST, SECOND, THIRD, NKINDS };

struct kid {
  ct_token *t, *other[2];
  ct_callback cb;
  _Atomic int fired;
  bool live, has_cb;
};

static void add_kid(struct kid *k, ct_token *root, enum kind kind,
                    bool cb) {
  memset(k, 0, sizeof *k);
  switch (kind) {
  case FIRST:
    ASSERT_OK(ct_token_new_child(&k->t, "kid", root));
    break;
  case SECOND:
    ASSERT_OK(ct_token_new(&k->other[0], "other"));
    ASSERT_OK(ct_token_chain(&k->t, k->other[0], root));
    break;
  default: {
    ASSERT_OK(ct_token_new(&k->other[0], "o1"));
    ASSERT_OK(ct_token_new(&k->other[1], "o2"));
    ct_token *p[3] = {k->other[0], k->other[1], root};
    ASSERT_OK(ct_token_chain_n(&k->t, p, 3));
  }
  }
  k->has_cb = cb;
  if (cb)
    ASSERT_OK(ct_callback_register(&k->cb, k->t, count_cb,
                                   (void *)&k->fired));
  k->live = true;
}

static void drop_kid(struct kid *k) {
  if (k->has_cb)
    ct_callback_unregister(&k->cb);
  ct_token_unref(k->t);
  for (int i = 0; i < 2; i++)
    ct_token_unref(k->other[i]); /* NULL-safe */
  k->live = false;
}

/* One case: n children of the given kinds (mix: each child's kind is
 * random; otherwise all `kind`), a fraction removed (holes; with
 * drop_first, the first child too), then the root's trigger. */
static void run_case(size_t n, int kind, bool drop_first, int drop_pct) {
  struct kid *kids = calloc(n ? n : 1, sizeof *kids);
  assert_non_null(kids);
  ct_token *root;
  ASSERT_OK(ct_token_new(&root, "root"));
  for (size_t i = 0; i < n; i++) {
    enum kind k = kind < 0 ? (enum kind)(rnd() % NKINDS) : (enum kind)kind;
    add_kid(&kids[i], root, k, rnd() % 4 == 0);
  }
  for (size_t i = 0; i < n; i++)
    if ((i == 0 && drop_first) || (int)(rnd() % 100) < drop_pct)
      drop_kid(&kids[i]);
  assert_int_equal(ct_token_trigger(root), 1);
  for (size_t i = 0; i < n; i++) {
    struct kid *k = &kids[i];
    if (!k->live)
      continue;
    if (!ct_token_triggered(k->t))
      fail_msg("n=%zu kind=%d: child %zu not triggered", n, kind, i);
    assert_ptr_equal(ct_token_triggered_token(k->t), root);
    for (int j = 0; j < 2; j++)
      if (k->other[j])
        assert_false(ct_token_triggered(k->other[j]));
    if (k->has_cb)
      assert_int_equal(atomic_load(&k->fired), 1);
    drop_kid(k);
  }
  ct_token_unref(root);
  free(kids);
}

static const size_t sizes[] = {1,  2,  3,  7,  8,  9,  15, 16,  17,  24,
                               25, 31, 32, 33, 47, 48, 49, 64, 100, 257,
                               2000};

/* Every child of one kind: the one pass (FIRST) or the batches. */
static void test_one_kind(void **state) {
  (void)state;
  for (int kind = 0; kind < NKINDS; kind++)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      run_case(sizes[s], kind, false, 0);
      run_case(sizes[s], kind, false, 30);
      run_case(sizes[s], kind, true, 30);
    }
}

/* Mixed kinds: whichever way the first live child picks, the others are
 * claimed too. */
static void test_mixed(void **state) {
  (void)state;
  for (int round = 0; round < 4; round++)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      run_case(sizes[s], -1, false, 0);
      run_case(sizes[s], -1, round & 1, 50);
      run_case(sizes[s], -1, true, 95);
    }
}

/* Holes only: every child removed, so the trigger finds an array of
 * holes (and the first-child scan runs off its end). */
static void test_all_holes(void **state) {
  (void)state;
  for (int kind = 0; kind < NKINDS; kind++)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
      run_case(sizes[s], kind, true, 100);
}

/* A second-link child with its own children under the batches: they are
 * queued (INTEREST) and reached in turn, and the other parent is not
 * triggered. */
static void test_grandchildren(void **state) {
  (void)state;
  enum { N = 100 };
  ct_token *root, *other[N], *mid[N], *leaf[N];
  ASSERT_OK(ct_token_new(&root, "root"));
  for (int i = 0; i < N; i++) {
    ASSERT_OK(ct_token_new(&other[i], "other"));
    ASSERT_OK(ct_token_chain(&mid[i], other[i], root));
    ASSERT_OK(ct_token_new_child(&leaf[i], "leaf", mid[i]));
  }
  assert_int_equal(ct_token_trigger(root), 1);
  for (int i = 0; i < N; i++) {
    assert_true(ct_token_triggered(leaf[i]));
    assert_ptr_equal(ct_token_triggered_token(leaf[i]), root);
    assert_false(ct_token_triggered(other[i]));
    ct_token_unref(leaf[i]);
    ct_token_unref(mid[i]);
    ct_token_unref(other[i]);
  }
  ct_token_unref(root);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_kind),
      cmocka_unit_test(test_mixed),
      cmocka_unit_test(test_all_holes),
      cmocka_unit_test(test_grandchildren),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
