/* SPDX-License-Identifier: MIT
 *
 * test_token_orphan.c -- a parent whose owners have all dropped it lives on
 * while it has children (src/token.c: a child on its parent's list holds no
 * counted reference; the parent's last counted reference turns it into an
 * orphan, and its last child frees it).  Every case runs under a counting
 * allocator (tests/test_util.h), so "freed" is checked exactly, in every
 * build: the library's live bytes return to what they were before the
 * case, and a parent freed too early is a use after free that ASan and
 * valgrind report.  The thread cases race the last child's unref against a
 * trigger walking through the orphan, a new child, and the owner's unref;
 * the last ones race the orphaning CAS on the parent's lock word against
 * each of those.
 */
#include "test_util.h"

#include <sched.h>
#include <time.h>

#include "../src/internal.h" /* white box: the children array */

#define KIDS 64
#define ROUNDS 300

static long base_bytes;

static int setup(void **state) {
  (void)state;
  base_bytes = atomic_load(&t_live_bytes);
  return 0;
}

static void assert_all_freed(void) {
  assert_int_equal(atomic_load(&t_live_bytes), base_bytes);
}

static void count_cb(ct_token *t, void *arg) {
  (void)t;
  atomic_fetch_add((_Atomic int *)arg, 1);
}

/* Dropped by its owner, a parent with children still propagates a trigger
 * to them, names them, and is freed with the last of them. */
static void test_orphan_kept_by_children(void **state) {
  (void)state;
  ct_token *root, *p, *k[KIDS];
  ct_callback cb[KIDS];
  _Atomic int fired[KIDS];
  ASSERT_OK(ct_token_new(&root, "root"));
  ASSERT_OK(ct_token_new_child(&p, "orphan", root));
  for (int i = 0; i < KIDS; i++) {
    if (i % 2)
      ASSERT_OK(ct_token_chain_n(&k[i], &p, 1));
    else
      ASSERT_OK(ct_token_new_child(&k[i], "kid", p));
    atomic_init(&fired[i], 0);
    memset(&cb[i], 0, sizeof cb[i]);
    ASSERT_OK(ct_callback_register(&cb[i], k[i], count_cb, (void *)&fired[i]));
  }
  ct_token_unref(p); /* the owner's only reference: p is now an orphan */
  /* An unnamed chain_n(1) child takes its name from p: p is still there. */
  assert_string_equal(ct_token_name(k[1]), "orphan");
  assert_int_equal(ct_token_trigger(root), 1);
  for (int i = 0; i < KIDS; i++) {
    assert_true(ct_token_triggered(k[i]));
    assert_int_equal(atomic_load(&fired[i]), 1);
    assert_ptr_equal(ct_token_triggered_token(k[i]), root);
  }
  /* Destroyed out of order; p goes with the last one, root stays. */
  for (int i = 0; i < KIDS; i++) {
    int j = (i * 37) % KIDS;
    assert_true(ct_callback_unregister(&cb[j]) >= 0);
    ct_token_unref(k[j]);
  }
  ct_token_unref(root);
  assert_all_freed();
}

/* An orphan keeps its deadline (include/canceltoken.h,
 * ct_token_set_deadline(): cancelled only when t is freed): dropped by its
 * owner with the deadline armed, it still triggers its child, with reason
 * CT_REASON_DEADLINE and itself as the cause, and goes with that child. */
