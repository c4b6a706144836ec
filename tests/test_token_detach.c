/* SPDX-License-Identifier: MIT
 *
 * test_token_detach.c -- a triggered parent's children array is detached
 * by the trigger that claims it (src/trigger.c; "Detached" at struct
 * ct_kids in src/internal.h): every link a one-pass claim reaches gets
 * CT_SLOT_GONE and leaves by a decrement of the array's count alone (a
 * batched claim keeps the slots), and the last child frees the array.  Large arrays are their own mapping under the default
 * allocator ("Mapped" there).  The first cases look inside (white box)
 * after each step; the races put the detaching trigger against children
 * leaving in random order (through the array's holes and its shrinking
 * before the trigger, through the count after it), the owner's last
 * unref (the orphan handshake) and children made meanwhile.  The default
 * allocator is used throughout, so the token cache and the mapped arrays
 * are the ones a program gets; test_token_orphan.c checks the same
 * handshake byte for byte under a counting allocator.
 */
#include "test_util.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../src/internal.h" /* white box: the children array */

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void shuffle(int *v, int n) {
  for (int i = 0; i < n; i++)
    v[i] = i;
  for (int i = n - 1; i > 0; i--) {
    int j = (int)(rnd() % (uint64_t)(i + 1)), x = v[i];
    v[i] = v[j];
    v[j] = x;
  }
}

/* The parent's array (the test is the only thread touching p). */
static struct ct_kids *array_of(ct_token *p) {
  assert_true(p->kids & 1);
  return (struct ct_kids *)(p->kids - 1);
}

static uint32_t lock_flags(ct_token *p) {
  return atomic_load(&p->lock) & ~CT_LOCK_STATE;
}

/* Is any page of [a, a + len) unmapped?  mincore() says ENOMEM then. */
static bool unmapped(const void *a, size_t len) {
  unsigned char vec[256];
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  assert_true(len / pg <= sizeof vec);
  return mincore((void *)a, len, vec) < 0 && errno == ENOMEM;
}

/* The link of child k under parent p (k's links are searched). */
static struct ct_link *link_to(ct_token *k, ct_token *p) {
  for (uint32_t i = 0; i < k->nlinks; i++)
    if (k->links[i].parent == p)
      return &k->links[i];
  fail_msg("no link to the parent");
  return NULL;
}

/* n children of p made three ways (by a first link as new_child and as
 * chain_n(1), by a second link as ct_token_chain(o, p)), the first child
 * of the kind `first`; *o receives the other parent of the chains. */
static void make_kids(ct_token **k, int n, ct_token *p, ct_token **o,
                      int first) {
  ASSERT_OK(ct_token_new(o, "other"));
  for (int i = 0; i < n; i++) {
    int kind = (i + first) % 3;
    if (kind == 0)
      ASSERT_OK(ct_token_new_child(&k[i], "kid", p));
    else if (kind == 1)
      ASSERT_OK(ct_token_chain_n(&k[i], &p, 1));
    else
      ASSERT_OK(ct_token_chain(&k[i], *o, p));
  }
}

/* Every step of a detach, looked at: before the trigger the array is an
 * ordinary one; the trigger marks it detached, and a one-pass claim
 * detaches every link while a batched one keeps every slot (the first
 * child decides which); a child made after it is born triggered and not
 * counted; each child leaving takes one off the count, in any order,
 * through its entry or not; the last one empties the list and clears
 * KIDS. */
