/* SPDX-License-Identifier: MIT
 *
 * test_children.c -- a parent's children array (src/token_kids.h): removal in
 * random order leaves holes that a trigger skips, a full array with many
 * holes is compacted instead of grown, and all of it stays correct while
 * other threads add, remove and trigger at once.  Every case checks, through
 * the public API, that each child alive at the trigger was triggered
 * exactly once (a callback counts it) and that a removed child is never
 * reached (its callback was unregistered before its unref).
 */
#include "test_util.h"

#define N 2000

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void shuffle(size_t *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    v[i] = i;
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)(rnd() % i), t = v[i - 1];
    v[i - 1] = v[j];
    v[j] = t;
  }
}

static void count_cb(ct_token *t, void *arg) {
  (void)t;
  atomic_fetch_add((_Atomic int *)arg, 1);
}

/* A child; every other one has a callback (the others keep the token
 * without an ext, so that their last unref takes the RMW-free path). */
struct kid {
  ct_token *t;
  ct_callback cb;
  _Atomic int fired;
  bool live, has_cb;
};

static void add_kid(struct kid *k, ct_token *parent, int mode) {
  if (mode & 1)
    ASSERT_OK(ct_token_chain_n(&k->t, &parent, 1));
  else
    ASSERT_OK(ct_token_new_child(&k->t, "kid", parent));
  atomic_store(&k->fired, 0);
  k->has_cb = (mode & 2) != 0;
  if (k->has_cb) {
    memset(&k->cb, 0, sizeof k->cb);
    /* 1: the parent was triggered already, so the child was born
     * triggered and count_cb has run. */
    int r = ct_callback_register(&k->cb, k->t, count_cb, (void *)&k->fired);
    if (r != 0 && r != 1)
      fail_msg("ct_callback_register returned %d", r);
  }
  k->live = true;
}

static void drop_kid(struct kid *k) {
  if (k->has_cb)
    ct_callback_unregister(&k->cb);
  ct_token_unref(k->t);
  k->t = NULL;
  k->live = false;
}

/* A live child at the end of a case: triggered, and its callback (if any)
 * ran exactly once. */
static void check_kid(struct kid *k) {
  assert_true(ct_token_triggered(k->t));
  if (k->has_cb)
    assert_int_equal(atomic_load(&k->fired), 1);
}

/* Remove most children in random order (leaving holes everywhere, and at
 * the end), then trigger: every survivor fires once. */
static void test_holes_skipped(void **state) {
  (void)state;
  static struct kid kids[N];
  size_t perm[N];
  ct_token *root;
  ASSERT_OK(ct_token_new(&root, "root"));
  for (size_t i = 0; i < N; i++)
    add_kid(&kids[i], root, (int)(i & 3));
  shuffle(perm, N);
  for (size_t i = 0; i < N * 3 / 4; i++)
    drop_kid(&kids[perm[i]]);
  assert_int_equal(ct_token_trigger(root), 1);
  size_t alive = 0;
  for (size_t i = 0; i < N; i++) {
    if (kids[i].live) {
      alive++;
      check_kid(&kids[i]);
      drop_kid(&kids[i]);
    }
  }
  assert_int_equal(alive, N - N * 3 / 4);
  ct_token_unref(root);
}

/* Keep about N/4 children alive while children come and go in random
 * order many times over: the array fills with holes and must be compacted
 * (or shrunk) again and again; the survivors' slots must stay right, or
 * their removal would corrupt it (ASan, the assertions in debug builds)
 * and the trigger would miss or double-count them. */
static void test_compaction(void **state) {
  (void)state;
  static struct kid kids[N];
  ct_token *root;
  ASSERT_OK(ct_token_new(&root, "root"));
  for (size_t i = 0; i < N; i++)
    add_kid(&kids[i], root, (int)(i & 2));
  for (size_t round = 0; round < 40 * N; round++) {
    size_t i = (size_t)(rnd() % N);
    if (kids[i].live)
      drop_kid(&kids[i]);
    else if (rnd() % 4 == 0)
      add_kid(&kids[i], root, (int)(round & 3));
  }
  /* Drain down to a few, then grow again past the old size. */
  for (size_t i = 0; i < N; i++)
    if (kids[i].live && rnd() % 8 != 0)
      drop_kid(&kids[i]);
  for (size_t i = 0; i < N; i++)
    if (!kids[i].live)
      add_kid(&kids[i], root, (int)(i & 2));
  for (size_t i = 0; i < N; i += 3)
    drop_kid(&kids[i]);
  assert_int_equal(ct_token_trigger(root), 1);
  for (size_t i = 0; i < N; i++) {
    if (kids[i].live) {
      check_kid(&kids[i]);
      drop_kid(&kids[i]);
    } else {
      assert_null(kids[i].t);
    }
  }
  ct_token_unref(root);
}

/* Threads add and remove children of one parent in random order while the
 * main thread triggers it.  Each child alive at the end must be triggered
 * and fire once, whether the trigger reached it through the array or it
 * was born triggered. */
#define NTHR 3
#define PER 300

struct worker {
  ct_token *root;
  struct kid kids[PER];
  uint64_t seed;
};

static void *churn_worker(void *arg) {
  struct worker *w = arg;
  uint64_t s = w->seed;
  for (size_t round = 0; round < 20 * PER; round++) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    struct kid *k = &w->kids[s % PER];
    if (k->live)
      drop_kid(k);
    else
      add_kid(k, w->root, (int)(round & 3));
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  for (int trial = 0; trial < 20; trial++) {
    static struct worker w[NTHR];
    pthread_t th[NTHR];
    ct_token *root;
    ASSERT_OK(ct_token_new(&root, "root"));
    for (int i = 0; i < NTHR; i++) {
      memset(&w[i], 0, sizeof w[i]);
      w[i].root = root;
      w[i].seed = 0x9e3779b97f4a7c15ull * (uint64_t)(trial * NTHR + i + 1);
      assert_int_equal(pthread_create(&th[i], NULL, churn_worker, &w[i]), 0);
    }
    /* Trigger while they run (or after, if they are quick): both are
     * allowed; what is checked below holds either way. */
    for (int spin = 0; spin < trial * 200; spin++)
      (void)ct_token_triggered(root);
    assert_int_equal(ct_token_trigger(root), 1);
    for (int i = 0; i < NTHR; i++)
      assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < NTHR; i++) {
      for (size_t j = 0; j < PER; j++) {
        struct kid *k = &w[i].kids[j];
        if (!k->live)
          continue;
        check_kid(k);
        drop_kid(k);
      }
    }
    ct_token_unref(root);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_holes_skipped),
      cmocka_unit_test(test_compaction),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