static void test_orphan_deadline_still_fires(void **state) {
  (void)state;
  /* Warm up the deadline thread and its heap, which stay: count from here. */
  ct_token *w;
  ASSERT_OK(ct_token_new(&w, "warm"));
  ASSERT_ARMED(ct_token_set_deadline(w, ct_deadline_after(3600 * 1000 * MS)));
  ct_token_unref(w);
  base_bytes = atomic_load(&t_live_bytes);
  for (int64_t delay = 20 * MS;; delay *= 4) {
    ct_token *p, *c;
    ASSERT_OK(ct_token_new(&p, "dl"));
    ASSERT_OK(ct_token_new_child(&c, "kid", p));
    int r = ct_token_set_deadline(p, ct_deadline_after(delay));
    if (r == 1 || ct_token_triggered(c)) {
      /* Descheduled past the deadline before the unref (or before the
       * call): retry with a longer one. */
      ct_token_unref(c);
      ct_token_unref(p);
      continue;
    }
    ASSERT_OK(r);
    ct_token_unref(p); /* an orphan with its deadline armed */
    assert_int_equal(ct_token_wait(c, ct_deadline_after(30 * 1000 * MS)), 0);
    assert_int_equal(ct_token_reason(c, NULL), CT_REASON_DEADLINE);
    assert_string_equal(ct_token_name(ct_token_triggered_token(c)), "dl");
    ct_token_unref(c);
    break;
  }
  /* The wait returns as soon as c is marked; the deadline thread may still
   * hold the reference it took on p to trigger it, and p goes when that is
   * dropped: wait for it (30 s only to fail instead of hanging). */
  for (int i = 0; i < 30000 && atomic_load(&t_live_bytes) != base_bytes;
       i++) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  assert_all_freed();
}

/* A reference counted again on an orphan (from a borrowed pointer) keeps it
 * after its last child is gone, and dropping that reference frees it. */
static void test_orphan_counted_again(void **state) {
  (void)state;
  ct_token *p, *c;
  ASSERT_OK(ct_token_new(&p, "parent"));
  ASSERT_OK(ct_token_new_child(&c, "child", p));
  assert_int_equal(ct_token_trigger(p), 1);
  ct_token_unref(p); /* orphan, kept by c */
  /* Borrowed from c (its cause is p), then counted. */
  ct_token *again = ct_token_ref(ct_token_triggered_token(c));
  assert_ptr_equal(again, p);
  ct_token_unref(c); /* p's list is empty now, but it is counted */
  assert_string_equal(ct_token_name(again), "parent");
  assert_true(ct_token_triggered(again));
  assert_true(atomic_load(&t_live_bytes) > base_bytes);
  ct_token_unref(again);
  assert_all_freed();
}

/* A child born triggered is on no list: its counted reference keeps the
 * parent, and its unref drops it. */
static void test_born_triggered_child_keeps_parent(void **state) {
  (void)state;
  ct_token *p, *c, *c2;
  ASSERT_OK(ct_token_new(&p, "parent"));
  assert_int_equal(ct_token_trigger(p), 1);
  ASSERT_OK(ct_token_new_child(&c, "born", p));
  ASSERT_OK(ct_token_chain_n(&c2, &p, 1));
  assert_true(ct_token_triggered(c));
  ct_token_unref(p);
  assert_ptr_equal(ct_token_triggered_token(c), p);
  assert_string_equal(ct_token_name(ct_token_triggered_token(c)), "parent");
  assert_string_equal(ct_token_name(c2), "parent");
  ct_token_unref(c);
  assert_string_equal(ct_token_name(c2), "parent");
  ct_token_unref(c2);
  assert_all_freed();
}

/* A cause given to ct_token_trigger_with_cause() that has children: the
 * triggered token's reference on it is its last counted one, dropped
 * while it has a child (orphan), and its child frees it. */
static void test_cause_with_children(void **state) {
  (void)state;
  ct_token *x, *y, *t;
  ASSERT_OK(ct_token_new(&x, "cause"));
  ASSERT_OK(ct_token_new_child(&y, "child-of-cause", x));
  ASSERT_OK(ct_token_new(&t, "target"));
  assert_int_equal(ct_token_trigger_with_cause(t, x, CT_REASON_TRIGGER, 0), 1);
  ct_token_unref(x);
  assert_string_equal(ct_token_name(ct_token_triggered_token(t)), "cause");
  ct_token_unref(t); /* drops the last counted reference on x */
  assert_false(ct_token_triggered(y));
  assert_string_equal(ct_token_name(y), "child-of-cause");
  ct_token_unref(y);
  assert_all_freed();
}