static void test_detach_steps(void **state) {
  (void)state;
  enum { N = 300 };
  for (int first = 0; first < 3; first++) {
    ct_token *p, *o, *k[N], *late;
    int order[N];
    ASSERT_OK(ct_token_new(&p, "p"));
    make_kids(k, N, p, &o, first);
    struct ct_kids *a = array_of(p);
    assert_false(a->flags & CT_KIDS_DETACHED);
    assert_false(a->flags & CT_KIDS_MAPPED); /* 2,416 bytes: malloc'd */
    assert_int_equal(a->live, N);
    /* Holes before the trigger: the array keeps them. */
    ct_token_unref(k[7]);
    ct_token_unref(k[0]);
    k[7] = k[0] = NULL;
    assert_int_equal(a->live, N - 2);
    /* The first child left decides the claim (src/trigger.c): k[1], a
     * second-link child (batches) for first == 1, else a first-link one
     * (one pass). */
    bool batched = first == 1;
    uint32_t slot_before[N];
    for (int i = 0; i < N; i++)
      slot_before[i] = k[i] ? link_to(k[i], p)->slot : 0;
    assert_int_equal(ct_token_trigger(p), 1);
    assert_ptr_equal(array_of(p), a);
    assert_true(a->flags & CT_KIDS_DETACHED);
    assert_int_equal(a->live, N - 2);
    assert_int_equal(lock_flags(p), CT_LOCK_KIDS);
    for (int i = 0; i < N; i++) {
      if (!k[i])
        continue;
      assert_true(ct_token_triggered(k[i]));
      assert_ptr_equal(ct_token_triggered_token(k[i]), p);
      /* One pass: every link detached; batches: every slot kept. */
      assert_int_equal(link_to(k[i], p)->slot,
                       batched ? slot_before[i] : CT_SLOT_GONE);
    }
    /* Born triggered: on no list, not in the count. */
    ASSERT_OK(ct_token_new_child(&late, "late", p));
    assert_true(ct_token_triggered(late));
    assert_int_equal(late->links[0].slot, CT_SLOT_NONE);
    assert_int_equal(a->live, N - 2);
    shuffle(order, N);
    uint32_t live = N - 2;
    for (int i = 0; i < N; i++) {
      int j = order[i];
      if (!k[j])
        continue;
      ct_token_unref(k[j]);
      if (--live)
        assert_int_equal(a->live, live);
    }
    assert_int_equal(p->kids, 0);
    assert_int_equal(lock_flags(p), 0);
    /* p is whole: it names, counts and frees as before. */
    assert_string_equal(ct_token_name(p), "p");
    ct_token_unref(late);
    ct_token_unref(o);
    ct_token_unref(p);
  }
}

/* A parent with more than 8,192 children has a mapped array (its
 * capacity doubles to 16,384 entries, 131,088 bytes); it stays
 * mapped while detached children remain and is unmapped by the last one.
 * The owner drops the parent first: an orphan kept by a detached array. */
static void test_detach_mapped_orphan(void **state) {
  (void)state;
  enum { N = 20000 };
  ct_token *root, *p, *k[N];
  int order[N];
  ASSERT_OK(ct_token_new(&root, "root"));
  ASSERT_OK(ct_token_new_child(&p, "p", root));
  for (int i = 0; i < N; i++) {
    if (i % 2)
      ASSERT_OK(ct_token_chain_n(&k[i], &p, 1));
    else
      ASSERT_OK(ct_token_new_child(&k[i], "kid", p));
  }
  struct ct_kids *a = array_of(p);
  assert_true(a->flags & CT_KIDS_MAPPED);
  size_t len = sizeof *a + (size_t)a->cap * sizeof a->link[0];
  assert_false(unmapped(a, len));
  ct_token_unref(p); /* p is now an orphan, kept by its children */
  assert_int_equal(ct_token_trigger(root), 1);
  assert_true(a->flags & CT_KIDS_DETACHED);
  shuffle(order, N);
  for (int i = 0; i < N; i++) {
    int j = order[i];
    assert_true(ct_token_triggered(k[j]));
    /* The alias (p) is still there for an unnamed chain_n(1) child. */
    if (j % 2 && i % 1000 == 0)
      assert_string_equal(ct_token_name(k[j]), "p");
    if (i == N - 1)
      assert_false(unmapped(a, len));
    ct_token_unref(k[j]);
  }
  /* The last child freed p and unmapped the array. */
  assert_true(unmapped(a, len));
  ct_token_unref(root);
}

/* ---- races ---- */

struct race {
  ct_token *root, *p, *o, **k;
  int n, keep, *order;
  pthread_barrier_t go;
};

static void *race_trigger(void *arg) {
  struct race *r = arg;
  pthread_barrier_wait(&r->go);
  assert_true(ct_token_trigger(r->root) >= 0);
  return NULL;
}

/* Children [keep, n) leave in the round's random order, half by each of
 * two threads (one from each end of the order). */