/* A deep chain dropped from the root down, then from the leaf: every link
 * is an orphan kept by the next, freed in one cascade by the leaf. */
static void test_chain_of_orphans(void **state) {
  (void)state;
  enum { DEPTH = 1000 };
  ct_token *l[DEPTH];
  ASSERT_OK(ct_token_new(&l[0], "l0"));
  for (int i = 1; i < DEPTH; i++)
    ASSERT_OK(ct_token_new_child(&l[i], "link", l[i - 1]));
  for (int i = 0; i < DEPTH - 1; i++)
    ct_token_unref(l[i]);
  assert_false(ct_token_triggered(l[DEPTH - 1]));
  ct_token_unref(l[DEPTH - 1]);
  assert_all_freed();
}

/* ---- races ---- */

struct race {
  ct_token *root, *p, *k[KIDS];
  pthread_barrier_t go;
  int keep; /* children [0, keep) survive the round */
};

static void *race_trigger(void *arg) {
  struct race *r = arg;
  pthread_barrier_wait(&r->go);
  assert_true(ct_token_trigger(r->root) >= 0);
  return NULL;
}

static void *race_unref_kids(void *arg) {
  struct race *r = arg;
  pthread_barrier_wait(&r->go);
  for (int i = KIDS - 1; i >= r->keep; i--)
    ct_token_unref(r->k[i]);
  return NULL;
}

static void *race_owner(void *arg) {
  struct race *r = arg;
  pthread_barrier_wait(&r->go);
  ct_token_unref(r->p); /* the owner's last reference, mid-race */
  return NULL;
}

/* The owner's unref, the unref of the last children and a trigger walking
 * through the parent, all at once: the parent must be freed exactly once
 * (live bytes), never early (ASan, TSan), and every child that survives
 * the round must be triggered. */
static void test_race_orphan_last_child_trigger(void **state) {
  (void)state;
  for (int round = 0; round < ROUNDS; round++) {
    struct race r;
    r.keep = round % 3 == 0 ? 0 : (int)(round % KIDS);
    ASSERT_OK(ct_token_new(&r.root, "root"));
    ASSERT_OK(ct_token_new_child(&r.p, "p", r.root));
    for (int i = 0; i < KIDS; i++)
      ASSERT_OK(ct_token_new_child(&r.k[i], "k", r.p));
    pthread_barrier_init(&r.go, NULL, 3);
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, race_trigger, &r), 0);
    assert_int_equal(pthread_create(&b, NULL, race_unref_kids, &r), 0);
    race_owner(&r);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_barrier_destroy(&r.go);
    for (int i = 0; i < r.keep; i++) {
      assert_true(ct_token_triggered(r.k[i]));
      ct_token_unref(r.k[i]);
    }
    ct_token_unref(r.root);
    assert_all_freed();
  }
}

struct churn {
  ct_token *p;
  pthread_barrier_t go;
  _Atomic int triggered_children;
};

static void *churn_children(void *arg) {
  struct churn *c = arg;
  ct_token *mine = ct_token_ref(c->p); /* this thread's own reference */
  pthread_barrier_wait(&c->go);
  for (int i = 0; i < 2000; i++) {
    ct_token *k;
    if (i % 2)
      ASSERT_OK(ct_token_chain_n(&k, &mine, 1));
    else
      ASSERT_OK(ct_token_new_child(&k, "req", mine));
    if (ct_token_triggered(k))
      atomic_fetch_add(&c->triggered_children, 1);
    ct_token_unref(k);
  }
  ct_token_unref(mine);
  return NULL;
}

static void *churn_trigger(void *arg) {
  struct churn *c = arg;
  ct_token *mine = ct_token_ref(c->p); /* this thread's own reference */
  pthread_barrier_wait(&c->go);
  for (int i = 0; i < 1000; i++)
    sched_yield();
  assert_true(ct_token_trigger(mine) >= 0);
  ct_token_unref(mine);
  return NULL;
}

/* Two threads churning children of one parent (each with a reference of
 * its own) while the owner drops its reference and a third thread
 * triggers it: the parent is freed once the last churner is done, and
 * after the trigger every new child is born triggered. */
static void test_race_churn_owner_trigger(void **state) {
  (void)state;
  for (int round = 0; round < 20; round++) {
    struct churn c;
    ASSERT_OK(ct_token_new(&c.p, "server"));
    atomic_init(&c.triggered_children, 0);
    pthread_barrier_init(&c.go, NULL, 4);
    pthread_t th[3];
    assert_int_equal(pthread_create(&th[0], NULL, churn_children, &c), 0);
    assert_int_equal(pthread_create(&th[1], NULL, churn_children, &c), 0);
    assert_int_equal(pthread_create(&th[2], NULL, churn_trigger, &c), 0);
    pthread_barrier_wait(&c.go);
    ct_token_unref(c.p); /* the owner goes; the churners keep p */
    for (int i = 0; i < 3; i++)
      pthread_join(th[i], NULL);
    pthread_barrier_destroy(&c.go);
    assert_all_freed();
  }
}

/* ---- races of the orphaning CAS (src/token.c ref_put_slow) ----
 *
 * A parent's last counted reference is handed to its children by one CAS
 * on its free lock word, or under its lock when that fails (the lock is
 * held: a child unlinking, a trigger walking); the last child's unlink
 * drops it.  These races put every one of those at the same instant, on
 * the inline sole-child path and on a chain where every link does both. */

enum { SOLE_N = 512 };

struct sole {
  ct_token *root, *x, *p[SOLE_N], *k[SOLE_N];
  pthread_barrier_t go;
};

static void *sole_owner(void *arg) {
  struct sole *s = arg;
  pthread_barrier_wait(&s->go);
  for (int i = 0; i < SOLE_N; i++)
    ct_token_unref(s->p[i]); /* the last counted reference: orphaning */
  return NULL;
}

static void *sole_kid(void *arg) {
  struct sole *s = arg;
  pthread_barrier_wait(&s->go);
  for (int i = 0; i < SOLE_N; i++)
    ct_token_unref(s->k[i]); /* p[i]'s only child: its unlink */
  return NULL;
}

static void *sole_trigger(void *arg) {
  struct sole *s = arg;
  pthread_barrier_wait(&s->go);
  assert_true(ct_token_trigger(s->root) >= 0); /* walks into every p[i] */
  return NULL;
}

/* The owner's last unref of parents with one child each (inline link),
 * and the unref of those children, from two threads running down the
 * same list at once (so that many pairs meet within a few instructions),
 * and every other round a trigger walking through the parents from their
 * own parent: each parent is freed exactly once, by whichever of its two
 * goes last.  The children are made by new_child, by chain_n(1), and by a
 * two-parent chain (the general unlink), in turn. */
static void test_race_sole_child_vs_owner(void **state) {
  (void)state;
  static struct sole s;
  for (int round = 0; round < 60; round++) {
    bool trig = round % 2;
    ASSERT_OK(ct_token_new(&s.root, "root"));
    ASSERT_OK(ct_token_new(&s.x, "other"));
    for (int i = 0; i < SOLE_N; i++) {
      ASSERT_OK(ct_token_new_child(&s.p[i], "p", s.root));
      switch ((round + i) % 3) {
      case 0:
        ASSERT_OK(ct_token_new_child(&s.k[i], "k", s.p[i]));
        break;
      case 1:
        ASSERT_OK(ct_token_chain_n(&s.k[i], &s.p[i], 1));
        break;
      default:
        ASSERT_OK(ct_token_chain(&s.k[i], s.p[i], s.x));
        break;
      }
    }
    pthread_barrier_init(&s.go, NULL, trig ? 3 : 2);
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, sole_kid, &s), 0);
    if (trig)
      assert_int_equal(pthread_create(&b, NULL, sole_trigger, &s), 0);
    sole_owner(&s);
    pthread_join(a, NULL);
    if (trig)
      pthread_join(b, NULL);
    pthread_barrier_destroy(&s.go);
    ct_token_unref(s.x);
    ct_token_unref(s.root);
    assert_all_freed();
  }
}