static void *race_unref_front(void *arg) {
  struct race *r = arg;
  int m = (r->n - r->keep) / 2;
  pthread_barrier_wait(&r->go);
  for (int i = 0; i < m; i++)
    ct_token_unref(r->k[r->keep + r->order[i]]);
  return NULL;
}

static void *race_unref_back(void *arg) {
  struct race *r = arg;
  int m = (r->n - r->keep) / 2;
  pthread_barrier_wait(&r->go);
  for (int i = r->n - r->keep - 1; i >= m; i--)
    ct_token_unref(r->k[r->keep + r->order[i]]);
  return NULL;
}

/* Makes and drops children of p while the trigger detaches its array:
 * each is on the list (then detached or unlinked) or born triggered. */
static void *race_churn(void *arg) {
  struct race *r = arg;
  ct_token *mine = ct_token_ref(r->p);
  pthread_barrier_wait(&r->go);
  for (int i = 0; i < 200; i++) {
    ct_token *c;
    if (i % 2)
      ASSERT_OK(ct_token_chain_n(&c, &mine, 1));
    else
      ASSERT_OK(ct_token_new_child(&c, "c", mine));
    ct_token_unref(c);
  }
  ct_token_unref(mine);
  return NULL;
}

/* Per round: a trigger through p detaching p's array, two threads
 * dropping p's children from both ends of a random order (before the
 * trigger: holes, trimming, shrinking at a quarter; after it: the count),
 * a third making children of p, and the owner's unref of p, all released
 * at once, over arrays claimed in one pass and in batches.  The survivors must all be triggered, and everything must be
 * freed once (ASan, TSan, valgrind).  Sizes cover the inline child, small
 * arrays, arrays that shrink (64..4096 entries) and a mapped one. */
static void test_race_detach(void **state) {
  (void)state;
  static const int sizes[] = {1, 5, 70, 256, 1000, 17000};
  for (int round = 0; round < 240; round++) {
    struct race r;
    r.n = sizes[round % 6];
    if (r.n == 17000 && round >= 60)
      continue; /* a few rounds of the large one are enough */
    r.keep = round % 4 == 0 ? 0 : (int)(rnd() % (uint64_t)(r.n / 8 + 1));
    r.k = malloc((size_t)r.n * sizeof *r.k);
    r.order = malloc((size_t)r.n * sizeof *r.order);
    assert_non_null(r.k);
    assert_non_null(r.order);
    shuffle(r.order, r.n - r.keep);
    ASSERT_OK(ct_token_new(&r.root, "root"));
    ASSERT_OK(ct_token_new_child(&r.p, "p", r.root));
    ASSERT_OK(ct_token_new(&r.o, "o"));
    /* Three kinds; the first child (by round) decides whether the
     * trigger claims in one pass (detaching) or in batches. */
    for (int i = 0; i < r.n; i++) {
      int kind = (i + round) % 3;
      if (kind == 1)
        ASSERT_OK(ct_token_chain_n(&r.k[i], &r.p, 1));
      else if (kind == 2)
        ASSERT_OK(ct_token_chain(&r.k[i], r.o, r.p));
      else
        ASSERT_OK(ct_token_new_child(&r.k[i], "k", r.p));
    }
    pthread_barrier_init(&r.go, NULL, 5);
    pthread_t th[4];
    assert_int_equal(pthread_create(&th[0], NULL, race_trigger, &r), 0);
    assert_int_equal(pthread_create(&th[1], NULL, race_unref_front, &r), 0);
    assert_int_equal(pthread_create(&th[2], NULL, race_unref_back, &r), 0);
    assert_int_equal(pthread_create(&th[3], NULL, race_churn, &r), 0);
    pthread_barrier_wait(&r.go);
    ct_token_unref(r.p); /* the owner's last reference, mid-race */
    for (int i = 0; i < 4; i++)
      pthread_join(th[i], NULL);
    pthread_barrier_destroy(&r.go);
    for (int i = 0; i < r.keep; i++) {
      assert_true(ct_token_triggered(r.k[i]));
      ct_token_unref(r.k[i]);
    }
    ct_token_unref(r.root);
    ct_token_unref(r.o);
    free(r.k);
    free(r.order);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_detach_steps),
      cmocka_unit_test(test_detach_mapped_orphan),
      cmocka_unit_test(test_race_detach),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