enum { CHAINS = 256 };

struct chain_race {
  ct_token *l[CHAINS][4];
  pthread_barrier_t go;
  _Atomic int next;
  int leaf_first;
};

static void *chain_dropper(void *arg) {
  struct chain_race *c = arg;
  int j = atomic_fetch_add(&c->next, 1); /* this thread's link depth */
  if (c->leaf_first)
    j = 3 - j;
  pthread_barrier_wait(&c->go);
  for (int i = 0; i < CHAINS; i++)
    ct_token_unref(c->l[i][j]);
  return NULL;
}

/* Chains of four links, each link depth dropped by a thread of its own,
 * the four running down the chains at once: a middle link's last unref
 * (orphaning, lock-free or locked) races both its child's unlink from it
 * and its own unlink from its parent, which may free that parent.  Which
 * depth a thread drops varies from round to round.  Every link is freed
 * exactly once. */
static void test_race_chain_links_dropped_at_once(void **state) {
  (void)state;
  static struct chain_race c;
  for (int round = 0; round < 40; round++) {
    for (int i = 0; i < CHAINS; i++) {
      ASSERT_OK(ct_token_new(&c.l[i][0], "l0"));
      for (int k = 1; k < 4; k++)
        ASSERT_OK(ct_token_new_child(&c.l[i][k], "link", c.l[i][k - 1]));
    }
    c.leaf_first = round % 2;
    atomic_init(&c.next, 0);
    pthread_barrier_init(&c.go, NULL, 4);
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
      assert_int_equal(pthread_create(&th[i], NULL, chain_dropper, &c), 0);
    chain_dropper(&c);
    for (int i = 0; i < 3; i++)
      pthread_join(th[i], NULL);
    pthread_barrier_destroy(&c.go);
    assert_all_freed();
  }
}

struct chain_churn {
  ct_token *p, *k, *x;
  pthread_barrier_t go;
};

static void *chainer(void *arg) {
  struct chain_churn *c = arg;
  ct_token *mine = ct_token_ref(c->p); /* this thread's own reference */
  pthread_barrier_wait(&c->go);
  for (int i = 0; i < 50; i++) {
    ct_token *t;
    ASSERT_OK(ct_token_chain(&t, mine, c->x));
    ct_token_unref(t);
  }
  ct_token_unref(mine); /* may be p's last counted reference */
  return NULL;
}

static void *chain_kid(void *arg) {
  struct chain_churn *c = arg;
  pthread_barrier_wait(&c->go);
  ct_token_unref(c->k);
  return NULL;
}

/* ct_token_chain() children made and dropped on p by a thread holding its
 * own reference (which it drops last), while the owner drops its reference
 * and p's one long-lived child is dropped: p's list goes empty and
 * non-empty under the chainer while either of the others may be the one
 * that orphans p or frees it. */
static void test_race_chain_vs_owner_and_last_child(void **state) {
  (void)state;
  for (int round = 0; round < 1000; round++) {
    struct chain_churn c;
    ASSERT_OK(ct_token_new(&c.p, "p"));
    ASSERT_OK(ct_token_new(&c.x, "x"));
    ASSERT_OK(ct_token_new_child(&c.k, "k", c.p));
    pthread_barrier_init(&c.go, NULL, 3);
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, chainer, &c), 0);
    assert_int_equal(pthread_create(&b, NULL, chain_kid, &c), 0);
    pthread_barrier_wait(&c.go);
    ct_token_unref(c.p);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_barrier_destroy(&c.go);
    ct_token_unref(c.x);
    assert_all_freed();
  }
}

/* A parent with 20,000 children under an allocator hook: its array (over
 * the size the default allocator would map, see "Mapped" at struct
 * ct_kids in src/internal.h) goes to the hook like every other block, is
 * detached by the trigger, keeps the orphaned parent alive through its
 * count, and the last child frees both, to the byte. */
static void test_large_array_detached_under_hook(void **state) {
  (void)state;
  enum { N = 20000 };
  static ct_token *k[N];
  ct_token *root, *p;
  ASSERT_OK(ct_token_new(&root, "root"));
  ASSERT_OK(ct_token_new_child(&p, "p", root));
  long before = atomic_load(&t_live_bytes);
  for (int i = 0; i < N; i++) {
    if (i % 2)
      ASSERT_OK(ct_token_chain_n(&k[i], &p, 1));
    else
      ASSERT_OK(ct_token_new_child(&k[i], "kid", p));
  }
  struct ct_kids *a = (struct ct_kids *)(p->kids - 1);
  assert_true(p->kids & 1);
  assert_false(a->flags & CT_KIDS_MAPPED);
  /* The hook counted the array: 32,768 entries of 8 bytes. */
  assert_true(atomic_load(&t_live_bytes) - before >= 32768 * 8);
  ct_token_unref(p); /* an orphan now */
  assert_int_equal(ct_token_trigger(root), 1);
  assert_true(a->flags & CT_KIDS_DETACHED);
  for (int i = 0; i < N; i++) {
    int j = (int)(((long)i * 7919) % N); /* 7919 is prime: a permutation */
    assert_true(ct_token_triggered(k[j]));
    ct_token_unref(k[j]);
  }
  ct_token_unref(root);
  assert_all_freed();
}

/* ct_token_ref on an orphan with 2^31 - 2 holders makes 2^31 - 1, which
 * the header allows: the debug check in ct__ref_get (src/internal.h) must
 * not count the children's reference as a holder's (it did, and aborted
 * one reference early).  The count is set directly (white box): 2^31
 * calls would take minutes under the sanitizers. */
static void test_orphan_ref_limit_is_exact(void **state) {
  (void)state;
  ct_token *p, *k;
  ASSERT_OK(ct_token_new(&p, "p"));
  ASSERT_OK(ct_token_new_child(&k, "k", p));
  ct_token_unref(p); /* an orphan: refs 1, its child's */
  assert_int_equal(atomic_load(&p->refs), 1);
  assert_true(atomic_load(&p->lock) & CT_LOCK_ORPHAN);
  /* 2^31 - 2 holders, plus the children's: CT_REFS_MAX. */
  atomic_store(&p->refs, CT_REFS_MAX);
  assert_ptr_equal(ct_token_ref(p), p); /* the 2^31 - 1st holder */
  assert_int_equal(atomic_load(&p->refs), CT_REFS_MAX + 1u);
  /* Back to one holder (ours) and the children's, then as before. */
  atomic_store(&p->refs, 2);
  ct_token_unref(p);
  assert_true(atomic_load(&p->lock) & CT_LOCK_ORPHAN);
  ct_token_unref(k); /* frees p too */
  assert_all_freed();
}

int main(void) {
  /* Before any other ct_ call (ct_set_allocator is not thread-safe). */
  t_use_counting_allocator();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_orphan_kept_by_children, setup),
      cmocka_unit_test_setup(test_orphan_counted_again, setup),
      cmocka_unit_test_setup(test_orphan_deadline_still_fires, setup),
      cmocka_unit_test_setup(test_born_triggered_child_keeps_parent, setup),
      cmocka_unit_test_setup(test_cause_with_children, setup),
      cmocka_unit_test_setup(test_chain_of_orphans, setup),
      cmocka_unit_test_setup(test_race_orphan_last_child_trigger, setup),
      cmocka_unit_test_setup(test_race_churn_owner_trigger, setup),
      cmocka_unit_test_setup(test_race_sole_child_vs_owner, setup),
      cmocka_unit_test_setup(test_race_chain_links_dropped_at_once, setup),
      cmocka_unit_test_setup(test_race_chain_vs_owner_and_last_child, setup),
      cmocka_unit_test_setup(test_large_array_detached_under_hook, setup),
      cmocka_unit_test_setup(test_orphan_ref_limit_is_exact, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
